/* Q8_0, Q4_0, Q5_0 and K-quant (Q2_K ... Q6_K) products on the
 * relaxed-SIMD int8 dot product
 * (i32x4.relaxed_dot_i8x16_i7x16_add_s), and f32 products on the relaxed
 * multiply-add (f32x4.relaxed_madd), for doze-relaxed.wasm.
 *
 * What the instruction leaves open: the bytes of its second operand b may be
 * read as signed or unsigned, and the i16 sums of adjacent product pairs may
 * saturate or wrap. Both only matter when a byte of b has its top bit set:
 * with every b byte in [0, 127] the two readings agree and a pair sum is at
 * most 2 * 128 * 127 = 32512 < 2^15, so every engine (x86 pmaddubsw or
 * vpdpbusd, ARM sdot, the scalar fallback) returns the exact int32 dot.
 * These kernels only ever pass such a b:
 *   q4_0: b = the weight nibbles (0..15), a = x's quants as they are;
 *   q5_0: b = the weights' five-bit codes (0..31), a = x's quants;
 *   q2_K ... q6_K: b = the codes (0..3, 0..7, 0..15, 0..31, 0..63), a = x's
 *         quants;
 *         the float work around the dots is kquants_x4.h's, which the
 *         strict kernels share;
 *   q8_0: x's quants split as x = l - 128 * s (l = x & 127, s = the sign
 *         bit as 0/1), a = the weights: dot(w, x) = dot(w, l) - 128 dot(w, s),
 *         exact for every int8 x and w, -128 included.
 * So every block's integer dot is exact, and the float work around it is
 * kernels_simd.c's sequence of operations: these quantized products give the
 * strict SIMD kernels' bits, on every engine. Nothing may differ.
 *
 * f32 (the x4 layout) is the exception: each step of its sums is one
 * multiply-add that the engine may fuse (one rounding: x86 with FMA, ARM)
 * or not (two: the strict kernel's bits), so doze-relaxed.wasm's f32 logits
 * may differ from doze.wasm's by those roundings. Within one engine the
 * choice is fixed, so the decode and prefill products still give each token
 * the same bits, at any thread count (the tests check both, and that V8's
 * two tiers agree).
 *
 * Which products: the x4 layouts (what the loader repacks every matrix with
 * rows % 4 == 0 to: the decode and prefill paths) and row-major q4_0;
 * row-major q8_0, q5_0 and K-quants keep the strict kernels (q8_0: its float
 * sums are per i32 lane of the strict int16 products, a partition the
 * relaxed dot does not make; the others: only matrices whose rows are not a
 * multiple of 4).
 *
 * Outside a relaxed-SIMD wasm build (natively, or wasm without
 * -mrelaxed-simd) the instruction is emulated with strict SIMD as x86
 * computes it: the exact dot for every operand the kernels pass, which the
 * native tests check these kernels with. */
#include <stddef.h>
#include <stdint.h>

#include "kernels.h"
#include "kquants_x4.h"
#include "quants32.h"
#include "simd.h"
#include "types.h"

/* i32x4: lane j = c[j] + sum of a[4j+k] * b[4j+k], k = 0..3 (a int8, b in
 * [0, 127]: see the top of the file) */
#if defined(__wasm_relaxed_simd__)
static inline v128_t dot_i8_u7_add(v128_t a, v128_t b, v128_t c) {
    return (v128_t)__builtin_wasm_relaxed_dot_i8x16_i7x16_add_s_i32x4((__i8x16)a, (__i8x16)b, (__i32x4)c);
}
#else
/* as x86's pmaddubsw lowering computes it (b read unsigned, the pair sums
 * saturated to i16): the exact dot while b is in [0, 127], as the kernels
 * promise, and visibly not once a b lane has its top bit set, so the native
 * tests catch a kernel that breaks the promise */
