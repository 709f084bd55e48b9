/*
 * request — what the Ollama and OpenAI handlers share on the way in: the chat messages, the
 * model (resolved and loaded), the prompt rendered with its chat template, then the hand-over to
 * gen_respond. The handlers keep only what their API spells differently (field names, ranges,
 * what they refuse); see ollama.c and openai.c.
 */
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

/* Renders msgs with the model's chat template into g->prompt, the model's default system
 * prompt first unless the conversation brings its own. */
static int render_chat(srv_model *m, const llmap_chat_msg *msgs, size_t n, gen_req *g, char *msg, size_t cap)
{
    bool add_gen = n == 0 || strcmp(msgs[n - 1].role, "assistant");
    llmap_chat_msg *with_sys = NULL;
    if (g->system_default && n > 0 && strcmp(msgs[0].role, "system")) {
        with_sys = llm_xmalloc((n + 1) * sizeof *with_sys);
        with_sys[0] = (llmap_chat_msg){"system", g->system_default};
        memcpy(with_sys + 1, msgs, n * sizeof *msgs);
        msgs = with_sys;
        n++;
    }
    int rc = llmap_chat_render(srv_model_engine(m), msgs, n, add_gen, &g->prompt, msg, cap);
    free(with_sys);
    if (rc)
        g->prompt = NULL;
    return rc;
}

int gen_serve(llmap_server *s, struct MHD_Connection *c, double t_start, gen_req *g, const llmap_chat_msg *msgs,
              size_t n, const char *raw)
{
    bool openai = g->wire->openai_errors;
    registry *reg = server_registry(s);
    srv_model *m;
    double load_s;
    int status, ret;
    llm_err err;
    char msg[512] = "";
    if (registry_acquire(reg, g->model_name, &m, &load_s, &status, &err)) {
        ret = reply_error(c, openai, (unsigned)status, "%s", err.msg);
    } else if (raw) {
        g->prompt = llm_xstrdup(raw);
        return gen_respond(s, c, m, load_s, t_start, g);
    } else if (n > 0) {
        if (!render_chat(m, msgs, n, g, msg, sizeof msg))
            return gen_respond(s, c, m, load_s, t_start, g);
        registry_release(reg, m, g->keep_alive);
        ret = reply_error(c, openai, MHD_HTTP_BAD_REQUEST, "cannot render the chat template: %s", msg);
    } else if (g->wire->load_only) {
        ret = g->wire->load_only(s, c, m, g);
    } else {
        registry_release(reg, m, g->keep_alive);
        ret = reply_error(c, openai, MHD_HTTP_BAD_REQUEST, "nothing to generate: no prompt or messages");
    }
    gen_req_free(g);
    return ret;
}

bool has_images(const cJSON *o)
{
    const cJSON *im = cJSON_GetObjectItemCaseSensitive(o, "images");
    return im && !cJSON_IsNull(im) && !(cJSON_IsArray(im) && cJSON_GetArraySize(im) == 0);
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

