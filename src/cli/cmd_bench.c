/* `doze bench`: steady-state decode speed with the SIMD and the reference
 * kernels, and the bandwidth of a plain SIMD read loop over the model's own
 * weights, all in one run so that the ratios mean something on a noisy
 * machine. Every figure is a series of rounds, the things compared taking
 * their rounds in turn (A, B, A, B...), printed as median (min-max), and
 * marked UNRELIABLE when its rounds spread more than 2x (rounds.h); a ratio
 * is the series of per-round ratios. */
#include <stdlib.h>
#include <string.h>

#include "gates.h"
#include "kernels.h"
#include "types.h"
#include "model.h"
#include "cli_util.h"
#include "rounds.h"
#include "commands.h"

typedef struct {
    double tok_per_s;
    double gb_per_s;
    double experts; /* a mixture: mean experts per (token, layer) whose FFN ran */
} speed;

/* Bytes of weights one decode step reads: every layer matrix, the classifier,
 * one embedding row. */
static double bytes_per_token(const doze_model *m) {
    const doze_model_info *c = &m->info;
    double out = (double)doze_type_row_bytes(m->output.type, (uint64_t)c->dim) * c->vocab_size;
    double emb = (double)doze_type_row_bytes(m->token_embd.type, (uint64_t)c->dim);
    return (double)c->layer_weight_bytes + out + emb;
}

/* Forced masks spread the units that run evenly and rotate them every step
 * (and stagger them across layers) so that the skipped weights change from
 * token to token as they do under real gates: a fixed mask would let the
 * running units sit in a large cache. */

/* on(n) = `keep` of n units on, evenly spaced, starting at offset */
static void spread_on(uint8_t *on, int n, int keep, int offset) {
    memset(on, 0, (size_t)n);
    for (int i = 0; i < keep; i++) on[((int)((double)i * n / keep) + offset) % n] = 1;
}

/* round(frac * n), clamped to [lo, n] */
static int units_kept(double frac, int n, int lo) {
    const int keep = (int)(frac * n + 0.5);
    return keep < lo ? lo : keep > n ? n : keep;
}

/* round(b * n_layers) layers run (at least one), every head and FFN block
 * of a running layer on */
static void uniform_mask(int n_layers, double b, int step, uint8_t *layer_on) {
    spread_on(layer_on, n_layers, units_kept(b, n_layers, 1), step);
}

/* Every layer and head runs, and per layer the number of FFN blocks that
 * brings the step's compute (at position pos) to b. */
static void ffn_mask(const doze_model *m, double b, int step, int pos, uint8_t *layer_on,
                     uint8_t *ffn_on) {
    const doze_model_info *c = doze_model_get_info(m);
    const int nb = m->n_ffn_blocks, nl = c->n_layers;
    doze_cost_model cm;
    cost_model_init(c, &cm);
    const double attn = nl * (cm.kv + c->n_heads * (cm.head + cm.head_per_pos * (pos + 1)));
    const int keep = units_kept((b * cost_dense(&cm, pos + 1) - attn) / (nl * cm.ffn), nb, 0);
    memset(layer_on, 1, (size_t)nl);
    for (int l = 0; l < nl; l++) spread_on(ffn_on + (size_t)l * nb, nb, keep, step + 3 * l);
}

/* Every layer and FFN block runs, and per layer the number of heads that
 * brings the step's compute (at position pos) to b (none when b is below
 * what the heads can give). */
