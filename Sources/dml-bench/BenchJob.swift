import ArgumentParser
import DMLComm
import Foundation

/// The MPI life cycle every benchmark subcommand shares: start MPI, run, finalise, and report a failure
/// as one message from rank 0 with a non-zero exit.
enum BenchJob {
    /// Runs `body` on this rank; throws `ExitCode` (after `MPI_Finalize`) when it failed on any rank.
    static func run(_ name: String, _ body: (MPICommunicator) throws -> Void) throws {
        let comm: MPICommunicator
        do { comm = try MPICommunicator.initializeWorld() } catch {
            FileHandle.standardError.write(Data("\(name): error: cannot start MPI: \(error)\n".utf8))
            throw ExitCode.failure
        }
        defer { MPICommunicator.finalize() }
        do {
            try body(comm)
        } catch let failure as AgreedFailure {
            if comm.rank == 0 {
                let who = failure.rank == 0 ? "" : " (reported by rank \(failure.rank))"
                FileHandle.standardError.write(Data("\(name): error\(who): \(failure.message)\n".utf8))
            }
            throw ExitCode.failure
        } catch {
            // Seen by this rank alone in the middle of a collective: end the whole job rather than hang.
            FileHandle.standardError.write(Data("\(name): error on rank \(comm.rank): \(error)\n".utf8))
            comm.abort(code: 1)
        }
    }
}
