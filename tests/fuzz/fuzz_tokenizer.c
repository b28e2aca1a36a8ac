/* libFuzzer target: the tokenizer, encode and decode, on a fixed small
 * vocabulary built in memory (control tokens, the 256 byte tokens, pieces
 * with U+2581, multi-byte characters, an empty piece, duplicates).
 *
 * Input: first byte selects the mode; the rest is either text to encode
 * (mode even) or a sequence of little-endian int16 token ids to decode
 * (mode odd; ids out of range included on purpose). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byte_buffer.h"
#include "convert.h"
#include "doze.h"
#include "gguf.h"
#include "tokenizer.h"

static doze_tokenizer *tok_spm;  /* byte tokens, add_space_prefix */
static doze_tokenizer *tok_bare; /* no byte tokens, no unk: encoding can fail */

static doze_tokenizer *build(int with_bytes) {
    static const char *const words[] = {
        "\xE2\x96\x81", "\xE2\x96\x81t", "he", "\xE2\x96\x81the", "ll", "llo", "\xE2\x96\x81hello",
        "wor", "ld", "\xE2\x96\x81world", "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\xA6\x99", "ab", "abc",
        "", "ab", "<0xZZ>", "e", "h", "l", "o", "w", "r", "d", "\xE2\x96\x81\xE2\x96\x81",
    };
    enum { NW = sizeof words / sizeof words[0] };
    const char *pieces[3 + 256 + NW];
    char bytes[256][8];
    float scores[3 + 256 + NW];
    int32_t types[3 + 256 + NW];
    int n = 0;
    pieces[n] = "<unk>"; types[n] = 2; scores[n++] = 0;
    pieces[n] = "<s>"; types[n] = 3; scores[n++] = 0;
    pieces[n] = "</s>"; types[n] = 3; scores[n++] = 0;
    if (with_bytes) {
        for (int b = 0; b < 256; b++) {
            snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
            pieces[n] = bytes[b]; types[n] = 6; scores[n++] = 0;
        }
    }
    for (int i = 0; i < NW; i++) {
        pieces[n] = words[i]; types[n] = 1; scores[n++] = -(float)(i % 7);
    }
    gguf_writer *w = gguf_writer_new(0);
    doze_error e;
    gguf_writer_set_str(w, "tokenizer.ggml.model", "llama", &e);
    gguf_writer_set_arr(w, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, (uint64_t)n, pieces, &e);
    gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, (uint64_t)n, scores, &e);
    gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, (uint64_t)n, types, &e);
    gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1, &e);
    gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2, &e);
    if (with_bytes) gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0, &e);
    else gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", 0, &e);
    /* write to memory and parse back: the tokenizer reads a header */
    doze_byte_buffer m = {NULL, 0, 0};
    if (gguf_writer_write(w, doze_byte_buffer_write, &m, &e) != DOZE_OK) __builtin_trap();
    gguf_writer_free(w);
    gguf_header h;
    if (gguf_parse_header(m.data, m.len, &h, &e) != DOZE_OK) __builtin_trap();
    doze_tokenizer *t = NULL;
    if (tokenizer_from_gguf(&h, &t, &e) != DOZE_OK) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", e.message);
        __builtin_trap();
    }
    gguf_header_free(&h);
    free(m.data);
    return t;
}


int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    tok_spm = build(1);
    tok_bare = build(0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t mode = data[0];
    const doze_tokenizer *t = (mode & 2) ? tok_bare : tok_spm;
    int vocab = tokenizer_vocab_size(t);
    doze_error e;
    /* a heap copy of exactly the payload so ASan sees any over-read */
    size_t n = size - 1;
    char *text = malloc(n ? n : 1);
    if (!text) __builtin_trap();
    memcpy(text, data + 1, n);
    if (!(mode & 1)) {
        int need = 0;
        doze_status st = tokenizer_encode(t, text, n, mode & 4, NULL, 0, &need, &e);
        if (st == DOZE_OK) {
            int cap = (mode & 8) ? need / 2 : need; /* short buffers too */
            int32_t *ids = malloc((size_t)(cap > 0 ? cap : 1) * sizeof *ids);
            int got = 0;
            st = tokenizer_encode(t, text, n, mode & 4, ids, cap, &got, &e);
            if (st != DOZE_OK || got != need) __builtin_trap();
            for (int i = 0; i < cap && i < got; i++) {
                if (ids[i] < 0 || ids[i] >= vocab) __builtin_trap();
                char piece[DOZE_MAX_PIECE];
                size_t len;
                if (tokenizer_decode(t, i ? ids[i - 1] : -1, ids[i], piece, sizeof piece, &len, &e) !=
                        DOZE_OK ||
                    len > DOZE_MAX_PIECE)
                    __builtin_trap();
            }
            free(ids);
        } else if (st != DOZE_ERR_BAD_UTF8 && st != DOZE_ERR_MISSING) {
            __builtin_trap();
        } else if (!e.message[0]) {
            __builtin_trap();
        }
    } else {
        int prev = -1;
        for (size_t i = 0; i + 1 < n; i += 2) {
            int16_t id;
            memcpy(&id, text + i, 2);
            char piece[DOZE_MAX_PIECE];
            size_t cap = (size_t)(mode >> 4) * 16; /* 0..240: short buffers too */
            size_t len;
            doze_status st = tokenizer_decode(t, prev, id, piece, cap, &len, &e);
            int in = id >= 0 && id < vocab;
            if (in != (st == DOZE_OK)) {
                if (!(st == DOZE_ERR_TOKEN_RANGE && in)) __builtin_trap(); /* prev out of range is fine */
            }
            if (st == DOZE_OK) {
                if (len > DOZE_MAX_PIECE) __builtin_trap();
                prev = id;
            } else {
                prev = (int)(id % 5) - 2; /* sometimes an invalid prev */
            }
        }
    }
    free(text);
    return 0;
}
