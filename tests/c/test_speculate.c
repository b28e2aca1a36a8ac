/* Speculation changes nothing (DESIGN.md 9): KV rollback equals never having
 * run the forgotten tokens; greedy speculative decoding is dense greedy
 * decoding token for token with the same logits bits and the same cache;
 * speculative sampling draws from the dense distribution (chi-square over
 * many seeds against the exact joint law of two tokens); with penalties
 * (whose history grows with each emitted token) both stay the dense run's;
 * the controller
 * picks what its figures say is fastest. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "model_fixture.h"
#include "sampler.h"
#include "session.h"
#include "speculate.h"
#include "test_util.h"

/* K/V rows of positions < n and every validity mark of two sessions agree bit for bit */
static int same_cache(const doze_session *a, const doze_session *b, int n) {
    const doze_model_info *c = doze_model_get_info(session_model(a));
    const kv_cache *ka = session_kv(a), *kb = session_kv(b);
    const size_t kv_dim = (size_t)c->n_kv_heads * (size_t)c->head_dim;
    for (int l = 0; l < c->n_layers; l++) {
        const size_t row = (size_t)l * (size_t)ka->ctx;
        if (memcmp(ka->valid + row, kb->valid + row, (size_t)ka->ctx)) return 0;
        for (int p = 0; p < n; p++) {
            if (!ka->valid[row + p]) continue;
            const size_t at = (row + (size_t)p) * kv_dim;
            if (memcmp(ka->key + at, kb->key + at, kv_dim * sizeof(float)) ||
                memcmp(ka->value + at, kb->value + at, kv_dim * sizeof(float)))
                return 0;
        }
    }
    return 1;
}

static doze_model *load(const mem_buf *f, int ctx) {
    doze_model_params mp = doze_model_default_params();
    mp.context_length = ctx;
    doze_model *m = NULL;
    doze_error e;
    if (doze_model_load_memory(f->data, f->len, &mp, &m, &e) != DOZE_OK) fprintf(stderr, "load: %s\n", e.message);
    return m;
}

/* Gates fitted on n tokens of the model's own sampled text. */
static doze_gates *own_gates(doze_model *m, int n, uint64_t seed) {
    doze_error e;
    const int V = doze_model_get_info(m)->vocab_size;
    int32_t *text = malloc((size_t)n * sizeof *text);
    doze_sampler_params sp = doze_sampler_default_params();
    sp.seed = seed;
    doze_sampler *smp = doze_sampler_new(&sp, V, &e);
    doze_session *s = doze_session_new(m, &e);
    text[0] = doze_model_get_info(m)->bos_id >= 0 ? doze_model_get_info(m)->bos_id : 1;
    for (int i = 0; i + 1 < n; i++) {
        doze_session_step(s, text[i], &e);
        text[i + 1] = doze_sampler_sample(smp, doze_session_logits(s));
    }
    doze_gates *g = NULL;
    if (doze_gates_calibrate(m, text, n, NULL, &g, &e) != DOZE_OK) fprintf(stderr, "gates: %s\n", e.message);
    doze_session_free(s);
    doze_sampler_free(smp);
    free(text);
    return g;
}

/* ---- 1. rollback ------------------------------------------------------------------ */

