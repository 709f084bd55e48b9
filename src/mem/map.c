/*
 * map — opening a model file as memory (see mem.h), and the SIGBUS guard.
 *
 * The guard needs process-wide state, because a signal handler cannot be handed a context:
 * a fixed table of live mappings, written under a mutex and read lock-free by the handler.
 * On a fault inside a registered mapping the handler maps zero pages over the rest of it and
 * flags the slot; compute carries on with zeros and llm_map_check reports the broken file.
 */
#include "mem/mem.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mem/platform.h"

#define MAX_MAPS 64

static struct {
    _Atomic(uintptr_t) base;
    _Atomic(uint64_t) size;
    atomic_int faulted;
} g_maps[MAX_MAPS];
static pthread_mutex_t g_maps_lock = PTHREAD_MUTEX_INITIALIZER;

static void on_bus_fault(void *addr, int *handled)
{
    uintptr_t a = (uintptr_t)addr;
    for (int i = 0; i < MAX_MAPS; i++) {
        uintptr_t b = atomic_load(&g_maps[i].base);
        uint64_t sz = atomic_load(&g_maps[i].size);
        if (b && a >= b && a < b + sz) {
            uintptr_t ps = (uintptr_t)plat_page_size();
            uintptr_t from = a & ~(ps - 1);
            uintptr_t end = (b + sz + ps - 1) & ~(ps - 1);
            if (plat_map_zero_fixed((void *)from, end - from) == 0) {
                atomic_store(&g_maps[i].faulted, 1);
                *handled = 1;
            }
            return;
        }
    }
}

static int register_map(llm_map *m)
{
    plat_install_bus_handler(on_bus_fault);
    pthread_mutex_lock(&g_maps_lock);
    int slot = -1;
    for (int i = 0; i < MAX_MAPS && slot < 0; i++)
        if (!atomic_load(&g_maps[i].base)) {
            slot = i;
            atomic_store(&g_maps[i].faulted, 0);
            atomic_store(&g_maps[i].size, m->size);
            atomic_store(&g_maps[i].base, (uintptr_t)m->base);
        }
    pthread_mutex_unlock(&g_maps_lock);
    return slot;
}

static void unregister_map(int slot)
{
    if (slot < 0)
        return;
    pthread_mutex_lock(&g_maps_lock);
    atomic_store(&g_maps[slot].base, 0);
    atomic_store(&g_maps[slot].size, 0);
    pthread_mutex_unlock(&g_maps_lock);
}

static void try_mlock(llm_map *m)
{
    uint64_t limit = plat_memlock_limit();
    if (limit != UINT64_MAX && limit < m->size) {
        snprintf(m->warning, sizeof m->warning,
                 "warning: %s: cannot lock %.1f MiB in RAM: RLIMIT_MEMLOCK is %.1f MiB "
                 "(raise it with `ulimit -l unlimited` or run without --mlock); continuing unlocked",
                 m->path, m->size / 1048576.0, limit / 1048576.0);
        return;
    }
    if (plat_mlock(m->base, m->size)) {
        snprintf(m->warning, sizeof m->warning, "warning: %s: mlock of %.1f MiB failed: %s; continuing unlocked",
                 m->path, m->size / 1048576.0, strerror(errno));
        return;
    }
    m->locked = true;
}

int llm_map_open(llm_map *m, const char *path, const llm_map_opts *opts, llm_err *err)
{
    static const llm_map_opts defaults = {0};
    if (!opts)
        opts = &defaults;
    memset(m, 0, sizeof *m);
    m->fd = -1;
    m->slot = -1;
    double t0 = llm_now();
    uint64_t size;
    int fd = plat_open_ro(path, &size);
    if (fd < 0)
        return llm_errf(err, "%s: cannot open: %s", path, strerror(errno));
    if (size == 0) {
        close(fd);
        return llm_errf(err, "%s: offset 0: magic: file is empty", path);
    }
    m->path = llm_xstrdup(path);
    m->size = size;
    m->mode = opts->mode;
    m->fd = fd;
    if (opts->mode == LLM_MAP_READ) {
        m->base = plat_map_anon(size);
        if (!m->base || plat_read_full(fd, m->base, size)) {
            llm_errf(err, "%s: cannot read %llu bytes into memory: %s", path, (unsigned long long)size,
                     strerror(errno));
            llm_map_close(m);
            return -1;
        }
    } else {
        m->base = plat_map_file(fd, size);
        if (!m->base) {
            llm_errf(err, "%s: cannot map %llu bytes: %s", path, (unsigned long long)size, strerror(errno));
            llm_map_close(m);
            return -1;
        }
        m->slot = register_map(m);
    }
    if (opts->mlock)
        try_mlock(m);
    m->load_seconds = llm_now() - t0;
    return 0;
}

void llm_map_close(llm_map *m)
{
    unregister_map(m->slot);
    if (m->base)
        plat_unmap(m->base, m->size);
    if (m->fd >= 0)
        close(m->fd);
    free(m->path);
    memset(m, 0, sizeof *m);
    m->fd = -1;
    m->slot = -1;
}

int llm_map_check(const llm_map *m, llm_err *err)
{
    if (m->slot >= 0 && atomic_load(&g_maps[m->slot].faulted))
        return llm_errf(err, "%s: the model file could not be read while in use (truncated or replaced "
                             "in place?); outputs since then are invalid — reload the model", m->path);
    if (m->mode == LLM_MAP_MMAP) {
        int64_t now = plat_fd_size(m->fd);
        if (now >= 0 && (uint64_t)now < m->size)
            return llm_errf(err, "%s: the model file shrank from %llu to %lld bytes while mapped; "
                                 "reload the model", m->path, (unsigned long long)m->size, (long long)now);
    }
    return 0;
}

void llm_map_advise(const llm_map *m, uint64_t off, uint64_t len, llm_advice advice)
{
    if (m->mode != LLM_MAP_MMAP || off >= m->size)
        return;
    if (len > m->size - off)
        len = m->size - off;
    uint64_t ps = plat_page_size();
    uint64_t start = off / ps * ps;
    plat_advise(m->base + start, len + (off - start), advice);
}

void llm_map_drop_cache(const llm_map *m, uint64_t off, uint64_t len)
{
    if (m->mode == LLM_MAP_MMAP && m->fd >= 0)
        plat_drop_cache(m->fd, off, len);
}

uint64_t llm_map_resident(const llm_map *m, uint64_t off, uint64_t len)
{
    if (off >= m->size)
        return 0;
    if (len > m->size - off)
        len = m->size - off;
    if (m->mode == LLM_MAP_READ)
        return len;
    uint64_t ps = plat_page_size();
    uint64_t start = off / ps * ps;
    uint64_t r = plat_resident(m->base + start, len + (off - start));
    return r > len ? len : r;
}

void llm_mem_sample_now(llm_mem_sample *s)
{
    plat_sample(s);
    s->t = llm_now();
}

void llm_sysmem_get(llm_sysmem *s) { plat_sysmem(s); }

uint64_t llm_sysmem_usable(const llm_sysmem *s)
{
    uint64_t avail = s->available;
    if (s->cgroup_limit) {
        uint64_t head = s->cgroup_limit > s->cgroup_usage ? s->cgroup_limit - s->cgroup_usage : 0;
        if (head < avail)
            avail = head;
    }
    return avail;
}

void *llm_mem_alloc_huge(size_t bytes)
{
    return plat_map_anon_huge(bytes ? bytes : 1);
}

void llm_mem_free_huge(void *p, size_t bytes)
{
    plat_unmap(p, bytes ? bytes : 1);
}
