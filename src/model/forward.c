/*
 * forward — the context (KV cache, scratch, thread pool) and the transformer forward pass.
 *
 * A batch of tokens goes through the layers together, so every weight matrix is read once per
 * batch (prompt processing is matrix x matrix) and once per token in generation, which is the
 * memory-bandwidth floor. All activations are F32; the matrix multiplications quantize them to
 * the weights' vec-dot type inside llm_matmul, as ggml does.
 *
 * Layout of the cache, per layer: K head-major, [n_head_kv][n_ctx][head_dim] (key_at), so the
 * keys one query head reads are contiguous; and V transposed, [n_head_kv * head_dim][position],
 * so the attention-weighted sum over positions is one contiguous dot product per output
 * element. (llama.cpp keeps K as [position][n_head_kv * head_dim]: read from memory, one head's
 * 256-byte slices 1 KiB apart took 1.9x as long as the same keys in one run -- scores of one
 * layer at 2048 positions 470-526 vs 253-275 us; whole attention of a generated token,
 * alternated in one process, 1.1B: 11.5-12.5 -> 7.7-9.5 ms at 2048, 2.9-3.6 -> 1.8-2.1 at 512.)
 *
 * Work split: matrix multiplications are split by the kernels across the pool; attention is
 * split by (token, up to LLM_ATTN_HEADS query heads of one key/value head), which read the
 * same cached rows (by (token, head) with an F16 cache or without SIMD); the O(n) element-wise
 * ops run on the calling thread. Every output element is computed by exactly one thread in a
 * fixed order, so results do not depend on the number of threads.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "model/ops.h"

struct llm_ctx {
    const llm_model *m;
    const llm_kernels *k;
    llm_pool *pool;
    bool own_pool;
    int n_threads;
    int n_ctx, n_batch, n_past;
    int v_stride;         /* row length of V^T: n_ctx rounded up to 32 (see attend_group) */
    bool kv_f16;
    bool simd_ops;        /* soft-max / SwiGLU through ops_avx2.c (not with the scalar kernels) */
    size_t kv_elt;        /* bytes per cache element: 4 or 2 */
    void **kc, **vc;      /* per layer: K [n_ctx][kv_dim], V^T [kv_dim][v_stride] */

    /* scratch for one batch of up to n_batch tokens (token-major rows) */
    float *x;             /* residual stream [n_batch][n_embd] */
    float *xb, *xb2;      /* normed input / projection output [n_batch][n_embd] */
    float *q, *att;       /* [n_batch][q_dim] */
    float *kx, *vx;       /* [n_batch][kv_dim] */
    float *hb, *hb2;      /* [n_batch][n_ff] */
    float *rope_cs;       /* [n_batch][n_rot] */
    void *mm_scratch;     /* llm_matmul's quantized activations */
    uint8_t *att_scratch; /* per thread: att_stride bytes */
    size_t att_stride;
    size_t bytes;
};

void llm_ctx_opts_default(llm_ctx_opts *o)
{
    memset(o, 0, sizeof *o);
}

int llm_ctx_n_ctx(const llm_ctx *c) { return c->n_ctx; }

/* Element offset of key/value head h's cached key at position pos in a layer's K. */
static inline size_t key_at(const llm_ctx *c, int h, size_t pos)
{
    return ((size_t)h * (size_t)c->n_ctx + pos) * c->m->hp.head_dim;
}
int llm_ctx_n_past(const llm_ctx *c) { return c->n_past; }
const llm_model *llm_ctx_model(const llm_ctx *c) { return c->m; }
size_t llm_ctx_bytes(const llm_ctx *c) { return c->bytes; }

/* ---- construction ------------------------------------------------------------------------ */

/* Buffers are committed now, not on first use (an out-of-memory shows here, not mid-answer, and
 * RSS matches `llmap fit`), by the kernel in one call rather than a trapped touch per page:
 * under shadow paging that touch is what made a context cost more than a short first answer. */
static void *ctx_alloc(llm_ctx *c, size_t n, bool *oom)
{
    void *p = calloc(1, n ? n : 1);
    if (!p || llm_mem_commit(p, n) != 0)
        *oom = true;
    c->bytes += n;
    return p;
}

