/* `doze generate` and `doze tokenize`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "commands.h"

static const char *const tokenize_forms[] = {"MODEL", NULL};
static const cli_option tokenize_options[] = {
    {"--text", CLI_STRING, "TEXT", "the text to encode", NULL, 0},
    {"--file", CLI_STRING, "FILE", "encode this file's bytes instead", NULL, 0},
    {"--no-bos", CLI_FLAG, NULL, "no BOS token in front", NULL, 0},
    {"--special", CLI_FLAG, NULL, "control tokens written in the text (<|im_start|>, ...) are single tokens", NULL, 0},
    CLI_OPTIONS_END,
};
const cli_command cmd_tokenize_spec = {
    "tokenize", tokenize_forms, 1, 1, "prints the token ids of a text",
    "Prints the token ids of --text or of --file's bytes with the model's tokenizer\n"
    "(BOS first unless --no-bos), separated by spaces. Reads only the tokenizer:\n"
    "vocabulary-only GGUFs work.",
    tokenize_options,
};

int cmd_tokenize(int argc, char **argv) {
    cli_args a;
    int prc = cli_parse(&cmd_tokenize_spec, argc, argv, &a);
    if (prc >= 0) return prc;
    const char *path = cli_pos(&a, 0);
    const char *text = cli_get(&a, "--text");
    const char *file = cli_get(&a, "--file");
    if (!text == !file) return cli_usage_error(&a, "give one of --text and --file");
    doze_vocab *v = cli_load_vocab(path);
    if (!v) return 1;
    size_t len = text ? strlen(text) : 0;
    uint8_t *buf = NULL;
    if (file) {
        buf = cli_read_file(file, &len);
        if (!buf) {
            doze_vocab_free(v);
            return 1;
        }
        text = (const char *)buf;
    }
    const int flags = (cli_has(&a, "--no-bos") ? 0 : DOZE_TOKENIZE_ADD_SPECIAL) |
                      (cli_has(&a, "--special") ? DOZE_TOKENIZE_PARSE_SPECIAL : 0);
    doze_error e;
    int n = 0, rc = 0;
    int32_t *ids = NULL;
    doze_status st = doze_vocab_tokenize(v, text, len, flags, NULL, 0, &n, &e);
    if (st == DOZE_OK) {
        ids = malloc((size_t)(n > 0 ? n : 1) * sizeof *ids);
        st = ids ? doze_vocab_tokenize(v, text, len, flags, ids, n, &n, &e) : DOZE_ERR_OUT_OF_MEMORY;
        if (!ids) snprintf(e.message, sizeof e.message, "out of memory"), e.code = st;
    }
    if (st != DOZE_OK) {
        rc = cli_print_error("tokenize", &e);
    } else {
        for (int i = 0; i < n; i++) out_printf(i ? " %d" : "%d", (int)ids[i]);
        out_printf("\n");
    }
    free(ids);
    free(buf);
    doze_vocab_free(v);
    return rc;
}

typedef struct {
    intptr_t trace, logits, masks;
    int failed; /* a write to one of them failed */
} gen_outputs;

