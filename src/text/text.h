/*
 * text — tokenizers and the streaming detokenizer.
 *
 * A vocabulary is read from the tokenizer.* metadata of a GGUF file and turns text into the
 * token ids the model was trained on, exactly as the model's original tokenizer does:
 *   - SentencePiece BPE ("llama"): score-ordered merges, "▁" for spaces, a leading-space
 *     prefix, <0xNN> byte fallback;
 *   - byte-level BPE ("gpt2"): the pre-tokenizer regex named by tokenizer.ggml.pre, bytes
 *     mapped to printable characters, merges by rank;
 *   - WordPiece ("bert"): lowercasing, accent stripping, punctuation splitting, greedy
 *     longest match with "##" continuations.
 * Text is untrusted: any bytes (invalid UTF-8, NUL) are accepted and tokenized in time
 * O(n log n); nothing crashes.
 *
 * The vocabulary copies what it needs out of the GGUF buffer, so the gguf_file may be freed
 * after llm_vocab_load. A loaded vocabulary is read-only: several threads may tokenize with
 * it at once.
 */
#ifndef LLMAP_TEXT_H
#define LLMAP_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "util/util.h"

typedef struct llm_vocab llm_vocab;

typedef enum llm_vocab_kind {
    LLM_VOCAB_SPM = 1, /* tokenizer.ggml.model = "llama" */
    LLM_VOCAB_BPE = 2, /* "gpt2" */
    LLM_VOCAB_WPM = 3, /* "bert" */
} llm_vocab_kind;

/* tokenizer.ggml.token_type values (as in the GGUF spec / llama.cpp). */
typedef enum llm_token_type {
    LLM_TOKEN_UNDEFINED = 0,
    LLM_TOKEN_NORMAL = 1,
    LLM_TOKEN_UNKNOWN = 2,
    LLM_TOKEN_CONTROL = 3,      /* <s>, </s>, <|im_start|>...: never produced from plain text */
    LLM_TOKEN_USER_DEFINED = 4, /* added tokens: matched in text like the originals do */
    LLM_TOKEN_UNUSED = 5,
    LLM_TOKEN_BYTE = 6,         /* <0xNN> */
} llm_token_type;

/* Loads the tokenizer of f (tokenizer.ggml.model, tokens, scores, token_type, merges, pre,
 * special ids, add_bos/add_eos). Returns 0, or -1 with err naming the key and problem.
 * An unknown tokenizer.ggml.pre falls back to the gpt-2 regex with a warning on stderr. */
int llm_vocab_load(const gguf_file *f, llm_vocab **out, llm_err *err);
/* The same from a GGUF file's path: maps and parses it just long enough to load the tokenizer
 * (the vocabulary keeps its own copies). Returns 0, or -1 with err naming the file. */
int llm_vocab_load_file(const char *path, llm_vocab **out, llm_err *err);
void llm_vocab_free(llm_vocab *v);

llm_vocab_kind llm_vocab_kind_of(const llm_vocab *v);
const char *llm_vocab_pre(const llm_vocab *v); /* tokenizer.ggml.pre, "" when absent */
int32_t llm_vocab_n(const llm_vocab *v);
/* Special ids, -1 when the vocabulary has none. */
int32_t llm_vocab_bos(const llm_vocab *v);
int32_t llm_vocab_eos(const llm_vocab *v);
int32_t llm_vocab_eot(const llm_vocab *v); /* end of turn (<|eot_id|>, <|im_end|>, ...) */
int32_t llm_vocab_unk(const llm_vocab *v);
int32_t llm_vocab_pad(const llm_vocab *v);
int32_t llm_vocab_sep(const llm_vocab *v);
/* Whether add_special tokenization prepends BOS / appends EOS (tokenizer.ggml.add_*_token,
 * defaulting as llama.cpp does). */
bool llm_vocab_add_bos(const llm_vocab *v);
bool llm_vocab_add_eos(const llm_vocab *v);

