/* Gates: cost model, router scores, decisions and the budget table (see
 * gates.h), and gate files (GGUF). */
#include "gates.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "gguf.h"
#include "types.h"
#include "model.h"
#include "moe.h"

doze_gates_params doze_gates_default_params(void) {
    doze_gates_params p;
    p.protect_layers = 1;
    p.protect_tokens = 1;
    p.ridge = 1e-2f;
    p.random_seed = 0;
    p.ffn_gates = 1;
    return p;
}

void cost_model_init(const doze_model_info *info, doze_cost_model *c) {
    double dim = info->dim, hd = info->head_dim, kv = (double)info->n_kv_heads * hd;
    c->kv = 2.0 * kv * dim;
    c->head = 2.0 * hd * dim;
    c->head_per_pos = 2.0 * hd;
    c->ffn = 3.0 * dim * (double)info->hidden_dim;
    c->ffn_channel = 3.0 * dim;
    c->router = (1.0 + info->n_heads) * dim;
    c->router_block = dim;
    c->n_layers = info->n_layers;
    c->n_heads = info->n_heads;
    c->ffn_block = info->ffn_block;
    c->n_blocks = ffn_n_blocks(info->hidden_dim, c->ffn_block);
    c->hidden = info->hidden_dim;
    c->n_experts = info->n_experts;
    c->experts_used = info->n_experts_used;
    c->expert = 3.0 * dim * (double)info->hidden_dim;
    c->moe_router = dim * (double)info->n_experts;
    if (c->n_experts) c->ffn = c->moe_router + (double)c->experts_used * c->expert;
}

double cost_block(const doze_cost_model *c, int j) {
    if (c->n_experts) return c->ffn;
    return c->ffn_channel * (double)ffn_block_width(c->hidden, c->ffn_block, j);
}

double cost_router(const doze_cost_model *c) { return c->router; }

double cost_block_router(const doze_cost_model *c, int n_blocks) {
    return (double)n_blocks * c->router_block;
}

static double cost_head(const doze_cost_model *c, int n_pos) {
    return c->head + c->head_per_pos * (double)n_pos;
}

double cost_dense(const doze_cost_model *c, int n_pos) {
    return (double)c->n_layers * (c->kv + c->ffn + (double)c->n_heads * cost_head(c, n_pos));
}

double cost_of_layer(const doze_cost_model *c, int layer_on, const uint8_t *head_on,
                     const uint8_t *blk_on, const uint8_t *expert_on, int n_pos) {
    if (!layer_on) return 0.0;
    double total = c->kv;
    double h1 = cost_head(c, n_pos);
    for (int h = 0; h < c->n_heads; h++)
        if (head_on[h]) total += h1;
    if (c->n_experts) {
        if (blk_on && !blk_on[0]) return total;
        if (!expert_on) return total + c->ffn;
        total += c->moe_router;
        for (int e = 0; e < c->n_experts; e++)
            if (expert_on[e]) total += c->expert;
        return total;
    }
    if (!blk_on) return total + c->ffn;
    for (int j = 0; j < c->n_blocks; j++)
        if (blk_on[j]) total += cost_block(c, j);
    return total;
}

doze_gates *gates_alloc(int n_layers, int n_heads, int n_blocks, int dim) {
    doze_gates *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->n_layers = n_layers;
    g->n_heads = n_heads;
    g->n_blocks = n_blocks;
    g->ffn_block = DOZE_FFN_BLOCK;
    g->dim = dim;
    g->params = doze_gates_default_params();
    size_t rows = (size_t)n_layers * (size_t)(1 + n_heads + n_blocks);
    g->router = calloc(rows * (size_t)dim, sizeof(float));
    g->bias = calloc(rows, sizeof(float));
    if (!g->router || !g->bias) {
        doze_gates_free(g);
        return NULL;
    }
    strcpy(g->kind, "training-free");
    return g;
}

void doze_gates_free(doze_gates *g) {
    if (!g) return;
    free(g->expert_bias);
    free(g->router);
    free(g->bias);
    free(g);
}

void gates_score(const doze_gates *g, const doze_model *m, int layer, const float *xn, float *z) {
    const int rows = gates_rows(g), n = 1 + g->n_heads;
    m->kern->matvec_f32(z, g->router + (size_t)layer * (size_t)rows * (size_t)g->dim, xn, n, g->dim);
    const float *b = g->bias + (size_t)layer * (size_t)rows;
    for (int i = 0; i < n; i++) z[i] += b[i];
}

