/* FFN channel order: which intermediate channels share an FFN block.
 *
 * A SwiGLU FFN computes the same function under any permutation of its
 * intermediate channels (rows of ffn_gate and ffn_up, columns of ffn_down
 * together), so which channels form a block is ours to choose. Block
 * skipping loses least when channels that matter on the same tokens sit in
 * the same block (MoEfication's grouping of co-activated neurons): a
 * token's FFN contribution then gathers in few blocks and the others can
 * doze. doze_ffn_order measures each channel's contribution per token on a
 * dense run over calibration tokens, m(t, c) = |h_c| * ||W_down[:, c]||
 * (h = silu(W_gate hn) * (W_up hn)), and searches per layer for the grouping
 * into the model's blocks that maximizes the contribution each token keeps
 * in its top K blocks (K = keep * n_blocks; keep = 0.6 by default. On
 * stories260K with gates trained at b = 0.7 (200 steps), keep 0.4 / 0.5 /
 * 0.6 / 0.7 / 0.8 gave ppl 5.77 / 5.75 / 5.70 and 5.80 (two search seeds) /
 * 5.76 / 5.81: close, within the seed-to-seed spread), summed over the tokens: a
 * seeded local search of swaps of two channels between blocks, each kept
 * when it raises the sum. Since the
 * sum over all blocks is fixed per token, a swap is scored by the sum of the
 * n_blocks - K smallest block masses it leaves, which only two blocks change.
 * doze_ffn_order_write then writes the model file with the channels in that
 * order and a doze.ffn_order key (a hash of the order), which the gate-file
 * fingerprint includes: gates made for one order are refused on another. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "error.h"
#include "gguf.h"
#include "types.h"
#include "arch.h"
#include "model.h"
#include "session.h"

/* bounds: the contributions kept in memory, and the search's work per layer
 * (about a minute natively at the limit; stories260K needs 1e9) */
#define ORDER_MAX_BYTES (256ll << 20)
#define ORDER_MAX_WORK 4e10

doze_ffn_order_params doze_ffn_order_default_params(void) {
    doze_ffn_order_params p;
    p.max_tokens = 4096;
    p.keep = 0.6f;
    p.tries_per_channel = 40;
    p.seed = 1;
    return p;
}

