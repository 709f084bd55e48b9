/*
 * sample.c — the token sampler: penalties, greedy, top-k, temperature, top-p, min-p and the
 * final draw (order and definitions in sample.h). It draws with util's llm_rng.
 *
 * The vocabulary can be 150k tokens, so nothing here sorts the whole distribution unless it
 * must: top-k selects with a bounded heap; top-p first tries the best 128 (enough for real,
 * peaked distributions) and otherwise finds its cut with a histogram of the logits, sorting
 * only the bucket where the mass crosses top_p.
 */
#include "sample/sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- parameters ---------------------------------------------------------------------------- */

void llm_sampler_params_default(llm_sampler_params *p)
{
    memset(p, 0, sizeof *p);
    p->temperature = 0.8f;
    p->top_k = 40;
    p->top_p = 0.9f;
    p->min_p = 0.0f;
    p->repeat_penalty = 1.1f;
    p->repeat_last_n = 64;
}

/* ---- building blocks ----------------------------------------------------------------------- */

void llm_apply_penalties(float *logits, int n_vocab, const int32_t *window, size_t n_window, float repeat_penalty,
                         float frequency_penalty, float presence_penalty, uint32_t *counts)
{
    for (size_t i = 0; i < n_window; i++)
        if (window[i] >= 0 && window[i] < n_vocab)
            counts[window[i]]++;
    /* Each distinct token once: its count is cleared as it is applied. */
    for (size_t i = 0; i < n_window; i++) {
        int32_t id = window[i];
        if (id < 0 || id >= n_vocab || counts[id] == 0)
            continue;
        uint32_t c = counts[id];
        counts[id] = 0;
        float l = logits[id];
        l = l <= 0.0f ? l * repeat_penalty : l / repeat_penalty;
        l -= (float)c * frequency_penalty + presence_penalty;
        logits[id] = l;
    }
}

int32_t llm_argmax(const float *logits, int n)
{
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (logits[i] > logits[best])
            best = i;
    return best;
}

/* a ranks before b: higher logit, then lower id (the reference's tie rule). */
static inline bool better(const llm_cand *a, const llm_cand *b)
{
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int cand_cmp(const void *pa, const void *pb)
{
    const llm_cand *a = pa, *b = pb;
    if (better(a, b))
        return -1;
    if (better(b, a))
        return 1;
    return 0;
}

static inline void cand_swap(llm_cand *a, llm_cand *b)
{
    llm_cand t = *a;
    *a = *b;
    *b = t;
}

/* Min-heap on "better": the root is the worst of the heap. */
static void heap_sift_down(llm_cand *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && better(&h[w], &h[l]))
            w = l;
        if (r < n && better(&h[w], &h[r]))
            w = r;
        if (w == i)
            return;
        cand_swap(&h[i], &h[w]);
        i = w;
    }
}

/* Moves the k best candidates to the front, sorted; the others follow in no order. The set is
 * preserved (swaps only), so a larger prefix can be selected afterwards. */
static void select_prefix(llm_cands *c, size_t k)
{
    if (k >= c->n) {
        llm_cand_sort(c);
        return;
    }
    llm_cand *d = c->data;
    for (size_t i = k / 2; i-- > 0;)
        heap_sift_down(d, k, i);
    for (size_t i = k; i < c->n; i++)
        if (better(&d[i], &d[0])) {
            cand_swap(&d[i], &d[0]);
            heap_sift_down(d, k, 0);
        }
    qsort(d, k, sizeof *d, cand_cmp);
}

void llm_cand_sort(llm_cands *c)
{
    if (!c->sorted)
        qsort(c->data, c->n, sizeof *c->data, cand_cmp);
    c->sorted = true;
}

void llm_cand_top_k(llm_cands *c, int k)
{
    if (k <= 0)
        return;
    if (c->sorted || (size_t)k >= c->n) {
        llm_cand_sort(c);
    } else {
        select_prefix(c, (size_t)k);
        c->sorted = true;
    }
    if ((size_t)k < c->n)
        c->n = (size_t)k;
}

void llm_cand_temperature(llm_cands *c, float temp)
{
    for (size_t i = 0; i < c->n; i++)
        c->data[i].logit /= temp;
}