static void heads_mask(const doze_model *m, double b, int step, int pos, uint8_t *layer_on, uint8_t *head_on) {
    const doze_model_info *c = doze_model_get_info(m);
    const int nh = c->n_heads, nl = c->n_layers;
    doze_cost_model cm;
    cost_model_init(c, &cm);
    const double per_head = cm.head + cm.head_per_pos * (pos + 1);
    const int keep = units_kept((b * cost_dense(&cm, pos + 1) - nl * (cm.kv + cm.ffn)) / (nl * nh * per_head), nh, 0);
    memset(layer_on, 1, (size_t)nl);
    for (int l = 0; l < nl; l++) spread_on(head_on + (size_t)l * nh, nh, keep, step + l);
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

/* The skip tables: which units the forced masks skip, the budgets they run
 * at, their name in `--skip-table [NAME]` and the JSON, and their heading. */
typedef enum { FORCE_LAYERS, FORCE_FFN, FORCE_HEADS } force_kind;
static const struct {
    const char *name, *heading;
    double budgets[4];
} skip_kinds[] = {
    [FORCE_LAYERS] = {"layers", "", {1.0, 0.75, 0.5, 0.3}},
    [FORCE_FFN] = {"ffn", "FFN blocks only\n", {1.0, 0.75, 0.6, 0.5}},
    [FORCE_HEADS] = {"heads", "heads only\n", {1.0, 0.95, 0.9, 0.85}},
};

/* forced masks of one kind, and room for them */
typedef struct {
    force_kind kind;
    uint8_t *layer_on, *head_on, *ffn_on;
} forced_masks;

/* Greedy decode of steps tokens (after 4 warm-up steps): dense (fm and
 * gates NULL); or under forced masks of fm's kind at budget; or, with
 * gates, under the router's own decisions at budget. */
static int decode_run(doze_model *m, int steps, const doze_gates *gates, double budget, const forced_masks *fm,
                      speed *out, double *compute) {
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
    double t0 = 0, sum = 0, experts = 0;
    long long ffns = 0;
    for (int i = 0; i < steps + warmup; i++) {
        if (i == warmup) t0 = io_now_ms();
        if (doze_session_pos(s) >= c->context_length) doze_session_reset(s);
        doze_status st;
        if (fm) {
            const int pos = doze_session_pos(s);
            if (fm->kind == FORCE_FFN) ffn_mask(m, budget, i, pos, fm->layer_on, fm->ffn_on);
            else if (fm->kind == FORCE_HEADS) heads_mask(m, budget, i, pos, fm->layer_on, fm->head_on);
            else uniform_mask(c->n_layers, budget, i, fm->layer_on);
            const doze_mask mask = {fm->layer_on, fm->kind == FORCE_HEADS ? fm->head_on : NULL,
                                    fm->kind == FORCE_FFN ? fm->ffn_on : NULL, NULL};
            st = doze_session_step_masked(s, token, &mask, &e);
        } else {
            st = doze_session_step(s, token, &e);
        }
        if (st != DOZE_OK) {
            doze_session_free(s);
            return cli_print_error("bench", &e);
        }
        if (i >= warmup) sum += doze_session_compute(s);
        const uint8_t *on = doze_session_expert_mask(s);
        for (int l = 0; on && i >= warmup && l < c->n_layers; l++) {
            int ran = 0;
            for (int x = 0; x < c->n_experts; x++) ran += on[(size_t)l * c->n_experts + x];
            experts += ran;
            ffns += ran > 0;
        }
        token = greedy_pick(doze_session_logits(s), c->vocab_size);
    }
    double ms = io_now_ms() - t0;
    doze_session_free(s);
    out->tok_per_s = steps * 1000.0 / ms;
    out->gb_per_s = out->tok_per_s * bytes_per_token(m) / 1e9;
    if (compute) *compute = sum / steps;
    out->experts = ffns ? experts / (double)ffns : 0.0;
    return 0;
}

/* ---- figures as rounds ------------------------------------------------------ */

/* "MED (MIN-MAX)[ UNRELIABLE]" of a series, in a caller's buffer */
static const char *fmt_rounds(char *buf, size_t cap, const doze_rounds *r, int decimals) {
    doze_rounds_format(buf, cap, r, decimals);
    return buf;
}
#define FMT(r, d) fmt_rounds((char[64]){0}, 64, (r), (d))

/* JSON members for a series: "name":median,"name_min":..,"name_max":.. */
static void json_rounds(const char *name, const doze_rounds *r, int last) {
    out_printf("\"%s\":%.3f,\"%s_min\":%.3f,\"%s_max\":%.3f%s", name, doze_rounds_median(r), name, doze_rounds_min(r),
               name, doze_rounds_max(r), last ? "" : ",");
}

/* decode speed under forced masks of one kind at its budgets, against
 * dense, beside the Amdahl bound (embedding and classifier are not
 * skippable). The budgets take their rounds in turn; speedup = per round,
 * the budget's tok/s / that round's dense. */
static int skip_table(doze_model *m, int steps, int rounds, int json, force_kind kind) {
    const doze_model_info *c = doze_model_get_info(m);
    const double *budgets = skip_kinds[kind].budgets;
    forced_masks fm = {kind, malloc((size_t)c->n_layers), malloc((size_t)c->n_layers * (size_t)c->n_heads),
                       malloc((size_t)c->n_layers * (size_t)m->n_ffn_blocks + 1)};
    if (!fm.layer_on || !fm.head_on || !fm.ffn_on) {
        free(fm.layer_on), free(fm.head_on), free(fm.ffn_on);
        return 1;
    }
    double layer_share = (double)c->layer_weight_bytes / bytes_per_token(m);
    doze_rounds tps[4] = {{{0}, 0}}, speedup[4] = {{{0}, 0}};
    double compute[4] = {1.0, 1.0, 1.0, 1.0};
    int rc = 0;
    for (int r = 0; r < rounds && rc == 0; r++)
        for (int i = 0; i < 4 && rc == 0; i++) {
            speed sp = {0, 0, 0};
            rc = decode_run(m, steps, NULL, budgets[i], i == 0 ? NULL : &fm, &sp, &compute[i]);
            doze_rounds_add(&tps[i], sp.tok_per_s);
        }
    if (rc == 0 && !json)
        out_printf("%sbudget  compute  tok/s: median (min-max) of %d rounds    speedup              amdahl bound\n",
                   skip_kinds[kind].heading, rounds);
    for (int i = 0; i < 4 && rc == 0; i++) {
        doze_rounds_ratio(&speedup[i], &tps[i], &tps[0]);
        double bound = 1.0 / ((1.0 - layer_share) + layer_share * compute[i]);
        if (json) {
            out_printf("{\"masks\":\"%s\",\"budget\":%.2f,\"compute\":%.4f,\"rounds\":%d,", skip_kinds[kind].name,
                       budgets[i], compute[i], rounds);
            json_rounds("tok_s", &tps[i], 0);
            json_rounds("speedup", &speedup[i], 0);
            out_printf("\"amdahl\":%.3f,\"unreliable\":%d}\n", bound,
                       doze_rounds_unreliable(&tps[i]) || doze_rounds_unreliable(&speedup[i]));
        } else {
            out_printf("%.2f    %.3f    %-36s  %-20s %.2fx\n", budgets[i], compute[i], FMT(&tps[i], 2),
                       FMT(&speedup[i], 2), bound);
        }
    }
    free(fm.layer_on), free(fm.head_on), free(fm.ffn_on);
    return rc;
}

/* decode under the gates at a budget (the router decides), beside dense:
 * dense and gated rounds in turn, the speedup per round */
static int budget_bench(doze_model *m, const cli_args *a, double budget, int steps, int rounds, int json) {
    doze_gates *g = cli_gates(a, m, 1, json);
    if (!g) return 1;
    doze_rounds dense = {{0}, 0}, gated = {{0}, 0}, speedup = {{0}, 0};
    double compute = 1.0, experts_dense = 0, experts_gated = 0;
    int rc = 0;
    for (int r = 0; r < rounds && rc == 0; r++) {
        speed d = {0, 0, 0}, gs = {0, 0, 0};
        rc = decode_run(m, steps, NULL, 1.0, NULL, &d, NULL);
        if (!rc) rc = decode_run(m, steps, g, budget, NULL, &gs, &compute);
        doze_rounds_add(&dense, d.tok_per_s);
        doze_rounds_add(&gated, gs.tok_per_s);
        experts_dense = d.experts;
        experts_gated = gs.experts;
    }
    doze_rounds_ratio(&speedup, &gated, &dense);
    if (!rc) {
        int bad = doze_rounds_unreliable(&dense) || doze_rounds_unreliable(&gated) || doze_rounds_unreliable(&speedup);
        if (json) {
            out_printf("{\"budget\":%.3f,\"compute\":%.4f,\"rounds\":%d,", budget, compute, rounds);
            json_rounds("dense_tok_s", &dense, 0);
            json_rounds("gated_tok_s", &gated, 0);
            json_rounds("speedup", &speedup, 0);
            out_printf("\"unreliable\":%d}\n", bad);
        } else {
            out_printf("budget %.2f: compute %.3f; tok/s, median (min-max) of %d rounds of %d tokens, dense and gated "
                       "in turn:\n  gated   %s\n  dense   %s\n  speedup %s\n",
                       budget, compute, rounds, steps, FMT(&gated, 2), FMT(&dense, 2), FMT(&speedup, 2));
            if (doze_model_get_info(m)->n_experts) /* the last round's */
                out_printf("  experts per running FFN: gated %.3f, dense %.3f\n", experts_gated, experts_dense);
        }
    }
    doze_gates_free(g);
    return rc;
}

/* Prompt processing: a prompt of n tokens (BOS, then a fixed pseudo-random
 * walk over the vocabulary) through doze_session_prefill. */
typedef struct {
    doze_session *s;
    int32_t *toks;
    int n;
} prefill_job;

static int prefill_open(doze_model *m, int n, prefill_job *j) {
    doze_error e;
    const doze_model_info *c = doze_model_get_info(m);
    if (n > c->context_length) n = c->context_length;
    j->n = n;
    j->toks = malloc((size_t)(n > 0 ? n : 1) * sizeof *j->toks);
    if (!j->toks) {
        err_printf("bench: out of memory\n");
        return 1;
    }
    j->s = doze_session_new(m, &e);
    if (!j->s) {
        free(j->toks);
        j->toks = NULL;
        return cli_print_error("bench", &e);
    }
    uint32_t r = 1;
    for (int i = 0; i < n; i++) {
        r = r * 1664525u + 1013904223u;
        j->toks[i] = i == 0 && c->bos_id >= 0 ? c->bos_id : (int32_t)((r >> 8) % (uint32_t)c->vocab_size);
    }
    return 0;
}

/* one prefill from an empty context: tok/s into *tok_s, ms into *ms */
static int prefill_once(prefill_job *j, double *tok_s, double *ms_out) {
    doze_error e;
    doze_session_reset(j->s);
    double t0 = io_now_ms();
    if (doze_session_prefill(j->s, j->toks, j->n, &e) != DOZE_OK) return cli_print_error("bench", &e);
    double ms = io_now_ms() - t0;
    if (ms_out) *ms_out = ms;
    *tok_s = j->n * 1000.0 / (ms > 0 ? ms : 1e-9);
    return 0;
}

static void prefill_close(prefill_job *j) {
    doze_session_free(j->s);
    free(j->toks);
}

/* The matrix-vector products of one dense decode step alone (every layer's
 * Q, K, V, per-head output, gate, up and per-block down projections, then
 * the classifier), on a fixed activation, one pass, as tokens/s: what decode
 * could reach with these kernels if attention, norms, RoPE, sampling and the
 * rest cost nothing. A ceiling for the ratios between types that the kernels
 * themselves set. 0 when out of memory. */
static double matvecs_tok_s(const doze_model *m) {
    const doze_model_info *c = &m->info;
    int n = c->dim > c->hidden_dim ? c->dim : c->hidden_dim;
    if (c->n_heads * c->head_dim > n) n = c->n_heads * c->head_dim;
    int ny = n > c->vocab_size ? n : c->vocab_size;
    float *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)ny * sizeof *y);
    void *xq = malloc(model_input_area_bytes(m));
    double tps = 0.0;
    if (x && y && xq) {
        for (int i = 0; i < n; i++) x[i] = (float)((i * 37) % 17 - 8) * 0.0625f;
        double t0 = io_now_ms();
        for (int l = 0; l < c->n_layers; l++) {
            const doze_layer *L = &m->layers[l];
            const doze_matrix *qkv[3] = {&L->wq, &L->wk, &L->wv}, *gu[2] = {&L->w_gate, &L->w_up};
            model_prepare_input(m, qkv, 3, x, xq); /* once, as decode does */
            for (int i = 0; i < 3; i++) model_matvec_prepared(m, y, qkv[i], x, xq);
            for (int h = 0; h < c->n_heads; h++) model_matvec(m, y, &L->wo_head[h], x, xq);
            if (c->n_experts) {
                /* the router and the model's k experts (the first k: all cost the same) */
                const int hid = c->hidden_dim;
                model_matvec(m, y, &L->w_router, x, xq);
                for (int e = 0; e < c->n_experts_used; e++) {
                    const doze_matrix wg = model_rows(&L->w_gate, e * hid, hid);
                    const doze_matrix wu = model_rows(&L->w_up, e * hid, hid);
                    const doze_matrix wd = model_rows(&L->w_down, e * c->dim, c->dim);
                    const doze_matrix *ex[2] = {&wg, &wu};
                    model_prepare_input(m, ex, 2, x, xq);
                    for (int i = 0; i < 2; i++) model_matvec_prepared(m, y, ex[i], x, xq);
                    model_matvec(m, y, &wd, x, xq);
                }
                continue;
            }
            model_prepare_input(m, gu, 2, x, xq);
            for (int i = 0; i < 2; i++) model_matvec_prepared(m, y, gu[i], x, xq);
            for (int j = 0; j < m->n_ffn_blocks; j++) model_matvec(m, y, &L->w_down_blk[j], x, xq);
        }
        model_matvec(m, y, &m->output, x, xq);
        double ms = io_now_ms() - t0;
        tps = 1000.0 / (ms > 0 ? ms : 1e-9);
    }
    free(x), free(y), free(xq);
    return tps;
}

