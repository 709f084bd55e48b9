/*
 * Pull: downloading models into the store over HTTP(S) with libcurl — a single GGUF file, or
 * an image from an OCI/Docker distribution registry in the layout Ollama's registry uses:
 *
 *   GET /v2/<repo>/manifests/<tag>   {"schemaVersion":2, "config":{...}, "layers":[
 *                                       {"mediaType":"application/vnd.ollama.image.model",
 *                                        "digest":"sha256:<hex>", "size":N}, ... ]}
 *   GET /v2/<repo>/blobs/<digest>    the bytes of one layer
 *
 * Layers llmap uses: .model (the GGUF), .template, .params (JSON options), .system; others
 * (license, adapters, projectors) are ignored. Big bodies go to a partial file in the store's
 * tmp dir, named after what is being fetched, so a second pull after an interruption (even
 * SIGKILL) continues with an HTTP Range request. Every byte is verified before the blob is
 * renamed into blobs/, and the manifest is written last, so nothing partial is ever listed.
 */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store.h"

#define SMALL_BODY_MAX (4u << 20) /* manifests, templates, params */
#define DEFAULT_REGISTRY "https://registry.ollama.ai"

/* ---- sources ------------------------------------------------------------------------------ */

void llm_pull_source_free(llm_pull_source *ps)
{
    free(ps->url);
    free(ps->base);
    free(ps->repo);
    free(ps->tag);
    memset(ps, 0, sizeof *ps);
}

static int is_hex64(const char *h, size_t n)
{
    if (n != 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)h[i]))
            return 0;
    return 1;
}

static void lower_copy(char *dst, const char *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = (char)tolower((unsigned char)src[i]);
    dst[n] = 0;
}

/* "ns/name[:tag]" of a registry reference: validated with the name grammar (registry repos
 * follow the same rules), split into repo and tag. */
static int parse_reference(const char *ref, llm_pull_source *out, int add_library, llm_err *err)
{
    llm_name n;
    if (llm_name_parse(ref, &n, err))
        return llm_err_prefix(err, "registry reference");
    llm_buf repo = {0};
    if (add_library && n.n_ns == 0)
        llm_buf_puts(&repo, "library/");
    llm_buf_puts(&repo, n.path);
    out->repo = repo.data;
    out->tag = llm_xstrdup(n.tag);
    out->kind = LLM_PULL_REGISTRY;
    return 0;
}

int llm_pull_parse_source(const char *src, llm_pull_source *out, llm_err *err)
{
    memset(out, 0, sizeof *out);
    if (!src || !*src)
        return llm_errf(err, "no source given");
    if (strlen(src) > 4096)
        return llm_errf(err, "source is longer than 4096 bytes");
    const char *scheme_end = strstr(src, "://");
    if (!scheme_end)
        return parse_reference(src, out, 1, err) ? -1 : (out->base = llm_xstrdup(DEFAULT_REGISTRY), 0);
    size_t sl = (size_t)(scheme_end - src);
    const char *scheme = NULL;
    if (sl == 4 && !strncasecmp(src, "http", 4))
        scheme = "http";
    else if ((sl == 5 && !strncasecmp(src, "https", 5)) || (sl == 8 && !strncasecmp(src, "registry", 8)))
        scheme = "https";
    else
        return llm_errf(err, "source '%.*s://': only http://, https:// and registry:// are supported", (int)sl, src);
    const char *host = scheme_end + 3;
    const char *path = strchr(host, '/');
    if (!path || path == host)
        return llm_errf(err, "source '%s': no host or no path", src);
    for (const char *h = host; h < path; h++)
        if (!(isalnum((unsigned char)*h) || *h == '.' || *h == '-' || *h == ':' || *h == '[' || *h == ']'))
            return llm_errf(err, "source '%s': bad character in host", src);
    const char *frag = strchr(path, '#');
    const char *query = strchr(path, '?');
    size_t path_len = (size_t)((query && (!frag || query < frag)) ? query - path
                               : frag                             ? frag - path
                                                                  : (long)strlen(path));
    int is_file = path_len >= 5 && !strncasecmp(path + path_len - 5, ".gguf", 5);
    if (is_file && sl != 8) {
        out->kind = LLM_PULL_FILE;
        out->url = llm_xstrndup(src, frag ? (size_t)(frag - src) : strlen(src));
        if (frag) {
            if (strncmp(frag, "#sha256=", 8) != 0 || !is_hex64(frag + 8, strlen(frag + 8))) {
                llm_pull_source_free(out);
                return llm_errf(err, "source '%s': the fragment must be #sha256=<64 hex>", src);
            }
            lower_copy(out->sha256, frag + 8, 64);
        }
        return 0;
    }
    if (frag || query)
        return llm_errf(err, "source '%s': a registry reference has no ?query or #fragment", src);
    char ref[LLM_NAME_MAX + 1];
    if (path_len - 1 > LLM_NAME_MAX)
        return llm_errf(err, "source '%s': reference too long", src);
    memcpy(ref, path + 1, path_len - 1);
    ref[path_len - 1] = 0;
    if (parse_reference(ref, out, 0, err))
        return -1;
    llm_buf base = {0};
    llm_buf_printf(&base, "%s://%.*s", scheme, (int)(path - host), host);
    out->base = base.data;
    return 0;
}

