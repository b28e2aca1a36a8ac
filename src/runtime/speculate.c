/* Self-speculative decoding: the session's gates at a low budget draft k
 * tokens, one batched dense forward over them verifies, and the cache is
 * rolled back past what the whole model did not accept.
 *
 * A step, with the session holding positions < P and `token` to run at P:
 *   draft:  run token, d_1 .. d_{k-1} at P .. P+k-1 under the draft budget;
 *           q_i (the draft's distribution after d_{i-1}) gives d_i
 *   verify: forget P .. and run token, d_1 .. d_k densely as one batch:
 *           p_1 .. p_{k+1}, p_i the dense distribution after d_{i-1}
 *   accept: d_i while p agrees (greedy: d_i = argmax p_i; sampling: with
 *           probability min(1, p_i(d_i) / q_i(d_i))); at the first refusal
 *           emit a token from max(0, p_i - q_i) normalized (greedy: argmax
 *           p_i); when all k pass, emit one from p_{k+1}
 *   keep:   positions P .. P + accepted (the verify's dense K/V), forget the
 *           rest, so the cache is the one dense steps would have built.
 * Sampled tokens then follow the dense distribution exactly (the standard
 * speculative-sampling argument); greedy ones are the dense argmaxes. The
 * sampler's penalties (a function of the tokens before a position) see
 * d_1 .. d_{i-1} for q_i and p_i, as a dense run would. */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */

#include "speculate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "model.h"
#include "sampler.h"
#include "session.h"

/* ---- the controller ------------------------------------------------------------ */

/* Cost-model shapes, in dense token steps (used before anything is measured,
 * to extrapolate measured figures to unmeasured choices, and as the whole
 * cost with timing off): a draft step at achieved compute c costs the
 * embedding, norms and classifier plus c of the layers; a verify of n tokens
 * costs one step plus a batched share for each further token. */
#define SPEC_FIXED_SHARE 0.15
#define SPEC_BATCH_SHARE 0.4
/* memory of the running figures: weight of the old value per update */
#define SPEC_DECAY 0.95
#define SPEC_COST_KEEP 0.8
/* every SPEC_EXPLORE-th step tries another budget or a longer draft, so the
 * figures of choices not taken stay current */
#define SPEC_EXPLORE 8

static double model_draft(double b) { return SPEC_FIXED_SHARE + (1.0 - SPEC_FIXED_SHARE) * b; }
static double model_verify(int n) { return 1.0 + SPEC_BATCH_SHARE * (n - 1); }

void spec_controller_init(spec_controller *c, int fixed_k, float fixed_budget) {
    static const float cand[SPEC_N_BUDGETS] = {0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f};
    memset(c, 0, sizeof *c);
    c->fixed_k = fixed_k;
    c->fixed_budget = fixed_budget;
    if (fixed_budget > 0.0f) {
        c->n_budgets = 1;
        c->budgets[0] = fixed_budget;
    } else {
        c->n_budgets = SPEC_N_BUDGETS;
        memcpy(c->budgets, cand, sizeof cand);
    }
}

double spec_controller_acceptance(const spec_controller *c, int j) {
    /* prior: the rate pooled over every budget, worth two drafted tokens, so
     * an untried budget looks as good as the others until tried */
    const double pooled = (c->all_hits + 1.0) / (c->all_trials + 2.0);
    return (c->hits[j] + 2.0 * pooled) / (c->trials[j] + 2.0);
}

static double draft_cost(const spec_controller *c, int j) {
    if (c->draft_cost[j] > 0) return c->draft_cost[j];
    int near = -1;
    for (int i = 0; i < c->n_budgets; i++)
        if (c->draft_cost[i] > 0 && (near < 0 || fabs(c->budgets[i] - c->budgets[j]) < fabs(c->budgets[near] - c->budgets[j])))
            near = i;
    if (near < 0) return model_draft(c->budgets[j]);
    return c->draft_cost[near] * model_draft(c->budgets[j]) / model_draft(c->budgets[near]);
}

static double verify_cost(const spec_controller *c, int n) {
    if (c->verify_cost[n] > 0) return c->verify_cost[n];
    int near = -1;
    for (int i = 1; i <= DOZE_SPEC_MAX_K + 1; i++)
        if (c->verify_cost[i] > 0 && (near < 0 || abs(i - n) < abs(near - n))) near = i;
    if (near < 0) return model_verify(n);
    return c->verify_cost[near] * model_verify(n) / model_verify(near);
}

