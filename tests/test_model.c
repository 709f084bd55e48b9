/*
 * test_model — the forward pass against llama.cpp's reference outputs (../shared/reference),
 * plus the properties the engine relies on: same results with 1 and 2 threads, with the file
 * read instead of mapped, with the scalar kernels, in one batch or several, after a context
 * shift; and load errors that name the problem.
 *
 * For every reference entry (5 model files x {native, dequantized-f32}) and prompt 0..3, with
 * the reference's own token ids:
 *   - last-position logits vs prompt-<i>.logits.f32: max abs diff <= tolerance of the mode;
 *   - at every prompt position, each reference top-20 logit matched by id, and the ranks agree
 *     wherever the reference gaps to the neighbouring ranks exceed twice the tolerance;
 *   - greedy continuation by teacher forcing: at every step whose reference margin exceeds
 *     twice the tolerance our argmax is the reference token; then the reference token is fed.
 * dequantized-f32 runs need an F32 copy of the file, made with `llmap quantize IN OUT f32`.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "model/model.h"
#include "model/ops.h"

/* Tolerances (abs, on logits with std ~3).
 * Native: activations are quantized to Q8_0/Q8_K exactly like ggml, and the attention and
 * element-wise ops follow ggml's AVX2 summation orders; what still differs is the summation
 * order inside some weight dot products (ggml's AVX2 / tinyBLAS / repacked Q4_0 kernels vs
 * ours), by ~1 ulp. Often that leaves every logit within ~2e-6 of llama.cpp (all 4 Q4_K_M
 * prompts, 9 of 20 overall at the time of writing); but now and then an activation lies within
 * an ulp of a rounding boundary of its 8-bit quantization and rounds the other way, and that
 * one step (1/127 of the block maximum) propagates: measured up to 0.20 max / 0.037 mean abs on
 * the last position — the size of llama.cpp's own native vs dequantized-F32 gap (README
 * section 5: 0.17..0.41 max, 0.035..0.077 mean). Hence 0.25 per logit and 0.05 mean; our own
 * scalar vs AVX2 kernels differ the same way.
 * F32: plain float32 rounding, README guidance 1e-4 (measured <= 9.1e-6). */
#define TOL_NATIVE 0.25
#define TOL_NATIVE_MEAN 0.05
#define TOL_F32 1e-4
#define TOL_F32_MEAN 1e-5

typedef struct ref_prompt {
    cJSON *json;
    int32_t *tokens;
    int n_tokens, n_vocab;
    float *last_logits;
} ref_prompt;

typedef struct stats {
    double mean_last, max_last, max_top, max_greedy;
    int rank_checked, rank_failed, greedy_checked, greedy_failed;
} stats;

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return NULL;
    }
    buf[n] = 0;
    fclose(f);
    if (len)
        *len = (size_t)n;
    return buf;
}

static int load_ref(const char *dir, int i, ref_prompt *r)
{
    char path[1024];
    memset(r, 0, sizeof *r);
    snprintf(path, sizeof path, "%s/prompt-%d.json", dir, i);
    char *txt = read_file(path, NULL);
    if (!txt)
        return -1;
    r->json = cJSON_Parse(txt);
    free(txt);
    if (!r->json)
        return -1;
    cJSON *toks = cJSON_GetObjectItem(r->json, "tokens");
    r->n_tokens = cJSON_GetArraySize(toks);
    r->n_vocab = cJSON_GetObjectItem(r->json, "n_vocab")->valueint;
    r->tokens = malloc(sizeof(int32_t) * (size_t)r->n_tokens);
    for (int t = 0; t < r->n_tokens; t++)
        r->tokens[t] = cJSON_GetArrayItem(toks, t)->valueint;
    snprintf(path, sizeof path, "%s/prompt-%d.logits.f32", dir, i);
    size_t len = 0;
    r->last_logits = (float *)read_file(path, &len);
    if (!r->last_logits || len != (size_t)r->n_vocab * sizeof(float))
        return -1;
    return 0;
}

