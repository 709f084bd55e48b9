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
    free(layers);
    free(hot);
    return m->stream ? 0 : -1;
}
