/* The training-free router: fit per layer, by ridge regression, a linear map
 * from the normed residual entering the layer (xn) to the log of the damage
 * of skipping the layer and each head, and from the FFN's normed input (hn,
 * after the layer's attention) to the log of the damage of skipping each FFN
 * block, measured on a dense run over calibration tokens; then tabulate
 * budget -> threshold on the same tokens. No gradients: a closed-form fit
 * that works on any model.
 *
 * Damage (session_damage): the squared distance of the final normed hidden
 * state from the dense one when the layer, its attention, or its whole FFN
 * is skipped and the layers above are re-run. A head gets its attention's
 * damage in proportion to its output norm ||Wo_h att_h||, and an FFN block
 * its FFN's damage times ||W_down_j h_j||^2 / ||sum_k W_down_k h_k||^2:
 * a linearized estimate of what the part of the update the block
 * writes does at the output. A mixture's experts get the same kind of
 * estimate from the distance the update moves when one expert is dropped
 * (the others renormalized), reduced to one constant per layer and expert
 * (see collect and fit_experts). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "gates.h"
#include "model.h"
#include "session.h"

#define LOG_FLOOR 1e-9
#define GRID 481               /* thresholds tried for the budget table */
#define GRID_LO (-24.0)
#define GRID_HI (24.0)

/* Solves A x = b in place for k right-hand sides (A n x n SPD, row-major;
 * b n x k). Returns 0, or -1 if A is not positive definite. */
static int cholesky_solve(double *A, double *b, int n, int k) {
    for (int j = 0; j < n; j++) {
        double d = A[(size_t)j * n + j];
        for (int p = 0; p < j; p++) d -= A[(size_t)j * n + p] * A[(size_t)j * n + p];
        if (!(d > 0.0)) return -1;
        d = sqrt(d);
        A[(size_t)j * n + j] = d;
        for (int i = j + 1; i < n; i++) {
            double s = A[(size_t)i * n + j];
            for (int p = 0; p < j; p++) s -= A[(size_t)i * n + p] * A[(size_t)j * n + p];
            A[(size_t)i * n + j] = s / d;
        }
    }
    for (int c = 0; c < k; c++) {
        for (int i = 0; i < n; i++) { /* L y = b */
            double s = b[(size_t)i * k + c];
            for (int p = 0; p < i; p++) s -= A[(size_t)i * n + p] * b[(size_t)p * k + c];
            b[(size_t)i * k + c] = s / A[(size_t)i * n + i];
        }
        for (int i = n - 1; i >= 0; i--) { /* L^T x = y */
            double s = b[(size_t)i * k + c];
            for (int p = i + 1; p < n; p++) s -= A[(size_t)p * n + i] * b[(size_t)p * k + c];
            b[(size_t)i * k + c] = s / A[(size_t)i * n + i];
        }
    }
    return 0;
}

typedef struct {
    int n;          /* calibration tokens kept (after the protected ones) */
    int first_pos;  /* position of the first kept token */
    int U;          /* targets per layer: 1 + n_heads + n_blocks */
    float *xn;      /* (n, n_layers, dim) normed layer inputs */
    float *hn;      /* (n, n_layers, dim) normed FFN inputs (NULL when not needed) */
    float *target;  /* (n, n_layers, U) log damages */
    int E;          /* MoE: experts per layer (0: dense) */
    float *probs;   /* MoE: (n, n_layers, E) router probabilities (0 where the FFN dozed) */
    double *eb_sum; /* MoE, with damage: (n_layers, E) sums of the experts' calibration targets */
    int *eb_count;  /* ... and how many each sum holds */
} calib_data;

static void calib_free(calib_data *d) {
    free(d->xn);
    free(d->hn);
    free(d->target);
    free(d->probs);
    free(d->eb_sum);
    free(d->eb_count);
}

