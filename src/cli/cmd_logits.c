/*
 * llmap logits MODEL TEXT — evaluates a prompt in one batch and prints what the model
 * predicts at every position, in the field layout of the shared llama.cpp references
 * (tokens, top, greedy_tokens, greedy_logits, greedy_margins), so a model's forward pass can be
 * checked against llama.cpp from the command line. --tokens bypasses the tokenizer;
 * --logits-out writes the last position's logits as raw little-endian f32.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "model/model.h"
#include "text/text.h"

static const char USAGE[] =
    "llmap logits MODEL [TEXT] [--tokens ID,ID,...] [--top K] [--greedy N] [--json] [--threads N]\n"
    "                   [--no-mmap] [--kv-f16] [--logits-out FILE]\n"
    "  Tokenizes TEXT (BOS as the model says; special tokens not parsed), evaluates it in one batch and\n"
    "  prints the K (default 20) highest logits at every position; --greedy N adds N greedy steps.";

typedef struct logits_args {
    const char *model, *text, *tokens, *logits_out;
    int top_k, greedy, threads;
    bool json, no_mmap, kv_f16;
} logits_args;

static int parse_args(int argc, char **argv, logits_args *a)
{
    static const struct option opts[] = {
        {"top", required_argument, 0, 'k'},     {"greedy", required_argument, 0, 'g'},
        {"json", no_argument, 0, 'j'},          {"threads", required_argument, 0, 't'},
        {"no-mmap", no_argument, 0, 'n'},       {"kv-f16", no_argument, 0, 'f'},
        {"tokens", required_argument, 0, 'T'},  {"logits-out", required_argument, 0, 'o'},
        {"help", no_argument, 0, 'h'},          {0},
    };
    memset(a, 0, sizeof *a);
    a->top_k = 20;
    a->threads = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "k:g:jt:nfT:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'k': a->top_k = atoi(optarg); break;
        case 'g': a->greedy = atoi(optarg); break;
        case 'j': a->json = true; break;
        case 't': a->threads = atoi(optarg); break;
        case 'n': a->no_mmap = true; break;
        case 'f': a->kv_f16 = true; break;
        case 'T': a->tokens = optarg; break;
        case 'o': a->logits_out = optarg; break;
        case 'h': printf("usage: %s\n", USAGE); return 1;
        default: return -1;
        }
    }
    if (optind >= argc)
        return -1;
    a->model = argv[optind++];
    if (optind < argc)
        a->text = argv[optind++];
    if (optind < argc || (!a->text == !a->tokens) || a->top_k < 1 || a->top_k > 1000 || a->greedy < 0 ||
        a->greedy > 100000)
        return -1;
    return 0;
}

/* "1,15043,29892" -> ids. Every field must be a decimal integer. */
static int parse_token_list(const char *s, int32_t **ids, int *n, llm_err *err)
{
    int cap = 16, cnt = 0;
    int32_t *v = llm_xmalloc(sizeof *v * (size_t)cap);
    const char *p = s;
    for (;;) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < 0 || x > INT32_MAX || (*end && *end != ',')) {
            free(v);
            return llm_errf(err, "--tokens: '%s' is not a comma-separated list of token ids", s);
        }
        if (cnt == cap)
            v = llm_xrealloc(v, sizeof *v * (size_t)(cap *= 2));
        v[cnt++] = (int32_t)x;
        if (!*end)
            break;
        p = end + 1;
    }
    *ids = v;
    *n = cnt;
    return 0;
}

static int tokenize_text(const llm_model *m, const char *text, int32_t **ids, int *n, llm_err *err)
{
    llm_vocab *v = NULL;
    if (llm_vocab_load(&m->gguf, &v, err))
        return -1;
    size_t cnt = 0;
    int rc = llm_tokenize(v, text, strlen(text), true, false, ids, &cnt, err);
    llm_vocab_free(v);
    if (rc)
        return -1;
    if (cnt == 0) {
        free(*ids);
        return llm_errf(err, "the text produced no tokens");
    }
    *n = (int)cnt;
    return 0;
}

/* Ids of the k highest logits, descending, ties toward the lower id. */
static void top_k(const float *l, int n, int k, int *ids)
{
    int have = 0;
    for (int i = 0; i < n; i++) {
        int r = have < k ? have : k;
        while (r > 0 && l[i] > l[ids[r - 1]])
            r--;
        if (r >= k)
            continue;
        int last = have < k ? have : k - 1;
        memmove(&ids[r + 1], &ids[r], sizeof(int) * (size_t)(last - r));
        ids[r] = i;
        if (have < k)
            have++;
    }
}

static void print_int_array(const int32_t *v, int n)
{
    putchar('[');
    for (int i = 0; i < n; i++)
        printf(i ? ", %d" : "%d", v[i]);
    putchar(']');
}

static void print_float_array(const float *v, int n)
{
    putchar('[');
    for (int i = 0; i < n; i++)
        printf(i ? ", %.9g" : "%.9g", (double)v[i]);
    putchar(']');
}

static int write_logits(const char *path, const float *l, int n, llm_err *err)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return llm_errf(err, "%s: cannot create: %s", path, strerror(errno));
    size_t w = fwrite(l, sizeof(float), (size_t)n, f);
    if (fclose(f) || w != (size_t)n)
        return llm_errf(err, "%s: write failed", path);
    return 0;
}

typedef struct greedy_out {
    int32_t *tokens;
    float *logits, *margins;
} greedy_out;

