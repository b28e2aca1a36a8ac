/* Tokenizers as llama.cpp runs them: SentencePiece-style BPE (GGUF
 * tokenizer.ggml.model = "llama": merges by score, byte fallback through
 * <0xNN> tokens) and byte-level BPE ("gpt2": a pre-tokenizer split, bytes
 * mapped to code points, merges by rank), special tokens matched before
 * either, BOS/EOS, end-of-generation tokens, and decoding. Built from a GGUF
 * header's tokenizer.ggml.* keys; owns copies of everything it needs (the
 * header may be freed). */
#ifndef DOZE_TOKENIZER_H
#define DOZE_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "doze.h"
#include "gguf.h"

typedef struct doze_tokenizer doze_tokenizer;

/* GGUF token types (tokenizer.ggml.token_type) */
enum {
    DOZE_TOKEN_NORMAL = 1,
    DOZE_TOKEN_UNKNOWN = 2,
    DOZE_TOKEN_CONTROL = 3,
    DOZE_TOKEN_USER_DEFINED = 4,
    DOZE_TOKEN_UNUSED = 5,
    DOZE_TOKEN_BYTE = 6
};

/* Reads tokenizer.ggml.{model, tokens, scores, token_type, merges, pre,
 * bos/eos/eot/eom/unknown ids, add_bos_token, add_eos_token} (and
 * add_space_prefix when present). MISSING when there is no tokenizer;
 * BAD_FORMAT for mismatched arrays or out-of-range special ids;
 * UNSUPPORTED_TYPE for a model other than "llama" (SentencePiece) and
 * "gpt2" (byte-level BPE) or an unknown pre-tokenizer (named). */
doze_status tokenizer_from_gguf(const gguf_header *h, doze_tokenizer **out, doze_error *err);
void tokenizer_free(doze_tokenizer *t);

int tokenizer_vocab_size(const doze_tokenizer *t);
int tokenizer_bos(const doze_tokenizer *t); /* -1 if none */
int tokenizer_eos(const doze_tokenizer *t);
int tokenizer_unk(const doze_tokenizer *t);

/* Encodes len bytes of UTF-8 (BAD_UTF8 if invalid) as llama.cpp does.
 * flags: DOZE_TOKENIZE_ADD_SPECIAL adds BOS / EOS where the vocabulary says
 * (add_bos_token, add_eos_token; SentencePiece adds BOS by default);
 * DOZE_TOKENIZE_PARSE_SPECIAL matches control tokens written in the text
 * (user-defined tokens always match, as in llama.cpp). SentencePiece: a
 * dummy leading space (U+2581) at the start and after a special token,
 * spaces become U+2581. Byte-level BPE: the pre-tokenizer's split, then
 * merges by rank. Writes min(cap, count) ids into out and the full count
 * into *n_out. */
doze_status tokenizer_encode(const doze_tokenizer *t, const char *text, size_t len, int flags,
                             int32_t *out, int cap, int *n_out, doze_error *err);
/* tokenizer_encode where control tokens stay text inside the n_literal byte
 * ranges literal[2i] .. literal[2i + 1] (doze_tokenize_literal) */
doze_status tokenizer_encode_literal(const doze_tokenizer *t, const char *text, size_t len, int flags,
                                     const size_t *literal, int n_literal, int32_t *out, int cap, int *n_out,
                                     doze_error *err);

/* 1 if the token ends generation (EOS, EOT, EOM and llama.cpp's other
 * end-of-turn tokens such as <|im_end|>, <|eot_id|>, <end_of_turn>). */
int tokenizer_is_eog(const doze_tokenizer *t, int token);
int tokenizer_eot(const doze_tokenizer *t);
int tokenizer_add_bos(const doze_tokenizer *t);

/* Bytes of `token` as text, given the previous token `prev` (-1 if none):
 * U+2581 becomes a space; after BOS a leading space is dropped; <0xNN> byte
 * tokens give that byte; control tokens give nothing; byte-level BPE pieces
 * give the bytes their code points stand for. Writes up to cap bytes
 * to buf, *len gets the length. TOKEN_RANGE for an id out of the vocabulary. */
doze_status tokenizer_decode(const doze_tokenizer *t, int prev, int token, char *buf, size_t cap,
                             size_t *len, doze_error *err);

/* The raw piece of a token (as stored), for debugging and tests. */
const char *tokenizer_piece(const doze_tokenizer *t, int token);

#endif
