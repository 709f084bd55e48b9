/*
 * model — transformer architectures, their weights bound in place from the mapped GGUF file,
 * the KV cache and the forward pass.
 *
 * llm_model is the read-only part: hyper-parameters from the metadata and, per layer, views
 * (llm_matrix / float pointers) straight into the mapping — weight tensors are never copied in
 * the default mode, so a model costs page cache, not heap. Any number of llm_ctx share one model.
 *
 * llm_ctx is the mutable part of one sequence: KV cache (F32 or F16), scratch buffers sized
 * once for the largest batch, and the thread pool the matrix multiplications run on. Nothing is
 * allocated during a forward pass.
 *
 * The computation follows llama.cpp's graph for these architectures op for op (RMSNorm with a
 * double accumulator, RoPE angles by repeated multiplication, soft-max with the scale applied
 * before the mask, activations quantized to the weights' vec-dot type by the kernels), so
 * quantized files reproduce llama.cpp's "native" logits closely and F32 files its F32 logits.
 *
 * Supported: llama (also Mistral/TinyLlama; RoPE on adjacent pairs), qwen2 (RoPE NeoX, q/k/v
 * biases), qwen3 (RoPE NeoX, per-head q/k RMSNorm), gemma (v1: embeddings scaled by
 * sqrt(n_embd), GELU-gated FFN, always-tied output, head_dim from key_length), phi3 (fused QKV
 * and gate+up tensors, bound as row views of the fused matrix). Output projection tied to
 * token_embd when output.weight is absent.
 */
#ifndef LLMAP_MODEL_H
#define LLMAP_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "kernels/kernels.h"
#include "mem/mem.h"
#include "util/util.h"

typedef enum llm_arch {
    LLM_ARCH_LLAMA = 0, /* llama, mistral */
    LLM_ARCH_QWEN2,
    LLM_ARCH_QWEN3,
    LLM_ARCH_GEMMA,
    LLM_ARCH_PHI3,
} llm_arch;

/* The gating activation of the feed-forward block: act(gate) * up. */
typedef enum llm_ffn_act {
    LLM_FFN_SILU = 0, /* SwiGLU (llama, qwen, phi3) */
    LLM_FFN_GELU,     /* GEGLU, tanh approximation (gemma) */
} llm_ffn_act;

typedef struct llm_hparams {
    llm_arch arch;
    char arch_name[32];     /* general.architecture as written in the file */
    uint32_t n_vocab;       /* rows of token_embd */
    uint32_t n_ctx_train;   /* {arch}.context_length */
    uint32_t n_embd;        /* {arch}.embedding_length */
    uint32_t n_layer;       /* {arch}.block_count */
    uint32_t n_head;        /* {arch}.attention.head_count */
    uint32_t n_head_kv;     /* {arch}.attention.head_count_kv (default n_head) */
    uint32_t head_dim;      /* {arch}.attention.key_length (default n_embd / n_head) */
    uint32_t n_ff;          /* {arch}.feed_forward_length */
    uint32_t n_rot;         /* {arch}.rope.dimension_count (default head_dim): rotated dims per head */
    float rope_base;        /* {arch}.rope.freq_base (default 10000) */
    float rope_freq_scale;  /* 1 / {arch}.rope.scaling.factor for linear scaling, else 1 */
    bool rope_neox;         /* pairs (i, i + n_rot/2) instead of (2i, 2i+1) */
    float norm_eps;         /* {arch}.attention.layer_norm_rms_epsilon (default 1e-5) */
    float embd_scale;       /* token embeddings are multiplied by this (gemma: sqrt(n_embd), else 1) */
    bool q_prescale;        /* Q is scaled by 1/sqrt(head_dim) before Q.K (gemma, phi3), not the scores */
    llm_ffn_act ffn_act;
} llm_hparams;

/* Derived sizes. */
static inline uint32_t llm_hp_q_dim(const llm_hparams *hp) { return hp->n_head * hp->head_dim; }
static inline uint32_t llm_hp_kv_dim(const llm_hparams *hp) { return hp->n_head_kv * hp->head_dim; }

/* One transformer block. Matrices are y = W x with W->cols = input size (GGUF ne0). Float
 * vectors point into the mapping when the file stores them as F32 (always, in practice), else
 * into a small converted copy owned by the model. Optional tensors are NULL. A fused tensor
 * (phi3's attn_qkv, its ffn_up holding gate then up) is bound as consecutive row ranges: each
 * output row of a matrix product depends only on its weight row, so the views compute exactly
 * what the fused product would. */
