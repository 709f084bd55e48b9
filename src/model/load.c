/*
 * load — from a GGUF file to an llm_model: hyper-parameters from the metadata (with the
 * defaults llama.cpp uses for keys a file may omit), then every tensor bound in place and
 * checked against them, so a malformed file fails here by name instead of in the middle of a
 * forward pass.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

/* ---- hyper-parameters ------------------------------------------------------------------- */

static int key_u32(const gguf_file *f, const char *arch, const char *key, uint32_t *out, llm_err *err)
{
    char full[160];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    return gguf_get_u32(f, full, out, err);
}

static int key_u32_or(const gguf_file *f, const char *arch, const char *key, uint32_t def, uint32_t *out,
                      llm_err *err)
{
    char full[160];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    return gguf_get_u32_or(f, full, def, out, err);
}

static int key_f32_or(const gguf_file *f, const char *arch, const char *key, float def, float *out, llm_err *err)
{
    char full[160];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    return gguf_get_f32_or(f, full, def, out, err);
}

/* Linear RoPE scaling becomes a frequency scale; other scaling kinds change the angles in
 * ways this runtime does not implement, so they are refused rather than run wrongly. */
static int read_rope_scaling(const gguf_file *f, const char *arch, llm_hparams *hp, llm_err *err)
{
    float factor = 0;
    char key[160];
    snprintf(key, sizeof key, "%s.rope.scaling.factor", arch);
    if (!gguf_find(f, key))
        snprintf(key, sizeof key, "%s.rope.scale_linear", arch); /* older name */
    if (gguf_get_f32_or(f, key, 0.0f, &factor, err))
        return -1;
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    char *type = gguf_find(f, key) ? gguf_get_str(f, key, err) : NULL;
    if (gguf_find(f, key) && !type)
        return -1;
    int rc = 0;
    bool scaled = factor != 0.0f && factor != 1.0f;
    if (type && strcmp(type, "linear") && strcmp(type, "none") && scaled)
        rc = llm_errf(err, "%s: %s: rope scaling '%s' is not supported (only linear)", f->path, key, type);
    else if (type && !strcmp(type, "none"))
        hp->rope_freq_scale = 1.0f;
    else if (factor < 0 || factor != factor)
        rc = llm_errf(err, "%s: rope scaling factor %g is invalid", f->path, (double)factor);
    else
        hp->rope_freq_scale = factor == 0.0f ? 1.0f : 1.0f / factor;
    free(type);
    return rc;
}

