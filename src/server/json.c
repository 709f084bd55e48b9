/*
 * json — checked access to request fields (one at a time, or a table of sampling fields), and
 * the small value formats the APIs share (RFC 3339 times, Go-style durations for keep_alive,
 * "stop" lists).
 *
 * Request bodies are untrusted: every field is type- and range-checked here, and an error
 * names the field so the client learns what to fix (the handlers answer 400 with it).
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/server.h"

static const cJSON *field(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static const char *dot(const char *ctx) { return ctx && *ctx ? "." : ""; }

int json_str(const cJSON *o, const char *key, const char *ctx, const char **out, llm_err *err)
{
    const cJSON *v = field(o, key);
    if (!v)
        return 0;
    if (!cJSON_IsString(v))
        return llm_errf(err, "'%s%s%s' must be a string", ctx ? ctx : "", dot(ctx), key);
    *out = v->valuestring;
    return 0;
}

int json_num(const cJSON *o, const char *key, const char *ctx, double lo, double hi, double *out, llm_err *err)
{
    const cJSON *v = field(o, key);
    if (!v)
        return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return llm_errf(err, "'%s%s%s' must be a number", ctx ? ctx : "", dot(ctx), key);
    if (v->valuedouble < lo || v->valuedouble > hi)
        return llm_errf(err, "'%s%s%s' = %g is out of range [%g, %g]", ctx ? ctx : "", dot(ctx), key,
                        v->valuedouble, lo, hi);
    *out = v->valuedouble;
    return 0;
}

int json_int(const cJSON *o, const char *key, const char *ctx, double lo, double hi, int *out, llm_err *err)
{
    double d = 0;
    const cJSON *v = field(o, key);
    if (!v)
        return 0;
    if (json_num(o, key, ctx, lo, hi, &d, err))
        return -1;
    if (d != floor(d))
        return llm_errf(err, "'%s%s%s' must be an integer", ctx ? ctx : "", dot(ctx), key);
    *out = (int)d;
    return 0;
}

int json_bool(const cJSON *o, const char *key, const char *ctx, bool *out, llm_err *err)
{
    const cJSON *v = field(o, key);
    if (!v)
        return 0;
    if (!cJSON_IsBool(v))
        return llm_errf(err, "'%s%s%s' must be true or false", ctx ? ctx : "", dot(ctx), key);
    *out = cJSON_IsTrue(v);
    return 0;
}

int json_fields(const cJSON *o, const char *ctx, const json_field *f, size_t n, gen_req *g, llm_err *err)
{
    for (size_t i = 0; i < n; i++) {
        void *dst = (char *)g + f[i].offset;
        double d = 0;
        switch (f[i].kind) {
        case JSON_INT:
            if (json_int(o, f[i].key, ctx, f[i].lo, f[i].hi, dst, err))
                return -1;
            break;
        case JSON_FLOAT:
            d = *(float *)dst;
            if (json_num(o, f[i].key, ctx, f[i].lo, f[i].hi, &d, err))
                return -1;
            *(float *)dst = (float)d;
            break;
        case JSON_SEED:
            d = -1;
            if (json_num(o, f[i].key, ctx, f[i].lo, f[i].hi, &d, err))
                return -1;
            if (d >= 0)
                *(uint64_t *)dst = (uint64_t)d;
            break;
        }
    }
    return 0;
}

#define MAX_STOPS 16

static void add_stop(gen_req *g, const char *s)
{
    g->stops = llm_xrealloc(g->stops, (size_t)(g->sp.n_stop + 1) * sizeof *g->stops);
    g->stops[g->sp.n_stop++] = llm_xstrdup(s);
    g->sp.stop = (const char *const *)g->stops;
}

int json_stops(const cJSON *v, const char *ctx, gen_req *g, llm_err *err)
{
    if (!v || cJSON_IsNull(v))
        return 0;
    if (cJSON_IsString(v)) {
        if (*v->valuestring)
            add_stop(g, v->valuestring);
        return 0;
    }
    if (!cJSON_IsArray(v))
        return llm_errf(err, "'%s' must be a string or an array of strings", ctx);
    if (cJSON_GetArraySize(v) > MAX_STOPS)
        return llm_errf(err, "'%s' has more than %d entries", ctx, MAX_STOPS);
    const cJSON *e;
    cJSON_ArrayForEach(e, v)
    {
        if (!cJSON_IsString(e))
            return llm_errf(err, "'%s' must contain only strings", ctx);
        if (*e->valuestring)
            add_stop(g, e->valuestring);
    }
    return 0;
}

void format_time_rfc3339(char *buf, size_t n, const struct timespec *ts)
{
    struct tm tm;
    time_t t = ts->tv_sec;
    gmtime_r(&t, &tm);
    char date[40];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, n, "%s.%09ldZ", date, ts->tv_nsec);
}

/* A Go time.Duration string: optional sign, then one or more <number><unit>. */
static int parse_go_duration(const char *s, double *out)
{
    static const struct { const char *unit; double sec; } U[] = {
        {"ns", 1e-9}, {"us", 1e-6}, {"\xc2\xb5s", 1e-6}, {"ms", 1e-3}, {"s", 1}, {"m", 60}, {"h", 3600},
    };
    double sign = 1, total = 0;
    if (*s == '-' || *s == '+')
        sign = *s++ == '-' ? -1 : 1;
    if (!*s)
        return -1;
    if (!strcmp(s, "0")) {
        *out = 0;
        return 0;
    }
    while (*s) {
        char *end;
        if (!((*s >= '0' && *s <= '9') || *s == '.'))
            return -1;
        double v = strtod(s, &end);
        if (end == s)
            return -1;
        s = end;
        size_t best = 0;
        double mul = 0;
        for (size_t i = 0; i < sizeof U / sizeof *U; i++) {
            size_t l = strlen(U[i].unit);
            if (!strncmp(s, U[i].unit, l) && l > best) {
                best = l;
                mul = U[i].sec;
            }
        }
        if (!best)
            return -1;
        total += v * mul;
        s += best;
    }
    *out = sign * total;
    return 0;
}

/* Beyond ~30 years is forever; this also keeps the value within time_t arithmetic. */
static double clamp_keep_alive(double s)
{
    return s > 1e9 ? -1 : s;
}

int parse_keep_alive(const cJSON *v, double *seconds, llm_err *err)
{
    if (!v || cJSON_IsNull(v))
        return 0;
    if (cJSON_IsNumber(v)) {
        if (!isfinite(v->valuedouble))
            return llm_errf(err, "'keep_alive' must be a finite number of seconds");
        *seconds = clamp_keep_alive(v->valuedouble);
        return 0;
    }
    if (!cJSON_IsString(v))
        return llm_errf(err, "'keep_alive' must be a number of seconds or a duration such as \"5m\"");
    const char *s = v->valuestring;
    char *end;
    double d = strtod(s, &end);
    if (*s && end != s && !*end && isfinite(d)) { /* a plain number in a string: seconds */
        *seconds = clamp_keep_alive(d);
        return 0;
    }
    if (parse_go_duration(s, &d))
        return llm_errf(err, "'keep_alive' = \"%.64s\" is not a duration (examples: \"5m\", \"1h30m\", \"-1\")", s);
    *seconds = isfinite(d) ? clamp_keep_alive(d) : -1;
    return 0;
}