void gates_score_blocks(const doze_gates *g, const doze_model *m, int layer, const float *hn, float *zb) {
    if (g->n_blocks == 0) return;
    const int rows = gates_rows(g), first = 1 + g->n_heads;
    const size_t at = (size_t)layer * (size_t)rows + (size_t)first;
    m->kern->matvec_f32(zb, g->router + at * (size_t)g->dim, hn, g->n_blocks, g->dim);
    for (int j = 0; j < g->n_blocks; j++) zb[j] += g->bias[at + (size_t)j];
}

float gates_log_lambda(const doze_gates *g, float budget) {
    float at = budget * GATES_BUDGET_STEPS;
    if (at <= 0.0f) return g->log_lambda[0];
    if (at >= GATES_BUDGET_STEPS) return g->log_lambda[GATES_BUDGET_STEPS];
    int i = (int)at;
    float f = at - (float)i;
    return g->log_lambda[i] * (1.0f - f) + g->log_lambda[i + 1] * f;
}

int gates_decide(const doze_gates *g, const doze_cost_model *c, int layer, int n_pos,
                 const float *z, float log_lambda, uint8_t *head_on) {
    double dense = cost_dense(c, n_pos);
    double h1 = cost_head(c, n_pos) / dense;
    double layer_share = (c->kv + c->ffn + c->n_heads * cost_head(c, n_pos)) / dense;
    int layer_on = layer < g->params.protect_layers || z[0] - (float)log(layer_share) >= log_lambda;
    float head_price = log_lambda + (float)log(h1);
    for (int h = 0; h < c->n_heads; h++) head_on[h] = (uint8_t)(layer_on && z[1 + h] >= head_price);
    return layer_on;
}

void gates_decide_blocks(const doze_gates *g, const doze_cost_model *c, int n_pos, const float *zb,
                         float log_lambda, uint8_t *blk_on) {
    if (g->n_blocks == 0) {
        memset(blk_on, 1, (size_t)c->n_blocks);
        return;
    }
    double dense = cost_dense(c, n_pos);
    float full_price = log_lambda + (float)log(cost_block(c, 0) / dense);
    for (int j = 0; j < c->n_blocks; j++) {
        float price = ffn_block_width(c->hidden, c->ffn_block, j) == c->ffn_block
                          ? full_price
                          : log_lambda + (float)log(cost_block(c, j) / dense);
        blk_on[j] = (uint8_t)(zb[j] >= price);
    }
}

void gates_decide_experts(const doze_gates *g, const doze_cost_model *c, int layer, int n_pos, const float *probs,
                          float log_lambda, uint8_t *on) {
    const int E = c->n_experts, k = c->experts_used;
    /* the model's top k and the sum their weights are normalized by */
    moe_top_k_of(probs, E, k, on);
    double sum = 0.0;
    for (int e = 0; e < E; e++)
        if (on[e]) sum += probs[e];
    if (!(g && g->expert_bias && g->n_experts == E && sum > 0.0)) return;
    /* an expert's price: its share of the dense compute */
    const float price = log_lambda + (float)log(c->expert / cost_dense(c, n_pos));
    memset(on, 0, (size_t)E);
    for (int i = 0; i < k; i++) {
        const int e = moe_next(probs, E, on);
        if (i > 0) {
            const double w = probs[e] / sum;
            const float z = (float)(2.0 * log(w / (1.0 - w) + 1e-30)) + g->expert_bias[(size_t)layer * E + e];
            if (!(z >= price)) break;
        }
        on[e] = 1;
    }
}

uint32_t gates_model_fingerprint(const doze_model *m) {
    /* FNV-1a over the shape and the final norm's and first layer's norm weights,
     * then the FFN order (info.ffn_order) when there is one */
    const doze_model_info *c = &m->info;
    uint32_t h = 2166136261u;
    int32_t shape[6] = {c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size};
    const uint8_t *parts[3] = {(const uint8_t *)shape, (const uint8_t *)m->output_norm,
                               (const uint8_t *)m->layers[0].attn_norm};
    size_t lens[3] = {sizeof shape, (size_t)c->dim * 4, (size_t)c->dim * 4};
    for (int p = 0; p < 3; p++)
        for (size_t i = 0; i < lens[p]; i++) {
            h ^= parts[p][i];
            h *= 16777619u;
        }
    /* a model whose FFN channels were reordered is another model
     * to its block rows (files without the key keep their fingerprint) */
    for (int b = 0; c->ffn_order && b < 4; b++) {
        h ^= (uint8_t)(c->ffn_order >> (8 * b));
        h *= 16777619u;
    }
    return h;
}

