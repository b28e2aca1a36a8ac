/* Hostile and broken model files: every real and seeded model file
 * is truncated at many offsets and has bytes flipped at random (fixed seed);
 * every variant goes through the streaming loader in random chunk sizes and
 * must give either a clean error (code != OK, a message, nothing leaked: the
 * ASan build checks leaks) or a model that still generates a few tokens.
 * The same for the llama2.c importer (checkpoint and tokenizer.bin), the
 * GGUF tokenizer on a corrupted vocabulary, and hand-made hostile files
 * (bad shapes and heads, huge contexts, memory limits, tokenizer blocks).
 *
 * DOZE_CORRUPT_SCALE (default 1) multiplies the number of random variants
 * (a quarter of them in the sanitizer build). */
#include <stdint.h>
#include <time.h>

#include "gguf.h"
#include "tokenizer.h"
#include "model_fixture.h"
#include "test_util.h"

/* ---- rng and counters -------------------------------------------------------------- */

static uint64_t rng_state = 0x5EED0F1550E3ull;

static uint64_t rnd(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static uint64_t rnd_below(uint64_t n) { return n ? rnd() % n : 0; }

typedef struct {
    long tried, loaded, failed;
    long codes[DOZE_STATUS_COUNT_];
} stats;

static stats total_stats;

static void count(stats *s, int code) {
    s->tried++;
    total_stats.tried++;
    if (code == DOZE_OK) {
        s->loaded++;
        total_stats.loaded++;
    } else {
        s->failed++;
        total_stats.failed++;
    }
    if (code >= 0 && code < DOZE_STATUS_COUNT_) {
        s->codes[code]++;
        total_stats.codes[code]++;
    }
}

static clock_t last_clock;

static void print_stats(const char *what, const stats *s) {
    clock_t now = clock();
    printf("%-38s %6ld variants in %5.1f s: %5ld loaded, %5ld clean errors (", what, s->tried,
           (double)(now - last_clock) / CLOCKS_PER_SEC, s->loaded, s->failed);
    last_clock = now;
    int first = 1;
    for (int c = 1; c < DOZE_STATUS_COUNT_; c++) {
        if (!s->codes[c]) continue;
        printf("%s%s %ld", first ? "" : ", ", doze_status_name(c), s->codes[c]);
        first = 0;
    }
    printf(")\n");
    fflush(stdout);
}

/* ---- loading and using a model ----------------------------------------------------- */

/* The streaming loader fed in random chunk sizes (1 byte up to everything). */
static doze_status stream_load(const uint8_t *b, size_t n, const doze_model_params *p,
                               doze_model **out, doze_error *e) {
    *out = NULL;
    doze_loader *ld = doze_loader_new(p, e);
    if (!ld) return (doze_status)e->code;
    static const size_t scales[5] = {8, 64, 4096, 65536, (size_t)1 << 30};
    size_t scale = scales[rnd_below(5)];
    size_t at = 0;
    doze_status st = DOZE_OK;
    while (at < n && st == DOZE_OK) {
        size_t k = 1 + (size_t)rnd_below(scale);
        if (k > n - at) k = n - at;
        st = doze_loader_feed(ld, b + at, k, e);
        at += k;
    }
    if (st == DOZE_OK) st = doze_loader_finish(ld, out, e);
    if (st != DOZE_OK) {
        /* a failed loader stays failed and says so again */
        doze_error again;
        CHECK(doze_loader_feed(ld, b, n ? 1 : 0, &again) == st || n == 0);
    }
    doze_loader_free(ld);
    return st;
}

/* A loaded model must work: a few steps, sampled tokens decode, prompts encode. */
static void exercise(doze_model *m, const char *what) {
    const doze_model_info *info = doze_model_get_info(m);
    doze_error e;
    doze_session *s = doze_session_new(m, &e);
    CHECK_MSG(s != NULL, "%s: session: %s", what, e.message);
    if (!s) return;
    doze_sampler_params sp = doze_sampler_default_params();
    sp.temperature = 0.8f;
    sp.seed = rnd();
    doze_sampler *smp = doze_sampler_new(&sp, info->vocab_size, &e);
    CHECK(smp != NULL);
    int token = info->bos_id >= 0 ? info->bos_id : 0;
    for (int i = 0; i < 4 && smp && i < info->context_length; i++) {
        doze_status st = doze_session_step(s, token, &e);
        CHECK_MSG(st == DOZE_OK, "%s: step %d: %s", what, i, e.message);
        if (st != DOZE_OK) break;
        int next = doze_sampler_sample(smp, doze_session_logits(s));
        CHECK_MSG(next >= 0 && next < info->vocab_size, "%s: sampled %d", what, next);
        if (next < 0 || next >= info->vocab_size) break;
        char piece[DOZE_MAX_PIECE];
        size_t len = 0;
        st = doze_token_to_piece(m, token, next, piece, sizeof piece, &len, &e);
        if (st == DOZE_ERR_MISSING) break; /* no tokenizer */
        CHECK_MSG(st == DOZE_OK && len <= DOZE_MAX_PIECE, "%s: piece of %d: %s (%zu bytes)", what,
                  next, e.message, len);
        token = next;
    }
    /* out-of-range ids are refused at step and at decode time */
    CHECK(doze_session_step(s, info->vocab_size, &e) == DOZE_ERR_TOKEN_RANGE ||
          doze_session_pos(s) >= info->context_length);
    CHECK(doze_session_step(s, -7, &e) != DOZE_OK && e.message[0]);
    char piece[DOZE_MAX_PIECE];
    size_t len;
    doze_status st = doze_token_to_piece(m, -1, info->vocab_size, piece, sizeof piece, &len, &e);
    CHECK(st == DOZE_ERR_TOKEN_RANGE || st == DOZE_ERR_MISSING);
    st = doze_token_to_piece(m, info->vocab_size + 5, 0, piece, sizeof piece, &len, &e);
    CHECK(st == DOZE_ERR_TOKEN_RANGE || st == DOZE_ERR_MISSING);
    /* prompts: normal, empty, invalid UTF-8 */
    int32_t ids[64];
    int n = 0;
    st = doze_tokenize(m, "Once upon a time", 16, 1, ids, 64, &n, &e);
    CHECK_MSG(st == DOZE_OK || ((st == DOZE_ERR_MISSING) && e.message[0]), "%s: tokenize: %s", what,
              e.message);
    for (int i = 0; st == DOZE_OK && i < n && i < 64; i++) CHECK(ids[i] >= 0 && ids[i] < info->vocab_size);
    st = doze_tokenize(m, "", 0, 1, ids, 64, &n, &e);
    CHECK(st == DOZE_OK || st == DOZE_ERR_MISSING);
    st = doze_tokenize(m, "a\xC3(b", 4, 1, ids, 64, &n, &e);
    CHECK(st == DOZE_ERR_BAD_UTF8 || st == DOZE_ERR_MISSING);
    doze_sampler_free(smp);
    doze_session_free(s);
}

/* One variant through the loader: a clean error, or a working model. */
static void check_load(const char *what, const uint8_t *b, size_t n, stats *s) {
    doze_model_params p = doze_model_default_params();
    p.context_length = 8;
    if (rnd_below(4) == 0) p.kernels = DOZE_KERNELS_REFERENCE;
    doze_error e;
    e.code = -1;
    e.message[0] = '\0';
    doze_model *m = NULL;
    doze_status st = stream_load(b, n, &p, &m, &e);
    count(s, st);
    if (st == DOZE_OK) {
        CHECK(m != NULL);
        if (m) exercise(m, what);
        doze_model_free(m);
    } else {
        CHECK_MSG(m == NULL && e.code == (int)st && e.message[0] != '\0' &&
                      strlen(e.message) < DOZE_ERROR_MESSAGE_MAX,
                  "%s: status %d, code %d, message '%s'", what, st, e.code, e.message);
    }
}

/* After failures the library still loads a good model. */
static void check_still_loads(const uint8_t *b, size_t n) {
    doze_model_params p = doze_model_default_params();
    p.context_length = 8;
    doze_model *m = NULL;
    doze_error e;
    doze_status st = doze_model_load_memory(b, n, &p, &m, &e);
    CHECK_MSG(st == DOZE_OK, "good model after failures: %s", e.message);
    if (m) exercise(m, "good model");
    doze_model_free(m);
}

/* Random variants per file are given for the optimized build; the
 * sanitizer build (about 20x slower) runs a quarter of them.
 * DOZE_CORRUPT_SCALE=k multiplies them by k. */
static double corrupt_scale(void) {
    const char *s = getenv("DOZE_CORRUPT_SCALE");
    double k = s ? atof(s) : 1.0;
    if (!(k > 0)) k = 1.0;
#ifdef DOZE_SANITIZED
    k /= 4;
#endif
    return k;
}

/* Data offset of a GGUF (where the header region ends), or n. */
static size_t header_end(const uint8_t *b, size_t n) {
    gguf_header h;
    doze_error e;
    if (gguf_parse_header(b, n, &h, &e) != DOZE_OK) return n;
    size_t end = (size_t)h.data_offset;
    gguf_header_free(&h);
    return end < n ? end : n;
}

/* Flips 1-4 bytes; half of the variants only in the header region. */
static void flip_bytes(uint8_t *v, size_t n, size_t hdr) {
    int k = 1 + (int)rnd_below(4);
    size_t region = rnd_below(2) ? hdr : n;
    if (region == 0) region = n;
    for (int i = 0; i < k; i++) {
        size_t at = (size_t)rnd_below(region);
        switch (rnd_below(4)) {
        case 0: v[at] ^= (uint8_t)(1u << rnd_below(8)); break;
        case 1: v[at] = (uint8_t)rnd(); break;
        case 2: v[at] = 0xFF; break;
        default: v[at] = 0; break;
        }
    }
}

/* Truncations: every byte for the first 4 KiB, then `spread` more offsets;
 * then `flips` variants with flipped bytes. */
static void sweep_gguf(const char *name, const uint8_t *b, size_t n, int spread, int flips) {
    stats s;
    memset(&s, 0, sizeof s);
    char what[128];
    size_t first = n < 4096 ? n : 4096;
    for (size_t cut = 0; cut < first; cut++) {
        snprintf(what, sizeof what, "%s cut at %zu", name, cut);
        check_load(what, b, cut, &s);
    }
    size_t stride = n > first ? (n - first) / (size_t)spread + 1 : 1;
    for (size_t cut = first; cut < n; cut += stride - (stride > 1 ? rnd_below(stride / 2) : 0)) {
        snprintf(what, sizeof what, "%s cut at %zu", name, cut);
        check_load(what, b, cut, &s);
    }
    print_stats(name, &s);
    stats f;
    memset(&f, 0, sizeof f);
    uint8_t *v = malloc(n);
    size_t hdr = header_end(b, n);
    for (int i = 0; i < flips; i++) {
        memcpy(v, b, n);
        flip_bytes(v, n, hdr);
        snprintf(what, sizeof what, "%s flip variant %d", name, i);
        /* some flipped files are also cut */
        size_t len = rnd_below(8) == 0 ? (size_t)rnd_below(n + 1) : n;
        check_load(what, v, len, &f);
        if (i % 256 == 255) check_still_loads(b, n);
    }
    free(v);
    char label[128];
    snprintf(label, sizeof label, "%s (flipped)", name);
    print_stats(label, &f);
    check_still_loads(b, n);
}

/* ---- the tokenizer of a corrupted vocabulary (vocab-only files) ---------------------- */

static void exercise_tokenizer(const doze_tokenizer *t) {
    static const char *const texts[] = {"Hello world", "", " ", "\xF0\x9F\xA6\x99 llama", "a\x80z",
                                        "\xE2\x96\x81\xE2\x96\x81x"};
    int32_t ids[128];
    int vocab = tokenizer_vocab_size(t);
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        int n = 0;
        doze_error e;
        doze_status st = tokenizer_encode(t, texts[i], strlen(texts[i]), 1, ids, 128, &n, &e);
        CHECK(st == DOZE_OK || st == DOZE_ERR_BAD_UTF8 || st == DOZE_ERR_MISSING);
        if (st != DOZE_OK) CHECK(e.message[0]);
        for (int k = 0; st == DOZE_OK && k < n && k < 128; k++) CHECK(ids[k] >= 0 && ids[k] < vocab);
    }
    for (int k = 0; k < 64; k++) {
        int id = (int)rnd_below((uint64_t)vocab + 4) - 2;
        char buf[DOZE_MAX_PIECE];
        size_t len = 0;
        doze_error e;
        doze_status st = tokenizer_decode(t, (int)rnd_below((uint64_t)vocab) , id, buf, sizeof buf, &len, &e);
        if (id < 0 || id >= vocab) CHECK(st == DOZE_ERR_TOKEN_RANGE);
        else CHECK(st == DOZE_OK && len <= DOZE_MAX_PIECE);
    }
}

