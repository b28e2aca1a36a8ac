/* Minimal test harness: CHECK macros that count failures, a skip code, and
 * helpers to find the shared reference data. */
#ifndef DOZE_TEST_UTIL_H
#define DOZE_TEST_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TEST_SKIP 77

static int test_failures = 0;

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            test_failures++;                                                     \
        }                                                                        \
    } while (0)

#define CHECK_MSG(cond, ...)                                                     \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                        \
            fprintf(stderr, "\n");                                               \
            test_failures++;                                                     \
        }                                                                        \
    } while (0)

/* the larger of a running worst difference and a new one, where a NaN
 * difference is the worst of all (fmax would pass it over) */
static inline double worst_diff(double worst, double d) { return d != d ? INFINITY : fmax(worst, d); }

/* One position's V logits against the reference ref (e.g. the training
 * forward's): *worst gets got's largest gap (NaN-proof), *moved the largest
 * gap of another run (orig, e.g. the model before training), *scale the
 * largest |ref|. */
static inline void logit_gaps(const float *got, const float *orig, const float *ref, int V, double *worst,
                              double *moved, double *scale) {
    for (int v = 0; v < V; v++) {
        *worst = worst_diff(*worst, fabs(got[v] - ref[v]));
        *moved = fmax(*moved, fabs(orig[v] - ref[v]));
        *scale = fmax(*scale, fabs(ref[v]));
    }
}

static inline int test_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Path of a file in ../shared (static buffer per call site is fine in tests). */
static inline const char *test_shared_path(char *buf, size_t cap, const char *rel) {
    snprintf(buf, cap, "%s/%s", DOZE_SHARED_DIR, rel);
    return buf;
}

/* Reads a whole file; returns NULL if absent. Caller frees. */
static inline unsigned char *test_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(len > 0 ? (size_t)len : 1);
    if (buf && len > 0 && fread(buf, 1, (size_t)len, f) != (size_t)len) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) *n = (size_t)len;
    return buf;
}

static inline int test_finish(const char *name) {
    if (test_failures) {
        fprintf(stderr, "%s: %d check(s) failed\n", name, test_failures);
        return 1;
    }
    printf("%s: ok\n", name);
    return 0;
}

#endif
