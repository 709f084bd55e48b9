/*
 * vocab — loading a tokenizer from GGUF metadata, the token tables every tokenizer kind
 * shares, and llm_tokenize: split the text around special tokens, then hand each plain
 * fragment to the SentencePiece, byte-level BPE or WordPiece tokenizer.
 *
 * Defaults and special-token rules follow llama.cpp (llama-vocab.cpp), whose tokenizers
 * reproduce the original Hugging Face ones on the shared test vocabularies: SPM adds BOS and
 * a leading space, BPE adds nothing unless the metadata says so, WordPiece wraps in
 * [CLS] ... [SEP]; user-defined (added) tokens are matched in the text even without
 * parse_special, control tokens only with it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem/mem.h"
#include "text/tok_internal.h"

/* ---- UTF-8 -------------------------------------------------------------------------------- */

size_t tok_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (n == 0)
        return 0;
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    uint32_t v, min;
    if ((c & 0xE0) == 0xC0) {
        len = 2, v = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3, v = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return len;
}

size_t tok_utf8_encode(uint32_t cp, char *out)
{
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ---- text -> id hash ------------------------------------------------------------------------ */

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

int32_t tok_find(const llm_vocab *v, const char *s, size_t n)
{
    uint32_t i = (uint32_t)hash_bytes(s, n) & v->slot_mask;
    for (;;) {
        int32_t id = v->slot[i];
        if (id < 0)
            return -1;
        if (v->len[id] == n && memcmp(v->arena + v->off[id], s, n) == 0)
            return id;
        i = (i + 1) & v->slot_mask;
    }
}

/* Later duplicates of a text keep the first id, as a lookup by text can only return one. */
static void build_hash(llm_vocab *v)
{
    uint32_t cap = 1;
    while (cap < (uint32_t)v->n * 2u)
        cap <<= 1;
    v->slot = llm_xmalloc(cap * sizeof *v->slot);
    memset(v->slot, 0xFF, cap * sizeof *v->slot);
    v->slot_mask = cap - 1;
    for (int32_t id = 0; id < v->n; id++) {
        const char *s = v->arena + v->off[id];
        uint32_t i = (uint32_t)hash_bytes(s, v->len[id]) & v->slot_mask;
        bool dup = false;
        while (v->slot[i] >= 0) {
            int32_t o = v->slot[i];
            if (v->len[o] == v->len[id] && memcmp(v->arena + v->off[o], s, v->len[id]) == 0) {
                dup = true;
                break;
            }
            i = (i + 1) & v->slot_mask;
        }
        if (!dup)
            v->slot[i] = id;
    }
}

/* ---- loading -------------------------------------------------------------------------------- */

static int load_tokens(llm_vocab *v, const gguf_file *f, llm_err *err)
{
    const gguf_kv *kv = gguf_find(f, "tokenizer.ggml.tokens");
    if (!kv || kv->type != GGUF_ARRAY || kv->arr_type != GGUF_STRING)
        return llm_errf(err, "%s: tokenizer.ggml.tokens: missing or not a string array", f->path);
    if (kv->arr_n == 0 || kv->arr_n > 0x7FFFFFF)
        return llm_errf(err, "%s: tokenizer.ggml.tokens: %llu tokens is not a usable vocabulary",
                        f->path, (unsigned long long)kv->arr_n);
    v->n = (int32_t)kv->arr_n;
    uint64_t total = 0;
    for (int32_t i = 0; i < v->n; i++) {
        total += kv->arr_str[i].len + 1;
        if (total > 0xFFFFFFF0u)
            return llm_errf(err, "%s: tokenizer.ggml.tokens: token texts exceed 4 GiB", f->path);
    }
    v->arena = llm_xmalloc(total);
    v->off = llm_xmalloc((size_t)v->n * sizeof *v->off);
    v->len = llm_xmalloc((size_t)v->n * sizeof *v->len);
    uint32_t pos = 0;
    for (int32_t i = 0; i < v->n; i++) {
        const gguf_str *s = &kv->arr_str[i];
        memcpy(v->arena + pos, s->ptr, s->len);
        v->arena[pos + s->len] = 0;
        v->off[i] = pos;
        v->len[i] = (uint32_t)s->len;
        if (s->len > v->max_token_len)
            v->max_token_len = s->len;
        pos += (uint32_t)s->len + 1;
    }

    v->score = llm_xcalloc((size_t)v->n, sizeof *v->score);
    kv = gguf_find(f, "tokenizer.ggml.scores");
    if (kv) {
        if (kv->type != GGUF_ARRAY || kv->arr_n != (uint64_t)v->n || gguf_vtype_size(kv->arr_type) == 0)
            return llm_errf(err, "%s: tokenizer.ggml.scores: expected %d numbers", f->path, v->n);
        for (int32_t i = 0; i < v->n; i++)
            v->score[i] = (float)gguf_arr_f64(kv, (uint64_t)i);
    }
    v->type = llm_xmalloc((size_t)v->n);
    memset(v->type, LLM_TOKEN_NORMAL, (size_t)v->n);
    kv = gguf_find(f, "tokenizer.ggml.token_type");
    if (kv) {
        if (kv->type != GGUF_ARRAY || kv->arr_n != (uint64_t)v->n || gguf_vtype_size(kv->arr_type) == 0 ||
            kv->arr_type == GGUF_F32 || kv->arr_type == GGUF_F64)
            return llm_errf(err, "%s: tokenizer.ggml.token_type: expected %d integers", f->path, v->n);
        for (int32_t i = 0; i < v->n; i++) {
            int64_t t = gguf_arr_i64(kv, (uint64_t)i);
            v->type[i] = (t >= LLM_TOKEN_NORMAL && t <= LLM_TOKEN_BYTE) ? (uint8_t)t : LLM_TOKEN_UNDEFINED;
        }
    }
    return 0;
}

/* An optional token-id key. Absent leaves *id alone; a negative value means "none" (some
 * converters write -1); an id out of range or a non-integer value is warned about and the
 * default kept, as llama.cpp does, so such a file still loads. */
static void read_id(const llm_vocab *v, const gguf_file *f, const char *key, int32_t *id)
{
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv)
        return;
    int64_t x;
    switch (kv->type) {
    case GGUF_U8:
    case GGUF_U16:
    case GGUF_U32:
    case GGUF_U64:
        x = kv->v.u64 > INT32_MAX ? INT32_MAX : (int64_t)kv->v.u64;
        break;
    case GGUF_I8:
    case GGUF_I16:
    case GGUF_I32:
    case GGUF_I64:
        x = kv->v.i64;
        break;
    default:
        fprintf(stderr, "llmap: warning: %s: %s is not an integer; ignored\n", f->path, key);
        return;
    }
    if (x < 0) {
        *id = -1;
        return;
    }
    if (x >= v->n) {
        fprintf(stderr, "llmap: warning: %s: %s = %lld is not a token id (vocabulary of %d)\n", f->path, key,
                (long long)x, v->n);
        return;
    }
    *id = (int32_t)x;
}

