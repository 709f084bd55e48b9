/*
 * test_sample — the sampler and the stop-string matcher against hand-computed values:
 * softmax / temperature / top-p / min-p / penalties worked out on paper, top-k=1 and a
 * vanishing temperature equal to the argmax, reproducibility per seed, the empirical
 * distribution of the draw, and stop strings split across pieces.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "sample/sample.h"

static void fill_random_logits(float *l, int n, uint64_t seed)
{
    llm_rng r;
    llm_rng_seed(&r, seed);
    for (int i = 0; i < n; i++)
        l[i] = (float)(llm_rng_uniform(&r) * 20.0 - 10.0);
}

static llm_cands cands_from(llm_cand *buf, const float *logits, int n)
{
    for (int i = 0; i < n; i++)
        buf[i] = (llm_cand){.id = i, .logit = logits[i], .p = 0};
    return (llm_cands){.data = buf, .n = (size_t)n, .sorted = false};
}

static void test_rng(void)
{
    llm_rng r;
    llm_rng_seed(&r, 0);
    /* splitmix64 from state 0: its first output is the published 0xe220a8397b1dcdaf. */
    CHECK(r.s[0] == 0xe220a8397b1dcdafULL);
    CHECK(r.s[1] == 0x6e789e6aa1b965f4ULL);
    int in_range = 1;
    double sum = 0;
    for (int i = 0; i < 10000; i++) {
        double u = llm_rng_uniform(&r);
        in_range &= u >= 0.0 && u < 1.0;
        sum += u;
    }
    CHECK(in_range);
    CHECK_NEAR(sum / 10000, 0.5, 0.02);
}

static void test_argmax_and_top_k(void)
{
    float l[] = {1, 3, 3, 2};
    CHECK_EQ_INT(llm_argmax(l, 4), 1); /* tie broken toward the lower id */
    llm_cand buf[4];
    llm_cands c = cands_from(buf, l, 4);
    llm_cand_top_k(&c, 2);
    CHECK_EQ_INT(c.n, 2);
    CHECK_EQ_INT(c.data[0].id, 1);
    CHECK_EQ_INT(c.data[1].id, 2);

    /* A larger vocabulary through the heap path: the 5 best of 1000 random logits, compared
     * with a brute-force scan. */
    enum { N = 1000 };
    static float big[N];
    static llm_cand bb[N];
    fill_random_logits(big, N, 7);
    c = cands_from(bb, big, N);
    llm_cand_top_k(&c, 5);
    int ok = c.n == 5;
    for (int j = 0; j < 5 && ok; j++) {
        int rank = 0; /* number of logits strictly better than this one */
        for (int i = 0; i < N; i++)
            rank += big[i] > big[c.data[j].id];
        ok = rank == j;
    }
    CHECK_MSG(ok, "top-5 of 1000 matches a brute-force ranking");
}

static void test_softmax_temperature(void)
{
    float l[] = {1, 2, 3};
    llm_cand buf[3];
    llm_cands c = cands_from(buf, l, 3);
    llm_cand_softmax(&c);
    /* e^-2, e^-1, 1 over their sum 1.503214724 */
    CHECK_NEAR(c.data[0].p, 0.0900305732, 1e-6);
    CHECK_NEAR(c.data[1].p, 0.2447284711, 1e-6);
    CHECK_NEAR(c.data[2].p, 0.6652409558, 1e-6);

    /* [0, ln 2] at T = 0.5 becomes [0, 2 ln 2]: probabilities 1/5 and 4/5. */
    float t[] = {0.0f, (float)log(2.0)};
    c = cands_from(buf, t, 2);
    llm_cand_temperature(&c, 0.5f);
    llm_cand_softmax(&c);
    CHECK_NEAR(c.data[0].p, 0.2, 1e-6);
    CHECK_NEAR(c.data[1].p, 0.8, 1e-6);
}

/* Candidates with the given probabilities (as log-probability logits), softmaxed. */
static llm_cands cands_probs(llm_cand *buf, const double *p, int n)
{
    for (int i = 0; i < n; i++)
        buf[i] = (llm_cand){.id = i, .logit = (float)log(p[i]), .p = 0};
    llm_cands c = {.data = buf, .n = (size_t)n, .sorted = false};
    llm_cand_softmax(&c);
    return c;
}

