/* Differential tests of the compute kernels: the SIMD table against the
 * scalar reference on seeded random inputs of many shapes (including ones
 * that are not multiples of the vector widths), doze_expf against libm and
 * its f32x4 twin, and the edge cases. One summary line per kernel. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "types.h"
#include "test_util.h"

/* exported by kernels_simd.c for this test only: out(4) = exp_f32x4(in(4)) */
void doze_simd_expf_x4(float *out, const float *in);

static const doze_kernels *S = &doze_kernels_simd;
static const doze_kernels *R = &doze_kernels_reference;

/* ---- small helpers ------------------------------------------------------ */

typedef struct {
    uint64_t s;
} rng_t;

static uint64_t rng_next(rng_t *r) {
    uint64_t x = r->s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    r->s = x;
    return x;
}

static uint32_t rng_u32(rng_t *r) { return (uint32_t)(rng_next(r) >> 32); }

/* uniform in [-1, 1) */
static float rng_f(rng_t *r) { return (float)((double)(rng_next(r) >> 40) / (double)(1u << 23) - 1.0); }

static void fill(rng_t *r, float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = rng_f(r) * scale;
}

static uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

/* relative error of a against b, measured against magnitude mag (> 0) */
static double relerr(double a, double b, double mag) { return fabs(a - b) / (mag > 0 ? mag : 1e-30); }

/* ---- doze_expf ---------------------------------------------------------- */

static void test_expf(void) {
    double max_rel = 0.0, max_sub_abs = 0.0;
    float worst_x = 0.0f;
    long n_checked = 0, x4_mismatch = 0;
    float in[4], out[4];
    int k = 0;
    /* dense sweep over the interesting range, every step a new float */
    for (float x = -104.0f; x < 89.0f; x += 0.000371f) {
        float got = doze_expf(x);
        double want = exp((double)x);
        if (want >= FLT_MIN && want <= FLT_MAX) {
            double e = fabs((double)got - want) / want;
            if (e > max_rel) {
                max_rel = e;
                worst_x = x;
            }
        } else if (want < FLT_MIN) {
            double e = fabs((double)got - want);
            if (e > max_sub_abs) max_sub_abs = e;
        } else {
            CHECK_MSG(isinf(got), "expf(%a) = %a, want inf", (double)x, (double)got);
        }
        n_checked++;
        in[k++] = x;
        if (k == 4) {
            doze_simd_expf_x4(out, in);
            for (int j = 0; j < 4; j++)
                if (f2u(out[j]) != f2u(doze_expf(in[j]))) x4_mismatch++;
            k = 0;
        }
    }
    /* small |x| densely */
    for (float x = -1e-3f; x < 1e-3f; x += 3.7e-7f) {
        double want = exp((double)x);
        double e = fabs((double)doze_expf(x) - want) / want;
        if (e > max_rel) {
            max_rel = e;
            worst_x = x;
        }
    }
    /* random bit patterns (every class: nan, inf, subnormal, huge) for the
     * bit-for-bit agreement of the f32x4 twin */
    rng_t r = {0x9e3779b97f4a7c15ull};
    for (int i = 0; i < 400000; i++) {
        for (int j = 0; j < 4; j++) in[j] = u2f(rng_u32(&r));
        if (i & 1) /* half of them in the non-trivial range */
            for (int j = 0; j < 4; j++) in[j] = rng_f(&r) * 120.0f;
        doze_simd_expf_x4(out, in);
        for (int j = 0; j < 4; j++) {
            float s = doze_expf(in[j]);
            if (f2u(out[j]) != f2u(s)) x4_mismatch++;
            if (!isnan(in[j])) {
                double want = exp((double)in[j]);
                if (want >= FLT_MIN && want <= FLT_MAX) {
                    double e = fabs((double)s - want) / want;
                    if (e > max_rel) {
                        max_rel = e;
                        worst_x = in[j];
                    }
                }
            }
        }
    }
    CHECK_MSG(max_rel < 2e-6, "max rel error %g at %a", max_rel, (double)worst_x);
    CHECK_MSG(max_sub_abs <= 0x1p-149, "subnormal range abs error %g", max_sub_abs);
    CHECK_MSG(x4_mismatch == 0, "%ld f32x4 exp results differ from doze_expf", x4_mismatch);

    /* edge cases */
    CHECK(isnan(doze_expf(NAN)));
    CHECK(isnan(doze_expf(-NAN)));
    CHECK(doze_expf(-INFINITY) == 0.0f && !signbit(doze_expf(-INFINITY)));
    CHECK(isinf(doze_expf(INFINITY)) && doze_expf(INFINITY) > 0);
    CHECK(doze_expf(0.0f) == 1.0f);
    CHECK(doze_expf(-0.0f) == 1.0f);
    CHECK(doze_expf(1e-30f) == 1.0f);
    CHECK(doze_expf(FLT_MAX) == INFINITY);
    CHECK(doze_expf(-FLT_MAX) == 0.0f);
    CHECK(doze_expf(88.8f) == INFINITY);
    CHECK(doze_expf(100.0f) == INFINITY);
    CHECK(isfinite(doze_expf(88.7f)) && doze_expf(88.7f) > 3.0e38f);
    CHECK(doze_expf(-87.0f) > 0.0f && doze_expf(-87.0f) < 2e-38f);
    CHECK(doze_expf(-100.0f) > 0.0f && doze_expf(-100.0f) < 1e-43f); /* subnormal */
    CHECK(doze_expf(-104.0f) == 0.0f);
    CHECK(doze_expf(-200.0f) == 0.0f);
    CHECK(fabs((double)doze_expf(1.0f) - exp(1.0)) < 3e-7);
    {
        float e4[4] = {NAN, -INFINITY, INFINITY, 0.0f}, o4[4];
        doze_simd_expf_x4(o4, e4);
        CHECK(isnan(o4[0]) && o4[1] == 0.0f && isinf(o4[2]) && o4[3] == 1.0f);
    }
    printf("expf: %ld sweep points, max rel error %.3g (%.2f ulp-ish) at %a, subnormal abs %.3g, "
           "f32x4 mismatches %ld\n",
           n_checked, max_rel, max_rel / 0x1p-24, (double)worst_x, max_sub_abs, x4_mismatch);
}

/* ---- matvec f32 / f16 ---------------------------------------------------- */

/* W(rows, cols) f32 row-major -> the x4 layout of kernels.h (rows % 4
 * == 0, cols % 4 == 0), written from its definition: w(r, c) goes to
 * (r / 4) * 4 * cols + (c / 4) * 16 + (r % 4) * 4 + c % 4 */
static void to_x4_f32(const float *src, float *dst, int rows, int cols) {
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            dst[(size_t)(r / 4) * 4 * cols + (size_t)(c / 4) * 16 + (size_t)(r % 4) * 4 + (size_t)(c % 4)] =
                src[(size_t)r * cols + c];
}

/* counts rows where the two tables' x4 products differ in any bit */
static long x4_f32_mismatch;

/* Checks y_s, y_r against the double-precision product; returns the max of
 * |y_s - y_r| / sum|w x| over the rows (and accumulates into *max). */
