/* Layer, head and FFN-block skipping (DESIGN.md semantics) on the suite's
 * own models: all gates on is the dense model bit for bit; a forced mask
 * equals an independent scalar reference that zeroes the same heads and the
 * same FFN intermediate channels (blocks of 16 on small f32/f16 FFNs, of 32
 * otherwise: both are run) and removes the same layers
 * from the stream and from later attention; the whole-sequence
 * forward equals the token-by-token one under the same masks; the budget's
 * achieved compute tracks b; the layer and head gates read the layer's input
 * and the FFN block gates the FFN's input (after attention); gate files
 * round-trip, refuse other models, version-2 files with block gates and
 * files whose FFN block size is not the model's. Mixtures of experts: the
 * model's own top k is what b = 1 runs (forced back, or gates at b = 1, the
 * same bits); forced expert masks equal the scalar reference, the whole
 * sequence and a batched prefill give the steps' bits; under a budget the
 * experts doze too, and achieved compute still tracks b. */
#include <stdint.h>

#include "gates.h"
#include "gguf.h"
#include "model.h"
#include "session.h"
#include "model_fixture.h"
#include "test_util.h"

static uint64_t rng = 0x1234567;
static uint32_t next_u32(void) {
    rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
    return (uint32_t)((rng * 0x2545F4914F6CDD1Dull) >> 32);
}

/* ---- an independent scalar reference forward with masks (f32 weights) ---- */
typedef struct {
    int dim, hidden, nl, nh, nkv, hd, vocab;
    const float *emb, *out_norm;
    const float *attn_norm[8], *wq[8], *wk[8], *wv[8], *wo[8], *ffn_norm[8], *w1[8], *w2[8], *w3[8];
    int fb; /* channels per FFN block */
    /* a mixture of experts (E > 0): the router (E, dim) and expert e's
     * gate/up (hidden, dim) and down (dim, hidden) at e * hidden * dim */
    int E;
    const float *router[8], *ge[8], *ue[8], *de[8];
} ref_model;

static const float *tensor(const gguf_header *h, const uint8_t *file, const char *name) {
    const gguf_tensor *t = gguf_find_tensor(h, name);
    return t ? (const float *)(file + h->data_offset + t->offset) : NULL;
}

static void ref_rmsnorm(float *o, const float *x, const float *w, int n) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    double s = 1.0 / sqrt(ss / n + 1e-5);
    for (int i = 0; i < n; i++) o[i] = (float)(x[i] * s * w[i]);
}

static void ref_matvec(float *y, const float *w, const float *x, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        double s = 0;
        for (int c = 0; c < cols; c++) s += (double)w[(size_t)r * cols + c] * x[c];
        y[r] = (float)s;
    }
}

static void ref_rope(float *v, int n, int hd, int pos) {
    for (int i = 0; i < n; i += 2) {
        int j = i % hd;
        double ang = pos * pow(10000.0, -(double)j / hd);
        double a = v[i], b = v[i + 1];
        v[i] = (float)(a * cos(ang) - b * sin(ang));
        v[i + 1] = (float)(a * sin(ang) + b * cos(ang));
    }
}

/* logits (T, vocab) of tokens under masks; K/V of a position exist at layer
 * l only if the layer ran there */
/* a mixture's FFN of layer l on hn(dim) into out(dim): the experts of
 * on(E), their softmax probabilities renormalized over them */
static void ref_moe(const ref_model *M, int l, const float *hn, const uint8_t *on, float *out) {
    const int D = M->dim, HID = M->hidden, E = M->E;
    float pr[64], *h1 = malloc((size_t)HID * 4), *h3 = malloc((size_t)HID * 4), *y = malloc((size_t)D * 4);
    ref_matvec(pr, M->router[l], hn, E, D);
    double mx = -1e300, sum = 0, p[64];
    for (int e = 0; e < E; e++) mx = pr[e] > mx ? pr[e] : mx;
    for (int e = 0; e < E; e++) p[e] = exp(pr[e] - mx);
    for (int e = 0; e < E; e++) sum += on[e] ? p[e] : 0.0;
    memset(out, 0, (size_t)D * 4);
    for (int e = 0; e < E; e++) {
        if (!on[e]) continue;
        const size_t off = (size_t)e * HID * D;
        ref_matvec(h1, M->ge[l] + off, hn, HID, D);
        ref_matvec(h3, M->ue[l] + off, hn, HID, D);
        for (int i = 0; i < HID; i++) h1[i] = (float)(h1[i] / (1.0 + exp(-h1[i])) * h3[i]);
        ref_matvec(y, M->de[l] + off, h1, D, HID);
        for (int i = 0; i < D; i++) out[i] += (float)(p[e] / sum * y[i]);
    }
    free(h1), free(h3), free(y);
}

/* eon (T, nl, E): a mixture's experts (ignored when dense); fon (T, nl, 1)
 * then says whether the mixture runs at all */
static void ref_forward_moe(const ref_model *M, const int *tokens, int T, const uint8_t *lon,
                            const uint8_t *hon, const uint8_t *fon, const uint8_t *eon, float *logits);

static void ref_forward(const ref_model *M, const int *tokens, int T, const uint8_t *lon,
                        const uint8_t *hon, const uint8_t *fon, float *logits) {
    ref_forward_moe(M, tokens, T, lon, hon, fon, NULL, logits);
}

