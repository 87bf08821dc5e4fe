#ifndef DML_CSTOPSIGNALS_H
#define DML_CSTOPSIGNALS_H
#include "MallocArenas.h"
// Stop requests by signal (SIGTERM, SIGINT, SIGUSR1), recorded by an async-signal-safe handler in a
// `volatile sig_atomic_t`, the only kind of variable a handler may write. See Preemption.swift.

/// Installs the handler for the three stop signals (idempotent).
void dml_stop_signals_install(void);
/// The last stop signal received, or 0.
int dml_stop_signal(void);
/// Records `sig` as if it had been received (tests, fault injection).
void dml_stop_signal_request(int sig);
/// Starts (once) a thread that notices when the whole process was stopped for more than a second (SIGSTOP, a
/// suspended job): it sleeps 100 ms at a time and compares the monotonic clock.
void dml_freeze_watch_start(void);
/// Seconds since the freeze watch last saw the process stopped, or -1 if it never did.
double dml_seconds_since_thawed(void);
#endif
