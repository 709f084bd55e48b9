/*
 * cli — the `llmap` command line: one function per subcommand, each in its own file
 * (cmd_<name>.c), dispatched from the table in main.c. A command returns the process exit
 * status: 0 on success, 1 on an error it has already reported on stderr, 2 on bad usage.
 */
#ifndef LLMAP_CLI_H
#define LLMAP_CLI_H

#define LLMAP_VERSION "0.1.0"

int cmd_inspect(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_create(int argc, char **argv);
int cmd_pull(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_show(int argc, char **argv);
int cmd_rm(int argc, char **argv);
int cmd_cp(int argc, char **argv);
int cmd_ps(int argc, char **argv);
int cmd_store(int argc, char **argv);
int cmd_fit(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_bench_tokenize(int argc, char **argv); /* src/bench/tokenize.c */
int cmd_bench_model(int argc, char **argv);    /* src/bench/bench_model.c */
int cmd_synth(int argc, char **argv);
int cmd_serve(int argc, char **argv);

/* Prints "llmap <cmd>: <message>" to stderr and returns 1 (for `return cli_fail(...)`). */
int cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints a usage error and returns 2. */
int cli_usage(const char *usage);

#endif
