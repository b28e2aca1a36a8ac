/* `doze` command dispatch and usage. */
#include <string.h>

#include "cli_util.h"
#include "commands.h"

static const char usage[] =
    "doze - transformer inference that skips what it does not need\n"
    "\n"
    "usage: doze COMMAND [ARGS]\n"
    "\n"
    "  generate MODEL [--prompt TEXT] [--steps N] [--temp T] [--top-p P] [--top-k K]\n"
    "                 [--seed S] [--no-stop] [--trace FILE] [--logits FILE] [--ctx N]\n"
    "                 [--budget B] [--gates FILE] [--calib TEXTFILE] [--masks FILE]\n"
    "      prints the prompt and its continuation; N counts positions, prompt included\n"
    "      (default 256). --trace writes 'input next' per step, --logits every step's\n"
    "      float32 logits, --masks 'pos token compute layers heads/...' per step.\n"
    "      --budget B in (0, 1]: fraction of the dense layer compute to spend.\n"
    "  tokenize MODEL (--text T | --file F) [--no-bos]\n"
    "  ppl MODEL TEXTFILE [--ctx N] [--budget B] [--gates FILE] [--calib TEXTFILE]\n"
    "      perplexity over the stories of TEXTFILE (split at <|endoftext|> lines)\n"
    "  bench MODEL [--steps N] [--json] [--skip-table] [--budget B [--gates F]]\n"
    "      decode tokens/s and GB/s, SIMD vs reference kernels, vs a plain read loop;\n"
    "      --skip-table: speed under forced uniform masks at b = 1, 0.75, 0.5, 0.3;\n"
    "      --budget B: decode under the gates at budget B beside dense\n"
    "  gates MODEL [--calib TEXTFILE] -o GATES.gguf\n"
    "      training-free gates (calibrated on the text, or on text the model writes)\n"
    "  finetune MODEL TEXTFILE --budget B [--steps N] [--ctx T] [--batch B] [--lr LR]\n"
    "           [--seed S] [--gates INIT] [--compute-weight W] [--dual-rate R]\n"
    "           [--no-ffn-gates] -o GATES.gguf\n"
    "      trains the gates by backprop (base weights frozen), prints loss and compute\n"
    "  order-ffn MODEL --calib TEXTFILE [--tokens N] [--keep F] [--tries N] [--seed S] -o OUT.gguf\n"
    "      the same model with each layer's FFN channels grouped into blocks by what they\n"
    "      contribute on the text, so that FFN blocks skip at less cost (f32/f16 ffn_down)\n"
    "  init --dim D --hidden H --layers L --heads NH --kv-heads NKV --vocab V --ctx T\n"
    "       --seed S [--type f32|f16|q8_0] -o OUT.gguf\n"
    "  convert llama2c CKPT TOKENIZER -o OUT.gguf [--type f32|f16|q8_0]\n"
    "  convert gguf IN.gguf -o OUT.gguf --type f32|f16|q8_0\n"
    "  vocab TEXTFILE --size N -o VOCAB.gguf\n"
    "      trains a SentencePiece-style BPE vocabulary (byte fallback) on the text\n"
    "  train TEXTFILE --vocab VOCAB --dim D --layers L --heads H [--kv-heads K] [--hidden F]\n"
    "        [--ctx T] [--steps N] [--batch B] [--lr LR] [--seed S] [--eval TEXTFILE]\n"
    "        [--ckpt CKPT] [--resume CKPT] -o MODEL.gguf   (doze train --help: all options)\n"
    "      trains a whole model from scratch; prints train/eval loss and tokens/s\n";

int doze_cli_main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
        out_bytes(usage, sizeof usage - 1);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "generate") == 0) return cmd_generate(argc, argv);
    if (strcmp(cmd, "tokenize") == 0) return cmd_tokenize(argc, argv);
    if (strcmp(cmd, "ppl") == 0) return cmd_ppl(argc, argv);
    if (strcmp(cmd, "bench") == 0) return cmd_bench(argc, argv);
    if (strcmp(cmd, "init") == 0) return cmd_init(argc, argv);
    if (strcmp(cmd, "convert") == 0) return cmd_convert(argc, argv);
    if (strcmp(cmd, "gates") == 0) return cmd_gates(argc, argv);
    if (strcmp(cmd, "finetune") == 0) return cmd_finetune(argc, argv);
    if (strcmp(cmd, "vocab") == 0) return cmd_vocab(argc, argv);
    if (strcmp(cmd, "train") == 0) return cmd_train(argc, argv);
    if (strcmp(cmd, "order-ffn") == 0) return cmd_order(argc, argv);
    if (strcmp(cmd, "chat") == 0) return cmd_chat(argc, argv);
    err_printf("doze: unknown command \"%s\" (try doze --help)\n", cmd);
    return 2;
}
