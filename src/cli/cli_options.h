/* The CLI's option tables and their parser. Every command describes its
 * positional arguments and options once, in a cli_command; the same table
 * drives the parser (unknown options, missing values, malformed numbers,
 * extra or missing arguments are usage errors: exit 2, a message naming the
 * option, then the command's help on stderr; an option given twice takes
 * the last value) and the help text (`doze CMD
 * --help`, exit 0), so that the help cannot drift from what is parsed. */
#ifndef DOZE_CLI_OPTIONS_H
#define DOZE_CLI_OPTIONS_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    CLI_FLAG,   /* no value: present or not */
    CLI_STRING, /* any text, or one of `choices` */
    CLI_INT,    /* a whole decimal number that fits an int (may be negative) */
    CLI_SEED,   /* a whole decimal number of 64 bits (seeds) */
    CLI_FLOAT,  /* a finite decimal number */
} cli_kind;

typedef struct {
    const char *name;           /* "--steps", "-o" */
    cli_kind kind;
    const char *arg;            /* the value's name in help ("N", "FILE"); NULL for flags */
    const char *help;           /* what it does, with its default; '\n' starts a new help line */
    const char *const *choices; /* CLI_STRING: the accepted values (NULL-terminated); NULL: any */
    int required;               /* 1: the command cannot run without it */
} cli_option;

#define CLI_OPTIONS_END {NULL, CLI_FLAG, NULL, NULL, NULL, 0}

typedef struct {
    const char *name;             /* "generate" */
    const char *const *forms;     /* the positional arguments, one usage line each ("MODEL") */
    int min_pos, max_pos;         /* how many positional arguments it takes */
    const char *summary;          /* one line for `doze --help` */
    const char *description;      /* paragraphs for `doze CMD --help` (may be NULL) */
    const cli_option *options;    /* ended by CLI_OPTIONS_END */
} cli_command;

#define CLI_MAX_OPTIONS 64
#define CLI_MAX_POSITIONAL 16

/* What the parser found: the value given to each option of the table (by
 * index; flags get "", absent options NULL) and the positional arguments. */
typedef struct {
    const cli_command *cmd;
    const char *values[CLI_MAX_OPTIONS];
    const char *pos[CLI_MAX_POSITIONAL];
    int n_pos;
} cli_args;

/* Parses argv[2..argc) (argv[1] is the command's name) against cmd's table.
 * Returns -1 when the command should run with *a filled in; otherwise the
 * exit code to return at once: 0 after printing the help (--help, -h), 2
 * after a usage error (message and help printed on stderr). */
int cli_parse(const cli_command *cmd, int argc, char **argv, cli_args *a);

/* The value of an option (NULL when absent; "" for a present flag). The
 * name must be in the command's table (a name that is not is reported on
 * stderr as an internal error, so that code cannot read options the help
 * does not list). */
const char *cli_get(const cli_args *a, const char *name);
int cli_has(const cli_args *a, const char *name);
/* Typed values (validated by cli_parse), or def when absent. */
long long cli_get_int(const cli_args *a, const char *name, long long def);
/* A CLI_SEED: 0..2^64-1, or a negative number as its two's complement. */
uint64_t cli_get_seed(const cli_args *a, const char *name, uint64_t def);
uint64_t cli_seed_value(const char *v); /* a CLI_SEED value cli_parse checked */
double cli_get_float(const cli_args *a, const char *name, double def);
/* The i-th positional argument, or NULL. */
const char *cli_pos(const cli_args *a, int i);

/* A usage error found by the command itself (a value out of range, options
 * that do not go together): prints "doze CMD: MESSAGE" and the command's
 * usage on stderr; returns 2. */
int cli_usage_error(const cli_args *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes the command's help (usage lines, description, options). */
void cli_print_help(const cli_command *cmd, int to_stderr);
/* The usage lines alone. */
void cli_print_usage(const cli_command *cmd, int to_stderr);

/* The weight types the writing commands accept for --type. */
extern const char *const cli_weight_types[];

#endif
