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

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
