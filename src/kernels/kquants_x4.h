/* The float side of the K-quant products in the x4 layout (4 rows' super-
 * blocks side by side, lane = row), shared by the strict kernels
 * (kernels_simd.c) and the relaxed-SIMD ones (kernels_relaxed.c). Each file
 * makes the exact integer dots of the codes with x its own way; from those
 * on, the operations here are the reference's, per lane in its order, so
 * both give the reference's bits. */
#ifndef DOZE_KQUANTS_X4_H
#define DOZE_KQUANTS_X4_H

#include <stddef.h>
#include <stdint.h>

#include "kquants.h"
#include "simd.h"
#include "types.h"

/* The 8 6-bit scales and 8 mins of a Q4_K/Q5_K scales field q as bytes
 * [sc0..sc7, m0..m7]. As u32 lanes of the 12 bytes (16 read: the field sits
 * inside its block): scales 0-3 = q[0..3] & 63, mins 0-3 = q[4..7] & 63,
 * scales 4-7 = q[8..11] & 15 | (q[0..3] >> 6) << 4, mins 4-7 = q[8..11] >> 4
 * | (q[4..7] >> 6) << 4. */
static inline v128_t kq_scale_bytes(const uint8_t *q) {
    const v128_t b = wasm_v128_load(q);
    const v128_t a = wasm_i32x4_shuffle(b, b, 0, 2, 1, 2), c = wasm_i32x4_shuffle(b, b, 0, 0, 1, 1);
    const v128_t low = wasm_v128_or(wasm_v128_and(a, wasm_i32x4_make(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0)),
                                    wasm_v128_and(wasm_u32x4_shr(a, 4), wasm_i32x4_make(0, 0, 0, 0x0f0f0f0f)));
    const v128_t high = wasm_v128_and(wasm_i32x4_shl(wasm_u32x4_shr(c, 6), 4), wasm_i32x4_make(0, 0x30303030, 0, 0x30303030));
    return wasm_v128_or(low, high);
}

/* 4 rows' 16 bytes transposed: T[q] holds bytes 4q..4q+3 of each row, as
 * 4 bytes per row (row 0 first) */
