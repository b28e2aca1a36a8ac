/* Import of llama2.c checkpoints (legacy v0 layout) and tokenizer.bin.
 *
 * Checkpoint: 7 int32 {dim, hidden_dim, n_layers, n_heads, n_kv_heads,
 * vocab_size (negative: untied classifier), seq_len}, then float32 tensors:
 * token_embedding (vocab, dim), rms_att (L, dim), wq (L, dim, dim),
 * wk (L, kv_dim, dim), wv (L, kv_dim, dim), wo (L, dim, dim), rms_ffn (L, dim),
 * w1 (L, hidden, dim), w2 (L, dim, hidden), w3 (L, hidden, dim),
 * rms_final (dim), freq_cis real+imag (seq_len * head_dim / 2 each, skipped),
 * wcls (vocab, dim) when untied. llama2.c rotates adjacent pairs, the same
 * layout as GGUF llama, so Q and K need no permutation.
 *
 * tokenizer.bin: int32 max_token_length, then per token {f32 score,
 * int32 len, len bytes}. A space is a plain ' ', which GGUF spells U+2581. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "error.h"

#define MAX_LLAMA2C_DIM 65536

static int32_t read_i32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

static int is_byte_piece(const char *s, size_t n) {
    return n == 6 && s[0] == '<' && s[1] == '0' && s[2] == 'x' && s[5] == '>';
}

/* Reads tokenizer.bin into GGUF-style arrays (pieces re-spelled with U+2581). */
static doze_status import_tokenizer(const uint8_t *tok, size_t tok_n, int vocab, gguf_builder *out,
                                    doze_error *err) {
    char **pieces = calloc((size_t)vocab, sizeof *pieces);
    float *scores = malloc((size_t)vocab * sizeof *scores);
    int32_t *types = malloc((size_t)vocab * sizeof *types);
    doze_status st = DOZE_OK;
    if (!pieces || !scores || !types) {
        st = doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory reading the tokenizer");
        goto done;
    }
    if (tok_n < 4) {
        st = doze_fail(err, DOZE_ERR_TRUNCATED, "the tokenizer file: %zu bytes, no header", tok_n);
        goto done;
    }
    size_t at = 4;
    for (int i = 0; i < vocab; i++) {
        if (tok_n - at < 8) {
            st = doze_fail(err, DOZE_ERR_TRUNCATED, "the tokenizer file: ends at token %d of %d", i, vocab);
            goto done;
        }
        memcpy(&scores[i], tok + at, 4);
        int32_t len = read_i32(tok + at + 4);
        at += 8;
        if (len < 0 || (size_t)len > tok_n - at) {
            st = doze_fail(err, len < 0 ? DOZE_ERR_BAD_FORMAT : DOZE_ERR_TRUNCATED,
                           "the tokenizer file: token %d has length %d with %zu bytes left", i, len,
                           tok_n - at);
            goto done;
        }
        size_t spaces = 0;
        for (int32_t j = 0; j < len; j++) spaces += tok[at + (size_t)j] == ' ';
        /* each space grows to 3 bytes: keep the size within size_t (wasm32) */
        if ((size_t)len > (SIZE_MAX - 1) / 3) {
            st = doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "the tokenizer file: token %d is too long (%d bytes)",
                           i, len);
            goto done;
        }
        char *p = malloc((size_t)len + 2 * spaces + 1);
        if (!p) {
            st = doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory reading the tokenizer");
            goto done;
        }
        size_t o = 0;
        for (int32_t j = 0; j < len; j++) {
            char ch = (char)tok[at + (size_t)j];
            if (ch == ' ') {
                p[o++] = (char)0xE2; /* U+2581 LOWER ONE EIGHTH BLOCK */
                p[o++] = (char)0x96;
                p[o++] = (char)0x81;
            } else {
                p[o++] = ch;
            }
        }
        p[o] = '\0';
        pieces[i] = p;
        types[i] = i == 0 ? 2 : (i == 1 || i == 2) ? 3 : is_byte_piece(p, o) ? 6 : 1;
        at += (size_t)len;
    }
    st = gguf_builder_set_tokenizer(out, vocab, (const char *const *)pieces, scores, types, 1, 2, 0,
                                    err);
done:
    if (pieces)
        for (int i = 0; i < vocab; i++) free(pieces[i]);
    free(pieces);
    free(scores);
    free(types);
    return st;
}

