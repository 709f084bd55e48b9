/*
 * The model store on disk: opening it, manifests by name, resolving a name or path to a GGUF
 * file, listing, importing, removing, copying, garbage collection and the consistency check.
 * The layout and the crash-safety argument are in store.h.
 *
 * Concurrency: adders (import, pull, cp) hold a shared flock on <root>/lock for the whole
 * operation; collectors (the GC after rm, check --fix) take it exclusively and without
 * waiting, so a long download never blocks `rm`, which then leaves its garbage for later.
 * Leftover unreferenced blobs are harmless: they are never listed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"

struct llm_store {
    char *root, *blobs, *manifests, *tmp;
    int lock_fd;
    int lock_mode; /* 0 none, 1 shared, 2 exclusive */
    unsigned counter;
};

static char *path_join(const char *a, const char *b)
{
    llm_buf p = {0};
    llm_buf_printf(&p, "%s/%s", a, b);
    return p.data;
}

static int mkdir_p(const char *path, llm_err *err)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n >= sizeof buf)
        return llm_errf(err, "%s: path too long", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0)
            continue;
        char c = buf[i];
        buf[i] = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return llm_errf(err, "%s: cannot create directory: %s", buf, strerror(errno));
        buf[i] = c;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return llm_errf(err, "%s: not a directory", path);
    return 0;
}

static char *default_root(llm_err *err)
{
    const char *home = getenv("LLMAP_HOME");
    if (home && *home)
        return llm_xstrdup(home);
    const char *xdg = getenv("XDG_DATA_HOME");
    if (xdg && *xdg == '/')
        return path_join(xdg, "llmap");
    const char *h = getenv("HOME");
    if (!h || !*h) {
        llm_errf(err, "cannot find the model store: set LLMAP_HOME or HOME");
        return NULL;
    }
    return path_join(h, ".local/share/llmap");
}

int llm_store_open(llm_store **out, const char *root, llm_err *err)
{
    *out = NULL;
    char *r = root ? llm_xstrdup(root) : default_root(err);
    if (!r)
        return -1;
    llm_store *s = llm_xcalloc(1, sizeof *s);
    s->root = r;
    s->blobs = path_join(r, "blobs");
    s->manifests = path_join(r, "manifests");
    s->tmp = path_join(r, "tmp");
    s->lock_fd = -1;
    if (mkdir_p(s->blobs, err) || mkdir_p(s->manifests, err) || mkdir_p(s->tmp, err)) {
        llm_err_prefix(err, "model store %s", r);
        llm_store_close(s);
        return -1;
    }
    char *lock = path_join(r, "lock");
    s->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (s->lock_fd < 0 && (errno == EACCES || errno == EROFS))
        s->lock_fd = open(lock, O_RDONLY | O_CLOEXEC); /* a read-only store can still be read */
    free(lock);
    if (s->lock_fd < 0) {
        llm_errf(err, "model store %s: cannot open lock file: %s", r, strerror(errno));
        llm_store_close(s);
        return -1;
    }
    *out = s;
    return 0;
}

void llm_store_close(llm_store *s)
{
    if (!s)
        return;
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    free(s->root);
    free(s->blobs);
    free(s->manifests);
    free(s->tmp);
    free(s);
}

const char *llm_store_root(const llm_store *s) { return s->root; }
const char *llm_store_tmpdir(const llm_store *s) { return s->tmp; }

int llm_store_lock(llm_store *s, bool exclusive, bool nonblocking, llm_err *err)
{
    int op = (exclusive ? LOCK_EX : LOCK_SH) | (nonblocking ? LOCK_NB : 0);
    while (flock(s->lock_fd, op) != 0) {
        if (errno == EINTR)
            continue;
        if (errno == EWOULDBLOCK)
            return llm_errf(err, "model store %s is busy (an import or pull is running)", s->root);
        return llm_errf(err, "model store %s: lock: %s", s->root, strerror(errno));
    }
    s->lock_mode = exclusive ? 2 : 1;
    return 0;
}

