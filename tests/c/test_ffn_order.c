/* FFN channel order (src/tools/ffn_order.c): the order is a permutation
 * per layer, found deterministically, and raises the contribution the
 * tokens keep in their top blocks; the rewritten model computes what the
 * original does (only the FFN's float sums change order); gate files are
 * bound to the order; files whose ffn_down cannot be reordered are refused. */
#include "gguf.h"
#include "model_fixture.h"
#include "test_util.h"

#define D 64
#define HID 160 /* f32/f16, < 256: blocks of 16, 10 per layer */
#define NL 3
#define NH 4
#define NKV 2
#define V 300
#define NTOK 300

static int is_permutation(const int32_t *p, int n) {
    int ok = 1;
    unsigned char *seen = calloc((size_t)n, 1);
    for (int i = 0; i < n && ok; i++) {
        ok = p[i] >= 0 && p[i] < n && !seen[p[i]];
        if (ok) seen[p[i]] = 1;
    }
    free(seen);
    return ok;
}

/* largest |a - b| over the logits of `n` tokens, relative to b's range */
static double logits_gap(doze_model *a, doze_model *b, const int32_t *tokens, int n) {
    doze_error e;
    doze_session *sa = doze_session_new(a, &e), *sb = doze_session_new(b, &e);
    double worst = 0, lo = 1e30, hi = -1e30;
    const int vocab = doze_model_get_info(b)->vocab_size;
    for (int t = 0; t < n && sa && sb; t++) {
        if (doze_session_step(sa, tokens[t], &e) != DOZE_OK || doze_session_step(sb, tokens[t], &e) != DOZE_OK)
            return 1e30;
        const float *la = doze_session_logits(sa), *lb = doze_session_logits(sb);
        for (int i = 0; i < vocab; i++) {
            double d = fabs((double)la[i] - lb[i]);
            if (d > worst) worst = d;
            if (lb[i] < lo) lo = lb[i];
            if (lb[i] > hi) hi = lb[i];
        }
    }
    doze_session_free(sa);
    doze_session_free(sb);
    return worst / (hi - lo);
}

/* src with its doze.ffn_order key replaced by v */
static mem_buf with_order_key(const mem_buf *src, const gguf_value *v) {
    mem_buf out = {NULL, 0, 0};
    gguf_header h;
    doze_error e;
    if (gguf_parse_header(src->data, src->len, &h, &e) != DOZE_OK) return out;
    gguf_writer *w = gguf_writer_new(h.alignment);
    doze_status st = gguf_writer_copy_kvs(w, &h, &e);
    if (st == DOZE_OK) st = gguf_writer_set(w, "doze.ffn_order", v, &e);
    for (uint64_t i = 0; i < h.n_tensors && st == DOZE_OK; i++)
        st = gguf_writer_add_tensor(w, h.tensors[i].name.data, h.tensors[i].type, h.tensors[i].n_dims,
                                    h.tensors[i].ne, src->data + h.data_offset + h.tensors[i].offset, &e);
    if (st == DOZE_OK) st = gguf_writer_write(w, mem_write, &out, &e);
    gguf_writer_free(w);
    gguf_header_free(&h);
    return out;
}

