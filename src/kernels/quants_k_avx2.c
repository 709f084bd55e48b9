/*
 * quants_k_avx2 — AVX2 + FMA + F16C dot products for the K-quants (256-element super-blocks,
 * Q2_K..Q6_K), a 4-row q4_K kernel, and the Q8_K activation quantizer.
 *
 * Same contract as quants_avx2.c: each function computes what its scalar twin in quants_k.c
 * computes (integer sums per block exact, only the float accumulation order differs), the 4-row
 * kernel gives each row exactly what vec_dot gives, and the Q8_K quantizer is byte-identical to
 * the scalar one.
 *
 * Every dot has the same shape: u8 weights x s8 activations with _mm256_maddubs_epi16, the
 * sub-block scale applied as i16 multipliers with _mm256_madd_epi16, integer sums per block,
 * one convert and one FMA per block. What bounds them (measured on Zen 5, one core): vector
 * loads (two 32-byte loads a cycle, one when a load crosses a 64-byte line, as half of the
 * unaligned q8_K loads do) and the four vector ALUs, while the integer units sit mostly idle.
 * Hence scale multipliers read from small constant tables (a madd memory operand, no shuffle)
 * where the scales are narrow enough (q2_K, q4_K, q5_K), scale unpacking in scalar code, and
 * min/offset terms from the activation block sums with one madd per block.
 */
#include "kernels/simd_avx2.h"

#include <stdalign.h>
#include <stddef.h>

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

/* Lanes 0..3 + lanes 4..7 of an i32 vector. */
static inline __m128i fold_i32(__m256i v)
{
    return _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
}

/* The float step of a block with a scale and a min (q2_K, q4_K, q5_K): lanes 0..3 of acc gain
 * d * yd * s4, lanes 4..7 dmin * yd * m4 (d, dmin: the block's adjacent fp16 pair). One
 * convert and one FMA per block; k4_finish takes the difference at the end. */
static inline __m256 k_block_finish(__m128i s4, __m128i m4, const void *d_dmin, __m128 yd, __m256 acc)
{
    __m256 v = _mm256_cvtepi32_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(s4), m4, 1));
    uint32_t dd;
    memcpy(&dd, d_dmin, 4);
    __m128 dm = _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128((int)dd)), yd);
    __m256 scale = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(dm), _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
    return _mm256_fmadd_ps(scale, v, acc);
}

/* The dot from a q2_K/q4_K/q5_K accumulator: sum of lanes 0..3 minus sum of lanes 4..7. */
static inline float k4_finish(__m256 acc)
{
    __m128 d = _mm_sub_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    d = _mm_add_ps(d, _mm_movehl_ps(d, d));
    return _mm_cvtss_f32(_mm_add_ss(d, _mm_movehdup_ps(d)));
}

/* ---- q2_K ------------------------------------------------------------------------------------
 *
 * 84 bytes per 256 weights, so the per-block work weighs 2.5 times what it does in q6_K. The
 * two 4-bit scales of a 32-element run (groups g, g+1) select one row of a 16 x 16 table that
 * holds the pair as i16 multipliers (g in lanes 0..7, g+1 in lanes 8..15, as maddubs lays out
 * the run): a madd memory operand instead of a shuffle and a widening per run. The row offsets
 * come from the packed scale bytes by scalar arithmetic (the integer units are idle). */

#define K_PAIR_ROW(a, b) {a, a, a, a, a, a, a, a, b, b, b, b, b, b, b, b}
#define K_PAIR_A4(a, b) K_PAIR_ROW(a, b), K_PAIR_ROW(a + 1, b), K_PAIR_ROW(a + 2, b), K_PAIR_ROW(a + 3, b)
#define K_PAIR_B(b) K_PAIR_A4(0, b), K_PAIR_A4(4, b), K_PAIR_A4(8, b), K_PAIR_A4(12, b)
#define K_PAIR_B4(b) K_PAIR_B(b), K_PAIR_B(b + 1), K_PAIR_B(b + 2), K_PAIR_B(b + 3)
/* Row (b << 4 | a) holds a in i16 lanes 0..7 and b in lanes 8..15. */
static alignas(64) const int16_t K_SCALE_PAIR[256][16] = {K_PAIR_B4(0), K_PAIR_B4(4), K_PAIR_B4(8), K_PAIR_B4(12)};

