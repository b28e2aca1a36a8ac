/* `doze order-ffn`: rewrites a model with each layer's FFN channels grouped
 * into blocks by what they contribute on calibration text (the
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

static const char *const order_forms[] = {"MODEL", NULL};
static const cli_option order_options[] = {
    {"--calib", CLI_STRING, "TEXTFILE", "the text whose FFN activity decides the order", NULL, 1},
    {"-o", CLI_STRING, "OUT.gguf", "where to write the reordered model", NULL, 1},
    {"--tokens", CLI_INT, "N", "tokens of the text to use (default 4096)", NULL, 0},
    {"--keep", CLI_FLOAT, "F", "the share of blocks the order is tuned to keep (default 0.6)", NULL, 0},
    {"--tries", CLI_INT, "N", "swap tries per channel in the search (default 40)", NULL, 0},
    {"--seed", CLI_SEED, "S", "seed of the search (default 1)", NULL, 0},
    CLI_FFN_BLOCK_OPTION,
    CLI_OPTIONS_END,
};
const cli_command cmd_order_spec = {
    "order-ffn", order_forms, 1, 1, "groups each layer's FFN channels into blocks that skip well",
    "The same model with each layer's FFN channels grouped into blocks by what they\n"
    "contribute on the text, so that FFN blocks skip at less cost (f32/f16 ffn_down).",
    order_options,
};

int cmd_order(int argc, char **argv) {
    cli_args a;
    int prc = cli_parse(&cmd_order_spec, argc, argv, &a);
    if (prc >= 0) return prc;
    const char *path = cli_pos(&a, 0);
    const char *calib = cli_get(&a, "--calib");
    const char *out = cli_get(&a, "-o");
    doze_ffn_order_params p = doze_ffn_order_default_params();
    if (cli_get_int(&a, "--tokens", 1) < 1 || cli_get_int(&a, "--tokens", 1) > (1 << 28))
        return cli_usage_error(&a, "--tokens must be in 1..%d", 1 << 28);
    if (cli_get_int(&a, "--tries", 1) < 0 || cli_get_int(&a, "--tries", 1) > (1 << 20))
        return cli_usage_error(&a, "--tries must be in 0..%d", 1 << 20);
    p.max_tokens = (int)cli_get_int(&a, "--tokens", p.max_tokens);
    p.keep = (float)cli_get_float(&a, "--keep", p.keep);
    p.tries_per_channel = (int)cli_get_int(&a, "--tries", p.tries_per_channel);
    p.seed = cli_get_seed(&a, "--seed", p.seed);
    doze_model_params mp = doze_model_default_params();
    if (cli_ffn_block_option(&a, &mp)) return 2;
    size_t n = 0;
    uint8_t *file = cli_read_file(path, &n);
    if (!file) return 1;
    doze_error e;
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
