/*
 * vocab — a built-in tokenizer for synthetic models when no vocabulary file is at hand (a fresh
 * clone without ../shared): SentencePiece-style ("llama") with <unk>, <s>, </s>, the 256 byte
 * tokens every SPM vocabulary falls back to, "▁" and the printable ASCII characters. Any text
 * tokenizes (bytes beyond ASCII through the byte tokens) and detokenizes back, which is all a
 * demo of loading, chat and generation needs.
 */
#include <stdio.h>
#include <string.h>

#include "gguf/gguf.h"
#include "synth/synth.h"

enum { N_SPECIAL = 3, N_BYTES = 256, N_ASCII = 95 /* ' ' as "▁", then '!'..'~' */ };

int llm_synth_builtin_vocab(const char *path, llm_err *err)
{
    enum { N = N_SPECIAL + N_BYTES + N_ASCII };
    static char texts[N][8];
    const char *tokens[N];
    float scores[N];
    int32_t types[N];
    static const char *special[N_SPECIAL] = {"<unk>", "<s>", "</s>"};
    for (int i = 0; i < N; i++) {
        if (i < N_SPECIAL) {
            snprintf(texts[i], sizeof texts[i], "%s", special[i]);
            types[i] = i == 0 ? 2 : 3; /* unknown, control */
        } else if (i < N_SPECIAL + N_BYTES) {
            snprintf(texts[i], sizeof texts[i], "<0x%02X>", i - N_SPECIAL);
            types[i] = 6; /* byte */
        } else {
            int c = ' ' + (i - N_SPECIAL - N_BYTES);
            if (c == ' ')
                snprintf(texts[i], sizeof texts[i], "\xe2\x96\x81"); /* ▁ */
            else
                snprintf(texts[i], sizeof texts[i], "%c", c);
            types[i] = 1; /* normal */
        }
        tokens[i] = texts[i];
        scores[i] = types[i] == 1 ? -(float)(i - N_SPECIAL - N_BYTES) : 0.0f;
    }
    gguf_writer *w = gguf_writer_new(0);
    gguf_w_str(w, "general.architecture", "llama");
    gguf_w_str(w, "general.name", "llmap-builtin-vocab");
    gguf_w_str(w, "tokenizer.ggml.model", "llama");
    gguf_w_str(w, "tokenizer.ggml.pre", "default");
    gguf_w_arr_str(w, "tokenizer.ggml.tokens", tokens, N);
    gguf_w_arr(w, "tokenizer.ggml.scores", GGUF_F32, scores, N);
    gguf_w_arr(w, "tokenizer.ggml.token_type", GGUF_I32, types, N);
    gguf_w_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    gguf_w_u32(w, "tokenizer.ggml.bos_token_id", 1);
    gguf_w_u32(w, "tokenizer.ggml.eos_token_id", 2);
    gguf_w_bool(w, "tokenizer.ggml.add_bos_token", true);
    gguf_w_bool(w, "tokenizer.ggml.add_eos_token", false);
    int rc = gguf_writer_write(w, path, NULL, NULL, err);
    gguf_writer_free(w);
    return rc;
}
