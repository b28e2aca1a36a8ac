/* The layer body (layer.h): attention then FFN for a batch of tokens.
 *
 * One token (the decode step) uses matrix-vector products with the normed
 * input quantized once for K, V and every Q head; a batch uses the tiled
 * matrix-matrix products (each tile of weights read once for all tokens).
 * The two give each token the same bits (model_matmul's contract), and
 * every other operation — norms, RoPE, attention over the cache, the
 * output projection added head by head in head order, the FFN's down
 * projection added block by block in block order — is the same call on the
 * same data, so a batch equals its tokens run one by one. */
#include "layer.h"

#include <math.h>
#include <string.h>

#include "pool.h"
#include "session.h"
#include "types.h"

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

void layer_scratch_carve(carver *c, const doze_model *m, int n_max, int ctx, layer_scratch *s) {
    const doze_model_info *i = &m->info;
    const size_t n = (size_t)n_max, dim = (size_t)i->dim, hid = (size_t)i->hidden_dim;
    const size_t q_dim = (size_t)i->n_heads * (size_t)i->head_dim;
    const size_t kv_dim = (size_t)i->n_kv_heads * (size_t)i->head_dim;
    const size_t widest = max_sz(max_sz(dim, hid), q_dim);
    const size_t att_heads = (size_t)(i->n_heads < DOZE_ATT_HEADS ? i->n_heads : DOZE_ATT_HEADS);
    s->n_max = n_max;
    s->xn = carve(c, n * dim);
    s->gx = carve(c, n * max_sz(dim, q_dim));
    s->q = carve(c, n * q_dim);
    s->att_out = carve(c, n * q_dim);
    s->y = carve(c, n * max_sz(dim, kv_dim));
    s->h1 = carve(c, n * hid);
    s->h2 = carve(c, n * hid);
    s->att_parts = pool_threads(m->pool);
    s->att = carve(c, (size_t)s->att_parts * att_heads * (size_t)ctx);
    s->x_in = carve(c, dim);
    s->x_ffn = carve(c, dim);
    s->mm = carve_bytes(c, n * (widest * sizeof(float) + sizeof(doze_block_q8_0)));
    s->xq = carve_bytes(c, model_input_area_bytes(m));
    s->run = (int *)carve_bytes(c, n * sizeof(int));
    s->sel = (int *)carve_bytes(c, n * sizeof(int));
    moe_scratch_carve(c, m, n_max, &s->moe);
}

/* ||v|| in double (traces only) */
static float norm_of(const float *v, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)v[i] * v[i];
    return (float)sqrt(s);
}

/* ||a - b|| in double (traces only) */
static float dist_of(const float *a, const float *b, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return (float)sqrt(s);
}

/* Y(k, w->rows) (stride ldy) = W @ rows sel[0..k) of X (stride ldx): the
 * selected rows are gathered first unless they are all of X in order. */
static void product(const doze_model *m, float *y, int ldy, const doze_matrix *w, const float *x, int ldx,
                    const int *sel, int k, int n_all, layer_scratch *s) {
    if (k == n_all) {
        model_matmul(m, y, ldy, w, x, ldx, k, s->mm);
        return;
    }
    const int cols = w->cols;
    for (int i = 0; i < k; i++)
        memcpy(s->gx + (size_t)i * cols, x + (size_t)sel[i] * ldx, (size_t)cols * sizeof(float));
    model_matmul(m, y, ldy, w, s->gx, cols, k, s->mm);
}

/* A token's new key and value rows k(kv_dim), v(kv_dim) as the
 * architecture has them before RoPE: biases added, keys RMS-normed head by
 * head where the model says so. */
static void finish_kv(const doze_model *m, const doze_layer *L, float *kr, float *vr) {
    const doze_model_info *c = &m->info;
    const doze_kernels *k = m->kern;
    const int hd = c->head_dim, kv_dim = c->n_kv_heads * hd;
    if (L->bk) k->add(kr, L->bk, kv_dim);
    if (L->bv) k->add(vr, L->bv, kv_dim);
    if (L->k_norm)
        for (int g = 0; g < c->n_kv_heads; g++) k->rmsnorm(kr + (size_t)g * hd, kr + (size_t)g * hd, L->k_norm, hd, c->norm_eps);
}

