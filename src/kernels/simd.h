/* The one SIMD vocabulary of Doze: wasm SIMD128 intrinsics. In a wasm build
 * they are the compiler's own; natively SIMDe compiles the same source. */
#ifndef DOZE_SIMD_H
#define DOZE_SIMD_H

#include <stdint.h>

#if defined(__wasm_simd128__)
#include <wasm_simd128.h>
#else
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/wasm/simd128.h>
#endif

/* The 32 five-bit codes (0..31) of row r of a Q5_0/Q5_1 block in the x4
 * layout: its 16 qs bytes at qs and the group's transposed fifth bits hv
 * (quants32.h's doze_q5x4_bit): elements 0..15 take bit 2r of each byte,
 * 16..31 bit 2r + 1, each moved to bit 4 by one u16 shift (the bits a
 * shift carries across a byte boundary are masked off). *lo: elements
 * 0..15, *hi: 16..31, a byte each. */
static inline __attribute__((always_inline)) void q5x4_codes(const uint8_t *qs, v128_t hv, int r, v128_t *lo,
                                                             v128_t *hi) {
    const v128_t m4 = wasm_i8x16_splat(0x0f), b4 = wasm_i8x16_splat(0x10);
    const v128_t v = wasm_v128_load(qs);
    const v128_t hl = r == 0 ? wasm_i16x8_shl(hv, 4) : r == 1 ? wasm_i16x8_shl(hv, 2) : r == 2 ? hv : wasm_u16x8_shr(hv, 2);
    const v128_t hh = r == 0   ? wasm_i16x8_shl(hv, 3)
                      : r == 1 ? wasm_i16x8_shl(hv, 1)
                      : r == 2 ? wasm_u16x8_shr(hv, 1)
                               : wasm_u16x8_shr(hv, 3);
    *lo = wasm_v128_or(wasm_v128_and(v, m4), wasm_v128_and(hl, b4));
    *hi = wasm_v128_or(wasm_v128_and(wasm_u16x8_shr(v, 4), m4), wasm_v128_and(hh, b4));
}

#endif
