/*
 * llmap serve — runs the HTTP server (Ollama + OpenAI APIs, chat page at /) until SIGINT or
 * SIGTERM, then stops accepting, lets running requests finish (generations are cancelled),
 * frees everything and exits 0.
 *
 * The signals are blocked before any thread starts, so every server thread inherits the mask
 * and only this thread receives them, synchronously, through sigwait.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "server/server.h"

static const char USAGE[] =
    "llmap serve [--host ADDR] [--port N] [--models DIR] [--threads N] [--parallel N]\n"
    "                   [--keep-alive SECONDS] [--timeout SECONDS] [--verbose]\n"
    "  --keep-alive: how long an unused model stays loaded (default 300, < 0 forever)\n"
    "  --timeout: idle seconds before a client connection is closed (default 30)\n"
    "  LLMAP_HOST=host:port sets the address too (flags win). Default 127.0.0.1:11434.";

/* "host", "host:port", ":port", "[v6]:port" → host/port (host copied into buf). */
static int parse_hostport(const char *s, char *buf, size_t n, const char **host, int *port)
{
    const char *colon;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || (size_t)(end - s - 1) >= n)
            return -1;
        snprintf(buf, n, "%.*s", (int)(end - s - 1), s + 1);
        colon = end[1] == ':' ? end + 1 : NULL;
    } else {
        colon = strrchr(s, ':');
        if (colon && strchr(s, ':') != colon) /* bare IPv6 address */
            colon = NULL;
        size_t hl = colon ? (size_t)(colon - s) : strlen(s);
        if (hl >= n)
            return -1;
        snprintf(buf, n, "%.*s", (int)hl, s);
    }
    if (buf[0])
        *host = buf;
    if (colon) {
        char *end;
        long p = strtol(colon + 1, &end, 10);
        if (*end || p < 0 || p > 65535)
            return -1;
        *port = (int)p;
    }
    return 0;
}

static bool is_loopback(const char *host)
{
    return !strncmp(host, "127.", 4) || !strcmp(host, "::1") || !strcmp(host, "localhost");
}

int cmd_serve(int argc, char **argv)
{
    server_opts o;
    server_opts_default(&o);
    char envhost[256];
    const char *env = getenv("LLMAP_HOST");
    if (env && *env && parse_hostport(env, envhost, sizeof envhost, &o.host, &o.port))
        return cli_fail("serve", "LLMAP_HOST='%s' is not host:port", env);
    static const struct option LONG[] = {
        {"host", required_argument, 0, 'H'},    {"port", required_argument, 0, 'p'},
        {"models", required_argument, 0, 'm'},  {"threads", required_argument, 0, 't'},
        {"parallel", required_argument, 0, 'P'}, {"keep-alive", required_argument, 0, 'k'},
        {"timeout", required_argument, 0, 'T'},
        {"verbose", no_argument, 0, 'v'},       {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    char hostbuf[256];
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "H:p:m:t:P:k:T:vh", LONG, NULL)) != -1) {
        char *end = NULL;
        switch (c) {
        case 'H':
            if (parse_hostport(optarg, hostbuf, sizeof hostbuf, &o.host, &o.port))
                return cli_usage(USAGE);
            break;
        case 'p':
            o.port = (int)strtol(optarg, &end, 10);
            if (*end || o.port < 0 || o.port > 65535)
                return cli_usage(USAGE);
            break;
        case 'm': o.models_dir = optarg; break;
        case 't': o.n_threads = (int)strtol(optarg, &end, 10); break;
        case 'P':
            o.parallel = (int)strtol(optarg, &end, 10);
            if (*end || o.parallel < 1 || o.parallel > 64)
                return cli_usage(USAGE);
            break;
        case 'k': o.keep_alive = strtod(optarg, &end); break;
        case 'T': {
            long t = strtol(optarg, &end, 10);
            if (*end || t < 1 || t > 86400)
                return cli_usage(USAGE);
            o.conn_timeout = (unsigned)t;
            break;
        }
        case 'v': o.verbose = true; break;
        case 'h': printf("usage: %s\n", USAGE); return 0;
        default: return cli_usage(USAGE);
        }
        if (end && *end)
            return cli_usage(USAGE);
    }
    if (optind != argc)
        return cli_usage(USAGE);
    if (!is_loopback(o.host))
        fprintf(stderr, "llmap serve: WARNING: listening on %s: the API has no authentication and anyone who can "
                        "reach this address can use it\n", o.host);

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    llmap_server *srv;
    llm_err err;
    if (server_start(&o, &srv, &err))
        return cli_fail("serve", "%s", err.msg);
    fprintf(stderr, "llmap serve: listening on http://%s%s%s:%d\n", strchr(o.host, ':') ? "[" : "", o.host,
            strchr(o.host, ':') ? "]" : "", server_port(srv));
    fflush(stderr);
    int sig = 0;
    sigwait(&set, &sig);
    fprintf(stderr, "llmap serve: %s received, shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    server_stop(srv);
    return 0;
}
