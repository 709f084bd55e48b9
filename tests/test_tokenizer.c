/*
 * test_tokenizer — the tokenizers against the ids the original Hugging Face tokenizers
 * produce (shared/models/vocab/ggml-vocab-NAME.gguf.inp and .out, 46 cases per vocabulary), against llama.cpp's
 * prompt tokens for the shared tiny models (shared/reference/<model>/prompt-<i>.json), the
 * streaming detokenizer on multi-byte characters split over byte tokens, special-token
 * parsing, and bounded time on hostile 1 MB inputs.
 *
 * Round trips (detokenize(tokenize(x)) == x) are asserted where the tokenizer is lossless:
 * SentencePiece for any bytes (byte fallback; the added leading space is stripped), byte-level
 * BPE for valid UTF-8. WordPiece lowercases and drops accents and spacing, so it is not.
 */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "gguf/gguf.h"
#include "mem/mem.h"
#include "text/text.h"

static const char *SHARED;

/* Loads the tokenizer of a GGUF file, reporting a failure. */
static llm_vocab *load_vocab(const char *path)
{
    llm_err err;
    llm_vocab *v = NULL;
    if (llm_vocab_load_file(path, &v, &err))
        fprintf(stderr, "FAIL load %s: %s\n", path, err.msg);
    return v;
}

/* Like load_vocab, but returns the error instead of reporting it. */
static llm_vocab *load_vocab_quiet(const char *path, llm_err *err)
{
    llm_vocab *v = NULL;
    llm_vocab_load_file(path, &v, err);
    return v;
}

static bool ids_equal(const int32_t *a, size_t na, const int32_t *b, size_t nb)
{
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
}

static void print_ids(const char *label, const int32_t *ids, size_t n)
{
    fprintf(stderr, "    %s:", label);
    for (size_t i = 0; i < n && i < 60; i++)
        fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "%s\n", n > 60 ? " ..." : "");
}

/* Parses one .out line (" 1 2 3") into ids. */
static size_t parse_ids(const char *line, size_t len, int32_t *out, size_t cap)
{
    size_t n = 0;
    char tmp[32];
    for (size_t i = 0; i < len;) {
        while (i < len && line[i] == ' ')
            i++;
        size_t k = 0;
        while (i < len && line[i] != ' ' && k < sizeof tmp - 1)
            tmp[k++] = line[i++];
        if (k == 0)
            break;
        tmp[k] = 0;
        if (n < cap)
            out[n] = (int32_t)strtol(tmp, NULL, 10);
        n++;
    }
    return n;
}

typedef enum roundtrip { RT_NONE, RT_EXACT } roundtrip;

static void test_vocab_file(const char *name, roundtrip rt)
{
    char path[1024], pin[1100], pout[1100];
    snprintf(path, sizeof path, "%s/models/vocab/ggml-vocab-%s.gguf", SHARED, name);
    snprintf(pin, sizeof pin, "%s.inp", path);
    snprintf(pout, sizeof pout, "%s.out", path);
    size_t lin, lout;
    char *inp = test_read_file(pin, &lin), *out = test_read_file(pout, &lout);
    llm_vocab *v = load_vocab(path);
    CHECK_MSG(inp && out && v, "%s: vocabulary and test files load", name);
    if (!inp || !out || !v) {
        free(inp), free(out), llm_vocab_free(v);
        return;
    }
    static const char SEP[] = "\n__ggml_vocab_test__\n";
    const size_t sep_len = sizeof SEP - 1;
    size_t ncase = 0, npass = 0, nrt = 0, nrt_ok = 0;
    const char *ip = inp, *op = out, *iend = inp + lin, *oend = out + lout;
    int32_t *expect = malloc(65536 * sizeof *expect);
    for (;;) {
        const char *s = memmem(ip, (size_t)(iend - ip), SEP, sep_len);
        if (!s)
            break;
        const char *nl = memchr(op, '\n', (size_t)(oend - op));
        if (!nl) {
            CHECK_MSG(0, "%s: .out has fewer lines than .inp has cases", name);
            break;
        }
        size_t ne = parse_ids(op, (size_t)(nl - op), expect, 65536);
        int32_t *ids;
        size_t n;
        llm_err err;
        int rc = llm_tokenize(v, ip, (size_t)(s - ip), false, false, &ids, &n, &err);
        bool ok = rc == 0 && ids_equal(ids, n, expect, ne);
        CHECK_MSG(ok, "%s case %zu: tokens match the reference", name, ncase);
        if (!ok) {
            fprintf(stderr, "    text: \"%.*s\"\n", (int)(s - ip) > 80 ? 80 : (int)(s - ip), ip);
            print_ids("expected", expect, ne);
            print_ids("got     ", ids, n);
        }
        npass += ok;
        if (rt == RT_EXACT) {
            llm_buf b = {0};
            llm_detokenize(v, ids, n, LLM_DETOK_STRIP_SPACE, &b);
            bool same = b.len == (size_t)(s - ip) && (b.len == 0 || memcmp(b.data, ip, b.len) == 0);
            CHECK_MSG(same, "%s case %zu: detokenize(tokenize(x)) == x", name, ncase);
            nrt++, nrt_ok += same;
            llm_buf_free(&b);
        }
        free(ids);
        ncase++;
        ip = s + sep_len;
        op = nl + 1;
    }
    CHECK_MSG(ncase == 46, "%s: 46 cases in the .inp file (found %zu)", name, ncase);
    printf("  %-16s %zu/%zu cases pass", name, npass, ncase);
    if (rt == RT_EXACT)
        printf(", round trip %zu/%zu", nrt_ok, nrt);
    printf("\n");
    free(expect);
    free(inp);
    free(out);
    llm_vocab_free(v);
}

