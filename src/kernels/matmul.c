/*
 * Matrix multiplication y = W x for weights stored in any GGUF type, the hot loop of the
 * forward pass.
 *
 * Two phases, as in ggml: the F32 activations are first converted once into the weight type's
 * vec-dot format (Q8_0, Q8_1, Q8_K, F16, ...) in the caller's scratch, then every output is the
 * backend's vec_dot on a weight row and a converted activation row -- or, where the backend has
 * one, its 4-row kernel (vec_dot4), which shares the activation work across four rows and gives
 * each row exactly vec_dot's result. So an output does not depend on the number of threads or
 * on how rows are split among them (tests rely on that).
 *
 * Prompt batches of types the backend can pack (pack8, Q4_0 today) go another way: each thread
 * copies its chunk of rows, eight at a time, into an interleaved layout in its own buffer (in
 * cache; the weights stay mapped and are read once per batch as before) and multiplies every
 * token with eight rows per call, lanes = rows, without per-block horizontal sums: about twice
 * the speed of vec_dot4. Those outputs differ from one-token results in float rounding only;
 * which rows are packed is fixed by the matrix (all but rows % 8), not by the thread count.
 *
 * Work split. W's rows are cut into chunks handed out dynamically (each thread starts with its
 * own chunk, then takes the next free one from an atomic counter), so a thread slowed down by
 * another process on a shared core does not hold up the others. For one token the chunks are
 * sized so each thread gets many of them; the weights stream through once and the activations
 * stay in L1. For a batch of tokens (prompt processing) a chunk of rows is kept small enough to
 * stay in L2 while every token of the batch is multiplied with it, in blocks of tokens whose
 * activations also fit in L2: each weight byte is read from memory once per batch rather than
 * once per token, which turns prompt processing from bandwidth-bound into compute-bound.
 */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

/* Cache budgets of the batched loop (bytes); L2 is 512 KiB per core on the target machines. */
#define MM_CHUNK_BYTES_BATCH (64u << 10)  /* weight rows reused across a token block */
#define MM_TOKBLOCK_BYTES (128u << 10)    /* converted activations of one token block */
#define MM_CHUNK_BYTES_MIN (16u << 10)    /* smallest chunk worth an atomic hand-out */
#define MM_CHUNKS_PER_THREAD 8            /* for balance when a core is shared */
#define MM_PACK_MIN_TOKENS 4              /* packing a chunk once pays off from a few tokens on */

typedef struct mm_job {
    const llm_matrix *W;
    const float *x;
    int64_t n_tok;
    float *y;
    llm_vec_dot_fn dot;
    llm_vec_dot4_fn dot4; /* NULL when the backend has no 4-row kernel for the type */
    llm_pack8_fn pack8;   /* batches only, NULL when the type has no packed layout */
    llm_vec_dot8_packed_fn dot8_packed;
    llm_pool *pool;       /* for the per-slot packing buffers */
    llm_quantize_act_fn act_fn;
    const uint8_t *act; /* converted activations, act_row bytes per token */
    uint8_t *act_dst;
    size_t w_row, act_row, pack_size; /* pack_size: bytes of eight packed rows */
    int64_t packed_rows; /* rows below this (a multiple of 8) go through pack8 in a batch */
    int64_t chunk_rows, n_chunks, tok_block;
    atomic_llong next_chunk;
} mm_job;

/* Both tables must cover the type: a missing entry is a build defect, not bad input (types come
 * from llm_type_get, and every listed type has a scalar kernel). */
static llm_vec_dot_fn pick_dot(const llm_kernels *k, llm_type t)
{
    llm_vec_dot_fn f = k->vec_dot[t] ? k->vec_dot[t] : llm_kernels_scalar()->vec_dot[t];
    if (!f) {
        fprintf(stderr, "llmap: internal error: no vec_dot kernel for %s\n", llm_type_name(t));
        abort();
    }
    return f;
}

static llm_quantize_act_fn pick_act(const llm_kernels *k, llm_type vdt)
{
    llm_quantize_act_fn f = k->quantize_act[vdt] ? k->quantize_act[vdt] : llm_kernels_scalar()->quantize_act[vdt];
    if (!f) {
        fprintf(stderr, "llmap: internal error: no activation conversion to %s\n", llm_type_name(vdt));
        abort();
    }
    return f;
}

size_t llm_matmul_scratch(const llm_matrix *W, int64_t n_tok)
{
    llm_type vdt = llm_vec_dot_type(W->type);
    if (vdt == LLM_F32)
        return 0; /* the F32 activations are used in place */
    return (size_t)n_tok * llm_row_size(vdt, W->cols);
}

