/* The scalar reference kernels: plain loops, the straightforward math. They
 * define what the SIMD table must compute (differential tests) and are the
 * baseline of `bench`. Correctness first, no tricks. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"
#include "kquants.h"
#include "quants32.h"
#include "types.h"

/* y(rows) = W(rows, cols) @ x(cols) */
static void ref_matvec_f32(float *y, const float *w, const float *x, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        const float *wr = w + (size_t)r * (size_t)cols;
        float s = 0.0f;
        for (int c = 0; c < cols; c++) s += wr[c] * x[c];
        y[r] = s;
    }
}

/* y(rows) = W(rows, cols) @ x(cols), W in IEEE half */
static void ref_matvec_f16(float *y, const uint16_t *w, const float *x, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        const uint16_t *wr = w + (size_t)r * (size_t)cols;
        float s = 0.0f;
        for (int c = 0; c < cols; c++) s += doze_f16_to_f32(wr[c]) * x[c];
        y[r] = s;
    }
}

/* y(rows) = W(rows, cols/32 blocks) @ xq(cols/32 blocks): per block pair an
 * exact int32 dot, times dw*dx, summed over blocks in float, in block order. */
static void ref_matvec_q8_0(float *y, const void *w, const void *xq, int rows, int cols) {
    const doze_block_q8_0 *wb = w;
    const doze_block_q8_0 *xb = xq;
    int nb = cols / DOZE_QK8_0;
    for (int r = 0; r < rows; r++) {
        const doze_block_q8_0 *wr = wb + (size_t)r * (size_t)nb;
        float s = 0.0f;
        for (int b = 0; b < nb; b++) {
            int32_t isum = 0;
            for (int j = 0; j < DOZE_QK8_0; j++) isum += (int32_t)wr[b].qs[j] * (int32_t)xb[b].qs[j];
            float d = doze_f16_to_f32(wr[b].d) * doze_f16_to_f32(xb[b].d);
            s += (float)isum * d;
        }
        y[r] = s;
    }
}

/* ---- q4_0, the x4 layouts, matmul ------------------------------------- */

/* exact int32 dot of a q4_0 payload (q - 8) with 32 int8 of x */
static int32_t q4_dot(const uint8_t *qs, const int8_t *x) {
    int32_t isum = 0;
    for (int j = 0; j < DOZE_QK4_0 / 2; j++) {
        isum += ((int32_t)(qs[j] & 0x0f) - 8) * (int32_t)x[j];
        isum += ((int32_t)(qs[j] >> 4) - 8) * (int32_t)x[j + DOZE_QK4_0 / 2];
    }
    return isum;
}

static int32_t q8_dot(const int8_t *qs, const int8_t *x) {
    int32_t isum = 0;
    for (int j = 0; j < DOZE_QK8_0; j++) isum += (int32_t)qs[j] * (int32_t)x[j];
    return isum;
}

/* y(rows) = W(rows, cols/32 q4_0 blocks) @ xq: per block the exact int32
 * dot, times dw*dx, summed in float in block order. */
static void ref_matvec_q4_0(float *y, const void *w, const void *xq, int rows, int cols) {
    const doze_block_q4_0 *wb = w;
    const doze_block_q8_0 *xb = xq;
    int nb = cols / DOZE_QK4_0;
    for (int r = 0; r < rows; r++) {
        const doze_block_q4_0 *wr = wb + (size_t)r * (size_t)nb;
        float s = 0.0f;
        for (int b = 0; b < nb; b++) {
            float d = doze_f16_to_f32(wr[b].d) * doze_f16_to_f32(xb[b].d);
            s += (float)q4_dot(wr[b].qs, xb[b].qs) * d;
        }
        y[r] = s;
    }
}

/* the same with W in the x4 layout (rows % 4 == 0) */
static void ref_matvec_q4_0_x4(float *y, const void *w, const void *xq, int rows, int cols) {
    const doze_block_q4_0x4 *wb = w;
    const doze_block_q8_0 *xb = xq;
    int nb = cols / DOZE_QK4_0;
    for (int r = 0; r < rows; r++) {
        const doze_block_q4_0x4 *wg = wb + (size_t)(r / 4) * (size_t)nb;
        float s = 0.0f;
        for (int b = 0; b < nb; b++) {
            float d = doze_f16_to_f32(wg[b].d[r % 4]) * doze_f16_to_f32(xb[b].d);
            s += (float)q4_dot(wg[b].qs[r % 4], xb[b].qs) * d;
        }
        y[r] = s;
    }
}