static uint64_t next_rand(uint64_t *s) {
    *s ^= *s >> 12, *s ^= *s << 25, *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

/* sum of the k smallest of v(n) (k small: repeated minimum scans) */
static double sum_smallest(const double *v, int n, int k) {
    double s = 0;
    uint64_t taken = 0; /* n <= 64 (doze_ffn_order checks) */
    for (int i = 0; i < k; i++) {
        int best = -1;
        for (int j = 0; j < n; j++)
            if (!(taken >> j & 1u) && (best < 0 || v[j] < v[best])) best = j;
        taken |= 1ull << best;
        s += v[best];
    }
    return s;
}

/* One layer: m (T, H) contributions; blk (H) the block of each channel, in
 * and out; returns the kept share before and after. */
static void search_layer(const float *m, int T, int H, int nb, int K, int tries, uint64_t *rng, int *blk,
                         double *bm, float *kept_before, float *kept_after) {
    const int drop = nb - K;
    double total = 0, dropped = 0;
    memset(bm, 0, (size_t)T * (size_t)nb * sizeof *bm);
    for (int t = 0; t < T; t++) {
        double *row = bm + (size_t)t * nb;
        for (int c = 0; c < H; c++) row[blk[c]] += m[(size_t)t * H + c];
        for (int j = 0; j < nb; j++) total += row[j];
        dropped += sum_smallest(row, nb, drop);
    }
    *kept_before = total > 0 ? (float)(1.0 - dropped / total) : 1.0f;
    double tmp[64];
    for (int i = 0; i < tries; i++) {
        int a = (int)(next_rand(rng) % (uint64_t)H), b = (int)(next_rand(rng) % (uint64_t)H);
        int A = blk[a], B = blk[b];
        if (A == B) continue;
        /* a short last block keeps its size: swaps move one channel each way */
        double nd = 0;
        for (int t = 0; t < T && nd < dropped; t++) {
            const double *row = bm + (size_t)t * nb;
            double d = (double)m[(size_t)t * H + b] - (double)m[(size_t)t * H + a];
            memcpy(tmp, row, (size_t)nb * sizeof *tmp);
            tmp[A] += d;
            tmp[B] -= d;
            nd += sum_smallest(tmp, nb, drop);
        }
        if (nd >= dropped) continue;
        dropped = nd;
        blk[a] = B;
        blk[b] = A;
        for (int t = 0; t < T; t++) {
            double d = (double)m[(size_t)t * H + b] - (double)m[(size_t)t * H + a];
            bm[(size_t)t * nb + A] += d;
            bm[(size_t)t * nb + B] -= d;
        }
    }
    *kept_after = total > 0 ? (float)(1.0 - dropped / total) : 1.0f;
}

doze_status doze_ffn_order(doze_model *m, const int32_t *tokens, int n_tokens, const doze_ffn_order_params *params,
                           int32_t *perm, float *kept, doze_error *caller_err) {
    doze_error local;
    doze_error *err = caller_err ? caller_err : &local;
    if (!m || !tokens || !perm || n_tokens < 2)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "doze_ffn_order: no model, tokens (at least 2) or output");
    const doze_ffn_order_params p = params ? *params : doze_ffn_order_default_params();
    const doze_model_info *c = &m->info;
    const int L = c->n_layers, H = c->hidden_dim, D = c->dim, fb = c->ffn_block, nb = m->n_ffn_blocks;
    if (!(p.keep > 0.0f && p.keep < 1.0f) || p.max_tokens < 2 || p.tries_per_channel < 0)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "ffn order: keep %g must be in (0, 1), max_tokens >= 2",
                         (double)p.keep);
    if (nb < 2 || nb > 64)
        return doze_fail(err, DOZE_ERR_UNSUPPORTED_TYPE,
                         "ffn order: %d FFN blocks per layer (ordering needs 2 to 64)", nb);
    for (int i = 0; i < n_tokens; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return doze_fail(err, DOZE_ERR_TOKEN_RANGE, "token %d at %d is outside the vocabulary of %d",
                             tokens[i], i, c->vocab_size);
    int K = (int)lroundf(p.keep * (float)nb);
    if (K < 1) K = 1;
    if (K > nb - 1) K = nb - 1;
    /* tokens: at most max_tokens, and no more than keep the contributions
     * (n_layers, T, hidden_dim) floats within ORDER_MAX_BYTES */
    long long cap = ORDER_MAX_BYTES / ((long long)L * H * (long long)sizeof(float)) + 1;
    int n = n_tokens < p.max_tokens ? n_tokens : p.max_tokens;
    if (n > cap) n = (int)cap;
    if (n < 2)
        return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "ffn order: a layer of %d channels leaves no room", H);
    const int T = n - 1; /* position 0 (BOS) runs dense under any budget: not counted */
    /* the search's work, T * n_blocks * (n_blocks - K) per swap, bounded */
    long long tries = (long long)p.tries_per_channel * H;
    const double per_try = (double)T * nb * (nb - K);
    if (tries * per_try > ORDER_MAX_WORK) tries = (long long)(ORDER_MAX_WORK / per_try);
    if (tries < H && p.tries_per_channel > 0) tries = H;

    doze_step_trace tr;
    memset(&tr, 0, sizeof tr);
    tr.x_in = malloc((size_t)L * D * sizeof(float));
    tr.xn = malloc((size_t)L * D * sizeof(float));
    tr.hn = malloc((size_t)L * D * sizeof(float));
    tr.in_norm = malloc((size_t)L * sizeof(float));
    tr.update_norm = malloc((size_t)L * sizeof(float));
    tr.head_norm = malloc((size_t)L * c->n_heads * sizeof(float));
    float *contrib = malloc((size_t)L * T * H * sizeof(float)); /* (L, T, H) */
    float *colnorm = calloc((size_t)L * H, sizeof(float));        /* (L, H) ||W_down[:, c]|| */
    float *g = malloc((size_t)H * sizeof(float)), *u = malloc((size_t)H * sizeof(float));
    float *row = malloc((size_t)(fb > D ? fb : D) * sizeof(float));
    void *xq = malloc(model_input_bytes(D));
    double *bm = malloc((size_t)T * nb * sizeof(double));
    int *blk = malloc((size_t)H * sizeof(int));
    doze_session *s = NULL;
    doze_status st = DOZE_OK;
    if (!tr.x_in || !tr.xn || !tr.hn || !tr.in_norm || !tr.update_norm || !tr.head_norm || !contrib ||
        !colnorm || !g || !u || !row || !xq || !bm || !blk)
        st = doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory ordering the FFN of %d tokens", n);
    if (st == DOZE_OK && !(s = doze_session_new(m, err))) st = (doze_status)err->code;

    /* column norms of each layer's ffn_down, block by block */
    for (int l = 0; l < L && st == DOZE_OK; l++)
        for (int j = 0; j < nb; j++) {
            const doze_matrix *w = &m->layers[l].w_down_blk[j];
            for (int r = 0; r < D; r++) {
                model_dequantize_row(w, r, row);
                for (int k = 0; k < w->cols; k++) colnorm[(size_t)l * H + j * fb + k] += row[k] * row[k];
            }
        }
    for (int i = 0; st == DOZE_OK && i < L * H; i++) colnorm[i] = sqrtf(colnorm[i]);

    /* the dense run: h of every layer at every token from the traced hn */
    for (int t = 0; t < n && st == DOZE_OK; t++) {
        if (doze_session_pos(s) >= c->context_length) doze_session_reset(s);
        st = session_step(s, tokens[t], NULL, &tr, err);
        if (st != DOZE_OK || t == 0) continue;
        for (int l = 0; l < L; l++) {
            const float *hn = tr.hn + (size_t)l * D;
            const doze_matrix *gu[2] = {&m->layers[l].w_gate, &m->layers[l].w_up};
            model_prepare_input(m, gu, 2, hn, xq);
            model_matvec_prepared(m, g, gu[0], hn, xq);
            model_matvec_prepared(m, u, gu[1], hn, xq);
            m->kern->swiglu(g, g, u, H);
            float *out = contrib + ((size_t)l * T + (t - 1)) * H;
            for (int k = 0; k < H; k++) out[k] = fabsf(g[k]) * colnorm[(size_t)l * H + k];
        }
    }

    /* the search, layer by layer; perm[l][new] = old */
    uint64_t rng = p.seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
    if (rng == 0) rng = 1;
    for (int l = 0; l < L && st == DOZE_OK; l++) {
        for (int k = 0; k < H; k++) blk[k] = k / fb;
        float before, after;
        search_layer(contrib + (size_t)l * T * H, T, H, nb, K, (int)tries, &rng, blk, bm, &before, &after);
        int at = 0;
        for (int j = 0; j < nb; j++)
            for (int k = 0; k < H; k++)
                if (blk[k] == j) perm[(size_t)l * H + at++] = k;
        if (kept) kept[2 * l] = before, kept[2 * l + 1] = after;
    }
    doze_session_free(s);
    free(tr.x_in), free(tr.xn), free(tr.hn), free(tr.in_norm), free(tr.update_norm), free(tr.head_norm);
    free(contrib), free(colnorm), free(g), free(u), free(row), free(xq), free(bm), free(blk);
    return st;
}

