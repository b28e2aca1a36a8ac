/* K-quant and BF16 row conversions. The quantizers follow ggml's reference
 * rules (the codes llama.cpp's quantize_row_*_ref picks without an
 * importance matrix), so a file Doze writes is as close to the weights as
 * one llama.cpp writes; the layouts are ggml's, so either runtime reads it. */
#include "kquants.h"

#include <math.h>
#include <string.h>

#include "quants32.h"
#include "types.h"

/* round half to even to int, clamped to [lo, hi]; NaN gives lo (a hostile
 * model's weights must not reach an undefined conversion) */
static int round_clamp(float v, int lo, int hi) {
    if (!(v >= (float)lo)) return lo;
    if (v >= (float)hi) return hi;
    return (int)nearbyintf(v);
}

/* ---- dequantize ---------------------------------------------------------- */

void doze_q4_K_dequantize_row(const void *src, float *dst, int64_t n) {
    const doze_block_q4_K *b = src;
    for (int64_t i = 0; i < n / DOZE_QK_K; i++, b++) {
        const float d = doze_f16_to_f32(b->d), dmin = doze_f16_to_f32(b->dmin);
        for (int k = 0; k < 4; k++) { /* sub-blocks 2k (low nibbles), 2k+1 (high) */
            const uint8_t *q = b->qs + 32 * k;
            int sc, m;
            doze_kq_scale_min(b->scales, 2 * k, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            doze_kq_scale_min(b->scales, 2 * k + 1, &sc, &m);
            const float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++) *dst++ = d1 * (float)(q[l] & 0x0f) - m1;
            for (int l = 0; l < 32; l++) *dst++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

void doze_q5_K_dequantize_row(const void *src, float *dst, int64_t n) {
    const doze_block_q5_K *b = src;
    for (int64_t i = 0; i < n / DOZE_QK_K; i++, b++) {
        const float d = doze_f16_to_f32(b->d), dmin = doze_f16_to_f32(b->dmin);
        for (int k = 0; k < 4; k++) {
            const uint8_t *q = b->qs + 32 * k;
            int sc, m;
            doze_kq_scale_min(b->scales, 2 * k, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            doze_kq_scale_min(b->scales, 2 * k + 1, &sc, &m);
            const float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++)
                *dst++ = d1 * (float)((q[l] & 0x0f) | (((b->qh[l] >> (2 * k)) & 1) << 4)) - m1;
            for (int l = 0; l < 32; l++)
                *dst++ = d2 * (float)((q[l] >> 4) | (((b->qh[l] >> (2 * k + 1)) & 1) << 4)) - m2;
        }
    }
}

void doze_q6_K_dequantize_row(const void *src, float *dst, int64_t n) {
    const doze_block_q6_K *b = src;
    for (int64_t i = 0; i < n / DOZE_QK_K; i++, b++) {
        const float d = doze_f16_to_f32(b->d);
        for (int half = 0; half < 2; half++) {
            const uint8_t *ql = b->ql + 64 * half, *qh = b->qh + 32 * half;
            const int8_t *sc = b->scales + 8 * half;
            float *y = dst + 128 * half;
            for (int l = 0; l < 32; l++) {
                const int g = l / 16;
                const int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * (float)sc[g] * (float)q1;
                y[l + 32] = d * (float)sc[g + 2] * (float)q2;
                y[l + 64] = d * (float)sc[g + 4] * (float)q3;
                y[l + 96] = d * (float)sc[g + 6] * (float)q4;
            }
        }
        dst += DOZE_QK_K;
    }
}

void doze_q2_K_dequantize_row(const void *src, float *dst, int64_t n) {
    const doze_block_q2_K *b = src;
    for (int64_t i = 0; i < n / DOZE_QK_K; i++, b++, dst += DOZE_QK_K) {
        const float d = doze_f16_to_f32(b->d), dmin = doze_f16_to_f32(b->dmin);
        for (int g = 0; g < 16; g++) {
            const float dl = d * (float)(b->scales[g] & 0x0f), ml = dmin * (float)(b->scales[g] >> 4);
            for (int l = 0; l < 16; l++) dst[16 * g + l] = dl * (float)doze_k2_code(b->qs, 16 * g + l) - ml;
        }
    }
}

void doze_q3_K_dequantize_row(const void *src, float *dst, int64_t n) {
    const doze_block_q3_K *b = src;
    for (int64_t i = 0; i < n / DOZE_QK_K; i++, b++, dst += DOZE_QK_K) {
        const float d = doze_f16_to_f32(b->d);
        for (int g = 0; g < 16; g++) {
            const float dl = d * (float)doze_q3_K_scale(b->scales, g);
            for (int l = 0; l < 16; l++) {
                const int v = 16 * g + l;
                const int q = doze_k2_code(b->qs, v) | (((b->hmask[v % 32] >> (v / 32)) & 1) << 2);
                dst[v] = dl * (float)(q - 4);
            }
        }
    }
}

void doze_iq4_xs_dequantize_row(const void *src, float *dst, int64_t n) {
    const doze_block_iq4_xs *b = src;
    for (int64_t i = 0; i < n / DOZE_QK_K; i++, b++) {
        const float d = doze_f16_to_f32(b->d);
        for (int j = 0; j < 8; j++, dst += 32) {
            const float dl = d * (float)doze_iq4_xs_scale(b, j);
            for (int l = 0; l < 32; l++) dst[l] = dl * (float)doze_iq4nl_values[doze_q32_code(b->qs + 16 * j, NULL, l)];
        }
    }
}

/* ---- quantize: Q4_K, Q5_K --------------------------------------------------- */

/* Codes L(n) in 0..nmax for x(n) as scale * L - the_min (min <= 0 folded
 * in), minimizing the weighted squared error (mad: absolute error) over a
 * sweep of nstep + 1 candidate scales around nmax / (max - min), each refit
 * by weighted least squares (scale and min together). Returns the scale;
 * *the_min = -min. */
static float fit_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L, float *the_min,
                           float rmin, float rdelta, int nstep, int mad) {
    float min = x[0], max = x[0], sum_w = w[0], sum_x = w[0] * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (!(max > min)) { /* constant (or NaN) block */
        memset(L, 0, (size_t)n);
        *the_min = min == min ? -min : 0.0f;
        return 0.0f;
    }
    float iscale = (float)nmax / (max - min), scale = 1.0f / iscale, best = 0.0f;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)round_clamp(iscale * (x[i] - min), 0, nmax);
        const float diff = scale * (float)L[i] + min - x[i];
        best += w[i] * (mad ? fabsf(diff) : diff * diff);
    }
    uint8_t La[32];
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            const int l = round_clamp(iscale * (x[i] - min), 0, nmax);
            La[i] = (uint8_t)l;
            sum_l += w[i] * (float)l;
            sum_l2 += w[i] * (float)l * (float)l;
            sum_xl += w[i] * (float)l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (!(D > 0)) continue;
        float s = (sum_w * sum_xl - sum_x * sum_l) / D;
        float mn = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        if (mn > 0) {
            mn = 0;
            s = sum_xl / sum_l2;
        }
        float err = 0;
        for (int i = 0; i < n; i++) {
            const float diff = s * (float)La[i] + mn - x[i];
            err += w[i] * (mad ? fabsf(diff) : diff * diff);
        }
        if (err < best) {
            memcpy(L, La, (size_t)n);
            best = err;
            scale = s;
            min = mn;
        }
    }
    *the_min = -min;
    return scale;
}

