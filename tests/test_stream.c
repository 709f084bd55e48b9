/*
 * Streaming in buffer mode (src/mem/stream.c, llm_stream_set_binder): streamed layers are read
 * into private buffers and the binder is told where each layer's bytes are before it is computed.
 * Checked against the file's own bytes (a pattern function of the offset): every bound layer
 * holds exactly its bytes, including unaligned layer starts; resident layers are never rebound;
 * the free hands the mapping's addresses back; two threads walking the layers concurrently take
 * turns, so a buffer is never refilled under a walker that is still reading it; both read modes
 * (page cache, O_DIRECT) deliver the same bytes, and the measured choice picks the faster one.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "mem/mem.h"

#define N_LAYERS 7
#define LAYER ((1u << 20) + 4444u) /* not a page multiple: layer starts are unaligned */
#define HOT_LEN 50000u
#define FILE_SIZE (HOT_LEN + N_LAYERS * LAYER + 777u)

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static uint8_t pattern(uint64_t i) { return (uint8_t)(i * 151 + (i >> 11) + 3); }

static char *make_file(void)
{
    static char path[64];
    strcpy(path, "/tmp/llmap-test-stream-XXXXXX");
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    uint8_t *buf = malloc(FILE_SIZE);
    for (uint32_t i = 0; i < FILE_SIZE; i++)
        buf[i] = pattern(i);
    CHECK(write(fd, buf, FILE_SIZE) == (ssize_t)FILE_SIZE);
    fsync(fd);
    close(fd);
    free(buf);
    return path;
}

typedef struct bound {
    const uint8_t *bytes[N_LAYERS]; /* where the binder was last told layer il is */
    int calls[N_LAYERS];
} bound;

static void bind_cb(void *user, int il, const uint8_t *bytes)
{
    bound *b = user;
    b->bytes[il] = bytes;
    b->calls[il]++;
}

/* Every byte of layer il as bound equals the file's (a sample every 97 bytes plus both ends). */
static bool layer_ok(const bound *b, const llm_range *layers, int il)
{
    const uint8_t *p = b->bytes[il];
    if (!p)
        return false;
    for (uint64_t j = 0; j < layers[il].len; j += 97)
        if (p[j] != pattern(layers[il].off + j))
            return false;
    return p[layers[il].len - 1] == pattern(layers[il].off + layers[il].len - 1);
}

static void setup(llm_range *layers, llm_range *hot)
{
    *hot = (llm_range){0, HOT_LEN};
    for (int i = 0; i < N_LAYERS; i++)
        layers[i] = (llm_range){HOT_LEN + (uint64_t)i * LAYER, LAYER};
}

static void evict(const char *path)
{
    int fd = open(path, O_RDONLY);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
}

static void test_walks(const char *path)
{
    llm_map m;
    llm_err err;
    int fd = open(path, O_RDONLY | O_DIRECT);
    bool direct = fd >= 0;
    if (fd >= 0)
        close(fd);
    setenv("LLMAP_STREAM_DIRECT", direct ? "1" : "0", 1);
    evict(path);
    CHECK_MSG(llm_map_open(&m, path, NULL, &err) == 0, "%s", err.msg);
    llm_range layers[N_LAYERS], hot;
    setup(layers, &hot);
    /* budget: hot + 2 layers + a window of 2 (lookahead 1) */
    llm_stream *s = llm_stream_new(&m, layers, N_LAYERS, &hot, 1, HOT_LEN + 4 * LAYER, 1, &err);
    CHECK_MSG(s != NULL, "%s", err.msg);
    CHECK_EQ_INT(llm_stream_first_streamed(s), 2);
    bound *b = calloc(1, sizeof *b);
    CHECK(llm_stream_set_binder(s, bind_cb, b, &err) == 0);
    unsetenv("LLMAP_STREAM_DIRECT"); /* (read when the stream was made) */
    evict(path); /* (the resident part's read-ahead also cached the rest of this small file) */
    int all_ok = 1, aligned = 1;
    double t0 = now_s();
    for (int token = 0; token < 3; token++) {
        for (int il = 0; il < N_LAYERS; il++) {
            llm_stream_layer(s, il);
            if (il >= 2) {
                all_ok &= layer_ok(b, layers, il) && b->bytes[il] != m.base + layers[il].off;
                /* a buffer starts on a 2 MiB boundary (huge pages: fast O_DIRECT), and the layer at its
                 * file offset modulo a page */
                aligned &= (uintptr_t)(b->bytes[il] - layers[il].off % 4096) % (2u << 20) == 0;
            }
        }
        llm_stream_layer(s, N_LAYERS); /* the walk is over */
    }
    double elapsed = now_s() - t0;
    CHECK_MSG(all_ok, "a streamed layer's buffer did not hold its bytes when computed");
    CHECK_MSG(aligned, "a streaming buffer is not aligned to 2 MiB");
    CHECK_EQ_INT(b->calls[0] + b->calls[1], 0); /* resident layers stay in the mapping */
    CHECK_EQ_INT(b->calls[4], 3);
    llm_stream_stats st;
    llm_stream_get_stats(s, &st);
    CHECK_MSG(st.bytes_read >= 3ull * 5 * LAYER && st.bytes_read < 5ull * 5 * LAYER, "streamed %llu bytes",
              (unsigned long long)st.bytes_read);
    /* time with a read in flight: not the readers' times added up (two readers overlap) */
    CHECK_MSG(st.read_seconds > 0 && st.read_seconds <= elapsed + 0.05, "reading %.3f s in %.3f s of walks",
              st.read_seconds, elapsed);
    llm_stream_free(s); /* frees b: the stream owns the binder's data (ASan checks it) */
    /* Streamed layers do not go through the mapping or stay in the page cache. Checked with
     * O_DIRECT reads: with cached reads the kernel's read-ahead (8 MiB here, more than this
     * file) can hold any layer at any moment until the reader's piece drops it, so a snapshot
     * of the cache says nothing there. */
    if (direct)
        CHECK_MSG(llm_map_resident(&m, layers[5].off, layers[5].len) < layers[5].len / 2, "streamed layer cached");
    llm_map_close(&m);
}

