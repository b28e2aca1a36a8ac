/* AdamW, the one optimizer step of every trainer (gates, full model, joint
 * weights and adapters): decoupled weight decay, bias-corrected moments and
 * the gradient scaled by the global-norm clip. Each value is updated on its
 * own, so splitting the loop over threads gives the same bits. */
#ifndef DOZE_TRAIN_ADAMW_H
#define DOZE_TRAIN_ADAMW_H

#include <stddef.h>

#include "pool.h"

/* one step's constants */
typedef struct {
    float lr, b1, b2, eps;
    float c1, c2; /* 1 - b1^step, 1 - b2^step */
} adamw_step;

/* the constants of step `step` (1, 2, ...) */
adamw_step adamw_at(float lr, float b1, float b2, float eps, int step);

/* w (n), its gradient g and moments m, v: g * scale enters the moments; wd
 * is the decoupled decay (0: none). The pool's threads share large arrays
 * (NULL: the caller alone; the same bits either way). */
void adamw_update(const adamw_step *s, float *w, const float *g, float *m, float *v, size_t n, float scale,
                  float wd, doze_pool *pool);

/* the same, the decay pulling w towards w0 (n) instead of towards 0: a
 * fine-tune anchored to the weights it started from (L2-SP) */
void adamw_update_toward(const adamw_step *s, float *w, const float *w0, const float *g, float *m, float *v,
                         size_t n, float scale, float wd, doze_pool *pool);

/* the L2 norm of g (n), accumulated in double */
double adamw_grad_norm(const float *g, size_t n);

/* the factor that brings a gradient of norm `norm` down to `clip` (1 when
 * it is within, or clip <= 0: no clipping) */
float adamw_clip_scale(double norm, float clip);

#endif
