/* Gate fine-tuning on a mixture of experts (the gate trainer's frozen MoE
 * FFN, one FFN block gated as a whole, its experts chosen as inference
 * chooses them under the budget):
 * - the router gradients (layer, head and FFN-block rows and biases) from
 *   backprop match central finite differences of the relaxed loss (soft
 *   gates, fixed visibility); nudges that change a token's chosen experts
 *   are skipped (the choice is a constant of the gradient);
 * - the training forward under its hard decisions (layers, heads, FFNs and
 *   each token's experts, fewer than k where the budget dozes them) gives
 *   the runtime's logits under the same masks, token by token and as a
 *   whole sequence; and those decisions are the runtime's own under the
 *   gates at the budget (a prefill decided at one price);
 * - a short fine-tune (doze_finetune, b = 0.7) lowers the loss, keeps the
 *   input gates' expert constants, and after the retune the runtime's
 *   achieved compute tracks b;
 * - adapters (joint --lora) on a mixture are refused; a qwen3moe (NeoX
 *   RoPE, q/k norms) trains a step, gates alone and jointly;
 * - 1 and 2 threads train the same gates, bit for bit. */
#include <stdint.h>

#include "gates.h"
#include "train.h"
#include "model_fixture.h"
#include "session_fixture.h"
#include "threads_fixture.h"
#include "test_util.h"

