/*
 * Matrix multiplication against a naive reference: every weight row dequantized with the
 * scalar reference (llm_dequantize_row) and multiplied with the unconverted F32 activations in
 * double precision. llm_matmul converts the activations to the vec-dot format first, so the
 * difference is bounded by that conversion's rounding; the tolerance is derived per output from
 * the format definitions (see act_error_bound), not fitted to results.
 *
 * Also: results are bit-identical for 1, 2 and 3 threads (each output is the same arithmetic
 * on the same bytes, whatever the split) and for a batch vs one token at a time -- except where
 * the backend packs rows for batches (pack8), whose outputs round differently and are held to
 * the reference bound instead; the scalar and best backends agree within the same bound. The
 * packed layout itself is checked against its definition (block_q4_0x8) byte by byte.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kernels/blocks.h"
#include "kernels/kernels.h"

typedef struct rng {
    uint64_t s;
} rng;

static double uniform(rng *r)
{
    r->s += 0x9E3779B97F4A7C15ull;
    uint64_t z = r->s;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

static float gauss(rng *r)
{
    double u1 = uniform(r), u2 = uniform(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return (float)(sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
}

/* Largest error of one activation element after conversion to vdt, for an element x in a
 * block whose largest magnitude is amax:
 *   Q8_0/Q8_1: q = round(x / d), d = amax/127 stored as F16: |err| <= d/2 plus the F16 rounding
 *              of d scaling the whole value (relative 2^-11 of |x|, taken as 2^-10);
 *   Q8_K:      the same with d stored as F32 (its rounding is negligible);
 *   F16/BF16:  relative rounding 2^-11 / 2^-8;  F32: none. */
static double act_elem_error(llm_type vdt, double x, double amax)
{
    switch (vdt) {
    case LLM_Q8_0:
    case LLM_Q8_1: return amax / 127.0 * 0.5 * (1 + 0x1p-10) + fabs(x) * 0x1p-10;
    case LLM_Q8_K: return amax / 127.0 * 0.5 * (1 + 0x1p-20) + fabs(x) * 0x1p-20;
    case LLM_F16: return fabs(x) * 0x1p-11;
    case LLM_BF16: return fabs(x) * 0x1p-8;
    default: return 0;
    }
}

/* Bound on |matmul - reference| for one output: sum of |w_i| * act error_i, plus float
 * accumulation error (relative 1e-5 of sum |w_i x_i|, generous for n <= 1024 in float). */
static double act_error_bound(llm_type vdt, const float *w, const float *x, int64_t n)
{
    int64_t blk = vdt == LLM_Q8_K ? 256 : 32;
    double bound = 0, mag = 0;
    for (int64_t b = 0; b < n; b += blk) {
        double amax = 0;
        for (int64_t i = b; i < b + blk && i < n; i++)
            amax = fmax(amax, fabs(x[i]));
        for (int64_t i = b; i < b + blk && i < n; i++) {
            bound += fabs(w[i]) * act_elem_error(vdt, x[i], amax);
            mag += fabs((double)w[i] * x[i]);
        }
    }
    return bound + 1e-5 * mag + 1e-6;
}

static const llm_type TYPES[] = {LLM_F32,  LLM_F16,  LLM_BF16, LLM_Q4_0, LLM_Q4_1, LLM_Q5_0, LLM_Q5_1,
                                 LLM_Q8_0, LLM_Q2_K, LLM_Q3_K, LLM_Q4_K, LLM_Q5_K, LLM_Q6_K};

typedef struct fixture {
    llm_matrix W;
    void *wdata;
    float *wdeq; /* dequantized weights, the reference's view */
    float *x;
    int64_t n_tok;
} fixture;

static int fixture_make(fixture *f, llm_type t, int64_t rows, int64_t cols, int64_t n_tok, uint64_t seed)
{
    size_t row = llm_row_size(t, cols);
    f->W = (llm_matrix){.type = t, .rows = rows, .cols = cols};
    f->wdata = malloc(row * (size_t)rows);
    f->wdeq = malloc(sizeof(float) * (size_t)(rows * cols));
    f->x = malloc(sizeof(float) * (size_t)(n_tok * cols));
    f->n_tok = n_tok;
    rng r = {seed};
    float *tmp = malloc(sizeof(float) * (size_t)cols);
    int rc = 0;
    for (int64_t i = 0; i < rows && !rc; i++) {
        for (int64_t j = 0; j < cols; j++)
            tmp[j] = gauss(&r) * 0.05f;
        rc = llm_quantize_row(t, tmp, (uint8_t *)f->wdata + row * (size_t)i, cols);
        llm_dequantize_row(t, (uint8_t *)f->wdata + row * (size_t)i, f->wdeq + i * cols, cols);
    }
    for (int64_t i = 0; i < n_tok * cols; i++)
        f->x[i] = gauss(&r) * (i % 97 == 0 ? 4.0f : 1.0f); /* a few outliers per block */
    free(tmp);
    f->W.data = f->wdata;
    return rc;
}

