/*
 * tok_wpm — WordPiece ("bert" vocabularies), as Hugging Face's BertNormalizer,
 * BertPreTokenizer and WordPiece model do it for uncased BERT:
 *   normalize: drop NUL, U+FFFD and control characters, whitespace -> space, put spaces around
 *              CJK ideographs, NFD and drop combining marks (Mn), lowercase (utf8proc);
 *   split:     at whitespace, and every punctuation character is a word of its own;
 *   encode:    greedy longest match from the start of each word; a word with no full cover,
 *              or longer than 100 characters, becomes [UNK].
 * GGUF stores word-initial pieces with a "▁" prefix and continuations without their "##"
 * (llama.cpp's convention), so a word is looked up as "▁" + word.
 * Invalid UTF-8 bytes are dropped (they would be U+FFFD, which BERT removes).
 */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "text/tok_internal.h"

#define WPM_MAX_WORD_CHARS 100

static bool is_bert_whitespace(uint32_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || (c >= 0x0B && c <= 0x0C) || c == 0x85 ||
           c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

static bool is_bert_control(uint32_t c)
{
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CS:
        return true;
    default:
        return false;
    }
}

static bool is_bert_punct(uint32_t c)
{
    if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126))
        return true;
    utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);
    return cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO;
}

static bool is_cjk(uint32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

typedef struct wpm_word {
    char *buf; /* "▁" + the word's UTF-8 */
    size_t len, cap;
    size_t n_chars;
} wpm_word;

static void word_reset(wpm_word *w)
{
    memcpy(w->buf, "\xe2\x96\x81", 3);
    w->len = 3;
    w->n_chars = 0;
}

static void word_add(wpm_word *w, uint32_t cp)
{
    if (w->len + 4 > w->cap) {
        w->cap = w->cap * 2 + 16;
        w->buf = llm_xrealloc(w->buf, w->cap);
    }
    w->len += tok_utf8_encode(cp, w->buf + w->len);
    w->n_chars++;
}

/* Greedy longest-match cover of one word; all or nothing. */
static void encode_word(const llm_vocab *v, const wpm_word *w, tok_vec *out)
{
    if (w->n_chars == 0)
        return;
    size_t mark = out->n;
    if (w->n_chars <= WPM_MAX_WORD_CHARS) {
        size_t i = 0; /* at 0 the piece includes the "▁" prefix */
        while (i < w->len) {
            size_t min_end = i == 0 ? 4 : i + 1;
            size_t j = w->len;
            if (j - i > v->max_token_len)
                j = i + v->max_token_len;
            int32_t id = -1;
            for (; j >= min_end; j--) {
                if (j < w->len && ((unsigned char)w->buf[j] & 0xC0) == 0x80)
                    continue; /* not a character boundary */
                id = tok_find(v, w->buf + i, j - i);
                if (id >= 0)
                    break;
            }
            if (id < 0) {
                out->n = mark;
                break;
            }
            tok_vec_push(out, id);
            i = j;
        }
    }
    if (out->n == mark && v->unk >= 0)
        tok_vec_push(out, v->unk);
}

static void flush_word(const llm_vocab *v, wpm_word *w, tok_vec *out)
{
    encode_word(v, w, out);
    word_reset(w);
}

/* One normalized character into the current word (or as a word of its own). */
static void add_char(const llm_vocab *v, wpm_word *w, uint32_t cp, tok_vec *out)
{
    if (utf8proc_category((utf8proc_int32_t)cp) == UTF8PROC_CATEGORY_MN)
        return; /* accent stripping */
    cp = (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
    if (is_bert_punct(cp) || is_cjk(cp)) {
        flush_word(v, w, out);
        word_add(w, cp);
        flush_word(v, w, out);
        return;
    }
    word_add(w, cp);
}

void tok_wpm(const llm_vocab *v, const char *text, size_t len, tok_vec *out)
{
    wpm_word w = {llm_xmalloc(64), 0, 64, 0};
    word_reset(&w);
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = tok_utf8_decode(s + i, len - i, &cp);
        if (n == 0) {
            i++;
            continue;
        }
        i += n;
        if (cp == 0 || cp == 0xFFFD)
            continue;
        if (is_bert_whitespace(cp)) {
            flush_word(v, &w, out);
            continue;
        }
        if (is_bert_control(cp))
            continue;
        utf8proc_int32_t dec[32];
        int last_bound = 0;
        utf8proc_ssize_t nd = utf8proc_decompose_char((utf8proc_int32_t)cp, dec, 32, UTF8PROC_DECOMPOSE,
                                                      &last_bound);
        if (nd <= 0 || nd > 32) {
            add_char(v, &w, cp, out);
            continue;
        }
        for (utf8proc_ssize_t k = 0; k < nd; k++)
            add_char(v, &w, (uint32_t)dec[k], out);
    }
    flush_word(v, &w, out);
    free(w.buf);
}
