/*
 * llmap bench kernels: matrix x vector throughput per weight type, in GB/s of weights read,
 * next to the memory read bandwidth measured in the same run.
 *
 * Each matrix is larger than the last-level cache (256 MiB by default against a 32 MiB L3), so
 * every pass streams its weights from RAM exactly as token generation does; a ratio near 1 means
 * the dot kernels keep up with memory. The matrix content is a few quantized random rows
 * repeated: the arithmetic does not depend on the values, and quantizing 256 MiB with the
 * reference quantizers would take longer than the measurement.
 */
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "fit/fit.h"

#define DISTINCT_ROWS 16

static const llm_type DEFAULT_TYPES[] = {LLM_F32,  LLM_F16,  LLM_BF16, LLM_Q4_0, LLM_Q4_1,
                                         LLM_Q5_0, LLM_Q5_1, LLM_Q8_0, LLM_Q2_K, LLM_Q3_K,
                                         LLM_Q4_K, LLM_Q5_K, LLM_Q6_K};

static uint64_t next_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Fills rows x cols of type t in buf with DISTINCT_ROWS quantized random rows, repeated. */
static int fill_matrix(llm_type t, void *buf, int64_t rows, int64_t cols, float *tmp)
{
    size_t rb = llm_row_size(t, cols);
    uint64_t s = 42;
    for (int64_t r = 0; r < rows && r < DISTINCT_ROWS; r++) {
        for (int64_t i = 0; i < cols; i++)
            tmp[i] = (float)((double)(next_rand(&s) >> 11) * 0x1.0p-53 - 0.5);
        if (llm_quantize_row(t, tmp, (uint8_t *)buf + rb * (size_t)r, cols))
            return -1;
    }
    for (int64_t r = DISTINCT_ROWS; r < rows; r++)
        memcpy((uint8_t *)buf + rb * (size_t)r, (uint8_t *)buf + rb * (size_t)(r % DISTINCT_ROWS), rb);
    return 0;
}

/* Best GB/s of reps matrix x vector products, each followed by bandwidth passes with the same
 * threads: *bw_best is the best of those, measured under the same conditions. */
static double time_matvec(llm_pool *pool, const llm_kernels *k, const llm_matrix *W, const float *x, float *y,
                          void *scratch, int reps, llm_bench_bw *probe, double *bw_best)
{
    size_t bytes = llm_row_size(W->type, W->cols) * (size_t)W->rows;
    llm_matmul(pool, k, W, x, 1, y, scratch); /* warm-up: page tables, pool wake-up */
    double best = 0;
    *bw_best = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = llm_now();
        llm_matmul(pool, k, W, x, 1, y, scratch);
        double gbps = (double)bytes / (llm_now() - t0) / 1e9;
        if (gbps > best)
            best = gbps;
        double bw = llm_bench_bw_pass(probe, pool);
        if (bw > *bw_best)
            *bw_best = bw;
    }
    return best;
}

/* Best multiply-accumulates per second (1e9) of a batch of n_tok tokens against the first rows
 * of W (a few thousand rows keep one measurement short): with the batch tiling the weights are
 * reused from cache, so this is the compute ceiling prompt processing runs at. */
static double time_batch(llm_pool *pool, const llm_kernels *k, const llm_matrix *W, int64_t n_tok, int reps)
{
    llm_matrix B = *W;
    if (B.rows > 4096)
        B.rows = 4096;
    float *x = llm_xmalloc(sizeof(float) * (size_t)(n_tok * B.cols));
    float *y = llm_xmalloc(sizeof(float) * (size_t)(n_tok * B.rows));
    size_t sn = llm_matmul_scratch(&B, n_tok);
    void *scratch = sn ? llm_xmalloc(sn) : NULL;
    uint64_t s = 11;
    for (int64_t i = 0; i < n_tok * B.cols; i++)
        x[i] = (float)((double)(next_rand(&s) >> 11) * 0x1.0p-53 - 0.5);
    llm_matmul(pool, k, &B, x, n_tok, y, scratch);
    double best = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = llm_now();
        llm_matmul(pool, k, &B, x, n_tok, y, scratch);
        double g = (double)B.rows * (double)B.cols * (double)n_tok / (llm_now() - t0) / 1e9;
        if (g > best)
            best = g;
    }
    free(scratch);
    free(y);
    free(x);
    return best;
}

static int parse_types(const char *list, llm_type *out, int max, llm_err *err)
{
    int n = 0;
    if (!list) {
        for (size_t i = 0; i < sizeof DEFAULT_TYPES / sizeof *DEFAULT_TYPES; i++)
            if (llm_type_can_quantize(DEFAULT_TYPES[i]) && llm_kernels_best()->vec_dot[DEFAULT_TYPES[i]])
                out[n++] = DEFAULT_TYPES[i];
        return n;
    }
    char *copy = llm_xstrdup(list), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok && n < max; tok = strtok_r(NULL, ",", &save)) {
        int t = llm_type_from_name(tok);
        if (t < 0 || !llm_type_can_quantize((llm_type)t) || !llm_kernels_best()->vec_dot[t]) {
            llm_errf(err, "type '%s' is not supported by the kernels", tok);
            free(copy);
            return -1;
        }
        out[n++] = (llm_type)t;
    }
    free(copy);
    return n;
}

