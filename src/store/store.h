/*
 * store — the model store: users name models ("qwen2:0.5b"), not paths.
 *
 * Layout under the store root ($LLMAP_HOME, else $XDG_DATA_HOME/llmap, else
 * ~/.local/share/llmap):
 *
 *   blobs/sha256-<64 hex>        content-addressed model files (GGUF), named by their SHA-256
 *   manifests/<ns+name:tag>.json one small JSON file per name: the model blob and its settings
 *                                (chat template override, default options, system prompt);
 *                                '/' of the name is stored as '+' so the directory stays flat
 *   tmp/                         temporary files of writes in progress and partial downloads
 *
 * Names follow a fixed grammar (llm_name_parse) so that no name can ever reach outside the
 * store: components of [a-z0-9._-] starting with a letter or digit, '/' only between at most
 * two namespaces and the model, an optional ":tag" (default "latest"), ASCII only, bounded.
 *
 * Crash safety: every file is written to a temporary name in the same directory, fsync'ed,
 * renamed into place and the directory fsync'ed. A blob is verified before it is renamed to
 * its digest name, and a manifest is written only after its blob exists, so a crash or SIGKILL
 * at any point leaves at worst an unreferenced blob or a stray temp file (llm_store_check
 * finds both; --fix removes them) — never a listed model whose data is missing or partial.
 * Removal deletes the manifest first, then garbage-collects blobs no manifest references.
 */
#ifndef LLMAP_STORE_H
#define LLMAP_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

/* ---- names --------------------------------------------------------------------------------- */

#define LLM_NAME_MAX 200       /* whole name, "ns/ns/model:tag" */
#define LLM_NAME_PART_MAX 64   /* one component or the tag */
#define LLM_NAME_MAX_NS 2      /* namespaces before the model component */

typedef struct llm_name {
    char full[LLM_NAME_MAX + 16];  /* canonical "ns/model:tag", tag always present */
    char path[LLM_NAME_MAX + 1];   /* "ns/model" (everything before ':') */
    char model[LLM_NAME_PART_MAX + 1]; /* last component */
    char tag[LLM_NAME_PART_MAX + 1];
    int n_ns;                      /* namespaces before the model (0..2) */
    char ns[LLM_NAME_MAX_NS][LLM_NAME_PART_MAX + 1];
} llm_name;

/* Parses text[0..len) (len bytes, may contain NUL, which is rejected). Returns 0, or -1 with
 * err saying which rule the name breaks. */
int llm_name_parse_n(const char *text, size_t len, llm_name *out, llm_err *err);
int llm_name_parse(const char *text, llm_name *out, llm_err *err);

/* ---- the store ---------------------------------------------------------------------------- */

typedef struct llm_store llm_store;

/* Opens (creating directories as needed) the store at root, or at the default location when
 * root is NULL. */
int llm_store_open(llm_store **s, const char *root, llm_err *err);
void llm_store_close(llm_store *s);
const char *llm_store_root(const llm_store *s);
/* Directory for temporary files and partial downloads (same filesystem as blobs/). */
const char *llm_store_tmpdir(const llm_store *s);

/* Default options a manifest carries (Modelfile PARAMETER lines). A field is meaningful only
 * when its bit is set in `set`. */
enum {
    LLM_P_TEMPERATURE = 1 << 0,
    LLM_P_TOP_K = 1 << 1,
    LLM_P_TOP_P = 1 << 2,
    LLM_P_MIN_P = 1 << 3,
    LLM_P_REPEAT_PENALTY = 1 << 4,
    LLM_P_SEED = 1 << 5,
    LLM_P_NUM_CTX = 1 << 6,
    LLM_P_NUM_PREDICT = 1 << 7,
    LLM_P_STOP = 1 << 8,
};

#define LLM_MAX_STOP 16

typedef struct llm_params {
    unsigned set;
    float temperature, top_p, min_p, repeat_penalty;
    int top_k;
    uint64_t seed;
    int num_ctx;
    int num_predict;
    int n_stop;
    char *stop[LLM_MAX_STOP];
} llm_params;

/* Sets one parameter from its Modelfile/JSON spelling ("temperature", "0.7"); "stop" appends.
 * -1 with err for an unknown key or a value that does not parse or is out of range. */
int llm_params_set(llm_params *p, const char *key, const char *value, llm_err *err);
void llm_params_free(llm_params *p);
/* Parameters from a JSON object ({"temperature":0.7,"stop":["a"]}, the Ollama params layer).
 * lenient: keys llmap does not know are skipped instead of rejected. */
