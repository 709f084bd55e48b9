/*
 * tok_internal — what the tokenizer files of src/text share: the vocabulary structure, its
 * lookup tables, a growable id vector and the per-kind tokenize entry points. Private to
 * src/text (the public API is text.h).
 */
#ifndef LLMAP_TOK_INTERNAL_H
#define LLMAP_TOK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "text/text.h"

#define TOK_MAX_REGEX 8
#define TOK_LSTRIP 1
#define TOK_RSTRIP 2

/* One BPE merge: the pair (left id, right id) becomes result id, earlier ranks first. */
typedef struct tok_merge {
    uint64_t key; /* (left << 32) | right; UINT64_MAX = empty slot */
    int32_t rank;
    int32_t result;
} tok_merge;

struct llm_vocab {
    llm_vocab_kind kind;
    char *pre;
    int32_t n;
    char *arena;       /* every token text, NUL-terminated, back to back */
    uint32_t *off;     /* token id -> offset in arena */
    uint32_t *len;     /* token id -> text length */
    float *score;
    uint8_t *type;     /* llm_token_type */
    uint8_t *strip;    /* TOK_LSTRIP / TOK_RSTRIP: whitespace a matched special token swallows */
    bool *eog;
    size_t max_token_len;

    int32_t *slot;     /* text -> id hash, open addressing, -1 = empty */
    uint32_t slot_mask;

    tok_merge *merges; /* BPE only */
    uint32_t merge_mask;

    int32_t bos, eos, eot, eom, unk, pad, sep;
    bool add_bos, add_eos, add_space_prefix, ignore_merges;

    int32_t byte_tok[256]; /* SPM: <0xNN>; BPE: the byte-level character of the byte */
    uint8_t *spm_pairs;    /* SPM: bit (a << 8 | b) set when bytes a, b are adjacent in some token */
    uint16_t byte_cp[256]; /* BPE: byte -> code point of its printable stand-in */
    int16_t cp_byte[512];  /* BPE: code point -> byte, -1 when not a stand-in */

    int32_t *specials;     /* control/user-defined/unknown tokens, longest text first */
    size_t n_specials;
    /* Index of specials by their first two bytes, to find which occur in a text in one pass:
     * spec_by_pair[pair_start[b0 << 8 | b1] .. pair_start[(b0 << 8 | b1) + 1]) are indices into
     * specials; one-byte specials are in spec_single[b0] (-1 when none). */
    uint32_t *pair_start;
    uint32_t *spec_by_pair;
    int32_t spec_single[256];

    int n_regex;           /* BPE pre-tokenizer, applied in sequence */
    void *regex[TOK_MAX_REGEX]; /* pcre2_code_8 * */
};

typedef struct tok_vec {
    int32_t *d;
    size_t n, cap;
} tok_vec;

static inline void tok_vec_push(tok_vec *v, int32_t id)
{
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 64;
        v->d = llm_xrealloc(v->d, v->cap * sizeof *v->d);
    }
    v->d[v->n++] = id;
}

/* Hash lookup of a vocabulary string (vocab.c). */
int32_t tok_find(const llm_vocab *v, const char *s, size_t n);
/* Length of the UTF-8 sequence a lead byte announces, as llama.cpp counts it (1 for a stray
 * continuation byte). */
static inline size_t tok_utf8_len(unsigned char c)
{
    static const uint8_t lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lookup[c >> 4];
}
/* Decodes one strictly valid UTF-8 character at s[0..n) into *cp; returns its length, or 0
 * when the bytes there are not a valid character (overlong, surrogate, truncated...). */
size_t tok_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);
size_t tok_utf8_encode(uint32_t cp, char *out);

/* Per-kind tokenizers of one text fragment (no special tokens in it), appending to out. */
void tok_spm(const llm_vocab *v, const char *text, size_t len, bool space_prefix, tok_vec *out);
void tok_bpe(const llm_vocab *v, const char *text, size_t len, tok_vec *out);
void tok_wpm(const llm_vocab *v, const char *text, size_t len, tok_vec *out);

/* BPE setup (tok_bpe.c): byte tables, merges, pre-tokenizer regexes. */
int tok_bpe_init(llm_vocab *v, const gguf_file *f, llm_err *err);
void tok_bpe_free(llm_vocab *v);

#endif
