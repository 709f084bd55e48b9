/*
 * cmd_run — `llmap run MODEL [PROMPT] [options]`: talk to a model.
 *
 * With a prompt (argument or piped stdin) it answers once to stdout and exits, which makes it
 * scriptable. On a terminal it is an interactive chat: a libedit prompt with history, multi-line
 * input (a line ending in '\' continues; """ ... """ spans lines), /commands to change the
 * sampling options or start over, and Ctrl-C to stop an answer without leaving.
 *
 * Every turn re-renders the whole conversation with the model's chat template; the session's
 * prefix cache makes that cost only the new tokens. Ctrl-C reaches the generation through a
 * flag set by the SIGINT handler (the one piece of process-global state here, as a signal
 * handler can only talk through one) and read by the token callback; the handler also cancels
 * the session directly, which stops a long prompt evaluation before any text appears.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <editline/readline.h>

#include "cli/cli.h"
#include "llmap.h"
#include "store/store.h"
#include "util/util.h"

static volatile sig_atomic_t g_interrupted;
static llmap_session *g_session; /* set once, before the handler is installed */

static void on_sigint(int sig)
{
    (void)sig;
    g_interrupted = 1;
    if (g_session)
        llmap_session_cancel(g_session); /* an atomic store: async-signal-safe */
}

static const char USAGE[] =
    "llmap run MODEL [PROMPT] [options]\n"
    "  MODEL is a .gguf file or a model name from the store (llmap list).\n"
    "  With PROMPT, or with text piped on stdin, answers once and exits; otherwise starts a chat.\n"
    "options:\n"
    "  --system TEXT         system prompt\n"
    "  --temperature X       randomness (0: always the most likely token; default 0.8)\n"
    "  --top-k N             sample among the N most likely tokens (0: off; default 40)\n"
    "  --top-p X             ... among the most likely tokens holding mass X (1: off; default 0.9)\n"
    "  --min-p X             drop tokens below X times the best one's probability (0: off)\n"
    "  --repeat-penalty X    penalise tokens of the last --repeat-last-n (default 1.1 over 64)\n"
    "  --repeat-last-n N\n"
    "  --seed N              reproducible sampling (default: random)\n"
    "  --num-predict N       at most N tokens per answer (default: until the model stops)\n"
    "  --stop TEXT           stop when TEXT appears (repeatable)\n"
    "  --ctx N               context length in tokens (default: min(4096, the model's))\n"
    "  --threads N           threads (default: one per core)\n"
    "  --no-mmap             read the model into memory instead of mapping it\n"
    "  --mmap                map the model and page it on demand, never stream it\n"
    "  --stream              stream the layers that do not fit (default: when fit says so)\n"
    "  --mlock               lock the model in RAM\n"
    "  --verbose             loading details, and timings after each answer";

#define MAX_STOPS 16

typedef struct run_opts {
    const char *model;
    const char *prompt_arg; /* NULL: none on the command line */
    char *system;           /* malloc'd or NULL */
    llmap_load_opts load;
    llmap_session_opts sess;
    llmap_sampling samp;
    const char *stops[MAX_STOPS];
    char *owned_stops[MAX_STOPS]; /* copies of the manifest's stop strings */
    int n_owned_stops;
    bool verbose;
} run_opts;

/* ---- option parsing ------------------------------------------------------------------------ */

static int parse_float(const char *name, const char *v, float lo, float hi, float *out)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || !(d >= lo && d <= hi)) {
        fprintf(stderr, "llmap run: %s wants a number in [%g, %g], not '%s'\n", name, (double)lo, (double)hi, v);
        return -1;
    }
    *out = (float)d;
    return 0;
}

static int parse_int(const char *name, const char *v, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "llmap run: %s wants an integer in [%ld, %ld], not '%s'\n", name, lo, hi, v);
        return -1;
    }
    *out = (long)x;
    return 0;
}

/* One sampling option by name ("temperature", "top_k" or "top-k", ...), shared by the command
 * line and /set. Returns 1 when the name is not a sampling option, -1 on a bad value. */
