/*
 * http — the server core: binds with libmicrohttpd (one thread per connection, idle timeout,
 * connection limit), collects request bodies up to a limit, routes method + path to the API
 * handlers and the embedded chat page, and shuts down cleanly.
 *
 * Every client mistake gets a JSON error with a 4xx status here or in the handlers; 500 is
 * reserved for failures on the server side (a model file that cannot be loaded).
 */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/server.h"

struct llmap_server {
    server_opts opts;
    char *host, *models_dir;  /* owned copies behind opts */
    struct MHD_Daemon *mhd;
    registry *reg;
    meta_cache *metas;
    atomic_bool stopping;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int active_jobs;          /* producer threads still running */
    atomic_uint_fast64_t next_id;
    int port;
};

/* Per-request state kept by MHD between calls of the access handler. */
typedef struct req_ctx {
    llm_buf body;
    bool too_large;
    double t_start;
} req_ctx;

typedef struct route {
    const char *path;
    const char *method; /* GET routes also answer HEAD */
    api_handler fn;
    bool prefix;        /* path is a prefix (/v1/models/<id>) */
} route;

static const route ROUTES[] = {
    {"/api/generate", "POST", ollama_generate, false},
    {"/api/chat", "POST", ollama_chat, false},
    {"/api/tags", "GET", ollama_tags, false},
    {"/api/show", "POST", ollama_show, false},
    {"/api/ps", "GET", ollama_ps, false},
    {"/api/version", "GET", ollama_version, false},
    {"/v1/chat/completions", "POST", openai_chat, false},
    {"/v1/completions", "POST", openai_completions, false},
    {"/v1/models", "GET", openai_models, false},
    {"/v1/models/", "GET", openai_models, true},
};

void server_opts_default(server_opts *o)
{
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 11434;
    o->parallel = 1;
    o->keep_alive = 300;
    o->max_body = 8u << 20;
    o->conn_timeout = 30;
    o->max_conns = 256;
}

registry *server_registry(llmap_server *s) { return s->reg; }
meta_cache *server_metas(llmap_server *s) { return s->metas; }
const server_opts *server_options(const llmap_server *s) { return &s->opts; }
const atomic_bool *server_stopping(const llmap_server *s) { return &s->stopping; }
int server_port(const llmap_server *s) { return s->port; }
uint64_t server_next_id(llmap_server *s) { return atomic_fetch_add(&s->next_id, 1); }

void server_job_begin(llmap_server *s)
{
    pthread_mutex_lock(&s->mu);
    s->active_jobs++;
    pthread_mutex_unlock(&s->mu);
}

