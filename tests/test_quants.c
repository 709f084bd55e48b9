/*
 * test_quants — the quantized formats against their definitions.
 *
 * (a) dequantization: blocks are built byte by byte here from the ggml format definitions
 *     (offsets, nibble/bit placement, 6-bit scale packing) with scales chosen as powers of two
 *     so every expected value is exact, and compared bit for bit;
 * (b) every SIMD dot product and activation quantizer against the scalar reference on random
 *     data, zeros, extreme magnitudes, random raw blocks and row lengths at block boundaries;
 *     the scalar dot itself against the sum of dequantized products;
 * (c) quantize -> dequantize round-trip error per format below a stated bound (relative RMS),
 *     and exact round trips for data already on the format's grid;
 * (d) fp16/bf16 conversions: hand-picked edge cases (inf, nan, subnormals, ties) and, when the
 *     CPU has F16C, all of binary16 and a million random floats against the hardware.
 *
 * Layouts here are written independently of src/kernels (no shared structs or helpers).
 */
#include "check.h"
#include "gguf/gguf.h"
#include "kernels/kernels.h"

#include <immintrin.h>
#include <stdint.h>

/* ---- fixed-seed PRNG (splitmix64) ---------------------------------------------------------- */

static uint64_t rng_state = 0x243F6A8885A308D3ull;

static uint64_t rng_u64(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int rng_int(int lo, int hi) /* inclusive */
{
    return lo + (int)(rng_u64() % (uint64_t)(hi - lo + 1));
}

static float rng_uniform(void) /* [-1, 1) */
{
    return (float)((double)(rng_u64() >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

static float rng_gauss(void) /* roughly N(0,1): sum of 4 uniforms, rescaled */
{
    return (rng_uniform() + rng_uniform() + rng_uniform() + rng_uniform()) * 0.8660254f;
}

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float float_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* ---- (d) fp16 / bf16 ----------------------------------------------------------------------- */

static void test_fp16_cases(void)
{
    CHECK(llm_fp16_to_fp32(0x3c00) == 1.0f);
    CHECK(llm_fp16_to_fp32(0xc000) == -2.0f);
    CHECK(llm_fp16_to_fp32(0x7bff) == 65504.0f);
    CHECK(llm_fp16_to_fp32(0x0001) == ldexpf(1, -24));
    CHECK(llm_fp16_to_fp32(0x03ff) == 1023 * ldexpf(1, -24));
    CHECK(llm_fp16_to_fp32(0x0400) == ldexpf(1, -14));
    CHECK(isinf(llm_fp16_to_fp32(0x7c00)) && llm_fp16_to_fp32(0x7c00) > 0);
    CHECK(isinf(llm_fp16_to_fp32(0xfc00)) && llm_fp16_to_fp32(0xfc00) < 0);
    CHECK(isnan(llm_fp16_to_fp32(0x7e00)));
    CHECK(isnan(llm_fp16_to_fp32(0x7c01)));
    CHECK_EQ_INT(bits_of(llm_fp16_to_fp32(0x7c01)), 0x7fc02000); /* quieted, payload kept */
    CHECK(llm_fp16_to_fp32(0x8000) == 0.0f && signbit(llm_fp16_to_fp32(0x8000)));

    CHECK_EQ_INT(llm_fp32_to_fp16(1.0f), 0x3c00);
    CHECK_EQ_INT(llm_fp32_to_fp16(-2.0f), 0xc000);
    CHECK_EQ_INT(llm_fp32_to_fp16(0.0f), 0x0000);
    CHECK_EQ_INT(llm_fp32_to_fp16(-0.0f), 0x8000);
    CHECK_EQ_INT(llm_fp32_to_fp16(65504.0f), 0x7bff);
    CHECK_EQ_INT(llm_fp32_to_fp16(65519.0f), 0x7bff);       /* below the tie: largest finite */
    CHECK_EQ_INT(llm_fp32_to_fp16(65520.0f), 0x7c00);       /* tie goes to even = inf */
    CHECK_EQ_INT(llm_fp32_to_fp16(1e10f), 0x7c00);
    CHECK_EQ_INT(llm_fp32_to_fp16(-INFINITY), 0xfc00);
    uint16_t hn = llm_fp32_to_fp16(NAN);
    CHECK((hn & 0x7c00) == 0x7c00 && (hn & 0x3ff) != 0);
    uint16_t hs = llm_fp32_to_fp16(float_of(0x7f800001)); /* signalling NaN stays a NaN */
    CHECK((hs & 0x7c00) == 0x7c00 && (hs & 0x3ff) != 0);
    /* ties to even in the normal range: 1 + 2^-11 is halfway between 0x3c00 and 0x3c01 */
    CHECK_EQ_INT(llm_fp32_to_fp16(1.0f + ldexpf(1, -11)), 0x3c00);
    CHECK_EQ_INT(llm_fp32_to_fp16(1.0f + 3 * ldexpf(1, -11)), 0x3c02);
    CHECK_EQ_INT(llm_fp32_to_fp16(1.0f + ldexpf(1, -11) + ldexpf(1, -20)), 0x3c01);
    /* subnormals: units of 2^-24 */
    CHECK_EQ_INT(llm_fp32_to_fp16(ldexpf(1, -24)), 0x0001);
    CHECK_EQ_INT(llm_fp32_to_fp16(ldexpf(1, -25)), 0x0000);                  /* tie to even 0 */
    CHECK_EQ_INT(llm_fp32_to_fp16(ldexpf(1, -25) * 1.0001f), 0x0001);
    CHECK_EQ_INT(llm_fp32_to_fp16(3 * ldexpf(1, -25)), 0x0002);              /* 1.5 -> 2 */
    CHECK_EQ_INT(llm_fp32_to_fp16(5 * ldexpf(1, -25)), 0x0002);              /* 2.5 -> 2 */
    CHECK_EQ_INT(llm_fp32_to_fp16(-5 * ldexpf(1, -25)), 0x8002);
    CHECK_EQ_INT(llm_fp32_to_fp16(ldexpf(1, -14) - ldexpf(1, -26)), 0x0400); /* carries to normal */
    CHECK_EQ_INT(llm_fp32_to_fp16(ldexpf(1, -30)), 0x0000);
    CHECK_EQ_INT(llm_fp32_to_fp16(1e-45f), 0x0000); /* f32 subnormal */

    /* every finite half survives half -> float -> half */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = llm_fp16_to_fp32((uint16_t)h);
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff))
            bad += !isnan(f);
        else
            bad += llm_fp32_to_fp16(f) != h;
    }
    CHECK_EQ_INT(bad, 0);
}

static void test_bf16_cases(void)
{
    CHECK_EQ_INT(llm_fp32_to_bf16(1.0f), 0x3f80);
    CHECK(llm_bf16_to_fp32(0x3f80) == 1.0f);
    CHECK(llm_bf16_to_fp32(0xc040) == -3.0f);
    CHECK_EQ_INT(llm_fp32_to_bf16(float_of(0x3f808000)), 0x3f80); /* tie, even stays */
    CHECK_EQ_INT(llm_fp32_to_bf16(float_of(0x3f818000)), 0x3f82); /* tie, odd rounds up */
    CHECK_EQ_INT(llm_fp32_to_bf16(float_of(0x3f808001)), 0x3f81);
    CHECK_EQ_INT(llm_fp32_to_bf16(float_of(0x3f807fff)), 0x3f80);
    CHECK_EQ_INT(llm_fp32_to_bf16(INFINITY), 0x7f80);
    CHECK_EQ_INT(llm_fp32_to_bf16(-INFINITY), 0xff80);
    CHECK_EQ_INT(llm_fp32_to_bf16(float_of(0x7f7fffff)), 0x7f80); /* FLT_MAX rounds to inf */
    CHECK_EQ_INT(llm_fp32_to_bf16(float_of(0x00010000)), 0x0001); /* subnormal kept */
    uint16_t n1 = llm_fp32_to_bf16(float_of(0x7f800001));           /* NaN whose top bits are 0 */
    CHECK((n1 & 0x7f80) == 0x7f80 && (n1 & 0x7f) != 0);
    CHECK(isnan(llm_bf16_to_fp32(0x7fc0)));
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = llm_bf16_to_fp32((uint16_t)h);
        if ((h & 0x7f80) == 0x7f80 && (h & 0x7f))
            bad += !isnan(f);
        else
            bad += llm_fp32_to_bf16(f) != h || bits_of(f) != h << 16;
    }
    CHECK_EQ_INT(bad, 0);
}

