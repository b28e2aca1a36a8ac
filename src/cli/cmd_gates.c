/* Gates on the command line: `doze gates` (make a training-free gate file)
 * and the --budget / --gates / --calib options shared by generate, ppl and
 * bench. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "commands.h"

/* Calibration tokens: the text of --calib (BOS + encoded, up to the
 * context), or else text the model writes itself from BOS (dense, seeded
 * sampling at temperature 1), so that any model gets gates with no data. */
static int32_t *calibration_tokens(const char *path, doze_model *m, int *n, doze_error *e) {
    const doze_model_info *c = doze_model_get_info(m);
    int cap = c->context_length < 512 ? c->context_length : 512;
    int32_t *ids = NULL;
    if (path) {
        ids = cli_encode_file(m, path, 32768, n, e); /* plenty for 512 tokens */
        if (ids && *n > cap) *n = cap;
        return ids;
    }
    ids = malloc((size_t)cap * sizeof *ids);
    doze_session *s = doze_session_new(m, e);
    doze_sampler_params sp = doze_sampler_default_params();
    sp.seed = 1234;
    doze_sampler *smp = doze_sampler_new(&sp, c->vocab_size, e);
    int ok = ids && s && smp;
    ids[0] = c->bos_id >= 0 ? c->bos_id : 0;
    for (int i = 0; ok && i + 1 < cap; i++) {
        ok = doze_session_step(s, ids[i], e) == DOZE_OK;
        if (ok) ids[i + 1] = doze_sampler_sample(smp, doze_session_logits(s));
    }
    doze_sampler_free(smp);
    doze_session_free(s);
    if (!ok) {
        free(ids);
        return NULL;
    }
    *n = cap;
    return ids;
}

/* the value of a shared gate option, NULL where the command's table does
 * not have it (finetune takes --gates but calibrates nothing itself) */
static const char *table_value(const cli_args *a, const char *name) {
    for (int k = 0; a->cmd->options[k].name; k++)
        if (strcmp(a->cmd->options[k].name, name) == 0) return a->values[k];
    return NULL;
}

int cli_gate_options_check(const cli_args *a) {
    static const char *const calibration[] = {"--calib", "--no-ffn-gates", "--protect-layers", "--random-gates"};
    if (!table_value(a, "--gates")) return 0;
    for (size_t i = 0; i < sizeof calibration / sizeof calibration[0]; i++)
        if (table_value(a, calibration[i]))
            return cli_usage_error(a, "%s shapes the training-free gates made when no --gates FILE is given: "
                                      "not with --gates (make the file with doze gates %s)",
                                   calibration[i], calibration[i]);
    return 0;
}

doze_gates *cli_gates(const cli_args *a, doze_model *m, int required, int quiet) {
    doze_error e;
    const char *path = table_value(a, "--gates");
    if (path) {
        size_t n = 0;
        uint8_t *bytes = cli_read_file(path, &n);
        if (!bytes) return NULL;
        doze_gates *g = NULL;
        doze_status st = doze_gates_load(m, bytes, n, &g, &e);
        free(bytes);
        if (st != DOZE_OK) cli_print_error(path, &e);
        return g;
    }
    if (!required) return NULL;
    int n = 0;
    double t0 = io_now_ms();
    const char *calib = table_value(a, "--calib");
    int32_t *ids = calibration_tokens(calib, m, &n, &e);
    if (!ids) {
        cli_print_error("calibration", &e);
        return NULL;
    }
    doze_gates *g = NULL;
    doze_gates_params gp = doze_gates_default_params();
    const char *seed = table_value(a, "--random-gates"), *protect = table_value(a, "--protect-layers");
    if (seed) gp.random_seed = cli_seed_value(seed);
    if (protect) gp.protect_layers = (int)strtol(protect, NULL, 10);
    gp.ffn_gates = table_value(a, "--no-ffn-gates") == NULL;
    if (doze_gates_calibrate(m, ids, n, &gp, &g, &e) != DOZE_OK) cli_print_error("gates", &e);
    else if (!quiet)
        err_printf("doze: training-free gates calibrated on %d tokens of %s in %.0f ms\n", n,
                   calib ? "--calib text" : "self-generated text",
                   io_now_ms() - t0);
    free(ids);
    return g;
}

