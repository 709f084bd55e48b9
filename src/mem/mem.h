/*
 * mem — how model weights reach memory, and what that costs.
 *
 * A model file is mapped read-only and shared, so the kernel pages weights in on demand and
 * two processes serving one model share its pages. The alternative modes read the file into
 * anonymous memory (--no-mmap) or lock the mapping (--mlock). Around that, the raw signals
 * the memory features are built on: residency of a range (mincore), page faults and bytes
 * read over an interval, and what memory the machine and this process's cgroup allow.
 *
 * A mapped file that is truncated while in use would kill the process with SIGBUS; instead a
 * handler replaces the missing pages with zeros, marks the mapping broken, and llm_map_check
 * turns that into an error naming the file.
 */
#ifndef LLMAP_MEM_H
#define LLMAP_MEM_H

#include <stdbool.h>
#include <stdint.h>

#include "util/util.h"

typedef enum llm_map_mode {
    LLM_MAP_MMAP = 0, /* shared read-only mapping, paged on demand (default) */
    LLM_MAP_READ = 1, /* read() into anonymous memory (--no-mmap) */
} llm_map_mode;

typedef struct llm_map_opts {
    llm_map_mode mode;
    bool mlock;    /* lock the pages in RAM; a warning, not an error, when the limit forbids it */
} llm_map_opts;

typedef struct llm_map {
    char *path;
    uint8_t *base;
    uint64_t size;
    llm_map_mode mode;
    bool locked;
    int fd;
    int slot;          /* index in the SIGBUS registry, -1 when not registered */
    double load_seconds;
    char warning[512]; /* non-fatal problem worth telling the user (e.g. mlock refused) */
} llm_map;

int llm_map_open(llm_map *m, const char *path, const llm_map_opts *opts, llm_err *err);
void llm_map_close(llm_map *m);
/* -1 with an error naming the file when the file shrank or a page of it could not be read
 * (SIGBUS caught) since it was mapped. Call after each use of the weights. */
int llm_map_check(const llm_map *m, llm_err *err);

typedef enum llm_advice {
    LLM_ADV_NORMAL,
    LLM_ADV_WILLNEED,   /* start reading these pages now */
    LLM_ADV_DONTNEED,   /* drop them from this process; a file mapping re-reads on next use */
    LLM_ADV_COLD,       /* keep but evict first (Linux 5.4+; falls back to nothing) */
    LLM_ADV_SEQUENTIAL,
    LLM_ADV_RANDOM,
} llm_advice;

/* Advice on a byte range of the mapping (rounded out to pages). No-op in READ mode. */
void llm_map_advise(const llm_map *m, uint64_t off, uint64_t len, llm_advice advice);
/* Bytes of [off, off+len) resident in RAM (page granularity). READ mode: all of it. */
uint64_t llm_map_resident(const llm_map *m, uint64_t off, uint64_t len);

/* Drops [off, off+len) of the file from the page cache (after DONTNEED unmapped it here), so
 * streamed layers don't push resident ones out. Pages other processes map are kept. */
void llm_map_drop_cache(const llm_map *m, uint64_t off, uint64_t len);

/* ---- cold load (populate.c) ---------------------------------------------------------------- */

typedef struct llm_populate_report {
    double resident_before; /* share of a page sample that was in RAM before */
    bool cold;              /* below the warm threshold: the file was read in */
    uint64_t bytes;         /* read so far (less than `wanted` when stopped early) */
    uint64_t wanted;        /* bytes the read-in was to read: the file less the skipped range */
    double seconds;
} llm_populate_report;

/* When a sample of the mapping is not in the page cache, reads the whole file through once in
 * order (page cache filled at disk speed, instead of demand faults during the first token); a
 * progress bar on stderr when `progress`, stderr is a terminal and it takes > 1 s.
 * Warm cache or READ mode: returns at once. rep may be NULL. Always 0 (a failed read-ahead
 * only means the weights fault in later). */
int llm_map_populate(const llm_map *m, bool progress, llm_populate_report *rep);
struct llm_range;
/* The same, leaving out one range that is read sparsely (an untied embedding table: a row per
 * token), so it neither costs disk time now nor comes in as large folios later. skip may be NULL. */
int llm_map_populate_except(const llm_map *m, const struct llm_range *skip, bool progress, llm_populate_report *rep);
/* The same read-in on a helper thread, so that it overlaps what follows loading (vocabulary,
 * context, the first prompt): compute walks the weights in file order behind the reader and
 * finds them cached, where an up-front read-in made the first token wait for the whole file.
 * rep gets the cold/warm verdict at once. NULL when there is nothing to read (warm, READ mode),
 * or when no thread could be started (then the file was read in on this one, rep complete).
 * The map must stay open until llm_populate_finish. */
