import ArgumentParser
import DMLComm
import DMLStatus
import DMLTraining
import Foundation

/// The MPI life cycle every benchmark subcommand shares: start MPI, run, finalise, and end a failure the
/// way `dml-train` does (`JobExit`: one message, the error's exit status).
enum BenchJob {
    /// Runs `body` on this rank, passing it the seconds `MPI_Init` took; throws `ExitCode` with `JobExit`'s
    /// status (after `MPI_Finalize`) when it failed on any rank, or ends the job with `MPI_Abort` when only
    /// this rank knows. MPI that does not start is 69 (`FailureKind.unavailable`).
    static func run(_ name: String, _ body: (MPICommunicator, _ mpiInitSeconds: Double) throws -> Void) throws {
        let initStarted = DispatchTime.now().uptimeNanoseconds
        let comm: MPICommunicator
        do { comm = try MPICommunicator.initializeWorld() } catch {
            JobExit.writeToStandardError("\(name): error: cannot start MPI: \(error)")
            throw ExitCode(FailureKind.unavailable.exitStatus)
        }
        let mpiInit = Double(DispatchTime.now().uptimeNanoseconds - initStarted) / 1e9
        defer { MPICommunicator.finalize() }
        do {
            try body(comm, mpiInit)
        } catch {
            throw ExitCode(JobExit.report(error, comm: comm, program: name))
        }
    }
}
