/* Training a mixture of experts (train_moe.c through the full trainer):
 * - the MoE FFN alone: the gradients of the router, the expert stacks and
 *   the input against central finite differences, the balance term
 *   included (a large C so that its gradient counts);
 * - the whole trainer: every tensor's gradient against central differences
 *   on a tiny seeded mixture (entries whose nudge changes a token's
 *   selected experts are skipped: the selection is a constant of the
 *   gradient, as in Mixtral/Switch);
 * - the written model in the runtime, stepped token by token, gives the
 *   training forward's logits (training forward = inference);
 * - 1 and 2 threads write the same bytes; a run resumed from a checkpoint
 *   writes the uninterrupted run's bytes; training lowers the loss;
 * - nonsense shapes (one expert, k > E, k without experts) are refused. */
#include <stdint.h>

#include "kernels.h"
#include "train_moe.h"
#include "train_ops.h"
#include "train_fixture.h"

static uint64_t rng = 11;
static double uni(void) {
    rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
    return (double)((rng * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}

static void fill(float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = scale * (float)(uni() * 2 - 1);
}

/* ---- the MoE FFN alone ---------------------------------------------------------------- */

typedef struct {
    tmoe_shape s;
    float *router, *gate, *up, *down, *tr, *tg, *tu, *td;
    float *hn, *r, *f;
    tmoe_acts a;
    tmoe_scratch sc;
    void *mem;
    int N;
} op_case;

static void transpose(float *wt, const float *w, int rows, int cols) {
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) wt[(size_t)c * rows + r] = w[(size_t)r * cols + c];
}

static void op_refresh(op_case *c) {
    const int D = c->s.D, F = c->s.F, E = c->s.E;
    transpose(c->tr, c->router, E, D);
    for (int e = 0; e < E; e++) {
        const size_t o = (size_t)e * F * D;
        transpose(c->tg + o, c->gate + o, F, D);
        transpose(c->tu + o, c->up + o, F, D);
        transpose(c->td + o, c->down + o, D, F);
    }
}

static tmoe_weights op_weights(const op_case *c) {
    tmoe_weights w = {c->router, c->gate, c->up, c->down, c->tr, c->tg, c->tu, c->td};
    return w;
}

/* loss = sum f . r + balance; the selection (N, K) copied into sel when given */
static double op_loss(op_case *c, int32_t *sel) {
    const tmoe_weights w = op_weights(c);
    tmoe_forward(&c->s, &w, &c->a, &c->sc, c->hn, c->f, c->N);
    double l = 0;
    for (size_t i = 0; i < (size_t)c->N * c->s.D; i++) l += (double)c->f[i] * c->r[i];
    if (sel) memcpy(sel, c->a.sel, (size_t)c->N * c->s.K * sizeof(int32_t));
    return l + c->a.balance;
}

static void test_op_gradients(void) {
    op_case c;
    memset(&c, 0, sizeof c);
    c.s.D = 12, c.s.F = 10, c.s.E = 5, c.s.K = 2, c.s.balance = 1.0f, c.s.pool = NULL;
    c.s.softmax = doze_kernels_simd.softmax;
    c.s.swiglu = doze_kernels_simd.swiglu;
    c.N = 9;
    const int D = c.s.D, F = c.s.F, E = c.s.E, K = c.s.K, N = c.N;
    const size_t ED = (size_t)E * D, EFD = (size_t)E * F * D, ND = (size_t)N * D;
    c.router = malloc(ED * 4), c.tr = malloc(ED * 4);
    c.gate = malloc(EFD * 4), c.up = malloc(EFD * 4), c.down = malloc(EFD * 4);
    c.tg = malloc(EFD * 4), c.tu = malloc(EFD * 4), c.td = malloc(EFD * 4);
    c.hn = malloc(ND * 4), c.r = malloc(ND * 4), c.f = malloc(ND * 4);
    fill(c.router, ED, 1.0f), fill(c.gate, EFD, 0.6f), fill(c.up, EFD, 0.6f), fill(c.down, EFD, 0.6f);
    fill(c.hn, ND, 1.0f), fill(c.r, ND, 1.0f);
    carver m = {NULL, 0};
    tmoe_carve_acts(&m, &c.a, &c.s, (size_t)N);
    tmoe_carve_scratch(&m, &c.sc, &c.s, (size_t)N);
    c.mem = calloc(1, m.at + 64);
    carver cv = {(uint8_t *)c.mem, 0};
    tmoe_carve_acts(&cv, &c.a, &c.s, (size_t)N);
    tmoe_carve_scratch(&cv, &c.sc, &c.s, (size_t)N);
    op_refresh(&c);

    int32_t *sel0 = malloc((size_t)N * K * 4), *sel1 = malloc((size_t)N * K * 4);
    const double l0 = op_loss(&c, sel0);
    const double bal0 = c.a.balance;
    /* d loss / d f = r */
    float *gr = calloc(ED, 4), *gg = calloc(EFD, 4), *gu = calloc(EFD, 4), *gd = calloc(EFD, 4), *dhn = malloc(ND * 4);
    tmoe_grads g = {gr, gg, gu, gd};
    const tmoe_weights w = op_weights(&c);
    tmoe_backward(&c.s, &w, &c.a, &c.sc, c.hn, c.r, dhn, &g, N);
    /* the balance term alone (r = 0): its gradient reaches the router and the input only */
    float *gr_b = calloc(ED, 4), *gg_b = calloc(EFD, 4), *gu_b = calloc(EFD, 4), *gd_b = calloc(EFD, 4),
          *dhn_b = malloc(ND * 4), *zero = calloc(ND, 4);
    tmoe_grads gb = {gr_b, gg_b, gu_b, gd_b};
    tmoe_backward(&c.s, &w, &c.a, &c.sc, c.hn, zero, dhn_b, &gb, N);
    double bal_router = 0, bal_experts = 0;
    for (size_t i = 0; i < ED; i++) bal_router = fmax(bal_router, fabs(gr_b[i]));
    for (size_t i = 0; i < EFD; i++) bal_experts = fmax(bal_experts, fabs(gg_b[i]) + fabs(gu_b[i]) + fabs(gd_b[i]));

    struct { const char *name; float *x, *g; size_t n; int refresh; } parts[] = {
        {"router", c.router, gr, ED, 1}, {"gate", c.gate, gg, EFD, 1}, {"up", c.up, gu, EFD, 1},
        {"down", c.down, gd, EFD, 1}, {"input", c.hn, dhn, ND, 0},
    };
    int checked = 0, skipped = 0, bad = 0;
    double worst = 0;
    for (size_t pi = 0; pi < sizeof parts / sizeof parts[0]; pi++) {
        for (size_t k = 0; k < parts[pi].n; k++) {
            float *px = &parts[pi].x[k], keep = *px;
            const double h = 1e-3;
            *px = (float)(keep + h);
            if (parts[pi].refresh) op_refresh(&c);
            double lp = op_loss(&c, sel1);
            int same = memcmp(sel0, sel1, (size_t)N * K * 4) == 0;
            *px = (float)(keep - h);
            if (parts[pi].refresh) op_refresh(&c);
            double lm = op_loss(&c, sel1);
            same &= memcmp(sel0, sel1, (size_t)N * K * 4) == 0;
            *px = keep;
            if (parts[pi].refresh) op_refresh(&c);
            if (!same) {
                skipped++;
                continue;
            }
            const double fd = (lp - lm) / (2 * h), an = parts[pi].g[k];
            const double e = fabs(fd - an), scale = fmax(fabs(fd), fabs(an));
            if (scale >= 1e-2) worst = fmax(worst, e / scale);
            if (e > 2e-2 * scale + 2e-3) {
                bad++;
                if (bad < 10) printf("  %s[%zu]: backprop %.6g, finite difference %.6g\n", parts[pi].name, k, an, fd);
            }
            checked++;
        }
    }
    printf("MoE FFN alone (D %d, F %d, %d experts, top-%d, %d tokens, C = 1): loss %.4f (balance %.4f); "
           "%d entries of router, stacks and input checked, %d skipped (a nudge changed a selection), "
           "worst relative error %.3g; the balance term alone: router %.3g, experts %.3g\n",
           D, F, E, K, N, l0, bal0, checked, skipped, worst, bal_router, bal_experts);
    CHECK(bad == 0);
    CHECK(checked > 1000 && skipped < checked / 10);
    CHECK(bal_router > 1e-3 && bal_experts == 0.0);
    /* balance at C = 1 lies between k (uniform) and E k (one expert takes every token) */
    CHECK(bal0 >= 0.5 * K && bal0 <= (double)E * K);
    free(sel0), free(sel1), free(gr), free(gg), free(gu), free(gd), free(dhn);
    free(gr_b), free(gg_b), free(gu_b), free(gd_b), free(dhn_b), free(zero);
    free(c.router), free(c.tr), free(c.gate), free(c.up), free(c.down), free(c.tg), free(c.tu), free(c.td);
    free(c.hn), free(c.r), free(c.f), free(c.mem);
}

/* ---- the whole trainer ---------------------------------------------------------------- */

/* the experts every layer selected, as recorded before the nudges */
typedef struct {
    int L;
    const int32_t *ref;
    size_t per_layer;
} selections;

/* grad_check_entry's kept: every layer selected the recorded experts */
static int selections_equal(const doze_full_trainer *t, void *ctx) {
    const selections *s = ctx;
    for (int l = 0; l < s->L; l++)
        if (memcmp(full_moe_selected(t, l), s->ref + (size_t)l * s->per_layer, s->per_layer * sizeof(int32_t)))
            return 0;
    return 1;
}

static void gradient_check(const mem_buf *vocab) {
    enum { D = 16, F = 12, NL = 2, NH = 4, NKV = 2, B = 2, T = 8, E = 4, K = 2 };
    doze_full_params p = doze_full_default_params();
    p.dim = D, p.hidden_dim = F, p.n_layers = NL, p.n_heads = NH, p.n_kv_heads = NKV;
    p.context = T, p.batch = B, p.tied = 0, p.init_std = 0.35f, p.seed = 9;
    p.n_experts = E, p.n_experts_used = K, p.balance_loss = 0.5f;
    p.threads = 1;
    doze_full_trainer *t = NULL;
    doze_error e;
    CHECK(doze_full_trainer_new(&p, vocab->data, vocab->len, &t, &e) == DOZE_OK);
    if (!t) return;
    int32_t win[B * (T + 1)];
    double loss;
    float *g = grad_check_start(t, uni, win, B, T, &loss);
    const double bal = full_last_balance(t);
    /* the experts each layer selected in that forward: the nudges must keep them */
    const size_t per_layer = (size_t)B * T * K;
    int32_t *sel = malloc(per_layer * NL * sizeof *sel);
    for (int l = 0; l < NL; l++) memcpy(sel + l * per_layer, full_moe_selected(t, l), per_layer * sizeof *sel);
    selections recorded = {NL, sel, per_layer};
    grad_tally r = {0, 0, 0, 0, 0};
    int kinds = 0, moe_tensors = 0;
    for (int i = 0; i < full_n_tensors(t); i++) {
        const full_tensor *x = full_tensor_at(t, i);
        const size_t n = full_tensor_count(x);
        const int is_moe = strstr(x->name, "_exps") || strstr(x->name, "gate_inp");
        moe_tensors += is_moe;
        int any = 0;
        for (int k = 0; k < (is_moe ? 24 : 8); k++) {
            size_t j = (size_t)(uni() * n);
            if (i == 0) j = (size_t)win[1 + (int)(uni() * T)] * D + (size_t)(uni() * D);
            any |= grad_check_entry(t, win, g, x, j, selections_equal, &recorded, &r);
        }
        kinds += any;
    }
    printf("trainer gradient check (%d layers of %d experts, top-%d, C = 0.5): loss %.4f (balance %.4f); "
           "%d entries of all %d tensors (%d with gradients >= 1e-3), %d skipped (selection changed); "
           "worst relative error %.3g\n", NL, E, K, loss, bal, r.checked, full_n_tensors(t), kinds, r.skipped, r.worst);
    CHECK(r.bad == 0);
    CHECK(kinds == full_n_tensors(t));
    CHECK(full_n_tensors(t) == 3 + 10 * NL && moe_tensors == 4 * NL);
    CHECK(r.skipped < r.checked / 4);
    CHECK(bal > 0.5 * K * NL * 0.9 && bal < 0.5 * E * K * NL);
    free(g);
    free(sel);
    doze_full_trainer_free(t);
}

/* runs steps [from, to) of t on the stream */
static void run(doze_full_trainer *t, const int32_t *ids, int n, int from, int to, int32_t *win,
                double *first, double *last) {
    doze_error e;
    for (int s = from; s < to && t; s++) {
        doze_full_stats st;
        CHECK(doze_full_trainer_sample(t, ids, (size_t)n, win, &e) == DOZE_OK);
        CHECK(doze_full_trainer_step(t, win, &st, &e) == DOZE_OK);
        if (first && s == from) *first = st.loss;
        if (last) *last = st.loss;
    }
}

/* doze_model_params.experts_used: another k than the file's, checked */
static void test_experts_used(const mem_buf *model, const mem_buf *dense) {
    doze_error e;
    doze_model_params mp = doze_model_default_params();
    doze_model *m1 = NULL, *m2 = NULL, *bad = NULL;
    mp.experts_used = 1;
    CHECK(doze_model_load_memory(model->data, model->len, &mp, &m1, &e) == DOZE_OK);
    mp.experts_used = 2;
    CHECK(doze_model_load_memory(model->data, model->len, &mp, &m2, &e) == DOZE_OK);
    if (!m1 || !m2) return;
    const doze_model_info *i1 = doze_model_get_info(m1);
    CHECK(i1->n_experts_used == 1 && i1->n_experts_used_file == 2);
    /* k = 1: one expert per layer, the most probable one (the file's top-2 minus its second) */
    doze_session *s1 = doze_session_new(m1, &e), *s2 = doze_session_new(m2, &e);
    int one = 1, subset = 1;
    for (int i = 0; s1 && s2 && i < 20; i++) {
        const int tok = 3 + (i * 7) % 200;
        CHECK(doze_session_step(s1, tok, &e) == DOZE_OK && doze_session_step(s2, tok, &e) == DOZE_OK);
        const uint8_t *o1 = doze_session_expert_mask(s1), *o2 = doze_session_expert_mask(s2);
        for (int l = 0; l < i1->n_layers; l++) {
            int n1 = 0, n2 = 0;
            for (int x = 0; x < i1->n_experts; x++) {
                n1 += o1[l * i1->n_experts + x];
                n2 += o2[l * i1->n_experts + x];
                if (o1[l * i1->n_experts + x] && !o2[l * i1->n_experts + x] && i == 0) subset = 0;
            }
            one &= n1 == 1 && n2 == 2;
        }
    }
    printf("experts_used: 1 expert per layer and token with k = 1, 2 with k = 2 (the file's): %s; the first "
           "token's k = 1 expert among its top-2: %s\n", one ? "yes" : "NO", subset ? "yes" : "NO");
    CHECK(one && subset);
    doze_session_free(s1);
    doze_session_free(s2);
    /* out of range, or on a dense model: refused, named */
    mp.experts_used = 5;
    CHECK(doze_model_load_memory(model->data, model->len, &mp, &bad, &e) == DOZE_ERR_INVALID_ARGUMENT && !bad);
    printf("experts_used 5 of 4: %s\n", e.message);
    mp.experts_used = -1;
    CHECK(doze_model_load_memory(model->data, model->len, &mp, &bad, &e) == DOZE_ERR_INVALID_ARGUMENT && !bad);
    mp.experts_used = 1;
    CHECK(doze_model_load_memory(dense->data, dense->len, &mp, &bad, &e) == DOZE_ERR_INVALID_ARGUMENT && !bad);
    printf("experts_used 1 on a dense model: %s\n", e.message);
    doze_model_free(m1);
    doze_model_free(m2);
}

static void test_training(void) {
    doze_error e;
    mem_buf vocab = story_vocab();
    /* the two stories, four times over: one stream */
    int32_t ids[4096];
    const int n = story_stream(&vocab, 4, ids, 4096);
    /* big enough that the products split over threads (>= 4e6 multiply-adds) */
    enum { T = 128, B = 4, STEPS = 12 };
    doze_full_params p = doze_full_default_params();
    p.dim = 128, p.hidden_dim = 128, p.n_layers = 2, p.n_heads = 4, p.n_kv_heads = 2;
    p.context = T, p.batch = B, p.total_steps = STEPS, p.warmup_steps = 2, p.lr = 1e-2f, p.min_lr = 1e-3f;
    p.n_experts = 4, p.n_experts_used = 2;
    p.seed = 4;
    p.threads = 2;
    static int32_t win[B * (T + 1)];

    doze_full_trainer *a = NULL;
    CHECK(doze_full_trainer_new(&p, vocab.data, vocab.len, &a, &e) == DOZE_OK);
    if (!a) return;
    double first = 0, last = 0;
    run(a, ids, n, 0, STEPS, win, &first, &last);
    printf("training a mixture (%d tokens of text, %d steps of %d x %d, 4 experts, top-2): batch loss %.3f -> "
           "%.3f\n", n, STEPS, B, T, first, last);
    CHECK(last < 0.7 * first);
    mem_buf ma = save(a, 0);

    /* one thread writes the same bytes */
    doze_full_params p1 = p;
    p1.threads = 1;
    doze_full_trainer *c = NULL;
    CHECK(doze_full_trainer_new(&p1, vocab.data, vocab.len, &c, &e) == DOZE_OK);
    run(c, ids, n, 0, STEPS, win, NULL, NULL);
    mem_buf mc = save(c, 0);
    const int same_threads = ma.data && mc.data && ma.len == mc.len && memcmp(ma.data, mc.data, ma.len) == 0;
    printf("1 and 2 threads (%d cores): the written models (%zu bytes) are %s\n", pool_default_threads(), ma.len,
           same_threads ? "identical" : "DIFFERENT");
    CHECK(same_threads);
    doze_full_trainer_free(c);

    /* interrupted at step 5, resumed from its checkpoint: the same bytes */
    doze_full_trainer *b = NULL;
    CHECK(doze_full_trainer_new(&p, vocab.data, vocab.len, &b, &e) == DOZE_OK);
    run(b, ids, n, 0, 5, win, NULL, NULL);
    mem_buf ck = save(b, 1);
    doze_full_trainer_free(b);
    b = NULL;
    CHECK(ck.data && doze_full_trainer_resume(ck.data, ck.len, &b, &e) == DOZE_OK);
    if (b) {
        const doze_full_params *q = doze_full_trainer_params(b);
        CHECK(q->n_experts == 4 && q->n_experts_used == 2 && q->balance_loss == p.balance_loss);
        run(b, ids, n, 5, STEPS, win, NULL, NULL);
        mem_buf mb = save(b, 0);
        const int same = mb.data && mb.len == ma.len && memcmp(mb.data, ma.data, ma.len) == 0;
        printf("resumed from a checkpoint at step 5 (%zu bytes, Adam state of the experts included): the model "
               "after %d steps %s the uninterrupted run's\n", ck.len, STEPS, same ? "equals" : "DIFFERS from");
        CHECK(same);
        free(mb.data);
    }

    /* the written model in the runtime: the training forward's logits, token by token */
    doze_model *m = NULL;
    CHECK(ma.data && doze_model_load_memory(ma.data, ma.len, NULL, &m, &e) == DOZE_OK);
    doze_model *m2 = NULL; /* the checkpoint loads as a model too */
    CHECK(doze_model_load_memory(ck.data, ck.len, NULL, &m2, &e) == DOZE_OK);
    doze_model_free(m2);
    if (m) {
        const doze_model_info *info = doze_model_get_info(m);
        CHECK(info->n_experts == 4 && info->n_experts_used == 2 && info->hidden_dim == 128 && info->dim == 128);
        const int V = info->vocab_size, nb = 2;
        int32_t ev[nb * (T + 1)];
        for (int i = 0; i < nb * (T + 1); i++) ev[i] = ids[(i % (T + 1)) + (i / (T + 1)) * 37];
        const float *lt = full_forward_logits(a, ev, nb, &e);
        CHECK(lt != NULL);
        doze_session *s = doze_session_new(m, &e);
        double worst = 0, lo = 1e30, hi = -1e30;
        for (int w2 = 0; s && lt && w2 < nb; w2++) {
            doze_session_reset(s);
            for (int i = 0; i < T; i++) {
                CHECK(doze_session_step(s, ev[w2 * (T + 1) + i], &e) == DOZE_OK);
                const float *lg = doze_session_logits(s), *ref = lt + ((size_t)w2 * T + i) * V;
                for (int v = 0; v < V; v++) {
                    worst = fmax(worst, fabs((double)lg[v] - ref[v]));
                    lo = fmin(lo, ref[v]);
                    hi = fmax(hi, ref[v]);
                }
            }
        }
        printf("the written mixture in the runtime, %d windows of %d tokens stepped one by one: logits within "
               "%.3g of the training forward's (%.2g of their range %.3g)\n", nb, T, worst, worst / (hi - lo),
               hi - lo);
        CHECK(worst <= 1e-5 * (hi - lo));
        doze_session_free(s);
        doze_model_free(m);
    }
    mem_buf dense = fixture_gguf(8, 16, 1, 2, 2, 50, 16, 1, DOZE_TYPE_F32);
    if (ma.data && dense.data) test_experts_used(&ma, &dense);
    free(dense.data);
    free(ma.data);
    free(mc.data);
    free(ck.data);
    doze_full_trainer_free(a);
    doze_full_trainer_free(b);
    free(vocab.data);
}

static void test_refusals(const mem_buf *vocab) {
    const int bad[][2] = {{1, 1}, {4, 5}, {4, 0}, {0, 2}, {300, 2}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        doze_full_params p = doze_full_default_params();
        p.dim = 16, p.hidden_dim = 16, p.n_layers = 1, p.n_heads = 2, p.n_kv_heads = 2, p.context = 8, p.batch = 1;
        p.n_experts = bad[i][0], p.n_experts_used = bad[i][1];
        doze_full_trainer *t = NULL;
        doze_error e;
        doze_status st = doze_full_trainer_new(&p, vocab->data, vocab->len, &t, &e);
        CHECK(st == DOZE_ERR_BAD_SHAPE && t == NULL);
        if (i == 0) printf("refused: %s\n", e.message);
        doze_full_trainer_free(t);
    }
}

int main(void) {
    test_op_gradients();
    mem_buf f = fixture_gguf(8, 16, 1, 2, 2, 50, 16, 1, DOZE_TYPE_F32);
    CHECK(f.data != NULL);
    if (f.data) {
        gradient_check(&f);
        test_refusals(&f);
    }
    free(f.data);
    test_training();
    return test_finish("test_train_moe");
}
