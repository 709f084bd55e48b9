/*
 * Mapping layer tests: both load modes see the file's bytes; residency follows what was
 * touched (page cache evicted first with posix_fadvise); a file truncated while mapped gives
 * an error naming it instead of SIGBUS; mlock refused by RLIMIT_MEMLOCK is a warning; the
 * fault counters and system memory figures are sane.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "check.h"
#include "mem/mem.h"

#define FILE_SIZE (8u << 20)

static uint8_t pattern(uint64_t i) { return (uint8_t)(i * 31 + (i >> 12)); }

static char *make_file(uint32_t size)
{
    static char path[64];
    strcpy(path, "/tmp/llmap-test-mem-XXXXXX");
    CHECK(test_file_write(path, size, pattern) == 0);
    return path;
}

static void test_modes(const char *path)
{
    for (int mode = 0; mode < 2; mode++) {
        llm_map m;
        llm_err err;
        llm_map_opts o = {.mode = mode ? LLM_MAP_READ : LLM_MAP_MMAP};
        CHECK_MSG(llm_map_open(&m, path, &o, &err) == 0, "%s", err.msg);
        CHECK_EQ_INT(m.size, FILE_SIZE);
        CHECK_MSG(test_bytes_match(m.base, 0, FILE_SIZE, 4093, pattern), "mode %d: bytes differ from the file", mode);
        CHECK(llm_map_check(&m, &err) == 0);
        if (mode == 1)
            CHECK_EQ_INT(llm_map_resident(&m, 0, FILE_SIZE), FILE_SIZE);
        llm_map_close(&m);
    }
}

static void test_residency(const char *path)
{
    test_file_evict(path);
    llm_map m;
    llm_err err;
    CHECK(llm_map_open(&m, path, NULL, &err) == 0);
    llm_map_advise(&m, 0, m.size, LLM_ADV_RANDOM); /* no read-ahead: touch exactly what we read */
    uint64_t before = llm_map_resident(&m, 0, m.size);
    volatile uint8_t sink = 0;
    for (uint64_t i = 0; i < m.size / 2; i += 4096)
        sink += m.base[i];
    (void)sink;
    uint64_t first = llm_map_resident(&m, 0, m.size / 2), second = llm_map_resident(&m, m.size / 2, m.size / 2);
    CHECK_MSG(before < m.size / 4, "resident before touching: %llu", (unsigned long long)before);
    CHECK_EQ_INT(first, m.size / 2);
    CHECK_MSG(second < m.size / 4, "untouched half resident: %llu", (unsigned long long)second);
    /* a sub-page range is clamped to its length */
    CHECK_EQ_INT(llm_map_resident(&m, 10, 100), 100);
    CHECK_EQ_INT(llm_map_resident(&m, m.size + 5, 100), 0);
    llm_map_advise(&m, m.size / 2, m.size / 2, LLM_ADV_WILLNEED);
    llm_map_close(&m);
}

/* Truncate the file while it is mapped, then read past the new end: the access must not kill
 * the process, and llm_map_check must name the file. */
static void test_truncated_while_mapped(void)
{
    char *path = make_file(FILE_SIZE);
    llm_map m;
    llm_err err;
    CHECK(llm_map_open(&m, path, NULL, &err) == 0);
    CHECK(truncate(path, 4096) == 0);
    CHECK(llm_map_check(&m, &err) == -1);
    CHECK_CONTAINS(err.msg, path);
    CHECK_CONTAINS(err.msg, "shrank");
    volatile uint8_t v = m.base[FILE_SIZE - 1]; /* SIGBUS without the guard */
    CHECK_EQ_INT(v, 0);
    CHECK(llm_map_check(&m, &err) == -1);
    CHECK_CONTAINS(err.msg, "could not be read while in use");
    CHECK_CONTAINS(err.msg, path);
    CHECK(m.base[0] == (uint8_t)0); /* page 0 survived the truncation */
    llm_map_close(&m);
    unlink(path);
}

static void test_mlock_limit(const char *path)
{
    struct rlimit old, low = {.rlim_cur = 64 << 10, .rlim_max = 0};
    getrlimit(RLIMIT_MEMLOCK, &old);
    low.rlim_max = old.rlim_max;
    CHECK(setrlimit(RLIMIT_MEMLOCK, &low) == 0);
    llm_map m;
    llm_err err;
    llm_map_opts o = {.mode = LLM_MAP_MMAP, .mlock = true};
    CHECK(llm_map_open(&m, path, &o, &err) == 0);
    CHECK(!m.locked);
    CHECK_CONTAINS(m.warning, "RLIMIT_MEMLOCK");
    CHECK_CONTAINS(m.warning, path);
    llm_map_close(&m);
    setrlimit(RLIMIT_MEMLOCK, &old);
}

static void test_open_errors(void)
{
    llm_map m;
    llm_err err;
    CHECK(llm_map_open(&m, "/nonexistent/model.gguf", NULL, &err) == -1);
    CHECK_CONTAINS(err.msg, "/nonexistent/model.gguf: cannot open: No such file");
    CHECK(llm_map_open(&m, "/tmp", NULL, &err) == -1);
    CHECK_CONTAINS(err.msg, "/tmp: cannot open: Is a directory");
    char path[] = "/tmp/llmap-test-empty-XXXXXX";
    close(mkstemp(path));
    CHECK(llm_map_open(&m, path, NULL, &err) == -1);
    CHECK_CONTAINS(err.msg, "file is empty");
    unlink(path);
}

