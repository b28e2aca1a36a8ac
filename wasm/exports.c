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

#include "byte_buffer.h"
#include "chat_template.h"
#include "doze.h"
#include "gates.h" /* read-only: the fields doze_wasm_gates_info reports */
#include "model.h" /* read-only: the tokenizer doze_wasm_token_text reads */
#include "types.h" /* doze_relaxed_simd_native */

#define DOZE_WASM_ABI_VERSION 5

/* Bumped when the JS <-> wasm contract (host_* imports, exported helpers)
 * changes, so the glue can refuse a mismatched doze.wasm. */
EMSCRIPTEN_KEEPALIVE int doze_wasm_abi_version(void) { return DOZE_WASM_ABI_VERSION; }

/* The package version, as a NUL-terminated string in wasm memory. */
EMSCRIPTEN_KEEPALIVE const char *doze_wasm_version(void) { return DOZE_VERSION; }

/* 1 in doze-relaxed.wasm and doze-mt-relaxed.wasm (the quantized products
 * on the relaxed-SIMD int8 dot), 0 in the strict SIMD builds: what
 * model.info.simd reports */
EMSCRIPTEN_KEEPALIVE int doze_wasm_relaxed_simd(void) { return doze_relaxed_simd_native(); }

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

/* ---- threads (js/src/pool.js) ---- */

/* doze_model_set_threads; the pool the host's workers join (NULL: none). */
EMSCRIPTEN_KEEPALIVE int doze_wasm_set_threads(doze_model *m, int n, doze_error *err) {
    return (int)doze_model_set_threads(m, n, err);
}
EMSCRIPTEN_KEEPALIVE doze_pool *doze_wasm_model_pool(doze_model *m) { return m ? m->pool : NULL; }
EMSCRIPTEN_KEEPALIVE void *doze_wasm_pool_stack_top(doze_pool *p, int i) { return pool_stack_top(p, i); }
/* a worker's loop: returns when the model is freed */
EMSCRIPTEN_KEEPALIVE void doze_wasm_pool_work(doze_pool *p, int i) { pool_work(p, i); }
EMSCRIPTEN_KEEPALIVE int doze_wasm_pool_started(doze_pool *p) { return pool_started(p); }
/* 1 in doze-mt.wasm */
EMSCRIPTEN_KEEPALIVE int doze_wasm_has_threads(void) {
#if defined(__wasm_atomics__)
    return 1;
#else
    return 0;
#endif
}

/* ---- loader ---- */

/* doze_loader_new with the default params but context_length (0: the
 * model's own), max_memory (0: no limit) and ffn_block (0: chosen). */
EMSCRIPTEN_KEEPALIVE doze_loader *doze_wasm_loader_new(int context_length, double max_memory, int ffn_block,
                                                       doze_error *err) {
    doze_model_params p = doze_model_default_params();
    p.context_length = context_length;
    p.max_memory = max_memory > 0 ? (uint64_t)max_memory : 0;
    p.ffn_block = ffn_block;
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
    INFO_LAYER_WEIGHT_BYTES, INFO_BOS_ID, INFO_EOS_ID, INFO_UNK_ID, INFO_FFN_BLOCK, INFO_FFN_ORDER, INFO_N_EXPERTS,
    INFO_N_EXPERTS_USED, INFO_COUNT
};

/* Writes the numeric fields of doze_model_info, in the order above, as
 * doubles into out[0..n); returns how many fields there are. */
EMSCRIPTEN_KEEPALIVE int doze_wasm_model_info(const doze_model *m, double *out, int n) {
    const doze_model_info *i = doze_model_get_info(m);
    const double v[INFO_COUNT] = {
        i->dim, i->hidden_dim, i->n_layers, i->n_heads, i->n_kv_heads, i->head_dim,
        i->rope_dim, i->vocab_size, i->context_length, i->norm_eps, i->rope_theta,
        i->weight_type, i->tied_output, (double)i->n_params, (double)i->weight_bytes,
        (double)i->layer_weight_bytes, i->bos_id, i->eos_id, i->unk_id, i->ffn_block, (double)i->ffn_order,
        i->n_experts, i->n_experts_used,
    };
    for (int k = 0; k < n && k < INFO_COUNT; k++) out[k] = v[k];
    return INFO_COUNT;
}

