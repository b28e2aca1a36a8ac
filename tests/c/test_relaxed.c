/* kernels_relaxed.c against the strict SIMD rows: the same bits, for every
 * quantized product (x4 matvec and matmul, row-major matvec and matmul), on random
 * weights and inputs with every int8 value (-128 included) and the extreme
 * ones on purpose. Natively the relaxed dot is emulated (the exact dot every
 * engine returns for the operands these kernels pass); the instruction
 * itself is tested in wasm (tests/js/relaxed_wasm.test.js). */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "kquants.h"
#include "quants32.h"
#include "test_util.h"
#include "types.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next_u32(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

/* a finite half in [2^-10, 2^3) of either sign */
static uint16_t rand_scale(void) {
    return (uint16_t)(((next_u32() & 1) << 15) | ((5 + next_u32() % 13) << 10) | (next_u32() & 0x3ff));
}

/* random q8_0 blocks: quants uniform over all int8 (mode 0), only the
 * extremes -128, -127, 127 (mode 1), or small (mode 2) */
static void fill_q8(doze_block_q8_0 *b, size_t n, int mode) {
    static const int8_t ext[3] = {-128, -127, 127};
    for (size_t i = 0; i < n; i++) {
        b[i].d = rand_scale();
        for (int k = 0; k < DOZE_QK8_0; k++)
            b[i].qs[k] = mode == 0 ? (int8_t)next_u32() : mode == 1 ? ext[next_u32() % 3] : (int8_t)(next_u32() % 7) - 3;
    }
}

static long compare(const char *what, const float *a, const float *b, size_t n, int rows, int cols) {
    if (memcmp(a, b, n * sizeof(float)) == 0) return 0;
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0) {
            fprintf(stderr, "%s %dx%d: [%zu] relaxed %.9g strict %.9g\n", what, rows, cols, i, a[i], b[i]);
            break;
        }
    return 1;
}

/* f32 in the x4 layout on the relaxed multiply-add: each step a * b + c
 * fused or not (the engine's choice), so a product may differ from the strict
 * kernel's by the roundings fusing saves, never by more than the error bound
 * of any order of the sum: |y - exact| <= cols * 2^-24 * sum |w x| (plus the
 * final lane additions); emulated (natively: not fused) it is the strict
 * kernel's bits. Each token of the matmul gets the matvec's bits either way. */
static void check_f32(long *runs, long *bad) {
    static const int shapes[][2] = {{4, 4}, {8, 12}, {12, 288}, {16, 768}, {36, 2048}, {4, 8448}, {64, 320}};
    const doze_type_traits *t = doze_type_traits_of(DOZE_TYPE_F32);
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int rows = shapes[si][0], cols = shapes[si][1], n_tok = 5;
        const size_t rb = (size_t)cols * sizeof(float);
        float *w = malloc(rb * (size_t)rows), *wx = malloc(rb * (size_t)rows), *tmp = malloc(4 * rb);
        float *x = malloc(rb * n_tok), *ya = malloc((size_t)rows * n_tok * sizeof(float));
        float *yb = malloc((size_t)rows * n_tok * sizeof(float)), *yt = malloc((size_t)rows * sizeof(float));
        for (int i = 0; i < rows * cols; i++) w[i] = ((float)(next_u32() % 2001) - 1000.0f) / 1000.0f;
        for (int i = 0; i < n_tok * cols; i++) x[i] = ((float)(next_u32() % 2001) - 1000.0f) / 256.0f;
        memcpy(wx, w, rb * (size_t)rows);
        for (int g = 0; g < rows / 4; g++) t->x4_pack((uint8_t *)(wx + (size_t)g * 4 * cols), (uint64_t)cols, (uint8_t *)tmp);
        doze_relaxed_f32.matmul[1](ya, rows, wx, x, rb, n_tok, rows, cols);
        doze_simd_f32.matmul[1](yb, rows, wx, x, rb, n_tok, rows, cols);
        if (!doze_relaxed_simd_native()) *bad += compare("f32 matmul x4", ya, yb, (size_t)rows * n_tok, rows, cols);
        double worst = 0;
        for (int tk = 0; tk < n_tok; tk++) {
            doze_relaxed_f32.matvec[1](yt, wx, x + (size_t)tk * cols, rows, cols);
            *bad += compare("f32 matmul token vs matvec", ya + (size_t)tk * rows, yt, (size_t)rows, rows, cols);
            for (int r = 0; r < rows; r++) {
                double exact = 0, mag = 0;
                for (int c = 0; c < cols; c++) {
                    exact += (double)w[(size_t)r * cols + c] * x[(size_t)tk * cols + c];
                    mag += fabs((double)w[(size_t)r * cols + c] * x[(size_t)tk * cols + c]);
                }
                const double err = fabs(yt[r] - exact) / ((cols + 4) * 0x1p-24 * mag);
                if (err > worst) worst = err;
            }
        }
        CHECK_MSG(worst <= 1.0, "f32 %dx%d: error %.3g of the bound", rows, cols, worst);
        doze_relaxed_f32.matvec[0](ya, w, x, rows, cols); /* row-major: the strict kernel */
        doze_simd_f32.matvec[0](yb, w, x, rows, cols);
        *bad += compare("f32 matvec row-major", ya, yb, (size_t)rows, rows, cols);
        *runs += 3 + n_tok;
        free(w), free(wx), free(tmp), free(x), free(ya), free(yb), free(yt);
    }
}

