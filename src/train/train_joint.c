/* Joint training's weights (see train_joint.h). */
#include "train_joint.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adamw.h"
#include "arch.h"
#include "error.h"
#include "gguf.h"
#include "model.h"

/* tensors of a layer, in file order; a mixture's JL_GATE, JL_DOWN, JL_UP
 * are the expert stacks (ffn_*_exps) and JL_ROUTER its router
 * (ffn_gate_inp), which a dense layer lacks */
enum { JL_ATTN_NORM, JL_Q, JL_K, JL_V, JL_O, JL_FFN_NORM, JL_GATE, JL_DOWN, JL_UP, JL_ROUTER,
       JL_BQ, JL_BK, JL_BV, JL_QN, JL_KN, /* qwen2's biases, qwen3's q/k norms: -1 where absent */
       JL_COUNT };

typedef struct {
    char name[48];
    size_t off;    /* floats into params */
    size_t toff;   /* its transposed copy (matrices), floats into wt */
    int rows, cols; /* GGUF: ne[0] = cols, ne[1] = rows (1 for vectors) */
    int planes;    /* ne[2]: a mixture's expert stacks hold E (rows, cols) matrices, each
                      transposed on its own; 1 otherwise */
    int decay;
    int lora;      /* a projection with a low-rank adapter (joint_lora_init) */
    size_t a_off, b_off; /* its A (rank, cols) and B (rows, rank), floats into lp */
    size_t w0_off; /* its frozen base weights, floats into w0 */
} joint_tensor;

struct joint_weights {
    int L, tied;
    int neox, hd, rope_dim; /* NeoX RoPE: q/k rows were loaded in adjacent pairs; written back */
    int E, F, D; /* a mixture: experts per layer (0: dense FFN), each expert's width, dim */
    joint_tensor *tensors;
    int n_tensors;
    int *lt;      /* (L, JL_COUNT) each layer's tensors' indices (-1: absent) */
    int out_norm, cls; /* the output norm's and the classifier's indices (cls 0: tied) */
    size_t n_params, n_wt;
    float *params, *grads, *m, *v, *wt;
    /* low-rank adapters (rank > 0): W = W0 + B A on every projection, only
     * A and B learn; params holds the merged W the block reads */
    int rank;
    size_t n_lora, n_w0;
    float *w0, *lp, *lg, *lm, *lv;
    float *anchor; /* (n_params) the weights the run started from (NULL: no anchor) */
    float *ema;    /* (n_params) the running average of the weights (NULL: none) */
};

/* the layer vectors only some architectures have, JL_BQ .. JL_KN in order */
enum { OPT_VECTORS = JL_COUNT - JL_BQ };
static const char *const opt_vector_names[OPT_VECTORS] = {"attn_q.bias", "attn_k.bias", "attn_v.bias",
                                                          "attn_q_norm.weight", "attn_k_norm.weight"};
static void layer_vectors(const doze_layer *ly, const float **vec) {
    vec[0] = ly->bq, vec[1] = ly->bk, vec[2] = ly->bv, vec[3] = ly->q_norm, vec[4] = ly->k_norm;
}

static int LT_(const joint_weights *j, int l, int k) { return j->lt[l * JL_COUNT + k]; }
#define LT(l, k) LT_(j, l, k)
static int out_norm_index(const joint_weights *j) { return j->out_norm; }
static int cls_index(const joint_weights *j) { return j->cls; }
static size_t tensor_size(const joint_tensor *x) { return (size_t)x->planes * (size_t)x->rows * (size_t)x->cols; }
static float *P_(const joint_weights *j, int i) { return j->params + j->tensors[i].off; }
static float *G_(const joint_weights *j, int i) { return j->grads + j->tensors[i].off; }
static float *WT_(const joint_weights *j, int i) { return j->wt + j->tensors[i].toff; }

void joint_weights_free(joint_weights *j) {
    if (!j) return;
    free(j->tensors);
    free(j->lt);
    free(j->params);
    free(j->grads);
    free(j->m);
    free(j->v);
    free(j->wt);
    free(j->w0);
    free(j->lp);
    free(j->lg);
    free(j->lm);
    free(j->lv);
    free(j->anchor);
    free(j->ema);
    free(j);
}