static void check_matvec(const char *what, const float *ys, const float *yr, const double *yd,
                         const double *mag, int rows, int cols, double *max) {
    for (int i = 0; i < rows; i++) {
        double e = relerr(ys[i], yr[i], mag[i]);
        double es = relerr(ys[i], yd[i], mag[i]);
        if (e > *max) *max = e;
        CHECK_MSG(e < 1e-5 && es < 1e-5, "%s %dx%d row %d: simd %.9g ref %.9g exact %.9g", what, rows,
                  cols, i, (double)ys[i], (double)yr[i], yd[i]);
    }
}

static void run_matvec_f32(rng_t *r, int rows, int cols, double *max) {
    float *w = xmalloc((size_t)rows * cols * sizeof *w);
    float *x = xmalloc((size_t)cols * sizeof *x);
    float *ys = xmalloc((size_t)rows * sizeof *ys), *yr = xmalloc((size_t)rows * sizeof *yr);
    double *yd = xmalloc((size_t)rows * sizeof *yd), *mag = xmalloc((size_t)rows * sizeof *mag);
    fill(r, w, (size_t)rows * cols, 1.0f);
    fill(r, x, (size_t)cols, 3.0f);
    for (int i = 0; i < rows; i++) {
        yd[i] = mag[i] = 0;
        for (int c = 0; c < cols; c++) {
            double p = (double)w[(size_t)i * cols + c] * x[c];
            yd[i] += p;
            mag[i] += fabs(p);
        }
    }
    S->matvec_f32(ys, w, x, rows, cols);
    R->matvec_f32(yr, w, x, rows, cols);
    check_matvec("matvec_f32", ys, yr, yd, mag, rows, cols, max);
    if (rows % 4 == 0 && cols % 4 == 0) {
        /* the x4 layout: SIMD and reference in the fixed order, bit for bit;
         * both near the exact product; a view of the groups from row 4 on
         * gives the whole matrix's bits */
        float *wx = xmalloc((size_t)rows * cols * sizeof *wx);
        to_x4_f32(w, wx, rows, cols);
        S->matvec_f32_x4(ys, wx, x, rows, cols);
        R->matvec_f32_x4(yr, wx, x, rows, cols);
        x4_f32_mismatch += memcmp(ys, yr, (size_t)rows * sizeof *ys) != 0;
        check_matvec("matvec_f32_x4", ys, yr, yd, mag, rows, cols, max);
        if (rows > 4) {
            S->matvec_f32_x4(yr, wx + (size_t)4 * cols, x, rows - 4, cols);
            x4_f32_mismatch += memcmp(ys + 4, yr, (size_t)(rows - 4) * sizeof *ys) != 0;
        }
        free(wx);
    }
    free(w), free(x), free(ys), free(yr), free(yd), free(mag);
}

static void test_matvec_f32(void) {
    rng_t r = {12345};
    double max = 0;
    for (int rows = 1; rows <= 9; rows++)
        for (int cols = 1; cols <= 70; cols++) run_matvec_f32(&r, rows, cols, &max);
    run_matvec_f32(&r, 288, 768, &max);
    run_matvec_f32(&r, 768, 288, &max);
    run_matvec_f32(&r, 288, 32, &max);
    run_matvec_f32(&r, 288, 48, &max);
    run_matvec_f32(&r, 13, 1027, &max);
    CHECK_MSG(x4_f32_mismatch == 0, "matvec_f32_x4: simd and reference differ in %ld cases", x4_f32_mismatch);
    printf("matvec_f32: max |simd-ref| / sum|w*x| = %.3g; x4 layout: simd and reference bit-identical\n", max);
}

/* random half: mostly ordinary values, some subnormals, zeros, large ones */
static uint16_t rand_half(rng_t *r) {
    uint32_t k = rng_u32(r) % 16;
    uint16_t sign = (uint16_t)((rng_u32(r) & 1) << 15);
    if (k == 0) return (uint16_t)(sign | (rng_u32(r) % 0x400)); /* subnormal or zero */
    if (k == 1) return (uint16_t)(sign | (0x7800 + rng_u32(r) % 0x400)); /* 32768..65504 */
    if (k == 2) return (uint16_t)(sign | (0x0400 + rng_u32(r) % 0x400)); /* smallest normals */
    return doze_f32_to_f16(rng_f(r));
}

static long x4_f16_mismatch;

static void run_matvec_f16(rng_t *r, int rows, int cols, double *max) {
    uint16_t *w = xmalloc((size_t)rows * cols * sizeof *w);
    float *x = xmalloc((size_t)cols * sizeof *x);
    float *ys = xmalloc((size_t)rows * sizeof *ys), *yr = xmalloc((size_t)rows * sizeof *yr);
    double *yd = xmalloc((size_t)rows * sizeof *yd), *mag = xmalloc((size_t)rows * sizeof *mag);
    for (size_t i = 0; i < (size_t)rows * cols; i++) w[i] = rand_half(r);
    fill(r, x, (size_t)cols, 3.0f);
    for (int i = 0; i < rows; i++) {
        yd[i] = mag[i] = 0;
        for (int c = 0; c < cols; c++) {
            double p = (double)doze_f16_to_f32(w[(size_t)i * cols + c]) * x[c];
            yd[i] += p;
            mag[i] += fabs(p);
        }
    }
    S->matvec_f16(ys, w, x, rows, cols);
    R->matvec_f16(yr, w, x, rows, cols);
    check_matvec("matvec_f16", ys, yr, yd, mag, rows, cols, max);
    if (rows % 4 == 0 && cols % 8 == 0) {
        /* the x4 layout (rand_half gives no inf/nan): SIMD ==
         * reference == matvec_f32_x4 of the widened W, bit for bit; with x
         * as drawn and with x large (|x| >= 2^16: the exact path) */
        uint16_t *wx = xmalloc((size_t)rows * cols * sizeof *wx);
        float *wf = xmalloc((size_t)rows * cols * sizeof *wf), *wfx = xmalloc((size_t)rows * cols * sizeof *wfx);
        float *y3 = xmalloc((size_t)rows * sizeof *y3);
        for (int i = 0; i < rows; i++)
            for (int c = 0; c < cols; c++) {
                wx[(size_t)(i / 4) * 4 * cols + (size_t)(c / 8) * 32 + (size_t)(i % 4) * 8 + (size_t)(c % 8)] =
                    w[(size_t)i * cols + c];
                wf[(size_t)i * cols + c] = doze_f16_to_f32(w[(size_t)i * cols + c]);
            }
        to_x4_f32(wf, wfx, rows, cols);
        for (int big = 0; big < 2; big++) {
            if (big) x[cols / 2] = 0x1p17f;
            S->matvec_f16_x4(ys, wx, x, rows, cols);
            R->matvec_f16_x4(yr, wx, x, rows, cols);
            S->matvec_f32_x4(y3, wfx, x, rows, cols);
            x4_f16_mismatch += memcmp(ys, yr, (size_t)rows * 4) != 0 || memcmp(ys, y3, (size_t)rows * 4) != 0;
            if (!big) check_matvec("matvec_f16_x4", ys, yr, yd, mag, rows, cols, max);
        }
        free(wx), free(wf), free(wfx), free(y3);
    }
    free(w), free(x), free(ys), free(yr), free(yd), free(mag);
}

