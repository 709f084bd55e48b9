/*
 * test_engine — llmap_generate end to end on the shared tiny models, against llama.cpp's
 * reference greedy continuations (../shared/reference/<model>/prompt-<i>.json): the raw prompt
 * at temperature 0 must reproduce the reference tokens up to the first step whose top-1/top-2
 * margin is too small to be decided reliably. Around that: stop strings (split across tokens),
 * num_predict, cancel, the context limits (error, "length", shift), the prefix cache (a
 * continued conversation gives what a fresh session gives), two threads sharing one model,
 * and loading errors.
 */
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "engine/engine.h"
#include "llmap.h"

/* Steps whose reference margin is below this may flip under a different summation order. */
#define MIN_MARGIN 0.05

typedef struct reference {
    char *prompt;
    int32_t tokens[256];
    int n_tokens;
    int32_t greedy[32];
    double margins[32];
    int n_greedy;
    int n_sure; /* greedy steps before the first low-margin one */
} reference;

static int int_array(const cJSON *j, const char *key, int32_t *out, int cap)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, key);
    int n = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, a) if (n < cap) out[n++] = (int32_t)x->valuedouble;
    return n;
}

static int load_reference(const char *shared, const char *stem, int i, reference *r)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/reference/%s/prompt-%d.json", shared, stem, i);
    char *text = test_read_file(path, NULL);
    if (!text)
        return -1;
    cJSON *j = cJSON_Parse(text);
    free(text);
    if (!j)
        return -1;
    memset(r, 0, sizeof *r);
    r->prompt = llm_xstrdup(cJSON_GetObjectItemCaseSensitive(j, "prompt")->valuestring);
    r->n_tokens = int_array(j, "tokens", r->tokens, 256);
    r->n_greedy = int_array(j, "greedy_tokens", r->greedy, 32);
    const cJSON *x;
    int n = 0;
    cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(j, "greedy_margins")) if (n < 32) r->margins[n++] =
        x->valuedouble;
    r->n_sure = 0;
    while (r->n_sure < r->n_greedy && r->margins[r->n_sure] >= MIN_MARGIN)
        r->n_sure++;
    cJSON_Delete(j);
    return 0;
}

typedef struct collect {
    llm_buf text;
    int calls;
    int cancel_after; /* 0: never */
} collect;

static int collect_cb(void *user, const char *text, size_t len)
{
    collect *c = user;
    llm_buf_append(&c->text, text, len);
    c->calls++;
    return c->cancel_after && c->calls >= c->cancel_after;
}

typedef struct cancel_job {
    llmap_session *s;
    int calls, after;
} cancel_job;

static int cancel_cb(void *user, const char *text, size_t len)
{
    (void)text;
    (void)len;
    cancel_job *j = user;
    if (++j->calls == j->after)
        llmap_session_cancel(j->s);
    return 0;
}

static void greedy(llmap_sampling *sp, int num_predict)
{
    llmap_sampling_default(sp);
    sp->temperature = 0;
    sp->repeat_penalty = 1.0f;
    sp->num_predict = num_predict;
}

/* Text the reference tokens stand for, as the streaming detokenizer renders them. */
static char *ref_text(const llmap_model *m, const int32_t *ids, int n)
{
    llm_buf b = {0};
    llm_detok d;
    llm_detok_init(&d, m->vocab, 0);
    for (int i = 0; i < n; i++)
        llm_detok_push(&d, ids[i], &b);
    llm_detok_flush(&d, &b);
    llm_buf_cstr(&b);
    return b.data;
}

static int generate(llmap_session *s, const char *prompt, const llmap_sampling *sp, collect *c, llmap_stats *st,
                    char *err)
{
    llm_buf_free(&c->text);
    c->calls = 0;
    int rc = llmap_generate(s, prompt, sp, collect_cb, c, st, err, 1024);
    llm_buf_cstr(&c->text);
    return rc;
}

