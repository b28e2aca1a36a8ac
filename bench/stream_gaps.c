/* How fast memory serves reads that skip: a buffer far larger than the
 * caches is read in pieces of P bytes with G bytes skipped after each
 * (on:off), and the bytes actually read per second are printed beside
 * reading everything. This is the access pattern of FFN-block skipping:
 * the running blocks of a matrix are the pieces, the skipped ones the gaps.
 * When pieces are short, the hardware prefetcher fetches past each piece's
 * end into the gap and starts slowly on the next piece, so reading half the
 * bytes can take as long as reading all of them (docs/skipping.md, "FFN
 * blocks and the memory").
 *
 *   cc -O2 -march=native bench/stream_gaps.c -o /tmp/stream_gaps && /tmp/stream_gaps
 *
 * Native only (it measures the machine, not Doze); one core. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* the sum of the words of every piece: pieces of `on` bytes every on + off */
static uint64_t read_pieces(const uint64_t *buf, size_t words, size_t on, size_t off) {
    const size_t won = on / 8, step = (on + off) / 8;
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    for (size_t i = 0; i + won <= words; i += step)
        for (size_t k = i; k < i + won; k += 4) {
            a0 += buf[k];
            a1 += buf[k + 1];
            a2 += buf[k + 2];
            a3 += buf[k + 3];
        }
    return a0 ^ a1 ^ a2 ^ a3;
}

int main(void) {
    const size_t bytes = (size_t)256 << 20, words = bytes / 8;
    uint64_t *buf = malloc(bytes);
    if (!buf) {
        fprintf(stderr, "stream_gaps: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < words; i++) buf[i] = i * 0x9e3779b97f4a7c15ull;
    const size_t pieces[] = {4096, 19584, 39168, 78336, 156672, 1 << 20};
    const int ratios[][2] = {{1, 0}, {3, 1}, {1, 1}, {1, 2}};
    const int reps = 3;
    uint64_t sink = 0;
    printf("piece bytes   GB/s of the bytes read, on:off = 1:0 (all), 3:1, 1:1, 1:2\n");
    for (int pass = 0; pass < 2; pass++) /* the first pass warms up */
        for (size_t p = 0; p < sizeof pieces / sizeof *pieces; p++) {
            if (pass) printf("%11zu", pieces[p]);
            for (size_t r = 0; r < sizeof ratios / sizeof *ratios; r++) {
                const size_t on = pieces[p] * (size_t)ratios[r][0], off = pieces[p] * (size_t)ratios[r][1];
                const double t0 = now_s();
                for (int k = 0; k < reps; k++) sink += read_pieces(buf, words, on, off);
                const double s = now_s() - t0;
                if (pass) printf("   %5.1f", (double)bytes * (double)on / (double)(on + off) * reps / s / 1e9);
            }
            if (pass) printf("\n");
        }
    free(buf);
    return sink == 42 ? 2 : 0; /* keeps the sums */
}
