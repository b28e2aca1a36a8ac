/* `doze bench MODEL --speculative [--draft-budget B] [--draft-k K]`: greedy
 * decode tokens/s of self-speculation (doze_speculative_step) against dense
 * stepping from the same prompt, in interleaved rounds (the machine may be
 * shared: the ratio of each round is printed, then their median and
 * range), with the acceptance, the k and the draft budget chosen; every
 * round checks that the two outputs are the same tokens. */
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "commands.h"

#define SPEC_BENCH_ROUNDS_MAX 32

typedef struct {
    double ms;        /* after the first step (dense: after the first token) */
    int timed_tokens; /* tokens emitted in that time */
    int steps, drafted, accepted, k_used[DOZE_SPEC_MAX_K + 1];
    double budget_sum;
    double draft_ms, verify_ms; /* summed over the steps */
    int verified;               /* tokens through the verify passes (k + 1 per step) */
} spec_run;

/* Dense greedy: prompt[0 .. n-1) as prefill, then one step per token until
 * out holds total tokens (out[0 .. n) the prompt). */
static int dense_run(doze_model *m, doze_sampler *smp, int32_t *out, int n, int total, spec_run *r) {
    memset(r, 0, sizeof *r);
    doze_error e;
    doze_session *s = doze_session_new(m, &e);
    if (!s) return cli_print_error("bench", &e);
    int rc = 1;
    double t1 = 0;
    if (n > 1 && doze_session_prefill(s, out, n - 1, &e) != DOZE_OK) goto fail;
    for (int i = n - 1; i + 1 < total; i++) {
        if (doze_session_step(s, out[i], &e) != DOZE_OK) goto fail;
        out[i + 1] = doze_sampler_sample(smp, doze_session_logits(s));
        if (i == n - 1) t1 = io_now_ms();
    }
    r->ms = io_now_ms() - t1;
    r->timed_tokens = total - n - 1;
    rc = 0;
fail:
    if (rc) cli_print_error("bench", &e);
    doze_session_free(s);
    return rc;
}

