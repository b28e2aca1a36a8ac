/* `doze train`: trains a whole model from scratch on a text (every weight;
 * the gate fine-tuning is `doze finetune`). The text is split into stories
 * at "<|endoftext|>" lines, each encoded with BOS by the vocabulary's
 * tokenizer and concatenated into one stream; every step draws `batch`
 * windows of ctx + 1 tokens at seeded random offsets. Prints the training
 * loss, the eval loss (on fixed windows of --eval's stream) and tokens/s;
 * writes checkpoints that --resume continues exactly. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byte_buffer.h"
#include "gguf.h"
#include "pool.h"
#include "tokenizer.h"
#include "vocab.h"
#include "cli_util.h"
#include "commands.h"

typedef struct {
    const doze_tokenizer *tok;
    int32_t *ids;
    size_t n, cap;
    long long bytes, stories;
    doze_error e;
    int failed;
} stream_ctx;

static int add_story(void *ctx, const char *s, size_t len) {
    stream_ctx *c = ctx;
    int need = 0;
    if (tokenizer_encode(c->tok, s, len, 1, NULL, 0, &need, &c->e) != DOZE_OK) return c->failed = 1;
    if (c->n + (size_t)need > c->cap) {
        size_t cap = c->cap ? c->cap : 1 << 16;
        while (cap < c->n + (size_t)need) cap *= 2;
        int32_t *ni = realloc(c->ids, cap * sizeof *ni);
        if (!ni) {
            c->e.code = DOZE_ERR_OUT_OF_MEMORY;
            strcpy(c->e.message, "out of memory encoding the text");
            return c->failed = 1;
        }
        c->ids = ni;
        c->cap = cap;
    }
    int got = 0;
    if (tokenizer_encode(c->tok, s, len, 1, c->ids + c->n, need, &got, &c->e) != DOZE_OK) return c->failed = 1;
    c->n += (size_t)got;
    c->bytes += (long long)len;
    c->stories++;
    return 0;
}

/* the text's stories as one stream of tokens; NULL (message printed) on failure */
static int encode_text(const char *path, const doze_tokenizer *tok, stream_ctx *c) {
    memset(c, 0, sizeof *c);
    c->tok = tok;
    size_t n = 0;
    char *text = (char *)cli_read_file(path, &n);
    if (!text) return 1;
    text_for_each_story(text, n, add_story, c);
    free(text);
    if (c->failed) return cli_print_error(path, &c->e);
    return 0;
}

/* The model or a checkpoint, saved over the previous one: serialized first,
 * then written beside it and renamed over it, so that a save that fails (a
 * full disk at step 9,000) keeps the checkpoint a run can resume from. */
static int save(const doze_full_trainer *t, const char *path, const char *name, int type, int with_state) {
    doze_byte_buffer b = {NULL, 0, 0};
    doze_error e;
    if (doze_full_trainer_save(t, name, type, with_state, doze_byte_buffer_write, &b, &e) != DOZE_OK) {
        free(b.data);
        return cli_print_error(path, &e);
    }
    const int rc = cli_write_replace(path, b.data, b.len);
    free(b.data);
    return rc;
}

