/*
 * generate.c — sessions and llmap_generate: from templated prompt text to streamed answer.
 *
 * One call does, in order: tokenize the prompt; find how much of it is already in the KV
 * cache (the conversation so far) and cut the cache back to that prefix; evaluate the rest in
 * batches; then sample a token, turn it into text (complete UTF-8 only), pass the text through
 * the stop-string matcher to the caller, and feed the token back — until an end-of-generation
 * token, a stop string, the token budget, the caller's cancel or the end of the context.
 *
 * The session's hist[] always mirrors the KV cache exactly (same tokens, same order), so the
 * prefix a new prompt shares with it is the part that need not be recomputed. A sampled token
 * enters hist only once it has been evaluated.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/engine.h"
#include "mem/mem.h"
#include "text/template.h"

void llmap_sampling_default(llmap_sampling *s)
{
    memset(s, 0, sizeof *s);
    llm_sampler_params p;
    llm_sampler_params_default(&p);
    s->temperature = p.temperature;
    s->top_k = p.top_k;
    s->top_p = p.top_p;
    s->min_p = p.min_p;
    s->repeat_penalty = p.repeat_penalty;
    s->frequency_penalty = p.frequency_penalty;
    s->presence_penalty = p.presence_penalty;
    s->repeat_last_n = p.repeat_last_n;
    s->seed = LLMAP_SEED_RANDOM;
    s->num_predict = -1;
}

static int fail(llm_err *e, char *err, size_t errlen)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", e->msg);
    return -1;
}

/* ---- sessions ------------------------------------------------------------------------------ */

int llmap_session_new(llmap_model *m, const llmap_session_opts *opts, llmap_session **out, char *err,
                      size_t errlen)
{
    *out = NULL;
    llmap_session_opts def = {0};
    if (!opts)
        opts = &def;
    llm_err e = {{0}};
    uint32_t trained = m->m.hp.n_ctx_train ? m->m.hp.n_ctx_train : 4096;
    if (opts->n_ctx < 0) {
        llm_errf(&e, "context size %d is negative", opts->n_ctx);
        return fail(&e, err, errlen);
    }
    int n_ctx = opts->n_ctx ? opts->n_ctx : (int)(trained < 4096 ? trained : 4096);
    if ((uint32_t)n_ctx > trained) {
        if (m->opts.verbose)
            fprintf(stderr, "llmap: context %d is beyond the model's trained %u tokens; using %u\n", n_ctx, trained,
                    trained);
        n_ctx = (int)trained;
    }

    llmap_session *s = llm_xcalloc(1, sizeof *s);
    s->model = m;
    s->n_ctx = n_ctx;
    s->context_shift = opts->context_shift;
    llm_ctx_opts co;
    llm_ctx_opts_default(&co);
    co.n_ctx = n_ctx;
    co.n_batch = s->n_batch = opts->n_batch > 0 ? opts->n_batch : 512;
    co.kv_f16 = opts->kv_f16;
    co.n_threads = m->opts.n_threads;
    s->ctx = llm_ctx_new(&m->m, &co, &e);
    if (!s->ctx)
        goto fail;
    s->n_ctx = llm_ctx_n_ctx(s->ctx);
    s->logits = malloc((size_t)m->m.hp.n_vocab * sizeof *s->logits);
    if (!s->logits) {
        llm_errf(&e, "out of memory for the logits of %u tokens", m->m.hp.n_vocab);
        goto fail;
    }
    s->sampler = llm_sampler_new((int)m->m.hp.n_vocab, NULL, &e);
    if (!s->sampler)
        goto fail;
    s->cap_hist = (size_t)s->n_ctx;
    s->hist = llm_xmalloc(s->cap_hist * sizeof *s->hist);
    llm_stop_init(&s->stopper, NULL, 0);
    *out = s;
    return 0;
fail:
    llmap_session_free(s);
    return fail(&e, err, errlen);
}

void llmap_session_free(llmap_session *s)
{
    if (!s)
        return;
    llm_ctx_free(s->ctx);
    llm_sampler_free(s->sampler);
    llm_stop_free(&s->stopper);
    llm_buf_free(&s->piece);
    free(s->logits);
    free(s->hist);
    free(s);
}

