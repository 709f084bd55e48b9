/*
 * populate — cold load at disk speed.
 *
 * A freshly mapped model whose file is not in the page cache is read by demand faults: the
 * first token touches the weights in compute order, one fault (plus the kernel's read-ahead)
 * at a time, with the disk idle while each fault's data is dequantized. Here the mapping is
 * instead filled before the first token by two readers that each take large chunks in file
 * order and populate them (MADV_POPULATE_READ: read into the page cache AND map into this
 * process, so compute then takes no faults at all). Two long sequential streams keep a
 * virtual disk's queue busy; on this machine kind that reads at or above `dd bs=4M` speed.
 *
 * It only runs when a sample of the mapping says the cache is cold, so a warm load costs a
 * few mincore calls. A load that takes over a second shows a progress bar on stderr when
 * stderr is a terminal; otherwise it is silent.
 *
 * The madvise call lives here rather than in platform.c because it is the whole of this
 * file's OS dependence and needs a fallback of its own: kernels before 5.14 (and macOS) lack
 * MADV_POPULATE_READ, and then each chunk gets WILLNEED (asynchronous read-ahead of the whole
 * chunk) followed by one read per page.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mem/mem.h"
#include "mem/platform.h"

#define POP_THREADS 2
#define POP_CHUNK (32ull << 20)  /* large enough for long sequential requests, small enough to share out */
#define POP_SAMPLES 256          /* pages probed to decide whether the cache is cold */
#define POP_WARM_FRACTION 0.95   /* at least this share of the sample resident: already warm */
#define POP_BAR_AFTER 1.0        /* seconds before the progress bar appears */

#if defined(__linux__) && !defined(MADV_POPULATE_READ)
#define MADV_POPULATE_READ 22 /* Linux 5.14 uapi value, for older headers */
#endif

typedef struct pop_job {
    const llm_map *map;
    uint64_t start, end;       /* the range */
    atomic_uint_fast64_t next; /* offset of the next chunk to hand out */
    atomic_uint_fast64_t done; /* bytes populated so far */
    atomic_int have_populate;  /* 1 until MADV_POPULATE_READ is refused once */
    atomic_int finished;       /* readers still running */
} pop_job;

/* Fallback: start read-ahead of the whole chunk, then fault each page in, in order. */
static void touch_chunk(const llm_map *m, uint64_t off, uint64_t len)
{
    llm_map_advise(m, off, len, LLM_ADV_WILLNEED);
    uint64_t ps = plat_page_size();
    volatile uint8_t sink = 0;
    for (uint64_t o = off; o < off + len; o += ps)
        sink ^= m->base[o];
    (void)sink;
}

/* One piece: MADV_POPULATE_READ when *have says it works (cleared on the first refusal). */
static void populate_piece(const llm_map *m, uint64_t off, uint64_t len, atomic_int *have)
{
    if (off >= m->size)
        return;
    if (len > m->size - off)
        len = m->size - off;
#ifdef MADV_POPULATE_READ
    if (atomic_load(have)) {
        uint64_t ps = plat_page_size(), start = off / ps * ps;
        if (madvise(m->base + start, (size_t)(len + (off - start)), MADV_POPULATE_READ) == 0)
            return;
        atomic_store(have, 0); /* EINVAL on old kernels; any error: fall back */
    }
#endif
    touch_chunk(m, off, len);
}

static void *reader_main(void *arg)
{
    pop_job *j = arg;
    for (;;) {
        uint64_t off = atomic_fetch_add(&j->next, POP_CHUNK);
        if (off >= j->end)
            break;
        uint64_t len = j->end - off < POP_CHUNK ? j->end - off : POP_CHUNK;
        populate_piece(j->map, off, len, &j->have_populate);
        atomic_fetch_add(&j->done, len);
    }
    atomic_fetch_add(&j->finished, 1);
    return NULL;
}

