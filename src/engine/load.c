/*
 * load.c — llmap_model: loading a GGUF file into weights + vocabulary + chat template,
 * describing it, and rendering chats with its template.
 *
 * Errors from the layers below already name the file and the field; this layer only adds
 * what the user was doing. Warnings that do not stop loading (mlock refused, no chat template)
 * go to stderr, the ones a user should not miss even without --verbose.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "fit/fit.h"
#include "text/template.h"

void llmap_load_opts_default(llmap_load_opts *o)
{
    memset(o, 0, sizeof *o);
    o->mode = LLMAP_LOAD_AUTO;
}

static void copy_err(const llm_err *e, char *err, size_t errlen)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", e->msg);
}

/* The text of a special token for the template's bos_token / eos_token variables. */
static char *special_text(const llm_vocab *v, int32_t id)
{
    size_t len = 0;
    const char *t = id >= 0 ? llm_token_text(v, id, &len) : NULL;
    return t ? llm_xstrndup(t, len) : llm_xstrdup("");
}

static char *model_name(const gguf_file *f, const char *path)
{
    if (gguf_find(f, "general.name")) {
        llm_err e;
        char *n = gguf_get_str(f, "general.name", &e);
        if (n && *n)
            return n;
        free(n);
    }
    const char *slash = strrchr(path, '/');
    return llm_xstrdup(slash ? slash + 1 : path);
}

/* Page cache the streaming reader has in flight besides its buffers: the piece being read and
 * the kernel's read-ahead beyond it (read_ahead_kb is 8 MiB here), both charged to a memory
 * cgroup until dropped behind the copy. Left out of the weights' budget so that the resident
 * layers never have to compete with the reader's pages. */
#define STREAM_CACHE_BYTES (24ull << 20)

/* Memory the weights may occupy: what this process may use minus everything else fit predicts
 * for the context the sessions will use (KV cache, compute, vocabulary, process) and the
 * reader's page cache. Not total - weight_bytes: the total counts only the mapped part of the
 * file (an untied embedding table is read a row per token), so that difference would give the
 * embedding table's bytes to the layers. LLMAP_STREAM_BUDGET (MiB) overrides it, for tests and
 * benchmarks that emulate a smaller machine without a cgroup. */
static uint64_t weight_budget(const llm_fit *r)
{
    const char *env = getenv("LLMAP_STREAM_BUDGET");
    if (env && atoll(env) > 0)
        return (uint64_t)atoll(env) << 20;
    uint64_t other = r->kv_bytes + r->compute_bytes + r->vocab_bytes + r->base_bytes + STREAM_CACHE_BYTES;
    return r->usable_bytes > other ? r->usable_bytes - other : 0;
}

/* AUTO streams when fit says the model only runs with paging; STREAM always does. */
static int choose_streaming(llmap_model *mm, const llmap_load_opts *opts, llm_err *e)
{
    if (opts->mode != LLMAP_LOAD_AUTO && opts->mode != LLMAP_LOAD_STREAM)
        return 0;
    llm_sysmem sm;
    llm_sysmem_get(&sm);
    llm_machine here = {.id = "this", .usable_bytes = llm_sysmem_usable(&sm), .disk_bytes_s = 1e9,
                        .bw_bytes_s = 1e10, .efficiency = 0.8};
    llm_fit_opts fo = {.n_ctx = opts->n_ctx, .n_threads = opts->n_threads};
    llm_fit r;
    if (llm_fit_estimate(&mm->m.gguf, &fo, &here, &r, e))
        return -1;
    const char *budget_env = getenv("LLMAP_STREAM_BUDGET");
    bool forced = opts->mode == LLMAP_LOAD_STREAM || (budget_env && *budget_env);
    if (!forced && r.verdict != LLM_FIT_PAGING) {
        if (r.verdict == LLM_FIT_NO)
            fprintf(stderr, "llmap: warning: %s needs %.0f MiB but only %.0f MiB are available; expect it to fail "
                            "or crawl (see `llmap fit`)\n",
                    mm->m.map.path, r.total_bytes / 1048576.0, r.usable_bytes / 1048576.0);
        return 0;
    }
    uint64_t budget = weight_budget(&r);
    if (llm_model_stream(&mm->m, budget, e))
        return -1;
    if (opts->verbose || !forced)
        fprintf(stderr, "llmap: streaming %s: %.0f MiB resident (%d of %u layers + embeddings; budget %.0f MiB), "
                        "the rest read ahead from disk each token\n",
                mm->m.map.path, llm_stream_resident_bytes(mm->m.stream) / 1048576.0,
                llm_stream_first_streamed(mm->m.stream), mm->m.hp.n_layer, budget / 1048576.0);
    return 0;
}