/* For 8 scale bytes (4-bit scale in each low nibble), byte 2p of the result is the table row
 * of the pair (2p, 2p+1); odd bytes are garbage. */
static inline uint64_t q2_K_pair_rows(const uint8_t sc[8])
{
    uint64_t u;
    memcpy(&u, sc, 8);
    u &= 0x0F0F0F0F0F0F0F0Full;
    return u | (u >> 4);
}

static inline __m256i k_pair_vec(uint64_t rows, int p)
{
    size_t off = (size_t)((rows << 5 >> (16 * p)) & (255u << 5));
    return _mm256_load_si256((const __m256i *)((const char *)K_SCALE_PAIR + off));
}

void llm_vec_dot_q2_K_avx2(int64_t n, float *s, const void *w, const void *act)
{
    const block_q2_K *x = w;
    const block_q8_K *y = act;
    const __m256i m3 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        const uint64_t rows[2] = {q2_K_pair_rows(x[i].scales), q2_K_pair_rows(x[i].scales + 8)};
        /* min term: sum_g (sc[g] >> 4) * bsums[g] */
        const __m128i scb = _mm_loadu_si128((const __m128i *)x[i].scales);
        const __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(scb, 4), _mm_set1_epi8(0xF)));
        const __m256i mt = _mm256_madd_epi16(mins, _mm256_loadu_si256((const __m256i *)y[i].bsums));
        __m256i sum = _mm256_setzero_si256();
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256i bits = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * h));
            __asm__("" : "+x"(bits)); /* one load, not one per use */
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                __m256i q2 = _mm256_and_si256(j ? _mm256_srli_epi16(bits, 2 * j) : bits, m3);
                __m256i p = _mm256_maddubs_epi16(q2, _mm256_loadu_si256((const __m256i *)(y[i].qs + 128 * h + 32 * j)));
                sum = _mm256_add_epi32(sum, _mm256_madd_epi16(p, k_pair_vec(rows[h], j)));
            }
        }
        acc = k_block_finish(fold_i32(sum), fold_i32(mt), &x[i].d, _mm_set1_ps(y[i].d), acc);
    }
    *s = k4_finish(acc);
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
    /* built from registers (two 64-bit moves): a 16-byte load of the just-stored words would
     * stall on store forwarding */
    return _mm_sub_epi8(_mm_set_epi64x((long long)((uint64_t)a[3] << 32 | a[2]), (long long)((uint64_t)a[1] << 32 | a[0])),
                        _mm_set1_epi8(32));
}

/* 16 signed byte scales (one per 16-element group) widened to i16 with the even groups in the
 * low 128-bit lane and the odd ones in the high lane: the multiplier pair of the 32-element run
 * j (groups 2j, 2j+1, as maddubs lays them out) is then one in-lane shuffle, pair_of(v, j). */
static inline __m256i scales_even_odd(__m128i sc8)
{
    return _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15)));
}

static inline __m256i pair_of(__m256i even_odd, int j)
{
    return _mm256_shuffle_epi8(even_odd, _mm256_set1_epi16((short)(0x0100 + 0x0202 * j)));
}

/* q3 = (q2 + 4 * hbit) - 4: the unsigned 3-bit value (0..7) goes through one maddubs, and the
 * -4 offset is taken out once per block from the activation bsums (sum_g sc[g] * 4 * bsums[g]).
 * The four 3-bit runs of a 128-element half are built two per byte (runs 0 and 2, runs 1 and 3)
 * with their third bits from one table lookup of the half's hmask nibble: 15 vector operations
 * per half instead of 20 (in cache 15.4 -> 17.8 GB/s per core). Each block's integer sum is
 * exact, as in the scalar reference. */