/* planes (rows, cols) matrices (planes 1: one matrix or a vector); returns its index */
static int add_tensor3(joint_weights *j, const char *name, int rows, int cols, int planes, int decay) {
    const int i = j->n_tensors++;
    joint_tensor *x = &j->tensors[i];
    snprintf(x->name, sizeof x->name, "%s", name);
    x->rows = rows;
    x->cols = cols;
    x->planes = planes;
    x->decay = decay;
    x->off = j->n_params;
    j->n_params += tensor_size(x);
    x->toff = j->n_wt;
    if (rows > 1) j->n_wt += tensor_size(x);
    return i;
}

static int add_tensor(joint_weights *j, const char *name, int rows, int cols, int decay) {
    return add_tensor3(j, name, rows, cols, 1, decay);
}

/* wt(cols, rows) = w(rows, cols)^T */
static void transpose(float *wt, const float *w, int rows, int cols) {
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) wt[(size_t)c * rows + r] = w[(size_t)r * cols + c];
}

void joint_params_changed(joint_weights *j) {
    for (int i = 0; i < j->n_tensors; i++) {
        const joint_tensor *x = &j->tensors[i];
        const size_t rc = (size_t)x->rows * (size_t)x->cols;
        for (int p = 0; p < x->planes && x->rows > 1; p++) /* a stack: each expert's matrix */
            transpose(j->wt + x->toff + p * rc, j->params + x->off + p * rc, x->rows, x->cols);
    }
}

/* dst(rows, cols) with row stride ld from a model matrix */
static void widen_ld(float *dst, int ld, const doze_matrix *w) {
    for (int r = 0; r < w->rows; r++) model_dequantize_row(w, r, dst + (size_t)r * ld);
}

