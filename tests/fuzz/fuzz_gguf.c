/* libFuzzer target: the GGUF reader and the model builder.
 *
 * The input's first byte picks a chunking scheme and a seed for the chunk
 * sizes; the rest is a GGUF file fed through the streaming loader in those
 * chunks (every path: header parse at growing sizes, model config and plan,
 * tensor routing, tokenizer). A model that loads is stepped once. The same
 * bytes also go to gguf_parse_header directly (all at once and cut short).
 *
 * Build: CC=clang cmake -S . -B build-fuzz -DDOZE_FUZZ=ON && cmake --build build-fuzz
 * Run:   build-fuzz/fuzz_gguf tests/fuzz/corpus/fuzz_gguf -max_total_time=60 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "doze.h"
#include "gguf.h"

static uint64_t next(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

static void must_be_clean(doze_status st, const doze_error *e) {
    /* an error must carry its code and a message */
    if (st != DOZE_OK && (e->code != (int)st || e->message[0] == '\0')) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t mode = data[0];
    const uint8_t *file = data + 1;
    size_t n = size - 1;

    /* the parser alone: whole, and cut at a point the mode picks */
    gguf_header h;
    doze_error e;
    doze_status st = gguf_parse_header(file, n, &h, &e);
    must_be_clean(st, &e);
    if (st == DOZE_OK) {
        /* lookups on whatever parsed */
        int64_t i;
        double f;
        const gguf_string *s;
        gguf_get_int(&h, "llama.block_count", &i, &e);
        gguf_get_float(&h, "llama.rope.freq_base", &f, &e);
        gguf_get_string(&h, "general.architecture", &s, &e);
        gguf_find_tensor(&h, "token_embd.weight");
        gguf_header_free(&h);
    }
    if (n > 0) {
        st = gguf_parse_header(file, (size_t)(mode * 7919u) % n, &h, &e);
        must_be_clean(st, &e);
        if (st == DOZE_OK) gguf_header_free(&h);
    }

    /* the streaming loader in chunks: mode & 3 picks the scale */
    static const size_t scales[4] = {1, 16, 512, (size_t)1 << 20};
    size_t scale = scales[mode & 3];
    uint64_t seed = 0x9E3779B97F4A7C15ull ^ mode;
    doze_model_params p = doze_model_default_params();
    p.context_length = 4;
    p.kernels = (mode & 4) ? DOZE_KERNELS_REFERENCE : DOZE_KERNELS_SIMD;
    p.max_memory = (mode & 8) ? (64u << 20) : (1u << 30);
    doze_loader *ld = doze_loader_new(&p, &e);
    if (!ld) __builtin_trap();
    size_t at = 0;
    st = DOZE_OK;
    while (at < n && st == DOZE_OK) {
        size_t k = scale == 1 ? 1 : 1 + (size_t)(next(&seed) % scale);
        if (k > n - at) k = n - at;
        st = doze_loader_feed(ld, file + at, k, &e);
        must_be_clean(st, &e);
        at += k;
    }
    doze_model *m = NULL;
    if (st == DOZE_OK) {
        st = doze_loader_finish(ld, &m, &e);
        must_be_clean(st, &e);
    }
    doze_loader_free(ld);
    if (st == DOZE_OK) {
        if (!m) __builtin_trap();
        const doze_model_info *info = doze_model_get_info(m);
        doze_session *s = doze_session_new(m, &e);
        if (s) {
            int tok = info->bos_id >= 0 ? info->bos_id : 0;
            if (doze_session_step(s, tok, &e) != DOZE_OK) __builtin_trap();
            char piece[DOZE_MAX_PIECE];
            size_t len;
            for (int t = 0; t < info->vocab_size && t < 64; t++)
                if (doze_token_to_piece(m, tok, t, piece, sizeof piece, &len, &e) == DOZE_OK &&
                    len > DOZE_MAX_PIECE)
                    __builtin_trap();
            int32_t ids[32];
            int nid;
            doze_tokenize(m, "Hello wor\xC3\xA9ld", 13, 1, ids, 32, &nid, &e);
            doze_session_free(s);
        }
        doze_model_free(m);
    }
    return 0;
}
