/* GGUF v3 (v2 accepted) reader and writer.
 *
 * The parser makes two passes over the bytes: a dry pass that allocates
 * nothing and checks the structure, the per-item limits and that every byte
 * up to data_offset is present (so a caller that is still buffering gets
 * DOZE_ERR_TRUNCATED without any allocation), then a storing pass that copies
 * everything out and runs the cross-item checks (duplicates, overlaps).
 * All integers are read little-endian byte by byte; nothing is read through
 * an unaligned pointer.
 */
#include "gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "types.h"

/* Sanity limits: anything beyond these is rejected as malformed at once so
 * that a hostile header cannot keep a streaming caller buffering forever. */
#define GGUF_MAX_STRING (1ull << 30) /* bytes in one string */
#define GGUF_MAX_COUNT (1ull << 24)  /* n_kv, n_tensors */
#define GGUF_MAX_ARRAY (1ull << 31)  /* elements in one array */
#define GGUF_MAX_DEPTH 8             /* arrays of arrays */
#define GGUF_KEY_ALIGNMENT "general.alignment"

#define SHOWN 96 /* characters of a key or name quoted in a message */

/* ---- types ----------------------------------------------------------------- */

size_t gguf_scalar_size(uint32_t type) {
    switch (type) {
    case GGUF_TYPE_UINT8:
    case GGUF_TYPE_INT8:
    case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16:
    case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32:
    case GGUF_TYPE_INT32:
    case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64:
    case GGUF_TYPE_INT64:
    case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

const char *gguf_type_name(uint32_t type) {
    static const char *const names[GGUF_TYPE_COUNT_] = {
        "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
    };
    return type < GGUF_TYPE_COUNT_ ? names[type] : "unknown";
}

static int is_pow2(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }

static int str_eq(const gguf_string *s, const char *c) {
    size_t n = strlen(c);
    return s->len == (uint64_t)n && memcmp(s->data, c, n) == 0;
}

static int shown_len(uint64_t len) { return len > SHOWN ? SHOWN : (int)len; }

/* ---- little-endian bytes ------------------------------------------------------ */

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

/* One scalar of `size` bytes from p into native storage at dst. */
static void decode_scalar(size_t size, const uint8_t *p, void *dst) {
    switch (size) {
    case 1: memcpy(dst, p, 1); break;
    case 2: { uint16_t x = le16(p); memcpy(dst, &x, 2); break; }
    case 4: { uint32_t x = le32(p); memcpy(dst, &x, 4); break; }
    default: { uint64_t x = le64(p); memcpy(dst, &x, 8); break; }
    }
}

static void encode_scalar(size_t size, const void *src, uint8_t *out) {
    uint64_t x = 0;
    switch (size) {
    case 1: { uint8_t v; memcpy(&v, src, 1); x = v; break; }
    case 2: { uint16_t v; memcpy(&v, src, 2); x = v; break; }
    case 4: { uint32_t v; memcpy(&v, src, 4); x = v; break; }
    default: memcpy(&x, src, 8); break;
    }
    for (size_t i = 0; i < size; i++) out[i] = (uint8_t)(x >> (8 * i));
}

/* ---- freeing -------------------------------------------------------------------- */

static void value_free(gguf_value *v) {
    if (v->type == GGUF_TYPE_STRING) {
        free(v->v.str.data);
    } else if (v->type == GGUF_TYPE_ARRAY) {
        if (v->v.arr.data) {
            if (v->v.arr.type == GGUF_TYPE_STRING) {
                gguf_string *s = v->v.arr.data;
                for (uint64_t i = 0; i < v->v.arr.n; i++) free(s[i].data);
            } else if (v->v.arr.type == GGUF_TYPE_ARRAY) {
                gguf_value *e = v->v.arr.data;
                for (uint64_t i = 0; i < v->v.arr.n; i++) value_free(&e[i]);
            }
        }
        free(v->v.arr.data);
    }
    memset(v, 0, sizeof *v);
}

void gguf_header_free(gguf_header *h) {
    if (!h) return;
    if (h->kv) {
        for (uint64_t i = 0; i < h->n_kv; i++) {
            free(h->kv[i].key.data);
            value_free(&h->kv[i].value);
        }
    }
    if (h->tensors) {
        for (uint64_t i = 0; i < h->n_tensors; i++) free(h->tensors[i].name.data);
    }
    free(h->kv);
    free(h->tensors);
    memset(h, 0, sizeof *h);
}

static doze_status string_copy(gguf_string *dst, const void *p, uint64_t len, doze_error *err) {
    if (len > GGUF_MAX_STRING) /* also keeps len + 1 within size_t */
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "string of %llu bytes is too long",
                         (unsigned long long)len);
    dst->data = malloc((size_t)len + 1);
    if (!dst->data) {
        dst->len = 0;
        return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory copying a string of %llu bytes",
                         (unsigned long long)len);
    }
    if (len) memcpy(dst->data, p, (size_t)len);
    dst->data[len] = '\0';
    dst->len = len;
    return DOZE_OK;
}

/* ---- parser ----------------------------------------------------------------------- */

typedef struct {
    const uint8_t *b;
    size_t n;
    size_t pos;
    doze_error *err;
} reader;

static size_t rd_left(const reader *r) { return r->n - r->pos; }

static doze_status rd_need(reader *r, uint64_t k, const char *where, const char *what) {
    if ((uint64_t)rd_left(r) >= k) return DOZE_OK;
    return doze_fail(r->err, DOZE_ERR_TRUNCATED, "%s: %s needs %llu bytes at offset %zu, only %zu left",
                     where, what, (unsigned long long)k, r->pos, rd_left(r));
}

/* A string's bytes, left in place. */
static doze_status rd_string(reader *r, const char *where, const uint8_t **p, uint64_t *len) {
    doze_status st = rd_need(r, 8, where, "string length");
    if (st) return st;
    uint64_t l = le64(r->b + r->pos);
    r->pos += 8;
    if (l > GGUF_MAX_STRING)
        return doze_fail(r->err, DOZE_ERR_BAD_FORMAT, "%s: string length %llu exceeds the limit of %llu",
                         where, (unsigned long long)l, (unsigned long long)GGUF_MAX_STRING);
    if (l > (uint64_t)rd_left(r))
        return doze_fail(r->err, DOZE_ERR_TRUNCATED, "%s: string length %llu exceeds remaining %zu bytes",
                         where, (unsigned long long)l, rd_left(r));
    *p = r->b + r->pos;
    *len = l;
    r->pos += (size_t)l;
    return DOZE_OK;
}