/* End-of-generation tokens: EOS/EOT/EOM plus the usual end-of-turn markers found by text
 * (converters do not always record them in metadata). */
static void find_eog(llm_vocab *v)
{
    static const char *const eot_texts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
                                           "<|endoftext|>", "<EOT>", "<\xef\xbd\x9c\x65nd\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"};
    static const char *const eog_texts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
                                           "<|endoftext|>", "<|eom_id|>", "<EOT>", "_<EOT>"};
    v->eog = llm_xcalloc((size_t)v->n, sizeof *v->eog);
    for (size_t k = 0; k < sizeof eot_texts / sizeof *eot_texts && v->eot < 0; k++) {
        int32_t id = tok_find(v, eot_texts[k], strlen(eot_texts[k]));
        if (id >= 0 && v->type[id] == LLM_TOKEN_CONTROL)
            v->eot = id;
    }
    for (size_t k = 0; k < sizeof eog_texts / sizeof *eog_texts; k++) {
        int32_t id = tok_find(v, eog_texts[k], strlen(eog_texts[k]));
        if (id >= 0 && v->type[id] == LLM_TOKEN_CONTROL)
            v->eog[id] = true;
    }
    if (v->eos >= 0)
        v->eog[v->eos] = true;
    if (v->eot >= 0)
        v->eog[v->eot] = true;
    if (v->eom >= 0)
        v->eog[v->eom] = true;
}

typedef struct len_id {
    uint32_t len;
    int32_t id;
} len_id;