doze_status joint_weights_new(const doze_model *m, joint_weights **out, doze_error *err) {
    *out = NULL;
    const doze_model_info *c = &m->info;
    const int D = c->dim, F = c->hidden_dim, hd = c->head_dim, Q = c->n_heads * hd;
    const int KVD = c->n_kv_heads * hd, V = c->vocab_size;
    joint_weights *j = calloc(1, sizeof *j);
    if (!j) return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for joint training");
    j->L = c->n_layers;
    j->tied = c->tied_output;
    j->neox = c->rope_neox;
    j->hd = hd;
    j->rope_dim = c->rope_dim;
    j->E = c->n_experts;
    j->F = F;
    j->D = D;
    const int E = j->E;
    j->tensors = calloc((size_t)(3 + j->L * JL_COUNT), sizeof *j->tensors);
    j->lt = malloc((size_t)j->L * JL_COUNT * sizeof *j->lt);
    if (!j->tensors || !j->lt) {
        joint_weights_free(j);
        return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for joint training");
    }
    char nm[48];
    add_tensor(j, "token_embd.weight", V, D, 1);
    for (int l = 0; l < j->L; l++) {
        int *lt = j->lt + (size_t)l * JL_COUNT;
        snprintf(nm, sizeof nm, "blk.%d.attn_norm.weight", l);   lt[JL_ATTN_NORM] = add_tensor(j, nm, 1, D, 0);
        snprintf(nm, sizeof nm, "blk.%d.attn_q.weight", l);      lt[JL_Q] = add_tensor(j, nm, Q, D, 1);
        snprintf(nm, sizeof nm, "blk.%d.attn_k.weight", l);      lt[JL_K] = add_tensor(j, nm, KVD, D, 1);
        snprintf(nm, sizeof nm, "blk.%d.attn_v.weight", l);      lt[JL_V] = add_tensor(j, nm, KVD, D, 1);
        snprintf(nm, sizeof nm, "blk.%d.attn_output.weight", l); lt[JL_O] = add_tensor(j, nm, D, Q, 1);
        snprintf(nm, sizeof nm, "blk.%d.ffn_norm.weight", l);    lt[JL_FFN_NORM] = add_tensor(j, nm, 1, D, 0);
        const float *vec[OPT_VECTORS];
        layer_vectors(&m->layers[l], vec);
        const int len[OPT_VECTORS] = {Q, KVD, KVD, hd, hd};
        for (int k = 0; k < OPT_VECTORS; k++) {
            snprintf(nm, sizeof nm, "blk.%d.%s", l, opt_vector_names[k]);
            lt[JL_BQ + k] = vec[k] ? add_tensor(j, nm, 1, len[k], 0) : -1;
        }
        if (E) { /* llama.cpp's names: stacks ne {cols, rows, E}, the router (E, D) */
            snprintf(nm, sizeof nm, "blk.%d.ffn_gate_exps.weight", l); lt[JL_GATE] = add_tensor3(j, nm, F, D, E, 1);
            snprintf(nm, sizeof nm, "blk.%d.ffn_down_exps.weight", l); lt[JL_DOWN] = add_tensor3(j, nm, D, F, E, 1);
            snprintf(nm, sizeof nm, "blk.%d.ffn_up_exps.weight", l);   lt[JL_UP] = add_tensor3(j, nm, F, D, E, 1);
            snprintf(nm, sizeof nm, "blk.%d.ffn_gate_inp.weight", l);  lt[JL_ROUTER] = add_tensor(j, nm, E, D, 1);
            continue;
        }
        snprintf(nm, sizeof nm, "blk.%d.ffn_gate.weight", l);    lt[JL_GATE] = add_tensor(j, nm, F, D, 1);
        snprintf(nm, sizeof nm, "blk.%d.ffn_down.weight", l);    lt[JL_DOWN] = add_tensor(j, nm, D, F, 1);
        snprintf(nm, sizeof nm, "blk.%d.ffn_up.weight", l);      lt[JL_UP] = add_tensor(j, nm, F, D, 1);
        lt[JL_ROUTER] = -1;
    }
    j->out_norm = add_tensor(j, "output_norm.weight", 1, D, 0);
    j->cls = j->tied ? 0 : add_tensor(j, "output.weight", V, D, 1);
    /* sizes in double first: size_t is 32 bits in wasm */
    if (((double)j->n_params * 4 + (double)j->n_wt) * sizeof(float) > (double)SIZE_MAX / 2) {
        joint_weights_free(j);
        return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "this model is too large to train here");
    }
    j->params = calloc(j->n_params, sizeof(float));
    j->grads = calloc(j->n_params, sizeof(float));
    j->m = calloc(j->n_params, sizeof(float));
    j->v = calloc(j->n_params, sizeof(float));
    j->wt = calloc(j->n_wt ? j->n_wt : 1, sizeof(float));
    if (!j->params || !j->grads || !j->m || !j->v || !j->wt) {
        size_t bytes = (4 * j->n_params + j->n_wt) * sizeof(float);
        joint_weights_free(j);
        return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for joint training (%zu bytes)", bytes);
    }
    widen_ld(P_(j, 0), D, &m->token_embd);
    for (int l = 0; l < j->L; l++) {
        const doze_layer *ly = &m->layers[l];
        memcpy(P_(j, LT(l, JL_ATTN_NORM)), ly->attn_norm, (size_t)D * sizeof(float));
        memcpy(P_(j, LT(l, JL_FFN_NORM)), ly->ffn_norm, (size_t)D * sizeof(float));
        const float *vec[OPT_VECTORS];
        layer_vectors(ly, vec);
        for (int k = 0; k < OPT_VECTORS; k++)
            if (vec[k]) memcpy(P_(j, LT(l, JL_BQ + k)), vec[k], (size_t)j->tensors[LT(l, JL_BQ + k)].cols * sizeof(float));
        widen_ld(P_(j, LT(l, JL_Q)), D, &ly->wq);
        widen_ld(P_(j, LT(l, JL_K)), D, &ly->wk);
        widen_ld(P_(j, LT(l, JL_V)), D, &ly->wv);
        for (int h = 0; h < c->n_heads; h++) /* Wo(D, Q) from its heads' column blocks */
            widen_ld(P_(j, LT(l, JL_O)) + (size_t)h * hd, Q, &ly->wo_head[h]);
        /* a mixture's stacks: expert e's rows are contiguous, as in the file */
        widen_ld(P_(j, LT(l, JL_GATE)), D, &ly->w_gate);
        widen_ld(P_(j, LT(l, JL_UP)), D, &ly->w_up);
        if (E) {
            widen_ld(P_(j, LT(l, JL_DOWN)), F, &ly->w_down);
            widen_ld(P_(j, LT(l, JL_ROUTER)), D, &ly->w_router);
            continue;
        }
        for (int b = 0; b < m->n_ffn_blocks; b++) /* W2(D, F) from its column blocks */
            widen_ld(P_(j, LT(l, JL_DOWN)) + (size_t)b * c->ffn_block, F, &ly->w_down_blk[b]);
    }
    memcpy(P_(j, out_norm_index(j)), m->output_norm, (size_t)D * sizeof(float));
    if (!j->tied) widen_ld(P_(j, cls_index(j)), D, &m->output);
    joint_params_changed(j);
    *out = j;
    return DOZE_OK;
}