/* ---- progress ------------------------------------------------------------------------------ */

typedef struct progress {
    const char *label;
    int mode;          /* 0 quiet, 1 lines, 2 bar */
    double t0, last;
    uint64_t start;    /* bytes already there when this transfer began (resume) */
    uint64_t now, total;
} progress;

static void progress_show(progress *p, int final)
{
    if (!p->mode)
        return;
    double t = llm_now();
    if (!final && t - p->last < (p->mode == 2 ? 0.1 : 1.0))
        return;
    p->last = t;
    double el = t - p->t0 > 1e-3 ? t - p->t0 : 1e-3;
    double rate = (double)(p->now - p->start) / el;
    char done[32], tot[32], rt[32], eta[32] = "";
    llm_human_bytes(done, sizeof done, (double)p->now);
    llm_human_bytes(tot, sizeof tot, (double)p->total);
    llm_human_bytes(rt, sizeof rt, rate);
    if (p->total > p->now && rate > 1)
        snprintf(eta, sizeof eta, "ETA %.0fs", (double)(p->total - p->now) / rate);
    int pct = p->total ? (int)(100.0 * (double)p->now / (double)p->total) : 0;
    if (p->mode == 2) {
        char bar[31];
        int fill = p->total ? (int)(30.0 * (double)p->now / (double)p->total) : 0;
        for (int i = 0; i < 30; i++)
            bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
        bar[30] = 0;
        fprintf(stderr, "\r%s %3d%% [%s] %s/%s %s/s %s   ", p->label, pct, bar, done, tot, rt, eta);
        if (final)
            fputc('\n', stderr);
    } else {
        fprintf(stderr, "%s: %s/%s (%d%%), %s/s%s%s\n", p->label, done, tot, pct, rt, *eta ? ", " : "", eta);
    }
    fflush(stderr);
}

/* ---- HTTP ---------------------------------------------------------------------------------- */

static CURL *http_new(const char *url, uint64_t rate_limit)
{
    CURL *c = curl_easy_init();
    if (!c)
        return NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_USERAGENT, "llmap");
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    /* Abort a stalled transfer (under 1 byte/s for 60 s) instead of hanging forever. */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (rate_limit)
        curl_easy_setopt(c, CURLOPT_MAX_RECV_SPEED_LARGE, (curl_off_t)rate_limit);
    return c;
}

typedef struct mem_sink {
    llm_buf buf;
    int too_big;
} mem_sink;

