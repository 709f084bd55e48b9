/*
 * quants_avx2 — AVX2 + FMA + F16C dot products and activation quantizers.
 *
 * Compiled with -mavx2 -mfma -mf16c (the Makefile does that for *_avx2.c only) and reached
 * only through the dispatch table after a CPU check, so the rest of the binary stays
 * baseline x86-64. Each function computes what its scalar twin in quants.c / quants_k.c
 * computes: integer sums per (sub-)block are exact, only the float accumulation order
 * differs. The activation quantizers produce byte-identical blocks to the scalar ones.
 *
 * The integer core is the usual AVX2 idiom: _mm256_maddubs_epi16 (u8 x s8 -> pairs of i16,
 * which cannot saturate for our ranges: |q| <= 63, |y| <= 127) then _mm256_madd_epi16 with the
 * scales (or ones) to widen to i32.
 */
#include "kernels/blocks.h"

#include <immintrin.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------------------------- */

static inline float h2f(llm_half h)
{
    return _cvtsh_ss(h);
}

static inline float hsum_ps(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline int hsum_epi32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

/* Sum of adjacent i16 pairs, widened to i32. */
static inline __m256i sum_i16_pairs(__m256i x)
{
    return _mm256_madd_epi16(_mm256_set1_epi16(1), x);
}

/* 8 x i32 partial sums of u8 x s8 products (x unsigned, y signed). */
static inline __m256i mul_sum_us8(__m256i x, __m256i y)
{
    return sum_i16_pairs(_mm256_maddubs_epi16(x, y));
}

/* 8 x i32 partial sums of s8 x s8: move x's sign onto y so maddubs sees |x|. */
static inline __m256i mul_sum_i8(__m256i x, __m256i y)
{
    return mul_sum_us8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

/* 32 nibbles of 16 bytes: low nibbles to bytes 0..15, high nibbles to bytes 16..31. A
 * broadcast load and a per-lane variable shift keep the shuffle port free (an insert of the
 * shifted copy measured 10-15% slower in the q4_0 dot). */
static inline __m256i nibbles_32(const uint8_t *p)
{
    __m256i both = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
    both = _mm256_srlv_epi64(both, _mm256_set_epi64x(4, 4, 0, 0));
    return _mm256_and_si256(both, _mm256_set1_epi8(0xF));
}

/* Byte j = 0xFF when bit j of the 32-bit word at p is set, else 0. */
static inline __m256i bits_32(const uint8_t *p)
{
    uint32_t w;
    memcpy(&w, p, 4);
    /* byte j takes source byte j/8, then keeps bit j%8 */
    const __m256i pick = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32((int)w), pick);
    return _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
}

/* ---- float formats ------------------------------------------------------------------------- */

void llm_vec_dot_f32_avx2(int64_t n, float *s, const void *w, const void *act)
{
    const float *x = w, *y = act;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
    float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++)
        sum += x[i] * y[i];
    *s = sum;
}

