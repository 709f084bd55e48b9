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
 * read and while compute runs. And it reads as two sequential streams: two reader threads take
 * the queued layers in pieces (PIECE bytes, in file order) and populate each piece into the
 * mapping (src/mem/populate.c), which a virtual disk serves markedly faster than one stream.
 * The in-flight window is lookahead + 1 layers (the one computing and the ones being read), so
 * the resident part is as large as the budget allows minus that window.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

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
    /* counters for --verbose and the benchmark */
    uint64_t bytes_read;
    double wait_seconds;  /* compute waiting for a layer to arrive */
};

static void *reader_main(void *arg)
{
    llm_stream *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!s->stop && s->q_head == s->q_tail)
            pthread_cond_wait(&s->cond, &s->lock);
        if (s->stop)
            break;
        int il = s->queue[s->q_head];
        llm_range r = s->layers[il];
        uint64_t off = r.off + s->handed[il], len = r.len - s->handed[il];
        if (len > PIECE)
            len = PIECE;
        s->handed[il] += len;
        if (s->handed[il] >= r.len) /* every piece handed out: the next reader takes the next layer */
            s->q_head = (s->q_head + 1) % s->q_cap;
        s->state[il] = LOADING;
        s->pending[il]++;
        pthread_mutex_unlock(&s->lock);
        llm_map_populate_range(s->map, off, len, 1);
        pthread_mutex_lock(&s->lock);
        s->bytes_read += len;
        if (--s->pending[il] == 0 && s->handed[il] >= r.len) {
            s->state[il] = LOADED;
            pthread_cond_broadcast(&s->done_cond);
        }
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* Queues layer il for reading unless it is resident, queued or in already. Lock held. */
static void request(llm_stream *s, int il)
{
    if (il < s->first_streamed || il >= s->n_layers || s->state[il] != IDLE)
        return;
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
        s->stop = true;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
        for (int i = 0; i < s->n_threads; i++)
            pthread_join(s->threads[i], NULL);
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->cond);
        pthread_cond_destroy(&s->done_cond);
    }
    free(s->queue);
    free(s->state);
    free(s->handed);
    free(s->pending);
    free(s->layers);
    free(s);
}

int llm_stream_first_streamed(const llm_stream *s) { return s->first_streamed; }
uint64_t llm_stream_resident_bytes(const llm_stream *s) { return s->resident_bytes; }

void llm_stream_get_stats(llm_stream *s, llm_stream_stats *st)
{
    pthread_mutex_lock(&s->lock);
    st->bytes_read = s->bytes_read;
    st->wait_seconds = s->wait_seconds;
    st->locked = s->locked;
    pthread_mutex_unlock(&s->lock);
}

/* Called before layer il is computed: drop the streamed layer behind, queue the layers ahead
 * (wrapping to the first streamed layer: the next token starts over) so the readers never idle,
 * and wait until layer il itself is in, so compute never takes demand faults. Dropping first
 * keeps the in-flight window at lookahead + 1 layers. */
void llm_stream_layer(llm_stream *s, int il)
{
    if (s->first_streamed >= s->n_layers)
        return;
    int n_streamed = s->n_layers - s->first_streamed;
    pthread_mutex_lock(&s->lock);
    int behind = il - 1 < 0 ? s->n_layers - 1 : il - 1;
    if (behind >= s->first_streamed && s->state[behind] == LOADED) {
        s->state[behind] = IDLE;
        pthread_mutex_unlock(&s->lock);
        llm_range r = inner_pages(s->layers[behind]);
        llm_map_advise(s->map, r.off, r.len, LLM_ADV_DONTNEED);
        llm_map_drop_cache(s->map, r.off, r.len);
        pthread_mutex_lock(&s->lock);
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
        while (s->state[il] != LOADED)
            pthread_cond_wait(&s->done_cond, &s->lock);
        s->wait_seconds += llm_now() - t0;
    }
    pthread_mutex_unlock(&s->lock);
}