/* One read-loop pass over the model's weights, GB/s */
static double read_pass_gbs(const doze_model *m, uint32_t *sink) {
    size_t n = m->arena_size / 64 * 64;
    if (n == 0) return 0.0;
    double t0 = io_now_ms();
    *sink ^= doze_read_probe(m->arena, n);
    return (double)n / ((io_now_ms() - t0) * 1e6 + 1e-9);
}

/* ---- one or several models, every figure in interleaved rounds ---------------- */

#define BENCH_MAX_MODELS 8

typedef struct {
    doze_rounds prompt, decode, read, of_read, matvecs, vs_first, ref_decode, ref_prompt, over_ref;
    double prompt_first_ms;
} model_figures;

/* One decode round of `steps` greedy tokens after 2 untimed ones (the
 * previous round has just evicted this model's weights from the caches) on
 * the model's own session, restarted when full. */
static int decode_round(doze_model *m, doze_session *s, int *token, int steps, double *tok_s) {
    doze_error e;
    const doze_model_info *c = doze_model_get_info(m);
    double t0 = 0;
    for (int k = 0; k < steps + 2; k++) {
        if (k == 2) t0 = io_now_ms();
        if (doze_session_pos(s) >= c->context_length) doze_session_reset(s);
        if (doze_session_step(s, *token, &e) != DOZE_OK) return cli_print_error("bench", &e);
        *token = greedy_pick(doze_session_logits(s), c->vocab_size);
    }
    double ms = io_now_ms() - t0;
    *tok_s = steps * 1000.0 / (ms > 0 ? ms : 1e-9);
    return 0;
}

