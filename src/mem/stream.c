/*
 * stream — running a model larger than the memory it may use.
 *
 * With plain mmap every token walks the weights in the same order, and the kernel's LRU evicts
 * exactly the layer needed soonest: the whole model is read from disk for every token. Streaming
 * splits the layers in two: the first ones (plus the hot tensors: output, norms) are kept
 * resident — locked when allowed, so reclaim under a tight limit cannot take them — and the rest
 * are read just ahead of use and dropped from the page cache right after, so they never push the
 * resident part out. Each token then reads only the streamed part from disk.
 *
 * The bound is the disk: per token, streamed bytes ÷ read bandwidth. Two things keep the disk at
 * that bound. The read never idles — the next layer is always queued while the current one is
 * read and while compute runs. And the reads are large and several are in flight at once:
 * readers take the queued layers in pieces (PIECE bytes, in file order).
 * The in-flight window is lookahead + 1 layers (the one computing and the ones being read), so
 * the resident part is as large as the budget allows minus that window.
 *
 * Buffers (llm_stream_set_binder, what llmap uses): by default a streamed layer would be read
 * into the mapping and dropped from it, so its virtual pages get new physical pages every token.
 * Where mapping a page is expensive — under shadow paging (this machine kind's hypervisor) every
 * newly mapped page costs a trap on first touch, about a second per token for 700 MB — the
 * streamed layers are instead read into lookahead + 1 fixed private buffers whose pages stay
 * mapped, and the model rebinds the layer's weight pointers to the buffer before computing it.
 * A buffer is reused only after its layer is behind every walker: forward passes over the
 * streamed layers take turns (a walk starts at layer 0 and ends with the call for layer n_layers).
 * (Without a binder the mapping mode remains: populate.c reads pieces into the mapping.)
 *
 * The buffers are filled with O_DIRECT reads by N_READERS threads taking pieces in turn, straight
 * from the device into buffers backed by 2 MiB pages (plat_map_anon_huge): no copy, no page cache to drop,
 * and on this machine kind's virtual disk 5-6 GB/s alone, faster than a cached `dd` (~4 GB/s).
 * The alternative, measured every cycle of tokens in case the disk, the file system or the
 * machine's huge pages say otherwise (choose_read_mode), is one reader with plain preads through
 * the page cache on a descriptor of its own (one sequential stream the kernel reads ahead), each
 * piece dropped from the cache behind the copy (drop_behind). In a 600 MiB cgroup with the 1.1B
 * Q8_0 model the direct reads made 6.4-9.5 tokens/s where the cached ones made 3.7-4.9, same
 * runs (bench/memory.md). The readers run at a raised priority when allowed (raise_priority): they
 * need little CPU, but need it at once. These calls live here, not in platform.c, with
 * populate.c's madvise: they are this file's whole OS dependence
 * (open/pread/close/setpriority/madvise).
 *
 * The reader never waits for compute while a buffer is free: at the end of a walk the first
 * streamed layers of the next one are queued at once, so they are read during the output
 * projection, sampling and the resident layers.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include "mem/mem.h"
#include "mem/platform.h"

#define N_READERS 2
#define PIECE (8ull << 20) /* a read request: large and sequential, but half a layer or less */

enum { IDLE, QUEUED, LOADING, LOADED };

