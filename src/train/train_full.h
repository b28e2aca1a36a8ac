/* Internals of full-model training (train_full.c) shared with the tests:
 * the flat parameter buffer, its named tensors, and the loss with its
 * gradients without an optimizer step. */
#ifndef DOZE_TRAIN_FULL_H
#define DOZE_TRAIN_FULL_H

#include <stddef.h>
#include <stdint.h>

#include "doze.h"

/* One named tensor of the flat parameter buffer (GGUF names and shapes:
 * ne[0] columns, ne[1] rows, 1 for vectors). */
typedef struct {
    char name[48];
    size_t off;       /* floats into the parameter buffer */
    uint64_t ne[2];
    int n_dims;
    int decay;        /* weight decay applies (matrices and the embedding) */
    size_t toff;      /* its transposed copy (matrices), floats into the copies */
} full_tensor;

int full_n_tensors(const doze_full_trainer *t);
const full_tensor *full_tensor_at(const doze_full_trainer *t, int i);
float *full_params(doze_full_trainer *t);      /* all parameters, flat */
const float *full_grads(const doze_full_trainer *t); /* their gradients after full_loss_grad */
size_t full_n_params(const doze_full_trainer *t);
/* After writing into full_params: refreshes what is derived from them. */
void full_params_changed(doze_full_trainer *t);
/* Mean cross-entropy over windows (batch, context + 1); with want_grad,
 * the gradients of every parameter (overwritten). No optimizer step. */
doze_status full_loss_grad(doze_full_trainer *t, const int32_t *windows, int want_grad,
                           double *loss, doze_error *err);

#endif
