/*
 * Modelfile: the small text format `llmap create` reads (a subset of Ollama's): FROM,
 * PARAMETER, SYSTEM, TEMPLATE, comments, quoted and """triple-quoted""" arguments.
 *
 * The parser walks the bytes once with an explicit line counter, never reads past len and
 * reports the first problem with its line number, so any input — including the fuzzer's — gets
 * either a result or a message, never a crash.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/store.h"

typedef struct cursor {
    const char *p, *end;
    int line;
    const char *fname;
} cursor;

static void skip_blanks(cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\r'))
        c->p++;
}

/* Rest of the line, trimmed, as a new string; the cursor stops at the '\n'. */
static char *rest_of_line(cursor *c)
{
    skip_blanks(c);
    const char *s = c->p;
    while (c->p < c->end && *c->p != '\n')
        c->p++;
    const char *e = c->p;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
        e--;
    return llm_xstrndup(s, (size_t)(e - s));
}

/* """...""" possibly spanning lines; the cursor is on the first quote. */
static char *triple_quoted(cursor *c, llm_err *err)
{
    int start_line = c->line;
    c->p += 3;
    const char *s = c->p;
    while (c->p + 3 <= c->end && memcmp(c->p, "\"\"\"", 3) != 0) {
        if (*c->p == '\n')
            c->line++;
        c->p++;
    }
    if (c->p + 3 > c->end) {
        llm_errf(err, "%s:%d: unterminated \"\"\" string", c->fname, start_line);
        return NULL;
    }
    char *v = llm_xstrndup(s, (size_t)(c->p - s));
    c->p += 3;
    return v;
}

/* "..." on one line with \" \\ \n \t escapes; the cursor is on the quote. */
static char *quoted(cursor *c, llm_err *err)
{
    llm_buf b = {0};
    c->p++;
    for (;;) {
        if (c->p >= c->end || *c->p == '\n') {
            llm_buf_free(&b);
            llm_errf(err, "%s:%d: unterminated \" string", c->fname, c->line);
            return NULL;
        }
        char ch = *c->p++;
        if (ch == '"')
            break;
        if (ch == '\\' && c->p < c->end && *c->p != '\n') {
            char e = *c->p++;
            ch = e == 'n' ? '\n' : e == 't' ? '\t' : e;
        }
        llm_buf_append(&b, &ch, 1);
    }
    llm_buf_append(&b, "", 0);
    return b.data ? b.data : llm_xstrdup("");
}

/* The argument of an instruction in any of the three spellings; nothing may follow a
 * quoted argument on its line. */
static char *argument(cursor *c, llm_err *err)
{
    skip_blanks(c);
    char *v;
    if (c->end - c->p >= 3 && memcmp(c->p, "\"\"\"", 3) == 0)
        v = triple_quoted(c, err);
    else if (c->p < c->end && *c->p == '"')
        v = quoted(c, err);
    else
        return rest_of_line(c);
    if (!v)
        return NULL;
    skip_blanks(c);
    if (c->p < c->end && *c->p != '\n') {
        free(v);
        llm_errf(err, "%s:%d: unexpected text after the closing quote", c->fname, c->line);
        return NULL;
    }
    return v;
}

static int set_once(char **slot, char *v, const char *what, cursor *c, llm_err *err)
{
    if (*slot) {
        free(v);
        return llm_errf(err, "%s:%d: %s given twice", c->fname, c->line, what);
    }
    *slot = v;
    return 0;
}