void llm_vec_dot_q3_K_avx2(int64_t n, float *s, const void *w, const void *act)
{
    const block_q3_K *x = w;
    const block_q8_K *y = act;
    const __m256i m7 = _mm256_set1_epi8(7), m15 = _mm256_set1_epi8(15), m33 = _mm256_set1_epi8(0x33);
    /* hmask nibble (third bits of runs 0..3 of a half) -> bits 2 and 6 for runs 0, 2 / 1, 3 */
    const __m256i hi_even = _mm256_broadcastsi128_si256(_mm_setr_epi8(0, 4, 0, 4, 64, 68, 64, 68, 0, 4, 0, 4, 64, 68, 64, 68));
    const __m256i hi_odd = _mm256_broadcastsi128_si256(_mm_setr_epi8(0, 0, 4, 4, 0, 0, 4, 4, 64, 64, 68, 68, 64, 64, 68, 68));
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++) {
        __m128i scales = q3_K_scales(x[i].scales);
        __m256i sc_even_odd = scales_even_odd(scales);
        __m256i offset = _mm256_madd_epi16(_mm256_cvtepi8_epi16(scales),
                                           _mm256_loadu_si256((const __m256i *)y[i].bsums));
        __m256i sumi = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(offset, 2));
        __m256i hmask = _mm256_loadu_si256((const __m256i *)x[i].hmask);
        __asm__("" : "+x"(hmask)); /* one load each, not one per use */
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256i bits = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * h));
            __asm__("" : "+x"(bits));
            /* runs 0, 2 (even) and 1, 3 (odd) of this half side by side in each byte, their 2-bit
             * fields at bits 0-1 and 4-5, the third bits looked up from this half's hmask nibble
             * and placed at bits 2 and 6 */
            const __m256i hn = _mm256_and_si256(h ? _mm256_srli_epi16(hmask, 4) : hmask, m15);
            const __m256i even = _mm256_or_si256(_mm256_and_si256(bits, m33), _mm256_shuffle_epi8(hi_even, hn));
            const __m256i odd = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits, 2), m33),
                                                _mm256_shuffle_epi8(hi_odd, hn));
            __m256i q[4];
            q[0] = _mm256_and_si256(even, m7);
            q[1] = _mm256_and_si256(odd, m7);
            q[2] = _mm256_and_si256(_mm256_srli_epi16(even, 4), m7);
            q[3] = _mm256_and_si256(_mm256_srli_epi16(odd, 4), m7);
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                __m256i p = _mm256_maddubs_epi16(q[j], _mm256_loadu_si256((const __m256i *)(y[i].qs + 128 * h + 32 * j)));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(pair_of(sc_even_odd, 4 * h + j), p));
            }
        }
        const __m256 d = _mm256_mul_ps(_mm256_cvtph_ps(_mm_set1_epi16((short)x[i].d)), _mm256_set1_ps(y[i].d));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
    }
    *s = hsum_ps(acc);
}

/* ---- q4_K and q5_K -----------------------------------------------------------------------------
 *
 * Measured (in cache, one core): the q4_K dot is bound by the vector ALUs first (every vector
 * operation added per block, even in place of several scalar ones, made it slower), then by
 * instruction count. So the scale of each 32-element sub-block comes from a table row (a madd
 * memory operand: one aligned load, no shuffle) addressed by scalar code, the float step (d,
 * dmin, mins, the fold to 4 lanes) is done for two blocks at a time, and the 4-row kernel
 * prepares the activation side of that step once for its four rows. Tried and slower in cache: multipliers from a byte-shuffle unpacking of the
 * scales with in-register broadcasts (0.81) or a store and dword broadcasts (0.72), offsets
 * unpacked for a run of blocks ahead with vector code (0.91), scale bytes stored and reloaded
 * one by one (0.85); software prefetch (1-8 KiB ahead) made streaming no faster. q5_K shares
 * the block code. */