static void free_ref(ref_prompt *r)
{
    cJSON_Delete(r->json);
    free(r->tokens);
    free(r->last_logits);
}

static int argmax(const float *l, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (l[i] > l[best])
            best = i;
    return best;
}

/* Our ids at ranks 0..k-1 (desc logit, ties by id asc). */
static void top_ids(const float *l, int n, int k, int *ids)
{
    for (int r = 0; r < k; r++)
        ids[r] = -1;
    for (int i = 0; i < n; i++) {
        int r = k;
        while (r > 0 && (ids[r - 1] < 0 || l[i] > l[ids[r - 1]]))
            r--;
        if (r >= k)
            continue;
        memmove(&ids[r + 1], &ids[r], sizeof(int) * (size_t)(k - r - 1));
        ids[r] = i;
    }
}

static void check_top(const char *what, const float *logits, cJSON *top, int n_vocab, double tol, stats *st)
{
    int k = cJSON_GetArraySize(top);
    int ours[64];
    if (k > 64)
        k = 64;
    top_ids(logits, n_vocab, k, ours);
    for (int r = 0; r < k; r++) {
        cJSON *e = cJSON_GetArrayItem(top, r);
        int id = cJSON_GetArrayItem(e, 0)->valueint;
        double v = cJSON_GetArrayItem(e, 1)->valuedouble;
        double d = fabs(logits[id] - v);
        if (d > st->max_top)
            st->max_top = d;
        CHECK_MSG(d <= tol, "%s: top rank %d id %d: %.7g vs ref %.7g (tol %g)", what, r, id, (double)logits[id], v,
                  tol);
        if (r == k - 1)
            continue; /* the gap to the unlisted rank k is unknown */
        double prev = r > 0 ? cJSON_GetArrayItem(cJSON_GetArrayItem(top, r - 1), 1)->valuedouble : INFINITY;
        double next = cJSON_GetArrayItem(cJSON_GetArrayItem(top, r + 1), 1)->valuedouble;
        if (prev - v > 2 * tol && v - next > 2 * tol) {
            st->rank_checked++;
            if (ours[r] != id)
                st->rank_failed++;
            CHECK_MSG(ours[r] == id, "%s: rank %d is id %d, reference %d", what, r, ours[r], id);
        }
    }
}