void llm_store_unlock(llm_store *s)
{
    if (s->lock_mode)
        flock(s->lock_fd, LOCK_UN);
    s->lock_mode = 0;
}

char *llm_store_tmpname(llm_store *s, const char *prefix)
{
    unsigned rnd = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (read(fd, &rnd, sizeof rnd) != sizeof rnd)
            rnd = (unsigned)time(NULL);
        close(fd);
    }
    llm_buf p = {0};
    llm_buf_printf(&p, "%s/%s-%d-%u-%08x", s->tmp, prefix, (int)getpid(), s->counter++, rnd);
    return p.data;
}

char *llm_store_blob_path(const llm_store *s, const char *digest)
{
    return path_join(s->blobs, digest);
}

/* manifests/<path with '/' as '+'>:<tag>.json — built only from a validated name. */
static char *manifest_path(const llm_store *s, const llm_name *n)
{
    char file[LLM_NAME_MAX + 32];
    snprintf(file, sizeof file, "%s.json", n->full);
    for (char *p = file; *p; p++)
        if (*p == '/')
            *p = '+';
    return path_join(s->manifests, file);
}

/* Inverse of manifest_path for a directory entry; -1 when the entry is not a manifest. */
static int name_from_file(const char *file, llm_name *n)
{
    size_t len = strlen(file);
    if (len < 6 || len > LLM_NAME_MAX + 16 || strcmp(file + len - 5, ".json") != 0 || file[0] == '.')
        return -1;
    char buf[LLM_NAME_MAX + 32];
    memcpy(buf, file, len - 5);
    buf[len - 5] = 0;
    for (char *p = buf; *p; p++)
        if (*p == '+')
            *p = '/';
        else if (*p == '/')
            return -1;
    if (!strchr(buf, ':'))
        return -1;
    return llm_name_parse(buf, n, NULL);
}

static int read_small_file(const char *path, llm_buf *out, size_t max, llm_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return llm_errf(err, "%s: %s", path, strerror(errno));
    char chunk[8192];
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof chunk);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            return llm_errf(err, "%s: read: %s", path, strerror(e));
        }
        if (r == 0)
            break;
        if (out->len + (size_t)r > max) {
            close(fd);
            return llm_errf(err, "%s: larger than %zu bytes", path, max);
        }
        llm_buf_append(out, chunk, (size_t)r);
    }
    close(fd);
    llm_buf_cstr(out);
    return 0;
}

#define MANIFEST_MAX (4u << 20)

static int load_manifest(const char *path, const llm_name *n, llm_manifest *m, llm_err *err)
{
    llm_buf b = {0};
    if (read_small_file(path, &b, MANIFEST_MAX, err)) {
        llm_buf_free(&b);
        return -1;
    }
    int rc = llm_manifest_from_json(m, b.data ? b.data : "", b.len, err);
    llm_buf_free(&b);
    if (rc)
        return llm_err_prefix(err, "%s", path);
    /* The file name is the authority on the name: a copied file cannot claim another one. */
    free(m->name);
    m->name = llm_xstrdup(n->full);
    return 0;
}

int llm_store_get(llm_store *s, const char *name, llm_manifest *m, llm_err *err)
{
    llm_name n;
    memset(m, 0, sizeof *m);
    if (llm_name_parse(name, &n, err))
        return -1;
    char *path = manifest_path(s, &n);
    int rc;
    if (access(path, F_OK) != 0)
        rc = llm_errf(err, "model '%s' not found (see `llmap list`)", n.full);
    else
        rc = load_manifest(path, &n, m, err);
    free(path);
    return rc;
}

static char *now_iso(void)
{
    char buf[32];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return llm_xstrdup(buf);
}

