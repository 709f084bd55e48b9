/*
 * Persistent thread pool: the worker threads are created once and parked between jobs, so
 * handing out one matrix multiplication costs a few atomic operations instead of thread
 * creation. Token generation issues hundreds of small jobs per token (each ~0.1 ms), so the
 * hand-off latency matters as much as the throughput.
 *
 * Protocol. A job has slots 0..nth-1, one call fn(ctx, ith, nth) each. The caller runs slot 0,
 * publishes the job by bumping `gen`, and the other slots are claimed from an atomic counter by
 * whichever thread gets there first: normally each worker takes one, but when the caller is done
 * with slot 0 it also claims whatever is still unclaimed. On a shared machine a worker may not
 * be scheduled for milliseconds; without this the whole job (and the token) would wait for it.
 * Every slot still runs exactly once, on one thread at a time, so per-slot scratch indexed by
 * ith stays private; what fn must not do is wait for another slot to start (no barriers).
 *
 * Waiting spins briefly (the next job usually follows within microseconds) and then blocks on a
 * condition variable, so an idle pool costs no CPU. The mutex is taken only to publish a
 * generation and to report the last completion, which keeps wake-ups race-free: a waiter
 * re-checks its condition under the mutex before sleeping.
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

/* A buffer owned by one slot of the pool: only the thread running that slot touches it. */
typedef struct slot_scratch {
    void *p;
    size_t n;
} slot_scratch;

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
    pthread_cond_t done_cv; /* every slot of the job finished */

    void (*fn)(void *ctx, int ith, int nth);
    void *ctx;
    atomic_uint gen;       /* job generation; bumped after the job is set up */
    atomic_int next_slot;  /* next unclaimed slot of the current job (>= n_threads: none left) */
    atomic_int finished;   /* slots 1..n_threads-1 completed */
    atomic_bool stop;

    slot_scratch *scratch; /* one per slot, grown on demand (llm_pool_scratch) */
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* The spin half of a spin-then-block wait, asked after spin i (from 1): true once
 * POOL_SPIN_SECONDS have passed since the first clock reading. The clock is read every 256
 * spins only, so polling stays cheap; *deadline starts at 0. */
static bool spin_budget_spent(unsigned i, double *deadline)
{
    if ((i & 255) != 0)
        return false;
    double now = llm_now();
    if (*deadline == 0) {
        *deadline = now + POOL_SPIN_SECONDS;
        return false;
    }
    return now > *deadline;
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
        if (spin_budget_spent(i, &deadline))
            break;
    }
    pthread_mutex_lock(&p->mu);
    unsigned g;
    while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen &&
           !atomic_load_explicit(&p->stop, memory_order_acquire))
        pthread_cond_wait(&p->job_cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    return g;
}

/* Claims and runs slots of the current job until none is left. A claim made through the counter
 * (acquire) sees the fn/ctx the caller stored before resetting it (release). */
static void run_slots(llm_pool *p)
{
    const int n = p->n_threads;
    for (;;) {
        int slot = atomic_fetch_add_explicit(&p->next_slot, 1, memory_order_acq_rel);
        if (slot >= n)
            return;
        p->fn(p->ctx, slot, n);
        if (atomic_fetch_add_explicit(&p->finished, 1, memory_order_acq_rel) + 1 == n - 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->mu);
        }
    }
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
        run_slots(p);
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
    atomic_init(&p->next_slot, n_threads); /* no job: nothing to claim */
    atomic_init(&p->finished, 0);
    atomic_init(&p->stop, false);
    p->workers = llm_xcalloc((size_t)n_threads, sizeof *p->workers);
    p->scratch = llm_xcalloc((size_t)n_threads, sizeof *p->scratch);
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
    for (int i = 0; i < p->n_threads; i++)
        free(p->scratch[i].p);
    free(p->scratch);
    free(p->workers);
    free(p);
}

void *llm_pool_scratch(llm_pool *p, int ith, size_t bytes)
{
    slot_scratch *sc = &p->scratch[ith];
    if (sc->n < bytes) {
        free(sc->p);
        sc->p = llm_xmalloc(bytes);
        sc->n = bytes;
    }
    return sc->p;
}

int llm_pool_threads(const llm_pool *p)
{
    return p ? p->n_threads : 1;
}

static void wait_for_slots(llm_pool *p)
{
    const int want = p->n_threads - 1;
    double deadline = 0;
    for (unsigned i = 1;; i++) {
        if (atomic_load_explicit(&p->finished, memory_order_acquire) == want)
            return;
        cpu_relax();
        if (spin_budget_spent(i, &deadline))
            break;
    }
    pthread_mutex_lock(&p->mu);
    while (atomic_load_explicit(&p->finished, memory_order_acquire) != want)
        pthread_cond_wait(&p->done_cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

void llm_pool_run(llm_pool *p, void (*fn)(void *ctx, int ith, int nth), void *ctx)
{
    if (!p || p->n_threads == 1) {
        fn(ctx, 0, 1);
        return;
    }
    /* The previous job is complete (every slot finished), so nobody reads fn/ctx now; a late
     * worker can only be claiming from the exhausted counter. */
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->finished, 0, memory_order_relaxed);
    atomic_store_explicit(&p->next_slot, 1, memory_order_release);
    /* Publishing under the mutex pairs with the re-check in wait_for_job: a worker that is
     * about to sleep either sees the new generation or is already waiting for the signal. */
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->job_cv);
    pthread_mutex_unlock(&p->mu);
    fn(ctx, 0, p->n_threads);
    run_slots(p); /* take over the slots of workers that have not shown up yet */
    wait_for_slots(p);
}
