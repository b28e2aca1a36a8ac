/* The SIMD kernels: wasm SIMD128 intrinsics only (natively through SIMDe).
 *
 * Determinism: only exactly-rounded operations (f32 add/sub/mul/div/sqrt,
 * integer ops, bit ops) in a fixed order, no FMA, no relaxed SIMD, no
 * approximate reciprocals, no libm beyond sqrtf. So this table gives the same
 * bits natively and in wasm. It differs from the reference table only in the
 * order of float summations (vector lanes, several accumulators; for
 * matvec_q8_0, per-lane sums of the scaled block dots); the element-wise
 * kernels (rope, swiglu, add, quantize_q8_0) give the reference's bits
 * exactly.
 *
 * Layout notes: W is row-major, rows(rows) x cols; the matvecs stream it one
 * row at a time (see the matvec section), 4 column accumulators per row for
 * ILP, horizontal sums only at the end. Scalar tails handle sizes that are
 * not multiples of the vector width. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"
#include "kquants.h"
#include "kquants_x4.h"
#include "quants32.h"
#include "simd.h"
#include "types.h"

/* ---- helpers ----------------------------------------------------------- */

static inline float hmax_f32x4(v128_t v) {
    v = wasm_f32x4_pmax(v, wasm_i32x4_shuffle(v, v, 2, 3, 0, 1));
    v = wasm_f32x4_pmax(v, wasm_i32x4_shuffle(v, v, 1, 0, 3, 2));
    return wasm_f32x4_extract_lane(v, 0);
}

/* e^x lane-wise: the exact sequence of operations of doze_expf (expf.c; see
 * there for the method). Keep the two in step. */
static inline v128_t exp_f32x4(v128_t x) {
    const v128_t log2e = wasm_f32x4_splat(0x1.715476p+0f);
    const v128_t round_magic = wasm_f32x4_splat(0x1.8p+23f);
    const v128_t ln2_hi = wasm_f32x4_splat(0x1.62e4p-1f);
    const v128_t ln2_lo = wasm_f32x4_splat(0x1.7f7d1cp-20f);

    /* xc = x < -110 ? -110 : x; xc = 90 < xc ? 90 : xc (NaN passes) */
    v128_t xc = wasm_f32x4_pmax(x, wasm_f32x4_splat(-110.0f));
    xc = wasm_f32x4_pmin(xc, wasm_f32x4_splat(90.0f));

    v128_t t = wasm_f32x4_add(wasm_f32x4_mul(xc, log2e), round_magic);
    v128_t nf = wasm_f32x4_sub(t, round_magic);
    v128_t n = wasm_i32x4_sub(t, round_magic);

    v128_t r = wasm_f32x4_sub(xc, wasm_f32x4_mul(nf, ln2_hi));
    r = wasm_f32x4_sub(r, wasm_f32x4_mul(nf, ln2_lo));
    v128_t r2 = wasm_f32x4_mul(r, r);
    v128_t p = wasm_f32x4_add(wasm_f32x4_mul(wasm_f32x4_splat(0x1.6d1610p-10f), r),
                              wasm_f32x4_splat(0x1.121076p-7f));
    p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(0x1.555516p-5f));
    p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(0x1.5554d8p-3f));
    p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(0x1.000000p-1f));
    v128_t y = wasm_f32x4_add(wasm_f32x4_mul(p, r2), r);
    y = wasm_f32x4_add(y, wasm_f32x4_splat(1.0f));

    v128_t n1 = wasm_i32x4_shr(n, 1);
    v128_t n2 = wasm_i32x4_sub(n, n1);
    v128_t s1 = wasm_i32x4_shl(wasm_i32x4_add(n1, wasm_i32x4_splat(127)), 23);
    v128_t s2 = wasm_i32x4_shl(wasm_i32x4_add(n2, wasm_i32x4_splat(127)), 23);
    v128_t res = wasm_f32x4_mul(wasm_f32x4_mul(y, s1), s2);
    return wasm_v128_bitselect(x, res, wasm_f32x4_ne(x, x));
}

/* out(4) = exp(in(4)) through exp_f32x4: not in kernels.h, exported only so
 * test_kernels can check it against doze_expf bit for bit. */
void doze_simd_expf_x4(float *out, const float *in);
void doze_simd_expf_x4(float *out, const float *in) {
    wasm_v128_store(out, exp_f32x4(wasm_v128_load(in)));
}

/* ---- matvecs ----------------------------------------------------------- */

/* All three matvecs walk W one row at a time, front to back: a single linear
 * read stream. Decode is bound by memory bandwidth, and several rows in
 * flight at once (4 or even 2 streams a row apart) were measured to defeat
 * the hardware prefetcher (f32 32000x288 out of cache: ~7 GB/s with 4 rows,
 * ~25 GB/s with 1, natively and in wasm). Within a row, 4 independent
 * accumulators (16 columns per step) give the ILP; x stays in L1. */

/* y(rows) = W(rows, cols) @ x(cols), W f32 row-major. Per row: columns in
 * steps of 16 into accumulators a0..a3, then steps of 4 into a0, then
 * s = hsum((a0 + a1) + (a2 + a3)), then the scalar tail in column order. */
static void simd_matvec_f32(float *y, const float *w, const float *x, int rows, int cols) {
    const size_t ld = (size_t)cols;
    const int c16 = cols & ~15, c4 = cols & ~3;
    for (int r = 0; r < rows; r++) {
        const float *w0 = w + (size_t)r * ld;
        v128_t a0 = wasm_f32x4_splat(0.0f), a1 = a0, a2 = a0, a3 = a0;
        int c = 0;
        for (; c < c16; c += 16) {
            a0 = wasm_f32x4_add(a0, wasm_f32x4_mul(wasm_v128_load(w0 + c), wasm_v128_load(x + c)));
            a1 = wasm_f32x4_add(a1, wasm_f32x4_mul(wasm_v128_load(w0 + c + 4), wasm_v128_load(x + c + 4)));
            a2 = wasm_f32x4_add(a2, wasm_f32x4_mul(wasm_v128_load(w0 + c + 8), wasm_v128_load(x + c + 8)));
            a3 = wasm_f32x4_add(a3, wasm_f32x4_mul(wasm_v128_load(w0 + c + 12), wasm_v128_load(x + c + 12)));
        }
        for (; c < c4; c += 4)
            a0 = wasm_f32x4_add(a0, wasm_f32x4_mul(wasm_v128_load(w0 + c), wasm_v128_load(x + c)));
        float s = hsum_f32x4(wasm_f32x4_add(wasm_f32x4_add(a0, a1), wasm_f32x4_add(a2, a3)));
        for (; c < cols; c++) s += w0[c] * x[c];
        y[r] = s;
    }
}

/* y(rows) = W(rows, cols) @ x(cols), W f32 in the x4 layout (rows % 4 == 0,
 * cols % 4 == 0; kernels.h). One linear stream: per group of 4 rows, each
 * 64-byte chunk holds the 4 rows' values of 4 columns, so one load of x
 * serves 4 weight vectors. Row r's accumulator lane j sums w[r][4k+j] x[4k+j]
 * over k in order; y[r] = (lane 0 + lane 2) + (lane 1 + lane 3). Two chunks
 * per loop step (the same order). */
static void simd_matvec_f32_x4(float *y, const float *w, const float *x, int rows, int cols) {
    const int c8 = cols & ~7;
    for (int g = 0; g < rows / 4; g++) {
        const float *p = w + (size_t)g * 4u * (size_t)cols;
        v128_t a0 = wasm_f32x4_splat(0.0f), a1 = a0, a2 = a0, a3 = a0;
        int c = 0;
        for (; c < c8; c += 8, p += 32) {
            v128_t xv = wasm_v128_load(x + c);
            a0 = wasm_f32x4_add(a0, wasm_f32x4_mul(wasm_v128_load(p), xv));
            a1 = wasm_f32x4_add(a1, wasm_f32x4_mul(wasm_v128_load(p + 4), xv));
            a2 = wasm_f32x4_add(a2, wasm_f32x4_mul(wasm_v128_load(p + 8), xv));
            a3 = wasm_f32x4_add(a3, wasm_f32x4_mul(wasm_v128_load(p + 12), xv));
            xv = wasm_v128_load(x + c + 4);
            a0 = wasm_f32x4_add(a0, wasm_f32x4_mul(wasm_v128_load(p + 16), xv));
            a1 = wasm_f32x4_add(a1, wasm_f32x4_mul(wasm_v128_load(p + 20), xv));
            a2 = wasm_f32x4_add(a2, wasm_f32x4_mul(wasm_v128_load(p + 24), xv));
            a3 = wasm_f32x4_add(a3, wasm_f32x4_mul(wasm_v128_load(p + 28), xv));
        }
        if (c < cols) {
            v128_t xv = wasm_v128_load(x + c);
            a0 = wasm_f32x4_add(a0, wasm_f32x4_mul(wasm_v128_load(p), xv));
            a1 = wasm_f32x4_add(a1, wasm_f32x4_mul(wasm_v128_load(p + 4), xv));
            a2 = wasm_f32x4_add(a2, wasm_f32x4_mul(wasm_v128_load(p + 8), xv));
            a3 = wasm_f32x4_add(a3, wasm_f32x4_mul(wasm_v128_load(p + 12), xv));
        }
        wasm_v128_store(y + 4 * g, hsum4_f32x4(a0, a1, a2, a3));
    }
}

/* columns of x pre-scaled per pass of simd_matvec_f16 (stack buffer) */
#define F16_CHUNK 2048

/* The halves' sign + exponent + mantissa moved into f32 position, NOT yet
 * rescaled by 2^112: sign-extend to i32, shift left 13 (the sign lands on
 * bits 31..28, exponent+mantissa on 27..13), clear bits 30..28. The f32 with
 * these bits, times 2^112, is the half exactly (see f16hi_to_f32x4; the same
 * bits as its shr-by-3 form) except for inf/nan halves. */
static inline v128_t f16lo_unscaled(v128_t h) {
    return wasm_v128_and(wasm_i32x4_shl(wasm_i32x4_extend_low_i16x8(h), 13),
                         wasm_i32x4_splat((int32_t)0x8fffe000u));
}
static inline v128_t f16hi_unscaled(v128_t h) {
    return wasm_v128_and(wasm_i32x4_shl(wasm_i32x4_extend_high_i16x8(h), 13),
                         wasm_i32x4_splat((int32_t)0x8fffe000u));
}

/* One row of the f16 matvec over columns [c0, c1) (c0 % 16 == 0), the
 * general path: every half widened exactly (inf/nan included) and multiplied
 * by x. Accumulators and order as in simd_matvec_f32. */
static float f16_row_exact(const uint16_t *w0, const float *x, int c0, int c1) {
    v128_t a0 = wasm_f32x4_splat(0.0f), a1 = a0, a2 = a0, a3 = a0;
    int c = c0;
    for (; c + 16 <= c1; c += 16) {
        v128_t l0, h0, l1, h1;
        f16x8_to_f32x4x2(wasm_v128_load(w0 + c), &l0, &h0);
        f16x8_to_f32x4x2(wasm_v128_load(w0 + c + 8), &l1, &h1);
        a0 = wasm_f32x4_add(a0, wasm_f32x4_mul(l0, wasm_v128_load(x + c)));
        a1 = wasm_f32x4_add(a1, wasm_f32x4_mul(h0, wasm_v128_load(x + c + 4)));
        a2 = wasm_f32x4_add(a2, wasm_f32x4_mul(l1, wasm_v128_load(x + c + 8)));
        a3 = wasm_f32x4_add(a3, wasm_f32x4_mul(h1, wasm_v128_load(x + c + 12)));
    }
    for (; c + 4 <= c1; c += 4)
        a0 = wasm_f32x4_add(a0, wasm_f32x4_mul(f16x4_to_f32x4(wasm_u32x4_load16x4(w0 + c)),
                                               wasm_v128_load(x + c)));
    float s = hsum_f32x4(wasm_f32x4_add(wasm_f32x4_add(a0, a1), wasm_f32x4_add(a2, a3)));
    for (; c < c1; c++) s += doze_f16_to_f32(w0[c]) * x[c];
    return s;
}

/* y(rows) = W(rows, cols) @ x(cols), W IEEE half row-major, one row at a
 * time like simd_matvec_f32 (same accumulators, same order of operations).
 *
 * Cheap widening: w * x is computed as w' * (x * 2^112), w' = the half's bits
 * in f32 position (f16lo/hi_unscaled, 3 integer ops per 4 lanes), x * 2^112
 * precomputed once per call. Both products are the same correctly rounded
 * w * x, since scaling by 2^112 is exact for w' (when w' is a subnormal f32
 * too) and for x as long as |x| < 2^16; so the bits equal the exact-widening
 * path (f16_row_exact). That path is taken instead for the whole call when
 * some finite |x| >= 2^16, and for a row holding an inf/nan half (detected
 * by a running i16 max of |h| bits, > 0x7bff; the row is then recomputed).
 * Columns go in chunks of F16_CHUNK (x scaled on the stack), the running
 * sums carried in y across chunks. */
static void simd_matvec_f16(float *y, const uint16_t *w, const float *x, int rows, int cols) {
    const size_t ld = (size_t)cols;
    float xs[F16_CHUNK];
    for (int cc = 0; cc < cols; cc += F16_CHUNK) {
        const int ce = cols - cc < F16_CHUNK ? cols : cc + F16_CHUNK;
        const int n = ce - cc, n16 = n & ~15, n4 = n & ~3;
        /* xs = x * 2^112 on this chunk; big: some finite |x| >= 2^16 */
        const v128_t scale = wasm_f32x4_splat(0x1p112f);
        v128_t big = wasm_i32x4_splat(0);
        int i = 0;
        for (; i < n4; i += 4) {
            v128_t v = wasm_v128_load(x + cc + i), a = wasm_f32x4_abs(v);
            big = wasm_v128_or(big, wasm_v128_and(wasm_f32x4_ge(a, wasm_f32x4_splat(0x1p16f)),
                                                  wasm_f32x4_lt(a, wasm_f32x4_splat(INFINITY))));
            wasm_v128_store(xs + i, wasm_f32x4_mul(v, scale));
        }
        int big_s = wasm_v128_any_true(big);
        for (; i < n; i++) {
            float a = x[cc + i] < 0.0f ? -x[cc + i] : x[cc + i];
            if (a >= 0x1p16f && a < INFINITY) big_s = 1;
            xs[i] = x[cc + i] * 0x1p112f;
        }
        for (int r = 0; r < rows; r++) {
            const uint16_t *w0 = w + (size_t)r * ld + cc;
            float s;
            if (big_s) {
                s = f16_row_exact(w0 - cc, x, cc, ce);
            } else {
                const v128_t mag = wasm_i16x8_splat(0x7fff);
                v128_t a0 = wasm_f32x4_splat(0.0f), a1 = a0, a2 = a0, a3 = a0;
                v128_t hmax = wasm_i16x8_splat(0);
                int c = 0;
                for (; c < n16; c += 16) {
                    v128_t h0 = wasm_v128_load(w0 + c), h1 = wasm_v128_load(w0 + c + 8);
                    hmax = wasm_i16x8_max(hmax, wasm_i16x8_max(wasm_v128_and(h0, mag), wasm_v128_and(h1, mag)));
                    a0 = wasm_f32x4_add(a0, wasm_f32x4_mul(f16lo_unscaled(h0), wasm_v128_load(xs + c)));
                    a1 = wasm_f32x4_add(a1, wasm_f32x4_mul(f16hi_unscaled(h0), wasm_v128_load(xs + c + 4)));
                    a2 = wasm_f32x4_add(a2, wasm_f32x4_mul(f16lo_unscaled(h1), wasm_v128_load(xs + c + 8)));
                    a3 = wasm_f32x4_add(a3, wasm_f32x4_mul(f16hi_unscaled(h1), wasm_v128_load(xs + c + 12)));
                }
                for (; c < n4; c += 4) {
                    v128_t h = wasm_u32x4_load16x4(w0 + c); /* zero-extended: |h| bits in lanes */
                    hmax = wasm_i16x8_max(hmax, wasm_v128_and(h, mag));
                    v128_t wu = wasm_v128_and(wasm_i32x4_shl(wasm_i32x4_shr(wasm_i32x4_shl(h, 16), 16), 13),
                                              wasm_i32x4_splat((int32_t)0x8fffe000u));
                    a0 = wasm_f32x4_add(a0, wasm_f32x4_mul(wu, wasm_v128_load(xs + c)));
                }
                int special = wasm_v128_any_true(wasm_i16x8_gt(hmax, wasm_i16x8_splat(0x7bff)));
                s = hsum_f32x4(wasm_f32x4_add(wasm_f32x4_add(a0, a1), wasm_f32x4_add(a2, a3)));
                for (; c < n; c++) {
                    if ((w0[c] & 0x7c00u) == 0x7c00u) special = 1;
                    s += doze_f16_to_f32(w0[c]) * x[cc + c];
                }
                if (special) s = f16_row_exact(w0 - cc, x, cc, ce);
            }
            y[r] = cc == 0 ? s : y[r] + s;
        }
    }
}

