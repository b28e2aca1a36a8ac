/* Chat templates without a Jinja engine: the common families are recognized
 * from the template text (tokenizer.chat_template) by the same substring
 * tests llama.cpp's llm_chat_detect_template uses, and rendered by hand the
 * way llama.cpp's llm_chat_apply_template renders them. A template of any
 * other family is refused with an error naming what it looks like; the JS
 * package renders arbitrary templates with @huggingface/jinja instead.
 *
 * Families and what one turn looks like:
 *   chatml  <|im_start|>ROLE\nCONTENT<|im_end|>\n          (Qwen, SmolLM, ...)
 *   llama3  <|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT<|eot_id|>
 *   llama2  [INST] <<SYS>>\nSYS\n<</SYS>>\n\nUSER [/INST]ASSISTANT</s>
 *           (four variants: <<SYS>> or not, BOS inside the history, stripped)
 *   gemma   <start_of_turn>user\nCONTENT<end_of_turn>\n    (system merged into
 *           the next user turn; "assistant" is "model")
 *   phi3    <|ROLE|>\nCONTENT<|end|>\n
 */
#ifndef DOZE_CHAT_TEMPLATE_H
#define DOZE_CHAT_TEMPLATE_H

#include <stddef.h>

#include "doze.h"

typedef enum {
    CHAT_UNKNOWN = 0,
    CHAT_CHATML,
    CHAT_LLAMA3,
    CHAT_LLAMA2,          /* no system support: a system message is prefixed to the next turn */
    CHAT_LLAMA2_SYS,      /* <<SYS>> ... <</SYS>> */
    CHAT_LLAMA2_SYS_BOS,  /* ... and "<s>[INST] " opens every later turn */
    CHAT_LLAMA2_SYS_STRIP, /* ... and contents are stripped of surrounding whitespace */
    CHAT_GEMMA,
    CHAT_PHI3,
    CHAT_FAMILY_COUNT_
} chat_family;

typedef struct {
    const char *role;    /* "system", "user", "assistant" (others are rendered as given) */
    const char *content; /* UTF-8, NUL-terminated */
} chat_message;

/* The family of a template text (NULL or empty: CHAT_UNKNOWN). When the
 * result is CHAT_UNKNOWN and `what` is not NULL, *what names what the text
 * looks like for an error message (e.g. "Mistral [INST]", "Phi-4"), or
 * NULL when nothing is recognized at all. */
chat_family chat_template_detect(const char *tmpl, const char **what);
/* Stable short name: "chatml", "llama3", "llama2", "llama2-sys", ... */
const char *chat_family_name(chat_family f);
/* The text that ends an assistant turn in this family ("<|im_end|>",
 * "<|eot_id|>", "</s>", "<end_of_turn>", "<|end|>"); "" for CHAT_UNKNOWN.
 * Generation stops there even when the vocabulary has no such token. */
const char *chat_family_end_of_turn(chat_family f);

/* Renders the messages as llama.cpp does for family f; with
 * add_generation_prompt, the opening of the assistant's turn follows
 * (llama2 ends a user turn with "[/INST]" and adds nothing). *out is a
 * malloc'd NUL-terminated string the caller frees, *out_len its length.
 * INVALID_ARGUMENT for CHAT_UNKNOWN or a message without role/content. */
doze_status chat_template_render(chat_family f, const chat_message *msgs, size_t n,
                                 int add_generation_prompt, char **out, size_t *out_len,
                                 doze_error *err);

/* chat_template_render, and where each message's content sits in *out:
 * *literal (malloc'd, the caller frees) gets *n_literal [start, end) byte
 * pairs, for doze_tokenize_literal (control tokens a user typed stay text). */
doze_status chat_template_render_literal(chat_family f, const chat_message *msgs, size_t n,
                                         int add_generation_prompt, char **out, size_t *out_len,
                                         size_t **literal, size_t *n_literal, doze_error *err);

/* chat_template_detect + chat_template_render; an unknown template is
 * UNSUPPORTED_TYPE with a message naming what it looks like. */
doze_status chat_template_apply(const char *tmpl, const chat_message *msgs, size_t n,
                                int add_generation_prompt, char **out, size_t *out_len,
                                doze_error *err);

#endif
