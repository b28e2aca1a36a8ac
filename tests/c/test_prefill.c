/* The batched prefill against the token-by-token path (bit-exact logits and
 * KV cache, identical greedy continuation) for f32, f16, q8_0 and q4_0 on
 * random models (GQA, head sizes that do and do not fit q blocks, prompts
 * longer than a prefill chunk), with SIMD and reference kernels; the same
 * under random forced masks (skipped layers, heads, FFN blocks); a prefill
 * under gates and a budget; scoring a text (doze_session_score) against
 * the likelihoods single steps give; and Q4_0's greedy run of stories260K
 * against llama2.c's (../shared). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "session.h"
#include "model_fixture.h"
#include "test_util.h"

static int argmax(const float *l, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (l[i] > l[b]) b = i;
    return b;
}

/* -log softmax(l)[target] in double: the test's own, to compare scores with */
static double step_nll(const float *l, int n, int target) {
    float max = l[0];
    for (int i = 1; i < n; i++)
        if (l[i] > max) max = l[i];
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += exp((double)(l[i] - max));
    return log(sum) - (double)(l[target] - max);
}

/* n random tokens below vocab from a seed */
static void random_tokens(int32_t *t, int n, int vocab, uint64_t r) {
    for (int i = 0; i < n; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        t[i] = (int32_t)((r >> 33) % (uint64_t)vocab);
    }
}

/* Scores of a text (in two calls, after a prefilled start) against the
 * likelihoods of the same tokens stepped: bit for bit, the last logits too;
 * then bad tokens and a text past the context are refused with the session
 * as it was. */
static void check_score(const char *label, const mem_buf *f, int n) {
    doze_error e;
    doze_model *m = NULL;
    CHECK(doze_model_load_memory(f->data, f->len, NULL, &m, &e) == DOZE_OK);
    if (!m) return;
    const doze_model_info *c = doze_model_get_info(m);
    int32_t *toks = malloc((size_t)(n + 1) * sizeof *toks);
    double *want = malloc((size_t)n * sizeof *want), *got = malloc((size_t)n * sizeof *got);
    float *compute = malloc((size_t)n * sizeof *compute);
    random_tokens(toks, n + 1, c->vocab_size, 99);
    doze_session *a = doze_session_new(m, &e), *b = doze_session_new(m, &e);
    for (int i = 0; i < n; i++) {
        CHECK(doze_session_step(a, toks[i], &e) == DOZE_OK);
        want[i] = step_nll(doze_session_logits(a), c->vocab_size, toks[i + 1]);
    }
    const int start = 3, first = n / 2;
    for (int i = 0; i < start; i++) got[i] = want[i];
    CHECK(doze_session_prefill(b, toks, start, &e) == DOZE_OK);
    CHECK_MSG(doze_session_score(b, toks + start, toks + start + 1, first - start, got + start, compute + start, &e) ==
                  DOZE_OK, "%s: %s", label, e.message);
    CHECK(doze_session_score(b, toks + first, toks + first + 1, n - first, got + first, compute + first, &e) ==
          DOZE_OK);
    int same = 0, ones = 0;
    for (int i = 0; i < n; i++) same += memcmp(&want[i], &got[i], sizeof got[i]) == 0;
    for (int i = start; i < n; i++) ones += compute[i] == 1.0f;
    printf("%s: score of %d tokens: %d of %d likelihoods equal the steps' bit for bit\n", label, n, same, n);
    CHECK(same == n);
    CHECK(ones == n - start);
    CHECK(doze_session_pos(b) == n);
    CHECK(memcmp(doze_session_logits(a), doze_session_logits(b), (size_t)c->vocab_size * 4) == 0);

    int32_t bad[2] = {0, c->vocab_size};
    CHECK(doze_session_score(b, bad, bad + 1, 1, got, NULL, &e) == DOZE_ERR_TOKEN_RANGE);
    int32_t *zeros = calloc((size_t)c->context_length, sizeof *zeros);
    double *nll = malloc((size_t)c->context_length * sizeof *nll);
    CHECK(doze_session_score(b, zeros, zeros, c->context_length - n + 1, nll, NULL, &e) == DOZE_ERR_CONTEXT_FULL);
    free(zeros);
    free(nll);
    CHECK(doze_session_score(b, toks, NULL, 1, got, NULL, &e) == DOZE_ERR_INVALID_ARGUMENT);
    CHECK(doze_session_pos(b) == n);
    CHECK(memcmp(doze_session_logits(a), doze_session_logits(b), (size_t)c->vocab_size * 4) == 0);
    CHECK(doze_session_score(b, toks, toks, 0, NULL, NULL, &e) == DOZE_OK);
    free(toks);
    free(want);
    free(got);
    free(compute);
    doze_session_free(a);
    doze_session_free(b);
    doze_model_free(m);
}