static size_t mem_write(char *p, size_t sz, size_t n, void *ud)
{
    mem_sink *m = ud;
    if (m->buf.len + n > SMALL_BODY_MAX) {
        m->too_big = 1;
        return 0;
    }
    llm_buf_append(&m->buf, p, n * sz);
    return n * sz;
}

/* GET into memory (bounded). Returns the HTTP status, or -1 with err on a transport error. */
static long http_get_small(const char *url, const char *accept, llm_buf *out, llm_err *err)
{
    CURL *c = http_new(url, 0);
    if (!c)
        return llm_errf(err, "cannot start libcurl");
    mem_sink m = {{0}, 0};
    struct curl_slist *h = NULL;
    if (accept) {
        char line[512];
        snprintf(line, sizeof line, "Accept: %s", accept);
        h = curl_slist_append(h, line);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, mem_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &m);
    CURLcode rc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (m.too_big) {
        llm_buf_free(&m.buf);
        return llm_errf(err, "%s: response larger than %u bytes", url, SMALL_BODY_MAX);
    }
    if (rc != CURLE_OK) {
        llm_buf_free(&m.buf);
        return llm_errf(err, "%s: %s", url, curl_easy_strerror(rc));
    }
    llm_buf_cstr(&m.buf);
    *out = m.buf;
    return code;
}

/* Received bytes reach the partial file in writes that end on SINK_CHUNK-aligned offsets, so
 * the page cache keeps the new model in large folios, which a mapping maps 2 MiB at a time
 * (a warm first answer about twice as fast as from a file written in curl's 16 KiB pieces,
 * see gguf/writer.c). A kill loses at most the buffer: the partial file stays whole. */
#define SINK_CHUNK (8u << 20)

typedef struct file_sink {
    int fd;
    uint64_t offset;   /* where this response's next bytes go */
    uint64_t flushed;  /* bytes of the file written; buf holds [flushed, offset) */
    uint8_t *buf;      /* SINK_CHUNK bytes */
    size_t buf_len;
    int checked;       /* status code looked at */
    long code;
    CURL *curl;
    progress *prog;
    llm_buf errbody;   /* body of an error response, for the message */
    int write_error;
    uint64_t limit;    /* expected size (0: unknown): a server sending more is cut off */
    int too_long;
    const char *meta;  /* where the validator of a fresh response is kept (NULL: not kept) */
    char validator[256]; /* strong ETag or Last-Modified of the current response */
} file_sink;

/* Remembers the response's validator for If-Range: a strong ETag, else Last-Modified. Each
 * response (after a redirect too) starts with its status line, which resets it. */
static size_t header_cb(char *p, size_t sz, size_t n, void *ud)
{
    file_sink *f = ud;
    size_t len = sz * n;
    if (len >= 5 && !strncmp(p, "HTTP/", 5)) {
        f->validator[0] = 0;
        return len;
    }
    int etag = len > 5 && !strncasecmp(p, "ETag:", 5);
    int lm = len > 14 && !strncasecmp(p, "Last-Modified:", 14);
    if (!etag && !(lm && !f->validator[0]))
        return len;
    const char *v = p + (etag ? 5 : 14), *end = p + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    if (etag && end - v >= 2 && !strncmp(v, "W/", 2))
        return len; /* weak validators cannot be used in If-Range */
    if (end > v && (size_t)(end - v) < sizeof f->validator) {
        memcpy(f->validator, v, (size_t)(end - v));
        f->validator[end - v] = 0;
    }
    return len;
}

/* A fresh (200) body starts a new partial file: record what it is a partial copy of. */
static void keep_validator(const file_sink *f)
{
    if (!f->meta)
        return;
    if (f->validator[0])
        llm_write_atomic(f->meta, f->validator, strlen(f->validator), NULL);
    else
        unlink(f->meta);
}

static int sink_flush(file_sink *f)
{
    if (llm_pwrite_all(f->fd, f->buf, f->buf_len, f->flushed)) {
        f->write_error = errno;
        return -1;
    }
    f->flushed += f->buf_len;
    f->buf_len = 0;
    return 0;
}

