/*
 * gen — runs one generation request and answers it in the format of the API it came from:
 * Ollama NDJSON lines or one JSON object, OpenAI server-sent events ("data: {...}\n\n" then
 * "data: [DONE]") or one JSON object.
 *
 * Streaming: a producer thread borrows a session and calls llmap_generate; its text callback
 * formats each piece into a buffer that the connection thread drains through MHD's content
 * reader. When the client goes away, MHD frees the response, which sets the job's cancel flag;
 * the next text callback returns non-zero, the engine stops and the slot is freed. The job is
 * reference-counted between those two threads. Non-streaming requests run in the connection
 * thread itself (libmicrohttpd gives each connection its own thread); there nothing is written
 * until the end, so each text callback peeks at the socket to notice a client that left.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "server/server.h"

typedef struct gen_job {
    llmap_server *srv;
    srv_model *model;
    gen_req g;
    double t_start, load_seconds;
    char id[64];
    time_t created;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    llm_buf out;          /* formatted bytes not yet handed to MHD (stream) */
    size_t out_pos;
    bool finished;        /* producer done: nothing more will be appended */
    atomic_bool cancel;   /* client gone */
    int refs;
    int client_fd;        /* non-stream: the connection's socket, peeked for EOF; -1: none */
    int stream_fd;        /* stream: the same, peeked by the reader while it has nothing to send */

    llm_buf text;         /* everything generated */
    llmap_stats st;
    int rc;
    char err[sizeof(llm_err)];
    double total_seconds;
} gen_job;

void gen_req_init(gen_req *g, const server_opts *o)
{
    memset(g, 0, sizeof *g);
    llmap_sampling_default(&g->sp);
    g->keep_alive = o->keep_alive;
    g->stream = true;
}

void gen_req_free(gen_req *g)
{
    free(g->model_name);
    free(g->prompt);
    free(g->system_default);
    for (int i = 0; i < g->sp.n_stop; i++)
        free(g->stops[i]);
    free(g->stops);
    memset(g, 0, sizeof *g);
}

static bool is_openai(const gen_job *j) { return j->g.api == API_OPENAI_CHAT || j->g.api == API_OPENAI_COMPLETION; }

static const char *done_reason(const gen_job *j)
{
    return j->st.done_reason ? j->st.done_reason : "stop";
}

/* OpenAI has no "cancel": a cancelled stream only ever reaches a client that is gone. */
static const char *finish_reason(const gen_job *j)
{
    return !strcmp(done_reason(j), "length") ? "length" : "stop";
}

/* ---- formats -------------------------------------------------------------------------------- */

static void add_created_at(cJSON *o)
{
    struct timespec ts;
    char buf[64];
    clock_gettime(CLOCK_REALTIME, &ts);
    format_time_rfc3339(buf, sizeof buf, &ts);
    cJSON_AddStringToObject(o, "created_at", buf);
}

static cJSON *ollama_object(const gen_job *j, const char *text, size_t len, bool done)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", j->g.model_name);
    add_created_at(o);
    char *t = llm_xstrndup(text, len);
    if (j->g.api == API_OLLAMA_CHAT) {
        cJSON *m = cJSON_AddObjectToObject(o, "message");
        cJSON_AddStringToObject(m, "role", "assistant");
        cJSON_AddStringToObject(m, "content", t);
    } else {
        cJSON_AddStringToObject(o, "response", t);
    }
    free(t);
    cJSON_AddBoolToObject(o, "done", done);
    if (done) {
        const llmap_stats *st = &j->st;
        cJSON_AddStringToObject(o, "done_reason", done_reason(j));
        cJSON_AddNumberToObject(o, "total_duration", (double)(int64_t)(j->total_seconds * 1e9));
        cJSON_AddNumberToObject(o, "load_duration", (double)(int64_t)(j->load_seconds * 1e9));
        cJSON_AddNumberToObject(o, "prompt_eval_count", st->prompt_tokens + st->cached_tokens);
        cJSON_AddNumberToObject(o, "prompt_eval_duration", (double)(int64_t)(st->prompt_seconds * 1e9));
        cJSON_AddNumberToObject(o, "eval_count", st->gen_tokens);
        cJSON_AddNumberToObject(o, "eval_duration", (double)(int64_t)(st->gen_seconds * 1e9));
    }
    return o;
}

static cJSON *openai_usage(const gen_job *j)
{
    cJSON *u = cJSON_CreateObject();
    int prompt = j->st.prompt_tokens + j->st.cached_tokens;
    cJSON_AddNumberToObject(u, "prompt_tokens", prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", j->st.gen_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", prompt + j->st.gen_tokens);
    cJSON *d = cJSON_AddObjectToObject(u, "prompt_tokens_details");
    cJSON_AddNumberToObject(d, "cached_tokens", j->st.cached_tokens);
    return u;
}

