/* Builds seeded random models in memory (doze init's code path) for tests. */
#ifndef DOZE_MODEL_FIXTURE_H
#define DOZE_MODEL_FIXTURE_H

#include "byte_buffer.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "doze.h"

typedef doze_byte_buffer mem_buf;
#define mem_write doze_byte_buffer_write

/* A GGUF file of a random model in memory; data NULL on failure. */
static mem_buf fixture_gguf(int dim, int hidden, int layers, int heads, int kv_heads, int vocab,
                            int ctx, uint64_t seed, int type) {
    mem_buf out = {NULL, 0, 0};
    doze_init_params p = {dim, hidden, layers, heads, kv_heads, vocab, ctx, seed, type, NULL, 0, 0, 0.0f};
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