static inline v128_t dot_i8_u7_add(v128_t a, v128_t b, v128_t c) {
    const v128_t lo = wasm_i16x8_mul(wasm_i16x8_extend_low_i8x16(a), wasm_u16x8_extend_low_u8x16(b));
    const v128_t hi = wasm_i16x8_mul(wasm_i16x8_extend_high_i8x16(a), wasm_u16x8_extend_high_u8x16(b));
    const v128_t pairs = wasm_i16x8_add_sat(wasm_i16x8_shuffle(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14),
                                            wasm_i16x8_shuffle(lo, hi, 1, 3, 5, 7, 9, 11, 13, 15));
    return wasm_i32x4_add(wasm_i32x4_extadd_pairwise_i16x8(pairs), c);
}
#endif

int doze_relaxed_simd_native(void) {
#if defined(__wasm_relaxed_simd__)
    return 1;
#else
    return 0;
#endif
}

/* blocks of x prepared at once (stack: 32 + 8 bytes per block, q8: 64 + 4) */
#define RX_CHUNK 256

/* x for the products whose codes are the dot's unsigned operand (q4_0,
 * q5_0, the K-quants), n blocks: the quants as 2 v128 per block (elements
 * 0-15, 16-31), scales as f32, and the exact sums of the halves (xs[2b]:
 * elements 0..15, xs[2b + 1]: 16..31), which take the codes' offsets and
 * the K-quants' mins off the exact dots */
static void prep_x(const doze_block_q8_0 *xb, int n, v128_t *xi, float *dxs, int32_t *xs) {
    const v128_t ones = wasm_i8x16_splat(1), z = wasm_i32x4_splat(0);
    for (int b = 0; b < n; b++) {
        xi[2 * b] = wasm_v128_load(xb[b].qs);
        xi[2 * b + 1] = wasm_v128_load(xb[b].qs + 16);
        dxs[b] = doze_f16_to_f32(xb[b].d);
        xs[2 * b] = hsum_i32x4(dot_i8_u7_add(xi[2 * b], ones, z));
        xs[2 * b + 1] = hsum_i32x4(dot_i8_u7_add(xi[2 * b + 1], ones, z));
    }
}

/* x for q8_0 products, n blocks: per block l (x & 127) and s (x < 0 as 0/1)
 * for elements 0-15 and 16-31: xi[4b..4b+3] = l0, l1, s0, s1; scales as
 * f32. */
static void prep_x_q8(const doze_block_q8_0 *xb, int n, v128_t *xi, float *dxs) {
    const v128_t m = wasm_i8x16_splat(127);
    for (int b = 0; b < n; b++) {
        v128_t x0 = wasm_v128_load(xb[b].qs), x1 = wasm_v128_load(xb[b].qs + 16);
        xi[4 * b] = wasm_v128_and(x0, m);
        xi[4 * b + 1] = wasm_v128_and(x1, m);
        xi[4 * b + 2] = wasm_u8x16_shr(x0, 7);
        xi[4 * b + 3] = wasm_u8x16_shr(x1, 7);
        dxs[b] = doze_f16_to_f32(xb[b].d);
    }
}

/* i32x4 whose lane sum is the dot of the 32 nibbles of q4_0 payload q (0..15)
 * with x's quants (x[0], x[1] as prep_x makes them) */
static inline v128_t q4_dot_u(v128_t q, const v128_t *x) {
    const v128_t m = wasm_i8x16_splat(0x0f);
    return dot_i8_u7_add(x[1], wasm_u8x16_shr(q, 4), dot_i8_u7_add(x[0], wasm_v128_and(q, m), wasm_i32x4_splat(0)));
}

/* y(rows) = W(rows, cols/32 blocks, x4 layout) @ xq for q4_0 (five 0) and
 * q5_0 (1), for NT tokens (1, or 2 for the prefill's tiles): a group block
 * holds the 4 rows' scales, q5_0's 16 bytes of their fifth bits, then 4 x
 * 16 bytes of nibbles. Per group of 4 rows and block, each row's codes built
 * once, the 4 exact dots of the codes minus 8 (16) * sum(x) per token,
 * converted, times the 4 rows' dw * dx, added to the token's f32x4: the
 * operations of kernels_simd.c's simd_matvec_q4_0_x4 and q32_x4_tokens
 * (which are the reference's). */
