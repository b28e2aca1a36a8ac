/* Per-tensor-type traits: one table row per type (block size, bytes per
 * block, row conversion, the activation form its products take, the x4
 * repack, and its products in both kernel sets). A new type is a new row,
 * its kernels, and a test. */
#ifndef DOZE_TYPES_H
#define DOZE_TYPES_H

#include <stddef.h>
#include <stdint.h>

#include "doze.h"
#include "kernels.h"

#define DOZE_QK8_0 32 /* values per q8_0 block: f16 scale d, then 32 int8 */

typedef struct {
    uint16_t d;         /* f16 scale */
    int8_t qs[DOZE_QK8_0];
} doze_block_q8_0;      /* 34 bytes, ggml's layout */
_Static_assert(sizeof(doze_block_q8_0) == 34, "q8_0 block must be 34 bytes");

#define DOZE_QK4_0 32 /* values per q4_0 block: f16 scale d, then 16 bytes of nibbles */

typedef struct {
    uint16_t d;         /* f16 scale */
    uint8_t qs[DOZE_QK4_0 / 2]; /* byte j: element j (low nibble), element j+16 (high) */
} doze_block_q4_0;      /* 18 bytes, ggml's layout; value = (q - 8) * d */
_Static_assert(sizeof(doze_block_q4_0) == 18, "q4_0 block must be 18 bytes");

/* The "x4" in-memory layouts (repacked at load, never in files): 4 rows'
 * block b side by side, scales first. A group of 4 rows takes exactly the
 * bytes of 4 row-major rows. */
typedef struct {
    uint16_t d[4];
    uint8_t qs[4][DOZE_QK4_0 / 2];
} doze_block_q4_0x4; /* 72 bytes */
typedef struct {
    uint16_t d[4];
    int8_t qs[4][DOZE_QK8_0];
} doze_block_q8_0x4; /* 136 bytes */
_Static_assert(sizeof(doze_block_q4_0x4) == 4 * sizeof(doze_block_q4_0), "q4_0x4 size");
_Static_assert(sizeof(doze_block_q8_0x4) == 4 * sizeof(doze_block_q8_0), "q8_0x4 size");

typedef struct {
    int type;           /* doze_type */
    const char *name;   /* "f32", "f16", "q8_0", "q4_0" */
    int block_size;     /* values per block */
    int block_bytes;    /* bytes per block */
    /* dst(n) = values of src row; n a multiple of block_size */
    void (*dequantize_row)(const void *src, float *dst, int64_t n);
    /* dst = src(n) in this type (round to nearest); n a multiple of block_size */
    void (*quantize_row)(const float *src, void *dst, int64_t n);
    /* The input form the products take: DOZE_TYPE_F32 (x as floats),
     * DOZE_TYPE_Q8_0 (x as q8_0 blocks of 32, quantize_q8_0), or
     * DOZE_TYPE_F16 / DOZE_TYPE_BF16 (x as floats rounded to that 16-bit
     * type: ggml multiplies 16-bit weights with 16-bit activations, and
     * products of two 16-bit values are exact in f32, so Doze and llama.cpp
     * then differ only by the order of the sums). */
    int act_type;
    /* The type a matrix is re-quantized to when it must be cut at columns
     * that are not whole blocks (per-head blocks of attn_output): tried
     * first, f32 when that does not divide either. -1: cuts anywhere. */
    int split_type;
    /* The x4 layout (kernels.h) fits W(rows, cols) when rows % 4 == 0 and
     * cols % x4_cols == 0; 0: the type is never repacked. */
    int x4_cols;
    /* repacks one group of 4 rows of cols values (4 rows' bytes at grp) in
     * place to the x4 layout; tmp: 4 rows' bytes */
    void (*x4_pack)(uint8_t *grp, uint64_t cols, uint8_t *tmp);
    /* row k (0..3) of an x4 group of rows of cols values, as floats */
    void (*x4_row)(const uint8_t *grp, int k, uint64_t cols, float *out);
    /* nonzero when a tensor's bytes (n_bytes at data, file layout) hold a
     * value the x4 kernels take not (inf/nan scales or halves): such a
     * tensor stays row-major. NULL: every tensor can be repacked. */
    int (*x4_refuses)(const uint8_t *data, uint64_t n_bytes);
    /* the products, [DOZE_KERNELS_SIMD] and [DOZE_KERNELS_REFERENCE] */
    const doze_products *products[2];
} doze_type_traits;

