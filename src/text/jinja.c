/*
 * jinja.c — a bounded interpreter for the subset of Jinja2 that chat templates use.
 *
 * Chat templates come from model files, so this code treats them as hostile input: every
 * limit is explicit (template size, parser nesting, evaluation depth, loop iterations and
 * total work, memory, output size) and every failure is an error naming the construct and
 * its line:column, never a crash. Rendering follows Hugging Face transformers'
 * apply_chat_template: trim_blocks and lstrip_blocks on, loopcontrols (break/continue) on,
 * tojson without HTML escaping, raise_exception() available.
 *
 * Structure: a lexer turns the template into tokens (text runs with the whitespace-control
 * rules already applied, tag delimiters, expression tokens); a recursive-descent parser
 * builds a tree; an evaluator walks it. Everything a render allocates lives in one arena
 * that is freed at the end, and errors unwind with longjmp to the top: this keeps the many
 * small evaluation functions free of cleanup paths, and makes an error in the middle of a
 * render leak-free by construction. Nothing here is global.
 *
 * Supported: {{ }}, {% %}, {# #}, -/+ whitespace control; if/elif/else, for (with
 * `if` filter, else, two-name unpacking, loop.index/index0/first/last/length/revindex/
 * previtem/nextitem), set (names, ns.attr, block set), macro (with defaults), break,
 * continue, generation; literals, lists, dicts, tuples, attribute/index access, slices,
 * arithmetic, ~, comparisons (chained), and/or/not, in/not in, conditional expressions,
 * filters, tests, string/dict/list methods, range(), namespace(), dict(), raise_exception(),
 * strftime_now(). Anything else is reported as unsupported.
 *   filters: abs capitalize count d default dictsort e escape first float indent int items join
 *            last length list lower map max min reject rejectattr replace reverse round safe
 *            select selectattr sort string sum title tojson trim unique upper wordcount
 *   tests:   boolean callable defined divisibleby eq/equalto/== even false float ge/>= gt/> in
 *            integer iterable le/<= lower lt/< mapping ne/!= none number odd sameas sequence
 *            string true undefined upper
 *   methods: str strip lstrip rstrip split startswith endswith upper lower title capitalize
 *            replace find count join; dict items keys values get; list append index count
 */
#include "text/template.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- limits ----------------------------------------------------------------------------
 * Output, memory and work caps grow with the conversation, so a long chat is never refused
 * while a small hostile template is stopped early (and cheaply). */

#define JJ_MAX_TEMPLATE (1u << 20)        /* bytes of template text */
#define JJ_OUTPUT_BASE (8ull << 20)       /* rendered bytes: base + 8 x input bytes */
#define JJ_MEMORY_BASE (32ull << 20)      /* arena bytes: base + 32 x input bytes */
#define JJ_STEPS_BASE 200000ull           /* statements, expressions, iterations, 256-byte */
#define JJ_STEPS_PER_MESSAGE 5000ull      /*   blocks copied or scanned: base + per message */
#define JJ_MAX_DEPTH 400                  /* parser and evaluator recursion (stack safety) */
#define JJ_MAX_MACRO_DEPTH 32             /* nested macro calls */
#define JJ_MAX_ITEMS (1u << 20)           /* elements in one list or dict */

/* ---- values ---------------------------------------------------------------------------- */

typedef enum jt {
    JV_UNDEF, JV_NONE, JV_BOOL, JV_INT, JV_FLOAT, JV_STR, JV_LIST, JV_DICT,
    JV_NS,    /* namespace(): a dict whose attributes may be assigned */
    JV_LOOP,  /* the `loop` variable of a for */
    JV_MACRO, /* a {% macro %} */
    JV_FUNC,  /* a builtin function or a bound method, resolved when called */
} jt;

typedef struct jstr { size_t len; char s[]; } jstr; /* NUL-terminated */
typedef struct jlist jlist;
typedef struct jdict jdict;
typedef struct jloop jloop;
typedef struct node node;

typedef struct jv {
    jt t;
    union {
        int b;
        int64_t i;
        double f;
        const jstr *s;
        jlist *l;
        jdict *d;
        jloop *loop;
        const node *macro;
        struct { const char *name; struct jv *self; } fn;
        const char *undef_name; /* for messages */
    } u;
} jv;

struct jlist { size_t n, cap; jv *v; };
struct jdict { size_t n, cap; jv *k, *v; };
struct jloop { size_t i, n; const jv *items; };

/* ---- tokens and tree ------------------------------------------------------------------- */

typedef enum tk {
    T_TEXT, T_VAR_BEGIN, T_VAR_END, T_BLOCK_BEGIN, T_BLOCK_END, T_NAME, T_STRING, T_INT, T_FLOAT,
    T_OP, T_EOF
} tk;

typedef struct tok {
    tk t;
    uint32_t off;      /* byte offset in the template, for messages */
    const char *s;     /* text (T_TEXT, into the template), name, unescaped string, op */
    size_t len;
    int64_t i;
    double f;
} tok;

typedef enum nk {
    /* statements */
    N_SEQ, N_TEXT, N_OUT, N_IF, N_FOR, N_SET, N_SET_ATTR, N_SET_BLOCK, N_MACRO, N_BREAK, N_CONTINUE,
    /* expressions */
    E_LIT, E_NAME, E_LIST, E_DICT, E_ATTR, E_INDEX, E_SLICE, E_CALL, E_FILTER, E_TEST, E_NEG, E_POS,
    E_NOT, E_AND, E_OR, E_BIN, E_CMP, E_COND, E_CONCAT,
} nk;

typedef struct nlist { node **v; size_t n, cap; } nlist;

struct node {
    nk k;
    uint32_t off;
    int op;               /* E_BIN/E_CMP operator, E_TEST negation */
    const char *name;     /* variable, attribute, filter, test, macro, set target */
    const char *name2;    /* second for target; attribute of N_SET_ATTR */
    jv lit;
    node *a, *b, *c, *d;  /* operands; for: iter, cond, body, else; if: cond, then, else */
    nlist args;           /* items, positional args, statements, dict keys, cmp operands */
    nlist kw;             /* keyword values / dict values / macro defaults */
    const char **kwn;     /* keyword names / macro parameter names (parallel to kw) */
    int *cmp_ops;         /* E_CMP: operator between args[i] and args[i+1] */
};

enum { OP_ADD = 1, OP_SUB, OP_MUL, OP_DIV, OP_FDIV, OP_MOD, OP_POW,
       OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_IN, OP_NOTIN };

/* ---- the interpreter state --------------------------------------------------------------- */

typedef struct chunk { struct chunk *next; size_t used, cap; } chunk; /* data follows, aligned */

typedef struct sbuf { char *p; size_t len, cap; } sbuf; /* arena-backed string builder */

typedef struct frame {
    struct frame *parent;
    jdict *vars;
} frame;

typedef struct jj {
    const char *src;
    size_t src_len;
    llm_err *err;
    jmp_buf fail;
    chunk *chunks;
    size_t mem;
    /* tokens */
    tok *toks;
    size_t ntok, captok, pos;
    /* evaluation */
    int depth, macro_depth;
    uint64_t steps, max_steps;
    size_t max_output, max_mem;
    sbuf *out;
    size_t out_total;
    int loop_ctl; /* 1 = break, 2 = continue pending */
    frame *globals;
} jj;

#define ALIGN 16
#define NOPOS UINT32_MAX /* error without a template position */

__attribute__((noreturn, format(printf, 3, 4))) static void fail_at(jj *J, uint32_t off, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (off == NOPOS) {
        llm_errf(J->err, "chat template: %s", msg);
        longjmp(J->fail, 1);
    }
    unsigned line = 1, col = 1;
    for (size_t i = 0; i < off && i < J->src_len; i++) {
        if (J->src[i] == '\n')
            line++, col = 1;
        else
            col++;
    }
    llm_errf(J->err, "chat template %u:%u: %s", line, col, msg);
    longjmp(J->fail, 1);
}

static void charge(jj *J, size_t bytes);

/* Arena memory, not zeroed: for bytes about to be overwritten (strings, buffers). */
static void *jalloc_raw(jj *J, size_t n)
{
    charge(J, n);
    n = (n + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    chunk *c = J->chunks;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > (64u << 10) ? n : (64u << 10);
        if (J->mem + cap > J->max_mem)
            fail_at(J, NOPOS, "template needs more than %zu MB of memory", J->max_mem >> 20);
        size_t head = (sizeof(chunk) + ALIGN - 1) & ~(size_t)(ALIGN - 1);
        c = malloc(head + cap);
        if (!c)
            fail_at(J, NOPOS, "out of memory");
        c->next = J->chunks, c->used = 0, c->cap = cap;
        J->chunks = c;
        J->mem += cap;
    }
    size_t head = (sizeof(chunk) + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    void *p = (char *)c + head + c->used;
    c->used += n;
    return p;
}

/* Arena memory, zeroed: for structures. */
static void *jalloc(jj *J, size_t n)
{
    void *p = jalloc_raw(J, n);
    memset(p, 0, n);
    return p;
}

static void free_arena(jj *J)
{
    while (J->chunks) {
        chunk *n = J->chunks->next;
        free(J->chunks);
        J->chunks = n;
    }
    free(J->toks);
    J->toks = NULL;
}

static void step(jj *J, uint32_t off)
{
    if (++J->steps > J->max_steps)
        fail_at(J, off, "template does too much work (more than %llu steps)", (unsigned long long)J->max_steps);
}

/* Work proportional to data: every allocation counts, and bytes copied or scanned count per
 * 256, so a template cannot spend unbounded time on a few huge strings or many tiny ones. */
static void charge(jj *J, size_t bytes)
{
    J->steps += 1 + (bytes >> 8);
    if (J->steps > J->max_steps)
        fail_at(J, NOPOS, "template does too much work (more than %llu steps)", (unsigned long long)J->max_steps);
}

static void enter(jj *J, uint32_t off)
{
    if (++J->depth > JJ_MAX_DEPTH)
        fail_at(J, off, "template nests too deeply (more than %d levels)", JJ_MAX_DEPTH);
}

static void leave(jj *J) { J->depth--; }

/* ---- strings, lists, dicts ----------------------------------------------------------------- */

static const jstr *mkstr(jj *J, const char *s, size_t n)
{
    jstr *r = jalloc_raw(J, sizeof(jstr) + n + 1);
    r->len = n;
    if (n)
        memcpy(r->s, s, n);
    r->s[n] = 0;
    return r;
}

static jv vstr(jj *J, const char *s, size_t n) { return (jv){.t = JV_STR, .u.s = mkstr(J, s, n)}; }
static jv vcstr(jj *J, const char *s) { return vstr(J, s, strlen(s)); }
static jv vint(int64_t i) { return (jv){.t = JV_INT, .u.i = i}; }
static jv vfloat(double f) { return (jv){.t = JV_FLOAT, .u.f = f}; }
static jv vbool(int b) { return (jv){.t = JV_BOOL, .u.b = !!b}; }
static jv vnone(void) { return (jv){.t = JV_NONE}; }
static jv vundef(const char *name) { return (jv){.t = JV_UNDEF, .u.undef_name = name}; }

static void sb_grow(jj *J, sbuf *b, size_t add)
{
    if (b->cap - b->len > add)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len <= add) {
        if (cap > (SIZE_MAX >> 2))
            fail_at(J, NOPOS, "string too large");
        cap *= 2;
    }
    char *p = jalloc_raw(J, cap);
    if (b->len)
        memcpy(p, b->p, b->len);
    b->p = p, b->cap = cap;
}

static void sb_add(jj *J, sbuf *b, const char *s, size_t n)
{
    if (!n)
        return;
    charge(J, n);
    sb_grow(J, b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}
static void sb_puts(jj *J, sbuf *b, const char *s) { sb_add(J, b, s, strlen(s)); }

static jv sb_val(jj *J, sbuf *b) { return vstr(J, b->p ? b->p : "", b->len); }

static jlist *mklist(jj *J, size_t cap)
{
    jlist *l = jalloc(J, sizeof *l);
    if (cap) {
        l->v = jalloc(J, cap * sizeof(jv));
        l->cap = cap;
    }
    return l;
}

static void list_push(jj *J, jlist *l, jv v)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        if (cap > JJ_MAX_ITEMS)
            fail_at(J, NOPOS, "list longer than %u items", JJ_MAX_ITEMS);
        jv *nv = jalloc(J, cap * sizeof(jv));
        if (l->n)
            memcpy(nv, l->v, l->n * sizeof(jv));
        l->v = nv, l->cap = cap;
    }
    l->v[l->n++] = v;
}

static jv vlist(jlist *l) { return (jv){.t = JV_LIST, .u.l = l}; }
static jv vdict(jdict *d) { return (jv){.t = JV_DICT, .u.d = d}; }

static int jv_eq(jj *J, const jv *a, const jv *b);

static jv *dict_find(jj *J, jdict *d, const jv *k)
{
    for (size_t i = 0; i < d->n; i++)
        if (jv_eq(J, &d->k[i], k))
            return &d->v[i];
    return NULL;
}

static jv *dict_find_str(jdict *d, const char *k)
{
    size_t n = strlen(k);
    for (size_t i = 0; i < d->n; i++)
        if (d->k[i].t == JV_STR && d->k[i].u.s->len == n && memcmp(d->k[i].u.s->s, k, n) == 0)
            return &d->v[i];
    return NULL;
}

static void dict_set(jj *J, jdict *d, jv k, jv v)
{
    jv *slot = dict_find(J, d, &k);
    if (slot) {
        *slot = v;
        return;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4;
        if (cap > JJ_MAX_ITEMS)
            fail_at(J, NOPOS, "dict larger than %u items", JJ_MAX_ITEMS);
        jv *nk = jalloc(J, cap * sizeof(jv)), *nv = jalloc(J, cap * sizeof(jv));
        if (d->n) {
            memcpy(nk, d->k, d->n * sizeof(jv));
            memcpy(nv, d->v, d->n * sizeof(jv));
        }
        d->k = nk, d->v = nv, d->cap = cap;
    }
    d->k[d->n] = k, d->v[d->n] = v, d->n++;
}

static void dict_set_str(jj *J, jdict *d, const char *k, jv v) { dict_set(J, d, vcstr(J, k), v); }

static const char *type_name(jt t)
{
    static const char *names[] = {"undefined", "none", "boolean", "integer", "float", "string",
                                  "list", "dict", "namespace", "loop", "macro", "function"};
    return names[t];
}

/* ---- conversions ----------------------------------------------------------------------------- */

static int truthy(const jv *v)
{
    switch (v->t) {
    case JV_UNDEF: case JV_NONE: return 0;
    case JV_BOOL: return v->u.b;
    case JV_INT: return v->u.i != 0;
    case JV_FLOAT: return v->u.f != 0;
    case JV_STR: return v->u.s->len != 0;
    case JV_LIST: return v->u.l->n != 0;
    case JV_DICT: case JV_NS: return v->u.d->n != 0;
    default: return 1;
    }
}