static void test_top_p(void)
{
    static const double p[] = {0.05, 0.3, 0.5, 0.15};
    llm_cand buf[4];
    llm_cands c = cands_probs(buf, p, 4);
    llm_cand_top_p(&c, 0.75f); /* 0.5 + 0.3 = 0.8 is the minimal set reaching 0.75 */
    CHECK_EQ_INT(c.n, 2);
    CHECK_EQ_INT(c.data[0].id, 2);
    CHECK_EQ_INT(c.data[1].id, 1);
    CHECK_NEAR(c.data[0].p, 0.625, 1e-5);
    CHECK_NEAR(c.data[1].p, 0.375, 1e-5);

    c = cands_probs(buf, p, 4);
    llm_cand_top_p(&c, 0.81f); /* needs 0.15 too */
    CHECK_EQ_INT(c.n, 3);
    c = cands_probs(buf, p, 4);
    llm_cand_top_p(&c, 0.4f); /* the top token alone already has 0.5 */
    CHECK_EQ_INT(c.n, 1);
    CHECK_EQ_INT(c.data[0].id, 2);
    c = cands_probs(buf, p, 4);
    llm_cand_top_p(&c, 1.0f); /* off */
    CHECK_EQ_INT(c.n, 4);

    /* A flat distribution of 1000 needs 500 tokens for half the mass: beyond the first
     * partially sorted prefix, and ties keep the lower ids. */
    enum { N = 1000 };
    static llm_cand bb[N];
    static float flat[N];
    c = cands_from(bb, flat, N);
    llm_cand_softmax(&c);
    llm_cand_top_p(&c, 0.4995f);
    CHECK_EQ_INT(c.n, 500);
    int ids_ok = 1;
    for (size_t i = 0; i < c.n; i++)
        ids_ok &= c.data[i].id == (int32_t)i;
    CHECK_MSG(ids_ok, "flat top-p keeps ids 0..499 in order");
    CHECK_NEAR(c.data[0].p, 1.0 / 500, 1e-6);
}

/* Reference top-p by brute force: rank every candidate (higher p first, then lower id) and
 * count how many the smallest prefix reaching top_p needs. */
