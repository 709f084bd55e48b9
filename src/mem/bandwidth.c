/*
 * Memory read bandwidth: a buffer much larger than the last-level cache is summed by several
 * threads at once (each its own contiguous slice), best of a few passes. This is the access
 * pattern of a matrix x vector product over mapped weights minus the arithmetic, so it is the
 * ceiling token generation runs against: `llmap bench` measures it with its thread pool and
 * `llmap fit` runs it as the quick probe when no benchmark has been saved.
 *
 * It lives in mem because bandwidth is a fact about memory; the thread pool lives in kernels
 * (the same level), so the probe takes the pool as an llm_runner callback instead of
 * depending on it, and starts its own threads when given none.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "mem/mem.h"

uint64_t llm_mem_sum_scalar(const void *p, size_t n)
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

#define MAX_OWN_THREADS 64

typedef struct bw_job {
    const uint8_t *buf;
    size_t bytes;
    int avx2;
    uint64_t sink[MAX_OWN_THREADS]; /* the sums, kept so the loads cannot be optimized away */
} bw_job;

/* Bytes each of nth threads sums: the sums take multiples of 128. */
static size_t slice_bytes(size_t bytes, int nth) { return bytes / (size_t)nth / 128 * 128; }

static void sum_slice(void *ctx, int ith, int nth)
{
    bw_job *j = ctx;
    size_t per = slice_bytes(j->bytes, nth);
    const uint8_t *p = j->buf + per * (size_t)ith;
    uint64_t s = j->avx2 ? llm_mem_sum_avx2(p, per) : llm_mem_sum_scalar(p, per);
    if (ith < MAX_OWN_THREADS)
        j->sink[ith] = s;
}

/* Without a pool: one thread per slice for this pass (the calling thread takes slice 0). */
typedef struct own_thread {
    bw_job *job;
    int ith, nth;
} own_thread;

static void *own_thread_main(void *arg)
{
    own_thread *t = arg;
    sum_slice(t->job, t->ith, t->nth);
    return NULL;
}

static void run_own_threads(bw_job *j, int nth)
{
    pthread_t th[MAX_OWN_THREADS];
    own_thread args[MAX_OWN_THREADS];
    int started = 0;
    for (int i = 1; i < nth; i++) {
        args[i] = (own_thread){j, i, nth};
        if (pthread_create(&th[i], NULL, own_thread_main, &args[i]))
            break;
        started = i;
    }
    sum_slice(j, 0, nth);
    for (int i = started + 1; i < nth; i++) /* threads that could not start: their slice here */
        sum_slice(j, i, nth);
    for (int i = 1; i <= started; i++)
        pthread_join(th[i], NULL);
}

static int probe_init(llm_bw_probe *p, size_t bytes, bool huge)
{
    *p = (llm_bw_probe){.bytes = bytes / 4096 * 4096, .huge = huge};
    if (p->bytes == 0)
        return -1;
    if (huge)
        p->buf = llm_mem_alloc_huge(p->bytes);
    else if (posix_memalign(&p->buf, 4096, p->bytes))
        p->buf = NULL;
    if (!p->buf)
        return -1;
    memset(p->buf, 1, p->bytes); /* fault every page in before timing */
    return 0;
}

int llm_bw_probe_init(llm_bw_probe *p, size_t bytes) { return probe_init(p, bytes, false); }
int llm_bw_probe_init_huge(llm_bw_probe *p, size_t bytes) { return probe_init(p, bytes, true); }

void llm_bw_probe_free(llm_bw_probe *p)
{
    if (p->huge && p->buf)
        llm_mem_free_huge(p->buf, p->bytes);
    else
        free(p->buf);
    p->buf = NULL;
}

double llm_bw_probe_measure(llm_bw_probe *p, const llm_runner *r)
{
    int nth = r->n_threads > 0 ? r->n_threads : 1;
    if (!r->run && nth > MAX_OWN_THREADS)
        nth = MAX_OWN_THREADS;
    bw_job j = {.buf = p->buf, .bytes = p->bytes, .avx2 = have_avx2()};
    double t0 = llm_now();
    if (r->run)
        r->run(r->pool, sum_slice, &j);
    else
        run_own_threads(&j, nth);
    return (double)(slice_bytes(p->bytes, nth) * (size_t)nth) / (llm_now() - t0) / 1e9;
}

double llm_mem_bandwidth(size_t bytes, const llm_runner *r, int reps)
{
    llm_bw_probe p;
    if (llm_bw_probe_init(&p, bytes))
        return -1;
    double best = 0;
    for (int i = 0; i < (reps > 0 ? reps : 1); i++) {
        double g = llm_bw_probe_measure(&p, r);
        if (g > best)
            best = g;
    }
    llm_bw_probe_free(&p);
    return best;
}
