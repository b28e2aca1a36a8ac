/* The per-type traits table and the scalar conversions behind it. */
#include "types.h"

#include "kquants.h"
#include "quants32.h"

#include <math.h>
#include <string.h>

float doze_f16_to_f32(uint16_t h) {
    /* Move exponent+mantissa into place and rescale by 2^112: exact for
     * normals and subnormals; infinities and NaNs get the f32 exponent. */
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t bits = (uint32_t)(h & 0x7fffu) << 13;
    float f;
    memcpy(&f, &bits, 4);
    f *= 0x1p112f;
    memcpy(&bits, &f, 4);
    if ((h & 0x7c00u) == 0x7c00u) bits |= 0x7f800000u;
    bits |= sign;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t doze_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) { /* inf or nan */
        return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u));
    }
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65520: inf */
    if (ax < 0x38800000u) { /* below the smallest normal half: subnormal or zero */
        /* value = ax as float; subnormal half unit is 2^-24 */
        float a;
        memcpy(&a, &ax, 4);
        float scaled = a * 0x1p24f; /* exact */
        /* round half to even */
        float r = nearbyintf(scaled);
        return (uint16_t)(sign | (uint16_t)r);
    }
    /* normal: rebias exponent, round mantissa 23 -> 10 bits, half to even */
    uint32_t mant_odd = (ax >> 13) & 1u;
    ax += 0xfffu + mant_odd;
    ax -= (uint32_t)(127 - 15) << 23;
    return (uint16_t)(sign | (ax >> 13));
}