static void check_truncate(doze_model *m, const char *label) {
    doze_error e;
    const doze_model_info *c = doze_model_get_info(m);
    const int V = c->vocab_size, nl = c->n_layers, nh = c->n_heads;
    doze_session *x = doze_session_new(m, &e), *y = doze_session_new(m, &e);
    int32_t first[10], second[4];
    for (int i = 0; i < 10; i++) first[i] = 3 + (i * 37) % (V - 3);
    for (int i = 0; i < 4; i++) second[i] = 3 + (i * 91 + 5) % (V - 3);
    /* forced masks: layer 1 skipped at odd positions, head 0 off at position 2,
     * so that validity marks differ by position */
    uint8_t layers[16], heads[64];
    doze_mask mk = {layers, heads, NULL, NULL};
    for (int p = 0; p < 10; p++) {
        for (int l = 0; l < nl; l++) layers[l] = !(l == 1 && p % 2);
        for (int i = 0; i < nl * nh; i++) heads[i] = !(p == 2 && i == 0);
        CHECK(doze_session_step_masked(x, first[p], &mk, &e) == DOZE_OK);
        if (p < 6) CHECK(doze_session_step_masked(y, first[p], &mk, &e) == DOZE_OK);
    }
    /* bad positions are refused and change nothing */
    CHECK(doze_session_truncate(x, 11, &e) == DOZE_ERR_INVALID_ARGUMENT);
    CHECK(doze_session_truncate(x, -1, &e) == DOZE_ERR_INVALID_ARGUMENT);
    CHECK(doze_session_pos(x) == 10);
    CHECK(doze_session_truncate(x, 10, &e) == DOZE_OK && doze_session_pos(x) == 10);
    CHECK(doze_session_truncate(x, 6, &e) == DOZE_OK);
    CHECK(doze_session_pos(x) == 6);
    int zeros = 1;
    for (int i = 0; i < V; i++) zeros &= doze_session_logits(x)[i] == 0.0f;
    CHECK_MSG(zeros, "%s: logits of a forgotten step are cleared", label);
    CHECK_MSG(same_cache(x, y, 6), "%s: truncated cache = never run", label);
    int same = 1;
    for (int i = 0; i < 4; i++) {
        for (int l = 0; l < nl; l++) layers[l] = !(l == 0 && i == 1);
        memset(heads, 1, (size_t)nl * nh);
        doze_session_step_masked(x, second[i], &mk, &e);
        doze_session_step_masked(y, second[i], &mk, &e);
        same &= !memcmp(doze_session_logits(x), doze_session_logits(y), (size_t)V * sizeof(float));
    }
    /* and a dense batched continuation */
    doze_session_prefill(x, first, 5, &e);
    doze_session_prefill(y, first, 5, &e);
    same &= !memcmp(doze_session_logits(x), doze_session_logits(y), (size_t)V * sizeof(float));
    CHECK_MSG(same, "%s: continuing after a truncate gives the logits of never having run the tokens", label);
    CHECK_MSG(same_cache(x, y, 15), "%s: ... and the same cache", label);
    CHECK(doze_session_truncate(x, 0, &e) == DOZE_OK && doze_session_pos(x) == 0);
    printf("%s: truncate then continue == never run (logits, K/V, marks)\n", label);
    doze_session_free(x);
    doze_session_free(y);
}

/* ---- 2. greedy exactness --------------------------------------------------------------- */

/* Dense greedy reference: n_prompt prompt tokens, then argmaxes up to n
 * positions; tokens(n + 1), logits(n, V): row p after running position p. */
static void dense_run(doze_model *m, const int32_t *prompt, int n_prompt, int n, int32_t *tokens, float *logits) {
    doze_error e;
    const int V = doze_model_get_info(m)->vocab_size;
    doze_session *s = doze_session_new(m, &e);
    memcpy(tokens, prompt, (size_t)n_prompt * sizeof *tokens);
    for (int p = 0; p < n; p++) {
        doze_session_step(s, tokens[p], &e);
        memcpy(logits + (size_t)p * V, doze_session_logits(s), (size_t)V * sizeof(float));
        int best = 0;
        for (int i = 1; i < V; i++)
            if (logits[(size_t)p * V + i] > logits[(size_t)p * V + best]) best = i;
        if (p + 1 >= n_prompt) tokens[p + 1] = best;
    }
    doze_session_free(s);
}

/* Speculative greedy from the same prompt must emit tokens[n_prompt ..] with
 * the same logits bits and end with the dense cache. Returns the acceptance. */