/* The first bytes decide what the response is: 206 continues the partial file, 200 means the
 * server ignored the Range and sends everything (start over), anything else is an error
 * whose body is kept for the message instead of being written to the file. */
static size_t file_write(char *p, size_t sz, size_t n, void *ud)
{
    file_sink *f = ud;
    size_t len = sz * n;
    if (!f->checked) {
        f->checked = 1;
        curl_easy_getinfo(f->curl, CURLINFO_RESPONSE_CODE, &f->code);
        if (f->code == 200 && f->offset > 0) {
            if (ftruncate(f->fd, 0) != 0)
                return 0;
            f->offset = f->flushed = 0;
            f->buf_len = 0;
            f->prog->start = f->prog->now = 0;
        }
        if (f->code == 200)
            keep_validator(f);
    }
    if (f->code != 200 && f->code != 206) {
        if (f->errbody.len < 512)
            llm_buf_append(&f->errbody, p, len < 512 ? len : 512);
        return len;
    }
    if (f->limit && f->offset + len > f->limit) {
        f->too_long = 1;
        return 0;
    }
    for (size_t done = 0; done < len;) {
        size_t room = SINK_CHUNK - (size_t)(f->offset % SINK_CHUNK);
        size_t take = len - done < room ? len - done : room;
        memcpy(f->buf + f->buf_len, p + done, take);
        f->buf_len += take;
        f->offset += take;
        done += take;
        if (f->offset % SINK_CHUNK == 0 && sink_flush(f))
            return 0;
    }
    f->prog->now = f->offset;
    progress_show(f->prog, 0);
    return len;
}

static int xfer_info(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    (void)dlnow, (void)ultotal, (void)ulnow;
    file_sink *f = ud;
    if (dltotal > 0 && f->checked && (f->code == 200 || f->code == 206))
        f->prog->total = (f->code == 206 ? f->prog->start : 0) + (uint64_t)dltotal;
    return 0;
}

/* Downloads url into the partial file (kept on failure so the next pull resumes). Takes an
 * exclusive lock on the partial file so two pulls of the same thing cannot interleave. */
