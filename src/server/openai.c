/*
 * openai — the OpenAI-compatible endpoints: POST /v1/chat/completions, POST /v1/completions,
 * GET /v1/models and GET /v1/models/{id}, as the official client libraries call them.
 *
 * Request fields follow the OpenAI API reference; the ones llmap cannot honour (n > 1,
 * logprobs, tools with tool_choice "required", JSON response formats) are refused with a 400
 * rather than silently ignored, so a client never gets an answer that looks right but is not.
 * This file holds what is OpenAI's own: the request's field names and ranges, and the answer's
 * wire format (server-sent events ending in "data: [DONE]" while streaming, else one object);
 * gen_serve (request.c) does the rest.
 */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

#define BAD(c, ...) reply_error(c, true, MHD_HTTP_BAD_REQUEST, __VA_ARGS__)

/* ---- the answer ---------------------------------------------------------------------------- */

/* OpenAI has no "cancel": a cancelled stream only ever reaches a client that is gone. */
static const char *finish_reason(const gen_result *r)
{
    return !strcmp(gen_done_reason(r), "length") ? "length" : "stop";
}

static cJSON *usage(const gen_result *r)
{
    cJSON *u = cJSON_CreateObject();
    int prompt = r->st.prompt_tokens + r->st.cached_tokens;
    cJSON_AddNumberToObject(u, "prompt_tokens", prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", r->st.gen_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", prompt + r->st.gen_tokens);
    cJSON *d = cJSON_AddObjectToObject(u, "prompt_tokens_details");
    cJSON_AddNumberToObject(d, "cached_tokens", r->st.cached_tokens);
    return u;
}

/* chunk: a streamed piece; otherwise the whole answer. text == NULL: final chunk (finish_reason). */
static cJSON *answer_object(const gen_req *g, const gen_result *r, const char *text, size_t len, bool chunk, bool role)
{
    bool chat = g->api == API_OPENAI_CHAT;
    char id[64];
    snprintf(id, sizeof id, "%s-%" PRIu64 "%" PRIx64, chat ? "chatcmpl" : "cmpl", r->seq, (uint64_t)r->created);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "object", chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion");
    cJSON_AddNumberToObject(o, "created", (double)r->created);
    cJSON_AddStringToObject(o, "model", g->model_name);
    cJSON_AddStringToObject(o, "system_fingerprint", "fp_llmap");
    cJSON *choices = cJSON_AddArrayToObject(o, "choices");
    cJSON *c = cJSON_CreateObject();
    cJSON_AddItemToArray(choices, c);
    cJSON_AddNumberToObject(c, "index", 0);
    char *t = text ? llm_xstrndup(text, len) : NULL;
    if (chat) {
        cJSON *m = cJSON_AddObjectToObject(c, chunk ? "delta" : "message");
        if (role || !chunk)
            cJSON_AddStringToObject(m, "role", "assistant");
        if (t || !chunk)
            cJSON_AddStringToObject(m, "content", t ? t : "");
    } else {
        cJSON_AddStringToObject(c, "text", t ? t : "");
    }
    free(t);
    cJSON_AddNullToObject(c, "logprobs");
    if (text && chunk)
        cJSON_AddNullToObject(c, "finish_reason");
    else
        cJSON_AddStringToObject(c, "finish_reason", finish_reason(r));
    if (!chunk)
        cJSON_AddItemToObject(o, "usage", usage(r));
    else if (g->include_usage)
        cJSON_AddNullToObject(o, "usage");
    return o;
}

static void put_event(llm_buf *out, cJSON *o) { gen_put(out, "data: ", o, "\n\n"); }

/* Chat streams start with the role. */
static void stream_begin(const gen_req *g, const gen_result *r, llm_buf *out)
{
    if (g->api == API_OPENAI_CHAT)
        put_event(out, answer_object(g, r, "", 0, true, true));
}

static void stream_piece(const gen_req *g, const gen_result *r, const char *text, size_t len, llm_buf *out)
{
    put_event(out, answer_object(g, r, text, len, true, false));
}

/* The finish reason, then (stream_options.include_usage) a chunk with only the usage, then
 * [DONE]; an error is one event of its own. */
static void stream_end(const gen_req *g, const gen_result *r, llm_buf *out)
{
    if (r->rc) {
        cJSON *o = cJSON_CreateObject();
        cJSON *e = cJSON_AddObjectToObject(o, "error");
        cJSON_AddStringToObject(e, "message", r->err);
        cJSON_AddStringToObject(e, "type", "api_error");
        put_event(out, o);
        return;
    }
    put_event(out, answer_object(g, r, NULL, 0, true, false));
    if (g->include_usage) {
        cJSON *o = answer_object(g, r, NULL, 0, true, false);
        cJSON_ReplaceItemInObject(o, "choices", cJSON_CreateArray());
        cJSON_ReplaceItemInObject(o, "usage", usage(r));
        put_event(out, o);
    }
    llm_buf_puts(out, "data: [DONE]\n\n");
}

