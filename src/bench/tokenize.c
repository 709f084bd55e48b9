/*
 * Tokenizer throughput (`llmap bench tokenize`): tokens/s and MB/s of each tokenizer kind —
 * SentencePiece (llama-spm), byte-level BPE (gpt-2, and deepseek-llm for a multi-regex
 * pre-tokenizer) and WordPiece (bert-bge) — on 1 MB of realistic mixed text (the shared
 * tokenizer test cases repeated: prose, code, whitespace runs, CJK, emoji), plus the time of
 * the hostile inputs the tests bound: 1 MB of random bytes and 1 MB of one repeated letter.
 * Best of three runs, one thread, timed in thread CPU time: the machines this runs on are often
 * shared, and CPU time is what the tokenizer itself costs.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "text/text.h"

#define BENCH_BYTES (1u << 20)

static llm_vocab *bench_load(const char *dir, const char *name, llm_err *err)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/models/vocab/ggml-vocab-%s.gguf", dir, name);
    llm_vocab *v = NULL;
    llm_vocab_load_file(path, &v, err);
    return v;
}

/* 1 MB of the shared test texts, repeated (separators dropped). */
static char *mixed_text(const char *dir, llm_err *err)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/models/vocab/ggml-vocab-gpt-2.gguf.inp", dir);
    FILE *f = fopen(path, "rb");
    if (!f) {
        llm_errf(err, "%s: cannot open", path);
        return NULL;
    }
    llm_buf src = {0};
    llm_buf_append_file(&src, f);
    fclose(f);
    static const char SEP[] = "\n__ggml_vocab_test__\n";
    llm_buf clean = {0};
    for (size_t i = 0; i < src.len;) {
        const char *s = memmem(src.data + i, src.len - i, SEP, sizeof SEP - 1);
        size_t end = s ? (size_t)(s - src.data) : src.len;
        llm_buf_append(&clean, src.data + i, end - i);
        llm_buf_append(&clean, "\n", 1);
        i = s ? end + sizeof SEP - 1 : src.len;
    }
    llm_buf_free(&src);
    char *out = llm_xmalloc(BENCH_BYTES);
    for (size_t k = 0; k < BENCH_BYTES; k += clean.len) {
        size_t take = clean.len < BENCH_BYTES - k ? clean.len : BENCH_BYTES - k;
        memcpy(out + k, clean.data, take);
    }
    /* the last repeat may end inside a UTF-8 character: blank that tail */
    for (size_t k = BENCH_BYTES; k > 0 && ((unsigned char)out[k - 1] & 0x80); k--)
        out[k - 1] = ' ';
    llm_buf_free(&clean);
    return out;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Best-of-3 seconds to tokenize text; *n_tokens receives the count. */
static double time_tokenize(const llm_vocab *v, const char *text, size_t len, size_t *n_tokens)
{
    double best = 1e30;
    for (int r = 0; r < 3; r++) {
        int32_t *ids;
        llm_err err;
        double t0 = cpu_now();
        if (llm_tokenize(v, text, len, false, false, &ids, n_tokens, &err))
            return -1;
        double dt = cpu_now() - t0;
        free(ids);
        if (dt < best)
            best = dt;
    }
    return best;
}

int llm_bench_tokenize(const char *dir, llm_err *err)
{
    static const struct {
        const char *kind, *vocab;
    } RUNS[] = {{"spm", "llama-spm"}, {"bpe", "gpt-2"}, {"bpe", "deepseek-llm"}, {"wpm", "bert-bge"}};
    char *mixed = mixed_text(dir, err);
    if (!mixed)
        return -1;
    char *random = llm_xmalloc(BENCH_BYTES), *same = llm_xmalloc(BENCH_BYTES);
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < BENCH_BYTES; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        random[i] = (char)(s >> 24);
    }
    memset(same, 'a', BENCH_BYTES);
    printf("tokenizer throughput, 1 MiB inputs, best of 3, 1 thread, CPU time\n");
    printf("%-4s %-14s %10s %12s %9s %14s %12s\n", "kind", "vocabulary", "tokens", "tokens/s", "MB/s",
           "random bytes", "'a' x 1 MiB");
    int rc = 0;
    for (size_t i = 0; i < sizeof RUNS / sizeof *RUNS; i++) {
        llm_vocab *v = bench_load(dir, RUNS[i].vocab, err);
        if (!v) {
            rc = -1;
            break;
        }
        size_t n, nr, ns;
        double t = time_tokenize(v, mixed, BENCH_BYTES, &n);
        double tr = time_tokenize(v, random, BENCH_BYTES, &nr);
        double ts = time_tokenize(v, same, BENCH_BYTES, &ns);
        printf("%-4s %-14s %10zu %12.0f %9.2f %12.3f s %10.3f s\n", RUNS[i].kind, RUNS[i].vocab, n, n / t,
               BENCH_BYTES / t / 1e6, tr, ts);
        fflush(stdout);
        llm_vocab_free(v);
    }
    free(mixed);
    free(random);
    free(same);
    return rc;
}

static const char USAGE[] = "llmap bench tokenize [--shared DIR]   (DIR defaults to $LLMAP_SHARED or ../shared)";

int cmd_bench_tokenize(int argc, char **argv)
{
    static const struct option opts[] = {{"shared", required_argument, NULL, 's'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *dir = getenv("LLMAP_SHARED");
    if (!dir)
        dir = "../shared";
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 's')
            dir = optarg;
        else if (c == 'h') {
            printf("usage: %s\n", USAGE);
            return 0;
        } else {
            return cli_usage(USAGE);
        }
    }
    if (optind != argc)
        return cli_usage(USAGE);
    llm_err err;
    if (llm_bench_tokenize(dir, &err))
        return cli_fail("bench", "tokenize: %s", err.msg);
    return 0;
}