/* The kernel sets' product rows (kernels_simd.c, kernels_ref.c). */
extern const doze_products doze_simd_f32, doze_simd_f16, doze_simd_q8_0, doze_simd_q4_0;
extern const doze_products doze_ref_f32, doze_ref_f16, doze_ref_q8_0, doze_ref_q4_0;
extern const doze_products doze_simd_q4_K, doze_simd_q5_K, doze_simd_q6_K, doze_simd_bf16;
extern const doze_products doze_ref_q4_K, doze_ref_q5_K, doze_ref_q6_K, doze_ref_bf16;
extern const doze_products doze_simd_q4_1, doze_simd_q5_0, doze_simd_q5_1, doze_simd_iq4_nl;
extern const doze_products doze_ref_q4_1, doze_ref_q5_0, doze_ref_q5_1, doze_ref_iq4_nl;
extern const doze_products doze_simd_q2_K, doze_simd_q3_K, doze_simd_iq4_xs;
extern const doze_products doze_ref_q2_K, doze_ref_q3_K, doze_ref_iq4_xs;
/* kernels_relaxed.c: q8_0, q4_0, q5_0 and the K-quants (not IQ4_XS) on the relaxed-SIMD int8 dot, the same
 * bits as the strict SIMD rows; f32 on the relaxed multiply-add (fused or not,
 * as the engine does it). doze-relaxed.wasm (DOZE_RELAXED_SIMD) puts
 * them in the table's SIMD column; every other build only tests them. */
extern const doze_products doze_relaxed_f32, doze_relaxed_f16, doze_relaxed_q8_0, doze_relaxed_q4_0, doze_relaxed_q5_0;
extern const doze_products doze_relaxed_q4_K, doze_relaxed_q5_K, doze_relaxed_q6_K;
extern const doze_products doze_relaxed_q2_K, doze_relaxed_q3_K;
/* 1 when kernels_relaxed.c runs the relaxed instruction, 0 when it emulates it */
int doze_relaxed_simd_native(void);
#if defined(DOZE_RELAXED_SIMD)
#define DOZE_SIMD_F32 doze_relaxed_f32
#define DOZE_SIMD_F16 doze_relaxed_f16
#define DOZE_SIMD_Q8_0 doze_relaxed_q8_0
#define DOZE_SIMD_Q4_0 doze_relaxed_q4_0
#define DOZE_SIMD_Q5_0 doze_relaxed_q5_0
#define DOZE_SIMD_Q4_K doze_relaxed_q4_K
#define DOZE_SIMD_Q5_K doze_relaxed_q5_K
#define DOZE_SIMD_Q6_K doze_relaxed_q6_K
#define DOZE_SIMD_Q2_K doze_relaxed_q2_K
#define DOZE_SIMD_Q3_K doze_relaxed_q3_K
#else
#define DOZE_SIMD_F32 doze_simd_f32
#define DOZE_SIMD_F16 doze_simd_f16
#define DOZE_SIMD_Q8_0 doze_simd_q8_0
#define DOZE_SIMD_Q4_0 doze_simd_q4_0
#define DOZE_SIMD_Q5_0 doze_simd_q5_0
#define DOZE_SIMD_Q4_K doze_simd_q4_K
#define DOZE_SIMD_Q5_K doze_simd_q5_K
#define DOZE_SIMD_Q6_K doze_simd_q6_K
#define DOZE_SIMD_Q2_K doze_simd_q2_K
#define DOZE_SIMD_Q3_K doze_simd_q3_K
#endif

/* NULL for a type Doze cannot read. */
const doze_type_traits *doze_type_traits_of(int type);

/* Bytes of a row of n values, or 0 if n is not a multiple of the block
 * size or the type is unknown. */
uint64_t doze_type_row_bytes(int type, uint64_t n);

/* Bytes of one input in t's activation form for a row of cols values. */
size_t doze_type_act_bytes(const doze_type_traits *t, int cols);

/* out(n) = x(n) rounded to the 16-bit activation form act_type
 * (DOZE_TYPE_F16 or DOZE_TYPE_BF16, nearest even), as floats; out may be x. */
void doze_round_input(int act_type, const float *x, float *out, int n);

/* IEEE half <-> single, exact for every value (round-to-nearest-even down). */
float doze_f16_to_f32(uint16_t h);
uint16_t doze_f32_to_f16(float f);

#endif
