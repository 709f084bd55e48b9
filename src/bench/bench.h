/*
 * bench — measurements that say how close llmap gets to the machine's limits: the memory read
 * bandwidth (the roofline of token generation, which reads every weight once per token) and the
 * throughput of matrix x vector products per weight type, reported as a ratio of the bandwidth
 * measured in the same run (shared machines move absolute numbers by 2x between runs).
 */
#ifndef LLMAP_BENCH_H
#define LLMAP_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kernels/kernels.h"
#include "mem/mem.h"
#include "util/util.h"


/* One pass of a probe buffer (llm_bw_probe_init/free, src/mem) on the pool: GB/s. */
double llm_bw_probe_pass(llm_bw_probe *p, llm_pool *pool);

/* The roofline's denominator: memory read in 4 KiB pages, as machine.md's figures were, and in
 * 2 MiB pages, as weights mapped from 2 MiB page-cache folios are (and a benchmark's matrix is),
 * the faster of the two counting: what memory is known to deliver. On this machine kind (a VM
 * with shadow paging) passes over 4 KiB pages right after other large reads ran as slow as
 * 2.3 GB/s, three in a row, while the hypervisor rebuilt its page tables; against that probe
 * alone a token was once read at 1421% of the bandwidth. In 2 MiB pages the probe kept reading
 * 54-63 GB/s. */
typedef struct llm_bench_bw {
    llm_bw_probe small, huge;   /* huge.buf NULL: no memory for it, only the 4 KiB probe */
    double small_best, huge_best; /* best GB/s so far of each */
} llm_bench_bw;

int llm_bench_bw_init(llm_bench_bw *b, size_t bytes); /* -1 when out of memory for the 4 KiB one */
/* One pass of each; returns the faster of the two (GB/s) and keeps the bests. */
double llm_bench_bw_pass(llm_bench_bw *b, llm_pool *pool);
double llm_bench_bw_best(const llm_bench_bw *b);
void llm_bench_bw_free(llm_bench_bw *b);

typedef struct llm_kbench_opts {
    size_t weight_bytes;  /* matrix size per type; should exceed the last-level cache */
    size_t bw_bytes;      /* buffer of the bandwidth probe */
    int64_t cols;         /* row length (multiple of 256) */
    int reps;             /* best of */
    int max_threads;      /* thread counts 1..max_threads are measured (powers of two and max) */
    const char *types;    /* comma-separated type names; NULL: every type the kernels support */
    int batch;            /* > 0: also time a prompt-style batch of this many tokens (G MAC/s) */
    FILE *out;
} llm_kbench_opts;

/* `llmap bench kernels`: bandwidth, then matrix x vector GB/s per type and thread count. */
int llm_bench_kernels(const llm_kbench_opts *opts, llm_err *err);

#endif
