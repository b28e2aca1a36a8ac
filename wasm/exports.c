/* Small helpers exported to the JS glue (js/src/wasm.js). The library's own
 * API is exported where it is defined; this file only holds wasm-side glue. */
#include <emscripten/emscripten.h>
#include <stdio.h>

#define DOZE_WASM_ABI_VERSION 1

/* Bumped when the JS <-> wasm contract (host_* imports, exported helpers)
 * changes, so the glue can refuse a mismatched doze.wasm. */
EMSCRIPTEN_KEEPALIVE int doze_wasm_abi_version(void) { return DOZE_WASM_ABI_VERSION; }

/* The package version, as a NUL-terminated string in wasm memory. */
EMSCRIPTEN_KEEPALIVE const char *doze_wasm_version(void) { return "0.1.0"; }

/* Flushes libc's stdio buffers (anything printed with printf); the glue calls
 * it after each callMain. The CLI itself writes through io.h, unbuffered. */
EMSCRIPTEN_KEEPALIVE void doze_wasm_flush(void) { fflush(NULL); }
