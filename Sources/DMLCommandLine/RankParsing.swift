import ArgumentParser
import DMLComm
import Foundation

extension ParsableCommand {
    /// This process's command line, parsed on every rank of a job; only rank 0 prints help or a parse error (and
    /// exits with its status), the others exit 0 quietly — a non-zero exit would make mpirun end the job at once,
    /// perhaps before rank 0 has printed, and rank 0's status is the job's. So a job prints one message.
    public static func parsedOnEveryRank() -> Self {
        do {
            return try parse()
        } catch {
            if LauncherEnvironment.rank == 0 { exit(withError: error) }
            Foundation.exit(0)
        }
    }
}
