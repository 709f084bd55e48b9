/*
 * Synthetic models (llmap synth): a GGUF file with a real architecture's metadata and tensor
 * shapes, a real tokenizer copied from a vocabulary GGUF, and seeded random weights. They
 * produce gibberish, but they exercise every code path and have the exact size and memory
 * traffic of the real model, which is what tests and benchmarks need.
 *
 * Determinism: every weight row gets its own random stream, seeded from (seed, tensor index,
 * row) through splitmix64 into xoshiro256**, with (polar) Box-Muller normals. A row's values therefore
 * do not depend on which thread makes it or in which order, so the file is byte-identical for
 * a given seed whatever the thread count.
 *
 * Scales follow ../shared/README.md section 3, so logits have a standard deviation near 3
 * like the shipped tiny models: projections N(0, 1/sqrt(n_in)), norm weights 1 + N(0, 0.05),
 * q/k/v biases N(0, 0.1), token_embd N(0, 1) with a separate output N(0, 3/sqrt(n_embd)), or
 * token_embd N(0, 3/sqrt(n_embd)) when it is tied to the output.
 *
 * Memory: rows are generated as F32 and quantized one at a time inside the writer's fill
 * callback, so an 8B model needs one tensor's output buffer, not 8B floats.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "mem/mem.h"
#include "synth/synth.h"
#include "util/util.h"

/* ---- random numbers ------------------------------------------------------------------------ */

/* A row's stream: util's xoshiro256**, its state from (seed, tensor, row) through splitmix64. */
static void row_rng_seed(llm_rng *r, uint64_t seed, uint64_t tensor, uint64_t row)
{
    uint64_t x = seed ^ llm_splitmix64(&tensor) ^ llm_rotl64(row * 0xD1B54A32D192ED03ull, 17);
    for (int i = 0; i < 4; i++)
        r->s[i] = llm_splitmix64(&x);
}

/* Uniform in [-1, 1). */
static double uniform_pm1(llm_rng *r)
{
    return (double)(llm_rng_next(r) >> 11) * 0x1.0p-52 - 1.0;
}

/* n standard normals by the polar form of Box-Muller (Marsaglia): a point drawn uniformly in
 * the unit disc gives two independent normals with one log and one sqrt, no trigonometry
 * (which dominated generation time). Both outputs of each pair are used. */
static void normals(llm_rng *r, float *dst, int64_t n)
{
    for (int64_t i = 0; i < n; i += 2) {
        double u, v, q;
        do {
            u = uniform_pm1(r);
            v = uniform_pm1(r);
            q = u * u + v * v;
        } while (q >= 1.0 || q == 0.0);
        double f = sqrt(-2.0 * log(q) / q);
        dst[i] = (float)(u * f);
        if (i + 1 < n)
            dst[i + 1] = (float)(v * f);
    }
}

/* ---- shapes ---------------------------------------------------------------------------------- */

/* Shapes of real models. qwen2 variants keep the dimensions and add what makes qwen2 differ:
 * q/k/v biases, RoPE base 1e6 (NeoX pairs, decided by the loader from the architecture), and
 * tied embeddings for the small ones, as Qwen2-0.5B/1.5B have. */
typedef struct preset {
    const char *name;
    uint32_t n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx;
    float llama_rope_base;
    bool qwen2_tied;
} preset;

static const preset PRESETS[] = {
    /* the shared tiny models (qwen2 uses 2 kv heads there) */
    {"tiny", 256, 4, 8, 4, 768, 2048, 10000.0f, true},
    /* TinyLlama-1.1B */
    {"1.1b", 2048, 22, 32, 4, 5632, 2048, 10000.0f, true},
    /* open_llama_3b: n_embd 3200 is not a multiple of 256, so K-quant mixes fall back to Q5_0/Q8_0
     * for its rows, exactly as llama-quantize does */
    {"3b", 3200, 26, 32, 32, 8640, 2048, 10000.0f, false},
    /* Meta-Llama-3-8B (its 128256-token vocabulary comes from the vocabulary file, if given) */
    {"8b", 4096, 32, 32, 8, 14336, 8192, 500000.0f, false},
};

static const char *const ARCHS[] = {"llama", "qwen2", "qwen3", "gemma", "phi3"};

/* What the newer architectures change in a preset. qwen3 (like Qwen3-0.6B) and gemma (like
 * gemma-2b: one kv head, head_dim 256 for n_embd 2048) have a head_dim other than
 * n_embd / n_head, so the tiny ones do too; gemma's output is always token_embd; phi3
 * (Phi-3-mini) has as many kv heads as heads and an untied output. */
