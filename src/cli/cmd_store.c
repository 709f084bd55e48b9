/*
 * The model store commands: import, create, pull, list, show, rm, cp, ps and `store check`.
 * Each is a thin layer over src/store (which owns names, blobs, manifests and crash safety);
 * here are argument parsing, human and --json output, and the progress style choice.
 */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "gguf/gguf.h"
#include "mem/mem.h"
#include "store/store.h"

static int has_flag(int argc, char **argv, const char *flag)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], flag))
            return 1;
    return 0;
}

static int wants_help(int argc, char **argv)
{
    return has_flag(argc, argv, "--help") || has_flag(argc, argv, "-h");
}

/* Positional arguments (not starting with "--", and not the value of an option in vopts). */
static int positionals(int argc, char **argv, const char *const *vopts, char **out, int max)
{
    int n = 0;
    for (int i = 1; i < argc; i++) {
        int takes_value = 0;
        for (const char *const *v = vopts; v && *v; v++)
            if (!strcmp(argv[i], *v))
                takes_value = 1;
        if (takes_value) {
            i++;
            continue;
        }
        if (argv[i][0] == '-' && argv[i][1])
            continue;
        if (n < max)
            out[n] = argv[i];
        n++;
    }
    return n;
}

static const char *opt_value(int argc, char **argv, const char *opt)
{
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], opt))
            return argv[i + 1];
    return NULL;
}

static int open_store(const char *cmd, llm_store **s)
{
    llm_err err;
    if (llm_store_open(s, NULL, &err))
        return cli_fail(cmd, "%s", err.msg);
    return 0;
}

static void print_json(cJSON *j)
{
    char *s = cJSON_Print(j);
    puts(s);
    free(s);
    cJSON_Delete(j);
}

/* ---- import / create / pull ------------------------------------------------------------------ */

int cmd_import(int argc, char **argv)
{
    static const char U[] = "llmap import PATH.gguf NAME[:TAG]";
    char *pos[2];
    if (wants_help(argc, argv) || positionals(argc, argv, NULL, pos, 2) != 2)
        return wants_help(argc, argv) ? (puts(U), 0) : cli_usage(U);
    llm_store *s;
    if (open_store("import", &s))
        return 1;
    llm_err err;
    llm_manifest m;
    const char *how = "";
    int rc = llm_store_import_how(s, pos[0], pos[1], &how, &err);
    if (rc == 0 && llm_store_get(s, pos[1], &m, &err) == 0) {
        printf("imported %s (%s, %llu bytes, %s)\n", m.name, m.digest, (unsigned long long)m.size, how);
        llm_manifest_free(&m);
    }
    llm_store_close(s);
    return rc ? cli_fail("import", "%s", err.msg) : 0;
}

int cmd_create(int argc, char **argv)
{
    static const char U[] = "llmap create NAME[:TAG] -f Modelfile";
    static const char *const vopts[] = {"-f", "--file", NULL};
    char *pos[1];
    const char *file = opt_value(argc, argv, "-f");
    if (!file)
        file = opt_value(argc, argv, "--file");
    if (wants_help(argc, argv)) {
        printf("%s\n\nModelfile lines: FROM <path.gguf|name>, PARAMETER <key> <value>, SYSTEM <text>,\n"
               "TEMPLATE <text>; text may be \"quoted\" or \"\"\"multi-line\"\"\". Parameters: temperature,\n"
               "top_k, top_p, min_p, repeat_penalty, seed, num_ctx, num_predict, stop (repeatable).\n",
               U);
        return 0;
    }
    if (positionals(argc, argv, vopts, pos, 1) != 1 || !file)
        return cli_usage(U);
    llm_store *s;
    if (open_store("create", &s))
        return 1;
    llm_err err;
    int rc = llm_store_create(s, pos[0], file, &err);
    llm_store_close(s);
    if (rc)
        return cli_fail("create", "%s", err.msg);
    llm_name n;
    llm_name_parse(pos[0], &n, NULL);
    printf("created %s\n", n.full);
    return 0;
}

