/*
 * GGUF writer: collects metadata and tensor declarations, then writes the file in one pass
 * (header, kv pairs, tensor infos, aligned data) to a temporary file that is fsynced and
 * renamed into place, so a reader never sees a half-written model.
 *
 * Tensor bytes are either given up front or produced by a fill callback one tensor at a
 * time, which keeps memory bounded when writing multi-gigabyte synthetic or quantized models.
 *
 * The bytes reach the file in 8 MiB writes at 8 MiB-aligned offsets. The page cache then
 * keeps the new file in large folios, which a later mapping maps 2 MiB at a time: a model
 * just written this way starts answering in 0.17 s instead of 0.33 s when written through
 * stdio (1.1B Q4_0, `run Hello --num-predict 1`, measured; unaligned 8 MiB writes: 0.22 s).
 */
#include "gguf/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct wtensor {
    char *name;
    llm_type type;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint64_t size, offset;
    const void *data;
} wtensor;

struct gguf_writer {
    uint32_t alignment;
    llm_buf kv;        /* serialized kv pairs */
    uint64_t n_kv;
    wtensor *t;
    uint64_t n_t, cap_t;
    uint64_t data_size;
};

gguf_writer *gguf_writer_new(uint32_t alignment)
{
    gguf_writer *w = llm_xcalloc(1, sizeof *w);
    w->alignment = alignment ? alignment : GGUF_DEFAULT_ALIGNMENT;
    if (alignment && alignment != GGUF_DEFAULT_ALIGNMENT)
        gguf_w_u32(w, "general.alignment", alignment);
    return w;
}

void gguf_writer_free(gguf_writer *w)
{
    if (!w)
        return;
    for (uint64_t i = 0; i < w->n_t; i++)
        free(w->t[i].name);
    free(w->t);
    llm_buf_free(&w->kv);
    free(w);
}

static void put_le(llm_buf *b, uint64_t v, int n)
{
    uint8_t tmp[8];
    for (int i = 0; i < n; i++)
        tmp[i] = (uint8_t)(v >> (8 * i));
    llm_buf_append(b, tmp, (size_t)n);
}

static void put_str(llm_buf *b, const char *s, uint64_t len)
{
    put_le(b, len, 8);
    llm_buf_append(b, s, len);
}

static void put_key(gguf_writer *w, const char *key, gguf_vtype t)
{
    put_str(&w->kv, key, strlen(key));
    put_le(&w->kv, t, 4);
    w->n_kv++;
}

void gguf_w_u32(gguf_writer *w, const char *key, uint32_t v)
{
    put_key(w, key, GGUF_U32);
    put_le(&w->kv, v, 4);
}

void gguf_w_i32(gguf_writer *w, const char *key, int32_t v)
{
    put_key(w, key, GGUF_I32);
    put_le(&w->kv, (uint32_t)v, 4);
}

void gguf_w_u64(gguf_writer *w, const char *key, uint64_t v)
{
    put_key(w, key, GGUF_U64);
    put_le(&w->kv, v, 8);
}

void gguf_w_f32(gguf_writer *w, const char *key, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    put_key(w, key, GGUF_F32);
    put_le(&w->kv, u, 4);
}

void gguf_w_bool(gguf_writer *w, const char *key, bool v)
{
    put_key(w, key, GGUF_BOOL);
    put_le(&w->kv, v ? 1 : 0, 1);
}

void gguf_w_str(gguf_writer *w, const char *key, const char *v)
{
    put_key(w, key, GGUF_STRING);
    put_str(&w->kv, v, strlen(v));
}

void gguf_w_arr(gguf_writer *w, const char *key, gguf_vtype t, const void *data, uint64_t n)
{
    put_key(w, key, GGUF_ARRAY);
    put_le(&w->kv, t, 4);
    put_le(&w->kv, n, 8);
    llm_buf_append(&w->kv, data, n * gguf_vtype_size(t));
}

