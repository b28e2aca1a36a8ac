/* The thread pool (pool.h): pthreads natively, host-started workers in wasm.
 *
 * Protocol: the caller writes the job's fields, then publishes one 64-bit
 * state word (job id, parts, next part to claim) and bumps gen to wake the
 * workers. Everyone — the caller included — claims parts by compare-and-swap
 * on the state word and runs them; the caller then spins until every part
 * is done. Since parts are claimed, not assigned, a worker the system has not
 * scheduled (or not yet started) never holds a job up: the caller runs the
 * parts nobody claimed, and the cut into parts, hence every bit of the result,
 * does not depend on who ran what. A claim names its job (id and parts in
 * the same word), so a late worker cannot take a part of the next job with
 * the previous job's count; and the next job's fields are only written once
 * every part of this one is done, so a part always reads its own job.
 * Workers spin a little, then sleep (a condition variable natively,
 * memory.atomic.wait32 in wasm); the caller never sleeps (a browser's main
 * thread may not), it spins. */
#include "pool.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

#if defined(__EMSCRIPTEN__) || defined(__wasm__)
#define POOL_WASM 1
#if defined(__wasm_atomics__)
#define POOL_THREADS 1
#else
#define POOL_THREADS 0
#endif
#else
#define POOL_WASM 0
#define POOL_THREADS 1
#include <pthread.h>
#include <sched.h>
#include <unistd.h>
#endif

#if POOL_WASM /* no pause instruction: a spin is one load, so more of them for the same time */
#define POOL_SPINS 400000
#else
#define POOL_SPINS 20000 /* a worker's busy-wait before it sleeps */
#endif
#define POOL_STACK_BYTES (512 << 10) /* a wasm worker's stack */
/* A job without a part limit is cut "guided": each part takes 1/(2 * threads)
 * of the items left, down to a tail of 1/(POOL_TAIL_DIV * threads) of the
 * job. Cores are not equal (a sibling hyperthread, another guest, a phone's
 * little cores) and a thread may be late to wake: large parts first keep the
 * claims few, and the small last ones leave whoever finishes first a short
 * wait for the others (equal parts left half a part's time idle per job). */
#define POOL_TAIL_DIV 16
/* Compiled code takes the stack pointer as 16-byte aligned (the wasm C ABI):
 * knowing a frame's low bits are zero, it may address a local as frame | k
 * rather than frame + k, so a misaligned stack makes locals alias each other.
 * malloc gives 8. */
#define POOL_STACK_ALIGN 16

struct doze_pool {
    int n; /* threads, the caller included */
    _Atomic int gen;      /* bumped per job (and once more to stop): what sleepers wait on */
    _Atomic uint64_t state; /* job id << 32 | parts << 16 | next part to claim */
    _Atomic int done;     /* parts of the current job finished */
    uint32_t job;         /* the current job's id (the caller's) */
    long long tail;       /* guided cut: the smallest part in align units; 0: equal parts */
    _Atomic int stop;
    _Atomic int busy;     /* a caller is running a job */
    _Atomic int started;  /* workers that entered their loop */
    _Atomic int alive;    /* workers still in their loop */
    _Atomic int sleepers; /* workers asleep (or about to) */
    /* the current job, written before gen is bumped */
    pool_fn fn;
    void *args;
    int n_items, align;
#if POOL_WASM
    uint8_t *stacks_mem; /* what malloc gave */
    uint8_t *stacks;     /* (n - 1) stacks of POOL_STACK_BYTES, POOL_STACK_ALIGN-aligned */
#else
    pthread_t *th;
    int n_th;        /* threads created */
    pthread_mutex_t mu;
    pthread_cond_t cv;
#endif
};

typedef struct {
    doze_pool *p;
    int i;
} worker_arg;

static void cpu_relax(void) {
#if !POOL_WASM && (defined(__x86_64__) || defined(__i386__))
    __builtin_ia32_pause();
#endif
}

int pool_threads(const doze_pool *p) { return p ? p->n : 1; }

int pool_started(doze_pool *p) { return p ? atomic_load(&p->started) : 0; }

