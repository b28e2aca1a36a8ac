/* gguf_builder: a GGUF writer that owns its tensors' bytes, and the f32 ->
 * any-type conversion used by every path that makes model files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "error.h"
#include "types.h"

doze_status gguf_builder_init(gguf_builder *b, doze_error *err) {
    memset(b, 0, sizeof *b);
    b->w = gguf_writer_new(GGUF_DEFAULT_ALIGNMENT);
    if (!b->w) return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for a GGUF writer");
    return DOZE_OK;
}

void gguf_builder_free(gguf_builder *b) {
    if (!b) return;
    gguf_writer_free(b->w);
    for (size_t i = 0; i < b->n_bufs; i++) free(b->bufs[i]);
    free(b->bufs);
    memset(b, 0, sizeof *b);
}

doze_status gguf_builder_keep(gguf_builder *b, void *p, doze_error *err) {
    if (b->n_bufs == b->cap_bufs) {
        size_t cap = b->cap_bufs ? b->cap_bufs * 2 : 64;
        void **nb = realloc(b->bufs, cap * sizeof *nb);
        if (!nb) {
            free(p);
            return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory");
        }
        b->bufs = nb;
        b->cap_bufs = cap;
    }
    b->bufs[b->n_bufs++] = p;
    return DOZE_OK;
}

doze_status gguf_builder_add_f32(gguf_builder *b, const char *name, uint32_t n_dims,
                                 const uint64_t *ne, const float *values, int type,
                                 doze_error *err) {
    if (!b || !name || !ne || !values || n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "gguf_builder_add_f32: invalid arguments");
    uint64_t rows = 1;
    for (uint32_t i = 1; i < n_dims; i++) {
        if (ne[i] == 0 || rows > UINT64_MAX / ne[i])
            return doze_fail(err, DOZE_ERR_BAD_SHAPE, "tensor %s: dimension %u is %llu", name, i,
                             (unsigned long long)ne[i]);
        rows *= ne[i];
    }
    /* q4_0 models keep the embedding and the classifier in q8_0 (llama.cpp
     * likewise keeps output.weight at higher precision): at 4 bits they
     * cost the most quality for their share of the bytes */
    if (type == DOZE_TYPE_Q4_0 && (strcmp(name, "token_embd.weight") == 0 || strcmp(name, "output.weight") == 0))
        type = DOZE_TYPE_Q8_0;
    const doze_type_traits *t = doze_type_traits_of(type);
    if (!t) return doze_fail(err, DOZE_ERR_UNSUPPORTED_TYPE, "cannot convert to type %d", type);
    if (n_dims < 2 || ne[0] % (uint64_t)t->block_size != 0) t = doze_type_traits_of(DOZE_TYPE_F32);
    uint64_t row_bytes = doze_type_row_bytes(t->type, ne[0]);
    /* sizes in uint64, checked against size_t (32 bits in wasm) before malloc */
    if (ne[0] == 0 || row_bytes == 0 || rows > SIZE_MAX / row_bytes)
        return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "tensor %s: %llu rows of %llu bytes do not fit in memory",
                         name, (unsigned long long)rows, (unsigned long long)row_bytes);
    void *data = malloc((size_t)(row_bytes * rows));
    if (!data)
        return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for tensor %s", name);
    for (uint64_t r = 0; r < rows; r++)
        t->quantize_row(values + r * ne[0], (uint8_t *)data + r * row_bytes, (int64_t)ne[0]);
    doze_status st = gguf_builder_keep(b, data, err);
    if (st != DOZE_OK) return st;
    return gguf_writer_add_tensor(b->w, name, (uint32_t)t->type, n_dims, ne, data, err);
}