/* FNV-1a of the order, folded with the file's earlier one; never 0 */
static uint32_t order_hash(uint32_t prev, const int32_t *perm, size_t n) {
    uint32_t h = 2166136261u ^ prev;
    for (size_t i = 0; i < n; i++)
        for (int b = 0; b < 4; b++) {
            h ^= (uint8_t)((uint32_t)perm[i] >> (8 * b));
            h *= 16777619u;
        }
    return h ? h : 1u;
}

/* which FFN tensor of which layer a name is: 0 gate, 1 up, 2 down; -1 none */
static int ffn_tensor(const char *name, int *layer) {
    static const char *const kinds[3] = {"ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"};
    const char *rest = NULL;
    const int l = arch_layer_of(name, &rest);
    if (l < 0) return -1;
    for (int k = 0; k < 3; k++)
        if (strcmp(rest, kinds[k]) == 0) {
            *layer = l;
            return k;
        }
    return -1;
}

/* element size of an ffn_down whose columns can be moved (f32, f16), else 0 */
static size_t movable_elem(uint32_t type) {
    return type == DOZE_TYPE_F32 ? 4 : type == DOZE_TYPE_F16 ? 2 : 0;
}

/* What the rewrite needs of the file itself: whole, n_layers layers of
 * hidden_dim FFN channels, an ffn_down whose columns can be moved; *prev
 * gets its earlier doze.ffn_order (0: none). */