/* The reference greedy continuation, token by token, and the same call again from the cache. */
/* A session with default options, or NULL (after a failed check) when none can be made. */
static llmap_session *new_session(llmap_model *m, char *err, size_t cap)
{
    llmap_session *s = NULL;
    CHECK(llmap_session_new(m, NULL, &s, err, cap) == 0);
    return s;
}

static void test_greedy_reference(llmap_model *m, const reference *r, const char *label)
{
    char err[1024] = "";
    int32_t *ids = NULL;
    size_t n = 0;
    llm_err e;
    CHECK(llm_engine_tokenize(m, r->prompt, &ids, &n, &e) == 0);
    int same = (int)n == r->n_tokens;
    for (size_t i = 0; same && i < n; i++)
        same = ids[i] == r->tokens[i];
    CHECK_MSG(same, "%s: prompt tokens (with BOS per metadata) match the reference", label);
    free(ids);

    llmap_session *s = new_session(m, err, sizeof err);
    if (!s)
        return;
    llmap_sampling sp;
    greedy(&sp, r->n_sure);
    collect c = {0};
    llmap_stats st;
    CHECK(generate(s, r->prompt, &sp, &c, &st, err) == 0);
    CHECK_EQ_STR(st.done_reason, "length");
    CHECK_EQ_INT(st.gen_tokens, r->n_sure);
    CHECK_EQ_INT(st.prompt_tokens, r->n_tokens);
    CHECK_EQ_INT(st.cached_tokens, 0);
    /* The cache holds the prompt and every generated token but the last (never evaluated). */
    size_t nh;
    const int32_t *h = llmap_session_history(s, &nh);
    CHECK_EQ_INT(nh, r->n_tokens + r->n_sure - 1);
    int match = 0;
    while (match < r->n_sure - 1 && h[r->n_tokens + match] == r->greedy[match])
        match++;
    CHECK_MSG(match == r->n_sure - 1, "%s: greedy tokens match the reference for %d of %d sure steps", label, match,
              r->n_sure - 1);
    char *want = ref_text(m, r->greedy, r->n_sure);
    CHECK_EQ_STR(c.text.data, want);

    /* Again: everything but the last prompt token comes from the cache, same answer. */
    collect c2 = {0};
    CHECK(generate(s, r->prompt, &sp, &c2, &st, err) == 0);
    CHECK_EQ_INT(st.cached_tokens, r->n_tokens - 1);
    CHECK_EQ_INT(st.prompt_tokens, 1);
    CHECK_EQ_STR(c2.text.data, want);
    free(want);
    llm_buf_free(&c.text);
    llm_buf_free(&c2.text);
    llmap_session_free(s);
}

