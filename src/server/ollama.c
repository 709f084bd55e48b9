/*
 * ollama — the Ollama API (docs/api.md of ollama/ollama): /api/generate, /api/chat,
 * /api/tags, /api/show, /api/ps, /api/version.
 *
 * Each handler validates the whole request first (400 naming the bad field), then resolves
 * the model (400 for names that are not names, 404 for unknown ones), then renders the prompt
 * with the model's chat template and hands it to gen_respond.
 */
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/server.h"

#define BAD(c, ...) reply_error(c, false, MHD_HTTP_BAD_REQUEST, __VA_ARGS__)

/* The "options" object (Modelfile parameters). Unknown keys are ignored, as Ollama does. */
static int parse_options(const cJSON *body, gen_req *g, llm_err *err)
{
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(body, "options");
    if (!o || cJSON_IsNull(o))
        return 0;
    if (!cJSON_IsObject(o))
        return llm_errf(err, "'options' must be an object");
    llmap_sampling *sp = &g->sp;
    double t = sp->temperature, tp = sp->top_p, mp = sp->min_p, rp = sp->repeat_penalty;
    double fp = sp->frequency_penalty, pp = sp->presence_penalty, seed = -1;
    if (json_int(o, "num_ctx", "options", 0, 1 << 20, &g->n_ctx, err) ||
        json_int(o, "num_predict", "options", -2, 1 << 24, &sp->num_predict, err) ||
        json_num(o, "temperature", "options", 0, 100, &t, err) ||
        json_int(o, "top_k", "options", 0, 1 << 20, &sp->top_k, err) ||
        json_num(o, "top_p", "options", 0, 1, &tp, err) || json_num(o, "min_p", "options", 0, 1, &mp, err) ||
        json_num(o, "repeat_penalty", "options", 0, 100, &rp, err) ||
        json_int(o, "repeat_last_n", "options", -1, 1 << 20, &sp->repeat_last_n, err) ||
        json_num(o, "frequency_penalty", "options", -100, 100, &fp, err) ||
        json_num(o, "presence_penalty", "options", -100, 100, &pp, err) ||
        json_num(o, "seed", "options", -1, 9007199254740992.0, &seed, err) ||
        json_stops(cJSON_GetObjectItemCaseSensitive(o, "stop"), "options.stop", g, err))
        return -1;
    if (sp->num_predict == -2) /* Ollama: "fill the context" — the engine's "until full" */
        sp->num_predict = -1;
    if (sp->repeat_last_n == -1) /* Ollama: "the whole context" */
        sp->repeat_last_n = g->n_ctx > 0 ? g->n_ctx : 4096;
    sp->temperature = (float)t, sp->top_p = (float)tp, sp->min_p = (float)mp, sp->repeat_penalty = (float)rp;
    sp->frequency_penalty = (float)fp, sp->presence_penalty = (float)pp;
    if (seed >= 0)
        sp->seed = (uint64_t)seed;
    return 0;
}

/* Fields shared by /api/generate and /api/chat. */
static int parse_common(const server_opts *o, const cJSON *body, gen_req *g, const char **model, llm_err *err)
{
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(body, "format");
    if (json_str(body, "model", NULL, model, err))
        return -1;
    if (*model) /* the model's own defaults first, so that the request's fields override them */
        model_apply_defaults(o, *model, g);
    if (json_bool(body, "stream", NULL, &g->stream, err) ||
        parse_keep_alive(cJSON_GetObjectItemCaseSensitive(body, "keep_alive"), &g->keep_alive, err) ||
        parse_options(body, g, err))
        return -1;
    if (!*model)
        return llm_errf(err, "missing 'model'");
    if (fmt && !cJSON_IsNull(fmt) && !(cJSON_IsString(fmt) && !*fmt->valuestring))
        return llm_errf(err, "'format' (structured output) is not supported by llmap");
    return 0;
}

static bool has_images(const cJSON *o)
{
    const cJSON *im = cJSON_GetObjectItemCaseSensitive(o, "images");
    return im && !cJSON_IsNull(im) && !(cJSON_IsArray(im) && cJSON_GetArraySize(im) == 0);
}

