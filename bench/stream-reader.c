/*
 * stream-reader — the streaming reader alone: what src/mem/stream.c reads per token when compute
 * takes no time. bench/memory.sh builds it against libllmap.a and runs it next to the streaming
 * run, in the same memory cgroup and with the same weights budget, so that the reader's own
 * bandwidth (disk and read path, no compute beside it) sits next to `dd`'s and to the tokens/s
 * of the real run: the gap between the two runs is what compute costs the reader.
 *
 * It loads the model as llmap does (mapped, then streamed through the budget), and walks the
 * layers N times calling llm_stream_layer exactly as the forward pass does, without computing.
 *
 * usage: stream-reader MODEL BUDGET_MIB [WALKS]   (prints one line: walks/s, GB/s, MiB per walk)
 */
#include <stdio.h>
#include <stdlib.h>

#include "model/model.h"
#include "util/util.h"

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: stream-reader MODEL BUDGET_MIB [WALKS]\n");
        return 2;
    }
    long long budget_mib = atoll(argv[2]);
    int walks = argc > 3 ? atoi(argv[3]) : 16;
    if (budget_mib <= 0 || walks <= 0) {
        fprintf(stderr, "stream-reader: BUDGET_MIB and WALKS must be positive\n");
        return 2;
    }
    llm_model m;
    llm_err err;
    if (llm_model_load(&m, argv[1], NULL, &err) || llm_model_stream(&m, (uint64_t)budget_mib << 20, &err)) {
        fprintf(stderr, "stream-reader: %s\n", err.msg);
        llm_model_free(&m);
        return 1;
    }
    int n_layer = (int)m.hp.n_layer;
    /* walk 0 as the prompt's: it starts the reader, and its reads overlap loading in llmap too */
    for (int il = 0; il <= n_layer; il++)
        llm_stream_layer(m.stream, il);
    llm_stream_stats st0, st1;
    llm_stream_get_stats(m.stream, &st0);
    double t0 = llm_now();
    for (int w = 0; w < walks; w++)
        for (int il = 0; il <= n_layer; il++) /* (il == n_layer: the walk's end call) */
            llm_stream_layer(m.stream, il);
    double dt = llm_now() - t0;
    llm_stream_get_stats(m.stream, &st1);
    uint64_t bytes = st1.bytes_read - st0.bytes_read;
    printf("reader alone: %.2f walks/s, %.2f GB/s (%.1f MiB per walk, %d of %d layers streamed, O_DIRECT in %d "
           "of %d walks)\n",
           walks / dt, bytes / dt / 1e9, bytes / 1048576.0 / walks, n_layer - llm_stream_first_streamed(m.stream),
           n_layer, st1.walks_direct - st0.walks_direct, st1.walks - st0.walks);
    llm_model_free(&m);
    return 0;
}
