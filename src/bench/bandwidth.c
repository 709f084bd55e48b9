/*
 * The memory bandwidth probe (src/mem/bandwidth.c) run on a benchmark's thread pool, so the
 * bandwidth a kernel is compared with is read by the same threads the kernel runs on.
 */
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