static float check_greedy(doze_model *m, doze_gates *g, const int32_t *prompt, int n_prompt, int n,
                          const doze_spec_params *sp, const char *label) {
    doze_error e;
    const int V = doze_model_get_info(m)->vocab_size;
    int32_t *ref = malloc((size_t)(n + 1) * sizeof *ref);
    float *ref_logits = malloc((size_t)n * V * sizeof *ref_logits);
    dense_run(m, prompt, n_prompt, n, ref, ref_logits);

    doze_session *s = doze_session_new(m, &e), *d = doze_session_new(m, &e);
    CHECK(doze_session_set_gates(s, g, &e) == DOZE_OK);
    doze_sampler_params smp_p = doze_sampler_default_params();
    smp_p.temperature = 0.0f;
    doze_sampler *smp = doze_sampler_new(&smp_p, V, &e);
    doze_speculator *spec = doze_speculator_new(s, sp, &e);
    CHECK(spec != NULL);
    if (n_prompt > 1) CHECK(doze_session_prefill(s, prompt, n_prompt - 1, &e) == DOZE_OK);
    int token = prompt[n_prompt - 1], pos = n_prompt - 1, mism = -1, logit_mism = -1, drafted = 0, acc = 0, steps = 0;
    int ks[DOZE_SPEC_MAX_K + 1] = {0};
    while (spec && pos < n && mism < 0) {
        doze_spec_result r;
        if (doze_speculative_step(spec, smp, token, &r, &e) != DOZE_OK) {
            fprintf(stderr, "%s: step: %s\n", label, e.message);
            test_failures++;
            break;
        }
        steps++;
        drafted += r.k;
        acc += r.accepted;
        ks[r.k]++;
        CHECK(r.n == r.accepted + 1 && r.n >= 1 && r.n <= r.k + 1);
        CHECK(doze_session_pos(s) == pos + r.n);
        for (int i = 0; i < r.n && pos < n; i++, pos++) {
            if (r.tokens[i] != ref[pos + 1] && mism < 0) mism = pos + 1;
            if (memcmp(doze_speculator_logits(spec, i), ref_logits + (size_t)pos * V, (size_t)V * sizeof(float)) &&
                logit_mism < 0)
                logit_mism = pos;
            CHECK((r.flags[i] == (DOZE_SPEC_DRAFTED | DOZE_SPEC_ACCEPTED)) == (i < r.accepted));
        }
        token = r.tokens[r.n - 1];
        /* the session's logits: the dense ones of the position now last */
        if (pos <= n && memcmp(doze_session_logits(s), doze_speculator_logits(spec, r.n - 1), (size_t)V * sizeof(float)))
            logit_mism = pos;
    }
    CHECK_MSG(mism < 0, "%s: speculative greedy token %d differs from dense", label, mism);
    CHECK_MSG(logit_mism < 0, "%s: logits of position %d differ from dense", label, logit_mism);
    /* the kept cache is the dense one: a dense session over the same tokens */
    const int held = doze_session_pos(s);
    for (int p = 0; p < held; p++) doze_session_step(d, ref[p], &e);
    CHECK_MSG(same_cache(s, d, held), "%s: the kept cache is the dense one", label);
    const float rate = drafted ? (float)acc / (float)drafted : 0.0f;
    printf("%s: %d tokens identical to dense greedy in %d steps; drafted %d, accepted %d (%.2f); k used:", label,
           n - n_prompt + 1, steps, drafted, acc, (double)rate);
    for (int k = 0; k <= DOZE_SPEC_MAX_K; k++)
        if (ks[k]) printf(" %dx%d", k, ks[k]);
    printf("\n");
    doze_speculator_free(spec);
    doze_sampler_free(smp);
    doze_session_free(s);
    doze_session_free(d);
    free(ref);
    free(ref_logits);
    return rate;
}

/* Greedy with penalties (repeat, frequency, presence): the penalties are a
 * function of the tokens before each position, so the draft's d_i and the
 * verify's p_i must see the history with d_1 .. d_{i-1} in it, as a dense
 * run does. The caller hands every emitted token to doze_sampler_accept, as
 * in a plain loop. (Before, the step looked at the history of the step's
 * start only: tokens repeated inside a step went unpenalized and the output
 * left the dense one.) */
