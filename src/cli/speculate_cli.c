/* `doze generate --speculative [--draft-budget B] [--draft-k K] [--spec-trace FILE]`:
 * the dozing model drafts, the whole model verifies (doze_speculative_step),
 * so the text is the dense model's (greedy: token for token). Called from
 * cmd_generate once the model, session (gates set, budget 1) and sampler
 * exist. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "commands.h"

int cli_speculative_generate(const cli_args *a, doze_model *m, doze_session *s, doze_sampler *smp,
                             const int32_t *ids, int n_prompt, int steps, int no_stop) {
    doze_spec_params sp = doze_spec_default_params();
    sp.draft_budget = (float)cli_get_float(a, "--draft-budget", 0.0);
    sp.k = (int)cli_get_int(a, "--draft-k", 0);
    if (n_prompt > steps) {
        err_printf("doze: --speculative: the prompt (%d tokens) does not fit in --steps %d\n", n_prompt, steps);
        return 2;
    }
    doze_error e;
    int rc = 1;
    intptr_t trace = -1;
    int trace_failed = 0;
    const char *trace_path = cli_get(a, "--spec-trace");
    doze_speculator *spec = doze_speculator_new(s, &sp, &e);
    if (!spec) return cli_print_error("speculative", &e);
    if (trace_path && (trace = cli_open_write(trace_path)) < 0) goto done;
    if (n_prompt > 1 && doze_session_prefill(s, ids, n_prompt - 1, &e) != DOZE_OK) {
        cli_print_error("prefill", &e);
        goto done;
    }
    for (int i = 1; i < n_prompt; i++)
        if (cli_print_piece(m, ids[i - 1], ids[i])) goto done;
    double t_first = 0, t_end = 0, budget_sum = 0;
    int token = ids[n_prompt - 1], pos = n_prompt - 1, generated = 0, after_first = 0, n_steps = 0;
    int drafted = 0, accepted = 0, stop = 0, k_used[DOZE_SPEC_MAX_K + 1] = {0};
    while (pos < steps && !stop) {
        doze_spec_result r;
        if (doze_speculative_step(spec, smp, token, &r, &e) != DOZE_OK) {
            cli_print_error("speculative step", &e);
            goto done;
        }
        t_end = io_now_ms();
        if (n_steps++ == 0) t_first = t_end;
        drafted += r.k;
        accepted += r.accepted;
        k_used[r.k]++;
        budget_sum += r.draft_budget;
        if (trace >= 0) {
            char line[160];
            int len = snprintf(line, sizeof line, "%d k %d budget %.2f accepted %d compute %.3f rate %.3f draft_ms %.3f verify_ms %.3f\n",
                               pos, r.k, (double)r.draft_budget, r.accepted, (double)r.draft_compute,
                               (double)r.acceptance, r.draft_ms, r.verify_ms);
            trace_failed |= io_write(trace, line, (size_t)len) != 0;
        }
        for (int i = 0; i < r.n && pos < steps; i++, pos++) {
            const int next = r.tokens[i];
            /* the penalties' history, as after a plain step's sample */
            if (doze_sampler_accept(smp, next, &e) != DOZE_OK) {
                cli_print_error("sample", &e);
                goto done;
            }
            generated++;
            if (n_steps > 1) after_first++;
            if (cli_ends_generation(m, next, 1, no_stop)) {
                stop = 1;
                break;
            }
            if (cli_print_piece(m, token, next)) goto done;
            token = next;
        }
    }
    out_printf("\n");
    if (n_steps > 0) {
        err_printf("doze: speculative: %d tokens, %.1f tok/s after the first step; %d steps, drafted %d, accepted %d "
                   "(%.2f), mean draft budget %.2f; steps by k:",
                   generated, after_first * 1000.0 / (t_end - t_first + 1e-9), n_steps, drafted, accepted,
                   drafted ? (double)accepted / drafted : 0.0, budget_sum / n_steps);
        for (int k = 0; k <= DOZE_SPEC_MAX_K; k++)
            if (k_used[k]) err_printf(" %d:%d", k, k_used[k]);
        err_printf("\n");
    }
    rc = 0;
done:
    if (trace >= 0 && cli_close_write(trace, trace_path, rc == 0 && !trace_failed)) rc = 1;
    doze_speculator_free(spec);
    return rc;
}