static size_t max_matmul_scratch(const llm_model *m, int64_t n_tok)
{
    size_t mx = llm_matmul_scratch(&m->output, n_tok);
    for (uint32_t il = 0; il < m->hp.n_layer; il++) {
        const llm_layer *L = &m->layers[il];
        const llm_matrix *qkv[] = {&L->wq, &L->wk, &L->wv}, *gate_up[] = {&L->w_gate, &L->w_up};
        const size_t s[] = {llm_matmul_multi_scratch(3, qkv, n_tok), llm_matmul_multi_scratch(2, gate_up, n_tok),
                            llm_matmul_scratch(&L->wo, n_tok), llm_matmul_scratch(&L->w_down, n_tok)};
        for (size_t i = 0; i < sizeof s / sizeof *s; i++)
            mx = s[i] > mx ? s[i] : mx;
    }
    return mx;
}

llm_ctx *llm_ctx_new(const llm_model *m, const llm_ctx_opts *o, llm_err *err)
{
    llm_ctx_opts defaults;
    if (!o) {
        llm_ctx_opts_default(&defaults);
        o = &defaults;
    }
    const llm_hparams *hp = &m->hp;
    llm_ctx *c = llm_xcalloc(1, sizeof *c);
    c->m = m;
    c->k = o->kernels ? o->kernels : llm_kernels_best();
    c->n_ctx = o->n_ctx > 0 ? o->n_ctx : (hp->n_ctx_train < 4096 ? (int)hp->n_ctx_train : 4096);
    c->n_batch = o->n_batch > 0 ? o->n_batch : 512;
    if (c->n_ctx > (1 << 22) || c->n_batch > (1 << 16)) {
        free(c);
        llm_errf(err, "context of %d tokens / batch of %d tokens is too large", o->n_ctx, o->n_batch);
        return NULL;
    }
    if (c->n_batch > c->n_ctx)
        c->n_batch = c->n_ctx;
    c->v_stride = (c->n_ctx + 31) / 32 * 32;
    c->kv_f16 = o->kv_f16;
    c->simd_ops = c->k != llm_kernels_scalar() && llm_ops_have_avx2();
    c->kv_elt = c->kv_f16 ? sizeof(uint16_t) : sizeof(float);
    if (o->pool) {
        c->pool = o->pool;
    } else {
        c->pool = llm_pool_new(o->n_threads);
        c->own_pool = true;
    }
    c->n_threads = llm_pool_threads(c->pool);

    bool oom = false;
    size_t B = (size_t)c->n_batch, e = hp->n_embd, qd = llm_hp_q_dim(hp), kvd = llm_hp_kv_dim(hp);
    size_t ctx = (size_t)c->n_ctx;
    c->kc = llm_xcalloc(hp->n_layer, sizeof *c->kc);
    c->vc = llm_xcalloc(hp->n_layer, sizeof *c->vc);
    for (uint32_t il = 0; il < hp->n_layer && !oom; il++) {
        c->kc[il] = ctx_alloc(c, ctx * kvd * c->kv_elt, &oom);
        c->vc[il] = ctx_alloc(c, (size_t)c->v_stride * kvd * c->kv_elt, &oom);
    }
    c->x = ctx_alloc(c, B * e * sizeof(float), &oom);
    c->xb = ctx_alloc(c, B * e * sizeof(float), &oom);
    c->xb2 = ctx_alloc(c, B * e * sizeof(float), &oom);
    c->q = ctx_alloc(c, B * qd * sizeof(float), &oom);
    c->att = ctx_alloc(c, B * qd * sizeof(float), &oom);
    c->kx = ctx_alloc(c, B * kvd * sizeof(float), &oom);
    c->vx = ctx_alloc(c, B * kvd * sizeof(float), &oom);
    c->hb = ctx_alloc(c, B * hp->n_ff * sizeof(float), &oom);
    c->hb2 = ctx_alloc(c, B * hp->n_ff * sizeof(float), &oom);
    c->rope_cs = ctx_alloc(c, B * hp->n_rot * sizeof(float), &oom);
    c->mm_scratch = ctx_alloc(c, max_matmul_scratch(m, (int64_t)B), &oom);
    /* scores (f32) + their f16 copy + the query head in f16, or the scores of LLM_ATTN_HEADS
     * query heads (attend_group), 64-byte aligned per thread */
    size_t one_head = (size_t)c->v_stride * (sizeof(float) + sizeof(uint16_t)) + hp->head_dim * sizeof(uint16_t);
    size_t group = (size_t)c->v_stride * LLM_ATTN_HEADS * sizeof(float);
    c->att_stride = ((one_head > group ? one_head : group) + 63) / 64 * 64;
    c->att_scratch = ctx_alloc(c, c->att_stride * (size_t)c->n_threads, &oom);
    if (oom) {
        llm_errf(err, "out of memory allocating a context of %d tokens (%.1f MiB)", c->n_ctx,
                 (double)c->bytes / (1 << 20));
        llm_ctx_free(c);
        return NULL;
    }
    return c;
}

