/* Threads change nothing: the same random models loaded with 1, 2 and 3
 * threads give bit-identical logits, KV caches and greedy tokens for a
 * prefill followed by decode steps, for masked runs (skipped layers, heads
 * and FFN blocks, prefill and steps), and for runs under training-free gates
 * at a budget (calibrated on each model), and for the trainers: joint
 * training steps of routers and weights give the same losses and routers
 * at any count. The shapes are large enough that
 * every product, the heads, the KV groups and the FFN really are split (and
 * unevenly for 3). Also: the thread count is validated and reported, and
 * the pool's cuts cover every item once, on aligned boundaries, within the
 * part limit. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gates.h"
#include "model.h"
#include "pool.h"
#include "session.h"
#include "model_fixture.h"
#include "threads_fixture.h"
#include "test_util.h"

enum { N_PROMPT = 40, N_STEPS = 8, N_GATED = 96 };

/* everything a run produced: logits after the prompt and after each step,
 * the KV cache of the prompt and steps, the masks of each step */
typedef struct {
    float *logits; /* (1 + N_STEPS, vocab) */
    float *kv;     /* (2, n_layers, N_PROMPT + N_STEPS, kv_dim) */
    uint8_t *valid;
    uint8_t *masks; /* (N_STEPS, n_layers * (1 + n_heads + n_blocks)) */
    int32_t toks[N_STEPS];
    size_t n_logits, n_kv, n_valid, n_masks;
} run_out;

static void run_free(run_out *o) { free(o->logits), free(o->kv), free(o->valid), free(o->masks); }

static int argmax(const float *l, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (l[i] > l[b]) b = i;
    return b;
}

/* mode 0: dense; 1: forced random masks; 2: gates at budget 0.5 */
static int run(const mem_buf *f, int kernels, int threads, int mode, run_out *o) {
    doze_model_params mp = doze_model_default_params();
    mp.kernels = kernels;
    mp.threads = threads;
    doze_model *m = NULL;
    doze_error e;
    memset(o, 0, sizeof *o);
    if (doze_model_load_memory(f->data, f->len, &mp, &m, &e) != DOZE_OK) {
        fprintf(stderr, "load: %s\n", e.message);
        return 0;
    }
    CHECK(doze_model_threads(m) == threads);
    const doze_model_info *c = doze_model_get_info(m);
    const int NL = c->n_layers, NH = c->n_heads, NB = doze_model_ffn_blocks(m), V = c->vocab_size;
    const int n_prompt = mode == 2 ? N_GATED : N_PROMPT, n_pos = n_prompt + N_STEPS;
    const size_t kv_dim = (size_t)c->n_kv_heads * c->head_dim;
    const size_t mask_sz = (size_t)NL * (1 + NH + NB);
    o->n_logits = (size_t)(1 + N_STEPS) * V;
    o->n_kv = 2 * (size_t)NL * n_pos * kv_dim;
    o->n_valid = (size_t)NL * n_pos;
    o->n_masks = (size_t)N_STEPS * mask_sz;
    o->logits = malloc(o->n_logits * 4);
    o->kv = malloc(o->n_kv * 4);
    o->valid = malloc(o->n_valid);
    o->masks = malloc(o->n_masks);
    int32_t *toks = malloc((size_t)n_prompt * sizeof *toks);
    uint8_t *lon = malloc((size_t)n_pos * NL), *hon = malloc((size_t)n_pos * NL * NH),
            *fon = malloc((size_t)n_pos * NL * NB);
    uint64_t r = 77;
#define RND() (r = r * 6364136223846793005ull + 1442695040888963407ull, (r >> 33))
    for (int i = 0; i < n_prompt; i++) toks[i] = (int32_t)(RND() % (uint64_t)V);
    for (int i = 0; i < n_pos; i++) {
        for (int l = 0; l < NL; l++) lon[i * NL + l] = i % 5 == 0 || RND() % 4 != 0;
        for (int h = 0; h < NL * NH; h++) hon[(size_t)i * NL * NH + h] = i % 5 == 0 || RND() % 3 != 0;
        for (int j = 0; j < NL * NB; j++) fon[(size_t)i * NL * NB + j] = i % 5 == 0 || RND() % 3 != 0;
    }
#undef RND
    doze_gates *g = NULL;
    doze_session *s = doze_session_new(m, &e);
    int ok = s != NULL;
    if (ok && mode == 2) {
        doze_gates_params gp = doze_gates_default_params();
        ok = doze_gates_calibrate(m, toks, n_prompt, &gp, &g, &e) == DOZE_OK &&
             doze_session_set_gates(s, g, &e) == DOZE_OK && doze_session_set_budget(s, 0.5f, &e) == DOZE_OK;
    }
    if (ok)
        ok = (mode == 1 ? doze_session_prefill_masked(s, toks, n_prompt, &(doze_mask){.layers = lon, .heads = hon, .ffn = fon}, &e)
                        : doze_session_prefill(s, toks, n_prompt, &e)) == DOZE_OK;
    if (ok) memcpy(o->logits, doze_session_logits(s), (size_t)V * 4);
    for (int i = 0; ok && i < N_STEPS; i++) {
        const int p = n_prompt + i;
        o->toks[i] = argmax(doze_session_logits(s), V);
        ok = (mode == 1 ? doze_session_step_masked(s, o->toks[i],
                                                   &(doze_mask){.layers = lon + (size_t)p * NL,
                                                                .heads = hon + (size_t)p * NL * NH,
                                                                .ffn = fon + (size_t)p * NL * NB},
                                                   &e)
                        : doze_session_step(s, o->toks[i], &e)) == DOZE_OK;
        if (!ok) break;
        memcpy(o->logits + (size_t)(1 + i) * V, doze_session_logits(s), (size_t)V * 4);
        uint8_t *mk = o->masks + (size_t)i * mask_sz;
        memcpy(mk, doze_session_layer_mask(s), (size_t)NL);
        memcpy(mk + NL, doze_session_head_mask(s), (size_t)NL * NH);
        memcpy(mk + NL + (size_t)NL * NH, doze_session_ffn_mask(s), (size_t)NL * NB);
    }
    if (!ok) fprintf(stderr, "run: %s\n", e.message);
    if (ok) {
        const kv_cache *kv = session_kv(s);
        for (int l = 0; l < NL; l++) {
            const size_t src = (size_t)l * c->context_length, dst = (size_t)l * n_pos;
            memcpy(o->kv + dst * kv_dim, kv->key + src * kv_dim, (size_t)n_pos * kv_dim * 4);
            memcpy(o->kv + (o->n_kv / 2) + dst * kv_dim, kv->value + src * kv_dim, (size_t)n_pos * kv_dim * 4);
            memcpy(o->valid + dst, kv->valid + src, (size_t)n_pos);
        }
        /* skipped positions hold whatever the cache held: compare valid rows only */
        for (int l = 0; l < NL; l++)
            for (int i = 0; i < n_pos; i++)
                if (!o->valid[(size_t)l * n_pos + i])
                    for (int h = 0; h < 2; h++)
                        memset(o->kv + h * (o->n_kv / 2) + ((size_t)l * n_pos + i) * kv_dim, 0, kv_dim * 4);
    }
    free(toks), free(lon), free(hon), free(fon);
    doze_session_free(s);
    doze_gates_free(g);
    doze_model_free(m);
    return ok;
}

