/* Status names and error-message formatting. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const status_names[DOZE_STATUS_COUNT_] = {
    "OK",          "INVALID_ARGUMENT", "BAD_MAGIC",  "UNSUPPORTED_VERSION",
    "TRUNCATED",   "BAD_FORMAT",       "UNSUPPORTED_TYPE", "BAD_SHAPE",
    "MISSING",     "OUT_OF_MEMORY",    "IO",         "TOKEN_RANGE",
    "BAD_UTF8",    "CONTEXT_FULL",     "ABORTED",    "STATE",
};

const char *doze_status_name(int code) {
    if (code < 0 || code >= DOZE_STATUS_COUNT_) return "UNKNOWN";
    return status_names[code];
}

doze_status doze_fail(doze_error *err, doze_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = (int)code;
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

void doze_error_clear(doze_error *err) {
    if (err) {
        err->code = DOZE_OK;
        err->message[0] = '\0';
    }
}

void doze_error_prefix(doze_error *err, const char *fmt, ...) {
    if (!err) return;
    char prefix[DOZE_ERROR_MESSAGE_MAX];
    char old[DOZE_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->message, sizeof old);
    size_t pl = strlen(prefix);
    old[sizeof old - 1] = '\0';
    size_t ol = strlen(old);
    size_t at = 0, cap = sizeof err->message - 1;
    for (size_t i = 0; i < pl && at < cap; i++) err->message[at++] = prefix[i];
    for (size_t i = 0; i < 2 && at < cap; i++) err->message[at++] = ": "[i];
    for (size_t i = 0; i < ol && at < cap; i++) err->message[at++] = old[i];
    err->message[at] = '\0';
}
