/* Joint training (weights and gates together) on a mixture of experts: the
 * model's router (ffn_gate_inp) and its expert stacks (ffn_gate_exps,
 * ffn_up_exps, ffn_down_exps) learn with every other weight, each token's
 * experts chosen under the budget as inference chooses them, plus the
 * load-balancing term:
 * - the gradients of the gates' routers and of every weight tensor match
 *   central finite differences of the relaxed loss (soft gates, fixed
 *   visibility), KL and cross-entropy, with the balance term on; nudges that
 *   change a token's experts (or which FFNs run, which the balance term's
 *   f_e counts) are skipped: the choice is a constant of the gradient;
 * - the model written (llama.cpp's tensor names) loads, and stepped token by
 *   token (and as a sequence) under the trainer's hard decisions, expert
 *   masks included, gives the training forward's logits;
 * - a joint fine-tune (doze_finetune) re-calibrates the experts' constants
 *   on the trained model and its retuned gates hold the budget;
 * - `doze train --gates --experts 4 --top-k 2` writes a model and gates that
 *   load and hold a budget on the text;
 * - adapters (--lora) on a mixture are refused;
 * - 1 and 2 threads train the same weights and gates, bit for bit. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gates.h"
#include "gguf.h"
#include "train.h"
#include "train_joint.h"
#include "model_fixture.h"
#include "session_fixture.h"
#include "threads_fixture.h"
#include "test_util.h"

enum { D = 16, HID = 16, NL = 3, NH = 4, NKV = 2, V = 60, E = 4, K = 2, B = 2, T = 8 };

static uint64_t rng = 4242;
static double uni(void) {
    rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
    return (double)((rng * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}

typedef struct {
    int checked, bad, skipped, zero;
    double worst; /* relative, where the gradient is not tiny */
} tally;

static void compare(tally *s, const char *what, double analytic, double fd) {
    double scale = fmax(fabs(fd), fabs(analytic)), err_abs = fabs(fd - analytic);
    if (scale >= 1e-3) s->worst = fmax(s->worst, err_abs / scale);
    s->checked++;
    s->zero += analytic == 0.0;
    if (err_abs > 2e-2 * scale + 2e-5) {
        s->bad++;
        printf("  %s: backprop %.6g, finite difference %.6g\n", what, analytic, fd);
    }
}

/* the decisions a nudge must not change: each token's experts (computed
 * ones, FFN on or off) and which layers and FFNs run (the balance term's f_e) */
typedef struct {
    uint8_t sel[B * T * NL * E], lon[B * T * NL], hon[B * T * NL * NH], fon[B * T * NL];
} decisions;

static void decisions_of(doze_trainer *t, decisions *d) {
    trainer_expert_masks(t, 1, d->sel);
    trainer_masks(t, d->lon, d->hon, d->fon);
}

static int same_decisions(const decisions *a, const decisions *b) {
    return memcmp(a->sel, b->sel, sizeof a->sel) == 0 && memcmp(a->lon, b->lon, sizeof a->lon) == 0 &&
           memcmp(a->fon, b->fon, sizeof a->fon) == 0;
}

/* central difference of the soft loss in *param; 0 with *ok = 0 when a
 * nudge changes the decisions */
static double finite_diff(doze_trainer *t, const int32_t *tokens, const uint8_t *vis, float *param, float h,
                          joint_weights *jw, const decisions *ref, int *ok) {
    doze_error e;
    double lp, lm;
    decisions d;
    float keep = *param;
    *param = keep + h;
    if (jw) joint_params_changed(jw);
    trainer_loss_grad(t, tokens, TRAIN_SOFT, 1.0f, vis, NULL, 0, &lp, &e);
    decisions_of(t, &d);
    *ok = same_decisions(ref, &d);
    *param = keep - h;
    if (jw) joint_params_changed(jw);
    trainer_loss_grad(t, tokens, TRAIN_SOFT, 1.0f, vis, NULL, 0, &lm, &e);
    decisions_of(t, &d);
    *ok = *ok && same_decisions(ref, &d);
    *param = keep;
    if (jw) joint_params_changed(jw);
    return (lp - lm) / (2.0 * h);
}