static int download(const char *url, const char *partial, const char *meta, uint64_t expect_size,
                    const llm_pull_opts *o, const char *label, llm_err *err)
{
    int fd = open(partial, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return llm_errf(err, "%s: %s", partial, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return llm_errf(err, "another pull of %s is in progress", label);
    }
    struct stat st;
    fstat(fd, &st);
    uint64_t have = (uint64_t)st.st_size;
    if (expect_size && have > expect_size) { /* cannot be ours: start over */
        if (ftruncate(fd, 0) != 0) {
            close(fd);
            return llm_errf(err, "%s: %s", partial, strerror(errno));
        }
        have = 0;
    }
    progress prog = {label, o->progress, llm_now(), 0, have, have, expect_size};
    if (expect_size && have == expect_size) {
        close(fd); /* complete already: only verification is left */
        return 0;
    }
    if (have && o->progress)
        fprintf(stderr, "%s: resuming at byte %llu\n", label, (unsigned long long)have);
    CURL *c = http_new(url, o->rate_limit);
    if (!c) {
        close(fd);
        return llm_errf(err, "cannot start libcurl");
    }
    file_sink f = {.fd = fd, .offset = have, .flushed = have, .buf = llm_xmalloc(SINK_CHUNK), .curl = c, .prog = &prog,
                   .limit = expect_size, .meta = meta};
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &f);
    /* If-Range: the server sends the rest only if the file is still the one the partial
     * copy came from, otherwise all of it (200, start over) — never a splice of two files. */
    struct curl_slist *hdrs = NULL;
    if (have && meta && access(meta, F_OK) == 0) {
        llm_buf line = {0};
        FILE *mf = fopen(meta, "r");
        char vbuf[256];
        if (mf && fgets(vbuf, sizeof vbuf, mf) && vbuf[0] && !strpbrk(vbuf, "\r\n")) {
            llm_buf_printf(&line, "If-Range: %s", vbuf);
            hdrs = curl_slist_append(hdrs, line.data);
            curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
        }
        if (mf)
            fclose(mf);
        llm_buf_free(&line);
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, file_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &f);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, xfer_info);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &f);
    /* CURLOPT_RANGE rather than RESUME_FROM: a server that ignores the Range and answers
     * 200 is then handled here (start over) instead of failing inside libcurl. */
    char range[32];
    snprintf(range, sizeof range, "%llu-", (unsigned long long)have);
    if (have)
        curl_easy_setopt(c, CURLOPT_RANGE, range);
    CURLcode rc = curl_easy_perform(c);
    if (!f.write_error)
        sink_flush(&f); /* what arrived is kept, also when the transfer failed: the next pull resumes */
    free(f.buf);
    long code = f.code;
    if (!f.checked)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    curl_slist_free_all(hdrs);
    int result = 0;
    if (f.too_long) {
        /* Nothing of it can be trusted; an empty file is removed below. */
        int trunc_rc = ftruncate(fd, 0);
        (void)trunc_rc;
        result = llm_errf(err, "%s: the server sent more than the expected %llu bytes: rejected", url,
                          (unsigned long long)expect_size);
    } else if (f.write_error)
        result = llm_errf(err, "%s: write: %s", partial, strerror(f.write_error));
    else if (code == 416 && have > 0)
        result = 0; /* the partial file already holds everything the server has */
    else if (code != 200 && code != 206 && code != 0)
        result = llm_errf(err, "%s: HTTP %ld%s%.*s", url, code, f.errbody.len ? ": " : "",
                          (int)(f.errbody.len > 200 ? 200 : f.errbody.len), f.errbody.data ? f.errbody.data : "");
    else if (rc != CURLE_OK)
        result = llm_errf(err, "%s: %s%s", url, curl_easy_strerror(rc),
                          f.offset > 0 ? " (the partial download is kept; pull again to resume)" : "");
    if (result == 0 && fsync(fd) != 0)
        result = llm_errf(err, "%s: fsync: %s", partial, strerror(errno));
    if (result == 0) {
        prog.total = prog.now = f.offset > have ? f.offset : have;
        progress_show(&prog, 1);
    } else if (o->progress == 2) {
        fputc('\n', stderr);
    }
    llm_buf_free(&f.errbody);
    /* An empty partial file (the request failed before any byte arrived) resumes nothing. */
    struct stat end;
    if (result != 0 && fstat(fd, &end) == 0 && end.st_size == 0) {
        unlink(partial);
        if (meta)
            unlink(meta);
    }
    close(fd);
    return result;
}

/* ---- verification and commit --------------------------------------------------------------- */

static int sha256_mem(const void *p, size_t n, char hex[65])
{
    unsigned char md[32];
    unsigned int len = 0;
    if (EVP_Digest(p, n, md, &len, EVP_sha256(), NULL) != 1)
        return -1;
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return 0;
}

/* Checks the partial file against the expected digest (when known) and the GGUF format, then
 * commits it with the manifest. A file that fails is deleted: resuming it cannot help. */
