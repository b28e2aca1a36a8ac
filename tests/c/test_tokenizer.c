/* Tokenizer tests: a synthetic vocabulary written with the GGUF writer in
 * memory (merge order, ties, byte fallback, decoding, errors), then the
 * reference data in ../shared: llama.cpp's 46 SPM test cases on the Llama 2
 * vocabulary, round trips, speed on 100 KB of text, the real tokenizer inside
 * llama-2-tiny-random.gguf, and llama2.c's tok512 converted to GGUF against
 * the prompts recorded by run.c. */
#include "byte_buffer.h"
#include <stdint.h>
#include <time.h>

#include "test_util.h"

#include "doze.h"
#include "error.h"
#include "gguf.h"
#include "tokenizer.h"
#include "unicode.h"

#define U2581 "\xE2\x96\x81"

/* ---- helpers -------------------------------------------------------------------- */


/* Parses a GGUF in memory and builds a tokenizer from it (freeing the header
 * right away: the tokenizer must own what it needs). */
static doze_status tokenizer_from_bytes(const unsigned char *bytes, size_t n, doze_tokenizer **out,
                                        doze_error *err) {
    gguf_header h;
    memset(&h, 0, sizeof h);
    doze_status st = gguf_parse_header(bytes, n, &h, err);
    if (st != DOZE_OK) return st;
    st = tokenizer_from_gguf(&h, out, err);
    gguf_header_free(&h);
    return st;
}

#define OMIT INT32_MIN

typedef struct {
    const char *model; /* NULL: key absent */
    int n_tokens;
    const char *const *tokens;
    int n_scores; /* scores NULL: key absent */
    const float *scores;
    int n_types; /* types NULL: key absent */
    const int32_t *types;
    int bos, eos, unk;    /* OMIT: key absent */
    int add_space_prefix; /* OMIT: key absent */
} vocab_spec;

static doze_status build_from_spec(const vocab_spec *s, doze_tokenizer **out, doze_error *err) {
    *out = NULL;
    gguf_writer *w = gguf_writer_new(GGUF_DEFAULT_ALIGNMENT);
    if (!w) return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "gguf_writer_new failed");
    doze_status st = DOZE_OK;
    doze_byte_buffer m = {0};
    if (st == DOZE_OK) st = gguf_writer_set_str(w, "general.architecture", "llama", err);
    if (st == DOZE_OK && s->model) st = gguf_writer_set_str(w, "tokenizer.ggml.model", s->model, err);
    if (st == DOZE_OK)
        st = gguf_writer_set_arr(w, "tokenizer.ggml.tokens", GGUF_TYPE_STRING,
                                 (uint64_t)s->n_tokens, s->tokens, err);
    if (st == DOZE_OK && s->scores)
        st = gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32,
                                 (uint64_t)s->n_scores, s->scores, err);
    if (st == DOZE_OK && s->types)
        st = gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32,
                                 (uint64_t)s->n_types, s->types, err);
    if (st == DOZE_OK && s->bos != OMIT)
        st = gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)s->bos, err);
    if (st == DOZE_OK && s->eos != OMIT)
        st = gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)s->eos, err);
    if (st == DOZE_OK && s->unk != OMIT)
        st = gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)s->unk, err);
    if (st == DOZE_OK && s->add_space_prefix != OMIT)
        st = gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", s->add_space_prefix, err);
    if (st == DOZE_OK) st = gguf_writer_write(w, doze_byte_buffer_write, &m, err);
    gguf_writer_free(w);
    if (st != DOZE_OK) {
        fprintf(stderr, "writing the test GGUF failed: %s\n", err ? err->message : "");
        free(m.data);
        return st;
    }
    st = tokenizer_from_bytes(m.data, m.len, out, err);
    free(m.data);
    return st;
}

/* Encodes and compares with the expected ids. */
static int encode_is(const doze_tokenizer *t, const char *text, int add_bos, const int32_t *want,
                     int n_want) {
    int32_t got[256];
    int n = -1;
    doze_error err = {0};
    doze_status st = tokenizer_encode(t, text, strlen(text), add_bos, got, 256, &n, &err);
    int ok = st == DOZE_OK && n == n_want;
    for (int i = 0; ok && i < n; i++) ok = got[i] == want[i];
    if (!ok) {
        fprintf(stderr, "encode('%s', bos=%d): status %s (%s), got", text, add_bos,
                doze_status_name(st), err.message);
        for (int i = 0; i < n && i < 256; i++) fprintf(stderr, " %d", got[i]);
        fprintf(stderr, ", want");
        for (int i = 0; i < n_want; i++) fprintf(stderr, " %d", want[i]);
        fprintf(stderr, "\n");
    }
    return ok;
}

/* Decodes ids[0..n) tracking the previous token; *out_len gets the length.
 * Returns a malloc'd NUL-terminated string, NULL on a decode error. */
static char *decode_all(const doze_tokenizer *t, const int32_t *ids, int n, int prev,
                        size_t *out_len) {
    size_t cap = 64, len = 0;
    char *s = malloc(cap);
    if (!s) return NULL;
    for (int i = 0; i < n; i++) {
        char piece[512];
        size_t plen = 0;
        doze_error err = {0};
        if (tokenizer_decode(t, prev, ids[i], piece, sizeof piece, &plen, &err) != DOZE_OK ||
            plen >= sizeof piece) {
            fprintf(stderr, "decode of token %d failed: %s\n", ids[i], err.message);
            free(s);
            return NULL;
        }
        while (len + plen + 1 > cap) cap *= 2;
        char *p = realloc(s, cap);
        if (!p) {
            free(s);
            return NULL;
        }
        s = p;
        memcpy(s + len, piece, plen);
        len += plen;
        prev = ids[i];
    }
    s[len] = '\0';
    *out_len = len;
    return s;
}

