/* Tokenizer training (doze vocab): the layout (<unk>, <s>, </s>, 256 byte
 * tokens, U+2581, merges scored -k), determinism, the runtime's tokenizer
 * reading the file, exact round trips (unseen words, other scripts, line
 * breaks, digits, repeated spaces), merges applied (tokens per byte well
 * below 1), errors; the CLI command; and on the TinyStories text when
 * ../shared is present. */
#include "byte_buffer.h"
#include <stdint.h>

#include "tokenizer.h"
#include "vocab.h"
#include "test_util.h"

typedef doze_byte_buffer mem_buf;
#define mem_write doze_byte_buffer_write

static const char *const sentences[] = {
    "Once upon a time, there was a little girl named Lily.",
    "She liked to play with her red ball in the park.",
    "One day, she saw a big dog. The dog was friendly and wanted to play.",
    "\"Can I play with you?\" asked the dog. Lily said, \"Yes!\"",
    "They played all day until the sun went down. Lily's mom called her home.",
    "Tom and Sam were best friends. They didn't like to fight.",
};

static char *make_text(size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *t = malloc(cap);
    for (int rep = 0; rep < 40; rep++) {
        for (size_t i = 0; i < sizeof sentences / sizeof sentences[0]; i++) {
            const char *s = sentences[(i + (size_t)rep) % (sizeof sentences / sizeof sentences[0])];
            size_t l = strlen(s);
            memcpy(t + n, s, l);
            n += l;
            t[n++] = (i % 3 == 2) ? '\n' : ' ';
        }
        const char *sep = "\n<|endoftext|>\n";
        memcpy(t + n, sep, strlen(sep));
        n += strlen(sep);
    }
    t[n] = '\0';
    *len = n;
    return t;
}

static int sink(void *ctx, const void *p, size_t n) { return mem_write(ctx, p, n); }

/* encode (BOS, dummy prefix) and decode back: exact? Adds the token count. */
static int round_trip(const doze_tokenizer *tok, const char *s, long long *tokens) {
    size_t n = strlen(s);
    int cap = (int)n * 4 + 8, got = 0;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    char *dec = malloc(n * 4 + DOZE_MAX_PIECE + 8);
    doze_error e;
    int ok = tokenizer_encode(tok, s, n, 1, ids, cap, &got, &e) == DOZE_OK && got <= cap;
    size_t at = 0;
    for (int i = 1; ok && i < got; i++) {
        size_t l = 0;
        ok = tokenizer_decode(tok, ids[i - 1], ids[i], dec + at, DOZE_MAX_PIECE + 1, &l, &e) == DOZE_OK;
        at += l;
    }
    ok = ok && at == n && memcmp(dec, s, n) == 0;
    if (tokens) *tokens += got - 1;
    free(ids);
    free(dec);
    return ok;
}

static doze_tokenizer *read_back(const mem_buf *f) {
    gguf_header h;
    doze_error e;
    doze_tokenizer *tok = NULL;
    if (gguf_parse_header(f->data, f->len, &h, &e) != DOZE_OK) return NULL;
    if (tokenizer_from_gguf(&h, &tok, &e) != DOZE_OK) tok = NULL;
    CHECK(h.n_tensors == 0);
    gguf_header_free(&h);
    return tok;
}

typedef struct {
    const doze_tokenizer *tok;
    long long tokens, bytes;
    int bad;
} story_stats;

static int count_story(void *ctx, const char *s, size_t n) {
    story_stats *st = ctx;
    char *z = malloc(n + 1);
    memcpy(z, s, n);
    z[n] = '\0';
    st->bad += !round_trip(st->tok, z, &st->tokens);
    st->bytes += (long long)n;
    free(z);
    return 0;
}

