/* `doze chat MODEL`: an interactive conversation in the terminal. Each line
 * read from stdin is a user turn; the conversation so far is rendered with
 * the model's chat template (tokenizer.chat_template, recognized by family
 * in chat_template.c), the tokens already in the KV cache are kept when the
 * new rendering starts with them, and the reply is sampled and streamed to
 * stdout until an end-of-turn token, the family's end-of-turn text, or
 * --steps tokens. "/exit" or the end of stdin ends the conversation. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat_template.h"
#include "cli_util.h"
#include "commands.h"
#include "unicode.h"

/* The rendered prompt holds the template's control tokens (<|im_start|>,
 * <|eot_id|>, ...): it is tokenized with BOS/EOS added as the vocabulary
 * says and control tokens parsed, doze_tokenize's ADD_SPECIAL (1) |
 * PARSE_SPECIAL (2). A vocabulary without those tokens reads them as text. */
#define CHAT_TOKENIZE_FLAGS 3

static const char *const chat_forms[] = {"MODEL", NULL};
static const cli_option chat_options[] = {
    {"--system", CLI_STRING, "TEXT", "a system message opening the conversation", NULL, 0},
    {"--template", CLI_STRING, "NAME|TEXT", "a family (chatml, llama3, llama2, llama2-sys, gemma, phi3) or a\n"
                                            "template text, for a model whose file has none", NULL, 0},
    {"--steps", CLI_INT, "N", "most tokens per reply (default 256)", NULL, 0},
    {"--ctx", CLI_INT, "N", "context length (default: the model's own)", NULL, 0},
    {"--temp", CLI_FLOAT, "T", "temperature (default 0.8; 0: greedy)", NULL, 0},
    {"--top-p", CLI_FLOAT, "P", "nucleus sampling (default 0.95)", NULL, 0},
    {"--top-k", CLI_INT, "K", "sample among the K most likely tokens (default 40)", NULL, 0},
    CLI_PENALTY_OPTIONS,
    {"--seed", CLI_SEED, "S", "sampling seed (default 42)", NULL, 0},
    CLI_BUDGET_OPTION,
    CLI_GATE_OPTIONS,
    CLI_THREADS_OPTION,
    CLI_FFN_BLOCK_OPTION,
    CLI_OPTIONS_END,
};
const cli_command cmd_chat_spec = {
    "chat", chat_forms, 1, 1, "an interactive chat in the terminal",
    "Reads one user turn per line from stdin and streams each reply to stdout, the\n"
    "conversation rendered with the model's chat template (tokenizer.chat_template) and\n"
    "its KV cache kept between turns; /exit or end of input quits.",
    chat_options,
};

typedef struct {
    chat_message *msgs;
    char **owned; /* the strings msgs point to, freed with the conversation */
    size_t n, cap;
} conversation;

/* A copy of s[0..n) (malloc'd, NUL-terminated) with each invalid UTF-8
 * unit replaced by U+FFFD, as the JS package's TextDecoder gives a reply:
 * a reply cut by --steps inside a character, or sampled bytes that are no
 * character, must not make the next turn's rendering untokenizable (the
 * tokenizer refuses invalid UTF-8, which ended the chat). NULL when out of
 * memory. */
static char *utf8_repaired(const char *s, size_t n, size_t *out_n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t bad = 0, cap = 1;
    for (size_t i = 0; i < n;) { /* size: every bad unit (>= 1 byte) becomes 3 bytes */
        size_t l = unicode_utf8_len(u, n, i, &bad);
        cap += l ? l : 3;
        i += l ? l : bad;
    }
    char *o = malloc(cap);
    if (!o) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        size_t l = unicode_utf8_len(u, n, i, &bad);
        if (l) {
            memcpy(o + k, s + i, l);
            k += l;
            i += l;
        } else {
            memcpy(o + k, "\xEF\xBF\xBD", 3);
            k += 3;
            i += bad;
        }
    }
    o[k] = '\0';
    *out_n = k;
    return o;
}

static int conv_add(conversation *c, const char *role, const char *text, size_t len) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8;
        chat_message *m = realloc(c->msgs, cap * sizeof *m);
        if (!m) return -1;
        c->msgs = m;
        char **o = realloc(c->owned, cap * sizeof *o);
        if (!o) return -1;
        c->owned = o;
        c->cap = cap;
    }
    /* Valid UTF-8 only (the conversation is tokenized again every turn,
     * and the tokenizer refuses invalid UTF-8): see utf8_repaired */
    size_t copy_len = 0;
    char *copy = utf8_repaired(text, len, &copy_len);
    if (!copy) return -1;
    c->owned[c->n] = copy;
    c->msgs[c->n].role = role;
    c->msgs[c->n].content = copy;
    c->n++;
    return 0;
}

