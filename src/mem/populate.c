/*
 * populate — cold load at disk speed, overlapped with the first token; committed memory.
 *
 * A freshly mapped model whose file is not in the page cache is read by demand faults while
 * the first token computes. When a sample of the mapping says the cache is cold, the file is
 * instead read through once, in order, like `dd` (sendfile to /dev/null, else pread): the
 * kernel's sequential read-ahead then keeps the disk at full speed and fills the page cache with
 * large folios, which the first token maps at warm cost. Measured on this machine kind (1.1B Q4_0,
 * 620 MB, bench/coldload.sh): 0.16-0.17 s (3.6-3.9 GB/s, the host caching the virtual disk),
 * against 0.5-0.9 s for two threads of MADV_POPULATE_READ — mapping pages one at a time is
 * what costs under shadow paging — and 0.2 s for forced read-ahead (WILLNEED), whose single
 * pages then cost the first token ~0.5 s more to map.
 *
 * Read up front, that read-in delayed the first token by its whole length. The engine runs it
 * on a helper thread instead (llm_map_populate_start): loading, context creation and the first
 * prompt go on meanwhile, and since the forward pass walks the weights in file order behind
 * the reader, it finds them cached (where it overtakes the reader, its own fault reads ahead
 * and the reader then passes over cached pages). Closing the model stops the reader between reads.
 * Without a thread (or for llm_map_populate) it runs on the caller, with a progress bar on
 * stderr after a second when stderr is a terminal. A warm load costs a few mincore calls.
 *
 * A warm file is instead mapped on that helper thread (llm_map_map_in_start): its page-table
 * entries made in file order ahead of the forward pass, which otherwise takes a trap per page
 * inside the matrix multiplications (see map_in). 1.1B Q4_0, page cache in small folios (as a
 * file just written leaves it), whole `llmap run ... --num-predict 1` alternated with and without:
 * 0.37 -> 0.30 s median wall, 0.64 -> 0.53 s CPU.
 *
 * llm_map_populate_range (streaming's resident part) does map the pages: two readers
 * MADV_POPULATE_READ large pieces (falling back to WILLNEED + a touch per page on kernels
 * before 5.14), as those pages are then locked.
 *
 * llm_mem_commit (the context's buffers) is here as the other half of starting fast: see mem.h.
 *
 * The madvise, sendfile and pread calls live here rather than in platform.c because they are
 * the whole of this file's OS dependence and need fallbacks of their own.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#ifdef __linux__
#include <sys/sendfile.h>
#endif
#include <unistd.h>

#include "mem/mem.h"
#include "mem/platform.h"

#define POP_THREADS 2
#define POP_CHUNK (32ull << 20)  /* large enough for long sequential requests, small enough to share out */
#define POP_SAMPLES 256          /* pages probed to decide whether the cache is cold */
#define POP_WARM_FRACTION 0.95   /* at least this share of the sample resident: already warm */
#define POP_BAR_AFTER 1.0        /* seconds before the progress bar appears */
#define POP_PIECE (8ull << 20)   /* bytes per read-through call */

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

/* Share of POP_SAMPLES evenly spaced pages of the mapping that are in RAM, not counting pages in
 * `skip` (read sparsely, so never all resident: counting them would call a warm file cold). */
static double sampled_residency(const llm_map *m, const llm_range *skip)
{
    uint64_t ps = plat_page_size(), pages = (m->size + ps - 1) / ps;
    uint64_t step = pages > POP_SAMPLES ? pages / POP_SAMPLES : 1;
    int probed = 0, resident = 0;
    for (uint64_t p = 0; p < pages && probed < POP_SAMPLES; p += step) {
        uint64_t off = p * ps;
        if (skip && skip->len && off + ps > skip->off && off < skip->off + skip->len)
            continue;
        probed++;
        resident += llm_map_resident(m, off, 1) > 0;
    }
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

/* Populates [off, off+len) with up to `threads` readers. */
static void populate_span(const llm_map *m, uint64_t off, uint64_t len, int threads)
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
        reader_main(&j); /* small, or no thread to spare: read on this one */
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
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
    populate_span(m, off, len, threads);
}

/* Scratch for the pread fallback of discard_read; sendfile needs none. */
typedef struct read_sink {
    int null_fd;  /* /dev/null for sendfile; -1 once refused */
    uint8_t *buf; /* allocated on the first fallback read */
} read_sink;

