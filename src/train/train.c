/* Gate fine-tuning by backprop through the frozen transformer.
 *
 * The training forward runs B windows of T tokens layer by layer, each
 * layer the shared training block (block.c) with its gates, and keeps its
 * activations in one buffer carved into named tensors. Per layer l and token n, the router scores (1 + n_heads +
 * n_blocks values: the layer and each head, z = R xn + bias from the normed
 * layer input; each FFN block, z = R_blk hn + bias from the FFN's normed
 * input after attention) become unit scores s = z - log(cost share) -
 * log lambda0, and gates g:
 *   x_mid = x_in + a,  a = sum_h g_h Wo_h o_h       (heads gated)
 *   f = sum_j g_j W_down_j hg_j,  hg = swiglu(W_gate hn, W_up hn),
 *       hn = rmsnorm(x_mid)                         (FFN blocks gated)
 *   x_out = x_in + g_0 (a + f)                     (layer gated)
 * and a token whose layer is off (hard decision) is invisible to later
 * tokens at that layer, as at inference. A mixture of experts' FFN is one
 * FFN block (NB = 1): f is the frozen mixture (train_moe.c) over the
 * experts the gates pick at inference under the window's budget
 * (gates_decide_experts: router order, 1 to k, the chosen probabilities
 * renormalized; the model's top k when dense or protected), gated as a
 * whole, x_out = x_in + g_0 (a + g_ffn f); the experts' choice is a
 * constant of the gradient, which flows through their renormalized weights
 * and the model's router into hn, and their count prices the FFN in the
 * compute term as the runtime's cost model does. Joint on a mixture, the
 * router and the expert stacks learn too (through the chosen experts, the
 * choice still a constant) with the Switch load-balancing term over the
 * experts that ran (moe_balance_ran); with moe_top_k the training forward
 * runs each token's top k (a model trained from scratch has no expert
 * constants until the finish calibrates them). With hard decisions (g in
 * {0, 1}) this is exactly the inference forward under the same masks.
 *
 * Gradients: straight-through over a Gumbel-sigmoid: the forward uses the
 * hard decision 1[s + L > 0] (L logistic noise), the backward the derivative
 * of sigmoid((s + L) / tau). Skipped heads and layers are still computed in
 * training so that their gates get a gradient. The scores' gradient also
 * flows into the routers' inputs (xn, hn) and on through the network, as it
 * should for the exact gradient of the relaxed loss. The loss is KL(dense ||
 * gated) on next-token distributions — distillation towards the model's own
 * dense predictions: it needs no labels, has lower variance than the
 * cross-entropy of the text, and says directly "do what the dense model
 * does" — plus mu (E[compute] - b)^2, E under the relaxed gates. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "adamw.h"
#include "carve.h"
#include "error.h"
#include "gates.h"
#include "types.h"
#include "model.h"
#include "train.h"
#include "train_acts.h"
#include "train_ops.h"
#include "block.h"
#include "train_joint.h"
#include "train_moe.h"

typedef struct {
    block_acts b; /* the block's own activations */
    float *z, *gs, *g; /* (N, 1 + n_heads + NB) router scores, relaxed and hard gates */
    uint8_t *vis;      /* (N) positions visible at this layer */
    tmoe_acts moe;     /* a mixture: the router, the chosen experts, their products */
    float *fc;         /* (N) a mixture: the FFN's share of the dense compute when it
                          runs (its router and its chosen experts) */
} layer_acts;

typedef struct { /* f32 copies of the frozen weights: as stored (for the
                   backward) and transposed (for the forward) */
    float *wq, *wk, *wv, *wo, *w1, *w2, *w3; /* wo: (dim, n_heads * head_dim) */
    float *tq, *tk, *tv, *to, *t1, *t2, *t3; /* transposed */
    /* a mixture (instead of w1, w2, w3): the router (E, D), the experts'
     * gate and up (E, F, D) and down (E, D, F), and each transposed */
    float *er, *eg, *eu, *ed, *ter, *teg, *teu, *ted;
} layer_weights;

struct doze_trainer {
    doze_model *m;
    doze_gates *g;
    doze_train_params p;
    int B, T, N, D, F, H, KV, hd, Q, KVD, L, V, U;
    int NB; /* FFN block gates per layer (0: none; a mixture's: 1) */
    int E, K; /* a mixture: experts per layer, the model's k (0: dense FFN) */
    doze_cost_model cm;
    tmoe_scratch msc;     /* a mixture's scratch, shared by the layers */
    block_ffn ffn_hook;   /* the block's FFN in a mixture */
    int moe_layer;        /* the layer whose experts are being decided */
    layer_weights *w;
    float *wcls, *tcls;
    layer_acts *act;
    float *x_final, *xf, *rinvf, *logits, *teacher;
    double *row_loss; /* (N) each position's loss term, summed in order after the threads */
    /* gradient scratch */
    block_grads gr;
    float *dlogits, *dz, *att_scratch, *zbuf;
    int att_parts; /* attention scratch slots: the model's threads when made */
    /* the pass under way, for the block's router hooks */
    train_mode mode;
    float tau, cgrad;
    float noise; /* the logistic noise's scale in the step under way */
    const uint8_t *vis_in;
    /* joint training: the weights that learn (NULL: gates only); teaching:
     * the pass under way is the dense teacher's (the model's own weights) */
    joint_weights *jw;
    int teaching;
    double balance; /* joint on a mixture: the load-balancing terms of the last forward, summed */
    const int32_t *tokens; /* of the pass under way */
    /* router gradients and Adam state */
    float *dR, *db, *mR, *vR, *mb, *vb;
    /* per position: log cost shares and normalized costs */
    float *log_share_layer, *log_share_head, *fixed_c, *head_c, *router_c;
    /* FFN blocks: per position the FFN's share of the dense compute, per
     * block its fraction of the FFN */
    float *ffn_c, *log_ffn_c, *blk_frac, *log_blk_frac;
    float log_lambda0;
    float dual; /* Lagrange multiplier of E[compute] = budget */
    /* a budget range: each window its own budget (or dense), its log lambda,
     * its expected compute and the compute term's gradient per token */
    int ranged;
    float *win_b, *win_ll, *win_e, *win_cg;
    uint8_t *win_dense;
    double penalty; /* the compute term of the last loss */
    uint64_t rng;
    int step;
    void *mem; /* everything above that is a float/byte buffer lives here */
};

doze_train_params doze_train_default_params(void) {
    doze_train_params p;
    p.budget = 0.7f;
    p.context = 128;
    p.batch = 8;
    p.lr = 2e-2f;
    p.weight_decay = 1e-4f;
    p.compute_weight = 20.0f;
    p.dual_rate = 0.0f;
    p.tau_start = 1.0f;
    p.tau_end = 0.2f;
    p.total_steps = 400; /* 200 before the FFN channel order: gates of both kinds keep improving to
                            ~400 steps (stories260K, b = 0.7: heads + layers 7.06 -> 6.95,
                            + ordered FFN blocks 5.70 -> 5.55), little after (800: 6.82 / 5.53) */
    p.seed = 1;
    p.ffn_gates = 1;
    p.joint = 0;
    p.task_loss = DOZE_LOSS_KL;
    p.weight_lr = 5e-4f;
    p.weight_clip = 1.0f;
    p.weight_lr_min = 0.0f;
    p.weight_warmup = 0;
    p.weight_anchor = 0.0f;
    p.weight_ema = 0.0f;
    p.budget_lo = 0.0f;
    p.budget_hi = 0.0f;
    p.dense_fraction = 0.2f;
    p.lora_rank = 0;
    p.noise_end = 1.0f;
    p.balance_loss = 0.01f; /* the full trainer's default: a mixture fine-tuned jointly keeps
                               the objective it was trained with */
    p.moe_top_k = 0;
    return p;
}

