/* `doze order-ffn`: rewrites a model with each layer's FFN channels grouped
 * into blocks by what they contribute on calibration text (issue 8; the
 * method is in src/ffn_order.c), so that FFN blocks skip at less cost. */
#include <stdlib.h>

#include "cli_util.h"
#include "commands.h"

/* opens the output on the first write, so that a rewrite that fails
 * before writing leaves no file behind */
typedef struct {
    const char *path;
    intptr_t fd;
} lazy_file;

static int lazy_write(void *ctx, const void *bytes, size_t n) {
    lazy_file *f = ctx;
    if (f->fd < 0 && (f->fd = io_open(f->path, "w")) < 0) return 1;
    return io_write(f->fd, bytes, n);
}

int cmd_order(int argc, char **argv) {
    const char *path = cli_positional(argc, argv, 0);
    const char *calib = cli_opt(argc, argv, "--calib");
    const char *out = cli_opt(argc, argv, "-o");
    int bad = 0;
    doze_ffn_order_params p = doze_ffn_order_default_params();
    p.max_tokens = (int)cli_opt_int(argc, argv, "--tokens", p.max_tokens, &bad);
    p.keep = (float)cli_opt_float(argc, argv, "--keep", p.keep, &bad);
    p.tries_per_channel = (int)cli_opt_int(argc, argv, "--tries", p.tries_per_channel, &bad);
    p.seed = (uint64_t)cli_opt_int(argc, argv, "--seed", (long long)p.seed, &bad);
    if (!path || !calib || !out || bad) {
        err_printf("usage: doze order-ffn MODEL --calib TEXTFILE [--tokens N] [--keep F] [--tries N] [--seed S]\n"
                   "       -o OUT.gguf\n");
        return 2;
    }
    size_t n = 0;
    uint8_t *file = cli_read_file(path, &n);
    if (!file) return 1;
    doze_error e;
    doze_model_params mp = doze_model_default_params();
    doze_model *m = NULL;
    int32_t *ids = NULL, *perm = NULL;
    float *kept = NULL;
    int rc = 1, n_ids = 0;
    if (doze_model_load_memory(file, n, &mp, &m, &e) != DOZE_OK) {
        cli_print_error(path, &e);
        goto done;
    }
    const doze_model_info *c = doze_model_get_info(m);
    /* about 4 bytes of English per token: enough text for max_tokens */
    ids = cli_encode_file(m, calib, (size_t)p.max_tokens * 8u + 64u, &n_ids, &e);
    if (!ids) {
        cli_print_error(calib, &e);
        goto done;
    }
    perm = malloc((size_t)c->n_layers * (size_t)c->hidden_dim * sizeof *perm);
    kept = malloc((size_t)c->n_layers * 2 * sizeof *kept);
    if (!perm || !kept) {
        err_printf("doze: out of memory\n");
        goto done;
    }
    /* the file must be rewritable (f32/f16 ffn_down, ...) before the search */
    if (doze_ffn_order_check(file, n, c->n_layers, c->hidden_dim, &e) != DOZE_OK) {
        cli_print_error(path, &e);
        goto done;
    }
    double t0 = io_now_ms();
    if (doze_ffn_order(m, ids, n_ids, &p, perm, kept, &e) != DOZE_OK) {
        cli_print_error("order-ffn", &e);
        goto done;
    }
    int nb = doze_model_ffn_blocks(m), used = n_ids < p.max_tokens ? n_ids : p.max_tokens;
    err_printf("doze: FFN channels ordered on up to %d tokens in %.1f s\n", used, (io_now_ms() - t0) / 1000.0);
    out_printf("share of each token's FFN contribution kept by its top %d of %d blocks (of %d channels),\n"
               "before -> after the order\n",
               (int)(p.keep * (float)nb + 0.5f), nb, doze_model_ffn_block(m));
    for (int l = 0; l < c->n_layers; l++)
        out_printf("layer %2d: %.4f -> %.4f\n", l, (double)kept[2 * l], (double)kept[2 * l + 1]);
    lazy_file lf = {out, -1};
    rc = doze_ffn_order_write(file, n, perm, c->n_layers, c->hidden_dim, lazy_write, &lf, &e) == DOZE_OK
             ? 0
             : cli_print_error(out, &e);
    if (lf.fd >= 0) io_close(lf.fd);
done:
    free(kept);
    free(perm);
    free(ids);
    doze_model_free(m);
    free(file);
    return rc;
}
