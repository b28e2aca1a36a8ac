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
    uint64_t ne[3];   /* ne[2]: the experts of a stack (1 otherwise) */
    int n_dims;
    int decay;        /* weight decay applies (matrices and the embedding) */
    size_t toff;      /* its transposed copy (matrices), floats into the copies */
} full_tensor;

int full_n_tensors(const doze_full_trainer *t);
const full_tensor *full_tensor_at(const doze_full_trainer *t, int i);
float *full_params(doze_full_trainer *t);      /* all parameters, flat */
const float *full_grads(const doze_full_trainer *t); /* their gradients after full_loss_grad */
size_t full_n_params(const doze_full_trainer *t);
/* values of tensor x: ne[0] ne[1] ne[2] */
size_t full_tensor_count(const full_tensor *x);
/* The experts a mixture's layer l selected in the last forward: (N, k)
 * ascending per token, N = batch * context; NULL when dense. */
const int32_t *full_moe_selected(const doze_full_trainer *t, int l);
/* After writing into full_params: refreshes what is derived from them. */
void full_params_changed(doze_full_trainer *t);
/* Mean cross-entropy over windows (batch, context + 1), plus the MoE
 * layers' balance terms; with want_grad,
 * the gradients of every parameter (overwritten). No optimizer step. */
doze_status full_loss_grad(doze_full_trainer *t, const int32_t *windows, int want_grad,
                           double *loss, doze_error *err);
/* The training forward's logits (nb * context, vocab) of nb <= batch
 * windows (context + 1 tokens each); NULL on error. Valid until the next call. */
const float *full_forward_logits(doze_full_trainer *t, const int32_t *windows, int nb, doze_error *err);
/* the balance terms' sum in the last full_loss_grad (0 when dense) */
double full_last_balance(const doze_full_trainer *t);

#endif
