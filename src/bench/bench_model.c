/*
 * llmap bench MODEL.gguf — prompt processing and generation speed of the forward pass, and how
 * close generation gets to the memory-bandwidth roofline.
 *
 * Generation reads every weight matrix once per token (plus one embedding row), so its speed
 * limit is (measured read bandwidth) / (bytes of weights per token). The benchmark measures
 * that bandwidth in the same run, on the same thread pool, because on a shared machine absolute
 * numbers move by 2x between runs while the ratio is stable. Like llama-bench: ppN evaluates N
 * tokens in one batch into an empty cache; tgN generates N tokens one at a time from an empty
 * cache. Token ids are seeded pseudo-random (the speed does not depend on them).
 */
#include <getopt.h>
#include <stdio.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "cli/cli.h"
#include "fit/fit.h"
#include "model/model.h"

static const char USAGE[] =
    "llmap bench MODEL.gguf [-t THREADS] [--pp N] [--tg N] [--depth D] [--reps N] [--no-mmap] [--json]\n"
    "  ppN: N prompt tokens in one batch; tgN: N tokens generated one at a time\n"
    "  --depth D: both start with D tokens already in the context (a long chat), not from empty\n"
    "  (defaults pp512, tg128, depth 0, best of 1 rep; THREADS defaults to one per CPU)";

typedef struct bench_args {
    const char *model;
    int threads, pp, tg, reps, depth;
    bool json, no_mmap;
} bench_args;

static int parse(int argc, char **argv, bench_args *a)
{
    static const struct option opts[] = {
        {"threads", required_argument, 0, 't'}, {"pp", required_argument, 0, 'p'},
        {"tg", required_argument, 0, 'g'},      {"reps", required_argument, 0, 'r'},
        {"json", no_argument, 0, 'j'},          {"no-mmap", no_argument, 0, 'n'},
        {"depth", required_argument, 0, 'd'},   {"help", no_argument, 0, 'h'},
        {0},
    };
    *a = (bench_args){.pp = 512, .tg = 128, .reps = 1};
    a->model = argv[0];
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "t:p:g:r:d:jnh", opts, NULL)) != -1) {
        switch (c) {
        case 't': a->threads = atoi(optarg); break;
        case 'p': a->pp = atoi(optarg); break;
        case 'g': a->tg = atoi(optarg); break;
        case 'r': a->reps = atoi(optarg); break;
        case 'd': a->depth = atoi(optarg); break;
        case 'j': a->json = true; break;
        case 'n': a->no_mmap = true; break;
        case 'h': printf("usage: %s\n", USAGE); return 1;
        default: return -1;
        }
    }
    if (optind != argc || a->pp < 0 || a->tg < 0 || a->pp + a->tg < 1 || a->pp > 65536 || a->tg > 65536 ||
        a->reps < 1 || a->depth < 0 || a->depth > 65536)
        return -1;
    return 0;
}

static uint64_t matrix_bytes(const llm_matrix *w) { return (uint64_t)w->rows * llm_row_size(w->type, w->cols); }

/* Weight bytes one generated token reads: every layer matrix, the output projection, the norm
 * vectors, and one row of the embedding table. */
static uint64_t bytes_per_token(const llm_model *m)
{
    const llm_hparams *hp = &m->hp;
    uint64_t b = matrix_bytes(&m->output) + llm_row_size(m->token_embd.type, m->token_embd.cols);
    b += (uint64_t)hp->n_embd * sizeof(float) * (1 + 2 * (uint64_t)hp->n_layer);
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        const llm_layer *L = &m->layers[il];
        const llm_matrix *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof *ws; i++)
            b += matrix_bytes(ws[i]);
    }
    return b;
}

static void fill_tokens(int32_t *t, int n, uint32_t n_vocab)
{
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        t[i] = (int32_t)((s >> 33) % n_vocab);
    }
}

/* CPU seconds this process used so far: on a shared machine wall time includes waiting for a
 * core, CPU time does not (with one thread, tokens per CPU second is the unloaded speed). */
static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

typedef struct bench_result {
    double load_s, bw_gbs, bw_huge_gbs, pp_tps, tg_tps, pp_cpu_tps, tg_cpu_tps;
    double tg0_tps; /* with --depth: the same generation from an empty context, for attention's share */
    uint64_t tok_bytes;
} bench_result;