static inline __attribute__((always_inline)) void q45_x4_tokens(int five, int nt, float *const *y, const void *w,
                                                                 const void *const *xq, int rows, int cols) {
    enum { CH = RX_CHUNK / 2 };
    const int nb = cols / DOZE_QK32;
    const size_t gb = five ? 4 * sizeof(doze_block_q5_0) : sizeof(doze_block_q4_0x4);
    const size_t qs_at = five ? 24 : 8;
    const v128_t m = wasm_i8x16_splat(0x0f), z = wasm_i32x4_splat(0);
    float dxs[2][CH];
    int32_t xs[2][2 * CH];
    v128_t xi[2][CH * 2];
    for (int bc = 0; bc < nb; bc += CH) {
        const int n = nb - bc < CH ? nb - bc : CH;
        for (int k = 0; k < nt; k++) prep_x((const doze_block_q8_0 *)xq[k] + bc, n, xi[k], dxs[k], xs[k]);
        for (int g = 0; g < rows / 4; g++) {
            const uint8_t *p = (const uint8_t *)w + ((size_t)g * (size_t)nb + (size_t)bc) * gb;
            v128_t acc[2];
            for (int k = 0; k < nt; k++) acc[k] = x4_acc_start(y[k], bc, g);
            for (int b = 0; b < n; b++, p += gb) {
                const uint8_t *qs = p + qs_at;
                const v128_t hv = five ? wasm_v128_load(p + 8) : z;
                v128_t P[2][4];
                for (int r = 0; r < 4; r++) {
                    v128_t lo, hi;
                    if (five) {
                        q5x4_codes(qs + 16 * r, hv, r, &lo, &hi);
                    } else {
                        const v128_t q = wasm_v128_load(qs + 16 * r);
                        lo = wasm_v128_and(q, m);
                        hi = wasm_u8x16_shr(q, 4);
                    }
                    for (int k = 0; k < nt; k++) {
                        const v128_t *x = xi[k] + 2 * b;
                        P[k][r] = dot_i8_u7_add(x[1], hi, dot_i8_u7_add(x[0], lo, z));
                    }
                }
                const v128_t dw = f16x4_to_f32x4(wasm_u32x4_load16x4((const uint16_t *)p));
                for (int k = 0; k < nt; k++) {
                    v128_t i = hsum4_i32x4(P[k][0], P[k][1], P[k][2], P[k][3]);
                    const int32_t sum = xs[k][2 * b] + xs[k][2 * b + 1];
                    i = wasm_i32x4_sub(i, wasm_i32x4_splat(five ? 16 * sum : 8 * sum));
                    const v128_t ds = wasm_f32x4_mul(dw, wasm_f32x4_splat(dxs[k][b]));
                    acc[k] = wasm_f32x4_add(acc[k], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(i), ds));
                }
            }
            for (int k = 0; k < nt; k++) wasm_v128_store(y[k] + 4 * g, acc[k]);
        }
    }
}

DOZE_TOKEN_PRODUCTS(relaxed_matvec_q4_0_x4, relaxed_matvec2_q4_0_x4, q45_x4_tokens, 0, )
DOZE_TOKEN_PRODUCTS(relaxed_matvec_q5_0_x4, relaxed_matvec2_q5_0_x4, q45_x4_tokens, 1, )

/* Q4_K / Q5_K, one row's sub-blocks 2k and 2k + 1: their 32 qs bytes at qs
 * hold value l of sub-block 2k in the low nibble of byte l and of 2k + 1 in
 * the high one; Q5_K's fifth bit of value l is bit 2k (2k + 1) of qh[l].
 * c[0], c[1]: sub-block 2k's codes (values 0..15, 16..31); c[2], c[3]:
 * sub-block 2k + 1's. */
static inline __attribute__((always_inline)) void kq_pair_codes(int five_bits, const uint8_t *qs, const uint8_t *qh,
                                                                int k, v128_t *c) {
    const v128_t m4 = wasm_i8x16_splat(0x0f);
    const v128_t v0 = wasm_v128_load(qs), v1 = wasm_v128_load(qs + 16);
    c[0] = wasm_v128_and(v0, m4), c[1] = wasm_v128_and(v1, m4);
    c[2] = wasm_u8x16_shr(v0, 4), c[3] = wasm_u8x16_shr(v1, 4);
    if (five_bits) {
        const v128_t h0 = wasm_v128_load(qh), h1 = wasm_v128_load(qh + 16);
        c[0] = wasm_v128_or(c[0], kq_bit_to_4(h0, 2 * k));
        c[1] = wasm_v128_or(c[1], kq_bit_to_4(h1, 2 * k));
        c[2] = wasm_v128_or(c[2], kq_bit_to_4(h0, 2 * k + 1));
        c[3] = wasm_v128_or(c[3], kq_bit_to_4(h1, 2 * k + 1));
    }
}