/* llama.cpp's tokens of the four reference prompts, tokenized with add_special as the model's
 * metadata says (BOS for tiny-llama, nothing for tiny-qwen2). */
static void test_reference_prompts(void)
{
    static const char *const models[] = {"tiny-llama-q8_0", "tiny-llama-q4_0", "tiny-llama-q4_k_m",
                                         "tiny-qwen2-q8_0", "tiny-qwen2-q4_0"};
    int pass = 0, total = 0;
    for (size_t m = 0; m < sizeof models / sizeof *models; m++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/models/%s.gguf", SHARED, models[m]);
        llm_vocab *v = load_vocab(path);
        CHECK_MSG(v != NULL, "%s: tokenizer loads", models[m]);
        if (!v)
            continue;
        for (int i = 0; i < 4; i++) {
            char jp[1100];
            snprintf(jp, sizeof jp, "%s/reference/%s/prompt-%d.json", SHARED, models[m], i);
            size_t len;
            char *js = test_read_file(jp, &len);
            cJSON *root = js ? cJSON_Parse(js) : NULL;
            const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(root, "prompt");
            const cJSON *toks = cJSON_GetObjectItemCaseSensitive(root, "tokens");
            CHECK_MSG(cJSON_IsString(prompt) && cJSON_IsArray(toks), "%s: readable", jp);
            if (cJSON_IsString(prompt) && cJSON_IsArray(toks)) {
                size_t ne = (size_t)cJSON_GetArraySize(toks);
                int32_t *expect = malloc((ne + 1) * sizeof *expect);
                for (size_t k = 0; k < ne; k++)
                    expect[k] = (int32_t)cJSON_GetArrayItem(toks, (int)k)->valuedouble;
                int32_t *ids;
                size_t n;
                llm_err err;
                const char *text = prompt->valuestring;
                int rc = llm_tokenize(v, text, strlen(text), true, false, &ids, &n, &err);
                bool ok = rc == 0 && ids_equal(ids, n, expect, ne);
                CHECK_MSG(ok, "%s prompt %d: tokens match llama.cpp", models[m], i);
                if (!ok) {
                    print_ids("expected", expect, ne);
                    print_ids("got     ", ids, n);
                }
                pass += ok;
                total++;
                free(ids);
                free(expect);
            }
            cJSON_Delete(root);
            free(js);
        }
        llm_vocab_free(v);
    }
    printf("  reference prompts %d/%d match\n", pass, total);
}

static int32_t byte_tok(const llm_vocab *v, unsigned b)
{
    char s[8];
    snprintf(s, sizeof s, "<0x%02X>", b);
    return llm_vocab_find(v, s, 6);
}

/* 🦙 = F0 9F A6 99 spelled with four byte tokens: nothing comes out until the fourth. */
static void test_streaming(const llm_vocab *spm)
{
    llm_detok d;
    llm_buf out = {0};
    llm_detok_init(&d, spm, 0);
    static const unsigned char llama[4] = {0xF0, 0x9F, 0xA6, 0x99};
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(llm_detok_push(&d, byte_tok(spm, llama[i]), &out), 0);
    CHECK_EQ_INT(out.len, 0);
    CHECK_EQ_INT(llm_detok_push(&d, byte_tok(spm, llama[3]), &out), 4);
    CHECK(out.len == 4 && memcmp(out.data, llama, 4) == 0);

    /* "▁Hello" (15043 in LLaMA's vocabulary) is " Hello" in a stream... */
    int32_t hello = llm_vocab_find(spm, "\xe2\x96\x81Hello", 8);
    CHECK_EQ_INT(hello, 15043);
    out.len = 0;
    llm_detok_push(&d, hello, &out);
    CHECK(out.len == 6 && memcmp(out.data, " Hello", 6) == 0);
    /* ...and "Hello" when it opens a decoded prompt. */
    llm_detok_init(&d, spm, LLM_DETOK_STRIP_SPACE);
    out.len = 0;
    llm_detok_push(&d, hello, &out);
    CHECK(out.len == 5 && memcmp(out.data, "Hello", 5) == 0);

    /* A lead byte followed by a non-continuation: U+FFFD, then the text. */
    llm_detok_init(&d, spm, 0);
    out.len = 0;
    llm_detok_push(&d, byte_tok(spm, 0xE6), &out);
    CHECK_EQ_INT(out.len, 0);
    llm_detok_push(&d, hello, &out);
    CHECK(out.len == 9 && memcmp(out.data, "\xef\xbf\xbd Hello", 9) == 0);
    /* A byte that never starts a character, and an unfinished one at the end. */
    out.len = 0;
    llm_detok_push(&d, byte_tok(spm, 0xFF), &out);
    CHECK(out.len == 3 && memcmp(out.data, "\xef\xbf\xbd", 3) == 0);
    out.len = 0;
    llm_detok_push(&d, byte_tok(spm, 0xE6), &out);
    llm_detok_push(&d, byte_tok(spm, 0x97), &out);
    CHECK_EQ_INT(out.len, 0);
    CHECK_EQ_INT(llm_detok_flush(&d, &out), 3);
    CHECK(out.len == 3 && memcmp(out.data, "\xef\xbf\xbd", 3) == 0);
    /* Control tokens are silent unless asked for. */
    out.len = 0;
    llm_detok_push(&d, llm_vocab_eos(spm), &out);
    CHECK_EQ_INT(out.len, 0);
    llm_detok_init(&d, spm, LLM_DETOK_SPECIAL);
    llm_detok_push(&d, llm_vocab_eos(spm), &out);
    CHECK(out.len == 4 && memcmp(out.data, "</s>", 4) == 0);
    llm_buf_free(&out);
}