static void test_matvec_f16(void) {
    rng_t r = {777};
    double max = 0;
    for (int rows = 1; rows <= 9; rows++)
        for (int cols = 1; cols <= 70; cols++) run_matvec_f16(&r, rows, cols, &max);
    run_matvec_f16(&r, 288, 768, &max);
    run_matvec_f16(&r, 768, 288, &max);
    run_matvec_f16(&r, 11, 1001, &max);
    run_matvec_f16(&r, 288, 32, &max);
    run_matvec_f16(&r, 288, 48, &max);
    CHECK_MSG(x4_f16_mismatch == 0, "matvec_f16_x4: simd, reference and f32_x4 differ in %ld cases", x4_f16_mismatch);

    /* Every finite half through the vector widening, exactly: W(4, 8) all h,
     * x = (1, 0, ..., 0) makes y = h (+ zeros). */
    long bad = 0;
    float x[8] = {1, 0, 0, 0, 0, 0, 0, 0}, y[4];
    uint16_t w[32];
    for (uint32_t h = 0; h < 0x10000u; h++) {
        if ((h & 0x7c00u) == 0x7c00u) continue; /* inf / nan: below */
        for (int i = 0; i < 32; i++) w[i] = (uint16_t)h;
        S->matvec_f16(y, w, x, 4, 8);
        float want = doze_f16_to_f32((uint16_t)h);
        for (int i = 0; i < 4; i++)
            if (y[i] != want) bad++;
        S->matvec_f16_x4(y, w, x, 4, 8); /* the x4 layout of a constant W is W */
        for (int i = 0; i < 4; i++)
            if (y[i] != want) bad++;
    }
    CHECK_MSG(bad == 0, "%ld finite halves widened wrongly by the SIMD matvec_f16", bad);
    /* inf / nan weights: W(4, 8) with one special value per row on column 0 */
    {
        uint16_t ws[32] = {0};
        ws[0] = 0x7c00;  /* +inf */
        ws[8] = 0xfc00;  /* -inf */
        ws[16] = 0x7e00; /* nan */
        ws[24] = 0x7bff; /* 65504 */
        S->matvec_f16(y, ws, x, 4, 8);
        CHECK(y[0] == INFINITY && y[1] == -INFINITY && isnan(y[2]) && y[3] == 65504.0f);
    }
    printf("matvec_f16: max |simd-ref| / sum|w*x| = %.3g, all 63488 finite halves exact (x4 too); x4 layout: "
           "simd, reference and f32_x4 of the widened W bit-identical\n", max);
}

/* ---- activations rounded to f16 / bf16 ----------------------------------- */

/* The SIMD rounding against the scalar conversions, bit for bit, on every
 * pattern of the bits that decide it (all values of the bits above the
 * rounded-off ones, each with the rounded-off bits at 0, 1, just under,
 * at and just over the half, all ones, and random: ties both ways, NaNs,
 * infinities, overflow, subnormals of both types and of f32, both signs),
 * through runs whose lengths leave every tail length. */
static void test_round_input(void) {
    const int types[2] = {DOZE_TYPE_F16, DOZE_TYPE_BF16};
    rng_t r = {777};
    long n_vals = 0, bad = 0;
    enum { RUN = 4099 };
    uint32_t *u = xmalloc(RUN * sizeof *u);
    float *a = xmalloc(RUN * sizeof *a), *b = xmalloc(RUN * sizeof *b);
    for (int ti = 0; ti < 2; ti++) {
        const int low = types[ti] == DOZE_TYPE_F16 ? 13 : 16; /* bits rounded off (f16 normals) */
        const uint32_t half = 1u << (low - 1), mask = (1u << low) - 1;
        const uint32_t lows[7] = {0, 1, half - 1, half, half + 1, mask, 0};
        int k = 0;
        for (uint64_t hi = 0; hi < (1ull << (32 - low)); hi++)
            for (int l = 0; l < 7; l++) {
                const uint32_t lo = l == 6 ? rng_u32(&r) & mask : lows[l];
                u[k++] = (uint32_t)(hi << low) | lo;
                if (k == RUN || (hi + 1 == (1ull << (32 - low)) && l == 6)) {
                    memcpy(a, u, (size_t)k * 4);
                    const int m = k - (int)(rng_u32(&r) % 4); /* a tail of 0..3 */
                    S->round_input(types[ti], a, b, m);
                    R->round_input(types[ti], a, a, m); /* in place */
                    bad += memcmp(a, b, (size_t)m * 4) != 0;
                    n_vals += m;
                    k = 0;
                }
            }
    }
    /* the conversions themselves on a few values */
    const float in[6] = {1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f, 65519.0f, 65520.0f, 0x1p-25f, -0x1p-25f * 3};
    const float want[6] = {1.0f, 1.0f + 0x1p-9f, 65504.0f, INFINITY, 0.0f, -0x1p-23f};
    float got[6];
    S->round_input(DOZE_TYPE_F16, in, got, 6);
    for (int i = 0; i < 6; i++) CHECK_MSG(got[i] == want[i], "f16 rounding of %a: %a", (double)in[i], (double)got[i]);
    CHECK_MSG(bad == 0, "%ld runs rounded differently by simd and reference", bad);
    printf("round_input: %ld values (f16, bf16), simd == reference bits (%ld runs differ)\n", n_vals, bad);
    free(u), free(a), free(b);
}

/* ---- q8_0 ---------------------------------------------------------------- */

static void test_quantize_q8_0(void) {
    rng_t r = {4242};
    const doze_type_traits *tt = doze_type_traits_of(DOZE_TYPE_Q8_0);
    CHECK(tt != NULL);
    long blocks = 0, diffs = 0, diffs_tt = 0;
    for (int rep = 0; rep < 300; rep++) {
        int nb = 1 + (int)(rng_u32(&r) % 12);
        int n = nb * DOZE_QK8_0;
        float *x = xmalloc((size_t)n * sizeof *x);
        float scale = ldexpf(1.0f, (int)(rng_u32(&r) % 40) - 20);
        fill(&r, x, (size_t)n, scale);
        if (rep % 5 == 0) /* an all-zero block */
            memset(x, 0, DOZE_QK8_0 * sizeof *x);
        if (rep % 7 == 0) { /* ties: d = 1, x = k + 0.5 */
            for (int j = 0; j < DOZE_QK8_0; j++) x[j] = (float)((int)(rng_u32(&r) % 253) - 126) + 0.5f;
            x[0] = 127.0f;
            x[1] = -2.5f;
            x[2] = 2.5f;
            x[3] = -0.5f;
            x[4] = 0.5f;
        }
        if (rep % 11 == 0 && nb > 1) /* a block with a single nonzero, negative */
            for (int j = 0; j < DOZE_QK8_0; j++) x[DOZE_QK8_0 * (nb - 1) + j] = j == 17 ? -3.0e-3f : 0.0f;
        doze_block_q8_0 *qs = xmalloc((size_t)nb * sizeof *qs), *qr = xmalloc((size_t)nb * sizeof *qr),
                        *qt = xmalloc((size_t)nb * sizeof *qt);
        S->quantize_q8_0(x, qs, n);
        R->quantize_q8_0(x, qr, n);
        tt->quantize_row(x, qt, n);
        if (memcmp(qs, qr, (size_t)nb * sizeof *qs) != 0) diffs++;
        if (memcmp(qt, qr, (size_t)nb * sizeof *qs) != 0) diffs_tt++;
        if (rep % 7 == 0) {
            CHECK(qr[0].qs[1] == -3 && qr[0].qs[2] == 3 && qr[0].qs[3] == -1 && qr[0].qs[4] == 1);
            CHECK(qr[0].qs[0] == 127 && doze_f16_to_f32(qr[0].d) == 1.0f);
        }
        blocks += nb;
        free(x), free(qs), free(qr), free(qt);
    }
    CHECK_MSG(diffs == 0, "%ld rows quantized differently by simd and reference", diffs);
    CHECK_MSG(diffs_tt == 0, "%ld rows quantized differently by reference and type traits", diffs_tt);
    printf("quantize_q8_0: %ld blocks, simd == reference == type traits bytes (%ld, %ld diffs)\n", blocks,
           diffs, diffs_tt);
}