/* "2000000", "500k", "2m": bytes per second for LLMAP_PULL_RATE_LIMIT. */
static uint64_t parse_rate(const char *v)
{
    if (!v || !*v)
        return 0;
    char *end;
    double d = strtod(v, &end);
    if (*end == 'k' || *end == 'K')
        d *= 1e3;
    else if (*end == 'm' || *end == 'M')
        d *= 1e6;
    return d > 0 ? (uint64_t)d : 0;
}

int cmd_pull(int argc, char **argv)
{
    static const char U[] =
        "llmap pull SOURCE [NAME] [--sha256 HEX] [--quiet]\n"
        "  SOURCE: http(s)://host/path/model.gguf[#sha256=HEX]   a GGUF file (resumable)\n"
        "          http(s)://host[:port]/ns/name[:tag]            an Ollama-layout registry\n"
        "          registry://host[:port]/ns/name[:tag]           same over https\n"
        "          name[:tag]                                     registry.ollama.ai/library/name";
    static const char *const vopts[] = {"--sha256", NULL};
    char *pos[2];
    if (wants_help(argc, argv))
        return puts(U), 0;
    int np = positionals(argc, argv, vopts, pos, 2);
    if (np < 1 || np > 2)
        return cli_usage(U);
    llm_pull_opts o = {0};
    o.name = np == 2 ? pos[1] : NULL;
    o.sha256 = opt_value(argc, argv, "--sha256");
    o.rate_limit = parse_rate(getenv("LLMAP_PULL_RATE_LIMIT"));
    o.progress = has_flag(argc, argv, "--quiet") ? 0 : isatty(STDERR_FILENO) ? 2 : 1;
    llm_store *s;
    if (open_store("pull", &s))
        return 1;
    llm_err err;
    char *name = NULL;
    int rc = llm_store_pull(s, pos[0], &o, &name, &err);
    llm_store_close(s);
    if (rc)
        return cli_fail("pull", "%s", err.msg);
    printf("pulled %s\n", name);
    free(name);
    return 0;
}

/* ---- list / show ----------------------------------------------------------------------------- */

int cmd_list(int argc, char **argv)
{
    static const char U[] = "llmap list [--json]";
    if (wants_help(argc, argv))
        return puts(U), 0;
    int json = has_flag(argc, argv, "--json");
    llm_store *s;
    if (open_store("list", &s))
        return 1;
    llm_model_list l;
    llm_err err;
    if (llm_store_list(s, &l, &err)) {
        llm_store_close(s);
        return cli_fail("list", "%s", err.msg);
    }
    if (json) {
        cJSON *root = cJSON_CreateObject();
        cJSON *arr = cJSON_AddArrayToObject(root, "models");
        for (size_t i = 0; i < l.n; i++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", l.items[i].name);
            cJSON_AddStringToObject(o, "digest", l.items[i].digest);
            cJSON_AddNumberToObject(o, "size", (double)l.items[i].size);
            cJSON_AddStringToObject(o, "modified_at", l.items[i].created ? l.items[i].created : "");
            char *p = llm_store_blob_path(s, l.items[i].digest);
            cJSON_AddStringToObject(o, "path", p);
            free(p);
            cJSON_AddItemToArray(arr, o);
        }
        print_json(root);
    } else {
        printf("%-40s %-14s %10s  %s\n", "NAME", "ID", "SIZE", "MODIFIED");
        for (size_t i = 0; i < l.n; i++) {
            char sz[32];
            llm_human_bytes(sz, sizeof sz, (double)l.items[i].size);
            printf("%-40s %-14.12s %10s  %s\n", l.items[i].name, l.items[i].digest + 7, sz,
                   l.items[i].created ? l.items[i].created : "");
        }
    }
    llm_model_list_free(&l);
    llm_store_close(s);
    return 0;
}

typedef struct model_facts {
    char *arch, *license, *gname, *quant;
    uint64_t n_params;
    uint32_t ctx, n_embd, n_layer;
    int has_template;
} model_facts;

