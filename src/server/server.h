/*
 * server — `llmap serve`: an HTTP server speaking the Ollama API (/api/...) and the OpenAI API
 * (/v1/...) on top of the public engine API (include/llmap.h), plus a small chat page at /.
 *
 * Why this shape: libmicrohttpd runs one thread per connection, so a slow client only ever
 * holds its own thread; generation for a streaming request runs in a producer thread that
 * hands finished chunks to the connection thread, so a client that goes away is noticed on
 * the next write and its generation is cancelled. Models are loaded on first use, shared by
 * all requests (one llmap_model per name) and unloaded by a reaper thread after keep_alive.
 *
 * The first part of this header is the module's public interface (used by cmd_serve.c); the
 * second part is shared between the files of src/server only.
 */
#ifndef LLMAP_SERVER_H
#define LLMAP_SERVER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "llmap.h"
#include "util/util.h"

#define SERVER_OLLAMA_VERSION "0.6.0" /* the Ollama API version we model (reported by /api/version) */

typedef struct server_opts {
    const char *host;        /* numeric address or name to bind; default "127.0.0.1" */
    int port;                /* 0: any free port (see server_port) */
    const char *models_dir;  /* directory of GGUF files; NULL: the model store (src/store) */
    int n_threads;           /* engine threads per model; <= 0: one per core */
    int parallel;            /* concurrent generations per model (sessions); default 1 */
    double keep_alive;       /* seconds a model stays loaded after its last use; < 0: forever */
    size_t max_body;         /* request bodies above this get 413 */
    unsigned conn_timeout;   /* seconds of client inactivity before a connection is closed */
    unsigned max_conns;      /* simultaneous connections */
    bool verbose;            /* one log line per request on stderr */
} server_opts;

typedef struct llmap_server llmap_server;

void server_opts_default(server_opts *o);
/* Binds and starts serving in background threads. */
int server_start(const server_opts *o, llmap_server **out, llm_err *err);
/* The bound port (useful with port 0). */
int server_port(const llmap_server *s);
/* Stops accepting, cancels running generations, waits for every thread, frees everything. */
void server_stop(llmap_server *s);

/* ==== internal to src/server ================================================================ */

struct MHD_Connection;
struct cJSON;

/* ---- model names (models.c): name[:tag] → GGUF file (store or directory); what /api/tags
 * and /api/show tell */

typedef struct model_meta {
    char *name;        /* canonical "stem:latest" */
    char *path;
    char *arch, *general_name, *quant, *chat_template;
    char *digest;      /* "sha256-<hex>" for store models, NULL for plain files */
    uint64_t file_size, n_params;
    uint32_t ctx_len, n_embd, n_layer, n_head, n_head_kv, n_vocab;
    time_t mtime;
} model_meta;

/* Maps a client-supplied model name to a file of the models directory. Names that could
 * escape it (separators, "..", absolute paths) are refused: returns -1 with *status 400;
 * unknown names give 404. On success *path and *canonical are malloc'd. */
int models_resolve(const server_opts *o, const char *name, char **path, char **canonical, int *status,
                   llm_err *err);
/* Parsed metadata by file (path, size, mtime): parsing a GGUF header with its vocabulary on
 * every /api/tags poll costs far more than answering it. Thread-safe. */
typedef struct meta_cache meta_cache;
meta_cache *meta_cache_new(void);
void meta_cache_free(meta_cache *c);
/* Store models carry defaults (Modelfile PARAMETER and SYSTEM lines): they are applied to g
 * (sampling, num_ctx, stop strings, g->system_default) before the request's own fields, which
 * override them. Directory models and unknown names have none. */
struct gen_req;
void model_apply_defaults(const server_opts *o, const char *name, struct gen_req *g);
/* Reads the GGUF metadata of a file (mapped, not loaded), or a copy of the cached result
 * while the file is unchanged (cache may be NULL). */
int model_meta_read(meta_cache *c, const char *path, const char *canonical, model_meta *m, llm_err *err);
void model_meta_free(model_meta *m);
/* Every model of the store or directory, sorted by name; *out is malloc'd (model_metas_free). */
int models_list(const server_opts *o, meta_cache *c, model_meta **out, size_t *n, llm_err *err);
void model_metas_free(model_meta *v, size_t n);
/* Bytes of the file's tensor data in the page cache now. */
uint64_t model_file_resident(const char *path);
/* The Ollama "details" object of a model. */
struct cJSON *model_details_json(const model_meta *m);

/* ---- registry (registry.c): loaded models, sessions (slots), keep_alive reaper ------------ */

typedef struct registry registry;
typedef struct srv_model srv_model;
typedef struct srv_slot srv_slot;

registry *registry_new(const server_opts *o, const atomic_bool *stopping, meta_cache *metas);
void registry_free(registry *r);
/* Returns the loaded model (loading it if needed) with a reference held; *load_seconds is
 * the time spent getting it ready. -1 with *status (404, 400 or 500) and err on failure. */