static doze_train_params joint_params_for(int loss) {
    doze_train_params p = doze_train_default_params();
    p.batch = B;
    p.context = T;
    p.budget = 0.5f;
    p.compute_weight = 5.0f;
    p.joint = 1;
    p.task_loss = loss;
    p.balance_loss = 0.05f; /* large enough to matter in the gradients */
    return p;
}

static void gradient_check(doze_model *m, doze_gates *g, const int32_t *tokens, int loss) {
    doze_error e;
    doze_train_params p = joint_params_for(loss);
    doze_trainer *t = NULL;
    CHECK(doze_trainer_new(m, g, &p, &t, &e) == DOZE_OK);
    if (!t) {
        fprintf(stderr, "trainer: %s\n", e.message);
        return;
    }
    joint_weights *jw = trainer_joint(t);
    CHECK(jw && joint_experts(jw) == E);
    CHECK(trainer_set_teacher(t, tokens, &e) == DOZE_OK);
    uint8_t vis[NL * B * T];
    int skipped = 0;
    for (int i = 0; i < NL * B * T; i++) skipped += !(vis[i] = (i % T) == 0 || uni() < 0.7);
    double loss_v;
    CHECK(trainer_loss_grad(t, tokens, TRAIN_SOFT, 1.0f, vis, NULL, 1, &loss_v, &e) == DOZE_OK);
    decisions ref;
    decisions_of(t, &ref);
    int fewer = 0;
    for (int i = 0; i < B * T * NL; i++) {
        int c = 0;
        for (int x = 0; x < E; x++) c += ref.sel[(size_t)i * E + x];
        fewer += c < K;
    }
    const int U = gates_rows(g);
    const size_t nR = (size_t)NL * U * D, np = joint_n_params(jw);
    float *gR = malloc(nR * 4), *gb = malloc((size_t)NL * U * 4), *gw = malloc(np * 4);
    memcpy(gR, trainer_grad_router(t), nR * 4);
    memcpy(gb, trainer_grad_bias(t), (size_t)NL * U * 4);
    memcpy(gw, joint_grads(jw), np * 4);
    tally routers = {0, 0, 0, 0, 0}, weights = {0, 0, 0, 0, 0}, experts = {0, 0, 0, 0, 0};
    char what[96];
    int ok;
    /* the cross-entropy (~4 nats, against KL's ~0.1) carries more f32 noise
     * in the loss: a wider step (the errors fall as h grows, as noise does) */
    const float h = loss == DOZE_LOSS_CE ? 3e-2f : 1e-2f;
    for (int k = 0; k < 30; k++) { /* router rows and biases, of every unit kind */
        int is_bias = k % 3 == 0;
        size_t idx = is_bias ? (size_t)(uni() * NL * U) : (size_t)(uni() * nR);
        float *param = is_bias ? &g->bias[idx] : &g->router[idx];
        snprintf(what, sizeof what, "%s[%zu]", is_bias ? "bias" : "router", idx);
        double fd = finite_diff(t, tokens, vis, param, h, NULL, &ref, &ok);
        if (!ok) {
            routers.skipped++;
            continue;
        }
        compare(&routers, what, is_bias ? gb[idx] : gR[idx], fd);
    }
    float *w = joint_params(jw);
    int moe_tensors = 0;
    for (int k = 0; k < joint_n_tensors(jw); k++) { /* elements of every weight tensor */
        size_t off, n;
        const char *name;
        joint_tensor_span(jw, k, &off, &n, &name);
        const int moe = strstr(name, "_exps") != NULL || strstr(name, "gate_inp") != NULL;
        moe_tensors += moe;
        tally *s = moe ? &experts : &weights;
        for (int r = 0; r < (moe ? 10 : 4); r++) {
            size_t i = off + (size_t)(uni() * n);
            if (k == 0) /* the embedding: rows of tokens in the batch */
                i = off + (size_t)tokens[(int)(uni() * B * T)] * D + (size_t)(uni() * D);
            snprintf(what, sizeof what, "%s[%zu]", name, i - off);
            double fd = finite_diff(t, tokens, vis, &w[i], h, jw, &ref, &ok);
            if (!ok) {
                s->skipped++;
                continue;
            }
            compare(s, what, gw[i], fd);
        }
    }
    printf("joint MoE gradient check (%s, balance C = %.2f, %d skipped layer positions, %d token-layers with "
           "fewer than k experts): routers %d checked, worst relative error %.3g; weights %d, worst %.3g; "
           "the MoE router and expert stacks (%d tensors) %d, worst %.3g (f32, h = %g); %d nudges skipped "
           "(they change the decisions)\n",
           loss == DOZE_LOSS_CE ? "cross-entropy" : "KL", (double)p.balance_loss, skipped, fewer, routers.checked,
           routers.worst, weights.checked, weights.worst, moe_tensors, experts.checked, experts.worst, (double)h,
           routers.skipped + weights.skipped + experts.skipped);
    CHECK(skipped > 0 && fewer > 0);
    CHECK(moe_tensors == 4 * NL && joint_n_tensors(jw) == 2 + 10 * NL);
    CHECK(routers.checked >= 20 && weights.checked >= 60 && experts.checked >= 100);
    CHECK(routers.bad == 0 && weights.bad == 0 && experts.bad == 0);
    CHECK(routers.worst < 2e-2 && weights.worst < 2e-2 && experts.worst < 2e-2);
    CHECK(experts.zero < experts.checked / 4); /* the check saw real gradients */
    free(gR), free(gb), free(gw);
    doze_trainer_free(t);
}

