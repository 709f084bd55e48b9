/*
 * template.c — chat template dispatch: recognise the common template families and render them
 * natively, otherwise interpret the template (jinja.c); plus the documented ChatML fallback.
 *
 * Why native renderers at all, with an interpreter available: they are exact for the formats
 * they implement whatever Jinja features a model's template spells them with, they are fast,
 * and they keep working when a family's template grows constructs the interpreter lacks.
 * Recognition is deliberately strict (several distinctive substrings that pin down the
 * variant, e.g. Mistral only with the v0.1/v0.2 spacing " [/INST]", Llama 3 only without the
 * 3.1 tool/date preamble): anything not pinned down goes to the interpreter, which is exact
 * by construction. Each renderer below states the published format it writes.
 *
 * Native renderers do not reproduce a template's input validation (raise_exception on a
 * system message or on roles that do not alternate): they render what they are given, merging
 * a leading system message into the first user turn for families without a system role
 * (Mistral, Gemma), as llama.cpp does. Messages whose role is not system/user/assistant
 * (tool results, ...) make llm_chat_render use the interpreter instead, since families format
 * those in template-specific ways.
 */
#include "text/template.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *str_or_empty(const char *s) { return s ? s : ""; }
static int has(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }
static int role_is(const llm_chat_msg *m, const char *role) { return strcmp(str_or_empty(m->role), role) == 0; }

static char *buf_take(llm_buf *b)
{
    llm_buf_cstr(b);
    return b->data ? b->data : llm_xstrdup("");
}

static int py_space_cp(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Decodes the well-formed UTF-8 character at s[0..n) (length in *len), or returns -1. */
static int32_t utf8_at(const unsigned char *s, size_t n, size_t *len)
{
    if (!n) return -1;
    if (s[0] < 0x80) { *len = 1; return s[0]; }
    size_t k = (s[0] & 0xE0) == 0xC0 ? 2 : (s[0] & 0xF0) == 0xE0 ? 3 : (s[0] & 0xF8) == 0xF0 ? 4 : 0;
    if (!k || k > n) return -1;
    uint32_t c = s[0] & (0x7F >> k);
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80) return -1;
        c = (c << 6) | (s[i] & 0x3F);
    }
    *len = k;
    return (int32_t)c;
}

size_t llm_py_space_at(const char *s, size_t n)
{
    size_t len;
    int32_t c = utf8_at((const unsigned char *)s, n, &len);
    return c >= 0 && py_space_cp((uint32_t)c) ? len : 0;
}

size_t llm_py_space_before(const char *s, size_t n)
{
    size_t start = n;
    for (size_t k = 0; k < 4 && start > 0; k++) { /* back to the lead byte */
        start--;
        if (((unsigned char)s[start] & 0xC0) != 0x80) break;
    }
    size_t len = llm_py_space_at(s + start, n - start);
    return len == n - start ? len : 0;
}

/* Python str.strip() / Jinja trim. */
static void put_trimmed(llm_buf *b, const char *s)
{
    s = str_or_empty(s);
    size_t a = 0, e = strlen(s), k;
    while (a < e && (k = llm_py_space_at(s + a, e - a))) a += k;
    while (e > a && (k = llm_py_space_before(s + a, e - a))) e -= k;
    llm_buf_append(b, s + a, e - a);
}

/* ---- reading literals out of a template ---------------------------------------------------- */

/* The Jinja string literal that contains needle, decoded (\n, \t, \\, \' and \" escapes), or
 * NULL. Used to pick up a family's default system prompt from the model's own template rather
 * than hard-coding one version of it. */
static char *literal_at(const char *tmpl, const char *hit)
{
    const char *q = hit;
    while (q > tmpl && q[-1] != '\'' && q[-1] != '"') q--;
    if (q == tmpl)
        return NULL;
    char quote = q[-1];
    llm_buf b = {0};
    for (const char *p = q; *p; p++) {
        if (*p == quote) return buf_take(&b);
        if (*p == '\\' && p[1]) {
            p++;
            char c = *p == 'n' ? '\n' : *p == 't' ? '\t' : *p == 'r' ? '\r' : *p;
            llm_buf_append(&b, &c, 1);
            continue;
        }
        llm_buf_append(&b, p, 1);
    }
    llm_buf_free(&b);
    return NULL;
}

static char *literal_containing(const char *tmpl, const char *needle)
{
    const char *hit = strstr(tmpl, needle);
    return hit ? literal_at(tmpl, hit) : NULL;
}

