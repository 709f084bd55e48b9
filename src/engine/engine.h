/*
 * engine — the implementation side of include/llmap.h: what a loaded model and a session
 * are made of. Only the engine's own files and its tests look inside these structs; every
 * other module uses the opaque public API.
 *
 * A model bundles the weights (src/model), the vocabulary (src/text) and the chat template;
 * it is immutable after loading, which is what lets many sessions in many threads share it.
 * A session owns everything that changes while generating: the forward-pass context with its
 * KV cache, a mirror of the tokens in that cache (to find the prefix a new prompt shares with
 * the conversation so far), the logits row, the sampler and the stop-string matcher.
 */
#ifndef LLMAP_ENGINE_H
#define LLMAP_ENGINE_H

#include <stdatomic.h>

#include "llmap.h"
#include "model/model.h"
#include "sample/sample.h"
#include "text/text.h"

struct llmap_model {
    llm_model m;
    llm_vocab *vocab;
    char *chat_template;   /* tokenizer.chat_template, NULL when absent */
    char *name;            /* general.name, else the file name */
    char *bos_text, *eos_text; /* texts of the BOS/EOS tokens for the template ("" when none) */
    llmap_load_opts opts;
    double load_seconds;
    llm_populate *populate; /* cold load: the file read in behind loading (load.c), NULL when none */
};

struct llmap_session {
    llmap_model *model;
    llm_ctx *ctx;
    int n_ctx, n_batch;
    bool context_shift;
    atomic_int cancel;    /* llmap_session_cancel: checked between tokens and prompt batches */
    int32_t *hist;        /* hist[0..n_hist) are the tokens in the KV cache, in order */
    size_t n_hist, cap_hist;
    float *logits;        /* n_vocab: the prediction after the last evaluated token */
    llm_sampler *sampler;
    llm_stopper stopper;
    llm_buf piece;        /* detokenizer output for one token */
    llm_thrash thrash;    /* paging watch over generated tokens (warns once) */
};

/* Tokens of prompt as llmap_generate evaluates them: special tokens parsed, BOS prepended
 * when the vocabulary asks for it and the text does not already begin with it. *ids is
 * malloc'd. */
int llm_engine_tokenize(const llmap_model *m, const char *prompt, int32_t **ids, size_t *n, llm_err *err);

#endif