/* chunk: a streamed piece; otherwise the whole answer. text == NULL: final chunk (finish_reason). */
static cJSON *openai_object(const gen_job *j, const char *text, size_t len, bool chunk, bool role)
{
    bool chat = j->g.api == API_OPENAI_CHAT;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", j->id);
    cJSON_AddStringToObject(o, "object", chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion");
    cJSON_AddNumberToObject(o, "created", (double)j->created);
    cJSON_AddStringToObject(o, "model", j->g.model_name);
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
        cJSON_AddStringToObject(c, "finish_reason", finish_reason(j));
    if (!chunk)
        cJSON_AddItemToObject(o, "usage", openai_usage(j));
    else if (j->g.include_usage)
        cJSON_AddNullToObject(o, "usage");
    return o;
}

/* Appends one framed event/line for obj (consumed) to b. */
static void frame(const gen_job *j, llm_buf *b, cJSON *obj)
{
    char *s = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    if (!s)
        return;
    if (is_openai(j)) {
        llm_buf_puts(b, "data: ");
        llm_buf_puts(b, s);
        llm_buf_puts(b, "\n\n");
    } else {
        llm_buf_puts(b, s);
        llm_buf_puts(b, "\n");
    }
    free(s);
}

static void frame_piece(gen_job *j, const char *text, size_t len)
{
    frame(j, &j->out, is_openai(j) ? openai_object(j, text, len, true, false) : ollama_object(j, text, len, false));
}

static void frame_end(gen_job *j)
{
    if (j->rc) {
        if (is_openai(j)) {
            cJSON *o = cJSON_CreateObject();
            cJSON *e = cJSON_AddObjectToObject(o, "error");
            cJSON_AddStringToObject(e, "message", j->err);
            cJSON_AddStringToObject(e, "type", "api_error");
            frame(j, &j->out, o);
        } else {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "error", j->err);
            frame(j, &j->out, o);
        }
        return;
    }
    if (!is_openai(j)) {
        frame(j, &j->out, ollama_object(j, "", 0, true));
        return;
    }
    frame(j, &j->out, openai_object(j, NULL, 0, true, false));
    if (j->g.include_usage) {
        cJSON *o = openai_object(j, NULL, 0, true, false);
        cJSON_ReplaceItemInObject(o, "choices", cJSON_CreateArray());
        cJSON_ReplaceItemInObject(o, "usage", openai_usage(j));
        frame(j, &j->out, o);
    }
    llm_buf_puts(&j->out, "data: [DONE]\n\n");
}

/* ---- running -------------------------------------------------------------------------------- */

/* True when the peer has closed its end (EOF or a socket error); pipelined bytes or
 * nothing to read mean it is still there. */
