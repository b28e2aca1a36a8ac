/* Compute kernels. Two tables with the same signatures: the SIMD one
 * (wasm_simd128.h intrinsics; natively through SIMDe) and the scalar
 * reference used by differential tests and `bench`'s baseline. The tables
 * are constants; a model picks one at load. */
#ifndef DOZE_KERNELS_H
#define DOZE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* One weight type's products in one kernel set. x is the input in the
 * type's activation form (doze_type_traits.act_type): f32 values (for
 * F16 / BF16 weights rounded to that type first, doze_round_input), or
 * q8_0 blocks made by quantize_q8_0. */
/* y(rows) = W(rows, cols) @ x */
typedef void (*doze_matvec_fn)(float *y, const void *w, const void *x, int rows, int cols);
/* the same for two inputs at once (each its own output, the matvec's bits) */
typedef void (*doze_matvec2_fn)(float *ya, float *yb, const void *w, const void *xa, const void *xb, int rows,
                                int cols);

/* Y(n, rows) = the n inputs at x, x + ldx, ... (bytes) @ W^T (rows of
 * row_bytes, ldy floats apart in y): W in tiles of rows (about 24 KB of
 * tile_row_bytes rows), each tile read from memory once and applied to every
 * token by the matvec itself (tokens in pairs through mv2 where given and
 * the tile is whole x4 groups), so each token gets the matvec's bits. Both
 * SIMD sets build their matmuls on it (kernels_simd.c). */
void doze_matmul_tiles(size_t tile_row_bytes, size_t row_bytes, doze_matvec_fn mv, doze_matvec2_fn mv2, float *y,
                       int ldy, const void *w, const void *x, size_t ldx, int n, int rows, int cols);
/* Y(n, rows) = X(n, cols) @ W^T for f16 W in the x4 layout: each tile of
 * rows widened to f32 once (exactly) and run through f32_mv2 (two tokens)
 * and f32_mv (an odd last one), or f16_mv on the halves where a tile is too
 * big to widen or there is one token; the three must give a token the same
 * bits. */
void doze_f16_x4_matmul(doze_matvec_fn f16_mv, doze_matvec2_fn f32_mv2, doze_matvec_fn f32_mv, float *y, int ldy,
                        const void *w, const void *x, size_t ldx, int n, int rows, int cols);
/* Y(n, rows) (row stride ldy) = X @ W^T for the n inputs at x, x + ldx, ...
 * (ldx in bytes): every token's row of Y bit-identical to its matvec */
typedef void (*doze_matmul_fn)(float *y, int ldy, const void *w, const void *x, size_t ldx, int n, int rows,
                               int cols);
typedef struct {
    doze_matvec_fn matvec[2]; /* [layout]: 0 row-major, 1 the type's x4 layout (NULL: none) */
    doze_matmul_fn matmul[2];
} doze_products;