int llm_hparams_read(const gguf_file *f, llm_hparams *hp, llm_err *err)
{
    memset(hp, 0, sizeof *hp);
    if (gguf_check_arch(f, err))
        return -1;
    char *arch = gguf_arch(f);
    snprintf(hp->arch_name, sizeof hp->arch_name, "%s", arch);
    free(arch);
    const char *a = hp->arch_name;
    if (!strcmp(a, "llama") || !strcmp(a, "mistral"))
        hp->arch = LLM_ARCH_LLAMA;
    else if (!strcmp(a, "qwen2"))
        hp->arch = LLM_ARCH_QWEN2;
    else if (!strcmp(a, "qwen3"))
        hp->arch = LLM_ARCH_QWEN3;
    else if (!strcmp(a, "gemma"))
        hp->arch = LLM_ARCH_GEMMA;
    else if (!strcmp(a, "phi3"))
        hp->arch = LLM_ARCH_PHI3;
    else
        return llm_errf(err, "%s: architecture '%s' is not supported", f->path, a);
    /* llama.cpp's llama_model_rope_type: every architecture here but llama rotates NeoX pairs */
    hp->rope_neox = hp->arch != LLM_ARCH_LLAMA;
    hp->ffn_act = hp->arch == LLM_ARCH_GEMMA ? LLM_FFN_GELU : LLM_FFN_SILU;
    /* llama.cpp's graphs for these two scale Q (ggml_scale) and call attention with scale 1;
     * the same value, but rounded at a different point, so follow it */
    hp->q_prescale = hp->arch == LLM_ARCH_GEMMA || hp->arch == LLM_ARCH_PHI3;

    if (key_u32(f, a, "context_length", &hp->n_ctx_train, err) ||
        key_u32(f, a, "embedding_length", &hp->n_embd, err) || key_u32(f, a, "block_count", &hp->n_layer, err) ||
        key_u32(f, a, "feed_forward_length", &hp->n_ff, err) ||
        key_u32(f, a, "attention.head_count", &hp->n_head, err) ||
        key_u32_or(f, a, "attention.head_count_kv", hp->n_head, &hp->n_head_kv, err))
        return -1;
    if (hp->n_head == 0 || hp->n_head_kv == 0 || hp->n_head % hp->n_head_kv)
        return llm_errf(err, "%s: %s.attention.head_count %u is not a multiple of head_count_kv %u", f->path, a,
                        hp->n_head, hp->n_head_kv);
    uint32_t def_head_dim = hp->n_embd % hp->n_head ? 0 : hp->n_embd / hp->n_head;
    uint32_t v_dim = 0;
    if (key_u32_or(f, a, "attention.key_length", def_head_dim, &hp->head_dim, err) ||
        key_u32_or(f, a, "attention.value_length", hp->head_dim, &v_dim, err))
        return -1;
    if (hp->head_dim == 0 || hp->head_dim % 2 || hp->head_dim > 1024)
        return llm_errf(err, "%s: head dimension %u (embedding_length %u / head_count %u) is not usable", f->path,
                        hp->head_dim, hp->n_embd, hp->n_head);
    if (v_dim != hp->head_dim)
        return llm_errf(err, "%s: %s.attention.value_length %u differs from key_length %u (not supported)", f->path,
                        a, v_dim, hp->head_dim);
    if (key_u32_or(f, a, "rope.dimension_count", hp->head_dim, &hp->n_rot, err))
        return -1;
    if (hp->n_rot == 0 || hp->n_rot % 2 || hp->n_rot > hp->head_dim)
        return llm_errf(err, "%s: %s.rope.dimension_count %u must be even and at most the head dimension %u",
                        f->path, a, hp->n_rot, hp->head_dim);
    if (key_f32_or(f, a, "rope.freq_base", 10000.0f, &hp->rope_base, err) ||
        key_f32_or(f, a, "attention.layer_norm_rms_epsilon", 1e-5f, &hp->norm_eps, err))
        return -1;
    if (!(hp->rope_base > 0) || !(hp->norm_eps >= 0))
        return llm_errf(err, "%s: invalid rope.freq_base %g or rms epsilon %g", f->path, (double)hp->rope_base,
                        (double)hp->norm_eps);
    if (read_rope_scaling(f, a, hp, err))
        return -1;
    /* gemma's converter already added 1 to its norm weights, so the norms are plain RMSNorm;
     * what remains is the embedding scale (ggml_scale by sqrtf(n_embd) in llama.cpp) */
    hp->embd_scale = hp->arch == LLM_ARCH_GEMMA ? sqrtf((float)hp->n_embd) : 1.0f;
    /* phi3.attention.sliding_window is read by nobody: llama.cpp turns phi3's sliding window
     * off (its converters do not record which layers use it), and llmap matches llama.cpp */
    /* Bounds that keep every size computed from them far from overflow. */
    if (hp->n_embd > (1u << 16) || hp->n_ff > (1u << 18) || hp->n_layer > 1024 || hp->n_head > 1024)
        return llm_errf(err, "%s: implausible hyper-parameters (n_embd %u, n_ff %u, n_layer %u, n_head %u)", f->path,
                        hp->n_embd, hp->n_ff, hp->n_layer, hp->n_head);
    return 0;
}

/* ---- tensors ------------------------------------------------------------------------------ */