static int decode_is(const doze_tokenizer *t, int prev, int token, const char *want,
                     size_t want_len) {
    char buf[64];
    size_t len = 999;
    doze_error err = {0};
    doze_status st = tokenizer_decode(t, prev, token, buf, sizeof buf, &len, &err);
    int ok = st == DOZE_OK && len == want_len && memcmp(buf, want, want_len) == 0;
    if (!ok)
        fprintf(stderr, "decode(prev=%d, %d): status %s (%s), len %zu, want %zu bytes\n", prev,
                token, doze_status_name(st), err.message, len, want_len);
    return ok;
}

#define ENC(t, text, bos, ...)                                                        \
    do {                                                                              \
        static const int32_t want_[] = {__VA_ARGS__};                                 \
        CHECK(encode_is(t, text, bos, want_, (int)(sizeof want_ / sizeof want_[0]))); \
    } while (0)

/* ---- synthetic vocabulary ------------------------------------------------------------ */

/* ids: 0 <unk>, 1 <s>, 2 </s>, 3..258 <0x00>..<0xFF>, then the pieces below */
enum { SYN_BYTE0 = 3, SYN_SP = 259, SYN_A, SYN_B, SYN_C, SYN_D, SYN_AB, SYN_BC, SYN_CD,
       SYN_SP_A, SYN_SP_AB, SYN_ABCD, SYN_N };
static const char *const syn_extra[] = {U2581, "a", "b", "c", "d", "ab", "bc", "cd",
                                        U2581 "a", U2581 "ab", "abcd"};
static const float syn_extra_scores[] = {-10, -20, -20, -20, -20, -2, -2, -1, -3, -1.5f, -5};

typedef struct {
    char bytes[256][7];
    const char *tokens[SYN_N];
    float scores[SYN_N];
    int32_t types[SYN_N];
} syn_vocab;

static void syn_init(syn_vocab *v) {
    v->tokens[0] = "<unk>";
    v->tokens[1] = "<s>";
    v->tokens[2] = "</s>";
    v->types[0] = DOZE_TOKEN_UNKNOWN;
    v->types[1] = v->types[2] = DOZE_TOKEN_CONTROL;
    v->scores[0] = v->scores[1] = v->scores[2] = 0;
    for (int b = 0; b < 256; b++) {
        snprintf(v->bytes[b], sizeof v->bytes[b], "<0x%02X>", b);
        v->tokens[SYN_BYTE0 + b] = v->bytes[b];
        v->types[SYN_BYTE0 + b] = DOZE_TOKEN_BYTE;
        v->scores[SYN_BYTE0 + b] = 0;
    }
    for (int i = SYN_SP; i < SYN_N; i++) {
        v->tokens[i] = syn_extra[i - SYN_SP];
        v->scores[i] = syn_extra_scores[i - SYN_SP];
        v->types[i] = DOZE_TOKEN_NORMAL;
    }
}

static vocab_spec syn_spec(const syn_vocab *v, int add_space_prefix) {
    vocab_spec s = {"llama", SYN_N, v->tokens, SYN_N, v->scores, SYN_N, v->types, 1, 2, 0,
                    add_space_prefix};
    return s;
}