/* The probes (llm_bench_bw: 4 KiB and 2 MiB pages) are read three times after every repetition,
 * so the bandwidth is measured under the conditions the repetitions ran in (a shared machine
 * drifts); the best pass counts. */
static void probe_after_rep(llm_bench_bw *bw, llm_pool *pool)
{
    for (int i = 0; i < 3; i++)
        llm_bench_bw_pass(bw, pool);
}

/* An empty cache, then `depth` tokens evaluated (untimed) as a chat's earlier turns would be. */
static int start_at_depth(llm_ctx *c, int depth, const int32_t *toks, float *logits, llm_err *err)
{
    llm_ctx_kv_truncate(c, 0);
    return depth > 0 ? llm_forward(c, toks, depth, logits, false, err) : 0;
}

/* The n tokens at gen generated one at a time after toks[0..depth) were evaluated (untimed):
 * tokens per second of wall time and of CPU time. */
static int time_generation(llm_ctx *c, int depth, const int32_t *toks, const int32_t *gen, int n, float *logits,
                           double *tps, double *cpu_tps, llm_err *err)
{
    if (start_at_depth(c, depth, toks, logits, err))
        return -1;
    double t0 = llm_now(), c0 = cpu_seconds();
    for (int i = 0; i < n; i++)
        if (llm_forward(c, &gen[i], 1, logits, false, err))
            return -1;
    *tps = n / (llm_now() - t0);
    *cpu_tps = n / (cpu_seconds() - c0);
    return 0;
}

static int run(const bench_args *a, llm_model *m, llm_pool *pool, llm_bench_bw *probes, bench_result *r,
               llm_err *err)
{
    const int n = a->depth + (a->pp > a->tg ? a->pp : a->tg);
    int32_t *toks = llm_xmalloc(sizeof *toks * (size_t)(n + 1));
    float *logits = llm_xmalloc(sizeof(float) * m->hp.n_vocab);
    fill_tokens(toks, n + 1, m->hp.n_vocab);
    const int32_t *after = toks + a->depth; /* what is timed follows the depth tokens */
    llm_ctx_opts o;
    llm_ctx_opts_default(&o);
    o.n_ctx = n + 1;
    o.n_batch = a->pp > 0 ? a->pp : 512;
    o.pool = pool;
    llm_ctx *c = llm_ctx_new(m, &o, err);
    int rc = -1;
    if (!c)
        goto done;
    /* warm-up: one token pages every weight in (a first touch of a mapping is not compute) */
    if (llm_forward(c, toks, 1, logits, false, err))
        goto done;
    for (int rep = 0; rep < a->reps; rep++) {
        if (a->pp > 0) {
            if (start_at_depth(c, a->depth, toks, logits, err))
                goto done;
            double t0 = llm_now(), c0 = cpu_seconds();
            if (llm_forward(c, after, a->pp, logits, false, err))
                goto done;
            double tps = a->pp / (llm_now() - t0), ctps = a->pp / (cpu_seconds() - c0);
            r->pp_tps = tps > r->pp_tps ? tps : r->pp_tps;
            r->pp_cpu_tps = ctps > r->pp_cpu_tps ? ctps : r->pp_cpu_tps;
        }
        if (a->tg > 0) {
            double tps, ctps;
            if (time_generation(c, a->depth, toks, after, a->tg, logits, &tps, &ctps, err))
                goto done;
            r->tg_tps = tps > r->tg_tps ? tps : r->tg_tps;
            r->tg_cpu_tps = ctps > r->tg_cpu_tps ? ctps : r->tg_cpu_tps;
            if (a->depth > 0) { /* the same tokens from an empty context: what the depth costs */
                if (time_generation(c, 0, toks, after, a->tg, logits, &tps, &ctps, err))
                    goto done;
                r->tg0_tps = tps > r->tg0_tps ? tps : r->tg0_tps;
            }
        }
        probe_after_rep(probes, pool);
    }
    rc = 0;
done:
    llm_ctx_free(c);
    free(toks);
    free(logits);
    return rc;
}

#define CALIBRATE_MIN_TG 32

/* With --depth: what the KV cache adds to a generated token, from generation at that depth and
 * from an empty context in the same run, stored as the share of bandwidth at which attention
 * goes through the cache (`llmap fit` predicts speed at a full context from it). */