/* The F16C instructions are the hardware definition of IEEE rounding; compare against them. */
__attribute__((target("f16c"))) static int f16c_mismatches(int count)
{
    int bad = 0;
    for (int i = 0; i < count; i++) {
        uint32_t u = (uint32_t)rng_u64();
        if (i & 1) /* bias half the samples into the half range, where rounding matters */
            u = (u & 0x807fffffu) | ((uint32_t)rng_int(96, 145) << 23);
        float f = float_of(u);
        uint16_t hw = (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
        uint16_t sw = llm_fp32_to_fp16(f);
        if (hw != sw && !(isnan(f) && (sw & 0x7c00) == 0x7c00 && (sw & 0x3ff)))
            bad++;
        uint16_t h = (uint16_t)u;
        float a = _cvtsh_ss(h), b = llm_fp16_to_fp32(h);
        if (bits_of(a) != bits_of(b))
            bad++;
    }
    return bad;
}

/* The SIMD table when the CPU has one, even if LLMAP_NO_SIMD is set for this run (the
 * SIMD kernels are what this test checks; the variable only steers the dispatch). */
static const llm_kernels *simd_kernels(void)
{
    char *saved = getenv("LLMAP_NO_SIMD") ? strdup(getenv("LLMAP_NO_SIMD")) : NULL;
    unsetenv("LLMAP_NO_SIMD");
    const llm_kernels *k = llm_kernels_best();
    if (saved) {
        setenv("LLMAP_NO_SIMD", saved, 1);
        free(saved);
    }
    return strcmp(k->name, "avx2") == 0 ? k : NULL;
}

static bool have_avx2(void)
{
    return simd_kernels() != NULL;
}

static void test_fp16_hardware(void)
{
    if (!have_avx2()) {
        SKIP("no F16C on this CPU: fp16 vs hardware not compared");
        return;
    }
    CHECK_EQ_INT(f16c_mismatches(1000000), 0);
}

/* ---- (a) dequantization of hand-built blocks ---------------------------------------------- */

/* Element-exact comparison of llm_dequantize_row against `want`. */
static void check_dequant(llm_type t, const uint8_t *blk, const double *want, int n)
{
    float got[512];
    llm_dequantize_row(t, blk, got, n);
    int bad = 0, first = -1;
    for (int i = 0; i < n; i++) {
        if ((double)got[i] != want[i]) {
            if (first < 0)
                first = i;
            bad++;
        }
    }
    CHECK_MSG(bad == 0, "%s dequant: %d wrong values, first at %d (%g vs %g)", llm_type_name(t), bad, first,
              first >= 0 ? got[first] : 0.0, first >= 0 ? want[first] : 0.0);
}

#define H_HALF 0x3800    /* 0.5 */
#define H_QUARTER 0x3400 /* 0.25 */
#define H_16TH 0x2c00    /* 1/16 */
#define H_32ND 0x2800    /* 1/32 */

static void test_dequant_q4_0(void)
{
    uint8_t b[18] = {0};
    double want[32];
    int q[32];
    put16(b, H_HALF);
    for (int j = 0; j < 32; j++)
        q[j] = rng_int(0, 15);
    q[0] = 0, q[31] = 15;
    for (int j = 0; j < 16; j++)
        b[2 + j] = (uint8_t)(q[j] | q[j + 16] << 4);
    for (int j = 0; j < 32; j++)
        want[j] = 0.5 * (q[j] - 8);
    check_dequant(LLM_Q4_0, b, want, 32);
}

static void test_dequant_q4_1(void)
{
    uint8_t b[20] = {0};
    double want[32];
    int q[32];
    put16(b, H_QUARTER);
    put16(b + 2, 0xbc00); /* m = -1 */
    for (int j = 0; j < 32; j++)
        q[j] = rng_int(0, 15);
    for (int j = 0; j < 16; j++)
        b[4 + j] = (uint8_t)(q[j] | q[j + 16] << 4);
    for (int j = 0; j < 32; j++)
        want[j] = 0.25 * q[j] - 1;
    check_dequant(LLM_Q4_1, b, want, 32);
}

static void test_dequant_q5(llm_type t)
{
    bool has_min = t == LLM_Q5_1;
    uint8_t b[24] = {0};
    double want[32];
    int q[32];
    put16(b, H_HALF);
    if (has_min)
        put16(b + 2, 0x4000); /* m = 2 */
    uint8_t *qh = b + (has_min ? 4 : 2), *qs = qh + 4;
    uint32_t h = 0;
    for (int j = 0; j < 32; j++) {
        q[j] = rng_int(0, 31);
        h |= (uint32_t)(q[j] >> 4) << j;
    }
    q[5] = 31, q[20] = 16, q[21] = 0;
    h = (h | 1u << 5 | 1u << 20) & ~(1u << 21);
    for (int k = 0; k < 4; k++)
        qh[k] = (uint8_t)(h >> (8 * k));
    for (int j = 0; j < 16; j++)
        qs[j] = (uint8_t)((q[j] & 15) | (q[j + 16] & 15) << 4);
    for (int j = 0; j < 32; j++)
        want[j] = has_min ? 0.5 * q[j] + 2 : 0.5 * (q[j] - 16);
    check_dequant(t, b, want, 32);
}

static void test_dequant_q8_0(void)
{
    uint8_t b[34];
    double want[32];
    put16(b, H_QUARTER);
    for (int j = 0; j < 32; j++) {
        int q = j == 0 ? -128 : j == 1 ? 127 : rng_int(-128, 127);
        b[2 + j] = (uint8_t)(int8_t)q;
        want[j] = 0.25 * q;
    }
    check_dequant(LLM_Q8_0, b, want, 32);
}

/* Q2_K: scales[16] (low nibble scale, high nibble min) | qs[64] | d | dmin. Element e of
 * half h = e/128 is the 2-bit field (e%128)/32 of byte 32h + e%32. */
static void test_dequant_q2_K(void)
{
    uint8_t b[84] = {0};
    double want[256];
    int sc[16], mn[16], q[256];
    for (int g = 0; g < 16; g++) {
        sc[g] = rng_int(0, 15), mn[g] = rng_int(0, 15);
        b[g] = (uint8_t)(sc[g] | mn[g] << 4);
    }
    for (int e = 0; e < 256; e++) {
        q[e] = rng_int(0, 3);
        b[16 + 32 * (e / 128) + e % 32] |= (uint8_t)(q[e] << (2 * ((e % 128) / 32)));
    }
    put16(b + 80, H_16TH);
    put16(b + 82, H_32ND);
    for (int e = 0; e < 256; e++)
        want[e] = (1.0 / 16) * sc[e / 16] * q[e] - (1.0 / 32) * mn[e / 16];
    check_dequant(LLM_Q2_K, b, want, 256);
}

/* Q3_K: hmask[32] | qs[64] | scales[12] | d. q = low 2 bits (as Q2_K) + 4 * (hmask byte e%32,
 * bit e/32); value d * (s - 32) * (q - 4). Scale j: low 4 bits in byte j (j < 8) or the high
 * nibble of byte j-8; bits 4..5 in byte 8 + j%4 at bit 2*(j/4). */
static void test_dequant_q3_K(void)
{
    uint8_t b[110] = {0};
    double want[256];
    int s6[16], q[256];
    for (int j = 0; j < 16; j++) {
        s6[j] = j == 0 ? 0 : j == 1 ? 63 : rng_int(0, 63);
        if (j < 8)
            b[96 + j] |= (uint8_t)(s6[j] & 15);
        else
            b[96 + j - 8] |= (uint8_t)((s6[j] & 15) << 4);
        b[96 + 8 + j % 4] |= (uint8_t)((s6[j] >> 4) << (2 * (j / 4)));
    }
    for (int e = 0; e < 256; e++) {
        q[e] = rng_int(0, 7);
        b[32 + 32 * (e / 128) + e % 32] |= (uint8_t)((q[e] & 3) << (2 * ((e % 128) / 32)));
        if (q[e] & 4)
            b[e % 32] |= (uint8_t)(1 << (e / 32));
    }
    put16(b + 108, H_16TH);
    for (int e = 0; e < 256; e++)
        want[e] = (1.0 / 16) * (s6[e / 16] - 32) * (q[e] - 4);
    check_dequant(LLM_Q3_K, b, want, 256);
}

/* The 12-byte 6-bit scale/min packing of Q4_K/Q5_K, sub-blocks j = 0..7. */
static void pack_k4(uint8_t out[12], const int sc[8], const int mn[8])
{
    memset(out, 0, 12);
    for (int j = 0; j < 4; j++) {
        out[j] = (uint8_t)(sc[j] | (sc[j + 4] >> 4) << 6);
        out[j + 4] = (uint8_t)(mn[j] | (mn[j + 4] >> 4) << 6);
        out[j + 8] = (uint8_t)((sc[j + 4] & 15) | (mn[j + 4] & 15) << 4);
    }
}

/* Q4_K: d | dmin | scales[12] | qs[128]; element e: byte 32*(e/64) + e%32, low nibble when
 * e%64 < 32. Q5_K adds qh[32] before qs: fifth bit is bit e/32 of qh[e%32]. */
static void test_dequant_q45_K(llm_type t)
{
    bool five = t == LLM_Q5_K;
    uint8_t b[176] = {0};
    double want[256];
    int sc[8], mn[8], q[256];
    for (int j = 0; j < 8; j++)
        sc[j] = rng_int(0, 63), mn[j] = rng_int(0, 63);
    sc[7] = 63, mn[6] = 63, sc[0] = 0;
    put16(b, H_16TH);
    put16(b + 2, H_32ND);
    pack_k4(b + 4, sc, mn);
    uint8_t *qh = b + 16, *qs = five ? b + 48 : b + 16;
    for (int e = 0; e < 256; e++) {
        q[e] = rng_int(0, five ? 31 : 15);
        qs[32 * (e / 64) + e % 32] |= (uint8_t)((q[e] & 15) << (e % 64 < 32 ? 0 : 4));
        if (five && (q[e] & 16))
            qh[e % 32] |= (uint8_t)(1 << (e / 32));
    }
    for (int e = 0; e < 256; e++)
        want[e] = (1.0 / 16) * sc[e / 32] * q[e] - (1.0 / 32) * mn[e / 32];
    check_dequant(t, b, want, 256);
}

/* Q6_K: ql[128] | qh[64] | scales[16] (int8) | d. Element e: h = e/128, k = (e%128)/32,
 * l = e%32: low 4 bits in ql[64h + 32*(k&1) + l] (high nibble when k >= 2), top 2 bits in
 * qh[32h + l] at bit 2k; value d * scale[e/16] * (q - 32). */
static void test_dequant_q6_K(void)
{
    uint8_t b[210] = {0};
    double want[256];
    int sc[16], q[256];
    for (int g = 0; g < 16; g++) {
        sc[g] = g == 0 ? -128 : g == 1 ? 127 : rng_int(-128, 127);
        b[192 + g] = (uint8_t)(int8_t)sc[g];
    }
    for (int e = 0; e < 256; e++) {
        q[e] = rng_int(0, 63);
        int h = e / 128, k = (e % 128) / 32, l = e % 32;
        b[64 * h + 32 * (k & 1) + l] |= (uint8_t)((q[e] & 15) << (k >= 2 ? 4 : 0));
        b[128 + 32 * h + l] |= (uint8_t)((q[e] >> 4) << (2 * k));
    }
    put16(b + 208, H_32ND);
    for (int e = 0; e < 256; e++)
        want[e] = (1.0 / 32) * sc[e / 16] * (q[e] - 32);
    check_dequant(LLM_Q6_K, b, want, 256);
}

static void test_dequant_float_types(void)
{
    uint8_t b[64];
    double want[8];
    const uint16_t h[4] = {0x3c00, 0xc400, 0x0001, 0x7bff};
    for (int i = 0; i < 4; i++)
        put16(b + 2 * i, h[i]);
    want[0] = 1, want[1] = -4, want[2] = ldexp(1, -24), want[3] = 65504;
    check_dequant(LLM_F16, b, want, 4);
    const uint16_t bf[3] = {0x3f80, 0xc0a0, 0x4049};
    for (int i = 0; i < 3; i++)
        put16(b + 2 * i, bf[i]);
    want[0] = 1, want[1] = -5, want[2] = 3.140625;
    check_dequant(LLM_BF16, b, want, 3);
    float f[2] = {1.5f, -1e30f};
    memcpy(b, f, 8);
    want[0] = 1.5, want[1] = (double)-1e30f;
    check_dequant(LLM_F32, b, want, 2);
}

/* ---- activation quantizers ------------------------------------------------------------------ */

/* x*id exactly on .5 ties: ggml's AVX2 path (which the llama.cpp references used) rounds them
 * to even, the scalar roundf would round away from zero. amax = 127 makes id exactly 1. */
static void test_act_q8_0_rounding(const llm_kernels *k)
{
    float x[64] = {0};
    x[0] = 127, x[1] = -63.5f, x[2] = 0.5f, x[3] = 1.5f, x[4] = 2.5f, x[5] = -0.5f, x[6] = -127;
    x[32] = 0; /* second block all zero: d = 0, quants 0 */
    uint8_t out[72];
    memset(out, 0xAA, sizeof out);
    k->quantize_act[LLM_Q8_0](x, out, 64);
    CHECK_EQ_INT(out[0] | out[1] << 8, 0x3c00); /* d = 127/127 = 1 */
    const int want[7] = {127, -64, 0, 2, 2, 0, -127};
    for (int j = 0; j < 7; j++)
        CHECK_MSG((int8_t)out[2 + j] == want[j], "%s q8_0 act[%d] = %d, want %d", k->name, j, (int8_t)out[2 + j],
                  want[j]);
    CHECK_EQ_INT(out[34] | out[35] << 8, 0);
    int nz = 0;
    for (int j = 0; j < 32; j++)
        nz += out[36 + j] != 0;
    CHECK_EQ_INT(nz, 0);

    /* Q8_1: same quants, s = d * sum(q) */
    k->quantize_act[LLM_Q8_1](x, out, 32);
    CHECK_EQ_INT(out[0] | out[1] << 8, 0x3c00);
    CHECK(llm_fp16_to_fp32((uint16_t)(out[2] | out[3] << 8)) == 127 - 64 + 0 + 2 + 2 + 0 - 127);
    CHECK_EQ_INT((int8_t)out[4 + 1], -64);
}

/* Q8_K: iscale = -127/max where max is the signed value of largest magnitude (first one),
 * so d = -max/127 is negative for a positive max; quants round half to even; bsums. */
static void test_act_q8_K(const llm_kernels *k)
{
    float x[256] = {0};
    uint8_t out[292];
    x[0] = 127, x[1] = -63.5f, x[2] = 0.5f, x[3] = 1.5f, x[4] = 2.5f, x[17] = -127, x[255] = 3;
    k->quantize_act[LLM_Q8_K](x, out, 256);
    float d;
    memcpy(&d, out, 4);
    CHECK(d == -1.0f);
    const int want[5] = {-127, 64, 0, -2, -2};
    for (int j = 0; j < 5; j++)
        CHECK_MSG((int8_t)out[4 + j] == want[j], "%s q8_K act[%d] = %d, want %d", k->name, j, (int8_t)out[4 + j],
                  want[j]);
    CHECK_EQ_INT((int8_t)out[4 + 17], 127);
    int16_t bs[16];
    memcpy(bs, out + 260, 32);
    CHECK_EQ_INT(bs[0], -127 + 64 - 2 - 2);
    CHECK_EQ_INT(bs[1], 127);
    CHECK_EQ_INT(bs[15], -3);
    CHECK_EQ_INT(bs[7], 0);

    /* a negative extreme first: max = -100, iscale = 1.27, d = 1/1.27 > 0 */
    memset(x, 0, sizeof x);
    x[3] = -100, x[9] = 100;
    k->quantize_act[LLM_Q8_K](x, out, 256);
    memcpy(&d, out, 4);
    CHECK(d == 1 / (-127.f / -100.f));
    CHECK_EQ_INT((int8_t)out[4 + 3], -127);
    CHECK_EQ_INT((int8_t)out[4 + 9], 127);
}

/* ---- (b) dot products ------------------------------------------------------------------------ */

static const llm_type WEIGHT_TYPES[] = {LLM_F32,  LLM_F16,  LLM_BF16, LLM_Q4_0, LLM_Q4_1, LLM_Q5_0, LLM_Q5_1,
                                        LLM_Q8_0, LLM_Q2_K, LLM_Q3_K, LLM_Q4_K, LLM_Q5_K, LLM_Q6_K};
#define N_WEIGHT_TYPES (sizeof WEIGHT_TYPES / sizeof WEIGHT_TYPES[0])

static uint32_t blck(llm_type t)
{
    return llm_type_get(t)->blck;
}

#define MAXN 8192
static float xs[MAXN], ys[MAXN], wdq[MAXN], adq[MAXN];
static uint8_t wbuf[MAXN * 4 + 64], abuf[MAXN * 4 + 64], abuf2[MAXN * 4 + 64];

/* Expected dot from the definitions: the sum of dequantized products (double), except that
 * the Q4_1/Q5_1 pairing uses the activation's stored s = d*sum(q) (rounded to fp16) for the
 * min term, as the format defines. Also returns sum |w||a| for the tolerance. */
static double expected_dot(llm_type t, int n, double *mag)
{
    llm_type at = llm_vec_dot_type(t);
    llm_dequantize_row(t, wbuf, wdq, n);
    llm_dequantize_row(at, abuf, adq, n);
    double sum = 0, m = 0;
    if (t == LLM_Q4_1 || t == LLM_Q5_1) {
        int bs = t == LLM_Q4_1 ? 20 : 24;
        for (int b = 0; b < n / 32; b++) {
            const uint8_t *wb = wbuf + b * bs, *ab = abuf + b * 36;
            double min = llm_fp16_to_fp32((uint16_t)(wb[2] | wb[3] << 8));
            double s = llm_fp16_to_fp32((uint16_t)(ab[2] | ab[3] << 8));
            for (int j = 0; j < 32; j++) {
                double wq = wdq[32 * b + j] - min; /* d*q, exact: the dequant added min last */
                sum += wq * adq[32 * b + j];
                m += fabs(wq * adq[32 * b + j]);
            }
            sum += min * s;
            m += fabs(min * s);
        }
    } else {
        for (int i = 0; i < n; i++) {
            sum += (double)wdq[i] * adq[i];
            m += fabs((double)wdq[i] * adq[i]);
        }
    }
    *mag = m;
    return sum;
}

/* Tolerances: implementations differ only in float summation order (integer block sums are
 * exact), so |a - b| <= 2e-5 * sum|w*a| (+ tiny absolute for all-zero rows). */
#define DOT_REL_TOL 2e-5

static void check_dot_case(llm_type t, int n, const char *what, const llm_kernels *simd)
{
    const llm_kernels *sc = llm_kernels_scalar();
    llm_type at = llm_vec_dot_type(t);
    size_t asize = llm_row_size(at, n);
    sc->quantize_act[at](ys, abuf, n);
    if (simd) { /* SIMD activations must be byte-identical */
        memset(abuf2, 0x5A, asize);
        simd->quantize_act[at](ys, abuf2, n);
        CHECK_MSG(memcmp(abuf, abuf2, asize) == 0, "%s act for %s n=%d (%s): SIMD bytes differ from scalar",
                  llm_type_name(at), llm_type_name(t), n, what);
    }
    double mag, want = expected_dot(t, n, &mag);
    double tol = DOT_REL_TOL * mag + 1e-30;
    float s_ref = NAN, s_simd = NAN;
    sc->vec_dot[t](n, &s_ref, wbuf, abuf);
    CHECK_MSG(fabs(s_ref - want) <= tol, "%s scalar dot n=%d (%s): %.9g, expected %.9g (tol %g)", llm_type_name(t),
              n, what, s_ref, want, tol);
    if (simd) {
        simd->vec_dot[t](n, &s_simd, wbuf, abuf);
        CHECK_MSG(fabs(s_simd - s_ref) <= tol, "%s %s dot n=%d (%s): %.9g vs scalar %.9g (tol %g)", llm_type_name(t),
                  simd->name, n, what, s_simd, s_ref, tol);
    }
}

/* Weight rows with random raw bytes (every quant pattern, including extremes the quantizer
 * never makes) and sane random fp16 scales at the format's scale offsets. */
static void random_raw_weights(llm_type t, int n)
{
    size_t size = llm_row_size(t, n);
    for (size_t i = 0; i < size; i++)
        wbuf[i] = (uint8_t)rng_u64();
    const llm_type_info *ti = llm_type_get(t);
    int nb = n / (int)ti->blck;
    /* byte offsets of fp16 scale fields inside a block; -1 ends */
    int offs[3] = {-1, -1, -1};
    switch (t) {
    case LLM_Q4_0: case LLM_Q5_0: case LLM_Q8_0: offs[0] = 0; break;
    case LLM_Q4_1: case LLM_Q5_1: offs[0] = 0, offs[1] = 2; break;
    case LLM_Q2_K: offs[0] = 80, offs[1] = 82; break;
    case LLM_Q3_K: offs[0] = 108; break;
    case LLM_Q4_K: case LLM_Q5_K: offs[0] = 0, offs[1] = 2; break;
    case LLM_Q6_K: offs[0] = 208; break;
    case LLM_F32:
        for (int i = 0; i < n; i++)
            memcpy(wbuf + 4 * i, &(float){rng_gauss()}, 4);
        return;
    case LLM_F16: case LLM_BF16:
        for (int i = 0; i < n; i++)
            put16(wbuf + 2 * i, t == LLM_F16 ? llm_fp32_to_fp16(rng_gauss()) : llm_fp32_to_bf16(rng_gauss()));
        return;
    default: break;
    }
    for (int b = 0; b < nb; b++)
        for (int k = 0; k < 3 && offs[k] >= 0; k++)
            put16(wbuf + (size_t)b * ti->size + offs[k], llm_fp32_to_fp16(rng_uniform() * 0.01f));
}

static void test_dots(void)
{
    const llm_kernels *simd = simd_kernels();
    if (!simd)
        SKIP("no AVX2 on this CPU: SIMD dots not compared, scalar still checked");
    for (size_t ti = 0; ti < N_WEIGHT_TYPES; ti++) {
        llm_type t = WEIGHT_TYPES[ti];
        int bk = (int)blck(t);
        /* block counts at boundaries: 1, a few, odd, around the 8-block batches, many */
        int lens[8], nl = 0;
        if (bk == 1) {
            const int fl[] = {1, 7, 8, 31, 33, 256, 1000, 4096};
            memcpy(lens, fl, sizeof fl);
            nl = 8;
        } else if (bk == 32) {
            const int bl[] = {1, 2, 7, 8, 9, 17, 128, 256};
            for (int i = 0; i < 8; i++)
                lens[nl++] = bl[i] * 32;
        } else {
            const int bl[] = {1, 2, 3, 16};
            for (int i = 0; i < 4; i++)
                lens[nl++] = bl[i] * 256;
        }
        for (int li = 0; li < nl; li++) {
            int n = lens[li];
            /* random data through the reference quantizer */
            for (int i = 0; i < n; i++)
                xs[i] = rng_gauss(), ys[i] = rng_gauss();
            llm_quantize_row(t, xs, wbuf, n);
            check_dot_case(t, n, "random", simd);
            /* random raw blocks */
            random_raw_weights(t, n);
            check_dot_case(t, n, "raw bytes", simd);
        }
        int n = bk == 1 ? 64 : 4 * bk;
        /* zeros: weights and activations */
        memset(xs, 0, sizeof(float) * (size_t)n);
        memset(ys, 0, sizeof(float) * (size_t)n);
        llm_quantize_row(t, xs, wbuf, n);
        check_dot_case(t, n, "zeros", simd);
        float s = 1;
        llm_kernels_scalar()->vec_dot[t](n, &s, wbuf, abuf);
        CHECK_MSG(s == 0, "%s dot of zero rows = %g", llm_type_name(t), s);
        /* extreme magnitudes: large weights (near the fp16 range of the scales) and tiny
         * activations, and the reverse; plus one huge outlier per row */
        for (int i = 0; i < n; i++)
            xs[i] = rng_gauss() * 1e4f, ys[i] = rng_gauss() * 1e-4f;
        llm_quantize_row(t, xs, wbuf, n);
        check_dot_case(t, n, "large w, tiny act", simd);
        for (int i = 0; i < n; i++)
            xs[i] = rng_gauss() * 1e-3f, ys[i] = rng_gauss() * 1e3f; /* f16 activations top at 65504 */
        ys[n / 2] = 6e4f;
        llm_quantize_row(t, xs, wbuf, n);
        check_dot_case(t, n, "tiny w, huge act + outlier", simd);
    }
}

/* The 4-row kernels (vec_dot4) must give each row exactly what vec_dot gives (matmul mixes
 * the two, and thread splits must not change results); vec_dot itself is checked against the
 * format definition above. Rows are distinct random data, one of them raw bytes, with a
 * stride larger than a row so a kernel reading past its row or mixing rows up is caught. */
static void test_dot4(void)
{
    const llm_kernels *simd = simd_kernels();
    if (!simd)
        SKIP("no AVX2 on this CPU: 4-row dots not compared");
    static uint8_t rows4[4 * (MAXN + 512)];
    int covered = 0;
    for (size_t ti = 0; ti < N_WEIGHT_TYPES; ti++) {
        llm_type t = WEIGHT_TYPES[ti];
        if (!simd->vec_dot4[t])
            continue;
        covered++;
        const int bk = (int)blck(t), bcounts[] = {1, 3, 7, 8, 9, 16, 17, 64};
        for (size_t bi = 0; bi < sizeof bcounts / sizeof *bcounts; bi++) {
            int n = bcounts[bi] * bk;
            if (n > 2048)
                continue;
            size_t rs = llm_row_size(t, n), stride = rs + 40;
            memset(rows4, 0xA5, sizeof rows4);
            for (int r = 0; r < 4; r++) {
                if (r == 2) {
                    random_raw_weights(t, n);
                } else {
                    for (int i = 0; i < n; i++)
                        xs[i] = rng_gauss();
                    llm_quantize_row(t, xs, wbuf, n);
                }
                memcpy(rows4 + (size_t)r * stride, wbuf, rs);
            }
            for (int i = 0; i < n; i++)
                ys[i] = rng_gauss();
            simd->quantize_act[llm_vec_dot_type(t)](ys, abuf, n);
            float got[4], want;
            simd->vec_dot4[t](n, got, rows4, stride, abuf);
            for (int r = 0; r < 4; r++) {
                simd->vec_dot[t](n, &want, rows4 + (size_t)r * stride, abuf);
                CHECK_MSG(bits_of(got[r]) == bits_of(want), "%s n=%d row %d: vec_dot4 %.9g, vec_dot %.9g",
                          llm_type_name(t), n, r, got[r], want);
            }
        }
    }
    CHECK_MSG(covered > 0, "the AVX2 table has no 4-row kernel (Q4_0 expected)");
}

/* Many-rows kernels (vec_dot_rows): each of nr rows gets exactly vec_dot's result, for lengths
 * around the eight-block step and around the widest row whose activation steps the kernel keeps
 * on the stack (1024 blocks for q4_0; wider rows take another path), row counts that are not
 * multiples of four, a padded stride, and nothing written past s[nr - 1]. */
static void test_dot_rows(void)
{
    const llm_kernels *simd = simd_kernels();
    if (!simd)
        SKIP("no AVX2 on this CPU: many-row dots not compared");
    const int bcounts[] = {1, 7, 8, 9, 17, 64, 128, 512, 1023, 1024, 1025, 1032, 1041}, nrs[] = {1, 3, 4, 9};
    const int maxb = 1041, maxr = 9;
    int covered = 0;
    for (size_t ti = 0; ti < N_WEIGHT_TYPES; ti++) {
        llm_type t = WEIGHT_TYPES[ti];
        if (!simd->vec_dot_rows[t])
            continue;
        covered++;
        const int bk = (int)blck(t);
        const size_t max_stride = llm_row_size(t, (int64_t)maxb * bk) + 40;
        uint8_t *rows = malloc(max_stride * maxr), *act = malloc(llm_row_size(llm_vec_dot_type(t), (int64_t)maxb * bk));
        float *f = malloc(sizeof(float) * (size_t)maxb * (size_t)bk);
        for (size_t bi = 0; bi < sizeof bcounts / sizeof *bcounts; bi++) {
            const int n = bcounts[bi] * bk;
            const size_t rs = llm_row_size(t, n), stride = rs + 40;
            memset(rows, 0xA5, max_stride * maxr);
            for (int r = 0; r < maxr; r++) {
                if (r == 2 && rs <= sizeof wbuf) { /* raw bytes: every quant value, in any mix */
                    random_raw_weights(t, n);
                    memcpy(rows + (size_t)r * stride, wbuf, rs);
                    continue;
                }
                for (int i = 0; i < n; i++)
                    f[i] = r == 5 ? (float)(i % 7) * 100.0f - 300.0f : rng_gauss(); /* one row far off the scale */
                llm_quantize_row(t, f, rows + (size_t)r * stride, n);
            }
            /* act kind 0 Gaussian; 1 constant, so every activation quant is 127 (the largest sums) */
            for (int ak = 0; ak < 2; ak++) {
                for (int i = 0; i < n; i++)
                    f[i] = ak ? 1.0f : rng_gauss();
                simd->quantize_act[llm_vec_dot_type(t)](f, act, n);
                for (size_t ni = 0; ni < sizeof nrs / sizeof *nrs; ni++) {
                    const int nr = nrs[ni];
                    float got[10], want;
                    got[nr] = -12345.0f;
                    simd->vec_dot_rows[t](n, nr, got, rows, stride, act);
                    CHECK_MSG(got[nr] == -12345.0f, "%s n=%d nr=%d: wrote past s[nr - 1]", llm_type_name(t), n, nr);
                    for (int r = 0; r < nr; r++) {
                        simd->vec_dot[t](n, &want, rows + (size_t)r * stride, act);
                        CHECK_MSG(bits_of(got[r]) == bits_of(want),
                                  "%s n=%d nr=%d row %d act %d: vec_dot_rows %.9g, vec_dot %.9g", llm_type_name(t), n, nr, r,
                                  ak, got[r], want);
                    }
                }
            }
        }
        free(f);
        free(act);
        free(rows);
    }
    CHECK_MSG(covered > 0, "the AVX2 table has no many-row kernel (Q4_0 expected)");
}

/* K-quant 4-row kernels, beyond test_dot4: they walk the rows over runs of activation blocks
 * (copied to an aligned buffer), so lengths below, at and past a run boundary (32 blocks) and
 * several runs are covered, with exact and padded row strides; and extreme rows (every byte
 * 0xFF or 0x80: scales, mins and quants at their ends) must neither overflow an integer lane nor
 * differ from vec_dot by a bit. vec_dot on those rows is checked against the definition (the
 * sum of dequantized products) too, since the rows include blocks the quantizer never makes. */
#define K4_MAXB 65
static void fill_k_row(llm_type t, uint8_t *row, int nb, int kind, float *tmp)
{
    const llm_type_info *ti = llm_type_get(t);
    int offs[2] = {-1, -1}; /* fp16 scale fields, from the ggml block layouts */
    switch (t) {
    case LLM_Q2_K: offs[0] = 80, offs[1] = 82; break;
    case LLM_Q3_K: offs[0] = 108; break;
    case LLM_Q4_K: case LLM_Q5_K: offs[0] = 0, offs[1] = 2; break;
    case LLM_Q6_K: offs[0] = 208; break;
    default: break;
    }
    if (kind == 0) { /* quantized gaussian data */
        for (int i = 0; i < nb * 256; i++)
            tmp[i] = rng_gauss();
        llm_quantize_row(t, tmp, row, nb * 256);
        return;
    }
    for (size_t i = 0; i < (size_t)nb * ti->size; i++)
        row[i] = kind == 1 ? (uint8_t)rng_u64() : kind == 2 ? 0xFF : 0x80;
    for (int b = 0; b < nb; b++)
        for (int k = 0; k < 2 && offs[k] >= 0; k++) {
            float v = kind == 1 ? rng_uniform() * 0.01f : kind == 2 ? 3e4f : -2e-5f; /* -2e-5: subnormal fp16 */
            put16(row + (size_t)b * ti->size + offs[k], llm_fp32_to_fp16(k ? -v : v));
        }
}

static void test_dot4_kquants(void)
{
    const llm_kernels *simd = simd_kernels();
    if (!simd) {
        SKIP("no AVX2 on this CPU: K-quant 4-row dots not compared");
        return;
    }
    static float tmp[K4_MAXB * 256], wd[K4_MAXB * 256], ad[K4_MAXB * 256];
    static uint8_t rows4[4 * (K4_MAXB * 210 + 64)], act[K4_MAXB * 292];
    const llm_type types[] = {LLM_Q2_K, LLM_Q3_K, LLM_Q4_K, LLM_Q5_K, LLM_Q6_K};
    const int bcounts[] = {1, 2, 31, 32, 33, 64, 65};
    int covered = 0;
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
        llm_type t = types[ti];
        if (!simd->vec_dot4[t])
            continue;
        covered++;
        for (size_t bi = 0; bi < sizeof bcounts / sizeof *bcounts; bi++) {
            const int nb = bcounts[bi], n = nb * 256;
            const size_t rs = llm_row_size(t, n), stride = bi % 2 ? rs : rs + 24;
            /* activations: gaussian, or all equal (every q8 = 127, the largest products) */
            for (int act_kind = 0; act_kind < 2; act_kind++) {
                for (int i = 0; i < n; i++)
                    tmp[i] = act_kind ? 1.0f : rng_gauss();
                simd->quantize_act[LLM_Q8_K](tmp, act, n);
                for (int rot = 0; rot < 4; rot++) { /* every row kind in every row slot */
                    memset(rows4, 0xA5, sizeof rows4);
                    for (int r = 0; r < 4; r++)
                        fill_k_row(t, rows4 + (size_t)r * stride, nb, (r + rot) % 4, tmp);
                    float got[4] = {NAN, NAN, NAN, NAN}, want = NAN;
                    simd->vec_dot4[t](n, got, rows4, stride, act);
                    for (int r = 0; r < 4; r++) {
                        const uint8_t *row = rows4 + (size_t)r * stride;
                        simd->vec_dot[t](n, &want, row, act);
                        CHECK_MSG(bits_of(got[r]) == bits_of(want),
                                  "%s %d blocks, row kind %d, act kind %d: vec_dot4 %.9g, vec_dot %.9g",
                                  llm_type_name(t), nb, (r + rot) % 4, act_kind, got[r], want);
                        if (rot)
                            continue;
                        llm_dequantize_row(t, row, wd, n);
                        llm_dequantize_row(LLM_Q8_K, act, ad, n);
                        double sum = 0, mag = 0;
                        for (int i = 0; i < n; i++) {
                            sum += (double)wd[i] * ad[i];
                            mag += fabs((double)wd[i] * ad[i]);
                        }
                        CHECK_MSG(fabs(want - sum) <= DOT_REL_TOL * mag + 1e-30,
                                  "%s %d blocks, row kind %d, act kind %d: vec_dot %.9g, definition %.9g",
                                  llm_type_name(t), nb, r, act_kind, want, sum);
                    }
                }
            }
        }
    }
    CHECK_MSG(covered > 0, "the AVX2 table has no K-quant 4-row kernel (Q4_K expected)");
}