/* Python's repr() of a float: the shortest text that reads back to the same double. */
static void fmt_float(char *buf, size_t cap, double f)
{
    if (isnan(f)) { snprintf(buf, cap, "nan"); return; }
    if (isinf(f)) { snprintf(buf, cap, f < 0 ? "-inf" : "inf"); return; }
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, cap, "%.*g", p, f);
        if (strtod(buf, NULL) == f)
            break;
    }
    if (!strpbrk(buf, ".e"))
        strncat(buf, ".0", cap - strlen(buf) - 1);
}

static void to_str_into(jj *J, sbuf *b, const jv *v, int repr);

static void repr_str(jj *J, sbuf *b, const jstr *s)
{
    /* Python picks single quotes unless the text contains one and no double quote. */
    char q = (memchr(s->s, '\'', s->len) && !memchr(s->s, '"', s->len)) ? '"' : '\'';
    sb_add(J, b, &q, 1);
    for (size_t i = 0; i < s->len; i++) {
        char c = s->s[i];
        if (c == q || c == '\\') { sb_add(J, b, "\\", 1); sb_add(J, b, &c, 1); }
        else if (c == '\n') sb_puts(J, b, "\\n");
        else if (c == '\t') sb_puts(J, b, "\\t");
        else if (c == '\r') sb_puts(J, b, "\\r");
        else sb_add(J, b, &c, 1);
    }
    sb_add(J, b, &q, 1);
}

static void to_str_into(jj *J, sbuf *b, const jv *v, int repr)
{
    char num[64];
    enter(J, NOPOS);
    switch (v->t) {
    case JV_UNDEF: break;
    case JV_NONE: sb_puts(J, b, "None"); break;
    case JV_BOOL: sb_puts(J, b, v->u.b ? "True" : "False"); break;
    case JV_INT: snprintf(num, sizeof num, "%lld", (long long)v->u.i); sb_puts(J, b, num); break;
    case JV_FLOAT: fmt_float(num, sizeof num, v->u.f); sb_puts(J, b, num); break;
    case JV_STR:
        if (repr) repr_str(J, b, v->u.s);
        else sb_add(J, b, v->u.s->s, v->u.s->len);
        break;
    case JV_LIST:
        sb_puts(J, b, "[");
        for (size_t i = 0; i < v->u.l->n; i++) {
            if (i) sb_puts(J, b, ", ");
            to_str_into(J, b, &v->u.l->v[i], 1);
        }
        sb_puts(J, b, "]");
        break;
    case JV_DICT: case JV_NS:
        sb_puts(J, b, v->t == JV_NS ? "<Namespace {" : "{");
        for (size_t i = 0; i < v->u.d->n; i++) {
            if (i) sb_puts(J, b, ", ");
            to_str_into(J, b, &v->u.d->k[i], 1);
            sb_puts(J, b, ": ");
            to_str_into(J, b, &v->u.d->v[i], 1);
        }
        sb_puts(J, b, v->t == JV_NS ? "}>" : "}");
        break;
    default: sb_puts(J, b, "<"); sb_puts(J, b, type_name(v->t)); sb_puts(J, b, ">"); break;
    }
    leave(J);
}

static const jstr *to_str(jj *J, const jv *v)
{
    if (v->t == JV_STR)
        return v->u.s;
    sbuf b = {0};
    to_str_into(J, &b, v, 0);
    return mkstr(J, b.p ? b.p : "", b.len);
}

static void json_str(jj *J, sbuf *b, const char *s, size_t n)
{
    sb_puts(J, b, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        switch (c) {
        case '"': sb_puts(J, b, "\\\""); break;
        case '\\': sb_puts(J, b, "\\\\"); break;
        case '\n': sb_puts(J, b, "\\n"); break;
        case '\r': sb_puts(J, b, "\\r"); break;
        case '\t': sb_puts(J, b, "\\t"); break;
        case '\b': sb_puts(J, b, "\\b"); break;
        case '\f': sb_puts(J, b, "\\f"); break;
        default:
            if (c < 0x20) { snprintf(esc, sizeof esc, "\\u%04x", c); sb_puts(J, b, esc); }
            else sb_add(J, b, (const char *)&c, 1);
        }
    }
    sb_puts(J, b, "\"");
}

/* json.dumps(v, ensure_ascii=False, indent=indent) as transformers' tojson does it. */
static void to_json(jj *J, sbuf *b, const jv *v, int indent, int level, uint32_t off)
{
    enter(J, off);
    char num[64];
    switch (v->t) {
    case JV_UNDEF: case JV_NONE: sb_puts(J, b, "null"); break;
    case JV_BOOL: sb_puts(J, b, v->u.b ? "true" : "false"); break;
    case JV_INT: snprintf(num, sizeof num, "%lld", (long long)v->u.i); sb_puts(J, b, num); break;
    case JV_FLOAT:
        if (isnan(v->u.f)) sb_puts(J, b, "NaN");
        else if (isinf(v->u.f)) sb_puts(J, b, v->u.f < 0 ? "-Infinity" : "Infinity");
        else { fmt_float(num, sizeof num, v->u.f); sb_puts(J, b, num); }
        break;
    case JV_STR: json_str(J, b, v->u.s->s, v->u.s->len); break;
    case JV_LIST: case JV_DICT: case JV_NS: {
        int is_list = v->t == JV_LIST;
        size_t n = is_list ? v->u.l->n : v->u.d->n;
        sb_puts(J, b, is_list ? "[" : "{");
        for (size_t i = 0; i < n; i++) {
            if (i) sb_puts(J, b, indent >= 0 ? "," : ", ");
            if (indent >= 0) {
                sb_puts(J, b, "\n");
                for (int s = 0; s < indent * (level + 1); s++) sb_puts(J, b, " ");
            }
            if (!is_list) {
                const jstr *k = to_str(J, &v->u.d->k[i]);
                json_str(J, b, k->s, k->len);
                sb_puts(J, b, ": ");
            }
            to_json(J, b, is_list ? &v->u.l->v[i] : &v->u.d->v[i], indent, level + 1, off);
        }
        if (indent >= 0 && n) {
            sb_puts(J, b, "\n");
            for (int s = 0; s < indent * level; s++) sb_puts(J, b, " ");
        }
        sb_puts(J, b, is_list ? "]" : "}");
        break;
    }
    default: fail_at(J, off, "tojson: cannot serialise a %s", type_name(v->t));
    }
    leave(J);
}

static void enter(jj *J, uint32_t off);
static void leave(jj *J);

static int jv_eq_in(jj *J, const jv *a, const jv *b);

/* Deep equality; depth-guarded, since lists can nest (or contain themselves) at run time. */
static int jv_eq(jj *J, const jv *a, const jv *b)
{
    enter(J, NOPOS);
    int r = jv_eq_in(J, a, b);
    leave(J);
    return r;
}

static int jv_eq_in(jj *J, const jv *a, const jv *b)
{
    if ((a->t == JV_INT || a->t == JV_FLOAT || a->t == JV_BOOL) &&
        (b->t == JV_INT || b->t == JV_FLOAT || b->t == JV_BOOL)) {
        if (a->t == JV_FLOAT || b->t == JV_FLOAT) {
            double x = a->t == JV_FLOAT ? a->u.f : (double)(a->t == JV_INT ? a->u.i : a->u.b);
            double y = b->t == JV_FLOAT ? b->u.f : (double)(b->t == JV_INT ? b->u.i : b->u.b);
            return x == y;
        }
        int64_t x = a->t == JV_INT ? a->u.i : a->u.b, y = b->t == JV_INT ? b->u.i : b->u.b;
        return x == y;
    }
    if (a->t != b->t)
        return 0;
    switch (a->t) {
    case JV_UNDEF: case JV_NONE: return 1;
    case JV_STR: return a->u.s->len == b->u.s->len && memcmp(a->u.s->s, b->u.s->s, a->u.s->len) == 0;
    case JV_LIST:
        if (a->u.l->n != b->u.l->n) return 0;
        for (size_t i = 0; i < a->u.l->n; i++)
            if (!jv_eq(J, &a->u.l->v[i], &b->u.l->v[i])) return 0;
        return 1;
    case JV_DICT: case JV_NS:
        if (a->u.d->n != b->u.d->n) return 0;
        for (size_t i = 0; i < a->u.d->n; i++) {
            jv *o = dict_find(J, b->u.d, &a->u.d->k[i]);
            if (!o || !jv_eq(J, &a->u.d->v[i], o)) return 0;
        }
        return 1;
    case JV_LOOP: return a->u.loop == b->u.loop;
    case JV_MACRO: return a->u.macro == b->u.macro;
    default: return 0;
    }
}

/* ---- lexer ---------------------------------------------------------------------------------- */

static void push_tok(jj *J, tok t)
{
    if (J->ntok == J->captok) {
        size_t cap = J->captok ? J->captok * 2 : 256;
        tok *n = realloc(J->toks, cap * sizeof(tok));
        if (!n)
            fail_at(J, t.off, "out of memory");
        J->toks = n, J->captok = cap;
    }
    J->toks[J->ntok++] = t;
}

enum { STRIP_NONE, STRIP_NL, STRIP_ALL };

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* Emits the text src[a..b) after the whitespace control of the tags around it. */
static void lex_text(jj *J, size_t a, size_t b, int strip_before, int tag_kind, char tag_sign)
{
    if (strip_before == STRIP_ALL)
        while (a < b && is_ws(J->src[a])) a++;
    else if (strip_before == STRIP_NL && a < b && J->src[a] == '\n')
        a++;
    if (tag_sign == '-') {
        while (b > a && is_ws(J->src[b - 1])) b--;
    } else if (tag_sign != '+' && (tag_kind == '%' || tag_kind == '#')) {
        /* lstrip_blocks: drop spaces and tabs between the start of the line and the tag. */
        size_t l = b;
        while (l > a && (J->src[l - 1] == ' ' || J->src[l - 1] == '\t')) l--;
        if (l == 0 || J->src[l - 1] == '\n')
            b = l;
    }
    if (b > a)
        push_tok(J, (tok){.t = T_TEXT, .off = (uint32_t)a, .s = J->src + a, .len = b - a});
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static void utf8_put(jj *J, sbuf *b, uint32_t cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) u[0] = (char)cp, n = 1;
    else if (cp < 0x800) u[0] = (char)(0xC0 | (cp >> 6)), u[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
    else if (cp < 0x10000)
        u[0] = (char)(0xE0 | (cp >> 12)), u[1] = (char)(0x80 | ((cp >> 6) & 0x3F)), u[2] = (char)(0x80 | (cp & 0x3F)), n = 3;
    else
        u[0] = (char)(0xF0 | (cp >> 18)), u[1] = (char)(0x80 | ((cp >> 12) & 0x3F)),
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), u[3] = (char)(0x80 | (cp & 0x3F)), n = 4;
    sb_add(J, b, u, n);
}

/* A quoted string literal at src[*p] (the quote); Python escapes. */
static void lex_string(jj *J, size_t *p)
{
    size_t start = *p;
    char q = J->src[start];
    sbuf b = {0};
    size_t i = start + 1;
    for (;;) {
        if (i >= J->src_len)
            fail_at(J, (uint32_t)start, "unterminated string literal");
        char c = J->src[i];
        if (c == q) { i++; break; }
        if (c != '\\') { sb_add(J, &b, &c, 1); i++; continue; }
        if (i + 1 >= J->src_len)
            fail_at(J, (uint32_t)start, "unterminated string literal");
        char e = J->src[i + 1];
        i += 2;
        switch (e) {
        case 'n': sb_puts(J, &b, "\n"); break;
        case 't': sb_puts(J, &b, "\t"); break;
        case 'r': sb_puts(J, &b, "\r"); break;
        case '0': sb_add(J, &b, "\0", 1); break;
        case '\\': case '\'': case '"': sb_add(J, &b, &e, 1); break;
        case '\n': break;
        case 'x': case 'u': case 'U': {
            int nd = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            uint32_t cp = 0;
            for (int k = 0; k < nd; k++) {
                int h = i + (size_t)k < J->src_len ? hexval(J->src[i + k]) : -1;
                if (h < 0)
                    fail_at(J, (uint32_t)(i - 2), "bad \\%c escape in string literal", e);
                cp = cp * 16 + (uint32_t)h;
            }
            i += (size_t)nd;
            if (cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000))
                fail_at(J, (uint32_t)(i - 2), "bad code point in string literal");
            utf8_put(J, &b, cp);
            break;
        }
        default: { char bs = '\\'; sb_add(J, &b, &bs, 1); sb_add(J, &b, &e, 1); }
        }
    }
    const jstr *s = mkstr(J, b.p ? b.p : "", b.len);
    push_tok(J, (tok){.t = T_STRING, .off = (uint32_t)start, .s = s->s, .len = s->len});
    *p = i;
}

/* Tokens of one {{ }} or {% %} tag, starting after the opening delimiter (and its sign).
 * Returns the whitespace control the closing delimiter asks of the following text. */
static int lex_code(jj *J, size_t *pp, int kind, uint32_t tag_off)
{
    size_t p = *pp;
    int depth = 0; /* open brackets: "}}" inside a dict literal does not end the tag */
    char close = kind == '{' ? '}' : '%';
    for (;;) {
        while (p < J->src_len && is_ws(J->src[p])) p++;
        if (p >= J->src_len)
            fail_at(J, tag_off, "unterminated '%s' tag", kind == '{' ? "{{" : "{%");
        char c = J->src[p];
        if (depth == 0) {
            if ((c == '-' || c == '+') && p + 2 < J->src_len + 0 && J->src[p + 1] == close && J->src[p + 2] == '}') {
                push_tok(J, (tok){.t = kind == '{' ? T_VAR_END : T_BLOCK_END, .off = (uint32_t)p});
                *pp = p + 3;
                return c == '-' ? STRIP_ALL : STRIP_NONE;
            }
            if (c == close && p + 1 < J->src_len && J->src[p + 1] == '}') {
                push_tok(J, (tok){.t = kind == '{' ? T_VAR_END : T_BLOCK_END, .off = (uint32_t)p});
                *pp = p + 2;
                return kind == '%' ? STRIP_NL : STRIP_NONE; /* trim_blocks */
            }
        }
        if (isalpha((unsigned char)c) || c == '_') {
            size_t s = p;
            while (p < J->src_len && (isalnum((unsigned char)J->src[p]) || J->src[p] == '_')) p++;
            push_tok(J, (tok){.t = T_NAME, .off = (uint32_t)s, .s = J->src + s, .len = p - s});
            continue;
        }
        if (isdigit((unsigned char)c)) {
            size_t s = p;
            int is_float = 0;
            while (p < J->src_len && (isdigit((unsigned char)J->src[p]) || J->src[p] == '_')) p++;
            if (p + 1 < J->src_len && J->src[p] == '.' && isdigit((unsigned char)J->src[p + 1])) {
                is_float = 1;
                p++;
                while (p < J->src_len && isdigit((unsigned char)J->src[p])) p++;
            }
            if (p < J->src_len && (J->src[p] == 'e' || J->src[p] == 'E')) {
                size_t q = p + 1;
                if (q < J->src_len && (J->src[q] == '+' || J->src[q] == '-')) q++;
                if (q < J->src_len && isdigit((unsigned char)J->src[q])) {
                    is_float = 1;
                    p = q;
                    while (p < J->src_len && isdigit((unsigned char)J->src[p])) p++;
                }
            }
            char num[64];
            size_t n = 0;
            for (size_t k = s; k < p && n < sizeof num - 1; k++)
                if (J->src[k] != '_') num[n++] = J->src[k];
            num[n] = 0;
            tok t = {.t = is_float ? T_FLOAT : T_INT, .off = (uint32_t)s};
            if (is_float)
                t.f = strtod(num, NULL);
            else {
                errno = 0;
                long long v = strtoll(num, NULL, 10);
                if (errno)
                    fail_at(J, (uint32_t)s, "integer literal too large");
                t.i = v;
            }
            push_tok(J, t);
            continue;
        }
        if (c == '\'' || c == '"') {
            lex_string(J, &p);
            continue;
        }
        static const char *ops2[] = {"//", "**", "==", "!=", "<=", ">="};
        int matched = 0;
        for (size_t k = 0; k < sizeof ops2 / sizeof *ops2; k++)
            if (p + 1 < J->src_len && J->src[p] == ops2[k][0] && J->src[p + 1] == ops2[k][1]) {
                push_tok(J, (tok){.t = T_OP, .off = (uint32_t)p, .s = ops2[k], .len = 2});
                p += 2;
                matched = 1;
                break;
            }
        if (matched)
            continue;
        static const char ops1[] = "+-*/%~<>=()[]{},.:|";
        const char *o = strchr(ops1, c);
        if (!o || !c)
            fail_at(J, (uint32_t)p, "unexpected character '%c' in tag", isprint((unsigned char)c) ? c : '?');
        if (c == '(' || c == '[' || c == '{') depth++;
        if ((c == ')' || c == ']' || c == '}') && depth > 0) depth--;
        push_tok(J, (tok){.t = T_OP, .off = (uint32_t)p, .s = o, .len = 1});
        p++;
    }
}

