/*
 * tok_bpe — byte-level BPE ("gpt2" vocabularies: GPT-2, Qwen2, Llama 3, DeepSeek, Falcon,
 * StarCoder, MPT, ...), as the Hugging Face tokenizers do it:
 *   1. pre-tokenize: the regexes of tokenizer.ggml.pre cut the text into words, each regex
 *      applied in turn to the pieces of the previous one (matches and the gaps between them
 *      both become pieces) — the regex lists are llama.cpp's (llama-vocab.cpp), run here with
 *      PCRE2 in UTF+UCP mode with JIT;
 *   2. each byte of a word becomes its printable stand-in character (bytes_to_unicode);
 *   3. adjacent symbols are merged lowest merge rank first (ties: leftmost) until no listed
 *      merge applies.
 * Invalid UTF-8 bytes are replaced by U+FFFD before step 1 (llama.cpp does the same), so the
 * tokenizer is lossless exactly on valid UTF-8.
 *
 * Merges are keyed by the token ids of the pair, and candidates wait in a binary heap with
 * lazy invalidation: O(n log n) per word, however long the word (1 MB of one letter is one
 * word under most of these regexes).
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/tok_internal.h"

/* ---- pre-tokenizer regexes ------------------------------------------------------------------ */

#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define RE_LLAMA3                                                                                      \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| " \
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2                                                                                       \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "      \
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_CJK "[\xe4\xb8\x80-\xe9\xbe\xa5\xe0\xa0\x80-\xe4\xb8\x80\xea\xb0\x80-\xed\x9f\xbf]+" /* [一-龥ࠀ-一가-퟿]+ */

typedef struct pre_rule {
    const char *const *names; /* NULL-terminated */
    const char *const *regex; /* NULL-terminated */
    bool ignore_merges, add_bos;
} pre_rule;