/* Runs one prompt and its teacher-forced greedy continuation against the reference. */
static void check_prompt(const llm_model *m, const char *label, ref_prompt *r, double tol, double tol_mean,
                         int greedy_steps, stats *st)
{
    llm_ctx_opts o;
    llm_ctx_opts_default(&o);
    o.n_ctx = 512;
    o.n_threads = 1;
    llm_err err = {{0}};
    llm_ctx *c = llm_ctx_new(m, &o, &err);
    CHECK_MSG(c != NULL, "%s: ctx: %s", label, err.msg);
    if (!c)
        return;
    const int nv = r->n_vocab;
    CHECK_EQ_INT(m->hp.n_vocab, nv);
    float *logits = malloc(sizeof(float) * (size_t)nv * (size_t)r->n_tokens);
    int rc = llm_forward(c, r->tokens, r->n_tokens, logits, true, &err);
    CHECK_MSG(rc == 0, "%s: forward: %s", label, err.msg);
    if (rc == 0) {
        const float *last = logits + (size_t)(r->n_tokens - 1) * nv;
        double mx = 0, sum = 0;
        for (int i = 0; i < nv; i++) {
            double d = fabs(last[i] - r->last_logits[i]);
            mx = fmax(mx, d);
            sum += d;
        }
        st->max_last = fmax(st->max_last, mx);
        st->mean_last = sum / nv;
        CHECK_MSG(mx <= tol, "%s: last-position logits max abs diff %.3g > %g", label, mx, tol);
        CHECK_MSG(st->mean_last <= tol_mean, "%s: last-position logits mean abs diff %.3g > %g", label,
                  st->mean_last, tol_mean);
        cJSON *top = cJSON_GetObjectItem(r->json, "top");
        for (int p = 0; p < r->n_tokens; p++) {
            char what[600];
            snprintf(what, sizeof what, "%s pos %d", label, p);
            check_top(what, logits + (size_t)p * nv, cJSON_GetArrayItem(top, p), nv, tol, st);
        }
        /* greedy, teacher forced */
        cJSON *gt = cJSON_GetObjectItem(r->json, "greedy_tokens");
        cJSON *gl = cJSON_GetObjectItem(r->json, "greedy_logits");
        cJSON *gm = cJSON_GetObjectItem(r->json, "greedy_margins");
        float *cur = malloc(sizeof(float) * (size_t)nv);
        memcpy(cur, last, sizeof(float) * (size_t)nv);
        int steps = cJSON_GetArraySize(gt) < greedy_steps ? cJSON_GetArraySize(gt) : greedy_steps;
        for (int s = 0; s < steps; s++) {
            int32_t want = cJSON_GetArrayItem(gt, s)->valueint;
            double margin = cJSON_GetArrayItem(gm, s)->valuedouble;
            double d = fabs(cur[want] - cJSON_GetArrayItem(gl, s)->valuedouble);
            st->max_greedy = fmax(st->max_greedy, d);
            CHECK_MSG(d <= tol, "%s: greedy step %d: logit of %d off by %.3g", label, s, want, d);
            if (margin > 2 * tol) {
                int got = argmax(cur, nv);
                st->greedy_checked++;
                st->greedy_failed += got != want;
                CHECK_MSG(got == want, "%s: greedy step %d: argmax %d, reference %d (margin %.3g)", label, s, got,
                          want, margin);
            }
            if (llm_forward(c, &want, 1, cur, false, &err)) {
                CHECK_MSG(0, "%s: greedy forward: %s", label, err.msg);
                break;
            }
        }
        free(cur);
    }
    free(logits);
    llm_ctx_free(c);
}

/* Compares a model file with one reference directory, all 4 prompts; prints a table row. */
static void check_reference(const char *model_path, const char *ref_dir, const char *label, double tol,
                            double tol_mean, int greedy_steps)
{
    llm_model m;
    llm_err err = {{0}};
    if (llm_model_load(&m, model_path, NULL, &err)) {
        CHECK_MSG(0, "%s: load: %s", label, err.msg);
        return;
    }
    for (int i = 0; i < 4; i++) {
        ref_prompt r;
        if (load_ref(ref_dir, i, &r)) {
            CHECK_MSG(0, "%s: cannot read reference prompt %d in %s", label, i, ref_dir);
            free_ref(&r);
            continue;
        }
        stats st = {0};
        char lab[512];
        snprintf(lab, sizeof lab, "%s prompt %d", label, i);
        check_prompt(&m, lab, &r, tol, tol_mean, greedy_steps, &st);
        printf("  %-34s p%d  last max %.2e mean %.1e  top20 %.2e  greedy %.2e  ranks %d/%d  greedy-argmax %d/%d\n",
               label, i, st.max_last, st.mean_last, st.max_top, st.max_greedy, st.rank_checked - st.rank_failed, st.rank_checked,
               st.greedy_checked - st.greedy_failed, st.greedy_checked);
        free_ref(&r);
    }
    llm_model_free(&m);
}

/* ---- invariance: threads, read mode, scalar kernels, batching ----------------------------- */

static float *run_all(const llm_model *m, const int32_t *toks, int n, int threads, int n_batch,
                      const llm_kernels *k, bool kv_f16)
{
    llm_ctx_opts o;
    llm_ctx_opts_default(&o);
    o.n_ctx = 256;
    o.n_threads = threads;
    o.n_batch = n_batch;
    o.kernels = k;
    o.kv_f16 = kv_f16;
    llm_err err = {{0}};
    llm_ctx *c = llm_ctx_new(m, &o, &err);
    if (!c)
        return NULL;
    float *l = malloc(sizeof(float) * (size_t)n * m->hp.n_vocab);
    if (llm_forward(c, toks, n, l, true, &err)) {
        free(l);
        l = NULL;
    }
    llm_ctx_free(c);
    return l;
}

