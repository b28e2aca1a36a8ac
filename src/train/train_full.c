/* Full-model training: every weight learns.
 *
 * llm.c's structure: parameters in one flat buffer carved into named
 * tensors (so AdamW, clipping and the checkpoint see one array), activations
 * of B windows of T tokens in one buffer carved into named tensors. Each
 * layer is the shared training block (block.c) without gates:
 *   x_mid = x_in + Wo attention(rmsnorm(x_in))
 *   x_out = x_mid + W2 (silu(W1 hn) * W3 hn),  hn = rmsnorm(x_mid)
 * then logits = Wcls (rmsnorm(x_L) * output_norm), Wcls the embedding when
 * tied; the loss is the mean next-token cross-entropy. The backward walks
 * the same ops in reverse, accumulating weight gradients
 * (matmul_backward_weights: dW += dy^T x) beside the activation gradients.
 *
 * Forward products use transposed copies of the matrices (no horizontal
 * sums), refreshed after every update. Threads (the pool, pool.h) split the
 * products over independent output rows and the attention over windows;
 * every sum runs in a fixed order, so the bits do not depend on the
 * thread count. Initialization uses only additions (Irwin-Hall normals)
 * and the schedule is computed in double, so native and wasm agree.
 *
 * A mixture of experts (n_experts > 0) replaces each layer's FFN by the
 * router and the expert stacks of train_moe.c (through block.c's FFN hook);
 * the loss adds each layer's load-balancing term. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adamw.h"
#include "convert.h"
#include "carve.h"
#include "error.h"
#include "gguf.h"
#include "kernels.h"
#include "tokenizer.h"
#include "train_full.h"
#include "train_acts.h"
#include "block.h"
#include "train_ops.h"
#include "train_moe.h"
#include "vocab.h"

/* tensors of a layer, in file order; a mixture's gate, down and up are its
 * expert stacks, and its router follows them */
enum { TL_ATTN_NORM, TL_Q, TL_K, TL_V, TL_O, TL_FFN_NORM, TL_GATE, TL_DOWN, TL_UP, TL_COUNT, TL_ROUTER = TL_COUNT };

struct doze_full_trainer {
    doze_full_params p;
    int V, D, F, H, KV, hd, Q, KVD, L, B, T, N;
    int E, K;        /* experts and experts per token (0, 0: dense) */
    int per_layer;   /* tensors per layer: TL_COUNT, + 1 (the router) in a mixture */
    int nt;          /* threads */
    doze_pool *pool; /* nt threads (NULL: one) */
    full_tensor *tensors;
    int n_tensors;
    size_t n_params, n_wt;
    float *params, *grads, *m, *v, *wt;
    block_acts *act;
    float *x, *xf, *rinvf, *logits, *row_loss;
    block_grads gr;
    tmoe_acts *macts;   /* (L) a mixture's per-layer routing and expert activations */
    tmoe_scratch msc;
    block_ffn ffn_hook; /* the block's FFN in a mixture */
    double last_balance;
    float *att_scratch;
    size_t att_per_thread;
    float *rope_cos, *rope_sin;
    uint8_t *vis;
    int32_t *inp, *tgt;
    gguf_header vocab; /* its tokenizer.* keys go into every file written */
    int step;
    uint64_t rng; /* data order */
    void *mem;    /* activations */
};

doze_full_params doze_full_default_params(void) {
    doze_full_params p;
    memset(&p, 0, sizeof p);
    p.dim = 128;
    p.hidden_dim = 384;
    p.n_layers = 4;
    p.n_heads = 4;
    p.n_kv_heads = 4;
    p.context = 256;
    p.tied = 1;
    p.batch = 8;
    p.total_steps = 1000;
    p.warmup_steps = 100;
    p.schedule = DOZE_LR_COSINE;
    p.lr = 1e-3f;
    p.min_lr = 1e-4f;
    p.weight_decay = 0.1f;
    p.beta1 = 0.9f;
    p.beta2 = 0.95f;
    p.eps = 1e-8f;
    p.grad_clip = 1.0f;
    p.init_std = 0.02f;
    p.seed = 1;
    p.threads = 0;
    p.balance_loss = 0.01f;
    return p;
}

/* ---- small helpers ------------------------------------------------------------- */

static uint64_t next_u64(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

/* ~N(0, 1): the sum of 12 uniforms minus 6 (additions only: same bits everywhere) */
static float next_normal(uint64_t *s) {
    double acc = 0;
    for (int i = 0; i < 12; i++) acc += (double)(next_u64(s) >> 11) / 9007199254740992.0;
    return (float)(acc - 6.0);
}

static float *P_(const doze_full_trainer *t, int i) { return t->params + t->tensors[i].off; }
static float *G_(const doze_full_trainer *t, int i) { return t->grads + t->tensors[i].off; }
static float *WT_(const doze_full_trainer *t, int i) { return t->wt + t->tensors[i].toff; }
static int LT(const doze_full_trainer *t, int l, int k) { return 1 + l * t->per_layer + k; }
static int out_norm_index(const doze_full_trainer *t) { return 1 + t->L * t->per_layer; }
static int cls_index(const doze_full_trainer *t) { return t->p.tied ? 0 : 2 + t->L * t->per_layer; }

int full_n_tensors(const doze_full_trainer *t) { return t->n_tensors; }
const full_tensor *full_tensor_at(const doze_full_trainer *t, int i) { return &t->tensors[i]; }
float *full_params(doze_full_trainer *t) { return t->params; }
const float *full_grads(const doze_full_trainer *t) { return t->grads; }
size_t full_n_params(const doze_full_trainer *t) { return t->n_params; }
size_t full_tensor_count(const full_tensor *x) { return (size_t)(x->ne[0] * x->ne[1] * x->ne[2]); }
double full_last_balance(const doze_full_trainer *t) { return t->last_balance; }
const int32_t *full_moe_selected(const doze_full_trainer *t, int l) {
    return t->E && l >= 0 && l < t->L ? t->macts[l].sel : NULL;
}
const doze_full_params *doze_full_trainer_params(const doze_full_trainer *t) { return &t->p; }
int doze_full_trainer_vocab_size(const doze_full_trainer *t) { return t ? t->V : 0; }
int doze_full_trainer_steps_done(const doze_full_trainer *t) { return t ? t->step : 0; }

/* wt(cols, rows) = w(rows, cols)^T */
static void transpose(float *wt, const float *w, int rows, int cols) {
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) wt[(size_t)c * rows + r] = w[(size_t)r * cols + c];
}

