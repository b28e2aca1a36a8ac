/* The type table's conversions: every half widens and narrows back to
 * itself, rounding to nearest-even at the boundaries, and q8_0 rows
 * round-trip within half a quantization step. */
#include <stdint.h>
#include <string.h>

#include "types.h"
#include "test_util.h"

static uint32_t bits_of(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    return b;
}

int main(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = doze_f16_to_f32((uint16_t)h);
        int is_nan = (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu);
        if (is_nan) {
            bad += f == f; /* must be NaN */
            continue;
        }
        bad += doze_f32_to_f16(f) != h;
    }
    CHECK_MSG(bad == 0, "%d halves do not round-trip", bad);
    CHECK(doze_f16_to_f32(0x3c00) == 1.0f);
    CHECK(doze_f16_to_f32(0xc000) == -2.0f);
    CHECK(doze_f16_to_f32(0x0001) == 0x1p-24f);  /* smallest subnormal */
    CHECK(doze_f16_to_f32(0x7bff) == 65504.0f);  /* largest finite */
    CHECK(bits_of(doze_f16_to_f32(0x7c00)) == 0x7f800000u);
    CHECK(bits_of(doze_f16_to_f32(0xfc00)) == 0xff800000u);
    CHECK(doze_f32_to_f16(65520.0f) == 0x7c00);  /* rounds up to inf */
    CHECK(doze_f32_to_f16(65519.0f) == 0x7bff);
    CHECK(doze_f32_to_f16(1.0f + 0x1p-11f) == 0x3c00); /* tie to even: down */
    CHECK(doze_f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3c02); /* tie to even: up */
    CHECK(doze_f32_to_f16(0x1p-25f) == 0x0000);  /* tie to even at the bottom */
    CHECK(doze_f32_to_f16(0x1p-25f * 3) == 0x0002);

    /* q8_0: |x - dequant(quant(x))| <= d/2 per block */
    const doze_type_traits *q = doze_type_traits_of(DOZE_TYPE_Q8_0);
    CHECK(q && q->block_size == 32 && q->block_bytes == 34);
    float x[96], y[96];
    uint8_t blocks[3 * 34];
    uint64_t s = 12345;
    for (int i = 0; i < 96; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        x[i] = (float)((int)(s % 2001) - 1000) / 100.0f;
    }
    q->quantize_row(x, blocks, 96);
    q->dequantize_row(blocks, y, 96);
    for (int b = 0; b < 3; b++) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[b * 32 + j]));
        for (int j = 0; j < 32; j++)
            CHECK(fabsf(x[b * 32 + j] - y[b * 32 + j]) <= amax / 127.0f * 0.5f + 1e-3f * amax);
    }
    CHECK(doze_type_row_bytes(DOZE_TYPE_Q8_0, 64) == 68);
    CHECK(doze_type_row_bytes(DOZE_TYPE_Q8_0, 65) == 0);
    CHECK(doze_type_row_bytes(DOZE_TYPE_F16, 7) == 14);
    CHECK(doze_type_traits_of(99) == NULL);
    CHECK(doze_type_from_name("q8_0") == DOZE_TYPE_Q8_0 && doze_type_from_name("q5") == -1);
    return test_finish("test_types");
}