static long q8_exact = 0, q8_total = 0;

static void run_matvec_q8_0(rng_t *r, int rows, int cols, int extreme, double *max) {
    int nb = cols / DOZE_QK8_0;
    float *wf = xmalloc((size_t)rows * cols * sizeof *wf);
    float *x = xmalloc((size_t)cols * sizeof *x);
    doze_block_q8_0 *w = xmalloc((size_t)rows * nb * sizeof *w), *xq = xmalloc((size_t)nb * sizeof *xq);
    float *ys = xmalloc((size_t)rows * sizeof *ys), *yr = xmalloc((size_t)rows * sizeof *yr);
    fill(r, wf, (size_t)rows * cols, 0.1f);
    fill(r, x, (size_t)cols, 2.0f);
    doze_type_traits_of(DOZE_TYPE_Q8_0)->quantize_row(wf, w, (int64_t)rows * cols);
    if (extreme == 1) /* -128 everywhere in some blocks: the largest products */
        for (int i = 0; i < rows * nb; i += 3)
            for (int j = 0; j < DOZE_QK8_0; j++) w[i].qs[j] = -128;
    if (extreme == 2) /* zero and subnormal scales (+-), and the largest half */
        for (int i = 0; i < rows * nb; i += 2) {
            static const uint16_t sp[] = {0x0000, 0x8000, 0x0001, 0x83ff, 0x0200, 0x7bff, 0xfbff};
            w[i].d = sp[(i / 2) % (int)(sizeof sp / sizeof sp[0])];
        }
    S->quantize_q8_0(x, xq, cols);
    if (extreme)
        for (int j = 0; j < DOZE_QK8_0; j++) xq[0].qs[j] = (int8_t)(j & 1 ? -128 : 127);
    S->matvec_q8_0(ys, w, xq, rows, cols);
    R->matvec_q8_0(yr, w, xq, rows, cols);
    for (int i = 0; i < rows; i++) {
        double mag = 0, exact = 0;
        for (int b = 0; b < nb; b++) {
            const doze_block_q8_0 *wb = &w[(size_t)i * nb + b];
            double d = (double)doze_f16_to_f32(wb->d) * doze_f16_to_f32(xq[b].d);
            for (int j = 0; j < DOZE_QK8_0; j++) {
                double p = d * wb->qs[j] * xq[b].qs[j];
                mag += fabs(p);
                exact += p;
            }
        }
        double e = relerr(ys[i], yr[i], mag);
        if (e > *max) *max = e;
        q8_total++;
        if (f2u(ys[i]) == f2u(yr[i])) q8_exact++;
        CHECK_MSG(e <= 1e-6 && relerr(yr[i], exact, mag) < 1e-5, "matvec_q8_0 %dx%d row %d: simd %.9g ref %.9g exact %.9g",
                  rows, cols, i, (double)ys[i], (double)yr[i], exact);
    }
    free(wf), free(x), free(w), free(xq), free(ys), free(yr);
}

/* inf and nan scales in W propagate as in the reference: row 0 has an inf
 * block scale (x's scale nonzero, dot nonzero) -> inf of the same sign, row 1
 * a nan scale -> nan, row 2 an inf scale times an all-zero x block -> nan. */
static void test_matvec_q8_0_infnan(void) {
    enum { rows = 3, nb = 6, cols = nb * DOZE_QK8_0 };
    doze_block_q8_0 w[rows * nb], xq[nb];
    float x[cols], ys[rows], yr[rows];
    rng_t r = {7};
    fill(&r, x, cols, 1.0f);
    for (int j = 0; j < DOZE_QK8_0; j++) x[4 * DOZE_QK8_0 + j] = 0.0f;
    S->quantize_q8_0(x, xq, cols);
    for (int i = 0; i < rows * nb; i++) {
        w[i].d = 0x2000;
        for (int j = 0; j < DOZE_QK8_0; j++) w[i].qs[j] = (int8_t)(xq[i % nb].qs[j] > 0 ? 1 : -1);
    }
    w[0 * nb + 1].d = 0x7c00;
    w[1 * nb + 5].d = 0x7e01;
    w[2 * nb + 4].d = 0xfc00;
    S->matvec_q8_0(ys, w, xq, rows, cols);
    R->matvec_q8_0(yr, w, xq, rows, cols);
    CHECK_MSG(isinf(yr[0]) && yr[0] > 0 && isnan(yr[1]) && isnan(yr[2]), "q8_0 inf/nan: reference %g %g %g",
              (double)yr[0], (double)yr[1], (double)yr[2]);
    CHECK_MSG(isinf(ys[0]) && ys[0] > 0 && isnan(ys[1]) && isnan(ys[2]), "q8_0 inf/nan: simd %g %g %g",
              (double)ys[0], (double)ys[1], (double)ys[2]);
}

static void test_matvec_q8_0(void) {
    rng_t r = {99};
    double max = 0;
    for (int rows = 1; rows <= 9; rows++)
        for (int nb = 1; nb <= 8; nb++) run_matvec_q8_0(&r, rows, nb * DOZE_QK8_0, 0, &max);
    for (int rows = 1; rows <= 9; rows++) run_matvec_q8_0(&r, rows, 5 * DOZE_QK8_0, 1, &max);
    run_matvec_q8_0(&r, 288, 768, 0, &max);
    run_matvec_q8_0(&r, 768, 288, 0, &max);
    for (int rows = 1; rows <= 9; rows++) run_matvec_q8_0(&r, rows, 7 * DOZE_QK8_0, 2, &max);
    run_matvec_q8_0(&r, 288, 768, 0, &max);
    run_matvec_q8_0(&r, 768, 288, 0, &max);
    run_matvec_q8_0(&r, 1001, 2048, 0, &max);
    run_matvec_q8_0(&r, 3, 259 * DOZE_QK8_0, 0, &max);  /* more than one chunk of x blocks */
    run_matvec_q8_0(&r, 2, 512 * DOZE_QK8_0 + 96, 2, &max);
    test_matvec_q8_0_infnan();
    /* not bit-identical any more (per-lane sums): within 1e-6 of sum |w*x| */
    printf("matvec_q8_0: max rel |simd-ref| = %.3g (of sum |w*x|), %ld/%ld rows bit-identical\n", max, q8_exact,
           q8_total);
}

/* ---- small kernels ---------------------------------------------------------- */

