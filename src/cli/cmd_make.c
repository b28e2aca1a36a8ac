/* `doze init` and `doze convert`: commands that write GGUF files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "cli_util.h"
#include "commands.h"

static int write_builder(gguf_builder *b, const char *out_path) {
    intptr_t fd = cli_open_write(out_path);
    if (fd < 0) return 1;
    doze_error e;
    doze_status st = gguf_writer_write(b->w, cli_write_fn, &fd, &e);
    if (st != DOZE_OK) cli_print_error(out_path, &e);
    return cli_close_write(fd, out_path, st == DOZE_OK);
}

/* --type: validated against cli_weight_types by the parser */
static int parse_type(const cli_args *a, int def) {
    const char *t = cli_get(a, "--type");
    return t ? convert_type_from_name(t) : def;
}

#define TYPE_OPTION(help) {"--type", CLI_STRING, "TYPE", help, cli_weight_types, 0}

static const char *const init_forms[] = {"", NULL};
static const char *const init_archs[] = {"llama", "llama3", "qwen2", "qwen3", "qwen3moe", NULL};
static const cli_option init_options[] = {
    {"-o", CLI_STRING, "OUT.gguf", "where to write the model", NULL, 1},
    {"--dim", CLI_INT, "D", "model width (default 64)", NULL, 0},
    {"--hidden", CLI_INT, "H", "FFN width (default 172)", NULL, 0},
    {"--layers", CLI_INT, "L", "layers (default 2)", NULL, 0},
    {"--heads", CLI_INT, "NH", "query heads (default 4)", NULL, 0},
    {"--kv-heads", CLI_INT, "NKV", "key/value heads (default: --heads)", NULL, 0},
    {"--vocab", CLI_INT, "V", "vocabulary size (default 512)", NULL, 0},
    {"--ctx", CLI_INT, "T", "context length (default 256)", NULL, 0},
    {"--seed", CLI_SEED, "S", "seed of the random weights (default 1)", NULL, 0},
    TYPE_OPTION("weight type (default f32)"),
    {"--arch", CLI_STRING, "ARCH", "architecture (default llama)", init_archs, 0},
    {"--head-dim", CLI_INT, "HD", "head size when it is not dim / heads (written as key_length)", NULL, 0},
    {"--untied", CLI_FLAG, NULL, "a classifier of its own (output.weight; default: tied to the embedding)", NULL, 0},
    {"--embd-scale", CLI_FLOAT, "S", "embedding (and untied classifier) values uniform in +-S\n"
                                     "(default 1; a small S gives soft next-token distributions)", NULL, 0},
    {"--experts", CLI_INT, "E", "a mixture of E experts of --hidden channels per layer (llama; qwen3moe: default 4)",
     NULL, 0},
    {"--top-k", CLI_INT, "K", "experts each token uses (default 2)", NULL, 0},
    CLI_OPTIONS_END,
};
const cli_command cmd_init_spec = {
    "init", init_forms, 0, 0, "writes a model of random weights (seeded)",
    "Writes a model (llama, llama3, qwen2, qwen3 or qwen3moe) of seeded random weights and a synthetic vocabulary\n"
    "(byte tokens and made-up words): a model of any shape for tests and speed measurements. --experts makes a\n"
    "mixture of experts as llama.cpp names it (ffn_gate_inp and the ffn_*_exps stacks; expert_count and\n"
    "expert_used_count).",
    init_options,
};

