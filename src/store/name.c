/*
 * Model names: the grammar that keeps every name inside the store.
 *
 *   name      = [ component "/" [ component "/" ] ] component [ ":" tag ]
 *   component = lower-or-digit *( lower / digit / "." / "_" / "-" )      (1..64 bytes, no "..")
 *   tag       = alnum *( alnum / "." / "_" / "-" )                       (1..64 bytes, no "..")
 *
 * ASCII only, at most LLM_NAME_MAX bytes in total. Because a component can neither be empty,
 * nor start with '.', nor contain '..' or '/', and a manifest file name is built only from
 * validated parts, no name can address a path outside the manifests directory. Tags allow
 * uppercase because published tags do ("7b-q4_K_M"); model components do not, so "Qwen" and
 * "qwen" cannot be two different models.
 */
#include <stdio.h>
#include <string.h>

#include "store/store.h"

/* The name as the user typed it, made printable for an error message (bounded). */
static void quote_name(const char *text, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 5 < cap; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            out[o++] = (char)c;
        } else {
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
        }
        if (i == 60 && len > 64) {
            snprintf(out + o, cap - o, "...");
            o += 3;
            break;
        }
    }
    out[o < cap ? o : cap - 1] = 0;
}

static int is_lower_or_digit(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static int is_alnum(int c)
{
    return is_lower_or_digit(c) || (c >= 'A' && c <= 'Z');
}

/* Checks one component or the tag; returns NULL when fine, else what is wrong with it. */
static const char *check_part(const char *p, size_t n, int is_tag, char *why, size_t whycap)
{
    if (n == 0)
        return is_tag ? "the tag after ':' is empty" : "a name component is empty (\"a//b\", leading or trailing '/')";
    if (n > LLM_NAME_PART_MAX) {
        snprintf(why, whycap, "%s is %zu bytes long (at most %d)", is_tag ? "the tag" : "a component", n,
                 LLM_NAME_PART_MAX);
        return why;
    }
    if (!is_tag && p[0] >= 'A' && p[0] <= 'Z')
        return "uppercase letters are not allowed in a model name (use lowercase)";
    if (!(is_tag ? is_alnum((unsigned char)p[0]) : is_lower_or_digit((unsigned char)p[0]))) {
        snprintf(why, whycap, "%s must start with a %s, not '%c'", is_tag ? "the tag" : "a component",
                 is_tag ? "letter or digit" : "lowercase letter or digit", p[0]);
        return why;
    }
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)p[i];
        if (c == '.' && i + 1 < n && p[i + 1] == '.')
            return "'..' is not allowed in a name";
        if (c == '.' || c == '_' || c == '-')
            continue;
        if (is_tag ? is_alnum(c) : is_lower_or_digit(c))
            continue;
        if (!is_tag && c >= 'A' && c <= 'Z')
            return "uppercase letters are not allowed in a model name (use lowercase)";
        snprintf(why, whycap, "character '%c' is not allowed (only letters, digits, '.', '_', '-')", c);
        return why;
    }
    return NULL;
}

/* Rules about the name as a whole, before it is split. */
static const char *check_whole(const char *text, size_t len, char *why, size_t whycap)
{
    if (len == 0)
        return "the name is empty";
    if (len > LLM_NAME_MAX) {
        snprintf(why, whycap, "the name is %zu bytes long (at most %d)", len, LLM_NAME_MAX);
        return why;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == 0)
            return "the name contains a NUL byte";
        if (c >= 0x80)
            return "the name is not ASCII (only a-z, 0-9, '.', '_', '-', '/', ':')";
        if (c < 0x20 || c == 0x7f)
            return "the name contains a control character";
    }
    if (text[0] == '/')
        return "absolute paths are not model names";
    if (text[0] == '.' && (len == 1 || text[1] == '/' || text[1] == '.'))
        return "relative paths are not model names";
    return NULL;
}

int llm_name_parse_n(const char *text, size_t len, llm_name *out, llm_err *err)
{
    char why[160], shown[300];
    const char *bad = NULL;
    memset(out, 0, sizeof *out);
    if (!text)
        return llm_errf(err, "invalid model name: none given");
    bad = check_whole(text, len, why, sizeof why);
    const char *colon = bad ? NULL : memchr(text, ':', len);
    size_t path_len = colon ? (size_t)(colon - text) : len;
    if (!bad && colon && memchr(colon + 1, ':', len - path_len - 1))
        bad = "more than one ':' (the tag comes after the only ':')";
    if (!bad && path_len == 0)
        bad = "the model name before ':' is empty";
    const char *tag = colon ? colon + 1 : "latest";
    size_t tag_len = colon ? len - path_len - 1 : 6;
    if (!bad)
        bad = check_part(tag, tag_len, 1, why, sizeof why);
    /* Components, left to right; the last one is the model, the others namespaces. */
    const char *comp[LLM_NAME_MAX_NS + 2];
    size_t comp_len[LLM_NAME_MAX_NS + 2];
    int n_comp = 0;
    for (size_t start = 0; !bad;) {
        const char *slash = memchr(text + start, '/', path_len - start);
        size_t end = slash ? (size_t)(slash - text) : path_len;
        if (n_comp == LLM_NAME_MAX_NS + 1) {
            snprintf(why, sizeof why, "too many '/' (at most %d namespaces before the model)", LLM_NAME_MAX_NS);
            bad = why;
            break;
        }
        comp[n_comp] = text + start;
        comp_len[n_comp] = end - start;
        bad = check_part(comp[n_comp], comp_len[n_comp], 0, why, sizeof why);
        n_comp++;
        if (!slash)
            break;
        start = end + 1;
    }
    if (bad) {
        quote_name(text, len, shown, sizeof shown);
        memset(out, 0, sizeof *out);
        return llm_errf(err, "invalid model name '%s': %s", shown, bad);
    }
    memcpy(out->path, text, path_len);
    out->path[path_len] = 0;
    memcpy(out->tag, tag, tag_len);
    out->tag[tag_len] = 0;
    out->n_ns = n_comp - 1;
    for (int i = 0; i < out->n_ns; i++) {
        memcpy(out->ns[i], comp[i], comp_len[i]);
        out->ns[i][comp_len[i]] = 0;
    }
    memcpy(out->model, comp[n_comp - 1], comp_len[n_comp - 1]);
    out->model[comp_len[n_comp - 1]] = 0;
    /* path_len + 1 + tag_len <= LLM_NAME_MAX + 7 (":latest" added) fits in full. */
    memcpy(out->full, out->path, path_len);
    out->full[path_len] = ':';
    memcpy(out->full + path_len + 1, out->tag, tag_len + 1);
    return 0;
}

int llm_name_parse(const char *text, llm_name *out, llm_err *err)
{
    return llm_name_parse_n(text, text ? strlen(text) : 0, out, err);
}
