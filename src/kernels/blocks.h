/*
 * blocks — the in-memory layout of every block-quantized format (bit-compatible with ggml,
 * because the bytes come straight from GGUF files) and the per-format functions that the
 * dispatch tables in dispatch.c point at. Internal to src/kernels: callers use kernels.h.
 *
 * Naming: llm_<op>_<type>_<isa>, e.g. llm_vec_dot_q4_0_scalar. Every scalar function is the
 * reference the SIMD version must agree with (tests/test_quants.c checks that).
 *
 * Multi-byte fields are little-endian in the file; like ggml we read them in place, which is
 * only correct on little-endian hosts (the only ones llmap targets).
 */
#ifndef LLMAP_KERNELS_BLOCKS_H
#define LLMAP_KERNELS_BLOCKS_H

#include <assert.h>
#include <stdint.h>

#include "kernels/kernels.h"

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK8_1 32
#define QK_K 256
#define K_SCALE_SIZE 12

typedef uint16_t llm_half; /* IEEE binary16 bits */

/* x = d * (q - 8), q a nibble; element j in the low nibble of qs[j], j+16 in the high one. */
typedef struct {
    llm_half d;
    uint8_t qs[QK4_0 / 2];
} block_q4_0;

/* x = d * q + m. */
typedef struct {
    llm_half d, m;
    uint8_t qs[QK4_1 / 2];
} block_q4_1;

/* x = d * (q - 16), q = nibble | bit j of qh << 4. */
typedef struct {
    llm_half d;
    uint8_t qh[4];
    uint8_t qs[QK5_0 / 2];
} block_q5_0;

/* x = d * q + m, q 5 bits as in q5_0. */
typedef struct {
    llm_half d, m;
    uint8_t qh[4];
    uint8_t qs[QK5_1 / 2];
} block_q5_1;

/* x = d * q. */
typedef struct {
    llm_half d;
    int8_t qs[QK8_0];
} block_q8_0;

/* Block b of eight q4_0 rows packed for batches (llm_pack8_fn): the eight scales, then for each
 * group g of four quants (elements 4g..4g+3 of the block in nibbles_32 order: low nibbles are
 * elements 0..15, high nibbles 16..31) the four quants of row 0, row 1, ..., row 7 as bytes
 * 0..15 (the stored value, q - 8 being the weight's integer). */
typedef struct {
    llm_half d[8];
    uint8_t qs[8][8][4]; /* [group][row][quant] */
} block_q4_0x8;

/* Block b of eight q8_0 rows packed for batches: the eight scales, then each quant q split into
 * two unsigned nibbles, q = 16 * (hi - 8) + lo with lo = q & 15 and hi = (q >> 4) + 8, both
 * 0..15 and grouped as in block_q4_0x8 (group g: elements 4g..4g+3 of row 0, row 1, ...).
 * Unsigned operands of at most 15 let maddubs take eight groups in i16 without overflow. */
typedef struct {
    llm_half d[8];
    uint8_t lo[8][8][4]; /* [group][row][quant] */
    uint8_t hi[8][8][4];
} block_q8_0x8;

/* Super-block b of eight q4_K rows packed for batches (packed_k_avx2.c): the scales of row r
 * in d[r], dmin[r]; sub-block j's 6-bit scale of row r in sc[j][2r] and sc[j][2r + 1], the
 * mins of sub-blocks 2p and 2p + 1 of row r in m[p][2r] and m[p][2r + 1]; quant k of group g of
 * sub-block j of row r (element 32j + 4g + k, 0..15) in qs[j][g][r][k]. */
typedef struct {
    llm_half d[8], dmin[8];
    int16_t sc[8][16];
    int16_t m[4][16];
    uint8_t qs[8][8][8][4];
} block_q4_Kx8;

/* Activation format for q4_1/q5_1: s = d * sum(qs) carries the offset term. */
typedef struct {
    llm_half d, s;
    int8_t qs[QK8_1];
} block_q8_1;

/* 16 groups of 16: x = d * (scales[g] & 15) * q - dmin * (scales[g] >> 4), q 2 bits. */
typedef struct {
    uint8_t scales[QK_K / 16];
    uint8_t qs[QK_K / 4];
    llm_half d, dmin;
} block_q2_K;

