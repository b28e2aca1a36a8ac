/* One block's training forward and backward (see block.h). Each stage of
 * the backward undoes the matching stage of the forward, in reverse. */
#include "block.h"

#include <string.h>

#include "train_ops.h"

size_t block_att_per_thread(int T, int hd) { return (ATTENTION_SCRATCH(T, hd) + 15) & ~(size_t)15; }

/* The row-wise steps (RMSNorm forward and backward, SwiGLU forward and
 * backward) split across the pool by tokens: each row is computed by the
 * same code on its own, so the bits do not depend on the cut (SwiGLU runs
 * on the flat array, so it is cut only where rows are whole groups of 4
 * values: the SIMD kernel's lanes). Below ROWS_PAR_MIN values the caller
 * does them alone. */
#define ROWS_PAR_MIN 65536

enum { ROWS_NORM_FWD, ROWS_NORM_BWD, ROWS_SWIGLU_FWD, ROWS_SWIGLU_BWD };

typedef struct {
    int kind, width;       /* the step; values per token */
    float *out, *out2;     /* norm: y / dx (+=); swiglu: g / da, db */
    const float *in, *in2; /* norm: x; swiglu: gate, up */
    const float *dy;       /* backward: the output's gradient */
    float *rinv;           /* norm forward: written; backward: read */
    const float *w;        /* norm weights */
    float eps;
    void (*swiglu)(float *out, const float *gate, const float *up, int n);
} rows_step;

static void rows_part(void *args, int n0, int n1, int part) {
    const rows_step *r = args;
    const size_t o = (size_t)n0 * r->width;
    const int n = n1 - n0;
    (void)part;
    switch (r->kind) {
    case ROWS_NORM_FWD:
        rmsnorm_forward(r->out + o, r->rinv + n0, r->in + o, r->w, n, r->width, r->eps);
        break;
    case ROWS_NORM_BWD:
        rmsnorm_backward(r->out + o, r->dy + o, r->in + o, r->rinv + n0, r->w, n, r->width);
        break;
    case ROWS_SWIGLU_FWD:
        swiglu_forward(r->out + o, r->in + o, r->in2 + o, n, r->width, r->swiglu);
        break;
    default:
        swiglu_backward(r->out + o, r->out2 + o, r->dy + o, r->in + o, r->in2 + o, n, r->width);
        break;
    }
}

static void rows_run(const block_shape *s, const rows_step *r, int N) {
    const int whole = r->kind == ROWS_NORM_FWD || r->kind == ROWS_NORM_BWD || r->width % 4 == 0;
    const int big = whole && (double)N * r->width >= ROWS_PAR_MIN;
    pool_run(big ? s->pool : NULL, rows_part, (void *)r, N, 1, 16, 0);
}

static void norm_forward(const block_shape *s, float *y, float *rinv, const float *x, const float *w, int N) {
    rows_run(s, &(rows_step){.kind = ROWS_NORM_FWD, .width = s->D, .out = y, .in = x, .rinv = rinv, .w = w,
                             .eps = s->eps}, N);
}

static void norm_backward(const block_shape *s, float *dx, const float *dy, const float *x, const float *rinv,
                          const float *w, int N) {
    rows_run(s, &(rows_step){.kind = ROWS_NORM_BWD, .width = s->D, .out = dx, .in = x, .dy = dy,
                             .rinv = (float *)rinv, .w = w}, N);
}

/* attention windows in parallel when they are big enough to pay for the threads */
static int big_attention(const block_shape *s) { return (double)s->T * s->T * s->D >= 1e6; }

/* windows [b0, b1) of attention, forward or backward, with part's scratch */
typedef struct {
    const block_shape *s;
    const block_acts *a;
    block_grads *gr; /* NULL: forward */
    float *o;        /* forward: (N, Q) */
    const uint8_t *vis;
    float *P;        /* forward: (nb, H, T, T) */
} att_windows;

