/*
 * simd_avx2.h — small AVX2 helpers shared by the *_avx2.c kernel files (static inline).
 *
 * Include only from files compiled with -mavx2 -mfma -mf16c (the Makefile does that for
 * *_avx2.c): the rest of the binary stays baseline x86-64 and reaches these kernels only
 * through the dispatch table after a CPU check.
 */
#ifndef LLMAP_KERNELS_SIMD_AVX2_H
#define LLMAP_KERNELS_SIMD_AVX2_H

#include "kernels/blocks.h"

#include <immintrin.h>
#include <string.h>

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

#endif