static void check(const char *label, const mem_buf *f, int kernels, int mode) {
    static const char *const modes[3] = {"dense", "masked", "gated b=0.5"};
    run_out one;
    if (!run(f, kernels, 1, mode, &one)) {
        CHECK_MSG(0, "%s %s: the 1-thread run failed", label, modes[mode]);
        return;
    }
    for (int t = 2; t <= 3; t++) {
        run_out o;
        if (!run(f, kernels, t, mode, &o)) {
            CHECK_MSG(0, "%s %s: the %d-thread run failed", label, modes[mode], t);
            continue;
        }
        long lg = 0;
        for (size_t i = 0; i < o.n_logits; i++) lg += memcmp(&o.logits[i], &one.logits[i], 4) != 0;
        const int kv_same = memcmp(o.kv, one.kv, o.n_kv * 4) == 0 && memcmp(o.valid, one.valid, o.n_valid) == 0;
        const int masks_same = memcmp(o.masks, one.masks, o.n_masks) == 0;
        const int toks_same = memcmp(o.toks, one.toks, sizeof o.toks) == 0;
        long skipped = 0;
        for (size_t i = 0; i < o.n_valid; i++) skipped += !o.valid[i];
        CHECK_MSG(lg == 0, "%s %s %d threads: %ld logits differ from 1 thread", label, modes[mode], t, lg);
        CHECK_MSG(kv_same, "%s %s %d threads: the KV cache differs", label, modes[mode], t);
        CHECK_MSG(masks_same, "%s %s %d threads: the masks differ", label, modes[mode], t);
        CHECK_MSG(toks_same, "%s %s %d threads: the greedy tokens differ", label, modes[mode], t);
        if (mode > 0) CHECK_MSG(skipped > 0, "%s %s: nothing was skipped", label, modes[mode]);
        printf("%-30s %-12s %d threads: logits %s, KV %s, masks %s, tokens %s (%ld layer positions skipped)\n",
               label, modes[mode], t, lg ? "DIFFERENT" : "bit-identical", kv_same ? "identical" : "DIFFERENT",
               masks_same ? "identical" : "DIFFERENT", toks_same ? "identical" : "DIFFERENT", skipped);
        run_free(&o);
    }
    run_free(&one);
}

