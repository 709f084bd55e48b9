/*
 * dispatch — the backend seam: which implementation of each kernel runs on this CPU.
 *
 * The tables are constant (no mutable state): llm_kernels_scalar() is the reference;
 * llm_kernels_best() asks the CPU (and LLMAP_NO_SIMD) each time it is called, which is
 * cheap and needs no locking; callers fetch it once. Formats without a SIMD kernel keep their
 * scalar entry in the AVX2 table, so every table is complete.
 *
 * This file also holds the public per-type entry points (dequantize/quantize a row, the
 * weight → activation type pairing), which are plain lookups in FORMATS.
 */
#include "kernels/blocks.h"

#include <stdlib.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#include <string.h>

typedef struct format_ops {
    void (*dequant)(const void *src, float *dst, int64_t n);
    void (*quant)(const float *src, void *dst, int64_t n);
    llm_type vec_dot_type; /* meaningful when the type has a vec_dot */
} format_ops;

static const format_ops FORMATS[LLM_TYPE_COUNT] = {
    [LLM_F32] = {llm_dequant_f32_scalar, llm_quant_f32_ref, LLM_F32},
    [LLM_F16] = {llm_dequant_f16_scalar, llm_quant_f16_ref, LLM_F16},
    [LLM_BF16] = {llm_dequant_bf16_scalar, llm_quant_bf16_ref, LLM_BF16},
    [LLM_Q4_0] = {llm_dequant_q4_0_scalar, llm_quant_q4_0_ref, LLM_Q8_0},
    [LLM_Q4_1] = {llm_dequant_q4_1_scalar, llm_quant_q4_1_ref, LLM_Q8_1},
    [LLM_Q5_0] = {llm_dequant_q5_0_scalar, llm_quant_q5_0_ref, LLM_Q8_0},
    [LLM_Q5_1] = {llm_dequant_q5_1_scalar, llm_quant_q5_1_ref, LLM_Q8_1},
    [LLM_Q8_0] = {llm_dequant_q8_0_scalar, llm_quant_q8_0_ref, LLM_Q8_0},
    [LLM_Q8_1] = {llm_dequant_q8_1_scalar, llm_quant_q8_1_ref, LLM_Q8_1},
    [LLM_Q2_K] = {llm_dequant_q2_K_scalar, llm_quant_q2_K_ref, LLM_Q8_K},
    [LLM_Q3_K] = {llm_dequant_q3_K_scalar, llm_quant_q3_K_ref, LLM_Q8_K},
    [LLM_Q4_K] = {llm_dequant_q4_K_scalar, llm_quant_q4_K_ref, LLM_Q8_K},
    [LLM_Q5_K] = {llm_dequant_q5_K_scalar, llm_quant_q5_K_ref, LLM_Q8_K},
    [LLM_Q6_K] = {llm_dequant_q6_K_scalar, llm_quant_q6_K_ref, LLM_Q8_K},
    [LLM_Q8_K] = {llm_dequant_q8_K_scalar, llm_quant_q8_K_ref, LLM_Q8_K},
};

static const format_ops *format_get(llm_type t)
{
    if ((unsigned)t >= LLM_TYPE_COUNT || !FORMATS[t].dequant)
        return NULL;
    return &FORMATS[t];
}

void llm_dequantize_row(llm_type t, const void *src, float *dst, int64_t n)
{
    const format_ops *f = format_get(t);
    if (f)
        f->dequant(src, dst, n);
    else /* callers check types at load time; leave a recognisable result, never garbage */
        memset(dst, 0, (size_t)n * sizeof *dst);
}

int llm_quantize_row(llm_type t, const float *src, void *dst, int64_t n)
{
    const format_ops *f = format_get(t);
    if (!f)
        return -1;
    f->quant(src, dst, n);
    return 0;
}

bool llm_type_can_quantize(llm_type t)
{
    return format_get(t) != NULL;
}

size_t llm_packed8_size(llm_type t, int64_t n)
{
    switch (t) {
    case LLM_Q4_0:
        return (size_t)(n / QK4_0) * sizeof(block_q4_0x8);
    case LLM_Q8_0:
        return (size_t)(n / QK8_0) * sizeof(block_q8_0x8);
    case LLM_Q4_K:
        return (size_t)(n / QK_K) * sizeof(block_q4_Kx8);
    default:
        return 0;
    }
}

void llm_act_block_sums(const void *act, int64_t n, int32_t *sums)
{
    const block_q8_0 *y = act;
    for (int64_t b = 0; b < n / QK8_0; b++) {
        int32_t s = 0;
        for (int j = 0; j < QK8_0; j++)
            s += y[b].qs[j];
        sums[b] = s;
    }
}

llm_type llm_vec_dot_type(llm_type t)
{
    const format_ops *f = format_get(t);
    return f ? f->vec_dot_type : LLM_F32;
}