static void arch_adjust(llm_synth_shape *s, const char *name)
{
    bool tiny = !strcmp(name, "tiny");
    if (!strcmp(s->arch, "qwen3")) {
        s->rope_base = 1000000.0f;
        s->tied_output = true;
        if (tiny)
            s->head_dim = 64;
    } else if (!strcmp(s->arch, "gemma")) {
        s->tied_output = true;
        s->n_head_kv = 1;
        if (tiny)
            s->head_dim = 64;
    } else if (!strcmp(s->arch, "phi3")) {
        s->n_head_kv = s->n_head;
        s->tied_output = false;
    }
}

int llm_synth_preset(const char *name, const char *arch, llm_synth_shape *s, llm_err *err)
{
    const char *a = NULL;
    for (size_t i = 0; i < sizeof ARCHS / sizeof *ARCHS; i++)
        if (!strcmp(arch, ARCHS[i]))
            a = ARCHS[i];
    if (!a)
        return llm_errf(err, "unknown architecture '%s' (llama, qwen2, qwen3, gemma or phi3)", arch);
    bool qwen2 = !strcmp(a, "qwen2");
    for (size_t i = 0; i < sizeof PRESETS / sizeof *PRESETS; i++) {
        const preset *p = &PRESETS[i];
        if (strcmp(name, p->name))
            continue;
        *s = (llm_synth_shape){
            .arch = a,
            .n_embd = p->n_embd, .n_layer = p->n_layer, .n_head = p->n_head,
            .n_head_kv = qwen2 && !strcmp(name, "tiny") ? 2 : p->n_head_kv,
            .n_ff = p->n_ff, .n_ctx = p->n_ctx,
            .rope_base = qwen2 ? 1000000.0f : p->llama_rope_base,
            .tied_output = qwen2 && p->qwen2_tied,
            .qkv_bias = qwen2,
        };
        arch_adjust(s, name);
        return 0;
    }
    return llm_errf(err, "unknown shape preset '%s' (tiny, 1.1b, 3b, 8b)", name);
}

static uint32_t head_dim_of(const llm_synth_shape *s)
{
    return s->head_dim ? s->head_dim : s->n_embd / s->n_head;
}

static int check_shape(const llm_synth_shape *s, llm_err *err)
{
    if (!s->n_embd || !s->n_layer || !s->n_head || !s->n_head_kv || !s->n_ff || !s->n_ctx)
        return llm_errf(err, "every dimension must be positive (n_embd %u, n_layer %u, n_head %u, n_head_kv %u, "
                             "n_ff %u, ctx %u)", s->n_embd, s->n_layer, s->n_head, s->n_head_kv, s->n_ff, s->n_ctx);
    if (!s->head_dim && s->n_embd % s->n_head)
        return llm_errf(err, "n_embd %u is not a multiple of n_head %u", s->n_embd, s->n_head);
    if (s->n_head % s->n_head_kv)
        return llm_errf(err, "n_head %u is not a multiple of n_head_kv %u", s->n_head, s->n_head_kv);
    if (head_dim_of(s) % 2 || head_dim_of(s) > 1024)
        return llm_errf(err, "head dimension %u is odd or too large (RoPE rotates pairs)", head_dim_of(s));
    if (!strcmp(s->arch, "gemma") && !s->tied_output)
        return llm_errf(err, "gemma's output projection is always token_embd (llama.cpp never reads an output.weight)");
    if (s->n_layer > 4096 || s->n_embd > 65536 || s->n_ff > 1u << 20)
        return llm_errf(err, "dimensions too large");
    return 0;
}

/* ---- tensors --------------------------------------------------------------------------------- */

typedef enum dist {
    DIST_NORMAL,   /* N(0, sigma) */
    DIST_NORM_ONE, /* 1 + N(0, sigma): RMSNorm weights */
} dist;

typedef struct stensor {
    char name[64];
    uint32_t n_dims;
    int64_t ne[2];
    llm_type type;
    dist dist;
    float sigma;
} stensor;

typedef struct plan {
    stensor *t;
    int n, cap;
} plan;

static void add(plan *p, const char *name, int64_t ne0, int64_t ne1, dist d, float sigma)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 64;
        p->t = llm_xrealloc(p->t, (size_t)p->cap * sizeof *p->t);
    }
    stensor *t = &p->t[p->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->n_dims = ne1 ? 2 : 1;
    t->ne[0] = ne0;
    t->ne[1] = ne1 ? ne1 : 1;
    t->dist = d;
    t->sigma = sigma;
}