static void test_counters(void)
{
    llm_mem_sample a, b;
    llm_mem_sample_now(&a);
    size_t n = 16u << 20;
    uint8_t *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (size_t i = 0; i < n; i += 4096)
        p[i] = 1;
    llm_mem_sample_now(&b);
    CHECK_MSG(b.minor_faults - a.minor_faults >= n / 4096 / 2, "minor faults %llu",
              (unsigned long long)(b.minor_faults - a.minor_faults));
    CHECK(b.t > a.t);
    CHECK(b.rss >= n);
    munmap(p, n);
    llm_sysmem s;
    llm_sysmem_get(&s);
    CHECK(s.total > (64u << 20));
    CHECK(s.available > 0 && s.available <= s.total);
    CHECK(llm_sysmem_usable(&s) <= s.available);
    s.cgroup_limit = s.cgroup_usage + 1000;
    CHECK_EQ_INT(llm_sysmem_usable(&s), 1000);
}

static void test_thrash(void)
{
    llm_thrash t;
    llm_thrash_init(&t, 100u << 20, 20.0);
    int fired = 0;
    for (int i = 0; i < 100; i++) /* resident: no reads, no major faults, 25 tokens/s */
        fired += llm_thrash_observe(&t, 0, 0, 0.04);
    CHECK_EQ_INT(fired, 0);
    llm_thrash_init(&t, 100u << 20, 20.0);
    for (int i = 0; i < 100; i++) /* 80 MB from disk per token at 1 token/s */
        fired += llm_thrash_observe(&t, 600, 80u << 20, 1.0);
    CHECK_EQ_INT(fired, 1);
    CHECK_CONTAINS(t.message, "84 MB read from disk per token (80% of the weights)");
    CHECK_CONTAINS(t.message, "1.00 tokens/s where resident it would reach ~20.0 tokens/s");
    llm_thrash_init(&t, 100u << 20, 20.0);
    fired = 0;
    for (int i = 0; i < 100; i++) /* heavy reads but still at resident speed (fast disk): quiet */
        fired += llm_thrash_observe(&t, 100, 80u << 20, 0.05);
    CHECK_EQ_INT(fired, 0);
    llm_thrash_init(&t, 100u << 20, 0); /* resident speed unknown: no comparison in the text */
    for (int i = 0; i < 100; i++)
        fired += llm_thrash_observe(&t, 600, 80u << 20, 1.0);
    CHECK_EQ_INT(fired, 1);
    CHECK_CONTAINS(t.message, "1.00 tokens/s. The model does not stay in memory");
}

/* Eight 1 MiB "layers", budget for the hot range + 3 layers + the window: the first layers stay
 * resident, the streamed ones are dropped behind use and the bytes read are right. */
static void test_stream(void)
{
    char *path = make_file(FILE_SIZE);
    test_file_evict(path);
    llm_map m;
    llm_err err;
    CHECK(llm_map_open(&m, path, NULL, &err) == 0);
    llm_range layers[7], hot = {0, 1u << 20};
    for (int i = 0; i < 7; i++)
        layers[i] = (llm_range){(uint64_t)(i + 1) << 20, 1u << 20};
    llm_stream *s = llm_stream_new(&m, layers, 7, &hot, 1, (1u << 20) * 7, 2, &err);
    CHECK(s != NULL);
    CHECK_EQ_INT(llm_stream_first_streamed(s), 3); /* 7 MiB - hot - 3 MiB window = 3 layers */
    uint64_t sum_ok = 1;
    for (int token = 0; token < 3; token++)
        for (int il = 0; il < 7; il++) {
            llm_stream_layer(s, il);
            CHECK_MSG(llm_map_resident(&m, layers[il].off, layers[il].len) == layers[il].len,
                      "layer %d not resident when computed", il);
            uint64_t off = layers[il].off + 12345;
            sum_ok &= m.base[off] == (uint8_t)(off * 31 + (off >> 12));
        }
    CHECK(sum_ok);
    llm_stream_layer(s, 0); /* next token: layer 6 is behind and dropped */
    CHECK_MSG(llm_map_resident(&m, layers[6].off, layers[6].len) < layers[6].len / 2, "streamed layer kept");
    CHECK_EQ_INT(llm_map_resident(&m, layers[1].off, layers[1].len), layers[1].len);
    CHECK_EQ_INT(llm_map_resident(&m, hot.off, hot.len), hot.len);
    llm_stream_free(s);
    llm_map_opts ro = {.mode = LLM_MAP_READ};
    llm_map r;
    CHECK(llm_map_open(&r, path, &ro, &err) == 0);
    CHECK(llm_stream_new(&r, layers, 7, &hot, 1, 1u << 20, 2, &err) == NULL);
    CHECK_CONTAINS(err.msg, "streaming needs a memory-mapped model");
    llm_map_close(&r);
    llm_map_close(&m);
    unlink(path);
}

int main(void)
{
    char *path = strdup(make_file(FILE_SIZE));
    test_modes(path);
    test_residency(path);
    test_mlock_limit(path);
    test_truncated_while_mapped();
    test_open_errors();
    test_counters();
    test_thrash();
    test_stream();
    unlink(path);
    free(path);
    TEST_END("mem");
}