/* The scales field and d, dmin of a Q4_K/Q5_K super-block from the 8
 * sub-block scales and mins (6 bits each, relative to the largest). */
static void pack_scales_mins(const float *scales, const float *mins, uint8_t *out, uint16_t *d, uint16_t *dmin) {
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    memset(out, 0, 12);
    for (int j = 0; j < 8; j++) {
        const int ls = round_clamp(inv_scale * scales[j], 0, 63);
        const int lm = round_clamp(inv_min * mins[j], 0, 63);
        if (j < 4) {
            out[j] = (uint8_t)ls;
            out[j + 4] = (uint8_t)lm;
        } else {
            out[j + 4] = (uint8_t)((ls & 0x0f) | ((lm & 0x0f) << 4));
            out[j - 4] |= (uint8_t)((ls >> 4) << 6);
            out[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    *d = doze_f32_to_f16(max_scale / 63.f);
    *dmin = doze_f32_to_f16(max_min / 63.f);
}

/* Codes L(256) of a Q4_K/Q5_K super-block x (nmax 15 or 31): per sub-block
 * a fitted scale and min (weights: rms of the sub-block + |x|), packed;
 * then every value re-coded against the packed (rounded) scales. */
static void kq_codes(const float *x, int nmax, float rmin, int nstep, uint8_t *L, uint8_t *scales, uint16_t *d,
                     uint16_t *dmin) {
    float sc[8], mn[8], w[32];
    for (int j = 0; j < 8; j++) {
        const float *xs = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += xs[l] * xs[l];
        const float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) w[l] = av_x + fabsf(xs[l]);
        sc[j] = fit_scale_min(32, nmax, xs, w, L + 32 * j, &mn[j], rmin, 0.1f, nstep, 0);
    }
    pack_scales_mins(sc, mn, scales, d, dmin);
    for (int j = 0; j < 8; j++) {
        int s, m;
        doze_kq_scale_min(scales, j, &s, &m);
        const float dj = doze_f16_to_f32(*d) * (float)s;
        if (dj == 0.0f) continue;
        const float dm = doze_f16_to_f32(*dmin) * (float)m;
        for (int l = 0; l < 32; l++) L[32 * j + l] = (uint8_t)round_clamp((x[32 * j + l] + dm) / dj, 0, nmax);
    }
}

void doze_q4_K_quantize_row(const float *src, void *dst, int64_t n) {
    doze_block_q4_K *b = dst;
    uint8_t L[DOZE_QK_K];
    for (int64_t i = 0; i < n / DOZE_QK_K; i++, b++, src += DOZE_QK_K) {
        kq_codes(src, 15, -1.0f, 20, L, b->scales, &b->d, &b->dmin);
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 32; l++) b->qs[32 * k + l] = (uint8_t)(L[64 * k + l] | (L[64 * k + 32 + l] << 4));
    }
}

void doze_q5_K_quantize_row(const float *src, void *dst, int64_t n) {
    doze_block_q5_K *b = dst;
    uint8_t L[DOZE_QK_K];
    for (int64_t i = 0; i < n / DOZE_QK_K; i++, b++, src += DOZE_QK_K) {
        kq_codes(src, 31, -0.5f, 15, L, b->scales, &b->d, &b->dmin);
        memset(b->qh, 0, sizeof b->qh);
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 32; l++) {
                const int l1 = L[64 * k + l], l2 = L[64 * k + 32 + l];
                b->qh[l] |= (uint8_t)(((l1 >> 4) << (2 * k)) | ((l2 >> 4) << (2 * k + 1)));
                b->qs[32 * k + l] = (uint8_t)((l1 & 0x0f) | ((l2 & 0x0f) << 4));
            }
    }
}

