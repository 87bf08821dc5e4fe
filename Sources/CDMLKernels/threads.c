// The kernels' thread pool: one per process, T − 1 persistent pthreads plus the calling thread. See CDMLKernels.h.
//
// A parallel call publishes its work (function, context, unit count) and bumps a generation counter; each worker
// spins briefly on the counter (the next gemm of a step usually follows within microseconds), then sleeps on a
// condition variable. The caller runs its own share, then waits the same way for the workers' count to reach
// zero. Sleepers are woken only when one is actually asleep (a seq_cst store/load pair on each side, so a wake-up
// is never lost), so a call between busy threads costs two cache-line handoffs, not a system call.
#define _GNU_SOURCE
#include "CDMLKernels.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

enum { SPIN = 1 << 14 };

static inline void relax(void) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
}

typedef struct {
    long count;  // threads, the caller included
    pthread_t *workers;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    _Atomic unsigned long generation;
    _Atomic long pending;
    _Atomic int sleepers;
    _Atomic int caller_sleeping;
    _Atomic int stop;
    dml_range_fn fn;
    void *ctx;
    long units;
} dml_pool;

typedef struct {
    dml_pool *pool;
    long index;
} worker_arg;

static dml_pool *_Atomic current_pool;
static _Atomic int busy;  // a parallel call is running on the pool
static pthread_mutex_t config_mu = PTHREAD_MUTEX_INITIALIZER;

/// Thread t's share of `units`: the contiguous run [units·t/T, units·(t+1)/T).
static inline void share(long units, long t, long threads, long *begin, long *end) {
    *begin = units * t / threads;
    *end = units * (t + 1) / threads;
}

static void *worker_main(void *raw) {
    worker_arg arg = *(worker_arg *)raw;
    free(raw);
    dml_pool *p = arg.pool;
    unsigned long seen = 0;
    for (;;) {
        unsigned long g;
        long spins = 0;
        while ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen && spins < SPIN) {
            relax();
            spins++;
        }
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while ((g = atomic_load(&p->generation)) == seen) pthread_cond_wait(&p->wake, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
        }
        seen = g;
        if (atomic_load(&p->stop)) return NULL;
        long b, e;
        share(p->units, arg.index, p->count, &b, &e);
        if (b < e) p->fn(p->ctx, b, e);
        if (atomic_fetch_sub(&p->pending, 1) == 1 && atomic_load(&p->caller_sleeping)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_broadcast(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

static void pool_destroy(dml_pool *p) {
    if (!p) return;
    atomic_store(&p->stop, 1);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->generation, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (long i = 1; i < p->count; i++) pthread_join(p->workers[i - 1], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p->workers);
    free(p);
}

static dml_pool *pool_create(long threads) {
    dml_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->count = threads;
    p->workers = calloc((size_t)threads, sizeof(pthread_t));
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    for (long i = 1; i < threads; i++) {
        worker_arg *arg = malloc(sizeof *arg);
        arg->pool = p;
        arg->index = i;
        if (!p->workers || pthread_create(&p->workers[i - 1], NULL, worker_main, arg) != 0) {
            free(arg);
            p->count = i;  // join the ones started
            pool_destroy(p);
            return NULL;
        }
    }
    return p;
}

int dml_threads_set(long threads) {
    if (threads < 1 || threads > DML_MAX_THREADS) return -1;
    pthread_mutex_lock(&config_mu);
    int expected = 0;
    while (!atomic_compare_exchange_weak(&busy, &expected, 1)) {  // no call may be running on the old pool
        expected = 0;
        sched_yield();
    }
    dml_pool *old = atomic_load(&current_pool), *fresh = NULL;
    int rc = 0;
    if (!old || old->count != threads) {
        if (threads > 1 && !(fresh = pool_create(threads))) rc = -1;
        if (rc == 0) {
            atomic_store(&current_pool, fresh);
            pool_destroy(old);
        }
    }
    atomic_store(&busy, 0);
    pthread_mutex_unlock(&config_mu);
    return rc;
}

long dml_threads(void) {
    dml_pool *p = atomic_load(&current_pool);
    return p ? p->count : 1;
}

void dml_parallel(long units, dml_range_fn fn, void *ctx) {
    if (units <= 0) return;
    dml_pool *p = atomic_load(&current_pool);
    int expected = 0;
    // One thread, one unit, or the pool already at work (another thread's call, or a call from inside a unit):
    // everything on the calling thread, which gives the same results.
    if (!p || units == 1 || !atomic_compare_exchange_strong(&busy, &expected, 1)) {
        fn(ctx, 0, units);
        return;
    }
    p = atomic_load(&current_pool);
    if (!p) {  // changed to one thread meanwhile
        atomic_store(&busy, 0);
        fn(ctx, 0, units);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    p->units = units;
    atomic_store(&p->pending, p->count - 1);
    atomic_fetch_add(&p->generation, 1);  // seq_cst: publishes the work, then reads `sleepers`
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
    }
    long b, e;
    share(units, 0, p->count, &b, &e);
    if (b < e) fn(ctx, b, e);
    long spins = 0;
    while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0 && spins < SPIN) {
        relax();
        spins++;
    }
    if (atomic_load(&p->pending) > 0) {
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->caller_sleeping, 1);
        while (atomic_load(&p->pending) > 0) pthread_cond_wait(&p->done, &p->mu);
        atomic_store(&p->caller_sleeping, 0);
        pthread_mutex_unlock(&p->mu);
    }
    atomic_store(&busy, 0);
}

long dml_affinity_cpus(void) {
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
#endif
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? n : 1;
}
