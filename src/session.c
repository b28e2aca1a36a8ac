/* A session: one conversation's KV cache and scratch, and the forward pass
 * of one token (llama: RMSNorm, RoPE on adjacent pairs, grouped-query
 * attention over the cache, SwiGLU, tied or untied classifier). */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "model.h"

struct doze_session {
    doze_model *model;
    int pos;        /* next position to fill */
    float *key;     /* (n_layers, context_length, kv_dim) */
    float *value;   /* (n_layers, context_length, kv_dim) */
    float *x;       /* (dim) residual stream */
    float *xb;      /* (max(dim, q_dim)) normed input / attention output */
    float *xb2;     /* (dim) */
    float *q;       /* (q_dim) */
    float *hb;      /* (hidden_dim) */
    float *hb2;     /* (hidden_dim) */
    float *att;     /* (context_length) attention weights of one head */
    void *xq;       /* q8_0 blocks of the widest input vector */
    float *logits;  /* (vocab_size) */
};

void doze_session_free(doze_session *s) {
    if (!s) return;
    free(s->key);
    free(s->value);
    free(s->x);
    free(s->xb);
    free(s->xb2);
    free(s->q);
    free(s->hb);
    free(s->hb2);
    free(s->att);
    free(s->xq);
    free(s->logits);
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
    size_t kv_dim = (size_t)c->n_kv_heads * (size_t)c->head_dim;
    size_t q_dim = (size_t)c->n_heads * (size_t)c->head_dim;
    size_t cache = (size_t)c->n_layers * (size_t)c->context_length * kv_dim;
    size_t widest = (size_t)c->dim > (size_t)c->hidden_dim ? (size_t)c->dim : (size_t)c->hidden_dim;
    if (q_dim > widest) widest = q_dim;
    s->key = malloc(cache * sizeof(float));
    s->value = malloc(cache * sizeof(float));
    s->x = malloc((size_t)c->dim * sizeof(float));
    s->xb = malloc(widest * sizeof(float));
    s->xb2 = malloc((size_t)c->dim * sizeof(float));
    s->q = malloc(q_dim * sizeof(float));
    s->hb = malloc((size_t)c->hidden_dim * sizeof(float));
    s->hb2 = malloc((size_t)c->hidden_dim * sizeof(float));
    s->att = malloc((size_t)c->context_length * sizeof(float));
    s->xq = malloc((widest / 32 + 1) * 34);
    s->logits = malloc((size_t)c->vocab_size * sizeof(float));
    if (!s->key || !s->value || !s->x || !s->xb || !s->xb2 || !s->q || !s->hb || !s->hb2 ||
        !s->att || !s->xq || !s->logits) {
        doze_fail(err, DOZE_ERR_OUT_OF_MEMORY,
                  "out of memory for a session (KV cache of %zu bytes for context %d)",
                  2 * cache * sizeof(float), c->context_length);
        doze_session_free(s);
        return NULL;
    }
    memset(s->logits, 0, (size_t)c->vocab_size * sizeof(float));
    return s;
}

void doze_session_reset(doze_session *s) {
    if (s) s->pos = 0;
}

int doze_session_pos(const doze_session *s) { return s ? s->pos : 0; }

const float *doze_session_logits(const doze_session *s) { return s ? s->logits : NULL; }

doze_status doze_session_step(doze_session *s, int token, doze_error *err) {
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
    const int dim = c->dim, hd = c->head_dim;
    const int kv_dim = c->n_kv_heads * hd;
    const int group = c->n_heads / c->n_kv_heads; /* query heads per KV head */
    const int half = c->rope_dim / 2;
    const float *cos_t = m->rope_cos + (size_t)pos * (size_t)half;
    const float *sin_t = m->rope_sin + (size_t)pos * (size_t)half;

    model_embed(m, token, s->x); /* x(dim) */
    for (int l = 0; l < c->n_layers; l++) {
        const doze_layer *L = &m->layers[l];
        size_t layer_off = (size_t)l * (size_t)c->context_length * (size_t)kv_dim;
        float *kc = s->key + layer_off;   /* (context_length, kv_dim) */
        float *vc = s->value + layer_off; /* (context_length, kv_dim) */
        float *k_here = kc + (size_t)pos * (size_t)kv_dim;
        float *v_here = vc + (size_t)pos * (size_t)kv_dim;

        /* attention */
        k->rmsnorm(s->xb, s->x, L->attn_norm, dim, c->norm_eps);
        model_matvec(m, s->q, &L->wq, s->xb, s->xq);     /* q(n_heads, hd) */
        model_matvec(m, k_here, &L->wk, s->xb, s->xq);   /* k(n_kv_heads, hd) */
        model_matvec(m, v_here, &L->wv, s->xb, s->xq);   /* v(n_kv_heads, hd) */
        k->rope(s->q, c->n_heads, hd, c->rope_dim, cos_t, sin_t);
        k->rope(k_here, c->n_kv_heads, hd, c->rope_dim, cos_t, sin_t);
        for (int h = 0; h < c->n_heads; h++) {
            int kvh = h / group;
            k->attention(s->xb + (size_t)h * (size_t)hd, s->q + (size_t)h * (size_t)hd,
                         kc + (size_t)kvh * (size_t)hd, vc + (size_t)kvh * (size_t)hd, pos + 1, hd,
                         kv_dim, NULL, s->att);
        }
        model_matvec(m, s->xb2, &L->wo, s->xb, s->xq); /* (dim) */
        k->add(s->x, s->xb2, dim);

        /* feed-forward: down(silu(gate(x)) * up(x)) */
        k->rmsnorm(s->xb, s->x, L->ffn_norm, dim, c->norm_eps);
        model_matvec(m, s->hb, &L->w_gate, s->xb, s->xq);  /* (hidden_dim) */
        model_matvec(m, s->hb2, &L->w_up, s->xb, s->xq);   /* (hidden_dim) */
        k->swiglu(s->hb, s->hb, s->hb2, c->hidden_dim);
        model_matvec(m, s->xb2, &L->w_down, s->hb, s->xq); /* (dim) */
        k->add(s->x, s->xb2, dim);
    }
    k->rmsnorm(s->xb, s->x, m->output_norm, dim, c->norm_eps);
    model_matvec(m, s->logits, &m->output, s->xb, s->xq); /* (vocab_size) */
    s->pos++;
    return DOZE_OK;
}