static void check_greedy_penalized(doze_model *m, doze_gates *g, const int32_t *prompt, int n_prompt, int n,
                                   const doze_spec_params *sp, const char *label) {
    doze_error e;
    const int V = doze_model_get_info(m)->vocab_size;
    doze_sampler_params pp = doze_sampler_default_params();
    pp.temperature = 0.0f;
    pp.repeat_penalty = 1.3f;
    pp.frequency_penalty = 0.4f;
    pp.presence_penalty = 0.2f;
    pp.repeat_last_n = 16;
    /* the dense reference: step, sample, accept */
    int32_t *ref = malloc((size_t)(n + 1) * sizeof *ref), *plain = malloc((size_t)(n + 1) * sizeof *plain);
    float *plain_logits = malloc((size_t)n * V * sizeof *plain_logits);
    dense_run(m, prompt, n_prompt, n, plain, plain_logits);
    doze_session *d = doze_session_new(m, &e);
    doze_sampler *ds = doze_sampler_new(&pp, V, &e);
    memcpy(ref, prompt, (size_t)n_prompt * sizeof *ref);
    for (int i = 0; i < n_prompt; i++) CHECK(doze_sampler_accept(ds, prompt[i], &e) == DOZE_OK);
    for (int p = 0; p < n; p++) {
        CHECK(doze_session_step(d, ref[p], &e) == DOZE_OK);
        if (p + 1 < n_prompt) continue;
        ref[p + 1] = doze_sampler_sample(ds, doze_session_logits(d));
        CHECK(doze_sampler_accept(ds, ref[p + 1], &e) == DOZE_OK);
    }
    int differ = 0; /* the penalties act: the reference leaves plain greedy */
    for (int p = n_prompt; p <= n; p++) differ += ref[p] != plain[p];
    CHECK_MSG(differ > 0, "%s: the penalties change nothing here", label);

    doze_session *s = doze_session_new(m, &e);
    CHECK(doze_session_set_gates(s, g, &e) == DOZE_OK);
    doze_sampler *smp = doze_sampler_new(&pp, V, &e);
    for (int i = 0; i < n_prompt; i++) CHECK(doze_sampler_accept(smp, prompt[i], &e) == DOZE_OK);
    doze_speculator *spec = doze_speculator_new(s, sp, &e);
    CHECK(spec != NULL);
    if (n_prompt > 1) CHECK(doze_session_prefill(s, prompt, n_prompt - 1, &e) == DOZE_OK);
    int token = prompt[n_prompt - 1], pos = n_prompt - 1, mism = -1, drafted = 0, acc = 0;
    while (spec && pos < n && mism < 0) {
        doze_spec_result r;
        if (doze_speculative_step(spec, smp, token, &r, &e) != DOZE_OK) {
            fprintf(stderr, "%s: step: %s\n", label, e.message);
            test_failures++;
            break;
        }
        drafted += r.k;
        acc += r.accepted;
        for (int i = 0; i < r.n && pos < n; i++, pos++) {
            if (r.tokens[i] != ref[pos + 1] && mism < 0) mism = pos + 1;
            CHECK(doze_sampler_accept(smp, r.tokens[i], &e) == DOZE_OK);
        }
        token = r.tokens[r.n - 1];
    }
    CHECK_MSG(mism < 0, "%s: speculative greedy with penalties: token %d differs from dense", label, mism);
    CHECK_MSG(acc > 0, "%s: some drafts were accepted (%d of %d)", label, acc, drafted);
    if (mism < 0)
        printf("%s: %d tokens identical to dense greedy with penalties (%d differ from plain greedy); drafted %d, "
               "accepted %d\n", label, n - n_prompt + 1, differ, drafted, acc);
    doze_speculator_free(spec);
    doze_sampler_free(smp);
    doze_sampler_free(ds);
    doze_session_free(s);
    doze_session_free(d);
    free(ref);
    free(plain);
    free(plain_logits);
}

/* ---- 3. sampling follows the dense distribution ------------------------------------------ */

/* Upper quantile of chi-square with df degrees of freedom (Wilson-Hilferty), z = 3.29 (p = 0.0005). */
static double chi2_crit(int df) {
    const double a = 2.0 / (9.0 * df), z = 3.29;
    return df * pow(1.0 - a + z * sqrt(a), 3.0);
}

/* On a real model (the default one, with its gates): its draft at a low
 * budget differs from the whole model often enough to run both the accept
 * and the reject path many times. */
/* penalized: with repeat, frequency and presence penalties, the history
 * being the prompt, then each emitted token (handed to doze_sampler_accept
 * by the caller), so the second token's law depends on the first. */