static const char *const N_DEFAULT[] = {"default", "", NULL};
static const char *const R_DEFAULT[] = {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]", NULL};
static const char *const N_LLAMA3[] = {"llama3", "llama-v3", "llama-bpe", "falcon3", "dbrx", "smaug-bpe", NULL};
static const char *const R_LLAMA3[] = {RE_LLAMA3, NULL};
static const char *const N_DSLLM[] = {"deepseek-llm", NULL};
static const char *const R_DSLLM[] = {
    "[\\r\\n]",
    "\\s?[A-Za-z\xc2\xb5\xc3\x80-\xc3\x96\xc3\x98-\xc3\xb6\xc3\xb8-\xc6\xba\xc6\xbc-\xc6\xbf\xc7\x84-\xca\x93"
    "\xca\x95-\xca\xaf\xcd\xb0-\xcd\xb3\xcd\xb6\xcd\xb7\xcd\xbb-\xcd\xbd\xcd\xbf\xce\x86\xce\x88-\xce\x8a"
    "\xce\x8c\xce\x8e-\xce\xa1\xce\xa3-\xcf\xb5\xcf\xb7-\xd2\x81\xd2\x8a-\xd4\xaf\xd4\xb1-\xd5\x96"
    "\xe1\x82\xa0-\xe1\x83\x85\xe1\x8e\xa0-\xe1\x8f\xb5\xe1\x8f\xb8-\xe1\x8f\xbd\xe1\xb2\x90-\xe1\xb2\xba"
    "\xe1\xb2\xbd-\xe1\xb2\xbf\xe1\xb4\x80-\xe1\xb4\xab\xe1\xb5\xab-\xe1\xb5\xb7\xe1\xb5\xb9-\xe1\xb6\x9a"
    "\xe1\xb8\x80-\xe1\xbc\x95\xe1\xbc\x98-\xe1\xbc\x9d\xe1\xbc\xa0-\xe1\xbd\x85\xe1\xbd\x88-\xe1\xbd\x8d"
    "\xe1\xbd\x90-\xe1\xbd\x97\xe1\xbd\x99\xe1\xbd\x9b\xe1\xbd\x9d\xe1\xbd\x9f-\xe1\xbd\xbd\xe1\xbe\x80-\xe1\xbe\xb4"
    "\xe1\xbe\xb6-\xe1\xbe\xbc\xe1\xbe\xbe\xe1\xbf\x82-\xe1\xbf\x84\xe1\xbf\x86-\xe1\xbf\x8c\xe1\xbf\x90-\xe1\xbf\x93"
    "\xe1\xbf\x96-\xe1\xbf\x9b\xe1\xbf\xa0-\xe1\xbf\xac\xe1\xbf\xb2-\xe1\xbf\xb4\xe1\xbf\xb6-\xe1\xbf\xbc"
    "\xe2\x84\x82\xe2\x84\x87\xe2\x84\x8a-\xe2\x84\x93\xe2\x84\x95\xe2\x84\x99-\xe2\x84\x9d\xe2\x84\xa4"
    "\xe2\x84\xa6\xe2\x84\xa8\xe2\x84\xaa-\xe2\x84\xad\xe2\x84\xaf-\xe2\x84\xb4\xe2\x84\xb9\xe2\x84\xbc-\xe2\x84\xbf"
    "\xe2\x85\x85-\xe2\x85\x89\xe2\x85\x8e\xe2\x86\x83\xe2\x86\x84\xe2\xb0\x80-\xe2\xb1\xbb\xe2\xb1\xbe-\xe2\xb3\xa4"
    "\xe2\xb3\xab-\xe2\xb3\xae\xe2\xb3\xb2\xe2\xb3\xb3\xea\x99\x80-\xea\x99\xad\xea\x9a\x80-\xea\x9a\x9b"
    "\xea\x9c\xa2-\xea\x9d\xaf\xea\x9d\xb1-\xea\x9e\x87\xea\x9e\x8b-\xea\x9e\x8e\xea\xad\xb0-\xea\xae\xbf"
    "\xef\xac\x80-\xef\xac\x86\xef\xac\x93-\xef\xac\x97\xef\xbc\xa1-\xef\xbc\xba\xef\xbd\x81-\xef\xbd\x9a"
    "\xf0\x90\x90\x80-\xf0\x90\x91\x8f\xf0\x90\x92\xb0-\xf0\x90\x93\x93\xf0\x90\x93\x98-\xf0\x90\x93\xbb"
    "\xf0\x90\xb2\x80-\xf0\x90\xb2\xb2\xf0\x90\xb3\x80-\xf0\x90\xb3\xb2\xf0\x91\xa2\xa0-\xf0\x91\xa3\x9f"
    "\xf0\x9e\xa4\x80-\xf0\x9e\xa5\x83]+",
    "\\s?[!-/:-~\xef\xbc\x81-\xef\xbc\x8f\xef\xbc\x9a-\xef\xbd\x9e\xe2\x80\x98-\xe2\x80\x9f\xe3\x80\x80-\xe3\x80\x82]+",
    "\\s+$",
    RE_CJK,
    "\\p{N}+",
    NULL};
static const char *const N_DSCODER[] = {"deepseek-coder", NULL};
static const char *const R_DSCODER[] = {"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", RE_CJK, "\\p{N}", NULL};
static const char *const N_FALCON[] = {"falcon", NULL};
static const char *const R_FALCON[] = {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]", NULL};
static const char *const N_STARCODER[] = {"starcoder", "refact", "command-r", "smollm", "codeshell",
                                          "exaone", "minerva-7b", NULL};
static const char *const R_STARCODER[] = {"\\p{N}", RE_GPT2, NULL};
static const char *const N_GPT2[] = {"gpt-2", "mpt", "olmo", "jais", "phi-2", "jina-es", "jina-de",
                                     "gigachat", "jina-v1-en", "jina-v2-es", "jina-v2-de", "jina-v2-code",
                                     "roberta-bpe", NULL};
static const char *const R_GPT2[] = {RE_GPT2, NULL};
static const char *const N_QWEN2[] = {"qwen2", "deepseek-r1-qwen", "stablelm2", "megrez", NULL};
static const char *const R_QWEN2[] = {RE_QWEN2, NULL};

static const pre_rule PRE_RULES[] = {
    {N_DEFAULT, R_DEFAULT, false, false},     {N_LLAMA3, R_LLAMA3, true, true},
    {N_DSLLM, R_DSLLM, false, false},         {N_DSCODER, R_DSCODER, false, false},
    {N_FALCON, R_FALCON, false, false},       {N_STARCODER, R_STARCODER, false, false},
    {N_GPT2, R_GPT2, false, false},           {N_QWEN2, R_QWEN2, false, false},
};