/* A binder whose data points at a record the test keeps, to see the free's last binds. */
typedef struct outer {
    bound *rec;
} outer;

static void bind_outer(void *user, int il, const uint8_t *bytes)
{
    outer *o = user;
    bind_cb(o->rec, il, bytes);
}

static void test_free_rebinds(const char *path)
{
    llm_map m;
    llm_err err;
    CHECK_MSG(llm_map_open(&m, path, NULL, &err) == 0, "%s", err.msg);
    llm_range layers[N_LAYERS], hot;
    setup(layers, &hot);
    llm_stream *s = llm_stream_new(&m, layers, N_LAYERS, &hot, 1, 1, 1, &err); /* nothing pinned */
    CHECK(s != NULL);
    CHECK_EQ_INT(llm_stream_first_streamed(s), 0);
    bound rec;
    memset(&rec, 0, sizeof rec);
    outer *o = malloc(sizeof *o);
    o->rec = &rec;
    CHECK(llm_stream_set_binder(s, bind_outer, o, &err) == 0);
    int ok = 1;
    for (int il = 0; il < N_LAYERS; il++) {
        llm_stream_layer(s, il);
        ok &= layer_ok(&rec, layers, il) && rec.bytes[il] != m.base + layers[il].off;
    }
    llm_stream_layer(s, N_LAYERS);
    CHECK_MSG(ok, "one walk with nothing resident: every layer bound to its bytes in a buffer");
    llm_stream_free(s);
    int back = 1;
    for (int il = 0; il < N_LAYERS; il++)
        back &= rec.bytes[il] == m.base + layers[il].off;
    CHECK_MSG(back, "after free every streamed layer is bound to the mapping again");
    llm_map_close(&m);
}

/* Two walkers: each checks its layer's bytes after a pause (another walker refilling the buffer
 * meanwhile would change them). */
typedef struct walker {
    llm_stream *s;
    bound *b;
    const llm_range *layers;
    int tokens, bad;
} walker;

static void *walk_main(void *arg)
{
    walker *w = arg;
    for (int t = 0; t < w->tokens; t++) {
        for (int il = 0; il < N_LAYERS; il++) {
            llm_stream_layer(w->s, il);
            const uint8_t *p = w->b->bytes[il];
            usleep(3000); /* long enough for a refill of the buffer to land meanwhile */
            if (il >= llm_stream_first_streamed(w->s) &&
                (p != w->b->bytes[il] || !layer_ok(w->b, w->layers, il)))
                w->bad++;
        }
        llm_stream_layer(w->s, N_LAYERS);
    }
    return NULL;
}

