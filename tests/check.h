/*
 * check — the test harness: CHECK-style assertions that count instead of aborting, so one
 * run reports every failure. Each test program ends with TEST_END, which prints
 * "<name>: N passed, N failed[, N skipped]" and exits non-zero on any failure;
 * tools/run-tests.sh adds the lines up.
 *
 * Skips are never passes: a test that cannot run says why with SKIP(); when the environment
 * promises the shared data (LLMAP_REQUIRE_SHARED=1, as CI sets it), a skip counts as a failure.
 */
#ifndef LLMAP_TEST_CHECK_H
#define LLMAP_TEST_CHECK_H

#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int check_passed, check_failed, check_skipped;

#define CHECK(cond) check_report(!!(cond), __FILE__, __LINE__, "%s", #cond)
#define CHECK_MSG(cond, ...) check_report(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
#define CHECK_EQ_INT(a, b)                                                                               \
    do {                                                                                                 \
        long long a_ = (long long)(a), b_ = (long long)(b);                                               \
        check_report(a_ == b_, __FILE__, __LINE__, "%s == %s (%lld vs %lld)", #a, #b, a_, b_);           \
    } while (0)
#define CHECK_EQ_STR(a, b)                                                                               \
    do {                                                                                                 \
        const char *a_ = (a), *b_ = (b);                                                                 \
        check_report(a_ && b_ && strcmp(a_, b_) == 0, __FILE__, __LINE__, "%s == %s (\"%s\" vs \"%s\")", \
                     #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");                                     \
    } while (0)
#define CHECK_NEAR(a, b, tol)                                                                            \
    do {                                                                                                 \
        double a_ = (a), b_ = (b);                                                                       \
        check_report(fabs(a_ - b_) <= (tol), __FILE__, __LINE__, "%s ~ %s (%.9g vs %.9g, tol %g)", #a,   \
                     #b, a_, b_, (double)(tol));                                                         \
    } while (0)
/* Substring check, for error messages. */
#define CHECK_CONTAINS(hay, needle)                                                                      \
    do {                                                                                                 \
        const char *h_ = (hay), *n_ = (needle);                                                          \
        check_report(h_ && strstr(h_, n_) != NULL, __FILE__, __LINE__, "\"%s\" contains \"%s\"",         \
                     h_ ? h_ : "(null)", n_);                                                            \
    } while (0)

__attribute__((format(printf, 4, 5))) static inline void check_report(int ok, const char *file, int line,
                                                                     const char *fmt, ...)
{
    if (ok) {
        check_passed++;
        return;
    }
    check_failed++;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "FAIL %s:%d: ", file, line);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* Records a skip with its reason; a failure when shared data is required. */
#define SKIP(...)                                                                                        \
    do {                                                                                                 \
        fprintf(stderr, "SKIP %s:%d: ", __FILE__, __LINE__);                                             \
        fprintf(stderr, __VA_ARGS__);                                                                    \
        fputc('\n', stderr);                                                                             \
        if (getenv("LLMAP_REQUIRE_SHARED") && atoi(getenv("LLMAP_REQUIRE_SHARED")))                      \
            check_failed++;                                                                              \
        else                                                                                             \
            check_skipped++;                                                                             \
    } while (0)

/* Path of the shared test data (../shared beside the project root), or NULL when absent. */
static inline const char *shared_dir(void)
{
    const char *d = getenv("LLMAP_SHARED");
    if (!d)
        d = "../shared";
    static char probe[4096];
    snprintf(probe, sizeof probe, "%s/README.md", d);
    FILE *f = fopen(probe, "r");
    if (!f)
        return NULL;
    fclose(f);
    return d;
}

/* Path of the llmap binary under test (tools/run-tests.sh sets LLMAP_BIN). */
static inline const char *llmap_bin(void)
{
    const char *b = getenv("LLMAP_BIN");
    return b ? b : "./llmap";
}

/* The whole file, NUL-terminated after its *len bytes (len may be NULL), or NULL when it cannot
 * be opened or read. */
static inline char *test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t n = 0, cap = 1 << 16, r;
    char *buf = malloc(cap);
    while (buf && (r = fread(buf + n, 1, cap - 1 - n, f)) > 0) {
        n += r;
        if (n == cap - 1) {
            char *grown = realloc(buf, cap *= 2);
            if (!grown)
                free(buf);
            buf = grown;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    if (len)
        *len = n;
    return buf;
}

/* ---- data files for the mapping tests ---- */

/* Creates a temporary file from the mkstemp template `path` (ends in XXXXXX, rewritten in
 * place) holding byte_at(i) for i in [0, size), written 1 MiB at a time and fsync'd: dirty
 * pages cannot be evicted. Returns 0, or -1 when the file could not be created or written. */
static inline int test_file_write(char *path, uint64_t size, uint8_t (*byte_at)(uint64_t i))
{
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    enum { BUF = 1 << 20 };
    uint8_t *buf = malloc(BUF);
    int rc = buf ? 0 : -1;
    for (uint64_t done = 0; rc == 0 && done < size;) {
        size_t n = size - done < BUF ? (size_t)(size - done) : BUF;
        for (size_t i = 0; i < n; i++)
            buf[i] = byte_at(done + i);
        if (write(fd, buf, n) != (ssize_t)n)
            rc = -1;
        done += n;
    }
    fsync(fd);
    close(fd);
    free(buf);
    return rc;
}

/* Drops a file's (clean) pages from the page cache, so the next access reads the disk. */
static inline void test_file_evict(const char *path)
{
    int fd = open(path, O_RDONLY);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
}

/* Whether base[i] == byte_at(i) for i = from, from + step, ... below to: a sampled comparison of
 * mapped bytes against the pattern the file was written with. */
static inline bool test_bytes_match(const uint8_t *base, uint64_t from, uint64_t to, uint64_t step,
                                    uint8_t (*byte_at)(uint64_t i))
{
    bool same = true;
    for (uint64_t i = from; i < to; i += step)
        same &= base[i] == byte_at(i);
    return same;
}

#define TEST_END(name)                                                                                   \
    do {                                                                                                 \
        if (check_skipped)                                                                               \
            printf("%s: %d passed, %d failed, %d skipped\n", name, check_passed, check_failed,           \
                   check_skipped);                                                                       \
        else                                                                                             \
            printf("%s: %d passed, %d failed\n", name, check_passed, check_failed);                      \
        return check_failed ? 1 : 0;                                                                     \
    } while (0)

#endif
