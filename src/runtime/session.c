/* A session: one conversation's KV cache and scratch, the token step, and
 * the gates' decisions under a budget. The layer itself is layer.c's body,
 * the same for a step, a prefill and a whole sequence; with every gate on
 * the step is the dense model, bit for bit (the dense model is this very
 * code with all gates on). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "gates.h"
#include "session.h"
#include "types.h"

struct doze_session {
    doze_model *model;
    uint8_t *block;    /* the one allocation everything below is carved from */
    int pos;           /* next position to fill */
    kv_cache kv;       /* (n_layers, context_length, kv_dim) keys and values */
    float *x;          /* (dim) residual stream of the last token */
    float *logits;     /* (vocab_size) */
    float *z;          /* (1 + n_heads + n_ffn_blocks) router scores: the layer's and its
                          heads' (from xn), then its FFN blocks' (from hn) */
    batch_masks mk;    /* the last step's mask: (n_layers), (n_layers, n_heads),
                          (n_layers, n_ffn_blocks) */
    layer_scratch ls;  /* the layer body's scratch for one token */
    float compute;     /* last step's compute ratio */
    float budget;
    float lambda_adj;  /* feedback correction of the log threshold */
    const doze_gates *gates;
    doze_cost_model cost;
};

static void session_carve(carver *c, void *ctx) {
    doze_session *s = ctx;
    const doze_model *m = s->model;
    const doze_model_info *i = &m->info;
    const size_t cells = (size_t)i->n_layers * (size_t)i->context_length;
    const size_t kv_dim = (size_t)i->n_kv_heads * (size_t)i->head_dim;
    s->kv.key = carve(c, cells * kv_dim);
    s->kv.value = carve(c, cells * kv_dim);
    s->kv.valid = carve_bytes(c, cells);
    s->kv.ctx = i->context_length;
    s->x = carve(c, (size_t)i->dim);
    s->logits = carve(c, (size_t)i->vocab_size);
    s->z = carve(c, (size_t)(1 + i->n_heads + m->n_ffn_blocks));
    batch_masks_carve(c, m, 1, &s->mk);
    layer_scratch_carve(c, m, 1, i->context_length, &s->ls);
}

void doze_session_free(doze_session *s) {
    if (!s) return;
    free(s->block);
    free(s);
}

doze_session *doze_session_new(doze_model *m, doze_error *err) {
    if (!m) {
        doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no model");
        return NULL;
    }
    const doze_model_info *c = &m->info;
    uint64_t kv_dim = (uint64_t)c->n_kv_heads * (uint64_t)c->head_dim;
    uint64_t cache = (uint64_t)c->n_layers * (uint64_t)c->context_length * kv_dim;
    if (cache > (uint64_t)(SIZE_MAX / 4) / sizeof(float)) {
        doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "a KV cache of %llu values (context %d) cannot be addressed",
                  (unsigned long long)(2 * cache), c->context_length);
        return NULL;
    }
    doze_session *s = calloc(1, sizeof *s);
    if (!s) {
        doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for a session");
        return NULL;
    }
    s->model = m;
    s->budget = 1.0f;
    cost_model_init(c, &s->cost);
    s->block = carve_alloc(session_carve, s);
    if (!s->block) {
        doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for a session (KV cache of %llu bytes for context %d)",
                  (unsigned long long)(2 * cache * sizeof(float)), c->context_length);
        free(s);
        return NULL;
    }
    memset(s->kv.valid, 0, (size_t)c->n_layers * (size_t)c->context_length);
    memset(s->logits, 0, (size_t)c->vocab_size * sizeof(float));
    memset(s->mk.layer_on, 1, (size_t)c->n_layers);
    memset(s->mk.head_on, 1, (size_t)c->n_layers * (size_t)c->n_heads);
    memset(s->mk.ffn_on, 1, (size_t)c->n_layers * (size_t)m->n_ffn_blocks);
    s->compute = 1.0f;
    return s;
}

void doze_session_reset(doze_session *s) {
    if (!s) return;
    s->pos = 0;
    s->lambda_adj = 0.0f;
}