/* As Jinja does before lexing: \r\n and \r become \n, and one trailing newline is dropped
 * (keep_trailing_newline is off in transformers). */
static void normalize_newlines(jj *J)
{
    if (!memchr(J->src, '\r', J->src_len) && !(J->src_len && J->src[J->src_len - 1] == '\n'))
        return;
    char *d = jalloc_raw(J, J->src_len + 1);
    size_t n = 0;
    for (size_t i = 0; i < J->src_len; i++) {
        if (J->src[i] == '\r') {
            d[n++] = '\n';
            if (i + 1 < J->src_len && J->src[i + 1] == '\n') i++;
        } else
            d[n++] = J->src[i];
    }
    if (n && d[n - 1] == '\n') n--;
    d[n] = 0;
    J->src = d, J->src_len = n;
}

static void lex(jj *J)
{
    size_t pos = 0;
    int strip = STRIP_NONE;
    for (;;) {
        size_t p = pos;
        const char *hit = NULL;
        while (p + 1 < J->src_len) {
            hit = memchr(J->src + p, '{', J->src_len - p - 1);
            if (!hit) break;
            char n = hit[1];
            if (n == '{' || n == '%' || n == '#') break;
            p = (size_t)(hit - J->src) + 1;
            hit = NULL;
        }
        if (!hit) {
            lex_text(J, pos, J->src_len, strip, 0, 0);
            break;
        }
        size_t t = (size_t)(hit - J->src);
        int kind = hit[1];
        char sign = t + 2 < J->src_len ? J->src[t + 2] : 0;
        if (sign != '-' && sign != '+') sign = 0;
        lex_text(J, pos, t, strip, kind, sign);
        size_t after = t + 2 + (sign ? 1 : 0);
        if (kind == '#') {
            const char *end = NULL;
            for (size_t k = after; k + 1 < J->src_len; k++)
                if (J->src[k] == '#' && J->src[k + 1] == '}') { end = J->src + k; break; }
            if (!end)
                fail_at(J, (uint32_t)t, "unterminated comment '{#'");
            size_t e = (size_t)(end - J->src);
            char esign = e > after ? J->src[e - 1] : 0;
            strip = esign == '-' ? STRIP_ALL : esign == '+' ? STRIP_NONE : STRIP_NL;
            pos = e + 2;
            continue;
        }
        push_tok(J, (tok){.t = kind == '{' ? T_VAR_BEGIN : T_BLOCK_BEGIN, .off = (uint32_t)t});
        pos = after;
        strip = lex_code(J, &pos, kind, (uint32_t)t);
    }
    push_tok(J, (tok){.t = T_EOF, .off = (uint32_t)J->src_len});
}

/* ---- parser --------------------------------------------------------------------------------- */

static tok *peek(jj *J) { return &J->toks[J->pos]; }
static tok *peek2(jj *J) { return &J->toks[J->pos + 1 < J->ntok ? J->pos + 1 : J->pos]; }
static tok *next(jj *J)
{
    tok *t = &J->toks[J->pos];
    if (t->t != T_EOF) J->pos++;
    return t;
}

static int is_op(const tok *t, const char *op) { return t->t == T_OP && t->len == strlen(op) && memcmp(t->s, op, t->len) == 0; }
static int is_name(const tok *t, const char *n) { return t->t == T_NAME && t->len == strlen(n) && memcmp(t->s, n, t->len) == 0; }

static const char *tok_desc(jj *J, const tok *t)
{
    switch (t->t) {
    case T_EOF: return "end of template";
    case T_VAR_END: return "'}}'";
    case T_BLOCK_END: return "'%}'";
    case T_TEXT: return "text";
    case T_STRING: return "a string";
    case T_INT: case T_FLOAT: return "a number";
    default: {
        size_t n = t->len < 40 ? t->len : 40;
        char *s = jalloc(J, n + 3);
        s[0] = '\'';
        memcpy(s + 1, t->s, n);
        s[n + 1] = '\'';
        return s;
    }
    }
}

static void expect_op(jj *J, const char *op)
{
    tok *t = next(J);
    if (!is_op(t, op))
        fail_at(J, t->off, "expected '%s', found %s", op, tok_desc(J, t));
}

static const char *expect_name(jj *J)
{
    tok *t = next(J);
    if (t->t != T_NAME)
        fail_at(J, t->off, "expected a name, found %s", tok_desc(J, t));
    return mkstr(J, t->s, t->len)->s;
}

static node *mknode(jj *J, nk k, uint32_t off)
{
    node *n = jalloc(J, sizeof *n);
    n->k = k, n->off = off;
    return n;
}

static void nl_push(jj *J, nlist *l, node *n)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        node **v = jalloc(J, cap * sizeof(node *));
        if (l->n) memcpy(v, l->v, l->n * sizeof(node *));
        l->v = v, l->cap = cap;
    }
    l->v[l->n++] = n;
}

static node *parse_expr(jj *J);
static node *parse_unary(jj *J, int with_filter);

/* Call arguments after '(' : positional and name=value. */
static void parse_args(jj *J, node *call)
{
    size_t kwcap = 0, base = call->args.n; /* filters and tests already hold their operand */
    while (!is_op(peek(J), ")")) {
        if (call->args.n + call->kw.n > base)
            expect_op(J, ",");
        if (is_op(peek(J), ")")) break; /* trailing comma */
        if (peek(J)->t == T_NAME && is_op(peek2(J), "=")) {
            const char *name = expect_name(J);
            next(J);
            nl_push(J, &call->kw, parse_expr(J));
            if (call->kw.n > kwcap) {
                kwcap = call->kw.cap;
                const char **nn = jalloc(J, kwcap * sizeof(char *));
                if (call->kwn) memcpy(nn, call->kwn, (call->kw.n - 1) * sizeof(char *));
                call->kwn = nn;
            }
            call->kwn[call->kw.n - 1] = name;
        } else {
            if (call->kw.n)
                fail_at(J, peek(J)->off, "positional argument after keyword argument");
            nl_push(J, &call->args, parse_expr(J));
        }
    }
    expect_op(J, ")");
}

/* The items of a list or dict literal up to `close` (a trailing comma allowed): expressions to
 * n->args and, for a dict (pairs), each key's value after ':' to n->kw. */
static void parse_items(jj *J, node *n, const char *close, bool pairs)
{
    while (!is_op(peek(J), close)) {
        if (n->args.n) expect_op(J, ",");
        if (is_op(peek(J), close)) break;
        nl_push(J, &n->args, parse_expr(J));
        if (pairs) {
            expect_op(J, ":");
            nl_push(J, &n->kw, parse_expr(J));
        }
    }
    expect_op(J, close);
}

static node *parse_primary(jj *J)
{
    tok *t = next(J);
    node *n;
    enter(J, t->off);
    switch (t->t) {
    case T_NAME:
        n = mknode(J, E_LIT, t->off);
        if (is_name(t, "true") || is_name(t, "True")) n->lit = vbool(1);
        else if (is_name(t, "false") || is_name(t, "False")) n->lit = vbool(0);
        else if (is_name(t, "none") || is_name(t, "None")) n->lit = vnone();
        else { n->k = E_NAME; n->name = mkstr(J, t->s, t->len)->s; }
        break;
    case T_STRING: {
        /* adjacent literals concatenate, as in Python */
        sbuf b = {0};
        sb_add(J, &b, t->s, t->len);
        while (peek(J)->t == T_STRING) { tok *u = next(J); sb_add(J, &b, u->s, u->len); }
        n = mknode(J, E_LIT, t->off);
        n->lit = sb_val(J, &b);
        break;
    }
    case T_INT: n = mknode(J, E_LIT, t->off); n->lit = vint(t->i); break;
    case T_FLOAT: n = mknode(J, E_LIT, t->off); n->lit = vfloat(t->f); break;
    case T_OP:
        if (is_op(t, "(")) {
            if (is_op(peek(J), ")")) { next(J); n = mknode(J, E_LIST, t->off); break; }
            n = parse_expr(J);
            if (is_op(peek(J), ",")) { /* a tuple: treated as a list */
                node *l = mknode(J, E_LIST, t->off);
                nl_push(J, &l->args, n);
                while (is_op(peek(J), ",")) {
                    next(J);
                    if (is_op(peek(J), ")")) break;
                    nl_push(J, &l->args, parse_expr(J));
                }
                n = l;
            }
            expect_op(J, ")");
            break;
        }
        if (is_op(t, "[")) {
            n = mknode(J, E_LIST, t->off);
            parse_items(J, n, "]", false);
            break;
        }
        if (is_op(t, "{")) {
            n = mknode(J, E_DICT, t->off);
            parse_items(J, n, "}", true);
            break;
        }
        /* fallthrough */
    default:
        fail_at(J, t->off, "unexpected %s in expression", tok_desc(J, t));
    }
    leave(J);
    return n;
}

static node *parse_postfix(jj *J, node *n)
{
    for (;;) {
        tok *t = peek(J);
        if (is_op(t, ".")) {
            next(J);
            tok *a = next(J);
            node *m = mknode(J, E_ATTR, t->off);
            m->a = n;
            if (a->t == T_NAME) m->name = mkstr(J, a->s, a->len)->s;
            else if (a->t == T_INT) { m->k = E_INDEX; m->b = mknode(J, E_LIT, a->off); m->b->lit = vint(a->i); }
            else fail_at(J, a->off, "expected an attribute name after '.', found %s", tok_desc(J, a));
            n = m;
        } else if (is_op(t, "[")) {
            next(J);
            node *m = mknode(J, E_INDEX, t->off);
            m->a = n;
            node *parts[3] = {NULL, NULL, NULL};
            int colons = 0;
            while (!is_op(peek(J), "]")) {
                if (is_op(peek(J), ":")) {
                    if (++colons > 2) fail_at(J, peek(J)->off, "too many ':' in slice");
                    next(J);
                    continue;
                }
                if (parts[colons]) fail_at(J, peek(J)->off, "expected ']' or ':' in subscript");
                parts[colons] = parse_expr(J);
            }
            next(J);
            if (colons) {
                m->k = E_SLICE;
                m->b = parts[0], m->c = parts[1], m->d = parts[2];
            } else {
                if (!parts[0]) fail_at(J, t->off, "empty subscript");
                m->b = parts[0];
            }
            n = m;
        } else if (is_op(t, "(")) {
            next(J);
            node *m = mknode(J, E_CALL, n->off);
            m->a = n;
            parse_args(J, m);
            n = m;
        } else
            return n;
    }
}

/* value|filter(args) and value is [not] test(args), left to right. */
static node *parse_filters(jj *J, node *n)
{
    for (;;) {
        tok *t = peek(J);
        if (is_op(t, "|")) {
            next(J);
            node *f = mknode(J, E_FILTER, peek(J)->off);
            f->name = expect_name(J);
            if (is_op(peek(J), ".")) /* Jinja allows dotted filter names; none is known here */
                fail_at(J, peek(J)->off, "unsupported dotted filter name '%s.'", f->name);
            nl_push(J, &f->args, n);
            if (is_op(peek(J), "(")) { next(J); parse_args(J, f); }
            n = f;
        } else if (is_name(t, "is")) {
            next(J);
            node *f = mknode(J, E_TEST, peek(J)->off);
            if (is_name(peek(J), "not")) { next(J); f->op = 1; }
            f->name = expect_name(J);
            nl_push(J, &f->args, n);
            if (is_op(peek(J), "(")) { next(J); parse_args(J, f); }
            else {
                /* one bare argument: `is divisibleby 3`, `is sameas false` */
                tok *u = peek(J);
                if (u->t == T_INT || u->t == T_FLOAT || u->t == T_STRING ||
                    (u->t == T_NAME && !is_name(u, "and") && !is_name(u, "or") && !is_name(u, "if") &&
                     !is_name(u, "else") && !is_name(u, "not") && !is_name(u, "in") && !is_name(u, "is")))
                    nl_push(J, &f->args, parse_postfix(J, parse_primary(J)));
            }
            n = f;
        } else
            return n;
    }
}

static node *parse_unary(jj *J, int with_filter)
{
    tok *t = peek(J);
    node *n;
    enter(J, t->off);
    if (is_op(t, "-") || is_op(t, "+")) {
        next(J);
        n = mknode(J, is_op(t, "-") ? E_NEG : E_POS, t->off);
        n->a = parse_unary(J, 0);
    } else
        n = parse_postfix(J, parse_primary(J));
    if (with_filter) n = parse_filters(J, n);
    leave(J);
    return n;
}

/* A node with two operands (a binary operator, `~`, `and`, `or`). The right operand is parsed
 * before the node is made, as the caller passes it. */
static node *pair_node(jj *J, nk k, uint32_t off, node *a, node *b)
{
    node *n = mknode(J, k, off);
    n->a = a, n->b = b;
    return n;
}

static node *binop(jj *J, int op, uint32_t off, node *a, node *b)
{
    node *n = pair_node(J, E_BIN, off, a, b);
    n->op = op;
    return n;
}

static node *parse_pow(jj *J)
{
    node *n = parse_unary(J, 1);
    while (is_op(peek(J), "**")) { uint32_t o = next(J)->off; n = binop(J, OP_POW, o, n, parse_unary(J, 1)); }
    return n;
}

static node *parse_math2(jj *J)
{
    node *n = parse_pow(J);
    for (;;) {
        tok *t = peek(J);
        int op = is_op(t, "*") ? OP_MUL : is_op(t, "/") ? OP_DIV : is_op(t, "//") ? OP_FDIV : is_op(t, "%") ? OP_MOD : 0;
        if (!op) return n;
        next(J);
        n = binop(J, op, t->off, n, parse_pow(J));
    }
}

