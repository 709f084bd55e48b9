/*
 * Chat template tests. Expected prompts are written by hand from each family's published
 * format (and cross-checked against the outputs documented next to these templates by the
 * Hugging Face jinja test-suite and llama.cpp's test-chat-template), never produced by the code
 * under test. Every real template is rendered twice, natively and by the Jinja interpreter,
 * and both must give the same expected string. The templates of the shared tiny models are
 * read from the GGUF files; the others are the exact tokenizer_config.json chat_template
 * strings of the named models (JSON "\n" = newline in the template, JSON "\\n" = a backslash-n
 * escape inside a Jinja string literal).
 *
 * Then: interpreter construct coverage with small hand-computed templates, error messages
 * (raise_exception, unknown filter, unterminated tag with line:column), and the limits that
 * keep hostile templates bounded.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "gguf/gguf.h"
#include "mem/mem.h"
#include "text/template.h"

/* The conversation llama.cpp's template tests use: note the padded assistant answer, which
 * shows whether a format trims. */
static const llm_chat_msg CONV[] = {
    {"system", "You are a helpful assistant"},
    {"user", "Hello"},
    {"assistant", "Hi there"},
    {"user", "Who are you"},
    {"assistant", "   I am an assistant   "},
    {"user", "Another question"},
};
#define CONV_N 6

/* Renders with the given mode; returns the text (caller frees) or NULL with the error printed. */
static char *render(const char *tmpl, const llm_chat_msg *m, size_t n, const char *bos, const char *eos, bool gen,
                    llm_template_mode mode, llm_err *err)
{
    llm_template_vars v = {.bos_token = bos, .eos_token = eos, .add_generation_prompt = gen};
    char *out = NULL;
    if (llm_chat_render_ex(tmpl, m, n, &v, mode, &out, err) != 0)
        return NULL;
    return out;
}

/* Both renderers must produce `want`, and the template must be recognised as `kind`. */
static void check_both(const char *name, const char *tmpl, const llm_chat_msg *m, size_t n, const char *bos,
                       const char *eos, bool gen, const char *kind, const char *want)
{
    llm_err err = {{0}};
    CHECK_MSG(strcmp(llm_template_kind(tmpl), kind) == 0, "%s: kind %s, want %s", name, llm_template_kind(tmpl), kind);
    char *nat = render(tmpl, m, n, bos, eos, gen, LLM_TMPL_NATIVE, &err);
    CHECK_MSG(nat && strcmp(nat, want) == 0, "%s native:\n got: [%s]\nwant: [%s]\n err: %s", name, nat ? nat : "(null)",
              want, nat ? "" : err.msg);
    free(nat);
    char *jin = render(tmpl, m, n, bos, eos, gen, LLM_TMPL_JINJA, &err);
    CHECK_MSG(jin && strcmp(jin, want) == 0, "%s jinja:\n got: [%s]\nwant: [%s]\n err: %s", name, jin ? jin : "(null)",
              want, jin ? "" : err.msg);
    free(jin);
}

/* Renders a template with the interpreter and checks the text. */
static void check_jinja(const char *tmpl, const char *want)
{
    llm_err err = {{0}};
    char *out = render(tmpl, CONV, 3, "<s>", "</s>", true, LLM_TMPL_JINJA, &err);
    CHECK_MSG(out && strcmp(out, want) == 0, "template [%s]\n got: [%s]\nwant: [%s]\n err: %s", tmpl,
              out ? out : "(null)", want, out ? "" : err.msg);
    free(out);
}

/* The interpreter must fail with a message containing each of the given fragments. */
static void check_error(const char *tmpl, const char *frag1, const char *frag2)
{
    llm_err err = {{0}};
    char *out = render(tmpl, CONV, CONV_N, "<s>", "</s>", true, LLM_TMPL_JINJA, &err);
    CHECK_MSG(out == NULL, "template [%.80s] should fail, rendered [%.80s]", tmpl, out ? out : "");
    free(out);
    if (frag1) CHECK_CONTAINS(err.msg, frag1);
    if (frag2) CHECK_CONTAINS(err.msg, frag2);
}

/* ---- templates of the shared tiny models ------------------------------------------------------- */

static char *model_template(const char *file)
{
    const char *dir = shared_dir();
    if (!dir) return NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/models/%s", dir, file);
    llm_map m;
    llm_map_opts o = {0};
    llm_err err = {{0}};
    if (llm_map_open(&m, path, &o, &err) != 0) {
        CHECK_MSG(0, "%s", err.msg);
        return NULL;
    }
    gguf_file f = {0};
    char *t = NULL;
    if (gguf_parse(&f, path, m.base, m.size, &err) == 0)
        t = gguf_get_str(&f, "tokenizer.chat_template", &err);
    CHECK_MSG(t != NULL, "%s: %s", file, err.msg);
    gguf_free(&f);
    llm_map_close(&m);
    return t;
}

static void test_shared_models(void)
{
    if (!shared_dir()) {
        SKIP("shared data absent: tiny model chat templates not tested");
        return;
    }
    char *llama = model_template("tiny-llama-q8_0.gguf");
    if (llama) {
        /* Llama 2 chat: system in <<SYS>> inside the first [INST], BOS before every [INST],
         * answers stripped and followed by " </s>". */
        check_both("tiny-llama (llama2)", llama, CONV, CONV_N, "<s>", "</s>", true, "llama2",
                   "<s>[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST] Hi there </s>"
                   "<s>[INST] Who are you [/INST] I am an assistant </s><s>[INST] Another question [/INST]");
        check_both("tiny-llama no system", llama, CONV + 1, 3, "<s>", "</s>", false, "llama2",
                   "<s>[INST] Hello [/INST] Hi there </s><s>[INST] Who are you [/INST]");
        /* the template's own validation, through the interpreter */
        static const llm_chat_msg two_users[] = {{"user", "a"}, {"user", "b"}};
        llm_err err = {{0}};
        char *out = render(llama, two_users, 2, "<s>", "</s>", true, LLM_TMPL_JINJA, &err);
        CHECK(out == NULL);
        CHECK_CONTAINS(err.msg, "raise_exception: Conversation roles must alternate user/assistant/user/assistant/...");
        free(out);
    }
    free(llama);
    char *qwen = model_template("tiny-qwen2-q8_0.gguf");
    if (qwen) {
        check_both("tiny-qwen2 (chatml)", qwen, CONV, CONV_N, "", "", true, "chatml",
                   "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
                   "<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n"
                   "<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother question"
                   "<|im_end|>\n<|im_start|>assistant\n");
    }
    free(qwen);
}

/* ---- real templates embedded ------------------------------------------------------------------- */

/* Qwen/Qwen2-7B-Instruct */
static const char QWEN2[] =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n'"
    " }}{% endif %}";