static int parse_parameter(cursor *c, llm_modelfile *mf, llm_err *err)
{
    skip_blanks(c);
    const char *k = c->p;
    while (c->p < c->end && (isalnum((unsigned char)*c->p) || *c->p == '_'))
        c->p++;
    char key[32];
    size_t kl = (size_t)(c->p - k);
    if (kl == 0 || kl >= sizeof key)
        return llm_errf(err, "%s:%d: PARAMETER needs a name and a value", c->fname, c->line);
    memcpy(key, k, kl);
    key[kl] = 0;
    char *v = argument(c, err);
    if (!v)
        return -1;
    int rc = 0;
    if (!*v)
        rc = llm_errf(err, "%s:%d: PARAMETER %s has no value", c->fname, c->line, key);
    else if (llm_params_set(&mf->params, key, v, err))
        rc = llm_err_prefix(err, "%s:%d", c->fname, c->line);
    free(v);
    return rc;
}

static int parse_instruction(cursor *c, llm_modelfile *mf, llm_err *err)
{
    const char *w = c->p;
    while (c->p < c->end && isalpha((unsigned char)*c->p))
        c->p++;
    size_t wl = (size_t)(c->p - w);
    char word[16];
    if (wl == 0 || wl >= sizeof word || (c->p < c->end && !isspace((unsigned char)*c->p)))
        return llm_errf(err, "%s:%d: expected an instruction (FROM, PARAMETER, SYSTEM, TEMPLATE)", c->fname,
                        c->line);
    for (size_t i = 0; i < wl; i++)
        word[i] = (char)toupper((unsigned char)w[i]);
    word[wl] = 0;
    if (!strcmp(word, "PARAMETER"))
        return parse_parameter(c, mf, err);
    int line = c->line;
    char **slot = !strcmp(word, "FROM") ? &mf->from
                  : !strcmp(word, "SYSTEM") ? &mf->system
                  : !strcmp(word, "TEMPLATE") ? &mf->template_str
                                              : NULL;
    if (!slot)
        return llm_errf(err, "%s:%d: unknown instruction '%s' (FROM, PARAMETER, SYSTEM, TEMPLATE)", c->fname,
                        c->line, word);
    char *v = argument(c, err);
    if (!v)
        return -1;
    if (slot == &mf->from) {
        mf->from_line = line;
        if (!*v) {
            free(v);
            return llm_errf(err, "%s:%d: FROM needs a model name or a .gguf path", c->fname, line);
        }
    }
    return set_once(slot, v, word, c, err);
}

int llm_modelfile_parse(const char *text, size_t len, const char *fname, llm_modelfile *mf, llm_err *err)
{
    memset(mf, 0, sizeof *mf);
    if (!fname)
        fname = "Modelfile";
    if (len > LLM_MODELFILE_MAX)
        return llm_errf(err, "%s: larger than %u bytes", fname, LLM_MODELFILE_MAX);
    if (memchr(text, 0, len))
        return llm_errf(err, "%s: contains a NUL byte (not a text file)", fname);
    cursor c = {text, text + len, 1, fname};
    while (c.p < c.end) {
        skip_blanks(&c);
        if (c.p < c.end && *c.p == '#')
            while (c.p < c.end && *c.p != '\n')
                c.p++;
        else if (c.p < c.end && *c.p != '\n' && parse_instruction(&c, mf, err)) {
            llm_modelfile_free(mf);
            return -1;
        }
        if (c.p < c.end && *c.p == '\n') {
            c.p++;
            c.line++;
        }
    }
    if (!mf->from) {
        llm_modelfile_free(mf);
        return llm_errf(err, "%s: no FROM line (which model to build on?)", fname);
    }
    return 0;
}

void llm_modelfile_free(llm_modelfile *mf)
{
    free(mf->from);
    free(mf->template_str);
    free(mf->system);
    llm_params_free(&mf->params);
    memset(mf, 0, sizeof *mf);
}