static const char *const generate_forms[] = {"MODEL", NULL};
static const cli_option generate_options[] = {
    {"--prompt", CLI_STRING, "TEXT", "the text to continue (default: none; BOS alone)", NULL, 0},
    {"--prompt-ids", CLI_STRING, "IDS", "the prompt as token ids instead of text (separated by spaces or\n"
                                        "commas; nothing added, BOS included only if given)", NULL, 0},
    {"--steps", CLI_INT, "N", "positions to run, the prompt's included (default 256)", NULL, 0},
    {"--ctx", CLI_INT, "N", "context length (default: --steps; at most the model's own)", NULL, 0},
    {"--keep-last", CLI_INT, "N", "a prompt longer than N tokens keeps only its last N (after BOS)\n"
                                  "(default: a prompt longer than the context is an error)", NULL, 0},
    {"--temp", CLI_FLOAT, "T", "temperature (default 1; 0: greedy)", NULL, 0},
    {"--top-k", CLI_INT, "K", "sample among the K most likely tokens (default 0: off)", NULL, 0},
    {"--top-p", CLI_FLOAT, "P", "nucleus: the most likely tokens up to mass P (default 1: off)", NULL, 0},
    CLI_PENALTY_OPTIONS,
    {"--seed", CLI_SEED, "S", "sampling seed (default 42)", NULL, 0},
    {"--no-stop", CLI_FLAG, NULL, "keep going past a BOS token", NULL, 0},
    {"--trace", CLI_STRING, "FILE", "write 'input next' token ids per step", NULL, 0},
    {"--logits", CLI_STRING, "FILE", "write every step's float32 logits", NULL, 0},
    {"--masks", CLI_STRING, "FILE", "write 'pos token compute layers heads/... ffn/...' per step (MoE: then experts/...)", NULL, 0},
    {"--special", CLI_FLAG, NULL, "control tokens written in the prompt (<|im_start|>, ...) are single tokens",
     NULL, 0},
    {"--speculative", CLI_FLAG, NULL, "the gates draft, the whole model verifies in one batch: the dense\n"
                                      "model's text, faster where drafts are accepted", NULL, 0},
    {"--draft-budget", CLI_FLOAT, "B", "the draft's budget in (0, 1) (default: chosen as it runs)", NULL, 0},
    {"--draft-k", CLI_INT, "K", "tokens drafted per step, 1..8 (default: chosen as it runs)", NULL, 0},
    {"--spec-trace", CLI_STRING, "FILE", "write each speculative step's k, budget and acceptance", NULL, 0},
    CLI_BUDGET_OPTION,
    CLI_GATE_OPTIONS,
    CLI_THREADS_OPTION,
    CLI_EXPERTS_USED_OPTION,
    CLI_FFN_BLOCK_OPTION,
    CLI_OPTIONS_END,
};
const cli_command cmd_generate_spec = {
    "generate", generate_forms, 1, 1, "prints the prompt and its continuation",
    "Prints the prompt and its continuation, and on stderr the speed and the compute spent.\n"
    "--steps counts positions, the prompt's included. Sampling runs llama.cpp's order:\n"
    "penalties, top-k, top-p, min-p, temperature. With --budget below 1 (or --gates) the\n"
    "gates decide per token which heads, layers and FFN blocks doze.",
    generate_options,
};

/* The sampler's settings from the options; 2 (usage error printed) when
 * one is out of range. */
static int sampler_options(const cli_args *a, int context, doze_sampler_params *sp) {
    *sp = doze_sampler_default_params();
    sp->temperature = (float)cli_get_float(a, "--temp", sp->temperature);
    long long top_k = cli_get_int(a, "--top-k", sp->top_k);
    if (top_k < 0 || top_k > (1 << 30)) return cli_usage_error(a, "--top-k must be in 0..%d (0: off)", 1 << 30);
    sp->top_k = (int)top_k;
    sp->top_p = (float)cli_get_float(a, "--top-p", sp->top_p);
    if (cli_penalty_options(a, context, sp)) return 2;
    sp->seed = cli_get_seed(a, "--seed", sp->seed);
    doze_error e;
    if (doze_sampler_params_check(sp, &e) != DOZE_OK) return cli_usage_error(a, "%s", e.message);
    return 0;
}

/* The prompt's tokens: BOS + the text; with --keep-last N, BOS + the last
 * N tokens of the text's. NULL (message printed) on failure. */
/* --prompt-ids: ids in [0, vocab), separated by spaces or commas. NULL
 * (message printed) when one is not an id of the model or there are none. */
