/* Row conversions of Q4_1, Q5_0, Q5_1 and IQ4_NL (quants32.h).
 *
 * The quantizers search a few scales per block and keep the one whose
 * stored form (f16 scale, f16 min, codes re-picked against those rounded
 * values) reconstructs the block with the smallest squared error. ggml's
 * own rule (quantize_row_*_ref; for IQ4_NL its weighted scale search) is
 * always among the candidates, so no block comes out worse than ggml's. */
#include "quants32.h"

#include <math.h>
#include <string.h>

#include "types.h"

const int8_t doze_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

/* ---- dequantize ----------------------------------------------------------- */

void doze_q4_1_dequantize_row(const void *src, float *dst, int64_t n) {
    const doze_block_q4_1 *b = src;
    for (int64_t i = 0; i < n / DOZE_QK32; i++, b++, dst += DOZE_QK32) {
        const float d = doze_f16_to_f32(b->d), m = doze_f16_to_f32(b->m);
        for (int j = 0; j < DOZE_QK32; j++) dst[j] = d * (float)doze_q32_code(b->qs, NULL, j) + m;
    }
}

void doze_q5_0_dequantize_row(const void *src, float *dst, int64_t n) {
    const doze_block_q5_0 *b = src;
    for (int64_t i = 0; i < n / DOZE_QK32; i++, b++, dst += DOZE_QK32) {
        const float d = doze_f16_to_f32(b->d);
        for (int j = 0; j < DOZE_QK32; j++) dst[j] = d * (float)(doze_q32_code(b->qs, b->qh, j) - 16);
    }
}

void doze_q5_1_dequantize_row(const void *src, float *dst, int64_t n) {
    const doze_block_q5_1 *b = src;
    for (int64_t i = 0; i < n / DOZE_QK32; i++, b++, dst += DOZE_QK32) {
        const float d = doze_f16_to_f32(b->d), m = doze_f16_to_f32(b->m);
        for (int j = 0; j < DOZE_QK32; j++) dst[j] = d * (float)doze_q32_code(b->qs, b->qh, j) + m;
    }
}

void doze_iq4_nl_dequantize_row(const void *src, float *dst, int64_t n) {
    const doze_block_iq4_nl *b = src;
    for (int64_t i = 0; i < n / DOZE_QK32; i++, b++, dst += DOZE_QK32) {
        const float d = doze_f16_to_f32(b->d);
        for (int j = 0; j < DOZE_QK32; j++) dst[j] = d * (float)doze_iq4nl_values[doze_q32_code(b->qs, NULL, j)];
    }
}

/* ---- shared pieces ---------------------------------------------------------- */

/* ggml's (int8_t)(v) then min(hi, .), for v >= 0.5 on finite blocks; NaN
 * (a hostile model's weights) gives 0 instead of an undefined cast */
static int trunc_code(float v, int hi) {
    if (!(v >= 1.0f)) return 0;
    if (v >= (float)hi) return hi;
    return (int)v;
}

/* nearest integer to v clamped to [0, hi]; NaN gives 0 */
static int near_code(float v, int hi) {
    if (!(v >= 0.0f)) return 0;
    if (v >= (float)hi) return hi;
    return (int)floorf(v + 0.5f);
}

/* codes L(32) into qs (and qh when given, 5-bit codes) */
static void pack_codes(const uint8_t *L, uint8_t *qs, uint8_t *qh) {
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)((L[j] & 0x0f) | ((L[j + 16] & 0x0f) << 4));
    if (qh) {
        memset(qh, 0, 4);
        for (int j = 0; j < 32; j++) qh[j / 8] |= (uint8_t)(((L[j] >> 4) & 1) << (j % 8));
    }
}

/* a candidate stored form of a block: scale, min (0 for the symmetric
 * types) as halves, codes, and its squared error */
typedef struct {
    uint16_t d, m;
    uint8_t L[DOZE_QK32];
    double err;
} q32_choice;

/* ---- Q5_0: symmetric, value = d * (q - 16) ------------------------------------ */

/* codes of x for the half dh nearest to each value, and the error */
static void sym_eval(const float *x, uint16_t dh, q32_choice *c) {
    const float d = doze_f16_to_f32(dh), id = d != 0.0f && isfinite(d) ? 1.0f / d : 0.0f;
    c->d = dh, c->m = 0, c->err = 0.0;
    for (int j = 0; j < DOZE_QK32; j++) {
        c->L[j] = (uint8_t)near_code(x[j] * id + 16.0f, 31);
        const double r = (double)x[j] - (double)d * (double)(c->L[j] - 16);
        c->err += r * r;
    }
}

/* scales from max / -16 to max / -14 (codes of the extreme value rounded
 * differently), each refit by least squares */