static void f32_dequantize_row(const void *src, float *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void f32_quantize_row(const float *src, void *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void f16_dequantize_row(const void *src, float *dst, int64_t n) {
    const uint16_t *h = src;
    for (int64_t i = 0; i < n; i++) dst[i] = doze_f16_to_f32(h[i]);
}

static void f16_quantize_row(const float *src, void *dst, int64_t n) {
    uint16_t *h = dst;
    for (int64_t i = 0; i < n; i++) h[i] = doze_f32_to_f16(src[i]);
}

static void q8_0_dequantize_row(const void *src, float *dst, int64_t n) {
    const doze_block_q8_0 *b = src;
    for (int64_t i = 0; i < n / DOZE_QK8_0; i++) {
        float d = doze_f16_to_f32(b[i].d);
        for (int j = 0; j < DOZE_QK8_0; j++) dst[i * DOZE_QK8_0 + j] = d * (float)b[i].qs[j];
    }
}

/* roundf to int8 as the SIMD kernel's saturating conversion does: NaN
 * (from a hostile model's weights) gives 0, +-inf saturate; converting
 * those with a plain cast would be undefined behaviour. Finite values of a
 * block (|x| <= 127 after scaling) are unchanged. */
static int8_t q8_round(float v) {
    if (!(v == v)) return 0;
    float r = roundf(v);
    return (int8_t)(r > 127.0f ? 127.0f : r < -128.0f ? -128.0f : r);
}

/* ggml's q8_0: d = max|x| / 127, q = round(x / d) */
static void q8_0_quantize_row(const float *src, void *dst, int64_t n) {
    doze_block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / DOZE_QK8_0; i++) {
        const float *x = src + i * DOZE_QK8_0;
        float amax = 0.0f;
        for (int j = 0; j < DOZE_QK8_0; j++) {
            float a = fabsf(x[j]);
            if (a > amax) amax = a;
        }
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = doze_f32_to_f16(d);
        for (int j = 0; j < DOZE_QK8_0; j++) b[i].qs[j] = q8_round(x[j] * id);
    }
}

static void q4_0_dequantize_row(const void *src, float *dst, int64_t n) {
    const doze_block_q4_0 *b = src;
    for (int64_t i = 0; i < n / DOZE_QK4_0; i++) {
        float d = doze_f16_to_f32(b[i].d);
        for (int j = 0; j < DOZE_QK4_0 / 2; j++) {
            dst[i * DOZE_QK4_0 + j] = (float)((int)(b[i].qs[j] & 0x0f) - 8) * d;
            dst[i * DOZE_QK4_0 + j + DOZE_QK4_0 / 2] = (float)((int)(b[i].qs[j] >> 4) - 8) * d;
        }
    }
}

/* ggml's (int8_t)(v) then min(15, .) for v = x / d + 8.5 (>= 0.5 for
 * finite blocks); NaN (from a hostile model) gives 0 instead of the
 * undefined cast, +-inf saturate to 0 and 15. */
static uint8_t q4_trunc(float v) {
    if (!(v >= 1.0f)) return 0;
    if (v >= 15.0f) return 15;
    return (uint8_t)(int8_t)v;
}

/* q4_0 code of x for scale inverse id: min(15, (int8_t)(x * id + 8.5)) as
 * ggml's reference quantizer rounds (q - 8 is round-half-up of x / d,
 * clamped to [-8, 7]) */
static uint8_t q4_code(float x, float id) { return q4_trunc(x * id + 8.5f); }

/* sum over the block of (x - d * (code - 8))^2 */
static double q4_block_error(const float *x, float d, float id) {
    double e = 0.0;
    for (int j = 0; j < DOZE_QK4_0; j++) {
        double r = (double)x[j] - (double)d * (double)((int)q4_code(x[j], id) - 8);
        e += r * r;
    }
    return e;
}

/* Scale candidates per block: ggml's choice (the signed value of largest
 * magnitude maps to -8, d = max / -8) plus Q4_SCALE_STEPS scales spread
 * from max / -8 to max / -6 (codes rounded differently, the extreme one
 * clipped), each refitted by least squares (d = sum x q / sum q^2 for the
 * codes it gives). The stored d is the f16 of the candidate whose f16 scale
 * reconstructs the block with the smallest squared error, so quantizing is
 * never worse than ggml's rule; the file format is ggml's Q4_0 unchanged. */
#define Q4_SCALE_STEPS 16
#define Q4_REFITS 1

static void q4_0_quantize_row(const float *src, void *dst, int64_t n) {
    doze_block_q4_0 *b = dst;
    for (int64_t i = 0; i < n / DOZE_QK4_0; i++) {
        const float *x = src + i * DOZE_QK4_0;
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < DOZE_QK4_0; j++) {
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        /* ggml's scale first: ties keep it */
        uint16_t best_h = doze_f32_to_f16(max / -8.0f);
        float best_d = doze_f16_to_f32(best_h);
        double best_e = q4_block_error(x, best_d, best_d != 0.0f ? 1.0f / best_d : 0.0f);
        for (int k = 0; k <= Q4_SCALE_STEPS && max != 0.0f && best_e > 0.0; k++) {
            float denom = -8.0f + 2.0f * (float)k / (float)Q4_SCALE_STEPS;
            float id = denom / max;
            double sxq = 0.0, sqq = 0.0;
            for (int j = 0; j < DOZE_QK4_0; j++) {
                int q = (int)q4_code(x[j], id) - 8;
                sxq += (double)x[j] * q;
                sqq += (double)q * q;
            }
            if (sqq <= 0.0) continue;
            /* alternate codes and least-squares scale while the error drops */
            for (int it = 0; it < Q4_REFITS; it++) {
                uint16_t h = doze_f32_to_f16((float)(sxq / sqq));
                float d = doze_f16_to_f32(h);
                if (!(d == d) || d == 0.0f || isinf(d)) break;
                double e = q4_block_error(x, d, 1.0f / d);
                if (!(e < best_e)) break;
                best_e = e;
                best_h = h;
                best_d = d;
                sxq = sqq = 0.0;
                for (int j = 0; j < DOZE_QK4_0; j++) {
                    int q = (int)q4_code(x[j], 1.0f / d) - 8;
                    sxq += (double)x[j] * q;
                    sqq += (double)q * q;
                }
                if (sqq <= 0.0) break;
            }
        }
        float id = best_d != 0.0f ? 1.0f / best_d : 0.0f;
        b[i].d = best_h;
        for (int j = 0; j < DOZE_QK4_0 / 2; j++) {
            uint8_t q0 = q4_code(x[j], id);
            uint8_t q1 = q4_code(x[j + DOZE_QK4_0 / 2], id);
            b[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

/* ---- the x4 layouts (kernels.h): repack of a group of 4 rows, row gather -- */

/* f32/f16: the 4 rows' 16-byte chunks (4 f32 or 8 f16 columns) side by side */
static void x4_pack_chunks(uint8_t *grp, size_t row, uint8_t *tmp) {
    const size_t chunk = 16;
    memcpy(tmp, grp, 4 * row);
    for (size_t k = 0; k < row / chunk; k++)
        for (int r = 0; r < 4; r++) memcpy(grp + (k * 4 + (size_t)r) * chunk, tmp + (size_t)r * row + k * chunk, chunk);
}

static void f32_x4_pack(uint8_t *grp, uint64_t cols, uint8_t *tmp) { x4_pack_chunks(grp, (size_t)cols * 4u, tmp); }
static void f16_x4_pack(uint8_t *grp, uint64_t cols, uint8_t *tmp) { x4_pack_chunks(grp, (size_t)cols * 2u, tmp); }

/* row k of an f32 x4 group: its 4-column chunks, 64 bytes apart */
static void f32_x4_row(const uint8_t *grp, int k, uint64_t cols, float *out) {
    const float *g = (const float *)grp;
    for (uint64_t c = 0; c < cols; c += 4) memcpy(out + c, g + (size_t)c * 4 + (size_t)k * 4, 16);
}

/* row k of an f16 x4 group: its 8-column chunks, 64 bytes apart */
static void f16_x4_row(const uint8_t *grp, int k, uint64_t cols, float *out) {
    const uint16_t *g = (const uint16_t *)grp;
    for (uint64_t c = 0; c < cols; c++)
        out[c] = doze_f16_to_f32(g[(size_t)(c / 8) * 32 + (size_t)k * 8 + (size_t)(c % 8)]);
}

/* q types whose block is an f16 scale then a payload: block by block, the
 * 4 rows' scales, then their 4 payloads */
static void x4_pack_blocks(uint8_t *grp, size_t nb, size_t bb, uint8_t *tmp) {
    const size_t pay = bb - 2, row = nb * bb;
    memcpy(tmp, grp, 4 * row);
    for (size_t b = 0; b < nb; b++) {
        uint8_t *o = grp + b * 4 * bb;
        for (int r = 0; r < 4; r++) {
            const uint8_t *src = tmp + (size_t)r * row + b * bb;
            memcpy(o + 2 * r, src, 2);
            memcpy(o + 8 + (size_t)r * pay, src + 2, pay);
        }
    }
}

/* row k of such an x4 group, gathered back one block at a time */
static void x4_row_blocks(const uint8_t *grp, int k, size_t nb, size_t bb, size_t bs,
                          void (*deq)(const void *, float *, int64_t), float *out) {
    const size_t pay = bb - 2;
    uint8_t blk[64];
    for (size_t b = 0; b < nb; b++) {
        const uint8_t *o = grp + b * 4 * bb;
        memcpy(blk, o + 2 * (size_t)k, 2);
        memcpy(blk + 2, o + 8 + (size_t)k * pay, pay);
        deq(blk, out + b * bs, (int64_t)bs);
    }
}

static void q8_0_x4_pack(uint8_t *grp, uint64_t cols, uint8_t *tmp) {
    x4_pack_blocks(grp, (size_t)cols / DOZE_QK8_0, sizeof(doze_block_q8_0), tmp);
}
static void q4_0_x4_pack(uint8_t *grp, uint64_t cols, uint8_t *tmp) {
    x4_pack_blocks(grp, (size_t)cols / DOZE_QK4_0, sizeof(doze_block_q4_0), tmp);
}
static void q8_0_x4_row(const uint8_t *grp, int k, uint64_t cols, float *out) {
    x4_row_blocks(grp, k, (size_t)cols / DOZE_QK8_0, sizeof(doze_block_q8_0), DOZE_QK8_0, q8_0_dequantize_row, out);
}
static void q4_0_x4_row(const uint8_t *grp, int k, uint64_t cols, float *out) {
    x4_row_blocks(grp, k, (size_t)cols / DOZE_QK4_0, sizeof(doze_block_q4_0), DOZE_QK4_0, q4_0_dequantize_row, out);
}

/* Q4_1, Q5_0, Q5_1, IQ4_NL: block by block, the 4 rows' first half (d),
 * then for Q4_1/Q5_1 their second half (m), then for Q5_0/Q5_1 (five) their
 * codes as quants32.h's doze_q5x4_code reads them (16 bytes h, then each
 * row's 16 bytes), else their 4 payloads. nh: halves at the block's start. */
static void x4_pack_q32(uint8_t *grp, uint64_t cols, size_t bb, size_t nh, int five, uint8_t *tmp) {
    const size_t nb = (size_t)cols / DOZE_QK32, row = nb * bb, pay = bb - 2 * nh - (five ? 4 : 0);
    const size_t at = 8 * nh + (five ? 16 : 0);
    memcpy(tmp, grp, 4 * row);
    for (size_t b = 0; b < nb; b++) {
        uint8_t *o = grp + b * 4 * bb;
        if (five) memset(o + 8 * nh, 0, 16);
        for (size_t r = 0; r < 4; r++) {
            const uint8_t *src = tmp + r * row + b * bb;
            for (size_t h = 0; h < nh; h++) memcpy(o + 8 * h + 2 * r, src + 2 * h, 2);
            if (!five) {
                memcpy(o + at + r * pay, src + bb - pay, pay);
                continue;
            }
            const uint8_t *qh = src + 2 * nh, *qs = qh + 4;
            uint8_t *q = o + at + r * pay, *hb = o + 8 * nh;
            for (int j = 0; j < 16; j++) {
                const int a = doze_q32_code(qs, qh, j), c = doze_q32_code(qs, qh, j + 16);
                q[j] = (uint8_t)(a | (c & 7) << 5);
                hb[j] |= (uint8_t)((c >> 3) << (2 * r));
            }
        }
    }
}

static void x4_row_q32(const uint8_t *grp, int k, uint64_t cols, size_t bb, size_t nh, int five,
                       void (*deq)(const void *, float *, int64_t), float *out) {
    const size_t pay = bb - 2 * nh - (five ? 4 : 0), at = 8 * nh + (five ? 16 : 0);
    uint8_t blk[32];
    for (size_t b = 0; b < (size_t)cols / DOZE_QK32; b++) {
        const uint8_t *o = grp + b * 4 * bb;
        for (size_t h = 0; h < nh; h++) memcpy(blk + 2 * h, o + 8 * h + 2 * (size_t)k, 2);
        if (five)
            doze_q5x4_to_block(o + 8 * nh, o + at + (size_t)k * pay, k, blk + 2 * nh, blk + 2 * nh + 4);
        else
            memcpy(blk + bb - pay, o + at + (size_t)k * pay, pay);
        deq(blk, out + b * DOZE_QK32, DOZE_QK32);
    }
}

#define Q32_X4(T, NH, FIVE) \
    static void T##_x4_pack(uint8_t *grp, uint64_t cols, uint8_t *tmp) { \
        x4_pack_q32(grp, cols, sizeof(doze_block_##T), NH, FIVE, tmp); \
    } \
    static void T##_x4_row(const uint8_t *grp, int k, uint64_t cols, float *out) { \
        x4_row_q32(grp, k, cols, sizeof(doze_block_##T), NH, FIVE, doze_##T##_dequantize_row, out); \
    }
Q32_X4(q4_1, 2, 0)
Q32_X4(q5_0, 1, 1)
Q32_X4(q5_1, 2, 1)
Q32_X4(iq4_nl, 1, 0)

/* K-quants: the 4 rows' super-block i side by side (whole blocks: their
 * scales sit inside the block) */
static void x4_pack_superblocks(uint8_t *grp, uint64_t cols, size_t bb, uint8_t *tmp) {
    const size_t nsb = (size_t)cols / DOZE_QK_K, row = nsb * bb;
    memcpy(tmp, grp, 4 * row);
    for (size_t i = 0; i < nsb; i++)
        for (size_t r = 0; r < 4; r++) memcpy(grp + (i * 4 + r) * bb, tmp + r * row + i * bb, bb);
}

static void x4_row_superblocks(const uint8_t *grp, int k, uint64_t cols, size_t bb,
                               void (*deq)(const void *, float *, int64_t), float *out) {
    for (size_t i = 0; i < (size_t)cols / DOZE_QK_K; i++)
        deq(grp + (i * 4 + (size_t)k) * bb, out + i * DOZE_QK_K, DOZE_QK_K);
}

/* a 256-value type's x4 pack and row gather */
#define KQ_X4(T) \
    static void T##_x4_pack(uint8_t *grp, uint64_t cols, uint8_t *tmp) { \
        x4_pack_superblocks(grp, cols, sizeof(doze_block_##T), tmp); \
    } \
    static void T##_x4_row(const uint8_t *grp, int k, uint64_t cols, float *out) { \
        x4_row_superblocks(grp, k, cols, sizeof(doze_block_##T), doze_##T##_dequantize_row, out); \
    }
KQ_X4(q4_K)
KQ_X4(q5_K)
KQ_X4(q6_K)
KQ_X4(iq4_xs)

/* f16: an inf or nan half anywhere (matvec_f16_x4 takes none) */
static int f16_x4_refuses(const uint8_t *p, uint64_t n_bytes) {
    for (uint64_t i = 0; i < n_bytes / 2; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        if ((h & 0x7c00u) == 0x7c00u) return 1;
    }
    return 0;
}

/* q8_0: a block with an inf/nan scale (matvec_q8_0_x4 takes none) */
static int q8_0_x4_refuses(const uint8_t *p, uint64_t n_bytes) {
    for (uint64_t i = 0; i < n_bytes / sizeof(doze_block_q8_0); i++) {
        uint16_t h;
        memcpy(&h, p + i * sizeof(doze_block_q8_0), 2);
        if ((h & 0x7c00u) == 0x7c00u) return 1;
    }
    return 0;
}

/* ---- the table, indexed by doze_type ---------------------------------------- */

#define N_TYPE_SLOTS 32

static const doze_type_traits type_table[N_TYPE_SLOTS] = {
    [DOZE_TYPE_F32] = {DOZE_TYPE_F32, "f32", 1, 4, f32_dequantize_row, f32_quantize_row, DOZE_TYPE_F32, -1, 4,
                       f32_x4_pack, f32_x4_row, NULL, {&DOZE_SIMD_F32, &doze_ref_f32}},
    [DOZE_TYPE_F16] = {DOZE_TYPE_F16, "f16", 1, 2, f16_dequantize_row, f16_quantize_row, DOZE_TYPE_F16, -1, 8,
                       f16_x4_pack, f16_x4_row, f16_x4_refuses, {&DOZE_SIMD_F16, &doze_ref_f16}},
    [DOZE_TYPE_Q8_0] = {DOZE_TYPE_Q8_0, "q8_0", DOZE_QK8_0, (int)sizeof(doze_block_q8_0), q8_0_dequantize_row,
                        q8_0_quantize_row, DOZE_TYPE_Q8_0, DOZE_TYPE_F32, DOZE_QK8_0, q8_0_x4_pack, q8_0_x4_row,
                        q8_0_x4_refuses, {&DOZE_SIMD_Q8_0, &doze_ref_q8_0}},
    [DOZE_TYPE_Q4_0] = {DOZE_TYPE_Q4_0, "q4_0", DOZE_QK4_0, (int)sizeof(doze_block_q4_0), q4_0_dequantize_row,
                        q4_0_quantize_row, DOZE_TYPE_Q8_0, DOZE_TYPE_F32, DOZE_QK4_0, q4_0_x4_pack, q4_0_x4_row,
                        NULL, {&DOZE_SIMD_Q4_0, &doze_ref_q4_0}},
    [DOZE_TYPE_Q4_K] = {DOZE_TYPE_Q4_K, "q4_k", DOZE_QK_K, (int)sizeof(doze_block_q4_K), doze_q4_K_dequantize_row,
                        doze_q4_K_quantize_row, DOZE_TYPE_Q8_0, DOZE_TYPE_Q8_0, DOZE_QK_K, q4_K_x4_pack,
                        q4_K_x4_row, NULL, {&DOZE_SIMD_Q4_K, &doze_ref_q4_K}},
    [DOZE_TYPE_Q5_K] = {DOZE_TYPE_Q5_K, "q5_k", DOZE_QK_K, (int)sizeof(doze_block_q5_K), doze_q5_K_dequantize_row,
                        doze_q5_K_quantize_row, DOZE_TYPE_Q8_0, DOZE_TYPE_Q8_0, DOZE_QK_K, q5_K_x4_pack,
                        q5_K_x4_row, NULL, {&DOZE_SIMD_Q5_K, &doze_ref_q5_K}},
    [DOZE_TYPE_Q6_K] = {DOZE_TYPE_Q6_K, "q6_k", DOZE_QK_K, (int)sizeof(doze_block_q6_K), doze_q6_K_dequantize_row,
                        doze_q6_K_quantize_row, DOZE_TYPE_Q8_0, DOZE_TYPE_Q8_0, DOZE_QK_K, q6_K_x4_pack,
                        q6_K_x4_row, NULL, {&DOZE_SIMD_Q6_K, &doze_ref_q6_K}},
    [DOZE_TYPE_Q2_K] = {DOZE_TYPE_Q2_K, "q2_k", DOZE_QK_K, (int)sizeof(doze_block_q2_K), doze_q2_K_dequantize_row,
                        doze_q2_K_quantize_row, DOZE_TYPE_Q8_0, DOZE_TYPE_Q8_0, 0, NULL, NULL, NULL,
                        {&DOZE_SIMD_Q2_K, &doze_ref_q2_K}},
    [DOZE_TYPE_Q3_K] = {DOZE_TYPE_Q3_K, "q3_k", DOZE_QK_K, (int)sizeof(doze_block_q3_K), doze_q3_K_dequantize_row,
                        doze_q3_K_quantize_row, DOZE_TYPE_Q8_0, DOZE_TYPE_Q8_0, 0, NULL, NULL, NULL,
                        {&DOZE_SIMD_Q3_K, &doze_ref_q3_K}},
    [DOZE_TYPE_IQ4_XS] = {DOZE_TYPE_IQ4_XS, "iq4_xs", DOZE_QK_K, (int)sizeof(doze_block_iq4_xs),
                          doze_iq4_xs_dequantize_row, doze_iq4_xs_quantize_row, DOZE_TYPE_Q8_0, DOZE_TYPE_Q8_0, DOZE_QK_K,
                          iq4_xs_x4_pack, iq4_xs_x4_row, NULL, {&doze_simd_iq4_xs, &doze_ref_iq4_xs}},
    [DOZE_TYPE_Q4_1] = {DOZE_TYPE_Q4_1, "q4_1", DOZE_QK32, (int)sizeof(doze_block_q4_1), doze_q4_1_dequantize_row,
                        doze_q4_1_quantize_row, DOZE_TYPE_Q8_0, DOZE_TYPE_F32, DOZE_QK32, q4_1_x4_pack, q4_1_x4_row,
                        NULL, {&doze_simd_q4_1, &doze_ref_q4_1}},
    [DOZE_TYPE_Q5_0] = {DOZE_TYPE_Q5_0, "q5_0", DOZE_QK32, (int)sizeof(doze_block_q5_0), doze_q5_0_dequantize_row,
                        doze_q5_0_quantize_row, DOZE_TYPE_Q8_0, DOZE_TYPE_F32, DOZE_QK32, q5_0_x4_pack, q5_0_x4_row,
                        NULL, {&DOZE_SIMD_Q5_0, &doze_ref_q5_0}},
    [DOZE_TYPE_Q5_1] = {DOZE_TYPE_Q5_1, "q5_1", DOZE_QK32, (int)sizeof(doze_block_q5_1), doze_q5_1_dequantize_row,
                        doze_q5_1_quantize_row, DOZE_TYPE_Q8_0, DOZE_TYPE_F32, DOZE_QK32, q5_1_x4_pack, q5_1_x4_row,
                        NULL, {&doze_simd_q5_1, &doze_ref_q5_1}},
    [DOZE_TYPE_IQ4_NL] = {DOZE_TYPE_IQ4_NL, "iq4_nl", DOZE_QK32, (int)sizeof(doze_block_iq4_nl),
                          doze_iq4_nl_dequantize_row, doze_iq4_nl_quantize_row, DOZE_TYPE_Q8_0, DOZE_TYPE_F32, DOZE_QK32,
                          iq4_nl_x4_pack, iq4_nl_x4_row, NULL, {&doze_simd_iq4_nl, &doze_ref_iq4_nl}},
    [DOZE_TYPE_BF16] = {DOZE_TYPE_BF16, "bf16", 1, 2, doze_bf16_dequantize_row, doze_bf16_quantize_row, DOZE_TYPE_BF16,
                        -1, 0, NULL, NULL, NULL, {&doze_simd_bf16, &doze_ref_bf16}},
};

const doze_type_traits *doze_type_traits_of(int type) {
    if (type < 0 || type >= N_TYPE_SLOTS || !type_table[type].name) return NULL;
    return &type_table[type];
}

size_t doze_type_act_bytes(const doze_type_traits *t, int cols) {
    return t->act_type == DOZE_TYPE_Q8_0 ? (size_t)(cols / DOZE_QK8_0) * sizeof(doze_block_q8_0)
                                         : (size_t)cols * sizeof(float);
}

void doze_round_input(int act_type, const float *x, float *out, int n) {
    if (act_type == DOZE_TYPE_BF16)
        for (int i = 0; i < n; i++) out[i] = doze_bf16_to_f32(doze_f32_to_bf16(x[i]));
    else
        for (int i = 0; i < n; i++) out[i] = doze_f16_to_f32(doze_f32_to_f16(x[i]));
}

uint64_t doze_type_row_bytes(int type, uint64_t n) {
    const doze_type_traits *t = doze_type_traits_of(type);
    if (!t || n % (uint64_t)t->block_size != 0) return 0;
    return n / (uint64_t)t->block_size * (uint64_t)t->block_bytes;
}

const char *doze_type_name(int type) {
    const doze_type_traits *t = doze_type_traits_of(type);
    return t ? t->name : NULL;
}

int doze_type_from_name(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < N_TYPE_SLOTS; i++)
        if (type_table[i].name && strcmp(type_table[i].name, name) == 0) return type_table[i].type;
    return -1;
}