/* a mixture's layer has no dense FFN: its block weights' w1, w2, w3 are NULL
 * (the block runs the trainer's FFN hook on joint_moe's weights instead) */
static const float *dense_ffn(const joint_weights *j, const float *p) { return j->E ? NULL : p; }

/* layer l's tensor k (params or grads), NULL where the model has none */
static float *optional(const joint_weights *j, int l, int k, float *(*at)(const joint_weights *, int)) {
    return LT(l, k) < 0 ? NULL : at(j, LT(l, k));
}

block_weights joint_block(const joint_weights *j, int l) {
    block_weights w;
    w.attn_norm = P_(j, LT(l, JL_ATTN_NORM));
    w.ffn_norm = P_(j, LT(l, JL_FFN_NORM));
    w.wq = P_(j, LT(l, JL_Q));
    w.wk = P_(j, LT(l, JL_K));
    w.wv = P_(j, LT(l, JL_V));
    w.wo = P_(j, LT(l, JL_O));
    w.w1 = dense_ffn(j, P_(j, LT(l, JL_GATE)));
    w.w2 = dense_ffn(j, P_(j, LT(l, JL_DOWN)));
    w.w3 = dense_ffn(j, P_(j, LT(l, JL_UP)));
    w.tq = WT_(j, LT(l, JL_Q));
    w.tk = WT_(j, LT(l, JL_K));
    w.tv = WT_(j, LT(l, JL_V));
    w.to = WT_(j, LT(l, JL_O));
    w.t1 = dense_ffn(j, WT_(j, LT(l, JL_GATE)));
    w.t2 = dense_ffn(j, WT_(j, LT(l, JL_DOWN)));
    w.t3 = dense_ffn(j, WT_(j, LT(l, JL_UP)));
    w.bq = optional(j, l, JL_BQ, P_);
    w.bk = optional(j, l, JL_BK, P_);
    w.bv = optional(j, l, JL_BV, P_);
    w.q_norm = optional(j, l, JL_QN, P_);
    w.k_norm = optional(j, l, JL_KN, P_);
    return w;
}

int joint_experts(const joint_weights *j) { return j->E; }

tmoe_weights joint_moe(const joint_weights *j, int l) {
    tmoe_weights w;
    w.router = P_(j, LT(l, JL_ROUTER));
    w.gate = P_(j, LT(l, JL_GATE));
    w.up = P_(j, LT(l, JL_UP));
    w.down = P_(j, LT(l, JL_DOWN));
    w.t_router = WT_(j, LT(l, JL_ROUTER));
    w.t_gate = WT_(j, LT(l, JL_GATE));
    w.t_up = WT_(j, LT(l, JL_UP));
    w.t_down = WT_(j, LT(l, JL_DOWN));
    return w;
}

tmoe_grads joint_moe_grads(joint_weights *j, int l) {
    tmoe_grads g = {G_(j, LT(l, JL_ROUTER)), G_(j, LT(l, JL_GATE)), G_(j, LT(l, JL_UP)), G_(j, LT(l, JL_DOWN))};
    return g;
}

