/*
 * ops — the element-wise and attention arithmetic of the forward pass (internal to
 * src/model). Each op reproduces the corresponding ggml CPU op's order of operations
 * (accumulator widths, where the scale is applied) so results track llama.cpp's closely; the
 * heavy inner products go through the kernels' dispatch table, which is where SIMD lives.
 */
#ifndef LLMAP_MODEL_OPS_H
#define LLMAP_MODEL_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"

/* out = x / sqrt(mean(x^2) + eps) * w (w may be NULL); out may alias x. Sum in double, as ggml. */
void llm_op_rmsnorm(float *out, const float *x, const float *w, int n, float eps);

/* RoPE angle table for position pos: cs[2i] = cos, cs[2i+1] = sin of
 * pos * freq_scale * base^(-2i/n_rot), i < n_rot/2, angles built by repeated multiplication
 * like ggml_rope_cache_init. */
void llm_op_rope_cache(float *cs, float pos, int n_rot, float base, float freq_scale);
/* Rotates the first n_rot dims of one head vector x[head_dim] in place with a cache from
 * llm_op_rope_cache: pairs (2i, 2i+1) ("normal") or (i, i + n_rot/2) (NeoX). */
void llm_op_rope(float *x, const float *cs, int n_rot, bool neox);

/* In-place soft-max of s[0..n) after scaling by `scale`, sum in double (ggml_soft_max_ext). */
void llm_op_softmax(float *s, int n, float scale);

/* a[i] = silu(a[i]) * b[i], silu(x) = x / (1 + exp(-x)). */
void llm_op_swiglu(float *a, const float *b, int n);

/* AVX2+FMA versions following ggml's bit for bit (ops_avx2.c); only when the CPU has both. */
void llm_op_softmax_avx2(float *s, int n, float scale);
void llm_op_swiglu_avx2(float *a, const float *b, int n);
/* F32 dot products in ggml's summation orders: ggml_vec_dot_f32 (4 x 8 lanes per 32, reduced
 * pairwise, scalar tail) and tinyBLAS's (one 8-lane accumulator; n a multiple of 8). */
float llm_dot_f32_ggml_avx2(int n, const float *x, const float *y);
float llm_dot_f32_lanes8_avx2(int n, const float *x, const float *y);
/* Attention for nq (<= LLM_ATTN_HEADS) query heads sharing a key/value head, each x row read
 * once for all heads: out[q * out_stride + r] = llm_dot_f32_ggml_avx2(n, x + r * x_stride, y[q]),
 * bit for bit; _scores for the cached keys (rows of head_dim), _values for V^T (rows over the
 * positions). */
#define LLM_ATTN_HEADS 8
void llm_attn_scores_avx2(int n, int n_rows, const float *x, size_t x_stride, int nq, const float *const y[],
                          float *out, size_t out_stride);
void llm_attn_values_avx2(int n, int n_rows, const float *x, size_t x_stride, int nq, const float *const y[],
                          float *out, size_t out_stride);
/* _values in llm_dot_f32_lanes8_avx2's order (n a multiple of 8): a batch's weighted sums. */
void llm_attn_values_lanes8_avx2(int n, int n_rows, const float *x, size_t x_stride, int nq, const float *const y[],
                                 float *out, size_t out_stride);
/* Whether this CPU can run the *_avx2 ops. */
bool llm_ops_have_avx2(void);

/* y += x */
void llm_op_add(float *y, const float *x, int n);

#endif