static void test_special(const llm_vocab *spm, const llm_vocab *gpt2)
{
    int32_t *ids;
    size_t n;
    llm_err err;
    /* README: "Hello world" -> 15043 3186; BOS is 1. */
    CHECK(llm_tokenize(spm, "<s>Hello world", 14, false, true, &ids, &n, &err) == 0);
    CHECK(n == 3 && ids[0] == 1 && ids[1] == 15043 && ids[2] == 3186);
    free(ids);
    CHECK(llm_tokenize(spm, "<s>Hello world", 14, false, false, &ids, &n, &err) == 0);
    bool has_bos = false;
    for (size_t i = 0; i < n; i++)
        has_bos |= ids[i] == 1;
    CHECK_MSG(!has_bos && n > 3, "'<s>' is plain text without parse_special");
    free(ids);
    CHECK(llm_tokenize(spm, "Hello world", 11, true, false, &ids, &n, &err) == 0);
    CHECK(n == 3 && ids[0] == 1 && ids[1] == 15043);
    free(ids);
    CHECK(llm_vocab_add_bos(spm) && !llm_vocab_add_eos(spm));
    CHECK(llm_token_is_eog(spm, 2) && !llm_token_is_eog(spm, 1) && !llm_token_is_eog(spm, 15043));
    /* GPT-2: <|endoftext|> is 50256, a control token. */
    const char *eot = "<|endoftext|>";
    CHECK(llm_tokenize(gpt2, eot, strlen(eot), false, true, &ids, &n, &err) == 0);
    CHECK(n == 1 && ids[0] == 50256);
    free(ids);
    CHECK(llm_tokenize(gpt2, eot, strlen(eot), false, false, &ids, &n, &err) == 0);
    CHECK(n > 1);
    free(ids);
    CHECK(llm_token_is_eog(gpt2, 50256));
    /* Empty input: no tokens, and with add_special only BOS. */
    CHECK(llm_tokenize(spm, "", 0, false, false, &ids, &n, &err) == 0 && n == 0);
    free(ids);
    CHECK(llm_tokenize(spm, "", 0, true, false, &ids, &n, &err) == 0 && n == 1 && ids[0] == 1);
    free(ids);
    /* NUL bytes are data: SPM spells them <0x00> (id 3). */
    CHECK(llm_tokenize(spm, "a\0b", 3, false, false, &ids, &n, &err) == 0);
    bool has_nul = false;
    for (size_t i = 0; i < n; i++)
        has_nul |= ids[i] == 3;
    CHECK(has_nul);
    free(ids);
}


/* One check: text[0..len) tokenizes to want; on a mismatch both id lists are printed. */
static void check_tokens(const llm_vocab *v, const char *text, size_t len, bool add_special, bool parse_special,
                         const int32_t *want, size_t nwant, const char *what)
{
    int32_t *ids;
    size_t n;
    llm_err err;
    int rc = llm_tokenize(v, text, len, add_special, parse_special, &ids, &n, &err);
    bool ok = rc == 0 && ids_equal(ids, n, want, nwant);
    CHECK_MSG(ok, "%s", what);
    if (!ok) {
        print_ids("expected", want, nwant);
        print_ids("got     ", ids, n);
    }
    free(ids);
}

static void check_ids(const llm_vocab *v, const char *text, size_t len, const int32_t *want, size_t nwant,
                      const char *what)
{
    check_tokens(v, text, len, false, false, want, nwant, what);
}