/* Cold load at disk speed (src/mem/populate.c): when the file of a resident mapping is not in
 * the page cache, a helper thread reads it through in order while loading goes on and the first
 * prompt computes behind it (an up-front read made the first token wait for the whole file).
 * When it is, the helper maps it instead, in the same order, so that the first forward pass does
 * not take a page fault per 64 KiB (and under shadow paging a trap per 4 KiB) in its matrix
 * multiplications. Not when streaming (it reads its own way), not after mlock (which faulted
 * everything in already), and not when the file would not fit in the memory this process may
 * use (it would only evict itself). LLMAP_NO_POPULATE=1 turns both off, to measure. */
static void populate_or_map_in(llmap_model *mm, const llmap_load_opts *opts)
{
    const llm_map *map = &mm->m.map;
    if (map->mode != LLM_MAP_MMAP || mm->m.stream || map->locked || getenv("LLMAP_NO_POPULATE"))
        return;
    llm_sysmem sm;
    llm_sysmem_get(&sm);
    if (map->size > llm_sysmem_usable(&sm))
        return;
    llm_populate_report rep;
    llm_range embd = {0, 0}; /* an untied embedding table is read a row per token: not worth reading now */
    if (!mm->m.tied_output)
        embd = (llm_range){(uint64_t)((const uint8_t *)mm->m.token_embd.data - map->base),
                           llm_row_size(mm->m.token_embd.type, mm->m.hp.n_embd) * mm->m.hp.n_vocab};
    mm->populate = llm_map_populate_start(map, &embd, &rep);
    if (!rep.cold) { /* warm: map it ahead of the first forward pass instead */
        mm->populate = llm_map_map_in_start(map, &embd);
        if (opts->verbose && mm->populate)
            fprintf(stderr, "llmap: warm page cache (%.0f%% resident): mapping %.1f MiB in the background\n",
                    rep.resident_before * 100, (map->size - embd.len) / 1048576.0);
        return;
    }
    if (opts->verbose && mm->populate)
        fprintf(stderr, "llmap: cold page cache (%.0f%% resident): reading %.1f MiB in the background\n",
                rep.resident_before * 100, rep.wanted / 1048576.0);
    else if (opts->verbose && rep.cold) /* no thread: read in already */
        fprintf(stderr, "llmap: cold page cache (%.0f%% resident): read %.1f MiB in %.3f s, %.2f GB/s\n",
                rep.resident_before * 100, rep.bytes / 1048576.0, rep.seconds,
                rep.seconds > 0 ? rep.bytes / rep.seconds / 1e9 : 0.0);
}

/* Ends the background read-in (or map-in) before the mapping goes: a model closed first stops it. */
static void populate_end(llmap_model *mm)
{
    if (!mm->populate)
        return;
    llm_populate_report rep;
    llm_populate_finish(mm->populate, true, &rep);
    mm->populate = NULL;
    if (mm->opts.verbose && !rep.cold)
        fprintf(stderr, "llmap: warm page cache: mapped %.1f of %.1f MiB in %.3f s in the background%s\n",
                rep.bytes / 1048576.0, rep.wanted / 1048576.0, rep.seconds,
                rep.bytes < rep.wanted ? " (stopped: the model was closed first)" : "");
    else if (mm->opts.verbose)
        fprintf(stderr, "llmap: cold page cache: read %.1f of %.1f MiB in %.3f s in the background, %.2f GB/s%s\n",
                rep.bytes / 1048576.0, rep.wanted / 1048576.0, rep.seconds,
                rep.seconds > 0 ? rep.bytes / rep.seconds / 1e9 : 0.0,
                rep.bytes < rep.wanted ? " (stopped: the model was closed first)" : "");
}