int llm_params_from_json(llm_params *p, const char *json, size_t len, bool lenient, llm_err *err);
/* The parameters that are set, as the JSON object llm_params_from_json reads (manifests,
 * `llmap show --json`): numbers, "stop" an array of strings, and "seed" a number below 1e15
 * (what cJSON prints exactly) and a decimal string from there on. Caller owns it (cJSON_Delete). */
struct cJSON;
struct cJSON *llm_params_to_json(const llm_params *p);

typedef struct llm_manifest {
    char *name;          /* canonical name:tag */
    char digest[72];     /* "sha256-<64 hex>" of the model blob */
    uint64_t size;       /* bytes of the model blob */
    char *template_str;  /* chat template override, NULL = the model's own */
    char *system;        /* default system prompt, NULL = none */
    char *source;        /* where it came from (path, URL), informational */
    char *created;       /* ISO-8601 UTC time of creation */
    llm_params params;
} llm_manifest;

void llm_manifest_free(llm_manifest *m);
/* JSON round trip (cJSON). from_json checks every field: the digest must be well formed. */
char *llm_manifest_to_json(const llm_manifest *m);
int llm_manifest_from_json(llm_manifest *m, const char *json, size_t len, llm_err *err);

/* Full path of a blob ("sha256-<hex>"), malloc'd. */
char *llm_store_blob_path(const llm_store *s, const char *digest);

/* Reads the manifest of a name (NULL err message "model 'x' not found" when absent). */
int llm_store_get(llm_store *s, const char *name, llm_manifest *m, llm_err *err);
/* Writes (atomically) the manifest for m->name; the blob must already be in the store. */
int llm_store_put(llm_store *s, const llm_manifest *m, llm_err *err);

/* A path to an existing .gguf file is returned as is (copied); otherwise a validated
 * name[:tag] is looked up in the store and the path of its model blob returned. When man is
 * not NULL it receives the manifest (zeroed for a plain path). *gguf_path is malloc'd. */
int llm_store_resolve(llm_store *s, const char *name_or_path, char **gguf_path, llm_err *err);
int llm_store_resolve_ex(llm_store *s, const char *name_or_path, char **gguf_path, llm_manifest *man,
                         llm_err *err);

/* Every complete model, sorted by name. Free with llm_model_list_free. */
typedef struct llm_model_list {
    llm_manifest *items;
    size_t n;
} llm_model_list;
int llm_store_list(llm_store *s, llm_model_list *out, llm_err *err);
void llm_model_list_free(llm_model_list *l);

/* Adds a GGUF file under name: checks it parses as GGUF, hashes it (SHA-256, streaming), then
 * hard-links / reflinks it into blobs/ when possible and copies otherwise. */
int llm_store_import(llm_store *s, const char *gguf_path, const char *name, llm_err *err);
/* Same; *how (may be NULL) says how the bytes got in: "reflinked", "hard-linked" or "copied".
 * A hard-linked blob shares the source's inode: editing the source in place would change the
 * blob (`store check` reports it); reflinks and copies are independent. */
int llm_store_import_how(llm_store *s, const char *gguf_path, const char *name, const char **how,
                         llm_err *err);
/* Commits a model: when tmp_path is not NULL it is a file in the store's tmp dir whose
 * SHA-256 is already verified to be m->digest; it becomes the blob (consumed; dropped when the
 * blob already exists). Then m's manifest is written. Done under the store lock so a
 * concurrent garbage collection cannot remove the blob between the two steps. */
int llm_store_add(llm_store *s, const char *tmp_path, const llm_manifest *m, llm_err *err);

/* The store lock, for long operations (import, pull) that must not race a garbage
 * collection or `check --fix`: shared for adders, exclusive for collectors. Returns -1 with
 * err when nonblocking and busy. llm_store_close releases it. */
int llm_store_lock(llm_store *s, bool exclusive, bool nonblocking, llm_err *err);
void llm_store_unlock(llm_store *s);

/* A unique path in the store's tmp dir: "<tmp>/<prefix>-<pid>-<counter>-<random>", malloc'd. */
char *llm_store_tmpname(llm_store *s, const char *prefix);

/* Removes a name (manifest first) then every blob no manifest references. */
int llm_store_rm(llm_store *s, const char *name, llm_err *err);
/* Copies a name's manifest to a new name (the blob is shared). */
int llm_store_cp(llm_store *s, const char *src, const char *dst, llm_err *err);
/* Deletes blobs no manifest references; returns how many were removed (or -1). */
int llm_store_gc(llm_store *s, llm_err *err);

