/* `doze vocab`: trains a SentencePiece-style BPE vocabulary on a text and
 * writes it as a vocab-only GGUF; then encodes the text with it through
 * the runtime's tokenizer and checks that every story round-trips. */
#include "byte_buffer.h"
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "tokenizer.h"
#include "vocab.h"
#include "cli_util.h"
#include "commands.h"

typedef doze_byte_buffer membuf;
#define mem_write doze_byte_buffer_write

typedef struct {
    const doze_tokenizer *tok;
    long long tokens, bytes, stories, mismatches;
    int32_t *ids;
    int cap;
    char *dec;
    size_t dec_cap;
    doze_error e;
    int failed;
} check_ctx;

static int check_story(void *ctx, const char *s, size_t n) {
    check_ctx *c = ctx;
    int need = 0;
    if (tokenizer_encode(c->tok, s, n, 1, c->ids, c->cap, &need, &c->e) != DOZE_OK) return c->failed = 1;
    if (need > c->cap) {
        free(c->ids);
        c->cap = need * 2;
        c->ids = malloc((size_t)c->cap * sizeof *c->ids);
        if (!c->ids || tokenizer_encode(c->tok, s, n, 1, c->ids, c->cap, &need, &c->e) != DOZE_OK)
            return c->failed = 1;
    }
    if (c->dec_cap < n + DOZE_MAX_PIECE + 1) {
        free(c->dec);
        c->dec_cap = 2 * n + DOZE_MAX_PIECE + 1;
        c->dec = malloc(c->dec_cap);
        if (!c->dec) return c->failed = 1;
    }
    size_t at = 0;
    for (int i = 1; i < need; i++) {
        size_t len = 0;
        if (at + DOZE_MAX_PIECE >= c->dec_cap ||
            tokenizer_decode(c->tok, c->ids[i - 1], c->ids[i], c->dec + at, c->dec_cap - at, &len, &c->e) != DOZE_OK)
            break;
        at += len;
    }
    if (at != n || memcmp(c->dec, s, n) != 0) c->mismatches++;
    c->tokens += need - 1; /* without BOS */
    c->bytes += (long long)n;
    c->stories++;
    return 0;
}

static void print_piece(const char *p) {
    /* U+2581 shown as '_' */
    for (; *p; p++) {
        if ((unsigned char)p[0] == 0xE2 && (unsigned char)p[1] == 0x96 && (unsigned char)p[2] == 0x81) {
            out_bytes("_", 1);
            p += 2;
        } else {
            out_bytes(p, 1);
        }
    }
}

static const char *const vocab_forms[] = {"TEXTFILE", NULL};
static const cli_option vocab_options[] = {
    {"-o", CLI_STRING, "VOCAB.gguf", "where to write the vocabulary (a vocabulary-only GGUF)", NULL, 1},
    {"--size", CLI_INT, "N", "pieces in the vocabulary (default 512)", NULL, 0},
    {"--quiet", CLI_FLAG, NULL, "do not print the first and last merges", NULL, 0},
    CLI_OPTIONS_END,
};
const cli_command cmd_vocab_spec = {
    "vocab", vocab_forms, 1, 1, "trains a SentencePiece-style BPE vocabulary on a text",
    "Trains a SentencePiece-style BPE vocabulary (byte fallback) on the text, checks that\n"
    "every story round-trips through the runtime's tokenizer, and writes it.",
    vocab_options,
};

int cmd_vocab(int argc, char **argv) {
    cli_args a;
    int prc = cli_parse(&cmd_vocab_spec, argc, argv, &a);
    if (prc >= 0) return prc;
    const char *text_path = cli_pos(&a, 0);
    const char *out = cli_get(&a, "-o");
    long long size = cli_get_int(&a, "--size", 512);
    int quiet = cli_has(&a, "--quiet");
    if (size < 1 || size > (1 << 24)) return cli_usage_error(&a, "--size must be in 1..16777216");
    size_t n = 0;
    char *text = (char *)cli_read_file(text_path, &n);
    if (!text) return 1;
    if (n == 0) {
        free(text);
        err_printf("doze: vocab: %s is empty: there is nothing to learn pieces from\n", text_path);
        return 1;
    }
    doze_error e;
    vocab_spec v;
    membuf file = {NULL, 0, 0};
    gguf_header h;
    memset(&h, 0, sizeof h);
    doze_tokenizer *tok = NULL;
    check_ctx c;
    memset(&c, 0, sizeof c);
    int rc = 1;
    double t0 = io_now_ms();
    if (vocab_train(text, n, (int)size, &v, &e) != DOZE_OK) {
        free(text);
        return cli_print_error("vocab", &e);
    }
    double ms = io_now_ms() - t0;
    if (v.n < size) /* a short text runs out of pairs to merge */
        err_printf("doze: vocab: the text gave %d pieces, fewer than the %lld asked\n", v.n, size);
    if (vocab_write(&v, mem_write, &file, &e) != DOZE_OK) {
        cli_print_error("vocab", &e);
        goto done;
    }
    out_printf("vocab: %d pieces (3 special, 256 bytes, %d characters, %d merges) from %lld distinct "
               "words in %.1f s\n",
               v.n, v.n_chars, v.n_merges, v.words, ms / 1000.0);
    if (v.n < size) out_printf("vocab: stopped at %d pieces: no pair occurs twice any more\n", v.n);
    if (!quiet) {
        out_printf("first merges:");
        for (int i = 259 + v.n_chars; i < v.n && i < 259 + v.n_chars + 24; i++) {
            out_printf(" ");
            print_piece(v.pieces[i]);
        }
        out_printf("\nlast merges:");
        for (int i = v.n - 12 > 259 + v.n_chars ? v.n - 12 : 259 + v.n_chars; i < v.n; i++) {
            out_printf(" ");
            print_piece(v.pieces[i]);
        }
        out_printf("\n");
    }
    /* through the runtime's tokenizer, as a model would use it */
    if (gguf_parse_header(file.data, file.len, &h, &e) != DOZE_OK || tokenizer_from_gguf(&h, &tok, &e) != DOZE_OK) {
        cli_print_error("vocab (reading it back)", &e);
        goto done;
    }
    c.tok = tok;
    text_for_each_story(text, n, check_story, &c);
    if (c.failed) {
        cli_print_error("vocab (encoding the text)", &c.e);
        goto done;
    }
    out_printf("vocab: %lld stories, %lld bytes -> %lld tokens: %.4f tokens per byte; round trip %s\n",
               c.stories, c.bytes, c.tokens, c.bytes ? (double)c.tokens / (double)c.bytes : 0.0,
               c.mismatches ? "FAILED" : "exact");
    if (c.mismatches) {
        err_printf("doze: %lld stories did not decode to themselves\n", c.mismatches);
        goto done;
    }
    intptr_t fd = cli_open_write(out);
    if (fd < 0) goto done;
    rc = cli_close_write(fd, out, io_write(fd, file.data, file.len) == 0);
done:
    tokenizer_free(tok);
    gguf_header_free(&h);
    free(c.ids);
    free(c.dec);
    free(file.data);
    vocab_spec_free(&v);
    free(text);
    return rc;
}