/* The tensors in the order of the shared tiny models (README section 3); for qwen3, gemma and
 * phi3 the same order with their differences: qwen3's per-head q/k norms after the
 * projections, phi3's fused attn_qkv (Q, K, V rows) and ffn_up (gate rows, then up rows) in
 * place of the separate tensors. */
static void plan_tensors(plan *p, const llm_synth_shape *s, uint32_t n_vocab)
{
    const int64_t E = s->n_embd, F = s->n_ff, hd = head_dim_of(s), KV = hd * s->n_head_kv, Q = hd * s->n_head;
    const float proj = 1.0f / sqrtf((float)E), out = 3.0f / sqrtf((float)E);
    const bool phi3 = !strcmp(s->arch, "phi3"), qk_norm = !strcmp(s->arch, "qwen3");
    /* gemma adds sqrt(n_embd) * token_embd to the residual stream and reads the logits through
     * the same table, so with random weights the input token would out-score every other by
     * sqrt(n_embd) standard deviations and greedy would only repeat it; 8x larger block outputs
     * let the layers, not the copy of the input, decide the prediction */
    const float out_gain = !strcmp(s->arch, "gemma") ? 8.0f : 1.0f;
    add(p, "token_embd.weight", E, n_vocab, DIST_NORMAL, s->tied_output ? out : 1.0f);
    add(p, "output_norm.weight", E, 0, DIST_NORM_ONE, 0.05f);
    if (!s->tied_output)
        add(p, "output.weight", E, n_vocab, DIST_NORMAL, out);
    for (uint32_t l = 0; l < s->n_layer; l++) {
        char n[64];
#define BLK(suffix) (snprintf(n, sizeof n, "blk.%u.%s", l, suffix), n)
        add(p, BLK("attn_norm.weight"), E, 0, DIST_NORM_ONE, 0.05f);
        if (phi3) {
            add(p, BLK("attn_qkv.weight"), E, Q + 2 * KV, DIST_NORMAL, proj);
        } else {
            add(p, BLK("attn_q.weight"), E, Q, DIST_NORMAL, proj);
            add(p, BLK("attn_k.weight"), E, KV, DIST_NORMAL, proj);
            add(p, BLK("attn_v.weight"), E, KV, DIST_NORMAL, proj);
        }
        if (s->qkv_bias) {
            add(p, BLK("attn_q.bias"), Q, 0, DIST_NORMAL, 0.1f);
            add(p, BLK("attn_k.bias"), KV, 0, DIST_NORMAL, 0.1f);
            add(p, BLK("attn_v.bias"), KV, 0, DIST_NORMAL, 0.1f);
        }
        if (qk_norm) {
            add(p, BLK("attn_q_norm.weight"), hd, 0, DIST_NORM_ONE, 0.05f);
            add(p, BLK("attn_k_norm.weight"), hd, 0, DIST_NORM_ONE, 0.05f);
        }
        add(p, BLK("attn_output.weight"), Q, E, DIST_NORMAL, out_gain / sqrtf((float)Q));
        add(p, BLK("ffn_norm.weight"), E, 0, DIST_NORM_ONE, 0.05f);
        if (phi3) {
            add(p, BLK("ffn_up.weight"), E, 2 * F, DIST_NORMAL, proj);
        } else {
            add(p, BLK("ffn_gate.weight"), E, F, DIST_NORMAL, proj);
            add(p, BLK("ffn_up.weight"), E, F, DIST_NORMAL, proj);
        }
        add(p, BLK("ffn_down.weight"), F, E, DIST_NORMAL, out_gain / sqrtf((float)F));
#undef BLK
    }
}

/* ---- generating rows in parallel -------------------------------------------------------------- */

typedef struct gen_job {
    const stensor *t;
    uint64_t seed, index;
    uint8_t *dst;
    size_t row_bytes;
    float **bufs;
    atomic_int failed;
} gen_job;

static void gen_rows(void *ctx, int ith, int nth)
{
    gen_job *j = ctx;
    const stensor *t = j->t;
    float *buf = j->bufs[ith];
    for (int64_t r = t->ne[1] * ith / nth; r < t->ne[1] * (ith + 1) / nth; r++) {
        llm_rng rng;
        row_rng_seed(&rng, j->seed, j->index, (uint64_t)r);
        normals(&rng, buf, t->ne[0]);
        for (int64_t i = 0; i < t->ne[0]; i++)
            buf[i] = (t->dist == DIST_NORM_ONE ? 1.0f : 0.0f) + t->sigma * buf[i];
        if (llm_quantize_row(t->type, buf, j->dst + (size_t)r * j->row_bytes, t->ne[0])) {
            atomic_store(&j->failed, 1);
            return;
        }
    }
}