static int verify_and_commit(llm_store *s, const char *partial, const char *expect_hex, uint64_t expect_size,
                             llm_manifest *m, llm_err *err)
{
    char hex[65];
    struct stat st;
    if (stat(partial, &st) != 0)
        return llm_errf(err, "%s: %s", partial, strerror(errno));
    if (expect_size && (uint64_t)st.st_size != expect_size) {
        unlink(partial);
        return llm_errf(err, "download has %lld bytes, expected %llu: rejected", (long long)st.st_size,
                        (unsigned long long)expect_size);
    }
    if (llm_sha256_file(partial, hex, err))
        return -1;
    if (expect_hex && *expect_hex && strcasecmp(hex, expect_hex) != 0) {
        unlink(partial);
        return llm_errf(err, "sha256 mismatch: expected %s, got %s: download rejected", expect_hex, hex);
    }
    if (llm_check_gguf_file(partial, err)) {
        unlink(partial);
        return llm_err_prefix(err, "downloaded file rejected");
    }
    snprintf(m->digest, sizeof m->digest, "sha256-%s", hex);
    m->size = (uint64_t)st.st_size;
    if (llm_store_add(s, partial, m, err)) {
        unlink(partial);
        return -1;
    }
    return 0;
}

/* A local name from a file URL: "…/Qwen2-0.5B.Q4_0.gguf" → "qwen2-0.5b.q4_0:latest". */
static int name_from_url(const char *url, llm_name *n, llm_err *err)
{
    const char *b = strrchr(url, '/');
    b = b ? b + 1 : url;
    const char *q = strchr(b, '?');
    size_t len = q ? (size_t)(q - b) : strlen(b);
    if (len > 5)
        len -= 5; /* ".gguf" */
    char buf[LLM_NAME_PART_MAX + 1];
    size_t o = 0;
    for (size_t i = 0; i < len && o < LLM_NAME_PART_MAX; i++) {
        int c = tolower((unsigned char)b[i]);
        int ok = isalnum(c) || ((c == '.' || c == '_' || c == '-') && o > 0 && buf[o - 1] != '.');
        if (ok)
            buf[o++] = (char)c;
        else if (o > 0 && buf[o - 1] != '-')
            buf[o++] = '-';
    }
    buf[o] = 0;
    if (llm_name_parse(buf, n, err))
        return llm_err_prefix(err, "cannot derive a model name from the URL; give one: llmap pull URL NAME");
    return 0;
}

static int pull_file(llm_store *s, const llm_pull_source *src, const llm_pull_opts *o, llm_name *n, llm_err *err)
{
    const char *want = o->sha256 && *o->sha256 ? o->sha256 : src->sha256;
    if (*want && !is_hex64(want, strlen(want)))
        return llm_errf(err, "--sha256: expected 64 hex digits");
    /* The partial file is named after the URL so a second pull finds it. */
    char key[65];
    sha256_mem(src->url, strlen(src->url), key);
    llm_buf partial = {0};
    llm_buf_printf(&partial, "%s/pull-%.32s.partial", llm_store_tmpdir(s), key);
    llm_manifest m = {0};
    m.name = n->full;
    m.source = src->url;
    llm_buf meta = {0};
    llm_buf_printf(&meta, "%s.meta", partial.data);
    int rc = download(src->url, partial.data, meta.data, 0, o, n->full, err);
    if (rc == 0)
        rc = verify_and_commit(s, partial.data, want, 0, &m, err);
    if (access(partial.data, F_OK) != 0)
        unlink(meta.data); /* consumed or rejected: nothing left to resume */
    llm_buf_free(&partial);
    llm_buf_free(&meta);
    return rc;
}

/* ---- registry ------------------------------------------------------------------------------ */

typedef struct layer {
    char digest[72]; /* "sha256:<hex>" */
    uint64_t size;
} layer;

static int get_layer(const cJSON *l, layer *out, llm_err *err)
{
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(l, "digest");
    const cJSON *sz = cJSON_GetObjectItemCaseSensitive(l, "size");
    if (!cJSON_IsString(d) || !llm_digest_valid(d->valuestring, true) || d->valuestring[6] != ':')
        return llm_errf(err, "registry manifest: layer digest must be \"sha256:<64 lowercase hex>\"");
    if (!cJSON_IsNumber(sz) || sz->valuedouble < 0 || sz->valuedouble > 9e15)
        return llm_errf(err, "registry manifest: layer size must be a byte count");
    snprintf(out->digest, sizeof out->digest, "%s", d->valuestring);
    out->size = (uint64_t)sz->valuedouble;
    return 0;
}

