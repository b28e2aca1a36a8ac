/* Full-model training: the weight-gradient products match scalar
 * references and do not depend on the thread count; the gradients of every
 * tensor kind (embedding, norms, Q/K/V/O, FFN, classifier; tied and
 * untied) match central finite differences on a tiny seeded model; a tiny
 * model trained for a few dozen steps on a short text lowers its loss
 * clearly; a run resumed from a checkpoint ends with the same bits as the
 * uninterrupted run; the saved model loads in the runtime and scores a
 * window as the trainer does (training forward = inference). */
#include <stdint.h>

#include "train_ops.h"
#include "train_fixture.h"

static uint64_t rng = 7;
static double uni(void) {
    rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
    return (double)((rng * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}

static void fill(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(uni() * 2 - 1);
}

static void test_products(void) {
    const int shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {4, 4, 8}, {9, 13, 33}, {37, 64, 20}, {300, 24, 17}, {513, 40, 36}, {1030, 100, 68}};
    double worst_w = 0, worst_nn = 0, worst_tn = 0;
    int same_threads = 1;
    doze_pool *two = NULL, *three = NULL;
    doze_error pe;
    CHECK(pool_new(2, &two, &pe) == DOZE_OK && pool_new(3, &three, &pe) == DOZE_OK);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int N = shapes[s][0], out = shapes[s][1], in = shapes[s][2];
        float *dy = malloc((size_t)N * out * 4), *x = malloc((size_t)N * in * 4);
        float *d1 = malloc((size_t)out * in * 4), *d2 = malloc((size_t)out * in * 4), *d3 = malloc((size_t)out * in * 4);
        fill(dy, (size_t)N * out);
        fill(x, (size_t)N * in);
        fill(d1, (size_t)out * in);
        memcpy(d2, d1, (size_t)out * in * 4);
        memcpy(d3, d1, (size_t)out * in * 4);
        matmul_backward_weights(d1, dy, x, N, out, in, NULL);
        matmul_backward_weights_ref(d2, dy, x, N, out, in);
        matmul_backward_weights(d3, dy, x, N, out, in, three);
        for (int i = 0; i < out * in; i++) worst_w = fmax(worst_w, fabs(d1[i] - d2[i]) / N);
        same_threads &= memcmp(d1, d3, (size_t)out * in * 4) == 0;
        /* gemm_nn / gemm_tn against plain loops: c(N, out) += a(N, in) b(in, out) */
        float *b = malloc((size_t)in * out * 4), *c1 = calloc((size_t)N * out, 4), *c2 = calloc((size_t)N * out, 4);
        float *at = malloc((size_t)in * N * 4), *c3 = calloc((size_t)N * out, 4);
        fill(b, (size_t)in * out);
        for (int n = 0; n < N; n++)
            for (int k = 0; k < in; k++) at[(size_t)k * N + n] = x[(size_t)n * in + k];
        gemm_nn(c1, out, x, in, b, out, N, in, out);
        gemm_tn(c3, out, at, N, b, out, N, in, out);
        for (int n = 0; n < N; n++)
            for (int j = 0; j < out; j++) {
                float acc = 0;
                for (int k = 0; k < in; k++) acc += x[(size_t)n * in + k] * b[(size_t)k * out + j];
                c2[(size_t)n * out + j] = acc;
            }
        for (int i = 0; i < N * out; i++) {
            worst_nn = fmax(worst_nn, fabs(c1[i] - c2[i]));
            worst_tn = fmax(worst_tn, fabs(c3[i] - c2[i]));
        }
        /* the threaded forward / backward products are the serial ones, bit for bit */
        float *y1 = malloc((size_t)N * out * 4), *y2 = malloc((size_t)N * out * 4);
        float *wt = malloc((size_t)in * out * 4);
        fill(wt, (size_t)in * out);
        matmul_forward_t(y1, x, wt, N, out, in);
        matmul_forward_t_par(y2, x, wt, N, out, in, two);
        same_threads &= memcmp(y1, y2, (size_t)N * out * 4) == 0;
        float *e1 = calloc((size_t)N * in, 4), *e2 = calloc((size_t)N * in, 4);
        matmul_backward(e1, dy, d2, N, out, in);
        matmul_backward_par(e2, dy, d2, N, out, in, three);
        same_threads &= memcmp(e1, e2, (size_t)N * in * 4) == 0;
        free(dy), free(x), free(d1), free(d2), free(d3), free(b), free(c1), free(c2), free(at), free(c3);
        free(y1), free(y2), free(wt), free(e1), free(e2);
    }
    printf("weight-gradient product vs reference: %.2g (per term); gemm_nn %.2g, gemm_tn %.2g; "
           "1, 2 and 3 threads bit-identical: %s (%d cores)\n",
           worst_w, worst_nn, worst_tn, same_threads ? "yes" : "NO", pool_default_threads());
    pool_free(two);
    pool_free(three);
    CHECK(worst_w < 1e-6 && worst_nn == 0 && worst_tn == 0);
    CHECK(same_threads);
}