void full_params_changed(doze_full_trainer *t) {
    for (int i = 0; i < t->n_tensors; i++) {
        const full_tensor *x = &t->tensors[i];
        const size_t m = (size_t)(x->ne[0] * x->ne[1]); /* a stack: each expert's matrix on its own */
        if (x->n_dims >= 2)
            for (uint64_t e = 0; e < x->ne[2]; e++)
                transpose(t->wt + x->toff + e * m, t->params + x->off + e * m, (int)x->ne[1], (int)x->ne[0]);
    }
}

/* ---- construction ---------------------------------------------------------------- */

void doze_full_trainer_free(doze_full_trainer *t) {
    if (!t) return;
    free(t->tensors);
    free(t->params);
    free(t->grads);
    free(t->m);
    free(t->v);
    free(t->wt);
    free(t->act);
    free(t->macts);
    free(t->mem);
    pool_free(t->pool);
    gguf_header_free(&t->vocab);
    free(t);
}

/* experts > 1: a stack of that many (rows, cols) matrices */
static void add_tensor3(doze_full_trainer *t, const char *name, uint64_t cols, uint64_t rows, uint64_t experts,
                        int decay) {
    full_tensor *x = &t->tensors[t->n_tensors++];
    snprintf(x->name, sizeof x->name, "%s", name);
    x->ne[0] = cols;
    x->ne[1] = rows;
    x->ne[2] = experts;
    x->n_dims = experts > 1 ? 3 : rows > 1 ? 2 : 1;
    x->decay = decay;
    x->off = t->n_params;
    t->n_params += (size_t)(cols * rows * experts);
    x->toff = t->n_wt;
    if (x->n_dims >= 2) t->n_wt += (size_t)(cols * rows * experts);
}

static void add_tensor(doze_full_trainer *t, const char *name, uint64_t cols, uint64_t rows, int decay) {
    add_tensor3(t, name, cols, rows, 1, decay);
}

static tmoe_shape moe_shape_of(const doze_full_trainer *t) {
    tmoe_shape s;
    s.D = t->D;
    s.F = t->F;
    s.E = t->E;
    s.K = t->K;
    s.balance = t->p.balance_loss;
    s.pool = t->pool;
    s.softmax = doze_kernels_simd.softmax;
    s.swiglu = doze_kernels_simd.swiglu;
    return s;
}

/* one of the trainer's buffers: the parameters (P_), their gradients (G_) or
 * the transposed copies (WT_) */
typedef float *(*tensor_in)(const doze_full_trainer *t, int i);

/* layer l's router and expert stacks in one buffer (tmoe_grads: the four
 * pointers of any of them) */
static tmoe_grads moe_tensors(const doze_full_trainer *t, int l, tensor_in at) {
    const tmoe_grads x = {at(t, LT(t, l, TL_ROUTER)), at(t, LT(t, l, TL_GATE)), at(t, LT(t, l, TL_UP)),
                          at(t, LT(t, l, TL_DOWN))};
    return x;
}

/* layer l's router and expert stacks: as stored and transposed */
static tmoe_weights moe_weights_of(const doze_full_trainer *t, int l) {
    const tmoe_grads p = moe_tensors(t, l, P_), tr = moe_tensors(t, l, WT_);
    const tmoe_weights w = {p.router, p.gate, p.up, p.down, tr.router, tr.gate, tr.up, tr.down};
    return w;
}

/* block.c's FFN hook: the mixture of layer l */
static void moe_ffn_forward(void *ctx, int l, const float *hn, float *f, int N) {
    doze_full_trainer *t = ctx;
    const tmoe_shape s = moe_shape_of(t);
    const tmoe_weights w = moe_weights_of(t, l);
    tmoe_forward(&s, &w, &t->macts[l], &t->msc, hn, f, N);
}

static void moe_ffn_backward(void *ctx, int l, const float *hn, const float *du, float *dhn, int N) {
    doze_full_trainer *t = ctx;
    const tmoe_shape s = moe_shape_of(t);
    const tmoe_weights w = moe_weights_of(t, l);
    tmoe_grads g = moe_tensors(t, l, G_);
    tmoe_backward(&s, &w, &t->macts[l], &t->msc, hn, du, dhn, &g, N);
}

static void layout(doze_full_trainer *t, carver *c) {
    size_t N = (size_t)t->N, D = (size_t)t->D, F = (size_t)t->F, Q = (size_t)t->Q;
    size_t KVD = (size_t)t->KVD, V = (size_t)t->V, T = (size_t)t->T;
    /* a mixture keeps its FFN activations in macts: the block's are empty */
    const block_sizes bs = {N, D, Q, KVD, t->E ? 0 : F, (size_t)t->B * t->H * T * T, 0, 0};
    for (int l = 0; l < t->L; l++) carve_block_acts(c, &t->act[l], &bs);
    if (t->E) {
        const tmoe_shape ms = moe_shape_of(t);
        for (int l = 0; l < t->L; l++) tmoe_carve_acts(c, &t->macts[l], &ms, N);
        tmoe_carve_scratch(c, &t->msc, &ms, N);
    }
    t->x = carve(c, N * D);
    t->xf = carve(c, N * D);
    t->rinvf = carve(c, N);
    t->logits = carve(c, N * V);
    t->row_loss = carve(c, N);
    carve_block_grads(c, &t->gr, &bs);
    t->att_scratch = carve(c, t->att_per_thread * (size_t)t->nt);
    t->rope_cos = carve(c, T * (size_t)(t->hd / 2));
    t->rope_sin = carve(c, T * (size_t)(t->hd / 2));
    t->vis = (uint8_t *)carve(c, (N + 3) / 4);
    t->inp = (int32_t *)carve(c, N);
    t->tgt = (int32_t *)carve(c, N);
}