#define SYM_STEPS 12

void doze_q5_0_quantize_row(const float *src, void *dst, int64_t n) {
    doze_block_q5_0 *b = dst;
    for (int64_t i = 0; i < n / DOZE_QK32; i++, b++, src += DOZE_QK32) {
        const float *x = src;
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < DOZE_QK32; j++)
            if (amax < fabsf(x[j])) amax = fabsf(x[j]), max = x[j];
        /* ggml's rule: d = max / -16, codes (int8_t)(x / d + 16.5) */
        q32_choice best, c;
        const float d0 = max / -16.0f, id0 = d0 != 0.0f ? 1.0f / d0 : 0.0f;
        best.d = doze_f32_to_f16(d0), best.m = 0, best.err = 0.0;
        const float d0h = doze_f16_to_f32(best.d);
        for (int j = 0; j < DOZE_QK32; j++) {
            best.L[j] = (uint8_t)trunc_code(x[j] * id0 + 16.5f, 31);
            const double r = (double)x[j] - (double)d0h * (double)(best.L[j] - 16);
            best.err += r * r;
        }
        if (!(best.err == best.err)) best.err = INFINITY;
        sym_eval(x, best.d, &c);
        if (c.err < best.err) best = c;
        for (int k = 0; k <= SYM_STEPS && max != 0.0f && best.err > 0.0; k++) {
            const float id = (-16.0f + 2.0f * (float)k / (float)SYM_STEPS) / max;
            double sxq = 0.0, sqq = 0.0;
            for (int j = 0; j < DOZE_QK32; j++) {
                const int q = near_code(x[j] * id + 16.0f, 31) - 16;
                sxq += (double)x[j] * q;
                sqq += (double)q * q;
            }
            if (!(sqq > 0.0)) continue;
            const float d = (float)(sxq / sqq);
            if (!isfinite(d) || d == 0.0f) continue;
            sym_eval(x, doze_f32_to_f16(d), &c);
            if (c.err < best.err) best = c;
        }
        b->d = best.d;
        pack_codes(best.L, b->qs, b->qh);
    }
}

/* ---- Q4_1, Q5_1: value = d * q + m -------------------------------------------- */

static void asym_eval(const float *x, int nmax, uint16_t dh, uint16_t mh, q32_choice *c) {
    const float d = doze_f16_to_f32(dh), m = doze_f16_to_f32(mh);
    const float id = d != 0.0f && isfinite(d) ? 1.0f / d : 0.0f;
    c->d = dh, c->m = mh, c->err = 0.0;
    for (int j = 0; j < DOZE_QK32; j++) {
        c->L[j] = (uint8_t)near_code((x[j] - m) * id, nmax);
        const double r = (double)x[j] - ((double)d * c->L[j] + (double)m);
        c->err += r * r;
    }
    if (!(c->err == c->err)) c->err = INFINITY;
}

/* ggml's rule (d = (max - min) / nmax, m = min, codes truncated from
 * (x - min) / d + 0.5), the same halves with nearest codes, then a sweep of
 * scales around it, each refit (scale and min together) by least squares */
#define ASYM_STEPS 10

static void asym_quantize_block(const float *x, int nmax, q32_choice *best) {
    float min = x[0], max = x[0];
    for (int j = 1; j < DOZE_QK32; j++) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
    }
    const float d0 = (max - min) / (float)nmax, id0 = d0 != 0.0f ? 1.0f / d0 : 0.0f;
    best->d = doze_f32_to_f16(d0), best->m = doze_f32_to_f16(min), best->err = 0.0;
    const float dh = doze_f16_to_f32(best->d), mh = doze_f16_to_f32(best->m);
    for (int j = 0; j < DOZE_QK32; j++) {
        best->L[j] = (uint8_t)trunc_code((x[j] - min) * id0 + 0.5f, nmax);
        const double r = (double)x[j] - ((double)dh * best->L[j] + (double)mh);
        best->err += r * r;
    }
    if (!(best->err == best->err)) best->err = INFINITY;
    q32_choice c;
    asym_eval(x, nmax, best->d, best->m, &c);
    if (c.err < best->err) *best = c;
    if (!(max > min) || !isfinite(max - min)) return;
    for (int k = 0; k <= ASYM_STEPS && best->err > 0.0; k++) {
        const float iscale = ((float)nmax - 1.0f + 2.0f * (float)k / (float)ASYM_STEPS) / (max - min);
        double sl = 0, sl2 = 0, sx = 0, sxl = 0;
        for (int j = 0; j < DOZE_QK32; j++) {
            const double l = near_code((x[j] - min) * iscale, nmax);
            sl += l, sl2 += l * l, sx += x[j], sxl += l * x[j];
        }
        const double D = DOZE_QK32 * sl2 - sl * sl;
        if (!(D > 0)) continue;
        const float d = (float)((DOZE_QK32 * sxl - sx * sl) / D), m = (float)((sl2 * sx - sl * sxl) / D);
        if (!isfinite(d) || !isfinite(m) || d <= 0.0f) continue;
        asym_eval(x, nmax, doze_f32_to_f16(d), doze_f32_to_f16(m), &c);
        if (c.err < best->err) *best = c;
    }
}