doze_status gguf_builder_set_arch(gguf_builder *b, const char *arch, const char *name, int dim, int hidden_dim,
                                  int n_layers, int n_heads, int n_kv_heads, int head_dim, int context_length,
                                  float rope_theta, doze_error *err) {
    doze_status st;
    gguf_writer *w = b->w;
    if (dim <= 0 || n_heads <= 0 || (head_dim == 0 && dim % n_heads != 0))
        return doze_fail(err, DOZE_ERR_BAD_SHAPE, "%d heads do not divide dim %d", n_heads, dim);
    char key[96];
#define KEY(suffix) (snprintf(key, sizeof key, "%s." suffix, arch), key)
    if ((st = gguf_writer_set_str(w, "general.architecture", arch, err))) return st;
    if ((st = gguf_writer_set_str(w, "general.name", name, err))) return st;
    if ((st = gguf_writer_set_u32(w, KEY("context_length"), (uint32_t)context_length, err))) return st;
    if ((st = gguf_writer_set_u32(w, KEY("embedding_length"), (uint32_t)dim, err))) return st;
    if ((st = gguf_writer_set_u32(w, KEY("block_count"), (uint32_t)n_layers, err))) return st;
    if ((st = gguf_writer_set_u32(w, KEY("feed_forward_length"), (uint32_t)hidden_dim, err))) return st;
    if ((st = gguf_writer_set_u32(w, KEY("attention.head_count"), (uint32_t)n_heads, err))) return st;
    if ((st = gguf_writer_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)n_kv_heads, err))) return st;
    const float eps = strcmp(arch, "llama") == 0 ? 1e-5f : 1e-6f;
    if ((st = gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), eps, err))) return st;
    if ((st = gguf_writer_set_f32(w, KEY("rope.freq_base"), rope_theta, err))) return st;
    if (head_dim) {
        if ((st = gguf_writer_set_u32(w, KEY("attention.key_length"), (uint32_t)head_dim, err))) return st;
        if ((st = gguf_writer_set_u32(w, KEY("attention.value_length"), (uint32_t)head_dim, err))) return st;
    }
    st = gguf_writer_set_u32(w, KEY("rope.dimension_count"), (uint32_t)(head_dim ? head_dim : dim / n_heads), err);
#undef KEY
    return st;
}

doze_status gguf_builder_set_llama(gguf_builder *b, const char *name, int dim, int hidden_dim, int n_layers,
                                   int n_heads, int n_kv_heads, int context_length, doze_error *err) {
    return gguf_builder_set_arch(b, "llama", name, dim, hidden_dim, n_layers, n_heads, n_kv_heads, 0, context_length,
                                 10000.0f, err);
}

doze_status gguf_builder_set_experts(gguf_builder *b, const char *arch, int n_experts, int k, int expert_hidden,
                                     doze_error *err) {
    char key[64];
    snprintf(key, sizeof key, "%s.expert_count", arch);
    doze_status st = gguf_writer_set_u32(b->w, key, (uint32_t)n_experts, err);
    snprintf(key, sizeof key, "%s.expert_used_count", arch);
    if (st == DOZE_OK) st = gguf_writer_set_u32(b->w, key, (uint32_t)k, err);
    snprintf(key, sizeof key, "%s.expert_feed_forward_length", arch);
    if (st == DOZE_OK && expert_hidden > 0) st = gguf_writer_set_u32(b->w, key, (uint32_t)expert_hidden, err);
    return st;
}

doze_status gguf_builder_set_tokenizer(gguf_builder *b, int n, const char *const *pieces,
                                       const float *scores, const int32_t *types, int bos, int eos,
                                       int unk, doze_error *err) {
    doze_status st;
    gguf_writer *w = b->w;
    if ((st = gguf_writer_set_str(w, "tokenizer.ggml.model", "llama", err))) return st;
    if ((st = gguf_writer_set_arr(w, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, (uint64_t)n, pieces,
                                  err)))
        return st;
    if ((st = gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, (uint64_t)n, scores,
                                  err)))
        return st;
    if ((st = gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, (uint64_t)n,
                                  types, err)))
        return st;
    if ((st = gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)bos, err))) return st;
    if ((st = gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eos, err))) return st;
    if ((st = gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)unk, err))) return st;
    return gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", 1, err);
}
