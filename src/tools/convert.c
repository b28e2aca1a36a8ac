/* Re-typing a GGUF: every matrix is widened to f32 and stored again in the
 * target type or mix (vectors stay f32); the metadata is copied as it is. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "error.h"
#include "types.h"

int convert_type_from_name(const char *name) {
    char low[16];
    size_t i = 0;
    for (; name[i] && i + 1 < sizeof low; i++) low[i] = (char)tolower((unsigned char)name[i]);
    if (name[i]) return -1;
    low[i] = '\0';
    if (strcmp(low, "q4_k_m") == 0) return DOZE_CONVERT_Q4_K_M;
    return doze_type_from_name(low);
}

/* llama.cpp's use_more_bits: the layers whose attn_v / ffn_down get more
 * bits in the _M mixes */
static int use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

static int ends_with(const char *s, const char *tail) {
    size_t n = strlen(s), m = strlen(tail);
    return n >= m && strcmp(s + n - m, tail) == 0;
}

int convert_tensor_type(int target, const char *name, uint32_t n_dims, const uint64_t *ne, int n_layers,
                        int tied) {
    if (n_dims < 2) return DOZE_TYPE_F32;
    /* a mixture's router stays f32, as llama.cpp's quantizer keeps it */
    if (strstr(name, "ffn_gate_inp.weight")) return DOZE_TYPE_F32;
    int type = target;
    if (target == DOZE_CONVERT_Q4_K_M) {
        int layer = -1;
        if (sscanf(name, "blk.%d.", &layer) != 1) layer = -1;
        type = DOZE_TYPE_Q4_K;
        if (strcmp(name, "output.weight") == 0 || (tied && strcmp(name, "token_embd.weight") == 0))
            type = DOZE_TYPE_Q6_K;
        else if ((ends_with(name, "attn_v.weight") || ends_with(name, "ffn_down.weight")) && layer >= 0 &&
                 use_more_bits(layer, n_layers))
            type = DOZE_TYPE_Q6_K;
    }
    const doze_type_traits *t = doze_type_traits_of(type);
    if (!t) return -1;
    if (ne[0] % (uint64_t)t->block_size == 0) return type;
    /* llama.cpp's fallbacks for rows that are not whole super-blocks (a
     * type of 32-value blocks at about the same bits), f16 when even those
     * do not fit; other types keep such a matrix in f32 */
    int fb = type == DOZE_TYPE_Q4_K ? DOZE_TYPE_Q5_0
             : type == DOZE_TYPE_Q5_K ? DOZE_TYPE_Q5_1
             : type == DOZE_TYPE_Q6_K ? DOZE_TYPE_Q8_0
             : type == DOZE_TYPE_Q2_K || type == DOZE_TYPE_Q3_K || type == DOZE_TYPE_IQ4_XS ? DOZE_TYPE_IQ4_NL
                                      : -1;
    if (fb < 0) return DOZE_TYPE_F32;
    return ne[0] % DOZE_QK8_0 == 0 ? fb : DOZE_TYPE_F16;
}

/* llama.cpp's llama_ftype of a conversion target: what general.file_type
 * says of a file (llama.cpp prints it as the model's type, hub tools list
 * files by it). A single K-quant is the label llama-quantize --pure gives
 * it (q4_k: Q4_K_S); -1 for a target without one. */
int convert_file_type(int target) {
    switch (target) {
    case DOZE_TYPE_F32: return 0;
    case DOZE_TYPE_F16: return 1;
    case DOZE_TYPE_Q4_0: return 2;
    case DOZE_TYPE_Q4_1: return 3;
    case DOZE_TYPE_Q8_0: return 7;
    case DOZE_TYPE_Q5_0: return 8;
    case DOZE_TYPE_Q5_1: return 9;
    case DOZE_TYPE_Q2_K: return 10;
    case DOZE_TYPE_Q3_K: return 11;
    case DOZE_TYPE_Q4_K: return 14;
    case DOZE_CONVERT_Q4_K_M: return 15;
    case DOZE_TYPE_Q5_K: return 16;
    case DOZE_TYPE_Q6_K: return 18;
    case DOZE_TYPE_IQ4_NL: return 25;
    case DOZE_TYPE_IQ4_XS: return 30;
    case DOZE_TYPE_BF16: return 32;
    default: return -1;
    }
}

