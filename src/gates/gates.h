/* Gates: the per-layer routers that decide, per token, which layers, query
 * heads and FFN blocks run; the cost model that turns decisions into a
 * compute ratio; and the budget -> threshold table.
 *
 * A layer's router has 1 + n_heads + n_blocks rows, scoring the log of the
 * damage of skipping a unit. Rows 0 (the layer) and 1 + h (head h) read the
 * normed residual entering the layer, xn = rmsnorm(x, attn_norm), and are
 * decided before the layer runs; rows 1 + n_heads + j (FFN block j)
 * read the FFN's own input, hn = rmsnorm(x + attention output, ffn_norm),
 * and are decided after the layer's attention (gate file version 3; in
 * version 2 they read xn, and such files are refused). z = R xn + bias (or
 * R hn + bias for block rows). A unit runs when exp(z) / cost_fraction >=
 * lambda, i.e. when its predicted importance per unit of compute clears the
 * price lambda that the budget sets. A mixture of experts' FFN is one block;
 * where it runs, its experts are decided against the same price from the
 * model's router probabilities and calibrated constants (expert_bias,
 * gates_decide_experts). Gates with n_blocks == 0 (version-1
 * files, --no-ffn-gates) run every FFN block of a running layer. */
#ifndef DOZE_GATES_H
#define DOZE_GATES_H

#include <stdint.h>

#include "doze.h"

#define GATES_BUDGET_STEPS 100 /* lambda table at b = 0, 0.01, ..., 1 */
#define GATES_FILE_VERSION 3   /* doze.gates.version written (see gates.c) */

struct doze_gates {
    int n_layers, n_heads, dim, vocab_size;
    int n_blocks;          /* FFN block gates per layer: 0 or the model's n_ffn_blocks */
    int ffn_block;         /* channels per FFN block: the model's info.ffn_block */
    uint32_t fingerprint;  /* of the model the gates belong to */
    doze_gates_params params;
    float *router;         /* (n_layers, 1 + n_heads + n_blocks, dim) */
    float *bias;           /* (n_layers, 1 + n_heads + n_blocks) */
    float log_lambda[GATES_BUDGET_STEPS + 1]; /* log threshold per budget step */
    char kind[32];         /* "training-free" or "trained" */
    /* MoE: the experts' calibrated log damage, (n_layers, n_experts):
     * expert e of layer l, among the model's top k with routing weight w
     * (the top k's probabilities over their sum), is predicted to do
     * log damage 2 log(w / (1 - w)) + expert_bias[l, e] when dropped (see
     * gates_calibrate.c). NULL (n_experts 0): the model's own top k. */
    int n_experts;
    float *expert_bias;
};

/* Multiply-accumulate counts of one token's layer compute. */
typedef struct {
    double kv;           /* K and V projections of a running layer */
    double head;         /* one head's Q slice + output slice, per token */
    double head_per_pos; /* one head's attention per attended position */
    double ffn;          /* gate, up, down */
    double ffn_channel;  /* one FFN intermediate channel: its gate and up rows, its down column */
    double router;       /* one layer's layer and head rows (spent whenever gated) */
    double router_block; /* one FFN block row of a router (spent when the layer runs) */
    int n_layers, n_heads;
    int n_blocks;        /* FFN blocks per layer (the model's) */
    int hidden;          /* FFN intermediate size */
    int ffn_block;       /* channels per FFN block (the model's) */
    /* MoE (n_experts > 0): the layer's FFN is one block whose dense compute
     * (ffn) is the model's router plus its k experts */
    int n_experts, experts_used;
    double expert;       /* one expert: its gate, up and down matrices */
    double moe_router;   /* the model's router logits (spent whenever the FFN runs) */
} doze_cost_model;

void cost_model_init(const doze_model_info *info, doze_cost_model *c);
/* one FFN block's compute (the last block may be narrower; MoE: the whole
 * FFN at the model's top k) */
double cost_block(const doze_cost_model *c, int j);
/* one layer's layer and head rows of a router: spent for every layer a
 * gated token decides */
double cost_router(const doze_cost_model *c);
/* the n_blocks FFN block rows of a router: spent only when the layer runs
 * (they are read after its attention) */
double cost_block_router(const doze_cost_model *c, int n_blocks);
/* Dense layer compute of a token attending to n_pos positions. */
double cost_dense(const doze_cost_model *c, int n_pos);

/* A fingerprint of a model's weights that gate files are checked against. */
uint32_t gates_model_fingerprint(const doze_model *m);

doze_gates *gates_alloc(int n_layers, int n_heads, int n_blocks, int dim);
/* rows of a layer's router: 1 + n_heads + n_blocks */
static inline int gates_rows(const doze_gates *g) { return 1 + g->n_heads + g->n_blocks; }

/* z(1 + n_heads) for layer l from xn(dim), the normed layer input: the
 * layer's and the heads' scores. */
void gates_score(const doze_gates *g, const doze_model *m, int layer, const float *xn, float *z);
/* zb(n_blocks) for layer l from hn(dim), the normed FFN input (after the
 * layer's attention): the FFN blocks' scores (nothing when n_blocks == 0). */
void gates_score_blocks(const doze_gates *g, const doze_model *m, int layer, const float *hn, float *zb);

/* The log threshold for a budget (interpolated in the table). */
float gates_log_lambda(const doze_gates *g, float budget);

/* Decides layer l from its scores z(1 + n_heads) at a token attending n_pos
 * positions; fills head_on(n_heads) (all 0 for a skipped layer); returns
 * whether the layer runs. */
int gates_decide(const doze_gates *g, const doze_cost_model *c, int layer, int n_pos,
                 const float *z, float log_lambda, uint8_t *head_on);
/* Decides the FFN blocks of a running layer from their scores zb(n_blocks)
 * (gates_score_blocks); fills blk_on(c->n_blocks) (all 1 when the gates have
 * no block rows). */
void gates_decide_blocks(const doze_gates *g, const doze_cost_model *c, int n_pos, const float *zb,
                         float log_lambda, uint8_t *blk_on);

/* Decides the experts of MoE layer l for a token whose FFN runs, from the
 * model's router probabilities probs(n_experts): the model's top k in
 * order of probability (ties to the lower index), the first always, each
 * next one while its predicted damage per unit of compute clears the
 * price; they stop at the first that does not. Fills on(n_experts). Gates
 * without expert rows (n_experts 0) give the model's top k. */
void gates_decide_experts(const doze_gates *g, const doze_cost_model *c, int layer, int n_pos, const float *probs,
                          float log_lambda, uint8_t *on);

/* The compute of a decided layer (0 if skipped), router excluded; blk_on
 * NULL: every FFN block; expert_on (MoE, n_experts; NULL: the model's k)
 * the experts that ran where the FFN ran. */
double cost_of_layer(const doze_cost_model *c, int layer_on, const uint8_t *head_on,
                     const uint8_t *blk_on, const uint8_t *expert_on, int n_pos);

/* A mixture's expert constants (expert_bias) calibrated again on model m
 * from tokens (the first n, as doze_gates_calibrate does), replacing what g
 * held: after joint training changed the experts, the old constants
 * describe other experts. A dense model, or gates without an FFN block gate
 * (no expert targets): nothing to do. Call before doze_gates_retune, whose
 * table depends on the experts' decisions. */
doze_status gates_refit_experts(doze_model *m, doze_gates *g, const int32_t *tokens, int n, doze_error *err);

#endif
