/* Gates: the per-layer routers that decide, per token, which layers and
 * query heads run; the cost model that turns decisions into a compute
 * ratio; and the budget -> threshold table.
 *
 * A router reads the normed residual entering its layer, xn(dim), and
 * predicts z(1 + n_heads + n_blocks) = R xn + bias: z[0] the log of the
 * damage of skipping the layer, z[1 + h] that of head h, z[1 + n_heads + j]
 * that of FFN block j (issue 8). A unit (the whole layer, a head, an FFN
 * block) runs when exp(z) / cost_fraction >= lambda, i.e. when its predicted
 * importance per unit of compute clears the price lambda that the budget
 * sets. Gates with n_blocks == 0 (version-1 files, --no-ffn-gates) run
 * every FFN block of a running layer. */
#ifndef DOZE_GATES_H
#define DOZE_GATES_H

#include <stdint.h>

#include "doze.h"

#define GATES_BUDGET_STEPS 100 /* lambda table at b = 0, 0.01, ..., 1 */

struct doze_gates {
    int n_layers, n_heads, dim, vocab_size;
    int n_blocks;          /* FFN block gates per layer: 0 or the model's n_ffn_blocks */
    uint32_t fingerprint;  /* of the model the gates belong to */
    doze_gates_params params;
    float *router;         /* (n_layers, 1 + n_heads + n_blocks, dim) */
    float *bias;           /* (n_layers, 1 + n_heads + n_blocks) */
    float log_lambda[GATES_BUDGET_STEPS + 1]; /* log threshold per budget step */
    char kind[32];         /* "training-free" or "trained" */
};

/* Multiply-accumulate counts of one token's layer compute. */
typedef struct {
    double kv;           /* K and V projections of a running layer */
    double head;         /* one head's Q slice + output slice, per token */
    double head_per_pos; /* one head's attention per attended position */
    double ffn;          /* gate, up, down */
    double ffn_channel;  /* one FFN intermediate channel: its gate and up rows, its down column */
    double router;       /* one layer's router without FFN block rows */
    double router_block; /* one FFN block row of a router */
    int n_layers, n_heads;
    int n_blocks;        /* FFN blocks per layer (the model's) */
    int hidden;          /* FFN intermediate size */
} doze_cost_model;

void cost_model_init(const doze_model_info *info, doze_cost_model *c);
/* one FFN block's compute (the last block may be narrower) */
double cost_block(const doze_cost_model *c, int j);
/* one layer's router for gates with n_blocks FFN block rows */
double cost_router(const doze_cost_model *c, int n_blocks);
/* Dense layer compute of a token attending to n_pos positions. */
double cost_dense(const doze_cost_model *c, int n_pos);

/* A fingerprint of a model's weights that gate files are checked against. */
uint32_t gates_model_fingerprint(const doze_model *m);

doze_gates *gates_alloc(int n_layers, int n_heads, int n_blocks, int dim);
/* rows of a layer's router: 1 + n_heads + n_blocks */
static inline int gates_rows(const doze_gates *g) { return 1 + g->n_heads + g->n_blocks; }

/* z(1 + n_heads + n_blocks) for layer l from xn(dim). */
void gates_score(const doze_gates *g, const doze_model *m, int layer, const float *xn, float *z);

/* The log threshold for a budget (interpolated in the table). */
float gates_log_lambda(const doze_gates *g, float budget);

/* Decides layer l from its scores at a token attending n_pos positions;
 * fills head_on(n_heads) and blk_on(c->n_blocks); returns whether the layer
 * runs. */
int gates_decide(const doze_gates *g, const doze_cost_model *c, int layer, int n_pos,
                 const float *z, float log_lambda, uint8_t *head_on, uint8_t *blk_on);

/* The compute of a decided layer (0 if skipped), router excluded; blk_on
 * NULL: every FFN block. */
double cost_of_layer(const doze_cost_model *c, int layer_on, const uint8_t *head_on,
                     const uint8_t *blk_on, int n_pos);

#endif
