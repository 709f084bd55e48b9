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
#include "kernels/simd_avx2.h"

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

/* The fp16 scales of 8 consecutive blocks as 8 floats, for blocks whose scale comes first and
 * whose size is 2 mod 16 (q4_0: 18, q8_0: 34). Block k's scale then sits at byte 2k of the
 * 8 bytes at (size - 2) * k for k < 4, and at byte 2k - 8 of the 8 bytes 8 further on for
 * k >= 4: eight plain loads, masks and ors on the integer ports, and one conversion. Building
 * the vector with eight 16-bit inserts instead cost ~30% of the q4_0 dot, and eight loads
 * folded into word blends ~8% (measured): the loop is bound by its vector micro-ops, and this
 * gather runs on the integer side. */
static inline __m256 scales8(const void *first, size_t size)
{
    const uint8_t *p = first;
    uint64_t lo = 0, hi = 0;
    #pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        uint64_t a, b;
        memcpy(&a, p + (size - 2) * (size_t)k, 8);
        memcpy(&b, p + (size - 2) * (size_t)(k + 4) + 8, 8);
        lo |= a & (0xFFFFull << (16 * k));
        hi |= b & (0xFFFFull << (16 * k));
    }
    return _mm256_cvtph_ps(_mm_insert_epi64(_mm_cvtsi64_si128((long long)lo), (long long)hi, 1));
}

/* Eight blocks' i16 pair sums (16 lanes each) reduced to one i32 per block, lanes in block
 * order: unpacks and i16 adds halve the vector count three times (the last across the two
 * 128-bit halves), then one madd widens adjacent pairs, both of the same block. This replaced
 * a tree of _mm256_hadd_epi16, which costs three micro-ops each and was the q4_0 dot's
 * bottleneck. Callers bound the i16 sums of 16 products: |(q - 8) * y| <= 8 * 128 and
 * unsigned nibble * y <= 15 * 128 keep them under 32768. */
_Static_assert(sizeof(block_q4_0) % 16 == 2 && sizeof(block_q8_0) % 16 == 2, "scales8 needs blocks of 2 mod 16 bytes");

static inline __m256i pairs_i32(__m256i a, __m256i b)
{
    return _mm256_add_epi16(_mm256_unpacklo_epi32(a, b), _mm256_unpackhi_epi32(a, b));
}

static inline __m256i pairs_i64(__m256i a, __m256i b)
{
    return _mm256_add_epi16(_mm256_unpacklo_epi64(a, b), _mm256_unpackhi_epi64(a, b));
}

static inline __m256i reduce8_i16(const __m256i p[8])
{
    __m256i lo = pairs_i64(pairs_i32(p[0], p[1]), pairs_i32(p[2], p[3]));
    __m256i hi = pairs_i64(pairs_i32(p[4], p[5]), pairs_i32(p[6], p[7]));
    __m256i both = _mm256_add_epi16(_mm256_permute2x128_si256(lo, hi, 0x20), _mm256_permute2x128_si256(lo, hi, 0x31));
    return sum_i16_pairs(both);
}

/* q * y pair sums of one q4_0 block as 16 x i16, q the unsigned nibble (q - 8 is the weight:
 * the 8 * y part is subtracted once per eight blocks, as integers, so the result is exact). */
static inline __m256i q4_0_block_u(const block_q4_0 *x, const block_q8_0 *y)
{
    return _mm256_maddubs_epi16(nibbles_32(x->qs), _mm256_loadu_si256((const __m256i *)y->qs));
}

/* 8 * sum(y) for each of eight activation blocks, as i32 lanes in block order. */
static inline __m256i q4_0_offsets8(const block_q8_0 *y)
{
    __m256i p[8];
    #pragma GCC unroll 8
    for (int k = 0; k < 8; k++)
        p[k] = _mm256_maddubs_epi16(_mm256_set1_epi8(8), _mm256_loadu_si256((const __m256i *)y[k].qs));
    return reduce8_i16(p);
}