/* a tensor of a GGUF file: its type and dims, -1 when absent */
static int file_tensor_type(const gguf_header *h, const char *name, uint64_t *ne) {
    for (uint64_t i = 0; i < h->n_tensors; i++)
        if (strcmp(h->tensors[i].name.data, name) == 0) {
            memcpy(ne, h->tensors[i].ne, 4 * sizeof(uint64_t));
            return (int)h->tensors[i].type;
        }
    return -1;
}

/* steps, then the written model under the trainer's hard decisions = the
 * training forward */
static void written_model_check(doze_model *m, doze_gates *g, const int32_t *tokens, const mem_buf *f) {
    doze_error e;
    doze_train_params p = joint_params_for(DOZE_LOSS_KL);
    p.budget = 0.4f; /* low enough that some whole layers doze */
    p.weight_lr = 3e-3f;
    doze_trainer *t = NULL;
    CHECK(doze_trainer_new(m, g, &p, &t, &e) == DOZE_OK);
    if (!t) return;
    doze_train_stats st;
    float first = 0, last = 0;
    for (int i = 0; i < 30; i++) {
        CHECK(doze_trainer_step(t, tokens, &st, &e) == DOZE_OK);
        if (i == 0) first = st.kl;
        last = st.kl;
    }
    printf("30 joint MoE steps on one batch: KL %.4f -> %.4f, compute %.3f\n", (double)first, (double)last,
           (double)st.achieved_compute);
    CHECK(isfinite(last) && last < first);
    double loss_v;
    CHECK(trainer_loss_grad(t, tokens, TRAIN_DECIDE, 1.0f, NULL, NULL, 0, &loss_v, &e) == DOZE_OK);
    uint8_t lon[B * T * NL], hon[B * T * NL * NH], fon[B * T * NL], eon[B * T * NL * E];
    trainer_masks(t, lon, hon, fon);
    trainer_expert_masks(t, 0, eon);
    int off_l = 0, off_h = 0, off_f = 0, few = 0, ffns = 0;
    for (int i = 0; i < B * T * NL; i++) {
        off_l += !lon[i];
        off_f += lon[i] && !fon[i];
        if (!(lon[i] && fon[i])) continue;
        int c = 0;
        for (int x = 0; x < E; x++) c += eon[(size_t)i * E + x];
        ffns++;
        few += c < K;
    }
    for (int i = 0; i < B * T * NL * NH; i++) off_h += !hon[i];
    mem_buf out = {NULL, 0, 0};
    CHECK(trainer_write_model(t, f->data, f->len, mem_write, &out, &e) == DOZE_OK);
    /* llama.cpp's names and shapes, f32 */
    gguf_header h;
    CHECK(gguf_parse_header(out.data, out.len, &h, &e) == DOZE_OK);
    uint64_t ne[4];
    CHECK(file_tensor_type(&h, "blk.1.ffn_gate_inp.weight", ne) == DOZE_TYPE_F32 && ne[0] == D && ne[1] == E);
    CHECK(file_tensor_type(&h, "blk.1.ffn_gate_exps.weight", ne) == DOZE_TYPE_F32 && ne[0] == D && ne[1] == HID &&
          ne[2] == E);
    CHECK(file_tensor_type(&h, "blk.1.ffn_up_exps.weight", ne) == DOZE_TYPE_F32 && ne[0] == D && ne[1] == HID &&
          ne[2] == E);
    CHECK(file_tensor_type(&h, "blk.1.ffn_down_exps.weight", ne) == DOZE_TYPE_F32 && ne[0] == HID && ne[1] == D &&
          ne[2] == E);
    gguf_header_free(&h);
    doze_model *m2 = NULL;
    CHECK(doze_model_load_memory(out.data, out.len, NULL, &m2, &e) == DOZE_OK);
    if (!m2) {
        free(out.data);
        doze_trainer_free(t);
        return;
    }
    CHECK(doze_model_get_info(m2)->n_experts == E && doze_model_get_info(m2)->n_experts_used == K);
    const float *tl = trainer_logits(t);
    double worst = 0, worst_seq = 0, scale = 1e-9, moved = 0;
    doze_session *s0 = doze_session_new(m, &e);
    float seq_logits[T * V];
    for (int b = 0; b < B; b++) {
        doze_session *s = doze_session_new(m2, &e);
        doze_session_reset(s0);
        for (int i = 0; i < T; i++) {
            size_t n = (size_t)b * T + i;
            const doze_mask mk = {lon + n * NL, hon + n * NL * NH, fon + n * NL, eon + n * NL * E};
            CHECK(doze_session_step_masked(s, tokens[n], &mk, &e) == DOZE_OK);
            CHECK(memcmp(doze_session_expert_mask(s), eon + n * NL * E, NL * E) == 0);
            CHECK(doze_session_step_masked(s0, tokens[n], &mk, &e) == DOZE_OK);
            logit_gaps(doze_session_logits(s), doze_session_logits(s0), tl + n * V, V, &worst, &moved, &scale);
        }
        doze_session_free(s);
        const size_t r = (size_t)b * T;
        CHECK(doze_sequence_forward(m2, tokens + r, T,
                                    &(doze_mask){lon + r * NL, hon + r * NL * NH, fon + r * NL, eon + r * NL * E},
                                    seq_logits, &e) == DOZE_OK);
        for (int i = 0; i < T * V; i++) worst_seq = fmax(worst_seq, fabs(seq_logits[i] - tl[r * V + i]));
    }
    doze_session_free(s0);
    printf("joint MoE training forward vs inference of the written model under its decisions (%d layers, %d "
           "heads, %d FFNs of running layers off; %d of %d running FFNs with fewer than k experts): "
           "token-by-token %.3g, whole-sequence %.3g of the logits' range (the original model: %.3g)\n",
           off_l, off_h, off_f, few, ffns, worst / scale, worst_seq / scale, moved / scale);
    CHECK(off_l > 0 && off_h > 0 && off_f > 0 && few > 0);
    CHECK(worst / scale < 1e-5 && worst_seq / scale < 1e-5);
    CHECK(moved / scale > 1e-3); /* the written weights are the trained ones */
    doze_model_free(m2);
    free(out.data);
    doze_trainer_free(t);
}