/* Query head h's q(head_dim) likewise: its bias slice, its RMSNorm. */
static void finish_q(const doze_model *m, const doze_layer *L, int h, float *qh) {
    const doze_model_info *c = &m->info;
    const int hd = c->head_dim;
    if (L->bq) m->kern->add(qh, L->bq + (size_t)h * hd, hd);
    if (L->q_norm) m->kern->rmsnorm(qh, qh, L->q_norm, hd, c->norm_eps);
}

/* x[t] += y[i] for rows i of a product, t = outer[inner[i]] (either map
 * absent: the identity), token by token on the pool */
typedef struct {
    const doze_kernels *k;
    float *x;
    const float *y;
    const int *outer, *inner;
    int dim;
} add_rows_job;

static void add_row(void *args, int i) {
    const add_rows_job *a = args;
    int t = a->inner ? a->inner[i] : i;
    if (a->outer) t = a->outer[t];
    a->k->add(a->x + (size_t)t * a->dim, a->y + (size_t)i * a->dim, a->dim);
}

static void add_rows(const doze_model *m, float *x, const float *y, const int *outer, const int *inner, int rows,
                     int dim) {
    add_rows_job a = {m->kern, x, y, outer, inner, dim};
    model_for_tokens(m, rows, 2 * dim, add_row, &a);
}

/* h[i] = swiglu(h[i], g[i]) for rows i of width w, on the pool */
typedef struct {
    const doze_kernels *k;
    float *h;
    const float *up;
    int w;
} swiglu_rows_job;

static void swiglu_row(void *args, int i) {
    const swiglu_rows_job *a = args;
    a->k->swiglu(a->h + (size_t)i * a->w, a->h + (size_t)i * a->w, a->up + (size_t)i * a->w, a->w);
}

static void swiglu_rows(const doze_model *m, float *h, const float *up, int rows, int w) {
    swiglu_rows_job a = {m->kern, h, up, w};
    model_for_tokens(m, rows, 3 * w, swiglu_row, &a);
}

/* The parallel pieces of the attention. Decode splits the query heads
 * (each head's Q slice is its own rows), the KV groups (each head's
 * attention is its own), and the rows of the output projection (each part
 * adds every running head, in head order, to its rows of x); the prefill
 * splits its running tokens. Every output element is computed as the serial
 * loop computes it. */
typedef struct {
    const doze_model *m;
    int l;
    const kv_cache *kv;
    int pos;
    int group;
    const uint8_t *head_on; /* decode */
    layer_scratch *s;
    float *x;
    const batch_masks *mk;  /* prefill */
    doze_step_trace *trace;
    int n_rows;             /* prefill: the running tokens */
} head_job;

/* head h's attention output prepared inside s->xq (a head's hd values are
 * whole q8_0 blocks wherever wo_head is quantized) */
static void *head_xq(layer_scratch *s, int h, int hd) {
    return (uint8_t *)s->xq + (size_t)h * model_input_bytes(hd);
}

static float *att_slice(const layer_scratch *s, int part, int n_heads, int ctx) {
    const size_t heads = (size_t)(n_heads < DOZE_ATT_HEADS ? n_heads : DOZE_ATT_HEADS);
    return s->att + (size_t)part * heads * (size_t)ctx;
}

/* decode: items [ib, ie) of the token's projections, one item per head's
 * hd rows: the KV heads' keys (items 0 .. n_kv), their values (n_kv ..
 * 2 n_kv), then the query heads, each running one finished and roped (the
 * keys are finished after the job). One job for the three products, whose
 * items cost the same, instead of three each waited for. */