int llm_store_put(llm_store *s, const llm_manifest *m, llm_err *err)
{
    llm_name n;
    if (llm_name_parse(m->name, &n, err))
        return -1;
    if (!llm_digest_valid(m->digest, false))
        return llm_errf(err, "manifest for '%s': invalid digest", n.full);
    char *blob = llm_store_blob_path(s, m->digest);
    int missing = access(blob, F_OK) != 0;
    free(blob);
    if (missing)
        return llm_errf(err, "manifest for '%s': blob %s is not in the store", n.full, m->digest);
    llm_manifest copy = *m;
    copy.name = n.full;
    char *created = NULL;
    if (!copy.created)
        copy.created = created = now_iso();
    char *json = llm_manifest_to_json(&copy);
    char *path = manifest_path(s, &n);
    int rc = llm_write_atomic(path, json, strlen(json), err);
    free(path);
    free(json);
    free(created);
    return rc;
}

int llm_store_add(llm_store *s, const char *tmp_path, const llm_manifest *m, llm_err *err)
{
    int took = 0;
    if (!s->lock_mode) {
        if (llm_store_lock(s, false, false, err))
            return -1;
        took = 1;
    }
    int rc = 0;
    char *blob = llm_store_blob_path(s, m->digest);
    if (!llm_digest_valid(m->digest, false)) {
        rc = llm_errf(err, "invalid digest '%s'", m->digest);
    } else if (tmp_path) {
        struct stat have, mine;
        if (stat(blob, &have) == 0 && stat(tmp_path, &mine) == 0 && have.st_size == mine.st_size) {
            unlink(tmp_path); /* same content already stored */
        } else if (rename(tmp_path, blob) != 0) { /* new, or replaces a damaged copy */
            rc = llm_errf(err, "%s: cannot move into the store: %s", blob, strerror(errno));
        } else {
            rc = llm_fsync_dir(s->blobs, err);
        }
    }
    if (rc == 0)
        rc = llm_store_put(s, m, err);
    free(blob);
    if (took)
        llm_store_unlock(s);
    return rc;
}

/* A path, not a name: ends in .gguf or is written as a path. */
static int looks_like_path(const char *p)
{
    size_t n = strlen(p);
    if (n >= 5 && strcasecmp(p + n - 5, ".gguf") == 0)
        return 1;
    return p[0] == '/' || p[0] == '~' || !strncmp(p, "./", 2) || !strncmp(p, "../", 3);
}

int llm_store_resolve_ex(llm_store *s, const char *name_or_path, char **gguf_path, llm_manifest *man,
                         llm_err *err)
{
    *gguf_path = NULL;
    if (man)
        memset(man, 0, sizeof *man);
    if (!name_or_path || !*name_or_path)
        return llm_errf(err, "no model given");
    if (looks_like_path(name_or_path)) {
        struct stat st;
        if (stat(name_or_path, &st) != 0)
            return llm_errf(err, "%s: %s", name_or_path, strerror(errno));
        if (!S_ISREG(st.st_mode))
            return llm_errf(err, "%s: not a regular file", name_or_path);
        /* Only the magic here: the loader parses the rest and names any problem. */
        char magic[4] = {0};
        int fd = open(name_or_path, O_RDONLY | O_CLOEXEC);
        ssize_t got = fd >= 0 ? read(fd, magic, 4) : -1;
        if (fd >= 0)
            close(fd);
        if (got != 4 || memcmp(magic, "GGUF", 4) != 0)
            return llm_errf(err, "%s: not a GGUF file", name_or_path);
        *gguf_path = llm_xstrdup(name_or_path);
        return 0;
    }
    llm_manifest m;
    if (llm_store_get(s, name_or_path, &m, err))
        return -1;
    char *blob = llm_store_blob_path(s, m.digest);
    if (access(blob, R_OK) != 0) {
        llm_errf(err, "model '%s': its blob %s is missing (run `llmap store check`)", m.name, m.digest);
        free(blob);
        llm_manifest_free(&m);
        return -1;
    }
    *gguf_path = blob;
    if (man)
        *man = m;
    else
        llm_manifest_free(&m);
    return 0;
}

int llm_store_resolve(llm_store *s, const char *name_or_path, char **gguf_path, llm_err *err)
{
    return llm_store_resolve_ex(s, name_or_path, gguf_path, NULL, err);
}

static int cmp_manifest(const void *a, const void *b)
{
    return strcmp(((const llm_manifest *)a)->name, ((const llm_manifest *)b)->name);
}