static double max_diff(const float *a, const float *b, size_t n)
{
    double mx = 0;
    for (size_t i = 0; i < n; i++)
        mx = fmax(mx, fabs((double)a[i] - b[i]));
    return mx;
}

static void check_invariance(const char *model_path, const char *ref_dir, const char *label)
{
    ref_prompt r;
    if (load_ref(ref_dir, 3, &r)) {
        CHECK_MSG(0, "%s: reference prompt 3 unreadable", label);
        free_ref(&r);
        return;
    }
    llm_model m, mr;
    llm_err err = {{0}};
    llm_map_opts read_mode = {.mode = LLM_MAP_READ};
    if (llm_model_load(&m, model_path, NULL, &err) || llm_model_load(&mr, model_path, &read_mode, &err)) {
        CHECK_MSG(0, "%s: load: %s", label, err.msg);
        free_ref(&r);
        return;
    }
    const int n = r.n_tokens;
    const size_t total = (size_t)n * m.hp.n_vocab;
    float *base = run_all(&m, r.tokens, n, 1, 0, NULL, false);
    float *two = run_all(&m, r.tokens, n, 2, 0, NULL, false);
    float *rd = run_all(&mr, r.tokens, n, 1, 0, NULL, false);
    float *scalar = run_all(&m, r.tokens, n, 1, 0, llm_kernels_scalar(), false);
    float *split = run_all(&m, r.tokens, n, 2, 5, NULL, false);
    float *f16 = run_all(&m, r.tokens, n, 1, 0, NULL, true);
    CHECK(base && two && rd && scalar && split && f16);
    if (base && two && rd && scalar && split && f16) {
        double d2 = max_diff(base, two, total), dr = max_diff(base, rd, total);
        double ds = max_diff(base, scalar, total), db = max_diff(base, split, total);
        double dh = max_diff(base, f16, total);
        printf("  %-34s 2 threads %.2g  --no-mmap %.2g  scalar %.2g  batch-of-5 %.2g  kv-f16 %.2g\n", label, d2, dr,
               ds, db, dh);
        CHECK_MSG(d2 == 0, "%s: 2 threads differ from 1 by %g", label, d2);
        CHECK_MSG(dr == 0, "%s: read mode differs from mmap by %g", label, dr);
        CHECK_MSG(ds <= TOL_NATIVE, "%s: scalar kernels differ by %g", label, ds);
        CHECK_MSG(db <= 1e-5, "%s: batches of 5 differ by %g", label, db);
        /* F16 keeps 11 significant bits (5e-4 relative) of K and V, and the rounding flips above. */
        CHECK_MSG(dh <= 0.5, "%s: F16 KV cache differs by %g", label, dh);
    }
    free(base);
    free(two);
    free(rd);
    free(scalar);
    free(split);
    free(f16);
    free_ref(&r);
    llm_model_free(&m);
    llm_model_free(&mr);
}

/* ---- load errors: a copy of a real file with one thing wrong --------------------------------- */

typedef enum { BREAK_SHAPE, BREAK_MISSING, BREAK_ARCH, BREAK_HEADS, ONE_LAYER } variant_kind;

/* Writes a copy of src with one change: a defect, or (ONE_LAYER) only block 0 kept. Returns 0, or
 * -1 with msg. */