static int bind_matrix(const llm_model *m, const char *name, int64_t rows, int64_t cols, bool required,
                       llm_matrix *out, llm_err *err)
{
    const char *path = m->gguf.path;
    memset(out, 0, sizeof *out);
    const gguf_tensor *t = gguf_find_tensor(&m->gguf, name);
    if (!t) {
        if (required)
            return llm_errf(err, "%s: missing tensor '%s'", path, name);
        return 0;
    }
    if (t->ne[0] != cols || t->ne[1] != rows || t->ne[2] != 1 || t->ne[3] != 1)
        return llm_errf(err, "%s: offset %llu: tensor '%s': shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]",
                        path, (unsigned long long)t->info_offset, name, (long long)t->ne[0], (long long)t->ne[1],
                        (long long)t->ne[2], (long long)t->ne[3], (long long)cols, (long long)rows);
    const llm_kernels *k = llm_kernels_scalar();
    if ((unsigned)t->type >= LLM_TYPE_COUNT || !k->vec_dot[t->type] ||
        !k->quantize_act[llm_vec_dot_type(t->type)])
        return llm_errf(err, "%s: offset %llu: tensor '%s': type %s has no matrix multiplication in llmap", path,
                        (unsigned long long)t->info_offset, name, llm_type_name(t->type));
    if (llm_row_size(t->type, cols) == 0)
        return llm_errf(err, "%s: tensor '%s': row length %lld is not a multiple of the %s block size", path, name,
                        (long long)cols, llm_type_name(t->type));
    out->type = t->type;
    out->rows = rows;
    out->cols = cols;
    out->data = t->data;
    return 0;
}

/* A 1-D float vector (norm weight, bias). Used in place when F32 and aligned; otherwise
 * converted once into a copy the model owns (these vectors are tiny). */
static int bind_vector(llm_model *m, const char *name, int64_t n, bool required, const float **out, llm_err *err)
{
    const char *path = m->gguf.path;
    *out = NULL;
    const gguf_tensor *t = gguf_find_tensor(&m->gguf, name);
    if (!t) {
        if (required)
            return llm_errf(err, "%s: missing tensor '%s'", path, name);
        return 0;
    }
    if (t->ne[0] != n || t->ne[1] != 1 || t->ne[2] != 1 || t->ne[3] != 1)
        return llm_errf(err, "%s: offset %llu: tensor '%s': shape [%lld, %lld], expected [%lld]", path,
                        (unsigned long long)t->info_offset, name, (long long)t->ne[0], (long long)t->ne[1],
                        (long long)n);
    if (t->type == LLM_F32 && ((uintptr_t)t->data % sizeof(float)) == 0) {
        *out = t->data;
        return 0;
    }
    if (t->type != LLM_F32 && t->type != LLM_F16 && t->type != LLM_BF16)
        return llm_errf(err, "%s: tensor '%s': type %s for a norm/bias vector (expected f32, f16 or bf16)", path, name,
                        llm_type_name(t->type));
    float *copy = malloc((size_t)n * sizeof(float));
    if (!copy)
        return llm_errf(err, "%s: out of memory for tensor '%s'", path, name);
    if (t->type == LLM_F32)
        memcpy(copy, t->data, (size_t)n * sizeof(float));
    else
        llm_dequantize_row(t->type, t->data, copy, n);
    m->owned = llm_xrealloc(m->owned, (size_t)(m->n_owned + 1) * sizeof *m->owned);
    m->owned[m->n_owned++] = copy;
    *out = copy;
    return 0;
}

/* Rows [row0, row0 + rows) of a bound matrix, as a matrix of its own (see llm_layer). */
static llm_matrix row_view(const llm_matrix *full, int64_t row0, int64_t rows)
{
    llm_matrix v = *full;
    v.rows = rows;
    v.data = (const uint8_t *)full->data + (size_t)row0 * llm_row_size(full->type, full->cols);
    return v;
}

/* phi3 stores Q, K and V as one [q_dim + 2 kv_dim] x n_embd tensor, rows in that order
 * (llama.cpp's build_qkv views it the same way); files with separate tensors work too. */
static int bind_qkv(llm_model *m, uint32_t il, llm_layer *L, llm_err *err)
{
    const llm_hparams *hp = &m->hp;
    int64_t e = hp->n_embd, qd = llm_hp_q_dim(hp), kvd = llm_hp_kv_dim(hp);
    char n[96];
    snprintf(n, sizeof n, "blk.%u.attn_qkv.weight", il);
    if (hp->arch == LLM_ARCH_PHI3 && gguf_find_tensor(&m->gguf, n)) {
        llm_matrix qkv;
        if (bind_matrix(m, n, qd + 2 * kvd, e, true, &qkv, err))
            return -1;
        L->wq = row_view(&qkv, 0, qd);
        L->wk = row_view(&qkv, qd, kvd);
        L->wv = row_view(&qkv, qd + kvd, kvd);
        return 0;
    }
#define NAME(s) (snprintf(n, sizeof n, "blk.%u." s, il), n)
    int rc = bind_matrix(m, NAME("attn_q.weight"), qd, e, true, &L->wq, err) ||
             bind_matrix(m, NAME("attn_k.weight"), kvd, e, true, &L->wk, err) ||
             bind_matrix(m, NAME("attn_v.weight"), kvd, e, true, &L->wv, err);
#undef NAME
    return rc ? -1 : 0;
}

