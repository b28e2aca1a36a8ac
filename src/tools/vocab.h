/* Tokenizer training: a SentencePiece-style BPE vocabulary with
 * byte fallback, in the form the runtime's tokenizer (tokenizer.c) reads,
 * and the story splitting shared by `doze vocab` and `doze train`. */
#ifndef DOZE_VOCAB_H
#define DOZE_VOCAB_H

#include <stddef.h>
#include <stdint.h>

#include "doze.h"
#include "gguf.h"

/* A trained vocabulary: <unk>, <s>, </s>, the 256 <0xNN> byte tokens, the
 * character pieces (U+2581 and frequent multi-byte characters), then the
 * merges in the order they were learned (score -k for the k-th merge, so
 * the runtime's highest-score-first merging replays them). */
typedef struct {
    int n;
    char **pieces;   /* UTF-8, U+2581 for spaces */
    float *scores;
    int32_t *types;  /* DOZE_TOKEN_* */
    int n_chars;     /* character pieces */
    int n_merges;    /* merged pieces */
    long long words; /* distinct pre-tokenized words the merges were counted over */
} vocab_spec;

/* Trains a vocabulary of (at most) `size` pieces on the stories of text
 * (text_for_each_story). Stops early (n < size) when no pair occurs twice. */
doze_status vocab_train(const char *text, size_t len, int size, vocab_spec *out, doze_error *err);
void vocab_spec_free(vocab_spec *v);

/* The vocabulary as a vocab-only GGUF (no tensors): general.architecture
 * "llama", general.name, the tokenizer.ggml.* keys. */
doze_status vocab_write(const vocab_spec *v, gguf_write_fn fn, void *ctx, doze_error *err);

/* Copies the tokenizer.* keys of h into w (a vocabulary into a model). */
doze_status vocab_copy_kvs(gguf_writer *w, const gguf_header *h, doze_error *err);

/* Calls fn for each story of text: the text is split at lines
 * "<|endoftext|>" and each part is stripped of the line breaks around it;
 * empty parts are skipped (the protocol of `doze ppl`). A text without
 * separators is one story. Stops when fn returns nonzero and returns that. */
typedef int (*story_fn)(void *ctx, const char *story, size_t n);
int text_for_each_story(const char *text, size_t len, story_fn fn, void *ctx);

#endif
