/* GGUF reader/writer: round trips, incremental (truncated) parsing, hostile
 * headers, and the real llama.cpp files from ../shared when present. */
#include <stdint.h>

#include "gguf.h"
#include "types.h"
#include "test_util.h"

/* ---- helpers ------------------------------------------------------------------------ */

typedef struct {
    uint8_t *p;
    size_t n, cap;
    int fail_after; /* >= 0: fail the call once this many bytes were accepted */
} membuf;

static int mem_write(void *ctx, const void *bytes, size_t n) {
    membuf *m = ctx;
    if (m->fail_after >= 0 && m->n + n > (size_t)m->fail_after) return 1;
    if (m->n + n > m->cap) {
        size_t cap = m->cap ? m->cap : 256;
        while (cap < m->n + n) cap *= 2;
        uint8_t *q = realloc(m->p, cap);
        if (!q) return 1;
        m->p = q;
        m->cap = cap;
    }
    if (n) memcpy(m->p + m->n, bytes, n);
    m->n += n;
    return 0;
}

static int header_is_zero(const gguf_header *h) {
    static const gguf_header z;
    return memcmp(h, &z, sizeof z) == 0;
}

static int gstr_eq(const gguf_string *a, const gguf_string *b) {
    return a->len == b->len && memcmp(a->data, b->data, (size_t)a->len) == 0 && a->data[a->len] == '\0';
}

static int value_eq(const gguf_value *a, const gguf_value *b) {
    if (a->type != b->type) return 0;
    size_t s = gguf_scalar_size(a->type);
    if (s) return memcmp(&a->v, &b->v, s) == 0;
    if (a->type == GGUF_TYPE_STRING) return gstr_eq(&a->v.str, &b->v.str);
    if (a->type != GGUF_TYPE_ARRAY) return 0;
    if (a->v.arr.type != b->v.arr.type || a->v.arr.n != b->v.arr.n) return 0;
    uint64_t n = a->v.arr.n;
    s = gguf_scalar_size(a->v.arr.type);
    if (s) return n == 0 || memcmp(a->v.arr.data, b->v.arr.data, (size_t)(n * s)) == 0;
    for (uint64_t i = 0; i < n; i++) {
        if (a->v.arr.type == GGUF_TYPE_STRING) {
            if (!gstr_eq(&((const gguf_string *)a->v.arr.data)[i], &((const gguf_string *)b->v.arr.data)[i]))
                return 0;
        } else if (!value_eq(&((const gguf_value *)a->v.arr.data)[i], &((const gguf_value *)b->v.arr.data)[i])) {
            return 0;
        }
    }
    return 1;
}

/* Little byte builder for hand-made (hostile) files. */
typedef struct {
    uint8_t b[4096];
    size_t n;
} bb;

static void bb_raw(bb *x, const void *p, size_t n) {
    memcpy(x->b + x->n, p, n);
    x->n += n;
}
static void bb_u8(bb *x, uint8_t v) { bb_raw(x, &v, 1); }
static void bb_u32(bb *x, uint32_t v) {
    for (int i = 0; i < 4; i++) bb_u8(x, (uint8_t)(v >> (8 * i)));
}
static void bb_u64(bb *x, uint64_t v) {
    for (int i = 0; i < 8; i++) bb_u8(x, (uint8_t)(v >> (8 * i)));
}
static void bb_str(bb *x, const char *s) {
    bb_u64(x, strlen(s));
    bb_raw(x, s, strlen(s));
}
static void bb_head(bb *x, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    x->n = 0;
    bb_raw(x, "GGUF", 4);
    bb_u32(x, version);
    bb_u64(x, n_tensors);
    bb_u64(x, n_kv);
}
static void bb_tensor(bb *x, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                      uint64_t offset) {
    bb_str(x, name);
    bb_u32(x, n_dims);
    for (uint32_t i = 0; i < n_dims; i++) bb_u64(x, ne[i]);
    bb_u32(x, type);
    bb_u64(x, offset);
}
/* Pads to 32 and adds `data` zero bytes, so a valid header parses OK. */
static void bb_finish(bb *x, size_t data) {
    while (x->n % 32) bb_u8(x, 0);
    for (size_t i = 0; i < data; i++) bb_u8(x, 0);
}

static doze_status parse_expect(const char *what, const bb *x, doze_status want) {
    gguf_header h;
    doze_error err = {0, ""};
    doze_status st = gguf_parse_header(x->b, x->n, &h, &err);
    printf("  %-34s -> %-20s %s\n", what, doze_status_name(st), st ? err.message : "");
    CHECK_MSG(st == want, "%s: got %s, want %s (%s)", what, doze_status_name(st), doze_status_name(want),
              err.message);
    if (st) {
        CHECK(header_is_zero(&h));
        CHECK(err.code == (int)st);
        CHECK(err.message[0] != '\0');
    }
    gguf_header_free(&h);
    return st;
}

/* ---- 1. round trip ---------------------------------------------------------------------- */

#define N_TENSORS 5
static const char *const t_names[N_TENSORS] = {"a.f32.1d", "b.f16.2d", "c.q8_0.3d", "d.f32.4d", "e.q8_0.2d"};
static const uint32_t t_types[N_TENSORS] = {DOZE_TYPE_F32, DOZE_TYPE_F16, DOZE_TYPE_Q8_0, DOZE_TYPE_F32,
                                            DOZE_TYPE_Q8_0};
static const uint32_t t_ndims[N_TENSORS] = {1, 2, 3, 4, 2};
static const uint64_t t_ne[N_TENSORS][4] = {{5, 1, 1, 1}, {3, 4, 1, 1}, {64, 2, 3, 1}, {2, 3, 4, 5}, {32, 1, 1, 1}};
static const uint64_t t_bytes[N_TENSORS] = {20, 24, 64 / 32 * 34 * 6, 120 * 4, 34};

static const uint8_t a_u8[3] = {1, 2, 255};
static const int32_t a_i32[4] = {-1, 0, 1, INT32_MIN};
static const float a_f32[2] = {1.5f, -0.0f};
static const char *const a_str[3] = {"alpha", "", "\xe2\x96\x81gamma"};

