/* The mixture-of-experts FFN (llama with expert_count, qwen3moe), as
 * llama.cpp computes it: router logits W_r hn, softmax over the experts,
 * the model's top k, their probabilities renormalized to sum 1, and
 *     x += sum over running experts e of w_e * down_e(silu(gate_e hn) * up_e hn).
 * An expert that does not run is not read: expert e's rows of each stack
 * are contiguous (model.h). Under a forced expert mask the experts it names
 * run, with the same rule: their probabilities renormalized over them. */
#ifndef DOZE_MOE_H
#define DOZE_MOE_H

#include <stdint.h>

#include "carve.h"
#include "model.h"

/* Scratch for batches of up to n_max tokens. */
typedef struct {
    float *probs; /* (n_max, n_experts) router probabilities */
    float *acc;   /* (n_max, dim) the experts' weighted sum */
    float *gx;    /* (n_max, dim) inputs gathered for one expert */
    float *h1;    /* (n_max, hidden_dim) */
    float *h2;    /* (n_max, hidden_dim) */
    float *y;     /* (n_max, dim) */
    void *mm;     /* model_matmul scratch for n_max tokens of the widest input */
    int *sel;     /* (n_max) running indices of the tokens one expert serves */
    float *ye;    /* (n_experts, dim) a traced token's weighted expert outputs */
} moe_scratch;

/* Who picks a token's experts when they are not forced (the gates under a
 * budget): decide fills on(n_experts) for batch token t of layer l from the
 * router probabilities probs(n_experts). */
typedef struct {
    void *ctx;
    void (*decide)(void *ctx, int l, int t, const float *probs, uint8_t *on);
} moe_decider;

/* What a traced token (one token) records of layer l's MoE FFN; each may be
 * NULL. */
typedef struct {
    float *block_norm; /* (1) the norm of the FFN's update */
    float *probs;      /* (n_experts) the router probabilities */
    float *drop;       /* (n_experts) for each running expert, how far the
                          update moves when it alone is dropped (the others
                          renormalized); 0 for the others */
} moe_trace;

/* Measures (c->base NULL) or carves the scratch (nothing for a dense model). */
void moe_scratch_carve(carver *c, const doze_model *m, int n_max, moe_scratch *s);

/* The model's own choice for one token: the n_experts_used experts of
 * largest probs(n_experts) (ties to the lower index) marked 1 in
 * on(n_experts), the rest 0. */
void moe_top_k(const doze_model *m, const float *probs, uint8_t *on);
/* The same for n_experts experts and any k (1 <= k <= n_experts). */
void moe_top_k_of(const float *probs, int n_experts, int k, uint8_t *on);
/* The most probable expert not yet taken (ties to the lower index); -1
 * when every one is. */
int moe_next(const float *probs, int n_experts, const uint8_t *taken);

/* The MoE FFN of layer l for the tokens run[0..nr) (batch indices), in
 * place on their streams x(., dim); hn(., dim) holds rmsnorm(x, ffn_norm)
 * by batch position. Batch token t's experts are expert_on + t * stride
 * (n_experts): when forced, read (no expert on: the FFN adds nothing), else
 * written by d (NULL: the model's top k). tr (nr = 1 only, may be NULL)
 * records the step. Experts are summed in expert order, so a batch gives
 * its tokens the bits they get one by one. */
void moe_ffn(const doze_model *m, int l, int nr, const int *run, float *x, const float *hn, uint8_t *expert_on,
             size_t stride, int forced, const moe_decider *d, moe_scratch *s, const moe_trace *tr);

#endif
