/*
 * GGUF reader: parses and validates a whole file held in memory (see gguf.h).
 *
 * Layout: magic, version, tensor count, kv count, the kv pairs, the tensor infos, padding to
 * the alignment, then the tensor data section. All reads go through a cursor that checks the
 * remaining length first, so a truncated or hostile file yields an error naming the offset.
 */
#include "gguf/gguf.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct cursor {
    const gguf_file *f;
    const uint8_t *p;
    uint64_t off, size;
    llm_err *err;
} cursor;

/* Every rejection goes through here so messages share one shape. */
#define FAIL(c, at, ...) fail_at((c), (at), __VA_ARGS__)

__attribute__((format(printf, 3, 4))) static int fail_at(cursor *c, uint64_t at, const char *fmt, ...)
{
    char what[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return llm_errf(c->err, "%s: offset %llu: %s", c->f->path, (unsigned long long)at, what);
}

static int need(cursor *c, uint64_t n, const char *field)
{
    if (n > c->size - c->off)
        return FAIL(c, c->off, "%s: file ends (needs %llu bytes, %llu left)", field,
                    (unsigned long long)n, (unsigned long long)(c->size - c->off));
    return 0;
}

static uint64_t rd_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static int read_uint(cursor *c, int n, uint64_t *out, const char *field)
{
    if (need(c, (uint64_t)n, field))
        return -1;
    *out = rd_le(c->p + c->off, n);
    c->off += (uint64_t)n;
    return 0;
}

static int read_u32(cursor *c, uint32_t *out, const char *field)
{
    uint64_t v;
    if (read_uint(c, 4, &v, field))
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int read_str(cursor *c, gguf_str *s, const char *field)
{
    uint64_t at = c->off, len;
    if (read_uint(c, 8, &len, field))
        return -1;
    if (len > c->size - c->off)
        return FAIL(c, at, "%s: string length %llu runs past end of file (%llu bytes left)", field,
                    (unsigned long long)len, (unsigned long long)(c->size - c->off));
    s->ptr = (const char *)c->p + c->off;
    s->len = len;
    c->off += len;
    return 0;
}

size_t gguf_vtype_size(gguf_vtype t)
{
    static const size_t sz[GGUF_VTYPE_COUNT] = {
        [GGUF_U8] = 1, [GGUF_I8] = 1, [GGUF_U16] = 2, [GGUF_I16] = 2, [GGUF_U32] = 4,
        [GGUF_I32] = 4, [GGUF_F32] = 4, [GGUF_BOOL] = 1, [GGUF_U64] = 8, [GGUF_I64] = 8,
        [GGUF_F64] = 8,
    };
    return (unsigned)t < GGUF_VTYPE_COUNT ? sz[t] : 0;
}

const char *gguf_vtype_name(gguf_vtype t)
{
    static const char *names[GGUF_VTYPE_COUNT] = {
        "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
    };
    return (unsigned)t < GGUF_VTYPE_COUNT ? names[t] : "unknown";
}

static int is_signed(gguf_vtype t) { return t == GGUF_I8 || t == GGUF_I16 || t == GGUF_I32 || t == GGUF_I64; }

static uint64_t sign_extend(uint64_t v, size_t bytes)
{
    if (bytes == 8)
        return v;
    uint64_t m = 1ull << (bytes * 8 - 1);
    return (v ^ m) - m;
}

static int read_scalar(cursor *c, gguf_kv *kv, gguf_vtype t)
{
    size_t n = gguf_vtype_size(t);
    uint64_t raw;
    if (read_uint(c, (int)n, &raw, kv->key))
        return -1;
    if (t == GGUF_F32) {
        uint32_t u = (uint32_t)raw;
        float f;
        memcpy(&f, &u, 4);
        kv->v.f64 = f;
    } else if (t == GGUF_F64) {
        memcpy(&kv->v.f64, &raw, 8);
    } else if (is_signed(t)) {
        kv->v.i64 = (int64_t)sign_extend(raw, n);
    } else {
        kv->v.u64 = raw;
    }
    return 0;
}

static int read_array(cursor *c, gguf_kv *kv)
{
    uint64_t at = c->off, et, n;
    if (read_uint(c, 4, &et, kv->key) || read_uint(c, 8, &n, kv->key))
        return -1;
    if (et >= GGUF_VTYPE_COUNT || et == GGUF_ARRAY)
        return FAIL(c, at, "%s: array of unsupported value type %llu", kv->key, (unsigned long long)et);
    kv->arr_type = (gguf_vtype)et;
    kv->arr_n = n;
    if (et == GGUF_STRING) {
        /* each string needs at least its 8-byte length: bound n before allocating */
        if (n > (c->size - c->off) / 8)
            return FAIL(c, at, "%s: array count %llu exceeds what the file can hold", kv->key,
                        (unsigned long long)n);
        kv->arr_str = malloc(n ? n * sizeof *kv->arr_str : 1);
        if (!kv->arr_str)
            return FAIL(c, at, "%s: out of memory for %llu strings", kv->key, (unsigned long long)n);
        for (uint64_t i = 0; i < n; i++)
            if (read_str(c, &kv->arr_str[i], kv->key))
                return -1;
        return 0;
    }
    uint64_t bytes;
    if (!llm_mul_ok(n, gguf_vtype_size(kv->arr_type), &bytes) || bytes > c->size - c->off)
        return FAIL(c, at, "%s: array of %llu %s runs past end of file", kv->key,
                    (unsigned long long)n, gguf_vtype_name(kv->arr_type));
    kv->arr_data = c->p + c->off;
    c->off += bytes;
    return 0;
}

static int read_kv(cursor *c, gguf_kv *kv)
{
    gguf_str key;
    kv->offset = c->off;
    if (read_str(c, &key, "metadata key"))
        return -1;
    if (key.len == 0)
        return FAIL(c, kv->offset, "metadata key: empty key");
    if (memchr(key.ptr, 0, key.len))
        return FAIL(c, kv->offset, "metadata key: contains a NUL byte");
    kv->key = llm_xstrndup(key.ptr, key.len);
    uint64_t at = c->off, t;
    if (read_uint(c, 4, &t, kv->key))
        return -1;
    if (t >= GGUF_VTYPE_COUNT)
        return FAIL(c, at, "%s: unknown value type %llu", kv->key, (unsigned long long)t);
    kv->type = (gguf_vtype)t;
    if (t == GGUF_STRING)
        return read_str(c, &kv->v.str, kv->key);
    if (t == GGUF_ARRAY)
        return read_array(c, kv);
    return read_scalar(c, kv, kv->type);
}

static int read_tensor_info(cursor *c, gguf_tensor *t)
{
    gguf_str name;
    t->info_offset = c->off;
    if (read_str(c, &name, "tensor name"))
        return -1;
    if (name.len == 0 || memchr(name.ptr, 0, name.len))
        return FAIL(c, t->info_offset, "tensor name: empty or contains a NUL byte");
    t->name = llm_xstrndup(name.ptr, name.len);
    uint64_t at = c->off;
    if (read_u32(c, &t->n_dims, t->name))
        return -1;
    if (t->n_dims == 0 || t->n_dims > GGUF_MAX_DIMS)
        return FAIL(c, at, "tensor '%s': %u dimensions (1..%d allowed)", t->name, t->n_dims, GGUF_MAX_DIMS);
    uint64_t nel = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++)
        t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t v, dat = c->off;
        if (read_uint(c, 8, &v, t->name))
            return -1;
        if (v > (uint64_t)INT64_MAX || !llm_mul_ok(nel, v, &nel) || nel > (uint64_t)INT64_MAX)
            return FAIL(c, dat, "tensor '%s': dimension %u (%llu) makes the element count overflow",
                        t->name, d, (unsigned long long)v);
        t->ne[d] = (int64_t)v;
    }
    uint32_t type;
    at = c->off;
    if (read_u32(c, &type, t->name))
        return -1;
    const llm_type_info *ti = llm_type_get(type);
    if (!ti)
        return FAIL(c, at, "tensor '%s': unknown or unsupported tensor type %u", t->name, type);
    t->type = (llm_type)type;
    if (t->ne[0] % ti->blck)
        return FAIL(c, at, "tensor '%s': row length %lld is not a multiple of the %s block size %u",
                    t->name, (long long)t->ne[0], ti->name, ti->blck);
    if (!llm_mul_ok(nel / ti->blck, ti->size, &t->size))
        return FAIL(c, at, "tensor '%s': size overflows", t->name);
    return read_uint(c, 8, &t->offset, t->name);
}