void doze_trainer_free(doze_trainer *t) {
    if (!t) return;
    joint_weights_free(t->jw);
    free(t->mem);
    free(t->w);
    free(t->act);
    free(t);
}

/* ---- a mixture of experts' FFN ------------------------------------------------- */

static tmoe_shape moe_shape_of(const doze_trainer *t) {
    tmoe_shape s;
    memset(&s, 0, sizeof s);
    s.D = t->D;
    s.F = t->F;
    s.E = t->E;
    s.K = t->K;
    /* frozen experts (gates alone, or the teacher): no load-balancing term;
     * joint, the experts learn and the router keeps spreading its load */
    s.balance = t->jw && !t->teaching ? t->p.balance_loss : 0.0f;
    s.pool = t->m->pool;
    s.softmax = t->m->kern->softmax;
    s.swiglu = t->m->kern->swiglu;
    return s;
}

static tmoe_weights moe_weights_of(const doze_trainer *t, int l) {
    if (t->jw && !t->teaching) return joint_moe(t->jw, l);
    const layer_weights *lw = &t->w[l];
    tmoe_weights w = {lw->er, lw->eg, lw->eu, lw->ed, lw->ter, lw->teg, lw->teu, lw->ted};
    return w;
}

static float log_lambda_of(const doze_trainer *t, int n);

/* token n's experts at the layer under way, as inference picks them: the
 * gates under the window's price (no noise: a constant of the gradient), or
 * the model's own top k for the dense teacher, a protected position or a
 * dense window */
static void moe_decide(void *ctx, int n, const float *probs, uint8_t *on) {
    const doze_trainer *t = ctx;
    const int pos = n % t->T;
    const int own = t->mode == TRAIN_DENSE || pos < t->g->params.protect_tokens ||
                    (t->ranged && t->win_dense[n / t->T]) || t->p.moe_top_k;
    gates_decide_experts(own ? NULL : t->g, &t->cm, t->moe_layer, pos + 1, probs, log_lambda_of(t, n), on);
}

/* Joint: the balance term's f_e counts the experts that actually ran, as the
 * runtime's load is: each token's experts chosen under its budget where the
 * layer and its FFN run (hard decisions, decided before the FFN), over the
 * count of those tokens (so that sum_e f_e is the mean experts per running
 * token, k when dense); P_e stays the router's mean probability over every
 * token. Replaces tmoe_forward_decided's f_e (every token's selection, FFN
 * on or off) and the term; f_e is a constant of the gradient. */
static void moe_balance_ran(doze_trainer *t, int l, int N) {
    layer_acts *a = &t->act[l];
    tmoe_acts *m = &a->moe;
    const int E = t->E, K = t->K, U = t->U;
    int ran = 0;
    memset(m->frac, 0, (size_t)E * sizeof(float));
    for (int n = 0; n < N; n++) {
        const float *g = a->g + (size_t)n * U;
        if (!(g[0] > 0.5f) || (t->NB && !(g[1 + t->H] > 0.5f))) continue;
        ran++;
        for (int j = 0; j < m->count[n]; j++) m->frac[m->sel[(size_t)n * K + j]] += 1.0f;
    }
    double bal = 0;
    for (int e = 0; e < E; e++) {
        m->frac[e] = ran ? m->frac[e] / (float)ran : 0.0f;
        double pe = 0;
        for (int n = 0; n < N; n++) pe += m->probs[(size_t)n * E + e];
        bal += (double)m->frac[e] * (pe / N);
    }
    m->balance = (double)t->p.balance_loss * E * bal;
}

static void moe_ffn_forward(void *ctx, int l, const float *hn, float *f, int N) {
    doze_trainer *t = ctx;
    const tmoe_shape s = moe_shape_of(t);
    const tmoe_weights w = moe_weights_of(t, l);
    const tmoe_decider d = {moe_decide, t};
    layer_acts *a = &t->act[l];
    t->moe_layer = l;
    tmoe_forward_decided(&s, &w, &a->moe, &t->msc, hn, f, N, &d);
    /* the FFN's compute when it runs: the model's router and the chosen experts */
    for (int n = 0; n < N; n++)
        a->fc[n] = (float)((t->cm.moe_router + a->moe.count[n] * t->cm.expert) /
                           cost_dense(&t->cm, n % t->T + 1));
    if (s.balance > 0.0f) moe_balance_ran(t, l, N);
}

/* d loss / d hn through the experts and the router; joint, the router's
 * and the experts' weight gradients too (the selection a constant, as
 * Mixtral and Switch train it) and the balance term's; frozen, none */
static void moe_ffn_backward(void *ctx, int l, const float *hn, const float *du, float *dhn, int N) {
    doze_trainer *t = ctx;
    const tmoe_shape s = moe_shape_of(t);
    const tmoe_weights w = moe_weights_of(t, l);
    tmoe_grads g = t->jw ? joint_moe_grads(t->jw, l) : (tmoe_grads){NULL, NULL, NULL, NULL};
    tmoe_backward(&s, &w, &t->act[l].moe, &t->msc, hn, du, dhn, t->jw ? &g : NULL, N);
}

/* ---- memory: one buffer carved into named tensors ---------------------------- */


