/* libFuzzer target: byte-level BPE vocabularies and merges as the input
 * describes them, then encoding and decoding with them.
 *
 * Input: byte 0 picks the pre-tokenizer (one of llama.cpp's names, or an
 * unknown one that must be refused); byte 1 the flags (bit 0: add special,
 * bit 1: parse special, bit 2: add the 256 byte-level single-byte tokens,
 * bit 3: add_bos_token). The rest is split at 0xFF bytes: tokens (one per
 * line; "<...>" ones are control tokens, "[...]" ones user-defined), merges
 * (one per line, "left right"), then the text to encode. Every id encoded
 * is decoded again. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byte_buffer.h"
#include "doze.h"
#include "gguf.h"
#include "tokenizer.h"

static const char *const pres[] = {"default", "gpt-2", "llama-bpe", "qwen2", "smollm",
                                   "deepseek-llm", "deepseek-coder", "falcon", "starcoder",
                                   "mpt", "refact", NULL /* key absent */, "no-such-pre"};
enum { N_PRES = sizeof pres / sizeof pres[0] };

/* Splits s[0..n) at sep into at most max parts (NUL-terminated copies). */
static int split(const uint8_t *s, size_t n, uint8_t sep, char **parts, int max) {
    int k = 0;
    size_t start = 0;
    for (size_t i = 0; i <= n && k < max; i++) {
        if (i == n || s[i] == sep) {
            char *p = malloc(i - start + 1);
            if (!p) break;
            memcpy(p, s + start, i - start);
            p[i - start] = '\0';
            parts[k++] = p;
            start = i + 1;
        }
    }
    return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    const char *pre = pres[data[0] % N_PRES];
    int flags = data[1];
    /* three sections: tokens, merges, text */
    size_t cut[2] = {size, size};
    int nc = 0;
    for (size_t i = 2; i < size && nc < 2; i++)
        if (data[i] == 0xFF) cut[nc++] = i;
    size_t tok_end = cut[0], mer_end = nc > 1 ? cut[1] : size;
    const uint8_t *toks = data + 2, *mers = tok_end < size ? data + tok_end + 1 : data + size;
    size_t toks_n = tok_end - 2, mers_n = mer_end > tok_end ? mer_end - tok_end - (tok_end < size) : 0;
    const char *text = mer_end < size ? (const char *)data + mer_end + 1 : "";
    size_t text_n = mer_end < size ? size - mer_end - 1 : 0;

    enum { MAX_TOK = 512 + 256, MAX_MERGE = 512 };
    char **tokens = calloc(MAX_TOK, sizeof *tokens);
    char **merges = calloc(MAX_MERGE, sizeof *merges);
    int32_t *types = calloc(MAX_TOK, sizeof *types);
    if (!tokens || !merges || !types) goto out;
    int nt = split(toks, toks_n, '\n', tokens, 512);
    int nm = split(mers, mers_n, '\n', merges, MAX_MERGE);
    if (flags & 4) {
        /* the 256 single-character tokens of GPT-2's byte map */
        int next = 256;
        for (int b = 0; b < 256 && nt < MAX_TOK; b++) {
            int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
            unsigned cp = printable ? (unsigned)b : (unsigned)next++;
            char *p = malloc(3);
            if (!p) break;
            if (cp < 0x80) {
                p[0] = (char)cp;
                p[1] = 0;
            } else {
                p[0] = (char)(0xC0 | (cp >> 6));
                p[1] = (char)(0x80 | (cp & 0x3F));
                p[2] = 0;
            }
            tokens[nt++] = p;
        }
    }
    for (int i = 0; i < nt; i++) {
        size_t l = strlen(tokens[i]);
        types[i] = l >= 2 && tokens[i][0] == '<' && tokens[i][l - 1] == '>'   ? 3
                   : l >= 2 && tokens[i][0] == '[' && tokens[i][l - 1] == ']' ? 4
                                                                              : 1;
    }
    if (nt == 0) goto out;

    gguf_writer *w = gguf_writer_new(0);
    doze_error e;
    gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2", &e);
    if (pre) gguf_writer_set_str(w, "tokenizer.ggml.pre", pre, &e);
    gguf_writer_set_arr(w, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, (uint64_t)nt,
                        (const char *const *)tokens, &e);
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, (uint64_t)nt, types, &e);
    gguf_writer_set_arr(w, "tokenizer.ggml.merges", GGUF_TYPE_STRING, (uint64_t)nm,
                        (const char *const *)merges, &e);
    gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 0, &e);
    gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)(nt - 1), &e);
    gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", (flags & 8) != 0, &e);
    doze_byte_buffer m = {NULL, 0, 0};
    doze_status st = gguf_writer_write(w, doze_byte_buffer_write, &m, &e);
    gguf_writer_free(w);
    if (st != DOZE_OK) {
        free(m.data);
        goto out;
    }
    gguf_header h;
    doze_tokenizer *t = NULL;
    if (gguf_parse_header(m.data, m.len, &h, &e) == DOZE_OK) {
        st = tokenizer_from_gguf(&h, &t, &e);
        if (pre && strcmp(pre, "no-such-pre") == 0 && st != DOZE_ERR_UNSUPPORTED_TYPE &&
            st != DOZE_ERR_BAD_UTF8 && st != DOZE_ERR_BAD_FORMAT)
            __builtin_trap(); /* an unknown pre-tokenizer must be refused */
        gguf_header_free(&h);
    }
    free(m.data);
    if (t) {
        int need = 0;
        int tf = (flags & 1 ? DOZE_TOKENIZE_ADD_SPECIAL : 0) |
                 (flags & 2 ? DOZE_TOKENIZE_PARSE_SPECIAL : 0);
        st = tokenizer_encode(t, text, text_n, tf, NULL, 0, &need, &e);
        if (st == DOZE_OK && need > 0) {
            int32_t *ids = malloc((size_t)need * sizeof *ids);
            int got = 0;
            if (ids && tokenizer_encode(t, text, text_n, tf, ids, need, &got, &e) == DOZE_OK) {
                if (got != need) __builtin_trap();
                for (int i = 0; i < got; i++) {
                    if (ids[i] < 0 || ids[i] >= nt) __builtin_trap();
                    char piece[DOZE_MAX_PIECE];
                    size_t len = 0;
                    if (tokenizer_decode(t, i ? ids[i - 1] : -1, ids[i], piece, sizeof piece, &len,
                                         &e) != DOZE_OK ||
                        len > DOZE_MAX_PIECE)
                        __builtin_trap();
                }
            }
            free(ids);
        }
        if (st == DOZE_OK && text_n > 0) {
            /* a literal range from the text's own bytes: the ids stay in the
             * vocabulary, and a range covering everything is the plain parse */
            size_t lit[2] = {(unsigned char)text[0] % (text_n + 1), text_n};
            int n_lit = 0, n_plain = 0;
            int32_t *a = malloc((size_t)(need > 0 ? need : 1) * 2 * sizeof *a);
            if (a && tokenizer_encode_literal(t, text, text_n, tf, lit, 1, a, need * 2, &n_lit, &e) == DOZE_OK)
                for (int i = 0; i < n_lit && i < need * 2; i++)
                    if (a[i] < 0 || a[i] >= nt) __builtin_trap();
            const size_t whole[2] = {0, text_n};
            int32_t *b = malloc((size_t)(need > 0 ? need : 1) * 2 * sizeof *b);
            if (a && b && tokenizer_encode_literal(t, text, text_n, tf, whole, 1, a, need * 2, &n_lit, &e) == DOZE_OK &&
                tokenizer_encode(t, text, text_n, tf & ~DOZE_TOKENIZE_PARSE_SPECIAL, b, need * 2, &n_plain, &e) ==
                    DOZE_OK &&
                (n_lit != n_plain || (n_lit <= need * 2 && memcmp(a, b, (size_t)n_lit * sizeof *a) != 0)))
                __builtin_trap();
            free(a);
            free(b);
        }
        tokenizer_free(t);
    }
out:
    if (tokens)
        for (int i = 0; i < MAX_TOK; i++) free(tokens[i]);
    if (merges)
        for (int i = 0; i < MAX_MERGE; i++) free(merges[i]);
    free(tokens);
    free(merges);
    free(types);
    return 0;
}