static void check_type(int type, int32_t *tokens) {
    doze_error e;
    mem_buf f = fixture_gguf(D, HID, NL, NH, NKV, V, 128, 23, type);
    doze_model *m = NULL;
    CHECK(f.data && doze_model_load_memory(f.data, f.len, NULL, &m, &e) == DOZE_OK);
    if (!m) return;
    CHECK(doze_model_ffn_block(m) == 16 && doze_model_ffn_blocks(m) == 10);
    CHECK(doze_model_get_info(m)->ffn_order == 0);

    int32_t *perm = malloc(NL * HID * sizeof *perm), *perm2 = malloc(NL * HID * sizeof *perm2);
    float kept[2 * NL], kept2[2 * NL];
    doze_ffn_order_params p = doze_ffn_order_default_params();
    CHECK(doze_ffn_order(m, tokens, NTOK, &p, perm, kept, &e) == DOZE_OK);
    CHECK(doze_ffn_order(m, tokens, NTOK, &p, perm2, kept2, &e) == DOZE_OK);
    CHECK(memcmp(perm, perm2, NL * HID * sizeof *perm) == 0); /* deterministic */
    int improved = 0;
    for (int l = 0; l < NL; l++) {
        CHECK(is_permutation(perm + l * HID, HID));
        CHECK(kept[2 * l + 1] >= kept[2 * l] && kept[2 * l] > 0.0f && kept[2 * l + 1] <= 1.0f);
        improved += kept[2 * l + 1] > kept[2 * l] + 1e-4f;
        printf("%s layer %d: kept by the top 6 of 10 blocks %.4f -> %.4f\n", doze_type_name(type), l,
               (double)kept[2 * l], (double)kept[2 * l + 1]);
    }
    CHECK(improved == NL);
    p.seed = 2;
    CHECK(doze_ffn_order(m, tokens, NTOK, &p, perm2, NULL, &e) == DOZE_OK);
    CHECK(memcmp(perm, perm2, NL * HID * sizeof *perm) != 0); /* another search */

    /* the rewritten model: same function, its own fingerprint */
    mem_buf o = {NULL, 0, 0};
    CHECK(doze_ffn_order_write(f.data, f.len, perm, NL, HID, mem_write, &o, &e) == DOZE_OK);
    doze_model *mo = NULL;
    CHECK(o.data && doze_model_load_memory(o.data, o.len, NULL, &mo, &e) == DOZE_OK);
    if (mo) {
        CHECK(doze_model_get_info(mo)->ffn_order != 0);
        double gap = logits_gap(mo, m, tokens, 40);
        printf("%s: ordered vs original logits, 40 tokens: largest gap %.2e of the range\n", doze_type_name(type),
               gap);
        /* f16 rounds activations to half: a last-bit difference from the new
         * order of the down projection's sums can move one rounding */
        const double tol = type == DOZE_TYPE_F16 ? 1e-3 : 1e-5;
        CHECK(gap < tol);
        /* gate files: made for the original, refused by the ordered model (and back) */
        doze_gates_params gp = doze_gates_default_params();
        doze_gates *g = NULL, *g2 = NULL;
        CHECK(doze_gates_calibrate(m, tokens, 200, &gp, &g, &e) == DOZE_OK);
        mem_buf gf = {NULL, 0, 0};
        CHECK(g && doze_gates_save(g, mem_write, &gf, &e) == DOZE_OK);
        CHECK(doze_gates_load(m, gf.data, gf.len, &g2, &e) == DOZE_OK);
        doze_gates_free(g2);
        g2 = NULL;
        CHECK(doze_gates_load(mo, gf.data, gf.len, &g2, &e) != DOZE_OK && g2 == NULL);
        printf("gates of the original on the ordered model: %s\n", e.message);
        doze_gates_free(g);
        free(gf.data);
        /* ordering an ordered file again gives another key */
        mem_buf o2 = {NULL, 0, 0};
        doze_model *mo2 = NULL;
        CHECK(doze_ffn_order_write(o.data, o.len, perm2, NL, HID, mem_write, &o2, &e) == DOZE_OK);
        CHECK(o2.data && doze_model_load_memory(o2.data, o2.len, NULL, &mo2, &e) == DOZE_OK);
        if (mo2) {
            CHECK(doze_model_get_info(mo2)->ffn_order != doze_model_get_info(mo)->ffn_order);
            CHECK(logits_gap(mo2, m, tokens, 20) < tol);
        }
        doze_model_free(mo2);
        free(o2.data);
        /* a key that is not a u32 refuses the file, with a reason */
        gguf_value bad_str = {.type = GGUF_TYPE_STRING};
        bad_str.v.str.data = "shuffled";
        bad_str.v.str.len = 8;
        gguf_value bad_neg = {.type = GGUF_TYPE_INT64};
        bad_neg.v.i64 = -5;
        const gguf_value *bads[2] = {&bad_str, &bad_neg};
        for (int k = 0; k < 2; k++) {
            mem_buf x = with_order_key(&o, bads[k]);
            doze_model *mx = NULL;
            doze_status st = doze_model_load_memory(x.data, x.len, NULL, &mx, &e);
            CHECK(x.data && st != DOZE_OK && mx == NULL);
            printf("doze.ffn_order %s: %s\n", k ? "-5" : "\"shuffled\"", e.message);
            free(x.data);
        }
    }
    doze_model_free(mo);
    free(o.data);

    /* bad orders and mismatched shapes are refused, nothing written */
    mem_buf bad = {NULL, 0, 0};
    int32_t keep0 = perm[5];
    perm[5] = perm[6];
    CHECK(doze_ffn_order_write(f.data, f.len, perm, NL, HID, mem_write, &bad, &e) == DOZE_ERR_INVALID_ARGUMENT);
    perm[5] = keep0;
    CHECK(doze_ffn_order_write(f.data, f.len, perm, NL - 1, HID, mem_write, &bad, &e) == DOZE_ERR_BAD_SHAPE);
    CHECK(doze_ffn_order_write(f.data, f.len / 2, perm, NL, HID, mem_write, &bad, &e) != DOZE_OK);
    CHECK(bad.len == 0);
    free(bad.data);
    /* a qwen3 file: its keys are qwen3.*, not llama.* (it was MISSING) */
    {
        doze_init_params qp = {D, HID, NL, NH, NKV, V, 128, 24, type, "qwen3", 0, 0, 0.0f, 0, 0};
        mem_buf q = fixture_from_params(&qp);
        mem_buf qo = {NULL, 0, 0};
        CHECK(q.data != NULL);
        if (q.data) {
            CHECK_MSG(doze_ffn_order_write(q.data, q.len, perm, NL, HID, mem_write, &qo, &e) == DOZE_OK, "%s", e.message);
            CHECK(qo.len > 0);
        }
        free(q.data);
        free(qo.data);
    }
    free(perm);
    free(perm2);
    doze_model_free(m);
    free(f.data);
}