/* lays out (or, with c->base == NULL, just measures) every buffer */
static void layout(doze_trainer *t, carver *c) {
    size_t N = (size_t)t->N, D = (size_t)t->D, F = (size_t)t->F, Q = (size_t)t->Q;
    size_t KVD = (size_t)t->KVD, U = (size_t)t->U, L = (size_t)t->L, V = (size_t)t->V;
    /* a mixture's FFN keeps its own activations (tmoe_acts), not the block's */
    const size_t FD = t->E ? 0 : F * D, E = (size_t)t->E;
    const int qk = t->m->info.qk_norm;
    const block_sizes bs = {N, D, Q, KVD, t->E ? 0 : F, (size_t)t->B * t->H * t->T * t->T,
                            qk ? (size_t)t->H : 0, qk ? (size_t)t->KV : 0};
    const tmoe_shape ms = moe_shape_of(t);
    for (int l = 0; l < t->L; l++) {
        layer_weights *w = &t->w[l];
        w->wq = carve(c, Q * D);
        w->wk = carve(c, KVD * D);
        w->wv = carve(c, KVD * D);
        w->wo = carve(c, D * Q);
        w->w1 = carve(c, FD);
        w->w2 = carve(c, FD);
        w->w3 = carve(c, FD);
        w->tq = carve(c, Q * D);
        w->tk = carve(c, KVD * D);
        w->tv = carve(c, KVD * D);
        w->to = carve(c, D * Q);
        w->t1 = carve(c, FD);
        w->t2 = carve(c, FD);
        w->t3 = carve(c, FD);
        w->er = carve(c, E * D);
        w->ter = carve(c, E * D);
        w->eg = carve(c, E * F * D);
        w->eu = carve(c, E * F * D);
        w->ed = carve(c, E * D * F);
        w->teg = carve(c, E * F * D);
        w->teu = carve(c, E * F * D);
        w->ted = carve(c, E * D * F);
        layer_acts *a = &t->act[l];
        carve_block_acts(c, &a->b, &bs);
        if (t->E) tmoe_carve_acts(c, &a->moe, &ms, N);
        a->fc = carve(c, t->E ? N : 0);
        a->z = carve(c, N * U);
        a->gs = carve(c, N * U);
        a->g = carve(c, N * U);
        a->vis = carve_bytes(c, N);
    }
    t->wcls = carve(c, V * D);
    t->tcls = carve(c, V * D);
    t->x_final = carve(c, N * D);
    t->xf = carve(c, N * D);
    t->rinvf = carve(c, N);
    t->logits = carve(c, N * V);
    t->teacher = carve(c, N * V);
    t->row_loss = (double *)carve_bytes(c, N * sizeof(double));
    carve_block_grads(c, &t->gr, &bs);
    t->dlogits = carve(c, N * V);
    t->dz = carve(c, N * U);
    t->att_scratch = carve(c, block_att_per_thread(t->T, t->hd) * (size_t)t->att_parts);
    t->zbuf = carve(c, N * U);
    t->dR = carve(c, L * U * D);
    t->db = carve(c, L * U);
    t->mR = carve(c, L * U * D);
    t->vR = carve(c, L * U * D);
    t->mb = carve(c, L * U);
    t->vb = carve(c, L * U);
    t->log_share_layer = carve(c, (size_t)t->T);
    t->log_share_head = carve(c, (size_t)t->T);
    t->fixed_c = carve(c, (size_t)t->T);
    t->head_c = carve(c, (size_t)t->T);
    t->router_c = carve(c, (size_t)t->T);
    t->ffn_c = carve(c, (size_t)t->T);
    t->log_ffn_c = carve(c, (size_t)t->T);
    t->blk_frac = carve(c, (size_t)t->NB + 1);
    t->log_blk_frac = carve(c, (size_t)t->NB + 1);
    t->win_b = carve(c, (size_t)t->B);
    t->win_ll = carve(c, (size_t)t->B);
    t->win_e = carve(c, (size_t)t->B);
    t->win_cg = carve(c, (size_t)t->B);
    t->win_dense = carve_bytes(c, (size_t)t->B);
    if (t->E) tmoe_carve_scratch(c, &t->msc, &ms, N);
}

/* wt(cols, rows) = w(rows, cols)^T */
static void transpose(float *wt, const float *w, int rows, int cols) {
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) wt[(size_t)c * rows + r] = w[(size_t)r * cols + c];
}

/* widens a model matrix into f32 (dst(rows, cols), row stride ld) */
static void widen_ld(float *dst, int ld, const doze_matrix *w) {
    for (int r = 0; r < w->rows; r++) model_dequantize_row(w, r, dst + (size_t)r * ld);
}

/* The first rule the parameters break (what the error names), or NULL. */
static const char *train_params_problem(const doze_train_params *p, int context_length) {
    const float rates[] = {p->lr,           p->tau_start, p->tau_end,       p->compute_weight, p->weight_decay,
                           p->dual_rate,    p->weight_lr, p->weight_lr_min, p->weight_clip,    p->balance_loss,
                           p->weight_anchor, p->noise_end};
    for (size_t i = 0; i < sizeof rates / sizeof rates[0]; i++)
        if (!isfinite(rates[i])) return "every rate, weight and temperature must be finite";
    if (!(p->budget > 0.0f && p->budget <= 1.0f)) return "the budget must be in (0, 1]";
    if (p->context < 2 || p->context > 4096 || p->context > context_length)
        return "the context must be in [2, min(4096, the model's context)]";
    if (p->batch < 1 || p->batch > 1024) return "the batch must be in [1, 1024]";
    if (p->total_steps < 1) return "the steps must be >= 1";
    if (!(p->lr > 0.0f)) return "the gates' learning rate must be > 0";
    if (!(p->tau_start > 0.0f) || !(p->tau_end > 0.0f)) return "the temperatures must be > 0";
    if (!(p->compute_weight >= 0.0f)) return "the compute weight must be >= 0";
    if (!(p->weight_decay >= 0.0f)) return "the weight decay must be >= 0";
    if (!(p->noise_end >= 0.0f && p->noise_end <= 1.0f)) return "the noise end must be in [0, 1]";
    if (!(p->balance_loss >= 0.0f)) return "the balance loss must be >= 0";
    if (p->task_loss != DOZE_LOSS_KL && p->task_loss != DOZE_LOSS_CE) return "the loss must be KL or CE";
    if (p->joint && !(p->weight_lr > 0.0f)) return "the weights' learning rate must be > 0";
    if (p->joint && !(p->weight_clip >= 0.0f)) return "the weights' clip must be >= 0";
    if (p->joint && !(p->weight_lr_min >= 0.0f)) return "the weights' minimum rate must be >= 0";
    if (p->joint && p->weight_warmup < 0) return "the weights' warm-up must be >= 0 steps";
    if (p->budget_lo != 0.0f &&
        !(p->budget_lo > 0.0f && p->budget_lo <= p->budget_hi && p->budget_hi <= 1.0f))
        return "the budget range must be 0 < lo <= hi <= 1";
    if (p->budget_lo != 0.0f && !(p->dense_fraction >= 0.0f && p->dense_fraction < 1.0f))
        return "the dense fraction must be in [0, 1)";
    return NULL;
}

static void widen(float *dst, const doze_matrix *w) { widen_ld(dst, w->cols, w); }

