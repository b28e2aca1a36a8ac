/* The K-quants (ggml's 256-value super-blocks: Q4_K, Q5_K, Q6_K) and BF16:
 * block layouts byte-exact with ggml's structs, row conversions. */
#ifndef DOZE_KQUANTS_H
#define DOZE_KQUANTS_H

#include <stdint.h>

#define DOZE_QK_K 256 /* values per super-block */

/* Q4_K: 8 sub-blocks of 32; value = d * sc_j * q - dmin * m_j, q in 0..15,
 * sc_j and m_j 6-bit (packed in scales, doze_kq_scale_min). Sub-blocks
 * 2k and 2k+1 share qs[32k .. 32k+31]: low nibbles, then high nibbles. */
typedef struct {
    uint16_t d;          /* f16 scale of the sub-block scales */
    uint16_t dmin;       /* f16 scale of the sub-block mins */
    uint8_t scales[12];  /* 8 scales and 8 mins, 6 bits each */
    uint8_t qs[DOZE_QK_K / 2];
} doze_block_q4_K; /* 144 bytes */
_Static_assert(sizeof(doze_block_q4_K) == 144, "q4_K block must be 144 bytes");

/* Q5_K: Q4_K plus a fifth bit per value: bit 2k (sub-block 2k) and 2k+1
 * (sub-block 2k+1) of qh[l] for value l of the pair's 32; q in 0..31. */
typedef struct {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qh[DOZE_QK_K / 8];
    uint8_t qs[DOZE_QK_K / 2];
} doze_block_q5_K; /* 176 bytes */
_Static_assert(sizeof(doze_block_q5_K) == 176, "q5_K block must be 176 bytes");

/* Q6_K: 16 groups of 16; value = d * scales[g] * (q - 32), q in 0..63.
 * Per half of 128 values (ql 64 bytes, qh 32, scales 8): value l (0..31)
 * of quarter t takes ql[l + 32 * (t & 1)]'s low (t < 2) or high nibble and
 * bits 2t, 2t+1 of qh[l]. */
typedef struct {
    uint8_t ql[DOZE_QK_K / 2];
    uint8_t qh[DOZE_QK_K / 4];
    int8_t scales[DOZE_QK_K / 16];
    uint16_t d;
} doze_block_q6_K; /* 210 bytes */
_Static_assert(sizeof(doze_block_q6_K) == 210, "q6_K block must be 210 bytes");

/* 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K scales field */
static inline void doze_kq_scale_min(const uint8_t *q, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* dst(n) = values; n a multiple of 256 */
void doze_q4_K_dequantize_row(const void *src, float *dst, int64_t n);
void doze_q5_K_dequantize_row(const void *src, float *dst, int64_t n);
void doze_q6_K_dequantize_row(const void *src, float *dst, int64_t n);
/* dst = src(n) quantized by ggml's reference rules (the same codes ggml's
 * quantize_row_*_ref picks: searched scales and mins per sub-block) */
void doze_q4_K_quantize_row(const float *src, void *dst, int64_t n);
void doze_q5_K_quantize_row(const float *src, void *dst, int64_t n);
void doze_q6_K_quantize_row(const float *src, void *dst, int64_t n);

/* BF16: the top 16 bits of an f32 */
static inline float doze_bf16_to_f32(uint16_t h) {
    union {
        uint32_t u;
        float f;
    } v;
    v.u = (uint32_t)h << 16;
    return v.f;
}
/* round to nearest even; NaN stays a (quiet) NaN */
uint16_t doze_f32_to_bf16(float f);
void doze_bf16_dequantize_row(const void *src, float *dst, int64_t n);
void doze_bf16_quantize_row(const float *src, void *dst, int64_t n);

#endif