struct llm_stream {
    const llm_map *map;
    llm_range *layers;
    int n_layers;
    int first_streamed;   /* layers [0, first_streamed) stay resident */
    int lookahead;
    uint64_t resident_bytes;
    bool locked;          /* the resident part is mlocked */
    /* readers: take pieces of the queued layers, front first */
    pthread_t threads[N_READERS];
    int n_threads;
    pthread_mutex_t lock;
    pthread_cond_t cond, done_cond;
    int *queue, q_head, q_tail, q_cap; /* layers waiting for (more of) their pieces to be taken */
    int *state;                        /* per layer: IDLE, QUEUED, LOADING, LOADED */
    uint64_t *handed;                  /* per layer: bytes handed out to readers so far */
    int *pending;                      /* per layer: pieces handed out and not yet read */
    bool stop;
    /* buffer mode (llm_stream_set_binder): slots of max_layer bytes + a page */
    llm_stream_bind_fn bind;
    void *bind_user;
    uint8_t **slot;       /* lookahead + 1 private buffers, NULL in mapping mode */
    int n_slots;
    int *slot_layer;      /* per slot: the layer it holds or is receiving, -1 free */
    int *layer_slot;      /* per layer: its slot, -1 none */
    uint64_t max_layer;
    uint64_t slot_bytes;  /* a buffer's size: max_layer and two pages, in whole huge pages */
    int read_fd;          /* buffer mode: the file opened again, for one sequential stream */
    int direct_fd;        /* buffer mode: the file opened with O_DIRECT, -1 when refused */
    bool direct;          /* the read mode now: direct_fd with N_READERS readers, else read_fd */
    bool direct_refused;  /* an O_DIRECT read failed: cached reads only */
    int active_readers;   /* readers taking work (mapping mode: all); the others only wait */
    uint64_t cache_from, cache_end; /* cached reads: bytes read and not yet dropped (drop_behind) */
    /* buffer mode: which read mode is faster, measured on this machine now (choose_read_mode) */
    int n_walks;          /* walks begun */
    double walk_t0;       /* when the current walk began */
    bool walk_direct;     /* the read mode during the current walk */
    double trial_s[2];    /* seconds of the measured trial walk, per mode (cached, direct) */
    int walks_direct;     /* walks read in direct mode (for --verbose) */
    int next_reader_id;
    bool walking;         /* a forward pass is between layer 0 and its end call */
    pthread_t walker;
    pthread_cond_t walk_cond;
    /* counters for --verbose and the benchmark */
    uint64_t bytes_read;
    double wait_seconds;  /* compute waiting for a layer to arrive */
    double read_seconds;  /* time with a read in flight (the disk busy on our behalf) */
    double idle_seconds;  /* time with no read in flight (every buffer full or nothing queued) */
    int in_flight;        /* reads in progress */
    double busy_since, idle_since; /* when in_flight last became > 0, and 0 */
    /* LLMAP_STREAM_TRACE=1: one record per walk, printed at free (the per-token timeline) */
    struct walk_rec {
        double t0, t_end, t_next; /* the walk's start, its end call, the next walk's start */
        double wait, read, idle;  /* counters at t0, then their growth until t_next */
        uint64_t bytes;
        bool direct;
    } *trace;
    int n_trace;
    int reader_nice;      /* the reader's priority: READER_NICE when raising it was allowed */
    bool may_raise;       /* LLMAP_STREAM_NICE=0 was not set */
    int fixed_mode;       /* LLMAP_STREAM_DIRECT: 0 page cache, 1 O_DIRECT, -1 unset: measured */
};

#define PAGE 4096u /* slot offset alignment: a layer keeps its file offset modulo a page */

/* Cached reads drop what they read from the page cache behind them in whole units of this size,
 * aligned in the file. The kernel reads ahead into large folios (up to 2 MiB, naturally aligned
 * in the file), and a drop whose end falls inside a folio evicts the whole folio, pages already
 * read ahead past the piece included: the next piece then starts with a synchronous read and
 * the read-ahead pipeline starts over. Dropping each 8 MiB piece right after its copy that way
 * halved the reader: alone on the model file, 1.5-2.0 GB/s against 4.2-4.6 GB/s for the same
 * reads dropped up to the last 2 MiB boundary behind them (and `dd bs=4M`: 4.3). */
#define DROP_UNIT (2ull << 20)

/* After a cached read of [off, off + len): drops the cached bytes behind the reader up to the last
 * DROP_UNIT boundary; a read that does not continue the previous one first drops the rest of the
 * previous run (nothing reads on from there). Only the one cached reader calls it (buffer mode
 * reads through the page cache with one reader), so cache_from/cache_end need no lock. */
static void drop_behind(llm_stream *s, uint64_t off, uint64_t len)
{
    if (off != s->cache_end) {
        if (s->cache_end > s->cache_from)
            llm_map_drop_cache(s->map, s->cache_from, s->cache_end - s->cache_from);
        s->cache_from = off;
    }
    s->cache_end = off + len;
    uint64_t upto = s->cache_end / DROP_UNIT * DROP_UNIT;
    if (upto > s->cache_from) {
        llm_map_drop_cache(s->map, s->cache_from, upto - s->cache_from);
        s->cache_from = upto;
    }
}