static doze_status check_params(const doze_full_params *p, doze_error *err) {
    if (p->dim <= 0 || p->dim > 8192 || p->hidden_dim <= 0 || p->hidden_dim > 65536 ||
        p->n_layers <= 0 || p->n_layers > 256 || p->n_heads <= 0 || p->n_kv_heads <= 0 ||
        p->dim % p->n_heads != 0 || p->n_heads % p->n_kv_heads != 0 || (p->dim / p->n_heads) % 2 != 0)
        return doze_fail(err, DOZE_ERR_BAD_SHAPE,
                         "dim %d, hidden %d, layers %d, heads %d, kv heads %d is not a valid shape "
                         "(heads must divide dim into even head sizes, kv heads divide heads)",
                         p->dim, p->hidden_dim, p->n_layers, p->n_heads, p->n_kv_heads);
    if (p->context < 2 || p->context > 8192 || p->batch < 1 || p->batch > 4096 ||
        p->total_steps < 1 || p->warmup_steps < 0 || (p->schedule != DOZE_LR_COSINE && p->schedule != DOZE_LR_LINEAR) ||
        !(p->lr > 0.0f) || !(p->min_lr >= 0.0f) || !(p->weight_decay >= 0.0f) ||
        !(p->beta1 >= 0.0f && p->beta1 < 1.0f) || !(p->beta2 >= 0.0f && p->beta2 < 1.0f) ||
        !(p->eps > 0.0f) || !(p->grad_clip >= 0.0f) || !(p->init_std > 0.0f) || p->threads < 0 ||
        !(p->balance_loss >= 0.0f) || !isfinite(p->lr) || !isfinite(p->min_lr) || !isfinite(p->weight_decay) ||
        !isfinite(p->eps) || !isfinite(p->grad_clip) || !isfinite(p->init_std) || !isfinite(p->balance_loss))
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT,
                         "training params out of range (context %d in [2, 8192], batch %d in [1, 4096], "
                         "steps %d >= 1, warm-up >= 0, lr > 0, min lr >= 0, betas in [0, 1), eps > 0, "
                         "clip >= 0, balance loss >= 0, all finite)",
                         p->context, p->batch, p->total_steps);
    /* a mixture: at least two experts (one is a dense FFN), k of them per token */
    if (p->n_experts != 0 && (p->n_experts < 2 || p->n_experts > 256))
        return doze_fail(err, DOZE_ERR_BAD_SHAPE, "%d experts: a mixture needs 2 to 256 experts", p->n_experts);
    if (p->n_experts == 0 && p->n_experts_used != 0)
        return doze_fail(err, DOZE_ERR_BAD_SHAPE, "top-%d without experts: set the number of experts",
                         p->n_experts_used);
    if (p->n_experts && (p->n_experts_used < 1 || p->n_experts_used > p->n_experts))
        return doze_fail(err, DOZE_ERR_BAD_SHAPE, "top-%d of %d experts: k must be in [1, %d]", p->n_experts_used,
                         p->n_experts, p->n_experts);
    return DOZE_OK;
}