int llm_bench_kernels(const llm_kbench_opts *o, llm_err *err)
{
    llm_type types[64];
    int n_types = parse_types(o->types, types, 64, err);
    if (n_types < 0)
        return -1;
    int n_thr = 0, thr[8];
    for (int t = 1; t <= o->max_threads && n_thr < 7; t *= 2)
        thr[n_thr++] = t;
    if (thr[n_thr - 1] != o->max_threads)
        thr[n_thr++] = o->max_threads;
    llm_pool *pools[8];
    for (int i = 0; i < n_thr; i++)
        pools[i] = llm_pool_new(thr[i]);

    const llm_kernels *k = llm_kernels_best();
    int rc = 0;
    llm_bench_bw probe;
    fprintf(o->out, "kernels: %s; matrix %zu MiB per type, %lld columns; best of %d\n", k->name,
            o->weight_bytes >> 20, (long long)o->cols, o->reps);
    fprintf(o->out, "GB/s: weights read per second by matrix x vector (matrix in 2 MiB pages); bw: memory read\n"
                    "bandwidth (%zu MiB AVX2 sum, the better of 4 KiB and 2 MiB pages) measured in passes\n"
                    "interleaved with those; ratio = GB/s / bw\n\n",
            o->bw_bytes >> 20);
    fprintf(o->out, "%-6s %5s", "type", "MiB");
    for (int i = 0; i < n_thr; i++)
        fprintf(o->out, " | %dT GB/s    bw ratio", thr[i]);
    if (o->batch > 0)
        fprintf(o->out, " | batch %d, %dT GMAC/s", o->batch, thr[n_thr - 1]);
    fputc('\n', o->out);
    fflush(o->out);
    if (llm_bench_bw_init(&probe, o->bw_bytes)) {
        rc = llm_errf(err, "out of memory for the %zu MiB bandwidth probe", o->bw_bytes >> 20);
        goto done_pools;
    }

    size_t cap = o->weight_bytes + 4096;
    void *wbuf = NULL;
    float *x = llm_xmalloc(sizeof(float) * (size_t)o->cols);
    float *tmp = llm_xmalloc(sizeof(float) * (size_t)o->cols);
    uint64_t s = 7;
    for (int64_t i = 0; i < o->cols; i++)
        x[i] = (float)((double)(next_rand(&s) >> 11) * 0x1.0p-53 - 0.5);
    if (!(wbuf = llm_mem_alloc_huge(cap))) { /* in 2 MiB pages, as a mapped model's weights */
        rc = llm_errf(err, "out of memory for a %zu MiB matrix", cap >> 20);
        goto done;
    }
    float ratios[LLM_TYPE_COUNT] = {0};
    double bw_sum = 0;
    int bw_n = 0;
    for (int ti = 0; ti < n_types && !rc; ti++) {
        llm_type t = types[ti];
        size_t rb = llm_row_size(t, o->cols);
        llm_matrix W = {.type = t, .rows = (int64_t)(o->weight_bytes / rb), .cols = o->cols, .data = wbuf};
        if (fill_matrix(t, wbuf, W.rows, W.cols, tmp)) {
            rc = llm_errf(err, "cannot quantize to %s", llm_type_name(t));
            break;
        }
        float *y = llm_xmalloc(sizeof(float) * (size_t)W.rows);
        size_t sn = llm_matmul_scratch(&W, 1);
        void *scratch = sn ? llm_xmalloc(sn) : NULL;
        fprintf(o->out, "%-6s %5.0f", llm_type_name(t), (double)(rb * (size_t)W.rows) / (1 << 20));
        for (int i = 0; i < n_thr; i++) {
            double bw, g = time_matvec(pools[i], k, &W, x, y, scratch, o->reps, &probe, &bw);
            fprintf(o->out, " | %7.1f %6.1f %5.2f", g, bw, bw > 0 ? g / bw : 0.0);
            fflush(o->out);
            if (i == n_thr - 1 && bw > 0) { /* the widest run feeds `llmap fit` */
                ratios[t] = (float)(g / bw);
                bw_sum += bw;
                bw_n++;
            }
        }
        if (o->batch > 0)
            fprintf(o->out, " | %18.1f", time_batch(pools[n_thr - 1], k, &W, o->batch, o->reps));
        fputc('\n', o->out);
        free(scratch);
        free(y);
    }
    if (!rc && bw_n) {
        llm_err serr;
        if (llm_machine_save_kernels(bw_sum / bw_n * 1e9, ratios, &serr))
            fprintf(stderr, "llmap bench: %s\n", serr.msg);
        else
            fprintf(o->out, "\n(saved as this machine's profile for `llmap fit`)\n");
    }
done:
    if (wbuf)
        llm_mem_free_huge(wbuf, cap);
    free(x);
    free(tmp);
    llm_bench_bw_free(&probe);
done_pools:
    for (int i = 0; i < n_thr; i++)
        llm_pool_free(pools[i]);
    return rc;
}