static void convert_activations(void *ctx, int ith, int nth)
{
    mm_job *j = ctx;
    int64_t t0 = j->n_tok * ith / nth, t1 = j->n_tok * (ith + 1) / nth;
    for (int64_t t = t0; t < t1; t++)
        j->act_fn(j->x + t * j->W->cols, j->act_dst + (size_t)t * j->act_row, j->W->cols);
}

/* Outputs y[r0..r1) for one activation row: four rows per call where the backend has a 4-row
 * kernel (bit-identical to vec_dot, so where the groups of four start does not matter). */
static void multiply_rows_one_token(const mm_job *j, int64_t r0, int64_t r1, const uint8_t *act, float *y)
{
    const int64_t cols = j->W->cols;
    const uint8_t *w = (const uint8_t *)j->W->data;
    int64_t r = r0;
    if (j->dot4)
        for (; r + 4 <= r1; r += 4)
            j->dot4(cols, &y[r], w + (size_t)r * j->w_row, j->w_row, act);
    for (; r < r1; r++)
        j->dot(cols, &y[r], w + (size_t)r * j->w_row, act);
}

/* Per-slot buffer of a packed batch: the sums of every token's activation blocks (computed once
 * per job and slot), then one chunk's rows packed by eight. */
typedef struct pack_state {
    int32_t *act_sums; /* n_tok x blocks; NULL until the slot's first chunk */
    uint8_t *packed;
} pack_state;

static void pack_state_init(const mm_job *j, int ith, pack_state *ps)
{
    const int64_t nb = j->W->cols / 32, groups = j->chunk_rows / 8;
    size_t sums = (size_t)(j->n_tok * nb) * sizeof(int32_t);
    uint8_t *buf = llm_pool_scratch(j->pool, ith, sums + (size_t)groups * j->pack_size);
    ps->act_sums = (int32_t *)buf;
    ps->packed = buf + sums;
    if (llm_vec_dot_type(j->W->type) == LLM_Q8_0) /* q8_K rows carry their own block sums */
        for (int64_t t = 0; t < j->n_tok; t++)
            llm_act_block_sums(j->act + (size_t)t * j->act_row, j->W->cols, ps->act_sums + t * nb);
}

/* Rows r0..r1 (a multiple of 8, below packed_rows) of a batch: packed once, then every token
 * meets all eight rows of a group per call. */
static void multiply_batch_packed(const mm_job *j, const pack_state *ps, int64_t r0, int64_t r1)
{
    const int64_t rows = j->W->rows, cols = j->W->cols, nb = cols / 32;
    const uint8_t *w = (const uint8_t *)j->W->data;
    for (int64_t r = r0; r < r1; r += 8)
        j->pack8(w + (size_t)r * j->w_row, j->w_row, ps->packed + (size_t)((r - r0) / 8) * j->pack_size, cols);
    for (int64_t tb = 0; tb < j->n_tok; tb += j->tok_block) {
        int64_t te = tb + j->tok_block < j->n_tok ? tb + j->tok_block : j->n_tok;
        for (int64_t r = r0; r < r1; r += 8)
            for (int64_t t = tb; t < te; t += LLM_PACKED_MAX_ACT)
                j->dot8_packed(cols, (int)(te - t < LLM_PACKED_MAX_ACT ? te - t : LLM_PACKED_MAX_ACT), &j->y[t * rows + r],
                               (size_t)rows, ps->packed + (size_t)((r - r0) / 8) * j->pack_size,
                               j->act + (size_t)t * j->act_row, j->act_row, ps->act_sums + t * nb);
    }
}

static void multiply_chunk(const mm_job *j, pack_state *ps, int ith, int64_t chunk)
{
    const int64_t rows = j->W->rows;
    int64_t r0 = chunk * j->chunk_rows;
    const int64_t r1 = r0 + j->chunk_rows < rows ? r0 + j->chunk_rows : rows;
    if (j->n_tok == 1) {
        multiply_rows_one_token(j, r0, r1, j->act, j->y);
        return;
    }
    if (j->pack8 && r0 < j->packed_rows) {
        if (!ps->act_sums)
            pack_state_init(j, ith, ps);
        int64_t re = r1 < j->packed_rows ? r1 : j->packed_rows;
        multiply_batch_packed(j, ps, r0, re);
        r0 = re;
    }
    /* Batch: the chunk's rows stay in L2 while each token block passes over them; within a
     * block a group of (up to four) weight rows stays in L1 while it meets every token. */
    const int64_t group = j->dot4 ? 4 : 1;
    for (int64_t tb = 0; tb < j->n_tok; tb += j->tok_block) {
        int64_t te = tb + j->tok_block < j->n_tok ? tb + j->tok_block : j->n_tok;
        for (int64_t r = r0; r < r1; r += group) {
            int64_t re = r + group < r1 ? r + group : r1;
            for (int64_t t = tb; t < te; t++)
                multiply_rows_one_token(j, r, re, j->act + (size_t)t * j->act_row, j->y + t * rows);
        }
    }
}