static inline void kq_x4_transpose(v128_t s0, v128_t s1, v128_t s2, v128_t s3, v128_t T[4]) {
    const v128_t u0 = wasm_i8x16_shuffle(s0, s1, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const v128_t u1 = wasm_i8x16_shuffle(s2, s3, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const v128_t u2 = wasm_i8x16_shuffle(s0, s1, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    const v128_t u3 = wasm_i8x16_shuffle(s2, s3, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    T[0] = wasm_i16x8_shuffle(u0, u1, 0, 8, 1, 9, 2, 10, 3, 11);
    T[1] = wasm_i16x8_shuffle(u0, u1, 4, 12, 5, 13, 6, 14, 7, 15);
    T[2] = wasm_i16x8_shuffle(u2, u3, 0, 8, 1, 9, 2, 10, 3, 11);
    T[3] = wasm_i16x8_shuffle(u2, u3, 4, 12, 5, 13, 6, 14, 7, 15);
}

/* bit j (0..7) of each byte of h moved to bit 4 (0x10 or 0), byte-wise:
 * the u16 shift's bits that cross into the neighbouring byte never land on
 * bit 4 (a shift of at most 4 left or 3 right) */
static inline __attribute__((always_inline)) v128_t kq_bit_to_4(v128_t h, int j) {
    const v128_t m = j < 4 ? wasm_i16x8_shl(h, 4 - j) : j == 4 ? h : wasm_u16x8_shr(h, j - 4);
    return wasm_v128_and(m, wasm_i8x16_splat(0x10));
}

/* bit b (0..7) of every byte of v moved to bit 2 (the rest cleared); 16-bit
 * lane shifts, the mask keeps each byte's own bit */
static inline __attribute__((always_inline)) v128_t k3_bit_to_2(v128_t v, int b) {
    const v128_t m = wasm_i8x16_splat(4);
    return b >= 2 ? wasm_v128_and(wasm_u16x8_shr(v, (uint32_t)(b - 2)), m)
                  : wasm_v128_and(wasm_i16x8_shl(v, (uint32_t)(2 - b)), m);
}

/* The 2-bit codes (Q3_K: with the third bit ORed in as bit 2) of x block j
 * (0..7) of a Q2_K / Q3_K super-block, one per byte in element order:
 * elements 0..15 in *c0, 16..31 in *c1. q: the half's 32 qs bytes (half =
 * j / 4), h: the 32 hmask bytes (Q3_K) or NULL. */
static inline __attribute__((always_inline)) void k23_codes(const uint8_t *q, const uint8_t *h, int j, v128_t *c0,
                                                           v128_t *c1) {
    const v128_t m3 = wasm_i8x16_splat(3);
    const uint32_t t2 = (uint32_t)(2 * (j % 4));
    *c0 = wasm_v128_and(wasm_u16x8_shr(wasm_v128_load(q), t2), m3);
    *c1 = wasm_v128_and(wasm_u16x8_shr(wasm_v128_load(q + 16), t2), m3);
    if (h) {
        *c0 = wasm_v128_or(*c0, k3_bit_to_2(wasm_v128_load(h), j));
        *c1 = wasm_v128_or(*c1, k3_bit_to_2(wasm_v128_load(h + 16), j));
    }
}

/* A Q2_K (q3 0) / Q3_K (1) super-block's d (and Q2_K's dmin) in every lane,
 * widened exactly; sc3: Q3_K's 16 signed group scales */
static inline __attribute__((always_inline)) void k23_super(int q3, const uint8_t *blk, v128_t *d, v128_t *dm,
                                                           int32_t *sc3) {
    if (q3) {
        const doze_block_q3_K *p = (const doze_block_q3_K *)blk;
        const v128_t dd = f16x4_to_f32x4(wasm_i32x4_splat((int32_t)p->d));
        *d = dd;
        *dm = dd;
        for (int g = 0; g < 16; g++) sc3[g] = doze_q3_K_scale(p->scales, g);
    } else {
        const doze_block_q2_K *p = (const doze_block_q2_K *)blk;
        const v128_t dd = f16x4_to_f32x4(wasm_i32x4_make((int32_t)p->d, (int32_t)p->dmin, 0, 0));
        *d = wasm_i32x4_shuffle(dd, dd, 0, 0, 0, 0);
        *dm = wasm_i32x4_shuffle(dd, dd, 1, 1, 1, 1);
    }
}

/* Q2_K (q3 0) / Q3_K (1), row-major: acc + half `half` of one row's
 * super-block blk (d, dm, sc3 from k23_super), given sa / sb: the exact dots
 * of its 4 x blocks' values 0..15 / 16..31 with the codes (lane = x block).
 * xsa / xsb: those x halves' sums (Q3_K: times 4, the codes' offset), dxs:
 * the x scales, all from the half's first x block. Per lane the reference's
 * operations for that x block. */
static inline __attribute__((always_inline)) v128_t k23_half(int q3, v128_t acc, const uint8_t *blk, int half,
                                                            v128_t d, v128_t dm, const int32_t *sc3, v128_t sa,
                                                            v128_t sb, const int32_t *xsa, const int32_t *xsb,
                                                            const float *dxs) {
    if (q3) {
        const int32_t *g = sc3 + 8 * half; /* groups a = 2t, b = 2t + 1 */
        const v128_t A = wasm_i32x4_add(
            wasm_i32x4_mul(wasm_i32x4_sub(sa, wasm_v128_load(xsa)), wasm_i32x4_make(g[0], g[2], g[4], g[6])),
            wasm_i32x4_mul(wasm_i32x4_sub(sb, wasm_v128_load(xsb)), wasm_i32x4_make(g[1], g[3], g[5], g[7])));
        return wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(A), wasm_f32x4_mul(d, wasm_v128_load(dxs))));
    }
    const doze_block_q2_K *p = (const doze_block_q2_K *)blk;
    const v128_t m15 = wasm_i32x4_splat(15);
    const v128_t s16 = wasm_u16x8_extend_low_u8x16(wasm_v128_load64_zero(p->scales + 8 * half));
    const v128_t se = wasm_u32x4_extend_low_u16x8(wasm_i16x8_shuffle(s16, s16, 0, 2, 4, 6, 0, 2, 4, 6));
    const v128_t so = wasm_u32x4_extend_low_u16x8(wasm_i16x8_shuffle(s16, s16, 1, 3, 5, 7, 1, 3, 5, 7));
    const v128_t A = wasm_i32x4_add(wasm_i32x4_mul(sa, wasm_v128_and(se, m15)), wasm_i32x4_mul(sb, wasm_v128_and(so, m15)));
    const v128_t M = wasm_i32x4_add(wasm_i32x4_mul(wasm_v128_load(xsa), wasm_u32x4_shr(se, 4)),
                                    wasm_i32x4_mul(wasm_v128_load(xsb), wasm_u32x4_shr(so, 4)));
    const v128_t f = wasm_f32x4_sub(wasm_f32x4_mul(d, wasm_f32x4_convert_i32x4(A)),
                                    wasm_f32x4_mul(dm, wasm_f32x4_convert_i32x4(M)));
    return wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_v128_load(dxs), f));
}