void doze_q4_1_quantize_row(const float *src, void *dst, int64_t n) {
    doze_block_q4_1 *b = dst;
    q32_choice c;
    for (int64_t i = 0; i < n / DOZE_QK32; i++, b++, src += DOZE_QK32) {
        asym_quantize_block(src, 15, &c);
        b->d = c.d, b->m = c.m;
        pack_codes(c.L, b->qs, NULL);
    }
}

void doze_q5_1_quantize_row(const float *src, void *dst, int64_t n) {
    doze_block_q5_1 *b = dst;
    q32_choice c;
    for (int64_t i = 0; i < n / DOZE_QK32; i++, b++, src += DOZE_QK32) {
        asym_quantize_block(src, 31, &c);
        b->d = c.d, b->m = c.m;
        pack_codes(c.L, b->qs, b->qh);
    }
}

/* ---- IQ4_NL ------------------------------------------------------------------- */

int doze_iq4_nearest(float v, int ties_up) {
    if (!(v > doze_iq4nl_values[0])) return 0;
    if (v >= doze_iq4nl_values[15]) return 15;
    int lo = 0, hi = 15;
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        if (v < doze_iq4nl_values[mid]) hi = mid;
        else lo = mid;
    }
    const float dl = v - doze_iq4nl_values[lo], dh = doze_iq4nl_values[hi] - v;
    return (ties_up ? dl < dh : dl <= dh) ? lo : hi;
}

static void iq4_eval(const float *x, uint16_t dh, q32_choice *c) {
    const float d = doze_f16_to_f32(dh), id = d != 0.0f && isfinite(d) ? 1.0f / d : 0.0f;
    c->d = dh, c->m = 0, c->err = 0.0;
    for (int j = 0; j < DOZE_QK32; j++) {
        c->L[j] = (uint8_t)doze_iq4_nearest(x[j] * id, 0);
        const double r = (double)x[j] - (double)d * doze_iq4nl_values[c->L[j]];
        c->err += r * r;
    }
    if (!(c->err == c->err)) c->err = INFINITY;
}

/* ggml's search without an importance matrix: weights x^2, the scale -max
 * / -127 and then 15 more around it, each refit by weighted least squares,
 * the best weighted fit kept. Here every refit scale (weighted, and
 * unweighted as well) is a candidate, judged by the plain squared error of
 * its stored form. */
#define IQ4_TRIES 7

void doze_iq4_nl_quantize_row(const float *src, void *dst, int64_t n) {
    doze_block_iq4_nl *b = dst;
    for (int64_t i = 0; i < n / DOZE_QK32; i++, b++, src += DOZE_QK32) {
        const float *x = src;
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < DOZE_QK32; j++)
            if (amax < fabsf(x[j])) amax = fabsf(x[j]), max = x[j];
        q32_choice best, c;
        iq4_eval(x, 0, &best);
        if (amax > 1e-15f && isfinite(amax)) {
            for (int t = -IQ4_TRIES - 1; t <= IQ4_TRIES; t++) {
                /* t = -IQ4_TRIES - 1: ggml's first scale, d = -max / -127 */
                const float id = t < -IQ4_TRIES ? -(float)doze_iq4nl_values[0] / max
                                                : ((float)t + (float)doze_iq4nl_values[0]) / max;
                float sqx_w = 0, sq2_w = 0;
                double sqx = 0, sq2 = 0;
                for (int j = 0; j < DOZE_QK32; j++) {
                    const float q = doze_iq4nl_values[doze_iq4_nearest(id * x[j], 0)], w = x[j] * x[j];
                    sqx_w += w * q * x[j];
                    sq2_w += w * q * q;
                    sqx += (double)q * x[j];
                    sq2 += (double)q * q;
                }
                if (sq2_w > 0) {
                    iq4_eval(x, doze_f32_to_f16(sqx_w / sq2_w), &c);
                    if (c.err < best.err) best = c;
                }
                if (sq2 > 0) {
                    iq4_eval(x, doze_f32_to_f16((float)(sqx / sq2)), &c);
                    if (c.err < best.err) best = c;
                }
            }
        }
        b->d = best.d;
        pack_codes(best.L, b->qs, NULL);
    }
}