static inline __m256 load_f16x8(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

void llm_vec_dot_f16_avx2(int64_t n, float *s, const void *w, const void *act)
{
    const uint16_t *x = w, *y = act;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(load_f16x8(x + i), load_f16x8(y + i), a0);
        a1 = _mm256_fmadd_ps(load_f16x8(x + i + 8), load_f16x8(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(load_f16x8(x + i + 16), load_f16x8(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(load_f16x8(x + i + 24), load_f16x8(y + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(load_f16x8(x + i), load_f16x8(y + i), a0);
    float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++)
        sum += h2f(x[i]) * h2f(y[i]);
    *s = sum;
}

static inline __m256 load_bf16x8(const uint16_t *p)
{
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

void llm_vec_dot_bf16_avx2(int64_t n, float *s, const void *w, const void *act)
{
    const uint16_t *x = w, *y = act;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(load_bf16x8(x + i), load_bf16x8(y + i), a0);
        a1 = _mm256_fmadd_ps(load_bf16x8(x + i + 8), load_bf16x8(y + i + 8), a1);
    }
    float sum = hsum_ps(_mm256_add_ps(a0, a1));
    for (; i < n; i++)
        sum += llm_bf16_to_fp32(x[i]) * llm_bf16_to_fp32(y[i]);
    *s = sum;
}

void llm_act_f16_avx2(const float *x, void *dst, int64_t n)
{
    uint16_t *h = dst;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(h + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++)
        h[i] = llm_fp32_to_fp16(x[i]);
}

/* ---- 32-element formats -------------------------------------------------------------------- */

/* The fp16 scales of 8 consecutive blocks (`stride` bytes apart, scale first in the block)
 * as 8 floats: one conversion instead of eight keeps the per-block overhead small. */
static inline __m256 scales8(const void *first, size_t stride)
{
    const uint8_t *p = first;
    uint16_t h[8];
    for (int k = 0; k < 8; k++)
        memcpy(&h[k], p + (size_t)k * stride, 2);
    return _mm256_cvtph_ps(_mm_setr_epi16((short)h[0], (short)h[1], (short)h[2], (short)h[3], (short)h[4],
                                          (short)h[5], (short)h[6], (short)h[7]));
}

/* Four blocks' i16 pair sums (16 lanes each) reduced to one i32 per block: two rounds of
 * horizontal adds stay in i16 (|8 products| <= 8*8*127 = 8128 for q4_0/q5_0/q8_0-style
 * offset sums, checked per format), then one madd widens. Lanes: [A, B, C, D] in each 128-bit
 * half, to be scaled by [dA, dB, dC, dD] and summed with the other half. The reduction runs on
 * the shuffle/ALU ports and leaves the one integer-multiply port to the maddubs. */
static inline __m256i reduce4_i16(__m256i a, __m256i b, __m256i c, __m256i d)
{
    __m256i h = _mm256_hadd_epi16(_mm256_hadd_epi16(a, b), _mm256_hadd_epi16(c, d));
    return sum_i16_pairs(h);
}

/* (q - 8) * y pair sums of one q4_0 block as 16 x i16 (|pair| <= 2*8*127): unsigned nibbles
 * keep the product to one maddubs, and 8 * y is subtracted in i16. (Moving the sign of q - 8
 * onto y with _mm256_sign_epi8, as for q8_0, measured 10% slower here.) */
static inline __m256i q4_0_block_i16(const block_q4_0 *x, const block_q8_0 *y)
{
    __m256i y8 = _mm256_loadu_si256((const __m256i *)y->qs);
    return _mm256_sub_epi16(_mm256_maddubs_epi16(nibbles_32(x->qs), y8),
                            _mm256_maddubs_epi16(_mm256_set1_epi8(8), y8));
}

/* One accumulator per row, both halves of each 8-block step added in order (the reduction
 * between them is long enough to hide the FMA latency); the 4-row kernel below repeats this
 * order exactly. */
void llm_vec_dot_q4_0_avx2(int64_t n, float *s, const void *w, const void *act)
{
    const block_q4_0 *x = w;
    const block_q8_0 *y = act;
    __m256 acc = _mm256_setzero_ps();
    int64_t nb = n / QK4_0, i = 0;
    for (; i + 8 <= nb; i += 8) {
        __m256 d = _mm256_mul_ps(scales8(&x[i], sizeof *x), scales8(&y[i], sizeof *y));
        for (int h = 0; h < 2; h++) {
            const int64_t b = i + 4 * h;
            __m256i sum = reduce4_i16(q4_0_block_i16(&x[b], &y[b]), q4_0_block_i16(&x[b + 1], &y[b + 1]),
                                      q4_0_block_i16(&x[b + 2], &y[b + 2]), q4_0_block_i16(&x[b + 3], &y[b + 3]));
            __m256 dh = h ? _mm256_permute2f128_ps(d, d, 0x11) : _mm256_permute2f128_ps(d, d, 0x00);
            acc = _mm256_fmadd_ps(dh, _mm256_cvtepi32_ps(sum), acc);
        }
    }
    for (; i < nb; i++) {
        __m256i p = sum_i16_pairs(q4_0_block_i16(&x[i], &y[i]));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d)), _mm256_cvtepi32_ps(p), acc);
    }
    *s = hsum_ps(acc);
}

/* Four q4_0 rows against one activation row, each output bit-identical to
 * llm_vec_dot_q4_0_avx2 (same operations in the same order per row): the activation loads and
 * the 8 * y products are shared by the rows. */
void llm_vec_dot4_q4_0_avx2(int64_t n, float s[4], const void *w, size_t w_stride, const void *act)
{
    const block_q4_0 *x[4];
    #pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
        x[r] = (const block_q4_0 *)((const uint8_t *)w + (size_t)r * w_stride);
    const block_q8_0 *y = act;
    __m256 acc[4];
    #pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
        acc[r] = _mm256_setzero_ps();
    int64_t nb = n / QK4_0, i = 0;
    for (; i + 8 <= nb; i += 8) {
        __m256 dy = scales8(&y[i], sizeof *y), d[4];
        #pragma GCC unroll 4
        for (int r = 0; r < 4; r++)
            d[r] = _mm256_mul_ps(scales8(&x[r][i], sizeof *x[r]), dy);
        #pragma GCC unroll 4
        for (int h = 0; h < 2; h++) {
            const int64_t b = i + 4 * h;
            __m256i c[4];
            #pragma GCC unroll 4
            for (int k = 0; k < 4; k++)
                c[k] = _mm256_maddubs_epi16(_mm256_set1_epi8(8), _mm256_loadu_si256((const __m256i *)y[b + k].qs));
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) {
                __m256i p[4];
                #pragma GCC unroll 4
                for (int k = 0; k < 4; k++)
                    p[k] = _mm256_sub_epi16(_mm256_maddubs_epi16(nibbles_32(x[r][b + k].qs),
                                                                 _mm256_loadu_si256((const __m256i *)y[b + k].qs)),
                                            c[k]);
                __m256i sum = reduce4_i16(p[0], p[1], p[2], p[3]);
                __m256 dh = h ? _mm256_permute2f128_ps(d[r], d[r], 0x11) : _mm256_permute2f128_ps(d[r], d[r], 0x00);
                acc[r] = _mm256_fmadd_ps(dh, _mm256_cvtepi32_ps(sum), acc[r]);
            }
        }
    }
    for (; i < nb; i++) {
        #pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            __m256i p = sum_i16_pairs(q4_0_block_i16(&x[r][i], &y[i]));
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[r][i].d) * h2f(y[i].d)), _mm256_cvtepi32_ps(p), acc[r]);
        }
    }
    #pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
        s[r] = hsum_ps(acc[r]);
}