/* ---- (c) round trips ----------------------------------------------------------------------- */

/* Bounds on RMS(dequant(quant(x)) - x) / RMS(x) for x ~ N(0,1), 64 K elements. Measured
 * (TEST_QUANTS_VERBOSE=1 prints them): f16 2.1e-4, bf16 1.7e-3, q8_0 5.1e-3, q8_K 6.2e-3,
 * q4_0 .082, q4_1 .075, q5_0 .041, q5_1 .037, q2_K .289, q3_K .147, q4_K .069, q5_K .035,
 * q6_K .017: the bounds leave ~45% headroom (30% for q8_K) and catch any broken bit layout. */
static const struct {
    llm_type t;
    double bound;
} RT_BOUNDS[] = {
    {LLM_F32, 0},       {LLM_F16, 3e-4},   {LLM_BF16, 2.5e-3}, {LLM_Q8_0, 0.008}, {LLM_Q8_1, 0.008},
    {LLM_Q8_K, 0.008},  {LLM_Q4_0, 0.12},  {LLM_Q4_1, 0.11},   {LLM_Q5_0, 0.06},  {LLM_Q5_1, 0.055},
    {LLM_Q2_K, 0.40},   {LLM_Q3_K, 0.21},  {LLM_Q4_K, 0.10},   {LLM_Q5_K, 0.05},  {LLM_Q6_K, 0.025},
};