/* Buffer mode: one piece of the file into a slot (the copy is what compute uses), then out of
 * the page cache behind it. A short read (file shrank) leaves zeros, as the mapping's SIGBUS
 * guard does; llm_map_check reports the shrunken file. An O_DIRECT read that fails (a file
 * system that opens with O_DIRECT but refuses the reads, an alignment it wants larger than a
 * page) reads the rest of the piece through the page cache instead: false then, and the caller
 * stops reading direct. Zeros in the weights would be wrong answers, not an error. */
static bool read_piece(llm_stream *s, uint8_t *dst, uint64_t off, uint64_t len, bool direct)
{
    const llm_map *m = s->map;
    int cached_fd = s->read_fd >= 0 ? s->read_fd : m->fd;
    int fd = direct ? s->direct_fd : cached_fd;
    bool direct_ok = true;
    uint64_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, dst + done, (size_t)(len - done), (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && fd != cached_fd) {
            fd = cached_fd;
            direct_ok = false;
            continue;
        }
        if (n <= 0) {
            memset(dst + done, 0, (size_t)(len - done));
            break;
        }
        done += (uint64_t)n;
    }
    if (!direct)
        drop_behind(s, off, len);
    else if (!direct_ok) /* (not drop_behind: another direct reader may be falling back too) */
        llm_map_drop_cache(m, off, len);
    return direct_ok;
}

/* The bytes a reader fetches for layer il: in buffer mode the layer's range rounded out to
 * pages (the slot holds it from its start, page-aligned like the file), else the range itself. */
static llm_range fetch_span(const llm_stream *s, int il)
{
    llm_range r = s->layers[il];
    if (!s->slot)
        return r;
    uint64_t lo = r.off / PAGE * PAGE, hi = (r.off + r.len + PAGE - 1) / PAGE * PAGE;
    return (llm_range){lo, hi - lo};
}

/* The reader sleeps on the disk most of the time and needs the CPU only briefly between reads
 * (the copy out of the page cache, the drop behind it). At an equal share on a busy machine it
 * stays runnable for milliseconds after each read while the disk idles: strace at load 7 showed
 * gaps of 3-10 ms between 8 MiB reads that take 2-5 ms. A higher priority lets it in at once,
 * and costs compute little because it uses little. Needs CAP_SYS_NICE or RLIMIT_NICE; without
 * them it stays at the default. LLMAP_STREAM_NICE=0 leaves it, to compare. Linux: a thread's
 * nice value is set through its thread id. */
#define READER_NICE (-10)

static bool raise_priority(const llm_stream *s)
{
#ifdef __linux__
    return s->may_raise && setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), READER_NICE) == 0;
#else
    (void)s;
    return false;
#endif
}

/* Switches the read mode (lock held): direct reads use every reader, cached reads one. */
static void set_read_mode(llm_stream *s, bool direct)
{
    if (direct == s->direct)
        return;
    s->direct = direct;
    s->active_readers = direct ? N_READERS : 1;
    pthread_cond_broadcast(&s->cond); /* the other readers join or leave */
}

