/* Exactness against llama2.c's reference outputs (../shared/models):
 * stories260K converted to F32 GGUF must reproduce the three reference runs
 * (token pairs exactly, logits to 1e-4 relative) through the CLI's --trace
 * and --logits; llama-2-tiny-random.gguf likewise as it is; F16 and Q8_0
 * conversions must follow the greedy run and agree on argmax over the long
 * run; and `doze ppl` must give 4.2413 on tinystories-dev. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>

#include "doze.h"
#include "test_util.h"

static char shared_buf[8][512];

static const char *shared(int slot, const char *rel) {
    return test_shared_path(shared_buf[slot], sizeof shared_buf[slot], rel);
}

static int run(const char *cmd) {
    int rc = system(cmd);
    if (rc != 0) fprintf(stderr, "command failed (%d): %s\n", rc, cmd);
    return rc;
}

/* reads "a b" lines */
static int read_pairs(const char *path, int *in, int *next, int cap) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int n = 0;
    while (n < cap && fscanf(f, "%d %d", &in[n], &next[n]) == 2) n++;
    fclose(f);
    return n;
}

/* Compares a run's trace and logits files with the reference; returns the
 * number of steps compared, -1 on mismatch. */
static int compare_run(const char *name, const char *trace, const char *logits, const char *ref_pairs,
                       const char *ref_logits, int vocab) {
    static int a_in[1024], a_next[1024], r_in[1024], r_next[1024];
    int na = read_pairs(trace, a_in, a_next, 1024);
    int nr = read_pairs(ref_pairs, r_in, r_next, 1024);
    CHECK_MSG(na == nr && na > 0, "%s: %d trace lines vs %d reference", name, na, nr);
    int same = na == nr;
    for (int i = 0; same && i < na; i++) {
        if (a_in[i] != r_in[i] || a_next[i] != r_next[i]) {
            CHECK_MSG(0, "%s: step %d is %d %d, reference %d %d", name, i, a_in[i], a_next[i],
                      r_in[i], r_next[i]);
            same = 0;
        }
    }
    size_t la = 0, lr = 0;
    float *A = (float *)test_read_file(logits, &la);
    float *R = (float *)test_read_file(ref_logits, &lr);
    CHECK_MSG(A && R && la == lr && la == (size_t)nr * (size_t)vocab * 4,
              "%s: logits sizes %zu vs %zu", name, la, lr);
    double worst = 0.0;
    if (A && R && la == lr) {
        for (size_t i = 0; i < la / 4; i++) {
            double tol = 1e-4 * (fabs(R[i]) > 1.0 ? fabs(R[i]) : 1.0);
            double d = fabs((double)A[i] - (double)R[i]);
            if (d / tol > worst) worst = d / tol;
        }
    }
    CHECK_MSG(worst <= 1.0, "%s: worst logit error %.3f x tolerance", name, worst);
    printf("%s: %d steps, pairs %s, worst logit error %.4f of tolerance\n", name, na,
           same ? "identical" : "DIFFERENT", worst);
    free(A);
    free(R);
    return same && worst <= 1.0 ? na : -1;
}

/* Teacher-forced agreement: feeds the reference's input tokens and counts
 * steps whose argmax equals the reference's next token (beyond the prompt). */
static double argmax_agreement(const char *model_path, const char *ref_pairs, int *steps) {
    static int r_in[1024], r_next[1024];
    int n = read_pairs(ref_pairs, r_in, r_next, 1024);
    size_t len = 0;
    uint8_t *bytes = test_read_file(model_path, &len);
    doze_model *m = NULL;
    doze_error e;
    if (!bytes || doze_model_load_memory(bytes, len, NULL, &m, &e) != DOZE_OK) {
        free(bytes);
        return -1.0;
    }
    free(bytes);
    doze_session *s = doze_session_new(m, &e);
    int agree = 0;
    for (int i = 0; i < n; i++) {
        doze_session_step(s, r_in[i], &e);
        const float *l = doze_session_logits(s);
        int best = 0;
        for (int v = 1; v < doze_model_get_info(m)->vocab_size; v++)
            if (l[v] > l[best]) best = v;
        agree += best == r_next[i];
    }
    doze_session_free(s);
    doze_model_free(m);
    *steps = n;
    return (double)agree / n;
}

