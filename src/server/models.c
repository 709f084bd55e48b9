/*
 * models — what the server knows about model files without loading them: client names
 * ("tiny-llama-q8_0", "tiny-llama-q8_0:latest", "tiny-llama-q8_0.gguf") mapped to GGUF
 * files of the models directory, and their metadata for /api/tags, /api/show and /api/ps.
 *
 * Two sources: the model store (src/store, the default: names and tags from manifests) or,
 * with --models DIR, a plain directory of GGUF files ("stem.gguf" is "stem:latest").
 *
 * Names come from the network, so they are checked before any file system call: the store's
 * name grammar, or for a directory only [A-Za-z0-9._-] with an optional ":tag", no leading
 * dot, no "..", no separators — a request can never name a file outside the store or the
 * directory (in particular, never a path: llm_store_resolve's path shortcut is not used).
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gguf/gguf.h"
#include "mem/mem.h"
#include "server/server.h"
#include "store/store.h"

static bool name_char_ok(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
           ch == '_' || ch == '-';
}

/* Splits "stem[:tag]" and checks both parts; stem loses a ".gguf" suffix. */
static int split_name(const char *name, char *stem, size_t stem_n, char *tag, size_t tag_n, llm_err *err)
{
    size_t len = strlen(name);
    if (len == 0)
        return llm_errf(err, "model name is empty");
    if (len >= stem_n)
        return llm_errf(err, "model name is too long (%zu bytes)", len);
    const char *colon = strchr(name, ':');
    size_t stem_len = colon ? (size_t)(colon - name) : len;
    const char *t = colon ? colon + 1 : "latest";
    if (stem_len == 0 || !*t || strlen(t) >= tag_n)
        return llm_errf(err, "invalid model name '%s'", name);
    for (size_t i = 0; i < stem_len; i++)
        if (!name_char_ok(name[i]))
            return llm_errf(err, "invalid model name '%s': only letters, digits, '.', '_' and '-' are allowed", name);
    for (const char *p = t; *p; p++)
        if (!name_char_ok(*p))
            return llm_errf(err, "invalid model tag in '%s'", name);
    if (name[0] == '.' || t[0] == '.' || strstr(name, ".."))
        return llm_errf(err, "invalid model name '%s'", name);
    memcpy(stem, name, stem_len);
    stem[stem_len] = 0;
    if (stem_len > 5 && !strcmp(stem + stem_len - 5, ".gguf"))
        stem[stem_len - 5] = 0;
    snprintf(tag, tag_n, "%s", t);
    return 0;
}

/* A store name → its blob. 400 for a name that breaks the grammar, 404 when absent. */
static int store_resolve(const char *name, char **path, char **canonical, char **digest, int *status, llm_err *err)
{
    llm_name n;
    if (llm_name_parse(name, &n, err)) {
        *status = 400;
        return -1;
    }
    llm_store *st;
    if (llm_store_open(&st, NULL, err)) {
        *status = 500;
        return -1;
    }
    llm_manifest man;
    int rc = llm_store_get(st, n.full, &man, err);
    if (rc) {
        *status = 404;
    } else {
        *path = llm_store_blob_path(st, man.digest);
        *canonical = llm_xstrdup(n.full);
        if (digest)
            *digest = llm_xstrdup(man.digest);
        llm_manifest_free(&man);
    }
    llm_store_close(st);
    return rc;
}

int models_resolve(const server_opts *o, const char *name, char **path, char **canonical, int *status,
                   llm_err *err)
{
    char stem[256], tag[128];
    *path = *canonical = NULL;
    if (!o->models_dir)
        return store_resolve(name, path, canonical, NULL, status, err);
    if (split_name(name, stem, sizeof stem, tag, sizeof tag, err)) {
        *status = 400;
        return -1;
    }
    char file[1536];
    /* "latest" is the plain file; another tag t names the file "<stem>-<t>.gguf". */
    if (!strcmp(tag, "latest"))
        snprintf(file, sizeof file, "%s/%s.gguf", o->models_dir, stem);
    else
        snprintf(file, sizeof file, "%s/%s-%s.gguf", o->models_dir, stem, tag);
    struct stat st;
    if (stat(file, &st) || !S_ISREG(st.st_mode)) {
        *status = 404;
        return llm_errf(err, "model '%s' not found", name);
    }
    *path = llm_xstrdup(file);
    char canon[400];
    snprintf(canon, sizeof canon, "%s:%s", stem, tag);
    *canonical = llm_xstrdup(canon);
    return 0;
}