/* Row v holds v in all 16 i16 lanes: the multiplier for a 6-bit scale v. */
#define K_SCALE_ROW(v) {v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v}
#define K_SCALE_ROW4(v) K_SCALE_ROW(v), K_SCALE_ROW(v + 1), K_SCALE_ROW(v + 2), K_SCALE_ROW(v + 3)
#define K_SCALE_ROW16(v) K_SCALE_ROW4(v), K_SCALE_ROW4(v + 4), K_SCALE_ROW4(v + 8), K_SCALE_ROW4(v + 12)
static alignas(64) const int16_t K_SCALE_VEC[64][16] = {K_SCALE_ROW16(0), K_SCALE_ROW16(16), K_SCALE_ROW16(32),
                                                         K_SCALE_ROW16(48)};

/* The table row of scale v, given the byte 4*v in byte b of w4: row v starts at byte 32*v =
 * 8*(4*v), which an x86 address reaches with a scaled index, so the scalar work per scale is
 * extracting the byte (a shift and a mask). */
static inline __m256i k_scale_row4(uint32_t w4, int b)
{
    const size_t idx = (w4 >> (8 * b)) & 0xFF;
    return _mm256_load_si256((const __m256i *)((const char *)K_SCALE_VEC + 8 * idx));
}

/* The 12 packed bytes b0..b11 of a q4_K/q5_K block (see llm_get_scale_min_k4) as 4 * scale j in
 * byte j of s_lo4 (j < 4) and s_hi4 (j >= 4), and the eight mins as bytes. Scalar on purpose:
 * the vector units bound these kernels, and each vector operation spent here measured slower
 * than the scalar ones it replaced (a byte-shuffle unpacking with shuffles or store-and-broadcast
 * for the multipliers: 0.72-0.83 of this in cache). The factor 4 is folded into the masks. */
typedef struct {
    uint32_t s_lo4, s_hi4;
    uint64_t mins;
} k4_scales;

static inline k4_scales k4_unpack(const uint8_t packed[12])
{
    uint64_t u01;
    uint32_t u2;
    memcpy(&u01, packed, 8);
    memcpy(&u2, packed + 8, 4);
    const uint32_t u0 = (uint32_t)u01, u1 = (uint32_t)(u01 >> 32);
    k4_scales k;
    k.s_lo4 = (u0 << 2) & 0xFCFCFCFCu;                        /* 4 * (b_j & 63) */
    k.s_hi4 = ((u2 << 2) & 0x3C3C3C3Cu) | (u0 & 0xC0C0C0C0u); /* 4 * ((b_j+4 & 15) | (b_j-4 >> 6) << 4) */
    k.mins = (uint64_t)(u1 & 0x3F3F3F3Fu) |
             (uint64_t)(((u2 >> 4) & 0x0F0F0F0Fu) | ((u1 >> 2) & 0x30303030u)) << 32;
    return k;
}

/* bsums[2j] + bsums[2j+1] for j < 8: the activation sum of each 32-element sub-block. */
static inline __m128i q8_K_sub_sums(const int16_t bsums[16])
{
    __m256i b = _mm256_loadu_si256((const __m256i *)bsums);
    return _mm_hadd_epi16(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
}

/* Bit `from` of every byte moved to bit 4 (other bits garbage): a 16-bit shift by at most 4
 * brings nothing from the neighbouring byte into bit 4. */
static inline __m256i bit_to_4(__m256i v, int from)
{
    return from < 4 ? _mm256_slli_epi16(v, 4 - from) : from > 4 ? _mm256_srli_epi16(v, from - 4) : v;
}

/* The integer part of one q4_K or q5_K block against its activation block (q8: the 256 quants):
 * the scaled quant products in 8 lanes, the mins as bytes and the fp16 pair (d, dmin). qh is
 * the q5_K fifth-bit array, NULL for q4_K. */
typedef struct {
    __m256i sum;
    uint64_t mins;
    uint32_t d_dmin;
} k45_ints;

static inline __attribute__((always_inline)) k45_ints k45_block(const uint8_t *hdr, const uint8_t *qs, const uint8_t *qh,
                                                                const int8_t *q8)
{
    const __m256i m4 = _mm256_set1_epi8(0xF), bit4 = _mm256_set1_epi8(16);
    const k4_scales k = k4_unpack(hdr + 4); /* d, dmin, then the 12 packed bytes */
    const __m256i hbits = qh ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
    __m256i sum = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int c = 0; c < QK_K / 64; c++) {
        __m256i bits = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
        /* one load: left to themselves, compilers fold it into both uses and load twice */
        __asm__("" : "+x"(bits));
        __m256i lo = _mm256_and_si256(bits, m4), hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
        if (qh) { /* fifth bits of this chunk: qh bit 2c (low nibbles), 2c+1 (high nibbles) */
            lo = _mm256_or_si256(lo, _mm256_and_si256(bit_to_4(hbits, 2 * c), bit4));
            hi = _mm256_or_si256(hi, _mm256_and_si256(bit_to_4(hbits, 2 * c + 1), bit4));
        }
        __m256i pl = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(q8 + 64 * c)));
        __m256i ph = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(q8 + 64 * c + 32)));
        const uint32_t w4 = c < 2 ? k.s_lo4 : k.s_hi4;
        pl = _mm256_madd_epi16(pl, k_scale_row4(w4, (2 * c) % 4));
        ph = _mm256_madd_epi16(ph, k_scale_row4(w4, (2 * c + 1) % 4));
        sum = _mm256_add_epi32(sum, _mm256_add_epi32(pl, ph));
    }
    k45_ints r = {sum, k.mins, 0};
    memcpy(&r.d_dmin, hdr, 4);
    return r;
}

