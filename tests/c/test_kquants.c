/* The K-quants (Q2_K ... Q6_K), IQ4_XS, BF16 and the 32-value fallback
 * types (Q4_1, Q5_0, Q5_1, IQ4_NL): dequantization of hand-built
 * blocks against hand-computed values, quantization error on gaussian rows
 * against ggml's own quantizer (llama.cpp's libggml-base.so from
 * node-llama-cpp, when installed: same RMS error or better), the SIMD
 * products against the reference ones and the reference against exact
 * arithmetic, matmul == matvec bit for bit, and a model converted to each
 * type (and the Q4_K_M mix) tracking the F32 model, FFN blocks of 256. */
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>

#include "convert.h"
#include "gguf.h"
#include "kquants.h"
#include "model.h"
#include "quants32.h"
#include "model_fixture.h"
#include "test_util.h"
#include "types.h"

static uint64_t rng = 0x1234567887654321ull;
static uint32_t next_u32(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float uniform(void) { return ((float)next_u32() + 0.5f) / 4294967296.0f; }
static float gaussian(void) { return sqrtf(-2.0f * logf(uniform())) * cosf(6.2831853f * uniform()); }

/* ---- hand-built blocks ------------------------------------------------------ */

/* sub-block scales 1, 2, 3, 4, 17, 18, 19, 20 and mins 0, 1, 2, 3, 33, 34,
 * 35, 36 in the 12-byte packing (high 2 bits of entries 4..7 in the top
 * bits of bytes 0..7, their low 4 bits in bytes 8..11) */
static const uint8_t kq_scales[12] = {65, 66, 67, 68, 128, 129, 130, 131, 0x11, 0x22, 0x33, 0x44};

static void test_dequantize_by_hand(void) {
    float y[256];
    doze_block_q4_K b4;
    memset(&b4, 0, sizeof b4);
    b4.d = 0x3c00;    /* 1.0 */
    b4.dmin = 0x3800; /* 0.5 */
    memcpy(b4.scales, kq_scales, 12);
    for (int l = 0; l < 128; l++) b4.qs[l] = (uint8_t)((l % 16) | ((15 - l % 16) << 4));
    doze_q4_K_dequantize_row(&b4, y, 256);
    CHECK(y[0] == 0.0f);      /* sub-block 0, q 0: 0 - 0.5 * 0 */
    CHECK(y[33] == 27.5f);    /* sub-block 1, q 14: 2 * 14 - 0.5 * 1 */
    CHECK(y[133] == 68.5f);   /* sub-block 4, q 5: 17 * 5 - 0.5 * 33 */
    CHECK(y[212] == 58.5f);   /* sub-block 6, q 4: 19 * 4 - 0.5 * 35 */
    CHECK(y[255] == -18.0f);  /* sub-block 7, q 0: 0 - 0.5 * 36 */

    doze_block_q5_K b5;
    memset(&b5, 0, sizeof b5);
    b5.d = 0x3c00;
    b5.dmin = 0x3800;
    memcpy(b5.scales, kq_scales, 12);
    memcpy(b5.qs, b4.qs, 128);
    for (int l = 0; l < 32; l++) b5.qh[l] = l % 2 ? 0 : 0xaa; /* fifth bit: odd sub-blocks, even l */
    doze_q5_K_dequantize_row(&b5, y, 256);
    CHECK(y[2] == 2.0f);      /* sub-block 0 (bit 0 clear), q 2: 1 * 2 */
    CHECK(y[33] == 27.5f);    /* l odd: no fifth bit */
    CHECK(y[34] == 57.5f);    /* sub-block 1, q 13 + 16: 2 * 29 - 0.5 */
    CHECK(y[254] == 322.0f);  /* sub-block 7, q 1 + 16: 20 * 17 - 18 */
    CHECK(y[255] == -18.0f);

    doze_block_q6_K b6;
    memset(&b6, 0, sizeof b6);
    b6.d = 0x3800; /* 0.5 */
    for (int g = 0; g < 16; g++) b6.scales[g] = (int8_t)(g - 8);
    for (int i = 0; i < 128; i++) b6.ql[i] = (uint8_t)i;
    for (int i = 0; i < 64; i++) b6.qh[i] = (uint8_t)(i * 7);
    doze_q6_K_dequantize_row(&b6, y, 256);
    CHECK(y[0] == 128.0f);    /* q 0 - 32, group 0 (scale -8): 0.5 * -8 * -32 */
    CHECK(y[40] == -24.0f);   /* ql[40] & 15 = 8, (qh[8] >> 2) & 3 = 2: q 40 - 32, scale -6 */
    CHECK(y[200] == -24.0f);  /* ql[72] >> 4 = 4, (qh[40] >> 4) & 3 = 1: q 20 - 32, scale 4 */
    CHECK(y[255] == 24.5f);   /* ql[127] >> 4 = 7, qh[63] >> 6 = 2: q 39 - 32, scale 7 */

    /* the 32-value types: qs[j] = j | (15 - j) << 4, so element j < 16 has
     * nibble j, element 16 + j nibble 15 - j; fifth bits of elements 1, 17
     * and 31 (qh = 0x80020002) */
    uint8_t qs32[16];
    for (int j = 0; j < 16; j++) qs32[j] = (uint8_t)(j | ((15 - j) << 4));
    const uint8_t qh32[4] = {0x02, 0x00, 0x02, 0x80};
    doze_block_q4_1 c41 = {0x3c00, 0xc000, {0}}; /* d 1, m -2 */
    memcpy(c41.qs, qs32, 16);
    doze_q4_1_dequantize_row(&c41, y, 32);
    CHECK(y[0] == -2.0f && y[5] == 3.0f && y[16] == 13.0f && y[31] == -2.0f);
    doze_block_q5_0 c50 = {0x3800, {0}, {0}}; /* d 0.5 */
    memcpy(c50.qh, qh32, 4);
    memcpy(c50.qs, qs32, 16);
    doze_q5_0_dequantize_row(&c50, y, 32);
    CHECK(y[0] == -8.0f);  /* (0 - 16) / 2 */
    CHECK(y[1] == 0.5f);   /* (1 + 16 - 16) / 2 */
    CHECK(y[17] == 7.0f);  /* (14 + 16 - 16) / 2 */
    CHECK(y[31] == 0.0f);  /* (0 + 16 - 16) / 2 */
    CHECK(y[30] == -7.5f); /* (1 - 16) / 2 */
    doze_block_q5_1 c51 = {0x4000, 0x3c00, {0}, {0}}; /* d 2, m 1 */
    memcpy(c51.qh, qh32, 4);
    memcpy(c51.qs, qs32, 16);
    doze_q5_1_dequantize_row(&c51, y, 32);
    CHECK(y[0] == 1.0f && y[1] == 35.0f && y[17] == 61.0f && y[31] == 33.0f && y[30] == 3.0f);
    doze_block_iq4_nl cnl = {0xb800, {0}}; /* d -0.5 */
    memcpy(cnl.qs, qs32, 16);
    doze_iq4_nl_dequantize_row(&cnl, y, 32);
    CHECK(y[0] == 63.5f && y[15] == -56.5f && y[16] == -56.5f && y[23] == -0.5f && y[24] == 5.0f);

    /* Q2_K: scale nibble g % 4 + 1, min nibble g % 3; qs[k] = k, so value
     * v has code (qs[32 * (v / 128) + v % 32] >> 2t) & 3, t = (v % 128) / 32 */
    doze_block_q2_K b2;
    memset(&b2, 0, sizeof b2);
    b2.d = 0x4000;    /* 2 */
    b2.dmin = 0x3800; /* 0.5 */
    for (int g = 0; g < 16; g++) b2.scales[g] = (uint8_t)((g % 4 + 1) | (g % 3) << 4);
    for (int k = 0; k < 64; k++) b2.qs[k] = (uint8_t)k;
    doze_q2_K_dequantize_row(&b2, y, 256);
    CHECK(y[0] == 0.0f);     /* group 0 (scale 1, min 0), qs[0] = 0 */
    CHECK(y[7] == 6.0f);     /* qs[7] & 3 = 3: 2 * 1 * 3 */
    CHECK(y[37] == 5.0f);    /* group 2 (scale 3, min 2), (qs[5] >> 2) & 3 = 1: 2 * 3 * 1 - 0.5 * 2 */
    CHECK(y[150] == 8.0f);   /* group 9 (scale 2, min 0), qs[54] & 3 = 2: 2 * 2 * 2 */
    /* Q3_K: every scale 6-bit 33 + g (signed 1 + g), hmask bit set for
     * v / 32 even; qs as Q2_K's */
    doze_block_q3_K b3;
    memset(&b3, 0, sizeof b3);
    b3.d = 0x3800; /* 0.5 */
    for (int g = 0; g < 16; g++) {
        const int l = 33 + g;
        b3.scales[g % 8] |= (uint8_t)((l & 15) << (g < 8 ? 0 : 4));
        b3.scales[8 + g % 4] |= (uint8_t)((l >> 4) << (2 * (g / 4)));
    }
    for (int k = 0; k < 32; k++) b3.hmask[k] = 0x55;
    for (int k = 0; k < 64; k++) b3.qs[k] = (uint8_t)k;
    doze_q3_K_dequantize_row(&b3, y, 256);
    CHECK(y[0] == 0.0f);     /* scale 1, code 0 | 4: 0.5 * 1 * 0 */
    CHECK(y[3] == 1.5f);     /* code 3 | 4 = 7: 0.5 * 1 * 3 */
    CHECK(y[33] == -6.0f);   /* group 2 (scale 3), v / 32 = 1 odd: code (qs[1] >> 2) & 3 = 0: 0.5 * 3 * -4 */
    CHECK(y[255] == -32.0f); /* group 15 (scale 16), v / 32 = 7: (qs[63] >> 6) & 3 = 0: 0.5 * 16 * -4 */
    /* IQ4_XS: scales 32 + j - 4 (j - 4 signed), qs as the IQ4_NL block's */
    doze_block_iq4_xs bx;
    memset(&bx, 0, sizeof bx);
    bx.d = 0x3800; /* 0.5 */
    for (int j = 0; j < 8; j++) {
        const int l = 28 + j;
        bx.scales_l[j / 2] |= (uint8_t)((l & 15) << (4 * (j % 2)));
        bx.scales_h |= (uint16_t)((l >> 4) << (2 * j));
    }
    for (int j = 0; j < 8; j++) memcpy(bx.qs + 16 * j, qs32, 16);
    doze_iq4_xs_dequantize_row(&bx, y, 256);
    CHECK(y[0] == 254.0f);   /* sub-block 0, scale -4, grid[0] = -127: 0.5 * -4 * -127 */
    CHECK(y[48] == -169.5f); /* sub-block 1 (scale -3), element 16: nibble 15 (113) */
    CHECK(y[128] == 0.0f);   /* sub-block 4: scale 0 */
    CHECK(y[255] == -190.5f); /* sub-block 7 (scale 3), element 31: nibble 0 (-127) */

    const uint16_t bf[4] = {0x3f80, 0xc000, 0x0001, 0x7f80};
    doze_bf16_dequantize_row(bf, y, 4);
    CHECK(y[0] == 1.0f && y[1] == -2.0f && y[2] == 0x1p-133f && isinf(y[3]));
    CHECK(doze_f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80);     /* tie to even: down */
    CHECK(doze_f32_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3f82); /* tie to even: up */
    CHECK((doze_f32_to_bf16(NAN) & 0x7fc0) == 0x7fc0);     /* stays a quiet NaN */

    CHECK(doze_type_row_bytes(DOZE_TYPE_Q4_K, 512) == 288);
    CHECK(doze_type_row_bytes(DOZE_TYPE_Q5_K, 256) == 176);
    CHECK(doze_type_row_bytes(DOZE_TYPE_Q6_K, 768) == 630);
    CHECK(doze_type_row_bytes(DOZE_TYPE_Q4_K, 288) == 0);
    CHECK(doze_type_row_bytes(DOZE_TYPE_BF16, 3) == 6);
    CHECK(doze_type_from_name("q4_k") == DOZE_TYPE_Q4_K && doze_type_from_name("bf16") == DOZE_TYPE_BF16);
    CHECK(convert_type_from_name("Q6_K") == DOZE_TYPE_Q6_K && convert_type_from_name("q4_k_m") == DOZE_CONVERT_Q4_K_M);
    CHECK(doze_type_row_bytes(DOZE_TYPE_Q2_K, 512) == 168 && doze_type_row_bytes(DOZE_TYPE_Q3_K, 256) == 110 &&
          doze_type_row_bytes(DOZE_TYPE_IQ4_XS, 768) == 408);
    printf("dequantize: hand-built q2_k, q3_k, q4_k, q5_k, q6_k, iq4_xs, bf16, q4_1, q5_0, q5_1, iq4_nl blocks give the hand-computed values\n");
}

/* ---- quantization error against ggml's --------------------------------------- */

typedef size_t (*ggml_quantize_chunk_fn)(int type, const float *src, void *dst, int64_t start, int64_t nrows,
                                         int64_t n_per_row, const float *imatrix);

static double rms_error(int type, const float *x, const void *q, int n) {
    float *y = malloc((size_t)n * sizeof(float));
    doze_type_traits_of(type)->dequantize_row(q, y, n);
    double e = 0, s = 0;
    for (int i = 0; i < n; i++) {
        e += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
        s += (double)x[i] * x[i];
    }
    free(y);
    return sqrt(e / s);
}

static void test_quantize_error(void) {
    const char *lib = getenv("DOZE_GGML_LIB");
    char path[1024];
    if (!lib) {
        snprintf(path, sizeof path, "%s/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so",
                 DOZE_SOURCE_DIR);
        lib = path;
    }
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    ggml_quantize_chunk_fn ggml_q = h ? (ggml_quantize_chunk_fn)dlsym(h, "ggml_quantize_chunk") : NULL;
    if (!ggml_q) printf("quantize: no ggml at %s: checking the error bounds only\n", lib);
    const int n = 256 * 64;
    float *x = malloc((size_t)n * sizeof(float));
    void *mine = malloc((size_t)n * 2), *theirs = malloc((size_t)n * 2);
    /* RMS error relative to the RMS of these gaussian rows, measured, with
     * 2% of slack: the K-quants and BF16 give ggml's bytes (0.071931,
     * 0.036084, 0.017689, 0.001661; Q2_K, Q3_K, IQ4_XS 0.298505, 0.150916,
     * 0.076715); Q4_1, Q5_0, Q5_1, IQ4_NL search more
     * scales than ggml (0.070316, 0.040471, 0.033838, 0.074565; ggml's
     * rules give 0.079315, 0.042615, 0.038047, 0.076039) */
    static const struct {
        int type;
        double bound;
    } cases[] = {{DOZE_TYPE_Q4_K, 0.0734}, {DOZE_TYPE_Q5_K, 0.0368}, {DOZE_TYPE_Q6_K, 0.0181},
                 {DOZE_TYPE_BF16, 0.0017},  {DOZE_TYPE_Q4_1, 0.0718},  {DOZE_TYPE_Q5_0, 0.0413},
                 {DOZE_TYPE_Q5_1, 0.0346},  {DOZE_TYPE_IQ4_NL, 0.0761}, {DOZE_TYPE_Q2_K, 0.3045},
                 {DOZE_TYPE_Q3_K, 0.1540},  {DOZE_TYPE_IQ4_XS, 0.0783}};
    static const char *const dists[3] = {"gaussian", "uniform", "integer"};
    for (int dist = 0; dist < 3; dist++) {
        /* integer values: codes land on rounding midpoints, where any
         * difference in how a scale is computed picks another code */
        for (int i = 0; i < n; i++)
            x[i] = dist == 2 ? nearbyintf(gaussian() * 20) : dist ? (uniform() * 2 - 1) * 3 : gaussian();
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            const doze_type_traits *t = doze_type_traits_of(cases[c].type);
            t->quantize_row(x, mine, n);
            const double em = rms_error(cases[c].type, x, mine, n);
            if (!dist) CHECK_MSG(em <= cases[c].bound, "%s: rms error %.5f > %.5f", t->name, em, cases[c].bound);
            if (ggml_q) {
                ggml_q(cases[c].type, x, theirs, 0, n / 1024, 1024, NULL);
                const double eg = rms_error(cases[c].type, x, theirs, n);
                const int same = memcmp(mine, theirs, (size_t)doze_type_row_bytes(cases[c].type, (uint64_t)n)) == 0;
                CHECK_MSG(em <= eg * (1 + 1e-6), "%s: rms error %.6f, ggml's %.6f", t->name, em, eg);
                /* the types whose quantizers follow ggml's rules give its bytes */
                const int rules = t->block_size == 256 || t->type == DOZE_TYPE_BF16;
                CHECK_MSG(same || !rules, "%s (%s rows): not ggml's bytes", t->name, dists[dist]);
                printf("quantize %-4s (%s rows): rms error / rms %.6f, ggml %.6f%s\n", t->name, dists[dist], em, eg,
                       same ? " (the same bytes)" : "");
            } else {
                printf("quantize %-4s (%s rows): rms error / rms %.6f\n", t->name, dists[dist], em);
            }
        }
    }
    /* constant, zero and hostile rows quantize without undefined behaviour
     * and dequantize to finite values where the input was finite */
    for (int i = 0; i < 256; i++) x[i] = 0.0f;
    for (int i = 256; i < 512; i++) x[i] = 1.5f;
    for (int i = 512; i < 768; i++) x[i] = i % 3 ? NAN : INFINITY;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        if (cases[c].type == DOZE_TYPE_BF16) continue;
        const doze_type_traits *t = doze_type_traits_of(cases[c].type);
        float y[768];
        t->quantize_row(x, mine, 768);
        t->dequantize_row(mine, y, 768);
        for (int i = 0; i < 256; i++) CHECK_MSG(y[i] == 0.0f, "%s: zero row gives %g", t->name, y[i]);
        for (int i = 256; i < 512; i++) CHECK_MSG(fabsf(y[i] - 1.5f) < 0.02f, "%s: 1.5 gives %g", t->name, y[i]);
    }
    free(x);
    free(mine);
    free(theirs);
    if (h) dlclose(h);
}