/* Q4_K (five_bits 0) / Q5_K (1) in the K-quant x4 layout for NT tokens (1,
 * or 2 for the prefill's tiles): per group block the 8 sub-blocks' exact
 * dots of the 4 rows (lane = row), each row's codes built once for every
 * token, then kquants_x4.h's float work: the strict kernels' bits. */
static inline __attribute__((always_inline)) void kq_x4_tokens(int five_bits, int nt, float *const *y, const void *w,
                                                                const void *const *xq, int rows, int cols) {
    enum { CH = RX_CHUNK / 2 };
    const int nb = cols / DOZE_QK8_0, nsb = cols / DOZE_QK_K;
    const size_t bb = five_bits ? sizeof(doze_block_q5_K) : sizeof(doze_block_q4_K);
    const size_t qs_at = five_bits ? offsetof(doze_block_q5_K, qs) : offsetof(doze_block_q4_K, qs);
    const size_t qh_at = offsetof(doze_block_q5_K, qh);
    const v128_t z = wasm_i32x4_splat(0);
    float dxs[2][CH];
    int32_t xs[2 * CH], xsum[2][CH];
    v128_t xi[2][CH * 2];
    for (int bc = 0; bc < nb; bc += CH) {
        const int n = nb - bc < CH ? nb - bc : CH;
        for (int t = 0; t < nt; t++) {
            prep_x((const doze_block_q8_0 *)xq[t] + bc, n, xi[t], dxs[t], xs);
            for (int b = 0; b < n; b++) xsum[t][b] = xs[2 * b] + xs[2 * b + 1];
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
                        v128_t c[4];
                        kq_pair_codes(five_bits, b4r + (size_t)r * bb + qs_at + 32 * (size_t)k,
                                      b4r + (size_t)r * bb + qh_at, k, c);
                        for (int t = 0; t < nt; t++) {
                            const v128_t *xl = xi[t] + 2 * (bl + 2 * k), *xh = xl + 2;
                            Pl[t][r] = dot_i8_u7_add(xl[1], c[1], dot_i8_u7_add(xl[0], c[0], z));
                            Ph[t][r] = dot_i8_u7_add(xh[1], c[3], dot_i8_u7_add(xh[0], c[2], z));
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

DOZE_TOKEN_PRODUCTS(relaxed_matvec_q4_K_x4, relaxed_matvec2_q4_K_x4, kq_x4_tokens, 0, )
DOZE_TOKEN_PRODUCTS(relaxed_matvec_q5_K_x4, relaxed_matvec2_q5_K_x4, kq_x4_tokens, 1, )

/* Q6_K in the K-quant x4 layout for NT tokens (1, or 2 for the prefill's
 * tiles): per quarter of a half super-block (one x block), each row's codes
 * (kquants_x4.h's q6_codes) built once and dotted with every token's x,
 * then q6_x4_quarter: kernels_simd.c's simd_matvec_q6_K_x4 bits. */
static inline __attribute__((always_inline)) void q6_K_x4_tokens(int nt, float *const *y, const void *w,
                                                                  const void *const *xq, int rows, int cols) {
    enum { CH = RX_CHUNK / 2 };
    const int nb = cols / DOZE_QK8_0, nsb = cols / DOZE_QK_K;
    const size_t bb = sizeof(doze_block_q6_K), qh_at = offsetof(doze_block_q6_K, qh);
    const v128_t z = wasm_i32x4_splat(0);
    float dxs[2][CH];
    int32_t xs[2][2 * CH];
    v128_t xi[2][CH * 2];
    for (int bc = 0; bc < nb; bc += CH) {
        const int n = nb - bc < CH ? nb - bc : CH;
        for (int k = 0; k < nt; k++) prep_x((const doze_block_q8_0 *)xq[k] + bc, n, xi[k], dxs[k], xs[k]);
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
#pragma clang loop unroll(full) /* q6_codes' shifts are picked by t */
#endif
                    for (int t = 0; t < 4; t++) {
                        v128_t Pa[2][4], Pb[2][4];
                        for (int r = 0; r < 4; r++) {
                            const uint8_t *ql = b4r + (size_t)r * bb + 64 * half + 32 * (t & 1);
                            const uint8_t *qh = b4r + (size_t)r * bb + qh_at + 32 * half;
                            const v128_t ca = q6_codes(wasm_v128_load(ql), wasm_v128_load(qh), t);
                            const v128_t cb = q6_codes(wasm_v128_load(ql + 16), wasm_v128_load(qh + 16), t);
                            for (int k = 0; k < nt; k++) {
                                const v128_t *x = xi[k] + 2 * (bl + t);
                                Pa[k][r] = dot_i8_u7_add(x[0], ca, z);
                                Pb[k][r] = dot_i8_u7_add(x[1], cb, z);
                            }
                        }
                        for (int k = 0; k < nt; k++)
                            acc[k] = q6_x4_quarter(acc[k], T, d, half, t, hsum4_i32x4(Pa[k][0], Pa[k][1], Pa[k][2], Pa[k][3]),
                                                   hsum4_i32x4(Pb[k][0], Pb[k][1], Pb[k][2], Pb[k][3]),
                                                   32 * xs[k][2 * (bl + t)], 32 * xs[k][2 * (bl + t) + 1],
                                                   dxs[k] + bl + t);
                    }
                }
            }
            for (int k = 0; k < nt; k++) wasm_v128_store(y[k] + 4 * g, acc[k]);
        }
    }
}

DOZE_TOKEN_PRODUCTS(relaxed_matvec_q6_K_x4, relaxed_matvec2_q6_K_x4, q6_K_x4_tokens, )

/* the same for q8_0 payloads in the x4 layout (finite weight scales, as the
 * loader guarantees for x4 q8_0): d' (the half's bits in f32 position) times
 * dx * 2^112 is the correctly rounded d * dx, as in simd_matvec_q8_0_x4. For
 * NT tokens (1, or 2 for the prefill's tiles): each row's 32 weights are
 * loaded once for both tokens, each token's accumulator gets the one-token
 * operations in order. */
static inline __attribute__((always_inline)) void q8_0_x4_tokens(int nt, float *const *y, const void *w,
                                                                  const void *const *xq, int rows, int cols) {
    enum { CH = RX_CHUNK / 2 };
    const doze_block_q8_0x4 *wb = w;
    const int nb = cols / DOZE_QK8_0;
    const v128_t mask = wasm_i32x4_splat((int32_t)0x8fffe000u), z = wasm_i32x4_splat(0);
    float dxs[2][CH];
    v128_t xi[2][CH * 4];
    for (int bc = 0; bc < nb; bc += CH) {
        const int n = nb - bc < CH ? nb - bc : CH;
        for (int k = 0; k < nt; k++) {
            prep_x_q8((const doze_block_q8_0 *)xq[k] + bc, n, xi[k], dxs[k]);
            for (int b = 0; b < n; b++) dxs[k][b] *= 0x1p112f;
        }
        for (int g = 0; g < rows / 4; g++) {
            const doze_block_q8_0x4 *p = wb + (size_t)g * (size_t)nb + bc;
            v128_t acc[2];
            for (int k = 0; k < nt; k++) acc[k] = x4_acc_start(y[k], bc, g);
            for (int b = 0; b < n; b++, p++) {
                v128_t P[2][4];
                for (int r = 0; r < 4; r++) {
                    const v128_t w0 = wasm_v128_load(p->qs[r]), w1 = wasm_v128_load(p->qs[r] + 16);
                    for (int k = 0; k < nt; k++) {
                        const v128_t *x = xi[k] + 4 * b;
                        const v128_t l = dot_i8_u7_add(w1, x[1], dot_i8_u7_add(w0, x[0], z));
                        const v128_t sg = dot_i8_u7_add(w1, x[3], dot_i8_u7_add(w0, x[2], z));
                        P[k][r] = wasm_i32x4_sub(l, wasm_i32x4_shl(sg, 7));
                    }
                }
                const v128_t dw = wasm_v128_and(wasm_i32x4_shl(wasm_i32x4_load16x4(p->d), 13), mask);
                for (int k = 0; k < nt; k++) {
                    const v128_t ds = wasm_f32x4_mul(dw, wasm_v128_load32_splat(dxs[k] + b));
                    const v128_t i = hsum4_i32x4(P[k][0], P[k][1], P[k][2], P[k][3]);
                    acc[k] = wasm_f32x4_add(acc[k], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(i), ds));
                }
            }
            for (int k = 0; k < nt; k++) wasm_v128_store(y[k] + 4 * g, acc[k]);
        }
    }
}

