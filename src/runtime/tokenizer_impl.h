/* The tokenizer's insides, shared by the files that implement it
 * (tokenizer.c: vocabulary, special tokens, SentencePiece; tokenizer_bpe.c:
 * byte-level BPE). Not part of any public interface. */
#ifndef DOZE_TOKENIZER_IMPL_H
#define DOZE_TOKENIZER_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "pretokenize.h"
#include "tokenizer.h"

/* token attributes, as llama.cpp derives them from the GGUF token types
 * (and from a few token texts: end-of-generation tokens become control) */
enum {
    TOK_ATTR_UNKNOWN = 1 << 0,
    TOK_ATTR_UNUSED = 1 << 1,
    TOK_ATTR_NORMAL = 1 << 2,
    TOK_ATTR_CONTROL = 1 << 3,
    TOK_ATTR_USER_DEFINED = 1 << 4,
    TOK_ATTR_BYTE = 1 << 5,
    TOK_ATTR_LSTRIP = 1 << 7,
    TOK_ATTR_RSTRIP = 1 << 8
};

enum { TOK_KIND_SPM = 0, TOK_KIND_BPE = 1 };

struct doze_tokenizer {
    int kind; /* TOK_KIND_* */
    int n_vocab;
    char *text;          /* every piece, each NUL-terminated */
    size_t *offset;      /* (n_vocab) start of each piece in text */
    uint32_t *len;       /* (n_vocab) bytes of each piece */
    float *score;        /* (n_vocab) */
    int32_t *type;       /* (n_vocab) DOZE_TOKEN_* (other values decode as normal) */
    uint16_t *attr;      /* (n_vocab) TOK_ATTR_* */
    int16_t *byte_value; /* (n_vocab) byte of a <0xNN> byte token, else -1 */
    int32_t *table;      /* open-addressing hash: piece -> id, -1 = empty */
    uint32_t table_mask; /* table size - 1 (a power of two) */
    int32_t byte_token[256]; /* token for each byte in encoding, -1 if none */
    int bos, eos, unk, eot, eom; /* -1 when absent */
    int add_space_prefix;
    int add_bos, add_eos;
    uint8_t *eog;        /* (n_vocab) 1: the token ends generation */
    int32_t *special;    /* (n_special) ids matched in the text before BPE/SPM, longest first */
    int n_special;

    /* byte-level BPE */
    pretok_info pre;
    char *merge_text;      /* every merge "left right", each NUL-terminated */
    size_t *merge_offset;  /* (n_merges) */
    uint32_t *merge_len;   /* (n_merges) bytes */
    uint32_t *merge_split; /* (n_merges) bytes of the left part */
    int32_t *merge_table;  /* hash: (left, right) -> merge index (= rank), -1 = empty */
    uint32_t merge_mask;
    int n_merges;
    char byte_enc[256][3];     /* UTF-8 of the code point each byte maps to */
    uint8_t byte_enc_len[256]; /* 1 or 2 */
};

/* FNV-1a over bytes, continuing from h (start with 2166136261u) */
static inline uint32_t tok_hash(uint32_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

/* Id of the piece s[0..n), or -1 (tokenizer.c). */
int tok_lookup(const doze_tokenizer *t, const char *s, size_t n);

/* Output of encoding: writes up to cap ids, counts all. */
typedef struct {
    int32_t *out;
    int cap;
    int count;
} tok_emitter;

static inline void tok_emit(tok_emitter *e, int id) {
    if (e->count < e->cap) e->out[e->count] = id;
    e->count++;
}

/* ---- byte-level BPE (tokenizer_bpe.c) ---- */

/* Reads tokenizer.ggml.merges and tokenizer.ggml.pre into t (kind BPE). */
doze_status bpe_init(doze_tokenizer *t, const gguf_header *h, doze_error *err);
void bpe_free(doze_tokenizer *t);
/* Encodes one stretch of valid UTF-8 (no special tokens in it). */
doze_status bpe_encode_fragment(const doze_tokenizer *t, const char *text, size_t len,
                                tok_emitter *e, doze_error *err);
/* Bytes of a normal BPE piece (code points mapped back to bytes): writes up
 * to cap bytes, returns the full length. */
size_t bpe_decode_piece(const doze_tokenizer *t, const char *p, size_t n, char *buf, size_t cap);

#endif
