/*
 * ops_avx2 — AVX2+FMA versions of the two ops whose transcendental function decides bits that
 * matter downstream: soft-max (attention weights) and SwiGLU (the input of ffn_down, which is
 * then quantized to 8 bits). Both follow ggml's AVX2 path: exp by the same polynomial
 * (ARM optimized-routines expf: 2^n * p(b) with |error| < 1.5 ulp), eight lanes at a time with
 * the scalar expf for a tail, soft-max sums reduced per 8 lanes in float then accumulated in
 * double. Matching those bits keeps activations on the same side of quantization rounding
 * boundaries as llama.cpp more often, which is what makes native-compute logits agree.
 * Only called when the CPU has AVX2 and FMA (ops.c decides).
 */
#include <immintrin.h>
#include <math.h>
#include <stdbool.h>

#include "model/ops.h"

/* exp(x) for 8 lanes: x = n ln2 + b, |b| <= ln2/2, exp(x) = 2^n (1 + b + b^2 p(b)). */
static inline __m256 exp8(__m256 x)
{
    const __m256 shift = _mm256_set1_ps(0x1.8p23f);
    const __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), shift);
    const __m256 n = _mm256_sub_ps(z, shift);
    const __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f),
                                      _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), x));
    const __m256i e = _mm256_slli_epi32(_mm256_castps_si256(z), 23);
    const __m256 k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_castps_si256(_mm256_set1_ps(1))));
    const __m256 absn = _mm256_andnot_ps(_mm256_set1_ps(-0.f), n);
    const __m256 big = _mm256_cmp_ps(absn, _mm256_set1_ps(126), _CMP_GT_OQ);
    const __m256 u = _mm256_mul_ps(b, b);
    const __m256 j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f)), u,
                        _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f))),
        u, _mm256_mul_ps(_mm256_set1_ps(0x1.ffffecp-1f), b));
    if (!_mm256_movemask_ps(big))
        return _mm256_fmadd_ps(j, k, k);
    /* |n| > 126: scale in two steps so 2^n neither overflows nor underflows early; beyond 192
     * the result is 0 or inf. */
    const __m256i g = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ)),
                                       _mm256_set1_epi32((int)0x82000000u));
    const __m256 s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f000000)));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
    const __m256 huge = _mm256_cmp_ps(absn, _mm256_set1_ps(192), _CMP_GT_OQ);
    const __m256 scaled = _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1);
    const __m256 normal = _mm256_fmadd_ps(k, j, k);
    const __m256 r = _mm256_blendv_ps(normal, scaled, big);
    return _mm256_blendv_ps(r, _mm256_mul_ps(s1, s1), huge);
}

void llm_op_softmax_avx2(float *s, int n, float scale)
{
    float max = -INFINITY;
    for (int i = 0; i < n; i++) {
        s[i] *= scale;
        max = s[i] > max ? s[i] : max;
    }
    double sum = 0.0;
    int i = 0;
    const __m256 vmax = _mm256_set1_ps(max);
    /* llama.cpp pads the row of attention scores to a multiple of 32 cached positions with
     * masked (-inf) entries, so every real score goes through the 8-lane path; do the same by
     * padding the last partial group with -inf (exp = 0) instead of using scalar expf. */
    for (; i < n; i += 8) {
        float pad[8];
        const bool full = i + 8 <= n;
        if (!full)
            for (int l = 0; l < 8; l++)
                pad[l] = i + l < n ? s[i + l] : -INFINITY;
        __m256 v = exp8(_mm256_sub_ps(_mm256_loadu_ps(full ? s + i : pad), vmax));
        __m128 h = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
        h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        h = _mm_add_ss(h, _mm_movehdup_ps(h));
        sum += (double)_mm_cvtss_f32(h);
        if (full) {
            _mm256_storeu_ps(s + i, v);
        } else {
            _mm256_storeu_ps(pad, v);
            for (int l = 0; i + l < n; l++)
                s[i + l] = pad[l];
        }
    }
    const float inv = (float)(1.0 / sum);
    for (i = 0; i < n; i++)
        s[i] *= inv;
}

void llm_op_swiglu_avx2(float *a, const float *b, int n)
{
    int i = 0;
    const __m256 one = _mm256_set1_ps(1.0f);
    for (; i + 7 < n; i += 8) {
        const __m256 x = _mm256_loadu_ps(a + i);
        const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
        const __m256 silu = _mm256_div_ps(x, _mm256_add_ps(one, e));
        _mm256_storeu_ps(a + i, _mm256_mul_ps(silu, _mm256_loadu_ps(b + i)));
    }
    for (; i < n; i++) {
        const float g = a[i];
        a[i] = (g / (1.0f + expf(-g))) * b[i];
    }
}

