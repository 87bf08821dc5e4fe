import Foundation
import DMLComm
import DMLData
import DMLModels
import DMLStatus
import DMLTraining

/// What a finished prediction job reports (on every rank).
public struct PredictionResult {
    /// Rows predicted, over all ranks.
    public let rows: Int
    /// This rank's rows, and their outputs.
    public let predictions: Predictions
    /// The first global row this rank held.
    public let firstRow: Int
    /// The scores, when asked for (`--evaluate`, `--report`).
    public let evaluation: EvaluationReport?
    /// Bytes of the predictions file, when one was written.
    public let outputBytes: Int?
    /// Seconds this rank spent in each phase: `read` (checks, model, data; until every rank has read), `predict`,
    /// `write` (formatting and the shared write), `score` (the evaluation and the report).
    public let seconds: [String: Double]
}

/// A prediction job, the library side of `dml-predict` (which only parses flags into a
/// `PredictionConfiguration` and prints). Collective: every rank runs `run` with the same configuration.
///
/// ```
/// flags (conflict) ─▶ rank 0: outputs are not inputs, and can be created ─▶ the model file (every rank reads
///   it; damaged, newer, foreign: one error) ─▶ flags against the model (--proba) ─▶ the input's columns against
///   the model's features: labels or not (PredictionInput) ─▶ DataLoader.read: each rank its byte range or rows
///   ─▶ the model's standardisation ─▶ Model.predict on this rank's rows ─▶ --output: each rank formats its
///   rows (PredictionFile) and writes them at its offset of one file (SharedAtomicFile) ─▶ --evaluate/--report:
///   sums allreduced, the AUC by a distributed sort ─▶ rank 0 writes the report ─▶ a polled barrier
/// ```
/// Nothing is written before everything that can be checked has been: a refused input leaves no file. Every
/// collective runs under a deadline from `collectiveTimeout`: reading gets five times it, the write it plus the
/// time to write the file at 50 MB/s.
public final class PredictionJob {
    public let configuration: PredictionConfiguration
    public let comm: Communicator
    public let faults: FaultPlan
    public let output: JobOutput

    /// `faults`: `writefail:rank=R:step=1` makes rank R's write of its part of the predictions fail half-way
    /// (prediction is one step); other kinds are refused.
    public init(configuration: PredictionConfiguration, comm: Communicator, faults: FaultPlan = FaultPlan(),
                output: JobOutput = JobOutput(program: "dml-predict", progress: nil)) {
        (self.configuration, self.comm, self.faults, self.output) = (configuration, comm, faults, output)
    }

    private var rank0: Bool { comm.rank == 0 }
    private func say(_ line: String) { if rank0 { output.say(line) } }
    private var timeout: Double { configuration.collectiveTimeout }