static void qkv_heads_part(void *args, int ib, int ie, int part) {
    (void)part;
    const head_job *j = args;
    const doze_model *m = j->m;
    const doze_model_info *c = &m->info;
    const doze_layer *L = &m->layers[j->l];
    const int hd = c->head_dim, half = c->rope_dim / 2, n_kv = c->n_kv_heads, kv_dim = n_kv * hd;
    const float *cos_t = m->rope_cos + (size_t)j->pos * half, *sin_t = m->rope_sin + (size_t)j->pos * half;
    const size_t here = ((size_t)j->l * (size_t)j->kv->ctx + (size_t)j->pos) * (size_t)kv_dim;
    for (int i = ib; i < ie; i++) {
        if (i < 2 * n_kv) {
            const int g = i % n_kv;
            const doze_matrix *w = i < n_kv ? &L->wk : &L->wv;
            float *out = (i < n_kv ? j->kv->key : j->kv->value) + here + (size_t)g * hd;
            doze_matrix w_g = model_rows(w, g * hd, hd); /* (hd, dim) */
            model_matvec_prepared(m, out, &w_g, j->s->xn, j->s->xq);
            continue;
        }
        const int h = i - 2 * n_kv;
        if (!j->head_on[h]) continue;
        float *qh = j->s->q + (size_t)h * hd; /* q(hd) of head h */
        doze_matrix wq_h = model_rows(&L->wq, h * hd, hd); /* (hd, dim) */
        model_matvec_prepared(m, qh, &wq_h, j->s->xn, j->s->xq);
        finish_q(m, L, h, qh);
        m->kern->rope(qh, 1, hd, c->rope_dim, cos_t, sin_t);
    }
}

/* decode: the running heads of KV groups [gb, ge) over the cache */
static void attention_part(void *args, int gb, int ge, int part) {
    const head_job *j = args;
    const doze_model_info *c = &j->m->info;
    const int hd = c->head_dim, kv_dim = c->n_kv_heads * hd, h0 = gb * j->group;
    const size_t cell = (size_t)j->l * (size_t)j->kv->ctx;
    const float *kc = j->kv->key + cell * (size_t)kv_dim, *vc = j->kv->value + cell * (size_t)kv_dim;
    const int n_heads = (ge - gb) * j->group;
    j->m->kern->attention_heads(j->s->att_out + (size_t)h0 * hd, j->s->q + (size_t)h0 * hd, kc + (size_t)gb * hd,
                                vc + (size_t)gb * hd, n_heads, j->group, j->pos + 1, hd, kv_dim,
                                j->kv->valid + cell, j->head_on + h0, att_slice(j->s, part, c->n_heads, j->kv->ctx));
}

/* decode: x[b, e) += Wo_h[b, e) att_h over the running heads, in head order */
static void wo_rows_part(void *args, int b, int e, int part) {
    (void)part;
    const head_job *j = args;
    const doze_model *m = j->m;
    const int hd = m->info.head_dim, nh = m->info.n_heads;
    const doze_layer *L = &m->layers[j->l];
    for (int h = 0; h < nh; h++) {
        if (!j->head_on[h]) continue;
        doze_matrix v = model_rows(&L->wo_head[h], b, e - b);
        model_matvec_prepared(m, j->s->y + b, &v, j->s->att_out + (size_t)h * hd, head_xq(j->s, h, hd));
        m->kern->add(j->x + b, j->s->y + b, e - b);
    }
}

/* running token r's new K/V rows in the cache made what attention reads:
 * biases, k norms, RoPE on the keys */
static void finish_kv_row(void *args, int r) {
    const head_job *j = args;
    const doze_model *m = j->m;
    const doze_model_info *c = &m->info;
    const int hd = c->head_dim, kv_dim = c->n_kv_heads * hd, half = c->rope_dim / 2, p = j->pos + j->s->run[r];
    const size_t cell = (size_t)j->l * (size_t)j->kv->ctx;
    const size_t at = (cell + (size_t)p) * (size_t)kv_dim;
    float *kr = j->kv->key + at, *vr = j->kv->value + at;
    finish_kv(m, &m->layers[j->l], kr, vr);
    m->kern->rope(kr, c->n_kv_heads, hd, c->rope_dim, m->rope_cos + (size_t)p * half, m->rope_sin + (size_t)p * half);
}

/* The running token a prefill attention item stands for: the first, the
 * last, the second, the one before last... Token r attends over pos + r + 1
 * positions, so any run of consecutive items costs about the same as any
 * other of its length, and equal parts of items are equal work (in token
 * order the last part would hold the longest rows). */