void llm_ctx_free(llm_ctx *c)
{
    if (!c)
        return;
    for (uint32_t il = 0; il < c->m->hp.n_layer; il++) {
        if (c->kc)
            free(c->kc[il]);
        if (c->vc)
            free(c->vc[il]);
    }
    free(c->kc);
    free(c->vc);
    free(c->x);
    free(c->xb);
    free(c->xb2);
    free(c->q);
    free(c->att);
    free(c->kx);
    free(c->vx);
    free(c->hb);
    free(c->hb2);
    free(c->rope_cs);
    free(c->mm_scratch);
    free(c->att_scratch);
    if (c->own_pool)
        llm_pool_free(c->pool);
    free(c);
}

/* ---- attention --------------------------------------------------------------------------- */

/* Multiply-adds below which attention runs on the calling thread (see layer_forward). */
#define ATTN_INLINE_WORK 65536.0

typedef struct attn_job {
    llm_ctx *c;
    int il, n_tok, pos0;
} attn_job;

/* One query head of one token against the cached positions 0..pos (causal mask = only those),
 * with an F16 cache or without SIMD; an F32 cache with SIMD goes through attend_group. */
static void attend_one(llm_ctx *c, int il, int t, int h, int pos, uint8_t *scratch)
{
    const llm_hparams *hp = &c->m->hp;
    const llm_kernels *k = c->k;
    const int hd = (int)hp->head_dim, qd = (int)llm_hp_q_dim(hp);
    const int kvh = h / (int)(hp->n_head / hp->n_head_kv);
    const int n_kv = pos + 1;
    const float *qh = c->q + (size_t)t * qd + (size_t)h * hd;
    float *out = c->att + (size_t)t * qd + (size_t)h * hd;
    float *s = (float *)scratch;
    uint16_t *s16 = (uint16_t *)(scratch + (size_t)c->v_stride * sizeof(float));
    uint16_t *q16 = s16 + c->v_stride;
    const float kq_scale = hp->q_prescale ? 1.0f : 1.0f / sqrtf((float)hd);

    if (!c->kv_f16) {
        const float *K = (const float *)c->kc[il] + key_at(c, kvh, 0);
        for (int j = 0; j < n_kv; j++)
            k->vec_dot[LLM_F32](hd, &s[j], K + (size_t)j * hd, qh);
    } else {
        const uint16_t *K = (const uint16_t *)c->kc[il] + key_at(c, kvh, 0);
        k->quantize_act[LLM_F16](qh, q16, hd);
        for (int j = 0; j < n_kv; j++)
            k->vec_dot[LLM_F16](hd, &s[j], K + (size_t)j * hd, q16);
    }
    if (c->simd_ops)
        llm_op_softmax_avx2(s, n_kv, kq_scale);
    else
        llm_op_softmax(s, n_kv, kq_scale);
    if (!c->kv_f16) {
        const float *VT = (const float *)c->vc[il] + (size_t)kvh * hd * c->v_stride;
        for (int d = 0; d < hd; d++)
            k->vec_dot[LLM_F32](n_kv, &out[d], VT + (size_t)d * c->v_stride, s);
    } else {
        const uint16_t *VT = (const uint16_t *)c->vc[il] + (size_t)kvh * hd * c->v_stride;
        k->quantize_act[LLM_F16](s, s16, n_kv);
        for (int d = 0; d < hd; d++)
            k->vec_dot[LLM_F16](n_kv, &out[d], VT + (size_t)d * c->v_stride, s16);
    }
}