static int set_sampling(llmap_sampling *s, const char *name, const char *v)
{
    char key[32];
    snprintf(key, sizeof key, "%s", name);
    for (char *p = key; *p; p++)
        if (*p == '-')
            *p = '_';
    long n;
    if (!strcmp(key, "temperature"))
        return parse_float(name, v, 0, 100, &s->temperature);
    if (!strcmp(key, "top_p"))
        return parse_float(name, v, 0, 1, &s->top_p);
    if (!strcmp(key, "min_p"))
        return parse_float(name, v, 0, 1, &s->min_p);
    if (!strcmp(key, "repeat_penalty"))
        return parse_float(name, v, 0.01f, 100, &s->repeat_penalty);
    if (!strcmp(key, "frequency_penalty"))
        return parse_float(name, v, -100, 100, &s->frequency_penalty);
    if (!strcmp(key, "presence_penalty"))
        return parse_float(name, v, -100, 100, &s->presence_penalty);
    if (!strcmp(key, "top_k"))
        return parse_int(name, v, 0, 1 << 30, &n) ? -1 : (s->top_k = (int)n, 0);
    if (!strcmp(key, "repeat_last_n"))
        return parse_int(name, v, -1, 1 << 30, &n) ? -1 : (s->repeat_last_n = (int)n, 0);
    if (!strcmp(key, "num_predict"))
        return parse_int(name, v, -1, 1 << 30, &n) ? -1 : (s->num_predict = (int)n, 0);
    if (!strcmp(key, "seed")) {
        char *end;
        errno = 0;
        unsigned long long x = strtoull(v, &end, 10);
        if (errno || end == v || *end || *v == '-') {
            fprintf(stderr, "llmap run: seed wants a non-negative integer, not '%s'\n", v);
            return -1;
        }
        s->seed = x;
        return 0;
    }
    return 1;
}

/* --name value or --name=value. */
static const char *opt_value(int argc, char **argv, int *i, const char *arg, size_t name_len)
{
    if (arg[name_len] == '=')
        return arg + name_len + 1;
    if (*i + 1 < argc)
        return argv[++*i];
    return NULL;
}

/* Parses the command line over the sampling defaults base (NULL: llmap's). Returns 0, 1 after
 * --help, 2 on a usage error (reported). */
static int parse_args(int argc, char **argv, const llmap_sampling *base, run_opts *o)
{
    memset(o, 0, sizeof *o);
    llmap_load_opts_default(&o->load);
    if (base)
        o->samp = *base;
    else
        llmap_sampling_default(&o->samp);
    o->samp.stop = o->stops;
    o->sess.context_shift = true; /* a chat goes on past the context, as in Ollama */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: %s\n", USAGE);
            return 1;
        }
        if (a[0] != '-' || a[1] == 0) {
            if (!o->model)
                o->model = a;
            else if (!o->prompt_arg)
                o->prompt_arg = a;
            else {
                fprintf(stderr, "llmap run: unexpected argument '%s' (quote a prompt with spaces)\n", a);
                return 2;
            }
            continue;
        }
        if (!strcmp(a, "--no-mmap")) {
            o->load.mode = LLMAP_LOAD_READ;
            continue;
        }
        if (!strcmp(a, "--mmap") || !strcmp(a, "--stream")) { /* load mode (memory benchmark) */
            o->load.mode = a[2] == 'm' ? LLMAP_LOAD_MMAP : LLMAP_LOAD_STREAM;
            continue;
        }
        if (!strcmp(a, "--mlock")) {
            o->load.mlock = true;
            continue;
        }
        if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) {
            o->verbose = o->load.verbose = true;
            continue;
        }
        const char *name = a + 2;
        size_t name_len = strcspn(name, "=");
        char key[32];
        snprintf(key, sizeof key, "%.*s", (int)(name_len < 31 ? name_len : 31), name);
        const char *v = a[1] == '-' ? opt_value(argc, argv, &i, name, name_len) : NULL;
        if (!v) {
            fprintf(stderr, "llmap run: unknown option or missing value: %s\n", a);
            return 2;
        }
        long n;
        if (!strcmp(key, "system")) {
            free(o->system);
            o->system = llm_xstrdup(v);
        } else if (!strcmp(key, "stop")) {
            if (o->samp.n_stop >= MAX_STOPS) {
                fprintf(stderr, "llmap run: at most %d --stop strings\n", MAX_STOPS);
                return 2;
            }
            o->stops[o->samp.n_stop++] = v;
        } else if (!strcmp(key, "ctx")) {
            if (parse_int("--ctx", v, 1, 1 << 24, &n))
                return 2;
            o->sess.n_ctx = (int)n;
        } else if (!strcmp(key, "threads")) {
            if (parse_int("--threads", v, 1, 1024, &n))
                return 2;
            o->load.n_threads = (int)n;
        } else {
            int rc = set_sampling(&o->samp, key, v);
            if (rc) {
                if (rc > 0)
                    fprintf(stderr, "llmap run: unknown option --%s\n", key);
                return 2;
            }
        }
    }
    if (!o->model) {
        fprintf(stderr, "usage: %s\n", USAGE);
        return 2;
    }
    return 0;
}

