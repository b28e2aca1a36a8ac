/* Many tokens through the whole model, layer by layer (each layer runs for
 * every token of a chunk before the next layer): the batched prefill of a
 * session and the whole-sequence forward that training reproduces. Both
 * are the layer body (layer.c) over chunks of tokens, so a chunk, a prompt
 * and a sequence give exactly the bits of the same tokens stepped one by
 * one under the same masks. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "layer.h"
#include "session.h"

/* tokens per pass: bounds the scratch (a chunk is itself an exact forward) */
#define FORWARD_CHUNK 64
/* ... under gates: the price of compute is fixed within a pass, and the
 * budget's feedback moves it between passes, so gated passes are shorter */
#define GATED_CHUNK 16
/* tokens whose logits a scoring pass holds at once: the classifier's tiles
 * are read once for them, and (rows, vocab) floats stay a few MB */
#define SCORE_ROWS 16

void batch_masks_copy(const doze_model *m, const doze_mask *src, int t0, int n, batch_masks *dst) {
    const doze_model_info *c = &m->info;
    const size_t nl = (size_t)c->n_layers, nh = (size_t)c->n_heads, nb = (size_t)m->n_ffn_blocks;
    for (size_t i = 0; i < (size_t)n * nl; i++)
        dst->layer_on[i] = src && src->layers ? src->layers[(size_t)t0 * nl + i] != 0 : 1;
    for (size_t i = 0; i < (size_t)n * nl * nh; i++)
        dst->head_on[i] = src && src->heads ? src->heads[(size_t)t0 * nl * nh + i] != 0 : 1;
    for (size_t i = 0; i < (size_t)n * nl * nb; i++)
        dst->ffn_on[i] = src && src->ffn ? src->ffn[(size_t)t0 * nl * nb + i] != 0 : 1;
    const size_t ne = (size_t)c->n_experts;
    dst->experts_forced = ne && src && src->experts;
    if (dst->experts_forced)
        for (size_t i = 0; i < (size_t)n * nl * ne; i++) dst->expert_on[i] = src->experts[(size_t)t0 * nl * ne + i] != 0;
}

void batch_masks_carve(carver *c, const doze_model *m, int n, batch_masks *mk) {
    const size_t nl = (size_t)m->info.n_layers;
    mk->layer_on = carve_bytes(c, (size_t)n * nl);
    mk->head_on = carve_bytes(c, (size_t)n * nl * (size_t)m->info.n_heads);
    mk->ffn_on = carve_bytes(c, (size_t)n * nl * (size_t)m->n_ffn_blocks);
    mk->expert_on = carve_bytes(c, (size_t)n * nl * (size_t)m->info.n_experts);
    mk->experts_forced = 0;
}

doze_status check_tokens(const doze_model *m, const int32_t *tokens, int n, doze_error *err) {
    for (int t = 0; t < n; t++)
        if (tokens[t] < 0 || tokens[t] >= m->info.vocab_size)
            return doze_fail(err, DOZE_ERR_TOKEN_RANGE, "token id %d at %d is out of range [0, %d)", tokens[t], t,
                             m->info.vocab_size);
    return DOZE_OK;
}

doze_status check_mask(const doze_mask *mask, doze_error *err) {
    if (mask && !mask->layers)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "a mask needs its layers (heads and ffn may be NULL)");
    return DOZE_OK;
}

/* Buffers of a chunked forward: the streams, masks and layer scratch. */
typedef struct {
    uint8_t *block;
    float *x;     /* (chunk, dim) */
    batch_masks mk;
    layer_scratch ls;
} chunk_buffers;

typedef struct {
    const doze_model *m;
    int chunk, ctx;
    chunk_buffers *b;
} chunk_plan;

static void chunk_carve(carver *c, void *ctx) {
    const chunk_plan *p = ctx;
    p->b->x = carve(c, (size_t)p->chunk * (size_t)p->m->info.dim);
    batch_masks_carve(c, p->m, p->chunk, &p->b->mk);
    layer_scratch_carve(c, p->m, p->chunk, p->ctx, &p->b->ls);
}

static doze_status chunk_buffers_new(const doze_model *m, int chunk, int ctx, chunk_buffers *b, doze_error *err) {
    chunk_plan p = {m, chunk, ctx, b};
    b->block = carve_alloc(chunk_carve, &p);
    if (!b->block) return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for a forward of %d tokens", chunk);
    return DOZE_OK;
}