/* Builds the reference file; returns the writer (caller frees). */
static gguf_writer *build_writer(uint32_t alignment, uint8_t *tdata[N_TENSORS], gguf_value *expect,
                                 const char **expect_keys, int *n_expect) {
    doze_error err;
    gguf_writer *w = gguf_writer_new(alignment);
    CHECK(w != NULL);
    int k = 0;
#define SETV(key, T, field, val)                                    \
    do {                                                            \
        gguf_value v_;                                              \
        memset(&v_, 0, sizeof v_);                                  \
        v_.type = T;                                                \
        v_.v.field = val;                                           \
        CHECK(gguf_writer_set(w, key, &v_, &err) == DOZE_OK);      \
        expect[k] = v_;                                             \
        expect_keys[k++] = key;                                     \
    } while (0)
    SETV("t.u8", GGUF_TYPE_UINT8, u8, 200);
    SETV("t.i8", GGUF_TYPE_INT8, i8, -100);
    SETV("t.u16", GGUF_TYPE_UINT16, u16, 60000);
    SETV("t.i16", GGUF_TYPE_INT16, i16, -30000);
    SETV("t.u32", GGUF_TYPE_UINT32, u32, 4000000000u);
    SETV("t.i32", GGUF_TYPE_INT32, i32, -2000000000);
    SETV("t.f32", GGUF_TYPE_FLOAT32, f32, 3.25f);
    SETV("t.bool", GGUF_TYPE_BOOL, b, 1);
    SETV("t.u64", GGUF_TYPE_UINT64, u64, (1ull << 63) + 5);
    SETV("t.i64", GGUF_TYPE_INT64, i64, -(1ll << 62) - 7);
    SETV("t.f64", GGUF_TYPE_FLOAT64, f64, 1e300);
#undef SETV
    /* string with an embedded NUL, through the generic setter */
    static char nul_str[] = {'a', '\0', 'b'};
    expect[k].type = GGUF_TYPE_STRING;
    expect[k].v.str.len = 3;
    expect[k].v.str.data = nul_str;
    CHECK(gguf_writer_set(w, "t.str_nul", &expect[k], &err) == DOZE_OK);
    expect_keys[k++] = "t.str_nul";

    /* helpers */
    CHECK(gguf_writer_set_u32(w, "h.u32", 7, &err) == DOZE_OK);
    CHECK(gguf_writer_set_i32(w, "h.i32", -7, &err) == DOZE_OK);
    CHECK(gguf_writer_set_f32(w, "h.f32", 0.5f, &err) == DOZE_OK);
    CHECK(gguf_writer_set_bool(w, "h.bool", 5, &err) == DOZE_OK); /* nonzero -> 1 */
    CHECK(gguf_writer_set_str(w, "general.name", "hello, gguf", &err) == DOZE_OK);
    CHECK(gguf_writer_set_str(w, "h.empty", "", &err) == DOZE_OK);
    CHECK(gguf_writer_set_arr(w, "a.u8", GGUF_TYPE_UINT8, 3, a_u8, &err) == DOZE_OK);
    CHECK(gguf_writer_set_arr(w, "a.i32", GGUF_TYPE_INT32, 4, a_i32, &err) == DOZE_OK);
    CHECK(gguf_writer_set_arr(w, "a.f32", GGUF_TYPE_FLOAT32, 2, a_f32, &err) == DOZE_OK);
    CHECK(gguf_writer_set_arr(w, "a.str", GGUF_TYPE_STRING, 3, a_str, &err) == DOZE_OK);
    CHECK(gguf_writer_set_arr(w, "a.empty", GGUF_TYPE_INT32, 0, NULL, &err) == DOZE_OK);
    CHECK(gguf_writer_set_arr(w, "a.nested_bad", GGUF_TYPE_ARRAY, 0, NULL, &err) == DOZE_ERR_INVALID_ARGUMENT);

    /* nested: [[1, 2] (i32), ["x", "y"], [[true]] ] */
    static int32_t n_i32[2] = {1, 2};
    static gguf_string n_s[2] = {{1, (char *)"x"}, {1, (char *)"y"}};
    static uint8_t n_b[1] = {1};
    static gguf_value inner2[1];
    static gguf_value inner[3];
    memset(inner, 0, sizeof inner);
    memset(inner2, 0, sizeof inner2);
    inner2[0].type = GGUF_TYPE_ARRAY;
    inner2[0].v.arr.type = GGUF_TYPE_BOOL;
    inner2[0].v.arr.n = 1;
    inner2[0].v.arr.data = n_b;
    inner[0].type = GGUF_TYPE_ARRAY;
    inner[0].v.arr.type = GGUF_TYPE_INT32;
    inner[0].v.arr.n = 2;
    inner[0].v.arr.data = n_i32;
    inner[1].type = GGUF_TYPE_ARRAY;
    inner[1].v.arr.type = GGUF_TYPE_STRING;
    inner[1].v.arr.n = 2;
    inner[1].v.arr.data = n_s;
    inner[2].type = GGUF_TYPE_ARRAY;
    inner[2].v.arr.type = GGUF_TYPE_ARRAY;
    inner[2].v.arr.n = 1;
    inner[2].v.arr.data = inner2;
    memset(&expect[k], 0, sizeof expect[k]);
    expect[k].type = GGUF_TYPE_ARRAY;
    expect[k].v.arr.type = GGUF_TYPE_ARRAY;
    expect[k].v.arr.n = 3;
    expect[k].v.arr.data = inner;
    CHECK(gguf_writer_set(w, "a.nested", &expect[k], &err) == DOZE_OK);
    expect_keys[k++] = "a.nested";

    /* replacing keeps the position */
    CHECK(gguf_writer_set_u32(w, "z.replace", 1, &err) == DOZE_OK);
    CHECK(gguf_writer_set_str(w, "z.replace", "second", &err) == DOZE_OK);
    *n_expect = k;

    for (int i = 0; i < N_TENSORS; i++) {
        tdata[i] = malloc((size_t)t_bytes[i]);
        for (uint64_t j = 0; j < t_bytes[i]; j++) tdata[i][j] = (uint8_t)(j * 31 + (uint64_t)i * 7 + 1);
        CHECK(gguf_writer_add_tensor(w, t_names[i], t_types[i], t_ndims[i], t_ne[i], tdata[i], &err) == DOZE_OK);
    }
    /* writer-side validation */
    uint64_t ne_bad[2] = {33, 2}, ne_zero[2] = {4, 0}, ne1[1] = {4};
    CHECK(gguf_writer_add_tensor(w, t_names[0], DOZE_TYPE_F32, 1, ne1, tdata[0], &err) == DOZE_ERR_INVALID_ARGUMENT);
    CHECK(gguf_writer_add_tensor(w, "bad.q8", DOZE_TYPE_Q8_0, 2, ne_bad, NULL, &err) == DOZE_ERR_BAD_SHAPE);
    CHECK(gguf_writer_add_tensor(w, "bad.zero", DOZE_TYPE_F32, 2, ne_zero, NULL, &err) == DOZE_ERR_BAD_SHAPE);
    CHECK(gguf_writer_add_tensor(w, "bad.type", 99, 1, ne1, NULL, &err) == DOZE_ERR_UNSUPPORTED_TYPE);
    CHECK(gguf_writer_add_tensor(w, "bad.dims", DOZE_TYPE_F32, 5, t_ne[3], NULL, &err) == DOZE_ERR_INVALID_ARGUMENT);
    gguf_value bad;
    memset(&bad, 0, sizeof bad);
    bad.type = GGUF_TYPE_BOOL;
    bad.v.b = 2;
    CHECK(gguf_writer_set(w, "bad.bool", &bad, &err) == DOZE_ERR_INVALID_ARGUMENT);
    bad.type = 13;
    CHECK(gguf_writer_set(w, "bad.type", &bad, &err) == DOZE_ERR_INVALID_ARGUMENT);
    CHECK(gguf_writer_set_u32(w, "general.alignment", 3, &err) == DOZE_ERR_INVALID_ARGUMENT);
    return w;
}