    public func run() throws -> PredictionResult {
        let job = configuration
        // Refused alike on every rank, agreed so that one rank prints it.
        try comm.agree(job.conflict(), kind: .usage)
        try comm.agree(faults.faults.first { $0.kind != .writefail || $0.step != 1 }.map {
            "\(FaultPlan.variable): dml-predict takes writefail:rank=R:step=1 only (got \($0.kind.rawValue) at step \($0.step))"
        }, kind: .usage)
        comm.deadlines.current = timeout > 0 ? CollectiveDeadline(seconds: 5 * timeout,
            phase: "the start-up (model, data loading and prediction; 5 × --collective-timeout)") : nil
        let started = DispatchTime.now().uptimeNanoseconds
        var seconds: [String: Double] = [:]
        var mark = started
        func phase(_ name: String) {
            let now = DispatchTime.now().uptimeNanoseconds
            seconds[name] = Double(now - mark) / 1e9
            mark = now
        }
        try checkFiles()
        let model = try comm.agreeing { try ModelFile.read(path: job.model) }
        try comm.agree(job.conflict(with: model), kind: .usage)
        let scoring = job.evaluate || job.report != nil
        let input = try comm.agreeing { try PredictionInput(job, model: model, evaluate: scoring) }
        let loaded = try DataLoader.load(input.source, options: input.options, comm: comm, features: model.features, labels: input.known)
        var data = loaded.data
        model.standardization?.apply(to: &data)
        say("\(output.program): \(describe(model)) from \(job.model); \(job.data): \(data.globalRows) rows, \(input.labelsDescription); "
            + "\(comm.size) rank\(comm.size == 1 ? "" : "s")" + loaded.notes.map { "; " + $0 }.joined())

        phase("read")
        let predictions = try comm.agreeing { try predict(model, data) }   // throws only for streamed rows (never here)
        phase("predict")
        try comm.agree(predictions.firstNonFiniteRow.map {
            "\(job.data), row \(data.firstRow + $0 + 1): the model's output is not a finite number (features too large for this model?)"
        }, kind: .dataFormat)
        let labels = model.labels ?? (0..<model.classes).map(String.init)

        var written: Int?
        if let path = job.output {
            let file = PredictionFile(format: PredictionFileFormat(path: path)!, content: job.content(classifier: model.task == .classification),
                                      labels: labels)
            let part = file.part(predictions, first: rank0, globalRows: data.globalRows)
            let fault: AtomicFile.Fault? = faults.fires(.writefail, rank: comm.rank, step: 1) ? .fail(afterBytes: part.count / 2) : nil
            written = try comm.watched("writing \(path)", seconds: timeout + Double(part.count * comm.size) / 50e6) {
                try part.withUnsafeBytes { try SharedAtomicFile.write($0, to: path, comm: comm, fault: fault) }
            }
            let total = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
            say("wrote \(path): \(data.globalRows) rows of \(file.content.rawValue) (\(String(format: "%.2f", total)) s)")
        }
        phase("write")

        var evaluation: EvaluationReport?
        if scoring {
            evaluation = try comm.watched("the evaluation", seconds: timeout) {
                model.task == .classification
                    ? .classification(try ClassificationReport.compute(truth: data.y, predictions: predictions, labels: labels, comm: comm))
                    : .regression(try RegressionReport.compute(truth: data.y, values: predictions.outputs, comm: comm))
            }
            if job.evaluate { evaluation!.lines.forEach(say) }
            if let path = job.report {
                try comm.watched("writing \(path)", seconds: timeout) {
                    try comm.agreeing { if rank0 { try AtomicFile.write(evaluation!.jsonBytes(), to: path) } }
                }
                say("wrote \(path)")
            }
        }
        phase("score")
        // The last collective: a barrier under the deadline, so MPI_Finalize starts only when every rank is there.
        try comm.watched("the end of the job", seconds: timeout) { try comm.barrier() }
        return PredictionResult(rows: data.globalRows, predictions: predictions, firstRow: data.firstRow, evaluation: evaluation,
                                outputBytes: written, seconds: seconds)
    }

    /// The model's outputs for this rank's rows (`Model.predict`: a row's outputs depend on that row alone, so
    /// they do not depend on how the rows were shared out). Cost: one forward pass over them. Throws a streamed
    /// shard's read error (`Dataset.withRows`).
    private func predict(_ model: ModelFile, _ data: Dataset) throws -> Predictions {
        let network = model.makeModel()
        var outputs = [Float](repeating: 0, count: data.rows * network.outputs)
        if data.rows > 0 {
            try model.parameters.withUnsafeBufferPointer { p in
                try data.withRows(0..<data.rows) { block in
                    outputs.withUnsafeMutableBufferPointer { o in
                        network.predict(parameters: p.baseAddress!, block: block, into: o.baseAddress!)
                    }
                }
            }
        }
        return Predictions(outputs: outputs, rows: data.rows, width: network.outputs, classes: model.classes)
    }

    /// Rank 0 checks, before anything is read, that no output is an input or another output, and that the
    /// outputs can be created. Collective.
    private func checkFiles() throws {
        let job = configuration
        try comm.agreeing {
            guard rank0 else { return }
            let inputs = [("--data", job.data), ("--labels", job.labels), ("--model", job.model)].compactMap { f, p in p.map { (flag: f, path: $0) } }
            let outputs = [("--output", job.output), ("--report", job.report)].compactMap { f, p in p.map { (flag: f, path: $0) } }
            try OutputPaths.checkDistinct(inputs: inputs, outputs: outputs)
            for o in outputs { try AtomicFile.checkWritable(o.path) }
        }
    }

    /// "mlp 784 → 256 → 10 (relu)", "logistic 30 → 2 classes", "linear 8 → value".
    private func describe(_ m: ModelFile) -> String {
        let widths = ([m.features] + m.hidden).map(String.init).joined(separator: " → ")
        let out = m.task == .regression ? "value" : "\(m.classes) classes"
        return "\(m.kind.rawValue) \(widths) → \(out)" + (m.kind == .mlp ? " (\(m.activation.rawValue))" : "")
            + (m.standardization == nil ? "" : " on standardised features")
    }
}