static void test_two_walkers(const char *path)
{
    llm_map m;
    llm_err err;
    CHECK_MSG(llm_map_open(&m, path, NULL, &err) == 0, "%s", err.msg);
    llm_range layers[N_LAYERS], hot;
    setup(layers, &hot);
    llm_stream *s = llm_stream_new(&m, layers, N_LAYERS, &hot, 1, HOT_LEN + 3 * LAYER, 1, &err);
    CHECK(s != NULL);
    bound *b = calloc(1, sizeof *b);
    CHECK(llm_stream_set_binder(s, bind_cb, b, &err) == 0);
    walker w[2] = {{s, b, layers, 4, 0}, {s, b, layers, 4, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        CHECK(pthread_create(&th[i], NULL, walk_main, &w[i]) == 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    CHECK_MSG(w[0].bad + w[1].bad == 0, "walkers saw %d and %d layers change under them", w[0].bad, w[1].bad);
    llm_stream_free(s);
    llm_map_close(&m);
}

/* The read mode (src/mem/stream.c, choose_read_mode): page cache or O_DIRECT. Forced by
 * LLMAP_STREAM_DIRECT, every walk reads that way and every layer still holds its bytes. Left to
 * measure, walk 0 (the prompt) reads direct, walk 1 direct and walk 2 cached (the trials), and
 * from walk 3 on the mode whose trial walk took less time: here the walker itself makes one
 * mode's walks slow, so the faster one is known. */
static void walk_modes(const char *path, int walks, bool direct_faster, int *n_direct, int *n_walks, bool *bytes_ok,
                       int *direct_after_trials)
{
    llm_map m;
    llm_err err;
    CHECK_MSG(llm_map_open(&m, path, NULL, &err) == 0, "%s", err.msg);
    llm_range layers[N_LAYERS], hot;
    setup(layers, &hot);
    llm_stream *s = llm_stream_new(&m, layers, N_LAYERS, &hot, 1, HOT_LEN + 4 * LAYER, 1, &err);
    CHECK(s != NULL);
    bound *b = calloc(1, sizeof *b);
    CHECK(llm_stream_set_binder(s, bind_cb, b, &err) == 0);
    int seen = 0;
    *bytes_ok = true;
    *direct_after_trials = 0;
    for (int w = 0; w < walks; w++) {
        for (int il = 0; il < N_LAYERS; il++) {
            llm_stream_layer(s, il);
            if (il >= 2)
                *bytes_ok &= layer_ok(b, layers, il);
            if (il == 0) {
                llm_stream_stats st;
                llm_stream_get_stats(s, &st);
                bool direct = st.walks_direct > seen; /* this walk reads with O_DIRECT */
                seen = st.walks_direct;
                *direct_after_trials += w >= 5 && direct;
                usleep(direct == direct_faster ? 1000 : 100000); /* (a wide margin: a busy machine) */
            }
        }
        llm_stream_layer(s, N_LAYERS);
    }
    llm_stream_stats st;
    llm_stream_get_stats(s, &st);
    *n_direct = st.walks_direct;
    *n_walks = st.walks;
    llm_stream_free(s);
    llm_map_close(&m);
}

static void test_read_modes(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECT);
    if (fd < 0) {
        SKIP("O_DIRECT not supported for %s: read modes not tested", path);
        return;
    }
    close(fd);
    int nd, nw, after;
    bool ok;
    setenv("LLMAP_STREAM_DIRECT", "1", 1);
    walk_modes(path, 4, true, &nd, &nw, &ok, &after);
    CHECK_MSG(ok, "O_DIRECT forced: a layer's buffer did not hold its bytes");
    CHECK_EQ_INT(nw, 4);
    CHECK_EQ_INT(nd, 4);
    setenv("LLMAP_STREAM_DIRECT", "0", 1);
    walk_modes(path, 4, true, &nd, &nw, &ok, &after);
    CHECK_MSG(ok, "page cache forced: a layer's buffer did not hold its bytes");
    CHECK_EQ_INT(nd, 0);
    unsetenv("LLMAP_STREAM_DIRECT");
    walk_modes(path, 9, true, &nd, &nw, &ok, &after);
    CHECK_MSG(ok, "measured mode: a layer's buffer did not hold its bytes");
    CHECK_EQ_INT(after, 4); /* walks 5-8 direct: its trial was faster */
    CHECK_EQ_INT(nd, 2 + 6); /* walks 0-1, and 3-8 */
    walk_modes(path, 9, false, &nd, &nw, &ok, &after);
    CHECK_EQ_INT(after, 0); /* the cached trial was faster */
    CHECK_EQ_INT(nd, 2);     /* walks 0 and 1 */
}

int main(void)
{
    char *path = make_file();
    test_walks(path);
    test_free_rebinds(path);
    test_two_walkers(path);
    test_read_modes(path);
    unlink(path);
    TEST_END("stream");
}
