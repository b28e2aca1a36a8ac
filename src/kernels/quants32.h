/* The other 32-value block types real GGUF files hold: Q4_1, Q5_0, Q5_1
 * (ggml's legacy types) and IQ4_NL (a non-linear 4-bit grid). llama.cpp's
 * K-quant mixes fall back to them for matrices whose rows are not whole
 * 256-value super-blocks (Q4_K -> Q5_0, Q5_K -> Q5_1; IQ types -> IQ4_NL),
 * so models of dim 576 or 896 (SmolLM2-135M, Qwen2.5-0.5B) need them.
 * Block layouts byte-exact with ggml's structs; element j of a block is the
 * low nibble of qs[j] (j < 16) or the high nibble of qs[j - 16]. */
#ifndef DOZE_QUANTS32_H
#define DOZE_QUANTS32_H

#include <stdint.h>

#define DOZE_QK32 32 /* values per block of these types */

/* Q4_1: value = d * q + m, q in 0..15 */
typedef struct {
    uint16_t d; /* f16 */
    uint16_t m; /* f16 */
    uint8_t qs[16];
} doze_block_q4_1; /* 20 bytes */
_Static_assert(sizeof(doze_block_q4_1) == 20, "q4_1 block must be 20 bytes");

/* Q5_0: value = d * (q - 16), q in 0..31: the nibble, and bit j of qh (read
 * as a little-endian u32) as the fifth bit of element j */
typedef struct {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[16];
} doze_block_q5_0; /* 22 bytes */
_Static_assert(sizeof(doze_block_q5_0) == 22, "q5_0 block must be 22 bytes");

/* Q5_1: value = d * q + m, q in 0..31 (fifth bits as Q5_0) */
typedef struct {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[16];
} doze_block_q5_1; /* 24 bytes */
_Static_assert(sizeof(doze_block_q5_1) == 24, "q5_1 block must be 24 bytes");

/* IQ4_NL: value = d * doze_iq4nl_values[q], q in 0..15 */
typedef struct {
    uint16_t d;
    uint8_t qs[16];
} doze_block_iq4_nl; /* 18 bytes */
_Static_assert(sizeof(doze_block_iq4_nl) == 18, "iq4_nl block must be 18 bytes");

/* ggml's IQ4_NL grid (the file format fixes it) */
extern const int8_t doze_iq4nl_values[16];

/* dst(n) = values; n a multiple of 32 */
void doze_q4_1_dequantize_row(const void *src, float *dst, int64_t n);
void doze_q5_0_dequantize_row(const void *src, float *dst, int64_t n);
void doze_q5_1_dequantize_row(const void *src, float *dst, int64_t n);
void doze_iq4_nl_dequantize_row(const void *src, float *dst, int64_t n);
/* dst = src(n) quantized. Each block takes the candidate (ggml's own rule
 * among them) whose stored (f16-rounded) scales reconstruct it with the
 * smallest squared error, so the error is never worse than ggml's rule. */
void doze_q4_1_quantize_row(const float *src, void *dst, int64_t n);
void doze_q5_0_quantize_row(const float *src, void *dst, int64_t n);
void doze_q5_1_quantize_row(const float *src, void *dst, int64_t n);
void doze_iq4_nl_quantize_row(const float *src, void *dst, int64_t n);

/* The x4 layout of Q5_0/Q5_1 (types.c packs it) keeps each group block's 4
 * qh words (128 fifth bits) as 16 bytes transposed: bit 2r + j / 16 of byte
 * j % 16 is the fifth bit of element j of row r. So the fifth bits of 16
 * codes (one row, elements 0..15 or 16..31) are one bit position of those
 * 16 bytes, moved to bit 4 by one uniform shift: no per-lane bit select. */
static inline int doze_q5x4_bit(const uint8_t *hv, int r, int j) {
    return (hv[j % 16] >> (2 * r + j / 16)) & 1;
}

/* code (0..15 / 0..31) of element j (0..31) of a block's payload */
static inline int doze_q32_code(const uint8_t *qs, const uint8_t *qh, int j) {
    int q = j < 16 ? qs[j] & 0x0f : qs[j - 16] >> 4;
    if (qh) q |= ((qh[j / 8] >> (j % 8)) & 1) << 4;
    return q;
}

#endif
