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

/* index of the grid value nearest to v, ties to the lower (ties_up 0) or
 * the upper (1, ggml's IQ4_XS rule); NaN gives 0 */
int doze_iq4_nearest(float v, int ties_up);

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

/* code (0..15 / 0..31) of element j (0..31) of a block's payload */
static inline int doze_q32_code(const uint8_t *qs, const uint8_t *qh, int j) {
    int q = j < 16 ? qs[j] & 0x0f : qs[j - 16] >> 4;
    if (qh) q |= ((qh[j / 8] >> (j % 8)) & 1) << 4;
    return q;
}

/* The x4 layout of Q5_0/Q5_1 (types.c packs it): after the 4 rows' halves,
 * 16 bytes h, then each row's 16 bytes q. Byte j of row r's q holds code j
 * (0..31) in bits 0..4 and the low 3 bits of code j + 16 in bits 5..7; bits
 * 2r and 2r + 1 of h[j] hold the top 2 bits of code j + 16. So codes 0..15
 * are one mask away, and codes 16..31 one shift of q and one uniform shift
 * and mask of h (no per-lane bit select): the unpacking the products pay
 * for every weight. The same bytes as the file's blocks. */
static inline int doze_q5x4_code(const uint8_t *h, const uint8_t *q, int r, int j) {
    return j < 16 ? q[j] & 31 : (q[j - 16] >> 5) | (((h[j - 16] >> (2 * r)) & 3) << 3);
}

/* row r's codes in an x4 group block (h, its q) back in the file's form */
static inline void doze_q5x4_to_block(const uint8_t *h, const uint8_t *q, int r, uint8_t qh[4], uint8_t qs[16]) {
    for (int i = 0; i < 4; i++) qh[i] = 0;
    for (int j = 0; j < 16; j++) {
        const int a = doze_q5x4_code(h, q, r, j), b = doze_q5x4_code(h, q, r, j + 16);
        qs[j] = (uint8_t)((a & 15) | (b & 15) << 4);
        qh[j / 8] |= (uint8_t)((a >> 4) << (j % 8));
        qh[2 + j / 8] |= (uint8_t)((b >> 4) << (j % 8));
    }
}

#endif