/* ---- model --------------------------------------------------------------------------------- */

/* A path is used as is; anything else is looked up in the store, whose manifest can also
 * supply a system prompt and default options. The command line is then parsed again on top
 * of those defaults, so an option given there wins. */
static char *resolve_model(run_opts *o, int argc, char **argv)
{
    struct stat st;
    if (stat(o->model, &st) == 0 && S_ISREG(st.st_mode))
        return llm_xstrdup(o->model);
    llm_err e = {{0}};
    llm_store *store = NULL;
    char *path = NULL;
    llm_manifest man;
    memset(&man, 0, sizeof man);
    if (llm_store_open(&store, NULL, &e) || llm_store_resolve_ex(store, o->model, &path, &man, &e)) {
        fprintf(stderr, "llmap run: %s\n  (give the path of a .gguf file, or add a model first: llmap pull <url>)\n",
                e.msg);
        llm_manifest_free(&man);
        llm_store_close(store);
        return NULL;
    }
    llmap_sampling base;
    llmap_sampling_default(&base);
    const llm_params *p = &man.params;
    if (p->set & LLM_P_TEMPERATURE)
        base.temperature = p->temperature;
    if (p->set & LLM_P_TOP_K)
        base.top_k = p->top_k;
    if (p->set & LLM_P_TOP_P)
        base.top_p = p->top_p;
    if (p->set & LLM_P_MIN_P)
        base.min_p = p->min_p;
    if (p->set & LLM_P_REPEAT_PENALTY)
        base.repeat_penalty = p->repeat_penalty;
    if (p->set & LLM_P_SEED)
        base.seed = p->seed;
    if (p->set & LLM_P_NUM_PREDICT)
        base.num_predict = p->num_predict;
    free(o->system);
    parse_args(argc, argv, &base, o); /* succeeded once already */
    if (!o->sess.n_ctx && (p->set & LLM_P_NUM_CTX))
        o->sess.n_ctx = p->num_ctx;
    if (!o->system && man.system && *man.system)
        o->system = llm_xstrdup(man.system);
    if (p->set & LLM_P_STOP)
        for (int i = 0; i < p->n_stop && o->samp.n_stop < MAX_STOPS; i++) {
            char *copy = llm_xstrdup(p->stop[i]);
            o->owned_stops[o->n_owned_stops++] = copy;
            o->stops[o->samp.n_stop++] = copy;
        }
    llm_manifest_free(&man);
    llm_store_close(store);
    return path;
}

/* ---- one answer ---------------------------------------------------------------------------- */

typedef struct answer {
    llm_buf text;
} answer;

static int on_text(void *user, const char *text, size_t len)
{
    answer *a = user;
    llm_buf_append(&a->text, text, len);
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return g_interrupted ? 1 : 0;
}

static void print_stats(const llmap_stats *st)
{
    double pps = st->prompt_seconds > 0 ? st->prompt_tokens / st->prompt_seconds : 0;
    double gps = st->gen_seconds > 0 ? st->gen_tokens / st->gen_seconds : 0;
    fprintf(stderr,
            "load time:        %.3f s\n"
            "prompt eval:      %d tokens (%d cached) in %.3f s, %.1f tokens/s\n"
            "generation:       %d tokens in %.3f s, %.1f tokens/s\n"
            "page faults:      %llu major, %llu minor, %.1f MiB read\n"
            "done:             %s\n",
            st->load_seconds, st->prompt_tokens, st->cached_tokens, st->prompt_seconds, pps, st->gen_tokens,
            st->gen_seconds, gps, (unsigned long long)st->major_faults, (unsigned long long)st->minor_faults,
            (double)st->read_bytes / 1048576.0, st->done_reason);
}

