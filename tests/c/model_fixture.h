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

/* A GGUF file of the random model `p` describes, in memory; data NULL on failure. */
static inline mem_buf fixture_from_params(const doze_init_params *p) {
    mem_buf out = {NULL, 0, 0};
    gguf_builder b;
    doze_error e;
    if (gguf_builder_init(&b, &e) != DOZE_OK) return out;
    if (convert_init_random(p, &b, &e) != DOZE_OK || gguf_writer_write(b.w, mem_write, &out, &e) != DOZE_OK) {
        fprintf(stderr, "fixture: %s\n", e.message);
        free(out.data);
        out.data = NULL;
    }
    gguf_builder_free(&b);
    return out;
}

/* A dense llama model of random weights. */
static inline mem_buf fixture_gguf(int dim, int hidden, int layers, int heads, int kv_heads, int vocab,
                            int ctx, uint64_t seed, int type) {
    doze_init_params p = {dim, hidden, layers, heads, kv_heads, vocab, ctx, seed, type, NULL, 0, 0, 0.0f, 0, 0};
    return fixture_from_params(&p);
}

/* A mixture of experts (arch "llama" with expert_count, or "qwen3moe"):
 * `experts` experts of `hidden` channels each, top `used`. */
static inline mem_buf fixture_moe_gguf(const char *arch, int dim, int hidden, int layers, int heads, int kv_heads, int vocab,
                                int ctx, uint64_t seed, int type, int experts, int used) {
    doze_init_params p = {dim, hidden, layers, heads, kv_heads, vocab, ctx, seed, type, arch, 0, 0, 0.0f,
                          experts, used};
    return fixture_from_params(&p);
}

#endif