/* y(rows) = W(rows, cols) @ x(cols), W f16 in the x4 layout (kernels.h; no
 * inf/nan halves). Fast path as in simd_matvec_f16: w' (the half's bits in
 * f32 position, 3 integer ops per 4 lanes) times x * 2^112 (scaled as it is
 * loaded, 2 multiplies per 4 rows x 8 columns) is the correctly rounded w * x
 * while every finite |x| < 2^16; otherwise the exact path widens w (w' *
 * 2^112) and multiplies by x itself. Both in matvec_f32_x4's order. */
static void simd_matvec_f16_x4(float *y, const uint16_t *w, const float *x, int rows, int cols) {
    const v128_t k112 = wasm_f32x4_splat(0x1p112f);
    int big = 0;
    {
        v128_t b = wasm_i32x4_splat(0);
        for (int c = 0; c < cols; c += 4) {
            v128_t a = wasm_f32x4_abs(wasm_v128_load(x + c));
            b = wasm_v128_or(b, wasm_v128_and(wasm_f32x4_ge(a, wasm_f32x4_splat(0x1p16f)),
                                              wasm_f32x4_lt(a, wasm_f32x4_splat(INFINITY))));
        }
        big = wasm_v128_any_true(b);
    }
    for (int g = 0; g < rows / 4; g++) {
        const uint16_t *p = w + (size_t)g * 4u * (size_t)cols;
        v128_t a0 = wasm_f32x4_splat(0.0f), a1 = a0, a2 = a0, a3 = a0;
        if (!big) {
            for (int c = 0; c < cols; c += 8, p += 32) {
                const v128_t x0 = wasm_f32x4_mul(wasm_v128_load(x + c), k112);
                const v128_t x1 = wasm_f32x4_mul(wasm_v128_load(x + c + 4), k112);
                v128_t h = wasm_v128_load(p);
                a0 = wasm_f32x4_add(a0, wasm_f32x4_mul(f16lo_unscaled_dup(h), x0));
                a0 = wasm_f32x4_add(a0, wasm_f32x4_mul(f16hi_unscaled_dup(h), x1));
                h = wasm_v128_load(p + 8);
                a1 = wasm_f32x4_add(a1, wasm_f32x4_mul(f16lo_unscaled_dup(h), x0));
                a1 = wasm_f32x4_add(a1, wasm_f32x4_mul(f16hi_unscaled_dup(h), x1));
                h = wasm_v128_load(p + 16);
                a2 = wasm_f32x4_add(a2, wasm_f32x4_mul(f16lo_unscaled_dup(h), x0));
                a2 = wasm_f32x4_add(a2, wasm_f32x4_mul(f16hi_unscaled_dup(h), x1));
                h = wasm_v128_load(p + 24);
                a3 = wasm_f32x4_add(a3, wasm_f32x4_mul(f16lo_unscaled_dup(h), x0));
                a3 = wasm_f32x4_add(a3, wasm_f32x4_mul(f16hi_unscaled_dup(h), x1));
            }
        } else {
            for (int c = 0; c < cols; c += 8, p += 32) {
                const v128_t x0 = wasm_v128_load(x + c), x1 = wasm_v128_load(x + c + 4);
                v128_t *acc[4] = {&a0, &a1, &a2, &a3};
                for (int r = 0; r < 4; r++) {
                    v128_t h = wasm_v128_load(p + 8 * r);
                    *acc[r] = wasm_f32x4_add(*acc[r], wasm_f32x4_mul(wasm_f32x4_mul(f16lo_unscaled_dup(h), k112), x0));
                    *acc[r] = wasm_f32x4_add(*acc[r], wasm_f32x4_mul(wasm_f32x4_mul(f16hi_unscaled_dup(h), k112), x1));
                }
            }
        }
        wasm_v128_store(y + 4 * g, hsum4_f32x4(a0, a1, a2, a3));
    }
}

/* 8 int8 at p sign-extended to i16x8: in wasm one i16x8.load8x8 (V8: one
 * pmovsxbw from memory); natively load64_zero + extend, so that SIMDe on
 * plain SSE2 gets movq + unpack + shift. The same values either way. */
static inline v128_t load_i8x8(const int8_t *p) {
#if defined(__wasm_simd128__)
    return wasm_i16x8_load8x8(p);
#else
    return wasm_i16x8_extend_low_i8x16(wasm_v128_load64_zero(p));
#endif
}

/* i32x4 whose lane sum is the dot of the 32 int8 of w with those of x, x
 * given sign-extended to i16 as x[0..3] (8 values each). */
static inline v128_t q8_dot_i32x4(const int8_t *wq, const v128_t *x) {
    v128_t s0 = wasm_i32x4_dot_i16x8(load_i8x8(wq), x[0]);
    v128_t s1 = wasm_i32x4_dot_i16x8(load_i8x8(wq + 8), x[1]);
    v128_t s2 = wasm_i32x4_dot_i16x8(load_i8x8(wq + 16), x[2]);
    v128_t s3 = wasm_i32x4_dot_i16x8(load_i8x8(wq + 24), x[3]);
    return wasm_i32x4_add(wasm_i32x4_add(s0, s1), wasm_i32x4_add(s2, s3));
}

/* blocks of x prepared at once (stack: 64 + 8 bytes per block) */
#define Q8_CHUNK 256

/* ds[0..n) (rounded up to 4) = f16 scale of block b of w0 (34-byte stride,
 * gathered 4 at a time into the high halves of u32 lanes by load16_lane,
 * converted exactly by f16hi_to_f32x4) * dx[b]. Past n, the lanes repeat
 * block n-1 (no read beyond the row); dx must hold n rounded up to 4.
 * Returns nonzero iff some ds is inf or nan. */
static inline int q8_row_scales(float *ds, const doze_block_q8_0 *w0, const float *dx, int n) {
    const v128_t e = wasm_i32x4_splat(0x7f800000);
    v128_t bad = wasm_i32x4_splat(0);
    for (int b = 0; b < n; b += 4) {
        const int l = n - 1;
        v128_t h = wasm_i32x4_splat(0);
        h = wasm_v128_load16_lane(&w0[b].d, h, 1);
        h = wasm_v128_load16_lane(&w0[b + 1 < l ? b + 1 : l].d, h, 3);
        h = wasm_v128_load16_lane(&w0[b + 2 < l ? b + 2 : l].d, h, 5);
        h = wasm_v128_load16_lane(&w0[b + 3 < l ? b + 3 : l].d, h, 7);
        v128_t d = wasm_f32x4_mul(f16hi_to_f32x4(h, f16x8_infnan(h)), wasm_v128_load(dx + b));
        bad = wasm_v128_or(bad, wasm_i32x4_eq(wasm_v128_and(d, e), e));
        wasm_v128_store(ds + b, d);
    }
    return wasm_v128_any_true(bad);
}

/* y(rows) = W(rows, cols/32 blocks) @ xq(cols/32 blocks). x is prepared once
 * per chunk of blocks (quants sign-extended to i16, scales to f32). Per row:
 * its block scales times x's into ds (vectorized, q8_row_scales), then per
 * block the exact int32 dot as an i32x4 of partial sums (int8 sign-extended
 * to i16, products summed pairwise), converted to f32, times splat(ds[b]),
 * added into one f32x4 accumulator; one horizontal sum per row (and chunk).
 * Not the reference's summation order (it sums block by block): equal to it
 * within ~1e-6 of sum |w*x|, and deterministic (exact-rounded ops only).
 * A row with an inf/nan scale product takes the reference's path instead
 * (per block: horizontal int sum, then s += isum * d in block order), since
 * a lane whose partial dot is 0 would turn inf * 0 into nan.
 * One block per loop step, pointer-walked: V8 allocates registers for this
 * without spills; wider unrolls and several rows per pass measured slower in
 * wasm. One row at a time: one linear read stream. */
static void simd_matvec_q8_0(float *y, const void *w, const void *xq, int rows, int cols) {
    const doze_block_q8_0 *wb = w;
    const doze_block_q8_0 *xb = xq;
    const int nb = cols / DOZE_QK8_0;
    float dxs[Q8_CHUNK], ds[Q8_CHUNK];
    v128_t xi[Q8_CHUNK * 4];
    for (int bc = 0; bc < nb; bc += Q8_CHUNK) {
        const int n = nb - bc < Q8_CHUNK ? nb - bc : Q8_CHUNK;
        for (int b = 0; b < n; b++) {
            const int8_t *xs = xb[bc + b].qs;
            dxs[b] = doze_f16_to_f32(xb[bc + b].d);
            xi[4 * b] = load_i8x8(xs);
            xi[4 * b + 1] = load_i8x8(xs + 8);
            xi[4 * b + 2] = load_i8x8(xs + 16);
            xi[4 * b + 3] = load_i8x8(xs + 24);
        }
        for (int b = n; b & 3; b++) dxs[b] = 0.0f;
        for (int r = 0; r < rows; r++) {
            const doze_block_q8_0 *p = wb + (size_t)r * (size_t)nb + bc, *pe = p + n;
            const v128_t *xp = xi;
            const float *dp = ds;
            if (q8_row_scales(ds, p, dxs, n)) {
                float s = bc == 0 ? 0.0f : y[r];
                for (int b = 0; b < n; b++) s += (float)hsum_i32x4(q8_dot_i32x4(p[b].qs, xi + 4 * b)) * ds[b];
                y[r] = s;
                continue;
            }
            v128_t acc = wasm_f32x4_splat(0.0f);
#if defined(__clang__)
#pragma clang loop unroll(disable)
#endif
            for (; p != pe; p++, xp += 4, dp++)
                acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(q8_dot_i32x4(p->qs, xp)),
                                                         wasm_v128_load32_splat(dp)));
            const float s = hsum_f32x4(acc);
            y[r] = bc == 0 ? s : y[r] + s;
        }
    }
}

/* ---- q4_0, the x4 layouts, matmul ------------------------------------- */

/* i32x4 whose lane sum is the dot of the 32 nibbles of a q4_0 payload q
 * (unsigned, 0..15: the -8 is taken off by the caller) with x's quants,
 * given as i16 in the order prep_x(..., q4 = 1) makes: the payload read as
 * 8 u16 lanes k = byte 2k | byte 2k+1 << 8 holds elements 2k (bits 0-3),
 * 2k+16 (4-7), 2k+1 (8-11), 2k+17 (12-15): shifts and masks isolate them
 * without any widening, and x is permuted to match. */
static inline v128_t q4_dot_u_i32x4(v128_t q, const v128_t *x) {
    const v128_t m = wasm_i16x8_splat(0x0f);
    v128_t s0 = wasm_i32x4_dot_i16x8(wasm_v128_and(q, m), x[0]);
    v128_t s1 = wasm_i32x4_dot_i16x8(wasm_v128_and(wasm_u16x8_shr(q, 4), m), x[1]);
    v128_t s2 = wasm_i32x4_dot_i16x8(wasm_v128_and(wasm_u16x8_shr(q, 8), m), x[2]);
    v128_t s3 = wasm_i32x4_dot_i16x8(wasm_u16x8_shr(q, 12), x[3]);
    return wasm_i32x4_add(wasm_i32x4_add(s0, s1), wasm_i32x4_add(s2, s3));
}

/* x prepared for a chunk of n blocks: quants sign-extended to i16 (4 per
 * block; q4: permuted as x[0,2,..,14], x[16,18,..,30], x[1,3,..,15],
 * x[17,..,31] for q4_dot_u_i32x4), scales as f32, and 8 * (sum of the
 * block's quants) (the q4 -8). */
static void prep_x(const doze_block_q8_0 *xb, int n, v128_t *xi, float *dxs, int32_t *corr, int q4) {
    for (int b = 0; b < n; b++) {
        const int8_t *xs = xb[b].qs;
        dxs[b] = doze_f16_to_f32(xb[b].d);
        xi[4 * b] = load_i8x8(xs);
        xi[4 * b + 1] = load_i8x8(xs + 8);
        xi[4 * b + 2] = load_i8x8(xs + 16);
        xi[4 * b + 3] = load_i8x8(xs + 24);
        v128_t s = wasm_i16x8_add(wasm_i16x8_add(xi[4 * b], xi[4 * b + 1]),
                                  wasm_i16x8_add(xi[4 * b + 2], xi[4 * b + 3]));
        corr[b] = 8 * hsum_i32x4(wasm_i32x4_extadd_pairwise_i16x8(s));
        if (q4) {
            v128_t n0 = xi[4 * b], n1 = xi[4 * b + 1], n2 = xi[4 * b + 2], n3 = xi[4 * b + 3];
            xi[4 * b] = wasm_i16x8_shuffle(n0, n1, 0, 2, 4, 6, 8, 10, 12, 14);
            xi[4 * b + 1] = wasm_i16x8_shuffle(n2, n3, 0, 2, 4, 6, 8, 10, 12, 14);
            xi[4 * b + 2] = wasm_i16x8_shuffle(n0, n1, 1, 3, 5, 7, 9, 11, 13, 15);
            xi[4 * b + 3] = wasm_i16x8_shuffle(n2, n3, 1, 3, 5, 7, 9, 11, 13, 15);
        }
    }
}

/* the 4 f16 scales at d (4 consecutive halves) as f32x4, exactly */
static inline v128_t f16x4_at(const uint16_t *d) { return f16x4_to_f32x4(wasm_u32x4_load16x4(d)); }

/* y(rows) = W(rows, cols/32 q4_0 blocks, x4 layout) @ xq. Per group of 4
 * rows and block: 4 payload dots, their 4 horizontal sums at once
 * (hsum4_i32x4), minus 8 * sum(x) (exact int32 = the reference's isum),
 * converted, times the 4 rows' dw * dx, added to the group's f32x4: lane r
 * is row r's sum in block order, the reference's very operations, so the
 * same bits. One linear read stream. */
static void simd_matvec_q4_0_x4(float *y, const void *w, const void *xq, int rows, int cols) {
    const doze_block_q4_0x4 *wb = w;
    const doze_block_q8_0 *xb = xq;
    const int nb = cols / DOZE_QK4_0;
    float dxs[Q8_CHUNK];
    int32_t corr[Q8_CHUNK];
    v128_t xi[Q8_CHUNK * 4];
    for (int bc = 0; bc < nb; bc += Q8_CHUNK) {
        const int n = nb - bc < Q8_CHUNK ? nb - bc : Q8_CHUNK;
        prep_x(xb + bc, n, xi, dxs, corr, 1);
        for (int g = 0; g < rows / 4; g++) {
            const doze_block_q4_0x4 *p = wb + (size_t)g * (size_t)nb + bc;
            v128_t acc = x4_acc_start(y, bc, g);
            for (int b = 0; b < n; b++, p++) {
                const v128_t *x = xi + 4 * b;
                v128_t ds = wasm_f32x4_mul(f16x4_at(p->d), wasm_f32x4_splat(dxs[b]));
                v128_t i = hsum4_i32x4(q4_dot_u_i32x4(wasm_v128_load(p->qs[0]), x),
                                       q4_dot_u_i32x4(wasm_v128_load(p->qs[1]), x),
                                       q4_dot_u_i32x4(wasm_v128_load(p->qs[2]), x),
                                       q4_dot_u_i32x4(wasm_v128_load(p->qs[3]), x));
                i = wasm_i32x4_sub(i, wasm_i32x4_splat(corr[b]));
                acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(i), ds));
            }
            wasm_v128_store(y + 4 * g, acc);
        }
    }
}

/* the same for q8_0 payloads in the x4 layout; the 4 rows' scales must be
 * finite (the loader keeps a q8_0 tensor with an inf/nan scale row-major),
 * which allows simd_matvec_f16's cheap widening: d' (the half's bits in f32
 * position, 3 integer ops) times dx * 2^112 is the correctly rounded d * dx
 * (|dx| < 2^16 as a half; an inf/nan dx gives what d * dx gives). */