/* Small reads keep the kernel's asynchronous read-ahead ahead of the copy: cold 620 MB here,
 * 8 MiB preads ran at 0.4-1.6 GB/s, 1 MiB ones at 2.2-2.8, sendfile at 1.8-3.0. */
#define SINK_BUF (1u << 20)

/* Reads [off, off+len) of the file into the page cache and nowhere else: sendfile to /dev/null on
 * Linux (no copy, and no buffer in this process's RSS, which `llmap fit` predicts), else pread
 * into a small buffer. Bytes read; 0 at the end of the file; -1 on an error. */
static ssize_t discard_read(int fd, read_sink *sk, uint64_t off, size_t len)
{
#ifdef __linux__
    while (sk->null_fd >= 0) {
        off_t o = (off_t)off;
        ssize_t n = sendfile(sk->null_fd, fd, &o, len);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        close(sk->null_fd); /* refused (EINVAL: a file system without splice): copy from now on */
        sk->null_fd = -1;
    }
#endif
    if (!sk->buf && !(sk->buf = malloc(SINK_BUF)))
        return -1;
    for (;;) {
        ssize_t n = pread(fd, sk->buf, len < SINK_BUF ? len : SINK_BUF, (off_t)off);
        if (n >= 0 || errno != EINTR)
            return n;
    }
}

/* The file read through once, in order, like `dd`: the kernel's sequential read-ahead then fills
 * the page cache in large folios, which the first token maps at warm cost (read-ahead forced by
 * WILLNEED allocates single pages, and mapping 150k of them costs more than it saved). Pieces of
 * POP_PIECE bytes, so that a stop request is seen within one. */
static uint64_t read_through(const llm_map *m, bool progress, double t0, const llm_range *skip, atomic_int *stop)
{
    read_sink sk = {.null_fd = -1, .buf = NULL};
#ifdef __linux__
    sk.null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
#endif
    bool bar = progress && isatty(2), drawn = false;
    uint64_t done = 0;
    uint64_t skipped = 0;
    while (done < m->size && !(stop && atomic_load(stop))) {
        if (skip && skip->len && done >= skip->off && done < skip->off + skip->len) {
            skipped += skip->off + skip->len - done;
            done = skip->off + skip->len;
            continue;
        }
        uint64_t want = m->size - done < POP_PIECE ? m->size - done : POP_PIECE;
        if (skip && skip->len && done < skip->off && done + want > skip->off)
            want = skip->off - done;
        ssize_t n = discard_read(m->fd, &sk, done, (size_t)want);
        if (n <= 0)
            break;
        done += (uint64_t)n;
        double el = llm_now() - t0;
        if (bar && el > POP_BAR_AFTER) {
            draw_bar(m, done, m->size, el);
            drawn = true;
        }
    }
    if (sk.null_fd >= 0)
        close(sk.null_fd);
    free(sk.buf);
    if (drawn) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
    }
    return done - skipped;
}

/* What read_through reads when it runs to the end: the file less the part of `skip` inside it. */
static uint64_t bytes_to_read(const llm_map *m, const llm_range *skip)
{
    if (!skip || !skip->len || skip->off >= m->size)
        return m->size;
    uint64_t end = skip->len > m->size - skip->off ? m->size : skip->off + skip->len;
    return m->size - (end - skip->off);
}

int llm_map_populate(const llm_map *m, bool progress, llm_populate_report *rep)
{
    return llm_map_populate_except(m, NULL, progress, rep);
}

int llm_map_populate_except(const llm_map *m, const llm_range *skip, bool progress, llm_populate_report *rep)
{
    llm_populate_report local;
    if (!rep)
        rep = &local;
    memset(rep, 0, sizeof *rep);
    if (m->mode != LLM_MAP_MMAP || !m->base || m->size == 0)
        return 0;
    double t0 = llm_now();
    rep->resident_before = sampled_residency(m, skip);
    if (rep->resident_before >= POP_WARM_FRACTION)
        return 0;
    rep->cold = true;
    rep->wanted = bytes_to_read(m, skip);
    rep->bytes = read_through(m, progress, t0, skip, NULL);
    rep->seconds = llm_now() - t0;
    return 0;
}

/* ---- the read-in on a helper thread ---------------------------------------------------------- */

