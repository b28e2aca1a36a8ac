/* libFuzzer target: K-quant, IQ4_XS, BF16, Q4_1, Q5_0, Q5_1 and IQ4_NL
 * blocks as a hostile file holds them.
 *
 * Byte 0 picks the type (q4_k, q5_k, q6_k, bf16, q4_1, q5_0, q5_1, iq4_nl,
 * q2_k, q3_k, iq4_xs: low 3 bits, plus 8 when bit 5 is set and that names
 * a type) and the rows (1..4: bits 3-4); byte 1 seeds the input vector; the rest are the
 * weight bytes (as many whole rows of 256 values as it holds, at most 8
 * super-blocks per row). Every row is dequantized, re-quantized and
 * dequantized again, and multiplied by x with both kernel sets and through
 * matmul: no undefined behaviour anywhere (ASan + UBSan abort), and where
 * the weights are finite and moderate the SIMD product equals the
 * reference within 1e-5 of sum |w * x|, and matmul gives matvec's bits;
 * with 4 rows, every row read back through the x4 layout is the file's.
 *
 * Build: CC=clang cmake -S . -B build-fuzz -DDOZE_FUZZ=ON && cmake --build build-fuzz
 * Run:   build-fuzz/fuzz_kquants tests/fuzz/corpus/fuzz_kquants -max_total_time=60 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "kquants.h"
#include "types.h"

static const int types[11] = {DOZE_TYPE_Q4_K, DOZE_TYPE_Q5_K,  DOZE_TYPE_Q6_K, DOZE_TYPE_BF16,
                              DOZE_TYPE_Q4_1, DOZE_TYPE_Q5_0,  DOZE_TYPE_Q5_1, DOZE_TYPE_IQ4_NL,
                              DOZE_TYPE_Q2_K, DOZE_TYPE_Q3_K, DOZE_TYPE_IQ4_XS};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    const int ti = (data[0] & 7) + ((data[0] & 32) && (data[0] & 7) < 3 ? 8 : 0);
    const doze_type_traits *t = doze_type_traits_of(types[ti]);
    int rows = 1 + ((data[0] >> 3) & 3);
    uint32_t seed = 0x9e3779b9u * (1u + data[1]);
    data += 2;
    size -= 2;
    /* cols: whole super-blocks the bytes hold for `rows` rows, at most 8 */
    const size_t sb = (size_t)doze_type_row_bytes(t->type, 256);
    size_t nsb = size / ((size_t)rows * sb);
    if (nsb == 0) {
        rows = 1;
        nsb = size / sb;
    }
    if (nsb == 0) return 0;
    if (nsb > 8) nsb = 8;
    const int cols = (int)(nsb * 256);
    const size_t rb = nsb * sb;
    uint8_t *w = malloc(rb * (size_t)rows), *w2 = malloc(rb);
    float *wf = malloc((size_t)rows * cols * sizeof(float)), *back = malloc((size_t)cols * sizeof(float));
    float *x = malloc((size_t)cols * 2 * sizeof(float));
    const size_t xs = doze_type_act_bytes(t, cols);
    uint8_t *xa = malloc(xs * 2);
    float ys[4], yr[4], ym[8], y1[4];
    memcpy(w, data, rb * (size_t)rows);

    int sane = 1;
    for (int r = 0; r < rows; r++) {
        float *row = wf + (size_t)r * cols;
        t->dequantize_row(w + (size_t)r * rb, row, cols);
        int finite = 1, small = 1;
        for (int c = 0; c < cols; c++) {
            finite &= isfinite(row[c]) && fabsf(row[c]) < 1e15f;
            small &= fabsf(row[c]) < 1e4f;
        }
        sane &= finite;
        /* the quantizer on what a row holds (inf/nan included) */
        t->quantize_row(row, w2, cols);
        t->dequantize_row(w2, back, cols);
        if (small) /* a row whose scales fit in f16 re-quantizes to finite values */
            for (int c = 0; c < cols; c++)
                if (!isfinite(back[c])) __builtin_trap();
    }
    for (int i = 0; i < 2 * cols; i++) {
        seed ^= seed << 13, seed ^= seed >> 17, seed ^= seed << 5;
        x[i] = (float)((int32_t)(seed >> 8) - (1 << 23)) / (float)(1 << 21);
    }
    for (int k = 0; k < 2; k++) {
        if (t->act_type == DOZE_TYPE_Q8_0) doze_kernels_reference.quantize_q8_0(x + (size_t)k * cols, xa + k * xs, cols);
        else if (t->act_type == DOZE_TYPE_F32) memcpy(xa + k * xs, x + (size_t)k * cols, xs);
        else doze_round_input(t->act_type, x + (size_t)k * cols, (float *)(void *)(xa + k * xs), cols);
    }
    t->products[DOZE_KERNELS_SIMD]->matvec[0](ys, w, xa, rows, cols);
    t->products[DOZE_KERNELS_REFERENCE]->matvec[0](yr, w, xa, rows, cols);
    for (int set = 0; set < 2; set++) {
        t->products[set]->matmul[0](ym, rows, w, xa, xs, 2, rows, cols);
        for (int k = 0; k < 2; k++) {
            t->products[set]->matvec[0](y1, w, xa + k * xs, rows, cols);
            if (memcmp(y1, ym + k * rows, (size_t)rows * sizeof(float)) != 0 && sane) __builtin_trap();
        }
    }
    if (sane) {
        float xd[8 * 256];
        if (t->act_type == DOZE_TYPE_Q8_0) doze_type_traits_of(DOZE_TYPE_Q8_0)->dequantize_row(xa, xd, cols);
        else memcpy(xd, xa, (size_t)cols * sizeof(float));
        for (int r = 0; r < rows; r++) {
            double mag = 0;
            for (int c = 0; c < cols; c++) mag += fabs((double)wf[(size_t)r * cols + c] * xd[c]);
            if (fabs((double)ys[r] - yr[r]) > 1e-5 * mag + 1e-30) __builtin_trap();
        }
    }
    /* the x4 layout (4 rows): each row read back through it is the row the
     * file holds, bit for bit, whatever the bytes */
    if (rows == 4 && t->x4_cols && cols % t->x4_cols == 0) {
        uint8_t *wx = malloc(4 * rb), *tmp = malloc(4 * rb);
        memcpy(wx, w, 4 * rb);
        t->x4_pack(wx, (uint64_t)cols, tmp);
        for (int r = 0; r < 4; r++) {
            t->x4_row(wx, r, (uint64_t)cols, back);
            if (memcmp(back, wf + (size_t)r * cols, (size_t)cols * sizeof(float)) != 0) __builtin_trap();
        }
        free(wx), free(tmp);
    }
    free(w), free(w2), free(wf), free(back), free(x), free(xa);
    return 0;
}
