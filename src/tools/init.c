/* Seeded random llama models of any shape, for tests and benchmarks.
 * Weights are uniform in +-1/sqrt(fan_in) (xorshift64*, seed given), norms
 * are 1 + small noise (the embedding and an untied classifier: +-embd_scale,
 * default 1); the tokenizer is synthetic: <unk>, <s>, </s>, the 256
 * byte tokens, the space piece U+2581, then made-up words built from letters. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "error.h"

static uint64_t next_u64(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

/* uniform in [-1, 1) */
static float next_sym(uint64_t *s) { return (float)((next_u64(s) >> 40) / 8388608.0 - 1.0); }

static void fill(float *x, uint64_t n, float scale, float offset, uint64_t *s) {
    for (uint64_t i = 0; i < n; i++) x[i] = offset + scale * next_sym(s);
}

static doze_status synth_tokenizer(int vocab, gguf_builder *out, doze_error *err) {
    char **pieces = calloc((size_t)vocab, sizeof *pieces);
    float *scores = malloc((size_t)vocab * sizeof *scores);
    int32_t *types = malloc((size_t)vocab * sizeof *types);
    doze_status st = DOZE_OK;
    if (!pieces || !scores || !types) {
        st = doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for a tokenizer");
        goto done;
    }
    for (int i = 0; i < vocab && st == DOZE_OK; i++) {
        char buf[32];
        if (i == 0) {
            snprintf(buf, sizeof buf, "<unk>");
            types[i] = 2;
        } else if (i == 1 || i == 2) {
            snprintf(buf, sizeof buf, i == 1 ? "<s>" : "</s>");
            types[i] = 3;
        } else if (i < 3 + 256) {
            snprintf(buf, sizeof buf, "<0x%02X>", i - 3);
            types[i] = 6;
        } else if (i == 3 + 256) {
            /* the space piece, so that spaces do not fall back to the bytes
             * of U+2581 (which would decode as the character itself) */
            snprintf(buf, sizeof buf, "\xE2\x96\x81");
            types[i] = 1;
        } else {
            /* word j: U+2581 then letters of j in base 26, or bare letters */
            int j = i - 260, o = 0;
            if (j % 2 == 0) {
                buf[o++] = (char)0xE2;
                buf[o++] = (char)0x96;
                buf[o++] = (char)0x81;
            }
            j /= 2;
            do {
                buf[o++] = (char)('a' + j % 26);
                j /= 26;
            } while (j > 0 && o < 30);
            buf[o] = '\0';
            types[i] = 1;
        }
        scores[i] = i < 259 ? 0.0f : -(float)(i - 259);
        pieces[i] = malloc(strlen(buf) + 1);
        if (!pieces[i]) st = doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for a tokenizer");
        else strcpy(pieces[i], buf);
    }
    if (st == DOZE_OK)
        st = gguf_builder_set_tokenizer(out, vocab, (const char *const *)pieces, scores, types, 1, 2,
                                        0, err);
done:
    if (pieces)
        for (int i = 0; i < vocab; i++) free(pieces[i]);
    free(pieces);
    free(scores);
    free(types);
    return st;
}

/* Llama 3.1's RoPE frequency factors (rope_freqs.weight) for rope_dim / 2
 * pairs: long wavelengths slowed 8x, short ones kept, a smooth ramp between
 * (original context 8192, low/high frequency factors 1 and 4). */
static void llama3_freq_factors(float *out, int pairs, float theta, int rope_dim) {
    const double factor = 8.0, low = 1.0, high = 4.0, old_ctx = 8192.0;
    const double low_wavelen = old_ctx / low, high_wavelen = old_ctx / high;
    for (int i = 0; i < pairs; i++) {
        double freq = 1.0 / pow((double)theta, (double)(2 * i) / rope_dim);
        double wavelen = 2.0 * 3.14159265358979323846 / freq;
        if (wavelen < high_wavelen) out[i] = 1.0f;
        else if (wavelen > low_wavelen) out[i] = (float)factor;
        else {
            double smooth = (old_ctx / wavelen - low) / (high - low);
            out[i] = (float)(1.0 / ((1.0 - smooth) / factor + smooth));
        }
    }
}