void llmap_session_reset(llmap_session *s)
{
    llm_ctx_kv_truncate(s->ctx, 0);
    s->n_hist = 0;
}

void llmap_session_cancel(llmap_session *s)
{
    atomic_store(&s->cancel, 1);
}

const int32_t *llmap_session_history(const llmap_session *s, size_t *n)
{
    *n = s->n_hist;
    return s->hist;
}

/* ---- prompt ------------------------------------------------------------------------------- */

int llm_engine_tokenize(const llmap_model *m, const char *prompt, int32_t **ids, size_t *n, llm_err *err)
{
    if (llm_tokenize(m->vocab, prompt, strlen(prompt), false, true, ids, n, err))
        return -1;
    int32_t bos = llm_vocab_bos(m->vocab);
    if (llm_vocab_add_bos(m->vocab) && bos >= 0 && (*n == 0 || (*ids)[0] != bos)) {
        /* Templates often write the BOS text themselves ("<s>[INST]"): never twice. */
        *ids = llm_xrealloc(*ids, (*n + 1) * sizeof **ids);
        memmove(*ids + 1, *ids, *n * sizeof **ids);
        (*ids)[0] = bos;
        (*n)++;
    }
    return 0;
}

/* Tokens at the start of the history that a context shift keeps: the BOS, when there is one. */
static size_t n_keep(const llmap_session *s, const int32_t *toks, size_t n)
{
    int32_t bos = llm_vocab_bos(s->model->vocab);
    return n > 0 && bos >= 0 && toks[0] == bos ? 1 : 0;
}

/* Makes the prompt fit the context: an error, or with context_shift the oldest tokens after
 * the BOS go, leaving half the context for the answer. */
static int fit_prompt(llmap_session *s, int32_t *ids, size_t *n, llm_err *err)
{
    size_t cap = (size_t)s->n_ctx;
    if (*n <= cap)
        return 0;
    if (!s->context_shift)
        return llm_errf(err, "the prompt is %zu tokens but the context holds %zu (use a larger context, or start a "
                             "new conversation)",
                        *n, cap);
    size_t keep = n_keep(s, ids, *n), tail = cap / 2 > keep ? cap / 2 - keep : 1;
    memmove(ids + keep, ids + *n - tail, tail * sizeof *ids);
    *n = keep + tail;
    return 0;
}

/* Cuts the cache back to the longest prefix it shares with ids, keeping at least one token
 * to evaluate (its logits start the answer). Returns the number of cached tokens reused. */
static size_t reuse_prefix(llmap_session *s, const int32_t *ids, size_t n)
{
    size_t common = 0;
    while (common < s->n_hist && common < n && s->hist[common] == ids[common])
        common++;
    if (common == n && n > 0)
        common--;
    llm_ctx_kv_truncate(s->ctx, (int)common);
    s->n_hist = common;
    return common;
}

/* Evaluates ids[0..n) after the cache and records them in hist; logits = the last one's. A
 * failure detected after the fact (unreadable model file) may have filled the cache: it is cut
 * back so that hist still mirrors it. */
static int eval(llmap_session *s, const int32_t *ids, size_t n, float *logits, llm_err *err)
{
    if (llm_forward(s->ctx, ids, (int)n, logits, false, err)) {
        llm_ctx_kv_truncate(s->ctx, (int)s->n_hist);
        return -1;
    }
    memcpy(s->hist + s->n_hist, ids, n * sizeof *ids);
    s->n_hist += n;
    return 0;
}

/* The prompt, n_batch tokens at a time so that a cancel need not wait for all of it; what
 * was evaluated stays cached. Returns 1 when cancelled. */
static int eval_prompt(llmap_session *s, const int32_t *ids, size_t n, llm_err *err)
{
    for (size_t done = 0; done < n;) {
        if (atomic_load(&s->cancel))
            return 1;
        size_t k = n - done < (size_t)s->n_batch ? n - done : (size_t)s->n_batch;
        if (eval(s, ids + done, k, done + k == n ? s->logits : NULL, err))
            return -1;
        done += k;
    }
    return 0;
}