/* ---- products ------------------------------------------------------------------ */

static const int kq_types[] = {DOZE_TYPE_Q4_K, DOZE_TYPE_Q5_K, DOZE_TYPE_Q6_K, DOZE_TYPE_BF16,
                               DOZE_TYPE_Q4_1, DOZE_TYPE_Q5_0, DOZE_TYPE_Q5_1, DOZE_TYPE_IQ4_NL,
                               DOZE_TYPE_Q2_K, DOZE_TYPE_Q3_K, DOZE_TYPE_IQ4_XS};
#define N_KQ_TYPES (int)(sizeof kq_types / sizeof kq_types[0])

static void test_products(void) {
    const doze_kernels *S = &doze_kernels_simd, *R = &doze_kernels_reference;
    static const int shapes[][2] = {{1, 256}, {3, 512}, {8, 768}, {9, 256}, {4, 2048}, {2, 9216}, {64, 1536}, {12, 8448}, {8, 256}, {300, 256}};
    double worst[N_KQ_TYPES] = {0}, worst_exact[N_KQ_TYPES] = {0};
    long mm_bad = 0, x4_bad = 0, x4_runs = 0;
    for (int ti = 0; ti < N_KQ_TYPES; ti++) {
        const doze_type_traits *t = doze_type_traits_of(kq_types[ti]);
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            const int rows = shapes[si][0], cols = shapes[si][1];
            const size_t rb = (size_t)doze_type_row_bytes(t->type, (uint64_t)cols);
            uint8_t *w = malloc(rb * (size_t)rows);
            float *wf = malloc((size_t)rows * cols * sizeof(float)), *x = malloc((size_t)cols * 4 * sizeof(float));
            float *xd = malloc((size_t)cols * sizeof(float));
            for (int i = 0; i < rows * cols; i++) wf[i] = gaussian() * (i % 97 == 0 ? 8.0f : 1.0f);
            for (int r = 0; r < rows; r++) t->quantize_row(wf + (size_t)r * cols, w + (size_t)r * rb, cols);
            if (si % 2 && t->type != DOZE_TYPE_BF16) /* random bytes, finite f16 scales */
                for (size_t i = 0; i < rb * (size_t)rows; i++)
                    if (next_u32() % 4 == 0) w[i] = (uint8_t)next_u32();
            for (int r = 0; r < rows; r++) t->dequantize_row(w + (size_t)r * rb, wf + (size_t)r * cols, cols);
            int finite = 1;
            for (int i = 0; i < rows * cols; i++) finite &= isfinite(wf[i]) && fabsf(wf[i]) < 1e30f;
            if (!finite) { /* a random scale byte made inf/nan: requantize that matrix */
                for (int i = 0; i < rows * cols; i++) wf[i] = gaussian();
                for (int r = 0; r < rows; r++) t->quantize_row(wf + (size_t)r * cols, w + (size_t)r * rb, cols);
                for (int r = 0; r < rows; r++) t->dequantize_row(w + (size_t)r * rb, wf + (size_t)r * cols, cols);
            }
            for (int i = 0; i < cols * 4; i++) x[i] = gaussian();
            /* the input as the products take it, and its values */
            const size_t xs = doze_type_act_bytes(t, cols);
            uint8_t *xa = malloc(xs * 4);
            for (int k = 0; k < 4; k++) {
                if (t->act_type == DOZE_TYPE_Q8_0) R->quantize_q8_0(x + (size_t)k * cols, xa + (size_t)k * xs, cols);
                else if (t->act_type == DOZE_TYPE_F32) memcpy(xa + (size_t)k * xs, x + (size_t)k * cols, xs);
                else doze_round_input(t->act_type, x + (size_t)k * cols, (float *)(void *)(xa + (size_t)k * xs), cols);
            }
            if (t->act_type == DOZE_TYPE_Q8_0) doze_type_traits_of(DOZE_TYPE_Q8_0)->dequantize_row(xa, xd, cols);
            else memcpy(xd, xa, (size_t)cols * sizeof(float));
            float *ys = malloc((size_t)rows * 4 * sizeof(float)), *yr = malloc((size_t)rows * 4 * sizeof(float));
            t->products[DOZE_KERNELS_SIMD]->matvec[0](ys, w, xa, rows, cols);
            t->products[DOZE_KERNELS_REFERENCE]->matvec[0](yr, w, xa, rows, cols);
            for (int r = 0; r < rows; r++) {
                double exact = 0, mag = 1e-30;
                for (int c = 0; c < cols; c++) {
                    exact += (double)wf[(size_t)r * cols + c] * xd[c];
                    mag += fabs((double)wf[(size_t)r * cols + c] * xd[c]);
                }
                const double es = fabs(ys[r] - (double)yr[r]) / mag, ee = fabs(yr[r] - exact) / mag;
                if (es > worst[ti]) worst[ti] = es;
                if (ee > worst_exact[ti]) worst_exact[ti] = ee;
                CHECK_MSG(es < 2e-6 && ee < 2e-6, "%s %dx%d row %d: simd %.9g ref %.9g exact %.9g", t->name, rows,
                          cols, r, ys[r], yr[r], exact);
            }
            /* the x4 layout (repacked as the loader does): both sets give the
             * reference's row-major bits */
            if (t->x4_cols && rows % 4 == 0 && cols % t->x4_cols == 0) {
                uint8_t *wx = malloc(rb * (size_t)rows), *tmp = malloc(4 * rb);
                memcpy(wx, w, rb * (size_t)rows);
                for (int g = 0; g < rows / 4; g++) t->x4_pack(wx + (size_t)g * 4 * rb, (uint64_t)cols, tmp);
                float *yx = malloc((size_t)rows * sizeof(float)), *row = malloc((size_t)cols * sizeof(float));
                float *ym = malloc((size_t)rows * 4 * sizeof(float));
                for (int set = 0; set < 2; set++) {
                    t->products[set]->matvec[1](yx, wx, xa, rows, cols);
                    x4_bad += memcmp(yx, yr, (size_t)rows * sizeof(float)) != 0;
                    /* the x4 matmul (two tokens at a time where the type has
                     * such a product, an odd one alone): each token the
                     * matvec's bits */
                    for (int n = 3; n <= 4; n++) {
                        t->products[set]->matmul[1](ym, rows, wx, xa, xs, n, rows, cols);
                        for (int k = 0; k < n; k++) {
                            t->products[set]->matvec[1](yx, wx, xa + (size_t)k * xs, rows, cols);
                            x4_bad += memcmp(yx, ym + (size_t)k * rows, (size_t)rows * sizeof(float)) != 0;
                        }
                    }
                }
                free(ym);
                for (int r = 0; r < rows; r++) { /* the row gather */
                    t->x4_row(wx + (size_t)(r / 4) * 4 * rb, r % 4, (uint64_t)cols, row);
                    x4_bad += memcmp(row, wf + (size_t)r * cols, (size_t)cols * sizeof(float)) != 0;
                }
                x4_runs++;
                free(wx), free(tmp), free(yx), free(row);
            }
            /* matmul: every token's row the matvec's bits, both sets */
            for (int set = 0; set < 2; set++) {
                float *ym = malloc((size_t)rows * 4 * sizeof(float)), *y1 = malloc((size_t)rows * sizeof(float));
                t->products[set]->matmul[0](ym, rows, w, xa, xs, 4, rows, cols);
                for (int k = 0; k < 4; k++) {
                    t->products[set]->matvec[0](y1, w, xa + (size_t)k * xs, rows, cols);
                    mm_bad += memcmp(y1, ym + (size_t)k * rows, (size_t)rows * sizeof(float)) != 0;
                }
                free(ym), free(y1);
            }
            free(w), free(wf), free(x), free(xd), free(xa), free(ys), free(yr);
        }
        printf("%s products: max |simd - ref| %.3g, max |ref - exact| %.3g (of sum |w*x|)\n", t->name, worst[ti],
               worst_exact[ti]);
    }
    printf("\n");
    (void)S;
    CHECK_MSG(mm_bad == 0, "%ld matmul rows differ from their matvec", mm_bad);
    CHECK_MSG(x4_bad == 0 && x4_runs >= 4, "x4 layout: %ld of %ld differ from the row-major reference", x4_bad, x4_runs);
    printf("x4 layouts (q4_k, q5_k, q6_k, iq4_xs, q4_1, q5_0, q5_1, iq4_nl): simd and reference give the row-major reference's bits (%ld shapes)\n", x4_runs);
}