static void test_rmsnorm(void) {
    rng_t r = {5};
    double max = 0;
    for (int n = 1; n <= 300; n += (n < 40 ? 1 : 37)) {
        float *x = xmalloc((size_t)n * sizeof *x), *w = xmalloc((size_t)n * sizeof *w);
        float *os = xmalloc((size_t)n * sizeof *os), *orf = xmalloc((size_t)n * sizeof *orf);
        fill(&r, x, (size_t)n, 4.0f);
        fill(&r, w, (size_t)n, 1.5f);
        S->rmsnorm(os, x, w, n, 1e-5f);
        R->rmsnorm(orf, x, w, n, 1e-5f);
        double ss = 0;
        for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
        double scale = 1.0 / sqrt(ss / n + 1e-5);
        for (int i = 0; i < n; i++) {
            double mag = fabs((double)x[i] * scale * w[i]) + 1e-30;
            double e = relerr(os[i], orf[i], mag);
            if (e > max) max = e;
            CHECK_MSG(e < 1e-5 && relerr(os[i], x[i] * scale * w[i], mag) < 1e-5, "rmsnorm n=%d i=%d", n, i);
        }
        free(x), free(w), free(os), free(orf);
    }
    printf("rmsnorm: max rel |simd-ref| = %.3g\n", max);
}

static void test_softmax(void) {
    rng_t r = {6};
    double max = 0;
    for (int n = 1; n <= 200; n += (n < 40 ? 1 : 13)) {
        float *xs = xmalloc((size_t)n * sizeof *xs), *xr = xmalloc((size_t)n * sizeof *xr);
        fill(&r, xs, (size_t)n, 12.0f);
        if (n > 3) xs[n / 2] = -INFINITY; /* a masked entry */
        memcpy(xr, xs, (size_t)n * sizeof *xs);
        double mx = -INFINITY, sum = 0;
        for (int i = 0; i < n; i++) mx = xs[i] > mx ? xs[i] : mx;
        for (int i = 0; i < n; i++) sum += exp(xs[i] - mx);
        double *want = xmalloc((size_t)n * sizeof *want);
        for (int i = 0; i < n; i++) want[i] = exp(xs[i] - mx) / sum;
        S->softmax(xs, n);
        R->softmax(xr, n);
        double tot = 0;
        for (int i = 0; i < n; i++) {
            double e = relerr(xs[i], xr[i], fabs(want[i]) + 1e-30);
            if (e > max) max = e;
            tot += xs[i];
            CHECK_MSG(e < 1e-5 && relerr(xs[i], want[i], want[i] + 1e-30) < 1e-5, "softmax n=%d i=%d %g %g %g",
                      n, i, (double)xs[i], (double)xr[i], want[i]);
        }
        if (n > 3) CHECK(xs[n / 2] == 0.0f && xr[n / 2] == 0.0f);
        CHECK(fabs(tot - 1.0) < 1e-5);
        free(xs), free(xr), free(want);
    }
    /* all -inf: zeros, not NaN */
    float z[7];
    for (int i = 0; i < 7; i++) z[i] = -INFINITY;
    S->softmax(z, 7);
    for (int i = 0; i < 7; i++) CHECK(z[i] == 0.0f);
    for (int i = 0; i < 7; i++) z[i] = -INFINITY;
    R->softmax(z, 7);
    for (int i = 0; i < 7; i++) CHECK(z[i] == 0.0f);
    printf("softmax: max rel |simd-ref| = %.3g\n", max);
}

static void test_rope(void) {
    rng_t r = {7};
    long diffs = 0, cases = 0;
    const int dims[] = {2, 4, 6, 8, 10, 16, 18, 32, 48, 64, 70, 128};
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
        int head_dim = dims[di];
        for (int rope_dim = 0; rope_dim <= head_dim; rope_dim += 2) {
            int n_heads = 1 + (int)(rng_u32(&r) % 5);
            size_t n = (size_t)n_heads * head_dim;
            float *vs = xmalloc(n * sizeof *vs), *vr = xmalloc(n * sizeof *vr);
            float *ct = xmalloc((size_t)(rope_dim / 2 + 1) * sizeof *ct),
                  *st = xmalloc((size_t)(rope_dim / 2 + 1) * sizeof *st);
            fill(&r, vs, n, 2.0f);
            memcpy(vr, vs, n * sizeof *vs);
            for (int i = 0; i < rope_dim / 2; i++) {
                double a = rng_f(&r) * 10.0;
                ct[i] = (float)cos(a);
                st[i] = (float)sin(a);
            }
            S->rope(vs, n_heads, head_dim, rope_dim, ct, st);
            R->rope(vr, n_heads, head_dim, rope_dim, ct, st);
            if (memcmp(vs, vr, n * sizeof *vs) != 0) diffs++;
            cases++;
            free(vs), free(vr), free(ct), free(st);
        }
    }
    /* one by hand: (1, 2) by 90 degrees -> (-2, 1) */
    float v[4] = {1, 2, 3, 4}, c[2] = {0, 1}, s[2] = {1, 0};
    S->rope(v, 1, 4, 4, c, s);
    CHECK(v[0] == -2 && v[1] == 1 && v[2] == 3 && v[3] == 4);
    CHECK_MSG(diffs == 0, "%ld rope cases differ", diffs);
    printf("rope: %ld shapes, simd bit-identical to reference (%ld diffs)\n", cases, diffs);
}

static void test_swiglu_add(void) {
    rng_t r = {8};
    long diffs = 0, adiffs = 0;
    double max_rel = 0;
    for (int n = 1; n <= 100; n++) {
        float *g = xmalloc((size_t)n * sizeof *g), *u = xmalloc((size_t)n * sizeof *u);
        float *os = xmalloc((size_t)n * sizeof *os), *orf = xmalloc((size_t)n * sizeof *orf);
        fill(&r, g, (size_t)n, 30.0f);
        fill(&r, u, (size_t)n, 3.0f);
        if (n > 5) {
            g[0] = 100.0f;
            g[1] = -100.0f;
            g[2] = 0.0f;
            g[3] = -0.0f;
        }
        S->swiglu(os, g, u, n);
        R->swiglu(orf, g, u, n);
        if (memcmp(os, orf, (size_t)n * sizeof *os) != 0) diffs++;
        for (int i = 0; i < n; i++) {
            double want = (double)g[i] / (1.0 + exp(-(double)g[i])) * u[i];
            double e = relerr(os[i], want, fabs(want) + 1e-30);
            if (fabs(want) > 1e-30 && e > max_rel) max_rel = e;
        }
        memcpy(os, g, (size_t)n * sizeof *os);
        memcpy(orf, g, (size_t)n * sizeof *os);
        S->add(os, u, n);
        R->add(orf, u, n);
        if (memcmp(os, orf, (size_t)n * sizeof *os) != 0) adiffs++;
        for (int i = 0; i < n; i++) CHECK(orf[i] == g[i] + u[i]);
        free(g), free(u), free(os), free(orf);
    }
    CHECK_MSG(diffs == 0, "%ld swiglu sizes differ", diffs);
    CHECK_MSG(adiffs == 0, "%ld add sizes differ", adiffs);
    CHECK_MSG(max_rel < 1e-5, "swiglu vs double: %g", max_rel);
    printf("swiglu: simd bit-identical to reference, max rel vs double %.3g; add: bit-identical\n", max_rel);
}

/* attention_heads: per running head, bit for bit `attention` of that head
 * (SIMD and reference each against themselves), skipped heads' output
 * untouched; GQA groups, masks, more heads than one pass takes */
