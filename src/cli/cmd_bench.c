/* `doze bench`: steady-state decode speed with the SIMD and the reference
 * kernels, and the bandwidth of a plain SIMD read loop over the model's own
 * weights, all in one run so that the ratios mean something on a noisy
 * machine. */
#include <stdlib.h>
#include <string.h>

#include "gates.h"
#include "kernels.h"
#include "types.h"
#include "model.h"
#include "cli_util.h"
#include "commands.h"

typedef struct {
    double tok_per_s;
    double gb_per_s;
} speed;

/* Bytes of weights one decode step reads: every layer matrix, the classifier,
 * one embedding row. */
static double bytes_per_token(const doze_model *m) {
    const doze_model_info *c = &m->info;
    double out = (double)doze_type_row_bytes(m->output.type, (uint64_t)c->dim) * c->vocab_size;
    double emb = (double)doze_type_row_bytes(m->token_embd.type, (uint64_t)c->dim);
    return (double)c->layer_weight_bytes + out + emb;
}

/* A forced uniform mask for step `step`: round(b * n_layers) layers run (at
 * least one), spread evenly and rotated by one layer every step so that the
 * skipped weights change from token to token as they do under real gates
 * (a fixed mask would let the running layers sit in a large cache); every
 * head of a running layer on. */
static void uniform_mask(int n_layers, double b, int step, uint8_t *layer_on) {
    int keep = (int)(b * n_layers + 0.5);
    if (keep < 1) keep = 1;
    memset(layer_on, 0, (size_t)n_layers);
    for (int i = 0; i < keep; i++) layer_on[((int)((double)i * n_layers / keep) + step) % n_layers] = 1;
}

/* A forced mask that skips only FFN blocks: every layer and head
 * runs, and per layer the number of FFN blocks that brings the step's
 * compute (at position pos) to b, spread evenly and rotated every step (and
 * staggered across layers) so that the skipped weights change from token
 * to token. */
static void ffn_mask(const doze_model *m, double b, int step, int pos, uint8_t *layer_on,
                     uint8_t *ffn_on) {
    const doze_model_info *c = doze_model_get_info(m);
    const int nb = m->n_ffn_blocks, nl = c->n_layers;
    doze_cost_model cm;
    cost_model_init(c, &cm);
    double dense = cost_dense(&cm, pos + 1);
    double attn = nl * (cm.kv + c->n_heads * (cm.head + cm.head_per_pos * (pos + 1)));
    double frac = (b * dense - attn) / (nl * cm.ffn);
    int keep = (int)(frac * nb + 0.5);
    if (keep < 0) keep = 0;
    if (keep > nb) keep = nb;
    memset(layer_on, 1, (size_t)nl);
    memset(ffn_on, 0, (size_t)nl * (size_t)nb);
    for (int l = 0; l < nl; l++)
        for (int i = 0; i < keep; i++)
            ffn_on[(size_t)l * nb + ((int)((double)i * nb / keep) + step + 3 * l) % nb] = 1;
}

/* argmax of l(n), first on ties. A function of its own, called per token,
 * so that in wasm V8 optimizes it (a loop inside the benchmark's own
 * once-called function would stay in the baseline compiler's code: ~150 us
 * per token over 32000 logits). */
__attribute__((noinline)) static int greedy_pick(const float *l, int n) {
    int best = 0;
    float bv = l[0];
    for (int v = 1; v < n; v++)
        if (l[v] > bv) {
            bv = l[v];
            best = v;
        }
    return best;
}

/* Greedy decode of steps tokens (after 4 warm-up steps): dense; or under
 * forced uniform masks (layer_on, and ffn_on for FFN-only masks) at budget;
 * or, with gates, under the router's own decisions at budget. */