void llm_vec_dot_q4_1_avx2(int64_t n, float *s, const void *w, const void *act)
{
    const block_q4_1 *x = w;
    const block_q8_1 *y = act;
    __m256 acc = _mm256_setzero_ps();
    float summs = 0;
    for (int64_t i = 0; i < n / QK4_1; i++) {
        __m256i p = mul_sum_us8(nibbles_32(x[i].qs), _mm256_loadu_si256((const __m256i *)y[i].qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d)), _mm256_cvtepi32_ps(p), acc);
        summs += h2f(x[i].m) * h2f(y[i].s);
    }
    *s = hsum_ps(acc) + summs;
}

void llm_vec_dot_q5_0_avx2(int64_t n, float *s, const void *w, const void *act)
{
    const block_q5_0 *x = w;
    const block_q8_0 *y = act;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK5_0; i++) {
        /* q - 16 as a signed byte: the nibble with 0xF0 or-ed in where the fifth bit is 0 */
        __m256i hi = _mm256_andnot_si256(bits_32(x[i].qh), _mm256_set1_epi8((char)0xF0));
        __m256i q = _mm256_or_si256(nibbles_32(x[i].qs), hi);
        __m256i p = mul_sum_i8(q, _mm256_loadu_si256((const __m256i *)y[i].qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d)), _mm256_cvtepi32_ps(p), acc);
    }
    *s = hsum_ps(acc);
}

void llm_vec_dot_q5_1_avx2(int64_t n, float *s, const void *w, const void *act)
{
    const block_q5_1 *x = w;
    const block_q8_1 *y = act;
    __m256 acc = _mm256_setzero_ps();
    float summs = 0;
    for (int64_t i = 0; i < n / QK5_1; i++) {
        __m256i hi = _mm256_and_si256(bits_32(x[i].qh), _mm256_set1_epi8(0x10));
        __m256i q = _mm256_or_si256(nibbles_32(x[i].qs), hi);
        __m256i p = mul_sum_us8(q, _mm256_loadu_si256((const __m256i *)y[i].qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d)), _mm256_cvtepi32_ps(p), acc);
        summs += h2f(x[i].m) * h2f(y[i].s);
    }
    *s = hsum_ps(acc) + summs;
}