/* Three joint training steps (routers and weights, cross-entropy, a budget
 * range) on the model's threads: the losses of every step (the later ones
 * see the updated weights), the trained routers and the weights, bit for
 * bit; for llama, qwen2 (Q/K/V biases) and qwen3 (q/k norms, heads of 48). */
static void check_training(const char *arch, int head_dim) {
    const doze_init_params ip = {256, 768, 2, 8, 8, 600, 128, 51, DOZE_TYPE_F32, arch, head_dim, 0, 0.0f, 0, 0};
    mem_buf f = fixture_from_params(&ip);
    CHECK(f.data != NULL);
    if (!f.data) return;
    doze_train_params p = doze_train_default_params();
    p.batch = 2;
    p.context = 128;
    p.joint = 1;
    p.task_loss = DOZE_LOSS_CE;
    p.budget_lo = 0.4f;
    p.budget_hi = 1.0f;
    trained_state one = {0}, many = {0};
    CHECK(train_at_threads(&f, 1, 128, &p, 64, 3, &one));
    for (int th = 2; th <= 3; th++) {
        CHECK(train_at_threads(&f, th, 128, &p, 64, 3, &many));
        int same = trained_identical(&one, &many);
        printf("%s joint training, 3 steps, %d threads vs 1: losses %.6f %.6f %.6f, routers and weights %s\n", arch,
               th, (double)many.loss[0], (double)many.loss[1], (double)many.loss[2], same ? "bit-identical" : "DIFFER");
        CHECK(same);
        trained_state_free(&many);
    }
    CHECK(one.loss[2] != one.loss[0]); /* the steps did train */
    trained_state_free(&one);
    free(f.data);
}

/* what a pool job saw: how often each item ran, and its parts */
typedef struct {
    _Atomic int *hits;
    _Atomic int parts, bad, largest_part;
    int align, n, max_parts;
} cut_probe;

static void cut_probe_part(void *args, int b, int e, int part) {
    cut_probe *c = args;
    if (b % c->align || (e % c->align && e != c->n) || b >= e || part < 0 ||
        (c->max_parts > 0 && part >= c->max_parts))
        atomic_fetch_add(&c->bad, 1);
    for (int i = b; i < e; i++) atomic_fetch_add(&c->hits[i], 1);
    atomic_fetch_add(&c->parts, 1);
    int big = atomic_load(&c->largest_part);
    while (e - b > big && !atomic_compare_exchange_weak(&c->largest_part, &big, e - b)) {}
}

/* every item once, aligned cuts, parts within the limit; a shrinking cut
 * (no limit) of a large job has several parts per thread, the first largest */
static void check_pool_cuts(void) {
    static const int ns[] = {1, 15, 16, 17, 100, 768, 2048, 32000, 128256};
    static const int aligns[] = {1, 4, 16};
    for (int threads = 1; threads <= 4; threads++) {
        doze_pool *p = NULL;
        doze_error e;
        CHECK(pool_new(threads, &p, &e) == DOZE_OK);
        if (!p) continue;
        for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++)
            for (size_t al = 0; al < sizeof aligns / sizeof aligns[0]; al++)
                for (int max_parts = 0; max_parts <= 3; max_parts++)
                    for (int min_items = 1; min_items <= 64; min_items *= 8) {
                        const int n = ns[a];
                        cut_probe c = {calloc((size_t)n, sizeof(_Atomic int)), 0, 0, 0, aligns[al], n, max_parts};
                        if (!c.hits) continue;
                        pool_run(p, cut_probe_part, &c, n, aligns[al], min_items, max_parts);
                        int once = 1;
                        for (int i = 0; i < n; i++) once &= atomic_load(&c.hits[i]) == 1;
                        CHECK(once && atomic_load(&c.bad) == 0);
                        if (max_parts > 0) CHECK(atomic_load(&c.parts) <= max_parts);
                        free(c.hits);
                    }
        /* 32000 rows, align 16, no limit: the first part is 1/(2 * threads) of
         * the job, the cut has more parts than threads */
        if (threads > 1) {
            cut_probe c = {calloc(32000, sizeof(_Atomic int)), 0, 0, 0, 16, 32000, 0};
            if (c.hits) {
                pool_run(p, cut_probe_part, &c, 32000, 16, 16, 0);
                CHECK(atomic_load(&c.parts) > 2 * threads);
                CHECK(atomic_load(&c.largest_part) == (2000 + 2 * threads - 1) / (2 * threads) * 16);
                free(c.hits);
            }
        }
        pool_free(p);
    }
}