static void simd_matvec_q8_0_x4(float *y, const void *w, const void *xq, int rows, int cols) {
    const doze_block_q8_0x4 *wb = w;
    const doze_block_q8_0 *xb = xq;
    const int nb = cols / DOZE_QK8_0;
    const v128_t mask = wasm_i32x4_splat((int32_t)0x8fffe000u);
    float dxs[Q8_CHUNK];
    int32_t corr[Q8_CHUNK];
    v128_t xi[Q8_CHUNK * 4];
    for (int bc = 0; bc < nb; bc += Q8_CHUNK) {
        const int n = nb - bc < Q8_CHUNK ? nb - bc : Q8_CHUNK;
        prep_x(xb + bc, n, xi, dxs, corr, 0);
        for (int b = 0; b < n; b++) dxs[b] *= 0x1p112f;
        for (int g = 0; g < rows / 4; g++) {
            const doze_block_q8_0x4 *p = wb + (size_t)g * (size_t)nb + bc;
            v128_t acc = x4_acc_start(y, bc, g);
            for (int b = 0; b < n; b++, p++) {
                const v128_t *x = xi + 4 * b;
                v128_t ds = wasm_f32x4_mul(wasm_v128_and(wasm_i32x4_shl(wasm_i32x4_load16x4(p->d), 13), mask),
                                           wasm_v128_load32_splat(dxs + b));
                v128_t i = hsum4_i32x4(q8_dot_i32x4(p->qs[0], x), q8_dot_i32x4(p->qs[1], x),
                                       q8_dot_i32x4(p->qs[2], x), q8_dot_i32x4(p->qs[3], x));
                acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(i), ds));
            }
            wasm_v128_store(y + 4 * g, acc);
        }
    }
}

/* Two tokens at once over the x4 layouts (the prefill's matmul): each
 * group's weights are loaded and widened (q8) or split into nibbles (q4)
 * once for both tokens, and its 4 f16 scales converted once; each token then
 * gets exactly the single-token kernel's operations (exact int32 dots, the
 * same float ops in block order), so the same bits as
 * simd_matvec_q8_0_x4 / simd_matvec_q4_0_x4. x is prepared per chunk of
 * Q8_CHUNK2 blocks (two tokens' worth on the stack). */
#define Q8_CHUNK2 128

/* the 4 i16x8 of a q8 payload (32 int8), sign-extended */
static inline void q8_widen(const int8_t *wq, v128_t *v) {
    v[0] = load_i8x8(wq);
    v[1] = load_i8x8(wq + 8);
    v[2] = load_i8x8(wq + 16);
    v[3] = load_i8x8(wq + 24);
}

/* the 4 i16x8 of a q4 payload's nibbles in q4_dot_u_i32x4's order */
static inline void q4_split(v128_t q, v128_t *v) {
    const v128_t m = wasm_i16x8_splat(0x0f);
    v[0] = wasm_v128_and(q, m);
    v[1] = wasm_v128_and(wasm_u16x8_shr(q, 4), m);
    v[2] = wasm_v128_and(wasm_u16x8_shr(q, 8), m);
    v[3] = wasm_u16x8_shr(q, 12);
}

static inline v128_t dot4_i32x4(const v128_t *w, const v128_t *x) {
    return wasm_i32x4_add(wasm_i32x4_add(wasm_i32x4_dot_i16x8(w[0], x[0]), wasm_i32x4_dot_i16x8(w[1], x[1])),
                          wasm_i32x4_add(wasm_i32x4_dot_i16x8(w[2], x[2]), wasm_i32x4_dot_i16x8(w[3], x[3])));
}

static void simd_matvec2_qx4(int q4, float *ya, float *yb, const void *w, const void *xqa, const void *xqb,
                             int rows, int cols) {
    const int nb = cols / DOZE_QK8_0;
    const size_t group_bytes = q4 ? sizeof(doze_block_q4_0x4) : sizeof(doze_block_q8_0x4);
    float dxa[Q8_CHUNK2], dxb[Q8_CHUNK2];
    int32_t ca[Q8_CHUNK2], cb[Q8_CHUNK2];
    v128_t xa[Q8_CHUNK2 * 4], xb[Q8_CHUNK2 * 4];
    for (int bc = 0; bc < nb; bc += Q8_CHUNK2) {
        const int n = nb - bc < Q8_CHUNK2 ? nb - bc : Q8_CHUNK2;
        prep_x((const doze_block_q8_0 *)xqa + bc, n, xa, dxa, ca, q4);
        prep_x((const doze_block_q8_0 *)xqb + bc, n, xb, dxb, cb, q4);
        for (int g = 0; g < rows / 4; g++) {
            const uint8_t *p = (const uint8_t *)w + ((size_t)g * (size_t)nb + (size_t)bc) * group_bytes;
            v128_t acc_a = x4_acc_start(ya, bc, g);
            v128_t acc_b = x4_acc_start(yb, bc, g);
#if defined(__wasm_atomics__) && defined(__clang__)
            /* V8 compiles this loop differently in a module on shared
             * memory (doze-mt.wasm); unrolled twice here, its prefill runs
             * faster (q8_0 +14% at one thread, +22% at two; q4_0 +27%,
             * +35%), while in doze.wasm the same unrolling costs 6% */
#pragma clang loop unroll_count(2)
#endif
            for (int b = 0; b < n; b++, p += group_bytes) {
                const v128_t *x0 = xa + 4 * b, *x1 = xb + 4 * b;
                v128_t pa[4], pb[4], wv[4];
                const uint16_t *d;
                for (int r = 0; r < 4; r++) {
                    if (q4) q4_split(wasm_v128_load(((const doze_block_q4_0x4 *)p)->qs[r]), wv);
                    else q8_widen(((const doze_block_q8_0x4 *)p)->qs[r], wv);
                    pa[r] = dot4_i32x4(wv, x0);
                    pb[r] = dot4_i32x4(wv, x1);
                }
                d = q4 ? ((const doze_block_q4_0x4 *)p)->d : ((const doze_block_q8_0x4 *)p)->d;
                const v128_t dw = f16x4_at(d);
                v128_t ia = hsum4_i32x4(pa[0], pa[1], pa[2], pa[3]);
                v128_t ib = hsum4_i32x4(pb[0], pb[1], pb[2], pb[3]);
                if (q4) {
                    ia = wasm_i32x4_sub(ia, wasm_i32x4_splat(ca[b]));
                    ib = wasm_i32x4_sub(ib, wasm_i32x4_splat(cb[b]));
                }
                acc_a = wasm_f32x4_add(acc_a, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(ia),
                                                             wasm_f32x4_mul(dw, wasm_f32x4_splat(dxa[b]))));
                acc_b = wasm_f32x4_add(acc_b, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(ib),
                                                             wasm_f32x4_mul(dw, wasm_f32x4_splat(dxb[b]))));
            }
            wasm_v128_store(ya + 4 * g, acc_a);
            wasm_v128_store(yb + 4 * g, acc_b);
        }
    }
}

/* q4_0 in the file's row-major layout (used where rows % 4 != 0 or views
 * are not groups of 4): row by row, block by block, the reference's order. */
static void simd_matvec_q4_0(float *y, const void *w, const void *xq, int rows, int cols) {
    const doze_block_q4_0 *wb = w;
    const doze_block_q8_0 *xb = xq;
    const int nb = cols / DOZE_QK4_0;
    float dxs[Q8_CHUNK];
    int32_t corr[Q8_CHUNK];
    v128_t xi[Q8_CHUNK * 4];
    for (int bc = 0; bc < nb; bc += Q8_CHUNK) {
        const int n = nb - bc < Q8_CHUNK ? nb - bc : Q8_CHUNK;
        prep_x(xb + bc, n, xi, dxs, corr, 1);
        for (int r = 0; r < rows; r++) {
            const doze_block_q4_0 *p = wb + (size_t)r * (size_t)nb + bc;
            float s = bc == 0 ? 0.0f : y[r];
            for (int b = 0; b < n; b++) {
                int32_t i = hsum_i32x4(q4_dot_u_i32x4(wasm_v128_load(p[b].qs), xi + 4 * b)) - corr[b];
                s += (float)i * (doze_f16_to_f32(p[b].d) * dxs[b]);
            }
            y[r] = s;
        }
    }
}

/* rows per tile of the matmuls: a tile's weights (<= ~24 KB) stay in L1
 * while every token passes over them; a multiple of 4 (x4 groups) */
static int tile_rows(size_t row_bytes, int rows) {
    size_t t = (24u * 1024u / (row_bytes ? row_bytes : 1)) & ~(size_t)3;
    if (t < 4) t = 4;
    return (int)(t < (size_t)rows ? t : (size_t)rows);
}

/* two tokens at once over the f32 x4 layout (simd.h): simd_matvec_f32_x4's
 * operations for each token in its order, so the same bits */
static void simd_matvec2_f32_x4(float *ya, float *yb, const float *w, const float *xa, const float *xb, int rows,
                                int cols) {
    f32_x4_matvec2(f32x4_mul_add, ya, yb, w, xa, xb, rows, cols);
}

/* Y(n, rows) = X(n, cols) @ W^T over an f32 tile (x4 layout: tokens in
 * pairs through simd_matvec2_f32_x4, an odd last one alone) */
static void f32_x4_tile_tokens(float *y, int ldy, const float *wt, const float *x, int ldx, int n, int nr,
                               int cols) {
    int t = 0;
    for (; t + 1 < n; t += 2)
        simd_matvec2_f32_x4(y + (size_t)t * ldy, y + (size_t)(t + 1) * ldy, wt, x + (size_t)t * ldx,
                            x + (size_t)(t + 1) * ldx, nr, cols);
    if (t < n) simd_matvec_f32_x4(y + (size_t)t * ldy, wt, x + (size_t)t * ldx, nr, cols);
}

/* Y(n, rows) = X(n, cols) @ W^T: W in tiles of rows, each tile read from
 * memory once and applied to every token (so each token's numbers are the
 * matvec's bits). */
static void simd_matmul_f32(int layout, float *y, int ldy, const float *w, const float *x, int ldx, int n,
                            int rows, int cols) {
    const int tr = tile_rows((size_t)cols * 4u, rows);
    for (int r0 = 0; r0 < rows; r0 += tr) {
        const int nr = rows - r0 < tr ? rows - r0 : tr;
        const float *wt = w + (size_t)r0 * (size_t)cols;
        if (layout) {
            f32_x4_tile_tokens(y + r0, ldy, wt, x, ldx, n, nr, cols);
            continue;
        }
        for (int t = 0; t < n; t++) simd_matvec_f32(y + (size_t)t * ldy + r0, wt, x + (size_t)t * ldx, nr, cols);
    }
}

/* f32 values of an f16 x4 tile (nr rows, no inf/nan halves), exactly, in
 * the f32 x4 layout: per 8 columns the f16 chunk holds each row's 8 halves,
 * the f32 layout two chunks of 4 columns x 4 rows. */
static void f16_x4_tile_to_f32_x4(float *out, const uint16_t *w, int nr, int cols) {
    const v128_t k112 = wasm_f32x4_splat(0x1p112f);
    for (int g = 0; g < nr / 4; g++) {
        const uint16_t *p = w + (size_t)g * 4u * (size_t)cols;
        float *o = out + (size_t)g * 4u * (size_t)cols;
        for (int c = 0; c < cols; c += 8, p += 32, o += 32)
            for (int r = 0; r < 4; r++) {
                const v128_t h = wasm_v128_load(p + 8 * r);
                wasm_v128_store(o + 4 * r, wasm_f32x4_mul(f16lo_unscaled_dup(h), k112));
                wasm_v128_store(o + 16 + 4 * r, wasm_f32x4_mul(f16hi_unscaled_dup(h), k112));
            }
    }
}

/* f32 scratch for one widened f16 tile (on the stack) */
#define F16_TILE_FLOATS 16384

/* kernels.h */
void doze_matmul_tiles(size_t tile_row_bytes, size_t row_bytes, doze_matvec_fn mv, doze_matvec2_fn mv2, float *y,
                       int ldy, const void *w, const void *x, size_t ldx, int n, int rows, int cols) {
    const int tr = tile_rows(tile_row_bytes, rows);
    for (int r0 = 0; r0 < rows; r0 += tr) {
        const int nr = rows - r0 < tr ? rows - r0 : tr;
        const uint8_t *wt = (const uint8_t *)w + (size_t)r0 * row_bytes;
        int t = 0;
        if (mv2 && nr % 4 == 0)
            for (; t + 1 < n; t += 2)
                mv2(y + (size_t)t * ldy + r0, y + (size_t)(t + 1) * ldy + r0, wt, (const uint8_t *)x + (size_t)t * ldx,
                    (const uint8_t *)x + (size_t)(t + 1) * ldx, nr, cols);
        for (; t < n; t++) mv(y + (size_t)t * ldy + r0, wt, (const uint8_t *)x + (size_t)t * ldx, nr, cols);
    }
}

/* ---- the per-type product rows ------------------------------------------- */

static void f32_mv0(float *y, const void *w, const void *x, int rows, int cols) { simd_matvec_f32(y, w, x, rows, cols); }
static void f32_mv1(float *y, const void *w, const void *x, int rows, int cols) {
    simd_matvec_f32_x4(y, w, x, rows, cols);
}
static void f32_mm0(float *y, int ldy, const void *w, const void *x, size_t ldx, int n, int rows, int cols) {
    simd_matmul_f32(0, y, ldy, w, x, (int)(ldx / sizeof(float)), n, rows, cols);
}
static void f32_mm1(float *y, int ldy, const void *w, const void *x, size_t ldx, int n, int rows, int cols) {
    simd_matmul_f32(1, y, ldy, w, x, (int)(ldx / sizeof(float)), n, rows, cols);
}
const doze_products doze_simd_f32 = {{f32_mv0, f32_mv1}, {f32_mm0, f32_mm1}};

static void f16_mv0(float *y, const void *w, const void *x, int rows, int cols) { simd_matvec_f16(y, w, x, rows, cols); }
static void f16_mv1(float *y, const void *w, const void *x, int rows, int cols) {
    simd_matvec_f16_x4(y, w, x, rows, cols);
}
static void f16_mm0(float *y, int ldy, const void *w, const void *x, size_t ldx, int n, int rows, int cols) {
    doze_matmul_tiles((size_t)cols * 2u, (size_t)cols * 2u, f16_mv0, NULL, y, ldy, w, x, ldx, n, rows, cols);
}
/* kernels.h */
void doze_f16_x4_matmul(doze_matvec_fn f16_mv, doze_matvec2_fn f32_mv2, doze_matvec_fn f32_mv, float *y, int ldy,
                        const void *w, const void *x, size_t ldx, int n, int rows, int cols) {
    const size_t row_bytes = (size_t)cols * 2u;
    const int tr = tile_rows((size_t)cols * 4u, rows);
    for (int r0 = 0; r0 < rows; r0 += tr) {
        const int nr = rows - r0 < tr ? rows - r0 : tr;
        const uint8_t *wt = (const uint8_t *)w + (size_t)r0 * row_bytes;
        int t = 0;
        if (n > 1 && (size_t)nr * (size_t)cols <= F16_TILE_FLOATS) {
            float tile[F16_TILE_FLOATS];
            f16_x4_tile_to_f32_x4(tile, (const uint16_t *)wt, nr, cols);
            for (; t + 1 < n; t += 2)
                f32_mv2(y + (size_t)t * ldy + r0, y + (size_t)(t + 1) * ldy + r0, tile,
                        (const uint8_t *)x + (size_t)t * ldx, (const uint8_t *)x + (size_t)(t + 1) * ldx, nr, cols);
            if (t < n) f32_mv(y + (size_t)t * ldy + r0, tile, (const uint8_t *)x + (size_t)t * ldx, nr, cols);
            continue;
        }
        for (; t < n; t++) f16_mv(y + (size_t)t * ldy + r0, wt, (const uint8_t *)x + (size_t)t * ldx, nr, cols);
    }
}

static void f32_mv2(float *ya, float *yb, const void *w, const void *xa, const void *xb, int rows, int cols) {
    simd_matvec2_f32_x4(ya, yb, w, xa, xb, rows, cols);
}
static void f16_mm1(float *y, int ldy, const void *w, const void *x, size_t ldx, int n, int rows, int cols) {
    doze_f16_x4_matmul(f16_mv1, f32_mv2, f32_mv1, y, ldy, w, x, ldx, n, rows, cols);
}
const doze_products doze_simd_f16 = {{f16_mv0, f16_mv1}, {f16_mm0, f16_mm1}};