static inline __m256i q8_0_block_sums(const block_q8_0 *x, const block_q8_0 *y)
{
    return mul_sum_i8(_mm256_loadu_si256((const __m256i *)x->qs), _mm256_loadu_si256((const __m256i *)y->qs));
}

void llm_vec_dot_q8_0_avx2(int64_t n, float *s, const void *w, const void *act)
{
    const block_q8_0 *x = w;
    const block_q8_0 *y = act;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t nb = n / QK8_0, i = 0;
    for (; i + 2 <= nb; i += 2) {
        __m256i p0 = q8_0_block_sums(&x[i], &y[i]);
        __m256i p1 = q8_0_block_sums(&x[i + 1], &y[i + 1]);
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d)), _mm256_cvtepi32_ps(p0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i + 1].d) * h2f(y[i + 1].d)), _mm256_cvtepi32_ps(p1), acc1);
    }
    for (; i < nb; i++) {
        __m256i p = q8_0_block_sums(&x[i], &y[i]);
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d)), _mm256_cvtepi32_ps(p), acc0);
    }
    *s = hsum_ps(_mm256_add_ps(acc0, acc1));
}

/* One Q8_0/Q8_1 activation block exactly as ggml's AVX2 quantize_row_q8_0/1: d = amax/127,
 * q = round_half_even(x * (127/amax)). Returns the sum of the quants (for Q8_1's s). */
static inline int act_q8_block_avx2(const float *x, llm_half *dh, int8_t *qs, float *d_out)
{
    __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
    __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1));
    m = _mm256_max_ps(m, _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
    __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    float amax = _mm_cvtss_f32(m4);
    float d = amax / 127.f;
    float id = amax != 0.0f ? 127.f / amax : 0.0f;
    *dh = llm_fp32_to_fp16(d);
    *d_out = d;
    const __m256 mul = _mm256_set1_ps(id);
    __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v0, mul), _MM_FROUND_TO_NEAREST_INT));
    __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v1, mul), _MM_FROUND_TO_NEAREST_INT));
    __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v2, mul), _MM_FROUND_TO_NEAREST_INT));
    __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v3, mul), _MM_FROUND_TO_NEAREST_INT));
    int sum = hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)));
    /* packs work per 128-bit lane; the permute restores element order */
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)qs, p);
    return sum;
}

void llm_act_q8_0_avx2(const float *x, void *dst, int64_t n)
{
    block_q8_0 *b = dst;
    float d;
    for (int64_t i = 0; i < n / QK8_0; i++)
        act_q8_block_avx2(x + i * QK8_0, &b[i].d, b[i].qs, &d);
}

void llm_act_q8_1_avx2(const float *x, void *dst, int64_t n)
{
    block_q8_1 *b = dst;
    float d;
    for (int64_t i = 0; i < n / QK8_1; i++) {
        int sum = act_q8_block_avx2(x + i * QK8_1, &b[i].d, b[i].qs, &d);
        b[i].s = llm_fp32_to_fp16(d * (float)sum);
    }
}

/* ---- K-quants ------------------------------------------------------------------------------ */

/* From 16 signed byte scales (one per 16-element group), the i16 multipliers for groups
 * g and g+1 (g even) laid out as maddubs lays out 32 bytes: i16 lanes 0..7 take bytes
 * 0..15 (group g), lanes 8..15 take bytes 16..31 (group g+1). */
static inline __m256i scale_pair(__m128i scales8, int g)
{
    const __m128i ctrl = _mm_set_epi64x((long long)(0x0101010101010101ull * (uint64_t)(g + 1)),
                                        (long long)(0x0101010101010101ull * (uint64_t)g));
    return _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales8, ctrl));
}