static void *reader_main(void *arg)
{
    llm_stream *s = arg;
    bool boosted = raise_priority(s);
    pthread_mutex_lock(&s->lock);
    s->reader_nice = boosted ? READER_NICE : 0;
    pthread_mutex_unlock(&s->lock);
    pthread_mutex_lock(&s->lock);
    int id = s->next_reader_id++;
    for (;;) {
        while (!s->stop && (s->q_head == s->q_tail || id >= s->active_readers))
            pthread_cond_wait(&s->cond, &s->lock);
        if (s->stop)
            break;
        int il = s->queue[s->q_head];
        llm_range r = fetch_span(s, il);
        uint64_t off = r.off + s->handed[il], len = r.len - s->handed[il];
        if (len > PIECE)
            len = PIECE;
        s->handed[il] += len;
        if (s->handed[il] >= r.len) /* every piece handed out: the next reader takes the next layer */
            s->q_head = (s->q_head + 1) % s->q_cap;
        s->state[il] = LOADING;
        s->pending[il]++;
        uint8_t *dst = s->slot ? s->slot[s->layer_slot[il]] + (off - r.off) : NULL;
        bool direct = s->direct;
        if (s->in_flight++ == 0) { /* the disk starts working for us */
            s->busy_since = llm_now();
            s->idle_seconds += s->busy_since - s->idle_since;
        }
        pthread_mutex_unlock(&s->lock);
        bool direct_ok = true;
        if (dst)
            direct_ok = read_piece(s, dst, off, len, direct);
        else
            llm_map_populate_range(s->map, off, len, 1);
        pthread_mutex_lock(&s->lock);
        if (!direct_ok && !s->direct_refused) {
            s->direct_refused = true; /* from now on through the page cache only */
            set_read_mode(s, false);
        }
        if (--s->in_flight == 0) {
            s->idle_since = llm_now();
            s->read_seconds += s->idle_since - s->busy_since;
        }
        s->bytes_read += len;
        if (--s->pending[il] == 0 && s->handed[il] >= r.len) {
            s->state[il] = LOADED;
            pthread_cond_broadcast(&s->done_cond);
        }
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* LLMAP_STREAM_TRACE=1: the per-token timeline, for tuning. A record per walk (up to TRACE_MAX):
 * the counters at its start, its end call, and the counters at the next walk's start (or the
 * free), so the records tile the time. Printed at free as one line per walk: compute's time and
 * how much of it was waiting for a layer, the time from the walk's end to the next (output
 * projection, sampling), and what the disk did over the whole span. */
#define TRACE_MAX 4096

/* Seconds with a read in flight, and without, up to now (the interval in progress included).
 * Lock held. */
static double busy_until(const llm_stream *s, double now)
{
    return s->read_seconds + (s->in_flight > 0 ? now - s->busy_since : 0);
}
static double idle_until(const llm_stream *s, double now)
{
    return s->idle_seconds + (s->in_flight == 0 ? now - s->idle_since : 0);
}

/* Closes the open record (if any) at now. Lock held. */
static void trace_close(llm_stream *s, double now)
{
    if (!s->trace || s->n_trace == 0 || s->trace[s->n_trace - 1].t_next > 0)
        return;
    struct walk_rec *w = &s->trace[s->n_trace - 1];
    w->t_next = now;
    w->wait = s->wait_seconds - w->wait;
    w->read = busy_until(s, now) - w->read;
    w->idle = idle_until(s, now) - w->idle;
    w->bytes = s->bytes_read - w->bytes;
}

/* At a walk's start (begin) or end call. Lock held. */
static void trace_walk(llm_stream *s, bool begin)
{
    if (!s->trace)
        return;
    double now = llm_now();
    if (!begin) {
        if (s->n_trace > 0 && s->trace[s->n_trace - 1].t_next == 0)
            s->trace[s->n_trace - 1].t_end = now;
        return;
    }
    trace_close(s, now);
    if (s->n_trace < TRACE_MAX)
        s->trace[s->n_trace++] = (struct walk_rec){now,         0, 0, s->wait_seconds, busy_until(s, now),
                                                   idle_until(s, now), s->bytes_read, s->direct};
}

static void trace_print(llm_stream *s)
{
    trace_close(s, llm_now());
    for (int i = 0; i < s->n_trace; i++) {
        const struct walk_rec *w = &s->trace[i];
        double span = w->t_next - w->t0, walk = (w->t_end > 0 ? w->t_end : w->t_next) - w->t0;
        fprintf(stderr,
                "llmap: stream walk %3d: %6.1f ms = compute %6.1f + waiting for a layer %6.1f + after the walk %5.1f "
                "| disk: %6.1f MiB, reading %6.1f ms (%.2f GB/s), idle %5.1f ms%s\n",
                i, span * 1e3, (walk - w->wait) * 1e3, w->wait * 1e3, (span - walk) * 1e3, w->bytes / 1048576.0,
                w->read * 1e3, w->read > 0 ? w->bytes / w->read / 1e9 : 0.0, w->idle * 1e3,
                w->direct ? ", O_DIRECT" : "");
    }
}