/* ---- gate files ------------------------------------------------------------
 * general.architecture = "doze-gates"; doze.gates.version = 3;
 * doze.gates.kind ("training-free" | "trained" | "random");
 * doze.gates.model.{dim, block_count, head_count, vocab_size, fingerprint};
 * doze.gates.protect_layers, doze.gates.protect_tokens;
 * doze.gates.ffn_block (the model's channels per FFN block: 16 to 256, see
 * doze_model_ffn_block) and doze.gates.ffn_blocks (NB: ceil(hidden_dim /
 * ffn_block), or 0 for gates without FFN block rows); a file with FFN block
 * rows whose ffn_block is not the model's is refused;
 * tensors gates.router (dim, 1 + n_heads + NB, n_layers), gates.bias
 * (1 + n_heads + NB, n_layers), gates.log_lambda (101).
 * MoE: doze.gates.experts (E: the model's expert count, or 0 / absent for
 * gates that leave the model's top k alone) and, when E > 0, the tensor
 * gates.expert_bias (E, n_layers) (doze_gates.expert_bias); a file whose E
 * is not the model's is refused. Readers that do not know the key run the
 * model's top k under the same file.
 *
 * Versions: 3 — FFN block rows read the FFN's input hn (after attention).
 * 2 — the same layout, but block rows read the layer input xn: files with
 * FFN block rows are refused (their block rows mean something else), files
 * with ffn_blocks = 0 (heads + layers only) load as they are. 1 — no FFN
 * block keys: heads + layers only. */

doze_status doze_gates_save(const doze_gates *g, int (*fn)(void *ctx, const void *bytes, size_t n),
                            void *ctx, doze_error *err) {
    if (!g || !fn) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no gates or writer");
    gguf_writer *w = gguf_writer_new(GGUF_DEFAULT_ALIGNMENT);
    if (!w) return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory");
    doze_status st = DOZE_OK;
    uint64_t ne_r[3] = {(uint64_t)g->dim, (uint64_t)gates_rows(g), (uint64_t)g->n_layers};
    uint64_t ne_b[2] = {(uint64_t)gates_rows(g), (uint64_t)g->n_layers};
    uint64_t ne_l[1] = {GATES_BUDGET_STEPS + 1};
    if (!st) st = gguf_writer_set_str(w, "general.architecture", "doze-gates", err);
    if (!st) st = gguf_writer_set_u32(w, "doze.gates.version", GATES_FILE_VERSION, err);
    if (!st) st = gguf_writer_set_u32(w, "doze.gates.ffn_block", (uint32_t)g->ffn_block, err);
    if (!st) st = gguf_writer_set_u32(w, "doze.gates.ffn_blocks", (uint32_t)g->n_blocks, err);
    if (!st) st = gguf_writer_set_str(w, "doze.gates.kind", g->kind, err);
    if (!st) st = gguf_writer_set_u32(w, "doze.gates.model.dim", (uint32_t)g->dim, err);
    if (!st) st = gguf_writer_set_u32(w, "doze.gates.model.block_count", (uint32_t)g->n_layers, err);
    if (!st) st = gguf_writer_set_u32(w, "doze.gates.model.head_count", (uint32_t)g->n_heads, err);
    if (!st) st = gguf_writer_set_u32(w, "doze.gates.model.vocab_size", (uint32_t)g->vocab_size, err);
    if (!st) st = gguf_writer_set_u32(w, "doze.gates.model.fingerprint", g->fingerprint, err);
    if (!st) st = gguf_writer_set_u32(w, "doze.gates.protect_layers", (uint32_t)g->params.protect_layers, err);
    if (!st) st = gguf_writer_set_u32(w, "doze.gates.protect_tokens", (uint32_t)g->params.protect_tokens, err);
    if (!st) st = gguf_writer_add_tensor(w, "gates.router", DOZE_TYPE_F32, 3, ne_r, g->router, err);
    if (!st) st = gguf_writer_add_tensor(w, "gates.bias", DOZE_TYPE_F32, 2, ne_b, g->bias, err);
    if (!st) st = gguf_writer_add_tensor(w, "gates.log_lambda", DOZE_TYPE_F32, 1, ne_l, g->log_lambda, err);
    if (!st && g->expert_bias) {
        uint64_t ne_e[2] = {(uint64_t)g->n_experts, (uint64_t)g->n_layers};
        st = gguf_writer_set_u32(w, "doze.gates.experts", (uint32_t)g->n_experts, err);
        if (!st) st = gguf_writer_add_tensor(w, "gates.expert_bias", DOZE_TYPE_F32, 2, ne_e, g->expert_bias, err);
    }
    if (!st) st = gguf_writer_write(w, fn, ctx, err);
    gguf_writer_free(w);
    return st;
}

