/*
 * File helpers of the store: atomic small-file writes, directory fsync, streaming SHA-256 and
 * the GGUF sanity check done before anything enters the store.
 *
 * Atomicity is the classic sequence — write a temporary file in the destination directory,
 * fsync it, rename it over the destination, fsync the directory — so a reader (or a process
 * restarted after SIGKILL or power loss) sees either the old file or the new one, whole.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "mem/mem.h"
#include "store/store.h"

int llm_fsync_dir(const char *dir, llm_err *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return llm_errf(err, "%s: %s", dir, strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    /* Some filesystems refuse fsync on directories; the rename is still atomic there. */
    if (rc != 0 && e != EINVAL && e != EROFS)
        return llm_errf(err, "%s: fsync: %s", dir, strerror(e));
    return 0;
}

int llm_write_atomic(const char *path, const void *data, size_t len, llm_err *err)
{
    char dir[4096], tmp[4200];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    if (slash == path)
        snprintf(dir, sizeof dir, "/");
    /* Temp names start with ".tmp-" so `store check --fix` can recognise leftovers. */
    snprintf(tmp, sizeof tmp, "%s/.tmp-%s.XXXXXX", dir, slash ? slash + 1 : path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return llm_errf(err, "%s: cannot create temporary file: %s", dir, strerror(errno));
    /* mkstemp creates 0600; manifests are meant to be readable like any data file. */
    if (fchmod(fd, 0644) != 0 || llm_pwrite_all(fd, data, len, 0) != 0 || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return llm_errf(err, "%s: write: %s", tmp, strerror(e));
    }
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return llm_errf(err, "%s: %s", path, strerror(e));
    }
    return llm_fsync_dir(dir, err);
}

int llm_sha256_file(const char *path, char hex[65], llm_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return llm_errf(err, "%s: %s", path, strerror(errno));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t cap = 1 << 20;
    unsigned char *buf = malloc(cap);
    int rc = -1;
    if (!ctx || !buf || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        llm_errf(err, "%s: cannot start SHA-256", path);
        goto out;
    }
    for (;;) {
        ssize_t r = read(fd, buf, cap);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            llm_errf(err, "%s: read: %s", path, strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        EVP_DigestUpdate(ctx, buf, (size_t)r);
    }
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    rc = 0;
out:
    free(buf);
    EVP_MD_CTX_free(ctx);
    close(fd);
    return rc;
}

int llm_check_gguf_file(const char *path, llm_err *err)
{
    llm_map m;
    llm_map_opts opts = {.mode = LLM_MAP_MMAP, .mlock = false};
    if (llm_map_open(&m, path, &opts, err) != 0)
        return -1;
    gguf_file g;
    int rc = gguf_parse(&g, path, m.base, m.size, err);
    gguf_free(&g);
    if (rc == 0)
        rc = llm_map_check(&m, err);
    llm_map_close(&m);
    return rc;
}

bool llm_digest_valid(const char *d, bool colon_ok)
{
    if (!d || strncmp(d, "sha256", 6) != 0)
        return false;
    if (!(d[6] == '-' || (colon_ok && d[6] == ':')))
        return false;
    for (int i = 0; i < 64; i++) {
        char c = d[7 + i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    return d[71] == 0;
}