static void attention_part(void *args, int b0, int b1, int part) {
    const att_windows *w = args;
    const block_shape *s = w->s;
    const block_acts *a = w->a;
    const int T = s->T, hd = s->hd, Q = s->H * hd, KVD = s->KV * hd;
    float *scratch = s->att_scratch + (size_t)part * s->att_per_thread;
    for (int b = b0; b < b1; b++) {
        size_t r = (size_t)b * T;
        if (!w->gr)
            attention_forward(w->o + r * Q, w->P + (size_t)b * s->H * T * T, a->q + r * Q, a->k + r * KVD,
                              a->v + r * KVD, w->vis + r, 1, T, s->H, s->KV, hd, s->softmax, scratch);
        else
            attention_backward(w->gr->dq + r * Q, w->gr->dk + r * KVD, w->gr->dv + r * KVD, w->gr->dO + r * Q,
                               a->P + (size_t)b * s->H * T * T, a->q + r * Q, a->k + r * KVD, a->v + r * KVD,
                               1, T, s->H, s->KV, hd, scratch);
    }
}

static void attention_windows(const block_shape *s, const att_windows *w, int nb) {
    pool_run(nb > 1 && big_attention(s) ? s->pool : NULL, attention_part, (void *)w, nb, 1, 1,
             s->att_parts > 0 ? s->att_parts : 1);
}

/* ---- attention output: a = Wo o, or sum_h g_h Wo_h o_h ------------------------------ */

/* Under gates the product is taken head by head (each head's share is scaled
 * by its token's gate, and its gate's gradient needs the share itself), so
 * it cannot be one big product; instead the tokens are split across the
 * pool: every row is computed by the same code in the same order whatever
 * the split, so the bits do not depend on the thread count. */
typedef struct {
    const block_shape *s;
    const block_weights *w;
    const block_acts *a;
    const block_gating *gt;
    float *out;       /* forward: a (N, D); backward: dO (N, Q) */
    float *dbuf;      /* (N, D): c_h, then dc_h */
    const float *dA;  /* backward: d/da (N, D); NULL: forward */
} heads_out_rows;

static void heads_out_part(void *args, int n0, int n1, int part) {
    const heads_out_rows *r = args;
    const block_shape *s = r->s;
    const int D = s->D, hd = s->hd, Q = s->H * hd, U = r->gt->U, rows = n1 - n0;
    (void)part;
    float *dbuf = r->dbuf + (size_t)n0 * D;
    const float *o = r->a->o + (size_t)n0 * Q;
    memset(r->out + (size_t)n0 * (r->dA ? Q : D), 0, (size_t)rows * (r->dA ? Q : D) * sizeof(float));
    for (int h = 0; h < s->H; h++) {
        /* c_h(rows, D) = o_h(rows, hd) Wo_h^T: rows h*hd .. of the transposed Wo */
        memset(dbuf, 0, (size_t)rows * D * sizeof(float));
        gemm_nn(dbuf, D, o + (size_t)h * hd, Q, r->w->to + (size_t)h * hd * D, D, rows, hd, D);
        for (int n = n0; n < n1; n++) {
            const float gh = r->gt->g[(size_t)n * U + 1 + h];
            float *cn = r->dbuf + (size_t)n * D;
            if (!r->dA) {
                if (gh == 0.0f) continue;
                float *an = r->out + (size_t)n * D;
                for (int i = 0; i < D; i++) an[i] += gh * cn[i];
                continue;
            }
            const float *dAn = r->dA + (size_t)n * D;
            float sum = 0;
            for (int i = 0; i < D; i++) sum += dAn[i] * cn[i];
            r->gt->dg[(size_t)n * U + 1 + h] = sum;
            for (int i = 0; i < D; i++) cn[i] = gh * dAn[i]; /* dc_h = g_h dA */
        }
        /* do_h(rows, hd) = dc_h Wo_h: columns h*hd .. of Wo */
        if (r->dA) gemm_nn(r->out + (size_t)n0 * Q + (size_t)h * hd, Q, dbuf, D, r->w->wo + (size_t)h * hd, Q, rows, D, hd);
    }
}

static void heads_out(const block_shape *s, const heads_out_rows *r, int N) {
    const int big = (double)N * s->H * s->hd * s->D >= TRAIN_PAR_MIN_MACS;
    pool_run(big ? s->pool : NULL, heads_out_part, (void *)r, N, 16, 16, 0);
}