static void conv_free(conversation *c) {
    for (size_t i = 0; i < c->n; i++) free(c->owned[i]);
    free(c->owned);
    free(c->msgs);
}

/* One line of stdin without its end of line: 1 with a line, 0 at the end of
 * input, -1 when out of memory. Byte by byte, so that nothing after the
 * line is taken from a terminal that has not typed it yet. */
static int read_line(intptr_t in, char **buf, size_t *cap, size_t *len) {
    size_t n = 0;
    int any = 0;
    for (;;) {
        char c;
        if (io_read(in, &c, 1) != 1) break;
        any = 1;
        if (c == '\n') break;
        if (n + 2 > *cap) {
            size_t nc = *cap ? *cap * 2 : 256;
            char *nb = realloc(*buf, nc);
            if (!nb) return -1;
            *buf = nb;
            *cap = nc;
        }
        (*buf)[n++] = c;
    }
    if (!any) return 0;
    if (!*buf) {
        *buf = malloc(1);
        if (!*buf) return -1;
        *cap = 1;
    }
    if (n && (*buf)[n - 1] == '\r') n--;
    (*buf)[n] = '\0';
    *len = n;
    return 1;
}

/* Bytes at the end of s[0..n) that could start `stop`: held back from the
 * terminal until the next piece says whether the stop text follows. */
static size_t stop_prefix_len(const char *s, size_t n, const char *stop) {
    size_t sl = strlen(stop);
    for (size_t k = sl ? sl - 1 : 0; k > 0; k--)
        if (k <= n && memcmp(s + n - k, stop, k) == 0) return k;
    return 0;
}

/* Whether a sampled token ends the assistant's turn as a token: the
 * vocabulary's EOS (vocabularies with end-of-turn control tokens such as
 * <|im_end|> or <|eot_id|> stop here once the tokenizer reports them). */
static int ends_turn(const doze_model *m, int token) { return doze_token_is_eog(m, token); }

typedef struct {
    doze_model *m;
    doze_session *s;
    doze_sampler *smp;
    int32_t *hist; /* the tokens in the KV cache, in order */
    int n_hist;
} chat_state;

/* Brings the KV cache to `ids`: keeps it when it holds a prefix of them
 * (the usual case: the last reply's tokens re-rendered the same way), else
 * starts over; runs the rest (batched where the run is dense). The last
 * token's logits are then available. */
static int feed(chat_state *c, const int32_t *ids, int n, int gating, int *kept, doze_error *e) {
    int keep = 0;
    while (keep < c->n_hist && keep < n && c->hist[keep] == ids[keep]) keep++;
    /* at least the last token runs: its logits start the reply */
    if (keep >= n) keep = n > 0 ? n - 1 : 0;
    /* Diverged (the reply's tokens re-render differently, e.g. a run of
     * newlines or the end-of-turn text spelled in pieces merge into other
     * tokens): back to the common prefix, not to an empty cache. */
    if (keep < c->n_hist && doze_session_truncate(c->s, keep, e) != DOZE_OK) return -1;
    c->n_hist = keep;
    *kept = keep;
    int ctx = doze_model_get_info(c->m)->context_length;
    if (n > ctx) {
        e->code = DOZE_ERR_CONTEXT_FULL;
        snprintf(e->message, sizeof e->message,
                 "the conversation is %d tokens and the context %d (--ctx, or start a new chat)", n, ctx);
        return -1;
    }
    if (!gating && n - keep > 1) {
        if (doze_session_prefill(c->s, ids + keep, n - keep, e) != DOZE_OK) return -1;
    } else {
        for (int i = keep; i < n; i++)
            if (doze_session_step(c->s, ids[i], e) != DOZE_OK) return -1;
    }
    memcpy(c->hist + keep, ids + keep, (size_t)(n - keep) * sizeof *ids);
    c->n_hist = n;
    return 0;
}

/* Samples and streams one reply; *reply (malloc'd) gets its text without
 * the end-of-turn text, *ended says what ended it. Returns the number of
 * tokens of the reply (an end-of-turn token is not one), -1 on error. */