static void test_round_trip(uint32_t alignment, membuf *out_file) {
    printf("round trip, alignment %u\n", alignment);
    uint8_t *tdata[N_TENSORS];
    gguf_value expect[32];
    const char *expect_keys[32];
    int n_expect = 0;
    memset(expect, 0, sizeof expect);
    gguf_writer *w = build_writer(alignment, tdata, expect, expect_keys, &n_expect);
    membuf m = {NULL, 0, 0, -1};
    doze_error err = {0, ""};
    CHECK(gguf_writer_write(w, mem_write, &m, &err) == DOZE_OK);

    gguf_header h;
    doze_status st = gguf_parse_header(m.p, m.n, &h, &err);
    CHECK_MSG(st == DOZE_OK, "%s", err.message);
    CHECK(h.version == 3);
    CHECK(h.alignment == alignment);
    CHECK(h.data_offset % alignment == 0);
    /* 12 generic + 6 helpers + 5 arrays + nested + replace, + general.alignment when not 32 */
    uint64_t want_kv = (uint64_t)n_expect + 6 + 5 + 1 + (alignment != 32 ? 1 : 0);
    CHECK_MSG(h.n_kv == want_kv, "n_kv %llu want %llu", (unsigned long long)h.n_kv, (unsigned long long)want_kv);
    for (int i = 0; i < n_expect; i++) {
        const gguf_kv *kv = gguf_find_kv(&h, expect_keys[i]);
        CHECK_MSG(kv && value_eq(&kv->value, &expect[i]), "key %s", expect_keys[i]);
    }
    /* order kept: first key is t.u8, z.replace after a.nested */
    CHECK(h.n_kv > 0 && strcmp(h.kv[0].key.data, "t.u8") == 0);
    const gguf_kv *rep = gguf_find_kv(&h, "z.replace");
    const gguf_kv *nes = gguf_find_kv(&h, "a.nested");
    CHECK(rep && nes && rep == nes + 1);

    int64_t iv;
    double fv;
    const gguf_string *sv;
    uint32_t at;
    uint64_t an;
    const void *ad;
    CHECK(gguf_get_int(&h, "h.u32", &iv, &err) == DOZE_OK && iv == 7);
    CHECK(gguf_get_int(&h, "h.i32", &iv, &err) == DOZE_OK && iv == -7);
    CHECK(gguf_get_int(&h, "h.bool", &iv, &err) == DOZE_OK && iv == 1);
    CHECK(gguf_get_int(&h, "t.u8", &iv, &err) == DOZE_OK && iv == 200);
    CHECK(gguf_get_int(&h, "t.i64", &iv, &err) == DOZE_OK && iv == -(1ll << 62) - 7);
    CHECK(gguf_get_int(&h, "t.u64", &iv, &err) == DOZE_ERR_BAD_FORMAT);
    CHECK(gguf_get_int(&h, "h.f32", &iv, &err) == DOZE_ERR_BAD_FORMAT);
    CHECK(gguf_get_int(&h, "no.such.key", &iv, &err) == DOZE_ERR_MISSING);
    CHECK(gguf_get_float(&h, "h.f32", &fv, &err) == DOZE_OK && fv == 0.5);
    CHECK(gguf_get_float(&h, "t.f64", &fv, &err) == DOZE_OK && fv == 1e300);
    CHECK(gguf_get_float(&h, "h.i32", &fv, &err) == DOZE_OK && fv == -7.0);
    CHECK(gguf_get_float(&h, "general.name", &fv, &err) == DOZE_ERR_BAD_FORMAT);
    CHECK(gguf_get_string(&h, "general.name", &sv, &err) == DOZE_OK && strcmp(sv->data, "hello, gguf") == 0);
    CHECK(gguf_get_string(&h, "h.empty", &sv, &err) == DOZE_OK && sv->len == 0 && sv->data[0] == '\0');
    CHECK(gguf_get_string(&h, "z.replace", &sv, &err) == DOZE_OK && strcmp(sv->data, "second") == 0);
    CHECK(gguf_get_string(&h, "h.u32", &sv, &err) == DOZE_ERR_BAD_FORMAT);
    CHECK(gguf_get_array(&h, "a.i32", GGUF_TYPE_INT32, &at, &an, &ad, &err) == DOZE_OK && an == 4 &&
          memcmp(ad, a_i32, 16) == 0);
    CHECK(gguf_get_array(&h, "a.str", -1, &at, &an, &ad, &err) == DOZE_OK && at == GGUF_TYPE_STRING && an == 3 &&
          strcmp(((const gguf_string *)ad)[2].data, "\xe2\x96\x81gamma") == 0 &&
          ((const gguf_string *)ad)[1].len == 0);
    CHECK(gguf_get_array(&h, "a.u8", GGUF_TYPE_UINT8, &at, &an, &ad, &err) == DOZE_OK && an == 3 &&
          ((const uint8_t *)ad)[2] == 255);
    CHECK(gguf_get_array(&h, "a.f32", GGUF_TYPE_FLOAT32, &at, &an, &ad, &err) == DOZE_OK && an == 2 &&
          ((const float *)ad)[0] == 1.5f);
    CHECK(gguf_get_array(&h, "a.empty", GGUF_TYPE_INT32, &at, &an, &ad, &err) == DOZE_OK && an == 0);
    CHECK(gguf_get_array(&h, "a.i32", GGUF_TYPE_FLOAT32, &at, &an, &ad, &err) == DOZE_ERR_BAD_FORMAT);
    CHECK(gguf_get_array(&h, "h.u32", -1, &at, &an, &ad, &err) == DOZE_ERR_BAD_FORMAT);
    CHECK(gguf_get_array(&h, "nope", -1, &at, &an, &ad, &err) == DOZE_ERR_MISSING);
    if (alignment != 32) {
        CHECK(gguf_get_int(&h, "general.alignment", &iv, &err) == DOZE_OK && iv == alignment);
    } else {
        CHECK(gguf_find_kv(&h, "general.alignment") == NULL);
    }

    CHECK(h.n_tensors == N_TENSORS);
    uint64_t end = 0;
    for (int i = 0; i < N_TENSORS; i++) {
        const gguf_tensor *t = gguf_find_tensor(&h, t_names[i]);
        CHECK_MSG(t != NULL, "tensor %s", t_names[i]);
        if (!t) continue;
        CHECK(t == &h.tensors[i]);
        CHECK(t->n_dims == t_ndims[i]);
        CHECK(memcmp(t->ne, t_ne[i], sizeof t->ne) == 0);
        CHECK(t->type == t_types[i]);
        CHECK(t->n_bytes == t_bytes[i]);
        CHECK(t->offset % alignment == 0);
        CHECK(t->offset >= end); /* in order, packed */
        CHECK(h.data_offset + t->offset + t->n_bytes <= m.n);
        if (h.data_offset + t->offset + t->n_bytes <= m.n)
            CHECK(memcmp(m.p + h.data_offset + t->offset, tdata[i], (size_t)t->n_bytes) == 0);
        end = t->offset + t->n_bytes;
    }
    CHECK(gguf_find_tensor(&h, "nope") == NULL);
    CHECK(h.data_size == end);
    CHECK(m.n == h.data_offset + (end + alignment - 1) / alignment * alignment);
    /* padding bytes are zero */
    for (size_t i = (size_t)(h.data_offset + end); i < m.n; i++) CHECK(m.p[i] == 0);

    /* write failure is reported */
    membuf bad = {NULL, 0, 0, 100};
    CHECK(gguf_writer_write(w, mem_write, &bad, &err) == DOZE_ERR_IO);
    free(bad.p);

    gguf_header_free(&h);
    CHECK(header_is_zero(&h));
    gguf_writer_free(w);
    for (int i = 0; i < N_TENSORS; i++) free(tdata[i]);
    if (out_file) *out_file = m;
    else free(m.p);
}