static node *parse_concat(jj *J)
{
    node *n = parse_math2(J);
    while (is_op(peek(J), "~")) {
        uint32_t o = next(J)->off;
        n = pair_node(J, E_CONCAT, o, n, parse_math2(J));
    }
    return n;
}

static node *parse_math1(jj *J)
{
    node *n = parse_concat(J);
    for (;;) {
        tok *t = peek(J);
        int op = is_op(t, "+") ? OP_ADD : is_op(t, "-") ? OP_SUB : 0;
        if (!op) return n;
        next(J);
        n = binop(J, op, t->off, n, parse_concat(J));
    }
}

static int cmp_op(jj *J)
{
    tok *t = peek(J);
    if (is_op(t, "==")) return OP_EQ;
    if (is_op(t, "!=")) return OP_NE;
    if (is_op(t, "<")) return OP_LT;
    if (is_op(t, "<=")) return OP_LE;
    if (is_op(t, ">")) return OP_GT;
    if (is_op(t, ">=")) return OP_GE;
    if (is_name(t, "in")) return OP_IN;
    if (is_name(t, "not") && is_name(peek2(J), "in")) return OP_NOTIN;
    return 0;
}

static node *parse_compare(jj *J)
{
    node *first = parse_math1(J);
    int op = cmp_op(J);
    if (!op) return first;
    node *n = mknode(J, E_CMP, peek(J)->off);
    nl_push(J, &n->args, first);
    size_t cap = 0;
    while ((op = cmp_op(J))) {
        next(J);
        if (op == OP_NOTIN) next(J);
        if (n->args.n > cap) {
            size_t nc = n->args.cap;
            int *ops = jalloc(J, nc * sizeof(int));
            if (n->cmp_ops) memcpy(ops, n->cmp_ops, (n->args.n - 1) * sizeof(int));
            n->cmp_ops = ops;
            cap = nc;
        }
        n->cmp_ops[n->args.n - 1] = op;
        nl_push(J, &n->args, parse_math1(J));
    }
    return n;
}

static node *parse_not(jj *J)
{
    tok *t = peek(J);
    if (is_name(t, "not")) {
        next(J);
        enter(J, t->off);
        node *n = mknode(J, E_NOT, t->off);
        n->a = parse_not(J);
        leave(J);
        return n;
    }
    return parse_compare(J);
}

static node *parse_and(jj *J)
{
    node *n = parse_not(J);
    while (is_name(peek(J), "and")) {
        uint32_t o = next(J)->off;
        n = pair_node(J, E_AND, o, n, parse_not(J));
    }
    return n;
}

static node *parse_or(jj *J)
{
    node *n = parse_and(J);
    while (is_name(peek(J), "or")) {
        uint32_t o = next(J)->off;
        n = pair_node(J, E_OR, o, n, parse_and(J));
    }
    return n;
}

static node *parse_expr(jj *J)
{
    enter(J, peek(J)->off);
    node *n = parse_or(J);
    while (is_name(peek(J), "if")) {
        uint32_t o = next(J)->off;
        node *c = mknode(J, E_COND, o);
        c->a = n;
        c->b = parse_or(J);
        if (is_name(peek(J), "else")) { next(J); c->c = parse_expr(J); }
        n = c;
    }
    leave(J);
    return n;
}

/* ---- statements ---- */

static node *parse_body(jj *J, const char *const *ends, const char **found);

static void expect_block_end(jj *J)
{
    tok *t = next(J);
    if (t->t != T_BLOCK_END)
        fail_at(J, t->off, "expected '%%}', found %s", tok_desc(J, t));
}

static node *parse_if(jj *J, uint32_t off)
{
    node *n = mknode(J, N_IF, off);
    n->a = parse_expr(J);
    expect_block_end(J);
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    const char *found;
    n->b = parse_body(J, ends, &found);
    if (strcmp(found, "elif") == 0) {
        n->c = parse_if(J, peek(J)->off);
        return n; /* the nested if consumed the endif */
    }
    if (strcmp(found, "else") == 0) {
        expect_block_end(J);
        static const char *const ends2[] = {"endif", NULL};
        n->c = parse_body(J, ends2, &found);
    }
    expect_block_end(J);
    return n;
}

static node *parse_for(jj *J, uint32_t off)
{
    node *n = mknode(J, N_FOR, off);
    int paren = is_op(peek(J), "(");
    if (paren) next(J);
    n->name = expect_name(J);
    if (is_op(peek(J), ",")) { next(J); n->name2 = expect_name(J); }
    if (paren) expect_op(J, ")");
    if (is_op(peek(J), ","))
        fail_at(J, peek(J)->off, "unsupported: unpacking into more than two loop variables");
    tok *t = next(J);
    if (!is_name(t, "in"))
        fail_at(J, t->off, "expected 'in' in for loop, found %s", tok_desc(J, t));
    n->a = parse_or(J); /* not parse_expr: a trailing `if` filters the loop */
    if (is_name(peek(J), "if")) { next(J); n->b = parse_expr(J); }
    if (is_name(peek(J), "recursive"))
        fail_at(J, peek(J)->off, "unsupported: recursive for loops");
    expect_block_end(J);
    static const char *const ends[] = {"else", "endfor", NULL};
    const char *found;
    n->c = parse_body(J, ends, &found);
    if (strcmp(found, "else") == 0) {
        expect_block_end(J);
        static const char *const ends2[] = {"endfor", NULL};
        n->d = parse_body(J, ends2, &found);
    }
    expect_block_end(J);
    return n;
}

static node *parse_set(jj *J, uint32_t off)
{
    const char *name = expect_name(J);
    node *n;
    if (is_op(peek(J), ".")) {
        next(J);
        n = mknode(J, N_SET_ATTR, off);
        n->name = name;
        n->name2 = expect_name(J);
    } else {
        n = mknode(J, N_SET, off);
        n->name = name;
    }
    if (is_op(peek(J), ","))
        fail_at(J, peek(J)->off, "unsupported: tuple assignment in set");
    if (n->k == N_SET && peek(J)->t == T_BLOCK_END) { /* {% set x %}...{% endset %} */
        next(J);
        n->k = N_SET_BLOCK;
        static const char *const ends[] = {"endset", NULL};
        const char *found;
        n->a = parse_body(J, ends, &found);
        expect_block_end(J);
        return n;
    }
    expect_op(J, "=");
    n->a = parse_expr(J);
    expect_block_end(J);
    return n;
}

static node *parse_macro(jj *J, uint32_t off)
{
    node *n = mknode(J, N_MACRO, off);
    n->name = expect_name(J);
    expect_op(J, "(");
    nlist names = {0};
    while (!is_op(peek(J), ")")) {
        if (names.n) expect_op(J, ",");
        if (is_op(peek(J), ")")) break;
        node *p = mknode(J, E_NAME, peek(J)->off);
        p->name = expect_name(J);
        nl_push(J, &names, p);
        node *def = NULL;
        if (is_op(peek(J), "=")) { next(J); def = parse_expr(J); }
        nl_push(J, &n->kw, def); /* NULL = required */
    }
    next(J);
    n->kwn = jalloc(J, (names.n + 1) * sizeof(char *));
    for (size_t i = 0; i < names.n; i++) n->kwn[i] = names.v[i]->name;
    expect_block_end(J);
    static const char *const ends[] = {"endmacro", NULL};
    const char *found;
    n->a = parse_body(J, ends, &found);
    expect_block_end(J);
    return n;
}

/* Statements up to one of the end tags (NULL ends = top level, up to end of template).
 * The end tag's name is consumed; its '%}' is left for the caller. */
static node *parse_body(jj *J, const char *const *ends, const char **found)
{
    node *seq = mknode(J, N_SEQ, peek(J)->off);
    enter(J, seq->off);
    for (;;) {
        tok *t = next(J);
        if (t->t == T_EOF) {
            if (ends) {
                const char *want = ends[0];
                for (size_t i = 0; ends[i]; i++) if (!strncmp(ends[i], "end", 3)) want = ends[i];
                fail_at(J, seq->off, "missing '{%% %s %%}' for the block opened here", want);
            }
            break;
        }
        if (t->t == T_TEXT) {
            node *n = mknode(J, N_TEXT, t->off);
            n->lit = (jv){.t = JV_STR, .u.s = mkstr(J, t->s, t->len)};
            nl_push(J, &seq->args, n);
            continue;
        }
        if (t->t == T_VAR_BEGIN) {
            node *n = mknode(J, N_OUT, t->off);
            n->a = parse_expr(J);
            tok *e = next(J);
            if (e->t != T_VAR_END)
                fail_at(J, e->off, "expected '}}', found %s", tok_desc(J, e));
            nl_push(J, &seq->args, n);
            continue;
        }
        if (t->t != T_BLOCK_BEGIN)
            fail_at(J, t->off, "unexpected %s", tok_desc(J, t));
        tok *kw = next(J);
        if (kw->t != T_NAME)
            fail_at(J, kw->off, "expected a tag name after '{%%', found %s", tok_desc(J, kw));
        for (size_t i = 0; ends && ends[i]; i++)
            if (is_name(kw, ends[i])) {
                *found = ends[i];
                leave(J);
                return seq;
            }
        node *n = NULL;
        if (is_name(kw, "if")) n = parse_if(J, kw->off);
        else if (is_name(kw, "for")) n = parse_for(J, kw->off);
        else if (is_name(kw, "set")) n = parse_set(J, kw->off);
        else if (is_name(kw, "macro")) n = parse_macro(J, kw->off);
        else if (is_name(kw, "break") || is_name(kw, "continue")) {
            n = mknode(J, is_name(kw, "break") ? N_BREAK : N_CONTINUE, kw->off);
            expect_block_end(J);
        } else if (is_name(kw, "generation")) {
            /* transformers' assistant-mask marker: renders its body unchanged */
            expect_block_end(J);
            static const char *const gends[] = {"endgeneration", NULL};
            const char *f;
            n = parse_body(J, gends, &f);
            expect_block_end(J);
        } else {
            char name[48];
            snprintf(name, sizeof name, "%.*s", (int)(kw->len < 40 ? kw->len : 40), kw->s);
            int known_end = strncmp(name, "end", 3) == 0 || !strcmp(name, "elif") || !strcmp(name, "else");
            if (known_end)
                fail_at(J, kw->off, "unexpected '{%% %s %%}'%s", name, ends ? "" : " (no open block)");
            fail_at(J, kw->off, "unsupported tag '%s'", name);
        }
        nl_push(J, &seq->args, n);
    }
    leave(J);
    return seq;
}

/* ---- evaluation ------------------------------------------------------------------------------ */

static jv eval(jj *J, frame *f, const node *n);
static void exec(jj *J, frame *f, const node *n);

static jv *lookup(frame *f, const char *name)
{
    for (; f; f = f->parent) {
        jv *v = dict_find_str(f->vars, name);
        if (v) return v;
    }
    return NULL;
}

static frame *new_frame(jj *J, frame *parent)
{
    frame *f = jalloc(J, sizeof *f);
    f->parent = parent;
    f->vars = jalloc(J, sizeof(jdict));
    return f;
}

static void emit(jj *J, const char *s, size_t n)
{
    J->out_total += n;
    if (J->out_total > J->max_output)
        fail_at(J, NOPOS, "rendered text longer than %zu MB", J->max_output >> 20);
    sb_add(J, J->out, s, n);
}

static double num(jj *J, const jv *v, uint32_t off, const char *what)
{
    switch (v->t) {
    case JV_INT: return (double)v->u.i;
    case JV_FLOAT: return v->u.f;
    case JV_BOOL: return v->u.b;
    default: fail_at(J, off, "%s: expected a number, got %s", what, type_name(v->t));
    }
}

static int is_num(const jv *v) { return v->t == JV_INT || v->t == JV_FLOAT || v->t == JV_BOOL; }
static int64_t ival(const jv *v) { return v->t == JV_INT ? v->u.i : v->u.b; }

/* UTF-8: byte offsets of the code points of s (n+1 entries), for len/index/slice. */
static size_t *cp_offsets(jj *J, const jstr *s, size_t *count)
{
    size_t n = 0;
    for (size_t i = 0; i < s->len; i++)
        if (((unsigned char)s->s[i] & 0xC0) != 0x80) n++;
    size_t *o = jalloc(J, (n + 1) * sizeof(size_t));
    size_t k = 0;
    for (size_t i = 0; i < s->len; i++)
        if (((unsigned char)s->s[i] & 0xC0) != 0x80) o[k++] = i;
    o[n] = s->len;
    *count = n;
    return o;
}

static size_t str_cplen(const jstr *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->len; i++)
        if (((unsigned char)s->s[i] & 0xC0) != 0x80) n++;
    return n;
}

static int compare(jj *J, int op, const jv *a, const jv *b, uint32_t off)
{
    if (a->t == JV_STR) charge(J, a->u.s->len);
    if (b->t == JV_STR) charge(J, b->u.s->len);
    switch (op) {
    case OP_EQ: return jv_eq(J, a, b);
    case OP_NE: return !jv_eq(J, a, b);
    case OP_IN: case OP_NOTIN: {
        int r = 0;
        if (b->t == JV_STR) {
            if (a->t != JV_STR) fail_at(J, off, "'in <string>' requires a string on the left, got %s", type_name(a->t));
            r = a->u.s->len == 0 || memmem(b->u.s->s, b->u.s->len, a->u.s->s, a->u.s->len) != NULL;
        } else if (b->t == JV_LIST) {
            for (size_t i = 0; i < b->u.l->n && !r; i++) {
                charge(J, a->t == JV_STR ? a->u.s->len : 0);
                r = jv_eq(J, a, &b->u.l->v[i]);
            }
        } else if (b->t == JV_DICT || b->t == JV_NS) {
            r = dict_find(J, b->u.d, a) != NULL;
        } else if (b->t == JV_UNDEF || b->t == JV_NONE) {
            fail_at(J, off, "'in': right operand is %s", type_name(b->t));
        } else
            fail_at(J, off, "'in': cannot search a %s", type_name(b->t));
        return op == OP_IN ? r : !r;
    }
    default: break;
    }
    int c;
    if (is_num(a) && is_num(b)) {
        if (a->t == JV_FLOAT || b->t == JV_FLOAT) {
            double x = num(J, a, off, "comparison"), y = num(J, b, off, "comparison");
            c = x < y ? -1 : x > y ? 1 : 0;
        } else {
            int64_t x = ival(a), y = ival(b);
            c = x < y ? -1 : x > y ? 1 : 0;
        }
    } else if (a->t == JV_STR && b->t == JV_STR) {
        size_t m = a->u.s->len < b->u.s->len ? a->u.s->len : b->u.s->len;
        c = memcmp(a->u.s->s, b->u.s->s, m);
        if (!c) c = a->u.s->len < b->u.s->len ? -1 : a->u.s->len > b->u.s->len;
    } else if (a->t == JV_LIST && b->t == JV_LIST) { /* lexicographic, as Python compares tuples */
        c = 0;
        size_t m = a->u.l->n < b->u.l->n ? a->u.l->n : b->u.l->n;
        for (size_t i = 0; i < m && !c; i++) {
            if (jv_eq(J, &a->u.l->v[i], &b->u.l->v[i])) continue;
            enter(J, off);
            c = compare(J, OP_LT, &a->u.l->v[i], &b->u.l->v[i], off) ? -1 : 1;
            leave(J);
        }
        if (!c) c = a->u.l->n < b->u.l->n ? -1 : a->u.l->n > b->u.l->n;
    } else
        fail_at(J, off, "cannot order %s and %s", type_name(a->t), type_name(b->t));
    switch (op) {
    case OP_LT: return c < 0;
    case OP_LE: return c <= 0;
    case OP_GT: return c > 0;
    default: return c >= 0;
    }
}

