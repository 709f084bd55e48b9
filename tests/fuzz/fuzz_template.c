/*
 * libFuzzer target for chat templates: the input is a template (as it would come from a model
 * file's tokenizer.chat_template), rendered over a fixed conversation by the interpreter and by
 * the automatic path (family detection + native renderers). Both must return cleanly (text or
 * an error) within the interpreter's limits; ASan/UBSan catch the rest.
 *
 * The first input byte selects add_generation_prompt and how many messages to pass, so the
 * fuzzer also explores empty and odd-length conversations.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text/template.h"

static const llm_chat_msg MSGS[] = {
    {"system", "Be brief. {{ not a tag }} {% neither %}"},
    {"user", "Grüße — 日本語 🦙\n  padded  "},
    {"assistant", "   ok   "},
    {"user", ""},
    {"tool", "{\"x\": 1}"},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t flags = data[0];
    char *tmpl = malloc(size);
    if (!tmpl)
        return 0;
    memcpy(tmpl, data + 1, size - 1);
    tmpl[size - 1] = 0; /* templates are C strings: anything after a NUL is ignored */
    llm_template_vars v = {.bos_token = "<s>", .eos_token = "</s>", .add_generation_prompt = flags & 1};
    size_t n = (size_t)((flags >> 1) % 6);
    llm_err err;
    char *out = NULL;
    if (llm_jinja_render(tmpl, MSGS, n, &v, &out, &err) == 0)
        free(out);
    out = NULL;
    /* the automatic path only differs when a family is recognised (else it interprets again) */
    if (strcmp(llm_template_kind(tmpl), "jinja") != 0 && llm_chat_render(tmpl, MSGS, n, &v, &out, &err) == 0)
        free(out);
    (void)llm_template_stops(tmpl);
    free(tmpl);
    return 0;
}