static void check_sampling(doze_model *m, doze_gates *g, const int32_t *prompt, int np, int penalized) {
    doze_error e;
    const int V = doze_model_get_info(m)->vocab_size;
    const char *label = penalized ? "sampling with penalties" : "sampling";
    doze_sampler_params spp = doze_sampler_default_params();
    spp.temperature = 1.0f;
    spp.top_k = 6;
    spp.seed = 1;
    if (penalized) {
        /* negative penalties (a bonus of 8 for a token seen once): the first
         * token then often comes again as the second, so a second draw whose
         * penalties missed the first (as before speculation kept its history)
         * leaves the dense law far behind (total variation about 0.3 here;
         * positive ones barely move this model's confident second token) */
        spp.frequency_penalty = -4.0f;
        spp.presence_penalty = -4.0f;
    }
    /* the exact law of the first two sampled tokens after the prompt */
    doze_sampler *dist_s = doze_sampler_new(&spp, V, &e);
    for (int i = 0; i < np; i++) doze_sampler_accept(dist_s, prompt[i], &e);
    float *p0 = malloc((size_t)V * sizeof *p0), *p1 = malloc((size_t)V * sizeof *p1);
    double *joint = calloc((size_t)V * V, sizeof *joint);
    doze_session *s = doze_session_new(m, &e);
    doze_session_prefill(s, prompt, np, &e);
    sampler_distribution(dist_s, doze_session_logits(s), p0);
    for (int a = 0; a < V; a++) {
        if (p0[a] <= 0.0f) continue;
        doze_session_step(s, a, &e);
        doze_sampler_accept(dist_s, a, &e);
        sampler_distribution(dist_s, doze_session_logits(s), p1);
        for (int b = 0; b < V; b++) joint[(size_t)a * V + b] = (double)p0[a] * p1[b];
        doze_session_truncate(s, np, &e);
        doze_sampler_reset(dist_s);
        for (int i = 0; i < np; i++) doze_sampler_accept(dist_s, prompt[i], &e);
    }
    doze_session_free(s);

    /* speculative runs, one seed each: a fresh session, the prompt, steps until two tokens */
    enum { TRIALS = 4000 };
    int *count = calloc((size_t)V * V, sizeof *count);
    long drafted = 0, accepted = 0;
    doze_spec_params sp = doze_spec_default_params();
    sp.k = 3;
    sp.draft_budget = 0.5f;
    sp.timed = 0;
    for (int trial = 0; trial < TRIALS; trial++) {
        spp.seed = 1000 + (uint64_t)trial;
        doze_sampler *smp = doze_sampler_new(&spp, V, &e);
        for (int i = 0; i < np; i++) doze_sampler_accept(smp, prompt[i], &e);
        doze_session *t = doze_session_new(m, &e);
        doze_session_set_gates(t, g, &e);
        doze_speculator *spec = doze_speculator_new(t, &sp, &e);
        doze_session_prefill(t, prompt, np - 1, &e);
        int got[2], n = 0, token = prompt[np - 1];
        while (n < 2) {
            doze_spec_result r;
            if (doze_speculative_step(spec, smp, token, &r, &e) != DOZE_OK) break;
            drafted += r.k;
            accepted += r.accepted;
            for (int i = 0; i < r.n && n < 2; i++) {
                got[n++] = r.tokens[i];
                doze_sampler_accept(smp, r.tokens[i], &e);
            }
            token = r.tokens[r.n - 1];
        }
        if (n == 2) count[(size_t)got[0] * V + got[1]]++;
        doze_speculator_free(spec);
        doze_session_free(t);
        doze_sampler_free(smp);
    }
    /* chi-square over the cells expected >= 5 times, the rest pooled */
    double chi = 0.0, rest_e = 0.0, rest_o = 0.0, outside = 0.0;
    int cells = 0;
    for (size_t i = 0; i < (size_t)V * V; i++) {
        const double ex = joint[i] * TRIALS;
        if (joint[i] == 0.0) {
            outside += count[i];
            continue;
        }
        if (ex < 5.0) {
            rest_e += ex;
            rest_o += count[i];
            continue;
        }
        chi += (count[i] - ex) * (count[i] - ex) / ex;
        cells++;
    }
    if (rest_e > 0) {
        chi += (rest_o - rest_e) * (rest_o - rest_e) / rest_e;
        cells++;
    }
    const double rate = drafted ? (double)accepted / (double)drafted : 0.0;
    printf("%s: %d seeds, %d cells: chi-square %.1f (critical %.1f at p = 0.0005), acceptance %.2f\n", label, TRIALS,
           cells, chi, chi2_crit(cells - 1), rate);
    CHECK_MSG(outside == 0, "%s: %g pairs outside the dense support", label, outside);
    CHECK_MSG(chi < chi2_crit(cells - 1), "%s: the emitted pairs do not follow the dense law", label);
    CHECK_MSG(rate > 0.05 && rate < 0.95, "%s: both the accept and the reject path ran (rate %.2f)", label, rate);

    /* the test can fail: pairs drawn from the draft alone do not pass it */
    {
        doze_session *q = doze_session_new(m, &e);
        doze_session_set_gates(q, g, &e);
        doze_session_set_budget(q, 0.5f, &e);
        int *qc = calloc((size_t)V * V, sizeof *qc);
        for (int trial = 0; trial < TRIALS; trial++) {
            spp.seed = 1000 + (uint64_t)trial;
            doze_sampler *smp = doze_sampler_new(&spp, V, &e);
            for (int i = 0; i < np; i++) doze_sampler_accept(smp, prompt[i], &e);
            doze_session_truncate(q, 0, &e);
            doze_session_prefill(q, prompt, np - 1, &e);
            doze_session_step(q, prompt[np - 1], &e);
            int a = doze_sampler_sample(smp, doze_session_logits(q));
            doze_sampler_accept(smp, a, &e);
            doze_session_step(q, a, &e);
            int b = doze_sampler_sample(smp, doze_session_logits(q));
            qc[(size_t)a * V + b]++;
            doze_sampler_free(smp);
        }
        double qchi = 0.0, qrest_e = 0.0, qrest_o = 0.0, qout = 0.0;
        for (size_t i = 0; i < (size_t)V * V; i++) {
            const double ex = joint[i] * TRIALS;
            if (joint[i] == 0.0) {
                qout += qc[i];
                continue;
            }
            if (ex < 5.0) {
                qrest_e += ex;
                qrest_o += qc[i];
                continue;
            }
            qchi += (qc[i] - ex) * (qc[i] - ex) / ex;
        }
        if (qrest_e > 0) qchi += (qrest_o - qrest_e) * (qrest_o - qrest_e) / qrest_e;
        printf("%s: the draft alone: chi-square %.1f, %g pairs outside the dense support\n", label, qchi, qout);
        CHECK_MSG(qchi > chi2_crit(cells - 1) || qout > 0, "%s: the test cannot tell the draft from dense", label);
        free(qc);
        doze_session_free(q);
    }
    free(count);
    free(joint);
    free(p0);
    free(p1);
    doze_sampler_free(dist_s);
}