static void q8_0_mv2(float *ya, float *yb, const void *w, const void *xa, const void *xb, int rows, int cols) {
    simd_matvec2_qx4(0, ya, yb, w, xa, xb, rows, cols);
}
static void q8_0_mm0(float *y, int ldy, const void *w, const void *x, size_t ldx, int n, int rows, int cols) {
    const size_t rb = (size_t)(cols / DOZE_QK8_0) * sizeof(doze_block_q8_0);
    doze_matmul_tiles(rb, rb, simd_matvec_q8_0, NULL, y, ldy, w, x, ldx, n, rows, cols);
}
static void q8_0_mm1(float *y, int ldy, const void *w, const void *x, size_t ldx, int n, int rows, int cols) {
    const size_t rb = (size_t)(cols / DOZE_QK8_0) * sizeof(doze_block_q8_0);
    doze_matmul_tiles(rb, rb, simd_matvec_q8_0_x4, q8_0_mv2, y, ldy, w, x, ldx, n, rows, cols);
}
const doze_products doze_simd_q8_0 = {{simd_matvec_q8_0, simd_matvec_q8_0_x4}, {q8_0_mm0, q8_0_mm1}};

static void q4_0_mv2(float *ya, float *yb, const void *w, const void *xa, const void *xb, int rows, int cols) {
    simd_matvec2_qx4(1, ya, yb, w, xa, xb, rows, cols);
}
static void q4_0_mm0(float *y, int ldy, const void *w, const void *x, size_t ldx, int n, int rows, int cols) {
    const size_t rb = (size_t)(cols / DOZE_QK4_0) * sizeof(doze_block_q4_0);
    doze_matmul_tiles(rb, rb, simd_matvec_q4_0, NULL, y, ldy, w, x, ldx, n, rows, cols);
}
static void q4_0_mm1(float *y, int ldy, const void *w, const void *x, size_t ldx, int n, int rows, int cols) {
    const size_t rb = (size_t)(cols / DOZE_QK4_0) * sizeof(doze_block_q4_0);
    doze_matmul_tiles(rb, rb, simd_matvec_q4_0_x4, q4_0_mv2, y, ldy, w, x, ldx, n, rows, cols);
}
const doze_products doze_simd_q4_0 = {{simd_matvec_q4_0, simd_matvec_q4_0_x4}, {q4_0_mm0, q4_0_mm1}};

/* ---- K-quants and BF16 ----------------------------------------------------
 * x as q8_0 blocks, one per 32-value sub-block (kernels_ref.c has the
 * definition). Per super-block the 8 sub-blocks' exact int32 dots as two
 * i32x4 (lane = sub-block), the integer scale products, then per lane the
 * reference's float operations for that x block; lanes are summed at the end
 * of the row (the only difference from the reference: the order of the sum
 * over blocks). One row at a time: one linear read stream. */

/* x for a chunk of n blocks as prep_x(q4 = 1) makes it, plus each block's
 * two 16-value quant sums xs[2b] (values 0..15), xs[2b + 1] (16..31) */
static void prep_kx(const doze_block_q8_0 *xb, int n, v128_t *xi, float *dxs, int32_t *corr, int32_t *xs) {
    prep_x(xb, n, xi, dxs, corr, 1);
    for (int b = 0; b < n; b++) {
        /* xi[0] + xi[2]: values 0..15 (evens, odds); xi[1] + xi[3]: 16..31 */
        v128_t a = wasm_i32x4_extadd_pairwise_i16x8(wasm_i16x8_add(xi[4 * b], xi[4 * b + 2]));
        v128_t c = wasm_i32x4_extadd_pairwise_i16x8(wasm_i16x8_add(xi[4 * b + 1], xi[4 * b + 3]));
        xs[2 * b] = hsum_i32x4(a);
        xs[2 * b + 1] = hsum_i32x4(c);
    }
}

/* prep_x(q4 = 0) plus k * the sums of each block's values 0..15 (xsa) and
 * 16..31 (xsb) */
static void prep_x16(const doze_block_q8_0 *xb, int n, int k, v128_t *xi, float *dxs, int32_t *xsa, int32_t *xsb) {
    int32_t corr[Q8_CHUNK];
    prep_x(xb, n, xi, dxs, corr, 0);
    for (int b = 0; b < n; b++) {
        xsa[b] = k * hsum_i32x4(wasm_i32x4_extadd_pairwise_i16x8(wasm_i16x8_add(xi[4 * b], xi[4 * b + 1])));
        xsb[b] = k * hsum_i32x4(wasm_i32x4_extadd_pairwise_i16x8(wasm_i16x8_add(xi[4 * b + 2], xi[4 * b + 3])));
    }
}

/* the same as i32x4 pairs (lanes = sub-blocks 0..3, 4..7) */
static inline void kq_scales_mins(const uint8_t *q, v128_t *sc_lo, v128_t *sc_hi, v128_t *m_lo, v128_t *m_hi) {
    const v128_t v = kq_scale_bytes(q);
    const v128_t lo = wasm_u16x8_extend_low_u8x16(v), hi = wasm_u16x8_extend_high_u8x16(v);
    *sc_lo = wasm_u32x4_extend_low_u16x8(lo);
    *sc_hi = wasm_u32x4_extend_high_u16x8(lo);
    *m_lo = wasm_u32x4_extend_low_u16x8(hi);
    *m_hi = wasm_u32x4_extend_high_u16x8(hi);
}

/* Q4_K (five_bits 0) and Q5_K (1), row-major. */
static inline __attribute__((always_inline)) void simd_matvec_kq(int five_bits, float *y, const void *w, const void *xq, int rows, int cols) {
    const doze_block_q8_0 *xb = xq;
    const int nb = cols / DOZE_QK8_0, nsb = cols / DOZE_QK_K;
    const size_t bb = five_bits ? sizeof(doze_block_q5_K) : sizeof(doze_block_q4_K);
    const v128_t m4 = wasm_i16x8_splat(0x0f), b4 = wasm_i16x8_splat(0x10);
    float dxs[Q8_CHUNK];
    int32_t corr[Q8_CHUNK], xs[2 * Q8_CHUNK], xsum[Q8_CHUNK];
    v128_t xi[Q8_CHUNK * 4];
    for (int bc = 0; bc < nb; bc += Q8_CHUNK) { /* Q8_CHUNK: whole super-blocks */
        const int n = nb - bc < Q8_CHUNK ? nb - bc : Q8_CHUNK;
        prep_kx(xb + bc, n, xi, dxs, corr, xs);
        for (int b = 0; b < n; b++) xsum[b] = xs[2 * b] + xs[2 * b + 1];
        const int i0 = bc / 8, i1 = i0 + n / 8;
        for (int r = 0; r < rows; r++) {
            const uint8_t *row = (const uint8_t *)w + (size_t)r * (size_t)nsb * bb;
            v128_t acc = wasm_f32x4_splat(0.0f);
            for (int i = i0; i < i1; i++) {
                const uint8_t *blk = row + (size_t)i * bb;
                const uint8_t *scales, *qs, *qh = NULL;
                uint16_t dh, mh;
                if (five_bits) {
                    const doze_block_q5_K *p = (const doze_block_q5_K *)blk;
                    scales = p->scales, qs = p->qs, qh = p->qh, dh = p->d, mh = p->dmin;
                } else {
                    const doze_block_q4_K *p = (const doze_block_q4_K *)blk;
                    scales = p->scales, qs = p->qs, dh = p->d, mh = p->dmin;
                }
                const int bl = (i - i0) * 8; /* first x block of the super-block in the chunk */
                v128_t P[8];
                v128_t h0 = wasm_i32x4_splat(0), h1 = h0;
                if (qh) {
                    h0 = wasm_v128_load(qh);
                    h1 = wasm_v128_load(qh + 16);
                }
                for (int k = 0; k < 4; k++) {
                    const v128_t v0 = wasm_v128_load(qs + 32 * k), v1 = wasm_v128_load(qs + 32 * k + 16);
                    const v128_t *xl = xi + 4 * (bl + 2 * k), *xh = xl + 4;
                    v128_t e0 = wasm_v128_and(v0, m4), e1 = wasm_v128_and(v1, m4);
                    v128_t o0 = wasm_v128_and(wasm_u16x8_shr(v0, 8), m4), o1 = wasm_v128_and(wasm_u16x8_shr(v1, 8), m4);
                    v128_t E0 = wasm_v128_and(wasm_u16x8_shr(v0, 4), m4), E1 = wasm_v128_and(wasm_u16x8_shr(v1, 4), m4);
                    v128_t O0 = wasm_u16x8_shr(v0, 12), O1 = wasm_u16x8_shr(v1, 12);
                    if (qh) {
                        /* the fifth bit of value l of sub-block j is bit j of
                         * qh[l]: in a u16 lane, bit j (even value), j + 8 (odd) */
                        const v128_t a0 = wasm_u16x8_shr(h0, 2 * k), a1 = wasm_u16x8_shr(h1, 2 * k);
                        const v128_t c0 = wasm_u16x8_shr(h0, 2 * k + 1), c1 = wasm_u16x8_shr(h1, 2 * k + 1);
                        e0 = wasm_v128_or(e0, wasm_v128_and(wasm_i16x8_shl(a0, 4), b4));
                        e1 = wasm_v128_or(e1, wasm_v128_and(wasm_i16x8_shl(a1, 4), b4));
                        o0 = wasm_v128_or(o0, wasm_v128_and(wasm_u16x8_shr(a0, 4), b4));
                        o1 = wasm_v128_or(o1, wasm_v128_and(wasm_u16x8_shr(a1, 4), b4));
                        E0 = wasm_v128_or(E0, wasm_v128_and(wasm_i16x8_shl(c0, 4), b4));
                        E1 = wasm_v128_or(E1, wasm_v128_and(wasm_i16x8_shl(c1, 4), b4));
                        O0 = wasm_v128_or(O0, wasm_v128_and(wasm_u16x8_shr(c0, 4), b4));
                        O1 = wasm_v128_or(O1, wasm_v128_and(wasm_u16x8_shr(c1, 4), b4));
                    }
                    P[2 * k] = wasm_i32x4_add(
                        wasm_i32x4_add(wasm_i32x4_dot_i16x8(e0, xl[0]), wasm_i32x4_dot_i16x8(e1, xl[1])),
                        wasm_i32x4_add(wasm_i32x4_dot_i16x8(o0, xl[2]), wasm_i32x4_dot_i16x8(o1, xl[3])));
                    P[2 * k + 1] = wasm_i32x4_add(
                        wasm_i32x4_add(wasm_i32x4_dot_i16x8(E0, xh[0]), wasm_i32x4_dot_i16x8(E1, xh[1])),
                        wasm_i32x4_add(wasm_i32x4_dot_i16x8(O0, xh[2]), wasm_i32x4_dot_i16x8(O1, xh[3])));
                }
                v128_t sc_lo, sc_hi, mm_lo, mm_hi;
                kq_scales_mins(scales, &sc_lo, &sc_hi, &mm_lo, &mm_hi);
                /* d and dmin widened together, exactly (f16x4_to_f32x4) */
                const v128_t dd = f16x4_to_f32x4(wasm_i32x4_make((int32_t)dh, (int32_t)mh, 0, 0));
                const v128_t d = wasm_i32x4_shuffle(dd, dd, 0, 0, 0, 0), dm = wasm_i32x4_shuffle(dd, dd, 1, 1, 1, 1);
                const v128_t A0 = wasm_i32x4_mul(hsum4_i32x4(P[0], P[1], P[2], P[3]), sc_lo);
                const v128_t A1 = wasm_i32x4_mul(hsum4_i32x4(P[4], P[5], P[6], P[7]), sc_hi);
                const v128_t B0 = wasm_i32x4_mul(wasm_v128_load(xsum + bl), mm_lo);
                const v128_t B1 = wasm_i32x4_mul(wasm_v128_load(xsum + bl + 4), mm_hi);
                const v128_t f0 = wasm_f32x4_sub(wasm_f32x4_mul(d, wasm_f32x4_convert_i32x4(A0)),
                                                 wasm_f32x4_mul(dm, wasm_f32x4_convert_i32x4(B0)));
                const v128_t f1 = wasm_f32x4_sub(wasm_f32x4_mul(d, wasm_f32x4_convert_i32x4(A1)),
                                                 wasm_f32x4_mul(dm, wasm_f32x4_convert_i32x4(B1)));
                acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_v128_load(dxs + bl), f0));
                acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_v128_load(dxs + bl + 4), f1));
            }
            const float s = hsum_f32x4(acc);
            y[r] = bc == 0 ? s : y[r] + s;
        }
    }
}

static void simd_matvec_q4_K(float *y, const void *w, const void *xq, int rows, int cols) {
    simd_matvec_kq(0, y, w, xq, rows, cols);
}
static void simd_matvec_q5_K(float *y, const void *w, const void *xq, int rows, int cols) {
    simd_matvec_kq(1, y, w, xq, rows, cols);
}

/* Q4_K in the K-quant x4 layout (rows in groups of 4, the group's 4
 * blocks i side by side, repacked at load): each x block is loaded once for
 * 4 rows, the 4 rows' sub-block dots are summed horizontally at once (lane =
 * row), and lane r then gets row r's reference operations in the
 * reference's order (per x block in block order): the same bits as the
 * reference. */
static void simd_matvec_q4_K_x4(float *y, const void *w, const void *xq, int rows, int cols) {
    const doze_block_q8_0 *xb = xq;
    const int nb = cols / DOZE_QK8_0, nsb = cols / DOZE_QK_K;
    const size_t bb = sizeof(doze_block_q4_K), qs_at = offsetof(doze_block_q4_K, qs);
    const v128_t m4 = wasm_i16x8_splat(0x0f);
    float dxs[Q8_CHUNK];
    int32_t corr[Q8_CHUNK], xs[2 * Q8_CHUNK], xsum[Q8_CHUNK];
    v128_t xi[Q8_CHUNK * 4];
    for (int bc = 0; bc < nb; bc += Q8_CHUNK) {
        const int n = nb - bc < Q8_CHUNK ? nb - bc : Q8_CHUNK;
        prep_kx(xb + bc, n, xi, dxs, corr, xs);
        for (int b = 0; b < n; b++) xsum[b] = xs[2 * b] + xs[2 * b + 1];
        const int i0 = bc / 8, i1 = i0 + n / 8;
        for (int g = 0; g < rows / 4; g++) {
            v128_t acc = x4_acc_start(y, bc, g);
            for (int i = i0; i < i1; i++) {
                const uint8_t *b4r = x4_super_blocks(w, g, nsb, i, bb);
                const int bl = (i - i0) * 8;
                v128_t I[8]; /* sub-block j's dots, lane = row */
                for (int k = 0; k < 4; k++) {
                    const v128_t *xl = xi + 4 * (bl + 2 * k), *xh = xl + 4;
                    v128_t Pl[4], Ph[4];
                    for (int r = 0; r < 4; r++) {
                        const uint8_t *qs = b4r + (size_t)r * bb + qs_at + 32 * (size_t)k;
                        const v128_t v0 = wasm_v128_load(qs), v1 = wasm_v128_load(qs + 16);
                        const v128_t e0 = wasm_v128_and(v0, m4), e1 = wasm_v128_and(v1, m4);
                        const v128_t o0 = wasm_v128_and(wasm_u16x8_shr(v0, 8), m4), o1 = wasm_v128_and(wasm_u16x8_shr(v1, 8), m4);
                        const v128_t E0 = wasm_v128_and(wasm_u16x8_shr(v0, 4), m4), E1 = wasm_v128_and(wasm_u16x8_shr(v1, 4), m4);
                        const v128_t O0 = wasm_u16x8_shr(v0, 12), O1 = wasm_u16x8_shr(v1, 12);
                        Pl[r] = wasm_i32x4_add(
                            wasm_i32x4_add(wasm_i32x4_dot_i16x8(e0, xl[0]), wasm_i32x4_dot_i16x8(e1, xl[1])),
                            wasm_i32x4_add(wasm_i32x4_dot_i16x8(o0, xl[2]), wasm_i32x4_dot_i16x8(o1, xl[3])));
                        Ph[r] = wasm_i32x4_add(
                            wasm_i32x4_add(wasm_i32x4_dot_i16x8(E0, xh[0]), wasm_i32x4_dot_i16x8(E1, xh[1])),
                            wasm_i32x4_add(wasm_i32x4_dot_i16x8(O0, xh[2]), wasm_i32x4_dot_i16x8(O1, xh[3])));
                    }
                    I[2 * k] = hsum4_i32x4(Pl[0], Pl[1], Pl[2], Pl[3]);
                    I[2 * k + 1] = hsum4_i32x4(Ph[0], Ph[1], Ph[2], Ph[3]);
                }
                acc = kq_x4_block(acc, b4r, bb, I, xsum + bl, dxs + bl);
            }
            wasm_v128_store(y + 4 * g, acc);
        }
    }
}