int registry_acquire(registry *r, const char *name, srv_model **out, double *load_seconds, int *status,
                     llm_err *err);
/* Drops the reference; keep_alive (seconds, < 0 forever, 0 now) applies from this moment. */
void registry_release(registry *r, srv_model *m, double keep_alive);
/* Unloads a model now if no request uses it (keep_alive 0 with an empty prompt). */
void registry_unload(registry *r, const char *name);
llmap_model *srv_model_engine(srv_model *m);
const char *srv_model_name(const srv_model *m);
/* Waits for a free session (best prefix match first). Returns NULL when *cancel or the server
 * stops first, or with err when a session cannot be created. */
srv_slot *registry_slot_acquire(registry *r, srv_model *m, int n_ctx, const char *prompt,
                                const atomic_bool *cancel, llm_err *err);
llmap_session *srv_slot_session(srv_slot *s);
/* Gives the session back; history is what its cache now holds (NULL: unknown, reset it). */
void registry_slot_release(registry *r, srv_model *m, srv_slot *s, const char *history, uint64_t major_faults);
/* /api/ps: one entry per loaded model. */
struct cJSON *registry_ps_json(registry *r);

/* ---- generation (gen.c) ------------------------------------------------------------------- */

typedef enum gen_api { API_OLLAMA_GENERATE, API_OLLAMA_CHAT, API_OPENAI_CHAT, API_OPENAI_COMPLETION } gen_api;

/* What a generation produced, for the wire format to tell. */
typedef struct gen_result {
    uint64_t seq;            /* request number on this server (OpenAI ids) */
    time_t created;
    double load_seconds, total_seconds;
    llmap_stats st;
    int rc;                  /* 0, or -1 with err */
    char err[sizeof(llm_err)];
} gen_result;

struct gen_req;

/* An API's wire format (ollama.c, openai.c): how the answer of a generation is framed. The
 * stream functions append to out; gen.c runs the generation and delivers the bytes. */
typedef struct gen_wire {
    bool openai_errors;      /* error bodies in OpenAI's shape (reply_error) */
    const char *stream_type; /* Content-Type of a streamed answer */
    /* Before the first piece (NULL: nothing); each generated piece; the end, after success or
     * failure (r->rc). */
    void (*stream_begin)(const struct gen_req *g, const gen_result *r, llm_buf *out);
    void (*stream_piece)(const struct gen_req *g, const gen_result *r, const char *text, size_t len, llm_buf *out);
    void (*stream_end)(const struct gen_req *g, const gen_result *r, llm_buf *out);
    /* The whole answer of a request that does not stream. */
    struct cJSON *(*whole)(const struct gen_req *g, const gen_result *r, const char *text, size_t len);
    /* A request with nothing to generate (Ollama: an empty prompt loads or unloads the model):
     * answers it and gives m back. NULL: such a request is a 400. */
    int (*load_only)(llmap_server *s, struct MHD_Connection *c, srv_model *m, const struct gen_req *g);
} gen_wire;

/* One generation request, filled by the API handlers, run by gen_respond. */
typedef struct gen_req {
    gen_api api;
    const gen_wire *wire;
    char *model_name;        /* as the client spelled it (echoed back) */
    char *prompt;            /* fully templated */
    llmap_sampling sp;
    char **stops;            /* owned copies behind sp.stop */
    char *system_default;    /* the model's default system prompt (store manifest), or NULL */
    int n_ctx;
    double keep_alive;       /* seconds; < 0 forever */
    bool stream, include_usage;
} gen_req;

void gen_req_init(gen_req *g, const server_opts *o, gen_api api, const gen_wire *wire);
void gen_req_free(gen_req *g);
/* Runs the request on an acquired model and queues the HTTP response (streamed or not).
 * Takes over the model reference and g's contents. */
int gen_respond(llmap_server *s, struct MHD_Connection *c, srv_model *m, double load_seconds, double t_start,
                gen_req *g);
/* For wire formats: the engine's done_reason ("stop" when it gave none), and obj (consumed)
 * printed compactly between prefix and suffix. */
const char *gen_done_reason(const gen_result *r);
void gen_put(llm_buf *out, const char *prefix, struct cJSON *obj, const char *suffix);

/* ---- what the API handlers share on the way in (request.c) ---------------------------------- */

/* The model, the prompt, the answer: acquires g->model_name (404/400/500 in the API's error
 * shape), renders msgs with its chat template (the model's default system prompt first unless
 * the conversation has one) or takes raw as the prompt, and answers through gen_respond; with
 * neither, g->wire->load_only answers. Takes over g in every case (leaving it empty); returns
 * the MHD result. */
int gen_serve(llmap_server *s, struct MHD_Connection *c, double t_start, gen_req *g, const llmap_chat_msg *msgs,
              size_t n, const char *raw);
/* Reads "messages" into msgs (pointing into body). With allow_parts, OpenAI content arrays of
 * text parts are joined into *owned strings. Free with free_messages. */
