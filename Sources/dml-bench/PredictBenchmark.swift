import ArgumentParser
import DMLComm
import DMLPredict
import DMLStatus
import DMLTraining
import Foundation

/// `dml-bench predict`: end-to-end prediction throughput at this job's np — the real `PredictionJob` (read the
/// file, the model's forward pass, write the predictions file), run `--repeats` times in one process, each
/// timed from a barrier to the slowest rank's end. The figure is rows / median seconds; the phases (read,
/// predict, write) are the slowest rank's, medians too. `benchmarks/predict.sh` runs it at np 1 and 2 next to
/// numpy (`benchmarks/peers/predict_numpy.py`) on the same file, alternating.
struct PredictBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Prediction rows/s (file reading and the predictions file included) at this job's np.",
        discussion: """
            Run it under mpirun on a model file of dml-train and a data file:
              mpirun -np 2 dml-bench predict --model model.safetensors --data synthetic.csv --output /tmp/p.csv --csv predict.csv
            Every repeat is a whole dml-predict job but MPI start-up: checks, the model file, each rank's share of \
            --data, the forward pass, the predictions file (class labels) written by all ranks.
            """)

    @Option(help: "The model file (dml-train --output).")
    var model: String

    @Option(help: "The rows to predict (CSV, LIBSVM or .npy).")
    var data: String

    @Option(help: "The predictions file every repeat writes (.csv or .npy).")
    var output: String

    @Option(help: "Timed repeats (the median is reported).")
    var repeats: Int = 5

    @Option(help: "Write the results as CSV (tool,np,rows,median_s,rows_per_s,read_s,predict_s,write_s,oversubscribed) to this file (rank 0, atomically).")
    var csv: String?

    static let csvHeader = ["tool", "np", "rows", "median_s", "rows_per_s", "read_s", "predict_s", "write_s", "oversubscribed"]

    func validate() throws {
        guard repeats >= 1 else { throw ValidationError("--repeats must be at least 1 (got \(repeats))") }
        if let c = csv, c.isEmpty { throw ValidationError("--csv must name a file") }
        let job = PredictionConfiguration(model: model, data: data, output: output)
        if let conflict = job.conflict() { throw ValidationError(conflict) }
    }

    func run() throws {
        try BenchJob.run("dml-bench predict") { comm, _ in try benchmark(comm) }
    }

    func benchmark(_ comm: MPICommunicator) throws {
        if let path = csv { try comm.agreeing { if comm.rank == 0 { try AtomicFile.checkWritable(path) } } }
        let onNode = try comm.nodeLayout().ranksOnNode
        let oversubscribed = try comm.allreduced(Int64(onNode > ProcessInfo.processInfo.activeProcessorCount ? 1 : 0), op: .max) == 1
        let job = PredictionConfiguration(model: model, data: data, output: output)
        let silent = JobOutput(program: "dml-bench predict", say: { _ in }, warn: { _ in }, progress: nil)
        var totals: [Double] = [], phases: [String: [Double]] = [:]
        var rows = 0
        for _ in 0..<repeats {
            try comm.barrier()
            let t0 = DispatchTime.now().uptimeNanoseconds
            let result = try PredictionJob(configuration: job, comm: comm, output: silent).run()
            totals.append(try comm.allreduced(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9, op: .max))
            for name in ["read", "predict", "write"] {
                phases[name, default: []].append(try comm.allreduced(result.seconds[name] ?? 0, op: .max))
            }
            rows = result.rows
        }
        let median = BenchOutput.median(totals)
        let p = comm.size
        let row = ["dml", String(p), String(rows), String(format: "%.4f", median), String(format: "%.0f", Double(rows) / median)]
            + ["read", "predict", "write"].map { String(format: "%.4f", BenchOutput.median(phases[$0]!)) } + [oversubscribed ? "yes" : "no"]
        if comm.rank == 0 {
            print("dml-bench predict: \(p) rank\(p == 1 ? "" : "s")\(oversubscribed ? " (OVERSUBSCRIBED)" : ""), \(rows) rows of \(data), model \(model), "
                  + "\(repeats) repeats; median \(String(format: "%.3f", median)) s = \(row[4]) rows/s "
                  + "(read \(row[5]) s, predict \(row[6]) s, write \(row[7]) s; all: \(totals.map { String(format: "%.3f", $0) }.joined(separator: " ")))")
        }
        if let path = csv {
            try comm.agreeing { if comm.rank == 0 { try BenchOutput.writeCSV(header: Self.csvHeader, rows: [row], to: path) } }
        }
    }
}