/* the two i32x4 whose lane sums are the exact dots of codes c0 (values
 * 0..15) and c1 (16..31) with x block x, as each kernel file makes them */
typedef void (*k23_dot_fn)(v128_t c0, v128_t c1, const v128_t *x, v128_t *pa, v128_t *pb);

/* Q2_K (q3 0) / Q3_K (1), row-major, for NT tokens (1, or 2 for the
 * prefill's tiles): y[k][r] (+)= row r's dots with token k's chunk of x
 * blocks [bc, bc + 8 (i1 - i0)) (super-blocks i0..i1), x block b at
 * xi[k] + xstride * b, its halves' sums xsa[k] / xsb[k] (Q3_K: times 4) and
 * scale dxs[k]; dot: the file's integer dot. Each row's scales and codes are
 * unpacked once for every token; each token gets the one-token operations
 * in their order (the same bits). */
static inline __attribute__((always_inline)) void k23_rows(int q3, int nt, float *const *y, const void *w, int rows,
                                                           int nsb, int bc, int i0, int i1,
                                                           const v128_t *const *xi, int xstride,
                                                           const int32_t *const *xsa, const int32_t *const *xsb,
                                                           const float *const *dxs, k23_dot_fn dot) {
    const size_t bb = q3 ? sizeof(doze_block_q3_K) : sizeof(doze_block_q2_K);
    const size_t qs_at = q3 ? offsetof(doze_block_q3_K, qs) : offsetof(doze_block_q2_K, qs);
    for (int r = 0; r < rows; r++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)r * (size_t)nsb * bb;
        v128_t acc[2];
        for (int k = 0; k < nt; k++) acc[k] = wasm_f32x4_splat(0.0f);
        for (int i = i0; i < i1; i++) {
            const uint8_t *blk = row + (size_t)i * bb;
            int32_t sc3[16];
            v128_t d, dm;
            k23_super(q3, blk, &d, &dm, sc3);
            for (int half = 0; half < 2; half++) {
                const int bl = (i - i0) * 8 + 4 * half;
                v128_t Pa[2][4], Pb[2][4];
                for (int t = 0; t < 4; t++) {
                    v128_t c0, c1;
                    k23_codes(blk + qs_at + 32 * half, q3 ? blk + offsetof(doze_block_q3_K, hmask) : NULL,
                              4 * half + t, &c0, &c1);
                    for (int k = 0; k < nt; k++)
                        dot(c0, c1, xi[k] + (size_t)xstride * (size_t)(bl + t), &Pa[k][t], &Pb[k][t]);
                }
                for (int k = 0; k < nt; k++)
                    acc[k] = k23_half(q3, acc[k], blk, half, d, dm, sc3, hsum4_i32x4(Pa[k][0], Pa[k][1], Pa[k][2], Pa[k][3]),
                                      hsum4_i32x4(Pb[k][0], Pb[k][1], Pb[k][2], Pb[k][3]), xsa[k] + bl, xsb[k] + bl,
                                      dxs[k] + bl);
            }
        }
        for (int k = 0; k < nt; k++) {
            const float s = hsum_f32x4(acc[k]);
            y[k][r] = bc == 0 ? s : y[k][r] + s;
        }
    }
}