static int decode_run(doze_model *m, int steps, const doze_gates *gates, double budget,
                      uint8_t *layer_on, uint8_t *ffn_on, speed *out, double *compute) {
    doze_error e;
    doze_session *s = doze_session_new(m, &e);
    if (!s) return cli_print_error("bench", &e);
    if (gates && (doze_session_set_gates(s, gates, &e) != DOZE_OK ||
                  doze_session_set_budget(s, (float)budget, &e) != DOZE_OK)) {
        doze_session_free(s);
        return cli_print_error("bench", &e);
    }
    const doze_model_info *c = doze_model_get_info(m);
    int token = c->bos_id >= 0 ? c->bos_id : 0;
    const int warmup = 4;
    double t0 = 0, sum = 0;
    for (int i = 0; i < steps + warmup; i++) {
        if (i == warmup) t0 = io_now_ms();
        if (doze_session_pos(s) >= c->context_length) doze_session_reset(s);
        if (layer_on && ffn_on) ffn_mask(m, budget, i, doze_session_pos(s), layer_on, ffn_on);
        else if (layer_on) uniform_mask(c->n_layers, budget, i, layer_on);
        doze_status st = layer_on ? doze_session_step_masked(s, token, &(doze_mask){layer_on, NULL, ffn_on}, &e)
                                  : doze_session_step(s, token, &e);
        if (st != DOZE_OK) {
            doze_session_free(s);
            return cli_print_error("bench", &e);
        }
        if (i >= warmup) sum += doze_session_compute(s);
        token = greedy_pick(doze_session_logits(s), c->vocab_size);
    }
    double ms = io_now_ms() - t0;
    doze_session_free(s);
    out->tok_per_s = steps * 1000.0 / ms;
    out->gb_per_s = out->tok_per_s * bytes_per_token(m) / 1e9;
    if (compute) *compute = sum / steps;
    return 0;
}

/* decode speed under forced uniform masks at several budgets, against dense,
 * beside the Amdahl bound (embedding and classifier are not skippable);
 * ffn: masks that skip only FFN blocks */
static int skip_table(doze_model *m, int steps, int json, int ffn) {
    const doze_model_info *c = doze_model_get_info(m);
    const double layer_budgets[4] = {1.0, 0.75, 0.5, 0.3}, ffn_budgets[4] = {1.0, 0.75, 0.6, 0.5};
    const double *budgets = ffn ? ffn_budgets : layer_budgets;
    uint8_t *mask = malloc((size_t)c->n_layers);
    uint8_t *fmask = malloc((size_t)c->n_layers * (size_t)m->n_ffn_blocks + 1);
    if (!mask || !fmask) {
        free(mask), free(fmask);
        return 1;
    }
    double layer_share = (double)c->layer_weight_bytes / bytes_per_token(m);
    speed dense = {0, 0};
    int rc = 0;
    if (!json) out_printf("%sbudget  compute  tok/s     speedup  amdahl bound\n", ffn ? "FFN blocks only\n" : "");
    for (int i = 0; i < 4 && rc == 0; i++) {
        speed sp = {0, 0};
        double compute = 1.0;
        rc = decode_run(m, steps, NULL, budgets[i], i == 0 ? NULL : mask, ffn ? fmask : NULL, &sp,
                        &compute);
        if (rc) break;
        if (i == 0) dense = sp;
        double bound = 1.0 / ((1.0 - layer_share) + layer_share * compute);
        if (json)
            out_printf("{\"masks\":\"%s\",\"budget\":%.2f,\"compute\":%.4f,\"tok_s\":%.2f,"
                       "\"speedup\":%.3f,\"amdahl\":%.3f}\n",
                       ffn ? "ffn" : "layers", budgets[i], compute, sp.tok_per_s, sp.tok_per_s / dense.tok_per_s, bound);
        else
            out_printf("%.2f    %.3f    %8.2f  %.2fx    %.2fx\n", budgets[i], compute, sp.tok_per_s,
                       sp.tok_per_s / dense.tok_per_s, bound);
    }
    free(mask);
    free(fmask);
    return rc;
}

static int run_decode(doze_model *m, int steps, speed *out) {
    return decode_run(m, steps, NULL, 1.0, NULL, NULL, out, NULL);
}

/* decode under the gates at a budget (the router decides), beside dense */
static int budget_bench(doze_model *m, const cli_args *a, double budget, int steps, int json) {
    doze_gates *g = cli_gates(a, m, 1, json);
    if (!g) return 1;
    speed dense = {0, 0}, gated = {0, 0};
    double compute = 1.0;
    int rc = run_decode(m, steps, &dense);
    if (!rc) rc = decode_run(m, steps, g, budget, NULL, NULL, &gated, &compute);
    if (!rc) {
        if (json)
            out_printf("{\"budget\":%.3f,\"compute\":%.4f,\"dense_tok_s\":%.2f,\"gated_tok_s\":%.2f,"
                       "\"speedup\":%.3f}\n",
                       budget, compute, dense.tok_per_s, gated.tok_per_s, gated.tok_per_s / dense.tok_per_s);
        else
            out_printf("budget %.2f: compute %.3f, %.2f tok/s vs dense %.2f tok/s: %.2fx\n", budget,
                       compute, gated.tok_per_s, dense.tok_per_s, gated.tok_per_s / dense.tok_per_s);
    }
    doze_gates_free(g);
    return rc;
}