struct llm_populate {
    const llm_map *map;
    llm_range skip;
    bool map_in;              /* warm file: map its pages (map_in) instead of reading it (read_through) */
    pthread_t thread;
    atomic_int stop;          /* set by llm_populate_finish(stop): end after the current read */
    llm_populate_report rep;  /* bytes and seconds written by the reader, read after the join */
};

/* Bytes per map-in step: the stop flag is seen within one, and the step stays a few
 * milliseconds ahead of compute that starts right behind it. */
#define MAPIN_PIECE (4ull << 20)

/* A warm file mapped in order, piece by piece: MADV_POPULATE_READ fills this process's page
 * table for the piece in one call (fault-around batches, no trap per 64 KiB), then one read per
 * page makes the hypervisor's shadow entry (under shadow paging a guest page-table entry alone
 * still costs a trap on first use, ~1.5 us per 4 KiB page: 0.22-0.3 s for a 1.1B Q4_0 file
 * whose page cache is in small folios). Done here, ahead of the forward pass, that work leaves
 * the compute threads, which otherwise stall in it one page at a time. Bytes mapped. */
static uint64_t map_in(llm_populate *p)
{
    const llm_map *m = p->map;
    const llm_range *skip = &p->skip;
    const uint64_t ps = plat_page_size();
    atomic_int have = 1;
    uint64_t done = 0, off = 0;
    while (off < m->size && !atomic_load(&p->stop)) {
        if (skip->len && off >= skip->off && off < skip->off + skip->len) {
            off = skip->off + skip->len;
            continue;
        }
        uint64_t len = m->size - off < MAPIN_PIECE ? m->size - off : MAPIN_PIECE;
        if (skip->len && off < skip->off && off + len > skip->off)
            len = skip->off - off;
        populate_piece(m, off, len, &have);
        volatile uint8_t sink = 0;
        for (uint64_t o = off; o < off + len; o += ps)
            sink ^= m->base[o];
        (void)sink;
        off += len;
        done += len;
    }
    return done;
}

static void *background_main(void *arg)
{
    llm_populate *p = arg;
    double t0 = llm_now();
    if (p->map_in)
        p->rep.bytes = map_in(p);
    else
        p->rep.bytes = read_through(p->map, false, t0, &p->skip, &p->stop);
    p->rep.seconds = llm_now() - t0;
    return NULL;
}

llm_populate *llm_map_populate_start(const llm_map *m, const llm_range *skip, llm_populate_report *rep)
{
    llm_populate_report local;
    if (!rep)
        rep = &local;
    memset(rep, 0, sizeof *rep);
    if (m->mode != LLM_MAP_MMAP || !m->base || m->size == 0)
        return NULL;
    rep->resident_before = sampled_residency(m, skip);
    if (rep->resident_before >= POP_WARM_FRACTION)
        return NULL;
    rep->cold = true;
    rep->wanted = bytes_to_read(m, skip);
    llm_populate *p = calloc(1, sizeof *p);
    if (p) {
        p->map = m;
        p->skip = skip ? *skip : (llm_range){0, 0};
        p->rep = *rep;
        atomic_init(&p->stop, 0);
        if (pthread_create(&p->thread, NULL, background_main, p) == 0)
            return p;
        free(p);
    }
    double t0 = llm_now(); /* no thread to spare: read in now, as llm_map_populate does */
    rep->bytes = read_through(m, false, t0, skip, NULL);
    rep->seconds = llm_now() - t0;
    return NULL;
}

llm_populate *llm_map_map_in_start(const llm_map *m, const llm_range *skip)
{
    if (m->mode != LLM_MAP_MMAP || !m->base || m->size == 0)
        return NULL;
    llm_populate *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->map = m;
    p->skip = skip ? *skip : (llm_range){0, 0};
    p->map_in = true;
    p->rep.resident_before = 1.0;
    p->rep.wanted = bytes_to_read(m, skip);
    atomic_init(&p->stop, 0);
    if (pthread_create(&p->thread, NULL, background_main, p) == 0)
        return p;
    free(p); /* no thread to spare: compute maps the pages itself, as it always could */
    return NULL;
}

void llm_populate_finish(llm_populate *p, bool stop, llm_populate_report *rep)
{
    if (!p)
        return;
    if (stop)
        atomic_store(&p->stop, 1);
    pthread_join(p->thread, NULL);
    if (rep)
        *rep = p->rep;
    free(p);
}

int llm_mem_commit(void *p, size_t n)
{
    return plat_commit(p, n);
}
