// The kernels' thread pool: one per process, T − 1 persistent pthreads plus the calling thread. See CDMLKernels.h.
//
// A parallel call publishes its work (function, context, unit count) under a new tag; each worker spins briefly on
// the tag (the next gemm of a step usually follows within microseconds), then sleeps on a condition variable.
// Every thread, the caller included, claims units one at a time (a compare-and-swap on the tag and the next unit)
// until none is left, and the caller returns when all are finished: a worker that the OS has not scheduled (a
// loaded or oversubscribed machine) leaves its units to the others instead of stalling the call. Which thread
// runs a unit never changes what the unit computes. Sleepers are woken only when one is actually asleep (a
// seq_cst store/load pair on each side, so a wake-up is never lost).
#define _GNU_SOURCE
#include "CDMLKernels.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

enum { SPIN = 1 << 14 };

/// One step of a spin-wait: a pause, and every 64th step a yield, so that on a loaded or oversubscribed machine a
/// waiting thread hands its core to the thread it waits for (or to another process) instead of burning its slice.
static inline void relax(long spins) {
    if ((spins & 63) == 63) {
        sched_yield();
        return;
    }
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
}

typedef struct {
    long count;  // threads, the caller included
    pthread_t *workers;
    pthread_mutex_t mu;
    pthread_cond_t wake, done_cond;
    /// The current job's tag (high 32 bits) and its next unclaimed unit (low 32 bits): a unit is claimed by a
    /// compare-and-swap that also checks the tag, so a thread that slept through a job never touches the next.
    _Atomic unsigned long long next;
    _Atomic long done;  // units of the current job finished
    _Atomic int sleepers;
    _Atomic int caller_sleeping;
    _Atomic int stop;
    _Atomic(dml_range_fn) fn;
    _Atomic(void *) ctx;
    _Atomic long units;
} dml_pool;

typedef struct {
    dml_pool *pool;
    long index;
} worker_arg;

static dml_pool *_Atomic current_pool;
static _Atomic int busy;  // a parallel call is running on the pool
static pthread_mutex_t config_mu = PTHREAD_MUTEX_INITIALIZER;

/// Claims and runs units of job `tag` until none is left (or the job is no longer current); returns how many ran.
static long work(dml_pool *p, unsigned long long tag) {
    long ran = 0;
    for (;;) {
        unsigned long long w = atomic_load(&p->next);
        if ((w >> 32) != tag) return ran;
        const long unit = (long)(w & 0xFFFFFFFFull), units = atomic_load_explicit(&p->units, memory_order_relaxed);
        if (unit >= units) return ran;
        dml_range_fn fn = atomic_load_explicit(&p->fn, memory_order_relaxed);
        void *ctx = atomic_load_explicit(&p->ctx, memory_order_relaxed);
        // Succeeds only while job `tag` is current with `unit` unclaimed, so fn and ctx read above are its own.
        if (!atomic_compare_exchange_weak(&p->next, &w, w + 1)) continue;
        fn(ctx, unit, unit + 1);
        ran++;
        if (atomic_fetch_add(&p->done, 1) + 1 == units && atomic_load(&p->caller_sleeping)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_broadcast(&p->done_cond);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

static void *worker_main(void *raw) {
    worker_arg arg = *(worker_arg *)raw;
    free(raw);
    dml_pool *p = arg.pool;
    unsigned long long seen = 0;
    for (;;) {
        unsigned long long tag;
        long spins = 0;
        while ((tag = atomic_load_explicit(&p->next, memory_order_acquire) >> 32) == seen && spins < SPIN) {
            relax(spins);
            spins++;
        }
        if (tag == seen) {
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while ((tag = atomic_load(&p->next) >> 32) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->wake, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = tag;
        work(p, tag);
    }
}

static void pool_destroy(dml_pool *p) {
    if (!p) return;
    atomic_store(&p->stop, 1);
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (long i = 1; i < p->count; i++) pthread_join(p->workers[i - 1], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done_cond);
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
    pthread_cond_init(&p->done_cond, NULL);
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
    atomic_store_explicit(&p->fn, fn, memory_order_relaxed);
    atomic_store_explicit(&p->ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&p->units, units, memory_order_relaxed);
    atomic_store(&p->done, 0);
    const unsigned long long tag = (atomic_load(&p->next) >> 32) + 1;
    atomic_store(&p->next, tag << 32);  // seq_cst: publishes the job, then reads `sleepers`
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
    }
    work(p, tag);  // the caller claims units too: if a worker is not running, the caller does its share
    long spins = 0;
    while (atomic_load_explicit(&p->done, memory_order_acquire) < units && spins < SPIN) {
        relax(spins);
        spins++;
    }
    if (atomic_load(&p->done) < units) {
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->caller_sleeping, 1);
        while (atomic_load(&p->done) < units) pthread_cond_wait(&p->done_cond, &p->mu);
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