static void test_small(void) {
    size_t len;
    char *text = make_text(&len);
    vocab_spec v, v2;
    doze_error e;
    CHECK(vocab_train(text, len, 400, &v, &e) == DOZE_OK);
    CHECK(v.n == 400);
    CHECK(strcmp(v.pieces[0], "<unk>") == 0 && v.types[0] == DOZE_TOKEN_UNKNOWN);
    CHECK(strcmp(v.pieces[1], "<s>") == 0 && v.types[1] == DOZE_TOKEN_CONTROL);
    CHECK(strcmp(v.pieces[2], "</s>") == 0 && v.types[2] == DOZE_TOKEN_CONTROL);
    int bytes_ok = 1;
    for (int b = 0; b < 256; b++) {
        char want[8];
        snprintf(want, sizeof want, "<0x%02X>", b);
        bytes_ok &= strcmp(v.pieces[3 + b], want) == 0 && v.types[3 + b] == DOZE_TOKEN_BYTE;
    }
    CHECK(bytes_ok);
    CHECK(v.n_chars >= 1 && strcmp(v.pieces[259], "\xE2\x96\x81") == 0);
    /* merges: scores -k in order; no piece spans two words */
    int order_ok = 1, spans = 0;
    for (int i = 259 + v.n_chars; i < v.n; i++) {
        order_ok &= v.scores[i] == -(float)(i - 259 - v.n_chars);
        const char *sp = strstr(v.pieces[i] + 1, "\xE2\x96\x81");
        spans += sp != NULL;
    }
    CHECK(order_ok && spans == 0);
    CHECK(v.n_merges == v.n - 259 - v.n_chars);
    printf("vocab of %d: %d characters, %d merges, first \"%s\", \"%s\", last \"%s\"\n", v.n, v.n_chars,
           v.n_merges, v.pieces[259 + v.n_chars], v.pieces[260 + v.n_chars], v.pieces[v.n - 1]);
    /* deterministic: the same file twice */
    CHECK(vocab_train(text, len, 400, &v2, &e) == DOZE_OK);
    mem_buf f1 = {NULL, 0, 0}, f2 = {NULL, 0, 0};
    CHECK(vocab_write(&v, sink, &f1, &e) == DOZE_OK);
    CHECK(vocab_write(&v2, sink, &f2, &e) == DOZE_OK);
    CHECK(f1.len == f2.len && memcmp(f1.data, f2.data, f1.len) == 0);
    /* the public entry point writes the same bytes */
    mem_buf f3 = {NULL, 0, 0};
    CHECK(doze_vocab_train(text, len, 400, sink, &f3, &e) == DOZE_OK);
    CHECK(f3.len == f1.len && memcmp(f3.data, f1.data, f1.len) == 0);

    doze_tokenizer *tok = read_back(&f1);
    CHECK(tok != NULL);
    if (tok) {
        CHECK(tokenizer_vocab_size(tok) == 400 && tokenizer_bos(tok) == 1 && tokenizer_eos(tok) == 2 &&
              tokenizer_unk(tok) == 0);
        story_stats st = {tok, 0, 0, 0};
        text_for_each_story(text, len, count_story, &st);
        double tpb = (double)st.tokens / (double)st.bytes;
        printf("on its own text: %lld bytes -> %lld tokens (%.3f tokens per byte), %d stories not "
               "round-tripping\n", st.bytes, st.tokens, tpb, st.bad);
        CHECK(st.bad == 0);
        CHECK(tpb < 0.35);
        const char *others[] = {
            "Lily and the dog played.",
            "Zebras quickly jumped over 12345 fences!",
            "  two leading spaces,   three inside, and a trailing one ",
            "line one\nline two\r\n\ttabbed\n\n",
            "caf\xC3\xA9, na\xC3\xAFve, \xE2\x80\x9Cquoted\xE2\x80\x9D \xE2\x80\x94 dash, \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E, \xF0\x9F\x98\x80",
            "x",
            "Lily's mom didn't know.",
        };
        int all = 1;
        for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
            int ok = round_trip(tok, others[i], NULL);
            if (!ok) printf("  does not round-trip: \"%s\"\n", others[i]);
            all &= ok;
        }
        CHECK(all);
        /* merges are applied: a trained sentence is a handful of pieces */
        long long n = 0;
        CHECK(round_trip(tok, sentences[0], &n));
        printf("\"%s\": %lld tokens for %zu bytes\n", sentences[0], n, strlen(sentences[0]));
        CHECK(n < (long long)strlen(sentences[0]) / 3);
        tokenizer_free(tok);
    }
    /* errors */
    vocab_spec bad;
    CHECK(vocab_train(text, len, 100, &bad, &e) == DOZE_ERR_INVALID_ARGUMENT);
    CHECK(vocab_train("ab\xFF", 3, 300, &bad, &e) == DOZE_ERR_BAD_UTF8);
    /* a text too small for the size: stops when no pair occurs twice */
    CHECK(vocab_train("abab cd", 7, 400, &bad, &e) == DOZE_OK);
    CHECK(bad.n < 400 && bad.n > 259);
    vocab_spec_free(&bad);
    vocab_spec_free(&v);
    vocab_spec_free(&v2);
    free(f1.data);
    free(f2.data);
    free(f3.data);

    /* the CLI command */
    char tpath[512], vpath[512], cmd[2048];
    snprintf(tpath, sizeof tpath, "%s/test_vocab_text.txt", DOZE_BUILD_DIR);
    snprintf(vpath, sizeof vpath, "%s/test_vocab.gguf", DOZE_BUILD_DIR);
    FILE *fp = fopen(tpath, "wb");
    CHECK(fp != NULL);
    if (fp) {
        fwrite(text, 1, len, fp);
        fclose(fp);
        snprintf(cmd, sizeof cmd, "%s vocab %s --size 300 -o %s --quiet > %s.log 2>&1", DOZE_CLI, tpath, vpath, vpath);
        CHECK(system(cmd) == 0);
        size_t n = 0;
        unsigned char *bytes = test_read_file(vpath, &n);
        CHECK(bytes != NULL);
        if (bytes) {
            mem_buf f = {bytes, n, n};
            doze_tokenizer *t2 = read_back(&f);
            CHECK(t2 && tokenizer_vocab_size(t2) == 300);
            tokenizer_free(t2);
            free(bytes);
        }
        remove(tpath);
        remove(vpath);
    }
    free(text);
}

