/* Gate training: the router gradients from backprop match central finite
 * differences of the relaxed loss (soft gates, fixed visibility) for several
 * masks, skipped layers, heads and FFN blocks included (the FFN blocks'
 * router rows are checked on their own too); the training ops' SIMD matmuls
 * match their scalar references; training reduces the loss and holds the
 * compute near the budget, for llama, qwen2 and qwen3 attention; the trained
 * gates, used through the inference path, give the whole-sequence forward's
 * logits. */
#include <stdint.h>
#include <string.h>

#include "gates.h"
#include "train.h"
#include "train_ops.h"
#include "model_fixture.h"
#include "test_util.h"

static uint64_t rng = 99;
static double uni(void) {
    rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
    return (double)((rng * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}

static void test_matmuls(void) {
    const int shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {4, 4, 8}, {9, 13, 33}, {16, 64, 172}, {33, 172, 64}};
    double worst_f = 0, worst_b = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int N = shapes[s][0], out = shapes[s][1], in = shapes[s][2];
        float *x = malloc((size_t)N * in * 4), *w = malloc((size_t)out * in * 4);
        float *y1 = malloc((size_t)N * out * 4), *y2 = malloc((size_t)N * out * 4);
        float *dy = malloc((size_t)N * out * 4), *d1 = calloc((size_t)N * in, 4), *d2 = calloc((size_t)N * in, 4);
        for (int i = 0; i < N * in; i++) x[i] = (float)(uni() * 2 - 1);
        for (int i = 0; i < out * in; i++) w[i] = (float)(uni() * 2 - 1);
        for (int i = 0; i < N * out; i++) dy[i] = (float)(uni() * 2 - 1);
        matmul_forward(y1, x, w, N, out, in);
        matmul_forward_ref(y2, x, w, N, out, in);
        matmul_backward(d1, dy, w, N, out, in);
        matmul_backward_ref(d2, dy, w, N, out, in);
        for (int i = 0; i < N * out; i++) worst_f = fmax(worst_f, fabs(y1[i] - y2[i]) / (in * 1.0));
        for (int i = 0; i < N * in; i++) worst_b = fmax(worst_b, fabs(d1[i] - d2[i]) / (out * 1.0));
        free(x), free(w), free(y1), free(y2), free(dy), free(d1), free(d2);
    }
    printf("train matmuls vs reference: forward %.2g, backward %.2g (per term)\n", worst_f, worst_b);
    CHECK(worst_f < 1e-6 && worst_b < 1e-6);
}

/* The gradient check, training steps and training forward = inference on an
 * f32 model of FFN size HID, whose FFN blocks are FB channels (want_nb of
 * them), of architecture arch (qwen2: Q/K/V biases and NeoX RoPE; qwen3: q/k
 * norms and NeoX RoPE) with heads of head_dim values (0: dim / heads). */