/* A conversation: messages with owned strings. */
typedef struct chat {
    llmap_chat_msg *msgs;
    size_t n, cap;
} chat;

static void chat_push(chat *c, const char *role, const char *content)
{
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 8;
        c->msgs = llm_xrealloc(c->msgs, c->cap * sizeof *c->msgs);
    }
    c->msgs[c->n++] = (llmap_chat_msg){.role = llm_xstrdup(role), .content = llm_xstrdup(content)};
}

static void chat_pop(chat *c)
{
    c->n--;
    free((char *)c->msgs[c->n].role);
    free((char *)c->msgs[c->n].content);
}

static void chat_clear(chat *c, const char *system)
{
    while (c->n)
        chat_pop(c);
    if (system && *system)
        chat_push(c, "system", system);
}

static void chat_free(chat *c)
{
    while (c->n)
        chat_pop(c);
    free(c->msgs);
}

/* Renders the conversation (ending with the user's turn), generates and prints the answer.
 * The answer joins the conversation unless it was interrupted. Returns 0, 1 when interrupted,
 * or -1 on an error (already reported). */
static int respond(llmap_model *m, llmap_session *s, chat *c, const run_opts *o)
{
    char err[1024];
    char *prompt = NULL;
    if (llmap_chat_render(m, c->msgs, c->n, true, &prompt, err, sizeof err)) {
        fprintf(stderr, "llmap run: chat template: %s\n", err);
        return -1;
    }
    answer a = {{0}};
    llmap_stats st;
    g_interrupted = 0;
    int rc = llmap_generate(s, prompt, &o->samp, on_text, &a, &st, err, sizeof err);
    free(prompt);
    if (a.text.len == 0 || a.text.data[a.text.len - 1] != '\n')
        putchar('\n');
    fflush(stdout);
    if (rc) {
        fprintf(stderr, "llmap run: %s\n", err);
    } else if (!strcmp(st.done_reason, "cancel")) {
        fprintf(stderr, "(answer stopped)\n");
        rc = 1;
    } else {
        chat_push(c, "assistant", a.text.len ? llm_buf_cstr(&a.text) : "");
    }
    if (o->verbose)
        print_stats(&st);
    llm_buf_free(&a.text);
    return rc;
}

/* ---- one-shot ------------------------------------------------------------------------------ */

static char *read_all(FILE *f)
{
    llm_buf b = {0};
    llm_buf_append_file(&b, f);
    llm_buf_cstr(&b);
    return b.data;
}

/* The one-shot question (argument, then piped stdin) as a chat; 1 (reported) when empty. */
static int one_shot_chat(const run_opts *o, bool read_stdin, chat *c)
{
    llm_buf prompt = {0};
    if (o->prompt_arg)
        llm_buf_puts(&prompt, o->prompt_arg);
    if (read_stdin) {
        char *in = read_all(stdin);
        size_t len = strlen(in);
        while (len && (in[len - 1] == '\n' || in[len - 1] == '\r'))
            in[--len] = 0;
        if (prompt.len && len)
            llm_buf_puts(&prompt, "\n\n");
        llm_buf_puts(&prompt, in);
        free(in);
    }
    if (prompt.len == 0) {
        llm_buf_free(&prompt);
        fprintf(stderr, "llmap run: the prompt is empty\n");
        return 1;
    }
    chat_clear(c, o->system);
    chat_push(c, "user", llm_buf_cstr(&prompt));
    llm_buf_free(&prompt);
    return 0;
}

/* Slack over the rendered prompt's bytes in a one-shot context: the BOS and the tokenizer's
 * dummy prefix space are tokens that no byte of the text pays for. */
#define ONE_SHOT_CTX_SLACK 16