static doze_status rd_array(reader *r, int depth, const char *where, gguf_value *out);

/* One value of `type`; out == NULL in the dry pass. On failure *out is zeroed. */
static doze_status rd_value(reader *r, uint32_t type, int depth, const char *where, gguf_value *out) {
    if (out) {
        memset(out, 0, sizeof *out);
        out->type = type;
    }
    size_t size = gguf_scalar_size(type);
    if (size) {
        doze_status st = rd_need(r, size, where, "value");
        if (st) return st;
        const uint8_t *p = r->b + r->pos;
        if (type == GGUF_TYPE_BOOL && p[0] > 1)
            return doze_fail(r->err, DOZE_ERR_BAD_FORMAT, "%s: bool value %u is not 0 or 1", where, p[0]);
        if (out) decode_scalar(size, p, &out->v);
        r->pos += size;
        return DOZE_OK;
    }
    if (type == GGUF_TYPE_STRING) {
        const uint8_t *p;
        uint64_t len;
        doze_status st = rd_string(r, where, &p, &len);
        if (st == DOZE_OK && out) st = string_copy(&out->v.str, p, len, r->err);
        if (st && out) memset(out, 0, sizeof *out);
        return st;
    }
    if (type == GGUF_TYPE_ARRAY) return rd_array(r, depth + 1, where, out);
    if (out) memset(out, 0, sizeof *out);
    return doze_fail(r->err, DOZE_ERR_UNSUPPORTED_TYPE, "%s: unknown value type %u", where, type);
}

/* The body of an array (element type, count, elements) at nesting `depth`
 * (1 for a top-level array). out, if given, has type ARRAY. */
static doze_status rd_array(reader *r, int depth, const char *where, gguf_value *out) {
    if (out) {
        memset(out, 0, sizeof *out);
        out->type = GGUF_TYPE_ARRAY;
    }
    if (depth > GGUF_MAX_DEPTH)
        return doze_fail(r->err, DOZE_ERR_BAD_FORMAT, "%s: arrays nested deeper than %d levels", where,
                         GGUF_MAX_DEPTH);
    doze_status st = rd_need(r, 12, where, "array header");
    if (st) return st;
    uint32_t et = le32(r->b + r->pos);
    uint64_t n = le64(r->b + r->pos + 4);
    r->pos += 12;
    if (et >= GGUF_TYPE_COUNT_)
        return doze_fail(r->err, DOZE_ERR_UNSUPPORTED_TYPE, "%s: unknown array element type %u", where, et);
    if (n > GGUF_MAX_ARRAY)
        return doze_fail(r->err, DOZE_ERR_BAD_FORMAT, "%s: array of %llu elements exceeds the limit of %llu",
                         where, (unsigned long long)n, (unsigned long long)GGUF_MAX_ARRAY);
    size_t ssize = gguf_scalar_size(et);
    uint64_t min_bytes = ssize ? ssize : et == GGUF_TYPE_STRING ? 8 : 12; /* per element */
    if (n * min_bytes > (uint64_t)rd_left(r)) /* n <= 2^31, min <= 12: no overflow */
        return doze_fail(r->err, DOZE_ERR_TRUNCATED,
                         "%s: array of %llu %s needs at least %llu bytes, only %zu left", where,
                         (unsigned long long)n, gguf_type_name(et), (unsigned long long)(n * min_bytes),
                         rd_left(r));
    if (out) {
        out->v.arr.type = et;
        out->v.arr.n = n;
        if (n) {
            size_t esz = ssize ? ssize : et == GGUF_TYPE_STRING ? sizeof(gguf_string) : sizeof(gguf_value);
            if (n > SIZE_MAX / esz || !(out->v.arr.data = calloc((size_t)n, esz))) {
                memset(out, 0, sizeof *out);
                return doze_fail(r->err, DOZE_ERR_OUT_OF_MEMORY, "%s: out of memory for an array of %llu %s",
                                 where, (unsigned long long)n, gguf_type_name(et));
            }
        }
    }
    if (ssize) {
        const uint8_t *p = r->b + r->pos;
        if (et == GGUF_TYPE_BOOL) {
            for (uint64_t i = 0; i < n; i++) {
                if (p[i] > 1) {
                    if (out) value_free(out);
                    return doze_fail(r->err, DOZE_ERR_BAD_FORMAT,
                                     "%s: bool array element %llu has value %u (not 0 or 1)", where,
                                     (unsigned long long)i, p[i]);
                }
            }
        }
        if (out) {
            uint8_t *dst = out->v.arr.data;
            for (uint64_t i = 0; i < n; i++) decode_scalar(ssize, p + i * ssize, dst + i * ssize);
        }
        r->pos += (size_t)(n * ssize);
        return DOZE_OK;
    }
    for (uint64_t i = 0; i < n; i++) {
        if (et == GGUF_TYPE_STRING) {
            const uint8_t *p;
            uint64_t len;
            st = rd_string(r, where, &p, &len);
            if (st == DOZE_OK && out) st = string_copy(&((gguf_string *)out->v.arr.data)[i], p, len, r->err);
        } else {
            st = rd_array(r, depth + 1, where, out ? &((gguf_value *)out->v.arr.data)[i] : NULL);
        }
        if (st) {
            if (out) value_free(out);
            return st;
        }
    }
    return DOZE_OK;
}

static int cmp_string_ptr(const void *a, const void *b) {
    const gguf_string *x = *(const gguf_string *const *)a;
    const gguf_string *y = *(const gguf_string *const *)b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->len ? memcmp(x->data, y->data, (size_t)x->len) : 0;
}

static int cmp_tensor_offset(const void *a, const void *b) {
    const gguf_tensor *x = *(const gguf_tensor *const *)a;
    const gguf_tensor *y = *(const gguf_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->n_bytes != y->n_bytes) return x->n_bytes < y->n_bytes ? -1 : 1;
    return 0;
}

/* Duplicate keys / names: sort pointers and compare neighbours. */
static doze_status check_unique(const gguf_string **s, uint64_t n, const char *what, doze_error *err) {
    if (n < 2) return DOZE_OK;
    qsort(s, (size_t)n, sizeof *s, cmp_string_ptr);
    for (uint64_t i = 0; i + 1 < n; i++) {
        if (cmp_string_ptr(&s[i], &s[i + 1]) == 0)
            return doze_fail(err, DOZE_ERR_BAD_FORMAT, "duplicate %s %.*s", what, shown_len(s[i]->len),
                             s[i]->data);
    }
    return DOZE_OK;
}

