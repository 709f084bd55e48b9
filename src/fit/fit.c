/*
 * fit — the memory and speed estimate (see fit.h).
 *
 * The memory model mirrors what the engine allocates: the mapped file (every page of it is
 * touched while running: metadata by the loader, every weight by each token), the KV cache
 * (both K and V, every layer, the whole context: the model pre-touches it so the commitment is
 * real from the start), the forward pass's scratch for one batch, the session's logits and
 * sampler arrays, the vocabulary's tables, and the process's own baseline. A constant for the
 * baseline is measured, not guessed: see tests/sh/test_fit.sh, which holds predictions to 5 %
 * of the peak RSS measured for real runs.
 *
 * The shape comes from the model loader's own reader (llm_hparams_read): fit predicts what
 * src/model allocates, so it depends on model (one way: model never includes fit).
 */
#include "fit/fit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/kernels.h"
#include "model/model.h"

/* Resident memory of an llmap process before the model: binary, libc/libs, thread stacks. */
#define BASE_BYTES (9728ull << 10)

typedef struct shape {
    uint64_t n_vocab, n_ctx_train, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_rot;
} shape;

/* The shape as the model loader reads it (llm_hparams_read: the same keys, defaults and checks,
 * so fit refuses what `llmap run` refuses), widened for the size arithmetic below. */
static int read_shape(const gguf_file *f, shape *s, llm_err *err)
{
    llm_hparams hp;
    if (llm_hparams_read(f, &hp, err))
        return -1;
    *s = (shape){.n_ctx_train = hp.n_ctx_train, .n_embd = hp.n_embd, .n_layer = hp.n_layer, .n_head = hp.n_head,
                 .n_head_kv = hp.n_head_kv, .head_dim = hp.head_dim, .n_ff = hp.n_ff, .n_rot = hp.n_rot};
    /* The vocabulary size is the embedding's rows, which the loader reads with the tensors. */
    const gguf_kv *toks = gguf_find(f, "tokenizer.ggml.tokens");
    const gguf_tensor *e = gguf_find_tensor(f, "token_embd.weight");
    s->n_vocab = e ? (uint64_t)e->ne[1] : toks ? toks->arr_n : 0;
    return 0;
}

/* Scratch of llm_matmul for the widest matrix: a batch of activations in its vec-dot type. */
static uint64_t matmul_scratch(const gguf_file *f, uint64_t batch)
{
    uint64_t mx = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        if (t->n_dims != 2)
            continue;
        llm_matrix w = {.type = t->type, .rows = t->ne[1], .cols = t->ne[0], .data = t->data};
        uint64_t s = llm_matmul_scratch(&w, (int64_t)batch);
        if (s > mx)
            mx = s;
    }
    return mx;
}

/* The vocabulary as src/text holds it: token texts, per-token records, the merges and the
 * lookup tables built over them. */
static uint64_t vocab_bytes(const gguf_file *f)
{
    uint64_t bytes = 0;
    const char *keys[] = {"tokenizer.ggml.tokens", "tokenizer.ggml.merges"};
    for (int k = 0; k < 2; k++) {
        const gguf_kv *kv = gguf_find(f, keys[k]);
        if (!kv || kv->type != GGUF_ARRAY || kv->arr_type != GGUF_STRING)
            continue;
        for (uint64_t i = 0; i < kv->arr_n; i++)
            bytes += kv->arr_str[i].len + 1;
        bytes += kv->arr_n * 48;
    }
    return bytes;
}

static uint64_t bytes_per_token(const gguf_file *f, const shape *s)
{
    uint64_t total = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++)
        total += f->tensors[i].size;
    const gguf_tensor *e = gguf_find_tensor(f, "token_embd.weight");
    if (e && gguf_find_tensor(f, "output.weight") && s->n_vocab)
        total -= e->size - e->size / s->n_vocab; /* untied: one embedding row per token */
    return total;
}

static uint64_t hot_bytes(const gguf_file *f)
{
    uint64_t hot = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        if (t->n_dims == 1 || !strcmp(t->name, "token_embd.weight") || !strcmp(t->name, "output.weight"))
            hot += t->size;
    }
    return hot;
}

/* File pages a running model keeps mapped: all of it, except that an untied embedding table is
 * only read one row per token (its pages come in as distinct tokens occur). */
static uint64_t mapped_bytes(const gguf_file *f)
{
    const gguf_tensor *e = gguf_find_tensor(f, "token_embd.weight");
    if (e && gguf_find_tensor(f, "output.weight"))
        return f->size - e->size;
    return f->size;
}

/* Seconds to stream one token's weights from memory: each weight type at the share of bandwidth
 * its matrix x vector kernel reaches here (from `llmap bench kernels`; else the general figure). */
static double token_seconds(const gguf_file *f, const llm_machine *mc)
{
    if (mc->bw_bytes_s <= 0)
        return 0;
    const gguf_tensor *e = gguf_find_tensor(f, "token_embd.weight");
    bool untied = e && gguf_find_tensor(f, "output.weight");
    double t = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *x = &f->tensors[i];
        double bytes = (double)x->size;
        if (untied && x == e)
            bytes = x->ne[1] ? bytes / (double)x->ne[1] : 0; /* one row per token */
        double eff = mc->eff_by_type[x->type] > 0 ? mc->eff_by_type[x->type] : mc->efficiency;
        t += bytes / (mc->bw_bytes_s * eff);
    }
    /* How close a forward pass comes to its kernels depends on the weight type (measured here
     * on the 1.1B models: Q4_0 0.65, Q8_0 0.71, Q4_K_M 0.75; one factor for all mispredicted
     * Q4_0 by +24%), so the factor of the model's main type wins when one was measured. */
    const int main_type = gguf_dominant_type(f);
    const double factor = main_type >= 0 && mc->forward_by_type[main_type] > 0 ? mc->forward_by_type[main_type]
                                                                                : mc->forward_factor;
    return factor > 0 ? t / factor : t;
}

