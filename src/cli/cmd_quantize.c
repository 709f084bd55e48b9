/*
 * llmap quantize IN.gguf OUT.gguf TYPE — re-quantize a model file (the work is in
 * src/synth/quantize.c). TYPE is a tensor type (f32, f16, bf16, q4_0 ... q6_k) or the q4_k_m mix.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "synth/synth.h"

static const char USAGE[] =
    "llmap quantize [-t THREADS] [--progress|--quiet] IN.gguf OUT.gguf TYPE\n"
    "  TYPE: f32 f16 bf16 q4_0 q4_1 q5_0 q5_1 q8_0 q2_k q3_k q4_k q5_k q6_k, or q4_k_m\n"
    "  (llama.cpp's mix). 1-D tensors stay F32; metadata is copied.";

/* Files this large take long enough that a status line is worth printing by default. */
#define PROGRESS_MIN_BYTES (256ull << 20)

int cmd_quantize(int argc, char **argv)
{
    static const struct option opts[] = {
        {"threads", required_argument, 0, 't'}, {"progress", no_argument, 0, 'p'},
        {"quiet", no_argument, 0, 'q'},         {"help", no_argument, 0, 'h'}, {0},
    };
    int c, threads = 0, progress = -1;
    optind = 1;
    while ((c = getopt_long(argc, argv, "t:pqh", opts, NULL)) != -1) {
        if (c == 't')
            threads = atoi(optarg);
        else if (c == 'p')
            progress = 1;
        else if (c == 'q')
            progress = 0;
        else if (c == 'h') {
            printf("usage: %s\n", USAGE);
            return 0;
        } else
            return cli_usage(USAGE);
    }
    if (optind != argc - 3)
        return cli_usage(USAGE);
    const char *in = argv[optind], *out = argv[optind + 1], *type = argv[optind + 2];
    llm_err err;
    llm_quant_target target;
    if (llm_quant_target_parse(type, &target, &err))
        return cli_fail("quantize", "%s", err.msg);
    if (progress < 0) {
        struct stat st;
        progress = stat(in, &st) == 0 && (unsigned long long)st.st_size >= PROGRESS_MIN_BYTES;
    }
    llm_quantize_opts qo = {.n_threads = threads, .progress = progress};
    double t0 = llm_now();
    if (llm_quantize_file(in, out, &target, &qo, &err))
        return cli_fail("quantize", "%s", err.msg);
    if (progress)
        fprintf(stderr, "wrote %s (%s) in %.1f s\n", out, type, llm_now() - t0);
    return 0;
}