/* meta-llama/Meta-Llama-3-8B-Instruct */
static const char LLAMA3[] =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

/* mistralai/Mistral-7B-Instruct-v0.1 */
static const char MISTRAL_V01[] =
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ "
    "raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if "
    "message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == "
    "'assistant' %}{{ message['content'] + eos_token + ' ' }}{% else %}{{ raise_exception('Only user and assistant "
    "roles are supported!') }}{% endif %}{% endfor %}";

/* mistralai/Mixtral-8x7B-Instruct-v0.1 (= Mistral-7B-Instruct-v0.2) */
static const char MIXTRAL[] =
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ "
    "raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if "
    "message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == "
    "'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles "
    "are supported!') }}{% endif %}{% endfor %}";

/* HuggingFaceH4/zephyr-7b-beta (relies on trim_blocks) */
static const char ZEPHYR[] =
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + "
    "eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n"
    "{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";

/* google/gemma-7b-it and gemma-2b-it */
static const char GEMMA[] =
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ "
    "raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if "
    "(message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if "
    "add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}";

/* microsoft/Phi-3-mini-4k-instruct (current) */
static const char PHI3[] =
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + "
    "'<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif "
    "message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}";

/* microsoft/Phi-3.5-mini-instruct */
static const char PHI35[] =
    "{% for message in messages %}{% if message['role'] == 'system' and message['content'] %}{{'<|system|>\n' + "
    "message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + "
    "'<|end|>\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}";

/* deepseek-ai/deepseek-llm-7b-chat */
static const char DEEPSEEK[] =
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{{ bos_token }}"
    "{% for message in messages %}{% if message['role'] == 'user' %}{{ 'User: ' + message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ 'Assistant: ' + message['content'] + eos_token }}{% elif "
    "message['role'] == 'system' %}{{ message['content'] + '\n\n' }}{% endif %}{% endfor %}{% if "
    "add_generation_prompt %}{{ 'Assistant:' }}{% endif %}";

/* deepseek-ai/deepseek-coder-33b-instruct (relies on -, trim_blocks and lstrip_blocks) */
static const char DEEPSEEK_CODER[] =
    "{% if not add_generation_prompt is defined %}\n{% set add_generation_prompt = false %}\n{% endif %}\n"
    "{%- set ns = namespace(found=false) -%}\n{%- for message in messages -%}\n    {%- if message['role'] == "
    "'system' -%}\n        {%- set ns.found = true -%}\n    {%- endif -%}\n{%- endfor -%}\n{{bos_token}}{%- if "
    "not ns.found -%}\n{{'You are an AI programming assistant, utilizing the Deepseek Coder model, developed by "
    "Deepseek Company, and you only answer questions related to computer science. For politically sensitive "
    "questions, security and privacy issues, and other non-computer science questions, you will refuse to "
    "answer\\n'}}\n{%- endif %}\n{%- for message in messages %}\n    {%- if message['role'] == 'system' %}\n"
    "{{ message['content'] }}\n    {%- else %}\n        {%- if message['role'] == 'user' %}\n"
    "{{'### Instruction:\\n' + message['content'] + '\\n'}}\n        {%- else %}\n"
    "{{'### Response:\\n' + message['content'] + '\\n<|EOT|>\\n'}}\n        {%- endif %}\n    {%- endif %}\n"
    "{%- endfor %}\n{% if add_generation_prompt %}\n{{'### Response:'}}\n{% endif %}";

/* meta-llama/Llama-3.2-3B-Instruct (llama.cpp models/templates) */
static const char LLAMA32[] =
    "{{- bos_token }}\n"
    "{%- if custom_tools is defined %}\n"
    "    {%- set tools = custom_tools %}\n"
    "{%- endif %}\n"
    "{%- if not tools_in_user_message is defined %}\n"
    "    {%- set tools_in_user_message = true %}\n"
    "{%- endif %}\n"
    "{%- if not date_string is defined %}\n"
    "    {%- if strftime_now is defined %}\n"
    "        {%- set date_string = strftime_now(\"%d %b %Y\") %}\n"
    "    {%- else %}\n"
    "        {%- set date_string = \"26 Jul 2024\" %}\n"
    "    {%- endif %}\n"
    "{%- endif %}\n"
    "{%- if not tools is defined %}\n"
    "    {%- set tools = none %}\n"
    "{%- endif %}\n"
    "\n"
    "{#- This block extracts the system message, so we can slot it into the right place. #}\n"
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {%- set system_message = messages[0]['content']|trim %}\n"
    "    {%- set messages = messages[1:] %}\n"
    "{%- else %}\n"
    "    {%- set system_message = \"\" %}\n"
    "{%- endif %}\n"
    "\n"
    "{#- System message #}\n"
    "{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}\n"
    "{%- if tools is not none %}\n"
    "    {{- \"Environment: ipython\\n\" }}\n"
    "{%- endif %}\n"
    "{{- \"Cutting Knowledge Date: December 2023\\n\" }}\n"
    "{{- \"Today Date: \" + date_string + \"\\n\\n\" }}\n"
    "{%- if tools is not none and not tools_in_user_message %}\n"
    "    {{- \"You have access to the following functions. To call a function, please respond with JSON for a function call.\" }}\n"
    "    {{- 'Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}.' }}\n"
    "    {{- \"Do not use variables.\\n\\n\" }}\n"
    "    {%- for t in tools %}\n"
    "        {{- t | tojson(indent=4) }}\n"
    "        {{- \"\\n\\n\" }}\n"
    "    {%- endfor %}\n"
    "{%- endif %}\n"
    "{{- system_message }}\n"
    "{{- \"<|eot_id|>\" }}\n"
    "\n"
    "{#- Custom tools are passed in a user message with some extra guidance #}\n"
    "{%- if tools_in_user_message and not tools is none %}\n"
    "    {#- Extract the first user message so we can plug it in here #}\n"
    "    {%- if messages | length != 0 %}\n"
    "        {%- set first_user_message = messages[0]['content']|trim %}\n"
    "        {%- set messages = messages[1:] %}\n"
    "    {%- else %}\n"
    "        {{- raise_exception(\"Cannot put tools in the first user message when there's no first user message!\") }}\n"
    "{%- endif %}\n"
    "    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' -}}\n"
    "    {{- \"Given the following functions, please respond with a JSON for a function call \" }}\n"
    "    {{- \"with its proper arguments that best answers the given prompt.\\n\\n\" }}\n"
    "    {{- 'Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}.' }}\n"
    "    {{- \"Do not use variables.\\n\\n\" }}\n"
    "    {%- for t in tools %}\n"
    "        {{- t | tojson(indent=4) }}\n"
    "        {{- \"\\n\\n\" }}\n"
    "    {%- endfor %}\n"
    "    {{- first_user_message + \"<|eot_id|>\"}}\n"
    "{%- endif %}\n"
    "\n"
    "{%- for message in messages %}\n"
    "    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}\n"
    "        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}\n"
    "    {%- elif 'tool_calls' in message %}\n"
    "        {%- if not message.tool_calls|length == 1 %}\n"
    "            {{- raise_exception(\"This model only supports single tool-calls at once!\") }}\n"
    "        {%- endif %}\n"
    "        {%- set tool_call = message.tool_calls[0].function %}\n"
    "        {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}\n"
    "        {{- '{\"name\": \"' + tool_call.name + '\", ' }}\n"
    "        {{- '\"parameters\": ' }}\n"
    "        {{- tool_call.arguments | tojson }}\n"
    "        {{- \"}\" }}\n"
    "        {{- \"<|eot_id|>\" }}\n"
    "    {%- elif message.role == \"tool\" or message.role == \"ipython\" %}\n"
    "        {{- \"<|start_header_id|>ipython<|end_header_id|>\\n\\n\" }}\n"
    "        {%- if message.content is mapping or message.content is iterable %}\n"
    "            {{- message.content | tojson }}\n"
    "        {%- else %}\n"
    "            {{- message.content }}\n"
    "        {%- endif %}\n"
    "        {{- \"<|eot_id|>\" }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n"
    "{%- endif %}\n";

