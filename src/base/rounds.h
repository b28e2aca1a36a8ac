/* The figures of a benchmark taken in interleaved rounds: each figure is the
 * series of its per-round values, reported as median and min-max, and a
 * series whose rounds spread more than 2x (max > 2 * min) is marked
 * unreliable: on a loaded machine one number per run means nothing. */
#ifndef DOZE_ROUNDS_H
#define DOZE_ROUNDS_H

#include <stddef.h>

#define DOZE_ROUNDS_MAX 64

typedef struct {
    double v[DOZE_ROUNDS_MAX]; /* the rounds' values, in round order */
    int n;
} doze_rounds;

/* appends a round's value (ignored past DOZE_ROUNDS_MAX) */
void doze_rounds_add(doze_rounds *r, double x);
/* median (the mean of the two middle values for an even count); 0 when empty */
double doze_rounds_median(const doze_rounds *r);
double doze_rounds_min(const doze_rounds *r);
double doze_rounds_max(const doze_rounds *r);
/* 1 when the rounds spread more than 2x (max > 2 min), or a value is not a
 * positive finite number, or there are fewer than 2 rounds (no spread seen) */
int doze_rounds_unreliable(const doze_rounds *r);
/* "MED (MIN-MAX)" with `decimals` decimals, " UNRELIABLE" appended when
 * doze_rounds_unreliable; returns what snprintf returns */
int doze_rounds_format(char *buf, size_t cap, const doze_rounds *r, int decimals);
/* out[i] = a[i] / b[i] per round (the ratio of two interleaved figures, so
 * that a load change between rounds cancels); n = the shorter count */
void doze_rounds_ratio(doze_rounds *out, const doze_rounds *a, const doze_rounds *b);

#endif