static void attn_out_forward(const block_shape *s, const block_weights *w, block_acts *a,
                             const block_gating *gt, float *dbuf, int N) {
    const int D = s->D, Q = s->H * s->hd;
    if (!gt) {
        matmul_forward_t_par(a->a, a->o, w->to, N, D, Q, s->pool);
        return;
    }
    heads_out(s, &(heads_out_rows){.s = s, .w = w, .a = a, .gt = gt, .out = a->a, .dbuf = dbuf}, N);
}

/* from dA (N, D) = d/da: dO (overwritten) = d/do; dg of the heads; dWo */
static void attn_out_backward(const block_shape *s, const block_weights *w, const block_acts *a,
                              const block_gating *gt, block_grads *gr, const float *dA, float *dwo,
                              int N) {
    const int D = s->D, hd = s->hd, Q = s->H * s->hd;
    if (!gt) {
        memset(gr->dO, 0, (size_t)N * Q * sizeof(float));
        if (dwo) matmul_backward_weights(dwo, dA, a->o, N, D, Q, s->pool);
        matmul_backward_par(gr->dO, dA, w->wo, N, D, Q, s->pool);
        return;
    }
    const int U = gt->U;
    heads_out(s, &(heads_out_rows){.s = s, .w = w, .a = a, .gt = gt, .out = gr->dO, .dbuf = gr->dbuf, .dA = dA}, N);
    if (dwo) { /* dWo += dA^T (o * g_head) */
        for (int n = 0; n < N; n++)
            for (int h = 0; h < s->H; h++) {
                float gh = gt->g[(size_t)n * U + 1 + h];
                const float *on = a->o + (size_t)n * Q + (size_t)h * hd;
                float *ogn = gr->og + (size_t)n * Q + (size_t)h * hd;
                for (int i = 0; i < hd; i++) ogn[i] = gh * on[i];
            }
        matmul_backward_weights(dwo, dA, gr->og, N, D, Q, s->pool);
    }
}

/* ---- FFN down projection: f = W2 hg, or W2 (hg * g_block) ------------------------------ */

/* the input of W2: hg itself, or hgm = hg times its channels' block gates */
static const float *ffn_down_input(const block_shape *s, const block_acts *a, const block_gating *gt,
                                   float *hgm, int N) {
    if (!gt || !gt->NB) return a->hg;
    const int F = s->F;
    for (int n = 0; n < N; n++) {
        const float *gb = gt->g + (size_t)n * gt->U + 1 + s->H;
        const float *src = a->hg + (size_t)n * F;
        float *dst = hgm + (size_t)n * F;
        for (int i = 0; i < F; i++) dst[i] = gb[i / s->ffn_block] * src[i];
    }
    return hgm;
}

/* from du = d/df: dhg (overwritten), dg of the FFN blocks, dW2 */
static void ffn_down_backward(const block_shape *s, const block_weights *w, const block_acts *a,
                              const block_gating *gt, block_grads *gr, const float *du, float *dw2,
                              int N) {
    const int D = s->D, F = s->F;
    if (dw2) matmul_backward_weights(dw2, du, ffn_down_input(s, a, gt, gr->hgm, N), N, D, F, s->pool);
    memset(gr->dhg, 0, (size_t)N * F * sizeof(float));
    matmul_backward_par(gr->dhg, du, w->w2, N, D, F, s->pool); /* W_down^T df */
    if (!gt || !gt->NB) return;
    const int U = gt->U;
    for (int n = 0; n < N; n++) { /* dg_j = df . (W_down_j hg_j); dhg = g_j W_down_j^T df */
        const float *gb = gt->g + (size_t)n * U + 1 + s->H;
        float *dgb = gt->dg + (size_t)n * U + 1 + s->H;
        const float *hgn = a->hg + (size_t)n * F;
        float *dh = gr->dhg + (size_t)n * F;
        for (int j = 0; j < gt->NB; j++) {
            const int i0 = j * s->ffn_block, i1 = i0 + (F - i0 < s->ffn_block ? F - i0 : s->ffn_block);
            float sg = 0;
            for (int i = i0; i < i1; i++) sg += hgn[i] * dh[i];
            dgb[j] = sg;
            for (int i = i0; i < i1; i++) dh[i] *= gb[j];
        }
    }
}

/* ---- Q/K/V biases and q/k norms ------------------------------------------------------ */

