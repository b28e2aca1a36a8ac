/* `doze init` and `doze convert`: commands that write GGUF files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "cli_util.h"
#include "commands.h"

static int write_builder(gguf_builder *b, const char *out_path) {
    intptr_t fd = io_open(out_path, "w");
    if (fd < 0) {
        err_printf("doze: cannot write %s\n", out_path);
        return 1;
    }
    doze_error e;
    doze_status st = gguf_writer_write(b->w, cli_write_fn, &fd, &e);
    io_close(fd);
    if (st != DOZE_OK) return cli_print_error(out_path, &e);
    return 0;
}

static int parse_type(int argc, char **argv, int def) {
    const char *t = cli_opt(argc, argv, "--type");
    if (!t) return def;
    int type = convert_type_from_name(t);
    if (type < 0)
        err_printf("doze: unknown --type \"%s\" (f32, f16, bf16, q8_0, q4_0, q4_k, q5_k, q6_k or q4_k_m)\n", t);
    return type;
}

int cmd_init(int argc, char **argv) {
    int bad = 0;
    doze_init_params p;
    memset(&p, 0, sizeof p);
    p.dim = (int)cli_opt_int(argc, argv, "--dim", 64, &bad);
    p.hidden_dim = (int)cli_opt_int(argc, argv, "--hidden", 172, &bad);
    p.n_layers = (int)cli_opt_int(argc, argv, "--layers", 2, &bad);
    p.n_heads = (int)cli_opt_int(argc, argv, "--heads", 4, &bad);
    p.n_kv_heads = (int)cli_opt_int(argc, argv, "--kv-heads", p.n_heads, &bad);
    p.vocab_size = (int)cli_opt_int(argc, argv, "--vocab", 512, &bad);
    p.context_length = (int)cli_opt_int(argc, argv, "--ctx", 256, &bad);
    p.seed = (uint64_t)cli_opt_int(argc, argv, "--seed", 1, &bad);
    p.type = parse_type(argc, argv, DOZE_TYPE_F32);
    p.arch = cli_opt(argc, argv, "--arch");
    p.head_dim = (int)cli_opt_int(argc, argv, "--head-dim", 0, &bad);
    const char *out = cli_opt(argc, argv, "-o");
    if (bad || p.type < 0 || !out) {
        err_printf("usage: doze init --dim D --hidden H --layers L --heads NH --kv-heads NKV "
                   "--vocab V --ctx T --seed S [--type T] [--arch llama|llama3|qwen2|qwen3] "
                   "[--head-dim HD] -o OUT.gguf\n");
        return 2;
    }
    gguf_builder b;
    doze_error e;
    if (gguf_builder_init(&b, &e) != DOZE_OK) return cli_print_error("init", &e);
    int rc = convert_init_random(&p, &b, &e) == DOZE_OK ? write_builder(&b, out)
                                                        : cli_print_error("init", &e);
    gguf_builder_free(&b);
    return rc;
}

int cmd_convert(int argc, char **argv) {
    const char *kind = cli_positional(argc, argv, 0);
    const char *out = cli_opt(argc, argv, "-o");
    int type = parse_type(argc, argv, DOZE_TYPE_F32);
    if (!kind || !out || type < 0) {
        err_printf("usage: doze convert llama2c CKPT TOKENIZER -o OUT.gguf [--type T]\n"
                   "       doze convert gguf IN.gguf -o OUT.gguf --type T\n");
        return 2;
    }
    gguf_builder b;
    doze_error e;
    if (gguf_builder_init(&b, &e) != DOZE_OK) return cli_print_error("convert", &e);
    int rc = 1;
    if (strcmp(kind, "llama2c") == 0) {
        const char *ckpt_path = cli_positional(argc, argv, 1);
        const char *tok_path = cli_positional(argc, argv, 2);
        if (!ckpt_path || !tok_path) {
            err_printf("usage: doze convert llama2c CKPT TOKENIZER -o OUT.gguf [--type T]\n");
            gguf_builder_free(&b);
            return 2;
        }
        size_t cn = 0, tn = 0;
        uint8_t *ckpt = cli_read_file(ckpt_path, &cn);
        uint8_t *tok = ckpt ? cli_read_file(tok_path, &tn) : NULL;
        if (ckpt && tok) {
            /* the model's name: the checkpoint's file name without extension */
            const char *base = strrchr(ckpt_path, '/');
            base = base ? base + 1 : ckpt_path;
            char name[128];
            snprintf(name, sizeof name, "%s", base);
            char *dot = strrchr(name, '.');
            if (dot && dot != name) *dot = '\0';
            if (convert_llama2c(ckpt, cn, tok, tn, type, name, &b, &e) == DOZE_OK)
                rc = write_builder(&b, out);
            else
                rc = cli_print_error(ckpt_path, &e);
        }
        free(ckpt);
        free(tok);
    } else if (strcmp(kind, "gguf") == 0) {
        const char *in = cli_positional(argc, argv, 1);
        size_t n = 0;
        uint8_t *file = in ? cli_read_file(in, &n) : NULL;
        if (!in) err_printf("usage: doze convert gguf IN.gguf -o OUT.gguf --type T\n");
        if (file) {
            if (convert_retype(file, n, type, &b, &e) == DOZE_OK) rc = write_builder(&b, out);
            else rc = cli_print_error(in, &e);
        }
        free(file);
    } else {
        err_printf("doze: convert takes llama2c or gguf, not \"%s\"\n", kind);
        rc = 2;
    }
    gguf_builder_free(&b);
    return rc;
}
