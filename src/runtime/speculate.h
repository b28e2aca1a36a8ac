/* The choice of k and the draft budget for speculative decoding: a small
 * controller that keeps, per candidate draft budget, a running acceptance
 * rate and the cost of a draft step, and per verify length the cost of the
 * verify pass, and picks the (k, budget) with the most tokens per unit of
 * cost. Pure bookkeeping (no model), so tests drive it with made-up figures.
 *
 * Tokens per step with per-token acceptance a and k drafts (each draft kept
 * only when all before it were): E = 1 + a + ... + a^k = (1 - a^(k+1)) / (1 - a).
 * Cost per step: k * draft(b) + verify(k + 1). */
#ifndef DOZE_SPECULATE_H
#define DOZE_SPECULATE_H

#include "doze.h"

#define SPEC_N_BUDGETS 6 /* candidate draft budgets: 0.3 .. 0.8 */

typedef struct {
    int fixed_k;                     /* 0: chosen */
    float fixed_budget;              /* 0: chosen */
    int n_budgets;                   /* candidates in use (1 when the budget is fixed) */
    float budgets[SPEC_N_BUDGETS];
    double hits[SPEC_N_BUDGETS];     /* decayed drafted tokens accepted */
    double trials[SPEC_N_BUDGETS];   /* decayed drafted tokens judged */
    double draft_cost[SPEC_N_BUDGETS]; /* per draft step (ms or model units); 0: not measured */
    double verify_cost[DOZE_SPEC_MAX_K + 2]; /* [n]: a verify of n tokens; 0: not measured */
    double all_hits, all_trials;     /* undecayed, for the reported rate */
    int steps;
    int cost_known;                  /* 1 once a step has been measured */
} spec_controller;

void spec_controller_init(spec_controller *c, int fixed_k, float fixed_budget);
/* The next step's k (0..max_k; 0, a plain dense step, only when k is not
 * fixed and no draft is predicted to pay) and draft budget. */
void spec_controller_choose(const spec_controller *c, int max_k, int *k, float *budget);
/* After a step at (k, budget): accepted of k drafts kept, draft_cost the mean
 * cost of its draft steps, verify_cost that of its verify of k + 1 tokens. */
void spec_controller_update(spec_controller *c, int k, float budget, int accepted, double draft_cost,
                            double verify_cost);
/* Acceptance estimate at a candidate budget (index). */
double spec_controller_acceptance(const spec_controller *c, int j);
/* Predicted tokens per unit cost at (k, budget index). */
double spec_controller_rate(const spec_controller *c, int k, int j);

#endif