/* WordPiece rules, with expected ids looked up in the vocabulary by their strings. */
static void test_wordpiece(const llm_vocab *bert)
{
#define ID(s) llm_vocab_find(bert, s, strlen(s))
    /* accents stripped and lowercased (BertNormalizer), punctuation split off */
    int32_t cafe[] = {ID("\xe2\x96\x81" "cafe"), ID("\xe2\x96\x81,"), ID("\xe2\x96\x81" "world")};
    CHECK(cafe[0] >= 0 && cafe[1] >= 0 && cafe[2] >= 0);
    check_ids(bert, "Caf\xc3\xa9,WORLD", 12, cafe, 3, "wpm: 'Caf\xc3\xa9,WORLD' -> cafe , world");
    /* CJK ideographs are words of their own */
    int32_t cjk[] = {ID("\xe2\x96\x81\xe6\x97\xa5"), ID("\xe2\x96\x81\xe6\x9c\xac")};
    CHECK(cjk[0] >= 0 && cjk[1] >= 0);
    check_ids(bert, "\xe6\x97\xa5\xe6\x9c\xac", 6, cjk, 2, "wpm: CJK characters split");
    /* a word of more than 100 characters is [UNK] (100), as is one with no cover */
    char longw[130];
    memset(longw, 'a', 101);
    int32_t unk[] = {100};
    check_ids(bert, longw, 101, unk, 1, "wpm: 101-character word is [UNK]");
    /* control characters and invalid bytes vanish; NUL too */
    int32_t hello[] = {ID("\xe2\x96\x81hello")};
    check_ids(bert, "he\x01l\xffl\0o", 8, hello, 1, "wpm: control/invalid/NUL bytes dropped");
    /* continuation pieces: "playing" -> play ##ing in BERT's vocabulary */
    int32_t playing[] = {ID("\xe2\x96\x81play"), ID("ing")};
    CHECK(playing[0] >= 0 && playing[1] >= 0);
    int32_t *ids;
    size_t n;
    llm_err err;
    CHECK(llm_tokenize(bert, "playing", 7, false, false, &ids, &n, &err) == 0);
    /* either the whole word is a token or it is play + ing; never [UNK] */
    int32_t whole = ID("\xe2\x96\x81playing");
    CHECK((whole >= 0 && n == 1 && ids[0] == whole) || (n == 2 && ids[0] == playing[0] && ids[1] == playing[1]));
    free(ids);
    /* add_special wraps in [CLS] ... [SEP] */
    CHECK(llm_tokenize(bert, "hello", 5, true, false, &ids, &n, &err) == 0);
    CHECK(n == 3 && ids[0] == 101 && ids[1] == hello[0] && ids[2] == 102);
    free(ids);
    /* decoding: word pieces joined, words separated by one space */
    llm_buf b = {0};
    int32_t seq[] = {cafe[0], cafe[1], cafe[2]};
    llm_detokenize(bert, seq, 3, LLM_DETOK_STRIP_SPACE, &b);
    CHECK(b.len == 12 && memcmp(b.data, "cafe , world", 12) == 0);
    llm_buf_free(&b);
#undef ID
}

/* Byte-level BPE details: invalid UTF-8 becomes U+FFFD; streaming holds back partial characters. */
static void test_bpe_details(const llm_vocab *gpt2)
{
    int32_t *ids;
    size_t n;
    llm_err err;
    CHECK(llm_tokenize(gpt2, "a\xff" "b", 3, false, false, &ids, &n, &err) == 0);
    llm_buf b = {0};
    llm_detokenize(gpt2, ids, n, 0, &b);
    CHECK(b.len == 5 && memcmp(b.data, "a\xef\xbf\xbd" "b", 5) == 0);
    llm_buf_free(&b);
    free(ids);

    /* 🦙 and 日本 spelled by byte-level tokens: every push emits only whole characters */
    const char *text = "x\xf0\x9f\xa6\x99\xe6\x97\xa5\xe6\x9c\xac";
    CHECK(llm_tokenize(gpt2, text, strlen(text), false, false, &ids, &n, &err) == 0);
    CHECK(n >= 3);
    llm_detok d;
    llm_detok_init(&d, gpt2, 0);
    llm_buf out = {0};
    bool whole_chars = true;
    for (size_t i = 0; i < n; i++) {
        llm_detok_push(&d, ids[i], &out);
        /* the output so far must end on a character boundary of the text */
        size_t k = out.len;
        whole_chars &= k == strlen(text) || (((unsigned char)text[k] & 0xC0) != 0x80);
    }
    CHECK(whole_chars);
    CHECK_EQ_INT(llm_detok_flush(&d, &out), 0);
    CHECK(out.len == strlen(text) && memcmp(out.data, text, out.len) == 0);
    llm_buf_free(&out);
    free(ids);

    /* token_to_piece follows snprintf: the full length even when cap is short */
    int32_t hello = llm_vocab_find(gpt2, "\xc4\xa0Hello", 7); /* "ĠHello" */
    CHECK(hello >= 0);
    char small[3];
    CHECK_EQ_INT(llm_token_to_piece(gpt2, hello, small, sizeof small, false), 6);
    CHECK(memcmp(small, " He", 3) == 0);
}

