/* Training ops (see train_ops.h): SIMD (wasm_simd128 / SIMDe) for the
 * matmuls that carry the cost, plain loops elsewhere. */
#include "train_ops.h"

#include <math.h>
#include <string.h>

#include "kernels.h"
#include "simd.h"

/* ---- matmul ---------------------------------------------------------------- */

static float hsum(v128_t v) {
    return (wasm_f32x4_extract_lane(v, 0) + wasm_f32x4_extract_lane(v, 1)) +
           (wasm_f32x4_extract_lane(v, 2) + wasm_f32x4_extract_lane(v, 3));
}

void matmul_forward_ref(float *y, const float *x, const float *w, int N, int out, int in) {
    for (int n = 0; n < N; n++)
        for (int o = 0; o < out; o++) {
            float s = 0.0f;
            for (int i = 0; i < in; i++) s += x[(size_t)n * in + i] * w[(size_t)o * in + i];
            y[(size_t)n * out + o] = s;
        }
}

void matmul_backward_ref(float *dx, const float *dy, const float *w, int N, int out, int in) {
    for (int n = 0; n < N; n++)
        for (int o = 0; o < out; o++) {
            float g = dy[(size_t)n * out + o];
            for (int i = 0; i < in; i++) dx[(size_t)n * in + i] += g * w[(size_t)o * in + i];
        }
}

/* 4 tokens x 4 outputs per block: every W and x vector loaded serves 4 MACs */
void matmul_forward(float *y, const float *x, const float *w, int N, int out, int in) {
    const int in4 = in & ~3;
    int n = 0;
    for (; n + 4 <= N; n += 4) {
        const float *x0 = x + (size_t)n * in, *x1 = x0 + in, *x2 = x1 + in, *x3 = x2 + in;
        int o = 0;
        for (; o + 4 <= out; o += 4) {
            const float *w0 = w + (size_t)o * in, *w1 = w0 + in, *w2 = w1 + in, *w3 = w2 + in;
            v128_t acc[16];
            for (int a = 0; a < 16; a++) acc[a] = wasm_f32x4_splat(0.0f);
            for (int i = 0; i < in4; i += 4) {
                v128_t xv[4] = {wasm_v128_load(x0 + i), wasm_v128_load(x1 + i), wasm_v128_load(x2 + i),
                                wasm_v128_load(x3 + i)};
                v128_t wv[4] = {wasm_v128_load(w0 + i), wasm_v128_load(w1 + i), wasm_v128_load(w2 + i),
                                wasm_v128_load(w3 + i)};
                for (int a = 0; a < 4; a++)
                    for (int b = 0; b < 4; b++)
                        acc[a * 4 + b] = wasm_f32x4_add(acc[a * 4 + b], wasm_f32x4_mul(xv[a], wv[b]));
            }
            const float *xs[4] = {x0, x1, x2, x3}, *ws[4] = {w0, w1, w2, w3};
            for (int a = 0; a < 4; a++)
                for (int b = 0; b < 4; b++) {
                    float s = hsum(acc[a * 4 + b]);
                    for (int i = in4; i < in; i++) s += xs[a][i] * ws[b][i];
                    y[(size_t)(n + a) * out + o + b] = s;
                }
        }
        for (; o < out; o++) {
            const float *w0 = w + (size_t)o * in;
            const float *xs[4] = {x0, x1, x2, x3};
            for (int a = 0; a < 4; a++) {
                v128_t acc = wasm_f32x4_splat(0.0f);
                for (int i = 0; i < in4; i += 4)
                    acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_v128_load(xs[a] + i), wasm_v128_load(w0 + i)));
                float s = hsum(acc);
                for (int i = in4; i < in; i++) s += xs[a][i] * w0[i];
                y[(size_t)(n + a) * out + o] = s;
            }
        }
    }
    for (; n < N; n++) {
        const float *x0 = x + (size_t)n * in;
        for (int o = 0; o < out; o++) {
            const float *w0 = w + (size_t)o * in;
            v128_t acc = wasm_f32x4_splat(0.0f);
            for (int i = 0; i < in4; i += 4)
                acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_v128_load(x0 + i), wasm_v128_load(w0 + i)));
            float s = hsum(acc);
            for (int i = in4; i < in; i++) s += x0[i] * w0[i];
            y[(size_t)n * out + o] = s;
        }
    }
}