static const pre_rule *find_rule(const char *pre)
{
    for (size_t i = 0; i < sizeof PRE_RULES / sizeof *PRE_RULES; i++)
        for (const char *const *n = PRE_RULES[i].names; *n; n++)
            if (!strcmp(*n, pre))
                return &PRE_RULES[i];
    return NULL;
}

static int compile_rule(llm_vocab *v, const pre_rule *rule, llm_err *err)
{
    for (const char *const *r = rule->regex; *r; r++) {
        int ec;
        PCRE2_SIZE eo;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)*r, PCRE2_ZERO_TERMINATED,
                                       PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &ec, &eo, NULL);
        if (!re) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(ec, msg, sizeof msg);
            return llm_errf(err, "pre-tokenizer '%s': regex %d: %s at %zu", v->pre, v->n_regex, (char *)msg,
                            (size_t)eo);
        }
        pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* best effort: the interpreter also works */
        v->regex[v->n_regex++] = re;
    }
    return 0;
}

/* ---- byte-level alphabet and merges --------------------------------------------------------- */

/* GPT-2's bytes_to_unicode: printable bytes stand for themselves, the others get the code
 * points 256, 257, ... in byte order. */
static void byte_tables(llm_vocab *v)
{
    memset(v->cp_byte, 0xFF, sizeof v->cp_byte);
    uint16_t next = 256;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        v->byte_cp[b] = printable ? (uint16_t)b : next++;
        v->cp_byte[v->byte_cp[b]] = (int16_t)b;
        char buf[4];
        size_t n = tok_utf8_encode(v->byte_cp[b], buf);
        v->byte_tok[b] = tok_find(v, buf, n);
    }
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static const tok_merge *merge_find(const llm_vocab *v, int32_t left, int32_t right)
{
    if (!v->merges || left < 0 || right < 0)
        return NULL;
    uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    uint32_t i = (uint32_t)mix64(key) & v->merge_mask;
    for (;;) {
        const tok_merge *m = &v->merges[i];
        if (m->key == UINT64_MAX)
            return NULL;
        if (m->key == key)
            return m;
        i = (i + 1) & v->merge_mask;
    }
}

static int load_merges(llm_vocab *v, const gguf_file *f, llm_err *err)
{
    const gguf_kv *kv = gguf_find(f, "tokenizer.ggml.merges");
    if (!kv)
        return llm_errf(err, "%s: tokenizer.ggml.merges: missing (required by a gpt2 tokenizer)", f->path);
    if (kv->type != GGUF_ARRAY || kv->arr_type != GGUF_STRING || kv->arr_n > 0x7FFFFFF)
        return llm_errf(err, "%s: tokenizer.ggml.merges: not a string array", f->path);
    uint32_t cap = 16;
    while (cap < kv->arr_n * 2)
        cap <<= 1;
    v->merges = llm_xmalloc(cap * sizeof *v->merges);
    for (uint32_t i = 0; i < cap; i++)
        v->merges[i].key = UINT64_MAX;
    v->merge_mask = cap - 1;
    char *cat = llm_xmalloc(2 * v->max_token_len + 2);
    for (uint64_t r = 0; r < kv->arr_n; r++) {
        const gguf_str *s = &kv->arr_str[r];
        const char *sp = s->len > 1 ? memchr(s->ptr + 1, ' ', s->len - 1) : NULL;
        if (!sp)
            continue;
        size_t ll = (size_t)(sp - s->ptr), rl = s->len - ll - 1;
        int32_t a = tok_find(v, s->ptr, ll), b = tok_find(v, sp + 1, rl);
        if (a < 0 || b < 0 || ll + rl > 2 * v->max_token_len)
            continue; /* can never apply: its halves are not tokens */
        memcpy(cat, s->ptr, ll);
        memcpy(cat + ll, sp + 1, rl);
        uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
        uint32_t i = (uint32_t)mix64(key) & v->merge_mask;
        while (v->merges[i].key != UINT64_MAX && v->merges[i].key != key)
            i = (i + 1) & v->merge_mask;
        if (v->merges[i].key == key)
            continue; /* a duplicate keeps its first (best) rank */
        v->merges[i] = (tok_merge){key, (int32_t)r, tok_find(v, cat, ll + rl)};
    }
    free(cat);
    return 0;
}

