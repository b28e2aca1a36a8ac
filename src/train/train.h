/* Internals of gate training shared with the gradient-check test. */
#ifndef DOZE_TRAIN_H
#define DOZE_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "doze.h"

typedef enum {
    TRAIN_DENSE, /* every gate 1 (the teacher) */
    TRAIN_HARD,  /* hard decisions with logistic noise, straight-through gradients */
    TRAIN_SOFT,  /* gates = sigmoid(score / tau), no noise: a smooth loss, for checks */
    TRAIN_DECIDE /* hard decisions without noise: the inference rule at log lambda0 */
} train_mode;

/* Runs the teacher (dense) on tokens (batch, context) and keeps its
 * next-token distributions as the target. */
doze_status trainer_set_teacher(doze_trainer *t, const int32_t *tokens, doze_error *err);

/* Loss against the teacher under the current routers. vis_in (n_layers,
 * batch * context): visibility to use instead of the decisions (NULL: the
 * decisions); vis_out receives the visibility used (may be NULL). With
 * want_grad, the gradients go to trainer_grad_router / trainer_grad_bias
 * (overwritten). tau is the relaxation temperature. */
doze_status trainer_loss_grad(doze_trainer *t, const int32_t *tokens, train_mode mode, float tau,
                              const uint8_t *vis_in, uint8_t *vis_out, int want_grad,
                              double *loss, doze_error *err);
/* After a forward: the logits (batch * context, vocab) and the hard masks
 * it used: layer_on (batch * context, n_layers), head_on (batch * context,
 * n_layers, n_heads), ffn_on (batch * context, n_layers, the model's
 * n_ffn_blocks; may be NULL). */
const float *trainer_logits(const doze_trainer *t);
void trainer_masks(const doze_trainer *t, uint8_t *layer_on, uint8_t *head_on, uint8_t *ffn_on);
/* a mixture: the experts each FFN of the last forward ran, expert_on
 * (batch * context, n_layers, n_experts); all 0 where the layer or its FFN
 * is off (hard decision) unless all (the experts chosen, computed for the
 * gradient even where the FFN dozes) */
void trainer_expert_masks(const doze_trainer *t, int all, uint8_t *expert_on);
float *trainer_grad_router(doze_trainer *t); /* (n_layers, 1 + n_heads + n_blocks, dim) */
float *trainer_grad_bias(doze_trainer *t);   /* (n_layers, 1 + n_heads + n_blocks) */
/* joint training's weights (NULL when only the gates learn) */
struct joint_weights *trainer_joint(doze_trainer *t);
/* joint: whether trainer_write_model can write from `file` (its header checked) */
doze_status trainer_check_model(const doze_trainer *t, const void *file, size_t n, doze_error *err);
/* joint: the model file (the GGUF m was loaded from) with the trained weights */
doze_status trainer_write_model(const doze_trainer *t, const void *file, size_t n,
                                int (*fn)(void *ctx, const void *bytes, size_t len), void *ctx,
                                doze_error *err);

#endif