int cmd_init(int argc, char **argv) {
    cli_args a;
    int prc = cli_parse(&cmd_init_spec, argc, argv, &a);
    if (prc >= 0) return prc;
    doze_init_params p;
    memset(&p, 0, sizeof p);
    static const char *const dims[] = {"--dim", "--hidden", "--layers", "--heads", "--kv-heads", "--vocab", "--ctx"};
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        if (cli_has(&a, dims[i]) && (cli_get_int(&a, dims[i], 1) < 1 || cli_get_int(&a, dims[i], 1) > (1 << 30)))
            return cli_usage_error(&a, "%s must be in 1..%d", dims[i], 1 << 30);
    p.dim = (int)cli_get_int(&a, "--dim", 64);
    p.hidden_dim = (int)cli_get_int(&a, "--hidden", 172);
    p.n_layers = (int)cli_get_int(&a, "--layers", 2);
    p.n_heads = (int)cli_get_int(&a, "--heads", 4);
    p.n_kv_heads = (int)cli_get_int(&a, "--kv-heads", p.n_heads);
    p.vocab_size = (int)cli_get_int(&a, "--vocab", 512);
    p.context_length = (int)cli_get_int(&a, "--ctx", 256);
    p.seed = cli_get_seed(&a, "--seed", 1);
    p.type = parse_type(&a, DOZE_TYPE_F32);
    p.arch = cli_get(&a, "--arch");
    p.head_dim = (int)cli_get_int(&a, "--head-dim", 0);
    p.untied = cli_has(&a, "--untied");
    double es = cli_get_float(&a, "--embd-scale", 1.0);
    if (!(es > 0.0 && es <= 1e6)) return cli_usage_error(&a, "--embd-scale must be in (0, 1e6]");
    p.embd_scale = (float)es;
    const int moe_arch = p.arch && strcmp(p.arch, "qwen3moe") == 0;
    if (cli_has(&a, "--experts") && cli_get_int(&a, "--experts", 0) < 1)
        return cli_usage_error(&a, "--experts must be >= 1");
    if (cli_has(&a, "--top-k") && !cli_has(&a, "--experts") && !moe_arch)
        return cli_usage_error(&a, "--top-k needs --experts (or --arch qwen3moe)");
    p.n_experts = (int)cli_get_int(&a, "--experts", moe_arch ? 4 : 0);
    p.n_experts_used = p.n_experts ? (int)cli_get_int(&a, "--top-k", p.n_experts < 2 ? p.n_experts : 2) : 0;
    const char *out = cli_get(&a, "-o");
    gguf_builder b;
    doze_error e;
    if (gguf_builder_init(&b, &e) != DOZE_OK) return cli_print_error("init", &e);
    int rc = convert_init_random(&p, &b, &e) == DOZE_OK ? write_builder(&b, out)
                                                        : cli_print_error("init", &e);
    gguf_builder_free(&b);
    return rc;
}

static const char *const convert_forms[] = {"llama2c CKPT TOKENIZER", "gguf IN.gguf", NULL};
static const cli_option convert_options[] = {
    {"-o", CLI_STRING, "OUT.gguf", "where to write the model", NULL, 1},
    TYPE_OPTION("weight type of the matrices (default f32; vectors stay f32)"),
    CLI_OPTIONS_END,
};
const cli_command cmd_convert_spec = {
    "convert", convert_forms, 2, 3, "converts a llama2.c checkpoint, or retypes a GGUF",
    "llama2c: a llama2.c checkpoint and its tokenizer.bin into a GGUF model.\n"
    "gguf: the same model with its matrices in another --type (metadata copied as it is).",
    convert_options,
};

int cmd_convert(int argc, char **argv) {
    cli_args a;
    int prc = cli_parse(&cmd_convert_spec, argc, argv, &a);
    if (prc >= 0) return prc;
    const char *kind = cli_pos(&a, 0);
    const char *out = cli_get(&a, "-o");
    int type = parse_type(&a, DOZE_TYPE_F32);
    if (strcmp(kind, "llama2c") == 0 && a.n_pos != 3)
        return cli_usage_error(&a, "convert llama2c takes CKPT and TOKENIZER");
    if (strcmp(kind, "gguf") == 0 && a.n_pos != 2) return cli_usage_error(&a, "convert gguf takes one IN.gguf");
    if (strcmp(kind, "llama2c") != 0 && strcmp(kind, "gguf") != 0)
        return cli_usage_error(&a, "convert takes llama2c or gguf, not \"%s\"", kind);
    gguf_builder b;
    doze_error e;
    if (gguf_builder_init(&b, &e) != DOZE_OK) return cli_print_error("convert", &e);
    int rc = 1;
    if (strcmp(kind, "llama2c") == 0) {
        const char *ckpt_path = cli_pos(&a, 1);
        const char *tok_path = cli_pos(&a, 2);
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
            else {
                char what[512]; /* the message says which of the two files */
                snprintf(what, sizeof what, "convert llama2c %s %s", ckpt_path, tok_path);
                rc = cli_print_error(what, &e);
            }
        }
        free(ckpt);
        free(tok);
    } else {
        const char *in = cli_pos(&a, 1);
        size_t n = 0;
        uint8_t *file = cli_read_file(in, &n);
        if (file) {
            if (convert_retype(file, n, type, &b, &e) == DOZE_OK) rc = write_builder(&b, out);
            else rc = cli_print_error(in, &e);
        }
        free(file);
    }
    gguf_builder_free(&b);
    return rc;
}
