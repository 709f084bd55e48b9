/*
 * quants — scalar reference for the float formats (F32, F16, BF16) and the 32-element block
 * formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1): dequantize, quantize, dot product.
 *
 * Quantizers reproduce ggml's reference algorithms (quantize_row_*_ref) bit for bit, so a
 * file llmap writes has the bytes llama-quantize would write. Dot products compute exact
 * integer sums per block and scale them in float, as ggml does.
 *
 * Activation quantization (llm_act_*) deliberately follows ggml's x86 AVX2 path instead of
 * its scalar reference, because the llama.cpp reference outputs were computed on an AVX2
 * CPU: Q8_0/Q8_1 use id = 127/amax (the reference uses 1/(amax/127), which can differ in
 * the last bit) and round x*id half to even (_mm256_round_ps; the reference uses roundf,
 * half away from zero). The AVX2 quantizers produce the same bytes, so LLMAP_NO_SIMD=1
 * changes only summation order, never the activations.
 */
#include "kernels/blocks.h"

#include <math.h>
#include <string.h>

#define H2F llm_fp16_to_fp32
#define F2H llm_fp32_to_fp16

/* ---- F32 ---------------------------------------------------------------------------------- */

void llm_dequant_f32_scalar(const void *src, float *dst, int64_t n)
{
    memcpy(dst, src, (size_t)n * sizeof(float));
}

void llm_quant_f32_ref(const float *src, void *dst, int64_t n)
{
    memcpy(dst, src, (size_t)n * sizeof(float));
}

void llm_vec_dot_f32_scalar(int64_t n, float *s, const void *w, const void *act)
{
    const float *x = w, *y = act;
    double sum = 0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)(x[i] * y[i]);
    *s = (float)sum;
}

void llm_act_f32_scalar(const float *x, void *dst, int64_t n)
{
    memcpy(dst, x, (size_t)n * sizeof(float));
}

/* ---- F16 / BF16 --------------------------------------------------------------------------- */

/* Both are 16-bit floats that differ only in the conversion; one loop per operation serves
 * both, the conversion passed in. */
typedef float (*half_to_f32_fn)(uint16_t h);
typedef uint16_t (*f32_to_half_fn)(float f);

static void dequant_half(const uint16_t *h, float *dst, int64_t n, half_to_f32_fn to_f32)
{
    for (int64_t i = 0; i < n; i++)
        dst[i] = to_f32(h[i]);
}

static void quant_half(const float *src, uint16_t *h, int64_t n, f32_to_half_fn from_f32)
{
    for (int64_t i = 0; i < n; i++)
        h[i] = from_f32(src[i]);
}

static float dot_half(int64_t n, const uint16_t *x, const uint16_t *y, half_to_f32_fn to_f32)
{
    double sum = 0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)(to_f32(x[i]) * to_f32(y[i]));
    return (float)sum;
}

void llm_dequant_f16_scalar(const void *src, float *dst, int64_t n)
{
    dequant_half(src, dst, n, llm_fp16_to_fp32);
}

void llm_quant_f16_ref(const float *src, void *dst, int64_t n)
{
    quant_half(src, dst, n, llm_fp32_to_fp16);
}

void llm_vec_dot_f16_scalar(int64_t n, float *s, const void *w, const void *act)
{
    *s = dot_half(n, w, act, llm_fp16_to_fp32);
}

void llm_act_f16_scalar(const float *x, void *dst, int64_t n)
{
    llm_quant_f16_ref(x, dst, n);
}

void llm_dequant_bf16_scalar(const void *src, float *dst, int64_t n)
{
    dequant_half(src, dst, n, llm_bf16_to_fp32);
}

void llm_quant_bf16_ref(const float *src, void *dst, int64_t n)
{
    quant_half(src, dst, n, llm_fp32_to_bf16);
}

void llm_vec_dot_bf16_scalar(int64_t n, float *s, const void *w, const void *act)
{
    *s = dot_half(n, w, act, llm_bf16_to_fp32);
}

void llm_act_bf16_scalar(const float *x, void *dst, int64_t n)
{
    llm_quant_bf16_ref(x, dst, n);
}

/* ---- shared helpers for the 32-element formats -------------------------------------------- */