int tok_bpe_init(llm_vocab *v, const gguf_file *f, llm_err *err)
{
    byte_tables(v);
    if (load_merges(v, f, err))
        return -1;
    const pre_rule *rule = find_rule(v->pre);
    if (!rule) {
        fprintf(stderr, "llmap: warning: %s: unknown pre-tokenizer '%s', using the gpt-2 regex\n", f->path,
                v->pre);
        rule = find_rule("gpt-2");
    }
    v->ignore_merges = rule->ignore_merges;
    if (rule->add_bos)
        v->add_bos = true;
    bool add_bos = v->add_bos; /* metadata still overrides the pre-tokenizer's default */
    if (gguf_get_bool_or(f, "tokenizer.ggml.add_bos_token", add_bos, &v->add_bos, err))
        return -1;
    return compile_rule(v, rule, err);
}

void tok_bpe_free(llm_vocab *v)
{
    for (int i = 0; i < v->n_regex; i++)
        pcre2_code_free((pcre2_code *)v->regex[i]);
    v->n_regex = 0;
}

/* ---- tokenizing ----------------------------------------------------------------------------- */

typedef struct span {
    size_t off, len;
} span;

typedef struct span_list {
    span *d;
    size_t n, cap;
} span_list;

static void span_push(span_list *l, size_t off, size_t len)
{
    if (len == 0)
        return;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->d = llm_xrealloc(l->d, l->cap * sizeof *l->d);
    }
    l->d[l->n++] = (span){off, len};
}

/* Valid UTF-8 copy of text: each byte that does not start a valid character becomes U+FFFD. */
static char *sanitize_utf8(const char *text, size_t len, size_t *out_len)
{
    char *buf = llm_xmalloc(len * 3 + 1);
    size_t k = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = tok_utf8_decode((const unsigned char *)text + i, len - i, &cp);
        if (n == 0) {
            memcpy(buf + k, "\xef\xbf\xbd", 3);
            k += 3;
            i++;
        } else {
            memcpy(buf + k, text + i, n);
            k += n;
            i += n;
        }
    }
    *out_len = k;
    return buf;
}

/* One regex over each piece: matches and the gaps between them become the new pieces. */
static void split_pass(const pcre2_code *re, const char *text, const span_list *in, span_list *out,
                       pcre2_match_data *md, pcre2_match_context *mc)
{
    out->n = 0;
    for (size_t p = 0; p < in->n; p++) {
        PCRE2_SPTR subj = (PCRE2_SPTR)(text + in->d[p].off);
        size_t len = in->d[p].len, start = 0, prev = 0;
        while (start < len) {
            int rc = pcre2_match(re, subj, len, start, PCRE2_NO_UTF_CHECK, md, mc);
            if (rc < 0)
                break; /* no match (or a resource limit): the rest is one gap piece */
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            if (ov[1] == ov[0]) { /* empty match: step over one character */
                start = ov[0] + 1;
                while (start < len && (subj[start] & 0xC0) == 0x80)
                    start++;
                continue;
            }
            span_push(out, in->d[p].off + prev, ov[0] - prev);
            span_push(out, in->d[p].off + ov[0], ov[1] - ov[0]);
            prev = start = ov[1];
        }
        span_push(out, in->d[p].off + prev, len - prev);
    }
}

typedef struct bpe_sym {
    int32_t id, prev, next;
    uint32_t off, n; /* raw bytes of the word it covers */
} bpe_sym;

typedef struct bpe_cand {
    int32_t rank, left, right;
} bpe_cand;

typedef struct bpe_work {
    bpe_sym *syms;
    size_t syms_cap;
    bpe_cand *heap;
    size_t heap_n, heap_cap;
    char *enc;
    size_t enc_cap;
} bpe_work;

static bool cand_before(const bpe_cand *a, const bpe_cand *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static void cand_push(bpe_work *w, const llm_vocab *v, int32_t left, int32_t right)
{
    if (left < 0 || right < 0)
        return;
    const tok_merge *m = merge_find(v, w->syms[left].id, w->syms[right].id);
    if (!m)
        return;
    if (w->heap_n == w->heap_cap) {
        w->heap_cap = w->heap_cap ? w->heap_cap * 2 : 64;
        w->heap = llm_xrealloc(w->heap, w->heap_cap * sizeof *w->heap);
    }
    bpe_cand c = {m->rank, left, right};
    size_t i = w->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_before(&c, &w->heap[p]))
            break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = c;
}

