/* Byte-level BPE and special tokens against llama.cpp's own test vectors:
 * every .inp/.out pair of the vocabulary-only GGUFs in ../shared/models/vocab
 * (deepseek-coder, deepseek-llm, falcon, mpt, refact, starcoder: byte-level
 * BPE; phi-3: SentencePiece) and ../shared/models/ggml-vocab-llama-spm.gguf
 * must give the .out ids, no BOS. Then special-token handling, BOS/EOS,
 * end-of-generation tokens, decoding back to the text, an unknown
 * pre-tokenizer refused by name, and the pre-tokenizers on synthetic
 * vocabularies written in memory. */
#include <stdint.h>

#include "test_util.h"

#include "byte_buffer.h"
#include "doze.h"
#include "error.h"
#include "gguf.h"
#include "tokenizer.h"

static doze_tokenizer *load_tok(const char *rel, gguf_header *keep) {
    char path[512];
    test_shared_path(path, sizeof path, rel);
    size_t n = 0;
    unsigned char *bytes = test_read_file(path, &n);
    if (!bytes) return NULL;
    gguf_header h;
    doze_error e = {0};
    doze_tokenizer *t = NULL;
    if (gguf_parse_header(bytes, n, &h, &e) != DOZE_OK || tokenizer_from_gguf(&h, &t, &e) != DOZE_OK) {
        fprintf(stderr, "%s: %s\n", rel, e.message);
        t = NULL;
    }
    if (keep) *keep = h;
    else gguf_header_free(&h);
    free(bytes);
    return t;
}

/* Decodes ids into one string (malloc'd). */
static char *decode_ids(const doze_tokenizer *t, const int32_t *ids, int n, size_t *len) {
    char *s = malloc((size_t)n * DOZE_MAX_PIECE + 1);
    size_t at = 0;
    doze_error e = {0};
    for (int i = 0; s && i < n; i++) {
        size_t l = 0;
        if (tokenizer_decode(t, i ? ids[i - 1] : -1, ids[i], s + at, DOZE_MAX_PIECE + 1, &l, &e) !=
            DOZE_OK) {
            free(s);
            return NULL;
        }
        at += l;
    }
    if (s) s[at] = '\0';
    *len = at;
    return s;
}

/* Runs one vocabulary's .inp/.out vectors; returns 0 when the files are absent. */
static int run_vectors(const char *rel) {
    char path[512], inp_path[600], out_path[600];
    test_shared_path(path, sizeof path, rel);
    snprintf(inp_path, sizeof inp_path, "%s.inp", path);
    snprintf(out_path, sizeof out_path, "%s.out", path);
    size_t n_inp = 0, n_out = 0;
    unsigned char *inp = test_read_file(inp_path, &n_inp);
    unsigned char *outs = test_read_file(out_path, &n_out);
    if (!inp || !outs) {
        free(inp);
        free(outs);
        printf("SKIP %s: vectors absent\n", rel);
        return 0;
    }
    doze_tokenizer *t = load_tok(rel, NULL);
    CHECK_MSG(t != NULL, "%s does not load", rel);
    if (!t) {
        free(inp);
        free(outs);
        return 1;
    }
    static const char sep[] = "\n__ggml_vocab_test__\n";
    size_t sep_n = strlen(sep);
    /* the file starts with "__ggml_vocab_test__\n" (no leading newline) */
    const char *p = (const char *)inp, *end = (const char *)inp + n_inp;
    if (n_inp >= sep_n - 1 && memcmp(p, sep + 1, sep_n - 1) == 0) p += sep_n - 1;
    const char *o = (const char *)outs, *oend = (const char *)outs + n_out;
    int cases = 0, same = 0, round = 0;
    while (p < end && o < oend) {
        const char *q = p;
        while (q + sep_n <= end && memcmp(q, sep, sep_n) != 0) q++;
        if (q + sep_n > end) q = end;
        size_t len = (size_t)(q - p);
        /* expected ids: one line of decimal numbers */
        int32_t want[1024];
        int n_want = 0;
        const char *ol = o;
        while (ol < oend && *ol != '\n') {
            while (ol < oend && *ol == ' ') ol++;
            if (ol < oend && *ol != '\n') {
                want[n_want++] = (int32_t)strtol(ol, (char **)&ol, 10);
            }
        }
        o = ol + 1;
        int32_t got[1024];
        int n_got = -1;
        doze_error e = {0};
        doze_status st = tokenizer_encode(t, p, len, 0, got, 1024, &n_got, &e);
        int ok = st == DOZE_OK && n_got == n_want;
        for (int i = 0; ok && i < n_got; i++) ok = got[i] == want[i];
        cases++;
        if (ok) {
            same++;
        } else {
            fprintf(stderr, "%s case %d '%.*s': got", rel, cases, (int)len, p);
            for (int i = 0; i < n_got && i < 1024; i++) fprintf(stderr, " %d", got[i]);
            fprintf(stderr, " want");
            for (int i = 0; i < n_want; i++) fprintf(stderr, " %d", want[i]);
            fprintf(stderr, " (%s)\n", e.message);
        }
        if (ok) {
            /* decodes back to the exact text: byte-level BPE, and
             * SentencePiece without BOS too (the dummy space at the start
             * is the encoder's) */
            size_t dl = 0;
            char *d = decode_ids(t, got, n_got, &dl);
            if (d && dl == len && memcmp(d, p, len) == 0) round++;
            else fprintf(stderr, "%s case %d does not decode back\n", rel, cases);
            free(d);
        }
        p = q + sep_n;
    }
    printf("%s: %d/%d vectors match llama.cpp, %d decode back to the text\n", rel, same, cases,
           round);
    CHECK(cases > 20 && same == cases);
    CHECK(round == cases);
    tokenizer_free(t);
    free(inp);
    free(outs);
    return 1;
}