/* Every manifest that parses; with only_complete, those whose blob exists with the right size. */
static int read_all(llm_store *s, llm_model_list *out, bool only_complete, llm_buf *problems, int *n_problems,
                    llm_err *err)
{
    memset(out, 0, sizeof *out);
    DIR *d = opendir(s->manifests);
    if (!d)
        return llm_errf(err, "%s: %s", s->manifests, strerror(errno));
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        llm_name n;
        if (name_from_file(e->d_name, &n)) {
            if (problems) {
                llm_buf_printf(problems, "manifests/%s: not a manifest file name\n", e->d_name);
                (*n_problems)++;
            }
            continue;
        }
        char *path = path_join(s->manifests, e->d_name);
        llm_manifest m;
        llm_err e2;
        int rc = load_manifest(path, &n, &m, &e2);
        free(path);
        if (rc) {
            if (problems) {
                llm_buf_printf(problems, "%s\n", e2.msg);
                (*n_problems)++;
            }
            continue;
        }
        if (only_complete) {
            char *blob = llm_store_blob_path(s, m.digest);
            struct stat st;
            int ok = stat(blob, &st) == 0 && (uint64_t)st.st_size == m.size;
            free(blob);
            if (!ok) {
                llm_manifest_free(&m);
                continue;
            }
        }
        if (out->n == cap) {
            cap = cap ? cap * 2 : 16;
            out->items = llm_xrealloc(out->items, cap * sizeof *out->items);
        }
        out->items[out->n++] = m;
    }
    closedir(d);
    if (out->n)
        qsort(out->items, out->n, sizeof *out->items, cmp_manifest);
    return 0;
}

int llm_store_list(llm_store *s, llm_model_list *out, llm_err *err)
{
    return read_all(s, out, true, NULL, NULL, err);
}

void llm_model_list_free(llm_model_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        llm_manifest_free(&l->items[i]);
    free(l->items);
    memset(l, 0, sizeof *l);
}

/* ---- import ------------------------------------------------------------------------------ */

static int copy_file(int in, int out, const char *src, llm_err *err)
{
    size_t cap = 1 << 20;
    char *buf = malloc(cap);
    if (!buf)
        return llm_errf(err, "out of memory");
    int rc = 0;
    for (;;) {
        ssize_t r = read(in, buf, cap);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = llm_errf(err, "%s: read: %s", src, strerror(errno));
            break;
        }
        if (r == 0)
            break;
        for (ssize_t off = 0; off < r;) {
            ssize_t w = write(out, buf + off, (size_t)(r - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                rc = llm_errf(err, "write: %s", strerror(errno));
                goto done;
            }
            off += w;
        }
    }
done:
    free(buf);
    return rc;
}

/* Puts the bytes of src at tmp: a reflink (copy-on-write clone) when the filesystem can, a
 * hard link when on the same filesystem (no data copied; the blob shares the inode), a copy
 * otherwise. *how says which. */
static int place_file(const char *src, const char *tmp, const char **how, llm_err *err)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return llm_errf(err, "%s: %s", src, strerror(errno));
    int out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
    if (out < 0) {
        int e = errno;
        close(in);
        return llm_errf(err, "%s: %s", tmp, strerror(e));
    }
    int rc = 0;
    if (ioctl(out, FICLONE, in) == 0) {
        *how = "reflinked";
    } else {
        close(out);
        unlink(tmp);
        out = -1;
        if (link(src, tmp) == 0) {
            *how = "hard-linked";
        } else {
            out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
            if (out < 0)
                rc = llm_errf(err, "%s: %s", tmp, strerror(errno));
            else
                rc = copy_file(in, out, src, err);
            *how = "copied";
        }
    }
    if (rc == 0 && out >= 0 && fsync(out) != 0)
        rc = llm_errf(err, "%s: fsync: %s", tmp, strerror(errno));
    if (out >= 0)
        close(out);
    close(in);
    if (rc)
        unlink(tmp);
    return rc;
}

