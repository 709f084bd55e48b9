/*
 * llmap tokenize MODEL TEXT [--ids] [--no-bos] [--special] — how a model's tokenizer cuts a
 * text, for debugging prompts and templates: one line per token with its id, the vocabulary
 * string and the bytes it decodes to. MODEL is a GGUF path or a store name; TEXT "-" reads
 * standard input.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "store/store.h"
#include "text/text.h"

static const char USAGE[] =
    "llmap tokenize MODEL TEXT [--ids] [--no-bos] [--special]\n"
    "  TEXT       the text to tokenize (\"-\" reads standard input)\n"
    "  --ids      print only the ids, space separated\n"
    "  --no-bos   do not add BOS/EOS even when the model's metadata asks for them\n"
    "  --special  parse control tokens written in the text (<|im_start|>, <s>, ...)";

static char *read_stdin(size_t *len)
{
    llm_buf b = {0};
    llm_buf_append_file(&b, stdin);
    *len = b.len;
    if (!b.data)
        return llm_xstrdup("");
    return b.data;
}

/* Length of the valid UTF-8 character at s[0..n), 0 when there is none. */
static size_t utf8_char_len(const unsigned char *s, size_t n)
{
    size_t len = s[0] < 0x80 ? 1 : (s[0] >> 5) == 6 ? 2 : (s[0] >> 4) == 14 ? 3 : (s[0] >> 3) == 30 ? 4 : 0;
    if (len == 0 || len > n)
        return 0;
    for (size_t k = 1; k < len; k++)
        if ((s[k] & 0xC0) != 0x80)
            return 0;
    return len;
}

/* Prints bytes visibly: printable text as is, control characters as \n, \t, \xNN, and bytes
 * that are not part of a valid UTF-8 character (a lone byte token) as \xNN. */
static void print_escaped(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        size_t l = utf8_char_len(s + i, n - i);
        if (c == '\n')
            fputs("\\n", stdout);
        else if (c == '\t')
            fputs("\\t", stdout);
        else if (c == '\\')
            fputs("\\\\", stdout);
        else if (c < 0x20 || c == 0x7F || l == 0)
            printf("\\x%02X", c);
        else {
            fwrite(s + i, 1, l, stdout);
            i += l;
            continue;
        }
        i++;
    }
}

static int load_vocab(const char *model, llm_vocab **v, llm_err *err)
{
    char *path = NULL;
    if (access(model, R_OK) == 0) {
        path = llm_xstrdup(model); /* a file: no need to open (or create) the store */
    } else {
        llm_store *store = NULL;
        if (llm_store_open(&store, NULL, err) || llm_store_resolve(store, model, &path, err)) {
            llm_store_close(store);
            return -1;
        }
        llm_store_close(store);
    }
    int rc = llm_vocab_load_file(path, v, err);
    free(path);
    return rc;
}

int cmd_tokenize(int argc, char **argv)
{
    static const struct option opts[] = {{"ids", no_argument, NULL, 'i'},
                                         {"no-bos", no_argument, NULL, 'b'},
                                         {"special", no_argument, NULL, 's'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    bool ids_only = false, add_special = true, parse_special = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'i': ids_only = true; break;
        case 'b': add_special = false; break;
        case 's': parse_special = true; break;
        case 'h': printf("usage: %s\n", USAGE); return 0;
        default: return cli_usage(USAGE);
        }
    }
    if (argc - optind != 2)
        return cli_usage(USAGE);
    const char *model = argv[optind], *arg = argv[optind + 1];

    llm_err err;
    llm_vocab *v = NULL;
    if (load_vocab(model, &v, &err))
        return cli_fail("tokenize", "%s", err.msg);
    size_t len = 0;
    char *text = strcmp(arg, "-") == 0 ? read_stdin(&len) : llm_xstrdup(arg);
    if (strcmp(arg, "-") != 0)
        len = strlen(text);
    int32_t *ids;
    size_t n;
    if (llm_tokenize(v, text, len, add_special, parse_special, &ids, &n, &err)) {
        free(text);
        llm_vocab_free(v);
        return cli_fail("tokenize", "%s", err.msg);
    }
    if (ids_only) {
        for (size_t i = 0; i < n; i++)
            printf(i ? " %d" : "%d", ids[i]);
        printf("\n");
    } else {
        for (size_t i = 0; i < n; i++) {
            size_t tl;
            const char *tt = llm_token_text(v, ids[i], &tl);
            char piece[512];
            size_t pl = llm_token_to_piece(v, ids[i], piece, sizeof piece, true);
            printf("%8d  ", ids[i]);
            print_escaped(tt, tl);
            printf("  \"");
            print_escaped(piece, pl < sizeof piece ? pl : sizeof piece);
            printf("\"%s\n", llm_token_is_control(v, ids[i]) ? "  (control)" : "");
        }
        printf("%zu tokens, %zu bytes\n", n, len);
    }
    free(ids);
    free(text);
    llm_vocab_free(v);
    return 0;
}