static int ids_are(const int32_t *got, int n, const int32_t *want, int n_want) {
    if (n != n_want) return 0;
    for (int i = 0; i < n; i++)
        if (got[i] != want[i]) return 0;
    return 1;
}

/* The file's bytes with tokenizer.ggml.pre's value replaced (GGUF without
 * tensors: nothing after the metadata moves). */
static unsigned char *with_pre(const unsigned char *b, size_t n, const char *pre, size_t *out_n) {
    static const char key[] = "tokenizer.ggml.pre";
    size_t kl = strlen(key), at = 0;
    while (at + kl <= n && memcmp(b + at, key, kl) != 0) at++;
    if (at + kl + 12 > n) return NULL;
    size_t v = at + kl + 4; /* past the key and its type */
    uint64_t old = 0;
    for (int i = 7; i >= 0; i--) old = old << 8 | b[v + (size_t)i];
    size_t pl = strlen(pre), tail = v + 8 + (size_t)old;
    *out_n = n - (size_t)old + pl;
    unsigned char *o = malloc(*out_n);
    if (!o) return NULL;
    memcpy(o, b, v);
    for (int i = 0; i < 8; i++) o[v + (size_t)i] = (unsigned char)((uint64_t)pl >> (8 * i));
    memcpy(o + v + 8, pre, pl);
    memcpy(o + v + 8 + pl, b + tail, n - tail);
    return o;
}

/* Special tokens, BOS/EOS, end of generation, the vocabulary-only API and an
 * unknown pre-tokenizer; the ids are llama.cpp's (node-llama-cpp). */