static int read_facts(const char *path, model_facts *f, llm_err *err)
{
    memset(f, 0, sizeof *f);
    llm_map m;
    llm_map_opts mo = {LLM_MAP_MMAP, false};
    if (llm_map_open(&m, path, &mo, err))
        return -1;
    gguf_file g;
    if (gguf_parse(&g, path, m.base, m.size, err)) {
        gguf_free(&g);
        llm_map_close(&m);
        return -1;
    }
    f->arch = gguf_arch(&g);
    f->license = gguf_get_str(&g, "general.license", NULL);
    f->gname = gguf_get_str(&g, "general.name", NULL);
    f->has_template = gguf_find(&g, "tokenizer.chat_template") != NULL;
    char key[160];
    snprintf(key, sizeof key, "%s.context_length", f->arch ? f->arch : "");
    gguf_get_u32(&g, key, &f->ctx, NULL);
    snprintf(key, sizeof key, "%s.embedding_length", f->arch ? f->arch : "");
    gguf_get_u32(&g, key, &f->n_embd, NULL);
    snprintf(key, sizeof key, "%s.block_count", f->arch ? f->arch : "");
    gguf_get_u32(&g, key, &f->n_layer, NULL);
    for (uint64_t i = 0; i < g.n_tensors; i++)
        f->n_params += gguf_tensor_nelements(&g.tensors[i]);
    f->quant = gguf_quant_name(&g);
    gguf_free(&g);
    llm_map_close(&m);
    return 0;
}

static void facts_free(model_facts *f)
{
    free(f->arch);
    free(f->license);
    free(f->gname);
    free(f->quant);
}

/* One "name value" line per parameter; integers (seed, top_k, ...) in full, not as %g's 6 digits. */
static void print_params_text(const llm_params *p)
{
    cJSON *o = llm_params_to_json(p);
    const cJSON *it;
    cJSON_ArrayForEach(it, o)
    {
        if (cJSON_IsArray(it)) {
            const cJSON *s;
            cJSON_ArrayForEach(s, it) printf("    %-16s \"%s\"\n", it->string, s->valuestring);
        } else if (cJSON_IsString(it)) {
            printf("    %-16s %s\n", it->string, it->valuestring);
        } else if (fabs(it->valuedouble) < 1e15 && it->valuedouble == floor(it->valuedouble)) {
            printf("    %-16s %lld\n", it->string, (long long)it->valuedouble);
        } else {
            printf("    %-16s %.7g\n", it->string, it->valuedouble); /* float parameters: 7 digits */
        }
    }
    cJSON_Delete(o);
}