/* mistralai/Mistral-Nemo-Instruct-2407 (llama.cpp models/templates) */
static const char MISTRAL_NEMO[] =
    "{%- if messages[0][\"role\"] == \"system\" %}\n"
    "    {%- set system_message = messages[0][\"content\"] %}\n"
    "    {%- set loop_messages = messages[1:] %}\n"
    "{%- else %}\n"
    "    {%- set loop_messages = messages %}\n"
    "{%- endif %}\n"
    "{%- if not tools is defined %}\n"
    "    {%- set tools = none %}\n"
    "{%- endif %}\n"
    "{%- set user_messages = loop_messages | selectattr(\"role\", \"equalto\", \"user\") | list %}\n"
    "\n"
    "{#- This block checks for alternating user/assistant messages, skipping tool calling messages #}\n"
    "{%- set ns = namespace() %}\n"
    "{%- set ns.index = 0 %}\n"
    "{%- for message in loop_messages %}\n"
    "    {%- if not (message.role == \"tool\" or message.role == \"tool_results\" or (message.tool_calls is defined and message.tool_calls is not none)) %}\n"
    "        {%- if (message[\"role\"] == \"user\") != (ns.index % 2 == 0) %}\n"
    "            {{- raise_exception(\"After the optional system message, conversation roles must alternate user/assistant/user/assistant/...\") }}\n"
    "        {%- endif %}\n"
    "        {%- set ns.index = ns.index + 1 %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "\n"
    "{{- bos_token }}\n"
    "{%- for message in loop_messages %}\n"
    "    {%- if message[\"role\"] == \"user\" %}\n"
    "        {%- if tools is not none and (message == user_messages[-1]) %}\n"
    "            {{- \"[AVAILABLE_TOOLS][\" }}\n"
    "            {%- for tool in tools %}\n"
    "                {%- set tool = tool.function %}\n"
    "                {{- '{\"type\": \"function\", \"function\": {' }}\n"
    "                {%- for key, val in tool.items() if key != \"return\" %}\n"
    "                    {%- if val is string %}\n"
    "                        {{- '\"' + key + '\": \"' + val + '\"' }}\n"
    "                    {%- else %}\n"
    "                        {{- '\"' + key + '\": ' + val|tojson }}\n"
    "                    {%- endif %}\n"
    "                    {%- if not loop.last %}\n"
    "                        {{- \", \" }}\n"
    "                    {%- endif %}\n"
    "                {%- endfor %}\n"
    "                {{- \"}}\" }}\n"
    "                {%- if not loop.last %}\n"
    "                    {{- \", \" }}\n"
    "                {%- else %}\n"
    "                    {{- \"]\" }}\n"
    "                {%- endif %}\n"
    "            {%- endfor %}\n"
    "            {{- \"[/AVAILABLE_TOOLS]\" }}\n"
    "            {%- endif %}\n"
    "        {%- if loop.last and system_message is defined %}\n"
    "            {{- \"[INST]\" + system_message + \"\\n\\n\" + message[\"content\"] + \"[/INST]\" }}\n"
    "        {%- else %}\n"
    "            {{- \"[INST]\" + message[\"content\"] + \"[/INST]\" }}\n"
    "        {%- endif %}\n"
    "    {%- elif (message.tool_calls is defined and message.tool_calls is not none) %}\n"
    "        {{- \"[TOOL_CALLS][\" }}\n"
    "        {%- for tool_call in message.tool_calls %}\n"
    "            {%- set out = tool_call.function|tojson %}\n"
    "            {{- out[:-1] }}\n"
    "            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}\n"
    "                {{- raise_exception(\"Tool call IDs should be alphanumeric strings with length 9!\") }}\n"
    "            {%- endif %}\n"
    "            {{- ', \"id\": \"' + tool_call.id + '\"}' }}\n"
    "            {%- if not loop.last %}\n"
    "                {{- \", \" }}\n"
    "            {%- else %}\n"
    "                {{- \"]\" + eos_token }}\n"
    "            {%- endif %}\n"
    "        {%- endfor %}\n"
    "    {%- elif message[\"role\"] == \"assistant\" %}\n"
    "        {{- message[\"content\"] + eos_token}}\n"
    "    {%- elif message[\"role\"] == \"tool_results\" or message[\"role\"] == \"tool\" %}\n"
    "        {%- if message.content is defined and message.content.content is defined %}\n"
    "            {%- set content = message.content.content %}\n"
    "        {%- else %}\n"
    "            {%- set content = message.content %}\n"
    "        {%- endif %}\n"
    "        {{- '[TOOL_RESULTS]{\"content\": ' + content|string + \", \" }}\n"
    "        {%- if not message.tool_call_id is defined or message.tool_call_id|length != 9 %}\n"
    "            {{- raise_exception(\"Tool call IDs should be alphanumeric strings with length 9!\") }}\n"
    "        {%- endif %}\n"
    "        {{- '\"call_id\": \"' + message.tool_call_id + '\"}[/TOOL_RESULTS]' }}\n"
    "    {%- else %}\n"
    "        {{- raise_exception(\"Only user and assistant roles are supported, with the exception of an initial optional system message!\") }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n";