/* phi3's ffn_up is [2 n_ff] x n_embd: the gate rows, then the up rows (ggml_swiglu applies
 * SiLU to the first half of the product and multiplies by the second). */
static int bind_ffn_in(llm_model *m, uint32_t il, llm_layer *L, llm_err *err)
{
    const llm_hparams *hp = &m->hp;
    int64_t e = hp->n_embd, ff = hp->n_ff;
    char n[96];
#define NAME(s) (snprintf(n, sizeof n, "blk.%u." s, il), n)
    if (hp->arch == LLM_ARCH_PHI3) {
        llm_matrix up2;
        if (bind_matrix(m, NAME("ffn_up.weight"), 2 * ff, e, true, &up2, err))
            return -1;
        L->w_gate = row_view(&up2, 0, ff);
        L->w_up = row_view(&up2, ff, ff);
        return 0;
    }
    int rc = bind_matrix(m, NAME("ffn_gate.weight"), ff, e, true, &L->w_gate, err) ||
             bind_matrix(m, NAME("ffn_up.weight"), ff, e, true, &L->w_up, err);
#undef NAME
    return rc ? -1 : 0;
}

static int bind_layer(llm_model *m, uint32_t il, llm_err *err)
{
    const llm_hparams *hp = &m->hp;
    llm_layer *L = &m->layers[il];
    int64_t e = hp->n_embd, qd = llm_hp_q_dim(hp), kvd = llm_hp_kv_dim(hp), ff = hp->n_ff;
    bool bias = hp->arch == LLM_ARCH_QWEN2, qk_norm = hp->arch == LLM_ARCH_QWEN3;
    char n[96];
#define NAME(s) (snprintf(n, sizeof n, "blk.%u." s, il), n)
    if (bind_vector(m, NAME("attn_norm.weight"), e, true, &L->attn_norm, err) || bind_qkv(m, il, L, err) ||
        bind_matrix(m, NAME("attn_output.weight"), e, qd, true, &L->wo, err) ||
        bind_vector(m, NAME("attn_q.bias"), qd, bias, &L->bq, err) ||
        bind_vector(m, NAME("attn_k.bias"), kvd, bias, &L->bk, err) ||
        bind_vector(m, NAME("attn_v.bias"), kvd, bias, &L->bv, err) ||
        bind_vector(m, NAME("attn_q_norm.weight"), hp->head_dim, qk_norm, &L->q_norm, err) ||
        bind_vector(m, NAME("attn_k_norm.weight"), hp->head_dim, qk_norm, &L->k_norm, err) ||
        bind_vector(m, NAME("ffn_norm.weight"), e, true, &L->ffn_norm, err) || bind_ffn_in(m, il, L, err) ||
        bind_matrix(m, NAME("ffn_down.weight"), e, ff, true, &L->w_down, err))
        return -1;
#undef NAME
    return 0;
}

/* The vocabulary size is the number of embedding rows; when the file also lists its tokens the
 * two must agree, or token ids from the tokenizer could index past the table. */
