/*
 * fp16 — IEEE binary16 and bfloat16 conversions in portable C.
 *
 * These are the scalar reference: bit-exact with the F16C instructions (vcvtps2ph with
 * round-to-nearest-even, vcvtph2ps), so a block quantized on any CPU has the same bytes.
 * NaNs stay NaNs (quiet, top payload bits kept, as the hardware does); overflow goes to inf.
 */
#include "kernels/kernels.h"

#include <string.h>

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float llm_fp16_to_fp32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    if (exp == 0) {
        /* zero or subnormal: mant * 2^-24 is exact in binary32 */
        float v = (float)mant * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    if (exp == 31) /* inf, or NaN: keep the payload, make it quiet (as vcvtph2ps does) */
        return f32_from_bits(sign | 0x7f800000u | (mant << 13) | (mant ? 0x400000u : 0));
    return f32_from_bits(sign | ((exp + 112) << 23) | (mant << 13));
}

/* Rounds m >> shift to nearest, ties to even. */
static uint32_t shift_round_even(uint32_t m, int shift)
{
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1)))
        q++;
    return q;
}

uint16_t llm_fp32_to_fp16(float f)
{
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffffu;

    if (ax >= 0x7f800000u) { /* inf, NaN (forced quiet, like vcvtps2ph) */
        if (ax == 0x7f800000u)
            return sign | 0x7c00;
        return (uint16_t)(sign | 0x7e00 | ((ax >> 13) & 0x3ff));
    }
    if (ax >= 0x477ff000u) /* >= 65520 rounds past the largest half, 65504 */
        return sign | 0x7c00;
    if (ax >= 0x38800000u) { /* normal half: rebias, round 13 dropped bits (carry may bump exp) */
        uint32_t e = (ax >> 23) - 112;
        uint32_t h = shift_round_even((e << 23) | (ax & 0x7fffff), 13);
        return (uint16_t)(sign | h);
    }
    if (ax <= 0x33000000u) /* <= 2^-25: rounds to zero (2^-25 is a tie, goes to even 0) */
        return sign;
    /* subnormal half: value in units of 2^-24 is m * 2^(e - 126) */
    uint32_t e = ax >> 23;
    uint32_t m = (ax & 0x7fffff) | 0x800000;
    return (uint16_t)(sign | shift_round_even(m, (int)(126 - e)));
}

float llm_bf16_to_fp32(uint16_t h)
{
    return f32_from_bits((uint32_t)h << 16);
}

uint16_t llm_fp32_to_bf16(float f)
{
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) /* NaN: truncate, force quiet so it stays NaN */
        return (uint16_t)((x >> 16) | 64);
    /* round to nearest even on the 16 dropped bits; overflow carries into inf correctly */
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}
