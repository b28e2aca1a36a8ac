/* Linked into every sanitized executable (the tests, the CLI they run, the
 * fuzz targets). The checks are compiled recoverable: with
 * -fno-sanitize-recover=all clang spends minutes on each SIMD kernel file
 * (every check gets its own no-return path), so the build halts at run time
 * instead. The first UndefinedBehaviorSanitizer report ends the process with
 * a non-zero status, as an AddressSanitizer report does. */
const char *__ubsan_default_options(void);

const char *__ubsan_default_options(void) {
  return "halt_on_error=1:print_stacktrace=1";
}
