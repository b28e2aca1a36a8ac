/* The sampler behind `doze generate`'s options: llama.cpp's penalty formula
 * (greedy picks that only the exact formula gives), the window of
 * repeat_last_n accepted tokens, reset, and the stages' order (top-k, then
 * top-p and min-p on untempered probabilities, temperature last) checked by
 * the frequencies of 40000 seeded draws against an independent double-
 * precision computation of the distribution; parameter errors name the one
 * broken field; the default settings draw what they always drew. */
#include <stdint.h>

#include "doze.h"
#include "sampler.h"
#include "test_util.h"

static doze_sampler *make(doze_sampler_params p, int vocab) {
    doze_error e;
    doze_sampler *s = doze_sampler_new(&p, vocab, &e);
    CHECK_MSG(s != NULL, "%s", e.message);
    return s;
}

static void accept_all(doze_sampler *s, const int *t, int n) {
    for (int i = 0; i < n; i++) CHECK(doze_sampler_accept(s, t[i], NULL) == DOZE_OK);
}

/* llama_sampler_penalties_apply, on one logit, in double */
static double penalized(double x, int count, double rep, double freq, double pres) {
    if (count == 0) return x;
    x = x <= 0 ? x * rep : x / rep;
    return x - count * freq - (count > 0) * pres;
}

static void penalties(void) {
    doze_sampler_params p = doze_sampler_default_params();
    p.temperature = 0.0f; /* greedy on the penalized logits */
    p.repeat_penalty = 1.5f;
    /* token 0: 3.0 / 1.5 = 2.0 < 2.5: token 1 wins once 0 is in the history */
    const float l1[4] = {3.0f, 2.5f, -1.0f, 0.0f};
    doze_sampler *s = make(p, 4);
    CHECK(doze_sampler_sample(s, l1) == 0);
    accept_all(s, (const int[]){0}, 1);
    CHECK(doze_sampler_sample(s, l1) == 1);
    doze_sampler_reset(s);
    CHECK(doze_sampler_sample(s, l1) == 0);
    doze_sampler_free(s);

    /* a negative logit is multiplied, not divided (dividing would raise it):
     * -0.4 * 1.5 = -0.6 < -0.5, so token 1 wins; -0.4 / 1.5 = -0.27 would not */
    const float l2[3] = {-0.4f, -0.5f, -3.0f};
    s = make(p, 3);
    accept_all(s, (const int[]){0}, 1);
    CHECK(doze_sampler_sample(s, l2) == 1);
    doze_sampler_free(s);

    /* frequency counts occurrences, presence counts once: token 0 seen 3
     * times, token 1 once; logits 2.0 and 1.0, freq 0.3, pres 0.2 (no repeat
     * penalty): 2.0 - 0.9 - 0.2 = 0.9 vs 1.0 - 0.3 - 0.2 = 0.5 vs 0.8 */
    p.repeat_penalty = 1.0f;
    p.frequency_penalty = 0.3f;
    p.presence_penalty = 0.2f;
    const float l3[3] = {2.0f, 1.0f, 0.8f};
    s = make(p, 3);
    accept_all(s, (const int[]){0, 1, 0, 0}, 4);
    CHECK(doze_sampler_sample(s, l3) == 0);
    accept_all(s, (const int[]){0}, 1); /* 4 times: 2.0 - 1.2 - 0.2 = 0.6 < 0.8 */
    CHECK(doze_sampler_sample(s, l3) == 2);
    doze_sampler_free(s);
    CHECK(penalized(2.0, 4, 1.0, 0.3, 0.2) < 0.8 && penalized(2.0, 3, 1.0, 0.3, 0.2) > 0.8);

    /* the window: with repeat_last_n 2, a token three accepts back is forgotten */
    p = doze_sampler_default_params();
    p.temperature = 0.0f;
    p.repeat_penalty = 2.0f;
    p.repeat_last_n = 2;
    s = make(p, 4);
    accept_all(s, (const int[]){0, 3, 3}, 3);
    CHECK(doze_sampler_sample(s, l1) == 0); /* 0 left the window */
    accept_all(s, (const int[]){0}, 1);
    CHECK(doze_sampler_sample(s, l1) == 1);
    /* 0 turns the penalties off */
    p.repeat_last_n = 0;
    doze_sampler_free(s);
    s = make(p, 4);
    accept_all(s, (const int[]){0, 0}, 2);
    CHECK(doze_sampler_sample(s, l1) == 0);
    doze_error e;
    CHECK(doze_sampler_accept(s, 4, &e) == DOZE_ERR_TOKEN_RANGE && strstr(e.message, "token 4"));
    CHECK(doze_sampler_accept(s, -1, &e) == DOZE_ERR_TOKEN_RANGE);
    doze_sampler_free(s);
}

#define V 6
#define DRAWS 40000