static jv repeat(jj *J, const jv *seq, int64_t times, uint32_t off)
{
    if (times < 0) times = 0;
    if (seq->t == JV_STR) {
        uint64_t total;
        if (!llm_mul_ok(seq->u.s->len, (uint64_t)times, &total) || total > J->max_output)
            fail_at(J, off, "string repetition too large");
        jstr *r = jalloc_raw(J, sizeof(jstr) + (size_t)total + 1);
        r->len = (size_t)total;
        for (int64_t i = 0; i < times; i++) memcpy(r->s + (size_t)i * seq->u.s->len, seq->u.s->s, seq->u.s->len);
        r->s[total] = 0;
        return (jv){.t = JV_STR, .u.s = r};
    }
    uint64_t total;
    if (!llm_mul_ok(seq->u.l->n, (uint64_t)times, &total) || total > JJ_MAX_ITEMS)
        fail_at(J, off, "list repetition too large");
    jlist *l = mklist(J, (size_t)total);
    for (int64_t i = 0; i < times; i++)
        for (size_t k = 0; k < seq->u.l->n; k++) list_push(J, l, seq->u.l->v[k]);
    return vlist(l);
}

static jv arith(jj *J, int op, jv a, jv b, uint32_t off)
{
    if (op == OP_ADD) {
        if (a.t == JV_STR && b.t == JV_STR) {
            sbuf s = {0};
            sb_add(J, &s, a.u.s->s, a.u.s->len);
            sb_add(J, &s, b.u.s->s, b.u.s->len);
            return sb_val(J, &s);
        }
        if (a.t == JV_LIST && b.t == JV_LIST) {
            jlist *l = mklist(J, a.u.l->n + b.u.l->n);
            for (size_t i = 0; i < a.u.l->n; i++) list_push(J, l, a.u.l->v[i]);
            for (size_t i = 0; i < b.u.l->n; i++) list_push(J, l, b.u.l->v[i]);
            return vlist(l);
        }
    }
    if (op == OP_MUL) {
        if ((a.t == JV_STR || a.t == JV_LIST) && (b.t == JV_INT || b.t == JV_BOOL)) return repeat(J, &a, ival(&b), off);
        if ((b.t == JV_STR || b.t == JV_LIST) && (a.t == JV_INT || a.t == JV_BOOL)) return repeat(J, &b, ival(&a), off);
    }
    static const char *opname[] = {"", "+", "-", "*", "/", "//", "%", "**"};
    if (!is_num(&a) || !is_num(&b)) {
        if (a.t == JV_UNDEF || b.t == JV_UNDEF) {
            const char *nm = a.t == JV_UNDEF ? a.u.undef_name : b.u.undef_name;
            fail_at(J, off, "'%s' is undefined (operand of '%s')", nm ? nm : "value", opname[op]);
        }
        fail_at(J, off, "unsupported operand types for '%s': %s and %s", opname[op], type_name(a.t), type_name(b.t));
    }
    if (a.t != JV_FLOAT && b.t != JV_FLOAT && op != OP_DIV) {
        int64_t x = ival(&a), y = ival(&b), r;
        switch (op) {
        case OP_ADD: if (!__builtin_add_overflow(x, y, &r)) return vint(r); break;
        case OP_SUB: if (!__builtin_sub_overflow(x, y, &r)) return vint(r); break;
        case OP_MUL: if (!__builtin_mul_overflow(x, y, &r)) return vint(r); break;
        case OP_FDIV: case OP_MOD:
            if (y == 0) fail_at(J, off, "division by zero");
            if (x == INT64_MIN && y == -1) break;
            {
                int64_t q = x / y, m = x % y;
                if (m != 0 && ((m < 0) != (y < 0))) { q--; m += y; } /* Python floors */
                return vint(op == OP_FDIV ? q : m);
            }
        case OP_POW:
            if (y >= 0) {
                int64_t acc = 1;
                int ok = 1;
                for (int64_t i = 0; i < y && ok; i++) {
                    ok = !__builtin_mul_overflow(acc, x, &acc);
                    if (i > 64 && (x == 0 || x == 1 || x == -1)) break;
                }
                if (ok) return vint(acc);
            }
            break;
        }
    }
    double x = num(J, &a, off, opname[op]), y = num(J, &b, off, opname[op]);
    switch (op) {
    case OP_ADD: return vfloat(x + y);
    case OP_SUB: return vfloat(x - y);
    case OP_MUL: return vfloat(x * y);
    case OP_DIV: if (y == 0) fail_at(J, off, "division by zero"); return vfloat(x / y);
    case OP_FDIV: if (y == 0) fail_at(J, off, "division by zero"); return vfloat(floor(x / y));
    case OP_MOD: {
        if (y == 0) fail_at(J, off, "division by zero");
        double m = fmod(x, y);
        if (m != 0 && ((m < 0) != (y < 0))) m += y;
        return vfloat(m);
    }
    default: return vfloat(pow(x, y));
    }
}

/* Python slice semantics over n elements. */
static size_t slice_indices(jj *J, const node *n, frame *f, size_t len, size_t *idx_out)
{
    int64_t step = 1;
    if (n->d) {
        jv s = eval(J, f, n->d);
        if (s.t != JV_NONE) {
            if (s.t != JV_INT) fail_at(J, n->off, "slice step must be an integer");
            step = s.u.i;
        }
    }
    if (step == 0) fail_at(J, n->off, "slice step cannot be zero");
    int64_t L = (int64_t)len, start, stop;
    int64_t lo = step < 0 ? -1 : 0, hi = step < 0 ? L - 1 : L;
    start = step < 0 ? hi : lo;
    stop = step < 0 ? lo : hi;
    const node *bounds[2] = {n->b, n->c};
    int64_t *dst[2] = {&start, &stop};
    for (int k = 0; k < 2; k++) {
        if (!bounds[k]) continue;
        jv v = eval(J, f, bounds[k]);
        if (v.t == JV_NONE) continue;
        if (v.t != JV_INT) fail_at(J, n->off, "slice bounds must be integers");
        int64_t x = v.u.i;
        if (x < 0) { x += L; if (x < lo) x = lo; }
        else if (x > hi) x = hi;
        *dst[k] = x;
    }
    size_t count = 0;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) idx_out[count++] = (size_t)i;
    return count;
}

static jv do_slice(jj *J, frame *f, const node *n, jv obj)
{
    if (obj.t == JV_LIST) {
        size_t *idx = jalloc(J, (obj.u.l->n + 1) * sizeof(size_t));
        size_t k = slice_indices(J, n, f, obj.u.l->n, idx);
        jlist *l = mklist(J, k);
        for (size_t i = 0; i < k; i++) list_push(J, l, obj.u.l->v[idx[i]]);
        return vlist(l);
    }
    if (obj.t == JV_STR) {
        size_t cps;
        size_t *off = cp_offsets(J, obj.u.s, &cps);
        size_t *idx = jalloc(J, (cps + 1) * sizeof(size_t));
        size_t k = slice_indices(J, n, f, cps, idx);
        sbuf b = {0};
        for (size_t i = 0; i < k; i++) sb_add(J, &b, obj.u.s->s + off[idx[i]], off[idx[i] + 1] - off[idx[i]]);
        return sb_val(J, &b);
    }
    fail_at(J, n->off, "cannot slice a %s", type_name(obj.t));
}

static jv loop_attr(jj *J, const jloop *lp, const char *name, uint32_t off)
{
    if (!strcmp(name, "index0")) return vint((int64_t)lp->i);
    if (!strcmp(name, "index")) return vint((int64_t)lp->i + 1);
    if (!strcmp(name, "revindex")) return vint((int64_t)(lp->n - lp->i));
    if (!strcmp(name, "revindex0")) return vint((int64_t)(lp->n - lp->i - 1));
    if (!strcmp(name, "first")) return vbool(lp->i == 0);
    if (!strcmp(name, "last")) return vbool(lp->i + 1 == lp->n);
    if (!strcmp(name, "length")) return vint((int64_t)lp->n);
    if (!strcmp(name, "depth")) return vint(1);
    if (!strcmp(name, "depth0")) return vint(0);
    if (!strcmp(name, "previtem")) return lp->i > 0 ? lp->items[lp->i - 1] : vundef("loop.previtem");
    if (!strcmp(name, "nextitem")) return lp->i + 1 < lp->n ? lp->items[lp->i + 1] : vundef("loop.nextitem");
    fail_at(J, off, "unsupported loop attribute 'loop.%s'", name);
}

static jv method(jj *J, jv self, const char *name)
{
    jv *s = jalloc(J, sizeof(jv));
    *s = self;
    return (jv){.t = JV_FUNC, .u.fn = {name, s}};
}

static const char *const str_methods[] = {"strip", "lstrip", "rstrip", "split", "startswith", "endswith", "upper",
                                          "lower", "title", "capitalize", "replace", "find", "count", "join", NULL};
static const char *const dict_methods[] = {"items", "keys", "values", "get", NULL};
static const char *const list_methods[] = {"append", "index", "count", NULL};

static int in_names(const char *const *names, const char *n)
{
    for (; *names; names++)
        if (!strcmp(*names, n)) return 1;
    return 0;
}

static jv getattr(jj *J, jv obj, const char *name, uint32_t off)
{
    switch (obj.t) {
    case JV_DICT: case JV_NS: {
        jv *v = dict_find_str(obj.u.d, name);
        if (v) return *v;
        if (obj.t == JV_DICT && in_names(dict_methods, name)) return method(J, obj, name);
        return vundef(name);
    }
    case JV_LOOP: return loop_attr(J, obj.u.loop, name, off);
    case JV_STR: if (in_names(str_methods, name)) return method(J, obj, name); return vundef(name);
    case JV_LIST: if (in_names(list_methods, name)) return method(J, obj, name); return vundef(name);
    case JV_UNDEF:
        fail_at(J, off, "'%s' is undefined (reading its attribute '%s')", obj.u.undef_name ? obj.u.undef_name : "value", name);
    case JV_NONE: fail_at(J, off, "None has no attribute '%s'", name);
    default: return vundef(name);
    }
}

static jv getitem(jj *J, jv obj, jv key, uint32_t off)
{
    switch (obj.t) {
    case JV_DICT: case JV_NS: {
        jv *v = dict_find(J, obj.u.d, &key);
        if (v) return *v;
        if (key.t == JV_STR) return getattr(J, obj, key.u.s->s, off);
        return vundef(NULL);
    }
    case JV_LIST: {
        if (key.t != JV_INT && key.t != JV_BOOL) {
            if (key.t == JV_STR) return getattr(J, obj, key.u.s->s, off);
            fail_at(J, off, "list index must be an integer, got %s", type_name(key.t));
        }
        int64_t i = ival(&key);
        if (i < 0) i += (int64_t)obj.u.l->n;
        if (i < 0 || i >= (int64_t)obj.u.l->n) return vundef("list item");
        return obj.u.l->v[i];
    }
    case JV_STR: {
        if (key.t != JV_INT) {
            if (key.t == JV_STR) return getattr(J, obj, key.u.s->s, off);
            fail_at(J, off, "string index must be an integer");
        }
        size_t cps;
        size_t *o = cp_offsets(J, obj.u.s, &cps);
        int64_t i = key.u.i;
        if (i < 0) i += (int64_t)cps;
        if (i < 0 || i >= (int64_t)cps) return vundef("string index");
        return vstr(J, obj.u.s->s + o[i], o[i + 1] - o[i]);
    }
    case JV_LOOP:
        if (key.t == JV_STR) return loop_attr(J, obj.u.loop, key.u.s->s, off);
        return vundef(NULL);
    case JV_UNDEF:
        fail_at(J, off, "'%s' is undefined (subscripted)", obj.u.undef_name ? obj.u.undef_name : "value");
    case JV_NONE: fail_at(J, off, "None is not subscriptable");
    default: fail_at(J, off, "a %s is not subscriptable", type_name(obj.t));
    }
}

/* Items of an iterable (list, dict keys, string characters); undefined/none iterate as empty. */
static jlist *iter_items(jj *J, jv v, uint32_t off)
{
    switch (v.t) {
    case JV_LIST: return v.u.l;
    case JV_DICT: case JV_NS: {
        jlist *l = mklist(J, v.u.d->n);
        for (size_t i = 0; i < v.u.d->n; i++) list_push(J, l, v.u.d->k[i]);
        return l;
    }
    case JV_STR: {
        size_t cps;
        size_t *o = cp_offsets(J, v.u.s, &cps);
        jlist *l = mklist(J, cps);
        for (size_t i = 0; i < cps; i++) list_push(J, l, vstr(J, v.u.s->s + o[i], o[i + 1] - o[i]));
        return l;
    }
    case JV_UNDEF: return mklist(J, 0);
    default: fail_at(J, off, "cannot iterate over a %s", type_name(v.t));
    }
}

/* Arguments of a call, evaluated. */
typedef struct args {
    jv *pos;
    size_t npos;
    const char **kwn;
    jv *kw;
    size_t nkw;
} args;

static args eval_args(jj *J, frame *f, const node *call, size_t skip_first)
{
    args a = {0};
    a.npos = call->args.n - skip_first;
    a.pos = jalloc(J, (a.npos + 1) * sizeof(jv));
    for (size_t i = 0; i < a.npos; i++) a.pos[i] = eval(J, f, call->args.v[i + skip_first]);
    a.nkw = call->kw.n;
    a.kw = jalloc(J, (a.nkw + 1) * sizeof(jv));
    a.kwn = call->kwn;
    for (size_t i = 0; i < a.nkw; i++) a.kw[i] = eval(J, f, call->kw.v[i]);
    return a;
}

/* Argument i by position, or by keyword name; NULL when absent. */
static const jv *arg(const args *a, size_t i, const char *name)
{
    if (i < a->npos) return &a->pos[i];
    for (size_t k = 0; name && k < a->nkw; k++)
        if (!strcmp(a->kwn[k], name)) return &a->kw[k];
    return NULL;
}

static const jstr *arg_str(jj *J, const args *a, size_t i, const char *name, const char *fn, uint32_t off)
{
    const jv *v = arg(a, i, name);
    if (!v) fail_at(J, off, "%s: missing argument %zu", fn, i + 1);
    if (v->t != JV_STR) fail_at(J, off, "%s: argument %zu must be a string, got %s", fn, i + 1, type_name(v->t));
    return v->u.s;
}

