/* Streaming model loader: the GGUF header is parsed from the bytes seen so
 * far; once it is complete the model is validated and its arena allocated,
 * and every later byte is copied straight into its tensor's final place.
 *
 *   HEADER --(header parses)--> DATA --(finish)--> DONE
 *   any error --> FAILED (the loader must be freed; nothing leaks)
 */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "model.h"
#include "pool.h"

#define HEADER_FIRST_TRY 4096u
#define HEADER_MAX (1u << 30) /* a header larger than 1 GiB is refused */

typedef enum { LD_HEADER, LD_DATA, LD_DONE, LD_FAILED } loader_state;

struct doze_loader {
    loader_state state;
    doze_model_params params;
    /* HEADER: bytes buffered until the header parses */
    uint8_t *hbuf;
    size_t hlen, hcap, next_try;
    /* DATA */
    gguf_header header;
    doze_model_plan plan;
    doze_model *model; /* being built; arena allocated */
    uint64_t pos;      /* absolute file offset of the next byte */
    uint64_t total;    /* data_offset + data_size */
    size_t next_slot;  /* first slot not yet complete */
    uint8_t *scratch;  /* plan.scratch_size bytes for model_slot_finalize */
    doze_error failure;
};

doze_loader *doze_loader_new(const doze_model_params *params, doze_error *err) {
    doze_loader *ld = calloc(1, sizeof *ld);
    if (!ld) {
        doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for a loader");
        return NULL;
    }
    ld->params = params ? *params : doze_model_default_params();
    if (ld->params.kernels != DOZE_KERNELS_SIMD && ld->params.kernels != DOZE_KERNELS_REFERENCE) {
        doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "unknown kernel set %d", ld->params.kernels);
        free(ld);
        return NULL;
    }
    if (ld->params.threads < 0 || ld->params.threads > DOZE_MAX_THREADS) {
        doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "threads must be 1 .. %d (got %d)", DOZE_MAX_THREADS,
                  ld->params.threads);
        free(ld);
        return NULL;
    }
    ld->next_try = HEADER_FIRST_TRY;
    return ld;
}

static void loader_release(doze_loader *ld) {
    free(ld->hbuf);
    ld->hbuf = NULL;
    ld->hlen = ld->hcap = 0;
    gguf_header_free(&ld->header);
    model_plan_free(&ld->plan);
    free(ld->scratch);
    ld->scratch = NULL;
    doze_model_free(ld->model);
    ld->model = NULL;
}

void doze_loader_free(doze_loader *ld) {
    if (!ld) return;
    loader_release(ld);
    free(ld);
}

static doze_status loader_fail(doze_loader *ld, doze_error *err, doze_status st) {
    if (err) ld->failure = *err;
    else doze_fail(&ld->failure, st, "load failed (%s)", doze_status_name(st));
    ld->failure.code = (int)st;
    ld->state = LD_FAILED;
    loader_release(ld);
    return st;
}

uint64_t doze_loader_total_bytes(const doze_loader *ld) { return ld ? ld->total : 0; }

uint64_t doze_loader_loaded_bytes(const doze_loader *ld) {
    if (!ld) return 0;
    return ld->state == LD_HEADER ? ld->hlen : ld->pos;
}

/* Copies file bytes [pos, pos + n) into the tensors they belong to. */
static void route_bytes(doze_loader *ld, const uint8_t *p, size_t n) {
    uint64_t start = ld->pos, end = ld->pos + n;
    uint64_t base = ld->header.data_offset;
    while (ld->next_slot < ld->plan.n_slots) {
        doze_tensor_slot *s = &ld->plan.slots[ld->next_slot];
        uint64_t t0 = base + s->src->offset;
        uint64_t t1 = t0 + s->src->n_bytes;
        if (t0 >= end) break;
        uint64_t a = start > t0 ? start : t0;
        uint64_t b = end < t1 ? end : t1;
        if (a < b) {
            uint8_t *dst = ld->model->arena + s->copy_offset;
            memcpy(dst + (a - t0), p + (a - start), (size_t)(b - a));
        }
        if (t1 <= end) {
            model_slot_finalize(&ld->model->info, s, ld->model->arena, ld->scratch);
            ld->next_slot++;
        } else {
            break;
        }
    }
    ld->pos = end;
}

