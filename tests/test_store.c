/*
 * Tests of the model store: the name grammar against hostile names, the atomic write helper,
 * manifest and parameter round trips, the Modelfile parser's errors, pull source parsing, and
 * the store itself (import, resolve, list, cp, rm + garbage collection, check) in a temporary
 * root. Digests are checked against sha256sum(1), an implementation independent of ours.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "gguf/gguf.h"
#include "store/store.h"

/* ---- names ------------------------------------------------------------------------------- */

typedef struct bad_name {
    const char *text;
    size_t len; /* 0 = strlen */
    const char *why; /* substring of the expected message */
} bad_name;

static void test_hostile_names(void)
{
    static char longname[400], longpart[100];
    memset(longname, 'a', sizeof longname - 1);
    memset(longpart, 'b', sizeof longpart - 1);
    const bad_name bad[] = {
        {"../../etc/passwd", 0, "relative paths"},
        {"/abs/path", 0, "absolute paths"},
        {"a/../b", 0, "must start with"},
        {"a/..b", 0, "must start with"},
        {"a..b", 0, "'..'"},
        {"x:..", 0, "the tag must start"},
        {"x:a..b", 0, "'..'"},
        {longname, 0, "at most 200"},
        {longpart, 0, "at most 64"},
        {"caf\xc3\xa9", 0, "not ASCII"},
        {"", 0, "empty"},
        {"name:", 0, "tag after ':' is empty"},
        {":tag", 0, "before ':' is empty"},
        {"a//b", 0, "empty"},
        {"a/", 0, "empty"},
        {"a\0b", 3, "NUL"},
        {"a:b:c", 0, "more than one ':'"},
        {"a/b/c/d", 0, "at most 2 namespaces"},
        {"Qwen2", 0, "uppercase"},
        {"a b", 0, "' ' is not allowed"},
        {"a\\b", 0, "not allowed"},
        {"a\nb", 0, "control character"},
        {".hidden", 0, "must start with"},
        {"-x", 0, "must start with"},
        {"x:_y", 0, "the tag must start"},
        {"a/b:c/d", 0, "not allowed"},
        {"~root", 0, "must start with"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        llm_name n;
        llm_err err = {{0}};
        size_t len = bad[i].len ? bad[i].len : strlen(bad[i].text);
        int rc = llm_name_parse_n(bad[i].text, len, &n, &err);
        CHECK_MSG(rc == -1, "name #%zu must be rejected", i);
        CHECK_CONTAINS(err.msg, "invalid model name");
        CHECK_CONTAINS(err.msg, bad[i].why);
        CHECK_EQ_STR(n.full, ""); /* nothing half-filled */
    }
}

static void test_valid_names(void)
{
    llm_name n;
    llm_err err;
    CHECK_EQ_INT(llm_name_parse("qwen2:0.5b", &n, &err), 0);
    CHECK_EQ_STR(n.full, "qwen2:0.5b");
    CHECK_EQ_STR(n.model, "qwen2");
    CHECK_EQ_STR(n.tag, "0.5b");
    CHECK_EQ_INT(n.n_ns, 0);
    CHECK_EQ_INT(llm_name_parse("tiny", &n, &err), 0);
    CHECK_EQ_STR(n.full, "tiny:latest");
    CHECK_EQ_STR(n.tag, "latest");
    CHECK_EQ_INT(llm_name_parse("library/llama3.2:3b-instruct-q4_K_M", &n, &err), 0);
    CHECK_EQ_STR(n.path, "library/llama3.2");
    CHECK_EQ_STR(n.ns[0], "library");
    CHECK_EQ_STR(n.model, "llama3.2");
    CHECK_EQ_STR(n.tag, "3b-instruct-q4_K_M");
    CHECK_EQ_INT(llm_name_parse("host.example/team/m_1-x:v2", &n, &err), 0);
    CHECK_EQ_INT(n.n_ns, 2);
    CHECK_EQ_STR(n.ns[0], "host.example");
    CHECK_EQ_STR(n.ns[1], "team");
    CHECK_EQ_STR(n.model, "m_1-x");
    /* The limits themselves are accepted: 64-byte component, 200-byte name. */
    char part[65], whole[201];
    memset(part, 'c', 64);
    part[64] = 0;
    CHECK_EQ_INT(llm_name_parse(part, &n, &err), 0);
    snprintf(whole, sizeof whole, "%s/%s/%s:%.*s", part, part, part, 200 - 3 * 64 - 3, "tttttttttt");
    CHECK_EQ_INT((int)strlen(whole), 200);
    CHECK_EQ_INT(llm_name_parse(whole, &n, &err), 0);
}

/* ---- files -------------------------------------------------------------------------------- */

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(1 << 20);
    *len = fread(buf, 1, 1 << 20, f);
    buf[*len < (1 << 20) ? *len : 0] = 0;
    fclose(f);
    return buf;
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    if (d)
        closedir(d);
    return n;
}