/* ---- 2. incremental ---------------------------------------------------------------------- */

static void test_incremental(const membuf *m) {
    printf("incremental: every prefix of a %zu-byte file\n", m->n);
    gguf_header h;
    doze_error err;
    CHECK(gguf_parse_header(m->p, m->n, &h, &err) == DOZE_OK);
    size_t data_offset = (size_t)h.data_offset;
    gguf_header_free(&h);
    int bad = 0;
    for (size_t n = 0; n < data_offset; n++) {
        doze_status st = gguf_parse_header(n ? m->p : NULL, n, &h, &err);
        if (st != DOZE_ERR_TRUNCATED || !header_is_zero(&h)) {
            if (bad++ < 5) fprintf(stderr, "prefix %zu: %s %s\n", n, doze_status_name(st), err.message);
            test_failures++;
        }
        gguf_header_free(&h);
    }
    for (size_t n = data_offset; n <= m->n; n++) {
        doze_status st = gguf_parse_header(m->p, n, &h, &err);
        if (st != DOZE_OK) {
            if (bad++ < 5) fprintf(stderr, "prefix %zu: %s %s\n", n, doze_status_name(st), err.message);
            test_failures++;
        }
        gguf_header_free(&h);
    }
    /* a copy in an exactly-sized heap buffer: ASan catches any overread */
    uint8_t *copy = malloc(data_offset);
    memcpy(copy, m->p, data_offset);
    CHECK(gguf_parse_header(copy, data_offset, &h, &err) == DOZE_OK);
    gguf_header_free(&h);
    CHECK(gguf_parse_header(copy, data_offset - 1, &h, &err) == DOZE_ERR_TRUNCATED);
    printf("  at %zu: %s\n", data_offset - 1, err.message);
    free(copy);
}

/* ---- 3. hostile ----------------------------------------------------------------------------- */