void llm_cand_softmax(llm_cands *c)
{
    if (c->n == 0)
        return;
    float max = c->data[0].logit;
    if (!c->sorted)
        for (size_t i = 1; i < c->n; i++)
            if (c->data[i].logit > max)
                max = c->data[i].logit;
    double sum = 0.0;
    for (size_t i = 0; i < c->n; i++) {
        float e = expf(c->data[i].logit - max);
        c->data[i].p = e;
        sum += e;
    }
    for (size_t i = 0; i < c->n; i++)
        c->data[i].p = (float)(c->data[i].p / sum);
}

static void renormalise(llm_cands *c)
{
    double sum = 0.0;
    for (size_t i = 0; i < c->n; i++)
        sum += c->data[i].p;
    if (sum > 0.0)
        for (size_t i = 0; i < c->n; i++)
            c->data[i].p = (float)(c->data[i].p / sum);
}

/* Length of the shortest prefix of data[0..n) whose mass reaches top_p, or 0 if none does. */
static size_t mass_prefix(const llm_cand *d, size_t n, float top_p)
{
    double cum = 0.0;
    for (size_t i = 0; i < n; i++) {
        cum += d[i].p;
        if (cum >= top_p)
            return i + 1;
    }
    return 0;
}

/* Top-p of a flat distribution, where a sorted prefix would be most of the vocabulary: a
 * histogram of the logits (softmax keeps their order) in buckets of equal width below the
 * best finds the bucket where the mass crosses top_p; only that bucket is sorted. Everything
 * in a lower bucket ranks before it, so the kept set is exactly the sorted definition's. The
 * kept candidates end up first, in no particular order (the draw does not need one). */
enum { TOP_P_BUCKETS = 1024 };
#define TOP_P_RANGE 32.0f /* logits further than this below the best share the last bucket */

static size_t top_p_bucket(float logit, float max)
{
    float d = (max - logit) * (TOP_P_BUCKETS / TOP_P_RANGE);
    if (!(d < TOP_P_BUCKETS - 1)) /* also NaN and -inf logits */
        return TOP_P_BUCKETS - 1;
    return d > 0 ? (size_t)d : 0;
}

static size_t top_p_histogram(llm_cands *c, float top_p)
{
    llm_cand *d = c->data;
    float max = -INFINITY;
    for (size_t i = 0; i < c->n; i++)
        if (d[i].logit > max)
            max = d[i].logit;
    double mass[TOP_P_BUCKETS] = {0};
    for (size_t i = 0; i < c->n; i++)
        mass[top_p_bucket(d[i].logit, max)] += d[i].p;
    double cum = 0.0;
    size_t cross = TOP_P_BUCKETS - 1;
    for (size_t b = 0; b < TOP_P_BUCKETS; b++) {
        if (cum + mass[b] >= top_p) {
            cross = b;
            break;
        }
        if (b + 1 < TOP_P_BUCKETS)
            cum += mass[b];
    }
    /* Candidates above the crossing bucket first, then the crossing bucket, sorted. */
    size_t lo = 0;
    for (size_t i = 0; i < c->n; i++)
        if (top_p_bucket(d[i].logit, max) < cross)
            cand_swap(&d[i], &d[lo++]);
    size_t hi = lo;
    for (size_t i = lo; i < c->n; i++)
        if (top_p_bucket(d[i].logit, max) == cross)
            cand_swap(&d[i], &d[hi++]);
    qsort(d + lo, hi - lo, sizeof *d, cand_cmp);
    size_t keep = lo;
    while (keep < hi) {
        cum += d[keep++].p;
        if (cum >= top_p)
            break;
    }
    c->sorted = lo == 0; /* only the crossing bucket was kept: that prefix is sorted */
    return keep;
}

void llm_cand_top_p(llm_cands *c, float top_p)
{
    if (top_p >= 1.0f || c->n == 0)
        return;
    size_t keep = 0;
    if (c->sorted) {
        keep = mass_prefix(c->data, c->n, top_p);
        if (keep == 0) /* rounding: the whole mass fell short of top_p; keep everything */
            keep = c->n;
    } else {
        /* Real distributions are peaked: the best 128 almost always hold the mass. */
        if (c->n > 256) {
            select_prefix(c, 128);
            keep = mass_prefix(c->data, 128, top_p);
        }
        if (keep > 0)
            c->sorted = true;
        else
            keep = top_p_histogram(c, top_p);
    }
    c->n = keep < 1 ? 1 : keep;
    renormalise(c);
}

