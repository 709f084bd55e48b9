/*
 * kernels — the arithmetic on weights: block-quantized formats, dot products, matrix
 * multiplication, and the thread pool that runs them.
 *
 * Every format has a scalar reference (dequantize, quantize, dot) that is the arbiter; SIMD
 * versions (AVX2+FMA+F16C today, NEON later) are checked against it. Which implementation
 * runs is decided once at start-up from the CPU's features (LLMAP_NO_SIMD=1 forces the scalar
 * path) and is hidden behind llm_kernels, the backend seam: callers never name an ISA.
 *
 * As in ggml, a quantized weight row is multiplied with the activations quantized to a
 * matching "vec dot type" (Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1, Q8_K for the
 * K-quants, F16 for F16, BF16 for BF16, F32 for F32), so the inner loop is integer.
 */
#ifndef LLMAP_KERNELS_H
#define LLMAP_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf/types.h"

/* ---- half precision ---------------------------------------------------------------------- */
float llm_fp16_to_fp32(uint16_t h);
uint16_t llm_fp32_to_fp16(float f); /* round to nearest even */
float llm_bf16_to_fp32(uint16_t h);
uint16_t llm_fp32_to_bf16(float f); /* round to nearest even */

/* ---- formats (scalar reference) ---------------------------------------------------------- */
/* n must be a multiple of the type's block size. */
void llm_dequantize_row(llm_type t, const void *src, float *dst, int64_t n);
/* Reference quantization; returns 0, or -1 when t cannot be produced by llmap. */
int llm_quantize_row(llm_type t, const float *src, void *dst, int64_t n);
bool llm_type_can_quantize(llm_type t);
/* Activation format that weight rows of type t are multiplied with. */
llm_type llm_vec_dot_type(llm_type t);

/* ---- backend seam -------------------------------------------------------------------------- */
/* s = dot(weight row of type t, activation row of type llm_vec_dot_type(t)), n elements. */
typedef void (*llm_vec_dot_fn)(int64_t n, float *s, const void *w, const void *act);
/* Converts an f32 activation row to the vec dot type. */
typedef void (*llm_quantize_act_fn)(const float *x, void *dst, int64_t n);
/* Optional: s[k] = dot(weight row at w + k * w_stride, act) for k < 4, each bit-identical to
 * vec_dot on that row (same operations in the same order), so callers may mix the two freely.
 * Sharing the activation work across four rows is what it is for. */
typedef void (*llm_vec_dot4_fn)(int64_t n, float s[4], const void *w, size_t w_stride, const void *act);
/* Optional: s[k] = dot(weight row at w + k * w_stride, act) for k < nr, each bit-identical to
 * vec_dot, for kernels whose activation-side work is worth doing once per run of rows rather
 * than once per four (matmul's one-token path prefers it to vec_dot4). */
typedef void (*llm_vec_dot_rows_fn)(int64_t n, int64_t nr, float *s, const void *w, size_t w_stride, const void *act);

/* Optional, for prompt batches: eight weight rows interleaved so that each vector lane holds
 * one row (Q4_0: block_q4_0x8, nibbles widened to bytes; Q8_0: block_q8_0x8, each quant split
 * into two nibbles so that maddubs can take them unsigned). A batch packs its rows once, into a
 * per-thread buffer in cache -- the weights stay mapped -- and every token of the batch then
 * costs about half of what vec_dot4 costs: no unpacking, no horizontal sums per block.
 * pack8 writes rows w, w + w_stride, ..., w + 7 * w_stride (n elements each) as
 * llm_packed8_size(t, n) bytes; vec_dot8_packed gives the eight dots with each of n_act (at most
 * LLM_PACKED_MAX_ACT) activation rows: row i at act + i * act_stride, the sums of the quants of
 * its blocks (llm_act_block_sums) at act_sums + i * (n / 32), its eight results at
 * s + i * s_stride. Several rows per call let the packed rows be read once for all of them.
 * The results equal vec_dot's up to float rounding (the per-block sums are exact; they are
 * scaled and added in another order), not bit for bit, and do not depend on n_act. */