block_weight_grads joint_block_grads(joint_weights *j, int l) {
    block_weight_grads g;
    g.attn_norm = G_(j, LT(l, JL_ATTN_NORM));
    g.ffn_norm = G_(j, LT(l, JL_FFN_NORM));
    g.wq = G_(j, LT(l, JL_Q));
    g.wk = G_(j, LT(l, JL_K));
    g.wv = G_(j, LT(l, JL_V));
    g.wo = G_(j, LT(l, JL_O));
    g.w1 = j->E ? NULL : G_(j, LT(l, JL_GATE));
    g.w2 = j->E ? NULL : G_(j, LT(l, JL_DOWN));
    g.w3 = j->E ? NULL : G_(j, LT(l, JL_UP));
    g.bq = optional(j, l, JL_BQ, G_);
    g.bk = optional(j, l, JL_BK, G_);
    g.bv = optional(j, l, JL_BV, G_);
    g.q_norm = optional(j, l, JL_QN, G_);
    g.k_norm = optional(j, l, JL_KN, G_);
    return g;
}

const float *joint_embedding(const joint_weights *j) { return P_(j, 0); }
float *joint_embedding_grad(joint_weights *j) { return G_(j, 0); }
const float *joint_output_norm(const joint_weights *j) { return P_(j, out_norm_index(j)); }
float *joint_output_norm_grad(joint_weights *j) { return G_(j, out_norm_index(j)); }
const float *joint_classifier(const joint_weights *j) { return P_(j, cls_index(j)); }
const float *joint_classifier_t(const joint_weights *j) { return WT_(j, cls_index(j)); }
float *joint_classifier_grad(joint_weights *j) { return G_(j, cls_index(j)); }
float *joint_params(joint_weights *j) { return j->params; }
float *joint_grads(joint_weights *j) { return j->grads; }
size_t joint_n_params(const joint_weights *j) { return j->n_params; }

int joint_n_tensors(const joint_weights *j) { return j->n_tensors; }

void joint_tensor_span(const joint_weights *j, int k, size_t *off, size_t *n, const char **name) {
    const joint_tensor *x = &j->tensors[k];
    *off = x->off;
    *n = tensor_size(x);
    *name = x->name;
}

static double lora_adam_step(joint_weights *j, float lr, float clip, int step, doze_pool *pool);

/* *copy = the weights as they are now (allocated on first use; what: for
 * the error) */
static doze_status keep_params(const joint_weights *j, float **copy, const char *what, doze_error *err) {
    if (!*copy) {
        *copy = malloc(j->n_params * sizeof(float));
        if (!*copy) return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for %s (%zu floats)", what, j->n_params);
    }
    memcpy(*copy, j->params, j->n_params * sizeof(float));
    return DOZE_OK;
}

doze_status joint_anchor_set(joint_weights *j, doze_error *err) {
    return keep_params(j, &j->anchor, "the anchor weights", err);
}

doze_status joint_ema_set(joint_weights *j, doze_error *err) {
    return keep_params(j, &j->ema, "the weights' average", err);
}

float joint_ema_decay(float decay, int step) {
    const float warm = (1.0f + (float)step) / (10.0f + (float)step);
    return warm < decay ? warm : decay;
}

void joint_ema_update(joint_weights *j, float decay) {
    if (!j->ema) return;
    for (size_t i = 0; i < j->n_params; i++) j->ema[i] = decay * j->ema[i] + (1.0f - decay) * j->params[i];
}

const float *joint_ema(const joint_weights *j) { return j->ema; }

double joint_adam_step(joint_weights *j, float lr, float weight_decay, float anchor, float clip, int step,
                       doze_pool *pool) {
    if (j->rank > 0) return lora_adam_step(j, lr, clip, step, pool);
    const double norm = adamw_grad_norm(j->grads, j->n_params);
    const float scale = adamw_clip_scale(norm, clip);
    const adamw_step as = adamw_at(lr, 0.9f, 0.999f, 1e-8f, step);
    for (int k = 0; k < j->n_tensors; k++) {
        const joint_tensor *x = &j->tensors[k];
        if (anchor > 0.0f && j->anchor)
            adamw_update_toward(&as, j->params + x->off, j->anchor + x->off, j->grads + x->off, j->m + x->off,
                                j->v + x->off, tensor_size(x), scale, anchor, pool);
        else
            adamw_update(&as, j->params + x->off, j->grads + x->off, j->m + x->off, j->v + x->off,
                         tensor_size(x), scale, x->decay ? weight_decay : 0.0f, pool);
    }
    joint_params_changed(j);
    return norm;
}

