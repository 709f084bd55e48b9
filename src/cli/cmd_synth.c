/*
 * llmap synth OUT.gguf — generate a seeded random model of a real shape (the work is in
 * src/synth/synth.c): for tests and benchmarks that need a model of a given size and type
 * without downloading one.
 */
#include <getopt.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "synth/synth.h"

static const char USAGE[] =
    "llmap synth [options] OUT.gguf\n"
    "  --arch llama|qwen2|qwen3|gemma|phi3  architecture (llama)\n"
    "  --shape tiny|1.1b|3b|8b shape preset (tiny); then override any of:\n"
    "  --n-embd N --n-layer N --n-head N --n-head-kv N --n-ff N --ctx N --head-dim N --tied|--untied\n"
    "  --type TYPE             weight type: f32 f16 bf16 q4_0 ... q6_k or q4_k_m (f32)\n"
    "  --seed N                random seed (1234); same seed, same bytes\n"
    "  --vocab FILE.gguf       tokenizer to copy (default: ../shared/models/vocab/\n"
    "                          ggml-vocab-llama-spm.gguf; gpt-2 for qwen2/qwen3, phi-3 for phi3)\n"
    "  --name NAME  -t THREADS  --progress|--quiet";

/* The shared vocabulary files, when they are where the tests keep them. */
static char *default_vocab(const char *arch)
{
    const char *shared = getenv("LLMAP_SHARED") ? getenv("LLMAP_SHARED") : "../shared";
    char path[4096];
    const char *file = !strncmp(arch, "qwen", 4) ? "ggml-vocab-gpt-2.gguf"
                       : !strcmp(arch, "phi3")   ? "ggml-vocab-phi-3.gguf"
                                                 : "ggml-vocab-llama-spm.gguf";
    snprintf(path, sizeof path, "%s/models/vocab/%s", shared, file);
    return access(path, R_OK) == 0 ? llm_xstrdup(path) : NULL;
}

static int parse_u32(const char *s, uint32_t *out)
{
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (end == s || *end || v > 0xFFFFFFFFul)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

enum { O_ARCH = 256, O_SHAPE, O_EMBD, O_LAYER, O_HEAD, O_HEADKV, O_FF, O_CTX, O_HEADDIM, O_TIED, O_UNTIED, O_TYPE,
       O_SEED, O_VOCAB, O_NAME };

int cmd_synth(int argc, char **argv)
{
    static const struct option opts[] = {
        {"arch", required_argument, 0, O_ARCH},     {"shape", required_argument, 0, O_SHAPE},
        {"n-embd", required_argument, 0, O_EMBD},   {"n-layer", required_argument, 0, O_LAYER},
        {"n-head", required_argument, 0, O_HEAD},   {"n-head-kv", required_argument, 0, O_HEADKV},
        {"n-ff", required_argument, 0, O_FF},       {"ctx", required_argument, 0, O_CTX},
        {"head-dim", required_argument, 0, O_HEADDIM},
        {"tied", no_argument, 0, O_TIED},           {"untied", no_argument, 0, O_UNTIED},
        {"type", required_argument, 0, O_TYPE},     {"seed", required_argument, 0, O_SEED},
        {"vocab", required_argument, 0, O_VOCAB},   {"name", required_argument, 0, O_NAME},
        {"threads", required_argument, 0, 't'},     {"progress", no_argument, 0, 'p'},
        {"quiet", no_argument, 0, 'q'},             {"help", no_argument, 0, 'h'},
        {0},
    };
    const char *arch = "llama", *shape = "tiny", *type = "f32", *vocab = NULL, *name = NULL;
    uint32_t dims[7] = {0}; /* n_embd, n_layer, n_head, n_head_kv, n_ff, ctx, head_dim overrides */
    int tied = -1, threads = 0, progress = -1, c;
    unsigned long long seed = 1234;
    optind = 1;
    while ((c = getopt_long(argc, argv, "t:pqh", opts, NULL)) != -1) {
        switch (c) {
        case O_ARCH: arch = optarg; break;
        case O_SHAPE: shape = optarg; break;
        case O_EMBD: case O_LAYER: case O_HEAD: case O_HEADKV: case O_FF: case O_CTX: case O_HEADDIM:
            if (parse_u32(optarg, &dims[c - O_EMBD]) || dims[c - O_EMBD] == 0)
                return cli_fail("synth", "--%s: expected a positive number, got '%s'", opts[c - O_ARCH].name, optarg);
            break;
        case O_TIED: tied = 1; break;
        case O_UNTIED: tied = 0; break;
        case O_TYPE: type = optarg; break;
        case O_SEED: {
            char *end;
            seed = strtoull(optarg, &end, 0);
            if (end == optarg || *end)
                return cli_fail("synth", "--seed: expected a number, got '%s'", optarg);
            break;
        }
        case O_VOCAB: vocab = optarg; break;
        case O_NAME: name = optarg; break;
        case 't': threads = atoi(optarg); break;
        case 'p': progress = 1; break;
        case 'q': progress = 0; break;
        case 'h': printf("usage: %s\n", USAGE); return 0;
        default: return cli_usage(USAGE);
        }
    }
    if (optind != argc - 1)
        return cli_usage(USAGE);
    llm_err err;
    llm_synth_opts o = {.seed = seed, .name = name, .n_threads = threads};
    if (llm_synth_preset(shape, arch, &o.shape, &err) || llm_quant_target_parse(type, &o.target, &err))
        return cli_fail("synth", "%s", err.msg);
    uint32_t *fields[7] = {&o.shape.n_embd, &o.shape.n_layer, &o.shape.n_head, &o.shape.n_head_kv, &o.shape.n_ff,
                           &o.shape.n_ctx, &o.shape.head_dim};
    for (int i = 0; i < 7; i++)
        if (dims[i])
            *fields[i] = dims[i];
    if (tied >= 0)
        o.shape.tied_output = tied;
    char *def = vocab ? NULL : default_vocab(arch);
    o.vocab_path = vocab ? vocab : def;
    char builtin[] = "/tmp/llmap-vocab-XXXXXX";
    if (!o.vocab_path) { /* a fresh clone without ../shared: use the built-in byte-level vocabulary */
        int fd = mkstemp(builtin);
        if (fd < 0 || (close(fd), llm_synth_builtin_vocab(builtin, &err))) {
            if (fd >= 0)
                unlink(builtin);
            return cli_fail("synth", "no vocabulary (pass --vocab FILE.gguf) and the built-in one failed: %s",
                            fd < 0 ? strerror(errno) : err.msg);
        }
        o.vocab_path = builtin;
        fprintf(stderr, "llmap synth: no vocabulary given or found; using the built-in byte-level one (354 tokens)\n");
    }
    o.progress = progress >= 0 ? progress : (o.shape.n_embd >= 2048 && isatty(2));
    double t0 = llm_now();
    int rc = llm_synth_write(argv[optind], &o, &err);
    free(def);
    if (o.vocab_path == builtin)
        unlink(builtin);
    if (rc)
        return cli_fail("synth", "%s", err.msg);
    if (o.progress)
        fprintf(stderr, "wrote %s in %.1f s\n", argv[optind], llm_now() - t0);
    return 0;
}