DOZE_TOKEN_PRODUCTS(relaxed_matvec_q8_0_x4, relaxed_matvec2_q8_0_x4, q8_0_x4_tokens, )

/* q4_0 row-major: row by row, block by block, the reference's order (as
 * kernels_simd.c's simd_matvec_q4_0) */
static void relaxed_matvec_q4_0(float *y, const void *w, const void *xq, int rows, int cols) {
    const doze_block_q4_0 *wb = w;
    const doze_block_q8_0 *xb = xq;
    const int nb = cols / DOZE_QK4_0;
    float dxs[RX_CHUNK];
    int32_t xs[2 * RX_CHUNK];
    v128_t xi[RX_CHUNK * 2];
    for (int bc = 0; bc < nb; bc += RX_CHUNK) {
        const int n = nb - bc < RX_CHUNK ? nb - bc : RX_CHUNK;
        prep_x(xb + bc, n, xi, dxs, xs);
        for (int r = 0; r < rows; r++) {
            const doze_block_q4_0 *p = wb + (size_t)r * (size_t)nb + bc;
            float s = bc == 0 ? 0.0f : y[r];
            for (int b = 0; b < n; b++) {
                int32_t i = hsum_i32x4(q4_dot_u(wasm_v128_load(p[b].qs), xi + 2 * b)) - 8 * (xs[2 * b] + xs[2 * b + 1]);
                s += (float)i * (doze_f16_to_f32(p[b].d) * dxs[b]);
            }
            y[r] = s;
        }
    }
}