int cmd_show(int argc, char **argv)
{
    static const char U[] = "llmap show NAME|PATH.gguf [--json]";
    char *pos[1];
    if (wants_help(argc, argv))
        return puts(U), 0;
    if (positionals(argc, argv, NULL, pos, 1) != 1)
        return cli_usage(U);
    int json = has_flag(argc, argv, "--json");
    llm_store *s;
    if (open_store("show", &s))
        return 1;
    llm_err err;
    char *path = NULL;
    llm_manifest m;
    model_facts f;
    if (llm_store_resolve_ex(s, pos[0], &path, &m, &err) || read_facts(path, &f, &err)) {
        free(path);
        llm_manifest_free(&m);
        llm_store_close(s);
        return cli_fail("show", "%s", err.msg);
    }
    char np[32];
    double pn = (double)f.n_params;
    snprintf(np, sizeof np, pn >= 1e9 ? "%.2fB" : pn >= 1e6 ? "%.2fM" : "%.0f", pn >= 1e9 ? pn / 1e9 : pn >= 1e6 ? pn / 1e6 : pn);
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", m.name ? m.name : pos[0]);
        cJSON_AddStringToObject(o, "path", path);
        if (m.name) {
            cJSON_AddStringToObject(o, "digest", m.digest);
            cJSON_AddNumberToObject(o, "size", (double)m.size);
        }
        cJSON_AddStringToObject(o, "architecture", f.arch ? f.arch : "");
        cJSON_AddNumberToObject(o, "parameters", (double)f.n_params);
        cJSON_AddStringToObject(o, "quantization", f.quant);
        cJSON_AddNumberToObject(o, "context_length", f.ctx);
        cJSON_AddNumberToObject(o, "embedding_length", f.n_embd);
        cJSON_AddNumberToObject(o, "block_count", f.n_layer);
        if (f.license)
            cJSON_AddStringToObject(o, "license", f.license);
        cJSON_AddItemToObject(o, "options", llm_params_to_json(&m.params));
        if (m.template_str)
            cJSON_AddStringToObject(o, "template", m.template_str);
        if (m.system)
            cJSON_AddStringToObject(o, "system", m.system);
        print_json(o);
    } else {
        printf("  Model\n");
        if (m.name)
            printf("    %-16s %s\n    %-16s %s\n", "name", m.name, "digest", m.digest);
        printf("    %-16s %s\n", "architecture", f.arch ? f.arch : "(none)");
        printf("    %-16s %s\n", "parameters", np);
        printf("    %-16s %s\n", "quantization", f.quant);
        printf("    %-16s %u\n", "context length", f.ctx);
        printf("    %-16s %u\n", "embedding length", f.n_embd);
        printf("    %-16s %u\n", "layers", f.n_layer);
        printf("    %-16s %s\n", "chat template", m.template_str ? "overridden (manifest)" : f.has_template ? "from the model" : "none (fallback)");
        if (m.params.set) {
            printf("\n  Parameters\n");
            print_params_text(&m.params);
        }
        if (m.system)
            printf("\n  System\n    %s\n", m.system);
        if (m.template_str)
            printf("\n  Template\n    %s\n", m.template_str);
        if (f.license)
            printf("\n  License\n    %.400s%s\n", f.license, strlen(f.license) > 400 ? " ..." : "");
    }
    facts_free(&f);
    free(path);
    llm_manifest_free(&m);
    llm_store_close(s);
    return 0;
}

/* ---- rm / cp ---------------------------------------------------------------------------------- */

int cmd_rm(int argc, char **argv)
{
    static const char U[] = "llmap rm NAME [NAME...]";
    char *pos[64];
    if (wants_help(argc, argv))
        return puts(U), 0;
    int n = positionals(argc, argv, NULL, pos, 64);
    if (n < 1 || n > 64)
        return cli_usage(U);
    llm_store *s;
    if (open_store("rm", &s))
        return 1;
    int status = 0;
    for (int i = 0; i < n; i++) {
        llm_err err;
        llm_name nm;
        if (llm_store_rm(s, pos[i], &err))
            status = cli_fail("rm", "%s", err.msg);
        else if (llm_name_parse(pos[i], &nm, NULL) == 0)
            printf("deleted %s\n", nm.full);
    }
    llm_store_close(s);
    return status;
}

int cmd_cp(int argc, char **argv)
{
    static const char U[] = "llmap cp SRC DST   (SRC: a name or a .gguf path; DST: a new name)";
    char *pos[2];
    if (wants_help(argc, argv))
        return puts(U), 0;
    if (positionals(argc, argv, NULL, pos, 2) != 2)
        return cli_usage(U);
    llm_store *s;
    if (open_store("cp", &s))
        return 1;
    llm_err err;
    size_t l = strlen(pos[0]);
    int is_path = l >= 5 && !strcasecmp(pos[0] + l - 5, ".gguf");
    int rc = is_path ? llm_store_import(s, pos[0], pos[1], &err) : llm_store_cp(s, pos[0], pos[1], &err);
    llm_store_close(s);
    if (rc)
        return cli_fail("cp", "%s", err.msg);
    llm_name n;
    llm_name_parse(pos[1], &n, NULL);
    printf("copied %s to %s\n", pos[0], n.full);
    return 0;
}

/* ---- ps --------------------------------------------------------------------------------------- */

