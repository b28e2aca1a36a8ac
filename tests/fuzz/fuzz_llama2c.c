/* libFuzzer target: the llama2.c importer (checkpoint + tokenizer.bin).
 *
 * Input: u16 little-endian length L of the tokenizer.bin part, then L bytes
 * of tokenizer.bin, then the checkpoint. The importer's output (when there
 * is one) is written as GGUF and loaded back. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "byte_buffer.h"
#include "convert.h"
#include "doze.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    size_t tl = (size_t)data[0] | (size_t)data[1] << 8;
    if (tl > size - 2) tl = size - 2;
    const uint8_t *tok = data + 2, *ck = data + 2 + tl;
    size_t ckn = size - 2 - tl;
    /* copies, so that ASan sees reads past the ends of each part */
    uint8_t *tc = malloc(tl ? tl : 1), *cc = malloc(ckn ? ckn : 1);
    if (!tc || !cc) __builtin_trap();
    memcpy(tc, tok, tl);
    memcpy(cc, ck, ckn);
    gguf_builder b;
    doze_error e;
    if (gguf_builder_init(&b, &e) != DOZE_OK) __builtin_trap();
    int type = (data[0] & 3) == 1 ? DOZE_TYPE_F16 : (data[0] & 3) == 2 ? DOZE_TYPE_Q8_0 : DOZE_TYPE_F32;
    doze_status st = convert_llama2c(cc, ckn, tc, tl, type, "fuzz", &b, &e);
    if (st != DOZE_OK && (e.code != (int)st || !e.message[0])) __builtin_trap();
    if (st == DOZE_OK) {
        doze_byte_buffer out = {NULL, 0, 0};
        if (gguf_writer_write(b.w, doze_byte_buffer_write, &out, &e) != DOZE_OK) __builtin_trap();
        doze_model_params p = doze_model_default_params();
        p.context_length = 2;
        doze_model *m = NULL;
        st = doze_model_load_memory(out.data, out.len, &p, &m, &e);
        if (st != DOZE_OK && (e.code != (int)st || !e.message[0])) __builtin_trap();
        if (m) {
            doze_session *s = doze_session_new(m, &e);
            if (s && doze_session_step(s, 1, &e) != DOZE_OK) __builtin_trap();
            doze_session_free(s);
            doze_model_free(m);
        }
        free(out.data);
    }
    gguf_builder_free(&b);
    free(tc);
    free(cc);
    return 0;
}