/* A one-shot answer of at most num_predict tokens never needs more context than its prompt and
 * that answer (llama.cpp's llama-simple sizes its context the same way), and every token holds
 * at least one byte of the rendered text: so without --ctx, the context is the rendered prompt's
 * bytes + slack + num_predict when that is below the default. The KV cache then costs a few
 * pages instead of a committed default-sized one (134 MiB for a 1.1B model at 4096 tokens,
 * 30-100 ms before the first token and again at exit); the answer is the same. */
static void size_one_shot_ctx(llmap_model *m, const chat *c, run_opts *o)
{
    if (o->sess.n_ctx || o->samp.num_predict < 0)
        return;
    char err[256];
    char *prompt = NULL;
    if (llmap_chat_render(m, c->msgs, c->n, true, &prompt, err, sizeof err))
        return; /* respond() reports it */
    llmap_model_info info;
    llmap_model_get_info(m, &info);
    uint64_t trained = info.n_ctx_train ? info.n_ctx_train : 4096;
    uint64_t def = trained < 4096 ? trained : 4096;
    uint64_t need = (uint64_t)strlen(prompt) + ONE_SHOT_CTX_SLACK + (uint64_t)o->samp.num_predict;
    free(prompt);
    if (need < def)
        o->sess.n_ctx = (int)need;
}

static int one_shot(llmap_model *m, llmap_session *s, run_opts *o, chat *c)
{
    int rc = respond(m, s, c, o);
    return rc < 0 ? 1 : rc > 0 ? 130 : 0; /* 130: stopped by Ctrl-C, as shells report SIGINT */
}

/* ---- interactive --------------------------------------------------------------------------- */

static const char HELP[] = "Available commands:\n"
                           "  /set PARAMETER VALUE   temperature, top_k, top_p, min_p, repeat_penalty,\n"
                           "                         repeat_last_n, seed, num_predict (also /set parameter ...)\n"
                           "  /set system TEXT       set the system prompt (starts a new conversation)\n"
                           "  /set verbose | quiet   show or hide timings after each answer\n"
                           "  /show info             describe the model\n"
                           "  /show parameters       the current sampling options\n"
                           "  /clear                 start a new conversation\n"
                           "  /bye                   exit (also Ctrl-D)\n"
                           "  /?, /help              this help\n\n"
                           "A line ending in \\ continues on the next line; \"\"\" starts and ends a\n"
                           "multi-line message. Ctrl-C stops an answer.\n";

/* Reads one message, joining continuation lines. NULL at end of input; *interrupted when
 * Ctrl-C was pressed at the prompt (the partial input is dropped). */
static char *read_message(bool *interrupted)
{
    llm_buf msg = {0};
    bool triple = false;
    const char *ps = ">>> ";
    *interrupted = false;
    for (;;) {
        g_interrupted = 0;
        char *line = readline(ps);
        if (!line) {
            if (g_interrupted)
                *interrupted = true;
            llm_buf_free(&msg);
            return NULL;
        }
        size_t len = strlen(line);
        if (!triple && msg.len == 0 && !strncmp(line, "\"\"\"", 3)) {
            triple = true;
            memmove(line, line + 3, len - 2);
            len -= 3;
            if (len >= 3 && !strcmp(line + len - 3, "\"\"\"")) { /* """one line""" */
                llm_buf_append(&msg, line, len - 3);
                free(line);
                break;
            }
            llm_buf_append(&msg, line, len);
            free(line);
            ps = "... ";
            continue;
        }
        if (triple) {
            if (msg.len)
                llm_buf_puts(&msg, "\n");
            bool end = len >= 3 && !strcmp(line + len - 3, "\"\"\"");
            llm_buf_append(&msg, line, end ? len - 3 : len);
            free(line);
            if (end)
                break;
            continue;
        }
        if (len && line[len - 1] == '\\') {
            llm_buf_append(&msg, line, len - 1);
            llm_buf_puts(&msg, "\n");
            free(line);
            ps = "... ";
            continue;
        }
        llm_buf_append(&msg, line, len);
        free(line);
        break;
    }
    return (char *)llm_buf_cstr(&msg);
}