/* The exact integer dot of eight blocks, minus the offsets, scaled by d and accumulated. */
static inline __m256 q4_0_step(const block_q4_0 *x, const block_q8_0 *y, __m256i offsets, __m256 d, __m256 acc)
{
    __m256i p[8];
    #pragma GCC unroll 8
    for (int k = 0; k < 8; k++)
        p[k] = q4_0_block_u(&x[k], &y[k]);
    __m256i sum = _mm256_sub_epi32(reduce8_i16(p), offsets);
    return _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sum), acc);
}

static inline __m256 q4_0_tail(const block_q4_0 *x, const block_q8_0 *y, int64_t i, int64_t nb, __m256 acc)
{
    for (; i < nb; i++) {
        __m256i y8 = _mm256_loadu_si256((const __m256i *)y[i].qs);
        __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(nibbles_32(x[i].qs), y8),
                                     _mm256_maddubs_epi16(_mm256_set1_epi8(8), y8));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d)), _mm256_cvtepi32_ps(sum_i16_pairs(p)), acc);
    }
    return acc;
}

/* Eight blocks per step, one FMA per step; the 4-row kernel below repeats this order exactly. */
void llm_vec_dot_q4_0_avx2(int64_t n, float *s, const void *w, const void *act)
{
    const block_q4_0 *x = w;
    const block_q8_0 *y = act;
    __m256 acc = _mm256_setzero_ps();
    int64_t nb = n / QK4_0, i = 0;
    for (; i + 8 <= nb; i += 8) {
        __m256 d = _mm256_mul_ps(scales8(&x[i], sizeof *x), scales8(&y[i], sizeof *y));
        acc = q4_0_step(&x[i], &y[i], q4_0_offsets8(&y[i]), d, acc);
    }
    *s = hsum_ps(q4_0_tail(x, y, i, nb, acc));
}

/* Four q4_0 rows against one activation row, each output bit-identical to
 * llm_vec_dot_q4_0_avx2 (same operations in the same order per row): the activation scales
 * and offsets are shared by the rows, and the next four rows are prefetched. (Unpacking two
 * rows per register, each in one 128-bit half, ran 9% faster in cache but 2-4% slower
 * streaming from memory, in two in-process A/B runs; prefetching with NTA or T1 hints instead
 * of T0: no gain, or 7% slower.) */
void llm_vec_dot4_q4_0_avx2(int64_t n, float s[4], const void *w, size_t w_stride, const void *act)
{
    const block_q4_0 *x[4];
    __m256 acc[4];
    #pragma GCC unroll 4
    for (int r = 0; r < 4; r++) {
        x[r] = (const block_q4_0 *)((const uint8_t *)w + (size_t)r * w_stride);
        acc[r] = _mm256_setzero_ps();
    }
    const block_q8_0 *y = act;
    const char *next = (const char *)w + 4 * w_stride;
    int64_t nb = n / QK4_0, i = 0;
    for (; i + 8 <= nb; i += 8) {
        const __m256 dy = scales8(&y[i], sizeof *y);
        const __m256i offsets = q4_0_offsets8(&y[i]);
        #pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            #pragma GCC unroll 3
            for (int l = 0; l < 3; l++)
                _mm_prefetch(next + (size_t)r * w_stride + (size_t)i * sizeof(block_q4_0) + 64 * l, _MM_HINT_T0);
            __m256 d = _mm256_mul_ps(scales8(&x[r][i], sizeof *x[r]), dy);
            acc[r] = q4_0_step(&x[r][i], &y[i], offsets, d, acc[r]);
        }
    }
    #pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
        s[r] = hsum_ps(q4_0_tail(x[r], y, i, nb, acc[r]));
}

