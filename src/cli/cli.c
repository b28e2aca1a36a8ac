/* `doze` command dispatch, --version and the overview help, all from the
 * commands' own tables. */
#include <string.h>

#include "cli_util.h"
#include "commands.h"

typedef struct {
    const cli_command *spec;
    int (*run)(int argc, char **argv);
} command;

static const command commands[] = {
    {&cmd_generate_spec, cmd_generate}, {&cmd_tokenize_spec, cmd_tokenize}, {&cmd_ppl_spec, cmd_ppl},
    {&cmd_bench_spec, cmd_bench},       {&cmd_gates_spec, cmd_gates},       {&cmd_finetune_spec, cmd_finetune},
    {&cmd_order_spec, cmd_order},       {&cmd_init_spec, cmd_init},         {&cmd_convert_spec, cmd_convert},
    {&cmd_vocab_spec, cmd_vocab},       {&cmd_train_spec, cmd_train},       {&cmd_chat_spec, cmd_chat},
};
#define N_COMMANDS (int)(sizeof commands / sizeof commands[0])

static void overview(int to_stderr) {
    void (*p)(const char *, ...) = to_stderr ? err_printf : out_printf;
    p("doze %s - transformer inference that skips what it does not need\n\n"
      "usage: doze COMMAND [ARGS] [options]\n"
      "       doze COMMAND --help     that command's arguments and options\n"
      "       doze --version\n\ncommands:\n",
      DOZE_VERSION);
    for (int i = 0; i < N_COMMANDS; i++) {
        const cli_command *c = commands[i].spec;
        p("  %-10s %s\n", c->name, c->summary);
    }
}

static const command *find(const char *name) {
    for (int i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].spec->name, name) == 0) return &commands[i];
    return NULL;
}

int doze_cli_main(int argc, char **argv) {
    if (argc < 2) {
        overview(1);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        if (argc == 2) {
            overview(0);
            return 0;
        }
        const command *c = argc == 3 ? find(argv[2]) : NULL;
        if (!c) {
            err_printf("doze: help takes one command name%s%s%s\n", argc == 3 ? ", not \"" : "",
                       argc == 3 ? argv[2] : "", argc == 3 ? "\"" : "");
            return 2;
        }
        cli_print_help(c->spec, 0);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
        if (argc > 2) {
            err_printf("doze: --version takes no arguments\n");
            return 2;
        }
        out_printf("doze %s\n", DOZE_VERSION);
        return 0;
    }
    const command *c = find(cmd);
    if (c) return c->run(argc, argv);
    if (cmd[0] == '-') err_printf("doze: unknown option %s (options go after the command)\n", cmd);
    else err_printf("doze: unknown command \"%s\"\n", cmd);
    overview(1);
    return 2;
}