EMSCRIPTEN_KEEPALIVE const char *doze_wasm_model_architecture(const doze_model *m) {
    return doze_model_get_info(m)->architecture;
}

/* A token's text as the vocabulary stores it (control tokens included:
 * "<s>", "<|im_end|>"), NUL-terminated in wasm memory; NULL when the id is
 * out of range or the model has no tokenizer. */
EMSCRIPTEN_KEEPALIVE const char *doze_wasm_token_text(const doze_model *m, int token) {
    if (!m || !m->tok || token < 0 || token >= tokenizer_vocab_size(m->tok)) return NULL;
    return tokenizer_piece(m->tok, token);
}

/* ---- chat templates (the native renderer, for `doze chat` in wasm and tests) ---- */

/* chat_template_apply on n messages given as fields[2 i] = role, fields[2 i
 * + 1] = content: out[0] gets the malloc'd rendering (the JS frees it),
 * out[1] its length. */
EMSCRIPTEN_KEEPALIVE doze_status doze_wasm_chat_render(const char *tmpl, const char *const *fields, int n,
                                                       int add_generation_prompt, uint32_t *out,
                                                       doze_error *err) {
    if (n < 0 || n > (1 << 20)) return DOZE_ERR_INVALID_ARGUMENT;
    chat_message *msgs = malloc((size_t)(n ? n : 1) * sizeof *msgs);
    if (!msgs) return DOZE_ERR_OUT_OF_MEMORY;
    for (int i = 0; i < n; i++) {
        msgs[i].role = fields[2 * i];
        msgs[i].content = fields[2 * i + 1];
    }
    char *text = NULL;
    size_t len = 0;
    doze_status st = chat_template_apply(tmpl, msgs, (size_t)n, add_generation_prompt, &text, &len, err);
    free(msgs);
    if (st != DOZE_OK) return st;
    out[0] = (uint32_t)(uintptr_t)text;
    out[1] = (uint32_t)len;
    return DOZE_OK;
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

/* doze_sampler_new with every doze_sampler_params field (the stages in
 * doze.h's order); the 64-bit seed as two 32-bit halves. */
EMSCRIPTEN_KEEPALIVE doze_sampler *doze_wasm_sampler_new_full(float temperature, int top_k, float top_p,
                                                              float min_p, float repeat_penalty,
                                                              int repeat_last_n, float frequency_penalty,
                                                              float presence_penalty, unsigned seed_lo,
                                                              unsigned seed_hi, int vocab_size,
                                                              doze_error *err) {
    doze_sampler_params p = doze_sampler_default_params();
    p.temperature = temperature;
    p.top_k = top_k;
    p.top_p = top_p;
    p.min_p = min_p;
    p.repeat_penalty = repeat_penalty;
    p.repeat_last_n = repeat_last_n;
    p.frequency_penalty = frequency_penalty;
    p.presence_penalty = presence_penalty;
    p.seed = ((uint64_t)seed_hi << 32) | seed_lo;
    return doze_sampler_new(&p, vocab_size, err);
}

/* doze_sampler_accept / doze_sampler_reset (the penalties' history). */
EMSCRIPTEN_KEEPALIVE doze_status doze_wasm_sampler_accept(doze_sampler *s, int token, doze_error *err) {
    return doze_sampler_accept(s, token, err);
}

EMSCRIPTEN_KEEPALIVE void doze_wasm_sampler_reset(doze_sampler *s) { doze_sampler_reset(s); }

/* ---- gates (head/layer skipping) ---- */

/* doze_gates_calibrate with the default params but those given: a negative
 * protect_layers / protect_tokens / ridge keeps the default; the 64-bit
 * random seed (0: the fitted router) comes as two 32-bit halves. Returns the
 * gates (NULL on failure, see err). */
EMSCRIPTEN_KEEPALIVE doze_gates *doze_wasm_gates_calibrate(doze_model *m, const int32_t *tokens, int n,
                                                           int protect_layers, int protect_tokens,
                                                           float ridge, unsigned seed_lo,
                                                           unsigned seed_hi, doze_error *err) {
    doze_gates_params p = doze_gates_default_params();
    if (protect_layers >= 0) p.protect_layers = protect_layers;
    if (protect_tokens >= 0) p.protect_tokens = protect_tokens;
    if (ridge >= 0.0f) p.ridge = ridge;
    p.random_seed = ((uint64_t)seed_hi << 32) | seed_lo;
    doze_gates *g = NULL;
    if (doze_gates_calibrate(m, tokens, n, &p, &g, err) != DOZE_OK) return NULL;
    return g;
}

/* doze_gates_load returning the gates (NULL on failure, see err). */
EMSCRIPTEN_KEEPALIVE doze_gates *doze_wasm_gates_load(const doze_model *m, const void *bytes, size_t n,
                                                      doze_error *err) {
    doze_gates *g = NULL;
    if (doze_gates_load(m, bytes, n, &g, err) != DOZE_OK) return NULL;
    return g;
}


/* doze_gates_save into a malloc'd buffer: out[0] gets its pointer (the JS
 * frees it), out[1] its length. */
EMSCRIPTEN_KEEPALIVE doze_status doze_wasm_gates_save(const doze_gates *g, uint32_t *out,
                                                      doze_error *err) {
    doze_byte_buffer b = {NULL, 0, 0};
    doze_status st = doze_gates_save(g, doze_byte_buffer_write, &b, err);
    if (st == DOZE_OK && !b.data) {
        st = DOZE_ERR_IO;
        if (err) {
            err->code = st;
            snprintf(err->message, sizeof err->message, "the gate file came out empty");
        }
    }
    if (st != DOZE_OK) {
        free(b.data);
        return st;
    }
    out[0] = (uint32_t)(uintptr_t)b.data;
    out[1] = (uint32_t)b.len;
    return DOZE_OK;
}

/* Writes protect_layers, protect_tokens, ridge, n_layers, n_heads into
 * out[0..5) and returns the gates' kind ("training-free", "trained",
 * "random"). */
EMSCRIPTEN_KEEPALIVE const char *doze_wasm_gates_info(const doze_gates *g, double *out) {
    out[0] = g->params.protect_layers;
    out[1] = g->params.protect_tokens;
    out[2] = g->params.ridge;
    out[3] = g->n_layers;
    out[4] = g->n_heads;
    return g->kind;
}

/* ---- gate fine-tuning (doze_finetune_*) ---- */

/* The fields of doze_train_default_params(), in the order of
 * doze_wasm_finetune_new's arguments, as doubles into out[0..9): budget,
 * context, batch, lr, weight_decay, compute_weight, tau_start, tau_end,
 * total_steps, seed. Returns how many fields there are. */
EMSCRIPTEN_KEEPALIVE int doze_wasm_train_default_params(double *out) {
    doze_train_params p = doze_train_default_params();
    out[0] = p.budget;
    out[1] = p.context;
    out[2] = p.batch;
    out[3] = p.lr;
    out[4] = p.weight_decay;
    out[5] = p.compute_weight;
    out[6] = p.tau_start;
    out[7] = p.tau_end;
    out[8] = p.total_steps;
    out[9] = (double)p.seed;
    return 10;
}

/* doze_finetune_new with every doze_train_params field as an argument (the
 * 64-bit seed as two 32-bit halves); init NULL starts from training-free
 * gates calibrated on the text. Returns the run (NULL on failure, see err). */
EMSCRIPTEN_KEEPALIVE doze_finetune *doze_wasm_finetune_new(doze_model *m, const doze_gates *init,
                                                           float budget, int context, int batch,
                                                           float lr, float weight_decay,
                                                           float compute_weight, float tau_start,
                                                           float tau_end, int total_steps,
                                                           unsigned seed_lo, unsigned seed_hi,
                                                           const char *text, size_t len,
                                                           doze_error *err) {
    doze_train_params p = doze_train_default_params();
    p.budget = budget;
    p.context = context;
    p.batch = batch;
    p.lr = lr;
    p.weight_decay = weight_decay;
    p.compute_weight = compute_weight;
    p.tau_start = tau_start;
    p.tau_end = tau_end;
    p.total_steps = total_steps;
    p.seed = ((uint64_t)seed_hi << 32) | seed_lo;
    doze_finetune *f = NULL;
    if (doze_finetune_new(m, init, &p, text, len, &f, err) != DOZE_OK) return NULL;
    return f;
}

/* doze_finetune_step writing the stats as doubles into out[0..6): step,
 * loss, kl, expected_compute, achieved_compute, tau. */
EMSCRIPTEN_KEEPALIVE doze_status doze_wasm_finetune_step(doze_finetune *f, double *out, doze_error *err) {
    doze_train_stats s;
    doze_status st = doze_finetune_step(f, &s, err);
    if (st != DOZE_OK) return st;
    out[0] = s.step;
    out[1] = s.loss;
    out[2] = s.kl;
    out[3] = s.expected_compute;
    out[4] = s.achieved_compute;
    out[5] = s.tau;
    return DOZE_OK;
}

/* ---- speculation -------------------------------------------------------------------- */

/* A speculator over s (gates set) with k (0: adaptive), draft_budget (0:
 * adaptive) and timed (1: measured costs, 0: the cost model). */
EMSCRIPTEN_KEEPALIVE doze_speculator *doze_wasm_speculator_new(doze_session *s, int k, float draft_budget, int timed,
                                                               doze_error *err) {
    doze_spec_params p = doze_spec_default_params();
    p.k = k;
    p.draft_budget = draft_budget;
    p.timed = timed;
    return doze_speculator_new(s, &p, err);
}

/* doze_speculative_step writing the emitted tokens into tokens[0..n) and
 * their flags (DOZE_SPEC_DRAFTED 1 | DOZE_SPEC_ACCEPTED 2) into flags[0..n),
 * n <= DOZE_SPEC_MAX_K + 1 = 9, and the step as doubles into out[0..8): n,
 * k, accepted, draft_budget, draft_compute, acceptance (running), draft_ms,
 * verify_ms. */
EMSCRIPTEN_KEEPALIVE doze_status doze_wasm_speculative_step(doze_speculator *sp, doze_sampler *smp, int token,
                                                            int32_t *tokens, uint8_t *flags, double *out,
                                                            doze_error *err) {
    doze_spec_result r;
    doze_status st = doze_speculative_step(sp, smp, token, &r, err);
    if (st != DOZE_OK) return st;
    memcpy(tokens, r.tokens, (size_t)r.n * sizeof *tokens);
    memcpy(flags, r.flags, (size_t)r.n);
    out[0] = r.n;
    out[1] = r.k;
    out[2] = r.accepted;
    out[3] = r.draft_budget;
    out[4] = r.draft_compute;
    out[5] = r.acceptance;
    out[6] = r.draft_ms;
    out[7] = r.verify_ms;
    return DOZE_OK;
}

/* ---- joint fine-tuning: the model's weights learn with its gates ---- */

/* The joint fields of doze_train_default_params() as doubles into out[0..6):
 * joint, task_loss (0 KL, 1 cross-entropy), weight_lr, weight_clip,
 * dense_fraction, lora_rank, noise_end. Returns how many fields there are. */
EMSCRIPTEN_KEEPALIVE int doze_wasm_joint_default_params(double *out) {
    doze_train_params p = doze_train_default_params();
    out[0] = p.joint;
    out[1] = p.task_loss;
    out[2] = p.weight_lr;
    out[3] = p.weight_clip;
    out[4] = p.dense_fraction;
    out[5] = p.lora_rank;
    out[6] = p.noise_end;
    return 7;
}

/* doze_wasm_finetune_new's arguments, then the joint ones (joint 0 or 1,
 * task_loss 0 KL / 1 cross-entropy, weight_lr, weight_clip, lora_rank (0:
 * every weight), budget_lo, budget_hi (0, 0: the one budget),
 * dense_fraction, weight_lr_min, weight_warmup, noise_end, weight_anchor, weight_ema). Steps go
 * through doze_wasm_finetune_step as for gates alone (one call per step:
 * progress and abort are the caller's loop); the run ends with
 * doze_wasm_finetune_write_model, loading what it wrote, and
 * doze_wasm_finetune_finish_joint on that model. */
EMSCRIPTEN_KEEPALIVE doze_finetune *doze_wasm_finetune_new_joint(
    doze_model *m, const doze_gates *init, float budget, int context, int batch, float lr,
    float weight_decay, float compute_weight, float tau_start, float tau_end, int total_steps,
    unsigned seed_lo, unsigned seed_hi, int joint, int task_loss, float weight_lr,
    float weight_clip, int lora_rank, float budget_lo, float budget_hi, float dense_fraction,
    float weight_lr_min, int weight_warmup, float noise_end, float weight_anchor, float weight_ema, const char *text,
    size_t len, doze_error *err) {
    doze_train_params p = doze_train_default_params();
    p.budget = budget;
    p.context = context;
    p.batch = batch;
    p.lr = lr;
    p.weight_decay = weight_decay;
    p.compute_weight = compute_weight;
    p.tau_start = tau_start;
    p.tau_end = tau_end;
    p.total_steps = total_steps;
    p.seed = ((uint64_t)seed_hi << 32) | seed_lo;
    p.joint = joint;
    p.task_loss = task_loss;
    p.weight_lr = weight_lr;
    p.weight_clip = weight_clip;
    p.lora_rank = lora_rank;
    p.budget_lo = budget_lo;
    p.budget_hi = budget_hi;
    p.dense_fraction = dense_fraction;
    p.weight_lr_min = weight_lr_min;
    p.weight_warmup = weight_warmup;
    p.noise_end = noise_end;
    p.weight_anchor = weight_anchor;
    p.weight_ema = weight_ema;
    doze_finetune *f = NULL;
    if (doze_finetune_new(m, init, &p, text, len, &f, err) != DOZE_OK) return NULL;
    return f;
}

/* doze_finetune_write_model into a malloc'd buffer: file (n bytes) is the
 * GGUF the model was loaded from; out[0] gets the new file's pointer (the
 * JS frees it), out[1] its length. */
EMSCRIPTEN_KEEPALIVE doze_status doze_wasm_finetune_write_model(doze_finetune *f, const void *file,
                                                                size_t n, uint32_t *out,
                                                                doze_error *err) {
    doze_byte_buffer b = {NULL, 0, 0};
    doze_status st = doze_finetune_write_model(f, file, n, doze_byte_buffer_write, &b, err);
    if (st != DOZE_OK) {
        free(b.data);
        return st;
    }
    out[0] = (uint32_t)(uintptr_t)b.data;
    out[1] = (uint32_t)b.len;
    return DOZE_OK;
}

/* doze_finetune_finish_joint: the gates retuned on (and made for) the
 * fine-tuned model, loaded from doze_wasm_finetune_write_model's bytes */
EMSCRIPTEN_KEEPALIVE doze_status doze_wasm_finetune_finish_joint(doze_finetune *f, doze_model *trained,
                                                                 doze_error *err) {
    return doze_finetune_finish_joint(f, trained, err);
}