/* ---- the default model ------------------------------------------------------------------- */

static void check_default_model(void) {
    size_t mn = 0, gn = 0;
    uint8_t *mb = test_read_file(DOZE_SOURCE_DIR "/models/doze-stories.gguf", &mn);
    uint8_t *gb = test_read_file(DOZE_SOURCE_DIR "/models/doze-stories.gates.gguf", &gn);
    doze_error e;
    doze_model *m = NULL;
    doze_gates *g = NULL;
    doze_model_params mp = doze_model_default_params();
    CHECK(mb && gb);
    if (mb && gb) {
        CHECK(doze_model_load_memory(mb, mn, &mp, &m, &e) == DOZE_OK);
        if (m) CHECK(doze_gates_load(m, gb, gn, &g, &e) == DOZE_OK);
    }
    free(mb);
    free(gb);
    if (m && g) {
        int n_prompt = 0;
        int32_t prompt[16];
        CHECK(doze_tokenize(m, "Once upon a time", 16, 1, prompt, 16, &n_prompt, &e) == DOZE_OK);
        doze_spec_params sp = doze_spec_default_params();
        sp.timed = 0;
        check_greedy(m, g, prompt, n_prompt, 200, &sp, "doze-stories greedy, adaptive");
        sp.k = 4;
        sp.draft_budget = 0.5f;
        check_greedy_penalized(m, g, prompt, n_prompt, 200, &sp, "doze-stories greedy with penalties, k 4 b 0.5");
        sp = doze_spec_default_params();
        sp.timed = 0;
        CHECK(n_prompt >= 3);
        /* a prompt whose next words vary */
        CHECK(doze_tokenize(m, "Lily and Tom went to the", 24, 1, prompt, 16, &n_prompt, &e) == DOZE_OK);
        check_sampling(m, g, prompt, n_prompt, 0);
        check_sampling(m, g, prompt, n_prompt, 1);
    }
    doze_gates_free(g);
    doze_model_free(m);
}

/* ---- 4. the controller ------------------------------------------------------------------- */