static const char *const schedules[] = {"cosine", "linear", NULL};
static const char *const train_forms[] = {"TEXTFILE", NULL};
static const cli_option train_options[] = {
    {"-o", CLI_STRING, "MODEL.gguf", "where to write the model", NULL, 1},
    {"--vocab", CLI_STRING, "VOCAB", "the vocabulary (a GGUF: `doze vocab` writes one); required\n"
                                     "unless --resume", NULL, 0},
    {"--dim", CLI_INT, "D", "model width (default 128)", NULL, 0},
    {"--layers", CLI_INT, "L", "layers (default 4)", NULL, 0},
    {"--heads", CLI_INT, "H", "query heads (default 4)", NULL, 0},
    {"--kv-heads", CLI_INT, "K", "key/value heads (default: --heads)", NULL, 0},
    {"--hidden", CLI_INT, "F", "FFN width, each expert's with --experts (default: 8/3 dim,\n"
                               "rounded up to 32)", NULL, 0},
    {"--experts", CLI_INT, "E", "a mixture of E experts per layer (llama.cpp's MoE; default 0: a\n"
                                "dense FFN)", NULL, 0},
    {"--top-k", CLI_INT, "K", "--experts: experts each token runs (default 2)", NULL, 0},
    {"--balance-loss", CLI_FLOAT, "C", "--experts: weight of the load-balancing loss C E sum f_e P_e\n"
                                       "per layer (default 0.01)", NULL, 0},
    {"--ctx", CLI_INT, "T", "tokens per training window (default 256)", NULL, 0},
    {"--steps", CLI_INT, "N", "optimizer steps (default 1000); with --resume: extends the schedule", NULL, 0},
    {"--batch", CLI_INT, "B", "windows per step (default 8)", NULL, 0},
    {"--lr", CLI_FLOAT, "LR", "peak learning rate (default 0.001)", NULL, 0},
    {"--min-lr", CLI_FLOAT, "LR", "final learning rate (default: --lr / 10)", NULL, 0},
    {"--warmup", CLI_INT, "N", "warm-up steps (default: steps / 10, at most 100)", NULL, 0},
    {"--schedule", CLI_STRING, "S", "learning-rate decay after the warm-up (default cosine)", schedules, 0},
    {"--wd", CLI_FLOAT, "W", "AdamW weight decay (default 0.1)", NULL, 0},
    {"--clip", CLI_FLOAT, "C", "global gradient-norm clip (default 1)", NULL, 0},
    {"--seed", CLI_SEED, "S", "seed of the weights and the window draws (default 1)", NULL, 0},
    {"--untied", CLI_FLAG, NULL, "a classifier of its own (default: tied to the embedding)", NULL, 0},
    {"--threads", CLI_INT, "N", "threads (default 0: all cores; results do not depend on it)", NULL, 0},
    {"--eval", CLI_STRING, "TEXTFILE", "held-out text: eval loss on fixed windows of it", NULL, 0},
    {"--eval-every", CLI_INT, "N", "steps between evals (default 100; 0: at the end only)", NULL, 0},
    {"--eval-windows", CLI_INT, "N", "eval windows (default 64)", NULL, 0},
    {"--ckpt", CLI_STRING, "CKPT", "write the model with the optimizer state here (every\n"
                                   "--ckpt-every steps and at the end)", NULL, 0},
    {"--ckpt-every", CLI_INT, "N", "steps between checkpoints (default 0: at the end only)", NULL, 0},
    {"--resume", CLI_STRING, "CKPT", "continue from a checkpoint exactly (its shape, vocabulary and\n"
                                     "settings)", NULL, 0},
    {"--until", CLI_INT, "STEP", "stop after this step (default 0: at the end)", NULL, 0},
    {"--log-every", CLI_INT, "N", "steps between loss lines (default 10)", NULL, 0},
    {"--name", CLI_STRING, "NAME", "the model's general.name (default doze)", NULL, 0},
    {"--type", CLI_STRING, "TYPE", "weight type of the model written (default f32; the\n"
                                   "checkpoint stays f32)", cli_weight_types, 0},
    {"--gates", CLI_FLAG, NULL, "train the weights and the routers together (cross-entropy plus the\n"
                                "compute term); writes the model (f32) and its gate file", NULL, 0},
    {"--budget-range", CLI_STRING, "LO:HI", "--gates: each window's budget drawn from [LO, HI] (default 0.4:1)",
     NULL, 0},
    {"--dense-fraction", CLI_FLOAT, "F", "--gates: the share of windows run dense", NULL, 0},
    {"--gates-lr", CLI_FLOAT, "LR", "--gates: the routers' learning rate", NULL, 0},
    {"--gates-out", CLI_STRING, "GATES.gguf", "--gates: the gate file (default MODEL.gates.gguf)", NULL, 0},
    CLI_OPTIONS_END,
};
const cli_command cmd_train_spec = {
    "train", train_forms, 1, 1, "trains a whole model from scratch",
    "Trains every weight of a model from scratch on the text's stories (split at\n"
    "<|endoftext|> lines); prints train and eval loss and tokens/s; writes checkpoints\n"
    "that --resume continues exactly.",
    train_options,
};