/* No block: what an odd row's last block is paired with (all its terms are exact zeros). */
static inline k45_ints k45_none(void)
{
    k45_ints r = {_mm256_setzero_si256(), 0, 0};
    return r;
}

/* The float step of two consecutive blocks a, b of a row, one vector operation for both where a
 * single block needs one of its own (measured: the per-block float step was a quarter of the
 * vector work). sub_ab: the 32-element activation sums of a (lane 0) and b (lane 1); yd_ab:
 * (yd_a, yd_a, yd_b, yd_b). acc[0] gains d * (scaled quant products), acc[1] dmin * (min
 * terms), block a in lanes 0..3 and b in 4..7; the row's dot is the sum of acc[0] - acc[1]. */
static inline __attribute__((always_inline)) void k45_finish2(k45_ints a, k45_ints b, __m256i sub_ab, __m128 yd_ab,
                                                              __m256 acc[2])
{
    const __m256i f = _mm256_add_epi32(_mm256_permute2x128_si256(a.sum, b.sum, 0x20),
                                       _mm256_permute2x128_si256(a.sum, b.sum, 0x31));
    const __m128i mins = _mm_unpacklo_epi64(_mm_cvtsi64_si128((long long)a.mins), _mm_cvtsi64_si128((long long)b.mins));
    const __m256i mt = _mm256_madd_epi16(_mm256_cvtepu8_epi16(mins), sub_ab);
    const __m128i dd = _mm_unpacklo_epi32(_mm_cvtsi32_si128((int)a.d_dmin), _mm_cvtsi32_si128((int)b.d_dmin));
    const __m256 dm = _mm256_castps128_ps256(_mm_mul_ps(_mm_cvtph_ps(dd), yd_ab)); /* d_a, dmin_a, d_b, dmin_b */
    const __m256 d = _mm256_permutevar8x32_ps(dm, _mm256_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2));
    const __m256 dmin = _mm256_permutevar8x32_ps(dm, _mm256_setr_epi32(1, 1, 1, 1, 3, 3, 3, 3));
    acc[0] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(f), acc[0]);
    acc[1] = _mm256_fmadd_ps(dmin, _mm256_cvtepi32_ps(mt), acc[1]);
}

static inline float k45_result(const __m256 acc[2])
{
    return hsum_ps(_mm256_sub_ps(acc[0], acc[1]));
}

/* sub_ab and yd_ab of k45_finish2 straight from q8_K blocks a and b (b NULL: none). */
static inline __m256i q8_K_sub_pair(const block_q8_K *a, const block_q8_K *b)
{
    return _mm256_inserti128_si256(_mm256_castsi128_si256(q8_K_sub_sums(a->bsums)),
                                   b ? q8_K_sub_sums(b->bsums) : _mm_setzero_si128(), 1);
}