/* Tokenizer files rebuilt from the gpt-2 vocabulary with another tokenizer.ggml.pre exercise
 * every pre-tokenizer regex (the shared data has no qwen2/llama3 vocabulary). How "12345" is
 * cut follows from each regex by hand: \p{N} (qwen2, deepseek-coder, starcoder) gives single
 * digits, \p{N}{1,3} (llama3) and [0-9]{3} (falcon, default) give "123" "45". An unknown name
 * falls back to the gpt-2 regex; a token_type array of the wrong length is rejected by name. */
static void test_rebuilt_vocab(const char *dir)
{
    char src[1024];
    snprintf(src, sizeof src, "%s/models/vocab/ggml-vocab-gpt-2.gguf", dir);
    llm_map m;
    gguf_file f;
    llm_err err;
    if (llm_map_open(&m, src, NULL, &err) || gguf_parse(&f, src, m.base, m.size, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        return;
    }
    static const struct {
        const char *pre;
        int digits; /* 1: single digits, 3: groups of three, 0: not checked, -1: odd special ids */
    } VARIANTS[] = {{"no-such-pre-tokenizer", 0}, {"qwen2", 1}, {"deepseek-coder", 1}, {"starcoder", 1},
                    {"llama3", 3}, {"falcon", 3}, {"default", 3}, {"deepseek-llm", 0}, {"mpt", 0},
                    {"refact", 1}, {"gpt-2", -1}, {NULL, 0}};
    for (int k = 0; k < (int)(sizeof VARIANTS / sizeof *VARIANTS); k++) {
        bool break_types = VARIANTS[k].pre == NULL;
        const char *pre = break_types ? "gpt-2" : VARIANTS[k].pre;
        char path[] = "/tmp/llmap-test-tok-XXXXXX";
        int fd = mkstemp(path);
        CHECK(fd >= 0);
        if (fd < 0)
            break;
        close(fd);
        gguf_writer *w = gguf_writer_new(32);
        for (uint64_t i = 0; i < f.n_kv; i++) {
            const gguf_kv *kv = &f.kv[i];
            bool odd_ids = VARIANTS[k].digits == -1;
            if (!strcmp(kv->key, "tokenizer.ggml.pre"))
                gguf_w_str(w, kv->key, pre);
            else if (odd_ids && (!strcmp(kv->key, "tokenizer.ggml.bos_token_id") ||
                                 !strcmp(kv->key, "tokenizer.ggml.eos_token_id")))
                continue; /* written below */
            else if (break_types && !strcmp(kv->key, "tokenizer.ggml.token_type")) {
                int32_t t[3] = {1, 1, 1};
                gguf_w_arr(w, kv->key, GGUF_I32, t, 3);
            } else
                gguf_w_copy_kv(w, kv);
        }
        if (VARIANTS[k].digits == -1) {
            /* an out-of-range BOS keeps the gpt2 default (11); a negative id means none */
            gguf_w_u32(w, "tokenizer.ggml.bos_token_id", 999999);
            gguf_w_i32(w, "tokenizer.ggml.eos_token_id", -1);
        }
        CHECK(gguf_writer_write(w, path, NULL, NULL, &err) == 0);
        gguf_writer_free(w);
        llm_vocab *v = load_vocab_quiet(path, &err);
        unlink(path);
        if (v && VARIANTS[k].digits == -1) {
            CHECK_EQ_INT(llm_vocab_bos(v), 11);
            CHECK_EQ_INT(llm_vocab_eos(v), -1);
            CHECK(llm_token_is_eog(v, 50256)); /* <|endoftext|> ends generation, found by its text */
        }
        if (break_types) {
            CHECK(v == NULL);
            CHECK_CONTAINS(err.msg, "tokenizer.ggml.token_type");
            continue;
        }
        CHECK_MSG(v != NULL, "pre '%s' loads: %s", pre, v ? "" : err.msg);
        if (!v)
            continue;
        CHECK_EQ_STR(llm_vocab_pre(v), pre);
        if (k == 0) {
            /* " Hello World" in gpt-2: 18435 2159 (.out line of that case) */
            int32_t want[] = {18435, 2159};
            check_ids(v, " Hello World", 12, want, 2, "fallback regex tokenizes like gpt-2");
        }
        if (VARIANTS[k].digits == 1) {
            int32_t want[5];
            for (int d = 0; d < 5; d++)
                want[d] = llm_vocab_find(v, &"12345"[d], 1);
            check_ids(v, "12345", 5, want, 5, pre);
        } else if (VARIANTS[k].digits == 3) {
            int32_t want[2] = {llm_vocab_find(v, "123", 3), llm_vocab_find(v, "45", 2)};
            CHECK(want[0] >= 0 && want[1] >= 0);
            check_ids(v, "12345", 5, want, 2, pre);
        }
        /* byte-level BPE is lossless on valid UTF-8 whatever the pre-tokenizer */
        const char *text = "Hello,  world!\n\n  12345 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e don't \xf0\x9f\xa6\x99\t";
        int32_t *ids;
        size_t n;
        CHECK(llm_tokenize(v, text, strlen(text), false, false, &ids, &n, &err) == 0);
        llm_buf b = {0};
        llm_detokenize(v, ids, n, 0, &b);
        CHECK_MSG(b.len == strlen(text) && memcmp(b.data, text, b.len) == 0, "pre '%s': round trip", pre);
        llm_buf_free(&b);
        free(ids);
        llm_vocab_free(v);
    }
    gguf_free(&f);
    llm_map_close(&m);
}


/* ---- hand-built vocabularies: no shared data needed, expectations worked out by hand ---- */

static llm_vocab *vocab_from_writer(gguf_writer *w)
{
    char path[] = "/tmp/llmap-test-tok-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) {
        gguf_writer_free(w);
        return NULL;
    }
    close(fd);
    llm_err err;
    llm_vocab *v = NULL;
    if (gguf_writer_write(w, path, NULL, NULL, &err) == 0)
        v = load_vocab_quiet(path, &err);
    if (!v)
        fprintf(stderr, "FAIL mini vocabulary: %s\n", err.msg);
    gguf_writer_free(w);
    unlink(path);
    return v;
}