/* deepseek-ai/DeepSeek-R1-Distill-Qwen-32B (llama.cpp models/templates) */
static const char R1_DISTILL[] =
    "{% if not add_generation_prompt is defined %}\n"
    "{% set add_generation_prompt = false %}\n"
    "{% endif %}\n"
    "{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='') %}\n"
    "{%- for message in messages %}\n"
    "{%- if message['role'] == 'system' %}\n"
    "{% set ns.system_prompt = message['content'] %}\n"
    "{%- endif %}\n"
    "{%- endfor %}\n"
    "{{bos_token}}\n"
    "{{ns.system_prompt}}\n"
    "{%- for message in messages %}\n"
    "{%- if message['role'] == 'user' %}\n"
    "{%- set ns.is_tool = false -%}\n"
    "{{'<｜User｜>' + message['content']}}\n"
    "{%- endif %}\n"
    "{%- if message['role'] == 'assistant' and message['content'] is none %}\n"
    "{%- set ns.is_tool = false -%}\n"
    "{%- for tool in message['tool_calls']%}\n"
    "{%- if not ns.is_first %}\n"
    "{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}\n"
    "{%- set ns.is_first = true -%}\n"
    "{%- else %}\n"
    "{{'\\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}\n"
    "{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}\n"
    "{%- endif %}\n"
    "{%- endfor %}\n"
    "{%- endif %}\n"
    "{%- if message['role'] == 'assistant' and message['content'] is not none %}\n"
    "{%- if ns.is_tool %}\n"
    "{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}\n"
    "{%- set ns.is_tool = false -%}\n"
    "{%- else %}\n"
    "{% set content = message['content'] %}\n"
    "{% if '</think>' in content %}\n"
    "{% set content = content.split('</think>')[-1] %}\n"
    "{% endif %}\n"
    "{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}\n"
    "{%- endif %}\n"
    "{%- endif %}\n"
    "{%- if message['role'] == 'tool' %}\n"
    "{%- set ns.is_tool = true -%}\n"
    "{%- if ns.is_output_first %}\n"
    "{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}\n"
    "{%- set ns.is_output_first = false %}\n"
    "{%- else %}\n"
    "{{'\\n<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}\n"
    "{%- endif %}\n"
    "{%- endif %}\n"
    "{%- endfor -%}\n"
    "{% if ns.is_tool %}\n"
    "{{'<｜tool▁outputs▁end｜>'}}\n"
    "{% endif %}\n"
    "{% if add_generation_prompt and not ns.is_tool %}\n"
    "{{'<｜Assistant｜>'}}\n"
    "{% endif %}";

/* Templates of newer models, beyond the native families: interpreted. */
static void test_modern_templates(void)
{
    llm_err err = {{0}};
    /* Llama 3.2: system block with knowledge/today dates; strftime_now is defined, as in
     * transformers, so "Today Date" is the current local date. */
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(date, sizeof date, "%d %b %Y", &tm);
    char want[1024];
    snprintf(want, sizeof want,
             "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
             "Today Date: %s\n\nYou are a helpful assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
             "Hello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
             "<|start_header_id|>assistant<|end_header_id|>\n\n", date);
    CHECK_EQ_STR(llm_template_kind(LLAMA32), "jinja");
    char *out = render(LLAMA32, CONV, 3, "<|begin_of_text|>", "<|eot_id|>", true, LLM_TMPL_AUTO, &err);
    CHECK_MSG(out && strcmp(out, want) == 0, "llama 3.2:\n got: [%s]\nwant: [%s] %s", out ? out : "", want, err.msg);
    free(out);

    /* Mistral Nemo: the system message goes into the last user turn, no spaces around [INST] */
    CHECK_EQ_STR(llm_template_kind(MISTRAL_NEMO), "jinja");
    out = render(MISTRAL_NEMO, CONV, 4, "<s>", "</s>", true, LLM_TMPL_AUTO, &err);
    CHECK_MSG(out && strcmp(out, "<s>[INST]Hello[/INST]Hi there</s>[INST]You are a helpful assistant\n\nWho are you"
                                 "[/INST]") == 0, "mistral nemo: [%s] %s", out ? out : "", err.msg);
    free(out);
    static const llm_chat_msg bad_order[] = {{"assistant", "x"}, {"user", "y"}};
    out = render(MISTRAL_NEMO, bad_order, 2, "<s>", "</s>", true, LLM_TMPL_AUTO, &err);
    CHECK(out == NULL);
    CHECK_CONTAINS(err.msg, "raise_exception: After the optional system message, conversation roles must alternate");
    free(out);

    /* DeepSeek R1 distill: system text right after BOS (the template keeps the newline after
     * {{bos_token}}), a </think> section is cut from earlier answers, trim_blocks keeps the
     * newline after the final '<｜Assistant｜>' expression. */
    static const llm_chat_msg think[] = {{"system", "You are a helpful assistant"}, {"user", "Hello"},
                                         {"assistant", "<think>hmm</think>Hi there"}};
    CHECK_EQ_STR(llm_template_kind(R1_DISTILL), "jinja");
    out = render(R1_DISTILL, think, 3, "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", true, LLM_TMPL_AUTO, &err);
    CHECK_MSG(out && strcmp(out, "<｜begin▁of▁sentence｜>\nYou are a helpful assistant<｜User｜>Hello<｜Assistant｜>Hi there"
                                 "<｜end▁of▁sentence｜><｜Assistant｜>\n") == 0, "r1 distill: [%s] %s", out ? out : "", err.msg);
    free(out);
}

