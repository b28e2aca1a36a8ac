/* Architectures as data (arch.h) and the model configuration read from a
 * GGUF header through them. */
#include "arch.h"

#include <stdio.h>
#include <string.h>

#include "error.h"
#include "model.h"

#define MAX_DIM 65536
#define MAX_LAYERS 1024
#define MAX_HEADS 1024
#define MAX_CONTEXT (1 << 20)
#define MAX_EXPERTS 1024

static const doze_arch ARCHS[] = {
    /* name        rope          qkv_bias qk_norm experts */
    {"llama", ROPE_ADJACENT, 0, 0, ARCH_MOE_OPTIONAL},
    {"qwen2", ROPE_NEOX, 1, 0, ARCH_DENSE},
    {"qwen3", ROPE_NEOX, 0, 1, ARCH_DENSE},
    {"qwen3moe", ROPE_NEOX, 0, 1, ARCH_MOE},
};

const doze_arch *arch_find(const char *name) {
    for (size_t i = 0; i < sizeof ARCHS / sizeof ARCHS[0]; i++)
        if (strcmp(ARCHS[i].name, name) == 0) return &ARCHS[i];
    return NULL;
}

const char *arch_names(void) { return "llama, qwen2, qwen3, qwen3moe"; }

int arch_tensor_specs(const doze_model_info *c, tensor_spec *s, int cap) {
    int n = 0;
    const uint64_t q = (uint64_t)c->n_heads * (uint64_t)c->head_dim;
    const uint64_t kv = (uint64_t)c->n_kv_heads * (uint64_t)c->head_dim;
#define SPEC(nm, co, ro) \
    do { \
        if (n < cap) { \
            snprintf(s[n].name, sizeof s[n].name, "%s", nm); \
            s[n].cols = (co); \
            s[n].rows = (ro); \
            s[n].experts = 0; \
        } \
        n++; \
    } while (0)
    SPEC("token_embd.weight", c->dim, c->vocab_size);
    SPEC("output_norm.weight", c->dim, 0);
    if (!c->tied_output) SPEC("output.weight", c->dim, c->vocab_size);
    if (c->rope_freq_factors) SPEC("rope_freqs.weight", c->rope_dim / 2, 0);
    for (int l = 0; l < c->n_layers; l++) {
        char nm[64];
#define LSPEC(suffix, co, ro) \
    do { \
        snprintf(nm, sizeof nm, "blk.%d." suffix, l); \
        SPEC(nm, co, ro); \
    } while (0)
        /* the arena follows this order: a step reads K, V, then Q (per
         * head), so that its weights are one forward stream */
        LSPEC("attn_norm.weight", c->dim, 0);
        LSPEC("attn_k.weight", c->dim, kv);
        if (c->qkv_bias) LSPEC("attn_k.bias", kv, 0);
        if (c->qk_norm) LSPEC("attn_k_norm.weight", c->head_dim, 0);
        LSPEC("attn_v.weight", c->dim, kv);
        if (c->qkv_bias) LSPEC("attn_v.bias", kv, 0);
        LSPEC("attn_q.weight", c->dim, q);
        if (c->qkv_bias) LSPEC("attn_q.bias", q, 0);
        if (c->qk_norm) LSPEC("attn_q_norm.weight", c->head_dim, 0);
        LSPEC("attn_output.weight", q, c->dim);
        LSPEC("ffn_norm.weight", c->dim, 0);
        if (c->n_experts) {
            /* the router, then each expert's gate, up and down matrices
             * (expert e's rows of each stack are contiguous) */
            LSPEC("ffn_gate_inp.weight", c->dim, (uint64_t)c->n_experts);
            LSPEC("ffn_gate_exps.weight", c->dim, c->hidden_dim);
            if (n <= cap) s[n - 1].experts = (uint64_t)c->n_experts;
            LSPEC("ffn_up_exps.weight", c->dim, c->hidden_dim);
            if (n <= cap) s[n - 1].experts = (uint64_t)c->n_experts;
            LSPEC("ffn_down_exps.weight", c->hidden_dim, c->dim);
            if (n <= cap) s[n - 1].experts = (uint64_t)c->n_experts;
            continue;
        }
        LSPEC("ffn_gate.weight", c->dim, c->hidden_dim);
        LSPEC("ffn_up.weight", c->dim, c->hidden_dim);
        LSPEC("ffn_down.weight", c->hidden_dim, c->dim);
#undef LSPEC
    }
#undef SPEC
    return n;
}

