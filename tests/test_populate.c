/*
 * Cold load tests (src/mem/populate.c): a mapping of an evicted file is detected as cold and
 * read in completely — every page resident (mincore), with the file's bytes — while a warm one
 * is left alone; a half-warm file is completed; a sub-range populates that range (two readers
 * or one); --no-mmap copies are never touched. The same read-in on a helper thread
 * (llm_map_populate_start): complete after the join, a skipped range left out, stoppable; a
 * warm file mapped on a helper thread (llm_map_map_in_start: page-table entries, read from
 * /proc/self/pagemap, for every page but a skipped range's), stoppable; and llm_mem_commit makes an anonymous buffer's pages present without changing its bytes.
 *
 * Eviction is posix_fadvise(DONTNEED) on a file only this test maps; if the kernel keeps the
 * pages anyway (some filesystems), the cold checks skip loudly rather than pass vacuously.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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
    CHECK(test_file_write(path, size, pattern) == 0);
    return path;
}

/* Opens the evicted file; false (after a loud skip) when the kernel would not evict it. */
static bool open_cold(const char *path, llm_map *m)
{
    llm_err err;
    test_file_evict(path);
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

    CHECK_MSG(test_bytes_match(m.base, 0, m.size, 4096, pattern) && m.base[m.size - 1] == pattern(m.size - 1),
              "bytes read through the mapping differ from the file");

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
    test_file_evict(path); /* (mapped pages stay: the range is still resident) */
    CHECK_EQ_INT(llm_map_resident(&m, off, len), len);
    uint64_t off2 = 20u << 20, len2 = 17u << 20;
    llm_map_populate_range(&m, off2, len2, 2);
    CHECK_EQ_INT(llm_map_resident(&m, off2, len2), len2);
    CHECK(test_bytes_match(m.base, off2, off2 + len2, 4093, pattern));
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

/* The read-in on a helper thread: the verdict comes at once, and after the join every page is
 * resident with the file's bytes; a warm file starts no thread. */
static void test_background(const char *path)
{
    llm_map m;
    if (!open_cold(path, &m))
        return;
    llm_populate_report rep;
    llm_populate *p = llm_map_populate_start(&m, NULL, &rep);
    CHECK(p != NULL);
    CHECK(rep.cold);
    CHECK_MSG(rep.resident_before < 0.05, "resident before: %.2f", rep.resident_before);
    CHECK_EQ_INT(rep.wanted, FILE_SIZE);
    llm_populate_finish(p, false, &rep);
    CHECK_EQ_INT(rep.bytes, FILE_SIZE);
    CHECK(rep.seconds > 0);
    CHECK_EQ_INT(llm_map_resident(&m, 0, m.size), FILE_SIZE);
    CHECK_MSG(test_bytes_match(m.base, 0, m.size, 4096, pattern), "bytes read through the mapping differ from the file");

    CHECK(llm_map_populate_start(&m, NULL, &rep) == NULL); /* warm now */
    CHECK(!rep.cold && rep.bytes == 0);
    llm_populate_finish(NULL, true, NULL); /* no-op */
    llm_map_close(&m);
}

/* A skipped range is neither read nor counted; stopping at once ends the reader early. */
static void test_background_skip_and_stop(const char *path)
{
    llm_map m;
    if (!open_cold(path, &m))
        return;
    llm_range skip = {(4u << 20) + 4096, 28u << 20}; /* page aligned, so residency is exact */
    llm_populate_report rep;
    llm_populate *p = llm_map_populate_start(&m, &skip, &rep);
    CHECK(p != NULL);
    CHECK_EQ_INT(rep.wanted, FILE_SIZE - skip.len);
    llm_populate_finish(p, false, &rep);
    CHECK_EQ_INT(rep.bytes, FILE_SIZE - skip.len);
    CHECK_EQ_INT(llm_map_resident(&m, 0, skip.off), skip.off);
    uint64_t tail = skip.off + skip.len;
    CHECK_EQ_INT(llm_map_resident(&m, tail, m.size - tail), m.size - tail);
    /* The kernel's read-ahead runs on past the skip's start (up to 2 windows of read_ahead_kb,
     * 8 MiB here: 11 MiB seen), but a reader that did not skip would leave all of it resident. */
    uint64_t in_skip = llm_map_resident(&m, skip.off, skip.len);
    CHECK_MSG(in_skip < skip.len, "all %llu skipped bytes were read", (unsigned long long)skip.len);
    llm_map_close(&m);

    /* Stopped right after the start, the reader ends after the read in progress (8 MiB of the
     * 40): short of the file. A descheduled test thread could let it finish first, so up to
     * three tries. */
    bool stopped_early = false;
    for (int t = 0; t < 3 && !stopped_early; t++) {
        if (!open_cold(path, &m))
            return;
        p = llm_map_populate_start(&m, NULL, &rep);
        CHECK(p != NULL);
        llm_populate_finish(p, true, &rep);
        CHECK_EQ_INT(rep.wanted, FILE_SIZE);
        stopped_early = rep.bytes < rep.wanted;
        llm_map_close(&m);
    }
    CHECK_MSG(stopped_early, "a stopped reader read the whole file, three times");
}

/* Pages of [off, off+len) of this process's address space that have a page-table entry
 * (/proc/self/pagemap bit 63, readable without privileges), unlike mincore, which also counts
 * pages that are only in the page cache. -1 when pagemap cannot be read. */
static int64_t mapped_pages(const void *p, uint64_t len)
{
    int fd = open("/proc/self/pagemap", O_RDONLY);
    if (fd < 0)
        return -1;
    const uint64_t ps = 4096, first = (uintptr_t)p / ps, n = (len + ps - 1) / ps;
    int64_t present = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t e;
        if (pread(fd, &e, sizeof e, (off_t)((first + i) * sizeof e)) != (ssize_t)sizeof e) {
            present = -1;
            break;
        }
        present += (int64_t)(e >> 63);
    }
    close(fd);
    return present;
}

