/*
 * ollama — the Ollama API (docs/api.md of ollama/ollama): /api/generate, /api/chat,
 * /api/tags, /api/show, /api/ps, /api/version.
 *
 * Each generation handler validates the whole request first (400 naming the bad field), then
 * hands it to gen_serve (request.c), which resolves the model (400 for names that are not
 * names, 404 for unknown ones), renders the prompt with the model's chat template and runs it.
 * This file holds what is Ollama's own: the field names and ranges of a request, and the
 * answer's wire format (NDJSON lines while streaming, else one object).
 */
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/server.h"

#define BAD(c, ...) reply_error(c, false, MHD_HTTP_BAD_REQUEST, __VA_ARGS__)

/* ---- the answer ---------------------------------------------------------------------------- */

/* What every answer line has: the model, the time, the text, whether it is the last line. */
static cJSON *answer_line(const gen_req *g, const char *text, size_t len, bool done)
{
    cJSON *o = cJSON_CreateObject();
    struct timespec ts;
    char when[64];
    clock_gettime(CLOCK_REALTIME, &ts);
    format_time_rfc3339(when, sizeof when, &ts);
    cJSON_AddStringToObject(o, "model", g->model_name);
    cJSON_AddStringToObject(o, "created_at", when);
    char *t = llm_xstrndup(text, len);
    if (g->api == API_OLLAMA_CHAT) {
        cJSON *m = cJSON_AddObjectToObject(o, "message");
        cJSON_AddStringToObject(m, "role", "assistant");
        cJSON_AddStringToObject(m, "content", t);
    } else {
        cJSON_AddStringToObject(o, "response", t);
    }
    free(t);
    cJSON_AddBoolToObject(o, "done", done);
    return o;
}

static double ns(double seconds) { return (double)(int64_t)(seconds * 1e9); }

/* The last line (or the whole answer): why it stopped, durations in nanoseconds, token counts. */
static cJSON *final_line(const gen_req *g, const gen_result *r, const char *text, size_t len)
{
    cJSON *o = answer_line(g, text, len, true);
    const llmap_stats *st = &r->st;
    cJSON_AddStringToObject(o, "done_reason", gen_done_reason(r));
    cJSON_AddNumberToObject(o, "total_duration", ns(r->total_seconds));
    cJSON_AddNumberToObject(o, "load_duration", ns(r->load_seconds));
    cJSON_AddNumberToObject(o, "prompt_eval_count", st->prompt_tokens + st->cached_tokens);
    cJSON_AddNumberToObject(o, "prompt_eval_duration", ns(st->prompt_seconds));
    cJSON_AddNumberToObject(o, "eval_count", st->gen_tokens);
    cJSON_AddNumberToObject(o, "eval_duration", ns(st->gen_seconds));
    return o;
}

static void stream_piece(const gen_req *g, const gen_result *r, const char *text, size_t len, llm_buf *out)
{
    (void)r;
    gen_put(out, "", answer_line(g, text, len, false), "\n");
}

static void stream_end(const gen_req *g, const gen_result *r, llm_buf *out)
{
    if (r->rc) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "error", r->err);
        gen_put(out, "", o, "\n");
    } else {
        gen_put(out, "", final_line(g, r, "", 0), "\n");
    }
}

/* An empty prompt only loads the model (or unloads it with keep_alive 0), as in Ollama. */
static int load_only(llmap_server *s, struct MHD_Connection *c, srv_model *m, const gen_req *g)
{
    registry *r = server_registry(s);
    registry_release(r, m, g->keep_alive);
    bool unload = g->keep_alive == 0;
    if (unload)
        registry_unload(r, g->model_name);
    cJSON *o = answer_line(g, "", 0, true);
    cJSON_AddStringToObject(o, "done_reason", unload ? "unload" : "load");
    return reply_json(c, MHD_HTTP_OK, o);
}

static const gen_wire OLLAMA = {
    .openai_errors = false,
    .stream_type = "application/x-ndjson",
    .stream_piece = stream_piece,
    .stream_end = stream_end,
    .whole = final_line,
    .load_only = load_only,
};

/* ---- the request --------------------------------------------------------------------------- */

/* The "options" object (Modelfile parameters). Unknown keys are ignored, as Ollama does. */
static const json_field OPTIONS[] = {
    GEN_FIELD("num_ctx", 0, 1 << 20, n_ctx),
    GEN_FIELD("num_predict", -2, 1 << 24, sp.num_predict),
    GEN_FIELD("temperature", 0, 100, sp.temperature),
    GEN_FIELD("top_k", 0, 1 << 20, sp.top_k),
    GEN_FIELD("top_p", 0, 1, sp.top_p),
    GEN_FIELD("min_p", 0, 1, sp.min_p),
    GEN_FIELD("repeat_penalty", 0, 100, sp.repeat_penalty),
    GEN_FIELD("repeat_last_n", -1, 1 << 20, sp.repeat_last_n),
    GEN_FIELD("frequency_penalty", -100, 100, sp.frequency_penalty),
    GEN_FIELD("presence_penalty", -100, 100, sp.presence_penalty),
    GEN_FIELD("seed", -1, 9007199254740992.0, sp.seed),
};