/* Per round, every model in turn: a read-loop pass over its weights, a
 * decode round, a matvecs pass, a 128-token prefill (and with `reference`,
 * one model: a decode round and a 32-token prefill with the reference
 * kernels). A warm-up round first, not counted (its prefill time is
 * reported as the first run's). */
static int measure(doze_model **ms, int n, int rounds, int steps, int reference, model_figures *f, uint32_t *sink) {
    doze_error e;
    doze_session *ss[BENCH_MAX_MODELS] = {0};
    prefill_job pj[BENCH_MAX_MODELS] = {{0}}, pr = {0};
    int token[BENCH_MAX_MODELS];
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        ss[i] = doze_session_new(ms[i], &e);
        if (!ss[i]) rc = cli_print_error("bench", &e);
        else rc = prefill_open(ms[i], 128, &pj[i]);
        const doze_model_info *c = doze_model_get_info(ms[i]);
        token[i] = c->bos_id >= 0 ? c->bos_id : 0;
    }
    if (rc == 0 && reference) rc = prefill_open(ms[0], 32, &pr);
    const int ref_steps = steps / 4 > 2 ? steps / 4 : 2;
    for (int r = -1; r < rounds && rc == 0; r++) {
        for (int i = 0; i < n && rc == 0; i++) {
            double read = read_pass_gbs(ms[i], sink), tps = 0, mv = 0, pt = 0, pms = 0;
            rc = decode_round(ms[i], ss[i], &token[i], steps, &tps);
            if (rc == 0) mv = matvecs_tok_s(ms[i]);
            if (rc == 0) rc = prefill_once(&pj[i], &pt, &pms);
            if (r < 0) {
                f[i].prompt_first_ms = pms;
                continue;
            }
            doze_rounds_add(&f[i].read, read);
            doze_rounds_add(&f[i].decode, tps);
            doze_rounds_add(&f[i].of_read, read > 0 ? tps * bytes_per_token(ms[i]) / 1e9 / read : 0.0);
            doze_rounds_add(&f[i].matvecs, mv);
            doze_rounds_add(&f[i].prompt, pt);
            if (reference && rc == 0) {
                double rt = 0, rp = 0;
                model_use_kernels(ms[i], DOZE_KERNELS_REFERENCE);
                rc = decode_round(ms[i], ss[i], &token[i], ref_steps, &rt);
                if (rc == 0) rc = prefill_once(&pr, &rp, NULL);
                model_use_kernels(ms[i], DOZE_KERNELS_SIMD);
                doze_rounds_add(&f[i].ref_decode, rt);
                doze_rounds_add(&f[i].ref_prompt, rp);
            }
        }
    }
    for (int i = 0; i < n; i++) {
        doze_session_free(ss[i]);
        if (pj[i].s) prefill_close(&pj[i]);
        doze_rounds_ratio(&f[i].vs_first, &f[i].decode, &f[0].decode);
        if (reference) doze_rounds_ratio(&f[i].over_ref, &f[i].decode, &f[i].ref_decode);
    }
    if (pr.s) prefill_close(&pr);
    return rc;
}