typedef struct llm_layer {
    const float *attn_norm;             /* [n_embd] */
    llm_matrix wq, wk, wv, wo;          /* [q_dim x n_embd], [kv_dim x n_embd] x2, [n_embd x q_dim] */
    const float *bq, *bk, *bv;          /* qwen2 biases: [q_dim], [kv_dim], [kv_dim] */
    const float *q_norm, *k_norm;       /* qwen3 per-head RMSNorm weights: [head_dim] */
    const float *ffn_norm;              /* [n_embd] */
    llm_matrix w_gate, w_up, w_down;    /* [n_ff x n_embd] x2, [n_embd x n_ff] */
} llm_layer;

typedef struct llm_model {
    llm_map map;          /* the file's bytes (mapping, or a read copy with --no-mmap) */
    gguf_file gguf;       /* parsed metadata and tensor directory, pointing into map */
    llm_hparams hp;
    llm_matrix token_embd; /* [n_vocab x n_embd]; rows dequantized on lookup */
    llm_matrix output;     /* [n_vocab x n_embd]; == token_embd when tied */
    bool tied_output;
    const float *output_norm;
    llm_layer *layers;     /* n_layer entries */
    uint64_t n_params;     /* elements of all tensors */
    uint64_t weight_bytes; /* bytes of all tensors (what one token reads, roughly) */
    uint16_t *gelu_f16;    /* GELU-gated models: GELU of every F16 input, as F16 (ggml's table); else NULL */
    float **owned;         /* converted norm/bias vectors (file had them non-F32 or unaligned) */
    int n_owned;
    llm_stream *stream;    /* layer-ahead streaming when the model does not fit (NULL: plain mapping) */
} llm_model;

/* Maps (or reads, per o; NULL = default mmap) the file, parses it, checks the architecture,
 * reads the hyper-parameters and binds every tensor, checking its shape and type; a problem is
 * an error naming the file and the tensor or key. The vocabulary is not loaded here (see
 * src/text; it reads m->gguf). On failure *m is left empty and llm_model_free is still safe. */
int llm_model_load(llm_model *m, const char *path, const llm_map_opts *o, llm_err *err);
void llm_model_free(llm_model *m);

/* Streams the weights through `budget` bytes of memory (see mem.h): hot tensors and leading
 * layers stay resident, the rest is prefetched ahead of use and released behind. Call before
 * any context runs; the forward pass then drives it layer by layer. */
int llm_model_stream(llm_model *m, uint64_t budget, llm_err *err);

/* Reads hyper-parameters only (used by llm_model_load; exposed for tools and tests). */
int llm_hparams_read(const gguf_file *f, llm_hparams *hp, llm_err *err);

/* ---- context: KV cache + scratch + threads ----------------------------------------------- */

typedef struct llm_ctx llm_ctx;

typedef struct llm_ctx_opts {
    int n_ctx;             /* KV cache length in tokens; <= 0: min(4096, n_ctx_train) */
    int n_batch;           /* most tokens per internal batch; <= 0: 512 (longer inputs are split) */
    bool kv_f16;           /* KV cache in F16 (default F32, like the references) */
    int n_threads;         /* for the context's own pool when pool is NULL; <= 0: one per CPU */
    llm_pool *pool;        /* shared pool (not owned; one forward pass at a time), or NULL to create one */
    const llm_kernels *kernels; /* NULL: llm_kernels_best() */
} llm_ctx_opts;

void llm_ctx_opts_default(llm_ctx_opts *o);
/* NULL with err when the buffers cannot be allocated. */
llm_ctx *llm_ctx_new(const llm_model *m, const llm_ctx_opts *o, llm_err *err);
void llm_ctx_free(llm_ctx *c);

int llm_ctx_n_ctx(const llm_ctx *c);
/* Tokens in the KV cache = position of the next token. */
int llm_ctx_n_past(const llm_ctx *c);
const llm_model *llm_ctx_model(const llm_ctx *c);

/* Evaluates tokens[0..n) at positions n_past .. n_past+n-1 and appends them to the KV cache
 * (inputs longer than n_batch are processed in several batches). logits receives n_vocab floats
 * for the last token, or n * n_vocab (token-major) when all_logits; logits may be NULL to only
 * fill the cache. Fails (cache unchanged) when a token id is out of range or the cache would
 * overflow; fails after the fact when the model file turned unreadable (llm_map_check). */
int llm_forward(llm_ctx *c, const int32_t *tokens, int n, float *logits, bool all_logits, llm_err *err);

/* Forgets everything after the first n_keep tokens (prefix reuse). n_keep > n_past is clamped. */
void llm_ctx_kv_truncate(llm_ctx *c, int n_keep);
/* Context shift: drops n_discard tokens after the first n_keep, moving the rest down and
 * re-rotating their keys so positions stay contiguous (as llama.cpp's context shift does).
 * Returns -1 when the range is invalid. */
int llm_ctx_kv_shift(llm_ctx *c, int n_keep, int n_discard, llm_err *err);

/* Bytes the context allocated (KV cache + scratch), for reporting. */
size_t llm_ctx_bytes(const llm_ctx *c);

#endif
