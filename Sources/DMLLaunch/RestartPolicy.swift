#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import DMLStatus

/// Which ends of an attempt `dml-launch` restarts: only those a new attempt can fix. A pure function of
/// the attempt's exit status and of whether `dml-launch` itself was told to stop; no state, no cost.
///
/// | the attempt ended with | decision | why |
/// |---|---|---|
/// | 0 | done | |
/// | anything, after dml-launch received SIGTERM/SIGINT | stop, with the job's status | whoever owns the launcher asked for the stop |
/// | 69 (`FailureKind.unavailable`) | restart | a rank stopped answering, or MPI failed: a passing cause (a node's hiccup) goes away, a dead node makes each attempt fail the same way until `--max-restarts` |
/// | 75 (`FailureKind.preempted`), dml-launch not signalled | restart | someone stopped the ranks or mpirun directly (a node agent, `kill -USR1` to mpirun); the job checkpointed the step it stopped at, so `--resume` loses nothing. To stop for good, signal dml-launch, which owns the job |
/// | 128 + N, N a signal from outside (SIGKILL, SIGTERM, SIGHUP, SIGINT, SIGQUIT, SIGPIPE, SIGUSR1/2, SIGALRM, SIGXCPU, …) | restart | a rank (or mpirun) was killed: the OOM killer, an administrator, a lost node |
/// | 128 + N, N a crash signal (SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGSEGV, SIGSYS) | stop | the program raised it itself (a Swift trap, an assertion, a bad access): a restart repeats it. OpenMPI's mpirun also exits 132 or 134 when it cannot start the executable |
/// | 64, 65, 66, 70, 73, 74, 78 (`FailureKind`) | stop | usage, bad data, missing input, divergence or a failed check, an output that cannot be created, a failed write, a configuration conflict: the same inputs fail the same way |
/// | 126, 127 | stop | the command cannot be run or was not found |
/// | anything else (1, mpirun's own errors: too few slots, a bad hostfile) | stop | nothing says a retry would help |
public struct RestartPolicy: Sendable {
    public enum Decision: Equatable, Sendable {
        /// The attempt succeeded.
        case done
        /// Run again with `--resume`, for `reason`.
        case restart(reason: String)
        /// Do not run again; exit with the attempt's status, for `reason`.
        case stop(reason: String)
    }

    /// Signals a program raises on itself when it crashes (or OpenMPI's mpirun reports when it cannot
    /// start the executable): a restart would repeat them.
    public static let crashSignals: Set<Int32> = [SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGSEGV, SIGSYS]

    public init() {}

    /// The decision for an attempt that ended with `status` (128 + N when it, or one of mpirun's ranks, was
    /// killed by signal N); `stopRequested`: dml-launch itself received SIGTERM or SIGINT meanwhile.
    public func decide(status: Int32, stopRequested: Bool) -> Decision {
        if status == 0 { return .done }
        if stopRequested { return .stop(reason: "dml-launch was told to stop") }
        if let kind = FailureKind(exitStatus: status) {
            switch kind {
            case .unavailable:
                return .restart(reason: "a rank stopped answering or MPI failed (\(kind.sysexitsName))")
            case .preempted:
                return .restart(reason: "the job was stopped from outside dml-launch and checkpointed (\(kind.sysexitsName))")
            case .usage, .dataFormat, .noInput, .software, .cannotCreate, .ioError, .configuration:
                return .stop(reason: "\(kind.description) (\(kind.sysexitsName)): a restart cannot fix that")
            }
        }
        switch status {
        case 126: return .stop(reason: "the command cannot be executed: a restart cannot fix that")
        case 127: return .stop(reason: "the command was not found: a restart cannot fix that")
        case 129...192:
            let signal = status - 128
            if Self.crashSignals.contains(signal) {
                return .stop(reason: "\(Self.signalName(signal)) is a crash the program raised itself (or mpirun could not start "
                             + "the executable): a restart would repeat it")
            }
            return .restart(reason: "a process was killed by \(Self.signalName(signal))")
        default:
            return .stop(reason: "status \(status) is not one a restart can fix (restarted: 69, 75, and 128 + a signal "
                         + "from outside)")
        }
    }

    /// `SIGKILL`, `SIGTERM`, …, or `signal N`.
    public static func signalName(_ signal: Int32) -> String {
        let names: [Int32: String] = [
            SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGILL: "SIGILL", SIGTRAP: "SIGTRAP", SIGABRT: "SIGABRT",
            SIGBUS: "SIGBUS", SIGFPE: "SIGFPE", SIGKILL: "SIGKILL", SIGUSR1: "SIGUSR1", SIGSEGV: "SIGSEGV", SIGUSR2: "SIGUSR2",
            SIGPIPE: "SIGPIPE", SIGALRM: "SIGALRM", SIGTERM: "SIGTERM", SIGXCPU: "SIGXCPU", SIGXFSZ: "SIGXFSZ", SIGSYS: "SIGSYS",
        ]
        return names[signal] ?? "signal \(signal)"
    }
}
