/*
 * The memory bandwidth probe (src/mem/bandwidth.c) run on a benchmark's thread pool, so the
 * bandwidth a kernel is compared with is read by the same threads the kernel runs on.
 */
#include <string.h>

#include "bench/bench.h"

static void pool_run(void *pool, void (*fn)(void *ctx, int ith, int nth), void *ctx)
{
    llm_pool_run(pool, fn, ctx);
}

static llm_runner pool_runner(llm_pool *pool)
{
    return (llm_runner){.run = pool_run, .pool = pool, .n_threads = llm_pool_threads(pool)};
}

double llm_bw_probe_pass(llm_bw_probe *p, llm_pool *pool)
{
    llm_runner r = pool_runner(pool);
    return llm_bw_probe_measure(p, &r);
}

int llm_bench_bw_init(llm_bench_bw *b, size_t bytes)
{
    memset(b, 0, sizeof *b);
    if (llm_bw_probe_init(&b->small, bytes))
        return -1;
    if (llm_bw_probe_init_huge(&b->huge, bytes))
        b->huge.buf = NULL;
    return 0;
}

double llm_bench_bw_pass(llm_bench_bw *b, llm_pool *pool)
{
    double s = llm_bw_probe_pass(&b->small, pool), h = b->huge.buf ? llm_bw_probe_pass(&b->huge, pool) : 0;
    b->small_best = s > b->small_best ? s : b->small_best;
    b->huge_best = h > b->huge_best ? h : b->huge_best;
    return s > h ? s : h;
}

double llm_bench_bw_best(const llm_bench_bw *b) { return b->small_best > b->huge_best ? b->small_best : b->huge_best; }

void llm_bench_bw_free(llm_bench_bw *b)
{
    llm_bw_probe_free(&b->small);
    llm_bw_probe_free(&b->huge);
}