/* Sort keys for the name index and the overlap check (plain qsort: qsort_r is not portable). */
typedef struct tref {
    const gguf_tensor *t;
    uint64_t idx;
} tref;

static int cmp_by_name(const void *a, const void *b)
{
    return strcmp(((const tref *)a)->t->name, ((const tref *)b)->t->name);
}

static int cmp_by_offset(const void *a, const void *b)
{
    uint64_t x = ((const tref *)a)->t->offset, y = ((const tref *)b)->t->offset;
    return x < y ? -1 : x > y;
}

static tref *sorted_refs(const gguf_file *f, int (*cmp)(const void *, const void *))
{
    tref *r = llm_xmalloc((f->n_tensors ? f->n_tensors : 1) * sizeof *r);
    for (uint64_t i = 0; i < f->n_tensors; i++)
        r[i] = (tref){&f->tensors[i], i};
    qsort(r, f->n_tensors, sizeof *r, cmp);
    return r;
}

/* Builds the by-name index (for lookup) and rejects duplicate names. */
static int index_tensors(cursor *c, gguf_file *f)
{
    tref *r = sorted_refs(f, cmp_by_name);
    f->tensor_index = llm_xmalloc((f->n_tensors ? f->n_tensors : 1) * sizeof(uint64_t));
    int rc = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        f->tensor_index[i] = r[i].idx;
        if (i && !rc && strcmp(r[i - 1].t->name, r[i].t->name) == 0) {
            const gguf_tensor *later = r[i - 1].idx > r[i].idx ? r[i - 1].t : r[i].t;
            rc = FAIL(c, later->info_offset, "tensor '%s': duplicate tensor name", later->name);
        }
    }
    free(r);
    return rc;
}