static void check_vocab(const uint8_t *b, size_t n, stats *s) {
    gguf_header h;
    doze_error e;
    e.message[0] = '\0';
    doze_status st = gguf_parse_header(b, n, &h, &e);
    if (st == DOZE_OK) {
        doze_tokenizer *t = NULL;
        st = tokenizer_from_gguf(&h, &t, &e);
        if (st == DOZE_OK) {
            exercise_tokenizer(t);
            tokenizer_free(t);
        } else {
            CHECK(t == NULL);
        }
        gguf_header_free(&h);
    }
    count(s, st);
    if (st != DOZE_OK) CHECK(e.message[0] != '\0');
}

static void sweep_vocab(const char *name, const uint8_t *b, size_t n, int spread, int flips) {
    stats s;
    memset(&s, 0, sizeof s);
    size_t first = n < 4096 ? n : 4096;
    for (size_t cut = 0; cut < first; cut++) check_vocab(b, cut, &s);
    size_t stride = n > first ? (n - first) / (size_t)spread + 1 : 1;
    for (size_t cut = first; cut < n; cut += stride) check_vocab(b, cut, &s);
    uint8_t *v = malloc(n);
    size_t hdr = n;
    for (int i = 0; i < flips; i++) {
        memcpy(v, b, n);
        flip_bytes(v, n, hdr);
        check_vocab(v, n, &s);
    }
    free(v);
    print_stats(name, &s);
}

