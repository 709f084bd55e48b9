/*
 * libFuzzer target for what `llmap serve` does with an untrusted request body before any model
 * is touched: JSON fields, chat messages, stop lists, keep_alive durations and model names.
 * Properties: no crash or leak for any input; an accepted model name can never reach outside
 * the models directory; accepted messages have known roles and text; keep_alive is finite.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

static void check_name(const server_opts *o, const char *name)
{
    char *path = NULL, *canon = NULL;
    int status = 0;
    llm_err err;
    if (models_resolve(o, name, &path, &canon, &status, &err)) {
        if (status != 400 && status != 404)
            abort();
        /* Only a name that passed validation may be looked up (and found missing). */
        if (status == 404 && (strchr(name, '/') || strstr(name, "..") || name[0] == '.' || strchr(name, '\\')))
            abort();
    }
    free(path);
    free(canon);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cJSON *body = cJSON_ParseWithLength((const char *)data, size);
    if (!cJSON_IsObject(body)) {
        cJSON_Delete(body);
        return 0;
    }
    server_opts o;
    server_opts_default(&o);
    o.models_dir = "/nonexistent/llmap-fuzz-models"; /* nothing is ever found: names are only checked */
    llm_err err;

    const cJSON *model = cJSON_GetObjectItemCaseSensitive(body, "model");
    if (cJSON_IsString(model))
        check_name(&o, model->valuestring);

    llmap_chat_msg *msgs;
    size_t n;
    char **owned;
    if (!parse_messages(body, true, &msgs, &n, &owned, &err)) {
        for (size_t i = 0; i < n; i++) {
            const char *r = msgs[i].role;
            if (!msgs[i].content || (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant") &&
                                     strcmp(r, "tool")))
                abort();
        }
    }
    free_messages(msgs, n, owned);

    double ka = 300;
    if (!parse_keep_alive(cJSON_GetObjectItemCaseSensitive(body, "keep_alive"), &ka, &err) &&
        (!isfinite(ka) || ka > 1e9))
        abort();

    gen_req g;
    memset(&g, 0, sizeof g);
    if (!json_stops(cJSON_GetObjectItemCaseSensitive(body, "stop"), "stop", &g, &err))
        for (int i = 0; i < g.sp.n_stop; i++)
            if (!g.sp.stop[i] || !*g.sp.stop[i])
                abort();
    gen_req_free(&g);

    const cJSON *opts = cJSON_GetObjectItemCaseSensitive(body, "options");
    double d = 0;
    int k = 0;
    bool b = false;
    const char *s = NULL;
    if (!json_int(opts, "num_ctx", "options", 0, 1 << 20, &k, &err) && (k < 0 || k > (1 << 20)))
        abort();
    if (!json_num(opts, "top_p", "options", 0, 1, &d, &err) && (d < 0 || d > 1))
        abort();
    json_bool(body, "stream", NULL, &b, &err);
    json_str(body, "prompt", NULL, &s, &err);
    cJSON_Delete(body);
    return 0;
}