float llm_dot_f32_ggml_avx2(int n, const float *x, const float *y)
{
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    const int np = n & ~31;
    for (int i = 0; i < np; i += 32)
        for (int j = 0; j < 4; j++)
            acc[j] = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8 * j), _mm256_loadu_ps(y + i + 8 * j), acc[j]);
    acc[0] = _mm256_add_ps(acc[0], acc[2]);
    acc[1] = _mm256_add_ps(acc[1], acc[3]);
    acc[0] = _mm256_add_ps(acc[0], acc[1]);
    const __m128 t0 = _mm_add_ps(_mm256_castps256_ps128(acc[0]), _mm256_extractf128_ps(acc[0], 1));
    const __m128 t1 = _mm_hadd_ps(t0, t0);
    float sum = _mm_cvtss_f32(_mm_hadd_ps(t1, t1));
    for (int i = np; i < n; i++)
        sum += x[i] * y[i];
    return sum;
}

float llm_dot_f32_lanes8_avx2(int n, const float *x, const float *y)
{
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), acc);
    __m128 h = _mm_add_ps(_mm256_extractf128_ps(acc, 1), _mm256_castps256_ps128(acc));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

/* ggml_vec_dot_f32 of x rows with NQ (1..4, a compile-time constant, so the accumulators stay
 * in registers) queries: each x chunk loaded once, each (row, query) the one-query operations
 * in the same order, so its bits. */
static inline __attribute__((always_inline)) void dot_ggml_queries(int n, int n_rows, const float *x, size_t x_stride, const int NQ,
                                    const float *const y[4], float *out, size_t out_stride)
{
    const int np = n & ~31;
    for (int r = 0; r < n_rows; r++) {
        const float *xr = x + (size_t)r * x_stride;
        __m256 acc[4][4];
        #pragma GCC unroll 4
        for (int q = 0; q < NQ; q++)
            #pragma GCC unroll 4
            for (int j = 0; j < 4; j++)
                acc[q][j] = _mm256_setzero_ps();
        for (int i = 0; i < np; i += 32)
            #pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                const __m256 xv = _mm256_loadu_ps(xr + i + 8 * j);
                #pragma GCC unroll 4
                for (int q = 0; q < NQ; q++)
                    acc[q][j] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(y[q] + i + 8 * j), acc[q][j]);
            }
        for (int q = 0; q < NQ; q++) {
            __m256 a0 = _mm256_add_ps(acc[q][0], acc[q][2]), a1 = _mm256_add_ps(acc[q][1], acc[q][3]);
            a0 = _mm256_add_ps(a0, a1);
            const __m128 t0 = _mm_add_ps(_mm256_castps256_ps128(a0), _mm256_extractf128_ps(a0, 1));
            const __m128 t1 = _mm_hadd_ps(t0, t0);
            float sum = _mm_cvtss_f32(_mm_hadd_ps(t1, t1));
            for (int i = np; i < n; i++)
                sum += xr[i] * y[q][i];
            out[(size_t)q * out_stride + r] = sum;
        }
    }
}

static inline float hsum8_lanes(__m256 acc)
{
    __m128 h = _mm_add_ps(_mm256_extractf128_ps(acc, 1), _mm256_castps256_ps128(acc));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

/* ---- attention: all query heads of a key/value head at once ----------------------------------
 *
 * At a long context attention reads the whole cache for every query head; one head at a time,
 * the query heads sharing a key/value head (8 in TinyLlama) each read its keys and V^T again,
 * from L3 or memory once the cache outgrows L2: 21 ms of a generated token at 2048 positions
 * (1.1B), against about 3 ms for reading the cache once. These kernels read every cached row
 * once for up to LLM_ATTN_HEADS heads. Each (head, row) still gets the one-head dot's arithmetic
 * in its order (ggml_vec_dot_f32's, or one 8-lane accumulator), so its bits. */

/* ggml's four partial sums of one row over the 32-element steps, combined as it does
 * ((0 + 2) + (1 + 3)): the 8-lane vector its final reduction starts from. */
static inline __attribute__((always_inline)) __m256 ggml_partial(int np, const float *x, const float *y)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int i = 0; i < np; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), a3);
    }
    return _mm256_add_ps(_mm256_add_ps(a0, a2), _mm256_add_ps(a1, a3));
}

/* ggml's final reduction (high half + low half, then two horizontal adds) of eight rows' partial
 * vectors at once: the same additions on the same operands, eight results in row order. */