static void check_trainer(const char *arch, int head_dim, const int HID, const int FB, const int want_nb) {
    enum { D = 16, NL = 3, NH = 4, NKV = 2, V = 50, B = 2, T = 8 };
    printf("-- %s, head dim %d, FFN %d: blocks of %d\n", arch, head_dim ? head_dim : D / NH, HID, FB);
    const doze_init_params ip = {D, HID, NL, NH, NKV, V, 64, 11, DOZE_TYPE_F32, arch, head_dim, 0, 0.0f, 0, 0};
    mem_buf f = fixture_from_params(&ip);
    doze_model *m = NULL;
    doze_error e;
    CHECK(doze_model_load_memory(f.data, f.len, NULL, &m, &e) == DOZE_OK);
    if (!m) {
        free(f.data);
        return;
    }
    CHECK(doze_model_ffn_block(m) == FB);
    int32_t calib[40];
    for (int i = 0; i < 40; i++) calib[i] = i == 0 ? 1 : 3 + (int)(uni() * (V - 3));
    doze_gates *g = NULL;
    CHECK(doze_gates_calibrate(m, calib, 40, NULL, &g, &e) == DOZE_OK);
    if (!g) {
        doze_model_free(m);
        free(f.data);
        return;
    }
    /* make the scores varied: some layers, heads and FFN blocks fall below the threshold */
    const int NB = doze_model_ffn_blocks(m); /* the last block narrower */
    const int U = gates_rows(g);
    CHECK(NB == want_nb && g->n_blocks == NB && U == 1 + NH + NB);
    for (int i = 0; i < NL * U * D; i++) g->router[i] += (float)(uni() - 0.5);
    for (int i = 0; i < NL * U; i++) g->bias[i] += (float)(uni() * 6 - 3);

    doze_train_params p = doze_train_default_params();
    p.batch = B;
    p.context = T;
    p.budget = 0.5f;
    p.compute_weight = 5.0f;
    doze_trainer *t = NULL;
    /* a rate, weight or temperature that is not finite is refused, not
     * trained on (it returned OK and wrote NaN gates) */
    {
        doze_train_params bad = p;
        bad.lr = INFINITY;
        CHECK(doze_trainer_new(m, g, &bad, &t, &e) == DOZE_ERR_INVALID_ARGUMENT && t == NULL);
        CHECK_MSG(strstr(e.message, "finite") != NULL, "%s", e.message);
        bad = p;
        bad.dual_rate = NAN;
        CHECK(doze_trainer_new(m, g, &bad, &t, &e) == DOZE_ERR_INVALID_ARGUMENT && t == NULL);
        bad = p;
        bad.total_steps = 0;
        CHECK(doze_trainer_new(m, g, &bad, &t, &e) == DOZE_ERR_INVALID_ARGUMENT);
        CHECK_MSG(strstr(e.message, "steps must be >= 1") != NULL, "%s", e.message);
    }
    CHECK(doze_trainer_new(m, g, &p, &t, &e) == DOZE_OK);
    int32_t tokens[B * T];
    for (int i = 0; i < B * T; i++) tokens[i] = i % T == 0 ? 1 : 3 + (int)(uni() * (V - 3));
    CHECK(trainer_set_teacher(t, tokens, &e) == DOZE_OK);

    /* gradient check under several visibility masks */
    uint8_t vis[NL * B * T];
    double worst = 0, worst_small = 0;
    int bad = 0;
    int checked = 0, skipped_layers = 0, off_heads = 0, checked_blocks = 0;
    for (int trial = 0; trial < 4; trial++) {
        const float tau = trial == 3 ? 0.5f : 1.0f;
        double loss;
        if (trial == 0) {
            CHECK(trainer_loss_grad(t, tokens, TRAIN_SOFT, tau, NULL, vis, 1, &loss, &e) == DOZE_OK);
        } else {
            for (int i = 0; i < NL * B * T; i++) vis[i] = (i % T) == 0 || uni() < 0.7;
            CHECK(trainer_loss_grad(t, tokens, TRAIN_SOFT, tau, vis, NULL, 1, &loss, &e) == DOZE_OK);
        }
        for (int i = 0; i < NL * B * T; i++) skipped_layers += !vis[i];
        size_t nR = (size_t)NL * U * D;
        float *gR = malloc(nR * 4), *gb = malloc((size_t)NL * U * 4);
        memcpy(gR, trainer_grad_router(t), nR * 4);
        memcpy(gb, trainer_grad_bias(t), (size_t)NL * U * 4);
        for (int k = 0; k < 30; k++) {
            int is_bias = k % 3 == 0;
            size_t idx = is_bias ? (size_t)(uni() * NL * U) : (size_t)(uni() * nR);
            if (k % 6 == 2) { /* an FFN block's router row */
                int l = (int)(uni() * NL), j = (int)(uni() * NB), i = (int)(uni() * D);
                idx = ((size_t)l * U + 1 + NH + j) * D + i;
                checked_blocks++;
            } else if (k % 6 == 3) { /* an FFN block's bias */
                idx = (size_t)(uni() * NL) * U + 1 + NH + (size_t)(uni() * NB);
                checked_blocks++;
            }
            float *param = is_bias ? &g->bias[idx] : &g->router[idx];
            double analytic = is_bias ? gb[idx] : gR[idx];
            const float h = 1e-2f;
            float keep = *param;
            double lp, lm;
            *param = keep + h;
            trainer_loss_grad(t, tokens, TRAIN_SOFT, tau, vis, NULL, 0, &lp, &e);
            *param = keep - h;
            trainer_loss_grad(t, tokens, TRAIN_SOFT, tau, vis, NULL, 0, &lm, &e);
            *param = keep;
            double fd = (lp - lm) / (2 * h);
            double scale = fmax(fabs(fd), fabs(analytic));
            /* f32 forward: the finite difference carries up to ~1e-5 of
             * noise (qwen2's biases make larger logits, and the most), so a
             * relative error is held only where that is at most 0.5% of the
             * gradient (|grad| >= 2e-3); smaller ones to an absolute bound */
            double err_abs = fabs(fd - analytic);
            if (scale >= 2e-3) worst = fmax(worst, err_abs / scale);
            else worst_small = fmax(worst_small, err_abs);
            checked++;
            if (err_abs > 1e-2 * scale + 1e-5) bad++;
            if (err_abs > 1e-2 * scale + 1e-5) printf("  trial %d %s[%zu]: backprop %.6g, finite difference %.6g\n", trial,
                                   is_bias ? "bias" : "router", idx, analytic, fd);
        }
        free(gR), free(gb);
    }
    (void)off_heads;
    printf("gradient check: %d parameters (%d of FFN block gates); worst relative error %.3g where "
           "|grad| >= 2e-3, worst absolute error %.2g below (f32, h = 1e-2); %d skipped layer "
           "positions in the masks\n",
           checked, checked_blocks, worst, worst_small, skipped_layers);
    CHECK(checked >= 100);
    CHECK(checked_blocks >= 20);
    CHECK(skipped_layers > 0);
    CHECK(bad == 0);
    CHECK(worst < 5e-3);

    /* a few training steps move the routers and keep the loss finite */
    doze_train_stats stats;
    float first = 0, last = 0;
    for (int i = 0; i < 12; i++) {
        CHECK(doze_trainer_step(t, tokens, &stats, &e) == DOZE_OK);
        if (i == 0) first = stats.loss;
        last = stats.loss;
        CHECK(isfinite(stats.loss) && stats.achieved_compute > 0 && stats.achieved_compute <= 1.0f);
    }
    printf("12 steps on one batch: loss %.4f -> %.4f, compute %.3f (expected %.3f)\n", (double)first,
           (double)last, (double)stats.achieved_compute, (double)stats.expected_compute);
    CHECK(strcmp(g->kind, "trained") == 0);

    /* training forward = inference: the trained gates' hard decisions (no
     * noise) give the same logits through the token-by-token path and the
     * whole-sequence forward under the same masks */
    {
        double loss;
        CHECK(trainer_loss_grad(t, tokens, TRAIN_DECIDE, 1.0f, NULL, NULL, 0, &loss, &e) == DOZE_OK);
        uint8_t lon[B * T * NL], hon[B * T * NL * NH];
        uint8_t *fon = malloc((size_t)B * T * NL * NB);
        trainer_masks(t, lon, hon, fon);
        int off_l = 0, off_h = 0, off_b = 0;
        for (int i = 0; i < B * T * NL; i++) off_l += !lon[i];
        for (int i = 0; i < B * T * NL * NH; i++) off_h += !hon[i];
        for (int i = 0; i < B * T * NL * NB; i++) off_b += lon[i / NB] && !fon[i];
        const float *tl = trainer_logits(t);
        double worst_tok = 0, worst_seq = 0, scale = 1e-9;
        float seq_logits[T * V];
        for (int b = 0; b < B; b++) {
            doze_session *s = doze_session_new(m, &e);
            for (int i = 0; i < T; i++) {
                size_t n = (size_t)b * T + i;
                CHECK(doze_session_step_masked(s, tokens[n], &(doze_mask){lon + n * NL, hon + n * NL * NH, fon + n * NL * NB, NULL}, &e) == DOZE_OK);
                const float *sl = doze_session_logits(s);
                for (int v = 0; v < V; v++) {
                    worst_tok = worst_diff(worst_tok, fabs(sl[v] - tl[n * V + v]));
                    scale = fmax(scale, fabs(tl[n * V + v]));
                }
            }
            doze_session_free(s);
            CHECK(doze_sequence_forward(m, tokens + b * T, T, &(doze_mask){lon + (size_t)b * T * NL, hon + (size_t)b * T * NL * NH, fon + (size_t)b * T * NL * NB, NULL}, seq_logits, &e) == DOZE_OK);
            for (int i = 0; i < T * V; i++)
                worst_seq = fmax(worst_seq, fabs(seq_logits[i] - tl[(size_t)b * T * V + i]));
        }
        printf("training forward vs inference under the trained gates' decisions (%d layers, %d "
               "heads and %d FFN blocks of running layers off): token-by-token %.3g, whole-sequence "
               "%.3g of the logits' range\n",
               off_l, off_h, off_b, worst_tok / scale, worst_seq / scale);
        CHECK(off_l > 0 && off_h > 0 && off_b > 0);
        CHECK(worst_tok / scale < 1e-5 && worst_seq / scale < 1e-5);
        free(fon);
    }

    doze_trainer_free(t);
    doze_gates_free(g);
    doze_model_free(m);
    free(f.data);
}