/* prompt of n tokens prefilled vs stepped, then `cont` greedy steps on both */
static void check_model(const char *label, const mem_buf *f, int kernels, int n, int cont) {
    doze_model_params mp = doze_model_default_params();
    mp.kernels = kernels;
    doze_model *m = NULL;
    doze_error e;
    CHECK_MSG(doze_model_load_memory(f->data, f->len, &mp, &m, &e) == DOZE_OK, "%s: %s", label, e.message);
    if (!m) return;
    const doze_model_info *c = doze_model_get_info(m);
    doze_session *a = doze_session_new(m, &e), *b = doze_session_new(m, &e);
    int32_t *toks = malloc((size_t)n * sizeof *toks);
    uint64_t r = 12345;
    for (int i = 0; i < n; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        toks[i] = (int32_t)((r >> 33) % (uint64_t)c->vocab_size);
    }
    for (int i = 0; i < n; i++) CHECK(doze_session_step(a, toks[i], &e) == DOZE_OK);
    CHECK_MSG(doze_session_prefill(b, toks, n, &e) == DOZE_OK, "%s: prefill: %s", label, e.message);
    CHECK(doze_session_pos(a) == doze_session_pos(b));
    double worst = 0.0;
    long diff_bits = 0;
    const float *la = doze_session_logits(a), *lb = doze_session_logits(b);
    for (int v = 0; v < c->vocab_size; v++) {
        double d = fabs((double)la[v] - lb[v]) / (fabs(la[v]) > 1.0 ? fabs(la[v]) : 1.0);
        if (d > worst) worst = d;
        diff_bits += memcmp(&la[v], &lb[v], 4) != 0;
    }
    const kv_cache *ka = session_kv(a), *kb = session_kv(b);
    size_t kv_dim = (size_t)c->n_kv_heads * c->head_dim;
    long kv_diff = 0;
    for (int l = 0; l < c->n_layers; l++) {
        size_t o = (size_t)l * c->context_length * kv_dim;
        kv_diff += memcmp(ka->key + o, kb->key + o, (size_t)n * kv_dim * 4) != 0;
        kv_diff += memcmp(ka->value + o, kb->value + o, (size_t)n * kv_dim * 4) != 0;
        kv_diff += memcmp(ka->valid + (size_t)l * c->context_length, kb->valid + (size_t)l * c->context_length,
                          (size_t)n) != 0;
    }
    int same_tokens = 1;
    for (int i = 0; i < cont; i++) {
        int ta = argmax(doze_session_logits(a), c->vocab_size);
        int tb = argmax(doze_session_logits(b), c->vocab_size);
        same_tokens &= ta == tb;
        doze_session_step(a, ta, &e);
        doze_session_step(b, tb, &e);
    }
    CHECK_MSG(worst <= 1e-5, "%s: worst relative logit difference %g", label, worst);
    CHECK_MSG(diff_bits == 0, "%s: %ld logits not bit-identical", label, diff_bits);
    CHECK_MSG(kv_diff == 0, "%s: KV cache differs in %ld layer planes", label, kv_diff);
    CHECK_MSG(same_tokens, "%s: greedy continuation differs", label);
    printf("%-34s prompt %3d: logits %s (worst %.2g), KV %s, %d greedy tokens %s\n", label, n,
           diff_bits ? "DIFFERENT" : "bit-identical", worst, kv_diff ? "DIFFERENT" : "identical", cont,
           same_tokens ? "identical" : "DIFFERENT");
    free(toks);
    doze_session_free(a);
    doze_session_free(b);
    doze_model_free(m);
}

/* n tokens under random masks: a masked prefill vs masked steps (same bits
 * in logits, K/V of running layers, validity, reported mask). */