/* Query heads h0..h0+nh (nh <= LLM_ATTN_HEADS, one key/value head) of token t of a batch of
 * n_tok, F32 cache, reading every cached key and V^T row once for all of them. Each head gets
 * llama.cpp's arithmetic, bit for bit: ggml_vec_dot_f32's order for the scores, and for the sum
 * weighted over the cache padded to 32 positions (masked weights are 0) that order for one
 * token, tinyBLAS's single 8-lane accumulator for a batch. One head at a time, the 8 query heads
 * of a key/value head each read the keys and V^T again (1 MiB per head at 2048 positions, more
 * than L2). Generating with 1.1B Q4_0 at 2048 positions, alternated in one process: attention
 * 22-27 -> 13-14 ms per token, 22-26 -> 30-34 tokens/s. */
static void attend_group(llm_ctx *c, int il, int n_tok, int t, int h0, int nh, int pos, uint8_t *scratch)
{
    const llm_hparams *hp = &c->m->hp;
    const int hd = (int)hp->head_dim, qd = (int)llm_hp_q_dim(hp);
    const int kvh = h0 / (int)(hp->n_head / hp->n_head_kv);
    const int n_kv = pos + 1, n_pad = (n_kv + 31) / 32 * 32;
    const float kq_scale = hp->q_prescale ? 1.0f : 1.0f / sqrtf((float)hd);
    float *s = (float *)scratch;
    const float *qh[LLM_ATTN_HEADS], *sh[LLM_ATTN_HEADS];
    for (int i = 0; i < nh; i++) {
        qh[i] = c->q + (size_t)t * qd + (size_t)(h0 + i) * hd;
        sh[i] = s + (size_t)i * c->v_stride;
    }
    const float *K = (const float *)c->kc[il] + key_at(c, kvh, 0);
    llm_attn_scores_avx2(hd, n_kv, K, (size_t)hd, nh, qh, s, (size_t)c->v_stride);
    for (int i = 0; i < nh; i++) {
        float *si = s + (size_t)i * c->v_stride;
        llm_op_softmax_avx2(si, n_kv, kq_scale);
        for (int j = n_kv; j < n_pad; j++)
            si[j] = 0.0f;
    }
    const float *VT = (const float *)c->vc[il] + (size_t)kvh * hd * c->v_stride;
    float *out = c->att + (size_t)t * qd + (size_t)h0 * hd;
    if (n_tok == 1)
        llm_attn_values_avx2(n_pad, hd, VT, (size_t)c->v_stride, nh, sh, out, (size_t)hd);
    else
        llm_attn_values_lanes8_avx2(n_pad, hd, VT, (size_t)c->v_stride, nh, sh, out, (size_t)hd);
}

/* Heads per attend_group item: all of a key/value head's (at most LLM_ATTN_HEADS), unless that
 * leaves threads without an item. */
static int heads_per_item(int per_kv, int kv_items, int nth)
{
    int items_per_kv = (nth + kv_items - 1) / kv_items;
    int g = (per_kv + items_per_kv - 1) / items_per_kv;
    return g < 1 ? 1 : g > LLM_ATTN_HEADS ? LLM_ATTN_HEADS : g;
}

static void attn_worker(void *arg, int ith, int nth)
{
    attn_job *j = arg;
    llm_ctx *c = j->c;
    const int n_head = (int)c->m->hp.n_head;
    uint8_t *scratch = c->att_scratch + (size_t)ith * c->att_stride;
    if (!c->kv_f16 && c->simd_ops) {
        /* items: (token, key/value head, group of its query heads) */
        const int n_kv_heads = (int)c->m->hp.n_head_kv, per_kv = n_head / n_kv_heads;
        const int g = heads_per_item(per_kv, j->n_tok * n_kv_heads, nth), sub = (per_kv + g - 1) / g;
        const int per_tok = n_kv_heads * sub;
        for (int item = ith; item < j->n_tok * per_tok; item += nth) {
            const int t = item / per_tok, kvh = item % per_tok / sub, k = item % sub;
            const int h0 = kvh * per_kv + k * g, nh = per_kv - k * g < g ? per_kv - k * g : g;
            attend_group(c, j->il, j->n_tok, t, h0, nh, j->pos0 + t, scratch);
        }
        return;
    }
    for (int item = ith; item < j->n_tok * n_head; item += nth) {
        int t = item / n_head, h = item % n_head;
        attend_one(c, j->il, t, h, j->pos0 + t, scratch);
    }
}