/* nb: FFN block targets (0: none); want_hn: keep the FFN inputs */
static doze_status collect(doze_model *m, const int32_t *tokens, int n_tokens, int skip,
                           int with_damage, int nb, int want_hn, calib_data *d, doze_error *err) {
    const doze_model_info *c = &m->info;
    const int L = c->n_layers, H = c->n_heads, D = c->dim, NB = m->n_ffn_blocks;
    const int U = 1 + H + nb, E = c->n_experts;
    d->first_pos = skip;
    d->n = n_tokens - skip;
    d->U = U;
    d->xn = malloc((size_t)d->n * L * D * sizeof(float));
    d->hn = want_hn ? malloc((size_t)d->n * L * D * sizeof(float)) : NULL;
    d->target = malloc((size_t)d->n * L * U * sizeof(float));
    d->E = E;
    /* the experts' targets need the FFN's damage (FFN gates on) */
    const int expert_targets = E && with_damage && nb;
    if (E) d->probs = malloc((size_t)d->n * L * E * sizeof(float));
    if (expert_targets) {
        d->eb_sum = calloc((size_t)L * E, sizeof(double));
        d->eb_count = calloc((size_t)L * E, sizeof(int));
    }
    doze_step_trace tr;
    memset(&tr, 0, sizeof tr);
    tr.x_in = malloc((size_t)L * D * sizeof(float));
    tr.xn = malloc((size_t)L * D * sizeof(float));
    tr.hn = malloc((size_t)L * D * sizeof(float));
    float *layer_damage = malloc((size_t)L * sizeof(float));
    float *attn_damage = malloc((size_t)L * sizeof(float));
    tr.in_norm = malloc((size_t)L * sizeof(float));
    tr.update_norm = malloc((size_t)L * sizeof(float));
    tr.head_norm = malloc((size_t)L * H * sizeof(float));
    tr.block_norm = malloc((size_t)L * NB * sizeof(float));
    tr.ffn_norm = malloc((size_t)L * sizeof(float));
    float *ffn_damage = malloc((size_t)L * sizeof(float));
    if (E) {
        tr.expert_probs = malloc((size_t)L * E * sizeof(float));
        tr.expert_drop = malloc((size_t)L * E * sizeof(float));
    }
    doze_session *s = doze_session_new(m, err);
    doze_status st = DOZE_OK;
    if (!d->xn || (want_hn && !d->hn) || !d->target || !tr.x_in || !tr.xn || !tr.hn || !tr.in_norm || !tr.update_norm ||
        !tr.head_norm || !tr.block_norm || !tr.ffn_norm || !ffn_damage || !layer_damage || !attn_damage || !s ||
        (E && (!d->probs || !tr.expert_probs || !tr.expert_drop)) || (expert_targets && (!d->eb_sum || !d->eb_count)))
        st = s ? doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for calibration")
               : (doze_status)err->code;
    for (int t = 0; t < n_tokens && st == DOZE_OK; t++) {
        st = session_step(s, tokens[t], NULL, &tr, err);
        if (st != DOZE_OK || t < skip) continue;
        int i = t - skip;
        memcpy(d->xn + (size_t)i * L * D, tr.xn, (size_t)L * D * sizeof(float));
        if (d->hn) memcpy(d->hn + (size_t)i * L * D, tr.hn, (size_t)L * D * sizeof(float));
        if (E) memcpy(d->probs + (size_t)i * L * E, tr.expert_probs, (size_t)L * E * sizeof(float));
        if (!with_damage) continue;
        st = session_damage(s, &tr, layer_damage, attn_damage, nb ? ffn_damage : NULL, err);
        if (st != DOZE_OK) break;
        /* targets: log of the damage of skipping the layer; of each head:
         * the attention's damage shared by the heads' contribution norms; of
         * each FFN block: see below */
        for (int l = 0; l < L; l++) {
            float *y = d->target + ((size_t)i * L + l) * U;
            double total = 0;
            for (int h = 0; h < H; h++) total += tr.head_norm[(size_t)l * H + h];
            y[0] = (float)log(layer_damage[l] + LOG_FLOOR);
            for (int h = 0; h < H; h++) {
                double share = total > 0 ? tr.head_norm[(size_t)l * H + h] / total : 1.0 / H;
                y[1 + h] = (float)log(attn_damage[l] * share + LOG_FLOOR);
            }
            if (!nb) continue;
            /* a block's damage: the FFN's, times the block's share of the
             * FFN update's squared norm: damage_j = g ||W_down_j h_j||^2 with
             * g = damage / ||sum_j W_down_j h_j||^2 the measured gain from a
             * perturbation of the stream at this layer to the output (a
             * linearized, isotropic estimate; consistent with the measured
             * FFN damage when the blocks' updates are orthogonal) */
            const float *bn = tr.block_norm + (size_t)l * NB;
            double fn2 = (double)tr.ffn_norm[l] * tr.ffn_norm[l];
            for (int j = 0; j < NB; j++) {
                double share = fn2 > 0 ? (double)bn[j] * bn[j] / fn2 : 1.0 / NB;
                y[1 + H + j] = (float)log(ffn_damage[l] * share + LOG_FLOOR);
            }
            if (!expert_targets) continue;
            /* an expert's damage, the same way: the FFN's damage times the
             * squared distance its update moves when the expert alone is
             * dropped (the others renormalized, as the model's rule does)
             * over the update's squared norm. Dropping expert e of weight w
             * moves the update by w (y_e - update) / (1 - w), so the target
             * kept is that log damage less 2 log(w / (1 - w)): what is left,
             * averaged per expert, is the constant its predicted log damage
             * adds to the routing term at run time (gates_decide_experts).
             * The top expert (never dropped alone) and a lone one teach
             * nothing. */
            const float *pr = tr.expert_probs + (size_t)l * E, *dr = tr.expert_drop + (size_t)l * E;
            double psum = 0;
            for (int e = 0; e < E; e++)
                if (dr[e] > 0.0f) psum += pr[e];
            if (!(fn2 > 0) || !(psum > 0)) continue;
            for (int e = 0; e < E; e++) {
                const double w = dr[e] > 0.0f ? pr[e] / psum : 0.0;
                if (!(w > 0.0 && w < 1.0)) continue;
                const double dmg = ffn_damage[l] * (double)dr[e] * dr[e] / fn2;
                d->eb_sum[(size_t)l * E + e] += log(dmg + LOG_FLOOR) - 2.0 * log(w / (1.0 - w));
                d->eb_count[(size_t)l * E + e]++;
            }
        }
    }
    doze_session_free(s);
    free(tr.x_in);
    free(layer_damage);
    free(attn_damage);
    free(tr.xn);
    free(tr.hn);
    free(tr.in_norm);
    free(tr.update_norm);
    free(tr.head_norm);
    free(tr.block_norm);
    free(tr.ffn_norm);
    free(tr.expert_probs);
    free(tr.expert_drop);
    free(ffn_damage);
    return st;
}