static void test_hostile(void) {
    printf("hostile headers\n");
    bb x;
    const uint64_t ne8[1] = {8}, ne2d[2] = {8, 2};

    x.n = 0;
    bb_raw(&x, "GGUX", 4);
    bb_u32(&x, 3);
    parse_expect("bad magic", &x, DOZE_ERR_BAD_MAGIC);
    x.n = 2;
    x.b[1] = 'X';
    parse_expect("bad magic, 2 bytes", &x, DOZE_ERR_BAD_MAGIC);
    x.n = 0;
    bb_raw(&x, "GG", 2);
    parse_expect("good 2-byte prefix", &x, DOZE_ERR_TRUNCATED);
    x.n = 0;
    bb_raw(&x, "GGUF\x03", 5);
    parse_expect("version cut", &x, DOZE_ERR_TRUNCATED);

    bb_head(&x, 1, 0, 0);
    parse_expect("version 1", &x, DOZE_ERR_UNSUPPORTED_VERSION);
    bb_head(&x, 4, 0, 0);
    parse_expect("version 4", &x, DOZE_ERR_UNSUPPORTED_VERSION);
    bb_head(&x, 2, 0, 0);
    bb_finish(&x, 0);
    parse_expect("version 2, empty", &x, DOZE_OK);
    bb_head(&x, 3, 0, 0);
    bb_finish(&x, 0);
    parse_expect("version 3, empty", &x, DOZE_OK);
    bb_head(&x, 3, 0, 0);
    parse_expect("no tensors, no padding", &x, DOZE_OK); /* as llama.cpp vocab files */
    bb_head(&x, 3, 1, 0);
    bb_tensor(&x, "t", 1, ne8, DOZE_TYPE_F32, 0);
    while (x.n % 32 == 0) bb_u8(&x, 0);
    parse_expect("tensor, no padding", &x, DOZE_ERR_TRUNCATED);

    bb_head(&x, 3, 0, 1ull << 63);
    parse_expect("n_kv 2^63", &x, DOZE_ERR_BAD_FORMAT);
    bb_head(&x, 3, UINT64_MAX, 0);
    parse_expect("n_tensors 2^64-1", &x, DOZE_ERR_BAD_FORMAT);
    bb_head(&x, 3, 0, 1000);
    parse_expect("n_kv 1000, no bytes", &x, DOZE_ERR_TRUNCATED);

    bb_head(&x, 3, 0, 1);
    bb_u64(&x, UINT64_MAX);
    bb_raw(&x, "general.name", 12);
    parse_expect("key length 2^64-1", &x, DOZE_ERR_BAD_FORMAT);
    bb_head(&x, 3, 0, 1);
    bb_str(&x, "general.name");
    bb_u32(&x, GGUF_TYPE_STRING);
    bb_u64(&x, UINT64_MAX);
    parse_expect("string length 2^64-1", &x, DOZE_ERR_BAD_FORMAT);
    bb_head(&x, 3, 0, 1);
    bb_str(&x, "general.name");
    bb_u32(&x, GGUF_TYPE_STRING);
    bb_u64(&x, 1000);
    bb_raw(&x, "abc", 3);
    parse_expect("string length 1000, 3 bytes", &x, DOZE_ERR_TRUNCATED);

    bb_head(&x, 3, 0, 1);
    bb_str(&x, "a");
    bb_u32(&x, GGUF_TYPE_ARRAY);
    bb_u32(&x, GGUF_TYPE_UINT32);
    bb_u64(&x, 1ull << 40);
    parse_expect("array of 2^40", &x, DOZE_ERR_BAD_FORMAT);
    bb_head(&x, 3, 0, 1);
    bb_str(&x, "a");
    bb_u32(&x, GGUF_TYPE_ARRAY);
    bb_u32(&x, GGUF_TYPE_STRING);
    bb_u64(&x, 1u << 20);
    parse_expect("array of 2^20 strings, no bytes", &x, DOZE_ERR_TRUNCATED);
    bb_head(&x, 3, 0, 1);
    bb_str(&x, "a");
    bb_u32(&x, GGUF_TYPE_ARRAY);
    bb_u32(&x, 77);
    bb_u64(&x, 1);
    parse_expect("array of unknown type", &x, DOZE_ERR_UNSUPPORTED_TYPE);
    bb_head(&x, 3, 0, 1);
    bb_str(&x, "a");
    bb_u32(&x, 13);
    parse_expect("unknown value type", &x, DOZE_ERR_UNSUPPORTED_TYPE);

    /* nesting: depth 8 ok, 9 rejected */
    for (int depth = 8; depth <= 9; depth++) {
        bb_head(&x, 3, 0, 1);
        bb_str(&x, "nest");
        bb_u32(&x, GGUF_TYPE_ARRAY);
        for (int d = 1; d < depth; d++) {
            bb_u32(&x, GGUF_TYPE_ARRAY);
            bb_u64(&x, 1);
        }
        bb_u32(&x, GGUF_TYPE_UINT8);
        bb_u64(&x, 1);
        bb_u8(&x, 42);
        bb_finish(&x, 0);
        parse_expect(depth == 8 ? "nested depth 8" : "nested depth 9", &x,
                     depth == 8 ? DOZE_OK : DOZE_ERR_BAD_FORMAT);
    }

    bb_head(&x, 3, 0, 1);
    bb_str(&x, "b");
    bb_u32(&x, GGUF_TYPE_BOOL);
    bb_u8(&x, 2);
    bb_finish(&x, 0);
    parse_expect("bool 2", &x, DOZE_ERR_BAD_FORMAT);
    bb_head(&x, 3, 0, 1);
    bb_str(&x, "b");
    bb_u32(&x, GGUF_TYPE_ARRAY);
    bb_u32(&x, GGUF_TYPE_BOOL);
    bb_u64(&x, 3);
    bb_u8(&x, 0);
    bb_u8(&x, 1);
    bb_u8(&x, 7);
    bb_finish(&x, 0);
    parse_expect("bool array element 7", &x, DOZE_ERR_BAD_FORMAT);

    bb_head(&x, 3, 0, 2);
    bb_str(&x, "k");
    bb_u32(&x, GGUF_TYPE_UINT8);
    bb_u8(&x, 1);
    bb_str(&x, "k");
    bb_u32(&x, GGUF_TYPE_INT32);
    bb_u32(&x, 1);
    bb_finish(&x, 0);
    parse_expect("duplicate key", &x, DOZE_ERR_BAD_FORMAT);

    const uint32_t aligns[4] = {3, 0, 64, 1};
    const doze_status want_align[4] = {DOZE_ERR_BAD_FORMAT, DOZE_ERR_BAD_FORMAT, DOZE_OK, DOZE_OK};
    for (int i = 0; i < 4; i++) {
        bb_head(&x, 3, 0, 1);
        bb_str(&x, "general.alignment");
        bb_u32(&x, GGUF_TYPE_UINT32);
        bb_u32(&x, aligns[i]);
        bb_finish(&x, 64);
        char what[64];
        snprintf(what, sizeof what, "alignment %u", aligns[i]);
        parse_expect(what, &x, want_align[i]);
    }
    bb_head(&x, 3, 0, 1);
    bb_str(&x, "general.alignment");
    bb_u32(&x, GGUF_TYPE_UINT64);
    bb_u64(&x, 32);
    bb_finish(&x, 0);
    parse_expect("alignment as u64", &x, DOZE_ERR_BAD_FORMAT);
    /* alignment 64 with a 32-padded header: needs more bytes */
    bb_head(&x, 3, 0, 1);
    bb_str(&x, "general.alignment");
    bb_u32(&x, GGUF_TYPE_UINT32);
    bb_u32(&x, 64);
    bb_str(&x, "k.padding.the.header.to.134.bytes"); /* header end 134: 160 when 32-padded */
    bb_u32(&x, GGUF_TYPE_UINT8);
    bb_u8(&x, 1);
    x.b[16] = 2; /* n_kv */
    bb_tensor(&x, "t", 1, ne8, DOZE_TYPE_F32, 0);
    x.b[8] = 1; /* n_tensors */
    while (x.n % 32 || x.n % 64 == 0) bb_u8(&x, 0);
    parse_expect("alignment 64, 32-padded", &x, DOZE_ERR_TRUNCATED);
    while (x.n % 64) bb_u8(&x, 0);
    for (int i = 0; i < 32; i++) bb_u8(&x, 0);
    parse_expect("alignment 64, 64-padded", &x, DOZE_OK);

    /* tensors */
    bb_head(&x, 3, 1, 0);
    bb_tensor(&x, "t", 1, ne8, DOZE_TYPE_F32, 0);
    bb_finish(&x, 32);
    parse_expect("one good tensor", &x, DOZE_OK);
    {
        gguf_header h;
        CHECK(gguf_parse_header(x.b, x.n, &h, NULL) == DOZE_OK);
        CHECK(h.data_size == 32 && h.tensors && h.tensors[0].ne[1] == 1 && h.tensors[0].ne[3] == 1);
        gguf_header_free(&h);
    }
    bb_head(&x, 3, 1, 0);
    {
        const uint64_t ne5[5] = {8, 1, 1, 1, 1};
        bb_tensor(&x, "t", 5, ne5, DOZE_TYPE_F32, 0);
    }
    bb_finish(&x, 32);
    parse_expect("n_dims 5", &x, DOZE_ERR_BAD_FORMAT);
    bb_head(&x, 3, 1, 0);
    bb_tensor(&x, "t", 0, ne8, DOZE_TYPE_F32, 0);
    bb_finish(&x, 32);
    parse_expect("n_dims 0", &x, DOZE_ERR_BAD_FORMAT);
    bb_head(&x, 3, 1, 0);
    {
        const uint64_t nez[2] = {8, 0};
        bb_tensor(&x, "t", 2, nez, DOZE_TYPE_F32, 0);
    }
    bb_finish(&x, 32);
    parse_expect("zero dim", &x, DOZE_ERR_BAD_SHAPE);
    bb_head(&x, 3, 1, 0);
    bb_tensor(&x, "t", 1, ne8, 99, 0);
    bb_finish(&x, 32);
    parse_expect("tensor type 99", &x, DOZE_ERR_UNSUPPORTED_TYPE);
    bb_head(&x, 3, 1, 0);
    bb_tensor(&x, "t", 1, ne8, 16 /* ggml's iq2_xxs */, 0); /* not in the type table */
    bb_finish(&x, 32);
    parse_expect("tensor type iq2_xxs", &x, DOZE_ERR_UNSUPPORTED_TYPE);
    {
        gguf_header h;
        doze_error err = {0, ""};
        CHECK(gguf_parse_header(x.b, x.n, &h, &err) == DOZE_ERR_UNSUPPORTED_TYPE &&
              strstr(err.message, "type 16 (iq2_xxs)") != NULL); /* named as llama.cpp names it */
    }
    bb_head(&x, 3, 1, 0);
    bb_tensor(&x, "t", 1, ne8, DOZE_TYPE_Q8_0, 0);
    bb_finish(&x, 32);
    parse_expect("q8_0 row of 8", &x, DOZE_ERR_BAD_SHAPE);
    bb_head(&x, 3, 1, 0);
    {
        const uint64_t neh[3] = {1ull << 32, 1ull << 32, 1ull << 32};
        bb_tensor(&x, "t", 3, neh, DOZE_TYPE_F32, 0);
    }
    bb_finish(&x, 0);
    parse_expect("ne product overflow", &x, DOZE_ERR_BAD_FORMAT);
    bb_head(&x, 3, 1, 0);
    {
        const uint64_t neh[2] = {1ull << 31, 1ull << 31}; /* 2^62 elements * 4 bytes */
        bb_tensor(&x, "t", 2, neh, DOZE_TYPE_F32, 0);
    }
    bb_finish(&x, 0);
    parse_expect("byte size overflow", &x, DOZE_ERR_BAD_FORMAT);
    bb_head(&x, 3, 1, 0);
    bb_tensor(&x, "t", 1, ne8, DOZE_TYPE_F32, UINT64_MAX - 31);
    bb_finish(&x, 0);
    parse_expect("offset + size overflow", &x, DOZE_ERR_BAD_FORMAT);
    bb_head(&x, 3, 1, 0);
    bb_tensor(&x, "t", 1, ne8, DOZE_TYPE_F32, 4);
    bb_finish(&x, 64);
    parse_expect("misaligned offset", &x, DOZE_ERR_BAD_FORMAT);
    bb_head(&x, 3, 2, 0);
    bb_tensor(&x, "t1", 2, ne2d, DOZE_TYPE_F32, 0); /* 64 bytes */
    bb_tensor(&x, "t2", 1, ne8, DOZE_TYPE_F32, 32);
    bb_finish(&x, 64);
    parse_expect("overlapping tensors", &x, DOZE_ERR_BAD_FORMAT);
    bb_head(&x, 3, 2, 0);
    bb_tensor(&x, "t2", 1, ne8, DOZE_TYPE_F32, 64); /* out of order is fine */
    bb_tensor(&x, "t1", 2, ne2d, DOZE_TYPE_F32, 0);
    bb_finish(&x, 96);
    parse_expect("adjacent tensors, out of order", &x, DOZE_OK);
    bb_head(&x, 3, 2, 0);
    bb_tensor(&x, "same", 1, ne8, DOZE_TYPE_F32, 0);
    bb_tensor(&x, "same", 1, ne8, DOZE_TYPE_F32, 32);
    bb_finish(&x, 64);
    parse_expect("duplicate tensor name", &x, DOZE_ERR_BAD_FORMAT);
    bb_head(&x, 3, 1, 0);
    bb_tensor(&x, "t", 1, ne8, DOZE_TYPE_F32, 0);
    x.n -= 3;
    parse_expect("tensor info cut", &x, DOZE_ERR_TRUNCATED);

    /* NULL handling */
    gguf_header h;
    CHECK(gguf_parse_header(NULL, 0, &h, NULL) == DOZE_ERR_TRUNCATED);
    CHECK(gguf_parse_header(x.b, x.n, NULL, NULL) == DOZE_ERR_INVALID_ARGUMENT);
    CHECK(gguf_writer_new(3) == NULL);
    gguf_header_free(NULL);
    gguf_writer_free(NULL);
}

