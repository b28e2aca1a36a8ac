/* The weights of joint training (routers and model together): every
 * weight of an existing model widened to f32 in one flat buffer carved into
 * named tensors (GGUF names and shapes), with their gradients, AdamW state
 * and the transposed copies the block's forward reads; written back into
 * the model's own GGUF file when the run ends. */
#ifndef DOZE_TRAIN_JOINT_H
#define DOZE_TRAIN_JOINT_H

#include <stddef.h>
#include <stdint.h>

#include "block.h"
#include "doze.h"
#include "train_moe.h"

typedef struct joint_weights joint_weights;

/* f32 copies of m's weights (any type m holds). A mixture of experts (a
 * llama MoE): each layer's router ffn_gate_inp (E, D) and expert stacks
 * ffn_gate_exps, ffn_up_exps (E, F, D) and ffn_down_exps (E, D, F) learn in
 * place of the dense FFN, in the same flat buffers (Adam covers them). */
doze_status joint_weights_new(const doze_model *m, joint_weights **out, doze_error *err);
void joint_weights_free(joint_weights *j);

/* layer l's weights for the block, and their gradients */
block_weights joint_block(const joint_weights *j, int l);
block_weight_grads joint_block_grads(joint_weights *j, int l);
/* a mixture: E (0 when dense), layer l's router and stacks (as stored and
 * transposed, each expert's matrix on its own), and their gradients */
int joint_experts(const joint_weights *j);
tmoe_weights joint_moe(const joint_weights *j, int l);
tmoe_grads joint_moe_grads(joint_weights *j, int l);
const float *joint_embedding(const joint_weights *j); /* (V, D) */
float *joint_embedding_grad(joint_weights *j);
const float *joint_output_norm(const joint_weights *j); /* (D) */
float *joint_output_norm_grad(joint_weights *j);
const float *joint_classifier(const joint_weights *j);   /* (V, D); the embedding when tied */
const float *joint_classifier_t(const joint_weights *j); /* (D, V) */
float *joint_classifier_grad(joint_weights *j);

/* the flat buffers, for the optimizer and the gradient check */
float *joint_params(joint_weights *j);
float *joint_grads(joint_weights *j);
size_t joint_n_params(const joint_weights *j);
/* after writing into joint_params: refreshes the transposed copies */
void joint_params_changed(joint_weights *j);
/* the named tensors: k in [0, joint_n_tensors): its first float in the flat
 * buffers, its size, its name */
int joint_n_tensors(const joint_weights *j);
void joint_tensor_span(const joint_weights *j, int k, size_t *off, size_t *n, const char **name);

/* One AdamW step (betas 0.9, 0.999; decay on matrices and the embedding)
 * after clipping the gradient to norm clip (0: no clipping); step counts
 * from 1. With adapters: Adam on A and B (their gradient clipped), then
 * the merge. anchor > 0 (after joint_anchor_set): every weight decays
 * towards the weights the run started from at that rate (decoupled, as
 * AdamW's decay), in place of weight_decay's pull towards 0. Returns the
 * gradient's norm before clipping. */
double joint_adam_step(joint_weights *j, float lr, float weight_decay, float anchor, float clip, int step,
                       doze_pool *pool);

/* An exponential moving average of the weights (Polyak averaging), which
 * joint_write then writes instead of the weights themselves: set from the
 * weights as they are now; updated after each step as ema = d ema + (1 - d) w,
 * d = joint_ema_decay(decay, step) = min(decay, (1 + step) / (10 + step)),
 * so that the first steps are not swamped by the starting weights. */
doze_status joint_ema_set(joint_weights *j, doze_error *err);
float joint_ema_decay(float decay, int step);
void joint_ema_update(joint_weights *j, float decay);
/* the average (n_params; NULL when none is kept) */
const float *joint_ema(const joint_weights *j);

/* keeps a copy of the weights as they are now, for joint_adam_step's anchor
 * (a fine-tune that may not drift far from the model it started from) */
doze_status joint_anchor_set(joint_weights *j, doze_error *err);

/* Low-rank adapters instead of full fine-tuning: every projection (q, k,
 * v, o, gate, down, up) becomes W = W0 + B A with W0 frozen, A (rank, cols),
 * B (rows, rank) = 0 at first; the embedding, classifier and norms stay
 * frozen. Only A and B learn (joint_adam_step), and the merged W is what
 * the block reads and joint_write saves, so inference costs what it did.
 * Not on a mixture of experts (UNSUPPORTED_TYPE). */
doze_status joint_lora_init(joint_weights *j, int rank, uint64_t seed, doze_error *err);
int joint_lora_rank(const joint_weights *j); /* 0: full fine-tuning */
/* after the weights' gradients (joint_grads) are in: the adapters' gradients,
 * dA = B^T dW, dB = dW A^T */
void joint_lora_backward(joint_weights *j);
float *joint_lora_params(joint_weights *j);
float *joint_lora_grads(joint_weights *j);
size_t joint_lora_n_params(const joint_weights *j);
/* after writing into joint_lora_params: merges W = W0 + B A again */
void joint_lora_changed(joint_weights *j);
/* tensor k's adapter: A (rank, cols), B (rows, rank); 0 when it has none */
int joint_lora_span(const joint_weights *j, int k, const float **a, const float **b);

/* Writes `file` (the GGUF the model was loaded from: same shapes) with the
 * trained weights in place of its own, f32, every other key and tensor as
 * it was. */
doze_status joint_write(const joint_weights *j, const void *file, size_t n,
                        int (*fn)(void *ctx, const void *bytes, size_t len), void *ctx,
                        doze_error *err);
/* What joint_write would refuse about `file` itself (not a GGUF, truncated,
 * a trained tensor missing or of another shape), found from its header
 * alone: a run checks the file before its steps, not after them. */
doze_status joint_check_file(const joint_weights *j, const void *file, size_t n, doze_error *err);

#endif