static void test_round_trips(void)
{
    enum { N = 65536 };
    static float x[N], back[N];
    static uint8_t q[N * 4];
    for (int i = 0; i < N; i++)
        x[i] = rng_gauss();
    for (size_t k = 0; k < sizeof RT_BOUNDS / sizeof RT_BOUNDS[0]; k++) {
        llm_type t = RT_BOUNDS[k].t;
        CHECK(llm_type_can_quantize(t));
        CHECK_EQ_INT(llm_quantize_row(t, x, q, N), 0);
        llm_dequantize_row(t, q, back, N);
        double e = 0, r = 0;
        for (int i = 0; i < N; i++) {
            e += (double)(back[i] - x[i]) * (back[i] - x[i]);
            r += (double)x[i] * x[i];
        }
        double rel = sqrt(e / r);
        CHECK_MSG(rel <= RT_BOUNDS[k].bound, "%s round trip: relative RMS error %.5f > bound %.5f",
                  llm_type_name(t), rel, RT_BOUNDS[k].bound);
        if (getenv("TEST_QUANTS_VERBOSE"))
            printf("  %-5s relative rms %.5f (bound %.5f)\n", llm_type_name(t), rel, RT_BOUNDS[k].bound);
    }
    CHECK(!llm_type_can_quantize(LLM_I8));
    CHECK_EQ_INT(llm_quantize_row(LLM_I32, x, q, 32), -1);
}