static int parse_options(const cJSON *body, gen_req *g, llm_err *err)
{
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(body, "options");
    if (!o || cJSON_IsNull(o))
        return 0;
    if (!cJSON_IsObject(o))
        return llm_errf(err, "'options' must be an object");
    if (json_fields(o, "options", OPTIONS, sizeof OPTIONS / sizeof *OPTIONS, g, err) ||
        json_stops(cJSON_GetObjectItemCaseSensitive(o, "stop"), "options.stop", g, err))
        return -1;
    llmap_sampling *sp = &g->sp;
    if (sp->num_predict == -2) /* Ollama: "fill the context" — the engine's "until full" */
        sp->num_predict = -1;
    if (sp->repeat_last_n == -1) /* Ollama: "the whole context" */
        sp->repeat_last_n = g->n_ctx > 0 ? g->n_ctx : 4096;
    return 0;
}

/* Fields shared by /api/generate and /api/chat. */
static int parse_common(const server_opts *o, const cJSON *body, gen_req *g, llm_err *err)
{
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(body, "format");
    const char *model = NULL;
    if (json_str(body, "model", NULL, &model, err))
        return -1;
    if (model) /* the model's own defaults first, so that the request's fields override them */
        model_apply_defaults(o, model, g);
    if (json_bool(body, "stream", NULL, &g->stream, err) ||
        parse_keep_alive(cJSON_GetObjectItemCaseSensitive(body, "keep_alive"), &g->keep_alive, err) ||
        parse_options(body, g, err))
        return -1;
    if (!model)
        return llm_errf(err, "missing 'model'");
    if (fmt && !cJSON_IsNull(fmt) && !(cJSON_IsString(fmt) && !*fmt->valuestring))
        return llm_errf(err, "'format' (structured output) is not supported by llmap");
    g->model_name = llm_xstrdup(model);
    return 0;
}

int ollama_generate(llmap_server *s, struct MHD_Connection *c, const char *url, cJSON *body, double t0)
{
    (void)url;
    gen_req g;
    gen_req_init(&g, server_options(s), API_OLLAMA_GENERATE, &OLLAMA);
    const char *prompt = "", *system = NULL, *suffix = NULL, *tmpl = NULL;
    bool raw = false;
    llm_err err;
    if (parse_common(server_options(s), body, &g, &err) || json_str(body, "prompt", NULL, &prompt, &err) ||
        json_str(body, "system", NULL, &system, &err) || json_str(body, "suffix", NULL, &suffix, &err) ||
        json_str(body, "template", NULL, &tmpl, &err) || json_bool(body, "raw", NULL, &raw, &err)) {
        gen_req_free(&g);
        return BAD(c, "%s", err.msg);
    }
    if (has_images(body) || (suffix && *suffix)) {
        gen_req_free(&g);
        return BAD(c, "%s are not supported by llmap", has_images(body) ? "images" : "suffix (fill-in-the-middle) prompts");
    }
    if (!*prompt) /* load (or unload) only */
        return gen_serve(s, c, t0, &g, NULL, 0, NULL);
    if (raw)
        return gen_serve(s, c, t0, &g, NULL, 0, prompt);
    /* Ollama's per-request "template" (Go template syntax) is ignored: the model's own chat
     * template renders the system + user turn. */
    llmap_chat_msg msgs[2];
    size_t n = 0;
    if (!system)
        system = g.system_default;
    if (system && *system)
        msgs[n++] = (llmap_chat_msg){"system", system};
    msgs[n++] = (llmap_chat_msg){"user", prompt};
    return gen_serve(s, c, t0, &g, msgs, n, NULL);
}

int ollama_chat(llmap_server *s, struct MHD_Connection *c, const char *url, cJSON *body, double t0)
{
    (void)url;
    gen_req g;
    gen_req_init(&g, server_options(s), API_OLLAMA_CHAT, &OLLAMA);
    llmap_chat_msg *msgs = NULL;
    char **owned = NULL;
    size_t n = 0;
    llm_err err;
    int ret;
    if (parse_common(server_options(s), body, &g, &err) || parse_messages(body, false, &msgs, &n, &owned, &err)) {
        gen_req_free(&g);
        ret = BAD(c, "%s", err.msg);
    } else {
        ret = gen_serve(s, c, t0, &g, msgs, n, NULL); /* no messages: load only */
    }
    free_messages(msgs, n, owned);
    return ret;
}