static int cmp_len_desc(const void *a, const void *b)
{
    const len_id *x = a, *y = b;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Counting sort of the specials by their first two bytes (see tok_internal.h). */
static void index_specials(llm_vocab *v)
{
    v->pair_start = llm_xcalloc(65537, sizeof *v->pair_start);
    v->spec_by_pair = llm_xmalloc((v->n_specials ? v->n_specials : 1) * sizeof *v->spec_by_pair);
    memset(v->spec_single, 0xFF, sizeof v->spec_single);
    for (size_t k = 0; k < v->n_specials; k++) {
        const unsigned char *t = (const unsigned char *)v->arena + v->off[v->specials[k]];
        if (v->len[v->specials[k]] >= 2)
            v->pair_start[(t[0] << 8 | t[1]) + 1]++;
        else if (v->spec_single[t[0]] < 0)
            v->spec_single[t[0]] = (int32_t)k;
    }
    for (size_t i = 1; i <= 65536; i++)
        v->pair_start[i] += v->pair_start[i - 1];
    uint32_t *fill = llm_xmalloc(65536 * sizeof *fill);
    memcpy(fill, v->pair_start, 65536 * sizeof *fill);
    for (size_t k = 0; k < v->n_specials; k++) {
        const unsigned char *t = (const unsigned char *)v->arena + v->off[v->specials[k]];
        if (v->len[v->specials[k]] >= 2)
            v->spec_by_pair[fill[t[0] << 8 | t[1]]++] = (uint32_t)k;
    }
    free(fill);
}

static void collect_specials(llm_vocab *v)
{
    len_id *tmp = llm_xmalloc((size_t)v->n * sizeof *tmp);
    size_t k = 0;
    for (int32_t id = 0; id < v->n; id++) {
        uint8_t t = v->type[id];
        if ((t == LLM_TOKEN_CONTROL || t == LLM_TOKEN_USER_DEFINED || t == LLM_TOKEN_UNKNOWN) && v->len[id] > 0)
            tmp[k++] = (len_id){v->len[id], id};
    }
    qsort(tmp, k, sizeof *tmp, cmp_len_desc);
    v->specials = llm_xmalloc((k ? k : 1) * sizeof *v->specials);
    for (size_t i = 0; i < k; i++)
        v->specials[i] = tmp[i].id;
    v->n_specials = k;
    free(tmp);
    index_specials(v);
}

static void spm_byte_tokens(llm_vocab *v)
{
    static const char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; b++) {
        char buf[7] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>', 0};
        int32_t id = tok_find(v, buf, 6);
        if (id < 0) {
            char c = (char)b;
            id = tok_find(v, &c, 1);
        }
        v->byte_tok[b] = id >= 0 ? id : v->unk;
    }
}

/* No SPM merge can join two symbols whose boundary bytes never sit side by side in a token:
 * tok_spm cuts the text there into independent pieces (same result, much smaller heaps). */
static void spm_pair_bitmap(llm_vocab *v)
{
    v->spm_pairs = llm_xcalloc(65536 / 8, 1);
    for (int32_t id = 0; id < v->n; id++) {
        const unsigned char *t = (const unsigned char *)v->arena + v->off[id];
        for (uint32_t i = 1; i < v->len[id]; i++) {
            unsigned key = (unsigned)t[i - 1] << 8 | t[i];
            v->spm_pairs[key >> 3] |= (uint8_t)(1u << (key & 7));
        }
    }
}

static int load_kind(llm_vocab *v, const gguf_file *f, llm_err *err)
{
    char *model = gguf_get_str(f, "tokenizer.ggml.model", err);
    if (!model)
        return llm_err_prefix(err, "%s: no tokenizer", f->path);
    v->pre = gguf_find(f, "tokenizer.ggml.pre") ? gguf_get_str(f, "tokenizer.ggml.pre", NULL) : NULL;
    if (!v->pre)
        v->pre = llm_xstrdup("");
    int rc = 0;
    v->eot = v->eom = v->pad = v->sep = -1;
    if (!strcmp(model, "llama")) {
        v->kind = LLM_VOCAB_SPM;
        v->bos = 1, v->eos = 2, v->unk = 0;
        v->add_bos = true, v->add_space_prefix = true;
    } else if (!strcmp(model, "gpt2")) {
        v->kind = LLM_VOCAB_BPE;
        v->bos = 11, v->eos = 11, v->unk = -1;
    } else if (!strcmp(model, "bert")) {
        v->kind = LLM_VOCAB_WPM;
        v->bos = 101, v->eos = -1, v->unk = 100, v->sep = 102, v->pad = 0;
        v->add_bos = true;
    } else {
        rc = llm_errf(err, "%s: tokenizer.ggml.model: '%s' is not supported (llama, gpt2, bert are)", f->path,
                      model);
    }
    free(model);
    /* Defaults must name real tokens: a tiny vocabulary may not have id 11. */
    if (v->bos >= v->n)
        v->bos = -1;
    if (v->eos >= v->n)
        v->eos = -1;
    if (v->unk >= v->n)
        v->unk = -1;
    if (v->sep >= v->n)
        v->sep = -1;
    return rc;
}