doze_model *session_model(const doze_session *s) { return s->model; }
int session_gated(const doze_session *s) { return s->gates && s->budget < 0.9995f; }
const kv_cache *session_kv(const doze_session *s) { return &s->kv; }
int doze_session_pos(const doze_session *s) { return s ? s->pos : 0; }
const float *doze_session_logits(const doze_session *s) { return s ? s->logits : NULL; }
const uint8_t *doze_session_layer_mask(const doze_session *s) { return s ? s->mk.layer_on : NULL; }
const uint8_t *doze_session_head_mask(const doze_session *s) { return s ? s->mk.head_on : NULL; }
const uint8_t *doze_session_ffn_mask(const doze_session *s) { return s ? s->mk.ffn_on : NULL; }
const uint8_t *doze_session_expert_mask(const doze_session *s) {
    return s && s->model->info.n_experts ? s->mk.expert_on : NULL;
}
int doze_model_ffn_blocks(const doze_model *m) { return m ? m->n_ffn_blocks : 0; }
int doze_model_ffn_block(const doze_model *m) { return m ? m->info.ffn_block : 0; }
float doze_session_compute(const doze_session *s) { return s ? s->compute : 0.0f; }
float doze_session_get_budget(const doze_session *s) { return s ? s->budget : 1.0f; }

doze_status doze_session_set_budget(doze_session *s, float budget, doze_error *err) {
    if (!s) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no session");
    if (!(budget > 0.0f && budget <= 1.0f))
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "budget %g is not in (0, 1]", (double)budget);
    s->budget = budget;
    return DOZE_OK;
}

doze_status doze_session_set_gates(doze_session *s, const doze_gates *g, doze_error *err) {
    if (!s) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no session");
    const doze_model_info *c = &s->model->info;
    if (g && (g->n_layers != c->n_layers || g->n_heads != c->n_heads || g->dim != c->dim ||
              (g->n_blocks != 0 && g->n_blocks != s->model->n_ffn_blocks) ||
              (g->n_experts != 0 && g->n_experts != c->n_experts)))
        return doze_fail(err, DOZE_ERR_BAD_SHAPE,
                         "gates for %d layers x %d heads x %d FFN blocks (dim %d) do not fit this model "
                         "(%d x %d x %d, dim %d)",
                         g->n_layers, g->n_heads, g->n_blocks, g->dim, c->n_layers, c->n_heads,
                         s->model->n_ffn_blocks, c->dim);
    /* gates made on or for a model know it (calibrated, loaded, retuned): another
     * model of the same shape, or this one after its FFN was reordered, is
     * refused here as doze_gates_load refuses its file */
    if (g && g->fingerprint && g->fingerprint != gates_model_fingerprint(s->model))
        return doze_fail(err, DOZE_ERR_BAD_FORMAT, "the gates belong to another model (fingerprint %08x, this model %08x)",
                         (unsigned)g->fingerprint, (unsigned)gates_model_fingerprint(s->model));
    s->gates = g;
    s->lambda_adj = 0.0f;
    return DOZE_OK;
}

/* ---- the gates' decisions ---------------------------------------------------- */

typedef struct {
    doze_session *s;
    int pos;          /* position of the batch's first token */
    float log_lambda; /* the price of compute */
} gate_ctx;

static int protected_pos(const doze_session *s, int p) { return p < s->gates->params.protect_tokens; }

static int decide_layer(void *ctx, int l, int t, const float *xn, uint8_t *head_on) {
    gate_ctx *gc = ctx;
    doze_session *s = gc->s;
    const int p = gc->pos + t;
    if (protected_pos(s, p)) {
        memset(head_on, 1, (size_t)s->model->info.n_heads);
        return 1;
    }
    gates_score(s->gates, s->model, l, xn, s->z);
    return gates_decide(s->gates, &s->cost, l, p + 1, s->z, gc->log_lambda, head_on);
}

