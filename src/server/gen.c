/*
 * gen — runs one generation request and hands its answer to the API it came from. What the
 * answer looks like on the wire (Ollama NDJSON lines, OpenAI server-sent events, one JSON
 * object) is the API's gen_wire (ollama.c, openai.c); this file only runs and delivers.
 *
 * Streaming: a producer thread borrows a session and calls llmap_generate; its text callback
 * has the wire format each piece into a buffer that the connection thread drains through MHD's
 * content reader. When the client goes away, MHD frees the response, which sets the job's
 * cancel flag; the next text callback returns non-zero, the engine stops and the slot is freed.
 * The job is reference-counted between those two threads. Non-streaming requests run in the
 * connection thread itself (libmicrohttpd gives each connection its own thread); there nothing
 * is written until the end, so each text callback peeks at the socket to notice a client that
 * left.
 */
#include <cjson/cJSON.h>
#include <errno.h>
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
    gen_result r;
    double t_start;

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
} gen_job;

void gen_req_init(gen_req *g, const server_opts *o, gen_api api, const gen_wire *wire)
{
    memset(g, 0, sizeof *g);
    g->api = api;
    g->wire = wire;
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

const char *gen_done_reason(const gen_result *r)
{
    return r->st.done_reason ? r->st.done_reason : "stop";
}

void gen_put(llm_buf *out, const char *prefix, cJSON *obj, const char *suffix)
{
    char *s = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    if (!s)
        return;
    llm_buf_puts(out, prefix);
    llm_buf_puts(out, s);
    llm_buf_puts(out, suffix);
    free(s);
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
        j->g.wire->stream_piece(&j->g, &j->r, text, len, &j->out);
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
    gen_result *r = &j->r;
    if (!slot) {
        r->rc = -1;
        snprintf(r->err, sizeof r->err, "%s", err.msg);
    } else {
        r->rc = llmap_generate(srv_slot_session(slot), j->g.prompt, &j->g.sp, on_text, j, &r->st, r->err,
                               sizeof r->err);
        /* What the cache now holds, for picking this slot again; unknown after a failure. */
        llm_buf hist = {0};
        if (!r->rc) {
            llm_buf_puts(&hist, j->g.prompt);
            llm_buf_append(&hist, j->text.data ? j->text.data : "", j->text.len);
        }
        registry_slot_release(reg, j->model, slot, r->rc ? NULL : llm_buf_cstr(&hist), r->st.major_faults);
        llm_buf_free(&hist);
    }
    registry_release(reg, j->model, j->g.keep_alive);
    j->model = NULL;
    r->total_seconds = llm_now() - j->t_start;
}

static gen_job *job_new(llmap_server *s, srv_model *m, double load_seconds, double t_start, gen_req *g)
{
    gen_job *j = llm_xcalloc(1, sizeof *j);
    j->srv = s;
    j->model = m;
    j->g = *g;
    memset(g, 0, sizeof *g);
    j->r.load_seconds = load_seconds;
    j->t_start = t_start;
    j->r.created = time(NULL);
    j->r.seq = server_next_id(s);
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
    j->g.wire->stream_end(&j->g, &j->r, &j->out);
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
    if (j->g.wire->stream_begin)
        j->g.wire->stream_begin(&j->g, &j->r, &j->out);
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
        bool openai = j->g.wire->openai_errors;
        job_free(j);
        return reply_error(c, openai, MHD_HTTP_SERVICE_UNAVAILABLE, "cannot start a generation thread");
    }
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, j, stream_free);
    if (!r) {
        stream_free(j);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", j->g.wire->stream_type);
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
    int ret;
    if (j->r.rc) {
        ret = reply_error(c, j->g.wire->openai_errors, MHD_HTTP_INTERNAL_SERVER_ERROR, "generation failed: %s",
                          j->r.err);
    } else {
        const char *t = j->text.data ? j->text.data : "";
        ret = reply_json(c, MHD_HTTP_OK, j->g.wire->whole(&j->g, &j->r, t, j->text.len));
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