/* 16 groups of 16: x = d * (s6[g] - 32) * (q - 4), q = 2 low bits | high bit from hmask,
 * stored inverted (bit set = no subtraction). 6-bit scales packed into 12 bytes. */
typedef struct {
    uint8_t hmask[QK_K / 8];
    uint8_t qs[QK_K / 4];
    uint8_t scales[12];
    llm_half d;
} block_q3_K;

/* 8 groups of 32: x = d * sc[g] * q - dmin * m[g], q 4 bits, sc/m 6 bits packed in 12 bytes. */
typedef struct {
    llm_half d, dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qs[QK_K / 2];
} block_q4_K;

/* As q4_K with a fifth bit per element in qh. */
typedef struct {
    llm_half d, dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
} block_q5_K;

/* 16 groups of 16: x = d * scales[g] * (q - 32), q = 4 bits of ql | 2 bits of qh << 4. */
typedef struct {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    llm_half d;
} block_q6_K;

/* Activation format for the K-quants: f32 scale, and the sums of each group of 16 quants
 * so the min/offset terms of the weights cost one multiply per group. */
typedef struct {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];
} block_q8_K;

static_assert(sizeof(block_q4_0) == 18, "q4_0 block size");
static_assert(sizeof(block_q4_0x8) == 272, "packed q4_0 block size");
static_assert(sizeof(block_q8_0x8) == 528, "packed q8_0 block size");
static_assert(sizeof(block_q4_Kx8) == 2464, "packed q4_K block size");
static_assert(sizeof(block_q4_1) == 20, "q4_1 block size");
static_assert(sizeof(block_q5_0) == 22, "q5_0 block size");
static_assert(sizeof(block_q5_1) == 24, "q5_1 block size");
static_assert(sizeof(block_q8_0) == 34, "q8_0 block size");
static_assert(sizeof(block_q8_1) == 36, "q8_1 block size");
static_assert(sizeof(block_q2_K) == 84, "q2_K block size");
static_assert(sizeof(block_q3_K) == 110, "q3_K block size");
static_assert(sizeof(block_q4_K) == 144, "q4_K block size");
static_assert(sizeof(block_q5_K) == 176, "q5_K block size");
static_assert(sizeof(block_q6_K) == 210, "q6_K block size");
static_assert(sizeof(block_q8_K) == 292, "q8_K block size");

/* ggml's nearest_int: round half to even via the 1.5*2^23 trick; |x| must be < 2^22. */
static inline int llm_nearest_int(float x)
{
    float v = x + 12582912.f;
    union {
        float f;
        int32_t i;
    } u = {v};
    return (u.i & 0x007fffff) - 0x00400000;
}

/* Unpacks the 6-bit scale and min of sub-block j (0..7) of a q4_K/q5_K block. */
static inline void llm_get_scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Unpacks the 16 signed 6-bit scales (already minus 32) of a q3_K block. */
static inline void llm_q3_K_scales(const uint8_t packed[12], int8_t out[16])
{
    for (int j = 0; j < 16; j++) {
        int lo = j < 8 ? packed[j] & 0xF : packed[j - 8] >> 4;
        int hi = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
        out[j] = (int8_t)((lo | (hi << 4)) - 32);
    }
}

/* ---- scalar reference (quants.c, quants_k.c, fp16.c) ---- */
#define LLM_DECLARE_FORMAT(T)                                                                          \
    void llm_dequant_##T##_scalar(const void *src, float *dst, int64_t n);                            \
    void llm_quant_##T##_ref(const float *src, void *dst, int64_t n);                                 \
    void llm_vec_dot_##T##_scalar(int64_t n, float *s, const void *w, const void *act);

LLM_DECLARE_FORMAT(f32)
LLM_DECLARE_FORMAT(f16)
LLM_DECLARE_FORMAT(bf16)
LLM_DECLARE_FORMAT(q4_0)
LLM_DECLARE_FORMAT(q4_1)
LLM_DECLARE_FORMAT(q5_0)
LLM_DECLARE_FORMAT(q5_1)
LLM_DECLARE_FORMAT(q8_0)
LLM_DECLARE_FORMAT(q2_K)
LLM_DECLARE_FORMAT(q3_K)
LLM_DECLARE_FORMAT(q4_K)
LLM_DECLARE_FORMAT(q5_K)
LLM_DECLARE_FORMAT(q6_K)

