/* A session: one conversation's KV cache and scratch, and the forward pass
 * of one token (llama: RMSNorm, RoPE on adjacent pairs, grouped-query
 * attention over the cache, SwiGLU, tied or untied classifier), with the
 * layer and head gates of DESIGN.md:
 *  - a skipped layer adds nothing to the token's stream and writes no K/V;
 *    its position is marked invalid at that layer, so later tokens do not
 *    attend to it there;
 *  - a skipped head computes no Q slice, no attention and no slice of the
 *    output projection (attn_output is stored per head, see model.c);
 *  - a skipped FFN block (issue 8) computes none of its gate/up rows and
 *    none of its down columns (ffn_down is stored per block, see model.c);
 *    the blocks are decided after the layer's attention, from the FFN's
 *    input hn = rmsnorm(x + attention, ffn_norm) (gates.h);
 *  - with every gate on, the step is the dense model, bit for bit (the dense
 *    model is this very code with all gates on). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "gates.h"
#include "types.h"
#include "model.h"

struct doze_session {
    doze_model *model;
    int pos;          /* next position to fill */
    float *key;       /* (n_layers, context_length, kv_dim) */
    float *value;     /* (n_layers, context_length, kv_dim) */
    uint8_t *kv_valid; /* (n_layers, context_length): 0 where the layer was skipped */
    float *x;         /* (dim) residual stream */
    float *x_in;      /* (dim) the stream entering a layer (traces only) */
    float *xb;        /* (max(dim, q_dim)) normed input / attention output */
    float *xb2;       /* (dim) */
    float *q;         /* (q_dim) */
    float *hb;        /* (hidden_dim) */
    float *hb2;       /* (hidden_dim) */
    float *att;       /* (min(n_heads, DOZE_ATT_HEADS), context_length) attention weights */
    void *xq;         /* q8_0 blocks of the widest input vector */
    float *logits;    /* (vocab_size) */
    float *z;         /* (1 + n_heads + n_ffn_blocks) router scores: the layer's and its
                         heads' (from xn), then its FFN blocks' (from hn) */
    float *tmp;       /* (dim) one FFN block's output */
    uint8_t *layer_on; /* (n_layers) last step's mask */
    uint8_t *head_on;  /* (n_layers, n_heads) */
    uint8_t *ffn_on;   /* (n_layers, n_ffn_blocks) */
    float compute;     /* last step's compute ratio */
    float budget;
    float lambda_adj;  /* feedback correction of the log threshold */
    const doze_gates *gates;
    doze_cost_model cost;
};

void doze_session_free(doze_session *s) {
    if (!s) return;
    free(s->key);
    free(s->value);
    free(s->kv_valid);
    free(s->x);
    free(s->x_in);
    free(s->xb);
    free(s->xb2);
    free(s->q);
    free(s->hb);
    free(s->hb2);
    free(s->att);
    free(s->xq);
    free(s->logits);
    free(s->z);
    free(s->tmp);
    free(s->layer_on);
    free(s->head_on);
    free(s->ffn_on);
    free(s);
}

