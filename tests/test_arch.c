/*
 * test_arch — loading qwen3, gemma and phi3 files: the hyper-parameters each architecture
 * implies, the fused phi3 tensors bound as row views at the offsets the GGUF layout defines,
 * and the files llmap must refuse by name (LongRoPE factors, a missing required key, a fused
 * tensor of the wrong shape). The numbers these models compute are checked against llama.cpp
 * in tests/sh/test_archs.sh; this file checks the structure, without ../shared (the models use
 * synth's built-in vocabulary).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "model/model.h"
#include "synth/synth.h"

static char dir[] = "/tmp/llmap-test-arch-XXXXXX";
static char vocab[4200];

/* A small model of arch: n_embd 64, 4 heads, head_dim 32 for qwen3/gemma (not 64/4, as
 * their real models), 2 layers. */
static int make_model(const char *arch, const char *path)
{
    llm_synth_opts o = {.seed = 7, .vocab_path = vocab, .n_threads = 1};
    llm_err err;
    if (llm_synth_preset("tiny", arch, &o.shape, &err) || llm_quant_target_parse("f32", &o.target, &err))
        return fprintf(stderr, "%s\n", err.msg), -1;
    o.shape.n_embd = 64;
    o.shape.n_layer = 2;
    o.shape.n_head = 4;
    o.shape.n_head_kv = !strcmp(arch, "phi3") ? 4 : !strcmp(arch, "gemma") ? 1 : 2;
    o.shape.n_ff = 96;
    o.shape.n_ctx = 128;
    o.shape.head_dim = !strcmp(arch, "phi3") ? 0 : 32;
    if (llm_synth_write(path, &o, &err))
        return fprintf(stderr, "synth %s: %s\n", arch, err.msg), -1;
    return 0;
}

/* Copies src to dst without metadata key `drop`, with u32 key `set` (if any) set to set_v, and
 * with an extra 1-D F32 tensor `extra` of n_extra elements (if any). */
static int rewrite(const char *src, const char *dst, const char *drop, const char *set, uint32_t set_v,
                   const char *extra, int64_t n_extra)
{
    llm_map map = {0};
    gguf_file f = {0};
    llm_err err;
    if (llm_map_open(&map, src, NULL, &err) || gguf_parse(&f, src, map.base, map.size, &err))
        return fprintf(stderr, "%s\n", err.msg), -1;
    gguf_writer *w = gguf_writer_new(f.alignment);
    for (uint64_t i = 0; i < f.n_kv; i++) {
        if (drop && !strcmp(f.kv[i].key, drop))
            continue;
        if (set && !strcmp(f.kv[i].key, set))
            gguf_w_u32(w, set, set_v);
        else
            gguf_w_copy_kv(w, &f.kv[i]);
    }
    int rc = 0;
    for (uint64_t i = 0; i < f.n_tensors && !rc; i++) {
        const gguf_tensor *t = &f.tensors[i];
        rc = gguf_w_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, &err);
    }
    float *ones = NULL;
    if (!rc && extra) {
        ones = malloc((size_t)n_extra * sizeof *ones);
        for (int64_t i = 0; i < n_extra; i++)
            ones[i] = 1.0f;
        int64_t ne[1] = {n_extra};
        rc = gguf_w_tensor(w, extra, LLM_F32, 1, ne, ones, &err);
    }
    if (!rc)
        rc = gguf_writer_write(w, dst, NULL, NULL, &err);
    if (rc)
        fprintf(stderr, "rewrite: %s\n", err.msg);
    free(ones);
    gguf_writer_free(w);
    gguf_free(&f);
    llm_map_close(&map);
    return rc;
}

static const uint8_t *tensor_data(const llm_model *m, const char *name)
{
    const gguf_tensor *t = gguf_find_tensor(&m->gguf, name);
    return t ? t->data : NULL;
}