/* Attention of a generated token reads every cached key and value; it does so at a small share
 * of the bandwidth (dot products of one head_dim each, a soft-max, for every query head). The
 * default is this machine kind's figure: 1.1B Q4_0 at 2048 positions, 6.9-8.5 ms per token for
 * 93 MB of F32 cache, 0.19-0.23 of the read bandwidth (`llmap bench MODEL --depth` measures it). */
#define DEFAULT_ATTN_EFFICIENCY 0.2

static double attention_seconds(const llm_machine *mc, double kv_bytes)
{
    double eff = mc->attn_efficiency > 0 ? mc->attn_efficiency : DEFAULT_ATTN_EFFICIENCY;
    return mc->bw_bytes_s > 0 ? kv_bytes / (mc->bw_bytes_s * eff) : 0;
}

static void predict(llm_fit *r, const gguf_file *f, const llm_machine *mc, uint64_t file_bytes)
{
    double ts = token_seconds(f, mc);
    double rate = ts > 0 ? (double)r->bytes_per_token / ts : 0; /* effective bytes/s */
    r->tok_s_resident = ts > 0 ? 1.0 / ts : 0;
    r->tok_s_full_ctx = ts > 0 ? 1.0 / (ts + attention_seconds(mc, (double)r->kv_bytes)) : 0;
    uint64_t non_file = r->total_bytes - file_bytes;
    if (r->total_bytes <= r->usable_bytes) {
        r->verdict = LLM_FIT_RESIDENT;
        r->resident_fraction = 1.0;
        r->tok_s = r->tok_s_resident;
        r->mode = "mmap";
        return;
    }
    /* Streaming keeps the hot tensors and about two layers resident; the rest comes from disk. */
    uint64_t layer = (r->weight_bytes - r->hot_bytes) / 8 + 1;
    uint64_t floor_bytes = non_file + r->hot_bytes + 2 * layer;
    if (mc->disk_bytes_s <= 0 || floor_bytes > r->usable_bytes) {
        r->verdict = LLM_FIT_NO;
        r->resident_fraction = 0;
        r->tok_s = 0;
        r->mode = "none";
        return;
    }
    uint64_t resident = r->usable_bytes - non_file;
    if (resident > r->weight_bytes)
        resident = r->weight_bytes;
    r->verdict = LLM_FIT_PAGING;
    r->resident_fraction = (double)resident / (double)r->weight_bytes;
    double paged = (double)(r->weight_bytes - resident);
    double t = (double)r->bytes_per_token / rate + paged / mc->disk_bytes_s;
    r->tok_s = 1.0 / t;
    r->mode = "stream";
}

int llm_fit_estimate(const gguf_file *f, const llm_fit_opts *o, const llm_machine *mc, llm_fit *r, llm_err *err)
{
    static const llm_fit_opts defaults = {0};
    if (!o)
        o = &defaults;
    memset(r, 0, sizeof *r);
    shape s = {0};
    if (read_shape(f, &s, err))
        return -1;
    uint64_t n_ctx = o->n_ctx > 0 ? (uint64_t)o->n_ctx : (s.n_ctx_train < 4096 ? s.n_ctx_train : 4096);
    uint64_t batch = o->n_batch > 0 ? (uint64_t)o->n_batch : 512;
    if (batch > n_ctx)
        batch = n_ctx;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    uint64_t threads = o->n_threads > 0 ? (uint64_t)o->n_threads : (uint64_t)(cpus > 0 ? cpus : 1);
    uint64_t qd = s.n_head * s.head_dim, kvd = s.n_head_kv * s.head_dim, elt = o->kv_f16 ? 2 : 4;

    r->n_ctx = (int)n_ctx;
    for (uint64_t i = 0; i < f->n_tensors; i++)
        r->weight_bytes += f->tensors[i].size;
    r->kv_bytes = 2 * s.n_layer * n_ctx * kvd * elt;
    r->compute_bytes = batch * 4 * (3 * s.n_embd + 2 * qd + 2 * kvd + 2 * s.n_ff + s.n_rot) +
                       matmul_scratch(f, batch) + threads * (n_ctx * 6 + s.head_dim * 2 + 64) +
                       s.n_vocab * (4 + 4 + 8); /* session logits, sampler candidates (id + logit) */
    r->vocab_bytes = vocab_bytes(f);
    r->base_bytes = BASE_BYTES;
    r->total_bytes = mapped_bytes(f) + r->kv_bytes + r->compute_bytes + r->vocab_bytes + r->base_bytes;
    r->bytes_per_token = bytes_per_token(f, &s);
    r->hot_bytes = hot_bytes(f);
    r->usable_bytes = mc->usable_bytes;
    predict(r, f, mc, mapped_bytes(f));
    return 0;
}

const char *llm_fit_verdict_name(llm_fit_verdict v)
{
    switch (v) {
    case LLM_FIT_RESIDENT: return "fits resident";
    case LLM_FIT_PAGING: return "fits with paging";
    default: return "does not run";
    }
}