static void ref_forward_moe(const ref_model *M, const int *tokens, int T, const uint8_t *lon,
                            const uint8_t *hon, const uint8_t *fon, const uint8_t *eon, float *logits) {
    const int NB = (M->hidden + M->fb - 1) / M->fb;
    int D = M->dim, HD = M->hd, KV = M->nkv * HD, Q = M->nh * HD;
    float *x = malloc((size_t)D * 4), *xn = malloc((size_t)D * 4), *q = malloc((size_t)Q * 4);
    float *att = malloc((size_t)Q * 4), *tmp = malloc((size_t)D * 4);
    float *h1 = malloc((size_t)M->hidden * 4), *h3 = malloc((size_t)M->hidden * 4);
    float *K = calloc((size_t)M->nl * T * KV, 4), *V = calloc((size_t)M->nl * T * KV, 4);
    double *sc = malloc((size_t)T * sizeof(double));
    for (int t = 0; t < T; t++) {
        memcpy(x, M->emb + (size_t)tokens[t] * D, (size_t)D * 4);
        for (int l = 0; l < M->nl; l++) {
            if (!lon[(size_t)t * M->nl + l]) continue;
            ref_rmsnorm(xn, x, M->attn_norm[l], D);
            float *k = K + ((size_t)l * T + t) * KV, *v = V + ((size_t)l * T + t) * KV;
            ref_matvec(q, M->wq[l], xn, Q, D);
            ref_matvec(k, M->wk[l], xn, KV, D);
            ref_matvec(v, M->wv[l], xn, KV, D);
            ref_rope(q, Q, HD, t);
            ref_rope(k, KV, HD, t);
            memset(att, 0, (size_t)Q * 4);
            for (int h = 0; h < M->nh; h++) {
                if (!hon[((size_t)t * M->nl + l) * M->nh + h]) continue; /* zeroed head */
                int kvh = h / (M->nh / M->nkv);
                double mx = -1e300, sum = 0;
                for (int p = 0; p <= t; p++) {
                    sc[p] = -1e300;
                    if (!lon[(size_t)p * M->nl + l]) continue; /* removed from later attention */
                    double d = 0;
                    for (int i = 0; i < HD; i++)
                        d += (double)q[h * HD + i] * K[((size_t)l * T + p) * KV + kvh * HD + i];
                    sc[p] = d / sqrt((double)HD);
                    if (sc[p] > mx) mx = sc[p];
                }
                for (int p = 0; p <= t; p++) sum += sc[p] > -1e299 ? exp(sc[p] - mx) : 0;
                for (int p = 0; p <= t; p++) {
                    if (sc[p] <= -1e299) continue;
                    double a = exp(sc[p] - mx) / sum;
                    for (int i = 0; i < HD; i++)
                        att[h * HD + i] += (float)(a * V[((size_t)l * T + p) * KV + kvh * HD + i]);
                }
            }
            ref_matvec(tmp, M->wo[l], att, D, Q);
            for (int i = 0; i < D; i++) x[i] += tmp[i];
            ref_rmsnorm(xn, x, M->ffn_norm[l], D);
            if (M->E) {
                if (fon && !fon[(size_t)t * M->nl + l]) continue;
                ref_moe(M, l, xn, eon + ((size_t)t * M->nl + l) * M->E, tmp);
                for (int i = 0; i < D; i++) x[i] += tmp[i];
                continue;
            }
            ref_matvec(h1, M->w1[l], xn, M->hidden, D);
            ref_matvec(h3, M->w3[l], xn, M->hidden, D);
            for (int i = 0; i < M->hidden; i++) h1[i] = (float)(h1[i] / (1.0 + exp(-h1[i])) * h3[i]);
            if (fon) /* a skipped FFN block: its fb channels contribute nothing */
                for (int i = 0; i < M->hidden; i++)
                    if (!fon[((size_t)t * M->nl + l) * NB + i / M->fb]) h1[i] = 0.0f;
            ref_matvec(tmp, M->w2[l], h1, D, M->hidden);
            for (int i = 0; i < D; i++) x[i] += tmp[i];
        }
        ref_rmsnorm(xn, x, M->out_norm, D);
        ref_matvec(logits + (size_t)t * M->vocab, M->emb, xn, M->vocab, D);
    }
    free(x), free(xn), free(q), free(att), free(tmp), free(h1), free(h3), free(K), free(V), free(sc);
}

static double scaled_diff(const float *a, const float *b, size_t n) {
    double worst = 0, scale = 1e-9;
    for (size_t i = 0; i < n; i++) {
        if (fabs((double)a[i] - b[i]) > worst) worst = fabs((double)a[i] - b[i]);
        if (fabs((double)b[i]) > scale) scale = fabs((double)b[i]);
    }
    return worst / scale;
}

/* Sets a saved gate file's u32 key (key, u32 type tag, value) to `value`
 * in place; 1 when the key was found. */
static int patch_gates_u32(uint8_t *data, size_t len, const char *key, uint32_t value) {
    const size_t n = strlen(key);
    for (size_t i = 0; i + n + 9 <= len; i++)
        if (memcmp(data + i, key, n) == 0 && data[i + n] == 4 /* GGUF u32 tag */) {
            memcpy(data + i + n + 4, &value, 4);
            return 1;
        }
    return 0;
}
static int patch_gates_version(uint8_t *data, size_t len, uint32_t version) {
    return patch_gates_u32(data, len, "doze.gates.version", version);
}

/* The reference's weights from a fixture file (f32). */
static ref_model ref_of(const gguf_header *h, const uint8_t *file, int dim, int hid, int nl, int nh,
                        int nkv, int vocab, int fb) {
    ref_model M = {dim, hid, nl, nh, nkv, dim / nh, vocab, tensor(h, file, "token_embd.weight"),
                   tensor(h, file, "output_norm.weight"), {0}, {0}, {0}, {0}, {0}, {0}, {0}, {0}, {0}, fb,
                   0, {0}, {0}, {0}, {0}};
    for (int l = 0; l < nl; l++) {
        char nm[64];
#define T_(field, s)                                              \
    snprintf(nm, sizeof nm, "blk.%d." s ".weight", l);            \
    M.field[l] = tensor(h, file, nm);
        T_(attn_norm, "attn_norm") T_(wq, "attn_q") T_(wk, "attn_k") T_(wv, "attn_v")
        T_(wo, "attn_output") T_(ffn_norm, "ffn_norm") T_(w1, "ffn_gate") T_(w2, "ffn_down")
        T_(w3, "ffn_up")
        T_(router, "ffn_gate_inp") T_(ge, "ffn_gate_exps") T_(ue, "ffn_up_exps") T_(de, "ffn_down_exps")
#undef T_
    }
    return M;
}

/* The FFN block size of a model of FFN size hid and type `type` is want_fb;
 * on it, all blocks on == dense bit for bit; forced masks of layers, heads
 * and FFN blocks: the whole-sequence forward == token by token bit for bit,
 * and (f32) == the scalar reference with blocks of want_fb, or (f16) close to
 * the f32 model of the same seed under the same masks. */