static void test_synthetic(void) {
    syn_vocab v;
    syn_init(&v);
    doze_error err = {0};

    /* without the dummy prefix */
    vocab_spec s = syn_spec(&v, 0);
    doze_tokenizer *t = NULL;
    CHECK_MSG(build_from_spec(&s, &t, &err) == DOZE_OK, "%s", err.message);
    if (!t) return;
    CHECK(tokenizer_vocab_size(t) == SYN_N);
    CHECK(tokenizer_bos(t) == 1 && tokenizer_eos(t) == 2 && tokenizer_unk(t) == 0);
    CHECK(strcmp(tokenizer_piece(t, SYN_SP_AB), U2581 "ab") == 0);
    CHECK(tokenizer_piece(t, SYN_N) == NULL && tokenizer_piece(t, -1) == NULL);
    ENC(t, "abc", 0, SYN_AB, SYN_C);          /* ab and bc tie: leftmost first */
    ENC(t, "bcd", 0, SYN_B, SYN_CD);          /* cd scores higher than bc */
    ENC(t, "abcd", 0, SYN_ABCD);              /* cd, then ab, then ab+cd */
    ENC(t, "a b", 0, SYN_A, SYN_SP, SYN_B);   /* space -> U+2581 */
    ENC(t, " ab", 0, SYN_SP_AB);              /* ab first, then the U+2581 + ab */
    ENC(t, "\xC3\xA9", 0, SYN_BYTE0 + 0xC3, SYN_BYTE0 + 0xA9); /* byte fallback */
    ENC(t, "xa", 0, SYN_BYTE0 + 'x', SYN_A);
    ENC(t, "a", 1, 1, SYN_A);
    ENC(t, "<s>", 0, SYN_BYTE0 + '<', SYN_BYTE0 + 's', SYN_BYTE0 + '>');
    {
        int32_t out[4] = {-7, -7, -7, -7};
        int n = -1;
        CHECK(tokenizer_encode(t, "", 0, 1, out, 4, &n, &err) == DOZE_OK && n == 1 && out[0] == 1);
        CHECK(tokenizer_encode(t, "", 0, 0, out, 4, &n, &err) == DOZE_OK && n == 0);
        CHECK(tokenizer_encode(t, NULL, 0, 0, NULL, 0, &n, &err) == DOZE_OK && n == 0);
        /* a short buffer still reports the full count */
        out[0] = out[1] = out[2] = out[3] = -7;
        CHECK(tokenizer_encode(t, "a b", 3, 0, out, 2, &n, &err) == DOZE_OK && n == 3);
        CHECK(out[0] == SYN_A && out[1] == SYN_SP && out[2] == -7);
        CHECK(tokenizer_encode(t, "a b", 3, 1, NULL, 0, &n, &err) == DOZE_OK && n == 4);
        /* the length is honoured (no NUL needed) */
        CHECK(tokenizer_encode(t, "abcd", 2, 0, out, 4, &n, &err) == DOZE_OK && n == 1 &&
              out[0] == SYN_AB);
        /* embedded NUL is valid UTF-8: byte fallback */
        CHECK(tokenizer_encode(t, "a\0b", 3, 0, out, 4, &n, &err) == DOZE_OK && n == 3 &&
              out[1] == SYN_BYTE0);
    }
    /* invalid UTF-8 */
    {
        static const struct {
            const char *s;
            size_t len, at;
        } bad[] = {
            {"\xFF", 1, 0},         {"ab\xC0\x80", 4, 2},  {"\xED\xA0\x80", 3, 0}, /* surrogate */
            {"abc\xE2\x96", 5, 3},  {"\xF4\x90\x80\x80", 4, 0}, /* > U+10FFFF */
            {"a\x80", 2, 1},        {"\xE0\x80\xAF", 3, 0}, /* overlong */
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            int32_t out[8];
            int n = -1;
            doze_status st = tokenizer_encode(t, bad[i].s, bad[i].len, 1, out, 8, &n, &err);
            char want[64];
            snprintf(want, sizeof want, "offset %zu", bad[i].at);
            CHECK_MSG(st == DOZE_ERR_BAD_UTF8 && err.code == DOZE_ERR_BAD_UTF8 &&
                          strstr(err.message, want) != NULL,
                      "case %zu: %s '%s'", i, doze_status_name(st), err.message);
        }
    }
    /* the units a repair replaces by one U+FFFD each, as TextDecoder does:
     * a sequence cut short is one unit, a byte that starts none is one */
    {
        static const struct {
            const char *s;
            size_t len, bad;
        } units[] = {{"\xE2\x96", 2, 2}, {"\xF0\x9F\x98x", 4, 3}, {"\xC0\x80", 2, 1},
                     {"\xED\xA0\x80", 3, 1}, {"\x80", 1, 1}, {"\xF4\x90", 2, 1}, {"\xE2x", 2, 1}};
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
            size_t bad = 0;
            CHECK_MSG(unicode_utf8_len((const unsigned char *)units[i].s, units[i].len, 0, &bad) == 0 &&
                          bad == units[i].bad,
                      "unit %zu: %zu bytes", i, bad);
        }
        size_t bad = 0;
        CHECK(unicode_utf8_len((const unsigned char *)"\xE2\x96\x81", 3, 0, &bad) == 3);
    }
    {
        int n;
        int32_t out[2];
        CHECK(tokenizer_encode(t, "a", 1, 0, out, -1, &n, &err) == DOZE_ERR_INVALID_ARGUMENT);
        CHECK(tokenizer_encode(t, NULL, 1, 0, out, 2, &n, &err) == DOZE_ERR_INVALID_ARGUMENT);
    }
    /* decoding (this vocabulary adds no dummy space: every space is the
     * text's, at its start and after BOS too, so " ab" comes back whole) */
    CHECK(decode_is(t, -1, SYN_SP_AB, " ab", 3));
    CHECK(decode_is(t, 1, SYN_SP_AB, " ab", 3));          /* after BOS */
    CHECK(decode_is(t, SYN_A, SYN_SP_AB, " ab", 3));
    CHECK(decode_is(t, 1, SYN_SP, " ", 1));
    CHECK(decode_is(t, -1, SYN_BYTE0 + 'A', "A", 1));
    CHECK(decode_is(t, 1, SYN_BYTE0 + ' ', " ", 1));       /* a byte token keeps its space */
    CHECK(decode_is(t, -1, SYN_BYTE0 + 0, "\0", 1));
    CHECK(decode_is(t, -1, SYN_BYTE0 + 0xFF, "\xFF", 1));
    CHECK(decode_is(t, -1, 1, "", 0));                     /* control */
    CHECK(decode_is(t, -1, 2, "", 0));
    CHECK(decode_is(t, -1, 0, "", 0));                     /* unknown: no text (llama.cpp) */
    {
        char buf[8];
        size_t len = 0;
        CHECK(tokenizer_decode(t, -1, SYN_N, buf, sizeof buf, &len, &err) == DOZE_ERR_TOKEN_RANGE &&
              err.code == DOZE_ERR_TOKEN_RANGE);
        CHECK(tokenizer_decode(t, -1, -1, buf, sizeof buf, &len, &err) == DOZE_ERR_TOKEN_RANGE);
        CHECK(tokenizer_decode(t, SYN_N, 5, buf, sizeof buf, &len, &err) == DOZE_ERR_TOKEN_RANGE);
        /* a short buffer: up to cap bytes written, the full length reported */
        memset(buf, 'z', sizeof buf);
        CHECK(tokenizer_decode(t, -1, SYN_SP_AB, buf, 2, &len, &err) == DOZE_OK && len == 3 &&
              buf[0] == ' ' && buf[1] == 'a' && buf[2] == 'z');
        CHECK(tokenizer_decode(t, -1, SYN_SP_AB, NULL, 0, &len, &err) == DOZE_OK && len == 3);
    }
    tokenizer_free(t);

    /* with the dummy prefix (key absent: the default is true) */
    s = syn_spec(&v, OMIT);
    t = NULL;
    CHECK_MSG(build_from_spec(&s, &t, &err) == DOZE_OK, "%s", err.message);
    if (t) {
        ENC(t, "ab", 0, SYN_SP_AB);
        ENC(t, "a", 1, 1, SYN_SP_A);
        ENC(t, " ", 0, SYN_SP, SYN_SP);
        ENC(t, "", 1, 1);
        int32_t ids[16];
        int n = 0;
        CHECK(tokenizer_encode(t, "ab cd", 5, 1, ids, 16, &n, &err) == DOZE_OK);
        size_t len = 0;
        char *back = decode_all(t, ids, n, -1, &len);
        CHECK(back && len == 5 && strcmp(back, "ab cd") == 0);
        free(back);
        /* the dummy space goes at the start of a text with or without BOS
         * (tokenize(text, { bos: false }) then detokenize gave " ab cd"),
         * and only there: after another token the space is the text's */
        back = decode_all(t, ids + 1, n - 1, -1, &len);
        CHECK_MSG(back && len == 5 && strcmp(back, "ab cd") == 0, "'%s'", back ? back : "(null)");
        free(back);
        CHECK(decode_is(t, -1, SYN_SP_AB, "ab", 2));
        CHECK(decode_is(t, 1, SYN_SP_AB, "ab", 2));
        CHECK(decode_is(t, SYN_A, SYN_SP_AB, " ab", 3));
        CHECK(decode_is(t, 2, SYN_SP_AB, " ab", 3)); /* after EOS: not a start */
        tokenizer_free(t);
    }
}

