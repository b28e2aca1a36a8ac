/* Internal view of a model: config, weights (read-only after load), the
 * tokenizer, and the kernel table. Shared by the loader, the forward pass,
 * the converter and the CLI. */
#ifndef DOZE_MODEL_H
#define DOZE_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "doze.h"
#include "gguf.h"
#include "kernels.h"
#include "pool.h"
#include "tokenizer.h"

/* A weight matrix W(rows, cols) stored row-major in `type`: GGUF ne = {cols, rows}. */
typedef struct {
    int type;
    int rows;
    int cols;
    const void *data;
    int layout;   /* 0 row-major as in the file; 1 "x4": rows in groups of 4
                     with their blocks (q8_0/q4_0) or 16-byte chunks (4 f32, 8 f16
                     columns) interleaved (kernels.h) */
} doze_matrix;

typedef struct {
    const float *attn_norm; /* (dim) */
    doze_matrix wq;         /* (n_heads * head_dim, dim) */
    doze_matrix wk;         /* (n_kv_heads * head_dim, dim) */
    doze_matrix wv;         /* (n_kv_heads * head_dim, dim) */
    doze_matrix *wo_head;   /* (n_heads) blocks of attn_output, each (dim, head_dim):
                               head h's columns, stored contiguously so that a
                               skipped head's weights are not read */
    const float *bq, *bk, *bv; /* (q_dim), (kv_dim), (kv_dim) Q/K/V biases, or NULL */
    const float *q_norm, *k_norm; /* (head_dim) per-head RMSNorm weights of q and k, or NULL */
    const float *ffn_norm;  /* (dim) */
    doze_matrix w_gate;     /* (hidden_dim, dim); MoE: (n_experts * hidden_dim, dim), the
                               experts' matrices one after the other */
    doze_matrix w_up;       /* likewise */
    doze_matrix w_router;   /* MoE: (n_experts, dim) router logits (ffn_gate_inp) */
    doze_matrix w_down;     /* MoE: (n_experts * dim, hidden_dim), expert e's (dim,
                               hidden_dim) down projection at rows e * dim */
    doze_matrix *w_down_blk; /* (n_ffn_blocks) blocks of ffn_down, each (dim, width):
                               the columns of FFN block j (intermediate channels
                               fb*j .. fb*j + width), stored contiguously so that a
                               skipped block's weights are not read; NULL for MoE */
} doze_layer;

/* FFN blocks. The FFN intermediate dimension is cut into blocks of
 * fb channels (the model's info.ffn_block: 16, 32, 64, 128 or 256; the last block shorter
 * when hidden_dim % fb != 0). A skipped block computes none of its
 * ffn_gate/ffn_up rows and none of its ffn_down columns. */
#define DOZE_FFN_BLOCK 32       /* the block size of quantized or larger FFNs, */
#ifndef DOZE_FFN_BLOCK_MIN_BYTES     /* (-DDOZE_FFN_BLOCK_MIN_BYTES=0: never doubled) */
#define DOZE_FFN_BLOCK_MIN_BYTES (64u << 10) /* doubled up to 256 while a block's ffn_gate */
#endif
#define DOZE_FFN_MIN_BLOCKS 12  /* rows are fewer bytes, keeping this many blocks */
#define DOZE_FFN_BLOCK_SMALL 16 /* f32/f16 FFNs of fewer than 8 blocks of 32 */
static inline int ffn_n_blocks(int hidden_dim, int fb) { return (hidden_dim + fb - 1) / fb; }
static inline int ffn_block_width(int hidden_dim, int fb, int j) {
    int w = hidden_dim - j * fb;
    return w < fb ? w : fb;
}