static size_t ps_write(char *p, size_t sz, size_t n, void *ud)
{
    llm_buf *b = ud;
    if (b->len + sz * n > (1u << 20))
        return 0;
    llm_buf_append(b, p, sz * n);
    return sz * n;
}

int cmd_ps(int argc, char **argv)
{
    static const char U[] = "llmap ps [--json]   (asks the server at $LLMAP_HOST, default 127.0.0.1:11434)";
    if (wants_help(argc, argv))
        return puts(U), 0;
    int json = has_flag(argc, argv, "--json");
    const char *host = getenv("LLMAP_HOST");
    if (!host || !*host)
        host = "127.0.0.1:11434";
    llm_buf url = {0}, body = {0};
    llm_buf_printf(&url, "%s%s/api/ps", strstr(host, "://") ? "" : "http://", host);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url.data);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, ps_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    CURLcode rc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    curl_global_cleanup();
    int status = 0;
    cJSON *root = NULL;
    if (rc == CURLE_COULDNT_CONNECT) {
        printf("no server running at %s (start one with `llmap serve`)\n", host);
    } else if (rc != CURLE_OK || code != 200) {
        status = cli_fail("ps", "%s: %s", url.data, rc != CURLE_OK ? curl_easy_strerror(rc) : "unexpected HTTP status");
    } else if (!(root = cJSON_ParseWithLength(body.data ? body.data : "", body.len)) ||
               !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(root, "models"))) {
        status = cli_fail("ps", "%s: not an /api/ps response", url.data);
    } else if (json) {
        char *s = cJSON_Print(root);
        puts(s);
        free(s);
    } else {
        printf("%-40s %10s  %s\n", "NAME", "SIZE", "UNTIL");
        const cJSON *m;
        cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(root, "models"))
        {
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(m, "name");
            const cJSON *sz = cJSON_GetObjectItemCaseSensitive(m, "size");
            const cJSON *ex = cJSON_GetObjectItemCaseSensitive(m, "expires_at");
            char hs[32];
            llm_human_bytes(hs, sizeof hs, cJSON_IsNumber(sz) ? sz->valuedouble : 0);
            printf("%-40s %10s  %s\n", cJSON_IsString(nm) ? nm->valuestring : "?", hs,
                   cJSON_IsString(ex) ? ex->valuestring : "");
        }
    }
    cJSON_Delete(root);
    llm_buf_free(&url);
    llm_buf_free(&body);
    return status;
}

/* ---- store check ----------------------------------------------------------------------------- */

int cmd_store(int argc, char **argv)
{
    static const char U[] = "llmap store check [--fix] [--json] | llmap store path";
    if (wants_help(argc, argv))
        return puts(U), 0;
    if (argc < 2)
        return cli_usage(U);
    llm_store *s;
    if (!strcmp(argv[1], "path")) {
        if (open_store("store", &s))
            return 1;
        puts(llm_store_root(s));
        llm_store_close(s);
        return 0;
    }
    if (strcmp(argv[1], "check") != 0)
        return cli_usage(U);
    if (open_store("store", &s))
        return 1;
    llm_buf report = {0};
    int problems = 0;
    llm_err err;
    int rc = llm_store_check(s, has_flag(argc, argv, "--fix"), &report, &problems, &err);
    llm_store_close(s);
    if (rc) {
        llm_buf_free(&report);
        return cli_fail("store", "%s", err.msg);
    }
    if (has_flag(argc, argv, "--json")) {
        /* One array element per report line; the last line is the summary. */
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "problems", problems);
        cJSON *lines = cJSON_AddArrayToObject(o, "report");
        for (char *line = report.data, *nl; line && *line; line = nl + 1) {
            nl = strchr(line, '\n');
            if (!nl) {
                cJSON_AddItemToArray(lines, cJSON_CreateString(line));
                break;
            }
            *nl = 0;
            cJSON_AddItemToArray(lines, cJSON_CreateString(line));
        }
        print_json(o);
    } else if (report.len) {
        fputs(llm_buf_cstr(&report), stdout);
    }
    llm_buf_free(&report);
    return problems ? 1 : 0;
}