/* every tensor's gradient against central differences */
static void gradient_check(const mem_buf *vocab, int tied) {
    enum { D = 16, F = 24, NL = 2, NH = 4, NKV = 2, B = 2, T = 8 };
    doze_full_params p = doze_full_default_params();
    p.dim = D, p.hidden_dim = F, p.n_layers = NL, p.n_heads = NH, p.n_kv_heads = NKV;
    p.context = T, p.batch = B, p.tied = tied, p.init_std = 0.35f, p.seed = 5 + (uint64_t)tied;
    p.threads = 1;
    doze_full_trainer *t = NULL;
    doze_error e;
    doze_full_params inf = p; /* not finite: refused, not trained into NaN weights */
    inf.lr = INFINITY;
    CHECK(doze_full_trainer_new(&inf, vocab->data, vocab->len, &t, &e) == DOZE_ERR_INVALID_ARGUMENT && t == NULL);
    CHECK(doze_full_trainer_new(&p, vocab->data, vocab->len, &t, &e) == DOZE_OK);
    if (!t) return;
    const int V = doze_full_trainer_vocab_size(t);
    int32_t win[B * (T + 1)];
    double loss;
    float *g = grad_check_start(t, uni, win, B, T, &loss);
    grad_tally r = {0, 0, 0, 0, 0};
    int kinds = 0;
    for (int i = 0; i < full_n_tensors(t); i++) {
        const full_tensor *x = full_tensor_at(t, i);
        size_t n = (size_t)(x->ne[0] * x->ne[1]);
        int any = 0;
        for (int k = 0; k < 8; k++) {
            size_t j = (size_t)(uni() * n);
            if (i == 0) /* embedding: a row of a token in the windows (other rows: exactly 0) */
                j = (size_t)win[1 + (int)(uni() * T)] * D + (size_t)(uni() * D);
            any |= grad_check_entry(t, win, g, x, j, NULL, NULL, &r);
        }
        kinds += any;
    }
    /* rows of tokens absent from the windows get no gradient */
    int absent_zero = 1;
    for (int tok = 0; tok < V; tok++) {
        int used = 0;
        for (int b = 0; b < B; b++)
            for (int s = 0; s < T; s++) used |= win[b * (T + 1) + s] == tok;
        if (!used && (tied ? 0 : 1))
            for (int i = 0; i < D; i++) absent_zero &= g[(size_t)tok * D + i] == 0.0f;
    }
    printf("gradient check (%s classifier): %d entries of all %d tensors (%d with gradients >= 1e-3), "
           "loss %.4f; worst relative error %.3g, worst absolute below 1e-3: %.2g\n",
           tied ? "tied" : "untied", r.checked, full_n_tensors(t), kinds, loss, r.worst, r.worst_abs);
    CHECK(r.bad == 0);
    CHECK(kinds == full_n_tensors(t));
    CHECK(full_n_tensors(t) == 2 + 9 * NL + !tied);
    CHECK(absent_zero);
    free(g);
    doze_full_trainer_free(t);
}

typedef struct {
    int32_t *ids;
    size_t n, cap;
    const doze_tokenizer *tok;
} stream;

