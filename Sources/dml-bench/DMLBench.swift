import ArgumentParser
import DMLComm
import Foundation

/// `dml-bench`: the project's benchmarks, one subcommand each (each in its own file). Run under mpirun.
@main
struct DMLBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dml-bench",
        abstract: "Benchmarks of DML's building blocks, run under mpirun (one subcommand per benchmark).",
        subcommands: [AllreduceBenchmark.self])

    /// Parses on every rank but lets only rank 0 print help or errors, so a job prints one message.
    static func main() {
        let launcherRank = LauncherEnvironment.rank
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            if launcherRank == 0 { exit(withError: error) }
            Foundation.exit(exitCode(for: error).rawValue)
        }
    }
}
