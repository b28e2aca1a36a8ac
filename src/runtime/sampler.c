/* Sampling the next token: penalties, top-k, top-p, min-p, temperature, in
 * llama.cpp's default order (the stages and their formulas are documented
 * with doze_sampler_params in doze.h), with a documented RNG so that every
 * platform draws the same tokens for a seed.
 *
 * RNG: xorshift64* (Marsaglia/Vigna). state ^= state >> 12; state ^= state
 * << 25; state ^= state >> 27; output (state * 0x2545F4914F6CDD1D) >> 32.
 * A uniform float in [0, 1) is (u32 >> 8) / 2^24. Seed 0 is replaced by
 * 0x9E3779B97F4A7C15 (the state must not be zero).
 * The draw: p = softmax(logits / T) over the candidates (doze_expf, summed
 * in candidate order, then normalized), one draw u, and the first candidate
 * whose cumulative probability exceeds u. Candidates are the whole
 * vocabulary in id order when no filter is on, otherwise the survivors by
 * falling logit (ties by lower id). A temperature so small that logit / T
 * overflows (max scaled logit not finite) draws the largest logit, the
 * limit T -> 0, as greedy does. Every step is plain float arithmetic
 * and doze_expf (no libm), so native and wasm builds pick the same ids. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "kernels.h"
#include "sampler.h"

typedef struct {
    float p; /* the logit while filtering */
    int id;
} prob_index;

struct doze_sampler {
    doze_sampler_params params;
    int vocab_size;
    uint64_t rng;
    float *probs;           /* (vocab_size) */
    prob_index *candidates; /* (vocab_size) */
    /* penalties only (NULL otherwise) */
    float *logits;          /* (vocab_size) the penalized copy of a step's logits */
    int32_t *counts;        /* (vocab_size) occurrences in the history; all zero between calls */
    int32_t *history;       /* (repeat_last_n) ring of the last accepted tokens */
    int n_history, history_at;
    /* sampler_mark's copy of the history (penalties only), for speculation */
    int32_t *saved;         /* (repeat_last_n) */
    int saved_n, saved_at;
};

doze_sampler_params doze_sampler_default_params(void) {
    doze_sampler_params p;
    memset(&p, 0, sizeof p);
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.seed = 42;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.0f;
    p.repeat_last_n = 64; /* llama.cpp's default window */
    p.frequency_penalty = 0.0f;
    p.presence_penalty = 0.0f;
    return p;
}

/* finite, without math.h's isfinite on a float that -ffast-math could fold */
static int is_finite(float x) { return x == x && x - x == 0.0f; }

doze_status doze_sampler_params_check(const doze_sampler_params *p, doze_error *err) {
    if (!p) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "sampler: no params");
    if (!(p->temperature >= 0.0f) || !is_finite(p->temperature))
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "sampler: temperature %g must be >= 0 (0: greedy)",
                         (double)p->temperature);
    if (p->top_k < 0)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "sampler: top_k %d must be >= 0 (0: off)", p->top_k);
    /* 0 keeps the most likely token alone, as llama.cpp reads it */
    if (!(p->top_p >= 0.0f && p->top_p <= 1.0f))
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "sampler: top_p %g must be in [0, 1] (1: off)",
                         (double)p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "sampler: min_p %g must be in [0, 1] (0: off)",
                         (double)p->min_p);
    if (!(p->repeat_penalty > 0.0f) || !is_finite(p->repeat_penalty))
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "sampler: repeat_penalty %g must be > 0 (1: off)",
                         (double)p->repeat_penalty);
    if (p->repeat_last_n < 0)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "sampler: repeat_last_n %d must be >= 0 (0: off)",
                         p->repeat_last_n);
    if (!is_finite(p->frequency_penalty))
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "sampler: frequency_penalty %g must be finite",
                         (double)p->frequency_penalty);
    if (!is_finite(p->presence_penalty))
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "sampler: presence_penalty %g must be finite",
                         (double)p->presence_penalty);
    return DOZE_OK;
}

static int penalties_on(const doze_sampler_params *p) {
    return p->repeat_last_n > 0 &&
           (p->repeat_penalty != 1.0f || p->frequency_penalty != 0.0f || p->presence_penalty != 0.0f);
}