#define LLM_PACKED_MAX_ACT 4
typedef void (*llm_pack8_fn)(const void *w, size_t w_stride, void *dst, int64_t n);
typedef void (*llm_vec_dot8_packed_fn)(int64_t n, int n_act, float *s, size_t s_stride, const void *packed,
                                       const void *act, size_t act_stride, const int32_t *act_sums);

typedef struct llm_kernels {
    const char *name;                            /* "scalar", "avx2", "neon" */
    llm_vec_dot_fn vec_dot[LLM_TYPE_COUNT];      /* indexed by weight type */
    llm_quantize_act_fn quantize_act[LLM_TYPE_COUNT]; /* indexed by activation (vec dot) type */
    llm_vec_dot4_fn vec_dot4[LLM_TYPE_COUNT];    /* indexed by weight type; NULL: use vec_dot */
    llm_pack8_fn pack8[LLM_TYPE_COUNT];          /* indexed by weight type; NULL: no batch layout */
    llm_vec_dot8_packed_fn vec_dot8_packed[LLM_TYPE_COUNT];
    llm_vec_dot_rows_fn vec_dot_rows[LLM_TYPE_COUNT]; /* indexed by weight type; NULL: vec_dot4 */
} llm_kernels;

/* Bytes of eight packed rows of n elements (see llm_pack8_fn); 0 when t has no packed layout. */
size_t llm_packed8_size(llm_type t, int64_t n);
/* sums[b] = sum of the 32 quants of Q8_0 activation block b, for b < n / 32. */
void llm_act_block_sums(const void *act, int64_t n, int32_t *sums);

const llm_kernels *llm_kernels_scalar(void);
/* The best implementation for this CPU (scalar when LLMAP_NO_SIMD=1). Thread-safe. */
const llm_kernels *llm_kernels_best(void);

/* ---- thread pool --------------------------------------------------------------------------- */
typedef struct llm_pool llm_pool;

/* n_threads <= 0: one per online CPU. Threads persist until llm_pool_free. */
llm_pool *llm_pool_new(int n_threads);
void llm_pool_free(llm_pool *p);
int llm_pool_threads(const llm_pool *p);
/* Runs fn(ctx, ith, nth) on every thread (the caller is thread 0) and waits for all. */
void llm_pool_run(llm_pool *p, void (*fn)(void *ctx, int ith, int nth), void *ctx);
/* A buffer of at least `bytes` private to slot ith of a job (only fn(ctx, ith, ...) may use it),
 * kept across jobs and grown when a larger one is asked for: after the first few calls no
 * allocation happens. Contents are undefined. */
void *llm_pool_scratch(llm_pool *p, int ith, size_t bytes);

/* ---- matrix multiplication ----------------------------------------------------------------- */
/* A weight matrix as stored: rows of `cols` elements of `type`, row-major, in place (mapped). */
typedef struct llm_matrix {
    llm_type type;
    int64_t rows, cols;
    const void *data;
} llm_matrix;

/* Bytes of scratch llm_matmul needs for n_tok activation rows against W. */
size_t llm_matmul_scratch(const llm_matrix *W, int64_t n_tok);
/* y[t*W->rows + r] = dot(W row r, x[t*W->cols ...]) for t < n_tok, rows split across the pool.
 * x is F32; it is quantized into scratch first (once, shared by all threads). */
void llm_matmul(llm_pool *pool, const llm_kernels *k, const llm_matrix *W, const float *x, int64_t n_tok,
                float *y, void *scratch);

/* Up to LLM_MATMUL_MULTI_MAX matrices with the same input width times the same activations:
 * y[i] = W[i] x, as one hand-out to the pool for one token (Q, K and V; gate and up), each
 * output bit-identical to llm_matmul's. Other n_tok: one llm_matmul per matrix. scratch holds
 * llm_matmul_multi_scratch bytes. */
#define LLM_MATMUL_MULTI_MAX 4
size_t llm_matmul_multi_scratch(int n, const llm_matrix *const W[], int64_t n_tok);
void llm_matmul_multi(llm_pool *pool, const llm_kernels *k, int n, const llm_matrix *const W[], const float *x,
                      int64_t n_tok, float *const y[], void *scratch);

#endif
