/* A fine-tuning run over a text (see doze_finetune_new in doze.h): the
 * story stream, the seeded choice of windows, the trainer, and the final
 * retuning of the budget table. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "gates.h"
#include "model.h"
#include "tokenizer.h"
#include "train.h"

struct doze_finetune {
    doze_model *m;
    doze_gates *g;
    doze_trainer *t;
    doze_train_params p;
    int32_t *ids;  /* the text's stories, each from BOS */
    int n_ids;
    int *starts;   /* first index of each story */
    int n_starts;
    int32_t *batch; /* (batch, context) */
    uint64_t rng;
    int bos;        /* the id each window opens with, or -1: the vocabulary adds no BOS */
};

static const char separator[] = "<|endoftext|>";

static const char *find_separator(const char *s, size_t n) {
    const size_t k = sizeof separator - 1;
    for (size_t i = 0; i + k <= n; i++)
        if (s[i] == '<' && memcmp(s + i, separator, k) == 0) return s + i;
    return NULL;
}

static doze_status encode_stories(doze_finetune *f, const char *text, size_t n, doze_error *err) {
    size_t cap = n / 2 + 1024, len = 0;
    int st_cap = 256;
    f->ids = malloc(cap * sizeof *f->ids);
    f->starts = malloc((size_t)st_cap * sizeof *f->starts);
    if (!f->ids || !f->starts) return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory encoding the text");
    size_t at = 0;
    while (at < n) {
        const char *sep = find_separator(text + at, n - at);
        size_t end = sep ? (size_t)(sep - text) : n;
        size_t a = at, b = end;
        while (a < b && (text[a] == '\n' || text[a] == '\r')) a++;
        while (b > a && (text[b - 1] == '\n' || text[b - 1] == '\r')) b--;
        if (b > a) {
            int need = 0;
            doze_status st = doze_tokenize(f->m, text + a, b - a, DOZE_TOKENIZE_ADD_SPECIAL, NULL, 0, &need, err);
            if (st != DOZE_OK) return st;
            while (len + (size_t)need > cap) {
                cap *= 2;
                int32_t *nb = realloc(f->ids, cap * sizeof *nb);
                if (!nb) return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory encoding the text");
                f->ids = nb;
            }
            if (f->n_starts == st_cap) {
                st_cap *= 2;
                int *ns = realloc(f->starts, (size_t)st_cap * sizeof *ns);
                if (!ns) return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory encoding the text");
                f->starts = ns;
            }
            f->starts[f->n_starts++] = (int)len;
            int got = 0;
            st = doze_tokenize(f->m, text + a, b - a, DOZE_TOKENIZE_ADD_SPECIAL, f->ids + len, need, &got, err);
            if (st != DOZE_OK) return st;
            len += (size_t)got;
        }
        at = sep ? end + sizeof separator - 1 : n;
    }
    f->n_ids = (int)len;
    return DOZE_OK;
}

void doze_finetune_free(doze_finetune *f) {
    if (!f) return;
    doze_trainer_free(f->t);
    doze_gates_free(f->g);
    free(f->ids);
    free(f->starts);
    free(f->batch);
    free(f);
}

static doze_gates *gates_copy(const doze_gates *src) {
    doze_gates *g = gates_alloc(src->n_layers, src->n_heads, src->n_blocks, src->dim);
    if (!g) return NULL;
    size_t rows = (size_t)src->n_layers * (size_t)gates_rows(src);
    memcpy(g->router, src->router, rows * (size_t)src->dim * sizeof(float));
    memcpy(g->bias, src->bias, rows * sizeof(float));
    memcpy(g->log_lambda, src->log_lambda, sizeof g->log_lambda);
    g->params = src->params;
    g->ffn_block = src->ffn_block;
    g->vocab_size = src->vocab_size;
    g->fingerprint = src->fingerprint;
    memcpy(g->kind, src->kind, sizeof g->kind);
    if (src->expert_bias) { /* a mixture's experts keep dozing under the trained gates */
        const size_t n = (size_t)src->n_layers * (size_t)src->n_experts;
        g->expert_bias = malloc(n * sizeof(float));
        if (!g->expert_bias) {
            doze_gates_free(g);
            return NULL;
        }
        memcpy(g->expert_bias, src->expert_bias, n * sizeof(float));
        g->n_experts = src->n_experts;
    }
    return g;
}