/* stories260K (../shared): the order keeps more of each token's FFN
 * contribution in its top blocks in every layer, and the rewritten model
 * gives the original's logits on real text. Skipped without ../shared. */
static void check_stories260k(void) {
    char b1[1024], b2[1024], b3[1024];
    size_t nc = 0, nt = 0, nx = 0;
    unsigned char *ckpt = test_read_file(test_shared_path(b1, sizeof b1, "models/stories260K.bin"), &nc);
    unsigned char *tok = test_read_file(test_shared_path(b2, sizeof b2, "models/tok512.bin"), &nt);
    unsigned char *text = test_read_file(test_shared_path(b3, sizeof b3, "text/tinystories-train.txt"), &nx);
    if (!ckpt || !tok || !text) {
        printf("stories260K part: SKIP: %s, %s or %s not found (reference data lives in ../shared)\n", b1, b2, b3);
        free(ckpt), free(tok), free(text);
        return;
    }
    doze_error e;
    gguf_builder b;
    mem_buf f = {NULL, 0, 0}, o = {NULL, 0, 0};
    CHECK(gguf_builder_init(&b, &e) == DOZE_OK);
    CHECK(convert_llama2c(ckpt, nc, tok, nt, DOZE_TYPE_F32, "stories260K", &b, &e) == DOZE_OK);
    CHECK(gguf_writer_write(b.w, mem_write, &f, &e) == DOZE_OK);
    gguf_builder_free(&b);
    doze_model *m = NULL, *mo = NULL;
    CHECK(f.data && doze_model_load_memory(f.data, f.len, NULL, &m, &e) == DOZE_OK);
    if (m) {
        const doze_model_info *c = doze_model_get_info(m);
        int n = 0;
        static int32_t ids[4096];
        size_t len = nx < 8192 ? nx : 8192;
        CHECK(doze_tokenize(m, (const char *)text, len, 1, ids, 4096, &n, &e) == DOZE_OK && n > 1100);
        if (n > 4096) n = 4096; /* n is the count needed; the first 4096 were written */
        int32_t *perm = malloc((size_t)c->n_layers * c->hidden_dim * sizeof *perm);
        float kept[2 * 16];
        doze_ffn_order_params p = doze_ffn_order_default_params();
        p.max_tokens = 1024;
        CHECK(c->n_layers <= 16 && doze_ffn_order(m, ids, n, &p, perm, kept, &e) == DOZE_OK);
        for (int l = 0; l < c->n_layers; l++) {
            printf("stories260K layer %d: kept by the top 7 of 11 blocks %.4f -> %.4f\n", l, (double)kept[2 * l],
                   (double)kept[2 * l + 1]);
            CHECK(kept[2 * l + 1] > kept[2 * l] + 0.01f);
        }
        CHECK(doze_ffn_order_write(f.data, f.len, perm, c->n_layers, c->hidden_dim, mem_write, &o, &e) == DOZE_OK);
        CHECK(o.data && doze_model_load_memory(o.data, o.len, NULL, &mo, &e) == DOZE_OK);
        if (mo) {
            double gap = logits_gap(mo, m, ids + 1100, 64); /* text the search did not see */
            printf("stories260K: ordered vs original logits, 64 tokens: largest gap %.2e of the range\n", gap);
            CHECK(gap < 1e-5);
        }
        free(perm);
    }
    doze_model_free(mo);
    doze_model_free(m);
    free(f.data), free(o.data), free(ckpt), free(tok), free(text);
}

