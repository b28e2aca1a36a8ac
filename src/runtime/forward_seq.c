/* The whole-sequence forward: every layer over all T tokens before the
 * next layer, the order training uses. Same kernels and the same per-token
 * order of operations as session.c, so that under the same masks it gives
 * the token-by-token numbers. Masks follow DOZE_MASK semantics: a skipped
 * layer leaves the token's stream unchanged and its position is invisible
 * to later tokens at that layer; a skipped head adds nothing; a skipped FFN
 * block computes nothing (issue 8). */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "types.h"
#include "model.h"

typedef struct {
    float *x;     /* (T, dim) residual stream */
    float *xn;    /* (T, dim) normed input */
    float *q;     /* (T, q_dim) */
    float *key;   /* (T, kv_dim) this layer's keys */
    float *value; /* (T, kv_dim) */
    float *att_out; /* (T, q_dim) */
    float *tmp;   /* (dim) */
    float *hb, *hb2; /* (hidden_dim) */
    float *att;   /* (T) */
    void *xq;     /* q8_0 scratch */
    uint8_t *valid; /* (T) positions visible at this layer */
} seq_buffers;

static void free_buffers(seq_buffers *b) {
    free(b->x), free(b->xn), free(b->q), free(b->key), free(b->value), free(b->att_out);
    free(b->tmp), free(b->hb), free(b->hb2), free(b->att), free(b->xq), free(b->valid);
}

doze_status doze_sequence_forward(doze_model *m, const int32_t *tokens, int T,
                                  const uint8_t *layer_on, const uint8_t *head_on, float *logits,
                                  doze_error *err) {
    return doze_sequence_forward3(m, tokens, T, layer_on, head_on, NULL, logits, err);
}