static inline __attribute__((always_inline)) __m256 ggml_reduce8(const __m256 v[8])
{
    __m256 h[4];
    #pragma GCC unroll 4
    for (int k = 0; k < 4; k++)
        h[k] = _mm256_add_ps(_mm256_permute2f128_ps(v[2 * k], v[2 * k + 1], 0x20),
                             _mm256_permute2f128_ps(v[2 * k], v[2 * k + 1], 0x31));
    /* lanes: rows 0, 2, 4, 6, 1, 3, 5, 7 */
    const __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(h[0], h[1]), _mm256_hadd_ps(h[2], h[3]));
    return _mm256_permutevar8x32_ps(s, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* ggml_partial for head_dim 64 with the query in registers: only the key is loaded. */
static inline __attribute__((always_inline)) __m256 ggml_partial64(const float *x, const __m256 yv[8])
{
    const __m256 z = _mm256_setzero_ps();
    __m256 a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x), yv[0], z), a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + 8), yv[1], z);
    __m256 a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + 16), yv[2], z), a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + 24), yv[3], z);
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + 32), yv[4], a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + 40), yv[5], a1);
    a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + 48), yv[6], a2);
    a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + 56), yv[7], a3);
    return _mm256_add_ps(_mm256_add_ps(a0, a2), _mm256_add_ps(a1, a3));
}

/* head_dim 64 (TinyLlama, Llama 2 7B, Qwen2 0.5B): each head's query stays in registers while
 * its rows pass, so each product loads only the key (two loads per product had made the scores
 * load-bound). */
static void attn_scores64(int n_rows, const float *x, size_t x_stride, int nq, const float *const y[], float *out,
                          size_t out_stride)
{
    int r = 0;
    for (; r + 8 <= n_rows; r += 8)
        for (int q = 0; q < nq; q++) {
            __m256 yv[8], v[8];
            #pragma GCC unroll 8
            for (int j = 0; j < 8; j++)
                yv[j] = _mm256_loadu_ps(y[q] + 8 * j);
            #pragma GCC unroll 8
            for (int k = 0; k < 8; k++)
                v[k] = ggml_partial64(x + (size_t)(r + k) * x_stride, yv);
            _mm256_storeu_ps(out + (size_t)q * out_stride + r, ggml_reduce8(v));
        }
    for (; r < n_rows; r++)
        for (int q = 0; q < nq; q++)
            out[(size_t)q * out_stride + r] = llm_dot_f32_ggml_avx2(64, x + (size_t)r * x_stride, y[q]);
}

void llm_attn_scores_avx2(int n, int n_rows, const float *x, size_t x_stride, int nq, const float *const y[],
                          float *out, size_t out_stride)
{
    if (n == 64) {
        attn_scores64(n_rows, x, x_stride, nq, y, out, out_stride);
        return;
    }
    const int np = n & ~31;
    int r = 0;
    for (; r + 8 <= n_rows; r += 8) /* eight keys, then every head against them (from L1) */
        for (int q = 0; q < nq; q++) {
            __m256 v[8];
            #pragma GCC unroll 8
            for (int k = 0; k < 8; k++)
                v[k] = ggml_partial(np, x + (size_t)(r + k) * x_stride, y[q]);
            float *o = out + (size_t)q * out_stride + r;
            _mm256_storeu_ps(o, ggml_reduce8(v));
            for (int k = 0; k < 8 && np < n; k++)
                for (int i = np; i < n; i++)
                    o[k] += x[(size_t)(r + k) * x_stride + i] * y[q][i];
        }
    for (; r < n_rows; r++)
        for (int q = 0; q < nq; q++)
            out[(size_t)q * out_stride + r] = llm_dot_f32_ggml_avx2(n, x + (size_t)r * x_stride, y[q]);
}

void llm_attn_values_avx2(int n, int n_rows, const float *x, size_t x_stride, int nq, const float *const y[],
                          float *out, size_t out_stride)
{
    for (int r = 0; r < n_rows; r++) { /* a V^T row stays in L1 while every head's weights pass */
        const float *xr = x + (size_t)r * x_stride;
        int q = 0;
        for (; q + 2 <= nq; q += 2)
            dot_ggml_queries(n, 1, xr, x_stride, 2, y + q, out + (size_t)q * out_stride + r, out_stride);
        if (q < nq)
            out[(size_t)q * out_stride + r] = llm_dot_f32_ggml_avx2(n, xr, y[q]);
    }
}

void llm_attn_values_lanes8_avx2(int n, int n_rows, const float *x, size_t x_stride, int nq, const float *const y[],
                                 float *out, size_t out_stride)
{
    for (int r = 0; r < n_rows; r++) {
        const float *xr = x + (size_t)r * x_stride;
        __m256 acc[LLM_ATTN_HEADS];
        #pragma GCC unroll 8
        for (int q = 0; q < LLM_ATTN_HEADS; q++)
            acc[q] = _mm256_setzero_ps();
        for (int i = 0; i < n; i += 8) {
            const __m256 xv = _mm256_loadu_ps(xr + i);
            #pragma GCC unroll 8
            for (int q = 0; q < LLM_ATTN_HEADS; q++)
                if (q < nq)
                    acc[q] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(y[q] + i), acc[q]);
        }
        for (int q = 0; q < nq; q++)
            out[(size_t)q * out_stride + r] = hsum8_lanes(acc[q]);
    }
}