/* Data already on a format's grid comes back exactly. */
static void test_exact_round_trips(void)
{
    float x[256], back[256];
    uint8_t q[1024];
    /* Q8_0: integers with max |x| = 127 -> d = 1, quants = x */
    for (int j = 0; j < 32; j++)
        x[j] = (float)rng_int(-127, 127);
    x[3] = -127;
    llm_quantize_row(LLM_Q8_0, x, q, 32);
    llm_dequantize_row(LLM_Q8_0, q, back, 32);
    CHECK(memcmp(x, back, sizeof(float) * 32) == 0);
    /* Q4_0: d = max/-8, so values 0.5*(k-8) with the extreme -4 are on the grid */
    for (int j = 0; j < 32; j++)
        x[j] = 0.5f * (float)(rng_int(0, 15) - 8);
    x[7] = -4;
    llm_quantize_row(LLM_Q4_0, x, q, 32);
    llm_dequantize_row(LLM_Q4_0, q, back, 32);
    CHECK(memcmp(x, back, sizeof(float) * 32) == 0);
    /* Q8_K: integers with max 127 first -> d = -1, exact */
    for (int j = 0; j < 256; j++)
        x[j] = (float)rng_int(-126, 126);
    x[0] = 127;
    llm_quantize_row(LLM_Q8_K, x, q, 256);
    llm_dequantize_row(LLM_Q8_K, q, back, 256);
    int diff = 0; /* by value: d = -1 turns 0 into -0 */
    for (int j = 0; j < 256; j++)
        diff += back[j] != x[j];
    CHECK_EQ_INT(diff, 0);
    /* Q6_K: a constant block is one scale away from exact */
    for (int j = 0; j < 256; j++)
        x[j] = j % 2 ? 0.75f : -0.75f;
    llm_quantize_row(LLM_Q6_K, x, q, 256);
    llm_dequantize_row(LLM_Q6_K, q, back, 256);
    double maxerr = 0;
    for (int j = 0; j < 256; j++)
        maxerr = fmax(maxerr, fabs(back[j] - x[j]));
    CHECK_MSG(maxerr <= 0.75 * 1e-3, "q6_K constant block max error %g", maxerr);
    /* all-zero blocks quantize to exact zeros in every format */
    memset(x, 0, sizeof x);
    for (size_t k = 0; k < sizeof RT_BOUNDS / sizeof RT_BOUNDS[0]; k++) {
        llm_quantize_row(RT_BOUNDS[k].t, x, q, 256);
        llm_dequantize_row(RT_BOUNDS[k].t, q, back, 256);
        int nz = 0;
        for (int j = 0; j < 256; j++)
            nz += back[j] != 0;
        CHECK_MSG(nz == 0, "%s: zero block dequantizes to %d non-zeros", llm_type_name(RT_BOUNDS[k].t), nz);
    }
}