/* a trainer with its buffers, parameters zero; takes ownership of *vocab */
static doze_status create(const doze_full_params *p, int V, gguf_header *vocab,
                          doze_full_trainer **out, doze_error *err) {
    doze_status st = check_params(p, err);
    if (st != DOZE_OK) return st;
    doze_full_trainer *t = calloc(1, sizeof *t);
    if (!t) return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for a trainer");
    t->vocab = *vocab;
    memset(vocab, 0, sizeof *vocab);
    t->p = *p;
    t->V = V;
    t->D = p->dim;
    t->F = p->hidden_dim;
    t->H = p->n_heads;
    t->KV = p->n_kv_heads;
    t->hd = p->dim / p->n_heads;
    t->Q = t->H * t->hd;
    t->KVD = t->KV * t->hd;
    t->L = p->n_layers;
    t->B = p->batch;
    t->T = p->context;
    t->N = t->B * t->T;
    t->E = p->n_experts;
    t->K = p->n_experts_used;
    t->per_layer = TL_COUNT + (t->E ? 1 : 0);
    t->ffn_hook.forward = moe_ffn_forward;
    t->ffn_hook.backward = moe_ffn_backward;
    t->ffn_hook.ctx = t;
    t->nt = p->threads > 0 ? p->threads : pool_default_threads();
    if (t->nt > 1) {
        doze_status st = pool_new(t->nt, &t->pool, err);
        if (st != DOZE_OK) {
            doze_full_trainer_free(t);
            return st;
        }
    }
    t->att_per_thread = block_att_per_thread(t->T, t->hd);
    t->rng = (p->seed ^ 0xD1B54A32D192ED03ull) | 1;

    const uint64_t D = (uint64_t)t->D, F = (uint64_t)t->F, Q = (uint64_t)t->Q,
                   KVD = (uint64_t)t->KVD;
    t->tensors = calloc((size_t)(3 + t->L * t->per_layer), sizeof *t->tensors);
    t->act = calloc((size_t)t->L, sizeof *t->act);
    t->macts = calloc((size_t)t->L, sizeof *t->macts);
    if (!t->tensors || !t->act || !t->macts) {
        doze_full_trainer_free(t);
        return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for a trainer");
    }
    char nm[48];
    add_tensor(t, "token_embd.weight", D, (uint64_t)V, 1);
    for (int l = 0; l < t->L; l++) {
        snprintf(nm, sizeof nm, "blk.%d.attn_norm.weight", l);   add_tensor(t, nm, D, 1, 0);
        snprintf(nm, sizeof nm, "blk.%d.attn_q.weight", l);      add_tensor(t, nm, D, Q, 1);
        snprintf(nm, sizeof nm, "blk.%d.attn_k.weight", l);      add_tensor(t, nm, D, KVD, 1);
        snprintf(nm, sizeof nm, "blk.%d.attn_v.weight", l);      add_tensor(t, nm, D, KVD, 1);
        snprintf(nm, sizeof nm, "blk.%d.attn_output.weight", l); add_tensor(t, nm, Q, D, 1);
        snprintf(nm, sizeof nm, "blk.%d.ffn_norm.weight", l);    add_tensor(t, nm, D, 1, 0);
        if (t->E) { /* llama.cpp's names: stacks {cols, rows, experts}, the router (E, D) */
            const uint64_t E = (uint64_t)t->E;
            snprintf(nm, sizeof nm, "blk.%d.ffn_gate_exps.weight", l); add_tensor3(t, nm, D, F, E, 1);
            snprintf(nm, sizeof nm, "blk.%d.ffn_down_exps.weight", l); add_tensor3(t, nm, F, D, E, 1);
            snprintf(nm, sizeof nm, "blk.%d.ffn_up_exps.weight", l);   add_tensor3(t, nm, D, F, E, 1);
            snprintf(nm, sizeof nm, "blk.%d.ffn_gate_inp.weight", l);  add_tensor(t, nm, D, E, 1);
            continue;
        }
        snprintf(nm, sizeof nm, "blk.%d.ffn_gate.weight", l);    add_tensor(t, nm, D, F, 1);
        snprintf(nm, sizeof nm, "blk.%d.ffn_down.weight", l);    add_tensor(t, nm, F, D, 1);
        snprintf(nm, sizeof nm, "blk.%d.ffn_up.weight", l);      add_tensor(t, nm, D, F, 1);
    }
    add_tensor(t, "output_norm.weight", D, 1, 0);
    if (!p->tied) add_tensor(t, "output.weight", D, (uint64_t)V, 1);

    /* sizes in double first: size_t is 32 bits in wasm */
    double floats = (double)t->n_params * 5 + (double)t->L * ((double)t->B * t->H * t->T * t->T +
                    (double)t->N * (7.0 * t->D + 2.0 * t->Q + 2.0 * t->KVD + 3.0 * t->F)) +
                    (double)t->N * (10.0 * t->D + t->V + 4.0 * t->F + 3.0 * t->Q + 2.0 * t->KVD);
    if (t->E) /* each layer's slots (N k of them) and routing; the scratch */
        floats += (double)t->L * t->N * (t->K * (3.0 * t->F + t->D + 4.0) + t->E + 2.0 * t->K) +
                  (double)t->N * (3.0 * t->D + 3.0 * t->F + t->E);
    if (floats * sizeof(float) > (double)SIZE_MAX / 2) {
        doze_full_trainer_free(t);
        return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "training this shape needs %.3g GB, more than "
                         "this platform can address", floats * sizeof(float) / 1e9);
    }
    carver measure = {NULL, 0};
    layout(t, &measure);
    t->params = calloc(t->n_params, sizeof(float));
    t->grads = calloc(t->n_params, sizeof(float));
    t->m = calloc(t->n_params, sizeof(float));
    t->v = calloc(t->n_params, sizeof(float));
    t->wt = calloc(t->n_wt ? t->n_wt : 1, sizeof(float));
    t->mem = calloc(1, measure.at + 64);
    if (!t->params || !t->grads || !t->m || !t->v || !t->wt || !t->mem) {
        size_t bytes = measure.at + 5 * t->n_params * sizeof(float);
        doze_full_trainer_free(t);
        return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for training (%zu bytes)", bytes);
    }
    carver cv = {(uint8_t *)t->mem, 0};
    layout(t, &cv);
    memset(t->vis, 1, (size_t)t->N);
    /* RoPE tables exactly as the model builds them (model.c) */
    const int half = t->hd / 2;
    for (int pos = 0; pos < t->T; pos++)
        for (int i = 0; i < half; i++) {
            double freq = 1.0 / pow(10000.0, (double)(2 * i) / (double)t->hd);
            double angle = (double)pos * (double)(float)freq;
            t->rope_cos[(size_t)pos * half + i] = (float)cos(angle);
            t->rope_sin[(size_t)pos * half + i] = (float)sin(angle);
        }
    *out = t;
    return DOZE_OK;
}

/* vocabulary size of a header with a usable llama tokenizer */
static doze_status vocab_size_of(const gguf_header *h, int *V, doze_error *err) {
    doze_tokenizer *tok = NULL;
    doze_status st = tokenizer_from_gguf(h, &tok, err);
    if (st != DOZE_OK) return st;
    *V = tokenizer_vocab_size(tok);
    int bos = tokenizer_bos(tok);
    tokenizer_free(tok);
    if (*V < 3 || bos < 0)
        return doze_fail(err, DOZE_ERR_BAD_FORMAT, "the vocabulary needs a BOS token and >= 3 pieces");
    return DOZE_OK;
}