int main(void) {
    doze_error e;
    check_pool_cuts();
    /* the count is validated and reported */
    {
        mem_buf f = fixture_gguf(64, 96, 1, 4, 4, 100, 32, 3, DOZE_TYPE_F32);
        doze_model *m = NULL;
        doze_model_params mp = doze_model_default_params();
        mp.threads = 65;
        CHECK(doze_model_load_memory(f.data, f.len, &mp, &m, &e) == DOZE_ERR_INVALID_ARGUMENT && !m);
        mp.threads = 0;
        CHECK(doze_model_load_memory(f.data, f.len, &mp, &m, &e) == DOZE_OK && doze_model_threads(m) == 1);
        CHECK(doze_model_set_threads(m, 4, &e) == DOZE_OK && doze_model_threads(m) == 4);
        CHECK(doze_model_set_threads(m, -1, &e) == DOZE_ERR_INVALID_ARGUMENT && doze_model_threads(m) == 4);
        CHECK(doze_model_set_threads(m, 1, &e) == DOZE_OK && doze_model_threads(m) == 1);
        doze_model_free(m);
        free(f.data);
    }
    static const int types[4] = {DOZE_TYPE_F32, DOZE_TYPE_F16, DOZE_TYPE_Q8_0, DOZE_TYPE_Q4_0};
    /* head_dim 64 (MHA), and head_dim 16 with GQA 16/4 (q heads widened to f32) */
    struct {
        int dim, hidden, layers, heads, kv;
    } shapes[2] = {{512, 1024, 2, 8, 8}, {256, 768, 2, 16, 4}};
    for (int sh = 0; sh < 2; sh++)
        for (int t = 0; t < 4; t++) {
            mem_buf f = fixture_gguf(shapes[sh].dim, shapes[sh].hidden, shapes[sh].layers, shapes[sh].heads,
                                     shapes[sh].kv, 600, 128, 11 + (uint64_t)t, types[t]);
            CHECK(f.data != NULL);
            if (!f.data) continue;
            char label[96];
            snprintf(label, sizeof label, "%s dim %d hd %d", doze_type_name(types[t]), shapes[sh].dim,
                     shapes[sh].dim / shapes[sh].heads);
            check(label, &f, DOZE_KERNELS_SIMD, 0);
            check(label, &f, DOZE_KERNELS_SIMD, 1);
            if (t == 0 || t == 2) check(label, &f, DOZE_KERNELS_SIMD, 2);
            if (sh == 0 && t == 3) {
                snprintf(label, sizeof label, "%s dim %d reference", doze_type_name(types[t]), shapes[sh].dim);
                check(label, &f, DOZE_KERNELS_REFERENCE, 0);
            }
            free(f.data);
        }
    /* the other weight types (their own row kernels and block sizes; rows of
     * dim 512 and hidden 1024 are whole K-quant blocks), dense and masked */
    static const int more[7] = {DOZE_TYPE_Q4_1, DOZE_TYPE_Q5_0, DOZE_TYPE_Q5_1, DOZE_TYPE_IQ4_NL,
                                DOZE_TYPE_Q4_K, DOZE_TYPE_Q5_K, DOZE_TYPE_Q6_K};
    for (int t = 0; t < 7; t++) {
        mem_buf f = fixture_gguf(512, 1024, 2, 8, 8, 600, 128, 31 + (uint64_t)t, more[t]);
        CHECK(f.data != NULL);
        if (!f.data) continue;
        char label[96];
        snprintf(label, sizeof label, "%s dim 512", doze_type_name(more[t]));
        check(label, &f, DOZE_KERNELS_SIMD, 0);
        check(label, &f, DOZE_KERNELS_SIMD, 1);
        free(f.data);
    }
    /* mixtures of experts (4 experts, top 2; the router and the experts'
     * products are split by rows), dense: the model's own routing */
    static const char *const moe_archs[2] = {"llama", "qwen3moe"};
    for (int a = 0; a < 2; a++) {
        mem_buf f = fixture_moe_gguf(moe_archs[a], 512, 512, 2, 8, 4, 600, 128, 41 + (uint64_t)a, DOZE_TYPE_Q8_0, 4, 2);
        CHECK(f.data != NULL);
        if (!f.data) continue;
        char label[96];
        snprintf(label, sizeof label, "%s moe 4x2 q8_0", moe_archs[a]);
        check(label, &f, DOZE_KERNELS_SIMD, 0);
        free(f.data);
    }
    check_training("llama", 0);
    check_training("qwen2", 0);
    check_training("qwen3", 48);
    return test_finish("test_threads");
}