static void decide_ffn(void *ctx, int l, int t, const float *hn, uint8_t *blk_on) {
    gate_ctx *gc = ctx;
    doze_session *s = gc->s;
    const int p = gc->pos + t;
    (void)l;
    if (protected_pos(s, p)) {
        memset(blk_on, 1, (size_t)s->model->n_ffn_blocks);
        return;
    }
    float *zb = s->z + 1 + s->model->info.n_heads;
    gates_score_blocks(s->gates, s->model, l, hn, zb);
    gates_decide_blocks(s->gates, &s->cost, p + 1, zb, gc->log_lambda, blk_on);
}

static void decide_experts(void *ctx, int l, int t, const float *probs, uint8_t *on) {
    gate_ctx *gc = ctx;
    doze_session *s = gc->s;
    const int p = gc->pos + t;
    /* protected positions, and gates without expert rows, take the model's top k */
    gates_decide_experts(protected_pos(s, p) ? NULL : s->gates, &s->cost, l, p + 1, probs, gc->log_lambda, on);
}

/* The compute ratio of batch token t at position p under its masks (the
 * routers' own cost included when the gates decided). */
static float token_compute(const doze_session *s, const batch_masks *mk, int t, int p, int gated) {
    const doze_model *m = s->model;
    const int nl = m->info.n_layers, nh = m->info.n_heads, nb = m->n_ffn_blocks;
    const size_t ne = (size_t)m->info.n_experts;
    double spent = 0.0;
    for (int l = 0; l < nl; l++) {
        if (gated) spent += cost_router(&s->cost);
        if (!mk->layer_on[(size_t)t * nl + l]) continue;
        if (gated) spent += cost_block_router(&s->cost, s->gates->n_blocks);
        spent += cost_of_layer(&s->cost, 1, mk->head_on + ((size_t)t * nl + l) * nh,
                               mk->ffn_on + ((size_t)t * nl + l) * nb,
                               ne ? mk->expert_on + ((size_t)t * nl + l) * ne : NULL, p + 1);
    }
    return (float)(spent / cost_dense(&s->cost, p + 1));
}

void session_run(doze_session *s, int n, float *x, batch_masks *mk, int forced, layer_scratch *ls,
                 doze_step_trace *trace) {
    doze_model *m = s->model;
    const doze_model_info *c = &m->info;
    const int dim = c->dim, nl = c->n_layers, nh = c->n_heads, nb = m->n_ffn_blocks;
    const int pos = s->pos;
    /* who decides: forced masks, the gates under a budget, or nobody (dense) */
    const doze_gates *g = s->gates;
    const int gated = !forced && session_gated(s) && pos + n - 1 >= g->params.protect_tokens;
    gate_ctx gc = {s, pos, gated ? gates_log_lambda(g, s->budget) + s->lambda_adj : 0.0f};
    const layer_decider d = {&gc, decide_layer, decide_ffn, c->n_experts ? decide_experts : NULL};
    if (!forced && !gated) {
        memset(mk->layer_on, 1, (size_t)n * nl);
        memset(mk->head_on, 1, (size_t)n * nl * nh);
        memset(mk->ffn_on, 1, (size_t)n * nl * nb);
    }
    if (!forced) mk->experts_forced = 0; /* the model's routing (or the gates') */
    for (int l = 0; l < nl; l++) layer_forward(m, l, &s->kv, pos, n, x, mk, gated ? &d : NULL, ls, trace);

    /* Integral feedback: over-spending raises the price of compute. A batch's
     * tokens were all decided at one price, so the batch is one decision and
     * moves the price once, by its mean error; adding every token's error
     * would swing the price n times as far and the next tokens would pay for
     * the whole batch's error. */
    float error = 0.0f;
    int decided = 0;
    for (int t = 0; t < n; t++) {
        const int gated_t = gated && !protected_pos(s, pos + t);
        s->compute = forced || gated_t ? token_compute(s, mk, t, pos + t, gated_t) : 1.0f;
        if (gated_t) {
            error += s->compute - s->budget;
            decided++;
        }
    }
    if (decided) {
        s->lambda_adj += 1.0f * (error / (float)decided);
        if (s->lambda_adj > 8.0f) s->lambda_adj = 8.0f;
        if (s->lambda_adj < -8.0f) s->lambda_adj = -8.0f;
    }
    if (mk != &s->mk) {
        const size_t t = (size_t)n - 1;
        memcpy(s->mk.layer_on, mk->layer_on + t * nl, (size_t)nl);
        memcpy(s->mk.head_on, mk->head_on + t * nl * nh, (size_t)nl * nh);
        memcpy(s->mk.ffn_on, mk->ffn_on + t * nl * nb, (size_t)nl * nb);
        const size_t ne = (size_t)nl * (size_t)c->n_experts;
        memcpy(s->mk.expert_on, mk->expert_on + t * ne, ne);
    }
    if (x != s->x) memcpy(s->x, x + (size_t)(n - 1) * dim, (size_t)dim * sizeof(float));
    m->kern->rmsnorm(s->ls.xn, s->x, m->output_norm, dim, c->norm_eps);
    model_matvec(m, s->logits, &m->output, s->ls.xn, s->ls.xq); /* (vocab_size) */
    s->pos = pos + n;
}