static void test_attention_heads(void) {
    rng_t r = {0x77aa11ull};
    const int cfg[][3] = {{6, 1, 48}, {12, 3, 64}, {4, 4, 7}, {20, 2, 16}, {33, 1, 8}, {1, 1, 67}};
    long cases = 0, diff = 0, touched = 0;
    double max = 0;
    for (size_t ci = 0; ci < sizeof cfg / sizeof cfg[0]; ci++) {
        const int nh = cfg[ci][0], group = cfg[ci][1], hd = cfg[ci][2], nkv = nh / group;
        for (int n_pos = 1; n_pos <= 70; n_pos += 23) {
            for (int masked = 0; masked <= 1; masked++) {
                const int stride = nkv * hd + (int)(rng_u32(&r) % 3);
                const size_t kvn = (size_t)n_pos * stride, qn = (size_t)nh * hd;
                float *k = xmalloc(kvn * 4), *v = xmalloc(kvn * 4), *q = xmalloc(qn * 4);
                float *o1 = xmalloc(qn * 4), *o2 = xmalloc(qn * 4), *o3 = xmalloc(qn * 4);
                float *att = xmalloc((size_t)(nh < DOZE_ATT_HEADS ? nh : DOZE_ATT_HEADS) * n_pos * 4);
                uint8_t *valid = xmalloc((size_t)n_pos), *on = xmalloc((size_t)nh);
                fill(&r, k, kvn, 2.0f);
                fill(&r, v, kvn, 1.0f);
                fill(&r, q, qn, 2.0f);
                for (int t = 0; t < n_pos; t++) valid[t] = masked ? (rng_u32(&r) % 3 != 0) || t == n_pos - 1 : 1;
                for (int h = 0; h < nh; h++) on[h] = masked ? (rng_u32(&r) % 4 != 0) : 1;
                const uint8_t *vm = masked ? valid : NULL, *hm = masked ? on : NULL;
                for (int k2 = 0; k2 < 2; k2++) {
                    const doze_kernels *K = k2 ? R : S;
                    for (size_t i = 0; i < qn; i++) o1[i] = o2[i] = 7.0f;
                    K->attention_heads(o1, q, k, v, nh, group, n_pos, hd, stride, vm, hm, att);
                    for (int h = 0; h < nh; h++) {
                        if (hm && !hm[h]) {
                            for (int i = 0; i < hd; i++) touched += o1[(size_t)h * hd + i] != 7.0f;
                            continue;
                        }
                        K->attention(o2 + (size_t)h * hd, q + (size_t)h * hd, k + (size_t)(h / group) * hd,
                                     v + (size_t)(h / group) * hd, n_pos, hd, stride, vm, att);
                    }
                    diff += memcmp(o1, o2, qn * 4) != 0;
                    if (k2 == 0) memcpy(o3, o1, qn * 4);
                }
                for (size_t i = 0; i < qn; i++) { /* simd vs reference */
                    double e = fabs((double)o3[i] - o1[i]);
                    if (e > max) max = e;
                }
                cases++;
                free(k), free(v), free(q), free(o1), free(o2), free(o3), free(att), free(valid), free(on);
            }
        }
    }
    CHECK_MSG(diff == 0, "attention_heads differs from per-head attention in %ld cases", diff);
    CHECK_MSG(touched == 0, "attention_heads wrote %ld values of skipped heads", touched);
    CHECK_MSG(max < 1e-5, "attention_heads simd vs reference %g", max);
    printf("attention_heads: %ld cases, bit-identical to per-head attention (both tables); simd vs ref %.3g\n",
           cases, max);
}

static void test_attention(void) {
    rng_t r = {9};
    double max = 0, max_compact = 0;
    const int dims[] = {1, 3, 4, 7, 8, 16, 48, 64, 67};
    long cases = 0;
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
        int hd = dims[di];
        for (int n_pos = 1; n_pos <= 40; n_pos += (n_pos < 12 ? 1 : 7)) {
            for (int masked = 0; masked <= 1; masked++) {
                int stride = hd * (1 + (int)(rng_u32(&r) % 3)) + (int)(rng_u32(&r) % 3);
                size_t kvn = (size_t)n_pos * stride;
                float *k = xmalloc(kvn * sizeof *k), *v = xmalloc(kvn * sizeof *v);
                float *q = xmalloc((size_t)hd * sizeof *q);
                float *os = xmalloc((size_t)hd * sizeof *os), *orf = xmalloc((size_t)hd * sizeof *orf);
                float *oc = xmalloc((size_t)hd * sizeof *oc), *ocs = xmalloc((size_t)hd * sizeof *ocs);
                float *as = xmalloc((size_t)n_pos * sizeof *as), *ar = xmalloc((size_t)n_pos * sizeof *ar);
                float *ac = xmalloc((size_t)n_pos * sizeof *ac);
                uint8_t *valid = xmalloc((size_t)n_pos);
                fill(&r, k, kvn, 2.0f);
                fill(&r, v, kvn, 1.0f);
                fill(&r, q, (size_t)hd, 2.0f);
                int nv = 0;
                for (int t = 0; t < n_pos; t++) {
                    valid[t] = masked ? (rng_u32(&r) % 3 != 0) : 1;
                    if (masked && t == n_pos - 1) valid[t] = 1; /* at least one */
                    if (!valid[t]) /* hidden positions hold garbage: must not leak */
                        for (int i = 0; i < hd; i++) k[(size_t)t * stride + i] = v[(size_t)t * stride + i] = NAN;
                    nv += valid[t];
                }
                /* the valid positions alone, compacted */
                float *kc = xmalloc((size_t)nv * hd * sizeof *kc + 4), *vc = xmalloc((size_t)nv * hd * sizeof *vc + 4);
                for (int t = 0, j = 0; t < n_pos; t++)
                    if (valid[t]) {
                        memcpy(kc + (size_t)j * hd, k + (size_t)t * stride, (size_t)hd * sizeof *kc);
                        memcpy(vc + (size_t)j * hd, v + (size_t)t * stride, (size_t)hd * sizeof *vc);
                        j++;
                    }
                const uint8_t *vm = masked ? valid : NULL;
                S->attention(os, q, k, v, n_pos, hd, stride, vm, as);
                R->attention(orf, q, k, v, n_pos, hd, stride, vm, ar);
                R->attention(oc, q, kc, vc, nv, hd, hd, NULL, ac);
                S->attention(ocs, q, kc, vc, nv, hd, hd, NULL, ac);
                for (int t = 0; t < n_pos; t++)
                    if (!valid[t]) CHECK(as[t] == 0.0f && ar[t] == 0.0f);
                for (int i = 0; i < hd; i++) {
                    double mag = 0;
                    for (int t = 0; t < n_pos; t++)
                        if (valid[t]) mag += fabs((double)ar[t] * v[(size_t)t * stride + i]);
                    mag += 1e-30;
                    double e = relerr(os[i], orf[i], mag);
                    double ec = relerr(ocs[i], os[i], mag);
                    if (e > max) max = e;
                    if (ec > max_compact) max_compact = ec;
                    CHECK_MSG(e < 1e-5 && ec < 1e-5, "attention hd=%d n_pos=%d i=%d: %g %g %g", hd, n_pos, i,
                              (double)os[i], (double)orf[i], (double)ocs[i]);
                    /* the reference ignores hidden positions exactly */
                    CHECK_MSG(f2u(orf[i]) == f2u(oc[i]), "ref attention masked != compacted, hd=%d n_pos=%d", hd,
                              n_pos);
                }
                cases++;
                free(k), free(v), free(q), free(os), free(orf), free(oc), free(ocs), free(as), free(ar), free(ac);
                free(valid), free(kc), free(vc);
            }
        }
    }
    /* nothing valid: zeros */
    {
        float k[8] = {0}, v[8] = {1, 1, 1, 1, 1, 1, 1, 1}, q[4] = {1, 1, 1, 1}, o[4] = {9, 9, 9, 9}, a[2];
        uint8_t valid[2] = {0, 0};
        S->attention(o, q, k, v, 2, 4, 4, valid, a);
        for (int i = 0; i < 4; i++) CHECK(o[i] == 0.0f);
        for (int i = 0; i < 4; i++) o[i] = 9;
        R->attention(o, q, k, v, 2, 4, 4, valid, a);
        for (int i = 0; i < 4; i++) CHECK(o[i] == 0.0f);
    }
    printf("attention: %ld cases, max rel |simd-ref| = %.3g, masked vs compacted (simd) %.3g\n", cases, max,
           max_compact);
}

