/*
 * registry — the models the server has loaded: one llmap_model per name, shared by every
 * request, each with up to `parallel` sessions (slots) that requests borrow one at a time.
 *
 * A model is loaded by the first request that needs it (others wait for that load instead of
 * loading twice), stays while requests hold references, and is unloaded by the reaper thread
 * once its keep_alive has passed since its last use. A slot remembers the text its KV cache
 * holds so the next request goes to the slot sharing the longest prefix (the engine then
 * reuses that prefix instead of evaluating it again).
 */
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/server.h"

struct srv_slot {
    llmap_session *sess; /* NULL until first use */
    int n_ctx;
    char *history;       /* text in the session's cache (a heuristic for slot choice) */
    bool busy;
};

struct srv_model {
    char *name, *path;
    llmap_model *m;         /* NULL while loading */
    bool loading;
    int refs;
    double keep_alive;      /* seconds from last release; < 0: forever */
    double expires;         /* monotonic time of unload when refs == 0 */
    struct timespec expires_wall;
    uint64_t file_size, major_faults, requests;
    srv_slot *slots;
    int n_slots;
    srv_model *next;
};

struct registry {
    const server_opts *opts;
    const atomic_bool *stopping;
    meta_cache *metas;
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* loads finished, slots freed, reaper wake-ups */
    srv_model *models;
    pthread_t reaper;
    bool quit;
};

static void model_free(srv_model *e)
{
    for (int i = 0; i < e->n_slots; i++) {
        llmap_session_free(e->slots[i].sess);
        free(e->slots[i].history);
    }
    free(e->slots);
    llmap_model_free(e->m);
    free(e->name);
    free(e->path);
    free(e);
}

static void set_expiry(srv_model *e)
{
    double now = llm_now();
    e->expires = e->keep_alive < 0 ? 1e300 : now + e->keep_alive;
    clock_gettime(CLOCK_REALTIME, &e->expires_wall);
    if (e->keep_alive < 0)
        e->expires_wall.tv_sec += 100L * 365 * 86400; /* "forever", as an RFC 3339 time */
    else
        e->expires_wall.tv_sec += (time_t)e->keep_alive;
}

/* Unlinks every idle model whose time has come (or all idle ones); caller holds mu. */
static srv_model *take_expired(registry *r, bool all)
{
    srv_model *dead = NULL, **pp = &r->models;
    double now = llm_now();
    while (*pp) {
        srv_model *e = *pp;
        if (!e->loading && e->refs == 0 && (all || now >= e->expires)) {
            *pp = e->next;
            e->next = dead;
            dead = e;
        } else {
            pp = &e->next;
        }
    }
    return dead;
}

static void free_list(srv_model *e)
{
    while (e) {
        srv_model *next = e->next;
        model_free(e);
        e = next;
    }
}

