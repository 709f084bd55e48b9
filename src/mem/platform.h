/*
 * platform — every operating-system call the memory layer makes, in one place, so a port
 * (macOS today, Windows perhaps later) touches one file. Linux is the primary target;
 * macOS paths are compiled under __APPLE__.
 *
 * Internal to src/mem: other modules go through mem.h.
 */
#ifndef LLMAP_MEM_PLATFORM_H
#define LLMAP_MEM_PLATFORM_H

#include <stdbool.h>
#include <stdint.h>

#include "mem/mem.h"

uint64_t plat_page_size(void);
/* Opens path read-only; returns fd and size, or -1 with errno. */
int plat_open_ro(const char *path, uint64_t *size);
int64_t plat_fd_size(int fd);
void *plat_map_file(int fd, uint64_t size);           /* NULL on failure (errno set) */
void *plat_map_anon(uint64_t size);                   /* NULL on failure */
void *plat_map_anon_huge(uint64_t size);              /* 2 MiB-aligned, in huge pages where given */
void plat_unmap(void *p, uint64_t size);
/* Replaces [p, p+size) of a mapping with zero pages (used by the SIGBUS handler). */
int plat_map_zero_fixed(void *p, uint64_t size);
int plat_read_full(int fd, void *dst, uint64_t size); /* 0, or -1 with errno */
int plat_mlock(void *p, uint64_t size);
uint64_t plat_memlock_limit(void);                    /* UINT64_MAX when unlimited */
void plat_advise(void *p, uint64_t size, llm_advice advice);
void plat_drop_cache(int fd, uint64_t off, uint64_t len);
uint64_t plat_resident(const void *p, uint64_t size);
void plat_sample(llm_mem_sample *s);
void plat_sysmem(llm_sysmem *s);
/* Installs the SIGBUS/SIGSEGV-on-mapping handler once; handler calls back into map.c. */
void plat_install_bus_handler(void (*on_fault)(void *addr, int *handled));

/* Makes [p, p+n) of private writable memory present now, in one call where the kernel can
 * (MADV_POPULATE_WRITE), keeping its contents. 0, or -1 when memory ran out (errno ENOMEM). */
int plat_commit(void *p, size_t n);

#endif