void server_job_end(llmap_server *s)
{
    pthread_mutex_lock(&s->mu);
    s->active_jobs--;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* ---- responses ------------------------------------------------------------------------------ */

static int queue(struct MHD_Connection *c, unsigned status, const char *type, char *body, size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    int ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

int reply_json(struct MHD_Connection *c, unsigned status, cJSON *obj)
{
    char *text = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    if (!text)
        return MHD_NO;
    return queue(c, status, "application/json; charset=utf-8", text, strlen(text));
}

int reply_error(struct MHD_Connection *c, bool openai, unsigned status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *o = cJSON_CreateObject();
    if (openai) {
        /* The OpenAI clients read error.message / error.type. */
        cJSON *e = cJSON_AddObjectToObject(o, "error");
        cJSON_AddStringToObject(e, "message", msg);
        cJSON_AddStringToObject(e, "type", status == 404   ? "not_found_error"
                                           : status < 500 ? "invalid_request_error"
                                                          : "api_error");
        cJSON_AddNullToObject(e, "param");
        cJSON_AddNullToObject(e, "code");
    } else {
        cJSON_AddStringToObject(o, "error", msg);
    }
    return reply_json(c, status, o);
}

static int reply_text(struct MHD_Connection *c, unsigned status, const char *text)
{
    return queue(c, status, "text/plain; charset=utf-8", llm_xstrdup(text), strlen(text));
}

static int reply_static(struct MHD_Connection *c, const web_file *f)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(f->size, (void *)f->data, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", f->content_type);
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    /* The page talks only to this server; nothing may be fetched from elsewhere. */
    MHD_add_response_header(r, "Content-Security-Policy",
                            "default-src 'self'; connect-src 'self'; img-src 'self' data:");
    int ret = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

/* ---- routing -------------------------------------------------------------------------------- */

static bool wants_html(struct MHD_Connection *c)
{
    const char *accept = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Accept");
    return accept && strstr(accept, "text/html");
}

static int serve_root_or_static(struct MHD_Connection *c, const char *url, const char *method, bool *handled)
{
    bool get = !strcmp(method, "GET"), head = !strcmp(method, "HEAD");
    *handled = true;
    if (!strcmp(url, "/")) {
        if (!get && !head)
            return reply_error(c, false, MHD_HTTP_METHOD_NOT_ALLOWED, "method %s not allowed on /", method);
        /* Ollama clients probe "GET /" or "HEAD /" for this text; browsers get the chat page. */
        if (get && wants_html(c))
            return reply_static(c, &WEB_FILES[0]);
        return reply_text(c, MHD_HTTP_OK, "Ollama is running");
    }
    for (size_t i = 1; i < WEB_FILES_COUNT; i++) {
        if (strcmp(url, WEB_FILES[i].path))
            continue;
        if (!get && !head)
            return reply_error(c, false, MHD_HTTP_METHOD_NOT_ALLOWED, "method %s not allowed on %s", method, url);
        return reply_static(c, &WEB_FILES[i]);
    }
    *handled = false;
    return MHD_YES;
}

static const route *find_route(const char *url, bool *path_known, const char *method)
{
    *path_known = false;
    for (size_t i = 0; i < sizeof ROUTES / sizeof *ROUTES; i++) {
        const route *r = &ROUTES[i];
        bool match = r->prefix ? !strncmp(url, r->path, strlen(r->path)) && url[strlen(r->path)]
                               : !strcmp(url, r->path);
        if (!match)
            continue;
        *path_known = true;
        if (!strcmp(method, r->method) || (!strcmp(r->method, "GET") && !strcmp(method, "HEAD")))
            return r;
    }
    return NULL;
}

static int dispatch(llmap_server *s, struct MHD_Connection *c, const char *url, const char *method, req_ctx *ctx)
{
    bool openai = !strncmp(url, "/v1/", 4);
    bool handled;
    int ret = serve_root_or_static(c, url, method, &handled);
    if (handled)
        return ret;
    bool known;
    const route *r = find_route(url, &known, method);
    if (!r) {
        if (known)
            return reply_error(c, openai, MHD_HTTP_METHOD_NOT_ALLOWED, "method %s not allowed on %s", method, url);
        return reply_error(c, openai, MHD_HTTP_NOT_FOUND, "no such endpoint: %s %s", method, url);
    }
    if (ctx->too_large)
        return reply_error(c, openai, MHD_HTTP_CONTENT_TOO_LARGE, "request body larger than %zu bytes",
                           s->opts.max_body);
    cJSON *body = NULL;
    if (!strcmp(r->method, "POST")) {
        if (ctx->body.len == 0)
            return reply_error(c, openai, MHD_HTTP_BAD_REQUEST, "missing request body (a JSON object)");
        const char *end = NULL;
        body = cJSON_ParseWithLengthOpts(ctx->body.data, ctx->body.len, &end, false);
        if (!body) {
            size_t off = end ? (size_t)(end - ctx->body.data) : 0;
            return reply_error(c, openai, MHD_HTTP_BAD_REQUEST, "invalid JSON in request body near byte %zu", off);
        }
        if (!cJSON_IsObject(body)) {
            cJSON_Delete(body);
            return reply_error(c, openai, MHD_HTTP_BAD_REQUEST, "request body must be a JSON object");
        }
    }
    ret = r->fn(s, c, url, body, ctx->t_start);
    cJSON_Delete(body);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    (void)version;
    llmap_server *s = cls;
    req_ctx *ctx = *con_cls;
    if (!ctx) {
        ctx = llm_xcalloc(1, sizeof *ctx);
        ctx->t_start = llm_now();
        *con_cls = ctx;
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > s->opts.max_body) {
            /* Answer before reading the body; MHD closes the connection afterwards. */
            ctx->too_large = true;
            return reply_error(c, !strncmp(url, "/v1/", 4), MHD_HTTP_CONTENT_TOO_LARGE,
                               "request body larger than %zu bytes", s->opts.max_body) == MHD_YES
                       ? MHD_YES
                       : MHD_NO;
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (!ctx->too_large) {
            if (ctx->body.len + *upload_size > s->opts.max_body) {
                ctx->too_large = true;
                llm_buf_free(&ctx->body);
            } else {
                llm_buf_append(&ctx->body, upload, *upload_size);
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    int ret = dispatch(s, c, url, method, ctx);
    if (s->opts.verbose)
        fprintf(stderr, "llmap serve: %s %s (%.1f ms)\n", method, url, (llm_now() - ctx->t_start) * 1e3);
    return ret == MHD_YES ? MHD_YES : MHD_NO;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)c, (void)toe;
    req_ctx *ctx = *con_cls;
    if (ctx) {
        llm_buf_free(&ctx->body);
        free(ctx);
        *con_cls = NULL;
    }
}

/* ---- start / stop --------------------------------------------------------------------------- */

static int resolve_bind(const char *host, int port, struct sockaddr_storage *ss, bool *v6, llm_err *err)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    int rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc || !res)
        return llm_errf(err, "cannot resolve host '%s': %s", host, gai_strerror(rc));
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *v6 = res->ai_family == AF_INET6;
    freeaddrinfo(res);
    return 0;
}

int server_start(const server_opts *o, llmap_server **out, llm_err *err)
{
    *out = NULL;
    if (o->port < 0 || o->port > 65535)
        return llm_errf(err, "port %d out of range", o->port);
    struct sockaddr_storage ss;
    bool v6 = false;
    if (resolve_bind(o->host, o->port, &ss, &v6, err))
        return -1;
    llmap_server *s = llm_xcalloc(1, sizeof *s);
    s->opts = *o;
    s->host = llm_xstrdup(o->host);
    s->opts.host = s->host;
    if (o->models_dir) {
        s->models_dir = llm_xstrdup(o->models_dir);
        s->opts.models_dir = s->models_dir;
    }
    if (s->opts.parallel < 1)
        s->opts.parallel = 1;
    atomic_init(&s->stopping, false);
    atomic_init(&s->next_id, 1);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->metas = meta_cache_new();
    s->reg = registry_new(&s->opts, &s->stopping, s->metas);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (v6)
        flags |= MHD_USE_IPv6;
    s->mhd = MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, on_request, s,
                              MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o->conn_timeout,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned)o->max_conns,
                              MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                              MHD_OPTION_END);
    if (!s->mhd) {
        llm_errf(err, "cannot listen on %s port %d (address in use or not available)", o->host, o->port);
        server_stop(s);
        return -1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : o->port;
    *out = s;
    return 0;
}

void server_stop(llmap_server *s)
{
    if (!s)
        return;
    atomic_store(&s->stopping, true);
    if (s->mhd) {
        /* Stop accepting first, then let running requests see `stopping` and finish. */
        MHD_socket fd = MHD_quiesce_daemon(s->mhd);
        MHD_stop_daemon(s->mhd);
        if (fd != MHD_INVALID_SOCKET)
            close(fd);
    }
    pthread_mutex_lock(&s->mu);
    while (s->active_jobs > 0)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    registry_free(s->reg);
    meta_cache_free(s->metas);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->host);
    free(s->models_dir);
    free(s);
}