int llm_store_import(llm_store *s, const char *gguf_path, const char *name, llm_err *err)
{
    return llm_store_import_how(s, gguf_path, name, NULL, err);
}

int llm_store_import_how(llm_store *s, const char *gguf_path, const char *name, const char **how_out,
                         llm_err *err)
{
    llm_name n;
    if (llm_name_parse(name, &n, err))
        return -1;
    if (llm_check_gguf_file(gguf_path, err))
        return llm_err_prefix(err, "not importing");
    if (llm_store_lock(s, false, false, err))
        return -1;
    char *tmp = llm_store_tmpname(s, "import");
    const char *how = "";
    char hex[65];
    int rc = place_file(gguf_path, tmp, &how, err);
    /* Hash what was placed, not the source: that is the content the blob will have even if
     * the source changes meanwhile. */
    if (rc == 0 && (rc = llm_sha256_file(tmp, hex, err)) != 0)
        unlink(tmp);
    struct stat st;
    if (rc == 0 && stat(tmp, &st) != 0) {
        rc = llm_errf(err, "%s: %s", tmp, strerror(errno));
        unlink(tmp);
    }
    if (rc == 0) {
        llm_manifest m = {0};
        m.name = n.full;
        snprintf(m.digest, sizeof m.digest, "sha256-%s", hex);
        m.size = (uint64_t)st.st_size;
        m.source = (char *)gguf_path;
        rc = llm_store_add(s, tmp, &m, err);
        if (rc)
            unlink(tmp);
    }
    free(tmp);
    llm_store_unlock(s);
    if (how_out)
        *how_out = how;
    return rc;
}

/* ---- removal and garbage collection ---------------------------------------------------- */

int llm_store_rm(llm_store *s, const char *name, llm_err *err)
{
    llm_name n;
    if (llm_name_parse(name, &n, err))
        return -1;
    char *path = manifest_path(s, &n);
    int rc = 0;
    if (unlink(path) != 0)
        rc = errno == ENOENT ? llm_errf(err, "model '%s' not found", n.full)
                             : llm_errf(err, "%s: %s", path, strerror(errno));
    free(path);
    if (rc || llm_fsync_dir(s->manifests, err))
        return -1;
    /* The name is gone; its blob is garbage unless another name shares it. A busy store
     * keeps the garbage for a later collection. */
    llm_err gc_err;
    llm_store_gc(s, &gc_err);
    return 0;
}

static int is_referenced(const llm_model_list *l, const char *digest)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->items[i].digest, digest))
            return 1;
    return 0;
}

int llm_store_gc(llm_store *s, llm_err *err)
{
    int had = s->lock_mode;
    if (had != 2 && llm_store_lock(s, true, true, err)) {
        /* A failed flock conversion may have dropped the shared lock: take it back. */
        if (had == 1)
            llm_store_lock(s, false, false, NULL);
        return -1;
    }
    llm_model_list all;
    int removed = 0;
    if (read_all(s, &all, false, NULL, NULL, err)) {
        removed = -1;
        goto out;
    }
    DIR *d = opendir(s->blobs);
    if (!d) {
        removed = llm_errf(err, "%s: %s", s->blobs, strerror(errno));
        llm_model_list_free(&all);
        goto out;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!llm_digest_valid(e->d_name, false) || is_referenced(&all, e->d_name))
            continue;
        char *p = path_join(s->blobs, e->d_name);
        if (unlink(p) == 0)
            removed++;
        free(p);
    }
    closedir(d);
    llm_model_list_free(&all);
    llm_fsync_dir(s->blobs, NULL);
out:
    if (had != 2)
        llm_store_unlock(s);
    if (had == 1)
        llm_store_lock(s, false, false, NULL);
    return removed;
}

int llm_store_cp(llm_store *s, const char *src, const char *dst, llm_err *err)
{
    llm_name dn;
    if (llm_name_parse(dst, &dn, err))
        return llm_err_prefix(err, "destination");
    llm_manifest m;
    if (llm_store_get(s, src, &m, err))
        return -1;
    free(m.name);
    m.name = llm_xstrdup(dn.full);
    free(m.created);
    m.created = NULL;
    int rc = llm_store_add(s, NULL, &m, err);
    llm_manifest_free(&m);
    return rc;
}