void llm_act_q8_K_avx2(const float *x, void *dst, int64_t n)
{
    block_q8_K *y = dst;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        __m256 m = _mm256_setzero_ps();
        for (int j = 0; j < QK_K; j += 8)
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)));
        __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float amax = _mm_cvtss_f32(m4);
        if (!amax) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        /* the reference keeps the sign of the first element reaching amax */
        float max = 0;
        for (int j = 0; j < QK_K; j++) {
            if (x[j] == amax || x[j] == -amax) {
                max = x[j];
                break;
            }
        }
        const float iscale = -127.f / max;
        const __m256 mul = _mm256_set1_ps(iscale);
        const __m256i top = _mm256_set1_epi32(127);
        for (int g = 0; g < QK_K / 32; g++) {
            __m256i q[4];
            for (int k = 0; k < 4; k++) {
                __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + 32 * g + 8 * k), mul);
                q[k] = _mm256_min_epi32(top, _mm256_cvtps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT)));
            }
            y[i].bsums[2 * g] = (int16_t)hsum_epi32(_mm256_add_epi32(q[0], q[1]));
            y[i].bsums[2 * g + 1] = (int16_t)hsum_epi32(_mm256_add_epi32(q[2], q[3]));
            __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
            p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256((__m256i *)(y[i].qs + 32 * g), p);
        }
        y[i].d = 1 / iscale;
    }
}

void llm_vec_dot_q2_K_avx2(int64_t n, float *s, const void *w, const void *act)
{
    const block_q2_K *x = w;
    const block_q8_K *y = act;
    const __m256i m3 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    float acc_min = 0;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const uint8_t *sc = x[i].scales;
        /* min term: sum_g (sc[g] >> 4) * bsums[g] */
        __m128i scb = _mm_loadu_si128((const __m128i *)sc);
        __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(scb, 4), _mm_set1_epi8(0xF)));
        __m256i bs = _mm256_loadu_si256((const __m256i *)y[i].bsums);
        int summs = hsum_epi32(_mm256_madd_epi16(mins, bs));

        __m128i scales = _mm_and_si128(scb, _mm_set1_epi8(0xF));
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i bits = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * h));
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                __m256i q2 = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * j), m3);
                __m256i q8 = _mm256_loadu_si256((const __m256i *)(y[i].qs + 128 * h + 32 * j));
                __m256i p = _mm256_maddubs_epi16(q2, q8);
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(scale_pair(scales, 8 * h + 2 * j), p));
            }
        }
        float dall = y[i].d * h2f(x[i].d), dmin = y[i].d * h2f(x[i].dmin);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dall), _mm256_cvtepi32_ps(sumi), acc);
        acc_min += dmin * (float)summs;
    }
    *s = hsum_ps(acc) - acc_min;
}

/* The 16 signed 6-bit scales of a q3_K block (minus 32) as bytes, unpacked with word
 * operations (layout as in llm_q3_K_scales). */
static inline __m128i q3_K_scales(const uint8_t packed[12])
{
    uint32_t a[4];
    memcpy(a, packed, 12);
    const uint32_t low4 = 0x0f0f0f0f, low2 = 0x03030303;
    uint32_t hi = a[2];
    a[2] = ((a[0] >> 4) & low4) | (((hi >> 4) & low2) << 4);
    a[3] = ((a[1] >> 4) & low4) | (((hi >> 6) & low2) << 4);
    a[0] = (a[0] & low4) | (((hi >> 0) & low2) << 4);
    a[1] = (a[1] & low4) | (((hi >> 2) & low2) << 4);
    /* built from registers: a 16-byte load of the just-stored words would stall on store
     * forwarding */
    return _mm_sub_epi8(_mm_setr_epi32((int)a[0], (int)a[1], (int)a[2], (int)a[3]), _mm_set1_epi8(32));
}

/* q3 = (q2 + 4 * hbit) - 4: the unsigned 3-bit value (0..7) goes through one maddubs, and the
 * -4 offset is taken out once per block from the activation bsums (sum_g sc[g] * 4 * bsums[g]).
 * Each block's integer sum is exact, as in the scalar reference. */