static void check_masked(const char *label, const mem_buf *f, int n) {
    doze_error e;
    doze_model *m = NULL;
    CHECK_MSG(doze_model_load_memory(f->data, f->len, NULL, &m, &e) == DOZE_OK, "%s: %s", label, e.message);
    if (!m) return;
    const doze_model_info *c = doze_model_get_info(m);
    const int NL = c->n_layers, NH = c->n_heads, NB = doze_model_ffn_blocks(m);
    doze_session *a = doze_session_new(m, &e), *b = doze_session_new(m, &e);
    int32_t *toks = malloc((size_t)n * sizeof *toks);
    uint8_t *lon = malloc((size_t)n * NL), *hon = malloc((size_t)n * NL * NH), *fon = malloc((size_t)n * NL * NB);
    uint64_t r = 99;
#define RND() (r = r * 6364136223846793005ull + 1442695040888963407ull, (r >> 33))
    for (int i = 0; i < n; i++) {
        toks[i] = (int32_t)(RND() % (uint64_t)c->vocab_size);
        /* every 5th token dense (a chunk where all run must also be exact) */
        for (int l = 0; l < NL; l++) lon[i * NL + l] = i % 5 == 0 || RND() % 4 != 0;
        for (int h = 0; h < NL * NH; h++) hon[(size_t)i * NL * NH + h] = i % 5 == 0 || RND() % 3 != 0;
        for (int j = 0; j < NL * NB; j++) fon[(size_t)i * NL * NB + j] = i % 5 == 0 || RND() % 3 != 0;
    }
#undef RND
    for (int i = 0; i < n; i++)
        CHECK(doze_session_step_masked(a, toks[i], &(doze_mask){lon + i * NL, hon + (size_t)i * NL * NH,
                                                                fon + (size_t)i * NL * NB, NULL}, &e) == DOZE_OK);
    CHECK_MSG(doze_session_prefill_masked(b, toks, n, &(doze_mask){lon, hon, fon, NULL}, &e) == DOZE_OK, "%s: %s", label,
              e.message);
    long diff_bits = 0, kv_diff = 0;
    const float *la = doze_session_logits(a), *lb = doze_session_logits(b);
    for (int v = 0; v < c->vocab_size; v++) diff_bits += memcmp(&la[v], &lb[v], 4) != 0;
    const kv_cache *ka = session_kv(a), *kb = session_kv(b);
    const size_t kv_dim = (size_t)c->n_kv_heads * c->head_dim;
    for (int l = 0; l < NL; l++)
        for (int i = 0; i < n; i++) {
            const size_t cell = (size_t)l * c->context_length + (size_t)i;
            kv_diff += ka->valid[cell] != kb->valid[cell] || ka->valid[cell] != lon[i * NL + l];
            if (ka->valid[cell])
                kv_diff += memcmp(ka->key + cell * kv_dim, kb->key + cell * kv_dim, kv_dim * 4) != 0 ||
                           memcmp(ka->value + cell * kv_dim, kb->value + cell * kv_dim, kv_dim * 4) != 0;
        }
    int same_mask = memcmp(doze_session_layer_mask(a), doze_session_layer_mask(b), (size_t)NL) == 0 &&
                    memcmp(doze_session_head_mask(a), doze_session_head_mask(b), (size_t)NL * NH) == 0 &&
                    memcmp(doze_session_ffn_mask(a), doze_session_ffn_mask(b), (size_t)NL * NB) == 0;
    CHECK_MSG(diff_bits == 0, "%s: %ld logits differ", label, diff_bits);
    CHECK_MSG(kv_diff == 0, "%s: %ld KV rows or validity marks differ", label, kv_diff);
    CHECK_MSG(same_mask, "%s: the reported mask differs", label);
    CHECK(doze_session_compute(a) == doze_session_compute(b) && doze_session_compute(a) < 1.0f);
    printf("%-34s masked prompt %3d: logits %s, KV %s\n", label, n, diff_bits ? "DIFFERENT" : "bit-identical",
           kv_diff ? "DIFFERENT" : "identical");
    /* a mask without its layers is refused */
    CHECK(doze_session_prefill_masked(b, toks, 1, &(doze_mask){NULL, hon, NULL, NULL}, &e) == DOZE_ERR_INVALID_ARGUMENT);
    free(toks), free(lon), free(hon), free(fon);
    doze_session_free(a);
    doze_session_free(b);
    doze_model_free(m);
}

