/* One LLaMA block's training forward and backward, shared by every trainer:
 * gate fine-tuning (frozen weights, gated), full training (every weight,
 * dense) and joint training (every weight, gated).
 *
 * Per token, over N = nb * T positions (nb windows of T tokens):
 *   xn   = rmsnorm(x_in) * attn_norm
 *   q, k, v = Wq xn (+ bq), Wk xn (+ bk), Wv xn (+ bv); q, k each head
 *          rmsnorm'd (* q_norm, k_norm) where the model has them; RoPE on q,
 *          k; causal attention over the visible positions -> o
 *   a    = Wo o                          dense
 *        = sum_h g_h Wo_h o_h            gated (heads)
 *   x_mid = x_in + a
 *   hn   = rmsnorm(x_mid) * ffn_norm
 *   hg   = silu(W1 hn) * W3 hn
 *   f    = W2 hg                         dense
 *        = W2 (hg * g_block(channel))    gated (FFN blocks, when any)
 *   x_out = x_mid + f                    dense
 *         = x_in + g_0 (a + f)           gated (the layer)
 * The two residual forms are kept as they are (not one written as the
 * other with g = 1) so that each trainer keeps its exact float sums.
 *
 * Gated, the gate values g (N, U = 1 + n_heads + n_blocks) come from the
 * caller's routers through block_gating's hooks: decide() is called with the
 * routers' inputs (xn for the layer and its heads, hn for the FFN blocks) as
 * soon as they exist, and router_backward() with the gradient of the loss
 * w.r.t. the gate values, adding the routers' input gradients back into the
 * stream. With hard gates (0 or 1) this is the inference forward under the
 * same masks; skipped units are still computed so that their gates get a
 * gradient (straight-through). */
#ifndef DOZE_TRAIN_BLOCK_H
#define DOZE_TRAIN_BLOCK_H

#include <stddef.h>
#include <stdint.h>

#include "pool.h"
#include "train_acts.h"

/* An FFN other than the dense SwiGLU one (a mixture of experts,
 * train_moe.c: the full trainer's, or gate fine-tuning's frozen one),
 * called with the layer's FFN input hn (N, D): forward writes the update
 * f (N, D); backward writes dhn (N, D, overwritten) from du = d loss / d f
 * and accumulates its own weights' gradients (if they learn). Gated with
 * FFN block gates (NB = 1: a mixture's FFN is one block), the one block gate
 * gb scales the whole update: x_out = x_in + g0 (a + gb f). */
typedef struct {
    void (*forward)(void *ctx, int layer, const float *hn, float *f, int N);
    void (*backward)(void *ctx, int layer, const float *hn, const float *du, float *dhn, int N);
    void *ctx;
} block_ffn;

/* shapes, constants and scratch the block needs */
typedef struct {
    int T;                    /* tokens per window */
    int D, F, H, KV, hd;      /* dim, FFN hidden, heads, KV heads, head dim */
    int rope_dim;             /* RoPE on the first rope_dim values of each head */
    float eps;                /* rmsnorm epsilon */
    const float *rope_cos, *rope_sin; /* (T, rope_dim / 2) */
    void (*softmax)(float *x, int n);
    void (*swiglu)(float *out, const float *gate, const float *up, int n);
    doze_pool *pool;          /* threads for the _par products and windows of
                                 attention (NULL: the caller alone) */
    int att_parts;            /* attention scratch slots: windows run in at most
                                 this many parts */
    float *att_scratch;       /* att_parts * att_per_thread floats */
    size_t att_per_thread;
    const uint8_t *all_visible; /* (N) ones: the dense block's visibility */
    int ffn_block;            /* FFN channels per block gate */
    const block_ffn *ffn;     /* NULL: the dense FFN of w1, w2, w3 */
} block_shape;

/* one layer's weights: as stored (out, in) for the backward, transposed
 * (in, out) for the forward. wo is (D, Q) (head h: columns h*hd ..), w2 (D, F). */
typedef struct {
    const float *attn_norm, *ffn_norm;             /* (D) */
    const float *wq, *wk, *wv, *wo, *w1, *w2, *w3;
    const float *tq, *tk, *tv, *to, *t1, *t2, *t3;
    /* qwen2's Q/K/V biases (Q), (KV * hd), (KV * hd) and qwen3's per-head
     * RMSNorms of q and k (hd), each NULL when the model has none */
    const float *bq, *bk, *bv, *q_norm, *k_norm;
} block_weights;

/* weight gradients of one layer, accumulated (+=) */
typedef struct {
    float *attn_norm, *ffn_norm, *wq, *wk, *wv, *wo, *w1, *w2, *w3;
    float *bq, *bk, *bv, *q_norm, *k_norm; /* NULL where the model has none */
} block_weight_grads;

/* a gated block: the caller's gate values and routers */
typedef struct {
    int U, NB;       /* units per token (1 + H + NB), FFN block gates */
    float *g;        /* (N, U) gate values, filled by decide */
    float *dg;       /* (N, U) d loss / d gate value, filled by the backward */
    uint8_t *vis;    /* (N) positions visible at this layer, filled by decide(u0 = 0) */
    /* fills g of units u0 .. u1 (and vis when u0 == 0) from their routers' input in (N, D) */
    void (*decide)(void *ctx, int layer, int u0, int u1, const float *in);
    /* from dg of units u0 .. u1: the routers' gradients; adds d loss / d in into din (N, D) */
    void (*router_backward)(void *ctx, int layer, int u0, int u1, const float *in, float *din);
    void *ctx;
} block_gating;

/* x (nb * T, D): the stream entering the layer, replaced by the stream leaving it.
 * gt NULL: the dense block. */
void block_forward(const block_shape *s, const block_weights *w, block_acts *a,
                   const block_gating *gt, int layer, float *x, block_grads *scratch, int nb);

/* dx (nb * T, D): d loss / d x_out, replaced by d loss / d x_in. dw NULL: the
 * weights are frozen (only activation gradients). */
void block_backward(const block_shape *s, const block_weights *w, const block_acts *a,
                    const block_gating *gt, int layer, block_grads *gr, block_weight_grads *dw,
                    int nb);

/* scratch floats the per-thread attention needs */
size_t block_att_per_thread(int T, int hd);

#endif