void gguf_w_arr_str(gguf_writer *w, const char *key, const char *const *strs, uint64_t n)
{
    put_key(w, key, GGUF_ARRAY);
    put_le(&w->kv, GGUF_STRING, 4);
    put_le(&w->kv, n, 8);
    for (uint64_t i = 0; i < n; i++)
        put_str(&w->kv, strs[i], strlen(strs[i]));
}

void gguf_w_copy_kv(gguf_writer *w, const gguf_kv *kv)
{
    put_key(w, kv->key, kv->type);
    size_t sz = gguf_vtype_size(kv->type);
    if (kv->type == GGUF_STRING) {
        put_str(&w->kv, kv->v.str.ptr, kv->v.str.len);
    } else if (kv->type == GGUF_ARRAY) {
        put_le(&w->kv, kv->arr_type, 4);
        put_le(&w->kv, kv->arr_n, 8);
        if (kv->arr_type == GGUF_STRING)
            for (uint64_t i = 0; i < kv->arr_n; i++)
                put_str(&w->kv, kv->arr_str[i].ptr, kv->arr_str[i].len);
        else
            llm_buf_append(&w->kv, kv->arr_data, kv->arr_n * gguf_vtype_size(kv->arr_type));
    } else if (kv->type == GGUF_F32) {
        float f = (float)kv->v.f64;
        uint32_t u;
        memcpy(&u, &f, 4);
        put_le(&w->kv, u, 4);
    } else if (kv->type == GGUF_F64) {
        uint64_t u;
        memcpy(&u, &kv->v.f64, 8);
        put_le(&w->kv, u, 8);
    } else {
        put_le(&w->kv, kv->v.u64, (int)sz);
    }
}

int gguf_w_tensor(gguf_writer *w, const char *name, llm_type type, uint32_t n_dims, const int64_t *ne,
                  const void *data, llm_err *err)
{
    const llm_type_info *ti = llm_type_get(type);
    if (!ti)
        return llm_errf(err, "tensor '%s': unknown type %d", name, (int)type);
    if (n_dims == 0 || n_dims > GGUF_MAX_DIMS)
        return llm_errf(err, "tensor '%s': %u dimensions", name, n_dims);
    wtensor t = {.name = llm_xstrdup(name), .type = type, .n_dims = n_dims, .data = data};
    uint64_t nel = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        t.ne[d] = d < (int)n_dims ? ne[d] : 1;
        nel *= (uint64_t)t.ne[d];
    }
    if (t.ne[0] % ti->blck) {
        free(t.name);
        return llm_errf(err, "tensor '%s': row length %lld is not a multiple of the %s block size %u", name,
                        (long long)t.ne[0], ti->name, ti->blck);
    }
    t.size = nel / ti->blck * ti->size;
    t.offset = (w->data_size + w->alignment - 1) / w->alignment * w->alignment;
    w->data_size = t.offset + t.size;
    if (w->n_t == w->cap_t) {
        w->cap_t = w->cap_t ? w->cap_t * 2 : 64;
        w->t = llm_xrealloc(w->t, w->cap_t * sizeof *w->t);
    }
    w->t[w->n_t++] = t;
    return 0;
}

/* The temporary file being written, through a buffer flushed at OUT_CHUNK-aligned offsets. */
#define OUT_CHUNK (8u << 20)

typedef struct out_file {
    int fd;
    const char *path;
    uint8_t *buf; /* OUT_CHUNK bytes, holding file offsets [pos, pos + len) */
    size_t len;
    uint64_t pos;
} out_file;

static int out_flush(out_file *o, llm_err *err)
{
    if (llm_pwrite_all(o->fd, o->buf, o->len, o->pos))
        return llm_errf(err, "%s: write failed: %s", o->path, strerror(errno));
    o->pos += o->len;
    o->len = 0;
    return 0;
}