/* ---- q4_0, many rows per call: activation work once, rows in address order ----------------
 *
 * What limits streaming q4_0 (in-process A/B against llm_vec_dot4_q4_0_avx2, 256 MiB matrix of
 * 4096-column rows, 30-40 alternations, thread CPU time for one core, quiet machine):
 * - How the weights are walked matters only through the hardware prefetcher. One sequential
 *   stream (rows one after another) needs no software prefetch; two rows interleaved ran at
 *   0.55x and the 4-row kernel's four interleaved rows at 0.3x without their software
 *   prefetches (with them, as fast as one stream). Software prefetch on top of one stream
 *   only costs: 512 B to 2 KiB ahead 0.80-0.88x, 4 KiB ahead 0.95x (one line per step: 1.0x).
 * - TLB misses do not limit: a MADV_HUGEPAGE'd copy (THP confirmed) ran the same.
 * - The work per block does: the 4-row kernel redoes the activation side of a step (its
 *   scales and the 8 * sum(y) offsets: eight maddubs and a reduction tree) for every four
 *   rows. Done once per call here: in cache (L2) 32.7 vs 24.4 GB/s,
 *   streaming 1.16x on one core (25.3 vs 22.0 GB/s, probe 29.9) and on two (50.3 vs 43.6,
 *   probe 57.2). Two blocks per register on top (activations laid out as block pairs, half the
 *   reduction) measured the same on a quiet machine, so it was not kept.
 *
 * The activation steps of up to Q4_0_ROWS_SPAN eight-block steps sit on the stack (64 B each:
 * 8 KiB for rows up to 32768 columns); wider rows go through the 4-row kernel. Every row gets
 * exactly vec_dot's operations in vec_dot's order, so results are bit-identical to it. */
#define Q4_0_ROWS_SPAN 128

typedef struct q4_0_act_step {
    __m256 dy;      /* the eight activation scales */
    __m256i offset; /* 8 * sum(y) of the eight blocks, i32 */
} q4_0_act_step;

void llm_vec_dot_rows_q4_0_avx2(int64_t n, int64_t nr, float *s, const void *w, size_t w_stride, const void *act)
{
    const block_q8_0 *y = act;
    const int64_t nb = n / QK4_0, steps = nb / 8;
    if (steps > Q4_0_ROWS_SPAN) {
        int64_t r = 0;
        for (; r + 4 <= nr; r += 4)
            llm_vec_dot4_q4_0_avx2(n, s + r, (const uint8_t *)w + (size_t)r * w_stride, w_stride, act);
        for (; r < nr; r++)
            llm_vec_dot_q4_0_avx2(n, s + r, (const uint8_t *)w + (size_t)r * w_stride, act);
        return;
    }
    q4_0_act_step a[Q4_0_ROWS_SPAN];
    for (int64_t st = 0; st < steps; st++) {
        a[st].dy = scales8(&y[8 * st], sizeof *y);
        a[st].offset = q4_0_offsets8(&y[8 * st]);
    }
    for (int64_t r = 0; r < nr; r++) {
        const block_q4_0 *x = (const block_q4_0 *)((const uint8_t *)w + (size_t)r * w_stride);
        __m256 acc = _mm256_setzero_ps();
        for (int64_t st = 0; st < steps; st++) {
            __m256 d = _mm256_mul_ps(scales8(&x[8 * st], sizeof *x), a[st].dy);
            acc = q4_0_step(&x[8 * st], &y[8 * st], a[st].offset, d, acc);
        }
        s[r] = hsum_ps(q4_0_tail(x, y, 8 * steps, nb, acc));
    }
}

/* Eight q4_0 rows packed for a batch (block_q4_0x8): per block, the eight scales and, for each
 * group of four quants, the eight rows' four bytes side by side, so one 32-byte vector holds
 * the same four elements of all eight rows. */
void llm_pack8_q4_0_avx2(const void *w, size_t w_stride, void *dst, int64_t n)
{
    block_q4_0x8 *out = dst;
    for (int r = 0; r < 8; r++) {
        const block_q4_0 *x = (const block_q4_0 *)((const uint8_t *)w + (size_t)r * w_stride);
        for (int64_t b = 0; b < n / QK4_0; b++) {
            uint8_t q[32];
            _mm256_storeu_si256((__m256i *)q, nibbles_32(x[b].qs));
            out[b].d[r] = x[b].d;
            for (int g = 0; g < 8; g++)
                memcpy(out[b].qs[g][r], q + 4 * g, 4);
        }
    }
}