static void ref_matvec_q8_0_x4(float *y, const void *w, const void *xq, int rows, int cols) {
    const doze_block_q8_0x4 *wb = w;
    const doze_block_q8_0 *xb = xq;
    int nb = cols / DOZE_QK8_0;
    for (int r = 0; r < rows; r++) {
        const doze_block_q8_0x4 *wg = wb + (size_t)(r / 4) * (size_t)nb;
        float s = 0.0f;
        for (int b = 0; b < nb; b++) {
            float d = doze_f16_to_f32(wg[b].d[r % 4]) * doze_f16_to_f32(xb[b].d);
            s += (float)q8_dot(wg[b].qs[r % 4], xb[b].qs) * d;
        }
        y[r] = s;
    }
}

/* y(rows) = W(rows, cols) @ x(cols), W f32 in the x4 layout (rows % 4 == 0,
 * cols % 4 == 0): w(r, c) is at (r / 4) * 4 * cols + (c / 4) * 16 + (r % 4) * 4
 * + c % 4. The sum in the order kernels.h fixes for this layout: four
 * partial sums l[j] over the columns c = j (mod 4) in column order, then
 * (l[0] + l[2]) + (l[1] + l[3]). */
static void ref_matvec_f32_x4(float *y, const float *w, const float *x, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        const float *wg = w + (size_t)(r / 4) * 4u * (size_t)cols + (size_t)(r % 4) * 4u;
        float l[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (int c = 0; c < cols; c++) l[c % 4] += wg[(size_t)(c / 4) * 16u + (size_t)(c % 4)] * x[c];
        y[r] = (l[0] + l[2]) + (l[1] + l[3]);
    }
}

/* the same with W f16 in its x4 layout (cols % 8 == 0): w(r, c) at (r / 4)
 * * 4 * cols + (c / 8) * 32 + (r % 4) * 8 + c % 8 (any halves) */
static void ref_matvec_f16_x4(float *y, const uint16_t *w, const float *x, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        const uint16_t *wg = w + (size_t)(r / 4) * 4u * (size_t)cols + (size_t)(r % 4) * 8u;
        float l[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (int c = 0; c < cols; c++)
            l[c % 4] += doze_f16_to_f32(wg[(size_t)(c / 8) * 32u + (size_t)(c % 8)]) * x[c];
        y[r] = (l[0] + l[2]) + (l[1] + l[3]);
    }
}

/* Y(n, rows) = X(n, cols) @ W^T: token by token, the matvec's loops */
static void ref_matmul_f32(int layout, float *y, int ldy, const float *w, const float *x, int ldx, int n,
                           int rows, int cols) {
    for (int t = 0; t < n; t++)
        (layout ? ref_matvec_f32_x4 : ref_matvec_f32)(y + (size_t)t * ldy, w, x + (size_t)t * ldx, rows, cols);
}

/* the n inputs at x, x + ldx, ... (bytes) through one matvec each */
static void ref_matmul_each(doze_matvec_fn mv, float *y, int ldy, const void *w, const void *x, size_t ldx, int n,
                            int rows, int cols) {
    for (int t = 0; t < n; t++) mv(y + (size_t)t * ldy, w, (const uint8_t *)x + (size_t)t * ldx, rows, cols);
}

/* A type's product row from its two matvecs (layout 0 and x4): the matvecs
 * behind doze_matvec_fn's signature, the matmuls token by token. */