static void test_training(void) {
    /* a vocabulary trained on the text, the text as one stream of stories */
    doze_error e;
    mem_buf vocab = story_vocab();
    int32_t ids[1024];
    const int n = story_stream(&vocab, 1, ids, 1024);
    enum { T = 16, B = 4 };
    doze_full_params p = doze_full_default_params();
    p.dim = 32, p.hidden_dim = 64, p.n_layers = 2, p.n_heads = 4, p.n_kv_heads = 2;
    p.context = T, p.batch = B, p.total_steps = 40, p.warmup_steps = 4, p.lr = 1e-2f, p.min_lr = 1e-3f;
    p.seed = 3;
    p.threads = 2;
    int32_t win[B * (T + 1)];

    /* uninterrupted: 40 steps */
    doze_full_trainer *a = NULL;
    CHECK(doze_full_trainer_new(&p, vocab.data, vocab.len, &a, &e) == DOZE_OK);
    if (!a) return;
    double first = 0, last = 0;
    int32_t all[B * (T + 1)];
    for (int i = 0; i < B * (T + 1); i++) all[i] = ids[(i % (T + 1)) + (i / (T + 1)) * 7];
    double before;
    CHECK(doze_full_trainer_eval(a, all, B, &before, &e) == DOZE_OK);
    for (int s = 0; s < 40; s++) {
        doze_full_stats st;
        CHECK(doze_full_trainer_sample(a, ids, (size_t)n, win, &e) == DOZE_OK);
        CHECK(doze_full_trainer_step(a, win, &st, &e) == DOZE_OK);
        if (s == 0) first = st.loss;
        last = st.loss;
    }
    double after;
    CHECK(doze_full_trainer_eval(a, all, B, &after, &e) == DOZE_OK);
    printf("training: %d tokens of text, 40 steps of %d x %d: batch loss %.3f -> %.3f, fixed windows "
           "%.3f -> %.3f\n", n, B, T, first, last, before, after);
    CHECK(last < 0.7 * first);
    CHECK(after < 0.7 * before);

    /* interrupted at 17, saved, resumed from the checkpoint: same bits */
    doze_full_trainer *b = NULL;
    CHECK(doze_full_trainer_new(&p, vocab.data, vocab.len, &b, &e) == DOZE_OK);
    for (int s = 0; s < 17 && b; s++) {
        CHECK(doze_full_trainer_sample(b, ids, (size_t)n, win, &e) == DOZE_OK);
        CHECK(doze_full_trainer_step(b, win, NULL, &e) == DOZE_OK);
    }
    mem_buf ck = save(b, 1);
    doze_full_trainer_free(b);
    b = NULL;
    CHECK(ck.data && doze_full_trainer_resume(ck.data, ck.len, &b, &e) == DOZE_OK);
    if (b) {
        CHECK(doze_full_trainer_steps_done(b) == 17);
        for (int s = 17; s < 40; s++) {
            CHECK(doze_full_trainer_sample(b, ids, (size_t)n, win, &e) == DOZE_OK);
            CHECK(doze_full_trainer_step(b, win, NULL, &e) == DOZE_OK);
        }
        int same = full_n_params(a) == full_n_params(b) &&
                   memcmp(full_params(a), full_params(b), full_n_params(a) * sizeof(float)) == 0;
        printf("resume from a checkpoint at step 17 (%zu bytes): parameters after 40 steps %s the "
               "uninterrupted run's\n", ck.len, same ? "equal (bit for bit)" : "DIFFER from");
        CHECK(same);
    }

    /* one thread gives the same bits as two */
    {
        doze_full_params p1 = p;
        p1.threads = 1;
        doze_full_trainer *c = NULL;
        CHECK(doze_full_trainer_new(&p1, vocab.data, vocab.len, &c, &e) == DOZE_OK);
        for (int s = 0; s < 40 && c; s++) {
            CHECK(doze_full_trainer_sample(c, ids, (size_t)n, win, &e) == DOZE_OK);
            CHECK(doze_full_trainer_step(c, win, NULL, &e) == DOZE_OK);
        }
        if (c) CHECK(memcmp(full_params(a), full_params(c), full_n_params(a) * sizeof(float)) == 0);
        doze_full_trainer_free(c);
    }

    /* the saved model in the runtime: the same mean loss on the fixed windows */
    mem_buf mf = save(a, 0);
    doze_model *m = NULL;
    CHECK(mf.data && doze_model_load_memory(mf.data, mf.len, NULL, &m, &e) == DOZE_OK);
    mem_buf mc = ck; /* the checkpoint (extra tensors) loads as a model too */
    doze_model *m2 = NULL;
    CHECK(doze_model_load_memory(mc.data, mc.len, NULL, &m2, &e) == DOZE_OK);
    doze_model_free(m2);
    if (m) {
        const doze_model_info *info = doze_model_get_info(m);
        CHECK(info->context_length == T && info->tied_output == 1 && info->dim == 32);
        doze_session *s = doze_session_new(m, &e);
        double nll = 0;
        for (int b2 = 0; b2 < B; b2++) {
            doze_session_reset(s);
            for (int i = 0; i < T; i++) {
                CHECK(doze_session_step(s, all[b2 * (T + 1) + i], &e) == DOZE_OK);
                const float *lg = doze_session_logits(s);
                double mx = lg[0], sum = 0;
                for (int v = 1; v < info->vocab_size; v++) mx = fmax(mx, lg[v]);
                for (int v = 0; v < info->vocab_size; v++) sum += exp(lg[v] - mx);
                nll += log(sum) - (lg[all[b2 * (T + 1) + i + 1]] - mx);
            }
        }
        nll /= B * T;
        printf("the saved model in the runtime: mean nll %.6f, trainer %.6f\n", nll, after);
        CHECK(fabs(nll - after) < 1e-4 * fmax(1.0, after));
        doze_session_free(s);
        doze_model_free(m);
    }
    free(mf.data);
    free(ck.data);
    doze_full_trainer_free(a);
    doze_full_trainer_free(b);
    free(vocab.data);
}