static int zigzag_row(int item, int n_rows) { return item % 2 ? n_rows - 1 - item / 2 : item / 2; }

/* prefill: the running tokens of items [ib, ie): their queries finished and
 * roped, their attention over the cache (causal: token t sees the positions
 * up to its own) */
static void token_attention_part(void *args, int ib, int ie, int part) {
    const head_job *j = args;
    const doze_model *m = j->m;
    const doze_model_info *c = &m->info;
    const doze_layer *L = &m->layers[j->l];
    const int hd = c->head_dim, nh = c->n_heads, nl = c->n_layers, half = c->rope_dim / 2;
    const int kv_dim = c->n_kv_heads * hd, q_dim = nh * hd;
    const size_t cell = (size_t)j->l * (size_t)j->kv->ctx;
    const float *kc = j->kv->key + cell * (size_t)kv_dim, *vc = j->kv->value + cell * (size_t)kv_dim;
    for (int i = ib; i < ie; i++) {
        const int r = zigzag_row(i, j->n_rows), t = j->s->run[r], p = j->pos + t;
        const uint8_t *head_on = j->mk->head_on + ((size_t)t * nl + j->l) * nh;
        for (int h = 0; h < nh; h++)
            if (head_on[h]) {
                float *qh = j->s->q + (size_t)r * q_dim + (size_t)h * hd;
                finish_q(m, L, h, qh);
                m->kern->rope(qh, 1, hd, c->rope_dim, m->rope_cos + (size_t)p * half, m->rope_sin + (size_t)p * half);
            }
        m->kern->attention_heads(j->s->att_out + (size_t)r * q_dim, j->s->q + (size_t)r * q_dim, kc, vc, nh, j->group,
                                 p + 1, hd, kv_dim, j->kv->valid + cell, head_on, att_slice(j->s, part, nh, j->kv->ctx));
    }
}

/* The attention of a batch's running tokens (s->run[0..nr)), in place on
 * their streams: K/V into the cache, Q per running head, attention over the
 * cache, the output projection head by head. s->xn holds the normed inputs
 * (indexed by batch position). */