static doze_status check_cross(gguf_header *h, doze_error *err) {
    uint64_t m = h->n_kv > h->n_tensors ? h->n_kv : h->n_tensors;
    if (m < 2) return DOZE_OK;
    const void **p = malloc((size_t)m * sizeof *p); /* m <= 2^24 */
    if (!p) return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory checking %llu entries",
                             (unsigned long long)m);
    const gguf_string **s = (const gguf_string **)p;
    doze_status st;
    for (uint64_t i = 0; i < h->n_kv; i++) s[i] = &h->kv[i].key;
    st = check_unique(s, h->n_kv, "key", err);
    if (st == DOZE_OK) {
        for (uint64_t i = 0; i < h->n_tensors; i++) s[i] = &h->tensors[i].name;
        st = check_unique(s, h->n_tensors, "tensor name", err);
    }
    if (st == DOZE_OK && h->n_tensors > 1) {
        const gguf_tensor **t = (const gguf_tensor **)p;
        for (uint64_t i = 0; i < h->n_tensors; i++) t[i] = &h->tensors[i];
        qsort(t, (size_t)h->n_tensors, sizeof *t, cmp_tensor_offset);
        for (uint64_t i = 0; i + 1 < h->n_tensors && st == DOZE_OK; i++) {
            const gguf_tensor *a = t[i], *b = t[i + 1];
            if (a->offset + a->n_bytes > b->offset)
                st = doze_fail(err, DOZE_ERR_BAD_FORMAT,
                               "tensors %.*s [%llu, %llu) and %.*s [%llu, %llu) overlap",
                               shown_len(a->name.len), a->name.data, (unsigned long long)a->offset,
                               (unsigned long long)(a->offset + a->n_bytes), shown_len(b->name.len),
                               b->name.data, (unsigned long long)b->offset,
                               (unsigned long long)(b->offset + b->n_bytes));
        }
    }
    free(p);
    return st;
}

/* ggml's name of a tensor type Doze does not read, for the error message
 * (the type ids of ggml.h; the file format fixes them) */
static const char *ggml_type_label(uint32_t type) {
    static const char *const names[] = {
        [4] = "q4_2 (removed from ggml)", [5] = "q4_3 (removed from ggml)", [9] = "q8_1", [15] = "q8_k",
        [16] = "iq2_xxs", [17] = "iq2_xs", [18] = "iq3_xxs", [19] = "iq1_s", [21] = "iq3_s", [22] = "iq2_s",
        [24] = "i8", [25] = "i16", [26] = "i32", [27] = "i64", [28] = "f64", [29] = "iq1_m",
        [31] = "q4_0_4_4 (removed from ggml)", [32] = "q4_0_4_8 (removed from ggml)",
        [33] = "q4_0_8_8 (removed from ggml)", [34] = "tq1_0", [35] = "tq2_0",
        [36] = "iq4_nl_4_4 (removed from ggml)", [37] = "iq4_nl_4_8 (removed from ggml)",
        [38] = "iq4_nl_8_8 (removed from ggml)", [39] = "mxfp4"};
    return type < sizeof names / sizeof names[0] && names[type] ? names[type] : "unknown to Doze";
}

/* One tensor info; validates everything local to it. `t` receives the fields
 * (name left empty); *name_p / *name_len point at the name in the buffer. */
static doze_status rd_tensor(reader *r, uint64_t index, uint64_t count, uint32_t alignment, gguf_tensor *t,
                             const uint8_t **name_p, uint64_t *name_len) {
    char where[SHOWN + 48];
    /* "of N": a tensor count that is too large (a flipped bit) shows up
     * here, reading tensor infos out of what is really the data */
    snprintf(where, sizeof where, "tensor #%llu of the header's %llu", (unsigned long long)index,
             (unsigned long long)count);
    doze_status st = rd_string(r, where, name_p, name_len);
    if (st) return st;
    if (*name_len == 0)
        return doze_fail(r->err, DOZE_ERR_BAD_FORMAT, "%s has an empty name (is the tensor count right?)", where);
    snprintf(where, sizeof where, "tensor %.*s", shown_len(*name_len), (const char *)*name_p);
    if ((st = rd_need(r, 4, where, "n_dims"))) return st;
    uint32_t n_dims = le32(r->b + r->pos);
    r->pos += 4;
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return doze_fail(r->err, DOZE_ERR_BAD_FORMAT, "%s: n_dims %u is not in 1..%d", where, n_dims,
                         GGUF_MAX_DIMS);
    if ((st = rd_need(r, 8ull * n_dims + 12, where, "dimensions, type and offset"))) return st;
    memset(t, 0, sizeof *t);
    t->n_dims = n_dims;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        t->ne[d] = 1;
        if ((uint32_t)d < n_dims) {
            t->ne[d] = le64(r->b + r->pos);
            r->pos += 8;
        }
    }
    t->type = le32(r->b + r->pos);
    t->offset = le64(r->b + r->pos + 4);
    r->pos += 12;

    uint64_t n_elem = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (t->ne[d] == 0)
            return doze_fail(r->err, DOZE_ERR_BAD_SHAPE, "%s: dimension %u is 0", where, d);
        if (t->ne[d] > (uint64_t)INT64_MAX / n_elem)
            return doze_fail(r->err, DOZE_ERR_BAD_FORMAT, "%s: element count overflows at dimension %u (ne %llu)",
                             where, d, (unsigned long long)t->ne[d]);
        n_elem *= t->ne[d];
    }
    const doze_type_traits *tr = doze_type_traits_of((int)t->type);
    if (!tr || t->type > 0x7fffffffu)
        return doze_fail(r->err, DOZE_ERR_UNSUPPORTED_TYPE, "%s: unsupported tensor type %u (%s)", where, t->type,
                         ggml_type_label(t->type));
    if (t->ne[0] % (uint64_t)tr->block_size != 0)
        return doze_fail(r->err, DOZE_ERR_BAD_SHAPE, "%s: row length %llu is not a multiple of the %s block size %d",
                         where, (unsigned long long)t->ne[0], tr->name, tr->block_size);
    uint64_t row = doze_type_row_bytes((int)t->type, t->ne[0]);
    uint64_t rows = n_elem / t->ne[0];
    if (row == 0 || rows > UINT64_MAX / row)
        return doze_fail(r->err, DOZE_ERR_BAD_FORMAT, "%s: byte size overflows", where);
    t->n_bytes = row * rows;
    if (t->offset % alignment != 0)
        return doze_fail(r->err, DOZE_ERR_BAD_FORMAT, "%s: offset %llu is misaligned (alignment %u)", where,
                         (unsigned long long)t->offset, alignment);
    if (t->offset > UINT64_MAX - t->n_bytes)
        return doze_fail(r->err, DOZE_ERR_BAD_FORMAT, "%s: offset %llu + size %llu overflows", where,
                         (unsigned long long)t->offset, (unsigned long long)t->n_bytes);
    return DOZE_OK;
}