static void test_atomic_write(const char *tmp)
{
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/atomic", tmp);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/file.json", dir);
    llm_err err;
    CHECK_EQ_INT(llm_write_atomic(path, "first", 5, &err), 0);
    CHECK_EQ_INT(llm_write_atomic(path, "second!", 7, &err), 0);
    size_t len = 0;
    char *got = slurp(path, &len);
    CHECK_EQ_INT(len, 7);
    CHECK_EQ_STR(got, "second!");
    free(got);
    CHECK_EQ_INT(count_entries(dir), 1); /* no temp file left behind */
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0644);
    snprintf(path, sizeof path, "%s/missing-dir/file", dir);
    CHECK_EQ_INT(llm_write_atomic(path, "x", 1, &err), -1);
    CHECK_CONTAINS(err.msg, "missing-dir");
}

/* ---- manifests and parameters -------------------------------------------------------------- */

static const char HEX_A[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

static void test_manifest_round_trip(void)
{
    llm_manifest m = {0}, back;
    llm_err err;
    m.name = "ns/model:tag";
    snprintf(m.digest, sizeof m.digest, "sha256-%s", HEX_A);
    m.size = 123456789012ull;
    m.template_str = "{% for m in messages %}{{ m.content }}{% endfor %}\n\"quoted\"";
    m.system = "You are terse.";
    CHECK_EQ_INT(llm_params_set(&m.params, "temperature", "0.7", &err), 0);
    CHECK_EQ_INT(llm_params_set(&m.params, "top_k", "40", &err), 0);
    CHECK_EQ_INT(llm_params_set(&m.params, "seed", "18446744073709551615", &err), 0);
    CHECK_EQ_INT(llm_params_set(&m.params, "num_ctx", "4096", &err), 0);
    CHECK_EQ_INT(llm_params_set(&m.params, "num_predict", "-1", &err), 0);
    CHECK_EQ_INT(llm_params_set(&m.params, "stop", "<|im_end|>", &err), 0);
    CHECK_EQ_INT(llm_params_set(&m.params, "stop", "</s>", &err), 0);
    char *json = llm_manifest_to_json(&m);
    CHECK_EQ_INT(llm_manifest_from_json(&back, json, strlen(json), &err), 0);
    free(json);
    CHECK_EQ_STR(back.name, "ns/model:tag");
    CHECK_EQ_STR(back.digest + 7, HEX_A);
    CHECK(back.size == 123456789012ull);
    CHECK_EQ_STR(back.template_str, m.template_str);
    CHECK_EQ_STR(back.system, "You are terse.");
    CHECK_EQ_INT(back.params.set, LLM_P_TEMPERATURE | LLM_P_TOP_K | LLM_P_SEED | LLM_P_NUM_CTX |
                                      LLM_P_NUM_PREDICT | LLM_P_STOP);
    CHECK(back.params.temperature == 0.7f);
    CHECK_EQ_INT(back.params.top_k, 40);
    CHECK(back.params.seed == 18446744073709551615ull);
    CHECK_EQ_INT(back.params.num_ctx, 4096);
    CHECK_EQ_INT(back.params.num_predict, -1);
    CHECK_EQ_INT(back.params.n_stop, 2);
    CHECK_EQ_STR(back.params.stop[0], "<|im_end|>");
    CHECK_EQ_STR(back.params.stop[1], "</s>");
    llm_manifest_free(&back);
    m.name = NULL, m.template_str = NULL, m.system = NULL;
    llm_manifest_free(&m);

    /* A manifest is outside data: a digest that is not sha256-<hex> could point anywhere. */
    const char *bad[] = {
        "{\"schema\":1,\"model\":\"sha256-../../../etc/passwd\",\"size\":1}",
        "{\"schema\":1,\"model\":\"sha256-0123\",\"size\":1}",
        "{\"schema\":2,\"model\":\"sha256-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\",\"size\":1}",
        "{\"schema\":1,\"model\":\"sha256-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"}",
        "{\"schema\":1,\"model\":\"sha256-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\",\"size\":1,"
        "\"parameters\":{\"temperature\":\"hot\"}}",
        "{\"schema\":1,\"model\":\"sha256-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\",\"size\":1,"
        "\"system\":5}",
        "[1,2]",
        "{\"schema\":1,",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        llm_manifest x;
        CHECK_MSG(llm_manifest_from_json(&x, bad[i], strlen(bad[i]), &err) == -1, "bad manifest #%zu rejected", i);
    }
}