typedef struct synth_ctx {
    const plan *p;
    int next;
    uint64_t seed;
    llm_pool *pool;
    float **bufs;
    bool progress, tty;
    double t0;
} synth_ctx;

static int fill(void *ctx, const char *name, void *dst, uint64_t size, llm_err *err)
{
    synth_ctx *c = ctx;
    if (c->next >= c->p->n || strcmp(c->p->t[c->next].name, name))
        return llm_errf(err, "tensor '%s': written out of order", name);
    const stensor *t = &c->p->t[c->next];
    if (c->progress) {
        fprintf(stderr, "%s[%4d/%4d] %-28s %-5s %.1fs%s", c->tty ? "\r" : "", c->next + 1, c->p->n, name,
                llm_type_name(t->type), llm_now() - c->t0, c->tty ? "\033[K" : "\n");
        fflush(stderr);
    }
    gen_job j = {.t = t, .seed = c->seed, .index = (uint64_t)c->next, .dst = dst,
                 .row_bytes = llm_row_size(t->type, t->ne[0]), .bufs = c->bufs};
    atomic_init(&j.failed, 0);
    if ((uint64_t)t->ne[1] * j.row_bytes != size)
        return llm_errf(err, "tensor '%s': size mismatch", name);
    llm_pool_run(c->pool, gen_rows, &j);
    if (atomic_load(&j.failed))
        return llm_errf(err, "tensor '%s': cannot quantize to %s", name, llm_type_name(t->type));
    c->next++;
    return 0;
}

/* ---- metadata ------------------------------------------------------------------------------- */

static const char LLAMA2_TEMPLATE[] =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}"
    "{% endfor %}";