void llm_vec_dot_q3_K_avx2(int64_t n, float *s, const void *w, const void *act)
{
    const block_q3_K *x = w;
    const block_q8_K *y = act;
    const __m256i m3 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        __m128i scales = q3_K_scales(x[i].scales);
        __m256i offset = _mm256_madd_epi16(_mm256_cvtepi8_epi16(scales),
                                           _mm256_loadu_si256((const __m256i *)y[i].bsums));
        __m256i sumi = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(offset, 2));
        __m256i hmask = _mm256_loadu_si256((const __m256i *)x[i].hmask);
        for (int h = 0; h < 2; h++) {
            __m256i bits = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * h));
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                const int bit = 4 * h + j; /* hmask bit of this run, moved to bit 2 (value 4) */
                __m256i hb = _mm256_and_si256(hmask, _mm256_set1_epi8((char)(1 << bit)));
                hb = bit >= 2 ? _mm256_srli_epi16(hb, bit - 2) : _mm256_slli_epi16(hb, 2 - bit);
                __m256i q = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits, 2 * j), m3), hb);
                __m256i q8 = _mm256_loadu_si256((const __m256i *)(y[i].qs + 128 * h + 32 * j));
                __m256i p = _mm256_maddubs_epi16(q, q8);
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(scale_pair(scales, 8 * h + 2 * j), p));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * y[i].d), _mm256_cvtepi32_ps(sumi), acc);
    }
    *s = hsum_ps(acc);
}

/* The 8 scales (bytes 0..7) and 8 mins (bytes 8..15) of a q4_K/q5_K block, unpacked from
 * the 12-byte 6-bit layout with word operations (see llm_get_scale_min_k4 for the layout). */
static inline __m128i k4_scales_mins(const uint8_t packed[12])
{
    uint32_t u[4];
    memcpy(u, packed, 12);
    const uint32_t low6 = 0x3f3f3f3f, low4 = 0x0f0f0f0f, low2 = 0x03030303;
    u[3] = ((u[2] >> 4) & low4) | (((u[1] >> 6) & low2) << 4); /* mins 4..7 */
    uint32_t mins03 = u[1] & low6;
    u[1] = (u[2] & low4) | (((u[0] >> 6) & low2) << 4); /* scales 4..7 */
    u[2] = mins03;
    u[0] &= low6; /* scales 0..3 */
    return _mm_setr_epi32((int)u[0], (int)u[1], (int)u[2], (int)u[3]); /* not via memory: see q3_K_scales */
}

/* vpshufb control that broadcasts i16 lane j (j < 8) of each 128-bit half. */
static inline __m256i i16_lane(int j)
{
    return _mm256_set1_epi16((short)(0x0100 + 0x0202 * j));
}

/* sum_j m[j] * (bsums[2j] + bsums[2j+1]) as 4 x i32 (mins16: i16 lanes 0..7). */
static inline __m128i k4_min_term(__m128i mins16, const int16_t bsums[16])
{
    __m256i bs = _mm256_loadu_si256((const __m256i *)bsums);
    __m128i pair = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
    return _mm_madd_epi16(mins16, pair);
}

void llm_vec_dot_q4_K_avx2(int64_t n, float *s, const void *w, const void *act)
{
    const block_q4_K *x = w;
    const block_q8_K *y = act;
    const __m256i m4 = _mm256_set1_epi8(0xF);
    __m256 acc = _mm256_setzero_ps();
    __m128 acc_m = _mm_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        __m256i sm = _mm256_cvtepu8_epi16(k4_scales_mins(x[i].scales)); /* i16: 8 scales, 8 mins */
        __m256i scales = _mm256_broadcastsi128_si256(_mm256_castsi256_si128(sm));
        __m128i mt = k4_min_term(_mm256_extracti128_si256(sm, 1), y[i].bsums);
        const uint8_t *q4 = x[i].qs;
        const int8_t *q8 = y[i].qs;
        __m256i sumi0 = _mm256_setzero_si256(), sumi1 = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int c = 0; c < QK_K / 64; c++) {
            __m256i bits = _mm256_loadu_si256((const __m256i *)(q4 + 32 * c));
            __m256i lo = _mm256_and_si256(bits, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
            __m256i pl = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(q8 + 64 * c)));
            __m256i ph = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(q8 + 64 * c + 32)));
            pl = _mm256_madd_epi16(_mm256_shuffle_epi8(scales, i16_lane(2 * c)), pl);
            ph = _mm256_madd_epi16(_mm256_shuffle_epi8(scales, i16_lane(2 * c + 1)), ph);
            sumi0 = _mm256_add_epi32(sumi0, pl);
            sumi1 = _mm256_add_epi32(sumi1, ph);
        }
        float d = y[i].d * h2f(x[i].d), dmin = y[i].d * h2f(x[i].dmin);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(_mm256_add_epi32(sumi0, sumi1)), acc);
        acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(mt), acc_m);
    }
    __m128 m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
    m = _mm_add_ss(m, _mm_movehdup_ps(m));
    *s = hsum_ps(acc) - _mm_cvtss_f32(m);
}

