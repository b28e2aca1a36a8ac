/* The one SIMD vocabulary of Doze: wasm SIMD128 intrinsics. In a wasm build
 * they are the compiler's own; natively SIMDe compiles the same source. */
#ifndef DOZE_SIMD_H
#define DOZE_SIMD_H

#include <stddef.h>
#include <stdint.h>

#if defined(__wasm_simd128__)
#include <wasm_simd128.h>
#else
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/wasm/simd128.h>
#endif

/* ---- helpers both kernel files use --------------------------------------- */

/* The x4 products go over x in chunks of blocks; a row group's four sums
 * start at 0 in the first chunk (bc == 0) and carry on from y(4 * g ..)
 * after it. */
static inline v128_t x4_acc_start(const float *y, int bc, int g) {
    return bc == 0 ? wasm_f32x4_splat(0.0f) : wasm_v128_load(y + 4 * g);
}

/* The 4 row sums of the f32 x4 kernels: lane r = (a_r[0] + a_r[2]) + (a_r[1]
 * + a_r[3]), hsum_f32x4's order, for the 4 accumulators at once. */
static inline v128_t hsum4_f32x4(v128_t a0, v128_t a1, v128_t a2, v128_t a3) {
    v128_t v0 = wasm_f32x4_add(wasm_i32x4_shuffle(a0, a1, 0, 4, 1, 5), wasm_i32x4_shuffle(a0, a1, 2, 6, 3, 7));
    v128_t v1 = wasm_f32x4_add(wasm_i32x4_shuffle(a2, a3, 0, 4, 1, 5), wasm_i32x4_shuffle(a2, a3, 2, 6, 3, 7));
    return wasm_f32x4_add(wasm_i32x4_shuffle(v0, v1, 0, 1, 4, 5), wasm_i32x4_shuffle(v0, v1, 2, 3, 6, 7));
}

/* c + a * b in two roundings, the strict builds' multiply-add */
static inline v128_t f32x4_mul_add(v128_t a, v128_t b, v128_t c) { return wasm_f32x4_add(c, wasm_f32x4_mul(a, b)); }

/* Two tokens over the f32 x4 layout (kernels.h): each weight vector is
 * loaded once and multiplied by both tokens' x; each token's 4 row
 * accumulators take w[r][4k+j] x[4k+j] for k in order, through madd (the
 * build's multiply-add, a constant the compiler inlines), then hsum4_f32x4:
 * the single-token x4 kernel's steps in its order, so the same bits. */
static inline __attribute__((always_inline)) void f32_x4_matvec2(v128_t (*madd)(v128_t, v128_t, v128_t), float *ya,
                                                                 float *yb, const float *w, const float *xa,
                                                                 const float *xb, int rows, int cols) {
    for (int g = 0; g < rows / 4; g++) {
        const float *p = w + (size_t)g * 4u * (size_t)cols;
        v128_t a0 = wasm_f32x4_splat(0.0f), a1 = a0, a2 = a0, a3 = a0;
        v128_t b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        for (int c = 0; c < cols; c += 4, p += 16) {
            const v128_t u = wasm_v128_load(xa + c), v = wasm_v128_load(xb + c);
            v128_t wv = wasm_v128_load(p);
            a0 = madd(wv, u, a0);
            b0 = madd(wv, v, b0);
            wv = wasm_v128_load(p + 4);
            a1 = madd(wv, u, a1);
            b1 = madd(wv, v, b1);
            wv = wasm_v128_load(p + 8);
            a2 = madd(wv, u, a2);
            b2 = madd(wv, v, b2);
            wv = wasm_v128_load(p + 12);
            a3 = madd(wv, u, a3);
            b3 = madd(wv, v, b3);
        }
        wasm_v128_store(ya + 4 * g, hsum4_f32x4(a0, a1, a2, a3));
        wasm_v128_store(yb + 4 * g, hsum4_f32x4(b0, b1, b2, b3));
    }
}