/* k23_rows' integer dot here: the codes (0..3, 0..7) as the dot's unsigned
 * operand against x's quants (x[0], x[1] as prep_x makes them) */
static void k23_dot_relaxed(v128_t c0, v128_t c1, const v128_t *x, v128_t *pa, v128_t *pb) {
    *pa = dot_i8_u7_add(x[0], c0, wasm_i32x4_splat(0));
    *pb = dot_i8_u7_add(x[1], c1, wasm_i32x4_splat(0));
}

/* Q2_K (q3 0) / Q3_K (1), row-major, for NT tokens: kquants_x4.h's
 * k23_rows with that dot: kernels_simd.c's k23_tokens bits. */
static inline __attribute__((always_inline)) void k23_tokens(int q3, int nt, float *const *y, const void *w,
                                                             const void *const *xq, int rows, int cols) {
    enum { CH = RX_CHUNK / 2 }; /* whole super-blocks */
    const int nb = cols / DOZE_QK8_0, nsb = cols / DOZE_QK_K;
    float dxs[2][CH];
    int32_t xs[2 * CH], xsa[2][CH], xsb[2][CH];
    v128_t xi[2][CH * 2];
    const v128_t *xp[2] = {xi[0], xi[1]};
    const int32_t *ap[2] = {xsa[0], xsa[1]}, *bp[2] = {xsb[0], xsb[1]};
    const float *dp[2] = {dxs[0], dxs[1]};
    for (int bc = 0; bc < nb; bc += CH) {
        const int n = nb - bc < CH ? nb - bc : CH;
        for (int k = 0; k < nt; k++) {
            prep_x((const doze_block_q8_0 *)xq[k] + bc, n, xi[k], dxs[k], xs);
            for (int b = 0; b < n; b++) { /* Q3_K's codes are q + 4 */
                xsa[k][b] = (q3 ? 4 : 1) * xs[2 * b];
                xsb[k][b] = (q3 ? 4 : 1) * xs[2 * b + 1];
            }
        }
        k23_rows(q3, nt, y, w, rows, nsb, bc, bc / 8, bc / 8 + n / 8, xp, 2, ap, bp, dp, k23_dot_relaxed);
    }
}