/* Later PARAMETER lines override inherited ones; stop strings replace the inherited list. */
static void merge_params(llm_params *dst, const llm_params *src)
{
    if (src->set & LLM_P_TEMPERATURE)
        dst->temperature = src->temperature;
    if (src->set & LLM_P_TOP_K)
        dst->top_k = src->top_k;
    if (src->set & LLM_P_TOP_P)
        dst->top_p = src->top_p;
    if (src->set & LLM_P_MIN_P)
        dst->min_p = src->min_p;
    if (src->set & LLM_P_REPEAT_PENALTY)
        dst->repeat_penalty = src->repeat_penalty;
    if (src->set & LLM_P_SEED)
        dst->seed = src->seed;
    if (src->set & LLM_P_NUM_CTX)
        dst->num_ctx = src->num_ctx;
    if (src->set & LLM_P_NUM_PREDICT)
        dst->num_predict = src->num_predict;
    if (src->set & LLM_P_STOP) {
        for (int i = 0; i < dst->n_stop; i++)
            free(dst->stop[i]);
        for (int i = 0; i < src->n_stop; i++)
            dst->stop[i] = llm_xstrdup(src->stop[i]);
        dst->n_stop = src->n_stop;
    }
    dst->set |= src->set;
}

static int read_text_file(const char *path, llm_buf *b, llm_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return llm_errf(err, "%s: %s", path, strerror(errno));
    char chunk[8192];
    size_t r;
    while ((r = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (b->len + r > LLM_MODELFILE_MAX) {
            fclose(f);
            return llm_errf(err, "%s: larger than %u bytes", path, LLM_MODELFILE_MAX);
        }
        llm_buf_append(b, chunk, r);
    }
    int bad = ferror(f);
    fclose(f);
    if (bad)
        return llm_errf(err, "%s: read error", path);
    return 0;
}

/* FROM as a path: relative to the Modelfile's directory, like a Makefile's sources. */
static char *from_path(const char *modelfile_path, const char *from)
{
    llm_buf p = {0};
    const char *slash = strrchr(modelfile_path, '/');
    if (from[0] == '/' || !slash)
        llm_buf_puts(&p, from);
    else
        llm_buf_printf(&p, "%.*s/%s", (int)(slash - modelfile_path), modelfile_path, from);
    return p.data;
}

int llm_store_create(llm_store *s, const char *name, const char *modelfile_path, llm_err *err)
{
    llm_name n;
    if (llm_name_parse(name, &n, err))
        return -1;
    llm_buf text = {0};
    llm_modelfile mf;
    if (read_text_file(modelfile_path, &text, err) ||
        llm_modelfile_parse(text.data ? text.data : "", text.len, modelfile_path, &mf, err)) {
        llm_buf_free(&text);
        return -1;
    }
    llm_buf_free(&text);
    llm_manifest base = {0};
    int rc = 0;
    size_t fl = strlen(mf.from);
    int is_path = strchr(mf.from, '/') != NULL || (fl >= 5 && strcasecmp(mf.from + fl - 5, ".gguf") == 0);
    llm_name fn;
    if (is_path && llm_name_parse(mf.from, &fn, NULL) == 0) {
        /* "ns/model" is both; a file that exists wins. */
        char *p = from_path(modelfile_path, mf.from);
        struct stat st;
        is_path = stat(p, &st) == 0;
        free(p);
    }
    if (is_path) {
        char *p = from_path(modelfile_path, mf.from);
        rc = llm_store_import(s, p, n.full, err);
        free(p);
        if (rc == 0)
            rc = llm_store_get(s, n.full, &base, err);
    } else {
        rc = llm_store_get(s, mf.from, &base, err);
    }
    if (rc) {
        llm_err_prefix(err, "%s:%d: FROM %s", modelfile_path, mf.from_line, mf.from);
    } else {
        free(base.name);
        base.name = llm_xstrdup(n.full);
        free(base.created);
        base.created = NULL;
        if (mf.template_str) {
            free(base.template_str);
            base.template_str = llm_xstrdup(mf.template_str);
        }
        if (mf.system) {
            free(base.system);
            base.system = llm_xstrdup(mf.system);
        }
        merge_params(&base.params, &mf.params);
        rc = llm_store_add(s, NULL, &base, err);
    }
    llm_manifest_free(&base);
    llm_modelfile_free(&mf);
    return rc;
}