static void fixture_free(fixture *f)
{
    free(f->wdata);
    free(f->wdeq);
    free(f->x);
}

static float *run(const fixture *f, llm_pool *pool, const llm_kernels *k, int64_t n_tok, const float *x)
{
    float *y = malloc(sizeof(float) * (size_t)(n_tok * f->W.rows));
    size_t scratch_n = llm_matmul_scratch(&f->W, n_tok);
    void *scratch = scratch_n ? malloc(scratch_n) : NULL;
    llm_matmul(pool, k, &f->W, x, n_tok, y, scratch);
    free(scratch);
    return y;
}

/* Returns the number of outputs outside the bound. */
static int compare_reference(const fixture *f, const float *y)
{
    llm_type vdt = llm_vec_dot_type(f->W.type);
    int bad = 0;
    for (int64_t t = 0; t < f->n_tok; t++)
        for (int64_t r = 0; r < f->W.rows; r++) {
            const float *w = f->wdeq + r * f->W.cols, *x = f->x + t * f->W.cols;
            double ref = 0;
            for (int64_t i = 0; i < f->W.cols; i++)
                ref += (double)w[i] * x[i];
            double tol = act_error_bound(vdt, w, x, f->W.cols);
            double got = y[t * f->W.rows + r];
            if (!(fabs(got - ref) <= tol)) {
                if (bad++ < 3)
                    fprintf(stderr, "  %s [%lld x %lld] tok %lld row %lld: got %.7g want %.7g (tol %.3g)\n",
                            llm_type_name(f->W.type), (long long)f->W.rows, (long long)f->W.cols, (long long)t,
                            (long long)r, got, ref, tol);
            }
        }
    return bad;
}

static void test_type(llm_type t, llm_pool *pools[3])
{
    static const struct {
        int64_t rows, cols, n_tok;
    } shapes[] = {{37, 256, 1}, {300, 512, 1}, {64, 768, 5}, {129, 256, 19}, {24, 2048, 9}};
    const llm_kernels *ks[2] = {llm_kernels_scalar(), llm_kernels_best()};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        fixture f;
        if (fixture_make(&f, t, shapes[s].rows, shapes[s].cols, shapes[s].n_tok, 1000 + s)) {
            CHECK_MSG(0, "%s: quantize_row failed", llm_type_name(t));
            fixture_free(&f);
            continue;
        }
        size_t ny = (size_t)(f.n_tok * f.W.rows) * sizeof(float);
        for (int ki = 0; ki < 2; ki++) {
            float *y1 = run(&f, pools[0], ks[ki], f.n_tok, f.x);
            int bad = compare_reference(&f, y1);
            CHECK_MSG(bad == 0, "%s %s [%lld x %lld] x %lld tokens: %d outputs outside the bound", ks[ki]->name,
                      llm_type_name(t), (long long)f.W.rows, (long long)f.W.cols, (long long)f.n_tok, bad);
            for (int p = 1; p < 3; p++) {
                float *yp = run(&f, pools[p], ks[ki], f.n_tok, f.x);
                CHECK_MSG(memcmp(y1, yp, ny) == 0, "%s %s: %d threads differ from 1 thread", ks[ki]->name,
                          llm_type_name(t), p + 1);
                free(yp);
            }
            /* A batch equals the tokens one at a time (packed batches: both within the bound,
             * checked above for the batch and here for the single tokens). */
            if (f.n_tok > 1) {
                const bool packs = ks[ki]->pack8[t] != NULL;
                int same = 1, bad_single = 0;
                for (int64_t tk = 0; tk < f.n_tok; tk++) {
                    float *y = run(&f, pools[1], ks[ki], 1, f.x + tk * f.W.cols);
                    same &= memcmp(y, y1 + tk * f.W.rows, (size_t)f.W.rows * sizeof(float)) == 0;
                    memcpy(y1 + tk * f.W.rows, y, (size_t)f.W.rows * sizeof(float));
                    free(y);
                }
                bad_single = compare_reference(&f, y1);
                CHECK_MSG(packs || same, "%s %s: batch differs from single tokens", ks[ki]->name, llm_type_name(t));
                CHECK_MSG(bad_single == 0, "%s %s: %d single-token outputs outside the bound", ks[ki]->name,
                          llm_type_name(t), bad_single);
            }
            free(y1);
        }
        fixture_free(&f);
    }
}