static uint64_t rng = 7;
static double uni(void) {
    rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
    return (double)((rng * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}

enum { D = 16, HID = 16, NL = 3, NH = 4, NKV = 2, V = 300, E = 4, K = 2, B = 2, T = 8 };

/* calibrated gates on the model's own samples */
static doze_gates *calibrated(doze_model *m, int n, doze_error *e) {
    int32_t *calib = malloc((size_t)n * sizeof *calib);
    doze_session *s = doze_session_new(m, e);
    doze_sampler_params sp = doze_sampler_default_params();
    doze_sampler *smp = doze_sampler_new(&sp, V, e);
    calib[0] = 1;
    for (int i = 0; i + 1 < n; i++) {
        doze_session_step(s, calib[i], e);
        calib[i + 1] = doze_sampler_sample(smp, doze_session_logits(s));
    }
    doze_sampler_free(smp);
    doze_session_free(s);
    doze_gates *g = NULL;
    CHECK(doze_gates_calibrate(m, calib, n, NULL, &g, e) == DOZE_OK);
    free(calib);
    return g;
}

static void test_grad_and_forward(void) {
    doze_error e;
    mem_buf f = fixture_moe_gguf("llama", D, HID, NL, NH, NKV, V, 64, 21, DOZE_TYPE_F32, E, K);
    doze_model *m = NULL;
    CHECK(f.data && doze_model_load_memory(f.data, f.len, NULL, &m, &e) == DOZE_OK);
    if (!m) {
        free(f.data);
        return;
    }
    doze_gates *g = calibrated(m, 120, &e);
    if (!g) {
        doze_model_free(m);
        free(f.data);
        return;
    }
    const int NB = g->n_blocks, U = gates_rows(g);
    CHECK(NB == 1 && doze_model_ffn_blocks(m) == 1 && g->n_experts == E && g->expert_bias);
    /* varied scores: some layers, heads and FFNs fall below the threshold;
     * the experts' constants spread so that some tokens run fewer than k */
    for (int i = 0; i < NL * U * D; i++) g->router[i] += (float)(uni() - 0.5);
    for (int i = 0; i < NL * U; i++) g->bias[i] += (float)(uni() * 6 - 3);
    for (int i = 0; i < NL * E; i++) g->expert_bias[i] += (float)(uni() * 4 - 2);

    doze_train_params p = doze_train_default_params();
    p.batch = B;
    p.context = T;
    p.budget = 0.5f;
    p.compute_weight = 5.0f;
    doze_trainer *t = NULL;
    CHECK(doze_trainer_new(m, g, &p, &t, &e) == DOZE_OK);
    if (!t) {
        fprintf(stderr, "trainer: %s\n", e.message);
        doze_gates_free(g);
        doze_model_free(m);
        free(f.data);
        return;
    }
    int32_t tokens[B * T];
    for (int i = 0; i < B * T; i++) tokens[i] = i % T == 0 ? 1 : 3 + (int)(uni() * (V - 3));
    CHECK(trainer_set_teacher(t, tokens, &e) == DOZE_OK);

    /* ---- gradient check under several visibility masks ---- */
    const size_t ne = (size_t)B * T * NL * E;
    uint8_t *sel0 = malloc(ne), *sel1 = malloc(ne);
    uint8_t vis[NL * B * T];
    double worst = 0, worst_big = 0, worst_small = 0;
    int bad = 0, checked = 0, checked_blocks = 0, flipped = 0, skipped_layers = 0, fewer = 0;
    for (int trial = 0; trial < 4; trial++) {
        const float tau = trial == 3 ? 0.5f : 1.0f;
        double loss;
        if (trial == 0) {
            CHECK(trainer_loss_grad(t, tokens, TRAIN_SOFT, tau, NULL, vis, 1, &loss, &e) == DOZE_OK);
        } else {
            for (int i = 0; i < NL * B * T; i++) vis[i] = (i % T) == 0 || uni() < 0.7;
            CHECK(trainer_loss_grad(t, tokens, TRAIN_SOFT, tau, vis, NULL, 1, &loss, &e) == DOZE_OK);
        }
        trainer_expert_masks(t, 1, sel0);
        for (size_t i = 0; i < ne; i += E) {
            int c = 0;
            for (int x = 0; x < E; x++) c += sel0[i + x];
            fewer += c < K;
        }
        for (int i = 0; i < NL * B * T; i++) skipped_layers += !vis[i];
        size_t nR = (size_t)NL * U * D;
        float *gR = malloc(nR * 4), *gb = malloc((size_t)NL * U * 4);
        memcpy(gR, trainer_grad_router(t), nR * 4);
        memcpy(gb, trainer_grad_bias(t), (size_t)NL * U * 4);
        for (int k = 0; k < 36; k++) {
            int is_bias = k % 3 == 0;
            size_t idx = is_bias ? (size_t)(uni() * NL * U) : (size_t)(uni() * nR);
            if (k % 6 == 2) { /* the FFN block's router row */
                int l = (int)(uni() * NL), i = (int)(uni() * D);
                idx = ((size_t)l * U + 1 + NH) * D + i;
                checked_blocks++;
            } else if (k % 6 == 3) { /* the FFN block's bias */
                idx = (size_t)(uni() * NL) * U + 1 + NH;
                checked_blocks++;
            }
            float *param = is_bias ? &g->bias[idx] : &g->router[idx];
            double analytic = is_bias ? gb[idx] : gR[idx];
            const float h = 1e-2f;
            float keep = *param;
            double lp, lm;
            *param = keep + h;
            trainer_loss_grad(t, tokens, TRAIN_SOFT, tau, vis, NULL, 0, &lp, &e);
            trainer_expert_masks(t, 1, sel1);
            int same = memcmp(sel0, sel1, ne) == 0;
            *param = keep - h;
            trainer_loss_grad(t, tokens, TRAIN_SOFT, tau, vis, NULL, 0, &lm, &e);
            trainer_expert_masks(t, 1, sel1);
            same = same && memcmp(sel0, sel1, ne) == 0;
            *param = keep;
            if (!same) { /* a nudge that changes the experts: not a derivative */
                flipped++;
                continue;
            }
            double fd = (lp - lm) / (2 * h);
            double scale = fmax(fabs(fd), fabs(analytic));
            double err_abs = fabs(fd - analytic);
            if (scale >= 1e-3) worst = fmax(worst, err_abs / scale);
            if (scale >= 1e-2) worst_big = fmax(worst_big, err_abs / scale);
            else worst_small = fmax(worst_small, err_abs);
            checked++;
            if (err_abs > 1e-2 * scale + 1e-5) {
                bad++;
                printf("  trial %d %s[%zu]: backprop %.6g, finite difference %.6g\n", trial,
                       is_bias ? "bias" : "router", idx, analytic, fd);
            }
        }
        free(gR), free(gb);
    }
    /* f32 forward: the finite difference carries ~5e-6 of noise, a few 1e-3
     * of a gradient of 1e-3 */
    printf("MoE gradient check: %d parameters (%d of the FFN block gate); worst relative error %.3g where "
           "|grad| >= 1e-3 (%.3g where |grad| >= 1e-2), worst absolute error %.2g below (f32, h = 1e-2); "
           "%d nudges skipped (they change the experts); %d skipped layer positions; %d token-layers with "
           "fewer than k experts\n",
           checked, checked_blocks, worst, worst_big, worst_small, flipped, skipped_layers, fewer);
    CHECK(checked >= 120);
    CHECK(checked_blocks >= 20);
    CHECK(skipped_layers > 0);
    CHECK(fewer > 0);
    CHECK(bad == 0);
    CHECK(worst < 1e-2 && worst_big < 2e-3);

    /* ---- training forward = inference under the same masks: the perturbed
     * gates, then after a few steps ---- */
    int off_l = 0, off_h = 0, off_f = 0, ffns = 0, few = 0;
    double worst_tok = 0, worst_seq = 0, scale = 1e-9;
    for (int round = 0; round < 2; round++) {
        doze_train_stats stats;
        for (int i = 0; round && i < 6; i++)
            CHECK(doze_trainer_step(t, tokens, &stats, &e) == DOZE_OK && isfinite(stats.loss));
        double loss;
        CHECK(trainer_loss_grad(t, tokens, TRAIN_DECIDE, 1.0f, NULL, NULL, 0, &loss, &e) == DOZE_OK);
        uint8_t lon[B * T * NL], hon[B * T * NL * NH], fon[B * T * NL];
        trainer_masks(t, lon, hon, fon);
        trainer_expert_masks(t, 0, sel0);
        for (int i = 0; i < B * T * NL; i++) {
            off_l += !lon[i];
            off_f += lon[i] && !fon[i];
            if (!(lon[i] && fon[i])) continue;
            int c = 0;
            for (int x = 0; x < E; x++) c += sel0[(size_t)i * E + x];
            ffns++;
            few += c < K;
            CHECK(c >= 1 && c <= K);
        }
        for (int i = 0; i < B * T * NL * NH; i++) off_h += !hon[i];
        const float *tl = trainer_logits(t);
        float seq_logits[T * V];
        for (int b = 0; b < B; b++) {
            doze_session *s = doze_session_new(m, &e);
            for (int i = 0; i < T; i++) {
                size_t n = (size_t)b * T + i;
                CHECK(doze_session_step_masked(s, tokens[n],
                                               &(doze_mask){lon + n * NL, hon + n * NL * NH, fon + n * NL,
                                                            sel0 + n * NL * E},
                                               &e) == DOZE_OK);
                CHECK(memcmp(doze_session_expert_mask(s), sel0 + n * NL * E, NL * E) == 0);
                const float *sl = doze_session_logits(s);
                for (int v = 0; v < V; v++) {
                    worst_tok = worst_diff(worst_tok, fabs(sl[v] - tl[n * V + v]));
                    scale = fmax(scale, fabs(tl[n * V + v]));
                }
            }
            doze_session_free(s);
            const size_t r = (size_t)b * T;
            CHECK(doze_sequence_forward(m, tokens + r, T,
                                        &(doze_mask){lon + r * NL, hon + r * NL * NH, fon + r * NL, sel0 + r * NL * E},
                                        seq_logits, &e) == DOZE_OK);
            for (int i = 0; i < T * V; i++) worst_seq = fmax(worst_seq, fabs(seq_logits[i] - tl[r * V + i]));
        }
    }
    {
        printf("MoE training forward vs inference under the trainer's decisions (%d layers, %d heads, %d FFNs "
               "of running layers off; %d of %d running FFNs with fewer than k experts; before and after 6 steps): token-by-token "
               "%.3g, whole-sequence %.3g of the logits' range\n",
               off_l, off_h, off_f, few, ffns, worst_tok / scale, worst_seq / scale);
        CHECK(off_l > 0 && off_h > 0 && off_f > 0 && few > 0 && few < ffns);
        CHECK(worst_tok / scale < 1e-5 && worst_seq / scale < 1e-5);
    }
    /* ---- the trainer's decisions are the runtime's own under the gates: a
     * fresh session prefilled with a window's first i + 1 tokens decides them
     * all at the budget's price (a batch is one decision of the price
     * feedback), so its last token's masks and logits are the trainer's at
     * that token ---- */
    {
        double loss;
        CHECK(trainer_loss_grad(t, tokens, TRAIN_DECIDE, 1.0f, NULL, NULL, 0, &loss, &e) == DOZE_OK);
        uint8_t lon[B * T * NL], hon[B * T * NL * NH], fon[B * T * NL];
        trainer_masks(t, lon, hon, fon);
        trainer_expert_masks(t, 0, sel0);
        const float *tl = trainer_logits(t);
        int differ = 0, gated = 0;
        double worst_g = 0, scale_g = 1e-9;
        for (int b = 0; b < B; b++)
            for (int i = 0; i < T; i++) {
                const size_t n = (size_t)b * T + i;
                doze_session *s = doze_session_new(m, &e);
                CHECK(doze_session_set_gates(s, g, &e) == DOZE_OK && doze_session_set_budget(s, p.budget, &e) == DOZE_OK);
                CHECK(doze_session_prefill(s, tokens + (size_t)b * T, i + 1, &e) == DOZE_OK);
                differ += memcmp(doze_session_layer_mask(s), lon + n * NL, NL) != 0 ||
                          memcmp(doze_session_head_mask(s), hon + n * NL * NH, NL * NH) != 0 ||
                          memcmp(doze_session_ffn_mask(s), fon + n * NL, NL) != 0 ||
                          memcmp(doze_session_expert_mask(s), sel0 + n * NL * E, NL * E) != 0;
                gated += i >= g->params.protect_tokens;
                const float *sl = doze_session_logits(s);
                for (int v = 0; v < V; v++) {
                    worst_g = worst_diff(worst_g, fabs(sl[v] - tl[n * V + v]));
                    scale_g = fmax(scale_g, fabs(tl[n * V + v]));
                }
                doze_session_free(s);
            }
        printf("MoE trainer's decisions vs the runtime's own under the gates at b = %.2f (%d gated tokens): %d "
               "tokens with other masks (layers, heads, FFNs or experts); logits %.3g of their range\n",
               (double)p.budget, gated, differ, worst_g / scale_g);
        CHECK(differ == 0 && worst_g / scale_g < 1e-5);
    }
    free(sel0), free(sel1);
    doze_trainer_free(t);

    /* ---- joint training of a mixture is test_train_moejoint's; adapters on
     * one are refused ---- */
    p.joint = 1;
    p.lora_rank = 2;
    t = NULL;
    doze_status st = doze_trainer_new(m, g, &p, &t, &e);
    printf("joint with adapters on a mixture: %s\n", e.message);
    CHECK(st == DOZE_ERR_UNSUPPORTED_TYPE && !t && strstr(e.message, "mixture") != NULL);
    doze_trainer_free(t);
    p.lora_rank = 0;

    doze_gates_free(g);
    doze_model_free(m);
    free(f.data);

    /* qwen3moe (NeoX RoPE, q/k norms): its gates train, alone and jointly
     * with its weights (test_train and test_train_joint check qwen2/qwen3's
     * gradients and forward; here the mixture's path runs) */
    mem_buf fq = fixture_moe_gguf("qwen3moe", D, HID, NL, NH, NKV, V, 64, 22, DOZE_TYPE_F32, E, K);
    CHECK(fq.data && doze_model_load_memory(fq.data, fq.len, NULL, &m, &e) == DOZE_OK);
    if (m) {
        g = calibrated(m, 60, &e);
        int32_t toks[B * T];
        for (int i = 0; i < B * T; i++) toks[i] = i % T == 0 ? 1 : 3 + (int)(uni() * (V - 3));
        doze_train_stats ts[2];
        for (int joint = 0; joint < 2; joint++) {
            t = NULL;
            p.joint = joint;
            CHECK(g && doze_trainer_new(m, g, &p, &t, &e) == DOZE_OK && t);
            CHECK(t && doze_trainer_step(t, toks, &ts[joint], &e) == DOZE_OK && isfinite(ts[joint].loss));
            doze_trainer_free(t);
        }
        printf("qwen3moe: a step of gate training (loss %.4f) and of joint training (loss %.4f)\n",
               (double)ts[0].loss, (double)ts[1].loss);
        doze_gates_free(g);
        doze_model_free(m);
    }
    free(fq.data);
}

static void test_finetune(void) {
    enum { FD = 32, FH = 32, FL = 3, FNH = 4 };
    doze_error e;
    mem_buf f = fixture_moe_gguf("llama", FD, FH, FL, FNH, 2, V, 256, 23, DOZE_TYPE_F32, E, K);
    doze_model *m = NULL;
    CHECK(f.data && doze_model_load_memory(f.data, f.len, NULL, &m, &e) == DOZE_OK);
    if (!m) {
        free(f.data);
        return;
    }
    size_t len = 0;
    char *text = sampled_text(m, V, 24, 64, &len, &e);
    doze_gates *g0 = calibrated(m, 200, &e);
    if (!g0) {
        free(text);
        doze_model_free(m);
        free(f.data);
        return;
    }
    CHECK(g0->n_experts == E && g0->expert_bias);
    doze_train_params p = doze_train_default_params();
    p.budget = 0.7f;
    p.batch = 4;
    p.context = 32;
    p.total_steps = 30;
    doze_finetune *ft = NULL;
    CHECK(doze_finetune_new(m, g0, &p, text, len, &ft, &e) == DOZE_OK);
    if (!ft) {
        fprintf(stderr, "finetune: %s\n", e.message);
        doze_gates_free(g0);
        free(text);
        doze_model_free(m);
        free(f.data);
        return;
    }
    double first = 0, last = 0, comp = 0;
    for (int i = 0; i < 30; i++) {
        doze_train_stats st;
        CHECK(doze_finetune_step(ft, &st, &e) == DOZE_OK && isfinite(st.loss));
        if (i < 5) first += st.loss / 5.0;
        if (i >= 25) last += st.loss / 5.0, comp += st.achieved_compute / 5.0;
    }
    CHECK(doze_finetune_finish(ft, &e) == DOZE_OK);
    doze_gates *gt = doze_finetune_take_gates(ft);
    doze_finetune_free(ft);
    CHECK(gt && strcmp(gt->kind, "trained") == 0);
    CHECK(gt && gt->n_experts == E && gt->expert_bias &&
          memcmp(gt->expert_bias, g0->expert_bias, (size_t)FL * E * sizeof(float)) == 0);
    /* the achieved compute after the retune, on held-out text */
    int32_t *ids = malloc(4096 * sizeof *ids);
    int n = 0;
    CHECK(doze_tokenize(m, text + len / 2, len - len / 2, DOZE_TOKENIZE_ADD_SPECIAL, ids, 4096, &n, &e) == DOZE_OK);
    if (n > 200) n = 200;
    double c0 = session_compute(m, g0, 0.7f, ids, n, &e);
    double c1 = gt ? session_compute(m, gt, 0.7f, ids, n, &e) : 0;
    printf("fine-tune of a mixture, 30 steps at b = 0.7: loss %.4f -> %.4f (mean of the first and last 5 "
           "steps), the last steps' achieved compute %.3f; after the retune the runtime spends %.3f at "
           "b = 0.7 (training-free gates %.3f)\n",
           first, last, comp, c1, c0);
    CHECK(last < first);
    CHECK(fabs(c1 - 0.7) < 0.03);
    free(ids);
    doze_gates_free(gt);
    doze_gates_free(g0);
    free(text);
    doze_model_free(m);
    free(f.data);
}

/* the same steps at 1 and 2 threads: the same routers, bit for bit */
static void test_threads(void) {
    mem_buf f = fixture_moe_gguf("llama", 128, 128, 2, 4, 2, V, 64, 25, DOZE_TYPE_F32, E, K);
    doze_train_params p = doze_train_default_params();
    p.batch = 2;
    p.context = 32;
    trained_state one = {0}, two = {0};
    CHECK(f.data && train_at_threads(&f, 1, 0, &p, p.batch * p.context, 3, &one) &&
          train_at_threads(&f, 2, 0, &p, p.batch * p.context, 3, &two));
    int same = trained_identical(&one, &two);
    printf("MoE gate training at 1 and 2 threads: routers %s\n", same ? "bit-identical" : "DIFFERENT");
    CHECK(same);
    trained_state_free(&one), trained_state_free(&two);
    free(f.data);
}

int main(void) {
    test_grad_and_forward();
    test_finetune();
    test_threads();
    return test_finish("test_train_moegates");
}