static void attention(const doze_model *m, int l, const kv_cache *kv, int pos, int n, int nr, float *x,
                      const batch_masks *mk, layer_scratch *s, doze_step_trace *trace) {
    const doze_model_info *c = &m->info;
    const doze_kernels *k = m->kern;
    const doze_layer *L = &m->layers[l];
    const int dim = c->dim, hd = c->head_dim, nh = c->n_heads, nl = c->n_layers;
    const int kv_dim = c->n_kv_heads * hd, q_dim = nh * hd;
    const int group = nh / c->n_kv_heads; /* query heads per KV head */
    const int half = c->rope_dim / 2;
    const size_t cell = (size_t)l * (size_t)kv->ctx;
    float *kc = kv->key + cell * (size_t)kv_dim;   /* (ctx, kv_dim) */
    float *vc = kv->value + cell * (size_t)kv_dim; /* (ctx, kv_dim) */
#define HEAD_ON(t) (mk->head_on + ((size_t)(t) * nl + l) * nh)

    if (n == 1) {
        /* decode: the normed input quantized once for K, V and every Q head */
        const float *cos_t = m->rope_cos + (size_t)pos * half, *sin_t = m->rope_sin + (size_t)pos * half;
        const uint8_t *head_on = HEAD_ON(0);
        float *k_here = kc + (size_t)pos * kv_dim, *v_here = vc + (size_t)pos * kv_dim;
        const doze_matrix *qkv[3] = {&L->wq, &L->wk, &L->wv};
        model_prepare_input(m, qkv, 3, s->xn, s->xq);
        head_job j = {m, l, kv, pos, group, head_on, s, x, NULL, trace, 1};
        const int per_head = hd * dim; /* multiply-adds of a head's K, V or Q slice */
        /* k(n_kv_heads, hd), v(n_kv_heads, hd) into the cache, q(nh, hd) */
        pool_run(m->pool, qkv_heads_part, &j, 2 * c->n_kv_heads + nh, 1,
                 (MODEL_MIN_PART_MACS + per_head - 1) / per_head, 0);
        finish_kv(m, L, k_here, v_here);
        k->rope(k_here, c->n_kv_heads, hd, c->rope_dim, cos_t, sin_t);
        /* every running head at once, its KV groups split among the parts */
        pool_run(m->pool, attention_part, &j, c->n_kv_heads, 1, 1, s->att_parts);
        if (trace) {
            for (int h = 0; h < nh; h++) {
                if (!head_on[h]) {
                    trace->head_norm[(size_t)l * nh + h] = 0.0f;
                    continue;
                }
                model_matvec(m, s->y, &L->wo_head[h], s->att_out + (size_t)h * hd, s->xq); /* (dim) */
                trace->head_norm[(size_t)l * nh + h] = norm_of(s->y, dim);
                k->add(x, s->y, dim);
            }
            return;
        }
        /* the output projection: each head's input prepared, then the rows of
         * x split among the parts, each adding the heads in head order */
        for (int h = 0; h < nh; h++)
            if (head_on[h]) {
                const doze_matrix *wo = &L->wo_head[h];
                model_prepare_input(m, &wo, 1, s->att_out + (size_t)h * hd, head_xq(s, h, hd));
            }
        pool_run(m->pool, wo_rows_part, &j, dim, MODEL_ROW_ALIGN, model_min_part_rows(q_dim), 0);
        return;
    }

    /* K, V of the running tokens, straight into the cache when all run */
    if (nr == n) {
        model_matmul(m, kc + (size_t)pos * kv_dim, kv_dim, &L->wk, s->xn, dim, n, s->mm);
        model_matmul(m, vc + (size_t)pos * kv_dim, kv_dim, &L->wv, s->xn, dim, n, s->mm);
    } else {
        const doze_matrix *kvw[2] = {&L->wk, &L->wv};
        float *dst[2] = {kc, vc};
        for (int w = 0; w < 2; w++) {
            product(m, s->y, kv_dim, kvw[w], s->xn, dim, s->run, nr, n, s); /* (nr, kv_dim) */
            for (int r = 0; r < nr; r++)
                memcpy(dst[w] + (size_t)(pos + s->run[r]) * kv_dim, s->y + (size_t)r * kv_dim,
                       (size_t)kv_dim * sizeof(float));
        }
    }
    head_job kj = {m, l, kv, pos, group, NULL, s, x, mk, NULL, nr};
    model_for_tokens(m, nr, 2 * kv_dim, finish_kv_row, &kj);
    /* Q(nr, q_dim): one product when every running token runs every head,
     * else head by head over the tokens running it */
    int all_heads = 1;
    for (int r = 0; r < nr && all_heads; r++)
        for (int h = 0; h < nh; h++) all_heads &= HEAD_ON(s->run[r])[h] != 0;
    if (all_heads) {
        product(m, s->q, q_dim, &L->wq, s->xn, dim, s->run, nr, n, s);
    } else {
        for (int h = 0; h < nh; h++) {
            int ns = 0;
            for (int r = 0; r < nr; r++)
                if (HEAD_ON(s->run[r])[h]) s->sel[ns++] = s->run[r];
            if (!ns) continue;
            doze_matrix wq_h = model_rows(&L->wq, h * hd, hd);
            product(m, s->y, hd, &wq_h, s->xn, dim, s->sel, ns, n, s); /* (ns, hd) */
            for (int i = 0, r = 0; i < ns; i++) {
                while (s->run[r] != s->sel[i]) r++;
                memcpy(s->q + (size_t)r * q_dim + (size_t)h * hd, s->y + (size_t)i * hd, (size_t)hd * sizeof(float));
            }
        }
    }
    /* each running token's attention, the tokens split among the parts */
    head_job j = {m, l, kv, pos, group, NULL, s, x, mk, NULL, nr};
    pool_run(m->pool, token_attention_part, &j, nr, 1, 1, s->att_parts);
    /* output projection head by head: x_t += Wo_h att_t,h, heads in order */
    for (int h = 0; h < nh; h++) {
        int ns = 0;
        for (int r = 0; r < nr; r++)
            if (HEAD_ON(s->run[r])[h]) s->sel[ns++] = r; /* running indices */
        if (!ns) continue;
        product(m, s->y, dim, &L->wo_head[h], s->att_out + (size_t)h * hd, q_dim, s->sel, ns, nr, s);
        add_rows(m, x, s->y, s->run, s->sel, ns, dim);
    }
#undef HEAD_ON
}