doze_status doze_sequence_forward3(doze_model *m, const int32_t *tokens, int T,
                                   const uint8_t *layer_on, const uint8_t *head_on,
                                   const uint8_t *ffn_on, float *logits, doze_error *err) {
    if (!m || !tokens || !logits || T <= 0)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no model, tokens or logits");
    const doze_model_info *c = &m->info;
    const doze_kernels *k = m->kern;
    if (T > c->context_length)
        return doze_fail(err, DOZE_ERR_CONTEXT_FULL, "%d tokens exceed the context of %d", T,
                         c->context_length);
    for (int t = 0; t < T; t++)
        if (tokens[t] < 0 || tokens[t] >= c->vocab_size)
            return doze_fail(err, DOZE_ERR_TOKEN_RANGE, "token id %d at %d is out of range [0, %d)",
                             tokens[t], t, c->vocab_size);
    const int dim = c->dim, hd = c->head_dim, nh = c->n_heads, nl = c->n_layers;
    const int kv_dim = c->n_kv_heads * hd, q_dim = nh * hd, group = nh / c->n_kv_heads;
    const int half = c->rope_dim / 2, nb = m->n_ffn_blocks;
    size_t widest = (size_t)(dim > c->hidden_dim ? dim : c->hidden_dim);
    if ((size_t)q_dim > widest) widest = (size_t)q_dim;
    seq_buffers b;
    b.x = malloc((size_t)T * dim * sizeof(float));
    b.xn = malloc((size_t)T * dim * sizeof(float));
    b.q = malloc((size_t)T * q_dim * sizeof(float));
    b.key = malloc((size_t)T * kv_dim * sizeof(float));
    b.value = malloc((size_t)T * kv_dim * sizeof(float));
    b.att_out = malloc((size_t)T * q_dim * sizeof(float));
    b.tmp = malloc((size_t)dim * sizeof(float));
    b.hb = malloc((size_t)c->hidden_dim * sizeof(float));
    b.hb2 = malloc((size_t)c->hidden_dim * sizeof(float));
    b.att = malloc((size_t)T * sizeof(float));
    b.xq = malloc((widest / DOZE_QK8_0 + 1) * sizeof(doze_block_q8_0));
    b.valid = malloc((size_t)T);
    if (!b.x || !b.xn || !b.q || !b.key || !b.value || !b.att_out || !b.tmp || !b.hb || !b.hb2 ||
        !b.att || !b.xq || !b.valid) {
        free_buffers(&b);
        return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for a %d-token forward", T);
    }
    for (int t = 0; t < T; t++) model_embed(m, tokens[t], b.x + (size_t)t * dim); /* x(T, dim) */

    for (int l = 0; l < nl; l++) {
        const doze_layer *L = &m->layers[l];
        for (int t = 0; t < T; t++) b.valid[t] = layer_on ? layer_on[(size_t)t * nl + l] != 0 : 1;
        /* Q (running heads), K, V of every running token */
        for (int t = 0; t < T; t++) {
            if (!b.valid[t]) continue;
            const uint8_t *ho = head_on ? head_on + ((size_t)t * nl + l) * nh : NULL;
            const float *cos_t = m->rope_cos + (size_t)t * half, *sin_t = m->rope_sin + (size_t)t * half;
            float *xn = b.xn + (size_t)t * dim;
            k->rmsnorm(xn, b.x + (size_t)t * dim, L->attn_norm, dim, c->norm_eps);
            float *kt = b.key + (size_t)t * kv_dim, *vt = b.value + (size_t)t * kv_dim;
            const doze_matrix *qkv[3] = {&L->wq, &L->wk, &L->wv};
            model_prepare_input(m, qkv, 3, xn, b.xq); /* once for K, V and every Q head */
            model_matvec_prepared(m, kt, &L->wk, xn, b.xq);
            model_matvec_prepared(m, vt, &L->wv, xn, b.xq);
            k->rope(kt, c->n_kv_heads, hd, c->rope_dim, cos_t, sin_t);
            for (int h = 0; h < nh; h++) {
                if (ho && !ho[h]) continue;
                float *qh = b.q + (size_t)t * q_dim + (size_t)h * hd;
                doze_matrix wq_h = model_rows(&L->wq, h * hd, hd);
                model_matvec_prepared(m, qh, &wq_h, xn, b.xq);
                k->rope(qh, 1, hd, c->rope_dim, cos_t, sin_t);
            }
        }
        /* causal attention over the positions visible at this layer, then
         * the output projection and the FFN of each running token */
        for (int t = 0; t < T; t++) {
            if (!b.valid[t]) continue;
            const uint8_t *ho = head_on ? head_on + ((size_t)t * nl + l) * nh : NULL;
            float *x = b.x + (size_t)t * dim;
            for (int h = 0; h < nh; h++) {
                if (ho && !ho[h]) continue;
                int kvh = h / group;
                float *o = b.att_out + (size_t)t * q_dim + (size_t)h * hd;
                k->attention(o, b.q + (size_t)t * q_dim + (size_t)h * hd, b.key + (size_t)kvh * hd,
                             b.value + (size_t)kvh * hd, t + 1, hd, kv_dim, b.valid, b.att);
                model_matvec(m, b.tmp, &L->wo_head[h], o, b.xq);
                k->add(x, b.tmp, dim);
            }
            const uint8_t *fo = ffn_on ? ffn_on + ((size_t)t * nl + l) * nb : NULL;
            float *hn = b.xn + (size_t)t * dim; /* (the normed input is no longer needed) */
            k->rmsnorm(hn, x, L->ffn_norm, dim, c->norm_eps);
            model_ffn(m, l, x, fo, hn, b.hb, b.hb2, b.tmp, b.xq, NULL);
        }
    }
    for (int t = 0; t < T; t++) {
        k->rmsnorm(b.xn, b.x + (size_t)t * dim, m->output_norm, dim, c->norm_eps);
        model_matvec(m, logits + (size_t)t * c->vocab_size, &m->output, b.xn, b.xq);
    }
    free_buffers(&b);
    return DOZE_OK;
}
