/* Batched prefill (issue 9): a prompt's tokens go through each layer
 * together, the projections as matrix-matrix products (kernels' matmul_*:
 * each tile of weight rows is read from memory once for all the tokens),
 * while every token keeps the token-by-token path's exact operations: the
 * matmuls give each token the matvec's bits, and norms, RoPE, attention
 * over the cache (causal: token t sees positions <= pos + t), the per-head
 * output projections (added in head order), the FFN's down projection
 * (added FFN block by block, in block order) and the rest are the same kernel
 * calls on the same data. So the KV cache and the last token's logits are
 * bit-identical to n calls of doze_session_step with every gate on.
 * Prefill is dense: gates and budget are not consulted (the mask reported
 * afterwards is all on, compute 1). */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "types.h"
#include "model.h"

/* tokens per pass: bounds the scratch (a chunk is itself an exact prefill) */
#define PREFILL_CHUNK 64

typedef struct {
    float *x, *xn, *q, *att_out, *y, *h1, *h2, *att;
    void *scratch;
} prefill_buffers;

static void free_buffers(prefill_buffers *b) {
    free(b->x), free(b->xn), free(b->q), free(b->att_out), free(b->y), free(b->h1), free(b->h2);
    free(b->att), free(b->scratch);
}

/* tokens[0..n) at positions pos.. (n <= PREFILL_CHUNK) */
static void prefill_chunk(doze_session_view *v, const prefill_buffers *b, const int32_t *tokens, int n) {
    const doze_model *m = v->model;
    const doze_model_info *c = &m->info;
    const doze_kernels *k = m->kern;
    const int dim = c->dim, hd = c->head_dim, nh = c->n_heads, hid = c->hidden_dim;
    const int kv_dim = c->n_kv_heads * hd, q_dim = nh * hd, group = nh / c->n_kv_heads;
    const int half = c->rope_dim / 2;
    const int pos = *v->pos;

    for (int t = 0; t < n; t++) model_embed(m, tokens[t], b->x + (size_t)t * dim); /* x(n, dim) */
    for (int l = 0; l < c->n_layers; l++) {
        const doze_layer *L = &m->layers[l];
        const size_t cell = (size_t)l * (size_t)c->context_length;
        float *kc = v->key + cell * (size_t)kv_dim;   /* (context_length, kv_dim) */
        float *vc = v->value + cell * (size_t)kv_dim;
        uint8_t *valid = v->kv_valid + cell;
        for (int t = 0; t < n; t++) {
            valid[pos + t] = 1;
            k->rmsnorm(b->xn + (size_t)t * dim, b->x + (size_t)t * dim, L->attn_norm, dim, c->norm_eps);
        }
        /* K, V straight into the cache; Q(n, q_dim) */
        model_matmul(m, kc + (size_t)pos * kv_dim, kv_dim, &L->wk, b->xn, dim, n, b->scratch);
        model_matmul(m, vc + (size_t)pos * kv_dim, kv_dim, &L->wv, b->xn, dim, n, b->scratch);
        model_matmul(m, b->q, q_dim, &L->wq, b->xn, dim, n, b->scratch);
        for (int t = 0; t < n; t++) {
            const float *cos_t = m->rope_cos + (size_t)(pos + t) * (size_t)half;
            const float *sin_t = m->rope_sin + (size_t)(pos + t) * (size_t)half;
            k->rope(kc + (size_t)(pos + t) * kv_dim, c->n_kv_heads, hd, c->rope_dim, cos_t, sin_t);
            for (int h = 0; h < nh; h++)
                k->rope(b->q + (size_t)t * q_dim + (size_t)h * hd, 1, hd, c->rope_dim, cos_t, sin_t);
        }
        for (int t = 0; t < n; t++)
            for (int h = 0; h < nh; h++) {
                const int kvh = h / group;
                k->attention(b->att_out + (size_t)t * q_dim + (size_t)h * hd,
                             b->q + (size_t)t * q_dim + (size_t)h * hd, kc + (size_t)kvh * hd,
                             vc + (size_t)kvh * hd, pos + t + 1, hd, kv_dim, valid, b->att);
            }
        /* output projection head by head: x_t += Wo_h att_t,h, heads in order */
        for (int h = 0; h < nh; h++) {
            model_matmul(m, b->y, dim, &L->wo_head[h], b->att_out + (size_t)h * hd, q_dim, n, b->scratch);
            for (int t = 0; t < n; t++) k->add(b->x + (size_t)t * dim, b->y + (size_t)t * dim, dim);
        }
        /* feed-forward */
        for (int t = 0; t < n; t++)
            k->rmsnorm(b->xn + (size_t)t * dim, b->x + (size_t)t * dim, L->ffn_norm, dim, c->norm_eps);
        model_matmul(m, b->h1, hid, &L->w_gate, b->xn, dim, n, b->scratch);
        model_matmul(m, b->h2, hid, &L->w_up, b->xn, dim, n, b->scratch);
        for (int t = 0; t < n; t++)
            k->swiglu(b->h1 + (size_t)t * hid, b->h1 + (size_t)t * hid, b->h2 + (size_t)t * hid, hid);
        /* issue 8: down FFN block by FFN block, added in block order (model_ffn) */
        for (int j = 0; j < m->n_ffn_blocks; j++) {
            model_matmul(m, b->y, dim, &L->w_down_blk[j], b->h1 + (size_t)j * c->ffn_block, hid, n, b->scratch);
            for (int t = 0; t < n; t++) k->add(b->x + (size_t)t * dim, b->y + (size_t)t * dim, dim);
        }
    }
    memcpy(v->x, b->x + (size_t)(n - 1) * dim, (size_t)dim * sizeof(float));
    *v->pos = pos + n;
}

