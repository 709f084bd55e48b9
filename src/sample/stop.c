/*
 * stop.c — stop strings matched across token boundaries.
 *
 * A model emits text in pieces ("<|im", "_end", "|>"), so a stop string can only be recognised
 * after several pieces. The matcher keeps the longest tail of the output that is still the
 * beginning of some stop string and releases everything before it; when a stop string
 * completes, the text before it is released and the rest dropped. Held text is always a whole
 * number of UTF-8 characters, because it starts where a stop string (valid UTF-8) starts in
 * text that the detokenizer only hands over complete.
 */
#include <stdlib.h>
#include <string.h>

#include "sample/sample.h"

void llm_stop_init(llm_stopper *st, const char *const *stops, size_t n)
{
    memset(st, 0, sizeof *st);
    for (size_t i = 0; i < n; i++)
        llm_stop_add(st, stops[i]);
}

void llm_stop_add(llm_stopper *st, const char *stop)
{
    if (!stop || !*stop)
        return;
    for (size_t i = 0; i < st->n_stops; i++)
        if (!strcmp(st->stops[i], stop))
            return;
    st->stops = llm_xrealloc(st->stops, (st->n_stops + 1) * sizeof *st->stops);
    st->stops[st->n_stops++] = llm_xstrdup(stop);
    size_t len = strlen(stop);
    if (len > st->max_len)
        st->max_len = len;
}

void llm_stop_free(llm_stopper *st)
{
    for (size_t i = 0; i < st->n_stops; i++)
        free(st->stops[i]);
    free(st->stops);
    llm_buf_free(&st->pending);
    llm_buf_free(&st->out);
    memset(st, 0, sizeof *st);
}

void llm_stop_reset(llm_stopper *st)
{
    st->pending.len = 0;
    st->out.len = 0;
    st->stopped = false;
}

/* Earliest position in s[0..n) where a stop string occurs in full, or n when none does. */
static size_t find_stop(const llm_stopper *st, const char *s, size_t n)
{
    size_t best = n;
    for (size_t i = 0; i < st->n_stops; i++) {
        const char *stop = st->stops[i];
        size_t len = strlen(stop);
        for (size_t at = 0; at + len <= n && at < best; at++)
            if (s[at] == stop[0] && !memcmp(s + at, stop, len)) {
                best = at;
                break;
            }
    }
    return best;
}

/* Length of the longest tail of s[0..n) that is a proper prefix of some stop string. */
static size_t held_tail(const llm_stopper *st, const char *s, size_t n)
{
    size_t most = st->max_len ? st->max_len - 1 : 0;
    if (most > n)
        most = n;
    for (size_t k = most; k > 0; k--)
        for (size_t i = 0; i < st->n_stops; i++) {
            size_t len = strlen(st->stops[i]);
            if (k < len && !memcmp(s + n - k, st->stops[i], k))
                return k;
        }
    return 0;
}

/* Moves pending[0..n) to out and shifts what follows to the front of pending. */
static void release(llm_stopper *st, size_t n)
{
    st->out.len = 0;
    llm_buf_append(&st->out, st->pending.data, n);
    if (n < st->pending.len)
        memmove(st->pending.data, st->pending.data + n, st->pending.len - n);
    st->pending.len -= n;
}

bool llm_stop_feed(llm_stopper *st, const char *text, size_t len, const char **emit, size_t *emit_len)
{
    st->out.len = 0;
    if (st->stopped) {
        *emit = "";
        *emit_len = 0;
        return true;
    }
    llm_buf_append(&st->pending, text, len);
    size_t at = find_stop(st, st->pending.data, st->pending.len);
    if (at < st->pending.len) {
        release(st, at);
        st->pending.len = 0;
        st->stopped = true;
    } else {
        release(st, st->pending.len - held_tail(st, st->pending.data, st->pending.len));
    }
    *emit = st->out.len ? st->out.data : "";
    *emit_len = st->out.len;
    return st->stopped;
}

void llm_stop_flush(llm_stopper *st, const char **emit, size_t *emit_len)
{
    st->out.len = 0;
    if (!st->stopped)
        release(st, st->pending.len);
    *emit = st->out.len ? st->out.data : "";
    *emit_len = st->out.len;
}
