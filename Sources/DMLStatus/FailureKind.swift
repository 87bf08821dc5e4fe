/// What kind of failure ended a job, as far as whoever runs it is concerned: above all, whether running it
/// again can help. The raw value is the process's exit status, from BSD's `sysexits.h`, so a supervisor
/// (`dml-launch`, a scheduler, a shell script) can act on the status alone.
///
/// | status | case | what | can a restart fix it? |
/// |---|---|---|---|
/// | 64 `EX_USAGE` | `usage` | a bad flag, value or environment variable (`DML_FAULT`, `DML_FAKE_NODES`, `DML_ALLREDUCE_AUTO`), or flags that do not fit the data (`--model logistic` on 10 classes, a `--validation-fraction` that leaves no rows) | no |
/// | 65 `EX_DATAERR` | `dataFormat` | an input that is there but wrong: a data file that does not parse, bad values, too few rows for the ranks, a test set that does not match the training set, an empty file; no checkpoint in `--checkpoint-dir` is valid | no |
/// | 66 `EX_NOINPUT` | `noInput` | an input file that does not exist, is a directory, or cannot be opened | no |
/// | 69 `EX_UNAVAILABLE` | `unavailable` | a rank stopped answering (a collective timeout, at start-up, in a step or at the end), MPI did not start, or an MPI call failed: a peer or the network went away | yes, if the cause was passing |
/// | 70 `EX_SOFTWARE` | `software` | the computation failed its own checks (divergence: a non-finite loss, gradient or parameter; replicas that differ), or an error nobody classified (a bug) | no: the same inputs give the same result |
/// | 73 `EX_CANTCREAT` | `cannotCreate` | an output cannot be created, found before training: `--output`, `--timeline`, `--metrics`, `--checkpoint-dir` | no |
/// | 74 `EX_IOERR` | `ioError` | a read or write failed during the run (a checkpoint or the output on a full disk, a shard cache cut short mid-run) | no (not by itself) |
/// | 75 `EX_TEMPFAIL` | `preempted` | stopped on request (SIGTERM, SIGINT, SIGUSR1) at a step boundary, the checkpoint of that step written | yes: `--resume` continues with the same bits |
/// | 78 `EX_CONFIG` | `configuration` | the configuration conflicts with stored or shared state: a checkpoint written by another configuration, ranks that parsed different flags | no |
///
/// 69 and not 75 for a stalled rank: 75 promises a clean stop with a checkpoint of the last step, asked
/// for by someone; a timeout ends the job with `MPI_Abort` from wherever it was, and a restart repeats
/// the steps since the last periodic checkpoint. A supervisor that honours a stop request (no restart after
/// 75 it asked for) must still restart a stall, so the two need different statuses.
public enum FailureKind: Int32, Sendable, CaseIterable, CustomStringConvertible {
    case usage = 64
    case dataFormat = 65
    case noInput = 66
    case unavailable = 69
    case software = 70
    case cannotCreate = 73
    case ioError = 74
    case preempted = 75
    case configuration = 78

    /// The process exit status that reports this kind (its `sysexits.h` value).
    public var exitStatus: Int32 { rawValue }

    /// The kind whose exit status is `status`, if any.
    public init?(exitStatus status: Int32) { self.init(rawValue: status) }

    /// The kind of `error`: its own when it is a `ClassifiedError`, `.software` otherwise (an error that
    /// no code classified is treated as a bug, which a restart repeats).
    public init(of error: Error) {
        self = (error as? ClassifiedError)?.failureKind ?? .software
    }

    /// The `sysexits.h` name, e.g. `EX_DATAERR`.
    public var sysexitsName: String {
        switch self {
        case .usage: return "EX_USAGE"
        case .dataFormat: return "EX_DATAERR"
        case .noInput: return "EX_NOINPUT"
        case .unavailable: return "EX_UNAVAILABLE"
        case .software: return "EX_SOFTWARE"
        case .cannotCreate: return "EX_CANTCREAT"
        case .ioError: return "EX_IOERR"
        case .preempted: return "EX_TEMPFAIL"
        case .configuration: return "EX_CONFIG"
        }
    }

    /// One line for `--help`: the status, what it covers.
    public var help: String {
        switch self {
        case .usage: return "64 a bad flag, value or DML_* variable, or flags that do not fit the data"
        case .dataFormat: return "65 a malformed input: a data file that does not parse, bad values, too few rows for the ranks, no valid checkpoint"
        case .noInput: return "66 an input file that does not exist, is a directory or cannot be opened"
        case .unavailable: return "69 a rank stopped answering (--collective-timeout), MPI did not start or an MPI call failed"
        case .software: return "70 divergence, replicas that differ, or an unexpected error"
        case .cannotCreate: return "73 an output that cannot be created (--output, --metrics, --timeline, --checkpoint-dir)"
        case .ioError: return "74 a write that failed during the run (a checkpoint or the output on a full disk)"
        case .preempted: return "75 stopped by SIGTERM, SIGINT or SIGUSR1 at a step boundary, checkpoint written (--resume continues)"
        case .configuration: return "78 a checkpoint of another configuration, or ranks that parsed different flags"
        }
    }

    /// Every status's `help` line, one per line, with 0 first and 128+N last, for a command's `--help`.
    public static var exitStatusHelp: String {
        (["0 trained to the end"] + allCases.map(\.help) + ["128+N a process killed by signal N (mpirun's status)"])
            .map { "  " + $0 }.joined(separator: "\n")
    }

    public var description: String {
        switch self {
        case .usage: return "usage error"
        case .dataFormat: return "bad data"
        case .noInput: return "missing input"
        case .unavailable: return "a rank or MPI unavailable"
        case .software: return "training failed its checks"
        case .cannotCreate: return "cannot create an output"
        case .ioError: return "I/O error"
        case .preempted: return "preempted"
        case .configuration: return "configuration conflict"
        }
    }
}

/// An error that knows its `FailureKind`. Errors that do not conform count as `.software`.
public protocol ClassifiedError: Error {
    var failureKind: FailureKind { get }
}

/// A failure with a message and a kind, for failures that need no type of their own (a flag that does
/// not fit the data, a bad environment variable). Its description is the message alone.
public struct JobError: ClassifiedError, CustomStringConvertible, Equatable, Sendable {
    public let failureKind: FailureKind
    public let message: String
    public init(_ kind: FailureKind, _ message: String) {
        failureKind = kind
        self.message = message
    }
    public var description: String { message }
}