static int any_unreliable(const model_figures *f, int reference) {
    const doze_rounds *all[6] = {&f->prompt, &f->decode, &f->read, &f->matvecs, &f->vs_first, &f->of_read};
    int bad = 0;
    for (int i = 0; i < 6; i++) bad |= doze_rounds_unreliable(all[i]);
    if (reference) bad |= doze_rounds_unreliable(&f->ref_decode) || doze_rounds_unreliable(&f->over_ref);
    return bad;
}

/* `doze bench A.gguf B.gguf ...` (and one model): the models take their
 * rounds in turn, so that ratios between types (Q8_0 vs F32, Q4_0 vs Q8_0)
 * are measured under the same machine load. */
static int bench_models(const cli_args *a, int n_paths, int steps, int rounds, int json) {
    doze_model *ms[BENCH_MAX_MODELS] = {0};
    static model_figures f[BENCH_MAX_MODELS];
    memset(f, 0, sizeof f);
    int rc = 0;
    doze_model_params mp = doze_model_default_params();
    if (cli_threads_option(a, &mp) || cli_experts_used_option(a, &mp) || cli_ffn_block_option(a, &mp)) return 2;
    mp.context_length = 256;
    for (int i = 0; i < n_paths && rc == 0; i++) {
        ms[i] = cli_load_model(cli_pos(a, i), &mp);
        if (!ms[i]) rc = 1;
    }
    uint32_t sink = 0;
    const int reference = n_paths == 1;
    if (rc == 0) rc = measure(ms, n_paths, rounds, steps, reference, f, &sink);
    if (rc == 0 && !json) {
        out_printf("median (min-max) of %d rounds, the models in turn%s; per round and model: a read-loop pass\n"
                   "over its weights, %d decode tokens, the step's matrix-vector products alone (matvecs: the\n"
                   "ceiling these kernels put on decode), a 128-token prefill; ratios are per round.\n"
                   "UNRELIABLE: rounds spread more than 2x (a busy machine): rerun before trusting it.\n",
                   rounds, reference ? " (then the reference kernels)" : "", steps);
    }
    for (int i = 0; i < n_paths && rc == 0; i++) {
        const doze_model_info *c = doze_model_get_info(ms[i]);
        const double mb = bytes_per_token(ms[i]) / 1e6;
        const int bad = any_unreliable(&f[i], reference);
        if (json) {
            out_printf("{\"model\":%d,\"type\":\"%s\",\"dim\":%d,\"layers\":%d,\"vocab\":%d,\"mb_per_token\":%.3f,"
                       "\"rounds\":%d,\"steps\":%d,\"prompt_tokens\":%d,\"prompt_first_ms\":%.2f,",
                       i, doze_type_name(c->weight_type), c->dim, c->n_layers, c->vocab_size, mb, rounds, steps,
                       128 < c->context_length ? 128 : c->context_length, f[i].prompt_first_ms);
            json_rounds("prompt_tok_s", &f[i].prompt, 0);
            json_rounds("decode_tok_s", &f[i].decode, 0);
            out_printf("\"gb_s\":%.3f,", doze_rounds_median(&f[i].decode) * mb / 1e3);
            json_rounds("read_loop_gb_s", &f[i].read, 0);
            json_rounds("of_read_loop", &f[i].of_read, 0);
            json_rounds("matvecs_tok_s", &f[i].matvecs, 0);
            json_rounds("vs_first", &f[i].vs_first, 0);
            if (reference) {
                json_rounds("reference_tok_s", &f[i].ref_decode, 0);
                json_rounds("reference_prompt_tok_s", &f[i].ref_prompt, 0);
                json_rounds("simd_over_reference", &f[i].over_ref, 0);
            }
            out_printf("\"unreliable\":%d,\"sink\":%u}\n", bad, sink & 1u);
            continue;
        }
        out_printf("%s  dim %d, hidden %d, layers %d, heads %d/%d, vocab %d, %.2f MB read per token%s\n",
                   doze_type_name(c->weight_type), c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
                   c->vocab_size, mb, (sink & 1u) ? " " : "");
        out_printf("  prompt tok/s     %s  (first run %.1f ms)\n", FMT(&f[i].prompt, 1), f[i].prompt_first_ms);
        out_printf("  decode tok/s     %s\n", FMT(&f[i].decode, 1));
        out_printf("  read loop GB/s   %s; decode GB/s / read loop's %s\n", FMT(&f[i].read, 2), FMT(&f[i].of_read, 2));
        out_printf("  matvecs tok/s    %s\n", FMT(&f[i].matvecs, 1));
        if (i > 0)
            out_printf("  decode vs %-5s  %s\n", doze_type_name(doze_model_get_info(ms[0])->weight_type),
                       FMT(&f[i].vs_first, 2));
        if (reference) {
            out_printf("  reference decode %s tok/s, prompt %s tok/s (32 tokens)\n", FMT(&f[i].ref_decode, 2),
                       FMT(&f[i].ref_prompt, 1));
            out_printf("  simd / reference %s\n", FMT(&f[i].over_ref, 2));
        }
    }
    for (int i = 0; i < n_paths; i++) doze_model_free(ms[i]);
    return rc;
}

