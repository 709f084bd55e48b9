/*
 * llmap.h — the public C API of llmap: load a GGUF model (memory-mapped), open sessions on
 * it, render chats with the model's template and generate text with streaming callbacks.
 *
 * The CLI (`llmap run`, `llmap bench`, `llmap logits`), the HTTP server and embedding programs
 * all go through this one API. A model is shared read-only by any number of sessions; a
 * session (KV cache, sampler state, scratch buffers) is used by one thread at a time.
 * Functions that can fail return 0 on success and -1 with a message in err[errlen].
 *
 * API changes (engine, 2026-11-25; all source-compatible, nothing removed or renamed):
 *  - LLMAP_SEED_RANDOM: a seed drawn from the clock; llmap_sampling_default uses it.
 *  - llmap_generate adds the chat template's end-of-turn strings (e.g. "<|im_end|>") to the
 *    stop strings, and documents the context rules (prompt too long = error; a full context
 *    ends generation, or is shifted when context_shift is set).
 *  - llmap_session_opts gains n_batch (0: 512); llmap_session_history (tokens in the cache).
 *  - llmap_session_cancel: stop a running generation from another thread or a signal handler
 *    (also during a long prompt, which is evaluated n_batch tokens at a time).
 */
#ifndef LLMAP_H
#define LLMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct llmap_model llmap_model;
typedef struct llmap_session llmap_session;

/* ---- loading ------------------------------------------------------------------------------ */

typedef enum llmap_load_mode {
    LLMAP_LOAD_AUTO = 0, /* chosen from what fits (memory intelligence) */
    LLMAP_LOAD_MMAP,     /* shared read-only mapping, paged on demand */
    LLMAP_LOAD_READ,     /* read into anonymous memory (--no-mmap) */
    LLMAP_LOAD_STREAM,   /* mapping + layer-ahead prefetch and release (larger than RAM) */
} llmap_load_mode;

typedef struct llmap_load_opts {
    llmap_load_mode mode;
    bool mlock;
    int n_threads; /* <= 0: one per core */
    bool verbose;  /* progress and warnings on stderr */
    int n_ctx;     /* context the sessions will use, for the memory plan when streaming (<= 0: default) */
} llmap_load_opts;

void llmap_load_opts_default(llmap_load_opts *o);
int llmap_model_load(const char *path, const llmap_load_opts *opts, llmap_model **out, char *err, size_t errlen);
void llmap_model_free(llmap_model *m);

typedef struct llmap_model_info {
    const char *path, *arch, *name;
    const char *chat_template; /* NULL when the file has none */
    uint64_t file_size, n_params, weight_bytes;
    uint32_t n_ctx_train, n_vocab, n_embd, n_layer, n_head, n_head_kv;
    double load_seconds;
} llmap_model_info;

void llmap_model_get_info(const llmap_model *m, llmap_model_info *info);

/* ---- chat --------------------------------------------------------------------------------- */

typedef struct llmap_chat_msg {
    const char *role;    /* "system", "user", "assistant" */
    const char *content;
} llmap_chat_msg;

/* Renders messages with the model's chat template (or a documented fallback when it has
 * none or it cannot be rendered). *out is malloc'd. */
int llmap_chat_render(const llmap_model *m, const llmap_chat_msg *msgs, size_t n, bool add_generation_prompt,
                      char **out, char *err, size_t errlen);

/* ---- sessions and generation ------------------------------------------------------------ */

typedef struct llmap_session_opts {
    int n_ctx;          /* 0: default (min(4096, trained context)) */
    bool kv_f16;        /* KV cache in F16 (default false: F32) */
    bool context_shift; /* when full, drop the oldest half of the history instead of failing */
    int n_batch;        /* most prompt tokens per forward batch; 0: 512 */
} llmap_session_opts;

int llmap_session_new(llmap_model *m, const llmap_session_opts *opts, llmap_session **out, char *err, size_t errlen);
void llmap_session_free(llmap_session *s);
/* Forgets the conversation (KV cache). */
void llmap_session_reset(llmap_session *s);
/* Asks the llmap_generate running on s to stop at the next token or prompt batch (done_reason
 * "cancel"). Safe to call from another thread or a signal handler. Each llmap_generate starts
 * uncancelled, so a cancel that arrives while none is running has no effect. */
void llmap_session_cancel(llmap_session *s);
/* The tokens in the session's cache (prompt and answer so far), valid until the next call. */
const int32_t *llmap_session_history(const llmap_session *s, size_t *n);

typedef struct llmap_sampling {
    float temperature;     /* 0: greedy */
    int top_k;             /* 0: off */
    float top_p;           /* 1: off */
    float min_p;           /* 0: off */
    float repeat_penalty;  /* 1: off */
    float frequency_penalty, presence_penalty;
    int repeat_last_n;     /* penalty window */
    uint64_t seed;         /* LLMAP_SEED_RANDOM: from the clock */
    int num_predict;       /* max new tokens; < 0: until context is full */
    const char *const *stop; /* stop strings (not included in the output) */
    int n_stop;
} llmap_sampling;

#define LLMAP_SEED_RANDOM UINT64_MAX

/* temperature 0.8, top_k 40, top_p 0.9, min_p 0, repeat_penalty 1.1 over 64 tokens, no
 * frequency/presence penalty, seed LLMAP_SEED_RANDOM, num_predict -1, no stop strings. */
void llmap_sampling_default(llmap_sampling *s);

/* Called with each piece of text as soon as it is complete UTF-8; return non-zero to stop. */
typedef int (*llmap_text_cb)(void *user, const char *text, size_t len);

typedef struct llmap_stats {
    int prompt_tokens;       /* tokens evaluated for the prompt (after reusing a cached prefix) */
    int cached_tokens;       /* prompt tokens reused from the session's cache */
    double prompt_seconds;
    int gen_tokens;
    double gen_seconds;
    double load_seconds;
    uint64_t major_faults, minor_faults, read_bytes; /* during this call */
    const char *done_reason; /* "stop" (EOS or stop string), "length", "cancel" */
} llmap_stats;

/* Generates a continuation of prompt (already templated text; special tokens in it are
 * parsed; BOS is prepended when the model asks for it and the text does not start with it).
 * The session keeps its history: a prompt that extends the previous prompt+answer reuses
 * the cached prefix (stats->cached_tokens).
 *
 * Generation ends at an end-of-generation token or stop string ("stop"; the model's
 * template end-of-turn strings are stop strings too), after num_predict tokens ("length"),
 * or when cb returns non-zero ("cancel"). Context: a prompt longer than n_ctx is an error
 * (with context_shift: its oldest tokens after BOS are dropped). When the cache fills during
 * generation: with context_shift the oldest half after BOS is dropped and generation goes
 * on; otherwise it ends with "length" when num_predict < 0, and is an error when a positive
 * num_predict cannot be reached. num_predict < 0 with context_shift stops after n_ctx
 * tokens. Returns -1 with err on failure (stats still filled as far as generation went). */
int llmap_generate(llmap_session *s, const char *prompt, const llmap_sampling *sp, llmap_text_cb cb, void *user,
                   llmap_stats *stats, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