/* The eight dots of packed rows with nt (<= 4) activation rows, lane r = row r. Per block: each
 * group of four activation bytes is broadcast and multiplied with the eight rows' four quants
 * by one maddubs; eight groups add up in i16 (16 products of q <= 15 and |y| <= 128: |sum| <=
 * 30720), one madd finishes the block's exact i32 sum, 8 * sum(y) is taken off (q - 8), and
 * the eight rows' scales are applied by one FMA. No horizontal adds. Each packed group is
 * loaded once for all nt tokens: one token at a time, the loop was bound by reading the
 * packed rows back from L2. Every token's result is computed by the same operations whatever
 * nt is. */
static inline void q4_0_packed_tokens(int64_t n, int nt, float *s, size_t s_stride, const block_q4_0x8 *x,
                                      const block_q8_0 *const y[4], const int32_t *const sums[4])
{
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[4];
    #pragma GCC unroll 4
    for (int t = 0; t < nt; t++)
        acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK4_0; b++) {
        __m256i s16[4];
        #pragma GCC unroll 4
        for (int t = 0; t < nt; t++)
            s16[t] = _mm256_setzero_si256();
        #pragma GCC unroll 8
        for (int g = 0; g < 8; g++) {
            const __m256i xg = _mm256_loadu_si256((const __m256i *)x[b].qs[g]);
            #pragma GCC unroll 4
            for (int t = 0; t < nt; t++) {
                int32_t y4;
                memcpy(&y4, y[t][b].qs + 4 * g, 4);
                /* adds, not add: the sums never saturate (bound above), so the result is the
                 * same, but gcc may not reassociate a saturating chain -- with add it built a
                 * tree of all 32 products first and spilled them to the stack (0.7x) */
                s16[t] = _mm256_adds_epi16(s16[t], _mm256_maddubs_epi16(xg, _mm256_set1_epi32(y4)));
            }
        }
        const __m256 dx = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)x[b].d));
        #pragma GCC unroll 4
        for (int t = 0; t < nt; t++) {
            __m256i s32 = _mm256_sub_epi32(_mm256_madd_epi16(s16[t], ones), _mm256_set1_epi32(8 * sums[t][b]));
            acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dx, _mm256_set1_ps(h2f(y[t][b].d))), _mm256_cvtepi32_ps(s32), acc[t]);
        }
    }
    #pragma GCC unroll 4
    for (int t = 0; t < nt; t++)
        _mm256_storeu_ps(s + (size_t)t * s_stride, acc[t]);
}

/* Splits a call into groups of up to four tokens with the token count a constant in each. */
#define PACKED_TOKENS_DISPATCH(fn, block_t, n, n_act, s, s_stride, packed, act, act_stride, act_sums)                  \
    do {                                                                                                               \
        const block_q8_0 *ys_[4];                                                                                      \
        const int32_t *sums_[4];                                                                                       \
        for (int t_ = 0; t_ < (n_act) && t_ < 4; t_++) {                                                               \
            ys_[t_] = (const block_q8_0 *)((const uint8_t *)(act) + (size_t)t_ * (act_stride));                        \
            sums_[t_] = (act_sums) + (size_t)t_ * (size_t)((n) / 32);                                                  \
        }                                                                                                              \
        switch (n_act) {                                                                                               \
        case 4: fn((n), 4, (s), (s_stride), (const block_t *)(packed), ys_, sums_); break;                             \
        case 3: fn((n), 3, (s), (s_stride), (const block_t *)(packed), ys_, sums_); break;                             \
        case 2: fn((n), 2, (s), (s_stride), (const block_t *)(packed), ys_, sums_); break;                             \
        default: fn((n), 1, (s), (s_stride), (const block_t *)(packed), ys_, sums_); break;                            \
        }                                                                                                              \
    } while (0)

void llm_vec_dot8_packed_q4_0_avx2(int64_t n, int n_act, float *s, size_t s_stride, const void *packed, const void *act,
                                   size_t act_stride, const int32_t *act_sums)
{
    PACKED_TOKENS_DISPATCH(q4_0_packed_tokens, block_q4_0x8, n, n_act, s, s_stride, packed, act, act_stride, act_sums);
}

/* Eight q8_0 rows packed for a batch (block_q8_0x8): each quant split into its low nibble and
 * its high nibble + 8, grouped by four like block_q4_0x8. */
