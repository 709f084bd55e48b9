/* util — shared helpers: errors, checked allocation, byte buffers, clock, byte counts. */
#include "util/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int llm_errf(llm_err *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int llm_err_prefix(llm_err *err, const char *fmt, ...)
{
    if (!err)
        return -1;
    char prefix[256], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    size_t n = strlen(prefix);
    memcpy(err->msg, prefix, n);
    memcpy(err->msg + n, ": ", 2);
    size_t room = sizeof err->msg - n - 3;
    size_t ol = strnlen(old, room);
    memcpy(err->msg + n + 2, old, ol);
    err->msg[n + 2 + ol] = 0;
    return -1;
}

static void *check_alloc(void *p, size_t n)
{
    if (!p && n) {
        fprintf(stderr, "llmap: out of memory allocating %zu bytes\n", n);
        abort();
    }
    return p;
}

void *llm_xmalloc(size_t n) { return check_alloc(malloc(n ? n : 1), n); }
void *llm_xcalloc(size_t n, size_t size) { return check_alloc(calloc(n ? n : 1, size ? size : 1), n * size); }
void *llm_xrealloc(void *p, size_t n) { return check_alloc(realloc(p, n ? n : 1), n); }
char *llm_xstrdup(const char *s) { return llm_xstrndup(s, strlen(s)); }

char *llm_xstrndup(const char *s, size_t n)
{
    char *d = llm_xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

static void buf_reserve(llm_buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1)
        cap *= 2;
    b->data = llm_xrealloc(b->data, cap);
    b->cap = cap;
}

void llm_buf_append(llm_buf *b, const void *p, size_t n)
{
    buf_reserve(b, n);
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
}

void llm_buf_puts(llm_buf *b, const char *s) { llm_buf_append(b, s, strlen(s)); }

void llm_buf_printf(llm_buf *b, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n > 0) {
        buf_reserve(b, (size_t)n);
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
        b->len += (size_t)n;
    }
    va_end(ap2);
}

const char *llm_buf_cstr(llm_buf *b)
{
    buf_reserve(b, 0);
    b->data[b->len] = 0;
    return b->data;
}

void llm_buf_append_file(llm_buf *b, FILE *f)
{
    char chunk[16384]; /* small enough for any thread's stack */
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        llm_buf_append(b, chunk, n);
}

void llm_buf_free(llm_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

double llm_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void llm_human_bytes(char *buf, size_t n, double bytes)
{
    static const char *const unit[] = {"B", "KB", "MB", "GB", "TB"};
    int i = 0;
    while (bytes >= 1000 && i < 4)
        bytes /= 1000, i++;
    snprintf(buf, n, i ? "%.1f %s" : "%.0f %s", bytes, unit[i]);
}

/* ---- random numbers (xoshiro256**; next and splitmix64 are inline in util.h) ---- */

void llm_rng_seed(llm_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = llm_splitmix64(&x);
}

double llm_rng_uniform(llm_rng *r)
{
    return (double)(llm_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

int llm_pwrite_all(int fd, const void *p, size_t n, uint64_t off)
{
    const uint8_t *src = p;
    for (size_t done = 0; done < n;) {
        ssize_t w = pwrite(fd, src + done, n - done, (off_t)(off + done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            return -1;
        }
        done += (size_t)w;
    }
    return 0;
}