static void multiply_rows(void *ctx, int ith, int nth)
{
    mm_job *j = ctx;
    pack_state ps = {0};
    for (int64_t c = ith; c < j->n_chunks;
         c = atomic_fetch_add_explicit(&j->next_chunk, 1, memory_order_relaxed))
        multiply_chunk(j, &ps, ith, c);
    (void)nth;
}

/* Rows per chunk: enough chunks for balance, not so small that hand-outs dominate, and (for a
 * batch) small enough to be reused from L2. */
static int64_t chunk_rows_for(const llm_matrix *W, int64_t n_tok, size_t w_row, int nth)
{
    int64_t by_balance = W->rows / ((int64_t)nth * MM_CHUNKS_PER_THREAD);
    int64_t min_rows = (int64_t)(MM_CHUNK_BYTES_MIN / w_row);
    int64_t rows = by_balance > min_rows ? by_balance : min_rows;
    if (n_tok > 1) {
        int64_t cache_rows = (int64_t)(MM_CHUNK_BYTES_BATCH / w_row);
        if (rows > cache_rows)
            rows = cache_rows;
    }
    return rows < 1 ? 1 : rows;
}

void llm_matmul(llm_pool *pool, const llm_kernels *k, const llm_matrix *W, const float *x, int64_t n_tok,
                float *y, void *scratch)
{
    if (n_tok <= 0 || W->rows <= 0)
        return;
    if (n_tok == 1) { /* generation: the one-token path below */
        llm_matmul_multi(pool, k, 1, &W, x, 1, &y, scratch);
        return;
    }
    const int nth = llm_pool_threads(pool);
    llm_type vdt = llm_vec_dot_type(W->type);
    mm_job j = {.W = W, .x = x, .n_tok = n_tok, .y = y, .dot = pick_dot(k, W->type),
                .dot4 = k->vec_dot[W->type] ? k->vec_dot4[W->type] : NULL,
                .w_row = llm_row_size(W->type, W->cols), .pool = pool};
    if (pool && n_tok >= MM_PACK_MIN_TOKENS && k->vec_dot[W->type] && k->pack8[W->type] &&
        k->vec_dot8_packed[W->type] && W->rows >= 8) {
        j.pack8 = k->pack8[W->type];
        j.dot8_packed = k->vec_dot8_packed[W->type];
        j.pack_size = llm_packed8_size(W->type, W->cols);
        j.packed_rows = W->rows / 8 * 8;
    }
    if (vdt == LLM_F32) {
        j.act = (const uint8_t *)x;
        j.act_row = (size_t)W->cols * sizeof(float);
    } else {
        j.act_fn = pick_act(k, vdt);
        j.act_dst = scratch;
        j.act = scratch;
        j.act_row = llm_row_size(vdt, W->cols);
        /* One row converts in about a microsecond: only a batch is worth a hand-out. */
        if (n_tok >= 4 && nth > 1)
            llm_pool_run(pool, convert_activations, &j);
        else
            convert_activations(&j, 0, 1);
    }
    j.chunk_rows = chunk_rows_for(W, n_tok, j.w_row, nth);
    if (j.pack8) /* chunks start on a group of eight, so which rows are packed does not depend on nth */
        j.chunk_rows = (j.chunk_rows + 7) / 8 * 8;
    j.n_chunks = (W->rows + j.chunk_rows - 1) / j.chunk_rows;
    int64_t tb = (int64_t)(MM_TOKBLOCK_BYTES / j.act_row);
    j.tok_block = tb < 1 ? 1 : tb;
    atomic_init(&j.next_chunk, nth);
    if (nth > 1 && j.n_chunks > 1)
        llm_pool_run(pool, multiply_rows, &j);
    else
        multiply_rows(&j, 0, 1);
}