static void test_limits_and_stops(llmap_model *m, const reference *r)
{
    char err[1024] = "";
    llmap_session *s = new_session(m, err, sizeof err);
    if (!s)
        return;
    llmap_sampling sp;
    llmap_stats st;
    collect c = {0};

    greedy(&sp, 3);
    CHECK(generate(s, r->prompt, &sp, &c, &st, err) == 0);
    char *want3 = ref_text(m, r->greedy, 3);
    CHECK_EQ_STR(c.text.data, want3);
    CHECK_EQ_INT(st.gen_tokens, 3);
    CHECK_EQ_STR(st.done_reason, "length");
    free(want3);
    llm_buf_free(&c.text);

    greedy(&sp, 0);
    CHECK(generate(s, r->prompt, &sp, &c, &st, err) == 0);
    CHECK_EQ_INT(c.text.len, 0);
    CHECK_EQ_INT(st.gen_tokens, 0);
    llm_buf_free(&c.text);

    /* A stop string made of the end of token 3's text and the start of token 4's: it is only
     * complete after token 4, and neither half may reach the output. */
    int k = r->n_sure < 12 ? r->n_sure : 12;
    char *full = ref_text(m, r->greedy, k);
    char *upto3 = ref_text(m, r->greedy, 4);
    size_t cut = strlen(upto3);
    free(upto3);
    if (cut >= 2 && cut + 2 <= strlen(full)) {
        char stop[5];
        memcpy(stop, full + cut - 2, 4);
        stop[4] = 0;
        const char *stops[] = {stop};
        greedy(&sp, k);
        sp.stop = stops;
        sp.n_stop = 1;
        CHECK(generate(s, r->prompt, &sp, &c, &st, err) == 0);
        size_t at = (size_t)(strstr(full, stop) - full); /* the first occurrence may be earlier */
        CHECK_EQ_INT(c.text.len, at);
        CHECK(!strncmp(c.text.data, full, at));
        CHECK(strstr(c.text.data, stop) == NULL);
        CHECK_EQ_STR(st.done_reason, "stop");
        llm_buf_free(&c.text);
    } else {
        CHECK_MSG(0, "reference pieces too short to build a split stop string");
    }
    free(full);

    /* Cancel: the callback asks to stop at its second piece. */
    greedy(&sp, 20);
    c.cancel_after = 2;
    CHECK(generate(s, r->prompt, &sp, &c, &st, err) == 0);
    CHECK_EQ_STR(st.done_reason, "cancel");
    CHECK_EQ_INT(c.calls, 2);
    CHECK(st.gen_tokens >= 2 && st.gen_tokens < 20);
    c.cancel_after = 0;
    llm_buf_free(&c.text);

    /* llmap_session_cancel from the callback (as a signal handler or another thread would):
     * generation stops before the next token; a cancel between calls does not carry over. */
    cancel_job cj = {.s = s, .after = 3};
    greedy(&sp, 20);
    CHECK(llmap_generate(s, r->prompt, &sp, cancel_cb, &cj, &st, err, sizeof err) == 0);
    CHECK_EQ_STR(st.done_reason, "cancel");
    CHECK_EQ_INT(st.gen_tokens, 3);
    llmap_session_cancel(s);
    greedy(&sp, 2);
    CHECK(generate(s, r->prompt, &sp, &c, &st, err) == 0);
    CHECK_EQ_STR(st.done_reason, "length");
    llm_buf_free(&c.text);
    llmap_session_free(s);

    /* The prompt evaluated 2 tokens at a time (so a cancel can land between batches) gives
     * the reference answer; a cancel before the call is forgotten. */
    llmap_session_opts sb = {.n_batch = 2};
    CHECK(llmap_session_new(m, &sb, &s, err, sizeof err) == 0);
    llmap_session_cancel(s);
    greedy(&sp, 6);
    CHECK(generate(s, r->prompt, &sp, &c, &st, err) == 0);
    CHECK_EQ_STR(st.done_reason, "length");
    char *want6 = ref_text(m, r->greedy, 6);
    CHECK_EQ_STR(c.text.data, want6);
    free(want6);
    llm_buf_free(&c.text);
    llmap_session_free(s);

    /* A small context: the prompt alone does not fit; a fixed budget that cannot be reached
     * is an error; "until full" ends with "length" exactly when the cache is full. */
    llmap_session_opts so = {.n_ctx = 4};
    CHECK(llmap_session_new(m, &so, &s, err, sizeof err) == 0);
    greedy(&sp, 5);
    CHECK(generate(s, r->prompt, &sp, &c, &st, err) == -1);
    CHECK_CONTAINS(err, "context holds 4");
    llm_buf_free(&c.text);
    llmap_session_free(s);

    so.n_ctx = r->n_tokens + 10;
    CHECK(llmap_session_new(m, &so, &s, err, sizeof err) == 0);
    greedy(&sp, 20);
    CHECK(generate(s, r->prompt, &sp, &c, &st, err) == -1);
    CHECK_CONTAINS(err, "context");
    CHECK_CONTAINS(err, "full");
    llm_buf_free(&c.text);
    greedy(&sp, -1);
    CHECK(generate(s, r->prompt, &sp, &c, &st, err) == 0);
    CHECK_EQ_STR(st.done_reason, "length");
    CHECK_EQ_INT(st.gen_tokens, 11); /* 10 fit after the prompt, the 11th needs no room */
    size_t nh;
    llmap_session_history(s, &nh);
    CHECK_EQ_INT(nh, so.n_ctx);
    llm_buf_free(&c.text);
    llmap_session_free(s);

    /* Context shift: the same budget now goes through, the cache never overflows, the BOS
     * stays first, and the answer starts like the unshifted reference. */
    so.context_shift = true;
    CHECK(llmap_session_new(m, &so, &s, err, sizeof err) == 0);
    greedy(&sp, 30);
    CHECK(generate(s, r->prompt, &sp, &c, &st, err) == 0);
    CHECK_EQ_INT(st.gen_tokens, 30);
    const int32_t *h = llmap_session_history(s, &nh);
    CHECK(nh <= (size_t)so.n_ctx);
    CHECK_EQ_INT(h[0], r->tokens[0]);
    char *want = ref_text(m, r->greedy, 5);
    CHECK(!strncmp(c.text.data, want, strlen(want)));
    free(want);
    llm_buf_free(&c.text);
    /* A prompt longer than the context is cut down instead of refused. */
    char *longp = llm_xmalloc(strlen(r->prompt) * 8 + 1);
    longp[0] = 0;
    for (int i = 0; i < 8; i++)
        strcat(longp, r->prompt);
    greedy(&sp, 2);
    CHECK(generate(s, longp, &sp, &c, &st, err) == 0);
    CHECK(st.prompt_tokens + st.cached_tokens <= so.n_ctx);
    free(longp);
    llm_buf_free(&c.text);
    llmap_session_free(s);
}

