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

double llm_bench_bandwidth(llm_pool *pool, size_t bytes, int reps)
{
    bytes = bytes / 4096 * 4096;
    void *buf = NULL;
    if (bytes == 0 || posix_memalign(&buf, 4096, bytes))
        return -1;
    memset(buf, 1, bytes); /* fault every page in before timing */
    bw_job j = {.buf = buf, .bytes = bytes, .avx2 = have_avx2()};
    int nth = llm_pool_threads(pool);
    size_t per = bytes / (size_t)nth / 128 * 128;
    double best = 0;
    for (int r = 0; r < (reps > 0 ? reps : 1); r++) {
        double t0 = llm_now();
        llm_pool_run(pool, sum_slice, &j);
        double dt = llm_now() - t0;
        double gbps = (double)(per * (size_t)nth) / dt / 1e9;
        if (gbps > best)
            best = gbps;
    }
    free(buf);
    return best;
}