static int reply_turn(chat_state *c, int max_steps, const char *eot, char **reply, size_t *reply_len,
                      double *compute, const char **ended, doze_error *e) {
    const doze_model_info *info = doze_model_get_info(c->m);
    char *r = NULL;
    size_t rn = 0, rcap = 0, shown = 0;
    int generated = 0, prev = c->n_hist ? c->hist[c->n_hist - 1] : -1, stopped = 0, stepped = 0;
    double compute_sum = 0;
    *ended = "--steps";
    /* the penalties look back over the conversation in the KV cache (the
     * rendered turns, the template's tokens included), as over a prompt */
    doze_sampler_reset(c->smp);
    for (int i = 0; i < c->n_hist; i++)
        if (doze_sampler_accept(c->smp, c->hist[i], e) != DOZE_OK) goto fail;
    while (generated < max_steps && !stopped) {
        int next = doze_sampler_sample(c->smp, doze_session_logits(c->s));
        if (doze_sampler_accept(c->smp, next, e) != DOZE_OK) goto fail;
        if (ends_turn(c->m, next)) {
            *ended = "end of turn";
            break;
        }
        generated++;
        char piece[DOZE_MAX_PIECE];
        size_t plen = 0;
        if (doze_token_to_piece(c->m, prev, next, piece, sizeof piece, &plen, e) != DOZE_OK) goto fail;
        if (rn + plen + 1 > rcap) {
            size_t nc = rcap ? rcap * 2 : 1024;
            while (nc < rn + plen + 1) nc *= 2;
            char *nr = realloc(r, nc);
            if (!nr) {
                e->code = DOZE_ERR_OUT_OF_MEMORY;
                snprintf(e->message, sizeof e->message, "out of memory for a reply");
                goto fail;
            }
            r = nr;
            rcap = nc;
        }
        memcpy(r + rn, piece, plen);
        rn += plen;
        r[rn] = '\0';
        /* the end-of-turn text, where the vocabulary spells it in pieces */
        const char *at = *eot ? strstr(r + (shown > strlen(eot) ? shown - strlen(eot) : 0), eot) : NULL;
        size_t safe = at ? (size_t)(at - r) : rn - stop_prefix_len(r, rn, eot);
        if (safe > shown) out_bytes(r + shown, safe - shown);
        shown = safe;
        if (at) {
            rn = (size_t)(at - r);
            r[rn] = '\0';
            stopped = 1;
            *ended = "end of turn";
        }
        /* the token joins the KV cache so that the next turn starts from it */
        if (c->n_hist >= info->context_length) {
            if (!stopped) *ended = "the context is full";
            break;
        }
        if (doze_session_step(c->s, next, e) != DOZE_OK) goto fail;
        c->hist[c->n_hist++] = next;
        compute_sum += doze_session_compute(c->s);
        stepped++;
        prev = next;
    }
    if (!stopped && rn > shown) out_bytes(r + shown, rn - shown);
    out_printf("\n");
    *compute = stepped ? compute_sum / stepped : 1.0;
    *reply = r;
    *reply_len = rn;
    return generated;
fail:
    free(r);
    return -1;
}