/* ---- (e) real blocks written by llama-quantize (shared test data) -------------------------- */

/* Standard deviation the generator used for a tensor (shared/README.md, "How the weights were
 * generated"), 0 for tensors not drawn from a zero-mean normal. */
static double generated_std(const char *file, const char *name)
{
    if (strcmp(name, "token_embd.weight") == 0) /* tiny-qwen2 ties it to the output */
        return strstr(file, "qwen2") ? 3.0 / 16 : 1.0;
    if (strcmp(name, "output.weight") == 0)
        return 3.0 / 16;
    if (strstr(name, "ffn_down"))
        return 1 / sqrt(768.0);
    if (strstr(name, "attn_q.") || strstr(name, "attn_k.") || strstr(name, "attn_v.") ||
        strstr(name, "attn_output.") || strstr(name, "ffn_gate.") || strstr(name, "ffn_up."))
        return 1.0 / 16;
    return 0;
}

static uint8_t *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = n > 0 ? malloc((size_t)n) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *size = (size_t)n;
    return buf;
}

/* For every quantized tensor of a llama-quantize output: (1) the dequantized values have the
 * standard deviation the generator used (within 3%: decoding scales/mins wrongly would not);
 * (2) Q8_0/Q4_0 blocks survive dequantize -> reference quantize byte for byte (their
 * quantizers are idempotent on their own grid, so this pins our block layout and scale sign
 * convention to llama.cpp's); (3) SIMD and scalar dots agree on a few real rows. */