/* Checks alignment, bounds and overlap of the tensor data, then sets the data pointers. */
static int place_tensors(cursor *c, gguf_file *f)
{
    uint64_t avail = f->size - f->data_offset;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        if (t->offset % f->alignment)
            return FAIL(c, t->info_offset, "tensor '%s': data offset %llu is not a multiple of the alignment %u",
                        t->name, (unsigned long long)t->offset, f->alignment);
        if (t->offset > avail)
            return FAIL(c, t->info_offset, "tensor '%s': data offset %llu is past end of file (%llu bytes of data)",
                        t->name, (unsigned long long)t->offset, (unsigned long long)avail);
        if (t->size > avail - t->offset)
            return FAIL(c, t->info_offset,
                        "tensor '%s': data ends past end of file (needs %llu bytes, file has %llu)", t->name,
                        (unsigned long long)(f->data_offset + t->offset + t->size), (unsigned long long)f->size);
        t->data = f->base + f->data_offset + t->offset;
    }
    tref *r = sorted_refs(f, cmp_by_offset);
    int rc = 0;
    for (uint64_t i = 1; i < f->n_tensors && !rc; i++)
        if (r[i - 1].t->offset + r[i - 1].t->size > r[i].t->offset)
            rc = FAIL(c, r[i].t->info_offset, "tensor '%s': data overlaps tensor '%s'", r[i].t->name,
                      r[i - 1].t->name);
    free(r);
    return rc;
}

static int read_alignment(cursor *c, gguf_file *f)
{
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_kv *kv = gguf_find(f, "general.alignment");
    if (!kv)
        return 0;
    if (kv->type != GGUF_U32 && kv->type != GGUF_I32 && kv->type != GGUF_U64)
        return FAIL(c, kv->offset, "general.alignment: expected an integer, got %s", gguf_vtype_name(kv->type));
    uint64_t a = kv->v.u64;
    if (a == 0 || a > 1u << 20 || (a & (a - 1)))
        return FAIL(c, kv->offset, "general.alignment: %lld is not a power of two up to 1 MiB", (long long)kv->v.i64);
    f->alignment = (uint32_t)a;
    return 0;
}

static int parse_header(cursor *c, gguf_file *f)
{
    uint32_t magic;
    if (read_u32(c, &magic, "magic"))
        return -1;
    if (magic != GGUF_MAGIC)
        return FAIL(c, 0, "magic: not a GGUF file (starts with %02x %02x %02x %02x)", c->p[0], c->p[1], c->p[2], c->p[3]);
    if (read_u32(c, &f->version, "version"))
        return -1;
    if (f->version != 2 && f->version != 3)
        return FAIL(c, 4, "version: GGUF version %u is not supported (2 and 3 are)", f->version);
    if (read_uint(c, 8, &f->n_tensors, "tensor count") || read_uint(c, 8, &f->n_kv, "metadata count"))
        return -1;
    /* the smallest kv is 8 (key len) + 1 (key) + 4 (type) + 1 (u8); the smallest tensor info
     * is 8 + 1 + 4 + 8 + 4 + 8: reject counts the file cannot possibly hold before allocating */
    uint64_t left = c->size - c->off;
    if (f->n_kv > left / 14)
        return FAIL(c, 16, "metadata count: %llu entries cannot fit in a %llu-byte file",
                    (unsigned long long)f->n_kv, (unsigned long long)c->size);
    if (f->n_tensors > left / 33)
        return FAIL(c, 8, "tensor count: %llu tensors cannot fit in a %llu-byte file",
                    (unsigned long long)f->n_tensors, (unsigned long long)c->size);
    return 0;
}

