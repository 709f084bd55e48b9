/*
 * Thread pool: every job runs each slot ith < nth exactly once with the right nth, the caller
 * runs slot 0, run returns only after every slot finished (plain writes made in the slots are
 * visible), no two threads run a slot concurrently, and thousands of back-to-back jobs (the
 * token-generation pattern) lose no wake-up, also with more threads than cores (slots of
 * threads that are not scheduled get taken over by the caller).
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

#include "check.h"
#include "kernels/kernels.h"

#define MAX_T 16

typedef struct tally {
    atomic_int calls[MAX_T];
    atomic_int bad_nth;
    int nth_expected;
    pthread_t caller;
    atomic_int caller_was_0;
    atomic_int zero_elsewhere; /* slot 0 run by a worker: must not happen */
    int slow; /* sleep in the workers so the caller must really wait */
    int written[MAX_T];
} tally;

static void count(void *ctx, int ith, int nth)
{
    tally *t = ctx;
    if (nth != t->nth_expected || ith < 0 || ith >= nth)
        atomic_fetch_add(&t->bad_nth, 1);
    else
        atomic_fetch_add(&t->calls[ith], 1);
    bool on_caller = pthread_equal(pthread_self(), t->caller);
    if (ith == 0)
        atomic_fetch_add(on_caller ? &t->caller_was_0 : &t->zero_elsewhere, 1);
    if (t->slow && ith != 0)
        usleep(2000);
    if (ith >= 0 && ith < MAX_T)
        t->written[ith]++; /* plain write: visible to the caller only if run waits properly */
}

static void test_threads(int n, int runs, int slow)
{
    llm_pool *p = llm_pool_new(n);
    CHECK_EQ_INT(llm_pool_threads(p), n);
    tally t = {.nth_expected = n, .caller = pthread_self(), .slow = slow};
    for (int r = 0; r < runs; r++)
        llm_pool_run(p, count, &t);
    CHECK_EQ_INT(atomic_load(&t.bad_nth), 0);
    for (int i = 0; i < n; i++) {
        CHECK_EQ_INT(atomic_load(&t.calls[i]), runs);
        CHECK_EQ_INT(t.written[i], runs);
    }
    CHECK_EQ_INT(atomic_load(&t.caller_was_0), runs);
    CHECK_EQ_INT(atomic_load(&t.zero_elsewhere), 0); /* slots > 0 may run on the caller, slot 0 only there */
    llm_pool_free(p);
}

/* Jobs separated by pauses longer than the spin window: the workers must be woken from sleep. */
static void test_sleep_wake(void)
{
    llm_pool *p = llm_pool_new(3);
    tally t = {.nth_expected = 3, .caller = pthread_self()};
    for (int r = 0; r < 20; r++) {
        usleep(3000);
        llm_pool_run(p, count, &t);
    }
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(atomic_load(&t.calls[i]), 20);
    llm_pool_free(p);
}

/* A sum split by (ith, nth) is complete whatever the thread count. */
typedef struct sum_job {
    const int64_t *v;
    int64_t n;
    int64_t part[MAX_T];
} sum_job;

static void partial_sum(void *ctx, int ith, int nth)
{
    sum_job *s = ctx;
    int64_t a = 0;
    for (int64_t i = s->n * ith / nth; i < s->n * (ith + 1) / nth; i++)
        a += s->v[i];
    s->part[ith] = a;
}

static void test_split_sum(void)
{
    enum { N = 100003 };
    int64_t *v = malloc(N * sizeof *v);
    for (int64_t i = 0; i < N; i++)
        v[i] = i;
    for (int n = 1; n <= 4; n++) {
        llm_pool *p = llm_pool_new(n);
        sum_job s = {.v = v, .n = N};
        llm_pool_run(p, partial_sum, &s);
        int64_t total = 0;
        for (int i = 0; i < n; i++)
            total += s.part[i];
        CHECK_EQ_INT(total, (int64_t)N * (N - 1) / 2);
        llm_pool_free(p);
    }
    free(v);
}

int main(void)
{
    test_threads(1, 100, 0);
    test_threads(2, 2000, 0);
    test_threads(3, 400, 0);
    test_threads(4, 200, 0);
    test_threads(2, 20, 1);
    test_threads(16, 100, 0); /* 8x oversubscribed on 2 cores */
    test_sleep_wake();
    test_split_sum();
    /* A default pool has at least one thread; NULL runs inline. */
    llm_pool *p = llm_pool_new(0);
    CHECK(llm_pool_threads(p) >= 1);
    llm_pool_free(p);
    CHECK_EQ_INT(llm_pool_threads(NULL), 1);
    tally t = {.nth_expected = 1, .caller = pthread_self()};
    llm_pool_run(NULL, count, &t);
    CHECK_EQ_INT(atomic_load(&t.calls[0]), 1);
    llm_pool_free(NULL);
    TEST_END("pool");
}
