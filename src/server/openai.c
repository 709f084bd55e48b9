/*
 * openai — the OpenAI-compatible endpoints: POST /v1/chat/completions, POST /v1/completions,
 * GET /v1/models and GET /v1/models/{id}, as the official client libraries call them.
 *
 * Request fields follow the OpenAI API reference; the ones llmap cannot honour (n > 1,
 * logprobs, tools with tool_choice "required", JSON response formats) are refused with a 400
 * rather than silently ignored, so a client never gets an answer that looks right but is not.
 */
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

#define BAD(c, ...) reply_error(c, true, MHD_HTTP_BAD_REQUEST, __VA_ARGS__)

/* Sampling fields common to both endpoints. */
static int parse_sampling(const cJSON *body, gen_req *g, llm_err *err)
{
    llmap_sampling *sp = &g->sp;
    double t = sp->temperature, tp = sp->top_p, fp = sp->frequency_penalty, pp = sp->presence_penalty, seed = -1;
    int n = 1, max_tokens = sp->num_predict;
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(body, "stream_options");
    const cJSON *lp = cJSON_GetObjectItemCaseSensitive(body, "logprobs");
    if (json_bool(body, "stream", NULL, &g->stream, err) ||
        json_int(body, "max_tokens", NULL, 0, 1 << 24, &max_tokens, err) ||
        json_int(body, "max_completion_tokens", NULL, 0, 1 << 24, &max_tokens, err) ||
        json_num(body, "temperature", NULL, 0, 2, &t, err) || json_num(body, "top_p", NULL, 0, 1, &tp, err) ||
        json_num(body, "frequency_penalty", NULL, -2, 2, &fp, err) ||
        json_num(body, "presence_penalty", NULL, -2, 2, &pp, err) ||
        json_num(body, "seed", NULL, -9007199254740992.0, 9007199254740992.0, &seed, err) ||
        json_int(body, "n", NULL, 1, 128, &n, err) ||
        json_stops(cJSON_GetObjectItemCaseSensitive(body, "stop"), "stop", g, err))
        return -1;
    if (so && !cJSON_IsNull(so)) {
        if (!cJSON_IsObject(so))
            return llm_errf(err, "'stream_options' must be an object");
        if (json_bool(so, "include_usage", "stream_options", &g->include_usage, err))
            return -1;
    }
    if (n != 1)
        return llm_errf(err, "'n' = %d: llmap generates one choice per request", n);
    if (lp && (cJSON_IsTrue(lp) || cJSON_IsNumber(lp)))
        return llm_errf(err, "'logprobs' is not supported by llmap");
    sp->num_predict = max_tokens;
    sp->temperature = (float)t, sp->top_p = (float)tp;
    sp->frequency_penalty = (float)fp, sp->presence_penalty = (float)pp;
    if (seed >= 0)
        sp->seed = (uint64_t)seed;
    return 0;
}

static int check_response_format(const cJSON *body, llm_err *err)
{
    const cJSON *rf = cJSON_GetObjectItemCaseSensitive(body, "response_format");
    if (!rf || cJSON_IsNull(rf))
        return 0;
    const cJSON *type = cJSON_IsObject(rf) ? cJSON_GetObjectItemCaseSensitive(rf, "type") : NULL;
    if (!cJSON_IsString(type))
        return llm_errf(err, "'response_format' must be an object with a string 'type'");
    if (strcmp(type->valuestring, "text"))
        return llm_errf(err, "'response_format.type' = \"%.32s\" is not supported by llmap (only \"text\")",
                        type->valuestring);
    return 0;
}

/* The model's stored defaults go first so the request's fields override them. Returns 0. */
static int apply_defaults(llmap_server *s, const char *model, gen_req *g)
{
    if (model)
        model_apply_defaults(server_options(s), model, g);
    return 0;
}