/* Q5_K in the K-quant x4 layout for NT tokens (1, or 2 for the prefill's
 * tiles), byte-wise: per row and sub-block pair k, code l of sub-block 2k
 * (2k + 1) is the low (high) nibble of qs byte l ORed with bit 2k (2k + 1)
 * of qh[l] moved to bit 4 (kq_bit_to_4), 16 codes a vector in element
 * order, widened once and dotted with every token's x (prep_x16: element
 * order). 4-6 ops per 16 codes where the u16 even/odd form (Q4_K's) took 3
 * per 8 for the fifth bits alone. Then, per token, kq_x4_block: the
 * reference's float operations in its order, so its bits. */
static inline __attribute__((always_inline)) void q5_K_x4_tokens(int nt, float *const *y, const void *w,
                                                                  const void *const *xq, int rows, int cols) {
    enum { CH = Q8_CHUNK / 2 };
    const int nb = cols / DOZE_QK8_0, nsb = cols / DOZE_QK_K;
    const size_t bb = sizeof(doze_block_q5_K);
    const size_t qs_at = offsetof(doze_block_q5_K, qs), qh_at = offsetof(doze_block_q5_K, qh);
    const v128_t m4 = wasm_i8x16_splat(0x0f);
    float dxs[2][CH];
    int32_t xsa[CH], xsb[CH], xsum[2][CH];
    v128_t xi[2][CH * 4];
    for (int bc = 0; bc < nb; bc += CH) {
        const int n = nb - bc < CH ? nb - bc : CH;
        for (int t = 0; t < nt; t++) {
            prep_x16((const doze_block_q8_0 *)xq[t] + bc, n, 1, xi[t], dxs[t], xsa, xsb);
            for (int b = 0; b < n; b++) xsum[t][b] = xsa[b] + xsb[b];
        }
        const int i0 = bc / 8, i1 = i0 + n / 8;
        for (int g = 0; g < rows / 4; g++) {
            v128_t acc[2];
            for (int t = 0; t < nt; t++) acc[t] = x4_acc_start(y[t], bc, g);
            for (int i = i0; i < i1; i++) {
                const uint8_t *b4r = x4_super_blocks(w, g, nsb, i, bb);
                const int bl = (i - i0) * 8;
                v128_t I[2][8]; /* sub-block j's dots, lane = row */
#if defined(__clang__)
#pragma clang loop unroll(full) /* kq_bit_to_4's shifts are picked by k */
#endif
                for (int k = 0; k < 4; k++) {
                    v128_t Pl[2][4], Ph[2][4];
                    for (int r = 0; r < 4; r++) {
                        const uint8_t *qs = b4r + (size_t)r * bb + qs_at + 32 * (size_t)k;
                        const uint8_t *qh = b4r + (size_t)r * bb + qh_at;
                        const v128_t v0 = wasm_v128_load(qs), v1 = wasm_v128_load(qs + 16);
                        const v128_t h0 = wasm_v128_load(qh), h1 = wasm_v128_load(qh + 16);
                        const v128_t c0 = wasm_v128_or(wasm_v128_and(v0, m4), kq_bit_to_4(h0, 2 * k));
                        const v128_t c1 = wasm_v128_or(wasm_v128_and(v1, m4), kq_bit_to_4(h1, 2 * k));
                        const v128_t d0 = wasm_v128_or(wasm_u8x16_shr(v0, 4), kq_bit_to_4(h0, 2 * k + 1));
                        const v128_t d1 = wasm_v128_or(wasm_u8x16_shr(v1, 4), kq_bit_to_4(h1, 2 * k + 1));
                        const v128_t cw[4] = {wasm_u16x8_extend_low_u8x16(c0), wasm_u16x8_extend_high_u8x16(c0),
                                              wasm_u16x8_extend_low_u8x16(c1), wasm_u16x8_extend_high_u8x16(c1)};
                        const v128_t dw[4] = {wasm_u16x8_extend_low_u8x16(d0), wasm_u16x8_extend_high_u8x16(d0),
                                              wasm_u16x8_extend_low_u8x16(d1), wasm_u16x8_extend_high_u8x16(d1)};
                        for (int t = 0; t < nt; t++) {
                            const v128_t *xl = xi[t] + 4 * (bl + 2 * k);
                            Pl[t][r] = dot4_i32x4(cw, xl);
                            Ph[t][r] = dot4_i32x4(dw, xl + 4);
                        }
                    }
                    for (int t = 0; t < nt; t++) {
                        I[t][2 * k] = hsum4_i32x4(Pl[t][0], Pl[t][1], Pl[t][2], Pl[t][3]);
                        I[t][2 * k + 1] = hsum4_i32x4(Ph[t][0], Ph[t][1], Ph[t][2], Ph[t][3]);
                    }
                }
                for (int t = 0; t < nt; t++) acc[t] = kq_x4_block(acc[t], b4r, bb, I[t], xsum[t] + bl, dxs[t] + bl);
            }
            for (int t = 0; t < nt; t++) wasm_v128_store(y[t] + 4 * g, acc[t]);
        }
    }
}

DOZE_TOKEN_PRODUCTS(simd_matvec_q5_K_x4, simd_matvec2_q5_K_x4, q5_K_x4_tokens, )

/* Q6_K, row-major. Per half super-block (4 x blocks): the 6-bit codes
 * (0..63, unsigned) of each quarter as even/odd u16 lanes, dotted with x;
 * per x block A = sc_a * (sum_a q x - 32 xs_a) + sc_b * (sum_b q x - 32 xs_b)
 * (exact), then (float)A * (d * dx) per lane. */
static void simd_matvec_q6_K(float *y, const void *w, const void *xq, int rows, int cols) {
    const doze_block_q6_K *wb = w;
    const doze_block_q8_0 *xb = xq;
    const int nb = cols / DOZE_QK8_0, nsb = cols / DOZE_QK_K;
    const v128_t m4 = wasm_i16x8_splat(0x0f), m30 = wasm_i16x8_splat(0x30);
    float dxs[Q8_CHUNK];
    int32_t corr[Q8_CHUNK], xs[2 * Q8_CHUNK], xsa[Q8_CHUNK], xsb[Q8_CHUNK];
    v128_t xi[Q8_CHUNK * 4];
    for (int bc = 0; bc < nb; bc += Q8_CHUNK) {
        const int n = nb - bc < Q8_CHUNK ? nb - bc : Q8_CHUNK;
        prep_kx(xb + bc, n, xi, dxs, corr, xs);
        for (int b = 0; b < n; b++) {
            xsa[b] = 32 * xs[2 * b];
            xsb[b] = 32 * xs[2 * b + 1];
        }
        const int i0 = bc / 8, i1 = i0 + n / 8;
        for (int r = 0; r < rows; r++) {
            const doze_block_q6_K *row = wb + (size_t)r * (size_t)nsb;
            v128_t acc = wasm_f32x4_splat(0.0f);
            for (int i = i0; i < i1; i++) {
                const doze_block_q6_K *p = row + i;
                const v128_t d = wasm_f32x4_splat(doze_f16_to_f32(p->d));
                /* the 16 scales as i32: groups 2t (a) and 2t+1 (b) of each half */
                const v128_t s16 = wasm_i16x8_extend_low_i8x16(wasm_v128_load64_zero(p->scales));
                const v128_t s16b = wasm_i16x8_extend_low_i8x16(wasm_v128_load64_zero(p->scales + 8));
                for (int half = 0; half < 2; half++) {
                    const uint8_t *ql = p->ql + 64 * half, *qh = p->qh + 32 * half;
                    const v128_t L0 = wasm_v128_load(ql), L1 = wasm_v128_load(ql + 16);
                    const v128_t L2 = wasm_v128_load(ql + 32), L3 = wasm_v128_load(ql + 48);
                    const v128_t H0 = wasm_v128_load(qh), H1 = wasm_v128_load(qh + 16);
                    const int bl = (i - i0) * 8 + 4 * half;
                    v128_t Pa[4], Pb[4];
                    for (int t = 0; t < 4; t++) {
                        const v128_t la = t & 1 ? L2 : L0, lb = t & 1 ? L3 : L1;
                        const int ns = t < 2 ? 0 : 4;
                        const v128_t ha = wasm_u16x8_shr(H0, 2 * t), hb = wasm_u16x8_shr(H1, 2 * t);
                        const v128_t ea = wasm_v128_or(wasm_v128_and(wasm_u16x8_shr(la, ns), m4),
                                                       wasm_v128_and(wasm_i16x8_shl(ha, 4), m30));
                        const v128_t oa = wasm_v128_or(wasm_v128_and(wasm_u16x8_shr(la, ns + 8), m4),
                                                       wasm_v128_and(wasm_u16x8_shr(ha, 4), m30));
                        const v128_t eb = wasm_v128_or(wasm_v128_and(wasm_u16x8_shr(lb, ns), m4),
                                                       wasm_v128_and(wasm_i16x8_shl(hb, 4), m30));
                        const v128_t ob = wasm_v128_or(wasm_v128_and(wasm_u16x8_shr(lb, ns + 8), m4),
                                                       wasm_v128_and(wasm_u16x8_shr(hb, 4), m30));
                        const v128_t *x = xi + 4 * (bl + t);
                        Pa[t] = wasm_i32x4_add(wasm_i32x4_dot_i16x8(ea, x[0]), wasm_i32x4_dot_i16x8(oa, x[2]));
                        Pb[t] = wasm_i32x4_add(wasm_i32x4_dot_i16x8(eb, x[1]), wasm_i32x4_dot_i16x8(ob, x[3]));
                    }
                    const v128_t sh = half ? s16b : s16; /* i16: a0 b0 a1 b1 a2 b2 a3 b3 */
                    const v128_t se = wasm_i32x4_extend_low_i16x8(wasm_i16x8_shuffle(sh, sh, 0, 2, 4, 6, 0, 2, 4, 6));
                    const v128_t so = wasm_i32x4_extend_low_i16x8(wasm_i16x8_shuffle(sh, sh, 1, 3, 5, 7, 1, 3, 5, 7));
                    const v128_t va = wasm_i32x4_sub(hsum4_i32x4(Pa[0], Pa[1], Pa[2], Pa[3]), wasm_v128_load(xsa + bl));
                    const v128_t vb = wasm_i32x4_sub(hsum4_i32x4(Pb[0], Pb[1], Pb[2], Pb[3]), wasm_v128_load(xsb + bl));
                    const v128_t A = wasm_i32x4_add(wasm_i32x4_mul(va, se), wasm_i32x4_mul(vb, so));
                    acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(A),
                                                             wasm_f32x4_mul(d, wasm_v128_load(dxs + bl))));
                }
            }
            const float s = hsum_f32x4(acc);
            y[r] = bc == 0 ? s : y[r] + s;
        }
    }
}

/* the dot (as an i32x4 to sum) of 16 codes widened to i16 (c[0], c[1])
 * with 16 x (i16) */
static inline v128_t q6_dot16(const v128_t *c, const v128_t *x) {
    return wasm_i32x4_add(wasm_i32x4_dot_i16x8(c[0], x[0]), wasm_i32x4_dot_i16x8(c[1], x[1]));
}

/* 16 codes (bytes) widened to i16 */
static inline void q6_widen(v128_t c, v128_t *w) {
    w[0] = wasm_u16x8_extend_low_u8x16(c);
    w[1] = wasm_u16x8_extend_high_u8x16(c);
}

/* Q6_K in the K-quant x4 layout for NT tokens (1, or 2 for the prefill's
 * tiles): per quarter of a half super-block (one x block), each row's 32
 * codes built byte-wise (q6_codes), widened once and dotted with every
 * token's x in element order, the 4 rows' group dots summed horizontally at
 * once (lane = row), then per lane row r's reference operations in the
 * reference's order: the same bits as the reference for every token. */
static inline __attribute__((always_inline)) void q6_K_x4_tokens(int nt, float *const *y, const void *w,
                                                                  const void *const *xq, int rows, int cols) {
    enum { CH = Q8_CHUNK / 2 };
    const int nb = cols / DOZE_QK8_0, nsb = cols / DOZE_QK_K;
    const size_t bb = sizeof(doze_block_q6_K);
    float dxs[2][CH];
    int32_t xsa[2][CH], xsb[2][CH];
    v128_t xi[2][CH * 4];
    for (int bc = 0; bc < nb; bc += CH) {
        const int n = nb - bc < CH ? nb - bc : CH;
        for (int k = 0; k < nt; k++)
            prep_x16((const doze_block_q8_0 *)xq[k] + bc, n, 32, xi[k], dxs[k], xsa[k], xsb[k]); /* the codes' -32 */
        const int i0 = bc / 8, i1 = i0 + n / 8;
        for (int g = 0; g < rows / 4; g++) {
            v128_t acc[2];
            for (int k = 0; k < nt; k++) acc[k] = x4_acc_start(y[k], bc, g);
            for (int i = i0; i < i1; i++) {
                const uint8_t *b4r = x4_super_blocks(w, g, nsb, i, bb);
                v128_t T[4], d;
                q6_x4_scales(b4r, T, &d);
                for (int half = 0; half < 2; half++) {
                    const int bl = (i - i0) * 8 + 4 * half;
#if defined(__clang__)
#pragma clang loop unroll(full)
#endif
                    for (int t = 0; t < 4; t++) {
                        v128_t Pa[2][4], Pb[2][4];
                        for (int r = 0; r < 4; r++) {
                            const uint8_t *ql = b4r + (size_t)r * bb + 64 * half + 32 * (t & 1);
                            const uint8_t *qh = b4r + (size_t)r * bb + offsetof(doze_block_q6_K, qh) + 32 * half;
                            v128_t ca[2], cb[2];
                            q6_widen(q6_codes(wasm_v128_load(ql), wasm_v128_load(qh), t), ca);
                            q6_widen(q6_codes(wasm_v128_load(ql + 16), wasm_v128_load(qh + 16), t), cb);
                            for (int k = 0; k < nt; k++) {
                                const v128_t *x = xi[k] + 4 * (bl + t);
                                Pa[k][r] = q6_dot16(ca, x);
                                Pb[k][r] = q6_dot16(cb, x + 2);
                            }
                        }
                        for (int k = 0; k < nt; k++)
                            acc[k] = q6_x4_quarter(acc[k], T, d, half, t, hsum4_i32x4(Pa[k][0], Pa[k][1], Pa[k][2], Pa[k][3]),
                                                   hsum4_i32x4(Pb[k][0], Pb[k][1], Pb[k][2], Pb[k][3]),
                                                   xsa[k][bl + t], xsb[k][bl + t], dxs[k] + bl + t);
                    }
                }
            }
            for (int k = 0; k < nt; k++) wasm_v128_store(y[k] + 4 * g, acc[k]);
        }
    }
}

DOZE_TOKEN_PRODUCTS(simd_matvec_q6_K_x4, simd_matvec2_q6_K_x4, q6_K_x4_tokens, )

/* ---- Q2_K, Q3_K, IQ4_XS, row-major --------------------------------------
 * x in element order (prep_x(q4 = 0)); per x block the exact int32 dots of
 * its two 16-value groups (Q2_K, Q3_K) or its sub-block (IQ4_XS) as lanes
 * of i32x4 (4 x blocks at a time), the integer scale products, then per lane
 * kernels_ref.c's float operations for that block; lanes are summed at the
 * end of the row. */

/* i32x4 pair whose lane sums are the dots of 32 codes (u8, elements 0..15
 * in c0, 16..31 in c1) with x block x: values 0..15 (*pa) and 16..31 (*pb) */
static inline void dot_u8_halves(v128_t c0, v128_t c1, const v128_t *x, v128_t *pa, v128_t *pb) {
    *pa = wasm_i32x4_add(wasm_i32x4_dot_i16x8(wasm_u16x8_extend_low_u8x16(c0), x[0]),
                         wasm_i32x4_dot_i16x8(wasm_u16x8_extend_high_u8x16(c0), x[1]));
    *pb = wasm_i32x4_add(wasm_i32x4_dot_i16x8(wasm_u16x8_extend_low_u8x16(c1), x[2]),
                         wasm_i32x4_dot_i16x8(wasm_u16x8_extend_high_u8x16(c1), x[3]));
}

