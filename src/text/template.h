/*
 * template — rendering a conversation into the prompt text a model was trained on.
 *
 * Models carry tokenizer.chat_template: a Jinja2 template (Hugging Face tokenizer_config.json)
 * that turns a list of {role, content} messages into one string. llmap renders it in two ways:
 *
 *   1. Native renderers for the common families (ChatML, Llama 2, Llama 3, Mistral, Zephyr,
 *      Gemma, Phi-3, DeepSeek), recognised by distinctive substrings of the template, written
 *      in C from the published formats: fast and exact for those families.
 *   2. Otherwise a bounded interpreter for the Jinja subset real chat templates use
 *      (src/text/jinja.c). It never crashes on hostile templates (they come from model files):
 *      loop iterations, recursion depth, output size and work are capped.
 *
 * When the interpreter meets a construct outside the subset, rendering fails with an error
 * naming the construct and its line:column. The documented fallback is ChatML
 * (llm_chat_render_fallback): callers may use it on failure, and llm_chat_render uses it
 * itself when the model has no template (tmpl == NULL or empty).
 *
 * Everything here is pure: no global state, output is a fresh malloc'd string.
 */
#ifndef LLMAP_TEMPLATE_H
#define LLMAP_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

#include "util/util.h"

typedef struct llm_chat_msg {
    const char *role;    /* "system", "user", "assistant", ... (NULL is treated as "") */
    const char *content; /* NULL is treated as "" */
} llm_chat_msg;

typedef struct llm_template_vars {
    const char *bos_token; /* text of the BOS token, e.g. "<s>"; NULL = "" */
    const char *eos_token; /* text of the EOS token, e.g. "</s>"; NULL = "" */
    bool add_generation_prompt; /* end with the opening of an assistant turn */
} llm_template_vars;

/* How llm_chat_render_ex picks the renderer. */
typedef enum llm_template_mode {
    LLM_TMPL_AUTO = 0,   /* native renderer when the template is recognised, else Jinja */
    LLM_TMPL_JINJA = 1,  /* always interpret the template (tests, and when exactness matters) */
    LLM_TMPL_NATIVE = 2, /* only the native renderer; error when the template is not recognised */
} llm_template_mode;

/* Renders msgs[0..n) with tmpl (NULL or "" = the ChatML fallback). On success returns 0 and
 * *out is a malloc'd NUL-terminated string (caller frees). On failure returns -1, *out = NULL,
 * and err says why: "chat template 3:17: unknown filter 'foo'", or the message of a
 * raise_exception() in the template ("chat template: raise_exception: Conversation roles
 * must alternate ..."). */
int llm_chat_render(const char *tmpl, const llm_chat_msg *msgs, size_t n, const llm_template_vars *vars,
                    char **out, llm_err *err);
int llm_chat_render_ex(const char *tmpl, const llm_chat_msg *msgs, size_t n, const llm_template_vars *vars,
                       llm_template_mode mode, char **out, llm_err *err);

/* The documented fallback, ChatML (no default system prompt):
 *   <|im_start|>{role}\n{content}<|im_end|>\n   per message, then
 *   <|im_start|>assistant\n                      when add_generation_prompt. */
int llm_chat_render_fallback(const llm_chat_msg *msgs, size_t n, const llm_template_vars *vars, char **out,
                             llm_err *err);

/* The family a template belongs to: "chatml", "llama2", "llama3", "mistral", "zephyr",
 * "gemma", "phi3", "deepseek" (the "User:/Assistant:" chat format), "deepseek-coder"
 * ("### Instruction:"), "jinja" (not recognised: interpreted), or "none" (NULL/empty).
 * Recognition is strict: variants of a family with extra behaviour (ChatML with BOS/EOS or
 * thinking sections, Llama 3.1+ with its dated system block, Mistral v0.3+ spacing, tools)
 * are "jinja" and rendered by the interpreter. */
const char *llm_template_kind(const char *tmpl);

/* Strings that end an assistant turn for this template's family (e.g. "<|im_end|>",
 * "<|eot_id|>"), NULL-terminated; an empty list for "jinja"/"none". Static storage. The
 * engine adds them to its stop strings so generation ends at the end of the turn even when
 * the marker is not a single special token. */
const char *const *llm_template_stops(const char *tmpl);

/* The interpreter alone (used by llm_chat_render and by the tests). Context variables:
 * messages (list of {role, content}), bos_token, eos_token, add_generation_prompt,
 * tools = none; globals range, namespace, dict, raise_exception, strftime_now. Same contract
 * as llm_chat_render. Bounded: template <= 1 MiB, nesting <= 400 levels, macro calls <= 32
 * deep, lists <= 1M items; output, memory and work caps grow with the size of the
 * conversation (8 MiB + 8x input bytes of output, 32 MiB + 32x input of memory, 200k + 5k per
 * message + 1 per 8 input bytes steps, a step being a node evaluated or 256 bytes copied; a
 * real template needs a few hundred steps per message). The supported subset is listed at the top of jinja.c. */
int llm_jinja_render(const char *tmpl, const llm_chat_msg *msgs, size_t n, const llm_template_vars *vars,
                     char **out, llm_err *err);

/* Internal, shared by the native renderers and the interpreter: Python's str.isspace() for the
 * UTF-8 character starting at s[0] (llm_py_space_at) or ending at s[n-1]
 * (llm_py_space_before), within n bytes: the character's length in bytes, or 0 when it is not
 * whitespace. Python's strip()/split() and Jinja's trim use this definition (ASCII whitespace,
 * \x1c-\x1f, U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F,
 * U+3000). */
size_t llm_py_space_at(const char *s, size_t n);
size_t llm_py_space_before(const char *s, size_t n);

#endif