#define REF_PRODUCTS(T, MV0, MV1) \
    static void ref_##T##_mv0(float *y, const void *w, const void *x, int rows, int cols) { \
        MV0(y, w, x, rows, cols); \
    } \
    static void ref_##T##_mv1(float *y, const void *w, const void *x, int rows, int cols) { \
        MV1(y, w, x, rows, cols); \
    } \
    static void ref_##T##_mm0(float *y, int ldy, const void *w, const void *x, size_t ldx, int n, int rows, \
                              int cols) { \
        ref_matmul_each(ref_##T##_mv0, y, ldy, w, x, ldx, n, rows, cols); \
    } \
    static void ref_##T##_mm1(float *y, int ldy, const void *w, const void *x, size_t ldx, int n, int rows, \
                              int cols) { \
        ref_matmul_each(ref_##T##_mv1, y, ldy, w, x, ldx, n, rows, cols); \
    } \
    const doze_products doze_ref_##T = {{ref_##T##_mv0, ref_##T##_mv1}, {ref_##T##_mm0, ref_##T##_mm1}};

REF_PRODUCTS(f32, ref_matvec_f32, ref_matvec_f32_x4)
REF_PRODUCTS(f16, ref_matvec_f16, ref_matvec_f16_x4)
REF_PRODUCTS(q8_0, ref_matvec_q8_0, ref_matvec_q8_0_x4)
REF_PRODUCTS(q4_0, ref_matvec_q4_0, ref_matvec_q4_0_x4)

/* ---- K-quants and BF16 ------------------------------------------------------
 * The K-quant products take x as q8_0 blocks: one x block per 32-value
 * sub-block (Q4_K, Q5_K), or per pair of 16-value groups (Q6_K). Per x block
 * b, exact integer sums, then the float part in one fixed order:
 *   Q4_K/Q5_K: s += dx_b * (d * (float)(sc * sum q x) - dmin * (float)(m * sum x))
 *   Q6_K:      s += (float)(sc_a * sum_a (q - 32) x + sc_b * sum_b (q - 32) x) * (d * dx_b)
 * summed over the blocks of a row in block order. */

/* sum over a q8_0 block's quants */
static int32_t q8_sum(const int8_t *x, int n) {
    int32_t s = 0;
    for (int j = 0; j < n; j++) s += x[j];
    return s;
}

/* Q4_K (five_bits 0) and Q5_K (1) rows: value l of sub-block j of a
 * super-block as its code (0..15 or 0..31) */
static int kq_code(const uint8_t *qs, const uint8_t *qh, int j, int l) {
    const uint8_t byte = qs[32 * (j / 2) + l];
    int q = j & 1 ? byte >> 4 : byte & 0x0f;
    if (qh) q |= ((qh[l] >> j) & 1) << 4;
    return q;
}

/* super-block i of row r: row-major, or in the K-quant x4 layout (rows in
 * groups of 4, the group's 4 blocks i side by side) */
static const uint8_t *kq_block(const void *w, int layout, int r, int i, int nsb, size_t bb) {
    const size_t at = layout ? ((size_t)(r / 4) * (size_t)nsb + (size_t)i) * 4 + (size_t)(r % 4)
                             : (size_t)r * (size_t)nsb + (size_t)i;
    return (const uint8_t *)w + at * bb;
}

static void ref_matvec_kq(int five_bits, int layout, float *y, const void *w, const void *xq, int rows, int cols) {
    const doze_block_q8_0 *xb = xq;
    const int nsb = cols / DOZE_QK_K;
    const size_t bb = five_bits ? sizeof(doze_block_q5_K) : sizeof(doze_block_q4_K);
    for (int r = 0; r < rows; r++) {
        float s = 0.0f;
        for (int i = 0; i < nsb; i++) {
            const uint8_t *blk = kq_block(w, layout, r, i, nsb, bb);
            const uint8_t *scales, *qs, *qh = NULL;
            uint16_t dh, mh;
            if (five_bits) {
                const doze_block_q5_K *b = (const doze_block_q5_K *)blk;
                scales = b->scales, qs = b->qs, qh = b->qh, dh = b->d, mh = b->dmin;
            } else {
                const doze_block_q4_K *b = (const doze_block_q4_K *)blk;
                scales = b->scales, qs = b->qs, dh = b->d, mh = b->dmin;
            }
            const float d = doze_f16_to_f32(dh), dmin = doze_f16_to_f32(mh);
            for (int j = 0; j < 8; j++) {
                const doze_block_q8_0 *x = xb + 8 * i + j;
                int sc, m;
                doze_kq_scale_min(scales, j, &sc, &m);
                int32_t isum = 0;
                for (int l = 0; l < 32; l++) isum += kq_code(qs, qh, j, l) * (int32_t)x->qs[l];
                const float dx = doze_f16_to_f32(x->d);
                s += dx * (d * (float)(sc * isum) - dmin * (float)(m * q8_sum(x->qs, 32)));
            }
        }
        y[r] = s;
    }
}

static void ref_matvec_q4_K(float *y, const void *w, const void *xq, int rows, int cols) {
    ref_matvec_kq(0, 0, y, w, xq, rows, cols);
}
static void ref_matvec_q5_K(float *y, const void *w, const void *xq, int rows, int cols) {
    ref_matvec_kq(1, 0, y, w, xq, rows, cols);
}
static void ref_matvec_q4_K_x4(float *y, const void *w, const void *xq, int rows, int cols) {
    ref_matvec_kq(0, 1, y, w, xq, rows, cols);
}
static void ref_matvec_q5_K_x4(float *y, const void *w, const void *xq, int rows, int cols) {
    ref_matvec_kq(1, 1, y, w, xq, rows, cols);
}

/* code (0..63) of value v (0..255) of a Q6_K super-block */
static int q6_code(const doze_block_q6_K *b, int v) {
    const int half = v / 128, t = (v % 128) / 32, l = v % 32;
    const uint8_t lo = b->ql[64 * half + l + 32 * (t & 1)];
    const int nib = t < 2 ? lo & 0x0f : lo >> 4;
    return nib | (((b->qh[32 * half + l] >> (2 * t)) & 3) << 4);
}

static void ref_matvec_q6_K_any(int layout, float *y, const void *w, const void *xq, int rows, int cols) {
    const doze_block_q6_K *wb = w;
    const doze_block_q8_0 *xb = xq;
    const int nsb = cols / DOZE_QK_K;
    for (int r = 0; r < rows; r++) {
        float s = 0.0f;
        for (int i = 0; i < nsb; i++) {
            const doze_block_q6_K *b = (const doze_block_q6_K *)kq_block(wb, layout, r, i, nsb, sizeof *wb);
            const float d = doze_f16_to_f32(b->d);
            for (int j = 0; j < 8; j++) { /* x block j: groups 2j, 2j+1 */
                const doze_block_q8_0 *x = xb + 8 * i + j;
                int32_t a = 0;
                for (int g = 0; g < 2; g++) {
                    int32_t isum = 0;
                    for (int l = 0; l < 16; l++) isum += (q6_code(b, 32 * j + 16 * g + l) - 32) * (int32_t)x->qs[16 * g + l];
                    a += (int32_t)b->scales[2 * j + g] * isum;
                }
                s += (float)a * (d * doze_f16_to_f32(x->d));
            }
        }
        y[r] = s;
    }
}

static void ref_matvec_q6_K(float *y, const void *w, const void *xq, int rows, int cols) {
    ref_matvec_q6_K_any(0, y, w, xq, rows, cols);
}
static void ref_matvec_q6_K_x4(float *y, const void *w, const void *xq, int rows, int cols) {
    ref_matvec_q6_K_any(1, y, w, xq, rows, cols);
}

/* Q2_K, Q3_K (x block j: groups 2j, 2j+1 of 16) and IQ4_XS (x block j:
 * sub-block j), row-major (IQ4_XS also in the K-quant x4 layout):
 *   Q2_K:   s += dx_j * (d * (float)(sc_a sum_a q x + sc_b sum_b q x)
 *                        - dmin * (float)(m_a sum_a x + m_b sum_b x))
 *   Q3_K:   s += (float)(s_a sum_a (q - 4) x + s_b sum_b (q - 4) x) * (d * dx_j)
 *   IQ4_XS: s += (float)(ls_j * sum grid[q] x) * (d * dx_j) */
static void ref_matvec_q2_K(float *y, const void *w, const void *xq, int rows, int cols) {
    const doze_block_q8_0 *xb = xq;
    const int nsb = cols / DOZE_QK_K;
    for (int r = 0; r < rows; r++) {
        float s = 0.0f;
        for (int i = 0; i < nsb; i++) {
            const doze_block_q2_K *b = (const doze_block_q2_K *)w + (size_t)r * (size_t)nsb + i;
            const float d = doze_f16_to_f32(b->d), dmin = doze_f16_to_f32(b->dmin);
            for (int j = 0; j < 8; j++) {
                const doze_block_q8_0 *x = xb + 8 * i + j;
                int32_t a = 0, m = 0;
                for (int g = 0; g < 2; g++) {
                    int32_t isum = 0;
                    for (int l = 0; l < 16; l++)
                        isum += doze_k2_code(b->qs, 32 * j + 16 * g + l) * (int32_t)x->qs[16 * g + l];
                    a += (int32_t)(b->scales[2 * j + g] & 0x0f) * isum;
                    m += (int32_t)(b->scales[2 * j + g] >> 4) * q8_sum(x->qs + 16 * g, 16);
                }
                s += doze_f16_to_f32(x->d) * (d * (float)a - dmin * (float)m);
            }
        }
        y[r] = s;
    }
}

static void ref_matvec_q3_K(float *y, const void *w, const void *xq, int rows, int cols) {
    const doze_block_q8_0 *xb = xq;
    const int nsb = cols / DOZE_QK_K;
    for (int r = 0; r < rows; r++) {
        float s = 0.0f;
        for (int i = 0; i < nsb; i++) {
            const doze_block_q3_K *b = (const doze_block_q3_K *)w + (size_t)r * (size_t)nsb + i;
            const float d = doze_f16_to_f32(b->d);
            for (int j = 0; j < 8; j++) {
                const doze_block_q8_0 *x = xb + 8 * i + j;
                int32_t a = 0;
                for (int g = 0; g < 2; g++) {
                    int32_t isum = 0;
                    for (int l = 0; l < 16; l++) {
                        const int v = 32 * j + 16 * g + l;
                        const int q = doze_k2_code(b->qs, v) | (((b->hmask[v % 32] >> (v / 32)) & 1) << 2);
                        isum += (q - 4) * (int32_t)x->qs[16 * g + l];
                    }
                    a += doze_q3_K_scale(b->scales, 2 * j + g) * isum;
                }
                s += (float)a * (d * doze_f16_to_f32(x->d));
            }
        }
        y[r] = s;
    }
}

static void ref_matvec_iq4_xs_any(int layout, float *y, const void *w, const void *xq, int rows, int cols) {
    const doze_block_q8_0 *xb = xq;
    const int nsb = cols / DOZE_QK_K;
    for (int r = 0; r < rows; r++) {
        float s = 0.0f;
        for (int i = 0; i < nsb; i++) {
            const doze_block_iq4_xs *b = (const doze_block_iq4_xs *)kq_block(w, layout, r, i, nsb, sizeof *b);
            const float d = doze_f16_to_f32(b->d);
            for (int j = 0; j < 8; j++) {
                const doze_block_q8_0 *x = xb + 8 * i + j;
                int32_t isum = 0;
                for (int l = 0; l < 32; l++)
                    isum += doze_iq4nl_values[doze_q32_code(b->qs + 16 * j, NULL, l)] * (int32_t)x->qs[l];
                s += (float)(doze_iq4_xs_scale(b, j) * isum) * (d * doze_f16_to_f32(x->d));
            }
        }
        y[r] = s;
    }
}
static void ref_matvec_iq4_xs(float *y, const void *w, const void *xq, int rows, int cols) {
    ref_matvec_iq4_xs_any(0, y, w, xq, rows, cols);
}
static void ref_matvec_iq4_xs_x4(float *y, const void *w, const void *xq, int rows, int cols) {
    ref_matvec_iq4_xs_any(1, y, w, xq, rows, cols);
}

/* y(rows) = W(rows, cols) @ x(cols), W in bf16 */
static void ref_matvec_bf16(float *y, const void *w, const void *x, int rows, int cols) {
    const uint16_t *wh = w;
    const float *xf = x;
    for (int r = 0; r < rows; r++) {
        const uint16_t *wr = wh + (size_t)r * (size_t)cols;
        float s = 0.0f;
        for (int c = 0; c < cols; c++) s += doze_bf16_to_f32(wr[c]) * xf[c];
        y[r] = s;
    }
}

/* a row-major-only type's product row */
#define REF_PRODUCTS_ROWS(T, MV0) \
    static void ref_##T##_mm0(float *y, int ldy, const void *w, const void *x, size_t ldx, int n, int rows, \
                              int cols) { \
        ref_matmul_each(MV0, y, ldy, w, x, ldx, n, rows, cols); \
    } \
    const doze_products doze_ref_##T = {{MV0, NULL}, {ref_##T##_mm0, NULL}};

