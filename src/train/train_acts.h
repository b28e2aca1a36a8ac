/* The activations and gradient scratch a transformer block's training
 * forward and backward keep (block.c), shared by every trainer, carved from
 * the trainer's one buffer. */
#ifndef DOZE_TRAIN_ACTS_H
#define DOZE_TRAIN_ACTS_H

#include <stddef.h>

#include "carve.h"

/* one layer's forward activations over N = B * T positions */
typedef struct {
    float *x_in;  /* (N, dim) residual entering the layer */
    float *xn;    /* (N, dim) attention norm output */
    float *rinv1; /* (N) its 1 / rms */
    float *q;     /* (N, q_dim) after RoPE */
    float *k, *v; /* (N, kv_dim), k after RoPE */
    float *q_raw, *k_raw;   /* with q/k norms: q, k before their norms (N, q_dim), (N, kv_dim) */
    float *rinv_q, *rinv_k; /* with q/k norms: each head's 1 / rms (N, n_heads), (N, n_kv_heads) */
    float *P;     /* (B, n_heads, T, T) attention probabilities */
    float *o;     /* (N, q_dim) attention output before W_o */
    float *a;     /* (N, dim) attention's update (gated: sum_h g_h Wo_h o_h) */
    float *xmid;  /* (N, dim) residual after attention */
    float *rinv2; /* (N) FFN norm's 1 / rms */
    float *hn;    /* (N, dim) FFN norm output */
    float *h1, *h3, *hg; /* (N, hidden) gate, up, silu(gate) * up */
    float *f;     /* (N, dim) the FFN's update */
} block_acts;

/* gradient scratch of one layer's backward, reused layer after layer */
typedef struct {
    float *dx, *dtmp;           /* (N, dim) */
    float *dhg, *dh1, *dh3;     /* (N, hidden) */
    float *dhn, *dxn;           /* (N, dim) */
    float *dO, *dq;             /* (N, q_dim) */
    float *dk, *dv;             /* (N, kv_dim) */
    float *dA, *dbuf;           /* (N, dim) gated: d/d(attention update), a head's product */
    float *og;                  /* (N, q_dim) gated: o times its heads' gates */
    float *hgm;                 /* (N, hidden) gated: hg times its blocks' gates */
} block_grads;

typedef struct {
    size_t N, dim, q_dim, kv_dim, hidden, att; /* att: B * n_heads * T * T */
    size_t n_heads, n_kv_heads;                /* nonzero: the model has q/k norms */
} block_sizes;

static inline void carve_block_acts(carver *c, block_acts *a, const block_sizes *s) {
    a->x_in = carve(c, s->N * s->dim);
    a->xn = carve(c, s->N * s->dim);
    a->rinv1 = carve(c, s->N);
    a->q = carve(c, s->N * s->q_dim);
    a->k = carve(c, s->N * s->kv_dim);
    a->v = carve(c, s->N * s->kv_dim);
    const size_t qk = s->n_heads ? 1 : 0;
    a->q_raw = carve(c, qk * s->N * s->q_dim);
    a->k_raw = carve(c, qk * s->N * s->kv_dim);
    a->rinv_q = carve(c, s->N * s->n_heads);
    a->rinv_k = carve(c, s->N * s->n_kv_heads);
    a->P = carve(c, s->att);
    a->o = carve(c, s->N * s->q_dim);
    a->a = carve(c, s->N * s->dim);
    a->xmid = carve(c, s->N * s->dim);
    a->rinv2 = carve(c, s->N);
    a->hn = carve(c, s->N * s->dim);
    a->h1 = carve(c, s->N * s->hidden);
    a->h3 = carve(c, s->N * s->hidden);
    a->hg = carve(c, s->N * s->hidden);
    a->f = carve(c, s->N * s->dim);
}

static inline void carve_block_grads(carver *c, block_grads *g, const block_sizes *s) {
    g->dx = carve(c, s->N * s->dim);
    g->dtmp = carve(c, s->N * s->dim);
    g->dhg = carve(c, s->N * s->hidden);
    g->dh1 = carve(c, s->N * s->hidden);
    g->dh3 = carve(c, s->N * s->hidden);
    g->dhn = carve(c, s->N * s->dim);
    g->dO = carve(c, s->N * s->q_dim);
    g->dq = carve(c, s->N * s->q_dim);
    g->dk = carve(c, s->N * s->kv_dim);
    g->dv = carve(c, s->N * s->kv_dim);
    g->dxn = carve(c, s->N * s->dim);
    g->dA = carve(c, s->N * s->dim);
    g->dbuf = carve(c, s->N * s->dim);
    g->og = carve(c, s->N * s->q_dim);
    g->hgm = carve(c, s->N * s->hidden);
}

#endif