/* Q2_K (q3 0) and Q3_K (q3 1) */
static inline __attribute__((always_inline)) void k23_tokens(int q3, int nt, float *const *y, const void *w,
                                                             const void *const *xq, int rows, int cols) {
    enum { CH = Q8_CHUNK / 2 }; /* whole super-blocks */
    const int nb = cols / DOZE_QK8_0, nsb = cols / DOZE_QK_K;
    float dxs[2][CH];
    int32_t xsa[2][CH], xsb[2][CH];
    v128_t xi[2][CH * 4];
    const v128_t *xp[2] = {xi[0], xi[1]};
    const int32_t *ap[2] = {xsa[0], xsa[1]}, *bp[2] = {xsb[0], xsb[1]};
    const float *dp[2] = {dxs[0], dxs[1]};
    for (int bc = 0; bc < nb; bc += CH) {
        const int n = nb - bc < CH ? nb - bc : CH;
        for (int k = 0; k < nt; k++)
            prep_x16((const doze_block_q8_0 *)xq[k] + bc, n, q3 ? 4 : 1, xi[k], dxs[k], xsa[k], xsb[k]);
        k23_rows(q3, nt, y, w, rows, nsb, bc, bc / 8, bc / 8 + n / 8, xp, 4, ap, bp, dp, dot_u8_halves);
    }
}

DOZE_TOKEN_PRODUCTS(simd_matvec_q2_K, simd_matvec2_q2_K, k23_tokens, 0, )
DOZE_TOKEN_PRODUCTS(simd_matvec_q3_K, simd_matvec2_q3_K, k23_tokens, 1, )

/* the 32 codes of a 16-byte IQ4 payload (low nibbles: values 0..15, high:
 * 16..31) as their grid values (a table swizzle of the nibbles; grid: the
 * 16 values) widened to i16, in x's element order */
static inline void iq4_codes(const uint8_t *q, v128_t grid, v128_t *c) {
    const v128_t v = wasm_v128_load(q);
    const v128_t lo = wasm_i8x16_swizzle(grid, wasm_v128_and(v, wasm_i8x16_splat(0x0f)));
    const v128_t hi = wasm_i8x16_swizzle(grid, wasm_u8x16_shr(v, 4));
    c[0] = wasm_i16x8_extend_low_i8x16(lo);
    c[1] = wasm_i16x8_extend_high_i8x16(lo);
    c[2] = wasm_i16x8_extend_low_i8x16(hi);
    c[3] = wasm_i16x8_extend_high_i8x16(hi);
}

/* i32x4 whose lane sum is the dot of an IQ4 sub-block's 32 grid values
 * with x in element order */
static inline v128_t iq4_dot(const uint8_t *q, const v128_t *x, v128_t grid) {
    v128_t c[4];
    iq4_codes(q, grid, c);
    return dot4_i32x4(c, x);
}

/* IQ4_XS, row-major */
static void simd_matvec_iq4_xs(float *y, const void *w, const void *xq, int rows, int cols) {
    const doze_block_iq4_xs *wb = w;
    const doze_block_q8_0 *xb = xq;
    const int nb = cols / DOZE_QK8_0, nsb = cols / DOZE_QK_K;
    const v128_t grid = wasm_v128_load(doze_iq4nl_values);
    float dxs[Q8_CHUNK];
    int32_t corr[Q8_CHUNK];
    v128_t xi[Q8_CHUNK * 4];
    for (int bc = 0; bc < nb; bc += Q8_CHUNK) {
        const int n = nb - bc < Q8_CHUNK ? nb - bc : Q8_CHUNK;
        prep_x(xb + bc, n, xi, dxs, corr, 0);
        const int i0 = bc / 8, i1 = i0 + n / 8;
        for (int r = 0; r < rows; r++) {
            const doze_block_iq4_xs *row = wb + (size_t)r * (size_t)nsb;
            v128_t acc = wasm_f32x4_splat(0.0f);
            for (int i = i0; i < i1; i++) {
                const doze_block_iq4_xs *p = row + i;
                const v128_t d = wasm_f32x4_splat(doze_f16_to_f32(p->d));
                v128_t P[8];
                for (int j = 0; j < 8; j++) P[j] = iq4_dot(p->qs + 16 * j, xi + 4 * ((i - i0) * 8 + j), grid);
                for (int h = 0; h < 2; h++) {
                    const int bl = (i - i0) * 8 + 4 * h;
                    const v128_t ls = wasm_i32x4_make(doze_iq4_xs_scale(p, 4 * h), doze_iq4_xs_scale(p, 4 * h + 1),
                                                      doze_iq4_xs_scale(p, 4 * h + 2), doze_iq4_xs_scale(p, 4 * h + 3));
                    const v128_t A = wasm_i32x4_mul(hsum4_i32x4(P[4 * h], P[4 * h + 1], P[4 * h + 2], P[4 * h + 3]), ls);
                    acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(A),
                                                             wasm_f32x4_mul(d, wasm_v128_load(dxs + bl))));
                }
            }
            const float s = hsum_f32x4(acc);
            y[r] = bc == 0 ? s : y[r] + s;
        }
    }
}

/* IQ4_XS in the K-quant x4 layout (4 rows' super-block i side by side,
 * repacked at load): each x block is loaded once for 4 rows, their dots
 * summed horizontally at once (lane = row), and lane r then gets row r's
 * reference operations in the reference's order: the same bits as the
 * reference. (Q2_K and Q3_K stay row-major: with 4 rows' codes, high bits
 * and 16 group scales live at once, the x4 form ran at half the row-major
 * speed in V8.) */

/* the f16 at byte `at` of each of the 4 rows' blocks (bb bytes apart) as
 * f32x4, exactly: lane = row */
static inline v128_t x4_f16(const uint8_t *b4r, size_t bb, size_t at) {
    uint16_t h[4];
    for (int r = 0; r < 4; r++) memcpy(&h[r], b4r + (size_t)r * bb + at, 2);
    return f16x4_to_f32x4(wasm_i32x4_make(h[0], h[1], h[2], h[3]));
}

/* IQ4_XS in the K-quant x4 layout for NT tokens (2: the prefill's tiles):
 * each row's codes looked up once for both tokens, each token the one-token
 * kernel's operations in its order (its bits) */
static inline __attribute__((always_inline)) void iq4_xs_x4_tokens(int nt, float *const *y, const void *w,
                                                                    const void *const *xq, int rows, int cols) {
    enum { CH = Q8_CHUNK / 2 };
    const int nb = cols / DOZE_QK8_0, nsb = cols / DOZE_QK_K;
    const size_t bb = sizeof(doze_block_iq4_xs);
    const v128_t grid = wasm_v128_load(doze_iq4nl_values);
    float dxs[2][CH];
    int32_t corr[CH];
    v128_t xi[2][CH * 4];
    for (int bc = 0; bc < nb; bc += CH) {
        const int n = nb - bc < CH ? nb - bc : CH;
        for (int t = 0; t < nt; t++) prep_x((const doze_block_q8_0 *)xq[t] + bc, n, xi[t], dxs[t], corr, 0);
        const int i0 = bc / 8, i1 = i0 + n / 8;
        for (int g = 0; g < rows / 4; g++) {
            v128_t acc[2];
            for (int t = 0; t < nt; t++) acc[t] = x4_acc_start(y[t], bc, g);
            for (int i = i0; i < i1; i++) {
                const uint8_t *b4r = x4_super_blocks(w, g, nsb, i, bb);
                const doze_block_iq4_xs *p[4];
                for (int r = 0; r < 4; r++) p[r] = (const doze_block_iq4_xs *)(b4r + (size_t)r * bb);
                const v128_t d = x4_f16(b4r, bb, offsetof(doze_block_iq4_xs, d));
                for (int j = 0; j < 8; j++) {
                    const int bl = (i - i0) * 8 + j;
                    v128_t P[2][4];
                    for (int r = 0; r < 4; r++) {
                        v128_t c[4];
                        iq4_codes(p[r]->qs + 16 * j, grid, c);
                        for (int t = 0; t < nt; t++) P[t][r] = dot4_i32x4(c, xi[t] + 4 * bl);
                    }
                    const v128_t ls = wasm_i32x4_make(doze_iq4_xs_scale(p[0], j), doze_iq4_xs_scale(p[1], j),
                                                      doze_iq4_xs_scale(p[2], j), doze_iq4_xs_scale(p[3], j));
                    for (int t = 0; t < nt; t++) {
                        const v128_t I = hsum4_i32x4(P[t][0], P[t][1], P[t][2], P[t][3]);
                        acc[t] = wasm_f32x4_add(acc[t], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(wasm_i32x4_mul(I, ls)),
                                                                       wasm_f32x4_mul(d, wasm_v128_load32_splat(dxs[t] + bl))));
                    }
                }
            }
            for (int t = 0; t < nt; t++) wasm_v128_store(y[t] + 4 * g, acc[t]);
        }
    }
}

/* one token: the loop written for it (through iq4_xs_x4_tokens it decoded
 * 0.89x as fast in V8) */
static void simd_matvec_iq4_xs_x4(float *y, const void *w, const void *xq, int rows, int cols) {
    const doze_block_q8_0 *xb = xq;
    const int nb = cols / DOZE_QK8_0, nsb = cols / DOZE_QK_K;
    const size_t bb = sizeof(doze_block_iq4_xs);
    const v128_t grid = wasm_v128_load(doze_iq4nl_values);
    float dxs[Q8_CHUNK];
    int32_t corr[Q8_CHUNK];
    v128_t xi[Q8_CHUNK * 4];
    for (int bc = 0; bc < nb; bc += Q8_CHUNK) {
        const int n = nb - bc < Q8_CHUNK ? nb - bc : Q8_CHUNK;
        prep_x(xb + bc, n, xi, dxs, corr, 0);
        const int i0 = bc / 8, i1 = i0 + n / 8;
        for (int g = 0; g < rows / 4; g++) {
            v128_t acc = x4_acc_start(y, bc, g);
            for (int i = i0; i < i1; i++) {
                const uint8_t *b4r = x4_super_blocks(w, g, nsb, i, bb);
                const doze_block_iq4_xs *p0 = (const doze_block_iq4_xs *)b4r, *p1 = (const doze_block_iq4_xs *)(b4r + bb),
                                        *p2 = (const doze_block_iq4_xs *)(b4r + 2 * bb),
                                        *p3 = (const doze_block_iq4_xs *)(b4r + 3 * bb);
                const v128_t d = x4_f16(b4r, bb, offsetof(doze_block_iq4_xs, d));
                for (int j = 0; j < 8; j++) {
                    const int bl = (i - i0) * 8 + j;
                    const v128_t *x = xi + 4 * bl;
                    const v128_t I = hsum4_i32x4(iq4_dot(p0->qs + 16 * j, x, grid), iq4_dot(p1->qs + 16 * j, x, grid),
                                                 iq4_dot(p2->qs + 16 * j, x, grid), iq4_dot(p3->qs + 16 * j, x, grid));
                    const v128_t ls = wasm_i32x4_make(doze_iq4_xs_scale(p0, j), doze_iq4_xs_scale(p1, j),
                                                      doze_iq4_xs_scale(p2, j), doze_iq4_xs_scale(p3, j));
                    acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(wasm_i32x4_mul(I, ls)),
                                                             wasm_f32x4_mul(d, wasm_v128_load32_splat(dxs + bl))));
                }
            }
            wasm_v128_store(y + 4 * g, acc);
        }
    }
}

static void simd_matvec2_iq4_xs_x4(float *ya, float *yb, const void *w, const void *xa, const void *xb, int rows,
                                   int cols) {
    float *ys[2] = {ya, yb};
    const void *xs[2] = {xa, xb};
    iq4_xs_x4_tokens(2, ys, w, xs, rows, cols);
}

/* BF16, row-major: the halves widened by a shift (exact), 4 accumulators
 * over 16 columns, scalar tail */
static void simd_matvec_bf16(float *y, const void *w, const void *x, int rows, int cols) {
    const uint16_t *wh = w;
    const float *xf = x;
    for (int r = 0; r < rows; r++) {
        const uint16_t *wr = wh + (size_t)r * (size_t)cols;
        v128_t a0 = wasm_f32x4_splat(0.0f), a1 = a0, a2 = a0, a3 = a0;
        int c = 0;
        for (; c + 16 <= cols; c += 16) {
            const v128_t h0 = wasm_v128_load(wr + c), h1 = wasm_v128_load(wr + c + 8);
            a0 = wasm_f32x4_add(a0, wasm_f32x4_mul(wasm_i32x4_shl(wasm_u32x4_extend_low_u16x8(h0), 16),
                                                   wasm_v128_load(xf + c)));
            a1 = wasm_f32x4_add(a1, wasm_f32x4_mul(wasm_i32x4_shl(wasm_u32x4_extend_high_u16x8(h0), 16),
                                                   wasm_v128_load(xf + c + 4)));
            a2 = wasm_f32x4_add(a2, wasm_f32x4_mul(wasm_i32x4_shl(wasm_u32x4_extend_low_u16x8(h1), 16),
                                                   wasm_v128_load(xf + c + 8)));
            a3 = wasm_f32x4_add(a3, wasm_f32x4_mul(wasm_i32x4_shl(wasm_u32x4_extend_high_u16x8(h1), 16),
                                                   wasm_v128_load(xf + c + 12)));
        }
        float s = hsum_f32x4(wasm_f32x4_add(wasm_f32x4_add(a0, a1), wasm_f32x4_add(a2, a3)));
        for (; c < cols; c++) s += doze_bf16_to_f32(wr[c]) * xf[c];
        y[r] = s;
    }
}

/* a row-major-only type's product row: matmul through doze_matmul_tiles,
 * two tokens at a time by MV2 where it is given */
#define SIMD_PRODUCTS_ROWS_MV2(T, MV0, MV2, ROW_BYTES) \
    static void T##_mm0(float *y, int ldy, const void *w, const void *x, size_t ldx, int n, int rows, int cols) { \
        const size_t rb = (ROW_BYTES); \
        doze_matmul_tiles(rb, rb, MV0, MV2, y, ldy, w, x, ldx, n, rows, cols); \
    } \
    const doze_products doze_simd_##T = {{MV0, NULL}, {T##_mm0, NULL}};
#define SIMD_PRODUCTS_ROWS(T, MV0, ROW_BYTES) SIMD_PRODUCTS_ROWS_MV2(T, MV0, NULL, ROW_BYTES)

/* a type with an x4 layout: both matmuls through doze_matmul_tiles, the x4 one
 * two tokens at a time by MV2 where it is given */
#define SIMD_PRODUCTS_X4_MV2(T, MV0, MV1, MV2, ROW_BYTES) \
    static void T##_mm0(float *y, int ldy, const void *w, const void *x, size_t ldx, int n, int rows, int cols) { \
        const size_t rb = (ROW_BYTES); \
        doze_matmul_tiles(rb, rb, MV0, NULL, y, ldy, w, x, ldx, n, rows, cols); \
    } \
    static void T##_mm1(float *y, int ldy, const void *w, const void *x, size_t ldx, int n, int rows, int cols) { \
        const size_t rb = (ROW_BYTES); \
        doze_matmul_tiles(rb, rb, MV1, MV2, y, ldy, w, x, ldx, n, rows, cols); \
    } \
    const doze_products doze_simd_##T = {{MV0, MV1}, {T##_mm0, T##_mm1}};
#define SIMD_PRODUCTS_X4(T, MV0, MV1, ROW_BYTES) SIMD_PRODUCTS_X4_MV2(T, MV0, MV1, NULL, ROW_BYTES)

SIMD_PRODUCTS_X4(q4_K, simd_matvec_q4_K, simd_matvec_q4_K_x4, (size_t)(cols / DOZE_QK_K) * sizeof(doze_block_q4_K))
SIMD_PRODUCTS_X4_MV2(q5_K, simd_matvec_q5_K, simd_matvec_q5_K_x4, simd_matvec2_q5_K_x4,
                     (size_t)(cols / DOZE_QK_K) * sizeof(doze_block_q5_K))
SIMD_PRODUCTS_X4_MV2(q6_K, simd_matvec_q6_K, simd_matvec_q6_K_x4, simd_matvec2_q6_K_x4,
                     (size_t)(cols / DOZE_QK_K) * sizeof(doze_block_q6_K))
