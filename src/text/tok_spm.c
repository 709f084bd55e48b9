/*
 * tok_spm — SentencePiece BPE ("llama" vocabularies), as llama.cpp's llm_tokenizer_spm does it:
 * spaces become "▁" (plus one leading "▁" at the start of the text), the text is cut into
 * UTF-8 characters, and adjacent symbols whose concatenation is a vocabulary token are merged
 * best score first (ties: leftmost). Symbols that end up not being tokens are spelled with
 * <0xNN> byte tokens, so any byte string round-trips (except a literal "▁", which decodes as a
 * space).
 *
 * The text is first cut where two adjacent bytes never appear side by side in any token (no
 * merge can cross such a boundary, so the pieces are independent and the result is the same).
 * The candidate merges live in a binary heap with lazy invalidation (a popped pair whose
 * symbols changed since it was pushed is skipped), so n input bytes cost O(n log n) whatever
 * the text; a candidate is only formed when its length fits the longest token.
 */
#include <stdlib.h>
#include <string.h>

#include "text/tok_internal.h"

typedef struct spm_sym {
    int32_t prev, next;
    size_t off;
    size_t n;
} spm_sym;

typedef struct spm_bigram {
    float score;
    int32_t left, right;
    uint32_t size; /* at most twice the longest token */
} spm_bigram;

typedef struct spm_heap {
    spm_bigram *d;
    size_t n, cap;
} spm_heap;

/* Higher score first; equal scores: the leftmost pair first. */
static bool bigram_before(const spm_bigram *a, const spm_bigram *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_push(spm_heap *h, spm_bigram b)
{
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 64;
        h->d = llm_xrealloc(h->d, h->cap * sizeof *h->d);
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bigram_before(&b, &h->d[p]))
            break;
        h->d[i] = h->d[p];
        i = p;
    }
    h->d[i] = b;
}

static spm_bigram heap_pop(spm_heap *h)
{
    spm_bigram top = h->d[0], last = h->d[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && bigram_before(&h->d[c + 1], &h->d[c]))
            c++;
        if (!bigram_before(&h->d[c], &last))
            break;
        h->d[i] = h->d[c];
        i = c;
    }
    if (h->n > 0)
        h->d[i] = last;
    return top;
}

static void try_bigram(const llm_vocab *v, const char *text, const spm_sym *syms, int32_t left, int32_t right,
                       spm_heap *h)
{
    if (left < 0 || right < 0)
        return;
    size_t size = syms[left].n + syms[right].n;
    if (size > v->max_token_len)
        return;
    int32_t id = tok_find(v, text + syms[left].off, size);
    if (id < 0)
        return;
    heap_push(h, (spm_bigram){v->score[id], left, right, (uint32_t)size});
}

static void emit_symbol(const llm_vocab *v, const char *text, const spm_sym *s, tok_vec *out)
{
    int32_t id = tok_find(v, text + s->off, s->n);
    if (id >= 0) {
        tok_vec_push(out, id);
        return;
    }
    for (size_t j = 0; j < s->n; j++) {
        int32_t b = v->byte_tok[(unsigned char)text[s->off + j]];
        if (b >= 0)
            tok_vec_push(out, b);
    }
}

/* " " -> "▁", with one more "▁" in front when space_prefix. */
static char *escape_spaces(const char *text, size_t len, bool space_prefix, size_t *out_len)
{
    char *buf = llm_xmalloc((len + 1) * 3 + 1);
    size_t k = 0;
    if (space_prefix) {
        memcpy(buf, "\xe2\x96\x81", 3);
        k = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(buf + k, "\xe2\x96\x81", 3);
            k += 3;
        } else {
            buf[k++] = text[i];
        }
    }
    *out_len = k;
    return buf;
}

void tok_spm(const llm_vocab *v, const char *raw, size_t raw_len, bool space_prefix, tok_vec *out)
{
    size_t len;
    char *text = escape_spaces(raw, raw_len, space_prefix, &len);
    if (len == 0) {
        free(text);
        return;
    }
    /* Symbols are UTF-8 characters; the chain is cut where no token can span the boundary,
     * and each piece is merged on its own. */
    spm_sym *syms = llm_xmalloc(len * sizeof *syms);
    int32_t n = 0;
    for (size_t off = 0; off < len;) {
        /* A lead byte claims only the continuation bytes actually there: on valid UTF-8
         * this is llama.cpp's split, and a stray lead byte cannot swallow the next "▁". */
        size_t want = tok_utf8_len((unsigned char)text[off]), cl = 1;
        while (cl < want && off + cl < len && ((unsigned char)text[off + cl] & 0xC0) == 0x80)
            cl++;
        bool joined = false;
        if (n > 0) {
            unsigned key = (unsigned)(unsigned char)text[off - 1] << 8 | (unsigned char)text[off];
            joined = (v->spm_pairs[key >> 3] >> (key & 7)) & 1;
        }
        syms[n] = (spm_sym){joined ? n - 1 : -1, -1, off, cl};
        if (joined)
            syms[n - 1].next = n;
        off += cl;
        n++;
    }
    spm_heap heap = {0};
    for (int32_t start = 0; start < n;) {
        int32_t end = start + 1;
        while (end < n && syms[end].prev >= 0)
            end++;
        heap.n = 0;
        for (int32_t i = start + 1; i < end; i++)
            try_bigram(v, text, syms, i - 1, i, &heap);
        while (heap.n > 0) {
            spm_bigram b = heap_pop(&heap);
            spm_sym *l = &syms[b.left], *r = &syms[b.right];
            if (l->n == 0 || r->n == 0 || l->n + r->n != b.size)
                continue; /* stale: one side was merged since */
            l->n += r->n;
            r->n = 0;
            l->next = r->next;
            if (r->next >= 0)
                syms[r->next].prev = b.left;
            try_bigram(v, text, syms, l->prev, b.left, &heap);
            try_bigram(v, text, syms, b.left, l->next, &heap);
        }
        for (int32_t i = start; i != -1; i = syms[i].next)
            emit_symbol(v, text, &syms[i], out);
        start = end;
    }
    free(heap.d);
    free(syms);
    free(text);
}