/* Share of POP_SAMPLES evenly spaced pages of the mapping that are in RAM. */
static double sampled_residency(const llm_map *m)
{
    uint64_t ps = plat_page_size(), pages = (m->size + ps - 1) / ps;
    uint64_t step = pages > POP_SAMPLES ? pages / POP_SAMPLES : 1;
    int probed = 0, resident = 0;
    for (uint64_t p = 0; p < pages && probed < POP_SAMPLES; p += step, probed++)
        resident += llm_map_resident(m, p * ps, 1) > 0;
    return probed ? (double)resident / probed : 1.0;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static void draw_bar(const llm_map *m, uint64_t done, uint64_t total, double elapsed)
{
    enum { WIDTH = 30 };
    int filled = (int)((double)done / (double)total * WIDTH);
    char bar[WIDTH + 1];
    for (int i = 0; i < WIDTH; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[WIDTH] = 0;
    fprintf(stderr, "\rllmap: loading %s [%s] %3.0f%% %.0f/%.0f MiB, %.2f GB/s\033[K", base_name(m->path), bar,
            100.0 * (double)done / (double)total, done / 1048576.0, total / 1048576.0,
            elapsed > 0 ? done / elapsed / 1e9 : 0.0);
    fflush(stderr);
}

/* The calling thread waits for the readers, drawing the bar once the load has taken long
 * enough to be worth one. */
static void wait_with_progress(pop_job *j, int n_readers, double t0)
{
    bool drawn = false;
    uint64_t total = j->end - j->start;
    while (atomic_load(&j->finished) < n_readers) {
        usleep(10 * 1000); /* a short nap: the end of the load is noticed within 10 ms */
        double el = llm_now() - t0;
        if (el > POP_BAR_AFTER) {
            draw_bar(j->map, atomic_load(&j->done), total, el);
            drawn = true;
        }
    }
    if (drawn) {
        draw_bar(j->map, total, total, llm_now() - t0);
        fputs("\r\033[K", stderr);
        fflush(stderr);
    }
}

/* Populates [off, off+len) with up to `threads` readers; the calling thread draws the bar. */
static bool populate_span(const llm_map *m, uint64_t off, uint64_t len, int threads, bool progress)
{
    pop_job j = {.map = m, .start = off, .end = off + len};
    atomic_init(&j.next, off);
    atomic_init(&j.done, 0);
    atomic_init(&j.have_populate, 1);
    atomic_init(&j.finished, 0);
    pthread_t th[POP_THREADS];
    int started = 0;
    if (threads > POP_THREADS)
        threads = POP_THREADS;
    for (int i = 0; i < threads && len > POP_CHUNK; i++)
        if (pthread_create(&th[i], NULL, reader_main, &j) == 0)
            started++;
    if (started == 0)
        reader_main(&j); /* small, or no thread to spare: read on this one, without a bar */
    else if (progress && isatty(2))
        wait_with_progress(&j, started, llm_now());
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    return atomic_load(&j.have_populate) != 0;
}

void llm_map_populate_range(const llm_map *m, uint64_t off, uint64_t len, int threads)
{
    if (m->mode != LLM_MAP_MMAP || !m->base || off >= m->size || len == 0)
        return;
    if (len > m->size - off)
        len = m->size - off;
    if (threads <= 1) {
        atomic_int have = 1;
        populate_piece(m, off, len, &have);
        return;
    }
    populate_span(m, off, len, threads, false);
}

int llm_map_populate(const llm_map *m, bool progress, llm_populate_report *rep)
{
    llm_populate_report local;
    if (!rep)
        rep = &local;
    memset(rep, 0, sizeof *rep);
    if (m->mode != LLM_MAP_MMAP || !m->base || m->size == 0)
        return 0;
    double t0 = llm_now();
    rep->resident_before = sampled_residency(m);
    if (rep->resident_before >= POP_WARM_FRACTION)
        return 0;
    rep->cold = true;
    rep->used_populate = populate_span(m, 0, m->size, POP_THREADS, progress);
    rep->bytes = m->size;
    rep->seconds = llm_now() - t0;
    return 0;
}