static inline __m128 q8_K_yd_pair(const block_q8_K *a, const block_q8_K *b)
{
    const float yb = b ? b->d : 0;
    return _mm_setr_ps(a->d, a->d, yb, yb);
}

/* A q4_K or q5_K row (qh_off: offset of the fifth-bit array in a block, 0 for q4_K) against a
 * q8_K row, blocks in pairs from the start of the row as the 4-row kernel takes them. */
static inline __attribute__((always_inline)) float k45_row(const uint8_t *x, size_t bsize, size_t qs_off, size_t qh_off,
                                                           const block_q8_K *y, int64_t nb)
{
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) {
        const uint8_t *xa = x + bsize * (size_t)i, *xb = xa + bsize;
        k45_ints a = k45_block(xa, xa + qs_off, qh_off ? xa + qh_off : NULL, y[i].qs);
        k45_ints b = k45_block(xb, xb + qs_off, qh_off ? xb + qh_off : NULL, y[i + 1].qs);
        k45_finish2(a, b, q8_K_sub_pair(&y[i], &y[i + 1]), q8_K_yd_pair(&y[i], &y[i + 1]), acc);
    }
    if (i < nb) {
        const uint8_t *xa = x + bsize * (size_t)i;
        k45_finish2(k45_block(xa, xa + qs_off, qh_off ? xa + qh_off : NULL, y[i].qs), k45_none(),
                    q8_K_sub_pair(&y[i], NULL), q8_K_yd_pair(&y[i], NULL), acc);
    }
    return k45_result(acc);
}

void llm_vec_dot_q4_K_avx2(int64_t n, float *s, const void *w, const void *act)
{
    *s = k45_row(w, sizeof(block_q4_K), offsetof(block_q4_K, qs), 0, act, n / QK_K);
}

/* Activation blocks whose sums and scales a 4-row step prepares at once for its four rows. */
#define K_DOT4_BLOCKS 32

/* Four q4_K rows against one activation row; each output bit-identical to
 * llm_vec_dot_q4_K_avx2 (k45_block per row, blocks paired the same way: a run holds an even
 * number of blocks but the last). Rows are walked one after the other over a run of blocks
 * rather than interleaved block by block: four interleaved streams measured 15-17 GB/s from
 * memory on one core against 21-23 for one stream. What the four rows share is the activation
 * side of the float step (sums and scales of block pairs), made once per run. An aligned copy
 * of the activation quants per run, which an earlier version made, measured 8% faster in cache
 * but 3-6% slower from memory (a pass with no weight loads in flight); copying them while row 0
 * ran was 0.67x from memory (the stores held up the missing weight loads behind them). Token
 * generation reads its weights from memory, so neither is kept. */