/* Flips every byte of a valid file in turn: whatever the code, nothing may
 * crash or leak (run under ASan). */
static void test_mutations(const membuf *m) {
    printf("mutations of a %zu-byte file\n", m->n);
    uint8_t *copy = malloc(m->n);
    int ok = 0, counts[DOZE_STATUS_COUNT_] = {0};
    const uint8_t vals[4] = {0xff, 0x00, 0x01, 0x80};
    for (size_t i = 0; i < m->n; i++) {
        for (int v = 0; v < 4; v++) {
            memcpy(copy, m->p, m->n);
            copy[i] = (uint8_t)(copy[i] ^ vals[v]) ? (uint8_t)(copy[i] ^ vals[v]) : vals[v];
            gguf_header h;
            doze_error err;
            doze_status st = gguf_parse_header(copy, m->n, &h, &err);
            if (st >= 0 && st < DOZE_STATUS_COUNT_) counts[st]++;
            if (st == DOZE_OK) {
                ok++;
                CHECK(h.data_offset <= m->n);
                CHECK(h.data_offset % h.alignment == 0);
            } else {
                CHECK(header_is_zero(&h));
            }
            gguf_header_free(&h);
        }
    }
    printf("  ");
    for (int s = 0; s < DOZE_STATUS_COUNT_; s++)
        if (counts[s]) printf("%s %d  ", doze_status_name(s), counts[s]);
    printf("\n");
    free(copy);
}