/* a joint fine-tune of a mixture: written, finished (the experts' constants
 * calibrated again, the table retuned), its gates hold the budget */
static void finetune_check(void) {
    enum { FD = 32, FH = 32, FL = 3, FNH = 4, FV = 300 };
    doze_error e;
    mem_buf f = fixture_moe_gguf("llama", FD, FH, FL, FNH, 2, FV, 256, 23, DOZE_TYPE_F32, E, K);
    doze_model *m = NULL;
    CHECK(f.data && doze_model_load_memory(f.data, f.len, NULL, &m, &e) == DOZE_OK);
    if (!m) {
        free(f.data);
        return;
    }
    size_t len = 0;
    char *text = sampled_text(m, FV, 24, 64, &len, &e);
    doze_train_params p = doze_train_default_params();
    p.budget = 0.7f;
    p.batch = 4;
    p.context = 32;
    p.total_steps = 30;
    p.joint = 1;
    p.weight_lr = 3e-3f;
    doze_finetune *ft = NULL;
    CHECK(doze_finetune_new(m, NULL, &p, text, len, &ft, &e) == DOZE_OK);
    if (!ft) {
        fprintf(stderr, "finetune: %s\n", e.message);
        free(text);
        doze_model_free(m);
        free(f.data);
        return;
    }
    /* the file to write from, checked before the steps: this model's file
     * passes; not a GGUF, cut short, or its header alone do not */
    CHECK(doze_finetune_check_model(ft, f.data, f.len, &e) == DOZE_OK);
    CHECK(doze_finetune_check_model(ft, text, len, &e) == DOZE_ERR_BAD_MAGIC);
    CHECK(doze_finetune_check_model(ft, f.data, f.len - 64, &e) == DOZE_ERR_TRUNCATED);
    CHECK(doze_finetune_check_model(ft, f.data, 64, &e) != DOZE_OK);
    const doze_gates *g = doze_finetune_gates(ft);
    CHECK(g->n_experts == E && g->expert_bias);
    float eb0[FL * E];
    memcpy(eb0, g->expert_bias, sizeof eb0);
    double first = 0, last = 0;
    for (int i = 0; i < 30; i++) {
        doze_train_stats st;
        CHECK(doze_finetune_step(ft, &st, &e) == DOZE_OK && isfinite(st.loss));
        if (i < 5) first += st.kl / 5.0;
        if (i >= 25) last += st.kl / 5.0;
    }
    mem_buf out = {NULL, 0, 0};
    doze_model *m2 = NULL;
    CHECK(doze_finetune_write_model(ft, f.data, f.len, mem_write, &out, &e) == DOZE_OK);
    CHECK(doze_model_load_memory(out.data, out.len, NULL, &m2, &e) == DOZE_OK);
    CHECK(m2 && doze_finetune_finish_joint(ft, m2, &e) == DOZE_OK);
    doze_gates *gt = doze_finetune_take_gates(ft);
    doze_finetune_free(ft);
    int changed = 0;
    for (int i = 0; gt && gt->expert_bias && i < FL * E; i++) changed += gt->expert_bias[i] != eb0[i];
    int32_t *ids = malloc(4096 * sizeof *ids);
    int n = 0;
    CHECK(doze_tokenize(m, text, len, DOZE_TOKENIZE_ADD_SPECIAL, ids, 4096, &n, &e) == DOZE_OK);
    if (n > 256) n = 256; /* the model's context: what the finish calibrated on */
    double c7 = m2 && gt ? session_compute(m2, gt, 0.7f, ids, n, &e) : 0;
    double c5 = m2 && gt ? session_compute(m2, gt, 0.5f, ids, n, &e) : 0;
    printf("joint fine-tune of a mixture, 30 steps: KL %.4f -> %.4f (first and last 5 steps); %d of %d expert "
           "constants re-calibrated on the trained model; the runtime spends %.3f at b = 0.7 and %.3f at "
           "b = 0.5 on the text\n",
           first, last, changed, FL * E, c7, c5);
    CHECK(gt && gt->expert_bias && gt->n_experts == E && changed > FL * E / 2);
    CHECK(fabs(c7 - 0.7) < 0.03 && fabs(c5 - 0.5) < 0.03);
    free(ids);
    doze_gates_free(gt);
    doze_model_free(m2);
    free(out.data);
    free(text);
    doze_model_free(m);
    free(f.data);
}

