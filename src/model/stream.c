/*
 * stream — where each layer's weights lie in the file, so the mapping layer can stream them
 * (src/mem/stream.c does the prefetching and releasing; this file only knows the model).
 *
 * A layer's range runs from its first to its last tensor in file order; quantizers may
 * interleave layers, in which case ranges overlap and streaming degrades to plain paging for
 * those bytes rather than breaking. Hot tensors (embeddings, output, norms, biases) are listed
 * separately: every token needs them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

/* Buffer mode (see mem.h): where each streamed layer's weights lie in the mapping, so that its
 * pointers can be moved to the buffer holding the layer's bytes and back. One allocation: the
 * stream frees it with free(). */
typedef struct binder {
    llm_model *m;
    int n_layer;
    llm_layer *orig;   /* the layers as bound to the mapping */
    llm_range *ranges; /* file bytes of each layer */
} binder;

static const void *moved(const binder *b, int il, const void *p, const uint8_t *bytes)
{
    const uint8_t *lo = b->m->map.base + b->ranges[il].off, *q = p;
    if (!q || q < lo || q >= lo + b->ranges[il].len)
        return p; /* not in this layer's range (a converted copy, or a tensor kept in the mapping) */
    return bytes + (q - lo);
}

static void bind_layer(void *user, int il, const uint8_t *bytes)
{
    const binder *b = user;
    const llm_layer *o = &b->orig[il];
    llm_layer *l = &b->m->layers[il];
#define MOVE_VEC(f) l->f = moved(b, il, o->f, bytes)
#define MOVE_MAT(f) l->f.data = moved(b, il, o->f.data, bytes)
    MOVE_VEC(attn_norm), MOVE_VEC(bq), MOVE_VEC(bk), MOVE_VEC(bv), MOVE_VEC(q_norm), MOVE_VEC(k_norm);
    MOVE_VEC(ffn_norm);
    MOVE_MAT(wq), MOVE_MAT(wk), MOVE_MAT(wv), MOVE_MAT(wo), MOVE_MAT(w_gate), MOVE_MAT(w_up), MOVE_MAT(w_down);
#undef MOVE_VEC
#undef MOVE_MAT
}

static binder *binder_new(llm_model *m, const llm_range *layers, int n_layer)
{
    size_t head = (sizeof(binder) + 15) / 16 * 16, lsz = sizeof(llm_layer) * (size_t)n_layer;
    size_t lpad = (lsz + 15) / 16 * 16;
    uint8_t *mem = llm_xmalloc(head + lpad + sizeof(llm_range) * (size_t)n_layer);
    binder *b = (binder *)mem;
    b->m = m;
    b->n_layer = n_layer;
    b->orig = (llm_layer *)(mem + head);
    b->ranges = (llm_range *)(mem + head + lpad);
    memcpy(b->orig, m->layers, lsz);
    memcpy(b->ranges, layers, sizeof(llm_range) * (size_t)n_layer);
    return b;
}

static int layer_of(const char *name)
{
    int il, n = 0;
    if (sscanf(name, "blk.%d.%n", &il, &n) == 1 && n > 0)
        return il;
    return -1;
}

int llm_model_stream(llm_model *m, uint64_t budget, llm_err *err)
{
    const gguf_file *f = &m->gguf;
    int n_layer = (int)m->hp.n_layer;
    llm_range *layers = llm_xcalloc((size_t)n_layer, sizeof *layers);
    llm_range *hot = llm_xcalloc(f->n_tensors ? f->n_tensors : 1, sizeof *hot);
    int n_hot = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        uint64_t off = f->data_offset + t->offset;
        int il = layer_of(t->name);
        if (il >= 0 && il < n_layer && t->n_dims > 1) {
            llm_range *r = &layers[il];
            uint64_t lo = off, hi = off + t->size;
            if (r->len) {
                lo = r->off < lo ? r->off : lo;
                hi = r->off + r->len > hi ? r->off + r->len : hi;
            }
            *r = (llm_range){lo, hi - lo};
        } else if (!m->tied_output && !strcmp(t->name, "token_embd.weight")) {
            /* untied embeddings: one row per token, so neither kept resident nor read around
             * (the kernel's mmap read-around would pull megabytes per looked-up row) */
            llm_map_advise(&m->map, off, t->size, LLM_ADV_RANDOM);
        } else {
            hot[n_hot++] = (llm_range){off, t->size};
        }
    }
    /* one layer read ahead: two readers keep the disk busy on it while the current one computes */
    m->stream = llm_stream_new(&m->map, layers, n_layer, hot, n_hot, budget, 1, err);
    /* Streamed layers are read into fixed buffers rather than re-mapped every token (see
     * src/mem/stream.c); LLMAP_STREAM_MAPPED=1 keeps them in the mapping, to compare. */
    if (m->stream && !getenv("LLMAP_STREAM_MAPPED") &&
        llm_stream_set_binder(m->stream, bind_layer, binder_new(m, layers, n_layer), err)) {
        llm_stream_free(m->stream);
        m->stream = NULL;
    }
    free(layers);
    free(hot);
    return m->stream ? 0 : -1;
}