static doze_status expect_u32(const gguf_header *h, const char *key, int64_t want, doze_error *err) {
    int64_t v;
    doze_status st = gguf_get_int(h, key, &v, err);
    if (st != DOZE_OK) return st;
    if (v != want)
        return doze_fail(err, DOZE_ERR_BAD_SHAPE, "gate file: %s is %lld, the model has %lld", key,
                         (long long)v, (long long)want);
    return DOZE_OK;
}

static doze_status read_f32_tensor(const gguf_header *h, const uint8_t *bytes, size_t n,
                                   const char *name, uint64_t count, float *dst, doze_error *err) {
    const gguf_tensor *t = gguf_find_tensor(h, name);
    if (!t) return doze_fail(err, DOZE_ERR_MISSING, "gate file: tensor %s is missing", name);
    if (t->type != DOZE_TYPE_F32 || t->n_bytes != count * 4)
        return doze_fail(err, DOZE_ERR_BAD_SHAPE, "gate file: tensor %s is not %llu f32 values", name,
                         (unsigned long long)count);
    if (h->data_offset + t->offset + t->n_bytes > n)
        return doze_fail(err, DOZE_ERR_TRUNCATED, "gate file: tensor %s past the end of the file", name);
    memcpy(dst, bytes + h->data_offset + t->offset, (size_t)t->n_bytes);
    for (uint64_t i = 0; i < count; i++)
        if (!isfinite(dst[i]))
            return doze_fail(err, DOZE_ERR_BAD_FORMAT, "gate file: tensor %s holds a non-finite value", name);
    return DOZE_OK;
}