DOZE_TOKEN_PRODUCTS(relaxed_matvec_q2_K, relaxed_matvec2_q2_K, k23_tokens, 0, )
DOZE_TOKEN_PRODUCTS(relaxed_matvec_q3_K, relaxed_matvec2_q3_K, k23_tokens, 1, )

/* ---- the product rows ------------------------------------------------------ */

/* a matmul over doze_matmul_tiles (kernels.h): each token the matvec's bits */
#define RELAXED_MATMUL(NAME, MV, MV2, ROW_BYTES) \
    static void NAME(float *y, int ldy, const void *w, const void *x, size_t ldx, int n, int rows, int cols) { \
        const size_t rb = (ROW_BYTES); \
        doze_matmul_tiles(rb, rb, MV, MV2, y, ldy, w, x, ldx, n, rows, cols); \
    }

RELAXED_MATMUL(q4_0_mm0, relaxed_matvec_q4_0, NULL, (size_t)(cols / DOZE_QK4_0) * sizeof(doze_block_q4_0))
RELAXED_MATMUL(q4_0_mm1, relaxed_matvec_q4_0_x4, relaxed_matvec2_q4_0_x4,
               (size_t)(cols / DOZE_QK4_0) * sizeof(doze_block_q4_0))
const doze_products doze_relaxed_q4_0 = {{relaxed_matvec_q4_0, relaxed_matvec_q4_0_x4}, {q4_0_mm0, q4_0_mm1}};

/* q8_0, q5_0 and the K-quants: row-major through the strict kernels, the
 * x4 layout here; BV: values per block; MV2: the two-token x4 product */
