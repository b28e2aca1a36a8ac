/* Internal helpers for filling a doze_error. */
#ifndef DOZE_ERROR_H
#define DOZE_ERROR_H

#include "doze.h"

#if defined(__GNUC__) || defined(__clang__)
#define DOZE_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define DOZE_PRINTF(a, b)
#endif

/* Sets err (if not NULL) to code + formatted message; returns code. */
doze_status doze_fail(doze_error *err, doze_status code, const char *fmt, ...) DOZE_PRINTF(3, 4);
/* Clears err to DOZE_OK. */
void doze_error_clear(doze_error *err);
/* Prepends "prefix: " to an existing message (keeps the code). */
void doze_error_prefix(doze_error *err, const char *fmt, ...) DOZE_PRINTF(2, 3);

#endif