static void calibrate_attention(const llm_model *m, const bench_args *a, const bench_result *r, bool json)
{
    llm_machine mc;
    bool cached;
    llm_machine_this(&mc, &cached);
    const llm_hparams *hp = &m->hp;
    double extra = 1.0 / r->tg_tps - 1.0 / r->tg0_tps; /* seconds per token */
    /* keys and values of every layer, at the window's mean position (F32 cache) */
    double kv = 2.0 * hp->n_layer * llm_hp_kv_dim(hp) * sizeof(float) * (a->depth + a->tg / 2.0);
    if (!cached || a->tg < CALIBRATE_MIN_TG || extra <= 0 || mc.bw_bytes_s <= 0) {
        if (!json)
            printf("attention  not calibrated (%s)\n", !cached ? "no kernel profile yet: `llmap bench kernels` first"
                                                     : a->tg < CALIBRATE_MIN_TG ? "too few generated tokens"
                                                                                : "no slower than an empty context");
        return;
    }
    double eff = kv / extra / mc.bw_bytes_s;
    if (!json)
        printf("attention  %.1f ms of a token at depth %d (%.0f MiB of KV cache read): %.3f of memory bandwidth;\n"
               "           from an empty context %.2f tokens/s (saved for `llmap fit`)\n",
               extra * 1e3, a->depth, kv / (1 << 20), eff, r->tg0_tps);
    llm_err err;
    if (llm_machine_save_attn_efficiency(eff, &err) && !json)
        fprintf(stderr, "llmap bench: %s\n", err.msg);
}

/* Compares generation with what `llmap fit` predicts from the kernels' measured efficiencies
 * alone, and stores the ratio (attention, norms, synchronisation: what a whole forward pass adds)
 * in the machine profile, so later predictions for any model include it. */
static void calibrate_fit(const llm_model *m, const bench_args *a, double tg_tps, bool json)
{
    if (a->tg < CALIBRATE_MIN_TG) { /* a few tokens time the first-token costs, not a forward pass */
        if (!json)
            printf("fit        not calibrated: %d generated tokens are too few (at least %d)\n", a->tg,
                   CALIBRATE_MIN_TG);
        return;
    }
    llm_machine mc;
    bool cached;
    llm_machine_this(&mc, &cached);
    const int main_type = gguf_dominant_type(&m->gguf);
    double old_factor = main_type >= 0 && mc.forward_by_type[main_type] > 0 ? mc.forward_by_type[main_type]
                                                                              : mc.forward_factor;
    mc.forward_factor = 0;
    memset(mc.forward_by_type, 0, sizeof mc.forward_by_type);
    llm_fit_opts fo = {.n_ctx = a->pp + a->tg + 8, .n_threads = a->threads};
    llm_fit f;
    llm_err err;
    if (!cached || llm_fit_estimate(&m->gguf, &fo, &mc, &f, &err) || f.tok_s_resident <= 0)
        return; /* no kernel profile yet: `llmap bench kernels` first */
    double factor = tg_tps / f.tok_s_resident;
    if (!json)
        printf("fit        kernels alone predict %.2f tokens/s; this forward pass reaches %.2f of that%s%s\n",
               f.tok_s_resident, factor, old_factor > 0 ? "; with the saved factor the prediction was " : "",
               old_factor > 0 ? "" : " (saved for `llmap fit`)");
    if (!json && old_factor > 0)
        printf("           %.2f tokens/s (%+.0f%% vs measured); factor updated\n", f.tok_s_resident * old_factor,
               100.0 * (f.tok_s_resident * old_factor / tg_tps - 1));
    llm_machine_save_forward_factor(factor, main_type, &err);
}