static void expect(const llm_vocab *v, const char *text, bool add_special, bool parse_special,
                   const int32_t *want, size_t nwant, const char *what)
{
    check_tokens(v, text, strlen(text), add_special, parse_special, want, nwant, what);
}

#define U2581 "\xe2\x96\x81"
#define N_OF(a) (sizeof a / sizeof *a)

/* SPM: ids 0-2 unk/bos/eos, 3..258 <0x00>..<0xFF>, then ▁ a b ▁a ab ▁ab <|x|> (259..265) with
 * scores -1..-6 and <|x|> user-defined. "ab" -> "▁ab": the pair ▁a (-4) beats ab (-5), then ▁a+b
 * is the token ▁ab. After the user-defined <|x|> the next text gets the "▁" prefix again. */
static void test_mini_spm(void)
{
    const char *toks[266];
    char bytes[256][7];
    float scores[266] = {0};
    int32_t types[266];
    toks[0] = "<unk>", toks[1] = "<s>", toks[2] = "</s>";
    types[0] = 2, types[1] = types[2] = 3;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        toks[3 + b] = bytes[b];
        types[3 + b] = 6;
    }
    const char *rest[] = {U2581, "a", "b", U2581 "a", "ab", U2581 "ab", "<|x|>"};
    for (int i = 0; i < 7; i++) {
        toks[259 + i] = rest[i];
        scores[259 + i] = i < 6 ? -(float)(i + 1) : 0;
        types[259 + i] = i < 6 ? 1 : 4;
    }
    gguf_writer *w = gguf_writer_new(32);
    gguf_w_str(w, "tokenizer.ggml.model", "llama");
    gguf_w_arr_str(w, "tokenizer.ggml.tokens", toks, 266);
    gguf_w_arr(w, "tokenizer.ggml.scores", GGUF_F32, scores, 266);
    gguf_w_arr(w, "tokenizer.ggml.token_type", GGUF_I32, types, 266);
    llm_vocab *v = vocab_from_writer(w);
    CHECK(v != NULL);
    if (!v)
        return;
    int32_t ab[] = {264};
    expect(v, "ab", false, false, ab, 1, "mini spm: ab -> \xe2\x96\x81" "ab");
    int32_t bos_ab[] = {1, 264};
    expect(v, "ab", true, false, bos_ab, 2, "mini spm: add_special prepends <s> (default for SPM)");
    int32_t user[] = {264, 265, 264};
    expect(v, "ab<|x|>ab", false, false, user, 3, "mini spm: user-defined token matched, prefix after it");
    /* "c" is no token: byte fallback <0x63> = 3 + 0x63; "▁" alone is 259 */
    int32_t c[] = {259, 3 + 0x63};
    expect(v, "c", false, false, c, 2, "mini spm: byte fallback");
    /* "<s>" without parse_special: bytes; with it: BOS, then "▁a" */
    int32_t s_special[] = {1, 262};
    expect(v, "<s>a", false, true, s_special, 2, "mini spm: <s> parsed as BOS with parse_special");
    llm_vocab_free(v);
}

/* BPE: the 256 byte characters (ids 0..255 in byte order), then he ll hell hello Ġh <|endoftext|>
 * (256..261) with merges [h e, l l, he ll, hell o, Ġ h] in rank order. " hello": Ġ stays alone
 * because "h e" (rank 0) takes the h before "Ġ h" (rank 4) could. */
