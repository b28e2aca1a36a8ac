/* Chat template families: detection from the template text and rendering,
 * as llama.cpp does them (see chat_template.h). */
#include "chat_template.h"

#include <stdlib.h>
#include <string.h>

#include "byte_buffer.h"
#include "error.h"

static int has(const char *t, const char *needle) { return strstr(t, needle) != NULL; }

/* The names llama.cpp accepts in place of a template text (its
 * llm_chat_template_from_str), for the families rendered here. */
static const char *const family_names[CHAT_FAMILY_COUNT_] = {
    [CHAT_UNKNOWN] = "unknown",
    [CHAT_CHATML] = "chatml",
    [CHAT_LLAMA3] = "llama3",
    [CHAT_LLAMA2] = "llama2",
    [CHAT_LLAMA2_SYS] = "llama2-sys",
    [CHAT_LLAMA2_SYS_BOS] = "llama2-sys-bos",
    [CHAT_LLAMA2_SYS_STRIP] = "llama2-sys-strip",
    [CHAT_GEMMA] = "gemma",
    [CHAT_PHI3] = "phi3",
};

const char *chat_family_name(chat_family f) {
    return (unsigned)f < CHAT_FAMILY_COUNT_ ? family_names[f] : "unknown";
}

const char *chat_family_end_of_turn(chat_family f) {
    switch (f) {
    case CHAT_CHATML: return "<|im_end|>";
    case CHAT_LLAMA3: return "<|eot_id|>";
    case CHAT_LLAMA2:
    case CHAT_LLAMA2_SYS:
    case CHAT_LLAMA2_SYS_BOS:
    case CHAT_LLAMA2_SYS_STRIP: return "</s>";
    case CHAT_GEMMA: return "<end_of_turn>";
    case CHAT_PHI3: return "<|end|>";
    default: return "";
    }
}

/* The tests run in llama.cpp's order: the first that matches decides, so a
 * family rendered here is only chosen where llama.cpp would choose it too
 * (e.g. a ChatML-looking Phi-4 template is Phi-4, not ChatML). */
chat_family chat_template_detect(const char *t, const char **what) {
    const char *w = NULL;
    chat_family f = CHAT_UNKNOWN;
    if (what) *what = NULL;
    if (!t || !*t) return CHAT_UNKNOWN;
    for (int i = 1; i < CHAT_FAMILY_COUNT_; i++)
        if (strcmp(t, family_names[i]) == 0) return (chat_family)i;
    /* llama.cpp's other family names, refused by name (a name is not a
     * template text: "mistral-v3" must not fall to the "mistral" prefix test) */
    static const char *const other_names[][2] = {
        {"mistral-v1", "Mistral v1"}, {"mistral-v3", "Mistral v3"}, {"mistral-v3-tekken", "Mistral v3 Tekken"},
        {"mistral-v7", "Mistral v7"}, {"mistral-v7-tekken", "Mistral v7 Tekken"}, {"phi4", "Phi-4"},
        {"falcon3", "Falcon 3"}, {"zephyr", "Zephyr"}, {"monarch", "Monarch"}, {"orion", "Orion"},
        {"openchat", "OpenChat"}, {"vicuna", "Vicuna"}, {"vicuna-orca", "Vicuna Orca"},
        {"deepseek", "DeepSeek Coder"}, {"deepseek2", "DeepSeek 2"}, {"deepseek3", "DeepSeek 3 / R1"},
        {"command-r", "Command-R"}, {"chatglm3", "ChatGLM 3"}, {"chatglm4", "ChatGLM 4"}, {"glmedge", "GLM-Edge"},
        {"granite", "Granite"}, {"llama4", "Llama 4"}, {"smolvlm", "SmolVLM"}};
    for (size_t i = 0; i < sizeof other_names / sizeof other_names[0]; i++)
        if (strcmp(t, other_names[i][0]) == 0) {
            if (what) *what = other_names[i][1];
            return CHAT_UNKNOWN;
        }
    if (has(t, "<|im_start|>")) {
        if (has(t, "<|im_sep|>")) w = "Phi-4";
        else if (has(t, "<end_of_utterance>")) w = "SmolVLM";
        else f = CHAT_CHATML;
    } else if (strncmp(t, "mistral", 7) == 0 || has(t, "[INST]")) {
        if (has(t, "[SYSTEM_PROMPT]")) w = "Mistral v7";
        else if (has(t, "' [INST] ' + system_message") || has(t, "[AVAILABLE_TOOLS]")) w = "Mistral v1/v3";
        else if (has(t, "content.strip()")) f = CHAT_LLAMA2_SYS_STRIP;
        else if (has(t, "bos_token + '[INST]")) f = CHAT_LLAMA2_SYS_BOS;
        else if (has(t, "<<SYS>>")) f = CHAT_LLAMA2_SYS;
        else f = CHAT_LLAMA2;
    } else if (has(t, "<|assistant|>") && has(t, "<|end|>")) {
        f = CHAT_PHI3;
    } else if (has(t, "[gMASK]<sop>")) {
        w = "ChatGLM 4";
    } else if (has(t, "<|assistant|>") && has(t, "<|user|>")) {
        w = has(t, "</s>") ? "Falcon 3" : "GLM-Edge";
    } else if (has(t, "<|{{ item['role'] }}|>") && has(t, "<|begin_of_image|>")) {
        w = "GLM-Edge";
    } else if (has(t, "<|user|>") && has(t, "<|endoftext|>")) {
        w = "Zephyr";
    } else if (has(t, "bos_token + message['role']")) {
        w = "Monarch";
    } else if (has(t, "<start_of_turn>")) {
        f = CHAT_GEMMA;
    } else if (has(t, "'\\n\\nAssistant: ' + eos_token")) {
        w = "Orion";
    } else if (has(t, "GPT4 Correct ")) {
        w = "OpenChat";
    } else if (has(t, "USER: ") && has(t, "ASSISTANT: ")) {
        w = "Vicuna";
    } else if (has(t, "### Instruction:") && has(t, "<|EOT|>")) {
        w = "DeepSeek Coder";
    } else if (has(t, "<|START_OF_TURN_TOKEN|>") && has(t, "<|USER_TOKEN|>")) {
        w = "Command-R";
    } else if (has(t, "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>") && has(t, "<\xef\xbd\x9c" "User\xef\xbd\x9c>")) {
        w = "DeepSeek 3 / R1"; /* <｜Assistant｜>, <｜User｜> (fullwidth bars) */
    } else if (has(t, "<|start_header_id|>") && has(t, "<|end_header_id|>")) {
        f = CHAT_LLAMA3;
    } else if (has(t, "<|header_start|>") && has(t, "<|header_end|>")) {
        w = "Llama 4";
    } else if (has(t, "<|start_of_role|>")) {
        w = "Granite";
    }
    if (f == CHAT_UNKNOWN && what) *what = w;
    return f;
}