doze_status convert_retype(const uint8_t *file, size_t n, int type, gguf_builder *out,
                           doze_error *err) {
    gguf_header h;
    doze_status st = gguf_parse_header(file, n, &h, err);
    if (st != DOZE_OK) return st;
    if (h.data_offset + h.data_size > n) {
        /* name the first tensor that does not fit */
        const gguf_tensor *bad = NULL;
        for (uint64_t i = 0; i < h.n_tensors && !bad; i++)
            if (h.data_offset + h.tensors[i].offset + h.tensors[i].n_bytes > n) bad = &h.tensors[i];
        if (bad)
            st = doze_fail(err, DOZE_ERR_TRUNCATED, "tensor %.96s: offset %llu + size %llu past end of file (%zu)",
                           bad->name.data, (unsigned long long)(h.data_offset + bad->offset),
                           (unsigned long long)bad->n_bytes, n);
        else
            st = doze_fail(err, DOZE_ERR_TRUNCATED, "file has %zu bytes, its tensors need %llu", n,
                           (unsigned long long)(h.data_offset + h.data_size));
        gguf_header_free(&h);
        return st;
    }
    st = gguf_writer_copy_kvs(out->w, &h, err);
    /* The copied general.file_type is the source's (a hub F16 file says 1,
     * MOSTLY_F16): left so, a Q4_K_M file would call itself F16 to llama.cpp
     * and to hub tools. Set the target's, and the quantization version
     * llama.cpp's quantizer writes (GGML_QNT_VERSION 2) with it. */
    const int ftype = convert_file_type(type);
    if (st == DOZE_OK && ftype >= 0) st = gguf_writer_set_u32(out->w, "general.file_type", (uint32_t)ftype, err);
    if (st == DOZE_OK) st = gguf_writer_set_u32(out->w, "general.quantization_version", 2u, err);
    /* what the mixes need to know of the model: its layers, a classifier */
    int n_layers = 0, tied = 1;
    for (uint64_t i = 0; i < h.n_tensors; i++) {
        int l;
        if (sscanf(h.tensors[i].name.data, "blk.%d.", &l) == 1 && l >= n_layers) n_layers = l + 1;
        if (strcmp(h.tensors[i].name.data, "output.weight") == 0) tied = 0;
    }
    float *values = NULL;
    for (uint64_t i = 0; i < h.n_tensors && st == DOZE_OK; i++) {
        const gguf_tensor *t = &h.tensors[i];
        const doze_type_traits *tr = doze_type_traits_of((int)t->type);
        uint64_t count = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]; /* < 2^63: checked by the parser */
        if (!tr || count > SIZE_MAX / sizeof(float)) {
            st = doze_fail(err, tr ? DOZE_ERR_OUT_OF_MEMORY : DOZE_ERR_UNSUPPORTED_TYPE,
                           "tensor %s: %llu values cannot be converted here", t->name.data,
                           (unsigned long long)count);
            break;
        }
        float *nv = realloc(values, (size_t)count * sizeof(float));
        if (!nv) {
            st = doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for tensor %s", t->name.data);
            break;
        }
        values = nv;
        uint64_t row_bytes = doze_type_row_bytes((int)t->type, t->ne[0]);
        const uint8_t *src = file + h.data_offset + t->offset;
        for (uint64_t r = 0; r < count / t->ne[0]; r++)
            tr->dequantize_row(src + r * row_bytes, values + r * t->ne[0], (int64_t)t->ne[0]);
        const int tt = convert_tensor_type(type, t->name.data, t->n_dims, t->ne, n_layers, tied);
        st = gguf_builder_add_f32(out, t->name.data, t->n_dims, t->ne, values, tt < 0 ? type : tt, err);
    }
    free(values);
    gguf_header_free(&h);
    return st;
}
