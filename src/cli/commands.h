/* The CLI's commands; each returns the process exit code. */
#ifndef DOZE_CLI_COMMANDS_H
#define DOZE_CLI_COMMANDS_H

int cmd_generate(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_ppl(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_convert(int argc, char **argv);

/* The entry point shared by the native binary and the wasm module. */
int doze_cli_main(int argc, char **argv);

#endif
