/*
 * Re-quantizing a GGUF file (llmap quantize IN OUT TYPE).
 *
 * Every matrix is converted row by row: dequantize the stored row to F32 with the reference
 * kernels, quantize it to the target type. Rows are independent, so the rows of one tensor are
 * split across a thread pool; tensors are streamed one at a time through the writer's fill
 * callback, so memory is bounded by the largest tensor. A tensor already of its target type is
 * copied unchanged (re-quantizing would only add error).
 *
 * The Q4_K_M mix follows llama.cpp (src/llama-quant.cpp, llama_tensor_get_type): Q4_K
 * everywhere, Q6_K for the output projection (token_embd when tied), and Q6_K for attn_v and
 * ffn_down in the layers use_more_bits() picks (the first and last eighth and every third one
 * between); a tensor whose rows are not a multiple of 256 falls back to the 32-block type
 * llama.cpp uses (Q4_K -> Q5_0, Q6_K -> Q8_0). Plain types are "pure": unlike llama-quantize
 * without --pure, the output tensor gets the same type as the rest.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "mem/mem.h"
#include "synth/synth.h"

/* ---- choosing types ---------------------------------------------------------------------- */

uint32_t llm_file_type_of(llm_type t)
{
    switch (t) {
    case LLM_F32: return 0;
    case LLM_F16: return 1;
    case LLM_Q4_0: return 2;
    case LLM_Q4_1: return 3;
    case LLM_Q8_0: return 7;
    case LLM_Q5_0: return 8;
    case LLM_Q5_1: return 9;
    case LLM_Q2_K: return 10;
    case LLM_Q3_K: return 11; /* Q3_K_S */
    case LLM_Q4_K: return 14; /* Q4_K_S */
    case LLM_Q5_K: return 16; /* Q5_K_S */
    case LLM_Q6_K: return 18;
    case LLM_BF16: return 32;
    default: return 0;
    }
}

int llm_quant_target_parse(const char *name, llm_quant_target *out, llm_err *err)
{
    memset(out, 0, sizeof *out);
    if (!strcasecmp(name, "q4_k_m")) {
        out->preset = LLM_QUANT_Q4_K_M;
        out->type = LLM_Q4_K;
        out->file_type = 15;
        return 0;
    }
    int t = llm_type_from_name(name);
    if (t < 0)
        return llm_errf(err, "unknown type '%s' (try f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, "
                             "q2_k, q3_k, q4_k, q5_k, q6_k, q4_k_m)", name);
    if (!llm_type_can_quantize((llm_type)t))
        return llm_errf(err, "type '%s' cannot be produced by llmap", name);
    out->preset = LLM_QUANT_PURE;
    out->type = (llm_type)t;
    out->file_type = llm_file_type_of((llm_type)t);
    return 0;
}

/* llama.cpp's choice of the layers that get more bits in the _M mixes. */
static bool use_more_bits(int i_layer, int n_layer)
{
    return i_layer < n_layer / 8 || i_layer >= 7 * n_layer / 8 || (i_layer - n_layer / 8) % 3 == 2;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

llm_type llm_quant_tensor_type(const llm_quant_target *target, const char *name, uint32_t n_dims,
                               int64_t ne0, int layer, int n_layer, bool has_output)
{
    if (n_dims < 2)
        return LLM_F32;
    if (target->preset != LLM_QUANT_Q4_K_M)
        return target->type;
    llm_type t = LLM_Q4_K;
    if (!strcmp(name, "output.weight") || (!has_output && !strcmp(name, "token_embd.weight")))
        t = LLM_Q6_K;
    else if (layer >= 0 && (ends_with(name, "attn_v.weight") || ends_with(name, "ffn_down.weight")) &&
             use_more_bits(layer, n_layer))
        t = LLM_Q6_K;
    if (ne0 % 256)
        t = t == LLM_Q6_K ? LLM_Q8_0 : LLM_Q5_0;
    return t;
}

/* "blk.12.attn_v.weight" -> 12; -1 for tensors outside the blocks. */
static int layer_of(const char *name)
{
    if (strncmp(name, "blk.", 4))
        return -1;
    char *end;
    long v = strtol(name + 4, &end, 10);
    return end != name + 4 && *end == '.' && v >= 0 && v < 1 << 20 ? (int)v : -1;
}

/* Types with no float interpretation: copied verbatim. */
static bool is_verbatim_type(llm_type t)
{
    return t == LLM_I8 || t == LLM_I16 || t == LLM_I32 || t == LLM_I64 || t == LLM_F64;
}

/* ---- converting rows in parallel ------------------------------------------------------------ */

typedef struct convert_job {
    const uint8_t *src;
    llm_type src_type;
    uint8_t *dst;
    llm_type dst_type;
    int64_t ne0, rows;
    size_t src_row, dst_row;
    float **bufs; /* one row buffer per thread */
    atomic_int failed;
} convert_job;

static void convert_rows(void *ctx, int ith, int nth)
{
    convert_job *j = ctx;
    int64_t r0 = j->rows * ith / nth, r1 = j->rows * (ith + 1) / nth;
    float *buf = j->bufs[ith];
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *s = j->src + (size_t)r * j->src_row;
        uint8_t *d = j->dst + (size_t)r * j->dst_row;
        llm_dequantize_row(j->src_type, s, buf, j->ne0);
        if (llm_quantize_row(j->dst_type, buf, d, j->ne0)) {
            atomic_store(&j->failed, 1);
            return;
        }
    }
}

