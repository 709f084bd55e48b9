/* The ggml tensor type table: names and block geometry (see types.h). */
#include "gguf/types.h"

#include <strings.h>

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