static int write_variant(const char *src_path, const char *dst, variant_kind kind, char *msg, size_t cap)
{
    llm_map map;
    gguf_file g;
    llm_err err = {{0}};
    msg[0] = 0;
    if (llm_map_open(&map, src_path, NULL, &err) || gguf_parse(&g, src_path, map.base, map.size, &err)) {
        snprintf(msg, cap, "setup: %.1000s", err.msg);
        return -1;
    }
    gguf_writer *w = gguf_writer_new(32);
    for (uint64_t i = 0; i < g.n_kv; i++) {
        const char *k = g.kv[i].key;
        const char *dot = strchr(k, '.');
        if (kind == BREAK_ARCH && !strcmp(k, "general.architecture"))
            gguf_w_str(w, k, "gpt-j");
        else if (kind == BREAK_HEADS && !strcmp(k, "llama.attention.head_count_kv"))
            gguf_w_u32(w, k, 3);
        else if (kind == ONE_LAYER && dot && !strcmp(dot, ".block_count"))
            gguf_w_u32(w, k, 1);
        else
            gguf_w_copy_kv(w, &g.kv[i]);
    }
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        const gguf_tensor *t = &g.tensors[i];
        int64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
        if (kind == BREAK_MISSING && !strcmp(t->name, "blk.1.ffn_up.weight"))
            continue;
        if (kind == ONE_LAYER && !strncmp(t->name, "blk.", 4) && strncmp(t->name, "blk.0.", 6))
            continue;
        if (kind == BREAK_SHAPE && !strcmp(t->name, "blk.0.attn_k.weight")) {
            ne[0] = t->ne[1]; /* [256,128] -> [128,256]: same bytes, wrong shape */
            ne[1] = t->ne[0];
        }
        gguf_w_tensor(w, t->name, t->type, t->n_dims, ne, t->data, &err);
    }
    int rc = gguf_writer_write(w, dst, NULL, NULL, &err);
    if (rc)
        snprintf(msg, cap, "setup: %.1000s", err.msg);
    gguf_writer_free(w);
    gguf_free(&g);
    llm_map_close(&map);
    return rc;
}

/* Writes src with one defect and returns the load error message (empty when it loaded). */
static void load_broken(const char *src_path, const char *dst, variant_kind kind, char *msg, size_t cap)
{
    if (write_variant(src_path, dst, kind, msg, cap))
        return;
    llm_model m;
    llm_err err = {{0}};
    if (llm_model_load(&m, dst, NULL, &err))
        snprintf(msg, cap, "%.1000s", err.msg);
    else
        llm_model_free(&m);
    unlink(dst);
}

static void check_load_errors(const char *sh)
{
    char src[1024], dst[128], msg[1200];
    snprintf(src, sizeof src, "%s/models/tiny-llama-q8_0.gguf", sh);
    snprintf(dst, sizeof dst, "%s/llmap-test-model-%d.gguf", access("/dev/shm", W_OK) ? "/tmp" : "/dev/shm",
             (int)getpid());
    load_broken(src, dst, BREAK_SHAPE, msg, sizeof msg);
    CHECK_CONTAINS(msg, "tensor 'blk.0.attn_k.weight': shape [128, 256");
    load_broken(src, dst, BREAK_MISSING, msg, sizeof msg);
    CHECK_CONTAINS(msg, "missing tensor 'blk.1.ffn_up.weight'");
    load_broken(src, dst, BREAK_ARCH, msg, sizeof msg);
    CHECK_CONTAINS(msg, "gpt-j");
    load_broken(src, dst, BREAK_HEADS, msg, sizeof msg);
    CHECK_CONTAINS(msg, "head_count_kv 3");
    llm_model m;
    llm_err err = {{0}};
    /* tokenizer-only files (no tensors): refused with a message, whatever the architecture */
    static const char *const VOCABS[] = {"llama-spm", "gpt-2", "bert-bge", "deepseek-llm", "phi-3"};
    for (size_t i = 0; i < sizeof VOCABS / sizeof *VOCABS; i++) {
        snprintf(src, sizeof src, "%s/models/vocab/ggml-vocab-%s.gguf", sh, VOCABS[i]);
        err.msg[0] = 0;
        CHECK_MSG(llm_model_load(&m, src, NULL, &err) == -1 && err.msg[0], "%s: loaded, or failed silently", src);
    }
    CHECK(llm_model_load(&m, "/nonexistent/model.gguf", NULL, &err) == -1);
    CHECK_CONTAINS(err.msg, "/nonexistent/model.gguf");
    llm_model_free(&m); /* safe after a failed load */
}

/* ---- KV cache operations (on F32 weights, where float rounding is the only difference) --- */