/* ---- one token, several matrices with the same input ------------------------------------- */

/* Generation multiplies one activation row with matrices of a few hundred KiB to a few MiB, so
 * what a hand-out costs around the work counts: converting the activations (one thread, while
 * the others wait), the wake-up, and the tail where one thread finishes its last chunk while the
 * other has nothing left. Q, K and V (and gate and up) read the same input: as one job their
 * activations are converted once per vec-dot type, K and V (a few hundred rows each, too few to
 * split well on their own) share chunks with Q, and there is one tail instead of three. Each
 * output is still vec_dot / vec_dot4 / vec_dot_rows on its own row, so results are bit-identical to one
 * llm_matmul per matrix, whatever the thread count. */

/* One matrix of the job and its place in the job's list of units. */
typedef struct mv_part {
    const llm_matrix *W;
    llm_vec_dot_fn dot;
    llm_vec_dot4_fn dot4;
    llm_vec_dot_rows_fn dot_rows; /* when the backend has it: a whole piece in one call */
    const uint8_t *act;
    float *y;
    size_t w_row;
    int64_t unit_rows, first_unit;
} mv_part;

/* Work split for one token. The job's rows (its parts one after another) are cut into units of
 * about MV_UNIT_BYTES, and each slot owns a contiguous range of units, which it walks front to
 * back in pieces of a quarter of what is left: one sequential stream per thread and job, which
 * the hardware prefetcher follows, and few hand-outs. A slot that is done takes single units
 * from the back of another slot's range, so a thread held up by another process is shared out
 * and the tail where one thread waits for the other is about one unit (under a microsecond).
 * Front and back of a range live in one atomic word claimed by compare-and-swap, so a unit is
 * taken exactly once. Against chunks of 1/16 of the job from one shared counter (alternated in
 * one process, 1.1B Q4_0, 8 pairs of 32 tokens): Q/K/V 28.8 -> 30.0 GB/s, wo 28.4 -> 29.8,
 * the large matrices unchanged, all matrix products +1%. */
#define MV_UNIT_BYTES (16u << 10)
#define MV_MAX_RANGES 64

typedef struct mv_range {
    _Alignas(64) atomic_ullong front_back; /* front unit (low 32 bits), end unit (high 32 bits) */
} mv_range;

typedef struct mv_job {
    mv_part part[LLM_MATMUL_MULTI_MAX];
    int n_part, n_ranges;
    int64_t n_units;
    mv_range range[MV_MAX_RANGES];
} mv_job;

/* Rows [r, r1) of one part. */
static void mv_rows(const mv_part *p, int64_t r, int64_t r1)
{
    const int64_t cols = p->W->cols;
    const uint8_t *w = (const uint8_t *)p->W->data;
    if (p->dot_rows) {
        p->dot_rows(cols, r1 - r, &p->y[r], w + (size_t)r * p->w_row, p->w_row, p->act);
        return;
    }
    if (p->dot4)
        for (; r + 4 <= r1; r += 4)
            p->dot4(cols, &p->y[r], w + (size_t)r * p->w_row, p->w_row, p->act);
    for (; r < r1; r++)
        p->dot(cols, &p->y[r], w + (size_t)r * p->w_row, p->act);
}

/* Units [u, u1), which may span parts. */
static void mv_units(const mv_job *j, int64_t u, int64_t u1)
{
    int i = 0;
    while (u < u1) {
        while (i + 1 < j->n_part && u >= j->part[i + 1].first_unit)
            i++;
        const mv_part *p = &j->part[i];
        const int64_t end = i + 1 < j->n_part && j->part[i + 1].first_unit < u1 ? j->part[i + 1].first_unit : u1;
        const int64_t r = (u - p->first_unit) * p->unit_rows, r1 = (end - p->first_unit) * p->unit_rows;
        mv_rows(p, r, r1 < p->W->rows ? r1 : p->W->rows);
        u = end;
    }
}

/* Claims units of a range: its owner a quarter of what is left (at least one unit) from the
 * front, large pieces early and single units at the end; another slot one unit from the back.
 * Returns the count taken (*u the first), 0 when the range is empty. */
