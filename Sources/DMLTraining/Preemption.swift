#if canImport(Glibc)
import Glibc
#endif
import Foundation
import DMLStatus
import DMLComm
import CStopSignals

/// Stop requests by signal: SIGTERM, SIGINT (what Slurm and a terminal send) and SIGUSR1 (what `mpirun`
/// forwards to the ranks: `kill -USR1 <mpirun>`, which `dml-launch` sends when it is told to stop).
///
/// The handler only records the signal; the trainer looks at it at the start of every step, the ranks
/// agree on it in the step gate, and the session then writes a checkpoint and ends with
/// `Preempted` (dml-train exits with `Preempted.exitStatus`, 75).
public enum Preemption {
    public static let signals: [Int32] = [SIGTERM, SIGINT, SIGUSR1]

    /// Installs the handlers (idempotent; the handler only records the signal, in C: `CStopSignals`). In
    /// dml-train they are already in place before `main` (a C constructor), so a signal during start-up is
    /// kept too; dml-train installs them again after `MPI_Init` in case the MPI library replaced them.
    public static func install() { dml_stop_signals_install() }

    /// The stop signal received so far, or 0.
    public static var signal: Int32 { dml_stop_signal() }

    /// Records a stop request as a signal would (tests, fault injection).
    public static func request(_ sig: Int32) { dml_stop_signal_request(sig) }

    public static func name(_ sig: Int32) -> String {
        switch sig {
        case SIGTERM: return "SIGTERM"
        case SIGINT: return "SIGINT"
        case SIGUSR1: return "SIGUSR1"
        default: return "signal \(sig)"
        }
    }
}

/// The job stopped cleanly on a stop signal at a step boundary: every rank throws it alike.
public struct Preempted: ClassifiedError, CustomStringConvertible {
    /// EX_TEMPFAIL: "try again later", what a preempted job should report to its scheduler or supervisor.
    public static let exitStatus: Int32 = FailureKind.preempted.exitStatus
    public var failureKind: FailureKind { .preempted }
    public let signal: Int32
    /// The last completed step (the one the checkpoint holds).
    public let step: Int
    /// The checkpoint written, if the run has a checkpoint directory.
    public var checkpoint: String?
    /// Names the checkpoint; without one, why: no `--checkpoint-dir`, or a stop before the first step (a signal
    /// during start-up, e.g. a Slurm time-limit warning that came early), when there is nothing to save.
    public var description: String {
        "stopped by \(Preemption.name(signal)) after step \(step)"
            + (checkpoint.map { "; checkpoint \($0) written, continue with --resume" }
               ?? (step == 0 ? "; nothing to save before the first step" : "; no --checkpoint-dir, so nothing was saved"))
    }
}

/// A timer for the two calls of a job that MPI offers no pollable form of, `MPI_Init` and `MPI_Finalize`
/// (every other collective runs under `CollectiveDeadline`): if the call has not returned after `seconds`,
/// the process prints `message` and ends at once (mpirun then ends the others). 0 seconds: no timer.
public final class Backstop: @unchecked Sendable {
    private let lock = NSLock()
    private var armed = true

    public init(seconds: Double, message: String) {
        guard seconds > 0 else { armed = false; return }
        DispatchQueue.global().asyncAfter(deadline: .now() + seconds) { [self] in
            lock.lock()
            let fire = armed
            lock.unlock()
            guard fire else { return }
            FileHandle.standardError.write(Data((message + "\n").utf8))
            _exit(FailureKind.unavailable.exitStatus)
        }
    }

    public func disarm() {
        lock.lock()
        armed = false
        lock.unlock()
    }
}

extension Preemption {
    /// The `DeadlineState.interruption` of a job: a SIGTERM or SIGINT received while a wait has been blocked
    /// for more than half a second is how mpirun ends a job whose rank died (it signals the survivors, then
    /// kills them a second later), so the wait stops for a quick roll call that names the dead rank.
    ///
    /// Except on a rank that was itself stopped: mpirun ends a job whose rank was found stalled by continuing
    /// that rank (SIGCONT) and signalling it at once. Its wait then finds the others gone, and a roll call would
    /// blame them for its own stall after the reporting rank named it: a rank the freeze watch saw stopped in
    /// the last `thawedWindow` seconds stays quiet and waits for the launcher to end it.
    public static let diedWhileWaiting: @Sendable (Double) -> Bool = { waited in
        let s = signal
        guard (s == SIGTERM || s == SIGINT) && waited > 0.5 else { return false }
        let sinceThawed = dml_seconds_since_thawed()
        return !(sinceThawed >= 0 && sinceThawed < thawedWindow)
    }

    /// The `DeadlineState.sinceContinued` of a job: seconds since the process was last seen stopped, or -1.
    /// Starts the freeze watch (`dml_freeze_watch_start`).
    public static func sinceThawed() -> @Sendable () -> Double {
        dml_freeze_watch_start()
        return { dml_seconds_since_thawed() }
    }

    /// How recently the process must have been stopped for a stop signal to be the launcher ending this rank.
    public static let thawedWindow = 5.0
}