/* Room for one more token: a full cache is shifted (context_shift) or reported full (1). */
static int make_room(llmap_session *s, llm_err *err)
{
    if (s->n_hist < (size_t)s->n_ctx)
        return 0;
    if (!s->context_shift)
        return 1;
    size_t keep = n_keep(s, s->hist, s->n_hist), discard = (s->n_hist - keep) / 2;
    if (llm_ctx_kv_shift(s->ctx, (int)keep, (int)discard, err))
        return -1;
    memmove(s->hist + keep, s->hist + keep + discard, (s->n_hist - keep - discard) * sizeof *s->hist);
    s->n_hist -= discard;
    return 0;
}

/* ---- generation ----------------------------------------------------------------------------- */

static uint64_t clock_seed(const void *salt)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((uint64_t)ts.tv_sec * 1000000007ULL) ^ (uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)salt;
}

static void setup_sampling(llmap_session *s, const llmap_sampling *sp)
{
    llm_sampler_params p = {
        .temperature = sp->temperature,
        .top_k = sp->top_k,
        .top_p = sp->top_p,
        .min_p = sp->min_p,
        .repeat_penalty = sp->repeat_penalty,
        .frequency_penalty = sp->frequency_penalty,
        .presence_penalty = sp->presence_penalty,
        .repeat_last_n = sp->repeat_last_n,
        .seed = sp->seed == LLMAP_SEED_RANDOM ? clock_seed(s) : sp->seed,
    };
    llm_sampler_set_params(s->sampler, &p);
    llm_stop_free(&s->stopper);
    llm_stop_init(&s->stopper, sp->stop, sp->stop ? (size_t)sp->n_stop : 0);
    for (const char *const *t = llm_template_stops(s->model->chat_template); t && *t; t++)
        llm_stop_add(&s->stopper, *t);
}

/* What the token loop hands back to the caller. */
typedef struct emit_state {
    llmap_text_cb cb;
    void *user;
    bool cancelled;
} emit_state;

static void deliver(emit_state *es, const char *text, size_t len)
{
    if (len && es->cb && !es->cancelled && es->cb(es->user, text, len))
        es->cancelled = true;
}

/* Text of one token through the stop matcher to the caller. Returns true at a stop string. */
static bool emit_token(llmap_session *s, llm_detok *dt, int32_t tok, emit_state *es)
{
    s->piece.len = 0;
    llm_detok_push(dt, tok, &s->piece);
    if (s->piece.len == 0)
        return false;
    const char *out;
    size_t out_len;
    bool stopped = llm_stop_feed(&s->stopper, s->piece.data, s->piece.len, &out, &out_len);
    deliver(es, out, out_len);
    return stopped;
}

/* End without a stop string: what the detokenizer and the stop matcher still hold. */
static void flush_text(llmap_session *s, llm_detok *dt, emit_state *es)
{
    const char *out;
    size_t out_len;
    s->piece.len = 0;
    llm_detok_flush(dt, &s->piece);
    if (s->piece.len) {
        bool stopped = llm_stop_feed(&s->stopper, s->piece.data, s->piece.len, &out, &out_len);
        deliver(es, out, out_len);
        if (stopped)
            return;
    }
    llm_stop_flush(&s->stopper, &out, &out_len);
    deliver(es, out, out_len);
}

static void mem_delta(llmap_stats *st, const llm_mem_sample *a, const llm_mem_sample *b)
{
    st->major_faults = b->major_faults - a->major_faults;
    st->minor_faults = b->minor_faults - a->minor_faults;
    st->read_bytes = b->read_bytes - a->read_bytes;
}

/* Paging watch: one generated token's fault and I/O deltas; warns once per session when
 * generation is disk-bound (src/mem/thrash.c decides). */
static void watch_paging(llmap_session *s, const llm_mem_sample *a, const llm_mem_sample *b)
{
    if (s->model->m.stream)
        return; /* streaming reads from disk by design; its speed is what fit predicted */
    if (!s->thrash.bytes_per_token)
        llm_thrash_init(&s->thrash, s->model->m.weight_bytes, 0);
    if (llm_thrash_observe(&s->thrash, b->major_faults - a->major_faults, b->read_bytes - a->read_bytes, b->t - a->t))
        fprintf(stderr, "llmap: %s\n", s->thrash.message);
}