/* Queues layer il for reading unless it is resident, queued or in already. Lock held. */
static void request(llm_stream *s, int il)
{
    if (il < s->first_streamed || il >= s->n_layers || s->state[il] != IDLE)
        return;
    if (s->slot) {
        int k = 0;
        while (k < s->n_slots && s->slot_layer[k] >= 0)
            k++;
        if (k == s->n_slots)
            return; /* every buffer busy: requested again once one is released */
        s->slot_layer[k] = il;
        s->layer_slot[il] = k;
    }
    s->state[il] = QUEUED;
    s->handed[il] = 0;
    s->pending[il] = 0;
    s->queue[s->q_tail] = il;
    s->q_tail = (s->q_tail + 1) % s->q_cap;
    pthread_cond_broadcast(&s->cond);
}

/* The whole pages inside r: layers share their edge pages with their neighbours (tensor data
 * is aligned to 32 bytes, not to pages), and dropping or locking a shared page would hit the
 * neighbour too. */
static llm_range inner_pages(llm_range r)
{
    uint64_t ps = plat_page_size(), lo = (r.off + ps - 1) / ps * ps, hi = (r.off + r.len) / ps * ps;
    return hi > lo ? (llm_range){lo, hi - lo} : (llm_range){lo, 0};
}

/* True when r shares a page with a streamed layer (norm vectors lie inside their layer's range):
 * such a page must not be locked, or dropping the layer (MADV_DONTNEED refuses locked pages)
 * would fail. */
static bool touches_streamed(const llm_stream *s, llm_range r)
{
    uint64_t ps = plat_page_size(), lo = r.off / ps, hi = (r.off + r.len + ps - 1) / ps;
    for (int i = s->first_streamed; i < s->n_layers; i++) {
        uint64_t l_lo = s->layers[i].off / ps, l_hi = (s->layers[i].off + s->layers[i].len + ps - 1) / ps;
        if (lo < l_hi && l_lo < hi)
            return true;
    }
    return false;
}

/* Reads a resident range in now (two readers, large pieces) and locks it when allowed, so that
 * reclaim under a tight memory limit takes streamed pages, never these. */
static void pin(llm_stream *s, llm_range r)
{
    if (r.len == 0)
        return;
    llm_map_populate_range(s->map, r.off, r.len, N_READERS);
    llm_range in = inner_pages(r);
    if (!s->locked || in.len == 0 || touches_streamed(s, in))
        return;
    if (plat_mlock(s->map->base + in.off, in.len) != 0)
        s->locked = false; /* RLIMIT_MEMLOCK without CAP_IPC_LOCK: stay unlocked (the LRU keeps it, mostly) */
}

llm_stream *llm_stream_new(const llm_map *m, const llm_range *layers, int n_layers, const llm_range *hot, int n_hot,
                           uint64_t budget, int lookahead, llm_err *err)
{
    if (m->mode != LLM_MAP_MMAP) {
        llm_errf(err, "%s: streaming needs a memory-mapped model (not --no-mmap)", m->path);
        return NULL;
    }
    llm_stream *s = llm_xcalloc(1, sizeof *s);
    s->map = m;
    s->read_fd = -1;
    s->direct_fd = -1;
    const char *env = getenv("LLMAP_STREAM_NICE"); /* (read once, before any thread starts) */
    s->may_raise = !(env && *env && atoi(env) == 0);
    env = getenv("LLMAP_STREAM_DIRECT");
    s->fixed_mode = env && *env ? atoi(env) != 0 : -1;
    env = getenv("LLMAP_STREAM_TRACE");
    if (env && *env && atoi(env) != 0)
        s->trace = llm_xcalloc(TRACE_MAX, sizeof *s->trace);
    s->n_layers = n_layers;
    s->lookahead = lookahead > 0 ? lookahead : 2;
    s->layers = llm_xmalloc(sizeof *s->layers * (size_t)(n_layers ? n_layers : 1));
    memcpy(s->layers, layers, sizeof *layers * (size_t)n_layers);
    uint64_t hot_bytes = 0, max_layer = 0;
    for (int i = 0; i < n_hot; i++)
        hot_bytes += hot[i].len;
    for (int i = 0; i < n_layers; i++)
        max_layer = layers[i].len > max_layer ? layers[i].len : max_layer;
    /* resident = hot + pinned layers; the in-flight window needs (lookahead + 1) layers */
    uint64_t window = (uint64_t)(s->lookahead + 1) * max_layer, used = hot_bytes + window;
    int pinned = 0;
    while (pinned < n_layers && used + layers[pinned].len <= budget)
        used += layers[pinned++].len;
    s->first_streamed = pinned;
    s->resident_bytes = used - window;
    /* Locking only makes sense when something is streamed past the resident part. */
    s->locked = pinned < n_layers && !m->locked;
    for (int i = 0; i < n_hot; i++)
        pin(s, hot[i]);
    if (pinned > 0) {
        /* the pinned layers are usually contiguous: one span reads them fastest */
        uint64_t lo = layers[0].off, hi = layers[0].off + layers[0].len;
        bool contiguous = true;
        for (int i = 1; i < pinned; i++) {
            contiguous &= layers[i].off <= hi;
            hi = layers[i].off + layers[i].len > hi ? layers[i].off + layers[i].len : hi;
        }
        if (contiguous)
            pin(s, (llm_range){lo, hi - lo});
        else
            for (int i = 0; i < pinned; i++)
                pin(s, layers[i]);
    }
    s->q_cap = n_layers + 1;
    s->queue = llm_xcalloc((size_t)s->q_cap, sizeof *s->queue);
    size_t nl = (size_t)(n_layers ? n_layers : 1);
    s->state = llm_xcalloc(nl, sizeof *s->state);
    s->handed = llm_xcalloc(nl, sizeof *s->handed);
    s->pending = llm_xcalloc(nl, sizeof *s->pending);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    pthread_cond_init(&s->done_cond, NULL);
    s->active_readers = N_READERS;
    s->idle_since = llm_now();
    for (int i = 0; i < N_READERS && pinned < n_layers; i++)
        if (pthread_create(&s->threads[s->n_threads], NULL, reader_main, s) == 0)
            s->n_threads++;
    if (pinned < n_layers && s->n_threads == 0) {
        llm_errf(err, "cannot start the prefetch thread");
        llm_stream_free(s);
        return NULL;
    }
    return s;
}

