/* Builds seeded random models in memory (doze init's code path) for tests. */
#ifndef DOZE_MODEL_FIXTURE_H
#define DOZE_MODEL_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/convert.h"
#include "../../src/doze.h"

typedef struct {
    unsigned char *data;
    size_t len, cap;
} mem_buf;

static int mem_write(void *ctx, const void *p, size_t n) {
    mem_buf *b = ctx;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        unsigned char *nd = realloc(b->data, cap);
        if (!nd) return 1;
        b->data = nd;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

/* A GGUF file of a random model in memory; data NULL on failure. */
static mem_buf fixture_gguf(int dim, int hidden, int layers, int heads, int kv_heads, int vocab,
                            int ctx, uint64_t seed, int type) {
    mem_buf out = {NULL, 0, 0};
    doze_init_params p = {dim, hidden, layers, heads, kv_heads, vocab, ctx, seed, type};
    gguf_builder b;
    doze_error e;
    if (gguf_builder_init(&b, &e) != DOZE_OK) return out;
    if (convert_init_random(&p, &b, &e) != DOZE_OK ||
        gguf_writer_write(b.w, mem_write, &out, &e) != DOZE_OK) {
        fprintf(stderr, "fixture: %s\n", e.message);
        free(out.data);
        out.data = NULL;
    }
    gguf_builder_free(&b);
    return out;
}

#endif