/* Python str.strip family: chars NULL = whitespace. which: 1 = left, 2 = right, 3 = both. */
static jv strip(jj *J, const jstr *s, const jstr *chars, int which)
{
    size_t a = 0, b = s->len, k;
    if (!chars) { /* Python whitespace, Unicode included */
        while ((which & 1) && a < b && (k = llm_py_space_at(s->s + a, b - a))) a += k;
        while ((which & 2) && b > a && (k = llm_py_space_before(s->s + a, b - a))) b -= k;
        return vstr(J, s->s + a, b - a);
    }
    /* explicit characters: byte-wise, exact for ASCII sets (the only ones templates use) */
    while ((which & 1) && a < b && memchr(chars->s, s->s[a], chars->len)) a++;
    while ((which & 2) && b > a && memchr(chars->s, s->s[b - 1], chars->len)) b--;
    return vstr(J, s->s + a, b - a);
}

/* ASCII case mapping. mode 0 upper, 1 lower, 2 Python str.title() (a word starts after any
 * non-letter), 3 capitalize, 4 Jinja's title filter (a word starts after space or -([{<). */
static jv case_map(jj *J, const jstr *s, int mode)
{
    jstr *r = (jstr *)mkstr(J, s->s, s->len);
    int word_start = 1;
    for (size_t i = 0; i < r->len; i++) {
        unsigned char c = (unsigned char)r->s[i];
        switch (mode) {
        case 0: r->s[i] = (char)toupper(c); break;
        case 1: r->s[i] = (char)tolower(c); break;
        case 2: case 4: r->s[i] = (char)(word_start ? toupper(c) : tolower(c)); break;
        default: r->s[i] = (char)(i == 0 ? toupper(c) : tolower(c)); break;
        }
        if (mode == 2)
            word_start = !isalpha(c) && c < 0x80;
        else if (mode == 4)
            word_start = is_ws((char)c) || (c && strchr("-([{<", c) != NULL);
    }
    return (jv){.t = JV_STR, .u.s = r};
}

static jv str_replace(jj *J, const jstr *s, const jstr *from, const jstr *to, int64_t count)
{
    charge(J, s->len);
    sbuf b = {0};
    size_t i = 0;
    int64_t done = 0;
    if (from->len == 0) { /* Python inserts `to` between every character */
        for (size_t k = 0; k <= s->len; k++) {
            if (count < 0 || done < count) { sb_add(J, &b, to->s, to->len); done++; }
            if (k < s->len) sb_add(J, &b, s->s + k, 1);
        }
        return sb_val(J, &b);
    }
    while (i < s->len) {
        const char *hit = (count < 0 || done < count) ? memmem(s->s + i, s->len - i, from->s, from->len) : NULL;
        if (!hit) break;
        size_t h = (size_t)(hit - s->s);
        sb_add(J, &b, s->s + i, h - i);
        sb_add(J, &b, to->s, to->len);
        i = h + from->len;
        done++;
    }
    sb_add(J, &b, s->s + i, s->len - i);
    return sb_val(J, &b);
}

static jv str_split(jj *J, const jstr *s, const jstr *sep, int64_t maxsplit)
{
    charge(J, s->len);
    jlist *l = mklist(J, 0);
    size_t i = 0;
    int64_t done = 0;
    if (!sep) { /* runs of (Python) whitespace, no empty strings */
        size_t k;
        for (;;) {
            while (i < s->len && (k = llm_py_space_at(s->s + i, s->len - i))) i += k;
            if (i >= s->len) break;
            if (maxsplit >= 0 && done >= maxsplit) {
                size_t e = s->len;
                while (e > i && (k = llm_py_space_before(s->s + i, e - i))) e -= k;
                list_push(J, l, vstr(J, s->s + i, e - i));
                break;
            }
            size_t st = i;
            while (i < s->len && !llm_py_space_at(s->s + i, s->len - i)) i++;
            list_push(J, l, vstr(J, s->s + st, i - st));
            done++;
        }
        return vlist(l);
    }
    for (;;) {
        const char *hit = (maxsplit < 0 || done < maxsplit) ? memmem(s->s + i, s->len - i, sep->s, sep->len) : NULL;
        if (!hit) { list_push(J, l, vstr(J, s->s + i, s->len - i)); break; }
        size_t h = (size_t)(hit - s->s);
        list_push(J, l, vstr(J, s->s + i, h - i));
        i = h + sep->len;
        done++;
    }
    return vlist(l);
}

static int affix(const jstr *s, const jv *p, int suffix) /* bounded: compares at most len(p) */
{
    if (p->t == JV_LIST) {
        for (size_t i = 0; i < p->u.l->n; i++)
            if (affix(s, &p->u.l->v[i], suffix)) return 1;
        return 0;
    }
    if (p->t != JV_STR || p->u.s->len > s->len) return 0;
    return memcmp(s->s + (suffix ? s->len - p->u.s->len : 0), p->u.s->s, p->u.s->len) == 0;
}

static jv dict_items(jj *J, jdict *d, int what) /* 0 items, 1 keys, 2 values */
{
    jlist *l = mklist(J, d->n);
    for (size_t i = 0; i < d->n; i++) {
        if (what == 1) list_push(J, l, d->k[i]);
        else if (what == 2) list_push(J, l, d->v[i]);
        else {
            jlist *p = mklist(J, 2);
            list_push(J, p, d->k[i]);
            list_push(J, p, d->v[i]);
            list_push(J, l, vlist(p));
        }
    }
    return vlist(l);
}

static jv join(jj *J, const jlist *l, const jstr *sep, const char *attr, uint32_t off)
{
    sbuf b = {0};
    for (size_t i = 0; i < l->n; i++) {
        if (i && sep) sb_add(J, &b, sep->s, sep->len);
        jv v = attr ? getattr(J, l->v[i], attr, off) : l->v[i];
        const jstr *s = to_str(J, &v);
        sb_add(J, &b, s->s, s->len);
    }
    return sb_val(J, &b);
}

static jv call_method(jj *J, jv self, const char *name, const args *a, uint32_t off)
{
    if (self.t == JV_STR) {
        const jstr *s = self.u.s;
        if (!strcmp(name, "strip") || !strcmp(name, "lstrip") || !strcmp(name, "rstrip")) {
            const jv *c = arg(a, 0, "chars");
            const jstr *chars = c && c->t == JV_STR ? c->u.s : NULL;
            return strip(J, s, chars, name[0] == 'l' ? 1 : name[0] == 'r' ? 2 : 3);
        }
        if (!strcmp(name, "split")) {
            const jv *sep = arg(a, 0, "sep"), *mx = arg(a, 1, "maxsplit");
            if (sep && sep->t == JV_STR && sep->u.s->len == 0) fail_at(J, off, "split: empty separator");
            return str_split(J, s, sep && sep->t == JV_STR ? sep->u.s : NULL, mx && mx->t == JV_INT ? mx->u.i : -1);
        }
        if (!strcmp(name, "startswith") || !strcmp(name, "endswith")) {
            const jv *p = arg(a, 0, "prefix");
            if (!p) fail_at(J, off, "%s: missing argument", name);
            return vbool(affix(s, p, name[0] == 'e'));
        }
        if (!strcmp(name, "upper")) return case_map(J, s, 0);
        if (!strcmp(name, "lower")) return case_map(J, s, 1);
        if (!strcmp(name, "title")) return case_map(J, s, 2);
        if (!strcmp(name, "capitalize")) return case_map(J, s, 3);
        if (!strcmp(name, "replace")) {
            const jv *c = arg(a, 2, "count");
            return str_replace(J, s, arg_str(J, a, 0, "old", name, off), arg_str(J, a, 1, "new", name, off),
                               c && c->t == JV_INT ? c->u.i : -1);
        }
        if (!strcmp(name, "find") || !strcmp(name, "count")) {
            const jstr *sub = arg_str(J, a, 0, "sub", name, off);
            charge(J, s->len);
            if (name[0] == 'f') {
                const char *h = memmem(s->s, s->len, sub->s, sub->len);
                return vint(h ? (int64_t)str_cplen(mkstr(J, s->s, (size_t)(h - s->s))) : -1);
            }
            int64_t n = 0;
            if (!sub->len) return vint((int64_t)str_cplen(s) + 1);
            for (const char *p = s->s; (p = memmem(p, s->len - (size_t)(p - s->s), sub->s, sub->len)); p += sub->len) n++;
            return vint(n);
        }
        if (!strcmp(name, "join")) {
            const jv *l = arg(a, 0, "iterable");
            if (!l) fail_at(J, off, "join: missing argument");
            return join(J, iter_items(J, *l, off), s, NULL, off);
        }
    } else if (self.t == JV_DICT) {
        if (!strcmp(name, "items")) return dict_items(J, self.u.d, 0);
        if (!strcmp(name, "keys")) return dict_items(J, self.u.d, 1);
        if (!strcmp(name, "values")) return dict_items(J, self.u.d, 2);
        if (!strcmp(name, "get")) {
            const jv *k = arg(a, 0, "key"), *d = arg(a, 1, "default");
            if (!k) fail_at(J, off, "get: missing argument");
            jv *v = dict_find(J, self.u.d, k);
            return v ? *v : d ? *d : vnone();
        }
    } else if (self.t == JV_LIST) {
        if (!strcmp(name, "append")) {
            const jv *v = arg(a, 0, NULL);
            if (!v) fail_at(J, off, "append: missing argument");
            list_push(J, self.u.l, *v);
            return vnone();
        }
        if (!strcmp(name, "index") || !strcmp(name, "count")) {
            const jv *v = arg(a, 0, NULL);
            if (!v) fail_at(J, off, "%s: missing argument", name);
            int64_t n = 0;
            for (size_t i = 0; i < self.u.l->n; i++)
                if (jv_eq(J, &self.u.l->v[i], v)) {
                    if (name[0] == 'i') return vint((int64_t)i);
                    n++;
                }
            if (name[0] == 'i') fail_at(J, off, "index: value not in list");
            return vint(n);
        }
    }
    fail_at(J, off, "unsupported method '%s' on a %s", name, type_name(self.t));
}

/* ---- tests and filters ---- */

static int run_test(jj *J, const char *name, const jv *v, const args *a, uint32_t off)
{
    const jv *x = arg(a, 0, NULL);
    if (!strcmp(name, "defined")) return v->t != JV_UNDEF;
    if (!strcmp(name, "undefined")) return v->t == JV_UNDEF;
    if (!strcmp(name, "none")) return v->t == JV_NONE;
    if (!strcmp(name, "string")) return v->t == JV_STR;
    if (!strcmp(name, "number")) return v->t == JV_INT || v->t == JV_FLOAT;
    if (!strcmp(name, "integer")) return v->t == JV_INT;
    if (!strcmp(name, "float")) return v->t == JV_FLOAT;
    if (!strcmp(name, "boolean")) return v->t == JV_BOOL;
    if (!strcmp(name, "true")) return v->t == JV_BOOL && v->u.b;
    if (!strcmp(name, "false")) return v->t == JV_BOOL && !v->u.b;
    if (!strcmp(name, "mapping")) return v->t == JV_DICT || v->t == JV_NS;
    if (!strcmp(name, "sequence")) return v->t == JV_LIST || v->t == JV_STR || v->t == JV_DICT;
    if (!strcmp(name, "iterable")) return v->t == JV_LIST || v->t == JV_STR || v->t == JV_DICT || v->t == JV_NS;
    if (!strcmp(name, "callable")) return v->t == JV_MACRO || v->t == JV_FUNC;
    if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
        if (v->t != JV_STR) return 0;
        for (size_t i = 0; i < v->u.s->len; i++)
            if (name[0] == 'l' ? isupper((unsigned char)v->u.s->s[i]) : islower((unsigned char)v->u.s->s[i])) return 0;
        return 1;
    }
    if (!strcmp(name, "odd") || !strcmp(name, "even")) {
        if (v->t != JV_INT) fail_at(J, off, "test '%s' needs an integer", name);
        return (int)(v->u.i & 1) == (name[0] == 'o');
    }
    if (!strcmp(name, "divisibleby")) {
        if (v->t != JV_INT || !x || x->t != JV_INT || x->u.i == 0) fail_at(J, off, "test 'divisibleby' needs integers");
        return x->u.i == -1 || v->u.i % x->u.i == 0;
    }
    static const struct { const char *n; int op; } cmp[] = {
        {"eq", OP_EQ}, {"equalto", OP_EQ}, {"==", OP_EQ}, {"ne", OP_NE}, {"!=", OP_NE}, {"lt", OP_LT},
        {"lessthan", OP_LT}, {"<", OP_LT}, {"le", OP_LE}, {"<=", OP_LE}, {"gt", OP_GT}, {"greaterthan", OP_GT},
        {">", OP_GT}, {"ge", OP_GE}, {">=", OP_GE}, {"in", OP_IN}};
    for (size_t i = 0; i < sizeof cmp / sizeof *cmp; i++)
        if (!strcmp(name, cmp[i].n)) {
            if (!x) fail_at(J, off, "test '%s' needs an argument", name);
            return compare(J, cmp[i].op, v, x, off);
        }
    if (!strcmp(name, "sameas")) {
        if (!x) fail_at(J, off, "test 'sameas' needs an argument");
        return v->t == x->t && jv_eq(J, v, x);
    }
    fail_at(J, off, "unknown test '%s'", name);
}

/* Stable merge sort of v[0..n) by key (the item, or its attribute), ascending. */
typedef struct sort_ctx { jj *J; const char *attr; uint32_t off; } sort_ctx;

static jv sort_key(const sort_ctx *c, const jv *x) { return c->attr ? getattr(c->J, *x, c->attr, c->off) : *x; }

static int sort_less(const sort_ctx *c, const jv *x, const jv *y)
{
    jv kx = sort_key(c, x), ky = sort_key(c, y);
    step(c->J, c->off);
    return compare(c->J, OP_LT, &kx, &ky, c->off);
}

static void merge_sort(const sort_ctx *c, jv *v, jv *tmp, size_t n)
{
    if (n < 2) return;
    size_t h = n / 2;
    merge_sort(c, v, tmp, h);
    merge_sort(c, v + h, tmp, n - h);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = sort_less(c, &v[j], &v[i]) ? v[j++] : v[i++];
    while (i < h) tmp[k++] = v[i++];
    while (j < n) tmp[k++] = v[j++];
    memcpy(v, tmp, n * sizeof(jv));
}

static jlist *sorted(jj *J, jlist *src, const char *attr, int reverse, uint32_t off)
{
    jlist *l = mklist(J, src->n);
    for (size_t i = 0; i < src->n; i++) list_push(J, l, src->v[i]);
    jv *tmp = jalloc(J, (l->n + 1) * sizeof(jv));
    sort_ctx c = {J, attr, off};
    merge_sort(&c, l->v, tmp, l->n);
    if (reverse)
        for (size_t i = 0; i < l->n / 2; i++) { jv t = l->v[i]; l->v[i] = l->v[l->n - 1 - i]; l->v[l->n - 1 - i] = t; }
    return l;
}

static jv apply_filter(jj *J, const char *name, jv v, const args *a, uint32_t off);