/* One pass; store == 0 allocates nothing. */
static doze_status parse(const uint8_t *buf, size_t n, gguf_header *h, int store, doze_error *err) {
    reader r = {buf, n, 0, err};
    static const uint8_t magic[4] = {'G', 'G', 'U', 'F'};
    size_t m = n < 4 ? n : 4;
    if (memcmp(buf, magic, m) != 0) {
        uint8_t got[4] = {0, 0, 0, 0};
        memcpy(got, buf, m);
        return doze_fail(err, DOZE_ERR_BAD_MAGIC, "not a GGUF file: magic %02x %02x %02x %02x, expected \"GGUF\"",
                         got[0], got[1], got[2], got[3]);
    }
    doze_status st = rd_need(&r, 8, "header", "magic and version");
    if (st) return st;
    uint32_t version = le32(buf + 4);
    if (version != 2 && version != 3)
        return doze_fail(err, DOZE_ERR_UNSUPPORTED_VERSION, "GGUF version %u is not supported (2 and 3 are)",
                         version);
    if ((st = rd_need(&r, 24, "header", "tensor and key counts"))) return st;
    uint64_t n_tensors = le64(buf + 8), n_kv = le64(buf + 16);
    r.pos = 24;
    if (n_tensors > GGUF_MAX_COUNT)
        return doze_fail(err, DOZE_ERR_BAD_FORMAT, "header: tensor count %llu exceeds the limit of %llu",
                         (unsigned long long)n_tensors, (unsigned long long)GGUF_MAX_COUNT);
    if (n_kv > GGUF_MAX_COUNT)
        return doze_fail(err, DOZE_ERR_BAD_FORMAT, "header: key count %llu exceeds the limit of %llu",
                         (unsigned long long)n_kv, (unsigned long long)GGUF_MAX_COUNT);
    h->version = version;
    h->alignment = GGUF_DEFAULT_ALIGNMENT;
    if (store) {
        /* the dry pass has seen every byte, so these counts are backed by data */
        if (n_kv && !(h->kv = calloc((size_t)n_kv, sizeof *h->kv)))
            return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for %llu keys", (unsigned long long)n_kv);
        h->n_kv = n_kv;
        if (n_tensors && !(h->tensors = calloc((size_t)n_tensors, sizeof *h->tensors)))
            return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for %llu tensors",
                             (unsigned long long)n_tensors);
        h->n_tensors = n_tensors;
    }

    char where[SHOWN + 32];
    for (uint64_t i = 0; i < n_kv; i++) {
        const uint8_t *kp;
        uint64_t klen;
        snprintf(where, sizeof where, "key #%llu", (unsigned long long)i);
        if ((st = rd_string(&r, where, &kp, &klen))) return st;
        snprintf(where, sizeof where, "key %.*s", shown_len(klen), (const char *)kp);
        if ((st = rd_need(&r, 4, where, "value type"))) return st;
        uint32_t type = le32(buf + r.pos);
        r.pos += 4;
        size_t value_pos = r.pos;
        gguf_kv *kv = store ? &h->kv[i] : NULL;
        if (kv && (st = string_copy(&kv->key, kp, klen, err))) return st;
        if ((st = rd_value(&r, type, 0, where, kv ? &kv->value : NULL))) return st;
        if (klen == sizeof GGUF_KEY_ALIGNMENT - 1 && memcmp(kp, GGUF_KEY_ALIGNMENT, (size_t)klen) == 0) {
            if (type != GGUF_TYPE_UINT32)
                return doze_fail(err, DOZE_ERR_BAD_FORMAT, "key %s: type %s, expected u32", GGUF_KEY_ALIGNMENT,
                                 gguf_type_name(type));
            uint32_t a = le32(buf + value_pos);
            if (!is_pow2(a))
                return doze_fail(err, DOZE_ERR_BAD_FORMAT, "key %s: %u is not a nonzero power of two",
                                 GGUF_KEY_ALIGNMENT, a);
            h->alignment = a;
        }
    }

    uint64_t data_size = 0;
    for (uint64_t i = 0; i < n_tensors; i++) {
        gguf_tensor t;
        const uint8_t *np;
        uint64_t nlen;
        if ((st = rd_tensor(&r, i, n_tensors, h->alignment, &t, &np, &nlen))) return st;
        if (t.offset + t.n_bytes > data_size) data_size = t.offset + t.n_bytes;
        if (store) {
            h->tensors[i] = t;
            if ((st = string_copy(&h->tensors[i].name, np, nlen, err))) return st;
        }
    }

    uint64_t end = r.pos, a = h->alignment;
    if (end > UINT64_MAX - (a - 1))
        return doze_fail(err, DOZE_ERR_BAD_FORMAT, "header end %llu cannot be aligned", (unsigned long long)end);
    /* A file without tensors has an empty data section and needs no padding
     * (llama.cpp's vocab-only files end right after the metadata). */
    uint64_t data_offset = n_tensors ? (end + a - 1) / a * a : end;
    if (data_size > UINT64_MAX - data_offset)
        return doze_fail(err, DOZE_ERR_BAD_FORMAT, "data offset %llu + data size %llu overflows",
                         (unsigned long long)data_offset, (unsigned long long)data_size);
    if ((uint64_t)n < data_offset)
        return doze_fail(err, DOZE_ERR_TRUNCATED,
                         "header: padding up to the data offset %llu needs %llu more bytes",
                         (unsigned long long)data_offset, (unsigned long long)(data_offset - n));
    h->data_offset = data_offset;
    h->data_size = data_size;
    if (store) return check_cross(h, err);
    return DOZE_OK;
}