/* ---- the layers -------------------------------------------------------------------------- */

static void store_kv(llm_ctx *c, int il, int n, int pos0)
{
    const int kvd = (int)llm_hp_kv_dim(&c->m->hp), hd = (int)c->m->hp.head_dim;
    for (int t = 0; t < n; t++) {
        const float *kr = c->kx + (size_t)t * kvd, *vr = c->vx + (size_t)t * kvd;
        size_t pos = (size_t)(pos0 + t);
        if (!c->kv_f16) {
            float *K = c->kc[il], *VT = c->vc[il];
            for (int h = 0; h < kvd / hd; h++)
                memcpy(K + key_at(c, h, pos), kr + (size_t)h * hd, (size_t)hd * sizeof(float));
            for (int d = 0; d < kvd; d++)
                VT[(size_t)d * c->v_stride + pos] = vr[d];
        } else {
            uint16_t *K = c->kc[il], *VT = c->vc[il];
            for (int d = 0; d < kvd; d++) {
                K[key_at(c, d / hd, pos) + (size_t)(d % hd)] = llm_fp32_to_fp16(kr[d]);
                VT[(size_t)d * c->v_stride + pos] = llm_fp32_to_fp16(vr[d]);
            }
        }
    }
}

static void add_bias(float *y, const float *b, int n_tok, int dim)
{
    if (b)
        for (int t = 0; t < n_tok; t++)
            llm_op_add(y + (size_t)t * dim, b, dim);
}

/* Per-head RMSNorm (qwen3) then RoPE of every head of n_tok rows of n_heads heads. */
static void norm_rope_heads(llm_ctx *c, float *rows, int n_tok, int n_heads, const float *head_norm)
{
    const llm_hparams *hp = &c->m->hp;
    const int hd = (int)hp->head_dim;
    for (int t = 0; t < n_tok; t++)
        for (int h = 0; h < n_heads; h++) {
            float *v = rows + ((size_t)t * n_heads + h) * hd;
            if (head_norm)
                llm_op_rmsnorm(v, v, head_norm, hd, hp->norm_eps);
            llm_op_rope(v, c->rope_cs + (size_t)t * hp->n_rot, (int)hp->n_rot, hp->rope_neox);
        }
}

/* gemma and phi3 (see llm_hparams.q_prescale): q *= 1/sqrt(head_dim) after RoPE. */
static void prescale_q(llm_ctx *c, int n_tok)
{
    const llm_hparams *hp = &c->m->hp;
    const float s = 1.0f / sqrtf((float)hp->head_dim);
    float *q = c->q;
    for (size_t i = 0; i < (size_t)n_tok * llm_hp_q_dim(hp); i++)
        q[i] *= s;
}

/* a[i] = gelu(a[i]) * b[i] as ggml_geglu_split computes it on the CPU: GELU looked up in the
 * model's F16 table (see load.c), the input passed through above 10 and zero below -10. */
static void geglu(const uint16_t *gelu_f16, float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const float x = a[i];
        float g;
        if (x <= -10.0f)
            g = 0.0f;
        else if (x >= 10.0f)
            g = x;
        else
            g = llm_fp16_to_fp32(gelu_f16[llm_fp32_to_fp16(x)]);
        a[i] = g * b[i];
    }
}

static void rmsnorm_rows(float *out, const float *x, const float *w, int n_tok, int dim, float eps)
{
    for (int t = 0; t < n_tok; t++)
        llm_op_rmsnorm(out + (size_t)t * dim, x + (size_t)t * dim, w, dim, eps);
}

