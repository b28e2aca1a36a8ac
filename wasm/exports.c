/* The C functions the JS glue (js/src/wasm.js, js/src/index.js) calls.
 *
 * Most of the library's API is exported as is (see EXPORTED_FUNCTIONS in
 * wasm/link.cmake): handles, pointers, int and size_t arguments map to i32.
 * The wrappers below only exist where a C signature does not cross the
 * boundary well — params structs passed by value or pointer, out-pointers,
 * uint64_t (returned as double: exact below 2^53) — and hold no logic. */
#include <emscripten/emscripten.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "doze.h"

#define DOZE_WASM_ABI_VERSION 2

/* Bumped when the JS <-> wasm contract (host_* imports, exported helpers)
 * changes, so the glue can refuse a mismatched doze.wasm. */
EMSCRIPTEN_KEEPALIVE int doze_wasm_abi_version(void) { return DOZE_WASM_ABI_VERSION; }

/* The package version, as a NUL-terminated string in wasm memory. */
EMSCRIPTEN_KEEPALIVE const char *doze_wasm_version(void) { return "0.1.0"; }

/* Flushes libc's stdio buffers (anything printed with printf); the glue calls
 * it after each callMain. The CLI itself writes through io.h, unbuffered. */
EMSCRIPTEN_KEEPALIVE void doze_wasm_flush(void) { fflush(NULL); }

/* Bytes currently handed out by malloc (and not freed): the JS tests check
 * that disposing models, sessions and failed loads brings this back. */
EMSCRIPTEN_KEEPALIVE double doze_wasm_heap_used(void) {
    struct mallinfo mi = mallinfo();
    return (double)(unsigned)mi.uordblks;
}

/* ---- errors: a doze_error the JS allocates once and reads back ---- */

EMSCRIPTEN_KEEPALIVE int doze_wasm_error_size(void) { return (int)sizeof(doze_error); }
EMSCRIPTEN_KEEPALIVE int doze_wasm_error_code(const doze_error *e) { return e->code; }
EMSCRIPTEN_KEEPALIVE const char *doze_wasm_error_message(const doze_error *e) { return e->message; }
EMSCRIPTEN_KEEPALIVE void doze_wasm_error_clear(doze_error *e) {
    e->code = DOZE_OK;
    e->message[0] = '\0';
}

/* ---- loader ---- */

/* doze_loader_new with the default params but context_length (0: the
 * model's own) and max_memory (0: no limit). */
EMSCRIPTEN_KEEPALIVE doze_loader *doze_wasm_loader_new(int context_length, double max_memory,
                                                       doze_error *err) {
    doze_model_params p = doze_model_default_params();
    p.context_length = context_length;
    p.max_memory = max_memory > 0 ? (uint64_t)max_memory : 0;
    return doze_loader_new(&p, err);
}

EMSCRIPTEN_KEEPALIVE double doze_wasm_loader_total_bytes(const doze_loader *ld) {
    return (double)doze_loader_total_bytes(ld);
}

EMSCRIPTEN_KEEPALIVE double doze_wasm_loader_loaded_bytes(const doze_loader *ld) {
    return (double)doze_loader_loaded_bytes(ld);
}

/* doze_loader_finish returning the model (NULL on failure, see err). */
EMSCRIPTEN_KEEPALIVE doze_model *doze_wasm_loader_finish(doze_loader *ld, doze_error *err) {
    doze_model *m = NULL;
    if (doze_loader_finish(ld, &m, err) != DOZE_OK) return NULL;
    return m;
}

/* ---- model info ---- */

enum {
    INFO_DIM, INFO_HIDDEN_DIM, INFO_N_LAYERS, INFO_N_HEADS, INFO_N_KV_HEADS, INFO_HEAD_DIM,
    INFO_ROPE_DIM, INFO_VOCAB_SIZE, INFO_CONTEXT_LENGTH, INFO_NORM_EPS, INFO_ROPE_THETA,
    INFO_WEIGHT_TYPE, INFO_TIED_OUTPUT, INFO_N_PARAMS, INFO_WEIGHT_BYTES,
    INFO_LAYER_WEIGHT_BYTES, INFO_BOS_ID, INFO_EOS_ID, INFO_UNK_ID, INFO_COUNT
};

/* Writes the numeric fields of doze_model_info, in the order above, as
 * doubles into out[0..n); returns how many fields there are. */
EMSCRIPTEN_KEEPALIVE int doze_wasm_model_info(const doze_model *m, double *out, int n) {
    const doze_model_info *i = doze_model_get_info(m);
    const double v[INFO_COUNT] = {
        i->dim, i->hidden_dim, i->n_layers, i->n_heads, i->n_kv_heads, i->head_dim,
        i->rope_dim, i->vocab_size, i->context_length, i->norm_eps, i->rope_theta,
        i->weight_type, i->tied_output, (double)i->n_params, (double)i->weight_bytes,
        (double)i->layer_weight_bytes, i->bos_id, i->eos_id, i->unk_id,
    };
    for (int k = 0; k < n && k < INFO_COUNT; k++) out[k] = v[k];
    return INFO_COUNT;
}

EMSCRIPTEN_KEEPALIVE const char *doze_wasm_model_architecture(const doze_model *m) {
    return doze_model_get_info(m)->architecture;
}

/* ---- sampler ---- */

/* doze_sampler_new; the 64-bit seed comes as two 32-bit halves. */
EMSCRIPTEN_KEEPALIVE doze_sampler *doze_wasm_sampler_new(float temperature, int top_k, float top_p,
                                                         unsigned seed_lo, unsigned seed_hi,
                                                         int vocab_size, doze_error *err) {
    doze_sampler_params p = doze_sampler_default_params();
    p.temperature = temperature;
    p.top_k = top_k;
    p.top_p = top_p;
    p.seed = ((uint64_t)seed_hi << 32) | seed_lo;
    return doze_sampler_new(&p, vocab_size, err);
}
