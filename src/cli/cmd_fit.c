/*
 * llmap fit MODEL [--ctx N] [--kv-f16] [--threads N] [--target NAME] [--json] [--targets]
 * Will the model run here (or on --target hardware), and how fast — before loading it.
 */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "fit/fit.h"
#include "mem/mem.h"

static const char USAGE[] =
    "llmap fit MODEL [--ctx N] [--kv-f16] [--threads N] [--target NAME] [--json]\n"
    "       llmap fit --targets    (list the known hardware)";

static double mib(uint64_t b) { return (double)b / 1048576.0; }

static void list_targets(void)
{
    printf("%-16s %-40s %10s %10s\n", "target", "hardware", "memory", "bandwidth");
    for (const llm_machine *m = llm_machine_table(); m->id; m++)
        printf("%-16s %-40s %7.0f GB %7.0f GB/s\n", m->id, m->desc, m->mem_bytes / 1e9, m->bw_bytes_s / 1e9);
}

static void print_text(const char *path, const llm_machine *mc, bool cached, const llm_fit *r)
{
    printf("model         %s\n", path);
    printf("machine       %s: %.1f GiB usable of %.1f GiB, memory bandwidth %.1f GB/s%s\n", mc->desc,
           mib(r->usable_bytes) / 1024, mib(mc->mem_bytes) / 1024, mc->bw_bytes_s / 1e9,
           mc->measured ? (cached ? " (measured by llmap bench)" : " (quick probe; run `llmap bench` for a better figure)")
                        : "");
    printf("needs         %.1f MiB: model file %.1f MiB mapped (weights %.1f), KV cache %.1f MiB (%d tokens), "
           "compute %.1f MiB, vocabulary %.1f MiB, process %.1f MiB\n",
           mib(r->total_bytes), mib(r->total_bytes - r->kv_bytes - r->compute_bytes - r->vocab_bytes - r->base_bytes),
           mib(r->weight_bytes), mib(r->kv_bytes), r->n_ctx, mib(r->compute_bytes), mib(r->vocab_bytes),
           mib(r->base_bytes));
    printf("verdict       %s", llm_fit_verdict_name(r->verdict));
    if (r->verdict == LLM_FIT_PAGING)
        printf(" (%.0f%% of the weights resident; load mode: streaming)", r->resident_fraction * 100);
    printf("\n");
    if (r->verdict != LLM_FIT_NO)
        printf("speed         ~%.1f tokens/s generation (%.1f MiB of weights per token at %.0f%% of bandwidth)%s\n",
               r->tok_s, mib(r->bytes_per_token),
               mc->bw_bytes_s > 0 ? 100.0 * r->tok_s_resident * (double)r->bytes_per_token / mc->bw_bytes_s : 0,
               r->verdict == LLM_FIT_PAGING ? "; disk-bound" : "");
    if (r->verdict == LLM_FIT_PAGING)
        printf("              ~%.1f tokens/s if it were resident\n", r->tok_s_resident);
    if (r->verdict != LLM_FIT_NO && r->tok_s_full_ctx > 0)
        printf("              ~%.1f tokens/s%s with the context full (%d tokens: each token then reads the\n"
               "              whole %.1f MiB KV cache)\n",
               r->tok_s_full_ctx, r->verdict == LLM_FIT_PAGING ? " if resident," : "", r->n_ctx, mib(r->kv_bytes));
    if (r->verdict == LLM_FIT_NO)
        printf("advice        use a smaller quantization (e.g. q4_k_m), a shorter context (--ctx), or %s\n",
               mc->disk_bytes_s > 0 ? "close memory-hungry programs" : "a machine with more memory");
}