static int write_all(out_file *o, const void *p, size_t n, llm_err *err)
{
    const uint8_t *src = p;
    while (n) {
        size_t take = OUT_CHUNK - o->len < n ? OUT_CHUNK - o->len : n;
        memcpy(o->buf + o->len, src, take);
        o->len += take;
        src += take;
        n -= take;
        if (o->len == OUT_CHUNK && out_flush(o, err))
            return -1;
    }
    return 0;
}

static int write_padding(out_file *o, uint64_t pos, uint32_t align, llm_err *err)
{
    static const uint8_t zeros[4096];
    uint64_t pad = (align - pos % align) % align;
    return write_all(o, zeros, (size_t)pad, err);
}

static void build_header(gguf_writer *w, llm_buf *h)
{
    put_le(h, GGUF_MAGIC, 4);
    put_le(h, 3, 4);
    put_le(h, w->n_t, 8);
    put_le(h, w->n_kv, 8);
    llm_buf_append(h, w->kv.data, w->kv.len);
    for (uint64_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        put_str(h, t->name, strlen(t->name));
        put_le(h, t->n_dims, 4);
        for (uint32_t d = 0; d < t->n_dims; d++)
            put_le(h, (uint64_t)t->ne[d], 8);
        put_le(h, t->type, 4);
        put_le(h, t->offset, 8);
    }
}

static int write_tensors(gguf_writer *w, out_file *o, gguf_tensor_fill fill, void *ctx, llm_err *err)
{
    void *buf = NULL;
    uint64_t pos = 0;
    int rc = 0;
    for (uint64_t i = 0; i < w->n_t && !rc; i++) {
        const wtensor *t = &w->t[i];
        rc = write_padding(o, pos, w->alignment, err);
        pos = t->offset;
        const void *src = t->data;
        if (!src && !rc) {
            if (!fill) {
                rc = llm_errf(err, "tensor '%s': no data and no fill callback", t->name);
                break;
            }
            free(buf);
            buf = malloc(t->size ? t->size : 1);
            if (!buf) {
                rc = llm_errf(err, "tensor '%s': out of memory for %llu bytes", t->name, (unsigned long long)t->size);
                break;
            }
            rc = fill(ctx, t->name, buf, t->size, err);
            src = buf;
        }
        if (!rc)
            rc = write_all(o, src, t->size, err);
        pos += t->size;
    }
    free(buf);
    return rc;
}

int gguf_writer_write(gguf_writer *w, const char *path, gguf_tensor_fill fill, void *ctx, llm_err *err)
{
    /* The file is written beside the target and renamed over it: never over a device, a
     * directory or a pipe (renaming over /dev/null as root would replace it with a file). */
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return llm_errf(err, "%s: exists and is not a regular file; give the path of a .gguf file to write", path);
    llm_buf tmp = {0};
    llm_buf_printf(&tmp, "%s.tmp.%d", path, (int)getpid());
    const char *tmp_path = llm_buf_cstr(&tmp);
    out_file o = {.fd = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666), .path = path};
    if (o.fd < 0) {
        llm_errf(err, "%s: cannot create: %s", tmp_path, strerror(errno));
        llm_buf_free(&tmp);
        return -1;
    }
    o.buf = llm_xmalloc(OUT_CHUNK);
    llm_buf h = {0};
    build_header(w, &h);
    int rc = write_all(&o, h.data, h.len, err);
    if (!rc)
        rc = write_padding(&o, h.len, w->alignment, err);
    llm_buf_free(&h);
    if (!rc)
        rc = write_tensors(w, &o, fill, ctx, err);
    if (!rc)
        rc = out_flush(&o, err);
    if (!rc && fsync(o.fd))
        rc = llm_errf(err, "%s: flush failed: %s", path, strerror(errno));
    if (close(o.fd) && !rc)
        rc = llm_errf(err, "%s: close failed: %s", path, strerror(errno));
    free(o.buf);
    if (!rc && rename(tmp_path, path))
        rc = llm_errf(err, "%s: rename failed: %s", path, strerror(errno));
    if (rc)
        unlink(tmp_path);
    llm_buf_free(&tmp);
    return rc;
}