typedef struct llm_populate llm_populate;
llm_populate *llm_map_populate_start(const llm_map *m, const struct llm_range *skip, llm_populate_report *rep);
/* A warm file's counterpart: a helper thread maps the file in order (page tables filled with
 * MADV_POPULATE_READ, then one read per page), skipping `skip`, ahead of the first forward pass
 * that would otherwise take those page faults inside its matrix multiplications. Finished (and
 * stopped) with llm_populate_finish like the read-in; its report has cold == false and bytes =
 * bytes mapped. NULL in READ mode or when no thread could be started. */
llm_populate *llm_map_map_in_start(const llm_map *m, const struct llm_range *skip);
/* Waits for the read-in to end — with `stop`, after the read in progress: a model closed before
 * its file was read in need not wait for the rest — and fills rep (may be NULL). NULL p: no-op. */
void llm_populate_finish(llm_populate *p, bool stop, llm_populate_report *rep);
/* Reads [off, off+len) into the page cache and maps it now, in large pieces, with up to
 * `threads` readers (1: on the calling thread). Used by streaming for its prefetches. */
void llm_map_populate_range(const llm_map *m, uint64_t off, uint64_t len, int threads);

/* ---- streaming (stream.c) ------------------------------------------------------------------ */

typedef struct llm_range {
    uint64_t off, len; /* bytes of the file */
} llm_range;

typedef struct llm_stream llm_stream;

/* Plans streaming for a model whose layer i occupies layers[i] of the file: the hot ranges and
 * as many leading layers as fit in budget bytes stay resident, the rest are prefetched
 * `lookahead` layers ahead of use by a helper thread and dropped behind. NULL with err when the
 * map is not a file mapping. */
llm_stream *llm_stream_new(const llm_map *m, const llm_range *layers, int n_layers, const llm_range *hot,
                           int n_hot, uint64_t budget, int lookahead, llm_err *err);
void llm_stream_free(llm_stream *s);
/* Before computing layer il (every token walks 0..n_layers-1), and with il == n_layers after
 * the last layer (the walk is over). */
void llm_stream_layer(llm_stream *s, int il);
/* Buffer mode: streamed layers are read into lookahead + 1 fixed private buffers instead of the
 * mapping (their pages stay mapped: no page-table churn per token), and before layer il is
 * computed bind(user, il, bytes) points the layer's weights at `bytes`, the copy of the file
 * from offset layers[il].off; at free, bind gets the mapping's address back. Walks over the
 * streamed layers take turns. Takes ownership of user (freed with free()). Call before use. */
typedef void (*llm_stream_bind_fn)(void *user, int il, const uint8_t *bytes);
int llm_stream_set_binder(llm_stream *s, llm_stream_bind_fn bind, void *user, llm_err *err);
int llm_stream_first_streamed(const llm_stream *s);
uint64_t llm_stream_resident_bytes(const llm_stream *s);

typedef struct llm_stream_stats {
    uint64_t bytes_read;  /* streamed bytes read so far */
    double wait_seconds;  /* compute time spent waiting for a streamed layer to arrive */
    double read_seconds;  /* time with a read in flight (bytes_read / this: the readers' bandwidth) */
    int reader_nice;      /* the reader thread's nice value (< 0: raised above compute) */
    int walks, walks_direct; /* buffer mode: walks (tokens) so far, and how many read with O_DIRECT */
    bool locked;          /* the resident part is locked in RAM */
} llm_stream_stats;
void llm_stream_get_stats(llm_stream *s, llm_stream_stats *st);

/* ---- thrash detection (thrash.c) ----------------------------------------------------------- */

typedef struct llm_thrash {
    uint64_t bytes_per_token; /* weights read per generated token */
    double resident_tok_s;    /* expected speed when resident; 0 = unknown */
    uint64_t faults, read;
    double seconds;
    int tokens;
    bool warned;
    char message[512];
} llm_thrash;

void llm_thrash_init(llm_thrash *t, uint64_t bytes_per_token, double resident_tok_s);
/* Feeds one generated token's counter deltas; true exactly once, when generation is found to be
 * paging-bound (then t->message says so, with numbers and advice). */
bool llm_thrash_observe(llm_thrash *t, uint64_t major_faults, uint64_t read_bytes, double seconds);

