/*
 * detok — token ids back to text: the bytes each token stands for (llm_token_to_piece), whole
 * sequences (llm_detokenize), and the streaming detokenizer used while generating, which
 * only ever emits complete UTF-8 characters: a character split across byte tokens
 * (<0xE6><0x97><0xA5>) is held back until its last byte arrives.
 */
#include <stdlib.h>
#include <string.h>

#include "text/tok_internal.h"

/* Writes what fits, returns the full length: the snprintf contract of llm_token_to_piece. */
static size_t put(char *buf, size_t cap, size_t at, const void *p, size_t n)
{
    if (at < cap)
        memcpy(buf + at, p, n < cap - at ? n : cap - at);
    return at + n;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* "<0xNN>" -> NN, -1 otherwise. */
static int byte_token_value(const char *t, size_t n)
{
    if (n != 6 || memcmp(t, "<0x", 3) != 0 || t[5] != '>')
        return -1;
    int hi = hexval(t[3]), lo = hexval(t[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

/* SentencePiece / WordPiece text: "▁" -> " ". */
static size_t unescape_spaces(const char *t, size_t n, char *buf, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        if (n - i >= 3 && memcmp(t + i, "\xe2\x96\x81", 3) == 0) {
            k = put(buf, cap, k, " ", 1);
            i += 3;
        } else {
            k = put(buf, cap, k, t + i, 1);
            i++;
        }
    }
    return k;
}

/* Byte-level BPE text: each stand-in character -> its byte; anything else is copied. */
static size_t decode_byte_level(const llm_vocab *v, const char *t, size_t n, char *buf, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = tok_utf8_decode((const unsigned char *)t + i, n - i, &cp);
        if (l == 0) {
            k = put(buf, cap, k, t + i, 1);
            i++;
            continue;
        }
        if (cp < 512 && v->cp_byte[cp] >= 0) {
            char b = (char)v->cp_byte[cp];
            k = put(buf, cap, k, &b, 1);
        } else {
            k = put(buf, cap, k, t + i, l);
        }
        i += l;
    }
    return k;
}

size_t llm_token_to_piece(const llm_vocab *v, int32_t id, char *buf, size_t cap, bool special)
{
    if (id < 0 || id >= v->n)
        return 0;
    const char *t = v->arena + v->off[id];
    size_t n = v->len[id];
    switch (v->type[id]) {
    case LLM_TOKEN_CONTROL:
    case LLM_TOKEN_UNKNOWN:
        return special ? put(buf, cap, 0, t, n) : 0;
    case LLM_TOKEN_USER_DEFINED:
        return put(buf, cap, 0, t, n);
    case LLM_TOKEN_BYTE: {
        int b = byte_token_value(t, n);
        if (b < 0)
            return 0;
        char c = (char)b;
        return put(buf, cap, 0, &c, 1);
    }
    case LLM_TOKEN_NORMAL:
        if (v->kind == LLM_VOCAB_BPE)
            return decode_byte_level(v, t, n, buf, cap);
        if (v->kind == LLM_VOCAB_WPM && n >= 2 && memcmp(t, "##", 2) == 0)
            return put(buf, cap, 0, t + 2, n - 2); /* vocabularies that kept the HF spelling */
        return unescape_spaces(t, n, buf, cap);
    default:
        return 0; /* unused / undefined: nothing, as the originals do */
    }
}

/* The piece of id, in small when it fits (else in *big, which the caller frees), with the
 * STRIP_SPACE rule applied to the first piece. */
static const char *get_piece(const llm_vocab *v, int32_t id, unsigned flags, bool *first, char *small,
                             size_t cap, char **big, size_t *len)
{
    bool special = flags & LLM_DETOK_SPECIAL;
    size_t n = llm_token_to_piece(v, id, small, cap, special);
    const char *p = small;
    *big = NULL;
    if (n > cap) {
        *big = llm_xmalloc(n);
        llm_token_to_piece(v, id, *big, n, special);
        p = *big;
    }
    bool visible = n > 0;
    if (*first && (flags & LLM_DETOK_STRIP_SPACE) && v->kind != LLM_VOCAB_BPE && n > 0 && p[0] == ' ')
        p++, n--;
    if (visible)
        *first = false; /* only the first visible piece loses its space, even if that empties it */
    *len = n;
    return p;
}

static size_t append_piece(const llm_vocab *v, int32_t id, unsigned flags, bool *first, llm_buf *out)
{
    char small[256], *big;
    size_t n;
    const char *p = get_piece(v, id, flags, first, small, sizeof small, &big, &n);
    llm_buf_append(out, p, n);
    free(big);
    return n;
}

size_t llm_detokenize(const llm_vocab *v, const int32_t *ids, size_t n, unsigned flags, llm_buf *out)
{
    size_t total = 0;
    bool first = true;
    for (size_t i = 0; i < n; i++)
        total += append_piece(v, ids[i], flags, &first, out);
    return total;
}

/* ---- streaming ------------------------------------------------------------------------------ */

void llm_detok_init(llm_detok *d, const llm_vocab *v, unsigned flags)
{
    memset(d, 0, sizeof *d);
    d->v = v;
    d->flags = flags;
    d->first = true;
}

static const char REPLACEMENT[3] = {'\xef', '\xbf', '\xbd'};

/* How many bytes the character starting with lead byte c needs; 0 when c cannot start one. */
static size_t seq_len(unsigned char c)
{
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return 2;
    if (c >= 0xE0 && c <= 0xEF)
        return 3;
    if (c >= 0xF0 && c <= 0xF4)
        return 4;
    return 0;
}

/* Feeds bytes through the pending buffer: complete valid characters go out, an incomplete
 * tail stays pending, and bytes that cannot be part of a valid character become U+FFFD. */
static size_t feed(llm_detok *d, const unsigned char *p, size_t n, llm_buf *out)
{
    size_t before = out->len;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (d->n_pend == 0) {
            size_t need = seq_len(c);
            if (need == 1)
                llm_buf_append(out, &c, 1);
            else if (need == 0)
                llm_buf_append(out, REPLACEMENT, 3);
            else
                d->pend[d->n_pend++] = c;
            continue;
        }
        size_t need = seq_len(d->pend[0]);
        d->pend[d->n_pend++] = c;
        uint32_t cp;
        if (d->n_pend < need) {
            /* still incomplete: give up early if it can no longer become valid */
            if ((c & 0xC0) == 0x80)
                continue;
        } else if (tok_utf8_decode(d->pend, d->n_pend, &cp) == d->n_pend) {
            llm_buf_append(out, d->pend, d->n_pend);
            d->n_pend = 0;
            continue;
        }
        /* invalid: the held lead byte becomes U+FFFD, the rest is fed again */
        unsigned char rest[4];
        size_t nr = d->n_pend - 1;
        memcpy(rest, d->pend + 1, nr);
        d->n_pend = 0;
        llm_buf_append(out, REPLACEMENT, 3);
        feed(d, rest, nr, out);
    }
    return out->len - before;
}

size_t llm_detok_push(llm_detok *d, int32_t id, llm_buf *out)
{
    char small[256], *big;
    size_t n;
    const char *p = get_piece(d->v, id, d->flags, &d->first, small, sizeof small, &big, &n);
    size_t emitted = feed(d, (const unsigned char *)p, n, out);
    free(big);
    return emitted;
}

size_t llm_detok_flush(llm_detok *d, llm_buf *out)
{
    if (d->n_pend == 0)
        return 0;
    d->n_pend = 0;
    llm_buf_append(out, REPLACEMENT, 3);
    return 3;
}
