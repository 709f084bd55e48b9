/*
 * synth and quantize as a library: the generated weights have the distribution
 * ../shared/README.md section 3 prescribes (checked statistically: mean, standard deviation and
 * the normal's 1- and 2-sigma mass), the file does not depend on the thread count, and the
 * Q4_K_M layer rule picks the layers llama.cpp's use_more_bits picks (hand-evaluated lists for
 * TinyLlama's 22 and Llama-3-8B's 32 layers). The end-to-end checks through the binary are in
 * tests/sh/test_synth.sh.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "gguf/gguf.h"
#include "mem/mem.h"
#include "synth/synth.h"

typedef struct stats {
    double mean, std, within1, within2;
    uint64_t n;
} stats;

static stats tensor_stats(const gguf_file *f, const char *name, double center, double sigma)
{
    stats s = {0};
    const gguf_tensor *t = gguf_find_tensor(f, name);
    if (!t || t->type != LLM_F32)
        return s;
    const float *v = t->data;
    s.n = gguf_tensor_nelements(t);
    double sum = 0, sq = 0;
    uint64_t in1 = 0, in2 = 0;
    for (uint64_t i = 0; i < s.n; i++) {
        sum += v[i];
        sq += (double)v[i] * v[i];
        double z = fabs(v[i] - center) / sigma;
        in1 += z < 1;
        in2 += z < 2;
    }
    s.mean = sum / (double)s.n;
    s.std = sqrt(sq / (double)s.n - s.mean * s.mean);
    s.within1 = (double)in1 / (double)s.n;
    s.within2 = (double)in2 / (double)s.n;
    return s;
}

/* mean within 5 standard errors, std within rel_tol, and for big samples the normal's masses
 * (0.6827 within 1 sigma, 0.9545 within 2). */
static void check_normal(const gguf_file *f, const char *name, double center, double sigma, double rel_tol)
{
    stats s = tensor_stats(f, name, center, sigma);
    CHECK_MSG(s.n > 0, "%s: missing or not f32", name);
    if (!s.n)
        return;
    CHECK_MSG(fabs(s.mean - center) < 5 * sigma / sqrt((double)s.n), "%s: mean %.6f, want %.6f", name, s.mean, center);
    CHECK_MSG(fabs(s.std / sigma - 1) < rel_tol, "%s: std %.6f, want %.6f", name, s.std, sigma);
    if (s.n >= 100000) {
        CHECK_MSG(fabs(s.within1 - 0.682689) < 0.004, "%s: %.4f within 1 sigma", name, s.within1);
        CHECK_MSG(fabs(s.within2 - 0.954500) < 0.003, "%s: %.4f within 2 sigma", name, s.within2);
    }
}

static int write_model(const char *path, const char *vocab, const char *arch, int n_threads, uint64_t seed)
{
    llm_synth_opts o = {.seed = seed, .vocab_path = vocab, .n_threads = n_threads};
    llm_err err;
    if (llm_synth_preset("tiny", arch, &o.shape, &err) || llm_quant_target_parse("f32", &o.target, &err))
        return fprintf(stderr, "%s\n", err.msg), -1;
    o.shape.n_layer = 2;
    int rc = llm_synth_write(path, &o, &err);
    if (rc)
        fprintf(stderr, "synth: %s\n", err.msg);
    return rc;
}

static int files_equal(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int eq = fa && fb;
    while (eq) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb)
            eq = 0;
        if (ca == EOF || cb == EOF)
            break;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return eq;
}