void matmul_forward_t(float *y, const float *x, const float *wt, int N, int out, int in) {
    memset(y, 0, (size_t)N * out * sizeof(float));
    matmul_backward(y, x, wt, N, in, out);
}

/* dx rows of 4 tokens over 8 columns kept in registers while W's rows stream */
void matmul_backward(float *dx, const float *dy, const float *w, int N, int out, int in) {
    const int in8 = in & ~7;
    int n = 0;
    for (; n + 4 <= N; n += 4) {
        const float *g[4] = {dy + (size_t)n * out, dy + (size_t)(n + 1) * out,
                             dy + (size_t)(n + 2) * out, dy + (size_t)(n + 3) * out};
        float *d[4] = {dx + (size_t)n * in, dx + (size_t)(n + 1) * in, dx + (size_t)(n + 2) * in,
                       dx + (size_t)(n + 3) * in};
        for (int i = 0; i < in8; i += 8) {
            v128_t acc[8];
            for (int a = 0; a < 4; a++) {
                acc[2 * a] = wasm_v128_load(d[a] + i);
                acc[2 * a + 1] = wasm_v128_load(d[a] + i + 4);
            }
            for (int o = 0; o < out; o++) {
                const float *wr = w + (size_t)o * in + i;
                v128_t w0 = wasm_v128_load(wr), w1 = wasm_v128_load(wr + 4);
                for (int a = 0; a < 4; a++) {
                    v128_t s = wasm_f32x4_splat(g[a][o]);
                    acc[2 * a] = wasm_f32x4_add(acc[2 * a], wasm_f32x4_mul(s, w0));
                    acc[2 * a + 1] = wasm_f32x4_add(acc[2 * a + 1], wasm_f32x4_mul(s, w1));
                }
            }
            for (int a = 0; a < 4; a++) {
                wasm_v128_store(d[a] + i, acc[2 * a]);
                wasm_v128_store(d[a] + i + 4, acc[2 * a + 1]);
            }
        }
        for (int i = in8; i < in; i++)
            for (int o = 0; o < out; o++) {
                float wv = w[(size_t)o * in + i];
                for (int a = 0; a < 4; a++) d[a][i] += g[a][o] * wv;
            }
    }
    if (n < N) matmul_backward_ref(dx + (size_t)n * in, dy + (size_t)n * out, w, N - n, out, in);
}

/* ---- rmsnorm ---------------------------------------------------------------- */

void rmsnorm_forward(float *y, float *rinv, const float *x, const float *w, int N, int D, float eps) {
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * D;
        float ss = 0.0f;
        for (int i = 0; i < D; i++) ss += xr[i] * xr[i];
        float r = 1.0f / sqrtf(ss / (float)D + eps);
        rinv[n] = r;
        for (int i = 0; i < D; i++) y[(size_t)n * D + i] = xr[i] * r * w[i];
    }
}

/* y_i = x_i r w_i, r = (mean(x^2) + eps)^-1/2:
 * dx_j = r w_j dy_j - r^3 x_j / D * sum_i dy_i w_i x_i */
void rmsnorm_backward(float *dx, const float *dy, const float *x, const float *rinv, const float *w,
                      int N, int D) {
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * D, *g = dy + (size_t)n * D;
        float r = rinv[n], dot = 0.0f;
        for (int i = 0; i < D; i++) dot += g[i] * w[i] * xr[i];
        float c = r * r * r * dot / (float)D;
        for (int i = 0; i < D; i++) dx[(size_t)n * D + i] += r * w[i] * g[i] - c * xr[i];
    }
}

/* ---- rope ---------------------------------------------------------------------- */

static void rope_apply(float *v, int N, int T, int n_heads, int head_dim, int rope_dim,
                       const float *cos_t, const float *sin_t, float sign) {
    const int half = rope_dim / 2;
    for (int n = 0; n < N; n++) {
        int pos = n % T;
        const float *c = cos_t + (size_t)pos * half, *s = sin_t + (size_t)pos * half;
        for (int h = 0; h < n_heads; h++) {
            float *p = v + (size_t)n * n_heads * head_dim + (size_t)h * head_dim;
            for (int i = 0; i < half; i++) {
                float a = p[2 * i], b = p[2 * i + 1], sn = sign * s[i];
                p[2 * i] = a * c[i] - b * sn;
                p[2 * i + 1] = a * sn + b * c[i];
            }
        }
    }
}

void rope_forward(float *v, int N, int T, int n_heads, int head_dim, int rope_dim,
                  const float *cos_t, const float *sin_t) {
    rope_apply(v, N, T, n_heads, head_dim, rope_dim, cos_t, sin_t, 1.0f);
}