/* ---- models ------------------------------------------------------------------ */

static doze_model *load(const mem_buf *f, int kernels) {
    doze_model_params p = doze_model_default_params();
    p.kernels = kernels;
    doze_model *m = NULL;
    doze_error e;
    if (doze_model_load_memory(f->data, f->len, &p, &m, &e) != DOZE_OK) {
        fprintf(stderr, "load: %s\n", e.message);
        return NULL;
    }
    return m;
}

/* logits of n tokens (n * vocab); ffn_on: per step (n_layers, n_blocks) or NULL */
static int run(doze_model *m, const int *tok, int n, const uint8_t *ffn_on, float *out) {
    doze_error e;
    doze_session *s = doze_session_new(m, &e);
    if (!s) return -1;
    const doze_model_info *c = doze_model_get_info(m);
    uint8_t layer_on[64];
    memset(layer_on, 1, sizeof layer_on);
    for (int i = 0; i < n; i++) {
        const doze_mask mk = {layer_on, NULL, ffn_on, NULL};
        if (doze_session_step_masked(s, tok[i], &mk, &e) != DOZE_OK) {
            fprintf(stderr, "step: %s\n", e.message);
            doze_session_free(s);
            return -1;
        }
        memcpy(out + (size_t)i * c->vocab_size, doze_session_logits(s), (size_t)c->vocab_size * sizeof(float));
    }
    doze_session_free(s);
    return 0;
}