int parse_messages(const struct cJSON *body, bool allow_parts, llmap_chat_msg **msgs, size_t *n, char ***owned,
                   llm_err *err);
void free_messages(llmap_chat_msg *msgs, size_t n, char **owned);
/* The request (or message) has a non-empty "images" (refused: llmap runs no vision models). */
bool has_images(const struct cJSON *o);

/* A numeric request field that lands in a gen_req member, for json_fields. The kind follows the
 * member's type: float (a number in [lo, hi]), int (an integer in [lo, hi]) or the uint64_t seed
 * (a number in [lo, hi]; negative keeps the default). */
typedef enum json_kind { JSON_FLOAT, JSON_INT, JSON_SEED } json_kind;
typedef struct json_field {
    const char *key;
    json_kind kind;
    double lo, hi;
    size_t offset;
} json_field;
#define GEN_FIELD(key, lo, hi, member)                                                                     \
    {key, _Generic(((gen_req *)0)->member, float: JSON_FLOAT, int: JSON_INT, uint64_t: JSON_SEED), lo, hi, \
     offsetof(gen_req, member)}
/* Parses the fields of o (ctx names them in errors: "options") into g, in table order, so the
 * first bad field is the one an error names. Absent or null fields keep their value. */
int json_fields(const struct cJSON *o, const char *ctx, const json_field *f, size_t n, gen_req *g, llm_err *err);

/* ---- HTTP helpers (http.c) ------------------------------------------------------------------ */

registry *server_registry(llmap_server *s);
meta_cache *server_metas(llmap_server *s);
const server_opts *server_options(const llmap_server *s);
const atomic_bool *server_stopping(const llmap_server *s);
/* Counts producer threads so server_stop can wait for them. */
void server_job_begin(llmap_server *s);
void server_job_end(llmap_server *s);
uint64_t server_next_id(llmap_server *s);

/* Queue a JSON response (takes ownership of obj). */
int reply_json(struct MHD_Connection *c, unsigned status, struct cJSON *obj);
/* Error body: {"error": "..."} for Ollama routes, {"error": {"message": ...}} for /v1. */
int reply_error(struct MHD_Connection *c, bool openai, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* RFC 3339 UTC time with nanoseconds, as Ollama writes created_at. */
void format_time_rfc3339(char *buf, size_t n, const struct timespec *ts);
/* Parses keep_alive: a number of seconds or a Go duration ("5m", "1h30m", "300ms", "-1").
 * Negative means forever. */
int parse_keep_alive(const struct cJSON *v, double *seconds, llm_err *err);

/* ---- API handlers (ollama.c, openai.c) ------------------------------------------------------ */

typedef int (*api_handler)(llmap_server *s, struct MHD_Connection *c, const char *url, struct cJSON *body,
                           double t_start);

int ollama_generate(llmap_server *s, struct MHD_Connection *c, const char *url, struct cJSON *body, double t0);
int ollama_chat(llmap_server *s, struct MHD_Connection *c, const char *url, struct cJSON *body, double t0);
int ollama_tags(llmap_server *s, struct MHD_Connection *c, const char *url, struct cJSON *body, double t0);
int ollama_show(llmap_server *s, struct MHD_Connection *c, const char *url, struct cJSON *body, double t0);
int ollama_ps(llmap_server *s, struct MHD_Connection *c, const char *url, struct cJSON *body, double t0);
int ollama_version(llmap_server *s, struct MHD_Connection *c, const char *url, struct cJSON *body, double t0);
int openai_chat(llmap_server *s, struct MHD_Connection *c, const char *url, struct cJSON *body, double t0);
int openai_completions(llmap_server *s, struct MHD_Connection *c, const char *url, struct cJSON *body, double t0);
int openai_models(llmap_server *s, struct MHD_Connection *c, const char *url, struct cJSON *body, double t0);

/* JSON field access with errors naming the field ("'options.top_k' must be an integer").
 * Absent (or null) fields leave *out untouched and return 0; wrong types return -1. */
int json_str(const struct cJSON *o, const char *key, const char *ctx, const char **out, llm_err *err);
int json_num(const struct cJSON *o, const char *key, const char *ctx, double lo, double hi, double *out,
             llm_err *err);
int json_int(const struct cJSON *o, const char *key, const char *ctx, double lo, double hi, int *out,
             llm_err *err);
int json_bool(const struct cJSON *o, const char *key, const char *ctx, bool *out, llm_err *err);
/* "stop": a string or an array of strings → g->stops/g->sp.stop. */
int json_stops(const struct cJSON *v, const char *ctx, gen_req *g, llm_err *err);

/* ---- the chat page (webpage.c, generated by tools/embed-web.sh from src/server/web/) ---- */

typedef struct web_file {
    const char *path;          /* "/", "/app.js", ... */
    const char *content_type;
    const unsigned char *data;
    size_t size;
} web_file;

extern const web_file WEB_FILES[];
extern const size_t WEB_FILES_COUNT;

#endif