/* A small layer (template, params, system) fetched into memory and checked against its digest. */
static char *fetch_small_layer(const llm_pull_source *src, const layer *ly, llm_err *err)
{
    if (ly->size > SMALL_BODY_MAX) {
        llm_errf(err, "layer %s: %llu bytes is too large", ly->digest, (unsigned long long)ly->size);
        return NULL;
    }
    llm_buf url = {0}, body = {0};
    llm_buf_printf(&url, "%s/v2/%s/blobs/%s", src->base, src->repo, ly->digest);
    long code = http_get_small(url.data, NULL, &body, err);
    char hex[65];
    char *out = NULL;
    if (code < 0)
        ;
    else if (code != 200)
        llm_errf(err, "%s: HTTP %ld", url.data, code);
    else if (body.len != ly->size || sha256_mem(body.data ? body.data : "", body.len, hex) ||
             strcmp(hex, ly->digest + 7) != 0)
        llm_errf(err, "layer %s: content does not match its digest: rejected", ly->digest);
    else
        out = llm_xstrndup(body.data ? body.data : "", body.len);
    llm_buf_free(&url);
    llm_buf_free(&body);
    return out;
}

/* Ollama's registry templates are Go templates ("{{ .Prompt }}"); llmap renders Jinja. Only a
 * template that is not Go syntax becomes the override; otherwise the model's own is used. */
static int is_go_template(const char *t)
{
    return strstr(t, "{{ .") || strstr(t, "{{- .") || strstr(t, "{{.") || strstr(t, "{{ if .") ||
           strstr(t, "{{- if .") || strstr(t, "{{ range .");
}

