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
} moe_scratch;

/* Measures (c->base NULL) or carves the scratch (nothing for a dense model). */
void moe_scratch_carve(carver *c, const doze_model *m, int n_max, moe_scratch *s);

/* The model's own choice for one token: the n_experts_used experts of
 * largest probs(n_experts) (ties to the lower index) marked 1 in
 * on(n_experts), the rest 0. */
void moe_top_k(const doze_model *m, const float *probs, uint8_t *on);

/* The MoE FFN of layer l for the tokens run[0..nr) (batch indices), in
 * place on their streams x(., dim); hn(., dim) holds rmsnorm(x, ffn_norm)
 * by batch position. Batch token t's experts are expert_on + t * stride
 * (n_experts): when forced, read (no expert on: the FFN adds nothing), else
 * written with the model's top k. block_norm (one token only, may be NULL)
 * gets the norm of the FFN's update. Experts are summed in expert order, so
 * a batch gives its tokens the bits they get one by one. */
void moe_ffn(const doze_model *m, int l, int nr, const int *run, float *x, const float *hn, uint8_t *expert_on,
             size_t stride, int forced, moe_scratch *s, float *block_norm);

#endif