static void test_read_probe(void) {
    rng_t r = {10};
    size_t n = 64 * 1000;
    uint8_t *buf = xmalloc(n);
    for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)rng_u32(&r);
    for (size_t len = 0; len <= n; len += 64 * 37) {
        uint32_t want = 0;
        for (size_t i = 0; i < len; i += 4) {
            uint32_t u;
            memcpy(&u, buf + i, 4);
            want += u;
        }
        CHECK(doze_read_probe(buf, len) == want);
    }
    free(buf);
    printf("read_probe: ok\n");
}

/* ---- q4_0, the x4 layouts, matmul --------------------------------- */

/* rows(rows) of W in the x4 layout from row-major blocks (bb bytes each,
 * f16 scale first), as model.c's SLOT_INTERLEAVE4 repacks them */
static void to_x4(const uint8_t *src, uint8_t *dst, int rows, int nb, int bb) {
    size_t row = (size_t)nb * bb, pay = (size_t)bb - 2;
    for (int g = 0; g < rows / 4; g++)
        for (int b = 0; b < nb; b++) {
            uint8_t *o = dst + (size_t)g * 4 * row + (size_t)b * 4 * bb;
            for (int r = 0; r < 4; r++) {
                const uint8_t *s = src + ((size_t)g * 4 + r) * row + (size_t)b * bb;
                memcpy(o + 2 * r, s, 2);
                memcpy(o + 8 + r * pay, s + 2, pay);
            }
        }
}

static void test_q4_0_and_x4(void) {
    rng_t r = {0x51ed2701ull};
    const doze_type_traits *q4 = doze_type_traits_of(DOZE_TYPE_Q4_0);
    const doze_type_traits *q8 = doze_type_traits_of(DOZE_TYPE_Q8_0);
    CHECK(q4 && q4->block_size == 32 && q4->block_bytes == 18 && doze_type_from_name("q4_0") == DOZE_TYPE_Q4_0);
    /* The quantizer searches the block scale for the smallest squared error
     * and must never do worse than ggml's rule (d = max / -8, q = round); on
     * random blocks it must do better on average. The ggml rule's error is
     * computed here independently. Also: codes within [0, 15], round trip
     * within half a step of the chosen scale + the clipped edge. */
    double err_new = 0, err_ggml = 0;
    int worse = 0;
    for (int blk_i = 0; blk_i < 2000; blk_i++) {
        float xb[32], back[32];
        float amax = 0, mx = 0;
        for (int j = 0; j < 32; j++) {
            xb[j] = blk_i == 0 ? (float)(j - 12) * 0.25f : (rng_f(&r) + rng_f(&r) + rng_f(&r)) * (blk_i % 3 ? 1.0f : 0.02f);
            if (fabsf(xb[j]) > amax) { amax = fabsf(xb[j]); mx = xb[j]; }
        }
        doze_block_q4_0 blk;
        q4->quantize_row(xb, &blk, 32);
        q4->dequantize_row(&blk, back, 32);
        float dg = doze_f16_to_f32(doze_f32_to_f16(mx / -8.0f));
        double en = 0, eg = 0, scale = 0;
        for (int j = 0; j < 32; j++) {
            double q = floor(xb[j] / dg + 0.5);
            if (q > 7) q = 7;
            if (q < -8) q = -8;
            eg += (xb[j] - dg * q) * (xb[j] - dg * q);
            en += (double)(back[j] - xb[j]) * (back[j] - xb[j]);
        }
        scale = amax * amax;
        err_new += en / scale;
        err_ggml += eg / scale;
        if (en > eg * (1 + 1e-6) + 1e-12 * scale) worse++;
        if (blk_i == 0) CHECK(en <= eg);
    }
    CHECK_MSG(worse == 0, "q4_0 quantizer worse than ggml's rule on %d of 2000 blocks", worse);
    CHECK_MSG(err_new < 0.95 * err_ggml, "q4_0 quantizer error %.4g not below ggml's %.4g", err_new, err_ggml);
    printf("q4_0 quantize: squared error %.1f%% of ggml's scale rule over 2000 blocks, never worse\n",
           100.0 * err_new / err_ggml);

    const int shapes[][2] = {{4, 32}, {8, 64}, {12, 288}, {64, 768}, {36, 96}, {16, 8192 + 64}};
    long n_bits = 0, n_x4 = 0, bad = 0;
    double worst = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int rows = shapes[si][0], cols = shapes[si][1], nb = cols / 32;
        float *w = xmalloc((size_t)rows * cols * 4), *x = xmalloc((size_t)cols * 4);
        uint8_t *w4 = xmalloc((size_t)rows * nb * 18), *w4x = xmalloc((size_t)rows * nb * 18);
        uint8_t *w8 = xmalloc((size_t)rows * nb * 34), *w8x = xmalloc((size_t)rows * nb * 34);
        void *xq = xmalloc((size_t)nb * 34);
        float *ys = xmalloc((size_t)rows * 4), *yr = xmalloc((size_t)rows * 4), *yx = xmalloc((size_t)rows * 4);
        fill(&r, w, (size_t)rows * cols, 1.0f);
        fill(&r, x, (size_t)cols, 3.0f);
        for (int i = 0; i < rows; i++) {
            q4->quantize_row(w + (size_t)i * cols, w4 + (size_t)i * nb * 18, cols);
            q8->quantize_row(w + (size_t)i * cols, w8 + (size_t)i * nb * 34, cols);
        }
        to_x4(w4, w4x, rows, nb, 18);
        to_x4(w8, w8x, rows, nb, 34);
        R->quantize_q8_0(x, xq, cols);
        /* q4_0: SIMD row-major and x4, reference x4: all the reference's bits */
        R->matvec_q4_0(yr, w4, xq, rows, cols);
        S->matvec_q4_0(ys, w4, xq, rows, cols);
        n_bits += memcmp(ys, yr, (size_t)rows * 4) != 0;
        S->matvec_q4_0_x4(yx, w4x, xq, rows, cols);
        n_x4 += memcmp(yx, yr, (size_t)rows * 4) != 0;
        R->matvec_q4_0_x4(yx, w4x, xq, rows, cols);
        n_x4 += memcmp(yx, yr, (size_t)rows * 4) != 0;
        /* against the dequantized product in double */
        for (int i = 0; i < rows; i++) {
            float wd[8192 + 64], xd[8192 + 64];
            q4->dequantize_row(w4 + (size_t)i * nb * 18, wd, cols);
            q8->dequantize_row(xq, xd, cols);
            double sum = 0, mag = 0;
            for (int j = 0; j < cols; j++) sum += (double)wd[j] * xd[j], mag += fabs((double)wd[j] * xd[j]);
            double e = relerr(yr[i], sum, mag);
            if (e > worst) worst = e;
            if (e > 1e-5) bad++;
        }
        /* q8_0 x4: the reference's bits */
        R->matvec_q8_0(yr, w8, xq, rows, cols);
        S->matvec_q8_0_x4(yx, w8x, xq, rows, cols);
        n_x4 += memcmp(yx, yr, (size_t)rows * 4) != 0;
        R->matvec_q8_0_x4(yx, w8x, xq, rows, cols);
        n_x4 += memcmp(yx, yr, (size_t)rows * 4) != 0;
        free(w), free(x), free(w4), free(w4x), free(w8), free(w8x), free(xq), free(ys), free(yr), free(yx);
    }
    CHECK_MSG(n_bits == 0, "simd matvec_q4_0 differs from the reference in %ld shapes", n_bits);
    CHECK_MSG(n_x4 == 0, "x4 matvecs differ from the reference in %ld cases", n_x4);
    CHECK_MSG(bad == 0, "%ld q4_0 rows off the exact product by > 1e-5 (worst %g)", bad, worst);
    printf("q4_0/x4     simd and x4 kernels bit-identical to the reference; worst %.2g of sum|w x| vs double\n",
           worst);
}