/* ---- the file ------------------------------------------------------------------------------- */

typedef struct qctx {
    const gguf_file *src;
    const llm_map *map;
    llm_type *out_type;  /* per source tensor */
    uint64_t next;       /* index of the tensor the writer asks for next */
    llm_pool *pool;
    float **bufs;
    bool progress, tty;
    double t0;
    uint64_t bytes_done, bytes_total;
} qctx;

static void show_progress(qctx *q, const gguf_tensor *t, llm_type to)
{
    if (!q->progress)
        return;
    double el = llm_now() - q->t0;
    fprintf(stderr, "%s[%4llu/%4llu] %-32s %6s -> %-6s %5.1f%%  %.1fs%s", q->tty ? "\r" : "",
            (unsigned long long)q->next + 1, (unsigned long long)q->src->n_tensors, t->name,
            llm_type_name(t->type), llm_type_name(to),
            q->bytes_total ? 100.0 * (double)q->bytes_done / (double)q->bytes_total : 100.0, el,
            q->tty ? "\033[K" : "\n");
    fflush(stderr);
}

static int fill_tensor(void *ctx, const char *name, void *dst, uint64_t size, llm_err *err)
{
    qctx *q = ctx;
    if (q->next >= q->src->n_tensors || strcmp(q->src->tensors[q->next].name, name))
        return llm_errf(err, "tensor '%s': written out of order", name);
    const gguf_tensor *t = &q->src->tensors[q->next];
    llm_type to = q->out_type[q->next];
    show_progress(q, t, to);
    if (to == t->type) {
        memcpy(dst, t->data, size);
    } else {
        convert_job j = {
            .src = t->data, .src_type = t->type, .dst = dst, .dst_type = to, .ne0 = t->ne[0],
            .rows = (int64_t)(gguf_tensor_nelements(t) / (uint64_t)t->ne[0]),
            .src_row = llm_row_size(t->type, t->ne[0]), .dst_row = llm_row_size(to, t->ne[0]),
            .bufs = q->bufs,
        };
        atomic_init(&j.failed, 0);
        llm_pool_run(q->pool, convert_rows, &j);
        if (atomic_load(&j.failed))
            return llm_errf(err, "tensor '%s': cannot quantize to %s", name, llm_type_name(to));
    }
    /* The source pages are not needed again: keep the resident set bounded. */
    llm_map_advise(q->map, q->src->data_offset + t->offset, t->size, LLM_ADV_DONTNEED);
    if (llm_map_check(q->map, err))
        return -1;
    q->bytes_done += t->size;
    q->next++;
    return 0;
}