/* ChatML templates with a default system prompt (Qwen) spell it as one literal
 * '<|im_start|>system\n...<|im_end|>\n'; returns the text between, or NULL. */
static char *chatml_default_system(const char *tmpl)
{
    for (const char *p = tmpl; (p = strstr(p, "<|im_start|>system")); p++) {
        char *lit = literal_at(tmpl, p);
        if (!lit) continue;
        const char *body = strstr(lit, "<|im_start|>system");
        if (!body) { free(lit); continue; }
        body += strlen("<|im_start|>system");
        const char *end = strstr(body, "<|im_end|>");
        if (body[0] == '\n' && end && end > body + 1) {
            size_t n = (size_t)(end - body - 1);
            char *r = llm_xstrndup(body + 1, n);
            free(lit);
            return r;
        }
        free(lit);
    }
    return NULL;
}

/* ---- recognition ---------------------------------------------------------------------------- */

typedef enum kind {
    K_NONE, K_JINJA, K_CHATML, K_LLAMA2, K_LLAMA3, K_MISTRAL, K_ZEPHYR, K_GEMMA, K_PHI3, K_DEEPSEEK,
    K_DEEPSEEK_CODER,
} kind;

static const char *const kind_names[] = {"none", "jinja", "chatml", "llama2", "llama3", "mistral",
                                         "zephyr", "gemma", "phi3", "deepseek", "deepseek-coder"};

static kind detect(const char *t)
{
    if (!t || !*t)
        return K_NONE;
    /* ChatML variants that add BOS/EOS, drop the last <|im_end|> (Qwen1.5: loop.last) or
     * rewrite thinking sections (Qwen3) differ from plain ChatML: interpret those. */
    if (has(t, "<|im_start|>") && has(t, "<|im_end|>") && !has(t, "<|im_sep|>") && !has(t, "bos_token") &&
        !has(t, "eos_token") && !has(t, "loop.last") && !has(t, "think>") && !has(t, "reasoning_content"))
        return K_CHATML;
    if (has(t, "<|start_header_id|>") && has(t, "<|end_header_id|>") && has(t, "<|eot_id|>") &&
        !has(t, "Cutting Knowledge") && !has(t, "ipython") && !has(t, "tools"))
        return K_LLAMA3;
    if (has(t, "[INST]") && has(t, "<<SYS>>") && has(t, "' [/INST]'") && !has(t, "tools"))
        return K_LLAMA2;
    if (has(t, "[INST]") && !has(t, "<<SYS>>") && has(t, "' [/INST]'") && !has(t, "tools") &&
        !has(t, "[AVAILABLE_TOOLS]"))
        return K_MISTRAL;
    if (has(t, "<start_of_turn>") && has(t, "<end_of_turn>") && !has(t, "image"))
        return K_GEMMA;
    if (has(t, "<|user|>") && has(t, "<|assistant|>") && has(t, "<|end|>"))
        return K_PHI3;
    if (has(t, "<|user|>") && has(t, "<|assistant|>") && has(t, "eos_token") && !has(t, "<|end|>"))
        return K_ZEPHYR;
    if (has(t, "### Instruction:") && has(t, "### Response:") && has(t, "<|EOT|>") &&
        has(t, "You are an AI programming assistant"))
        return K_DEEPSEEK_CODER;
    if (has(t, "'User: '") && has(t, "'Assistant: '") && has(t, "eos_token"))
        return K_DEEPSEEK;
    return K_JINJA;
}

const char *llm_template_kind(const char *tmpl) { return kind_names[detect(tmpl)]; }

const char *const *llm_template_stops(const char *tmpl)
{
    static const char *const none[] = {NULL};
    static const char *const chatml[] = {"<|im_end|>", "<|im_start|>", NULL};
    static const char *const llama3[] = {"<|eot_id|>", "<|start_header_id|>", NULL};
    static const char *const inst[] = {"[INST]", NULL};
    static const char *const zephyr[] = {"</s>", "<|user|>", NULL};
    static const char *const gemma[] = {"<end_of_turn>", "<start_of_turn>", NULL};
    static const char *const phi3[] = {"<|end|>", "<|user|>", "<|endoftext|>", NULL};
    static const char *const deepseek[] = {"User:", NULL};
    static const char *const coder[] = {"<|EOT|>", "### Instruction:", NULL};
    switch (detect(tmpl)) {
    case K_CHATML: return chatml;
    case K_LLAMA3: return llama3;
    case K_LLAMA2: case K_MISTRAL: return inst;
    case K_ZEPHYR: return zephyr;
    case K_GEMMA: return gemma;
    case K_PHI3: return phi3;
    case K_DEEPSEEK: return deepseek;
    case K_DEEPSEEK_CODER: return coder;
    default: return none;
    }
}

