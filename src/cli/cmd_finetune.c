/* `doze finetune`: trains the gates of a model on a text by backprop (the
 * base weights stay frozen), retunes the budget table on the text and
 * writes the gate file. The run itself is doze_finetune_* (src/finetune.c),
 * the same code the JS finetuneGates drives. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byte_buffer.h"
#include "cli_util.h"
#include "commands.h"

/* joint: writes the fine-tuned model into *model (written to a file with
 * its gates, later), loads it, retunes the gates on it */
static int finish_joint(doze_finetune *f, const char *path, const char *model_out,
                        const doze_model_params *mp, doze_byte_buffer *model) {
    size_t n = 0;
    void *file = cli_read_file(path, &n);
    if (!file) return 1;
    doze_model *trained = NULL;
    doze_error e;
    int rc = 1;
    if (doze_finetune_write_model(f, file, n, doze_byte_buffer_write, model, &e) != DOZE_OK) {
        cli_print_error(model_out, &e);
        goto done;
    }
    if (doze_model_load_memory(model->data, model->len, mp, &trained, &e) != DOZE_OK) {
        cli_print_error("the fine-tuned model", &e);
        goto done;
    }
    if (doze_finetune_finish_joint(f, trained, &e) != DOZE_OK) {
        cli_print_error("retune", &e);
        goto done;
    }
    rc = 0;
done:
    doze_model_free(trained);
    free(file);
    return rc;
}


static const char *const finetune_forms[] = {"MODEL TEXTFILE", NULL};
static const char *const finetune_losses[] = {"kl", "ce", NULL};
static const cli_option finetune_options[] = {
    {"-o", CLI_STRING, "GATES.gguf", "where to write the trained gates", NULL, 1},
    {"--budget", CLI_FLOAT, "B", "the compute budget to train for, in (0, 1] (default 0.7)", NULL, 0},
    {"--steps", CLI_INT, "N", "training steps (default 400)", NULL, 0},
    {"--ctx", CLI_INT, "T", "tokens per story window (default 128)", NULL, 0},
    {"--batch", CLI_INT, "B", "stories per step (default 8)", NULL, 0},
    {"--lr", CLI_FLOAT, "LR", "learning rate (default 0.02)", NULL, 0},
    {"--seed", CLI_SEED, "S", "seed of the story draws and the relaxation's noise (default 1)", NULL, 0},
    {"--gates", CLI_STRING, "INIT", "start from this gate file (default: training-free gates\n"
                                    "calibrated on the text)", NULL, 0},
    {"--compute-weight", CLI_FLOAT, "W", "weight of the compute term in the loss (default 20)", NULL, 0},
    {"--dual-rate", CLI_FLOAT, "R", "step size of the compute weight's dual update (default 0: fixed)", NULL, 0},
    {"--no-ffn-gates", CLI_FLAG, NULL, "train head and layer gates only, not FFN blocks", NULL, 0},
    {"--quiet", CLI_FLAG, NULL, "print only the last step", NULL, 0},
    {"--joint", CLI_FLAG, NULL, "the model's weights learn with its gates (needs --model-out)", NULL, 0},
    {"--model-out", CLI_STRING, "MODEL.gguf", "--joint: where the fine-tuned model goes", NULL, 0},
    {"--loss", CLI_STRING, "L", "kl (distillation from the dense model, default) or ce (the text's next\n"
                                "tokens), for gates alone and for --joint", finetune_losses, 0},
    {"--weight-lr", CLI_FLOAT, "LR", "--joint: the weights' learning rate (default 5e-4)", NULL, 0},
    {"--weight-lr-min", CLI_FLOAT, "LR", "--joint: the weights' rate decays to this along a cosine (default: constant)", NULL, 0},
    {"--weight-warmup", CLI_INT, "N", "--joint: steps of linear warm-up of the weights' rate (default 0)", NULL, 0},
    {"--weight-anchor", CLI_FLOAT, "A", "--joint: the weights also decay towards the model's own at rate A\n"
                                        "(default 0: free to drift)", NULL, 0},
    {"--weight-ema", CLI_FLOAT, "D", "--joint: write the moving average of the weights over the steps\n"
                                     "(decay D in (0, 1), e.g. 0.999) instead of the last step's", NULL, 0},
    {"--noise-end", CLI_FLOAT, "S", "the decisions' noise falls linearly from 1 to S by the last step (default 1)", NULL, 0},
    {"--lora", CLI_INT, "R", "--joint: rank-R adapters on the projections instead of every weight,\n"
                             "merged into the model written", NULL, 0},
    {"--balance-loss", CLI_FLOAT, "C", "--joint on a mixture of experts: weight of the load-balancing\n"
                                       "loss (default 0.01)", NULL, 0},
    {"--budget-range", CLI_STRING, "LO:HI", "each window draws its budget from [LO, HI]", NULL, 0},
    {"--dense-fraction", CLI_FLOAT, "F", "with --budget-range: the share of windows run dense", NULL, 0},
    CLI_THREADS_OPTION,
    CLI_FFN_BLOCK_OPTION,
    CLI_OPTIONS_END,
};
const cli_command cmd_finetune_spec = {
    "finetune", finetune_forms, 2, 2, "trains the gates by backprop (base weights frozen)",
    "Trains the gates on the text by backprop through the frozen model towards the budget,\n"
    "prints loss and compute per step, retunes the budget table and writes the gate file.",
    finetune_options,
};

