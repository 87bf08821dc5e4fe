#define _GNU_SOURCE
#include "CStopSignals.h"
#include <errno.h>
#include <signal.h>
#include <string.h>

static volatile sig_atomic_t received = 0;

static void record(int sig) { received = sig; }

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

int dml_stop_signal(void) { return received; }

void dml_stop_signal_request(int sig) { received = sig; }

// In dml-train, the handlers are in place before main runs: a stop signal that mpirun forwards while the
// process is still starting (loading, MPI_Init) is then kept for the first step's agreement (exit 75)
// instead of killing the rank by the signal's default action. Other programs (dml-bench, the test runner,
// a user's program linking the library) install them when they choose, with Preemption.install().
__attribute__((constructor)) static void install_early_in_dml_train(void) {
    if (strcmp(program_invocation_short_name, "dml-train") == 0) dml_stop_signals_install();
}