void model_apply_defaults(const server_opts *o, const char *name, gen_req *g)
{
    llm_name n;
    llm_store *st;
    if (o->models_dir || llm_name_parse(name, &n, NULL) || llm_store_open(&st, NULL, NULL))
        return;
    llm_manifest man;
    if (!llm_store_get(st, n.full, &man, NULL)) {
        const llm_params *p = &man.params;
        llmap_sampling *sp = &g->sp;
        if (p->set & LLM_P_TEMPERATURE) sp->temperature = p->temperature;
        if (p->set & LLM_P_TOP_K) sp->top_k = p->top_k;
        if (p->set & LLM_P_TOP_P) sp->top_p = p->top_p;
        if (p->set & LLM_P_MIN_P) sp->min_p = p->min_p;
        if (p->set & LLM_P_REPEAT_PENALTY) sp->repeat_penalty = p->repeat_penalty;
        if (p->set & LLM_P_SEED) sp->seed = p->seed;
        if (p->set & LLM_P_NUM_CTX) g->n_ctx = p->num_ctx;
        if (p->set & LLM_P_NUM_PREDICT) sp->num_predict = p->num_predict;
        if (p->set & LLM_P_STOP) {
            g->stops = llm_xrealloc(g->stops, (size_t)(sp->n_stop + p->n_stop) * sizeof *g->stops);
            for (int i = 0; i < p->n_stop; i++)
                g->stops[sp->n_stop++] = llm_xstrdup(p->stop[i]);
            sp->stop = (const char *const *)g->stops;
        }
        if (man.system && *man.system) {
            free(g->system_default);
            g->system_default = llm_xstrdup(man.system);
        }
        llm_manifest_free(&man);
    }
    llm_store_close(st);
}

static uint32_t arch_u32(const gguf_file *f, const char *arch, const char *key)
{
    char full[256];
    uint32_t v = 0;
    snprintf(full, sizeof full, "%s.%s", arch, key);
    if (gguf_get_u32(f, full, &v, NULL))
        return 0;
    return v;
}

static int meta_parse(const char *path, const char *canonical, model_meta *m, llm_err *err)
{
    memset(m, 0, sizeof *m);
    llm_map map;
    if (llm_map_open(&map, path, NULL, err))
        return -1;
    gguf_file f;
    if (gguf_parse(&f, path, map.base, map.size, err)) {
        gguf_free(&f);
        llm_map_close(&map);
        return -1;
    }
    m->name = llm_xstrdup(canonical);
    m->path = llm_xstrdup(path);
    m->file_size = map.size;
    m->arch = gguf_arch(&f);
    if (!m->arch)
        m->arch = llm_xstrdup("unknown");
    m->general_name = gguf_get_str(&f, "general.name", NULL);
    m->chat_template = gguf_get_str(&f, "tokenizer.chat_template", NULL);
    m->quant = gguf_quant_name(&f); /* Ollama's quantization_level */
    for (uint64_t i = 0; i < f.n_tensors; i++)
        m->n_params += gguf_tensor_nelements(&f.tensors[i]);
    m->ctx_len = arch_u32(&f, m->arch, "context_length");
    m->n_embd = arch_u32(&f, m->arch, "embedding_length");
    m->n_layer = arch_u32(&f, m->arch, "block_count");
    m->n_head = arch_u32(&f, m->arch, "attention.head_count");
    m->n_head_kv = arch_u32(&f, m->arch, "attention.head_count_kv");
    const gguf_kv *tokens = gguf_find(&f, "tokenizer.ggml.tokens");
    m->n_vocab = tokens && tokens->type == GGUF_ARRAY ? (uint32_t)tokens->arr_n : 0;
    struct stat st;
    m->mtime = stat(path, &st) ? 0 : st.st_mtime;
    gguf_free(&f);
    llm_map_close(&map);
    return 0;
}

/* ---- metadata cache ---------------------------------------------------------------------- */

#define META_CACHE_MAX 256

typedef struct meta_entry {
    model_meta m;
    uint64_t size;
    struct timespec mtime;
} meta_entry;

struct meta_cache {
    pthread_mutex_t mu;
    meta_entry *v;
    size_t n, cap;
};

