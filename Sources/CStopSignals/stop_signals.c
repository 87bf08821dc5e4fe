#define _GNU_SOURCE
#include "CStopSignals.h"
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t received = 0;
// When a stop of the whole process (SIGSTOP, a suspended job, a frozen VM) last ended, in CLOCK_MONOTONIC
// nanoseconds; 0: never seen. Written by the freeze watch's thread.
static _Atomic long long thawed_at = 0;

static void record(int sig) { received = sig; }

static long long monotonic_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

// Every thread of a stopped process stops, and CLOCK_MONOTONIC goes on: a thread that sleeps 100 ms at a time and
// finds more than a second gone saw the process stopped (mpirun also sends SIGCONT to running ranks when it ends
// a job, so the signal itself cannot tell). Costs one wake-up every 100 ms.
static void *freeze_watch(void *unused) {
    (void)unused;
    long long previous = monotonic_ns();
    for (;;) {
        struct timespec nap = {0, 100000000};
        nanosleep(&nap, 0);
        long long now = monotonic_ns();
        if (now - previous > 1000000000LL) atomic_store_explicit(&thawed_at, now, memory_order_relaxed);
        previous = now;
    }
    return 0;
}

void dml_freeze_watch_start(void) {
    static atomic_flag started = ATOMIC_FLAG_INIT;
    if (atomic_flag_test_and_set(&started)) return;
    pthread_t thread;
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attributes, 64 * 1024);
    pthread_create(&thread, &attributes, freeze_watch, 0);
    pthread_attr_destroy(&attributes);
}

void dml_stop_signals_install(void) {
    int signals[] = {SIGTERM, SIGINT, SIGUSR1};
    for (unsigned i = 0; i < sizeof signals / sizeof signals[0]; i++) {
        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_handler = record;
        action.sa_flags = SA_RESTART;
        sigemptyset(&action.sa_mask);
        sigaction(signals[i], &action, 0);
    }
}

double dml_seconds_since_thawed(void) {
    long long at = atomic_load_explicit(&thawed_at, memory_order_relaxed);
    return at == 0 ? -1 : (double)(monotonic_ns() - at) / 1e9;
}

int dml_stop_signal(void) { return received; }

void dml_stop_signal_request(int sig) { received = sig; }

// In dml-train, the handlers are in place before main runs: a stop signal that mpirun forwards while the
// process is still starting (loading, MPI_Init) is then kept for the first step's agreement (exit 75)
// instead of killing the rank by the signal's default action. Other programs (dml-bench, the test runner,
// a user's program linking the library) install them when they choose, with Preemption.install().
__attribute__((constructor)) static void install_early_in_dml_train(void) {
    if (strcmp(program_invocation_short_name, "dml-train") == 0) dml_stop_signals_install();
}