/* A conversation continued in one session gives what a fresh session gives for the whole
 * text, while reusing the cached prefix. */
static void test_prefix_cache(llmap_model *m, const reference *r)
{
    char err[1024] = "";
    llmap_session *a = new_session(m, err, sizeof err), *b = new_session(m, err, sizeof err);
    if (!a || !b)
        return;
    llmap_sampling sp;
    greedy(&sp, 8);
    llmap_stats st;
    collect c1 = {0}, c2 = {0}, c3 = {0};
    CHECK(generate(a, r->prompt, &sp, &c1, &st, err) == 0);
    llm_buf p2 = {0};
    llm_buf_puts(&p2, r->prompt);
    llm_buf_puts(&p2, c1.text.data);
    llm_buf_puts(&p2, " and then the story went on");
    CHECK(generate(a, llm_buf_cstr(&p2), &sp, &c2, &st, err) == 0);
    CHECK_MSG(st.cached_tokens >= r->n_tokens, "continued prompt reuses the cache (%d cached)", st.cached_tokens);
    int continued_prompt = st.cached_tokens + st.prompt_tokens;
    CHECK(generate(b, llm_buf_cstr(&p2), &sp, &c3, &st, err) == 0);
    CHECK_EQ_INT(st.cached_tokens, 0);
    CHECK_EQ_INT(st.prompt_tokens, continued_prompt);
    CHECK_EQ_STR(c2.text.data, c3.text.data);
    CHECK(c2.text.len > 0);

    /* After a reset nothing is reused. */
    llmap_session_reset(a);
    CHECK(generate(a, llm_buf_cstr(&p2), &sp, &c1, &st, err) == 0);
    CHECK_EQ_INT(st.cached_tokens, 0);
    llm_buf_free(&p2);
    llm_buf_free(&c1.text);
    llm_buf_free(&c2.text);
    llm_buf_free(&c3.text);
    llmap_session_free(a);
    llmap_session_free(b);
}

typedef struct thread_job {
    llmap_model *m;
    const reference *r;
    char *text;
    int rc;
} thread_job;

static void *thread_main(void *p)
{
    thread_job *j = p;
    char err[1024];
    llmap_session *s = NULL;
    j->rc = llmap_session_new(j->m, NULL, &s, err, sizeof err);
    if (j->rc)
        return NULL;
    llmap_sampling sp;
    greedy(&sp, j->r->n_sure);
    collect c = {0};
    llmap_stats st;
    for (int round = 0; round < 2 && !j->rc; round++) {
        llmap_session_reset(s);
        llm_buf_free(&c.text);
        j->rc = generate(s, j->r->prompt, &sp, &c, &st, err);
    }
    j->text = c.text.data;
    llmap_session_free(s);
    return NULL;
}

