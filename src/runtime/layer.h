/* One transformer layer for a batch of tokens under masks: the only place
 * the block is written. The token step (n = 1), the batched prefill and the
 * whole-sequence forward all run it, so they share every operation and its
 * order: with the same masks they give the same bits.
 *
 * Semantics (DESIGN.md): a skipped layer adds nothing to a token's stream
 * and writes no K/V (its position is marked invalid at that layer, so later
 * tokens do not attend to it there); a skipped head computes no Q slice, no
 * attention and no slice of the output projection; a skipped FFN block
 * computes none of its gate/up rows and none of its down columns. */
#ifndef DOZE_LAYER_H
#define DOZE_LAYER_H

#include <stddef.h>
#include <stdint.h>

#include "carve.h"
#include "model.h"
#include "moe.h"

typedef struct doze_step_trace doze_step_trace; /* session.h */

/* Every layer's keys and values over ctx positions. */
typedef struct {
    float *key;     /* (n_layers, ctx, kv_dim) */
    float *value;   /* (n_layers, ctx, kv_dim) */
    uint8_t *valid; /* (n_layers, ctx): 1 where the position's layer ran */
    int ctx;
} kv_cache;

/* The units of a batch of n tokens: layer_on (n, n_layers), head_on (n,
 * n_layers, n_heads), ffn_on (n, n_layers, n_blocks), expert_on (n,
 * n_layers, n_experts; MoE only). Forced masks are read from here; decided
 * ones are written here; either way they end up holding what ran (all 0 for
 * a skipped layer). The experts are read only when experts_forced; else
 * the model's routing writes them. */
typedef struct {
    uint8_t *layer_on;
    uint8_t *head_on;
    uint8_t *ffn_on;
    uint8_t *expert_on;
    int experts_forced;
} batch_masks;

/* Who decides, token by token (the gates under a budget); NULL: the masks
 * are forced. */
typedef struct {
    void *ctx;
    /* Whether layer l runs for batch token t, from xn(dim), the normed stream
     * entering the layer; fills head_on(n_heads). */
    int (*layer)(void *ctx, int l, int t, const float *xn, uint8_t *head_on);
    /* The FFN blocks of running layer l for token t, from hn(dim), the FFN's
     * normed input; fills blk_on(n_blocks). */
    void (*ffn)(void *ctx, int l, int t, const float *hn, uint8_t *blk_on);
    /* MoE: the experts of running FFN l for token t, from the router's
     * probabilities probs(n_experts); fills on(n_experts). */
    void (*experts)(void *ctx, int l, int t, const float *probs, uint8_t *on);
} layer_decider;

/* Scratch of the layer body for batches of up to n_max tokens over a cache
 * of ctx positions, carved from one allocation. */
typedef struct {
    int n_max;
    float *xn;      /* (n_max, dim) normed inputs (attention, then FFN) */
    float *gx;      /* (n_max, max(dim, q_dim)) rows gathered for a product */
    float *q;       /* (n_max, q_dim) queries of the running tokens */
    float *att_out; /* (n_max, q_dim) attention outputs */
    float *y;       /* (n_max, max(dim, kv_dim)) product outputs */
    float *h1, *h2; /* (n_max, hidden_dim) FFN activations */
    float *att;     /* (att_parts, min(n_heads, DOZE_ATT_HEADS), ctx) attention
                       weights, one slice per part of a split attention */
    int att_parts;  /* the model's threads when the scratch was carved */
    float *x_in;    /* (dim) a traced token's stream entering the layer */
    float *x_ffn;   /* (dim) ... entering the FFN */
    void *mm;       /* model_matmul's scratch for n_max tokens */
    void *xq;       /* one token's prepared input (model_input_area_bytes) */
    int *run;       /* (n_max) batch indices of the running tokens */
    int *sel;       /* (n_max) running indices selected for one product */
    moe_scratch moe; /* the experts' (MoE models) */
} layer_scratch;

/* Measures (c->base NULL) or carves the scratch. */
void layer_scratch_carve(carver *c, const doze_model *m, int n_max, int ctx, layer_scratch *s);

/* Runs layer l for tokens at positions pos .. pos + n - 1 (n <= s->n_max)
 * on their streams x(n, dim), in place, writing their K/V into kv. With a
 * decider the masks are decided per token; else they are read (a nonzero
 * byte runs). trace (n = 1 only, may be NULL) records the step as
 * doze_step_trace says. */
void layer_forward(const doze_model *m, int l, const kv_cache *kv, int pos, int n, float *x, batch_masks *mk,
                   const layer_decider *d, layer_scratch *s, doze_step_trace *trace);

#endif