doze_sampler *doze_sampler_new(const doze_sampler_params *p, int vocab_size, doze_error *err) {
    if (vocab_size <= 0) {
        doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "vocab_size %d must be positive", vocab_size);
        return NULL;
    }
    doze_sampler_params params = p ? *p : doze_sampler_default_params();
    if (doze_sampler_params_check(&params, err) != DOZE_OK) return NULL;
    doze_sampler *s = calloc(1, sizeof *s);
    int ok = s != NULL;
    if (ok) {
        s->probs = malloc((size_t)vocab_size * sizeof *s->probs);
        s->candidates = malloc((size_t)vocab_size * sizeof *s->candidates);
        ok = s->probs && s->candidates;
    }
    if (ok && penalties_on(&params)) {
        s->logits = malloc((size_t)vocab_size * sizeof *s->logits);
        s->counts = calloc((size_t)vocab_size, sizeof *s->counts);
        s->history = malloc((size_t)params.repeat_last_n * sizeof *s->history);
        s->saved = malloc((size_t)params.repeat_last_n * sizeof *s->saved);
        ok = s->logits && s->counts && s->history && s->saved;
    }
    if (!ok) {
        doze_sampler_free(s);
        doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for a sampler");
        return NULL;
    }
    s->params = params;
    s->vocab_size = vocab_size;
    s->rng = params.seed ? params.seed : 0x9E3779B97F4A7C15ull;
    return s;
}

void doze_sampler_free(doze_sampler *s) {
    if (!s) return;
    free(s->probs);
    free(s->candidates);
    free(s->logits);
    free(s->counts);
    free(s->history);
    free(s->saved);
    free(s);
}

doze_status doze_sampler_accept(doze_sampler *s, int token, doze_error *err) {
    if (!s) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no sampler");
    if (token < 0 || token >= s->vocab_size)
        return doze_fail(err, DOZE_ERR_TOKEN_RANGE, "sampler: token %d is not in the vocabulary (0..%d)", token,
                         s->vocab_size - 1);
    if (!s->history) return DOZE_OK; /* no penalties: nothing looks at the history */
    const int cap = s->params.repeat_last_n;
    s->history[s->history_at] = token;
    s->history_at = (s->history_at + 1) % cap;
    if (s->n_history < cap) s->n_history++;
    return DOZE_OK;
}

void doze_sampler_reset(doze_sampler *s) {
    if (!s) return;
    s->n_history = 0;
    s->history_at = 0;
}

static uint32_t rng_u32(uint64_t *state) {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (uint32_t)((*state * 0x2545F4914F6CDD1Dull) >> 32);
}