/* Verifies every blob against its digest and every manifest's references. Problems are
 * appended to report (one line each) and counted in *n_problems. With fix, leftover temp
 * files, unreferenced blobs and blobs whose content does not match their digest are removed. */
int llm_store_check(llm_store *s, bool fix, llm_buf *report, int *n_problems, llm_err *err);

/* ---- Modelfile (`llmap create NAME -f FILE`) ----------------------------------------------
 *
 *   # comment
 *   FROM ./model.gguf | existing-name[:tag]
 *   PARAMETER temperature 0.7
 *   PARAMETER stop "<|im_end|>"
 *   SYSTEM You are terse.
 *   TEMPLATE """{{ .System }} ... multi-line ..."""
 *
 * Instructions are case-insensitive; arguments are the rest of the line, a "quoted string"
 * (escapes \" \\ \n \t) or a """triple-quoted""" string that may span lines. Errors name
 * the line: "Modelfile:3: ...". */
typedef struct llm_modelfile {
    char *from;
    int from_line;
    char *template_str, *system;
    llm_params params;
} llm_modelfile;

#define LLM_MODELFILE_MAX (1u << 20)

int llm_modelfile_parse(const char *text, size_t len, const char *fname, llm_modelfile *mf, llm_err *err);
void llm_modelfile_free(llm_modelfile *mf);
/* Reads and parses modelfile_path, resolves FROM (a path relative to the Modelfile's
 * directory, or a name in the store, whose settings are inherited) and stores the result as
 * name. */
int llm_store_create(llm_store *s, const char *name, const char *modelfile_path, llm_err *err);

/* ---- pull ---------------------------------------------------------------------------------
 *
 * Sources (`llmap pull SOURCE [NAME]`):
 *   http(s)://host/path/model.gguf[#sha256=HEX]   one GGUF file (path ends in .gguf)
 *   http(s)://host[:port]/ns/name[:tag]           an OCI/Docker distribution registry in the
 *   registry://host[:port]/ns/name[:tag]          layout Ollama's uses (registry:// = https)
 *   name[:tag] | ns/name[:tag]                    registry.ollama.ai (namespace "library")
 * A direct download resumes from the partial file kept in the store's tmp dir (HTTP Range);
 * registry blobs are verified against their digests, a file against --sha256 / #sha256= when
 * given. Nothing is listed until its blob is complete and verified. */
typedef struct llm_pull_opts {
    const char *name;     /* local name; NULL = derived from the source */
    const char *sha256;   /* expected SHA-256 (64 hex) of a direct download, NULL = none */
    uint64_t rate_limit;  /* bytes per second, 0 = unlimited (tests: LLMAP_PULL_RATE_LIMIT) */
    int progress;         /* 0 quiet, 1 plain periodic lines, 2 progress bar (terminal) */
} llm_pull_opts;

typedef struct llm_pull_source {
    int kind;          /* LLM_PULL_FILE or LLM_PULL_REGISTRY */
    char *url;         /* FILE: the URL without fragment */
    char *base;        /* REGISTRY: "scheme://host[:port]" */
    char *repo;        /* REGISTRY: "ns/name" */
    char *tag;         /* REGISTRY: tag ("latest" when absent) */
    char sha256[65];   /* FILE: from #sha256=HEX, "" when absent */
} llm_pull_source;

enum { LLM_PULL_FILE = 1, LLM_PULL_REGISTRY = 2 };

int llm_pull_parse_source(const char *source, llm_pull_source *out, llm_err *err);
void llm_pull_source_free(llm_pull_source *ps);
/* Pulls source into the store; *pulled_name (malloc'd, may be NULL) gets the local name. */
int llm_store_pull(llm_store *s, const char *source, const llm_pull_opts *o, char **pulled_name, llm_err *err);

/* ---- helpers shared with pull ------------------------------------------------------------ */

/* Atomic write of a whole small file: temp in the same dir, fsync, rename, fsync dir. */
int llm_write_atomic(const char *path, const void *data, size_t len, llm_err *err);
/* fsync of a directory, so a rename in it is durable. */
int llm_fsync_dir(const char *dir, llm_err *err);
/* SHA-256 of a file, streaming, as 64 lowercase hex chars + NUL. */
int llm_sha256_file(const char *path, char hex[65], llm_err *err);
/* Checks that the file is a GGUF that parses (maps it read-only). */
int llm_check_gguf_file(const char *path, llm_err *err);
/* true for "sha256-<64 lowercase hex>" (or "sha256:<hex>" when colon_ok). */
bool llm_digest_valid(const char *d, bool colon_ok);

#endif