doze_status session_step(doze_session *s, int token, const doze_mask *mask, doze_step_trace *trace,
                         doze_error *err) {
    if (!s) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no session");
    const doze_model *m = s->model;
    const doze_model_info *c = &m->info;
    if (check_mask(mask, err)) return err ? err->code : DOZE_ERR_INVALID_ARGUMENT;
    if (token < 0 || token >= c->vocab_size)
        return doze_fail(err, DOZE_ERR_TOKEN_RANGE, "token id %d is out of range [0, %d)", token, c->vocab_size);
    if (s->pos >= c->context_length)
        return doze_fail(err, DOZE_ERR_CONTEXT_FULL, "context of %d positions is full", c->context_length);
    if (mask) batch_masks_copy(m, mask, 0, 1, &s->mk);
    model_embed(m, token, s->x); /* x(dim) */
    session_run(s, 1, s->x, &s->mk, mask != NULL, &s->ls, trace);
    return DOZE_OK;
}

doze_status doze_session_step(doze_session *s, int token, doze_error *err) {
    return session_step(s, token, NULL, NULL, err);
}

doze_status doze_session_step_masked(doze_session *s, int token, const doze_mask *mask, doze_error *err) {
    if (!mask) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no mask");
    return session_step(s, token, mask, NULL, err);
}

/* ||a - b||^2 / ||b||^2 */
static float rel_sq_dist(const float *a, const float *b, int n) {
    double d = 0, r = 0;
    for (int i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        r += (double)b[i] * b[i];
    }
    return (float)(d / (r > 0 ? r : 1));
}

/* session_damage's buffers, carved from one allocation */
typedef struct {
    const doze_model *m;
    float *saved_kv;  /* (n_layers, 2, kv_dim) the traced step's K/V */
    float *dense_x;   /* (dim) its stream */
    float *dense_out; /* (dim) its final normed state */
    float *out;       /* (dim) a re-run's final normed state */
    batch_masks mk;   /* one token's mask */
} damage_buffers;

static void damage_carve(carver *c, void *ctx) {
    damage_buffers *b = ctx;
    const doze_model_info *i = &b->m->info;
    b->saved_kv = carve(c, (size_t)i->n_layers * 2 * (size_t)i->n_kv_heads * (size_t)i->head_dim);
    b->dense_x = carve(c, (size_t)i->dim);
    b->dense_out = carve(c, (size_t)i->dim);
    b->out = carve(c, (size_t)i->dim);
    batch_masks_carve(c, b->m, 1, &b->mk);
}