int gguf_parse(gguf_file *f, const char *path, const void *buf, uint64_t size, llm_err *err)
{
    memset(f, 0, sizeof *f);
    f->path = llm_xstrdup(path);
    f->base = buf;
    f->size = size;
    cursor c = {.f = f, .p = buf, .off = 0, .size = size, .err = err};
    if (parse_header(&c, f))
        goto fail;
    f->kv = llm_xcalloc(f->n_kv ? f->n_kv : 1, sizeof *f->kv);
    for (uint64_t i = 0; i < f->n_kv; i++)
        if (read_kv(&c, &f->kv[i]))
            goto fail;
    for (uint64_t i = 1; i < f->n_kv; i++) /* duplicate keys: quadratic only in the key count */
        if (i < 4096)
            for (uint64_t j = 0; j < i; j++)
                if (strcmp(f->kv[i].key, f->kv[j].key) == 0) {
                    FAIL(&c, f->kv[i].offset, "%s: duplicate metadata key", f->kv[i].key);
                    goto fail;
                }
    if (read_alignment(&c, f))
        goto fail;
    f->tensors = llm_xcalloc(f->n_tensors ? f->n_tensors : 1, sizeof *f->tensors);
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (read_tensor_info(&c, &f->tensors[i]))
            goto fail;
    f->data_offset = (c.off + f->alignment - 1) / f->alignment * f->alignment;
    if (f->n_tensors && f->data_offset > size) {
        FAIL(&c, c.off, "data section: starts at %llu, past end of file (%llu bytes)",
             (unsigned long long)f->data_offset, (unsigned long long)size);
        goto fail;
    }
    if (f->data_offset > size)
        f->data_offset = size;
    if (index_tensors(&c, f) || place_tensors(&c, f))
        goto fail;
    return 0;
fail:
    gguf_free(f);
    return -1;
}

void gguf_free(gguf_file *f)
{
    if (f->kv)
        for (uint64_t i = 0; i < f->n_kv; i++) {
            free(f->kv[i].key);
            free(f->kv[i].arr_str);
        }
    if (f->tensors)
        for (uint64_t i = 0; i < f->n_tensors; i++)
            free(f->tensors[i].name);
    free(f->kv);
    free(f->tensors);
    free(f->tensor_index);
    free(f->path);
    memset(f, 0, sizeof *f);
}

const gguf_kv *gguf_find(const gguf_file *f, const char *key)
{
    for (uint64_t i = 0; i < f->n_kv; i++)
        if (f->kv[i].key && strcmp(f->kv[i].key, key) == 0)
            return &f->kv[i];
    return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name)
{
    uint64_t lo = 0, hi = f->n_tensors;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        const gguf_tensor *t = &f->tensors[f->tensor_index[mid]];
        int c = strcmp(t->name, name);
        if (c == 0)
            return t;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

uint64_t gguf_tensor_nelements(const gguf_tensor *t)
{
    return (uint64_t)t->ne[0] * (uint64_t)t->ne[1] * (uint64_t)t->ne[2] * (uint64_t)t->ne[3];
}

static int is_int_type(gguf_vtype t)
{
    return t == GGUF_U8 || t == GGUF_I8 || t == GGUF_U16 || t == GGUF_I16 || t == GGUF_U32 ||
           t == GGUF_I32 || t == GGUF_U64 || t == GGUF_I64;
}

static const gguf_kv *find_typed(const gguf_file *f, const char *key, llm_err *err)
{
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv)
        llm_errf(err, "%s: missing metadata key '%s'", f->path, key);
    return kv;
}

static int wrong_type(const gguf_file *f, const gguf_kv *kv, const char *want, llm_err *err)
{
    return llm_errf(err, "%s: offset %llu: %s: expected %s, got %s", f->path, (unsigned long long)kv->offset,
                    kv->key, want, gguf_vtype_name(kv->type));
}

int gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out, llm_err *err)
{
    const gguf_kv *kv = find_typed(f, key, err);
    if (!kv)
        return -1;
    if (!is_int_type(kv->type))
        return wrong_type(f, kv, "an integer", err);
    if (is_signed(kv->type) && kv->v.i64 < 0)
        return llm_errf(err, "%s: %s: negative value %lld", f->path, key, (long long)kv->v.i64);
    *out = kv->v.u64;
    return 0;
}

int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out, llm_err *err)
{
    uint64_t v;
    if (gguf_get_u64(f, key, &v, err))
        return -1;
    if (v > UINT32_MAX)
        return llm_errf(err, "%s: %s: value %llu too large", f->path, key, (unsigned long long)v);
    *out = (uint32_t)v;
    return 0;
}

int gguf_get_f32(const gguf_file *f, const char *key, float *out, llm_err *err)
{
    const gguf_kv *kv = find_typed(f, key, err);
    if (!kv)
        return -1;
    if (kv->type == GGUF_F32 || kv->type == GGUF_F64)
        *out = (float)kv->v.f64;
    else if (is_int_type(kv->type))
        *out = is_signed(kv->type) ? (float)kv->v.i64 : (float)kv->v.u64;
    else
        return wrong_type(f, kv, "a number", err);
    if (!isfinite(*out))
        return llm_errf(err, "%s: %s: value is not finite", f->path, key);
    return 0;
}

int gguf_get_bool(const gguf_file *f, const char *key, bool *out, llm_err *err)
{
    const gguf_kv *kv = find_typed(f, key, err);
    if (!kv)
        return -1;
    if (kv->type != GGUF_BOOL && !is_int_type(kv->type))
        return wrong_type(f, kv, "a bool", err);
    *out = kv->v.u64 != 0;
    return 0;
}

char *gguf_get_str(const gguf_file *f, const char *key, llm_err *err)
{
    const gguf_kv *kv = find_typed(f, key, err);
    if (!kv)
        return NULL;
    if (kv->type != GGUF_STRING) {
        wrong_type(f, kv, "a string", err);
        return NULL;
    }
    return llm_xstrndup(kv->v.str.ptr, kv->v.str.len);
}

int gguf_get_u32_or(const gguf_file *f, const char *key, uint32_t def, uint32_t *out, llm_err *err)
{
    if (!gguf_find(f, key)) {
        *out = def;
        return 0;
    }
    return gguf_get_u32(f, key, out, err);
}

int gguf_get_f32_or(const gguf_file *f, const char *key, float def, float *out, llm_err *err)
{
    if (!gguf_find(f, key)) {
        *out = def;
        return 0;
    }
    return gguf_get_f32(f, key, out, err);
}

int gguf_get_bool_or(const gguf_file *f, const char *key, bool def, bool *out, llm_err *err)
{
    if (!gguf_find(f, key)) {
        *out = def;
        return 0;
    }
    return gguf_get_bool(f, key, out, err);
}

int64_t gguf_arr_i64(const gguf_kv *kv, uint64_t i)
{
    size_t n = gguf_vtype_size(kv->arr_type);
    const uint8_t *p = (const uint8_t *)kv->arr_data + i * n;
    if (kv->arr_type == GGUF_F32 || kv->arr_type == GGUF_F64) {
        double d = gguf_arr_f64(kv, i); /* saturate: the file may hold anything */
        if (!(d == d))
            return 0;
        return d >= 9.2e18 ? INT64_MAX : d <= -9.2e18 ? INT64_MIN : (int64_t)d;
    }
    uint64_t raw = rd_le(p, (int)n);
    return is_signed(kv->arr_type) ? (int64_t)sign_extend(raw, n) : (int64_t)raw;
}

double gguf_arr_f64(const gguf_kv *kv, uint64_t i)
{
    size_t n = gguf_vtype_size(kv->arr_type);
    const uint8_t *p = (const uint8_t *)kv->arr_data + i * n;
    if (kv->arr_type == GGUF_F32) {
        uint32_t u = (uint32_t)rd_le(p, 4);
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    if (kv->arr_type == GGUF_F64) {
        uint64_t u = rd_le(p, 8);
        double d;
        memcpy(&d, &u, 8);
        return d;
    }
    return (double)gguf_arr_i64(kv, i);
}
