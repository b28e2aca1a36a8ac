/* rounds.h: median, range, the 2x-spread marker and the printed form of
 * benchmark rounds, on fixed numbers (no timing). */
#include <math.h>
#include <string.h>

#include "rounds.h"
#include "test_util.h"

static doze_rounds of(const double *v, int n) {
    doze_rounds r = {{0}, 0};
    for (int i = 0; i < n; i++) doze_rounds_add(&r, v[i]);
    return r;
}

int main(void) {
    char buf[128];
    const double odd[5] = {30, 10, 50, 20, 40}, even[4] = {4, 1, 3, 2};
    doze_rounds r = of(odd, 5);
    CHECK(doze_rounds_median(&r) == 30 && doze_rounds_min(&r) == 10 && doze_rounds_max(&r) == 50);
    CHECK(doze_rounds_unreliable(&r)); /* 50 > 2 * 10 */
    doze_rounds_format(buf, sizeof buf, &r, 1);
    CHECK_MSG(strcmp(buf, "30.0 (10.0-50.0) UNRELIABLE") == 0, "got \"%s\"", buf);
    r = of(even, 4);
    CHECK(doze_rounds_median(&r) == 2.5);
    CHECK(doze_rounds_unreliable(&r)); /* 4 > 2 * 1 */

    /* exactly 2x is still reliable; just over is not */
    const double two[3] = {100, 150, 200}, over[3] = {100, 150, 200.001};
    r = of(two, 3);
    CHECK(!doze_rounds_unreliable(&r));
    doze_rounds_format(buf, sizeof buf, &r, 2);
    CHECK_MSG(strcmp(buf, "150.00 (100.00-200.00)") == 0, "got \"%s\"", buf);
    r = of(over, 3);
    CHECK(doze_rounds_unreliable(&r));

    /* one round shows no spread; a zero, negative or nan round is no measurement */
    const double one[1] = {5}, zero[3] = {5, 0, 5}, neg[3] = {5, -5, 5}, nan3[3] = {5, NAN, 5};
    r = of(one, 1);
    CHECK(doze_rounds_unreliable(&r) && doze_rounds_median(&r) == 5);
    r = of(zero, 3);
    CHECK(doze_rounds_unreliable(&r));
    r = of(neg, 3);
    CHECK(doze_rounds_unreliable(&r));
    r = of(nan3, 3);
    CHECK(doze_rounds_unreliable(&r));
    r = of(NULL, 0);
    CHECK(doze_rounds_median(&r) == 0 && doze_rounds_unreliable(&r));

    /* per-round ratios: a load change that hits both figures of a round cancels */
    const double a[4] = {100, 40, 90, 60}, b[4] = {50, 20, 45, 30};
    doze_rounds ra = of(a, 4), rb = of(b, 4), q;
    doze_rounds_ratio(&q, &ra, &rb);
    CHECK(q.n == 4 && doze_rounds_min(&q) == 2 && doze_rounds_max(&q) == 2);
    CHECK(doze_rounds_unreliable(&ra) && !doze_rounds_unreliable(&q));

    /* at most DOZE_ROUNDS_MAX values are kept */
    r = of(NULL, 0);
    for (int i = 0; i < DOZE_ROUNDS_MAX + 10; i++) doze_rounds_add(&r, 1.0 + i);
    CHECK(r.n == DOZE_ROUNDS_MAX && doze_rounds_max(&r) == DOZE_ROUNDS_MAX);
    return test_finish("test_rounds");
}