static void test_synthetic_fallbacks(void) {
    doze_error err = {0};
    /* no byte tokens, no scores, no types: bytes become <unk> */
    static const char *const toks[] = {"<unk>", "<s>", "</s>", "a", "b", "ab", "ba"};
    vocab_spec s = {"llama", 7, toks, 0, NULL, 0, NULL, 1, 2, 0, 0};
    doze_tokenizer *t = NULL;
    CHECK_MSG(build_from_spec(&s, &t, &err) == DOZE_OK, "%s", err.message);
    if (t) {
        ENC(t, "xa", 0, 0, 3);
        ENC(t, "\xC3\xA9", 0, 0, 0);
        ENC(t, "aba", 0, 5, 3); /* all scores 0: leftmost first */
        ENC(t, "bab", 0, 6, 4);
        CHECK(decode_is(t, -1, 1, "<s>", 3)); /* no types: everything is normal */
        tokenizer_free(t);
    }
    /* neither byte tokens nor <unk>: cannot encode an unknown character */
    s.unk = OMIT;
    t = NULL;
    CHECK_MSG(build_from_spec(&s, &t, &err) == DOZE_OK, "%s", err.message);
    if (t) {
        CHECK(tokenizer_unk(t) == -1);
        int32_t out[4];
        int n = 0;
        doze_status st = tokenizer_encode(t, "x", 1, 0, out, 4, &n, &err);
        CHECK_MSG(st != DOZE_OK && err.code == (int)st, "%s", doze_status_name(st));
        /* no BOS id: add_bos adds nothing */
        s.bos = OMIT;
        tokenizer_free(t);
        t = NULL;
        CHECK(build_from_spec(&s, &t, &err) == DOZE_OK);
        if (t) {
            CHECK(tokenizer_bos(t) == -1);
            ENC(t, "ab", 1, 5);
            tokenizer_free(t);
        }
    }
}

static void test_synthetic_errors(void) {
    syn_vocab v;
    syn_init(&v);
    doze_error err = {0};
    doze_tokenizer *t = NULL;
    vocab_spec s;

    s = syn_spec(&v, 0);
    s.n_scores = SYN_N - 1;
    CHECK(build_from_spec(&s, &t, &err) == DOZE_ERR_BAD_FORMAT && t == NULL);
    CHECK_MSG(strstr(err.message, "269") && strstr(err.message, "270") &&
                  strstr(err.message, "scores"),
              "%s", err.message);

    s = syn_spec(&v, 0);
    s.n_types = SYN_N + 1;
    {
        int32_t types[SYN_N + 1];
        memcpy(types, v.types, sizeof v.types);
        types[SYN_N] = 1;
        s.types = types;
        CHECK(build_from_spec(&s, &t, &err) == DOZE_ERR_BAD_FORMAT && t == NULL);
        CHECK_MSG(strstr(err.message, "271") && strstr(err.message, "270"), "%s", err.message);
    }

    s = syn_spec(&v, 0);
    s.model = "bert";
    CHECK(build_from_spec(&s, &t, &err) == DOZE_ERR_UNSUPPORTED_TYPE && t == NULL);
    CHECK(strstr(err.message, "bert") != NULL);

    /* byte-level BPE needs its merges */
    s = syn_spec(&v, 0);
    s.model = "gpt2";
    CHECK(build_from_spec(&s, &t, &err) == DOZE_ERR_MISSING && t == NULL);
    CHECK(strstr(err.message, "merges") != NULL);

    s = syn_spec(&v, 0);
    s.model = NULL;
    CHECK(build_from_spec(&s, &t, &err) == DOZE_ERR_MISSING && t == NULL);

    /* special ids outside the vocabulary mean "none" (published files write
     * -1 or 2^32 - 1), as llama.cpp reads them */
    s = syn_spec(&v, 0);
    s.bos = SYN_N;
    CHECK(build_from_spec(&s, &t, &err) == DOZE_OK && t && tokenizer_bos(t) == -1);
    tokenizer_free(t);
    t = NULL;
    s = syn_spec(&v, 0);
    s.unk = 100000;
    CHECK(build_from_spec(&s, &t, &err) == DOZE_OK && t && tokenizer_unk(t) == -1);
    tokenizer_free(t);
    t = NULL;

    /* invalid UTF-8 in a normal piece; allowed in a byte token */
    s = syn_spec(&v, 0);
    {
        const char *toks[SYN_N];
        memcpy(toks, v.tokens, sizeof toks);
        toks[SYN_D] = "d\xFF";
        s.tokens = toks;
        CHECK(build_from_spec(&s, &t, &err) == DOZE_ERR_BAD_UTF8 && t == NULL);
        char want[32];
        snprintf(want, sizeof want, "%d", SYN_D);
        CHECK_MSG(strstr(err.message, want) != NULL, "%s", err.message);
        int32_t types[SYN_N];
        memcpy(types, v.types, sizeof types);
        types[SYN_D] = DOZE_TOKEN_BYTE;
        s.types = types;
        CHECK_MSG(build_from_spec(&s, &t, &err) == DOZE_OK, "%s", err.message);
        tokenizer_free(t);
        t = NULL;
    }

    /* a header without any tokenizer */
    {
        gguf_writer *w = gguf_writer_new(GGUF_DEFAULT_ALIGNMENT);
        doze_byte_buffer m = {0};
        CHECK(w && gguf_writer_set_str(w, "general.architecture", "llama", &err) == DOZE_OK);
        CHECK(w && gguf_writer_write(w, doze_byte_buffer_write, &m, &err) == DOZE_OK);
        gguf_writer_free(w);
        CHECK(tokenizer_from_bytes(m.data, m.len, &t, &err) == DOZE_ERR_MISSING && t == NULL);
        free(m.data);
    }
    CHECK(tokenizer_from_gguf(NULL, &t, &err) == DOZE_ERR_INVALID_ARGUMENT);
    tokenizer_free(NULL);
}

