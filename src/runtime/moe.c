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
}

void moe_top_k(const doze_model *m, const float *probs, uint8_t *on) {
    const int E = m->info.n_experts, k = m->info.n_experts_used;
    memset(on, 0, (size_t)E);
    for (int i = 0; i < k; i++) {
        int best = -1;
        for (int e = 0; e < E; e++)
            if (!on[e] && (best < 0 || probs[e] > probs[best])) best = e;
        on[best] = 1;
    }
}

void moe_ffn(const doze_model *m, int l, int nr, const int *run, float *x, const float *hn, uint8_t *expert_on,
             size_t stride, int forced, moe_scratch *s, float *block_norm) {
    const doze_model_info *c = &m->info;
    const doze_kernels *k = m->kern;
    const doze_layer *L = &m->layers[l];
    const int dim = c->dim, hid = c->hidden_dim, E = c->n_experts;

    /* router probabilities of the running tokens: probs(nr, E) */
    for (int r = 0; r < nr; r++)
        memcpy(s->gx + (size_t)r * dim, hn + (size_t)run[r] * dim, (size_t)dim * sizeof(float));
    model_matmul(m, s->probs, E, &L->w_router, s->gx, dim, nr, s->mm);
    for (int r = 0; r < nr; r++) {
        float *p = s->probs + (size_t)r * E;
        uint8_t *on = expert_on + (size_t)run[r] * stride;
        k->softmax(p, E);
        if (!forced) moe_top_k(m, p, on);
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
            for (int d = 0; d < dim; d++) y[d] *= w;
            k->add(s->acc + (size_t)r * dim, y, dim);
        }
    }
    for (int r = 0; r < nr; r++) k->add(x + (size_t)run[r] * dim, s->acc + (size_t)r * dim, dim);
    if (block_norm && nr) {
        double ss = 0;
        for (int d = 0; d < dim; d++) ss += (double)s->acc[d] * s->acc[d];
        block_norm[0] = (float)sqrt(ss);
    }
}
