/*
 * platform — the OS calls behind src/mem (see platform.h): mmap, madvise, mincore, mlock,
 * getrusage, /proc and cgroup files on Linux, sysctl and Mach calls on macOS.
 */
#include "mem/platform.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef __APPLE__
#include <mach/mach.h>
#include <sys/sysctl.h>
#endif

uint64_t plat_page_size(void)
{
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? (uint64_t)p : 4096;
}

int plat_open_ro(const char *path, uint64_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        int e = errno ? errno : EINVAL;
        if (!S_ISREG(st.st_mode))
            e = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        close(fd);
        errno = e;
        return -1;
    }
    *size = (uint64_t)st.st_size;
    return fd;
}

int64_t plat_fd_size(int fd)
{
    struct stat st;
    return fstat(fd, &st) ? -1 : (int64_t)st.st_size;
}

void *plat_map_file(int fd, uint64_t size)
{
    void *p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    return p == MAP_FAILED ? NULL : p;
}

void *plat_map_anon(uint64_t size)
{
    void *p = mmap(NULL, size ? size : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* A 2 MiB-aligned anonymous mapping advised to use transparent huge pages (Linux's "madvise"
 * mode, the usual default, gives none without the advice). The mapping is made 2 MiB larger and
 * trimmed, so plat_unmap(p, size) frees exactly what is left. */
#define HUGE_PAGE (2ull << 20)

void *plat_map_anon_huge(uint64_t size)
{
    uint8_t *raw = plat_map_anon(size + HUGE_PAGE);
    if (!raw)
        return NULL;
    uint64_t head = (HUGE_PAGE - (uintptr_t)raw % HUGE_PAGE) % HUGE_PAGE;
    if (head)
        munmap(raw, head);
    if (HUGE_PAGE - head)
        munmap(raw + head + size, HUGE_PAGE - head);
#ifdef MADV_HUGEPAGE
    madvise(raw + head, size, MADV_HUGEPAGE); /* advice: refused or unavailable, 4 KiB pages serve */
#endif
    return raw + head;
}

void plat_unmap(void *p, uint64_t size)
{
    if (p)
        munmap(p, size ? size : 1);
}

int plat_map_zero_fixed(void *p, uint64_t size)
{
    void *q = mmap(p, size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    return q == MAP_FAILED ? -1 : 0;
}

int plat_read_full(int fd, void *dst, uint64_t size)
{
    uint8_t *d = dst;
    uint64_t done = 0;
    while (done < size) {
        uint64_t chunk = size - done > (1u << 30) ? (1u << 30) : size - done;
        ssize_t n = pread(fd, d + done, (size_t)chunk, (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO; /* file shrank while reading */
            return -1;
        }
        done += (uint64_t)n;
    }
    return 0;
}

int plat_mlock(void *p, uint64_t size) { return mlock(p, size); }

uint64_t plat_memlock_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_MEMLOCK, &rl) || rl.rlim_cur == RLIM_INFINITY)
        return UINT64_MAX;
    return (uint64_t)rl.rlim_cur;
}

static int advice_flag(llm_advice a)
{
    switch (a) {
    case LLM_ADV_WILLNEED: return MADV_WILLNEED;
    case LLM_ADV_DONTNEED: return MADV_DONTNEED;
#ifdef MADV_COLD
    case LLM_ADV_COLD: return MADV_COLD;
#endif
    case LLM_ADV_SEQUENTIAL: return MADV_SEQUENTIAL;
    case LLM_ADV_RANDOM: return MADV_RANDOM;
    default: return MADV_NORMAL;
    }
}

void plat_advise(void *p, uint64_t size, llm_advice advice)
{
#ifndef MADV_COLD
    if (advice == LLM_ADV_COLD)
        return;
#endif
    madvise(p, size, advice_flag(advice));
}

void plat_drop_cache(int fd, uint64_t off, uint64_t len)
{
#ifdef POSIX_FADV_DONTNEED
    posix_fadvise(fd, (off_t)off, (off_t)len, POSIX_FADV_DONTNEED);
#else
    (void)fd, (void)off, (void)len;
#endif
}

uint64_t plat_resident(const void *p, uint64_t size)
{
    uint64_t ps = plat_page_size();
    uint64_t npages = (size + ps - 1) / ps, resident = 0;
    unsigned char vec[4096];
    for (uint64_t first = 0; first < npages; first += sizeof vec) {
        uint64_t n = npages - first < sizeof vec ? npages - first : sizeof vec;
        uint64_t len = n * ps;
        if (first * ps + len > size)
            len = size - first * ps;
#ifdef __APPLE__
        if (mincore((void *)((uintptr_t)p + first * ps), len, (char *)vec))
#else
        if (mincore((void *)((uintptr_t)p + first * ps), len, vec))
#endif
            return 0;
        for (uint64_t i = 0; i < n; i++)
            resident += vec[i] & 1;
    }
    resident *= ps;
    return resident > size ? size : resident;
}

static uint64_t proc_field(const char *path, const char *key)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[256];
    size_t kl = strlen(key);
    uint64_t v = 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, kl) == 0) {
            v = strtoull(line + kl, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

void plat_sample(llm_mem_sample *s)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    s->minor_faults = (uint64_t)ru.ru_minflt;
    s->major_faults = (uint64_t)ru.ru_majflt;
#ifdef __linux__
    s->read_bytes = proc_field("/proc/self/io", "read_bytes:");
    s->rss = proc_field("/proc/self/status", "VmRSS:") * 1024;
#else
    s->read_bytes = 0;
    s->rss = (uint64_t)ru.ru_maxrss; /* macOS reports bytes; peak, not current */
#endif
}

static uint64_t read_u64_file(const char *path, int *ok)
{
    FILE *f = fopen(path, "r");
    char buf[64] = {0};
    *ok = 0;
    if (!f)
        return 0;
    if (fgets(buf, sizeof buf, f) && buf[0] >= '0' && buf[0] <= '9') {
        *ok = 1;
        fclose(f);
        return strtoull(buf, NULL, 10);
    }
    fclose(f);
    return 0;
}

/* This process's memory cgroup: v2 (memory.max in the unified hierarchy) or v1
 * (memory.limit_in_bytes). Limits at or above the RAM size mean "no limit". */
static void cgroup_limits(llm_sysmem *s)
{
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f)
        return;
    char line[1024], path[1200];
    int ok;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = 0;
        const char *controllers = c1 + 1, *cg = c2 + 1;
        uint64_t lim = 0, use = 0;
        if (controllers[0] == 0) { /* v2 */
            snprintf(path, sizeof path, "/sys/fs/cgroup%s/memory.max", cg);
            lim = read_u64_file(path, &ok);
            snprintf(path, sizeof path, "/sys/fs/cgroup%s/memory.current", cg);
            use = read_u64_file(path, &ok);
        } else if (strstr(controllers, "memory")) { /* v1 */
            snprintf(path, sizeof path, "/sys/fs/cgroup/memory%s/memory.limit_in_bytes", cg);
            lim = read_u64_file(path, &ok);
            snprintf(path, sizeof path, "/sys/fs/cgroup/memory%s/memory.usage_in_bytes", cg);
            use = read_u64_file(path, &ok);
        }
        if (lim && lim < s->total && (!s->cgroup_limit || lim < s->cgroup_limit)) {
            s->cgroup_limit = lim;
            s->cgroup_usage = use;
        }
    }
    fclose(f);
}