/* ---- llama.cpp's reference cases ------------------------------------------------------ */

static void test_against_naive(const doze_tokenizer *t, const unsigned char *gguf, size_t size);

/* A whole file of ../shared (NULL if absent). */
static unsigned char *read_shared(const char *rel, size_t *n) {
    char path[512];
    return test_read_file(test_shared_path(path, sizeof path, rel), n);
}

static doze_tokenizer *load_file_tokenizer(const char *rel) {
    size_t n = 0;
    unsigned char *bytes = read_shared(rel, &n);
    if (!bytes) return NULL;
    doze_tokenizer *t = NULL;
    doze_error err = {0};
    doze_status st = tokenizer_from_bytes(bytes, n, &t, &err);
    free(bytes);
    CHECK_MSG(st == DOZE_OK, "%s: %s %s", rel, doze_status_name(st), err.message);
    return t;
}

/* Round trips of s: with BOS and without it, decoding (prev tracked, the
 * first token opening the text) gives s exactly: the dummy prefix is the
 * encoder's, not the text's. */
static int round_trip_ok(const doze_tokenizer *t, const char *s, size_t len) {
    int n = 0;
    doze_error err = {0};
    if (tokenizer_encode(t, s, len, 1, NULL, 0, &n, &err) != DOZE_OK) return 0;
    int32_t *ids = malloc(sizeof *ids * (size_t)(n + 1));
    if (!ids) return 0;
    int ok = tokenizer_encode(t, s, len, 1, ids, n, &n, &err) == DOZE_OK;
    size_t blen = 0;
    char *back = ok ? decode_all(t, ids, n, -1, &blen) : NULL;
    ok = back && blen == len && memcmp(back, s, len) == 0;
    free(back);
    if (ok && n > 1) { /* without BOS: ids + 1 */
        back = decode_all(t, ids + 1, n - 1, -1, &blen);
        ok = back && blen == len && memcmp(back, s, len) == 0;
        free(back);
    }
    free(ids);
    return ok;
}

static int test_llama_vocab(void) {
    char path[512];
    test_shared_path(path, sizeof path, "models/ggml-vocab-llama-spm.gguf");
    if (!test_file_exists(path)) {
        printf("SKIP llama vocab tests: %s is absent\n", path);
        return 0;
    }
    doze_tokenizer *t = load_file_tokenizer("models/ggml-vocab-llama-spm.gguf");
    if (!t) return 1;
    CHECK(tokenizer_vocab_size(t) == 32000);
    CHECK(tokenizer_bos(t) == 1 && tokenizer_eos(t) == 2 && tokenizer_unk(t) == 0);

    size_t n_inp = 0, n_out = 0;
    char *inp = (char *)test_read_file(
        test_shared_path(path, sizeof path, "models/ggml-vocab-llama-spm.gguf.inp"), &n_inp);
    char *outp = (char *)test_read_file(
        test_shared_path(path, sizeof path, "models/ggml-vocab-llama-spm.gguf.out"), &n_out);
    CHECK(inp && outp);
    if (!inp || !outp) {
        free(inp);
        free(outp);
        tokenizer_free(t);
        return 1;
    }
    /* make both NUL-terminated copies */
    char *in = malloc(n_inp + 1), *ex = malloc(n_out + 1);
    memcpy(in, inp, n_inp);
    in[n_inp] = '\0';
    memcpy(ex, outp, n_out);
    ex[n_out] = '\0';
    free(inp);
    free(outp);

    /* inputs: each string is followed by "\n__ggml_vocab_test__\n" */
    static const char sep[] = "\n__ggml_vocab_test__\n";
    const size_t sep_len = sizeof sep - 1;
    int n_cases = 0, n_match = 0, n_round = 0;
    char *p = in, *line = ex;
    for (;;) {
        char *end = strstr(p, sep);
        if (!end) break;
        size_t len = (size_t)(end - p);
        n_cases++;
        /* expected ids: one line */
        int32_t want[512];
        int n_want = 0;
        char *eol = strchr(line, '\n');
        if (eol) *eol = '\0';
        for (char *q = line;;) {
            char *next;
            long v = strtol(q, &next, 10);
            if (next == q) break;
            if (n_want < 512) want[n_want++] = (int32_t)v;
            q = next;
        }
        line = eol ? eol + 1 : line + strlen(line);

        int32_t got[512];
        int n = -1;
        doze_error err = {0};
        doze_status st = tokenizer_encode(t, p, len, 0, got, 512, &n, &err);
        int ok = st == DOZE_OK && n == n_want;
        for (int i = 0; ok && i < n; i++) ok = got[i] == want[i];
        if (ok) {
            n_match++;
        } else {
            fprintf(stderr, "case %d ('%.*s'): %s %s\n  got ", n_cases, (int)len, p,
                    doze_status_name(st), err.message);
            for (int i = 0; i < n && i < 512; i++) fprintf(stderr, " %d", got[i]);
            fprintf(stderr, "\n  want");
            for (int i = 0; i < n_want; i++) fprintf(stderr, " %d", want[i]);
            fprintf(stderr, "\n");
        }
        if (round_trip_ok(t, p, len))
            n_round++;
        else
            fprintf(stderr, "case %d ('%.*s'): round trip failed\n", n_cases, (int)len, p);
        p = end + sep_len;
    }
    printf("llama.cpp SPM reference: %d/%d cases match, %d/%d round trips exact\n", n_match,
           n_cases, n_round, n_cases);
    CHECK(n_cases == 46);
    CHECK(n_match == n_cases);
    CHECK(n_round == n_cases);
    free(in);
    free(ex);

    /* a few more round trips */
    static const char *const extra[] = {"", " ", "a", "\n", "Hello", " Hello", "  leading",
                                        "trailing  ", "<s> is text", "\xF0\x9F\x98\x80 emoji",
                                        "\xEF\xBF\xBF", "tab\tand\r\nCRLF", "\x7F\x01"};
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++)
        CHECK_MSG(round_trip_ok(t, extra[i], strlen(extra[i])), "'%s'", extra[i]);

    /* against a naive merge loop on random strings */
    {
        size_t gsize = 0;
        unsigned char *g = read_shared("models/ggml-vocab-llama-spm.gguf", &gsize);
        CHECK(g != NULL);
        if (g) test_against_naive(t, g, gsize);
        free(g);
    }

    /* speed: 100 KB of real text, and 100 KB of one repeated letter */
    size_t n_text = 0;
    char *text = (char *)test_read_file(
        test_shared_path(path, sizeof path, "text/tinystories-dev.txt"), &n_text);
    if (!text) {
        printf("SKIP speed test: text/tinystories-dev.txt is absent\n");
    } else {
        for (int pass = 0; pass < 2; pass++) {
            if (pass == 1) memset(text, 'a', n_text);
            int n = 0;
            doze_error err = {0};
            clock_t c0 = clock();
            doze_status st = tokenizer_encode(t, text, n_text, 1, NULL, 0, &n, &err);
            int32_t *ids = st == DOZE_OK ? malloc(sizeof *ids * (size_t)n) : NULL;
            if (ids) st = tokenizer_encode(t, text, n_text, 1, ids, n, &n, &err);
            double sec = (double)(clock() - c0) / CLOCKS_PER_SEC / 2;
            CHECK_MSG(st == DOZE_OK && ids, "%s", err.message);
            printf("encode %zu bytes (%s): %d tokens in %.3f s\n", n_text,
                   pass ? "repeated 'a'" : "tinystories-dev", n, sec);
            CHECK(sec < 1.0);
            if (ids) {
                size_t blen = 0;
                char *back = decode_all(t, ids, n, -1, &blen);
                CHECK(back && blen == n_text && memcmp(back, text, n_text) == 0);
                free(back);
            }
            free(ids);
        }
        free(text);
    }
    tokenizer_free(t);
    return 1;
}