/* NeoX halves <-> adjacent pairs within each head: dimension i and
 * i + rope_dim / 2 are rows 2i and 2i + 1 of the adjacent order */
static void reorder_heads(uint8_t *data, uint64_t n_rows, uint64_t row_bytes, int head_dim, int rope_dim,
                          uint8_t *tmp, int to_adjacent) {
    const int half = rope_dim / 2;
    for (uint64_t h0 = 0; h0 + (uint64_t)head_dim <= n_rows; h0 += (uint64_t)head_dim) {
        uint8_t *head = data + h0 * row_bytes;
        memcpy(tmp, head, (size_t)head_dim * row_bytes);
        for (int i = 0; i < half; i++)
            for (int k = 0; k < 2; k++) {
                const size_t neox = (size_t)(i + k * half), adjacent = (size_t)(2 * i + k);
                memcpy(head + (to_adjacent ? adjacent : neox) * row_bytes,
                       tmp + (to_adjacent ? neox : adjacent) * row_bytes, row_bytes);
            }
    }
}

void arch_neox_to_adjacent(uint8_t *data, uint64_t n_rows, uint64_t row_bytes, int head_dim, int rope_dim,
                           uint8_t *tmp) {
    reorder_heads(data, n_rows, row_bytes, head_dim, rope_dim, tmp, 1);
}

void arch_adjacent_to_neox(uint8_t *data, uint64_t n_rows, uint64_t row_bytes, int head_dim, int rope_dim,
                           uint8_t *tmp) {
    reorder_heads(data, n_rows, row_bytes, head_dim, rope_dim, tmp, 0);
}

int arch_rotated_by_rope(const char *name) {
    static const char *const parts[] = {".attn_q.weight", ".attn_k.weight", ".attn_q.bias",
                                        ".attn_k.bias",   ".attn_q_norm.",   ".attn_k_norm."};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        if (strstr(name, parts[i])) return 1;
    return 0;
}

int arch_layer_of(const char *name, const char **rest) {
    if (strncmp(name, "blk.", 4) != 0) return -1;
    const char *p = name + 4;
    int l = 0, digits = 0;
    while (*p >= '0' && *p <= '9' && digits < 6) l = l * 10 + (*p++ - '0'), digits++;
    if (!digits || *p != '.') return -1;
    if (rest) *rest = p + 1;
    return l;
}

doze_status arch_get_int(const gguf_header *h, const char *name, int64_t *out, doze_error *err) {
    const gguf_string *arch = NULL;
    doze_status st = gguf_get_string(h, "general.architecture", &arch, err);
    if (st != DOZE_OK) return st;
    char key[128];
    snprintf(key, sizeof key, "%.64s.%s", arch->data, name);
    return gguf_get_int(h, key, out, err);
}

/* reads the integer key PREFIX.name into *out, range-checked; def < 0: required */
static doze_status get_dim(const gguf_header *h, const char *arch, const char *name, int64_t def, int64_t lo,
                           int64_t hi, int *out, doze_error *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, name);
    int64_t v;
    doze_status st = gguf_get_int(h, key, &v, err);
    if (st == DOZE_ERR_MISSING && def >= 0) {
        v = def;
    } else if (st != DOZE_OK) {
        return st;
    }
    if (v < lo || v > hi)
        return doze_fail(err, DOZE_ERR_BAD_SHAPE, "%s = %lld is out of range [%lld, %lld]", key, (long long)v,
                         (long long)lo, (long long)hi);
    *out = (int)v;
    return DOZE_OK;
}

/* an optional float key PREFIX.name (missing: *out unchanged) */
static doze_status get_float(const gguf_header *h, const char *arch, const char *name, double *out, doze_error *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, name);
    doze_status st = gguf_get_float(h, key, out, err);
    if (st == DOZE_ERR_MISSING) {
        doze_error_clear(err);
        return DOZE_OK;
    }
    return st;
}