/* f16 in the x4 layout: x holds halves (the activations rounded as every
 * caller's F16 activation form has them), so every product is exact and a
 * fused step rounds as an unfused one: the strict bits, matvec and matmul,
 * each token of the matmul its matvec's bits */
static void check_f16(long *runs, long *bad) {
    static const int shapes[][2] = {{4, 8}, {8, 64}, {12, 288}, {16, 768}, {36, 2048}, {64, 320}};
    const doze_type_traits *t = doze_type_traits_of(DOZE_TYPE_F16);
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int rows = shapes[si][0], cols = shapes[si][1], n_tok = 5;
        const size_t rb = (size_t)cols * 2u;
        uint16_t *w = malloc(rb * (size_t)rows), *wx = malloc(rb * (size_t)rows), *tmp = malloc(4 * rb);
        float *x = malloc((size_t)cols * n_tok * sizeof(float)), *ya = malloc((size_t)rows * n_tok * sizeof(float));
        float *yb = malloc((size_t)rows * n_tok * sizeof(float)), *yt = malloc((size_t)rows * sizeof(float));
        for (int i = 0; i < rows * cols; i++) w[i] = doze_f32_to_f16(((float)(next_u32() % 4001) - 2000.0f) / 997.0f);
        for (int i = 0; i < n_tok * cols; i++)
            x[i] = doze_f16_to_f32(doze_f32_to_f16(((float)(next_u32() % 4001) - 2000.0f) / 61.0f));
        memcpy(wx, w, rb * (size_t)rows);
        for (int g = 0; g < rows / 4; g++)
            t->x4_pack((uint8_t *)(wx + (size_t)g * 4 * cols), (uint64_t)cols, (uint8_t *)tmp);
        const size_t ldx = (size_t)cols * sizeof(float);
        doze_relaxed_f16.matmul[1](ya, rows, wx, x, ldx, n_tok, rows, cols);
        doze_simd_f16.matmul[1](yb, rows, wx, x, ldx, n_tok, rows, cols);
        *bad += compare("f16 matmul x4", ya, yb, (size_t)rows * n_tok, rows, cols);
        for (int tk = 0; tk < n_tok; tk++) {
            doze_relaxed_f16.matvec[1](yt, wx, x + (size_t)tk * cols, rows, cols);
            *bad += compare("f16 matmul token vs matvec", ya + (size_t)tk * rows, yt, (size_t)rows, rows, cols);
        }
        doze_relaxed_f16.matvec[0](ya, w, x, rows, cols);
        doze_simd_f16.matvec[0](yb, w, x, rows, cols);
        *bad += compare("f16 matvec row-major", ya, yb, (size_t)rows, rows, cols);
        float mag = 0;
        for (int i = 0; i < rows; i++) mag += ya[i] < 0 ? -ya[i] : ya[i];
        CHECK_MSG(mag > 0, "f16 %dx%d: all-zero products", rows, cols);
        *runs += 2 + n_tok;
        free(w), free(wx), free(tmp), free(x), free(ya), free(yb), free(yt);
    }
}