doze_status doze_full_trainer_new(const doze_full_params *p, const void *vocab, size_t vocab_n,
                                  doze_full_trainer **out, doze_error *err) {
    if (!out || !vocab) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no vocabulary or output");
    *out = NULL;
    doze_full_params prm = p ? *p : doze_full_default_params();
    gguf_header h;
    doze_status st = gguf_parse_header(vocab, vocab_n, &h, err);
    if (st != DOZE_OK) {
        doze_error_prefix(err, "vocabulary");
        return st;
    }
    int V = 0;
    if ((st = vocab_size_of(&h, &V, err)) != DOZE_OK) {
        gguf_header_free(&h);
        return st;
    }
    doze_full_trainer *t = NULL;
    if ((st = create(&prm, V, &h, &t, err)) != DOZE_OK) {
        gguf_header_free(&h);
        return st;
    }
    /* weights ~ N(0, std), the projections into the stream (attn_output,
     * ffn_down) scaled by 1/sqrt(2 L) (GPT-2); norms 1 */
    uint64_t s = prm.seed ? prm.seed : 0x9E3779B97F4A7C15ull;
    const float std = prm.init_std, std_out = prm.init_std / sqrtf(2.0f * (float)t->L);
    for (int i = 0; i < t->n_tensors; i++) {
        const full_tensor *x = &t->tensors[i];
        float *w = t->params + x->off;
        size_t n = full_tensor_count(x);
        if (x->n_dims == 1) {
            for (size_t j = 0; j < n; j++) w[j] = 1.0f;
        } else {
            int is_out = strstr(x->name, "attn_output") || strstr(x->name, "ffn_down");
            float sd = is_out ? std_out : std;
            for (size_t j = 0; j < n; j++) w[j] = sd * next_normal(&s);
        }
    }
    full_params_changed(t);
    *out = t;
    return DOZE_OK;
}

/* ---- forward and backward ------------------------------------------------------------- */

/* the block's shape and scratch, and layer l's weights and their gradients */
static block_shape shape_of(const doze_full_trainer *t) {
    block_shape s;
    memset(&s, 0, sizeof s);
    s.T = t->T;
    s.D = t->D;
    s.F = t->F;
    s.H = t->H;
    s.KV = t->KV;
    s.hd = t->hd;
    s.rope_dim = t->hd;
    s.eps = 1e-5f;
    s.rope_cos = t->rope_cos;
    s.rope_sin = t->rope_sin;
    s.softmax = doze_kernels_simd.softmax;
    s.swiglu = doze_kernels_simd.swiglu;
    s.pool = t->pool;
    s.att_parts = t->nt;
    s.att_scratch = t->att_scratch;
    s.att_per_thread = t->att_per_thread;
    s.all_visible = t->vis;
    s.ffn_block = t->F;
    s.ffn = t->E ? &t->ffn_hook : NULL;
    return s;
}

/* layer l's block tensors in one buffer (block_weight_grads: the nine
 * pointers of any of them); the norms have no transposed copy, so their
 * WT_ pointers go unused */
static block_weight_grads block_tensors(const doze_full_trainer *t, int l, tensor_in at) {
    block_weight_grads x = {0}; /* no biases or q/k norms in the models it trains */
    x.attn_norm = at(t, LT(t, l, TL_ATTN_NORM));
    x.ffn_norm = at(t, LT(t, l, TL_FFN_NORM));
    x.wq = at(t, LT(t, l, TL_Q));
    x.wk = at(t, LT(t, l, TL_K));
    x.wv = at(t, LT(t, l, TL_V));
    x.wo = at(t, LT(t, l, TL_O));
    x.w1 = at(t, LT(t, l, TL_GATE));
    x.w2 = at(t, LT(t, l, TL_DOWN));
    x.w3 = at(t, LT(t, l, TL_UP));
    return x;
}

static block_weights weights_of(const doze_full_trainer *t, int l) {
    const block_weight_grads p = block_tensors(t, l, P_), tr = block_tensors(t, l, WT_);
    const block_weights w = {p.attn_norm, p.ffn_norm, p.wq, p.wk, p.wv, p.wo, p.w1, p.w2, p.w3,
                             tr.wq, tr.wk, tr.wv, tr.wo, tr.w1, tr.w2, tr.w3, NULL, NULL, NULL, NULL, NULL};
    return w;
}

static block_weight_grads grads_of(const doze_full_trainer *t, int l) { return block_tensors(t, l, G_); }

/* the first nb windows of the buffers (inp/tgt filled) */
static void forward(doze_full_trainer *t, int nb) {
    const int N = nb * t->T, D = t->D;
    doze_pool *nt = t->pool;
    const block_shape s = shape_of(t);
    float *x = t->x;
    const float *embd = P_(t, 0);
    for (int n = 0; n < N; n++) memcpy(x + (size_t)n * D, embd + (size_t)t->inp[n] * D, (size_t)D * sizeof(float));
    for (int l = 0; l < t->L; l++) {
        const block_weights w = weights_of(t, l);
        block_forward(&s, &w, &t->act[l], NULL, l, x, &t->gr, nb);
    }
    rmsnorm_forward(t->xf, t->rinvf, x, P_(t, out_norm_index(t)), N, D, 1e-5f);
    matmul_forward_t_par(t->logits, t->xf, WT_(t, cls_index(t)), N, t->V, D, nt);
}

typedef struct {
    doze_full_trainer *t;
    float scale_n;
} loss_job;

static void loss_rows_part(void *args, int n0, int n1, int part) {
    const loss_job *j = args;
    doze_full_trainer *t = j->t;
    const int V = t->V;
    void (*softmax)(float *, int) = doze_kernels_simd.softmax;
    (void)part;
    for (int n = n0; n < n1; n++) {
        float *row = t->logits + (size_t)n * V;
        softmax(row, V);
        int y = t->tgt[n];
        double p = row[y] > 1e-30f ? (double)row[y] : 1e-30;
        t->row_loss[n] = (float)-log(p);
        row[y] -= 1.0f;
        for (int v = 0; v < V; v++) row[v] /= j->scale_n;
    }
}

/* row losses; logits become dlogits = (softmax - onehot) / scale_n */
static void loss_rows(doze_full_trainer *t, int N, float scale_n) {
    loss_job j = {t, scale_n};
    pool_run((double)N * t->V >= 1e6 ? t->pool : NULL, loss_rows_part, &j, N, 1, 64, 0);
}