/* ridge fit of layer l from the inputs in (n, n_layers, dim) (d->xn or
 * d->hn) to the targets c0 .. c0 + k: router rows (k, D) and bias (k) */
static doze_status fit_layer(const calib_data *d, const float *in, int c0, int k, int l, int L, int D,
                             float ridge, float *router, float *bias, doze_error *err) {
    const int n = D + 1;
    double *A = calloc((size_t)n * n, sizeof(double));
    double *B = calloc((size_t)n * k, sizeof(double));
    double *x = malloc((size_t)n * sizeof(double));
    if (!A || !B || !x) {
        free(A), free(B), free(x);
        return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory fitting the router");
    }
    for (int i = 0; i < d->n; i++) {
        const float *xn = in + ((size_t)i * L + l) * D;
        const float *y = d->target + ((size_t)i * L + l) * d->U + c0;
        for (int a = 0; a < D; a++) x[a] = xn[a];
        x[D] = 1.0;
        for (int a = 0; a < n; a++) {
            double xa = x[a];
            double *row = A + (size_t)a * n;
            for (int b = 0; b <= a; b++) row[b] += xa * x[b];
            for (int c = 0; c < k; c++) B[(size_t)a * k + c] += xa * y[c];
        }
    }
    double tr = 0;
    for (int a = 0; a < n; a++) tr += A[(size_t)a * n + a];
    double lam = ridge * (tr / n) + 1e-9;
    for (int a = 0; a < n; a++) {
        for (int b = 0; b < a; b++) A[(size_t)b * n + a] = A[(size_t)a * n + b];
        if (a < D) A[(size_t)a * n + a] += lam; /* the bias is not shrunk */
        else A[(size_t)a * n + a] += 1e-9 * (tr / n) + 1e-12;
    }
    int bad = cholesky_solve(A, B, n, k);
    if (!bad) {
        for (int c = 0; c < k; c++) {
            for (int a = 0; a < D; a++) router[(size_t)c * D + a] = (float)B[(size_t)a * k + c];
            bias[c] = (float)B[(size_t)D * k + c];
        }
    }
    free(A), free(B), free(x);
    if (bad) return doze_fail(err, DOZE_ERR_BAD_FORMAT, "router fit of layer %d is singular", l);
    return DOZE_OK;
}

