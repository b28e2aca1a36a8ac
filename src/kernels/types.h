/* Per-tensor-type traits: one table row per type (block size, bytes per
 * block, row conversion). A new type is a new row. */
#ifndef DOZE_TYPES_H
#define DOZE_TYPES_H

#include <stddef.h>
#include <stdint.h>

#include "doze.h"

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
} doze_type_traits;

/* NULL for a type Doze cannot read. */
const doze_type_traits *doze_type_traits_of(int type);

/* Bytes of a row of n values, or 0 if n is not a multiple of the block
 * size or the type is unknown. */
uint64_t doze_type_row_bytes(int type, uint64_t n);

/* IEEE half <-> single, exact for every value (round-to-nearest-even down). */
float doze_f16_to_f32(uint16_t h);
uint16_t doze_f32_to_f16(float f);

#endif
