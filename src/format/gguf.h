/* GGUF v3 (v2 accepted) reader and writer.
 *
 * Reading is split in two so that the loader can stream: gguf_parse_header()
 * parses the header + metadata + tensor table from the bytes seen so far and
 * says DOZE_ERR_TRUNCATED while it needs more; the tensor data that follows is
 * routed by the caller (see loader.c) straight to its final place.
 *
 * File layout (little-endian): magic "GGUF", u32 version, u64 n_tensors,
 * u64 n_kv, n_kv x {string key, u32 type, value}, n_tensors x {string name,
 * u32 n_dims, u64 ne[n_dims], u32 type, u64 offset}, padding to
 * general.alignment (default 32), tensor data. A string is u64 len + bytes.
 */
#ifndef DOZE_GGUF_H
#define DOZE_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "doze.h"

#define GGUF_MAGIC 0x46554747u /* "GGUF" read as a little-endian u32 */
#define GGUF_DEFAULT_ALIGNMENT 32u
#define GGUF_MAX_DIMS 4

typedef enum {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT_ = 13
} gguf_value_type;

typedef struct {
    uint64_t len; /* bytes, without the terminator */
    char *data;   /* owned copy, NUL-terminated (may contain NULs inside) */
} gguf_string;

typedef struct gguf_value gguf_value;
struct gguf_value {
    uint32_t type; /* gguf_value_type */
    union {
        uint8_t u8;
        int8_t i8;
        uint16_t u16;
        int16_t i16;
        uint32_t u32;
        int32_t i32;
        float f32;
        uint8_t b; /* BOOL: 0 or 1 */
        uint64_t u64;
        int64_t i64;
        double f64;
        gguf_string str;
        struct {
            uint32_t type; /* element type */
            uint64_t n;
            /* scalars: packed native values (n * size); STRING: gguf_string[n];
             * ARRAY: gguf_value[n], each of type ARRAY */
            void *data;
        } arr;
    } v;
};

typedef struct {
    gguf_string key;
    gguf_value value;
} gguf_kv;

typedef struct {
    gguf_string name;
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the fastest-varying (columns); unused dims are 1 */
    uint32_t type;              /* a doze_type / ggml type id */
    uint64_t offset;            /* relative to the start of the data section */
    uint64_t n_bytes;           /* computed from type and ne */
} gguf_tensor;

typedef struct {
    uint32_t version;
    uint32_t alignment;
    uint64_t n_kv;
    gguf_kv *kv;
    uint64_t n_tensors;
    gguf_tensor *tensors;
    uint64_t data_offset; /* absolute file offset of the data section */
    uint64_t data_size;   /* end of the last tensor, relative to data_offset */
} gguf_header;

/* Size in bytes of one value of a scalar type; 0 for STRING/ARRAY/unknown. */
size_t gguf_scalar_size(uint32_t type);
const char *gguf_type_name(uint32_t type);

/* Parses the header from buf[0..n). DOZE_OK: *h is filled (caller frees it).
 * DOZE_ERR_TRUNCATED: more bytes are needed. Other codes: malformed. On any
 * failure *h is left zeroed and nothing is allocated. Validates: magic,
 * version, counts and lengths against the bytes that could exist, sizes that
 * would overflow, duplicate keys and tensor names, tensor types known to the
 * type table, n_dims <= 4, offsets aligned, tensors not overlapping. */
doze_status gguf_parse_header(const uint8_t *buf, size_t n, gguf_header *h, doze_error *err);
void gguf_header_free(gguf_header *h);

const gguf_kv *gguf_find_kv(const gguf_header *h, const char *key);
const gguf_tensor *gguf_find_tensor(const gguf_header *h, const char *name);

/* Typed getters. MISSING when absent, BAD_FORMAT when of an incompatible
 * type. get_int accepts any integer type (and bool) whose value fits int64;
 * get_float accepts float32/64 and integers. */
doze_status gguf_get_int(const gguf_header *h, const char *key, int64_t *out, doze_error *err);
doze_status gguf_get_float(const gguf_header *h, const char *key, double *out, doze_error *err);
doze_status gguf_get_string(const gguf_header *h, const char *key, const gguf_string **out,
                            doze_error *err);
/* An array of the given element type (any element type if want_type < 0). */
doze_status gguf_get_array(const gguf_header *h, const char *key, int want_type, uint32_t *type,
                           uint64_t *n, const void **data, doze_error *err);

/* ---- writer --------------------------------------------------------------- */

typedef struct gguf_writer gguf_writer;
/* Returns 0 on success, nonzero on failure. */
typedef int (*gguf_write_fn)(void *ctx, const void *bytes, size_t n);

gguf_writer *gguf_writer_new(uint32_t alignment);
void gguf_writer_free(gguf_writer *w);
/* Deep-copies v; replaces an existing key of the same name, keeping order. */
doze_status gguf_writer_set(gguf_writer *w, const char *key, const gguf_value *v, doze_error *err);
doze_status gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t x, doze_error *err);
doze_status gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t x, doze_error *err);
doze_status gguf_writer_set_f32(gguf_writer *w, const char *key, float x, doze_error *err);
doze_status gguf_writer_set_bool(gguf_writer *w, const char *key, int x, doze_error *err);
doze_status gguf_writer_set_str(gguf_writer *w, const char *key, const char *s, doze_error *err);
/* Array of scalars (elem_type a scalar type; data packed native) or, for
 * GGUF_TYPE_STRING, data is `const char *const *` of NUL-terminated strings. */
doze_status gguf_writer_set_arr(gguf_writer *w, const char *key, uint32_t elem_type, uint64_t n,
                                const void *data, doze_error *err);
/* Copies every key/value of h (e.g. to re-type a file). */
doze_status gguf_writer_copy_kvs(gguf_writer *w, const gguf_header *h, doze_error *err);
/* Adds a tensor; `data` (n_bytes computed from type and ne) is referenced,
 * not copied: it must stay valid until gguf_writer_write returns. */
doze_status gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type,
                                   uint32_t n_dims, const uint64_t *ne, const void *data,
                                   doze_error *err);
/* Writes the whole file (v3) through fn. */
doze_status gguf_writer_write(const gguf_writer *w, gguf_write_fn fn, void *ctx, doze_error *err);

#endif
