#include "adamw.h"

#include <math.h>
#include <stdint.h>

#include "train_ops.h"

adamw_step adamw_at(float lr, float b1, float b2, float eps, int step) {
    adamw_step s = {lr, b1, b2, eps, 0.0f, 0.0f};
    s.c1 = (float)(1.0 - pow((double)b1, (double)step));
    s.c2 = (float)(1.0 - pow((double)b2, (double)step));
    return s;
}

typedef struct {
    const adamw_step *s;
    float *w, *m, *v;
    const float *g, *w0; /* w0: where the decay pulls (NULL: 0) */
    size_t n;
    float scale, wd;
} adamw_job;

#define ADAMW_CHUNK 4096 /* elements per item of a threaded update */

static void adamw_part(void *args, int c0, int c1, int part) {
    const adamw_job *j = args;
    const adamw_step *s = j->s;
    const float lr = s->lr, b1 = s->b1, b2 = s->b2, eps = s->eps, k1 = s->c1, k2 = s->c2;
    const float scale = j->scale, wd = j->wd;
    float *w = j->w, *m = j->m, *v = j->v;
    const float *g = j->g, *w0 = j->w0;
    const size_t end = (size_t)c1 * ADAMW_CHUNK < j->n ? (size_t)c1 * ADAMW_CHUNK : j->n;
    (void)part;
    for (size_t i = (size_t)c0 * ADAMW_CHUNK; i < end; i++) {
        const float gi = g[i] * scale;
        m[i] = b1 * m[i] + (1.0f - b1) * gi;
        v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
        const float pull = w0 ? w[i] - w0[i] : w[i];
        w[i] -= lr * ((m[i] / k1) / (sqrtf(v[i] / k2) + eps) + wd * pull);
    }
}

void adamw_update(const adamw_step *s, float *w, const float *g, float *m, float *v, size_t n, float scale,
                  float wd, doze_pool *pool) {
    adamw_update_toward(s, w, NULL, g, m, v, n, scale, wd, pool);
}

void adamw_update_toward(const adamw_step *s, float *w, const float *w0, const float *g, float *m, float *v,
                         size_t n, float scale, float wd, doze_pool *pool) {
    /* slices of at most 2^30 chunks keep the item count an int (a 32-bit
     * size_t cannot hold more than that anyway) */
    const size_t slice = SIZE_MAX / ADAMW_CHUNK < ((size_t)1 << 30) ? SIZE_MAX : ((size_t)1 << 30) * ADAMW_CHUNK;
    for (size_t o = 0; o < n; o += slice) {
        const size_t len = n - o < slice ? n - o : slice;
        adamw_job j = {s, w + o, m + o, v + o, g + o, w0 ? w0 + o : NULL, len, scale, wd};
        pool_run(len >= ((size_t)1 << 20) ? pool : NULL, adamw_part, &j,
                 (int)((len + ADAMW_CHUNK - 1) / ADAMW_CHUNK), 1, 1, 0);
    }
}

double adamw_grad_norm(const float *g, size_t n) {
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (double)g[i] * g[i];
    return sqrt(ss);
}

float adamw_clip_scale(double norm, float clip) {
    return clip > 0.0f && norm > clip ? (float)(clip / norm) : 1.0f;
}
