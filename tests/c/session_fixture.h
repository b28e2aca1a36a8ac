/* Text and budget checks the gate trainers' tests share: a text sampled
 * from a model itself (so any seeded model has something to train on) and
 * the mean compute a session spends under gates at a budget. */
#ifndef DOZE_TEST_SESSION_FIXTURE_H
#define DOZE_TEST_SESSION_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>

#include "doze.h"
#include "gates.h"
#include "test_util.h"

/* a made-up text: stories of the model's own samples, as pieces */
static inline char *sampled_text(doze_model *m, int vocab, int stories, int len, size_t *n_out, doze_error *e) {
    size_t cap = (size_t)stories * len * 64 + 64, n = 0;
    char *text = malloc(cap);
    doze_sampler_params sp = doze_sampler_default_params();
    sp.seed = 5;
    doze_sampler *smp = doze_sampler_new(&sp, vocab, e);
    for (int s = 0; s < stories; s++) {
        doze_session *ss = doze_session_new(m, e);
        int tok = 1, prev = -1;
        for (int i = 0; i < len; i++) {
            doze_session_step(ss, tok, e);
            prev = tok;
            tok = doze_sampler_sample(smp, doze_session_logits(ss));
            if (tok < 3) tok = 3 + (tok + i) % (vocab - 3); /* no control tokens in the text */
            size_t got = 0;
            if (doze_token_to_piece(m, prev, tok, text + n, cap - n - 32, &got, e) == DOZE_OK) n += got;
        }
        doze_session_free(ss);
        n += (size_t)snprintf(text + n, cap - n, "\n<|endoftext|>\n");
    }
    for (size_t i = 0; i < n; i++) /* byte pieces: keep the text ASCII (valid UTF-8) */
        if ((unsigned char)text[i] >= 0x80 || ((unsigned char)text[i] < 0x20 && text[i] != '\n'))
            text[i] = (char)('a' + (unsigned char)text[i] % 26);
    doze_sampler_free(smp);
    *n_out = n;
    return text;
}

/* mean compute of the gated tokens of a session at budget b */
static inline double session_compute(doze_model *m, doze_gates *g, float b, const int32_t *tokens, int n, doze_error *e) {
    doze_session *s = doze_session_new(m, e);
    CHECK(doze_session_set_gates(s, g, e) == DOZE_OK && doze_session_set_budget(s, b, e) == DOZE_OK);
    double sum = 0;
    int cnt = 0;
    for (int i = 0; i < n; i++) {
        CHECK(doze_session_step(s, tokens[i], e) == DOZE_OK);
        if (i >= g->params.protect_tokens) sum += doze_session_compute(s), cnt++;
    }
    doze_session_free(s);
    return cnt ? sum / cnt : 0;
}

#endif