doze_status model_config_from_gguf(const gguf_header *h, const doze_model_params *p, doze_model_info *info,
                                   doze_error *err) {
    memset(info, 0, sizeof *info);
    const gguf_string *name;
    doze_status st = gguf_get_string(h, "general.architecture", &name, err);
    if (st != DOZE_OK) return st;
    const doze_arch *arch = arch_find(name->data);
    if (!arch)
        return doze_fail(err, DOZE_ERR_UNSUPPORTED_TYPE, "architecture \"%.64s\" is not supported (Doze runs %s)",
                         name->data, arch_names());
    const char *a = arch->name;
    snprintf(info->architecture, sizeof info->architecture, "%s", a);

    if ((st = get_dim(h, a, "embedding_length", -1, 1, MAX_DIM, &info->dim, err))) return st;
    if ((st = get_dim(h, a, "block_count", -1, 1, MAX_LAYERS, &info->n_layers, err))) return st;
    if ((st = get_dim(h, a, "feed_forward_length", -1, 1, 16 * MAX_DIM, &info->hidden_dim, err))) return st;
    if ((st = get_dim(h, a, "attention.head_count", -1, 1, MAX_HEADS, &info->n_heads, err))) return st;
    if ((st = get_dim(h, a, "attention.head_count_kv", info->n_heads, 1, MAX_HEADS, &info->n_kv_heads, err)))
        return st;
    if ((st = get_dim(h, a, "context_length", 2048, 1, MAX_CONTEXT, &info->context_length, err))) return st;
    if (info->n_heads % info->n_kv_heads != 0)
        return doze_fail(err, DOZE_ERR_BAD_SHAPE, "head_count_kv %d does not divide head_count %d",
                         info->n_kv_heads, info->n_heads);
    /* the head size: attention.key_length where it differs from dim / heads (qwen3) */
    int key_len = 0, value_len = 0;
    if ((st = get_dim(h, a, "attention.key_length", 0, 0, MAX_DIM, &key_len, err))) return st;
    if ((st = get_dim(h, a, "attention.value_length", key_len, 0, MAX_DIM, &value_len, err))) return st;
    /* experts: expert_count > 0 makes the FFN a mixture (qwen3moe always);
     * qwen3moe's experts are expert_feed_forward_length wide (else, as
     * llama.cpp, feed_forward_length / expert_used_count) */
    if ((st = get_dim(h, a, "expert_count", arch->experts == ARCH_MOE ? -1 : 0, 0, MAX_EXPERTS, &info->n_experts,
                      err)))
        return st;
    if (arch->experts == ARCH_DENSE) info->n_experts = 0;
    if (arch->experts == ARCH_MOE && info->n_experts == 0)
        return doze_fail(err, DOZE_ERR_BAD_SHAPE, "%s.expert_count is 0: a %s model needs experts", a, a);
    if (info->n_experts) {
        if ((st = get_dim(h, a, "expert_used_count", -1, 0, MAX_EXPERTS, &info->n_experts_used, err))) return st;
        if (info->n_experts_used < 1 || info->n_experts_used > info->n_experts)
            return doze_fail(err, DOZE_ERR_BAD_SHAPE, "%s.expert_used_count %d is not in [1, expert_count %d]", a,
                             info->n_experts_used, info->n_experts);
        if (arch->experts == ARCH_MOE &&
            (st = get_dim(h, a, "expert_feed_forward_length", info->hidden_dim / info->n_experts_used, 1,
                          16 * MAX_DIM, &info->hidden_dim, err)))
            return st;
        if (info->hidden_dim < 1)
            return doze_fail(err, DOZE_ERR_BAD_SHAPE, "%s: the experts' feed-forward length is 0", a);
    }
    if (key_len != value_len)
        return doze_fail(err, DOZE_ERR_BAD_SHAPE, "attention.key_length %d != value_length %d is not supported",
                         key_len, value_len);
    if (key_len == 0 && info->dim % info->n_heads != 0)
        return doze_fail(err, DOZE_ERR_BAD_SHAPE, "head_count %d does not divide embedding_length %d",
                         info->n_heads, info->dim);
    info->head_dim = key_len ? key_len : info->dim / info->n_heads;
    if ((st = get_dim(h, a, "rope.dimension_count", info->head_dim, 0, info->head_dim, &info->rope_dim, err)))
        return st;
    if (info->rope_dim % 2 != 0)
        return doze_fail(err, DOZE_ERR_BAD_SHAPE, "rope.dimension_count %d is odd", info->rope_dim);

    double eps = 1e-5, theta = 10000.0, scale = 1.0;
    if ((st = get_float(h, a, "attention.layer_norm_rms_epsilon", &eps, err))) return st;
    if ((st = get_float(h, a, "rope.freq_base", &theta, err))) return st;
    if (!(eps > 0.0 && eps < 1.0))
        return doze_fail(err, DOZE_ERR_BAD_FORMAT, "layer_norm_rms_epsilon %g is out of range", eps);
    if (!(theta > 0.0 && theta < 1e12))
        return doze_fail(err, DOZE_ERR_BAD_FORMAT, "rope.freq_base %g is out of range", theta);
    /* RoPE scaling: none, linear (positions / factor), or Llama 3's
     * per-frequency factors in the rope_freqs tensor */
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", a);
    const gguf_string *stype = NULL;
    if (gguf_find_kv(h, key)) {
        if ((st = gguf_get_string(h, key, &stype, err))) return st;
        if (strcmp(stype->data, "linear") == 0) {
            if ((st = get_float(h, a, "rope.scaling.factor", &scale, err))) return st;
            if (!(scale >= 1.0 && scale <= 1024.0))
                return doze_fail(err, DOZE_ERR_BAD_FORMAT, "rope.scaling.factor %g is out of range", scale);
        } else if (strcmp(stype->data, "none") != 0 && strcmp(stype->data, "llama3") != 0) {
            return doze_fail(err, DOZE_ERR_UNSUPPORTED_TYPE,
                             "rope.scaling.type \"%.32s\" is not supported (none, linear, llama3)", stype->data);
        }
    }
    info->norm_eps = (float)eps;
    info->rope_theta = (float)theta;
    info->rope_scale = (float)scale;
    info->rope_neox = arch->rope == ROPE_NEOX;
    info->rope_freq_factors = gguf_find_tensor(h, "rope_freqs.weight") != NULL;
    info->qk_norm = arch->qk_norm;
    info->qkv_bias = arch->qkv_bias || gguf_find_tensor(h, "blk.0.attn_q.bias") != NULL;

    if (p && p->context_length > 0 && p->context_length < info->context_length)
        info->context_length = p->context_length;
    /* another top-k than the file's: only a mixture has one, and k <= its experts */
    info->n_experts_used_file = info->n_experts_used;
    if (p && p->experts_used != 0) {
        if (!info->n_experts)
            return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "experts_used %d: this model is not a mixture of "
                             "experts", p->experts_used);
        if (p->experts_used < 1 || p->experts_used > info->n_experts)
            return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "experts_used %d is not in [1, %d] (the model's "
                             "experts)", p->experts_used, info->n_experts);
        info->n_experts_used = p->experts_used;
    }

    const gguf_tensor *emb = gguf_find_tensor(h, "token_embd.weight");
    if (!emb) return doze_fail(err, DOZE_ERR_MISSING, "tensor token_embd.weight is missing");
    if (emb->n_dims != 2 || emb->ne[0] != (uint64_t)info->dim || emb->ne[1] > (1u << 24))
        return doze_fail(err, DOZE_ERR_BAD_SHAPE, "tensor token_embd.weight: shape {%llu, %llu} does not match dim %d",
                         (unsigned long long)emb->ne[0], (unsigned long long)emb->ne[1], info->dim);
    info->vocab_size = (int)emb->ne[1];
    info->tied_output = gguf_find_tensor(h, "output.weight") == NULL;
    info->bos_id = info->eos_id = info->unk_id = -1;
    info->ffn_block = info->n_experts ? info->hidden_dim : model_ffn_block_of(h, info);
    if (p && p->ffn_block && (st = model_check_ffn_block(h, info, p->ffn_block, err)) != DOZE_OK) return st;
    if (p && p->ffn_block) info->ffn_block = p->ffn_block;
    info->ffn_order = 0;
    if (gguf_find_kv(h, "doze.ffn_order")) {
        int64_t order = 0;
        if ((st = gguf_get_int(h, "doze.ffn_order", &order, err)) != DOZE_OK) return st;
        if (order < 0 || order > UINT32_MAX)
            return doze_fail(err, DOZE_ERR_BAD_FORMAT, "doze.ffn_order %lld is not a u32", (long long)order);
        info->ffn_order = (uint32_t)order;
    }
    return DOZE_OK;
}