/* budget -> threshold: mean compute of the calibration tokens on a grid of
 * thresholds, inverted by interpolation */
static doze_status tabulate(doze_gates *g, doze_model *m, const calib_data *d, doze_error *err) {
    const int L = g->n_layers, H = g->n_heads, D = g->dim, U = gates_rows(g);
    doze_cost_model cm;
    cost_model_init(&m->info, &cm);
    float *z = malloc((size_t)d->n * L * U * sizeof(float));
    double *ratio = malloc(GRID * sizeof(double));
    const int E = d->E;
    uint8_t *heads = malloc((size_t)H + (size_t)cm.n_blocks + (size_t)E);
    if (!z || !ratio || !heads) {
        free(z), free(ratio), free(heads);
        return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for the budget table");
    }
    uint8_t *blocks = heads + H, *experts = blocks + cm.n_blocks;
    for (int i = 0; i < d->n; i++)
        for (int l = 0; l < L; l++) {
            float *zl = z + ((size_t)i * L + l) * U;
            gates_score(g, m, l, d->xn + ((size_t)i * L + l) * D, zl);
            if (g->n_blocks) gates_score_blocks(g, m, l, d->hn + ((size_t)i * L + l) * D, zl + 1 + H);
        }
    for (int gi = 0; gi < GRID; gi++) {
        float ll = (float)(GRID_LO + (GRID_HI - GRID_LO) * gi / (GRID - 1));
        double sum = 0;
        for (int i = 0; i < d->n; i++) {
            int n_pos = d->first_pos + i + 1;
            double spent = L * cost_router(&cm);
            for (int l = 0; l < L; l++) {
                const float *zl = z + ((size_t)i * L + l) * U;
                int on = gates_decide(g, &cm, l, n_pos, zl, ll, heads);
                if (!on) continue;
                gates_decide_blocks(g, &cm, n_pos, zl + 1 + H, ll, blocks);
                if (E && blocks[0])
                    gates_decide_experts(g, &cm, l, n_pos, d->probs + ((size_t)i * L + l) * E, ll, experts);
                spent += cost_block_router(&cm, g->n_blocks) +
                         cost_of_layer(&cm, 1, heads, blocks, E ? experts : NULL, n_pos);
            }
            sum += spent / cost_dense(&cm, n_pos);
        }
        ratio[gi] = sum / (d->n > 0 ? d->n : 1); /* falls as the threshold rises */
    }
    for (int b = 0; b <= GATES_BUDGET_STEPS; b++) {
        double want = (double)b / GATES_BUDGET_STEPS;
        /* the lowest threshold whose compute fits the budget */
        int gi = 0;
        while (gi < GRID - 1 && ratio[gi] > want) gi++;
        float ll = (float)(GRID_LO + (GRID_HI - GRID_LO) * gi / (GRID - 1));
        if (gi > 0 && ratio[gi] <= want && ratio[gi - 1] > want) {
            /* interpolate between the grid points around want */
            double f = (ratio[gi - 1] - want) / (ratio[gi - 1] - ratio[gi]);
            float prev = (float)(GRID_LO + (GRID_HI - GRID_LO) * (gi - 1) / (GRID - 1));
            ll = prev + (float)f * (ll - prev);
        }
        g->log_lambda[b] = ll;
    }
    free(z), free(ratio), free(heads);
    return DOZE_OK;
}