/* Writer options around general.alignment. */
static void test_writer_alignment(void) {
    printf("writer alignment handling\n");
    doze_error err;
    const uint64_t ne[1] = {3};
    const float d[3] = {1, 2, 3};
    /* user-set general.alignment wins and is written once */
    gguf_writer *w = gguf_writer_new(32);
    CHECK(gguf_writer_set_u32(w, "general.alignment", 128, &err) == DOZE_OK);
    CHECK(gguf_writer_add_tensor(w, "x", DOZE_TYPE_F32, 1, ne, d, &err) == DOZE_OK);
    CHECK(gguf_writer_add_tensor(w, "y", DOZE_TYPE_F32, 1, ne, NULL, &err) == DOZE_OK); /* zeros */
    membuf m = {NULL, 0, 0, -1};
    CHECK(gguf_writer_write(w, mem_write, &m, &err) == DOZE_OK);
    gguf_header h;
    CHECK(gguf_parse_header(m.p, m.n, &h, &err) == DOZE_OK);
    CHECK(h.alignment == 128 && h.n_kv == 1 && h.data_offset % 128 == 0);
    CHECK(h.n_tensors == 2 && h.tensors[1].offset == 128);
    CHECK(m.n == h.data_offset + 256);
    CHECK(memcmp(m.p + h.data_offset, d, 12) == 0);

    /* copy_kvs drops general.alignment; the new writer's own alignment rules */
    gguf_writer *w2 = gguf_writer_new(0); /* default 32 */
    CHECK(gguf_writer_copy_kvs(w2, &h, &err) == DOZE_OK);
    membuf m2 = {NULL, 0, 0, -1};
    CHECK(gguf_writer_write(w2, mem_write, &m2, &err) == DOZE_OK);
    gguf_header h2;
    CHECK(gguf_parse_header(m2.p, m2.n, &h2, &err) == DOZE_OK);
    CHECK(h2.alignment == 32 && h2.n_kv == 0 && h2.n_tensors == 0 && h2.data_size == 0);
    CHECK(m2.n == (h2.data_offset + 31) / 32 * 32 && m2.n % 32 == 0); /* no tensors: data at header end */
    gguf_header_free(&h2);
    gguf_header_free(&h);
    gguf_writer_free(w2);
    gguf_writer_free(w);
    free(m.p);
    free(m2.p);
}

/* ---- 4. real files ------------------------------------------------------------------------------ */

static void check_rewrite(const char *label, const uint8_t *file, size_t n, const gguf_header *h) {
    doze_error err = {0, ""};
    gguf_writer *w = gguf_writer_new(h->alignment);
    CHECK(gguf_writer_copy_kvs(w, h, &err) == DOZE_OK);
    for (uint64_t i = 0; i < h->n_tensors; i++) {
        const gguf_tensor *t = &h->tensors[i];
        CHECK(h->data_offset + t->offset + t->n_bytes <= n);
        CHECK_MSG(gguf_writer_add_tensor(w, t->name.data, t->type, t->n_dims, t->ne,
                                         file + h->data_offset + t->offset, &err) == DOZE_OK,
                  "%s", err.message);
    }
    membuf m = {NULL, 0, 0, -1};
    CHECK_MSG(gguf_writer_write(w, mem_write, &m, &err) == DOZE_OK, "%s", err.message);
    gguf_header r;
    CHECK_MSG(gguf_parse_header(m.p, m.n, &r, &err) == DOZE_OK, "%s", err.message);
    CHECK(r.n_kv == h->n_kv && r.n_tensors == h->n_tensors && r.alignment == h->alignment);
    CHECK(r.data_offset == h->data_offset && r.data_size == h->data_size);
    int kv_bad = 0, t_bad = 0;
    for (uint64_t i = 0; i < r.n_kv && i < h->n_kv; i++)
        if (!gstr_eq(&r.kv[i].key, &h->kv[i].key) || !value_eq(&r.kv[i].value, &h->kv[i].value)) kv_bad++;
    for (uint64_t i = 0; i < r.n_tensors && i < h->n_tensors; i++) {
        const gguf_tensor *a = &r.tensors[i], *b = &h->tensors[i];
        if (!gstr_eq(&a->name, &b->name) || a->n_dims != b->n_dims || memcmp(a->ne, b->ne, sizeof a->ne) ||
            a->type != b->type || a->offset != b->offset || a->n_bytes != b->n_bytes ||
            memcmp(m.p + r.data_offset + a->offset, file + h->data_offset + b->offset, (size_t)a->n_bytes))
            t_bad++;
    }
    CHECK(kv_bad == 0);
    CHECK(t_bad == 0);
    /* llama.cpp pads every tensor, so the re-written file is byte-identical */
    int identical = m.n == n && memcmp(m.p, file, n) == 0;
    int prefix = m.n >= n && memcmp(m.p, file, n) == 0; /* vocab file: we add the final padding */
    printf("  %s: re-written file %zu bytes (original %zu), %s\n", label, m.n, n,
           identical ? "byte-identical" : prefix ? "identical plus padding" : "differs in bytes");
    CHECK(prefix);
    gguf_header_free(&r);
    gguf_writer_free(w);
    free(m.p);
}