REF_PRODUCTS(q4_K, ref_matvec_q4_K, ref_matvec_q4_K_x4)
REF_PRODUCTS(q5_K, ref_matvec_q5_K, ref_matvec_q5_K_x4)
REF_PRODUCTS(q6_K, ref_matvec_q6_K, ref_matvec_q6_K_x4)
REF_PRODUCTS_ROWS(bf16, ref_matvec_bf16)
REF_PRODUCTS_ROWS(q2_K, ref_matvec_q2_K)
REF_PRODUCTS_ROWS(q3_K, ref_matvec_q3_K)
REF_PRODUCTS(iq4_xs, ref_matvec_iq4_xs, ref_matvec_iq4_xs_x4)

/* ---- Q4_1, Q5_0, Q5_1, IQ4_NL ---------------------------------------------
 * x as q8_0 blocks, one per weight block. Per block b, the exact int32 dot
 * of the weight codes (Q5_0: q - 16; IQ4_NL: the grid value) with x's
 * quants, then in this order:
 *   Q5_0, IQ4_NL: s += (float)isum * (d * dx)
 *   Q4_1, Q5_1:   s += (float)isum * (d * dx) + m * (dx * (float)sum x)
 * summed over the blocks of a row in block order. */

typedef struct {
    size_t bb;  /* bytes per block */
    int nh;     /* halves at the block's start: d (and m) */
    int five;   /* a qh field (4 bytes) after them */
    int kind;   /* 0: q - 16 (Q5_0), 1: q (Q4_1, Q5_1), 2: grid (IQ4_NL) */
} q32_form;