/* y(N, n) += b, row by row; b NULL: nothing */
static void add_rows(float *y, const float *b, int N, int n) {
    if (!b) return;
    for (int r = 0; r < N; r++)
        for (int i = 0; i < n; i++) y[(size_t)r * n + i] += b[i];
}

/* g(n) += the sum of the N rows of dy(N, n) (a bias's gradient); g NULL: nothing */
static void sum_rows(float *g, const float *dy, int N, int n) {
    if (!g) return;
    for (int r = 0; r < N; r++)
        for (int i = 0; i < n; i++) g[i] += dy[(size_t)r * n + i];
}

/* each of the rows (tokens x heads) of v, hd values, rmsnorm'd in place
 * with weight w; raw keeps the input, rinv its 1 / rms */
static void head_norms_forward(float *v, float *raw, float *rinv, const float *w, int rows, int hd, float eps) {
    memcpy(raw, v, (size_t)rows * hd * sizeof(float));
    rmsnorm_forward(v, rinv, raw, w, rows, hd, eps);
}

/* dv (rows, hd): d loss / d (normed v), replaced by d loss / d raw v */
static void head_norms_backward(float *dv, float *scratch, const float *raw, const float *rinv, const float *w,
                                int rows, int hd) {
    memset(scratch, 0, (size_t)rows * hd * sizeof(float));
    rmsnorm_backward(scratch, dv, raw, rinv, w, rows, hd);
    memcpy(dv, scratch, (size_t)rows * hd * sizeof(float));
}

/* ---- the block --------------------------------------------------------------------------- */

void block_forward(const block_shape *s, const block_weights *w, block_acts *a,
                   const block_gating *gt, int layer, float *x, block_grads *scratch, int nb) {
    const int T = s->T, N = nb * T, D = s->D, F = s->F, hd = s->hd;
    const int Q = s->H * hd, KVD = s->KV * hd;
    doze_pool *nt = s->pool;
    memcpy(a->x_in, x, (size_t)N * D * sizeof(float));
    norm_forward(s, a->xn, a->rinv1, a->x_in, w->attn_norm, N);
    if (gt) gt->decide(gt->ctx, layer, 0, 1 + s->H, a->xn); /* the layer and its heads */
    const uint8_t *vis = gt ? gt->vis : s->all_visible;
    matmul_forward_t_par(a->q, a->xn, w->tq, N, Q, D, nt);
    matmul_forward_t_par(a->k, a->xn, w->tk, N, KVD, D, nt);
    matmul_forward_t_par(a->v, a->xn, w->tv, N, KVD, D, nt);
    add_rows(a->q, w->bq, N, Q);
    add_rows(a->k, w->bk, N, KVD);
    add_rows(a->v, w->bv, N, KVD);
    if (w->q_norm) head_norms_forward(a->q, a->q_raw, a->rinv_q, w->q_norm, N * s->H, hd, s->eps);
    if (w->k_norm) head_norms_forward(a->k, a->k_raw, a->rinv_k, w->k_norm, N * s->KV, hd, s->eps);
    rope_forward(a->q, N, T, s->H, hd, s->rope_dim, s->rope_cos, s->rope_sin);
    rope_forward(a->k, N, T, s->KV, hd, s->rope_dim, s->rope_cos, s->rope_sin);
    attention_windows(s, &(att_windows){.s = s, .a = a, .o = a->o, .vis = vis, .P = a->P}, nb);
    attn_out_forward(s, w, a, gt, scratch->dbuf, N);
    for (size_t i = 0; i < (size_t)N * D; i++) a->xmid[i] = a->x_in[i] + a->a[i];
    norm_forward(s, a->hn, a->rinv2, a->xmid, w->ffn_norm, N);
    if (gt && gt->NB) gt->decide(gt->ctx, layer, 1 + s->H, gt->U, a->hn); /* its FFN blocks */
    if (s->ffn) {
        s->ffn->forward(s->ffn->ctx, layer, a->hn, a->f, N);
    } else {
        matmul_forward_t_par(a->h1, a->hn, w->t1, N, F, D, nt);
        matmul_forward_t_par(a->h3, a->hn, w->t3, N, F, D, nt);
        rows_run(s, &(rows_step){.kind = ROWS_SWIGLU_FWD, .width = F, .out = a->hg, .in = a->h1, .in2 = a->h3,
                                 .swiglu = s->swiglu}, N);
        matmul_forward_t_par(a->f, ffn_down_input(s, a, gt, scratch->hgm, N), w->t2, N, D, F, nt);
    }
    if (!gt) {
        for (size_t i = 0; i < (size_t)N * D; i++) x[i] = a->xmid[i] + a->f[i];
        return;
    }
    if (s->ffn && gt->NB) { /* a mixture's FFN is one block: its gate scales the whole update */
        for (int n = 0; n < N; n++) {
            const float g0 = gt->g[(size_t)n * gt->U], gb = gt->g[(size_t)n * gt->U + 1 + s->H];
            for (int i = 0; i < D; i++) {
                size_t j = (size_t)n * D + i;
                x[j] = a->x_in[j] + g0 * (a->a[j] + gb * a->f[j]);
            }
        }
        return;
    }
    for (int n = 0; n < N; n++) {
        float g0 = gt->g[(size_t)n * gt->U];
        for (int i = 0; i < D; i++) {
            size_t j = (size_t)n * D + i;
            x[j] = a->x_in[j] + g0 * (a->a[j] + a->f[j]);
        }
    }
}