void llm_vec_dot_q5_K_avx2(int64_t n, float *s, const void *w, const void *act)
{
    const block_q5_K *x = w;
    const block_q8_K *y = act;
    const __m256i m4 = _mm256_set1_epi8(0xF), sixteen = _mm256_set1_epi8(16);
    __m256 acc = _mm256_setzero_ps();
    __m128 acc_m = _mm_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        __m256i sm = _mm256_cvtepu8_epi16(k4_scales_mins(x[i].scales));
        __m256i scales = _mm256_broadcastsi128_si256(_mm256_castsi256_si128(sm));
        __m128i mt = k4_min_term(_mm256_extracti128_si256(sm, 1), y[i].bsums);
        const uint8_t *q5 = x[i].qs;
        const int8_t *q8 = y[i].qs;
        __m256i hbits = _mm256_loadu_si256((const __m256i *)x[i].qh);
        __m256i sumi = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int c = 0; c < QK_K / 64; c++) {
            __m256i bits = _mm256_loadu_si256((const __m256i *)(q5 + 32 * c));
            /* fifth bits of this chunk: qh bit 2c (low nibbles) and 2c+1 (high nibbles) -> 16 */
            __m256i hl = _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(hbits, 2 * c), 4), sixteen);
            __m256i hh = _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(hbits, 2 * c + 1), 4), sixteen);
            __m256i lo = _mm256_or_si256(_mm256_and_si256(bits, m4), hl);
            __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits, 4), m4), hh);
            __m256i pl = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(q8 + 64 * c)));
            __m256i ph = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(q8 + 64 * c + 32)));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_shuffle_epi8(scales, i16_lane(2 * c)), pl));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_shuffle_epi8(scales, i16_lane(2 * c + 1)), ph));
        }
        float d = y[i].d * h2f(x[i].d), dmin = y[i].d * h2f(x[i].dmin);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(mt), acc_m);
    }
    __m128 m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
    m = _mm_add_ss(m, _mm_movehdup_ps(m));
    *s = hsum_ps(acc) - _mm_cvtss_f32(m);
}

/* The -32 offset of the 6-bit quants is taken out once per block from the activation's
 * 16-element sums (bsums): sum_g sc[g] * 32 * bsums[g], one madd, instead of a second maddubs
 * per 32 elements (in cache 23 -> 27 GB/s per core). Each block's integer sum is exact, as
 * before; only its spread over the 8 lanes (and so the float rounding) differs. */
void llm_vec_dot_q6_K_avx2(int64_t n, float *s, const void *w, const void *act)
{
    const block_q6_K *x = w;
    const block_q8_K *y = act;
    const __m256i m4 = _mm256_set1_epi8(0xF), m2 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        __m128i scales = _mm_loadu_si128((const __m128i *)x[i].scales);
        __m256i offset = _mm256_madd_epi16(_mm256_cvtepi8_epi16(scales),
                                           _mm256_loadu_si256((const __m256i *)y[i].bsums));
        __m256i sumi = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(offset, 5));
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = x[i].ql + 64 * h;
            const int8_t *q8 = y[i].qs + 128 * h;
            __m256i b1 = _mm256_loadu_si256((const __m256i *)ql);
            __m256i b2 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            __m256i bh = _mm256_loadu_si256((const __m256i *)(x[i].qh + 32 * h));
            /* the four 32-element runs of this half, unsigned 0..63 (|pair| <= 2*63*127) */
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(b1, m4), _mm256_slli_epi16(_mm256_and_si256(bh, m2), 4));
            q[1] = _mm256_or_si256(_mm256_and_si256(b2, m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(bh, 2), m2), 4));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b1, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(bh, 4), m2), 4));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b2, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(bh, 6), m2), 4));
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                __m256i p = _mm256_maddubs_epi16(q[k], _mm256_loadu_si256((const __m256i *)(q8 + 32 * k)));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(scale_pair(scales, 8 * h + 2 * k), p));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * y[i].d), _mm256_cvtepi32_ps(sumi), acc);
    }
    *s = hsum_ps(acc);
}