static mem_buf retype(const mem_buf *f, int type) {
    mem_buf out = {NULL, 0, 0};
    gguf_builder b;
    doze_error e;
    if (gguf_builder_init(&b, &e) != DOZE_OK) return out;
    if (convert_retype(f->data, f->len, type, &b, &e) != DOZE_OK || gguf_writer_write(b.w, mem_write, &out, &e) != DOZE_OK) {
        fprintf(stderr, "retype: %s\n", e.message);
        free(out.data);
        out.data = NULL;
    }
    gguf_builder_free(&b);
    return out;
}

static void test_models(void) {
    /* dim 256, hidden 768: every matrix is whole super-blocks */
    mem_buf f32 = fixture_gguf(256, 768, 3, 4, 2, 300, 64, 7, DOZE_TYPE_F32);
    CHECK(f32.data != NULL);
    if (!f32.data) return;
    doze_model *mf = load(&f32, DOZE_KERNELS_SIMD);
    const int n = 12, vocab = 300;
    int tok[12];
    for (int i = 0; i < n; i++) tok[i] = 3 + (i * 37) % 290;
    float *ref = malloc((size_t)n * vocab * sizeof(float)), *got = malloc((size_t)n * vocab * sizeof(float));
    float *gr = malloc((size_t)n * vocab * sizeof(float));
    CHECK(mf && run(mf, tok, n, NULL, ref) == 0);
    static const struct {
        int type;
        double bound; /* max |logit - f32 logit| / max |f32 logit| */
    } cases[] = {{DOZE_TYPE_BF16, 0.002}, {DOZE_TYPE_Q6_K, 0.012}, {DOZE_TYPE_Q5_K, 0.025},
                 {DOZE_TYPE_Q4_K, 0.05}, {DOZE_CONVERT_Q4_K_M, 0.03}, {DOZE_TYPE_Q5_0, 0.025},
                 {DOZE_TYPE_Q5_1, 0.025}, {DOZE_TYPE_Q4_1, 0.05},       {DOZE_TYPE_IQ4_NL, 0.05},
                 {DOZE_TYPE_Q3_K, 0.12}, {DOZE_TYPE_Q2_K, 0.24},        {DOZE_TYPE_IQ4_XS, 0.05}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        mem_buf q = retype(&f32, cases[c].type);
        CHECK(q.data != NULL);
        doze_model *m = q.data ? load(&q, DOZE_KERNELS_SIMD) : NULL;
        doze_model *mr = q.data ? load(&q, DOZE_KERNELS_REFERENCE) : NULL;
        CHECK(m && mr);
        if (m && mr && run(m, tok, n, NULL, got) == 0 && run(mr, tok, n, NULL, gr) == 0) {
            double worst = 0, scale = 1e-9, simd_ref = 0;
            for (size_t i = 0; i < (size_t)n * vocab; i++) {
                worst = fmax(worst, fabs((double)got[i] - ref[i]));
                scale = fmax(scale, fabs((double)ref[i]));
                simd_ref = fmax(simd_ref, fabs((double)got[i] - gr[i]));
            }
            const doze_model_info *ci = doze_model_get_info(m);
            const char *name = cases[c].type == DOZE_CONVERT_Q4_K_M ? "q4_k_m" : doze_type_name(cases[c].type);
            printf("model %-6s: max |logit - f32's| / max |f32 logit| = %.4f, simd vs reference kernels %.2g; "
                   "FFN block %d, %.2f MB of layer weights\n",
                   name, worst / scale, simd_ref / scale, ci->ffn_block, (double)ci->layer_weight_bytes / 1e6);
            CHECK_MSG(worst / scale <= cases[c].bound, "%s: %.4f", name, worst / scale);
            /* the products give the same bits in both sets (x4) or nearly
             * (row-major), the other kernels differ in summation order: an
             * activation's q8_0 code can round the other way, hence a bound
             * of quantization size, not 1e-6 */
            CHECK_MSG(simd_ref / scale <= 3e-3, "%s: simd vs reference %.3g", name, simd_ref / scale);
            /* a K-quant ffn_down is cut at whole super-blocks */
            const int kq = cases[c].type != DOZE_TYPE_BF16;
            const doze_type_traits *tt = doze_type_traits_of(cases[c].type);
            /* 32-weight types: 64 channels here (a block of 32 is 8.5 KB of
             * q8_0 gate rows at dim 256, under the 64 KB a block should
             * stream; 64 is the largest that keeps 12 of hidden 768) */
            CHECK(ci->ffn_block == (kq && (!tt || tt->block_size == 256) ? 256 : 64));
            if (kq) {
                /* the blocks are disjoint, consecutive runs of the arena, so a
                 * skipped block's bytes are not read; skipping one changes the
                 * output, skipping all but it equals the dense FFN minus the others */
                const doze_layer *L = &m->layers[1];
                for (int j = 0; j + 1 < m->n_ffn_blocks; j++)
                    CHECK((const uint8_t *)L->w_down_blk[j].data +
                              (size_t)L->w_down_blk[j].rows *
                                  doze_type_row_bytes(L->w_down_blk[j].type, (uint64_t)L->w_down_blk[j].cols) ==
                          (const uint8_t *)L->w_down_blk[j + 1].data);
                /* (n_layers, n_ffn_blocks): 32-weight types cut the FFN into more blocks */
                const int nb = m->n_ffn_blocks;
                uint8_t *on = malloc((size_t)ci->n_layers * (size_t)nb);
                CHECK(on != NULL);
                if (on) {
                    memset(on, 1, (size_t)ci->n_layers * (size_t)nb);
                    on[nb + 1] = 0; /* layer 1, block 1 */
                }
                CHECK(on && run(m, tok, n, on, got) == 0);
                free(on);
                double d = 0;
                float *dense = malloc((size_t)n * vocab * sizeof(float));
                run(m, tok, n, NULL, dense);
                for (size_t i = 0; i < (size_t)n * vocab; i++) d = fmax(d, fabs((double)got[i] - dense[i]));
                CHECK_MSG(d > 1e-4, "%s: skipping an FFN block changed nothing", name);
                /* the batched prefill (matmul) gives the token steps' bits */
                doze_error e;
                doze_session *s = doze_session_new(m, &e);
                CHECK(s && doze_session_prefill(s, tok, n, &e) == DOZE_OK);
                if (s)
                    CHECK_MSG(memcmp(doze_session_logits(s), dense + (size_t)(n - 1) * vocab,
                                     (size_t)vocab * sizeof(float)) == 0,
                              "%s: prefill logits differ from the steps'", name);
                doze_session_free(s);
                free(dense);
            }
        }
        doze_model_free(m);
        doze_model_free(mr);
        free(q.data);
    }
    free(ref), free(got), free(gr);
    doze_model_free(mf);
    free(f32.data);
}

