/* doze_expf: exp for float without libm, the same bits on every platform.
 *
 * Only exactly-rounded float ops (add, sub, mul) and integer bit operations,
 * in a fixed order, so the result does not depend on the C library, the
 * compiler's libm builtins or the target. kernels_simd.c has an f32x4 copy
 * (exp_f32x4) that performs the identical sequence of operations lane-wise;
 * the two must be kept in step (test_kernels checks they agree bit for bit).
 *
 *   x  -> clamped to [-110, 90]: below, the result rounds to +0 anyway; above,
 *         it overflows to +inf anyway; +-inf land on the clamps.
 *   n  =  round-to-nearest-even(x * log2(e)) by the 1.5*2^23 trick (n is read
 *         back from the bits of the sum: no float->int conversion).
 *   r  =  x - n*LN2_HI - n*LN2_LO, |r| <~ ln2/2. LN2_HI has 15 significant
 *         bits, so n*LN2_HI is exact for |n| < 512.
 *   e^r ~= 1 + r + r^2 * P(r), P degree 4 (Chebyshev fit of (e^r-1-r)/r^2 on
 *         |r| <= 0.35, approximation error ~1e-8 relative).
 *   result = e^r * 2^(n>>1) * 2^(n - (n>>1)): both factors are normal floats
 *         for n in [-160, 130], the first product is exact, so the only
 *         rounding is the final one (correct subnormals, overflow to inf).
 *   NaN in -> the same NaN out.
 */
#include <stdint.h>
#include <string.h>

#include "kernels.h"

float doze_expf(float x) {
    const float log2e = 0x1.715476p+0f;      /* 1.44269504 */
    const float round_magic = 0x1.8p+23f;    /* 12582912 */
    const float ln2_hi = 0x1.62e4p-1f;       /* 22713 / 2^15 */
    const float ln2_lo = 0x1.7f7d1cp-20f;    /* ln2 - ln2_hi */
    const float p0 = 0x1.000000p-1f;
    const float p1 = 0x1.5554d8p-3f;
    const float p2 = 0x1.555516p-5f;
    const float p3 = 0x1.121076p-7f;
    const float p4 = 0x1.6d1610p-10f;

    if (x != x) return x;
    float xc = x < -110.0f ? -110.0f : x;
    xc = 90.0f < xc ? 90.0f : xc;

    float t = xc * log2e + round_magic;
    float nf = t - round_magic;
    uint32_t tb, mb;
    memcpy(&tb, &t, 4);
    memcpy(&mb, &round_magic, 4);
    uint32_t n = tb - mb; /* two's complement n, |n| <= 160 */

    float r = xc - nf * ln2_hi;
    r = r - nf * ln2_lo;
    float r2 = r * r;
    float p = p4 * r + p3;
    p = p * r + p2;
    p = p * r + p1;
    p = p * r + p0;
    float y = p * r2 + r;
    y = y + 1.0f;

    /* n1 = n >> 1 (arithmetic), n2 = n - n1; exponent fields n1+127, n2+127 */
    uint32_t n1 = ((n + 512u) >> 1) - 256u;
    uint32_t n2 = n - n1;
    uint32_t b1 = (n1 + 127u) << 23, b2 = (n2 + 127u) << 23;
    float s1, s2;
    memcpy(&s1, &b1, 4);
    memcpy(&s2, &b2, 4);
    return y * s1 * s2;
}