static int ref_top_p_count(const float *logits, int n, float temp, float top_p, int *in_set)
{
    static double p[8192];
    static int order[8192];
    double max = -1e30, sum = 0;
    for (int i = 0; i < n; i++)
        max = logits[i] / temp > max ? logits[i] / temp : max;
    for (int i = 0; i < n; i++)
        sum += p[i] = exp(logits[i] / temp - max);
    for (int i = 0; i < n; i++) {
        p[i] /= sum;
        order[i] = i;
    }
    for (int i = 1; i < n; i++) /* insertion sort: slow and obviously right */
        for (int j = i; j > 0 && (p[order[j]] > p[order[j - 1]] ||
                                   (p[order[j]] == p[order[j - 1]] && order[j] < order[j - 1]));
             j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    double cum = 0;
    int k = 0;
    while (k < n) {
        cum += p[order[k]];
        in_set[order[k++]] = 1;
        if (cum >= top_p)
            break;
    }
    return k;
}

static void test_top_p_large(void)
{
    enum { N = 3000 };
    static float l[N];
    static llm_cand buf[N];
    static int want[N], got[N];
    /* temperature 8 flattens the random logits: the cut lies far beyond the best 128 and the
     * histogram path decides; temperature 0.2 keeps it within the best 128. */
    const float temps[] = {8.0f, 0.2f};
    for (int t = 0; t < 2; t++) {
        fill_random_logits(l, N, 11 + (uint64_t)t);
        memset(want, 0, sizeof want);
        memset(got, 0, sizeof got);
        int k = ref_top_p_count(l, N, temps[t], 0.9f, want);
        llm_cands c = cands_from(buf, l, N);
        llm_cand_temperature(&c, temps[t]);
        llm_cand_softmax(&c);
        llm_cand_top_p(&c, 0.9f);
        for (size_t i = 0; i < c.n; i++)
            got[c.data[i].id] = 1;
        CHECK_EQ_INT(c.n, k);
        CHECK_MSG(!memcmp(want, got, sizeof want), "top-p at temperature %g keeps the brute-force set (%d)",
                  (double)temps[t], k);
        double sum = 0;
        for (size_t i = 0; i < c.n; i++)
            sum += c.data[i].p;
        CHECK_NEAR(sum, 1.0, 1e-4);
        if (t == 0)
            CHECK_MSG(k > 1000, "the flat case needs %d tokens (beyond the sorted prefix)", k);
        else
            CHECK_MSG(k < 128, "the peaked case needs %d tokens", k);
    }
}

static void test_min_p(void)
{
    static const double p[] = {0.05, 0.3, 0.5, 0.15};
    llm_cand buf[4];
    llm_cands c = cands_probs(buf, p, 4);
    llm_cand_min_p(&c, 0.25f); /* threshold 0.125: 0.05 goes */
    CHECK_EQ_INT(c.n, 3);
    int has0 = 0;
    double sum = 0;
    for (size_t i = 0; i < c.n; i++) {
        has0 |= c.data[i].id == 0;
        sum += c.data[i].p;
        if (c.data[i].id == 2)
            CHECK_NEAR(c.data[i].p, 0.5 / 0.95, 1e-5);
    }
    CHECK(!has0);
    CHECK_NEAR(sum, 1.0, 1e-5);
    c = cands_probs(buf, p, 4);
    llm_cand_min_p(&c, 0.7f); /* threshold 0.35: only 0.5 */
    CHECK_EQ_INT(c.n, 1);
    CHECK_EQ_INT(c.data[0].id, 2);
}

static void test_penalties(void)
{
    float l[] = {2.0f, -1.0f, 0.5f, 3.0f, 0.0f};
    int32_t window[] = {0, 1, 0, 2, 4, 99, -1}; /* 99 and -1 are out of range: ignored */
    uint32_t counts[5] = {0};
    llm_apply_penalties(l, 5, window, 7, 2.0f, 0.1f, 0.5f, counts);
    CHECK_NEAR(l[0], 2.0 / 2 - (2 * 0.1 + 0.5), 1e-6);  /* positive: divided; seen twice */
    CHECK_NEAR(l[1], -1.0 * 2 - (0.1 + 0.5), 1e-6);     /* negative: multiplied */
    CHECK_NEAR(l[2], 0.5 / 2 - (0.1 + 0.5), 1e-6);
    CHECK_NEAR(l[3], 3.0, 0);                           /* not in the window */
    CHECK_NEAR(l[4], 0.0 - (0.1 + 0.5), 1e-6);          /* zero: multiplied, stays 0 */
    int zero = 1;
    for (int i = 0; i < 5; i++)
        zero &= counts[i] == 0;
    CHECK_MSG(zero, "penalty scratch counts are left zeroed");

    /* Through the sampler: only the last repeat_last_n tokens of the history count. */
    llm_sampler_params sp;
    llm_sampler_params_default(&sp);
    sp.temperature = 0;
    sp.repeat_penalty = 1.1f;
    float g[] = {5.0f, 4.9f, 0.0f, 4.95f};
    int32_t hist[] = {3, 0};
    llm_sampler *s = llm_sampler_new(4, &sp, NULL);
    sp.repeat_last_n = 1; /* 0 -> 4.545: 3 (4.95) wins */
    llm_sampler_set_params(s, &sp);
    CHECK_EQ_INT(llm_sampler_sample(s, g, hist, 2), 3);
    sp.repeat_last_n = 2; /* 0 -> 4.545, 3 -> 4.5: 1 (4.9) wins */
    llm_sampler_set_params(s, &sp);
    CHECK_EQ_INT(llm_sampler_sample(s, g, hist, 2), 1);
    sp.repeat_last_n = -1; /* whole history: same as 2 here */
    llm_sampler_set_params(s, &sp);
    CHECK_EQ_INT(llm_sampler_sample(s, g, hist, 2), 1);
    sp.repeat_penalty = 1.0f; /* off */
    llm_sampler_set_params(s, &sp);
    CHECK_EQ_INT(llm_sampler_sample(s, g, hist, 2), 0);
    CHECK_NEAR(g[0], 5.0, 0); /* the caller's logits are not modified */
    llm_sampler_free(s);
}

static void test_greedy_equivalences(void)
{
    enum { N = 32000 };
    static float l[N];
    llm_sampler_params sp;
    llm_sampler_params_default(&sp);
    sp.repeat_penalty = 1.0f;
    llm_sampler *s = llm_sampler_new(N, &sp, NULL);
    int k1_ok = 1, cold_ok = 1, t0_ok = 1;
    for (uint64_t trial = 0; trial < 20; trial++) {
        fill_random_logits(l, N, 100 + trial);
        int32_t best = llm_argmax(l, N);
        sp.seed = trial;
        sp.temperature = 1.5f;
        sp.top_k = 1;
        sp.top_p = 1.0f;
        llm_sampler_set_params(s, &sp);
        k1_ok &= llm_sampler_sample(s, l, NULL, 0) == best;
        sp.top_k = 0;
        sp.temperature = 1e-4f; /* margins are ~1e-3 or more: exp(-10) per competitor */
        llm_sampler_set_params(s, &sp);
        cold_ok &= llm_sampler_sample(s, l, NULL, 0) == best;
        sp.temperature = 0.0f;
        llm_sampler_set_params(s, &sp);
        t0_ok &= llm_sampler_sample(s, l, NULL, 0) == best;
    }
    CHECK_MSG(k1_ok, "top-k 1 == argmax");
    CHECK_MSG(cold_ok, "temperature 1e-4 == argmax");
    CHECK_MSG(t0_ok, "temperature 0 == argmax");
    llm_sampler_free(s);
}

static void test_seed_and_distribution(void)
{
    enum { N = 64 };
    float l[N];
    for (int i = 0; i < N; i++)
        l[i] = 0.0f; /* flat: every draw is pure PRNG */
    llm_sampler_params sp;
    llm_sampler_params_default(&sp);
    sp.temperature = 1.0f;
    sp.top_k = 0;
    sp.top_p = 1.0f;
    sp.repeat_penalty = 1.0f;
    sp.seed = 42;
    llm_sampler *a = llm_sampler_new(N, &sp, NULL), *b = llm_sampler_new(N, &sp, NULL);
    int same = 1;
    for (int i = 0; i < 100; i++)
        same &= llm_sampler_sample(a, l, NULL, 0) == llm_sampler_sample(b, l, NULL, 0);
    CHECK_MSG(same, "same seed, same sequence");
    sp.seed = 43;
    llm_sampler_set_params(b, &sp);
    sp.seed = 42;
    llm_sampler_set_params(a, &sp); /* reseeding restarts the sequence */
    int differ = 0;
    for (int i = 0; i < 100; i++)
        differ += llm_sampler_sample(a, l, NULL, 0) != llm_sampler_sample(b, l, NULL, 0);
    CHECK_MSG(differ > 80, "different seeds differ (%d of 100)", differ);

    /* Probabilities 0.2 / 0.3 / 0.5: frequencies over 20000 draws within 0.015. */
    float q[3] = {(float)log(0.2), (float)log(0.3), (float)log(0.5)};
    llm_sampler *c = llm_sampler_new(3, &sp, NULL);
    int hits[3] = {0};
    for (int i = 0; i < 20000; i++)
        hits[llm_sampler_sample(c, q, NULL, 0)]++;
    CHECK_NEAR(hits[0] / 20000.0, 0.2, 0.015);
    CHECK_NEAR(hits[1] / 20000.0, 0.3, 0.015);
    CHECK_NEAR(hits[2] / 20000.0, 0.5, 0.015);

    /* top-k 2 at temperature 1: only ids 2 and 1, in ratio 0.5 : 0.3. */
    sp.top_k = 2;
    llm_sampler_set_params(c, &sp);
    memset(hits, 0, sizeof hits);
    for (int i = 0; i < 20000; i++)
        hits[llm_sampler_sample(c, q, NULL, 0)]++;
    CHECK_EQ_INT(hits[0], 0);
    CHECK_NEAR(hits[2] / 20000.0, 0.625, 0.015);
    llm_sampler_free(a);
    llm_sampler_free(b);
    llm_sampler_free(c);
}

/* Feeds pieces through a stopper, collecting the output; returns whether it stopped. */
static bool feed_all(llm_stopper *st, const char *const *pieces, int n, llm_buf *out)
{
    bool stopped = false;
    for (int i = 0; i < n && !stopped; i++) {
        const char *e;
        size_t el;
        stopped = llm_stop_feed(st, pieces[i], strlen(pieces[i]), &e, &el);
        llm_buf_append(out, e, el);
    }
    if (!stopped) {
        const char *e;
        size_t el;
        llm_stop_flush(st, &e, &el);
        llm_buf_append(out, e, el);
    }
    llm_buf_cstr(out);
    return stopped;
}

static void test_stop_strings(void)
{
    const char *stops[] = {"<|im_end|>", "STOP", "", "\xc3\xa9!"};
    llm_stopper st;
    llm_stop_init(&st, stops, 4);
    CHECK_EQ_INT(st.n_stops, 3); /* the empty string is ignored */
    llm_buf out = {0};

    const char *split[] = {"Hello", " <|im", "_end", "|>", " after"};
    CHECK(feed_all(&st, split, 5, &out));
    CHECK_EQ_STR(out.data, "Hello ");

    /* Held back while ambiguous: "<|im" emits nothing until proven harmless. */
    llm_stop_reset(&st);
    out.len = 0;
    const char *e;
    size_t el;
    CHECK(!llm_stop_feed(&st, "a <|im", 6, &e, &el));
    CHECK_EQ_INT(el, 2);
    CHECK(!llm_stop_feed(&st, "pressive", 8, &e, &el));
    CHECK_EQ_INT(el, 12); /* "<|impressive" */
    CHECK(!memcmp(e, "<|impressive", 12));

    llm_stop_reset(&st);
    out.len = 0;
    const char *mid[] = {"abc STOP def"};
    CHECK(feed_all(&st, mid, 1, &out));
    CHECK_EQ_STR(out.data, "abc ");
    CHECK(llm_stop_feed(&st, "more", 4, &e, &el)); /* stays stopped, emits nothing */
    CHECK_EQ_INT(el, 0);

    /* No stop: everything comes out, the held tail at the flush. */
    llm_stop_reset(&st);
    out.len = 0;
    const char *none[] = {"x ", "ST", "OP", "!"};
    CHECK(feed_all(&st, none, 2, &out) == false);
    CHECK_EQ_STR(out.data, "x ST");
    llm_stop_reset(&st);
    out.len = 0;
    CHECK(feed_all(&st, none + 1, 1, &out) == false);
    CHECK_EQ_STR(out.data, "ST");

    /* A multi-byte stop: "é" is held whole, released when "x" follows. */
    llm_stop_reset(&st);
    out.len = 0;
    const char *u[] = {"caf\xc3\xa9", "x", "\xc3\xa9", "!"};
    CHECK(llm_stop_feed(&st, u[0], strlen(u[0]), &e, &el) == false);
    CHECK_EQ_INT(el, 3);
    CHECK(feed_all(&st, u + 1, 3, &out));
    CHECK_EQ_STR(out.data, "\xc3\xa9x");

    /* The earliest stop in the text wins. */
    llm_stop_add(&st, "ab");
    llm_stop_add(&st, "ab"); /* duplicate ignored */
    CHECK_EQ_INT(st.n_stops, 4);
    llm_stop_reset(&st);
    out.len = 0;
    const char *two[] = {"zSTOPab"};
    CHECK(feed_all(&st, two, 1, &out));
    CHECK_EQ_STR(out.data, "z");
    llm_buf_free(&out);
    llm_stop_free(&st);

    /* No stop strings at all: text passes straight through. */
    llm_stop_init(&st, NULL, 0);
    CHECK(!llm_stop_feed(&st, "<|", 2, &e, &el));
    CHECK_EQ_INT(el, 2);
    llm_stop_free(&st);
}

int main(void)
{
    test_rng();
    test_argmax_and_top_k();
    test_softmax_temperature();
    test_top_p();
    test_top_p_large();
    test_min_p();
    test_penalties();
    test_greedy_equivalences();
    test_seed_and_distribution();
    test_stop_strings();
    TEST_END("sample");
}