/* llama.cpp's Q4_K_M mix on a model whose rows are not whole super-blocks
 * (dim 576, SmolLM2-135M's; hidden 1536 is): the fallbacks, tensor by
 * tensor, as llama.cpp picks them, and the model tracks the F32 one */
static void test_fallback_mix(void) {
    const uint64_t ne576[2] = {576, 64}, ne1536[2] = {1536, 64}, ne48[2] = {48, 64};
    CHECK(convert_tensor_type(DOZE_TYPE_Q4_K, "blk.0.attn_q.weight", 2, ne576, 8, 1) == DOZE_TYPE_Q5_0);
    CHECK(convert_tensor_type(DOZE_TYPE_Q5_K, "blk.0.attn_q.weight", 2, ne576, 8, 1) == DOZE_TYPE_Q5_1);
    CHECK(convert_tensor_type(DOZE_TYPE_Q6_K, "blk.0.attn_q.weight", 2, ne576, 8, 1) == DOZE_TYPE_Q8_0);
    CHECK(convert_tensor_type(DOZE_TYPE_Q4_K, "blk.0.attn_q.weight", 2, ne48, 8, 1) == DOZE_TYPE_F16);
    CHECK(convert_tensor_type(DOZE_TYPE_Q3_K, "blk.0.attn_q.weight", 2, ne576, 8, 1) == DOZE_TYPE_IQ4_NL);
    CHECK(convert_tensor_type(DOZE_TYPE_Q2_K, "blk.0.attn_q.weight", 2, ne576, 8, 1) == DOZE_TYPE_IQ4_NL);
    CHECK(convert_tensor_type(DOZE_TYPE_IQ4_XS, "blk.0.attn_q.weight", 2, ne576, 8, 1) == DOZE_TYPE_IQ4_NL);
    CHECK(convert_tensor_type(DOZE_TYPE_Q4_K, "blk.0.ffn_down.weight", 2, ne1536, 8, 1) == DOZE_TYPE_Q4_K);
    CHECK(convert_tensor_type(DOZE_TYPE_Q5_0, "blk.0.attn_q.weight", 2, ne48, 8, 1) == DOZE_TYPE_F32);
    mem_buf f32 = fixture_gguf(576, 1536, 8, 9, 3, 300, 64, 11, DOZE_TYPE_F32);
    CHECK(f32.data != NULL);
    if (!f32.data) return;
    mem_buf q = retype(&f32, DOZE_CONVERT_Q4_K_M);
    CHECK(q.data != NULL);
    if (!q.data) {
        free(f32.data);
        return;
    }
    gguf_header h;
    doze_error e;
    CHECK(gguf_parse_header(q.data, q.len, &h, &e) == DOZE_OK);
    int n_q50 = 0, n_q80 = 0, n_q6k = 0, n_q4k = 0, other = 0;
    for (uint64_t i = 0; i < h.n_tensors; i++) {
        const char *name = h.tensors[i].name.data;
        const int t = (int)h.tensors[i].type, more = strstr(name, "blk.0.") || strstr(name, "blk.7.") ||
                                                   strstr(name, "blk.3.") || strstr(name, "blk.6.");
        if (h.tensors[i].n_dims < 2) continue;
        if (strcmp(name, "token_embd.weight") == 0) /* tied: the classifier's q6_k, falling back */
            n_q80 += t == DOZE_TYPE_Q8_0, other += t != DOZE_TYPE_Q8_0;
        else if (strstr(name, "ffn_down")) /* rows of 1536: whole super-blocks */
            n_q6k += more && t == DOZE_TYPE_Q6_K, n_q4k += !more && t == DOZE_TYPE_Q4_K,
                other += t != (more ? DOZE_TYPE_Q6_K : DOZE_TYPE_Q4_K);
        else if (strstr(name, "attn_v")) /* q6_k in use_more_bits layers, falling back */
            n_q80 += more && t == DOZE_TYPE_Q8_0, n_q50 += !more && t == DOZE_TYPE_Q5_0,
                other += t != (more ? DOZE_TYPE_Q8_0 : DOZE_TYPE_Q5_0);
        else
            n_q50 += t == DOZE_TYPE_Q5_0, other += t != DOZE_TYPE_Q5_0;
    }
    gguf_header_free(&h);
    printf("q4_k_m of a dim-576 model: %d q5_0, %d q8_0, %d q6_k, %d q4_k matrices, %d others\n", n_q50, n_q80,
           n_q6k, n_q4k, other);
    CHECK(other == 0 && n_q80 == 1 + 4 && n_q6k == 4 && n_q4k == 4 && n_q50 == 8 * 5 + 4);
    doze_model *mf = load(&f32, DOZE_KERNELS_SIMD), *m = load(&q, DOZE_KERNELS_SIMD);
    CHECK(mf && m);
    const int n = 8, vocab = 300;
    int tok[8];
    for (int i = 0; i < n; i++) tok[i] = 3 + (i * 41) % 290;
    float *ref = malloc((size_t)n * vocab * sizeof(float)), *got = malloc((size_t)n * vocab * sizeof(float));
    if (mf && m && run(mf, tok, n, NULL, ref) == 0 && run(m, tok, n, NULL, got) == 0) {
        double worst = 0, scale = 1e-9;
        for (size_t i = 0; i < (size_t)n * vocab; i++) {
            worst = fmax(worst, fabs((double)got[i] - ref[i]));
            scale = fmax(scale, fabs((double)ref[i]));
        }
        printf("model q4_k_m (dim 576): max |logit - f32's| / max |f32 logit| = %.4f\n", worst / scale);
        CHECK_MSG(worst / scale <= 0.03, "dim-576 q4_k_m: %.4f", worst / scale);
    }
    free(ref), free(got);
    doze_model_free(mf);
    doze_model_free(m);
    free(q.data);
    free(f32.data);
}