static cJSON *tag_json(const model_meta *m)
{
    cJSON *o = cJSON_CreateObject();
    struct timespec ts = {.tv_sec = m->mtime};
    char when[64];
    format_time_rfc3339(when, sizeof when, &ts);
    cJSON_AddStringToObject(o, "name", m->name);
    cJSON_AddStringToObject(o, "model", m->name);
    cJSON_AddStringToObject(o, "modified_at", when);
    cJSON_AddNumberToObject(o, "size", (double)m->file_size);
    /* Ollama's digest is the bare hex of the manifest's sha256. */
    const char *dg = m->digest ? m->digest : "";
    cJSON_AddStringToObject(o, "digest", !strncmp(dg, "sha256-", 7) ? dg + 7 : dg);
    cJSON_AddItemToObject(o, "details", model_details_json(m));
    return o;
}

int ollama_tags(llmap_server *s, struct MHD_Connection *c, const char *url, cJSON *body, double t0)
{
    (void)url, (void)body, (void)t0;
    model_meta *v;
    size_t n;
    llm_err err;
    if (models_list(server_options(s), server_metas(s), &v, &n, &err))
        return reply_error(c, false, MHD_HTTP_INTERNAL_SERVER_ERROR, "%s", err.msg);
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(o, "models");
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(arr, tag_json(&v[i]));
    model_metas_free(v, n);
    return reply_json(c, MHD_HTTP_OK, o);
}

static void add_arch_u32(cJSON *info, const model_meta *m, const char *key, uint32_t v)
{
    char full[256];
    snprintf(full, sizeof full, "%s.%s", m->arch, key);
    cJSON_AddNumberToObject(info, full, v);
}

int ollama_show(llmap_server *s, struct MHD_Connection *c, const char *url, cJSON *body, double t0)
{
    (void)url, (void)t0;
    const char *name = NULL;
    llm_err err;
    if (json_str(body, "model", NULL, &name, &err) || (!name && json_str(body, "name", NULL, &name, &err)))
        return BAD(c, "%s", err.msg);
    if (!name)
        return BAD(c, "missing 'model'");
    char *path, *canon;
    int status;
    if (models_resolve(server_options(s), name, &path, &canon, &status, &err))
        return reply_error(c, false, (unsigned)status, "%s", err.msg);
    model_meta m;
    int rc = model_meta_read(server_metas(s), path, canon, &m, &err);
    free(path);
    free(canon);
    if (rc)
        return reply_error(c, false, MHD_HTTP_INTERNAL_SERVER_ERROR, "%s", err.msg);
    cJSON *o = cJSON_CreateObject();
    char modelfile[2048], when[64];
    snprintf(modelfile, sizeof modelfile, "# Modelfile generated by llmap\nFROM %s\n", m.path);
    struct timespec ts = {.tv_sec = m.mtime};
    format_time_rfc3339(when, sizeof when, &ts);
    cJSON_AddStringToObject(o, "license", "");
    cJSON_AddStringToObject(o, "modelfile", modelfile);
    cJSON_AddStringToObject(o, "parameters", "");
    cJSON_AddStringToObject(o, "template", m.chat_template ? m.chat_template : "");
    cJSON_AddItemToObject(o, "details", model_details_json(&m));
    cJSON *info = cJSON_AddObjectToObject(o, "model_info");
    cJSON_AddStringToObject(info, "general.architecture", m.arch);
    if (m.general_name)
        cJSON_AddStringToObject(info, "general.name", m.general_name);
    cJSON_AddNumberToObject(info, "general.parameter_count", (double)m.n_params);
    add_arch_u32(info, &m, "context_length", m.ctx_len);
    add_arch_u32(info, &m, "embedding_length", m.n_embd);
    add_arch_u32(info, &m, "block_count", m.n_layer);
    add_arch_u32(info, &m, "attention.head_count", m.n_head);
    add_arch_u32(info, &m, "attention.head_count_kv", m.n_head_kv);
    add_arch_u32(info, &m, "vocab_size", m.n_vocab);
    cJSON *caps = cJSON_AddArrayToObject(o, "capabilities");
    cJSON_AddItemToArray(caps, cJSON_CreateString("completion"));
    cJSON_AddStringToObject(o, "modified_at", when);
    model_meta_free(&m);
    return reply_json(c, MHD_HTTP_OK, o);
}

int ollama_ps(llmap_server *s, struct MHD_Connection *c, const char *url, cJSON *body, double t0)
{
    (void)url, (void)body, (void)t0;
    return reply_json(c, MHD_HTTP_OK, registry_ps_json(server_registry(s)));
}

int ollama_version(llmap_server *s, struct MHD_Connection *c, const char *url, cJSON *body, double t0)
{
    (void)s, (void)url, (void)body, (void)t0;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "version", SERVER_OLLAMA_VERSION);
    return reply_json(c, MHD_HTTP_OK, o);
}