/* ---- differential test against a naive O(n^2) merge loop ---------------------------- */

typedef struct {
    const char *p;
    size_t n;
    int id;
} naive_entry;

typedef struct {
    const float *scores;
    int n;
    naive_entry *sorted; /* by piece bytes; equal pieces: larger id first */
} naive_vocab;

static int piece_cmp(const char *a, size_t an, const char *b, size_t bn) {
    size_t m = an < bn ? an : bn;
    int c = m ? memcmp(a, b, m) : 0;
    if (c) return c;
    return an < bn ? -1 : an > bn ? 1 : 0;
}

static int entry_cmp(const void *pa, const void *pb) {
    const naive_entry *a = pa, *b = pb;
    int c = piece_cmp(a->p, a->n, b->p, b->n);
    if (c) return c;
    return b->id - a->id; /* a duplicate piece maps to its last id */
}

static int naive_lookup(const naive_vocab *v, const char *s, size_t n) {
    int lo = 0, hi = v->n - 1, found = -1;
    while (lo <= hi) { /* the first entry equal to s */
        int mid = (lo + hi) / 2;
        int c = piece_cmp(v->sorted[mid].p, v->sorted[mid].n, s, n);
        if (c == 0) found = mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return found < 0 ? -1 : v->sorted[found].id;
}

/* llama2.c-style: repeatedly merge the best adjacent pair (highest score,
 * leftmost on ties); then pieces or their bytes. No BOS. */
static int naive_encode(const naive_vocab *v, const char *text, size_t len, int32_t *out) {
    char esc[1024];
    size_t k = 0;
    if (len) {
        memcpy(esc, U2581, 3);
        k = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(esc + k, U2581, 3);
            k += 3;
        } else {
            esc[k++] = text[i];
        }
    }
    size_t start[1024], n[1024];
    int ns = 0;
    for (size_t i = 0; i < k;) {
        unsigned char c = (unsigned char)esc[i];
        size_t l = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        start[ns] = i;
        n[ns++] = l;
        i += l;
    }
    for (;;) {
        int best = -1;
        float best_score = 0;
        for (int i = 0; i + 1 < ns; i++) {
            int id = naive_lookup(v, esc + start[i], n[i] + n[i + 1]);
            if (id < 0) continue;
            float sc = v->scores[id];
            if (best < 0 || sc > best_score) {
                best = i;
                best_score = sc;
            }
        }
        if (best < 0) break;
        n[best] += n[best + 1];
        for (int i = best + 1; i + 1 < ns; i++) {
            start[i] = start[i + 1];
            n[i] = n[i + 1];
        }
        ns--;
    }
    int count = 0;
    for (int i = 0; i < ns; i++) {
        int id = naive_lookup(v, esc + start[i], n[i]);
        if (id >= 0) {
            out[count++] = id;
            continue;
        }
        for (size_t j = 0; j < n[i]; j++) {
            char buf[8];
            snprintf(buf, sizeof buf, "<0x%02X>", (unsigned char)esc[start[i] + j]);
            out[count++] = naive_lookup(v, buf, 6);
        }
    }
    return count;
}