/* refusals: adapters on a mixture */
static void refusal_check(doze_model *m, doze_gates *g) {
    doze_error e;
    doze_train_params p = joint_params_for(DOZE_LOSS_KL);
    p.lora_rank = 2;
    doze_trainer *t = NULL;
    doze_status st = doze_trainer_new(m, g, &p, &t, &e);
    printf("--lora on a mixture: %s\n", e.message);
    CHECK(st == DOZE_ERR_UNSUPPORTED_TYPE && !t && strstr(e.message, "mixture") != NULL);
    p.lora_rank = 0;
    p.balance_loss = -1.0f;
    CHECK(doze_trainer_new(m, g, &p, &t, &e) == DOZE_ERR_INVALID_ARGUMENT && !t);
}

/* the same joint steps at 1 and 2 threads: the same weights and routers */
static void threads_check(void) {
    mem_buf f = fixture_moe_gguf("llama", 64, 64, 2, 4, 2, 300, 64, 25, DOZE_TYPE_F32, E, K);
    doze_train_params p = doze_train_default_params();
    p.batch = 2;
    p.context = 32;
    p.joint = 1;
    p.task_loss = DOZE_LOSS_CE;
    p.budget_lo = 0.4f;
    p.budget_hi = 1.0f;
    trained_state one = {0}, two = {0};
    CHECK(f.data && train_at_threads(&f, 1, 0, &p, p.batch * p.context, 3, &one) &&
          train_at_threads(&f, 2, 0, &p, p.batch * p.context, 3, &two));
    int same = one.weights && trained_identical(&one, &two);
    printf("joint MoE training at 1 and 2 threads: weights and routers %s\n", same ? "bit-identical" : "DIFFERENT");
    CHECK(same);
    trained_state_free(&one), trained_state_free(&two);
    free(f.data);
}