/* The experts' constants (gates.h expert_bias): each expert's mean target;
 * an expert never dropped in calibration gets its layer's mean (no
 * evidence that it differs), a layer with none the mean over the model. */
static doze_status fit_experts(doze_gates *g, const calib_data *d, doze_error *err) {
    const int L = g->n_layers, E = d->E;
    g->expert_bias = malloc((size_t)L * E * sizeof(float));
    if (!g->expert_bias) return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for the expert gates");
    g->n_experts = E;
    double all = 0;
    long all_n = 0;
    for (int i = 0; i < L * E; i++) all += d->eb_sum[i], all_n += d->eb_count[i];
    const double model_mean = all_n ? all / (double)all_n : log(LOG_FLOOR);
    for (int l = 0; l < L; l++) {
        double sum = 0;
        long cnt = 0;
        for (int e = 0; e < E; e++) sum += d->eb_sum[(size_t)l * E + e], cnt += d->eb_count[(size_t)l * E + e];
        const double layer_mean = cnt ? sum / (double)cnt : model_mean;
        for (int e = 0; e < E; e++) {
            const int c = d->eb_count[(size_t)l * E + e];
            g->expert_bias[(size_t)l * E + e] = (float)(c ? d->eb_sum[(size_t)l * E + e] / c : layer_mean);
        }
    }
    return DOZE_OK;
}

/* The tokens a fit reads: at most the context, the protected first ones
 * skipped (at least BOS), and at least 8 left to fit on. */
static doze_status calib_window(const doze_gates_params *gp, const doze_model_info *c, int *n, int *skip, const char *what,
                                doze_error *err) {
    if (*n < 0) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "%s: %d tokens", what, *n);
    if (*n > c->context_length) *n = c->context_length;
    *skip = gp->protect_tokens < 1 ? 1 : gp->protect_tokens;
    if (*skip > c->context_length) /* never more than the window it is cut from (and no overflow below) */
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "%s: %d protected tokens, the context holds %d", what,
                         *skip, c->context_length);
    if (*n - *skip < 8)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "%s needs at least %d tokens, got %d", what, *skip + 8, *n);
    return DOZE_OK;
}