doze_status session_damage(doze_session *s, const doze_step_trace *trace, float *layer_damage,
                           float *attn_damage, float *ffn_damage, doze_error *err) {
    if (!s || !trace || s->pos < 1) return doze_fail(err, DOZE_ERR_STATE, "no traced step to revisit");
    const doze_model *m = s->model;
    const doze_model_info *c = &m->info;
    const doze_kernels *k = m->kern;
    const int pos = s->pos - 1, dim = c->dim, nl = c->n_layers, nh = c->n_heads, nb = m->n_ffn_blocks;
    const size_t kv_dim = (size_t)c->n_kv_heads * (size_t)c->head_dim;
    damage_buffers b = {m, NULL, NULL, NULL, NULL, {NULL, NULL, NULL, NULL, 0}};
    uint8_t *block = carve_alloc(damage_carve, &b);
    if (!block) return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory measuring skip damage");
    float *saved_kv = b.saved_kv, *dense_x = b.dense_x, *dense_out = b.dense_out, *out = b.out;
    batch_masks mk = b.mk;
    for (int l = 0; l < nl; l++) {
        size_t row = ((size_t)l * (size_t)c->context_length + (size_t)pos) * kv_dim;
        memcpy(saved_kv + (size_t)l * 2 * kv_dim, s->kv.key + row, kv_dim * sizeof(float));
        memcpy(saved_kv + ((size_t)l * 2 + 1) * kv_dim, s->kv.value + row, kv_dim * sizeof(float));
    }
    memcpy(dense_x, s->x, (size_t)dim * sizeof(float));
    k->rmsnorm(dense_out, dense_x, m->output_norm, dim, c->norm_eps);
    for (int l = 0; l < nl; l++) {
        /* 0: skip layer l, 1: skip its attention, 2: skip its FFN */
        for (int mode = 0; mode < (ffn_damage ? 3 : 2); mode++) {
            memcpy(s->x, trace->x_in + (size_t)l * dim, (size_t)dim * sizeof(float));
            for (int j = l + (mode == 0); j < nl; j++) {
                mk.layer_on[j] = 1;
                memset(mk.head_on + (size_t)j * nh, !(j == l && mode == 1), (size_t)nh);
                memset(mk.ffn_on + (size_t)j * nb, !(j == l && mode == 2), (size_t)nb);
                layer_forward(m, j, &s->kv, pos, 1, s->x, &mk, NULL, &s->ls, NULL);
            }
            k->rmsnorm(out, s->x, m->output_norm, dim, c->norm_eps);
            float d = rel_sq_dist(out, dense_out, dim);
            (mode == 0 ? layer_damage : mode == 1 ? attn_damage : ffn_damage)[l] = d;
        }
    }
    for (int l = 0; l < nl; l++) {
        size_t row = ((size_t)l * (size_t)c->context_length + (size_t)pos) * kv_dim;
        memcpy(s->kv.key + row, saved_kv + (size_t)l * 2 * kv_dim, kv_dim * sizeof(float));
        memcpy(s->kv.value + row, saved_kv + ((size_t)l * 2 + 1) * kv_dim, kv_dim * sizeof(float));
    }
    memcpy(s->x, dense_x, (size_t)dim * sizeof(float));
    free(block);
    return DOZE_OK;
}

/* ---- speculation: rollback, and the verified logits --------------------------------- */

doze_status doze_session_truncate(doze_session *s, int pos, doze_error *err) {
    if (!s) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no session");
    if (pos < 0 || pos > s->pos)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "cannot truncate to position %d: the session holds %d",
                         pos, s->pos);
    if (pos == s->pos) return DOZE_OK;
    const doze_model *m = s->model;
    const doze_model_info *c = &m->info;
    /* the forgotten positions are marked invalid at every layer (their K/V
     * rows stay as they were: no step reads a row it has not written) */
    for (int l = 0; l < c->n_layers; l++)
        memset(s->kv.valid + (size_t)l * c->context_length + pos, 0, (size_t)(c->context_length - pos));
    s->pos = pos;
    /* the last step belonged to a forgotten position */
    memset(s->logits, 0, (size_t)c->vocab_size * sizeof(float));
    memset(s->mk.layer_on, 1, (size_t)c->n_layers);
    memset(s->mk.head_on, 1, (size_t)c->n_layers * (size_t)c->n_heads);
    memset(s->mk.ffn_on, 1, (size_t)c->n_layers * (size_t)m->n_ffn_blocks);
    s->compute = 1.0f;
    if (pos == 0) s->lambda_adj = 0.0f; /* as doze_session_reset */
    return DOZE_OK;
}

void session_set_logits(doze_session *s, const float *logits) {
    memcpy(s->logits, logits, (size_t)s->model->info.vocab_size * sizeof(float));
}
