/* The mixture-of-experts FFN (moe.h). Tokens are served expert by expert:
 * each expert's weights are read once for all the batch tokens that use it
 * (model_matmul gives each token the bits model_matvec would). */
#include "moe.h"

#include <math.h>
#include <string.h>

#include "types.h"

void moe_scratch_carve(carver *c, const doze_model *m, int n_max, moe_scratch *s) {
    const doze_model_info *i = &m->info;
    memset(s, 0, sizeof *s);
    if (!i->n_experts) return;
    const size_t n = (size_t)n_max, dim = (size_t)i->dim, hid = (size_t)i->hidden_dim;
    const size_t widest = dim > hid ? dim : hid;
    s->probs = carve(c, n * (size_t)i->n_experts);
    s->acc = carve(c, n * dim);
    s->gx = carve(c, n * dim);
    s->h1 = carve(c, n * hid);
    s->h2 = carve(c, n * hid);
    s->y = carve(c, n * dim);
    s->mm = carve_bytes(c, n * (widest * sizeof(float) + sizeof(doze_block_q8_0)));
    s->sel = (int *)carve_bytes(c, n * sizeof(int));
    s->ye = carve(c, (size_t)i->n_experts * dim);
}

int moe_next(const float *probs, int n_experts, const uint8_t *taken) {
    int best = -1;
    for (int e = 0; e < n_experts; e++)
        if (!taken[e] && (best < 0 || probs[e] > probs[best])) best = e;
    return best;
}

void moe_top_k_of(const float *probs, int n_experts, int k, uint8_t *on) {
    memset(on, 0, (size_t)n_experts);
    for (int i = 0; i < k; i++) on[moe_next(probs, n_experts, on)] = 1;
}

void moe_top_k(const doze_model *m, const float *probs, uint8_t *on) {
    moe_top_k_of(probs, m->info.n_experts, m->info.n_experts_used, on);
}

/* ||v||^2 in double (traces only) */
static double norm2_of(const float *v, int n) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)v[i] * v[i];
    return ss;
}

void moe_ffn(const doze_model *m, int l, int nr, const int *run, float *x, const float *hn, uint8_t *expert_on,
             size_t stride, int forced, const moe_decider *d, moe_scratch *s, const moe_trace *tr) {
    const doze_model_info *c = &m->info;
    const doze_kernels *k = m->kern;
    const doze_layer *L = &m->layers[l];
    const int dim = c->dim, hid = c->hidden_dim, E = c->n_experts;
    const int tracing = tr && nr == 1;

    /* router probabilities of the running tokens: probs(nr, E) */
    for (int r = 0; r < nr; r++)
        memcpy(s->gx + (size_t)r * dim, hn + (size_t)run[r] * dim, (size_t)dim * sizeof(float));
    model_matmul(m, s->probs, E, &L->w_router, s->gx, dim, nr, s->mm);
    for (int r = 0; r < nr; r++) {
        float *p = s->probs + (size_t)r * E;
        uint8_t *on = expert_on + (size_t)run[r] * stride;
        k->softmax(p, E);
        if (tracing && tr->probs) memcpy(tr->probs, p, (size_t)E * sizeof(float));
        if (!forced) {
            if (d) d->decide(d->ctx, l, run[r], p, on);
            else moe_top_k(m, p, on);
        }
        /* the weights: the running experts' probabilities over their sum */
        float sum = 0.0f;
        for (int e = 0; e < E; e++)
            if (on[e]) sum += p[e];
        for (int e = 0; e < E; e++) p[e] = on[e] && sum > 0.0f ? p[e] / sum : 0.0f;
        memset(s->acc + (size_t)r * dim, 0, (size_t)dim * sizeof(float));
    }
    /* expert by expert over the tokens it serves */
    for (int e = 0; e < E; e++) {
        int ns = 0;
        for (int r = 0; r < nr; r++)
            if (expert_on[(size_t)run[r] * stride + (size_t)e]) s->sel[ns++] = r;
        if (!ns) continue;
        for (int i = 0; i < ns; i++)
            memcpy(s->gx + (size_t)i * dim, hn + (size_t)run[s->sel[i]] * dim, (size_t)dim * sizeof(float));
        const doze_matrix wg = model_rows(&L->w_gate, e * hid, hid), wu = model_rows(&L->w_up, e * hid, hid);
        const doze_matrix wd = model_rows(&L->w_down, e * dim, dim);
        model_matmul(m, s->h1, hid, &wg, s->gx, dim, ns, s->mm); /* (ns, hid) */
        model_matmul(m, s->h2, hid, &wu, s->gx, dim, ns, s->mm);
        for (int i = 0; i < ns; i++)
            k->swiglu(s->h1 + (size_t)i * hid, s->h1 + (size_t)i * hid, s->h2 + (size_t)i * hid, hid);
        model_matmul(m, s->y, dim, &wd, s->h1, hid, ns, s->mm); /* (ns, dim) */
        for (int i = 0; i < ns; i++) {
            const int r = s->sel[i];
            const float w = s->probs[(size_t)r * E + e];
            float *y = s->y + (size_t)i * dim;
            for (int dd = 0; dd < dim; dd++) y[dd] *= w;
            if (tracing) memcpy(s->ye + (size_t)e * dim, y, (size_t)dim * sizeof(float));
            k->add(s->acc + (size_t)r * dim, y, dim);
        }
    }
    for (int r = 0; r < nr; r++) k->add(x + (size_t)run[r] * dim, s->acc + (size_t)r * dim, dim);
    if (!tracing) return;
    const double acc2 = norm2_of(s->acc, dim);
    if (tr->block_norm) tr->block_norm[0] = (float)sqrt(acc2);
    if (!tr->drop) return;
    /* dropping running expert e (weight w, update u_e = w y_e) renormalizes
     * the others: the update moves by (u_e - w acc) / (1 - w) */
    const uint8_t *on = expert_on + (size_t)run[0] * stride;
    for (int e = 0; e < E; e++) {
        const double w = s->probs[e];
        if (!on[e] || !(w < 1.0)) {
            tr->drop[e] = on[e] ? (float)sqrt(acc2) : 0.0f;
            continue;
        }
        const float *u = s->ye + (size_t)e * dim;
        double ss = 0;
        for (int dd = 0; dd < dim; dd++) {
            const double v = ((double)u[dd] - w * s->acc[dd]) / (1.0 - w);
            ss += v * v;
        }
        tr->drop[e] = (float)sqrt(ss);
    }
}