static const q32_form form_q4_1 = {sizeof(doze_block_q4_1), 2, 0, 1};
static const q32_form form_q5_0 = {sizeof(doze_block_q5_0), 1, 1, 0};
static const q32_form form_q5_1 = {sizeof(doze_block_q5_1), 2, 1, 1};
static const q32_form form_iq4_nl = {sizeof(doze_block_iq4_nl), 1, 0, 2};

static void ref_matvec_q32(const q32_form *f, int layout, float *y, const void *w, const void *xq, int rows,
                           int cols) {
    const doze_block_q8_0 *xb = xq;
    const int nb = cols / DOZE_QK32;
    for (int r = 0; r < rows; r++) {
        float s = 0.0f;
        for (int b = 0; b < nb; b++) {
            /* the block's halves and payload: row-major, or the x4 layout */
            uint16_t dh, mh = 0;
            uint8_t qhb[4], qsb[16];
            const uint8_t *qh = NULL, *qs;
            if (layout) {
                /* the x4 layout: the 4 rows' d, then m, then (five bits)
                 * their codes as doze_q5x4_code reads them, else their qs */
                const uint8_t *g = (const uint8_t *)w + ((size_t)(r / 4) * (size_t)nb + (size_t)b) * 4 * f->bb;
                memcpy(&dh, g + 2 * (r % 4), 2);
                if (f->nh == 2) memcpy(&mh, g + 8 + 2 * (r % 4), 2);
                const uint8_t *p = g + 8 * (size_t)f->nh;
                if (f->five) {
                    doze_q5x4_to_block(p, p + 16 + (size_t)(r % 4) * 16, r % 4, qhb, qsb);
                    qh = qhb;
                    qs = qsb;
                } else {
                    qs = p + (size_t)(r % 4) * 16;
                }
            } else {
                const uint8_t *blk = (const uint8_t *)w + ((size_t)r * (size_t)nb + (size_t)b) * f->bb;
                memcpy(&dh, blk, 2);
                if (f->nh == 2) memcpy(&mh, blk + 2, 2);
                const uint8_t *p = blk + 2 * (size_t)f->nh;
                qh = f->five ? p : NULL, qs = f->five ? p + 4 : p;
            }
            const int8_t *x = xb[b].qs;
            int32_t isum = 0;
            for (int j = 0; j < DOZE_QK32; j++) {
                const int q = doze_q32_code(qs, qh, j);
                isum += (f->kind == 0 ? q - 16 : f->kind == 1 ? q : doze_iq4nl_values[q]) * (int32_t)x[j];
            }
            const float dx = doze_f16_to_f32(xb[b].d);
            if (f->nh == 2)
                s += (float)isum * (doze_f16_to_f32(dh) * dx) + doze_f16_to_f32(mh) * (dx * (float)q8_sum(x, 32));
            else
                s += (float)isum * (doze_f16_to_f32(dh) * dx);
        }
        y[r] = s;
    }
}