doze_session *doze_session_new(doze_model *m, doze_error *err) {
    if (!m) {
        doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no model");
        return NULL;
    }
    const doze_model_info *c = &m->info;
    doze_session *s = calloc(1, sizeof *s);
    if (!s) {
        doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for a session");
        return NULL;
    }
    s->model = m;
    s->budget = 1.0f;
    cost_model_init(c, &s->cost);
    uint64_t kv_dim = (uint64_t)c->n_kv_heads * (uint64_t)c->head_dim;
    uint64_t q_dim = (uint64_t)c->n_heads * (uint64_t)c->head_dim;
    uint64_t cells = (uint64_t)c->n_layers * (uint64_t)c->context_length;
    uint64_t cache = cells * kv_dim;
    uint64_t widest = (uint64_t)(c->dim > c->hidden_dim ? c->dim : c->hidden_dim);
    if (q_dim > widest) widest = q_dim;
    if (cache > (uint64_t)(SIZE_MAX / 2) / sizeof(float)) {
        doze_fail(err, DOZE_ERR_OUT_OF_MEMORY,
                  "a KV cache of %llu values (context %d) cannot be addressed",
                  (unsigned long long)(2 * cache), c->context_length);
        free(s);
        return NULL;
    }
    s->key = malloc((size_t)cache * sizeof(float));
    s->value = malloc((size_t)cache * sizeof(float));
    s->kv_valid = calloc((size_t)cells, 1);
    s->x = malloc((size_t)c->dim * sizeof(float));
    s->x_in = malloc((size_t)c->dim * sizeof(float));
    s->xb = malloc((size_t)widest * sizeof(float));
    s->xb2 = malloc((size_t)c->dim * sizeof(float));
    s->q = malloc((size_t)q_dim * sizeof(float));
    s->hb = malloc((size_t)c->hidden_dim * sizeof(float));
    s->hb2 = malloc((size_t)c->hidden_dim * sizeof(float));
    s->att = malloc((size_t)(c->n_heads < DOZE_ATT_HEADS ? c->n_heads : DOZE_ATT_HEADS) *
                    (size_t)c->context_length * sizeof(float));
    s->xq = malloc((size_t)(widest / DOZE_QK8_0 + 1) * sizeof(doze_block_q8_0));
    s->logits = calloc((size_t)c->vocab_size, sizeof(float));
    const size_t nb = (size_t)m->n_ffn_blocks;
    s->z = malloc((size_t)(1 + c->n_heads + nb) * sizeof(float));
    s->tmp = malloc((size_t)c->dim * sizeof(float));
    s->layer_on = malloc((size_t)c->n_layers);
    s->head_on = malloc((size_t)c->n_layers * (size_t)c->n_heads);
    s->ffn_on = malloc((size_t)c->n_layers * nb);
    if (!s->key || !s->value || !s->kv_valid || !s->x || !s->x_in || !s->xb || !s->xb2 || !s->q || !s->hb ||
        !s->hb2 || !s->att || !s->xq || !s->logits || !s->z || !s->tmp || !s->layer_on || !s->head_on ||
        !s->ffn_on) {
        doze_fail(err, DOZE_ERR_OUT_OF_MEMORY,
                  "out of memory for a session (KV cache of %llu bytes for context %d)",
                  (unsigned long long)(2 * cache * sizeof(float)), c->context_length);
        doze_session_free(s);
        return NULL;
    }
    memset(s->layer_on, 1, (size_t)c->n_layers);
    memset(s->head_on, 1, (size_t)c->n_layers * (size_t)c->n_heads);
    memset(s->ffn_on, 1, (size_t)c->n_layers * nb);
    s->compute = 1.0f;
    return s;
}

void doze_session_reset(doze_session *s) {
    if (!s) return;
    s->pos = 0;
    s->lambda_adj = 0.0f;
}

int doze_session_pos(const doze_session *s) { return s ? s->pos : 0; }
const float *doze_session_logits(const doze_session *s) { return s ? s->logits : NULL; }
const uint8_t *doze_session_layer_mask(const doze_session *s) { return s ? s->layer_on : NULL; }
const uint8_t *doze_session_head_mask(const doze_session *s) { return s ? s->head_on : NULL; }
const uint8_t *doze_session_ffn_mask(const doze_session *s) { return s ? s->ffn_on : NULL; }
int doze_model_ffn_blocks(const doze_model *m) { return m ? m->n_ffn_blocks : 0; }
int doze_model_ffn_block(const doze_model *m) { return m ? m->info.ffn_block : 0; }
float doze_session_compute(const doze_session *s) { return s ? s->compute : 0.0f; }
float doze_session_get_budget(const doze_session *s) { return s ? s->budget : 1.0f; }

doze_status doze_session_set_budget(doze_session *s, float budget, doze_error *err) {
    if (!s) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no session");
    if (!(budget > 0.0f && budget <= 1.0f))
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "budget %g is not in (0, 1]",
                         (double)budget);
    s->budget = budget;
    return DOZE_OK;
}