static bpe_cand cand_pop(bpe_work *w)
{
    bpe_cand top = w->heap[0], last = w->heap[--w->heap_n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= w->heap_n)
            break;
        if (c + 1 < w->heap_n && cand_before(&w->heap[c + 1], &w->heap[c]))
            c++;
        if (!cand_before(&w->heap[c], &last))
            break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (w->heap_n > 0)
        w->heap[i] = last;
    return top;
}

/* The byte-level spelling of raw bytes, in w->enc; returns its length. */
static size_t encode_bytes(const llm_vocab *v, bpe_work *w, const unsigned char *s, size_t n)
{
    if (w->enc_cap < n * 2 + 1) {
        w->enc_cap = n * 2 + 1;
        w->enc = llm_xrealloc(w->enc, w->enc_cap);
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += tok_utf8_encode(v->byte_cp[s[i]], w->enc + k);
    return k;
}

/* A final symbol that is not a token: llama.cpp looks up each byte of its byte-level
 * spelling as a one-byte token and keeps those that exist. */
static void emit_fallback(const llm_vocab *v, bpe_work *w, const unsigned char *s, size_t n, tok_vec *out)
{
    size_t k = encode_bytes(v, w, s, n);
    for (size_t i = 0; i < k; i++) {
        int32_t id = tok_find(v, w->enc + i, 1);
        if (id >= 0)
            tok_vec_push(out, id);
    }
}

static void bpe_word(const llm_vocab *v, bpe_work *w, const unsigned char *s, size_t n, tok_vec *out)
{
    if (v->ignore_merges) {
        size_t k = encode_bytes(v, w, s, n);
        int32_t id = tok_find(v, w->enc, k);
        if (id >= 0) {
            tok_vec_push(out, id);
            return;
        }
    }
    if (w->syms_cap < n) {
        w->syms_cap = n;
        w->syms = llm_xrealloc(w->syms, n * sizeof *w->syms);
    }
    for (size_t i = 0; i < n; i++)
        w->syms[i] = (bpe_sym){v->byte_tok[s[i]], (int32_t)i - 1, i + 1 == n ? -1 : (int32_t)i + 1, (uint32_t)i, 1};
    w->heap_n = 0;
    for (size_t i = 1; i < n; i++)
        cand_push(w, v, (int32_t)i - 1, (int32_t)i);
    while (w->heap_n > 0) {
        bpe_cand c = cand_pop(w);
        bpe_sym *l = &w->syms[c.left], *r = &w->syms[c.right];
        if (l->n == 0 || r->n == 0 || l->next != c.right)
            continue; /* stale */
        const tok_merge *m = merge_find(v, l->id, r->id);
        if (!m || m->rank != c.rank)
            continue; /* stale: a side changed since the candidate was made */
        l->id = m->result;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            w->syms[r->next].prev = c.left;
        cand_push(w, v, l->prev, c.left);
        cand_push(w, v, c.left, l->next);
    }
    for (int32_t i = 0; i != -1; i = w->syms[i].next) {
        const bpe_sym *sy = &w->syms[i];
        if (sy->id >= 0)
            tok_vec_push(out, sy->id);
        else
            emit_fallback(v, w, s + sy->off, sy->n, out);
    }
}

void tok_bpe(const llm_vocab *v, const char *raw, size_t raw_len, tok_vec *out)
{
    size_t len;
    char *text = sanitize_utf8(raw, raw_len, &len);
    span_list a = {0}, b = {0};
    span_push(&a, 0, len);
    pcre2_match_data *md = NULL;
    pcre2_match_context *mc = pcre2_match_context_create(NULL);
    pcre2_jit_stack *js = pcre2_jit_stack_create(64 * 1024, 8 * 1024 * 1024, NULL);
    if (mc && js)
        pcre2_jit_stack_assign(mc, NULL, js);
    for (int r = 0; r < v->n_regex; r++) {
        const pcre2_code *re = v->regex[r];
        md = pcre2_match_data_create_from_pattern(re, NULL);
        split_pass(re, text, &a, &b, md, mc);
        pcre2_match_data_free(md);
        span_list t = a;
        a = b;
        b = t;
    }
    pcre2_jit_stack_free(js);
    pcre2_match_context_free(mc);

    bpe_work w = {0};
    for (size_t i = 0; i < a.n; i++)
        bpe_word(v, &w, (const unsigned char *)text + a.d[i].off, a.d[i].len, out);
    free(w.syms);
    free(w.heap);
    free(w.enc);
    free(a.d);
    free(b.d);
    free(text);
}