static void check_block_size(int hid, int type, int want_fb) {
    enum { D = 64, NL = 3, NH = 4, NKV = 2, V = 200, T = 24 };
    const int nb = (hid + want_fb - 1) / want_fb;
    const uint64_t rng_main = rng; /* its own random stream: the main test's stays as it was */
    rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)(hid * 64 + type);
    mem_buf f = fixture_gguf(D, hid, NL, NH, NKV, V, 128, 91, type);
    doze_model *m = NULL;
    doze_error e;
    CHECK(doze_model_load_memory(f.data, f.len, NULL, &m, &e) == DOZE_OK);
    if (!m) {
        free(f.data);
        rng = rng_main;
        return;
    }
    CHECK(doze_model_ffn_block(m) == want_fb && doze_model_get_info(m)->ffn_block == want_fb);
    CHECK(doze_model_ffn_blocks(m) == nb);
    int tokens[T];
    int32_t tokens32[T];
    for (int t = 0; t < T; t++) tokens32[t] = tokens[t] = t == 0 ? 1 : 3 + (int)(next_u32() % (V - 3));
    uint8_t *lon = malloc(T * NL), *hon = malloc(T * NL * NH), *fon = malloc((size_t)T * NL * nb);
    uint8_t *all_f = malloc((size_t)NL * nb), all_l[NL];
    memset(all_f, 1, (size_t)NL * nb);
    memset(all_l, 1, sizeof all_l);
    for (int t = 0; t < T; t++)
        for (int l = 0; l < NL; l++) {
            lon[t * NL + l] = t == 0 || next_u32() % 4 != 0;
            for (int h = 0; h < NH; h++) hon[(t * NL + l) * NH + h] = next_u32() % 3 != 0;
            for (int j = 0; j < nb; j++) fon[(size_t)(t * NL + l) * nb + j] = next_u32() % 2 != 0;
        }
    const size_t nlog = (size_t)T * V;
    float *a = malloc(nlog * 4), *b = malloc(nlog * 4), *r = malloc(nlog * 4);
    doze_session *s1 = doze_session_new(m, &e), *s2 = doze_session_new(m, &e);
    int same = 1;
    for (int t = 0; t < T; t++) {
        doze_session_step(s1, tokens[t], &e);
        doze_session_step_masked(s2, tokens[t], &(doze_mask){all_l, NULL, all_f, NULL}, &e);
        same &= memcmp(doze_session_logits(s1), doze_session_logits(s2), V * 4) == 0;
    }
    doze_session_reset(s2);
    for (int t = 0; t < T; t++) {
        CHECK(doze_session_step_masked(s2, tokens[t], &(doze_mask){lon + t * NL, hon + t * NL * NH, fon + (size_t)t * NL * nb, NULL}, &e) == DOZE_OK);
        memcpy(a + (size_t)t * V, doze_session_logits(s2), V * 4);
    }
    CHECK(doze_sequence_forward(m, tokens32, T, &(doze_mask){lon, hon, fon, NULL}, b, &e) == DOZE_OK);
    double d_ref;
    if (type == DOZE_TYPE_F32) {
        gguf_header h;
        CHECK(gguf_parse_header(f.data, f.len, &h, &e) == DOZE_OK);
        ref_model M = ref_of(&h, f.data, D, hid, NL, NH, NKV, V, want_fb);
        ref_forward(&M, tokens, T, lon, hon, fon, r);
        gguf_header_free(&h);
    } else {
        mem_buf f32 = fixture_gguf(D, hid, NL, NH, NKV, V, 128, 91, DOZE_TYPE_F32);
        doze_model *m32 = NULL;
        CHECK(doze_model_load_memory(f32.data, f32.len, NULL, &m32, &e) == DOZE_OK);
        CHECK(m32 && doze_model_ffn_block(m32) == want_fb);
        if (m32) CHECK(doze_sequence_forward(m32, tokens32, T, &(doze_mask){lon, hon, fon, NULL}, r, &e) == DOZE_OK);
        doze_model_free(m32);
        free(f32.data);
    }
    d_ref = scaled_diff(a, r, nlog);
    printf("%s FFN %d, blocks of %d (%d): all on == dense %s; masks: whole-sequence %s, vs %s %.3g\n",
           doze_type_name(type), hid, want_fb, nb, same ? "yes" : "NO",
           memcmp(a, b, nlog * 4) == 0 ? "bit-identical" : "DIFFERENT",
           type == DOZE_TYPE_F32 ? "scalar reference" : "f32", d_ref);
    CHECK(same);
    CHECK(memcmp(a, b, nlog * 4) == 0);
    CHECK(d_ref < (type == DOZE_TYPE_F32 ? 1e-4 : 0.03));
    doze_session_free(s1);
    doze_session_free(s2);
    doze_model_free(m);
    free(f.data), free(lon), free(hon), free(fon), free(all_f), free(a), free(b), free(r);
    rng = rng_main;
}

/* A second model for the budget checks: gates calibrated on n tokens it
 * sampled itself (the sampler seeded, so the calibration is fixed), a
 * session on those gates, and n random tokens to run. The text is drawn
 * after the calibration, so the test's generator stays in step with the
 * checks that follow. Returns 0 when the model does not load. */
typedef struct {
    mem_buf f;
    doze_model *m;
    doze_session *s;
    doze_gates *g;
} budget_model;

static int budget_model_new(budget_model *bm, mem_buf f, int V, uint64_t seed, int32_t *calib, int32_t *text,
                            int n) {
    doze_error e;
    memset(bm, 0, sizeof *bm);
    bm->f = f;
    CHECK(f.data && doze_model_load_memory(f.data, f.len, NULL, &bm->m, &e) == DOZE_OK);
    if (!bm->m) return 0;
    doze_sampler_params sp = doze_sampler_default_params();
    sp.seed = seed;
    doze_sampler *smp = doze_sampler_new(&sp, V, &e);
    bm->s = doze_session_new(bm->m, &e);
    calib[0] = 1;
    for (int i = 0; i + 1 < n; i++) {
        doze_session_step(bm->s, calib[i], &e);
        calib[i + 1] = doze_sampler_sample(smp, doze_session_logits(bm->s));
    }
    doze_sampler_free(smp);
    for (int i = 0; i < n; i++) text[i] = i == 0 ? 1 : 3 + (int)(next_u32() % (V - 3));
    CHECK(doze_gates_calibrate(bm->m, calib, n, NULL, &bm->g, &e) == DOZE_OK);
    CHECK(doze_session_set_gates(bm->s, bm->g, &e) == DOZE_OK);
    return 1;
}

static void budget_model_free(budget_model *bm) {
    doze_session_free(bm->s);
    doze_gates_free(bm->g);
    doze_model_free(bm->m);
    free(bm->f.data);
}

/* ---- mixtures of experts: experts as units under masks and the budget ---- */

/* experts on per running FFN of a session's last step (and the count of
 * running FFNs, with any over k or none at all flagged in *bad) */
static int moe_count(const doze_session *s, int nl, int E, int k, int *ffns, int *bad) {
    const uint8_t *lm = doze_session_layer_mask(s), *fm = doze_session_ffn_mask(s), *em = doze_session_expert_mask(s);
    int n = 0;
    for (int l = 0; l < nl; l++) {
        int c = 0;
        for (int e = 0; e < E; e++) c += em[l * E + e] != 0;
        if (lm[l] && fm[l]) {
            (*ffns)++;
            n += c;
            *bad |= c < 1 || c > k;
        } else {
            *bad |= c != 0;
        }
    }
    return n;
}

