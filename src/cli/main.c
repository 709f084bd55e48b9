/* llmap — entry point: dispatches `llmap <command> ...` to the command functions (cli.h). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} command;

static const command COMMANDS[] = {
    {"run", cmd_run, "chat with a model, or answer one prompt (MODEL [PROMPT])"},
    {"inspect", cmd_inspect, "show what a GGUF file holds (--json, --tensors)"},
    {"tokenize", cmd_tokenize, "show how a model's tokenizer cuts a text (--ids, --no-bos, --special)"},
    {"logits", cmd_logits, "a prompt's next-token logits and greedy continuation (checks vs llama.cpp)"},
    {"pull", cmd_pull, "download a model (GGUF URL or registry), resumable, verified"},
    {"import", cmd_import, "add a local GGUF file to the store under a name"},
    {"create", cmd_create, "create a model from a Modelfile (-f FILE)"},
    {"list", cmd_list, "list the models in the store (--json)"},
    {"show", cmd_show, "show a model's metadata and settings (--json)"},
    {"rm", cmd_rm, "remove models from the store"},
    {"cp", cmd_cp, "copy a model to a new name"},
    {"ps", cmd_ps, "models loaded by a running server (--json)"},
    {"store", cmd_store, "store maintenance: check [--fix], path"},
    {"fit", cmd_fit, "will a model fit here or on --target hardware, and how fast"},
    {"quantize", cmd_quantize, "re-quantize a model file (IN OUT TYPE)"},
    {"bench", cmd_bench, "benchmarks: kernels (and more, see --help)"},
    {"synth", cmd_synth, "generate a seeded random model of a real shape"},
    {"serve", cmd_serve, "HTTP server: Ollama + OpenAI APIs, chat page at / (--port, --models)"},
};

static void usage(FILE *out)
{
    fprintf(out, "llmap %s — run language models from memory-mapped GGUF files\n\n"
                 "usage: llmap <command> [options]\n\ncommands:\n", LLMAP_VERSION);
    for (size_t i = 0; i < sizeof COMMANDS / sizeof *COMMANDS; i++)
        fprintf(out, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(out, "\n`llmap <command> --help` describes each command.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("llmap %s\n", LLMAP_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof *COMMANDS; i++)
        if (!strcmp(argv[1], COMMANDS[i].name))
            return COMMANDS[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "llmap: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
