/*
 * llmap inspect FILE [--json] [--tensors] — what a GGUF file holds: architecture, size,
 * quantization mix, shape, tokenizer, chat template, and optionally every tensor.
 */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "gguf/gguf.h"
#include "mem/mem.h"

static const char USAGE[] = "llmap inspect FILE [--json] [--tensors]";

typedef struct summary {
    char *arch, *name, *tok_model, *tok_pre;
    uint64_t params, n_vocab;
    uint64_t bytes_by_type[LLM_TYPE_COUNT], count_by_type[LLM_TYPE_COUNT];
    uint32_t ctx, n_embd, n_layer, n_head, n_head_kv, n_ff;
    int has_template;
} summary;

static uint32_t arch_u32(const gguf_file *f, const char *arch, const char *key)
{
    char full[256];
    uint32_t v = 0;
    snprintf(full, sizeof full, "%s.%s", arch ? arch : "", key);
    if (gguf_get_u32(f, full, &v, NULL))
        return 0;
    return v;
}

static void summarize(const gguf_file *f, summary *s)
{
    memset(s, 0, sizeof *s);
    s->arch = gguf_arch(f);
    s->name = gguf_get_str(f, "general.name", NULL);
    s->tok_model = gguf_get_str(f, "tokenizer.ggml.model", NULL);
    s->tok_pre = gguf_get_str(f, "tokenizer.ggml.pre", NULL);
    const gguf_kv *toks = gguf_find(f, "tokenizer.ggml.tokens");
    s->n_vocab = toks && toks->type == GGUF_ARRAY ? toks->arr_n : 0;
    s->has_template = gguf_find(f, "tokenizer.chat_template") != NULL;
    s->ctx = arch_u32(f, s->arch, "context_length");
    s->n_embd = arch_u32(f, s->arch, "embedding_length");
    s->n_layer = arch_u32(f, s->arch, "block_count");
    s->n_head = arch_u32(f, s->arch, "attention.head_count");
    s->n_head_kv = arch_u32(f, s->arch, "attention.head_count_kv");
    if (!s->n_head_kv)
        s->n_head_kv = s->n_head;
    s->n_ff = arch_u32(f, s->arch, "feed_forward_length");
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        s->params += gguf_tensor_nelements(t);
        s->bytes_by_type[t->type] += t->size;
        s->count_by_type[t->type]++;
    }
}

static void summary_free(summary *s)
{
    free(s->arch);
    free(s->name);
    free(s->tok_model);
    free(s->tok_pre);
}

static void fmt_count(char *buf, size_t n, double v)
{
    if (v >= 1e9)
        snprintf(buf, n, "%.2fB", v / 1e9);
    else if (v >= 1e6)
        snprintf(buf, n, "%.2fM", v / 1e6);
    else if (v >= 1e3)
        snprintf(buf, n, "%.1fK", v / 1e3);
    else
        snprintf(buf, n, "%.0f", v);
}

static void print_text(const gguf_file *f, const summary *s, int tensors)
{
    char params[32];
    fmt_count(params, sizeof params, (double)s->params);
    printf("file          %s\n", f->path);
    printf("format        GGUF v%u, %llu metadata keys, %llu tensors, alignment %u\n", f->version,
           (unsigned long long)f->n_kv, (unsigned long long)f->n_tensors, f->alignment);
    printf("size          %.2f MiB (%llu bytes)\n", f->size / 1048576.0, (unsigned long long)f->size);
    printf("architecture  %s\n", s->arch ? s->arch : "(none)");
    printf("name          %s\n", s->name ? s->name : "(none)");
    printf("parameters    %s (%llu)\n", params, (unsigned long long)s->params);
    if (s->n_layer)
        printf("shape         context %u, embedding %u, layers %u, heads %u (kv %u), feed-forward %u\n", s->ctx,
               s->n_embd, s->n_layer, s->n_head, s->n_head_kv, s->n_ff);
    printf("tokenizer     %s%s%s, %llu tokens\n", s->tok_model ? s->tok_model : "(none)", s->tok_pre ? " / " : "",
           s->tok_pre ? s->tok_pre : "", (unsigned long long)s->n_vocab);
    printf("chat template %s\n", s->has_template ? "yes" : "no");
    printf("quantization ");
    for (int t = 0; t < LLM_TYPE_COUNT; t++)
        if (s->count_by_type[t])
            printf(" %s: %llu tensors, %.2f MiB;", llm_type_name((uint32_t)t), (unsigned long long)s->count_by_type[t],
                   s->bytes_by_type[t] / 1048576.0);
    printf("\n");
    if (!tensors)
        return;
    printf("\n%-32s %-6s %-28s %12s %12s\n", "tensor", "type", "shape", "offset", "bytes");
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        char shape[64] = "[";
        for (uint32_t d = 0; d < t->n_dims; d++) {
            char dim[24];
            snprintf(dim, sizeof dim, "%s%lld", d ? ", " : "", (long long)t->ne[d]);
            strncat(shape, dim, sizeof shape - strlen(shape) - 2);
        }
        strcat(shape, "]");
        printf("%-32s %-6s %-28s %12llu %12llu\n", t->name, llm_type_name(t->type), shape,
               (unsigned long long)(f->data_offset + t->offset), (unsigned long long)t->size);
    }
}