doze_status doze_trainer_new(doze_model *m, doze_gates *g, const doze_train_params *p,
                             doze_trainer **out, doze_error *err) {
    if (!m || !g || !out) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no model, gates or output");
    *out = NULL;
    const doze_model_info *c = &m->info;
    doze_train_params prm = p ? *p : doze_train_default_params();
    /* The block trains on the weights as loaded: NeoX rows already permuted
     * into adjacent pairs (so its RoPE is the runtime's; the joint writer
     * puts them back), Q/K/V biases and q/k norms included. */
    /* joint on a mixture: every weight including the router and the expert
     * stacks; adapters are for dense projections only */
    if (c->n_experts && prm.joint && prm.lora_rank > 0)
        return doze_fail(err, DOZE_ERR_UNSUPPORTED_TYPE,
                         "low-rank adapters on a mixture of experts (%d experts) are not supported: "
                         "fine-tune every weight jointly (without --lora)", c->n_experts);
    if (c->n_experts > 256)
        return doze_fail(err, DOZE_ERR_UNSUPPORTED_TYPE,
                         "training gates on a mixture of %d experts is not supported (at most 256)",
                         c->n_experts);
    if (g->n_layers != c->n_layers || g->n_heads != c->n_heads || g->dim != c->dim ||
        (g->n_blocks != 0 && g->n_blocks != m->n_ffn_blocks))
        return doze_fail(err, DOZE_ERR_BAD_SHAPE, "gates do not fit this model");
    const char *bad = train_params_problem(&prm, c->context_length);
    if (bad)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "train params out of range: %s (budget %g, context %d, batch %d, "
                         "steps %d)", bad, (double)prm.budget, prm.context, prm.batch, prm.total_steps);
    if (prm.lora_rank < 0 || (prm.lora_rank > 0 && !prm.joint))
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT,
                         "low-rank adapters (rank %d) need joint training and a rank >= 1", prm.lora_rank);
    if (!(prm.weight_anchor >= 0.0f) || (prm.weight_anchor > 0.0f && (!prm.joint || prm.lora_rank > 0)))
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT,
                         "weight anchor %g: a rate >= 0 that pulls the weights of a joint fine-tune of every "
                         "weight (not gates only, not adapters) towards where they started",
                         (double)prm.weight_anchor);
    if (!(prm.weight_ema >= 0.0f && prm.weight_ema < 1.0f) ||
        (prm.weight_ema > 0.0f && (!prm.joint || prm.lora_rank > 0)))
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT,
                         "weight average %g: a decay in (0, 1) for a joint fine-tune of every weight (not gates "
                         "only, not adapters), or 0 for none",
                         (double)prm.weight_ema);
    doze_trainer *t = calloc(1, sizeof *t);
    if (!t) return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for a trainer");
    t->m = m;
    t->g = g;
    t->p = prm;
    t->att_parts = pool_threads(m->pool);
    t->B = prm.batch;
    t->T = prm.context;
    t->N = t->B * t->T;
    t->D = c->dim;
    t->F = c->hidden_dim;
    t->H = c->n_heads;
    t->KV = c->n_kv_heads;
    t->hd = c->head_dim;
    t->Q = t->H * t->hd;
    t->KVD = t->KV * t->hd;
    t->L = c->n_layers;
    t->V = c->vocab_size;
    t->NB = g->n_blocks;
    t->U = 1 + t->H + t->NB;
    t->E = c->n_experts;
    t->K = c->n_experts ? c->n_experts_used : 0;
    cost_model_init(c, &t->cm);
    t->rng = prm.seed ? prm.seed : 0x9E3779B97F4A7C15ull;
    t->noise = 1.0f;
    t->w = calloc((size_t)t->L, sizeof *t->w);
    t->act = calloc((size_t)t->L, sizeof *t->act);
    carver measure = {NULL, 0};
    if (t->w && t->act) layout(t, &measure);
    t->mem = t->w && t->act ? calloc(1, measure.at + 64) : NULL;
    if (!t->mem) {
        doze_trainer_free(t);
        return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for training (%zu bytes)",
                         measure.at);
    }
    carver cv = {(uint8_t *)t->mem, 0};
    layout(t, &cv);
    for (int l = 0; l < t->L; l++) {
        const doze_layer *ly = &m->layers[l];
        widen(t->w[l].wq, &ly->wq);
        widen(t->w[l].wk, &ly->wk);
        widen(t->w[l].wv, &ly->wv);
        for (int h = 0; h < t->H; h++) /* Wo(D, Q) from its heads' column blocks */
            widen_ld(t->w[l].wo + (size_t)h * t->hd, t->Q, &ly->wo_head[h]);
        if (t->E) { /* expert e's rows of each stack are contiguous */
            widen(t->w[l].er, &ly->w_router);
            widen(t->w[l].eg, &ly->w_gate);
            widen(t->w[l].eu, &ly->w_up);
            widen(t->w[l].ed, &ly->w_down);
            continue;
        }
        widen(t->w[l].w1, &ly->w_gate);
        for (int j = 0; j < m->n_ffn_blocks; j++) /* W2(D, F) from its column blocks */
            widen_ld(t->w[l].w2 + (size_t)j * c->ffn_block, t->F, &ly->w_down_blk[j]);
        widen(t->w[l].w3, &ly->w_up);
    }
    widen(t->wcls, &m->output);
    transpose(t->tcls, t->wcls, t->V, t->D);
    for (int l = 0; l < t->L; l++) {
        layer_weights *w = &t->w[l];
        transpose(w->tq, w->wq, t->Q, t->D);
        transpose(w->tk, w->wk, t->KVD, t->D);
        transpose(w->tv, w->wv, t->KVD, t->D);
        transpose(w->to, w->wo, t->D, t->Q);
        if (t->E) {
            const size_t fd = (size_t)t->F * t->D;
            transpose(w->ter, w->er, t->E, t->D);
            for (int e = 0; e < t->E; e++) {
                transpose(w->teg + e * fd, w->eg + e * fd, t->F, t->D);
                transpose(w->teu + e * fd, w->eu + e * fd, t->F, t->D);
                transpose(w->ted + e * fd, w->ed + e * fd, t->D, t->F);
            }
            continue;
        }
        transpose(w->t1, w->w1, t->F, t->D);
        transpose(w->t2, w->w2, t->D, t->F);
        transpose(w->t3, w->w3, t->F, t->D);
    }
    if (t->E) {
        t->ffn_hook.forward = moe_ffn_forward;
        t->ffn_hook.backward = moe_ffn_backward;
        t->ffn_hook.ctx = t;
    }
    const doze_cost_model cm = t->cm;
    for (int pos = 0; pos < t->T; pos++) {
        double dense = cost_dense(&cm, pos + 1);
        double head = cm.head + cm.head_per_pos * (pos + 1);
        t->log_share_layer[pos] = (float)log((cm.kv + cm.ffn + t->H * head) / dense);
        t->log_share_head[pos] = (float)log(head / dense);
        /* a running layer: K/V, and the FFN (no block gates) or the block rows
         * of its router; a mixture's FFN costs what its tokens' experts do (fc) */
        t->fixed_c[pos] = (float)((cm.kv + (t->NB ? cost_block_router(&cm, t->NB) : t->E ? 0.0 : cm.ffn)) / dense);
        t->head_c[pos] = (float)(head / dense);
        t->router_c[pos] = (float)(t->L * cost_router(&cm) / dense);
        t->ffn_c[pos] = (float)(cm.ffn / dense);
        t->log_ffn_c[pos] = (float)log(cm.ffn / dense);
    }
    for (int j = 0; j < t->NB; j++) {
        t->blk_frac[j] = (float)(cost_block(&cm, j) / cm.ffn);
        t->log_blk_frac[j] = (float)log(cost_block(&cm, j) / cm.ffn);
    }
    t->log_lambda0 = gates_log_lambda(g, prm.budget);
    t->ranged = prm.budget_lo > 0.0f;
    for (int w = 0; w < t->B && t->ranged; w++) { /* until a step draws them */
        t->win_b[w] = 0.5f * (prm.budget_lo + prm.budget_hi);
        t->win_ll[w] = gates_log_lambda(g, t->win_b[w]);
    }
    if (prm.joint) {
        doze_status st = joint_weights_new(m, &t->jw, err);
        if (st == DOZE_OK && prm.lora_rank > 0) st = joint_lora_init(t->jw, prm.lora_rank, prm.seed, err);
        if (st == DOZE_OK && prm.weight_anchor > 0.0f) st = joint_anchor_set(t->jw, err);
        if (st == DOZE_OK && prm.weight_ema > 0.0f) st = joint_ema_set(t->jw, err);
        if (st != DOZE_OK) {
            doze_trainer_free(t);
            return st;
        }
    }
    *out = t;
    return DOZE_OK;
}

