/*
 * Persistent thread pool: the worker threads are created once and parked between jobs, so
 * handing out one matrix multiplication costs a few atomic operations instead of thread
 * creation. Token generation issues hundreds of small jobs per token (each ~0.1 ms), so the
 * hand-off latency matters as much as the throughput.
 *
 * Protocol. A job is published by bumping `gen` (with fn/ctx stored before it); workers
 * notice the new generation, run fn(ctx, ith, nth), and decrement `pending`; the caller runs
 * its share as thread 0 and then waits for `pending` to reach zero. Both waits spin briefly
 * (the next job usually follows within microseconds) and then block on a condition variable,
 * so idle pools cost no CPU on a shared machine. The mutex is taken only to publish a
 * generation / report the last completion, which keeps wake-ups race-free: a waiter re-checks
 * its condition under the mutex before sleeping.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "kernels/kernels.h"
#include "util/util.h"

/* How long a waiting thread polls before it blocks. Long enough to bridge the gap between
 * consecutive matmuls of one token, short enough not to burn a shared core when idle. */
#define POOL_SPIN_SECONDS 200e-6

typedef struct worker {
    struct llm_pool *pool;
    int ith;
    pthread_t thread;
} worker;

struct llm_pool {
    int n_threads;
    worker *workers; /* n_threads - 1 entries: the caller is thread 0 */

    pthread_mutex_t mu;
    pthread_cond_t job_cv;  /* a new generation was published, or stop */
    pthread_cond_t done_cv; /* pending reached zero */

    void (*fn)(void *ctx, int ith, int nth);
    void *ctx;
    atomic_uint gen;     /* job generation; bumped after fn/ctx are stored */
    atomic_int pending;  /* workers still running the current job */
    atomic_bool stop;
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Polls until gen differs from `seen` (or stop), then blocks. Returns the new generation. */
static unsigned wait_for_job(llm_pool *p, unsigned seen)
{
    double deadline = 0;
    for (unsigned i = 1;; i++) {
        unsigned g = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (g != seen || atomic_load_explicit(&p->stop, memory_order_acquire))
            return g;
        cpu_relax();
        if ((i & 255) == 0) {
            double now = llm_now();
            if (deadline == 0)
                deadline = now + POOL_SPIN_SECONDS;
            else if (now > deadline)
                break;
        }
    }
    pthread_mutex_lock(&p->mu);
    unsigned g;
    while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen &&
           !atomic_load_explicit(&p->stop, memory_order_acquire))
        pthread_cond_wait(&p->job_cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    return g;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    llm_pool *p = w->pool;
    unsigned seen = 0;
    for (;;) {
        seen = wait_for_job(p, seen);
        if (atomic_load_explicit(&p->stop, memory_order_acquire))
            return NULL;
        p->fn(p->ctx, w->ith, p->n_threads);
        if (atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

llm_pool *llm_pool_new(int n_threads)
{
    if (n_threads <= 0)
        n_threads = online_cpus();
    if (n_threads > 512)
        n_threads = 512;
    llm_pool *p = llm_xcalloc(1, sizeof *p);
    p->n_threads = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->job_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    atomic_init(&p->gen, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->stop, false);
    p->workers = llm_xcalloc((size_t)n_threads, sizeof *p->workers);
    for (int i = 1; i < n_threads; i++) {
        worker *w = &p->workers[i - 1];
        w->pool = p;
        w->ith = i;
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            /* Fewer threads than asked is still a working pool. */
            p->n_threads = i;
            break;
        }
    }
    return p;
}

void llm_pool_free(llm_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    atomic_store_explicit(&p->stop, true, memory_order_release);
    pthread_cond_broadcast(&p->job_cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n_threads; i++)
        pthread_join(p->workers[i - 1].thread, NULL);
    pthread_cond_destroy(&p->done_cv);
    pthread_cond_destroy(&p->job_cv);
    pthread_mutex_destroy(&p->mu);
    free(p->workers);
    free(p);
}

int llm_pool_threads(const llm_pool *p)
{
    return p ? p->n_threads : 1;
}

static void wait_for_workers(llm_pool *p)
{
    double deadline = 0;
    for (unsigned i = 1;; i++) {
        if (atomic_load_explicit(&p->pending, memory_order_acquire) == 0)
            return;
        cpu_relax();
        if ((i & 255) == 0) {
            double now = llm_now();
            if (deadline == 0)
                deadline = now + POOL_SPIN_SECONDS;
            else if (now > deadline)
                break;
        }
    }
    pthread_mutex_lock(&p->mu);
    while (atomic_load_explicit(&p->pending, memory_order_acquire) != 0)
        pthread_cond_wait(&p->done_cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

void llm_pool_run(llm_pool *p, void (*fn)(void *ctx, int ith, int nth), void *ctx)
{
    if (!p || p->n_threads == 1) {
        fn(ctx, 0, 1);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->pending, p->n_threads - 1, memory_order_relaxed);
    /* Publishing under the mutex pairs with the re-check in wait_for_job: a worker that is
     * about to sleep either sees the new generation or is already waiting for the signal. */
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->job_cv);
    pthread_mutex_unlock(&p->mu);
    fn(ctx, 0, p->n_threads);
    wait_for_workers(p);
}
