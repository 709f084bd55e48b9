/*
 * GGUF reader/writer tests: the shared files parse with the values their README documents;
 * hand-built malformed files are each rejected with the specific error (file, offset, field);
 * truncation at every header offset is caught; the writer round-trips every value type;
 * general.file_type names follow llama.cpp's llama_ftype list, with the dominant tensor type
 * as the fallback.
 *
 * Malformed files are assembled byte by byte with a small builder here, independent of the
 * writer under test.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "gguf/gguf.h"
#include "mem/mem.h"

/* ---- a byte builder for hand-made files ---------------------------------------------------- */

typedef struct bytes {
    uint8_t *p;
    size_t n, cap;
} bytes;

static void put(bytes *b, const void *src, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void u8(bytes *b, uint8_t v) { put(b, &v, 1); }
static void u32(bytes *b, uint32_t v) { for (int i = 0; i < 4; i++) u8(b, (uint8_t)(v >> 8 * i)); }
static void u64(bytes *b, uint64_t v) { for (int i = 0; i < 8; i++) u8(b, (uint8_t)(v >> 8 * i)); }
static void str(bytes *b, const char *s) { u64(b, strlen(s)); put(b, s, strlen(s)); }
static void pad_to(bytes *b, size_t align) { while (b->n % align) u8(b, 0); }

static void header(bytes *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    u32(b, GGUF_MAGIC);
    u32(b, version);
    u64(b, n_tensors);
    u64(b, n_kv);
}

static void kv_u32(bytes *b, const char *k, uint32_t v) { str(b, k); u32(b, GGUF_U32); u32(b, v); }
static void kv_str(bytes *b, const char *k, const char *v) { str(b, k); u32(b, GGUF_STRING); str(b, v); }

static void tinfo(bytes *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off)
{
    str(b, name);
    u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++)
        u64(b, ne[d]);
    u32(b, type);
    u64(b, off);
}

/* Parses b and returns the error message ("" on success) in a static buffer. */
static const char *parse_msg(const bytes *b)
{
    static llm_err err;
    gguf_file f;
    err.msg[0] = 0;
    if (gguf_parse(&f, "t.gguf", b->p, b->n, &err) == 0) {
        gguf_free(&f);
        return "";
    }
    return err.msg;
}

/* A valid file: 2 kv, 2 F32 tensors [8] and [4,2]. */
static void valid_file(bytes *b)
{
    memset(b, 0, sizeof *b);
    header(b, 3, 2, 2);
    kv_str(b, "general.architecture", "llama");
    kv_u32(b, "general.alignment", 32);
    uint64_t ne1[] = {8}, ne2[] = {4, 2};
    tinfo(b, "a", 1, ne1, LLM_F32, 0);
    tinfo(b, "b", 2, ne2, LLM_F32, 32);
    pad_to(b, 32);
    for (int i = 0; i < 16; i++)
        u32(b, 0x3f800000); /* 1.0f */
}

static void test_valid_minimal(void)
{
    bytes b;
    valid_file(&b);
    gguf_file f;
    llm_err err;
    CHECK(gguf_parse(&f, "t.gguf", b.p, b.n, &err) == 0);
    CHECK_EQ_INT(f.n_tensors, 2);
    CHECK_EQ_INT(f.alignment, 32);
    const gguf_tensor *t = gguf_find_tensor(&f, "b");
    CHECK(t && t->ne[0] == 4 && t->ne[1] == 2 && t->size == 32);
    CHECK(t && ((const float *)t->data)[0] == 1.0f);
    CHECK(gguf_find_tensor(&f, "zz") == NULL);
    gguf_free(&f);
    free(b.p);
}

typedef void (*build_fn)(bytes *b);

static void bad_magic(bytes *b) { valid_file(b); b->p[0] = 'X'; }
static void bad_version(bytes *b) { valid_file(b); b->p[4] = 4; }
static void version1(bytes *b) { valid_file(b); b->p[4] = 1; }
static void huge_tensor_count(bytes *b) { memset(b, 0, sizeof *b); header(b, 3, UINT64_MAX / 2, 0); }
static void huge_kv_count(bytes *b) { memset(b, 0, sizeof *b); header(b, 3, 0, 1ull << 40); }