static void print_json(const char *path, const llm_machine *mc, bool cached, const llm_fit *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", path);
    cJSON *m = cJSON_AddObjectToObject(o, "machine");
    cJSON_AddStringToObject(m, "id", mc->id);
    cJSON_AddStringToObject(m, "description", mc->desc);
    cJSON_AddNumberToObject(m, "memory_bytes", (double)mc->mem_bytes);
    cJSON_AddNumberToObject(m, "usable_bytes", (double)r->usable_bytes);
    cJSON_AddNumberToObject(m, "bandwidth_bytes_s", mc->bw_bytes_s);
    cJSON_AddNumberToObject(m, "efficiency", mc->efficiency);
    cJSON_AddNumberToObject(m, "disk_bytes_s", mc->disk_bytes_s);
    cJSON_AddBoolToObject(m, "from_benchmark", cached);
    cJSON_AddStringToObject(m, "source", mc->source);
    cJSON *n = cJSON_AddObjectToObject(o, "needs");
    cJSON_AddNumberToObject(n, "weights", (double)r->weight_bytes);
    cJSON_AddNumberToObject(n, "kv_cache", (double)r->kv_bytes);
    cJSON_AddNumberToObject(n, "compute", (double)r->compute_bytes);
    cJSON_AddNumberToObject(n, "vocabulary", (double)r->vocab_bytes);
    cJSON_AddNumberToObject(n, "process", (double)r->base_bytes);
    cJSON_AddNumberToObject(n, "total", (double)r->total_bytes);
    cJSON_AddNumberToObject(o, "n_ctx", r->n_ctx);
    cJSON_AddNumberToObject(o, "bytes_per_token", (double)r->bytes_per_token);
    cJSON_AddStringToObject(o, "verdict",
                            r->verdict == LLM_FIT_RESIDENT ? "resident" : r->verdict == LLM_FIT_PAGING ? "paging" : "no");
    cJSON_AddNumberToObject(o, "resident_fraction", r->resident_fraction);
    cJSON_AddNumberToObject(o, "predicted_tokens_per_second", r->tok_s);
    cJSON_AddNumberToObject(o, "resident_tokens_per_second", r->tok_s_resident);
    cJSON_AddNumberToObject(o, "resident_tokens_per_second_full_context", r->tok_s_full_ctx);
    cJSON_AddStringToObject(o, "mode", r->mode);
    char *txt = cJSON_Print(o);
    puts(txt);
    free(txt);
    cJSON_Delete(o);
}

int cmd_fit(int argc, char **argv)
{
    static const struct option opts[] = {
        {"ctx", required_argument, 0, 'c'}, {"kv-f16", no_argument, 0, 'f'}, {"threads", required_argument, 0, 't'},
        {"target", required_argument, 0, 'T'}, {"json", no_argument, 0, 'j'}, {"targets", no_argument, 0, 'L'},
        {"help", no_argument, 0, 'h'}, {0},
    };
    llm_fit_opts fo = {0};
    const char *target = NULL;
    int json = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:ft:T:jLh", opts, NULL)) != -1) {
        switch (c) {
        case 'c': fo.n_ctx = atoi(optarg); if (fo.n_ctx <= 0) return cli_fail("fit", "--ctx must be a positive number of tokens"); break;
        case 'f': fo.kv_f16 = true; break;
        case 't': fo.n_threads = atoi(optarg); break;
        case 'T': target = optarg; break;
        case 'j': json = 1; break;
        case 'L': list_targets(); return 0;
        case 'h': printf("usage: %s\n", USAGE); return 0;
        default: return cli_usage(USAGE);
        }
    }
    if (optind != argc - 1)
        return cli_usage(USAGE);
    const char *path = argv[optind];
    llm_machine here;
    const llm_machine *mc = &here;
    bool cached = false;
    if (target && strcmp(target, "this")) {
        mc = llm_machine_find(target);
        if (!mc)
            return cli_fail("fit", "unknown target '%s' (see `llmap fit --targets`)", target);
    } else {
        llm_machine_this(&here, &cached);
    }
    llm_err err;
    llm_map map;
    gguf_file f;
    if (llm_map_open(&map, path, NULL, &err))
        return cli_fail("fit", "%s", err.msg);
    if (gguf_parse(&f, path, map.base, map.size, &err)) {
        llm_map_close(&map);
        return cli_fail("fit", "%s", err.msg);
    }
    llm_fit r;
    int rc = llm_fit_estimate(&f, &fo, mc, &r, &err);
    if (rc)
        cli_fail("fit", "%s", err.msg);
    else if (json)
        print_json(path, mc, cached, &r);
    else
        print_text(path, mc, cached, &r);
    gguf_free(&f);
    llm_map_close(&map);
    return rc ? 1 : 0;
}