int cmd_bench_model(int argc, char **argv)
{
    bench_args a;
    int prc = parse(argc, argv, &a);
    if (prc)
        return prc > 0 ? 0 : cli_usage(USAGE);
    llm_err err = {{0}};
    llm_model m;
    bench_result r = {0};
    double t0 = llm_now();
    llm_map_opts mo = {.mode = a.no_mmap ? LLM_MAP_READ : LLM_MAP_MMAP};
    if (llm_model_load(&m, a.model, &mo, &err))
        return cli_fail("bench", "%s", err.msg);
    r.load_s = llm_now() - t0;
    r.tok_bytes = bytes_per_token(&m);
    llm_pool *pool = llm_pool_new(a.threads);
    /* probes larger than any cache, smaller than what a shared machine minds */
    uint64_t probe = r.tok_bytes < (256u << 20) ? (256u << 20) : r.tok_bytes;
    if (probe > (1u << 30))
        probe = 1u << 30;
    llm_bench_bw probes;
    int rc = llm_bench_bw_init(&probes, (size_t)probe);
    if (rc)
        llm_errf(&err, "out of memory for the %llu MiB bandwidth probe", (unsigned long long)(probe >> 20));
    else
        rc = run(&a, &m, pool, &probes, &r, &err);
    r.bw_gbs = probes.small_best;
    r.bw_huge_gbs = probes.huge_best;
    llm_bench_bw_free(&probes);
    if (rc) {
        cli_fail("bench", "%s", err.msg);
    } else {
        double eff = r.tg_tps * (double)r.tok_bytes / 1e9;
        const double bw = r.bw_gbs > r.bw_huge_gbs ? r.bw_gbs : r.bw_huge_gbs; /* the roofline */
        int threads = llm_pool_threads(pool);
        if (a.json) {
            printf("{\"model\": \"%s\", \"arch\": \"%s\", \"n_params\": %llu, \"weight_bytes\": %llu, "
                   "\"bytes_per_token\": %llu, \"threads\": %d, \"load_s\": %.4f, \"bandwidth_gbs\": %.3f, "
                   "\"depth\": %d, \"pp\": %d, \"pp_tps\": %.3f, \"tg\": %d, \"tg_tps\": %.3f, \"tg_gbs\": %.3f, "
                   "\"roofline_fraction\": %.4f, \"bandwidth_4kib_pages_gbs\": %.3f, "
                   "\"bandwidth_2mib_pages_gbs\": %.3f, \"pp_tokens_per_cpu_s\": %.3f, \"tg_tokens_per_cpu_s\": %.3f}\n",
                   a.model, m.hp.arch_name, (unsigned long long)m.n_params, (unsigned long long)m.weight_bytes,
                   (unsigned long long)r.tok_bytes, threads, r.load_s, bw, a.depth, a.pp, r.pp_tps, a.tg, r.tg_tps, eff,
                   bw > 0 ? eff / bw : 0, r.bw_gbs, r.bw_huge_gbs, r.pp_cpu_tps, r.tg_cpu_tps);
        } else {
            printf("model      %s (%s, %.2fB params, %.1f MiB of weights)\n", a.model, m.hp.arch_name,
                   (double)m.n_params / 1e9, (double)m.weight_bytes / (1 << 20));
            printf("threads    %d   load %.3f s (%s)\n", threads, r.load_s, a.no_mmap ? "read" : "mapping");
            printf("bandwidth  %.2f GB/s measured read: the better of %.2f in 4 KiB pages and %.2f in 2 MiB pages\n"
                   "           (best of 3 passes each after each of %d reps)\n",
                   bw, r.bw_gbs, r.bw_huge_gbs, a.reps);
            if (a.depth)
                printf("depth      %d tokens in the context before each test (no roofline share: the KV cache\n"
                       "           is read on top of the weights)\n", a.depth);
            if (a.pp)
                printf("pp%-4d     %8.2f tokens/s   (%.2f per CPU-second)\n", a.pp, r.pp_tps, r.pp_cpu_tps);
            if (a.tg && a.depth)
                printf("tg%-4d     %8.2f tokens/s   %.1f MiB of weights/token -> %.2f GB/s\n", a.tg, r.tg_tps,
                       (double)r.tok_bytes / (1 << 20), eff);
            else if (a.tg)
                printf("tg%-4d     %8.2f tokens/s   %.1f MiB/token -> %.2f GB/s = %.0f%% of measured bandwidth\n",
                       a.tg, r.tg_tps, (double)r.tok_bytes / (1 << 20), eff, bw > 0 ? 100 * eff / bw : 0);
            if (a.tg)
                printf("           %8.2f tokens per CPU-second (wall time includes waiting for a busy core)\n",
                       r.tg_cpu_tps);
        }
    }
    if (!rc && a.tg && r.tg_tps > 0 && a.depth == 0) /* fit's factor is for a short context */
        calibrate_fit(&m, &a, r.tg_tps, a.json);
    if (!rc && a.tg && r.tg_tps > 0 && r.tg0_tps > 0 && a.depth > 0)
        calibrate_attention(&m, &a, &r, a.json);
    llm_pool_free(pool);
    llm_model_free(&m);
    return rc ? 1 : 0;
}