static llm_ctx *new_ctx(const llm_model *m, int n_ctx, bool kv_f16)
{
    llm_ctx_opts o;
    llm_ctx_opts_default(&o);
    o.n_ctx = n_ctx;
    o.kv_f16 = kv_f16;
    o.n_threads = 1;
    llm_err err = {{0}};
    llm_ctx *c = llm_ctx_new(m, &o, &err);
    CHECK_MSG(c != NULL, "ctx: %s", err.msg);
    return c;
}

/* Truncation re-evaluates bit-identically; a context shift gives what a fresh context fed the
 * kept tokens gives (keys re-rotated instead of computed at their new positions: ~1e-5);
 * overflow and bad ids are errors that leave the cache as it was. */
static void check_cache_ops(const char *model_path, const char *ref_dir, const char *label)
{
    ref_prompt r;
    llm_model m;
    llm_err err = {{0}};
    if (load_ref(ref_dir, 2, &r) || r.n_tokens < 64 || llm_model_load(&m, model_path, NULL, &err)) {
        CHECK_MSG(0, "%s: cannot set up cache tests: %s", label, err.msg);
        free_ref(&r);
        return;
    }
    const int nv = (int)m.hp.n_vocab;
    float *a = malloc(sizeof(float) * (size_t)nv), *b = malloc(sizeof(float) * (size_t)nv);
    const int32_t *T = r.tokens;

    /* truncate: [0,20) then back to 10 and [10,20) again */
    llm_ctx *c = new_ctx(&m, 128, false);
    if (c && !llm_forward(c, T, 20, a, false, &err)) {
        llm_ctx_kv_truncate(c, 10);
        CHECK_EQ_INT(llm_ctx_n_past(c), 10);
        CHECK(llm_forward(c, T + 10, 10, b, false, &err) == 0);
        CHECK_MSG(max_diff(a, b, (size_t)nv) == 0, "%s: re-evaluation after truncate differs by %g", label,
                  max_diff(a, b, (size_t)nv));
    }
    llm_ctx_free(c);

    /* Context shift. In one layer, a token's keys and values depend only on the token and its
     * position, so after [0,60) with [10,30) dropped, token 60 must see exactly what a fresh
     * context fed [0,10) + [30,61) sees, up to the re-rotation's rounding. (With more layers
     * the kept tokens still carry what the dropped ones contributed, as in llama.cpp.) */
    char one[1200], msg[1200];
    snprintf(one, sizeof one, "%.1100s.1layer", model_path);
    llm_model m1;
    if (write_variant(model_path, one, ONE_LAYER, msg, sizeof msg) || llm_model_load(&m1, one, NULL, &err)) {
        CHECK_MSG(0, "%s: one-layer variant: %s %s", label, msg, err.msg);
    } else {
        for (int f16 = 0; f16 < 2; f16++) {
            c = new_ctx(&m1, 128, f16);
            llm_ctx *f = new_ctx(&m1, 128, f16);
            int32_t kept[64];
            memcpy(kept, T, 10 * sizeof *T);
            memcpy(kept + 10, T + 30, 31 * sizeof *T);
            if (c && f && !llm_forward(c, T, 60, NULL, false, &err)) {
                CHECK(llm_ctx_kv_shift(c, 10, 20, &err) == 0);
                CHECK_EQ_INT(llm_ctx_n_past(c), 40);
                CHECK(llm_forward(c, T + 60, 1, a, false, &err) == 0);
                CHECK(llm_forward(f, kept, 41, b, false, &err) == 0);
                double d = max_diff(a, b, (size_t)nv);
                /* F16 keys are rounded again after the re-rotation: 2^-11 relative per key */
                double tol = f16 ? 1e-2 : 1e-4;
                printf("  %-34s context shift vs fresh evaluation (1 layer, %s KV): %.2g\n", label,
                       f16 ? "F16" : "F32", d);
                CHECK_MSG(d <= tol, "%s: logits after a context shift differ from a fresh run by %g", label, d);
                CHECK(llm_ctx_kv_shift(c, 30, 20, &err) == -1); /* beyond what is cached */
            }
            llm_ctx_free(c);
            llm_ctx_free(f);
        }
        llm_model_free(&m1);
    }
    unlink(one);

    /* errors leave the cache unchanged */
    c = new_ctx(&m, 16, false);
    if (c) {
        CHECK(llm_forward(c, T, 10, a, false, &err) == 0);
        CHECK(llm_forward(c, T, 7, a, false, &err) == -1);
        CHECK_CONTAINS(err.msg, "context is full");
        int32_t bad[2] = {T[0], (int32_t)nv};
        CHECK(llm_forward(c, bad, 2, a, false, &err) == -1);
        CHECK_CONTAINS(err.msg, "outside the vocabulary");
        CHECK_EQ_INT(llm_ctx_n_past(c), 10);
        CHECK(llm_forward(c, T + 10, 6, a, false, &err) == 0);
        CHECK_EQ_INT(llm_ctx_n_past(c), 16);
    }
    llm_ctx_free(c);
    free(a);
    free(b);
    free_ref(&r);
    llm_model_free(&m);
}