static const char *const bench_forms[] = {"MODEL", "MODEL MODEL...", "MODEL --skip-table [ffn|heads]",
                                          "MODEL --speculative [--draft-budget B] [--draft-k K]", NULL};
static const cli_option bench_options[] = {
    {"--steps", CLI_INT, "N", "decode tokens timed per round (default 16)", NULL, 0},
    {"--rounds", CLI_INT, "N", "rounds per figure (default 5): median (min-max) printed, UNRELIABLE\n"
                               "when they spread more than 2x", NULL, 0},
    {"--json", CLI_FLAG, NULL, "one JSON record per line", NULL, 0},
    {"--skip-table", CLI_FLAG, NULL, "speed under forced uniform masks at b = 1, 0.75, 0.5, 0.3\n"
                                     "(then 'ffn': masks that skip FFN blocks only, at b = 1, 0.75,\n"
                                     "0.6, 0.5; 'heads': heads only, at b = 1, 0.95, 0.9, 0.85)", NULL, 0},
    {"--speculative", CLI_FLAG, NULL, "greedy self-speculation (the gates draft, the whole model\n"
                                      "verifies) against dense decoding, same output checked", NULL, 0},
    {"--draft-budget", CLI_FLOAT, "B", "--speculative: the draft's budget in (0, 1) (default: adaptive)", NULL, 0},
    {"--draft-k", CLI_INT, "K", "--speculative: tokens drafted per step, 1..8 (default: adaptive)", NULL, 0},
    {"--prompt", CLI_STRING, "TEXT", "--speculative: the prompt (default \"Once upon a time\")", NULL, 0},
    CLI_BUDGET_OPTION,
    CLI_GATE_OPTIONS,
    CLI_THREADS_OPTION,
    CLI_EXPERTS_USED_OPTION,
    CLI_FFN_BLOCK_OPTION,
    CLI_OPTIONS_END,
};
const cli_command cmd_bench_spec = {
    "bench", bench_forms, 1, BENCH_MAX_MODELS, "decode and prefill speed, SIMD vs reference kernels",
    "Decode and 128-token prefill tokens/s, the step's matrix-vector products alone, and a\n"
    "plain read loop over the model's weights; one model: also the reference kernels. Every\n"
    "figure from interleaved rounds (several models: theirs in turn), printed as median\n"
    "(min-max), UNRELIABLE when the rounds spread more than 2x.\n"
    "--skip-table: speed under forced masks; --budget B: decode under the gates beside dense;\n"
    "--speculative: greedy self-speculation beside dense (--steps tokens, default 200).",
    bench_options,
};