/* The distribution the stages should give, in double: top-k, then top-p
 * and min-p on softmax(logits) (untempered), then softmax(logits / T) over
 * the survivors. logits are distinct and sorted falling. */
static void expected(const double *l, int k, double top_p, double min_p, double t, double *q) {
    int kept = k > 0 && k < V ? k : V;
    double z = 0, cum = 0;
    for (int i = 0; i < kept; i++) z += exp(l[i] - l[0]);
    for (int i = 0; i < kept; i++) {
        cum += exp(l[i] - l[0]) / z;
        if (cum >= top_p) {
            kept = i + 1;
            break;
        }
    }
    int m = 1;
    while (m < kept && exp(l[m] - l[0]) >= min_p) m++;
    kept = m;
    double zt = 0;
    for (int i = 0; i < V; i++) q[i] = i < kept ? exp((l[i] - l[0]) / t) : 0.0;
    for (int i = 0; i < V; i++) zt += q[i];
    for (int i = 0; i < V; i++) q[i] /= zt;
}

static void order(void) {
    /* probabilities 0.4 0.25 0.15 0.1 0.06 0.04 */
    const double prob[V] = {0.4, 0.25, 0.15, 0.1, 0.06, 0.04};
    double ld[V];
    float lf[V];
    for (int i = 0; i < V; i++) ld[i] = log(prob[i]), lf[i] = (float)ld[i];
    for (int i = 0; i < V; i++) ld[i] = lf[i]; /* the floats the sampler sees */
    static const struct {
        int k;
        float top_p, min_p, t;
        int survivors;
    } cases[] = {
        {0, 1.0f, 0.0f, 1.0f, 6},  /* plain */
        {0, 1.0f, 0.0f, 2.5f, 6},  /* flattened */
        {3, 1.0f, 0.0f, 1.0f, 3},  /* top-k */
        {0, 0.7f, 0.0f, 1.0f, 3},  /* top-p: 0.4 0.65 0.8 */
        {0, 0.7f, 0.0f, 4.0f, 3},  /* top-p before temperature: a hot T keeps the same 3 */
        {0, 1.0f, 0.3f, 3.0f, 3},  /* min-p: p >= 0.12, before temperature */
        {4, 0.85f, 0.0f, 1.0f, 3}, /* top-p renormalized over top-k's 4 (0.44 0.71 0.88): 3, not 4 */
        {0, 0.95f, 0.3f, 0.7f, 3}, /* top-p keeps 5, min-p (>= 0.12) 3 of them */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        doze_sampler_params p = doze_sampler_default_params();
        p.top_k = cases[c].k;
        p.top_p = cases[c].top_p;
        p.min_p = cases[c].min_p;
        p.temperature = cases[c].t;
        p.seed = 1000 + c;
        doze_sampler *s = make(p, V);
        int count[V] = {0};
        for (int d = 0; d < DRAWS; d++) {
            int id = doze_sampler_sample(s, lf);
            CHECK(id >= 0 && id < V);
            if (id >= 0 && id < V) count[id]++;
        }
        doze_sampler_free(s);
        double q[V];
        expected(ld, p.top_k, p.top_p, p.min_p, p.temperature, q);
        int survivors = 0;
        for (int i = 0; i < V; i++) {
            survivors += q[i] > 0;
            /* 4.5 standard deviations of a binomial count */
            double sd = sqrt(DRAWS * q[i] * (1 - q[i])), want = DRAWS * q[i];
            CHECK_MSG(fabs(count[i] - want) <= 4.5 * sd + (q[i] == 0 ? 0 : 1),
                      "case %zu token %d: %d draws, expected %.0f", c, i, count[i], want);
        }
        CHECK_MSG(survivors == cases[c].survivors, "case %zu: %d survivors in the reference", c, survivors);
    }
}