static void test_shared_file(const char *file)
{
    const char *dir = shared_dir();
    if (!dir) {
        SKIP("shared data absent: real llama-quantize blocks (%s) not checked", file);
        return;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/models/%s", dir, file);
    size_t size = 0;
    uint8_t *buf = read_file(path, &size);
    if (!buf) {
        SKIP("cannot read %s", path);
        return;
    }
    gguf_file g;
    llm_err err;
    if (gguf_parse(&g, path, buf, size, &err) != 0) {
        CHECK_MSG(0, "%s", err.msg);
        free(buf);
        return;
    }
    const llm_kernels *simd = simd_kernels();
    int n_quant = 0;
    for (uint64_t ti = 0; ti < g.n_tensors; ti++) {
        const gguf_tensor *t = &g.tensors[ti];
        if (t->type == LLM_F32)
            continue;
        n_quant++;
        int64_t cols = t->ne[0], rows = t->size / llm_row_size(t->type, cols);
        size_t rs = llm_row_size(t->type, cols);
        CHECK_MSG(cols <= MAXN, "%s: row of %lld", t->name, (long long)cols);
        if (cols > MAXN)
            continue;
        double sum = 0, sum2 = 0;
        int64_t requant_bad = 0;
        for (int64_t r = 0; r < rows; r++) {
            const uint8_t *row = (const uint8_t *)t->data + r * rs;
            llm_dequantize_row(t->type, row, wdq, cols);
            for (int64_t i = 0; i < cols; i++)
                sum += wdq[i], sum2 += (double)wdq[i] * wdq[i];
            if (t->type == LLM_Q8_0 || t->type == LLM_Q4_0) {
                llm_quantize_row(t->type, wdq, wbuf, cols);
                requant_bad += memcmp(wbuf, row, rs) != 0;
            }
        }
        double n = (double)rows * cols, mean = sum / n, sd = sqrt(sum2 / n - mean * mean);
        double want = generated_std(file, t->name);
        if (want > 0)
            CHECK_MSG(fabs(sd / want - 1) < 0.03 && fabs(mean) < 0.05 * want,
                      "%s %s (%s): mean %g sd %g, generated with sd %g", file, t->name, llm_type_name(t->type), mean,
                      sd, want);
        CHECK_MSG(requant_bad == 0, "%s %s: %lld of %lld %s rows differ after dequantize + requantize", file,
                  t->name, (long long)requant_bad, (long long)rows, llm_type_name(t->type));
        if (simd) {
            for (int i = 0; i < cols; i++)
                ys[i] = rng_gauss();
            llm_type at = llm_vec_dot_type(t->type);
            llm_kernels_scalar()->quantize_act[at](ys, abuf, cols);
            for (int64_t r = 0; r < rows && r < 4; r++) {
                const uint8_t *row = (const uint8_t *)t->data + (rows - 1 - r) * rs;
                float a, b;
                llm_kernels_scalar()->vec_dot[t->type](cols, &a, row, abuf);
                simd->vec_dot[t->type](cols, &b, row, abuf);
                CHECK_MSG(fabs(a - b) <= 1e-5 * (fabs(a) + sqrt((double)cols)), "%s %s row %lld: %s %g vs scalar %g",
                          file, t->name, (long long)r, simd->name, b, a);
            }
        }
    }
    CHECK_MSG(n_quant > 0, "%s: no quantized tensors", file);
    gguf_free(&g);
    free(buf);
}

/* Our K-quant reference quantizers against llama-quantize's output. The F32 originals are not
 * shipped, so the Q8_0 file's weights (within 0.5% of them) are requantized and compared with
 * the Q4_K_M file's Q4_K/Q6_K blocks, nibble by nibble. The scale searches are discrete, so
 * the Q8_0 noise flips some choices: the same algorithm agrees on 92.1% (Q4_K) and 89.5%
 * (Q6_K) of nibbles, while near variants score lower (Q4_K with rmin -0.5/15 steps 87.1%,
 * with unit weights 84.8%; Q6_K searching -4..4 83.0%, with |x| weights 88.9%). */
static void test_shared_kquant_agreement(void)
{
    const char *dir = shared_dir();
    if (!dir) {
        SKIP("shared data absent: K-quant quantizers not compared with llama-quantize output");
        return;
    }
    char p8[4096], pk[4096];
    snprintf(p8, sizeof p8, "%s/models/tiny-llama-q8_0.gguf", dir);
    snprintf(pk, sizeof pk, "%s/models/tiny-llama-q4_k_m.gguf", dir);
    size_t n8 = 0, nk = 0;
    uint8_t *b8 = read_file(p8, &n8), *bk = read_file(pk, &nk);
    gguf_file g8, gk;
    llm_err err;
    if (!b8 || !bk || gguf_parse(&g8, p8, b8, n8, &err) != 0) {
        SKIP("cannot read %s / %s", p8, pk);
        free(b8);
        free(bk);
        return;
    }
    if (gguf_parse(&gk, pk, bk, nk, &err) != 0) {
        CHECK_MSG(0, "%s", err.msg);
        gguf_free(&g8);
        free(b8);
        free(bk);
        return;
    }
    long same[LLM_TYPE_COUNT] = {0}, total[LLM_TYPE_COUNT] = {0};
    for (uint64_t i = 0; i < gk.n_tensors; i++) {
        const gguf_tensor *t = &gk.tensors[i];
        const gguf_tensor *s = gguf_find_tensor(&g8, t->name);
        if ((t->type != LLM_Q4_K && t->type != LLM_Q6_K) || !s || s->type != LLM_Q8_0 || t->ne[0] > MAXN)
            continue;
        int64_t cols = t->ne[0];
        size_t rs = llm_row_size(t->type, cols), r8 = llm_row_size(s->type, cols);
        int64_t rows = (int64_t)(t->size / rs);
        for (int64_t r = 0; r < rows && r < 256; r++) {
            llm_dequantize_row(LLM_Q8_0, (const uint8_t *)s->data + r * r8, wdq, cols);
            llm_quantize_row(t->type, wdq, wbuf, cols);
            const uint8_t *o = (const uint8_t *)t->data + r * rs;
            for (size_t k = 0; k < rs; k++) {
                same[t->type] += ((wbuf[k] ^ o[k]) & 15) == 0;
                same[t->type] += ((wbuf[k] ^ o[k]) >> 4) == 0;
            }
            total[t->type] += 2 * (long)rs;
        }
    }
    double a4 = total[LLM_Q4_K] ? (double)same[LLM_Q4_K] / total[LLM_Q4_K] : 0;
    double a6 = total[LLM_Q6_K] ? (double)same[LLM_Q6_K] / total[LLM_Q6_K] : 0;
    CHECK_MSG(a4 >= 0.91, "q4_K quantizer agrees with llama-quantize on %.4f of nibbles (want >= 0.91)", a4);
    CHECK_MSG(a6 >= 0.893, "q6_K quantizer agrees with llama-quantize on %.4f of nibbles (want >= 0.893)", a6);
    if (getenv("TEST_QUANTS_VERBOSE"))
        printf("  llama-quantize agreement: q4_K %.4f, q6_K %.4f\n", a4, a6);
    gguf_free(&g8);
    gguf_free(&gk);
    free(b8);
    free(bk);
}

/* ---- tables ---------------------------------------------------------------------------------- */

static void test_tables(void)
{
    CHECK_EQ_INT(llm_vec_dot_type(LLM_Q4_0), LLM_Q8_0);
    CHECK_EQ_INT(llm_vec_dot_type(LLM_Q5_0), LLM_Q8_0);
    CHECK_EQ_INT(llm_vec_dot_type(LLM_Q8_0), LLM_Q8_0);
    CHECK_EQ_INT(llm_vec_dot_type(LLM_Q4_1), LLM_Q8_1);
    CHECK_EQ_INT(llm_vec_dot_type(LLM_Q5_1), LLM_Q8_1);
    CHECK_EQ_INT(llm_vec_dot_type(LLM_Q2_K), LLM_Q8_K);
    CHECK_EQ_INT(llm_vec_dot_type(LLM_Q6_K), LLM_Q8_K);
    CHECK_EQ_INT(llm_vec_dot_type(LLM_F16), LLM_F16);
    CHECK_EQ_INT(llm_vec_dot_type(LLM_BF16), LLM_BF16);
    CHECK_EQ_INT(llm_vec_dot_type(LLM_F32), LLM_F32);
    const llm_kernels *ks[2] = {llm_kernels_scalar(), simd_kernels() ? simd_kernels() : llm_kernels_scalar()};
    CHECK_EQ_STR(ks[0]->name, "scalar");
    for (int k = 0; k < 2; k++) {
        for (size_t ti = 0; ti < N_WEIGHT_TYPES; ti++) {
            llm_type t = WEIGHT_TYPES[ti];
            CHECK_MSG(ks[k]->vec_dot[t] != NULL, "%s: no vec_dot for %s", ks[k]->name, llm_type_name(t));
            CHECK_MSG(ks[k]->quantize_act[llm_vec_dot_type(t)] != NULL, "%s: no quantize_act for %s", ks[k]->name,
                      llm_type_name(t));
        }
    }
    /* LLMAP_NO_SIMD=1 forces the scalar table */
    const char *old = getenv("LLMAP_NO_SIMD");
    setenv("LLMAP_NO_SIMD", "1", 1);
    CHECK(llm_kernels_best() == llm_kernels_scalar());
    if (old)
        setenv("LLMAP_NO_SIMD", old, 1);
    else
        unsetenv("LLMAP_NO_SIMD");
}

int main(void)
{
    test_fp16_cases();
    test_bf16_cases();
    test_fp16_hardware();

    test_dequant_float_types();
    test_dequant_q4_0();
    test_dequant_q4_1();
    test_dequant_q5(LLM_Q5_0);
    test_dequant_q5(LLM_Q5_1);
    test_dequant_q8_0();
    test_dequant_q2_K();
    test_dequant_q3_K();
    test_dequant_q45_K(LLM_Q4_K);
    test_dequant_q45_K(LLM_Q5_K);
    test_dequant_q6_K();

    test_act_q8_0_rounding(llm_kernels_scalar());
    test_act_q8_K(llm_kernels_scalar());
    if (have_avx2()) {
        test_act_q8_0_rounding(simd_kernels());
        test_act_q8_K(simd_kernels());
    }

    test_tables();
    test_dots();
    test_dot4();
    test_dot4_kquants();
    test_dot_rows();
    test_round_trips();
    test_exact_round_trips();

    test_shared_file("tiny-llama-q8_0.gguf");
    test_shared_file("tiny-llama-q4_0.gguf");
    test_shared_file("tiny-llama-q4_k_m.gguf");
    test_shared_file("tiny-qwen2-q4_0.gguf");
    test_shared_kquant_agreement();
    TEST_END("quants");
}