static void test_families(void)
{
    /* Qwen2: default system prompt only when the conversation has none */
    check_both("qwen2 default system", QWEN2, CONV + 1, 3, "", "", true, "chatml",
               "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
               "<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n"
               "<|im_start|>assistant\n");
    check_both("qwen2 own system", QWEN2, CONV, 2, "", "", false, "chatml",
               "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n");

    check_both("llama3", LLAMA3, CONV, CONV_N, "<|begin_of_text|>", "<|eot_id|>", true, "llama3",
               "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|>"
               "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant"
               "<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWho are you"
               "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nI am an assistant<|eot_id|>"
               "<|start_header_id|>user<|end_header_id|>\n\nAnother question<|eot_id|><|start_header_id|>assistant"
               "<|end_header_id|>\n\n");
    static const llm_chat_msg nbsp[] = {{"user", "\xc2\xa0 Hi\xe3\x80\x80"}};
    check_both("llama3 trims Unicode whitespace", LLAMA3, nbsp, 1, "", "", false, "llama3",
               "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
    check_both("llama3 no generation prompt", LLAMA3, CONV + 1, 1, "<|begin_of_text|>", "", false, "llama3",
               "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>");

    check_both("mistral v0.1", MISTRAL_V01, CONV + 1, 5, "<s>", "</s>", true, "mistral",
               "<s>[INST] Hello [/INST]Hi there</s> [INST] Who are you [/INST]   I am an assistant   </s> "
               "[INST] Another question [/INST]");
    check_both("mixtral / mistral v0.2", MIXTRAL, CONV + 1, 5, "<s>", "</s>", true, "mistral",
               "<s>[INST] Hello [/INST]Hi there</s>[INST] Who are you [/INST]   I am an assistant   </s>"
               "[INST] Another question [/INST]");

    check_both("zephyr", ZEPHYR, CONV, CONV_N, "<s>", "</s>", true, "zephyr",
               "<|system|>\nYou are a helpful assistant</s>\n<|user|>\nHello</s>\n<|assistant|>\nHi there</s>\n"
               "<|user|>\nWho are you</s>\n<|assistant|>\n   I am an assistant   </s>\n<|user|>\nAnother question"
               "</s>\n<|assistant|>\n");
    check_both("zephyr no generation prompt", ZEPHYR, CONV + 1, 2, "<s>", "</s>", false, "zephyr",
               "<|user|>\nHello</s>\n<|assistant|>\nHi there</s>\n");

    check_both("gemma", GEMMA, CONV + 1, 5, "<bos>", "<eos>", true, "gemma",
               "<bos><start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\nHi there<end_of_turn>\n"
               "<start_of_turn>user\nWho are you<end_of_turn>\n<start_of_turn>model\nI am an assistant<end_of_turn>\n"
               "<start_of_turn>user\nAnother question<end_of_turn>\n<start_of_turn>model\n");

    check_both("phi3", PHI3, CONV, CONV_N, "<s>", "<|endoftext|>", true, "phi3",
               "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\nHi there<|end|>\n"
               "<|user|>\nWho are you<|end|>\n<|assistant|>\n   I am an assistant   <|end|>\n<|user|>\n"
               "Another question<|end|>\n<|assistant|>\n");
    check_both("phi3 no generation prompt", PHI3, CONV + 1, 2, "<s>", "<|endoftext|>", false, "phi3",
               "<|user|>\nHello<|end|>\n<|assistant|>\nHi there<|end|>\n<|endoftext|>");
    static const llm_chat_msg empty_sys[] = {{"system", ""}, {"user", "Hi"}};
    check_both("phi3.5 skips an empty system message", PHI35, empty_sys, 2, "", "<|endoftext|>", true, "phi3",
               "<|user|>\nHi<|end|>\n<|assistant|>\n");
    check_both("phi3 keeps an empty system message", PHI3, empty_sys, 2, "", "<|endoftext|>", true, "phi3",
               "<|system|>\n<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n");

    check_both("deepseek llm", DEEPSEEK, CONV, CONV_N, "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", true,
               "deepseek",
               "<｜begin▁of▁sentence｜>You are a helpful assistant\n\nUser: Hello\n\nAssistant: Hi there"
               "<｜end▁of▁sentence｜>User: Who are you\n\nAssistant:    I am an assistant   <｜end▁of▁sentence｜>"
               "User: Another question\n\nAssistant:");

    check_both("deepseek coder default system", DEEPSEEK_CODER, CONV + 1, 5, "<｜begin▁of▁sentence｜>", "<|EOT|>",
               true, "deepseek-coder",
               "<｜begin▁of▁sentence｜>You are an AI programming assistant, utilizing the Deepseek Coder model, "
               "developed by Deepseek Company, and you only answer questions related to computer science. For "
               "politically sensitive questions, security and privacy issues, and other non-computer science "
               "questions, you will refuse to answer\n### Instruction:\nHello\n### Response:\nHi there\n<|EOT|>\n"
               "### Instruction:\nWho are you\n### Response:\n   I am an assistant   \n<|EOT|>\n### Instruction:\n"
               "Another question\n### Response:\n");
    check_both("deepseek coder own system, no generation prompt", DEEPSEEK_CODER, CONV, 2, "<bos>", "<|EOT|>", false,
               "deepseek-coder", "<bos>You are a helpful assistant### Instruction:\nHello\n");

    /* Families without a system role: the real templates refuse one (interpreter), the native
     * renderers merge it into the first user turn. */
    llm_err err = {{0}};
    char *out = render(GEMMA, CONV, CONV_N, "<bos>", "<eos>", true, LLM_TMPL_JINJA, &err);
    CHECK(out == NULL);
    CHECK_CONTAINS(err.msg, "raise_exception: System role not supported");
    free(out);
    out = render(GEMMA, CONV, 2, "<bos>", "<eos>", true, LLM_TMPL_AUTO, &err);
    CHECK_EQ_STR(out, "<bos><start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n"
                      "<start_of_turn>model\n");
    free(out);
    out = render(MIXTRAL, CONV, 2, "<s>", "</s>", true, LLM_TMPL_AUTO, &err);
    CHECK_EQ_STR(out, "<s>[INST] You are a helpful assistant\n\nHello [/INST]");
    free(out);

    /* A role the native renderers do not know: AUTO falls back to the interpreter. */
    static const llm_chat_msg tool_msg[] = {{"user", "q"}, {"tool", "42"}};
    out = render(QWEN2, tool_msg, 2, "", "", false, LLM_TMPL_AUTO, &err);
    CHECK_EQ_STR(out, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nq<|im_end|>\n"
                      "<|im_start|>tool\n42<|im_end|>\n");
    free(out);
    out = render(QWEN2, tool_msg, 2, "", "", false, LLM_TMPL_NATIVE, &err);
    CHECK(out == NULL);
    CHECK_CONTAINS(err.msg, "no native renderer");
    free(out);

    /* Stop strings of a family */
    const char *const *stops = llm_template_stops(QWEN2);
    CHECK(stops[0] && strcmp(stops[0], "<|im_end|>") == 0);
    CHECK(llm_template_stops(NULL)[0] == NULL);
    CHECK(llm_template_stops(LLAMA3)[0] && strcmp(llm_template_stops(LLAMA3)[0], "<|eot_id|>") == 0);
}

/* Differential check over many conversations the real templates accept: the native renderer
 * and the interpreter are independent implementations of each format, so any disagreement is a
 * bug in one of them. (The exact expected strings above pin both to the published formats.) */
static void test_native_matches_interpreter(void)
{
    static const char *const pool[] = {"", "x", "  padded  ", "line1\nline2\n", "unicode é 日本 🦙",
                                       "{{ not a tag }} {% neither %}", "\ttab\xc2\xa0", "a'b\"c\\d"};
    struct { const char *name, *tmpl; int system_ok; } fams[] = {
        {"qwen2", QWEN2, 1},         {"llama3", LLAMA3, 1},      {"mistral v0.1", MISTRAL_V01, 0},
        {"mixtral", MIXTRAL, 0},     {"zephyr", ZEPHYR, 1},      {"gemma", GEMMA, 0},
        {"phi3", PHI3, 1},           {"phi3.5", PHI35, 1},       {"deepseek", DEEPSEEK, 1},
        {"deepseek coder", DEEPSEEK_CODER, 1},
    };
    uint32_t rng = 12345;
    int mismatches = 0, runs = 0;
    for (size_t f = 0; f < sizeof fams / sizeof *fams; f++) {
        for (int it = 0; it < 150; it++) {
            llm_chat_msg m[8];
            size_t n = 0;
            rng = rng * 1664525u + 1013904223u;
            if (fams[f].system_ok && (rng >> 16) % 2) m[n++] = (llm_chat_msg){"system", pool[(rng >> 8) % 8]};
            rng = rng * 1664525u + 1013904223u;
            size_t turns = 1 + (rng >> 16) % 6;
            for (size_t t = 0; t < turns; t++) {
                rng = rng * 1664525u + 1013904223u;
                m[n++] = (llm_chat_msg){t % 2 ? "assistant" : "user", pool[(rng >> 12) % 8]};
            }
            bool gen = (rng >> 20) % 2;
            llm_err e1 = {{0}}, e2 = {{0}};
            char *nat = render(fams[f].tmpl, m, n, "<B>", "<E>", gen, LLM_TMPL_NATIVE, &e1);
            char *jin = render(fams[f].tmpl, m, n, "<B>", "<E>", gen, LLM_TMPL_JINJA, &e2);
            runs++;
            if (!nat || !jin || strcmp(nat, jin) != 0) {
                if (mismatches++ < 3)
                    CHECK_MSG(0, "%s conversation %d (%zu messages, gen %d):\nnative: [%s] %s\n jinja: [%s] %s",
                              fams[f].name, it, n, gen, nat ? nat : "", e1.msg, jin ? jin : "", e2.msg);
            }
            free(nat);
            free(jin);
        }
    }
    CHECK_MSG(mismatches == 0, "%d of %d conversations differ between native and interpreted rendering", mismatches, runs);
}

static void test_fallback(void)
{
    llm_err err = {{0}};
    llm_template_vars v = {.add_generation_prompt = true};
    const char *want = "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n";
    char *out = NULL;
    CHECK(llm_chat_render(NULL, CONV + 1, 1, &v, &out, &err) == 0);
    CHECK_EQ_STR(out, want);
    free(out);
    CHECK(llm_chat_render("", CONV + 1, 1, &v, &out, &err) == 0);
    CHECK_EQ_STR(out, want);
    free(out);
    CHECK(llm_chat_render_fallback(CONV + 1, 1, &v, &out, &err) == 0);
    CHECK_EQ_STR(out, want);
    free(out);
    CHECK_EQ_STR(llm_template_kind(NULL), "none");
    CHECK_EQ_STR(llm_template_kind("{{ messages[0].content }}"), "jinja");
    /* ChatML spelled with extras that plain ChatML lacks is interpreted, not rendered natively */
    CHECK_EQ_STR(llm_template_kind("{{ bos_token }}{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
                                   "<|im_end|>\n{% endfor %}"), "jinja");
    /* unknown template: interpreted */
    CHECK(llm_chat_render("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}", CONV + 1, 2, &v, &out,
                          &err) == 0);
    CHECK_EQ_STR(out, "<user>Hello<assistant>Hi there");
    free(out);
    /* NULL role/content are empty strings */
    static const llm_chat_msg nulls[] = {{NULL, NULL}};
    CHECK(llm_chat_render("[{{ messages[0].role }}|{{ messages[0].content }}]", nulls, 1, &v, &out, &err) == 0);
    CHECK_EQ_STR(out, "[|]");
    free(out);
}

/* ---- interpreter constructs (CONV[0..2]: system, user, assistant) ---------------------------- */

static void test_constructs(void)
{
    /* loop variables */
    check_jinja("{% for m in messages %}{{ loop.index }}/{{ loop.length }}{% if loop.first %}F{% endif %}"
                "{% if loop.last %}L{% endif %}{{ loop.index0 }}{{ loop.revindex }} {% endfor %}",
                "1/3F03 2/312 3/3L21 ");
    check_jinja("{% for i in [1, 2, 3] %}{% if not loop.first %}{{ loop.previtem }}{% endif %}"
                "{% if not loop.last %}{{ loop.nextitem }}{% endif %},{% endfor %}", "2,13,2,");
    /* set, scoping, namespace */
    check_jinja("{% set x = 1 %}{% for m in messages %}{% set x = 2 %}{% endfor %}{{ x }}", "1");
    check_jinja("{% set ns = namespace(n=0, s='') %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
                "{% set ns.s = ns.s ~ m.role[0] %}{% endfor %}{{ ns.n }}{{ ns.s }}", "3sua");
    check_jinja("{% set x %}A{{ 1 + 1 }}{% endset %}[{{ x }}]", "[A2]");
    /* if / elif / else */
    check_jinja("{% for n in [1, 2, 3] %}{% if n == 1 %}one{% elif n == 2 %}two{% else %}many{% endif %} {% endfor %}",
                "one two many ");
    /* for: filter, else, unpacking, dict iteration, break/continue */
    check_jinja("{% for m in messages if m.role != 'system' %}{{ loop.index }}{{ m.role[0] }}{% endfor %}", "1u2a");
    check_jinja("{% for x in [] %}a{% else %}empty{% endfor %}", "empty");
    check_jinja("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}", "a=1;b=2;");
    check_jinja("{% for k, v in {'a': 1, 'b': 2} | items %}{{ k }}{{ v }}{% endfor %}", "a1b2");
    check_jinja("{% for k in {'x': 1, 'y': 2} %}{{ k }}{% endfor %}", "xy");
    check_jinja("{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 4 %}{% break %}{% endif %}"
                "{{ i }}{% endfor %}", "013");
    check_jinja("{% for i in range(1, 10, 3) %}{{ i }}{% endfor %}{% for i in range(3, 0, -1) %}{{ i }}{% endfor %}",
                "147321");
    /* subscripts and slices */
    check_jinja("{{ messages[1:] | length }}{{ messages[-1]['content'] }}{{ messages[0].role }}", "2Hi theresystem");
    check_jinja("{{ [1, 2, 3, 4, 5][1:4] }}{{ [1, 2, 3][::-1] }}{{ 'abcdef'[1:5:2] }}{{ 'héllo'[1] }}"
                "{{ 'héllo'[::-1] }}{{ 'héllo' | length }}", "[2, 3, 4][3, 2, 1]bdéolléh5");
    /* arithmetic, comparison, logic */
    check_jinja("{{ 7 // 2 }} {{ 7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 1 + 2 * 3 }} "
                "{{ (1 + 2) * 3 }} {{ 10 / 4 }} {{ 0.1 + 0.2 }} {{ 1.0 }} {{ 2 * 1.5 }}",
                "3 1 3.5 1024 -4 2 7 9 2.5 0.30000000000000004 1.0 3.0");
    check_jinja("{{ 'a' ~ 1 ~ none ~ true }}|{{ 'yes' if 1 < 2 < 3 else 'no' }}|{{ 'yes' if 3 < 2 < 4 else 'no' }}",
                "a1NoneTrue|yes|no");
    check_jinja("{{ 'b' in 'abc' }} {{ 'z' not in ['a'] }} {{ 'k' in {'k': 1} }} {{ not false and (true or false) }}",
                "True True True True");
    check_jinja("{{ [1, 2] + [3] }}{{ 'ab' * 3 }}{{ 1 == 1.0 }}{{ 'a' < 'b' }}{{ [1, [2]] == [1, [2]] }}",
                "[1, 2, 3]abababTrueTrueTrue");
    check_jinja("{{ none or 'x' }}{{ 0 and 'y' }}{{ '' or [] }}", "x0[]");
    /* literals and output of composite values */
    check_jinja("{{ {'a': {'b': 1}} }}{{ ('x', 2) }}{{ 'it''s' }}{{ \"q'\" }}", "{'a': {'b': 1}}['x', 2]itsq'");
    check_jinja("{{ 'a\\nb\\t\\'c\\u00e9' }}", "a\nb\t'cé");
    /* filters */
    check_jinja("{{ '  hi  ' | trim }}|{{ 'abc' | upper }}|{{ 'Hello World' | lower }}|{{ 'hello world-wide' | title }}|"
                "{{ 'hELLO' | capitalize }}", "hi|ABC|hello world|Hello World-Wide|Hello");
    check_jinja("{{ x | default('d') }}{{ '' | default('e', true) }}{{ 'v' | d('no') }}", "dev");
    check_jinja("{{ [1, 2, 3] | join(', ') }}|{{ [1, 2, 3] | first }}{{ [1, 2, 3] | last }}|{{ 'aXbX' | replace('X', "
                "'-') }}|{{ 3 | string ~ 'x' }}|{{ '42' | int + 1 }}|{{ 'x' | int }}|{{ 2.7 | int }}",
                "1, 2, 3|13|a-b-|3x|43|0|2");
    check_jinja("{{ messages | selectattr('role', 'equalto', 'user') | list | length }}"
                "{{ messages | rejectattr('role', 'eq', 'user') | map(attribute='role') | join(',') }}"
                "{{ messages | map(attribute='role') | join(',') }}", "1system,assistantsystem,user,assistant");
    check_jinja("{{ [1, 0, 2] | select | list }}{{ ['a', 'B'] | map('upper') | join }}{{ [3, 1, 3] | unique | list }}"
                "{{ [1, 2] | reverse | list }}", "[1, 2]AB[3, 1][2, 1]");
    check_jinja("{{ [3, 1, 2] | sort }}{{ ['b', 'a'] | sort(reverse=true) }}{{ messages | sort(attribute='role') | "
                "map(attribute='role') | join(',') }}|{{ [1, 2, 3] | sum }}{{ [4, 2, 8] | min }}{{ [4, 2, 8] | max }}|"
                "{% for k, v in {'b': 1, 'a': 2} | dictsort %}{{ k }}{{ v }}{% endfor %}",
                "[1, 2, 3]['b', 'a']assistant,system,user|628|a2b1");
    check_jinja("{{ {'a': [1, 2.5, 'x\"y\\n', none, true], 'b': {}} | tojson }}",
                "{\"a\": [1, 2.5, \"x\\\"y\\n\", null, true], \"b\": {}}");
    check_jinja("{{ [1, {'k': 'vé'}] | tojson(indent=2) }}", "[\n  1,\n  {\n    \"k\": \"vé\"\n  }\n]");
    check_jinja("{{ '<a href=\"x\">&\\'' | e }}{{ '<b>' | safe }}", "&lt;a href=&#34;x&#34;&gt;&amp;&#39;<b>");
    check_jinja("{{ 'a\nb' | indent(2) }}|{{ 'a\nb' | indent(2, first=true) }}", "a\n  b|  a\n  b");
    /* methods */
    /* Python whitespace includes U+00A0, U+3000, ... (trim, strip, split) */
    check_jinja("{{ '\\u00a0\\u3000x y\\u2009' | trim }}|{{ '\\x1c\\u00e9\\u0085'.strip() }}|{{ 'a\\u3000b c'.split() }}",
                "x y|é|['a', 'b', 'c']");
    check_jinja("{{ '  x  '.strip() }}|{{ 'xxaxx'.lstrip('x') }}|{{ 'xxaxx'.rstrip('x') }}|{{ 'a,b,,c'.split(',') }}|"
                "{{ ' a  b c '.split() }}|{{ 'a-b-c'.split('-', 1) }}",
                "x|axx|xxa|['a', 'b', '', 'c']|['a', 'b', 'c']|['a', 'b-c']");
    check_jinja("{{ 'hello'.startswith('he') }}{{ 'hello'.endswith('x') }}{{ 'Ab'.upper() }}{{ 'Ab'.lower() }}"
                "{{ \"they're\".title() }}", "TrueFalseABabThey'Re");
    check_jinja("{{ {'a': 1}.get('b', 'no') }}{{ {'a': 1}.get('a') }}{{ {'a': 1}.get('z') }}"
                "{{ {'a': 1, 'b': 2}.keys() | list }}{{ {'a': 1}.values() | list }}", "no1None['a', 'b'][1]");
    check_jinja("{% set l = [] %}{% set _ = l.append(1) %}{{ l }}{{ ', '.join(['p', 'q']) }}", "[1]p, q");
    /* tests */
    check_jinja("{{ x is defined }}{{ none is none }}{{ 'a' is string }}{{ 1 is number }}{{ 3 is odd }}"
                "{{ messages is iterable }}{{ x is not defined }}{{ 6 is divisibleby 3 }}{{ {} is mapping }}"
                "{{ 1 is integer }}{{ 1.5 is float }}{{ true is boolean }}{{ 'a' is lower }}{{ 1 is sameas 1 }}",
                "FalseTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrue");
    check_jinja("{{ messages[0].tool_calls is defined }}{{ (messages | last).content }}", "FalseHi there");
    /* macros */
    check_jinja("{% macro greet(name, p='Hi') %}{{ p }} {{ name }}!{% endmacro %}{{ greet('Bob') }} "
                "{{ greet('Al', p='Yo') }}", "Hi Bob! Yo Al!");
    /* context variables */
    check_jinja("{{ bos_token }}{{ eos_token }}{{ add_generation_prompt }}{{ tools is none }}", "<s></s>TrueTrue");
}

static void test_whitespace(void)
{
    check_jinja("  {%- if true -%}  a  {%- endif -%}  b", "ab");
    check_jinja("x  {{- 'y' -}}  z", "xyz");
    /* trim_blocks: the newline after a block tag goes; lstrip_blocks: indentation before it */
    check_jinja("{% if true %}\n    x\n{% endif %}\ny", "    x\ny");
    check_jinja("a\n    {% if true %}\n    b\n    {% endif %}\nc", "a\n    b\nc");
    check_jinja("  {% if true %}x{% endif %}", "x");
    check_jinja("a  {% if true %}x{% endif %}", "a  x");
    check_jinja("  {{ 'x' }}\n{{ 'y' }}", "  x\ny");     /* not for expressions */
    check_jinja("{# comment #}\nA{# c2 -#}  B", "AB"); /* comments: trim_blocks and '-' too */
    check_jinja("  {%+ if true %}x{% endif %}", "  x");  /* '+' keeps the indentation */
    check_jinja("{% if true +%}\nx{% endif %}", "\nx");  /* ... and the newline */
    check_jinja("{% for i in [1, 2] %}\n  {{ i }}\n{% endfor %}", "  1\n  2\n");
    /* one trailing newline of the template is dropped; CRLF and CR read as LF */
    check_jinja("a\n", "a");
    check_jinja("{{ 'x' }}\n\n", "x\n");
    check_jinja("a\r\nb\rc{% if true %}\r\nd{% endif %}", "a\nb\ncd");
}

static void test_errors(void)
{
    check_error("{{ raise_exception('Nope: ' + 'x') }}", "raise_exception: Nope: x", "1:4");
    check_error("{{ 'a' | frobnicate }}", "unknown filter 'frobnicate'", "1:10");
    check_error("{{ 1 is frobbed }}", "unknown test 'frobbed'", NULL);
    check_error("ab\ncd {{ x ", "chat template 2:4", "unterminated '{{' tag");
    check_error("ab\n{% if true %}", "missing '{% endif %}'", NULL);
    check_error("{% if true ", "1:1", "unterminated '{%' tag");
    check_error("x {# never closed", "1:3", "unterminated comment");
    check_error("{{ 'abc }}", "1:4", "unterminated string literal");
    check_error("{% include 'x' %}", "1:4", "unsupported tag 'include'");
    check_error("{% endfor %}", "unexpected '{% endfor %}'", NULL);
    check_error("{{ foo.bar }}", "'foo' is undefined", NULL);
    check_error("{{ 'a' + 1 }}", "unsupported operand types for '+': string and integer", NULL);
    check_error("{{ 1 // 0 }}", "division by zero", NULL);
    check_error("{{ 'x'.format(1) }}", "unsupported method 'format'", NULL);
    check_error("{{ nosuch(1) }}", "unknown function 'nosuch'", NULL);
    check_error("{{ 1 + }}", "unexpected '}}' in expression", NULL);
    check_error("{% set x.y = 1 %}", "not a namespace()", NULL);
    check_error("{{ @ }}", "unexpected character '@'", NULL);
    check_error("{% break %}", "outside a for loop", NULL);
}

static void test_limits(void)
{
    check_error("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "too much work",
                NULL);
    check_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "nest too deeply", NULL);
    check_error("{{ 'x' * 100000000 }}", "repetition too large", NULL);
    check_error("{{ range(100000000) }}", "more than", NULL);
    check_error("{% for i in range(100) %}{{ 'x' * 1000000 }}{% endfor %}", "rendered text longer than", NULL);
    check_error("{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
                "{% endfor %}", "memory", NULL);
    /* structures nested (or made cyclic) at run time are refused too */
    check_error("{% set l = [1] %}{% set _ = l.append(l) %}{{ l }}", "nests too deeply", NULL);
    check_error("{% set l = [1] %}{% set _ = l.append(l) %}{{ l == l }}", "nests too deeply", NULL);
    check_error("{% set ns = namespace(l=[]) %}{% for i in range(5000) %}{% set ns.l = [ns.l] %}{% endfor %}"
                "{{ ns.l | tojson }}", "nests too deeply", NULL);
    check_error("{% set ns = namespace(a=[], b=[]) %}{% for i in range(5000) %}{% set ns.a = [ns.a] %}"
                "{% set ns.b = [ns.b] %}{% endfor %}{{ ns.a < ns.b }}", "nests too deeply", NULL);
    /* deep nesting is refused before it can exhaust the stack */
    size_t depth = 20000;
    char *t = malloc(2 * depth + 16);
    strcpy(t, "{{ ");
    size_t k = 3;
    for (size_t i = 0; i < depth; i++) t[k++] = '(';
    t[k++] = '1';
    for (size_t i = 0; i < depth; i++) t[k++] = ')';
    strcpy(t + k, " }}");
    check_error(t, "nests too deeply", NULL);
    for (size_t i = 0; i < depth; i++) t[3 + i] = '[';
    check_error(t, "nests too deeply", NULL);
    free(t);
}