/* a rotation's transpose is the rotation by the opposite angle */
void rope_backward(float *dv, int N, int T, int n_heads, int head_dim, int rope_dim,
                   const float *cos_t, const float *sin_t) {
    rope_apply(dv, N, T, n_heads, head_dim, rope_dim, cos_t, sin_t, -1.0f);
}

/* ---- attention -------------------------------------------------------------------- */

static float dot(const float *a, const float *b, int n) {
    v128_t acc = wasm_f32x4_splat(0.0f);
    int i = 0;
    for (; i + 4 <= n; i += 4) acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_v128_load(a + i), wasm_v128_load(b + i)));
    float s = hsum(acc);
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static void axpy(float *y, float a, const float *x, int n) {
    v128_t av = wasm_f32x4_splat(a);
    int i = 0;
    for (; i + 4 <= n; i += 4)
        wasm_v128_store(y + i, wasm_f32x4_add(wasm_v128_load(y + i), wasm_f32x4_mul(av, wasm_v128_load(x + i))));
    for (; i < n; i++) y[i] += a * x[i];
}

/* kt(hd, T) = the keys (or values) of one window and KV head, transposed,
 * so that scores over positions are vector operations with no horizontal
 * sums (heads are small: 8 to 128 values) */
static void gather_transposed(float *kt, const float *k, int b, int T, int ks, int kvh, int hd) {
    for (int s = 0; s < T; s++) {
        const float *row = k + ((size_t)b * T + s) * ks + (size_t)kvh * hd;
        for (int i = 0; i < hd; i++) kt[(size_t)i * T + s] = row[i];
    }
}

/* out(n) = sum_i a[i] * rows[i](n), rows of stride T: a vector over positions */
static void combine_rows(float *out, const float *a, const float *rows, int hd, int T, int n) {
    int s = 0;
    for (; s + 4 <= n; s += 4) {
        v128_t acc = wasm_f32x4_splat(0.0f);
        for (int i = 0; i < hd; i++)
            acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_f32x4_splat(a[i]), wasm_v128_load(rows + (size_t)i * T + s)));
        wasm_v128_store(out + s, acc);
    }
    for (; s < n; s++) {
        float acc = 0.0f;
        for (int i = 0; i < hd; i++) acc += a[i] * rows[(size_t)i * T + s];
        out[s] = acc;
    }
}

void attention_forward(float *o, float *P, const float *q, const float *k, const float *v,
                       const uint8_t *vis, int B, int T, int H, int KV, int hd,
                       void (*softmax)(float *x, int n), float *scratch) {
    const int qs = H * hd, ks = KV * hd, group = H / KV;
    const float scale = 1.0f / sqrtf((float)hd);
    float *kt = scratch, *qscaled = scratch + (size_t)hd * T;
    for (int b = 0; b < B; b++)
        for (int kvh = 0; kvh < KV; kvh++) {
            gather_transposed(kt, k, b, T, ks, kvh, hd);
            for (int h = kvh * group; h < (kvh + 1) * group; h++)
                for (int t = 0; t < T; t++) {
                    size_t n = (size_t)b * T + t;
                    const float *qt = q + n * qs + (size_t)h * hd;
                    for (int i = 0; i < hd; i++) qscaled[i] = qt[i] * scale;
                    float *p = P + (((size_t)b * H + h) * T + t) * T;
                    combine_rows(p, qscaled, kt, hd, T, t + 1);
                    for (int s = 0; s < t; s++)
                        if (!vis[(size_t)b * T + s]) p[s] = -INFINITY;
                    softmax(p, t + 1); /* -inf entries get weight 0 */
                    float *ot = o + n * qs + (size_t)h * hd;
                    memset(ot, 0, (size_t)hd * sizeof(float));
                    for (int s = 0; s <= t; s++)
                        if (p[s] != 0.0f) axpy(ot, p[s], v + ((size_t)b * T + s) * ks + (size_t)kvh * hd, hd);
                    for (int s = t + 1; s < T; s++) p[s] = 0.0f;
                }
        }
}