doze_status session_prefill(doze_session *s, const int32_t *tokens, int n, const doze_mask *mask,
                            doze_error *err) {
    if (!s || (!tokens && n > 0) || n < 0)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no session or tokens");
    if (check_mask(mask, err)) return err ? err->code : DOZE_ERR_INVALID_ARGUMENT;
    if (n == 0) return DOZE_OK;
    doze_model *m = session_model(s);
    const doze_model_info *c = &m->info;
    doze_status st = check_tokens(m, tokens, n, err);
    if (st) return st;
    const int pos0 = doze_session_pos(s);
    if (n > c->context_length - pos0)
        return doze_fail(err, DOZE_ERR_CONTEXT_FULL, "a prompt of %d tokens does not fit: %d of %d positions left",
                         n, c->context_length - pos0, c->context_length);
    const int most = !mask && session_gated(s) ? GATED_CHUNK : FORWARD_CHUNK;
    const int chunk = n < most ? n : most;
    chunk_buffers b;
    st = chunk_buffers_new(m, chunk, c->context_length, &b, err);
    if (st) return st;
    for (int t0 = 0; t0 < n; t0 += chunk) {
        const int k = n - t0 < chunk ? n - t0 : chunk;
        for (int t = 0; t < k; t++) model_embed(m, tokens[t0 + t], b.x + (size_t)t * c->dim); /* x(k, dim) */
        if (mask) batch_masks_copy(m, mask, t0, k, &b.mk);
        session_run(s, k, b.x, &b.mk, mask != NULL, &b.ls, NULL);
    }
    free(b.block);
    return DOZE_OK;
}

doze_status doze_session_prefill(doze_session *s, const int32_t *tokens, int n, doze_error *err) {
    return session_prefill(s, tokens, n, NULL, err);
}

doze_status doze_session_prefill_masked(doze_session *s, const int32_t *tokens, int n, const doze_mask *mask,
                                        doze_error *err) {
    if (!mask) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no masks");
    return session_prefill(s, tokens, n, mask, err);
}

doze_status doze_sequence_forward(doze_model *m, const int32_t *tokens, int T, const doze_mask *mask, float *logits,
                                  doze_error *err) {
    if (!m || !tokens || !logits || T <= 0)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no model, tokens or logits");
    if (check_mask(mask, err)) return err ? err->code : DOZE_ERR_INVALID_ARGUMENT;
    const doze_model_info *c = &m->info;
    const doze_kernels *k = m->kern;
    if (T > c->context_length)
        return doze_fail(err, DOZE_ERR_CONTEXT_FULL, "%d tokens exceed the context of %d", T, c->context_length);
    doze_status st = check_tokens(m, tokens, T, err);
    if (st) return st;
    const int dim = c->dim, chunk = T < FORWARD_CHUNK ? T : FORWARD_CHUNK;
    const size_t kv_dim = (size_t)c->n_kv_heads * (size_t)c->head_dim;
    const size_t cells = (size_t)c->n_layers * (size_t)T;
    /* a cache of the sequence's own T positions */
    kv_cache kv = {malloc(cells * kv_dim * sizeof(float)), malloc(cells * kv_dim * sizeof(float)), calloc(cells, 1), T};
    chunk_buffers b = {0};
    if (!kv.key || !kv.value || !kv.valid) {
        st = doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for a %d-token forward", T);
        goto done;
    }
    st = chunk_buffers_new(m, chunk, T, &b, err);
    if (st) goto done;
    for (int t0 = 0; t0 < T; t0 += chunk) {
        const int n = T - t0 < chunk ? T - t0 : chunk;
        for (int t = 0; t < n; t++) model_embed(m, tokens[t0 + t], b.x + (size_t)t * dim); /* x(n, dim) */
        batch_masks_copy(m, mask, t0, n, &b.mk);
        for (int l = 0; l < c->n_layers; l++) layer_forward(m, l, &kv, t0, n, b.x, &b.mk, NULL, &b.ls, NULL);
        for (int t = 0; t < n; t++) {
            k->rmsnorm(b.ls.xn, b.x + (size_t)t * dim, m->output_norm, dim, c->norm_eps);
            model_matvec(m, logits + (size_t)(t0 + t) * c->vocab_size, &m->output, b.ls.xn, b.ls.xq);
        }
    }
done:
    free(kv.key);
    free(kv.value);
    free(kv.valid);
    free(b.block);
    return st;
}

/* ---- speculation: the dense verify pass with every token's logits ---------------------- */

doze_status session_verify(doze_session *s, const int32_t *tokens, int n, float *logits, doze_error *err) {
    if (!s || !tokens || !logits || n <= 0)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no session, tokens or logits");
    doze_model *m = session_model(s);
    const doze_model_info *c = &m->info;
    doze_status st = check_tokens(m, tokens, n, err);
    if (st) return st;
    if (n > c->context_length - doze_session_pos(s))
        return doze_fail(err, DOZE_ERR_CONTEXT_FULL, "%d tokens do not fit: %d of %d positions left", n,
                         c->context_length - doze_session_pos(s), c->context_length);
    const int chunk = n < FORWARD_CHUNK ? n : FORWARD_CHUNK;
    chunk_buffers b;
    st = chunk_buffers_new(m, chunk, c->context_length, &b, err);
    if (st) return st;
    for (int t0 = 0; t0 < n; t0 += chunk) {
        const int k = n - t0 < chunk ? n - t0 : chunk;
        for (int t = 0; t < k; t++) model_embed(m, tokens[t0 + t], b.x + (size_t)t * c->dim); /* x(k, dim) */
        batch_masks_copy(m, NULL, 0, k, &b.mk); /* forced, every unit on: dense */
        session_run(s, k, b.x, &b.mk, 1, &b.ls, NULL);
        /* b.x holds the k final streams; the last one's logits are the session's */
        for (int t = 0; t + 1 < k; t++) {
            m->kern->rmsnorm(b.ls.xn, b.x + (size_t)t * c->dim, m->output_norm, c->dim, c->norm_eps);
            model_matvec(m, logits + (size_t)(t0 + t) * c->vocab_size, &m->output, b.ls.xn, b.ls.xq);
        }
        memcpy(logits + (size_t)(t0 + k - 1) * c->vocab_size, doze_session_logits(s),
               (size_t)c->vocab_size * sizeof(float));
    }
    free(b.block);
    return DOZE_OK;
}

