/*
 * Tensor element types as numbered in GGUF (the ggml type ids), with the block geometry of
 * each: a row of n elements of type t occupies n / blck * size bytes, and n must be a
 * multiple of blck. This table is format knowledge, so it lives with the reader; the kernels
 * implement the arithmetic for the types it lists.
 */
#ifndef LLMAP_GGUF_TYPES_H
#define LLMAP_GGUF_TYPES_H

#include <stddef.h>
#include <stdint.h>

typedef enum llm_type {
    LLM_F32 = 0,
    LLM_F16 = 1,
    LLM_Q4_0 = 2,
    LLM_Q4_1 = 3,
    LLM_Q5_0 = 6,
    LLM_Q5_1 = 7,
    LLM_Q8_0 = 8,
    LLM_Q8_1 = 9,
    LLM_Q2_K = 10,
    LLM_Q3_K = 11,
    LLM_Q4_K = 12,
    LLM_Q5_K = 13,
    LLM_Q6_K = 14,
    LLM_Q8_K = 15,
    LLM_I8 = 24,
    LLM_I16 = 25,
    LLM_I32 = 26,
    LLM_I64 = 27,
    LLM_F64 = 28,
    LLM_BF16 = 30,
    LLM_TYPE_COUNT = 40
} llm_type;

typedef struct llm_type_info {
    const char *name; /* "q4_0", NULL for ids this build does not know */
    uint32_t blck;    /* elements per block */
    uint32_t size;    /* bytes per block */
} llm_type_info;

/* NULL when t is not a type llmap knows (including ids ggml defines but we don't support). */
const llm_type_info *llm_type_get(uint32_t t);
const char *llm_type_name(uint32_t t); /* "q4_0", or "unknown" */
/* Parses a type name, case-insensitive ("Q4_K", "f32"); -1 when unknown. */
int llm_type_from_name(const char *name);
/* Bytes of a row of n elements; 0 when n is not a multiple of the block size. */
size_t llm_row_size(llm_type t, int64_t n);

/* llama.cpp's general.file_type (llama_ftype) as its usual name: 15 -> "Q4_K_M"; NULL for
 * values without one here (removed, IQ and other types llmap does not run). */
const char *llm_file_type_name(uint32_t ft);

struct gguf_file;
/* The quantization label of a model, as `llmap show` and /api/tags report it: the name of
 * general.file_type, else (key missing or value unnamed) the tensor type holding the most
 * bytes in upper case ("Q8_0"), else "none" for a file without tensors. A malloc'd copy. */
char *gguf_quant_name(const struct gguf_file *f);
/* The tensor type holding the most bytes of the file ("mostly Qx"); -1 without tensors. */
int gguf_dominant_type(const struct gguf_file *f);

#endif