/* A warm file is mapped by a helper thread: no page of a fresh mapping has a page-table entry
 * before, every one outside the skipped range has one after the join (the read-in would have
 * left them unmapped: it reads around the mapping), the middle of the skipped range still has
 * none (its edges may be mapped by fault-around), and the bytes are the file's. Stopping at
 * once ends it early; READ mode starts nothing. */
static void test_map_in(const char *path)
{
    const uint64_t ps = 4096;
    llm_map m;
    llm_err err;
    int fd = open(path, O_RDONLY); /* warm the page cache: the whole file read once */
    uint8_t *buf = malloc(1u << 20);
    while (read(fd, buf, 1u << 20) > 0)
        ;
    free(buf);
    close(fd);
    CHECK_MSG(llm_map_open(&m, path, NULL, &err) == 0, "%s", err.msg);
    int64_t before = mapped_pages(m.base, m.size);
    if (before < 0) {
        SKIP("/proc/self/pagemap not readable: map-in not checked");
        llm_map_close(&m);
        return;
    }
    CHECK_MSG(before < 64, "%lld pages mapped before any use", (long long)before);
    llm_range skip = {16u << 20, 12u << 20};
    llm_populate *p = llm_map_map_in_start(&m, &skip);
    CHECK(p != NULL);
    llm_populate_report rep;
    llm_populate_finish(p, false, &rep);
    CHECK(!rep.cold);
    CHECK_EQ_INT(rep.wanted, FILE_SIZE - skip.len);
    CHECK_EQ_INT(rep.bytes, FILE_SIZE - skip.len);
    uint64_t tail = skip.off + skip.len;
    CHECK_EQ_INT(mapped_pages(m.base, skip.off), skip.off / ps);
    CHECK_EQ_INT(mapped_pages(m.base + tail, m.size - tail), (m.size - tail + ps - 1) / ps);
    const uint64_t edge = 4u << 20; /* beyond fault-around and a PMD-sized folio either side */
    CHECK_EQ_INT(mapped_pages(m.base + skip.off + edge, skip.len - 2 * edge), 0);
    CHECK_MSG(test_bytes_match(m.base, 0, m.size, 4093, pattern), "bytes read through the mapping differ from the file");
    llm_map_close(&m);

    bool stopped_early = false; /* 4 MiB pieces of 40 MiB: a stop at once ends well short */
    for (int t = 0; t < 3 && !stopped_early; t++) {
        CHECK_MSG(llm_map_open(&m, path, NULL, &err) == 0, "%s", err.msg);
        p = llm_map_map_in_start(&m, NULL);
        CHECK(p != NULL);
        llm_populate_finish(p, true, &rep);
        CHECK_EQ_INT(rep.wanted, FILE_SIZE);
        stopped_early = rep.bytes < rep.wanted;
        llm_map_close(&m);
    }
    CHECK_MSG(stopped_early, "a stopped map-in mapped the whole file, three times");

    llm_map_opts o = {.mode = LLM_MAP_READ};
    CHECK_MSG(llm_map_open(&m, path, &o, &err) == 0, "%s", err.msg);
    CHECK(llm_map_map_in_start(&m, NULL) == NULL);
    llm_map_close(&m);
}

/* llm_mem_commit: every page of the buffer present afterwards (mincore on the anonymous pages,
 * none present before), contents kept, odd sizes and offsets (partial pages at both ends). */
static void test_commit(void)
{
    const size_t ps = 4096, n = (8u << 20) + 123;
    uint8_t *raw = mmap(NULL, n + 2 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(raw != MAP_FAILED);
    if (raw == MAP_FAILED)
        return;
    size_t pages = (n + 2 * ps + ps - 1) / ps;
    unsigned char *vec = calloc(pages, 1);
    CHECK(mincore(raw, n + 2 * ps, vec) == 0);
    size_t present = 0;
    for (size_t i = 0; i < pages; i++)
        present += vec[i] & 1;
    CHECK_EQ_INT(present, 0);

    uint8_t *buf = raw + 100; /* not page aligned: a partial page at each end */
    buf[0] = 0x5a;
    buf[n - 1] = 0xa5;
    CHECK_EQ_INT(llm_mem_commit(buf, n), 0);
    CHECK(mincore(raw, n + 2 * ps, vec) == 0);
    size_t first = 0, last = (100 + n - 1) / ps; /* pages the buffer spans */
    present = 0;
    for (size_t i = first; i <= last; i++)
        present += vec[i] & 1;
    CHECK_EQ_INT(present, last - first + 1);
    int zero = 1;
    for (size_t i = 1; i + 1 < n; i += 997)
        zero &= buf[i] == 0;
    CHECK_MSG(zero && buf[0] == 0x5a && buf[n - 1] == 0xa5, "contents changed by the commit");
    CHECK_EQ_INT(llm_mem_commit(buf, 0), 0);
    CHECK_EQ_INT(llm_mem_commit(buf + 5, 10), 0); /* inside one page */
    CHECK_EQ_INT(llm_mem_commit(NULL, 0), 0);
    free(vec);
    munmap(raw, n + 2 * ps);
}

int main(void)
{
    char *path = make_file(FILE_SIZE);
    test_cold_then_warm(path);
    test_half_warm(path);
    test_range(path);
    test_read_mode(path);
    test_background(path);
    test_background_skip_and_stop(path);
    test_map_in(path);
    test_commit();
    unlink(path);
    TEST_END("populate");
}
