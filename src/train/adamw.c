#include "adamw.h"

#include <math.h>

#include "train_ops.h"

adamw_step adamw_at(float lr, float b1, float b2, float eps, int step) {
    adamw_step s = {lr, b1, b2, eps, 0.0f, 0.0f};
    s.c1 = (float)(1.0 - pow((double)b1, (double)step));
    s.c2 = (float)(1.0 - pow((double)b2, (double)step));
    return s;
}

void adamw_update(const adamw_step *s, float *w, const float *g, float *m, float *v, size_t n, float scale,
                  float wd, int threads) {
    const float lr = s->lr, b1 = s->b1, b2 = s->b2, eps = s->eps, c1 = s->c1, c2 = s->c2;
    const long nl = (long)n;
    (void)threads;
    DOZE_OMP("omp parallel for schedule(static) num_threads(threads) if(threads > 1 && nl >= (1L << 20))")
    for (long i = 0; i < nl; i++) {
        const float gi = g[i] * scale;
        m[i] = b1 * m[i] + (1.0f - b1) * gi;
        v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
        w[i] -= lr * ((m[i] / c1) / (sqrtf(v[i] / c2) + eps) + wd * w[i]);
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