static void show_info(const llmap_model *m, const llmap_session *s, const run_opts *o)
{
    llmap_model_info i;
    llmap_model_get_info(m, &i);
    (void)s;
    printf("  Model\n"
           "    name              %s\n"
           "    architecture      %s\n"
           "    parameters        %.2fM\n"
           "    file              %s (%.1f MiB)\n"
           "    context length    %u (this chat: %s)\n"
           "    embedding length  %u\n"
           "    layers            %u\n"
           "    heads             %u (key/value heads: %u)\n"
           "    vocabulary        %u tokens\n"
           "    chat template     %s\n"
           "    loaded in         %.3f s\n",
           i.name, i.arch, (double)i.n_params / 1e6, i.path, (double)i.file_size / 1048576.0, i.n_ctx_train,
           o->sess.n_ctx ? "--ctx" : "default", i.n_embd, i.n_layer, i.n_head, i.n_head_kv, i.n_vocab,
           i.chat_template ? "from the model file" : "none (ChatML is used)", i.load_seconds);
    if (o->system)
        printf("  System\n    %s\n", o->system);
}

static void show_parameters(const run_opts *o)
{
    const llmap_sampling *s = &o->samp;
    printf("  temperature       %g\n  top_k             %d\n  top_p             %g\n  min_p             %g\n"
           "  repeat_penalty    %g\n  repeat_last_n     %d\n  num_predict       %d\n",
           (double)s->temperature, s->top_k, (double)s->top_p, (double)s->min_p, (double)s->repeat_penalty,
           s->repeat_last_n, s->num_predict);
    if (s->seed == LLMAP_SEED_RANDOM)
        printf("  seed              random\n");
    else
        printf("  seed              %llu\n", (unsigned long long)s->seed);
}

/* Splits "word rest" in place: returns the word, *rest points after the spaces. */
static char *next_word(char *s, char **rest)
{
    while (*s == ' ' || *s == '\t')
        s++;
    char *w = s;
    while (*s && *s != ' ' && *s != '\t')
        s++;
    if (*s)
        *s++ = 0;
    while (*s == ' ' || *s == '\t')
        s++;
    *rest = s;
    return w;
}

/* Runs a /command. Returns 1 to exit the chat, 0 otherwise. */
static int command(char *line, llmap_model *m, llmap_session *s, chat *c, run_opts *o)
{
    char *rest;
    char *cmd = next_word(line, &rest);
    if (!strcmp(cmd, "/bye") || !strcmp(cmd, "/exit") || !strcmp(cmd, "/quit"))
        return 1;
    if (!strcmp(cmd, "/?") || !strcmp(cmd, "/help")) {
        fputs(HELP, stdout);
    } else if (!strcmp(cmd, "/clear")) {
        chat_clear(c, o->system);
        llmap_session_reset(s);
        printf("Cleared session context\n");
    } else if (!strcmp(cmd, "/show")) {
        char *what = next_word(rest, &rest);
        if (!strcmp(what, "info"))
            show_info(m, s, o);
        else if (!strcmp(what, "parameters"))
            show_parameters(o);
        else
            printf("Usage: /show info | /show parameters\n");
    } else if (!strcmp(cmd, "/set")) {
        char *key = next_word(rest, &rest);
        if (!strcmp(key, "parameter"))
            key = next_word(rest, &rest);
        if (!strcmp(key, "verbose")) {
            o->verbose = true;
            printf("Set 'verbose' mode.\n");
        } else if (!strcmp(key, "quiet")) {
            o->verbose = false;
            printf("Set 'quiet' mode.\n");
        } else if (!strcmp(key, "system")) {
            free(o->system);
            o->system = *rest ? llm_xstrdup(rest) : NULL;
            chat_clear(c, o->system);
            printf("Set system message.\n");
        } else if (!*key || !*rest) {
            printf("Usage: /set PARAMETER VALUE (see /?)\n");
        } else {
            char *value = next_word(rest, &rest);
            int rc = set_sampling(&o->samp, key, value);
            if (rc > 0)
                printf("Unknown parameter '%s' (see /?)\n", key);
            else if (rc == 0)
                printf("Set parameter '%s' to '%s'\n", key, value);
        }
    } else {
        printf("Unknown command '%s'. Type /? for help\n", cmd);
    }
    return 0;
}