/* The same run speculatively (the session drafting with g). */
static int spec_run_once(doze_model *m, const doze_gates *g, const doze_spec_params *sp, doze_sampler *smp,
                         int32_t *out, int n, int total, spec_run *r) {
    doze_error e;
    doze_session *s = doze_session_new(m, &e);
    doze_speculator *spec = NULL;
    int rc = 1;
    memset(r, 0, sizeof *r);
    if (!s || doze_session_set_gates(s, g, &e) != DOZE_OK) goto fail;
    if (!(spec = doze_speculator_new(s, sp, &e))) goto fail;
    if (n > 1 && doze_session_prefill(s, out, n - 1, &e) != DOZE_OK) goto fail;
    double t1 = 0;
    int have = n, after_first = 0;
    while (have < total) {
        doze_spec_result res;
        if (doze_speculative_step(spec, smp, out[have - 1], &res, &e) != DOZE_OK) goto fail;
        for (int i = 0; i < res.n && have < total; i++) out[have++] = res.tokens[i];
        if (r->steps++ == 0) t1 = io_now_ms();
        else after_first += res.n;
        r->drafted += res.k;
        r->accepted += res.accepted;
        r->k_used[res.k]++;
        r->budget_sum += res.draft_budget;
        r->draft_ms += res.draft_ms;
        r->verify_ms += res.verify_ms;
        r->verified += res.k + 1;
    }
    r->ms = io_now_ms() - t1;
    r->timed_tokens = after_first;
    rc = 0;
fail:
    if (rc) cli_print_error("bench --speculative", &e);
    doze_speculator_free(spec);
    doze_session_free(s);
    return rc;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int bench_speculative(doze_model *m, const cli_args *a, int steps, int rounds, int json) {
    doze_spec_params sp = doze_spec_default_params();
    sp.draft_budget = (float)cli_get_float(a, "--draft-budget", 0.0);
    sp.k = (int)cli_get_int(a, "--draft-k", 0);
    const int given_b = cli_has(a, "--draft-budget"), given_k = cli_has(a, "--draft-k");
    if ((given_b && !(sp.draft_budget > 0.0f && sp.draft_budget < 1.0f)) || (given_k && sp.k < 1) ||
        sp.k > DOZE_SPEC_MAX_K) {
        err_printf("doze: bench: --draft-budget must be in (0, 1) and --draft-k in 1..%d\n", DOZE_SPEC_MAX_K);
        return 2;
    }
    if (rounds < 1 || rounds > SPEC_BENCH_ROUNDS_MAX) {
        err_printf("doze: bench: --rounds must be in 1..%d\n", SPEC_BENCH_ROUNDS_MAX);
        return 2;
    }
    const doze_model_info *c = doze_model_get_info(m);
    const char *prompt = cli_get(a, "--prompt");
    if (!prompt) prompt = "Once upon a time";
    doze_error e;
    int n = 0;
    int32_t *ids = cli_encode(m, prompt, strlen(prompt), DOZE_TOKENIZE_ADD_SPECIAL, &n, &e);
    if (!ids) return cli_print_error("bench: prompt", &e);
    if (n < 1) {
        free(ids);
        err_printf("doze: bench: the prompt gives no token\n");
        return 2;
    }
    int total = n + steps;
    if (total > c->context_length) total = c->context_length;
    doze_gates *g = cli_gates(a, m, 1, json);
    int32_t *dense = malloc((size_t)total * sizeof *dense), *spec = malloc((size_t)total * sizeof *spec);
    doze_sampler_params pp = doze_sampler_default_params();
    pp.temperature = 0.0f;
    doze_sampler *smp = doze_sampler_new(&pp, c->vocab_size, &e);
    int rc = 1;
    if (!g || !dense || !spec || !smp) {
        if (!smp) cli_print_error("bench", &e);
        goto done;
    }
    memcpy(dense, ids, (size_t)n * sizeof *ids);
    memcpy(spec, ids, (size_t)n * sizeof *ids);
    double ratio[SPEC_BENCH_ROUNDS_MAX], dense_tps[SPEC_BENCH_ROUNDS_MAX], spec_tps[SPEC_BENCH_ROUNDS_MAX];
    spec_run sum;
    memset(&sum, 0, sizeof sum);
    /* a warm-up pair (not counted), then the rounds, dense and speculative
     * alternating so that both see the same load */
    for (int round = -1; round < rounds; round++) {
        spec_run d = {0}, s = {0};
        if (dense_run(m, smp, dense, n, total, &d) || spec_run_once(m, g, &sp, smp, spec, n, total, &s)) goto done;
        if (memcmp(dense, spec, (size_t)total * sizeof *dense) != 0) {
            int i = 0;
            while (dense[i] == spec[i]) i++;
            err_printf("doze: bench: the speculative output differs from dense greedy at token %d (%d vs %d)\n", i,
                       spec[i], dense[i]);
            goto done;
        }
        if (round < 0) continue;
        dense_tps[round] = d.timed_tokens * 1000.0 / (d.ms + 1e-9);
        spec_tps[round] = s.timed_tokens * 1000.0 / (s.ms + 1e-9);
        ratio[round] = spec_tps[round] / dense_tps[round];
        sum.steps += s.steps;
        sum.drafted += s.drafted;
        sum.accepted += s.accepted;
        sum.budget_sum += s.budget_sum;
        sum.draft_ms += s.draft_ms;
        sum.verify_ms += s.verify_ms;
        sum.verified += s.verified;
        sum.ms += d.ms; /* dense time per token, summed below */
        sum.timed_tokens += d.timed_tokens;
        for (int k = 0; k <= DOZE_SPEC_MAX_K; k++) sum.k_used[k] += s.k_used[k];
        if (!json)
            out_printf("round %d: dense %8.1f tok/s, speculative %8.1f tok/s: %.2fx (acceptance %.2f, %d steps)\n",
                       round + 1, dense_tps[round], spec_tps[round], ratio[round],
                       s.drafted ? (double)s.accepted / s.drafted : 0.0, s.steps);
    }
    double sorted[SPEC_BENCH_ROUNDS_MAX], sd[SPEC_BENCH_ROUNDS_MAX], ss[SPEC_BENCH_ROUNDS_MAX];
    memcpy(sorted, ratio, (size_t)rounds * sizeof *ratio);
    memcpy(sd, dense_tps, (size_t)rounds * sizeof *sd);
    memcpy(ss, spec_tps, (size_t)rounds * sizeof *ss);
    qsort(sorted, (size_t)rounds, sizeof *sorted, cmp_double);
    qsort(sd, (size_t)rounds, sizeof *sd, cmp_double);
    qsort(ss, (size_t)rounds, sizeof *ss, cmp_double);
    const double acc = sum.drafted ? (double)sum.accepted / sum.drafted : 0.0;
    const double mean_k = sum.steps ? (double)sum.drafted / sum.steps : 0.0;
    const double mean_b = sum.steps ? sum.budget_sum / sum.steps : 0.0;
    /* where the time goes: a verified token against a dense step (the
     * verify must cost a token well under a step for drafts to pay) */
    const double step_ms = sum.timed_tokens ? sum.ms / sum.timed_tokens : 0.0;
    const double verify_tok_ms = sum.verified ? sum.verify_ms / sum.verified : 0.0;
    const double draft_step_ms = sum.drafted ? sum.draft_ms / sum.drafted : 0.0;
    if (json) {
        out_printf("{\"tokens\":%d,\"rounds\":%d,\"dense_tok_s\":%.2f,\"speculative_tok_s\":%.2f,\"speedup\":%.3f,"
                   "\"speedup_min\":%.3f,\"speedup_max\":%.3f,\"acceptance\":%.3f,\"mean_k\":%.3f,"
                   "\"mean_draft_budget\":%.3f,\"fixed_k\":%d,\"fixed_draft_budget\":%.3f,\"dense_step_ms\":%.4f,"
                   "\"verify_ms_per_token\":%.4f,\"draft_step_ms\":%.4f,\"identical\":true}\n",
                   total - n, rounds, sd[rounds / 2], ss[rounds / 2], sorted[rounds / 2], sorted[0],
                   sorted[rounds - 1], acc, mean_k, mean_b, sp.k, (double)sp.draft_budget, step_ms, verify_tok_ms,
                   draft_step_ms);
    } else {
        out_printf("speculative / dense: median %.2fx (range %.2f - %.2f over %d rounds of %d tokens; "
                   "dense median %.1f tok/s, speculative %.1f tok/s), output identical\n",
                   sorted[rounds / 2], sorted[0], sorted[rounds - 1], rounds, total - n, sd[rounds / 2],
                   ss[rounds / 2]);
        out_printf("acceptance %.2f, mean k %.2f, mean draft budget %.2f%s; steps by k:", acc, mean_k, mean_b,
                   sp.k || sp.draft_budget > 0 ? " (fixed)" : " (adaptive)");
        for (int k = 0; k <= DOZE_SPEC_MAX_K; k++)
            if (sum.k_used[k]) out_printf(" %d:%d", k, sum.k_used[k]);
        out_printf("\n");
        out_printf("per token: dense step %.4f ms, verify %.4f ms per verified token (%.2f steps), "
                   "draft step %.4f ms (%.2f steps)\n",
                   step_ms, verify_tok_ms, step_ms > 0 ? verify_tok_ms / step_ms : 0.0, draft_step_ms,
                   step_ms > 0 ? draft_step_ms / step_ms : 0.0);
    }
    rc = 0;
done:
    doze_sampler_free(smp);
    free(dense);
    free(spec);
    doze_gates_free(g);
    free(ids);
    return rc;
}