/* ---- F32 compute: dequantized copies vs the dequantized-f32 references --------------------- */

/* Makes an all-F32 copy of each quantized file with `llmap quantize IN OUT f32` (the tool under
 * test is $LLMAP_BIN) and compares it with the dequantized-f32 reference of its source. */
static void check_f32(const char *sh, const char *const *stems, size_t n)
{
    const char *bin = llmap_bin();
    if (access(bin, X_OK)) {
        SKIP("%s not found (set LLMAP_BIN): F32 comparisons not run", bin);
        return;
    }
    /* tmpfs when there is one: the writer fsyncs, and ~70 MB per file need not hit a disk */
    char dir[64];
    snprintf(dir, sizeof dir, "%s/llmap-test-model-XXXXXX", access("/dev/shm", W_OK) ? "/tmp" : "/dev/shm");
    if (!mkdtemp(dir)) {
        CHECK_MSG(0, "mkdtemp failed");
        return;
    }
    printf("dequantized to F32 with `llmap quantize ... f32` (tolerance %g):\n", TOL_F32);
    for (size_t i = 0; i < n; i++) {
        char src[1024], out[1200], cmd[4096], ref[1024], label[256];
        snprintf(src, sizeof src, "%s/models/%s.gguf", sh, stems[i]);
        snprintf(out, sizeof out, "%s/%s-f32.gguf", dir, stems[i]);
        snprintf(cmd, sizeof cmd, "'%s' quantize --quiet '%s' '%s' f32 >/dev/null", bin, src, out);
        int rc = system(cmd);
        CHECK_MSG(rc == 0, "%s failed (exit %d)", cmd, rc);
        if (rc == 0) {
            snprintf(ref, sizeof ref, "%s/reference/%s/dequantized-f32", sh, stems[i]);
            snprintf(label, sizeof label, "%s (f32)", stems[i]);
            /* F32 weights are 4x the bytes: 12 greedy steps keep the run short (all 32 native) */
            check_reference(out, ref, label, TOL_F32, TOL_F32_MEAN, 12);
            if (i == 0 || i == 3) /* one llama (RoPE normal) and one qwen2 (NeoX) */
                check_cache_ops(out, ref, label);
        }
        unlink(out);
    }
    rmdir(dir);
}

/* The attention kernels (all query heads of a key/value head at once) must give every (head,
 * row) exactly the one-head dot's bits -- ggml_vec_dot_f32's order, or the 8-lane order of a
 * batch's weighted sums -- for head counts 1..8, row counts around the blocks of eight keys, and
 * row lengths with and without a tail after the 32-element steps. */