static int32_t *prompt_ids(const char *list, const doze_model *m, int *n) {
    const int vocab = doze_model_get_info(m)->vocab_size;
    int32_t *ids = malloc((strlen(list) / 2 + 1) * sizeof *ids); /* an id and a separator each */
    if (!ids) {
        err_printf("doze: out of memory for --prompt-ids\n");
        return NULL;
    }
    int count = 0;
    for (const char *p = list; *p;) {
        if (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n') {
            p++;
            continue;
        }
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v >= vocab || (*end && *end != ' ' && *end != ',' && *end != '\t' && *end != '\n')) {
            err_printf("doze: --prompt-ids: \"%.*s\" is not a token id of this model (0..%d)\n",
                       (int)strcspn(p, " ,\t\n") > 32 ? 32 : (int)strcspn(p, " ,\t\n"), p, vocab - 1);
            free(ids);
            return NULL;
        }
        ids[count++] = (int32_t)v;
        p = end;
    }
    if (count == 0) {
        err_printf("doze: --prompt-ids: no ids given\n");
        free(ids);
        return NULL;
    }
    *n = count;
    return ids;
}

static int32_t *prompt_tokens(const cli_args *a, const doze_model *m, int *n) {
    const char *prompt = cli_get(a, "--prompt");
    const char *list = cli_get(a, "--prompt-ids");
    if (list) return prompt_ids(list, m, n);
    doze_error e;
    const int flags = DOZE_TOKENIZE_ADD_SPECIAL | (cli_has(a, "--special") ? DOZE_TOKENIZE_PARSE_SPECIAL : 0);
    int32_t *ids = cli_encode(m, prompt ? prompt : "", prompt ? strlen(prompt) : 0, flags, n, &e);
    if (!ids) {
        cli_print_error("prompt", &e);
        return NULL;
    }
    long long keep = cli_get_int(a, "--keep-last", 0);
    int has_bos = *n > 0 && ids[0] == doze_model_get_info(m)->bos_id;
    if (keep > 0 && *n - has_bos > keep) {
        int drop = *n - has_bos - (int)keep;
        memmove(ids + has_bos, ids + has_bos + drop, (size_t)keep * sizeof *ids);
        err_printf("doze: --keep-last %lld: the prompt's first %d tokens dropped\n", keep, drop);
        *n = has_bos + (int)keep;
    }
    return ids;
}