static void test_qwen3(const char *path)
{
    llm_model m;
    llm_err err;
    CHECK(make_model("qwen3", path) == 0);
    int rc = llm_model_load(&m, path, NULL, &err);
    CHECK_MSG(rc == 0, "load qwen3: %s", rc ? err.msg : "");
    if (rc)
        return;
    CHECK(m.hp.arch == LLM_ARCH_QWEN3 && m.hp.rope_neox && !m.hp.q_prescale && m.hp.ffn_act == LLM_FFN_SILU);
    CHECK_EQ_INT(m.hp.head_dim, 32);
    CHECK_EQ_INT(llm_hp_q_dim(&m.hp), 128); /* 4 heads x 32, not n_embd */
    CHECK(m.hp.embd_scale == 1.0f);
    CHECK_NEAR(m.hp.norm_eps, 1e-6, 1e-12);
    CHECK(m.tied_output);
    CHECK(m.gelu_f16 == NULL);
    for (uint32_t il = 0; il < m.hp.n_layer; il++) {
        CHECK(m.layers[il].q_norm && m.layers[il].k_norm && !m.layers[il].bq);
        CHECK_EQ_INT(m.layers[il].wq.rows, 128);
        CHECK_EQ_INT(m.layers[il].wo.cols, 128);
    }
    llm_model_free(&m);
}

static void test_gemma(const char *path, const char *variant)
{
    llm_model m;
    llm_err err;
    CHECK(make_model("gemma", path) == 0);
    int rc = llm_model_load(&m, path, NULL, &err);
    CHECK_MSG(rc == 0, "load gemma: %s", rc ? err.msg : "");
    if (rc)
        return;
    CHECK(m.hp.arch == LLM_ARCH_GEMMA && m.hp.rope_neox && m.hp.q_prescale && m.hp.ffn_act == LLM_FFN_GELU);
    CHECK(m.hp.embd_scale == 8.0f); /* sqrt(64) */
    CHECK_EQ_INT(m.hp.head_dim, 32);
    CHECK_EQ_INT(m.hp.n_head_kv, 1);
    CHECK(m.tied_output && m.output.data == m.token_embd.data);
    CHECK(!m.layers[0].q_norm && !m.layers[0].bq);
    /* GELU table entries against 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) by hand, to F16
     * precision (2^-11 relative) */
    static const float xs[] = {1.0f, -1.0f, 2.0f, 0.5f, -3.0f};
    static const double want[] = {0.84119199, -0.15880801, 1.95459769, 0.34571401, -0.0036373921};
    for (int i = 0; m.gelu_f16 && i < 5; i++)
        CHECK_NEAR(llm_fp16_to_fp32(m.gelu_f16[llm_fp32_to_fp16(xs[i])]), want[i], fabs(want[i]) / 1024);
    CHECK(m.gelu_f16 != NULL);
    llm_model_free(&m);

    /* llama.cpp never reads an output.weight for gemma: a file that has one still runs tied */
    CHECK(rewrite(path, variant, NULL, NULL, 0, "output.weight", 64) == 0); /* 1-D: would not even bind */
    rc = llm_model_load(&m, variant, NULL, &err);
    CHECK_MSG(rc == 0, "gemma with output.weight: %s", rc ? err.msg : "");
    CHECK(rc == 0 && m.tied_output);
    llm_model_free(&m);

    /* and synth refuses to write one */
    llm_synth_opts o = {.seed = 1, .vocab_path = vocab, .n_threads = 1};
    CHECK(llm_synth_preset("tiny", "gemma", &o.shape, &err) == 0);
    CHECK(llm_quant_target_parse("f32", &o.target, &err) == 0);
    o.shape.tied_output = false;
    CHECK(llm_synth_write(variant, &o, &err) == -1);
    CHECK_CONTAINS(err.msg, "always token_embd");

    /* the rms epsilon has no default for gemma in llama.cpp */
    CHECK(rewrite(path, variant, "gemma.attention.layer_norm_rms_epsilon", NULL, 0, NULL, 0) == 0);
    CHECK(llm_model_load(&m, variant, NULL, &err) == -1);
    CHECK_CONTAINS(err.msg, "missing metadata key 'gemma.attention.layer_norm_rms_epsilon'");
}