/* Decides every tensor's type and declares it to the writer; errors on impossible shapes. */
static int plan_tensors(const gguf_file *f, const llm_quant_target *target, gguf_writer *w, llm_type *out_type,
                        int64_t *max_ne0, llm_err *err)
{
    int n_layer = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        int l = layer_of(f->tensors[i].name);
        if (l + 1 > n_layer)
            n_layer = l + 1;
    }
    bool has_output = gguf_find_tensor(f, "output.weight") != NULL;
    *max_ne0 = 1;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        llm_type to = t->type;
        if (!is_verbatim_type(t->type)) {
            if (!llm_type_get(t->type) || llm_row_size(t->type, t->ne[0]) == 0)
                return llm_errf(err, "%s: tensor '%s': type %s cannot be converted", f->path, t->name,
                                llm_type_name(t->type));
            to = llm_quant_tensor_type(target, t->name, t->n_dims, t->ne[0], layer_of(t->name), n_layer,
                                       has_output);
            const llm_type_info *ti = llm_type_get(to);
            if (t->ne[0] % ti->blck)
                return llm_errf(err, "%s: tensor '%s': row length %lld is not a multiple of the %s block size %u",
                                f->path, t->name, (long long)t->ne[0], ti->name, ti->blck);
        }
        out_type[i] = to;
        if (t->ne[0] > *max_ne0)
            *max_ne0 = t->ne[0];
        if (gguf_w_tensor(w, t->name, to, t->n_dims, t->ne, NULL, err))
            return llm_err_prefix(err, "%s", f->path);
    }
    return 0;
}

/* All metadata in its original order, then general.quantization_version and
 * general.file_type at the end, where llama-quantize puts them (so converting a file back to its
 * own type reproduces it byte for byte). */
static void copy_metadata(const gguf_file *f, const llm_quant_target *target, gguf_writer *w)
{
    for (uint64_t i = 0; i < f->n_kv; i++) {
        const char *k = f->kv[i].key;
        /* The writer emits general.alignment itself; the other two are rewritten below. */
        if (!strcmp(k, "general.alignment") || !strcmp(k, "general.file_type") ||
            !strcmp(k, "general.quantization_version"))
            continue;
        gguf_w_copy_kv(w, &f->kv[i]);
    }
    if (target->type != LLM_F32 && target->type != LLM_F16 && target->type != LLM_BF16)
        gguf_w_u32(w, "general.quantization_version", 2);
    gguf_w_u32(w, "general.file_type", target->file_type);
}

int llm_quantize_file(const char *in_path, const char *out_path, const llm_quant_target *target,
                      const llm_quantize_opts *opts, llm_err *err)
{
    llm_map map = {0};
    llm_map_opts mopts = {.mode = LLM_MAP_MMAP};
    if (llm_map_open(&map, in_path, &mopts, err))
        return -1;
    gguf_file f = {0};
    int rc = gguf_parse(&f, in_path, map.base, map.size, err);
    gguf_writer *w = NULL;
    llm_type *out_type = NULL;
    qctx q = {0};
    if (rc)
        goto done;
    llm_map_advise(&map, 0, map.size, LLM_ADV_SEQUENTIAL);
    w = gguf_writer_new(f.alignment == GGUF_DEFAULT_ALIGNMENT ? 0 : f.alignment);
    copy_metadata(&f, target, w);
    out_type = llm_xcalloc(f.n_tensors ? f.n_tensors : 1, sizeof *out_type);
    int64_t max_ne0;
    rc = plan_tensors(&f, target, w, out_type, &max_ne0, err);
    if (rc)
        goto done;
    q = (qctx){.src = &f, .map = &map, .out_type = out_type, .progress = opts && opts->progress,
               .tty = isatty(2), .t0 = llm_now()};
    for (uint64_t i = 0; i < f.n_tensors; i++)
        q.bytes_total += f.tensors[i].size;
    q.pool = llm_pool_new(opts ? opts->n_threads : 0);
    int nth = llm_pool_threads(q.pool);
    q.bufs = llm_xcalloc((size_t)nth, sizeof *q.bufs);
    for (int i = 0; i < nth; i++)
        q.bufs[i] = llm_xmalloc((size_t)max_ne0 * sizeof(float));
    rc = gguf_writer_write(w, out_path, fill_tensor, &q, err);
    if (q.progress && q.tty)
        fputc('\n', stderr);
    if (!rc)
        rc = llm_map_check(&map, err);
done:
    if (q.bufs)
        for (int i = 0; i < llm_pool_threads(q.pool); i++)
            free(q.bufs[i]);
    free(q.bufs);
    llm_pool_free(q.pool);
    free(out_type);
    gguf_writer_free(w);
    gguf_free(&f);
    llm_map_close(&map);
    return rc;
}