/* align units left after the first k parts of a guided cut of units */
static long long guided_left(long long units, int threads, long long tail, int k) {
    long long left = units;
    for (int i = 0; i < k && left > 0; i++) {
        long long s = (left + 2LL * threads - 1) / (2LL * threads);
        if (s < tail) s = tail;
        left -= s < left ? s : left;
    }
    return left;
}

/* items [begin, end) of part i of parts (tail > 0: the guided cut) */
static void part_range(int n, int align, int threads, long long tail, int parts, int i, int *begin, int *end) {
    const long long units = ((long long)n + align - 1) / align;
    long long b, e;
    if (tail > 0) {
        b = (units - guided_left(units, threads, tail, i)) * align;
        e = (units - guided_left(units, threads, tail, i + 1)) * align;
    } else {
        b = units * i / parts * align;
        e = units * (i + 1) / parts * align;
    }
    *begin = (int)(b < n ? b : n);
    *end = (int)(e < n ? e : n);
}

/* Claims and runs parts of the current job until none is left. */
static void help(doze_pool *p) {
    for (;;) {
        uint64_t st = atomic_load(&p->state);
        const int parts = (int)((st >> 16) & 0xffff), k = (int)(st & 0xffff);
        if (k >= parts) return;
        if (!atomic_compare_exchange_weak(&p->state, &st, st + 1)) continue;
        int b, e;
        part_range(p->n_items, p->align, p->n, p->tail, parts, k, &b, &e);
        if (b < e) p->fn(p->args, b, e, k);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
    }
}

/* Waits until gen differs from seen (or the pool stops: a worker that
 * starts after pool_free began has missed the last bump); returns gen. */
static int wait_job(doze_pool *p, int seen) {
    for (int s = 0; s < POOL_SPINS; s++) {
        int g = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (g != seen || atomic_load_explicit(&p->stop, memory_order_relaxed)) return g;
        cpu_relax();
    }
    atomic_fetch_add(&p->sleepers, 1);
    int g;
#if POOL_WASM
#if POOL_THREADS
    while ((g = atomic_load(&p->gen)) == seen && !atomic_load(&p->stop))
        __builtin_wasm_memory_atomic_wait32((int *)&p->gen, seen, -1);
#else
    g = atomic_load(&p->gen);
#endif
#else
    pthread_mutex_lock(&p->mu);
    while ((g = atomic_load(&p->gen)) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
#endif
    atomic_fetch_sub(&p->sleepers, 1);
    return g;
}

static void wake_all(doze_pool *p) {
    if (!atomic_load(&p->sleepers)) return;
#if POOL_WASM
#if POOL_THREADS
    __builtin_wasm_memory_atomic_notify((int *)&p->gen, (unsigned)(p->n - 1));
#endif
#else
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
#endif
}

void pool_work(doze_pool *p, int i) {
    if (!p || i < 1 || i >= p->n) return;
    atomic_fetch_add(&p->alive, 1);
    int seen = atomic_load(&p->gen);
    atomic_fetch_add(&p->started, 1);
    for (;;) {
        help(p); /* a job posted before this worker looked */
        seen = wait_job(p, seen);
        if (atomic_load(&p->stop)) break;
    }
    atomic_fetch_sub(&p->alive, 1);
}

void pool_run(doze_pool *p, pool_fn fn, void *args, int n, int align, int min_items, int max_parts) {
    if (n <= 0) return;
    if (align < 1) align = 1;
    if (min_items < 1) min_items = 1;
    const int threads = p ? p->n : 1;
    const long long units = ((long long)n + align - 1) / align;
    long long tail = 0;
    int parts = threads;
    if (max_parts > 0) {
        if (parts > max_parts) parts = max_parts;
        if (parts > n / min_items) parts = n / min_items;
        if (parts > units) parts = (int)units;
    } else {
        tail = (units + (long long)POOL_TAIL_DIV * threads - 1) / ((long long)POOL_TAIL_DIV * threads);
        const long long min_units = ((long long)min_items + align - 1) / align;
        if (tail < min_units) tail = min_units;
        parts = 0;
        for (long long left = units; left > 0; parts++) left = guided_left(left, threads, tail, 1);
    }
    if (!p) parts = 1;
    int expected = 0;
    if (parts <= 1 || !atomic_compare_exchange_strong(&p->busy, &expected, 1)) {
        fn(args, 0, n, 0); /* alone: the same bits */
        return;
    }
    p->fn = fn;
    p->args = args;
    p->n_items = n;
    p->align = align;
    p->tail = tail;
    atomic_store(&p->done, 0);
    p->job++;
    atomic_store(&p->state, (uint64_t)p->job << 32 | (uint64_t)parts << 16); /* publishes the fields */
    atomic_fetch_add(&p->gen, 1); /* seq_cst: ordered before the sleepers check */
    wake_all(p);
    help(p);
    for (unsigned s = 0; atomic_load_explicit(&p->done, memory_order_acquire) != parts; s++) {
        cpu_relax();
#if !POOL_WASM
        if (s > 1000) sched_yield(); /* a claimed part's thread may be waiting for this core */
#endif
    }
    atomic_store(&p->busy, 0);
}

#if !POOL_WASM
static void *thread_main(void *arg) {
    worker_arg *a = arg;
    pool_work(a->p, a->i);
    free(a);
    return NULL;
}
#endif

int pool_default_threads(void) {
#if POOL_WASM
    return 1; /* a wasm pool's workers are started by the host, for a model */
#else
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > DOZE_MAX_THREADS ? DOZE_MAX_THREADS : (int)n;
#endif
}

doze_status pool_new(int n_threads, doze_pool **out, doze_error *err) {
    *out = NULL;
    if (n_threads < 1 || n_threads > DOZE_MAX_THREADS)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "threads must be 1 .. %d (got %d)", DOZE_MAX_THREADS,
                         n_threads);
    if (!POOL_THREADS && n_threads > 1)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT,
                         "this build runs on one thread (asked for %d): the native CLI and the package's "
                         "threaded builds take more",
                         n_threads);
    doze_pool *p = calloc(1, sizeof *p);
    if (!p) return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "no memory for a thread pool");
    p->n = n_threads;
