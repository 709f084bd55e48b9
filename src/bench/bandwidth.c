/*
 * Memory read bandwidth probe: a buffer much larger than the last-level cache is summed by
 * every thread of a pool (each its own contiguous slice), best of a few passes. This is the
 * same access pattern as a matrix x vector product over mapped weights, minus the arithmetic,
 * so it is the ceiling token generation is measured against.
 */
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"

uint64_t llm_bench_sum_scalar(const void *p, size_t n)
{
    const uint64_t *v = p;
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    for (size_t i = 0; i < n / 8; i += 4) {
        a0 += v[i];
        a1 += v[i + 1];
        a2 += v[i + 2];
        a3 += v[i + 3];
    }
    return a0 + a1 + a2 + a3;
}

static int have_avx2(void)
{
#if defined(__x86_64__) || defined(__i386__)
    return __builtin_cpu_supports("avx2");
#else
    return 0;
#endif
}

typedef struct bw_job {
    const uint8_t *buf;
    size_t bytes;
    int avx2;
    uint64_t sink[64];
} bw_job;

static void sum_slice(void *ctx, int ith, int nth)
{
    bw_job *j = ctx;
    size_t per = j->bytes / (size_t)nth / 128 * 128;
    const uint8_t *p = j->buf + per * (size_t)ith;
    uint64_t s = j->avx2 ? llm_bench_sum_avx2(p, per) : llm_bench_sum_scalar(p, per);
    if (ith < 64)
        j->sink[ith] = s;
}

int llm_bw_probe_init(llm_bw_probe *p, size_t bytes)
{
    p->bytes = bytes / 4096 * 4096;
    p->buf = NULL;
    if (p->bytes == 0 || posix_memalign(&p->buf, 4096, p->bytes))
        return -1;
    memset(p->buf, 1, p->bytes); /* fault every page in before timing */
    return 0;
}

void llm_bw_probe_free(llm_bw_probe *p)
{
    free(p->buf);
    p->buf = NULL;
}

double llm_bw_probe_pass(llm_bw_probe *p, llm_pool *pool)
{
    bw_job j = {.buf = p->buf, .bytes = p->bytes, .avx2 = have_avx2()};
    int nth = llm_pool_threads(pool);
    size_t per = p->bytes / (size_t)nth / 128 * 128;
    double t0 = llm_now();
    llm_pool_run(pool, sum_slice, &j);
    return (double)(per * (size_t)nth) / (llm_now() - t0) / 1e9;
}

double llm_bench_bandwidth(llm_pool *pool, size_t bytes, int reps)
{
    llm_bw_probe p;
    if (llm_bw_probe_init(&p, bytes))
        return -1;
    double best = 0;
    for (int r = 0; r < (reps > 0 ? reps : 1); r++) {
        double g = llm_bw_probe_pass(&p, pool);
        if (g > best)
            best = g;
    }
    llm_bw_probe_free(&p);
    return best;
}