static bool client_gone(int fd)
{
    char ch;
    ssize_t n = recv(fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static int on_text(void *user, const char *text, size_t len)
{
    gen_job *j = user;
    if (j->client_fd >= 0 && client_gone(j->client_fd))
        atomic_store(&j->cancel, true);
    if (atomic_load(&j->cancel) || atomic_load(server_stopping(j->srv)))
        return 1;
    llm_buf_append(&j->text, text, len);
    if (j->g.stream) {
        pthread_mutex_lock(&j->mu);
        frame_piece(j, text, len);
        pthread_cond_signal(&j->cv);
        pthread_mutex_unlock(&j->mu);
    }
    return 0;
}

/* Borrows a session, generates, gives the session and the model back. */
static void run(gen_job *j)
{
    registry *reg = server_registry(j->srv);
    llm_err err;
    srv_slot *slot = registry_slot_acquire(reg, j->model, j->g.n_ctx, j->g.prompt, &j->cancel, &err);
    if (!slot) {
        j->rc = -1;
        snprintf(j->err, sizeof j->err, "%s", err.msg);
    } else {
        j->rc = llmap_generate(srv_slot_session(slot), j->g.prompt, &j->g.sp, on_text, j, &j->st, j->err,
                               sizeof j->err);
        /* What the cache now holds, for picking this slot again; unknown after a failure. */
        llm_buf hist = {0};
        if (!j->rc) {
            llm_buf_puts(&hist, j->g.prompt);
            llm_buf_append(&hist, j->text.data ? j->text.data : "", j->text.len);
        }
        registry_slot_release(reg, j->model, slot, j->rc ? NULL : llm_buf_cstr(&hist), j->st.major_faults);
        llm_buf_free(&hist);
    }
    registry_release(reg, j->model, j->g.keep_alive);
    j->model = NULL;
    j->total_seconds = llm_now() - j->t_start;
}

static gen_job *job_new(llmap_server *s, srv_model *m, double load_seconds, double t_start, gen_req *g)
{
    gen_job *j = llm_xcalloc(1, sizeof *j);
    j->srv = s;
    j->model = m;
    j->g = *g;
    memset(g, 0, sizeof *g);
    j->load_seconds = load_seconds;
    j->t_start = t_start;
    j->created = time(NULL);
    snprintf(j->id, sizeof j->id, "%s-%" PRIu64 "%" PRIx64, j->g.api == API_OPENAI_CHAT ? "chatcmpl" : "cmpl",
             server_next_id(s), (uint64_t)j->created);
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    atomic_init(&j->cancel, false);
    j->client_fd = j->stream_fd = -1;
    return j;
}

static void job_free(gen_job *j)
{
    gen_req_free(&j->g);
    llm_buf_free(&j->out);
    llm_buf_free(&j->text);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

static void job_unref(gen_job *j)
{
    pthread_mutex_lock(&j->mu);
    int left = --j->refs;
    pthread_mutex_unlock(&j->mu);
    if (left == 0)
        job_free(j);
}

static void *producer_main(void *arg)
{
    gen_job *j = arg;
    llmap_server *s = j->srv;
    run(j);
    pthread_mutex_lock(&j->mu);
    frame_end(j);
    j->finished = true;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    job_unref(j);
    server_job_end(s);
    return NULL;
}

/* MHD pulls the stream from here (in the connection's own thread, so blocking is fine). */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    gen_job *j = cls;
    pthread_mutex_lock(&j->mu);
    while (j->out_pos == j->out.len && !j->finished) {
        /* Nothing to write yet (queued for a slot, or a long prompt): a client that left
         * would go unnoticed until the next write, so look at the socket meanwhile. */
        if (j->stream_fd >= 0 && client_gone(j->stream_fd)) {
            atomic_store(&j->cancel, true);
            pthread_mutex_unlock(&j->mu);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&j->cv, &j->mu, &ts);
    }
    ssize_t n;
    if (j->out_pos == j->out.len) {
        n = MHD_CONTENT_READER_END_OF_STREAM;
    } else {
        size_t k = j->out.len - j->out_pos;
        if (k > max)
            k = max;
        memcpy(buf, j->out.data + j->out_pos, k);
        j->out_pos += k;
        if (j->out_pos == j->out.len)
            j->out.len = j->out_pos = 0; /* drained: reuse the buffer */
        n = (ssize_t)k;
    }
    pthread_mutex_unlock(&j->mu);
    return n;
}

static void stream_free(void *cls)
{
    gen_job *j = cls;
    atomic_store(&j->cancel, true); /* no-op when the stream ended normally */
    job_unref(j);
}

static int respond_stream(llmap_server *s, struct MHD_Connection *c, gen_job *j)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    j->stream_fd = ci ? ci->connect_fd : -1;
    if (j->g.api == API_OPENAI_CHAT) /* OpenAI streams start with the role */
        frame(j, &j->out, openai_object(j, "", 0, true, true));
    j->refs = 2; /* producer + response */
    server_job_begin(s);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &attr, producer_main, j);
    pthread_attr_destroy(&attr);
    if (rc) {
        server_job_end(s);
        registry_release(server_registry(s), j->model, j->g.keep_alive);
        bool openai = is_openai(j);
        job_free(j);
        return reply_error(c, openai, MHD_HTTP_SERVICE_UNAVAILABLE, "cannot start a generation thread");
    }
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, j, stream_free);
    if (!r) {
        stream_free(j);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", is_openai(j) ? "text/event-stream" : "application/x-ndjson");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    int ret = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

static int respond_whole(struct MHD_Connection *c, gen_job *j)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    j->client_fd = ci ? ci->connect_fd : -1;
    run(j);
    bool openai = is_openai(j);
    int ret;
    if (j->rc) {
        ret = reply_error(c, openai, MHD_HTTP_INTERNAL_SERVER_ERROR, "generation failed: %s", j->err);
    } else {
        const char *t = j->text.data ? j->text.data : "";
        cJSON *o = openai ? openai_object(j, t, j->text.len, false, true) : ollama_object(j, t, j->text.len, true);
        ret = reply_json(c, MHD_HTTP_OK, o);
    }
    job_free(j);
    return ret;
}

int gen_respond(llmap_server *s, struct MHD_Connection *c, srv_model *m, double load_seconds, double t_start,
                gen_req *g)
{
    gen_job *j = job_new(s, m, load_seconds, t_start, g);
    return j->g.stream ? respond_stream(s, c, j) : respond_whole(c, j);
}
