/*
 * Manifests: the small JSON file that gives a name its model blob and settings, and the
 * default options (Modelfile PARAMETER) it carries.
 *
 *   {"schema":1, "name":"qwen2:0.5b", "model":"sha256-<hex>", "size":123,
 *    "template":"...", "system":"...", "source":"...", "created":"2026-01-01T00:00:00Z",
 *    "parameters":{"temperature":0.7, "seed":42, "stop":["</s>"]}}
 *
 * Manifests are outside data once on disk (a user can edit them), so reading checks every
 * field: a malformed digest would otherwise let a manifest point anywhere.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

static int parse_float(const char *v, float lo, float hi, float *out)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (end == v || *end || errno || !isfinite(d) || d < lo || d > hi)
        return -1;
    *out = (float)d;
    return 0;
}

static int parse_int(const char *v, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (end == v || *end || errno || x < lo || x > hi)
        return -1;
    *out = x;
    return 0;
}

int llm_params_set(llm_params *p, const char *key, const char *value, llm_err *err)
{
    long long i = 0;
    struct {
        const char *key;
        unsigned bit;
        float *f;
        float lo, hi;
    } floats[] = {
        {"temperature", LLM_P_TEMPERATURE, &p->temperature, 0, 100},
        {"top_p", LLM_P_TOP_P, &p->top_p, 0, 1},
        {"min_p", LLM_P_MIN_P, &p->min_p, 0, 1},
        {"repeat_penalty", LLM_P_REPEAT_PENALTY, &p->repeat_penalty, 0, 100},
    };
    for (size_t k = 0; k < sizeof floats / sizeof *floats; k++) {
        if (strcmp(key, floats[k].key) != 0)
            continue;
        if (parse_float(value, floats[k].lo, floats[k].hi, floats[k].f) != 0)
            return llm_errf(err, "parameter %s: '%s' is not a number in [%g, %g]", key, value,
                            (double)floats[k].lo, (double)floats[k].hi);
        p->set |= floats[k].bit;
        return 0;
    }
    if (!strcmp(key, "top_k")) {
        if (parse_int(value, 0, 1 << 30, &i))
            return llm_errf(err, "parameter top_k: '%s' is not an integer >= 0", value);
        p->top_k = (int)i, p->set |= LLM_P_TOP_K;
    } else if (!strcmp(key, "seed")) {
        char *end;
        errno = 0;
        unsigned long long u = strtoull(value, &end, 10);
        if (end == value || *end || errno || value[0] == '-')
            return llm_errf(err, "parameter seed: '%s' is not an unsigned integer", value);
        p->seed = u, p->set |= LLM_P_SEED;
    } else if (!strcmp(key, "num_ctx")) {
        if (parse_int(value, 1, 1 << 24, &i))
            return llm_errf(err, "parameter num_ctx: '%s' is not an integer in [1, %d]", value, 1 << 24);
        p->num_ctx = (int)i, p->set |= LLM_P_NUM_CTX;
    } else if (!strcmp(key, "num_predict")) {
        if (parse_int(value, -2, 1 << 30, &i))
            return llm_errf(err, "parameter num_predict: '%s' is not an integer >= -2", value);
        p->num_predict = (int)i, p->set |= LLM_P_NUM_PREDICT;
    } else if (!strcmp(key, "stop")) {
        if (p->n_stop >= LLM_MAX_STOP)
            return llm_errf(err, "parameter stop: more than %d stop strings", LLM_MAX_STOP);
        if (!value[0] || strlen(value) > 256)
            return llm_errf(err, "parameter stop: a stop string must be 1..256 bytes");
        p->stop[p->n_stop++] = llm_xstrdup(value);
        p->set |= LLM_P_STOP;
    } else {
        return llm_errf(err, "unknown parameter '%s' (known: temperature, top_k, top_p, min_p, "
                             "repeat_penalty, seed, num_ctx, num_predict, stop)", key);
    }
    return 0;
}

void llm_params_free(llm_params *p)
{
    for (int i = 0; i < p->n_stop; i++)
        free(p->stop[i]);
    memset(p, 0, sizeof *p);
}

void llm_manifest_free(llm_manifest *m)
{
    if (!m)
        return;
    free(m->name);
    free(m->template_str);
    free(m->system);
    free(m->source);
    free(m->created);
    llm_params_free(&m->params);
    memset(m, 0, sizeof *m);
}

/* Largest seed written as a JSON number: cJSON prints numbers with 15 significant digits
 * (%1.15g; its round-trip check is approximate), so 16-digit integers would come out rounded,
 * and param_from_json reads numbers below 1e15 back as integers. */
#define JSON_MAX_INT_SEED 999999999999999ull /* 1e15 - 1 */

cJSON *llm_params_to_json(const llm_params *p)
{
    cJSON *o = cJSON_CreateObject();
    if (p->set & LLM_P_TEMPERATURE)
        cJSON_AddNumberToObject(o, "temperature", p->temperature);
    if (p->set & LLM_P_TOP_K)
        cJSON_AddNumberToObject(o, "top_k", p->top_k);
    if (p->set & LLM_P_TOP_P)
        cJSON_AddNumberToObject(o, "top_p", p->top_p);
    if (p->set & LLM_P_MIN_P)
        cJSON_AddNumberToObject(o, "min_p", p->min_p);
    if (p->set & LLM_P_REPEAT_PENALTY)
        cJSON_AddNumberToObject(o, "repeat_penalty", p->repeat_penalty);
    if (p->set & LLM_P_SEED) {
        /* A number, as Ollama's options and params layer have it, while it prints exactly;
         * beyond that a decimal string, so the seed that was set is the one that runs. */
        if (p->seed <= JSON_MAX_INT_SEED) {
            cJSON_AddNumberToObject(o, "seed", (double)p->seed);
        } else {
            char s[32];
            snprintf(s, sizeof s, "%llu", (unsigned long long)p->seed);
            cJSON_AddStringToObject(o, "seed", s);
        }
    }
    if (p->set & LLM_P_NUM_CTX)
        cJSON_AddNumberToObject(o, "num_ctx", p->num_ctx);
    if (p->set & LLM_P_NUM_PREDICT)
        cJSON_AddNumberToObject(o, "num_predict", p->num_predict);
    if (p->set & LLM_P_STOP) {
        cJSON *a = cJSON_AddArrayToObject(o, "stop");
        for (int i = 0; i < p->n_stop; i++)
            cJSON_AddItemToArray(a, cJSON_CreateString(p->stop[i]));
    }
    return o;
}