/* runs `doze ARGS`; 0 on exit 0 */
static int run_cli(const char *args, const char *log) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s > %s 2>&1", DOZE_CLI, args, log);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* `doze train --gates --experts 4 --top-k 2`: a model and its gates that
 * load and hold a budget on the text */
static void cli_check(void) {
    char dir[] = "/tmp/doze_moejoint_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0);
        return;
    }
    char text_path[256], model[256], gates[256], log[256], args[2048];
    snprintf(text_path, sizeof text_path, "%s/text.txt", dir);
    snprintf(model, sizeof model, "%s/moe.gguf", dir);
    snprintf(gates, sizeof gates, "%s/moe.gates.gguf", dir);
    snprintf(log, sizeof log, "%s/log.txt", dir);
    /* simple stories: a few words in varied sentences */
    static const char *const who[] = {"Tom", "Lily", "the cat", "a little dog", "Mom", "the bird"};
    static const char *const did[] = {"ran to", "looked at", "played with", "found", "liked", "jumped over"};
    static const char *const what[] = {"the ball", "a big tree", "the red box", "the park", "a toy", "the sun"};
    FILE *fp = fopen(text_path, "w");
    CHECK(fp != NULL);
    if (!fp) return;
    uint64_t r = 99;
    for (int s = 0; s < 300; s++) {
        fprintf(fp, "Once upon a time");
        for (int i = 0; i < 6; i++) {
            r ^= r >> 12, r ^= r << 25, r ^= r >> 27;
            uint64_t x = r * 0x2545F4914F6CDD1Dull >> 20;
            fprintf(fp, "%s %s %s %s.", i ? "" : ",", who[x % 6], did[(x / 6) % 6], what[(x / 36) % 6]);
        }
        fprintf(fp, " They were happy.\n<|endoftext|>\n");
    }
    fclose(fp);
    snprintf(args, sizeof args,
             "train %s --vocab %s/models/doze-stories.vocab.gguf --dim 32 --layers 2 --heads 2 --kv-heads 2 "
             "--hidden 32 --experts 4 --top-k 2 --balance-loss 0.01 --ctx 256 --batch 4 --steps 40 --lr 3e-3 "
             "--seed 1 --threads 1 --gates --budget-range 0.4:1 --dense-fraction 0.2 --name t -o %s",
             text_path, DOZE_SOURCE_DIR, model);
    int rc = run_cli(args, log);
    size_t ln = 0;
    uint8_t *lg = test_read_file(log, &ln);
    if (rc != 0 && lg) fwrite(lg, 1, ln, stdout);
    CHECK(rc == 0);
    free(lg);
    size_t mn = 0, gn = 0;
    uint8_t *mb = test_read_file(model, &mn), *gb = test_read_file(gates, &gn);
    doze_error e;
    doze_model *m = NULL;
    doze_gates *g = NULL;
    CHECK(mb && gb && doze_model_load_memory(mb, mn, NULL, &m, &e) == DOZE_OK);
    CHECK(m && doze_gates_load(m, gb, gn, &g, &e) == DOZE_OK);
    if (m && g) {
        CHECK(doze_model_get_info(m)->n_experts == 4 && doze_model_get_info(m)->n_experts_used == 2);
        CHECK(g->n_experts == 4 && g->expert_bias && strcmp(g->kind, "trained") == 0);
        size_t tn = 0;
        char *text = (char *)test_read_file(text_path, &tn);
        int32_t ids[512];
        int n = 0;
        CHECK(text && doze_tokenize(m, text, tn, DOZE_TOKENIZE_ADD_SPECIAL, ids, 512, &n, &e) == DOZE_OK);
        /* the first window is what the finish retuned on (one context's worth) */
        const int ctx = doze_model_get_info(m)->context_length;
        if (n > ctx) n = ctx;
        double c7 = session_compute(m, g, 0.7f, ids, n, &e), c5 = session_compute(m, g, 0.5f, ids, n, &e);
        printf("doze train --gates --experts 4 --top-k 2 (40 steps): the model and gates load; the runtime spends "
               "%.3f at b = 0.7, %.3f at b = 0.5 on the text's first %d tokens\n", c7, c5, n);
        CHECK(fabs(c7 - 0.7) < 0.03 && fabs(c5 - 0.5) < 0.03);
        free(text);
    }
    doze_gates_free(g);
    doze_model_free(m);
    free(mb), free(gb);
    remove(text_path), remove(model), remove(gates), remove(log);
    rmdir(dir);
}

