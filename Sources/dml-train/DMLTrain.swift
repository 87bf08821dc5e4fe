import ArgumentParser
import DMLComm
import DMLData
import DMLModels
import DMLTraining
import Foundation

/// `dml-train`: data-parallel training under `mpirun`. Every rank runs this same program.
///
/// The flags are grouped by concern (`ModelOptions`, `DataOptions`, …, one file each); `run` wires the
/// libraries together.
@main
struct DMLTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dml-train",
        abstract: "Data-parallel training over MPI: each rank trains on its shard, gradients are averaged with an allreduce.",
        discussion: """
            Run it under mpirun, one process per rank:
              mpirun -np 8 dml-train
            With no --data it trains on the built-in synthetic task (a deterministic classification set that \
            each rank generates only its own rows of). All ranks hold bit-identical parameters after every step. \
            Errors are printed once, by rank 0, and every rank exits non-zero.
            """)

    @OptionGroup(title: "Model") var modelOptions: ModelOptions
    @OptionGroup(title: "Data") var data: DataOptions

    @Option(help: "Passes over the training set (ignored when --steps is given).")
    var epochs: Int = 10

    @Option(help: "Global steps to run, instead of --epochs.")
    var steps: Int?

    @Option(name: .customLong("batch-size"),
            help: "Rows per global batch, over all ranks together, or 'full' for every training row each step.")
    var batchSize: BatchSize = .rows(256)

    @Option(help: "Learning rate.")
    var lr: Float = 0.2

    @Option(help: "Seed for the data set, the batch order and the initial parameters.")
    var seed: UInt64 = 1

    @Option(help: "Allreduce algorithm: \(AllreduceKind.allCases.map(\.rawValue).joined(separator: ", ")).")
    var allreduce: AllreduceKind = .ring

    @Option(help: "Write the final parameters to this safetensors file (rank 0 writes it, atomically).")
    var output: String?

    @Option(name: .customLong("log-every"), help: "Print progress every N steps (default: about 10 lines per run).")
    var logEvery: Int?

    func validate() throws {
        guard epochs > 0 else { throw ValidationError("--epochs must be at least 1 (got \(epochs))") }
        if let s = steps, s <= 0 { throw ValidationError("--steps must be at least 1 (got \(s))") }
        guard lr.isFinite && lr > 0 else { throw ValidationError("--lr must be a positive number (got \(lr))") }
        if let l = logEvery, l <= 0 { throw ValidationError("--log-every must be at least 1 (got \(l))") }
        if let o = output, o.isEmpty { throw ValidationError("--output must name a file") }
    }

    /// Parses on every rank but lets only rank 0 print (help or errors), so a job prints one message.
    static func main() {
        let launcherRank = LauncherEnvironment.rank
        let command: DMLTrain
        do {
            command = try parse()
        } catch {
            if launcherRank == 0 { exit(withError: error) }
            // The other ranks leave quietly with 0: a non-zero exit would make mpirun end the job at once,
            // possibly before rank 0 has printed the message; rank 0's status is the job's.
            Foundation.exit(0)
        }
        Foundation.exit(command.train())
    }

    /// Runs the job on this rank; returns the process exit status.
    func train() -> Int32 {
        let comm: MPICommunicator
        do { comm = try MPICommunicator.initializeWorld() } catch {
            FileHandle.standardError.write("dml-train: error: cannot start MPI: \(error)\n")
            return 1
        }
        defer { MPICommunicator.finalize() }
        do {
            try run(comm)
            return 0
        } catch let failure as AgreedFailure {
            if comm.rank == 0 {
                let who = failure.rank == 0 ? "" : " (reported by rank \(failure.rank))"
                FileHandle.standardError.write("dml-train: error\(who): \(failure.message)\n")
            }
            return 1
        } catch {
            // A failure only this rank saw in the middle of a collective: the others cannot be told
            // politely, so end the whole job now rather than leave them waiting.
            FileHandle.standardError.write("dml-train: error on rank \(comm.rank): \(error)\n")
            comm.abort(code: 1)
        }
    }

    func run(_ comm: MPICommunicator) throws {
        // Checks that can fail come first, agreed on by all ranks, so nothing is trained in vain.
        if let path = output {
            try comm.agreeing { if comm.rank == 0 { try AtomicFile.checkWritable(path) } }
        }
        let (train, test, dataDescription) = try data.load(comm: comm, seed: seed)
        let model = try comm.agreeing { try modelOptions.make(features: train.features, classes: train.classes) }

        let batch: Int? = { if case let .rows(n) = batchSize { return Swift.min(n, train.globalRows) }; return nil }()
        let stepsPerEpoch = batch.map { (train.globalRows + $0 - 1) / $0 } ?? 1
        let totalSteps = steps ?? epochs * stepsPerEpoch
        let config = TrainingConfig(steps: totalSteps, batchSize: batch, learningRate: lr, seed: seed,
                                    logEvery: logEvery ?? Swift.max(1, totalSteps / 10))
        let trainer = Trainer(comm: comm, model: model, train: train, config: config, allreduce: allreduce.make(for: comm))

        if comm.rank == 0 {
            print("dml-train: \(model.kind) on \(dataDescription), \(comm.size) rank\(comm.size == 1 ? "" : "s"), "
                  + "global batch \(batch.map(String.init) ?? "full"), \(totalSteps) steps, lr \(lr), allreduce \(allreduce.rawValue)")
        }
        let progress = ProgressPrinter()
        let started = Date()
        try trainer.run { report in if comm.rank == 0 { progress.report(report) } }
        let seconds = Date().timeIntervalSince(started)
        // Every allreduce leaves the same bits on every rank; a failure here is a bug, reported loudly.
        try trainer.checkReplicasIdentical()

        let trainEval = try trainer.evaluate(train)
        let testEval = try test.map { try trainer.evaluate($0) }
        if comm.rank == 0 {
            func metrics(_ e: Evaluation) -> String { e.accuracy.map { String(format: "loss %.4f accuracy %.2f%%", e.loss, 100 * $0) } ?? String(format: "MSE %.4f", e.loss) }
            var line = String(format: "done: %d steps in %.2f s; train ", totalSteps, seconds) + metrics(trainEval)
            if let t = testEval { line += "; test " + metrics(t) }
            print(line)
        }

        if let path = output {
            try comm.agreeing {
                guard comm.rank == 0 else { return }
                let metadata = ["format": "dml", "model": model.kind, "features": String(model.inputs),
                                "classes": String(model.outputs), "step": String(trainer.step), "seed": String(seed),
                                "ranks": String(comm.size)]
                try AtomicFile.write(Safetensors.encode(trainer.parameterTensors(), metadata: metadata), to: path)
            }
            if comm.rank == 0 { print("wrote \(path)") }
        }
    }
}

/// `--batch-size`: a row count or `full`.
enum BatchSize: ExpressibleByArgument {
    case rows(Int)
    case full

    init?(argument: String) {
        if argument == "full" { self = .full; return }
        guard let n = Int(argument), n > 0 else { return nil }
        self = .rows(n)
    }

    var defaultValueDescription: String {
        switch self {
        case let .rows(n): return String(n)
        case .full: return "full"
        }
    }
}

extension AllreduceKind: ExpressibleByArgument {}

extension FileHandle {
    func write(_ string: String) { write(string.data(using: .utf8)!) }
}
