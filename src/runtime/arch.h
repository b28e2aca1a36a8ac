/* The architectures Doze runs, as data: each one's GGUF keys (prefixed by
 * its name), its tensors with their shapes and which are optional, and the
 * switches of its block (RoPE style, Q/K/V biases, per-head q/k norms).
 * llama.cpp's llama-arch.cpp is the reference for names and conventions. */
#ifndef DOZE_ARCH_H
#define DOZE_ARCH_H

#include <stdint.h>

#include "doze.h"
#include "gguf.h"

/* How RoPE pairs a head's dimensions (llama.cpp's rope types). */
typedef enum {
    ROPE_ADJACENT = 0, /* (2i, 2i + 1): llama ("NORM") */
    ROPE_NEOX = 1      /* (i, i + rope_dim / 2): qwen2, qwen3 */
} doze_rope_style;

typedef struct {
    const char *name;      /* general.architecture */
    doze_rope_style rope;
    int qkv_bias;          /* 1: attn_q/k/v.bias required; 0: loaded when present */
    int qk_norm;           /* attn_q_norm / attn_k_norm (head_dim) required */
    int experts;           /* ARCH_DENSE, ARCH_MOE_OPTIONAL (expert_count > 0 makes it
                              MoE), ARCH_MOE (always) */
} doze_arch;

enum { ARCH_DENSE = 0, ARCH_MOE_OPTIONAL = 1, ARCH_MOE = 2 };

/* NULL for an architecture Doze does not run. */
const doze_arch *arch_find(const char *name);
/* "llama", "qwen2", "qwen3", "qwen3moe": the names arch_find knows, for messages. */
const char *arch_names(void);

/* A tensor the model reads: rows == 0 is a vector of cols; experts > 0 a
 * stack of that many (rows, cols) matrices (GGUF ne = {cols, rows, experts}),
 * each expert's matrix contiguous. */
typedef struct {
    char name[64];
    uint64_t cols, rows, experts;
} tensor_spec;

/* The tensors of a model with this config, in arena order (the order a step
 * reads them). Writes up to cap specs; returns how many there are. */
int arch_tensor_specs(const doze_model_info *c, tensor_spec *s, int cap);

/* NEOX RoPE as adjacent pairs: the rows of each head of a Q or K
 * projection (or the entries of its bias / norm weight) reordered so that
 * dimension i and i + rope_dim / 2 become neighbours 2i and 2i + 1. Q and K
 * get the same order, so q.k and the attention are unchanged, and the
 * adjacent-pair RoPE kernel then rotates exactly NEOX's pairs. data: n_rows
 * rows of row_bytes (n_rows a multiple of head_dim); tmp: head_dim *
 * row_bytes bytes. */
void arch_neox_to_adjacent(uint8_t *data, uint64_t n_rows, uint64_t row_bytes, int head_dim, int rope_dim,
                           uint8_t *tmp);
/* The inverse (a trained model written back in its file's NeoX order). */
void arch_adjacent_to_neox(uint8_t *data, uint64_t n_rows, uint64_t row_bytes, int head_dim, int rope_dim,
                           uint8_t *tmp);
/* Whether a tensor's rows (or a vector's entries) are rotated by RoPE per
 * head: q and k, their biases and their norms. */
int arch_rotated_by_rope(const char *tensor_name);

/* The layer of a tensor named "blk.N.rest" (*rest: "rest"), or -1 for any
 * other name. */
int arch_layer_of(const char *tensor_name, const char **rest);

/* The integer key "ARCH.name" of the file's own architecture
 * (general.architecture), e.g. name "block_count" -> qwen2.block_count. */
doze_status arch_get_int(const gguf_header *h, const char *name, int64_t *out, doze_error *err);

#endif