/* Halves 0-3 (lo) or 4-7 (hi) of h in f32 position, NOT yet rescaled by
 * 2^112: times 2^112 each is the half exactly (inf/nan halves aside). 3 ops
 * per 4 lanes on V8 (whose extend_high costs an extra shift): each half
 * duplicated into both halves of a u32 lane (one unpack), an arithmetic
 * shift right by 3 (sign copies on bits 31..28, the half's low 15 bits on
 * 27..13, debris on 12..0), the mask keeping bits 31 and 27..13. */
static inline v128_t f16lo_unscaled_dup(v128_t h) {
    return wasm_v128_and(wasm_i32x4_shr(wasm_i16x8_shuffle(h, h, 0, 0, 1, 1, 2, 2, 3, 3), 3),
                         wasm_i32x4_splat((int32_t)0x8fffe000u));
}
static inline v128_t f16hi_unscaled_dup(v128_t h) {
    return wasm_v128_and(wasm_i32x4_shr(wasm_i16x8_shuffle(h, h, 4, 4, 5, 5, 6, 6, 7, 7), 3),
                         wasm_i32x4_splat((int32_t)0x8fffe000u));
}

/* super-block i of the repacked row group g (4 rows of nsb super-blocks of
 * bb bytes, interleaved by super-block) */
static inline const uint8_t *x4_super_blocks(const void *w, int g, int nsb, int i, size_t bb) {
    return (const uint8_t *)w + ((size_t)g * (size_t)nsb + (size_t)i) * 4 * bb;
}

/* sum of the 4 i32 lanes of v */
static inline int32_t hsum_i32x4(v128_t v) {
    v = wasm_i32x4_add(v, wasm_i32x4_shuffle(v, v, 2, 3, 0, 1));
    v = wasm_i32x4_add(v, wasm_i32x4_shuffle(v, v, 1, 0, 3, 2));
    return wasm_i32x4_extract_lane(v, 0);
}

/* sum of the 4 f32 lanes of v, in this fixed order ((0 + 2) + (1 + 3)) */
static inline float hsum_f32x4(v128_t v) {
    v = wasm_f32x4_add(v, wasm_i32x4_shuffle(v, v, 2, 3, 0, 1));
    v = wasm_f32x4_add(v, wasm_i32x4_shuffle(v, v, 1, 0, 3, 2));
    return wasm_f32x4_extract_lane(v, 0);
}

/* lane r = the lane sum of p_r (4 horizontal sums at once; exact). Only
 * unpack patterns (0,4,1,5), (2,6,3,7), (0,1,4,5), (2,3,6,7): one
 * instruction each on V8, where other two-source shuffles take three. */
static inline v128_t hsum4_i32x4(v128_t p0, v128_t p1, v128_t p2, v128_t p3) {
    v128_t a = wasm_i32x4_add(wasm_i32x4_shuffle(p0, p1, 0, 4, 1, 5), wasm_i32x4_shuffle(p0, p1, 2, 6, 3, 7));
    v128_t b = wasm_i32x4_add(wasm_i32x4_shuffle(p2, p3, 0, 4, 1, 5), wasm_i32x4_shuffle(p2, p3, 2, 6, 3, 7));
    return wasm_i32x4_add(wasm_i32x4_shuffle(a, b, 0, 1, 4, 5), wasm_i32x4_shuffle(a, b, 2, 3, 6, 7));
}

/* IEEE halves -> f32, exactly, no branches. With a half in the top 16 bits
 * of a u32 lane, an arithmetic shift right by 3 smears the sign over bits
 * 31..28 and puts exponent+mantissa at bits 27..13; masking keeps sign +
 * exponent + mantissa, and the multiply by 2^112 rebiases the exponent (exact
 * for normals, subnormals and zeros; the sign rides along). Halves with
 * exponent 31 (inf/nan) would come out as 2^16..2^17: they get the f32
 * exponent all-ones ORed in (mantissa kept). */