float *trainer_grad_router(doze_trainer *t) { return t->dR; }
const float *trainer_logits(const doze_trainer *t) { return t->logits; }

void trainer_masks(const doze_trainer *t, uint8_t *layer_on, uint8_t *head_on, uint8_t *ffn_on) {
    const int nb = t->m->n_ffn_blocks;
    for (int n = 0; n < t->N; n++)
        for (int l = 0; l < t->L; l++) {
            const float *g = t->act[l].g + (size_t)n * t->U;
            int on = g[0] > 0.5f;
            layer_on[(size_t)n * t->L + l] = (uint8_t)on;
            for (int h = 0; h < t->H; h++)
                head_on[((size_t)n * t->L + l) * t->H + h] = (uint8_t)(on && g[1 + h] > 0.5f);
            if (ffn_on)
                for (int j = 0; j < nb; j++)
                    ffn_on[((size_t)n * t->L + l) * nb + j] =
                        (uint8_t)(on && (t->NB == 0 || g[1 + t->H + j] > 0.5f));
        }
}

void trainer_expert_masks(const doze_trainer *t, int all, uint8_t *expert_on) {
    const int E = t->E, K = t->K;
    if (!E) return; /* dense: no experts */
    memset(expert_on, 0, (size_t)t->N * t->L * E);
    for (int n = 0; n < t->N; n++)
        for (int l = 0; l < t->L; l++) {
            const float *g = t->act[l].g + (size_t)n * t->U;
            if (!all && (!(g[0] > 0.5f) || (t->NB && !(g[1 + t->H] > 0.5f)))) continue; /* the FFN does not run */
            const tmoe_acts *a = &t->act[l].moe;
            for (int j = 0; j < a->count[n]; j++) expert_on[((size_t)n * t->L + l) * E + a->sel[(size_t)n * K + j]] = 1;
        }
}

float *trainer_grad_bias(doze_trainer *t) { return t->db; }
joint_weights *trainer_joint(doze_trainer *t) { return t->jw; }

doze_status trainer_check_model(const doze_trainer *t, const void *file, size_t n, doze_error *err) {
    if (!t->jw) return doze_fail(err, DOZE_ERR_STATE, "only joint training changes the model");
    return joint_check_file(t->jw, file, n, err);
}

doze_status trainer_write_model(const doze_trainer *t, const void *file, size_t n,
                                int (*fn)(void *ctx, const void *bytes, size_t len), void *ctx,
                                doze_error *err) {
    if (!t->jw) return doze_fail(err, DOZE_ERR_STATE, "only joint training changes the model");
    return joint_write(t->jw, file, n, fn, ctx, err);
}

/* ---- gates -------------------------------------------------------------------------- */

static float sigmoidf(float x) { return 1.0f / (1.0f + doze_expf(-x)); }

/* in (0, 1) */
static double uniform(uint64_t *s) {
    *s ^= *s >> 12, *s ^= *s << 25, *s ^= *s >> 27;
    return ((double)((*s * 0x2545F4914F6CDD1Dull) >> 11) + 0.5) / 9007199254740992.0;
}

static float logistic_noise(uint64_t *s) {
    *s ^= *s >> 12, *s ^= *s << 25, *s ^= *s >> 27;
    double u = ((double)((*s * 0x2545F4914F6CDD1Dull) >> 11) + 0.5) / 9007199254740992.0;
    return (float)(log(u) - log1p(-u));
}

/* a unit always on at token n: protected by the gates' params, or its window is dense */
static int is_protected(const doze_trainer *t, int l, int u, int n) {
    int pos = n % t->T;
    return pos < t->g->params.protect_tokens || (u == 0 && l < t->g->params.protect_layers) ||
           (t->ranged && t->win_dense[n / t->T]);
}

/* the threshold offset log lambda of token n's budget */
static float log_lambda_of(const doze_trainer *t, int n) {
    return t->ranged ? t->win_ll[n / t->T] : t->log_lambda0;
}

/* log of unit u's share of the dense compute at position pos */
static float unit_log_share(const doze_trainer *t, int u, int pos) {
    if (u == 0) return t->log_share_layer[pos];
    if (u <= t->H) return t->log_share_head[pos];
    return t->log_ffn_c[pos] + t->log_blk_frac[u - 1 - t->H];
}

/* unit u's compute (a head's or an FFN block's) at layer l, token n; a
 * mixture's FFN block costs its router and the experts chosen for n */
static float unit_cost(const doze_trainer *t, int l, int n, int u) {
    const int pos = n % t->T;
    if (u <= t->H) return t->head_c[pos];
    if (t->E) return t->act[l].fc[n];
    return t->ffn_c[pos] * t->blk_frac[u - 1 - t->H];
}

/* the compute of layer l running at token n besides its gated units (a
 * mixture without FFN block gates: its FFN too) */
static float fixed_cost(const doze_trainer *t, int l, int n) {
    const float c = t->fixed_c[n % t->T];
    return t->E && !t->NB ? c + t->act[l].fc[n] : c;
}

/* scores -> gate values used in the forward (g) and the relaxed values
 * whose derivative the backward uses (gs), for units u0 .. u1 of layer l
 * from their router rows' input in(N, D): the layer and its heads (u0 = 0,
 * u1 = 1 + H) from xn, which also sets the layer's visibility; the FFN
 * blocks (1 + H .. U) from hn */
static void gates_forward(doze_trainer *t, int l, int u0, int u1, const float *in, train_mode mode,
                          float tau, const uint8_t *vis_in) {
    layer_acts *a = &t->act[l];
    const int k = u1 - u0;
    if (k <= 0) return;
    const float *R = t->g->router + ((size_t)l * t->U + (size_t)u0) * t->D;
    const float *bias = t->g->bias + (size_t)l * t->U;
    matmul_forward(t->zbuf, in, R, t->N, k, t->D); /* (N, k) */
    for (int n = 0; n < t->N; n++) {
        int pos = n % t->T;
        float *z = a->z + (size_t)n * t->U, *gs = a->gs + (size_t)n * t->U, *g = a->g + (size_t)n * t->U;
        for (int u = u0; u < u1; u++) {
            z[u] = t->zbuf[(size_t)n * k + (u - u0)] + bias[u];
            if (mode == TRAIN_DENSE || is_protected(t, l, u, n)) {
                gs[u] = g[u] = 1.0f;
                continue;
            }
            float s = z[u] - unit_log_share(t, u, pos) - log_lambda_of(t, n);
            if (mode == TRAIN_HARD || mode == TRAIN_DECIDE) {
                float noisy = mode == TRAIN_HARD ? s + t->noise * logistic_noise(&t->rng) : s;
                gs[u] = sigmoidf(noisy / tau);
                g[u] = noisy >= 0.0f ? 1.0f : 0.0f; /* inference runs a unit at s >= 0 */
            } else {
                gs[u] = sigmoidf(s / tau);
                g[u] = gs[u];
            }
        }
        if (u0 > 0) continue;
        int layer_on = mode == TRAIN_SOFT ? g[0] >= 0.5f : g[0] > 0.0f;
        a->vis[n] = (uint8_t)(vis_in ? vis_in[(size_t)l * t->N + n] != 0 : layer_on);
    }
}

