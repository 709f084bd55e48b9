/*
 * arch — which metadata keys each architecture llmap runs must carry. Checked at load (and by
 * inspect) so a file missing, say, its head count is rejected by name instead of producing a
 * model with zero heads.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"

static const char *const COMMON_KEYS[] = {
    "context_length", "embedding_length", "block_count", "feed_forward_length", "attention.head_count",
    NULL,
};

static const char *const KNOWN_ARCHS[] = {"llama", "qwen2", "qwen3", "mistral", "gemma", "phi3", NULL};

/* Keys llama.cpp reads without a default for the newer architectures (its load_hparams calls
 * get_key(..., required)); llama and qwen2 files keep their historical 1e-5 default. */
typedef struct arch_keys {
    const char *arch;
    const char *keys[4];
} arch_keys;

static const arch_keys ARCH_KEYS[] = {
    {"qwen3", {"attention.layer_norm_rms_epsilon", NULL}},
    {"gemma", {"attention.layer_norm_rms_epsilon", NULL}},
    {"phi3", {"attention.layer_norm_rms_epsilon", NULL}},
};

static int check_arch_keys(const gguf_file *f, const char *arch, llm_err *err)
{
    for (size_t i = 0; i < sizeof ARCH_KEYS / sizeof *ARCH_KEYS; i++) {
        if (strcmp(arch, ARCH_KEYS[i].arch))
            continue;
        for (int k = 0; ARCH_KEYS[i].keys[k]; k++) {
            char key[256];
            snprintf(key, sizeof key, "%s.%s", arch, ARCH_KEYS[i].keys[k]);
            if (!gguf_find(f, key))
                return llm_errf(err, "%s: missing metadata key '%s' required by architecture '%s'", f->path, key,
                                arch);
        }
    }
    return 0;
}

char *gguf_arch(const gguf_file *f)
{
    const gguf_kv *kv = gguf_find(f, "general.architecture");
    if (!kv || kv->type != GGUF_STRING)
        return NULL;
    return llm_xstrndup(kv->v.str.ptr, kv->v.str.len);
}

int gguf_check_arch(const gguf_file *f, llm_err *err)
{
    const gguf_kv *kv = gguf_find(f, "general.architecture");
    if (!kv)
        return llm_errf(err, "%s: missing metadata key 'general.architecture'", f->path);
    if (kv->type != GGUF_STRING)
        return llm_errf(err, "%s: offset %llu: general.architecture: expected a string, got %s", f->path,
                        (unsigned long long)kv->offset, gguf_vtype_name(kv->type));
    char *arch = gguf_arch(f);
    int known = 0;
    for (int i = 0; KNOWN_ARCHS[i]; i++)
        known |= !strcmp(arch, KNOWN_ARCHS[i]);
    int rc = 0;
    if (!known)
        rc = llm_errf(err, "%s: architecture '%s' is not supported (llmap runs llama, mistral, qwen2, qwen3, gemma, "
                           "phi3)", f->path, arch);
    for (int i = 0; !rc && COMMON_KEYS[i]; i++) {
        char key[256];
        snprintf(key, sizeof key, "%s.%s", arch, COMMON_KEYS[i]);
        uint64_t v;
        if (!gguf_find(f, key))
            rc = llm_errf(err, "%s: missing metadata key '%s' required by architecture '%s'", f->path, key, arch);
        else if (gguf_get_u64(f, key, &v, err))
            rc = -1;
        else if (v == 0)
            rc = llm_errf(err, "%s: offset %llu: %s: must not be zero", f->path,
                          (unsigned long long)gguf_find(f, key)->offset, key);
    }
    if (!rc)
        rc = check_arch_keys(f, arch, err);
    free(arch);
    return rc;
}