static void test_params(void)
{
    llm_params p = {0};
    llm_err err;
    CHECK_EQ_INT(llm_params_set(&p, "temperature", "-1", &err), -1);
    CHECK_CONTAINS(err.msg, "temperature");
    CHECK_EQ_INT(llm_params_set(&p, "top_p", "1.5", &err), -1);
    CHECK_EQ_INT(llm_params_set(&p, "top_k", "4x", &err), -1);
    CHECK_EQ_INT(llm_params_set(&p, "seed", "-3", &err), -1);
    CHECK_EQ_INT(llm_params_set(&p, "num_ctx", "0", &err), -1);
    CHECK_EQ_INT(llm_params_set(&p, "mirostat", "1", &err), -1);
    CHECK_CONTAINS(err.msg, "unknown parameter 'mirostat'");
    CHECK_EQ_INT(llm_params_set(&p, "temperature", "nan", &err), -1);
    for (int i = 0; i < LLM_MAX_STOP; i++)
        CHECK_EQ_INT(llm_params_set(&p, "stop", "s", &err), 0);
    CHECK_EQ_INT(llm_params_set(&p, "stop", "s", &err), -1);
    CHECK_EQ_INT(p.set, LLM_P_STOP);
    llm_params_free(&p);
    /* The Ollama params layer: unknown keys skipped when lenient, rejected otherwise. */
    const char *j = "{\"stop\":[\"<|im_start|>\",\"<|im_end|>\"],\"temperature\":0.2,\"num_keep\":4}";
    CHECK_EQ_INT(llm_params_from_json(&p, j, strlen(j), true, &err), 0);
    CHECK_EQ_INT(p.n_stop, 2);
    CHECK(p.temperature == 0.2f);
    llm_params_free(&p);
    CHECK_EQ_INT(llm_params_from_json(&p, j, strlen(j), false, &err), -1);
    llm_params_free(&p);
}

/* The one JSON form of parameters (manifests and `llmap show --json`): what Ollama's options and
 * params layer spell as numbers are JSON numbers; a seed a double cannot hold exactly is a
 * decimal string. Expected texts are written out by hand. */
