/*
 * util tests: llm_human_bytes, the byte counts `llmap list` and the pull progress print.
 * Expected strings are written out by hand from the format (decimal units of 1000, whole
 * bytes below 1 KB, one decimal from KB up, TB the largest unit), not produced by the code.
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "util/util.h"

static void test_human_bytes(void)
{
    static const struct { double bytes; const char *want; } cases[] = {
        {0, "0 B"},
        {999, "999 B"},
        {1000, "1.0 KB"},
        {1536, "1.5 KB"},
        {999949, "999.9 KB"},
        {1000000, "1.0 MB"},
        {176160768, "176.2 MB"},  /* 176.160768 MB */
        {4920000000.0, "4.9 GB"},
        {1e12, "1.0 TB"},
        {2.5e15, "2500.0 TB"},    /* no unit past TB */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char buf[32];
        llm_human_bytes(buf, sizeof buf, cases[i].bytes);
        CHECK_EQ_STR(buf, cases[i].want);
    }
    char small[4]; /* truncates, NUL-terminated */
    llm_human_bytes(small, sizeof small, 1536);
    CHECK_EQ_STR(small, "1.5");
}

int main(void)
{
    test_human_bytes();
    TEST_END("util");
}