void llm_pack8_q8_0_avx2(const void *w, size_t w_stride, void *dst, int64_t n)
{
    block_q8_0x8 *out = dst;
    const __m256i m4 = _mm256_set1_epi8(0xF), eight = _mm256_set1_epi8(8);
    for (int r = 0; r < 8; r++) {
        const block_q8_0 *x = (const block_q8_0 *)((const uint8_t *)w + (size_t)r * w_stride);
        for (int64_t b = 0; b < n / QK8_0; b++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)x[b].qs);
            uint8_t lo[32], hi[32];
            _mm256_storeu_si256((__m256i *)lo, _mm256_and_si256(q, m4));
            _mm256_storeu_si256((__m256i *)hi, _mm256_xor_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), eight));
            out[b].d[r] = x[b].d;
            for (int g = 0; g < 8; g++) {
                memcpy(out[b].lo[g][r], lo + 4 * g, 4);
                memcpy(out[b].hi[g][r], hi + 4 * g, 4);
            }
        }
    }
}

/* The eight dots of packed q8_0 rows with nt (<= 4) activation rows, lane r = row r, as
 * q4_0_packed_tokens does it for each nibble plane: sum(q * y) = 16 * sum(hi * y) -
 * 128 * sum(y) + sum(lo * y), exact in i32 (each plane's eight groups add up in i16: 16
 * products of <= 15 and |y| <= 128, |sum| <= 30720). */
static inline void q8_0_packed_tokens(int64_t n, int nt, float *s, size_t s_stride, const block_q8_0x8 *x,
                                      const block_q8_0 *const y[4], const int32_t *const sums[4])
{
    const __m256i ones = _mm256_set1_epi16(1), sixteen = _mm256_set1_epi16(16);
    __m256 acc[4];
    #pragma GCC unroll 4
    for (int t = 0; t < nt; t++)
        acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK8_0; b++) {
        __m256i lo[4], hi[4];
        #pragma GCC unroll 4
        for (int t = 0; t < nt; t++)
            lo[t] = hi[t] = _mm256_setzero_si256();
        #pragma GCC unroll 8
        for (int g = 0; g < 8; g++) {
            const __m256i xlo = _mm256_loadu_si256((const __m256i *)x[b].lo[g]);
            const __m256i xhi = _mm256_loadu_si256((const __m256i *)x[b].hi[g]);
            #pragma GCC unroll 4
            for (int t = 0; t < nt; t++) {
                int32_t y4;
                memcpy(&y4, y[t][b].qs + 4 * g, 4);
                const __m256i yb = _mm256_set1_epi32(y4);
                lo[t] = _mm256_adds_epi16(lo[t], _mm256_maddubs_epi16(xlo, yb)); /* adds: see q4_0 */
                hi[t] = _mm256_adds_epi16(hi[t], _mm256_maddubs_epi16(xhi, yb));
            }
        }
        const __m256 dx = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)x[b].d));
        #pragma GCC unroll 4
        for (int t = 0; t < nt; t++) {
            __m256i s32 = _mm256_add_epi32(_mm256_madd_epi16(hi[t], sixteen), _mm256_madd_epi16(lo[t], ones));
            s32 = _mm256_sub_epi32(s32, _mm256_set1_epi32(128 * sums[t][b]));
            acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dx, _mm256_set1_ps(h2f(y[t][b].d))), _mm256_cvtepi32_ps(s32), acc[t]);
        }
    }
    #pragma GCC unroll 4
    for (int t = 0; t < nt; t++)
        _mm256_storeu_ps(s + (size_t)t * s_stride, acc[t]);
}