static void huge_string_len(bytes *b)
{
    memset(b, 0, sizeof *b);
    header(b, 3, 0, 1);
    u64(b, UINT64_MAX - 3); /* key length */
    put(b, "abc", 3);
    for (int i = 0; i < 64; i++) /* room enough that the count pre-check passes */
        u8(b, 0);
}

/* A file whose one kv is an array header (key, element type, count) with no elements after it. */
static void array_kv_only(bytes *b, const char *key, uint32_t elem_type, uint64_t count)
{
    memset(b, 0, sizeof *b);
    header(b, 3, 0, 1);
    str(b, key);
    u32(b, GGUF_ARRAY);
    u32(b, elem_type);
    u64(b, count);
}
static void huge_array(bytes *b) { array_kv_only(b, "arr", GGUF_U64, 1ull << 61); }
static void huge_string_array(bytes *b) { array_kv_only(b, "tokens", GGUF_STRING, 1ull << 50); }
static void nested_array(bytes *b) { array_kv_only(b, "nest", GGUF_ARRAY, 1); }

static void bad_value_type(bytes *b)
{
    memset(b, 0, sizeof *b);
    header(b, 3, 0, 1);
    str(b, "k");
    u32(b, 99);
    for (int i = 0; i < 64; i++)
        u8(b, 0);
}

static void one_tensor(bytes *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off,
                       size_t data)
{
    memset(b, 0, sizeof *b);
    header(b, 3, 1, 0);
    tinfo(b, name, n_dims, ne, type, off);
    pad_to(b, 32);
    for (size_t i = 0; i < data; i++)
        u8(b, 0);
}

static void overflow_dims(bytes *b)
{
    uint64_t ne[] = {1ull << 32, 1ull << 32, 1ull << 2};
    one_tensor(b, "big", 3, ne, LLM_F32, 0, 64);
}
static void negative_dim(bytes *b)
{
    uint64_t ne[] = {UINT64_MAX};
    one_tensor(b, "neg", 1, ne, LLM_F32, 0, 64);
}
static void too_many_dims(bytes *b)
{
    uint64_t ne[] = {1, 1, 1, 1, 1};
    one_tensor(b, "five", 5, ne, LLM_F32, 0, 64);
}
static void unknown_type(bytes *b)
{
    uint64_t ne[] = {32};
    one_tensor(b, "odd", 1, ne, 77, 0, 64);
}
static void not_block_multiple(bytes *b)
{
    uint64_t ne[] = {33};
    one_tensor(b, "q", 1, ne, LLM_Q4_0, 0, 64);
}
static void out_of_bounds(bytes *b)
{
    uint64_t ne[] = {64};
    one_tensor(b, "blk.3.ffn_up.weight", 1, ne, LLM_F32, 0, 100); /* needs 256 bytes */
}
static void misaligned(bytes *b)
{
    uint64_t ne[] = {4};
    one_tensor(b, "mis", 1, ne, LLM_F32, 4, 64);
}
static void offset_overflow(bytes *b)
{
    uint64_t ne[] = {4};
    one_tensor(b, "wrap", 1, ne, LLM_F32, UINT64_MAX - 31, 64);
}

static void two_tensors(bytes *b, const char *n1, const char *n2, uint64_t off2)
{
    memset(b, 0, sizeof *b);
    header(b, 3, 2, 0);
    uint64_t ne[] = {16};
    tinfo(b, n1, 1, ne, LLM_F32, 0);
    tinfo(b, n2, 1, ne, LLM_F32, off2);
    pad_to(b, 32);
    for (int i = 0; i < 128; i++)
        u8(b, 0);
}
static void overlapping(bytes *b) { two_tensors(b, "x", "y", 32); /* x is 64 bytes */ }
static void duplicate_names(bytes *b) { two_tensors(b, "same", "same", 64); }

