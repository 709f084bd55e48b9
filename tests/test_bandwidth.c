/*
 * Tests of the memory bandwidth probe (src/mem/bandwidth.c, sum_avx2.c), shared by `llmap bench`
 * (on its thread pool) and `llmap fit` (own threads): the streaming sums against sums known in
 * closed form, the AVX2 loop against the scalar one, the buffer rounding, and that a pass runs
 * on the runner it is given, once per pass, with the thread count it was told.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mem/mem.h"

static int cpu_has_avx2(void)
{
#if defined(__x86_64__) || defined(__i386__)
    return __builtin_cpu_supports("avx2");
#else
    return 0;
#endif
}

/* 0 + 1 + ... + (n-1) = n(n-1)/2, and with every word 0x0101...01 the sum is n times that. */
static void test_sums(void)
{
    const size_t words = 16 * 37; /* 37 blocks of 128 bytes: not a power of two */
    uint64_t *v;
    CHECK_EQ_INT(posix_memalign((void **)&v, 64, words * 8), 0);
    for (size_t i = 0; i < words; i++)
        v[i] = i;
    uint64_t expect = (uint64_t)words * (words - 1) / 2;
    CHECK(llm_mem_sum_scalar(v, words * 8) == expect);
    /* A prefix: only n bytes are read. */
    CHECK(llm_mem_sum_scalar(v, 128) == 15 * 16 / 2);
    CHECK(llm_mem_sum_scalar(v, 0) == 0);
    memset(v, 1, words * 8);
    uint64_t ones = words * 0x0101010101010101ull;
    CHECK(llm_mem_sum_scalar(v, words * 8) == ones);
    /* Wrapping: the sums are modulo 2^64 like the scalar definition. */
    for (size_t i = 0; i < words; i++)
        v[i] = UINT64_MAX - i;
    uint64_t wrap = 0 - (uint64_t)words - expect; /* sum of (2^64 - 1 - i) mod 2^64 */
    CHECK(llm_mem_sum_scalar(v, words * 8) == wrap);
    if (cpu_has_avx2()) {
        for (size_t i = 0; i < words; i++)
            v[i] = i;
        CHECK(llm_mem_sum_avx2(v, words * 8) == expect);
        CHECK(llm_mem_sum_avx2(v, 128) == 15 * 16 / 2);
        memset(v, 1, words * 8);
        CHECK(llm_mem_sum_avx2(v, words * 8) == ones);
        for (size_t i = 0; i < words; i++)
            v[i] = UINT64_MAX - i;
        CHECK(llm_mem_sum_avx2(v, words * 8) == wrap);
    } else {
        fprintf(stderr, "note: this CPU has no AVX2; llm_mem_sum_avx2 not exercised\n");
    }
    free(v);
}

static void test_probe_buffer(void)
{
    llm_bw_probe p;
    CHECK_EQ_INT(llm_bw_probe_init(&p, 0), -1);
    CHECK_EQ_INT(llm_bw_probe_init(&p, 4095), -1); /* rounds down to whole pages: nothing left */
    CHECK_EQ_INT(llm_bw_probe_init(&p, 3 * 4096 + 100), 0);
    CHECK(p.bytes == 3 * 4096);
    CHECK(((uintptr_t)p.buf & 4095) == 0);
    /* Every byte is 1: the buffer is written (its pages present) before any pass is timed. */
    CHECK(llm_mem_sum_scalar(p.buf, p.bytes) == p.bytes / 8 * 0x0101010101010101ull);
    llm_bw_probe_free(&p);
    CHECK(p.buf == NULL);

    /* The 2 MiB-page probe: aligned to 2 MiB (whether the pages are huge is the OS's choice),
     * written like the other, freed by the same call. */
    CHECK_EQ_INT(llm_bw_probe_init_huge(&p, 0), -1);
    CHECK_EQ_INT(llm_bw_probe_init_huge(&p, (3u << 20) + 100), 0);
    CHECK(p.bytes == (3u << 20) && p.huge);
    CHECK(((uintptr_t)p.buf & ((2u << 20) - 1)) == 0);
    CHECK(llm_mem_sum_scalar(p.buf, p.bytes) == p.bytes / 8 * 0x0101010101010101ull);
    llm_bw_probe_free(&p);
    CHECK(p.buf == NULL);
}

/* llm_mem_alloc_huge: 2 MiB-aligned, writable to its last byte, any size. */
static void test_alloc_huge(void)
{
    static const size_t sizes[] = {1, 4096, (2u << 20) - 1, 2u << 20, (5u << 20) + 12345};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        uint8_t *b = llm_mem_alloc_huge(sizes[i]);
        CHECK_MSG(b && ((uintptr_t)b & ((2u << 20) - 1)) == 0, "%zu bytes: 2 MiB-aligned buffer", sizes[i]);
        if (!b)
            continue;
        b[0] = 1;
        b[sizes[i] - 1] = 2;
        CHECK(b[sizes[i] - 1] == 2 && (sizes[i] == 1 || b[0] == 1));
        llm_mem_free_huge(b, sizes[i]);
    }
}

/* A runner as a thread pool would be: it records how it was called and runs the slices in turn. */
typedef struct fake_pool {
    int calls, nth;
    int seen[8];
} fake_pool;

static void fake_run(void *pool, void (*fn)(void *ctx, int ith, int nth), void *ctx)
{
    fake_pool *fp = pool;
    fp->calls++;
    for (int i = 0; i < fp->nth; i++) {
        fn(ctx, i, fp->nth);
        fp->seen[i]++;
    }
}

static void test_runners(void)
{
    fake_pool fp = {.nth = 3};
    llm_runner r = {.run = fake_run, .pool = &fp, .n_threads = 3};
    double g = llm_mem_bandwidth(4u << 20, &r, 3);
    CHECK_MSG(g > 0 && isfinite(g), "fake-pool probe gives a bandwidth (%g GB/s)", g);
    CHECK_EQ_INT(fp.calls, 3); /* once per pass */
    CHECK(fp.seen[0] == 3 && fp.seen[1] == 3 && fp.seen[2] == 3 && fp.seen[3] == 0);

    /* Own threads (what fit's quick probe uses), including more threads than slices of 128 B
     * would need and a thread count over the limit of 64. */
    llm_runner own = {.n_threads = 2};
    g = llm_mem_bandwidth(4u << 20, &own, 2);
    CHECK_MSG(g > 0 && isfinite(g), "own-thread probe gives a bandwidth (%g GB/s)", g);
    own.n_threads = 0; /* <= 0: one thread */
    g = llm_mem_bandwidth(1u << 20, &own, 1);
    CHECK_MSG(g > 0 && isfinite(g), "one-thread probe gives a bandwidth (%g GB/s)", g);
    own.n_threads = 200;
    g = llm_mem_bandwidth(1u << 20, &own, 1);
    CHECK_MSG(g > 0 && isfinite(g), "200 threads asked: capped, still a bandwidth (%g GB/s)", g);
    CHECK(llm_mem_bandwidth(0, &own, 1) == -1);
}

int main(void)
{
    test_sums();
    test_probe_buffer();
    test_alloc_huge();
    test_runners();
    TEST_END("bandwidth");
}