/* byte q (0..3) of each row's 4 in t, as u32 lanes */
static inline __attribute__((always_inline)) v128_t kq_x4_byte(v128_t t, int q) {
    return q < 2 ? (q == 0 ? wasm_u32x4_extend_low_u16x8(wasm_u16x8_extend_low_u8x16(t))
                           : wasm_u32x4_extend_high_u16x8(wasm_u16x8_extend_low_u8x16(t)))
                 : (q == 2 ? wasm_u32x4_extend_low_u16x8(wasm_u16x8_extend_high_u8x16(t))
                           : wasm_u32x4_extend_high_u16x8(wasm_u16x8_extend_high_u8x16(t)));
}

/* Q4_K / Q5_K: acc + one x4 group block's share. b4r: the 4 rows' blocks
 * (bb bytes each), I[j]: sub-block j's exact dot of the codes with x block
 * j (lane = row), xsum[j]: x block j's quant sum, dxs[j]: its scale. */
static inline __attribute__((always_inline)) v128_t kq_x4_block(v128_t acc, const uint8_t *b4r, size_t bb,
                                                                 const v128_t I[8], const int32_t *xsum,
                                                                 const float *dxs) {
    /* the 4 rows' scales and mins, transposed: lane = row */
    v128_t T[4];
    kq_x4_transpose(kq_scale_bytes(b4r + 4), kq_scale_bytes(b4r + bb + 4), kq_scale_bytes(b4r + 2 * bb + 4),
                    kq_scale_bytes(b4r + 3 * bb + 4), T);
    /* the 4 rows' d and dmin */
    v128_t dv = wasm_i32x4_splat(0);
    dv = wasm_v128_load32_lane(b4r, dv, 0);
    dv = wasm_v128_load32_lane(b4r + bb, dv, 1);
    dv = wasm_v128_load32_lane(b4r + 2 * bb, dv, 2);
    dv = wasm_v128_load32_lane(b4r + 3 * bb, dv, 3);
    const v128_t d = f16x4_to_f32x4(wasm_v128_and(dv, wasm_i32x4_splat(0xffff)));
    const v128_t dm = f16x4_to_f32x4(wasm_u32x4_shr(dv, 16));
    for (int j = 0; j < 8; j++) {
        /* T[j / 4] (sc) and T[2 + j / 4] (m): 4 bytes per j */
        const v128_t sc = kq_x4_byte(T[j / 4], j % 4), mm = kq_x4_byte(T[2 + j / 4], j % 4);
        const v128_t A = wasm_i32x4_mul(I[j], sc);
        const v128_t B = wasm_i32x4_mul(mm, wasm_i32x4_splat(xsum[j]));
        const v128_t f = wasm_f32x4_sub(wasm_f32x4_mul(d, wasm_f32x4_convert_i32x4(A)),
                                        wasm_f32x4_mul(dm, wasm_f32x4_convert_i32x4(B)));
        acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_v128_load32_splat(dxs + j), f));
    }
    return acc;
}