static void test_moe(void) {
    enum { D = 64, HID = 64, NL = 4, NH = 4, NKV = 2, V = 300, T = 40, E = 8, K = 2 };
    doze_error e;
    mem_buf f = fixture_moe_gguf("llama", D, HID, NL, NH, NKV, V, 256, 91, DOZE_TYPE_F32, E, K);
    doze_model *m = NULL;
    CHECK(f.data && doze_model_load_memory(f.data, f.len, NULL, &m, &e) == DOZE_OK);
    if (!m) return;
    CHECK(doze_model_ffn_blocks(m) == 1);
    int tokens[T];
    int32_t tokens32[T];
    for (int t = 0; t < T; t++) tokens32[t] = tokens[t] = t == 0 ? 1 : 3 + (int)(next_u32() % (V - 3));
    const size_t nlog = (size_t)T * V;
    float *a = malloc(nlog * 4), *b = malloc(nlog * 4), *r = malloc(nlog * 4);
    uint8_t top[T * NL * E], all_l[T * NL], all_h[T * NL * NH], all_f[T * NL];
    memset(all_l, 1, sizeof all_l);
    memset(all_h, 1, sizeof all_h);
    memset(all_f, 1, sizeof all_f);

    /* 1. the model's own routing, recorded; forced back it gives the same
     * bits, and so do gates at b = 1 */
    {
        doze_session *s1 = doze_session_new(m, &e), *s2 = doze_session_new(m, &e), *s3 = doze_session_new(m, &e);
        doze_sampler_params sp = doze_sampler_default_params();
        int32_t calib[200];
        doze_sampler *smp = doze_sampler_new(&sp, V, &e);
        calib[0] = 1;
        for (int i = 0; i + 1 < 200; i++) {
            doze_session_step(s1, calib[i], &e);
            calib[i + 1] = doze_sampler_sample(smp, doze_session_logits(s1));
        }
        doze_sampler_free(smp);
        doze_session_reset(s1);
        doze_gates *g = NULL;
        CHECK(doze_gates_calibrate(m, calib, 200, NULL, &g, &e) == DOZE_OK);
        CHECK(g && g->n_experts == E && g->expert_bias);
        CHECK(doze_session_set_gates(s3, g, &e) == DOZE_OK && doze_session_set_budget(s3, 1.0f, &e) == DOZE_OK);
        int same = 1, topk = 1;
        for (int t = 0; t < T; t++) {
            CHECK(doze_session_step(s1, tokens[t], &e) == DOZE_OK);
            memcpy(a + (size_t)t * V, doze_session_logits(s1), V * 4);
            memcpy(top + (size_t)t * NL * E, doze_session_expert_mask(s1), NL * E);
            int ffns = 0, bad = 0;
            topk &= moe_count(s1, NL, E, K, &ffns, &bad) == NL * K && !bad;
            CHECK(doze_session_step_masked(s2, tokens[t], &(doze_mask){all_l, NULL, NULL, top + (size_t)t * NL * E}, &e) == DOZE_OK);
            CHECK(doze_session_step(s3, tokens[t], &e) == DOZE_OK);
            same &= memcmp(doze_session_logits(s1), doze_session_logits(s2), V * 4) == 0;
            same &= memcmp(doze_session_logits(s1), doze_session_logits(s3), V * 4) == 0;
            same &= memcmp(doze_session_expert_mask(s3), top + (size_t)t * NL * E, NL * E) == 0;
            same &= doze_session_compute(s2) > 0.9999f && doze_session_compute(s2) < 1.0001f;
            same &= doze_session_compute(s1) == 1.0f && doze_session_compute(s3) == 1.0f;
        }
        printf("MoE: the model's top-%d every step: %s; forced back and gates at b = 1: %s\n", K, topk ? "yes" : "NO",
               same ? "bit-identical" : "DIFFERENT");
        CHECK(topk && same);
        doze_session_free(s1);
        doze_session_free(s2);
        doze_session_free(s3);
        doze_gates_free(g);
    }

    /* 2. forced masks of layers, heads, FFNs and any set of experts (none
     * and more than k included) vs the scalar reference; the reported masks
     * and the compute by hand; the whole sequence and a batched prefill give
     * the bits of the steps */
    {
        uint8_t lon[T * NL], hon[T * NL * NH], fon[T * NL], eon[T * NL * E];
        for (int t = 0; t < T; t++)
            for (int l = 0; l < NL; l++) {
                lon[t * NL + l] = t == 0 || next_u32() % 5 != 0;
                fon[t * NL + l] = next_u32() % 6 != 0;
                for (int h = 0; h < NH; h++) hon[(t * NL + l) * NH + h] = next_u32() % 3 != 0;
                const int want = (int)(next_u32() % 5); /* 0 .. 4 experts */
                for (int x = 0; x < E; x++) eon[(t * NL + l) * E + x] = 0;
                for (int i = 0; i < want; i++) eon[(t * NL + l) * E + next_u32() % E] = 1;
            }
        doze_session *s = doze_session_new(m, &e);
        doze_cost_model cm;
        cost_model_init(doze_model_get_info(m), &cm);
        int masks_ok = 1;
        double worst_cost = 0;
        for (int t = 0; t < T; t++) {
            CHECK(doze_session_step_masked(s, tokens[t], &(doze_mask){lon + t * NL, hon + t * NL * NH, fon + t * NL, eon + t * NL * E}, &e) == DOZE_OK);
            memcpy(a + (size_t)t * V, doze_session_logits(s), V * 4);
            const uint8_t *em = doze_session_expert_mask(s);
            double want = 0;
            for (int l = 0; l < NL; l++) {
                const int on = lon[t * NL + l], ffn = on && fon[t * NL + l];
                if (on) want += cm.kv;
                for (int h = 0; h < NH; h++) want += on && hon[(t * NL + l) * NH + h] ? cm.head + cm.head_per_pos * (t + 1) : 0;
                if (ffn) want += (double)E * D; /* the model's router */
                for (int x = 0; x < E; x++) {
                    const int ran = ffn && eon[(t * NL + l) * E + x];
                    masks_ok &= em[l * E + x] == ran;
                    want += ran * 3.0 * D * HID;
                }
            }
            const double dense = NL * (cm.kv + NH * (cm.head + cm.head_per_pos * (t + 1)) + (double)E * D + K * 3.0 * D * HID);
            worst_cost = fmax(worst_cost, fabs(doze_session_compute(s) - want / dense));
        }
        CHECK(masks_ok);
        CHECK(worst_cost < 1e-6);
        doze_session_free(s);
        gguf_header h;
        CHECK(gguf_parse_header(f.data, f.len, &h, &e) == DOZE_OK);
        ref_model M = ref_of(&h, f.data, D, HID, NL, NH, NKV, V, HID);
        M.E = E;
        ref_forward_moe(&M, tokens, T, lon, hon, fon, eon, r);
        const double d_ref = scaled_diff(a, r, nlog);
        /* the experts matter: the reference under the model's own top k differs */
        ref_forward_moe(&M, tokens, T, lon, hon, fon, top, r);
        const double d_top = scaled_diff(a, r, nlog);
        CHECK(doze_sequence_forward(m, tokens32, T, &(doze_mask){lon, hon, fon, eon}, b, &e) == DOZE_OK);
        const int seq_same = memcmp(a, b, nlog * 4) == 0;
        doze_session *sp = doze_session_new(m, &e);
        CHECK(doze_session_prefill_masked(sp, tokens32, T, &(doze_mask){lon, hon, fon, eon}, &e) == DOZE_OK);
        int prefill_same = memcmp(doze_session_logits(sp), a + (size_t)(T - 1) * V, V * 4) == 0;
        for (int l = 0; l < NL; l++) /* the last token's experts as it ran them */
            for (int x = 0; x < E; x++)
                prefill_same &= doze_session_expert_mask(sp)[l * E + x] ==
                                (lon[(T - 1) * NL + l] && fon[(T - 1) * NL + l] && eon[((T - 1) * NL + l) * E + x]);
        doze_session_free(sp);
        printf("MoE forced masks (layers, heads, FFNs, experts) vs scalar reference: %.3g of the logits' range "
               "(vs the model's top-k: %.3g); whole sequence: %s; batched prefill: %s\n",
               d_ref, d_top, seq_same ? "bit-identical" : "DIFFERENT", prefill_same ? "bit-identical" : "DIFFERENT");
        CHECK(d_ref < 1e-4 && d_top > 1e-2 && seq_same && prefill_same);
        /* the model's own routing under forced layers: reference with its
         * top k where every FFN runs */
        s = doze_session_new(m, &e);
        for (int t = 0; t < T; t++) {
            CHECK(doze_session_step_masked(s, tokens[t], &(doze_mask){all_l, NULL, NULL, NULL}, &e) == DOZE_OK);
            memcpy(a + (size_t)t * V, doze_session_logits(s), V * 4);
        }
        doze_session_free(s);
        ref_forward_moe(&M, tokens, T, all_l, all_h, all_f, top, r);
        printf("MoE model routing vs scalar reference with its top-k: %.3g\n", scaled_diff(a, r, nlog));
        CHECK(scaled_diff(a, r, nlog) < 1e-4);
        gguf_header_free(&h);
    }

    /* 2b. qwen3moe: the whole sequence = the steps under the same expert masks */
    {
        mem_buf fq = fixture_moe_gguf("qwen3moe", D, HID, NL, NH, NKV, V, 256, 92, DOZE_TYPE_Q8_0, E, K);
        doze_model *mq = NULL;
        CHECK(fq.data && doze_model_load_memory(fq.data, fq.len, NULL, &mq, &e) == DOZE_OK);
        uint8_t eon[T * NL * E];
        for (size_t i = 0; i < sizeof eon; i++) eon[i] = next_u32() % 4 == 0;
        doze_session *s = mq ? doze_session_new(mq, &e) : NULL;
        for (int t = 0; s && t < T; t++) {
            CHECK(doze_session_step_masked(s, tokens[t], &(doze_mask){all_l, NULL, NULL, eon + t * NL * E}, &e) == DOZE_OK);
            memcpy(a + (size_t)t * V, doze_session_logits(s), V * 4);
        }
        CHECK(mq && doze_sequence_forward(mq, tokens32, T, &(doze_mask){all_l, NULL, NULL, eon}, b, &e) == DOZE_OK);
        printf("qwen3moe q8_0 expert masks: whole sequence %s\n", memcmp(a, b, nlog * 4) == 0 ? "bit-identical" : "DIFFERENT");
        CHECK(memcmp(a, b, nlog * 4) == 0);
        doze_session_free(s);
        doze_model_free(mq);
        free(fq.data);
    }

    /* 3. the budget moves experts: an init mixture whose experts dominate
     * the compute, gates calibrated on its own text; achieved compute
     * tracks b, the experts per running FFN fall with b, never above k and
     * never none where the FFN runs */
    {
        enum { D2 = 96, H2 = 192, L2 = 6, NH2 = 6, E2 = 8, K2 = 2, N = 300 };
        int32_t calib[N], text[N];
        budget_model bm;
        if (!budget_model_new(&bm, fixture_moe_gguf("llama", D2, H2, L2, NH2, NH2, V, 512, 93, DOZE_TYPE_F32, E2, K2),
                              V, 4, calib, text, N))
            return;
        doze_model *m2 = bm.m;
        doze_session *s = bm.s;
        doze_gates *g = bm.g;
        const float budgets[4] = {0.9f, 0.7f, 0.5f, 0.3f};
        double per_ffn[4];
        for (int bi = 0; bi < 4; bi++) {
            doze_session_reset(s);
            CHECK(doze_session_set_budget(s, budgets[bi], &e) == DOZE_OK);
            double sum = 0;
            int experts = 0, ffns = 0, bad = 0;
            for (int i = 0; i < N; i++) {
                doze_session_step(s, text[i], &e);
                sum += doze_session_compute(s);
                if (i) experts += moe_count(s, L2, E2, K2, &ffns, &bad);
            }
            per_ffn[bi] = ffns ? (double)experts / ffns : 0;
            printf("MoE budget %.2f: achieved %.4f over %d tokens; %.3f experts per running FFN (%d FFNs of %d)%s\n",
                   budgets[bi], sum / N, N, per_ffn[bi], ffns, (N - 1) * L2, bad ? " BAD COUNTS" : "");
            CHECK(fabs(sum / N - budgets[bi]) <= 0.03);
            CHECK(!bad);
        }
        CHECK(per_ffn[0] > per_ffn[3] && per_ffn[2] < K2 - 0.1);
        /* the gate file keeps the experts' rows: the same decisions read
         * back; a file for another expert count is refused */
        mem_buf gf = {NULL, 0, 0};
        CHECK(doze_gates_save(g, mem_write, &gf, &e) == DOZE_OK);
        doze_gates *g2 = NULL;
        CHECK(doze_gates_load(m2, gf.data, gf.len, &g2, &e) == DOZE_OK);
        CHECK(g2 && g2->n_experts == E2 && memcmp(g2->expert_bias, g->expert_bias, L2 * E2 * 4) == 0);
        doze_session *s2 = doze_session_new(m2, &e);
        doze_session_set_gates(s2, g2, &e);
        doze_session_reset(s);
        doze_session_set_budget(s, 0.5f, &e);
        doze_session_set_budget(s2, 0.5f, &e);
        int same = 1;
        for (int i = 0; i < 60; i++) {
            doze_session_step(s, text[i], &e);
            doze_session_step(s2, text[i], &e);
            same &= memcmp(doze_session_logits(s), doze_session_logits(s2), V * 4) == 0;
            same &= memcmp(doze_session_expert_mask(s), doze_session_expert_mask(s2), L2 * E2) == 0;
        }
        CHECK(same);
        CHECK(patch_gates_u32(gf.data, gf.len, "doze.gates.experts", 4));
        doze_gates *g3 = NULL;
        doze_status st = doze_gates_load(m2, gf.data, gf.len, &g3, &e);
        printf("MoE gate file: %zu bytes, same decisions read back: %s; for 4 experts: %s (%s)\n", gf.len,
               same ? "yes" : "NO", doze_status_name(st), e.message);
        CHECK(st == DOZE_ERR_BAD_SHAPE && g3 == NULL);
        free(gf.data);
        doze_session_free(s2);
        doze_gates_free(g2);
        budget_model_free(&bm);
    }
    free(a), free(b), free(r);
    doze_model_free(m);
    free(f.data);
}