doze_status doze_finetune_new(doze_model *m, const doze_gates *init, const doze_train_params *p,
                              const char *text, size_t len, doze_finetune **out, doze_error *err) {
    if (!m || !text || !out) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no model, text or output");
    *out = NULL;
    doze_finetune *f = calloc(1, sizeof *f);
    if (!f) return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for a fine-tune");
    f->m = m;
    f->p = p ? *p : doze_train_default_params();
    f->rng = f->p.seed * 0x9E3779B97F4A7C15ull + 7;
    doze_status st = encode_stories(f, text, len, err);
    /* each story was encoded as the vocabulary says: from BOS when it adds
     * one (then the first token of any story is BOS), else from its text */
    f->bos = f->n_starts > 0 && m->tok && tokenizer_add_bos(m->tok) ? f->ids[f->starts[0]] : -1;
    if (st == DOZE_OK && (f->n_starts == 0 || f->n_ids < f->p.context))
        st = doze_fail(err, DOZE_ERR_INVALID_ARGUMENT,
                       "the text has %d tokens, fewer than one window of %d", f->n_ids, f->p.context);
    if (st == DOZE_OK) {
        if (init) {
            f->g = gates_copy(init);
            if (!f->g) st = doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for gates");
        } else {
            int n = f->n_ids < 512 ? f->n_ids : 512;
            doze_gates_params gp = doze_gates_default_params();
            gp.ffn_gates = f->p.ffn_gates;
            st = doze_gates_calibrate(m, f->ids, n, &gp, &f->g, err);
        }
    }
    if (st == DOZE_OK) st = doze_trainer_new(m, f->g, &f->p, &f->t, err);
    if (st == DOZE_OK) {
        f->batch = malloc((size_t)f->p.batch * (size_t)f->p.context * sizeof *f->batch);
        if (!f->batch) st = doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for a batch");
    }
    if (st != DOZE_OK) {
        doze_finetune_free(f);
        return st;
    }
    *out = f;
    return DOZE_OK;
}

doze_status doze_finetune_step(doze_finetune *f, doze_train_stats *stats, doze_error *err) {
    if (!f || !f->t) return doze_fail(err, DOZE_ERR_STATE, "no fine-tune in progress");
    const int T = f->p.context;
    for (int b = 0; b < f->p.batch; b++) {
        f->rng ^= f->rng >> 12, f->rng ^= f->rng << 25, f->rng ^= f->rng >> 27;
        int s = (int)(((f->rng * 0x2545F4914F6CDD1Dull) >> 33) % (uint64_t)f->n_starts);
        int at = f->starts[s];
        if (at + T > f->n_ids) at = f->n_ids - T;
        memcpy(f->batch + (size_t)b * T, f->ids + at, (size_t)T * sizeof *f->batch);
        /* every window opens with BOS where the vocabulary adds one (a window
         * moved back from the text's end starts inside a story); without BOS
         * a window keeps its own first token, not the text's */
        if (f->bos >= 0) f->batch[(size_t)b * T] = f->bos;
    }
    return doze_trainer_step(f->t, f->batch, stats, err);
}

doze_status doze_finetune_finish(doze_finetune *f, doze_error *err) {
    if (!f || !f->g) return doze_fail(err, DOZE_ERR_STATE, "no gates to finish");
    if (f->p.joint)
        return doze_fail(err, DOZE_ERR_STATE, "joint fine-tuning changed the model: finish with "
                         "doze_finetune_finish_joint on the fine-tuned model");
    return doze_gates_retune(f->m, f->g, f->ids, f->n_ids < 512 ? f->n_ids : 512, err);
}

doze_status doze_finetune_write_model(doze_finetune *f, const void *file, size_t n,
                                      int (*fn)(void *ctx, const void *bytes, size_t len), void *ctx,
                                      doze_error *err) {
    if (!f || !f->t || !file || !fn)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no fine-tune in progress, file or output");
    return trainer_write_model(f->t, file, n, fn, ctx, err);
}

doze_status doze_finetune_check_model(doze_finetune *f, const void *file, size_t n, doze_error *err) {
    if (!f || !f->t || !file)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no fine-tune in progress or file");
    return trainer_check_model(f->t, file, n, err);
}

doze_status doze_finetune_finish_joint(doze_finetune *f, doze_model *trained, doze_error *err) {
    if (!f || !f->g || !trained) return doze_fail(err, DOZE_ERR_STATE, "no gates or model to finish");
    const doze_model_info *a = &f->m->info, *b = &trained->info;
    if (a->dim != b->dim || a->n_layers != b->n_layers || a->n_heads != b->n_heads ||
        a->hidden_dim != b->hidden_dim || a->vocab_size != b->vocab_size)
        return doze_fail(err, DOZE_ERR_BAD_SHAPE, "the fine-tuned model is not the shape trained");
    /* a mixture: its experts changed, so their constants are calibrated
     * again on the trained model (a model trained from scratch gets its
     * first meaningful ones here), then the table on those decisions */
    const int n = f->n_ids < 512 ? f->n_ids : 512;
    doze_status st = gates_refit_experts(trained, f->g, f->ids, n, err);
    if (st == DOZE_OK) st = doze_gates_retune(trained, f->g, f->ids, n, err);
    if (st == DOZE_OK) f->g->fingerprint = gates_model_fingerprint(trained);
    return st;
}

doze_gates *doze_finetune_gates(doze_finetune *f) { return f ? f->g : NULL; }

doze_gates *doze_finetune_take_gates(doze_finetune *f) {
    if (!f) return NULL;
    doze_gates *g = f->g;
    doze_trainer_free(f->t); /* it points at g */
    f->t = NULL;
    f->g = NULL;
    return g;
}

int doze_finetune_tokens(const doze_finetune *f) { return f ? f->n_ids : 0; }