/* The 16 codes (0..63) of quarter t of a Q6_K half super-block from 16
 * bytes of ql (q: ql + 32 (t & 1) + 16 k) and of qh (h: qh + 16 k), one per
 * byte in element order: the nibble (low for t < 2, high otherwise) ORed
 * with qh's bits 2t..2t+1 moved to bits 4..5. Byte-wise work in u16 lanes:
 * each shift's bits that cross into the neighbouring byte are masked off,
 * so 3-4 ops per 16 codes (the u16 even/odd split took 5 per 8). */
static inline __attribute__((always_inline)) v128_t q6_codes(v128_t q, v128_t h, int t) {
    const v128_t m4 = wasm_i8x16_splat(0x0f), m30 = wasm_i8x16_splat(0x30);
    const v128_t nib = t < 2 ? wasm_v128_and(q, m4) : wasm_v128_and(wasm_u16x8_shr(q, 4), m4);
    const v128_t hb = t == 0   ? wasm_i16x8_shl(h, 4)
                      : t == 1 ? wasm_i16x8_shl(h, 2)
                      : t == 2 ? h
                               : wasm_u16x8_shr(h, 2);
    return wasm_v128_or(nib, wasm_v128_and(hb, m30));
}

/* Q6_K: the 4 rows' 16 scales transposed (T[q]: groups 4q..4q+3, 4 bytes
 * each) and their d */
static inline void q6_x4_scales(const uint8_t *b4r, v128_t T[4], v128_t *d) {
    const size_t bb = sizeof(doze_block_q6_K), at = offsetof(doze_block_q6_K, scales);
    kq_x4_transpose(wasm_v128_load(b4r + at), wasm_v128_load(b4r + bb + at), wasm_v128_load(b4r + 2 * bb + at),
                    wasm_v128_load(b4r + 3 * bb + at), T);
    const size_t dat = offsetof(doze_block_q6_K, d);
    v128_t dh = wasm_i32x4_splat(0);
    dh = wasm_v128_load16_lane(b4r + dat, dh, 0);
    dh = wasm_v128_load16_lane(b4r + bb + dat, dh, 2);
    dh = wasm_v128_load16_lane(b4r + 2 * bb + dat, dh, 4);
    dh = wasm_v128_load16_lane(b4r + 3 * bb + dat, dh, 6);
    *d = f16x4_to_f32x4(dh);
}

/* Q6_K: acc + quarter t of half `half` of a group block (one x block):
 * pa, pb the exact dots of the codes of its values 0..15 and 16..31 with x
 * (lane = row), xsa / xsb 32 * the x sums of those halves (the codes' -32),
 * dx the x block's scale */
static inline __attribute__((always_inline)) v128_t q6_x4_quarter(v128_t acc, const v128_t T[4], v128_t d, int half,
                                                                   int t, v128_t pa, v128_t pb, int32_t xsa,
                                                                   int32_t xsb, const float *dx) {
    /* groups 8 half + 2t (a) and + 1 (b): byte (2t % 4) * 4 of T[2 half + t / 2] */
    const v128_t tg = T[2 * half + t / 2];
    const v128_t e16 = (t & 1) ? wasm_i16x8_extend_high_i8x16(tg) : wasm_i16x8_extend_low_i8x16(tg);
    const v128_t sa = wasm_i32x4_extend_low_i16x8(e16), sb = wasm_i32x4_extend_high_i16x8(e16);
    const v128_t va = wasm_i32x4_sub(pa, wasm_i32x4_splat(xsa));
    const v128_t vb = wasm_i32x4_sub(pb, wasm_i32x4_splat(xsb));
    const v128_t A = wasm_i32x4_add(wasm_i32x4_mul(sa, va), wasm_i32x4_mul(sb, vb));
    return wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(A), wasm_f32x4_mul(d, wasm_v128_load32_splat(dx))));
}

#endif