static void check_attn_heads(void)
{
    if (!llm_ops_have_avx2()) {
        printf("note: no AVX2+FMA: the attention kernels are not tested\n");
        return;
    }
    enum { MAXN = 136, MAXR = 19, STRIDE = 144, MAXQ = LLM_ATTN_HEADS };
    static float x[MAXR * STRIDE], y[MAXQ][MAXN], out[MAXQ * MAXR];
    uint64_t g = 4242;
    for (int i = 0; i < MAXR * STRIDE; i++) {
        g = g * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(g >> 11) * 0x1p-53 * 2 - 1);
    }
    const float *yp[MAXQ];
    for (int q = 0; q < MAXQ; q++) {
        for (int i = 0; i < MAXN; i++)
            y[q][i] = (float)sin(i * 0.29 + q * 0.7) * (float)(q + 1);
        yp[q] = y[q];
    }
    static const int ns[] = {29, 32, 61, 64, 96, 128, 131};
    int same = 0, close = 0, total = 0;
    for (int kind = 0; kind < 3; kind++)
        for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
            for (int nq = 1; nq <= MAXQ; nq++)
                for (int rows = 1; rows <= MAXR; rows += (rows < 9 ? 1 : 5)) {
                    const int n = kind == 2 ? ns[a] / 8 * 8 : ns[a]; /* lanes8: multiples of 8 */
                    memset(out, 0xff, sizeof out);
                    if (kind == 0)
                        llm_attn_scores_avx2(n, rows, x, STRIDE, nq, yp, out, MAXR);
                    else if (kind == 1)
                        llm_attn_values_avx2(n, rows, x, STRIDE, nq, yp, out, MAXR);
                    else
                        llm_attn_values_lanes8_avx2(n, rows, x, STRIDE, nq, yp, out, MAXR);
                    for (int q = 0; q < nq; q++)
                        for (int r = 0; r < rows; r++) {
                            float one = kind == 2 ? llm_dot_f32_lanes8_avx2(n, x + r * STRIDE, y[q])
                                                  : llm_dot_f32_ggml_avx2(n, x + r * STRIDE, y[q]);
                            double ref = 0, mag = 0;
                            for (int i = 0; i < n; i++) {
                                ref += (double)x[r * STRIDE + i] * y[q][i];
                                mag += fabs((double)x[r * STRIDE + i] * y[q][i]);
                            }
                            same += memcmp(&one, &out[q * MAXR + r], sizeof one) == 0;
                            close += fabs(out[q * MAXR + r] - ref) <= 1e-6 * mag + 1e-7;
                            total++;
                        }
                }
    CHECK_MSG(same == total, "attention kernels: %d of %d results differ from the one-head dot's bits", total - same,
              total);
    CHECK_MSG(close == total, "attention kernels: %d of %d results off the double-precision dot", total - close, total);
}

/* ---- driver --------------------------------------------------------------------------------- */

int main(void)
{
    check_attn_heads();
    const char *sh = shared_dir();
    if (!sh) {
        SKIP("shared data not found (set LLMAP_SHARED): reference comparisons not run");
        TEST_END("model");
    }
    static const char *const STEMS[] = {"tiny-llama-q8_0", "tiny-llama-q4_0", "tiny-llama-q4_k_m",
                                        "tiny-qwen2-q8_0", "tiny-qwen2-q4_0"};
    char model[1024], ref[1024];
    printf("native (tolerance %g):\n", TOL_NATIVE);
    for (size_t i = 0; i < sizeof STEMS / sizeof *STEMS; i++) {
        snprintf(model, sizeof model, "%s/models/%s.gguf", sh, STEMS[i]);
        snprintf(ref, sizeof ref, "%s/reference/%s", sh, STEMS[i]);
        check_reference(model, ref, STEMS[i], TOL_NATIVE, TOL_NATIVE_MEAN, 32);
    }
    check_f32(sh, STEMS, sizeof STEMS / sizeof *STEMS);
    check_load_errors(sh);
    printf("invariance (prompt 3, all positions, max abs diff vs 1 thread mmap SIMD):\n");
    for (size_t i = 0; i < sizeof STEMS / sizeof *STEMS; i++) {
        snprintf(model, sizeof model, "%s/models/%s.gguf", sh, STEMS[i]);
        snprintf(ref, sizeof ref, "%s/reference/%s", sh, STEMS[i]);
        check_invariance(model, ref, STEMS[i]);
    }
    TEST_END("model");
}