/* Prompt processing: a prompt of n tokens (BOS, then a fixed
 * pseudo-random walk over the vocabulary) through doze_session_prefill,
 * best of `reps` runs (the first one is a warm-up); *first_ms: the first
 * run's time to its logits. */
static int run_prefill(doze_model *m, int n, int reps, double *tok_s, double *first_ms) {
    doze_error e;
    const doze_model_info *c = doze_model_get_info(m);
    if (n > c->context_length) n = c->context_length;
    int32_t *toks = malloc((size_t)n * sizeof *toks);
    doze_session *s = toks ? doze_session_new(m, &e) : NULL;
    if (!s) {
        free(toks);
        return cli_print_error("bench", &e);
    }
    uint32_t r = 1;
    for (int i = 0; i < n; i++) {
        r = r * 1664525u + 1013904223u;
        toks[i] = i == 0 && c->bos_id >= 0 ? c->bos_id : (int32_t)((r >> 8) % (uint32_t)c->vocab_size);
    }
    double best = 1e30;
    for (int k = 0; k < reps + 1; k++) {
        doze_session_reset(s);
        double t0 = io_now_ms();
        if (doze_session_prefill(s, toks, n, &e) != DOZE_OK) {
            doze_session_free(s);
            free(toks);
            return cli_print_error("bench", &e);
        }
        double ms = io_now_ms() - t0;
        if (k == 0 && first_ms) *first_ms = ms;
        if (k > 0 && ms < best) best = ms;
    }
    *tok_s = n * 1000.0 / best;
    doze_session_free(s);
    free(toks);
    return 0;
}

/* best of several passes of the read loop over the model's arena */
static double read_loop_gbs(const doze_model *m, uint32_t *sink) {
    size_t n = m->arena_size / 64 * 64;
    if (n == 0) return 0.0;
    double best = 0.0;
    for (int pass = 0; pass < 8; pass++) {
        double t0 = io_now_ms();
        *sink ^= doze_read_probe(m->arena, n);
        double ms = io_now_ms() - t0;
        double gbs = (double)n / (ms * 1e6 + 1e-9);
        if (gbs > best) best = gbs;
    }
    return best;
}

/* The matrix-vector products of one dense decode step alone (every layer's
 * Q, K, V, per-head output, gate, up and per-block down projections, then
 * the classifier), on a fixed activation, best of 5 passes, as tokens/s:
 * what decode could reach with these kernels if attention, norms, RoPE,
 * sampling and the rest cost nothing. A ceiling for the ratios between
 * types that the kernels themselves set. 0 when out of memory. */
static double matvecs_tok_s(const doze_model *m) {
    const doze_model_info *c = &m->info;
    int n = c->dim > c->hidden_dim ? c->dim : c->hidden_dim;
    if (c->n_heads * c->head_dim > n) n = c->n_heads * c->head_dim;
    int ny = n > c->vocab_size ? n : c->vocab_size;
    float *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)ny * sizeof *y);
    void *xq = malloc(((size_t)n / DOZE_QK8_0 + 1) * sizeof(doze_block_q8_0));
    double best = 0.0;
    if (x && y && xq) {
        for (int i = 0; i < n; i++) x[i] = (float)((i * 37) % 17 - 8) * 0.0625f;
        for (int pass = 0; pass < 5; pass++) {
            double t0 = io_now_ms();
            for (int l = 0; l < c->n_layers; l++) {
                const doze_layer *L = &m->layers[l];
                const doze_matrix *qkv[3] = {&L->wq, &L->wk, &L->wv}, *gu[2] = {&L->w_gate, &L->w_up};
                model_prepare_input(m, qkv, 3, x, xq); /* once, as decode does */
                for (int i = 0; i < 3; i++) model_matvec_prepared(m, y, qkv[i], x, xq);
                for (int h = 0; h < c->n_heads; h++) model_matvec(m, y, &L->wo_head[h], x, xq);
                model_prepare_input(m, gu, 2, x, xq);
                for (int i = 0; i < 2; i++) model_matvec_prepared(m, y, gu[i], x, xq);
                for (int j = 0; j < m->n_ffn_blocks; j++) model_matvec(m, y, &L->w_down_blk[j], x, xq);
            }
            model_matvec(m, y, &m->output, x, xq);
            double ms = io_now_ms() - t0;
            if (ms > 0 && 1000.0 / ms > best) best = 1000.0 / ms;
        }
    }
    free(x), free(y), free(xq);
    return best;
}

