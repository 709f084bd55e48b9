/*
 * llmap bench <what> — benchmarks. Each kind is one row of BENCHES, implemented in its own file;
 * `llmap bench MODEL.gguf` (an argument naming a .gguf file) goes to the row named "model".
 *
 * To add a benchmark: declare `int cmd_bench_<name>(int argc, char **argv);` in cli/cli.h, add
 * one row below, put the code in its own file. argv[0] is the benchmark's name (or the model
 * path for "model").
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "cli/cli.h"

static int bench_kernels(int argc, char **argv);

typedef struct bench_kind {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} bench_kind;

static const bench_kind BENCHES[] = {
    {"kernels", bench_kernels, "matrix x vector GB/s per weight type vs measured memory bandwidth"},
    {"tokenize", cmd_bench_tokenize, "tokenizer throughput per kind (spm, bpe, wpm) on 1 MiB texts"},
    {"model", cmd_bench_model, "MODEL.gguf: pp512/tg128 tokens/s, generation vs measured bandwidth"},
};

static const char USAGE[] =
    "llmap bench kernels [-t THREADS] [--types q4_0,q8_0,...] [--mib N] [--reps N] [--batch TOKENS]\n"
    "       llmap bench tokenize | MODEL.gguf   (when built in)";

static int bench_kernels(int argc, char **argv)
{
    static const struct option opts[] = {
        {"threads", required_argument, 0, 't'}, {"types", required_argument, 0, 'T'},
        {"mib", required_argument, 0, 'm'},     {"reps", required_argument, 0, 'r'},
        {"batch", required_argument, 0, 'b'},
        {"help", no_argument, 0, 'h'},          {0},
    };
    llm_kbench_opts o = {.weight_bytes = 256u << 20, .bw_bytes = 512u << 20, .cols = 4096, .reps = 5,
                         .max_threads = 2, .out = stdout};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "t:T:m:r:b:h", opts, NULL)) != -1) {
        if (c == 't')
            o.max_threads = atoi(optarg);
        else if (c == 'T')
            o.types = optarg;
        else if (c == 'm')
            o.weight_bytes = (size_t)atoll(optarg) << 20;
        else if (c == 'r')
            o.reps = atoi(optarg);
        else if (c == 'b')
            o.batch = atoi(optarg);
        else if (c == 'h') {
            printf("usage: %s\n", USAGE);
            return 0;
        } else
            return cli_usage(USAGE);
    }
    if (optind != argc || o.max_threads < 1 || o.max_threads > 64 || o.reps < 1 || o.batch < 0 || o.batch > 4096 || o.weight_bytes < (1u << 20))
        return cli_usage(USAGE);
    llm_err err;
    if (llm_bench_kernels(&o, &err))
        return cli_fail("bench", "%s", err.msg);
    return 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

int cmd_bench(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fprintf(argc < 2 ? stderr : stdout, "usage: %s\n\nbenchmarks:\n", USAGE);
        for (size_t i = 0; i < sizeof BENCHES / sizeof *BENCHES; i++)
            fprintf(argc < 2 ? stderr : stdout, "  %-10s %s\n", BENCHES[i].name, BENCHES[i].summary);
        return argc < 2 ? 2 : 0;
    }
    const char *want = ends_with(argv[1], ".gguf") ? "model" : argv[1];
    for (size_t i = 0; i < sizeof BENCHES / sizeof *BENCHES; i++)
        if (!strcmp(want, BENCHES[i].name))
            return BENCHES[i].fn(argc - 1, argv + 1);
    return cli_fail("bench", "unknown benchmark '%s' (try: llmap bench --help)", argv[1]);
}