#define REF_Q32(T) \
    static void ref_matvec_##T(float *y, const void *w, const void *xq, int rows, int cols) { \
        ref_matvec_q32(&form_##T, 0, y, w, xq, rows, cols); \
    } \
    static void ref_matvec_##T##_x4(float *y, const void *w, const void *xq, int rows, int cols) { \
        ref_matvec_q32(&form_##T, 1, y, w, xq, rows, cols); \
    } \
    REF_PRODUCTS(T, ref_matvec_##T, ref_matvec_##T##_x4)
REF_Q32(q4_1)
REF_Q32(q5_0)
REF_Q32(q5_1)
REF_Q32(iq4_nl)

static void ref_matmul_q(int type, int layout, float *y, int ldy, const void *w, const void *xq, int n,
                         int rows, int cols) {
    const doze_type_traits *t = doze_type_traits_of(type);
    if (t && t->products[DOZE_KERNELS_REFERENCE]->matmul[layout])
        t->products[DOZE_KERNELS_REFERENCE]->matmul[layout](y, ldy, w, xq, doze_type_act_bytes(t, cols), n, rows,
                                                            cols);
}

/* xq(n/32 blocks) = x(n): d = max|x|/127 (stored as f16), q = round(x/d),
 * halves away from zero (ggml's reference quantizer). */
/* roundf to int8 as the SIMD kernel's saturating conversion does: NaN
 * (from a hostile model's weights) gives 0, +-inf saturate; converting
 * those with a plain cast would be undefined behaviour. Finite values of a
 * block (|x| <= 127 after scaling) are unchanged. */
static int8_t q8_round(float v) {
    if (!(v == v)) return 0;
    float r = roundf(v);
    return (int8_t)(r > 127.0f ? 127.0f : r < -128.0f ? -128.0f : r);
}

static void ref_quantize_q8_0(const float *x, void *xq, int n) {
    doze_block_q8_0 *b = xq;
    for (int i = 0; i < n / DOZE_QK8_0; i++) {
        const float *xb = x + (size_t)i * DOZE_QK8_0;
        float amax = 0.0f;
        for (int j = 0; j < DOZE_QK8_0; j++) {
            float a = fabsf(xb[j]);
            if (a > amax) amax = a;
        }
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = doze_f32_to_f16(d);
        for (int j = 0; j < DOZE_QK8_0; j++) b[i].qs[j] = q8_round(xb[j] * id);
    }
}

/* out(n) = x(n) * (1 / sqrt(mean(x^2) + eps)) * weight(n) */
static void ref_rmsnorm(float *out, const float *x, const float *weight, int n, float eps) {
    float ss = 0.0f;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    float scale = 1.0f / sqrtf(ss / (float)n + eps);
    for (int i = 0; i < n; i++) out[i] = x[i] * scale * weight[i];
}

/* x(n) = softmax(x) in place. All -inf (nothing to weigh): all zeros. */
static void ref_softmax(float *x, int n) {
    if (n <= 0) return;
    float max = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > max) max = x[i];
    if (max == -INFINITY) {
        for (int i = 0; i < n; i++) x[i] = 0.0f;
        return;
    }
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = doze_expf(x[i] - max);
        sum += x[i];
    }
    float inv = 1.0f / sum;
    for (int i = 0; i < n; i++) x[i] *= inv;
}

