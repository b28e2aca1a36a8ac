/* Internal view of a model: config, weights (read-only after load), the
 * tokenizer, and the kernel table. Shared by the loader, the forward pass,
 * the converter and the CLI. */
#ifndef DOZE_MODEL_H
#define DOZE_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "doze.h"
#include "gguf.h"
#include "kernels/kernels.h"
#include "tokenizer.h"

/* A weight matrix W(rows, cols) stored row-major in `type`: GGUF ne = {cols, rows}. */
typedef struct {
    int type;
    int rows;
    int cols;
    const void *data;
} doze_matrix;

typedef struct {
    const float *attn_norm; /* (dim) */
    doze_matrix wq;         /* (n_heads * head_dim, dim) */
    doze_matrix wk;         /* (n_kv_heads * head_dim, dim) */
    doze_matrix wv;         /* (n_kv_heads * head_dim, dim) */
    doze_matrix wo;         /* (dim, n_heads * head_dim) */
    const float *ffn_norm;  /* (dim) */
    doze_matrix w_gate;     /* (hidden_dim, dim) */
    doze_matrix w_up;       /* (hidden_dim, dim) */
    doze_matrix w_down;     /* (dim, hidden_dim) */
} doze_layer;

struct doze_model {
    doze_model_info info;
    const doze_kernels *kern;
    doze_matrix token_embd; /* (vocab_size, dim) */
    doze_layer *layers;     /* (n_layers) */
    const float *output_norm; /* (dim) */
    doze_matrix output;     /* (vocab_size, dim); token_embd when tied */
    doze_tokenizer *tok;    /* NULL when the file has no tokenizer */
    float *rope_cos;        /* (context_length, rope_dim / 2) */
    float *rope_sin;        /* (context_length, rope_dim / 2) */
    uint8_t *arena;         /* all tensor bytes, each tensor 64-byte aligned */
    size_t arena_size;
};

/* The model configuration read from a GGUF header (llama architecture),
 * validated. Fills info (without sizes of weights). */
doze_status model_config_from_gguf(const gguf_header *h, const doze_model_params *p,
                                   doze_model_info *info, doze_error *err);

/* Where each tensor the model needs goes: filled by model_plan(). */
typedef struct {
    const gguf_tensor *src; /* the tensor in the header */
    size_t arena_offset;    /* where the tensor lives in the arena */
    size_t copy_offset;     /* where the file's bytes are copied (differs for
                               f16 norms, which are staged then widened) */
} doze_tensor_slot;

typedef struct {
    doze_tensor_slot *slots; /* sorted by src->offset */
    size_t n_slots;
    size_t arena_size;
} doze_model_plan;

/* Checks every tensor the config needs exists with the right shape and a
 * supported type, and lays them out in an arena. */
doze_status model_plan(const gguf_header *h, const doze_model_info *info, doze_model_plan *plan,
                       doze_error *err);
void model_plan_free(doze_model_plan *plan);

/* Wires a model's matrices to the arena per the plan; builds the tokenizer,
 * RoPE tables. Takes ownership of arena on success only. */
doze_status model_assemble(doze_model *m, const gguf_header *h, const doze_model_plan *plan,
                           doze_error *err);

/* y = W x for any supported type (quantizes x into xq_scratch when needed:
 * (cols / 32) q8_0 blocks). */
void model_matvec(const doze_model *m, float *y, const doze_matrix *w, const float *x,
                  void *xq_scratch);

/* Embedding row of `token` as floats: out(dim). */
void model_embed(const doze_model *m, int token, float *out);

/* Switches the kernel table (benchmarks compare SIMD and reference). */
void model_use_kernels(doze_model *m, int kernel_set);

#endif
