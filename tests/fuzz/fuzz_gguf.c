/*
 * libFuzzer target for the GGUF reader: any byte string either parses into a structure whose
 * every pointer lies inside the input, or is rejected with a message naming an offset.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gguf_file f;
    llm_err err;
    if (gguf_parse(&f, "fuzz.gguf", data, size, &err)) {
        if (!strstr(err.msg, "fuzz.gguf: offset "))
            abort(); /* every rejection names the file and an offset */
        return 0;
    }
    volatile uint8_t sink = 0;
    for (uint64_t i = 0; i < f.n_tensors; i++) {
        const gguf_tensor *t = &f.tensors[i];
        if (gguf_find_tensor(&f, t->name) != t)
            abort();
        if (t->size) {
            sink ^= ((const uint8_t *)t->data)[0];
            sink ^= ((const uint8_t *)t->data)[t->size - 1];
        }
    }
    for (uint64_t i = 0; i < f.n_kv; i++) {
        const gguf_kv *kv = &f.kv[i];
        if (kv->type == GGUF_ARRAY && kv->arr_type != GGUF_STRING && kv->arr_n)
            sink ^= (uint8_t)gguf_arr_i64(kv, kv->arr_n - 1);
        if (kv->type == GGUF_ARRAY && kv->arr_type == GGUF_STRING && kv->arr_n && kv->arr_str[0].len)
            sink ^= (uint8_t)kv->arr_str[kv->arr_n - 1].ptr[0];
        char *s = gguf_get_str(&f, kv->key, NULL);
        free(s);
    }
    (void)sink;
    gguf_check_arch(&f, &err);
    gguf_free(&f);
    return 0;
}