static void test_mini_bpe(void)
{
    char chars[256][3];
    const char *toks[262];
    for (int b = 0, extra = 0; b < 256; b++) {
        bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        unsigned cp = printable ? (unsigned)b : 256u + (unsigned)extra++;
        if (cp < 0x80) {
            chars[b][0] = (char)cp, chars[b][1] = 0;
        } else {
            chars[b][0] = (char)(0xC0 | (cp >> 6)), chars[b][1] = (char)(0x80 | (cp & 0x3F)), chars[b][2] = 0;
        }
        toks[b] = chars[b];
    }
    const char *rest[] = {"he", "ll", "hell", "hello", "\xc4\xa0h", "<|endoftext|>"};
    for (int i = 0; i < 6; i++)
        toks[256 + i] = rest[i];
    int32_t types[262];
    for (int i = 0; i < 262; i++)
        types[i] = i == 261 ? 3 : 1;
    const char *merges[] = {"h e", "l l", "he ll", "hell o", "\xc4\xa0 h"};
    gguf_writer *w = gguf_writer_new(32);
    gguf_w_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_w_str(w, "tokenizer.ggml.pre", "gpt-2");
    gguf_w_arr_str(w, "tokenizer.ggml.tokens", toks, 262);
    gguf_w_arr(w, "tokenizer.ggml.token_type", GGUF_I32, types, 262);
    gguf_w_arr_str(w, "tokenizer.ggml.merges", merges, 5);
    gguf_w_u32(w, "tokenizer.ggml.eos_token_id", 261);
    llm_vocab *v = vocab_from_writer(w);
    CHECK(v != NULL);
    if (!v)
        return;
    int32_t hh[] = {259, ' ', 259};
    expect(v, "hello hello", false, false, hh, 3, "mini bpe: hello, then Ġ + hello");
    int32_t hx[] = {256, 'x'};
    expect(v, "hex", false, false, hx, 2, "mini bpe: he + x");
    /* a space before "h" alone does merge: " h" -> Ġh */
    int32_t sh[] = {260};
    expect(v, " h", false, false, sh, 1, "mini bpe: \xc4\xa0h");
    /* BPE adds no BOS by default; <|endoftext|> only with parse_special */
    int32_t eot[] = {261};
    expect(v, "<|endoftext|>", true, true, eot, 1, "mini bpe: control token with parse_special, no BOS");
    CHECK(llm_token_is_eog(v, 261) && !llm_vocab_add_bos(v));
    /* bytes 0x00 and 0xFF are ids 0 and 255 through their stand-in characters, not lost */
    int32_t *ids;
    size_t n;
    llm_err err;
    CHECK(llm_tokenize(v, "\x00", 1, false, false, &ids, &n, &err) == 0 && n == 1 && ids[0] == 0);
    free(ids);
    llm_vocab_free(v);
}

/* WordPiece: [PAD] [UNK] [CLS] [SEP] ▁hello ▁world ing ▁, ▁play (0..8). */
static void test_mini_wpm(void)
{
    const char *toks[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", U2581 "hello", U2581 "world", "ing", U2581 ",",
                          U2581 "play"};
    int32_t types[] = {3, 3, 3, 3, 1, 1, 1, 1, 1};
    gguf_writer *w = gguf_writer_new(32);
    gguf_w_str(w, "tokenizer.ggml.model", "bert");
    gguf_w_arr_str(w, "tokenizer.ggml.tokens", toks, N_OF(toks));
    gguf_w_arr(w, "tokenizer.ggml.token_type", GGUF_I32, types, N_OF(types));
    gguf_w_u32(w, "tokenizer.ggml.unknown_token_id", 1);
    gguf_w_u32(w, "tokenizer.ggml.cls_token_id", 2);
    gguf_w_u32(w, "tokenizer.ggml.seperator_token_id", 3);
    llm_vocab *v = vocab_from_writer(w);
    CHECK(v != NULL);
    if (!v)
        return;
    int32_t want[] = {2, 4, 7, 5, 8, 6, 1, 3};
    expect(v, "HELLO,world  Playing playz", true, false, want, N_OF(want),
           "mini wpm: [CLS] hello , world play ##ing [UNK] [SEP]");
    llm_vocab_free(v);
}

/* Phi-3's chat markers swallow the whitespace after them (llama.cpp sets RSTRIP on its special
 * tokens by model name), and the text after a special token gets SentencePiece's "▁" prefix. */
static void test_phi3_strip(const char *dir)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/models/vocab/ggml-vocab-phi-3.gguf", dir);
    llm_vocab *v = load_vocab(path);
    CHECK(v != NULL);
    if (!v)
        return;
    int32_t user = llm_vocab_find(v, "<|user|>", 8), end = llm_vocab_find(v, "<|end|>", 7);
    int32_t hello = llm_vocab_find(v, "\xe2\x96\x81Hello", 8);
    CHECK(user >= 0 && end >= 0 && hello >= 0);
    const char *text = "<|user|>\n  Hello<|end|>\n";
    int32_t *ids;
    size_t n;
    llm_err err;
    CHECK(llm_tokenize(v, text, strlen(text), false, true, &ids, &n, &err) == 0);
    CHECK_MSG(n == 3 && ids[0] == user && ids[1] == hello && ids[2] == end,
              "phi-3: <|user|>\\n  Hello<|end|>\\n -> <|user|> \u2581Hello <|end|> (got %zu tokens)", n);
    free(ids);
    llm_vocab_free(v);
}

