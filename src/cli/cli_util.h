/* Shared plumbing of the CLI commands: buffered output, argument parsing,
 * whole-file reads, streaming model loads. */
#ifndef DOZE_CLI_UTIL_H
#define DOZE_CLI_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "doze.h"
#include "io.h"

/* printf to stdout / stderr through io_write */
void out_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void err_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void out_bytes(const char *p, size_t n);

/* Reads a whole file; NULL (with a message on stderr) on failure. */
uint8_t *cli_read_file(const char *path, size_t *n);
/* Streams a GGUF file into a model; NULL (message printed) on failure. */
doze_model *cli_load_model(const char *path, const doze_model_params *p);

/* Encodes text with the model's tokenizer into a fresh array (*n ids);
 * flags as doze_tokenize's (DOZE_TOKENIZE_*); NULL with e set on failure. */
int32_t *cli_encode(const doze_model *m, const char *text, size_t len, int flags, int *n, doze_error *e);
/* Reads only the tokenizer of a GGUF file (its header: a vocabulary-only
 * file works); NULL (message printed) on failure. */
doze_vocab *cli_load_vocab(const char *path);
/* BOS + the first max_bytes bytes of a text file (cut at a UTF-8 boundary),
 * encoded; NULL with e set on failure. */
int32_t *cli_encode_file(const doze_model *m, const char *path, size_t max_bytes, int *n, doze_error *e);

/* Option lookup: returns the value following `name` in argv, or NULL. */
const char *cli_opt(int argc, char **argv, const char *name);
int cli_flag(int argc, char **argv, const char *name);
/* Parses an integer / float option with a default; sets *bad on a malformed value. */
long long cli_opt_int(int argc, char **argv, const char *name, long long def, int *bad);
double cli_opt_float(int argc, char **argv, const char *name, double def, int *bad);
/* The i-th positional argument after the command (options and their values skipped). */
const char *cli_positional(int argc, char **argv, int index);

int cli_print_error(const char *what, const doze_error *e);

/* gguf_write_fn over an io handle */
int cli_write_fn(void *ctx, const void *bytes, size_t n);

#endif