static void test_params_json(void)
{
    llm_params p = {0};
    llm_err err;
    CHECK_EQ_INT(llm_params_set(&p, "temperature", "0.5", &err), 0);
    CHECK_EQ_INT(llm_params_set(&p, "top_k", "40", &err), 0);
    CHECK_EQ_INT(llm_params_set(&p, "seed", "42", &err), 0);
    CHECK_EQ_INT(llm_params_set(&p, "num_predict", "-2", &err), 0);
    CHECK_EQ_INT(llm_params_set(&p, "stop", "</s>", &err), 0);
    CHECK_EQ_INT(llm_params_set(&p, "stop", "a\"b", &err), 0);
    cJSON *o = llm_params_to_json(&p);
    char *txt = cJSON_PrintUnformatted(o);
    CHECK_EQ_STR(txt, "{\"temperature\":0.5,\"top_k\":40,\"seed\":42,\"num_predict\":-2,"
                      "\"stop\":[\"</s>\",\"a\\\"b\"]}");
    free(txt);
    cJSON_Delete(o);

    /* cJSON prints numbers with 15 significant digits: 1e15 - 1 is the last seed written as a
     * number; 1e15, 2^53 + 1 and 2^64 - 1 are strings. */
    const struct {
        const char *seed, *json;
    } seeds[] = {
        {"0", "{\"seed\":0}"},
        {"999999999999999", "{\"seed\":999999999999999}"},
        {"1000000000000000", "{\"seed\":\"1000000000000000\"}"},
        {"9007199254740993", "{\"seed\":\"9007199254740993\"}"},
        {"18446744073709551615", "{\"seed\":\"18446744073709551615\"}"},
    };
    for (size_t i = 0; i < sizeof seeds / sizeof *seeds; i++) {
        llm_params q = {0}, back = {0};
        CHECK_EQ_INT(llm_params_set(&q, "seed", seeds[i].seed, &err), 0);
        o = llm_params_to_json(&q);
        txt = cJSON_PrintUnformatted(o);
        CHECK_EQ_STR(txt, seeds[i].json);
        /* and it reads back to the same seed, through the parser of the Ollama params layer */
        CHECK_EQ_INT(llm_params_from_json(&back, txt, strlen(txt), false, &err), 0);
        CHECK_MSG(back.set == LLM_P_SEED && back.seed == strtoull(seeds[i].seed, NULL, 10), "seed %s round trip",
                  seeds[i].seed);
        free(txt);
        cJSON_Delete(o);
    }
    /* Nothing set: an empty object, not absent keys with zero values. */
    llm_params none = {0};
    o = llm_params_to_json(&none);
    txt = cJSON_PrintUnformatted(o);
    CHECK_EQ_STR(txt, "{}");
    free(txt);
    cJSON_Delete(o);

    /* The manifest carries the same object under "parameters". */
    llm_manifest m = {0};
    snprintf(m.digest, sizeof m.digest, "sha256-%s", HEX_A);
    m.params = p;
    char *man = llm_manifest_to_json(&m);
    cJSON *root = cJSON_Parse(man);
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "parameters"), "seed");
    CHECK(cJSON_IsNumber(seed) && seed->valuedouble == 42);
    cJSON_Delete(root);
    free(man);
    llm_params_free(&p);
}

/* ---- Modelfile ---------------------------------------------------------------------------- */