static void test_phi3(const char *path, const char *variant)
{
    llm_model m;
    llm_err err;
    CHECK(make_model("phi3", path) == 0);
    int rc = llm_model_load(&m, path, NULL, &err);
    CHECK_MSG(rc == 0, "load phi3: %s", rc ? err.msg : "");
    if (rc)
        return;
    CHECK(m.hp.arch == LLM_ARCH_PHI3 && m.hp.rope_neox && m.hp.q_prescale && m.hp.ffn_act == LLM_FFN_SILU);
    CHECK_EQ_INT(m.hp.head_dim, 16);
    CHECK(!m.tied_output);
    CHECK(gguf_find_tensor(&m.gguf, "blk.0.attn_q.weight") == NULL);
    CHECK(gguf_find_tensor(&m.gguf, "blk.0.ffn_gate.weight") == NULL);
    const size_t row = 64 * sizeof(float); /* an F32 row of n_embd */
    for (uint32_t il = 0; il < m.hp.n_layer; il++) {
        char n[64];
        const llm_layer *L = &m.layers[il];
        snprintf(n, sizeof n, "blk.%u.attn_qkv.weight", il);
        const uint8_t *qkv = tensor_data(&m, n);
        snprintf(n, sizeof n, "blk.%u.ffn_up.weight", il);
        const uint8_t *up = tensor_data(&m, n);
        /* Q rows 0..63, K rows 64..127, V rows 128..191 of the fused tensor */
        CHECK(qkv && L->wq.data == qkv && L->wk.data == qkv + 64 * row && L->wv.data == qkv + 128 * row);
        CHECK(L->wq.rows == 64 && L->wk.rows == 64 && L->wv.rows == 64 && L->wk.cols == 64);
        /* gate rows 0..95, then up rows 96..191 */
        CHECK(up && L->w_gate.data == up && L->w_up.data == up + 96 * row);
        CHECK(L->w_gate.rows == 96 && L->w_up.rows == 96);
    }
    llm_model_free(&m);

    /* LongRoPE factors (Phi-3 128k) are refused by name rather than ignored */
    CHECK(rewrite(path, variant, NULL, NULL, 0, "rope_factors_long.weight", 8) == 0);
    CHECK(llm_model_load(&m, variant, NULL, &err) == -1);
    CHECK_CONTAINS(err.msg, "rope_factors_long.weight");
    CHECK_CONTAINS(err.msg, "not supported");

    /* 2 kv heads make attn_qkv 64 + 2*32 rows: the fused tensor's 192 no longer fit */
    CHECK(rewrite(path, variant, NULL, "phi3.attention.head_count_kv", 2, NULL, 0) == 0);
    CHECK(llm_model_load(&m, variant, NULL, &err) == -1);
    CHECK_CONTAINS(err.msg, "blk.0.attn_qkv.weight");
    CHECK_CONTAINS(err.msg, "expected [64, 128]");
}

int main(void)
{
    if (!mkdtemp(dir)) {
        CHECK_MSG(0, "mkdtemp failed");
        TEST_END("arch");
    }
    llm_err err;
    char path[4300], variant[4300];
    snprintf(vocab, sizeof vocab, "%s/vocab.gguf", dir);
    snprintf(path, sizeof path, "%s/model.gguf", dir);
    snprintf(variant, sizeof variant, "%s/variant.gguf", dir);
    int rc = llm_synth_builtin_vocab(vocab, &err);
    CHECK_MSG(rc == 0, "builtin vocab: %s", rc ? err.msg : "");
    if (rc == 0) {
        test_qwen3(path);
        test_gemma(path, variant);
        test_phi3(path, variant);
    }
    unlink(vocab);
    unlink(path);
    unlink(variant);
    rmdir(dir);
    TEST_END("arch");
}
