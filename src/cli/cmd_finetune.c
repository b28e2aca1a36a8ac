/* `doze finetune`: trains the gates of a model on a text by backprop
 * (the base weights stay frozen), then retunes the budget table on the text
 * and writes the gate file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "commands.h"

static const char separator[] = "<|endoftext|>";

/* The text as one token stream: each story (split at <|endoftext|> lines)
 * encoded with BOS; starts[] gets each story's first index. */
static int32_t *encode_stories(doze_model *m, const char *text, size_t n, int *n_tokens,
                               int **starts, int *n_starts, doze_error *e) {
    size_t cap = n / 2 + 1024, len = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    int st_cap = 1024, ns = 0;
    int *st = malloc((size_t)st_cap * sizeof *st);
    size_t at = 0;
    while (ids && st && at < n) {
        const char *sep = strstr(text + at, separator);
        size_t end = sep ? (size_t)(sep - text) : n;
        size_t a = at, b = end;
        while (a < b && (text[a] == '\n' || text[a] == '\r')) a++;
        while (b > a && (text[b - 1] == '\n' || text[b - 1] == '\r')) b--;
        if (b > a) {
            int need = 0;
            if (doze_tokenize(m, text + a, b - a, 1, NULL, 0, &need, e) != DOZE_OK) goto fail;
            while (len + (size_t)need > cap) {
                cap *= 2;
                int32_t *nb = realloc(ids, cap * sizeof *ids);
                if (!nb) goto fail;
                ids = nb;
            }
            if (ns == st_cap) {
                st_cap *= 2;
                int *nst = realloc(st, (size_t)st_cap * sizeof *st);
                if (!nst) goto fail;
                st = nst;
            }
            st[ns++] = (int)len;
            int got = 0;
            if (doze_tokenize(m, text + a, b - a, 1, ids + len, need, &got, e) != DOZE_OK) goto fail;
            len += (size_t)got;
        }
        at = sep ? end + sizeof separator - 1 : n;
    }
    if (!ids || !st) goto fail;
    *n_tokens = (int)len;
    *starts = st;
    *n_starts = ns;
    return ids;
fail:
    free(ids);
    free(st);
    return NULL;
}

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
    int quiet = cli_flag(argc, argv, "--quiet");
    if (!path || !text_path || !out || bad) {
        err_printf("usage: doze finetune MODEL TEXTFILE --budget B [--steps N] [--ctx T] [--batch B]\n"
                   "       [--lr LR] [--seed S] [--gates INIT] -o GATES.gguf\n");
        return 2;
    }
    doze_model_params mp = doze_model_default_params();
    mp.context_length = tp.context > 512 ? tp.context : 512;
    doze_model *m = cli_load_model(path, &mp);
    if (!m) return 1;
    size_t n = 0;
    char *text = (char *)cli_read_file(text_path, &n);
    doze_error e;
    int rc = 1, n_tokens = 0, n_starts = 0, *starts = NULL;
    int32_t *ids = NULL, *batch = NULL;
    doze_gates *g = NULL;
    doze_trainer *t = NULL;
    if (!text) goto done;
    char *z = realloc(text, n + 1); /* NUL-terminate for strstr */
    if (!z) goto done;
    text = z;
    text[n] = '\0';
    ids = encode_stories(m, text, n, &n_tokens, &starts, &n_starts, &e);
    if (!ids) {
        cli_print_error("tokenize", &e);
        goto done;
    }
    if (n_tokens < tp.context + 1) {
        err_printf("doze: %s has %d tokens, fewer than one window of %d\n", text_path, n_tokens, tp.context);
        goto done;
    }
    /* initial gates: a file, or the training-free router on the text */
    char *calib_argv[64];
    int calib_argc = 0;
    for (int i = 0; i < argc && calib_argc < 60; i++) calib_argv[calib_argc++] = argv[i];
    if (!cli_opt(argc, argv, "--gates") && !cli_opt(argc, argv, "--calib")) {
        calib_argv[calib_argc++] = "--calib";
        calib_argv[calib_argc++] = (char *)text_path;
    }
    calib_argv[calib_argc] = NULL;
    g = cli_gates(calib_argc, calib_argv, m, 1, quiet);
    if (!g) goto done;
    if (doze_trainer_new(m, g, &tp, &t, &e) != DOZE_OK) {
        cli_print_error("finetune", &e);
        goto done;
    }
    batch = malloc((size_t)tp.batch * tp.context * sizeof *batch);
    if (!batch) goto done;
    uint64_t r = tp.seed * 0x9E3779B97F4A7C15ull + 7;
    double t0 = io_now_ms();
    for (int step = 0; step < tp.total_steps; step++) {
        /* windows from the start of randomly drawn stories (BOS first) */
        for (int b = 0; b < tp.batch; b++) {
            r ^= r >> 12, r ^= r << 25, r ^= r >> 27;
            int s = (int)(((r * 0x2545F4914F6CDD1Dull) >> 33) % (uint64_t)n_starts);
            int at = starts[s];
            if (at + tp.context > n_tokens) at = n_tokens - tp.context;
            memcpy(batch + (size_t)b * tp.context, ids + at, (size_t)tp.context * sizeof *batch);
            batch[(size_t)b * tp.context] = ids[starts[0]]; /* BOS */
        }
        doze_train_stats stats;
        double s0 = io_now_ms();
        if (doze_trainer_step(t, batch, &stats, &e) != DOZE_OK) {
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
    if (doze_gates_retune(m, g, ids, n_tokens < 512 ? n_tokens : 512, &e) != DOZE_OK) {
        cli_print_error("retune", &e);
        goto done;
    }
    intptr_t fd = io_open(out, "w");
    if (fd < 0) {
        err_printf("doze: cannot write %s\n", out);
        goto done;
    }
    rc = doze_gates_save(g, file_write, &fd, &e) == DOZE_OK ? 0 : cli_print_error(out, &e);
    io_close(fd);
done:
    doze_trainer_free(t);
    doze_gates_free(g);
    free(batch);
    free(ids);
    free(starts);
    free(text);
    doze_model_free(m);
    return rc;
}