struct doze_model {
    doze_model_info info;
    const doze_kernels *kern;
    doze_matrix token_embd; /* (vocab_size, dim) */
    doze_layer *layers;     /* (n_layers) */
    doze_matrix *wo_heads;  /* (n_layers, n_heads): the layers' wo_head arrays */
    doze_matrix *down_blks; /* (n_layers, n_ffn_blocks): the layers' w_down_blk arrays */
    int n_ffn_blocks;       /* ffn_n_blocks(hidden_dim, info.ffn_block) */
    const float *output_norm; /* (dim) */
    doze_matrix output;     /* (vocab_size, dim); token_embd when tied */
    doze_tokenizer *tok;    /* NULL when the file has no tokenizer */
    char *meta;             /* the file's string-valued keys as "key\0value\0" pairs
                               (model_meta.c); NULL when there are none */
    size_t meta_bytes;
    float *rope_cos;        /* (context_length, rope_dim / 2) */
    float *rope_sin;        /* (context_length, rope_dim / 2) */
    uint8_t *arena;         /* all tensor bytes, each tensor 64-byte aligned */
    size_t arena_size;
    doze_pool *pool;        /* the forward pass's threads (NULL: one) */
};

/* Rows per part of a split product: whole x4 groups and whole row tiles of
 * every kernel, so a part computes its rows exactly as the whole does. */
#define MODEL_ROW_ALIGN 16
/* Fewest multiply-adds worth a part of their own (the dispatch costs a few
 * microseconds). */
#define MODEL_MIN_PART_MACS 32768
/* Rows of W(., cols) a part takes at least. */
static inline int model_min_part_rows(int cols) {
    int r = (MODEL_MIN_PART_MACS + cols - 1) / (cols > 0 ? cols : 1);
    return r < MODEL_ROW_ALIGN ? MODEL_ROW_ALIGN : r;
}

/* The model configuration read from a GGUF header through its
 * architecture's description (arch.c), validated. Fills info (without
 * sizes of weights). */
doze_status model_config_from_gguf(const gguf_header *h, const doze_model_params *p,
                                   doze_model_info *info, doze_error *err);

/* Channels per FFN block for this file's FFN tensor types (see doze.h). */
int model_ffn_block_of(const gguf_header *h, const doze_model_info *info);
/* DOZE_OK if fb channels per FFN block can cut this model's FFNs (a caller's
 * choice, doze_model_params.ffn_block), else why not */
doze_status model_check_ffn_block(const gguf_header *h, const doze_model_info *info, int fb, doze_error *err);

/* How a tensor's file bytes become its in-memory form. */
typedef enum {
    SLOT_PLAIN,       /* used as stored */
    SLOT_NORM_F16,    /* an f16 vector widened to f32 */
    SLOT_HEAD_BLOCKS, /* attn_output split into per-head column blocks (x4 inside each
                         head where model_x4_fits) */
    SLOT_FFN_BLOCKS,  /* ffn_down split into per-block column blocks (x4 inside
                         each block where model_x4_fits) */
    SLOT_INTERLEAVE4  /* a q4_0/q8_0/f32/f16 matrix repacked in place to the x4 layout */
} doze_slot_kind;

/* Where each tensor the model needs goes: filled by model_plan(). */
typedef struct {
    const gguf_tensor *src; /* the tensor in the header */
    doze_slot_kind kind;
    int final_type;         /* type in memory (HEAD_BLOCKS may widen q8_0 to f32) */
    size_t arena_offset;    /* where the tensor lives in the arena */
    size_t copy_offset;     /* where the file's bytes are copied */
    int neox;               /* rows (or entries) of each head reordered at load so that
                               NEOX RoPE runs as adjacent pairs (arch_neox_to_adjacent) */
    int x4_off;             /* set by model_slot_finalize: an f16 tensor holding an
                               inf/nan half, a q8_0 one with an inf/nan scale, stays
                               row-major (matvec_f16_x4 / _q8_0_x4 take none) */
} doze_tensor_slot;

typedef struct {
    doze_tensor_slot *slots; /* sorted by src->offset */
    size_t n_slots;
    size_t arena_size;
    size_t scratch_size;     /* bytes model_slot_finalize needs as scratch */
} doze_model_plan;

/* Checks every tensor the config needs exists with the right shape and a
 * supported type, and lays them out in an arena. */
doze_status model_plan(const gguf_header *h, const doze_model_info *info, doze_model_plan *plan,
                       doze_error *err);
void model_plan_free(doze_model_plan *plan);

/* Turns a slot's copied file bytes into their in-memory form, once all of
 * them have arrived (scratch: plan->scratch_size bytes). */
void model_slot_finalize(const doze_model_info *info, doze_tensor_slot *s, uint8_t *arena,
                         uint8_t *scratch);