static const char CHATML_TEMPLATE[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

static void w_arch_u32(gguf_writer *w, const char *arch, const char *key, uint32_t v)
{
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    gguf_w_u32(w, k, v);
}

static void w_arch_f32(gguf_writer *w, const char *arch, const char *key, float v)
{
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    gguf_w_f32(w, k, v);
}

static bool str_is(const gguf_kv *kv, const char *s)
{
    return kv && kv->type == GGUF_STRING && kv->v.str.len == strlen(s) && !memcmp(kv->v.str.ptr, s, kv->v.str.len);
}

/* Architecture keys, then every tokenizer.* key of the vocabulary file, then what the
 * tokenizer needs that old vocabulary files lack (add_bos/add_eos, a chat template). */
static void write_metadata(gguf_writer *w, const llm_synth_opts *o, const gguf_file *vocab, uint32_t n_vocab)
{
    const llm_synth_shape *s = &o->shape;
    char name[128];
    snprintf(name, sizeof name, "synth-%s", s->arch);
    gguf_w_str(w, "general.architecture", s->arch);
    gguf_w_str(w, "general.name", o->name ? o->name : name);
    gguf_w_str(w, "general.type", "model");
    w_arch_u32(w, s->arch, "context_length", s->n_ctx);
    w_arch_u32(w, s->arch, "embedding_length", s->n_embd);
    w_arch_u32(w, s->arch, "block_count", s->n_layer);
    w_arch_u32(w, s->arch, "feed_forward_length", s->n_ff);
    w_arch_u32(w, s->arch, "attention.head_count", s->n_head);
    w_arch_u32(w, s->arch, "attention.head_count_kv", s->n_head_kv);
    if (s->head_dim) {
        w_arch_u32(w, s->arch, "attention.key_length", s->head_dim);
        w_arch_u32(w, s->arch, "attention.value_length", s->head_dim);
    }
    w_arch_u32(w, s->arch, "rope.dimension_count", head_dim_of(s));
    w_arch_f32(w, s->arch, "rope.freq_base", s->rope_base);
    /* Qwen3 and Gemma ship 1e-6 */
    bool eps6 = !strcmp(s->arch, "qwen3") || !strcmp(s->arch, "gemma");
    w_arch_f32(w, s->arch, "attention.layer_norm_rms_epsilon", eps6 ? 1e-6f : 1e-5f);
    w_arch_u32(w, s->arch, "vocab_size", n_vocab);
    for (uint64_t i = 0; i < vocab->n_kv; i++)
        if (!strncmp(vocab->kv[i].key, "tokenizer.", 10))
            gguf_w_copy_kv(w, &vocab->kv[i]);
    bool spm = str_is(gguf_find(vocab, "tokenizer.ggml.model"), "llama");
    if (!gguf_find(vocab, "tokenizer.ggml.add_bos_token"))
        gguf_w_bool(w, "tokenizer.ggml.add_bos_token", spm);
    if (!gguf_find(vocab, "tokenizer.ggml.add_eos_token"))
        gguf_w_bool(w, "tokenizer.ggml.add_eos_token", false);
    if (!gguf_find(vocab, "tokenizer.chat_template"))
        gguf_w_str(w, "tokenizer.chat_template",
                   spm && strncmp(s->arch, "qwen", 4) ? LLAMA2_TEMPLATE : CHATML_TEMPLATE);
    const llm_quant_target *q = &o->target;
    if (q->type != LLM_F32 && q->type != LLM_F16 && q->type != LLM_BF16)
        gguf_w_u32(w, "general.quantization_version", 2);
    gguf_w_u32(w, "general.file_type", q->file_type);
}

/* ---- the file ----------------------------------------------------------------------------- */

static int assign_types(plan *p, const llm_synth_opts *o, llm_err *err)
{
    for (int i = 0; i < p->n; i++) {
        stensor *t = &p->t[i];
        int layer = -1;
        if (!strncmp(t->name, "blk.", 4))
            layer = atoi(t->name + 4);
        t->type = llm_quant_tensor_type(&o->target, t->name, t->n_dims, t->ne[0], layer, (int)o->shape.n_layer,
                                        !o->shape.tied_output);
        const llm_type_info *ti = llm_type_get(t->type);
        if (!ti || t->ne[0] % ti->blck)
            return llm_errf(err, "tensor '%s': row length %lld is not a multiple of the %s block size %u", t->name,
                            (long long)t->ne[0], llm_type_name(t->type), ti ? ti->blck : 0);
    }
    return 0;
}

int llm_synth_write(const char *out_path, const llm_synth_opts *o, llm_err *err)
{
    if (check_shape(&o->shape, err))
        return -1;
    if (!o->vocab_path)
        return llm_errf(err, "a vocabulary file is needed (the tokenizer is copied from it)");
    llm_map vm = {0};
    gguf_file vocab = {0};
    plan p = {0};
    gguf_writer *w = NULL;
    synth_ctx c = {0};
    int rc = llm_map_open(&vm, o->vocab_path, NULL, err);
    if (!rc)
        rc = gguf_parse(&vocab, o->vocab_path, vm.base, vm.size, err);
    const gguf_kv *toks = rc ? NULL : gguf_find(&vocab, "tokenizer.ggml.tokens");
    if (!rc && (!toks || toks->type != GGUF_ARRAY || toks->arr_type != GGUF_STRING || toks->arr_n == 0 ||
                toks->arr_n > 1u << 24))
        rc = llm_errf(err, "%s: no usable tokenizer.ggml.tokens array", o->vocab_path);
    if (rc)
        goto done;
    uint32_t n_vocab = (uint32_t)toks->arr_n;
    plan_tensors(&p, &o->shape, n_vocab);
    if ((rc = assign_types(&p, o, err)))
        goto done;
    w = gguf_writer_new(0);
    write_metadata(w, o, &vocab, n_vocab);
    int64_t max_ne0 = 1;
    for (int i = 0; i < p.n && !rc; i++) {
        rc = gguf_w_tensor(w, p.t[i].name, p.t[i].type, p.t[i].n_dims, p.t[i].ne, NULL, err);
        if (p.t[i].ne[0] > max_ne0)
            max_ne0 = p.t[i].ne[0];
    }
    if (rc)
        goto done;
    c = (synth_ctx){.p = &p, .seed = o->seed, .progress = o->progress, .tty = isatty(2), .t0 = llm_now()};
    c.pool = llm_pool_new(o->n_threads);
    c.bufs = llm_xcalloc((size_t)llm_pool_threads(c.pool), sizeof *c.bufs);
    for (int i = 0; i < llm_pool_threads(c.pool); i++)
        c.bufs[i] = llm_xmalloc((size_t)(max_ne0 + 1) * sizeof(float));
    rc = gguf_writer_write(w, out_path, fill, &c, err);
    if (c.progress && c.tty)
        fputc('\n', stderr);
done:
    if (c.bufs)
        for (int i = 0; i < llm_pool_threads(c.pool); i++)
            free(c.bufs[i]);
    free(c.bufs);
    llm_pool_free(c.pool);
    gguf_writer_free(w);
    free(p.t);
    gguf_free(&vocab);
    llm_map_close(&vm);
    return rc;
}