static void backward(doze_full_trainer *t) {
    const int N = t->N, D = t->D;
    doze_pool *nt = t->pool;
    const size_t ND = (size_t)N * D;
    const block_shape s = shape_of(t);
    memset(t->grads, 0, t->n_params * sizeof(float));
    /* classifier and final norm */
    const int ci = cls_index(t), oi = out_norm_index(t);
    memset(t->gr.dtmp, 0, ND * sizeof(float));
    matmul_backward_par(t->gr.dtmp, t->logits, P_(t, ci), N, t->V, D, nt); /* dxf */
    matmul_backward_weights(G_(t, ci), t->logits, t->xf, N, t->V, D, nt);
    rmsnorm_backward_weights(G_(t, oi), t->gr.dtmp, t->x, t->rinvf, N, D);
    memset(t->gr.dx, 0, ND * sizeof(float));
    rmsnorm_backward(t->gr.dx, t->gr.dtmp, t->x, t->rinvf, P_(t, oi), N, D);
    for (int l = t->L - 1; l >= 0; l--) {
        const block_weights w = weights_of(t, l);
        block_weight_grads g = grads_of(t, l);
        block_backward(&s, &w, &t->act[l], NULL, l, &t->gr, &g, t->B);
    }
    /* embedding rows, in token order */
    float *ge = G_(t, 0);
    for (int n = 0; n < N; n++) {
        float *g = ge + (size_t)t->inp[n] * D;
        const float *d = t->gr.dx + (size_t)n * D;
        for (int i = 0; i < D; i++) g[i] += d[i];
    }
}

static doze_status load_windows(doze_full_trainer *t, const int32_t *windows, int nb, doze_error *err) {
    const int T = t->T;
    for (int b = 0; b < nb; b++)
        for (int i = 0; i <= T; i++) {
            int32_t id = windows[(size_t)b * (T + 1) + i];
            if (id < 0 || id >= t->V)
                return doze_fail(err, DOZE_ERR_TOKEN_RANGE, "token id %d is out of range [0, %d)", id, t->V);
            if (i < T) t->inp[(size_t)b * T + i] = id;
            if (i > 0) t->tgt[(size_t)b * T + i - 1] = id;
        }
    return DOZE_OK;
}

doze_status full_loss_grad(doze_full_trainer *t, const int32_t *windows, int want_grad,
                           double *loss, doze_error *err) {
    if (!t || !windows || !loss) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no trainer, windows or loss");
    doze_status st = load_windows(t, windows, t->B, err);
    if (st != DOZE_OK) return st;
    forward(t, t->B);
    loss_rows(t, t->N, (float)t->N);
    double sum = 0, bal = 0;
    for (int n = 0; n < t->N; n++) sum += t->row_loss[n];
    for (int l = 0; l < t->L && t->E; l++) bal += t->macts[l].balance;
    t->last_balance = bal;
    *loss = sum / t->N + bal;
    if (want_grad) backward(t);
    return DOZE_OK;
}

const float *full_forward_logits(doze_full_trainer *t, const int32_t *windows, int nb, doze_error *err) {
    if (!t || !windows || nb < 1 || nb > t->B) {
        doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no trainer or windows, or not 1 .. batch of them");
        return NULL;
    }
    if (load_windows(t, windows, nb, err) != DOZE_OK) return NULL;
    forward(t, nb);
    return t->logits;
}

doze_status doze_full_trainer_eval(doze_full_trainer *t, const int32_t *windows, int n_windows,
                                   double *loss, doze_error *err) {
    if (!t || !windows || !loss || n_windows < 1)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no trainer, windows or loss");
    double sum = 0;
    for (int w0 = 0; w0 < n_windows; w0 += t->B) {
        int nb = n_windows - w0 < t->B ? n_windows - w0 : t->B;
        doze_status st = load_windows(t, windows + (size_t)w0 * (t->T + 1), nb, err);
        if (st != DOZE_OK) return st;
        forward(t, nb);
        loss_rows(t, nb * t->T, 1.0f);
        for (int n = 0; n < nb * t->T; n++) sum += t->row_loss[n];
    }
    *loss = sum / ((double)n_windows * t->T);
    return DOZE_OK;
}

/* ---- optimizer ------------------------------------------------------------------------ */

static double lr_at(const doze_full_params *p, int step) {
    double lr = p->lr, lo = p->min_lr;
    if (step < p->warmup_steps) return lr * (step + 1) / p->warmup_steps;
    int span = p->total_steps - p->warmup_steps;
    double prog = span > 1 ? (double)(step - p->warmup_steps) / (double)(span - 1) : 1.0;
    if (prog > 1.0) prog = 1.0;
    if (p->schedule == DOZE_LR_LINEAR) return lr + (lo - lr) * prog;
    return lo + 0.5 * (lr - lo) * (1.0 + cos(3.14159265358979323846 * prog));
}

doze_status doze_full_trainer_step(doze_full_trainer *t, const int32_t *windows,
                                   doze_full_stats *stats, doze_error *err) {
    double loss;
    doze_status st = full_loss_grad(t, windows, 1, &loss, err);
    if (st != DOZE_OK) return st;
    loss -= t->last_balance; /* the cross-entropy alone is reported as the loss */
    const double norm = adamw_grad_norm(t->grads, t->n_params);
    if (!isfinite(norm)) return doze_fail(err, DOZE_ERR_STATE, "the gradient is not finite (step %d)", t->step + 1);
    const float scale = adamw_clip_scale(norm, t->p.grad_clip);
    const float lr = (float)lr_at(&t->p, t->step);
    t->step++;
    const adamw_step as = adamw_at(lr, t->p.beta1, t->p.beta2, t->p.eps, t->step);
    for (int k = 0; k < t->n_tensors; k++) {
        const full_tensor *x = &t->tensors[k];
        const size_t o = x->off;
        adamw_update(&as, t->params + o, t->grads + o, t->m + o, t->v + o, full_tensor_count(x), scale,
                     x->decay ? t->p.weight_decay : 0.0f, t->pool);
    }
    full_params_changed(t);
    if (stats) {
        stats->step = t->step;
        stats->loss = (float)loss;
        stats->grad_norm = (float)norm;
        stats->lr = lr;
        stats->balance = (float)t->last_balance;
    }
    return DOZE_OK;
}