/* Greedy steps from the last prompt logits `cur` (overwritten), no stop at end-of-text. */
static int run_greedy(llm_ctx *c, float *cur, int n_vocab, int steps, greedy_out *g, llm_err *err)
{
    for (int s = 0; s < steps; s++) {
        int best[2];
        top_k(cur, n_vocab, 2, best);
        g->tokens[s] = best[0];
        g->logits[s] = cur[best[0]];
        g->margins[s] = n_vocab > 1 ? cur[best[0]] - cur[best[1]] : 0;
        if (s + 1 < steps && llm_forward(c, &g->tokens[s], 1, cur, false, err))
            return -1;
    }
    return 0;
}

static void print_json(const logits_args *a, const int32_t *toks, int n, const float *logits, int n_vocab,
                       const greedy_out *g)
{
    int *ids = llm_xmalloc(sizeof(int) * (size_t)a->top_k);
    int k = a->top_k < n_vocab ? a->top_k : n_vocab;
    printf("{\"n_vocab\": %d, \"n_tokens\": %d, \"tokens\": ", n_vocab, n);
    print_int_array(toks, n);
    printf(", \"top_k\": %d, \"top\": [", k);
    for (int p = 0; p < n; p++) {
        const float *l = logits + (size_t)p * n_vocab;
        top_k(l, n_vocab, k, ids);
        printf(p ? ", [" : "[");
        for (int r = 0; r < k; r++)
            printf(r ? ", [%d, %.9g]" : "[%d, %.9g]", ids[r], (double)l[ids[r]]);
        putchar(']');
    }
    putchar(']');
    if (a->greedy) {
        printf(", \"greedy_n\": %d, \"greedy_tokens\": ", a->greedy);
        print_int_array(g->tokens, a->greedy);
        printf(", \"greedy_logits\": ");
        print_float_array(g->logits, a->greedy);
        printf(", \"greedy_margins\": ");
        print_float_array(g->margins, a->greedy);
    }
    printf("}\n");
    free(ids);
}

static void print_text(const logits_args *a, const int32_t *toks, int n, const float *logits, int n_vocab,
                       const greedy_out *g)
{
    int k = a->top_k < n_vocab ? a->top_k : n_vocab;
    int *ids = llm_xmalloc(sizeof(int) * (size_t)k);
    printf("tokens (%d): ", n);
    print_int_array(toks, n);
    printf("\ntop %d at the last position:\n", k);
    const float *l = logits + (size_t)(n - 1) * n_vocab;
    top_k(l, n_vocab, k, ids);
    for (int r = 0; r < k; r++)
        printf("  %6d  %10.6f\n", ids[r], (double)l[ids[r]]);
    if (a->greedy) {
        printf("greedy: ");
        print_int_array(g->tokens, a->greedy);
        putchar('\n');
    }
    free(ids);
}

int cmd_logits(int argc, char **argv)
{
    logits_args a;
    int prc = parse_args(argc, argv, &a);
    if (prc > 0)
        return 0;
    if (prc < 0)
        return cli_usage(USAGE);
    llm_err err = {{0}};
    llm_map_opts mo = {.mode = a.no_mmap ? LLM_MAP_READ : LLM_MAP_MMAP};
    llm_model m;
    if (llm_model_load(&m, a.model, &mo, &err))
        return cli_fail("logits", "%s", err.msg);
    int32_t *toks = NULL;
    int n = 0, rc = 1;
    float *logits = NULL;
    llm_ctx *c = NULL;
    greedy_out g = {0};
    if (a.tokens ? parse_token_list(a.tokens, &toks, &n, &err) : tokenize_text(&m, a.text, &toks, &n, &err)) {
        cli_fail("logits", "%s", err.msg);
        goto done;
    }
    llm_ctx_opts co;
    llm_ctx_opts_default(&co);
    co.n_ctx = n + a.greedy;
    co.n_batch = n;
    co.n_threads = a.threads;
    co.kv_f16 = a.kv_f16;
    const int nv = (int)m.hp.n_vocab;
    logits = malloc(sizeof(float) * (size_t)n * (size_t)nv);
    g.tokens = llm_xcalloc((size_t)a.greedy + 1, sizeof *g.tokens);
    g.logits = llm_xcalloc((size_t)a.greedy + 1, sizeof *g.logits);
    g.margins = llm_xcalloc((size_t)a.greedy + 1, sizeof *g.margins);
    if (!logits) {
        cli_fail("logits", "out of memory for %d x %d logits", n, nv);
        goto done;
    }
    if (!(c = llm_ctx_new(&m, &co, &err)) || llm_forward(c, toks, n, logits, true, &err)) {
        cli_fail("logits", "%s", err.msg);
        goto done;
    }
    const float *last = logits + (size_t)(n - 1) * nv;
    if (a.logits_out && write_logits(a.logits_out, last, nv, &err)) {
        cli_fail("logits", "%s", err.msg);
        goto done;
    }
    if (a.greedy) {
        float *cur = llm_xmalloc(sizeof(float) * (size_t)nv);
        memcpy(cur, last, sizeof(float) * (size_t)nv);
        int grc = run_greedy(c, cur, nv, a.greedy, &g, &err);
        free(cur);
        if (grc) {
            cli_fail("logits", "%s", err.msg);
            goto done;
        }
    }
    if (a.json)
        print_json(&a, toks, n, logits, nv, &g);
    else
        print_text(&a, toks, n, logits, nv, &g);
    rc = 0;
done:
    llm_ctx_free(c);
    free(logits);
    free(toks);
    free(g.tokens);
    free(g.logits);
    free(g.margins);
    llm_model_free(&m);
    return rc;
}
