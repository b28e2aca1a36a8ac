/* Chat templates in C: family detection as llama.cpp's llm_chat_detect_template
 * decides it, the renderings of llama.cpp's llm_chat_apply_template for a
 * fixed conversation (the one llama.cpp's test-chat-template uses), the
 * model's metadata strings, and `doze chat` driven through a pipe on the
 * default model given a ChatML template. */
#include <stdint.h>

#include "chat_template.h"
#include "gguf.h"
#include "test_util.h"

static const chat_message conversation[] = {
    {"system", "You are a helpful assistant"},
    {"user", "Hello"},
    {"assistant", "Hi there"},
    {"user", "Who are you"},
    {"assistant", "   I am an assistant   "},
    {"user", "Another question"},
};
#define N_CONV (sizeof conversation / sizeof conversation[0])

/* Templates as published (tokenizer_config.json), shortened where the rest
 * does not change the family. */
static const char qwen25[] =
    "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- messages[0]['content'] }}\n    {%- else %}\n        {{- 'You are Qwen, created by Alibaba "
    "Cloud. You are a helpful assistant.' }}\n    {%- endif %}\n{%- endif %}\n{%- for message in messages %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n";
static const char llama3[] =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{% endif %}";
static const char llama2_sys[] =
    "{% if messages[0]['role'] == 'system' %}{% set system_message = '<<SYS>>\\n' + messages[0]['content'] "
    "+ '\\n<</SYS>>\\n\\n' %}{% endif %}{% for message in loop_messages %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + content + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ content + "
    "'</s>' }}{% endif %}{% endfor %}";
static const char llama2_strip[] =
    "{% for message in messages %}{% set content = message['content'] %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'system' %}"
    "{{ '<<SYS>>\\n' + content.strip() + '\\n<</SYS>>\\n\\n' }}{% endif %}{% endfor %}";