int main(void) {
    int32_t tokens[NTOK];
    uint64_t s = 12345;
    tokens[0] = 1; /* BOS */
    for (int i = 1; i < NTOK; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        tokens[i] = 3 + (int)((s >> 33) % (V - 3));
    }
    check_type(DOZE_TYPE_F32, tokens);
    check_type(DOZE_TYPE_F16, tokens);

    /* q8_0: ffn_down's columns sit inside quant blocks: refused with a reason */
    doze_error e;
    mem_buf f = fixture_gguf(D, 256, NL, NH, NKV, V, 128, 23, DOZE_TYPE_Q8_0);
    doze_model *m = NULL;
    CHECK(f.data && doze_model_load_memory(f.data, f.len, NULL, &m, &e) == DOZE_OK);
    if (m) {
        int32_t *perm = malloc(NL * 256 * sizeof *perm);
        CHECK(doze_ffn_order(m, tokens, NTOK, NULL, perm, NULL, &e) == DOZE_OK); /* 8 blocks of 32 */
        mem_buf o = {NULL, 0, 0};
        CHECK(doze_ffn_order_write(f.data, f.len, perm, NL, 256, mem_write, &o, &e) == DOZE_ERR_UNSUPPORTED_TYPE);
        printf("q8_0: %s\n", e.message);
        CHECK(strstr(e.message, "ffn_down") != NULL && o.len == 0);
        free(o.data);
        free(perm);
        /* out-of-range tokens and bad parameters */
        int32_t badtok[3] = {1, V, 4};
        int32_t one[NL * 256];
        CHECK(doze_ffn_order(m, badtok, 3, NULL, one, NULL, &e) == DOZE_ERR_TOKEN_RANGE);
        CHECK(doze_ffn_order(m, badtok, 3, NULL, one, NULL, NULL) == DOZE_ERR_TOKEN_RANGE); /* no error struct */
        mem_buf none = {NULL, 0, 0};
        static const int32_t zeros[NL * 256]; /* channel 0 everywhere: not a permutation */
        CHECK(doze_ffn_order_write(f.data, f.len, zeros, NL, 256, mem_write, &none, NULL) == DOZE_ERR_INVALID_ARGUMENT);
        CHECK(none.len == 0);
        doze_ffn_order_params p = doze_ffn_order_default_params();
        p.keep = 1.0f;
        CHECK(doze_ffn_order(m, tokens, NTOK, &p, one, NULL, &e) == DOZE_ERR_INVALID_ARGUMENT);
    }
    doze_model_free(m);
    free(f.data);
    check_stories260k();
    if (test_failures) fprintf(stderr, "%d failures\n", test_failures);
    return test_failures ? 1 : 0;
}
