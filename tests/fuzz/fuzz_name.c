/*
 * libFuzzer target for the store's parsers of outside text: model names, Modelfiles,
 * manifests and pull sources. The first byte picks the parser (N, M, J, S; anything else runs
 * all four on the rest). Beyond "no crash", it checks the property that matters: an accepted
 * name can never address a path outside the store (no '..', no leading '/', no empty
 * component, ASCII only) and re-parses to itself.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

static void check_name(const char *p, size_t n)
{
    llm_name nm;
    llm_err err;
    if (llm_name_parse_n(p, n, &nm, &err) != 0) {
        if (strncmp(err.msg, "invalid model name", 18) != 0)
            abort(); /* every rejection says what it rejects */
        return;
    }
    const char *f = nm.full;
    if (f[0] == '/' || f[0] == '.' || strstr(f, "..") || strstr(f, "//") || strstr(f, "/:") || !strchr(f, ':'))
        abort();
    for (const char *c = f; *c; c++)
        if ((unsigned char)*c >= 0x80 || (unsigned char)*c < 0x21 || *c == '\\')
            abort();
    if (nm.n_ns < 0 || nm.n_ns > LLM_NAME_MAX_NS || !nm.model[0] || !nm.tag[0])
        abort();
    llm_name again;
    if (llm_name_parse(f, &again, &err) != 0 || strcmp(again.full, f) != 0)
        abort(); /* canonical names are fixed points */
}

static void check_modelfile(const char *p, size_t n)
{
    llm_modelfile mf;
    llm_err err;
    if (llm_modelfile_parse(p, n, "Modelfile", &mf, &err) == 0) {
        if (!mf.from)
            abort();
        llm_modelfile_free(&mf);
    }
}

static void check_manifest(const char *p, size_t n)
{
    llm_manifest m;
    llm_err err;
    if (llm_manifest_from_json(&m, p, n, &err) == 0) {
        if (!llm_digest_valid(m.digest, false))
            abort(); /* an accepted manifest never points outside blobs/ */
        char *json = llm_manifest_to_json(&m);
        llm_manifest back;
        if (llm_manifest_from_json(&back, json, strlen(json), &err) != 0)
            abort(); /* what we write we can read */
        llm_manifest_free(&back);
        free(json);
        llm_manifest_free(&m);
    }
}

static void check_source(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    memcpy(s, p, n);
    s[n] = 0;
    llm_pull_source ps;
    llm_err err;
    if (llm_pull_parse_source(s, &ps, &err) == 0 && ps.kind == LLM_PULL_REGISTRY && (!ps.repo || strstr(ps.repo, "..")))
        abort();
    llm_pull_source_free(&ps);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    switch (data[0]) {
    case 'N': check_name(p, n); break;
    case 'M': check_modelfile(p, n); break;
    case 'J': check_manifest(p, n); break;
    case 'S': check_source(p, n); break;
    default:
        check_name(p, n);
        check_modelfile(p, n);
        check_manifest(p, n);
        check_source(p, n);
    }
    return 0;
}