#if POOL_WASM
    if (n_threads > 1) {
        p->stacks_mem = malloc((size_t)(n_threads - 1) * POOL_STACK_BYTES + POOL_STACK_ALIGN);
        if (!p->stacks_mem) {
            free(p);
            return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "no memory for %d worker stacks", n_threads - 1);
        }
        p->stacks = p->stacks_mem + (POOL_STACK_ALIGN - (uintptr_t)p->stacks_mem % POOL_STACK_ALIGN) % POOL_STACK_ALIGN;
    }
#else
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (n_threads > 1) {
        p->th = calloc((size_t)n_threads - 1, sizeof *p->th);
        if (!p->th) {
            pool_free(p);
            return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "no memory for a thread pool");
        }
        for (int i = 1; i < n_threads; i++) {
            worker_arg *a = malloc(sizeof *a);
            if (a) {
                a->p = p;
                a->i = i;
            }
            if (!a || pthread_create(&p->th[i - 1], NULL, thread_main, a) != 0) {
                free(a);
                pool_free(p);
                return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "could not start thread %d of %d", i, n_threads);
            }
            p->n_th++;
        }
    }
#endif
    *out = p;
    return DOZE_OK;
}

void *pool_stack_top(doze_pool *p, int i) {
#if POOL_WASM
    if (!p || !p->stacks || i < 1 || i >= p->n) return NULL;
    return p->stacks + (size_t)i * POOL_STACK_BYTES; /* worker i's stack ends where i + 1's begins */
#else
    (void)p;
    (void)i;
    return NULL;
#endif
}

void pool_free(doze_pool *p) {
    if (!p) return;
    atomic_store(&p->stop, 1);
    atomic_fetch_add(&p->gen, 1);
#if POOL_WASM
#if POOL_THREADS
    __builtin_wasm_memory_atomic_notify((int *)&p->gen, (unsigned)(p->n > 1 ? p->n - 1 : 0));
#endif
    while (atomic_load(&p->alive) != 0) cpu_relax(); /* the host's workers leave pool_work */
    free(p->stacks_mem);
#else
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_th; i++) pthread_join(p->th[i], NULL);
    free(p->th);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
#endif
    free(p);
}