/* selectattr/rejectattr/select/reject: keep items whose (attribute) passes the test. */
static jv select_items(jj *J, jv v, const args *a, int by_attr, int keep, uint32_t off)
{
    jlist *src = iter_items(J, v, off), *l = mklist(J, 0);
    size_t base = by_attr ? 1 : 0;
    const jv *attr = by_attr ? arg(a, 0, NULL) : NULL;
    if (by_attr && (!attr || attr->t != JV_STR)) fail_at(J, off, "selectattr: attribute name must be a string");
    const jv *test = arg(a, base, NULL);
    if (test && test->t != JV_STR) fail_at(J, off, "select: test name must be a string");
    args ta = {0};
    if (a->npos > base + 1) { ta.pos = a->pos + base + 1; ta.npos = a->npos - base - 1; }
    for (size_t i = 0; i < src->n; i++) {
        step(J, off);
        jv item = src->v[i];
        jv x = by_attr ? getattr(J, item, attr->u.s->s, off) : item;
        int r = test ? run_test(J, test->u.s->s, &x, &ta, off) : truthy(&x);
        if (r == keep) list_push(J, l, item);
    }
    return vlist(l);
}

static int64_t to_int(const jv *v, int64_t def)
{
    switch (v->t) {
    case JV_INT: return v->u.i;
    case JV_BOOL: return v->u.b;
    case JV_FLOAT: return isfinite(v->u.f) && fabs(v->u.f) < 9e18 ? (int64_t)v->u.f : def;
    case JV_STR: {
        char *end;
        errno = 0;
        long long x = strtoll(v->u.s->s, &end, 10);
        while (*end && is_ws(*end)) end++;
        if (!errno && end != v->u.s->s && !*end) return x;
        double d = strtod(v->u.s->s, &end);
        while (*end && is_ws(*end)) end++;
        if (end != v->u.s->s && !*end && isfinite(d) && fabs(d) < 9e18) return (int64_t)d;
        return def;
    }
    default: return def;
    }
}

static jv apply_filter(jj *J, const char *name, jv v, const args *a, uint32_t off)
{
    if (!strcmp(name, "trim")) {
        if (v.t == JV_UNDEF) return vcstr(J, "");
        const jv *c = arg(a, 0, "chars");
        return strip(J, to_str(J, &v), c && c->t == JV_STR ? c->u.s : NULL, 3);
    }
    if (!strcmp(name, "length") || !strcmp(name, "count")) {
        switch (v.t) {
        case JV_STR: return vint((int64_t)str_cplen(v.u.s));
        case JV_LIST: return vint((int64_t)v.u.l->n);
        case JV_DICT: case JV_NS: return vint((int64_t)v.u.d->n);
        case JV_UNDEF: return vint(0);
        default: fail_at(J, off, "length: a %s has no length", type_name(v.t));
        }
    }
    if (!strcmp(name, "upper")) return case_map(J, to_str(J, &v), 0);
    if (!strcmp(name, "lower")) return case_map(J, to_str(J, &v), 1);
    if (!strcmp(name, "title")) return case_map(J, to_str(J, &v), 4);
    if (!strcmp(name, "capitalize")) return case_map(J, to_str(J, &v), 3);
    if (!strcmp(name, "default") || !strcmp(name, "d")) {
        const jv *def = arg(a, 0, "default_value"), *boolean = arg(a, 1, "boolean");
        int use_default = v.t == JV_UNDEF || (boolean && truthy(boolean) && !truthy(&v));
        return use_default ? (def ? *def : vcstr(J, "")) : v;
    }
    if (!strcmp(name, "tojson")) {
        const jv *ind = arg(a, 0, "indent");
        int indent = ind && ind->t == JV_INT ? (int)(ind->u.i < 0 ? 0 : ind->u.i > 16 ? 16 : ind->u.i) : -1;
        sbuf b = {0};
        to_json(J, &b, &v, indent, 0, off);
        return sb_val(J, &b);
    }
    if (!strcmp(name, "join")) {
        const jv *sep = arg(a, 0, "d"), *attr = arg(a, 1, "attribute");
        const jstr *s = sep ? to_str(J, sep) : NULL;
        return join(J, iter_items(J, v, off), s, attr && attr->t == JV_STR ? attr->u.s->s : NULL, off);
    }
    if (!strcmp(name, "first") || !strcmp(name, "last")) {
        jlist *l = iter_items(J, v, off);
        if (!l->n) return vundef(name);
        return l->v[name[0] == 'f' ? 0 : l->n - 1];
    }
    if (!strcmp(name, "replace")) {
        const jv *c = arg(a, 2, "count");
        return str_replace(J, to_str(J, &v), arg_str(J, a, 0, "old", name, off), arg_str(J, a, 1, "new", name, off),
                           c && c->t == JV_INT ? c->u.i : -1);
    }
    if (!strcmp(name, "string")) return (jv){.t = JV_STR, .u.s = to_str(J, &v)};
    if (!strcmp(name, "safe")) return v;
    if (!strcmp(name, "e") || !strcmp(name, "escape")) { /* markupsafe's HTML escaping */
        const jstr *x = to_str(J, &v);
        sbuf b = {0};
        for (size_t i = 0; i < x->len; i++) {
            const char *r = x->s[i] == '&' ? "&amp;" : x->s[i] == '<' ? "&lt;" : x->s[i] == '>' ? "&gt;"
                          : x->s[i] == '"' ? "&#34;" : x->s[i] == '\'' ? "&#39;" : NULL;
            if (r) sb_puts(J, &b, r);
            else sb_add(J, &b, x->s + i, 1);
        }
        return sb_val(J, &b);
    }
    if (!strcmp(name, "int")) {
        const jv *def = arg(a, 0, "default");
        return vint(to_int(&v, def && def->t == JV_INT ? def->u.i : 0));
    }
    if (!strcmp(name, "float")) {
        if (is_num(&v)) return vfloat(num(J, &v, off, name));
        if (v.t == JV_STR) {
            char *end;
            double d = strtod(v.u.s->s, &end);
            if (end != v.u.s->s) return vfloat(d);
        }
        return vfloat(0);
    }
    if (!strcmp(name, "abs")) {
        if (v.t == JV_INT) return vint(v.u.i == INT64_MIN ? INT64_MAX : v.u.i < 0 ? -v.u.i : v.u.i);
        return vfloat(fabs(num(J, &v, off, name)));
    }
    if (!strcmp(name, "round")) {
        const jv *p = arg(a, 0, "precision");
        double x = num(J, &v, off, name), m = pow(10, p && p->t == JV_INT ? (double)(p->u.i > 15 ? 15 : p->u.i) : 0);
        return vfloat(round(x * m) / m);
    }
    if (!strcmp(name, "items")) {
        if (v.t == JV_UNDEF) return vlist(mklist(J, 0));
        if (v.t != JV_DICT && v.t != JV_NS) fail_at(J, off, "items: expected a dict, got %s", type_name(v.t));
        return dict_items(J, v.u.d, 0);
    }
    if (!strcmp(name, "list")) return vlist(iter_items(J, v, off));
    if (!strcmp(name, "reverse")) {
        if (v.t == JV_STR) {
            size_t cps;
            size_t *o = cp_offsets(J, v.u.s, &cps);
            sbuf b = {0};
            for (size_t i = cps; i-- > 0;) sb_add(J, &b, v.u.s->s + o[i], o[i + 1] - o[i]);
            return sb_val(J, &b);
        }
        jlist *src = iter_items(J, v, off), *l = mklist(J, src->n);
        for (size_t i = src->n; i-- > 0;) list_push(J, l, src->v[i]);
        return vlist(l);
    }
    if (!strcmp(name, "unique")) {
        jlist *src = iter_items(J, v, off), *l = mklist(J, 0);
        for (size_t i = 0; i < src->n; i++) {
            int seen = 0;
            for (size_t k = 0; k < l->n && !seen; k++) { step(J, off); seen = jv_eq(J, &l->v[k], &src->v[i]); }
            if (!seen) list_push(J, l, src->v[i]);
        }
        return vlist(l);
    }
    if (!strcmp(name, "selectattr") || !strcmp(name, "rejectattr"))
        return select_items(J, v, a, 1, name[0] == 's', off);
    if (!strcmp(name, "select") || !strcmp(name, "reject")) return select_items(J, v, a, 0, name[0] == 's', off);
    if (!strcmp(name, "map")) {
        jlist *src = iter_items(J, v, off), *l = mklist(J, src->n);
        const jv *attr = arg(a, 99, "attribute"), *def = arg(a, 99, "default");
        const jv *fname = arg(a, 0, NULL);
        if (!attr && (!fname || fname->t != JV_STR)) fail_at(J, off, "map: expected attribute= or a filter name");
        args rest = {0};
        if (!attr && a->npos > 1) { rest.pos = a->pos + 1; rest.npos = a->npos - 1; }
        for (size_t i = 0; i < src->n; i++) {
            step(J, off);
            jv x;
            if (attr) {
                if (attr->t != JV_STR) fail_at(J, off, "map: attribute must be a string");
                x = getattr(J, src->v[i], attr->u.s->s, off);
                if (x.t == JV_UNDEF && def) x = *def;
            } else
                x = apply_filter(J, fname->u.s->s, src->v[i], &rest, off);
            list_push(J, l, x);
        }
        return vlist(l);
    }
    if (!strcmp(name, "indent")) {
        const jv *w = arg(a, 0, "width"), *first = arg(a, 1, "first"), *blank = arg(a, 2, "blank");
        sbuf pad = {0};
        if (w && w->t == JV_STR) sb_add(J, &pad, w->u.s->s, w->u.s->len);
        else for (int64_t i = 0, n = w && w->t == JV_INT ? w->u.i : 4; i < n && i < 64; i++) sb_puts(J, &pad, " ");
        const jstr *s = to_str(J, &v);
        sbuf b = {0};
        size_t i = 0;
        int line0 = 1;
        while (i <= s->len) {
            const char *nl = memchr(s->s + i, '\n', s->len - i);
            size_t e = nl ? (size_t)(nl - s->s) : s->len;
            int empty = e == i;
            if ((!line0 || (first && truthy(first))) && (!empty || (blank && truthy(blank))) && pad.len)
                sb_add(J, &b, pad.p, pad.len);
            sb_add(J, &b, s->s + i, e - i);
            if (!nl) break;
            sb_add(J, &b, "\n", 1);
            i = e + 1;
            line0 = 0;
        }
        return sb_val(J, &b);
    }
    if (!strcmp(name, "sort")) {
        const jv *rev = arg(a, 0, "reverse"), *attr = arg(a, 2, "attribute");
        return vlist(sorted(J, iter_items(J, v, off), attr && attr->t == JV_STR ? attr->u.s->s : NULL,
                            rev && truthy(rev), off));
    }
    if (!strcmp(name, "dictsort")) {
        if (v.t != JV_DICT && v.t != JV_NS) fail_at(J, off, "dictsort: expected a dict, got %s", type_name(v.t));
        const jv *by = arg(a, 1, "by"), *rev = arg(a, 2, "reverse");
        jv items = dict_items(J, v.u.d, 0);
        jlist *l = sorted(J, items.u.l, NULL, 0, off);
        if (by && by->t == JV_STR && !strcmp(by->u.s->s, "value")) {
            /* sort the pairs by their second element */
            jlist *vals = mklist(J, l->n);
            for (size_t i = 0; i < l->n; i++) {
                jdict *d = jalloc(J, sizeof *d);
                dict_set_str(J, d, "k", l->v[i].u.l->v[1]);
                dict_set_str(J, d, "p", l->v[i]);
                list_push(J, vals, vdict(d));
            }
            jlist *s2 = sorted(J, vals, "k", 0, off);
            for (size_t i = 0; i < s2->n; i++) l->v[i] = *dict_find_str(s2->v[i].u.d, "p");
        }
        if (rev && truthy(rev))
            for (size_t i = 0; i < l->n / 2; i++) { jv t = l->v[i]; l->v[i] = l->v[l->n - 1 - i]; l->v[l->n - 1 - i] = t; }
        return vlist(l);
    }
    if (!strcmp(name, "sum")) {
        const jv *attr = arg(a, 0, "attribute"), *start = arg(a, 1, "start");
        jlist *l = iter_items(J, v, off);
        jv acc = start ? *start : vint(0);
        for (size_t i = 0; i < l->n; i++) {
            step(J, off);
            jv x = attr && attr->t == JV_STR ? getattr(J, l->v[i], attr->u.s->s, off) : l->v[i];
            acc = arith(J, OP_ADD, acc, x, off);
        }
        return acc;
    }
    if (!strcmp(name, "min") || !strcmp(name, "max")) {
        const jv *attr = arg(a, 1, "attribute");
        jlist *l = iter_items(J, v, off);
        if (!l->n) return vundef(name);
        sort_ctx c = {J, attr && attr->t == JV_STR ? attr->u.s->s : NULL, off};
        jv best = l->v[0];
        for (size_t i = 1; i < l->n; i++)
            if (name[1] == 'i' ? sort_less(&c, &l->v[i], &best) : sort_less(&c, &best, &l->v[i])) best = l->v[i];
        return best;
    }
    if (!strcmp(name, "wordcount")) {
        jv l = str_split(J, to_str(J, &v), NULL, -1);
        return vint((int64_t)l.u.l->n);
    }
    fail_at(J, off, "unknown filter '%s'", name);
}

/* ---- calls ---- */

static jv call_macro(jj *J, frame *f, const node *m, const args *a, uint32_t off)
{
    (void)f;
    if (++J->macro_depth > JJ_MAX_MACRO_DEPTH)
        fail_at(J, off, "macro calls nest too deeply (more than %d)", JJ_MAX_MACRO_DEPTH);
    frame *mf = new_frame(J, J->globals);
    size_t np = m->kw.n;
    if (a->npos > np) fail_at(J, off, "macro '%s' takes %zu arguments, %zu given", m->name, np, a->npos);
    for (size_t i = 0; i < np; i++) {
        const jv *v = arg(a, i, m->kwn[i]);
        jv val;
        if (v) val = *v;
        else if (m->kw.v[i]) val = eval(J, mf, m->kw.v[i]);
        else val = vundef(m->kwn[i]);
        dict_set_str(J, mf->vars, m->kwn[i], val);
    }
    for (size_t k = 0; k < a->nkw; k++) {
        int known = 0;
        for (size_t i = 0; i < np; i++) known |= !strcmp(a->kwn[k], m->kwn[i]);
        if (!known) fail_at(J, off, "macro '%s' has no parameter '%s'", m->name, a->kwn[k]);
    }
    sbuf *saved = J->out;
    sbuf body = {0};
    J->out = &body;
    int saved_ctl = J->loop_ctl;
    exec(J, mf, m->a);
    J->loop_ctl = saved_ctl;
    J->out = saved;
    J->macro_depth--;
    return sb_val(J, &body);
}