void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *P,
                        const float *q, const float *k, const float *v, int B, int T, int H, int KV,
                        int hd, float *scratch) {
    const int qs = H * hd, ks = KV * hd, group = H / KV;
    const float scale = 1.0f / sqrtf((float)hd);
    float *kt = scratch, *vt = scratch + (size_t)hd * T, *dp = scratch + 2 * (size_t)hd * T;
    for (int b = 0; b < B; b++)
        for (int kvh = 0; kvh < KV; kvh++) {
            gather_transposed(kt, k, b, T, ks, kvh, hd);
            gather_transposed(vt, v, b, T, ks, kvh, hd);
            for (int h = kvh * group; h < (kvh + 1) * group; h++)
                for (int t = 0; t < T; t++) {
                    size_t n = (size_t)b * T + t;
                    const float *p = P + (((size_t)b * H + h) * T + t) * T;
                    const float *dot_ = dout + n * qs + (size_t)h * hd;
                    combine_rows(dp, dot_, vt, hd, T, t + 1); /* dp(s) = do . v_s */
                    float sum = 0.0f;
                    for (int s = 0; s <= t; s++) sum += p[s] * dp[s];
                    for (int s = 0; s <= t; s++) dp[s] = p[s] * (dp[s] - sum) * scale; /* dS */
                    const float *qt = q + n * qs + (size_t)h * hd;
                    float *dqt = dq + n * qs + (size_t)h * hd;
                    for (int i = 0; i < hd; i++) dqt[i] += dot(dp, kt + (size_t)i * T, t + 1);
                    for (int s = 0; s <= t; s++) {
                        if (p[s] == 0.0f) continue;
                        size_t m = ((size_t)b * T + s) * ks + (size_t)kvh * hd;
                        axpy(dk + m, dp[s], qt, hd);
                        axpy(dv + m, p[s], dot_, hd);
                    }
                }
        }
}

/* ---- swiglu ------------------------------------------------------------------------- */

void swiglu_forward(float *g, const float *a, const float *b, int N, int F,
                    void (*swiglu)(float *out, const float *gate, const float *up, int n)) {
    swiglu(g, a, b, N * F);
}

void softmax_rows(float *out, const float *x, int N, int V, void (*softmax)(float *x, int n)) {
    if (out != x) memcpy(out, x, (size_t)N * V * sizeof(float));
    for (int n = 0; n < N; n++) softmax(out + (size_t)n * V, V);
}

/* exp of 4 lanes with the SIMD kernels' exp (kernels_simd.c) */
void doze_simd_expf_x4(float *out, const float *in);

void swiglu_backward(float *da, float *db, const float *dg, const float *a, const float *b, int N,
                     int F) {
    const size_t n = (size_t)N * F;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float neg[4] = {-a[i], -a[i + 1], -a[i + 2], -a[i + 3]}, e[4];
        doze_simd_expf_x4(e, neg);
        for (int j = 0; j < 4; j++) {
            float sg = 1.0f / (1.0f + e[j]);
            float silu = a[i + j] * sg;
            db[i + j] = dg[i + j] * silu;
            da[i + j] = dg[i + j] * b[i + j] * sg * (1.0f + a[i + j] * (1.0f - sg));
        }
    }
    for (; i < n; i++) {
        float sg = 1.0f / (1.0f + doze_expf(-a[i]));
        float silu = a[i] * sg;
        db[i] = dg[i] * silu;
        da[i] = dg[i] * b[i] * sg * (1.0f + a[i] * (1.0f - sg));
    }
}

/* ---- weight gradients and threads ----------------------------------------------------- */

/* One row of c over columns [j0, M): c_j += sum_k a_k b_kj, k in order; the
 * element a_k of row r is a[r * ars + k * aks] (so that nn and tn share it). */
static void gemm_row(float *c, const float *a, size_t aks, const float *b, int ldb, int K, int j0,
                     int M) {
    int j = j0;
    for (; j + 8 <= M; j += 8) {
        v128_t x0 = wasm_v128_load(c + j), x1 = wasm_v128_load(c + j + 4);
        for (int k = 0; k < K; k++) {
            const float *br = b + (size_t)k * ldb + j;
            v128_t s = wasm_f32x4_splat(a[(size_t)k * aks]);
            x0 = wasm_f32x4_add(x0, wasm_f32x4_mul(s, wasm_v128_load(br)));
            x1 = wasm_f32x4_add(x1, wasm_f32x4_mul(s, wasm_v128_load(br + 4)));
        }
        wasm_v128_store(c + j, x0);
        wasm_v128_store(c + j + 4, x1);
    }
    for (; j < M; j++) {
        float s = c[j];
        for (int k = 0; k < K; k++) s += a[(size_t)k * aks] * b[(size_t)k * ldb + j];
        c[j] = s;
    }
}