static void errors(void) {
    static const struct {
        const char *field;
        doze_sampler_params p;
    } bad[] = {
        {"temperature", {-1.0f, 0, 1.0f, 1, 0.0f, 1.0f, 64, 0.0f, 0.0f}},
        {"top_k", {1.0f, -2, 1.0f, 1, 0.0f, 1.0f, 64, 0.0f, 0.0f}},
        {"top_p", {1.0f, 0, -0.5f, 1, 0.0f, 1.0f, 64, 0.0f, 0.0f}},
        {"min_p", {1.0f, 0, 1.0f, 1, 1.5f, 1.0f, 64, 0.0f, 0.0f}},
        {"repeat_penalty", {1.0f, 0, 1.0f, 1, 0.0f, 0.0f, 64, 0.0f, 0.0f}},
        {"repeat_last_n", {1.0f, 0, 1.0f, 1, 0.0f, 1.0f, -1, 0.0f, 0.0f}},
        {"frequency_penalty", {1.0f, 0, 1.0f, 1, 0.0f, 1.0f, 64, INFINITY, 0.0f}},
        {"presence_penalty", {1.0f, 0, 1.0f, 1, 0.0f, 1.0f, 64, 0.0f, NAN}},
    };
    static const char *const fields[] = {"temperature", "top_k", "top_p", "min_p", "repeat_penalty",
                                         "repeat_last_n", "frequency_penalty", "presence_penalty"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        doze_error e;
        CHECK(doze_sampler_params_check(&bad[i].p, &e) == DOZE_ERR_INVALID_ARGUMENT);
        CHECK(doze_sampler_new(&bad[i].p, 8, &e) == NULL && e.code == DOZE_ERR_INVALID_ARGUMENT);
        CHECK_MSG(strstr(e.message, bad[i].field) != NULL, "%s: %s", bad[i].field, e.message);
        for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++)
            if (strcmp(fields[f], bad[i].field) != 0 && !strstr(bad[i].field, fields[f]))
                CHECK_MSG(strstr(e.message, fields[f]) == NULL, "%s names %s too: %s", bad[i].field, fields[f],
                          e.message);
    }
    doze_sampler_params ok = doze_sampler_default_params();
    CHECK(doze_sampler_params_check(&ok, NULL) == DOZE_OK);
    CHECK(ok.repeat_penalty == 1.0f && ok.repeat_last_n == 64 && ok.min_p == 0.0f);
}

/* With the defaults (temperature 1, nothing else) the draws are the ones
 * the sampler always made: the inverse CDF over the whole vocabulary in id
 * order with xorshift64* from seed 42. */
static void defaults_unchanged(void) {
    const float l[V] = {0.1f, 1.2f, -0.3f, 0.7f, 0.0f, 2.0f};
    doze_sampler *s = make(doze_sampler_default_params(), V);
    uint64_t rng = 42;
    double p[V], z = 0;
    for (int i = 0; i < V; i++) z += p[i] = exp(l[i] - 2.0);
    for (int d = 0; d < 200; d++) {
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        double u = (double)((uint32_t)((rng * 0x2545F4914F6CDD1Dull) >> 32) >> 8) / 16777216.0;
        double cdf = 0;
        int want = V - 1;
        for (int i = 0; i < V; i++) {
            cdf += p[i] / z;
            if (u < cdf) {
                want = i;
                break;
            }
        }
        int got = doze_sampler_sample(s, l);
        /* float vs double CDFs can only disagree right at a boundary */
        CHECK_MSG(got == want || fabs(u - cdf) < 1e-5, "draw %d: %d, want %d", d, got, want);
    }
    doze_sampler_free(s);
}

/* A positive temperature so small that logit / T overflows a float (any T
 * below 1/FLT_MAX, or logits of 50 and more at T = 1e-37) samples its limit
 * T -> 0: the largest logit, in every path (whole vocabulary, filtered,
 * speculation's distribution). Before, the scaled logits were +-inf (NaN
 * for a logit of 0), the softmax NaN, and the draw fell through to the last
 * candidate: the least likely token. */
static void tiny_temperature(void) {
    static const struct {
        float t, l[4];
    } cases[] = {
        {1e-39f, {1.0f, 3.0f, 2.0f, -1.0f}},    /* 1/T is inf */
        {1e-39f, {0.0f, 3.0f, 2.0f, -1.0f}},    /* 0 * inf is NaN */
        {1e-37f, {50.0f, 60.0f, 55.0f, -1.0f}}, /* 1/T finite, the products overflow */
        {1e-39f, {-5.0f, -1.0f, -2.0f, -3.0f}}, /* every scaled logit -inf */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int filtered = 0; filtered < 3; filtered++) {
            doze_sampler_params p = doze_sampler_default_params();
            p.temperature = cases[c].t;
            p.seed = 5 + c;
            if (filtered == 1) p.top_k = 3;
            if (filtered == 2) p.min_p = 0.5f;
            doze_sampler *s = make(p, 4);
            int wrong = 0;
            for (int d = 0; d < 50; d++) wrong += doze_sampler_sample(s, cases[c].l) != 1;
            float dist[4];
            sampler_distribution(s, cases[c].l, dist);
            CHECK_MSG(wrong == 0, "T %g case %zu filter %d: %d of 50 draws not the largest logit", (double)p.temperature,
                      c, filtered, wrong);
            CHECK_MSG(dist[1] == 1.0f && dist[0] == 0.0f && dist[2] == 0.0f && dist[3] == 0.0f,
                      "T %g case %zu filter %d: the distribution is not the argmax's", (double)p.temperature, c,
                      filtered);
            doze_sampler_free(s);
        }
}

int main(void) {
    tiny_temperature();
    penalties();
    order();
    errors();
    defaults_unchanged();
    return test_finish("test_cli_sampler");
}