/* block_q4_0x8 by its definition: scale of row r in d[r]; quant k of group g of row r is
 * element 4g + k of the block, element e < 16 being the low nibble of byte e and e >= 16 the
 * high nibble of byte e - 16. */
static void test_pack8_q4_0_layout(void)
{
    const llm_kernels *k = llm_kernels_best();
    if (!k->pack8[LLM_Q4_0]) {
        CHECK_MSG(k == llm_kernels_scalar(), "%s: no q4_0 packing", k->name);
        return;
    }
    enum { N = 64, NB = N / 32 };
    block_q4_0 rows[8][NB];
    rng g = {77};
    for (int r = 0; r < 8; r++)
        for (int b = 0; b < NB; b++) {
            rows[r][b].d = (llm_half)(0x3C00 + r * 16 + b);
            for (int i = 0; i < 16; i++)
                rows[r][b].qs[i] = (uint8_t)(uniform(&g) * 256);
        }
    CHECK_EQ_INT(llm_packed8_size(LLM_Q4_0, N), NB * sizeof(block_q4_0x8));
    block_q4_0x8 out[NB];
    k->pack8[LLM_Q4_0](rows, sizeof rows[0], out, N);
    int bad = 0;
    for (int b = 0; b < NB; b++)
        for (int r = 0; r < 8; r++) {
            bad += out[b].d[r] != rows[r][b].d;
            for (int e = 0; e < 32; e++) {
                uint8_t byte = rows[r][b].qs[e % 16], want = e < 16 ? byte & 0xF : byte >> 4;
                bad += out[b].qs[e / 4][r][e % 4] != want;
            }
        }
    CHECK_MSG(bad == 0, "pack8 q4_0: %d bytes differ from block_q4_0x8's definition", bad);
}

/* block_q8_0x8 by its definition: scale of row r in d[r]; quant k of group g of row r is
 * element e = 4g + k of the block, split as q = 16 * (hi - 8) + lo with lo, hi in 0..15. */
static void test_pack8_q8_0_layout(void)
{
    const llm_kernels *k = llm_kernels_best();
    if (!k->pack8[LLM_Q8_0]) {
        CHECK_MSG(k == llm_kernels_scalar(), "%s: no q8_0 packing", k->name);
        return;
    }
    enum { N = 64, NB = N / 32 };
    block_q8_0 rows[8][NB];
    rng g = {78};
    for (int r = 0; r < 8; r++)
        for (int b = 0; b < NB; b++) {
            rows[r][b].d = (llm_half)(0x3C00 + r * 16 + b);
            for (int i = 0; i < 32; i++)
                rows[r][b].qs[i] = (int8_t)(i == 0 ? -128 : i == 1 ? 127 : (int)(uniform(&g) * 256) - 128);
        }
    CHECK_EQ_INT(llm_packed8_size(LLM_Q8_0, N), NB * sizeof(block_q8_0x8));
    block_q8_0x8 out[NB];
    k->pack8[LLM_Q8_0](rows, sizeof rows[0], out, N);
    int bad = 0;
    for (int b = 0; b < NB; b++)
        for (int r = 0; r < 8; r++) {
            bad += out[b].d[r] != rows[r][b].d;
            for (int e = 0; e < 32; e++) {
                int lo = out[b].lo[e / 4][r][e % 4], hi = out[b].hi[e / 4][r][e % 4];
                bad += lo > 15 || hi > 15 || 16 * (hi - 8) + lo != rows[r][b].qs[e];
            }
        }
    CHECK_MSG(bad == 0, "pack8 q8_0: %d values differ from block_q8_0x8's definition", bad);
}

/* Hand-computed case independent of any quantizer: F32 weights [[1,2,...]] etc. */
static void test_f32_exact(llm_pool *pool)
{
    float w[2 * 4] = {1, 2, 3, 4, -1, 0.5f, 0, 2};
    float x[2 * 4] = {1, 1, 1, 1, 2, -2, 0.5f, 0};
    llm_matrix W = {.type = LLM_F32, .rows = 2, .cols = 4, .data = w};
    float y[4];
    CHECK_EQ_INT(llm_matmul_scratch(&W, 2), 0);
    llm_matmul(pool, llm_kernels_best(), &W, x, 2, y, NULL);
    CHECK_NEAR(y[0], 10, 0);
    CHECK_NEAR(y[1], 1.5, 0);
    CHECK_NEAR(y[2], -0.5, 0); /* 2 - 4 + 1.5 */
    CHECK_NEAR(y[3], -3, 0);  /* -2 - 1 */
}