/* 4 rows of c; a_r(k) = a[r * ars + k * aks] */
static void gemm_rows4(float *c, int ldc, const float *a, size_t ars, size_t aks, const float *b,
                       int ldb, int K, int M) {
    float *c0 = c, *c1 = c0 + ldc, *c2 = c1 + ldc, *c3 = c2 + ldc;
    const float *a0 = a, *a1 = a + ars, *a2 = a + 2 * ars, *a3 = a + 3 * ars;
    const int M8 = M & ~7;
    for (int j = 0; j < M8; j += 8) {
        v128_t x00 = wasm_v128_load(c0 + j), x01 = wasm_v128_load(c0 + j + 4);
        v128_t x10 = wasm_v128_load(c1 + j), x11 = wasm_v128_load(c1 + j + 4);
        v128_t x20 = wasm_v128_load(c2 + j), x21 = wasm_v128_load(c2 + j + 4);
        v128_t x30 = wasm_v128_load(c3 + j), x31 = wasm_v128_load(c3 + j + 4);
        for (int k = 0; k < K; k++) {
            const float *br = b + (size_t)k * ldb + j;
            v128_t b0 = wasm_v128_load(br), b1 = wasm_v128_load(br + 4);
            size_t ak = (size_t)k * aks;
            v128_t s = wasm_f32x4_splat(a0[ak]);
            x00 = wasm_f32x4_add(x00, wasm_f32x4_mul(s, b0));
            x01 = wasm_f32x4_add(x01, wasm_f32x4_mul(s, b1));
            s = wasm_f32x4_splat(a1[ak]);
            x10 = wasm_f32x4_add(x10, wasm_f32x4_mul(s, b0));
            x11 = wasm_f32x4_add(x11, wasm_f32x4_mul(s, b1));
            s = wasm_f32x4_splat(a2[ak]);
            x20 = wasm_f32x4_add(x20, wasm_f32x4_mul(s, b0));
            x21 = wasm_f32x4_add(x21, wasm_f32x4_mul(s, b1));
            s = wasm_f32x4_splat(a3[ak]);
            x30 = wasm_f32x4_add(x30, wasm_f32x4_mul(s, b0));
            x31 = wasm_f32x4_add(x31, wasm_f32x4_mul(s, b1));
        }
        wasm_v128_store(c0 + j, x00);
        wasm_v128_store(c0 + j + 4, x01);
        wasm_v128_store(c1 + j, x10);
        wasm_v128_store(c1 + j + 4, x11);
        wasm_v128_store(c2 + j, x20);
        wasm_v128_store(c2 + j + 4, x21);
        wasm_v128_store(c3 + j, x30);
        wasm_v128_store(c3 + j + 4, x31);
    }
    if (M8 < M)
        for (int r = 0; r < 4; r++) gemm_row(c + (size_t)r * ldc, a + r * ars, aks, b, ldb, K, M8, M);
}

/* k in chunks so that the rows of b in use stay in cache; each element is
 * still summed in k order (partial sums stored and reloaded exactly) */
#define GEMM_KC 256

static void gemm_any(float *c, int ldc, const float *a, size_t ars, size_t aks, const float *b,
                     int ldb, int N, int K, int M) {
    for (int k0 = 0; k0 < K; k0 += GEMM_KC) {
        int kn = K - k0 < GEMM_KC ? K - k0 : GEMM_KC;
        const float *ak = a + (size_t)k0 * aks, *bk = b + (size_t)k0 * ldb;
        int n = 0;
        for (; n + 4 <= N; n += 4)
            gemm_rows4(c + (size_t)n * ldc, ldc, ak + (size_t)n * ars, ars, aks, bk, ldb, kn, M);
        for (; n < N; n++) gemm_row(c + (size_t)n * ldc, ak + (size_t)n * ars, aks, bk, ldb, kn, 0, M);
    }
}

void gemm_nn(float *c, int ldc, const float *a, int lda, const float *b, int ldb, int N, int K, int M) {
    gemm_any(c, ldc, a, (size_t)lda, 1, b, ldb, N, K, M);
}

void gemm_tn(float *c, int ldc, const float *a, int lda, const float *b, int ldb, int N, int K, int M) {
    gemm_any(c, ldc, a, 1, (size_t)lda, b, ldb, N, K, M);
}