/* ---- llama2.c import ------------------------------------------------------------------ */

static void check_llama2c(const char *what, const uint8_t *ck, size_t ckn, const uint8_t *tok,
                          size_t tokn, stats *s) {
    gguf_builder b;
    doze_error e;
    e.message[0] = '\0';
    CHECK(gguf_builder_init(&b, &e) == DOZE_OK);
    int type = (int)rnd_below(3);
    type = type == 0 ? DOZE_TYPE_F32 : type == 1 ? DOZE_TYPE_F16 : DOZE_TYPE_Q8_0;
    doze_status st = convert_llama2c(ck, ckn, tok, tokn, type, "corrupt", &b, &e);
    count(s, st);
    if (st == DOZE_OK) {
        mem_buf out = {NULL, 0, 0};
        st = gguf_writer_write(b.w, mem_write, &out, &e);
        CHECK(st == DOZE_OK);
        gguf_builder_free(&b);
        if (st == DOZE_OK) {
            /* a converted variant loads and runs, or fails cleanly */
            stats ignore;
            memset(&ignore, 0, sizeof ignore);
            check_load(what, out.data, out.len, &ignore);
        }
        free(out.data);
    } else {
        CHECK_MSG(e.message[0] != '\0', "%s: no message", what);
        gguf_builder_free(&b);
    }
}

