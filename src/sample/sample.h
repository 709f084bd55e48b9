/*
 * sample — choosing the next token from a row of logits, and ending generation at stop strings.
 *
 * The sampler follows llama.cpp's definitions of each step so that options mean what users of
 * llama.cpp and Ollama expect, applied in this order (Ollama's order: temperature before the
 * probability cut-offs, so top-p and min-p see the distribution that is actually sampled):
 *
 *   1. penalties over the last repeat_last_n tokens of the history: a token seen c > 0 times
 *      has its logit divided by repeat_penalty when positive, multiplied when <= 0, then
 *      reduced by c * frequency_penalty + presence_penalty;
 *   2. temperature <= 0: greedy (argmax, ties toward the lower id) — nothing below applies;
 *   3. top-k (k highest logits, ties toward the lower id);
 *   4. logits / temperature, softmax;
 *   5. top-p: the smallest prefix of the descending distribution whose mass reaches top_p;
 *   6. min-p: drop tokens whose probability is below min_p * the highest probability;
 *   7. a draw from what remains (renormalised) with the sampler's own PRNG (xoshiro256**,
 *      seeded with splitmix64), so a seed reproduces a sequence and no global state is used.
 *
 * A sampler owns every buffer it needs (sized for the vocabulary at creation), so sampling a
 * token allocates nothing. The building blocks are exposed for the tests.
 *
 * The stop-string matcher (llm_stopper) sits between the detokenizer and the user: text that
 * might be the beginning of a stop string is held back until the next pieces show it is not,
 * so a stop string split across tokens is still caught and never reaches the output.
 */
#ifndef LLMAP_SAMPLE_H
#define LLMAP_SAMPLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

/* The PRNG (llm_rng: seed, next, uniform) is util's, shared with synth. */

/* ---- parameters ---------------------------------------------------------------------------- */
typedef struct llm_sampler_params {
    float temperature;     /* <= 0: greedy */
    int top_k;             /* <= 0: off */
    float top_p;           /* >= 1: off */
    float min_p;           /* <= 0: off */
    float repeat_penalty;  /* 1: off */
    float frequency_penalty, presence_penalty; /* 0: off */
    int repeat_last_n;     /* penalty window in tokens; 0: penalties off; < 0: the whole history */
    uint64_t seed;
} llm_sampler_params;

/* Off everywhere except temperature 0.8, top_k 40, top_p 0.9, repeat_penalty 1.1 over 64
 * tokens (Ollama's defaults), seed 0. */
void llm_sampler_params_default(llm_sampler_params *p);

/* ---- candidates: the building blocks ------------------------------------------------------ */
typedef struct llm_cand {
    int32_t id;
    float logit;
    float p; /* probability after llm_cand_softmax */
} llm_cand;

typedef struct llm_cands {
    llm_cand *data;
    size_t n;
    bool sorted; /* descending by logit, ties by ascending id */
} llm_cands;

/* Applies the penalties to logits[0..n_vocab) for the tokens in window[0..n_window) (ids out
 * of range are ignored). counts is caller-provided scratch of n_vocab zeros, left zeroed. */
void llm_apply_penalties(float *logits, int n_vocab, const int32_t *window, size_t n_window, float repeat_penalty,
                         float frequency_penalty, float presence_penalty, uint32_t *counts);
/* Index of the largest logit, ties toward the lower id. */
int32_t llm_argmax(const float *logits, int n);
/* Keeps the k best (k >= n: sorts all); leaves the candidates sorted. */
void llm_cand_top_k(llm_cands *c, int k);
void llm_cand_sort(llm_cands *c);
/* Divides every logit by temp (> 0). */
void llm_cand_temperature(llm_cands *c, float temp);
/* Fills p with the softmax of the logits (numerically stable). */
void llm_cand_softmax(llm_cands *c);
/* After softmax: keeps the smallest descending prefix whose mass is >= top_p (at least one),
 * and renormalises. The kept candidates come first; they are sorted (and c->sorted set) unless
 * a flat distribution made sorting them all not worth it. */
void llm_cand_top_p(llm_cands *c, float top_p);
/* After softmax: keeps p >= min_p * max p (at least one), renormalises. Keeps the order. */
void llm_cand_min_p(llm_cands *c, float min_p);
/* After softmax: draws an index into c->data with probability p (which need not sum to 1). */
size_t llm_cand_draw(const llm_cands *c, llm_rng *rng);

/* ---- the sampler ---------------------------------------------------------------------------- */
typedef struct llm_sampler llm_sampler;

/* n_vocab > 0. Returns NULL with err set when the buffers cannot be allocated. */
llm_sampler *llm_sampler_new(int n_vocab, const llm_sampler_params *p, llm_err *err);
void llm_sampler_free(llm_sampler *s);
/* Replaces the parameters and reseeds the PRNG with p->seed. */
void llm_sampler_set_params(llm_sampler *s, const llm_sampler_params *p);
/* Picks the next token from logits[0..n_vocab) (not modified). history[0..n_history) are the
 * tokens so far (prompt and generated), the last repeat_last_n of which are penalised. */
int32_t llm_sampler_sample(llm_sampler *s, const float *logits, const int32_t *history, size_t n_history);

/* ---- stop strings ----------------------------------------------------------------------------- */
typedef struct llm_stopper {
    char **stops;
    size_t n_stops;
    size_t max_len;
    llm_buf pending; /* text held back: it may be the start of a stop string */
    llm_buf out;     /* what llm_stop_feed returns */
    bool stopped;
} llm_stopper;

/* Copies the non-empty strings of stops[0..n). */
void llm_stop_init(llm_stopper *st, const char *const *stops, size_t n);
/* Adds one more stop string (ignored when empty or already present). */
void llm_stop_add(llm_stopper *st, const char *stop);
void llm_stop_free(llm_stopper *st);
/* Forgets held text (a new generation), keeps the stop strings. */
void llm_stop_reset(llm_stopper *st);
/* Feeds the next piece of output text. Sets *emit and *emit_len to the text that is now known
 * not to belong to a stop string (valid until the next call). Returns true when a stop string
 * was completed: *emit is then the text before it, and the stop string and anything after it
 * are dropped; further feeds emit nothing. */
bool llm_stop_feed(llm_stopper *st, const char *text, size_t len, const char **emit, size_t *emit_len);
/* At the end of generation without a stop: the held-back text, which is output after all. */
void llm_stop_flush(llm_stopper *st, const char **emit, size_t *emit_len);

#endif