static void test_weights(const char *shared)
{
    char vocab_llama[4096], vocab_gpt2[4096], dir[] = "/tmp/llmap-test-synth-XXXXXX";
    snprintf(vocab_llama, sizeof vocab_llama, "%s/models/vocab/ggml-vocab-llama-spm.gguf", shared);
    snprintf(vocab_gpt2, sizeof vocab_gpt2, "%s/models/vocab/ggml-vocab-gpt-2.gguf", shared);
    if (!mkdtemp(dir)) {
        CHECK_MSG(0, "mkdtemp failed");
        return;
    }
    char p1[4200], p2[4200], pq[4200];
    snprintf(p1, sizeof p1, "%s/a.gguf", dir);
    snprintf(p2, sizeof p2, "%s/b.gguf", dir);
    snprintf(pq, sizeof pq, "%s/q.gguf", dir);
    CHECK(write_model(p1, vocab_llama, "llama", 1, 99) == 0);
    CHECK(write_model(p2, vocab_llama, "llama", 3, 99) == 0);
    CHECK_MSG(files_equal(p1, p2), "1 and 3 threads give different files");
    CHECK(write_model(pq, vocab_gpt2, "qwen2", 2, 99) == 0);

    llm_map m;
    gguf_file f;
    llm_err err;
    if (llm_map_open(&m, p1, NULL, &err) == 0) {
        CHECK(gguf_parse(&f, p1, m.base, m.size, &err) == 0);
        CHECK(gguf_check_arch(&f, &err) == 0);
        /* llama: separate output, token_embd N(0, 1), output N(0, 3/16) */
        check_normal(&f, "token_embd.weight", 0, 1.0, 0.002);
        check_normal(&f, "output.weight", 0, 3.0 / 16, 0.002);
        check_normal(&f, "blk.0.attn_q.weight", 0, 1.0 / 16, 0.01);
        check_normal(&f, "blk.1.attn_k.weight", 0, 1.0 / 16, 0.015);
        check_normal(&f, "blk.0.ffn_up.weight", 0, 1.0 / 16, 0.01);
        check_normal(&f, "blk.1.ffn_down.weight", 0, 1.0 / sqrt(768.0), 0.01);
        check_normal(&f, "blk.0.attn_norm.weight", 1.0, 0.05, 0.2);
        check_normal(&f, "output_norm.weight", 1.0, 0.05, 0.2);
        CHECK(gguf_find_tensor(&f, "blk.0.attn_q.bias") == NULL);
        /* distinct tensors are distinct streams */
        const gguf_tensor *q = gguf_find_tensor(&f, "blk.0.attn_q.weight"), *o = gguf_find_tensor(&f, "blk.0.attn_output.weight");
        CHECK(q && o && memcmp(q->data, o->data, 1024) != 0);
        uint32_t v = 0;
        CHECK(gguf_get_u32(&f, "llama.vocab_size", &v, &err) == 0 && v == 32000);
        CHECK(gguf_get_u32(&f, "llama.attention.head_count_kv", &v, &err) == 0 && v == 4);
        CHECK(gguf_get_u32(&f, "llama.rope.dimension_count", &v, &err) == 0 && v == 32);
        CHECK(gguf_find(&f, "tokenizer.chat_template") != NULL);
        gguf_free(&f);
        llm_map_close(&m);
    } else {
        CHECK_MSG(0, "%s", err.msg);
    }
    if (llm_map_open(&m, pq, NULL, &err) == 0) {
        CHECK(gguf_parse(&f, pq, m.base, m.size, &err) == 0);
        CHECK(gguf_check_arch(&f, &err) == 0);
        /* qwen2 tiny: tied embeddings N(0, 3/16), q/k/v biases N(0, 0.1) */
        CHECK(gguf_find_tensor(&f, "output.weight") == NULL);
        check_normal(&f, "token_embd.weight", 0, 3.0 / 16, 0.002);
        check_normal(&f, "blk.0.attn_q.bias", 0, 0.1, 0.2);
        const gguf_tensor *kb = gguf_find_tensor(&f, "blk.1.attn_k.bias");
        CHECK(kb && kb->ne[0] == 64);
        float base = 0;
        CHECK(gguf_get_f32(&f, "qwen2.rope.freq_base", &base, &err) == 0 && base == 1000000.0f);
        bool add_bos = true;
        CHECK(gguf_get_bool(&f, "tokenizer.ggml.add_bos_token", &add_bos, &err) == 0 && !add_bos);
        gguf_free(&f);
        llm_map_close(&m);
    } else {
        CHECK_MSG(0, "%s", err.msg);
    }
    unlink(p1);
    unlink(p2);
    unlink(pq);
    rmdir(dir);
}

/* Q6_K layers of attn_v/ffn_down in Q4_K_M, evaluated by hand from llama.cpp's
 * use_more_bits(i, n) = i < n/8 || i >= 7n/8 || (i - n/8) % 3 == 2. */