static void sweep_llama2c(const uint8_t *ck, size_t ckn, const uint8_t *tok, size_t tokn, int flips) {
    stats s;
    memset(&s, 0, sizeof s);
    char what[96];
    /* checkpoint: cuts (the header and then the weights), flips in the header
     * (flips in the weights only change numbers) */
    for (size_t cut = 0; cut < 64; cut++) check_llama2c("ckpt cut", ck, cut, tok, tokn, &s);
    for (size_t cut = 64; cut < ckn; cut += ckn / 64) check_llama2c("ckpt cut", ck, cut, tok, tokn, &s);
    uint8_t *v = malloc(ckn);
    for (int i = 0; i < flips; i++) {
        memcpy(v, ck, ckn);
        int k = 1 + (int)rnd_below(3);
        for (int j = 0; j < k; j++) {
            size_t at = rnd_below(8) == 0 ? (size_t)rnd_below(ckn) : (size_t)rnd_below(28);
            v[at] = rnd_below(2) ? (uint8_t)rnd() : (uint8_t)(v[at] ^ (1u << rnd_below(8)));
        }
        snprintf(what, sizeof what, "ckpt flip %d", i);
        check_llama2c(what, v, ckn, tok, tokn, &s);
    }
    /* a few hostile headers */
    static const int32_t hostile[][7] = {
        {64, 128, 2, 4, 4, INT32_MIN, 256}, {64, 128, 2, 0, 0, 512, 256},
        {64, 128, 2, 3, 3, 512, 256},       {64, 128, 2, 4, 3, 512, 256},
        {64, 128, 2, 64, 64, 512, 256},     {65536, 1 << 20, 1024, 1, 1, 1 << 24, 1 << 20},
        {64, 128, 2, 4, 4, 2, 256},         {-1, 128, 2, 4, 4, 512, 256},
        {64, 128, 2, 4, 4, -512, 0},
    };
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
        memcpy(v, ck, ckn);
        memcpy(v, hostile[i], 28);
        long ok_before = s.loaded;
        check_llama2c("ckpt hostile header", v, ckn, tok, tokn, &s);
        CHECK_MSG(s.loaded == ok_before, "hostile llama2.c header %zu was accepted", i);
    }
    free(v);
    print_stats("stories260K.bin (llama2.c)", &s);

    stats t;
    memset(&t, 0, sizeof t);
    for (size_t cut = 0; cut < tokn; cut++) {
        if (cut > 1024 && rnd_below(4) != 0) continue;
        check_llama2c("tokenizer cut", ck, ckn, tok, cut, &t);
    }
    uint8_t *tv = malloc(tokn);
    for (int i = 0; i < flips; i++) {
        memcpy(tv, tok, tokn);
        int k = 1 + (int)rnd_below(3);
        for (int j = 0; j < k; j++) {
            size_t at = (size_t)rnd_below(tokn);
            tv[at] = rnd_below(2) ? (uint8_t)rnd() : (uint8_t)(tv[at] ^ (1u << rnd_below(8)));
        }
        snprintf(what, sizeof what, "tokenizer flip %d", i);
        check_llama2c(what, ck, ckn, tv, tokn, &t);
    }
    free(tv);
    print_stats("tok512.bin (llama2.c)", &t);
}

/* ---- hand-made hostile files ------------------------------------------------------------- */

/* Rebuilds a GGUF with one key overridden (u32, or removed when remove) and
 * optionally one tensor renamed / dropped / duplicated-as. */
typedef struct {
    const char *key;      /* NULL: none */
    int remove;
    uint32_t value;
    const char *tensor;   /* NULL: none */
    const char *rename;   /* NULL with tensor set: drop it */
    int extra_dim;        /* re-add `tensor` with ne[0] doubled (bad shape); > 1: with
                             ne[2] = extra_dim instead (a stack of that many experts) */
} edit;

static mem_buf rebuild(const mem_buf *src, const edit *ed) {
    mem_buf out = {NULL, 0, 0};
    gguf_header h;
    doze_error e;
    if (gguf_parse_header(src->data, src->len, &h, &e) != DOZE_OK) return out;
    gguf_writer *w = gguf_writer_new(h.alignment);
    doze_status st = gguf_writer_copy_kvs(w, &h, &e);
    if (st == DOZE_OK && ed->key) {
        if (ed->remove) {
            /* rebuild without the key */
            gguf_writer_free(w);
            w = gguf_writer_new(h.alignment);
            for (uint64_t i = 0; i < h.n_kv && st == DOZE_OK; i++)
                if (strcmp(h.kv[i].key.data, ed->key) != 0 && strcmp(h.kv[i].key.data, "general.alignment") != 0)
                    st = gguf_writer_set(w, h.kv[i].key.data, &h.kv[i].value, &e);
        } else {
            st = gguf_writer_set_u32(w, ed->key, ed->value, &e);
        }
    }
    uint64_t *big = NULL;
    for (uint64_t i = 0; i < h.n_tensors && st == DOZE_OK; i++) {
        const gguf_tensor *t = &h.tensors[i];
        const char *name = t->name.data;
        uint64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
        const void *data = src->data + h.data_offset + t->offset;
        if (ed->tensor && strcmp(name, ed->tensor) == 0) {
            if (ed->extra_dim) {
                const uint64_t grow = ed->extra_dim > 1 ? (uint64_t)ed->extra_dim : 2;
                if (ed->extra_dim > 1) ne[2] = grow;
                else ne[0] *= 2;
                big = calloc((size_t)(t->n_bytes * grow), 1);
                data = big;
            } else if (!ed->rename) {
                continue;
            } else {
                name = ed->rename;
            }
        }
        st = gguf_writer_add_tensor(w, name, t->type, t->n_dims, ne, data, &e);
    }
    if (st == DOZE_OK) st = gguf_writer_write(w, mem_write, &out, &e);
    if (st != DOZE_OK) {
        fprintf(stderr, "rebuild: %s\n", e.message);
        free(out.data);
        out.data = NULL;
        out.len = 0;
    }
    free(big);
    gguf_writer_free(w);
    gguf_header_free(&h);
    return out;
}

static doze_status load_expect(const char *what, const mem_buf *f, uint64_t max_memory, int ctx,
                               doze_status want, const char *needle) {
    doze_model_params p = doze_model_default_params();
    p.max_memory = max_memory;
    p.context_length = ctx;
    doze_model *m = NULL;
    doze_error e;
    e.message[0] = '\0';
    doze_status st = f->data ? stream_load(f->data, f->len, &p, &m, &e) : DOZE_ERR_INVALID_ARGUMENT;
    CHECK_MSG(st == want, "%s: got %s (%s), want %s", what, doze_status_name(st), e.message,
              doze_status_name(want));
    if (st != DOZE_OK) CHECK_MSG(e.message[0] != '\0', "%s: empty message", what);
    if (needle && st != DOZE_OK)
        CHECK_MSG(strstr(e.message, needle) != NULL, "%s: message '%s' lacks '%s'", what, e.message,
                  needle);
    if (st == DOZE_OK && m) exercise(m, what);
    doze_model_free(m);
    printf("  %-44s %-18s %s\n", what, doze_status_name(st), st == DOZE_OK ? "" : e.message);
    return st;
}

