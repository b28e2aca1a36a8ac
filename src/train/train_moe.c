/* The trainer's mixture-of-experts FFN (see train_moe.h). */
#include "train_moe.h"

#include <string.h>

#include "moe.h"
#include "train_ops.h"

void tmoe_carve_acts(carver *c, tmoe_acts *a, const tmoe_shape *s, size_t N) {
    const size_t E = (size_t)s->E, K = (size_t)s->K, D = (size_t)s->D, F = (size_t)s->F;
    a->probs = carve(c, N * E);
    a->sel = (int32_t *)carve_bytes(c, N * K * sizeof(int32_t));
    a->count = (int32_t *)carve_bytes(c, N * sizeof(int32_t));
    a->w = carve(c, N * K);
    a->start = (int32_t *)carve_bytes(c, (E + 1) * sizeof(int32_t));
    a->slot_tok = (int32_t *)carve_bytes(c, N * K * sizeof(int32_t));
    a->tok_slot = (int32_t *)carve_bytes(c, N * K * sizeof(int32_t));
    a->slot_w = carve(c, N * K);
    a->h1 = carve(c, N * K * F);
    a->h3 = carve(c, N * K * F);
    a->hg = carve(c, N * K * F);
    a->y = carve(c, N * K * D);
    a->frac = carve(c, E);
    a->balance = 0;
}

void tmoe_carve_scratch(carver *c, tmoe_scratch *sc, const tmoe_shape *s, size_t N) {
    const size_t D = (size_t)s->D, F = (size_t)s->F, E = (size_t)s->E;
    sc->gx = carve(c, N * D);
    sc->dy = carve(c, N * D);
    sc->dgx = carve(c, N * D);
    sc->dhg = carve(c, N * F);
    sc->dh1 = carve(c, N * F);
    sc->dh3 = carve(c, N * F);
    sc->dp = carve(c, N * E);
    sc->cursor = (int32_t *)carve_bytes(c, E * sizeof(int32_t));
}

/* rows(n, D) = src rows of the tokens of slots s0 .. s0 + n */
static void gather(float *rows, const float *src, const int32_t *slot_tok, int s0, int n, int D) {
    for (int i = 0; i < n; i++)
        memcpy(rows + (size_t)i * D, src + (size_t)slot_tok[s0 + i] * D, (size_t)D * sizeof(float));
}

void tmoe_forward(const tmoe_shape *s, const tmoe_weights *w, tmoe_acts *a, tmoe_scratch *sc,
                  const float *hn, float *f, int N) {
    tmoe_forward_decided(s, w, a, sc, hn, f, N, NULL);
}

void tmoe_forward_decided(const tmoe_shape *s, const tmoe_weights *w, tmoe_acts *a, tmoe_scratch *sc,
                          const float *hn, float *f, int N, const tmoe_decider *d) {
    const int D = s->D, F = s->F, E = s->E, K = s->K;
    doze_pool *nt = s->pool;
    /* routing: probabilities, the top k, their weights (the runtime's float ops, in its order) */
    matmul_forward_t_par(a->probs, hn, w->t_router, N, E, D, nt); /* logits (N, E) */
    memset(a->start, 0, (size_t)(E + 1) * sizeof(int32_t));
    uint8_t on[256];
    for (int n = 0; n < N; n++) {
        float *p = a->probs + (size_t)n * E;
        s->softmax(p, E);
        if (d) d->decide(d->ctx, n, p, on);
        else moe_top_k_of(p, E, K, on);
        float sum = 0.0f;
        for (int e = 0; e < E; e++)
            if (on[e]) sum += p[e];
        int j = 0;
        for (int e = 0; e < E && j < K; e++)
            if (on[e]) {
                a->sel[(size_t)n * K + j] = e;
                a->w[(size_t)n * K + j] = p[e] / sum;
                a->start[e + 1]++;
                j++;
            }
        a->count[n] = j;
    }
    for (int e = 0; e < E; e++) a->start[e + 1] += a->start[e];
    /* slots: grouped by expert, tokens ascending within an expert */
    memcpy(sc->cursor, a->start, (size_t)E * sizeof(int32_t));
    for (int n = 0; n < N; n++)
        for (int j = 0; j < a->count[n]; j++) {
            const int e = a->sel[(size_t)n * K + j], slot = sc->cursor[e]++;
            a->slot_tok[slot] = n;
            a->slot_w[slot] = a->w[(size_t)n * K + j];
            a->tok_slot[(size_t)n * K + j] = slot;
        }
    /* the balance term: f_e the share of tokens routed to e, P_e the mean probability */
    double bal = 0;
    for (int e = 0; e < E; e++) {
        a->frac[e] = (float)(a->start[e + 1] - a->start[e]) / (float)N;
        double pe = 0;
        for (int n = 0; n < N; n++) pe += a->probs[(size_t)n * E + e];
        bal += (double)a->frac[e] * (pe / N);
    }
    a->balance = (double)s->balance * E * bal;
    /* each expert over its tokens */
    for (int e = 0; e < E; e++) {
        const int s0 = a->start[e], ns = a->start[e + 1] - s0;
        if (!ns) continue;
        gather(sc->gx, hn, a->slot_tok, s0, ns, D);
        const size_t fd = (size_t)F * D;
        float *h1 = a->h1 + (size_t)s0 * F, *h3 = a->h3 + (size_t)s0 * F, *hg = a->hg + (size_t)s0 * F;
        matmul_forward_t_par(h1, sc->gx, w->t_gate + (size_t)e * fd, ns, F, D, nt); /* (ns, F) */
        matmul_forward_t_par(h3, sc->gx, w->t_up + (size_t)e * fd, ns, F, D, nt);
        swiglu_forward(hg, h1, h3, ns, F, s->swiglu);
        matmul_forward_t_par(a->y + (size_t)s0 * D, hg, w->t_down + (size_t)e * fd, ns, D, F, nt); /* (ns, D) */
    }
    /* f_n = sum over its experts, ascending, of w y (the runtime scales, then adds) */
    for (int n = 0; n < N; n++) {
        float *fn = f + (size_t)n * D;
        memset(fn, 0, (size_t)D * sizeof(float));
        for (int j = 0; j < a->count[n]; j++) {
            const int slot = a->tok_slot[(size_t)n * K + j];
            const float wj = a->slot_w[slot];
            const float *y = a->y + (size_t)slot * D;
            for (int d = 0; d < D; d++) fn[d] += y[d] * wj;
        }
    }
}