static int bind_embeddings(llm_model *m, llm_err *err)
{
    llm_hparams *hp = &m->hp;
    const gguf_tensor *t = gguf_find_tensor(&m->gguf, "token_embd.weight");
    if (!t)
        return llm_errf(err, "%s: missing tensor 'token_embd.weight'", m->gguf.path);
    if (t->ne[1] <= 0 || t->ne[1] > (1 << 24))
        return llm_errf(err, "%s: tensor 'token_embd.weight': %lld rows is not a vocabulary size", m->gguf.path,
                        (long long)t->ne[1]);
    hp->n_vocab = (uint32_t)t->ne[1];
    const gguf_kv *toks = gguf_find(&m->gguf, "tokenizer.ggml.tokens");
    if (toks && toks->type == GGUF_ARRAY && toks->arr_n != hp->n_vocab)
        return llm_errf(err, "%s: tokenizer.ggml.tokens has %llu entries but token_embd.weight has %u rows",
                        m->gguf.path, (unsigned long long)toks->arr_n, hp->n_vocab);
    /* gemma's output is token_embd even when a file carries an output.weight (llama.cpp
     * never reads one for gemma) */
    bool may_untie = hp->arch != LLM_ARCH_GEMMA;
    if (bind_matrix(m, "token_embd.weight", hp->n_vocab, hp->n_embd, true, &m->token_embd, err) ||
        (may_untie && bind_matrix(m, "output.weight", hp->n_vocab, hp->n_embd, false, &m->output, err)) ||
        bind_vector(m, "output_norm.weight", hp->n_embd, true, &m->output_norm, err))
        return -1;
    m->tied_output = m->output.data == NULL;
    if (m->tied_output)
        m->output = m->token_embd;
    else /* only one row per token is read: no read-around of the neighbouring rows */
        llm_map_advise(&m->map, (uint64_t)((const uint8_t *)m->token_embd.data - m->map.base),
                       llm_row_size(m->token_embd.type, hp->n_embd) * hp->n_vocab, LLM_ADV_RANDOM);
    return 0;
}

/* Phi-3 128k / Phi-3.5 carry per-frequency RoPE factors (LongRoPE), chosen by llama.cpp
 * from the context size together with an attention factor; not implemented, so such a file is
 * refused by name instead of being run with plain RoPE. */
static int reject_unsupported(const llm_model *m, llm_err *err)
{
    static const char *const names[] = {"rope_factors_long.weight", "rope_factors_short.weight",
                                        "rope_freqs.weight"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (m->hp.arch == LLM_ARCH_PHI3 && gguf_find_tensor(&m->gguf, names[i]))
            return llm_errf(err, "%s: tensor '%s': per-frequency RoPE factors (LongRoPE) are not supported",
                            m->gguf.path, names[i]);
    return 0;
}

/* ggml evaluates GELU (tanh approximation) on the CPU through a table indexed by the input
 * rounded to F16 (GGML_GELU_FP16); llmap uses the same table so gemma's activations round
 * where llama.cpp's do. 128 KiB, made once per model. */
static uint16_t *gelu_table(void)
{
    uint16_t *t = llm_xmalloc(65536 * sizeof *t);
    for (uint32_t i = 0; i < 65536; i++) {
        const float x = llm_fp16_to_fp32((uint16_t)i);
        const float g = 0.5f * x * (1.0f + tanhf(0.79788456080286535587989211986876f * x * (1.0f + 0.044715f * x * x)));
        t[i] = llm_fp32_to_fp16(g);
    }
    return t;
}

int llm_model_load(llm_model *m, const char *path, const llm_map_opts *o, llm_err *err)
{
    memset(m, 0, sizeof *m);
    m->map.fd = -1;
    m->map.slot = -1;
    if (llm_map_open(&m->map, path, o, err))
        return -1;
    if (gguf_parse(&m->gguf, path, m->map.base, m->map.size, err) || llm_hparams_read(&m->gguf, &m->hp, err) ||
        reject_unsupported(m, err) || bind_embeddings(m, err))
        goto fail;
    m->layers = llm_xcalloc(m->hp.n_layer, sizeof *m->layers);
    for (uint32_t il = 0; il < m->hp.n_layer; il++)
        if (bind_layer(m, il, err))
            goto fail;
    if (m->hp.ffn_act == LLM_FFN_GELU)
        m->gelu_f16 = gelu_table();
    for (uint64_t i = 0; i < m->gguf.n_tensors; i++) {
        m->n_params += gguf_tensor_nelements(&m->gguf.tensors[i]);
        m->weight_bytes += m->gguf.tensors[i].size;
    }
    return 0;
fail:
    llm_model_free(m);
    return -1;
}

void llm_model_free(llm_model *m)
{
    if (!m)
        return;
    llm_stream_free(m->stream);
    for (int i = 0; i < m->n_owned; i++)
        free(m->owned[i]);
    free(m->owned);
    free(m->gelu_f16);
    free(m->layers);
    gguf_free(&m->gguf);
    if (m->map.base || m->map.path)
        llm_map_close(&m->map);
    memset(m, 0, sizeof *m);
}