doze_status doze_session_set_gates(doze_session *s, const doze_gates *g, doze_error *err) {
    if (!s) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no session");
    const doze_model_info *c = &s->model->info;
    if (g && (g->n_layers != c->n_layers || g->n_heads != c->n_heads || g->dim != c->dim ||
              (g->n_blocks != 0 && g->n_blocks != s->model->n_ffn_blocks)))
        return doze_fail(err, DOZE_ERR_BAD_SHAPE,
                         "gates for %d layers x %d heads x %d FFN blocks (dim %d) do not fit this model "
                         "(%d x %d x %d, dim %d)",
                         g->n_layers, g->n_heads, g->n_blocks, g->dim, c->n_layers, c->n_heads,
                         s->model->n_ffn_blocks, c->dim);
    s->gates = g;
    s->lambda_adj = 0.0f;
    return DOZE_OK;
}

/* ||v|| in double (for traces only) */
static float norm_of(const float *v, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)v[i] * v[i];
    return (float)sqrt(s);
}

/* The attention of running layer l at position pos, in place on s->x: K/V
 * are written, then the running heads' attention is added. xb holds the
 * normed input (attn_norm) on entry. */
static void run_attention(doze_session *s, int l, int pos, const uint8_t *head_on,
                          doze_step_trace *trace) {
    const doze_model *m = s->model;
    const doze_model_info *c = &m->info;
    const doze_kernels *k = m->kern;
    const doze_layer *L = &m->layers[l];
    const int dim = c->dim, hd = c->head_dim, nh = c->n_heads;
    const int kv_dim = c->n_kv_heads * hd;
    const int group = nh / c->n_kv_heads; /* query heads per KV head */
    const int half = c->rope_dim / 2;
    const float *cos_t = m->rope_cos + (size_t)pos * (size_t)half;
    const float *sin_t = m->rope_sin + (size_t)pos * (size_t)half;
    size_t cell = (size_t)l * (size_t)c->context_length;
    float *kc = s->key + cell * (size_t)kv_dim;   /* (context_length, kv_dim) */
    float *vc = s->value + cell * (size_t)kv_dim; /* (context_length, kv_dim) */
    const uint8_t *valid = s->kv_valid + cell;     /* (context_length) */

    if (trace) memcpy(s->x_in, s->x, (size_t)dim * sizeof(float));

    /* attention: K/V always (shared by the heads of a group), Q per running head */
    float *k_here = kc + (size_t)pos * (size_t)kv_dim;
    float *v_here = vc + (size_t)pos * (size_t)kv_dim;
    const doze_matrix *qkv[3] = {&L->wq, &L->wk, &L->wv};
    model_prepare_input(m, qkv, 3, s->xb, s->xq); /* xb quantized once for K, V and every Q head */
    model_matvec_prepared(m, k_here, &L->wk, s->xb, s->xq); /* k(n_kv_heads, hd) */
    model_matvec_prepared(m, v_here, &L->wv, s->xb, s->xq); /* v(n_kv_heads, hd) */
    k->rope(k_here, c->n_kv_heads, hd, c->rope_dim, cos_t, sin_t);
    for (int h = 0; h < nh; h++) {
        if (!head_on[h]) continue;
        float *qh = s->q + (size_t)h * (size_t)hd; /* q(hd) of head h */
        doze_matrix wq_h = model_rows(&L->wq, h * hd, hd) /* head h: (hd, dim) */;
        model_matvec_prepared(m, qh, &wq_h, s->xb, s->xq);
        k->rope(qh, 1, hd, c->rope_dim, cos_t, sin_t);
    }
    /* (xb is free now: the normed input was only needed for Q/K/V) */
    /* every running head at once: the cache rows are read front to back
     * (the weights streamed since the last step have evicted them) */
    k->attention_heads(s->xb, s->q, kc, vc, nh, group, pos + 1, hd, kv_dim, valid, head_on, s->att);
    /* output projection, head by head: x += Wo_h att_h */
    for (int h = 0; h < nh; h++) {
        if (!head_on[h]) continue;
        model_matvec(m, s->xb2, &L->wo_head[h], s->xb + (size_t)h * (size_t)hd, s->xq);
        if (trace) trace->head_norm[(size_t)l * nh + h] = norm_of(s->xb2, dim);
        k->add(s->x, s->xb2, dim);
    }
    if (trace)
        for (int h = 0; h < nh; h++)
            if (!head_on[h]) trace->head_norm[(size_t)l * nh + h] = 0.0f;
}