doze_status doze_full_trainer_set_total_steps(doze_full_trainer *t, int total_steps, doze_error *err) {
    if (!t || total_steps < 1) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "total steps must be >= 1");
    t->p.total_steps = total_steps;
    return DOZE_OK;
}

doze_status doze_full_trainer_sample(doze_full_trainer *t, const int32_t *stream, size_t n,
                                     int32_t *windows, doze_error *err) {
    if (!t || !stream || !windows) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no trainer, stream or windows");
    const size_t W = (size_t)t->T + 1;
    if (n < W)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "%zu tokens of text: fewer than one window (%zu)", n, W);
    for (int b = 0; b < t->B; b++) {
        size_t off = (size_t)(next_u64(&t->rng) % (uint64_t)(n - W + 1));
        memcpy(windows + (size_t)b * W, stream + off, W * sizeof *windows);
    }
    return DOZE_OK;
}

/* ---- files ------------------------------------------------------------------------------- */

#define KEY_PREFIX "doze.train."

static doze_status set_u64(gguf_writer *w, const char *key, uint64_t x, doze_error *err) {
    gguf_value v;
    memset(&v, 0, sizeof v);
    v.type = GGUF_TYPE_UINT64;
    v.v.u64 = x;
    return gguf_writer_set(w, key, &v, err);
}

doze_status doze_full_trainer_save(const doze_full_trainer *t, const char *name, int type,
                                   int with_state,
                                   int (*fn)(void *ctx, const void *bytes, size_t n), void *ctx,
                                   doze_error *err) {
    if (!t || !fn) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no trainer or output");
    if (with_state) type = DOZE_TYPE_F32;
    gguf_builder b;
    doze_status st = gguf_builder_init(&b, err);
    if (st != DOZE_OK) return st;
    const doze_full_params *p = &t->p;
    st = gguf_builder_set_llama(&b, name ? name : "doze", t->D, t->F, t->L, t->H, t->KV, t->T, err);
    if (st == DOZE_OK && t->E) st = gguf_builder_set_experts(&b, "llama", t->E, t->K, 0, err);
    if (st == DOZE_OK) st = vocab_copy_kvs(b.w, &t->vocab, err);
    for (int i = 0; i < t->n_tensors && st == DOZE_OK; i++) {
        const full_tensor *x = &t->tensors[i];
        /* the router stays f32, as doze init and llama.cpp's quantizer keep it */
        const int ty = strstr(x->name, "ffn_gate_inp") ? DOZE_TYPE_F32 : type;
        st = gguf_builder_add_f32(&b, x->name, (uint32_t)x->n_dims, x->ne, t->params + x->off, ty, err);
    }
    if (with_state && st == DOZE_OK) {
        gguf_writer *w = b.w;
        char key[96];
#define U32(k, val) if (st == DOZE_OK) st = gguf_writer_set_u32(w, KEY_PREFIX k, (uint32_t)(val), err)
#define F32(k, val) if (st == DOZE_OK) st = gguf_writer_set_f32(w, KEY_PREFIX k, (val), err)
        U32("step", t->step);
        U32("batch", p->batch);
        U32("total_steps", p->total_steps);
        U32("warmup_steps", p->warmup_steps);
        U32("schedule", p->schedule);
        U32("tied", p->tied);
        F32("lr", p->lr);
        F32("min_lr", p->min_lr);
        F32("weight_decay", p->weight_decay);
        F32("beta1", p->beta1);
        F32("beta2", p->beta2);
        F32("eps", p->eps);
        F32("grad_clip", p->grad_clip);
        F32("init_std", p->init_std);
        F32("balance_loss", p->balance_loss);
#undef U32
#undef F32
        if (st == DOZE_OK) st = set_u64(w, KEY_PREFIX "seed", p->seed, err);
        if (st == DOZE_OK) st = set_u64(w, KEY_PREFIX "rng", t->rng, err);
        for (int i = 0; i < t->n_tensors && st == DOZE_OK; i++) {
            const full_tensor *x = &t->tensors[i];
            snprintf(key, sizeof key, "adam_m.%s", x->name);
            st = gguf_builder_add_f32(&b, key, (uint32_t)x->n_dims, x->ne, t->m + x->off, DOZE_TYPE_F32, err);
            if (st != DOZE_OK) break;
            snprintf(key, sizeof key, "adam_v.%s", x->name);
            st = gguf_builder_add_f32(&b, key, (uint32_t)x->n_dims, x->ne, t->v + x->off, DOZE_TYPE_F32, err);
        }
    }
    if (st == DOZE_OK) st = gguf_writer_write(b.w, fn, ctx, err);
    gguf_builder_free(&b);
    return st;
}

static doze_status get_i(const gguf_header *h, const char *key, int *out, doze_error *err) {
    int64_t v;
    doze_status st = gguf_get_int(h, key, &v, err);
    if (st != DOZE_OK) return st;
    if (v < INT32_MIN || v > INT32_MAX) return doze_fail(err, DOZE_ERR_BAD_FORMAT, "%s = %lld is out of range", key, (long long)v);
    *out = (int)v;
    return DOZE_OK;
}

static doze_status get_f(const gguf_header *h, const char *key, float *out, doze_error *err) {
    double v;
    doze_status st = gguf_get_float(h, key, &v, err);
    if (st == DOZE_OK) *out = (float)v;
    return st;
}