/* An empty prompt only loads the model (or unloads it with keep_alive 0), as in Ollama. */
static int load_only(llmap_server *s, struct MHD_Connection *c, srv_model *m, const gen_req *g)
{
    registry *r = server_registry(s);
    registry_release(r, m, g->keep_alive);
    bool unload = g->keep_alive == 0;
    if (unload)
        registry_unload(r, g->model_name);
    cJSON *o = cJSON_CreateObject();
    struct timespec ts;
    char when[64];
    clock_gettime(CLOCK_REALTIME, &ts);
    format_time_rfc3339(when, sizeof when, &ts);
    cJSON_AddStringToObject(o, "model", g->model_name);
    cJSON_AddStringToObject(o, "created_at", when);
    if (g->api == API_OLLAMA_CHAT) {
        cJSON *msg = cJSON_AddObjectToObject(o, "message");
        cJSON_AddStringToObject(msg, "role", "assistant");
        cJSON_AddStringToObject(msg, "content", "");
    } else {
        cJSON_AddStringToObject(o, "response", "");
    }
    cJSON_AddBoolToObject(o, "done", true);
    cJSON_AddStringToObject(o, "done_reason", unload ? "unload" : "load");
    return reply_json(c, MHD_HTTP_OK, o);
}

srv_model *acquire_model(llmap_server *s, struct MHD_Connection *c, bool openai, const char *name, double *load_s,
                          int *ret)
{
    srv_model *m;
    int status;
    llm_err err;
    if (registry_acquire(server_registry(s), name, &m, load_s, &status, &err)) {
        *ret = reply_error(c, openai, (unsigned)status, "%s", err.msg);
        return NULL;
    }
    return m;
}

int render_chat(llmap_server *s, struct MHD_Connection *c, bool openai, srv_model *m, const llmap_chat_msg *msgs,
                size_t n, gen_req *g, int *ret)
{
    char msg[512] = "";
    bool add_gen = n == 0 || strcmp(msgs[n - 1].role, "assistant");
    /* The model's default system prompt, unless the conversation brings its own. */
    llmap_chat_msg *with_sys = NULL;
    if (g->system_default && n > 0 && strcmp(msgs[0].role, "system")) {
        with_sys = llm_xmalloc((n + 1) * sizeof *with_sys);
        with_sys[0] = (llmap_chat_msg){"system", g->system_default};
        memcpy(with_sys + 1, msgs, n * sizeof *msgs);
        msgs = with_sys;
        n++;
    }
    int rc = llmap_chat_render(srv_model_engine(m), msgs, n, add_gen, &g->prompt, msg, sizeof msg);
    free(with_sys);
    if (rc) {
        g->prompt = NULL;
        registry_release(server_registry(s), m, g->keep_alive);
        *ret = reply_error(c, openai, MHD_HTTP_BAD_REQUEST, "cannot render the chat template: %s", msg);
        return -1;
    }
    return 0;
}

int ollama_generate(llmap_server *s, struct MHD_Connection *c, const char *url, cJSON *body, double t0)
{
    (void)url;
    gen_req g;
    gen_req_init(&g, server_options(s));
    g.api = API_OLLAMA_GENERATE;
    const char *model = NULL, *prompt = "", *system = NULL, *suffix = NULL, *tmpl = NULL;
    bool raw = false;
    llm_err err;
    int ret;
    if (parse_common(server_options(s), body, &g, &model, &err) || json_str(body, "prompt", NULL, &prompt, &err) ||
        json_str(body, "system", NULL, &system, &err) || json_str(body, "suffix", NULL, &suffix, &err) ||
        json_str(body, "template", NULL, &tmpl, &err) || json_bool(body, "raw", NULL, &raw, &err)) {
        ret = BAD(c, "%s", err.msg);
        goto out;
    }
    if (has_images(body) || (suffix && *suffix)) {
        ret = BAD(c, "%s are not supported by llmap", has_images(body) ? "images" : "suffix (fill-in-the-middle) prompts");
        goto out;
    }
    g.model_name = llm_xstrdup(model);
    double load_s;
    srv_model *m = acquire_model(s, c, false, model, &load_s, &ret);
    if (!m)
        goto out;
    if (!*prompt) {
        ret = load_only(s, c, m, &g);
        goto out;
    }
    if (raw) {
        g.prompt = llm_xstrdup(prompt);
    } else {
        /* Ollama's per-request "template" (Go template syntax) is ignored: the model's own
         * chat template renders the system + user turn. */
        llmap_chat_msg msgs[2];
        size_t n = 0;
        if (!system)
            system = g.system_default;
        if (system && *system)
            msgs[n++] = (llmap_chat_msg){"system", system};
        msgs[n++] = (llmap_chat_msg){"user", prompt};
        if (render_chat(s, c, false, m, msgs, n, &g, &ret))
            goto out;
    }
    return gen_respond(s, c, m, load_s, t0, &g);
out:
    gen_req_free(&g);
    return ret;
}