void llm_stream_free(llm_stream *s)
{
    if (!s)
        return;
    if (s->queue) {
        pthread_mutex_lock(&s->lock);
        if (s->trace)
            trace_print(s);
        s->stop = true;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
        for (int i = 0; i < s->n_threads; i++)
            pthread_join(s->threads[i], NULL);
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->cond);
        pthread_cond_destroy(&s->done_cond);
    }
    if (s->slot) {
        for (int il = s->first_streamed; il < s->n_layers; il++) { /* weights back to the mapping */
            s->bind(s->bind_user, il, s->map->base + s->layers[il].off);
            /* and out of the page cache what the kernel read ahead past the last piece read */
            llm_range r = inner_pages(s->layers[il]);
            llm_map_drop_cache(s->map, r.off, r.len);
        }
        for (int k = 0; k < s->n_slots; k++)
            plat_unmap(s->slot[k], s->slot_bytes);
        pthread_cond_destroy(&s->walk_cond);
        if (s->read_fd >= 0)
            close(s->read_fd);
        if (s->direct_fd >= 0)
            close(s->direct_fd);
    }
    free(s->trace);
    free(s->slot);
    free(s->slot_layer);
    free(s->layer_slot);
    free(s->bind_user);
    free(s->queue);
    free(s->state);
    free(s->handed);
    free(s->pending);
    free(s->layers);
    free(s);
}

/* Streaming buffers are aligned to and backed by 2 MiB pages where the kernel gives them
 * (plat_map_anon_huge). O_DIRECT reads into 4 KiB pages
 * ran at 1.4-1.8 GB/s on this machine kind's virtual disk, with 1-4 readers and 8-16 MiB reads:
 * every read pins and maps each page of its buffer for the device. Into 2 MiB pages the same
 * reads ran at 5.0-6.0 GB/s, faster than a cached `dd` (4.2), and without the copy out of the
 * page cache. Compute reading the buffers takes fewer TLB misses too. */
#define HUGE_PAGE (2ull << 20)