static void layer_forward(llm_ctx *c, int il, int n, int pos0)
{
    const llm_hparams *hp = &c->m->hp;
    const llm_layer *L = &c->m->layers[il];
    const int e = (int)hp->n_embd, qd = (int)llm_hp_q_dim(hp), kvd = (int)llm_hp_kv_dim(hp), ff = (int)hp->n_ff;
    llm_pool *P = c->pool;
    const llm_kernels *k = c->k;

    /* attention */
    rmsnorm_rows(c->xb, c->x, L->attn_norm, n, e, hp->norm_eps);
    const llm_matrix *qkv[] = {&L->wq, &L->wk, &L->wv};
    float *const qkv_out[] = {c->q, c->kx, c->vx};
    llm_matmul_multi(P, k, 3, qkv, c->xb, n, qkv_out, c->mm_scratch);
    add_bias(c->q, L->bq, n, qd);
    add_bias(c->kx, L->bk, n, kvd);
    add_bias(c->vx, L->bv, n, kvd);
    norm_rope_heads(c, c->q, n, (int)hp->n_head, L->q_norm);
    norm_rope_heads(c, c->kx, n, (int)hp->n_head_kv, L->k_norm);
    if (hp->q_prescale)
        prescale_q(c, n);
    store_kv(c, il, n, pos0);
    attn_job job = {c, il, n, pos0};
    /* At a short context one token's attention is a few microseconds of work, less than waking
     * the pool costs; the result is the same either way (each head is computed whole by one
     * thread). */
    const double work = (double)n * hp->n_head * (pos0 + n) * hp->head_dim;
    if (work < ATTN_INLINE_WORK)
        attn_worker(&job, 0, 1);
    else
        llm_pool_run(P, attn_worker, &job);
    llm_matmul(P, k, &L->wo, c->att, n, c->xb2, c->mm_scratch);
    llm_op_add(c->x, c->xb2, n * e);

    /* feed-forward (SwiGLU, or GEGLU for gemma) */
    rmsnorm_rows(c->xb, c->x, L->ffn_norm, n, e, hp->norm_eps);
    const llm_matrix *gate_up[] = {&L->w_gate, &L->w_up};
    float *const gate_up_out[] = {c->hb, c->hb2};
    llm_matmul_multi(P, k, 2, gate_up, c->xb, n, gate_up_out, c->mm_scratch);
    if (hp->ffn_act == LLM_FFN_GELU)
        geglu(c->m->gelu_f16, c->hb, c->hb2, (size_t)n * ff);
    else if (c->simd_ops)
        llm_op_swiglu_avx2(c->hb, c->hb2, n * ff);
    else
        llm_op_swiglu(c->hb, c->hb2, n * ff);
    llm_matmul(P, k, &L->w_down, c->hb, n, c->xb2, c->mm_scratch);
    llm_op_add(c->x, c->xb2, n * e);
}

/* One batch at positions n_past.. ; logits: NULL, the last token's row, or all n rows. */
static void forward_batch(llm_ctx *c, const int32_t *tok, int n, float *logits, bool all_logits)
{
    const llm_model *m = c->m;
    const llm_hparams *hp = &m->hp;
    const int e = (int)hp->n_embd, pos0 = c->n_past;
    const size_t row = llm_row_size(m->token_embd.type, e);

    for (int t = 0; t < n; t++) {
        const uint8_t *src = (const uint8_t *)m->token_embd.data + (size_t)tok[t] * row;
        llm_dequantize_row(m->token_embd.type, src, c->x + (size_t)t * e, e);
        if (hp->embd_scale != 1.0f)
            for (int i = 0; i < e; i++)
                c->x[(size_t)t * e + i] *= hp->embd_scale;
        llm_op_rope_cache(c->rope_cs + (size_t)t * hp->n_rot, (float)(pos0 + t), (int)hp->n_rot, hp->rope_base,
                          hp->rope_freq_scale);
    }
    for (int il = 0; il < (int)hp->n_layer; il++) {
        if (m->stream)
            llm_stream_layer(m->stream, il);
        layer_forward(c, il, n, pos0);
    }
    if (m->stream)
        llm_stream_layer(m->stream, (int)hp->n_layer); /* the walk is over (streaming buffers) */
    if (!logits)
        return;
    if (all_logits) {
        rmsnorm_rows(c->xb, c->x, m->output_norm, n, e, hp->norm_eps);
        llm_matmul(c->pool, c->k, &m->output, c->xb, n, logits, c->mm_scratch);
    } else {
        llm_op_rmsnorm(c->xb, c->x + (size_t)(n - 1) * e, m->output_norm, e, hp->norm_eps);
        llm_matmul(c->pool, c->k, &m->output, c->xb, 1, logits, c->mm_scratch);
    }
}