doze_status joint_check_file(const joint_weights *j, const void *file, size_t n, doze_error *err) {
    gguf_header h;
    doze_status st = gguf_parse_header(file, n, &h, err);
    if (st != DOZE_OK) return st;
    if (h.data_offset + h.data_size > n) st = doze_fail(err, DOZE_ERR_TRUNCATED, "the model file is truncated");
    int found = 0;
    for (uint64_t i = 0; i < h.n_tensors && st == DOZE_OK; i++) { /* joint_write's rules */
        const gguf_tensor *t = &h.tensors[i];
        const joint_tensor *x = NULL;
        for (int k = 0; k < j->n_tensors && !x; k++)
            if (strcmp(j->tensors[k].name, t->name.data) == 0) x = &j->tensors[k];
        if (!x) continue;
        if (t->ne[0] != (uint64_t)x->cols || t->ne[1] != (uint64_t)x->rows || t->ne[2] != (uint64_t)x->planes ||
            t->ne[3] != 1)
            st = doze_fail(err, DOZE_ERR_BAD_SHAPE, "tensor %s of the file is not the trained model's shape", x->name);
        found++;
    }
    if (st == DOZE_OK && found != j->n_tensors)
        st = doze_fail(err, DOZE_ERR_MISSING, "the file lacks %d of the trained tensors: not the model trained",
                       j->n_tensors - found);
    gguf_header_free(&h);
    return st;
}

doze_status joint_write(const joint_weights *j, const void *file, size_t n,
                        int (*fn)(void *ctx, const void *bytes, size_t len), void *ctx,
                        doze_error *err) {
    gguf_header h;
    doze_status st = gguf_parse_header(file, n, &h, err);
    if (st != DOZE_OK) return st;
    if (h.data_offset + h.data_size > n) {
        gguf_header_free(&h);
        return doze_fail(err, DOZE_ERR_TRUNCATED, "the model file is truncated");
    }
    gguf_writer *w = gguf_writer_new(h.alignment);
    if (!w) {
        gguf_header_free(&h);
        return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory writing the model");
    }
    st = gguf_writer_copy_kvs(w, &h, err);
    /* the NeoX-ordered copies, alive until the write (the writer keeps pointers),
     * then one head's scratch for the reordering */
    size_t perm_n = 0, perm_at = 0, widest = 1;
    for (int k = 0; k < j->n_tensors && j->neox; k++)
        if (arch_rotated_by_rope(j->tensors[k].name)) {
            perm_n += tensor_size(&j->tensors[k]);
            if ((size_t)j->tensors[k].cols > widest) widest = (size_t)j->tensors[k].cols;
        }
    float *perm = perm_n ? malloc((perm_n + (size_t)j->hd * widest) * sizeof(float)) : NULL;
    if (st == DOZE_OK && perm_n && !perm) st = doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory writing the model");
    int found = 0;
    for (uint64_t i = 0; i < h.n_tensors && st == DOZE_OK; i++) {
        const gguf_tensor *t = &h.tensors[i];
        const joint_tensor *x = NULL;
        for (int k = 0; k < j->n_tensors && !x; k++)
            if (strcmp(j->tensors[k].name, t->name.data) == 0) x = &j->tensors[k];
        if (!x) { /* not trained: as it was */
            st = gguf_writer_add_tensor(w, t->name.data, t->type, t->n_dims, t->ne,
                                        (const uint8_t *)file + h.data_offset + t->offset, err);
            continue;
        }
        if (t->ne[0] != (uint64_t)x->cols || t->ne[1] != (uint64_t)x->rows || t->ne[2] != (uint64_t)x->planes ||
            t->ne[3] != 1) {
            st = doze_fail(err, DOZE_ERR_BAD_SHAPE, "tensor %s of the file is not the trained model's shape",
                           x->name);
            break;
        }
        found++;
        const float *data = (j->ema ? j->ema : j->params) + x->off;
        if (j->neox && arch_rotated_by_rope(x->name)) { /* back to the file's NeoX order */
            const size_t row = x->rows > 1 ? (size_t)x->cols : 1, n_rows = x->rows > 1 ? (size_t)x->rows : (size_t)x->cols;
            float *copy = perm + perm_at;
            perm_at += tensor_size(x);
            memcpy(copy, data, tensor_size(x) * sizeof(float));
            arch_adjacent_to_neox((uint8_t *)copy, n_rows, row * sizeof(float), j->hd, j->rope_dim,
                                  (uint8_t *)(perm + perm_n));
            data = copy;
        }
        st = gguf_writer_add_tensor(w, t->name.data, DOZE_TYPE_F32, t->n_dims, t->ne, data, err);
    }
    if (st == DOZE_OK && found != j->n_tensors)
        st = doze_fail(err, DOZE_ERR_MISSING, "the file lacks %d of the trained tensors: not the model trained",
                       j->n_tensors - found);
    if (st == DOZE_OK) st = gguf_writer_write(w, fn, ctx, err);
    free(perm);
    gguf_writer_free(w);
    gguf_header_free(&h);
    return st;
}