void llm_cand_min_p(llm_cands *c, float min_p)
{
    if (min_p <= 0.0f || c->n == 0)
        return;
    float pmax = 0.0f;
    for (size_t i = 0; i < c->n; i++)
        if (c->data[i].p > pmax)
            pmax = c->data[i].p;
    float threshold = min_p * pmax;
    size_t j = 0;
    for (size_t i = 0; i < c->n; i++)
        if (c->data[i].p >= threshold)
            c->data[j++] = c->data[i];
    c->n = j; /* the maximum always passes, so j >= 1 */
    renormalise(c);
}

size_t llm_cand_draw(const llm_cands *c, llm_rng *rng)
{
    double total = 0.0;
    for (size_t i = 0; i < c->n; i++)
        total += c->data[i].p;
    double u = llm_rng_uniform(rng) * total, cum = 0.0;
    for (size_t i = 0; i < c->n; i++) {
        cum += c->data[i].p;
        if (u < cum)
            return i;
    }
    /* u landed on the rounding gap at the end: the last token with any mass. */
    for (size_t i = c->n; i-- > 0;)
        if (c->data[i].p > 0.0f)
            return i;
    return 0;
}

/* ---- the sampler ---------------------------------------------------------------------------- */

struct llm_sampler {
    int n_vocab;
    llm_sampler_params p;
    llm_rng rng;
    float *logits;    /* penalised copy of the caller's logits */
    uint32_t *counts; /* zeroed scratch for the penalty counts */
    llm_cand *cands;
};

llm_sampler *llm_sampler_new(int n_vocab, const llm_sampler_params *p, llm_err *err)
{
    if (n_vocab <= 0) {
        llm_errf(err, "sampler: vocabulary size %d is not positive", n_vocab);
        return NULL;
    }
    llm_sampler *s = calloc(1, sizeof *s);
    if (s) {
        s->n_vocab = n_vocab;
        s->logits = malloc((size_t)n_vocab * sizeof *s->logits);
        s->counts = calloc((size_t)n_vocab, sizeof *s->counts);
        s->cands = malloc((size_t)n_vocab * sizeof *s->cands);
    }
    if (!s || !s->logits || !s->counts || !s->cands) {
        llm_sampler_free(s);
        llm_errf(err, "sampler: out of memory for a vocabulary of %d tokens", n_vocab);
        return NULL;
    }
    llm_sampler_params def;
    if (!p) {
        llm_sampler_params_default(&def);
        p = &def;
    }
    llm_sampler_set_params(s, p);
    return s;
}

void llm_sampler_free(llm_sampler *s)
{
    if (!s)
        return;
    free(s->logits);
    free(s->counts);
    free(s->cands);
    free(s);
}

void llm_sampler_set_params(llm_sampler *s, const llm_sampler_params *p)
{
    s->p = *p;
    llm_rng_seed(&s->rng, p->seed);
}

static bool penalties_active(const llm_sampler_params *p)
{
    return p->repeat_last_n != 0 &&
           (p->repeat_penalty != 1.0f || p->frequency_penalty != 0.0f || p->presence_penalty != 0.0f);
}

int32_t llm_sampler_sample(llm_sampler *s, const float *logits, const int32_t *history, size_t n_history)
{
    const llm_sampler_params *p = &s->p;
    int n = s->n_vocab;
    if (penalties_active(p) && n_history > 0) {
        size_t w = p->repeat_last_n < 0 || (size_t)p->repeat_last_n > n_history ? n_history
                                                                                 : (size_t)p->repeat_last_n;
        memcpy(s->logits, logits, (size_t)n * sizeof *logits);
        llm_apply_penalties(s->logits, n, history + (n_history - w), w, p->repeat_penalty, p->frequency_penalty,
                            p->presence_penalty, s->counts);
        logits = s->logits;
    }
    if (p->temperature <= 0.0f)
        return llm_argmax(logits, n);

    llm_cands c = {.data = s->cands, .n = (size_t)n, .sorted = false};
    for (int i = 0; i < n; i++)
        c.data[i] = (llm_cand){.id = i, .logit = logits[i], .p = 0.0f};
    llm_cand_top_k(&c, p->top_k);
    llm_cand_temperature(&c, p->temperature);
    llm_cand_softmax(&c);
    llm_cand_top_p(&c, p->top_p);
    llm_cand_min_p(&c, p->min_p);
    return c.data[llm_cand_draw(&c, &s->rng)].id;
}