/* ---- forward ------------------------------------------------------------------------ */

/* the block's router hooks: the pass under way is in t */
static void decide_hook(void *ctx, int l, int u0, int u1, const float *in) {
    doze_trainer *t = ctx;
    gates_forward(t, l, u0, u1, in, t->mode, t->tau, t->vis_in);
}

static void score_backward(doze_trainer *t, int l, int u0, int u1, float tau, float cgrad);
static void router_backward(doze_trainer *t, int l, int u0, int u1, const float *in, float *din);

static void router_backward_hook(void *ctx, int l, int u0, int u1, const float *in, float *din) {
    doze_trainer *t = ctx;
    score_backward(t, l, u0, u1, t->tau, t->cgrad);
    router_backward(t, l, u0, u1, in, din);
}

static block_shape shape_of(doze_trainer *t) {
    const doze_model *m = t->m;
    block_shape s;
    memset(&s, 0, sizeof s);
    s.T = t->T;
    s.D = t->D;
    s.F = t->F;
    s.H = t->H;
    s.KV = t->KV;
    s.hd = t->hd;
    s.rope_dim = m->info.rope_dim;
    s.eps = m->info.norm_eps;
    s.rope_cos = m->rope_cos;
    s.rope_sin = m->rope_sin;
    s.softmax = m->kern->softmax;
    s.swiglu = m->kern->swiglu;
    s.pool = m->pool; /* the model's threads, read at every step: they may change */
    s.att_parts = t->att_parts;
    s.att_scratch = t->att_scratch;
    s.att_per_thread = block_att_per_thread(t->T, t->hd);
    s.all_visible = NULL; /* always gated */
    s.ffn_block = m->info.ffn_block;
    s.ffn = t->E ? &t->ffn_hook : NULL;
    return s;
}

static block_weights weights_of(const doze_trainer *t, int l) {
    if (t->jw && !t->teaching) return joint_block(t->jw, l);
    const layer_weights *lw = &t->w[l];
    const doze_layer *ly = &t->m->layers[l];
    block_weights w;
    w.attn_norm = ly->attn_norm;
    w.ffn_norm = ly->ffn_norm;
    w.bq = ly->bq, w.bk = ly->bk, w.bv = ly->bv; /* as loaded: NeoX rows already in adjacent pairs */
    w.q_norm = ly->q_norm, w.k_norm = ly->k_norm;
    w.wq = lw->wq, w.wk = lw->wk, w.wv = lw->wv, w.wo = lw->wo;
    w.w1 = lw->w1, w.w2 = lw->w2, w.w3 = lw->w3;
    w.tq = lw->tq, w.tk = lw->tk, w.tv = lw->tv, w.to = lw->to;
    w.t1 = lw->t1, w.t2 = lw->t2, w.t3 = lw->t3;
    return w;
}

static block_gating gating_of(doze_trainer *t, int l) {
    block_gating g;
    g.U = t->U;
    g.NB = t->NB;
    g.g = t->act[l].g;
    g.dg = t->dz;
    g.vis = t->act[l].vis;
    g.decide = decide_hook;
    g.router_backward = router_backward_hook;
    g.ctx = t;
    return g;
}

static void forward(doze_trainer *t, const int32_t *tokens, train_mode mode, float tau,
                    const uint8_t *vis_in) {
    const doze_model *m = t->m;
    const int N = t->N, D = t->D;
    const block_shape s = shape_of(t);
    t->mode = mode;
    t->tau = tau;
    t->vis_in = vis_in;
    t->tokens = tokens;
    const int learned = t->jw && !t->teaching;
    float *x = t->x_final; /* the stream, carried from layer to layer */
    for (int n = 0; n < N; n++)
        if (learned)
            memcpy(x + (size_t)n * D, joint_embedding(t->jw) + (size_t)tokens[n] * D, (size_t)D * sizeof(float));
        else
            model_embed(m, tokens[n], x + (size_t)n * D);
    for (int l = 0; l < t->L; l++) {
        const block_weights w = weights_of(t, l);
        const block_gating g = gating_of(t, l);
        block_forward(&s, &w, &t->act[l].b, &g, l, x, &t->gr, t->B);
    }
    rmsnorm_forward(t->xf, t->rinvf, x, learned ? joint_output_norm(t->jw) : m->output_norm, N, D,
                    m->info.norm_eps);
    matmul_forward_t_par(t->logits, t->xf, learned ? joint_classifier_t(t->jw) : t->tcls, N, t->V, D, m->pool);
}

doze_status trainer_set_teacher(doze_trainer *t, const int32_t *tokens, doze_error *err) {
    for (int n = 0; n < t->N; n++)
        if (tokens[n] < 0 || tokens[n] >= t->V)
            return doze_fail(err, DOZE_ERR_TOKEN_RANGE, "token id %d is out of range [0, %d)",
                             tokens[n], t->V);
    t->teaching = 1; /* the model's own weights, dense */
    forward(t, tokens, TRAIN_DENSE, 1.0f, NULL);
    t->teaching = 0;
    softmax_rows_par(t->teacher, t->logits, t->N, t->V, t->m->kern->softmax, t->m->pool);
    return DOZE_OK;
}

/* ---- loss ----------------------------------------------------------------------------- */

/* The task loss by rows of the logits, split across the model's threads:
 * each row's softmax and loss term computed alone, the terms summed in row
 * order afterwards, so the loss and dlogits do not depend on the threads. */
typedef struct {
    doze_trainer *t;
    int ce; /* cross-entropy of the next tokens (else KL to the teacher) */
    int count; /* cross-entropy: counted tokens */
} loss_job;

static void loss_rows(void *args, int begin, int end, int part) {
    (void)part;
    const loss_job *j = args;
    doze_trainer *t = j->t;
    const int V = t->V, T = t->T, N = t->N;
    for (int n = begin; n < end; n++) {
        float *q = t->dlogits + (size_t)n * V;
        memcpy(q, t->logits + (size_t)n * V, (size_t)V * sizeof(float));
        t->m->kern->softmax(q, V);
        double term = 0;
        if (!j->ce) { /* KL(teacher || q); dlogits = (q - p) / N */
            const float *p = t->teacher + (size_t)n * V;
            for (int v = 0; v < V; v++)
                if (p[v] > 0.0f) term += (double)p[v] * (log((double)p[v]) - log((double)q[v] + 1e-30));
            for (int v = 0; v < V; v++) q[v] = (q[v] - p[v]) / (float)N;
        } else if (n % T == T - 1) { /* a window's last position has no next token */
            memset(q, 0, (size_t)V * sizeof(float));
        } else {
            const int y = t->tokens[n + 1];
            term = -log((double)q[y] + 1e-30);
            q[y] -= 1.0f;
            for (int v = 0; v < V; v++) q[v] /= (float)j->count;
        }
        t->row_loss[n] = term;
    }
}