/* ---- quantize: Q6_K ------------------------------------------------------ */

#define GROUP_EPS 1e-15f

/* Signed codes L(n) (stored + nmax) in -nmax..nmax-1 for x(n) = scale * L:
 * the scale that maps the value of largest magnitude to -nmax, then 18
 * neighbours (nmax +- 0.1 k), each refit by least squares weighted by x^2;
 * the best fit wins. Returns the scale. */
static float fit_scale_signed(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        const float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (!(amax >= GROUP_EPS)) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = -(float)nmax / max, sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        const int l = round_clamp(iscale * x[i], -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f, best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -((float)nmax + 0.1f * (float)is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            const int l = round_clamp(iscale * x[i], -nmax, nmax - 1);
            const float w = x[i] * x[i];
            sumlx += w * x[i] * (float)l;
            suml2 += w * (float)l * (float)l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) L[i] = (int8_t)(nmax + round_clamp(iscale * x[i], -nmax, nmax - 1));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

void doze_q6_K_quantize_row(const float *src, void *dst, int64_t n) {
    doze_block_q6_K *b = dst;
    int8_t L[DOZE_QK_K];
    float scales[DOZE_QK_K / 16];
    for (int64_t i = 0; i < n / DOZE_QK_K; i++, b++, src += DOZE_QK_K) {
        float max_scale = 0, max_abs = 0;
        for (int g = 0; g < 16; g++) {
            scales[g] = fit_scale_signed(16, 32, src + 16 * g, L + 16 * g);
            if (fabsf(scales[g]) > max_abs) {
                max_abs = fabsf(scales[g]);
                max_scale = scales[g];
            }
        }
        memset(b, 0, sizeof *b);
        if (!(max_abs >= GROUP_EPS)) continue; /* all zero: d = 0 */
        const float iscale = -128.f / max_scale;
        b->d = doze_f32_to_f16(1 / iscale);
        for (int g = 0; g < 16; g++) b->scales[g] = (int8_t)round_clamp(iscale * scales[g], -128, 127);
        for (int g = 0; g < 16; g++) {
            const float d = doze_f16_to_f32(b->d) * (float)b->scales[g];
            if (d == 0.0f) continue;
            for (int l = 0; l < 16; l++) L[16 * g + l] = (int8_t)(round_clamp(src[16 * g + l] / d, -32, 31) + 32);
        }
        for (int half = 0; half < 2; half++) {
            const int8_t *Lh = L + 128 * half;
            uint8_t *ql = b->ql + 64 * half, *qh = b->qh + 32 * half;
            for (int l = 0; l < 32; l++) {
                const int q1 = Lh[l], q2 = Lh[l + 32], q3 = Lh[l + 64], q4 = Lh[l + 96];
                ql[l] = (uint8_t)((q1 & 0x0f) | ((q3 & 0x0f) << 4));
                ql[l + 32] = (uint8_t)((q2 & 0x0f) | ((q4 & 0x0f) << 4));
                qh[l] = (uint8_t)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
            }
        }
    }
}

/* ---- quantize: Q2_K, Q3_K ------------------------------------------------- */

/* the 2-bit codes L(256) (0..3) into a Q2_K/Q3_K qs field */
static void pack_k2_codes(const uint8_t *L, uint8_t *qs) {
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++) {
            const uint8_t *Lh = L + 128 * h + l;
            qs[32 * h + l] = (uint8_t)((Lh[0] & 3) | (Lh[32] & 3) << 2 | (Lh[64] & 3) << 4 | (Lh[96] & 3) << 6);
        }
}

void doze_q2_K_quantize_row(const float *src, void *dst, int64_t n) {
    doze_block_q2_K *b = dst;
    uint8_t L[DOZE_QK_K];
    float sc[16], mn[16], w[16];
    for (int64_t i = 0; i < n / DOZE_QK_K; i++, b++, src += DOZE_QK_K) {
        float max_scale = 0, max_min = 0;
        for (int g = 0; g < 16; g++) { /* per group: weights |x|, absolute error */
            for (int l = 0; l < 16; l++) w[l] = fabsf(src[16 * g + l]);
            sc[g] = fit_scale_min(16, 3, src + 16 * g, w, L + 16 * g, &mn[g], -0.5f, 0.1f, 15, 1);
            if (sc[g] > max_scale) max_scale = sc[g];
            if (mn[g] > max_min) max_min = mn[g];
        }
        /* 4-bit scales and mins relative to the largest (the == 0 and NaN
         * cases give zeros) */
        const float is = max_scale > 0 ? 15.f / max_scale : 0.f, im = max_min > 0 ? 15.f / max_min : 0.f;
        for (int g = 0; g < 16; g++)
            b->scales[g] = (uint8_t)(round_clamp(is * sc[g], 0, 15) | round_clamp(im * mn[g], 0, 15) << 4);
        b->d = doze_f32_to_f16(max_scale > 0 ? max_scale / 15.f : 0.f);
        b->dmin = doze_f32_to_f16(max_min > 0 ? max_min / 15.f : 0.f);
        /* every value re-coded against the stored scales */
        for (int g = 0; g < 16; g++) {
            const float d = doze_f16_to_f32(b->d) * (float)(b->scales[g] & 0x0f);
            if (d == 0.0f) continue;
            const float dm = doze_f16_to_f32(b->dmin) * (float)(b->scales[g] >> 4);
            for (int l = 0; l < 16; l++) L[16 * g + l] = (uint8_t)round_clamp((src[16 * g + l] + dm) / d, 0, 3);
        }
        pack_k2_codes(L, b->qs);
    }
}

/* Signed codes L(n) in -nmax..nmax-1 for x(n) = scale * L: start from the
 * scale that maps the largest magnitude to -nmax, then move single codes
 * while that improves the x^2-weighted least-squares fit (up to 5 passes).
 * Returns the fitted scale; L is stored + nmax. */
static float fit_scale_signed_moves(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    if (!(amax >= GROUP_EPS)) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    const float iscale = -(float)nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (int8_t)round_clamp(iscale * x[i], -nmax, nmax - 1);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * (float)L[i];
        suml2 += w * (float)L[i] * (float)L[i];
    }
    for (int pass = 0; pass < 5; pass++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            const float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * (float)L[i];
            if (!(slx > 0)) continue;
            float sl2 = suml2 - w * (float)L[i] * (float)L[i];
            const int l = round_clamp(x[i] * sl2 / slx, -nmax, nmax - 1);
            if (l == L[i]) continue;
            slx += w * x[i] * (float)l;
            sl2 += w * (float)l * (float)l;
            if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                L[i] = (int8_t)l;
                sumlx = slx;
                suml2 = sl2;
                changed++;
            }
        }
        if (!changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0 ? sumlx / suml2 : 0.0f;
}