static void test_specials(void) {
    char path[512];
    test_shared_path(path, sizeof path, "models/vocab/ggml-vocab-falcon.gguf");
    size_t n = 0;
    unsigned char *bytes = test_read_file(path, &n);
    if (!bytes) return;
    doze_error e = {0};
    doze_vocab *v = NULL;
    CHECK(doze_vocab_load(bytes, 1000, &v, &e) == DOZE_ERR_TRUNCATED && v == NULL);
    CHECK(doze_vocab_load(bytes, n, &v, &e) == DOZE_OK && v != NULL);
    if (v) {
        const char *s = "Hello world <|endoftext|> don't";
        int32_t ids[64];
        int got = 0;
        static const int32_t plain[] = {9856, 1079, 204, 39, 103, 415, 1487, 2164, 54146, 794, 18, 95};
        static const int32_t special[] = {9856, 1079, 204, 11, 794, 18, 95};
        CHECK(doze_vocab_tokenize(v, s, strlen(s), 0, ids, 64, &got, &e) == DOZE_OK &&
              ids_are(ids, got, plain, 12));
        CHECK(doze_vocab_tokenize(v, s, strlen(s), DOZE_TOKENIZE_PARSE_SPECIAL, ids, 64, &got, &e) ==
                  DOZE_OK &&
              ids_are(ids, got, special, 7));
        /* falcon says nothing of add_bos_token: byte-level BPE adds none */
        CHECK(doze_vocab_tokenize(v, s, strlen(s), DOZE_TOKENIZE_ADD_SPECIAL, ids, 64, &got, &e) ==
                  DOZE_OK &&
              ids_are(ids, got, plain, 12));
        CHECK(doze_vocab_is_eog(v, 11) && !doze_vocab_is_eog(v, 9856) && !doze_vocab_is_eog(v, -1));
        char piece[DOZE_MAX_PIECE];
        size_t len = 0;
        CHECK(doze_vocab_token_to_piece(v, -1, 1079, piece, sizeof piece, &len, &e) == DOZE_OK &&
              len == 6 && memcmp(piece, " world", 6) == 0);
        CHECK(doze_vocab_token_to_piece(v, -1, 11, piece, sizeof piece, &len, &e) == DOZE_OK &&
              len == 0); /* a control token prints nothing */
        doze_vocab_free(v);
    }
    /* an unknown pre-tokenizer is refused, by name */
    size_t m = 0;
    unsigned char *bad = with_pre(bytes, n, "no-such-pre", &m);
    CHECK(bad != NULL);
    if (bad) {
        v = NULL;
        CHECK(doze_vocab_load(bad, m, &v, &e) == DOZE_ERR_UNSUPPORTED_TYPE && v == NULL);
        CHECK_MSG(strstr(e.message, "no-such-pre") != NULL, "%s", e.message);
        free(bad);
    }
    /* the same tokens and merges under Llama 3's pre-tokenizer: BOS by
     * default, digits in threes, a word that is a token taken whole */
    unsigned char *l3 = with_pre(bytes, n, "llama-bpe", &m);
    if (l3 && doze_vocab_load(l3, m, &v, &e) == DOZE_OK) {
        int32_t ids[64];
        int got = 0;
        CHECK(doze_vocab_tokenize(v, "1234567", 7, DOZE_TOKENIZE_ADD_SPECIAL, ids, 64, &got, &e) ==
                  DOZE_OK &&
              got == 4 && ids[0] == 11);
        doze_vocab_free(v);
    } else {
        CHECK_MSG(0, "llama-bpe variant: %s", e.message);
    }
    free(l3);
    free(bytes);

    /* SentencePiece: BOS by default, </s> only with parse_special, EOS ends generation */
    test_shared_path(path, sizeof path, "models/ggml-vocab-llama-spm.gguf");
    bytes = test_read_file(path, &n);
    if (bytes && doze_vocab_load(bytes, n, &v, &e) == DOZE_OK) {
        int32_t ids[64];
        int got = 0;
        static const int32_t sp[] = {1, 15043, 29871, 2, 29871, 3186};
        CHECK(doze_vocab_tokenize(v, "Hello </s> world", 16,
                                  DOZE_TOKENIZE_ADD_SPECIAL | DOZE_TOKENIZE_PARSE_SPECIAL, ids, 64,
                                  &got, &e) == DOZE_OK &&
              ids_are(ids, got, sp, 6));
        CHECK(doze_vocab_tokenize(v, "Hello </s> world", 16, 0, ids, 64, &got, &e) == DOZE_OK &&
              got > 4 && ids[0] != 1);
        for (int i = 0; i < got; i++) CHECK(ids[i] != 2);
        CHECK(doze_vocab_is_eog(v, 2) && !doze_vocab_is_eog(v, 1));
        doze_vocab_free(v);
    }
    free(bytes);

    /* deepseek-coder: add_bos_token = true, EOS 32014 */
    test_shared_path(path, sizeof path, "models/vocab/ggml-vocab-deepseek-coder.gguf");
    bytes = test_read_file(path, &n);
    if (bytes && doze_vocab_load(bytes, n, &v, &e) == DOZE_OK) {
        int32_t ids[8];
        int got = 0;
        CHECK(doze_vocab_tokenize(v, "Hello", 5, DOZE_TOKENIZE_ADD_SPECIAL, ids, 8, &got, &e) ==
                  DOZE_OK &&
              got == 2 && ids[0] == 32013 && ids[1] == 17535);
        CHECK(doze_vocab_is_eog(v, 32014));
        /* its fill-in-the-middle markers are typed user-defined in the file;
         * llama.cpp makes them control by their text, so user text that
         * spells them stays text (they were matched as the marker ids,
         * control tokens smuggled in through plain text) and decoding
         * prints nothing for them. The ids are llama.cpp's. */
        static const char fim[] = "a<\xEF\xBD\x9C" "fim\xE2\x96\x81" "begin\xEF\xBD\x9C>b<\xEF\xBD\x9C"
                                  "fim\xE2\x96\x81" "hole\xEF\xBD\x9C>c<\xEF\xBD\x9C" "fim\xE2\x96\x81"
                                  "end\xEF\xBD\x9C>";
        static const int32_t fim_text[] = {64,  27,  169, 121, 237, 69,  308, 11028, 210, 946,   169,
                                           121, 237, 29,  65,  27,  169, 121, 237,   69,  308,   11028,
                                           210, 19496, 169, 121, 237, 29, 66,  27,    169, 121,   237,
                                           69,  308, 11028, 210, 408, 169, 121, 237,   29};
        static const int32_t fim_special[] = {64, 32016, 65, 32015, 66, 32017};
        int32_t many[64];
        CHECK(doze_vocab_tokenize(v, fim, strlen(fim), 0, many, 64, &got, &e) == DOZE_OK &&
              ids_are(many, got, fim_text, 42));
        CHECK(doze_vocab_tokenize(v, fim, strlen(fim), DOZE_TOKENIZE_PARSE_SPECIAL, many, 64, &got,
                                  &e) == DOZE_OK &&
              ids_are(many, got, fim_special, 6));
        char piece[DOZE_MAX_PIECE];
        size_t len = 1;
        for (int id = 32015; id <= 32017; id++)
            CHECK(doze_vocab_token_to_piece(v, 64, id, piece, sizeof piece, &len, &e) == DOZE_OK &&
                  len == 0);
        CHECK(!doze_vocab_is_eog(v, 32016));
        doze_vocab_free(v);
    }
    free(bytes);
}