double spec_controller_rate(const spec_controller *c, int k, int j) {
    const double a = spec_controller_acceptance(c, j);
    double tokens = 0.0, ak = 1.0; /* 1 + a + ... + a^k */
    for (int i = 0; i <= k; i++, ak *= a) tokens += ak;
    return tokens / (k * draft_cost(c, j) + verify_cost(c, k + 1));
}

void spec_controller_choose(const spec_controller *c, int max_k, int *k_out, float *budget_out) {
    int best_k = 1, best_j = 0;
    double best = -1.0;
    /* k 0 (chosen only when k is not fixed) is a plain dense step: where no
     * draft pays (a verify costing a token what a step does), the run falls
     * back to dense decoding, and the exploration turns keep trying drafts */
    const int k_lo = c->fixed_k ? c->fixed_k : 0, k_hi = c->fixed_k ? c->fixed_k : DOZE_SPEC_MAX_K;
    for (int j = 0; j < c->n_budgets; j++)
        for (int k = k_lo; k <= k_hi; k++) {
            const double r = spec_controller_rate(c, k, j);
            if (r > best) {
                best = r;
                best_k = k;
                best_j = j;
            }
        }
    if (c->steps % SPEC_EXPLORE == SPEC_EXPLORE - 1) {
        /* exploration turns: every budget in turn, and one draft longer than
         * the best (extrapolated figures are not trusted for ever) */
        const int e = c->steps / SPEC_EXPLORE;
        if (e % 2 == 0 && c->n_budgets > 1) {
            best_j = (e / 2) % c->n_budgets;
            if (best_k == 0) best_k = 1;
        } else if (!c->fixed_k) {
            best_k = best_k < DOZE_SPEC_MAX_K ? best_k + 1 : best_k - 1;
        }
    }
    *k_out = best_k < max_k ? best_k : max_k;
    *budget_out = c->budgets[best_j];
}

void spec_controller_update(spec_controller *c, int k, float budget, int accepted, double dcost, double vcost) {
    int j = 0;
    for (int i = 1; i < c->n_budgets; i++)
        if (fabsf(c->budgets[i] - budget) < fabsf(c->budgets[j] - budget)) j = i;
    c->steps++;
    if (k <= 0) {
        if (vcost > 0)
            c->verify_cost[1] = c->verify_cost[1] > 0
                                    ? SPEC_COST_KEEP * c->verify_cost[1] + (1 - SPEC_COST_KEEP) * vcost
                                    : vcost;
        return;
    }
    const int judged = accepted + (accepted < k); /* the first refused draft was judged too */
    c->hits[j] = SPEC_DECAY * c->hits[j] + accepted;
    c->trials[j] = SPEC_DECAY * c->trials[j] + judged;
    c->all_hits += accepted;
    c->all_trials += judged;
    if (dcost > 0)
        c->draft_cost[j] = c->draft_cost[j] > 0 ? SPEC_COST_KEEP * c->draft_cost[j] + (1 - SPEC_COST_KEEP) * dcost : dcost;
    if (vcost > 0)
        c->verify_cost[k + 1] = c->verify_cost[k + 1] > 0
                                    ? SPEC_COST_KEEP * c->verify_cost[k + 1] + (1 - SPEC_COST_KEEP) * vcost
                                    : vcost;
    c->cost_known = 1;
}

/* ---- the speculator ---------------------------------------------------------------- */

struct doze_speculator {
    doze_session *s;
    doze_spec_params p;
    int vocab;
    spec_controller ctl;
    int32_t seq[DOZE_SPEC_MAX_K + 1]; /* token, d_1 .. d_k */
    float *q;      /* (DOZE_SPEC_MAX_K, vocab) the draft's distributions q_1 .. q_k */
    float *logits; /* (DOZE_SPEC_MAX_K + 1, vocab) the verify's logits: row i gives p_{i+1} */
    float *pd;     /* (vocab) a dense distribution */
    float *res;    /* (vocab) the residual max(0, p - q) */
    int n_last;    /* tokens emitted by the last step */
};

doze_spec_params doze_spec_default_params(void) {
    doze_spec_params p;
    p.k = 0;
    p.draft_budget = 0.0f;
    p.timed = 1;
    return p;
}

void doze_speculator_free(doze_speculator *sp) {
    if (!sp) return;
    free(sp->q);
    free(sp->logits);
    free(sp->pd);
    free(sp->res);
    free(sp);
}