static void test_threads(llmap_model *m, const reference *r)
{
    thread_job jobs[2] = {{.m = m, .r = r}, {.m = m, .r = r}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, thread_main, &jobs[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    char *want = ref_text(m, r->greedy, r->n_sure);
    for (int i = 0; i < 2; i++) {
        CHECK_EQ_INT(jobs[i].rc, 0);
        CHECK_EQ_STR(jobs[i].text, want);
        free(jobs[i].text);
    }
    free(want);
}

static void test_sampling_reproducible(llmap_model *m, const reference *r)
{
    char err[1024] = "";
    llmap_session *s = new_session(m, err, sizeof err);
    if (!s)
        return;
    llmap_sampling sp;
    llmap_sampling_default(&sp);
    sp.num_predict = 16;
    sp.seed = 1234;
    sp.temperature = 1.0f;
    collect a = {0}, b = {0}, g = {0};
    llmap_stats st;
    CHECK(generate(s, r->prompt, &sp, &a, &st, err) == 0);
    CHECK(generate(s, r->prompt, &sp, &b, &st, err) == 0);
    CHECK_EQ_STR(a.text.data, b.text.data);
    llmap_sampling gs;
    greedy(&gs, 16);
    CHECK(generate(s, r->prompt, &gs, &g, &st, err) == 0);
    CHECK_MSG(strcmp(a.text.data, g.text.data) != 0, "sampling at temperature 1 differs from greedy");
    llm_buf_free(&a.text);
    llm_buf_free(&b.text);
    llm_buf_free(&g.text);
    llmap_session_free(s);
}

static void test_info_and_chat(llmap_model *m)
{
    llmap_model_info i;
    llmap_model_get_info(m, &i);
    CHECK_EQ_STR(i.arch, "llama");
    CHECK_EQ_STR(i.name, "tiny-llama");
    CHECK_EQ_INT(i.n_vocab, 32000);
    CHECK_EQ_INT(i.n_layer, 4);
    CHECK_EQ_INT(i.n_head, 8);
    CHECK_EQ_INT(i.n_head_kv, 4);
    CHECK_EQ_INT(i.n_ctx_train, 2048);
    CHECK_EQ_INT(i.file_size, 21486688);
    CHECK(i.chat_template != NULL);
    llmap_chat_msg msgs[] = {{"system", "Be brief."}, {"user", "hi there"}};
    char *out = NULL;
    char err[1024];
    CHECK(llmap_chat_render(m, msgs, 2, true, &out, err, sizeof err) == 0);
    CHECK_CONTAINS(out, "[INST]");
    CHECK_CONTAINS(out, "hi there");
    CHECK_CONTAINS(out, "Be brief.");
    free(out);
}

static void test_load_errors(const char *shared)
{
    char err[1024] = "";
    llmap_model *m = NULL;
    CHECK(llmap_model_load("/nonexistent/model.gguf", NULL, &m, err, sizeof err) == -1);
    CHECK(m == NULL);
    CHECK_CONTAINS(err, "/nonexistent/model.gguf");

    /* The first 64 KiB of a real model: a clear error, not a crash. */
    char src[4096], dst[64];
    snprintf(src, sizeof src, "%s/models/tiny-llama-q8_0.gguf", shared);
    snprintf(dst, sizeof dst, "/tmp/llmap-test-engine-%d.gguf", (int)getpid());
    size_t len;
    char *bytes = test_read_file(src, &len);
    FILE *f = fopen(dst, "wb");
    if (bytes && f) {
        fwrite(bytes, 1, len < 65536 ? len : 65536, f);
        fclose(f);
        err[0] = 0;
        CHECK(llmap_model_load(dst, NULL, &m, err, sizeof err) == -1);
        CHECK_CONTAINS(err, dst);
        unlink(dst);
    }
    free(bytes);
}

/* The model file is truncated while mapped: the next forward pass reads missing pages, and
 * the generation fails with an error naming the file instead of dying of SIGBUS. */
static void test_truncated_while_mapped(const char *shared)
{
    char src[4096], dst[64], err[1024] = "";
    snprintf(src, sizeof src, "%s/models/tiny-llama-q8_0.gguf", shared);
    snprintf(dst, sizeof dst, "/tmp/llmap-test-engine-trunc-%d.gguf", (int)getpid());
    size_t len;
    char *bytes = test_read_file(src, &len);
    FILE *f = fopen(dst, "wb");
    if (!bytes || !f || fwrite(bytes, 1, len, f) != len) {
        CHECK_MSG(0, "cannot copy %s to %s", src, dst);
        if (f)
            fclose(f);
        free(bytes);
        return;
    }
    fclose(f);
    free(bytes);
    llmap_load_opts lo;
    llmap_load_opts_default(&lo);
    lo.mode = LLMAP_LOAD_MMAP;
    lo.n_threads = 1;
    llmap_model *m = NULL;
    llmap_session *s = NULL;
    CHECK(llmap_model_load(dst, &lo, &m, err, sizeof err) == 0);
    if (m)
        s = new_session(m, err, sizeof err);
    if (s) {
        llmap_sampling sp;
        greedy(&sp, 4);
        CHECK(llmap_generate(s, "Hello", &sp, NULL, NULL, NULL, err, sizeof err) == 0);
        CHECK(truncate(dst, 4096) == 0);
        collect c = {0};
        llmap_stats st;
        CHECK(generate(s, "Hello, again", &sp, &c, &st, err) == -1);
        CHECK_CONTAINS(err, dst);
        llm_buf_free(&c.text);
    }
    llmap_session_free(s);
    llmap_model_free(m);
    unlink(dst);
}

int main(void)
{
    const char *shared = shared_dir();
    if (!shared) {
        SKIP("shared test data (../shared) not found");
        TEST_END("engine");
    }
    char path[4096], err[1024] = "";
    snprintf(path, sizeof path, "%s/models/tiny-llama-q8_0.gguf", shared);
    llmap_load_opts lo;
    llmap_load_opts_default(&lo);
    lo.n_threads = 1; /* the machine is shared: a second thread mostly waits */
    llmap_model *m = NULL;
    reference r;
    if (llmap_model_load(path, &lo, &m, err, sizeof err) || load_reference(shared, "tiny-llama-q8_0", 0, &r)) {
        CHECK_MSG(0, "load %s: %s", path, err);
        TEST_END("engine");
    }
    CHECK_MSG(r.n_sure >= 8, "reference has %d sure greedy steps", r.n_sure);
    test_info_and_chat(m);
    test_greedy_reference(m, &r, "tiny-llama-q8_0 prompt 0");
    reference r3;
    if (load_reference(shared, "tiny-llama-q8_0", 3, &r3) == 0) {
        test_greedy_reference(m, &r3, "tiny-llama-q8_0 prompt 3");
        free(r3.prompt);
    }
    test_limits_and_stops(m, &r);
    test_prefix_cache(m, &r);
    test_threads(m, &r);
    test_sampling_reproducible(m, &r);
    llmap_model_free(m);
    free(r.prompt);

    /* The qwen2 model: byte-level BPE, no BOS, ChatML template. */
    snprintf(path, sizeof path, "%s/models/tiny-qwen2-q8_0.gguf", shared);
    if (llmap_model_load(path, &lo, &m, err, sizeof err) == 0 &&
        load_reference(shared, "tiny-qwen2-q8_0", 1, &r) == 0) {
        test_greedy_reference(m, &r, "tiny-qwen2-q8_0 prompt 1");
        free(r.prompt);
    } else {
        CHECK_MSG(0, "load %s: %s", path, err);
    }
    llmap_model_free(m);
    test_load_errors(shared);
    test_truncated_while_mapped(shared);
    TEST_END("engine");
}