static doze_status check_file(const gguf_header *h, size_t n, int n_layers, int hidden_dim, int64_t *prev,
                              doze_error *err) {
    int64_t layers = 0, hid = 0;
    *prev = 0;
    if (h->data_offset + h->data_size > n)
        return doze_fail(err, DOZE_ERR_TRUNCATED, "file has %zu bytes, its tensors need %llu", n,
                         (unsigned long long)(h->data_offset + h->data_size));
    /* the keys under the file's own architecture (qwen2.block_count, ...) */
    doze_status st = arch_get_int(h, "block_count", &layers, err);
    if (st == DOZE_OK) st = arch_get_int(h, "feed_forward_length", &hid, err);
    if (st == DOZE_OK && (layers != n_layers || hid != hidden_dim))
        st = doze_fail(err, DOZE_ERR_BAD_SHAPE, "the order is for %d layers of %d channels, the file has %lld of %lld",
                       n_layers, hidden_dim, (long long)layers, (long long)hid);
    if (st == DOZE_OK && gguf_find_kv(h, "doze.ffn_order")) st = gguf_get_int(h, "doze.ffn_order", prev, err);
    for (uint64_t i = 0; i < h->n_tensors && st == DOZE_OK; i++) {
        const gguf_tensor *t = &h->tensors[i];
        int l = -1, kind = ffn_tensor(t->name.data, &l);
        if (kind < 0) continue;
        if (l < 0 || l >= n_layers || t->n_dims != 2 || t->ne[kind == 2 ? 0 : 1] != (uint64_t)hidden_dim)
            st = doze_fail(err, DOZE_ERR_BAD_SHAPE, "tensor %s does not have %d FFN channels", t->name.data,
                           hidden_dim);
        else if (kind == 2 && !movable_elem(t->type))
            st = doze_fail(err, DOZE_ERR_UNSUPPORTED_TYPE,
                           "tensor %s is %s: its columns (the FFN channels) cannot be reordered inside quant "
                           "blocks; order an f32 or f16 file, then convert it",
                           t->name.data, doze_type_name((int)t->type));
    }
    return st;
}

doze_status doze_ffn_order_check(const void *file, size_t n, int n_layers, int hidden_dim, doze_error *caller_err) {
    doze_error local;
    doze_error *err = caller_err ? caller_err : &local;
    if (!file || n_layers < 1 || hidden_dim < 1)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "doze_ffn_order_check: invalid arguments");
    gguf_header h;
    int64_t prev;
    doze_status st = gguf_parse_header(file, n, &h, err);
    if (st != DOZE_OK) return st;
    st = check_file(&h, n, n_layers, hidden_dim, &prev, err);
    gguf_header_free(&h);
    return st;
}

