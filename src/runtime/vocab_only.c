/* A tokenizer on its own (doze_vocab): read from a GGUF's metadata only, so
 * that vocabulary-only files (no tensors) and the header of any model file
 * can tokenize without loading weights. */
#include <stdlib.h>

#include "doze.h"
#include "error.h"
#include "gguf.h"
#include "tokenizer.h"

struct doze_vocab {
    doze_tokenizer *tok;
};

doze_status doze_vocab_load(const void *bytes, size_t n, doze_vocab **out, doze_error *err) {
    if (!out) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "doze_vocab_load: out is NULL");
    *out = NULL;
    if (!bytes && n) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "doze_vocab_load: no bytes");
    gguf_header h;
    doze_status st = gguf_parse_header(bytes, n, &h, err);
    if (st != DOZE_OK) return st;
    doze_tokenizer *t = NULL;
    st = tokenizer_from_gguf(&h, &t, err);
    gguf_header_free(&h);
    if (st != DOZE_OK) return st;
    doze_vocab *v = malloc(sizeof *v);
    if (!v) {
        tokenizer_free(t);
        return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for the vocabulary");
    }
    v->tok = t;
    *out = v;
    return DOZE_OK;
}

void doze_vocab_free(doze_vocab *v) {
    if (!v) return;
    tokenizer_free(v->tok);
    free(v);
}

int doze_vocab_size(const doze_vocab *v) { return v ? tokenizer_vocab_size(v->tok) : 0; }

doze_status doze_vocab_tokenize(const doze_vocab *v, const char *text, size_t len, int flags,
                                int32_t *out, int cap, int *n_out, doze_error *err) {
    if (!v || (!text && len)) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no vocabulary or text");
    return tokenizer_encode(v->tok, text ? text : "", len, flags, out, cap, n_out, err);
}

doze_status doze_vocab_token_to_piece(const doze_vocab *v, int prev, int token, char *buf,
                                      size_t cap, size_t *len, doze_error *err) {
    if (!v) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no vocabulary");
    return tokenizer_decode(v->tok, prev, token, buf, cap, len, err);
}

int doze_vocab_is_eog(const doze_vocab *v, int token) {
    return v ? tokenizer_is_eog(v->tok, token) : 0;
}