static jv call_builtin(jj *J, frame *f, const char *name, const args *a, uint32_t off)
{
    (void)f;
    if (!strcmp(name, "raise_exception")) {
        const jv *m = arg(a, 0, NULL);
        const jstr *s = m ? to_str(J, m) : mkstr(J, "", 0);
        fail_at(J, off, "raise_exception: %.600s", s->s);
    }
    if (!strcmp(name, "range")) {
        int64_t lo = 0, hi, st = 1;
        if (a->npos == 0 || a->npos > 3) fail_at(J, off, "range: expected 1 to 3 arguments");
        for (size_t i = 0; i < a->npos; i++)
            if (a->pos[i].t != JV_INT) fail_at(J, off, "range: arguments must be integers");
        if (a->npos == 1) hi = a->pos[0].u.i;
        else { lo = a->pos[0].u.i; hi = a->pos[1].u.i; if (a->npos == 3) st = a->pos[2].u.i; }
        if (st == 0) fail_at(J, off, "range: step cannot be zero");
        double count = st > 0 ? ceil(((double)hi - (double)lo) / (double)st) : ceil(((double)lo - (double)hi) / (double)-st);
        if (count > JJ_MAX_ITEMS) fail_at(J, off, "range: more than %u items", JJ_MAX_ITEMS);
        jlist *l = mklist(J, count > 0 ? (size_t)count : 0);
        for (int64_t i = lo; st > 0 ? i < hi : i > hi; i += st) {
            list_push(J, l, vint(i));
            if ((st > 0 && i > INT64_MAX - st) || (st < 0 && i < INT64_MIN - st)) break;
        }
        return vlist(l);
    }
    if (!strcmp(name, "namespace") || !strcmp(name, "dict")) {
        jdict *d = jalloc(J, sizeof *d);
        if (a->npos) {
            if (a->pos[0].t != JV_DICT && a->pos[0].t != JV_NS)
                fail_at(J, off, "%s: positional argument must be a dict", name);
            for (size_t i = 0; i < a->pos[0].u.d->n; i++) dict_set(J, d, a->pos[0].u.d->k[i], a->pos[0].u.d->v[i]);
        }
        for (size_t i = 0; i < a->nkw; i++) dict_set_str(J, d, a->kwn[i], a->kw[i]);
        return (jv){.t = name[0] == 'n' ? JV_NS : JV_DICT, .u.d = d};
    }
    if (!strcmp(name, "strftime_now")) {
        const jstr *fmt = arg_str(J, a, 0, "format", name, off);
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        char buf[256];
        size_t n = fmt->len < 100 ? strftime(buf, sizeof buf, fmt->s, &tm) : 0;
        return vstr(J, buf, n);
    }
    return vundef(name);
}

static int is_builtin(const char *n)
{
    return !strcmp(n, "raise_exception") || !strcmp(n, "range") || !strcmp(n, "namespace") || !strcmp(n, "dict") ||
           !strcmp(n, "strftime_now");
}

static jv eval_call(jj *J, frame *f, const node *n)
{
    const node *callee = n->a;
    if (callee->k == E_NAME) {
        jv *v = lookup(f, callee->name);
        args a = eval_args(J, f, n, 0);
        if (v && v->t == JV_MACRO) return call_macro(J, f, v->u.macro, &a, n->off);
        if (!v && is_builtin(callee->name)) return call_builtin(J, f, callee->name, &a, n->off);
        if (!v || v->t == JV_UNDEF) fail_at(J, n->off, "unknown function '%s'", callee->name);
        fail_at(J, n->off, "'%s' is a %s, not a function", callee->name, type_name(v->t));
    }
    jv fn = eval(J, f, callee);
    args a = eval_args(J, f, n, 0);
    if (fn.t == JV_FUNC && !fn.u.fn.self) return call_builtin(J, f, fn.u.fn.name, &a, n->off);
    if (fn.t == JV_FUNC) return call_method(J, *fn.u.fn.self, fn.u.fn.name, &a, n->off);
    if (fn.t == JV_MACRO) return call_macro(J, f, fn.u.macro, &a, n->off);
    if (callee->k == E_ATTR)
        fail_at(J, n->off, "unsupported method '%s' (on a %s)", callee->name,
                type_name(eval(J, f, callee->a).t));
    fail_at(J, n->off, "a %s is not callable", type_name(fn.t));
}

static jv eval(jj *J, frame *f, const node *n)
{
    step(J, n->off);
    enter(J, n->off);
    jv r;
    switch (n->k) {
    case E_LIT: r = n->lit; break;
    case E_NAME: {
        jv *v = lookup(f, n->name);
        if (v) r = *v;
        else if (is_builtin(n->name)) r = (jv){.t = JV_FUNC, .u.fn = {n->name, NULL}}; /* `strftime_now is defined` */
        else r = vundef(n->name);
        break;
    }
    case E_LIST: {
        jlist *l = mklist(J, n->args.n);
        for (size_t i = 0; i < n->args.n; i++) list_push(J, l, eval(J, f, n->args.v[i]));
        r = vlist(l);
        break;
    }
    case E_DICT: {
        jdict *d = jalloc(J, sizeof *d);
        for (size_t i = 0; i < n->args.n; i++) {
            jv k = eval(J, f, n->args.v[i]);
            dict_set(J, d, k, eval(J, f, n->kw.v[i]));
        }
        r = vdict(d);
        break;
    }
    case E_ATTR: r = getattr(J, eval(J, f, n->a), n->name, n->off); break;
    case E_INDEX: { jv o = eval(J, f, n->a); r = getitem(J, o, eval(J, f, n->b), n->off); break; }
    case E_SLICE: r = do_slice(J, f, n, eval(J, f, n->a)); break;
    case E_CALL: r = eval_call(J, f, n); break;
    case E_FILTER: {
        jv v = eval(J, f, n->args.v[0]);
        args a = eval_args(J, f, n, 1);
        r = apply_filter(J, n->name, v, &a, n->off);
        break;
    }
    case E_TEST: {
        jv v = eval(J, f, n->args.v[0]);
        args a = eval_args(J, f, n, 1);
        int t = run_test(J, n->name, &v, &a, n->off);
        r = vbool(n->op ? !t : t);
        break;
    }
    case E_NEG: case E_POS: {
        jv v = eval(J, f, n->a);
        if (v.t == JV_INT) r = n->k == E_POS ? v : v.u.i == INT64_MIN ? vfloat(9.2233720368547758e18) : vint(-v.u.i);
        else if (v.t == JV_FLOAT) r = vfloat(n->k == E_NEG ? -v.u.f : v.u.f);
        else if (v.t == JV_BOOL) r = vint(n->k == E_NEG ? -v.u.b : v.u.b);
        else fail_at(J, n->off, "bad operand type for unary '%c': %s", n->k == E_NEG ? '-' : '+', type_name(v.t));
        break;
    }
    case E_NOT: { jv v = eval(J, f, n->a); r = vbool(!truthy(&v)); break; }
    case E_AND: { jv v = eval(J, f, n->a); r = truthy(&v) ? eval(J, f, n->b) : v; break; }
    case E_OR: { jv v = eval(J, f, n->a); r = truthy(&v) ? v : eval(J, f, n->b); break; }
    case E_BIN: { jv a = eval(J, f, n->a); r = arith(J, n->op, a, eval(J, f, n->b), n->off); break; }
    case E_CONCAT: {
        jv a = eval(J, f, n->a), b = eval(J, f, n->b);
        sbuf s = {0};
        const jstr *x = to_str(J, &a), *y = to_str(J, &b);
        sb_add(J, &s, x->s, x->len);
        sb_add(J, &s, y->s, y->len);
        r = sb_val(J, &s);
        break;
    }
    case E_CMP: {
        jv left = eval(J, f, n->args.v[0]);
        r = vbool(1);
        for (size_t i = 1; i < n->args.n; i++) {
            jv right = eval(J, f, n->args.v[i]);
            if (!compare(J, n->cmp_ops[i - 1], &left, &right, n->off)) { r = vbool(0); break; }
            left = right;
        }
        break;
    }
    case E_COND: {
        jv c = eval(J, f, n->b);
        r = truthy(&c) ? eval(J, f, n->a) : n->c ? eval(J, f, n->c) : vundef("conditional expression");
        break;
    }
    default: fail_at(J, n->off, "internal error: statement evaluated as expression");
    }
    leave(J);
    return r;
}

static void exec_for(jj *J, frame *f, const node *n)
{
    jv it = eval(J, f, n->a);
    jlist *src = iter_items(J, it, n->a->off);
    jlist *items = src;
    if (n->b) { /* {% for x in xs if cond %}: filter first, so loop.length counts kept items */
        items = mklist(J, 0);
        frame *tf = new_frame(J, f);
        jv k1 = vcstr(J, n->name), k2 = n->name2 ? vcstr(J, n->name2) : vnone();
        for (size_t i = 0; i < src->n; i++) {
            step(J, n->off);
            tf->vars->n = 0;
            jv p = src->v[i];
            if (n->name2) {
                if (p.t != JV_LIST || p.u.l->n != 2) fail_at(J, n->off, "cannot unpack a %s into two loop variables", type_name(p.t));
                dict_set(J, tf->vars, k1, p.u.l->v[0]);
                dict_set(J, tf->vars, k2, p.u.l->v[1]);
            } else
                dict_set(J, tf->vars, k1, p);
            jv c = eval(J, tf, n->b);
            if (truthy(&c)) list_push(J, items, p);
        }
    }
    jloop *lp = jalloc(J, sizeof *lp);
    lp->n = items->n, lp->items = items->v;
    /* One frame for all iterations, emptied each time: per-iteration scope without
     * per-iteration allocation (nothing can keep a reference to a frame). */
    frame *lf = new_frame(J, f);
    jv k1 = vcstr(J, n->name), k2 = n->name2 ? vcstr(J, n->name2) : vnone(), kl = vcstr(J, "loop");
    for (size_t i = 0; i < items->n; i++) {
        step(J, n->off);
        lp->i = i;
        lf->vars->n = 0;
        jv item = items->v[i];
        if (n->name2) {
            if (item.t != JV_LIST || item.u.l->n != 2)
                fail_at(J, n->off, "cannot unpack a %s into two loop variables", type_name(item.t));
            dict_set(J, lf->vars, k1, item.u.l->v[0]);
            dict_set(J, lf->vars, k2, item.u.l->v[1]);
        } else
            dict_set(J, lf->vars, k1, item);
        dict_set(J, lf->vars, kl, (jv){.t = JV_LOOP, .u.loop = lp});
        exec(J, lf, n->c);
        if (J->loop_ctl == 1) { J->loop_ctl = 0; break; }
        J->loop_ctl = 0;
    }
    if (items->n == 0 && n->d) exec(J, f, n->d);
}

static void exec(jj *J, frame *f, const node *n)
{
    step(J, n->off);
    enter(J, n->off);
    switch (n->k) {
    case N_SEQ:
        for (size_t i = 0; i < n->args.n && !J->loop_ctl; i++) exec(J, f, n->args.v[i]);
        break;
    case N_TEXT: emit(J, n->lit.u.s->s, n->lit.u.s->len); break;
    case N_OUT: {
        jv v = eval(J, f, n->a);
        if (v.t == JV_STR) emit(J, v.u.s->s, v.u.s->len);
        else { const jstr *s = to_str(J, &v); emit(J, s->s, s->len); }
        break;
    }
    case N_IF: {
        jv c = eval(J, f, n->a);
        if (truthy(&c)) exec(J, f, n->b);
        else if (n->c) exec(J, f, n->c);
        break;
    }
    case N_FOR: exec_for(J, f, n); break;
    case N_SET: dict_set_str(J, f->vars, n->name, eval(J, f, n->a)); break;
    case N_SET_BLOCK: {
        sbuf *saved = J->out;
        sbuf body = {0};
        J->out = &body;
        exec(J, f, n->a);
        J->out = saved;
        dict_set_str(J, f->vars, n->name, sb_val(J, &body));
        break;
    }
    case N_SET_ATTR: {
        jv *ns = lookup(f, n->name);
        if (!ns || ns->t != JV_NS)
            fail_at(J, n->off, "cannot set '%s.%s': '%s' is not a namespace()", n->name, n->name2, n->name);
        dict_set_str(J, ns->u.d, n->name2, eval(J, f, n->a));
        break;
    }
    case N_MACRO: dict_set_str(J, f->vars, n->name, (jv){.t = JV_MACRO, .u.macro = n}); break;
    case N_BREAK: case N_CONTINUE:
        if (!lookup(f, "loop")) fail_at(J, n->off, "'%s' outside a for loop", n->k == N_BREAK ? "break" : "continue");
        J->loop_ctl = n->k == N_BREAK ? 1 : 2;
        break;
    default: fail_at(J, n->off, "internal error: expression executed as statement");
    }
    leave(J);
}

/* ---- entry point ------------------------------------------------------------------------------ */

static jv message_value(jj *J, const llm_chat_msg *m)
{
    jdict *d = jalloc(J, sizeof *d);
    dict_set_str(J, d, "role", vcstr(J, m->role ? m->role : ""));
    dict_set_str(J, d, "content", vcstr(J, m->content ? m->content : ""));
    return vdict(d);
}

int llm_jinja_render(const char *tmpl, const llm_chat_msg *msgs, size_t n, const llm_template_vars *vars,
                     char **out, llm_err *err)
{
    *out = NULL;
    if (!tmpl)
        return llm_errf(err, "chat template: no template");
    size_t len = strlen(tmpl);
    if (len > JJ_MAX_TEMPLATE)
        return llm_errf(err, "chat template: %zu bytes, more than the %u allowed", len, JJ_MAX_TEMPLATE);
    jj *J = calloc(1, sizeof *J);
    if (!J)
        return llm_errf(err, "chat template: out of memory");
    J->src = tmpl, J->src_len = len, J->err = err;
    uint64_t input = len + (vars && vars->bos_token ? strlen(vars->bos_token) : 0) +
                     (vars && vars->eos_token ? strlen(vars->eos_token) : 0);
    for (size_t i = 0; i < n; i++)
        input += (msgs[i].role ? strlen(msgs[i].role) : 0) + (msgs[i].content ? strlen(msgs[i].content) : 0);
    J->max_output = (size_t)(JJ_OUTPUT_BASE + 8 * input);
    J->max_mem = (size_t)(JJ_MEMORY_BASE + 32 * input);
    J->max_steps = JJ_STEPS_BASE + JJ_STEPS_PER_MESSAGE * (uint64_t)n + input / 8; /* ~32 copies of the input */
    if (setjmp(J->fail)) {
        free_arena(J);
        free(J);
        return -1;
    }
    normalize_newlines(J);
    lex(J);
    J->pos = 0;
    node *root = parse_body(J, NULL, NULL);
    free(J->toks);
    J->toks = NULL;

    frame *g = new_frame(J, NULL);
    J->globals = g;
    jlist *ml = mklist(J, n);
    for (size_t i = 0; i < n; i++) list_push(J, ml, message_value(J, &msgs[i]));
    dict_set_str(J, g->vars, "messages", vlist(ml));
    dict_set_str(J, g->vars, "bos_token", vcstr(J, vars && vars->bos_token ? vars->bos_token : ""));
    dict_set_str(J, g->vars, "eos_token", vcstr(J, vars && vars->eos_token ? vars->eos_token : ""));
    dict_set_str(J, g->vars, "add_generation_prompt", vbool(vars && vars->add_generation_prompt));
    dict_set_str(J, g->vars, "tools", vnone());
    frame *top = new_frame(J, g); /* template-level set lives here, globals stay intact */
    J->globals = top;             /* macros see template-level names, themselves included */

    sbuf result = {0};
    J->out = &result;
    exec(J, top, root);
    char *s = malloc(result.len + 1);
    if (!s) {
        free_arena(J);
        free(J);
        return llm_errf(err, "chat template: out of memory");
    }
    if (result.len) memcpy(s, result.p, result.len);
    s[result.len] = 0;
    free_arena(J);
    free(J);
    *out = s;
    return 0;
}