void llm_dequant_q8_1_scalar(const void *src, float *dst, int64_t n);
void llm_quant_q8_1_ref(const float *src, void *dst, int64_t n);
void llm_dequant_q8_K_scalar(const void *src, float *dst, int64_t n);
void llm_quant_q8_K_ref(const float *src, void *dst, int64_t n);

/* Activation quantizers (quantize_act). Q8_0/Q8_1 follow ggml's x86 AVX2 quantize_row_q8_0/1
 * (scale 127/amax, round half to even), not its scalar reference; see quants.c. */
void llm_act_f32_scalar(const float *x, void *dst, int64_t n);
void llm_act_f16_scalar(const float *x, void *dst, int64_t n);
void llm_act_bf16_scalar(const float *x, void *dst, int64_t n);
void llm_act_q8_0_scalar(const float *x, void *dst, int64_t n);
void llm_act_q8_1_scalar(const float *x, void *dst, int64_t n);
void llm_act_q8_K_scalar(const float *x, void *dst, int64_t n);

/* ---- AVX2 + FMA + F16C (quants_avx2.c); only called when the CPU has them ---- */
void llm_vec_dot_f32_avx2(int64_t n, float *s, const void *w, const void *act);
void llm_vec_dot_f16_avx2(int64_t n, float *s, const void *w, const void *act);
void llm_vec_dot_bf16_avx2(int64_t n, float *s, const void *w, const void *act);
void llm_vec_dot_q4_0_avx2(int64_t n, float *s, const void *w, const void *act);
void llm_vec_dot4_q4_0_avx2(int64_t n, float s[4], const void *w, size_t w_stride, const void *act);
void llm_vec_dot_rows_q4_0_avx2(int64_t n, int64_t nr, float *s, const void *w, size_t w_stride, const void *act);
void llm_pack8_q4_0_avx2(const void *w, size_t w_stride, void *dst, int64_t n);
void llm_vec_dot8_packed_q4_0_avx2(int64_t n, int n_act, float *s, size_t s_stride, const void *packed, const void *act,
                                   size_t act_stride, const int32_t *act_sums);
void llm_pack8_q8_0_avx2(const void *w, size_t w_stride, void *dst, int64_t n);
void llm_vec_dot8_packed_q8_0_avx2(int64_t n, int n_act, float *s, size_t s_stride, const void *packed, const void *act,
                                   size_t act_stride, const int32_t *act_sums);
void llm_pack8_q4_K_avx2(const void *w, size_t w_stride, void *dst, int64_t n);
void llm_vec_dot8_packed_q4_K_avx2(int64_t n, int n_act, float *s, size_t s_stride, const void *packed, const void *act,
                                   size_t act_stride, const int32_t *act_sums);
void llm_vec_dot_q4_1_avx2(int64_t n, float *s, const void *w, const void *act);
void llm_vec_dot_q5_0_avx2(int64_t n, float *s, const void *w, const void *act);
void llm_vec_dot_q5_1_avx2(int64_t n, float *s, const void *w, const void *act);
void llm_vec_dot_q8_0_avx2(int64_t n, float *s, const void *w, const void *act);
void llm_vec_dot4_q8_0_avx2(int64_t n, float s[4], const void *w, size_t w_stride, const void *act);
void llm_vec_dot_q2_K_avx2(int64_t n, float *s, const void *w, const void *act);
void llm_vec_dot_q3_K_avx2(int64_t n, float *s, const void *w, const void *act);
void llm_vec_dot_q4_K_avx2(int64_t n, float *s, const void *w, const void *act);
void llm_vec_dot4_q4_K_avx2(int64_t n, float s[4], const void *w, size_t w_stride, const void *act);
void llm_vec_dot_q5_K_avx2(int64_t n, float *s, const void *w, const void *act);
void llm_vec_dot_q6_K_avx2(int64_t n, float *s, const void *w, const void *act);
void llm_act_f16_avx2(const float *x, void *dst, int64_t n);
void llm_act_q8_0_avx2(const float *x, void *dst, int64_t n);
void llm_act_q8_1_avx2(const float *x, void *dst, int64_t n);
void llm_act_q8_K_avx2(const float *x, void *dst, int64_t n);

#endif