typedef struct {
    const char *name; /* "simd" | "reference" */
    int set;          /* DOZE_KERNELS_SIMD | DOZE_KERNELS_REFERENCE: the column of
                         doze_type_traits.products this table's products are in */

    /* y(rows) = W(rows, cols) @ x(cols), W row-major f32. */
    void (*matvec_f32)(float *y, const float *w, const float *x, int rows, int cols);
    /* same, W in IEEE half */
    void (*matvec_f16)(float *y, const uint16_t *w, const float *x, int rows, int cols);
    /* same, W in q8_0 blocks (cols % 32 == 0), x given as q8_0 blocks made
     * by quantize_q8_0 (integer dot products, one scale per block pair). */
    void (*matvec_q8_0)(float *y, const void *w, const void *xq, int rows, int cols);
    /* y(rows) = W(rows, cols/32 blocks of q4_0) @ xq, xq as for matvec_q8_0;
     * per block the exact int32 dot of (q - 8) and x's quants, times
     * f16(dw) * f16(dx), summed over blocks in block order. */
    void (*matvec_q4_0)(float *y, const void *w, const void *xq, int rows, int cols);
    /* The same products with W in the "x4" layout (rows % 4 == 0): rows in
     * groups of 4, each group's blocks interleaved block by block: the 4
     * rows' f16 scales, then their 4 payloads (doze_block_q4_0x4 /
     * doze_block_q8_0x4). Same numbers as the row-major kernels.
     * matvec_q8_0_x4 takes no inf/nan weight scale (the loader keeps such
     * a tensor row-major). */
    void (*matvec_q4_0_x4)(float *y, const void *w, const void *xq, int rows, int cols);
    void (*matvec_q8_0_x4)(float *y, const void *w, const void *xq, int rows, int cols);
    /* f32 W in the x4 layout (rows % 4 == 0, cols % 4 == 0): rows in groups
     * of 4, each group's columns in chunks of 4: chunk k of the group holds
     * w[4g+0][4k..4k+3], w[4g+1][4k..4k+3], ..., w[4g+3][4k..4k+3] (64 bytes),
     * so the matrix is one linear stream and one x vector serves 4 rows. The
     * order of the sum, fixed (both tables give the same bits): l[j] = the
     * sum over columns c = j (mod 4), in column order, of w[r][c] * x[c];
     * y[r] = (l[0] + l[2]) + (l[1] + l[3]). A view of whole groups (rows
     * first % 4 == 0) gives the same bits as the whole matrix. */
    void (*matvec_f32_x4)(float *y, const float *w, const float *x, int rows, int cols);
    /* f16 W in the x4 layout (rows % 4 == 0, cols % 8 == 0), chunks of 8
     * columns: chunk k of group g holds w[4g+0][8k..8k+7], ...,
     * w[4g+3][8k..8k+7] (64 bytes). The sum in matvec_f32_x4's order over
     * the widened halves (the same bits as matvec_f32_x4 on W widened to
     * f32). W must hold no inf/nan half (the loader keeps such matrices
     * row-major); x may be anything. */
    void (*matvec_f16_x4)(float *y, const uint16_t *w, const float *x, int rows, int cols);
    /* Matrix-matrix (prefill): Y(n, rows) (row stride ldy) = X(n, cols) (row
     * stride ldx, or n q8_0 vectors of cols/32 blocks each) @ W^T, every
     * token's row of Y bit-identical to the matvec of that token. */
    void (*matmul_f32)(int layout, float *y, int ldy, const float *w, const float *x, int ldx, int n,
                       int rows, int cols);
    /* layout (both matmuls): 0 row-major, 1 the type's x4 layout. matmul_q:
     * any type but f32 through its products row (xq: n inputs in the type's
     * activation form, back to back) */
    void (*matmul_q)(int type, int layout, float *y, int ldy, const void *w, const void *xq, int n,
                     int rows, int cols);
    /* xq(n/32 blocks) = x(n) in q8_0, n % 32 == 0 (ggml's rounding). */
    void (*quantize_q8_0)(const float *x, void *xq, int n);
    /* out(n) = x(n) rounded to act_type (DOZE_TYPE_F16 or DOZE_TYPE_BF16,
     * nearest even), as floats: doze_round_input's bits (NaN, inf,
     * overflow and subnormals included); out may be x */
    void (*round_input)(int act_type, const float *x, float *out, int n);

    /* out(n) = x(n) / rms(x) * weight(n), rms = sqrt(mean(x^2) + eps) */
    void (*rmsnorm)(float *out, const float *x, const float *weight, int n, float eps);
    /* x(n) = softmax(x) in place (max-subtracted, doze_expf) */
    void (*softmax)(float *x, int n);
    /* Rotates adjacent pairs (v[2i], v[2i+1]) of the first rope_dim values of
     * each of n_heads heads of v(n_heads, head_dim) by the angle whose cos and
     * sin are cos_t(rope_dim/2) and sin_t(rope_dim/2). */
    void (*rope)(float *v, int n_heads, int head_dim, int rope_dim, const float *cos_t,
                 const float *sin_t);
    /* out(n) = silu(gate) * up, silu(g) = g / (1 + doze_expf(-g)) */
    void (*swiglu)(float *out, const float *gate, const float *up, int n);
    /* One query head over n_pos cached positions:
     *   att(t) = q . k_t / sqrt(head_dim) for t with valid == NULL or valid[t]
     *   (others get -inf, i.e. weight 0), softmax, out = sum_t att(t) v_t.
     * q(head_dim); k_t = k + t*stride, v_t = v + t*stride; att(n_pos) scratch. */
    void (*attention)(float *out, const float *q, const float *k, const float *v, int n_pos,
                      int head_dim, int stride, const uint8_t *valid, float *att);
    /* All the running query heads of one layer (head_on == NULL or
     * head_on[h]) for one token: out(n_heads, head_dim) gets head h's
     * `attention` of q(n_heads, head_dim)'s head h over KV head h / group
     * (k + (h / group) * head_dim, v likewise; stride, valid as there),
     * with exactly `attention`'s bits; skipped heads' out is not touched.
     * The cache is walked position by position (each K and V row once, front
     * to back, for up to DOZE_ATT_HEADS heads at a time), which a cache that
     * has gone cold reads much faster than head by head.
     * att: min(n_heads, DOZE_ATT_HEADS) * n_pos scratch. */
    void (*attention_heads)(float *out, const float *q, const float *k, const float *v, int n_heads,
                            int group, int n_pos, int head_dim, int stride, const uint8_t *valid,
                            const uint8_t *head_on, float *att);
    /* y(n) += x(n) */
    void (*add)(float *y, const float *x, int n);
} doze_kernels;

/* query heads per pass of attention_heads (bounds its scratch) */
#define DOZE_ATT_HEADS 16

extern const doze_kernels doze_kernels_simd;
extern const doze_kernels doze_kernels_reference;

/* exp(x) for float, the same bits on every platform (no libm): used by
 * softmax and silu in both tables and by the sampler. */
float doze_expf(float x);

/* Sums a buffer of n bytes (n % 64 == 0) with 128-bit loads: the plain read
 * loop that benchmarks compare the decode bandwidth against. */
uint32_t doze_read_probe(const void *buf, size_t n);

#endif