/* --gates: the seeded initial model of t, then weights and routers trained
 * together by the joint fine-tuning run (cross-entropy, a budget range),
 * the model and its gates (retuned on the text) written together */
static int train_with_gates(const cli_args *a, doze_full_trainer *t, const char *text_path,
                            const char *out, const char *name) {
    const doze_full_params *q = doze_full_trainer_params(t);
    doze_train_params tp = doze_train_default_params();
    tp.joint = 1;
    tp.task_loss = DOZE_LOSS_CE;
    tp.context = q->context;
    tp.batch = q->batch;
    tp.total_steps = q->total_steps;
    tp.weight_lr = q->lr;
    tp.weight_lr_min = q->min_lr;
    tp.weight_warmup = q->warmup_steps;
    tp.weight_clip = q->grad_clip;
    tp.seed = q->seed;
    /* a mixture: its router and experts learn with the gates, balanced as the
     * full trainer would; the experts' constants do not exist before the
     * model does, so the training forward runs each token's top k and the
     * finish calibrates the constants on the trained model */
    tp.balance_loss = q->balance_loss;
    tp.moe_top_k = q->n_experts ? 1 : 0;
    tp.budget_lo = 0.4f;
    tp.budget_hi = 1.0f;
    const char *range = cli_get(a, "--budget-range");
    if (range && !cli_parse_range(range, &tp.budget_lo, &tp.budget_hi))
        return cli_usage_error(a, "--budget-range takes LO:HI, not \"%s\"", range);
    tp.dense_fraction = (float)cli_get_float(a, "--dense-fraction", tp.dense_fraction);
    tp.lr = (float)cli_get_float(a, "--gates-lr", tp.lr);
    char gates_path[1024];
    const char *gates_out = cli_get(a, "--gates-out");
    if (!gates_out) {
        size_t n = strlen(out);
        int cut = n > 5 && strcmp(out + n - 5, ".gguf") == 0 ? 5 : 0;
        snprintf(gates_path, sizeof gates_path, "%.*s.gates.gguf", (int)(n - (size_t)cut), out);
        gates_out = gates_path;
    }
    if (strcmp(gates_out, out) == 0) /* the second file would overwrite the first */
        return cli_usage_error(a, "-o (the model) and --gates-out (its gates) name the same file");
    doze_error e;
    doze_byte_buffer init = {NULL, 0, 0}, trained = {NULL, 0, 0}, gates = {NULL, 0, 0};
    doze_model *m = NULL, *m2 = NULL;
    doze_finetune *f = NULL;
    char *text = NULL;
    size_t text_n = 0;
    int rc = 1;
    doze_model_params mp = doze_model_default_params();
    mp.context_length = q->context;
    /* the joint run trains on the model's threads */
    mp.threads = q->threads > 0 ? q->threads : pool_default_threads();
    if (doze_full_trainer_save(t, name, DOZE_TYPE_F32, 0, doze_byte_buffer_write, &init, &e) != DOZE_OK ||
        doze_model_load_memory(init.data, init.len, &mp, &m, &e) != DOZE_OK) {
        cli_print_error("the initial model", &e);
        goto done;
    }
    if (!(text = (char *)cli_read_file(text_path, &text_n))) goto done;
    if (doze_finetune_new(m, NULL, &tp, text, text_n, &f, &e) != DOZE_OK) {
        cli_print_error("train --gates", &e);
        goto done;
    }
    out_printf("joint: weights and gates from scratch on %d tokens; %d steps of %d x %d, weight lr "
               "%g -> %g (%d warm-up), budgets %.2f..%.2f, %.0f%% of windows dense\n",
               doze_finetune_tokens(f), tp.total_steps, tp.batch, tp.context,
               (double)tp.weight_lr, (double)tp.weight_lr_min, tp.weight_warmup, (double)tp.budget_lo,
               (double)tp.budget_hi, 100.0 * tp.dense_fraction);
    if (q->n_experts)
        out_printf("mixture: %d experts, each token's top %d in training (the experts' constants are "
                   "calibrated on the trained model at the end), balance loss %g\n",
                   q->n_experts, q->n_experts_used, (double)q->balance_loss);
    long long log_every = cli_get_int(a, "--log-every", 10);
    double t0 = io_now_ms();
    for (int step = 0; step < tp.total_steps; step++) {
        doze_train_stats s;
        if (doze_finetune_step(f, &s, &e) != DOZE_OK) {
            cli_print_error("train --gates", &e);
            goto done;
        }
        if ((step + 1) % (log_every > 0 ? log_every : 10) == 0 || step + 1 == tp.total_steps || step == 0)
            out_printf("step %5d/%d  ce %.4f  loss %.4f  compute %.3f (expected %.3f)  tau %.3f  %.0f tok/s\n",
                       s.step, tp.total_steps, (double)s.kl, (double)s.loss, (double)s.achieved_compute,
                       (double)s.expected_compute, (double)s.tau,
                       (double)(step + 1) * tp.batch * tp.context * 1000.0 / (io_now_ms() - t0 + 1e-9));
    }
    if (doze_finetune_write_model(f, init.data, init.len, doze_byte_buffer_write, &trained, &e) != DOZE_OK ||
        doze_model_load_memory(trained.data, trained.len, &mp, &m2, &e) != DOZE_OK ||
        doze_finetune_finish_joint(f, m2, &e) != DOZE_OK) {
        cli_print_error(out, &e);
        goto done;
    }
    if (doze_gates_save(doze_finetune_gates(f), doze_byte_buffer_write, &gates, &e) != DOZE_OK) {
        cli_print_error(gates_out, &e);
        goto done;
    }
    /* the model and its gates, both or neither */
    const char *paths[2] = {out, gates_out};
    const void *bytes[2] = {trained.data, gates.data};
    const size_t lens[2] = {trained.len, gates.len};
    rc = cli_write_files(2, paths, bytes, lens);
    if (!rc) out_printf("wrote %s and its gates %s\n", out, gates_out);
done:
    free(gates.data);
    doze_finetune_free(f);
    doze_model_free(m2);
    doze_model_free(m);
    free(init.data);
    free(trained.data);
    free(text);
    return rc;
}