static void test_modelfile(void)
{
    const char *ok = "# a comment\n"
                     "FROM ./tiny.gguf\n"
                     "\n"
                     "parameter temperature 0.3\n"
                     "PARAMETER stop \"<|im_end|>\"\n"
                     "PARAMETER stop \"say \\\"hi\\\"\"\n"
                     "SYSTEM You are terse.\n"
                     "TEMPLATE \"\"\"{{ bos_token }}\n"
                     "{% for m in messages %}{{ m.content }}{% endfor %}\"\"\"\n"
                     "PARAMETER num_ctx 512\n";
    llm_modelfile mf;
    llm_err err;
    CHECK_EQ_INT(llm_modelfile_parse(ok, strlen(ok), "Modelfile", &mf, &err), 0);
    CHECK_EQ_STR(mf.from, "./tiny.gguf");
    CHECK_EQ_INT(mf.from_line, 2);
    CHECK_EQ_STR(mf.system, "You are terse.");
    CHECK_EQ_STR(mf.template_str, "{{ bos_token }}\n{% for m in messages %}{{ m.content }}{% endfor %}");
    CHECK(mf.params.temperature == 0.3f);
    CHECK_EQ_INT(mf.params.n_stop, 2);
    CHECK_EQ_STR(mf.params.stop[1], "say \"hi\"");
    CHECK_EQ_INT(mf.params.num_ctx, 512);
    llm_modelfile_free(&mf);

    const struct {
        const char *text, *msg;
    } bad[] = {
        {"FROM x\nPARAMETER temperature hot\n", "Modelfile:2: parameter temperature"},
        {"FROM x\n\n\nFROBNICATE y\n", "Modelfile:4: unknown instruction 'FROBNICATE'"},
        {"FROM x\nTEMPLATE \"\"\"never closed\n\n", "Modelfile:2: unterminated \"\"\" string"},
        {"FROM x\nSYSTEM \"open\n", "Modelfile:2: unterminated \" string"},
        {"PARAMETER top_k 3\n", "no FROM line"},
        {"FROM x\nFROM y\n", "Modelfile:2: FROM given twice"},
        {"FROM\n", "Modelfile:1: FROM needs"},
        {"FROM x\nPARAMETER top_k\n", "Modelfile:2: PARAMETER top_k has no value"},
        {"FROM x\nSYSTEM \"a\" b\n", "Modelfile:2: unexpected text after the closing quote"},
        {"FROM x\nPARAMETER bogus 1\n", "Modelfile:2: unknown parameter 'bogus'"},
        {"FROM x\n123\n", "Modelfile:2: expected an instruction"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK_MSG(llm_modelfile_parse(bad[i].text, strlen(bad[i].text), "Modelfile", &mf, &err) == -1,
                  "bad Modelfile #%zu rejected", i);
        CHECK_CONTAINS(err.msg, bad[i].msg);
    }
    CHECK_EQ_INT(llm_modelfile_parse("FROM a\0b", 8, "Modelfile", &mf, &err), -1);
    CHECK_CONTAINS(err.msg, "NUL");
}

/* ---- pull sources ------------------------------------------------------------------------- */

static void test_pull_sources(void)
{
    llm_pull_source ps;
    llm_err err;
    CHECK_EQ_INT(llm_pull_parse_source("http://127.0.0.1:8080/m/tiny.gguf", &ps, &err), 0);
    CHECK_EQ_INT(ps.kind, LLM_PULL_FILE);
    CHECK_EQ_STR(ps.url, "http://127.0.0.1:8080/m/tiny.gguf");
    CHECK_EQ_STR(ps.sha256, "");
    llm_pull_source_free(&ps);
    char src[300];
    snprintf(src, sizeof src, "https://h.example/x/Model.Q4_0.GGUF#sha256=%s", "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef");
    CHECK_EQ_INT(llm_pull_parse_source(src, &ps, &err), 0);
    CHECK_EQ_INT(ps.kind, LLM_PULL_FILE);
    CHECK_EQ_STR(ps.url, "https://h.example/x/Model.Q4_0.GGUF");
    CHECK_EQ_STR(ps.sha256, HEX_A);
    llm_pull_source_free(&ps);
    CHECK_EQ_INT(llm_pull_parse_source("http://127.0.0.1:5000/library/tiny:latest", &ps, &err), 0);
    CHECK_EQ_INT(ps.kind, LLM_PULL_REGISTRY);
    CHECK_EQ_STR(ps.base, "http://127.0.0.1:5000");
    CHECK_EQ_STR(ps.repo, "library/tiny");
    CHECK_EQ_STR(ps.tag, "latest");
    llm_pull_source_free(&ps);
    CHECK_EQ_INT(llm_pull_parse_source("registry://reg.example:443/team/m", &ps, &err), 0);
    CHECK_EQ_STR(ps.base, "https://reg.example:443");
    CHECK_EQ_STR(ps.repo, "team/m");
    CHECK_EQ_STR(ps.tag, "latest");
    llm_pull_source_free(&ps);
    CHECK_EQ_INT(llm_pull_parse_source("qwen2:0.5b", &ps, &err), 0);
    CHECK_EQ_STR(ps.base, "https://registry.ollama.ai");
    CHECK_EQ_STR(ps.repo, "library/qwen2");
    CHECK_EQ_STR(ps.tag, "0.5b");
    llm_pull_source_free(&ps);
    const char *bad[] = {"ftp://h/x.gguf", "http://h/x.gguf#md5=00", "http://h/../../etc:x", "http:///x.gguf",
                         "file:///etc/passwd", "http://h/a/b/c/d:t", "", "http://h/x:y?z=1", "http://h o/x.gguf"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK_MSG(llm_pull_parse_source(bad[i], &ps, &err) == -1, "bad source '%s' rejected", bad[i]);
        llm_pull_source_free(&ps);
    }
}

/* ---- the store ------------------------------------------------------------------------------ */

/* A minimal valid GGUF (one F32 tensor) written with the project's writer. */
static int make_gguf(const char *path, float fill)
{
    gguf_writer *w = gguf_writer_new(32);
    gguf_w_str(w, "general.architecture", "llama");
    gguf_w_str(w, "general.license", "test-license");
    float data[64];
    for (int i = 0; i < 64; i++)
        data[i] = fill + (float)i;
    int64_t ne[1] = {64};
    llm_err err;
    int rc = gguf_w_tensor(w, "t", LLM_F32, 1, ne, data, &err);
    if (rc == 0)
        rc = gguf_writer_write(w, path, NULL, NULL, &err);
    gguf_writer_free(w);
    return rc;
}

/* sha256sum(1): an implementation independent of the store's. */
static void sha256sum(const char *path, char hex[65])
{
    char cmd[700];
    snprintf(cmd, sizeof cmd, "sha256sum '%s'", path);
    FILE *p = popen(cmd, "r");
    hex[0] = 0;
    if (p) {
        if (fscanf(p, "%64s", hex) != 1)
            hex[0] = 0;
        pclose(p);
    }
}

static void test_store(const char *tmp)
{
    char root[512], m1[600], m2[600], notgguf[600];
    snprintf(root, sizeof root, "%s/store", tmp);
    snprintf(m1, sizeof m1, "%s/one.gguf", tmp);
    snprintf(m2, sizeof m2, "%s/two.gguf", tmp);
    snprintf(notgguf, sizeof notgguf, "%s/not.gguf", tmp);
    CHECK_EQ_INT(make_gguf(m1, 1.0f), 0);
    CHECK_EQ_INT(make_gguf(m2, 2.0f), 0);
    FILE *f = fopen(notgguf, "w");
    fputs("definitely not a GGUF file", f);
    fclose(f);
    char hex1[65], hex2[65];
    sha256sum(m1, hex1);
    sha256sum(m2, hex2);
    CHECK_EQ_INT((int)strlen(hex1), 64);

    llm_store *s;
    llm_err err;
    CHECK_EQ_INT(llm_store_open(&s, root, &err), 0);
    if (!s)
        return;
    CHECK_EQ_INT(llm_store_import(s, m1, "one", &err), 0);
    CHECK_EQ_INT(llm_store_import(s, m2, "team/two:v1", &err), 0);
    CHECK_EQ_INT(llm_store_import(s, notgguf, "bad", &err), -1);
    CHECK_CONTAINS(err.msg, "not importing");
    CHECK_EQ_INT(llm_store_import(s, m1, "../evil", &err), -1);
    CHECK_CONTAINS(err.msg, "invalid model name");

    /* resolve: a name gives the blob named by sha256sum's digest; a path is returned as is. */
    char *path = NULL, want[800];
    snprintf(want, sizeof want, "%s/blobs/sha256-%s", root, hex1);
    CHECK_EQ_INT(llm_store_resolve(s, "one", &path, &err), 0);
    CHECK_EQ_STR(path, want);
    free(path);
    CHECK_EQ_INT(llm_store_resolve(s, "one:latest", &path, &err), 0);
    CHECK_EQ_STR(path, want);
    free(path);
    CHECK_EQ_INT(llm_store_resolve(s, m2, &path, &err), 0);
    CHECK_EQ_STR(path, m2);
    free(path);
    CHECK_EQ_INT(llm_store_resolve(s, "nope:1", &path, &err), -1);
    CHECK_CONTAINS(err.msg, "model 'nope:1' not found");
    CHECK(path == NULL);
    CHECK_EQ_INT(llm_store_resolve(s, "../../../../../../etc/passwd", &path, &err), -1);
    CHECK_CONTAINS(err.msg, "not a GGUF file");
    CHECK_EQ_INT(llm_store_resolve(s, "../x", &path, &err), -1);
    CHECK_EQ_INT(llm_store_resolve(s, "/nonexistent/x.gguf", &path, &err), -1);
    CHECK_CONTAINS(err.msg, "/nonexistent/x.gguf");

    /* cp shares the blob; list is sorted and complete. */
    CHECK_EQ_INT(llm_store_cp(s, "one", "one-copy:x", &err), 0);
    CHECK_EQ_INT(llm_store_cp(s, "missing", "y", &err), -1);
    llm_model_list l;
    CHECK_EQ_INT(llm_store_list(s, &l, &err), 0);
    CHECK_EQ_INT(l.n, 3);
    if (l.n == 3) {
        CHECK_EQ_STR(l.items[0].name, "one-copy:x");
        CHECK_EQ_STR(l.items[1].name, "one:latest");
        CHECK_EQ_STR(l.items[2].name, "team/two:v1");
        CHECK_EQ_STR(l.items[2].digest + 7, hex2);
        struct stat st;
        stat(m2, &st);
        CHECK(l.items[2].size == (uint64_t)st.st_size);
    }
    llm_model_list_free(&l);
    char blobs[600];
    snprintf(blobs, sizeof blobs, "%s/blobs", root);
    CHECK_EQ_INT(count_entries(blobs), 2);

    /* rm: the manifest goes; the blob stays while another name uses it. */
    CHECK_EQ_INT(llm_store_rm(s, "one", &err), 0);
    CHECK_EQ_INT(count_entries(blobs), 2);
    CHECK_EQ_INT(llm_store_rm(s, "one-copy:x", &err), 0);
    CHECK_EQ_INT(count_entries(blobs), 1);
    CHECK_EQ_INT(llm_store_rm(s, "one", &err), -1);
    CHECK_CONTAINS(err.msg, "not found");

    /* check: clean now; then a corrupted blob and a dangling manifest are both reported. */
    llm_buf rep = {0};
    int problems = -1;
    CHECK_EQ_INT(llm_store_check(s, false, &rep, &problems, &err), 0);
    CHECK_EQ_INT(problems, 0);
    llm_buf_free(&rep);
    CHECK_EQ_INT(llm_store_import(s, m1, "one", &err), 0);
    char blob2[800];
    snprintf(blob2, sizeof blob2, "%s/blobs/sha256-%s", root, hex2);
    /* The blob may be a hard link to m2: corrupt a private copy instead of the source. */
    unlink(blob2);
    f = fopen(blob2, "w");
    fputs("corrupted", f);
    fclose(f);
    char dangling[800];
    snprintf(dangling, sizeof dangling, "%s/manifests/ghost:latest.json", root);
    f = fopen(dangling, "w");
    fprintf(f, "{\"schema\":1,\"model\":\"sha256-%s\",\"size\":5}", HEX_A);
    fclose(f);
    CHECK_EQ_INT(llm_store_check(s, false, &rep, &problems, &err), 0);
    CHECK_EQ_INT(problems, 3); /* content mismatch, size mismatch of team/two, ghost's missing blob */
    CHECK_CONTAINS(rep.data, "content does not match its digest");
    CHECK_CONTAINS(rep.data, "model 'ghost:latest': blob");
    llm_buf_free(&rep);
    /* Nothing incomplete is listed: ghost has no blob, team/two has the wrong size. */
    CHECK_EQ_INT(llm_store_list(s, &l, &err), 0);
    CHECK_EQ_INT(l.n, 1);
    CHECK_EQ_STR(l.n ? l.items[0].name : "", "one:latest");
    llm_model_list_free(&l);

    /* create: FROM a name inherits the blob; settings come from the Modelfile. */
    char mfpath[600];
    snprintf(mfpath, sizeof mfpath, "%s/Modelfile", tmp);
    f = fopen(mfpath, "w");
    fputs("FROM one\nPARAMETER temperature 0.25\nSYSTEM Be brief.\n", f);
    fclose(f);
    CHECK_EQ_INT(llm_store_create(s, "brief", mfpath, &err), 0);
    llm_manifest m;
    CHECK_EQ_INT(llm_store_get(s, "brief", &m, &err), 0);
    CHECK_EQ_STR(m.digest + 7, hex1);
    CHECK_EQ_STR(m.system, "Be brief.");
    CHECK(m.params.temperature == 0.25f);
    llm_manifest_free(&m);
    f = fopen(mfpath, "w");
    fputs("FROM one.gguf\nTEMPLATE \"\"\"{{ x }}\"\"\"\n", f); /* relative to the Modelfile */
    fclose(f);
    CHECK_EQ_INT(llm_store_create(s, "fromfile", mfpath, &err), 0);
    CHECK_EQ_INT(llm_store_get(s, "fromfile", &m, &err), 0);
    CHECK_EQ_STR(m.digest + 7, hex1);
    CHECK_EQ_STR(m.template_str, "{{ x }}");
    llm_manifest_free(&m);
    f = fopen(mfpath, "w");
    fputs("FROM nothere\n", f);
    fclose(f);
    CHECK_EQ_INT(llm_store_create(s, "x", mfpath, &err), -1);
    CHECK_CONTAINS(err.msg, ":1: FROM nothere");
    llm_store_close(s);
}

int main(void)
{
    char tmp[] = "/tmp/llmap-test-store-XXXXXX";
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    test_hostile_names();
    test_valid_names();
    test_atomic_write(tmp);
    test_manifest_round_trip();
    test_params();
    test_params_json();
    test_modelfile();
    test_pull_sources();
    test_store(tmp);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", tmp);
    TEST_END("store");
}
