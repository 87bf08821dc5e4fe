#if canImport(Glibc)
import Glibc
#endif
import Foundation
import DMLStatus
import DMLComm

/// The number of the last stop signal received (0: none). Written by the signal handler only.
private var receivedSignal: sig_atomic_t = 0

/// Stop requests by signal: SIGTERM, SIGINT (what Slurm and a terminal send) and SIGUSR1 (what `mpirun`
/// forwards to the ranks: `kill -USR1 <mpirun>`, which `dml-launch` sends when it is told to stop).
///
/// The handler only records the signal; the trainer looks at it at the start of every step, the ranks
/// agree on it in the step gate, and the session then writes a checkpoint and ends with
/// `Preempted` (dml-train exits with `Preempted.exitStatus`, 75).
public enum Preemption {
    public static let signals: [Int32] = [SIGTERM, SIGINT, SIGUSR1]

    /// Installs the handlers (once per process, after MPI_Init: OpenMPI installs its own for other signals).
    public static func install() {
        for s in signals {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { sig in receivedSignal = sig }
            action.sa_flags = SA_RESTART
            sigemptyset(&action.sa_mask)
            sigaction(s, &action, nil)
        }
    }

    /// The stop signal received so far, or 0.
    public static var signal: Int32 { receivedSignal }

    /// Records a stop request as a signal would (tests, fault injection).
    public static func request(_ sig: Int32) { receivedSignal = sig }

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
    public var description: String {
        "stopped by \(Preemption.name(signal)) after step \(step)"
            + (checkpoint.map { "; checkpoint \($0) written, continue with --resume" } ?? "; no --checkpoint-dir, so nothing was saved")
    }
}

/// Ranks did not reach a step, or a collective did not finish, within `--collective-timeout`: a rank
/// stopped answering (`.unavailable`).
public struct CollectiveTimeout: ClassifiedError, CustomStringConvertible {
    public let message: String
    public var failureKind: FailureKind { .unavailable }
    public var description: String { message }
}

/// A thread that watches the step in progress from outside, for what the main thread cannot see while it
/// is blocked inside a collective:
/// - a gradient allreduce that does not finish within the timeout (a rank stopped inside it): the job is
///   ended with `MPI_Abort`, after one message;
/// - a stop signal while blocked in the allreduce (mpirun ending the job because a rank died): rank 0
///   says which step was in progress, before mpirun's SIGKILL arrives.
/// It never calls MPI except `abort`. Cost: a wake-up every 100 ms; arming is a lock and two stores.
public final class CollectiveWatchdog: @unchecked Sendable {
    private let lock = NSLock()
    private var armedStep = 0
    private var armedAt: UInt64 = 0
    /// Set while a phase outside the steps is watched (`armPhase`, `armEnd`): the message to give on
    /// expiry, and the deadline.
    private var phase: (message: String, timeout: Double)?
    private var reportedSignal = false
    private let timeout: Double
    private let rank: Int
    private let onTimeout: (String) -> Never
    private let say: (String) -> Void

    /// `onTimeout` prints and ends the job; `say` prints a line (rank 0 only calls it).
    public init(rank: Int, timeout: Double, say: @escaping (String) -> Void, onTimeout: @escaping (String) -> Never) {
        self.rank = rank
        self.timeout = timeout
        self.say = say
        self.onTimeout = onTimeout
        let thread = Thread { [self] in loop() }
        thread.name = "dml-watchdog"
        thread.start()
    }

    /// Marks the start (`step` ≥ 1) or the end (`step` 0) of a watched collective.
    public func arm(step: Int) {
        lock.lock()
        armedStep = step
        armedAt = DispatchTime.now().uptimeNanoseconds
        phase = nil
        lock.unlock()
    }

    /// Watches a phase outside the training steps (start-up: data loading, configuration agreement,
    /// resume), which has collectives too: if it has not ended within `timeout` seconds (the next `arm`
    /// ends it), the job ends with `message`. `timeout` covers the work as well as the waiting.
    public func armPhase(_ message: String, timeout: Double) {
        lock.lock()
        armedStep = 1
        armedAt = DispatchTime.now().uptimeNanoseconds
        phase = (message, timeout)
        lock.unlock()
    }

    /// Watches the end of the job (`what`: the final checks, evaluation, output and MPI finalize after
    /// `lastStep`), which has collectives too: a rank stopped there must not hang the job either. `timeout`
    /// covers the work, not only the waiting, so the caller gives it room for a full evaluation.
    public func armEnd(lastStep: Int, what: String, timeout: Double) {
        armPhase("collective timeout: \(what) after the last step (\(lastStep)) did not finish within "
                 + "\(String(format: "%.0f", timeout)) s (--collective-timeout plus room for the final evaluation): "
                 + "a rank stopped answering", timeout: timeout)
    }

    private func loop() {
        while true {
            usleep(100_000)
            lock.lock()
            let step = armedStep, since = armedAt, end = phase
            lock.unlock()
            guard step > 0 else { continue }
            if let end {
                guard self.timeout > 0 else { continue }
                let waited = Double(DispatchTime.now().uptimeNanoseconds - since) / 1e9
                guard waited > end.timeout else { continue }
                if rank != 0 {
                    let until = Date().addingTimeInterval(5)
                    while Date() < until { usleep(100_000) }
                }
                onTimeout(end.message + " (reported by rank \(rank))")
            }
            let waited = Double(DispatchTime.now().uptimeNanoseconds - since) / 1e9
            if Preemption.signal != 0 && !reportedSignal && waited > 0.5 && rank == 0 {
                reportedSignal = true
                say("dml-train: \(Preemption.name(Preemption.signal)) received while the allreduce of step \(step) was blocked "
                    + "for \(String(format: "%.1f", waited)) s (last completed step \(step - 1)): a rank has probably died")
            }
            if timeout > 0 && waited > timeout {
                // Rank 0 speaks first; the others give it a moment, so the job prints one message.
                if rank != 0 {
                    let until = Date().addingTimeInterval(5)
                    while Date() < until { usleep(100_000) }
                }
                onTimeout("collective timeout: the gradient allreduce of step \(step) did not finish within \(timeout) s "
                          + "(--collective-timeout), although every rank had reached the step: a rank stopped inside the "
                          + "collective (reported by rank \(rank); last completed step \(step - 1))")
            }
        }
    }
}
