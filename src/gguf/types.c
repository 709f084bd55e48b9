/* The ggml tensor type table: names and block geometry (see types.h); and the file-type
 * names built on it, shared by `llmap list/show` and the server's /api/tags and /api/show. */
#include "gguf/types.h"

#include <ctype.h>
#include <strings.h>

#include "gguf/gguf.h"

static const llm_type_info TYPES[LLM_TYPE_COUNT] = {
    [LLM_F32] = {"f32", 1, 4},
    [LLM_F16] = {"f16", 1, 2},
    [LLM_Q4_0] = {"q4_0", 32, 2 + 16},
    [LLM_Q4_1] = {"q4_1", 32, 2 + 2 + 16},
    [LLM_Q5_0] = {"q5_0", 32, 2 + 4 + 16},
    [LLM_Q5_1] = {"q5_1", 32, 2 + 2 + 4 + 16},
    [LLM_Q8_0] = {"q8_0", 32, 2 + 32},
    [LLM_Q8_1] = {"q8_1", 32, 4 + 32},
    [LLM_Q2_K] = {"q2_k", 256, 16 + 64 + 2 + 2},
    [LLM_Q3_K] = {"q3_k", 256, 32 + 64 + 12 + 2},
    [LLM_Q4_K] = {"q4_k", 256, 2 + 2 + 12 + 128},
    [LLM_Q5_K] = {"q5_k", 256, 2 + 2 + 12 + 32 + 128},
    [LLM_Q6_K] = {"q6_k", 256, 128 + 64 + 16 + 2},
    [LLM_Q8_K] = {"q8_k", 256, 4 + 256 + 32},
    [LLM_I8] = {"i8", 1, 1},
    [LLM_I16] = {"i16", 1, 2},
    [LLM_I32] = {"i32", 1, 4},
    [LLM_I64] = {"i64", 1, 8},
    [LLM_F64] = {"f64", 1, 8},
    [LLM_BF16] = {"bf16", 1, 2},
};

const llm_type_info *llm_type_get(uint32_t t)
{
    if (t >= LLM_TYPE_COUNT || !TYPES[t].name)
        return NULL;
    return &TYPES[t];
}

const char *llm_type_name(uint32_t t)
{
    const llm_type_info *ti = llm_type_get(t);
    return ti ? ti->name : "unknown";
}

int llm_type_from_name(const char *name)
{
    for (int t = 0; t < LLM_TYPE_COUNT; t++)
        if (TYPES[t].name && strcasecmp(TYPES[t].name, name) == 0)
            return t;
    return -1;
}

size_t llm_row_size(llm_type t, int64_t n)
{
    const llm_type_info *ti = llm_type_get(t);
    if (!ti || n < 0 || n % ti->blck)
        return 0;
    return (size_t)(n / ti->blck) * ti->size;
}

const char *llm_file_type_name(uint32_t ft)
{
    static const char *const names[] = {
        [0] = "F32",     [1] = "F16",     [2] = "Q4_0",    [3] = "Q4_1",    [7] = "Q8_0",
        [8] = "Q5_0",    [9] = "Q5_1",    [10] = "Q2_K",   [11] = "Q3_K_S", [12] = "Q3_K_M",
        [13] = "Q3_K_L", [14] = "Q4_K_S", [15] = "Q4_K_M", [16] = "Q5_K_S", [17] = "Q5_K_M",
        [18] = "Q6_K",   [32] = "BF16",
    };
    return ft < sizeof names / sizeof *names ? names[ft] : NULL;
}

int gguf_dominant_type(const gguf_file *f)
{
    uint64_t bytes[LLM_TYPE_COUNT] = {0};
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if ((uint32_t)f->tensors[i].type < LLM_TYPE_COUNT) /* the parser admits only known types */
            bytes[f->tensors[i].type] += f->tensors[i].size;
    int best = -1;
    for (int t = 0; t < LLM_TYPE_COUNT; t++)
        if (bytes[t] && (best < 0 || bytes[t] > bytes[best]))
            best = t;
    return best;
}

char *gguf_quant_name(const gguf_file *f)
{
    uint32_t ft;
    const char *name = gguf_get_u32(f, "general.file_type", &ft, NULL) == 0 ? llm_file_type_name(ft) : NULL;
    if (name)
        return llm_xstrdup(name);
    int t = gguf_dominant_type(f);
    if (t < 0)
        return llm_xstrdup("none");
    char *s = llm_xstrdup(llm_type_name((uint32_t)t));
    for (char *p = s; *p; p++)
        *p = (char)toupper((unsigned char)*p);
    return s;
}