static doze_status get_u64(const gguf_header *h, const char *key, uint64_t *out, doze_error *err) {
    const gguf_kv *kv = gguf_find_kv(h, key);
    if (!kv) return doze_fail(err, DOZE_ERR_MISSING, "%s is absent", key);
    if (kv->value.type != GGUF_TYPE_UINT64) return doze_fail(err, DOZE_ERR_BAD_FORMAT, "%s is not a u64", key);
    *out = kv->value.v.u64;
    return DOZE_OK;
}

/* copies a stored f32 tensor of the expected shape */
static doze_status read_tensor(const gguf_header *h, const uint8_t *bytes, size_t n, const char *name,
                               const full_tensor *x, float *dst, doze_error *err) {
    const gguf_tensor *g = gguf_find_tensor(h, name);
    if (!g) return doze_fail(err, DOZE_ERR_MISSING, "checkpoint: tensor %s is absent", name);
    if (g->type != DOZE_TYPE_F32 || g->ne[0] != x->ne[0] || g->ne[1] != x->ne[1] || g->ne[2] != x->ne[2])
        return doze_fail(err, DOZE_ERR_BAD_SHAPE, "checkpoint: tensor %s is not f32 (%llu, %llu, %llu)", name,
                         (unsigned long long)x->ne[0], (unsigned long long)x->ne[1],
                         (unsigned long long)x->ne[2]);
    uint64_t at = h->data_offset + g->offset;
    if (at > n || g->n_bytes > n - at)
        return doze_fail(err, DOZE_ERR_TRUNCATED, "checkpoint: tensor %s runs past the end of the file", name);
    memcpy(dst, bytes + at, (size_t)g->n_bytes);
    return DOZE_OK;
}

doze_status doze_full_trainer_resume(const void *ckpt, size_t n, doze_full_trainer **out,
                                     doze_error *err) {
    if (!out || !ckpt) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no checkpoint or output");
    *out = NULL;
    gguf_header h;
    doze_status st = gguf_parse_header(ckpt, n, &h, err);
    if (st != DOZE_OK) return st;
    doze_full_params p = doze_full_default_params();
    int V = 0, step = 0;
    uint64_t rng = 0;
    if (!gguf_find_kv(&h, KEY_PREFIX "step")) {
        gguf_header_free(&h);
        return doze_fail(err, DOZE_ERR_MISSING, "not a training checkpoint (no " KEY_PREFIX "step)");
    }
#define I(k, dst) if (st == DOZE_OK) st = get_i(&h, k, &(dst), err)
#define FL(k, dst) if (st == DOZE_OK) st = get_f(&h, k, &(dst), err)
    I("llama.embedding_length", p.dim);
    I("llama.feed_forward_length", p.hidden_dim);
    I("llama.block_count", p.n_layers);
    I("llama.attention.head_count", p.n_heads);
    I("llama.attention.head_count_kv", p.n_kv_heads);
    I("llama.context_length", p.context);
    I(KEY_PREFIX "step", step);
    I(KEY_PREFIX "batch", p.batch);
    I(KEY_PREFIX "total_steps", p.total_steps);
    I(KEY_PREFIX "warmup_steps", p.warmup_steps);
    I(KEY_PREFIX "schedule", p.schedule);
    I(KEY_PREFIX "tied", p.tied);
    FL(KEY_PREFIX "lr", p.lr);
    FL(KEY_PREFIX "min_lr", p.min_lr);
    FL(KEY_PREFIX "weight_decay", p.weight_decay);
    FL(KEY_PREFIX "beta1", p.beta1);
    FL(KEY_PREFIX "beta2", p.beta2);
    FL(KEY_PREFIX "eps", p.eps);
    FL(KEY_PREFIX "grad_clip", p.grad_clip);
    FL(KEY_PREFIX "init_std", p.init_std);
    /* a mixture's keys (absent: dense, or a checkpoint from before mixtures) */
    if (gguf_find_kv(&h, "llama.expert_count")) {
        I("llama.expert_count", p.n_experts);
        I("llama.expert_used_count", p.n_experts_used);
    }
    if (gguf_find_kv(&h, KEY_PREFIX "balance_loss")) FL(KEY_PREFIX "balance_loss", p.balance_loss);
#undef I
#undef FL
    if (st == DOZE_OK) st = get_u64(&h, KEY_PREFIX "seed", &p.seed, err);
    if (st == DOZE_OK) st = get_u64(&h, KEY_PREFIX "rng", &rng, err);
    if (st == DOZE_OK) st = vocab_size_of(&h, &V, err);
    if (st != DOZE_OK) {
        gguf_header_free(&h);
        return st;
    }
    gguf_header keep = h; /* create() takes the header (as the vocabulary) */
    doze_full_trainer *t = NULL;
    st = create(&p, V, &h, &t, err);
    if (st != DOZE_OK) {
        gguf_header_free(&h);
        return st;
    }
    char key[96];
    for (int i = 0; i < t->n_tensors && st == DOZE_OK; i++) {
        const full_tensor *x = &t->tensors[i];
        st = read_tensor(&keep, ckpt, n, x->name, x, t->params + x->off, err);
        snprintf(key, sizeof key, "adam_m.%s", x->name);
        if (st == DOZE_OK) st = read_tensor(&keep, ckpt, n, key, x, t->m + x->off, err);
        snprintf(key, sizeof key, "adam_v.%s", x->name);
        if (st == DOZE_OK) st = read_tensor(&keep, ckpt, n, key, x, t->v + x->off, err);
    }
    if (st != DOZE_OK) {
        doze_full_trainer_free(t);
        return st;
    }
    t->step = step;
    t->rng = rng;
    full_params_changed(t);
    *out = t;
    return DOZE_OK;
}