doze_status gguf_parse_header(const uint8_t *buf, size_t n, gguf_header *h, doze_error *err) {
    if (!h) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "gguf_parse_header: NULL header");
    memset(h, 0, sizeof *h);
    if (n == 0) return doze_fail(err, DOZE_ERR_TRUNCATED, "header: no bytes yet");
    if (!buf) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "gguf_parse_header: NULL buffer");
    gguf_header tmp;
    memset(&tmp, 0, sizeof tmp);
    doze_status st = parse(buf, n, &tmp, 0, err); /* no allocation */
    if (st) return st;
    memset(&tmp, 0, sizeof tmp);
    st = parse(buf, n, &tmp, 1, err);
    if (st) {
        gguf_header_free(&tmp);
        return st;
    }
    *h = tmp;
    doze_error_clear(err);
    return DOZE_OK;
}

/* ---- lookups and getters ------------------------------------------------------------ */

const gguf_kv *gguf_find_kv(const gguf_header *h, const char *key) {
    if (!h || !key || !h->kv) return NULL;
    for (uint64_t i = 0; i < h->n_kv; i++)
        if (str_eq(&h->kv[i].key, key)) return &h->kv[i];
    return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_header *h, const char *name) {
    if (!h || !name || !h->tensors) return NULL;
    for (uint64_t i = 0; i < h->n_tensors; i++)
        if (str_eq(&h->tensors[i].name, name)) return &h->tensors[i];
    return NULL;
}

static doze_status find_or_fail(const gguf_header *h, const char *key, const gguf_kv **kv, doze_error *err) {
    *kv = gguf_find_kv(h, key);
    if (!*kv) return doze_fail(err, DOZE_ERR_MISSING, "key %s not found", key ? key : "(null)");
    return DOZE_OK;
}

/* Integer (or bool) value as int64; 0 = ok, 1 = not an integer, 2 = too big. */
static int value_int(const gguf_value *v, int64_t *out) {
    switch (v->type) {
    case GGUF_TYPE_UINT8: *out = v->v.u8; return 0;
    case GGUF_TYPE_INT8: *out = v->v.i8; return 0;
    case GGUF_TYPE_UINT16: *out = v->v.u16; return 0;
    case GGUF_TYPE_INT16: *out = v->v.i16; return 0;
    case GGUF_TYPE_UINT32: *out = v->v.u32; return 0;
    case GGUF_TYPE_INT32: *out = v->v.i32; return 0;
    case GGUF_TYPE_BOOL: *out = v->v.b; return 0;
    case GGUF_TYPE_INT64: *out = v->v.i64; return 0;
    case GGUF_TYPE_UINT64:
        if (v->v.u64 > (uint64_t)INT64_MAX) return 2;
        *out = (int64_t)v->v.u64;
        return 0;
    default: return 1;
    }
}

doze_status gguf_get_int(const gguf_header *h, const char *key, int64_t *out, doze_error *err) {
    const gguf_kv *kv;
    doze_status st = find_or_fail(h, key, &kv, err);
    if (st) return st;
    int64_t x = 0;
    int r = value_int(&kv->value, &x);
    if (r == 1)
        return doze_fail(err, DOZE_ERR_BAD_FORMAT, "key %s: expected an integer, found %s", key,
                         gguf_type_name(kv->value.type));
    if (r == 2)
        return doze_fail(err, DOZE_ERR_BAD_FORMAT, "key %s: value %llu does not fit int64", key,
                         (unsigned long long)kv->value.v.u64);
    if (out) *out = x;
    return DOZE_OK;
}

doze_status gguf_get_float(const gguf_header *h, const char *key, double *out, doze_error *err) {
    const gguf_kv *kv;
    doze_status st = find_or_fail(h, key, &kv, err);
    if (st) return st;
    const gguf_value *v = &kv->value;
    double x;
    int64_t i;
    if (v->type == GGUF_TYPE_FLOAT32) x = v->v.f32;
    else if (v->type == GGUF_TYPE_FLOAT64) x = v->v.f64;
    else if (v->type == GGUF_TYPE_UINT64) x = (double)v->v.u64;
    else if (v->type != GGUF_TYPE_BOOL && value_int(v, &i) == 0) x = (double)i;
    else
        return doze_fail(err, DOZE_ERR_BAD_FORMAT, "key %s: expected a number, found %s", key,
                         gguf_type_name(v->type));
    if (out) *out = x;
    return DOZE_OK;
}

doze_status gguf_get_string(const gguf_header *h, const char *key, const gguf_string **out,
                            doze_error *err) {
    const gguf_kv *kv;
    doze_status st = find_or_fail(h, key, &kv, err);
    if (st) return st;
    if (kv->value.type != GGUF_TYPE_STRING)
        return doze_fail(err, DOZE_ERR_BAD_FORMAT, "key %s: expected a string, found %s", key,
                         gguf_type_name(kv->value.type));
    if (out) *out = &kv->value.v.str;
    return DOZE_OK;
}

doze_status gguf_get_array(const gguf_header *h, const char *key, int want_type, uint32_t *type,
                           uint64_t *n, const void **data, doze_error *err) {
    const gguf_kv *kv;
    doze_status st = find_or_fail(h, key, &kv, err);
    if (st) return st;
    const gguf_value *v = &kv->value;
    if (v->type != GGUF_TYPE_ARRAY)
        return doze_fail(err, DOZE_ERR_BAD_FORMAT, "key %s: expected an array, found %s", key,
                         gguf_type_name(v->type));
    if (want_type >= 0 && v->v.arr.type != (uint32_t)want_type)
        return doze_fail(err, DOZE_ERR_BAD_FORMAT, "key %s: expected an array of %s, found an array of %s", key,
                         gguf_type_name((uint32_t)want_type), gguf_type_name(v->v.arr.type));
    if (type) *type = v->v.arr.type;
    if (n) *n = v->v.arr.n;
    if (data) *data = v->v.arr.data;
    return DOZE_OK;
}

/* ---- writer ----------------------------------------------------------------------------- */

typedef struct {
    gguf_tensor info;
    const void *data;
} writer_tensor;

struct gguf_writer {
    uint32_t alignment;
    gguf_kv *kv;
    size_t n_kv, cap_kv;
    writer_tensor *t;
    size_t n_t, cap_t;
};