/* How many leading generated tokens of a greedy run equal the reference's. */
static int greedy_prefix(const char *trace, const char *ref_pairs) {
    static int a_in[1024], a_next[1024], r_in[1024], r_next[1024];
    int na = read_pairs(trace, a_in, a_next, 1024);
    int nr = read_pairs(ref_pairs, r_in, r_next, 1024);
    int k = 0;
    while (k < na && k < nr && a_next[k] == r_next[k]) k++;
    return k;
}

int main(void) {
    if (!test_file_exists(shared(0, "models/stories260K.bin"))) {
        printf("test_reference: SKIP: %s not found (reference data lives in ../shared)\n",
               shared_buf[0]);
        return TEST_SKIP;
    }
    char cmd[4096];
    const char *ckpt = shared(0, "models/stories260K.bin");
    const char *tok = shared(1, "models/tok512.bin");
    const char *types[4] = {"f32", "f16", "q8_0", "q4_0"};
    for (int t = 0; t < 4; t++) {
        snprintf(cmd, sizeof cmd, "%s convert llama2c %s %s --type %s -o %s/stories260K-%s.gguf",
                 DOZE_CLI, ckpt, tok, types[t], DOZE_BUILD_DIR, types[t]);
        CHECK(run(cmd) == 0);
    }

    struct {
        const char *name, *args;
    } runs[3] = {
        {"stories260K.greedy", "--steps 200"},
        {"stories260K.prompt", "--steps 120 --prompt 'One day, a dog'"},
        {"stories260K.long", "--steps 512 --prompt 'Once upon a time' --no-stop"},
    };
    for (int r = 0; r < 3; r++) {
        snprintf(cmd, sizeof cmd,
                 "%s generate %s/stories260K-f32.gguf --temp 0 %s --trace %s/%s.pairs "
                 "--logits %s/%s.logits > %s/%s.txt",
                 DOZE_CLI, DOZE_BUILD_DIR, runs[r].args, DOZE_BUILD_DIR, runs[r].name,
                 DOZE_BUILD_DIR, runs[r].name, DOZE_BUILD_DIR, runs[r].name);
        CHECK(run(cmd) == 0);
        char trace[512], logits[512], rp[256], rl[256];
        snprintf(trace, sizeof trace, "%s/%s.pairs", DOZE_BUILD_DIR, runs[r].name);
        snprintf(logits, sizeof logits, "%s/%s.logits", DOZE_BUILD_DIR, runs[r].name);
        snprintf(rp, sizeof rp, "models/%s.pairs", runs[r].name);
        snprintf(rl, sizeof rl, "models/%s.logits.f32", runs[r].name);
        compare_run(runs[r].name, trace, logits, shared(2, rp), shared(3, rl), 512);
    }

    /* the real GGUF from llama.cpp's tools, loaded as it is */
    snprintf(cmd, sizeof cmd,
             "%s generate %s --temp 0 --steps 24 --prompt 'Hello world' --no-stop "
             "--trace %s/tiny.pairs --logits %s/tiny.logits > %s/tiny.txt",
             DOZE_CLI, shared(4, "models/llama-2-tiny-random.gguf"), DOZE_BUILD_DIR,
             DOZE_BUILD_DIR, DOZE_BUILD_DIR);
    CHECK(run(cmd) == 0);
    {
        char trace[512], logits[512];
        snprintf(trace, sizeof trace, "%s/tiny.pairs", DOZE_BUILD_DIR);
        snprintf(logits, sizeof logits, "%s/tiny.logits", DOZE_BUILD_DIR);
        compare_run("llama-2-tiny-random", trace, logits,
                    shared(5, "models/llama-2-tiny-random.pairs"),
                    shared(6, "models/llama-2-tiny-random.logits.f32"), 32000);
    }

    /* F16, Q8_0 and Q4_0: greedy prefix and teacher-forced argmax agreement.
     * Q4_0 must follow for its first 30 tokens: the reference's
     * top-2 logit margin is 0.22 at token 28 and 0.54 at token 31, so 4-bit
     * weight noise decides there (ggml's own scale rule diverges at 28; the
     * error-minimizing scale search in types.c reaches 30). */
    const double need[4] = {1.0, 0.97, 0.93, 0.80};
    const int need_prefix[4] = {200, 40, 40, 30};
    for (int t = 1; t < 4; t++) {
        snprintf(cmd, sizeof cmd,
                 "%s generate %s/stories260K-%s.gguf --temp 0 --steps 200 --trace %s/greedy-%s.pairs "
                 "> /dev/null",
                 DOZE_CLI, DOZE_BUILD_DIR, types[t], DOZE_BUILD_DIR, types[t]);
        CHECK(run(cmd) == 0);
        char trace[512], model[512];
        snprintf(trace, sizeof trace, "%s/greedy-%s.pairs", DOZE_BUILD_DIR, types[t]);
        snprintf(model, sizeof model, "%s/stories260K-%s.gguf", DOZE_BUILD_DIR, types[t]);
        int prefix = greedy_prefix(trace, shared(2, "models/stories260K.greedy.pairs"));
        int steps = 0;
        double agree = argmax_agreement(model, shared(3, "models/stories260K.long.pairs"), &steps);
        printf("%s: greedy run follows the reference for %d of 200 tokens; argmax agrees on "
               "%.2f%% of %d steps of stories260K.long\n",
               types[t], prefix, 100.0 * agree, steps);
        CHECK_MSG(prefix >= need_prefix[t], "%s greedy prefix %d < %d", types[t], prefix, need_prefix[t]);
        CHECK_MSG(agree >= need[t], "%s agreement %.4f < %.2f", types[t], agree, need[t]);
    }

    /* perplexity on tinystories-dev: 4.2413 +- 0.1%. Skipped in the
     * sanitizer build (DOZE_SANITIZE defines DOZE_SANITIZED): 48,657 tokens
     * under ASan+UBSan at -O0 take minutes and exercise nothing new; set
     * DOZE_PPL=1 to run it there anyway. */
#ifdef DOZE_SANITIZED
    if (!getenv("DOZE_PPL")) {
        printf("ppl: skipped in the sanitizer build (DOZE_PPL=1 runs it)\n");
        return test_finish("test_reference");
    }
#endif
    snprintf(cmd, sizeof cmd, "%s ppl %s/stories260K-f32.gguf %s > %s/ppl.txt", DOZE_CLI,
             DOZE_BUILD_DIR, shared(7, "text/tinystories-dev.txt"), DOZE_BUILD_DIR);
    CHECK(run(cmd) == 0);
    {
        char path[512];
        snprintf(path, sizeof path, "%s/ppl.txt", DOZE_BUILD_DIR);
        FILE *f = fopen(path, "r");
        double ppl = 0;
        long long tokens = 0;
        CHECK(f && fscanf(f, "ppl %lf tokens %lld", &ppl, &tokens) == 2);
        if (f) fclose(f);
        printf("ppl %.4f over %lld tokens (reference 4.2413 over 48657)\n", ppl, tokens);
        CHECK_MSG(fabs(ppl - 4.2413) <= 4.2413 * 1e-3, "ppl %.4f", ppl);
        CHECK_MSG(tokens == 48657, "tokens %lld", tokens);
    }
    return test_finish("test_reference");
}