/* ---- scoring: every token's likelihood of the next --------------------------------------- */

/* -log softmax(logits)[target], in double */
static double nll_of(const float *logits, int n, int target) {
    float max = logits[0];
    for (int i = 1; i < n; i++)
        if (logits[i] > max) max = logits[i];
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += exp((double)(logits[i] - max));
    return log(sum) - (double)(logits[target] - max);
}

typedef struct {
    const float *logits; /* (rows, vocab) */
    const int32_t *next; /* (rows) */
    double *nll;         /* (rows) */
    int vocab;
} nll_rows;

static void nll_row(void *args, int t) {
    const nll_rows *a = args;
    a->nll[t] = nll_of(a->logits + (size_t)t * (size_t)a->vocab, a->vocab, a->next[t]);
}

/* n tokens one step each: the gates decide, and the budget's feedback moves, per token */
static doze_status score_steps(doze_session *s, const int32_t *tokens, const int32_t *next, int n, double *nll,
                               float *compute, doze_error *err) {
    const int vocab = session_model(s)->info.vocab_size;
    for (int t = 0; t < n; t++) {
        doze_status st = session_step(s, tokens[t], NULL, NULL, err);
        if (st) return st;
        nll[t] = nll_of(doze_session_logits(s), vocab, next[t]);
        if (compute) compute[t] = doze_session_compute(s);
    }
    return DOZE_OK;
}

doze_status doze_session_score(doze_session *s, const int32_t *tokens, const int32_t *next, int n, double *nll,
                               float *compute, doze_error *err) {
    if (!s || n < 0 || (n > 0 && (!tokens || !next || !nll)))
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no session, tokens, next tokens or nll");
    if (n == 0) return DOZE_OK;
    doze_model *m = session_model(s);
    const doze_model_info *c = &m->info;
    doze_status st = check_tokens(m, tokens, n, err);
    if (!st) st = check_tokens(m, next, n, err);
    if (st) return st;
    if (n > c->context_length - doze_session_pos(s))
        return doze_fail(err, DOZE_ERR_CONTEXT_FULL, "a text of %d tokens does not fit: %d of %d positions left", n,
                         c->context_length - doze_session_pos(s), c->context_length);
    if (session_gated(s)) return score_steps(s, tokens, next, n, nll, compute, err);

    const int chunk = n < FORWARD_CHUNK ? n : FORWARD_CHUNK, dim = c->dim, vocab = c->vocab_size;
    chunk_buffers b;
    st = chunk_buffers_new(m, chunk, c->context_length, &b, err);
    if (st) return st;
    float *logits = malloc((size_t)SCORE_ROWS * (size_t)vocab * sizeof(float)); /* (SCORE_ROWS, vocab) */
    if (!logits) {
        free(b.block);
        return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for the logits of %d tokens", SCORE_ROWS);
    }
    for (int t0 = 0; t0 < n; t0 += chunk) {
        const int k = n - t0 < chunk ? n - t0 : chunk;
        for (int t = 0; t < k; t++) model_embed(m, tokens[t0 + t], b.x + (size_t)t * dim); /* x(k, dim) */
        session_run(s, k, b.x, &b.mk, 0, &b.ls, NULL); /* dense: every unit on */
        /* b.x holds the k final streams; the last one's logits are the session's */
        for (int r0 = 0; r0 + 1 < k; r0 += SCORE_ROWS) {
            const int rows = k - 1 - r0 < SCORE_ROWS ? k - 1 - r0 : SCORE_ROWS;
            for (int r = 0; r < rows; r++)
                m->kern->rmsnorm(b.ls.xn + (size_t)r * dim, b.x + (size_t)(r0 + r) * dim, m->output_norm, dim,
                                 c->norm_eps);
            model_matmul(m, logits, vocab, &m->output, b.ls.xn, dim, rows, b.ls.mm); /* (rows, vocab) */
            nll_rows a = {logits, next + t0 + r0, nll + t0 + r0, vocab};
            model_for_tokens(m, rows, vocab, nll_row, &a);
        }
        nll[t0 + k - 1] = nll_of(doze_session_logits(s), vocab, next[t0 + k - 1]);
    }
    if (compute)
        for (int t = 0; t < n; t++) compute[t] = 1.0f;
    free(logits);
    free(b.block);
    return DOZE_OK;
}