static double row_losses(doze_trainer *t, int ce, int count) {
    loss_job j = {t, ce, count};
    pool_run(t->m->pool, loss_rows, &j, t->N, 1, 16, 0);
    double sum = 0;
    for (int n = 0; n < t->N; n++) sum += t->row_loss[n];
    return sum;
}

/* KL(dense || gated) per position, mean; dlogits = (softmax - teacher) / N */
static double kl_loss(doze_trainer *t) { return row_losses(t, 0, 0) / t->N; }

/* cross-entropy of each window's next tokens (the last position of a
 * window has none: it does not count), mean per counted token;
 * dlogits = (softmax - onehot) / count */
static double ce_loss(doze_trainer *t) {
    const int count = t->B * (t->T - 1);
    return row_losses(t, 1, count) / count;
}

/* relaxed probability of a unit: pi = sigmoid(s / tau) (1 when protected) */
static float unit_prob(const doze_trainer *t, int l, int n, int u, float tau) {
    int pos = n % t->T;
    if (is_protected(t, l, u, n)) return 1.0f;
    float z = t->act[l].z[(size_t)n * t->U + u];
    float s = z - unit_log_share(t, u, pos) - log_lambda_of(t, n);
    return sigmoidf(s / tau);
}

/* expected compute under pi, the hard compute under g; with want_grad adds
 * d(mu (E - b)^2)/dz into t->dz layer by layer (called per layer below) */
static void compute_terms(doze_trainer *t, float tau, double *expected, double *achieved) {
    double e = 0, h = 0, ew = 0;
    for (int n = 0; n < t->N; n++) {
        int pos = n % t->T;
        double e0 = e;
        e += t->router_c[pos];
        h += t->router_c[pos];
        for (int l = 0; l < t->L; l++) {
            const float *g = t->act[l].g + (size_t)n * t->U;
            double pl = unit_prob(t, l, n, 0, tau), units_p = 0, units_g = 0;
            for (int u = 1; u < t->U; u++) {
                double c = unit_cost(t, l, n, u);
                units_p += c * unit_prob(t, l, n, u, tau);
                units_g += c * (g[u] > 0.5f);
            }
            e += pl * (fixed_cost(t, l, n) + units_p);
            h += (g[0] > 0.5f) * (fixed_cost(t, l, n) + units_g);
        }
        ew += e - e0; /* each window's mean, for a budget range */
        if (pos == t->T - 1) {
            t->win_e[n / t->T] = (float)(ew / t->T);
            ew = 0;
        }
    }
    *expected = e / t->N;
    *achieved = h / t->N;
}

/* ---- backward -------------------------------------------------------------------------- */

/* units u0 .. u1 of layer l: dz (the loss's gradient w.r.t. the gate
 * values, in t->dz) becomes the gradient w.r.t. the scores: the relaxed
 * gate's derivative, plus the compute term's (cgrad = d(penalty)/dE / N) */
static void score_backward(doze_trainer *t, int l, int u0, int u1, float tau, float cgrad) {
    const int U = t->U;
    const layer_acts *a = &t->act[l];
    for (int n = 0; n < t->N; n++) {
        float *dz = t->dz + (size_t)n * U;
        const float *gs = a->gs + (size_t)n * U;
        float pl = unit_prob(t, l, n, 0, tau), units_p = 0;
        if (u0 == 0)
            for (int u = 1; u < U; u++) units_p += unit_cost(t, l, n, u) * unit_prob(t, l, n, u, tau);
        for (int u = u0; u < u1; u++) {
            if (is_protected(t, l, u, n)) {
                dz[u] = 0.0f;
                continue;
            }
            if (t->ranged) cgrad = t->win_cg[n / t->T];
            float ds = dz[u] * gs[u] * (1.0f - gs[u]) / tau;
            float pi = unit_prob(t, l, n, u, tau);
            float dpi = u == 0 ? cgrad * (fixed_cost(t, l, n) + units_p) : cgrad * pl * unit_cost(t, l, n, u);
            dz[u] = ds + dpi * pi * (1.0f - pi) / tau;
        }
    }
}

/* the router rows of units u0 .. u1 of layer l, z = R in + bias:
 * dR += dz^T in, db += sum dz, din += dz R */
static void router_backward(doze_trainer *t, int l, int u0, int u1, const float *in, float *din) {
    const int N = t->N, D = t->D, U = t->U, k = u1 - u0;
    if (k <= 0) return;
    float *dR = t->dR + (size_t)l * U * D, *db = t->db + (size_t)l * U;
    for (int n = 0; n < N; n++) {
        const float *dz = t->dz + (size_t)n * U, *x = in + (size_t)n * D;
        for (int u = u0; u < u1; u++) {
            t->zbuf[(size_t)n * k + (u - u0)] = dz[u];
            if (dz[u] == 0.0f) continue;
            db[u] += dz[u];
            float *dr = dR + (size_t)u * D;
            for (int i = 0; i < D; i++) dr[i] += dz[u] * x[i];
        }
    }
    matmul_backward(din, t->zbuf, t->g->router + ((size_t)l * U + (size_t)u0) * D, N, k, D);
}

static void backward(doze_trainer *t, float tau, double expected) {
    const doze_model *m = t->m;
    const int N = t->N, D = t->D, U = t->U;
    const block_shape s = shape_of(t);
    t->tau = tau;
    t->cgrad = (2.0f * t->p.compute_weight * (float)(expected - t->p.budget) + t->dual) / (float)N;
    memset(t->dR, 0, (size_t)t->L * U * D * sizeof(float));
    memset(t->db, 0, (size_t)t->L * U * sizeof(float));
    memset(t->gr.dx, 0, (size_t)N * D * sizeof(float));
    memset(t->gr.dtmp, 0, (size_t)N * D * sizeof(float));
    joint_weights *jw = t->jw;
    if (!jw) {
        matmul_backward_par(t->gr.dtmp, t->dlogits, t->wcls, N, t->V, D, m->pool); /* dxf */
        rmsnorm_backward(t->gr.dx, t->gr.dtmp, t->x_final, t->rinvf, m->output_norm, N, D);
        for (int l = t->L - 1; l >= 0; l--) {
            const block_weights w = weights_of(t, l);
            const block_gating g = gating_of(t, l);
            block_backward(&s, &w, &t->act[l].b, &g, l, &t->gr, NULL, t->B);
        }
        return;
    }
    /* joint: the weights' gradients too, the same path in reverse */
    memset(joint_grads(jw), 0, joint_n_params(jw) * sizeof(float));
    matmul_backward_par(t->gr.dtmp, t->dlogits, joint_classifier(jw), N, t->V, D, m->pool); /* dxf */
    matmul_backward_weights(joint_classifier_grad(jw), t->dlogits, t->xf, N, t->V, D, t->m->pool);
    rmsnorm_backward_weights(joint_output_norm_grad(jw), t->gr.dtmp, t->x_final, t->rinvf, N, D);
    rmsnorm_backward(t->gr.dx, t->gr.dtmp, t->x_final, t->rinvf, joint_output_norm(jw), N, D);
    for (int l = t->L - 1; l >= 0; l--) {
        const block_weights w = joint_block(jw, l);
        block_weight_grads dw = joint_block_grads(jw, l);
        const block_gating g = gating_of(t, l);
        block_backward(&s, &w, &t->act[l].b, &g, l, &t->gr, &dw, t->B);
    }
    float *ge = joint_embedding_grad(jw); /* embedding rows, in token order */
    for (int n = 0; n < N; n++) {
        float *gr = ge + (size_t)t->tokens[n] * D;
        const float *d = t->gr.dx + (size_t)n * D;
        for (int i = 0; i < D; i++) gr[i] += d[i];
    }
    joint_lora_backward(jw); /* adapters: from the merged weights' gradients */
}