void plat_sysmem(llm_sysmem *s)
{
    memset(s, 0, sizeof *s);
    s->page_size = plat_page_size();
#ifdef __APPLE__
    uint64_t mem = 0;
    size_t len = sizeof mem;
    sysctlbyname("hw.memsize", &mem, &len, NULL, 0);
    s->total = mem;
    vm_statistics64_data_t vm;
    mach_msg_type_number_t cnt = HOST_VM_INFO64_COUNT;
    if (host_statistics64(mach_host_self(), HOST_VM_INFO64, (host_info64_t)&vm, &cnt) == KERN_SUCCESS)
        s->available = ((uint64_t)vm.free_count + vm.inactive_count + vm.purgeable_count) * s->page_size;
#if defined(__arm64__)
    s->unified = true;
    /* Metal's recommendedMaxWorkingSetSize is about 2/3 of RAM up to 36 GB, 3/4 above; the
     * Metal backend will query the device itself, this is the CPU-side estimate. */
    s->gpu_working_set = mem > (36ull << 30) ? mem / 4 * 3 : mem / 3 * 2;
#endif
#else
    s->total = proc_field("/proc/meminfo", "MemTotal:") * 1024;
    s->available = proc_field("/proc/meminfo", "MemAvailable:") * 1024;
    s->swap_total = proc_field("/proc/meminfo", "SwapTotal:") * 1024;
    s->swap_free = proc_field("/proc/meminfo", "SwapFree:") * 1024;
    cgroup_limits(s);
#endif
}

static void (*bus_callback)(void *addr, int *handled);

static void bus_handler(int sig, siginfo_t *si, void *uctx)
{
    (void)uctx;
    int handled = 0;
    if (bus_callback)
        bus_callback(si->si_addr, &handled);
    if (handled)
        return;
    signal(sig, SIG_DFL);
    raise(sig);
}

void plat_install_bus_handler(void (*on_fault)(void *addr, int *handled))
{
    if (bus_callback)
        return;
    bus_callback = on_fault;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = bus_handler;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, NULL);
}

/* ---- committing anonymous memory (llm_mem_commit) ------------------------------------------- */

#if defined(__linux__) && !defined(MADV_POPULATE_WRITE)
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 uapi value, for older headers */
#endif

/* Writes each page's first byte back to itself: commits the page on any system, keeps the data. */
static void touch_pages_rw(volatile uint8_t *p, size_t n, uint64_t ps)
{
    for (size_t i = 0; i < n; i += ps)
        p[i] = p[i];
    if (n)
        p[n - 1] = p[n - 1];
}

int plat_commit(void *p, size_t n)
{
    uint64_t ps = plat_page_size();
    uintptr_t a = (uintptr_t)p, lo = (a + ps - 1) / ps * ps, hi = (a + n) / ps * ps;
    if (!p || n == 0)
        return 0;
    if (hi <= lo) { /* no whole page inside: nothing worth a system call */
        touch_pages_rw(p, n, ps);
        return 0;
    }
    /* The partial pages at either end may be shared with other allocations: touched, not advised. */
    touch_pages_rw(p, lo - a, ps);
    touch_pages_rw((uint8_t *)hi, a + n - hi, ps);
#ifdef MADV_POPULATE_WRITE
    if (madvise((void *)lo, hi - lo, MADV_POPULATE_WRITE) == 0)
        return 0;
    if (errno == ENOMEM || errno == EFAULT)
        return -1; /* the whole range is ours and mapped: the kernel ran out of memory */
#endif
    touch_pages_rw((uint8_t *)lo, hi - lo, ps); /* EINVAL: a kernel before 5.14 */
    return 0;
}