int cmd_finetune(int argc, char **argv) {
    cli_args a;
    int prc = cli_parse(&cmd_finetune_spec, argc, argv, &a);
    if (prc >= 0) return prc;
    const char *path = cli_pos(&a, 0);
    const char *text_path = cli_pos(&a, 1);
    const char *out = cli_get(&a, "-o");
    doze_train_params tp = doze_train_default_params();
    tp.budget = (float)cli_get_float(&a, "--budget", tp.budget);
    tp.total_steps = (int)cli_get_int(&a, "--steps", tp.total_steps);
    tp.context = (int)cli_get_int(&a, "--ctx", tp.context);
    tp.batch = (int)cli_get_int(&a, "--batch", tp.batch);
    tp.lr = (float)cli_get_float(&a, "--lr", tp.lr);
    tp.seed = cli_get_seed(&a, "--seed", tp.seed);
    tp.compute_weight = (float)cli_get_float(&a, "--compute-weight", tp.compute_weight);
    tp.dual_rate = (float)cli_get_float(&a, "--dual-rate", tp.dual_rate);
    tp.ffn_gates = !cli_has(&a, "--no-ffn-gates");
    tp.joint = cli_has(&a, "--joint");
    tp.weight_lr = (float)cli_get_float(&a, "--weight-lr", tp.weight_lr);
    tp.weight_lr_min = (float)cli_get_float(&a, "--weight-lr-min", tp.weight_lr_min);
    tp.weight_warmup = (int)cli_get_int(&a, "--weight-warmup", tp.weight_warmup);
    tp.weight_anchor = (float)cli_get_float(&a, "--weight-anchor", tp.weight_anchor);
    tp.weight_ema = (float)cli_get_float(&a, "--weight-ema", tp.weight_ema);
    tp.lora_rank = (int)cli_get_int(&a, "--lora", tp.lora_rank);
    tp.noise_end = (float)cli_get_float(&a, "--noise-end", tp.noise_end);
    tp.balance_loss = (float)cli_get_float(&a, "--balance-loss", tp.balance_loss);
    /* the weights' options would do nothing without --joint: say so, do not ignore them */
    static const char *const joint_only[] = {"--balance-loss", "--weight-lr", "--weight-lr-min", "--weight-warmup"};
    for (size_t i = 0; i < sizeof joint_only / sizeof joint_only[0]; i++)
        if (cli_has(&a, joint_only[i]) && !tp.joint) return cli_usage_error(&a, "%s goes with --joint", joint_only[i]);
    const char *loss = cli_get(&a, "--loss");
    if (loss && strcmp(loss, "ce") == 0) tp.task_loss = DOZE_LOSS_CE;
    const char *range = cli_get(&a, "--budget-range");
    if (range && !cli_parse_range(range, &tp.budget_lo, &tp.budget_hi))
        return cli_usage_error(&a, "--budget-range takes LO:HI, not \"%s\"", range);
    tp.dense_fraction = (float)cli_get_float(&a, "--dense-fraction", tp.dense_fraction);
    if (cli_has(&a, "--dense-fraction") && !range) /* one budget has no dense windows: say so, do not ignore it */
        return cli_usage_error(&a, "--dense-fraction goes with --budget-range (one budget with dense windows: "
                                   "--budget-range B:B)");
    if (cli_has(&a, "--no-ffn-gates") && cli_has(&a, "--gates")) /* it shapes the gates made, not given ones */
        return cli_usage_error(&a, "--no-ffn-gates shapes the training-free gates a run starts from: not with "
                                   "--gates (make INIT with doze gates --no-ffn-gates)");
    const char *model_out = cli_get(&a, "--model-out");
    if (tp.joint != (model_out != NULL)) return cli_usage_error(&a, "--joint and --model-out go together");
    if (model_out && strcmp(model_out, out) == 0) /* the second file would overwrite the first */
        return cli_usage_error(&a, "-o (the gates) and --model-out (the model) name the same file");
    int quiet = cli_has(&a, "--quiet");
    if (cli_get_int(&a, "--steps", 1) < 1 || cli_get_int(&a, "--steps", 1) > (1 << 30))
        return cli_usage_error(&a, "--steps must be in 1..%d", 1 << 30);
    doze_model_params mp = doze_model_default_params();
    mp.context_length = tp.context > 512 ? tp.context : 512;
    if (cli_threads_option(&a, &mp) || cli_ffn_block_option(&a, &mp)) return 2;
    doze_model *m = cli_load_model(path, &mp);
    if (!m) return 1;
    size_t n = 0;
    char *text = (char *)cli_read_file(text_path, &n);
    doze_error e;
    int rc = 1;
    doze_gates *init = NULL;
    doze_finetune *f = NULL;
    doze_byte_buffer model_file = {NULL, 0, 0}, gates_file = {NULL, 0, 0};
    if (!text) goto done;
    if (cli_has(&a, "--gates") && !(init = cli_gates(&a, m, 0, quiet))) goto done;
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
        if (finish_joint(f, path, model_out, &mp, &model_file) != 0) goto done;
    } else if (doze_finetune_finish(f, &e) != DOZE_OK) {
        cli_print_error("retune", &e);
        goto done;
    }
    if (doze_gates_save(doze_finetune_gates(f), doze_byte_buffer_write, &gates_file, &e) != DOZE_OK) {
        cli_print_error(out, &e);
        goto done;
    }
    /* joint: the model and its gates, both or neither */
    const char *paths[2] = {out, model_out};
    const void *bytes[2] = {gates_file.data, model_file.data};
    const size_t lens[2] = {gates_file.len, model_file.len};
    rc = cli_write_files(tp.joint ? 2 : 1, paths, bytes, lens);
done:
    free(model_file.data);
    free(gates_file.data);
    doze_finetune_free(f);
    doze_gates_free(init);
    free(text);
    doze_model_free(m);
    return rc;
}