doze_speculator *doze_speculator_new(doze_session *s, const doze_spec_params *p, doze_error *err) {
    if (!s) {
        doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no session");
        return NULL;
    }
    doze_spec_params params = p ? *p : doze_spec_default_params();
    if (params.k < 0 || params.k > DOZE_SPEC_MAX_K || !(params.draft_budget >= 0.0f && params.draft_budget < 1.0f)) {
        doze_fail(err, DOZE_ERR_INVALID_ARGUMENT,
                  "speculation: k %d must be in 0..%d (0: adaptive) and the draft budget %g in [0, 1) (0: adaptive)",
                  params.k, DOZE_SPEC_MAX_K, (double)params.draft_budget);
        return NULL;
    }
    const size_t v = (size_t)session_model(s)->info.vocab_size;
    doze_speculator *sp = calloc(1, sizeof *sp);
    if (sp) {
        sp->q = malloc((size_t)DOZE_SPEC_MAX_K * v * sizeof(float));
        sp->logits = malloc((size_t)(DOZE_SPEC_MAX_K + 1) * v * sizeof(float));
        sp->pd = malloc(v * sizeof(float));
        sp->res = malloc(v * sizeof(float));
    }
    if (!sp || !sp->q || !sp->logits || !sp->pd || !sp->res) {
        doze_speculator_free(sp);
        doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for a speculator");
        return NULL;
    }
    sp->s = s;
    sp->p = params;
    sp->vocab = (int)v;
    spec_controller_init(&sp->ctl, params.k, params.draft_budget);
    return sp;
}