doze_status doze_gates_calibrate(doze_model *m, const int32_t *tokens, int n,
                                 const doze_gates_params *p, doze_gates **out, doze_error *err) {
    if (!m || !tokens || !out) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no model, tokens or output");
    *out = NULL;
    const doze_model_info *c = &m->info;
    doze_gates_params params = p ? *p : doze_gates_default_params();
    if (params.protect_layers < 0 || params.protect_tokens < 0 || !(params.ridge >= 0.0f))
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT,
                         "gate params out of range (protected layers %d and tokens %d must be >= 0, ridge %g >= 0)",
                         params.protect_layers, params.protect_tokens, (double)params.ridge);
    int skip = 0;
    doze_status win = calib_window(&params, c, &n, &skip, "calibration", err);
    if (win != DOZE_OK) return win;
    const int nb = params.ffn_gates ? m->n_ffn_blocks : 0;
    doze_gates *g = gates_alloc(c->n_layers, c->n_heads, nb, c->dim);
    if (!g) return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for gates");
    g->params = params;
    g->ffn_block = c->ffn_block;
    g->vocab_size = c->vocab_size;
    g->fingerprint = gates_model_fingerprint(m);
    calib_data d = {0, 0, 0, NULL, NULL, NULL, 0, NULL, NULL, NULL};
    doze_status st = collect(m, tokens, n, skip, 1, nb, nb > 0, &d, err);
    if (st == DOZE_OK && d.eb_sum) st = fit_experts(g, &d, err);
    const int rows = gates_rows(g), first = 1 + c->n_heads;
    for (int l = 0; l < c->n_layers && st == DOZE_OK; l++) {
        /* the layer and its heads from xn; its FFN blocks from hn */
        float *R = g->router + (size_t)l * rows * c->dim, *bias = g->bias + (size_t)l * rows;
        st = fit_layer(&d, d.xn, 0, first, l, c->n_layers, c->dim, params.ridge, R, bias, err);
        if (st == DOZE_OK && nb)
            st = fit_layer(&d, d.hn, first, nb, l, c->n_layers, c->dim, params.ridge,
                           R + (size_t)first * c->dim, bias + first, err);
    }
    if (st == DOZE_OK && params.random_seed) {
        /* random routers: scores that vary with the input but mean nothing */
        uint64_t r = params.random_seed;
        size_t count = (size_t)c->n_layers * rows * c->dim;
        for (size_t i = 0; i < count; i++) {
            r ^= r >> 12, r ^= r << 25, r ^= r >> 27;
            g->router[i] = (float)(((r * 0x2545F4914F6CDD1Dull) >> 40) / 8388608.0 - 1.0);
        }
        memset(g->bias, 0, (size_t)c->n_layers * rows * sizeof(float));
        strcpy(g->kind, "random");
    }
    if (st == DOZE_OK) st = tabulate(g, m, &d, err);
    calib_free(&d);
    if (st != DOZE_OK) {
        doze_gates_free(g);
        return st;
    }
    *out = g;
    return DOZE_OK;
}

doze_status gates_refit_experts(doze_model *m, doze_gates *g, const int32_t *tokens, int n, doze_error *err) {
    if (!m || !g || !tokens) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no model, gates or tokens");
    const doze_model_info *c = &m->info;
    /* the experts' targets need the FFN's damage, which needs its block gate */
    if (!c->n_experts || g->n_blocks == 0) return DOZE_OK;
    if (g->n_layers != c->n_layers || g->n_heads != c->n_heads || g->dim != c->dim ||
        g->n_blocks != m->n_ffn_blocks)
        return doze_fail(err, DOZE_ERR_BAD_SHAPE, "gates do not fit this model");
    int skip = 0;
    doze_status win = calib_window(&g->params, c, &n, &skip, "calibrating the experts", err);
    if (win != DOZE_OK) return win;
    calib_data d = {0, 0, 0, NULL, NULL, NULL, 0, NULL, NULL, NULL};
    doze_status st = collect(m, tokens, n, skip, 1, g->n_blocks, 0, &d, err);
    if (st == DOZE_OK) {
        float *old = g->expert_bias; /* kept until the new constants exist */
        const int old_e = g->n_experts;
        g->expert_bias = NULL;
        st = fit_experts(g, &d, err);
        if (st == DOZE_OK) {
            free(old);
        } else {
            g->expert_bias = old;
            g->n_experts = old_e;
        }
    }
    calib_free(&d);
    return st;
}

doze_status doze_gates_retune(doze_model *m, doze_gates *g, const int32_t *tokens, int n,
                              doze_error *err) {
    if (!m || !g || !tokens) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no model, gates or tokens");
    const doze_model_info *c = &m->info;
    if (g->n_layers != c->n_layers || g->n_heads != c->n_heads || g->dim != c->dim ||
        (g->n_blocks != 0 && g->n_blocks != m->n_ffn_blocks))
        return doze_fail(err, DOZE_ERR_BAD_SHAPE, "gates do not fit this model");
    int skip = 0;
    doze_status win = calib_window(&g->params, c, &n, &skip, "retuning", err);
    if (win != DOZE_OK) return win;
    calib_data d = {0, 0, 0, NULL, NULL, NULL, 0, NULL, NULL, NULL};
    doze_status st = collect(m, tokens, n, skip, 0, 0, g->n_blocks > 0, &d, err);
    if (st == DOZE_OK) st = tabulate(g, m, &d, err);
    calib_free(&d);
    return st;
}
