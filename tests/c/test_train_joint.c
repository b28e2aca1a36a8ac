/* Joint training (weights and routers together): the gradients of the
 * routers and of every weight tensor match central finite differences of
 * the relaxed loss (soft gates, fixed visibility with skipped layers), for
 * distillation (KL) and cross-entropy; steps lower the loss; the fine-tuned
 * model written into the original GGUF loads and, under the trainer's hard
 * decisions, the token-by-token inference path gives the training forward's
 * logits (skipped layers write no K/V; skipped heads and FFN blocks compute
 * nothing); the written model with its retuned gates tracks the budget.
 * Low-rank adapters: their gradients match finite differences too, and the
 * model written is the base with W0 + B A in every projection, the rest
 * untouched. With the decisions' noise annealed to 0 the last step trains
 * under the inference rule's masks. The same for qwen2 (Q/K/V biases) and
 * qwen3 (q/k norms), both NeoX RoPE: their biases' and norms' gradients,
 * and the written file in NeoX order again. The anchor decays the weights
 * towards where they started. */
#include <stdint.h>

#include "adamw.h"
#include "gates.h"
#include "gguf.h"
#include "train.h"
#include "model.h"
#include "train_joint.h"
#include "model_fixture.h"
#include "test_util.h"

enum { D = 16, HID = 40, NL = 3, NH = 4, NKV = 2, V = 50, B = 2, T = 8 };