/* ---- low-rank adapters ------------------------------------------------------ */

/* the layers' projections (q, k, v, o, gate, down, up); not the embedding,
 * the classifier or the norms, which stay as they are */
static int is_projection(const joint_weights *j, int i) {
    if (i == 0 || i == out_norm_index(j) || i == cls_index(j)) return 0;
    return j->tensors[i].rows > 1;
}

/* W = W0 + B A for one adapted tensor: W (rows, cols), B (rows, r), A (r, cols) */
static void lora_merge(joint_weights *j, const joint_tensor *x) {
    const int r = j->rank;
    const float *A = j->lp + x->a_off, *Bm = j->lp + x->b_off, *w0 = j->w0 + x->w0_off;
    float *w = j->params + x->off;
    for (int row = 0; row < x->rows; row++) {
        float *wr = w + (size_t)row * x->cols;
        memcpy(wr, w0 + (size_t)row * x->cols, (size_t)x->cols * sizeof(float));
        for (int k = 0; k < r; k++) {
            const float b = Bm[(size_t)row * r + k];
            const float *ak = A + (size_t)k * x->cols;
            for (int c = 0; c < x->cols; c++) wr[c] += b * ak[c];
        }
    }
}

void joint_lora_changed(joint_weights *j) {
    for (int i = 0; i < j->n_tensors; i++)
        if (j->tensors[i].lora) lora_merge(j, &j->tensors[i]);
    joint_params_changed(j);
}

