/* The one SIMD vocabulary of Doze: wasm SIMD128 intrinsics. In a wasm build
 * they are the compiler's own; natively SIMDe compiles the same source. */
#ifndef DOZE_SIMD_H
#define DOZE_SIMD_H

#if defined(__wasm_simd128__)
#include <wasm_simd128.h>
#else
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/wasm/simd128.h>
#endif

#endif
