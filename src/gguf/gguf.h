/*
 * gguf — reader and writer of the GGUF file format (versions 2 and 3, little-endian).
 *
 * The reader parses a byte buffer (normally the memory mapping of the file, see src/mem) and
 * never trusts it: every count, length, dimension and offset is checked against the buffer
 * before use, and a rejection names the file, the byte offset and the field. Metadata values
 * and tensor data are not copied; the parsed structure points into the buffer, which must
 * outlive it.
 *
 * The writer builds a file from metadata and tensor data in memory or streamed from callbacks
 * (the synthetic-model generator and quantize write files larger than RAM).
 */
#ifndef LLMAP_GGUF_H
#define LLMAP_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "gguf/types.h"
#include "util/util.h"

#define GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4

typedef enum gguf_vtype {
    GGUF_U8 = 0,
    GGUF_I8 = 1,
    GGUF_U16 = 2,
    GGUF_I16 = 3,
    GGUF_U32 = 4,
    GGUF_I32 = 5,
    GGUF_F32 = 6,
    GGUF_BOOL = 7,
    GGUF_STRING = 8,
    GGUF_ARRAY = 9,
    GGUF_U64 = 10,
    GGUF_I64 = 11,
    GGUF_F64 = 12,
    GGUF_VTYPE_COUNT
} gguf_vtype;

/* A string inside the buffer: not NUL-terminated. */
typedef struct gguf_str {
    const char *ptr;
    uint64_t len;
} gguf_str;

typedef struct gguf_kv {
    char *key;         /* NUL-terminated copy */
    gguf_vtype type;   /* GGUF_ARRAY for arrays */
    uint64_t offset;   /* file offset of the key, for messages */
    union {
        uint64_t u64;  /* all unsigned integers and bool */
        int64_t i64;   /* all signed integers */
        double f64;    /* f32 and f64 */
        gguf_str str;
    } v;
    /* arrays */
    gguf_vtype arr_type;
    uint64_t arr_n;
    const void *arr_data; /* raw little-endian elements (not for string arrays) */
    gguf_str *arr_str;    /* string arrays: one entry per element */
} gguf_kv;

typedef struct gguf_tensor {
    char *name;               /* NUL-terminated copy */
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the contiguous dimension; unused dims are 1 */
    llm_type type;
    uint64_t offset;          /* relative to the data section */
    uint64_t size;            /* bytes */
    uint64_t info_offset;     /* file offset of the tensor info, for messages */
    const void *data;         /* into the buffer */
} gguf_tensor;

typedef struct gguf_file {
    char *path;               /* for messages */
    const uint8_t *base;
    uint64_t size;
    uint32_t version;
    uint64_t n_kv, n_tensors;
    gguf_kv *kv;
    gguf_tensor *tensors;
    uint32_t alignment;
    uint64_t data_offset;     /* file offset of the tensor data section */
    uint64_t *tensor_index;   /* tensor indices sorted by name, for lookup */
} gguf_file;

/* Parses buf[0..size). path is used in messages only. On failure returns -1 with err naming
 * "path: offset N: field: problem", and *f is left empty (gguf_free is still safe). */
int gguf_parse(gguf_file *f, const char *path, const void *buf, uint64_t size, llm_err *err);
void gguf_free(gguf_file *f);

/* Metadata lookup. Typed getters accept any integer type that holds the value exactly
 * (a u32 key stored as i32 is fine), return 0 on success and -1 (with err) when the key is
 * missing or of an incompatible type. */
const gguf_kv *gguf_find(const gguf_file *f, const char *key);
int gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out, llm_err *err);
int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out, llm_err *err);
int gguf_get_f32(const gguf_file *f, const char *key, float *out, llm_err *err);
int gguf_get_bool(const gguf_file *f, const char *key, bool *out, llm_err *err);
/* Returns a NUL-terminated copy (caller frees), or NULL with err. */
char *gguf_get_str(const gguf_file *f, const char *key, llm_err *err);
/* Same, with defaults when the key is absent (type mismatch is still an error: returns -1). */
int gguf_get_u32_or(const gguf_file *f, const char *key, uint32_t def, uint32_t *out, llm_err *err);
int gguf_get_f32_or(const gguf_file *f, const char *key, float def, float *out, llm_err *err);
int gguf_get_bool_or(const gguf_file *f, const char *key, bool def, bool *out, llm_err *err);
/* Array element as double / integer (any numeric element type). No bounds checks: i < arr_n. */
double gguf_arr_f64(const gguf_kv *kv, uint64_t i);
int64_t gguf_arr_i64(const gguf_kv *kv, uint64_t i);

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);
uint64_t gguf_tensor_nelements(const gguf_tensor *t);

const char *gguf_vtype_name(gguf_vtype t);
/* Size in bytes of one element of a fixed-size value type; 0 for string/array/unknown. */
size_t gguf_vtype_size(gguf_vtype t);

/* The metadata keys a file of its general.architecture must have for llmap to run it.
 * Returns 0 when the architecture is known and complete, -1 with an error naming the first
 * missing key, or the architecture when llmap does not know it. */
int gguf_check_arch(const gguf_file *f, llm_err *err);
/* general.architecture as a NUL-terminated copy, or NULL when absent. */
char *gguf_arch(const gguf_file *f);

/* ---- writer ---------------------------------------------------------------------------- */

typedef struct gguf_writer gguf_writer;

/* Produces the bytes of one tensor: called once per tensor, in order, with a buffer of the
 * tensor's size. Returns 0, or -1 with err set. */
typedef int (*gguf_tensor_fill)(void *ctx, const char *name, void *dst, uint64_t size, llm_err *err);

gguf_writer *gguf_writer_new(uint32_t alignment);
void gguf_writer_free(gguf_writer *w);
void gguf_w_u32(gguf_writer *w, const char *key, uint32_t v);
void gguf_w_i32(gguf_writer *w, const char *key, int32_t v);
void gguf_w_u64(gguf_writer *w, const char *key, uint64_t v);
void gguf_w_f32(gguf_writer *w, const char *key, float v);
void gguf_w_bool(gguf_writer *w, const char *key, bool v);
void gguf_w_str(gguf_writer *w, const char *key, const char *v);
/* A value copied verbatim from a parsed file (any type, arrays included). */
void gguf_w_copy_kv(gguf_writer *w, const gguf_kv *kv);
/* Generic scalar/array writers: data is little-endian elements of type t. */
void gguf_w_arr(gguf_writer *w, const char *key, gguf_vtype t, const void *data, uint64_t n);
void gguf_w_arr_str(gguf_writer *w, const char *key, const char *const *strs, uint64_t n);
/* Declares a tensor; its bytes come from data (copied at write time) or, when data is NULL,
 * from the fill callback given to gguf_writer_write. Returns -1 on a bad shape/type. */
int gguf_w_tensor(gguf_writer *w, const char *name, llm_type type, uint32_t n_dims,
                  const int64_t *ne, const void *data, llm_err *err);
/* Writes the file atomically (temporary file, fsync, rename). */
int gguf_writer_write(gguf_writer *w, const char *path, gguf_tensor_fill fill, void *ctx,
                      llm_err *err);

#endif
