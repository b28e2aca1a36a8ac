/* `doze finetune`: trains the gates of a model on a text by backprop (the
 * base weights stay frozen), retunes the budget table on the text and
 * writes the gate file. With --joint the model's weights learn together
 * with its gates, and the fine-tuned model is written beside the gate file
 * (--model-out). The run itself is doze_finetune_* (src/train/finetune.c),
 * the same code the JS side drives. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byte_buffer.h"
#include "cli_util.h"
#include "commands.h"

static int file_write(void *ctx, const void *bytes, size_t n) { return cli_write_fn(ctx, bytes, n); }

/* joint: writes the fine-tuned model, loads it, retunes the gates on it */
static int finish_joint(doze_finetune *f, const char *path, const char *model_out,
                        const doze_model_params *mp) {
    size_t n = 0;
    void *file = cli_read_file(path, &n);
    if (!file) return 1;
    doze_byte_buffer buf = {NULL, 0, 0};
    doze_model *trained = NULL;
    doze_error e;
    int rc = 1;
    if (doze_finetune_write_model(f, file, n, doze_byte_buffer_write, &buf, &e) != DOZE_OK) {
        cli_print_error(model_out, &e);
        goto done;
    }
    if (doze_model_load_memory(buf.data, buf.len, mp, &trained, &e) != DOZE_OK) {
        cli_print_error("the fine-tuned model", &e);
        goto done;
    }
    if (doze_finetune_finish_joint(f, trained, &e) != DOZE_OK) {
        cli_print_error("retune", &e);
        goto done;
    }
    intptr_t fd = io_open(model_out, "w");
    if (fd < 0) {
        err_printf("doze: cannot write %s\n", model_out);
        goto done;
    }
    rc = cli_write_fn(&fd, buf.data, buf.len) == 0 ? 0 : 1;
    io_close(fd);
    if (rc) err_printf("doze: cannot write %s\n", model_out);
done:
    doze_model_free(trained);
    free(buf.data);
    free(file);
    return rc;
}

int cmd_finetune(int argc, char **argv) {
    const char *path = cli_positional(argc, argv, 0);
    const char *text_path = cli_positional(argc, argv, 1);
    const char *out = cli_opt(argc, argv, "-o");
    int bad = 0;
    doze_train_params tp = doze_train_default_params();
    tp.budget = (float)cli_opt_float(argc, argv, "--budget", tp.budget, &bad);
    tp.total_steps = (int)cli_opt_int(argc, argv, "--steps", tp.total_steps, &bad);
    tp.context = (int)cli_opt_int(argc, argv, "--ctx", tp.context, &bad);
    tp.batch = (int)cli_opt_int(argc, argv, "--batch", tp.batch, &bad);
    tp.lr = (float)cli_opt_float(argc, argv, "--lr", tp.lr, &bad);
    tp.seed = (uint64_t)cli_opt_int(argc, argv, "--seed", (long long)tp.seed, &bad);
    tp.compute_weight = (float)cli_opt_float(argc, argv, "--compute-weight", tp.compute_weight, &bad);
    tp.dual_rate = (float)cli_opt_float(argc, argv, "--dual-rate", tp.dual_rate, &bad);
    tp.ffn_gates = !cli_flag(argc, argv, "--no-ffn-gates");
    tp.joint = cli_flag(argc, argv, "--joint");
    tp.weight_lr = (float)cli_opt_float(argc, argv, "--weight-lr", tp.weight_lr, &bad);
    const char *loss = cli_opt(argc, argv, "--loss");
    if (loss && strcmp(loss, "ce") == 0) tp.task_loss = DOZE_LOSS_CE;
    else if (loss && strcmp(loss, "kl") != 0) bad = 1;
    const char *range = cli_opt(argc, argv, "--budget-range");
    if (range && sscanf(range, "%f:%f", &tp.budget_lo, &tp.budget_hi) != 2) bad = 1;
    tp.dense_fraction = (float)cli_opt_float(argc, argv, "--dense-fraction", tp.dense_fraction, &bad);
    const char *model_out = cli_opt(argc, argv, "--model-out");
    int quiet = cli_flag(argc, argv, "--quiet");
    if (!path || !text_path || !out || bad || (tp.joint != (model_out != NULL))) {
        err_printf("usage: doze finetune MODEL TEXTFILE --budget B [--steps N] [--ctx T] [--batch B]\n"
                   "       [--lr LR] [--seed S] [--gates INIT] [--no-ffn-gates] -o GATES.gguf\n"
                   "       [--joint --model-out MODEL.gguf [--loss kl|ce] [--weight-lr LR]]\n"
                   "       [--budget-range LO:HI [--dense-fraction F]]\n"
                   "  --joint: the model's weights learn with its gates (MODEL a GGUF file); the\n"
                   "  fine-tuned model goes to --model-out, its gates to -o\n");
        return 2;
    }
    doze_model_params mp = doze_model_default_params();
    mp.context_length = tp.context > 512 ? tp.context : 512;
    doze_model *m = cli_load_model(path, &mp);
    if (!m) return 1;
    size_t n = 0;
    char *text = (char *)cli_read_file(text_path, &n);
    doze_error e;
    int rc = 1;
    doze_gates *init = NULL;
    doze_finetune *f = NULL;
    if (!text) goto done;
    if (cli_opt(argc, argv, "--gates") && !(init = cli_gates(argc, argv, m, 0, quiet))) goto done;
    double t0 = io_now_ms();
    if (doze_finetune_new(m, init, &tp, text, n, &f, &e) != DOZE_OK) {
        cli_print_error("finetune", &e);
        goto done;
    }
    if (!quiet)
        err_printf("doze: %d tokens of text; %s gates to start from (%.0f ms)\n", doze_finetune_tokens(f),
                   init ? "the given" : "training-free", io_now_ms() - t0);
    t0 = io_now_ms();
    for (int step = 0; step < tp.total_steps; step++) {
        doze_train_stats stats;
        double s0 = io_now_ms();
        if (doze_finetune_step(f, &stats, &e) != DOZE_OK) {
            cli_print_error("finetune", &e);
            goto done;
        }
        double ms = io_now_ms() - s0;
        if (!quiet || step == tp.total_steps - 1)
            out_printf("step %4d  loss %.4f  kl %.4f  compute %.3f (expected %.3f)  tau %.3f  %.0f tok/s\n",
                       stats.step, (double)stats.loss, (double)stats.kl,
                       (double)stats.achieved_compute, (double)stats.expected_compute,
                       (double)stats.tau, tp.batch * tp.context * 1000.0 / (ms + 1e-9));
    }
    double total_ms = io_now_ms() - t0;
    out_printf("trained %d steps of %d tokens in %.1f s: %.0f tok/s\n", tp.total_steps,
               tp.batch * tp.context, total_ms / 1000.0,
               (double)tp.total_steps * tp.batch * tp.context * 1000.0 / total_ms);
    if (tp.joint) {
        if (finish_joint(f, path, model_out, &mp) != 0) goto done;
    } else if (doze_finetune_finish(f, &e) != DOZE_OK) {
        cli_print_error("retune", &e);
        goto done;
    }
    intptr_t fd = io_open(out, "w");
    if (fd < 0) {
        err_printf("doze: cannot write %s\n", out);
        goto done;
    }
    rc = doze_gates_save(doze_finetune_gates(f), file_write, &fd, &e) == DOZE_OK ? 0 : cli_print_error(out, &e);
    io_close(fd);
done:
    doze_finetune_free(f);
    doze_gates_free(init);
    free(text);
    doze_model_free(m);
    return rc;
}