/* Special tokens that swallow neighbouring whitespace when matched in text, set by model name
 * as llama.cpp does (its GGUF files carry no per-token strip flags): Phi-3's chat markers eat
 * the whitespace after them (HF added tokens with rstrip=True). */
static void set_strip_flags(llm_vocab *v, const gguf_file *f)
{
    v->strip = llm_xcalloc((size_t)v->n, 1);
    char *name = gguf_find(f, "general.name") ? gguf_get_str(f, "general.name", NULL) : NULL;
    if (!name)
        return;
    for (char *p = name; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    if (strstr(name, "phi-3") || strstr(name, "phi3")) {
        for (int32_t id = 0; id < v->n; id++) {
            uint8_t t = v->type[id];
            if (t == LLM_TOKEN_CONTROL || t == LLM_TOKEN_USER_DEFINED || t == LLM_TOKEN_UNKNOWN)
                v->strip[id] = TOK_RSTRIP;
        }
        static const char *const keep[] = {"<unk>", "<s>", "<|endoftext|>"};
        for (size_t k = 0; k < sizeof keep / sizeof *keep; k++) {
            int32_t id = tok_find(v, keep[k], strlen(keep[k]));
            if (id >= 0)
                v->strip[id] = 0;
        }
        int32_t eos = tok_find(v, "</s>", 4);
        if (eos >= 0)
            v->strip[eos] = TOK_RSTRIP;
    }
    free(name);
}

static int load_specials(llm_vocab *v, const gguf_file *f, llm_err *err)
{
    if (v->kind == LLM_VOCAB_WPM)
        read_id(v, f, "tokenizer.ggml.cls_token_id", &v->bos);
    read_id(v, f, "tokenizer.ggml.bos_token_id", &v->bos);
    read_id(v, f, "tokenizer.ggml.eos_token_id", &v->eos);
    read_id(v, f, "tokenizer.ggml.eot_token_id", &v->eot);
    read_id(v, f, "tokenizer.ggml.eom_token_id", &v->eom);
    read_id(v, f, "tokenizer.ggml.unknown_token_id", &v->unk);
    read_id(v, f, "tokenizer.ggml.seperator_token_id", &v->sep);
    read_id(v, f, "tokenizer.ggml.padding_token_id", &v->pad);
    if (gguf_get_bool_or(f, "tokenizer.ggml.add_bos_token", v->add_bos, &v->add_bos, err) ||
        gguf_get_bool_or(f, "tokenizer.ggml.add_eos_token", v->add_eos, &v->add_eos, err) ||
        gguf_get_bool_or(f, "tokenizer.ggml.add_space_prefix", v->add_space_prefix, &v->add_space_prefix, err))
        return -1;
    return 0;
}

int llm_vocab_load(const gguf_file *f, llm_vocab **out, llm_err *err)
{
    *out = NULL;
    llm_vocab *v = llm_xcalloc(1, sizeof *v);
    if (load_tokens(v, f, err) || load_kind(v, f, err))
        goto fail;
    build_hash(v);
    if (load_specials(v, f, err))
        goto fail;
    if (v->kind == LLM_VOCAB_BPE && tok_bpe_init(v, f, err))
        goto fail;
    if (v->kind == LLM_VOCAB_SPM) {
        spm_byte_tokens(v);
        spm_pair_bitmap(v);
    }
    find_eog(v);
    collect_specials(v);
    set_strip_flags(v, f);
    *out = v;
    return 0;
fail:
    llm_vocab_free(v);
    return -1;
}

int llm_vocab_load_file(const char *path, llm_vocab **out, llm_err *err)
{
    llm_map m;
    gguf_file f;
    int rc = -1;
    *out = NULL;
    if (llm_map_open(&m, path, NULL, err))
        return -1;
    if (gguf_parse(&f, path, m.base, m.size, err) == 0)
        rc = llm_vocab_load(&f, out, err);
    gguf_free(&f);
    llm_map_close(&m);
    return rc;
}

void llm_vocab_free(llm_vocab *v)
{
    if (!v)
        return;
    tok_bpe_free(v);
    free(v->pre);
    free(v->arena);
    free(v->off);
    free(v->len);
    free(v->score);
    free(v->type);
    free(v->strip);
    free(v->eog);
    free(v->slot);
    free(v->merges);
    free(v->specials);
    free(v->pair_start);
    free(v->spm_pairs);
    free(v->spec_by_pair);
    free(v);
}

/* ---- accessors ------------------------------------------------------------------------------ */

llm_vocab_kind llm_vocab_kind_of(const llm_vocab *v) { return v->kind; }
const char *llm_vocab_pre(const llm_vocab *v) { return v->pre; }
int32_t llm_vocab_n(const llm_vocab *v) { return v->n; }
int32_t llm_vocab_bos(const llm_vocab *v) { return v->bos; }
int32_t llm_vocab_eos(const llm_vocab *v) { return v->eos; }
int32_t llm_vocab_eot(const llm_vocab *v) { return v->eot; }
int32_t llm_vocab_unk(const llm_vocab *v) { return v->unk; }
int32_t llm_vocab_pad(const llm_vocab *v) { return v->pad; }
int32_t llm_vocab_sep(const llm_vocab *v) { return v->sep; }
bool llm_vocab_add_bos(const llm_vocab *v) { return v->add_bos && v->bos >= 0; }
bool llm_vocab_add_eos(const llm_vocab *v) { return v->add_eos && v->eos >= 0; }

bool llm_token_is_eog(const llm_vocab *v, int32_t id)
{
    return id >= 0 && id < v->n && v->eog[id];
}

llm_token_type llm_token_type_of(const llm_vocab *v, int32_t id)
{
    return id >= 0 && id < v->n ? (llm_token_type)v->type[id] : LLM_TOKEN_UNDEFINED;
}

bool llm_token_is_control(const llm_vocab *v, int32_t id)
{
    llm_token_type t = llm_token_type_of(v, id);
    return t == LLM_TOKEN_CONTROL || t == LLM_TOKEN_UNKNOWN;
}

const char *llm_token_text(const llm_vocab *v, int32_t id, size_t *len)
{
    if (id < 0 || id >= v->n)
        return NULL;
    if (len)
        *len = v->len[id];
    return v->arena + v->off[id];
}

int32_t llm_vocab_find(const llm_vocab *v, const char *text, size_t len)
{
    return tok_find(v, text, len);
}

/* ---- tokenize ------------------------------------------------------------------------------- */

/* A piece of the input: plain text [off, off+len) or an already recognised token. */
typedef struct fragment {
    size_t off, len;
    int32_t id; /* -1 for text */
} fragment;

typedef struct frag_list {
    fragment *d;
    size_t n, cap;
} frag_list;

static void frag_push(frag_list *l, size_t off, size_t len, int32_t id)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->d = llm_xrealloc(l->d, l->cap * sizeof *l->d);
    }
    l->d[l->n++] = (fragment){off, len, id};
}