/* Wires a model's matrices to the arena per the plan; builds the tokenizer,
 * RoPE tables. Takes ownership of arena on success only. */
/* Copies the string-valued metadata of h (model_meta.c) into *out as
 * "key\0value\0" pairs, *n their bytes (NULL, 0 when there are none). */
doze_status model_meta_from_gguf(const gguf_header *h, char **out, size_t *n, doze_error *err);

doze_status model_assemble(doze_model *m, const gguf_header *h, const doze_model_plan *plan,
                           doze_error *err);

/* A view of rows [first, first + n) of W, e.g. one head's rows (first % 4
 * == 0 where W is in an x4 layout: views are whole groups). */
doze_matrix model_rows(const doze_matrix *w, int first, int n);

/* Bytes of one input x(cols) prepared for products of any type (its q8_0
 * blocks and its 16-bit roundings), and of the area a layer needs for the
 * widest one, every head's or every FFN block's side by side. */
size_t model_input_bytes(int cols);
size_t model_input_area_bytes(const doze_model *m);

/* y = W x for any supported type (x prepared in xq_scratch when W's
 * products take another form: model_input_bytes(cols)). */
void model_matvec(const doze_model *m, float *y, const doze_matrix *w, const float *x,
                  void *xq_scratch);
/* An input prepared once for several products (decode's K, V and every Q
 * head share one): xq gets x(cols) in each activation form w[0..n) take
 * (q8_0 blocks, or x rounded to f16 / bf16);
 * then model_matvec_prepared(m, y, w[i], x, xq) for each (and for row views
 * of them) gives model_matvec's bits. */
void model_prepare_input(const doze_model *m, const doze_matrix *const *w, int n, const float *x, void *xq);
void model_matvec_prepared(const doze_model *m, float *y, const doze_matrix *w, const float *x, const void *xq);

/* Y(n, w->rows) (stride ldy) = X(n, w->cols) (stride ldx) @ W^T: each
 * token's row of Y has the bits model_matvec gives that token. scratch:
 * n * max(cols * 4, (cols/32) * 34) bytes. */
void model_matmul(const doze_model *m, float *y, int ldy, const doze_matrix *w, const float *x, int ldx,
                  int n, void *scratch);

/* fn(args, t) for every token t in [0, n), split among the model's threads
 * by tokens (values: the floats a token's call touches, which sets how many
 * tokens are worth a part). Each token's call is the same whatever the cut. */
typedef void (*model_token_fn)(void *args, int t);
void model_for_tokens(const doze_model *m, int n, int values, model_token_fn fn, void *args);

/* Row r of W as floats: out(cols) (any layout). */
void model_dequantize_row(const doze_matrix *w, int r, float *out);

/* Embedding row of `token` as floats: out(dim). */
void model_embed(const doze_model *m, int token, float *out);

/* The FFN of one token on x(dim) in place: x += sum over running
 * blocks j of W_down_j swiglu(W_gate_j xn, W_up_j xn), where xn(dim) holds
 * rmsnorm(x, ffn_norm) on entry (the caller norms: the block gates read it
 * first). blk_on (n_ffn_blocks, NULL: all on). Runs of consecutive running
 * blocks share one gate/up matvec, so all-on is one call each: the dense FFN.
 * Scratch: hb, hb2 (hidden_dim), tmp(dim), xq (model_input_area_bytes).
 * block_norm (n_ffn_blocks, may be NULL) gets ||W_down_j h_j|| (0 when off).
 * Every path (token step, whole sequence, prefill) uses these operations. */
void model_ffn(const doze_model *m, int layer, float *x, const uint8_t *blk_on, const float *xn, float *hb,
               float *hb2, float *tmp, void *xq, float *block_norm);

/* Switches the kernel table (benchmarks compare SIMD and reference). */
void model_use_kernels(doze_model *m, int kernel_set);

/* Nonzero for the types whose matrices are repacked to the x4 layout at load. */
int model_interleaves(int type);
/* Nonzero when a (rows, cols) matrix of type takes the x4 layout: an
 * interleaving type, rows % 4 == 0, and cols % 4 == 0 for f32, % 8 for f16
 * (an f16 tensor with an inf/nan half stays row-major: slot x4_off). */
int model_x4_fits(int type, uint64_t rows, uint64_t cols);


#endif