/* The FFN of running layer l over its running blocks, in place on s->x:
 * x += sum_j down_j(silu(gate_j(hn)) * up_j(hn)). xb holds hn =
 * rmsnorm(x, ffn_norm) on entry. */
static void run_ffn(doze_session *s, int l, const uint8_t *blk_on, doze_step_trace *trace) {
    const doze_model *m = s->model;
    const int dim = m->info.dim;
    if (trace && trace->ffn_norm) memcpy(s->xb2, s->x, (size_t)dim * sizeof(float));
    model_ffn(m, l, s->x, blk_on, s->xb, s->hb, s->hb2, s->tmp, s->xq,
              trace && trace->block_norm ? trace->block_norm + (size_t)l * m->n_ffn_blocks : NULL);
    if (trace && trace->ffn_norm) {
        double u = 0;
        for (int i = 0; i < dim; i++) u += ((double)s->x[i] - s->xb2[i]) * ((double)s->x[i] - s->xb2[i]);
        trace->ffn_norm[l] = (float)sqrt(u);
    }
    if (trace) {
        double u = 0;
        for (int i = 0; i < dim; i++)
            u += ((double)s->x[i] - s->x_in[i]) * ((double)s->x[i] - s->x_in[i]);
        trace->update_norm[l] = (float)sqrt(u);
    }
}

/* xb = hn = rmsnorm(x, ffn_norm of layer l): the FFN's input */
static void ffn_input(doze_session *s, int l) {
    const doze_model *m = s->model;
    m->kern->rmsnorm(s->xb, s->x, m->layers[l].ffn_norm, m->info.dim, m->info.norm_eps);
}

/* A running layer under forced masks: attention, then the FFN. xb holds the
 * normed input on entry. */
static void run_layer(doze_session *s, int l, int pos, const uint8_t *head_on,
                      const uint8_t *blk_on, doze_step_trace *trace) {
    run_attention(s, l, pos, head_on, trace);
    ffn_input(s, l);
    run_ffn(s, l, blk_on, trace);
}

