/* Median, range and the 2x-spread marker of benchmark rounds (rounds.h). */
#include "rounds.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void doze_rounds_add(doze_rounds *r, double x) {
    if (r->n < DOZE_ROUNDS_MAX) r->v[r->n++] = x;
}

double doze_rounds_median(const doze_rounds *r) {
    if (r->n == 0) return 0.0;
    double s[DOZE_ROUNDS_MAX];
    memcpy(s, r->v, (size_t)r->n * sizeof(double));
    for (int i = 1; i < r->n; i++) /* insertion sort: at most 64 values */
        for (int j = i; j > 0 && s[j] < s[j - 1]; j--) {
            double t = s[j];
            s[j] = s[j - 1];
            s[j - 1] = t;
        }
    return r->n % 2 ? s[r->n / 2] : 0.5 * (s[r->n / 2 - 1] + s[r->n / 2]);
}

double doze_rounds_min(const doze_rounds *r) {
    double m = r->n ? r->v[0] : 0.0;
    for (int i = 1; i < r->n; i++)
        if (r->v[i] < m) m = r->v[i];
    return m;
}

double doze_rounds_max(const doze_rounds *r) {
    double m = r->n ? r->v[0] : 0.0;
    for (int i = 1; i < r->n; i++)
        if (r->v[i] > m) m = r->v[i];
    return m;
}

int doze_rounds_unreliable(const doze_rounds *r) {
    if (r->n < 2) return 1;
    for (int i = 0; i < r->n; i++)
        if (!(r->v[i] > 0.0) || !isfinite(r->v[i])) return 1;
    return doze_rounds_max(r) > 2.0 * doze_rounds_min(r);
}

int doze_rounds_format(char *buf, size_t cap, const doze_rounds *r, int decimals) {
    return snprintf(buf, cap, "%.*f (%.*f-%.*f)%s", decimals, doze_rounds_median(r), decimals, doze_rounds_min(r),
                    decimals, doze_rounds_max(r), doze_rounds_unreliable(r) ? " UNRELIABLE" : "");
}

void doze_rounds_ratio(doze_rounds *out, const doze_rounds *a, const doze_rounds *b) {
    out->n = 0;
    for (int i = 0; i < a->n && i < b->n; i++) doze_rounds_add(out, b->v[i] != 0.0 ? a->v[i] / b->v[i] : 0.0);
}