/* v(n_heads, head_dim): pairs (v[2i], v[2i+1]), i < rope_dim/2, of each head
 * rotated by the angle with cos_t(i), sin_t(i). */
static void ref_rope(float *v, int n_heads, int head_dim, int rope_dim, const float *cos_t,
                     const float *sin_t) {
    for (int h = 0; h < n_heads; h++) {
        float *vh = v + (size_t)h * (size_t)head_dim;
        for (int i = 0; i < rope_dim / 2; i++) {
            float v0 = vh[2 * i], v1 = vh[2 * i + 1];
            float c = cos_t[i], s = sin_t[i];
            vh[2 * i] = v0 * c - v1 * s;
            vh[2 * i + 1] = v0 * s + v1 * c;
        }
    }
}

/* out(n) = gate / (1 + exp(-gate)) * up */
static void ref_swiglu(float *out, const float *gate, const float *up, int n) {
    for (int i = 0; i < n; i++) {
        float g = gate[i];
        float silu = g / (1.0f + doze_expf(-g));
        out[i] = silu * up[i];
    }
}

/* out(head_dim) = sum_t softmax(q . k_t / sqrt(head_dim))_t v_t over the
 * valid positions t < n_pos; att(n_pos) scratch (holds the weights after). */
static void ref_attention(float *out, const float *q, const float *k, const float *v, int n_pos,
                          int head_dim, int stride, const uint8_t *valid, float *att) {
    float scale = 1.0f / sqrtf((float)head_dim);
    for (int t = 0; t < n_pos; t++) {
        if (valid && !valid[t]) {
            att[t] = -INFINITY;
            continue;
        }
        const float *kt = k + (size_t)t * (size_t)stride;
        float s = 0.0f;
        for (int i = 0; i < head_dim; i++) s += q[i] * kt[i];
        att[t] = s * scale;
    }
    ref_softmax(att, n_pos);
    for (int i = 0; i < head_dim; i++) out[i] = 0.0f;
    for (int t = 0; t < n_pos; t++) {
        if (valid && !valid[t]) continue;
        const float *vt = v + (size_t)t * (size_t)stride;
        float a = att[t];
        for (int i = 0; i < head_dim; i++) out[i] += a * vt[i];
    }
}

