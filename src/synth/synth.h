/*
 * synth — producing model files: re-quantizing an existing GGUF (llmap quantize) and
 * generating seeded random models of real shapes (llmap synth) for tests and benchmarks.
 *
 * Both stream tensor by tensor through the GGUF writer's fill callback, so memory stays
 * bounded by the largest single tensor whatever the size of the model.
 */
#ifndef LLMAP_SYNTH_H
#define LLMAP_SYNTH_H

#include <stdbool.h>
#include <stdint.h>

#include "gguf/types.h"
#include "kernels/kernels.h"
#include "util/util.h"

/* ---- quantize ------------------------------------------------------------------------------ */

/* A target of `llmap quantize`: one weight type for every matrix, or a llama.cpp-style mix. */
typedef enum llm_quant_preset {
    LLM_QUANT_PURE = 0, /* every 2-D tensor becomes `type` */
    LLM_QUANT_Q4_K_M,   /* Q4_K, with Q6_K where llama.cpp's Q4_K_M puts it */
} llm_quant_preset;

typedef struct llm_quant_target {
    llm_quant_preset preset;
    llm_type type; /* the base type (Q4_K for Q4_K_M) */
    uint32_t file_type; /* general.file_type (llama_ftype numbering) */
} llm_quant_target;

/* Parses "q4_0", "F16", "q4_k_m", ...; -1 with err when the name is unknown or llmap cannot
 * produce the type. */
int llm_quant_target_parse(const char *name, llm_quant_target *out, llm_err *err);

/* The type a tensor gets under target: n_dims/ne0 are its shape, layer its block index
 * (-1 for tensors outside the blocks), n_layer the block count, has_output whether the
 * model has a separate output.weight (otherwise token_embd doubles as the output). */
llm_type llm_quant_tensor_type(const llm_quant_target *target, const char *name, uint32_t n_dims,
                               int64_t ne0, int layer, int n_layer, bool has_output);

/* The general.file_type of a file whose matrices are all of type t (llama_ftype numbering). */
uint32_t llm_file_type_of(llm_type t);

typedef struct llm_quantize_opts {
    int n_threads;  /* <= 0: all CPUs */
    bool progress;  /* one status line per tensor on stderr */
} llm_quantize_opts;

/* Re-quantizes every matrix of in_path into out_path; 1-D tensors (norms, biases) become F32,
 * integer tensors are copied unchanged, all metadata is copied with general.file_type updated.
 * Returns 0, or -1 with err (e.g. a row length that is not a multiple of the block size). */
int llm_quantize_file(const char *in_path, const char *out_path, const llm_quant_target *target,
                      const llm_quantize_opts *opts, llm_err *err);

/* ---- synthetic models ---------------------------------------------------------------------- */

typedef struct llm_synth_shape {
    const char *arch;  /* "llama", "qwen2", "qwen3", "gemma" or "phi3" (decides the tensor set) */
    uint32_t n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx;
    uint32_t head_dim; /* 0: n_embd / n_head; otherwise written as attention.key_length */
    uint32_t n_vocab;  /* 0: the vocabulary file's token count */
    float rope_base;
    bool tied_output;  /* no output.weight: token_embd is the output projection */
    bool qkv_bias;
} llm_synth_shape;

/* Fills shape with a named preset ("tiny", "1.1b", "3b", "8b") for arch; -1 when unknown.
 * qwen3, gemma and phi3 take the llama dimensions plus what distinguishes them (tied output,
 * RoPE base, and for "tiny" a head_dim that differs from n_embd / n_head where the real
 * models' does). */
int llm_synth_preset(const char *preset, const char *arch, llm_synth_shape *shape, llm_err *err);

typedef struct llm_synth_opts {
    llm_synth_shape shape;
    llm_quant_target target; /* weight types */
    uint64_t seed;
    const char *vocab_path;  /* GGUF whose tokenizer.* metadata is copied; required */
    const char *name;        /* general.name; NULL: "synth-<arch>" */
    int n_threads;
    bool progress;
} llm_synth_opts;

int llm_synth_write(const char *out_path, const llm_synth_opts *opts, llm_err *err);

/* Writes a small built-in SentencePiece vocabulary (byte fallback + printable ASCII) as a
 * tensor-less GGUF at path, for synthetic models made where no vocabulary file is available. */
int llm_synth_builtin_vocab(const char *path, llm_err *err);

#endif