/* ---- native renderers ------------------------------------------------------------------------- */

typedef struct conv {
    const char *tmpl;
    const llm_chat_msg *m;
    size_t n;
    const char *bos, *eos;
    bool gen;
} conv;

/* ChatML (OpenHermes, Qwen, Yi, ...):
 *   [<|im_start|>system\n{default}<|im_end|>\n  when the template has a default and msgs[0] is not system]
 *   <|im_start|>{role}\n{content}<|im_end|>\n   per message
 *   <|im_start|>assistant\n                      with add_generation_prompt */
static void render_chatml(const conv *c, llm_buf *b)
{
    char *def = chatml_default_system(c->tmpl);
    if (def && c->n > 0 && !role_is(&c->m[0], "system")) {
        llm_buf_puts(b, "<|im_start|>system\n");
        llm_buf_puts(b, def);
        llm_buf_puts(b, "<|im_end|>\n");
    }
    free(def);
    for (size_t i = 0; i < c->n; i++)
        llm_buf_printf(b, "<|im_start|>%s\n%s<|im_end|>\n", str_or_empty(c->m[i].role), str_or_empty(c->m[i].content));
    if (c->gen)
        llm_buf_puts(b, "<|im_start|>assistant\n");
}

/* Llama 2 chat: the system message is wrapped in <<SYS>> inside the first user turn;
 *   {bos}[INST] {content.strip()} [/INST]   user (bos per turn when the template adds it there)
 *    {content.strip()} {eos}                  assistant
 * add_generation_prompt changes nothing (the format ends every user turn with [/INST]). */
static void render_llama2(const conv *c, llm_buf *b)
{
    size_t start = 0;
    const char *sys = NULL;
    if (c->n > 0 && role_is(&c->m[0], "system")) {
        sys = str_or_empty(c->m[0].content);
        start = 1;
    }
    int bos_per_turn = has(c->tmpl, "bos_token + '[INST]");
    if (!bos_per_turn && has(c->tmpl, "bos_token"))
        llm_buf_puts(b, c->bos);
    for (size_t i = start; i < c->n; i++) {
        llm_buf content = {0};
        if (i == start && sys)
            llm_buf_printf(&content, "<<SYS>>\n%s\n<</SYS>>\n\n", sys);
        llm_buf_puts(&content, str_or_empty(c->m[i].content));
        const char *text = llm_buf_cstr(&content);
        if (role_is(&c->m[i], "user")) {
            if (bos_per_turn) llm_buf_puts(b, c->bos);
            llm_buf_puts(b, "[INST] ");
            put_trimmed(b, text);
            llm_buf_puts(b, " [/INST]");
        } else if (role_is(&c->m[i], "assistant")) {
            llm_buf_puts(b, " ");
            put_trimmed(b, text);
            llm_buf_puts(b, " ");
            llm_buf_puts(b, c->eos);
        }
        llm_buf_free(&content);
    }
}

/* Llama 3 instruct:
 *   {bos}<|start_header_id|>{role}<|end_header_id|>\n\n{content|trim}<|eot_id|>   per message
 *   <|start_header_id|>assistant<|end_header_id|>\n\n                              generation */