static void test_against_naive(const doze_tokenizer *t, const unsigned char *gguf, size_t size) {
    gguf_header h;
    doze_error err = {0};
    if (gguf_parse_header(gguf, size, &h, &err) != DOZE_OK) {
        CHECK_MSG(0, "%s", err.message);
        return;
    }
    uint32_t type;
    uint64_t n_tok = 0, n_sc = 0;
    const void *tok = NULL, *sc = NULL;
    CHECK(gguf_get_array(&h, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &type, &n_tok, &tok,
                         &err) == DOZE_OK);
    CHECK(gguf_get_array(&h, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, &type, &n_sc, &sc,
                         &err) == DOZE_OK);
    naive_vocab v = {sc, (int)n_tok, malloc(sizeof(naive_entry) * (size_t)(n_tok + 1))};
    if (!tok || !sc || n_tok != n_sc || !v.sorted) {
        free(v.sorted);
        gguf_header_free(&h);
        CHECK(0);
        return;
    }
    const gguf_string *pieces = tok;
    for (int i = 0; i < v.n; i++) {
        v.sorted[i].p = pieces[i].data;
        v.sorted[i].n = (size_t)pieces[i].len;
        v.sorted[i].id = i;
    }
    qsort(v.sorted, (size_t)v.n, sizeof(naive_entry), entry_cmp);

    /* random strings over an alphabet of ASCII, spaces and multi-byte characters */
    static const char *const alphabet[] = {
        " ", " ", " ", "e", "t", "a", "o", "n", "i", "s", "h", "r", "l", "d", "'", ".", ",",
        "\n", "\t", "1", "0", "T", "A", "\xC3\xA9", "\xC3\xB6", "\xD0\xBF", "\xD1\x80",
        "\xE4\xB8\xAD", "\xE6\x96\x87", "\xF0\x9F\x98\x80", "\xE1\x9E\x80", "ing", "the", "er"};
    const int n_alpha = (int)(sizeof alphabet / sizeof alphabet[0]);
    uint32_t rng = 12345;
    int n_cases = 2000, n_same = 0;
    for (int c = 0; c < n_cases; c++) {
        char text[256];
        size_t len = 0;
        rng = rng * 1664525u + 1013904223u;
        int n_parts = (int)((rng >> 16) % 30);
        for (int p = 0; p < n_parts; p++) {
            rng = rng * 1664525u + 1013904223u;
            const char *part = alphabet[(rng >> 16) % (uint32_t)n_alpha];
            size_t pl = strlen(part);
            memcpy(text + len, part, pl);
            len += pl;
        }
        int32_t want[1024], got[1024];
        int n_want = naive_encode(&v, text, len, want);
        int n_got = -1;
        doze_status st = tokenizer_encode(t, text, len, 0, got, 1024, &n_got, &err);
        int ok = st == DOZE_OK && n_got == n_want;
        for (int i = 0; ok && i < n_got; i++) ok = got[i] == want[i];
        if (ok) {
            n_same++;
        } else if (c - n_same < 5) {
            fprintf(stderr, "random case %d '%.*s' differs from the naive merge loop\n", c,
                    (int)len, text);
        }
        if (ok) CHECK(round_trip_ok(t, text, len));
    }
    printf("random strings: %d/%d match the naive merge loop\n", n_same, n_cases);
    CHECK(n_same == n_cases);
    free(v.sorted);
    gguf_header_free(&h);
}

/* The real tokenizer inside a full GGUF model (tensors after the header). */
static int test_tiny_random_gguf(void) {
    char path[512];
    test_shared_path(path, sizeof path, "models/llama-2-tiny-random.gguf");
    if (!test_file_exists(path)) {
        printf("SKIP llama-2-tiny-random tokenizer test: %s is absent\n", path);
        return 0;
    }
    doze_tokenizer *t = load_file_tokenizer("models/llama-2-tiny-random.gguf");
    if (!t) return 1;
    /* run.c with -i "Hello world": the pairs file starts 1 15043, 15043 3186 */
    ENC(t, "Hello world", 1, 1, 15043, 3186);
    tokenizer_free(t);
    return 1;
}

/* ---- llama2.c's tok512 converted to GGUF ------------------------------------------------ */

typedef struct {
    int n;
    char **pieces;
    float *scores;
    int32_t *types;
} l2c_vocab;

static void l2c_free(l2c_vocab *v) {
    if (v->pieces)
        for (int i = 0; i < v->n; i++) free(v->pieces[i]);
    free(v->pieces);
    free(v->scores);
    free(v->types);
    memset(v, 0, sizeof *v);
}

/* Reads a llama2.c tokenizer file as the lead's converter does: ' ' -> U+2581,
 * types 2 (id 0), 3 (ids 1, 2), 6 (<0xNN>), else 1. */
static int l2c_read(const char *path, int n_vocab, l2c_vocab *v) {
    memset(v, 0, sizeof *v);
    size_t size = 0;
    unsigned char *b = test_read_file(path, &size);
    if (!b) return 0;
    v->n = n_vocab;
    v->pieces = calloc((size_t)n_vocab, sizeof *v->pieces);
    v->scores = calloc((size_t)n_vocab, sizeof *v->scores);
    v->types = calloc((size_t)n_vocab, sizeof *v->types);
    size_t off = 4;
    int ok = v->pieces && v->scores && v->types && size >= 4;
    for (int i = 0; ok && i < n_vocab; i++) {
        int32_t len;
        if (size - off < 8) {
            ok = 0;
            break;
        }
        memcpy(&v->scores[i], b + off, 4);
        memcpy(&len, b + off + 4, 4);
        off += 8;
        if (len < 0 || (size_t)len > size - off) {
            ok = 0;
            break;
        }
        char *p = malloc((size_t)len * 3 + 1);
        if (!p) {
            ok = 0;
            break;
        }
        size_t k = 0;
        for (int j = 0; j < len; j++) {
            if (b[off + j] == ' ') {
                memcpy(p + k, U2581, 3);
                k += 3;
            } else {
                p[k++] = (char)b[off + j];
            }
        }
        p[k] = '\0';
        off += (size_t)len;
        v->pieces[i] = p;
        unsigned hex;
        char tail;
        if (i == 0)
            v->types[i] = DOZE_TOKEN_UNKNOWN;
        else if (i == 1 || i == 2)
            v->types[i] = DOZE_TOKEN_CONTROL;
        else if (strlen(p) == 6 && sscanf(p, "<0x%2X%c", &hex, &tail) == 2 && tail == '>')
            v->types[i] = DOZE_TOKEN_BYTE;
        else
            v->types[i] = DOZE_TOKEN_NORMAL;
    }
    free(b);
    if (!ok) l2c_free(v);
    return ok;
}

