/* Helpers shared by the command implementations (see cli.h). */
#include <stdarg.h>
#include <stdio.h>

#include "cli/cli.h"

int cli_fail(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "llmap %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int cli_usage(const char *text)
{
    fprintf(stderr, "usage: %s\n", text);
    return 2;
}