void matmul_backward_weights_ref(float *dw, const float *dy, const float *x, int N, int out, int in) {
    for (int o = 0; o < out; o++)
        for (int i = 0; i < in; i++) {
            float s = dw[(size_t)o * in + i];
            for (int n = 0; n < N; n++) s += dy[(size_t)n * out + o] * x[(size_t)n * in + i];
            dw[(size_t)o * in + i] = s;
        }
}

/* Rows are cut into blocks of PAR_ROWS (a multiple of 4, the kernels'
 * register rows) and the blocks into the pool's contiguous parts; products
 * under TRAIN_PAR_MIN_MACS stay on the caller. */
#define PAR_ROWS 16

typedef struct {
    float *c;
    const float *a, *b;
    int N, out, in;
} par_product;

static void backward_weights_part(void *args, int b0, int b1, int part) {
    const par_product *p = args;
    (void)part;
    for (int bi = b0; bi < b1; bi++) {
        int r0 = bi * PAR_ROWS, rn = p->out - r0 < PAR_ROWS ? p->out - r0 : PAR_ROWS;
        gemm_tn(p->c + (size_t)r0 * p->in, p->in, p->a + r0, p->out, p->b, p->in, rn, p->N, p->in);
    }
}

static void forward_t_part(void *args, int b0, int b1, int part) {
    const par_product *p = args;
    (void)part;
    for (int bi = b0; bi < b1; bi++) {
        int r0 = bi * PAR_ROWS, rn = p->N - r0 < PAR_ROWS ? p->N - r0 : PAR_ROWS;
        memset(p->c + (size_t)r0 * p->out, 0, (size_t)rn * p->out * sizeof(float));
        gemm_nn(p->c + (size_t)r0 * p->out, p->out, p->a + (size_t)r0 * p->in, p->in, p->b, p->out, rn, p->in,
                p->out);
    }
}

static void backward_part(void *args, int b0, int b1, int part) {
    const par_product *p = args;
    (void)part;
    for (int bi = b0; bi < b1; bi++) {
        int r0 = bi * PAR_ROWS, rn = p->N - r0 < PAR_ROWS ? p->N - r0 : PAR_ROWS;
        gemm_nn(p->c + (size_t)r0 * p->in, p->in, p->a + (size_t)r0 * p->out, p->out, p->b, p->in, rn, p->out,
                p->in);
    }
}

static void run_blocks(doze_pool *pool, pool_fn fn, par_product *p, int rows) {
    const int blocks = (rows + PAR_ROWS - 1) / PAR_ROWS;
    const int big = blocks > 1 && (double)p->N * p->out * p->in >= TRAIN_PAR_MIN_MACS;
    pool_run(big ? pool : NULL, fn, p, blocks, 1, 1, 0);
}

void matmul_backward_weights(float *dw, const float *dy, const float *x, int N, int out, int in,
                             doze_pool *pool) {
    par_product p = {dw, dy, x, N, out, in};
    run_blocks(pool, backward_weights_part, &p, out);
}

void matmul_forward_t_par(float *y, const float *x, const float *wt, int N, int out, int in,
                          doze_pool *pool) {
    par_product p = {y, x, wt, N, out, in};
    run_blocks(pool, forward_t_part, &p, N);
}

void matmul_backward_par(float *dx, const float *dy, const float *w, int N, int out, int in,
                         doze_pool *pool) {
    par_product p = {dx, dy, w, N, out, in};
    run_blocks(pool, backward_part, &p, N);
}

typedef struct {
    float *out;
    const float *x;
    int V;
    void (*softmax)(float *x, int n);
} softmax_job;

static void softmax_part(void *args, int begin, int end, int part) {
    (void)part;
    const softmax_job *j = args;
    softmax_rows(j->out + (size_t)begin * j->V, j->x + (size_t)begin * j->V, end - begin, j->V, j->softmax);
}

void softmax_rows_par(float *out, const float *x, int N, int V, void (*softmax)(float *x, int n),
                      doze_pool *pool) {
    softmax_job j = {out, x, V, softmax};
    pool_run(pool, softmax_part, &j, N, 1, 16, 0);
}

void rmsnorm_backward_weights(float *dw, const float *dy, const float *x, const float *rinv, int N,
                              int D) {
    for (int n = 0; n < N; n++) {
        const float *g = dy + (size_t)n * D, *xr = x + (size_t)n * D;
        float r = rinv[n];
        for (int i = 0; i < D; i++) dw[i] += g[i] * xr[i] * r;
    }
}
