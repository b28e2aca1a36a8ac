/* Re-typing a GGUF: every matrix is widened to f32 and stored again in the
 * target type (vectors stay f32); the metadata is copied as it is. */
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "error.h"
#include "types.h"

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
        st = gguf_builder_add_f32(out, t->name.data, t->n_dims, t->ne, values, type, err);
    }
    free(values);
    gguf_header_free(&h);
    return st;
}
