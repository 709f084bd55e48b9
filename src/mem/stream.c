/*
 * stream — running a model larger than the memory it may use.
 *
 * With plain mmap every token walks the weights in the same order, and the kernel's LRU evicts
 * exactly the layer needed soonest: the whole model is read from disk for every token. Streaming
 * splits the layers in two: the first ones (plus the hot tensors: embeddings, output, norms) are
 * kept resident — locked when the limit allows — and the rest are read just ahead of use by a
 * prefetch thread and dropped from the page cache right after, so they never push the resident
 * part out. Each token then reads only the streamed part from disk, and the disk never idles:
 * while layer i computes, layers i+1 .. i+lookahead are being read.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "mem/mem.h"
#include "mem/platform.h"

struct llm_stream {
    const llm_map *map;
    llm_range *layers;
    int n_layers;
    int first_streamed;   /* layers [0, first_streamed) stay resident */
    int lookahead;
    uint64_t resident_bytes;
    /* prefetch thread: reads the layers requested in `want` (a ring of layer indices) */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond, done_cond;
    int *queue, q_head, q_tail, q_cap;
    int *state;           /* per layer: 0 idle, 1 queued, 2 loading, 3 loaded */
    bool stop;
};

static void touch_range(const llm_map *m, llm_range r)
{
    /* Large sequential reads: WILLNEED starts read-ahead of the whole range, then one byte per
     * page faults the pages into this mapping so compute finds them mapped. */
    llm_map_advise(m, r.off, r.len, LLM_ADV_WILLNEED);
    uint64_t ps = plat_page_size();
    volatile uint8_t sink = 0;
    for (uint64_t o = r.off; o < r.off + r.len && o < m->size; o += ps)
        sink ^= m->base[o];
    (void)sink;
}

static void *prefetch_main(void *arg)
{
    llm_stream *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!s->stop && s->q_head == s->q_tail)
            pthread_cond_wait(&s->cond, &s->lock);
        if (s->stop)
            break;
        int il = s->queue[s->q_head];
        s->q_head = (s->q_head + 1) % s->q_cap;
        if (s->state[il] != 1)
            continue;
        s->state[il] = 2;
        pthread_mutex_unlock(&s->lock);
        touch_range(s->map, s->layers[il]);
        pthread_mutex_lock(&s->lock);
        if (s->state[il] == 2)
            s->state[il] = 3;
        pthread_cond_broadcast(&s->done_cond);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static void request(llm_stream *s, int il)
{
    if (il < s->first_streamed || il >= s->n_layers || s->state[il] != 0)
        return;
    s->state[il] = 1;
    s->queue[s->q_tail] = il;
    s->q_tail = (s->q_tail + 1) % s->q_cap;
    pthread_cond_signal(&s->cond);
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
    for (int i = 0; i < n_hot; i++)
        touch_range(m, hot[i]);
    for (int i = 0; i < pinned; i++)
        touch_range(m, layers[i]);
    s->q_cap = n_layers + 1;
    s->queue = llm_xcalloc((size_t)s->q_cap, sizeof *s->queue);
    s->state = llm_xcalloc((size_t)(n_layers ? n_layers : 1), sizeof *s->state);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    pthread_cond_init(&s->done_cond, NULL);
    if (pthread_create(&s->thread, NULL, prefetch_main, s)) {
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
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->thread, NULL);
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->cond);
        pthread_cond_destroy(&s->done_cond);
    }
    free(s->queue);
    free(s->state);
    free(s->layers);
    free(s);
}

int llm_stream_first_streamed(const llm_stream *s) { return s->first_streamed; }
uint64_t llm_stream_resident_bytes(const llm_stream *s) { return s->resident_bytes; }

/* Called before layer il is computed: drop the streamed layer behind, queue the ones ahead
 * (wrapping to the first streamed layer: the next token starts over), and wait until layer il
 * itself is in, so compute never takes demand faults one page at a time. */
void llm_stream_layer(llm_stream *s, int il)
{
    if (s->first_streamed >= s->n_layers)
        return;
    pthread_mutex_lock(&s->lock);
    int behind = il - 1 < 0 ? s->n_layers - 1 : il - 1;
    if (behind >= s->first_streamed && s->state[behind] == 3) {
        s->state[behind] = 0;
        pthread_mutex_unlock(&s->lock);
        llm_range r = s->layers[behind];
        llm_map_advise(s->map, r.off, r.len, LLM_ADV_DONTNEED);
        llm_map_drop_cache(s->map, r.off, r.len);
        pthread_mutex_lock(&s->lock);
    }
    int n_streamed = s->n_layers - s->first_streamed;
    for (int k = 0; k <= s->lookahead && k < n_streamed; k++) {
        int next = il + k;
        if (next < s->first_streamed)
            next = s->first_streamed + (next - il);
        else if (next >= s->n_layers)
            next = s->first_streamed + (next - s->n_layers) % n_streamed;
        request(s, next);
    }
    if (il >= s->first_streamed)
        while (s->state[il] == 1 || s->state[il] == 2)
            pthread_cond_wait(&s->done_cond, &s->lock);
    pthread_mutex_unlock(&s->lock);
}