int llm_forward(llm_ctx *c, const int32_t *tokens, int n, float *logits, bool all_logits, llm_err *err)
{
    const uint32_t n_vocab = c->m->hp.n_vocab;
    if (n <= 0)
        return llm_errf(err, "forward: no tokens to evaluate");
    if (n > c->n_ctx - c->n_past)
        return llm_errf(err, "context is full: %d cached + %d new tokens exceed the context size %d", c->n_past, n,
                        c->n_ctx);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= n_vocab)
            return llm_errf(err, "token %d at index %d is outside the vocabulary (0..%u)", tokens[i], i,
                            n_vocab - 1);
    for (int i0 = 0; i0 < n; i0 += c->n_batch) {
        int nb = n - i0 < c->n_batch ? n - i0 : c->n_batch;
        float *out = NULL;
        if (logits && all_logits)
            out = logits + (size_t)i0 * n_vocab;
        else if (logits && i0 + nb == n)
            out = logits;
        forward_batch(c, tokens + i0, nb, out, all_logits);
        c->n_past += nb;
    }
    return llm_map_check(&c->m->map, err);
}

/* ---- cache management -------------------------------------------------------------------- */

void llm_ctx_kv_truncate(llm_ctx *c, int n_keep)
{
    if (n_keep < 0)
        n_keep = 0;
    if (n_keep < c->n_past)
        c->n_past = n_keep;
}

/* Rotates one cached key (one kv head, head_dim elements) by the angle table cs (position delta). */
static void rerotate_key(llm_ctx *c, void *key, const float *cs, float *tmp)
{
    const llm_hparams *hp = &c->m->hp;
    const int hd = (int)hp->head_dim;
    if (c->kv_f16) {
        uint16_t *k16 = key;
        for (int d = 0; d < hd; d++)
            tmp[d] = llm_fp16_to_fp32(k16[d]);
    } else {
        memcpy(tmp, key, (size_t)hd * sizeof(float));
    }
    llm_op_rope(tmp, cs, (int)hp->n_rot, hp->rope_neox);
    if (c->kv_f16) {
        uint16_t *k16 = key;
        for (int d = 0; d < hd; d++)
            k16[d] = llm_fp32_to_fp16(tmp[d]);
    } else {
        memcpy(key, tmp, (size_t)hd * sizeof(float));
    }
}

int llm_ctx_kv_shift(llm_ctx *c, int n_keep, int n_discard, llm_err *err)
{
    if (n_keep < 0 || n_discard <= 0 || n_keep + n_discard > c->n_past)
        return llm_errf(err, "context shift: cannot discard %d tokens after %d of %d cached", n_discard, n_keep,
                        c->n_past);
    const llm_hparams *hp = &c->m->hp;
    const size_t kvd = llm_hp_kv_dim(hp), elt = c->kv_elt;
    const int n_move = c->n_past - n_keep - n_discard;
    /* The angle table of a rotation by -n_discard positions, and a row buffer (c->kx is
     * free between forward passes and holds at least kv_dim floats). */
    float *cs = c->rope_cs, *tmp = c->kx;
    llm_op_rope_cache(cs, (float)-n_discard, (int)hp->n_rot, hp->rope_base, hp->rope_freq_scale);
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        uint8_t *K = c->kc[il], *VT = c->vc[il];
        for (int h = 0; h < (int)hp->n_head_kv; h++) {
            memmove(K + key_at(c, h, (size_t)n_keep) * elt, K + key_at(c, h, (size_t)(n_keep + n_discard)) * elt,
                    (size_t)n_move * hp->head_dim * elt);
            for (int j = 0; j < n_move; j++)
                rerotate_key(c, K + key_at(c, h, (size_t)(n_keep + j)) * elt, cs, tmp);
        }
        for (size_t d = 0; d < kvd; d++) {
            uint8_t *r = VT + d * (size_t)c->v_stride * elt;
            memmove(r + (size_t)n_keep * elt, r + (size_t)(n_keep + n_discard) * elt, (size_t)n_move * elt);
        }
    }
    c->n_past -= n_discard;
    return 0;
}