static int64_t take(mv_range *rg, bool owner, int64_t *u)
{
    unsigned long long v = atomic_load_explicit(&rg->front_back, memory_order_relaxed);
    for (;;) {
        const uint32_t f = (uint32_t)v, b = (uint32_t)(v >> 32);
        if (f >= b)
            return 0;
        const uint32_t n = owner && (b - f) / 4 ? (b - f) / 4 : 1;
        const unsigned long long next = owner ? v + n : v - ((unsigned long long)n << 32);
        if (atomic_compare_exchange_weak_explicit(&rg->front_back, &v, next, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            *u = owner ? f : b - n;
            return n;
        }
    }
}

static void mv_worker(void *ctx, int ith, int nth)
{
    mv_job *j = ctx;
    int64_t u, n;
    if (ith < j->n_ranges)
        while ((n = take(&j->range[ith], true, &u)) > 0)
            mv_units(j, u, u + n);
    for (int o = 1; o <= j->n_ranges; o++) {
        mv_range *rg = &j->range[(ith + o) % j->n_ranges];
        while ((n = take(rg, false, &u)) > 0)
            mv_units(j, u, u + n);
    }
    (void)nth;
}

/* Units of about the same bytes in every part, rows in multiples of four for the 4-row
 * kernels; each slot owns an equal share of them. */
static void mv_split(mv_job *j, int nth)
{
    j->n_units = 0;
    for (int i = 0; i < j->n_part; i++) {
        mv_part *p = &j->part[i];
        int64_t rows = (int64_t)(MV_UNIT_BYTES / p->w_row);
        rows = rows < 4 ? 4 : rows / 4 * 4;
        p->unit_rows = rows;
        p->first_unit = j->n_units;
        j->n_units += (p->W->rows + rows - 1) / rows;
    }
    j->n_ranges = nth < MV_MAX_RANGES ? nth : MV_MAX_RANGES;
    for (int t = 0; t < j->n_ranges; t++) {
        const uint64_t f = (uint64_t)(j->n_units * t / j->n_ranges), b = (uint64_t)(j->n_units * (t + 1) / j->n_ranges);
        atomic_init(&j->range[t].front_back, f | b << 32);
    }
}

size_t llm_matmul_multi_scratch(int n, const llm_matrix *const W[], int64_t n_tok)
{
    size_t one = 0, most = 0;
    for (int i = 0; i < n; i++) {
        size_t s = llm_matmul_scratch(W[i], n_tok);
        one += llm_matmul_scratch(W[i], 1);
        most = s > most ? s : most;
    }
    return one > most ? one : most;
}

/* Activations of part i: converted into scratch, or shared with an earlier part of the same
 * vec-dot type (x itself for F32). Returns the scratch bytes used so far. */
static size_t mv_convert(mv_job *j, int i, const llm_kernels *k, const float *x, uint8_t *scratch, size_t used)
{
    mv_part *p = &j->part[i];
    const llm_type vdt = llm_vec_dot_type(p->W->type);
    if (vdt == LLM_F32) {
        p->act = (const uint8_t *)x;
        return used;
    }
    for (int e = 0; e < i; e++)
        if (llm_vec_dot_type(j->part[e].W->type) == vdt) {
            p->act = j->part[e].act;
            return used;
        }
    pick_act(k, vdt)(x, scratch + used, p->W->cols);
    p->act = scratch + used;
    return used + llm_row_size(vdt, p->W->cols);
}

void llm_matmul_multi(llm_pool *pool, const llm_kernels *k, int n, const llm_matrix *const W[], const float *x,
                      int64_t n_tok, float *const y[], void *scratch)
{
    if (n_tok != 1 || n < 1 || n > LLM_MATMUL_MULTI_MAX) {
        for (int i = 0; i < n; i++)
            llm_matmul(pool, k, W[i], x, n_tok, y[i], scratch);
        return;
    }
    const int nth = llm_pool_threads(pool);
    mv_job j = {.n_part = 0};
    size_t used = 0;
    for (int i = 0; i < n; i++) {
        if (W[i]->rows <= 0)
            continue;
        mv_part *p = &j.part[j.n_part];
        *p = (mv_part){.W = W[i], .dot = pick_dot(k, W[i]->type), .y = y[i],
                       .dot4 = k->vec_dot[W[i]->type] ? k->vec_dot4[W[i]->type] : NULL,
                       .dot_rows = k->vec_dot[W[i]->type] ? k->vec_dot_rows[W[i]->type] : NULL,
                       .w_row = llm_row_size(W[i]->type, W[i]->cols)};
        used = mv_convert(&j, j.n_part, k, x, scratch, used);
        j.n_part++;
    }
    mv_split(&j, nth);
    if (nth > 1 && j.n_units > 1)
        llm_pool_run(pool, mv_worker, &j);
    else
        mv_worker(&j, 0, 1);
}