void llm_vec_dot4_q4_K_avx2(int64_t n, float s[4], const void *w, size_t w_stride, const void *act)
{
    const block_q8_K *y = act;
    const int64_t nb = n / QK_K;
    __m256i subs[K_DOT4_BLOCKS / 2];
    __m128 yds[K_DOT4_BLOCKS / 2];
    __m256 acc[4][2];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
        acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int64_t i0 = 0; i0 < nb; i0 += K_DOT4_BLOCKS) {
        const int64_t nr = nb - i0 < K_DOT4_BLOCKS ? nb - i0 : K_DOT4_BLOCKS;
        for (int64_t i = 0; i < nr; i += 2) {
            const block_q8_K *yb = i + 1 < nr ? &y[i0 + i + 1] : NULL;
            subs[i / 2] = q8_K_sub_pair(&y[i0 + i], yb);
            yds[i / 2] = q8_K_yd_pair(&y[i0 + i], yb);
        }
        for (int r = 0; r < 4; r++) {
            const block_q4_K *x = (const block_q4_K *)((const uint8_t *)w + (size_t)r * w_stride) + i0;
            const block_q8_K *yr = y + i0;
            __m256 a[2] = {acc[r][0], acc[r][1]};
            for (int64_t i = 0; i < nr; i += 2) {
                const k45_ints ka = k45_block((const uint8_t *)&x[i], x[i].qs, NULL, yr[i].qs);
                const k45_ints kb = i + 1 < nr ? k45_block((const uint8_t *)&x[i + 1], x[i + 1].qs, NULL, yr[i + 1].qs)
                                               : k45_none();
                k45_finish2(ka, kb, subs[i / 2], yds[i / 2], a);
            }
            acc[r][0] = a[0], acc[r][1] = a[1];
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
        s[r] = k45_result(acc[r]);
}

/* No 4-row q5_K kernel: with the fifth bits the block is ALU-bound; an aligned activation copy
 * shared by four rows measured no faster (29.3 vs 29.5 GB/s per core in cache). */
void llm_vec_dot_q5_K_avx2(int64_t n, float *s, const void *w, const void *act)
{
    *s = k45_row(w, sizeof(block_q5_K), offsetof(block_q5_K, qs), offsetof(block_q5_K, qh), act, n / QK_K);
}

/* ---- q6_K ------------------------------------------------------------------------------------
 *
 * Bound by the vector ALUs (~19 cycles a block). The -32 offset of the 6-bit quants is taken out
 * once per block from the activation's 16-element sums (sum_g sc[g] * 32 * bsums[g], one madd)
 * instead of a second maddubs per 32 elements. The 16 signed scales are widened once per block
 * with the even groups in the low 128-bit lane and the odd ones in the high lane, so the
 * multiplier pair of a 32-element run (groups 2j, 2j+1) is one in-lane shuffle (was a shuffle
 * and a widening per run), and the high 2 bits are moved into place with one shift each. */

/* One q6_K block of a row into acc (8 lanes; the dot is their sum). No 4-row kernel: an
 * aligned activation copy shared by four rows only cost here (measured 32 vs 35 GB/s per core
 * in cache). */
static inline __attribute__((always_inline)) __m256 q6_K_block(const block_q6_K *x, const int8_t *q8, __m256i bsums,
                                                               __m256 yd, __m256 acc)
{
    const __m256i m4 = _mm256_set1_epi8(0xF), m30 = _mm256_set1_epi8(0x30);
    const __m128i sc8 = _mm_loadu_si128((const __m128i *)x->scales);
    const __m256i sc_even_odd = scales_even_odd(sc8);
    const __m256i offset = _mm256_madd_epi16(_mm256_cvtepi8_epi16(sc8), bsums);
    __m256i sumi = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(offset, 5));
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        const __m256i b1 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h));
        const __m256i b2 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h + 32));
        const __m256i bh = _mm256_loadu_si256((const __m256i *)(x->qh + 32 * h));
        /* the four 32-element runs of this half, unsigned 0..63 (|pair| <= 2*63*127); each
         * 16-bit shift only brings in bits the 0x30 mask then drops */
        __m256i q[4];
        q[0] = _mm256_or_si256(_mm256_and_si256(b1, m4), _mm256_and_si256(_mm256_slli_epi16(bh, 4), m30));
        q[1] = _mm256_or_si256(_mm256_and_si256(b2, m4), _mm256_and_si256(_mm256_slli_epi16(bh, 2), m30));
        q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b1, 4), m4), _mm256_and_si256(bh, m30));
        q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b2, 4), m4),
                               _mm256_and_si256(_mm256_srli_epi16(bh, 2), m30));
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            __m256i p = _mm256_maddubs_epi16(q[k], _mm256_loadu_si256((const __m256i *)(q8 + 128 * h + 32 * k)));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(pair_of(sc_even_odd, 4 * h + k), p));
        }
    }
    const __m256 d = _mm256_mul_ps(_mm256_cvtph_ps(_mm_set1_epi16((short)x->d)), yd);
    return _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
}

void llm_vec_dot_q6_K_avx2(int64_t n, float *s, const void *w, const void *act)
{
    const block_q6_K *x = w;
    const block_q8_K *y = act;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; i++)
        acc = q6_K_block(&x[i], y[i].qs, _mm256_loadu_si256((const __m256i *)y[i].bsums), _mm256_set1_ps(y[i].d), acc);
    *s = hsum_ps(acc);
}