/* Counters of this process at one instant; differences of two samples give an interval. */
typedef struct llm_mem_sample {
    double t;              /* seconds, monotonic */
    uint64_t minor_faults;
    uint64_t major_faults;
    uint64_t read_bytes;   /* bytes this process caused to be read from storage (/proc/self/io) */
    uint64_t rss;          /* resident set size, bytes */
} llm_mem_sample;

void llm_mem_sample_now(llm_mem_sample *s);

/* What memory this process may use. Zero fields are unknown or not applicable. */
typedef struct llm_sysmem {
    uint64_t total;          /* physical RAM */
    uint64_t available;      /* MemAvailable (Linux) / free + inactive (macOS) */
    uint64_t swap_total, swap_free;
    uint64_t cgroup_limit;   /* memory cgroup limit of this process, 0 when none */
    uint64_t cgroup_usage;
    bool unified;            /* CPU and GPU share memory (Apple Silicon) */
    uint64_t gpu_working_set;/* macOS: recommended max working set of the GPU */
    uint64_t page_size;
} llm_sysmem;

void llm_sysmem_get(llm_sysmem *s);
/* The memory this process can actually use: available RAM, capped by the cgroup headroom. */
uint64_t llm_sysmem_usable(const llm_sysmem *s);

/* ---- memory read bandwidth (bandwidth.c, sum_avx2.c) ---------------------------------------- */

/* Runs fn(ctx, ith, nth) for every ith < nth at once and returns when all are done: how a
 * caller lends its thread pool (src/kernels) to the probe. run == NULL: the probe starts
 * n_threads threads of its own (at most 64) for each pass. */
typedef struct llm_runner {
    void (*run)(void *pool, void (*fn)(void *ctx, int ith, int nth), void *ctx);
    void *pool;
    int n_threads; /* nth that run uses; <= 0: 1 */
} llm_runner;

/* A buffer for the probe, kept so a benchmark can interleave bandwidth passes with its own and
 * compare the two under the same conditions (a shared machine drifts). The probe's memory is
 * ordinary heap memory in 4 KiB pages, as machine.md's figures were read; _huge puts it in 2 MiB
 * pages (llm_mem_alloc_huge) instead, where the same sum read 1.2-1.3x faster with 2 threads on
 * this machine kind (fewer page walks): the ceiling for weights mapped from 2 MiB folios. */
typedef struct llm_bw_probe {
    void *buf;
    size_t bytes;
    bool huge;
} llm_bw_probe;

int llm_bw_probe_init(llm_bw_probe *p, size_t bytes); /* -1 when out of memory */
int llm_bw_probe_init_huge(llm_bw_probe *p, size_t bytes);
/* One pass: every thread sums its slice (AVX2 when the CPU has it); GB/s (1e9 bytes/s). */
double llm_bw_probe_measure(llm_bw_probe *p, const llm_runner *r);
void llm_bw_probe_free(llm_bw_probe *p);
/* Best read bandwidth of `reps` passes over `bytes` of memory, in GB/s; -1 when out of memory. */
double llm_mem_bandwidth(size_t bytes, const llm_runner *r, int reps);

/* The streaming sums behind the probe (returned so the loads cannot be optimized away). n is a
 * multiple of 128 and p is 32-byte aligned. */
uint64_t llm_mem_sum_scalar(const void *p, size_t n);
uint64_t llm_mem_sum_avx2(const void *p, size_t n);

/* ---- buffers in 2 MiB pages (map.c) ------------------------------------------------------- */

/* An anonymous read-write buffer aligned to 2 MiB and advised to use transparent huge pages:
 * large streamed buffers (benchmarks, streaming slots) then take one TLB entry per 2 MiB.
 * NULL when out of memory; free with llm_mem_free_huge and the same size. */
void *llm_mem_alloc_huge(size_t bytes);
void llm_mem_free_huge(void *p, size_t bytes);

/* ---- committed memory (populate.c) --------------------------------------------------------- */

/* Makes the pages of a private buffer present now (an out-of-memory shows here, and RSS counts
 * them) without trapping once per page: one MADV_POPULATE_WRITE where the kernel has it (5.14+),
 * else a write to each page. Under shadow paging (this VM kind) a trapped first touch costs
 * 15-30 us per page, so a buffer committed this way pays that only for the pages later used:
 * a 4096-token KV cache of which a short chat uses a few rows. Contents are kept.
 * 0, or -1 when the memory is not there. */
int llm_mem_commit(void *p, size_t n);

#endif