int llmap_model_load(const char *path, const llmap_load_opts *opts, llmap_model **out, char *err, size_t errlen)
{
    *out = NULL;
    llmap_load_opts def;
    if (!opts) {
        llmap_load_opts_default(&def);
        opts = &def;
    }
    llmap_model *mm = llm_xcalloc(1, sizeof *mm);
    mm->opts = *opts;
    llm_err e = {{0}};
    double t0 = llm_now();
    /* READ copies the file; every other mode starts from the shared mapping (the streaming
     * mode's prefetch/release is layered on the mapping by the model, not chosen here). */
    llm_map_opts mo = {.mode = opts->mode == LLMAP_LOAD_READ ? LLM_MAP_READ : LLM_MAP_MMAP, .mlock = opts->mlock};
    if (llm_model_load(&mm->m, path, &mo, &e)) {
        copy_err(&e, err, errlen);
        free(mm);
        return -1;
    }
    if (choose_streaming(mm, opts, &e))
        goto fail;
    populate_or_map_in(mm, opts);
    if (llm_vocab_load(&mm->m.gguf, &mm->vocab, &e)) {
        llm_err_prefix(&e, "%s: tokenizer", path);
        goto fail;
    }
    if ((uint32_t)llm_vocab_n(mm->vocab) != mm->m.hp.n_vocab) {
        llm_errf(&e, "%s: tokenizer has %d tokens but token_embd.weight has %u rows", path, llm_vocab_n(mm->vocab),
                 mm->m.hp.n_vocab);
        goto fail;
    }
    if (gguf_find(&mm->m.gguf, "tokenizer.chat_template")) {
        mm->chat_template = gguf_get_str(&mm->m.gguf, "tokenizer.chat_template", &e);
        if (!mm->chat_template)
            goto fail;
    }
    mm->name = model_name(&mm->m.gguf, path);
    mm->bos_text = special_text(mm->vocab, llm_vocab_bos(mm->vocab));
    mm->eos_text = special_text(mm->vocab, llm_vocab_eos(mm->vocab));
    mm->load_seconds = llm_now() - t0;

    if (mm->m.map.warning[0])
        fprintf(stderr, "llmap: warning: %s\n", mm->m.map.warning);
    if (opts->verbose) {
        if (!mm->chat_template)
            fprintf(stderr, "llmap: %s has no chat template; chats use ChatML\n", path);
        fprintf(stderr, "llmap: loaded %s (%s, %.1fM parameters, %.1f MiB of weights, %s) in %.3f s\n", path,
                mm->m.hp.arch_name, (double)mm->m.n_params / 1e6, (double)mm->m.weight_bytes / 1048576.0,
                mm->m.map.mode == LLM_MAP_READ ? "read into memory" : "memory-mapped", mm->load_seconds);
    }
    *out = mm;
    return 0;
fail:
    copy_err(&e, err, errlen);
    llmap_model_free(mm);
    return -1;
}

void llmap_model_free(llmap_model *m)
{
    if (!m)
        return;
    if (m->opts.verbose && m->m.stream) { /* what streaming cost, for tuning and the memory benchmark */
        llm_stream_stats st;
        llm_stream_get_stats(m->m.stream, &st);
        fprintf(stderr,
                "llmap: streamed %.1f MiB from disk in %.3f s of reading (%.2f GB/s, reader at nice %d; O_DIRECT "
                "in %d of %d walks); compute waited %.3f s for it; resident part %s\n",
                st.bytes_read / 1048576.0, st.read_seconds,
                st.read_seconds > 0 ? st.bytes_read / st.read_seconds / 1e9 : 0.0, st.reader_nice, st.walks_direct,
                st.walks, st.wait_seconds, st.locked ? "locked" : "not locked");
    }
    populate_end(m);
    llm_vocab_free(m->vocab);
    llm_model_free(&m->m);
    free(m->chat_template);
    free(m->name);
    free(m->bos_text);
    free(m->eos_text);
    free(m);
}

void llmap_model_get_info(const llmap_model *m, llmap_model_info *info)
{
    const llm_hparams *hp = &m->m.hp;
    memset(info, 0, sizeof *info);
    info->path = m->m.map.path;
    info->arch = hp->arch_name;
    info->name = m->name;
    info->chat_template = m->chat_template;
    info->file_size = m->m.map.size;
    info->n_params = m->m.n_params;
    info->weight_bytes = m->m.weight_bytes;
    info->n_ctx_train = hp->n_ctx_train;
    info->n_vocab = hp->n_vocab;
    info->n_embd = hp->n_embd;
    info->n_layer = hp->n_layer;
    info->n_head = hp->n_head;
    info->n_head_kv = hp->n_head_kv;
    info->load_seconds = m->load_seconds;
}

int llmap_chat_render(const llmap_model *m, const llmap_chat_msg *msgs, size_t n, bool add_generation_prompt,
                      char **out, char *err, size_t errlen)
{
    *out = NULL;
    /* llmap_chat_msg and llm_chat_msg are the same two pointers; copying keeps the public
     * header independent of the internal one. */
    llm_chat_msg *cm = llm_xcalloc(n ? n : 1, sizeof *cm);
    for (size_t i = 0; i < n; i++)
        cm[i] = (llm_chat_msg){.role = msgs[i].role, .content = msgs[i].content};
    llm_template_vars vars = {
        .bos_token = m->bos_text, .eos_token = m->eos_text, .add_generation_prompt = add_generation_prompt};
    llm_err e = {{0}};
    int rc = llm_chat_render(m->chat_template, cm, n, &vars, out, &e);
    if (rc != 0) {
        /* The documented fallback: a template outside the supported subset still chats. */
        if (m->opts.verbose)
            fprintf(stderr, "llmap: %s; using ChatML instead\n", e.msg);
        rc = llm_chat_render_fallback(cm, n, &vars, out, &e);
    }
    free(cm);
    if (rc != 0)
        copy_err(&e, err, errlen);
    return rc;
}