doze_status trainer_loss_grad(doze_trainer *t, const int32_t *tokens, train_mode mode, float tau,
                              const uint8_t *vis_in, uint8_t *vis_out, int want_grad,
                              double *loss, doze_error *err) {
    for (int n = 0; n < t->N; n++)
        if (tokens[n] < 0 || tokens[n] >= t->V)
            return doze_fail(err, DOZE_ERR_TOKEN_RANGE, "token id %d is out of range [0, %d)",
                             tokens[n], t->V);
    forward(t, tokens, mode, tau, vis_in);
    double kl = t->p.task_loss == DOZE_LOSS_CE ? ce_loss(t) : kl_loss(t), expected, achieved;
    compute_terms(t, tau, &expected, &achieved);
    t->balance = 0; /* joint on a mixture: the load-balancing terms join the loss */
    for (int l = 0; l < t->L && t->E && t->jw; l++) t->balance += t->act[l].moe.balance;
    kl += t->balance;
    double d = expected - t->p.budget;
    if (!t->ranged) {
        *loss = kl + t->p.compute_weight * d * d + t->dual * d;
    } else { /* mu * mean over the gated windows of (E_w - b_w)^2 */
        int active = 0;
        for (int w = 0; w < t->B; w++) active += !t->win_dense[w];
        double pen = 0;
        for (int w = 0; w < t->B; w++) {
            double dw = t->win_dense[w] ? 0.0 : (double)t->win_e[w] - t->win_b[w];
            pen += dw * dw;
            t->win_cg[w] = active ? (float)(2.0 * t->p.compute_weight * dw / ((double)active * t->T)) : 0.0f;
        }
        t->penalty = active ? t->p.compute_weight * pen / active : 0.0;
        *loss = kl + t->penalty;
    }
    if (vis_out)
        for (int l = 0; l < t->L; l++) memcpy(vis_out + (size_t)l * t->N, t->act[l].vis, (size_t)t->N);
    if (want_grad) backward(t, tau, expected);
    return DOZE_OK;
}

/* the weights' learning rate at step (from 0): linear warm-up, then constant
 * or a cosine down to weight_lr_min */
static float weight_lr_at(const doze_train_params *p, int step) {
    if (step < p->weight_warmup) return p->weight_lr * (float)(step + 1) / (float)p->weight_warmup;
    if (!(p->weight_lr_min > 0.0f)) return p->weight_lr;
    int span = p->total_steps - p->weight_warmup;
    double prog = span > 1 ? (double)(step - p->weight_warmup) / (double)(span - 1) : 1.0;
    if (prog > 1.0) prog = 1.0;
    return (float)(p->weight_lr_min + 0.5 * (p->weight_lr - p->weight_lr_min) *
                                          (1.0 + cos(3.14159265358979323846 * prog)));
}

/* ---- the step ---------------------------------------------------------------------------- */

doze_status doze_trainer_step(doze_trainer *t, const int32_t *tokens, doze_train_stats *stats,
                              doze_error *err) {
    if (!t || !tokens) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no trainer or tokens");
    doze_status st = t->p.task_loss == DOZE_LOSS_KL ? trainer_set_teacher(t, tokens, err) : DOZE_OK;
    if (st != DOZE_OK) return st;
    float frac = t->p.total_steps > 1 ? (float)t->step / (float)(t->p.total_steps - 1) : 1.0f;
    if (frac > 1.0f) frac = 1.0f;
    float tau = t->p.tau_start * powf(t->p.tau_end / t->p.tau_start, frac); /* geometric anneal */
    /* the decisions' noise, from full scale to noise_end: at 0 the last steps
     * train the weights under the very masks inference will use */
    t->noise = 1.0f + (t->p.noise_end - 1.0f) * frac;
    if (t->ranged) /* each window its budget, drawn from the range, or dense */
        for (int w = 0; w < t->B; w++) {
            t->win_dense[w] = uniform(&t->rng) < t->p.dense_fraction;
            t->win_b[w] = t->win_dense[w] ? 1.0f
                          : t->p.budget_lo + (t->p.budget_hi - t->p.budget_lo) * (float)uniform(&t->rng);
            t->win_ll[w] = gates_log_lambda(t->g, t->win_b[w]);
        }
    double loss;
    st = trainer_loss_grad(t, tokens, TRAIN_HARD, tau, NULL, NULL, 1, &loss, err);
    if (st != DOZE_OK) return st;
    double kl = 0, expected, achieved;
    compute_terms(t, tau, &expected, &achieved);
    if (t->ranged)
        kl = loss - t->penalty;
    else
        kl = loss - t->p.compute_weight * (expected - t->p.budget) * (expected - t->p.budget) -
             t->dual * (expected - t->p.budget);
    kl -= t->balance; /* the task loss alone */
    /* dual ascent on the compute constraint: the multiplier grows while the
     * expected compute stays above the budget (and shrinks below it), so the
     * run ends at the budget instead of leaving it to the retune */
    if (!t->ranged) t->dual += t->p.dual_rate * (float)(expected - t->p.budget);
    /* AdamW on router weights (decayed) and biases */
    t->step++;
    const adamw_step as = adamw_at(t->p.lr, 0.9f, 0.999f, 1e-8f, t->step);
    adamw_update(&as, t->g->router, t->dR, t->mR, t->vR, (size_t)t->L * t->U * t->D, 1.0f, t->p.weight_decay, t->m->pool);
    adamw_update(&as, t->g->bias, t->db, t->mb, t->vb, (size_t)t->L * t->U, 1.0f, 0.0f, t->m->pool);
    if (t->jw) { /* the weights: Adam, their gradient clipped */
        double norm = joint_adam_step(t->jw, weight_lr_at(&t->p, t->step - 1), 0.0f, t->p.weight_anchor, t->p.weight_clip,
                                      t->step, t->m->pool);
        if (!isfinite(norm))
            return doze_fail(err, DOZE_ERR_STATE, "the weights' gradient is not finite (step %d)", t->step);
        if (t->p.weight_ema > 0.0f) joint_ema_update(t->jw, joint_ema_decay(t->p.weight_ema, t->step));
    }
    strcpy(t->g->kind, "trained");
    if (stats) {
        stats->step = t->step;
        stats->loss = (float)loss;
        stats->kl = (float)kl;
        stats->expected_compute = (float)expected;
        stats->achieved_compute = (float)achieved;
        stats->tau = tau;
    }
    return DOZE_OK;
}