/* The header parsed: build the model skeleton and its arena. */
static doze_status begin_data(doze_loader *ld, doze_error *err) {
    doze_model *m = calloc(1, sizeof *m);
    if (!m) return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for a model");
    ld->model = m;
    m->kern = ld->params.kernels == DOZE_KERNELS_REFERENCE ? &doze_kernels_reference
                                                           : &doze_kernels_simd;
    doze_status st = model_config_from_gguf(&ld->header, &ld->params, &m->info, err);
    if (st != DOZE_OK) return st;
    st = model_plan(&ld->header, &m->info, &ld->plan, err);
    if (st != DOZE_OK) return st;
    {
        /* Hostile input: everything this model will allocate, in uint64
         * (size_t is 32 bits in wasm), checked before any weight is
         * allocated or copied: the arena, the scratch, the RoPE tables and
         * one session's KV cache at the context in use (so that the size_t
         * products in model_assemble and doze_session_new cannot wrap). */
        const doze_model_info *c = &m->info;
        uint64_t half = c->rope_dim / 2 ? (uint64_t)(c->rope_dim / 2) : 1;
        uint64_t rope = 2 * (uint64_t)c->context_length * half * sizeof(float);
        uint64_t kv = 2 * (uint64_t)c->n_layers * (uint64_t)c->context_length *
                      (uint64_t)c->n_kv_heads * (uint64_t)c->head_dim * sizeof(float);
        uint64_t need = (uint64_t)ld->plan.arena_size + ld->plan.scratch_size + rope + kv;
        int over_limit = ld->params.max_memory && need > ld->params.max_memory;
        if (rope > SIZE_MAX / 2 || kv > SIZE_MAX / 2 || need > SIZE_MAX / 2 || over_limit)
            return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY,
                             "model needs %llu bytes (weights %llu, KV cache %llu for context %d), "
                             "more than %s %llu",
                             (unsigned long long)need, (unsigned long long)ld->plan.arena_size,
                             (unsigned long long)kv, c->context_length,
                             over_limit ? "the max_memory of" : "this platform can address:",
                             (unsigned long long)(over_limit ? ld->params.max_memory
                                                             : (uint64_t)(SIZE_MAX / 2)));
    }
    m->arena = malloc(ld->plan.arena_size ? ld->plan.arena_size : 1);
    if (!m->arena)
        return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "cannot allocate %zu bytes for the weights",
                         ld->plan.arena_size);
    m->arena_size = ld->plan.arena_size;
    if (ld->plan.scratch_size) {
        ld->scratch = malloc(ld->plan.scratch_size);
        if (!ld->scratch)
            return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "cannot allocate %zu bytes of scratch",
                             ld->plan.scratch_size);
    }
    ld->total = ld->header.data_offset + ld->header.data_size;
    ld->pos = 0;
    ld->next_slot = 0;
    ld->state = LD_DATA;
    /* the buffered bytes beyond the header go to their tensors */
    if (ld->hlen > ld->header.data_offset) {
        ld->pos = ld->header.data_offset;
        route_bytes(ld, ld->hbuf + ld->header.data_offset, ld->hlen - (size_t)ld->header.data_offset);
    } else {
        ld->pos = ld->hlen;
    }
    free(ld->hbuf);
    ld->hbuf = NULL;
    ld->hlen = ld->hcap = 0;
    return DOZE_OK;
}

static doze_status try_header(doze_loader *ld, doze_error *err) {
    doze_status st = gguf_parse_header(ld->hbuf, ld->hlen, &ld->header, err);
    if (st == DOZE_ERR_TRUNCATED) {
        doze_error_clear(err);
        ld->next_try = ld->hlen * 2;
        return DOZE_ERR_TRUNCATED;
    }
    if (st != DOZE_OK) return st;
    return begin_data(ld, err);
}