doze_status convert_llama2c(const uint8_t *ckpt, size_t ckpt_n, const uint8_t *tok, size_t tok_n,
                            int type, const char *name, gguf_builder *out, doze_error *err) {
    if (ckpt_n < 28)
        return doze_fail(err, DOZE_ERR_TRUNCATED, "checkpoint: %zu bytes, shorter than the 28-byte header",
                         ckpt_n);
    int32_t hdr[7];
    for (int i = 0; i < 7; i++) hdr[i] = read_i32(ckpt + 4 * i);
    int dim = hdr[0], hidden = hdr[1], n_layers = hdr[2], n_heads = hdr[3], n_kv = hdr[4];
    /* INT32_MIN has no positive counterpart: negating it would overflow */
    int vocab = hdr[5] == INT32_MIN ? 0 : hdr[5] < 0 ? -hdr[5] : hdr[5], seq_len = hdr[6];
    int shared = hdr[5] > 0;
    /* vocab >= 3: ids 0, 1 and 2 are <unk>, <s> and </s> */
    if (dim <= 0 || dim > MAX_LLAMA2C_DIM || hidden <= 0 || hidden > 16 * MAX_LLAMA2C_DIM ||
        n_layers <= 0 || n_layers > 1024 || n_heads <= 0 || n_kv <= 0 || vocab < 3 ||
        vocab > (1 << 24) || seq_len <= 0 || seq_len > (1 << 20))
        return doze_fail(err, DOZE_ERR_BAD_FORMAT,
                         "checkpoint header {dim %d, hidden %d, layers %d, heads %d, kv_heads %d, "
                         "vocab %d, seq_len %d} is not a llama2.c model",
                         dim, hidden, n_layers, n_heads, n_kv, hdr[5], seq_len);
    if (dim % n_heads != 0 || n_heads % n_kv != 0 || (dim / n_heads) % 2 != 0)
        return doze_fail(err, DOZE_ERR_BAD_SHAPE,
                         "checkpoint: %d heads / %d kv heads do not divide dim %d into even heads",
                         n_heads, n_kv, dim);
    uint64_t hd = (uint64_t)(dim / n_heads), kv_dim = hd * (uint64_t)n_kv;
    uint64_t D = (uint64_t)dim, H = (uint64_t)hidden, L = (uint64_t)n_layers, V = (uint64_t)vocab;
    uint64_t floats = V * D + L * (D + D * D + 2 * kv_dim * D + D * D + D + 3 * H * D) + D +
                      (uint64_t)seq_len * hd + (shared ? 0 : V * D);
    if (floats > (uint64_t)(ckpt_n - 28) / 4 || floats > SIZE_MAX / sizeof(float))
        return doze_fail(err, DOZE_ERR_TRUNCATED,
                         "checkpoint: needs %llu bytes of weights, has %zu",
                         (unsigned long long)(floats * 4), ckpt_n - 28);

    /* copy to aligned floats */
    float *w = malloc((size_t)floats * sizeof(float));
    if (!w) return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for %llu weights",
                             (unsigned long long)floats);
    memcpy(w, ckpt + 28, (size_t)floats * sizeof(float));

    doze_status st = gguf_builder_set_llama(out, name, dim, hidden, n_layers, n_heads, n_kv, seq_len, err);
    if (st == DOZE_OK) st = import_tokenizer(tok, tok_n, vocab, out, err);

    const float *p = w;
    const float *embd = p;
    p += V * D;
    const float *rms_att = p;  p += L * D;
    const float *wq = p;       p += L * D * D;
    const float *wk = p;       p += L * kv_dim * D;
    const float *wv = p;       p += L * kv_dim * D;
    const float *wo = p;       p += L * D * D;
    const float *rms_ffn = p;  p += L * D;
    const float *w1 = p;       p += L * H * D;
    const float *w2 = p;       p += L * D * H;
    const float *w3 = p;       p += L * H * D;
    const float *rms_final = p; p += D;
    p += (uint64_t)seq_len * hd; /* freq_cis_real + freq_cis_imag: unused */
    const float *wcls = shared ? embd : p;

    char nm[64];
    uint64_t ne[2];
#define ADD(nmstr, c, r, src) \
    do { \
        if (st == DOZE_OK) { \
            ne[0] = (c); \
            ne[1] = (r); \
            st = gguf_builder_add_f32(out, nmstr, (r) ? 2u : 1u, ne, (src), type, err); \
        } \
    } while (0)
    ADD("token_embd.weight", D, V, embd);
    for (uint64_t l = 0; l < L && st == DOZE_OK; l++) {
        snprintf(nm, sizeof nm, "blk.%u.attn_norm.weight", (unsigned)l);   ADD(nm, D, 0, rms_att + l * D);
        snprintf(nm, sizeof nm, "blk.%u.attn_q.weight", (unsigned)l);      ADD(nm, D, D, wq + l * D * D);
        snprintf(nm, sizeof nm, "blk.%u.attn_k.weight", (unsigned)l);      ADD(nm, D, kv_dim, wk + l * kv_dim * D);
        snprintf(nm, sizeof nm, "blk.%u.attn_v.weight", (unsigned)l);      ADD(nm, D, kv_dim, wv + l * kv_dim * D);
        snprintf(nm, sizeof nm, "blk.%u.attn_output.weight", (unsigned)l); ADD(nm, D, D, wo + l * D * D);
        snprintf(nm, sizeof nm, "blk.%u.ffn_norm.weight", (unsigned)l);    ADD(nm, D, 0, rms_ffn + l * D);
        snprintf(nm, sizeof nm, "blk.%u.ffn_gate.weight", (unsigned)l);    ADD(nm, D, H, w1 + l * H * D);
        snprintf(nm, sizeof nm, "blk.%u.ffn_down.weight", (unsigned)l);    ADD(nm, H, D, w2 + l * D * H);
        snprintf(nm, sizeof nm, "blk.%u.ffn_up.weight", (unsigned)l);      ADD(nm, D, H, w3 + l * H * D);
    }
    ADD("output_norm.weight", D, 0, rms_final);
    if (!shared) ADD("output.weight", D, V, wcls);
#undef ADD
    free(w);
    return st;
}