gguf_writer *gguf_writer_new(uint32_t alignment) {
    if (alignment == 0) alignment = GGUF_DEFAULT_ALIGNMENT;
    if (!is_pow2(alignment)) return NULL;
    gguf_writer *w = calloc(1, sizeof *w);
    if (w) w->alignment = alignment;
    return w;
}

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key.data);
        value_free(&w->kv[i].value);
    }
    for (size_t i = 0; i < w->n_t; i++) free(w->t[i].info.name.data);
    free(w->kv);
    free(w->t);
    free(w);
}

static doze_status copy_array(gguf_value *dst, const gguf_value *src, int depth, const char *key,
                              doze_error *err);

/* Validating deep copy of a value; on failure *dst is zeroed. */
static doze_status copy_value(gguf_value *dst, const gguf_value *src, const char *key, doze_error *err) {
    memset(dst, 0, sizeof *dst);
    if (src->type >= GGUF_TYPE_COUNT_)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "key %s: unknown value type %u", key, src->type);
    if (gguf_scalar_size(src->type)) {
        if (src->type == GGUF_TYPE_BOOL && src->v.b > 1)
            return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "key %s: bool value %u is not 0 or 1", key, src->v.b);
        *dst = *src;
        return DOZE_OK;
    }
    if (src->type == GGUF_TYPE_STRING) {
        if (src->v.str.len && !src->v.str.data)
            return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "key %s: NULL string data", key);
        dst->type = GGUF_TYPE_STRING;
        doze_status st = string_copy(&dst->v.str, src->v.str.data, src->v.str.len, err);
        if (st) {
            memset(dst, 0, sizeof *dst);
            doze_error_prefix(err, "key %s", key);
        }
        return st;
    }
    return copy_array(dst, src, 1, key, err);
}

static doze_status copy_array(gguf_value *dst, const gguf_value *src, int depth, const char *key,
                              doze_error *err) {
    memset(dst, 0, sizeof *dst);
    if (src->type != GGUF_TYPE_ARRAY)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "key %s: nested array element of type %s", key,
                         gguf_type_name(src->type));
    if (depth > GGUF_MAX_DEPTH)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "key %s: arrays nested deeper than %d levels", key,
                         GGUF_MAX_DEPTH);
    uint32_t et = src->v.arr.type;
    uint64_t n = src->v.arr.n;
    if (et >= GGUF_TYPE_COUNT_)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "key %s: unknown array element type %u", key, et);
    if (n > GGUF_MAX_ARRAY)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "key %s: array of %llu elements is too long", key,
                         (unsigned long long)n);
    if (n && !src->v.arr.data)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "key %s: NULL array data", key);
    dst->type = GGUF_TYPE_ARRAY;
    dst->v.arr.type = et;
    dst->v.arr.n = n;
    if (!n) return DOZE_OK;
    size_t ssize = gguf_scalar_size(et);
    size_t esz = ssize ? ssize : et == GGUF_TYPE_STRING ? sizeof(gguf_string) : sizeof(gguf_value);
    if (n > SIZE_MAX / esz || !(dst->v.arr.data = calloc((size_t)n, esz))) {
        memset(dst, 0, sizeof *dst);
        return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "key %s: out of memory for an array of %llu %s", key,
                         (unsigned long long)n, gguf_type_name(et));
    }
    doze_status st = DOZE_OK;
    if (ssize) {
        memcpy(dst->v.arr.data, src->v.arr.data, (size_t)n * ssize);
        if (et == GGUF_TYPE_BOOL) {
            const uint8_t *b = src->v.arr.data;
            for (uint64_t i = 0; i < n && st == DOZE_OK; i++)
                if (b[i] > 1)
                    st = doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "key %s: bool array element %llu is %u", key,
                                   (unsigned long long)i, b[i]);
        }
    } else if (et == GGUF_TYPE_STRING) {
        const gguf_string *s = src->v.arr.data;
        gguf_string *d = dst->v.arr.data;
        for (uint64_t i = 0; i < n && st == DOZE_OK; i++) {
            if (s[i].len && !s[i].data)
                st = doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "key %s: NULL string data at element %llu", key,
                               (unsigned long long)i);
            else if ((st = string_copy(&d[i], s[i].data, s[i].len, err)))
                doze_error_prefix(err, "key %s", key);
        }
    } else {
        const gguf_value *s = src->v.arr.data;
        gguf_value *d = dst->v.arr.data;
        for (uint64_t i = 0; i < n && st == DOZE_OK; i++) st = copy_array(&d[i], &s[i], depth + 1, key, err);
    }
    if (st) value_free(dst);
    return st;
}

static gguf_kv *writer_find(const gguf_writer *w, const char *key) {
    for (size_t i = 0; i < w->n_kv; i++)
        if (str_eq(&w->kv[i].key, key)) return &w->kv[i];
    return NULL;
}

doze_status gguf_writer_set(gguf_writer *w, const char *key, const gguf_value *v, doze_error *err) {
    if (!w || !key || !v) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "gguf_writer_set: NULL argument");
    size_t klen = strlen(key);
    if (klen > GGUF_MAX_STRING) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "key too long");
    if (strcmp(key, GGUF_KEY_ALIGNMENT) == 0 && (v->type != GGUF_TYPE_UINT32 || !is_pow2(v->v.u32)))
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "key %s must be a u32 nonzero power of two",
                         GGUF_KEY_ALIGNMENT);
    gguf_value copy;
    doze_status st = copy_value(&copy, v, key, err);
    if (st) return st;
    gguf_kv *kv = writer_find(w, key);
    if (kv) {
        value_free(&kv->value);
        kv->value = copy;
        return DOZE_OK;
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? w->cap_kv * 2 : 16;
        gguf_kv *p = cap > SIZE_MAX / sizeof *p ? NULL : realloc(w->kv, cap * sizeof *p);
        if (!p) {
            value_free(&copy);
            return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory adding key %s", key);
        }
        w->kv = p;
        w->cap_kv = cap;
    }
    kv = &w->kv[w->n_kv];
    if ((st = string_copy(&kv->key, key, klen, err))) {
        value_free(&copy);
        return st;
    }
    kv->value = copy;
    w->n_kv++;
    return DOZE_OK;
}

doze_status gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t x, doze_error *err) {
    gguf_value v;
    memset(&v, 0, sizeof v);
    v.type = GGUF_TYPE_UINT32;
    v.v.u32 = x;
    return gguf_writer_set(w, key, &v, err);
}