int cmd_generate(int argc, char **argv) {
    cli_args a;
    int prc = cli_parse(&cmd_generate_spec, argc, argv, &a);
    if (prc >= 0) return prc;
    if (cli_gate_options_check(&a)) return 2;
    const char *path = cli_pos(&a, 0);
    long long steps = cli_get_int(&a, "--steps", 256);
    long long ctx = cli_get_int(&a, "--ctx", 0);
    int no_stop = cli_has(&a, "--no-stop");
    double budget = cli_get_float(&a, "--budget", 1.0);
    if (!(budget > 0.0 && budget <= 1.0)) return cli_usage_error(&a, "--budget must be in (0, 1]");
    if (steps < 1) return cli_usage_error(&a, "--steps must be >= 1");
    if (ctx < 0 || ctx > (1 << 30)) return cli_usage_error(&a, "--ctx must be in 0..%d (0: --steps)", 1 << 30);
    if (cli_has(&a, "--prompt") && cli_has(&a, "--prompt-ids"))
        return cli_usage_error(&a, "give --prompt or --prompt-ids, not both");
    if (cli_has(&a, "--keep-last") && cli_get_int(&a, "--keep-last", 0) < 1)
        return cli_usage_error(&a, "--keep-last must be >= 1");
    doze_sampler_params sp;
    if (sampler_options(&a, 1, &sp)) return 2; /* checked now; the window of -1 is set below */
    int gating = budget < 1.0 || cli_has(&a, "--gates");
    /* speculative decoding (speculate_cli.c): lossless, so the session stays dense
     * and the gates only draft */
    const int speculative = cli_has(&a, "--speculative");
    if (speculative && budget < 1.0)
        return cli_usage_error(&a, "--speculative keeps the dense output; the draft's budget is --draft-budget");
    if (speculative) gating = 1;
    static const char *const spec_only[] = {"--draft-k", "--draft-budget", "--spec-trace"};
    static const char *const step_outputs[] = {"--trace", "--logits", "--masks"};
    for (size_t i = 0; i < 3; i++) {
        if (!speculative && cli_has(&a, spec_only[i]))
            return cli_usage_error(&a, "%s goes with --speculative", spec_only[i]);
        if (speculative && cli_has(&a, step_outputs[i]))
            return cli_usage_error(&a, "%s is not written by --speculative (its steps verify several tokens at "
                                       "once; --spec-trace FILE records them)", step_outputs[i]);
    }
    doze_model_params mp = doze_model_default_params();
    if (cli_threads_option(&a, &mp) || cli_experts_used_option(&a, &mp) || cli_ffn_block_option(&a, &mp)) return 2;
    mp.context_length = (int)(ctx > 0 ? ctx : (steps < (1 << 20) ? steps : (1 << 20)));
    if (gating && ctx == 0 && mp.context_length < 512) mp.context_length = 512; /* room to calibrate */
    doze_model *m = cli_load_model(path, &mp);
    if (!m) return 1;
    const doze_model_info *info = doze_model_get_info(m);
    if (steps > info->context_length) steps = info->context_length;
    if (cli_get_int(&a, "--repeat-last-n", 0) == -1) sp.repeat_last_n = info->context_length;

    doze_error e;
    int rc = 1, n_prompt = 0;
    int32_t *ids = NULL;
    doze_session *s = NULL;
    doze_sampler *smp = NULL;
    doze_gates *gates = NULL;
    gen_outputs o = {-1, -1, -1, 0};
    const char *trace_path = cli_get(&a, "--trace");
    const char *logits_path = cli_get(&a, "--logits");
    const char *masks_path = cli_get(&a, "--masks");
    if (trace_path && (o.trace = cli_open_write(trace_path)) < 0) goto done;
    if (logits_path && (o.logits = cli_open_write(logits_path)) < 0) goto done;
    if (masks_path && (o.masks = cli_open_write(masks_path)) < 0) goto done;
    ids = prompt_tokens(&a, m, &n_prompt);
    if (!ids) goto done;
    if (n_prompt < 1) {
        err_printf("doze: the prompt is empty and %s: there is nothing to continue from\n",
                   doze_model_get_info(m)->bos_id < 0 ? "the model has no BOS token" : "this vocabulary adds no BOS token");
        goto done;
    }
    if (n_prompt > steps) { /* not silently cut: the user says which tokens to keep */
        if (steps < info->context_length)
            err_printf("doze: the prompt has %d tokens but --steps is %lld (it counts positions, the "
                       "prompt's included; --keep-last N keeps the prompt's last N tokens)\n",
                       n_prompt, steps);
        else
            err_printf("doze: the prompt has %d tokens but the context holds %d (--ctx or --steps can "
                       "raise it up to the model's own; --keep-last N keeps the prompt's last N tokens)\n",
                       n_prompt, info->context_length);
        goto done;
    }
    s = doze_session_new(m, &e);
    smp = s ? doze_sampler_new(&sp, info->vocab_size, &e) : NULL;
    if (!s || !smp) {
        cli_print_error("generate", &e);
        goto done;
    }
    if (gating) {
        gates = cli_gates(&a, m, 1, 0);
        if (!gates || doze_session_set_gates(s, gates, &e) != DOZE_OK ||
            doze_session_set_budget(s, (float)budget, &e) != DOZE_OK) {
            if (gates) cli_print_error("gates", &e);
            goto done;
        }
    }
    /* the penalties look at the whole context, the prompt's tokens included */
    for (int i = 0; i < n_prompt; i++)
        if (doze_sampler_accept(smp, ids[i], &e) != DOZE_OK) {
            cli_print_error("prompt", &e);
            goto done;
        }
    if (speculative) {
        rc = cli_speculative_generate(&a, m, s, smp, ids, n_prompt, (int)steps, no_stop);
        goto done;
    }
    double compute_sum = 0;
    double t0 = io_now_ms(), t_first = 0;
    int generated = 0;
    int token = ids[0];
    int pos0 = 0;
    /* every later token is printed after its predecessor; the first is
     * printed here unless it is the BOS the tokenizer added (a vocabulary that
     * adds none, as Qwen's, starts with the prompt's first word) */
    if (ids[0] != info->bos_id && cli_print_piece(m, -1, ids[0])) goto done;
    /* The prompt in one batched prefill when nothing per step is
     * asked for and the run is dense */
    if (n_prompt > 1 && o.trace < 0 && o.logits < 0 && o.masks < 0 && !gating) {
        if (doze_session_prefill(s, ids, n_prompt - 1, &e) != DOZE_OK) {
            cli_print_error("prefill", &e);
            goto done;
        }
        compute_sum += n_prompt - 1;
        pos0 = n_prompt - 1;
        token = ids[n_prompt - 1];
        for (int i = 1; i < n_prompt; i++)
            if (cli_print_piece(m, ids[i - 1], ids[i])) goto done;
    }
    for (int pos = pos0; pos < steps; pos++) {
        if (doze_session_step(s, token, &e) != DOZE_OK) {
            cli_print_error("step", &e);
            goto done;
        }
        const float *logits = doze_session_logits(s);
        int next;
        if (pos < n_prompt - 1) {
            next = ids[pos + 1];
        } else {
            next = doze_sampler_sample(smp, logits);
            if (doze_sampler_accept(smp, next, &e) != DOZE_OK) {
                cli_print_error("sample", &e);
                goto done;
            }
            if (generated++ == 0) t_first = io_now_ms();
        }
        if (o.trace >= 0) {
            char line[32];
            int len = snprintf(line, sizeof line, "%d %d\n", token, next);
            o.failed |= io_write(o.trace, line, (size_t)len) != 0;
        }
        if (o.logits >= 0) o.failed |= io_write(o.logits, logits, (size_t)info->vocab_size * sizeof(float)) != 0;
        compute_sum += doze_session_compute(s);
        if (o.masks >= 0) {
            size_t cap = cli_mask_line_size(m);
            char *line = malloc(cap);
            if (line) {
                cli_format_mask(m, s, pos, token, line, cap);
                o.failed |= io_write(o.masks, line, strlen(line)) != 0;
                free(line);
            }
        }
        if (cli_ends_generation(m, next, pos >= n_prompt - 1, no_stop)) break;
        if (cli_print_piece(m, token, next)) goto done;
        token = next;
    }
    out_printf("\n");
    double t1 = io_now_ms();
    if (generated > 1)
        err_printf("doze: %d tokens, %.1f tok/s after the first (%.1f ms to first token), "
                   "compute %.3f of dense\n",
                   generated, (generated - 1) * 1000.0 / (t1 - t_first + 1e-9), t_first - t0,
                   compute_sum / doze_session_pos(s));
    rc = 0;
done:
    /* a run that failed leaves none of them behind, half written */
    {
        const intptr_t fds[3] = {o.trace, o.logits, o.masks};
        const char *paths[3] = {trace_path, logits_path, masks_path};
        const int failed_before = rc != 0 && !o.failed; /* reported already: the outputs go quietly */
        for (int i = 0; i < 3; i++) {
            if (fds[i] < 0) continue;
            if (failed_before) cli_discard_write(fds[i], paths[i]);
            else if (cli_close_write(fds[i], paths[i], !o.failed)) rc = 1;
        }
    }
    doze_gates_free(gates);
    doze_sampler_free(smp);
    doze_session_free(s);
    free(ids);
    doze_model_free(m);
    return rc;
}
