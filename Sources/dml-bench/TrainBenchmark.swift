import ArgumentParser
import DMLComm
import DMLData
import DMLKernels
import DMLModels
import DMLStatus
import DMLTraining
import Foundation

/// `dml-bench train`: training throughput on the built-in synthetic task at the number of ranks it is
/// launched with (under mpirun), with the global batch fixed, so samples/s at np = 1, 2, 4 … are
/// comparable. Per model: `--warmup` untimed steps, then `--steps` timed steps, each timed alone; the
/// figures are medians over the timed steps of the slowest rank. The same task, batches, learning rates
/// and step counts as the peers in benchmarks/peers/ (numpy + mpi4py, torch DDP).
struct TrainBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Training samples/s (softmax, MLP) on the synthetic task at this job's np; time to first step; communication share.",
        discussion: """
            Run it under mpirun; the global batch is fixed, so np changes only how the work is split:
              mpirun -np 2 dml-bench train --csv train.csv
            Columns: samples_per_s = batch / median step time (slowest rank); mean_samples_per_s = timed rows / \
            timed wall time (the peers' method); comm_share = time inside the allreduce / step time (mean over \
            ranks; includes waiting for slower ranks); first_step_s = process start (the kernel's start time of \
            the process, 10 ms resolution) to the end of the first training step, slowest rank (first model \
            only); mpi_init_s = MPI_Init's own time.
            With --overlap the MLP is timed twice in the same run, without and with its bucket allreduces \
            overlapping the backward pass (row mlp+overlap), and the two final losses must be the same bits:
              mpirun -np 2 dml-bench train --models mlp --hidden 512,256 --bucket-kb 256 --overlap
            """)

    enum ModelName: String, CaseIterable {
        case softmax, mlp, logistic
    }

    @Option(help: "Models to time, comma-separated: softmax (784→10), mlp (784→hidden→10, ReLU); with --data also logistic (2 classes).")
    var models: String = "softmax,mlp"

    @Option(help: ArgumentHelp("A LIBSVM file to train on instead of the synthetic task, each rank its byte range kept as CSR rows (a sparse step: its communication share with --allreduce sparse or auto).",
                               valueName: "file.svm"))
    var data: String?

    @Option(name: .customLong("hash-bits"), help: "With --data: hash the feature indices into 2^B columns (dml-train --hash-bits).")
    var hashBits: Int?

    @Option(help: "Rows per global batch (all ranks together).")
    var batch: Int = 256

    @Option(help: "Timed steps per model.")
    var steps: Int = 500

    @Option(help: "Untimed steps per model before timing (the first one includes first-touch of every buffer).")
    var warmup: Int = 50

    @Option(help: "MLP hidden layer widths, comma-separated (e.g. 512,256).")
    var hidden: String = "256"

    @Option(help: "Kernel threads per rank (dml-train --threads); default: the cores the launcher gave the rank.")
    var threads: Int?

    @Flag(help: "Time the MLP a second time with each gradient bucket's allreduce overlapping the backward pass (row mlp+overlap); the plain mlp row does not overlap.")
    var overlap = false

    @Flag(help: "Time each model a second time with --reproducible (rows softmax+repro, mlp+repro: whole 64-row blocks, exact fixed-point sums), together with its default row, one step of each in turn; --batch must be a multiple of 64.")
    var reproducible = false

    @Option(name: .customLong("bucket-kb"),
            help: "MLP gradient buckets: layers are grouped, top layer first, into buckets of at least this many KiB, one allreduce each.")
    var bucketKB: Int = 1024

    @Option(help: "Training rows of the synthetic task.")
    var rows: Int = 16384

    @Option(help: "Features per row of the synthetic task.")
    var features: Int = 784

    @Option(help: "Learning rate of the softmax and logistic models (plain SGD).")
    var softmaxLr: Float = 0.2

    @Option(help: "Learning rate of the MLP (plain SGD).")
    var mlpLr: Float = 0.05

    @Option(help: "Data set, batch order and initialisation.")
    var seed: UInt64 = 1

    @Option(help: "Allreduce algorithm: \(AllreduceKind.allCases.map(\.rawValue).joined(separator: ", ")).")
    var allreduce: String = AllreduceKind.ring.rawValue

    @Option(help: "Write the results as CSV (model,np,batch,samples_per_s, then the extra columns) to this file (rank 0).")
    var csv: String?

    /// DESIGN.md's columns first, extra columns after them.
    static let csvHeader = ["model", "np", "batch", "samples_per_s", "mean_samples_per_s", "step_ms", "comm_share",
                            "first_step_s", "mpi_init_s", "final_loss", "allreduce", "oversubscribed"]

    /// The `--hidden` widths, or nil when they do not parse.
    var hiddenWidths: [Int]? { CommaList.positiveIntegers(hidden) }

    /// What is timed, in order: each model once, and the MLP a second time with overlap when asked.
    var runs: [(model: ModelName, overlap: Bool, reproducible: Bool)] {
        modelList!.flatMap { m in
            [(m, false, false)] + (reproducible ? [(m, false, true)] : []) + (m == .mlp && overlap ? [(m, true, false)] : [])
        }
    }

    var modelList: [ModelName]? {
        CommaList.parse(models) { ModelName(rawValue: $0) }
    }

    func validate() throws {
        guard let list = modelList else {
            throw ValidationError("--models must be softmax, mlp or (with --data) logistic, separated by commas (got '\(models)')")
        }
        if data == nil && list.contains(.logistic) {
            throw ValidationError("--models logistic needs two classes: give --data FILE.svm (the synthetic task has 10)")
        }
        if let b = hashBits {
            guard data != nil else { throw ValidationError("--hash-bits hashes the indices of a --data file") }
            guard (1...31).contains(b) else { throw ValidationError("--hash-bits must be in 1…31 (got \(b))") }
        }
        if data != nil {
            for (flag, given) in [("--rows", rows != 16384), ("--features", features != 784)] where given {
                throw ValidationError("\(flag) sizes the synthetic task; with --data the file decides")
            }
        }
        guard AllreduceKind(rawValue: allreduce) != nil else {
            throw ValidationError("--allreduce must be one of \(AllreduceKind.allCases.map(\.rawValue).joined(separator: ", ")) (got '\(allreduce)')")
        }
        guard hiddenWidths != nil else {
            throw ValidationError("--hidden must be positive layer widths separated by commas, e.g. 512,256 (got '\(hidden)')")
        }
        if overlap && !modelList!.contains(.mlp) {
            throw ValidationError("--overlap times the MLP: add mlp to --models")
        }
        for (flag, value, least) in [("--batch", batch, 1), ("--steps", steps, 1), ("--warmup", warmup, 0), ("--bucket-kb", bucketKB, 1),
                                     ("--rows", rows, 1), ("--features", features, 1)] where value < least {
            throw ValidationError("\(flag) must be at least \(least) (got \(value))")
        }
        guard data != nil || batch <= rows else { throw ValidationError("--batch (\(batch)) must not exceed --rows (\(rows))") }
        for (flag, lr) in [("--softmax-lr", softmaxLr), ("--mlp-lr", mlpLr)] where !(lr > 0 && lr.isFinite) {
            throw ValidationError("\(flag) must be positive (got \(lr))")
        }
        if let c = csv, c.isEmpty { throw ValidationError("--csv must name a file") }
        if reproducible && batch % Reproducible.blockRows != 0 {
            throw ValidationError("--reproducible makes batches of whole blocks of \(Reproducible.blockRows) rows: --batch \(batch) is not a multiple of \(Reproducible.blockRows)")
        }
        if let t = threads, let why = KernelThreads.problem(t) { throw ValidationError("--threads " + why) }
    }

    struct Result {
        let model: ModelName
        let overlap: Bool
        let reproducible: Bool
        let samplesPerSecond: Double
        let meanSamplesPerSecond: Double
        let stepSeconds: Double
        let commShare: Double
        let firstStep: Double?
        let finalLoss: Double

        /// The row's name in the table and the CSV.
        var label: String { model.rawValue + (overlap ? "+overlap" : "") + (reproducible ? "+repro" : "") }
    }

    func run() throws {
        // MPI_Init's own time (time to first step is measured from the process's start, see processAge).
        try BenchJob.run("dml-bench train") { comm, mpiInit in try benchmark(comm, mpiInit: mpiInit) }
    }

    func benchmark(_ comm: MPICommunicator, mpiInit: Double) throws {
        let p = comm.size
        if let path = csv { try comm.agreeing { if comm.rank == 0 { try AtomicFile.checkWritable(path) } } }
        try comm.agree(p > rows ? "\(p) ranks but only \(rows) rows (--rows): every rank needs at least one row" : nil, kind: .usage)
        // More ranks than cores on some node: the figures then show contention, not speed, and say so.
        let onNode = try comm.nodeLayout().ranksOnNode
        let oversubscribed = try comm.allreduced(Int64(onNode > ProcessInfo.processInfo.activeProcessorCount ? 1 : 0), op: .max) == 1
        let maxInit = try comm.allreduced(mpiInit, op: .max)
        try KernelThreads.use(threads ?? KernelThreads.defaultCount(ranksOnNode: onNode))
        let t = KernelThreads.count
        let train: Dataset
        let what: String
        if let path = data {
            var options = ReadOptions()
            options.sparse = .on
            options.hash = hashBits.flatMap { FeatureHash(bits: $0) }
            train = try DataLoader.read(DataSource(path: path), options: options, comm: comm).0
            try comm.agree(batch > train.globalRows ? "--batch (\(batch)) exceeds the \(train.globalRows) rows of \(path)" : nil, kind: .usage)
            try comm.agree(modelList!.contains(.logistic) && train.classes != 2 ? "--models logistic needs 2 classes; \(path) has \(train.classes)" : nil, kind: .usage)
            what = "\(path) \(train.globalRows) rows × \(train.features) features (CSR\(hashBits.map { ", hashed into 2^\($0)" } ?? "")), \(train.classes) classes"
        } else {
            let task = SyntheticClassification(seed: seed, features: features, classes: 10)
            train = task.trainingShard(rows: rows, rank: comm.rank, ranks: p)
            what = "synthetic task \(rows) rows × \(features) features, 10 classes"
        }
        if comm.rank == 0 {
            print("dml-bench train: \(p) rank\(p == 1 ? "" : "s")\(oversubscribed ? " (OVERSUBSCRIBED: more ranks than cores, timings are not meaningful)" : ""), "
                  + "\(what), global batch \(batch), plain SGD, "
                  + "\(warmup) warm-up + \(steps) timed steps, allreduce \(allreduce), "
                  + "\(t) kernel thread\(t == 1 ? "" : "s") per rank\(threads == nil ? " (rank 0's cores)" : "")")
            print("model          samples/s  (mean)       step ms  comm share  first step  final loss")
            fflush(nil)
        }
        var results: [Result] = []
        // A model's default and --reproducible rows are timed together, step by step in turn, so that both see the
        // same machine (a shared machine's load changes from second to second).
        var pending = runs[...]
        while let run = pending.first {
            let together = pending.prefix { $0.model == run.model && !$0.overlap && !run.overlap }
            pending = pending.dropFirst(Swift.max(1, together.count))
            let group = together.isEmpty ? [run] : Array(together)
            for r in try measure(group.map { ($0.model, $0.overlap, $0.reproducible) }, comm: comm, train: train, fromProcessStart: results.isEmpty) {
                results.append(r)
                if comm.rank == 0 {
                    print(r.label.padding(toLength: 12, withPad: " ", startingAt: 0)
                          + String(format: " %11.0f %11.0f %10.3f %10.1f%% %10@ %11.4f", r.samplesPerSecond, r.meanSamplesPerSecond,
                                   r.stepSeconds * 1e3, 100 * r.commShare, r.firstStep.map { String(format: "%.3f s", $0) } ?? "-", r.finalLoss))
                    fflush(nil)
                }
            }
        }
        if comm.rank == 0 { print(String(format: "MPI_Init: %.3f s (slowest rank)", maxInit)) }
        for repro in results where repro.reproducible {
            guard let plain = results.first(where: { $0.model == repro.model && !$0.overlap && !$0.reproducible }), comm.rank == 0 else { continue }
            print(String(format: "reproducible: %@ step %.3f ms, default %.3f ms (%.3f× the default's time)",
                         repro.model.rawValue, repro.stepSeconds * 1e3, plain.stepSeconds * 1e3, repro.stepSeconds / plain.stepSeconds))
        }
        if let plain = results.first(where: { $0.model == .mlp && !$0.overlap && !$0.reproducible }),
           let over = results.first(where: { $0.model == .mlp && $0.overlap }) {
            let same = plain.finalLoss == over.finalLoss
            if comm.rank == 0 {
                print(String(format: "overlap: MLP step %.3f ms without, %.3f ms with (%.2f× as fast); final loss %@",
                             plain.stepSeconds * 1e3, over.stepSeconds * 1e3, plain.stepSeconds / over.stepSeconds,
                             same ? "the same bits" : "DIFFERS"))
            }
            // Overlap must not change a bit of the result: a benchmark that finds otherwise fails.
            try comm.agree(same ? nil : "the MLP trained with --overlap ended with another loss (\(over.finalLoss)) than without (\(plain.finalLoss))", kind: .software)
        }
        if let path = csv {
            try comm.agreeing {
                guard comm.rank == 0 else { return }
                let lines = results.map { r in
                    [r.label, String(p), String(batch), String(format: "%.1f", r.samplesPerSecond),
                     String(format: "%.1f", r.meanSamplesPerSecond), String(format: "%.4f", r.stepSeconds * 1e3),
                     String(format: "%.4f", r.commShare), r.firstStep.map { String(format: "%.3f", $0) } ?? "",
                     String(format: "%.3f", maxInit), String(format: "%.4f", r.finalLoss), allreduce, oversubscribed ? "yes" : "no"]
                }
                try BenchOutput.writeCSV(header: Self.csvHeader, rows: lines, to: path)
            }
            if comm.rank == 0 { print("wrote \(path)") }
        }
    }

    /// Trains each of `runs` for `warmup + steps` steps, one step of each in turn, and times every step alone.
    /// Collective.
    func measure(_ runs: [(model: ModelName, overlap: Bool, reproducible: Bool)], comm: MPICommunicator, train: Dataset,
                 fromProcessStart: Bool) throws -> [Result] {
        let total = warmup + steps
        let trainers = runs.map { run -> (Trainer, TimedAllreduce) in
            let model: Model
            switch run.model {
            case .softmax: model = SoftmaxRegression(features: train.features, classes: Swift.max(2, train.classes))
            case .mlp: model = MLP(features: train.features, hidden: hiddenWidths!, classes: Swift.max(2, train.classes), activation: .relu)
            case .logistic: model = LogisticRegression(features: train.features)
            }
            let lr = run.model == .mlp ? mlpLr : softmaxLr
            let algorithm = AllreduceKind(rawValue: allreduce)!.make(for: comm)
            // The sparse allreduce keeps its sparse form, so the trainer picks the sparse reducer and its calls are timed.
            let timed = (algorithm as? SparseAllreduceAlgorithm).map { TimedSparseAllreduce($0) } ?? TimedAllreduce(algorithm)
            var config = TrainingConfig(steps: total, batchSize: batch, learningRate: lr, seed: seed, logEvery: total)
            config.overlap = run.overlap
            // --reproducible's Int64 sums do not go through `timed` (its comm share is then 0).
            config.reproducibleBlockRows = run.reproducible ? Reproducible.blockRows : nil
            config.bucketBytes = bucketKB << 10
            return (Trainer(comm: comm, model: model, train: train, config: config, allreduce: timed), timed)
        }
        var stepTimes = [[Double]](repeating: [Double](repeating: 0, count: steps), count: runs.count)
        var firstStep: Double?
        var stepSeconds = [Double](repeating: 0, count: runs.count)
        var wall = [Double](repeating: 0, count: runs.count)
        for s in 0..<total {
            if s == warmup {
                try comm.barrier()
                for (_, timed) in trainers { timed.seconds = 0 }
            }
            for (i, (trainer, _)) in trainers.enumerated() {
                let t0 = DispatchTime.now().uptimeNanoseconds
                try trainer.trainStep()
                let t1 = DispatchTime.now().uptimeNanoseconds
                if s == 0 && i == 0 && fromProcessStart { firstStep = processAge() }
                if s >= warmup {
                    stepTimes[i][s - warmup] = Double(t1 - t0) / 1e9
                    stepSeconds[i] += Double(t1 - t0) / 1e9
                    wall[i] += Double(t1 - t0) / 1e9
                }
            }
        }
        // Collective on every rank alike (a rank without /proc contributes −1; then there is no figure).
        let first = try fromProcessStart ? comm.allreduced(firstStep ?? -1, op: .max) : -1
        return try runs.indices.map { i in
            let (trainer, timed) = trainers[i]
            // The slowest rank's time in this run's steps marks its timed wall time.
            let timedWall = try comm.allreduced(wall[i], op: .max)
            let slowest = try comm.allreduced(stepTimes[i], op: .max)
            let share = try comm.allreduced(stepSeconds[i] > 0 ? timed.seconds / stepSeconds[i] : 0, op: .sum) / Double(comm.size)
            let median = BenchOutput.median(slowest)
            let loss = try trainer.evaluate(train).loss
            return Result(model: runs[i].model, overlap: runs[i].overlap, reproducible: runs[i].reproducible, samplesPerSecond: Double(batch) / median,
                          meanSamplesPerSecond: Double(steps * batch) / timedWall, stepSeconds: median, commShare: share,
                          firstStep: i == 0 && first >= 0 ? first : nil, finalLoss: loss)
        }
    }
}

/// An allreduce that adds the time spent inside it to `seconds`: the communication share of a step.
/// Costs two clock reads per call.
class TimedAllreduce: AllreduceAlgorithm {
    let inner: AllreduceAlgorithm
    var seconds = 0.0
    var name: String { inner.name }

    init(_ inner: AllreduceAlgorithm) { self.inner = inner }

    func run(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws {
        let t0 = DispatchTime.now().uptimeNanoseconds
        defer { seconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 }
        try inner.run(buffer, op: op)
    }

    func run(_ buffer: UnsafeMutableBufferPointer<Double>, op: ReduceOp) throws {
        let t0 = DispatchTime.now().uptimeNanoseconds
        defer { seconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 }
        try inner.run(buffer, op: op)
    }
}

/// `TimedAllreduce` for a sparse allreduce: times its dense and its sparse calls.
final class TimedSparseAllreduce: TimedAllreduce, SparseAllreduceAlgorithm {
    let sparse: SparseAllreduceAlgorithm

    init(_ inner: SparseAllreduceAlgorithm) {
        sparse = inner
        super.init(inner)
    }

    func run(_ entries: SparseEntries<Float>, dimension: Int, op: ReduceOp) throws -> SparseEntries<Float> {
        let t0 = DispatchTime.now().uptimeNanoseconds
        defer { seconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 }
        return try sparse.run(entries, dimension: dimension, op: op)
    }

    func run(_ entries: SparseEntries<Double>, dimension: Int, op: ReduceOp) throws -> SparseEntries<Double> {
        let t0 = DispatchTime.now().uptimeNanoseconds
        defer { seconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 }
        return try sparse.run(entries, dimension: dimension, op: op)
    }
}

/// Seconds since this process started, from the kernel's record of its start (`/proc/self/stat` field 22,
/// clock ticks since boot, against `CLOCK_BOOTTIME`): includes exec, dynamic loading and runtime start-up.
/// Resolution one clock tick (10 ms). Falls back to nil where /proc is absent.
func processAge() -> Double? {
    guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return nil }
    // Fields after the command name (which may hold spaces) start at field 3; starttime is field 22.
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard fields.count > 19, let ticks = Double(fields[19]) else { return nil }
    var now = timespec()
    clock_gettime(CLOCK_BOOTTIME, &now)
    let hz = Double(sysconf(Int32(_SC_CLK_TCK)))
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9 - ticks / hz
}