static void test_hand_made(const mem_buf *good) {
    printf("hand-made hostile models:\n");
    struct {
        const char *what;
        edit ed;
        doze_status want;
        const char *needle;
    } cases[] = {
        {"head_count 0", {"llama.attention.head_count", 0, 0, NULL, NULL, 0}, DOZE_ERR_BAD_SHAPE, "head_count"},
        {"head_count absurd", {"llama.attention.head_count", 0, 1u << 30, NULL, NULL, 0}, DOZE_ERR_BAD_SHAPE, "head_count"},
        {"heads do not divide dim", {"llama.attention.head_count", 0, 3, NULL, NULL, 0}, DOZE_ERR_BAD_SHAPE, "divide"},
        {"kv heads do not divide heads", {"llama.attention.head_count_kv", 0, 3, NULL, NULL, 0}, DOZE_ERR_BAD_SHAPE, "divide"},
        {"kv heads 0", {"llama.attention.head_count_kv", 0, 0, NULL, NULL, 0}, DOZE_ERR_BAD_SHAPE, "head_count_kv"},
        {"embedding_length 0", {"llama.embedding_length", 0, 0, NULL, NULL, 0}, DOZE_ERR_BAD_SHAPE, "embedding_length"},
        {"embedding_length absurd", {"llama.embedding_length", 0, 0xFFFFFFFFu, NULL, NULL, 0}, DOZE_ERR_BAD_SHAPE, "embedding_length"},
        {"block_count absurd", {"llama.block_count", 0, 1u << 31, NULL, NULL, 0}, DOZE_ERR_BAD_SHAPE, "block_count"},
        {"more layers than tensors", {"llama.block_count", 0, 3, NULL, NULL, 0}, DOZE_ERR_MISSING, "blk.2."},
        {"feed_forward_length wrong", {"llama.feed_forward_length", 0, 100, NULL, NULL, 0}, DOZE_ERR_BAD_SHAPE, "ffn"},
        {"rope dims odd", {"llama.rope.dimension_count", 0, 7, NULL, NULL, 0}, DOZE_ERR_BAD_SHAPE, "rope"},
        {"rope dims too many", {"llama.rope.dimension_count", 0, 4096, NULL, NULL, 0}, DOZE_ERR_BAD_SHAPE, "rope"},
        {"context_length 0", {"llama.context_length", 0, 0, NULL, NULL, 0}, DOZE_ERR_BAD_SHAPE, "context_length"},
        {"context_length 2^32-1", {"llama.context_length", 0, 0xFFFFFFFFu, NULL, NULL, 0}, DOZE_ERR_BAD_SHAPE, "context_length"},
        {"no architecture", {"general.architecture", 1, 0, NULL, NULL, 0}, DOZE_ERR_MISSING, "general.architecture"},
        {"architecture not a string", {"general.architecture", 0, 7, NULL, NULL, 0}, DOZE_ERR_BAD_FORMAT, "general.architecture"},
        {"missing attn_k", {NULL, 0, 0, "blk.1.attn_k.weight", NULL, 0}, DOZE_ERR_MISSING, "blk.1.attn_k.weight"},
        {"missing token_embd", {NULL, 0, 0, "token_embd.weight", NULL, 0}, DOZE_ERR_MISSING, "token_embd.weight"},
        {"wrong shape", {NULL, 0, 0, "blk.0.attn_v.weight", "blk.0.attn_v.weight", 1}, DOZE_ERR_BAD_SHAPE, "blk.0.attn_v.weight"},
        /* a special id outside the vocabulary is "none", as llama.cpp reads it */
        {"bos id out of range", {"tokenizer.ggml.bos_token_id", 0, 999999, NULL, NULL, 0}, DOZE_OK, NULL},
        {"tokens not an array", {"tokenizer.ggml.tokens", 0, 5, NULL, NULL, 0}, DOZE_ERR_BAD_FORMAT, "tokenizer.ggml.tokens"},
        {"scores not an array", {"tokenizer.ggml.scores", 0, 5, NULL, NULL, 0}, DOZE_ERR_BAD_FORMAT, "tokenizer.ggml.scores"},
        {"alignment not a power of two", {"general.alignment", 0, 48, NULL, NULL, 0}, DOZE_ERR_INVALID_ARGUMENT, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mem_buf f = rebuild(good, &cases[i].ed);
        if (cases[i].want == DOZE_ERR_INVALID_ARGUMENT) {
            CHECK(f.data == NULL); /* the writer refuses it already */
            continue;
        }
        CHECK_MSG(f.data != NULL, "%s: rebuild failed", cases[i].what);
        load_expect(cases[i].what, &f, 0, 8, cases[i].want, cases[i].needle);
        free(f.data);
    }
    /* duplicates: the writer refuses them, so a placeholder of the same
     * length is written and patched into a duplicate afterwards */
    struct {
        const char *what;
        edit ed;
        const char *from, *to;
    } dups[] = {
        {"duplicate tensor name", {NULL, 0, 0, "blk.0.ffn_up.weight", "blk.0.ffn_XX.weight", 0},
         "blk.0.ffn_XX.weight", "blk.0.attn_q.weight"},
        {"duplicate key", {"llama.context_lengtX", 0, 99, NULL, NULL, 0}, "llama.context_lengtX",
         "llama.context_length"},
    };
    for (size_t i = 0; i < sizeof dups / sizeof dups[0]; i++) {
        mem_buf f = rebuild(good, &dups[i].ed);
        CHECK(f.data != NULL);
        size_t fl = strlen(dups[i].from);
        int patched = 0;
        for (size_t at = 0; f.data && at + fl <= f.len; at++) {
            if (memcmp(f.data + at, dups[i].from, fl) == 0) {
                memcpy(f.data + at, dups[i].to, fl);
                patched++;
            }
        }
        CHECK(patched == 1);
        load_expect(dups[i].what, &f, 0, 8, DOZE_ERR_BAD_FORMAT, "duplicate");
        free(f.data);
    }
}

/* tokenizer.ggml.* blocks: mismatched lengths, bad pieces */
static void test_tokenizer_blocks(void) {
    printf("hostile tokenizer blocks:\n");
    enum { V = 300 };
    for (int c = 0; c < 7; c++) {
        doze_init_params ip = {32, 64, 1, 2, 2, V, 16, 7, DOZE_TYPE_F32, NULL, 0, 0, 0.0f, 0, 0};
        gguf_builder b;
        doze_error e;
        CHECK(gguf_builder_init(&b, &e) == DOZE_OK);
        CHECK(convert_init_random(&ip, &b, &e) == DOZE_OK);
        const char *what = "", *needle = NULL;
        doze_status want = DOZE_ERR_BAD_FORMAT;
        float scores[V + 1];
        int32_t types[V + 1];
        const char *pieces[V];
        char longp[DOZE_MAX_PIECE + 100];
        for (int i = 0; i < V + 1; i++) {
            scores[i] = (float)-i;
            types[i] = i < 3 ? 3 : 1;
        }
        for (int i = 0; i < V; i++) pieces[i] = "x";
        pieces[0] = "<unk>";
        switch (c) {
        case 0:
            what = "scores longer than tokens";
            needle = "tokenizer.ggml.scores";
            CHECK(gguf_writer_set_arr(b.w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, V + 1, scores, &e) == DOZE_OK);
            break;
        case 1:
            what = "token_type shorter than tokens";
            needle = "tokenizer.ggml.token_type";
            CHECK(gguf_writer_set_arr(b.w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, V - 1, types, &e) == DOZE_OK);
            break;
        case 2:
            what = "tokens shorter than token_embd";
            want = DOZE_ERR_BAD_FORMAT; /* scores/types then mismatch tokens */
            needle = "entries";
            CHECK(gguf_writer_set_arr(b.w, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, V - 10, pieces, &e) == DOZE_OK);
            break;
        case 3:
            what = "invalid UTF-8 piece";
            want = DOZE_ERR_BAD_UTF8;
            needle = "UTF-8";
            pieces[280] = "ab\xC0\xAF";
            CHECK(gguf_writer_set_arr(b.w, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, V, pieces, &e) == DOZE_OK);
            break;
        case 4:
            what = "piece longer than DOZE_MAX_PIECE";
            needle = "piece";
            memset(longp, 'q', sizeof longp - 1);
            longp[sizeof longp - 1] = '\0';
            pieces[100] = longp;
            CHECK(gguf_writer_set_arr(b.w, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, V, pieces, &e) == DOZE_OK);
            break;
        case 5:
            what = "scores of the wrong element type";
            needle = "tokenizer.ggml.scores";
            CHECK(gguf_writer_set_arr(b.w, "tokenizer.ggml.scores", GGUF_TYPE_INT32, V, types, &e) == DOZE_OK);
            break;
        default:
            what = "unknown tokenizer model";
            want = DOZE_ERR_UNSUPPORTED_TYPE;
            needle = "tokenizer";
            CHECK(gguf_writer_set_str(b.w, "tokenizer.ggml.model", "t5", &e) == DOZE_OK);
            break;
        }
        mem_buf f = {NULL, 0, 0};
        CHECK(gguf_writer_write(b.w, mem_write, &f, &e) == DOZE_OK);
        gguf_builder_free(&b);
        load_expect(what, &f, 0, 8, want, needle);
        free(f.data);
    }
}

/* A seeded mixture of experts (llama with expert_count, or qwen3moe) of 4
 * experts, top-2. */
static mem_buf moe_fixture(const char *arch, int type, uint64_t seed) {
    return fixture_moe_gguf(arch, 64, 64, 2, 4, 2, 300, 32, seed, type, 4, 2);
}

/* malformed mixtures: every one a clean error that names what is wrong */
static void test_moe_hostile(const mem_buf *llama_moe, const mem_buf *qwen_moe) {
    printf("hand-made hostile mixtures of experts:\n");
    load_expect("llama MoE as written", llama_moe, 0, 8, DOZE_OK, NULL);
    load_expect("qwen3moe as written", qwen_moe, 0, 8, DOZE_OK, NULL);
    struct {
        const char *what;
        int qwen;
        edit ed;
        doze_status want;
        const char *needle;
    } cases[] = {
        {"expert_used_count > expert_count", 0, {"llama.expert_used_count", 0, 5, NULL, NULL, 0}, DOZE_ERR_BAD_SHAPE,
         "expert_used_count"},
        {"expert_used_count 0", 0, {"llama.expert_used_count", 0, 0, NULL, NULL, 0}, DOZE_ERR_BAD_SHAPE,
         "expert_used_count"},
        {"expert_used_count missing", 0, {"llama.expert_used_count", 1, 0, NULL, NULL, 0}, DOZE_ERR_MISSING,
         "expert_used_count"},
        {"expert_count absurd", 0, {"llama.expert_count", 0, 1u << 30, NULL, NULL, 0}, DOZE_ERR_BAD_SHAPE,
         "expert_count"},
        /* llama without experts is dense: its dense FFN is missing */
        {"llama expert_count 0", 0, {"llama.expert_count", 0, 0, NULL, NULL, 0}, DOZE_ERR_MISSING,
         "ffn_gate.weight"},
        {"expert_count 3 for stacks of 4", 0, {"llama.expert_count", 0, 3, NULL, NULL, 0}, DOZE_ERR_BAD_SHAPE,
         "ffn_gate_inp"},
        {"expert_count 8 for stacks of 4", 0, {"llama.expert_count", 0, 8, NULL, NULL, 0}, DOZE_ERR_BAD_SHAPE,
         "ffn_gate_inp"},
        {"missing router", 0, {NULL, 0, 0, "blk.1.ffn_gate_inp.weight", NULL, 0}, DOZE_ERR_MISSING,
         "blk.1.ffn_gate_inp.weight"},
        {"missing up stack", 0, {NULL, 0, 0, "blk.0.ffn_up_exps.weight", NULL, 0}, DOZE_ERR_MISSING,
         "blk.0.ffn_up_exps.weight"},
        {"router of the wrong width", 0, {NULL, 0, 0, "blk.0.ffn_gate_inp.weight", "blk.0.ffn_gate_inp.weight", 1},
         DOZE_ERR_BAD_SHAPE, "blk.0.ffn_gate_inp.weight"},
        {"gate stack of the wrong width", 0, {NULL, 0, 0, "blk.0.ffn_gate_exps.weight", "blk.0.ffn_gate_exps.weight", 1},
         DOZE_ERR_BAD_SHAPE, "blk.0.ffn_gate_exps.weight"},
        {"down stack of 3 experts", 0, {NULL, 0, 0, "blk.1.ffn_down_exps.weight", "blk.1.ffn_down_exps.weight", 3},
         DOZE_ERR_BAD_SHAPE, "blk.1.ffn_down_exps.weight"},
        {"up stack of 5 experts", 0, {NULL, 0, 0, "blk.0.ffn_up_exps.weight", "blk.0.ffn_up_exps.weight", 5},
         DOZE_ERR_BAD_SHAPE, "blk.0.ffn_up_exps.weight"},
        {"qwen3moe expert_count 0", 1, {"qwen3moe.expert_count", 0, 0, NULL, NULL, 0}, DOZE_ERR_BAD_SHAPE,
         "needs experts"},
        {"qwen3moe expert_count missing", 1, {"qwen3moe.expert_count", 1, 0, NULL, NULL, 0}, DOZE_ERR_MISSING,
         "expert_count"},
        {"qwen3moe expert_used_count 9", 1, {"qwen3moe.expert_used_count", 0, 9, NULL, NULL, 0}, DOZE_ERR_BAD_SHAPE,
         "expert_used_count"},
        {"qwen3moe expert_feed_forward_length 0", 1, {"qwen3moe.expert_feed_forward_length", 0, 0, NULL, NULL, 0},
         DOZE_ERR_BAD_SHAPE, "expert_feed_forward_length"},
        {"qwen3moe expert_feed_forward_length wrong", 1,
         {"qwen3moe.expert_feed_forward_length", 0, 96, NULL, NULL, 0}, DOZE_ERR_BAD_SHAPE, "ffn_gate_exps"},
        {"qwen3moe stack of 2 experts", 1, {NULL, 0, 0, "blk.0.ffn_gate_exps.weight", "blk.0.ffn_gate_exps.weight", 2},
         DOZE_ERR_BAD_SHAPE, "blk.0.ffn_gate_exps.weight"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mem_buf f = rebuild(cases[i].qwen ? qwen_moe : llama_moe, &cases[i].ed);
        CHECK_MSG(f.data != NULL, "%s: rebuild failed", cases[i].what);
        load_expect(cases[i].what, &f, 0, 8, cases[i].want, cases[i].needle);
        free(f.data);
    }
}

/* memory: limits, huge contexts, and usability afterwards */
static void test_memory(const mem_buf *good) {
    printf("memory limits:\n");
    /* too small a limit: OUT_OF_MEMORY, then the same model loads */
    load_expect("max_memory 1000 bytes", good, 1000, 8, DOZE_ERR_OUT_OF_MEMORY, "max_memory");
    load_expect("same model without a limit", good, 0, 8, DOZE_OK, NULL);
    /* the limit is checked from the header alone, before any weight arrives */
    gguf_header h;
    doze_error e;
    CHECK(gguf_parse_header(good->data, good->len, &h, &e) == DOZE_OK);
    size_t hdr = (size_t)h.data_offset;
    gguf_header_free(&h);
    doze_model_params p = doze_model_default_params();
    p.max_memory = 1000;
    doze_loader *ld = doze_loader_new(&p, &e);
    doze_status st = doze_loader_feed(ld, good->data, good->len, &e);
    CHECK(st == DOZE_ERR_OUT_OF_MEMORY);
    CHECK(doze_loader_loaded_bytes(ld) <= hdr + 4096 || doze_loader_loaded_bytes(ld) == 0);
    doze_model *m = NULL;
    CHECK(doze_loader_finish(ld, &m, &e) == DOZE_ERR_OUT_OF_MEMORY && m == NULL);
    doze_loader_free(ld);
    /* the header alone, then finish: OUT_OF_MEMORY (not TRUNCATED) */
    ld = doze_loader_new(&p, &e);
    CHECK(doze_loader_feed(ld, good->data, hdr, &e) == DOZE_OK || e.code == DOZE_ERR_OUT_OF_MEMORY);
    CHECK(doze_loader_finish(ld, &m, &e) == DOZE_ERR_OUT_OF_MEMORY);
    doze_loader_free(ld);

    /* a context the KV cache cannot hold: 2^20 positions x 1024 layers would
     * need 2^49 bytes; here: the largest context with a small limit */
    edit ed = {"llama.context_length", 0, 1u << 20, NULL, NULL, 0};
    mem_buf big = rebuild(good, &ed);
    load_expect("context 2^20, max_memory 256 MiB", &big, 256ull << 20, 0, DOZE_ERR_OUT_OF_MEMORY,
                "KV cache");
    load_expect("context 2^20 cut to 8 by params", &big, 256ull << 20, 8, DOZE_OK, NULL);
    free(big.data);
}

/* ---- main ------------------------------------------------------------------------------ */

int main(void) {
    clock_t t0 = clock();
    double scale = corrupt_scale();
    char path[1024];

    /* the suite's own seeded models (doze init's code path) */
    struct {
        const char *name;
        int dim, hidden, layers, heads, kv, vocab, ctx, type;
    } fx[] = {
        {"init f32 (GQA)", 64, 96, 2, 4, 2, 300, 32, DOZE_TYPE_F32},
        {"init f16", 48, 64, 2, 3, 3, 280, 16, DOZE_TYPE_F16},
        {"init q8_0", 64, 128, 2, 2, 1, 270, 16, DOZE_TYPE_Q8_0},
        {"init q8_0 head_dim 16", 64, 96, 1, 4, 4, 262, 16, DOZE_TYPE_Q8_0},
    };
    mem_buf first = {NULL, 0, 0};
    for (size_t i = 0; i < sizeof fx / sizeof fx[0]; i++) {
        mem_buf f = fixture_gguf(fx[i].dim, fx[i].hidden, fx[i].layers, fx[i].heads, fx[i].kv,
                                 fx[i].vocab, fx[i].ctx, 11 + i, fx[i].type);
        CHECK(f.data != NULL);
        if (!f.data) continue;
        check_still_loads(f.data, f.len);
        sweep_gguf(fx[i].name, f.data, f.len, 300, (int)(500 * scale));
        if (i == 0) first = f;
        else free(f.data);
    }
    if (first.data) {
        test_hand_made(&first);
        test_memory(&first);
    }
    test_tokenizer_blocks();

    /* mixtures of experts: hand-made malformed ones, then the random sweep */
    mem_buf lmoe = moe_fixture("llama", DOZE_TYPE_F32, 21), qmoe = moe_fixture("qwen3moe", DOZE_TYPE_Q8_0, 22);
    CHECK(lmoe.data != NULL && qmoe.data != NULL);
    if (lmoe.data && qmoe.data) {
        test_moe_hostile(&lmoe, &qmoe);
        check_still_loads(lmoe.data, lmoe.len);
        sweep_gguf("init llama MoE f32", lmoe.data, lmoe.len, 300, (int)(300 * scale));
        sweep_gguf("init qwen3moe q8_0", qmoe.data, qmoe.len, 300, (int)(300 * scale));
    }
    free(lmoe.data);
    free(qmoe.data);

    /* the reference files */
    size_t n = 0;
    uint8_t *tiny = test_read_file(test_shared_path(path, sizeof path, "models/llama-2-tiny-random.gguf"), &n);
    if (tiny) {
        check_still_loads(tiny, n);
        sweep_gguf("llama-2-tiny-random.gguf", tiny, n, 400, (int)(800 * scale));
        free(tiny);
    } else {
        printf("SKIP llama-2-tiny-random.gguf: %s absent\n", path);
    }
    size_t vn = 0;
    uint8_t *vocab = test_read_file(test_shared_path(path, sizeof path, "models/ggml-vocab-llama-spm.gguf"), &vn);
    if (vocab) {
        /* vocab only: the loader must refuse it (no tensors) cleanly ... */
        stats s;
        memset(&s, 0, sizeof s);
        check_load("vocab-only file", vocab, vn, &s);
        CHECK(s.failed == 1);
        /* ... and its tokenizer survives corruption */
        sweep_vocab("ggml-vocab-llama-spm.gguf (tokenizer)", vocab, vn, 200, (int)(300 * scale));
        free(vocab);
    } else {
        printf("SKIP ggml-vocab-llama-spm.gguf: %s absent\n", path);
    }
    size_t ckn = 0, tokn = 0;
    uint8_t *ck = test_read_file(test_shared_path(path, sizeof path, "models/stories260K.bin"), &ckn);
    uint8_t *tok = test_read_file(test_shared_path(path, sizeof path, "models/tok512.bin"), &tokn);
    if (ck && tok) {
        /* stories260K converted to GGUF in memory, then corrupted */
        gguf_builder b;
        doze_error e;
        mem_buf g = {NULL, 0, 0};
        CHECK(gguf_builder_init(&b, &e) == DOZE_OK);
        CHECK(convert_llama2c(ck, ckn, tok, tokn, DOZE_TYPE_F32, "stories260K", &b, &e) == DOZE_OK);
        CHECK(gguf_writer_write(b.w, mem_write, &g, &e) == DOZE_OK);
        gguf_builder_free(&b);
        if (g.data) {
            check_still_loads(g.data, g.len);
            sweep_gguf("stories260K (converted GGUF)", g.data, g.len, 300, (int)(800 * scale));
        }
        free(g.data);
        sweep_llama2c(ck, ckn, tok, tokn, (int)(300 * scale));
    } else {
        printf("SKIP llama2.c import: stories260K.bin / tok512.bin absent\n");
    }
    free(ck);
    free(tok);
    free(first.data);

    print_stats("TOTAL", &total_stats);
    printf("test_corrupt: %ld variants in %.1f s of CPU\n", total_stats.tried,
           (double)(clock() - t0) / CLOCKS_PER_SEC);
    return test_finish("test_corrupt");
}