void llm_vec_dot8_packed_q8_0_avx2(int64_t n, int n_act, float *s, size_t s_stride, const void *packed, const void *act,
                                   size_t act_stride, const int32_t *act_sums)
{
    PACKED_TOKENS_DISPATCH(q8_0_packed_tokens, block_q8_0x8, n, n_act, s, s_stride, packed, act, act_stride, act_sums);
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

/* Four blocks' i32 sums (8 lanes each) reduced to one i32 per block: lanes [A, B, C, D] in each
 * 128-bit half. q8_0 products need i32 before any horizontal add (|pair| <= 2*127*128); here,
 * unlike q4_0's i16 sums, hadd measured faster than an unpack tree (41.7 vs 33.2 GB/s in cache). */
static inline __m256i reduce4_i32(__m256i a, __m256i b, __m256i c, __m256i d)
{
    return _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
}

static inline __m256 q8_0_tail(const block_q8_0 *x, const block_q8_0 *y, int64_t i, int64_t nb, __m256 acc)
{
    for (; i < nb; i++)
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d)), _mm256_cvtepi32_ps(q8_0_block_sums(&x[i], &y[i])),
                              acc);
    return acc;
}

/* Eight blocks per step: their scales converted at once, the block sums reduced four at a time
 * and scaled with one FMA per four blocks. llm_vec_dot4_q8_0_avx2 repeats this order. */
void llm_vec_dot_q8_0_avx2(int64_t n, float *s, const void *w, const void *act)
{
    const block_q8_0 *x = w;
    const block_q8_0 *y = act;
    __m256 acc = _mm256_setzero_ps();
    int64_t nb = n / QK8_0, i = 0;
    for (; i + 8 <= nb; i += 8) {
        __m256 d = _mm256_mul_ps(scales8(&x[i], sizeof *x), scales8(&y[i], sizeof *y));
        for (int h = 0; h < 2; h++) {
            const int64_t b = i + 4 * h;
            __m256i sum = reduce4_i32(q8_0_block_sums(&x[b], &y[b]), q8_0_block_sums(&x[b + 1], &y[b + 1]),
                                      q8_0_block_sums(&x[b + 2], &y[b + 2]), q8_0_block_sums(&x[b + 3], &y[b + 3]));
            __m256 dh = h ? _mm256_permute2f128_ps(d, d, 0x11) : _mm256_permute2f128_ps(d, d, 0x00);
            acc = _mm256_fmadd_ps(dh, _mm256_cvtepi32_ps(sum), acc);
        }
    }
    *s = hsum_ps(q8_0_tail(x, y, i, nb, acc));
}

/* Four q8_0 rows against one activation row, each output bit-identical to
 * llm_vec_dot_q8_0_avx2; the activation scales and loads are shared, and the next four rows
 * are prefetched (four interleaved streams are more than the hardware prefetcher follows). */
void llm_vec_dot4_q8_0_avx2(int64_t n, float s[4], const void *w, size_t w_stride, const void *act)
{
    const block_q8_0 *x[4];
    __m256 acc[4];
    #pragma GCC unroll 4
    for (int r = 0; r < 4; r++) {
        x[r] = (const block_q8_0 *)((const uint8_t *)w + (size_t)r * w_stride);
        acc[r] = _mm256_setzero_ps();
    }
    const block_q8_0 *y = act;
    const char *next = (const char *)w + 4 * w_stride;
    int64_t nb = n / QK8_0, i = 0;
    for (; i + 8 <= nb; i += 8) {
        const __m256 dy = scales8(&y[i], sizeof *y);
        #pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            #pragma GCC unroll 5
            for (int l = 0; l < 5; l++)
                _mm_prefetch(next + (size_t)r * w_stride + (size_t)i * sizeof(block_q8_0) + 64 * l, _MM_HINT_T0);
            __m256 d = _mm256_mul_ps(scales8(&x[r][i], sizeof *x[r]), dy);
            #pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                const int64_t b = i + 4 * h;
                __m256i sum = reduce4_i32(q8_0_block_sums(&x[r][b], &y[b]), q8_0_block_sums(&x[r][b + 1], &y[b + 1]),
                                          q8_0_block_sums(&x[r][b + 2], &y[b + 2]),
                                          q8_0_block_sums(&x[r][b + 3], &y[b + 3]));
                __m256 dh = h ? _mm256_permute2f128_ps(d, d, 0x11) : _mm256_permute2f128_ps(d, d, 0x00);
                acc[r] = _mm256_fmadd_ps(dh, _mm256_cvtepi32_ps(sum), acc[r]);
            }
        }
    }
    #pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
        s[r] = hsum_ps(q8_0_tail(x[r], y, i, nb, acc[r]));
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