static uint64_t rng = 2024;
static double uni(void) {
    rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
    return (double)((rng * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}

/* central difference of the soft loss in *param (weights: refresh the transposed copies) */
static double finite_diff(doze_trainer *t, const int32_t *tokens, const uint8_t *vis, float *param,
                          float h, joint_weights *jw) {
    doze_error e;
    double lp, lm;
    float keep = *param;
    *param = keep + h;
    if (jw) joint_params_changed(jw);
    trainer_loss_grad(t, tokens, TRAIN_SOFT, 1.0f, vis, NULL, 0, &lp, &e);
    *param = keep - h;
    if (jw) joint_params_changed(jw);
    trainer_loss_grad(t, tokens, TRAIN_SOFT, 1.0f, vis, NULL, 0, &lm, &e);
    *param = keep;
    if (jw) joint_params_changed(jw);
    return (lp - lm) / (2.0 * h);
}

typedef struct {
    int checked, bad;
    double worst; /* relative, where the gradient is not tiny */
} tally;

static void compare(tally *s, const char *what, double analytic, double fd) {
    double scale = fmax(fabs(fd), fabs(analytic)), err_abs = fabs(fd - analytic);
    if (scale >= 1e-3) s->worst = fmax(s->worst, err_abs / scale);
    s->checked++;
    if (err_abs > 2e-2 * scale + 2e-5) {
        s->bad++;
        printf("  %s: backprop %.6g, finite difference %.6g\n", what, analytic, fd);
    }
}

/* ranged: each window its own budget (drawn by a few steps first) */
static void gradient_check(doze_model *m, doze_gates *g, const int32_t *tokens, int loss, int ranged) {
    doze_error e;
    doze_train_params p = doze_train_default_params();
    p.batch = B;
    p.context = T;
    p.budget = 0.5f;
    p.compute_weight = 5.0f;
    p.joint = 1;
    p.task_loss = loss;
    if (ranged) {
        p.budget_lo = 0.3f;
        p.budget_hi = 0.9f;
        p.dense_fraction = 0.3f;
        p.weight_lr = 1e-4f;
        p.lr = 1e-3f;
    }
    doze_trainer *t = NULL;
    CHECK(doze_trainer_new(m, g, &p, &t, &e) == DOZE_OK);
    if (!t) return;
    joint_weights *jw = trainer_joint(t);
    CHECK(jw != NULL);
    doze_train_stats st;
    for (int i = 0; i < 3 * ranged; i++) CHECK(doze_trainer_step(t, tokens, &st, &e) == DOZE_OK);
    CHECK(trainer_set_teacher(t, tokens, &e) == DOZE_OK);
    uint8_t vis[NL * B * T];
    int skipped = 0;
    for (int i = 0; i < NL * B * T; i++) skipped += !(vis[i] = (i % T) == 0 || uni() < 0.7);
    double loss_v;
    CHECK(trainer_loss_grad(t, tokens, TRAIN_SOFT, 1.0f, vis, NULL, 1, &loss_v, &e) == DOZE_OK);
    const int U = gates_rows(g);
    const size_t nR = (size_t)NL * U * D, np = joint_n_params(jw);
    float *gR = malloc(nR * 4), *gb = malloc((size_t)NL * U * 4), *gw = malloc(np * 4);
    memcpy(gR, trainer_grad_router(t), nR * 4);
    memcpy(gb, trainer_grad_bias(t), (size_t)NL * U * 4);
    memcpy(gw, joint_grads(jw), np * 4);
    tally routers = {0, 0, 0}, weights = {0, 0, 0};
    char what[96];
    for (int k = 0; k < 24; k++) { /* router rows and biases, of every unit kind */
        int is_bias = k % 3 == 0;
        size_t idx = is_bias ? (size_t)(uni() * NL * U) : (size_t)(uni() * nR);
        float *param = is_bias ? &g->bias[idx] : &g->router[idx];
        snprintf(what, sizeof what, "%s[%zu]", is_bias ? "bias" : "router", idx);
        compare(&routers, what, is_bias ? gb[idx] : gR[idx], finite_diff(t, tokens, vis, param, 1e-2f, NULL));
    }
    float *w = joint_params(jw);
    int zero_only = 0;
    for (int k = 0; k < joint_n_tensors(jw); k++) { /* 4 elements of every weight tensor */
        size_t off, n;
        const char *name;
        joint_tensor_span(jw, k, &off, &n, &name);
        for (int r = 0; r < 4; r++) {
            size_t i = off + (size_t)(uni() * n);
            if (k == 0) /* the embedding: rows of tokens in the batch */
                i = off + (size_t)tokens[(int)(uni() * B * T)] * D + (size_t)(uni() * D);
            snprintf(what, sizeof what, "%s[%zu]", name, i - off);
            compare(&weights, what, gw[i], finite_diff(t, tokens, vis, &w[i], 1e-2f, jw));
            zero_only += gw[i] == 0.0f;
        }
    }
    printf("joint gradient check (%s%s, %d skipped layer positions): routers %d checked, worst relative "
           "error %.3g; weights %d in %d tensors, worst %.3g (f32, h = 1e-2)\n",
           loss == DOZE_LOSS_CE ? "cross-entropy" : "KL", ranged ? ", budgets per window" : "", skipped, routers.checked, routers.worst,
           weights.checked, joint_n_tensors(jw), weights.worst);
    CHECK(skipped > 0);
    CHECK(routers.checked >= 24 && weights.checked >= 4 * (2 + 9 * NL));
    CHECK(routers.bad == 0 && weights.bad == 0);
    CHECK(routers.worst < 2e-2 && weights.worst < 2e-2); /* f32 noise at |grad| ~ 1e-3 */
    CHECK(zero_only < weights.checked / 4); /* the check saw real gradients */
    free(gR), free(gb), free(gw);
    doze_trainer_free(t);
}


/* a tensor of a GGUF file as f32 (the fixture and joint_write store f32) */
static const float *file_tensor(const gguf_header *h, const uint8_t *file, const char *name, size_t *n) {
    for (uint64_t i = 0; i < h->n_tensors; i++)
        if (strcmp(h->tensors[i].name.data, name) == 0 && h->tensors[i].type == DOZE_TYPE_F32) {
            *n = (size_t)(h->tensors[i].ne[0] * h->tensors[i].ne[1]);
            return (const float *)(file + h->data_offset + h->tensors[i].offset);
        }
    return NULL;
}

static void lora_check(doze_model *m, doze_gates *g, const int32_t *tokens, const mem_buf *file) {
    doze_error e;
    doze_train_params p = doze_train_default_params();
    p.batch = B;
    p.context = T;
    p.budget = 0.5f;
    p.compute_weight = 5.0f;
    p.joint = 1;
    p.lora_rank = 3;
    p.weight_lr = 2e-2f; /* a few steps move B off zero, so that A's gradient is not zero */
    p.lr = 1e-3f;
    doze_trainer *t = NULL;
    /* a rank no projection can hold, or adapters without joint training: refused */
    p.lora_rank = D + 1;
    CHECK(doze_trainer_new(m, g, &p, &t, &e) == DOZE_ERR_INVALID_ARGUMENT && !t);
    printf("rank %d: %s\n", D + 1, e.message);
    p.lora_rank = 3;
    p.joint = 0;
    CHECK(doze_trainer_new(m, g, &p, &t, &e) == DOZE_ERR_INVALID_ARGUMENT && !t);
    p.joint = 1;
    CHECK(doze_trainer_new(m, g, &p, &t, &e) == DOZE_OK);
    if (!t) return;
    joint_weights *jw = trainer_joint(t);
    CHECK(joint_lora_rank(jw) == 3);
    const size_t nl = joint_lora_n_params(jw);
    /* adapters on 7 projections per layer: A (3, cols) and B (rows, 3) */
    const int Qd = NH * (D / NH), KVD = NKV * (D / NH);
    CHECK(nl == (size_t)NL * 3 * ((D + Qd) + 2 * (D + KVD) + (Qd + D) + 2 * (D + HID) + (HID + D)));
    doze_train_stats st;
    for (int i = 0; i < 4; i++) CHECK(doze_trainer_step(t, tokens, &st, &e) == DOZE_OK);
    CHECK(trainer_set_teacher(t, tokens, &e) == DOZE_OK);
    uint8_t vis[NL * B * T];
    for (int i = 0; i < NL * B * T; i++) vis[i] = (i % T) == 0 || uni() < 0.7;
    double loss_v;
    CHECK(trainer_loss_grad(t, tokens, TRAIN_SOFT, 1.0f, vis, NULL, 1, &loss_v, &e) == DOZE_OK);
    float *gl = malloc(nl * 4);
    memcpy(gl, joint_lora_grads(jw), nl * 4);
    float *lp = joint_lora_params(jw);
    tally s = {0, 0, 0};
    char what[64];
    int zero_only = 0;
    for (int k = 0; k < 60; k++) {
        size_t i = (size_t)(uni() * nl);
        double keep = lp[i], lplus, lminus;
        const float h = 1e-2f;
        lp[i] = (float)(keep + h);
        joint_lora_changed(jw);
        trainer_loss_grad(t, tokens, TRAIN_SOFT, 1.0f, vis, NULL, 0, &lplus, &e);
        lp[i] = (float)(keep - h);
        joint_lora_changed(jw);
        trainer_loss_grad(t, tokens, TRAIN_SOFT, 1.0f, vis, NULL, 0, &lminus, &e);
        lp[i] = (float)keep;
        joint_lora_changed(jw);
        snprintf(what, sizeof what, "adapter[%zu]", i);
        compare(&s, what, gl[i], (lplus - lminus) / (2.0 * h));
        zero_only += gl[i] == 0.0f;
    }
    printf("adapter gradient check (rank 3, KL): %d of %zu adapter values checked, worst relative error "
           "%.3g (f32, h = 1e-2)\n", s.checked, nl, s.worst);
    CHECK(s.bad == 0 && s.worst < 2e-2);
    CHECK(zero_only < s.checked / 4);
    free(gl);

    /* the model written is the base with W0 + B A in every projection; the
     * embedding, norms and classifier are the base's own */
    for (int i = 0; i < 20; i++) CHECK(doze_trainer_step(t, tokens, &st, &e) == DOZE_OK);
    mem_buf out = {NULL, 0, 0};
    CHECK(trainer_write_model(t, file->data, file->len, mem_write, &out, &e) == DOZE_OK);
    gguf_header hb, ho;
    CHECK(gguf_parse_header(file->data, file->len, &hb, &e) == DOZE_OK);
    CHECK(gguf_parse_header(out.data, out.len, &ho, &e) == DOZE_OK);
    double worst = 0, moved = 0;
    int adapted = 0, frozen = 0;
    for (int k = 0; k < joint_n_tensors(jw); k++) {
        size_t off, n, nb = 0, no = 0;
        const char *name;
        joint_tensor_span(jw, k, &off, &n, &name);
        const float *w0 = file_tensor(&hb, file->data, name, &nb), *w = file_tensor(&ho, out.data, name, &no);
        CHECK(w0 && w && nb == n && no == n);
        if (!w0 || !w || nb != n || no != n) continue;
        const float *A, *Bm;
        if (!joint_lora_span(jw, k, &A, &Bm)) {
            CHECK(memcmp(w0, w, n * 4) == 0);
            frozen++;
            continue;
        }
        adapted++;
        size_t cols = (size_t)ho.tensors[0].ne[0];
        for (uint64_t q = 0; q < ho.n_tensors; q++)
            if (strcmp(ho.tensors[q].name.data, name) == 0) cols = (size_t)ho.tensors[q].ne[0];
        const size_t rows = n / cols;
        for (size_t r = 0; r < rows; r++)
            for (size_t c = 0; c < cols; c++) {
                double ba = 0;
                for (int q = 0; q < 3; q++) ba += (double)Bm[r * 3 + q] * A[(size_t)q * cols + c];
                worst = fmax(worst, fabs(w[r * cols + c] - (w0[r * cols + c] + ba)));
                moved = fmax(moved, fabs(ba));
            }
    }
    printf("written model with rank-3 adapters: %d projections = W0 + B A within %.3g (|B A| up to %.3g), "
           "%d other tensors as they were\n", adapted, worst, moved, frozen);
    CHECK(adapted == 7 * NL && frozen == 2 + 2 * NL);
    CHECK(worst < 1e-6 && moved > 1e-3);
    gguf_header_free(&hb);
    gguf_header_free(&ho);
    free(out.data);
    doze_trainer_free(t);
}

/* the joint runs of these checks: one batch of the fixture, budget 0.6 */
static doze_train_params joint_params_for_test(void) {
    doze_train_params p = doze_train_default_params();
    p.batch = B;
    p.context = T;
    p.budget = 0.6f;
    p.joint = 1;
    p.weight_lr = 3e-3f;
    return p;
}

/* noise_end = 0: the last step's decisions are the inference rule's (no
 * noise); at the default (1) the noise still flips some of them */
static void noise_check(doze_model *m, doze_gates *g, const int32_t *tokens) {
    int differ[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        doze_error e;
        doze_train_params p = joint_params_for_test();
        p.total_steps = 2;
        p.noise_end = k == 0 ? 0.0f : 1.0f;
        p.lr = 1e-12f; /* the step's updates leave the decisions as they were */
        p.weight_lr = 1e-12f;
        doze_trainer *t = NULL;
        CHECK(doze_trainer_new(m, g, &p, &t, &e) == DOZE_OK);
        if (!t) return;
        doze_train_stats st;
        CHECK(doze_trainer_step(t, tokens, &st, &e) == DOZE_OK);
        CHECK(doze_trainer_step(t, tokens, &st, &e) == DOZE_OK);
        uint8_t l1[B * T * NL], h1[B * T * NL * NH], l2[B * T * NL], h2[B * T * NL * NH];
        trainer_masks(t, l1, h1, NULL);
        double loss;
        CHECK(trainer_loss_grad(t, tokens, TRAIN_DECIDE, 1.0f, NULL, NULL, 0, &loss, &e) == DOZE_OK);
        trainer_masks(t, l2, h2, NULL);
        for (int i = 0; i < B * T * NL; i++) differ[k] += l1[i] != l2[i];
        for (int i = 0; i < B * T * NL * NH; i++) differ[k] += h1[i] != h2[i];
        doze_trainer_free(t);
    }
    printf("last step's decisions vs the inference rule's: %d differ with noise_end 0, %d with the noise kept\n",
           differ[0], differ[1]);
    CHECK(differ[0] == 0 && differ[1] > 0);
    doze_error e;
    doze_train_params p = doze_train_default_params();
    p.noise_end = 1.5f;
    doze_trainer *t = NULL;
    CHECK(doze_trainer_new(m, g, &p, &t, &e) == DOZE_ERR_INVALID_ARGUMENT && !t);
}

/* p with joint and lora_rank set is refused as INVALID_ARGUMENT, no trainer made */
static int refused_as_joint(doze_model *m, doze_gates *g, doze_train_params p, int joint, int rank) {
    doze_error e;
    p.joint = joint;
    p.lora_rank = rank;
    doze_trainer *t = NULL;
    return doze_trainer_new(m, g, &p, &t, &e) == DOZE_ERR_INVALID_ARGUMENT && !t;
}

/* the anchor: the decay pulls each weight towards where the run started,
 * by exactly lr * anchor * (w - w0) on a step with no gradient; over real
 * steps the weights move less far than without it, but they still move */
static void anchor_check(doze_model *m, doze_gates *g, const int32_t *tokens) {
    float w[3] = {1.0f, -2.0f, 0.5f}, w0[3] = {0.0f, -1.0f, 0.5f}, zero[3] = {0, 0, 0}, mm[3] = {0, 0, 0},
          vv[3] = {0, 0, 0};
    const adamw_step as = adamw_at(0.1f, 0.9f, 0.999f, 1e-8f, 1);
    adamw_update_toward(&as, w, w0, zero, mm, vv, 3, 1.0f, 2.0f, NULL);
    /* w - 0.1 * 2 * (w - w0): 1 - 0.2, -2 + 0.2, 0.5 */
    CHECK(fabsf(w[0] - 0.8f) < 1e-7f && fabsf(w[1] + 1.8f) < 1e-7f && w[2] == 0.5f);

    double dist[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        doze_error e;
        doze_train_params p = joint_params_for_test();
        p.weight_anchor = k == 0 ? 0.0f : 30.0f;
        doze_trainer *t = NULL;
        CHECK(doze_trainer_new(m, g, &p, &t, &e) == DOZE_OK);
        if (!t) return;
        joint_weights *jw = trainer_joint(t);
        const size_t n = joint_n_params(jw);
        float *start = malloc(n * sizeof(float));
        CHECK(start != NULL);
        if (!start) return;
        memcpy(start, joint_params(jw), n * sizeof(float));
        doze_train_stats st;
        for (int i = 0; i < 20; i++) CHECK(doze_trainer_step(t, tokens, &st, &e) == DOZE_OK);
        for (size_t i = 0; i < n; i++) {
            const double d = (double)joint_params(jw)[i] - start[i];
            dist[k] += d * d;
        }
        dist[k] = sqrt(dist[k]);
        free(start);
        doze_trainer_free(t);
    }
    printf("20 joint steps: the weights moved %.4f freely, %.4f anchored (rate 30)\n", dist[0], dist[1]);
    CHECK(dist[1] > 0.0 && dist[1] < 0.7 * dist[0]);
    /* refused where there is nothing to anchor: gates only, adapters, a negative rate */
    const int joint[3] = {0, 1, 1}, rank[3] = {0, 2, 0};
    const float rate[3] = {1.0f, 1.0f, -1.0f};
    for (int k = 0; k < 3; k++) {
        doze_train_params p = doze_train_default_params();
        p.weight_anchor = rate[k];
        CHECK(refused_as_joint(m, g, p, joint[k], rank[k]));
    }
}

/* the weights' moving average: after each step ema = d ema + (1 - d) w with
 * d = min(decay, (1 + step) / (10 + step)), starting from the weights the
 * run began with; the file written holds the average, not the weights */
static void ema_check(doze_model *m, doze_gates *g, const int32_t *tokens, const mem_buf *f) {
    CHECK(joint_ema_decay(0.999f, 1) == 2.0f / 11.0f && joint_ema_decay(0.5f, 1000) == 0.5f);
    doze_error e;
    doze_train_params p = joint_params_for_test();
    p.weight_ema = 0.9f;
    doze_trainer *t = NULL;
    CHECK(doze_trainer_new(m, g, &p, &t, &e) == DOZE_OK);
    if (!t) return;
    joint_weights *jw = trainer_joint(t);
    const size_t n = joint_n_params(jw);
    double *want = malloc(n * sizeof(double));
    CHECK(want != NULL && joint_ema(jw) != NULL);
    if (!want || !joint_ema(jw)) return;
    for (size_t i = 0; i < n; i++) want[i] = joint_params(jw)[i];
    doze_train_stats st;
    double worst = 0, apart = 0;
    for (int step = 1; step <= 6; step++) {
        CHECK(doze_trainer_step(t, tokens, &st, &e) == DOZE_OK);
        const double d = joint_ema_decay(0.9f, step);
        for (size_t i = 0; i < n; i++) want[i] = d * want[i] + (1.0 - d) * joint_params(jw)[i];
    }
    for (size_t i = 0; i < n; i++) {
        const double err = fabs(joint_ema(jw)[i] - want[i]), gap = fabs(joint_ema(jw)[i] - joint_params(jw)[i]);
        if (err > worst) worst = err;
        if (gap > apart) apart = gap;
    }
    printf("6 joint steps with a moving average (0.9): %.2e from the recurrence in double, %.4f from the weights\n",
           worst, apart);
    CHECK(worst < 1e-5 && apart > 1e-4);
    /* the file written holds the average: its token embedding (the first trained tensor) */
    mem_buf out = {0};
    CHECK(trainer_write_model(t, f->data, f->len, mem_write, &out, &e) == DOZE_OK);
    doze_model *m2 = NULL;
    CHECK(doze_model_load_memory(out.data, out.len, NULL, &m2, &e) == DOZE_OK);
    if (m2) {
        const int dim = m2->info.dim;
        float *row = malloc((size_t)dim * sizeof(float));
        CHECK(row != NULL);
        if (row) {
            model_embed(m2, 3, row);
            double diff = 0;
            for (int i = 0; i < dim; i++) diff = fmax(diff, fabs(row[i] - joint_ema(jw)[(size_t)3 * dim + i]));
            CHECK(diff == 0.0);
            free(row);
        }
        doze_model_free(m2);
    }
    free(out.data);
    free(want);
    doze_trainer_free(t);
    /* refused where there is nothing to average or no decay: gates only, adapters, 1, a negative decay */
    const int joint[4] = {0, 1, 1, 1}, rank[4] = {0, 2, 0, 0};
    const float decay[4] = {0.9f, 0.9f, 1.0f, -0.5f};
    for (int k = 0; k < 4; k++) {
        doze_train_params q = doze_train_default_params();
        q.weight_ema = decay[k];
        CHECK(refused_as_joint(m, g, q, joint[k], rank[k]));
    }
}

static doze_gates *gates_copy_for_test(const doze_gates *src) {
    doze_gates *g = gates_alloc(src->n_layers, src->n_heads, src->n_blocks, src->dim);
    size_t rows = (size_t)src->n_layers * (size_t)gates_rows(src);
    memcpy(g->router, src->router, rows * (size_t)src->dim * sizeof(float));
    memcpy(g->bias, src->bias, rows * sizeof(float));
    memcpy(g->log_lambda, src->log_lambda, sizeof g->log_lambda);
    g->params = src->params;
    g->ffn_block = src->ffn_block;
    return g;
}

/* training forward = inference: the model t writes into file f (*out),
 * under the trainer's hard decisions (no noise), token by token with a KV
 * cache, gives the training forward's logits; m is the model before
 * training. Returns the written model loaded (NULL on failure). */
static doze_model *written_model_check(doze_trainer *t, doze_model *m, const mem_buf *f, const int32_t *tokens, int NB,
                                       mem_buf *out) {
    doze_error e;
    double loss_v;
    CHECK(trainer_loss_grad(t, tokens, TRAIN_DECIDE, 1.0f, NULL, NULL, 0, &loss_v, &e) == DOZE_OK);
    uint8_t lon[B * T * NL], hon[B * T * NL * NH], fon[B * T * NL * 3];
    CHECK(NB <= 3);
    trainer_masks(t, lon, hon, fon);
    int off_l = 0, off_h = 0, off_b = 0;
    for (int i = 0; i < B * T * NL; i++) off_l += !lon[i];
    for (int i = 0; i < B * T * NL * NH; i++) off_h += !hon[i];
    for (int i = 0; i < B * T * NL * NB; i++) off_b += lon[i / NB] && !fon[i];
    CHECK(trainer_write_model(t, f->data, f->len, mem_write, out, &e) == DOZE_OK);
    doze_model *m2 = NULL;
    CHECK(doze_model_load_memory(out->data, out->len, NULL, &m2, &e) == DOZE_OK);
    if (!m2) return NULL;
    const float *tl = trainer_logits(t);
    double worst = 0, scale = 1e-9, moved = 0;
    doze_session *s0 = doze_session_new(m, &e);
    for (int b = 0; b < B; b++) {
        doze_session *s = doze_session_new(m2, &e);
        doze_session_reset(s0);
        for (int i = 0; i < T; i++) {
            size_t n = (size_t)b * T + i;
            const doze_mask mk = {lon + n * NL, hon + n * NL * NH, fon + n * NL * NB, NULL};
            CHECK(doze_session_step_masked(s, tokens[n], &mk, &e) == DOZE_OK);
            CHECK(doze_session_step_masked(s0, tokens[n], &mk, &e) == DOZE_OK);
            logit_gaps(doze_session_logits(s), doze_session_logits(s0), tl + n * V, V, &worst, &moved, &scale);
        }
        doze_session_free(s);
    }
    doze_session_free(s0);
    printf("joint training forward vs inference of the written model under its decisions (%d layers, "
           "%d heads, %d FFN blocks of running layers off): %.3g of the logits' range (the original "
           "model: %.3g)\n",
           off_l, off_h, off_b, worst / scale, moved / scale);
    CHECK(off_l > 0 && off_h > 0 && off_b > 0);
    CHECK(worst / scale < 1e-5);
    CHECK(moved / scale > 1e-3); /* the written weights are the trained ones */
    return m2;
}

/* random routers and biases around g's: some layers, heads and FFN blocks fall below the threshold */
static void vary_gates(doze_gates *g) {
    const int U = gates_rows(g);
    for (int i = 0; i < NL * U * D; i++) g->router[i] += (float)(uni() - 0.5);
    for (int i = 0; i < NL * U; i++) g->bias[i] += (float)(uni() * 6 - 3);
}

/* a joint trainer at b = 0.6 with a weight rate that moves a small model in a few steps */
static doze_trainer *joint_trainer(doze_model *m, doze_gates *g) {
    doze_train_params p = joint_params_for_test();
    doze_trainer *t = NULL;
    doze_error e;
    CHECK(doze_trainer_new(m, g, &p, &t, &e) == DOZE_OK);
    return t;
}

/* qwen2 (Q/K/V biases, NeoX RoPE) and qwen3 (q/k norms, NeoX RoPE, its own
 * head size): the gradients of every tensor, biases and q/k norms included,
 * and the written model (NeoX order restored in the file) = the training
 * forward */
static void arch_check(const char *arch, int head_dim, const int32_t *tokens, const int32_t *calib) {
    printf("-- %s\n", arch);
    const doze_init_params ip = {D, HID, NL, NH, NKV, V, 512, 11, DOZE_TYPE_F32, arch, head_dim, 0, 0.0f, 0, 0};
    mem_buf f = fixture_from_params(&ip);
    doze_model *m = NULL;
    doze_gates *g = NULL;
    doze_error e;
    CHECK(f.data && doze_model_load_memory(f.data, f.len, NULL, &m, &e) == DOZE_OK);
    CHECK(m && doze_gates_calibrate(m, calib, 300, NULL, &g, &e) == DOZE_OK);
    if (!g) {
        doze_model_free(m);
        free(f.data);
        return;
    }
    vary_gates(g);
    gradient_check(m, g, tokens, DOZE_LOSS_KL, 0);
    doze_trainer *t = joint_trainer(m, g);
    doze_train_stats st;
    for (int i = 0; t && i < 30; i++) CHECK(doze_trainer_step(t, tokens, &st, &e) == DOZE_OK);
    mem_buf out = {NULL, 0, 0};
    doze_model *m2 = t ? written_model_check(t, m, &f, tokens, doze_model_ffn_blocks(m), &out) : NULL;
    doze_model_free(m2);
    free(out.data);
    doze_trainer_free(t);
    doze_gates_free(g);
    doze_model_free(m);
    free(f.data);
}

int main(void) {
    mem_buf f = fixture_gguf(D, HID, NL, NH, NKV, V, 512, 11, DOZE_TYPE_F32);
    doze_model *m = NULL;
    doze_error e;
    CHECK(doze_model_load_memory(f.data, f.len, NULL, &m, &e) == DOZE_OK);
    if (!m) return test_finish("test_train_joint");
    int32_t calib[300];
    for (int i = 0; i < 300; i++) calib[i] = i == 0 ? 1 : 3 + (int)(uni() * (V - 3));
    doze_gates *g = NULL;
    CHECK(doze_gates_calibrate(m, calib, 300, NULL, &g, &e) == DOZE_OK);
    if (!g) return test_finish("test_train_joint");
    const int U = gates_rows(g), NB = doze_model_ffn_blocks(m);
    CHECK(NB == 3 && U == 1 + NH + NB);
    vary_gates(g);
    int32_t tokens[B * T];
    for (int i = 0; i < B * T; i++) tokens[i] = i % T == 0 ? 1 : 3 + (int)(uni() * (V - 3));

    doze_gates *g0 = gates_copy_for_test(g);
    gradient_check(m, g, tokens, DOZE_LOSS_KL, 0);
    gradient_check(m, g, tokens, DOZE_LOSS_CE, 0);
    gradient_check(m, g0, tokens, DOZE_LOSS_KL, 1); /* its steps move g0's routers */
    doze_gates_free(g0);
    doze_gates *g1 = gates_copy_for_test(g);
    lora_check(m, g1, tokens, &f);
    noise_check(m, g1, tokens);
    anchor_check(m, g1, tokens);
    ema_check(m, g1, tokens, &f);
    doze_gates_free(g1);
    arch_check("qwen2", 0, tokens, calib);
    arch_check("qwen3", 8, tokens, calib);

    /* steps on one batch lower the loss; the routers and the weights move */
    doze_trainer *t = joint_trainer(m, g);
    if (!t) return test_finish("test_train_joint");
    float w0 = joint_params(trainer_joint(t))[D * 3 + 5];
    doze_train_stats st;
    float first = 0, last = 0;
    for (int i = 0; i < 30; i++) {
        CHECK(doze_trainer_step(t, tokens, &st, &e) == DOZE_OK);
        if (i == 0) first = st.kl;
        last = st.kl;
    }
    printf("30 joint steps on one batch: KL %.4f -> %.4f, compute %.3f (expected %.3f)\n", (double)first,
           (double)last, (double)st.achieved_compute, (double)st.expected_compute);
    CHECK(isfinite(last) && last < 0.7f * first);
    CHECK(joint_params(trainer_joint(t))[D * 3 + 5] != w0);

    mem_buf out = {NULL, 0, 0};
    doze_model *m2 = written_model_check(t, m, &f, tokens, NB, &out);
    if (!m2) return test_finish("test_train_joint");

    /* the written model keeps the file's other keys and refuses another file */
    mem_buf other = fixture_gguf(D, HID + 8, NL, NH, NKV, V, 512, 11, DOZE_TYPE_F32);
    mem_buf junk = {NULL, 0, 0};
    CHECK(trainer_write_model(t, other.data, other.len, mem_write, &junk, &e) == DOZE_ERR_BAD_SHAPE);
    printf("another file: %s\n", e.message);
    free(junk.data);
    free(other.data);

    /* its gates, retuned on it, hold the budget */
    CHECK(doze_gates_retune(m2, g, calib, 300, &e) == DOZE_OK);
    g->fingerprint = gates_model_fingerprint(m2);
    doze_session *s = doze_session_new(m2, &e);
    CHECK(doze_session_set_gates(s, g, &e) == DOZE_OK);
    const float budgets[2] = {0.8f, 0.6f};
    for (int bi = 0; bi < 2; bi++) {
        doze_session_reset(s);
        CHECK(doze_session_set_budget(s, budgets[bi], &e) == DOZE_OK);
        double sum = 0;
        for (int i = 0; i < 300; i++) {
            doze_session_step(s, calib[i], &e);
            sum += doze_session_compute(s);
        }
        printf("budget %.2f: achieved %.4f over 300 tokens\n", (double)budgets[bi], sum / 300);
        CHECK(fabs(sum / 300 - budgets[bi]) <= 0.03);
    }
    doze_session_free(s);
    doze_model_free(m2);
    free(out.data);
    doze_trainer_free(t);
    doze_gates_free(g);
    doze_model_free(m);
    free(f.data);
    return test_finish("test_train_joint");
}
