/* A few trainer steps on a model loaded at a given thread count, with what
 * they produced copied out: the trainers' tests compare these across thread
 * counts, where the results must be the same to the bit. */
#ifndef DOZE_TEST_THREADS_FIXTURE_H
#define DOZE_TEST_THREADS_FIXTURE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "doze.h"
#include "gates.h"
#include "train.h"
#include "train_joint.h"
#include "model_fixture.h"

enum { TRAINED_MAX_STEPS = 4 };

typedef struct {
    float loss[TRAINED_MAX_STEPS], compute[TRAINED_MAX_STEPS]; /* per step */
    float *router, *bias; /* [layers][rows][dim], [layers][rows] */
    float *weights;       /* the joint trainer's weights; NULL for the gate trainer */
    size_t n_router, n_bias, n_weights;
} trained_state;

/* windows of xorshift tokens in [3, vocab), each opening with BOS (1) */
static inline void random_windows(int32_t *tokens, int n, int window, int vocab) {
    uint64_t r = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < n; i++) {
        r ^= r >> 12, r ^= r << 25, r ^= r >> 27;
        tokens[i] = i % window == 0 ? 1 : 3 + (int)((r * 0x2545F4914F6CDD1Dull >> 33) % (uint64_t)(vocab - 3));
    }
}

static inline float *copy_floats(const float *src, size_t n) {
    float *dst = malloc(n * sizeof(float));
    if (dst) memcpy(dst, src, n * sizeof(float));
    return dst;
}

/* loads f at `threads` threads (context_length 0: the model's own),
 * calibrates gates on the
 * first calib_tokens of the batch, runs `steps` trainer steps on one batch of
 * random windows; 1 on success, 0 with the error printed */
static inline int train_at_threads(const mem_buf *f, int threads, int context_length, const doze_train_params *p,
                                   int calib_tokens, int steps, trained_state *o) {
    memset(o, 0, sizeof *o);
    if (steps > TRAINED_MAX_STEPS) return 0;
    doze_model_params mp = doze_model_default_params();
    mp.threads = threads;
    mp.context_length = context_length;
    doze_model *m = NULL;
    doze_gates *g = NULL;
    doze_trainer *t = NULL;
    doze_error e = {0};
    const int n = p->batch * p->context;
    int32_t *tokens = malloc((size_t)n * sizeof *tokens);
    int ok = tokens && doze_model_load_memory(f->data, f->len, &mp, &m, &e) == DOZE_OK;
    if (ok) random_windows(tokens, n, p->context, doze_model_get_info(m)->vocab_size);
    ok = ok && doze_gates_calibrate(m, tokens, calib_tokens, NULL, &g, &e) == DOZE_OK;
    ok = ok && doze_trainer_new(m, g, p, &t, &e) == DOZE_OK;
    for (int i = 0; ok && i < steps; i++) {
        doze_train_stats st;
        ok = doze_trainer_step(t, tokens, &st, &e) == DOZE_OK;
        o->loss[i] = st.loss;
        o->compute[i] = st.achieved_compute;
    }
    if (ok) {
        o->n_router = (size_t)g->n_layers * gates_rows(g) * g->dim;
        o->n_bias = (size_t)g->n_layers * gates_rows(g);
        o->router = copy_floats(g->router, o->n_router);
        o->bias = copy_floats(g->bias, o->n_bias);
        ok = o->router && o->bias;
        if (ok && p->joint) {
            joint_weights *jw = trainer_joint(t);
            o->n_weights = joint_n_params(jw);
            o->weights = copy_floats(joint_params(jw), o->n_weights);
            ok = o->weights != NULL;
        }
    }
    if (!ok) fprintf(stderr, "train at %d threads: %s\n", threads, e.message);
    doze_trainer_free(t);
    doze_gates_free(g);
    doze_model_free(m);
    free(tokens);
    return ok;
}

/* the same losses, computes, routers, biases and weights, bit for bit */
static inline int trained_identical(const trained_state *a, const trained_state *b) {
    return a->router && b->router && a->n_router == b->n_router && a->n_weights == b->n_weights &&
           memcmp(a->loss, b->loss, sizeof a->loss) == 0 && memcmp(a->compute, b->compute, sizeof a->compute) == 0 &&
           memcmp(a->router, b->router, a->n_router * sizeof(float)) == 0 &&
           memcmp(a->bias, b->bias, a->n_bias * sizeof(float)) == 0 &&
           (a->n_weights == 0 || memcmp(a->weights, b->weights, a->n_weights * sizeof(float)) == 0);
}

static inline void trained_state_free(trained_state *o) {
    free(o->router), free(o->bias), free(o->weights);
    memset(o, 0, sizeof *o);
}

#endif
