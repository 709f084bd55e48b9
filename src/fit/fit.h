/*
 * fit — will a model run here (or on a machine you don't have), and how fast?
 *
 * Answered before loading anything but the metadata: the memory the process will need (weights,
 * KV cache for the context, compute buffers, vocabulary, the process itself) against the memory
 * it may use (MemAvailable, swap, the cgroup limit; unified memory and the GPU working set on
 * Apple Silicon), then a verdict and a predicted generation speed from the roofline: every
 * generated token reads every weight once, so tokens/s ≈ achieved bandwidth ÷ bytes per token,
 * and the part that cannot stay resident comes from disk at disk speed each token.
 *
 * The machine's figures (memory bandwidth, the share of it our kernels achieve, disk read
 * bandwidth) come from a profile that `llmap bench` measures and caches; without one, fit runs a
 * quick bandwidth probe and says so.
 */
#ifndef LLMAP_FIT_H
#define LLMAP_FIT_H

#include <stdbool.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "util/util.h"

/* A machine to predict for: this one (measured) or one from the table of known hardware. */
typedef struct llm_machine {
    const char *id;          /* "this", "m2-pro-32", "rtx-4090", ... */
    const char *desc;
    uint64_t mem_bytes;      /* RAM, unified memory, or VRAM */
    uint64_t usable_bytes;   /* what a model may use (available RAM; GPU working set; VRAM) */
    double bw_bytes_s;       /* memory bandwidth */
    double efficiency;       /* share of bw a well-written runtime reaches for generation */
    double disk_bytes_s;     /* for paging; 0 = not applicable (VRAM: no paging) */
    bool measured;           /* figures measured on this machine rather than from a table */
    double forward_factor;   /* whole forward pass vs its matrix x vector kernels alone (attention,
                              * norms, synchronisation), measured by `llmap bench MODEL`; 0 = 1 */
    float forward_by_type[LLM_TYPE_COUNT]; /* the same for models whose weights are mostly of one type
                                            * (the last bench of such a model); 0 = forward_factor */
    float eff_by_type[LLM_TYPE_COUNT]; /* matrix x vector share of bandwidth per weight type, 0 = unknown
                                        * (measured by `llmap bench kernels`; else `efficiency`) */
    double attn_efficiency;  /* share of bw at which a generated token's attention goes through the KV
                              * cache, measured by `llmap bench MODEL --depth D`; 0 = the default */
    const char *source;      /* where the table's figures come from */
} llm_machine;

/* Known hardware, NULL-id terminated. */
const llm_machine *llm_machine_table(void);
const llm_machine *llm_machine_find(const char *id);

/* Figures of this machine: the cached profile when present, else a quick probe (~0.3 s). */
void llm_machine_this(llm_machine *m, bool *from_cache);
/* Stores measured figures (by `llmap bench`) for later `fit` runs, merged into the profile:
 * fields <= 0 and types with ratio 0 are left as they were. */
int llm_machine_save(double bw_bytes_s, double efficiency, double disk_bytes_s, llm_err *err);
/* Saves the factor as the general one and as the one of models mostly of main_type
 * (gguf_dominant_type; < 0: none). */
int llm_machine_save_forward_factor(double factor, int main_type, llm_err *err);
int llm_machine_save_kernels(double bw_bytes_s, const float ratio_by_type[LLM_TYPE_COUNT], llm_err *err);
int llm_machine_save_attn_efficiency(double efficiency, llm_err *err);


typedef enum llm_fit_verdict {
    LLM_FIT_RESIDENT,  /* everything stays in memory */
    LLM_FIT_PAGING,    /* runs, but part of the weights is re-read from disk every token */
    LLM_FIT_NO,        /* not even the non-weight memory fits */
} llm_fit_verdict;

typedef struct llm_fit_opts {
    int n_ctx;       /* <= 0: min(4096, trained context) as the engine does */
    bool kv_f16;
    int n_threads;   /* <= 0: online CPUs */
    int n_batch;     /* <= 0: 512 */
} llm_fit_opts;

typedef struct llm_fit {
    /* needs */
    uint64_t weight_bytes, kv_bytes, compute_bytes, vocab_bytes, base_bytes, total_bytes;
    uint64_t bytes_per_token; /* weights read to generate one token */
    uint64_t hot_bytes;       /* tensors to keep resident even when streaming (embeddings, output, norms) */
    int n_ctx;
    /* has */
    uint64_t usable_bytes;
    /* verdict and prediction */
    llm_fit_verdict verdict;
    double resident_fraction; /* of the weights */
    double tok_s;             /* predicted generation speed */
    double tok_s_resident;    /* the speed if everything were resident, at an empty context */
    double tok_s_full_ctx;    /* the same with all n_ctx positions in the KV cache (each token reads it) */
    const char *mode;         /* load mode the engine would pick: "mmap" or "stream" */
} llm_fit;

/* Estimates for the parsed file f on machine mc. */
int llm_fit_estimate(const gguf_file *f, const llm_fit_opts *o, const llm_machine *mc, llm_fit *out, llm_err *err);
const char *llm_fit_verdict_name(llm_fit_verdict v);

#endif