doze_status doze_gates_load(const doze_model *m, const void *bytes, size_t n, doze_gates **out,
                            doze_error *err) {
    if (!m || !bytes || !out) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no model, bytes or output");
    *out = NULL;
    gguf_header h;
    doze_status st = gguf_parse_header(bytes, n, &h, err);
    if (st != DOZE_OK) return st;
    const doze_model_info *c = &m->info;
    const gguf_string *arch = NULL;
    doze_gates *g = NULL;
    st = gguf_get_string(&h, "general.architecture", &arch, err);
    if (st == DOZE_OK && strcmp(arch->data, "doze-gates") != 0)
        st = doze_fail(err, DOZE_ERR_UNSUPPORTED_TYPE, "not a gate file (architecture \"%.64s\")",
                       arch->data);
    int64_t version = 0, n_blocks = 0;
    if (!st) st = gguf_get_int(&h, "doze.gates.version", &version, err);
    if (!st && (version < 1 || version > GATES_FILE_VERSION))
        st = doze_fail(err, DOZE_ERR_UNSUPPORTED_VERSION, "gate file version %lld (this reads 1 to %d)",
                       (long long)version, GATES_FILE_VERSION);
    /* which model first: advice about the block size is for this model's own file */
    if (!st) st = expect_u32(&h, "doze.gates.model.dim", c->dim, err);
    if (!st) st = expect_u32(&h, "doze.gates.model.block_count", c->n_layers, err);
    if (!st) st = expect_u32(&h, "doze.gates.model.head_count", c->n_heads, err);
    if (!st) st = expect_u32(&h, "doze.gates.model.vocab_size", c->vocab_size, err);
    if (!st) {
        int64_t fp = 0;
        st = gguf_get_int(&h, "doze.gates.model.fingerprint", &fp, err);
        if (!st && (uint32_t)fp != gates_model_fingerprint(m))
            st = doze_fail(err, DOZE_ERR_BAD_FORMAT,
                           "gate file belongs to another model (fingerprint %08x, this model %08x)",
                           (unsigned)fp, (unsigned)gates_model_fingerprint(m));
    }
    if (!st && version >= 2) {
        int64_t fb = 0;
        st = gguf_get_int(&h, "doze.gates.ffn_block", &fb, err);
        if (!st) st = gguf_get_int(&h, "doze.gates.ffn_blocks", &n_blocks, err);
        /* the block size matters only to files with FFN block rows */
        if (!st && n_blocks != 0 && fb != c->ffn_block)
            st = doze_fail(err, DOZE_ERR_BAD_SHAPE,
                           "gate file: FFN blocks of %lld channels (doze.gates.ffn_block), the model's "
                           "are %d channels; load the model with FFN blocks of %lld (ffnBlock, --ffn-block) "
                           "or make the gate file again for this model",
                           (long long)fb, c->ffn_block, (long long)fb);
        if (!st && n_blocks != 0 && n_blocks != m->n_ffn_blocks)
            st = doze_fail(err, DOZE_ERR_BAD_SHAPE,
                           "gate file: doze.gates.ffn_blocks is %lld, the model has %d FFN blocks",
                           (long long)n_blocks, m->n_ffn_blocks);
        if (!st && version == 2 && n_blocks != 0)
            st = doze_fail(err, DOZE_ERR_UNSUPPORTED_VERSION,
                           "gate file version 2 with FFN block gates: its block gates read the layer's "
                           "input, this version's read the FFN's input (after attention); make the gate "
                           "file again (doze gates / doze finetune)");
    }
    if (!st) {
        g = gates_alloc(c->n_layers, c->n_heads, (int)n_blocks, c->dim);
        if (g) g->ffn_block = c->ffn_block;
        if (!g) st = doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for gates");
    }
    if (!st) {
        int64_t v;
        g->vocab_size = c->vocab_size;
        g->fingerprint = gates_model_fingerprint(m);
        if (gguf_get_int(&h, "doze.gates.protect_layers", &v, NULL) == DOZE_OK && v >= 0 && v <= c->n_layers)
            g->params.protect_layers = (int)v;
        if (gguf_get_int(&h, "doze.gates.protect_tokens", &v, NULL) == DOZE_OK && v >= 0 && v < (1 << 20))
            g->params.protect_tokens = (int)v;
        const gguf_string *kind = NULL;
        if (gguf_get_string(&h, "doze.gates.kind", &kind, NULL) == DOZE_OK)
            snprintf(g->kind, sizeof g->kind, "%s", kind->data);
        uint64_t rows = (uint64_t)c->n_layers * (uint64_t)gates_rows(g);
        st = read_f32_tensor(&h, bytes, n, "gates.router", rows * (uint64_t)c->dim, g->router, err);
        if (!st) st = read_f32_tensor(&h, bytes, n, "gates.bias", rows, g->bias, err);
        if (!st)
            st = read_f32_tensor(&h, bytes, n, "gates.log_lambda", GATES_BUDGET_STEPS + 1,
                                 g->log_lambda, err);
        int64_t ne = 0;
        if (!st && gguf_get_int(&h, "doze.gates.experts", &ne, NULL) == DOZE_OK && ne != 0) {
            if (ne != c->n_experts)
                st = doze_fail(err, DOZE_ERR_BAD_SHAPE, "gate file: doze.gates.experts is %lld, the model has %d experts",
                               (long long)ne, c->n_experts);
            else if (!(g->expert_bias = malloc((size_t)c->n_layers * (size_t)ne * sizeof(float))))
                st = doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for gates");
            else {
                g->n_experts = (int)ne;
                st = read_f32_tensor(&h, bytes, n, "gates.expert_bias", (uint64_t)c->n_layers * (uint64_t)ne,
                                     g->expert_bias, err);
            }
        }
    }
    gguf_header_free(&h);
    if (st != DOZE_OK) {
        doze_gates_free(g);
        return st;
    }
    doze_error_clear(err);
    *out = g;
    return DOZE_OK;
}