void tmoe_backward(const tmoe_shape *s, const tmoe_weights *w, const tmoe_acts *a, tmoe_scratch *sc,
                   const float *hn, const float *du, float *dhn, tmoe_grads *g, int N) {
    const int D = s->D, F = s->F, E = s->E, K = s->K;
    doze_pool *nt = s->pool;
    /* d/d p: through the renormalized weights w_i = p_i / S of the selected,
     * dp_j = (dw_j - sum_i w_i dw_i) / S, dw_j = du . y_j; and the balance
     * term's C E f_e / N on every probability */
    const float bal = s->balance * (float)E / (float)N;
    for (int n = 0; n < N; n++) {
        const float *p = a->probs + (size_t)n * E, *dun = du + (size_t)n * D;
        float *dp = sc->dp + (size_t)n * E;
        for (int e = 0; e < E; e++) dp[e] = bal * a->frac[e];
        float dw[256], S = 0.0f, wdw = 0.0f;
        const int cn = a->count[n];
        for (int j = 0; j < cn; j++) {
            const int e = a->sel[(size_t)n * K + j];
            const float *y = a->y + (size_t)a->tok_slot[(size_t)n * K + j] * D;
            float acc = 0.0f;
            for (int d = 0; d < D; d++) acc += dun[d] * y[d];
            dw[j] = acc;
            S += p[e];
            wdw += a->w[(size_t)n * K + j] * acc;
        }
        for (int j = 0; j < cn; j++) dp[a->sel[(size_t)n * K + j]] += (dw[j] - wdw) / S;
        /* softmax: dlogit_e = p_e (dp_e - sum_i p_i dp_i) */
        float pdp = 0.0f;
        for (int e = 0; e < E; e++) pdp += p[e] * dp[e];
        for (int e = 0; e < E; e++) dp[e] = p[e] * (dp[e] - pdp);
    }
    /* the router: dWr += dlogit^T hn; dhn = dlogit Wr */
    memset(dhn, 0, (size_t)N * D * sizeof(float));
    if (g) matmul_backward_weights(g->router, sc->dp, hn, N, E, D, nt);
    matmul_backward_par(dhn, sc->dp, w->router, N, E, D, nt);
    /* each expert over its tokens: dy = w du */
    for (int e = 0; e < E; e++) {
        const int s0 = a->start[e], ns = a->start[e + 1] - s0;
        if (!ns) continue;
        const size_t fd = (size_t)F * D;
        for (int i = 0; i < ns; i++) {
            const float wi = a->slot_w[s0 + i];
            const float *dun = du + (size_t)a->slot_tok[s0 + i] * D;
            float *dyi = sc->dy + (size_t)i * D;
            for (int d = 0; d < D; d++) dyi[d] = wi * dun[d];
        }
        gather(sc->gx, hn, a->slot_tok, s0, ns, D);
        const float *h1 = a->h1 + (size_t)s0 * F, *h3 = a->h3 + (size_t)s0 * F, *hg = a->hg + (size_t)s0 * F;
        /* y = Wd hg: dWd += dy^T hg, dhg = dy Wd */
        if (g) matmul_backward_weights(g->down + (size_t)e * fd, sc->dy, hg, ns, D, F, nt);
        memset(sc->dhg, 0, (size_t)ns * F * sizeof(float));
        matmul_backward_par(sc->dhg, sc->dy, w->down + (size_t)e * fd, ns, D, F, nt);
        swiglu_backward(sc->dh1, sc->dh3, sc->dhg, h1, h3, ns, F);
        /* h1 = Wg x, h3 = Wu x */
        if (g) {
            matmul_backward_weights(g->gate + (size_t)e * fd, sc->dh1, sc->gx, ns, F, D, nt);
            matmul_backward_weights(g->up + (size_t)e * fd, sc->dh3, sc->gx, ns, F, D, nt);
        }
        memset(sc->dgx, 0, (size_t)ns * D * sizeof(float));
        matmul_backward_par(sc->dgx, sc->dh1, w->gate + (size_t)e * fd, ns, F, D, nt);
        matmul_backward_par(sc->dgx, sc->dh3, w->up + (size_t)e * fd, ns, F, D, nt);
        /* back to the tokens, expert after expert: a fixed order */
        for (int i = 0; i < ns; i++) {
            float *dst = dhn + (size_t)a->slot_tok[s0 + i] * D;
            const float *src = sc->dgx + (size_t)i * D;
            for (int d = 0; d < D; d++) dst[d] += src[d];
        }
    }
}