SIMD_PRODUCTS_ROWS(bf16, simd_matvec_bf16, (size_t)cols * 2u)
SIMD_PRODUCTS_ROWS_MV2(q2_K, simd_matvec_q2_K, simd_matvec2_q2_K, (size_t)(cols / DOZE_QK_K) * sizeof(doze_block_q2_K))
SIMD_PRODUCTS_ROWS_MV2(q3_K, simd_matvec_q3_K, simd_matvec2_q3_K, (size_t)(cols / DOZE_QK_K) * sizeof(doze_block_q3_K))
SIMD_PRODUCTS_X4_MV2(iq4_xs, simd_matvec_iq4_xs, simd_matvec_iq4_xs_x4, simd_matvec2_iq4_xs_x4,
                     (size_t)(cols / DOZE_QK_K) * sizeof(doze_block_iq4_xs))

/* ---- Q4_1, Q5_0, Q5_1, IQ4_NL ----------------------------------------------
 * x as q8_0 blocks, one per weight block (kernels_ref.c has the order of the
 * float operations). The integer dots as for q4_0: a 16-byte payload read
 * as u16 lanes, nibbles isolated by shifts and masks against x permuted by
 * prep_x(q4 = 1) (Q4_1). Q5_0/Q5_1 and IQ4_NL work byte-wise against x in
 * order: low and high nibbles of the payload are elements 0..15 and
 * 16..31; Q5's fifth bits are ORed in from qh expanded by a 256-entry table
 * (wasm has no per-lane variable shift: bit tests in u16 lanes measured 6x
 * slower), IQ4_NL's nibbles index its grid (swizzle). x4 layout: one block
 * of 4 rows at a time, lane = row, each lane the reference's operations in
 * its order: the same bits; there Q5's codes come re-laid by the repack
 * (simd.h's q5x4_codes: a mask for codes 0..15, two shifts, a mask and an or
 * for 16..31, no table). Row-major: the
 * integer dot in SIMD, the float part per block as the reference does it. */

enum { Q32_Q5_0, Q32_Q4_1, Q32_Q5_1, Q32_IQ4_NL };

/* byte i of q5_bits[b] = 0x10 if bit i of b is set: a qh byte expanded to
 * the fifth bits of 8 codes */
#define Q5_B2B(b) \
    ((((b) >> 0 & 1ull) << 4) | (((b) >> 1 & 1ull) << 12) | (((b) >> 2 & 1ull) << 20) | (((b) >> 3 & 1ull) << 28) | \
     (((b) >> 4 & 1ull) << 36) | (((b) >> 5 & 1ull) << 44) | (((b) >> 6 & 1ull) << 52) | (((b) >> 7 & 1ull) << 60))
#define Q5_T4(n) Q5_B2B(n), Q5_B2B(n + 1), Q5_B2B(n + 2), Q5_B2B(n + 3)
#define Q5_T16(n) Q5_T4(n), Q5_T4(n + 4), Q5_T4(n + 8), Q5_T4(n + 12)
#define Q5_T64(n) Q5_T16(n), Q5_T16(n + 16), Q5_T16(n + 32), Q5_T16(n + 48)
static const uint64_t q5_bits[256] = {Q5_T64(0), Q5_T64(64), Q5_T64(128), Q5_T64(192)};

/* A payload's 32 codes as 4 i16x8 in the order of its x (Q5_0: q, the -16
 * is taken off by the caller; IQ4_NL: grid values) */
static inline __attribute__((always_inline)) void q32_codes(int kind, const uint8_t *pl, v128_t grid, v128_t *c) {
    if (kind == Q32_IQ4_NL) {
        iq4_codes(pl, grid, c);
        return;
    }
    if (kind != Q32_Q4_1) {
        /* codes in element order: low nibbles (0..15), high (16..31), each
         * byte ORed with its fifth bit, expanded from qh a byte at a time */
        uint32_t h;
        memcpy(&h, pl, 4);
        const v128_t v = wasm_v128_load(pl + 4);
        const v128_t lo = wasm_v128_or(wasm_v128_and(v, wasm_i8x16_splat(0x0f)),
                                       wasm_i64x2_make((int64_t)q5_bits[h & 0xff], (int64_t)q5_bits[(h >> 8) & 0xff]));
        const v128_t hi = wasm_v128_or(wasm_u8x16_shr(v, 4), wasm_i64x2_make((int64_t)q5_bits[(h >> 16) & 0xff],
                                                                            (int64_t)q5_bits[h >> 24]));
        c[0] = wasm_u16x8_extend_low_u8x16(lo);
        c[1] = wasm_u16x8_extend_high_u8x16(lo);
        c[2] = wasm_u16x8_extend_low_u8x16(hi);
        c[3] = wasm_u16x8_extend_high_u8x16(hi);
        return;
    }
    const v128_t m = wasm_i16x8_splat(0x0f);
    const v128_t q = wasm_v128_load(pl);
    c[0] = wasm_v128_and(q, m);
    c[1] = wasm_v128_and(wasm_u16x8_shr(q, 4), m);
    c[2] = wasm_v128_and(wasm_u16x8_shr(q, 8), m);
    c[3] = wasm_u16x8_shr(q, 12);
}

/* i32x4 whose lane sum is the dot of a payload's 32 codes with x */
static inline __attribute__((always_inline)) v128_t q32_dot(int kind, const uint8_t *pl, const v128_t *x,
                                                            v128_t grid) {
    v128_t c[4];
    q32_codes(kind, pl, grid, c);
    return dot4_i32x4(c, x);
}

static inline size_t q32_block_bytes(int kind) {
    return kind == Q32_Q5_0 ? sizeof(doze_block_q5_0)
           : kind == Q32_Q4_1 ? sizeof(doze_block_q4_1)
           : kind == Q32_Q5_1 ? sizeof(doze_block_q5_1)
                              : sizeof(doze_block_iq4_nl);
}

/* x for a chunk: prep_x, and per block dx * sum(x) (the min's factor) */
static inline void q32_prep(int kind, const doze_block_q8_0 *xb, int n, v128_t *xi, float *dxs, int32_t *corr,
                            float *dxsum) {
    prep_x(xb, n, xi, dxs, corr, kind == Q32_Q4_1);
    for (int b = 0; b < n; b++) dxsum[b] = dxs[b] * (float)(corr[b] / 8);
}

/* The x4 product for NT tokens (1, or 2 for the prefill's tiles): each
 * group block's codes are built once and dotted with every token's x; each
 * token's accumulator gets the reference's operations in its order (per
 * block: the exact dot, times dw * dx, plus the min's term), so every token
 * gets the same bits at either NT. */
static inline __attribute__((always_inline)) void q32_x4_tokens(int kind, int nt, float *const *y, const void *w,
                                                                 const void *const *xq, int rows, int cols) {
    enum { CH = Q8_CHUNK / 2 };
    const int nb = cols / DOZE_QK32, nh = kind == Q32_Q4_1 || kind == Q32_Q5_1 ? 2 : 1;
    const size_t bb = q32_block_bytes(kind), pay = bb - 2 * (size_t)nh;
    const v128_t grid = wasm_v128_load(doze_iq4nl_values);
    float dxs[2][CH], dxsum[2][CH];
    int32_t corr[2][CH];
    v128_t xi[2][CH * 4];
    for (int bc = 0; bc < nb; bc += CH) {
        const int n = nb - bc < CH ? nb - bc : CH;
        for (int k = 0; k < nt; k++)
            q32_prep(kind, (const doze_block_q8_0 *)xq[k] + bc, n, xi[k], dxs[k], corr[k], dxsum[k]);
        for (int g = 0; g < rows / 4; g++) {
            const uint8_t *p = (const uint8_t *)w + ((size_t)g * (size_t)nb + (size_t)bc) * 4 * bb;
            const uint8_t *pe = p + (size_t)n * 4 * bb;
            v128_t acc[2];
            for (int k = 0; k < nt; k++) acc[k] = x4_acc_start(y[k], bc, g);
            for (int b = 0; p != pe; p += 4 * bb, b++) {
                const uint8_t *pl = p + 8 * (size_t)nh;
                v128_t P[2][4];
                if (kind == Q32_Q5_0 || kind == Q32_Q5_1) {
                    const v128_t hv = wasm_v128_load(pl);
                    for (int r = 0; r < 4; r++) {
                        v128_t lo, hi;
                        q5x4_codes(pl + 16 * (r + 1), hv, r, &lo, &hi);
                        const v128_t c[4] = {wasm_u16x8_extend_low_u8x16(lo), wasm_u16x8_extend_high_u8x16(lo),
                                             wasm_u16x8_extend_low_u8x16(hi), wasm_u16x8_extend_high_u8x16(hi)};
                        for (int k = 0; k < nt; k++) P[k][r] = dot4_i32x4(c, xi[k] + 4 * b);
                    }
                } else {
                    for (int r = 0; r < 4; r++) {
                        v128_t c[4];
                        q32_codes(kind, pl + (size_t)r * pay, grid, c);
                        for (int k = 0; k < nt; k++) P[k][r] = dot4_i32x4(c, xi[k] + 4 * b);
                    }
                }
                const v128_t dw = f16x4_at((const uint16_t *)p);
                const v128_t mw = nh == 2 ? f16x4_at((const uint16_t *)(p + 8)) : dw;
                for (int k = 0; k < nt; k++) {
                    v128_t i = hsum4_i32x4(P[k][0], P[k][1], P[k][2], P[k][3]);
                    if (kind == Q32_Q5_0) i = wasm_i32x4_sub(i, wasm_i32x4_splat(2 * corr[k][b]));
                    v128_t t = wasm_f32x4_mul(wasm_f32x4_convert_i32x4(i), wasm_f32x4_mul(dw, wasm_f32x4_splat(dxs[k][b])));
                    if (nh == 2) t = wasm_f32x4_add(t, wasm_f32x4_mul(mw, wasm_f32x4_splat(dxsum[k][b])));
                    acc[k] = wasm_f32x4_add(acc[k], t);
                }
            }
            for (int k = 0; k < nt; k++) wasm_v128_store(y[k] + 4 * g, acc[k]);
        }
    }
}

static inline __attribute__((always_inline)) void simd_matvec_q32(int kind, float *y, const void *w,
                                                                   const void *xq, int rows, int cols) {
    const doze_block_q8_0 *xb = xq;
    const int nb = cols / DOZE_QK32, nh = kind == Q32_Q4_1 || kind == Q32_Q5_1 ? 2 : 1;
    const size_t bb = q32_block_bytes(kind);
    const v128_t grid = wasm_v128_load(doze_iq4nl_values);
    float dxs[Q8_CHUNK], dxsum[Q8_CHUNK];
    int32_t corr[Q8_CHUNK];
    v128_t xi[Q8_CHUNK * 4];
    for (int bc = 0; bc < nb; bc += Q8_CHUNK) {
        const int n = nb - bc < Q8_CHUNK ? nb - bc : Q8_CHUNK;
        q32_prep(kind, xb + bc, n, xi, dxs, corr, dxsum);
        for (int r = 0; r < rows; r++) {
            const uint8_t *p = (const uint8_t *)w + ((size_t)r * (size_t)nb + (size_t)bc) * bb;
            float s = bc == 0 ? 0.0f : y[r];
            for (int b = 0; b < n; b++, p += bb) {
                uint16_t dh, mh = 0;
                memcpy(&dh, p, 2);
                if (nh == 2) memcpy(&mh, p + 2, 2);
                int32_t i = hsum_i32x4(q32_dot(kind, p + 2 * (size_t)nh, xi + 4 * b, grid));
                if (kind == Q32_Q5_0) i -= 2 * corr[b];
                if (nh == 2) s += (float)i * (doze_f16_to_f32(dh) * dxs[b]) + doze_f16_to_f32(mh) * dxsum[b];
                else s += (float)i * (doze_f16_to_f32(dh) * dxs[b]);
            }
            y[r] = s;
        }
    }
}