doze_status doze_loader_feed(doze_loader *ld, const void *bytes, size_t n, doze_error *err) {
    if (!ld) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no loader");
    if (ld->state == LD_FAILED) {
        if (err) *err = ld->failure;
        return (doze_status)ld->failure.code;
    }
    if (ld->state == LD_DONE) return doze_fail(err, DOZE_ERR_STATE, "the loader has finished");
    if (n == 0) return DOZE_OK;
    if (!bytes) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no bytes");
    const uint8_t *p = bytes;
    /* Header bytes are buffered only up to the next parse attempt; what
     * follows the header goes straight to its tensors, so a whole file fed
     * at once is not copied twice and the memory check in begin_data runs
     * before any weight is copied. hlen <= next_try <= 2 * HEADER_MAX, so
     * the sizes here cannot wrap a 32-bit size_t. */
    while (ld->state == LD_HEADER && n > 0) {
        size_t k = ld->next_try > ld->hlen ? ld->next_try - ld->hlen : 1;
        if (k > n) k = n;
        if (ld->hlen + k > ld->hcap) {
            size_t cap = ld->hcap ? ld->hcap : HEADER_FIRST_TRY;
            while (cap < ld->hlen + k) cap *= 2;
            uint8_t *nb = realloc(ld->hbuf, cap);
            if (!nb)
                return loader_fail(ld, err,
                                   doze_fail(err, DOZE_ERR_OUT_OF_MEMORY,
                                             "out of memory buffering a %zu-byte header", cap));
            ld->hbuf = nb;
            ld->hcap = cap;
        }
        memcpy(ld->hbuf + ld->hlen, p, k);
        ld->hlen += k;
        p += k;
        n -= k;
        if (ld->hlen >= ld->next_try) {
            doze_status st = try_header(ld, err);
            if (st == DOZE_ERR_TRUNCATED) {
                if (ld->hlen > HEADER_MAX)
                    return loader_fail(ld, err,
                                       doze_fail(err, DOZE_ERR_BAD_FORMAT,
                                                 "GGUF header is larger than %u bytes", HEADER_MAX));
                continue;
            }
            if (st != DOZE_OK) return loader_fail(ld, err, st);
        }
    }
    if (n > 0) route_bytes(ld, p, n);
    return DOZE_OK;
}

doze_status doze_loader_finish(doze_loader *ld, doze_model **out, doze_error *err) {
    if (!ld || !out) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no loader or output");
    *out = NULL;
    if (ld->state == LD_FAILED) {
        if (err) *err = ld->failure;
        return (doze_status)ld->failure.code;
    }
    if (ld->state == LD_DONE) return doze_fail(err, DOZE_ERR_STATE, "the loader has finished");
    if (ld->state == LD_HEADER) {
        if (ld->hlen == 0)
            return loader_fail(ld, err, doze_fail(err, DOZE_ERR_TRUNCATED, "the file is empty"));
        doze_status st = try_header(ld, err);
        if (st == DOZE_ERR_TRUNCATED)
            st = doze_fail(err, DOZE_ERR_TRUNCATED,
                           "file ended after %zu bytes, inside the GGUF header", ld->hlen);
        if (st != DOZE_OK) return loader_fail(ld, err, st);
    }
    if (ld->pos < ld->total) {
        const char *where = ld->next_slot < ld->plan.n_slots
                                ? ld->plan.slots[ld->next_slot].src->name.data
                                : "padding";
        return loader_fail(ld, err,
                           doze_fail(err, DOZE_ERR_TRUNCATED,
                                     "file ended after %llu of %llu bytes (in tensor %s)",
                                     (unsigned long long)ld->pos, (unsigned long long)ld->total,
                                     where));
    }
    doze_status st = model_assemble(ld->model, &ld->header, &ld->plan, err);
    if (st == DOZE_OK && ld->params.threads > 1) st = doze_model_set_threads(ld->model, ld->params.threads, err);
    if (st != DOZE_OK) return loader_fail(ld, err, st);
    *out = ld->model;
    ld->model = NULL;
    loader_release(ld);
    ld->state = LD_DONE;
    return DOZE_OK;
}

doze_status doze_model_load_memory(const void *bytes, size_t n, const doze_model_params *params,
                                   doze_model **out, doze_error *err) {
    if (!out) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no output");
    *out = NULL;
    doze_loader *ld = doze_loader_new(params, err);
    if (!ld) return err ? (doze_status)err->code : DOZE_ERR_OUT_OF_MEMORY;
    doze_status st = doze_loader_feed(ld, bytes, n, err);
    if (st == DOZE_OK) st = doze_loader_finish(ld, out, err);
    doze_loader_free(ld);
    return st;
}