/* ---- check ------------------------------------------------------------------------------- */

/* Removes (with fix) or counts the leftover temp files of one directory. */
static void sweep_temps(const char *dir, bool all, bool fix, llm_buf *report, int *n_temps)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (!all && strncmp(e->d_name, ".tmp-", 5) != 0)
            continue;
        char *p = path_join(dir, e->d_name);
        if (fix && unlink(p) == 0)
            llm_buf_printf(report, "removed leftover temp file %s\n", p);
        else
            (*n_temps)++;
        free(p);
    }
    closedir(d);
}

int llm_store_check(llm_store *s, bool fix, llm_buf *report, int *n_problems, llm_err *err)
{
    *n_problems = 0;
    if (fix && llm_store_lock(s, true, true, err))
        return -1;
    llm_model_list all;
    if (read_all(s, &all, false, report, n_problems, err)) {
        llm_store_unlock(s);
        return -1;
    }
    /* Every blob: a well-formed name and content matching it. */
    DIR *d = opendir(s->blobs);
    struct dirent *e;
    int n_blobs = 0, n_unref = 0, n_temps = 0;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char *p = path_join(s->blobs, e->d_name);
        char hex[65];
        llm_err e2;
        if (!llm_digest_valid(e->d_name, false)) {
            llm_buf_printf(report, "blobs/%s: not a blob name (sha256-<64 hex>)\n", e->d_name);
            (*n_problems)++;
        } else if (llm_sha256_file(p, hex, &e2)) {
            llm_buf_printf(report, "blobs/%s: %s\n", e->d_name, e2.msg);
            (*n_problems)++;
        } else if (strcmp(hex, e->d_name + 7) != 0) {
            llm_buf_printf(report, "blobs/%s: content does not match its digest (sha256 is %s)\n", e->d_name,
                           hex);
            (*n_problems)++;
            /* Useless under its name: removed, its models stop being listed until pulled or
             * imported again (which restores the blob). */
            if (fix && unlink(p) == 0)
                llm_buf_printf(report, "removed corrupted blob %s; pull or import its models again\n", e->d_name);
        } else if (!is_referenced(&all, e->d_name)) {
            n_unref++;
            if (fix && unlink(p) == 0)
                llm_buf_printf(report, "removed unreferenced blob %s\n", e->d_name);
        }
        n_blobs++;
        free(p);
    }
    if (d)
        closedir(d);
    /* Every manifest: its blob exists with the recorded size. */
    for (size_t i = 0; i < all.n; i++) {
        const llm_manifest *m = &all.items[i];
        char *p = llm_store_blob_path(s, m->digest);
        struct stat st;
        if (stat(p, &st) != 0) {
            llm_buf_printf(report, "model '%s': blob %s is missing\n", m->name, m->digest);
            (*n_problems)++;
        } else if ((uint64_t)st.st_size != m->size) {
            llm_buf_printf(report, "model '%s': blob %s has %lld bytes, manifest says %llu\n", m->name, m->digest,
                           (long long)st.st_size, (unsigned long long)m->size);
            (*n_problems)++;
        }
        free(p);
    }
    sweep_temps(s->blobs, false, fix, report, &n_temps);
    sweep_temps(s->manifests, false, fix, report, &n_temps);
    sweep_temps(s->tmp, true, fix, report, &n_temps);
    llm_buf_printf(report, "%zu models, %d blobs checked", all.n, n_blobs);
    if (!fix && n_unref)
        llm_buf_printf(report, ", %d unreferenced (harmless; --fix removes them)", n_unref);
    if (!fix && n_temps)
        llm_buf_printf(report, ", %d temp/partial files (harmless; --fix removes them)", n_temps);
    llm_buf_printf(report, ", %d problems\n", *n_problems);
    llm_model_list_free(&all);
    if (fix)
        llm_store_unlock(s);
    return 0;
}