/* A converted file says what it now is: general.file_type is the target's
 * llama_ftype, not the source's copied along with the other keys (a hub F16
 * file says 1, and its Q4_K_M conversion called itself F16 to llama.cpp and
 * to hub tools), and general.quantization_version is llama.cpp's 2. */
static int file_type_of(const mem_buf *f, int64_t *ftype, int64_t *qversion) {
    gguf_header h;
    doze_error e;
    if (gguf_parse_header(f->data, f->len, &h, &e) != DOZE_OK) return -1;
    const int ok = gguf_get_int(&h, "general.file_type", ftype, &e) == DOZE_OK &&
                   gguf_get_int(&h, "general.quantization_version", qversion, &e) == DOZE_OK;
    gguf_header_free(&h);
    return ok ? 0 : -1;
}

static void test_convert_file_type(void) {
    mem_buf f32 = fixture_gguf(256, 512, 2, 4, 2, 300, 64, 5, DOZE_TYPE_F32);
    CHECK(f32.data != NULL);
    if (!f32.data) return;
    mem_buf f16 = retype(&f32, DOZE_TYPE_F16);
    int64_t ft = -1, qv = -1;
    CHECK(f16.data && file_type_of(&f16, &ft, &qv) == 0 && ft == 1 && qv == 2);
    static const struct {
        int target, ftype;
    } cases[] = {{DOZE_CONVERT_Q4_K_M, 15}, {DOZE_TYPE_Q8_0, 7}, {DOZE_TYPE_Q6_K, 18}, {DOZE_TYPE_F32, 0}};
    for (size_t c = 0; f16.data && c < sizeof cases / sizeof cases[0]; c++) {
        mem_buf q = retype(&f16, cases[c].target); /* from the file labelled F16 */
        ft = qv = -1;
        CHECK_MSG(q.data && file_type_of(&q, &ft, &qv) == 0 && ft == cases[c].ftype && qv == 2,
                  "target %d: general.file_type %lld (want %d), quantization_version %lld", cases[c].target,
                  (long long)ft, cases[c].ftype, (long long)qv);
        free(q.data);
    }
    free(f16.data);
    free(f32.data);
}

int main(void) {
    test_dequantize_by_hand();
    test_quantize_error();
    test_products();
    test_models();
    test_fallback_mix();
    test_convert_file_type();
    return test_finish("test_kquants");
}