doze_status gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t x, doze_error *err) {
    gguf_value v;
    memset(&v, 0, sizeof v);
    v.type = GGUF_TYPE_INT32;
    v.v.i32 = x;
    return gguf_writer_set(w, key, &v, err);
}

doze_status gguf_writer_set_f32(gguf_writer *w, const char *key, float x, doze_error *err) {
    gguf_value v;
    memset(&v, 0, sizeof v);
    v.type = GGUF_TYPE_FLOAT32;
    v.v.f32 = x;
    return gguf_writer_set(w, key, &v, err);
}

doze_status gguf_writer_set_bool(gguf_writer *w, const char *key, int x, doze_error *err) {
    gguf_value v;
    memset(&v, 0, sizeof v);
    v.type = GGUF_TYPE_BOOL;
    v.v.b = x ? 1 : 0;
    return gguf_writer_set(w, key, &v, err);
}

doze_status gguf_writer_set_str(gguf_writer *w, const char *key, const char *s, doze_error *err) {
    if (!s) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "key %s: NULL string", key ? key : "(null)");
    gguf_value v;
    memset(&v, 0, sizeof v);
    v.type = GGUF_TYPE_STRING;
    v.v.str.len = strlen(s);
    v.v.str.data = (char *)s; /* only read by the deep copy */
    return gguf_writer_set(w, key, &v, err);
}

doze_status gguf_writer_set_arr(gguf_writer *w, const char *key, uint32_t elem_type, uint64_t n,
                                const void *data, doze_error *err) {
    if (!w || !key) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "gguf_writer_set_arr: NULL argument");
    if (!gguf_scalar_size(elem_type) && elem_type != GGUF_TYPE_STRING)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "key %s: array element type %s not allowed here", key,
                         gguf_type_name(elem_type));
    if (n > GGUF_MAX_ARRAY)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "key %s: array of %llu elements is too long", key,
                         (unsigned long long)n);
    if (n && !data) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "key %s: NULL array data", key);
    gguf_value v;
    memset(&v, 0, sizeof v);
    v.type = GGUF_TYPE_ARRAY;
    v.v.arr.type = elem_type;
    v.v.arr.n = n;
    if (elem_type != GGUF_TYPE_STRING || n == 0) {
        v.v.arr.data = (void *)(uintptr_t)data; /* only read by the deep copy */
        return gguf_writer_set(w, key, &v, err);
    }
    if (n > SIZE_MAX / sizeof(gguf_string))
        return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "key %s: array too large", key);
    gguf_string *s = malloc((size_t)n * sizeof *s);
    if (!s) return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "key %s: out of memory", key);
    const char *const *strs = data;
    for (uint64_t i = 0; i < n; i++) {
        if (!strs[i]) {
            free(s);
            return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "key %s: NULL string at element %llu", key,
                             (unsigned long long)i);
        }
        s[i].len = strlen(strs[i]);
        s[i].data = (char *)(uintptr_t)strs[i];
    }
    v.v.arr.data = s;
    doze_status st = gguf_writer_set(w, key, &v, err);
    free(s);
    return st;
}

doze_status gguf_writer_copy_kvs(gguf_writer *w, const gguf_header *h, doze_error *err) {
    if (!w || !h) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "gguf_writer_copy_kvs: NULL argument");
    for (uint64_t i = 0; i < h->n_kv; i++) {
        const gguf_kv *kv = &h->kv[i];
        if (str_eq(&kv->key, GGUF_KEY_ALIGNMENT)) continue;
        if (memchr(kv->key.data, 0, (size_t)kv->key.len))
            return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "key #%llu contains a NUL byte",
                             (unsigned long long)i);
        doze_status st = gguf_writer_set(w, kv->key.data, &kv->value, err);
        if (st) return st;
    }
    return DOZE_OK;
}

doze_status gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type,
                                   uint32_t n_dims, const uint64_t *ne, const void *data,
                                   doze_error *err) {
    if (!w || !name || !ne)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "gguf_writer_add_tensor: NULL argument");
    size_t nlen = strlen(name);
    if (nlen > GGUF_MAX_STRING) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "tensor name too long");
    for (size_t i = 0; i < w->n_t; i++)
        if (str_eq(&w->t[i].info.name, name))
            return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "duplicate tensor name %s", name);
    if (w->n_t >= GGUF_MAX_COUNT) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "too many tensors");
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "tensor %s: n_dims %u is not in 1..%d", name, n_dims,
                         GGUF_MAX_DIMS);
    const doze_type_traits *tr = doze_type_traits_of((int)type);
    if (!tr || type > 0x7fffffffu)
        return doze_fail(err, DOZE_ERR_UNSUPPORTED_TYPE, "tensor %s: unsupported tensor type %u", name, type);
    gguf_tensor t;
    memset(&t, 0, sizeof t);
    t.n_dims = n_dims;
    t.type = type;
    uint64_t n_elem = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        t.ne[d] = d < n_dims ? ne[d] : 1;
        if (t.ne[d] == 0) return doze_fail(err, DOZE_ERR_BAD_SHAPE, "tensor %s: dimension %u is 0", name, d);
        if (t.ne[d] > (uint64_t)INT64_MAX / n_elem)
            return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "tensor %s: element count overflows", name);
        n_elem *= t.ne[d];
    }
    if (t.ne[0] % (uint64_t)tr->block_size != 0)
        return doze_fail(err, DOZE_ERR_BAD_SHAPE, "tensor %s: row length %llu is not a multiple of the %s block size %d",
                         name, (unsigned long long)t.ne[0], tr->name, tr->block_size);
    uint64_t row = doze_type_row_bytes((int)type, t.ne[0]), rows = n_elem / t.ne[0];
    if (row == 0 || rows > UINT64_MAX / row)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "tensor %s: byte size overflows", name);
    t.n_bytes = row * rows;
    if (t.n_bytes > SIZE_MAX)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "tensor %s: %llu bytes do not fit in memory", name,
                         (unsigned long long)t.n_bytes);
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? w->cap_t * 2 : 16;
        writer_tensor *p = cap > SIZE_MAX / sizeof *p ? NULL : realloc(w->t, cap * sizeof *p);
        if (!p) return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory adding tensor %s", name);
        w->t = p;
        w->cap_t = cap;
    }
    doze_status st = string_copy(&t.name, name, nlen, err);
    if (st) return st;
    w->t[w->n_t].info = t;
    w->t[w->n_t].data = data;
    w->n_t++;
    return DOZE_OK;
}

