/* Gates: the per-layer routers that decide, per token, which layers and
 * query heads run; the cost model that turns decisions into a compute
 * ratio; and the budget -> threshold table.
 *
 * A router reads the normed residual entering its layer, xn(dim), and
 * predicts z(1 + n_heads) = R xn + bias: z[0] the log of the layer's
 * relative update ||dx|| / ||x||, z[1 + h] the log of head h's relative
 * contribution ||Wo_h att_h|| / ||x||. A unit (the whole layer, or one head)
 * runs when exp(z) / cost_fraction >= lambda, i.e. when its predicted
 * importance per unit of compute clears the price lambda that the budget
 * sets. */
#ifndef DOZE_GATES_H
#define DOZE_GATES_H

#include <stdint.h>

#include "doze.h"

#define GATES_BUDGET_STEPS 100 /* lambda table at b = 0, 0.01, ..., 1 */

struct doze_gates {
    int n_layers, n_heads, dim, vocab_size;
    uint32_t fingerprint;  /* of the model the gates belong to */
    doze_gates_params params;
    float *router;         /* (n_layers, 1 + n_heads, dim) */
    float *bias;           /* (n_layers, 1 + n_heads) */
    float log_lambda[GATES_BUDGET_STEPS + 1]; /* log threshold per budget step */
    char kind[32];         /* "training-free" or "trained" */
};

/* Multiply-accumulate counts of one token's layer compute. */
typedef struct {
    double kv;           /* K and V projections of a running layer */
    double head;         /* one head's Q slice + output slice, per token */
    double head_per_pos; /* one head's attention per attended position */
    double ffn;          /* gate, up, down */
    double router;       /* one layer's router */
    int n_layers, n_heads;
} doze_cost_model;

void cost_model_init(const doze_model_info *info, doze_cost_model *c);
/* Dense layer compute of a token attending to n_pos positions. */
double cost_dense(const doze_cost_model *c, int n_pos);

/* A fingerprint of a model's weights that gate files are checked against. */
uint32_t gates_model_fingerprint(const doze_model *m);

doze_gates *gates_alloc(int n_layers, int n_heads, int dim);

/* z(1 + n_heads) for layer l from xn(dim). */
void gates_score(const doze_gates *g, const doze_model *m, int layer, const float *xn, float *z);

/* The log threshold for a budget (interpolated in the table). */
float gates_log_lambda(const doze_gates *g, float budget);

/* Decides layer l from its scores at a token attending n_pos positions;
 * fills head_on(n_heads); returns whether the layer runs. */
int gates_decide(const doze_gates *g, const doze_cost_model *c, int layer, int n_pos,
                 const float *z, float log_lambda, uint8_t *head_on);

/* The compute of a decided layer (0 if skipped), router excluded. */
double cost_of_layer(const doze_cost_model *c, int layer_on, const uint8_t *head_on, int n_pos);

#endif