static int file_write(void *ctx, const void *bytes, size_t n) { return cli_write_fn(ctx, bytes, n); }

static const char *const gates_forms[] = {"MODEL", NULL};
static const cli_option gates_options[] = {
    {"-o", CLI_STRING, "GATES.gguf", "where to write the gate file", NULL, 1},
    CLI_GATE_OPTIONS,
    CLI_FFN_BLOCK_OPTION,
    CLI_OPTIONS_END,
};
const cli_command cmd_gates_spec = {
    "gates", gates_forms, 1, 1, "writes training-free gates for a model",
    "Writes training-free gates for the model: a router fitted on --calib's text, or on\n"
    "512 tokens the model writes itself. (--gates FILE loads an existing gate file.)",
    gates_options,
};

int cmd_gates(int argc, char **argv) {
    cli_args a;
    int prc = cli_parse(&cmd_gates_spec, argc, argv, &a);
    if (prc >= 0) return prc;
    const char *path = cli_pos(&a, 0);
    const char *out = cli_get(&a, "-o");
    doze_model_params mp = doze_model_default_params();
    mp.context_length = 512;
    if (cli_ffn_block_option(&a, &mp)) return 2;
    doze_model *m = cli_load_model(path, &mp);
    if (!m) return 1;
    doze_gates *g = cli_gates(&a, m, 1, 0);
    int rc = 1;
    if (g) {
        intptr_t fd = cli_open_write(out);
        doze_error e;
        if (fd >= 0) {
            rc = doze_gates_save(g, file_write, &fd, &e) == DOZE_OK ? 0 : cli_print_error(out, &e);
            rc = cli_close_write(fd, out, rc == 0);
        }
    }
    doze_gates_free(g);
    doze_model_free(m);
    return rc;
}

size_t cli_mask_line_size(const doze_model *m) {
    const doze_model_info *c = doze_model_get_info(m);
    return (size_t)c->n_layers * (size_t)(c->n_heads + doze_model_ffn_blocks(m) + c->n_experts + 4) + 64;
}

/* "pos token compute layers heads ffn [experts]": layers as 0/1; per layer
 * its heads and its FFN blocks as 0/1, '-' for a skipped layer, layers
 * separated by '/'; a mixture of experts adds its experts per layer the
 * same way (all 0 where the FFN dozed). buf: cli_mask_line_size(m) bytes. */
void cli_format_mask(const doze_model *m, const doze_session *s, int pos, int token, char *buf,
                     size_t cap) {
    const doze_model_info *c = doze_model_get_info(m);
    const int nb = doze_model_ffn_blocks(m);
    const uint8_t *lm = doze_session_layer_mask(s), *hm = doze_session_head_mask(s);
    const uint8_t *fm = doze_session_ffn_mask(s);
    size_t at = (size_t)snprintf(buf, cap, "%d %d %.4f ", pos, token, (double)doze_session_compute(s));
    for (int l = 0; l < c->n_layers && at + 2 < cap; l++) buf[at++] = lm[l] ? '1' : '0';
    for (int l = 0; l < c->n_layers && at + c->n_heads + 3 < cap; l++) {
        buf[at++] = l ? '/' : ' ';
        for (int h = 0; h < c->n_heads; h++)
            buf[at++] = lm[l] ? (hm[(size_t)l * c->n_heads + h] ? '1' : '0') : '-';
    }
    for (int l = 0; l < c->n_layers && at + nb + 3 < cap; l++) {
        buf[at++] = l ? '/' : ' ';
        for (int j = 0; j < nb; j++) buf[at++] = lm[l] ? (fm[(size_t)l * nb + j] ? '1' : '0') : '-';
    }
    const uint8_t *em = doze_session_expert_mask(s);
    const int ne = c->n_experts;
    for (int l = 0; em && l < c->n_layers && at + ne + 3 < cap; l++) {
        buf[at++] = l ? '/' : ' ';
        for (int e = 0; e < ne; e++) buf[at++] = lm[l] ? (em[(size_t)l * ne + e] ? '1' : '0') : '-';
    }
    buf[at++] = '\n';
    buf[at] = '\0';
}