static void render_llama3(const conv *c, llm_buf *b)
{
    if (has(c->tmpl, "bos_token") && c->n > 0)
        llm_buf_puts(b, c->bos);
    for (size_t i = 0; i < c->n; i++) {
        llm_buf_printf(b, "<|start_header_id|>%s<|end_header_id|>\n\n", str_or_empty(c->m[i].role));
        put_trimmed(b, c->m[i].content);
        llm_buf_puts(b, "<|eot_id|>");
    }
    if (c->gen)
        llm_buf_puts(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

/* Mistral Instruct v0.1/v0.2 (and Mixtral):
 *   {bos}[INST] {content} [/INST]{answer}{eos}[ ' ' after eos in v0.1]
 * No system role: a leading system message is prepended to the first user turn + "\n\n". */
static void render_mistral(const conv *c, llm_buf *b)
{
    int space_after_eos = has(c->tmpl, "eos_token + ' '");
    size_t start = 0;
    const char *sys = NULL;
    if (c->n > 0 && role_is(&c->m[0], "system")) {
        sys = str_or_empty(c->m[0].content);
        start = 1;
    }
    llm_buf_puts(b, c->bos);
    for (size_t i = start; i < c->n; i++) {
        if (role_is(&c->m[i], "user")) {
            llm_buf_puts(b, "[INST] ");
            if (sys && i == start) llm_buf_printf(b, "%s\n\n", sys);
            llm_buf_puts(b, str_or_empty(c->m[i].content));
            llm_buf_puts(b, " [/INST]");
        } else if (role_is(&c->m[i], "assistant")) {
            llm_buf_puts(b, str_or_empty(c->m[i].content));
            llm_buf_puts(b, c->eos);
            if (space_after_eos) llm_buf_puts(b, " ");
        }
    }
}

/* Zephyr: <|{role}|>\n{content}{eos}\n per message; <|assistant|>\n after the last message
 * with add_generation_prompt. */
static void render_zephyr(const conv *c, llm_buf *b)
{
    for (size_t i = 0; i < c->n; i++)
        llm_buf_printf(b, "<|%s|>\n%s%s\n", str_or_empty(c->m[i].role), str_or_empty(c->m[i].content), c->eos);
    if (c->gen && c->n > 0)
        llm_buf_puts(b, "<|assistant|>\n");
}

/* Gemma: {bos}<start_of_turn>{user|model}\n{content|trim}<end_of_turn>\n per message;
 * <start_of_turn>model\n for generation. No system role: a leading system message goes in
 * front of the first user turn's text followed by "\n\n" (as Gemma 3's own template does). */
static void render_gemma(const conv *c, llm_buf *b)
{
    if (has(c->tmpl, "bos_token"))
        llm_buf_puts(b, c->bos);
    size_t start = 0;
    const char *sys = NULL;
    if (c->n > 0 && role_is(&c->m[0], "system")) {
        sys = str_or_empty(c->m[0].content);
        start = 1;
    }
    for (size_t i = start; i < c->n; i++) {
        const char *role = role_is(&c->m[i], "assistant") ? "model" : str_or_empty(c->m[i].role);
        llm_buf_printf(b, "<start_of_turn>%s\n", role);
        if (sys && i == start) {
            put_trimmed(b, sys);
            llm_buf_puts(b, "\n\n");
        }
        put_trimmed(b, c->m[i].content);
        llm_buf_puts(b, "<end_of_turn>\n");
    }
    if (c->gen)
        llm_buf_puts(b, "<start_of_turn>model\n");
}

/* Phi-3 / Phi-3.5 (current templates): <|{role}|>\n{content}<|end|>\n per message, then
 * <|assistant|>\n with add_generation_prompt, else {eos}. Phi-3.5 skips an empty system
 * message. The first Phi-3 release had no system role and no generation switch:
 *   {bos}<|user|>\n{content}<|end|>\n<|assistant|>\n  user;  {content}<|end|>\n  assistant. */
static void render_phi3(const conv *c, llm_buf *b)
{
    if (!has(c->tmpl, "add_generation_prompt")) {
        llm_buf_puts(b, c->bos);
        for (size_t i = 0; i < c->n; i++) {
            if (role_is(&c->m[i], "user"))
                llm_buf_printf(b, "<|user|>\n%s<|end|>\n<|assistant|>\n", str_or_empty(c->m[i].content));
            else if (role_is(&c->m[i], "assistant"))
                llm_buf_printf(b, "%s<|end|>\n", str_or_empty(c->m[i].content));
        }
        return;
    }
    int skip_empty_system = has(c->tmpl, "'system' and message['content']");
    for (size_t i = 0; i < c->n; i++) {
        if (skip_empty_system && role_is(&c->m[i], "system") && !*str_or_empty(c->m[i].content))
            continue;
        llm_buf_printf(b, "<|%s|>\n%s<|end|>\n", str_or_empty(c->m[i].role), str_or_empty(c->m[i].content));
    }
    llm_buf_puts(b, c->gen ? "<|assistant|>\n" : c->eos);
}

/* DeepSeek LLM chat: {bos} then {system}\n\n, User: {content}\n\n, Assistant: {content}{eos};
 * "Assistant:" for generation. */
static void render_deepseek(const conv *c, llm_buf *b)
{
    llm_buf_puts(b, c->bos);
    for (size_t i = 0; i < c->n; i++) {
        const char *t = str_or_empty(c->m[i].content);
        if (role_is(&c->m[i], "user")) llm_buf_printf(b, "User: %s\n\n", t);
        else if (role_is(&c->m[i], "assistant")) llm_buf_printf(b, "Assistant: %s%s", t, c->eos);
        else if (role_is(&c->m[i], "system")) llm_buf_printf(b, "%s\n\n", t);
    }
    if (c->gen)
        llm_buf_puts(b, "Assistant:");
}

/* DeepSeek Coder instruct: {bos}, the template's default system prompt unless a system message
 * is present, then per message: system text as is, "### Instruction:\n{content}\n",
 * "### Response:\n{content}\n<|EOT|>\n"; "### Response:\n" for generation (always, in the
 * template versions without add_generation_prompt). */
static int render_deepseek_coder(const conv *c, llm_buf *b)
{
    char *def = literal_containing(c->tmpl, "You are an AI programming assistant");
    if (!def)
        return -1;
    int found_system = 0;
    for (size_t i = 0; i < c->n; i++) found_system |= role_is(&c->m[i], "system");
    if (has(c->tmpl, "bos_token")) llm_buf_puts(b, c->bos);
    if (!found_system) llm_buf_puts(b, def);
    free(def);
    for (size_t i = 0; i < c->n; i++) {
        const char *t = str_or_empty(c->m[i].content);
        if (role_is(&c->m[i], "system")) llm_buf_puts(b, t);
        else if (role_is(&c->m[i], "user")) llm_buf_printf(b, "### Instruction:\n%s\n", t);
        else llm_buf_printf(b, "### Response:\n%s\n<|EOT|>\n", t);
    }
    if (c->gen || !has(c->tmpl, "add_generation_prompt"))
        llm_buf_puts(b, "### Response:\n");
    return 0;
}

/* Renders natively; returns -1 (without touching *out) when the template or the messages are
 * outside what the native renderers cover. */
static int render_native(kind k, const conv *c, char **out)
{
    for (size_t i = 0; i < c->n; i++)
        if (!role_is(&c->m[i], "system") && !role_is(&c->m[i], "user") && !role_is(&c->m[i], "assistant"))
            return -1;
    llm_buf b = {0};
    switch (k) {
    case K_CHATML: render_chatml(c, &b); break;
    case K_LLAMA2: render_llama2(c, &b); break;
    case K_LLAMA3: render_llama3(c, &b); break;
    case K_MISTRAL: render_mistral(c, &b); break;
    case K_ZEPHYR: render_zephyr(c, &b); break;
    case K_GEMMA: render_gemma(c, &b); break;
    case K_PHI3: render_phi3(c, &b); break;
    case K_DEEPSEEK: render_deepseek(c, &b); break;
    case K_DEEPSEEK_CODER:
        if (render_deepseek_coder(c, &b) < 0) { llm_buf_free(&b); return -1; }
        break;
    default: llm_buf_free(&b); return -1;
    }
    *out = buf_take(&b);
    return 0;
}

/* ---- public entry points ------------------------------------------------------------------------ */

int llm_chat_render_fallback(const llm_chat_msg *msgs, size_t n, const llm_template_vars *vars, char **out,
                             llm_err *err)
{
    (void)err;
    conv c = {.tmpl = "", .m = msgs, .n = n, .bos = "", .eos = "", .gen = vars && vars->add_generation_prompt};
    llm_buf b = {0};
    render_chatml(&c, &b);
    *out = buf_take(&b);
    return 0;
}

int llm_chat_render_ex(const char *tmpl, const llm_chat_msg *msgs, size_t n, const llm_template_vars *vars,
                       llm_template_mode mode, char **out, llm_err *err)
{
    *out = NULL;
    if (n && !msgs)
        return llm_errf(err, "chat template: no messages");
    kind k = detect(tmpl);
    if (k == K_NONE)
        return llm_chat_render_fallback(msgs, n, vars, out, err);
    if (mode == LLM_TMPL_JINJA)
        return llm_jinja_render(tmpl, msgs, n, vars, out, err);
    conv c = {.tmpl = tmpl, .m = msgs, .n = n,
              .bos = str_or_empty(vars ? vars->bos_token : NULL), .eos = str_or_empty(vars ? vars->eos_token : NULL),
              .gen = vars && vars->add_generation_prompt};
    if (render_native(k, &c, out) == 0)
        return 0;
    if (mode == LLM_TMPL_NATIVE)
        return llm_errf(err, "chat template: no native renderer for this template (kind '%s')%s", kind_names[k],
                        k == K_JINJA ? "" : " with these message roles");
    return llm_jinja_render(tmpl, msgs, n, vars, out, err);
}

int llm_chat_render(const char *tmpl, const llm_chat_msg *msgs, size_t n, const llm_template_vars *vars,
                    char **out, llm_err *err)
{
    return llm_chat_render_ex(tmpl, msgs, n, vars, LLM_TMPL_AUTO, out, err);
}