static void test_tinystories(void) {
    char path[512];
    size_t n = 0, dn = 0;
    unsigned char *text = test_read_file(test_shared_path(path, sizeof path, "text/tinystories-train.txt"), &n);
    unsigned char *dev = test_read_file(test_shared_path(path, sizeof path, "text/tinystories-dev.txt"), &dn);
    if (!text || !dev) {
        printf("skipping the TinyStories part: %s is absent\n", path);
        free(text);
        free(dev);
        return;
    }
    vocab_spec v;
    doze_error e;
    CHECK(vocab_train((const char *)text, n, 1024, &v, &e) == DOZE_OK);
    mem_buf f = {NULL, 0, 0};
    CHECK(vocab_write(&v, sink, &f, &e) == DOZE_OK);
    doze_tokenizer *tok = read_back(&f);
    CHECK(tok != NULL);
    if (tok) {
        story_stats st = {tok, 0, 0, 0};
        text_for_each_story((const char *)dev, dn, count_story, &st);
        double tpb = (double)st.tokens / (double)st.bytes;
        printf("TinyStories, 1024 pieces trained on the train text: dev text %lld bytes -> %lld tokens "
               "(%.3f tokens per byte), %d stories not round-tripping\n", st.bytes, st.tokens, tpb, st.bad);
        CHECK(st.bad == 0);
        CHECK(tpb < 0.4);
        tokenizer_free(tok);
    }
    vocab_spec_free(&v);
    free(f.data);
    free(text);
    free(dev);
}

int main(void) {
    test_small();
    test_tinystories();
    return test_finish("test_vocab");
}