int cmd_train(int argc, char **argv) {
    cli_args a;
    int prc = cli_parse(&cmd_train_spec, argc, argv, &a);
    if (prc >= 0) return prc;
    const char *text_path = cli_pos(&a, 0);
    const char *out = cli_get(&a, "-o");
    const char *vocab_path = cli_get(&a, "--vocab");
    const char *resume = cli_get(&a, "--resume");
    const char *ckpt = cli_get(&a, "--ckpt");
    const char *eval_path = cli_get(&a, "--eval");
    const char *name = cli_get(&a, "--name");
    const char *sched = cli_get(&a, "--schedule");
    const char *type_name = cli_get(&a, "--type");
    static const char *const ints[] = {"--dim", "--layers", "--heads", "--kv-heads", "--hidden", "--ctx",
                                       "--steps", "--batch", "--warmup", "--threads", "--eval-every",
                                       "--eval-windows", "--ckpt-every", "--log-every", "--until",
                                       "--experts", "--top-k"};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        long long v = cli_get_int(&a, ints[i], 0);
        if (v < 0 || v > (1 << 30)) return cli_usage_error(&a, "%s must be in 0..%d", ints[i], 1 << 30);
    }
    static const char *const gates_only[] = {"--gates-out", "--budget-range", "--dense-fraction", "--gates-lr"};
    for (size_t i = 0; i < sizeof gates_only / sizeof gates_only[0]; i++)
        if (cli_has(&a, gates_only[i]) && !cli_has(&a, "--gates"))
            return cli_usage_error(&a, "%s goes with --gates", gates_only[i]);
    doze_full_params p = doze_full_default_params();
    p.dim = (int)cli_get_int(&a, "--dim", p.dim);
    p.n_layers = (int)cli_get_int(&a, "--layers", p.n_layers);
    p.n_heads = (int)cli_get_int(&a, "--heads", p.n_heads);
    p.n_kv_heads = (int)cli_get_int(&a, "--kv-heads", p.n_heads);
    /* SwiGLU's usual 8/3 dim, rounded up to a multiple of 32 */
    p.hidden_dim = (int)cli_get_int(&a, "--hidden", (8 * p.dim / 3 + 31) / 32 * 32);
    p.context = (int)cli_get_int(&a, "--ctx", p.context);
    p.total_steps = (int)cli_get_int(&a, "--steps", p.total_steps);
    p.batch = (int)cli_get_int(&a, "--batch", p.batch);
    p.lr = (float)cli_get_float(&a, "--lr", p.lr);
    p.min_lr = (float)cli_get_float(&a, "--min-lr", p.lr / 10);
    p.warmup_steps = (int)cli_get_int(&a, "--warmup", p.total_steps < 1000 ? p.total_steps / 10 : 100);
    p.weight_decay = (float)cli_get_float(&a, "--wd", p.weight_decay);
    p.grad_clip = (float)cli_get_float(&a, "--clip", p.grad_clip);
    p.seed = cli_get_seed(&a, "--seed", p.seed);
    p.threads = (int)cli_get_int(&a, "--threads", 0);
    p.tied = !cli_has(&a, "--untied");
    p.n_experts = (int)cli_get_int(&a, "--experts", 0);
    p.n_experts_used = (int)cli_get_int(&a, "--top-k", p.n_experts ? (p.n_experts < 2 ? p.n_experts : 2) : 0);
    p.balance_loss = (float)cli_get_float(&a, "--balance-loss", p.balance_loss);
    if (!p.n_experts && (cli_has(&a, "--top-k") || cli_has(&a, "--balance-loss")))
        return cli_usage_error(&a, "--top-k and --balance-loss need --experts E");
    if (cli_has(&a, "--experts") && p.n_experts < 2)
        return cli_usage_error(&a, "--experts %d: a mixture needs at least 2 experts", p.n_experts);
    if (p.n_experts && (p.n_experts_used < 1 || p.n_experts_used > p.n_experts))
        return cli_usage_error(&a, "--top-k %d: each token runs 1 to %d of the %d experts", p.n_experts_used,
                               p.n_experts, p.n_experts);
    if (resume && (cli_has(&a, "--experts") || cli_has(&a, "--top-k") || cli_has(&a, "--balance-loss")))
        return cli_usage_error(&a, "--resume continues the checkpoint's own mixture: no --experts, --top-k or "
                               "--balance-loss");
    if (sched) p.schedule = strcmp(sched, "linear") == 0 ? DOZE_LR_LINEAR : DOZE_LR_COSINE;
    long long eval_every = cli_get_int(&a, "--eval-every", 100);
    long long eval_windows = cli_get_int(&a, "--eval-windows", 64);
    long long ckpt_every = cli_get_int(&a, "--ckpt-every", 0);
    long long log_every = cli_get_int(&a, "--log-every", 10);
    long long until = cli_get_int(&a, "--until", 0); /* stop after this step (0: the end) */
    int type = type_name ? doze_type_from_name(type_name) : DOZE_TYPE_F32;
    if (!vocab_path && !resume) return cli_usage_error(&a, "missing --vocab VOCAB (or --resume CKPT)");
    if (eval_windows < 1) return cli_usage_error(&a, "--eval-windows must be >= 1");
    if (log_every < 1) return cli_usage_error(&a, "--log-every must be >= 1");
    if (!name) name = "doze";

    doze_error e;
    doze_full_trainer *t = NULL;
    uint8_t *file = NULL;
    size_t file_n = 0;
    gguf_header h;
    memset(&h, 0, sizeof h);
    doze_tokenizer *tok = NULL;
    stream_ctx train, eval;
    memset(&train, 0, sizeof train);
    memset(&eval, 0, sizeof eval);
    int32_t *batch = NULL, *ewin = NULL;
    int rc = 1, n_ewin = 0;

    /* the vocabulary: the given file, or the checkpoint's own */
    file = cli_read_file(resume ? resume : vocab_path, &file_n);
    if (!file) goto done;
    if (gguf_parse_header(file, file_n, &h, &e) != DOZE_OK || tokenizer_from_gguf(&h, &tok, &e) != DOZE_OK) {
        cli_print_error(resume ? resume : vocab_path, &e);
        goto done;
    }
    if (resume) {
        if (doze_full_trainer_resume(file, file_n, &t, &e) != DOZE_OK) {
            cli_print_error(resume, &e);
            goto done;
        }
        if (cli_has(&a, "--steps") &&
            doze_full_trainer_set_total_steps(t, p.total_steps, &e) != DOZE_OK) {
            cli_print_error("--steps", &e);
            goto done;
        }
        if (vocab_path) err_printf("doze: --resume: the checkpoint's own vocabulary is used, not %s\n", vocab_path);
    } else if (doze_full_trainer_new(&p, file, file_n, &t, &e) != DOZE_OK) {
        cli_print_error("train", &e);
        goto done;
    }
    free(file);
    file = NULL;
    if (cli_has(&a, "--gates")) {
        if (resume) {
            err_printf("doze: train --gates does not resume\n");
            goto done;
        }
        rc = train_with_gates(&a, t, text_path, out, name);
        goto done;
    }
    p = *doze_full_trainer_params(t);
    const int T = p.context;

    double t0 = io_now_ms();
    if (encode_text(text_path, tok, &train)) goto done;
    if (train.n < (size_t)T + 1) {
        err_printf("doze: %s has %zu tokens: fewer than one window of %d\n", text_path, train.n, T + 1);
        goto done;
    }
    if (eval_path) {
        if (encode_text(eval_path, tok, &eval)) goto done;
        n_ewin = (int)((eval.n - 1) / (size_t)T);
        if (n_ewin > eval_windows) n_ewin = (int)eval_windows;
        if (n_ewin < 1) {
            err_printf("doze: %s has %zu tokens: fewer than one window of %d\n", eval_path, eval.n, T + 1);
            goto done;
        }
        ewin = malloc((size_t)n_ewin * (T + 1) * sizeof *ewin);
        if (!ewin) goto done;
        for (int w = 0; w < n_ewin; w++)
            memcpy(ewin + (size_t)w * (T + 1), eval.ids + (size_t)w * T, (size_t)(T + 1) * sizeof *ewin);
    }
    batch = malloc((size_t)p.batch * (T + 1) * sizeof *batch);
    if (!batch) goto done;
    const doze_full_params *q = &p;
    out_printf("model: dim %d, hidden %d, %d layers, %d heads (%d kv), vocab %d, ctx %d, %s classifier\n",
               q->dim, q->hidden_dim, q->n_layers, q->n_heads, q->n_kv_heads,
               doze_full_trainer_vocab_size(t), T, q->tied ? "tied" : "untied");
    if (q->n_experts)
        out_printf("mixture: %d experts of hidden %d per layer, top-%d, balance loss %g\n", q->n_experts,
                   q->hidden_dim, q->n_experts_used, (double)q->balance_loss);
    out_printf("train: %lld stories, %zu tokens (%.3f tokens/byte); %d steps of %d x %d tokens (%.2f epochs), "
               "lr %g -> %g (%s, %d warm-up), wd %g, clip %g, seed %llu, %s\n",
               train.stories, train.n, (double)train.n / (double)train.bytes, q->total_steps, q->batch, T,
               (double)q->total_steps * q->batch * T / (double)train.n, (double)q->lr, (double)q->min_lr,
               q->schedule == DOZE_LR_LINEAR ? "linear" : "cosine", q->warmup_steps,
               (double)q->weight_decay, (double)q->grad_clip, (unsigned long long)q->seed,
               resume ? "resumed" : "from scratch");
    if (eval_path)
        out_printf("eval: %lld stories, %zu tokens; %d windows of %d tokens (encoded in %.1f s)\n",
                   eval.stories, eval.n, n_ewin, T, (io_now_ms() - t0) / 1000.0);

    const int start = doze_full_trainer_steps_done(t);
    const int end = until > 0 && until < q->total_steps ? (int)until : q->total_steps;
    double run_ms = 0, window_ms = 0, eval_ms = 0;
    long long window_tokens = 0;
    for (int step = start; step < end; step++) {
        doze_full_stats s;
        double s0 = io_now_ms();
        if (doze_full_trainer_sample(t, train.ids, train.n, batch, &e) != DOZE_OK ||
            doze_full_trainer_step(t, batch, &s, &e) != DOZE_OK) {
            cli_print_error("train", &e);
            goto done;
        }
        double ms = io_now_ms() - s0;
        run_ms += ms;
        window_ms += ms;
        window_tokens += (long long)q->batch * T;
        int last = step + 1 == end;
        if ((step + 1) % log_every == 0 || last || step == start) {
            char bal[48] = "";
            if (q->n_experts) snprintf(bal, sizeof bal, "  balance %.4f", (double)s.balance);
            out_printf("step %5d/%d  loss %.4f%s  lr %.2e  gnorm %.3f  %.0f tok/s\n", s.step, q->total_steps,
                       (double)s.loss, bal, (double)s.lr, (double)s.grad_norm,
                       window_tokens * 1000.0 / (window_ms + 1e-9));
            window_ms = 0;
            window_tokens = 0;
        }
        if (n_ewin && ((eval_every && (step + 1) % eval_every == 0) || last)) {
            double e0 = io_now_ms(), loss;
            if (doze_full_trainer_eval(t, ewin, n_ewin, &loss, &e) != DOZE_OK) {
                cli_print_error("eval", &e);
                goto done;
            }
            eval_ms += io_now_ms() - e0;
            double per_byte = loss * (double)eval.n / (double)eval.bytes;
            out_printf("eval  %5d  loss %.4f  ppl %.3f  (~%.4f nats/byte, %.4f bits/byte)\n", s.step, loss,
                       exp(loss), per_byte, per_byte / log(2.0));
        }
        if (ckpt && ((ckpt_every && (step + 1) % ckpt_every == 0) || last)) {
            if (save(t, ckpt, name, DOZE_TYPE_F32, 1) || save(t, out, name, type, 0)) goto done;
            out_printf("saved %s and %s at step %d\n", ckpt, out, s.step);
        }
    }
    long long done_tokens = (long long)(end > start ? end - start : 0) * q->batch * T;
    out_printf("trained %d steps (%lld tokens) in %.1f s: %.0f tok/s (eval %.1f s more)\n",
               end > start ? end - start : 0, done_tokens, run_ms / 1000.0,
               done_tokens * 1000.0 / (run_ms + 1e-9), eval_ms / 1000.0);
    rc = save(t, out, name, type, 0);
done:
    doze_full_trainer_free(t);
    tokenizer_free(tok);
    gguf_header_free(&h);
    free(file);
    free(train.ids);
    free(eval.ids);
    free(batch);
    free(ewin);
    return rc;
}