static const char gemma[] =
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'assistant') %}{% set role = "
    "'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\\n' + "
    "message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}"
    "{{'<start_of_turn>model\\n'}}{% endif %}";
static const char phi3[] =
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\\n' + "
    "message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\\n' + "
    "message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\\n' + "
    "message['content'] + '<|end|>\\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}";
static const char phi4[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '<|im_sep|>' + message['content'] + "
    "'<|im_end|>'}}{% endfor %}";
static const char mistral_v7[] =
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'system' %}{{ '[SYSTEM_PROMPT]' + "
    "message['content'] + '[/SYSTEM_PROMPT]' }}{% elif message['role'] == 'user' %}{{ '[INST]' + "
    "message['content'] + '[/INST]' }}{% endif %}{% endfor %}";

static void check_render(chat_family f, int add_gen, const char *want) {
    char *out = NULL;
    size_t len = 0;
    doze_error e;
    CHECK(chat_template_render(f, conversation, N_CONV, add_gen, &out, &len, &e) == DOZE_OK);
    CHECK_MSG(out && strcmp(out, want) == 0, "%s: got\n%s\nwant\n%s", chat_family_name(f), out ? out : "(null)",
              want);
    CHECK(out && len == strlen(want));
    free(out);
}

/* Every family's rendering with the contents' ranges: the same text as
 * without them, and each range holds its message's content (trimmed where
 * the family trims; Gemma's system text opens the next user turn). */
static void check_literal(chat_family f) {
    char *plain = NULL, *out = NULL;
    size_t *lit = NULL, n_lit = 0, len = 0;
    doze_error e;
    CHECK(chat_template_render(f, conversation, N_CONV, 1, &plain, NULL, &e) == DOZE_OK);
    CHECK(chat_template_render_literal(f, conversation, N_CONV, 1, &out, &len, &lit, &n_lit, &e) == DOZE_OK);
    CHECK(out && plain && strcmp(out, plain) == 0);
    CHECK_MSG(n_lit == N_CONV, "%s: %zu ranges for %zu messages", chat_family_name(f), n_lit, (size_t)N_CONV);
    for (size_t i = 0; out && i < n_lit; i++) {
        CHECK(lit[2 * i] < lit[2 * i + 1] && lit[2 * i + 1] <= len && (i == 0 || lit[2 * i] >= lit[2 * i - 1]));
        /* the range's text is one message's content, trimmed */
        int found = 0;
        for (size_t k = 0; k < N_CONV; k++) {
            const char *c = conversation[k].content;
            size_t a = 0, z = strlen(c);
            while (a < z && strchr(" \t\n", c[a])) a++;
            while (z > a && strchr(" \t\n", c[z - 1])) z--;
            size_t n = lit[2 * i + 1] - lit[2 * i];
            found |= (n == strlen(c) && memcmp(out + lit[2 * i], c, n) == 0) ||
                     (n == z - a && memcmp(out + lit[2 * i], c + a, n) == 0);
        }
        CHECK_MSG(found, "%s: range %zu is \"%.*s\"", chat_family_name(f), i, (int)(lit[2 * i + 1] - lit[2 * i]),
                  out + lit[2 * i]);
    }
    free(plain);
    free(out);
    free(lit);
    out = NULL;
    CHECK(chat_template_render_literal(f, conversation, N_CONV, 1, &out, &len, &lit, NULL, &e) ==
              DOZE_ERR_INVALID_ARGUMENT &&
          out == NULL);
}

static void test_detect(void) {
    const char *what = "x";
    CHECK(chat_template_detect(qwen25, &what) == CHAT_CHATML && what == NULL);
    CHECK(chat_template_detect(llama3, NULL) == CHAT_LLAMA3);
    CHECK(chat_template_detect(llama2_sys, NULL) == CHAT_LLAMA2_SYS);
    CHECK(chat_template_detect(llama2_strip, NULL) == CHAT_LLAMA2_SYS_STRIP);
    CHECK(chat_template_detect("{{ bos_token + '[INST] ' + m }}<<SYS>>", NULL) == CHAT_LLAMA2_SYS_BOS);
    CHECK(chat_template_detect("{{ '[INST] ' + m + ' [/INST]' }}", NULL) == CHAT_LLAMA2);
    CHECK(chat_template_detect(gemma, NULL) == CHAT_GEMMA);
    CHECK(chat_template_detect(phi3, NULL) == CHAT_PHI3);
    /* families llama.cpp knows and Doze does not render are named, not mistaken */
    CHECK(chat_template_detect(phi4, &what) == CHAT_UNKNOWN && what && strcmp(what, "Phi-4") == 0);
    CHECK(chat_template_detect(mistral_v7, &what) == CHAT_UNKNOWN && what && strcmp(what, "Mistral v7") == 0);
    CHECK(chat_template_detect("{{ messages }}", &what) == CHAT_UNKNOWN && what == NULL);
    /* llama.cpp's names of families not rendered here are refused by name, not
     * taken for their prefix ("mistral-v3" is not the "mistral" text test) */
    CHECK(chat_template_detect("mistral-v3", &what) == CHAT_UNKNOWN && what && strcmp(what, "Mistral v3") == 0);
    CHECK(chat_template_detect("mistral-v7-tekken", &what) == CHAT_UNKNOWN && what &&
          strcmp(what, "Mistral v7 Tekken") == 0);
    CHECK(chat_template_detect("deepseek3", &what) == CHAT_UNKNOWN && what && strcmp(what, "DeepSeek 3 / R1") == 0);
    const char *r1 = "{% for message in messages %}{% if message['role'] == 'user' %}{{'<\xef\xbd\x9c" "User"
                     "\xef\xbd\x9c>' + message['content']}}{% endif %}{% endfor %}{% if add_generation_prompt %}"
                     "{{'<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>'}}{% endif %}";
    CHECK(chat_template_detect(r1, &what) == CHAT_UNKNOWN && what && strcmp(what, "DeepSeek 3 / R1") == 0);
    CHECK(chat_template_detect("", &what) == CHAT_UNKNOWN && chat_template_detect(NULL, &what) == CHAT_UNKNOWN);
    /* llama.cpp's names stand for themselves */
    CHECK(chat_template_detect("chatml", NULL) == CHAT_CHATML);
    CHECK(chat_template_detect("llama2-sys-bos", NULL) == CHAT_LLAMA2_SYS_BOS);
    CHECK(chat_template_detect("phi3", NULL) == CHAT_PHI3);
    /* llama.cpp's order: ChatML markers win over Llama 3's */
    CHECK(chat_template_detect("<|start_header_id|><|end_header_id|><|im_start|>", NULL) == CHAT_CHATML);
    CHECK(strcmp(chat_family_end_of_turn(CHAT_LLAMA3), "<|eot_id|>") == 0);
    CHECK(strcmp(chat_family_end_of_turn(CHAT_GEMMA), "<end_of_turn>") == 0);
    CHECK(strcmp(chat_family_end_of_turn(CHAT_UNKNOWN), "") == 0);
}

static void test_render(void) {
    check_render(CHAT_CHATML, 1,
                 "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
                 "<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n"
                 "<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother "
                 "question<|im_end|>\n<|im_start|>assistant\n");
    check_render(CHAT_CHATML, 0,
                 "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
                 "<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n"
                 "<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother "
                 "question<|im_end|>\n");
    check_render(CHAT_LLAMA3, 1,
                 "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|>"
                 "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant"
                 "<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWho are "
                 "you<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nI am an assistant<|eot_id|>"
                 "<|start_header_id|>user<|end_header_id|>\n\nAnother question<|eot_id|><|start_header_id|>"
                 "assistant<|end_header_id|>\n\n");
    check_render(CHAT_LLAMA2, 1,
                 "[INST] You are a helpful assistant\nHello [/INST]Hi there</s>[INST] Who are you [/INST]   I am "
                 "an assistant   </s>[INST] Another question [/INST]");
    check_render(CHAT_LLAMA2_SYS, 1,
                 "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s>[INST] Who "
                 "are you [/INST]   I am an assistant   </s>[INST] Another question [/INST]");
    check_render(CHAT_LLAMA2_SYS_BOS, 0,
                 "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s><s>[INST] "
                 "Who are you [/INST]   I am an assistant   </s><s>[INST] Another question [/INST]");
    check_render(CHAT_LLAMA2_SYS_STRIP, 1,
                 "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s>[INST] Who "
                 "are you [/INST]I am an assistant</s>[INST] Another question [/INST]");
    check_render(CHAT_GEMMA, 1,
                 "<start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n<start_of_turn>model\n"
                 "Hi there<end_of_turn>\n<start_of_turn>user\nWho are you<end_of_turn>\n<start_of_turn>model\n"
                 "I am an assistant<end_of_turn>\n<start_of_turn>user\nAnother question<end_of_turn>\n"
                 "<start_of_turn>model\n");
    check_render(CHAT_PHI3, 1,
                 "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\nHi "
                 "there<|end|>\n<|user|>\nWho are you<|end|>\n<|assistant|>\n   I am an assistant   <|end|>\n"
                 "<|user|>\nAnother question<|end|>\n<|assistant|>\n");

    /* no messages: only the generation prompt */
    char *out = NULL;
    doze_error e;
    CHECK(chat_template_render(CHAT_LLAMA3, NULL, 0, 1, &out, NULL, &e) == DOZE_OK);
    CHECK(out && strcmp(out, "<|start_header_id|>assistant<|end_header_id|>\n\n") == 0);
    free(out);
    /* errors: unknown family, a message without content, templates not known */
    out = (char *)1;
    CHECK(chat_template_render(CHAT_UNKNOWN, conversation, N_CONV, 1, &out, NULL, &e) == DOZE_ERR_INVALID_ARGUMENT);
    CHECK(out == NULL);
    chat_message bad[] = {{"user", NULL}};
    CHECK(chat_template_render(CHAT_CHATML, bad, 1, 1, &out, NULL, &e) == DOZE_ERR_INVALID_ARGUMENT && !out);
    CHECK(strstr(e.message, "content") != NULL);
    CHECK(chat_template_apply(phi4, conversation, N_CONV, 1, &out, NULL, &e) == DOZE_ERR_UNSUPPORTED_TYPE && !out);
    CHECK_MSG(strstr(e.message, "Phi-4") != NULL, "%s", e.message);
    CHECK(chat_template_apply("{{ messages }}", conversation, N_CONV, 1, &out, NULL, &e) ==
          DOZE_ERR_UNSUPPORTED_TYPE);
    CHECK_MSG(strstr(e.message, "unknown chat template") && strstr(e.message, "{{ messages }}"), "%s", e.message);
    CHECK(chat_template_apply(NULL, conversation, N_CONV, 1, &out, NULL, &e) == DOZE_ERR_MISSING);
    CHECK(chat_template_apply(qwen25, conversation, 2, 1, &out, NULL, &e) == DOZE_OK);
    CHECK(out && strcmp(out, "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\n"
                             "Hello<|im_end|>\n<|im_start|>assistant\n") == 0);
    free(out);
}

/* ---- the model's metadata and `doze chat` ---------------------------------- */

static int write_file_fn(void *ctx, const void *p, size_t n) { return fwrite(p, 1, n, (FILE *)ctx) != n; }

/* Writes a copy of the model file `src` with tokenizer.chat_template set to
 * tmpl (or removed when tmpl is NULL); 0 on success. */
static int copy_with_template(const unsigned char *src, size_t n, const char *tmpl, const char *path) {
    gguf_header h;
    doze_error e;
    if (gguf_parse_header(src, n, &h, &e) != DOZE_OK) return -1;
    gguf_writer *w = gguf_writer_new(h.alignment);
    int rc = -1;
    FILE *f = NULL;
    if (!w) goto out;
    for (uint64_t i = 0; i < h.n_kv; i++) {
        if (strcmp(h.kv[i].key.data, "tokenizer.chat_template") == 0) continue;
        if (gguf_writer_set(w, h.kv[i].key.data, &h.kv[i].value, &e) != DOZE_OK) goto out;
    }
    if (tmpl && gguf_writer_set_str(w, "tokenizer.chat_template", tmpl, &e) != DOZE_OK) goto out;
    for (uint64_t i = 0; i < h.n_tensors; i++) {
        const gguf_tensor *t = &h.tensors[i];
        if (gguf_writer_add_tensor(w, t->name.data, t->type, t->n_dims, t->ne, src + h.data_offset + t->offset,
                                   &e) != DOZE_OK)
            goto out;
    }
    f = fopen(path, "wb");
    if (!f || gguf_writer_write(w, write_file_fn, f, &e) != DOZE_OK) goto out;
    rc = 0;
out:
    if (f && fclose(f) != 0) rc = -1;
    gguf_writer_free(w);
    gguf_header_free(&h);
    return rc;
}

static char *slurp(const char *path) {
    size_t n = 0;
    unsigned char *b = test_read_file(path, &n);
    if (!b) return NULL;
    char *s = realloc(b, n + 1);
    if (!s) {
        free(b);
        return NULL;
    }
    s[n] = '\0';
    return s;
}

static int count(const char *s, const char *needle) {
    int k = 0;
    for (const char *p = s; (p = strstr(p, needle)) != NULL; p += strlen(needle)) k++;
    return k;
}

static void test_cli(void) {
    const char *model = DOZE_SOURCE_DIR "/models/doze-stories.gguf";
    size_t n = 0;
    unsigned char *bytes = test_read_file(model, &n);
    CHECK_MSG(bytes != NULL, "cannot read %s", model);
    if (!bytes) return;
    char chatml[512], mistral[512], none[512], cmd[2048];
    snprintf(chatml, sizeof chatml, "%s/chat-chatml.gguf", DOZE_BUILD_DIR);
    snprintf(mistral, sizeof mistral, "%s/chat-mistral.gguf", DOZE_BUILD_DIR);
    snprintf(none, sizeof none, "%s/chat-none.gguf", DOZE_BUILD_DIR);
    CHECK(copy_with_template(bytes, n, qwen25, chatml) == 0);
    CHECK(copy_with_template(bytes, n, mistral_v7, mistral) == 0);
    CHECK(copy_with_template(bytes, n, NULL, none) == 0);

    /* the template survives the load, other strings too */
    size_t cn = 0;
    unsigned char *cb = test_read_file(chatml, &cn);
    doze_model *m = NULL;
    doze_error e;
    doze_model_params mp = doze_model_default_params();
    mp.context_length = 16;
    CHECK(cb && doze_model_load_memory(cb, cn, &mp, &m, &e) == DOZE_OK);
    if (m) {
        const char *t = doze_model_meta_string(m, "tokenizer.chat_template");
        CHECK(t && strcmp(t, qwen25) == 0);
        const char *arch = doze_model_meta_string(m, "general.architecture");
        CHECK(arch && strcmp(arch, "llama") == 0);
        CHECK(doze_model_meta_string(m, "llama.block_count") == NULL); /* not a string */
        CHECK(doze_model_meta_string(m, "no.such.key") == NULL);
        CHECK(doze_model_meta_string(m, NULL) == NULL);
        doze_model_free(m);
    }
    free(cb);

    /* two turns through a pipe; the line after /exit is never answered */
    char out[600], err[600];
    snprintf(out, sizeof out, "%s/chat-out.txt", DOZE_BUILD_DIR);
    snprintf(err, sizeof err, "%s/chat-err.txt", DOZE_BUILD_DIR);
    snprintf(cmd, sizeof cmd,
             "printf 'Tell me a story about a dog.\\n\\nWhat did the dog do next?\\n/exit\\nnever read\\n' | "
             "%s chat %s --system 'You tell short stories.' --steps 24 --temp 0 > %s 2> %s",
             DOZE_CLI, chatml, out, err);
    CHECK_MSG(system(cmd) == 0, "%s", cmd);
    char *o = slurp(out), *es = slurp(err);
    CHECK(o && es);
    if (o && es) {
        CHECK_MSG(count(es, "reply ") == 2, "stderr:\n%s", es);
        CHECK_MSG(strstr(es, "chat template chatml") != NULL, "stderr:\n%s", es);
        /* the second turn runs only its new tokens: the first turn's are cached */
        const char *second = strstr(es, "reply ");
        second = second ? strstr(second + 1, "prompt ") : NULL;
        int total = 0, cached = 0;
        CHECK_MSG(second && sscanf(second, "prompt %d tokens (%d from the cache)", &total, &cached) == 2 &&
                      cached > 24 && cached < total,
                  "stderr:\n%s", es);
        /* two replies, one line each at least, with text in them */
        CHECK_MSG(count(o, "\n") >= 2 && strlen(o) > 20, "stdout:\n%s", o);
    }
    /* greedy is deterministic: the same conversation gives the same replies */
    char *o1 = o;
    CHECK(system(cmd) == 0);
    o = slurp(out);
    CHECK(o && o1 && strcmp(o, o1) == 0);
    free(o);
    free(o1);
    free(es);

    /* end of input without /exit also ends the chat */
    snprintf(cmd, sizeof cmd, "printf 'Hello' | %s chat %s --steps 4 --temp 0 > %s 2> %s", DOZE_CLI, chatml, out,
             err);
    CHECK(system(cmd) == 0);
    es = slurp(err);
    CHECK(es && count(es, "reply ") == 1);
    free(es);

    /* Sampled hot (temperature 1.5, no top-k/top-p), replies cut by --steps
     * hold what greedy ones never do: a character cut in the middle (its
     * first bytes only) and token sequences the tokenizer would not make.
     * The reply is re-rendered into the next turn's prompt: the partial
     * character made the tokenizer refuse it (BAD_UTF8, the chat ended), and
     * a reply that re-tokenizes differently threw the whole KV cache away
     * (0 from the cache) where the turns before it are still a common prefix.
     * Every seed: two turns, the second keeping at least the first prompt. */
    for (int seed = 1; seed <= 8; seed++) {
        snprintf(cmd, sizeof cmd,
                 "printf 'Tell me a story.\\nMore.\\n' | %s chat %s --steps 12 --temp 1.5 --top-k 0 --top-p 1 "
                 "--seed %d > %s 2> %s",
                 DOZE_CLI, chatml, seed, out, err);
        int status = system(cmd);
        es = slurp(err);
        CHECK_MSG(status == 0 && es && count(es, "reply ") == 2, "seed %d: stderr:\n%s", seed, es ? es : "");
        const char *p1 = es ? strstr(es, "doze: prompt ") : NULL;
        const char *p2 = p1 ? strstr(p1 + 1, "doze: prompt ") : NULL;
        int n1 = 0, k1 = 0, n2 = 0, k2 = 0;
        CHECK_MSG(p1 && p2 && sscanf(p1, "doze: prompt %d tokens (%d from", &n1, &k1) == 2 &&
                      sscanf(p2, "doze: prompt %d tokens (%d from", &n2, &k2) == 2 && k2 >= n1 && k2 < n2,
                  "seed %d: the second turn should keep the first prompt's %d tokens; stderr:\n%s", seed, n1,
                  es ? es : "");
        free(es);
    }

    /* a template Doze does not render natively is named; no template is said */
    snprintf(cmd, sizeof cmd, "printf 'Hello\\n' | %s chat %s > %s 2> %s", DOZE_CLI, mistral, out, err);
    CHECK(system(cmd) != 0);
    es = slurp(err);
    CHECK_MSG(es && strstr(es, "Mistral v7"), "stderr:\n%s", es ? es : "");
    free(es);
    snprintf(cmd, sizeof cmd, "printf 'Hello\\n' | %s chat %s > %s 2> %s", DOZE_CLI, none, out, err);
    CHECK(system(cmd) != 0);
    es = slurp(err);
    CHECK_MSG(es && strstr(es, "no chat template") && strstr(es, "--template"), "stderr:\n%s", es ? es : "");
    free(es);
    /* ... and --template gives one */
    snprintf(cmd, sizeof cmd, "printf 'Hello\\n' | %s chat %s --template llama3 --steps 4 > %s 2> %s", DOZE_CLI,
             none, out, err);
    CHECK(system(cmd) == 0);
    es = slurp(err);
    CHECK(es && strstr(es, "chat template llama3") && count(es, "reply ") == 1);
    free(es);
    remove(chatml);
    remove(mistral);
    remove(none);
    free(bytes);
}

int main(void) {
    test_detect();
    test_render();
    for (int f = CHAT_UNKNOWN + 1; f < CHAT_FAMILY_COUNT_; f++) check_literal((chat_family)f);
    test_cli();
    return test_finish("test_chat");
}