doze_status convert_init_random(const doze_init_params *p, gguf_builder *out, doze_error *err) {
    const char *arch = p->arch ? p->arch : "llama";
    const int llama3 = strcmp(arch, "llama3") == 0, qwen2 = strcmp(arch, "qwen2") == 0,
              qwen3moe = strcmp(arch, "qwen3moe") == 0, qwen3 = qwen3moe || strcmp(arch, "qwen3") == 0;
    if (!llama3 && !qwen2 && !qwen3 && strcmp(arch, "llama") != 0)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "init: architecture \"%.32s\" is not one of llama, llama3, "
                         "qwen2, qwen3, qwen3moe", arch);
    const int E = p->n_experts, K = p->n_experts_used;
    if (E < 0 || E > 1024 || (E > 0 && (K < 1 || K > E)) || (qwen3moe && E == 0) || (E > 0 && (qwen2 || (qwen3 && !qwen3moe))))
        return doze_fail(err, DOZE_ERR_BAD_SHAPE,
                         "init: %d experts, top-%d is not a valid mixture for %s (experts in [1, 1024] for llama, "
                         "llama3 or qwen3moe, which needs them; top-k in [1, experts])",
                         E, K, arch);
    const int hd = p->head_dim ? p->head_dim : (p->n_heads > 0 ? p->dim / p->n_heads : 0);
    if (p->dim <= 0 || p->hidden_dim <= 0 || p->n_layers <= 0 || p->n_heads <= 0 ||
        p->n_kv_heads <= 0 || p->vocab_size < 3 || p->context_length <= 0 || p->head_dim < 0 ||
        (p->head_dim == 0 && p->dim % p->n_heads != 0) || p->n_heads % p->n_kv_heads != 0 || hd % 2 ||
        hd <= 0 || hd > 4096 || p->dim > 65536 || p->hidden_dim > 16 * 65536 || p->n_layers > 1024 ||
        p->vocab_size > (1 << 24) || p->context_length > (1 << 20))
        return doze_fail(err, DOZE_ERR_BAD_SHAPE,
                         "init: dim %d, hidden %d, layers %d, heads %d, kv heads %d, head dim %d, vocab %d, ctx %d "
                         "is not a valid shape (heads must divide dim into even head sizes unless a head dim is "
                         "given, kv heads must divide heads, vocab >= 3; at most dim 65536, hidden 1048576, "
                         "1024 layers, vocab 2^24, ctx 2^20)",
                         p->dim, p->hidden_dim, p->n_layers, p->n_heads, p->n_kv_heads, hd, p->vocab_size,
                         p->context_length);
    uint64_t seed = p->seed ? p->seed : 0x9E3779B97F4A7C15ull;
    uint64_t D = (uint64_t)p->dim, H = (uint64_t)p->hidden_dim, V = (uint64_t)p->vocab_size;
    uint64_t Q = (uint64_t)hd * (uint64_t)p->n_heads, kv = (uint64_t)hd * (uint64_t)p->n_kv_heads;
    /* the largest tensor: (V, D), (Q, D), (H, D) or (D, H) */
    uint64_t widest = V > H ? V : H;
    if (D > widest) widest = D;
    if (Q > widest) widest = Q;
    uint64_t largest = widest * (D > Q ? D : Q);
    if (E > 0 && (uint64_t)E * H * D > largest) largest = (uint64_t)E * H * D; /* a stack of experts */
    if (largest > SIZE_MAX / sizeof(float))
        return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "init: a %llu x %llu tensor does not fit in memory",
                         (unsigned long long)widest, (unsigned long long)D);
    float *buf = malloc((size_t)largest * sizeof(float));
    if (!buf) return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for init");
    const float theta = llama3 ? 500000.0f : (qwen2 || qwen3) ? 1000000.0f : 10000.0f;
    doze_status st = gguf_builder_set_arch(out, llama3 ? "llama" : arch, "doze-init", p->dim, p->hidden_dim,
                                           p->n_layers, p->n_heads, p->n_kv_heads, p->head_dim, p->context_length,
                                           theta, err);
    /* llama.cpp's mixture keys; qwen3moe's experts are expert_feed_forward_length wide */
    if (st == DOZE_OK && E > 0)
        st = gguf_builder_set_experts(out, qwen3moe ? "qwen3moe" : "llama", E, K, qwen3moe ? p->hidden_dim : 0, err);
    if (st == DOZE_OK) st = synth_tokenizer(p->vocab_size, out, err);
    char nm[64];
    uint64_t ne[2];