static inline v128_t f16hi_to_f32x4(v128_t hi16, v128_t infnan_hi16) {
    v128_t v = wasm_v128_and(wasm_i32x4_shr(hi16, 3), wasm_i32x4_splat((int32_t)0x8fffe000u));
    return wasm_v128_or(wasm_f32x4_mul(v, wasm_f32x4_splat(0x1p112f)), infnan_hi16);
}

/* 0x7f80 in the i16 lanes of h holding an inf/nan half, else 0 */
static inline v128_t f16x8_infnan(v128_t h) {
    const v128_t e = wasm_i16x8_splat(0x7c00);
    return wasm_v128_and(wasm_i16x8_eq(wasm_v128_and(h, e), e), wasm_i16x8_splat(0x7f80));
}

/* the 8 halves of h as f32x4 lanes 0-3 (*lo) and 4-7 (*hi) */
static inline void f16x8_to_f32x4x2(v128_t h, v128_t *lo, v128_t *hi) {
    const v128_t z = wasm_i16x8_splat(0);
    v128_t inf = f16x8_infnan(h);
    *lo = f16hi_to_f32x4(wasm_i16x8_shuffle(z, h, 0, 8, 1, 9, 2, 10, 3, 11),
                         wasm_i16x8_shuffle(z, inf, 0, 8, 1, 9, 2, 10, 3, 11));
    *hi = f16hi_to_f32x4(wasm_i16x8_shuffle(z, h, 4, 12, 5, 13, 6, 14, 7, 15),
                         wasm_i16x8_shuffle(z, inf, 4, 12, 5, 13, 6, 14, 7, 15));
}

/* f32x4 of 4 halves held in the low 16 bits of u32 lanes */
static inline v128_t f16x4_to_f32x4(v128_t h) {
    return f16hi_to_f32x4(wasm_i32x4_shl(h, 16), wasm_i32x4_shl(f16x8_infnan(h), 16));
}

/* The 32 five-bit codes (0..31) of row r of a Q5_0/Q5_1 block in the x4
 * layout (quants32.h's doze_q5x4_code): its 16 bytes at qs hold codes 0..15
 * in bits 0..4 and the low 3 bits of codes 16..31 in bits 5..7; bits 2r,
 * 2r + 1 of the group's 16 bytes hv hold their top 2 bits, moved to bits
 * 3..4 by one u16 shift (no bit a shift carries across a byte boundary
 * lands there). *lo: codes 0..15, *hi: 16..31, a byte each. */
static inline __attribute__((always_inline)) void q5x4_codes(const uint8_t *qs, v128_t hv, int r, v128_t *lo,
                                                             v128_t *hi) {
    const v128_t v = wasm_v128_load(qs);
    const v128_t ht = r == 0 ? wasm_i16x8_shl(hv, 3) : r == 1 ? wasm_i16x8_shl(hv, 1) : r == 2 ? wasm_u16x8_shr(hv, 1)
                                                                                          : wasm_u16x8_shr(hv, 3);
    *lo = wasm_v128_and(v, wasm_i8x16_splat(0x1f));
    *hi = wasm_v128_or(wasm_u8x16_shr(v, 5), wasm_v128_and(ht, wasm_i8x16_splat(0x18)));
}

/* The one-token matvec MV and the two-token MV2 (the prefill's tiles) of a
 * product written once for NT tokens, BODY(KIND..., nt, y[nt], w, x[nt],
 * rows, cols): the last argument is the body's leading arguments with a
 * trailing comma (`Q32_Q5_0,`), or empty for a body that takes none. */
#define DOZE_TOKEN_PRODUCTS(MV, MV2, BODY, ...) \
    static void MV(float *y, const void *w, const void *xq, int rows, int cols) { \
        float *ys[1] = {y}; \
        const void *xs[1] = {xq}; \
        BODY(__VA_ARGS__ 1, ys, w, xs, rows, cols); \
    } \
    static void MV2(float *ya, float *yb, const void *w, const void *xa, const void *xb, int rows, int cols) { \
        float *ys[2] = {ya, yb}; \
        const void *xs[2] = {xa, xb}; \
        BODY(__VA_ARGS__ 2, ys, w, xs, rows, cols); \
    }

#endif