/* Buffered output through the callback. */
typedef struct {
    gguf_write_fn fn;
    void *ctx;
    uint8_t *buf;
    size_t len, cap;
    uint64_t total; /* bytes accepted so far */
    int failed;
} wbuf;

static void wb_flush(wbuf *b) {
    if (!b->failed && b->len && b->fn(b->ctx, b->buf, b->len) != 0) b->failed = 1;
    b->len = 0;
}

static void wb_put(wbuf *b, const void *p, uint64_t n) {
    const uint8_t *s = p;
    b->total += n;
    while (n && !b->failed) {
        if (b->len == 0 && n >= b->cap) { /* large: straight through */
            size_t k = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : (size_t)n;
            if (b->fn(b->ctx, s, k) != 0) b->failed = 1;
            s += k;
            n -= k;
            continue;
        }
        size_t k = b->cap - b->len;
        if ((uint64_t)k > n) k = (size_t)n;
        memcpy(b->buf + b->len, s, k);
        b->len += k;
        s += k;
        n -= k;
        if (b->len == b->cap) wb_flush(b);
    }
}

static void wb_zeros(wbuf *b, uint64_t n) {
    b->total += n;
    while (n && !b->failed) {
        size_t k = b->cap - b->len;
        if ((uint64_t)k > n) k = (size_t)n;
        memset(b->buf + b->len, 0, k);
        b->len += k;
        n -= k;
        if (b->len == b->cap) wb_flush(b);
    }
}

static void wb_u32(wbuf *b, uint32_t x) {
    uint8_t o[4];
    encode_scalar(4, &x, o);
    wb_put(b, o, 4);
}

static void wb_u64(wbuf *b, uint64_t x) {
    uint8_t o[8];
    encode_scalar(8, &x, o);
    wb_put(b, o, 8);
}

static void wb_str(wbuf *b, const gguf_string *s) {
    wb_u64(b, s->len);
    wb_put(b, s->data, s->len);
}

static void wb_pad(wbuf *b, uint32_t alignment) {
    uint64_t r = b->total % alignment;
    if (r) wb_zeros(b, alignment - r);
}

static void wb_array_body(wbuf *b, const gguf_value *v) {
    uint32_t et = v->v.arr.type;
    uint64_t n = v->v.arr.n;
    wb_u32(b, et);
    wb_u64(b, n);
    size_t ssize = gguf_scalar_size(et);
    for (uint64_t i = 0; i < n && !b->failed; i++) {
        if (ssize) {
            uint8_t o[8];
            encode_scalar(ssize, (const uint8_t *)v->v.arr.data + i * ssize, o);
            wb_put(b, o, ssize);
        } else if (et == GGUF_TYPE_STRING) {
            wb_str(b, &((const gguf_string *)v->v.arr.data)[i]);
        } else {
            wb_array_body(b, &((const gguf_value *)v->v.arr.data)[i]);
        }
    }
}

static void wb_value(wbuf *b, const gguf_value *v) {
    size_t ssize = gguf_scalar_size(v->type);
    if (ssize) {
        uint8_t o[8];
        encode_scalar(ssize, &v->v, o);
        wb_put(b, o, ssize);
    } else if (v->type == GGUF_TYPE_STRING) {
        wb_str(b, &v->v.str);
    } else {
        wb_array_body(b, v);
    }
}

doze_status gguf_writer_write(const gguf_writer *w, gguf_write_fn fn, void *ctx, doze_error *err) {
    if (!w || !fn) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "gguf_writer_write: NULL argument");
    uint32_t alignment = w->alignment;
    const gguf_kv *user_align = writer_find(w, GGUF_KEY_ALIGNMENT);
    if (user_align) alignment = user_align->value.v.u32; /* validated by gguf_writer_set */
    int auto_align = !user_align && alignment != GGUF_DEFAULT_ALIGNMENT;

    /* offsets, each aligned, in order */
    uint64_t *offsets = NULL;
    if (w->n_t && !(offsets = malloc(w->n_t * sizeof *offsets)))
        return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory writing GGUF");
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        offsets[i] = off;
        uint64_t nb = w->t[i].info.n_bytes;
        if (nb > UINT64_MAX - alignment || off > UINT64_MAX - alignment - nb) {
            free(offsets);
            return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "tensor data exceeds 2^64 bytes");
        }
        off = (off + nb + alignment - 1) / alignment * alignment;
    }

    wbuf b;
    memset(&b, 0, sizeof b);
    b.fn = fn;
    b.ctx = ctx;
    b.cap = 1u << 16;
    if (!(b.buf = malloc(b.cap))) {
        free(offsets);
        return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory writing GGUF");
    }
    static const uint8_t magic[4] = {'G', 'G', 'U', 'F'};
    wb_put(&b, magic, 4);
    wb_u32(&b, 3);
    wb_u64(&b, w->n_t);
    wb_u64(&b, w->n_kv + (auto_align ? 1 : 0));
    for (size_t i = 0; i < w->n_kv && !b.failed; i++) {
        wb_str(&b, &w->kv[i].key);
        wb_u32(&b, w->kv[i].value.type);
        wb_value(&b, &w->kv[i].value);
    }
    if (auto_align) {
        gguf_string k = {sizeof GGUF_KEY_ALIGNMENT - 1, (char *)(uintptr_t)GGUF_KEY_ALIGNMENT};
        wb_str(&b, &k);
        wb_u32(&b, GGUF_TYPE_UINT32);
        wb_u32(&b, alignment);
    }
    for (size_t i = 0; i < w->n_t && !b.failed; i++) {
        const gguf_tensor *t = &w->t[i].info;
        wb_str(&b, &t->name);
        wb_u32(&b, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) wb_u64(&b, t->ne[d]);
        wb_u32(&b, t->type);
        wb_u64(&b, offsets[i]);
    }
    wb_pad(&b, alignment);
    for (size_t i = 0; i < w->n_t && !b.failed; i++) {
        if (w->t[i].data) wb_put(&b, w->t[i].data, w->t[i].info.n_bytes);
        else wb_zeros(&b, w->t[i].info.n_bytes);
        wb_pad(&b, alignment);
    }
    wb_flush(&b);
    free(b.buf);
    free(offsets);
    if (b.failed) return doze_fail(err, DOZE_ERR_IO, "GGUF write callback failed (near byte %llu)",
                                   (unsigned long long)b.total);
    return DOZE_OK;
}
