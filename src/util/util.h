/*
 * util — the few helpers every module shares: an error value that carries a message,
 * checked allocation, a growable byte buffer, a monotonic clock, byte counts for people and a
 * seedable random number generator.
 *
 * Errors travel as an llm_err filled by the function that failed, so the message can name
 * the file, offset and field at the place where that is known; callers only add context.
 */
#ifndef LLMAP_UTIL_H
#define LLMAP_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct llm_err {
    char msg[1024];
} llm_err;

/* Sets err->msg (err may be NULL) and returns -1 so callers can `return llm_errf(...)`. */
int llm_errf(llm_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefixes an existing message: "prefix: old message". Returns -1. */
int llm_err_prefix(llm_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Allocation that aborts with a message on exhaustion: out-of-memory for a few bytes of
 * bookkeeping is not a recoverable condition; large buffers use plain malloc and report. */
void *llm_xmalloc(size_t n);
void *llm_xcalloc(size_t n, size_t size);
void *llm_xrealloc(void *p, size_t n);
char *llm_xstrdup(const char *s);
char *llm_xstrndup(const char *s, size_t n);

/* A growable byte buffer, always NUL-terminated when len > 0 or after llm_buf_cstr. */
typedef struct llm_buf {
    char *data;
    size_t len, cap;
} llm_buf;

void llm_buf_append(llm_buf *b, const void *p, size_t n);
void llm_buf_puts(llm_buf *b, const char *s);
void llm_buf_printf(llm_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *llm_buf_cstr(llm_buf *b);
/* Appends everything left in f (to end of file or a read error; callers that care check ferror). */
void llm_buf_append_file(llm_buf *b, FILE *f);
void llm_buf_free(llm_buf *b);

/* Writes all n bytes at file offset off, retrying interrupted and short writes: 0, or -1 with
 * errno (EIO when the file takes no more). */
int llm_pwrite_all(int fd, const void *p, size_t n, uint64_t off);

/* Seconds from a monotonic clock. */
double llm_now(void);

/* A byte count for people, in decimal units like Ollama prints them: "512 B", "1.5 KB",
 * "4.2 GB" (one decimal from KB up; TB is the largest unit). Truncates to buf[n]. */
void llm_human_bytes(char *buf, size_t n, double bytes);

/* Random numbers: xoshiro256** (Blackman & Vigna) seeded through splitmix64, one generator for
 * the sampler (llm_rng_seed from the request's seed) and for synthetic weights (synth seeds a
 * stream per row from seed, tensor and row with llm_splitmix64). Next and splitmix are inline
 * because synth draws one number per weight of a whole model. */
typedef struct llm_rng {
    uint64_t s[4];
} llm_rng;

static inline uint64_t llm_rotl64(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}
/* Advances *x and returns its next splitmix64 output. */
static inline uint64_t llm_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static inline uint64_t llm_rng_next(llm_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = llm_rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = llm_rotl64(s[3], 45);
    return result;
}
/* The four state words from splitmix64 starting at seed. */
void llm_rng_seed(llm_rng *r, uint64_t seed);
/* Uniform in [0, 1) with 53 random bits. */
double llm_rng_uniform(llm_rng *r);

/* Checked arithmetic for sizes that come from untrusted input: return 0 on overflow. */
static inline int llm_mul_ok(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}
static inline int llm_add_ok(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

#endif