static int pull_registry(llm_store *s, const llm_pull_source *src, const llm_pull_opts *o, llm_name *n,
                         llm_err *err)
{
    llm_buf url = {0}, body = {0};
    llm_buf_printf(&url, "%s/v2/%s/manifests/%s", src->base, src->repo, src->tag);
    long code = http_get_small(url.data,
                               "application/vnd.docker.distribution.manifest.v2+json, "
                               "application/vnd.oci.image.manifest.v1+json",
                               &body, err);
    int rc = -1;
    cJSON *root = NULL;
    llm_manifest m = {0};
    char *partial = NULL;
    if (code < 0)
        goto out;
    if (code == 404) {
        llm_errf(err, "%s/%s:%s: not found in the registry", src->base, src->repo, src->tag);
        goto out;
    }
    if (code == 401) {
        llm_errf(err, "%s: the registry requires authentication (not supported)", url.data);
        goto out;
    }
    if (code != 200) {
        llm_errf(err, "%s: HTTP %ld", url.data, code);
        goto out;
    }
    root = cJSON_ParseWithLength(body.data ? body.data : "", body.len);
    const cJSON *layers = root ? cJSON_GetObjectItemCaseSensitive(root, "layers") : NULL;
    if (!cJSON_IsArray(layers)) {
        llm_errf(err, "%s: not an image manifest (no \"layers\" array)", url.data);
        goto out;
    }
    layer model = {{0}, 0};
    const cJSON *l;
    m.name = n->full;
    m.source = llm_xstrdup(url.data);
    cJSON_ArrayForEach(l, layers)
    {
        const cJSON *mt = cJSON_GetObjectItemCaseSensitive(l, "mediaType");
        if (!cJSON_IsString(mt))
            continue;
        if (strncmp(mt->valuestring, "application/vnd.ollama.image.", 29) != 0)
            continue;
        /* The kind without media-type parameters ("template; name=x" is a template). */
        char t[16];
        size_t tl = strcspn(mt->valuestring + 29, "; \t");
        if (tl >= sizeof t)
            continue;
        memcpy(t, mt->valuestring + 29, tl);
        t[tl] = 0;
        layer ly;
        if (strcmp(t, "model") && strcmp(t, "template") && strcmp(t, "params") && strcmp(t, "system"))
            continue;
        if (get_layer(l, &ly, err))
            goto out;
        if (!strcmp(t, "model")) {
            if (model.size) {
                llm_errf(err, "registry manifest: more than one model layer");
                goto out;
            }
            model = ly;
            continue;
        }
        char *v = fetch_small_layer(src, &ly, err);
        if (!v)
            goto out;
        if (!strcmp(t, "template")) {
            if (is_go_template(v)) {
                if (o->progress)
                    fprintf(stderr, "note: the registry's chat template is a Go template; "
                                    "the model's own template will be used\n");
                free(v);
            } else {
                free(m.template_str);
                m.template_str = v;
            }
        } else if (!strcmp(t, "system")) {
            free(m.system);
            m.system = v;
        } else {
            int prc = llm_params_from_json(&m.params, v, strlen(v), true, err);
            free(v);
            if (prc) {
                llm_err_prefix(err, "params layer");
                goto out;
            }
        }
    }
    if (!model.size) {
        llm_errf(err, "%s: no layer of type application/vnd.ollama.image.model", url.data);
        goto out;
    }
    llm_buf blob_url = {0}, part = {0};
    llm_buf_printf(&blob_url, "%s/v2/%s/blobs/%s", src->base, src->repo, model.digest);
    llm_buf_printf(&part, "%s/pull-sha256-%s.partial", llm_store_tmpdir(s), model.digest + 7);
    partial = part.data;
    /* Already in the store (another name shares it): only the manifest is new. */
    char blob_name[72];
    snprintf(blob_name, sizeof blob_name, "sha256-%.64s", model.digest + 7);
    char *existing = llm_store_blob_path(s, blob_name);
    int have = access(existing, F_OK) == 0;
    free(existing);
    if (have) {
        snprintf(m.digest, sizeof m.digest, "%s", blob_name);
        m.size = model.size;
        rc = llm_store_add(s, NULL, &m, err);
    } else {
        /* Content-addressed: the digest already says what the partial file is a copy of. */
        rc = download(blob_url.data, partial, NULL, model.size, o, n->full, err);
        if (rc == 0)
            rc = verify_and_commit(s, partial, model.digest + 7, model.size, &m, err);
    }
    llm_buf_free(&blob_url);
out:
    m.name = NULL;
    llm_manifest_free(&m);
    free(partial);
    cJSON_Delete(root);
    llm_buf_free(&url);
    llm_buf_free(&body);
    return rc;
}

int llm_store_pull(llm_store *s, const char *source, const llm_pull_opts *o, char **pulled_name, llm_err *err)
{
    if (pulled_name)
        *pulled_name = NULL;
    llm_pull_source src;
    if (llm_pull_parse_source(source, &src, err))
        return -1;
    llm_name n;
    int rc;
    if (o->name)
        rc = llm_name_parse(o->name, &n, err);
    else if (src.kind == LLM_PULL_FILE)
        rc = name_from_url(src.url, &n, err);
    else {
        /* Local names drop the registry's default namespace: library/qwen2:0.5b → qwen2:0.5b. */
        llm_buf d = {0};
        llm_buf_printf(&d, "%s:%s", strncmp(src.repo, "library/", 8) ? src.repo : src.repo + 8, src.tag);
        rc = llm_name_parse(d.data, &n, err);
        llm_buf_free(&d);
    }
    if (rc == 0 && (rc = llm_store_lock(s, false, false, err)) == 0) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        rc = src.kind == LLM_PULL_FILE ? pull_file(s, &src, o, &n, err) : pull_registry(s, &src, o, &n, err);
        curl_global_cleanup();
        llm_store_unlock(s);
    }
    if (rc == 0 && pulled_name)
        *pulled_name = llm_xstrdup(n.full);
    llm_pull_source_free(&src);
    return rc;
}