/* Where the input history lives: beside the model store ($LLMAP_HOME, else
 * $XDG_DATA_HOME/llmap, else ~/.local/share/llmap). NULL when no home is known. */
static char *history_path(void)
{
    llm_buf b = {0};
    const char *home = getenv("LLMAP_HOME"), *xdg = getenv("XDG_DATA_HOME"), *user = getenv("HOME");
    if (home && *home)
        llm_buf_printf(&b, "%s/history", home);
    else if (xdg && *xdg)
        llm_buf_printf(&b, "%s/llmap/history", xdg);
    else if (user && *user)
        llm_buf_printf(&b, "%s/.local/share/llmap/history", user);
    else
        return NULL;
    return b.data;
}

static int interactive(llmap_model *m, llmap_session *s, run_opts *o)
{
    chat c = {0};
    chat_clear(&c, o->system);
    using_history();
    stifle_history(1000);
    char *hist_file = history_path();
    if (hist_file)
        read_history(hist_file); /* none yet is fine */
    for (;;) {
        bool interrupted;
        char *msg = read_message(&interrupted);
        if (!msg) {
            if (interrupted) {
                printf("\nUse Ctrl-D or /bye to exit.\n");
                continue;
            }
            putchar('\n');
            break;
        }
        if (*msg)
            add_history(msg);
        int quit = 0;
        if (msg[0] == '/')
            quit = command(msg, m, s, &c, o);
        else if (*msg) {
            chat_push(&c, "user", msg);
            size_t n_before = c.n;
            respond(m, s, &c, o);
            if (c.n == n_before) /* stopped or failed: the question goes too */
                chat_pop(&c);
            putchar('\n');
        }
        free(msg);
        if (quit)
            break;
    }
    if (hist_file)
        write_history(hist_file); /* best effort: the store directory may not exist yet */
    free(hist_file);
    clear_history();
    chat_free(&c);
    return 0;
}

/* ---- the command ----------------------------------------------------------------------------- */

int cmd_run(int argc, char **argv)
{
    run_opts o;
    int rc = parse_args(argc, argv, NULL, &o);
    if (rc) {
        free(o.system);
        return rc == 1 ? 0 : rc;
    }
    char *path = resolve_model(&o, argc, argv);
    if (!path) {
        free(o.system);
        return 1;
    }
    char err[1024];
    llmap_model *m = NULL;
    llmap_session *s = NULL;
    chat question = {0};
    o.load.n_ctx = o.sess.n_ctx; /* (the streaming plan leaves room for this context's KV cache) */
    if (llmap_model_load(path, &o.load, &m, err, sizeof err)) {
        fprintf(stderr, "llmap run: cannot load %s: %s\n", path, err);
        rc = 1;
        goto out;
    }
    bool stdin_tty = isatty(STDIN_FILENO);
    struct stat st;
    /* With a prompt argument, stdin is added only when something was really piped or
     * redirected into it (a script's inherited, never-closed stdin must not hang us). */
    bool stdin_data = !stdin_tty && fstat(STDIN_FILENO, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISREG(st.st_mode));
    bool once = o.prompt_arg || !stdin_tty;
    if (once) {
        if (one_shot_chat(&o, o.prompt_arg ? stdin_data : true, &question)) {
            rc = 1;
            goto out;
        }
        size_one_shot_ctx(m, &question, &o);
    }
    if (llmap_session_new(m, &o.sess, &s, err, sizeof err)) {
        fprintf(stderr, "llmap run: %s\n", err);
        rc = 1;
        goto out;
    }
    /* Ctrl-C stops an answer (the token callback reads the flag), not the program. No
     * SA_RESTART: it also interrupts the line editor so the prompt can say how to leave. */
    g_session = s;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);

    if (once)
        rc = one_shot(m, s, &o, &question);
    else
        rc = interactive(m, s, &o);
out:
    signal(SIGINT, SIG_DFL);
    g_session = NULL;
    llmap_session_free(s);
    llmap_model_free(m);
    chat_free(&question);
    free(path);
    free(o.system);
    for (int i = 0; i < o.n_owned_stops; i++)
        free(o.owned_stops[i]);
    return rc;
}