int main(void) {
    static const int shapes[][2] = {{4, 32},  {8, 64},   {12, 288}, {16, 768}, {36, 2048}, {8, 8224}, {5, 96},
                                    {7, 288}, {64, 320}, {3, 32},  {8, 256},  {12, 512},  {4, 1024}, {6, 256},
                                    {4, 8448}}; /* the last: more than one chunk of x for every type */
    enum { NT = 8 };
    const int types[NT] = {DOZE_TYPE_Q8_0, DOZE_TYPE_Q4_0, DOZE_TYPE_Q5_0, DOZE_TYPE_Q4_K,
                           DOZE_TYPE_Q5_K, DOZE_TYPE_Q6_K, DOZE_TYPE_Q2_K, DOZE_TYPE_Q3_K};
    const doze_products *relaxed[NT] = {&doze_relaxed_q8_0, &doze_relaxed_q4_0, &doze_relaxed_q5_0,
                                        &doze_relaxed_q4_K, &doze_relaxed_q5_K, &doze_relaxed_q6_K,
                                        &doze_relaxed_q2_K, &doze_relaxed_q3_K};
    const doze_products *strict[NT] = {&doze_simd_q8_0, &doze_simd_q4_0, &doze_simd_q5_0, &doze_simd_q4_K,
                                       &doze_simd_q5_K, &doze_simd_q6_K, &doze_simd_q2_K, &doze_simd_q3_K};
    long runs = 0, bad = 0;
    for (int ti = 0; ti < NT; ti++) {
        const doze_type_traits *t = doze_type_traits_of(types[ti]);
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
            for (int mode = 0; mode < 3; mode++) {
                const int rows = shapes[si][0], cols = shapes[si][1], nb = cols / DOZE_QK8_0, n_tok = 5;
                if (cols % t->block_size) continue; /* the K-quants: whole 256-blocks */
                const size_t rb = (size_t)doze_type_row_bytes(t->type, (uint64_t)cols);
                const size_t xs = (size_t)nb * sizeof(doze_block_q8_0);
                uint8_t *w = malloc(rb * (size_t)rows), *wx = malloc(rb * (size_t)rows), *tmp = malloc(4 * rb);
                doze_block_q8_0 *x = malloc(xs * n_tok);
                float *ya = malloc((size_t)rows * n_tok * sizeof(float)), *yb = malloc((size_t)rows * n_tok * sizeof(float));
                if (t->type == DOZE_TYPE_Q8_0) {
                    fill_q8((doze_block_q8_0 *)w, (size_t)rows * nb, mode);
                } else if (t->type == DOZE_TYPE_Q4_0) {
                    for (size_t i = 0; i < rb * (size_t)rows; i++) w[i] = (uint8_t)next_u32();
                    for (size_t i = 0; i < (size_t)rows * nb; i++) ((doze_block_q4_0 *)w)[i].d = rand_scale();
                    if (mode == 1) /* nibbles 0 and 15 only */
                        for (size_t i = 0; i < (size_t)rows * nb; i++)
                            for (int k = 0; k < DOZE_QK4_0 / 2; k++)
                                ((doze_block_q4_0 *)w)[i].qs[k] = (uint8_t)((next_u32() & 1 ? 0x0f : 0) | (next_u32() & 1 ? 0xf0 : 0));
                } else if (t->block_size == DOZE_QK_K) {
                    /* K-quants: random codes and scales (mode 1: every code
                     * byte 0xff, the largest codes), finite f16 d / dmin */
                    for (size_t i = 0; i < rb * (size_t)rows; i++) w[i] = mode == 1 ? 0xff : (uint8_t)next_u32();
                    for (size_t i = 0; i < (size_t)rows * nb / 8; i++) {
                        uint8_t *blk = w + i * (size_t)t->block_bytes;
                        const uint16_t d = rand_scale(), dmin = rand_scale();
                        const size_t at = t->type == DOZE_TYPE_Q6_K   ? offsetof(doze_block_q6_K, d)
                                          : t->type == DOZE_TYPE_Q3_K ? offsetof(doze_block_q3_K, d)
                                          : t->type == DOZE_TYPE_Q2_K ? offsetof(doze_block_q2_K, d)
                                                                      : 0;
                        memcpy(blk + at, &d, 2);
                        if (t->type != DOZE_TYPE_Q6_K && t->type != DOZE_TYPE_Q3_K) memcpy(blk + at + 2, &dmin, 2);
                    }
                } else { /* q5_0: random codes; mode 1: codes 0 and 31 only */
                    for (size_t i = 0; i < rb * (size_t)rows; i++) w[i] = (uint8_t)next_u32();
                    for (size_t i = 0; i < (size_t)rows * nb; i++) {
                        doze_block_q5_0 *q = (doze_block_q5_0 *)w + i;
                        q->d = rand_scale();
                        if (mode == 1) {
                            const uint32_t top = next_u32();
                            memcpy(q->qh, &top, 4);
                            for (int k = 0; k < DOZE_QK32 / 2; k++) /* element k, k + 16: 31 where bit set */
                                q->qs[k] = (uint8_t)((top >> k & 1 ? 0x0f : 0) | (top >> (k + 16) & 1 ? 0xf0 : 0));
                        }
                    }
                }
                fill_q8(x, (size_t)nb * n_tok, mode);
                /* row-major */
                relaxed[ti]->matvec[0](ya, w, x, rows, cols);
                strict[ti]->matvec[0](yb, w, x, rows, cols);
                bad += compare("matvec row-major", ya, yb, (size_t)rows, rows, cols);
                relaxed[ti]->matmul[0](ya, rows, w, x, xs, n_tok, rows, cols);
                strict[ti]->matmul[0](yb, rows, w, x, xs, n_tok, rows, cols);
                bad += compare("matmul row-major", ya, yb, (size_t)rows * n_tok, rows, cols);
                runs += 2;
                { /* and not trivially: the products are not all zero */
                    float mag = 0;
                    for (int i = 0; i < rows; i++) mag += ya[i] < 0 ? -ya[i] : ya[i];
                    CHECK_MSG(mag > 0, "%s %dx%d: all-zero row-major products", t->name, rows, cols);
                }
                if (t->x4_cols && rows % 4 == 0) { /* the x4 layout, repacked as the loader does */
                    memcpy(wx, w, rb * (size_t)rows);
                    for (int g = 0; g < rows / 4; g++) t->x4_pack(wx + (size_t)g * 4 * rb, (uint64_t)cols, tmp);
                    relaxed[ti]->matvec[1](ya, wx, x, rows, cols);
                    strict[ti]->matvec[1](yb, wx, x, rows, cols);
                    bad += compare("matvec x4", ya, yb, (size_t)rows, rows, cols);
                    relaxed[ti]->matmul[1](ya, rows, wx, x, xs, n_tok, rows, cols);
                    strict[ti]->matmul[1](yb, rows, wx, x, xs, n_tok, rows, cols);
                    bad += compare("matmul x4", ya, yb, (size_t)rows * n_tok, rows, cols);
                    /* and not trivially: the products are not all zero */
                    float mag = 0;
                    for (int i = 0; i < rows; i++) mag += ya[i] < 0 ? -ya[i] : ya[i];
                    CHECK_MSG(mag > 0, "%s %dx%d: all-zero products", t->name, rows, cols);
                    runs += 2;
                }
                free(w), free(wx), free(tmp), free(x), free(ya), free(yb);
            }
    }
    check_f32(&runs, &bad);
    check_f16(&runs, &bad);
    printf("relaxed f32/f16/q8_0/q4_0/q5_0/q2_K ... q6_K products (%s dot): %ld of %ld runs differ from the strict SIMD bits\n",
           doze_relaxed_simd_native() ? "relaxed" : "emulated", bad, runs);
    CHECK(runs >= 100);
    CHECK(bad == 0);
    return test_finish("test_relaxed");
}
