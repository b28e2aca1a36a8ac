/* The model's string-valued GGUF metadata, kept after load so that callers
 * can read keys the runtime itself does not use (tokenizer.chat_template,
 * general.name, ...). Arrays (the vocabulary) are not kept: only strings,
 * packed as "key\0value\0" pairs in one allocation. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "model.h"

doze_status model_meta_from_gguf(const gguf_header *h, char **out, size_t *n, doze_error *err) {
    *out = NULL;
    *n = 0;
    size_t bytes = 0;
    for (uint64_t i = 0; i < h->n_kv; i++) {
        const gguf_kv *kv = &h->kv[i];
        if (kv->value.type != GGUF_TYPE_STRING) continue;
        /* a value holding a NUL is kept up to it (callers get C strings) */
        bytes += strlen(kv->key.data) + 1 + strlen(kv->value.v.str.data) + 1;
    }
    if (!bytes) return DOZE_OK;
    char *p = malloc(bytes);
    if (!p) return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for %zu bytes of metadata strings", bytes);
    size_t at = 0;
    for (uint64_t i = 0; i < h->n_kv; i++) {
        const gguf_kv *kv = &h->kv[i];
        if (kv->value.type != GGUF_TYPE_STRING) continue;
        size_t kl = strlen(kv->key.data) + 1, vl = strlen(kv->value.v.str.data) + 1;
        memcpy(p + at, kv->key.data, kl);
        memcpy(p + at + kl, kv->value.v.str.data, vl);
        at += kl + vl;
    }
    *out = p;
    *n = bytes;
    return DOZE_OK;
}

const char *doze_model_meta_string(const doze_model *m, const char *key) {
    if (!m || !key || !m->meta) return NULL;
    const char *p = m->meta, *end = m->meta + m->meta_bytes;
    while (p < end) {
        const char *value = p + strlen(p) + 1;
        if (strcmp(p, key) == 0) return value;
        p = value + strlen(value) + 1;
    }
    return NULL;
}