static void test_q4_k_m_layers(void)
{
    llm_quant_target t;
    llm_err err;
    CHECK(llm_quant_target_parse("Q4_K_M", &t, &err) == 0);
    CHECK_EQ_INT(t.file_type, 15);
    static const int want22[] = {0, 1, 4, 7, 10, 13, 16, 19, 20, 21};
    static const int want32[] = {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31};
    struct {
        int n;
        const int *want;
        int n_want;
    } cases[] = {{22, want22, 10}, {32, want32, 16}};
    for (int c = 0; c < 2; c++) {
        for (int l = 0; l < cases[c].n; l++) {
            int expect_q6 = 0;
            for (int k = 0; k < cases[c].n_want; k++)
                expect_q6 |= cases[c].want[k] == l;
            llm_type v = llm_quant_tensor_type(&t, "blk.X.attn_v.weight", 2, 2048, l, cases[c].n, true);
            llm_type d = llm_quant_tensor_type(&t, "blk.X.ffn_down.weight", 2, 5632, l, cases[c].n, true);
            llm_type q = llm_quant_tensor_type(&t, "blk.X.attn_q.weight", 2, 2048, l, cases[c].n, true);
            CHECK_MSG(v == (expect_q6 ? LLM_Q6_K : LLM_Q4_K), "n %d layer %d attn_v: %s", cases[c].n, l, llm_type_name(v));
            CHECK_MSG(d == (expect_q6 ? LLM_Q6_K : LLM_Q4_K), "n %d layer %d ffn_down: %s", cases[c].n, l, llm_type_name(d));
            CHECK_EQ_INT(q, LLM_Q4_K);
        }
    }
    CHECK_EQ_INT(llm_quant_tensor_type(&t, "output.weight", 2, 2048, -1, 22, true), LLM_Q6_K);
    CHECK_EQ_INT(llm_quant_tensor_type(&t, "token_embd.weight", 2, 2048, -1, 22, true), LLM_Q4_K);
    CHECK_EQ_INT(llm_quant_tensor_type(&t, "token_embd.weight", 2, 2048, -1, 22, false), LLM_Q6_K);
    CHECK_EQ_INT(llm_quant_tensor_type(&t, "blk.0.attn_norm.weight", 1, 2048, 0, 22, true), LLM_F32);
    /* fall-backs for rows that are not a multiple of 256 (open_llama_3b's 3200) */
    CHECK_EQ_INT(llm_quant_tensor_type(&t, "blk.5.attn_q.weight", 2, 3200, 5, 26, true), LLM_Q5_0);
    CHECK_EQ_INT(llm_quant_tensor_type(&t, "output.weight", 2, 3200, -1, 26, true), LLM_Q8_0);
    /* pure types */
    CHECK(llm_quant_target_parse("q8_0", &t, &err) == 0);
    CHECK_EQ_INT(t.file_type, 7);
    CHECK_EQ_INT(llm_quant_tensor_type(&t, "output.weight", 2, 2048, -1, 22, true), LLM_Q8_0);
    CHECK(llm_quant_target_parse("q4_0", &t, &err) == 0);
    CHECK_EQ_INT(t.file_type, 2);
    CHECK(llm_quant_target_parse("f32", &t, &err) == 0);
    CHECK_EQ_INT(t.file_type, 0);
    CHECK(llm_quant_target_parse("q7_3", &t, &err) == -1);
    CHECK_CONTAINS(err.msg, "q7_3");
    llm_synth_shape s;
    CHECK(llm_synth_preset("1.1b", "llama", &s, &err) == 0);
    CHECK(s.n_embd == 2048 && s.n_layer == 22 && s.n_head == 32 && s.n_head_kv == 4 && s.n_ff == 5632);
    CHECK(llm_synth_preset("8b", "llama", &s, &err) == 0);
    CHECK(s.n_embd == 4096 && s.n_layer == 32 && s.n_head_kv == 8 && s.n_ff == 14336 && s.rope_base == 500000.0f);
    CHECK(llm_synth_preset("7b", "llama", &s, &err) == -1);
    CHECK(llm_synth_preset("tiny", "gpt2", &s, &err) == -1);
}

int main(void)
{
    test_q4_k_m_layers();
    const char *shared = shared_dir();
    if (shared)
        test_weights(shared);
    else
        SKIP("shared data absent: synthetic weight statistics not checked");
    TEST_END("synth_lib");
}