int cmd_bench(int argc, char **argv) {
    cli_args a;
    int prc = cli_parse(&cmd_bench_spec, argc, argv, &a);
    if (prc >= 0) return prc;
    if (cli_gate_options_check(&a)) return 2;
    const char *path = cli_pos(&a, 0);
    long long steps = cli_get_int(&a, "--steps", 16), rounds = cli_get_int(&a, "--rounds", 5);
    int json = cli_has(&a, "--json");
    double budget = cli_get_float(&a, "--budget", 1.0);
    if (steps < 1 || steps > (1 << 24)) return cli_usage_error(&a, "--steps must be in 1..16777216");
    if (rounds < 1 || rounds > DOZE_ROUNDS_MAX) return cli_usage_error(&a, "--rounds must be in 1..%d", DOZE_ROUNDS_MAX);
    if (!(budget > 0.0 && budget <= 1.0)) return cli_usage_error(&a, "--budget must be in (0, 1]");
    int skip = cli_has(&a, "--skip-table");
    force_kind kind = FORCE_LAYERS;
    if (skip && a.n_pos >= 2) {
        for (int k = FORCE_FFN; k <= FORCE_HEADS; k++)
            if (strcmp(cli_pos(&a, 1), skip_kinds[k].name) == 0) kind = (force_kind)k;
        if (a.n_pos > 2 || kind == FORCE_LAYERS) /* the default kind is not named */
            return cli_usage_error(&a, "--skip-table takes one model (and then 'ffn', 'heads' or nothing), not \"%s\"",
                                   cli_pos(&a, 1));
    }
    const int speculative = cli_has(&a, "--speculative");
    if (!speculative && (cli_has(&a, "--draft-budget") || cli_has(&a, "--draft-k") || cli_has(&a, "--prompt")))
        return cli_usage_error(&a, "--draft-budget, --draft-k and --prompt go with --speculative");
    if (speculative && (skip || a.n_pos > 1 || budget < 1.0))
        return cli_usage_error(&a, "--speculative takes one model, and no --budget (the draft's is --draft-budget)");
    int gated = budget < 1.0 || cli_has(&a, "--gates");
    if (!skip && !gated && !speculative) return bench_models(&a, a.n_pos, (int)steps, (int)rounds, json);
    if (a.n_pos > 1 && !skip) return cli_usage_error(&a, "--budget and --gates take one model");
    doze_model_params mp = doze_model_default_params();
    if (cli_threads_option(&a, &mp) || cli_experts_used_option(&a, &mp) || cli_ffn_block_option(&a, &mp)) return 2;
    mp.context_length = 256;
    doze_model *m = cli_load_model(path, &mp);
    if (!m) return 1;
    if (speculative) {
        int rc = bench_speculative(m, &a, cli_has(&a, "--steps") ? (int)steps : 200, (int)rounds, json);
        doze_model_free(m);
        return rc;
    }
    int rc = gated ? budget_bench(m, &a, budget, (int)steps, (int)rounds, json)
                   : skip_table(m, (int)steps, (int)rounds, json, kind);
    doze_model_free(m);
    return rc;
}