int openai_chat(llmap_server *s, struct MHD_Connection *c, const char *url, cJSON *body, double t0)
{
    (void)url;
    gen_req g;
    gen_req_init(&g, server_options(s));
    g.api = API_OPENAI_CHAT;
    g.stream = false; /* OpenAI's default, unlike Ollama's */
    const char *model = NULL;
    llmap_chat_msg *msgs = NULL;
    char **owned = NULL;
    size_t n = 0;
    llm_err err;
    int ret;
    if (json_str(body, "model", NULL, &model, &err) || apply_defaults(s, model, &g) || parse_sampling(body, &g, &err) ||
        check_response_format(body, &err) || parse_messages(body, true, &msgs, &n, &owned, &err)) {
        ret = BAD(c, "%s", err.msg);
        goto out;
    }
    if (!model) {
        ret = BAD(c, "missing 'model'");
        goto out;
    }
    if (n == 0) {
        ret = BAD(c, "'messages' must not be empty");
        goto out;
    }
    g.model_name = llm_xstrdup(model);
    double load_s;
    srv_model *m = acquire_model(s, c, true, model, &load_s, &ret);
    if (!m)
        goto out;
    if (render_chat(s, c, true, m, msgs, n, &g, &ret))
        goto out;
    free_messages(msgs, n, owned);
    return gen_respond(s, c, m, load_s, t0, &g);
out:
    free_messages(msgs, n, owned);
    gen_req_free(&g);
    return ret;
}

int openai_completions(llmap_server *s, struct MHD_Connection *c, const char *url, cJSON *body, double t0)
{
    (void)url;
    gen_req g;
    gen_req_init(&g, server_options(s));
    g.api = API_OPENAI_COMPLETION;
    g.stream = false;
    g.sp.num_predict = 16; /* the OpenAI default max_tokens for completions */
    const char *model = NULL, *suffix = NULL;
    bool echo = false;
    llm_err err;
    int ret;
    if (json_str(body, "model", NULL, &model, &err) || apply_defaults(s, model, &g) || parse_sampling(body, &g, &err) ||
        json_str(body, "suffix", NULL, &suffix, &err) || json_bool(body, "echo", NULL, &echo, &err)) {
        ret = BAD(c, "%s", err.msg);
        goto out;
    }
    if (!model) {
        ret = BAD(c, "missing 'model'");
        goto out;
    }
    /* "prompt": a string, or an array holding exactly one string. */
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(body, "prompt");
    if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1)
        p = cJSON_GetArrayItem(p, 0);
    if (!p || cJSON_IsNull(p)) {
        ret = BAD(c, "missing 'prompt'");
        goto out;
    }
    if (!cJSON_IsString(p)) {
        ret = BAD(c, "'prompt' must be a string (or an array of one string)");
        goto out;
    }
    if (echo || (suffix && *suffix)) {
        ret = BAD(c, "'%s' is not supported by llmap", echo ? "echo" : "suffix");
        goto out;
    }
    g.model_name = llm_xstrdup(model);
    double load_s;
    srv_model *m = acquire_model(s, c, true, model, &load_s, &ret);
    if (!m)
        goto out;
    g.prompt = llm_xstrdup(p->valuestring); /* completions are raw: no chat template */
    return gen_respond(s, c, m, load_s, t0, &g);
out:
    gen_req_free(&g);
    return ret;
}

static cJSON *model_object(const model_meta *m)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", m->name);
    cJSON_AddStringToObject(o, "object", "model");
    cJSON_AddNumberToObject(o, "created", (double)m->mtime);
    cJSON_AddStringToObject(o, "owned_by", "library");
    return o;
}

int openai_models(llmap_server *s, struct MHD_Connection *c, const char *url, cJSON *body, double t0)
{
    (void)body, (void)t0;
    const char *prefix = "/v1/models/";
    if (!strncmp(url, prefix, strlen(prefix))) {
        const char *id = url + strlen(prefix);
        char *path, *canon;
        int status;
        llm_err err;
        if (models_resolve(server_options(s), id, &path, &canon, &status, &err))
            return reply_error(c, true, (unsigned)status, "%s", err.msg);
        model_meta m;
        int rc = model_meta_read(server_metas(s), path, canon, &m, &err);
        free(path);
        free(canon);
        if (rc)
            return reply_error(c, true, MHD_HTTP_INTERNAL_SERVER_ERROR, "%s", err.msg);
        cJSON *o = model_object(&m);
        model_meta_free(&m);
        return reply_json(c, MHD_HTTP_OK, o);
    }
    model_meta *v;
    size_t n;
    llm_err err;
    if (models_list(server_options(s), server_metas(s), &v, &n, &err))
        return reply_error(c, true, MHD_HTTP_INTERNAL_SERVER_ERROR, "%s", err.msg);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(o, "data");
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(data, model_object(&v[i]));
    model_metas_free(v, n);
    return reply_json(c, MHD_HTTP_OK, o);
}
