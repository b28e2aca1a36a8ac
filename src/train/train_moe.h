/* The mixture-of-experts FFN of the full trainer (train_moe.c): its forward
 * exactly as the runtime computes it (src/runtime/moe.c) and its backward.
 *
 * Per token n, over N tokens, hn(N, D) the FFN's normed input:
 *   p_n   = softmax(Wr hn_n)                       (E) router probabilities
 *   S_n   = the k experts of largest p_n (ties to the lower index)
 *   w_ne  = p_ne / sum_{j in S_n} p_nj              e in S_n
 *   f_n   = sum_{e in S_n, ascending} w_ne y_ne,  y_ne = Wd_e (silu(Wg_e hn_n) * Wu_e hn_n)
 * and per layer the load-balancing term (Switch Transformer)
 *   balance = C E sum_e f_e P_e,  f_e = |{n : e in S_n}| / N (constant),
 *                                 P_e = mean_n p_ne
 * (with k experts per token sum_e f_e = k: the term is C k when the load and
 * the probabilities are uniform).
 *
 * Backward: through the running experts' weights and inputs, and through the
 * router by the renormalized weights and the balance term; the selection
 * S_n is a constant (as Mixtral and Switch train it).
 *
 * The selection may instead come from the caller (tmoe_forward_decided: gate
 * fine-tuning picks a token's experts as the gates do at inference under a
 * budget, 1 to k of them); the weights are then the chosen experts'
 * probabilities over their sum, the runtime's rule for any expert mask.
 *
 * Tokens are served expert by expert ("slots": each (token, selected expert)
 * pair, grouped by expert, tokens ascending), so that one expert's weights
 * serve all its tokens in one product. Every sum runs in a fixed order and
 * the products split rows only, so the bits do not depend on the threads. */
#ifndef DOZE_TRAIN_MOE_H
#define DOZE_TRAIN_MOE_H

#include <stddef.h>
#include <stdint.h>

#include "carve.h"
#include "pool.h"

typedef struct {
    int D, F, E, K;           /* dim, each expert's hidden width, experts, used per token */
    float balance;            /* C of the balance term (0: none) */
    doze_pool *pool; /* NULL: the caller alone */
    void (*softmax)(float *x, int n);
    void (*swiglu)(float *out, const float *gate, const float *up, int n);
} tmoe_shape;

/* one layer's weights as stored (the backward) and transposed (the forward) */
typedef struct {
    const float *router;         /* (E, D) */
    const float *gate, *up;      /* (E, F, D): expert e's (F, D) at e F D */
    const float *down;           /* (E, D, F) */
    const float *t_router;       /* (D, E) */
    const float *t_gate, *t_up;  /* (E, D, F): each expert's matrix transposed */
    const float *t_down;         /* (E, F, D) */
} tmoe_weights;

/* their gradients, accumulated (+=) */
typedef struct {
    float *router, *gate, *up, *down;
} tmoe_grads;

/* what one layer's forward keeps for its backward (N tokens at most) */
typedef struct {
    float *probs;       /* (N, E) router probabilities */
    int32_t *sel;       /* (N, K) the selected experts, ascending (count[n] of each row used) */
    int32_t *count;     /* (N) experts each token runs: K, or 1 .. K when decided by the caller */
    float *w;           /* (N, K) their renormalized weights */
    int32_t *start;     /* (E + 1) expert e's slots are start[e] .. start[e + 1] */
    int32_t *slot_tok;  /* (N K) the token of each slot */
    int32_t *tok_slot;  /* (N, K) the slot of each token's j-th selected expert (j < count[n]) */
    float *slot_w;      /* (N K) the weight of each slot */
    float *h1, *h3, *hg; /* (N K, F) gate, up, silu(gate) * up per slot */
    float *y;           /* (N K, D) each slot's expert output, before its weight */
    float *frac;        /* (E) f_e */
    double balance;     /* this layer's balance term */
} tmoe_acts;

/* scratch shared by the layers */
typedef struct {
    float *gx, *dy, *dgx;    /* (N, D) one expert's tokens: inputs, d/d output, d/d input */
    float *dhg, *dh1, *dh3;  /* (N, F) */
    float *dp;               /* (N, E) d/d probabilities, then d/d router logits */
    int32_t *cursor;         /* (E) */
} tmoe_scratch;

void tmoe_carve_acts(carver *c, tmoe_acts *a, const tmoe_shape *s, size_t N);
void tmoe_carve_scratch(carver *c, tmoe_scratch *sc, const tmoe_shape *s, size_t N);

/* Who picks token n's experts instead of the model's top k: decide fills
 * on(E) from the router probabilities probs(E), 1 to K experts marked 1. */
typedef struct {
    void (*decide)(void *ctx, int n, const float *probs, uint8_t *on);
    void *ctx;
} tmoe_decider;

/* f(N, D) (overwritten) from hn(N, D); fills a (and a->balance) */
void tmoe_forward(const tmoe_shape *s, const tmoe_weights *w, tmoe_acts *a, tmoe_scratch *sc,
                  const float *hn, float *f, int N);
/* the same with each token's experts chosen by d (NULL: the model's top k);
 * E <= 256 */
void tmoe_forward_decided(const tmoe_shape *s, const tmoe_weights *w, tmoe_acts *a, tmoe_scratch *sc,
                          const float *hn, float *f, int N, const tmoe_decider *d);
/* from du(N, D) = d loss / d f, plus the balance term's own gradient:
 * dhn(N, D) (overwritten) and the weights' gradients (accumulated; g NULL:
 * the weights are frozen and only dhn is computed) */
void tmoe_backward(const tmoe_shape *s, const tmoe_weights *w, const tmoe_acts *a, tmoe_scratch *sc,
                   const float *hn, const float *du, float *dhn, tmoe_grads *g, int N);

#endif
