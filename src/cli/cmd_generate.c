/* `doze generate` and `doze tokenize`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "commands.h"

/* Only the tokenizer is read (the file's header), so vocabulary-only GGUFs
 * tokenize too. */
int cmd_tokenize(int argc, char **argv) {
    const char *path = cli_positional(argc, argv, 0);
    const char *text = cli_opt(argc, argv, "--text");
    const char *file = cli_opt(argc, argv, "--file");
    if (!path || (!text && !file)) {
        err_printf("usage: doze tokenize MODEL (--text T | --file F) [--no-bos] [--special]\n");
        return 2;
    }
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
    int flags = (cli_flag(argc, argv, "--no-bos") ? 0 : DOZE_TOKENIZE_ADD_SPECIAL) |
                (cli_flag(argc, argv, "--special") ? DOZE_TOKENIZE_PARSE_SPECIAL : 0);
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
} gen_outputs;

int cmd_generate(int argc, char **argv) {
    const char *path = cli_positional(argc, argv, 0);
    if (!path) {
        err_printf("usage: doze generate MODEL [--prompt TEXT] [--steps N] ... (see doze --help)\n");
        return 2;
    }
    int bad = 0;
    const char *prompt = cli_opt(argc, argv, "--prompt");
    long long steps = cli_opt_int(argc, argv, "--steps", 256, &bad);
    doze_sampler_params sp = doze_sampler_default_params();
    sp.temperature = (float)cli_opt_float(argc, argv, "--temp", 1.0, &bad);
    sp.top_p = (float)cli_opt_float(argc, argv, "--top-p", 1.0, &bad);
    sp.top_k = (int)cli_opt_int(argc, argv, "--top-k", 0, &bad);
    sp.seed = (uint64_t)cli_opt_int(argc, argv, "--seed", 42, &bad);
    long long ctx = cli_opt_int(argc, argv, "--ctx", 0, &bad);
    int no_stop = cli_flag(argc, argv, "--no-stop");
    double budget = cli_opt_float(argc, argv, "--budget", 1.0, &bad);
    if (bad) return 2;
    if (!(budget > 0.0 && budget <= 1.0)) {
        err_printf("doze: --budget must be in (0, 1]\n");
        return 2;
    }
    int gating = budget < 1.0 || cli_opt(argc, argv, "--gates");
    /* speculative decoding (speculate_cli.c): lossless, so the session stays dense
     * and the gates only draft */
    const int speculative = cli_flag(argc, argv, "--speculative");
    if (speculative && budget < 1.0) {
        err_printf("doze: --speculative keeps the dense output; the draft's budget is --draft-budget\n");
        return 2;
    }
    if (speculative) gating = 1;
    if (steps < 1 || ctx < 0) {
        err_printf("doze: --steps must be >= 1 and --ctx >= 0\n");
        return 2;
    }
    doze_model_params mp = doze_model_default_params();
    mp.context_length = (int)(ctx > 0 ? ctx : (steps < (1 << 20) ? steps : (1 << 20)));
    if (gating && ctx == 0 && mp.context_length < 512) mp.context_length = 512; /* room to calibrate */
    doze_model *m = cli_load_model(path, &mp);
    if (!m) return 1;
    const doze_model_info *info = doze_model_get_info(m);
    if (steps > info->context_length) steps = info->context_length;

    doze_error e;
    int rc = 1, n_prompt = 0;
    int32_t *ids = NULL;
    doze_session *s = NULL;
    doze_sampler *smp = NULL;
    doze_gates *gates = NULL;
    gen_outputs o = {-1, -1, -1};
    const char *trace_path = cli_opt(argc, argv, "--trace");
    const char *logits_path = cli_opt(argc, argv, "--logits");
    if (trace_path && (o.trace = io_open(trace_path, "w")) < 0) {
        err_printf("doze: cannot write %s\n", trace_path);
        goto done;
    }
    if (logits_path && (o.logits = io_open(logits_path, "w")) < 0) {
        err_printf("doze: cannot write %s\n", logits_path);
        goto done;
    }
    const char *masks_path = cli_opt(argc, argv, "--masks");
    if (masks_path && (o.masks = io_open(masks_path, "w")) < 0) {
        err_printf("doze: cannot write %s\n", masks_path);
        goto done;
    }
    int flags = DOZE_TOKENIZE_ADD_SPECIAL |
                (cli_flag(argc, argv, "--special") ? DOZE_TOKENIZE_PARSE_SPECIAL : 0);
    ids = cli_encode(m, prompt ? prompt : "", prompt ? strlen(prompt) : 0, flags, &n_prompt, &e);
    if (!ids) {
        cli_print_error("prompt", &e);
        goto done;
    }
    if (n_prompt < 1) {
        err_printf("doze: the model has no BOS token and the prompt is empty\n");
        goto done;
    }
    s = doze_session_new(m, &e);
    smp = s ? doze_sampler_new(&sp, info->vocab_size, &e) : NULL;
    if (!s || !smp) {
        cli_print_error("generate", &e);
        goto done;
    }
    if (gating) {
        gates = cli_gates(argc, argv, m, 1, 0);
        if (!gates || doze_session_set_gates(s, gates, &e) != DOZE_OK ||
            doze_session_set_budget(s, (float)budget, &e) != DOZE_OK) {
            if (gates) cli_print_error("gates", &e);
            goto done;
        }
    }
    if (speculative) {
        rc = cli_speculative_generate(argc, argv, m, s, smp, ids, n_prompt, (int)steps, no_stop);
        goto done;
    }
    double compute_sum = 0;
    double t0 = io_now_ms(), t_first = 0;
    int generated = 0;
    int token = ids[0];
    int pos0 = 0;
    /* issue 9: the prompt in one batched prefill when nothing per step is
     * asked for and the run is dense */
    if (n_prompt > 1 && o.trace < 0 && o.logits < 0 && o.masks < 0 && !gating && n_prompt - 1 <= steps) {
        if (doze_session_prefill(s, ids, n_prompt - 1, &e) != DOZE_OK) {
            cli_print_error("prefill", &e);
            goto done;
        }
        compute_sum += n_prompt - 1;
        pos0 = n_prompt - 1;
        token = ids[n_prompt - 1];
        for (int i = 1; i < n_prompt; i++) {
            char piece[DOZE_MAX_PIECE];
            size_t plen = 0;
            if (doze_token_to_piece(m, ids[i - 1], ids[i], piece, sizeof piece, &plen, &e) != DOZE_OK) {
                cli_print_error("decode", &e);
                goto done;
            }
            out_bytes(piece, plen);
        }
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
            if (generated++ == 0) t_first = io_now_ms();
        }
        if (o.trace >= 0) {
            char line[32];
            int len = snprintf(line, sizeof line, "%d %d\n", token, next);
            io_write(o.trace, line, (size_t)len);
        }
        if (o.logits >= 0) io_write(o.logits, logits, (size_t)info->vocab_size * sizeof(float));
        compute_sum += doze_session_compute(s);
        if (o.masks >= 0) {
            size_t cap = cli_mask_line_size(m);
            char *line = malloc(cap);
            if (line) {
                cli_format_mask(m, s, pos, token, line, cap);
                io_write(o.masks, line, strlen(line));
                free(line);
            }
        }
        /* BOS (llama2.c's end of story) or any end-of-generation token */
        if ((next == info->bos_id || (pos >= n_prompt - 1 && doze_token_is_eog(m, next))) &&
            !no_stop)
            break;
        char piece[DOZE_MAX_PIECE];
        size_t plen = 0;
        if (doze_token_to_piece(m, token, next, piece, sizeof piece, &plen, &e) != DOZE_OK) {
            cli_print_error("decode", &e);
            goto done;
        }
        out_bytes(piece, plen);
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
    if (o.trace >= 0) io_close(o.trace);
    if (o.logits >= 0) io_close(o.logits);
    if (o.masks >= 0) io_close(o.masks);
    doze_gates_free(gates);
    doze_sampler_free(smp);
    doze_session_free(s);
    free(ids);
    doze_model_free(m);
    return rc;
}