doze_status session_step(doze_session *s, int token, const uint8_t *force_layer,
                         const uint8_t *force_head, const uint8_t *force_ffn, doze_step_trace *trace,
                         doze_error *err) {
    if (!s) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no session");
    const doze_model *m = s->model;
    const doze_model_info *c = &m->info;
    const doze_kernels *k = m->kern;
    if (token < 0 || token >= c->vocab_size)
        return doze_fail(err, DOZE_ERR_TOKEN_RANGE, "token id %d is out of range [0, %d)", token,
                         c->vocab_size);
    if (s->pos >= c->context_length)
        return doze_fail(err, DOZE_ERR_CONTEXT_FULL, "context of %d positions is full",
                         c->context_length);
    const int pos = s->pos;
    const int dim = c->dim, nh = c->n_heads, nb = m->n_ffn_blocks;

    /* who decides: a forced mask, the gates under a budget, or nobody (dense) */
    const doze_gates *g = force_layer ? NULL : s->gates;
    int gated = g && s->budget < 0.9995f && pos >= g->params.protect_tokens;
    float log_lambda = gated ? gates_log_lambda(g, s->budget) + s->lambda_adj : 0.0f;
    double spent = 0.0;

    model_embed(m, token, s->x); /* x(dim) */
    for (int l = 0; l < c->n_layers; l++) {
        const doze_layer *L = &m->layers[l];
        size_t cell = (size_t)l * (size_t)c->context_length;
        uint8_t *valid = s->kv_valid + cell;           /* (context_length) */
        uint8_t *head_on = s->head_on + (size_t)l * (size_t)nh;
        uint8_t *blk_on = s->ffn_on + (size_t)l * (size_t)nb;

        k->rmsnorm(s->xb, s->x, L->attn_norm, dim, c->norm_eps); /* xn(dim): the router's input */
        if (trace) {
            memcpy(trace->x_in + (size_t)l * dim, s->x, (size_t)dim * sizeof(float));
            memcpy(trace->xn + (size_t)l * dim, s->xb, (size_t)dim * sizeof(float));
            trace->in_norm[l] = norm_of(s->x, dim);
        }
        int layer_on = 1;
        if (force_layer) {
            layer_on = force_layer[l] != 0;
            for (int h = 0; h < nh; h++) head_on[h] = force_head ? force_head[(size_t)l * nh + h] != 0 : 1;
            for (int j = 0; j < nb; j++) blk_on[j] = force_ffn ? force_ffn[(size_t)l * nb + j] != 0 : 1;
        } else if (gated) {
            /* the layer and its heads now; its FFN blocks after its attention */
            gates_score(g, m, l, s->xb, s->z);
            spent += cost_router(&s->cost);
            layer_on = gates_decide(g, &s->cost, l, pos + 1, s->z, log_lambda, head_on);
        } else {
            memset(head_on, 1, (size_t)nh);
            memset(blk_on, 1, (size_t)nb);
        }
        s->layer_on[l] = (uint8_t)layer_on;
        valid[pos] = (uint8_t)layer_on;
        if (!layer_on) {
            memset(head_on, 0, (size_t)nh);
            memset(blk_on, 0, (size_t)nb);
            if (trace) {
                trace->update_norm[l] = 0.0f;
                memset(trace->head_norm + (size_t)l * nh, 0, (size_t)nh * sizeof(float));
                if (trace->block_norm)
                    memset(trace->block_norm + (size_t)l * nb, 0, (size_t)nb * sizeof(float));
                if (trace->ffn_norm) trace->ffn_norm[l] = 0.0f;
            }
            continue; /* adds nothing, writes no K/V */
        }
        run_attention(s, l, pos, head_on, trace);
        ffn_input(s, l); /* xb = hn(dim): the FFN's input, the block rows' input */
        if (trace && trace->hn) memcpy(trace->hn + (size_t)l * dim, s->xb, (size_t)dim * sizeof(float));
        if (gated) {
            gates_score_blocks(g, m, l, s->xb, s->z + 1 + nh);
            spent += cost_block_router(&s->cost, g->n_blocks);
            gates_decide_blocks(g, &s->cost, pos + 1, s->z + 1 + nh, log_lambda, blk_on);
        }
        spent += cost_of_layer(&s->cost, 1, head_on, blk_on, pos + 1);
        run_ffn(s, l, blk_on, trace);
    }
    k->rmsnorm(s->xb, s->x, m->output_norm, dim, c->norm_eps);
    model_matvec(m, s->logits, &m->output, s->xb, s->xq); /* (vocab_size) */

    int all_on = !gated && !force_layer;
    s->compute = all_on ? 1.0f : (float)(spent / cost_dense(&s->cost, pos + 1));
    if (gated) {
        /* integral feedback: over-spending raises the price of compute */
        s->lambda_adj += 1.0f * (s->compute - s->budget);
        if (s->lambda_adj > 8.0f) s->lambda_adj = 8.0f;
        if (s->lambda_adj < -8.0f) s->lambda_adj = -8.0f;
    }
    s->pos++;
    return DOZE_OK;
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

doze_status session_damage(doze_session *s, const doze_step_trace *trace, float *layer_damage,
                           float *attn_damage, float *ffn_damage, doze_error *err) {
    if (!s || !trace || s->pos < 1) return doze_fail(err, DOZE_ERR_STATE, "no traced step to revisit");
    const doze_model *m = s->model;
    const doze_model_info *c = &m->info;
    const doze_kernels *k = m->kern;
    const int pos = s->pos - 1, dim = c->dim, nl = c->n_layers, nh = c->n_heads;
    const size_t kv_dim = (size_t)c->n_kv_heads * (size_t)c->head_dim;
    float *saved_kv = malloc((size_t)nl * 2 * kv_dim * sizeof(float));
    float *dense_x = malloc((size_t)dim * sizeof(float));
    float *dense_out = malloc((size_t)dim * sizeof(float));
    float *out = malloc((size_t)dim * sizeof(float));
    const int nb = m->n_ffn_blocks;
    const size_t nmask = (size_t)(nh > nb ? nh : nb);
    uint8_t *all = malloc(nmask), *none = calloc(nmask, 1);
    doze_status st = DOZE_OK;
    if (!saved_kv || !dense_x || !dense_out || !out || !all || !none) {
        st = doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory measuring skip damage");
        goto done;
    }
    memset(all, 1, nmask);
    for (int l = 0; l < nl; l++) {
        size_t row = ((size_t)l * (size_t)c->context_length + (size_t)pos) * kv_dim;
        memcpy(saved_kv + (size_t)l * 2 * kv_dim, s->key + row, kv_dim * sizeof(float));
        memcpy(saved_kv + ((size_t)l * 2 + 1) * kv_dim, s->value + row, kv_dim * sizeof(float));
    }
    memcpy(dense_x, s->x, (size_t)dim * sizeof(float));
    k->rmsnorm(dense_out, dense_x, m->output_norm, dim, c->norm_eps);
    for (int l = 0; l < nl; l++) {
        /* 0: skip layer l, 1: skip its attention, 2: skip its FFN */
        for (int mode = 0; mode < (ffn_damage ? 3 : 2); mode++) {
            memcpy(s->x, trace->x_in + (size_t)l * dim, (size_t)dim * sizeof(float));
            for (int j = l + (mode == 0); j < nl; j++) {
                k->rmsnorm(s->xb, s->x, m->layers[j].attn_norm, dim, c->norm_eps);
                run_layer(s, j, pos, (j == l && mode == 1) ? none : all,
                          (j == l && mode == 2) ? none : all, NULL);
            }
            k->rmsnorm(out, s->x, m->output_norm, dim, c->norm_eps);
            float d = rel_sq_dist(out, dense_out, dim);
            (mode == 0 ? layer_damage : mode == 1 ? attn_damage : ffn_damage)[l] = d;
        }
    }
    for (int l = 0; l < nl; l++) {
        size_t row = ((size_t)l * (size_t)c->context_length + (size_t)pos) * kv_dim;
        memcpy(s->key + row, saved_kv + (size_t)l * 2 * kv_dim, kv_dim * sizeof(float));
        memcpy(s->value + row, saved_kv + ((size_t)l * 2 + 1) * kv_dim, kv_dim * sizeof(float));
    }
    memcpy(s->x, dense_x, (size_t)dim * sizeof(float));
done:
    free(saved_kv);
    free(dense_x);
    free(dense_out);
    free(out);
    free(all);
    free(none);
    return st;
}

doze_status doze_session_step(doze_session *s, int token, doze_error *err) {
    return session_step(s, token, NULL, NULL, NULL, NULL, err);
}

doze_status doze_session_step_masked(doze_session *s, int token, const uint8_t *layer_on,
                                     const uint8_t *head_on, doze_error *err) {
    if (!layer_on) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no layer mask");
    return session_step(s, token, layer_on, head_on, NULL, NULL, err);
}

doze_status doze_session_step_masked3(doze_session *s, int token, const uint8_t *layer_on,
                                      const uint8_t *head_on, const uint8_t *ffn_on, doze_error *err) {
    if (!layer_on) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no layer mask");
    return session_step(s, token, layer_on, head_on, ffn_on, NULL, err);
}

/* ---- issue 9 hook: the buffers the batched prefill (prefill.c) fills ---- */
void session_view(doze_session *s, doze_session_view *v) {
    v->model = s->model;
    v->pos = &s->pos;
    v->key = s->key;
    v->value = s->value;
    v->kv_valid = s->kv_valid;
    v->x = s->x;
    v->xb = s->xb;
    v->xq = s->xq;
    v->logits = s->logits;
    v->layer_on = s->layer_on;
    v->head_on = s->head_on;
    v->ffn_on = s->ffn_on;
    v->compute = &s->compute;
}
/* ---- end of issue 9 hook ---- */