int llm_stream_set_binder(llm_stream *s, llm_stream_bind_fn bind, void *user, llm_err *err)
{
    s->bind_user = user; /* owned from here on, also on failure */
    if (s->first_streamed >= s->n_layers || s->slot)
        return 0;
    for (int i = s->first_streamed; i < s->n_layers; i++)
        s->max_layer = s->layers[i].len > s->max_layer ? s->layers[i].len : s->max_layer;
    int n = s->lookahead + 1;
    s->slot_bytes = (s->max_layer + 2 * PAGE + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    uint8_t **slot = llm_xcalloc((size_t)n, sizeof *slot);
    for (int k = 0; k < n; k++) {
        slot[k] = plat_map_anon_huge(s->slot_bytes);
        if (!slot[k]) {
            for (int j = 0; j < k; j++)
                plat_unmap(slot[j], s->slot_bytes);
            free(slot);
            return llm_errf(err, "%s: cannot allocate %d streaming buffers of %.1f MiB", s->map->path, n,
                            s->max_layer / 1048576.0);
        }
        memset(slot[k], 0, s->slot_bytes); /* mapped once, for good */
    }
    s->read_fd = open(s->map->path, O_RDONLY | O_CLOEXEC); /* -1: share the map's descriptor */
    if (s->fixed_mode != 0)
        s->direct_fd = open(s->map->path, O_RDONLY | O_CLOEXEC | O_DIRECT); /* -1: not supported here */
    pthread_mutex_lock(&s->lock);
    s->direct = s->fixed_mode != 0 && s->direct_fd >= 0; /* (measured from walk 1 on, unless fixed) */
    s->active_readers = s->direct ? N_READERS : 1;
    s->slot_layer = llm_xmalloc(sizeof *s->slot_layer * (size_t)n);
    s->layer_slot = llm_xmalloc(sizeof *s->layer_slot * (size_t)s->n_layers);
    for (int k = 0; k < n; k++)
        s->slot_layer[k] = -1;
    for (int i = 0; i < s->n_layers; i++)
        s->layer_slot[i] = -1;
    s->bind = bind;
    s->n_slots = n;
    pthread_cond_init(&s->walk_cond, NULL);
    s->slot = slot;
    pthread_mutex_unlock(&s->lock);
    return 0;
}

int llm_stream_first_streamed(const llm_stream *s) { return s->first_streamed; }
uint64_t llm_stream_resident_bytes(const llm_stream *s) { return s->resident_bytes; }

void llm_stream_get_stats(llm_stream *s, llm_stream_stats *st)
{
    pthread_mutex_lock(&s->lock);
    st->bytes_read = s->bytes_read;
    st->wait_seconds = s->wait_seconds;
    st->read_seconds = busy_until(s, llm_now());
    st->reader_nice = s->reader_nice;
    st->walks = s->n_walks;
    st->walks_direct = s->walks_direct;
    st->locked = s->locked;
    pthread_mutex_unlock(&s->lock);
}

/* Releases layer il (behind every walker now): its slot or its mapped pages. Lock held. */
static void release(llm_stream *s, int il)
{
    if (il < s->first_streamed || il >= s->n_layers || s->state[il] != LOADED)
        return;
    s->state[il] = IDLE;
    if (s->slot) {
        s->slot_layer[s->layer_slot[il]] = -1;
        s->layer_slot[il] = -1;
        return;
    }
    pthread_mutex_unlock(&s->lock);
    llm_range r = inner_pages(s->layers[il]);
    llm_map_advise(s->map, r.off, r.len, LLM_ADV_DONTNEED);
    llm_map_drop_cache(s->map, r.off, r.len);
    pthread_mutex_lock(&s->lock);
}

/* Buffer mode: a walk (forward pass) owns the buffers from layer 0 to its end call; another
 * thread's walk waits for it. The same thread starting over without an end call (an older
 * caller) ends its previous walk. Lock held. */
static void walk_begin(llm_stream *s)
{
    pthread_t self = pthread_self();
    while (s->walking && !pthread_equal(s->walker, self))
        pthread_cond_wait(&s->walk_cond, &s->lock);
    s->walking = true;
    s->walker = self;
}

/* Buffer mode reads either around the page cache (O_DIRECT, N_READERS readers taking pieces in
 * turn, so that several requests are in flight: there is no kernel read-ahead to lose) or through
 * it (one reader, plain pread, dropped behind: one sequential stream the kernel reads ahead).
 * O_DIRECT into the huge-page buffers (plat_map_anon_huge) is the faster one here: alone on the disk
 * 5.0-6.0 GB/s against 4.2-4.6 cached, and it needs almost no CPU, where the cached read copies
 * every byte out of the page cache (perf: a third of the process's CPU time in _copy_to_iter on
 * a busy machine) in competition with compute. But a file system may refuse O_DIRECT, and a
 * disk, a file system or a machine whose huge pages ran out may serve it slower; so the choice
 * is measured rather than assumed.
 *
 * The walks (tokens) are timed from one walk's start to the next's, in cycles of TRIAL_CYCLE
 * walks: the first direct, the second cached, and the rest in the mode whose trial walk took
 * less time. Walk 0 (the prompt, a batch) reads direct and is not a trial. So at most one walk
 * in a cycle runs in the slower mode. LLMAP_STREAM_DIRECT=0 or 1 fixes the mode. Lock held, at
 * the start of a walk. */
#define TRIAL_CYCLE 32

static void choose_read_mode(llm_stream *s)
{
    double now = llm_now();
    int w = s->n_walks++, pos = w > 0 ? (w - 1) % TRIAL_CYCLE : -1; /* this walk's place in its cycle */
    if (pos == 1 || pos == 2) /* the walk that just ended was a trial (cycle place 0 or 1) */
        s->trial_s[s->walk_direct] = now - s->walk_t0;
    if (s->fixed_mode < 0 && s->direct_fd >= 0 && !s->direct_refused && pos >= 0)
        set_read_mode(s, pos == 0 ? true : pos == 1 ? false : s->trial_s[1] < s->trial_s[0]);
    s->walk_t0 = now;
    s->walk_direct = s->direct;
    s->walks_direct += s->direct;
}

/* Called before layer il is computed (il == n_layers: after the last one, the walk is over):
 * release the streamed layer behind, queue the layers ahead (wrapping to the first streamed
 * layer: the next token starts over) so the readers never idle, and wait until layer il itself
 * is in, so compute never takes demand faults. Releasing first keeps the in-flight window at
 * lookahead + 1 layers. */
void llm_stream_layer(llm_stream *s, int il)
{
    if (s->first_streamed >= s->n_layers || il < 0 || il > s->n_layers)
        return;
    int n_streamed = s->n_layers - s->first_streamed;
    pthread_mutex_lock(&s->lock);
    if (s->slot && il == 0) {
        walk_begin(s);
        choose_read_mode(s);
    }
    if (il == 0 || il == s->n_layers)
        trace_walk(s, il == 0);
    release(s, il - 1 < 0 ? s->n_layers - 1 : il - 1);
    if (il == s->n_layers) {
        if (s->slot && s->walking && pthread_equal(s->walker, pthread_self())) {
            s->walking = false;
            pthread_cond_broadcast(&s->walk_cond);
        }
        /* The next walk starts with the first streamed layers: queue as many as buffers allow
         * now, so the reader works through the output projection, sampling and the resident
         * layers instead of idling until the next walk's first call. */
        for (int k = 0; k <= s->lookahead && k < n_streamed; k++)
            request(s, s->first_streamed + k);
        pthread_mutex_unlock(&s->lock);
        return;
    }
    for (int k = 0; k <= s->lookahead && k < n_streamed; k++) {
        int next = il + k;
        if (next < s->first_streamed)
            next = s->first_streamed + (next - il);
        else if (next >= s->n_layers)
            next = s->first_streamed + (next - s->n_layers) % n_streamed;
        request(s, next);
    }
    if (il >= s->first_streamed && s->state[il] != LOADED) {
        double t0 = llm_now();
        while (s->state[il] == IDLE) { /* no buffer was free: release any loaded layer but this one */
            for (int j = s->first_streamed; j < s->n_layers && s->state[il] == IDLE; j++)
                if (j != il && s->state[j] == LOADED) {
                    release(s, j);
                    request(s, il);
                }
            if (s->state[il] == IDLE)
                pthread_cond_wait(&s->done_cond, &s->lock);
        }
        while (s->state[il] != LOADED)
            pthread_cond_wait(&s->done_cond, &s->lock);
        s->wait_seconds += llm_now() - t0;
    }
    if (s->slot && il >= s->first_streamed)
        s->bind(s->bind_user, il, s->slot[s->layer_slot[il]] + s->layers[il].off % PAGE);
    pthread_mutex_unlock(&s->lock);
}