int cmd_chat(int argc, char **argv) {
    cli_args a;
    int prc = cli_parse(&cmd_chat_spec, argc, argv, &a);
    if (prc >= 0) return prc;
    if (cli_gate_options_check(&a)) return 2;
    const char *path = cli_pos(&a, 0);
    const char *system = cli_get(&a, "--system");
    const char *tmpl_opt = cli_get(&a, "--template");
    long long steps = cli_get_int(&a, "--steps", 256);
    long long ctx = cli_get_int(&a, "--ctx", 0);
    doze_sampler_params sp = doze_sampler_default_params();
    sp.temperature = (float)cli_get_float(&a, "--temp", 0.8);
    sp.top_p = (float)cli_get_float(&a, "--top-p", 0.95);
    sp.top_k = (int)cli_get_int(&a, "--top-k", 40);
    sp.seed = cli_get_seed(&a, "--seed", 42);
    /* checked now; a window of -1 (the whole context) is set once the model is loaded */
    if (cli_penalty_options(&a, 1, &sp)) return 2;
    double budget = cli_get_float(&a, "--budget", 1.0);
    if (steps < 1 || ctx < 0) return cli_usage_error(&a, "--steps must be >= 1 and --ctx >= 0");
    if (!(budget > 0.0 && budget <= 1.0)) return cli_usage_error(&a, "--budget must be in (0, 1]");
    doze_error pe;
    if (doze_sampler_params_check(&sp, &pe) != DOZE_OK) return cli_usage_error(&a, "%s", pe.message);
    int gating = budget < 1.0 || cli_has(&a, "--gates");

    doze_model_params mp = doze_model_default_params();
    if (cli_threads_option(&a, &mp) || cli_ffn_block_option(&a, &mp)) return 2;
    mp.context_length = (int)(ctx > 0 && ctx < (1 << 20) ? ctx : 0);
    doze_model *m = cli_load_model(path, &mp);
    if (!m) return 1;
    const doze_model_info *info = doze_model_get_info(m);
    if (cli_get_int(&a, "--repeat-last-n", 0) == -1) sp.repeat_last_n = info->context_length;

    int rc = 1;
    doze_error e = {0, ""};
    conversation conv = {NULL, NULL, 0, 0};
    chat_state c = {m, NULL, NULL, NULL, 0};
    doze_gates *gates = NULL;
    char *line = NULL, *prompt = NULL;
    size_t line_cap = 0, line_len = 0;
    intptr_t in = -1;

    const char *tmpl = tmpl_opt ? tmpl_opt : doze_model_meta_string(m, "tokenizer.chat_template");
    const char *what = NULL;
    chat_family fam = chat_template_detect(tmpl, &what);
    if (fam == CHAT_UNKNOWN) {
        chat_template_apply(tmpl, NULL, 0, 1, &prompt, NULL, &e); /* for its message */
        err_printf("doze: %s%s\n", e.message,
                   tmpl ? "" : "; give one with --template chatml|llama3|llama2|gemma|phi3");
        goto done;
    }
    const char *eot = chat_family_end_of_turn(fam);
    err_printf("doze: chat template %s (turns end at %s); /exit or end of input quits\n",
               chat_family_name(fam), eot);

    c.hist = malloc((size_t)info->context_length * sizeof *c.hist);
    c.s = doze_session_new(m, &e);
    c.smp = c.s ? doze_sampler_new(&sp, info->vocab_size, &e) : NULL;
    if (!c.hist || !c.s || !c.smp) {
        if (!c.hist) snprintf(e.message, sizeof e.message, "out of memory");
        cli_print_error("chat", &e);
        goto done;
    }
    if (gating) {
        gates = cli_gates(&a, m, 1, 0);
        if (!gates || doze_session_set_gates(c.s, gates, &e) != DOZE_OK ||
            doze_session_set_budget(c.s, (float)budget, &e) != DOZE_OK) {
            if (gates) cli_print_error("gates", &e);
            goto done;
        }
    }
    if (system && conv_add(&conv, "system", system, strlen(system)) != 0) {
        err_printf("doze: out of memory\n");
        goto done;
    }
    in = IO_STDIN;
    for (;;) {
        err_printf("> ");
        int got = read_line(in, &line, &line_cap, &line_len);
        if (got < 0) {
            err_printf("doze: out of memory\n");
            goto done;
        }
        if (got == 0 || strcmp(line, "/exit") == 0) break;
        if (line_len == 0) continue;
        /* a line that is not UTF-8 (a Latin-1 terminal) cannot be tokenized:
         * said and skipped, the conversation goes on */
        size_t bad_at = unicode_utf8_first_invalid((const unsigned char *)line, line_len);
        if (bad_at != SIZE_MAX) {
            err_printf("doze: the line is not valid UTF-8 (byte %zu); it was not sent\n", bad_at);
            continue;
        }
        if (conv_add(&conv, "user", line, line_len) != 0) {
            err_printf("doze: out of memory\n");
            goto done;
        }
        free(prompt);
        prompt = NULL;
        size_t plen = 0;
        /* the messages' contents are literal: control tokens a user types stay text */
        size_t *lit = NULL, n_lit = 0;
        if (chat_template_render_literal(fam, conv.msgs, conv.n, 1, &prompt, &plen, &lit, &n_lit, &e) != DOZE_OK) {
            cli_print_error("chat template", &e);
            goto done;
        }
        int n = 0;
        /* one range per message at most: conv.n fits an int like the cache's tokens */
        int32_t *ids = cli_encode_literal(m, prompt, plen, CHAT_TOKENIZE_FLAGS, lit, (int)n_lit, &n, &e);
        free(lit);
        if (!ids) {
            cli_print_error("tokenize", &e);
            goto done;
        }
        double t0 = io_now_ms(), compute = 0;
        int kept = 0;
        int fed = feed(&c, ids, n, gating, &kept, &e);
        free(ids);
        if (fed != 0) {
            cli_print_error("chat", &e);
            goto done;
        }
        double t1 = io_now_ms();
        char *reply = NULL;
        size_t reply_len = 0;
        const char *ended = "";
        int generated = reply_turn(&c, (int)steps, eot, &reply, &reply_len, &compute, &ended, &e);
        if (generated < 0) {
            cli_print_error("chat", &e);
            goto done;
        }
        double t2 = io_now_ms();
        int added = conv_add(&conv, "assistant", reply ? reply : "", reply_len); /* repaired there */
        free(reply);
        if (added != 0) {
            err_printf("doze: out of memory\n");
            goto done;
        }
        err_printf("doze: prompt %d tokens (%d from the cache) in %.0f ms; reply %d tokens, %.1f tok/s, "
                   "compute %.3f of dense; ended by %s\n", n, kept, t1 - t0, generated,
                   generated * 1000.0 / (t2 - t1 + 1e-9), compute, ended);
    }
    rc = 0;
done:
    free(line);
    free(prompt);
    conv_free(&conv);
    doze_gates_free(gates);
    doze_sampler_free(c.smp);
    doze_session_free(c.s);
    free(c.hist);
    doze_model_free(m);
    return rc;
}