#define SIMD_Q32(T, KIND) \
    static void simd_matvec_##T(float *y, const void *w, const void *xq, int rows, int cols) { \
        simd_matvec_q32(KIND, y, w, xq, rows, cols); \
    } \
    DOZE_TOKEN_PRODUCTS(simd_matvec_##T##_x4, simd_matvec2_##T##_x4, q32_x4_tokens, KIND, ) \
    SIMD_PRODUCTS_X4_MV2(T, simd_matvec_##T, simd_matvec_##T##_x4, simd_matvec2_##T##_x4, \
                         (size_t)(cols / DOZE_QK32) * sizeof(doze_block_##T))
SIMD_Q32(q4_1, Q32_Q4_1)
SIMD_Q32(q5_0, Q32_Q5_0)
SIMD_Q32(q5_1, Q32_Q5_1)
SIMD_Q32(iq4_nl, Q32_IQ4_NL)

static void simd_matmul_q(int type, int layout, float *y, int ldy, const void *w, const void *xq, int n,
                          int rows, int cols) {
    const doze_type_traits *t = doze_type_traits_of(type);
    if (t && t->products[DOZE_KERNELS_SIMD]->matmul[layout])
        t->products[DOZE_KERNELS_SIMD]->matmul[layout](y, ldy, w, xq, doze_type_act_bytes(t, cols), n, rows, cols);
}

/* x rounded to f16 or bf16 and back, 4 lanes at a time, with the scalar
 * conversions' bits (types.c). f16, by the magnitude a = |x|'s bits: NaN ->
 * the quiet NaN 0x7fc00000; a >= 0x477ff000 (rounds to 65520 or more, inf
 * included) -> inf; a below the smallest normal half (2^-14) -> a multiple
 * of 2^-24 by (a + 0.5) - 0.5 (0.5's ulp is 2^-24: round to nearest even
 * once, then exact); else the 13 low mantissa bits rounded off, half to
 * even, in the integer bits. The sign is ORed back. bf16: the 16 low bits
 * rounded off, half to even; NaN keeps its top bits, made quiet. */
static void simd_round_input(int act_type, const float *x, float *out, int n) {
    int i = 0;
    if (act_type == DOZE_TYPE_BF16) {
        const v128_t hi = wasm_i32x4_splat((int32_t)0xffff0000u), abs = wasm_i32x4_splat(0x7fffffff);
        const v128_t inf = wasm_i32x4_splat(0x7f800000), one = wasm_i32x4_splat(1);
        for (; i + 4 <= n; i += 4) {
            const v128_t u = wasm_v128_load(x + i);
            const v128_t r = wasm_v128_and(
                wasm_i32x4_add(u, wasm_i32x4_add(wasm_i32x4_splat(0x7fff), wasm_v128_and(wasm_u32x4_shr(u, 16), one))), hi);
            const v128_t q = wasm_v128_or(wasm_v128_and(u, hi), wasm_i32x4_splat(0x00400000));
            wasm_v128_store(out + i, wasm_v128_bitselect(q, r, wasm_i32x4_gt(wasm_v128_and(u, abs), inf)));
        }
        doze_round_input(act_type, x + i, out + i, n - i);
        return;
    }
    const v128_t abs = wasm_i32x4_splat(0x7fffffff), half = wasm_f32x4_splat(0.5f);
    for (; i + 4 <= n; i += 4) {
        const v128_t u = wasm_v128_load(x + i);
        const v128_t a = wasm_v128_and(u, abs), sign = wasm_v128_andnot(u, abs);
        const v128_t normal = wasm_v128_and(
            wasm_i32x4_add(a, wasm_i32x4_add(wasm_i32x4_splat(0xfff), wasm_v128_and(wasm_u32x4_shr(a, 13), wasm_i32x4_splat(1)))),
            wasm_i32x4_splat((int32_t)0xffffe000u));
        const v128_t sub = wasm_f32x4_sub(wasm_f32x4_add(a, half), half);
        v128_t r = wasm_v128_bitselect(sub, normal, wasm_i32x4_lt(a, wasm_i32x4_splat(0x38800000)));
        r = wasm_v128_bitselect(wasm_i32x4_splat(0x7f800000), r, wasm_i32x4_ge(a, wasm_i32x4_splat(0x477ff000)));
        r = wasm_v128_bitselect(wasm_i32x4_splat(0x7fc00000), r, wasm_i32x4_gt(a, wasm_i32x4_splat(0x7f800000)));
        wasm_v128_store(out + i, wasm_v128_or(r, sign));
    }
    doze_round_input(act_type, x + i, out + i, n - i);
}

/* xq(n/32 blocks) = x(n) in q8_0: amax by vector max, d = amax/127 stored as
 * f16, q = round-half-away(x * (1/d)) (= roundf, built from trunc: exact),
 * narrowed i32 -> i16 -> i8 with saturation (|q| <= 127 anyway). Same bytes
 * as the reference. */
static void simd_quantize_q8_0(const float *x, void *xq, int n) {
    doze_block_q8_0 *out = xq;
    const v128_t half = wasm_f32x4_splat(0.5f);
    const v128_t sign_mask = wasm_i32x4_splat((int32_t)0x80000000u);
    const v128_t one = wasm_f32x4_splat(1.0f);
    for (int i = 0; i < n / DOZE_QK8_0; i++) {
        const float *xb = x + (size_t)i * DOZE_QK8_0;
        v128_t v[8];
        for (int j = 0; j < 8; j++) v[j] = wasm_v128_load(xb + 4 * j);
        v128_t m0 = wasm_f32x4_pmax(wasm_f32x4_abs(v[0]), wasm_f32x4_abs(v[1]));
        v128_t m1 = wasm_f32x4_pmax(wasm_f32x4_abs(v[2]), wasm_f32x4_abs(v[3]));
        v128_t m2 = wasm_f32x4_pmax(wasm_f32x4_abs(v[4]), wasm_f32x4_abs(v[5]));
        v128_t m3 = wasm_f32x4_pmax(wasm_f32x4_abs(v[6]), wasm_f32x4_abs(v[7]));
        float amax = hmax_f32x4(wasm_f32x4_pmax(wasm_f32x4_pmax(m0, m1), wasm_f32x4_pmax(m2, m3)));
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        out[i].d = doze_f32_to_f16(d);
        const v128_t vid = wasm_f32x4_splat(id);
        v128_t q[8];
        for (int j = 0; j < 8; j++) {
            v128_t s = wasm_f32x4_mul(v[j], vid);
            v128_t t = wasm_f32x4_trunc(s);
            /* |s - t| >= 0.5: one step away from zero, with s's sign */
            v128_t away = wasm_f32x4_ge(wasm_f32x4_abs(wasm_f32x4_sub(s, t)), half);
            v128_t step = wasm_v128_or(wasm_v128_and(s, sign_mask), one);
            t = wasm_f32x4_add(t, wasm_v128_and(away, step));
            q[j] = wasm_i32x4_trunc_sat_f32x4(t);
        }
        v128_t q01 = wasm_i16x8_narrow_i32x4(q[0], q[1]), q23 = wasm_i16x8_narrow_i32x4(q[2], q[3]);
        v128_t q45 = wasm_i16x8_narrow_i32x4(q[4], q[5]), q67 = wasm_i16x8_narrow_i32x4(q[6], q[7]);
        wasm_v128_store(out[i].qs, wasm_i8x16_narrow_i16x8(q01, q23));
        wasm_v128_store(out[i].qs + 16, wasm_i8x16_narrow_i16x8(q45, q67));
    }
}

/* ---- element-wise and small kernels ------------------------------------ */

/* out(n) = x(n) * (1 / sqrt(mean(x^2) + eps)) * weight(n) */
static void simd_rmsnorm(float *out, const float *x, const float *weight, int n, float eps) {
    v128_t a0 = wasm_f32x4_splat(0.0f), a1 = a0;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        v128_t x0 = wasm_v128_load(x + i), x1 = wasm_v128_load(x + i + 4);
        a0 = wasm_f32x4_add(a0, wasm_f32x4_mul(x0, x0));
        a1 = wasm_f32x4_add(a1, wasm_f32x4_mul(x1, x1));
    }
    if (i + 4 <= n) {
        v128_t x0 = wasm_v128_load(x + i);
        a0 = wasm_f32x4_add(a0, wasm_f32x4_mul(x0, x0));
        i += 4;
    }
    float ss = hsum_f32x4(wasm_f32x4_add(a0, a1));
    for (; i < n; i++) ss += x[i] * x[i];
    float scale = 1.0f / sqrtf(ss / (float)n + eps);
    v128_t vs = wasm_f32x4_splat(scale);
    i = 0;
    for (; i + 4 <= n; i += 4)
        wasm_v128_store(out + i, wasm_f32x4_mul(wasm_f32x4_mul(wasm_v128_load(x + i), vs),
                                                wasm_v128_load(weight + i)));
    for (; i < n; i++) out[i] = x[i] * scale * weight[i];
}

/* x(n) = softmax(x) in place. All -inf (nothing to weigh): all zeros. */
static void simd_softmax(float *x, int n) {
    if (n <= 0) return;
    int i = 0;
    float max = x[0];
    if (n >= 4) {
        v128_t m = wasm_v128_load(x);
        for (i = 4; i + 4 <= n; i += 4) m = wasm_f32x4_pmax(m, wasm_v128_load(x + i));
        max = hmax_f32x4(m);
    }
    for (; i < n; i++)
        if (x[i] > max) max = x[i];
    if (max == -INFINITY) {
        for (i = 0; i < n; i++) x[i] = 0.0f;
        return;
    }
    const v128_t vmax = wasm_f32x4_splat(max);
    v128_t acc = wasm_f32x4_splat(0.0f);
    for (i = 0; i + 4 <= n; i += 4) {
        v128_t e = exp_f32x4(wasm_f32x4_sub(wasm_v128_load(x + i), vmax));
        wasm_v128_store(x + i, e);
        acc = wasm_f32x4_add(acc, e);
    }
    float sum = hsum_f32x4(acc);
    for (; i < n; i++) {
        x[i] = doze_expf(x[i] - max);
        sum += x[i];
    }
    float inv = 1.0f / sum;
    const v128_t vinv = wasm_f32x4_splat(inv);
    for (i = 0; i + 4 <= n; i += 4) wasm_v128_store(x + i, wasm_f32x4_mul(wasm_v128_load(x + i), vinv));
    for (; i < n; i++) x[i] *= inv;
}

/* v(n_heads, head_dim): pairs (v[2i], v[2i+1]), i < rope_dim/2, rotated by
 * cos_t(i), sin_t(i). 4 pairs per step: de-interleave 8 values into evens A
 * and odds B, A' = A c - B s, B' = A s + B c, interleave back. */
static void simd_rope(float *v, int n_heads, int head_dim, int rope_dim, const float *cos_t,
                      const float *sin_t) {
    const int half = rope_dim / 2;
    for (int h = 0; h < n_heads; h++) {
        float *vh = v + (size_t)h * (size_t)head_dim;
        int i = 0;
        for (; i + 4 <= half; i += 4) {
            v128_t lo = wasm_v128_load(vh + 2 * i), hi = wasm_v128_load(vh + 2 * i + 4);
            v128_t a = wasm_i32x4_shuffle(lo, hi, 0, 2, 4, 6);
            v128_t b = wasm_i32x4_shuffle(lo, hi, 1, 3, 5, 7);
            v128_t c = wasm_v128_load(cos_t + i), s = wasm_v128_load(sin_t + i);
            v128_t a2 = wasm_f32x4_sub(wasm_f32x4_mul(a, c), wasm_f32x4_mul(b, s));
            v128_t b2 = wasm_f32x4_add(wasm_f32x4_mul(a, s), wasm_f32x4_mul(b, c));
            wasm_v128_store(vh + 2 * i, wasm_i32x4_shuffle(a2, b2, 0, 4, 1, 5));
            wasm_v128_store(vh + 2 * i + 4, wasm_i32x4_shuffle(a2, b2, 2, 6, 3, 7));
        }
        for (; i < half; i++) {
            float v0 = vh[2 * i], v1 = vh[2 * i + 1];
            float c = cos_t[i], s = sin_t[i];
            vh[2 * i] = v0 * c - v1 * s;
            vh[2 * i + 1] = v0 * s + v1 * c;
        }
    }
}

/* out(n) = gate / (1 + exp(-gate)) * up */
static void simd_swiglu(float *out, const float *gate, const float *up, int n) {
    const v128_t one = wasm_f32x4_splat(1.0f);
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        v128_t g = wasm_v128_load(gate + i);
        v128_t silu = wasm_f32x4_div(g, wasm_f32x4_add(one, exp_f32x4(wasm_f32x4_neg(g))));
        wasm_v128_store(out + i, wasm_f32x4_mul(silu, wasm_v128_load(up + i)));
    }
    for (; i < n; i++) {
        float g = gate[i];
        float silu = g / (1.0f + doze_expf(-g));
        out[i] = silu * up[i];
    }
}

/* a(n) . b(n) */
static inline float dot_f32(const float *a, const float *b, int n) {
    v128_t s0 = wasm_f32x4_splat(0.0f), s1 = s0;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        s0 = wasm_f32x4_add(s0, wasm_f32x4_mul(wasm_v128_load(a + i), wasm_v128_load(b + i)));
        s1 = wasm_f32x4_add(s1, wasm_f32x4_mul(wasm_v128_load(a + i + 4), wasm_v128_load(b + i + 4)));
    }
    if (i + 4 <= n) {
        s0 = wasm_f32x4_add(s0, wasm_f32x4_mul(wasm_v128_load(a + i), wasm_v128_load(b + i)));
        i += 4;
    }
    float s = hsum_f32x4(wasm_f32x4_add(s0, s1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/* out(n) = 0 */
static inline void zero_f32(float *out, int n) {
    int i = 0;
    for (; i + 4 <= n; i += 4) wasm_v128_store(out + i, wasm_f32x4_splat(0.0f));
    for (; i < n; i++) out[i] = 0.0f;
}

/* the first position >= t visible under valid (NULL: all), or n */
static inline int next_visible(const uint8_t *valid, int t, int n) {
    while (t < n && valid && !valid[t]) t++;
    return t;
}

/* out(n) += a0 * v0 (then += a1 * v1 when v1): per element the first
 * product added, then the second, as the attention kernels' value sums take
 * valid positions in pairs */
static inline void add_weighted_rows(float *out, const float *v0, float a0, const float *v1, float a1, int n) {
    const v128_t va0 = wasm_f32x4_splat(a0);
    int i;
    if (v1) {
        const v128_t va1 = wasm_f32x4_splat(a1);
        for (i = 0; i + 4 <= n; i += 4) {
            v128_t o = wasm_v128_load(out + i);
            o = wasm_f32x4_add(o, wasm_f32x4_mul(va0, wasm_v128_load(v0 + i)));
            o = wasm_f32x4_add(o, wasm_f32x4_mul(va1, wasm_v128_load(v1 + i)));
            wasm_v128_store(out + i, o);
        }
        for (; i < n; i++) {
            out[i] += a0 * v0[i];
            out[i] += a1 * v1[i];
        }
    } else {
        for (i = 0; i + 4 <= n; i += 4)
            wasm_v128_store(out + i, wasm_f32x4_add(wasm_v128_load(out + i), wasm_f32x4_mul(va0, wasm_v128_load(v0 + i))));
        for (; i < n; i++) out[i] += a0 * v0[i];
    }
}

/* out(head_dim) = sum_t softmax(q . k_t / sqrt(head_dim))_t v_t over the
 * valid t < n_pos; k_t = k + t*stride, v_t = v + t*stride; att(n_pos) scratch
 * (holds the weights after). Invalid positions are never read. */
static void simd_attention(float *out, const float *q, const float *k, const float *v, int n_pos,
                           int head_dim, int stride, const uint8_t *valid, float *att) {
    const float scale = 1.0f / sqrtf((float)head_dim);
    const size_t st = (size_t)stride;
    for (int t = 0; t < n_pos; t++)
        att[t] = (valid && !valid[t]) ? -INFINITY : dot_f32(q, k + (size_t)t * st, head_dim) * scale;
    simd_softmax(att, n_pos);

    /* out += a_t v_t in position order; 2 positions per pass halve the
     * traffic on out and keep the per-element order of the reference. */
    zero_f32(out, head_dim);
    for (int t = next_visible(valid, 0, n_pos); t < n_pos;) {
        const int t2 = next_visible(valid, t + 1, n_pos);
        add_weighted_rows(out, v + (size_t)t * st, att[t], t2 < n_pos ? v + (size_t)t2 * st : NULL,
                          t2 < n_pos ? att[t2] : 0.0f, head_dim);
        t = next_visible(valid, t2 + 1, n_pos);
    }
}

/* attention for all running heads, position-major (kernels.h). Per head
 * the very operations of simd_attention: the same dot_f32 per position, the
 * same softmax, and the same pairs of valid positions (t, t2) added to out
 * in the same per-element order; only the loops are swapped, so that each
 * cache row is read once for every head of the pass. */
static void simd_attention_heads(float *out, const float *q, const float *k, const float *v, int n_heads,
                                 int group, int n_pos, int head_dim, int stride, const uint8_t *valid,
                                 const uint8_t *head_on, float *att) {
    const float scale = 1.0f / sqrtf((float)head_dim);
    const size_t st = (size_t)stride, hd = (size_t)head_dim, np = (size_t)n_pos;
    for (int h0 = 0; h0 < n_heads; h0 += DOZE_ATT_HEADS) {
        const int h1 = n_heads - h0 < DOZE_ATT_HEADS ? n_heads : h0 + DOZE_ATT_HEADS;
        for (int t = 0; t < n_pos; t++) {
            const float *kt = k + (size_t)t * st;
            const int off = valid && !valid[t];
            for (int h = h0; h < h1; h++) {
                if (head_on && !head_on[h]) continue;
                att[(size_t)(h - h0) * np + (size_t)t] =
                    off ? -INFINITY : dot_f32(q + (size_t)h * hd, kt + (size_t)(h / group) * hd, head_dim) * scale;
            }
        }
        for (int h = h0; h < h1; h++) {
            if (head_on && !head_on[h]) continue;
            simd_softmax(att + (size_t)(h - h0) * np, n_pos);
            zero_f32(out + (size_t)h * hd, head_dim);
        }
        for (int t = next_visible(valid, 0, n_pos); t < n_pos;) {
            const int t2 = next_visible(valid, t + 1, n_pos);
            for (int h = h0; h < h1; h++) {
                if (head_on && !head_on[h]) continue;
                const float *a = att + (size_t)(h - h0) * np;
                const size_t kvo = (size_t)(h / group) * hd;
                const float *v0 = v + (size_t)t * st + kvo;
                add_weighted_rows(out + (size_t)h * hd, v0, a[t], t2 < n_pos ? v + (size_t)t2 * st + kvo : NULL,
                                  t2 < n_pos ? a[t2] : 0.0f, head_dim);
            }
            t = next_visible(valid, t2 + 1, n_pos);
        }
    }
}

/* y(n) += x(n) */
static void simd_add(float *y, const float *x, int n) {
    int i = 0;
    for (; i + 4 <= n; i += 4)
        wasm_v128_store(y + i, wasm_f32x4_add(wasm_v128_load(y + i), wasm_v128_load(x + i)));
    for (; i < n; i++) y[i] += x[i];
}

/* Sum of buf(n bytes, n % 64 == 0) as u32 lanes, 4 accumulators, folded. */
uint32_t doze_read_probe(const void *buf, size_t n) {
    const uint8_t *p = buf;
    v128_t s0 = wasm_i32x4_splat(0), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i + 64 <= n; i += 64) {
        s0 = wasm_i32x4_add(s0, wasm_v128_load(p + i));
        s1 = wasm_i32x4_add(s1, wasm_v128_load(p + i + 16));
        s2 = wasm_i32x4_add(s2, wasm_v128_load(p + i + 32));
        s3 = wasm_i32x4_add(s3, wasm_v128_load(p + i + 48));
    }
    v128_t s = wasm_i32x4_add(wasm_i32x4_add(s0, s1), wasm_i32x4_add(s2, s3));
    return (uint32_t)hsum_i32x4(s);
}

const doze_kernels doze_kernels_simd = {
    .name = "simd",
    .set = DOZE_KERNELS_SIMD,
    .matvec_f32 = simd_matvec_f32,
    .matvec_f16 = simd_matvec_f16,
    .matvec_f32_x4 = simd_matvec_f32_x4,
    .matvec_f16_x4 = simd_matvec_f16_x4,
    .matvec_q8_0 = simd_matvec_q8_0,
    .matvec_q4_0 = simd_matvec_q4_0,
    .matvec_q4_0_x4 = simd_matvec_q4_0_x4,
    .matvec_q8_0_x4 = simd_matvec_q8_0_x4,
    .matmul_f32 = simd_matmul_f32,
    .matmul_q = simd_matmul_q,
    .quantize_q8_0 = simd_quantize_q8_0,
    .round_input = simd_round_input,
    .rmsnorm = simd_rmsnorm,
    .softmax = simd_softmax,
    .rope = simd_rope,
    .swiglu = simd_swiglu,
    .attention = simd_attention,
    .attention_heads = simd_attention_heads,
    .add = simd_add,
};
