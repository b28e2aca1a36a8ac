/* Shared plumbing of the CLI commands: buffered output, argument parsing,
 * whole-file reads, streaming model loads. Options: cli_options.h. */
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

/* Opens a file for writing; a negative IO_ERR_* (message with the reason
 * printed) on failure. */
intptr_t cli_open_write(const char *path);
/* Closes a file opened by cli_open_write once its writing is over: ok = 1
 * when every write succeeded. When one failed (ok = 0) or the close does,
 * the file is deleted, so that no partial output is left where a complete
 * one is expected; returns 0 when the file is complete, else 1 (after a
 * line on stderr saying the file was not written). */
int cli_close_write(intptr_t fd, const char *path, int ok);
/* Closes and deletes (a regular file) an output of a run that failed for
 * another reason, already reported: no message. */
void cli_discard_write(intptr_t fd, const char *path);
/* Writes the outputs of one run, n files (paths[i] gets bytes[i], len[i]),
 * all or none: every file is opened before any is written, and when one
 * cannot be opened or written every file this call made is deleted (a
 * model without its gate file is not a result). 0, or 1 after the message. */
int cli_write_files(int n, const char *const *paths, const void *const *bytes, const size_t *len);
/* Writes a file that replaces one worth keeping (a training checkpoint, the
 * run's resume point): into PATH.partial first, renamed over path once
 * complete, so that a write that fails (a full disk) leaves the old file
 * whole; where no file beside path can be made or renamed (a device, a host
 * without rename), path is written directly. 0, or 1 after the message. */
int cli_write_replace(const char *path, const void *bytes, size_t n);
/* Reads a whole file; NULL (with a message and the reason on stderr) on failure. */
uint8_t *cli_read_file(const char *path, size_t *n);
/* Streams a GGUF file into a model; NULL (message printed) on failure. */
doze_model *cli_load_model(const char *path, const doze_model_params *p);

/* Encodes text with the model's tokenizer into a fresh array (*n ids);
 * flags as doze_tokenize's (DOZE_TOKENIZE_*); NULL with e set on failure. */
int32_t *cli_encode(const doze_model *m, const char *text, size_t len, int flags, int *n, doze_error *e);
/* cli_encode with control tokens matched only outside the n_literal [start,
 * end) byte ranges (doze_tokenize_literal) */
int32_t *cli_encode_literal(const doze_model *m, const char *text, size_t len, int flags, const size_t *literal,
                            int n_literal, int *n, doze_error *e);
/* Reads only the tokenizer of a GGUF file (its header: a vocabulary-only
 * file works); NULL (message printed) on failure. */
doze_vocab *cli_load_vocab(const char *path);
/* BOS + the first max_bytes bytes of a text file (cut at a UTF-8 boundary),
 * encoded; NULL with e set on failure. */
int32_t *cli_encode_file(const doze_model *m, const char *path, size_t max_bytes, int *n, doze_error *e);

int cli_print_error(const char *what, const doze_error *e);

/* 1 when `next` ends a generation: BOS (llama2.c's rule), or, when it was
 * sampled (not a prompt token fed), any end-of-generation token of the
 * vocabulary; never with no_stop */
int cli_ends_generation(const doze_model *m, int next, int sampled, int no_stop);

/* prints the text of `next` after `prev`; 0, or 1 after printing the error */
int cli_print_piece(const doze_model *m, int prev, int next);

/* "LO:HI", two finite numbers and nothing else, into *lo, *hi; 0 when the
 * text is not that */
int cli_parse_range(const char *text, float *lo, float *hi);

/* gguf_write_fn over an io handle */
int cli_write_fn(void *ctx, const void *bytes, size_t n);

#endif