/* the committed default model (models/): loads with its gates, and scores
 * the first dev story about as `doze ppl` reported when it was made */
static void test_default_model(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/models/doze-stories.gguf", DOZE_SOURCE_DIR);
    size_t n = 0, gn = 0;
    unsigned char *bytes = test_read_file(path, &n);
    if (!bytes) {
        printf("skipping the default model: %s is absent\n", path);
        return;
    }
    doze_model *m = NULL;
    doze_error e;
    CHECK(doze_model_load_memory(bytes, n, NULL, &m, &e) == DOZE_OK);
    free(bytes);
    if (!m) return;
    const doze_model_info *info = doze_model_get_info(m);
    CHECK(info->dim == 128 && info->n_layers == 4 && info->vocab_size == 1024 && info->tied_output == 1 &&
          info->context_length == 256);
    snprintf(path, sizeof path, "%s/models/doze-stories.gates.gguf", DOZE_SOURCE_DIR);
    unsigned char *gb = test_read_file(path, &gn);
    doze_gates *g = NULL;
    CHECK(gb && doze_gates_load(m, gb, gn, &g, &e) == DOZE_OK);
    free(gb);
    const char *story = "Once upon a time, there was a little girl named Lily. She loved to play "
                        "outside in the sun. One day, she saw a big red ball in the park.";
    int32_t ids[128];
    int got = 0;
    CHECK(doze_tokenize(m, story, strlen(story), 1, ids, 128, &got, &e) == DOZE_OK && got <= 128);
    doze_session *s = doze_session_new(m, &e);
    double nll = 0;
    for (int i = 0; s && i + 1 < got; i++) {
        CHECK(doze_session_step(s, ids[i], &e) == DOZE_OK);
        const float *lg = doze_session_logits(s);
        double mx = lg[0], sum = 0;
        for (int v = 1; v < info->vocab_size; v++) mx = fmax(mx, lg[v]);
        for (int v = 0; v < info->vocab_size; v++) sum += exp(lg[v] - mx);
        nll += log(sum) - (lg[ids[i + 1]] - mx);
    }
    nll /= got - 1;
    printf("default model: %d tokens of a plain story, mean nll %.3f (%.2f bytes per token)\n", got - 1,
           nll, (double)strlen(story) / (got - 1));
    CHECK(nll < 2.0);
    doze_session_free(s);
    doze_gates_free(g);
    doze_model_free(m);
}

int main(void) {
    test_products();
    /* any GGUF with a tokenizer serves as the vocabulary: a fixture model's (50 pieces) */
    mem_buf f = fixture_gguf(8, 16, 1, 2, 2, 50, 16, 1, DOZE_TYPE_F32);
    CHECK(f.data != NULL);
    if (f.data) {
        gradient_check(&f, 1);
        gradient_check(&f, 0);
    }
    free(f.data);
    test_training();
    test_default_model();
    return test_finish("test_train_full");
}