static cJSON *whole(const gen_req *g, const gen_result *r, const char *text, size_t len)
{
    return answer_object(g, r, text, len, false, true);
}

static const gen_wire OPENAI = {
    .openai_errors = true,
    .stream_type = "text/event-stream",
    .stream_begin = stream_begin,
    .stream_piece = stream_piece,
    .stream_end = stream_end,
    .whole = whole,
};

/* ---- the request --------------------------------------------------------------------------- */

/* Sampling fields common to both endpoints (max_completion_tokens is the newer name). */
static const json_field SAMPLING[] = {
    GEN_FIELD("max_tokens", 0, 1 << 24, sp.num_predict),
    GEN_FIELD("max_completion_tokens", 0, 1 << 24, sp.num_predict),
    GEN_FIELD("temperature", 0, 2, sp.temperature),
    GEN_FIELD("top_p", 0, 1, sp.top_p),
    GEN_FIELD("frequency_penalty", -2, 2, sp.frequency_penalty),
    GEN_FIELD("presence_penalty", -2, 2, sp.presence_penalty),
    GEN_FIELD("seed", -9007199254740992.0, 9007199254740992.0, sp.seed),
};

static int parse_sampling(const cJSON *body, gen_req *g, llm_err *err)
{
    int n = 1;
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(body, "stream_options");
    const cJSON *lp = cJSON_GetObjectItemCaseSensitive(body, "logprobs");
    if (json_bool(body, "stream", NULL, &g->stream, err) ||
        json_fields(body, NULL, SAMPLING, sizeof SAMPLING / sizeof *SAMPLING, g, err) ||
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

/* "model", with the model's stored defaults applied first so the request's fields override them. */
static int parse_model(llmap_server *s, const cJSON *body, gen_req *g, llm_err *err)
{
    const char *model = NULL;
    if (json_str(body, "model", NULL, &model, err))
        return -1;
    if (model) {
        model_apply_defaults(server_options(s), model, g);
        g->model_name = llm_xstrdup(model);
    }
    return 0;
}

/* What OpenAI's requests start with: OpenAI answers whole unless asked to stream. */
static void init_request(gen_req *g, llmap_server *s, gen_api api)
{
    gen_req_init(g, server_options(s), api, &OPENAI);
    g->stream = false;
}

int openai_chat(llmap_server *s, struct MHD_Connection *c, const char *url, cJSON *body, double t0)
{
    (void)url;
    gen_req g;
    init_request(&g, s, API_OPENAI_CHAT);
    llmap_chat_msg *msgs = NULL;
    char **owned = NULL;
    size_t n = 0;
    llm_err err;
    int ret;
    if (parse_model(s, body, &g, &err) || parse_sampling(body, &g, &err) || check_response_format(body, &err) ||
        parse_messages(body, true, &msgs, &n, &owned, &err))
        ret = BAD(c, "%s", err.msg);
    else if (!g.model_name)
        ret = BAD(c, "missing 'model'");
    else if (n == 0)
        ret = BAD(c, "'messages' must not be empty");
    else
        ret = gen_serve(s, c, t0, &g, msgs, n, NULL); /* takes over g */
    gen_req_free(&g);
    free_messages(msgs, n, owned);
    return ret;
}

int openai_completions(llmap_server *s, struct MHD_Connection *c, const char *url, cJSON *body, double t0)
{
    (void)url;
    gen_req g;
    init_request(&g, s, API_OPENAI_COMPLETION);
    g.sp.num_predict = 16; /* the OpenAI default max_tokens for completions */
    const char *suffix = NULL;
    bool echo = false;
    llm_err err;
    /* "prompt": a string, or an array holding exactly one string. */
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(body, "prompt");
    if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1)
        p = cJSON_GetArrayItem(p, 0);
    int ret;
    if (parse_model(s, body, &g, &err) || parse_sampling(body, &g, &err) ||
        json_str(body, "suffix", NULL, &suffix, &err) || json_bool(body, "echo", NULL, &echo, &err))
        ret = BAD(c, "%s", err.msg);
    else if (!g.model_name)
        ret = BAD(c, "missing 'model'");
    else if (!p || cJSON_IsNull(p))
        ret = BAD(c, "missing 'prompt'");
    else if (!cJSON_IsString(p))
        ret = BAD(c, "'prompt' must be a string (or an array of one string)");
    else if (echo || (suffix && *suffix))
        ret = BAD(c, "'%s' is not supported by llmap", echo ? "echo" : "suffix");
    else /* completions are raw: no chat template */
        return gen_serve(s, c, t0, &g, NULL, 0, p->valuestring);
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