/* The FFN of the running tokens over their running blocks, in place on
 * their streams: x += sum_j down_j(silu(gate_j hn) * up_j hn). s->xn holds
 * hn = rmsnorm(x, ffn_norm) (by batch position). */
static void ffn(const doze_model *m, int l, int n, int nr, float *x, const batch_masks *mk, layer_scratch *s,
                doze_step_trace *trace) {
    const doze_model_info *c = &m->info;
    const doze_layer *L = &m->layers[l];
    const int dim = c->dim, hid = c->hidden_dim, nl = c->n_layers, nb = m->n_ffn_blocks, fb = c->ffn_block;
#define BLK_ON(t) (mk->ffn_on + ((size_t)(t) * nl + l) * nb)

    if (n == 1) {
        model_ffn(m, l, x, BLK_ON(0), s->xn, s->h1, s->h2, s->y, s->xq,
                  trace && trace->block_norm ? trace->block_norm + (size_t)l * nb : NULL);
        return;
    }
    int all_blocks = 1;
    for (int r = 0; r < nr && all_blocks; r++)
        for (int j = 0; j < nb; j++) all_blocks &= BLK_ON(s->run[r])[j] != 0;
    if (all_blocks) {
        /* gate and up as whole products, then down block by block */
        product(m, s->h1, hid, &L->w_gate, s->xn, dim, s->run, nr, n, s);
        product(m, s->h2, hid, &L->w_up, s->xn, dim, s->run, nr, n, s);
        swiglu_rows(m, s->h1, s->h2, nr, hid);
        for (int j = 0; j < nb; j++) {
            model_matmul(m, s->y, dim, &L->w_down_blk[j], s->h1 + (size_t)j * fb, hid, nr, s->mm);
            add_rows(m, x, s->y, s->run, NULL, nr, dim);
        }
        return;
    }
    /* block by block over the tokens running it (x gets the blocks in order) */
    for (int j = 0; j < nb; j++) {
        int ns = 0;
        for (int r = 0; r < nr; r++)
            if (BLK_ON(s->run[r])[j]) s->sel[ns++] = s->run[r];
        if (!ns) continue;
        const int w = ffn_block_width(hid, fb, j);
        doze_matrix wg = model_rows(&L->w_gate, j * fb, w), wu = model_rows(&L->w_up, j * fb, w);
        product(m, s->h1, w, &wg, s->xn, dim, s->sel, ns, n, s); /* (ns, w) */
        product(m, s->h2, w, &wu, s->xn, dim, s->sel, ns, n, s);
        swiglu_rows(m, s->h1, s->h2, ns, w);
        model_matmul(m, s->y, dim, &L->w_down_blk[j], s->h1, w, ns, s->mm); /* (ns, dim) */
        add_rows(m, x, s->y, NULL, s->sel, ns, dim);
    }
#undef BLK_ON
}