/* Parses as a streaming caller would: doubling the prefix until not TRUNCATED. */
static doze_status parse_doubling(const uint8_t *p, size_t n, gguf_header *h, int *calls) {
    size_t have = 64;
    doze_error err;
    *calls = 0;
    for (;;) {
        if (have > n) have = n;
        doze_status st = gguf_parse_header(p, have, h, &err);
        (*calls)++;
        if (st != DOZE_ERR_TRUNCATED || have == n) {
            if (st) fprintf(stderr, "parse: %s\n", err.message);
            return st;
        }
        CHECK(header_is_zero(h));
        have *= 2;
    }
}

static void test_real_files(void) {
    char path[1024];
    test_shared_path(path, sizeof path, "models/llama-2-tiny-random.gguf");
    if (!test_file_exists(path)) {
        printf("real files: SKIPPED (%s absent)\n", path);
        return;
    }
    printf("real file %s\n", path);
    size_t n = 0;
    uint8_t *file = test_read_file(path, &n);
    CHECK(file != NULL);
    if (!file) return;
    gguf_header h;
    doze_error err;
    int calls;
    CHECK(parse_doubling(file, n, &h, &calls) == DOZE_OK);
    printf("  parsed after %d doubling calls: v%u, %llu kv, %llu tensors, data at %llu, %llu data bytes\n", calls,
           h.version, (unsigned long long)h.n_kv, (unsigned long long)h.n_tensors,
           (unsigned long long)h.data_offset, (unsigned long long)h.data_size);
    CHECK(h.version == 3);
    CHECK(h.alignment == 32);
    CHECK(h.data_offset + h.data_size <= n);
    const gguf_string *s;
    CHECK(gguf_get_string(&h, "general.architecture", &s, &err) == DOZE_OK && strcmp(s->data, "llama") == 0);
    int64_t iv;
    double fv;
    CHECK(gguf_get_int(&h, "llama.block_count", &iv, &err) == DOZE_OK && iv == 1);
    CHECK(gguf_get_int(&h, "llama.embedding_length", &iv, &err) == DOZE_OK && iv == 8);
    CHECK(gguf_get_int(&h, "llama.feed_forward_length", &iv, &err) == DOZE_OK && iv == 32);
    CHECK(gguf_get_int(&h, "llama.attention.head_count", &iv, &err) == DOZE_OK && iv == 2);
    CHECK(gguf_get_float(&h, "llama.attention.layer_norm_rms_epsilon", &fv, &err) == DOZE_OK && fv > 0 && fv < 1e-3);
    uint32_t at;
    uint64_t an;
    const void *ad;
    CHECK(gguf_get_array(&h, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &at, &an, &ad, &err) == DOZE_OK);
    CHECK(an == 32000);
    if (an == 32000) {
        const gguf_string *tok = ad;
        CHECK(strcmp(tok[0].data, "<unk>") == 0);
        CHECK(strcmp(tok[1].data, "<s>") == 0);
        CHECK(strcmp(tok[2].data, "</s>") == 0);
        CHECK(strcmp(tok[3].data, "<0x00>") == 0);
    }
    CHECK(gguf_get_array(&h, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, &at, &an, &ad, &err) == DOZE_OK &&
          an == 32000);
    CHECK(gguf_get_array(&h, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, &at, &an, &ad, &err) == DOZE_OK &&
          an == 32000);
    const gguf_tensor *t = gguf_find_tensor(&h, "token_embd.weight");
    CHECK(t && t->n_dims == 2 && t->ne[0] == 8 && t->ne[1] == 32000 && t->type == DOZE_TYPE_F16 &&
          t->n_bytes == 8ull * 32000 * 2);
    t = gguf_find_tensor(&h, "output_norm.weight");
    CHECK(t && t->n_dims == 1 && t->ne[0] == 8 && t->type == DOZE_TYPE_F32 && t->n_bytes == 32);
    t = gguf_find_tensor(&h, "blk.0.attn_q.weight");
    CHECK(t && t->n_dims == 2 && t->ne[0] == 8 && t->ne[1] == 8 && t->type == DOZE_TYPE_F16);
    t = gguf_find_tensor(&h, "blk.0.ffn_gate.weight");
    CHECK(t && t->ne[0] == 8 && t->ne[1] == 32);
    t = gguf_find_tensor(&h, "output.weight");
    CHECK(t && t->ne[0] == 8 && t->ne[1] == 32000);
    /* the prefix just short of data_offset is TRUNCATED, at it OK */
    gguf_header h2;
    CHECK(gguf_parse_header(file, (size_t)h.data_offset - 1, &h2, &err) == DOZE_ERR_TRUNCATED);
    CHECK(gguf_parse_header(file, (size_t)h.data_offset, &h2, &err) == DOZE_OK);
    gguf_header_free(&h2);
    check_rewrite("llama-2-tiny-random", file, n, &h);
    gguf_header_free(&h);
    free(file);

    test_shared_path(path, sizeof path, "models/ggml-vocab-llama-spm.gguf");
    file = test_read_file(path, &n);
    if (!file) {
        printf("real files: SKIPPED %s (absent)\n", path);
        return;
    }
    printf("real file %s\n", path);
    CHECK(parse_doubling(file, n, &h, &calls) == DOZE_OK);
    printf("  parsed after %d doubling calls: v%u, %llu kv, %llu tensors, data at %llu (file %zu)\n", calls,
           h.version, (unsigned long long)h.n_kv, (unsigned long long)h.n_tensors,
           (unsigned long long)h.data_offset, n);
    CHECK(h.n_tensors == 0 && h.data_size == 0 && h.data_offset <= n);
    CHECK(gguf_get_string(&h, "general.architecture", &s, &err) == DOZE_OK && strcmp(s->data, "llama") == 0);
    CHECK(gguf_get_string(&h, "tokenizer.ggml.model", &s, &err) == DOZE_OK && strcmp(s->data, "llama") == 0);
    CHECK(gguf_get_array(&h, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &at, &an, &ad, &err) == DOZE_OK &&
          an == 32000);
    check_rewrite("ggml-vocab-llama-spm", file, n, &h);
    gguf_header_free(&h);
    free(file);
}

int main(void) {
    membuf m32, m64;
    test_round_trip(32, &m32);
    test_round_trip(64, &m64);
    test_writer_alignment();
    test_incremental(&m32);
    test_incremental(&m64);
    test_hostile();
    test_mutations(&m64);
    test_real_files();
    free(m32.p);
    free(m64.p);
    return test_finish("test_gguf");
}