static const llm_kernels SCALAR = {
    .name = "scalar",
    .vec_dot =
        {
            [LLM_F32] = llm_vec_dot_f32_scalar,
            [LLM_F16] = llm_vec_dot_f16_scalar,
            [LLM_BF16] = llm_vec_dot_bf16_scalar,
            [LLM_Q4_0] = llm_vec_dot_q4_0_scalar,
            [LLM_Q4_1] = llm_vec_dot_q4_1_scalar,
            [LLM_Q5_0] = llm_vec_dot_q5_0_scalar,
            [LLM_Q5_1] = llm_vec_dot_q5_1_scalar,
            [LLM_Q8_0] = llm_vec_dot_q8_0_scalar,
            [LLM_Q2_K] = llm_vec_dot_q2_K_scalar,
            [LLM_Q3_K] = llm_vec_dot_q3_K_scalar,
            [LLM_Q4_K] = llm_vec_dot_q4_K_scalar,
            [LLM_Q5_K] = llm_vec_dot_q5_K_scalar,
            [LLM_Q6_K] = llm_vec_dot_q6_K_scalar,
        },
    .quantize_act =
        {
            [LLM_F32] = llm_act_f32_scalar,
            [LLM_F16] = llm_act_f16_scalar,
            [LLM_BF16] = llm_act_bf16_scalar,
            [LLM_Q8_0] = llm_act_q8_0_scalar,
            [LLM_Q8_1] = llm_act_q8_1_scalar,
            [LLM_Q8_K] = llm_act_q8_K_scalar,
        },
};

const llm_kernels *llm_kernels_scalar(void)
{
    return &SCALAR;
}

#if defined(__x86_64__) || defined(__i386__)
#define LLM_HAVE_AVX2_TABLE 1
static const llm_kernels AVX2 = {
    .name = "avx2",
    .vec_dot =
        {
            [LLM_F32] = llm_vec_dot_f32_avx2,
            [LLM_F16] = llm_vec_dot_f16_avx2,
            [LLM_BF16] = llm_vec_dot_bf16_avx2,
            [LLM_Q4_0] = llm_vec_dot_q4_0_avx2,
            [LLM_Q4_1] = llm_vec_dot_q4_1_avx2,
            [LLM_Q5_0] = llm_vec_dot_q5_0_avx2,
            [LLM_Q5_1] = llm_vec_dot_q5_1_avx2,
            [LLM_Q8_0] = llm_vec_dot_q8_0_avx2,
            [LLM_Q2_K] = llm_vec_dot_q2_K_avx2,
            [LLM_Q3_K] = llm_vec_dot_q3_K_avx2,
            [LLM_Q4_K] = llm_vec_dot_q4_K_avx2,
            [LLM_Q5_K] = llm_vec_dot_q5_K_avx2,
            [LLM_Q6_K] = llm_vec_dot_q6_K_avx2,
        },
    .quantize_act =
        {
            [LLM_F32] = llm_act_f32_scalar, /* a copy; nothing to vectorize */
            [LLM_F16] = llm_act_f16_avx2,
            [LLM_BF16] = llm_act_bf16_scalar,
            [LLM_Q8_0] = llm_act_q8_0_avx2,
            [LLM_Q8_1] = llm_act_q8_1_avx2,
            [LLM_Q8_K] = llm_act_q8_K_avx2,
        },
    .vec_dot4 = {[LLM_Q4_0] = llm_vec_dot4_q4_0_avx2,
                 [LLM_Q8_0] = llm_vec_dot4_q8_0_avx2,
                 [LLM_Q4_K] = llm_vec_dot4_q4_K_avx2},
    .pack8 = {[LLM_Q4_0] = llm_pack8_q4_0_avx2, [LLM_Q8_0] = llm_pack8_q8_0_avx2, [LLM_Q4_K] = llm_pack8_q4_K_avx2},
    .vec_dot8_packed = {[LLM_Q4_0] = llm_vec_dot8_packed_q4_0_avx2, [LLM_Q8_0] = llm_vec_dot8_packed_q8_0_avx2,
                        [LLM_Q4_K] = llm_vec_dot8_packed_q4_K_avx2},
    .vec_dot_rows = {[LLM_Q4_0] = llm_vec_dot_rows_q4_0_avx2},
};

/* AVX2, FMA and F16C present and the OS saves the YMM registers. Asked with cpuid directly
 * because __builtin_cpu_supports does not know "f16c" in every compiler we build with. */
static bool cpu_has_avx2(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return false;
    const unsigned fma = 1u << 12, osxsave = 1u << 27, avx = 1u << 28, f16c = 1u << 29;
    if ((c & (fma | osxsave | avx | f16c)) != (fma | osxsave | avx | f16c))
        return false;
    unsigned xcr0_lo, xcr0_hi;
    __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    (void)xcr0_hi;
    if ((xcr0_lo & 6) != 6) /* XMM and YMM state enabled */
        return false;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return false;
    return (b & (1u << 5)) != 0; /* AVX2 */
}
#endif

static bool simd_disabled(void)
{
    const char *v = getenv("LLMAP_NO_SIMD");
    return v && *v && strcmp(v, "0") != 0;
}

const llm_kernels *llm_kernels_best(void)
{
    if (simd_disabled())
        return &SCALAR;
#ifdef LLM_HAVE_AVX2_TABLE
    if (cpu_has_avx2())
        return &AVX2;
#endif
    return &SCALAR;
}