static void *reaper_main(void *arg)
{
    registry *r = arg;
    pthread_mutex_lock(&r->mu);
    while (!r->quit) {
        srv_model *dead = take_expired(r, false);
        if (dead) {
            pthread_mutex_unlock(&r->mu);
            free_list(dead); /* unmapping can take a while: not under the lock */
            pthread_mutex_lock(&r->mu);
            continue;
        }
        double next = llm_now() + 60;
        for (srv_model *e = r->models; e; e = e->next)
            if (e->refs == 0 && !e->loading && e->expires < next)
                next = e->expires;
        double wait = next - llm_now() + 0.01;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double t = ts.tv_sec + ts.tv_nsec / 1e9 + (wait > 0 ? wait : 0.01);
        ts.tv_sec = (time_t)t;
        ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
        pthread_cond_timedwait(&r->cv, &r->mu, &ts);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

registry *registry_new(const server_opts *o, const atomic_bool *stopping, meta_cache *metas)
{
    registry *r = llm_xcalloc(1, sizeof *r);
    r->metas = metas;
    r->opts = o;
    r->stopping = stopping;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    if (pthread_create(&r->reaper, NULL, reaper_main, r)) {
        fprintf(stderr, "llmap serve: cannot start the unload thread\n");
        abort();
    }
    return r;
}

void registry_free(registry *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    r->quit = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->reaper, NULL);
    /* Every request has finished by now (server_stop waits for them): all refs are 0. */
    free_list(take_expired(r, true));
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

static srv_model *find(registry *r, const char *name)
{
    for (srv_model *e = r->models; e; e = e->next)
        if (!strcmp(e->name, name))
            return e;
    return NULL;
}

int registry_acquire(registry *r, const char *name, srv_model **out, double *load_seconds, int *status,
                     llm_err *err)
{
    double t0 = llm_now();
    char *path, *canon;
    *out = NULL;
    if (models_resolve(r->opts, name, &path, &canon, status, err))
        return -1;
    pthread_mutex_lock(&r->mu);
    srv_model *e;
    while ((e = find(r, canon)) && e->loading)
        pthread_cond_wait(&r->cv, &r->mu);
    if (e) {
        e->refs++;
        e->requests++;
        pthread_mutex_unlock(&r->mu);
        free(path);
        free(canon);
        *out = e;
        *load_seconds = llm_now() - t0;
        return 0;
    }
    e = llm_xcalloc(1, sizeof *e);
    e->name = canon;
    e->path = path;
    e->loading = true;
    e->refs = 1;
    e->requests = 1;
    e->keep_alive = r->opts->keep_alive;
    e->n_slots = r->opts->parallel;
    e->slots = llm_xcalloc((size_t)e->n_slots, sizeof *e->slots);
    e->next = r->models;
    r->models = e;
    pthread_mutex_unlock(&r->mu);

    llmap_load_opts lo;
    llmap_load_opts_default(&lo);
    lo.n_threads = r->opts->n_threads;
    char msg[512] = "";
    llmap_model *m = NULL;
    int rc = llmap_model_load(path, &lo, &m, msg, sizeof msg);

    pthread_mutex_lock(&r->mu);
    if (rc) {
        for (srv_model **pp = &r->models; *pp; pp = &(*pp)->next)
            if (*pp == e) {
                *pp = e->next;
                break;
            }
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
        llm_errf(err, "cannot load model '%s': %s", name, msg);
        model_free(e);
        *status = 500;
        return -1;
    }
    e->m = m;
    e->loading = false;
    llmap_model_info info;
    llmap_model_get_info(m, &info);
    e->file_size = info.file_size;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    *out = e;
    *load_seconds = llm_now() - t0;
    return 0;
}

void registry_release(registry *r, srv_model *e, double keep_alive)
{
    pthread_mutex_lock(&r->mu);
    e->keep_alive = keep_alive;
    set_expiry(e);
    e->refs--;
    pthread_cond_broadcast(&r->cv); /* the reaper recomputes its deadline */
    pthread_mutex_unlock(&r->mu);
}

void registry_unload(registry *r, const char *name)
{
    char *path, *canon;
    int status;
    llm_err err;
    if (models_resolve(r->opts, name, &path, &canon, &status, &err))
        return;
    srv_model *dead = NULL;
    pthread_mutex_lock(&r->mu);
    for (srv_model **pp = &r->models; *pp; pp = &(*pp)->next) {
        srv_model *e = *pp;
        if (!strcmp(e->name, canon) && !e->loading && e->refs == 0) {
            *pp = e->next;
            dead = e;
            dead->next = NULL;
            break;
        }
    }
    pthread_mutex_unlock(&r->mu);
    free_list(dead);
    free(path);
    free(canon);
}

llmap_model *srv_model_engine(srv_model *m) { return m->m; }
const char *srv_model_name(const srv_model *m) { return m->name; }
llmap_session *srv_slot_session(srv_slot *s) { return s->sess; }

static size_t common_prefix(const char *a, const char *b)
{
    size_t n = 0;
    if (!a || !b)
        return 0;
    while (a[n] && a[n] == b[n])
        n++;
    return n;
}

/* The free slot to use: same context size and longest shared prefix, else any free one. */
static srv_slot *pick_slot(srv_model *e, int n_ctx, const char *prompt)
{
    srv_slot *best = NULL;
    long best_score = -1;
    for (int i = 0; i < e->n_slots; i++) {
        srv_slot *s = &e->slots[i];
        if (s->busy)
            continue;
        long score = s->sess && s->n_ctx == n_ctx ? (long)common_prefix(s->history, prompt) + 1 : 0;
        if (score > best_score) {
            best = s;
            best_score = score;
        }
    }
    return best;
}

srv_slot *registry_slot_acquire(registry *r, srv_model *e, int n_ctx, const char *prompt,
                                const atomic_bool *cancel, llm_err *err)
{
    pthread_mutex_lock(&r->mu);
    srv_slot *s;
    while (!(s = pick_slot(e, n_ctx, prompt))) {
        if ((cancel && atomic_load(cancel)) || atomic_load(r->stopping)) {
            pthread_mutex_unlock(&r->mu);
            llm_errf(err, "cancelled while waiting for a free slot");
            return NULL;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&r->cv, &r->mu, &ts);
    }
    s->busy = true;
    pthread_mutex_unlock(&r->mu);
    /* A client cannot make the server allocate a cache beyond what the model was trained
     * for: num_ctx is capped at the trained context. */
    llmap_model_info info;
    llmap_model_get_info(e->m, &info);
    if (info.n_ctx_train > 0 && (n_ctx <= 0 || n_ctx > (int)info.n_ctx_train))
        n_ctx = n_ctx <= 0 && info.n_ctx_train > 4096 ? 4096 : (int)info.n_ctx_train;
    if (s->sess && s->n_ctx != n_ctx) {
        llmap_session_free(s->sess);
        s->sess = NULL;
        free(s->history);
        s->history = NULL;
    }
    if (!s->sess) {
        /* As Ollama does: a prompt longer than the context keeps its most recent tokens,
         * and a full cache is shifted instead of ending the answer with an error. */
        llmap_session_opts so = {.n_ctx = n_ctx, .context_shift = true};
        char msg[512] = "";
        if (llmap_session_new(e->m, &so, &s->sess, msg, sizeof msg)) {
            llm_errf(err, "cannot create a session (n_ctx %d): %s", n_ctx, msg);
            s->sess = NULL;
            registry_slot_release(r, e, s, NULL, 0);
            return NULL;
        }
        s->n_ctx = n_ctx;
    }
    return s;
}

void registry_slot_release(registry *r, srv_model *e, srv_slot *s, const char *history, uint64_t major_faults)
{
    free(s->history);
    s->history = history ? llm_xstrdup(history) : NULL;
    if (!history && s->sess)
        llmap_session_reset(s->sess);
    pthread_mutex_lock(&r->mu);
    s->busy = false;
    e->major_faults += major_faults;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

cJSON *registry_ps_json(registry *r)
{
    /* Copy what is needed under the lock; reading file metadata happens outside it. */
    typedef struct row {
        char *name, *path;
        struct timespec expires;
        uint64_t size, faults, requests;
        int refs, busy, n_slots;
    } row;
    row *rows = NULL;
    size_t n = 0, cap = 0;
    pthread_mutex_lock(&r->mu);
    for (srv_model *e = r->models; e; e = e->next) {
        if (e->loading)
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 4;
            rows = llm_xrealloc(rows, cap * sizeof *rows);
        }
        row *w = &rows[n++];
        w->name = llm_xstrdup(e->name);
        w->path = llm_xstrdup(e->path);
        w->expires = e->expires_wall;
        if (e->refs > 0) { /* in use: expires keep_alive after the current requests end */
            clock_gettime(CLOCK_REALTIME, &w->expires);
            w->expires.tv_sec += e->keep_alive < 0 ? 100L * 365 * 86400 : (time_t)e->keep_alive;
        }
        w->size = e->file_size;
        w->faults = e->major_faults;
        w->requests = e->requests;
        w->refs = e->refs;
        w->n_slots = e->n_slots;
        w->busy = 0;
        for (int i = 0; i < e->n_slots; i++)
            w->busy += e->slots[i].busy;
    }
    pthread_mutex_unlock(&r->mu);

    cJSON *out = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(out, "models");
    for (size_t i = 0; i < n; i++) {
        row *w = &rows[i];
        model_meta meta;
        llm_err err;
        bool have_meta = !model_meta_read(r->metas, w->path, w->name, &meta, &err);
        cJSON *o = cJSON_CreateObject();
        char when[64];
        format_time_rfc3339(when, sizeof when, &w->expires);
        cJSON_AddStringToObject(o, "name", w->name);
        cJSON_AddStringToObject(o, "model", w->name);
        cJSON_AddNumberToObject(o, "size", (double)w->size);
        cJSON_AddStringToObject(o, "digest", "");
        if (have_meta)
            cJSON_AddItemToObject(o, "details", model_details_json(&meta));
        cJSON_AddStringToObject(o, "expires_at", when);
        cJSON_AddNumberToObject(o, "size_vram", 0);
        /* llmap extras: how much of the mapped file is in RAM, and what paging cost so far. */
        uint64_t resident = model_file_resident(w->path);
        cJSON_AddNumberToObject(o, "resident_bytes", (double)resident);
        cJSON_AddNumberToObject(o, "residency", w->size ? (double)resident / (double)w->size : 0);
        cJSON_AddNumberToObject(o, "major_faults", (double)w->faults);
        cJSON_AddNumberToObject(o, "requests", (double)w->requests);
        cJSON_AddNumberToObject(o, "active_requests", w->refs);
        cJSON_AddNumberToObject(o, "busy_slots", w->busy);
        cJSON_AddNumberToObject(o, "slots", w->n_slots);
        cJSON_AddItemToArray(arr, o);
        if (have_meta)
            model_meta_free(&meta);
        free(w->name);
        free(w->path);
    }
    free(rows);
    return out;
}