int llmap_generate(llmap_session *s, const char *prompt, const llmap_sampling *sp, llmap_text_cb cb, void *user,
                   llmap_stats *stats, char *err, size_t errlen)
{
    llmap_stats local;
    llmap_stats *st = stats ? stats : &local;
    memset(st, 0, sizeof *st);
    st->done_reason = "error";
    st->load_seconds = s->model->load_seconds;
    llmap_sampling def;
    if (!sp) {
        llmap_sampling_default(&def);
        sp = &def;
    }
    llm_err e = {{0}};
    llm_mem_sample m0, m1;
    llm_mem_sample_now(&m0);
    int rc = -1;
    int32_t *ids = NULL;
    size_t n = 0;
    double t1 = 0;

    /* Prompt: tokenize, fit, reuse what the cache already holds, evaluate the rest. */
    double t0 = llm_now();
    if (!prompt) {
        llm_errf(&e, "no prompt (NULL)");
        goto done;
    }
    if (llm_engine_tokenize(s->model, prompt, &ids, &n, &e) || fit_prompt(s, ids, &n, &e))
        goto done;
    if (n == 0) {
        llm_errf(&e, "the prompt is empty and the model adds no BOS token: nothing to continue from");
        goto done;
    }
    atomic_store(&s->cancel, 0);
    size_t cached = reuse_prefix(s, ids, n);
    st->cached_tokens = (int)cached;
    st->prompt_tokens = (int)(n - cached);
    int pr = eval_prompt(s, ids + cached, n - cached, &e);
    t1 = llm_now();
    st->prompt_seconds = t1 - t0;
    if (pr < 0)
        goto done;
    if (pr > 0) {
        st->done_reason = "cancel";
        rc = 0;
        goto done;
    }

    /* Answer: one token at a time. Each token's counters are read once; the reading after one
     * token is the starting point of the next (the /proc reads are not free). */
    llm_mem_sample prev;
    llm_mem_sample_now(&prev);
    setup_sampling(s, sp);
    llm_detok dt;
    llm_detok_init(&dt, s->model->vocab, 0);
    emit_state es = {.cb = cb, .user = user};
    long budget = sp->num_predict >= 0 ? sp->num_predict : (s->context_shift ? s->n_ctx : -1);
    const char *reason = NULL;
    while (!reason) {
        if (budget >= 0 && st->gen_tokens >= budget) {
            reason = "length";
            break;
        }
        if (atomic_load(&s->cancel)) {
            reason = "cancel";
            break;
        }
        int32_t tok = llm_sampler_sample(s->sampler, s->logits, s->hist, s->n_hist);
        if (llm_token_is_eog(s->model->vocab, tok)) {
            reason = "stop";
            break;
        }
        st->gen_tokens++;
        if (emit_token(s, &dt, tok, &es)) {
            reason = "stop";
            break;
        }
        if (es.cancelled) {
            reason = "cancel";
            break;
        }
        if (budget >= 0 && st->gen_tokens >= budget) {
            reason = "length"; /* no need to evaluate a token nothing will follow */
            break;
        }
        int room = make_room(s, &e);
        if (room < 0)
            goto done_gen;
        if (room > 0) {
            if (sp->num_predict >= 0) {
                llm_errf(&e, "the context (%d tokens) is full after %d of the %d requested tokens", s->n_ctx,
                         st->gen_tokens, sp->num_predict);
                goto done_gen;
            }
            reason = "length";
            break;
        }
        if (eval(s, &tok, 1, s->logits, &e))
            goto done_gen;
        llm_mem_sample now;
        llm_mem_sample_now(&now);
        watch_paging(s, &prev, &now);
        prev = now;
    }
    if (strcmp(reason, "cancel") && !s->stopper.stopped)
        flush_text(s, &dt, &es);
    if (es.cancelled && strcmp(reason, "stop"))
        reason = "cancel";
    st->done_reason = reason;
    rc = 0;
done_gen:
    st->gen_seconds = llm_now() - t1;
done:
    free(ids);
    llm_mem_sample_now(&m1);
    mem_delta(st, &m0, &m1);
    if (rc)
        fail(&e, err, errlen);
    return rc;
}
