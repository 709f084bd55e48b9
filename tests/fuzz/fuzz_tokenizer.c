/*
 * libFuzzer target for the tokenizers: random bytes through SentencePiece (llama-spm),
 * byte-level BPE (gpt-2) and WordPiece (bert-bge), loaded once from the shared vocabularies
 * ($LLMAP_SHARED, else ../shared). Every result must be in range; where a tokenizer is
 * lossless the round trip must be exact (SPM: any bytes without a literal "▁"; BPE: valid
 * UTF-8), and the streaming detokenizer must agree with whole-sequence decoding and always
 * emit valid UTF-8.
 *
 * The first input byte picks the tokenizer (bits 0-1), parse_special (bit 2) and add_special
 * (bit 3); the rest is the text. With bit 4 set the rest is instead a GGUF file whose tokenizer
 * metadata is loaded (untrusted model files) and, when it loads, used on a fixed text.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "mem/mem.h"
#include "text/text.h"

/* Loaded once per fuzzing process: libFuzzer calls the target millions of times. */
static llm_vocab *VOCABS[3];

static llm_vocab *load(const char *name)
{
    const char *dir = getenv("LLMAP_SHARED");
    char path[1024];
    snprintf(path, sizeof path, "%s/models/vocab/ggml-vocab-%s.gguf", dir ? dir : "../shared", name);
    llm_map m;
    gguf_file f;
    llm_err err;
    llm_vocab *v = NULL;
    if (llm_map_open(&m, path, NULL, &err)) {
        /* no shared data: say so loudly and fuzz nothing (as the tests SKIP) */
        fprintf(stderr, "fuzz_tokenizer: SKIP: %s (set LLMAP_SHARED)\n", err.msg);
        return NULL;
    }
    if (gguf_parse(&f, path, m.base, m.size, &err) || llm_vocab_load(&f, &v, &err)) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", err.msg);
        abort();
    }
    gguf_free(&f);
    llm_map_close(&m);
    return v;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    VOCABS[0] = load("llama-spm");
    VOCABS[1] = load("gpt-2");
    VOCABS[2] = load("bert-bge");
    return 0;
}

static bool valid_utf8(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (len == 0 || len > n - i)
            return false;
        uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

#define REQUIRE(c)                                                                                       \
    do {                                                                                                 \
        if (!(c)) {                                                                                      \
            fprintf(stderr, "fuzz_tokenizer: %s:%d: %s\n", __FILE__, __LINE__, #c);                     \
            abort();                                                                                     \
        }                                                                                                \
    } while (0)

/* The rest of the input as a model file: loading must fail cleanly or give a usable vocabulary. */
static void fuzz_vocab_file(const uint8_t *data, size_t size)
{
    gguf_file f;
    llm_err err;
    if (gguf_parse(&f, "fuzz.gguf", data, size, &err) == 0) {
        llm_vocab *v = NULL;
        if (llm_vocab_load(&f, &v, &err) == 0) {
            static const char text[] = "Hello, world! <s><|endoftext|>[CLS] ab \xe6\x97\xa5 \xff\x00 playing";
            for (int mode = 0; mode < 4; mode++) {
                int32_t *ids;
                size_t n;
                REQUIRE(llm_tokenize(v, text, sizeof text - 1, mode & 1, mode & 2, &ids, &n, &err) == 0);
                llm_detok d;
                llm_buf out = {0};
                llm_detok_init(&d, v, LLM_DETOK_SPECIAL);
                for (size_t i = 0; i < n; i++) {
                    REQUIRE(ids[i] >= 0 && ids[i] < llm_vocab_n(v));
                    llm_detok_push(&d, ids[i], &out);
                }
                llm_detok_flush(&d, &out);
                REQUIRE(valid_utf8((const unsigned char *)out.data, out.len));
                llm_buf_free(&out);
                free(ids);
            }
            for (int32_t id = -1; id <= llm_vocab_n(v) && id < 300; id++) {
                char buf[8];
                llm_token_to_piece(v, id, buf, sizeof buf, true);
                llm_token_is_eog(v, id);
            }
            llm_vocab_free(v);
        }
    }
    gguf_free(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size >= 1 && (data[0] & 0x10)) {
        fuzz_vocab_file(data + 1, size - 1);
        return 0;
    }
    if (size < 1 || !VOCABS[0] || !VOCABS[1] || !VOCABS[2])
        return 0;
    unsigned sel = data[0] & 3;
    if (sel == 3)
        sel = 0;
    bool parse_special = data[0] & 4, add_special = data[0] & 8;
    const llm_vocab *v = VOCABS[sel];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;

    int32_t *ids;
    size_t n;
    llm_err err;
    REQUIRE(llm_tokenize(v, text, len, add_special, parse_special, &ids, &n, &err) == 0);
    for (size_t i = 0; i < n; i++)
        REQUIRE(ids[i] >= 0 && ids[i] < llm_vocab_n(v));

    llm_vocab_kind kind = llm_vocab_kind_of(v);
    bool utf8 = valid_utf8(data + 1, len);
    bool lossless = !parse_special && !add_special &&
                    ((kind == LLM_VOCAB_SPM && !memmem(text, len, "\xe2\x96\x81", 3)) ||
                     (kind == LLM_VOCAB_BPE && utf8));
    llm_buf whole = {0};
    llm_detokenize(v, ids, n, LLM_DETOK_STRIP_SPACE, &whole);
    if (lossless)
        REQUIRE(whole.len == len && (len == 0 || memcmp(whole.data, text, len) == 0));

    llm_detok d;
    llm_buf stream = {0};
    llm_detok_init(&d, v, LLM_DETOK_STRIP_SPACE);
    for (size_t i = 0; i < n; i++)
        llm_detok_push(&d, ids[i], &stream);
    llm_detok_flush(&d, &stream);
    REQUIRE(valid_utf8((const unsigned char *)stream.data, stream.len));
    if (valid_utf8((const unsigned char *)whole.data, whole.len))
        REQUIRE(stream.len == whole.len && (whole.len == 0 || memcmp(stream.data, whole.data, whole.len) == 0));

    llm_buf_free(&whole);
    llm_buf_free(&stream);
    free(ids);
    return 0;
}