void doze_q3_K_quantize_row(const float *src, void *dst, int64_t n) {
    doze_block_q3_K *b = dst;
    int8_t L[DOZE_QK_K];
    uint8_t U[DOZE_QK_K];
    float sc[16];
    for (int64_t i = 0; i < n / DOZE_QK_K; i++, b++, src += DOZE_QK_K) {
        float max_scale = 0, amax = 0;
        for (int g = 0; g < 16; g++) {
            sc[g] = fit_scale_signed_moves(16, 4, src + 16 * g, L + 16 * g);
            if (fabsf(sc[g]) > amax) {
                amax = fabsf(sc[g]);
                max_scale = sc[g];
            }
        }
        memset(b, 0, sizeof *b);
        if (max_scale != 0.0f && max_scale == max_scale) {
            const float iscale = -32.f / max_scale;
            for (int g = 0; g < 16; g++) {
                const int l = round_clamp(iscale * sc[g], -32, 31) + 32;
                b->scales[g % 8] |= (uint8_t)((l & 0x0f) << (g < 8 ? 0 : 4));
                b->scales[8 + g % 4] |= (uint8_t)((l >> 4) << (2 * (g / 4)));
            }
            b->d = doze_f32_to_f16(1 / iscale);
        }
        for (int g = 0; g < 16; g++) { /* re-coded against the stored scales */
            const float d = doze_f16_to_f32(b->d) * (float)doze_q3_K_scale(b->scales, g);
            if (d == 0.0f) continue;
            for (int l = 0; l < 16; l++) L[16 * g + l] = (int8_t)(round_clamp(src[16 * g + l] / d, -4, 3) + 4);
        }
        for (int v = 0; v < DOZE_QK_K; v++) {
            if (L[v] > 3) b->hmask[v % 32] |= (uint8_t)(1u << (v / 32));
            U[v] = (uint8_t)(L[v] & 3);
        }
        pack_k2_codes(U, b->qs);
    }
}