/* A vocabulary that adds no BOS (tokenizer.ggml.add_bos_token false, as in
 * Qwen2.5's and SmolLM2's files): doze_finetune's windows are the stories'
 * own tokens. Each window used to have its first token replaced by the
 * text's first token (meant as BOS, but without BOS the first story's first
 * token), so a text "A | B B B ..." trained exactly as "A | A' A' A' ...",
 * A' being B with A's first token: the same gates, byte for byte. */
static mem_buf gates_bytes(const doze_gates *g) {
    mem_buf out = {NULL, 0, 0};
    doze_error e;
    CHECK(doze_gates_save(g, mem_write, &out, &e) == DOZE_OK);
    return out;
}

static void test_finetune_without_bos(void) {
    const doze_init_params ip = {16, 40, 2, 4, 2, 300, 64, 5, DOZE_TYPE_F32, NULL, 0, 0, 0.0f, 0, 0};
    mem_buf f = {NULL, 0, 0};
    gguf_builder b;
    doze_error e;
    CHECK(gguf_builder_init(&b, &e) == DOZE_OK);
    CHECK(convert_init_random(&ip, &b, &e) == DOZE_OK);
    CHECK(gguf_writer_set_bool(b.w, "tokenizer.ggml.add_bos_token", 0, &e) == DOZE_OK);
    CHECK(gguf_writer_write(b.w, mem_write, &f, &e) == DOZE_OK);
    gguf_builder_free(&b);
    doze_model *m = NULL;
    CHECK(f.data && doze_model_load_memory(f.data, f.len, NULL, &m, &e) == DOZE_OK);
    if (!m) {
        free(f.data);
        return;
    }
    /* A and B differ in their first token only; A' is B from A's first token */
    const char *story_a = "a the cat sat on the mat and the dog ran to the park with a ball";
    const char *story_b = "c the cat sat on the mat and the dog ran to the park with a ball";
    int32_t ta[256], tb[256];
    int na = 0, nb = 0;
    CHECK(doze_tokenize(m, story_a, strlen(story_a), DOZE_TOKENIZE_ADD_SPECIAL, ta, 256, &na, &e) == DOZE_OK);
    CHECK(doze_tokenize(m, story_b, strlen(story_b), DOZE_TOKENIZE_ADD_SPECIAL, tb, 256, &nb, &e) == DOZE_OK);
    CHECK(na == nb && na >= 16 && ta[0] != tb[0] && memcmp(ta + 1, tb + 1, (size_t)(na - 1) * sizeof *ta) == 0);
    char text_ab[4096] = "", text_aa[4096] = "";
    for (int i = 0; i < 12; i++) {
        const char *next = i == 0 ? story_a : story_b;
        strcat(text_ab, next), strcat(text_ab, "\n<|endoftext|>\n");
        strcat(text_aa, story_a), strcat(text_aa, "\n<|endoftext|>\n"); /* A' = A here: they differ in token 0 only */
    }
    doze_train_params p = doze_train_default_params();
    p.context = 16;
    p.batch = 4;
    p.total_steps = 3;
    doze_gates *init = NULL;
    doze_gates_params gp = doze_gates_default_params();
    CHECK(doze_gates_calibrate(m, ta, na, &gp, &init, &e) == DOZE_OK);
    doze_finetune *fa = NULL, *fb = NULL;
    CHECK(doze_finetune_new(m, init, &p, text_ab, strlen(text_ab), &fa, &e) == DOZE_OK);
    CHECK(doze_finetune_new(m, init, &p, text_aa, strlen(text_aa), &fb, &e) == DOZE_OK);
    for (int s = 0; fa && fb && s < p.total_steps; s++) {
        doze_train_stats st;
        CHECK(doze_finetune_step(fa, &st, &e) == DOZE_OK);
        CHECK(doze_finetune_step(fb, &st, &e) == DOZE_OK);
    }
    if (fa && fb) { /* the routers before any retune: what the windows taught them */
        mem_buf ga = gates_bytes(doze_finetune_gates(fa)), gb = gates_bytes(doze_finetune_gates(fb));
        const int same = ga.len == gb.len && memcmp(ga.data, gb.data, ga.len) == 0;
        printf("no BOS: training on A|B...B %s training on A|A...A\n", same ? "EQUALS" : "differs from");
        CHECK(!same);
        free(ga.data), free(gb.data);
    }
    doze_finetune_free(fa);
    doze_finetune_free(fb);
    doze_gates_free(init);
    doze_model_free(m);
    free(f.data);
}

int main(void) {
    test_matmuls();
    check_trainer("llama", 0, 40, 16, 3);  /* a small f32 FFN: blocks of 16, 16 and 8 */
    check_trainer("llama", 0, 264, 32, 9); /* 8 * 32 channels and more: 8 blocks of 32 and one of 8 */
    check_trainer("qwen2", 0, 40, 16, 3);  /* Q/K/V biases, NeoX RoPE */
    check_trainer("qwen3", 8, 40, 16, 3);  /* q/k norms, NeoX RoPE, heads of 8 (4 x 8 != 16) */
    test_finetune_without_bos();
    return test_finish("test_train");
}