/* The input column of a .pairs file. */
static int32_t *read_pairs_inputs(const char *path, int *n_out) {
    size_t size = 0;
    char *b = (char *)test_read_file(path, &size);
    if (!b) return NULL;
    char *s = malloc(size + 1);
    memcpy(s, b, size);
    s[size] = '\0';
    free(b);
    int cap = 1024, n = 0;
    int32_t *ids = malloc(sizeof *ids * (size_t)cap);
    char *p = s;
    for (;;) {
        char *e1, *e2;
        long a = strtol(p, &e1, 10);
        if (e1 == p) break;
        strtol(e1, &e2, 10);
        if (e2 == e1) break;
        if (n == cap) {
            cap *= 2;
            ids = realloc(ids, sizeof *ids * (size_t)cap);
        }
        ids[n++] = (int32_t)a;
        p = e2;
    }
    free(s);
    *n_out = n;
    return ids;
}

static void check_prompt(const doze_tokenizer *t, const char *pairs_rel, const char *prompt) {
    char path[512];
    int n_pairs = 0;
    int32_t *inputs = read_pairs_inputs(test_shared_path(path, sizeof path, pairs_rel), &n_pairs);
    CHECK_MSG(inputs && n_pairs > 1, "%s", pairs_rel);
    if (!inputs) return;
    /* the prompt length: the shortest prefix of the recorded inputs that
     * decodes (prev tracked, so the dummy space after BOS is dropped) to the
     * prompt */
    size_t plen = strlen(prompt), len = 0;
    int k = 0;
    char text[1024];
    CHECK(inputs[0] == 1);
    for (int i = 0; i < n_pairs && len < plen; i++) {
        char piece[256];
        size_t n = 0;
        doze_error err = {0};
        if (tokenizer_decode(t, i ? inputs[i - 1] : -1, inputs[i], piece, sizeof piece, &n,
                             &err) != DOZE_OK ||
            len + n >= sizeof text)
            break;
        memcpy(text + len, piece, n);
        len += n;
        k = i + 1;
    }
    CHECK_MSG(len == plen && memcmp(text, prompt, plen) == 0, "%s: the recorded inputs do not "
              "start with the prompt '%s'", pairs_rel, prompt);
    int32_t ids[256];
    int n = 0;
    doze_error err = {0};
    CHECK(tokenizer_encode(t, prompt, plen, 1, ids, 256, &n, &err) == DOZE_OK);
    int ok = n == k;
    for (int i = 0; ok && i < n; i++) ok = ids[i] == inputs[i];
    CHECK_MSG(ok, "%s: encoding '%s' differs from run.c's prompt", pairs_rel, prompt);
    printf("tok512 '%s': %d prompt tokens (BOS included)%s:", prompt, k, ok ? ", match" : "");
    for (int i = 0; i < n; i++) printf(" %d", ids[i]);
    printf("\n");
    free(inputs);
}

static int test_tok512(void) {
    char path[512];
    test_shared_path(path, sizeof path, "models/tok512.bin");
    char pp[512], lp[512];
    test_shared_path(pp, sizeof pp, "models/stories260K.prompt.pairs");
    test_shared_path(lp, sizeof lp, "models/stories260K.long.pairs");
    if (!test_file_exists(path) || !test_file_exists(pp) || !test_file_exists(lp)) {
        printf("SKIP tok512 test: %s or the .pairs files are absent\n", path);
        return 0;
    }
    l2c_vocab v;
    CHECK(l2c_read(path, 512, &v));
    if (!v.pieces) return 1;
    int n_bytes = 0;
    for (int i = 0; i < v.n; i++) n_bytes += v.types[i] == DOZE_TOKEN_BYTE;
    CHECK(n_bytes == 256);
    vocab_spec s = {"llama", v.n,   (const char *const *)v.pieces, v.n, v.scores, v.n, v.types,
                    1,       2,     0,                             OMIT};
    doze_tokenizer *t = NULL;
    doze_error err = {0};
    CHECK_MSG(build_from_spec(&s, &t, &err) == DOZE_OK, "%s", err.message);
    if (t) {
        check_prompt(t, "models/stories260K.prompt.pairs", "One day, a dog");
        check_prompt(t, "models/stories260K.long.pairs", "Once upon a time");
        /* round trips through byte fallback (few merges in 512 tokens) */
        {
            static const char rt[] = "Zebra \xC3\xA9t\xC3\xA9 {x} \xF0\x9F\x98\x80";
            CHECK(round_trip_ok(t, rt, strlen(rt)));
        }
        tokenizer_free(t);
    }
    l2c_free(&v);
    return 1;
}

int main(void) {
    test_synthetic();
    test_synthetic_fallbacks();
    test_synthetic_errors();
    int ran = 0;
    ran += test_llama_vocab();
    ran += test_tiny_random_gguf();
    ran += test_tok512();
    int rc = test_finish("test_tokenizer");
    if (rc == 0 && ran == 0) {
        printf("reference data in %s is absent: only the synthetic tests ran\n", DOZE_SHARED_DIR);
        return TEST_SKIP;
    }
    return rc;
}
