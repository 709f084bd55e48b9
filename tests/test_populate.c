/*
 * Cold load tests (src/mem/populate.c): a mapping of an evicted file is detected as cold and
 * read in completely — every page resident (mincore), with the file's bytes — while a warm one
 * is left alone; a half-warm file is completed; a sub-range populates that range (two readers
 * or one); --no-mmap copies are never touched.
 *
 * Eviction is posix_fadvise(DONTNEED) on a file only this test maps; if the kernel keeps the
 * pages anyway (some filesystems), the cold checks skip loudly rather than pass vacuously.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "mem/mem.h"

/* Over one populate chunk (32 MiB), so the two readers both work, and not page aligned. */
#define FILE_SIZE ((40u << 20) + 1234u)

static uint8_t pattern(uint64_t i) { return (uint8_t)(i * 131 + (i >> 12) + 7); }

static char *make_file(uint32_t size)
{
    static char path[64];
    strcpy(path, "/tmp/llmap-test-populate-XXXXXX");
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    enum { BUF = 1 << 20 };
    uint8_t *buf = malloc(BUF);
    for (uint32_t done = 0; done < size;) {
        uint32_t n = size - done < BUF ? size - done : BUF;
        for (uint32_t i = 0; i < n; i++)
            buf[i] = pattern(done + i);
        CHECK(write(fd, buf, n) == (ssize_t)n);
        done += n;
    }
    fsync(fd); /* dirty pages cannot be evicted */
    close(fd);
    free(buf);
    return path;
}

static void evict(const char *path)
{
    int fd = open(path, O_RDONLY);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
}

/* Opens the evicted file; false (after a loud skip) when the kernel would not evict it. */
static bool open_cold(const char *path, llm_map *m)
{
    llm_err err;
    evict(path);
    CHECK_MSG(llm_map_open(m, path, NULL, &err) == 0, "%s", err.msg);
    uint64_t res = llm_map_resident(m, 0, m->size);
    if (res > m->size / 20) {
        SKIP("the page cache kept %llu of %llu bytes after POSIX_FADV_DONTNEED", (unsigned long long)res,
             (unsigned long long)m->size);
        llm_map_close(m);
        return false;
    }
    return true;
}

static void test_cold_then_warm(const char *path)
{
    llm_map m;
    if (!open_cold(path, &m))
        return;
    llm_populate_report rep;
    CHECK(llm_map_populate(&m, false, &rep) == 0);
    CHECK(rep.cold);
    CHECK_MSG(rep.resident_before < 0.05, "resident before: %.2f", rep.resident_before);
    CHECK_EQ_INT(rep.bytes, FILE_SIZE);
    CHECK(rep.seconds > 0);
    CHECK_EQ_INT(llm_map_resident(&m, 0, m.size), FILE_SIZE);

    int same = 1;
    for (uint64_t i = 0; i < m.size; i += 4096)
        same &= m.base[i] == pattern(i);
    same &= m.base[m.size - 1] == pattern(m.size - 1);
    CHECK_MSG(same, "bytes read through the mapping differ from the file");

    /* Warm now: a second call reads nothing. */
    CHECK(llm_map_populate(&m, false, &rep) == 0);
    CHECK(!rep.cold);
    CHECK(rep.resident_before >= 0.95);
    CHECK_EQ_INT(rep.bytes, 0);
    llm_map_close(&m);
}

static void test_half_warm(const char *path)
{
    llm_map m;
    if (!open_cold(path, &m))
        return;
    volatile uint8_t sink = 0;
    for (uint64_t i = 0; i < m.size / 2; i += 4096)
        sink ^= m.base[i];
    (void)sink;
    llm_populate_report rep;
    CHECK(llm_map_populate(&m, false, &rep) == 0);
    CHECK_MSG(rep.cold && rep.resident_before > 0.3 && rep.resident_before < 0.95, "half warm: %.2f resident, cold %d",
              rep.resident_before, rep.cold);
    CHECK_EQ_INT(llm_map_resident(&m, 0, m.size), FILE_SIZE);
    CHECK(llm_map_populate(&m, false, NULL) == 0); /* no report wanted */
    llm_map_close(&m);
}

static void test_range(const char *path)
{
    llm_map m;
    if (!open_cold(path, &m))
        return;
    uint64_t off = (8u << 20) + 100, len = (3u << 20) + 123;
    llm_map_populate_range(&m, off, len, 1);
    CHECK_EQ_INT(llm_map_resident(&m, off, len), len);
    evict(path); /* (mapped pages stay: the range is still resident) */
    CHECK_EQ_INT(llm_map_resident(&m, off, len), len);
    uint64_t off2 = 20u << 20, len2 = 17u << 20;
    llm_map_populate_range(&m, off2, len2, 2);
    CHECK_EQ_INT(llm_map_resident(&m, off2, len2), len2);
    int same = 1;
    for (uint64_t i = off2; i < off2 + len2; i += 4093)
        same &= m.base[i] == pattern(i);
    CHECK(same);
    /* out of range and empty: nothing happens, nothing breaks */
    llm_map_populate_range(&m, m.size + 10, 100, 2);
    llm_map_populate_range(&m, 0, 0, 2);
    llm_map_populate_range(&m, m.size - 10, 1000, 2);
    CHECK_EQ_INT(llm_map_resident(&m, m.size - 10, 10), 10);
    llm_map_close(&m);
}

static void test_read_mode(const char *path)
{
    llm_map m;
    llm_err err;
    llm_map_opts o = {.mode = LLM_MAP_READ};
    CHECK_MSG(llm_map_open(&m, path, &o, &err) == 0, "%s", err.msg);
    llm_populate_report rep;
    CHECK(llm_map_populate(&m, true, &rep) == 0);
    CHECK(!rep.cold);
    CHECK_EQ_INT(rep.bytes, 0);
    llm_map_close(&m);
}

int main(void)
{
    char *path = make_file(FILE_SIZE);
    test_cold_then_warm(path);
    test_half_warm(path);
    test_range(path);
    test_read_mode(path);
    unlink(path);
    TEST_END("populate");
}