/* every token's row of a matmul equals that token's matvec, bit for bit */
static long matmul_shape(int n, int rows, int cols);
static void test_matmul(void) {
    /* 5 tokens (pairs + an odd one); 3 tokens over 300 blocks (several x
     * chunks, carried through y) */
    long diff = matmul_shape(5, 100, 96) + matmul_shape(3, 8, 32 * 300);
    CHECK_MSG(diff == 0, "%ld matmul token rows differ from the matvec", diff);
    printf("matmul      every token's row bit-identical to its matvec (f32, f16, q8_0, q4_0, x4; both tables)\n");
}

static long matmul_shape(int n, int rows, int cols) {
    rng_t r = {0xabcdef12ull};
    const int nb = cols / 32;
    long diff = 0;
    float *w = xmalloc((size_t)rows * cols * 4), *x = xmalloc((size_t)n * cols * 4);
    float *y = xmalloc((size_t)n * rows * 4), *y1 = xmalloc((size_t)rows * 4);
    uint8_t *wq = xmalloc((size_t)rows * nb * 34), *wx = xmalloc((size_t)rows * nb * 34);
    uint8_t *xq = xmalloc((size_t)n * nb * 34);
    uint16_t *wh = xmalloc((size_t)rows * cols * 2);
    fill(&r, w, (size_t)rows * cols, 1.0f);
    fill(&r, x, (size_t)n * cols, 2.0f);
    /* token 1 holds an |x| >= 2^16: the f16 matvecs' exact-widening path */
    x[(size_t)cols + 1] = 70000.0f;
    for (int k = 0; k < 2; k++) {
        const doze_kernels *K = k ? R : S;
        K->matmul_f32(0, y, rows, w, x, cols, n, rows, cols);
        for (int t = 0; t < n; t++) {
            K->matvec_f32(y1, w, x + (size_t)t * cols, rows, cols);
            diff += memcmp(y1, y + (size_t)t * rows, (size_t)rows * 4) != 0;
        }
        float *wx4 = xmalloc((size_t)rows * cols * 4);
        to_x4_f32(w, wx4, rows, cols);
        K->matmul_f32(1, y, rows, wx4, x, cols, n, rows, cols);
        for (int t = 0; t < n; t++) {
            K->matvec_f32_x4(y1, wx4, x + (size_t)t * cols, rows, cols);
            diff += memcmp(y1, y + (size_t)t * rows, (size_t)rows * 4) != 0;
        }
        free(wx4);
        for (int i = 0; i < rows * cols; i++) wh[i] = doze_f32_to_f16(w[i]);
        K->matmul_q(DOZE_TYPE_F16, 0, y, rows, wh, x, n, rows, cols);
        for (int t = 0; t < n; t++) {
            K->matvec_f16(y1, wh, x + (size_t)t * cols, rows, cols);
            diff += memcmp(y1, y + (size_t)t * rows, (size_t)rows * 4) != 0;
        }
        {
            uint16_t *whx = xmalloc((size_t)rows * cols * 2);
            for (int i = 0; i < rows; i++)
                for (int c = 0; c < cols; c++)
                    whx[(size_t)(i / 4) * 4 * cols + (size_t)(c / 8) * 32 + (size_t)(i % 4) * 8 + (size_t)(c % 8)] =
                        wh[(size_t)i * cols + c];
            K->matmul_q(DOZE_TYPE_F16, 1, y, rows, whx, x, n, rows, cols);
            for (int t = 0; t < n; t++) {
                K->matvec_f16_x4(y1, whx, x + (size_t)t * cols, rows, cols);
                diff += memcmp(y1, y + (size_t)t * rows, (size_t)rows * 4) != 0;
            }
            free(whx);
        }
        for (int t = 0; t < n; t++) K->quantize_q8_0(x + (size_t)t * cols, xq + (size_t)t * nb * 34, cols);
        for (int type = 0; type < 2; type++) {
            const doze_type_traits *tt = doze_type_traits_of(type ? DOZE_TYPE_Q4_0 : DOZE_TYPE_Q8_0);
            for (int i = 0; i < rows; i++) tt->quantize_row(w + (size_t)i * cols, wq + (size_t)i * nb * tt->block_bytes, cols);
            to_x4(wq, wx, rows, nb, tt->block_bytes);
            for (int layout = 0; layout < 2; layout++) {
                K->matmul_q(tt->type, layout, y, rows, layout ? wx : wq, xq, n, rows, cols);
                for (int t = 0; t < n; t++) {
                    const void *xt = xq + (size_t)t * nb * 34;
                    void (*mv)(float *, const void *, const void *, int, int) =
                        type ? (layout ? K->matvec_q4_0_x4 : K->matvec_q4_0) : (layout ? K->matvec_q8_0_x4 : K->matvec_q8_0);
                    mv(y1, layout ? wx : wq, xt, rows, cols);
                    diff += memcmp(y1, y + (size_t)t * rows, (size_t)rows * 4) != 0;
                }
            }
        }
    }
    free(w), free(x), free(y), free(y1), free(wq), free(wx), free(xq), free(wh);
    return diff;
}

int main(void) {
    CHECK(strcmp(S->name, "simd") == 0 && strcmp(R->name, "reference") == 0);
    test_expf();
    test_matvec_f32();
    test_attention_heads();
    test_matvec_f16();
    test_quantize_q8_0();
    test_round_input();
    test_matvec_q8_0();
    test_rmsnorm();
    test_softmax();
    test_rope();
    test_swiglu_add();
    test_attention();
    test_read_probe();
    test_q4_0_and_x4();
    test_matmul();
    return test_finish("test_kernels");
}