/* ---- several models side by side (ratios under one load) -------------------- */

#define BENCH_MAX_MODELS 8

/* One read-loop pass over the model's weights, GB/s */
static double read_pass_gbs(const doze_model *m, uint32_t *sink) {
    size_t n = m->arena_size / 64 * 64;
    if (n == 0) return 0.0;
    double t0 = io_now_ms();
    *sink ^= doze_read_probe(m->arena, n);
    return (double)n / ((io_now_ms() - t0) * 1e6 + 1e-9);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#define BENCH_MAX_ROUNDS 64

/* One decode round per model, in turn, `rounds` times: each round decodes
 * `steps` greedy tokens after 2 untimed ones (the previous model's round has
 * just evicted this one's weights from the caches); each model keeps its
 * best round (steady state) and its mean. With read_best: before each
 * round, one read-loop pass over the same model's weights, so that decode
 * and read loop are sampled in the same minutes; read_best[i] keeps the
 * best pass and ratio[i] the median over rounds of (the round's decode GB/s
 * / its read pass's GB/s). Sessions restart when full. */
static int decode_rounds(doze_model **ms, int n, int rounds, int steps, speed *best, speed *mean,
                         double *read_best, double *ratio, uint32_t *sink) {
    doze_error e;
    doze_session *ss[BENCH_MAX_MODELS] = {0};
    int token[BENCH_MAX_MODELS];
    double total_ms[BENCH_MAX_MODELS] = {0};
    double ratios[BENCH_MAX_MODELS][BENCH_MAX_ROUNDS];
    int rc = 0;
    if (rounds > BENCH_MAX_ROUNDS) rounds = BENCH_MAX_ROUNDS;
    for (int i = 0; i < n && rc == 0; i++) {
        ss[i] = doze_session_new(ms[i], &e);
        if (!ss[i]) rc = cli_print_error("bench", &e);
        const doze_model_info *c = doze_model_get_info(ms[i]);
        token[i] = c->bos_id >= 0 ? c->bos_id : 0;
        best[i].tok_per_s = 0.0;
    }
    for (int r = 0; r < rounds && rc == 0; r++) {
        for (int i = 0; i < n && rc == 0; i++) {
            const doze_model_info *c = doze_model_get_info(ms[i]);
            double read = 0.0;
            if (read_best) {
                read = read_pass_gbs(ms[i], sink);
                if (read > read_best[i]) read_best[i] = read;
            }
            double t0 = 0;
            for (int k = 0; k < steps + 2 && rc == 0; k++) {
                if (k == 2) t0 = io_now_ms();
                if (doze_session_pos(ss[i]) >= c->context_length) doze_session_reset(ss[i]);
                if (doze_session_step(ss[i], token[i], &e) != DOZE_OK) {
                    rc = cli_print_error("bench", &e);
                    break;
                }
                token[i] = greedy_pick(doze_session_logits(ss[i]), c->vocab_size);
            }
            double ms_round = io_now_ms() - t0;
            total_ms[i] += ms_round;
            double tps = steps * 1000.0 / ms_round;
            if (tps > best[i].tok_per_s) best[i].tok_per_s = tps;
            ratios[i][r] = read > 0 ? tps * bytes_per_token(ms[i]) / 1e9 / read : 0.0;
        }
    }
    for (int i = 0; i < n; i++) {
        doze_session_free(ss[i]);
        double bpt = bytes_per_token(ms[i]);
        best[i].gb_per_s = best[i].tok_per_s * bpt / 1e9;
        mean[i].tok_per_s = total_ms[i] > 0 ? (double)rounds * steps * 1000.0 / total_ms[i] : 0.0;
        mean[i].gb_per_s = mean[i].tok_per_s * bpt / 1e9;
        if (ratio && rc == 0) {
            qsort(ratios[i], (size_t)rounds, sizeof(double), cmp_double);
            ratio[i] = rounds % 2 ? ratios[i][rounds / 2] : 0.5 * (ratios[i][rounds / 2 - 1] + ratios[i][rounds / 2]);
        }
    }
    return rc;
}

/* `doze bench A.gguf B.gguf ...`: the models' decode interleaved round by
 * round in one run, so that ratios between types (Q8_0 vs F32, Q4_0 vs
 * Q8_0) are measured under the same machine load; per model also the read
 * loop over its own weights (interleaved the same way, best pass) and the
 * 128-token prefill. */
static int compare_models(const cli_args *a, int n_paths, int steps, int json) {
    doze_model *ms[BENCH_MAX_MODELS] = {0};
    speed best[BENCH_MAX_MODELS], mean[BENCH_MAX_MODELS];
    double read_gbs[BENCH_MAX_MODELS] = {0}, prompt[BENCH_MAX_MODELS] = {0}, first_ms[BENCH_MAX_MODELS] = {0};
    double mv[BENCH_MAX_MODELS] = {0};
    int rc = 0;
    doze_model_params mp = doze_model_default_params();
    if (cli_threads_option(a, &mp)) return 2;
    mp.context_length = 256;
    for (int i = 0; i < n_paths && rc == 0; i++) {
        ms[i] = cli_load_model(cli_pos(a, i), &mp);
        if (!ms[i]) rc = 1;
    }
    uint32_t sink = 0;
    const int rounds = 8;
    if (rc == 0) {
        for (int pass = 0; pass < 2; pass++)
            for (int i = 0; i < n_paths; i++) {
                double g = read_loop_gbs(ms[i], &sink);
                if (g > read_gbs[i]) read_gbs[i] = g;
            }
        for (int i = 0; i < n_paths && rc == 0; i++) rc = run_prefill(ms[i], 128, 3, &prompt[i], &first_ms[i]);
        for (int pass = 0; pass < 2; pass++) /* interleaved like the read loop */
            for (int i = 0; i < n_paths; i++) {
                double t = matvecs_tok_s(ms[i]);
                if (t > mv[i]) mv[i] = t;
            }
    }
    double ratio[BENCH_MAX_MODELS] = {0};
    if (rc == 0) rc = decode_rounds(ms, n_paths, rounds, steps, best, mean, read_gbs, ratio, &sink);
    if (rc == 0) {
        if (!json)
            out_printf("decode: best of %d rounds of %d tokens per model, the models in turn; read loop: one pass\n"
                       "over the model's weights before each round (best pass; 'median' = median over rounds of\n"
                       "the round's decode GB/s / its pass's); matvecs: the step's matrix-vector products alone\n"
                       "(best of 10 passes), the ceiling these kernels put on decode; 'vs' = decode / the first model's\n"
                       "type   MB/token  prompt tok/s  decode tok/s  (mean)    GB/s  of read loop (median)  matvecs tok/s  vs %s\n",
                       rounds, steps, doze_type_name(doze_model_get_info(ms[0])->weight_type));
        for (int i = 0; i < n_paths; i++) {
            const doze_model_info *c = doze_model_get_info(ms[i]);
            double vs_first = best[i].tok_per_s / best[0].tok_per_s;
            if (json)
                out_printf("{\"model\":%d,\"type\":\"%s\",\"dim\":%d,\"layers\":%d,\"mb_per_token\":%.3f,"
                           "\"prompt_tok_s\":%.2f,\"prompt_first_ms\":%.2f,\"decode_tok_s\":%.2f,"
                           "\"decode_mean_tok_s\":%.2f,\"gb_s\":%.3f,\"read_loop_gb_s\":%.3f,"
                           "\"of_read_loop\":%.3f,\"of_read_loop_median\":%.3f,\"matvecs_tok_s\":%.2f,"
                           "\"vs_first\":%.3f,\"sink\":%u}\n",
                           i, doze_type_name(c->weight_type), c->dim, c->n_layers, bytes_per_token(ms[i]) / 1e6,
                           prompt[i], first_ms[i], best[i].tok_per_s, mean[i].tok_per_s, best[i].gb_per_s,
                           read_gbs[i], best[i].gb_per_s / read_gbs[i], ratio[i], mv[i], vs_first, sink & 1u);
            else
                out_printf("%-5s  %8.2f  %12.1f  %12.1f  (%6.1f)  %6.2f  %5.0f%% of %5.1f (%3.0f%%)  %13.1f  %.2fx%s\n",
                           doze_type_name(c->weight_type), bytes_per_token(ms[i]) / 1e6, prompt[i],
                           best[i].tok_per_s, mean[i].tok_per_s, best[i].gb_per_s,
                           100.0 * best[i].gb_per_s / read_gbs[i], read_gbs[i], 100.0 * ratio[i], mv[i], vs_first,
                           (sink & 1u) ? " " : "");
        }
    }
    for (int i = 0; i < n_paths; i++) doze_model_free(ms[i]);
    return rc;
}

static const char *const bench_forms[] = {"MODEL", "MODEL MODEL...", "MODEL --skip-table [ffn]", NULL};
static const cli_option bench_options[] = {
    {"--steps", CLI_INT, "N", "decode steps to time (default 64; 16 per round side by side)", NULL, 0},
    {"--json", CLI_FLAG, NULL, "one JSON record per line", NULL, 0},
    {"--skip-table", CLI_FLAG, NULL, "speed under forced uniform masks at b = 1, 0.75, 0.5, 0.3\n"
                                     "(then 'ffn': masks that skip FFN blocks only)", NULL, 0},
    CLI_BUDGET_OPTION,
    CLI_GATE_OPTIONS,
    CLI_THREADS_OPTION,
    CLI_OPTIONS_END,
};
const cli_command cmd_bench_spec = {
    "bench", bench_forms, 1, BENCH_MAX_MODELS, "decode and prefill speed, SIMD vs reference kernels",
    "Decode tokens/s and GB/s with the SIMD and the reference kernels beside a plain read\n"
    "loop over the model's weights, and the 128-token prefill. Several models: their decode\n"
    "interleaved round by round, so that the ratios between them mean something.\n"
    "--skip-table: speed under forced masks; --budget B: decode under the gates beside dense.",
    bench_options,
};

int cmd_bench(int argc, char **argv) {
    cli_args a;
    int prc = cli_parse(&cmd_bench_spec, argc, argv, &a);
    if (prc >= 0) return prc;
    const char *path = cli_pos(&a, 0);
    long long steps = cli_get_int(&a, "--steps", 64);
    int json = cli_has(&a, "--json");
    double budget = cli_get_float(&a, "--budget", 1.0);
    if (steps < 1 || steps > (1 << 24)) return cli_usage_error(&a, "--steps must be in 1..16777216");
    if (!(budget > 0.0 && budget <= 1.0)) return cli_usage_error(&a, "--budget must be in (0, 1]");
    int skip = cli_has(&a, "--skip-table"), ffn = 0;
    if (skip) {
        if (a.n_pos > 2 || (a.n_pos == 2 && strcmp(cli_pos(&a, 1), "ffn") != 0))
            return cli_usage_error(&a, "--skip-table takes one model (and then 'ffn' or nothing), not \"%s\"",
                                   cli_pos(&a, 1));
        ffn = a.n_pos == 2;
    }
    int gated = budget < 1.0 || cli_has(&a, "--gates");
    if (a.n_pos > 1 && !skip) {
        if (gated) return cli_usage_error(&a, "--budget and --gates take one model");
        return compare_models(&a, a.n_pos, cli_has(&a, "--steps") ? (int)steps : 16, json);
    }
    doze_model_params mp = doze_model_default_params();
    if (cli_threads_option(&a, &mp)) return 2;
    mp.context_length = 256;
    doze_model *m = cli_load_model(path, &mp);
    if (!m) return 1;
    if (gated) {
        int rc = budget_bench(m, &a, budget, (int)steps, json);
        doze_model_free(m);
        return rc;
    }
    if (skip) {
        int rc = skip_table(m, (int)steps, json, ffn);
        doze_model_free(m);
        return rc;
    }
    const doze_model_info *c = doze_model_get_info(m);
    speed simd = {0, 0}, ref = {0, 0};
    uint32_t sink = 0;
    double read_gbs = read_loop_gbs(m, &sink);
    const int n_prompt = 128;
    double prompt_simd = 0, prompt_ref = 0, prompt_first_ms = 0;
    int rc = run_prefill(m, n_prompt, 3, &prompt_simd, &prompt_first_ms);
    /* steady state: best of 8 rounds of steps/8 tokens, as the read loop is
     * a best of passes (the mean is printed beside it); a read pass before
     * each round (median of the per-round ratios printed too) */
    speed simd_mean = {0, 0};
    const int round_steps = steps / 8 > 1 ? (int)(steps / 8) : 1;
    double ratio = 0.0;
    if (rc == 0) rc = decode_rounds(&m, 1, 8, round_steps, &simd, &simd_mean, &read_gbs, &ratio, &sink);
    if (rc == 0) {
        model_use_kernels(m, DOZE_KERNELS_REFERENCE);
        int ref_steps = (int)(steps / 4 > 4 ? steps / 4 : 4);
        rc = run_decode(m, ref_steps, &ref);
        if (rc == 0) rc = run_prefill(m, 32, 1, &prompt_ref, NULL);
        model_use_kernels(m, DOZE_KERNELS_SIMD);
    }
    double read2 = read_loop_gbs(m, &sink);
    if (read2 > read_gbs) read_gbs = read2;
    if (rc == 0) {
        double mb = bytes_per_token(m) / 1e6;
        if (json) {
            out_printf("{\"type\":\"%s\",\"dim\":%d,\"layers\":%d,\"vocab\":%d,"
                       "\"mb_per_token\":%.3f,\"simd_tok_s\":%.2f,\"simd_mean_tok_s\":%.2f,\"simd_gb_s\":%.3f,"
                       "\"reference_tok_s\":%.2f,\"reference_gb_s\":%.3f,\"read_loop_gb_s\":%.3f,"
                       "\"simd_over_reference\":%.3f,\"simd_of_read_loop\":%.3f,\"simd_of_read_loop_median\":%.3f,"
                       "\"prompt_tokens\":%d,\"prompt_tok_s\":%.2f,\"prompt_first_ms\":%.2f,"
                       "\"reference_prompt_tok_s\":%.2f,\"prompt_over_decode\":%.3f,\"sink\":%u}\n",
                       doze_type_name(c->weight_type), c->dim, c->n_layers, c->vocab_size, mb,
                       simd.tok_per_s, simd_mean.tok_per_s, simd.gb_per_s, ref.tok_per_s, ref.gb_per_s, read_gbs,
                       simd.tok_per_s / ref.tok_per_s, simd.gb_per_s / read_gbs, ratio, n_prompt, prompt_simd,
                       prompt_first_ms, prompt_ref, prompt_simd / simd.tok_per_s, sink & 1u);
        } else {
            out_printf("model      dim %d, hidden %d, layers %d, heads %d/%d, vocab %d, %s, "
                       "%.2f MB read per token\n",
                       c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
                       c->vocab_size, doze_type_name(c->weight_type), mb);
            out_printf("prompt     %8.2f tok/s  (%d-token prefill, best of 3; first run %.1f ms)\n",
                       prompt_simd, n_prompt, prompt_first_ms);
            out_printf("ref prompt %8.2f tok/s  (32-token prefill, reference kernels)\n", prompt_ref);
            out_printf("simd       %8.2f tok/s  %6.2f GB/s  (best of 8 rounds of %d tokens; mean %.2f tok/s)\n",
                       simd.tok_per_s, simd.gb_per_s, round_steps, simd_mean.tok_per_s);
            out_printf("reference  %8.2f tok/s  %6.2f GB/s\n", ref.tok_per_s, ref.gb_per_s);
            out_printf("read loop            %6.2f GB/s (best pass over %.2f MB; passes before and between the rounds)\n",
                       read_gbs, (double)m->arena_size / 1e6);
            out_printf("simd / reference %.2fx, simd / read loop %.0f%% (median per round %.0f%%), "
                       "prompt / decode %.2fx%s\n",
                       simd.tok_per_s / ref.tok_per_s, 100.0 * simd.gb_per_s / read_gbs, 100.0 * ratio,
                       prompt_simd / simd.tok_per_s, (sink & 1u) ? " " : "");
        }
    }
    doze_model_free(m);
    return rc;
}