/* End of generation: EOS, EOT, or another control token that ends a turn. */
bool llm_token_is_eog(const llm_vocab *v, int32_t id);
llm_token_type llm_token_type_of(const llm_vocab *v, int32_t id); /* UNDEFINED when out of range */
/* Control and unknown tokens: rendered as empty text unless asked for. */
bool llm_token_is_control(const llm_vocab *v, int32_t id);
/* The token's text as stored in the vocabulary ("▁Hello", "Ġworld", "<0x0A>", "##ing"),
 * NUL-terminated; NULL when id is out of range. *len (may be NULL) receives its length. */
const char *llm_token_text(const llm_vocab *v, int32_t id, size_t *len);
/* Exact lookup of a vocabulary string; -1 when absent. */
int32_t llm_vocab_find(const llm_vocab *v, const char *text, size_t len);

/* Text to ids. ids is malloc'd (caller frees; may be NULL when *n == 0).
 * add_special: BOS/EOS as the vocabulary's add_bos/add_eos say.
 * parse_special: control tokens written as text ("<|im_start|>") become their ids; without
 * it they are tokenized as ordinary text. User-defined (added) tokens are always matched,
 * as the original tokenizers do. Returns 0, or -1 with err (only on absurd sizes). */
int llm_tokenize(const llm_vocab *v, const char *text, size_t len, bool add_special,
                 bool parse_special, int32_t **ids, size_t *n, llm_err *err);

/* The bytes token id stands for: "▁"→" " (SPM), <0xNN>→the byte, GPT-2 byte characters→bytes,
 * WordPiece "##x"→"x" and other words→" word". Control/unknown tokens give their text only
 * when special is true, otherwise nothing. Writes at most cap bytes (no NUL) and returns the
 * full length, like snprintf: call again with a larger buffer when the result exceeds cap.
 * May be an incomplete UTF-8 sequence (a single byte token). */
size_t llm_token_to_piece(const llm_vocab *v, int32_t id, char *buf, size_t cap, bool special);

/* Flags for decoding. */
enum {
    LLM_DETOK_SPECIAL = 1,     /* render control tokens as their text */
    LLM_DETOK_STRIP_SPACE = 2, /* drop the leading space the tokenizer added (SPM "▁" prefix,
                                  WordPiece word separator) from the first piece: use when
                                  decoding a whole prompt, not when continuing a stream */
};

/* Ids back to bytes, appended to out (raw: no UTF-8 repair, no clean_up_tokenization_spaces).
 * Returns bytes appended. With LLM_DETOK_STRIP_SPACE, detokenize(tokenize(x)) == x for SPM on
 * any bytes without a literal "▁", and for byte-level BPE on valid UTF-8 (invalid bytes come
 * back as U+FFFD); WordPiece lowercases and drops accents, so it is not reversible. */
size_t llm_detokenize(const llm_vocab *v, const int32_t *ids, size_t n, unsigned flags, llm_buf *out);

/* Streaming detokenizer for generation: each pushed token appends only complete UTF-8
 * characters to out; a multi-byte character split across byte tokens is held back until
 * the token completing it arrives. Bytes that can never form a valid character are
 * replaced by U+FFFD, so the output is always valid UTF-8 (safe for JSON/SSE). */
typedef struct llm_detok {
    const llm_vocab *v;
    unsigned flags;
    bool first;             /* no piece emitted yet (for LLM_DETOK_STRIP_SPACE) */
    unsigned char pend[4];  /* an incomplete UTF-8 sequence carried to the next token */
    size_t n_pend;
} llm_detok;

void llm_detok_init(llm_detok *d, const llm_vocab *v, unsigned flags);
/* Appends the complete characters now available; returns bytes appended to out. */
size_t llm_detok_push(llm_detok *d, int32_t id, llm_buf *out);
/* End of stream: an incomplete sequence still held becomes U+FFFD. Returns bytes appended. */
size_t llm_detok_flush(llm_detok *d, llm_buf *out);

/* Benchmark (src/bench/tokenize.c): tokenizes ~1 MB of text with each vocabulary found under
 * shared_dir/models/vocab (one per tokenizer kind) and prints tokens/s. Returns 0 or -1. */
int llm_bench_tokenize(const char *shared_dir, llm_err *err);

#endif