/* A prompt prefilled under training-free gates at budget b: the gates skip
 * (compute of the last token < 1, some layer invalid somewhere), and at
 * b = 1 the gated prefill is the dense one. */
static void check_gated(const mem_buf *f) {
    doze_error e;
    doze_model *m = NULL;
    CHECK(doze_model_load_memory(f->data, f->len, NULL, &m, &e) == DOZE_OK);
    if (!m) return;
    const doze_model_info *c = doze_model_get_info(m);
    enum { N = 150 };
    int32_t toks[N];
    random_tokens(toks, N, c->vocab_size, 5);
    doze_gates_params gp = doze_gates_default_params();
    doze_gates *g = NULL;
    CHECK(doze_gates_calibrate(m, toks, N, &gp, &g, &e) == DOZE_OK);
    doze_session *a = doze_session_new(m, &e), *b = doze_session_new(m, &e);
    CHECK(doze_session_set_gates(a, g, &e) == DOZE_OK && doze_session_set_gates(b, g, &e) == DOZE_OK);
    CHECK(doze_session_prefill(a, toks, N, &e) == DOZE_OK); /* budget 1: dense */
    for (int i = 0; i < N; i++) CHECK(doze_session_step(b, toks[i], &e) == DOZE_OK);
    CHECK(memcmp(doze_session_logits(a), doze_session_logits(b), (size_t)c->vocab_size * 4) == 0);
    doze_session_reset(a);
    CHECK(doze_session_set_budget(a, 0.5f, &e) == DOZE_OK);
    CHECK(doze_session_prefill(a, toks, N, &e) == DOZE_OK);
    const kv_cache *ka = session_kv(a);
    long skipped = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int i = 0; i < N; i++) skipped += !ka->valid[(size_t)l * c->context_length + i];
    /* the same prompt stepped under the same gates and budget */
    doze_session_reset(b);
    CHECK(doze_session_set_budget(b, 0.5f, &e) == DOZE_OK);
    for (int i = 0; i < N; i++) CHECK(doze_session_step(b, toks[i], &e) == DOZE_OK);
    const kv_cache *kb = session_kv(b);
    long skipped_steps = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int i = 0; i < N; i++) skipped_steps += !kb->valid[(size_t)l * c->context_length + i];
    printf("gated prefill at b = 0.5: %ld of %d layer positions skipped (stepped: %ld)\n", skipped, N * c->n_layers,
           skipped_steps);
    /* scored under the budget: the steps' likelihoods and compute, token by token */
    {
        double want[N - 1], got[N - 1];
        float want_c[N - 1], got_c[N - 1];
        doze_session_reset(b);
        for (int i = 0; i + 1 < N; i++) {
            CHECK(doze_session_step(b, toks[i], &e) == DOZE_OK);
            want[i] = step_nll(doze_session_logits(b), c->vocab_size, toks[i + 1]);
            want_c[i] = doze_session_compute(b);
        }
        doze_session_reset(a);
        CHECK(doze_session_score(a, toks, toks + 1, N - 1, got, got_c, &e) == DOZE_OK);
        double mean = 0;
        for (int i = 0; i + 1 < N; i++) mean += got_c[i] / (N - 1);
        printf("gated score at b = 0.5: mean compute %.4f\n", mean);
        CHECK(memcmp(want, got, sizeof got) == 0);
        CHECK(memcmp(want_c, got_c, sizeof got_c) == 0);
        CHECK(mean < 0.8);
    }
    CHECK(skipped > 0);
    CHECK(skipped_steps > 0);
    doze_session_free(a);
    doze_session_free(b);
    doze_gates_free(g);
    doze_model_free(m);
}

/* Greedy run of stories260K in q4_0: how many leading tokens equal
 * llama2.c's (f32) greedy run. */