/* The value of largest magnitude, with its sign (first one on ties). */
static float signed_absmax(const float *x, int n)
{
    float amax = 0, max = 0;
    for (int j = 0; j < n; j++) {
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

static void min_max(const float *x, int n, float *min, float *max)
{
    *min = INFINITY;
    *max = -INFINITY;
    for (int j = 0; j < n; j++) {
        if (x[j] < *min)
            *min = x[j];
        if (x[j] > *max)
            *max = x[j];
    }
}

/* ggml's MIN(top, (int8_t)v): truncation toward zero, clamped to [0, top]. v is in
 * [0, top + 1) for finite input; the guards only keep NaN/inf input from being undefined. */
static uint8_t trunc_clamp(float v, int top)
{
    if (!(v >= 0))
        return 0;
    if (v >= (float)top)
        return (uint8_t)top;
    return (uint8_t)(int)v;
}

/* roundf to int8 (half away from zero), saturating; NaN gives 0. */
static int8_t round_i8(float v)
{
    if (!(v > -128.f))
        return v != v ? 0 : -128;
    if (v >= 127.f)
        return 127;
    return (int8_t)roundf(v);
}

/* ---- Q4_0 --------------------------------------------------------------------------------- */

void llm_dequant_q4_0_scalar(const void *src, float *dst, int64_t n)
{
    const block_q4_0 *b = src;
    for (int64_t i = 0; i < n / QK4_0; i++, dst += QK4_0) {
        float d = H2F(b[i].d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            dst[j] = ((b[i].qs[j] & 0xF) - 8) * d;
            dst[j + QK4_0 / 2] = ((b[i].qs[j] >> 4) - 8) * d;
        }
    }
}

void llm_quant_q4_0_ref(const float *src, void *dst, int64_t n)
{
    block_q4_0 *b = dst;
    for (int64_t i = 0; i < n / QK4_0; i++, src += QK4_0) {
        /* d = max / -8 maps the extreme value exactly onto -8, using the full range */
        float d = signed_absmax(src, QK4_0) / -8;
        float id = d ? 1.0f / d : 0.0f;
        b[i].d = F2H(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            uint8_t lo = trunc_clamp(src[j] * id + 8.5f, 15);
            uint8_t hi = trunc_clamp(src[j + QK4_0 / 2] * id + 8.5f, 15);
            b[i].qs[j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

void llm_vec_dot_q4_0_scalar(int64_t n, float *s, const void *w, const void *act)
{
    const block_q4_0 *x = w;
    const block_q8_0 *y = act;
    float sum = 0;
    for (int64_t i = 0; i < n / QK4_0; i++) {
        int sumi = 0;
        for (int j = 0; j < QK4_0 / 2; j++) {
            sumi += ((x[i].qs[j] & 0xF) - 8) * y[i].qs[j];
            sumi += ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + QK4_0 / 2];
        }
        sum += (float)sumi * (H2F(x[i].d) * H2F(y[i].d));
    }
    *s = sum;
}

/* ---- Q4_1 --------------------------------------------------------------------------------- */

void llm_dequant_q4_1_scalar(const void *src, float *dst, int64_t n)
{
    const block_q4_1 *b = src;
    for (int64_t i = 0; i < n / QK4_1; i++, dst += QK4_1) {
        float d = H2F(b[i].d), m = H2F(b[i].m);
        for (int j = 0; j < QK4_1 / 2; j++) {
            dst[j] = (b[i].qs[j] & 0xF) * d + m;
            dst[j + QK4_1 / 2] = (b[i].qs[j] >> 4) * d + m;
        }
    }
}

void llm_quant_q4_1_ref(const float *src, void *dst, int64_t n)
{
    block_q4_1 *b = dst;
    for (int64_t i = 0; i < n / QK4_1; i++, src += QK4_1) {
        float min, max;
        min_max(src, QK4_1, &min, &max);
        float d = (max - min) / 15;
        float id = d ? 1.0f / d : 0.0f;
        b[i].d = F2H(d);
        b[i].m = F2H(min);
        for (int j = 0; j < QK4_1 / 2; j++) {
            uint8_t lo = trunc_clamp((src[j] - min) * id + 0.5f, 15);
            uint8_t hi = trunc_clamp((src[j + QK4_1 / 2] - min) * id + 0.5f, 15);
            b[i].qs[j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

void llm_vec_dot_q4_1_scalar(int64_t n, float *s, const void *w, const void *act)
{
    const block_q4_1 *x = w;
    const block_q8_1 *y = act;
    float sum = 0;
    for (int64_t i = 0; i < n / QK4_1; i++) {
        int sumi = 0;
        for (int j = 0; j < QK4_1 / 2; j++) {
            sumi += (x[i].qs[j] & 0xF) * y[i].qs[j];
            sumi += (x[i].qs[j] >> 4) * y[i].qs[j + QK4_1 / 2];
        }
        /* sum(d*q + m)*y = d*dy*sum(q*qy) + m*(dy*sum(qy)) and dy*sum(qy) is y.s */
        sum += (H2F(x[i].d) * H2F(y[i].d)) * (float)sumi + H2F(x[i].m) * H2F(y[i].s);
    }
    *s = sum;
}

/* ---- Q5_0 / Q5_1 -------------------------------------------------------------------------- */

static uint32_t load_u32(const uint8_t p[4])
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static void store_u32(uint8_t p[4], uint32_t v)
{
    memcpy(p, &v, 4);
}

/* 5-bit quant j (0..31) of a q5 block: nibble from qs, fifth bit from qh bit j. */
static int q5_value(const uint8_t *qs, uint32_t qh, int j)
{
    int nib = j < 16 ? qs[j] & 0xF : qs[j - 16] >> 4;
    return nib | (int)(((qh >> j) & 1) << 4);
}

/* Element j (low half) and j + 16 (high half) of a q5 block: nibbles to qs[j], fifth bits to
 * qh bits j and j + 16. */
_Static_assert(QK5_0 == QK5_1, "Q5_0 and Q5_1 share the quant packing");
static void pack_q5_pair(uint8_t *qs, uint32_t *qh, int j, uint8_t lo, uint8_t hi)
{
    qs[j] = (uint8_t)((lo & 0xF) | ((hi & 0xF) << 4));
    *qh |= (uint32_t)(lo >> 4) << j;
    *qh |= (uint32_t)(hi >> 4) << (j + QK5_0 / 2);
}

void llm_dequant_q5_0_scalar(const void *src, float *dst, int64_t n)
{
    const block_q5_0 *b = src;
    for (int64_t i = 0; i < n / QK5_0; i++, dst += QK5_0) {
        float d = H2F(b[i].d);
        uint32_t qh = load_u32(b[i].qh);
        for (int j = 0; j < QK5_0; j++)
            dst[j] = (q5_value(b[i].qs, qh, j) - 16) * d;
    }
}

void llm_quant_q5_0_ref(const float *src, void *dst, int64_t n)
{
    block_q5_0 *b = dst;
    for (int64_t i = 0; i < n / QK5_0; i++, src += QK5_0) {
        float d = signed_absmax(src, QK5_0) / -16;
        float id = d ? 1.0f / d : 0.0f;
        b[i].d = F2H(d);
        uint32_t qh = 0;
        for (int j = 0; j < QK5_0 / 2; j++) {
            uint8_t lo = trunc_clamp(src[j] * id + 16.5f, 31);
            uint8_t hi = trunc_clamp(src[j + QK5_0 / 2] * id + 16.5f, 31);
            pack_q5_pair(b[i].qs, &qh, j, lo, hi);
        }
        store_u32(b[i].qh, qh);
    }
}

void llm_vec_dot_q5_0_scalar(int64_t n, float *s, const void *w, const void *act)
{
    const block_q5_0 *x = w;
    const block_q8_0 *y = act;
    float sum = 0;
    for (int64_t i = 0; i < n / QK5_0; i++) {
        uint32_t qh = load_u32(x[i].qh);
        int sumi = 0;
        for (int j = 0; j < QK5_0; j++)
            sumi += (q5_value(x[i].qs, qh, j) - 16) * y[i].qs[j];
        sum += (float)sumi * (H2F(x[i].d) * H2F(y[i].d));
    }
    *s = sum;
}

void llm_dequant_q5_1_scalar(const void *src, float *dst, int64_t n)
{
    const block_q5_1 *b = src;
    for (int64_t i = 0; i < n / QK5_1; i++, dst += QK5_1) {
        float d = H2F(b[i].d), m = H2F(b[i].m);
        uint32_t qh = load_u32(b[i].qh);
        for (int j = 0; j < QK5_1; j++)
            dst[j] = q5_value(b[i].qs, qh, j) * d + m;
    }
}

void llm_quant_q5_1_ref(const float *src, void *dst, int64_t n)
{
    block_q5_1 *b = dst;
    for (int64_t i = 0; i < n / QK5_1; i++, src += QK5_1) {
        float min, max;
        min_max(src, QK5_1, &min, &max);
        float d = (max - min) / 31;
        float id = d ? 1.0f / d : 0.0f;
        b[i].d = F2H(d);
        b[i].m = F2H(min);
        uint32_t qh = 0;
        for (int j = 0; j < QK5_1 / 2; j++) {
            /* ggml does not clamp here: (x - min) * id + 0.5 < 31.5 + rounding */
            uint8_t lo = trunc_clamp((src[j] - min) * id + 0.5f, 31);
            uint8_t hi = trunc_clamp((src[j + QK5_1 / 2] - min) * id + 0.5f, 31);
            pack_q5_pair(b[i].qs, &qh, j, lo, hi);
        }
        store_u32(b[i].qh, qh);
    }
}

void llm_vec_dot_q5_1_scalar(int64_t n, float *s, const void *w, const void *act)
{
    const block_q5_1 *x = w;
    const block_q8_1 *y = act;
    float sum = 0;
    for (int64_t i = 0; i < n / QK5_1; i++) {
        uint32_t qh = load_u32(x[i].qh);
        int sumi = 0;
        for (int j = 0; j < QK5_1; j++)
            sumi += q5_value(x[i].qs, qh, j) * y[i].qs[j];
        sum += (H2F(x[i].d) * H2F(y[i].d)) * (float)sumi + H2F(x[i].m) * H2F(y[i].s);
    }
    *s = sum;
}

/* ---- Q8_0 / Q8_1 -------------------------------------------------------------------------- */

static float absmax(const float *x, int n)
{
    float amax = 0;
    for (int j = 0; j < n; j++)
        amax = fmaxf(amax, fabsf(x[j]));
    return amax;
}

/* Q8_0 and Q8_1 blocks hold the same 32 quants times d (Q8_1 adds a sum the dequant ignores). */
_Static_assert(QK8_0 == QK8_1, "Q8_0 and Q8_1 share the block dequantization");
static void dequant_q8_block(const int8_t qs[QK8_0], float d, float *dst)
{
    for (int j = 0; j < QK8_0; j++)
        dst[j] = qs[j] * d;
}

void llm_dequant_q8_0_scalar(const void *src, float *dst, int64_t n)
{
    const block_q8_0 *b = src;
    for (int64_t i = 0; i < n / QK8_0; i++, dst += QK8_0)
        dequant_q8_block(b[i].qs, H2F(b[i].d), dst);
}

/* ggml's quantize_row_q8_0_ref: id = 1/d, roundf (half away from zero). */
void llm_quant_q8_0_ref(const float *src, void *dst, int64_t n)
{
    block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / QK8_0; i++, src += QK8_0) {
        float d = absmax(src, QK8_0) / 127;
        float id = d ? 1.0f / d : 0.0f;
        b[i].d = F2H(d);
        for (int j = 0; j < QK8_0; j++)
            b[i].qs[j] = round_i8(src[j] * id);
    }
}

void llm_vec_dot_q8_0_scalar(int64_t n, float *s, const void *w, const void *act)
{
    const block_q8_0 *x = w;
    const block_q8_0 *y = act;
    float sum = 0;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        int sumi = 0;
        for (int j = 0; j < QK8_0; j++)
            sumi += x[i].qs[j] * y[i].qs[j];
        sum += (float)sumi * (H2F(x[i].d) * H2F(y[i].d));
    }
    *s = sum;
}

/* One activation block as ggml's AVX2 quantize_row_q8_0 makes it; returns sum of quants. */
static int act_q8_block(const float *x, llm_half *dh, int8_t *qs, float *d_out)
{
    float amax = absmax(x, QK8_0);
    float d = amax / 127.f;
    float id = amax != 0.0f ? 127.f / amax : 0.0f;
    int sum = 0;
    *dh = F2H(d);
    *d_out = d;
    for (int j = 0; j < QK8_0; j++) {
        qs[j] = (int8_t)llm_nearest_int(x[j] * id); /* half to even, like _mm256_round_ps */
        sum += qs[j];
    }
    return sum;
}

void llm_act_q8_0_scalar(const float *x, void *dst, int64_t n)
{
    block_q8_0 *b = dst;
    float d;
    for (int64_t i = 0; i < n / QK8_0; i++)
        act_q8_block(x + i * QK8_0, &b[i].d, b[i].qs, &d);
}

void llm_act_q8_1_scalar(const float *x, void *dst, int64_t n)
{
    block_q8_1 *b = dst;
    float d;
    for (int64_t i = 0; i < n / QK8_1; i++) {
        int sum = act_q8_block(x + i * QK8_1, &b[i].d, b[i].qs, &d);
        b[i].s = F2H(d * (float)sum);
    }
}

void llm_dequant_q8_1_scalar(const void *src, float *dst, int64_t n)
{
    const block_q8_1 *b = src;
    for (int64_t i = 0; i < n / QK8_1; i++, dst += QK8_1)
        dequant_q8_block(b[i].qs, H2F(b[i].d), dst);
}

/* ggml's quantize_row_q8_1_ref. */
void llm_quant_q8_1_ref(const float *src, void *dst, int64_t n)
{
    block_q8_1 *b = dst;
    for (int64_t i = 0; i < n / QK8_1; i++, src += QK8_1) {
        float d = absmax(src, QK8_1) / 127;
        float id = d ? 1.0f / d : 0.0f;
        int sum = 0;
        b[i].d = F2H(d);
        for (int j = 0; j < QK8_1; j++) {
            b[i].qs[j] = round_i8(src[j] * id);
            sum += b[i].qs[j];
        }
        b[i].s = F2H((float)sum * d);
    }
}
