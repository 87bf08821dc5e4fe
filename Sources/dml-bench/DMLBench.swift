import ArgumentParser
import DMLStatus
import DMLComm
import Foundation

/// `dml-bench`: the project's benchmarks, one subcommand each (each in its own file): `kernels` (one process,
/// single-threaded) and `allreduce` (run under mpirun). Shared output helpers are in BenchOutput.swift.
@main
struct DMLBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dml-bench",
        abstract: "DML benchmarks: each subcommand prints a table and can write a CSV.",
        version: DMLVersion.string,
        subcommands: [Kernels.self, AllreduceBenchmark.self, TrainBenchmark.self, PredictBenchmark.self])

    /// Parses on every rank but lets only rank 0 print help or errors, so a job prints one message.
    static func main() {
        let launcherRank = LauncherEnvironment.rank
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            if launcherRank == 0 { exit(withError: error) }
            // The other ranks leave quietly with 0: a non-zero exit would make mpirun end the job at once,
            // possibly before rank 0 has printed the message; rank 0's status is the job's.
            Foundation.exit(0)
        }
    }
}