doze_status doze_session_prefill(doze_session *s, const int32_t *tokens, int n, doze_error *err) {
    if (!s || (!tokens && n > 0) || n < 0)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no session or tokens");
    if (n == 0) return DOZE_OK;
    doze_session_view v;
    session_view(s, &v);
    const doze_model *m = v.model;
    const doze_model_info *c = &m->info;
    for (int t = 0; t < n; t++)
        if (tokens[t] < 0 || tokens[t] >= c->vocab_size)
            return doze_fail(err, DOZE_ERR_TOKEN_RANGE, "token id %d at %d is out of range [0, %d)",
                             tokens[t], t, c->vocab_size);
    if (n > c->context_length - *v.pos)
        return doze_fail(err, DOZE_ERR_CONTEXT_FULL, "%d tokens do not fit: %d of %d positions left", n,
                         c->context_length - *v.pos, c->context_length);
    const int chunk = n < PREFILL_CHUNK ? n : PREFILL_CHUNK;
    const size_t dim = (size_t)c->dim, hid = (size_t)c->hidden_dim;
    const size_t q_dim = (size_t)c->n_heads * (size_t)c->head_dim;
    size_t widest = dim > hid ? dim : hid;
    if (q_dim > widest) widest = q_dim;
    prefill_buffers b;
    b.x = malloc((size_t)chunk * dim * sizeof(float));
    b.xn = malloc((size_t)chunk * dim * sizeof(float));
    b.q = malloc((size_t)chunk * q_dim * sizeof(float));
    b.att_out = malloc((size_t)chunk * q_dim * sizeof(float));
    b.y = malloc((size_t)chunk * dim * sizeof(float));
    b.h1 = malloc((size_t)chunk * hid * sizeof(float));
    b.h2 = malloc((size_t)chunk * hid * sizeof(float));
    b.att = malloc((size_t)c->context_length * sizeof(float));
    b.scratch = malloc((size_t)chunk * (widest * sizeof(float) + sizeof(doze_block_q8_0)));
    if (!b.x || !b.xn || !b.q || !b.att_out || !b.y || !b.h1 || !b.h2 || !b.att || !b.scratch) {
        free_buffers(&b);
        return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for a prefill of %d tokens", n);
    }
    for (int t0 = 0; t0 < n; t0 += chunk)
        prefill_chunk(&v, &b, tokens + t0, n - t0 < chunk ? n - t0 : chunk);
    free_buffers(&b);
    /* the last token's logits, as its step would leave them; the mask: dense */
    const doze_kernels *k = m->kern;
    k->rmsnorm(v.xb, v.x, m->output_norm, c->dim, c->norm_eps);
    model_matvec(m, v.logits, &m->output, v.xb, v.xq);
    memset(v.layer_on, 1, (size_t)c->n_layers);
    memset(v.head_on, 1, (size_t)c->n_layers * (size_t)c->n_heads);
    memset(v.ffn_on, 1, (size_t)c->n_layers * (size_t)m->n_ffn_blocks);
    *v.compute = 1.0f;
    return DOZE_OK;
}