static void check_stories_q4(void) {
    char p0[512], p1[512], p2[512];
    const char *ckpt = test_shared_path(p0, sizeof p0, "models/stories260K.bin");
    const char *tok = test_shared_path(p1, sizeof p1, "models/tok512.bin");
    const char *pairs = test_shared_path(p2, sizeof p2, "models/stories260K.greedy.pairs");
    if (!test_file_exists(ckpt) || !test_file_exists(tok) || !test_file_exists(pairs)) {
        printf("stories260K q4_0: SKIP: reference data not found in ../shared\n");
        return;
    }
    size_t cn = 0, tn = 0;
    uint8_t *cb = test_read_file(ckpt, &cn), *tb = test_read_file(tok, &tn);
    gguf_builder gb;
    doze_error e;
    mem_buf f = {NULL, 0, 0};
    CHECK(gguf_builder_init(&gb, &e) == DOZE_OK);
    CHECK(convert_llama2c(cb, cn, tb, tn, DOZE_TYPE_Q4_0, "stories260K", &gb, &e) == DOZE_OK);
    CHECK(gguf_writer_write(gb.w, mem_write, &f, &e) == DOZE_OK);
    gguf_builder_free(&gb);
    free(cb);
    free(tb);
    static int r_in[1024], r_next[1024];
    FILE *pf = fopen(pairs, "r");
    int nr = 0;
    while (pf && nr < 1024 && fscanf(pf, "%d %d", &r_in[nr], &r_next[nr]) == 2) nr++;
    if (pf) fclose(pf);
    doze_model *m = NULL;
    CHECK(doze_model_load_memory(f.data, f.len, NULL, &m, &e) == DOZE_OK);
    free(f.data);
    if (!m) return;
    const doze_model_info *c = doze_model_get_info(m);
    CHECK(c->weight_type == DOZE_TYPE_Q4_0);
    doze_session *s = doze_session_new(m, &e);
    int token = r_in[0], follow = 0;
    for (int i = 0; i < nr; i++) {
        doze_session_step(s, token, &e);
        int next = argmax(doze_session_logits(s), c->vocab_size);
        if (next != r_next[i]) break;
        follow++;
        token = next;
    }
    printf("stories260K q4_0: greedy run follows llama2.c's f32 run for %d of %d tokens\n", follow, nr);
    CHECK_MSG(follow >= 25, "q4_0 greedy prefix %d < 25", follow);
    doze_session_free(s);
    doze_model_free(m);
}

int main(void) {
    static const int types[5] = {DOZE_TYPE_F32, DOZE_TYPE_F16, DOZE_TYPE_BF16, DOZE_TYPE_Q8_0, DOZE_TYPE_Q4_0};
    static const uint64_t seeds[5] = {7, 8, 11, 9, 10};
    /* head_dim 16 (q heads widened to f32, GQA 4/2) and head_dim 32 (q4/q8 heads kept) */
    struct {
        int dim, hidden, layers, heads, kv;
    } shapes[2] = {{64, 96, 2, 4, 2}, {128, 160, 2, 4, 4}};
    for (int sh = 0; sh < 2; sh++)
        for (int t = 0; t < 5; t++) {
            mem_buf f = fixture_gguf(shapes[sh].dim, shapes[sh].hidden, shapes[sh].layers, shapes[sh].heads,
                                     shapes[sh].kv, 300, 160, seeds[t], types[t]);
            CHECK(f.data != NULL);
            if (!f.data) continue;
            for (int k = 0; k < 2; k++) {
                char label[96];
                snprintf(label, sizeof label, "%s dim %d hd %d %s", doze_type_name(types[t]), shapes[sh].dim,
                         shapes[sh].dim / shapes[sh].heads, k ? "reference" : "simd");
                check_model(label, &f, k ? DOZE_KERNELS_REFERENCE : DOZE_KERNELS_SIMD, sh ? 70 : 37, 12);
            }
            {
                char label[96];
                snprintf(label, sizeof label, "%s dim %d", doze_type_name(types[t]), shapes[sh].dim);
                check_masked(label, &f, sh ? 70 : 37);
                if (sh == 0 && t == 0) check_gated(&f);
                check_score(label, &f, sh ? 140 : 37);
            }
            if (sh == 0) {
                char label[96];
                snprintf(label, sizeof label, "%s 1-token prefill", doze_type_name(types[t]));
                check_model(label, &f, DOZE_KERNELS_SIMD, 1, 4);
            }
            free(f.data);
        }
    check_stories_q4();
    return test_finish("test_prefill");
}
