import ArgumentParser

/// `dml-bench`: benchmarks, one subcommand each (`dml-bench kernels`, …).
@main
struct DMLBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dml-bench",
        abstract: "DML benchmarks: each subcommand prints a table and can write a CSV.",
        subcommands: [Kernels.self, TrainBenchmark.self])
}
