/* The CLI's commands; each returns the process exit code. */
#ifndef DOZE_CLI_COMMANDS_H
#define DOZE_CLI_COMMANDS_H

#include <stddef.h>

#include "doze.h"
#include "cli_options.h"

/* Each command's option table (in its cmd_*.c, beside the code that reads
 * it) and its entry point. */
extern const cli_command cmd_generate_spec, cmd_tokenize_spec, cmd_ppl_spec, cmd_bench_spec,
    cmd_init_spec, cmd_convert_spec, cmd_gates_spec, cmd_finetune_spec, cmd_vocab_spec,
    cmd_train_spec, cmd_order_spec, cmd_chat_spec;

int cmd_generate(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_ppl(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_gates(int argc, char **argv);
int cmd_finetune(int argc, char **argv);
int cmd_vocab(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_order(int argc, char **argv);
int cmd_chat(int argc, char **argv);

/* Rows for option tables: the budget of generate, ppl and bench, and the
 * gate options they share with `doze gates` (cli_gates reads those the
 * command's table has). */
#define CLI_THREADS_OPTION                                                                            \
    {"--threads", CLI_INT, "N", "threads for the forward pass, 1..64 (default 1); the results are\n"     \
                                "the same bits for any count", NULL, 0}
/* --threads into mp->threads; a usage error (returned, nonzero) when out of range */
int cli_threads_option(const cli_args *a, doze_model_params *mp);
#define CLI_EXPERTS_USED_OPTION                                                                       \
    {"--experts-used", CLI_INT, "K", "a mixture of experts runs K experts per token instead of the\n"    \
                                     "file's top-k (1..experts; default: the file's)", NULL, 0}
/* --experts-used into mp->experts_used (the loader checks it against the model) */
int cli_experts_used_option(const cli_args *a, doze_model_params *mp);
#define CLI_FFN_BLOCK_OPTION                                                                          \
    {"--ffn-block", CLI_INT, "N", "channels per FFN block, 16..256 (default: chosen for the model;\n"   \
                                  "gate files are bound to it)", NULL, 0}
/* --ffn-block into mp->ffn_block (the loader checks it against the model) */
int cli_ffn_block_option(const cli_args *a, doze_model_params *mp);
/* min-p and the penalties, the same in every command that samples */
#define CLI_PENALTY_OPTIONS                                                                           \
    {"--min-p", CLI_FLOAT, "P", "drop tokens below P times the top token's probability\n(default 0: off)", \
     NULL, 0},                                                                                         \
    {"--repeat-penalty", CLI_FLOAT, "R", "divide the logit (> 0; multiply if <= 0) of tokens seen in\n"  \
                                         "the last --repeat-last-n tokens by R (default 1: off)", NULL, 0}, \
    {"--repeat-last-n", CLI_INT, "N", "tokens the penalties look back over (default 64; 0: off;\n"       \
                                      "-1: the whole context)", NULL, 0},                               \
    {"--frequency-penalty", CLI_FLOAT, "F", "lower a seen token's logit by F per occurrence (default 0)", \
     NULL, 0},                                                                                         \
    {"--presence-penalty", CLI_FLOAT, "F", "lower a seen token's logit by F once (default 0)", NULL, 0}
/* CLI_PENALTY_OPTIONS into sp (a window of -1 is `context`); 2 (usage
 * error printed) when one is out of range, else 0 */
int cli_penalty_options(const cli_args *a, int context, doze_sampler_params *sp);
#define CLI_BUDGET_OPTION                                                                             \
    {"--budget", CLI_FLOAT, "B", "fraction of the dense layer compute to spend, in (0, 1] (default 1:\n"  \
                                 "dense); below 1 the gates decide what dozes", NULL, 0}
#define CLI_GATE_OPTIONS                                                                              \
    {"--gates", CLI_STRING, "FILE", "a gate file (default: training-free gates calibrated now)", NULL, 0}, \
    {"--calib", CLI_STRING, "TEXTFILE", "calibrate the training-free gates on this text (default: on\n"   \
                                        "512 tokens the model writes itself)", NULL, 0},                  \
    {"--no-ffn-gates", CLI_FLAG, NULL, "calibrated gates skip heads and layers only, not FFN blocks",     \
     NULL, 0},                                                                                         \
    {"--protect-layers", CLI_INT, "N", "calibrated gates never skip the first N layers", NULL, 0},         \
    {"--random-gates", CLI_SEED, "SEED", "random gates (a baseline for experiments) instead of the\n"     \
                                        "calibrated router", NULL, 0}

/* --gates FILE, or (when required) training-free gates calibrated on
 * --calib TEXT or on self-generated text; NULL with a message on failure. */
doze_gates *cli_gates(const cli_args *a, doze_model *m, int required, int quiet);
/* 2 (usage error printed) when --gates FILE comes with an option that only
 * shapes calibrated gates (--calib, --no-ffn-gates, ...), which would do
 * nothing; else 0 */
int cli_gate_options_check(const cli_args *a);
/* One --masks line: "pos token compute layers heads/heads/..." */
/* bytes a mask line of m needs */
size_t cli_mask_line_size(const doze_model *m);
void cli_format_mask(const doze_model *m, const doze_session *s, int pos, int token, char *buf,
                     size_t cap);

/* generate --speculative (speculate_cli.c): the run after the prompt is
 * encoded and the session (with gates) and sampler are made. */
int cli_speculative_generate(const cli_args *a, doze_model *m, doze_session *s, doze_sampler *smp,
                             const int32_t *ids, int n_prompt, int steps, int no_stop);

/* bench --speculative (bench_spec.c): greedy speculative vs dense decode
 * tokens/s from a prompt, `rounds` interleaved rounds of `steps` tokens. */
int bench_speculative(doze_model *m, const cli_args *a, int steps, int rounds, int json);

/* The entry point shared by the native binary and the wasm module. */
int doze_cli_main(int argc, char **argv);

#endif