/* ---- rendering ------------------------------------------------------------ */

typedef struct {
    doze_byte_buffer b;
    int failed;
    size_t *lit; /* (n_lit, 2) [start, end) of the messages' contents, when wanted */
    size_t n_lit, cap_lit;
    int want_lit;
} sbuf;

static void put_n(sbuf *s, const char *p, size_t n) {
    if (!s->failed && doze_byte_buffer_write(&s->b, p, n) != 0) s->failed = 1;
}
static void put(sbuf *s, const char *p) { put_n(s, p, strlen(p)); }

/* llama.cpp's trim: ASCII whitespace off both ends (bytes of multi-byte
 * UTF-8 characters are never whitespace) */
static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }
static void put_trimmed(sbuf *s, const char *p) {
    size_t a = 0, e = strlen(p);
    while (a < e && is_space(p[a])) a++;
    while (e > a && is_space(p[e - 1])) e--;
    put_n(s, p + a, e - a);
}

/* [start, the end so far) holds a message's content: text, not control tokens */
static void mark_content(sbuf *s, size_t start) {
    if (!s->want_lit || s->failed || s->b.len == start) return;
    if (s->n_lit == s->cap_lit) {
        size_t cap = s->cap_lit ? 2 * s->cap_lit : 8;
        size_t *p = realloc(s->lit, cap * 2 * sizeof *p);
        if (!p) {
            s->failed = 1;
            return;
        }
        s->lit = p;
        s->cap_lit = cap;
    }
    s->lit[2 * s->n_lit] = start;
    s->lit[2 * s->n_lit + 1] = s->b.len;
    s->n_lit++;
}

static void put_content(sbuf *s, const char *p, int trimmed) {
    size_t at = s->b.len;
    if (trimmed) put_trimmed(s, p);
    else put(s, p);
    mark_content(s, at);
}

static void render_llama2(sbuf *s, chat_family f, const chat_message *msgs, size_t n) {
    int sys = f != CHAT_LLAMA2, bos_inside = f == CHAT_LLAMA2_SYS_BOS, strip = f == CHAT_LLAMA2_SYS_STRIP;
    int inside_turn = 1; /* the first "[INST] " follows the BOS the tokenizer adds */
    put(s, "[INST] ");
    for (size_t i = 0; i < n; i++) {
        const char *role = msgs[i].role;
        if (!inside_turn) {
            inside_turn = 1;
            put(s, bos_inside ? "<s>[INST] " : "[INST] ");
        }
        if (strcmp(role, "system") == 0) {
            if (sys) put(s, "<<SYS>>\n");
            put_content(s, msgs[i].content, strip);
            put(s, sys ? "\n<</SYS>>\n\n" : "\n");
        } else if (strcmp(role, "user") == 0) {
            put_content(s, msgs[i].content, strip);
            put(s, " [/INST]");
        } else {
            put_content(s, msgs[i].content, strip);
            put(s, "</s>");
            inside_turn = 0;
        }
    }
}