#define ADD(nmstr, c, r, scale, offset) \
    do { \
        if (st == DOZE_OK) { \
            ne[0] = (c); \
            ne[1] = (r); \
            fill(buf, (c) * ((r) ? (r) : 1), (scale), (offset), &seed); \
            st = gguf_builder_add_f32(out, nmstr, (r) ? 2u : 1u, ne, buf, \
                                      convert_tensor_type(p->type, nmstr, (r) ? 2u : 1u, ne, p->n_layers, \
                                                          !p->untied), \
                                      err); \
        } \
    } while (0)
    float sd = 1.0f / sqrtf((float)D), sh = 1.0f / sqrtf((float)H), sq = 1.0f / sqrtf((float)Q);
    ADD("token_embd.weight", D, V, p->embd_scale > 0.0f ? p->embd_scale : 1.0f, 0.0f);
    if (llama3 && st == DOZE_OK) {
        ne[0] = (uint64_t)hd / 2;
        llama3_freq_factors(buf, hd / 2, theta, hd);
        st = gguf_builder_add_f32(out, "rope_freqs.weight", 1u, ne, buf, DOZE_TYPE_F32, err);
    }
    for (int l = 0; l < p->n_layers && st == DOZE_OK; l++) {
        snprintf(nm, sizeof nm, "blk.%d.attn_norm.weight", l);   ADD(nm, D, 0, 0.1f, 1.0f);
        snprintf(nm, sizeof nm, "blk.%d.attn_q.weight", l);      ADD(nm, D, Q, sd, 0.0f);
        snprintf(nm, sizeof nm, "blk.%d.attn_k.weight", l);      ADD(nm, D, kv, sd, 0.0f);
        snprintf(nm, sizeof nm, "blk.%d.attn_v.weight", l);      ADD(nm, D, kv, sd, 0.0f);
        if (qwen2) {
            snprintf(nm, sizeof nm, "blk.%d.attn_q.bias", l);    ADD(nm, Q, 0, 0.5f, 0.0f);
            snprintf(nm, sizeof nm, "blk.%d.attn_k.bias", l);    ADD(nm, kv, 0, 0.5f, 0.0f);
            snprintf(nm, sizeof nm, "blk.%d.attn_v.bias", l);    ADD(nm, kv, 0, 0.5f, 0.0f);
        }
        if (qwen3) {
            snprintf(nm, sizeof nm, "blk.%d.attn_q_norm.weight", l); ADD(nm, (uint64_t)hd, 0, 0.1f, 1.0f);
            snprintf(nm, sizeof nm, "blk.%d.attn_k_norm.weight", l); ADD(nm, (uint64_t)hd, 0, 0.1f, 1.0f);
        }
        snprintf(nm, sizeof nm, "blk.%d.attn_output.weight", l); ADD(nm, Q, D, sq, 0.0f);
        snprintf(nm, sizeof nm, "blk.%d.ffn_norm.weight", l);    ADD(nm, D, 0, 0.1f, 1.0f);
        if (E > 0) {
            /* the router (kept f32, as llama.cpp's quantizer keeps it), then
             * the stacks {cols, rows, experts} */
            snprintf(nm, sizeof nm, "blk.%d.ffn_gate_inp.weight", l);
            if (st == DOZE_OK) {
                ne[0] = D;
                ne[1] = (uint64_t)E;
                fill(buf, D * (uint64_t)E, 4.0f * sd, 0.0f, &seed);
                st = gguf_builder_add_f32(out, nm, 2u, ne, buf, DOZE_TYPE_F32, err);
            }
            static const char *const stacks[3] = {"ffn_gate_exps", "ffn_down_exps", "ffn_up_exps"};
            for (int i = 0; i < 3 && st == DOZE_OK; i++) {
                uint64_t ne3[3] = {i == 1 ? H : D, i == 1 ? D : H, (uint64_t)E};
                snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, stacks[i]);
                fill(buf, D * H * (uint64_t)E, i == 1 ? sh : sd, 0.0f, &seed);
                st = gguf_builder_add_f32(out, nm, 3u, ne3, buf,
                                          convert_tensor_type(p->type, nm, 3u, ne3, p->n_layers, 1), err);
            }
            continue;
        }
        snprintf(nm, sizeof nm, "blk.%d.ffn_gate.weight", l);    ADD(nm, D, H, sd, 0.0f);
        snprintf(nm, sizeof nm, "blk.%d.ffn_down.weight", l);    ADD(nm, H, D, sh, 0.0f);
        snprintf(nm, sizeof nm, "blk.%d.ffn_up.weight", l);      ADD(nm, D, H, sd, 0.0f);
    }
    ADD("output_norm.weight", D, 0, 0.1f, 1.0f);
    if (p->untied) ADD("output.weight", D, V, p->embd_scale > 0.0f ? p->embd_scale : 1.0f, 0.0f);
#undef ADD
    free(buf);
    return st;
}