meta_cache *meta_cache_new(void)
{
    meta_cache *c = llm_xcalloc(1, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    return c;
}

void meta_cache_free(meta_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        model_meta_free(&c->v[i].m);
    free(c->v);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static char *dup_or_null(const char *s) { return s ? llm_xstrdup(s) : NULL; }

static void meta_copy(model_meta *dst, const model_meta *src, const char *canonical)
{
    *dst = *src;
    dst->name = llm_xstrdup(canonical);
    dst->path = dup_or_null(src->path);
    dst->arch = dup_or_null(src->arch);
    dst->general_name = dup_or_null(src->general_name);
    dst->quant = dup_or_null(src->quant);
    dst->chat_template = dup_or_null(src->chat_template);
    dst->digest = dup_or_null(src->digest);
}

int model_meta_read(meta_cache *c, const char *path, const char *canonical, model_meta *m, llm_err *err)
{
    struct stat st;
    if (!c || stat(path, &st))
        return meta_parse(path, canonical, m, err);
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->n; i++) {
        meta_entry *e = &c->v[i];
        if (!strcmp(e->m.path, path) && e->size == (uint64_t)st.st_size && e->mtime.tv_sec == st.st_mtim.tv_sec &&
            e->mtime.tv_nsec == st.st_mtim.tv_nsec) {
            meta_copy(m, &e->m, canonical);
            pthread_mutex_unlock(&c->mu);
            return 0;
        }
    }
    pthread_mutex_unlock(&c->mu);
    if (meta_parse(path, canonical, m, err))
        return -1;
    pthread_mutex_lock(&c->mu);
    size_t slot = c->n;
    for (size_t i = 0; i < c->n; i++) /* a changed file replaces its old entry */
        if (!strcmp(c->v[i].m.path, path))
            slot = i;
    if (slot == c->n && c->n == META_CACHE_MAX)
        slot = (size_t)st.st_ino % META_CACHE_MAX; /* full: overwrite some entry */
    if (slot == c->n) {
        if (c->n == c->cap) {
            c->cap = c->cap ? 2 * c->cap : 16;
            c->v = llm_xrealloc(c->v, c->cap * sizeof *c->v);
        }
        c->n++;
    } else {
        model_meta_free(&c->v[slot].m);
    }
    meta_copy(&c->v[slot].m, m, canonical);
    c->v[slot].size = (uint64_t)st.st_size;
    c->v[slot].mtime = st.st_mtim;
    pthread_mutex_unlock(&c->mu);
    return 0;
}

void model_meta_free(model_meta *m)
{
    free(m->name);
    free(m->path);
    free(m->arch);
    free(m->general_name);
    free(m->quant);
    free(m->chat_template);
    free(m->digest);
    memset(m, 0, sizeof *m);
}

void model_metas_free(model_meta *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        model_meta_free(&v[i]);
    free(v);
}

static int meta_cmp(const void *a, const void *b)
{
    return strcmp(((const model_meta *)a)->name, ((const model_meta *)b)->name);
}

static void push_meta(model_meta **out, size_t *n, size_t *cap, const model_meta *m)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        *out = llm_xrealloc(*out, *cap * sizeof **out);
    }
    (*out)[(*n)++] = *m;
}

static int list_store(meta_cache *c, model_meta **out, size_t *n, llm_err *err)
{
    llm_store *st;
    if (llm_store_open(&st, NULL, err))
        return -1;
    llm_model_list l;
    if (llm_store_list(st, &l, err)) {
        llm_store_close(st);
        return -1;
    }
    size_t cap = 0;
    for (size_t i = 0; i < l.n; i++) {
        char *path = llm_store_blob_path(st, l.items[i].digest);
        model_meta m;
        llm_err e2;
        if (!model_meta_read(c, path, l.items[i].name, &m, &e2)) {
            m.digest = llm_xstrdup(l.items[i].digest);
            push_meta(out, n, &cap, &m);
        }
        free(path);
    }
    llm_model_list_free(&l);
    llm_store_close(st);
    return 0;
}

static int list_dir(meta_cache *c, const char *dir, model_meta **out, size_t *n)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0; /* no models directory yet: no models */
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len <= 5 || strcmp(e->d_name + len - 5, ".gguf") || e->d_name[0] == '.')
            continue;
        char path[2048], canon[300];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        snprintf(canon, sizeof canon, "%.*s:latest", (int)(len - 5), e->d_name);
        model_meta m;
        llm_err e2;
        if (model_meta_read(c, path, canon, &m, &e2))
            continue; /* not a readable GGUF: not a model we can serve */
        push_meta(out, n, &cap, &m);
    }
    closedir(d);
    return 0;
}

int models_list(const server_opts *o, meta_cache *c, model_meta **out, size_t *n, llm_err *err)
{
    *out = NULL;
    *n = 0;
    int rc = o->models_dir ? list_dir(c, o->models_dir, out, n) : list_store(c, out, n, err);
    if (*n)
        qsort(*out, *n, sizeof **out, meta_cmp);
    return rc;
}

uint64_t model_file_resident(const char *path)
{
    llm_map map;
    llm_err err;
    if (llm_map_open(&map, path, NULL, &err))
        return 0;
    uint64_t r = llm_map_resident(&map, 0, map.size);
    llm_map_close(&map);
    return r;
}

static void format_params(char *buf, size_t n, uint64_t p)
{
    if (p >= 1000000000ull)
        snprintf(buf, n, "%.1fB", p / 1e9);
    else if (p >= 1000000ull)
        snprintf(buf, n, "%.2fM", p / 1e6);
    else
        snprintf(buf, n, "%.2fK", p / 1e3);
}

cJSON *model_details_json(const model_meta *m)
{
    cJSON *d = cJSON_CreateObject();
    char ps[32];
    format_params(ps, sizeof ps, m->n_params);
    cJSON_AddStringToObject(d, "parent_model", "");
    cJSON_AddStringToObject(d, "format", "gguf");
    cJSON_AddStringToObject(d, "family", m->arch);
    cJSON *fams = cJSON_AddArrayToObject(d, "families");
    cJSON_AddItemToArray(fams, cJSON_CreateString(m->arch));
    cJSON_AddStringToObject(d, "parameter_size", ps);
    cJSON_AddStringToObject(d, "quantization_level", m->quant);
    return d;
}