/* Control tokens inside literal ranges stay text (a chat's message
 * contents): the ids are the special parse up to the range and the plain
 * tokenization of the stretch the range sits in; outside ranges nothing
 * changes; a range past the text is refused. */
static void test_literal_ranges(void) {
    doze_tokenizer *t = load_tok("models/vocab/ggml-vocab-falcon.gguf", NULL);
    if (!t) return;
    doze_error e = {0};
    const char *s = "A <|endoftext|> B <|endoftext|> C";
    const size_t len = strlen(s), second = (size_t)(strstr(s + 4, "<|endoftext|>") - s);
    int32_t want[64], tail[64], got[64];
    int nw = 0, nt = 0, ng = 0;
    CHECK(tokenizer_encode(t, s, second - 3, DOZE_TOKENIZE_PARSE_SPECIAL, want, 64, &nw, &e) == DOZE_OK);
    CHECK(want[nw - 1] == 11); /* "A <|endoftext|>": the control token */
    CHECK(tokenizer_encode(t, s + second - 3, len - (second - 3), 0, tail, 64, &nt, &e) == DOZE_OK);
    memcpy(want + nw, tail, (size_t)nt * sizeof *tail);
    nw += nt;
    /* the whole second marker, and a range that only overlaps it */
    const size_t ranges[2][2] = {{second - 2, second + 13}, {second + 3, second + 4}};
    for (int r = 0; r < 2; r++) {
        CHECK(tokenizer_encode_literal(t, s, len, DOZE_TOKENIZE_PARSE_SPECIAL, ranges[r], 1, got, 64, &ng, &e) ==
              DOZE_OK);
        CHECK_MSG(ids_are(got, ng, want, nw), "range %d: the second marker is not text", r);
    }
    /* a range over plain text changes nothing */
    int32_t all[64];
    int na = 0;
    const size_t plain_range[2] = {0, 2};
    CHECK(tokenizer_encode(t, s, len, DOZE_TOKENIZE_PARSE_SPECIAL, all, 64, &na, &e) == DOZE_OK);
    CHECK(tokenizer_encode_literal(t, s, len, DOZE_TOKENIZE_PARSE_SPECIAL, plain_range, 1, got, 64, &ng, &e) ==
              DOZE_OK &&
          ids_are(got, ng, all, na));
    const size_t past[2] = {3, len + 1};
    CHECK(tokenizer_encode_literal(t, s, len, DOZE_TOKENIZE_PARSE_SPECIAL, past, 1, got, 64, &ng, &e) ==
          DOZE_ERR_INVALID_ARGUMENT);
    tokenizer_free(t);
}

int main(void) {
    static const char *const vocabs[] = {
        "models/ggml-vocab-llama-spm.gguf",           "models/vocab/ggml-vocab-phi-3.gguf",
        "models/vocab/ggml-vocab-deepseek-coder.gguf", "models/vocab/ggml-vocab-deepseek-llm.gguf",
        "models/vocab/ggml-vocab-falcon.gguf",        "models/vocab/ggml-vocab-mpt.gguf",
        "models/vocab/ggml-vocab-refact.gguf",        "models/vocab/ggml-vocab-starcoder.gguf",
    };
    int ran = 0;
    for (size_t i = 0; i < sizeof vocabs / sizeof vocabs[0]; i++) ran += run_vectors(vocabs[i]);
    if (!ran) {
        printf("SKIP: ../shared/models is absent\n");
        return TEST_SKIP;
    }
    test_specials();
    test_literal_ranges();
    if (test_failures) fprintf(stderr, "%d failures\n", test_failures);
    return test_failures ? 1 : 0;
}