static cJSON *tensor_json(const gguf_file *f, const gguf_tensor *t)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", t->name);
    cJSON_AddStringToObject(o, "type", llm_type_name(t->type));
    cJSON *shape = cJSON_AddArrayToObject(o, "shape");
    for (uint32_t d = 0; d < t->n_dims; d++)
        cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->ne[d]));
    cJSON_AddNumberToObject(o, "offset", (double)(f->data_offset + t->offset));
    cJSON_AddNumberToObject(o, "bytes", (double)t->size);
    return o;
}

static void print_json(const gguf_file *f, const summary *s, int tensors)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "file", f->path);
    cJSON_AddNumberToObject(o, "gguf_version", f->version);
    cJSON_AddNumberToObject(o, "file_size", (double)f->size);
    cJSON_AddNumberToObject(o, "alignment", f->alignment);
    cJSON_AddNumberToObject(o, "metadata_count", (double)f->n_kv);
    cJSON_AddNumberToObject(o, "tensor_count", (double)f->n_tensors);
    s->arch ? cJSON_AddStringToObject(o, "architecture", s->arch) : cJSON_AddNullToObject(o, "architecture");
    s->name ? cJSON_AddStringToObject(o, "name", s->name) : cJSON_AddNullToObject(o, "name");
    cJSON_AddNumberToObject(o, "parameters", (double)s->params);
    cJSON_AddNumberToObject(o, "context_length", s->ctx);
    cJSON_AddNumberToObject(o, "embedding_length", s->n_embd);
    cJSON_AddNumberToObject(o, "block_count", s->n_layer);
    cJSON_AddNumberToObject(o, "head_count", s->n_head);
    cJSON_AddNumberToObject(o, "head_count_kv", s->n_head_kv);
    cJSON_AddNumberToObject(o, "feed_forward_length", s->n_ff);
    cJSON_AddNumberToObject(o, "vocab_size", (double)s->n_vocab);
    s->tok_model ? cJSON_AddStringToObject(o, "tokenizer_model", s->tok_model)
                 : cJSON_AddNullToObject(o, "tokenizer_model");
    s->tok_pre ? cJSON_AddStringToObject(o, "tokenizer_pre", s->tok_pre) : cJSON_AddNullToObject(o, "tokenizer_pre");
    cJSON_AddBoolToObject(o, "chat_template", s->has_template);
    cJSON *mix = cJSON_AddObjectToObject(o, "quantization");
    for (int t = 0; t < LLM_TYPE_COUNT; t++)
        if (s->count_by_type[t]) {
            cJSON *e = cJSON_AddObjectToObject(mix, llm_type_name((uint32_t)t));
            cJSON_AddNumberToObject(e, "tensors", (double)s->count_by_type[t]);
            cJSON_AddNumberToObject(e, "bytes", (double)s->bytes_by_type[t]);
        }
    if (tensors) {
        cJSON *arr = cJSON_AddArrayToObject(o, "tensors");
        for (uint64_t i = 0; i < f->n_tensors; i++)
            cJSON_AddItemToArray(arr, tensor_json(f, &f->tensors[i]));
    }
    char *txt = cJSON_Print(o);
    puts(txt);
    free(txt);
    cJSON_Delete(o);
}

int cmd_inspect(int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, 0, 'j'}, {"tensors", no_argument, 0, 't'}, {"help", no_argument, 0, 'h'}, {0},
    };
    int json = 0, tensors = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "jth", opts, NULL)) != -1) {
        if (c == 'j')
            json = 1;
        else if (c == 't')
            tensors = 1;
        else if (c == 'h') {
            printf("usage: %s\n", USAGE);
            return 0;
        } else
            return cli_usage(USAGE);
    }
    if (optind != argc - 1)
        return cli_usage(USAGE);
    llm_err err;
    llm_map map;
    if (llm_map_open(&map, argv[optind], NULL, &err))
        return cli_fail("inspect", "%s", err.msg);
    gguf_file f;
    if (gguf_parse(&f, argv[optind], map.base, map.size, &err)) {
        llm_map_close(&map);
        return cli_fail("inspect", "%s", err.msg);
    }
    summary s;
    summarize(&f, &s);
    if (json)
        print_json(&f, &s, tensors);
    else
        print_text(&f, &s, tensors);
    summary_free(&s);
    gguf_free(&f);
    llm_map_close(&map);
    return 0;
}
