/* Sampling the next token: greedy, temperature, top-k, top-p, with a
 * documented RNG so that every platform draws the same tokens for a seed.
 *
 * RNG: xorshift64* (Marsaglia/Vigna). state ^= state >> 12; state ^= state
 * << 25; state ^= state >> 27; output (state * 0x2545F4914F6CDD1D) >> 32.
 * A uniform float in [0, 1) is (u32 >> 8) / 2^24. Seed 0 is replaced by
 * 0x9E3779B97F4A7C15 (the state must not be zero).
 * Sampling with temperature T: p = softmax(logits / T) (doze_expf); top-k
 * keeps the k most probable tokens, top-p the smallest prefix (by falling
 * probability, ties by lower id) whose mass reaches p; then one draw u and
 * the first token whose cumulative mass exceeds u * kept_mass. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "kernels.h"
#include "sampler.h"

typedef struct {
    float p;
    int id;
} prob_index;

struct doze_sampler {
    doze_sampler_params params;
    int vocab_size;
    uint64_t rng;
    float *probs;          /* (vocab_size) */
    prob_index *candidates; /* (vocab_size) */
};

doze_sampler_params doze_sampler_default_params(void) {
    doze_sampler_params p;
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.seed = 42;
    return p;
}

doze_sampler *doze_sampler_new(const doze_sampler_params *p, int vocab_size, doze_error *err) {
    if (vocab_size <= 0) {
        doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "vocab_size %d must be positive", vocab_size);
        return NULL;
    }
    doze_sampler_params params = p ? *p : doze_sampler_default_params();
    if (!(params.temperature >= 0.0f) || params.top_k < 0 || !(params.top_p > 0.0f) ||
        params.top_p > 1.0f) {
        doze_fail(err, DOZE_ERR_INVALID_ARGUMENT,
                  "sampler: temperature %g must be >= 0, top_k %d >= 0, top_p %g in (0, 1]",
                  (double)params.temperature, params.top_k, (double)params.top_p);
        return NULL;
    }
    doze_sampler *s = calloc(1, sizeof *s);
    if (s) {
        s->probs = malloc((size_t)vocab_size * sizeof *s->probs);
        s->candidates = malloc((size_t)vocab_size * sizeof *s->candidates);
    }
    if (!s || !s->probs || !s->candidates) {
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
    free(s);
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

/* falling probability, then rising id: a total order, so qsort is deterministic */
static int by_prob_desc(const void *a, const void *b) {
    const prob_index *x = a, *y = b;
    if (x->p > y->p) return -1;
    if (x->p < y->p) return 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* The sampler's distribution before the draw: softmax(logits / T) in
 * s->probs and, when top-k or top-p cut it, the kept candidates sorted in
 * s->candidates[0..*kept). Returns 1 when sorted (cut), 0 when the whole
 * s->probs is the distribution. Not for greedy samplers. */
static int sampler_prepare(doze_sampler *s, const float *logits, int *kept_out) {
    const int n = s->vocab_size;
    float inv_t = 1.0f / s->params.temperature;
    float max = logits[0] * inv_t;
    for (int i = 1; i < n; i++)
        if (logits[i] * inv_t > max) max = logits[i] * inv_t;
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        s->probs[i] = doze_expf(logits[i] * inv_t - max);
        sum += s->probs[i];
    }
    for (int i = 0; i < n; i++) s->probs[i] /= sum;

    int kept = n;
    int sorted = 0;
    if ((s->params.top_k > 0 && s->params.top_k < n) || s->params.top_p < 1.0f) {
        for (int i = 0; i < n; i++) {
            s->candidates[i].p = s->probs[i];
            s->candidates[i].id = i;
        }
        qsort(s->candidates, (size_t)n, sizeof *s->candidates, by_prob_desc);
        sorted = 1;
        if (s->params.top_k > 0 && s->params.top_k < kept) kept = s->params.top_k;
        if (s->params.top_p < 1.0f) {
            float cum = 0.0f;
            for (int i = 0; i < kept; i++) {
                cum += s->candidates[i].p;
                if (cum >= s->params.top_p) {
                    kept = i + 1;
                    break;
                }
            }
        }
    }
    *kept_out = kept;
    return sorted;
}

int doze_sampler_sample(doze_sampler *s, const float *logits) {
    const int n = s->vocab_size;
    if (sampler_greedy(s)) return argmax(logits, n);
    int kept = n;
    const int sorted = sampler_prepare(s, logits, &kept);
    float u = rng_f32(&s->rng);
    if (!sorted) {
        float cdf = 0.0f;
        for (int i = 0; i < n; i++) {
            cdf += s->probs[i];
            if (u < cdf) return i;
        }
        return n - 1; /* rounding: u above the summed mass */
    }
    float mass = 0.0f;
    for (int i = 0; i < kept; i++) mass += s->candidates[i].p;
    float target = u * mass, cdf = 0.0f;
    for (int i = 0; i < kept; i++) {
        cdf += s->candidates[i].p;
        if (target < cdf) return s->candidates[i].id;
    }
    return s->candidates[kept - 1].id;
}

/* ---- for speculative sampling (sampler.h) ---------------------------------------- */

int sampler_greedy(const doze_sampler *s) { return s->params.temperature == 0.0f || s->params.top_k == 1; }

int sampler_argmax(const doze_sampler *s, const float *logits) { return argmax(logits, s->vocab_size); }

void sampler_distribution(doze_sampler *s, const float *logits, float *dist) {
    const int n = s->vocab_size;
    if (sampler_greedy(s)) {
        memset(dist, 0, (size_t)n * sizeof *dist);
        dist[argmax(logits, n)] = 1.0f;
        return;
    }
    int kept = n;
    if (!sampler_prepare(s, logits, &kept)) {
        memcpy(dist, s->probs, (size_t)n * sizeof *dist);
        return;
    }
    float mass = 0.0f;
    for (int i = 0; i < kept; i++) mass += s->candidates[i].p;
    memset(dist, 0, (size_t)n * sizeof *dist);
    for (int i = 0; i < kept; i++) dist[s->candidates[i].id] = s->candidates[i].p / mass;
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