/* every running head through ref_attention, head by head */
static void ref_attention_heads(float *out, const float *q, const float *k, const float *v, int n_heads,
                                int group, int n_pos, int head_dim, int stride, const uint8_t *valid,
                                const uint8_t *head_on, float *att) {
    const size_t hd = (size_t)head_dim;
    for (int h = 0; h < n_heads; h++)
        if (!head_on || head_on[h])
            ref_attention(out + (size_t)h * hd, q + (size_t)h * hd, k + (size_t)(h / group) * hd,
                          v + (size_t)(h / group) * hd, n_pos, head_dim, stride, valid, att);
}

/* y(n) += x(n) */
static void ref_add(float *y, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += x[i];
}

const doze_kernels doze_kernels_reference = {
    .name = "reference",
    .set = DOZE_KERNELS_REFERENCE,
    .matvec_f32 = ref_matvec_f32,
    .matvec_f32_x4 = ref_matvec_f32_x4,
    .matvec_f16_x4 = ref_matvec_f16_x4,
    .matvec_f16 = ref_matvec_f16,
    .matvec_q8_0 = ref_matvec_q8_0,
    .matvec_q4_0 = ref_matvec_q4_0,
    .matvec_q4_0_x4 = ref_matvec_q4_0_x4,
    .matvec_q8_0_x4 = ref_matvec_q8_0_x4,
    .matmul_f32 = ref_matmul_f32,
    .matmul_q = ref_matmul_q,
    .quantize_q8_0 = ref_quantize_q8_0,
    .round_input = doze_round_input,
    .rmsnorm = ref_rmsnorm,
    .softmax = ref_softmax,
    .rope = ref_rope,
    .swiglu = ref_swiglu,
    .attention = ref_attention,
    .attention_heads = ref_attention_heads,
    .add = ref_add,
};