static void test_bad_file(void)
{
    char path[] = "/tmp/llmap-test-tok-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    close(fd);
    gguf_writer *w = gguf_writer_new(32);
    gguf_w_str(w, "general.architecture", "llama");
    gguf_w_str(w, "tokenizer.ggml.model", "llama");
    llm_err err;
    CHECK(gguf_writer_write(w, path, NULL, NULL, &err) == 0);
    gguf_writer_free(w);
    llm_map m;
    gguf_file f;
    llm_vocab *v = NULL;
    if (llm_map_open(&m, path, NULL, &err) == 0) {
        if (gguf_parse(&f, path, m.base, m.size, &err) == 0) {
            CHECK(llm_vocab_load(&f, &v, &err) == -1 && v == NULL);
            CHECK_CONTAINS(err.msg, "tokenizer.ggml.tokens");
        }
        gguf_free(&f);
        llm_map_close(&m);
    }
    unlink(path);
}

/* Hostile inputs in bounded time: 1 MB of random bytes and 1 MB of one character. The bound
 * is generous (the precise figure is the benchmark's job); quadratic merging would blow it. */
static void test_bounded_time(const char *name, const llm_vocab *v, bool spm_roundtrip)
{
    const size_t N = 1 << 20;
    double bound = getenv("LLMAP_SANITIZED") ? 60.0 : 10.0;
    char *buf = malloc(N);
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < N; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        buf[i] = (char)(s >> 24);
    }
    /* A literal "▁" (E2 96 81) is SentencePiece's space and decodes as one: keep it out. */
    for (size_t i = 0; i + 2 < N; i++)
        if (memcmp(buf + i, "\xe2\x96\x81", 3) == 0)
            buf[i] = 'x';
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1)
            memset(buf, 'a', N);
        int32_t *ids;
        size_t n;
        llm_err err;
        double t0 = llm_now();
        int rc = llm_tokenize(v, buf, N, false, false, &ids, &n, &err);
        double dt = llm_now() - t0;
        CHECK_MSG(rc == 0 && n > 0 && dt < bound, "%s: 1 MB of %s tokenized in %.2f s (bound %.0f s)", name,
                  pass ? "'a'" : "random bytes", dt, bound);
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= llm_vocab_n(v)) {
                CHECK_MSG(0, "%s: id %d out of range", name, ids[i]);
                break;
            }
        if (spm_roundtrip) {
            llm_buf b = {0};
            llm_detokenize(v, ids, n, LLM_DETOK_STRIP_SPACE, &b);
            CHECK_MSG(b.len == N && memcmp(b.data, buf, N) == 0, "%s: 1 MB round trip is exact", name);
            llm_buf_free(&b);
        }
        free(ids);
    }
    free(buf);
}

int main(void)
{
    test_mini_spm();
    test_mini_bpe();
    test_mini_wpm();
    test_bad_file();
    SHARED = shared_dir();
    if (!SHARED) {
        SKIP("shared data (../shared or $LLMAP_SHARED) absent: tokenizer reference tests not run");
        TEST_END("tokenizer");
    }
    printf("vocabularies (reference ids from the Hugging Face tokenizers):\n");
    test_vocab_file("llama-spm", RT_EXACT);
    test_vocab_file("phi-3", RT_EXACT);
    test_vocab_file("gpt-2", RT_EXACT);
    test_vocab_file("deepseek-coder", RT_EXACT);
    test_vocab_file("deepseek-llm", RT_EXACT);
    test_vocab_file("falcon", RT_EXACT);
    test_vocab_file("mpt", RT_EXACT);
    test_vocab_file("refact", RT_EXACT);
    test_vocab_file("starcoder", RT_EXACT);
    test_vocab_file("bert-bge", RT_NONE);
    test_reference_prompts();

    char path[1024];
    snprintf(path, sizeof path, "%s/models/vocab/ggml-vocab-llama-spm.gguf", SHARED);
    llm_vocab *spm = load_vocab(path);
    snprintf(path, sizeof path, "%s/models/vocab/ggml-vocab-gpt-2.gguf", SHARED);
    llm_vocab *gpt2 = load_vocab(path);
    snprintf(path, sizeof path, "%s/models/vocab/ggml-vocab-bert-bge.gguf", SHARED);
    llm_vocab *bert = load_vocab(path);
    CHECK(spm && gpt2 && bert);
    if (spm && gpt2 && bert) {
        test_streaming(spm);
        test_special(spm, gpt2);
        test_wordpiece(bert);
        test_bpe_details(gpt2);
        test_rebuilt_vocab(SHARED);
        test_phi3_strip(SHARED);
        test_bounded_time("spm", spm, true);
        test_bounded_time("bpe", gpt2, false);
        test_bounded_time("wpm", bert, false);
    }
    llm_vocab_free(spm);
    llm_vocab_free(gpt2);
    llm_vocab_free(bert);
    TEST_END("tokenizer");
}
