/* A persistent pool of threads for the forward pass, owned by the model.
 *
 * A job is (fn, args, n items): the items are cut into contiguous parts
 * (a few per thread, or at most the job's part limit), the caller and the
 * pool's threads claim them one at a time until none is left, and pool_run
 * returns when every part is done. The work is always
 * cut into whole output elements (rows of a product, heads, tokens) that are
 * each computed by the same code in the same order whatever the cut, so the
 * results are bit-identical for any thread count: a job run with one part
 * (the caller alone) gives the same bits as with many. That is also why a
 * second caller that finds the pool busy simply runs its job alone.
 *
 * Natively the threads are pthreads. In wasm (a build with atomics and a
 * shared memory) the pool allocates each worker's stack; the host starts one
 * Web Worker / worker_thread per worker, instantiates the same module on the
 * same memory, sets its stack pointer to pool_stack_top(i) and calls
 * pool_work(i), which loops until pool_free. A part is only given to a
 * worker that has entered pool_work, so a pool whose workers have not
 * started (yet) still runs every job, on the caller. */
#ifndef DOZE_POOL_H
#define DOZE_POOL_H

#include <stddef.h>

#include "doze.h"

#define DOZE_MAX_THREADS 64

typedef struct doze_pool doze_pool;

/* Runs items [begin, end) of a job; part is 0 .. parts - 1 (per-part
 * scratch). */
typedef void (*pool_fn)(void *args, int begin, int end, int part);

/* A pool of n_threads (1 .. DOZE_MAX_THREADS; the caller counts as one).
 * Fails with INVALID_ARGUMENT for n_threads > 1 in a build without threads. */
doze_status pool_new(int n_threads, doze_pool **out, doze_error *err);
/* Stops and joins the threads (wasm: waits for the started workers to
 * leave pool_work), frees everything. NULL is fine. */
void pool_free(doze_pool *p);
/* The threads a pool not owned by a model gets by default: the cores
 * natively (at most DOZE_MAX_THREADS), 1 in wasm. */
int pool_default_threads(void);
/* Threads of the pool (1 for NULL). */
int pool_threads(const doze_pool *p);

/* fn over items [0, n): at most max_parts equal parts (per-part scratch:
 * part < max_parts; <= 0: parts that shrink as the job runs out, so that
 * faster threads take more of them and the last to finish waits little),
 * each of at least min_items items (a smaller job runs in fewer parts; a
 * shrinking cut's last part may be smaller), part boundaries multiples of
 * align (>= 1). Returns when every
 * part has run. p NULL: fn(args, 0, n, 0). */
void pool_run(doze_pool *p, pool_fn fn, void *args, int n, int align, int min_items, int max_parts);

/* wasm host side: the top of worker i's stack (i in 1 .. threads - 1; 16-byte
 * aligned) and the worker's loop (returns after pool_free began). */
void *pool_stack_top(doze_pool *p, int i);
void pool_work(doze_pool *p, int i);
/* workers that have entered pool_work (the host waits for threads - 1 before
 * handing out the model, so that freeing it never races a worker's start) */
int pool_started(doze_pool *p);

#endif