/* Limits grow with the input: a long conversation renders in full. */
static void test_long_conversation(void)
{
    enum { N = 2000, LEN = 1000 };
    llm_chat_msg *m = calloc(N, sizeof *m);
    char *text = malloc(LEN + 1);
    memset(text, 'w', LEN);
    text[LEN] = 0;
    for (size_t i = 0; i < N; i++) m[i] = (llm_chat_msg){i % 2 ? "assistant" : "user", text};
    llm_err err = {{0}};
    char *out = render(QWEN2, m, N, "", "", true, LLM_TMPL_JINJA, &err);
    /* default system block + per message "<|im_start|>" role "\n" text "<|im_end|>\n" + generation */
    size_t want = strlen("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n") +
                  N / 2 * (12 + 4 + 1 + LEN + 11) + N / 2 * (12 + 9 + 1 + LEN + 11) + strlen("<|im_start|>assistant\n");
    CHECK_MSG(out && strlen(out) == want, "long conversation: %zu bytes, want %zu (%s)", out ? strlen(out) : 0, want,
              out ? "" : err.msg);
    free(out);
    free(text);
    free(m);

    /* one very long message through a template that copies it several times (Llama 3.2) */
    size_t big = 8u << 20;
    char *huge = malloc(big + 1);
    memset(huge, 'z', big);
    huge[big] = 0;
    llm_chat_msg one[] = {{"user", huge}};
    out = render(LLAMA32, one, 1, "", "", false, LLM_TMPL_JINJA, &err);
    CHECK_MSG(out && strstr(out, "<|start_header_id|>user<|end_header_id|>\n\nzzz") &&
                  strlen(out) > big && strlen(out) < big + 200,
              "8 MB message: %s", out ? "wrong text" : err.msg);
    free(out);
    free(huge);
}

int main(void)
{
    test_shared_models();
    test_families();
    test_modern_templates();
    test_native_matches_interpreter();
    test_fallback();
    test_constructs();
    test_whitespace();
    test_errors();
    test_limits();
    test_long_conversation();
    TEST_END("template");
}
