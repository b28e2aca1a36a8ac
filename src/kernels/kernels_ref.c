/* The scalar reference kernels: plain loops, the straightforward math. They
 * define what the SIMD table must compute (differential tests) and are the
 * baseline of `bench`. Correctness first, no tricks. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels.h"
#include "types.h"

/* y(rows) = W(rows, cols) @ x(cols) */
static void ref_matvec_f32(float *y, const float *w, const float *x, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        const float *wr = w + (size_t)r * (size_t)cols;
        float s = 0.0f;
        for (int c = 0; c < cols; c++) s += wr[c] * x[c];
        y[r] = s;
    }
}

/* y(rows) = W(rows, cols) @ x(cols), W in IEEE half */
static void ref_matvec_f16(float *y, const uint16_t *w, const float *x, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        const uint16_t *wr = w + (size_t)r * (size_t)cols;
        float s = 0.0f;
        for (int c = 0; c < cols; c++) s += doze_f16_to_f32(wr[c]) * x[c];
        y[r] = s;
    }
}

/* y(rows) = W(rows, cols/32 blocks) @ xq(cols/32 blocks): per block pair an
 * exact int32 dot, times dw*dx, summed over blocks in float, in block order. */
static void ref_matvec_q8_0(float *y, const void *w, const void *xq, int rows, int cols) {
    const doze_block_q8_0 *wb = w;
    const doze_block_q8_0 *xb = xq;
    int nb = cols / DOZE_QK8_0;
    for (int r = 0; r < rows; r++) {
        const doze_block_q8_0 *wr = wb + (size_t)r * (size_t)nb;
        float s = 0.0f;
        for (int b = 0; b < nb; b++) {
            int32_t isum = 0;
            for (int j = 0; j < DOZE_QK8_0; j++) isum += (int32_t)wr[b].qs[j] * (int32_t)xb[b].qs[j];
            float d = doze_f16_to_f32(wr[b].d) * doze_f16_to_f32(xb[b].d);
            s += (float)isum * d;
        }
        y[r] = s;
    }
}

/* xq(n/32 blocks) = x(n): d = max|x|/127 (stored as f16), q = round(x/d),
 * halves away from zero (ggml's reference quantizer). */
static void ref_quantize_q8_0(const float *x, void *xq, int n) {
    doze_block_q8_0 *b = xq;
    for (int i = 0; i < n / DOZE_QK8_0; i++) {
        const float *xb = x + (size_t)i * DOZE_QK8_0;
        float amax = 0.0f;
        for (int j = 0; j < DOZE_QK8_0; j++) {
            float a = fabsf(xb[j]);
            if (a > amax) amax = a;
        }
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = doze_f32_to_f16(d);
        for (int j = 0; j < DOZE_QK8_0; j++) b[i].qs[j] = (int8_t)roundf(xb[j] * id);
    }
}

/* out(n) = x(n) * (1 / sqrt(mean(x^2) + eps)) * weight(n) */
static void ref_rmsnorm(float *out, const float *x, const float *weight, int n, float eps) {
    float ss = 0.0f;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    float scale = 1.0f / sqrtf(ss / (float)n + eps);
    for (int i = 0; i < n; i++) out[i] = x[i] * scale * weight[i];
}

/* x(n) = softmax(x) in place. All -inf (nothing to weigh): all zeros. */
static void ref_softmax(float *x, int n) {
    if (n <= 0) return;
    float max = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > max) max = x[i];
    if (max == -INFINITY) {
        for (int i = 0; i < n; i++) x[i] = 0.0f;
        return;
    }
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = doze_expf(x[i] - max);
        sum += x[i];
    }
    float inv = 1.0f / sum;
    for (int i = 0; i < n; i++) x[i] *= inv;
}

/* v(n_heads, head_dim): pairs (v[2i], v[2i+1]), i < rope_dim/2, of each head
 * rotated by the angle with cos_t(i), sin_t(i). */
static void ref_rope(float *v, int n_heads, int head_dim, int rope_dim, const float *cos_t,
                     const float *sin_t) {
    for (int h = 0; h < n_heads; h++) {
        float *vh = v + (size_t)h * (size_t)head_dim;
        for (int i = 0; i < rope_dim / 2; i++) {
            float v0 = vh[2 * i], v1 = vh[2 * i + 1];
            float c = cos_t[i], s = sin_t[i];
            vh[2 * i] = v0 * c - v1 * s;
            vh[2 * i + 1] = v0 * s + v1 * c;
        }
    }
}

/* out(n) = gate / (1 + exp(-gate)) * up */
static void ref_swiglu(float *out, const float *gate, const float *up, int n) {
    for (int i = 0; i < n; i++) {
        float g = gate[i];
        float silu = g / (1.0f + doze_expf(-g));
        out[i] = silu * up[i];
    }
}

/* out(head_dim) = sum_t softmax(q . k_t / sqrt(head_dim))_t v_t over the
 * valid positions t < n_pos; att(n_pos) scratch (holds the weights after). */
static void ref_attention(float *out, const float *q, const float *k, const float *v, int n_pos,
                          int head_dim, int stride, const uint8_t *valid, float *att) {
    float scale = 1.0f / sqrtf((float)head_dim);
    for (int t = 0; t < n_pos; t++) {
        if (valid && !valid[t]) {
            att[t] = -INFINITY;
            continue;
        }
        const float *kt = k + (size_t)t * (size_t)stride;
        float s = 0.0f;
        for (int i = 0; i < head_dim; i++) s += q[i] * kt[i];
        att[t] = s * scale;
    }
    ref_softmax(att, n_pos);
    for (int i = 0; i < head_dim; i++) out[i] = 0.0f;
    for (int t = 0; t < n_pos; t++) {
        if (valid && !valid[t]) continue;
        const float *vt = v + (size_t)t * (size_t)stride;
        float a = att[t];
        for (int i = 0; i < head_dim; i++) out[i] += a * vt[i];
    }
}

/* y(n) += x(n) */
static void ref_add(float *y, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += x[i];
}

const doze_kernels doze_kernels_reference = {
    .name = "reference",
    .matvec_f32 = ref_matvec_f32,
    .matvec_f16 = ref_matvec_f16,
    .matvec_q8_0 = ref_matvec_q8_0,
    .quantize_q8_0 = ref_quantize_q8_0,
    .rmsnorm = ref_rmsnorm,
    .softmax = ref_softmax,
    .rope = ref_rope,
    .swiglu = ref_swiglu,
    .attention = ref_attention,
    .add = ref_add,
};
