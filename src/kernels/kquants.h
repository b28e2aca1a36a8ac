/* The K-quants (ggml's 256-value super-blocks: Q2_K, Q3_K, Q4_K, Q5_K,
 * Q6_K), IQ4_XS (the IQ4_NL grid in 256-value super-blocks) and BF16: block
 * layouts byte-exact with ggml's structs, row conversions. */
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

/* Q2_K: 16 groups of 16; value = d * (scales[g] & 15) * q - dmin *
 * (scales[g] >> 4), q in 0..3. Value v takes bits 2t, 2t+1 of
 * qs[32 * (v / 128) + v % 32], t = (v % 128) / 32: each byte holds the
 * codes of 4 values 32 apart. */
typedef struct {
    uint8_t scales[DOZE_QK_K / 16]; /* 4-bit scale (low), 4-bit min (high) */
    uint8_t qs[DOZE_QK_K / 4];
    uint16_t d;
    uint16_t dmin;
} doze_block_q2_K; /* 84 bytes */
_Static_assert(sizeof(doze_block_q2_K) == 84, "q2_K block must be 84 bytes");

/* Q3_K: 16 groups of 16; value = d * (s_g - 32) * (q - 4), q in 0..7, s_g
 * 6-bit (doze_q3_K_scale). The low 2 bits of q as Q2_K's; the third is bit
 * v / 32 of hmask[v % 32]. */
typedef struct {
    uint8_t hmask[DOZE_QK_K / 8];
    uint8_t qs[DOZE_QK_K / 4];
    uint8_t scales[12];
    uint16_t d;
} doze_block_q3_K; /* 110 bytes */
_Static_assert(sizeof(doze_block_q3_K) == 110, "q3_K block must be 110 bytes");

/* IQ4_XS: 8 sub-blocks of 32; value = d * (ls_j - 32) * grid[q], ls_j
 * 6-bit (low 4 bits in scales_l, high 2 in scales_h), q in 0..15 laid out
 * as IQ4_NL's (16 bytes per sub-block: low nibbles, then high). */
typedef struct {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[DOZE_QK_K / 64];
    uint8_t qs[DOZE_QK_K / 2];
} doze_block_iq4_xs; /* 136 bytes */
_Static_assert(sizeof(doze_block_iq4_xs) == 136, "iq4_xs block must be 136 bytes");

/* 2-bit code (0..3) of value v (0..255) of a Q2_K/Q3_K qs field */
static inline int doze_k2_code(const uint8_t *qs, int v) {
    return (qs[32 * (v / 128) + v % 32] >> (2 * ((v % 128) / 32))) & 3;
}

/* signed scale (-32..31) of group g (0..15) of a Q3_K scales field: low 4
 * bits in byte g % 8 (low nibble for g < 8), high 2 in byte 8 + g % 4 */
static inline int doze_q3_K_scale(const uint8_t *s, int g) {
    const int lo = g < 8 ? s[g] & 0x0f : s[g - 8] >> 4;
    return (lo | (((s[8 + g % 4] >> (2 * (g / 4))) & 3) << 4)) - 32;
}

/* signed scale (-32..31) of sub-block j (0..7) of an IQ4_XS super-block */
static inline int doze_iq4_xs_scale(const doze_block_iq4_xs *b, int j) {
    return (((b->scales_l[j / 2] >> (4 * (j % 2))) & 0x0f) | (((b->scales_h >> (2 * j)) & 3) << 4)) - 32;
}

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
void doze_q2_K_dequantize_row(const void *src, float *dst, int64_t n);
void doze_q3_K_dequantize_row(const void *src, float *dst, int64_t n);
void doze_iq4_xs_dequantize_row(const void *src, float *dst, int64_t n);
void doze_q4_K_dequantize_row(const void *src, float *dst, int64_t n);
void doze_q5_K_dequantize_row(const void *src, float *dst, int64_t n);
void doze_q6_K_dequantize_row(const void *src, float *dst, int64_t n);
/* dst = src(n) quantized by ggml's reference rules (the same codes ggml's
 * quantize_row_*_ref picks: searched scales and mins per sub-block) */
void doze_q4_K_quantize_row(const float *src, void *dst, int64_t n);
void doze_q5_K_quantize_row(const float *src, void *dst, int64_t n);
void doze_q6_K_quantize_row(const float *src, void *dst, int64_t n);
void doze_q2_K_quantize_row(const float *src, void *dst, int64_t n);
void doze_q3_K_quantize_row(const float *src, void *dst, int64_t n);
void doze_iq4_xs_quantize_row(const float *src, void *dst, int64_t n);

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
