/* The CLI's commands; each returns the process exit code. */
#ifndef DOZE_CLI_COMMANDS_H
#define DOZE_CLI_COMMANDS_H

#include <stddef.h>

#include "doze.h"

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

/* --gates FILE, or (when required) training-free gates calibrated on
 * --calib TEXT or on self-generated text; NULL with a message on failure. */
doze_gates *cli_gates(int argc, char **argv, doze_model *m, int required, int quiet);
/* One --masks line: "pos token compute layers heads/heads/..." */
/* bytes a mask line of m needs */
size_t cli_mask_line_size(const doze_model *m);
void cli_format_mask(const doze_model *m, const doze_session *s, int pos, int token, char *buf,
                     size_t cap);

/* The entry point shared by the native binary and the wasm module. */
int doze_cli_main(int argc, char **argv);

#endif