doze_status doze_ffn_order_write(const void *file, size_t n, const int32_t *perm, int n_layers, int hidden_dim,
                                 int (*fn)(void *ctx, const void *bytes, size_t len), void *ctx,
                                 doze_error *caller_err) {
    doze_error local;
    doze_error *err = caller_err ? caller_err : &local;
    if (!file || !perm || !fn || n_layers < 1 || hidden_dim < 1)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "doze_ffn_order_write: invalid arguments");
    /* each layer's order is a permutation of 0..hidden_dim-1 */
    uint8_t *seen = malloc((size_t)hidden_dim);
    if (!seen) return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory");
    for (int l = 0; l < n_layers; l++) {
        memset(seen, 0, (size_t)hidden_dim);
        for (int k = 0; k < hidden_dim; k++) {
            int32_t v = perm[(size_t)l * hidden_dim + k];
            if (v < 0 || v >= hidden_dim || seen[v]) {
                free(seen);
                return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT,
                                 "order of layer %d is not a permutation of the %d channels (entry %d is %d)", l,
                                 hidden_dim, k, (int)v);
            }
            seen[v] = 1;
        }
    }
    free(seen);
    gguf_header h;
    doze_status st = gguf_parse_header(file, n, &h, err);
    if (st != DOZE_OK) return st;
    const uint8_t *bytes = file;
    int64_t prev = 0;
    st = check_file(&h, n, n_layers, hidden_dim, &prev, err);
    gguf_builder b;
    int have_b = 0;
    if (st == DOZE_OK && (st = gguf_builder_init(&b, err)) == DOZE_OK) have_b = 1;
    if (st == DOZE_OK) st = gguf_writer_copy_kvs(b.w, &h, err);
    if (st == DOZE_OK)
        st = gguf_writer_set_u32(b.w, "doze.ffn_order",
                                 order_hash((uint32_t)prev, perm, (size_t)n_layers * (size_t)hidden_dim), err);
    for (uint64_t i = 0; i < h.n_tensors && st == DOZE_OK; i++) {
        const gguf_tensor *t = &h.tensors[i];
        const uint8_t *src = bytes + h.data_offset + t->offset;
        int l = -1, kind = ffn_tensor(t->name.data, &l);
        if (kind < 0) {
            st = gguf_writer_add_tensor(b.w, t->name.data, t->type, t->n_dims, t->ne, src, err);
            continue;
        }
        uint8_t *out = malloc((size_t)t->n_bytes ? (size_t)t->n_bytes : 1);
        if (!out) {
            st = doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for tensor %s", t->name.data);
            break;
        }
        const int32_t *pl = perm + (size_t)l * hidden_dim;
        const size_t row_bytes = (size_t)doze_type_row_bytes((int)t->type, t->ne[0]), elem = movable_elem(t->type);
        if (kind < 2) /* gate / up: row c of the new file is row perm[c] of the old */
            for (int c = 0; c < hidden_dim; c++)
                memcpy(out + (size_t)c * row_bytes, src + (size_t)pl[c] * row_bytes, row_bytes);
        else /* down (checked: f32/f16): in every row, column c is the old column perm[c] */
            for (uint64_t r = 0; r < t->ne[1]; r++)
                for (int c = 0; c < hidden_dim; c++)
                    memcpy(out + r * row_bytes + (size_t)c * elem, src + r * row_bytes + (size_t)pl[c] * elem, elem);
        st = gguf_builder_keep(&b, out, err);
        if (st == DOZE_OK) st = gguf_writer_add_tensor(b.w, t->name.data, t->type, t->n_dims, t->ne, out, err);
    }
    if (st == DOZE_OK) st = gguf_writer_write(b.w, fn, ctx, err);
    if (have_b) gguf_builder_free(&b);
    gguf_header_free(&h);
    return st;
}