char *llm_manifest_to_json(const llm_manifest *m)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "schema", 1);
    cJSON_AddStringToObject(root, "name", m->name ? m->name : "");
    cJSON_AddStringToObject(root, "model", m->digest);
    cJSON_AddNumberToObject(root, "size", (double)m->size);
    if (m->template_str)
        cJSON_AddStringToObject(root, "template", m->template_str);
    if (m->system)
        cJSON_AddStringToObject(root, "system", m->system);
    if (m->source)
        cJSON_AddStringToObject(root, "source", m->source);
    if (m->created)
        cJSON_AddStringToObject(root, "created", m->created);
    cJSON_AddItemToObject(root, "parameters", llm_params_to_json(&m->params));
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    if (!s)
        abort(); /* cJSON fails only on allocation */
    return s;
}

static char *opt_string(const cJSON *root, const char *key, int *bad)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v)
        return NULL;
    if (!cJSON_IsString(v)) {
        *bad = 1;
        return NULL;
    }
    return llm_xstrdup(v->valuestring);
}

/* A parameter value from JSON in the spelling llm_params_set parses. */
static int param_from_json(llm_params *p, const cJSON *item, llm_err *err)
{
    char buf[64];
    if (cJSON_IsArray(item)) {
        const cJSON *s;
        cJSON_ArrayForEach(s, item)
        {
            if (!cJSON_IsString(s))
                return llm_errf(err, "parameter %s: array elements must be strings", item->string);
            if (llm_params_set(p, item->string, s->valuestring, err))
                return -1;
        }
        return 0;
    }
    if (cJSON_IsString(item))
        return llm_params_set(p, item->string, item->valuestring, err);
    if (cJSON_IsNumber(item)) {
        double d = item->valuedouble;
        if (d == floor(d) && fabs(d) < 1e15)
            snprintf(buf, sizeof buf, "%.0f", d);
        else
            snprintf(buf, sizeof buf, "%.9g", d);
        return llm_params_set(p, item->string, buf, err);
    }
    return llm_errf(err, "parameter %s: value must be a number, string or array of strings", item->string);
}

static int is_known_param(const char *k)
{
    static const char *const known[] = {"temperature", "top_k", "top_p", "min_p", "repeat_penalty",
                                        "seed", "num_ctx", "num_predict", "stop"};
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (!strcmp(k, known[i]))
            return 1;
    return 0;
}

int llm_params_from_json(llm_params *p, const char *json, size_t len, bool lenient, llm_err *err)
{
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return llm_errf(err, "parameters are not a JSON object");
    }
    const cJSON *it;
    int rc = 0;
    cJSON_ArrayForEach(it, root)
    {
        if (lenient && !is_known_param(it->string))
            continue;
        if ((rc = param_from_json(p, it, err)) != 0)
            break;
    }
    cJSON_Delete(root);
    return rc;
}

int llm_manifest_from_json(llm_manifest *m, const char *json, size_t len, llm_err *err)
{
    memset(m, 0, sizeof *m);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return llm_errf(err, "manifest is not a JSON object");
    }
    int bad = 0;
    const cJSON *schema = cJSON_GetObjectItemCaseSensitive(root, "schema");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(root, "size");
    if (!cJSON_IsNumber(schema) || schema->valuedouble != 1) {
        llm_errf(err, "manifest: unsupported or missing \"schema\" (expected 1)");
        goto fail;
    }
    if (!cJSON_IsString(model) || !llm_digest_valid(model->valuestring, false)) {
        llm_errf(err, "manifest: \"model\" must be \"sha256-<64 lowercase hex>\"");
        goto fail;
    }
    if (!cJSON_IsNumber(size) || size->valuedouble < 0 || size->valuedouble > 9e15) {
        llm_errf(err, "manifest: \"size\" must be a byte count");
        goto fail;
    }
    snprintf(m->digest, sizeof m->digest, "%s", model->valuestring);
    m->size = (uint64_t)size->valuedouble;
    m->name = opt_string(root, "name", &bad);
    m->template_str = opt_string(root, "template", &bad);
    m->system = opt_string(root, "system", &bad);
    m->source = opt_string(root, "source", &bad);
    m->created = opt_string(root, "created", &bad);
    if (bad) {
        llm_errf(err, "manifest: name/template/system/source/created must be strings");
        goto fail;
    }
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(root, "parameters");
    if (params && !cJSON_IsObject(params)) {
        llm_errf(err, "manifest: \"parameters\" must be an object");
        goto fail;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, params)
    {
        if (param_from_json(&m->params, it, err)) {
            llm_err_prefix(err, "manifest");
            goto fail;
        }
    }
    cJSON_Delete(root);
    return 0;
fail:
    cJSON_Delete(root);
    llm_manifest_free(m);
    return -1;
}