/* ---- quantize: IQ4_XS ------------------------------------------------------ */

/* Per 32-value sub-block the x^2-weighted least-squares scale over 16
 * candidate grid scalings; the scales then as 6-bit multiples of the
 * super-block's d (the largest maps to -32), and every value re-coded
 * against its stored scale. */
void doze_iq4_xs_quantize_row(const float *src, void *dst, int64_t n) {
    doze_block_iq4_xs *b = dst;
    float sc[8];
    uint8_t L[32];
    for (int64_t i = 0; i < n / DOZE_QK_K; i++, b++, src += DOZE_QK_K) {
        float max_scale = 0, amax_scale = 0;
        for (int j = 0; j < 8; j++) {
            const float *x = src + 32 * j;
            float amax = 0, max = 0;
            for (int l = 0; l < 32; l++)
                if (fabsf(x[l]) > amax) {
                    amax = fabsf(x[l]);
                    max = x[l];
                }
            sc[j] = 0;
            if (!(amax >= GROUP_EPS)) continue;
            float best = -1, d = 0;
            for (int t = -8; t <= 7; t++) { /* first id = 1 / (max / -grid[0]), then (grid[0] + t) / max */
                /* ggml's two roundings, not -grid[0] / max: a code on a tie
                 * between grid values then rounds as ggml's does */
                const float id = t == -8 ? 1.0f / (max / -(float)doze_iq4nl_values[0])
                                         : ((float)t + (float)doze_iq4nl_values[0]) / max;
                float sqx = 0, sq2 = 0;
                for (int l = 0; l < 32; l++) {
                    const float q = doze_iq4nl_values[doze_iq4_nearest(id * x[l], 1)], w = x[l] * x[l];
                    sqx += w * q * x[l];
                    sq2 += w * q * q;
                }
                if (sq2 > 0 && (best < 0 || sqx * sqx > best * sq2)) {
                    d = sqx / sq2;
                    best = d * sqx;
                }
            }
            sc[j] = d;
            if (fabsf(d) > amax_scale) {
                amax_scale = fabsf(d);
                max_scale = d;
            }
        }
        memset(b, 0, sizeof *b);
        const float d = -max_scale / 32;
        b->d = doze_f32_to_f16(d);
        const float id = d != 0.0f ? 1 / d : 0.0f;
        for (int j = 0; j < 8; j++) {
            const int l = round_clamp(id * sc[j], -32, 31);
            const float dl = d * (float)l, idl = dl != 0.0f ? 1 / dl : 0.0f;
            for (int k = 0; k < 32; k++) L[k] = (uint8_t)doze_iq4_nearest(idl * src[32 * j + k], 1);
            for (int k = 0; k < 16; k++) b->qs[16 * j + k] = (uint8_t)(L[k] | L[16 + k] << 4);
            b->scales_l[j / 2] |= (uint8_t)(((l + 32) & 0x0f) << (4 * (j % 2)));
            b->scales_h |= (uint16_t)(((l + 32) >> 4) << (2 * j));
        }
    }
}

/* ---- BF16 --------------------------------------------------------------- */

uint16_t doze_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 64u); /* quiet NaN */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

void doze_bf16_dequantize_row(const void *src, float *dst, int64_t n) {
    const uint16_t *h = src;
    for (int64_t i = 0; i < n; i++) dst[i] = doze_bf16_to_f32(h[i]);
}

void doze_bf16_quantize_row(const float *src, void *dst, int64_t n) {
    uint16_t *h = dst;
    for (int64_t i = 0; i < n; i++) h[i] = doze_f32_to_bf16(src[i]);
}