static void render_gemma(sbuf *s, const chat_message *msgs, size_t n, int add_gen) {
    /* Gemma has no system turn: system messages (trimmed, concatenated) open
     * the next user turn */
    sbuf sys = {{NULL, 0, 0}, 0, NULL, 0, 0, 0};
    for (size_t i = 0; i < n; i++) {
        const char *role = msgs[i].role;
        if (strcmp(role, "system") == 0) {
            put_trimmed(&sys, msgs[i].content);
            continue;
        }
        int model = strcmp(role, "assistant") == 0;
        put(s, "<start_of_turn>");
        put(s, model ? "model" : role);
        put(s, "\n");
        if (sys.b.len && !model) {
            size_t at = s->b.len;
            put_n(s, (const char *)sys.b.data, sys.b.len);
            mark_content(s, at);
            put(s, "\n\n");
            sys.b.len = 0;
        }
        put_content(s, msgs[i].content, 1);
        put(s, "<end_of_turn>\n");
    }
    if (sys.failed) s->failed = 1;
    free(sys.b.data);
    if (add_gen) put(s, "<start_of_turn>model\n");
}

doze_status chat_template_render(chat_family f, const chat_message *msgs, size_t n,
                                 int add_generation_prompt, char **out, size_t *out_len,
                                 doze_error *err) {
    return chat_template_render_literal(f, msgs, n, add_generation_prompt, out, out_len, NULL, NULL, err);
}

doze_status chat_template_render_literal(chat_family f, const chat_message *msgs, size_t n,
                                         int add_generation_prompt, char **out, size_t *out_len,
                                         size_t **literal, size_t *n_literal, doze_error *err) {
    if (!out) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "chat template: no output pointer");
    *out = NULL;
    if (out_len) *out_len = 0;
    if (literal) *literal = NULL;
    if (n_literal) *n_literal = 0;
    if (!literal != !n_literal)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "chat template: literal ranges need both pointers");
    if (f <= CHAT_UNKNOWN || f >= CHAT_FAMILY_COUNT_)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "chat template: unknown family %d", (int)f);
    if (n && !msgs) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "chat template: no messages");
    for (size_t i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content)
            return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "chat template: message %zu has no %s", i,
                             msgs[i].role ? "content" : "role");
    sbuf s = {{NULL, 0, 0}, 0, NULL, 0, 0, literal != NULL};
    switch (f) {
    case CHAT_CHATML:
        for (size_t i = 0; i < n; i++) {
            put(&s, "<|im_start|>");
            put(&s, msgs[i].role);
            put(&s, "\n");
            put_content(&s, msgs[i].content, 0);
            put(&s, "<|im_end|>\n");
        }
        if (add_generation_prompt) put(&s, "<|im_start|>assistant\n");
        break;
    case CHAT_LLAMA3:
        for (size_t i = 0; i < n; i++) {
            put(&s, "<|start_header_id|>");
            put(&s, msgs[i].role);
            put(&s, "<|end_header_id|>\n\n");
            put_content(&s, msgs[i].content, 1);
            put(&s, "<|eot_id|>");
        }
        if (add_generation_prompt) put(&s, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case CHAT_LLAMA2:
    case CHAT_LLAMA2_SYS:
    case CHAT_LLAMA2_SYS_BOS:
    case CHAT_LLAMA2_SYS_STRIP:
        render_llama2(&s, f, msgs, n);
        break;
    case CHAT_GEMMA:
        render_gemma(&s, msgs, n, add_generation_prompt);
        break;
    case CHAT_PHI3:
        for (size_t i = 0; i < n; i++) {
            put(&s, "<|");
            put(&s, msgs[i].role);
            put(&s, "|>\n");
            put_content(&s, msgs[i].content, 0);
            put(&s, "<|end|>\n");
        }
        if (add_generation_prompt) put(&s, "<|assistant|>\n");
        break;
    default:
        break;
    }
    put_n(&s, "", 1); /* the terminator */
    if (s.failed) {
        free(s.b.data);
        free(s.lit);
        return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "chat template: out of memory rendering %zu messages", n);
    }
    *out = (char *)s.b.data;
    if (out_len) *out_len = s.b.len - 1;
    if (literal) {
        *literal = s.lit;
        *n_literal = s.n_lit;
    }
    return DOZE_OK;
}

doze_status chat_template_apply(const char *tmpl, const chat_message *msgs, size_t n,
                                int add_generation_prompt, char **out, size_t *out_len,
                                doze_error *err) {
    const char *what = NULL;
    chat_family f = chat_template_detect(tmpl, &what);
    if (f == CHAT_UNKNOWN) {
        if (out) *out = NULL;
        if (!tmpl || !*tmpl)
            return doze_fail(err, DOZE_ERR_MISSING, "no chat template (tokenizer.chat_template is absent or empty)");
        if (what)
            return doze_fail(err, DOZE_ERR_UNSUPPORTED_TYPE,
                             "the chat template looks like %s, which Doze does not render natively "
                             "(known: ChatML, Llama 3, Llama 2 [INST], Gemma, Phi-3)", what);
        return doze_fail(err, DOZE_ERR_UNSUPPORTED_TYPE,
                         "unknown chat template starting \"%.40s\" (known: ChatML, Llama 3, Llama 2 "
                         "[INST], Gemma, Phi-3)", tmpl);
    }
    return chat_template_render(f, msgs, n, add_generation_prompt, out, out_len, err);
}