#define RELAXED_X4(T, BV, MV2) \
    static void T##_mv0(float *y, const void *w, const void *x, int rows, int cols) { \
        doze_simd_##T.matvec[0](y, w, x, rows, cols); \
    } \
    static void T##_mm0(float *y, int ldy, const void *w, const void *x, size_t ldx, int n, int rows, int cols) { \
        doze_simd_##T.matmul[0](y, ldy, w, x, ldx, n, rows, cols); \
    } \
    RELAXED_MATMUL(T##_mm1, relaxed_matvec_##T##_x4, MV2, (size_t)(cols / (BV)) * sizeof(doze_block_##T)) \
    const doze_products doze_relaxed_##T = {{T##_mv0, relaxed_matvec_##T##_x4}, {T##_mm0, T##_mm1}};
RELAXED_X4(q8_0, DOZE_QK8_0, relaxed_matvec2_q8_0_x4)
RELAXED_X4(q5_0, DOZE_QK32, relaxed_matvec2_q5_0_x4)
RELAXED_X4(q4_K, DOZE_QK_K, relaxed_matvec2_q4_K_x4)
RELAXED_X4(q5_K, DOZE_QK_K, relaxed_matvec2_q5_K_x4)
RELAXED_X4(q6_K, DOZE_QK_K, relaxed_matvec2_q6_K_x4)

/* Q2_K, Q3_K: row-major only (types.c) */
#define RELAXED_ROWS(T) \
    RELAXED_MATMUL(T##_mm0, relaxed_matvec_##T, relaxed_matvec2_##T, (size_t)(cols / DOZE_QK_K) * sizeof(doze_block_##T)) \
    const doze_products doze_relaxed_##T = {{relaxed_matvec_##T, NULL}, {T##_mm0, NULL}};
RELAXED_ROWS(q2_K)
RELAXED_ROWS(q3_K)

/* ---- f32, the x4 layout, on the relaxed multiply-add ---------------------- */

/* a * b + c, lane by lane: fused (one rounding) or not (two), as the engine
 * lowers f32x4.relaxed_madd (x86 with FMA, ARM: fused). Outside a relaxed
 * build, the strict mul then add. */
static inline v128_t madd_f32x4(v128_t a, v128_t b, v128_t c) {
#if defined(__wasm_relaxed_simd__)
    return (v128_t)__builtin_wasm_relaxed_madd_f32x4((__f32x4)a, (__f32x4)b, (__f32x4)c);
#else
    return f32x4_mul_add(a, b, c);
#endif
}

/* y(rows) = W(rows, cols) @ x(cols), W f32 in the x4 layout (kernels.h): the
 * strict kernel's order (row r's lane j sums w[r][4k+j] x[4k+j] over k in
 * order), each step one multiply-add */
static void relaxed_matvec_f32_x4(float *y, const void *wv, const void *xv, int rows, int cols) {
    const float *w = wv, *x = xv;
    for (int g = 0; g < rows / 4; g++) {
        const float *p = w + (size_t)g * 4u * (size_t)cols;
        v128_t a0 = wasm_f32x4_splat(0.0f), a1 = a0, a2 = a0, a3 = a0;
        for (int c = 0; c < cols; c += 4, p += 16) {
            const v128_t u = wasm_v128_load(x + c);
            a0 = madd_f32x4(wasm_v128_load(p), u, a0);
            a1 = madd_f32x4(wasm_v128_load(p + 4), u, a1);
            a2 = madd_f32x4(wasm_v128_load(p + 8), u, a2);
            a3 = madd_f32x4(wasm_v128_load(p + 12), u, a3);
        }
        wasm_v128_store(y + 4 * g, hsum4_f32x4(a0, a1, a2, a3));
    }
}

/* two tokens at once (simd.h), each token relaxed_matvec_f32_x4's steps in
 * its order: the same bits */
static void relaxed_matvec2_f32_x4(float *ya, float *yb, const void *w, const void *xa, const void *xb, int rows,
                                   int cols) {
    f32_x4_matvec2(madd_f32x4, ya, yb, w, xa, xb, rows, cols);
}

/* row-major f32 through the strict kernels */
static void f32_mv0(float *y, const void *w, const void *x, int rows, int cols) {
    doze_simd_f32.matvec[0](y, w, x, rows, cols);
}
static void f32_mm0(float *y, int ldy, const void *w, const void *x, size_t ldx, int n, int rows, int cols) {
    doze_simd_f32.matmul[0](y, ldy, w, x, ldx, n, rows, cols);
}
RELAXED_MATMUL(f32_mm1, relaxed_matvec_f32_x4, relaxed_matvec2_f32_x4, (size_t)cols * sizeof(float))
const doze_products doze_relaxed_f32 = {{f32_mv0, relaxed_matvec_f32_x4}, {f32_mm0, f32_mm1}};

/* ---- f16, the x4 layout: prefill on the relaxed multiply-add --------------- */

/* The prefill's tiles are widened to f32 exactly and run through the f32
 * kernels above. x holds the activations rounded to halves (the F16
 * activation form: halves, inf or nan), so every product w * x is exact in
 * f32 and a fused step rounds as an unfused one: each token gets the strict
 * f16 matvec's bits, which decode keeps (the strict kernel is the faster one
 * there: it multiplies the halves' raw bits by x * 2^112). Row-major f16
 * through the strict kernels. */
static void f16_mv0(float *y, const void *w, const void *x, int rows, int cols) {
    doze_simd_f16.matvec[0](y, w, x, rows, cols);
}
static void f16_mv1(float *y, const void *w, const void *x, int rows, int cols) {
    doze_simd_f16.matvec[1](y, w, x, rows, cols);
}
static void f16_mm0(float *y, int ldy, const void *w, const void *x, size_t ldx, int n, int rows, int cols) {
    doze_simd_f16.matmul[0](y, ldy, w, x, ldx, n, rows, cols);
}
static void f16_mm1(float *y, int ldy, const void *w, const void *x, size_t ldx, int n, int rows, int cols) {
    doze_f16_x4_matmul(f16_mv1, relaxed_matvec2_f32_x4, relaxed_matvec_f32_x4, y, ldy, w, x, ldx, n, rows, cols);
}
const doze_products doze_relaxed_f16 = {{f16_mv0, f16_mv1}, {f16_mm0, f16_mm1}};