void block_backward(const block_shape *s, const block_weights *w, const block_acts *a,
                    const block_gating *gt, int layer, block_grads *gr, block_weight_grads *dw,
                    int nb) {
    const int T = s->T, N = nb * T, D = s->D, F = s->F, hd = s->hd;
    const int Q = s->H * hd, KVD = s->KV * hd;
    const size_t ND = (size_t)N * D;
    doze_pool *nt = s->pool;
    /* the residual: dx holds d/dx_out; du = d/d(update of the FFN) */
    const float *du = gr->dx;
    if (gt && s->ffn && gt->NB) {
        /* x_out = x_in + g0 (a + gb f), gb the mixture's one FFN block gate:
         * dg0 = dx . (a + gb f); dA = g0 dx; dgb = dA . f; du = gb dA (in dbuf) */
        memset(gt->dg, 0, (size_t)N * gt->U * sizeof(float));
        const int ub = 1 + s->H;
        for (int n = 0; n < N; n++) {
            const float g0 = gt->g[(size_t)n * gt->U], gb = gt->g[(size_t)n * gt->U + ub];
            const float *dxn = gr->dx + (size_t)n * D;
            float sum = 0, sb = 0;
            for (int i = 0; i < D; i++) {
                size_t j = (size_t)n * D + i;
                sum += dxn[i] * (a->a[j] + gb * a->f[j]);
                gr->dA[j] = g0 * dxn[i];
                sb += gr->dA[j] * a->f[j];
                gr->dbuf[j] = gb * gr->dA[j];
            }
            gt->dg[(size_t)n * gt->U] = sum;
            gt->dg[(size_t)n * gt->U + ub] = sb;
        }
        du = gr->dbuf;
    } else if (gt) { /* x_out = x_in + g0 (a + f): dg0 = dx . (a + f); du = g0 dx */
        memset(gt->dg, 0, (size_t)N * gt->U * sizeof(float));
        for (int n = 0; n < N; n++) {
            float g0 = gt->g[(size_t)n * gt->U];
            const float *dxn = gr->dx + (size_t)n * D;
            float sum = 0;
            for (int i = 0; i < D; i++) {
                size_t j = (size_t)n * D + i;
                sum += dxn[i] * (a->a[j] + a->f[j]);
                gr->dA[j] = g0 * dxn[i];
            }
            gt->dg[(size_t)n * gt->U] = sum;
        }
        du = gr->dA;
    }
    /* f = W2 swiglu(W1 hn, W3 hn), hn = rmsnorm(x_mid) */
    if (s->ffn) {
        s->ffn->backward(s->ffn->ctx, layer, a->hn, du, gr->dhn, N);
    } else {
        ffn_down_backward(s, w, a, gt, gr, du, dw ? dw->w2 : NULL, N);
        rows_run(s, &(rows_step){.kind = ROWS_SWIGLU_BWD, .width = F, .out = gr->dh1, .out2 = gr->dh3,
                                 .in = a->h1, .in2 = a->h3, .dy = gr->dhg}, N);
        if (dw) {
            matmul_backward_weights(dw->w1, gr->dh1, a->hn, N, F, D, nt);
            matmul_backward_weights(dw->w3, gr->dh3, a->hn, N, F, D, nt);
        }
        memset(gr->dhn, 0, ND * sizeof(float));
        matmul_backward_par(gr->dhn, gr->dh1, w->w1, N, F, D, nt);
        matmul_backward_par(gr->dhn, gr->dh3, w->w3, N, F, D, nt);
    }
    if (gt && gt->NB) gt->router_backward(gt->ctx, layer, 1 + s->H, gt->U, a->hn, gr->dhn);
    if (dw) rmsnorm_backward_weights(dw->ffn_norm, gr->dhn, a->xmid, a->rinv2, N, D);
    if (!gt) {
        /* x_out = x_mid + f: dx becomes d/dx_mid; a is added to x_in */
        norm_backward(s, gr->dx, gr->dhn, a->xmid, a->rinv2, w->ffn_norm, N);
    } else {
        memset(gr->dtmp, 0, ND * sizeof(float));
        norm_backward(s, gr->dtmp, gr->dhn, a->xmid, a->rinv2, w->ffn_norm, N); /* dm */
        for (size_t j = 0; j < ND; j++) {
            gr->dA[j] += gr->dtmp[j]; /* dA = du + dm */
            gr->dx[j] += gr->dtmp[j]; /* x_mid = x_in + a */
        }
    }
    attn_out_backward(s, w, a, gt, gr, gt ? gr->dA : gr->dx, dw ? dw->wo : NULL, N);
    memset(gr->dq, 0, (size_t)N * Q * sizeof(float));
    memset(gr->dk, 0, (size_t)N * KVD * sizeof(float));
    memset(gr->dv, 0, (size_t)N * KVD * sizeof(float));
    attention_windows(s, &(att_windows){.s = s, .a = a, .gr = gr}, nb);
    rope_backward(gr->dq, N, T, s->H, hd, s->rope_dim, s->rope_cos, s->rope_sin);
    rope_backward(gr->dk, N, T, s->KV, hd, s->rope_dim, s->rope_cos, s->rope_sin);
    /* through the q/k norms (dO, spent by the attention's backward, is the scratch) */
    if (w->q_norm) {
        if (dw && dw->q_norm) rmsnorm_backward_weights(dw->q_norm, gr->dq, a->q_raw, a->rinv_q, N * s->H, hd);
        head_norms_backward(gr->dq, gr->dO, a->q_raw, a->rinv_q, w->q_norm, N * s->H, hd);
    }
    if (w->k_norm) {
        if (dw && dw->k_norm) rmsnorm_backward_weights(dw->k_norm, gr->dk, a->k_raw, a->rinv_k, N * s->KV, hd);
        head_norms_backward(gr->dk, gr->dO, a->k_raw, a->rinv_k, w->k_norm, N * s->KV, hd);
    }
    if (dw) {
        sum_rows(dw->bq, gr->dq, N, Q);
        sum_rows(dw->bk, gr->dk, N, KVD);
        sum_rows(dw->bv, gr->dv, N, KVD);
        matmul_backward_weights(dw->wq, gr->dq, a->xn, N, Q, D, nt);
        matmul_backward_weights(dw->wk, gr->dk, a->xn, N, KVD, D, nt);
        matmul_backward_weights(dw->wv, gr->dv, a->xn, N, KVD, D, nt);
    }
    memset(gr->dxn, 0, ND * sizeof(float));
    matmul_backward_par(gr->dxn, gr->dq, w->wq, N, Q, D, nt);
    matmul_backward_par(gr->dxn, gr->dk, w->wk, N, KVD, D, nt);
    matmul_backward_par(gr->dxn, gr->dv, w->wv, N, KVD, D, nt);
    if (gt) gt->router_backward(gt->ctx, layer, 0, 1 + s->H, a->xn, gr->dxn);
    if (dw) rmsnorm_backward_weights(dw->attn_norm, gr->dxn, a->x_in, a->rinv1, N, D);
    norm_backward(s, gr->dx, gr->dxn, a->x_in, a->rinv1, w->attn_norm, N);
}
