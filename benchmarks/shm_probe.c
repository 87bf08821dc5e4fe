// What the two CPUs a shared-memory allreduce runs on look like to each other, measured from inside the guest
// in about 0.3 s (benchmarks/shm_streaks.sh runs it before every allreduce run). Two threads pinned to CPU A
// and CPU B (arguments, default 0 and 1):
//   pingpong_ns   one-way latency of a cache line bounced between the two (an atomic counter);
//   peer_GBps     B writes a 512 KiB block, A reads it (B's dirty lines come over), median of 200 rounds;
//   own_GBps      A writes and reads the same block itself (from its own cache);
//   both_x        time of a dependent-FMA loop on both CPUs at once ÷ alone on A: 1.0 = two real cores,
//                 about 2 = one core for both (SMT siblings, or the host runs both vCPUs on one thread).
// Build: cc -O2 -march=native -pthread benchmarks/shm_probe.c -o shm_probe. Prints one line of key=value pairs.
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static int pin(int cpu) { cpu_set_t s; CPU_ZERO(&s); CPU_SET(cpu, &s); return pthread_setaffinity_np(pthread_self(), sizeof s, &s); }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

static int cpuA = 0, cpuB = 1;
enum { PINGS = 100000, BLOCK = 512 << 10, ROUNDS = 200 };
static _Alignas(128) _Atomic long ball;
static _Alignas(128) _Atomic long turn;
static uint64_t *block;
static volatile uint64_t sink;

static void *pong(void *arg) {
    (void)arg; pin(cpuB);
    for (long i = 0; i < PINGS; i++) {
        while (atomic_load_explicit(&ball, memory_order_acquire) != 2 * i + 1) {}
        atomic_store_explicit(&ball, 2 * i + 2, memory_order_release);
    }
    return 0;
}

static void *writer(void *arg) {
    (void)arg; pin(cpuB);
    for (long k = 0; k < ROUNDS; k++) {
        while (atomic_load_explicit(&turn, memory_order_acquire) != 2 * k) {}
        for (size_t i = 0; i < BLOCK / 8; i++) block[i] = (uint64_t)k + i;
        atomic_store_explicit(&turn, 2 * k + 1, memory_order_release);
    }
    return 0;
}

// Four 256-bit accumulators (GCC/Clang vector types): bound by the loads, not by an add chain.
typedef uint64_t v4u __attribute__((vector_size(32)));
static uint64_t readBlock(void) {
    const v4u *p = (const v4u *)block;
    v4u a = {0}, b = {0}, c = {0}, d = {0};
    for (size_t i = 0; i < BLOCK / sizeof(v4u); i += 4) { a ^= p[i]; b ^= p[i + 1]; c ^= p[i + 2]; d ^= p[i + 3]; }
    a ^= b ^ c ^ d;
    return a[0] ^ a[1] ^ a[2] ^ a[3];
}

static void *compute(void *arg) {
    pin((int)(intptr_t)arg);
    double x = 1, y = 1, t = now();
    for (long i = 0; i < 50000000; i++) { x = x * 1.0000001 + 1e-9; y = y * 0.9999999 + 1e-9; }
    sink += (uint64_t)(x + y);
    double *r = malloc(sizeof *r); *r = now() - t;
    return r;
}

int main(int argc, char **argv) {
    if (argc > 1) cpuA = atoi(argv[1]);
    if (argc > 2) cpuB = atoi(argv[2]);
    pthread_t t;
    if (pin(cpuA) != 0) { fprintf(stderr, "shm_probe: cannot pin to CPU %d\n", cpuA); return 1; }

    pthread_create(&t, 0, pong, 0);
    double t0 = now();
    for (long i = 0; i < PINGS; i++) {
        atomic_store_explicit(&ball, 2 * i + 1, memory_order_release);
        while (atomic_load_explicit(&ball, memory_order_acquire) != 2 * i + 2) {}
    }
    double ping = (now() - t0) / PINGS / 2 * 1e9;
    pthread_join(t, 0);

    block = aligned_alloc(4096, BLOCK);
    memset(block, 0, BLOCK);
    double peer[ROUNDS], own[ROUNDS];
    pthread_create(&t, 0, writer, 0);
    for (long k = 0; k < ROUNDS; k++) {
        while (atomic_load_explicit(&turn, memory_order_acquire) != 2 * k + 1) {}
        double s = now(); sink += readBlock(); peer[k] = now() - s;
        atomic_store_explicit(&turn, 2 * k + 2, memory_order_release);
    }
    pthread_join(t, 0);
    for (long k = 0; k < ROUNDS; k++) {
        for (size_t i = 0; i < BLOCK / 8; i++) block[i] = (uint64_t)k * 3 + i;
        double s = now(); sink += readBlock(); own[k] = now() - s;
    }
    qsort(peer, ROUNDS, sizeof(double), cmp);
    qsort(own, ROUNDS, sizeof(double), cmp);

    double *alone = compute((void *)(intptr_t)cpuA);
    pthread_t u, v; double *ra, *rb;
    pthread_create(&u, 0, compute, (void *)(intptr_t)cpuA);
    pthread_create(&v, 0, compute, (void *)(intptr_t)cpuB);
    pthread_join(u, (void **)&ra); pthread_join(v, (void **)&rb);
    double both = (*ra > *rb ? *ra : *rb) / *alone;

    printf("cpus=%d,%d pingpong_ns=%.0f peer_GBps=%.1f own_GBps=%.1f both_x=%.2f\n", cpuA, cpuB, ping,
           BLOCK / peer[ROUNDS / 2] / 1e9, BLOCK / own[ROUNDS / 2] / 1e9, both);
    return 0;
}