int main(void) {
    mem_buf f = fixture_moe_gguf("llama", D, HID, NL, NH, NKV, V, 64, 31, DOZE_TYPE_F32, E, K);
    doze_model *m = NULL;
    doze_error e;
    CHECK(f.data && doze_model_load_memory(f.data, f.len, NULL, &m, &e) == DOZE_OK);
    if (!m) return test_finish("test_train_moejoint");
    int32_t calib[200];
    for (int i = 0; i < 200; i++) calib[i] = i == 0 ? 1 : 3 + (int)(uni() * (V - 3));
    doze_gates *g = NULL;
    CHECK(doze_gates_calibrate(m, calib, 60, NULL, &g, &e) == DOZE_OK);
    if (!g) return test_finish("test_train_moejoint");
    CHECK(g->n_blocks == 1 && g->n_experts == E && g->expert_bias);
    /* varied scores: some layers, heads and FFNs fall below the threshold;
     * the experts' constants spread so that some tokens run fewer than k */
    const int U = gates_rows(g);
    for (int i = 0; i < NL * U * D; i++) g->router[i] += (float)(uni() - 0.5);
    for (int i = 0; i < NL * U; i++) g->bias[i] += (float)(uni() * 6 - 3);
    for (int i = 0; i < NL * E; i++) g->expert_bias[i] += (float)(uni() * 4 - 2);
    int32_t tokens[B * T];
    for (int i = 0; i < B * T; i++) tokens[i] = i % T == 0 ? 1 : 3 + (int)(uni() * (V - 3));

    gradient_check(m, g, tokens, DOZE_LOSS_KL);
    gradient_check(m, g, tokens, DOZE_LOSS_CE);
    refusal_check(m, g);
    written_model_check(m, g, tokens, &f);
    doze_gates_free(g);
    doze_model_free(m);
    free(f.data);
    finetune_check();
    cli_check();
    threads_check();
    return test_finish("test_train_moejoint");
}
