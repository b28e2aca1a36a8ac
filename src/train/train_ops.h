/* The ops of the training forward and backward, each _forward beside its
 * _backward (llm.c's style); block.c composes them into a layer. Shapes in
 * comments: N tokens (B windows of T), D model dim. Backward functions
 * ACCUMULATE (+=) into their input-gradient outputs unless said otherwise;
 * the weight gradients are separate functions (below), for the trainers
 * whose weights learn. */
#ifndef DOZE_TRAIN_OPS_H
#define DOZE_TRAIN_OPS_H

#include <stdint.h>

#include "pool.h"

/* y(N, out) = x(N, in) . W(out, in)^T */
void matmul_forward(float *y, const float *x, const float *w, int N, int out, int in);
/* the same product from the transposed weights wt(in, out), streaming rows
 * of wt with no horizontal sums (faster for the frozen weights, which the
 * trainer keeps transposed as well) */
void matmul_forward_t(float *y, const float *x, const float *wt, int N, int out, int in);
/* dx(N, in) += dy(N, out) . W(out, in) */
void matmul_backward(float *dx, const float *dy, const float *w, int N, int out, int in);
/* scalar references of the two, for the differential test */
void matmul_forward_ref(float *y, const float *x, const float *w, int N, int out, int in);
void matmul_backward_ref(float *dx, const float *dy, const float *w, int N, int out, int in);

/* softmax of each row of x(N, V) into out, through the kernel table's softmax */
void softmax_rows(float *out, const float *x, int N, int V, void (*softmax)(float *x, int n));

/* y(N, D) = x / rms(x) * w; rinv(N) = 1 / rms(x) */
void rmsnorm_forward(float *y, float *rinv, const float *x, const float *w, int N, int D, float eps);
/* dx(N, D) += d(rmsnorm)/dx . dy */
void rmsnorm_backward(float *dx, const float *dy, const float *x, const float *rinv, const float *w,
                      int N, int D);

/* RoPE on adjacent pairs of the first rope_dim values of each head of
 * v(N, n_heads * head_dim); token n sits at position pos0 + n % T. */
void rope_forward(float *v, int N, int T, int n_heads, int head_dim, int rope_dim,
                  const float *cos_t, const float *sin_t);
/* in place: dv <- R^T dv */
void rope_backward(float *dv, int N, int T, int n_heads, int head_dim, int rope_dim,
                   const float *cos_t, const float *sin_t);

/* Causal attention per window of T tokens with a visibility mask:
 * query t sees keys p <= t with vis[p] or p == t. q(N, H*hd), k, v(N, KV*hd),
 * out o(N, H*hd), probabilities P(B, H, T, T) (0 where not seen). */
void attention_forward(float *o, float *P, const float *q, const float *k, const float *v,
                       const uint8_t *vis, int B, int T, int H, int KV, int hd,
                       void (*softmax)(float *x, int n), float *scratch);
/* dq, dk, dv += from do */
void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *P,
                        const float *q, const float *k, const float *v, int B, int T, int H, int KV,
                        int hd, float *scratch);
/* scratch floats the two above need */
#define ATTENTION_SCRATCH(T, hd) (2 * (size_t)(hd) * (size_t)(T) + (size_t)(T) + (size_t)(hd))

/* g(N, F) = silu(a) * b, through the kernel table's swiglu */
void swiglu_forward(float *g, const float *a, const float *b, int N, int F,
                    void (*swiglu)(float *out, const float *gate, const float *up, int n));
/* da, db (overwritten) from dg */
void swiglu_backward(float *da, float *db, const float *dg, const float *a, const float *b, int N,
                     int F);

#endif

/* ---- weight gradients and threads ----------------------------------------------
 * General products with row strides, SIMD (4 rows x 8 columns in registers),
 * each element summed over k in plain order: the same bits whatever the
 * blocking, so any split of rows across threads gives the same result. The
 * _par versions split independent output rows across the pool's threads
 * (pool.h; NULL: the caller alone), natively and in wasm. */

#ifndef DOZE_TRAIN_OPS_FULL_H
#define DOZE_TRAIN_OPS_FULL_H

/* products below this many multiply-adds stay on the caller: waking the
 * threads costs more than they take */
#define TRAIN_PAR_MIN_MACS 4e6

/* c(N, M) += a(N, K) . b(K, M) */
void gemm_nn(float *c, int ldc, const float *a, int lda, const float *b, int ldb, int N, int K, int M);
/* c(N, M) += a(K, N)^T . b(K, M) */
void gemm_tn(float *c, int ldc, const float *a, int lda, const float *b, int ldb, int N, int K, int M);
/* dW(out, in) += dy(N, out)^T . x(N, in): the weight gradient of y = x W^T */
void matmul_backward_weights(float *dw, const float *dy, const float *x, int N, int out, int in,
                             doze_pool *pool);
void matmul_backward_weights_ref(float *dw, const float *dy, const float *x, int N, int out, int in);
/* y(N, out) = x(N, in) . W^T from wt(in, out) (matmul_forward_t), threaded */
void matmul_forward_t_par(float *y, const float *x, const float *wt, int N, int out, int in,
                          doze_pool *pool);
/* dx(N, in) += dy(N, out) . W(out, in) (matmul_backward), threaded */
void matmul_backward_par(float *dx, const float *dy, const float *w, int N, int out, int in,
                         doze_pool *pool);
/* softmax_rows, rows split across the pool's threads */
void softmax_rows_par(float *out, const float *x, int N, int V, void (*softmax)(float *x, int n),
                      doze_pool *pool);
/* dw(D) += sum_n dy_n * x_n * rinv_n: the weight gradient of rmsnorm */
void rmsnorm_backward_weights(float *dw, const float *dy, const float *x, const float *rinv, int N,
                              int D);

#endif /* DOZE_TRAIN_OPS_FULL_H */
