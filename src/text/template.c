/*
 * template.c — chat template dispatch (stub: the ChatML fallback only, native renderers and the
 * Jinja interpreter follow). See template.h for the contract.
 */
#include "text/template.h"

#include <stdlib.h>
#include <string.h>

static const char *str_or_empty(const char *s) { return s ? s : ""; }

int llm_chat_render_fallback(const llm_chat_msg *msgs, size_t n, const llm_template_vars *vars, char **out,
                             llm_err *err)
{
    (void)err;
    llm_buf b = {0};
    for (size_t i = 0; i < n; i++) {
        llm_buf_puts(&b, "<|im_start|>");
        llm_buf_puts(&b, str_or_empty(msgs[i].role));
        llm_buf_puts(&b, "\n");
        llm_buf_puts(&b, str_or_empty(msgs[i].content));
        llm_buf_puts(&b, "<|im_end|>\n");
    }
    if (vars && vars->add_generation_prompt)
        llm_buf_puts(&b, "<|im_start|>assistant\n");
    llm_buf_cstr(&b);
    *out = b.data ? b.data : llm_xstrdup("");
    return 0;
}

int llm_jinja_render(const char *tmpl, const llm_chat_msg *msgs, size_t n, const llm_template_vars *vars,
                     char **out, llm_err *err)
{
    (void)tmpl, (void)msgs, (void)n, (void)vars;
    *out = NULL;
    return llm_errf(err, "chat template: interpreter not implemented yet");
}

const char *llm_template_kind(const char *tmpl) { return tmpl && *tmpl ? "jinja" : "none"; }

const char *const *llm_template_stops(const char *tmpl)
{
    static const char *const none[] = {NULL};
    (void)tmpl;
    return none;
}

int llm_chat_render_ex(const char *tmpl, const llm_chat_msg *msgs, size_t n, const llm_template_vars *vars,
                       llm_template_mode mode, char **out, llm_err *err)
{
    if (!tmpl || !*tmpl)
        return llm_chat_render_fallback(msgs, n, vars, out, err);
    (void)mode;
    return llm_jinja_render(tmpl, msgs, n, vars, out, err);
}

int llm_chat_render(const char *tmpl, const llm_chat_msg *msgs, size_t n, const llm_template_vars *vars,
                    char **out, llm_err *err)
{
    return llm_chat_render_ex(tmpl, msgs, n, vars, LLM_TMPL_AUTO, out, err);
}