doze_status joint_lora_init(joint_weights *j, int rank, uint64_t seed, doze_error *err) {
    if (j->rank > 0) return doze_fail(err, DOZE_ERR_STATE, "the adapters are already there");
    /* an expert stack would need an adapter per expert (and the router one of
     * its own): not done; full fine-tuning covers a mixture */
    if (j->E)
        return doze_fail(err, DOZE_ERR_UNSUPPORTED_TYPE,
                         "low-rank adapters on a mixture of experts are not supported: fine-tune every "
                         "weight (no --lora)");
    int side = 0;
    for (int i = 0; i < j->n_tensors; i++) {
        const joint_tensor *x = &j->tensors[i];
        if (!is_projection(j, i)) continue;
        int s = x->rows < x->cols ? x->rows : x->cols;
        if (side == 0 || s < side) side = s;
    }
    if (rank < 1 || rank > side)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT,
                         "the adapters' rank must be in [1, %d] (the smallest projection's side), not %d", side,
                         rank);
    size_t nl = 0, nw = 0;
    for (int i = 0; i < j->n_tensors; i++) {
        joint_tensor *x = &j->tensors[i];
        if (!is_projection(j, i)) continue;
        x->lora = 1;
        x->a_off = nl;
        nl += (size_t)rank * (size_t)x->cols;
        x->b_off = nl;
        nl += (size_t)x->rows * (size_t)rank;
        x->w0_off = nw;
        nw += (size_t)x->rows * (size_t)x->cols;
    }
    j->w0 = malloc(nw * sizeof(float));
    j->lp = calloc(nl, sizeof(float));
    j->lg = calloc(nl, sizeof(float));
    j->lm = calloc(nl, sizeof(float));
    j->lv = calloc(nl, sizeof(float));
    if (!j->w0 || !j->lp || !j->lg || !j->lm || !j->lv) {
        free(j->w0), free(j->lp), free(j->lg), free(j->lm), free(j->lv);
        j->w0 = j->lp = j->lg = j->lm = j->lv = NULL;
        for (int i = 0; i < j->n_tensors; i++) j->tensors[i].lora = 0;
        return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for the adapters");
    }
    /* B = 0, so the run starts at the model itself; A uniform in
     * +-1/sqrt(cols) (its rows then carry B's gradient from the first step) */
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 0x5DEECE66Dull;
    for (int i = 0; i < j->n_tensors; i++) {
        const joint_tensor *x = &j->tensors[i];
        if (!x->lora) continue;
        memcpy(j->w0 + x->w0_off, j->params + x->off, (size_t)x->rows * x->cols * sizeof(float));
        const float scale = 1.0f / sqrtf((float)x->cols);
        for (size_t k = 0; k < (size_t)rank * x->cols; k++) {
            s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
            double u = (double)((s * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
            j->lp[x->a_off + k] = (float)(2.0 * u - 1.0) * scale;
        }
    }
    j->rank = rank;
    j->n_lora = nl;
    j->n_w0 = nw;
    return DOZE_OK;
}

void joint_lora_backward(joint_weights *j) {
    if (j->rank == 0) return;
    const int r = j->rank;
    for (int i = 0; i < j->n_tensors; i++) {
        const joint_tensor *x = &j->tensors[i];
        if (!x->lora) continue;
        const float *G = j->grads + x->off, *A = j->lp + x->a_off, *Bm = j->lp + x->b_off;
        float *dA = j->lg + x->a_off, *dB = j->lg + x->b_off;
        memset(dA, 0, (size_t)r * x->cols * sizeof(float));
        for (int row = 0; row < x->rows; row++) {
            const float *gr = G + (size_t)row * x->cols;
            for (int k = 0; k < r; k++) {
                /* dB = G A^T, dA = B^T G */
                const float *ak = A + (size_t)k * x->cols;
                float *dak = dA + (size_t)k * x->cols;
                const float b = Bm[(size_t)row * r + k];
                double acc = 0;
                for (int c = 0; c < x->cols; c++) {
                    acc += (double)gr[c] * ak[c];
                    dak[c] += b * gr[c];
                }
                dB[(size_t)row * r + k] = (float)acc;
            }
        }
    }
}

static double lora_adam_step(joint_weights *j, float lr, float clip, int step, doze_pool *pool) {
    const double norm = adamw_grad_norm(j->lg, j->n_lora);
    const adamw_step as = adamw_at(lr, 0.9f, 0.999f, 1e-8f, step);
    adamw_update(&as, j->lp, j->lg, j->lm, j->lv, j->n_lora, adamw_clip_scale(norm, clip), 0.0f, pool);
    joint_lora_changed(j);
    return norm;
}

int joint_lora_rank(const joint_weights *j) { return j->rank; }
float *joint_lora_params(joint_weights *j) { return j->lp; }
float *joint_lora_grads(joint_weights *j) { return j->lg; }
size_t joint_lora_n_params(const joint_weights *j) { return j->n_lora; }

int joint_lora_span(const joint_weights *j, int k, const float **a, const float **b) {
    const joint_tensor *x = &j->tensors[k];
    if (!x->lora) return 0;
    *a = j->lp + x->a_off;
    *b = j->lp + x->b_off;
    return 1;
}