void layer_forward(const doze_model *m, int l, const kv_cache *kv, int pos, int n, float *x, batch_masks *mk,
                   const layer_decider *d, layer_scratch *s, doze_step_trace *trace) {
    const doze_model_info *c = &m->info;
    const doze_kernels *k = m->kern;
    const doze_layer *L = &m->layers[l];
    const int dim = c->dim, nh = c->n_heads, nl = c->n_layers, nb = m->n_ffn_blocks;
    uint8_t *valid = kv->valid + (size_t)l * (size_t)kv->ctx;

    /* the attention's normed input, who runs (the router reads xn) */
    int nr = 0;
    for (int t = 0; t < n; t++) {
        float *xt = x + (size_t)t * dim, *xn = s->xn + (size_t)t * dim;
        uint8_t *layer_on = mk->layer_on + (size_t)t * nl + l;
        uint8_t *head_on = mk->head_on + ((size_t)t * nl + l) * nh;
        uint8_t *blk_on = mk->ffn_on + ((size_t)t * nl + l) * nb;
        k->rmsnorm(xn, xt, L->attn_norm, dim, c->norm_eps);
        if (trace) {
            memcpy(trace->x_in + (size_t)l * dim, xt, (size_t)dim * sizeof(float));
            memcpy(trace->xn + (size_t)l * dim, xn, (size_t)dim * sizeof(float));
            trace->in_norm[l] = norm_of(xt, dim);
            memcpy(s->x_in, xt, (size_t)dim * sizeof(float));
        }
        *layer_on = d ? (uint8_t)(d->layer(d->ctx, l, t, xn, head_on) != 0) : (uint8_t)(*layer_on != 0);
        valid[pos + t] = *layer_on;
        if (*layer_on) {
            s->run[nr++] = t;
            continue;
        }
        memset(head_on, 0, (size_t)nh); /* adds nothing, writes no K/V */
        memset(blk_on, 0, (size_t)nb);
        if (c->n_experts)
            memset(mk->expert_on + ((size_t)t * nl + l) * (size_t)c->n_experts, 0, (size_t)c->n_experts);
        if (trace) {
            trace->update_norm[l] = 0.0f;
            memset(trace->head_norm + (size_t)l * nh, 0, (size_t)nh * sizeof(float));
            if (trace->block_norm) memset(trace->block_norm + (size_t)l * nb, 0, (size_t)nb * sizeof(float));
            if (trace->ffn_norm) trace->ffn_norm[l] = 0.0f;
            const size_t E = (size_t)c->n_experts;
            if (trace->expert_probs && E) memset(trace->expert_probs + (size_t)l * E, 0, E * sizeof(float));
            if (trace->expert_drop && E) memset(trace->expert_drop + (size_t)l * E, 0, E * sizeof(float));
        }
    }
    if (!nr) return;
    attention(m, l, kv, pos, n, nr, x, mk, s, trace);

    /* the FFN's normed input, its blocks (the block routers read hn) */
    for (int r = 0; r < nr; r++) {
        const int t = s->run[r];
        float *hn = s->xn + (size_t)t * dim;
        k->rmsnorm(hn, x + (size_t)t * dim, L->ffn_norm, dim, c->norm_eps);
        if (trace && trace->hn) memcpy(trace->hn + (size_t)l * dim, hn, (size_t)dim * sizeof(float));
        if (d) d->ffn(d->ctx, l, t, hn, mk->ffn_on + ((size_t)t * nl + l) * nb);
    }
    if (trace && trace->ffn_norm) memcpy(s->x_ffn, x, (size_t)dim * sizeof(float));
    if (c->n_experts) {
        /* the experts of the tokens whose FFN runs (its one block) */
        const size_t E = (size_t)c->n_experts, stride = (size_t)nl * E;
        uint8_t *on = mk->expert_on + (size_t)l * E;
        int ns = 0;
        for (int r = 0; r < nr; r++) {
            const int t = s->run[r];
            if (mk->ffn_on[(size_t)t * nl + l]) s->sel[ns++] = t;
            else memset(on + (size_t)t * stride, 0, E);
        }
        moe_trace mt = {NULL, NULL, NULL};
        if (trace) {
            mt.block_norm = trace->block_norm ? trace->block_norm + l : NULL;
            mt.probs = trace->expert_probs ? trace->expert_probs + (size_t)l * E : NULL;
            mt.drop = trace->expert_drop ? trace->expert_drop + (size_t)l * E : NULL;
            if (mt.block_norm) *mt.block_norm = 0.0f;
            if (mt.probs) memset(mt.probs, 0, E * sizeof(float));
            if (mt.drop) memset(mt.drop, 0, E * sizeof(float));
        }
        const moe_decider md = {d ? d->ctx : NULL, d ? d->experts : NULL};
        moe_ffn(m, l, ns, s->sel, x, s->xn, on, stride, mk->experts_forced, d && d->experts ? &md : NULL, &s->moe,
                trace ? &mt : NULL);
    } else {
        ffn(m, l, n, nr, x, mk, s, trace);
    }
    if (trace) {
        if (trace->ffn_norm) trace->ffn_norm[l] = dist_of(x, s->x_ffn, dim);
        trace->update_norm[l] = dist_of(x, s->x_in, dim);
    }
}
