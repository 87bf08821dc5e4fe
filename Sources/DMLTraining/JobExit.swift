import DMLComm
import DMLStatus
import Foundation

/// How a job ends on each rank after an error: who prints what, whether the whole job is ended with
/// `MPI_Abort`, and the exit status. `dml-train` and every `dml-bench` subcommand end through here, so an
/// error has one status whichever program met it.
///
/// The status is the error's `FailureKind` (`sysexits.h`; the full table, with which failures a restart can
/// fix, is on `FailureKind`): 64 usage, 65 bad data, 66 missing input, 69 a rank or MPI unavailable, 70 the
/// training failed its checks (divergence, replica mismatch) or an unclassified error, 73 an output cannot
/// be created, 74 a read or write failed, 75 preempted, 78 a configuration conflict. 0 is success; a rank
/// killed by signal N makes mpirun exit 128 + N.
///
/// | error | known to | printed by | the rank then |
/// |---|---|---|---|
/// | `Preempted` | every rank alike (agreed in the step gate) | rank 0: `stopped by SIGTERM after step …` | returns 75 |
/// | `TrainingFailure` | every rank alike (found from identical values) | rank 0 | returns its kind's status |
/// | `AgreedFailure` | every rank (`Communicator.agree`) | rank 0, naming the rank that found it | returns its kind's status |
/// | `CollectiveStall` | the ranks that waited in vain, after a roll call | the reporter (rank 0, or rank 1 when rank 0 is missing), naming the ranks that did not answer; the others answer its roll call, then speak only if the job is still alive | `MPI_Abort(69)`: the missing rank cannot finalize |
/// | anything else | this rank alone, perhaps in the middle of a collective | this rank | `MPI_Abort(status)`: the others cannot be told politely |
///
/// With `MPI_Abort(code)`, OpenMPI's mpirun exits with `code`, so the job's status is the same either way.
public enum JobExit {
    /// The exit status for `error`: its `FailureKind`'s (70 for an error nobody classified).
    public static func status(of error: Error) -> Int32 {
        FailureKind(of: error).exitStatus
    }

    /// Reports `error` on this rank as the table above says and returns the status to exit with (after
    /// `MPI_Finalize`); for a failure only some ranks know of, it ends the whole job with `MPI_Abort`
    /// instead and does not return. `program` starts each message (`dml-train`, `dml-bench train`);
    /// `write` prints one line (default: standard error).
    public static func report(_ error: Error, comm: Communicator, program: String,
                              write: (String) -> Void = JobExit.writeToStandardError) -> Int32 {
        let status = status(of: error)
        switch error {
        case let stop as Preempted:
            if comm.rank == 0 { write("\(program): \(stop) (exit status \(status))") }
            return status
        case let failure as TrainingFailure:
            if comm.rank == 0 { write("\(program): error: \(failure.message)") }
            return status
        case let failure as AgreedFailure:
            if comm.rank == 0 {
                let who = failure.rank == 0 ? "" : " (reported by rank \(failure.rank))"
                write("\(program): error\(who): \(failure.message)")
            }
            return status
        case let stall as CollectiveStall:
            // Some ranks are not answering: no collective can end this politely. The reporter speaks; the
            // others answer its roll call, then end the job themselves if it has not.
            stall.settle(on: comm)
            let what = stall.interrupted ? "\(Preemption.name(Preemption.signal)) received: " : "collective timeout (--collective-timeout): "
            write("\(program): error: \(what)\(stall)")
            comm.abort(code: status)
        default:
            // A failure only this rank saw in the middle of a collective: the others cannot be told
            // politely, so end the whole job now rather than leave them waiting.
            write("\(program): error on rank \(comm.rank): \(error)")
            comm.abort(code: status)
        }
    }

    /// Writes `line` and a newline to standard error.
    public static func writeToStandardError(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}