static void check_controller(void) {
    spec_controller c;
    int k;
    float b;
    /* every draft accepted, drafts cost b, verifies 1 + 0.1 (n - 1): the
     * longest draft at the lowest budget pays */
    spec_controller_init(&c, 0, 0.0f);
    for (int i = 0; i < 200; i++) {
        spec_controller_choose(&c, DOZE_SPEC_MAX_K, &k, &b);
        spec_controller_update(&c, k, b, k, b, 1.0 + 0.1 * k);
    }
    c.steps = 0; /* not an exploration turn */
    spec_controller_choose(&c, DOZE_SPEC_MAX_K, &k, &b);
    printf("controller: all accepted, drafts cost b: k %d, budget %.1f\n", k, (double)b);
    CHECK(k == DOZE_SPEC_MAX_K && b < 0.35f);
    /* acceptance 1 at 0.8 but 0 below, drafts cost b / 2: the draft moves to 0.8 */
    spec_controller_init(&c, 0, 0.0f);
    for (int i = 0; i < 200; i++) {
        spec_controller_choose(&c, DOZE_SPEC_MAX_K, &k, &b);
        spec_controller_update(&c, k, b, b > 0.75f ? k : 0, 0.5 * b, 1.0 + 0.1 * k);
    }
    c.steps = 0;
    spec_controller_choose(&c, DOZE_SPEC_MAX_K, &k, &b);
    printf("controller: only b 0.8 accepted: k %d, budget %.1f\n", k, (double)b);
    CHECK(b > 0.75f && k >= 1);
    /* nothing accepted: no draft, plain dense steps */
    spec_controller_init(&c, 0, 0.0f);
    for (int i = 0; i < 200; i++) {
        spec_controller_choose(&c, DOZE_SPEC_MAX_K, &k, &b);
        spec_controller_update(&c, k, b, 0, b, 1.0 + 0.1 * k);
    }
    c.steps = 0;
    spec_controller_choose(&c, DOZE_SPEC_MAX_K, &k, &b);
    printf("controller: nothing accepted: k %d\n", k);
    CHECK(k == 0);
    /* fixed choices are kept, and k fits the room left */
    spec_controller_init(&c, 3, 0.45f);
    spec_controller_choose(&c, DOZE_SPEC_MAX_K, &k, &b);
    CHECK(k == 3 && b == 0.45f);
    spec_controller_choose(&c, 2, &k, &b);
    CHECK(k == 2);
}

/* ---- stories260K ------------------------------------------------------------------------- */

static void check_stories(void) {
    char p0[512], p1[512];
    const char *ckpt = test_shared_path(p0, sizeof p0, "models/stories260K.bin");
    const char *tok = test_shared_path(p1, sizeof p1, "models/tok512.bin");
    if (!test_file_exists(ckpt) || !test_file_exists(tok)) {
        printf("stories260K: SKIP: reference data not found in ../shared\n");
        return;
    }
    size_t cn = 0, tn = 0;
    uint8_t *cb = test_read_file(ckpt, &cn), *tb = test_read_file(tok, &tn);
    gguf_builder gb;
    doze_error e;
    mem_buf f = {NULL, 0, 0};
    CHECK(gguf_builder_init(&gb, &e) == DOZE_OK);
    CHECK(convert_llama2c(cb, cn, tb, tn, DOZE_TYPE_F32, "stories260K", &gb, &e) == DOZE_OK);
    CHECK(gguf_writer_write(gb.w, mem_write, &f, &e) == DOZE_OK);
    gguf_builder_free(&gb);
    free(cb);
    free(tb);
    doze_model *m = load(&f, 256);
    free(f.data);
    if (!m) return;
    doze_gates *g = own_gates(m, 256, 7);
    int n_prompt = 0;
    int32_t prompt[16];
    CHECK(doze_tokenize(m, "Once upon a time", 16, 1, prompt, 16, &n_prompt, &e) == DOZE_OK);
    doze_spec_params sp = doze_spec_default_params();
    sp.timed = 0;
    check_greedy(m, g, prompt, n_prompt, 256, &sp, "stories260K greedy, adaptive");
    sp.k = 4;
    sp.draft_budget = 0.5f;
    check_greedy(m, g, prompt, n_prompt, 200, &sp, "stories260K greedy, k 4 b 0.5");
    doze_gates_free(g);
    doze_model_free(m);
}

/* Misuse the API must refuse, not run on: a sampler made for another
 * vocabulary size (its draft distributions are vocab_size long: it wrote
 * past the speculator's buffer), a NULL sampler; gates of another model of
 * the same shape on a session (its file would be refused too). */
static void check_misuse(doze_model *m, doze_gates *g, doze_model *other) {
    doze_error e;
    const int V = doze_model_get_info(m)->vocab_size;
    doze_session *s = doze_session_new(m, &e);
    CHECK(doze_session_set_gates(s, g, &e) == DOZE_OK);
    doze_spec_params sp = doze_spec_default_params();
    sp.k = 4;
    doze_speculator *spec = doze_speculator_new(s, &sp, &e);
    doze_sampler_params smp = doze_sampler_default_params();
    smp.temperature = 1.0f;
    doze_sampler *wide = doze_sampler_new(&smp, 4 * V, &e);
    doze_spec_result r;
    CHECK(spec && wide);
    CHECK(doze_speculative_step(spec, wide, 1, &r, &e) == DOZE_ERR_INVALID_ARGUMENT);
    CHECK_MSG(strstr(e.message, "sampler is for") != NULL, "%s", e.message);
    CHECK(doze_sampler_accept(NULL, 1, &e) == DOZE_ERR_INVALID_ARGUMENT);
    CHECK(doze_sampler_sample(NULL, doze_session_logits(s)) == -1 && doze_sampler_sample(wide, NULL) == -1);
    CHECK(doze_type_from_name(NULL) == -1);
    doze_sampler_free(wide);
    doze_speculator_free(spec);
    doze_session_free(s);
    /* the same shape, other weights: refused by its fingerprint */
    doze_session *so = doze_session_new(other, &e);
    CHECK(doze_session_set_gates(so, g, &e) == DOZE_ERR_BAD_FORMAT);
    CHECK_MSG(strstr(e.message, "another model") != NULL, "%s", e.message);
    doze_session_free(so);
}

