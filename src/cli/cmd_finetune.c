/* `doze finetune`: trains the gates of a model on a text by backprop (the
 * base weights stay frozen), retunes the budget table on the text and
 * writes the gate file. The run itself is doze_finetune_* (src/finetune.c),
 * the same code the JS finetuneGates drives. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "commands.h"

static int file_write(void *ctx, const void *bytes, size_t n) { return cli_write_fn(ctx, bytes, n); }

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
    int quiet = cli_flag(argc, argv, "--quiet");
    if (!path || !text_path || !out || bad) {
        err_printf("usage: doze finetune MODEL TEXTFILE --budget B [--steps N] [--ctx T] [--batch B]\n"
                   "       [--lr LR] [--seed S] [--gates INIT] [--no-ffn-gates] -o GATES.gguf\n");
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
    if (doze_finetune_finish(f, &e) != DOZE_OK) {
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