static float rng_f32(uint64_t *state) { return (float)(rng_u32(state) >> 8) / 16777216.0f; }

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* falling logit, then rising id: a total order, so qsort is deterministic */
static int by_logit_desc(const void *a, const void *b) {
    const prob_index *x = a, *y = b;
    if (x->p > y->p) return -1;
    if (x->p < y->p) return 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Stage 1 into s->logits: each token of the history once, with its count
 * (llama_sampler_penalties_apply's formula). (vocab) logits -> s->logits */
static const float *apply_penalties(doze_sampler *s, const float *logits) {
    const doze_sampler_params *p = &s->params;
    memcpy(s->logits, logits, (size_t)s->vocab_size * sizeof *logits);
    for (int i = 0; i < s->n_history; i++) s->counts[s->history[i]]++;
    for (int i = 0; i < s->n_history; i++) {
        const int tok = s->history[i], c = s->counts[tok];
        if (c == 0) continue; /* done already */
        s->counts[tok] = 0;   /* leaves counts all zero for the next call */
        float x = s->logits[tok];
        if (x <= 0.0f) x *= p->repeat_penalty;
        else x /= p->repeat_penalty;
        x -= (float)c * p->frequency_penalty + (float)(c > 0) * p->presence_penalty;
        s->logits[tok] = x;
    }
    return s->logits;
}

/* Stages 2-4 on the sorted candidates; returns how many survive (>= 1). */
static int filter(doze_sampler *s, const float *logits) {
    const doze_sampler_params *p = &s->params;
    const int n = s->vocab_size;
    prob_index *c = s->candidates;
    for (int i = 0; i < n; i++) {
        c[i].p = logits[i];
        c[i].id = i;
    }
    qsort(c, (size_t)n, sizeof *c, by_logit_desc);
    int kept = n;
    if (p->top_k > 0 && p->top_k < kept) kept = p->top_k;
    if (p->top_p < 1.0f) { /* softmax of the survivors' logits, untempered */
        float sum = 0.0f;
        for (int i = 0; i < kept; i++) {
            s->probs[i] = doze_expf(c[i].p - c[0].p);
            sum += s->probs[i];
        }
        float cum = 0.0f;
        for (int i = 0; i < kept; i++) {
            cum += s->probs[i] / sum;
            if (cum >= p->top_p) {
                kept = i + 1;
                break;
            }
        }
    }
    if (p->min_p > 0.0f) { /* p_i >= min_p * p_max, i.e. exp(l_i - l_max) >= min_p */
        int i = 1;
        while (i < kept && doze_expf(c[i].p - c[0].p) >= p->min_p) i++;
        kept = i;
    }
    return kept;
}

/* The distribution a draw comes from (not for greedy samplers): returns 0
 * with s->probs(vocab) in id order when nothing filters, else 1 with the
 * kept candidates sorted in s->candidates[0..*kept) and their
 * probabilities in s->probs[0..*kept). */
static int prepare(doze_sampler *s, const float *logits, int *kept_out) {
    const doze_sampler_params *p = &s->params;
    const int n = s->vocab_size;
    if (s->logits && s->n_history > 0) logits = apply_penalties(s, logits);
    const float inv_t = 1.0f / p->temperature;
    const int filtered = (p->top_k > 0 && p->top_k < n) || p->top_p < 1.0f || p->min_p > 0.0f;
    if (!filtered) { /* the whole vocabulary in id order */
        float max = logits[0] * inv_t;
        for (int i = 1; i < n; i++)
            if (logits[i] * inv_t > max) max = logits[i] * inv_t;
        if (!is_finite(max)) { /* T so small that logit / T overflows: its limit, greedy */
            memset(s->probs, 0, (size_t)n * sizeof *s->probs);
            s->probs[argmax(logits, n)] = 1.0f;
            *kept_out = n;
            return 0;
        }
        float sum = 0.0f;
        for (int i = 0; i < n; i++) {
            s->probs[i] = doze_expf(logits[i] * inv_t - max);
            sum += s->probs[i];
        }
        for (int i = 0; i < n; i++) s->probs[i] /= sum;
        *kept_out = n;
        return 0;
    }
    const int kept = filter(s, logits);
    const prob_index *c = s->candidates;
    const float max = c[0].p * inv_t; /* sorted: the first is the largest */
    if (!is_finite(max)) { /* as above: the largest (lowest id among ties) alone */
        s->probs[0] = 1.0f;
        *kept_out = 1;
        return 1;
    }
    float sum = 0.0f;
    for (int i = 0; i < kept; i++) {
        s->probs[i] = doze_expf(c[i].p * inv_t - max);
        sum += s->probs[i];
    }
    for (int i = 0; i < kept; i++) s->probs[i] /= sum;
    *kept_out = kept;
    return 1;
}

int doze_sampler_sample(doze_sampler *s, const float *logits) {
    if (!s || !logits) return -1;
    const int n = s->vocab_size;
    if (sampler_greedy(s)) {
        if (s->logits && s->n_history > 0) logits = apply_penalties(s, logits);
        return argmax(logits, n);
    }
    int kept = n;
    const int sorted = prepare(s, logits, &kept);
    float u = rng_f32(&s->rng), cdf = 0.0f;
    for (int i = 0; i < kept; i++) {
        cdf += s->probs[i];
        if (u < cdf) return sorted ? s->candidates[i].id : i;
    }
    return sorted ? s->candidates[kept - 1].id : n - 1; /* rounding: u above the summed mass */
}

/* ---- for speculative sampling (sampler.h) ---------------------------------------- */

int sampler_vocab_size(const doze_sampler *s) { return s->vocab_size; }

int sampler_greedy(const doze_sampler *s) { return s->params.temperature == 0.0f || s->params.top_k == 1; }

int sampler_argmax(const doze_sampler *s, const float *logits) {
    doze_sampler *m = (doze_sampler *)s; /* penalties use the sampler's scratch */
    if (m->logits && m->n_history > 0) logits = apply_penalties(m, logits);
    return argmax(logits, s->vocab_size);
}

void sampler_distribution(doze_sampler *s, const float *logits, float *dist) {
    const int n = s->vocab_size;
    if (sampler_greedy(s)) {
        memset(dist, 0, (size_t)n * sizeof *dist);
        dist[sampler_argmax(s, logits)] = 1.0f;
        return;
    }
    int kept = n;
    if (!prepare(s, logits, &kept)) {
        memcpy(dist, s->probs, (size_t)n * sizeof *dist);
        return;
    }
    memset(dist, 0, (size_t)n * sizeof *dist);
    for (int i = 0; i < kept; i++) dist[s->candidates[i].id] = s->probs[i];
}

void sampler_mark(doze_sampler *s) {
    if (!s->history) return;
    memcpy(s->saved, s->history, (size_t)s->n_history * sizeof *s->saved);
    s->saved_n = s->n_history;
    s->saved_at = s->history_at;
}

void sampler_rewind(doze_sampler *s) {
    if (!s->history) return;
    /* the ring holds its first n_history slots until it is full; the mark's
     * slots are restored, later ones do not count (n_history) */
    memcpy(s->history, s->saved, (size_t)s->saved_n * sizeof *s->history);
    s->n_history = s->saved_n;
    s->history_at = s->saved_at;
}

float sampler_uniform(doze_sampler *s) { return rng_f32(&s->rng); }

int sampler_draw(doze_sampler *s, const float *weights, float total) {
    const int n = s->vocab_size;
    float target = rng_f32(&s->rng) * total, cdf = 0.0f;
    int last = 0;
    for (int i = 0; i < n; i++) {
        if (weights[i] <= 0.0f) continue;
        cdf += weights[i];
        last = i;
        if (target < cdf) return i;
    }
    return last; /* rounding: the target above the summed weight */
}