int main(void) {
    static const int types[3] = {DOZE_TYPE_F32, DOZE_TYPE_Q8_0, DOZE_TYPE_F16};
    for (int t = 0; t < 3; t++) {
        mem_buf f = fixture_gguf(64, 128, 3, 4, 2, 300, 128, 21 + (uint64_t)t, types[t]);
        CHECK(f.data != NULL);
        doze_model *m = f.data ? load(&f, 128) : NULL;
        free(f.data);
        if (!m) continue;
        char label[96];
        snprintf(label, sizeof label, "random %s", doze_type_name(types[t]));
        check_truncate(m, label);
        doze_gates *g = own_gates(m, 128, 3);
        CHECK(g != NULL);
        if (t == 0 && g) {
            mem_buf fo = fixture_gguf(64, 128, 3, 4, 2, 300, 128, 99, types[t]);
            doze_model *other = fo.data ? load(&fo, 128) : NULL;
            free(fo.data);
            CHECK(other != NULL);
            if (other) check_misuse(m, g, other);
            doze_model_free(other);
        }
        const int32_t prompt[4] = {1, 17, 99, 250};
        doze_spec_params sp = doze_spec_default_params();
        sp.k = 3;
        sp.draft_budget = 0.4f;
        snprintf(label, sizeof label, "random %s greedy, k 3 b 0.4", doze_type_name(types[t]));
        check_greedy(m, g, prompt, 4, 127, &sp, label);
        sp = doze_spec_default_params();
        snprintf(label, sizeof label, "random %s greedy, adaptive timed", doze_type_name(types[t]));
        check_greedy(m, g, prompt, 4, 127, &sp, label);
        /* a one-token prompt: the first step drafts from BOS */
        sp.k = 8;
        sp.draft_budget = 0.3f;
        snprintf(label, sizeof label, "random %s greedy, k 8 b 0.3 from BOS", doze_type_name(types[t]));
        check_greedy(m, g, prompt, 1, 127, &sp, label);
        if (t == 0) { /* (the penalties change this f32 model's greedy text; not the others') */
            sp.k = 4;
            sp.draft_budget = 0.5f;
            snprintf(label, sizeof label, "random %s greedy with penalties, k 4 b 0.5", doze_type_name(types[t]));
            check_greedy_penalized(m, g, prompt, 4, 127, &sp, label);
            sp.k = 8;
            sp.draft_budget = 0.3f;
        }
        /* errors: no gates, bad params */
        doze_error e;
        doze_session *s = doze_session_new(m, &e);
        doze_speculator *spec = doze_speculator_new(s, &sp, &e);
        doze_sampler *smp = doze_sampler_new(NULL, 300, &e);
        doze_spec_result r;
        CHECK(doze_speculative_step(spec, smp, 1, &r, &e) == DOZE_ERR_STATE);
        CHECK(doze_session_pos(s) == 0);
        CHECK(doze_speculative_step(spec, smp, 300, &r, &e) == DOZE_ERR_TOKEN_RANGE);
        sp.k = 9;
        CHECK(doze_speculator_new(s, &sp, &e) == NULL && e.code == DOZE_ERR_INVALID_ARGUMENT);
        sp.k = 2;
        sp.draft_budget = 1.0f;
        CHECK(doze_speculator_new(s, &sp, &e) == NULL && e.code == DOZE_ERR_INVALID_ARGUMENT);
        doze_sampler_free(smp);
        doze_speculator_free(spec);
        doze_session_free(s);
        doze_gates_free(g);
        doze_model_free(m);
    }
    check_controller();
    check_default_model();
    check_stories();
    return test_finish("test_speculate");
}
