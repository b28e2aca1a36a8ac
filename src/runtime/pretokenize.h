/* The pre-tokenizers of byte-level BPE: the regex splits llama.cpp applies
 * before BPE, chosen by tokenizer.ggml.pre, written as hand-made matchers
 * (no regex library). A pre-tokenizer is a list of stages; each stage splits
 * every piece the previous one produced. */
#ifndef DOZE_PRETOKENIZE_H
#define DOZE_PRETOKENIZE_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    PRETOK_DEFAULT = 0, /* key absent or "default" */
    PRETOK_GPT2,        /* gpt-2, mpt, phi-2, olmo */
    PRETOK_LLAMA3,      /* llama-bpe, llama3, llama-v3, dbrx, smaug-bpe */
    PRETOK_QWEN2,       /* qwen2, deepseek-r1-qwen, stablelm2 */
    PRETOK_DEEPSEEK_LLM,
    PRETOK_DEEPSEEK_CODER,
    PRETOK_FALCON,
    PRETOK_STARCODER /* starcoder, refact, smollm, codeshell, command-r */
} pretok_type;

typedef struct {
    pretok_type type;
    int ignore_merges; /* a word that is a whole token is taken as it is */
    int add_bos;       /* llama.cpp's default for tokenizer.ggml.add_bos_token */
} pretok_info;

/* The pre-tokenizer named name[0..len); 0 on success, -1 when unknown. */
int pretok_lookup(const char *name, size_t len, pretok_info *out);

/* Splits the code points cps[0..n) into words: writes each word's end
 * (exclusive index) in order into ends (room for n) and returns the count.
 * flags (n) receives unicode_flags of each code point; tmp (n) is scratch. */
size_t pretokenize(pretok_type type, const uint32_t *cps, size_t n, uint16_t *flags,
                   uint32_t *ends, uint32_t *tmp);

#endif