int parse_messages(const cJSON *body, bool allow_parts, llmap_chat_msg **out, size_t *n, char ***owned, llm_err *err)
{
    static const char *const ROLES[] = {"system", "user", "assistant", "tool", "developer"};
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(body, "messages");
    *out = NULL;
    *n = 0;
    *owned = NULL;
    if (!arr || cJSON_IsNull(arr))
        return llm_errf(err, "missing 'messages'");
    if (!cJSON_IsArray(arr))
        return llm_errf(err, "'messages' must be an array");
    size_t count = (size_t)cJSON_GetArraySize(arr);
    *out = llm_xcalloc(count ? count : 1, sizeof **out);
    *owned = llm_xcalloc(count ? count : 1, sizeof **owned);
    const cJSON *m;
    size_t i = 0;
    cJSON_ArrayForEach(m, arr)
    {
        if (!cJSON_IsObject(m))
            return llm_errf(err, "'messages[%zu]' must be an object", i);
        const char *role = NULL;
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (json_str(m, "role", "messages[]", &role, err))
            return -1;
        if (!role)
            return llm_errf(err, "'messages[%zu].role' is missing", i);
        bool known = false;
        for (size_t k = 0; k < sizeof ROLES / sizeof *ROLES; k++)
            known |= !strcmp(role, ROLES[k]);
        if (!known)
            return llm_errf(err, "'messages[%zu].role' = \"%.32s\" is not one of system, user, assistant, tool", i, role);
        if (has_images(m))
            return llm_errf(err, "'messages[%zu].images': images are not supported by llmap", i);
        const char *text = "";
        if (content && cJSON_IsString(content)) {
            text = content->valuestring;
        } else if (content && allow_parts && cJSON_IsArray(content)) {
            llm_buf b = {0};
            const cJSON *part;
            cJSON_ArrayForEach(part, content)
            {
                const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
                const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "text");
                if (!cJSON_IsObject(part) || !cJSON_IsString(type) || strcmp(type->valuestring, "text") ||
                    !cJSON_IsString(t)) {
                    llm_buf_free(&b);
                    return llm_errf(err, "'messages[%zu].content': only text parts are supported", i);
                }
                llm_buf_puts(&b, t->valuestring);
            }
            (*owned)[i] = llm_xstrdup(b.len ? llm_buf_cstr(&b) : "");
            llm_buf_free(&b);
            text = (*owned)[i];
        } else if (content && !cJSON_IsNull(content)) {
            return llm_errf(err, "'messages[%zu].content' must be a string", i);
        }
        (*out)[i] = (llmap_chat_msg){!strcmp(role, "developer") ? "system" : role, text};
        *n = ++i; /* so free_messages sees what is owned even if a later message is bad */
    }
    return 0;
}

void free_messages(llmap_chat_msg *msgs, size_t n, char **owned)
{
    for (size_t i = 0; owned && i < n; i++)
        free(owned[i]);
    free(owned);
    free(msgs);
}

int ollama_chat(llmap_server *s, struct MHD_Connection *c, const char *url, cJSON *body, double t0)
{
    (void)url;
    gen_req g;
    gen_req_init(&g, server_options(s));
    g.api = API_OLLAMA_CHAT;
    const char *model = NULL;
    llmap_chat_msg *msgs = NULL;
    char **owned = NULL;
    size_t n = 0;
    llm_err err;
    int ret;
    if (parse_common(server_options(s), body, &g, &model, &err) || parse_messages(body, false, &msgs, &n, &owned, &err)) {
        ret = BAD(c, "%s", err.msg);
        goto out;
    }
    g.model_name = llm_xstrdup(model);
    double load_s;
    srv_model *m = acquire_model(s, c, false, model, &load_s, &ret);
    if (!m)
        goto out;
    if (n == 0) {
        ret = load_only(s, c, m, &g);
        goto out;
    }
    if (render_chat(s, c, false, m, msgs, n, &g, &ret))
        goto out;
    free_messages(msgs, n, owned);
    return gen_respond(s, c, m, load_s, t0, &g);
out:
    free_messages(msgs, n, owned);
    gen_req_free(&g);
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