const float *doze_speculator_logits(const doze_speculator *sp, int i) {
    if (!sp || i < 0 || i >= sp->n_last) return NULL;
    return sp->logits + (size_t)i * (size_t)sp->vocab;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* The draft: runs seq[0 .. k) under the session's gates at its current
 * budget and fills seq[1 .. k] (and q_1 .. q_k when sampling). *compute: the
 * summed achieved compute. */
static doze_status draft(doze_speculator *sp, doze_sampler *smp, int k, double *compute, doze_error *err) {
    const int greedy = sampler_greedy(smp);
    *compute = 0.0;
    for (int i = 0; i < k; i++) {
        doze_status st = doze_session_step(sp->s, sp->seq[i], err);
        if (st) return st;
        *compute += doze_session_compute(sp->s);
        const float *lg = doze_session_logits(sp->s);
        if (greedy) {
            sp->seq[i + 1] = sampler_argmax(smp, lg);
        } else {
            float *q = sp->q + (size_t)i * sp->vocab;
            sampler_distribution(smp, lg, q);
            float total = 0.0f;
            for (int v = 0; v < sp->vocab; v++) total += q[v];
            sp->seq[i + 1] = sampler_draw(smp, q, total);
        }
        /* the penalties of the next draft see this one (rewound after the draft) */
        doze_sampler_accept(smp, sp->seq[i + 1], NULL);
    }
    return DOZE_OK;
}

/* The accept/reject pass over the verify's logits: fills r's tokens and
 * flags, returns the drafts accepted. */
static int judge(doze_speculator *sp, doze_sampler *smp, int k, doze_spec_result *r) {
    const int greedy = sampler_greedy(smp), V = sp->vocab;
    for (int i = 1; i <= k; i++) {
        const int d = sp->seq[i];
        const float *lg = sp->logits + (size_t)(i - 1) * V; /* p_i */
        int verdict;   /* 1: accept d */
        int other = 0; /* the whole model's token on refusal */
        if (greedy) {
            other = sampler_argmax(smp, lg);
            verdict = other == d;
        } else {
            const float *q = sp->q + (size_t)(i - 1) * V;
            sampler_distribution(smp, lg, sp->pd);
            /* accept with probability min(1, p(d) / q(d)); q(d) > 0 as d came from q */
            verdict = sampler_uniform(smp) * q[d] < sp->pd[d];
            if (!verdict) {
                float total = 0.0f;
                for (int v = 0; v < V; v++) {
                    const float x = sp->pd[v] - q[v];
                    sp->res[v] = x > 0.0f ? x : 0.0f;
                    total += sp->res[v];
                }
                /* total is 0 only where p = q to the last bit (and then a
                 * refusal cannot happen); p itself is the right fallback */
                other = total > 0.0f ? sampler_draw(smp, sp->res, total) : sampler_draw(smp, sp->pd, 1.0f);
            }
        }
        if (!verdict) {
            r->tokens[i - 1] = other;
            r->flags[i - 1] = 0;
            return i - 1;
        }
        r->tokens[i - 1] = d;
        r->flags[i - 1] = DOZE_SPEC_DRAFTED | DOZE_SPEC_ACCEPTED;
        /* p_{i+1}'s penalties see d_i, as a dense run's would (rewound after the judging) */
        doze_sampler_accept(smp, d, NULL);
    }
    /* every draft passed: the whole model's own next token */
    r->tokens[k] = doze_sampler_sample(smp, sp->logits + (size_t)k * V);
    r->flags[k] = 0;
    return k;
}

doze_status doze_speculative_step(doze_speculator *sp, doze_sampler *smp, int token, doze_spec_result *r,
                                  doze_error *err) {
    if (!sp || !smp || !r) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no speculator, sampler or result");
    doze_session *s = sp->s;
    const doze_model_info *c = &session_model(s)->info;
    if (token < 0 || token >= c->vocab_size)
        return doze_fail(err, DOZE_ERR_TOKEN_RANGE, "token id %d is out of range [0, %d)", token, c->vocab_size);
    if (sampler_vocab_size(smp) != c->vocab_size) /* it reads and writes vocab_size values per draft */
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "the sampler is for %d tokens, the model has %d",
                         sampler_vocab_size(smp), c->vocab_size);
    const int pos = doze_session_pos(s);
    if (pos >= c->context_length)
        return doze_fail(err, DOZE_ERR_CONTEXT_FULL, "context of %d positions is full", c->context_length);
    memset(r, 0, sizeof *r);
    sp->n_last = 0;

    int k = 0;
    float b = 0.0f;
    const int room = c->context_length - pos - 1; /* drafts that still fit */
    spec_controller_choose(&sp->ctl, room < DOZE_SPEC_MAX_K ? room : DOZE_SPEC_MAX_K, &k, &b);
    if (k < 0) k = 0;

    /* draft under b with the session's gates */
    const float budget0 = doze_session_get_budget(s);
    doze_status st = doze_session_set_budget(s, b, err);
    if (st) return st;
    if (k > 0 && !session_gated(s)) {
        doze_session_set_budget(s, budget0, NULL);
        return doze_fail(err, DOZE_ERR_STATE, "speculation drafts with the session's gates: set them first");
    }
    sp->seq[0] = token;
    double compute = 0.0;
    const double t0 = sp->p.timed ? now_ms() : 0.0;
    /* The penalties are a function of the tokens before each position: the
     * draft and the judging hand the drafts to the sampler's history as
     * they go, and both start from (and end on) the history as given. */
    sampler_mark(smp);
    st = draft(sp, smp, k, &compute, err);
    sampler_rewind(smp);
    const double t1 = sp->p.timed ? now_ms() : 0.0;
    doze_session_set_budget(s, budget0, NULL);
    /* verify: the drafted positions again, densely, in one batch */
    doze_session_truncate(s, pos, NULL);
    if (!st) st = session_verify(s, sp->seq, k + 1, sp->logits, err);
    const double t2 = sp->p.timed ? now_ms() : 0.0;
    if (st) {
        doze_session_truncate(s, pos, NULL);
        return st;
    }
    const int accepted = judge(sp, smp, k, r);
    sampler_rewind(smp); /* the caller accepts what was emitted, as after doze_sampler_sample */
    /* keep token and the accepted drafts: the verify's dense K/V */
    if (accepted < k) {
        doze_session_truncate(s, pos + accepted + 1, NULL);
        session_set_logits(s, sp->logits + (size_t)accepted * sp->vocab);
    }
    sp->n_last = accepted + 1;

    const double dcost = k == 0 ? 0.0 : sp->p.timed ? (t1 - t0) / k : model_draft(compute / k);
    const double vcost = sp->p.timed ? t2 - t1 : model_verify(k + 1);
    spec_controller_update(&sp->ctl, k, b, accepted, dcost, vcost);
    r->n = accepted + 1;
    r->k = k;
    r->accepted = accepted;
    r->draft_budget = b;
    r->draft_compute = k ? (float)(compute / k) : 0.0f;
    r->acceptance = sp->ctl.all_trials > 0 ? (float)(sp->ctl.all_hits / sp->ctl.all_trials) : 0.0f;
    r->draft_ms = sp->p.timed ? t1 - t0 : 0.0;
    r->verify_ms = sp->p.timed ? t2 - t1 : 0.0;
    return DOZE_OK;
}