/* Matrices sharing one input in one job (Q/K/V, gate/up): each output within the reference bound
 * of its own matrix, and bit-identical for 1, 2 and 3 threads and to llm_matmul alone. The
 * groups mix vec-dot types (Q4_0 and Q8_0 share one Q8_0 conversion; Q6_K needs Q8_K; F32 none)
 * and row counts from a few to hundreds, so chunks of different matrices meet in one hand-out. */
static void test_multi(llm_pool *pools[3])
{
    static const struct {
        llm_type t;
        int64_t rows;
    } groups[2][4] = {{{LLM_Q4_0, 300}, {LLM_Q8_0, 37}, {LLM_Q6_K, 64}, {LLM_F32, 5}},
                      {{LLM_Q4_K, 130}, {LLM_Q6_K, 7}, {LLM_Q8_0, 200}, {LLM_F16, 0}}};
    const int64_t cols = 512;
    for (int g = 0; g < 2; g++)
        for (int64_t n_tok = 1; n_tok <= 3; n_tok += 2) {
            fixture f[4];
            const llm_matrix *W[4];
            float *y[3][4], *single[4];
            int ok = 1;
            for (int i = 0; i < 4; i++) {
                ok &= fixture_make(&f[i], groups[g][i].t, groups[g][i].rows, cols, n_tok, 500 + (uint64_t)i) == 0;
                if (i > 0) /* one input for all, as the layer's matrices have */
                    memcpy(f[i].x, f[0].x, sizeof(float) * (size_t)(n_tok * cols));
                W[i] = &f[i].W;
            }
            CHECK_MSG(ok, "multi group %d: quantize_row failed", g);
            void *scratch = malloc(llm_matmul_multi_scratch(4, W, n_tok) + 1);
            for (int p = 0; p < 3; p++) {
                for (int i = 0; i < 4; i++)
                    y[p][i] = malloc(sizeof(float) * (size_t)(n_tok * f[i].W.rows) + 1);
                llm_matmul_multi(pools[p], llm_kernels_best(), 4, W, f[0].x, n_tok, y[p], scratch);
            }
            for (int i = 0; i < 4; i++) {
                size_t ny = sizeof(float) * (size_t)(n_tok * f[i].W.rows);
                int bad = compare_reference(&f[i], y[0][i]);
                single[i] = run(&f[i], pools[1], llm_kernels_best(), n_tok, f[i].x);
                CHECK_MSG(bad == 0, "multi group %d part %d (%s, %lld rows) x %lld: %d outputs outside the bound", g, i,
                          llm_type_name(f[i].W.type), (long long)f[i].W.rows, (long long)n_tok, bad);
                CHECK_MSG(memcmp(y[0][i], y[1][i], ny) == 0 && memcmp(y[0][i], y[2][i], ny) == 0,
                          "multi group %d part %d: 2 or 3 threads differ from 1", g, i);
                CHECK_MSG(memcmp(y[0][i], single[i], ny) == 0, "multi group %d part %d: differs from llm_matmul alone",
                          g, i);
                free(single[i]);
            }
            for (int p = 0; p < 3; p++)
                for (int i = 0; i < 4; i++)
                    free(y[p][i]);
            for (int i = 0; i < 4; i++)
                fixture_free(&f[i]);
            free(scratch);
        }
}

int main(void)
{
    llm_pool *pools[3] = {llm_pool_new(1), llm_pool_new(2), llm_pool_new(3)};
    test_f32_exact(pools[1]);
    test_pack8_q4_0_layout();
    test_pack8_q8_0_layout();
    test_multi(pools);
    int tested = 0;
    for (size_t i = 0; i < sizeof TYPES / sizeof *TYPES; i++) {
        llm_type t = TYPES[i];
        if (!llm_type_can_quantize(t) || !llm_kernels_scalar()->vec_dot[t]) {
            fprintf(stderr, "note: %s not implemented by the kernels yet, not tested\n", llm_type_name(t));
            continue;
        }
        test_type(t, pools);
        tested++;
    }
    /* The formats every model file in ../shared uses must be there. */
    static const llm_type must[] = {LLM_F32, LLM_F16, LLM_Q4_0, LLM_Q8_0, LLM_Q4_K, LLM_Q6_K};
    for (size_t i = 0; i < sizeof must / sizeof *must; i++)
        CHECK_MSG(llm_kernels_scalar()->vec_dot[must[i]] != NULL, "no kernel for %s", llm_type_name(must[i]));
    CHECK(tested >= 6);
    for (int p = 0; p < 3; p++)
        llm_pool_free(pools[p]);
    TEST_END("matmul");
}