static void duplicate_keys(bytes *b)
{
    memset(b, 0, sizeof *b);
    header(b, 3, 0, 2);
    kv_u32(b, "k", 1);
    kv_u32(b, "k", 2);
}

static void bad_alignment(bytes *b)
{
    memset(b, 0, sizeof *b);
    header(b, 3, 0, 1);
    kv_u32(b, "general.alignment", 24);
}

static void empty_key(bytes *b)
{
    memset(b, 0, sizeof *b);
    header(b, 3, 0, 1);
    kv_u32(b, "", 1);
}

static void test_malformed(void)
{
    static const struct {
        const char *what;
        build_fn build;
        const char *expect[3];
    } cases[] = {
        {"bad magic", bad_magic, {"t.gguf: offset 0: magic", "not a GGUF file"}},
        {"version 4", bad_version, {"offset 4: version", "version 4 is not supported"}},
        {"version 1", version1, {"offset 4: version", "version 1"}},
        {"huge tensor count", huge_tensor_count, {"offset 8: tensor count", "cannot fit"}},
        {"huge kv count", huge_kv_count, {"offset 16: metadata count", "cannot fit"}},
        {"huge string length", huge_string_len, {"offset 24: metadata key", "string length"}},
        {"huge array", huge_array, {"offset 39: arr", "runs past end of file"}},
        {"huge string array", huge_string_array, {"offset 42: tokens", "exceeds what the file can hold"}},
        {"nested array", nested_array, {"offset 40: nest", "array of unsupported value type 9"}},
        {"unknown value type", bad_value_type, {"offset 33: k", "unknown value type 99"}},
        {"overflowing dims", overflow_dims, {"tensor 'big'", "overflow"}},
        {"dimension >= 2^63", negative_dim, {"tensor 'neg'", "overflow"}},
        {"five dims", too_many_dims, {"tensor 'five'", "5 dimensions"}},
        {"unknown tensor type", unknown_type, {"tensor 'odd'", "unknown or unsupported tensor type 77"}},
        {"row not block multiple", not_block_multiple, {"tensor 'q'", "not a multiple of the q4_0 block size 32"}},
        {"data out of bounds", out_of_bounds,
         {"offset 24: tensor 'blk.3.ffn_up.weight': data ends past end of file", "needs 352 bytes"}},
        {"misaligned data", misaligned, {"tensor 'mis'", "not a multiple of the alignment 32"}},
        {"offset overflow", offset_overflow, {"tensor 'wrap'", "data offset 18446744073709551584 is past end of file"}},
        {"overlapping data", overlapping, {"tensor 'y'", "overlaps tensor 'x'"}},
        {"duplicate tensor names", duplicate_names, {"tensor 'same'", "duplicate tensor name"}},
        {"duplicate keys", duplicate_keys, {"k: duplicate metadata key"}},
        {"bad alignment", bad_alignment, {"general.alignment", "not a power of two"}},
        {"empty key", empty_key, {"metadata key: empty key"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        bytes b;
        cases[i].build(&b);
        const char *msg = parse_msg(&b);
        CHECK_MSG(msg[0] != 0, "%s: accepted", cases[i].what);
        for (int k = 0; k < 3 && cases[i].expect[k]; k++)
            CHECK_MSG(strstr(msg, cases[i].expect[k]) != NULL, "%s: message \"%s\" lacks \"%s\"", cases[i].what, msg,
                      cases[i].expect[k]);
        free(b.p);
    }
}

/* Every prefix of a valid file's header region must be rejected with an error that names the
 * file and an offset (never a crash, checked under ASan by `make asan`). */
static void test_truncation_small(void)
{
    bytes b;
    valid_file(&b);
    int rejected = 0, named = 0;
    for (size_t n = 0; n < b.n; n++) {
        const char *msg = parse_msg(&(bytes){b.p, n, n});
        rejected += msg[0] != 0;
        named += strncmp(msg, "t.gguf: offset ", 15) == 0;
    }
    CHECK_EQ_INT(rejected, (int)b.n);
    CHECK_EQ_INT(named, (int)b.n);
    free(b.p);
}

static uint8_t *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(*n ? *n : 1);
    if (fread(p, 1, *n, f) != *n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    return p;
}

/* A real model truncated at offsets spread over the metadata, tensor infos and data: each is
 * rejected; cuts inside the data name a tensor whose data ends past the end of the file. */
static void test_truncation_real(const char *shared)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/models/tiny-qwen2-q4_0.gguf", shared);
    size_t n;
    uint8_t *p = read_file(path, &n);
    if (!p) {
        SKIP("cannot read %s", path);
        return;
    }
    gguf_file f;
    llm_err err;
    CHECK(gguf_parse(&f, path, p, n, &err) == 0);
    uint64_t data_off = f.data_offset;
    gguf_free(&f);
    int bad = 0, data_named = 0, data_cuts = 0;
    for (int i = 1; i < 400; i++) {
        size_t cut = (size_t)((double)n * i / 400.0 * i / 400.0); /* denser near the start */
        if (cut >= n)
            continue;
        if (gguf_parse(&f, "cut.gguf", p, cut, &err) == 0) {
            gguf_free(&f);
            bad++;
            continue;
        }
        if (cut > data_off) {
            data_cuts++;
            data_named += strstr(err.msg, "data ends past end of file") != NULL;
        }
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(data_cuts > 10);
    CHECK_EQ_INT(data_named, data_cuts);
    free(p);
}

/* ---- shared files: values documented in ../shared/README.md ------------------------------- */

static int open_shared(const char *shared, const char *rel, llm_map *m, gguf_file *f)
{
    char path[1024];
    llm_err err;
    snprintf(path, sizeof path, "%s/%s", shared, rel);
    if (llm_map_open(m, path, NULL, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        return -1;
    }
    if (gguf_parse(f, path, m->base, m->size, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        llm_map_close(m);
        return -1;
    }
    return 0;
}

static uint32_t u32_key(const gguf_file *f, const char *key)
{
    uint32_t v = 0;
    llm_err err;
    CHECK_MSG(gguf_get_u32(f, key, &v, &err) == 0, "%s", err.msg);
    return v;
}

static void test_shared_models(const char *shared)
{
    static const struct {
        const char *file, *arch;
        uint64_t size, n_tensors, n_vocab;
        uint32_t n_head_kv, file_type;
        llm_type embd, out, v0, v3;
    } models[] = {
        {"tiny-llama-q8_0.gguf", "llama", 21486688, 39, 32000, 4, 7, LLM_Q8_0, LLM_Q8_0, LLM_Q8_0, LLM_Q8_0},
        {"tiny-llama-q4_0.gguf", "llama", 11721824, 39, 32000, 4, 2, LLM_Q4_0, LLM_Q4_0, LLM_Q4_0, LLM_Q4_0},
        {"tiny-llama-q4_k_m.gguf", "llama", 13952096, 39, 32000, 4, 15, LLM_Q4_K, LLM_Q6_K, LLM_Q4_K, LLM_Q6_K},
        {"tiny-qwen2-q8_0.gguf", "qwen2", 18658560, 50, 50257, 2, 7, LLM_Q8_0, LLM_F32, LLM_Q8_0, LLM_Q8_0},
        {"tiny-qwen2-q4_0.gguf", "qwen2", 10718336, 50, 50257, 2, 2, LLM_Q4_0, LLM_F32, LLM_Q4_0, LLM_Q4_0},
    };
    for (size_t i = 0; i < sizeof models / sizeof *models; i++) {
        char rel[256], key[128];
        llm_map m;
        gguf_file f;
        llm_err err;
        snprintf(rel, sizeof rel, "models/%s", models[i].file);
        if (open_shared(shared, rel, &m, &f))
            continue;
        const char *a = models[i].arch;
        CHECK_EQ_INT(f.size, models[i].size);
        CHECK_EQ_INT(f.version, 3);
        CHECK_EQ_INT(f.n_tensors, models[i].n_tensors);
        CHECK_EQ_INT(f.alignment, 32);
        char *arch = gguf_arch(&f);
        CHECK_EQ_STR(arch, a);
        free(arch);
        CHECK_MSG(gguf_check_arch(&f, &err) == 0, "%s", err.msg);
        snprintf(key, sizeof key, "%s.embedding_length", a);
        CHECK_EQ_INT(u32_key(&f, key), 256);
        snprintf(key, sizeof key, "%s.block_count", a);
        CHECK_EQ_INT(u32_key(&f, key), 4);
        snprintf(key, sizeof key, "%s.context_length", a);
        CHECK_EQ_INT(u32_key(&f, key), 2048);
        snprintf(key, sizeof key, "%s.feed_forward_length", a);
        CHECK_EQ_INT(u32_key(&f, key), 768);
        snprintf(key, sizeof key, "%s.attention.head_count", a);
        CHECK_EQ_INT(u32_key(&f, key), 8);
        snprintf(key, sizeof key, "%s.attention.head_count_kv", a);
        CHECK_EQ_INT(u32_key(&f, key), models[i].n_head_kv);
        CHECK_EQ_INT(u32_key(&f, "general.file_type"), models[i].file_type);
        const gguf_kv *toks = gguf_find(&f, "tokenizer.ggml.tokens");
        CHECK(toks && toks->type == GGUF_ARRAY && toks->arr_type == GGUF_STRING && toks->arr_n == models[i].n_vocab);
        CHECK(gguf_find(&f, "tokenizer.chat_template") != NULL);
        const gguf_tensor *e = gguf_find_tensor(&f, "token_embd.weight");
        CHECK(e && e->type == models[i].embd && e->ne[0] == 256 && e->ne[1] == (int64_t)models[i].n_vocab);
        const gguf_tensor *o = gguf_find_tensor(&f, "output.weight");
        CHECK(models[i].out == LLM_F32 ? o == NULL : (o && o->type == models[i].out));
        const gguf_tensor *v0 = gguf_find_tensor(&f, "blk.0.attn_v.weight");
        const gguf_tensor *v3 = gguf_find_tensor(&f, "blk.3.ffn_down.weight");
        CHECK(v0 && v0->type == models[i].v0 && v0->ne[1] == 32 * (int64_t)models[i].n_head_kv);
        CHECK(v3 && v3->type == models[i].v3 && v3->ne[0] == 768 && v3->ne[1] == 256);
        const gguf_tensor *n = gguf_find_tensor(&f, "blk.2.attn_norm.weight");
        CHECK(n && n->type == LLM_F32 && n->n_dims == 1);
        if (!strcmp(a, "qwen2"))
            CHECK(gguf_find_tensor(&f, "blk.1.attn_q.bias") != NULL);
        gguf_free(&f);
        llm_map_close(&m);
    }
}

static void test_shared_vocabs(const char *shared)
{
    static const struct {
        const char *name, *model;
        uint64_t n;
    } vocabs[] = {
        {"llama-spm", "llama", 32000}, {"phi-3", "llama", 32064}, {"baichuan", "llama", 64000},
        {"gpt-2", "gpt2", 50257}, {"deepseek-coder", "gpt2", 32256}, {"deepseek-llm", "gpt2", 102400},
        {"falcon", "gpt2", 65024}, {"mpt", "gpt2", 50432}, {"refact", "gpt2", 49216},
        {"starcoder", "gpt2", 49152}, {"gpt-neox", "gpt2", 50432}, {"bert-bge", "bert", 30522},
    };
    for (size_t i = 0; i < sizeof vocabs / sizeof *vocabs; i++) {
        char rel[256];
        llm_map m;
        gguf_file f;
        snprintf(rel, sizeof rel, "models/vocab/ggml-vocab-%s.gguf", vocabs[i].name);
        if (open_shared(shared, rel, &m, &f))
            continue;
        CHECK_EQ_INT(f.version, 3);
        CHECK_EQ_INT(f.n_tensors, 0);
        char *model = gguf_get_str(&f, "tokenizer.ggml.model", NULL);
        CHECK_EQ_STR(model, vocabs[i].model);
        free(model);
        const gguf_kv *toks = gguf_find(&f, "tokenizer.ggml.tokens");
        CHECK_MSG(toks && toks->arr_n == vocabs[i].n, "%s: token count", vocabs[i].name);
        gguf_free(&f);
        llm_map_close(&m);
    }
}

/* ---- writer round trip --------------------------------------------------------------------- */

static int fill_pattern(void *ctx, const char *name, void *dst, uint64_t size, llm_err *err)
{
    (void)ctx;
    (void)err;
    for (uint64_t i = 0; i < size; i++)
        ((uint8_t *)dst)[i] = (uint8_t)(i * 7 + (uint8_t)name[0]);
    return 0;
}

static void test_writer_roundtrip(void)
{
    char path[] = "/tmp/llmap-test-gguf-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    gguf_writer *w = gguf_writer_new(64);
    gguf_w_u32(w, "u32", 4000000000u);
    gguf_w_i32(w, "i32", -7);
    gguf_w_u64(w, "u64", 1ull << 40);
    gguf_w_f32(w, "f32", 0.25f);
    gguf_w_bool(w, "bool", true);
    gguf_w_str(w, "str", "héllo");
    int32_t ints[] = {1, -2, 3};
    gguf_w_arr(w, "arr.i32", GGUF_I32, ints, 3);
    float fl[] = {1.5f, -2.5f};
    gguf_w_arr(w, "arr.f32", GGUF_F32, fl, 2);
    const char *strs[] = {"a", "", "ccc"};
    gguf_w_arr_str(w, "arr.str", strs, 3);
    float data[64];
    for (int i = 0; i < 64; i++)
        data[i] = (float)i;
    int64_t ne_a[] = {64}, ne_q[] = {64, 3};
    llm_err err;
    CHECK(gguf_w_tensor(w, "given", LLM_F32, 1, ne_a, data, &err) == 0);
    CHECK(gguf_w_tensor(w, "filled", LLM_Q8_0, 2, ne_q, NULL, &err) == 0);
    int64_t bad[] = {31};
    CHECK(gguf_w_tensor(w, "bad", LLM_Q4_0, 1, bad, NULL, &err) == -1);
    CHECK_CONTAINS(err.msg, "not a multiple");
    CHECK_MSG(gguf_writer_write(w, path, fill_pattern, NULL, &err) == 0, "%s", err.msg);
    CHECK(gguf_writer_write(w, "/dev/null", fill_pattern, NULL, &err) == -1);
    CHECK_CONTAINS(err.msg, "/dev/null: exists and is not a regular file");
    gguf_writer_free(w);

    llm_map m;
    gguf_file f;
    CHECK(llm_map_open(&m, path, NULL, &err) == 0);
    CHECK_MSG(gguf_parse(&f, path, m.base, m.size, &err) == 0, "%s", err.msg);
    CHECK_EQ_INT(f.alignment, 64);
    uint64_t u64v;
    uint32_t u32v;
    float f32v;
    bool bv;
    CHECK(gguf_get_u32(&f, "u32", &u32v, &err) == 0 && u32v == 4000000000u);
    CHECK(gguf_get_u64(&f, "u64", &u64v, &err) == 0 && u64v == 1ull << 40);
    CHECK(gguf_get_u32(&f, "i32", &u32v, &err) == -1); /* negative: refused as unsigned */
    CHECK(gguf_find(&f, "i32")->v.i64 == -7);
    CHECK(gguf_get_f32(&f, "f32", &f32v, &err) == 0 && f32v == 0.25f);
    CHECK(gguf_get_bool(&f, "bool", &bv, &err) == 0 && bv);
    char *s = gguf_get_str(&f, "str", &err);
    CHECK_EQ_STR(s, "héllo");
    free(s);
    CHECK(gguf_get_str(&f, "u32", &err) == NULL);
    CHECK_CONTAINS(err.msg, "u32: expected a string, got u32");
    CHECK(gguf_get_str(&f, "missing", &err) == NULL);
    CHECK_CONTAINS(err.msg, "missing metadata key 'missing'");
    const gguf_kv *ai = gguf_find(&f, "arr.i32"), *af = gguf_find(&f, "arr.f32"), *as = gguf_find(&f, "arr.str");
    CHECK(ai && ai->arr_n == 3 && gguf_arr_i64(ai, 1) == -2);
    CHECK(af && af->arr_n == 2 && gguf_arr_f64(af, 1) == -2.5);
    CHECK(as && as->arr_n == 3 && as->arr_str[1].len == 0 && as->arr_str[2].len == 3 &&
          !memcmp(as->arr_str[2].ptr, "ccc", 3));
    const gguf_tensor *g = gguf_find_tensor(&f, "given"), *q = gguf_find_tensor(&f, "filled");
    CHECK(g && g->size == 256 && ((const float *)g->data)[63] == 63.0f);
    CHECK(q && q->type == LLM_Q8_0 && q->size == 3 * 2 * 34);
    CHECK(q && (uintptr_t)((const uint8_t *)q->data - m.base) % 64 == 0);
    CHECK(q && ((const uint8_t *)q->data)[5] == (uint8_t)(5 * 7 + 'f'));
    gguf_free(&f);
    llm_map_close(&m);
    unlink(path);
}

/* Version 2 files have the same layout with 64-bit counts: accepted. */
static void test_version2(void)
{
    bytes b;
    valid_file(&b);
    b.p[4] = 2;
    CHECK_EQ_STR(parse_msg(&b), "");
    free(b.p);
}

static void test_check_arch(void)
{
    bytes b;
    memset(&b, 0, sizeof b);
    header(&b, 3, 0, 3);
    kv_str(&b, "general.architecture", "llama");
    kv_u32(&b, "llama.context_length", 128);
    kv_u32(&b, "llama.embedding_length", 64);
    gguf_file f;
    llm_err err;
    CHECK(gguf_parse(&f, "t.gguf", b.p, b.n, &err) == 0);
    CHECK(gguf_check_arch(&f, &err) == -1);
    CHECK_CONTAINS(err.msg, "missing metadata key 'llama.block_count' required by architecture 'llama'");
    gguf_free(&f);
    free(b.p);
    memset(&b, 0, sizeof b);
    header(&b, 3, 0, 1);
    kv_str(&b, "general.architecture", "mamba9");
    CHECK(gguf_parse(&f, "t.gguf", b.p, b.n, &err) == 0);
    CHECK(gguf_check_arch(&f, &err) == -1);
    CHECK_CONTAINS(err.msg, "architecture 'mamba9' is not supported");
    gguf_free(&f);
    free(b.p);
}

/* llama.cpp's llama_ftype values (llama.h; gguf-py's LlamaFileType): 0 ALL_F32, 1 MOSTLY_F16,
 * 2 Q4_0, 3 Q4_1, 4-6 removed (Q4_1_SOME_F16, Q4_2, Q4_3), 7 Q8_0, 8 Q5_0, 9 Q5_1, 10 Q2_K,
 * 11-13 Q3_K_S/M/L, 14-15 Q4_K_S/M, 16-17 Q5_K_S/M, 18 Q6_K, 19-31 IQ types, 32 BF16. */
static void test_file_type_names(void)
{
    static const struct { uint32_t ft; const char *name; } spec[] = {
        {0, "F32"},     {1, "F16"},     {2, "Q4_0"},    {3, "Q4_1"},    {7, "Q8_0"},
        {8, "Q5_0"},    {9, "Q5_1"},    {10, "Q2_K"},   {11, "Q3_K_S"}, {12, "Q3_K_M"},
        {13, "Q3_K_L"}, {14, "Q4_K_S"}, {15, "Q4_K_M"}, {16, "Q5_K_S"}, {17, "Q5_K_M"},
        {18, "Q6_K"},   {32, "BF16"},
    };
    for (size_t i = 0; i < sizeof spec / sizeof *spec; i++) {
        const char *got = llm_file_type_name(spec[i].ft);
        CHECK_MSG(got && strcmp(got, spec[i].name) == 0, "file type %u: got %s, want %s", spec[i].ft,
                  got ? got : "NULL", spec[i].name);
    }
    /* removed types, an IQ type llmap does not name, past the table, absurd */
    static const uint32_t unnamed[] = {4, 5, 6, 19, 30, 33, 1024, UINT32_MAX};
    for (size_t i = 0; i < sizeof unnamed / sizeof *unnamed; i++)
        CHECK_MSG(llm_file_type_name(unnamed[i]) == NULL, "file type %u should have no name", unnamed[i]);
}

/* Parses a hand-built file and returns gguf_quant_name of it (malloc'd), or NULL on a parse error. */
static char *quant_of(bytes *b)
{
    gguf_file f;
    llm_err err;
    char *q = NULL;
    if (gguf_parse(&f, "t.gguf", b->p, b->n, &err) == 0)
        q = gguf_quant_name(&f);
    else
        CHECK_MSG(0, "parse: %s", err.msg);
    gguf_free(&f);
    free(b->p);
    return q;
}

/* A file with an optional general.file_type and tensors: a Q8_0 [64] (68 bytes) and an F32 [n]. */
static void quant_file(bytes *b, int ft, uint64_t n_f32)
{
    memset(b, 0, sizeof *b);
    header(b, 3, 2, ft >= 0);
    if (ft >= 0)
        kv_u32(b, "general.file_type", (uint32_t)ft);
    uint64_t ne_q[] = {64}, ne_f[] = {n_f32};
    tinfo(b, "q", 1, ne_q, LLM_Q8_0, 0);
    tinfo(b, "f", 1, ne_f, LLM_F32, 96);
    pad_to(b, 32);
    for (uint64_t i = 0; i < 96 + 4 * n_f32; i++)
        u8(b, 0);
}

static void test_quant_name(void)
{
    bytes b;
    char *q;
    /* general.file_type wins over the tensors: 15 is Q4_K_M although no tensor is Q4_K */
    quant_file(&b, 15, 4);
    q = quant_of(&b);
    CHECK_EQ_STR(q ? q : "", "Q4_K_M");
    free(q);
    /* missing: the type with the most bytes, upper case: 68 bytes of Q8_0 vs 16 of F32 */
    quant_file(&b, -1, 4);
    q = quant_of(&b);
    CHECK_EQ_STR(q ? q : "", "Q8_0");
    free(q);
    /* ... and by bytes, not tensor count: 68 bytes of Q8_0 vs 128 of F32 */
    quant_file(&b, -1, 32);
    q = quant_of(&b);
    CHECK_EQ_STR(q ? q : "", "F32");
    free(q);
    /* a value without a name (IQ4_XS) falls back the same way */
    quant_file(&b, 30, 4);
    q = quant_of(&b);
    CHECK_EQ_STR(q ? q : "", "Q8_0");
    free(q);
    /* no file type, no tensors */
    memset(&b, 0, sizeof b);
    header(&b, 3, 0, 1);
    kv_str(&b, "general.architecture", "llama");
    q = quant_of(&b);
    CHECK_EQ_STR(q ? q : "", "none");
    free(q);
}

int main(void)
{
    test_valid_minimal();
    test_file_type_names();
    test_quant_name();
    test_malformed();
    test_truncation_small();
    test_version2();
    test_check_arch();
    test_writer_roundtrip();
    const char *shared = shared_dir();
    if (shared) {
        test_shared_models(shared);
        test_shared_vocabs(shared);
        test_truncation_real(shared);
    } else {
        SKIP("../shared not found: shared model checks not run");
    }
    TEST_END("gguf");
}
