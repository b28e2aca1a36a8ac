/* Shared by the full-trainer tests (test_train_full, test_train_moe): the
 * two-story text they train on, its vocabulary and token stream, a trainer
 * written to memory, and one entry of the gradient check against central
 * differences. */
#ifndef DOZE_TRAIN_FIXTURE_H
#define DOZE_TRAIN_FIXTURE_H

#include <stdint.h>

#include "tokenizer.h"
#include "train_full.h"
#include "vocab.h"
#include "model_fixture.h"
#include "test_util.h"

static const char story_text[] =
    "Once upon a time, there was a little cat named Tom. Tom liked to play in the sun.\n"
    "One day, Tom saw a big red ball. He ran to the ball and pushed it. The ball rolled away.\n"
    "Tom was happy. He played with the ball all day. Then he went home and slept.\n"
    "<|endoftext|>\n"
    "Once upon a time, there was a girl named Lily. Lily liked to sing in the park.\n"
    "One day, Lily saw a little bird. The bird was sad. Lily sang a song for the bird.\n"
    "The bird was happy. It sang with Lily all day. Then they went home.\n"
    "<|endoftext|>\n";

static inline int mem_sink(void *ctx, const void *p, size_t n) { return mem_write(ctx, p, n); }

/* t written as an F32 model, with its optimizer state when with_state (a
 * checkpoint); data NULL on failure */
static inline mem_buf save(const doze_full_trainer *t, int with_state) {
    mem_buf m = {NULL, 0, 0};
    doze_error e;
    if (doze_full_trainer_save(t, "test", DOZE_TYPE_F32, with_state, mem_sink, &m, &e) != DOZE_OK) {
        fprintf(stderr, "save: %s\n", e.message);
        free(m.data);
        m.data = NULL;
    }
    return m;
}

/* a vocabulary of 300 pieces trained on story_text, as a vocab-only GGUF */
static inline mem_buf story_vocab(void) {
    vocab_spec vs;
    doze_error e;
    CHECK(vocab_train(story_text, sizeof story_text - 1, 300, &vs, &e) == DOZE_OK);
    mem_buf vocab = {NULL, 0, 0};
    CHECK(vocab_write(&vs, mem_sink, &vocab, &e) == DOZE_OK);
    vocab_spec_free(&vs);
    return vocab;
}

/* the two stories, reps times over, as one stream of at most cap ids (each
 * story encoded on its own, without its separator line); returns the count */
static inline int story_stream(const mem_buf *vocab, int reps, int32_t *ids, int cap) {
    int n = 0;
    gguf_header h;
    doze_tokenizer *tok = NULL;
    doze_error e;
    CHECK(gguf_parse_header(vocab->data, vocab->len, &h, &e) == DOZE_OK);
    CHECK(tokenizer_from_gguf(&h, &tok, &e) == DOZE_OK);
    for (int rep = 0; rep < reps; rep++) {
        const char *s = story_text;
        for (int k = 0; k < 2; k++) {
            const char *end = strstr(s, "\n<|endoftext|>");
            int got = 0;
            CHECK(tokenizer_encode(tok, s, (size_t)(end - s), 1, ids + n, cap - n, &got, &e) == DOZE_OK);
            n += got;
            s = end + strlen("\n<|endoftext|>\n");
        }
    }
    tokenizer_free(tok);
    gguf_header_free(&h);
    return n;
}

/* A gradient check's start on t: the norms drawn away from 1 (so that
 * their gradients are generic), B windows of T + 1 tokens (BOS, then ids 3
 * to 14), and the loss on them into *loss. uni is the test's seeded draw in
 * [0, 1), taken in that order. Returns a copy of the gradients (the nudged
 * losses overwrite the trainer's); the caller frees it. */
static inline float *grad_check_start(doze_full_trainer *t, double (*uni)(void), int32_t *win, int B, int T,
                                      double *loss) {
    float *w = full_params(t);
    for (int i = 0; i < full_n_tensors(t); i++) {
        const full_tensor *x = full_tensor_at(t, i);
        if (x->n_dims == 1)
            for (uint64_t j = 0; j < x->ne[0]; j++) w[x->off + j] = (float)(0.6 + 0.8 * uni());
    }
    full_params_changed(t);
    for (int i = 0; i < B * (T + 1); i++) win[i] = i % (T + 1) == 0 ? 1 : 3 + (int)(uni() * 12);
    doze_error e;
    CHECK(full_loss_grad(t, win, 1, loss, &e) == DOZE_OK);
    const size_t np = full_n_params(t);
    float *g = malloc(np * sizeof *g);
    memcpy(g, full_grads(t), np * sizeof *g);
    return g;
}

/* what a gradient check has seen so far */
typedef struct {
    int checked, bad, skipped;
    double worst;     /* relative error where the larger of the two is >= 1e-3 */
    double worst_abs; /* absolute error where it is smaller */
} grad_tally;

/* Entry j of tensor x: its gradient in g (saved after full_loss_grad on
 * win) against the central difference of the loss, step 1e-2. kept, when
 * given, is asked after each nudged loss whether what the gradient treats
 * as a constant (a mixture's expert selection) stayed as it was; where it
 * did not, the entry is skipped. The parameter is restored either way.
 * Returns whether the entry's gradient is large enough to count (>= 1e-3). */
static inline int grad_check_entry(doze_full_trainer *t, const int32_t *win, const float *g,
                                   const full_tensor *x, size_t j,
                                   int (*kept)(const doze_full_trainer *t, void *ctx), void *ctx,
                                   grad_tally *r) {
    doze_error e;
    float *pw = &full_params(t)[x->off + j], keep = *pw;
    const float h = 1e-2f;
    double lp, lm;
    int same = 1;
    *pw = keep + h;
    full_params_changed(t);
    full_loss_grad(t, win, 0, &lp, &e);
    if (kept) same &= kept(t, ctx);
    *pw = keep - h;
    full_params_changed(t);
    full_loss_grad(t, win, 0, &lm, &e);
    if (kept) same &= kept(t, ctx);
    *pw = keep;
    full_params_changed(t);
    if (!same) {
        r->skipped++;
        return 0;
    }
    double fd = (lp - lm) / (2 * h), an = g[x->off + j];
    double err_abs = fabs(fd - an), scale = fmax(fabs(fd), fabs(an));
    if (scale >= 1e-3) r->worst = fmax(r->worst, err_abs / scale);
    else r->worst_abs = fmax(r->worst_abs, err_abs);
    if (err_abs > 2e-2 * scale + 1e-4) {
        r->bad++;
        printf("  %s[%zu]: backprop %.6g, finite difference %.6g\n", x->name, j, an, fd);
    }
    r->checked++;
    return scale >= 1e-3;
}

#endif