static bool is_ascii_space(char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

static bool special_active(const llm_vocab *v, size_t k, bool parse_special)
{
    return parse_special || v->type[v->specials[k]] == LLM_TOKEN_USER_DEFINED;
}

/* Which special tokens occur anywhere in the text: one pass, two table lookups per byte.
 * Only those need the (per-token) splitting pass below. */
static uint8_t *specials_present(const llm_vocab *v, const char *text, size_t len, bool parse_special)
{
    uint8_t *present = llm_xcalloc(v->n_specials ? v->n_specials : 1, 1);
    const unsigned char *s = (const unsigned char *)text;
    for (size_t pos = 0; pos < len; pos++) {
        int32_t k1 = v->spec_single[s[pos]];
        if (k1 >= 0 && special_active(v, (size_t)k1, parse_special))
            present[k1] = 1;
        if (pos + 1 >= len)
            break;
        unsigned key = (unsigned)s[pos] << 8 | s[pos + 1];
        for (uint32_t r = v->pair_start[key]; r < v->pair_start[key + 1]; r++) {
            uint32_t k = v->spec_by_pair[r];
            if (present[k] || !special_active(v, k, parse_special))
                continue;
            uint32_t tl = v->len[v->specials[k]];
            if (tl <= len - pos && memcmp(s + pos, v->arena + v->off[v->specials[k]], tl) == 0)
                present[k] = 1;
        }
    }
    return present;
}

/* Splits every text fragment at each occurrence of each special token, longest tokens first
 * (so "<|im_start|>" wins over a shorter token inside it) — llama.cpp's order, which decides
 * overlapping matches. Cost: O(text) per special token that occurs in the text. */
static void partition(const llm_vocab *v, const char *text, size_t len, bool parse_special, frag_list *frags)
{
    frag_list tmp = {0};
    frag_push(frags, 0, len, -1);
    uint8_t *present = specials_present(v, text, len, parse_special);
    for (size_t k = 0; k < v->n_specials; k++) {
        if (!present[k])
            continue;
        int32_t id = v->specials[k];
        const char *tt = v->arena + v->off[id];
        size_t tl = v->len[id];
        bool any = false;
        tmp.n = 0;
        for (size_t i = 0; i < frags->n; i++) {
            fragment fr = frags->d[i];
            if (fr.id >= 0 || fr.len < tl) {
                frag_push(&tmp, fr.off, fr.len, fr.id);
                continue;
            }
            size_t pos = fr.off, end = fr.off + fr.len;
            for (;;) {
                const char *hit = memmem(text + pos, end - pos, tt, tl);
                if (!hit)
                    break;
                size_t at = (size_t)(hit - text), gap_end = at;
                if (v->strip[id] & TOK_LSTRIP)
                    while (gap_end > pos && is_ascii_space(text[gap_end - 1]))
                        gap_end--;
                if (gap_end > pos)
                    frag_push(&tmp, pos, gap_end - pos, -1);
                frag_push(&tmp, at, tl, id);
                pos = at + tl;
                if (v->strip[id] & TOK_RSTRIP)
                    while (pos < end && is_ascii_space(text[pos]))
                        pos++;
                any = true;
            }
            if (pos < end)
                frag_push(&tmp, pos, end - pos, -1);
        }
        if (any) {
            frag_list t = *frags;
            *frags = tmp;
            tmp = t;
        }
    }
    free(present);
    free(tmp.d);
}

int llm_tokenize(const llm_vocab *v, const char *text, size_t len, bool add_special, bool parse_special,
                 int32_t **ids, size_t *n, llm_err *err)
{
    *ids = NULL;
    *n = 0;
    if (len > ((size_t)1 << 40))
        return llm_errf(err, "tokenize: text of %zu bytes is too large", len);
    tok_vec out = {0};
    bool wpm = v->kind == LLM_VOCAB_WPM;
    if (add_special && v->bos >= 0 && (v->add_bos || wpm))
        tok_vec_push(&out, v->bos);
    frag_list frags = {0};
    if (len > 0)
        partition(v, text, len, parse_special, &frags);
    bool prev_special = true;
    for (size_t i = 0; i < frags.n; i++) {
        const fragment *fr = &frags.d[i];
        if (fr->id >= 0) {
            tok_vec_push(&out, fr->id);
            prev_special = true;
            continue;
        }
        switch (v->kind) {
        case LLM_VOCAB_SPM:
            tok_spm(v, text + fr->off, fr->len, v->add_space_prefix && prev_special, &out);
            break;
        case LLM_VOCAB_BPE:
            tok_bpe(v, text + fr->off, fr->len, &out);
            break;
        case LLM_VOCAB_WPM:
            tok_wpm(v, text + fr->off, fr->len, &out);
            break;
        }
        prev_special = false;
    }
    free(frags.d);
    if (add_special && wpm && v->sep >= 0)
        tok_vec_push(&out, v->sep);
    else if (add_special && v->add_eos && v->eos >= 0)
        tok_vec_push(&out, v->eos);
    *ids = out.d;
    *n = out.n;
    return 0;
}