int main(void) {
    /* HID = 172, f32: a small FFN, so blocks of 16: 10 of 16 and a last one
     * of 12 */
    enum { D = 64, HID = 172, NL = 4, NH = 4, NKV = 2, V = 300, T = 40, FB = 16, NB = 11 };
    mem_buf f = fixture_gguf(D, HID, NL, NH, NKV, V, 256, 77, DOZE_TYPE_F32);
    CHECK(f.data != NULL);
    doze_model *m = NULL;
    doze_error e;
    CHECK(doze_model_load_memory(f.data, f.len, NULL, &m, &e) == DOZE_OK);
    if (!m) return test_finish("test_skip");
    CHECK(doze_model_ffn_blocks(m) == NB);
    CHECK(doze_model_ffn_block(m) == FB);
    /* the block size by model: blocks of 16 for f32/f16 FFNs under 8 * 32
     * channels (the last one 12 wide: f16 keeps it row-major), else 32 (a
     * last block of 16; q8_0 and q4_0 in 4b below) */
    check_block_size(172, DOZE_TYPE_F16, 16);
    check_block_size(248, DOZE_TYPE_F32, 16);
    check_block_size(272, DOZE_TYPE_F32, 32);

    int tokens[T];
    int32_t tokens32[T];
    for (int t = 0; t < T; t++) tokens32[t] = tokens[t] = t == 0 ? 1 : 3 + (int)(next_u32() % (V - 3));
    uint8_t lon[T * NL], hon[T * NL * NH], fon[T * NL * NB];
    for (int t = 0; t < T; t++)
        for (int l = 0; l < NL; l++) {
            lon[t * NL + l] = t == 0 || next_u32() % 4 != 0; /* a quarter of the layers off */
            for (int h = 0; h < NH; h++) hon[(t * NL + l) * NH + h] = next_u32() % 3 != 0;
            for (int j = 0; j < NB; j++) fon[(t * NL + l) * NB + j] = next_u32() % 2 != 0; /* half the blocks */
        }
    size_t nlog = (size_t)T * V;
    float *a = malloc(nlog * 4), *b = malloc(nlog * 4), *r = malloc(nlog * 4);

    /* 1. all gates on == dense, bit for bit */
    {
        doze_session *s1 = doze_session_new(m, &e), *s2 = doze_session_new(m, &e);
        doze_session *s3 = doze_session_new(m, &e);
        uint8_t all_l[NL], all_h[NL * NH], all_f[NL * NB];
        memset(all_l, 1, sizeof all_l);
        memset(all_h, 1, sizeof all_h);
        memset(all_f, 1, sizeof all_f);
        int same = 1;
        for (int t = 0; t < T; t++) {
            doze_session_step(s1, tokens[t], &e);
            doze_session_step_masked(s2, tokens[t], &(doze_mask){all_l, all_h, NULL, NULL}, &e);
            doze_session_step_masked(s3, tokens[t], &(doze_mask){all_l, all_h, all_f, NULL}, &e);
            same &= memcmp(doze_session_logits(s1), doze_session_logits(s2), V * 4) == 0;
            same &= memcmp(doze_session_logits(s1), doze_session_logits(s3), V * 4) == 0;
            same &= doze_session_compute(s2) > 0.999f && doze_session_compute(s2) < 1.001f;
            same &= doze_session_compute(s3) > 0.999f && doze_session_compute(s3) < 1.001f;
            same &= memcmp(doze_session_ffn_mask(s1), all_f, sizeof all_f) == 0;
        }
        CHECK_MSG(same, "all gates on differs from dense");
        doze_session_free(s1);
        doze_session_free(s2);
        doze_session_free(s3);
    }

    /* 2. token by token under masks; mask and compute reported */
    {
        doze_session *s = doze_session_new(m, &e);
        int masks_ok = 1;
        double compute_sum = 0;
        doze_cost_model cm;
        cost_model_init(doze_model_get_info(m), &cm);
        double worst_cost = 0;
        for (int t = 0; t < T; t++) {
            CHECK(doze_session_step_masked(s, tokens[t], &(doze_mask){lon + t * NL, hon + t * NL * NH, fon + t * NL * NB, NULL}, &e) == DOZE_OK);
            memcpy(a + (size_t)t * V, doze_session_logits(s), V * 4);
            const uint8_t *lm = doze_session_layer_mask(s), *hm = doze_session_head_mask(s);
            const uint8_t *fm = doze_session_ffn_mask(s);
            double want = 0; /* the compute by hand: K/V, running heads, running blocks' channels */
            for (int l = 0; l < NL; l++) {
                int on = lon[t * NL + l];
                masks_ok &= lm[l] == on;
                for (int h = 0; h < NH; h++) {
                    int hon_ = on && hon[(t * NL + l) * NH + h];
                    masks_ok &= hm[l * NH + h] == hon_;
                    want += hon_ * (cm.head + cm.head_per_pos * (t + 1));
                }
                want += on * cm.kv;
                for (int j = 0; j < NB; j++) {
                    int fon_ = on && fon[(t * NL + l) * NB + j];
                    masks_ok &= fm[l * NB + j] == fon_;
                    want += fon_ * 3.0 * D * (j == NB - 1 ? HID - FB * (NB - 1) : FB);
                }
            }
            float cpt = doze_session_compute(s);
            worst_cost = fmax(worst_cost, fabs(cpt - want / cost_dense(&cm, t + 1)));
            masks_ok &= cpt > 0.0f && cpt < 1.0f;
            compute_sum += cpt;
        }
        CHECK(masks_ok);
        CHECK(worst_cost < 1e-6);
        printf("forced masks: mean compute %.3f\n", compute_sum / T);
        /* every layer off: only the embedding and classifier run */
        uint8_t none[NL] = {0};
        CHECK(doze_session_step_masked(s, 5, &(doze_mask){none, NULL, NULL, NULL}, &e) == DOZE_OK);
        CHECK(doze_session_compute(s) == 0.0f);
        doze_session_free(s);
    }

    /* 3. the whole-sequence forward reproduces it */
    CHECK(doze_sequence_forward(m, tokens32, T, &(doze_mask){lon, hon, fon, NULL}, b, &e) == DOZE_OK);
    double d_seq = scaled_diff(b, a, nlog);
    printf("sequence forward vs token by token under masks: %.3g (%s)\n", d_seq,
           memcmp(a, b, nlog * 4) == 0 ? "bit-identical" : "not bit-identical");
    CHECK(d_seq < 1e-6);

    /* 4. an independent scalar reference */
    {
        gguf_header h;
        CHECK(gguf_parse_header(f.data, f.len, &h, &e) == DOZE_OK);
        ref_model M = ref_of(&h, f.data, D, HID, NL, NH, NKV, V, FB);
        ref_forward(&M, tokens, T, lon, hon, fon, r);
        double d_ref = scaled_diff(a, r, nlog);
        printf("forced masks (layers, heads, FFN blocks) vs scalar reference: %.3g of the logits' range\n",
               d_ref);
        CHECK(d_ref < 1e-4);
        /* and the masks matter: the reference without them, or without the
         * FFN blocks' only, differs */
        uint8_t all_l[T * NL], all_h[T * NL * NH];
        memset(all_l, 1, sizeof all_l);
        memset(all_h, 1, sizeof all_h);
        ref_forward(&M, tokens, T, all_l, all_h, NULL, r);
        CHECK(scaled_diff(a, r, nlog) > 1e-2);
        ref_forward(&M, tokens, T, lon, hon, NULL, r);
        CHECK(scaled_diff(a, r, nlog) > 1e-2);
        /* FFN blocks only, token by token and whole-sequence, vs the reference */
        doze_session *s = doze_session_new(m, &e);
        memset(all_l, 1, sizeof all_l);
        for (int t = 0; t < T; t++) {
            CHECK(doze_session_step_masked(s, tokens[t], &(doze_mask){all_l, NULL, fon + t * NL * NB, NULL}, &e) == DOZE_OK);
            memcpy(a + (size_t)t * V, doze_session_logits(s), V * 4);
        }
        doze_session_free(s);
        ref_forward(&M, tokens, T, all_l, all_h, fon, r);
        double d_ffn = scaled_diff(a, r, nlog);
        CHECK(doze_sequence_forward(m, tokens32, T, &(doze_mask){all_l, NULL, fon, NULL}, b, &e) == DOZE_OK);
        printf("FFN-block masks only vs scalar reference: %.3g; whole-sequence: %s\n", d_ffn,
               memcmp(a, b, nlog * 4) == 0 ? "bit-identical" : "DIFFERENT");
        CHECK(d_ffn < 1e-4);
        CHECK(memcmp(a, b, nlog * 4) == 0);
        gguf_header_free(&h);
    }

    /* 4b. FFN-block masks on f16, q8_0 and q4_0 weights (ffn_down stored per
     * block, x4-interleaved inside a block): token by token = whole sequence
     * bit for bit, and close to the f32 model under the same masks (a
     * misplaced block would be far off). f32 and f16 have blocks of 16 here,
     * q8_0 and q4_0 of 32: their masks are the same channels (each block of
     * 32 is two of 16) */
    {
        enum { QH = 160, QB = 5 };
        mem_buf ff = fixture_gguf(D, QH, NL, NH, NKV, V, 256, 78, DOZE_TYPE_F32);
        doze_model *mf = NULL;
        CHECK(doze_model_load_memory(ff.data, ff.len, NULL, &mf, &e) == DOZE_OK);
        uint8_t qf[T * NL * QB], qf16[T * NL * QB * 2], all_l[T * NL];
        memset(all_l, 1, sizeof all_l);
        for (int i = 0; i < T * NL * QB; i++) qf[i] = next_u32() % 3 != 0;
        for (int i = 0; i < T * NL * QB * 2; i++) qf16[i] = qf[i / 2];
        CHECK(mf && doze_model_ffn_block(mf) == 16 && doze_model_ffn_blocks(mf) == 2 * QB);
        float *ref32 = malloc(nlog * 4);
        CHECK(doze_sequence_forward(mf, tokens32, T, &(doze_mask){all_l, NULL, qf16, NULL}, ref32, &e) == DOZE_OK);
        const int types[3] = {DOZE_TYPE_F16, DOZE_TYPE_Q8_0, DOZE_TYPE_Q4_0};
        for (int ti = 0; ti < 3; ti++) {
            mem_buf fq = fixture_gguf(D, QH, NL, NH, NKV, V, 256, 78, types[ti]);
            doze_model *mq = NULL;
            CHECK(doze_model_load_memory(fq.data, fq.len, NULL, &mq, &e) == DOZE_OK);
            if (!mq) continue;
            const int qfb = types[ti] == DOZE_TYPE_F16 ? 16 : 32, qnb = QH / qfb;
            CHECK(doze_model_ffn_block(mq) == qfb && doze_model_ffn_blocks(mq) == qnb);
            const uint8_t *msk = qfb == 16 ? qf16 : qf;
            doze_session *s = doze_session_new(mq, &e);
            for (int t = 0; t < T; t++) {
                CHECK(doze_session_step_masked(s, tokens[t], &(doze_mask){all_l, NULL, msk + t * NL * qnb, NULL}, &e) == DOZE_OK);
                memcpy(a + (size_t)t * V, doze_session_logits(s), V * 4);
            }
            CHECK(doze_sequence_forward(mq, tokens32, T, &(doze_mask){all_l, NULL, msk, NULL}, b, &e) == DOZE_OK);
            double d32 = scaled_diff(a, ref32, nlog);
            printf("%s, FFN-block masks: whole-sequence %s; vs f32 %.3g of the logits' range\n",
                   doze_type_name(types[ti]), memcmp(a, b, nlog * 4) == 0 ? "bit-identical" : "DIFFERENT",
                   d32);
            CHECK(memcmp(a, b, nlog * 4) == 0);
            CHECK(d32 < (types[ti] == DOZE_TYPE_Q4_0 ? 0.15 : 0.03));
            doze_session_free(s);
            doze_model_free(mq);
            free(fq.data);
        }
        free(ref32);
        doze_model_free(mf);
        free(ff.data);
    }

    /* 5. budget: calibrate on self-generated text, achieved compute tracks b */
    {
        int32_t calib[300], text[300];
        budget_model bm;
        budget_model_new(&bm, fixture_gguf(96, 256, 6, 6, 6, V, 512, 5, DOZE_TYPE_F32), V, 3, calib, text, 300);
        doze_model *m2 = bm.m;
        doze_session *s = bm.s;
        doze_gates *g = bm.g;
        const float budgets[4] = {0.9f, 0.7f, 0.5f, 0.3f};
        for (int bi = 0; bi < 4; bi++) {
            doze_session_reset(s);
            CHECK(doze_session_set_budget(s, budgets[bi], &e) == DOZE_OK);
            double sum = 0;
            for (int i = 0; i < 300; i++) {
                doze_session_step(s, text[i], &e);
                sum += doze_session_compute(s);
            }
            printf("budget %.2f: achieved %.4f over 300 tokens\n", budgets[bi], sum / 300);
            CHECK(fabs(sum / 300 - budgets[bi]) <= 0.03);
        }
        /* b may change between tokens: a generation alternating 0.8 and 0.4 */
        doze_session_reset(s);
        double hi = 0, lo = 0;
        for (int i = 0; i < 300; i++) {
            float bb = (i / 50) % 2 ? 0.4f : 0.8f;
            doze_session_set_budget(s, bb, &e);
            doze_session_step(s, text[i], &e);
            if (i % 50 >= 20) *(bb > 0.5f ? &hi : &lo) += doze_session_compute(s);
        }
        printf("alternating budget: %.3f while 0.8, %.3f while 0.4\n", hi / 90, lo / 90);
        CHECK(hi / 90 > lo / 90 + 0.2);
        CHECK(doze_session_set_budget(s, 0.0f, &e) == DOZE_ERR_INVALID_ARGUMENT);
        CHECK(doze_session_set_budget(s, 1.5f, &e) == DOZE_ERR_INVALID_ARGUMENT);

        /* gate files: save, load, same decisions; another model refuses them */
        mem_buf gf = {NULL, 0, 0};
        CHECK(doze_gates_save(g, mem_write, &gf, &e) == DOZE_OK);
        printf("gate file: %zu bytes\n", gf.len);
        doze_gates *g2 = NULL;
        CHECK(doze_gates_load(m2, gf.data, gf.len, &g2, &e) == DOZE_OK);
        doze_session *s2 = doze_session_new(m2, &e);
        doze_session_set_gates(s2, g2, &e);
        doze_session_set_budget(s2, 0.6f, &e);
        doze_session_reset(s);
        doze_session_set_budget(s, 0.6f, &e);
        int same = 1, blocks_off = 0;
        for (int i = 0; i < 60; i++) {
            doze_session_step(s, text[i], &e);
            doze_session_step(s2, text[i], &e);
            same &= memcmp(doze_session_logits(s), doze_session_logits(s2), V * 4) == 0;
            same &= memcmp(doze_session_head_mask(s), doze_session_head_mask(s2), 36) == 0;
            same &= memcmp(doze_session_ffn_mask(s), doze_session_ffn_mask(s2), 6 * 8) == 0;
            for (int l = 0; l < 6; l++)
                for (int j = 0; j < 8; j++)
                    blocks_off += doze_session_layer_mask(s)[l] && !doze_session_ffn_mask(s)[l * 8 + j];
        }
        CHECK(same);
        printf("gates at b = 0.6: %d FFN blocks of running layers skipped over 60 tokens\n", blocks_off);
        CHECK(blocks_off > 0);

        /* what the gates read: the first gated step of a sequence (position
         * 1; position 0 is protected, so no feedback yet) decides its layers
         * and heads from xn, the normed layer input, and its FFN blocks from
         * hn, the normed FFN input after the layer's attention, both traced
         * (random routers: their scores follow their inputs closely) */
        {
            doze_gates_params rp = doze_gates_default_params();
            rp.random_seed = 5;
            doze_gates *gr = NULL;
            CHECK(doze_gates_calibrate(m2, calib, 300, &rp, &gr, &e) == DOZE_OK);
            doze_session_set_gates(s, gr, &e);
            enum { L2 = 6, D2 = 96, H2 = 6, NB2 = 8 };
            doze_step_trace tr;
            float x_in[L2 * D2], xn[L2 * D2], hn[L2 * D2], in_norm[L2], upd[L2], hnorm[L2 * H2];
            tr.x_in = x_in, tr.xn = xn, tr.hn = hn, tr.in_norm = in_norm, tr.update_norm = upd;
            tr.head_norm = hnorm, tr.block_norm = NULL, tr.ffn_norm = NULL;
            tr.expert_probs = NULL, tr.expert_drop = NULL;
            doze_cost_model cm;
            cost_model_init(&m2->info, &cm);
            float z[1 + H2 + NB2];
            uint8_t ho[H2], bo[NB2], bo_xn[NB2];
            int agree = 1, checked_layers = 0, blocks_decided = 0, xn_would_differ = 0;
            for (int trial = 0; trial < 40; trial++) {
                const float bb = 0.75f + 0.05f * (float)(trial % 5);
                doze_session_reset(s);
                doze_session_set_budget(s, bb, &e);
                CHECK(doze_session_step(s, 1, &e) == DOZE_OK);
                CHECK(session_step(s, text[1 + trial], NULL, &tr, &e) == DOZE_OK);
                const float ll = gates_log_lambda(gr, bb);
                for (int l = 0; l < L2; l++) {
                    gates_score(gr, m2, l, xn + l * D2, z);
                    int on = gates_decide(gr, &cm, l, 2, z, ll, ho);
                    agree &= on == doze_session_layer_mask(s)[l];
                    agree &= memcmp(ho, doze_session_head_mask(s) + l * H2, H2) == 0;
                    if (!on) continue;
                    checked_layers++;
                    gates_score_blocks(gr, m2, l, hn + l * D2, z + 1 + H2);
                    gates_decide_blocks(gr, &cm, 2, z + 1 + H2, ll, bo);
                    agree &= memcmp(bo, doze_session_ffn_mask(s) + l * NB2, NB2) == 0;
                    for (int j = 0; j < NB2; j++) blocks_decided += !bo[j];
                    /* the same rows read from xn would decide otherwise */
                    gates_score_blocks(gr, m2, l, xn + l * D2, z + 1 + H2);
                    gates_decide_blocks(gr, &cm, 2, z + 1 + H2, ll, bo_xn);
                    xn_would_differ += memcmp(bo, bo_xn, NB2) != 0;
                }
            }
            printf("gate inputs: %d running layers (%d blocks off) decided as from xn (layer, heads) and hn "
                   "(FFN blocks): %s; reading xn instead would change %d of them\n",
                   checked_layers, blocks_decided, agree ? "yes" : "NO", xn_would_differ);
            CHECK(agree && checked_layers > 50 && blocks_decided > 0 && xn_would_differ > 0);
            doze_session_set_gates(s, g, &e);
            doze_gates_free(gr);
        }

        /* a version-2 file with FFN block gates (they read the layer input
         * there) is refused with a clear error */
        {
            mem_buf v2 = {malloc(gf.len), gf.len, gf.len};
            memcpy(v2.data, gf.data, gf.len);
            CHECK(patch_gates_version(v2.data, v2.len, 2));
            doze_gates *gv2 = NULL;
            doze_status st2 = doze_gates_load(m2, v2.data, v2.len, &gv2, &e);
            printf("version-2 gate file with FFN block gates: %s (%s)\n", doze_status_name(st2), e.message);
            CHECK(st2 == DOZE_ERR_UNSUPPORTED_VERSION && gv2 == NULL);
            free(v2.data);
        }

        /* a file whose FFN block size is not the model's (blocks of 32 here;
         * the same rows cut in blocks of 16) is refused with a clear error */
        {
            CHECK(doze_model_ffn_block(m2) == 32 && g->ffn_block == 32);
            mem_buf o = {malloc(gf.len), gf.len, gf.len};
            memcpy(o.data, gf.data, gf.len);
            CHECK(patch_gates_u32(o.data, o.len, "doze.gates.ffn_block", 16));
            doze_gates *go = NULL;
            doze_status so = doze_gates_load(m2, o.data, o.len, &go, &e);
            printf("gate file with FFN blocks of 16 on a model with blocks of 32: %s (%s)\n",
                   doze_status_name(so), e.message);
            CHECK(so == DOZE_ERR_BAD_SHAPE && go == NULL && strstr(e.message, "ffn_block") != NULL);
            free(o.data);
        }

        /* heads + layers only (ffn_gates = 0): every block of a running layer
         * runs; the budget still holds; such a file read back as version 1
         * (a version-1 file has no FFN block keys) gives the same */
        {
            doze_gates_params gp = doze_gates_default_params();
            gp.ffn_gates = 0;
            doze_gates *gh = NULL, *gv1 = NULL;
            CHECK(doze_gates_calibrate(m2, calib, 300, &gp, &gh, &e) == DOZE_OK);
            CHECK(gh && gh->n_blocks == 0);
            mem_buf hf = {NULL, 0, 0};
            CHECK(doze_gates_save(gh, mem_write, &hf, &e) == DOZE_OK);
            CHECK(patch_gates_version(hf.data, hf.len, 1));
            CHECK(doze_gates_load(m2, hf.data, hf.len, &gv1, &e) == DOZE_OK);
            CHECK(gv1 && gv1->n_blocks == 0);
            doze_session *s3 = doze_session_new(m2, &e), *s4 = doze_session_new(m2, &e);
            doze_session_set_gates(s3, gh, &e);
            doze_session_set_gates(s4, gv1, &e);
            doze_session_set_budget(s3, 0.7f, &e);
            doze_session_set_budget(s4, 0.7f, &e);
            double sum = 0;
            int all_blocks = 1, same_v1 = 1;
            for (int i = 0; i < 300; i++) {
                doze_session_step(s3, text[i], &e);
                doze_session_step(s4, text[i], &e);
                sum += doze_session_compute(s3);
                for (int l = 0; l < 6; l++)
                    for (int j = 0; j < 8; j++)
                        all_blocks &= doze_session_ffn_mask(s3)[l * 8 + j] == doze_session_layer_mask(s3)[l];
                same_v1 &= memcmp(doze_session_logits(s3), doze_session_logits(s4), V * 4) == 0;
            }
            printf("heads + layers gates at b = 0.70: achieved %.4f; version-1 file: %s\n", sum / 300,
                   same_v1 ? "same decisions" : "DIFFERENT");
            CHECK(all_blocks && same_v1);
            CHECK(fabs(sum / 300 - 0.7) <= 0.03);
            doze_session_free(s3);
            doze_session_free(s4);
            doze_gates_free(gh);
            doze_gates_free(gv1);
            free(hf.data);
        }
        doze_gates *g3 = NULL;
        doze_status st = doze_gates_load(m, gf.data, gf.len, &g3, &e);
        CHECK(st == DOZE_ERR_BAD_SHAPE && g3 == NULL);
        printf("gate file on another model: %s (%s)\n", doze_status_name(st), e.message);
        CHECK(doze_gates_load(m2, gf.data, gf.len / 2, &g3, &e) != DOZE_OK && g3 == NULL);
        doze_session_free(s2);
        doze_gates_free(g2);
        free(gf.data);
        budget_model_free(&bm);
    }
    free(a), free(b), free(r);
    doze_model_free(m);
    free(f.data);
    test_moe();
    return test_finish("test_skip");
}
