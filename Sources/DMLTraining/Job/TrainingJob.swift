import Foundation
import DMLComm
import DMLData
import DMLKernels
import DMLModels
import DMLStatus

/// Where a job's messages go. Only rank 0 calls them. `say` is the log (progress, checkpoints, results: stdout
/// in dml-train), `warn` what a user must notice (a damaged checkpoint skipped: stderr).
public struct JobOutput {
    public var program: String
    public var say: (String) -> Void
    public var warn: (String) -> Void
    /// Progress lines at the log interval; nil prints none.
    public var progress: ProgressPrinter?

    /// `warn` defaults to standard error, as `<program>: warning: …`.
    public init(program: String = "dml-train", say: @escaping (String) -> Void = { print($0) },
                warn: ((String) -> Void)? = nil, progress: ProgressPrinter? = ProgressPrinter()) {
        self.program = program
        self.say = say
        self.warn = warn ?? { FileHandle.standardError.write(Data((program + ": warning: " + $0 + "\n").utf8)) }
        self.progress = progress
    }

    /// Prints nothing (tests, benchmarks).
    public static var silent: JobOutput { JobOutput(say: { _ in }, warn: { _ in }, progress: nil) }
}

/// What a finished job reports.
public struct JobResult {
    public let steps: Int
    public let seconds: Double
    public let train: Evaluation
    public let test: Evaluation?
    public let validation: Evaluation?
    /// The checkpoint the run continued from, if it resumed.
    public let resumedFrom: (step: Int, path: String)?
    /// The whole model's parameters at the end (the row-partitioned layout), on every rank.
    public let parameters: [Float]
}

/// A training job built from its configuration: the library side of `dml-train`, which only parses flags
/// into a `JobConfiguration` and prints. Collective: every rank runs `run` with the same configuration.
///
/// ```
/// checks (conflicts, outputs vs inputs, writable outputs) → data (rows, or columns for --partition features)
///   → model → allreduce (auto: tuned or cached) → strategy (Trainer with its reducer and hook, or
///   FeaturePartitionedTrainer) → configuration agreement → [learning-rate search] → TrainingSession
///   → --output → --timeline → a polled barrier (the last collective before MPI_Finalize)
/// ```
/// Every collective runs under a deadline from `outputs.collectiveTimeout`: the start-up's five times it.
public final class TrainingJob {
    public let configuration: JobConfiguration
    public let comm: Communicator
    public let faults: FaultPlan
    public let output: JobOutput
    /// The strategy of the final run, once built (tests and benchmarks look at it).
    public private(set) var strategy: TrainingStrategy?

    public init(configuration: JobConfiguration, comm: Communicator, faults: FaultPlan = FaultPlan(), output: JobOutput = JobOutput()) {
        self.configuration = configuration
        self.comm = comm
        self.faults = faults
        self.output = output
    }

    private var rank0: Bool { comm.rank == 0 }
    private func say(_ line: String) { if rank0 { output.say(line) } }
    private var timeout: Double { configuration.outputs.collectiveTimeout }

    public func run() throws -> JobResult {
        let job = configuration
        if let conflict = job.conflict() { throw TrainingFailure(conflict, kind: .usage) }
        comm.deadlines.interruption = Preemption.diedWhileWaiting
        comm.deadlines.sinceContinued = Preemption.sinceThawed()
        comm.deadlines.current = timeout > 0 ? CollectiveDeadline(seconds: 5 * timeout,
            phase: "the start-up (data loading, configuration agreement, checkpoint directory, resume; 5 × --collective-timeout)") : nil
        // A given count that cannot start on some rank (its `ulimit -v`) is one agreed error, named by that rank
        // (every rank takes part, whether it was given --threads or not). The default count is the rank's cores, not
        // a flag: where those threads cannot start the rank runs on its own thread; the bits are the same.
        var threadFailure: KernelThreadsError?
        if let given = job.threads {
            do { try KernelThreads.use(given) } catch { threadFailure = error }
        } else if (try? KernelThreads.use(KernelThreads.defaultCount(ranksOnNode: MemoryBudget.ranksOnNode))) == nil {
            try KernelThreads.use(1)
        }
        try comm.agree(error: threadFailure)
        try checkFiles()
        try job.refuseTooSmallMemoryLimit(comm: comm)
        faults.hangDuringStartupIfPlanned(rank: comm.rank)

        // A warm start (--init): the saved model, read by every rank, its preprocessing applied to the data.
        let initial: ModelFile? = try job.optimization.initFrom.map { path in try comm.agreeing { try ModelFile.read(path: path) } }
        if let initial, job.data.standardize && initial.standardization == nil {
            throw TrainingFailure("--standardize with --init \(job.optimization.initFrom!): that model was trained on raw features "
                                  + "(it records no standardisation); leave out --standardize", kind: .usage)
        }
        // Data, in rows or (--partition features) in columns.
        let seed = job.optimization.seed
        let fraction = job.optimization.lrSearch != nil && job.data.validationFraction == 0 ? 0.2 : job.data.validationFraction
        let loaded: LoadedData, columns: Range<Int>?
        var data = job.data
        // --balance moves dense rows: `auto` reads them dense (`conflict()` refused `--sparse on`).
        if job.reduction.balance && data.sparse == .auto { data.sparse = .off }
        // So does --reproducible's sharded update (its reducer moves and sums dense rows; CSR rows have their own).
        if job.reduction.reproducible && job.reduction.shardUpdate && data.sparse == .auto { data.sparse = .off }
        if job.data.partition == .features {
            (loaded, columns) = try data.loadColumns(comm: comm, seed: seed, validationFraction: fraction,
                                                         standardization: initial?.standardization)
        } else {
            (loaded, columns) = (try data.load(comm: comm, seed: seed, validationFraction: fraction, standardization: initial?.standardization,
                                                   exactStatistics: job.reduction.reproducible, warn: rank0 ? output.warn : { _ in }), nil)
        }
        let train = loaded.train
        if let stream = train.stream {
            say("training rows streamed from shard caches (rank 0: \(stream.path), \(stream.isSparse ? "CSR" : "dense float32"))")
        }
        let features = try columns.map { Int(try comm.allreduced(Int64($0.upperBound), op: .max)) } ?? train.features
        // A full-batch method (lbfgs, newton) uses every row in every iteration: one iteration per "epoch".
        let batch = job.optimization.optimizer.isFullBatch ? nil : job.optimization.batchSize.map { Swift.min($0, train.globalRows) }
        try checkMemory(features: features, classes: train.classes, localRows: batch.map { ($0 + comm.size - 1) / comm.size } ?? train.rows,
                        nonZerosPerRow: train.csr.map { Double($0.nonZeros) / Double(Swift.max(1, $0.rows)) }
                            ?? (train.stream?.isSparse == true ? Double(train.stream!.nonZeros) / Double(Swift.max(1, train.rows)) : nil),
                        streamed: train.stream.map { stream in
                            // A full-batch method's pass reads a chunk at a time, not the whole shard.
                            (shardRows: train.rows, features: train.features,
                             rowsAtOnce: batch == nil ? Swift.min(train.rows, SecondOrderTrainer.chunkRows(stream)) : nil)
                        }, residentStream: train.stream)
        if let stream = train.stream {
            let window = stream.isSparse || stream.residentRows == stream.rows ? ""
                : "; the others are read from its cache in step windows of up to \(MemoryBudget.format(Double(stream.windowBytes))) when those pay, else a read a row"
            say((stream.residentRows > 0 ? "rank 0 holds \(stream.residentRows) of its \(stream.rows) rows in memory (--max-memory)"
                 : "rank 0 reads its \(stream.rows) rows from its cache") + window)
        }
        let model = try comm.agreeing {
            try job.model.make(features: features, classes: train.classes, weightDecay: job.optimization.modelWeightDecay, synthetic: job.data.path == nil)
        }
        if let initial { try checkWarmStart(initial, model: model, labels: loaded.labels) }
        let stepsPerEpoch = batch.map { (train.globalRows + $0 - 1) / $0 } ?? 1
        let totalSteps = job.optimization.steps ?? job.optimization.epochs * stepsPerEpoch
        let exact = try job.reduction.algorithm(comm: comm, gradientBytes: (model.layout.count + 2) * MemoryLayout<Float>.size, say: say)

        func makeStrategy(lr: Float) -> TrainingStrategy {
            var config = TrainingConfig(steps: totalSteps, batchSize: batch, learningRate: lr, seed: seed,
                                        logEvery: job.outputs.logEvery ?? Swift.max(1, totalSteps / 10),
                                        optimizer: job.optimization.optimizerConfig,
                                        schedule: job.optimization.schedule(totalSteps: totalSteps, base: lr))
            config.collectiveTimeout = timeout
            config.overlap = job.reduction.overlap
            config.shardUpdate = job.reduction.shardUpdate
            config.bucketBytes = job.reduction.bucketBytes
            config.balance = job.reduction.balance
            config.reproducibleBlockRows = job.reduction.reproducible ? ReproducibleReducer.blockRows : nil
            config.shuffle = job.optimization.shuffle == .on
            if let settings = job.optimization.fullBatchSettings, let convex = model as? TwiceDifferentiable {
                return SecondOrderTrainer(comm: comm, model: convex, train: train, config: config, settings: settings, allreduce: exact, faults: faults)
            }
            if let columns {
                let slice = FeatureSlice(kind: FeatureSlice.Kind(rawValue: model.kind)!, features: features, columns: columns,
                                         classes: train.classes, weightDecay: job.optimization.modelWeightDecay)
                return FeaturePartitionedTrainer(comm: comm, slice: slice, train: train, config: config, allreduce: exact, faults: faults)
            }
            return Trainer(comm: comm, model: model, train: train, config: config, allreduce: exact,
                           hook: job.reduction.hook(exact: exact, comm: comm), faults: faults, note: say)
        }
        func makeSession(_ strategy: TrainingStrategy, searched: Float? = nil) -> TrainingSession {
            var identity = job.identity
            // --lr-search's choice: recorded, so that a resume takes it instead of searching again.
            if let searched { identity[Self.searchedRateKey] = String(describing: searched) }
            // The hashing map is part of the math: by its full description (hash, seed, bits).
            if let h = job.data.readOptions.hash { identity["derived.feature_hash"] = h.description }
            // A warm start's model is part of the math: by its content.
            if let initial { identity["derived.init"] = Checksum.hex(Checksum.hash(initial.parameters)) }
            var options = SessionOptions(identity: identity, configuration: job.agreementText + "\nfaults=\(faults.faults)")
            options.checkpointDirectory = job.outputs.checkpointDir
            // Default: once per epoch; a full-batch epoch is one step, so there about ten per run.
            options.checkpointEvery = job.outputs.checkpointEvery ?? (batch == nil ? Swift.max(1, totalSteps / 10) : stepsPerEpoch)
            options.keepCheckpoints = job.outputs.keepCheckpoints
            options.resume = job.outputs.resume
            options.overwriteCheckpoints = job.outputs.overwriteCheckpoints
            options.verifyEvery = job.outputs.verifyEvery
            options.evalEvery = job.outputs.evalEvery
            options.metricsPath = job.outputs.metrics
            options.earlyStopping = job.optimization.earlyStopping
            if let best = bestPath {
                // Collective: every rank gathers the parameters (a feature partition's slices); rank 0 writes.
                options.onBest = { [unowned self] step in
                    let file = self.modelFile(model: model, parameters: try strategy.outputParameters(), step: step, loaded: loaded,
                                              checksum: nil, columns: columns != nil)
                    try self.comm.watched("writing \(best)", seconds: self.timeout + Double(4 * file.parameters.count) / 50e6) {
                        try self.comm.agreeing { if self.rank0 { try file.write(to: best) } }
                    }
                }
            }
            return TrainingSession(trainer: strategy, test: loaded.test, validation: loaded.validation, options: options,
                                   log: output.say, warn: output.warn)
        }

        func build(lr: Float) throws -> TrainingStrategy {
            let s = makeStrategy(lr: lr)
            if let initial { try s.start(from: initial.parameters) }
            return s
        }
        var strategy = try build(lr: job.optimization.lr)
        var session = makeSession(strategy)
        // Before anything is trained: every rank must run the same configuration.
        try session.checkConfigurationAgreement()
        say(header(model: model, description: loaded.description, batch: batch, steps: totalSteps, schedule: strategy.config.schedule,
                   columns: features) + (loaded.parseThreads.map { "; rank 0 parsed its text with \($0) thread\($0 == 1 ? "" : "s")" } ?? ""))
        if let candidates = job.optimization.lrSearch {
            // A resume continues with the rate the search chose in the run it continues (searching again would
            // cost every candidate's training, and could choose otherwise: a longer --steps, another np).
            var chosen = ""
            if rank0, job.outputs.resume, let dir = job.outputs.checkpointDir {
                chosen = CheckpointStore(directory: dir, keep: 0).newestRecorded(Self.searchedRateKey) ?? ""
            }
            try comm.broadcast(&chosen, root: 0)
            let best: Float
            if let rate = Float(chosen), candidates.contains(rate) {
                best = rate
                say("--lr-search: resuming with lr \(chosen), the rate the search chose in the run being continued (not searched again)")
            } else {
                best = try searchLearningRate(candidates, validation: loaded.validation, makeStrategy: build)
            }
            strategy = try build(lr: best)
            session = makeSession(strategy, searched: best)
            say("training the final model with lr \(strategy.config.schedule.description)")
        }
        self.strategy = strategy
        let recorder = job.outputs.timeline == nil ? nil : Timeline()
        if let recorder {
            try recorder.synchronize(comm)
            strategy.hooks.timeline = recorder
        }
        // The model file is written at the end of the session, before the metrics' final line.
        var parameters: [Float] = []
        session.options.writeOutputs = { [unowned session] in
            parameters = try strategy.outputParameters()
            try self.writeOutput(self.modelFile(model: model, parameters: parameters, step: strategy.step, loaded: loaded,
                                                checksum: session.dataChecksum, columns: columns != nil))
        }
        let result = try session.run(progress: output.progress)
        if let why = strategy.finished { say(why) }
        say(done(steps: strategy.step, result: result))
        if let path = configuration.outputs.output { say("wrote \(path)" + (configurationRecordPath.map { " and its configuration \($0)" } ?? "")) }
        if let best = bestPath, let b = result.best { say("best model (validation loss \(String(format: "%.6f", b.loss)) after step \(b.step)): \(best)") }
        if let recorder, let path = job.outputs.timeline {
            let summary = try recorder.balanceSummary(comm: comm, steps: Swift.max(1, strategy.step - (result.resumedFrom?.step ?? 0)))
            try comm.watched("gathering the timeline", seconds: timeout + 10) { try recorder.write(to: path, comm: comm) }
            say(summary)
            say("wrote \(path)")
        }
        // The last collective of a job: a barrier under the deadline, so that MPI_Finalize (which cannot be
        // polled) starts only when every rank is there.
        try comm.watched("the end of the job", seconds: timeout) { try comm.barrier() }
        return JobResult(steps: strategy.step, seconds: result.seconds, train: result.train, test: result.test,
                         validation: result.validation, resumedFrom: result.resumedFrom, parameters: parameters)
    }

    /// Every rank checks, before the model is allocated, that what it will allocate fits in its share of the
    /// node's memory. Collective (agreed): one message with the figures.
    /// `nonZerosPerRow`: the rows are CSR (this shard's mean non-zeros a row), so a batch's input is its
    /// non-zeros, not `rows × features` dense values.
    /// `streamed`: the rows are streamed from a shard cache (`--cache-dir`): the labels and two batches'
    /// gathered rows (the current and the prefetched one; for a full-batch method two of its pass's chunks,
    /// `rowsAtOnce`) are counted too, and `--max-memory` replaces the node's figure.
    /// `residentStream`: the streamed shard, which spends the limit's slack on its rows: resident rows and a step
    /// window (`ShardStream.useMemory`, `MemoryBudget.streamingBudget`).
    private func checkMemory(features: Int, classes: Int, localRows: Int, nonZerosPerRow: Double?,
                             streamed: (shardRows: Int, features: Int, rowsAtOnce: Int?)? = nil, residentStream: ShardStream? = nil) throws {
        let sparse = nonZerosPerRow != nil
        let job = configuration
        let (parameters, widths) = job.model.size(features: features, outputs: Swift.max(1, job.model.kind == .softmax || job.model.kind == .mlp ? classes : 1))
        var needed = MemoryBudget.estimate(parameters: parameters, optimizerCopies: job.optimization.stateCopies, rows: localRows,
                                           widths: sparse ? Array(widths.dropFirst()) : widths, sparseInputColumns: sparse ? features : 0,
                                           nonZerosPerRow: nonZerosPerRow ?? 0)
        let ranks = MemoryBudget.ranksOnNode
        if let streamed {
            needed += MemoryBudget.streamed(shardRows: streamed.shardRows, batchRows: streamed.rowsAtOnce ?? localRows, features: streamed.features,
                                            nonZerosPerRow: nonZerosPerRow)
        }
        // With --max-memory a streamed shard spends what the limit leaves over on its rows, less what the process
        // has mapped already and will still allocate, less a margin (`MemoryBudget.streamingBudget`): all of them
        // resident when they fit, else resident rows and a step window (`useMemory`). Without it, no row is
        // resident and the window has its default size.
        if let stream = streamed.flatMap({ _ in residentStream }), let limit = job.data.maxMemory.map(Double.init), needed < limit {
            // Already in memory: the labels (and CSR row starts); still to come: the rest of the estimate.
            let held = MemoryBudget.baseline + Double(streamed!.shardRows) * (nonZerosPerRow == nil ? 4 : 12)
            var failure: Error?
            do { try stream.useMemory(Int(MemoryBudget.streamingBudget(limit: limit, needed: needed, future: Swift.max(0, needed - held)))) } catch { failure = error }
            try comm.agree(error: failure)
        } else if streamed != nil && job.data.maxMemory != nil {
            try comm.agree(nil, kind: .usage)   // the same collectives on every rank
        }
        if let limit = job.data.maxMemory {
            try comm.agree(needed > Double(limit)
                ? MemoryBudget.tooSmall(limit: limit, parameters: parameters, copies: 3 + 2 * job.optimization.stateCopies, rows: localRows, widths: widths,
                                        needed: needed, atLeast: false) : nil, kind: .usage)
            return
        }
        try comm.agreeing {
            guard let available = MemoryBudget.available(ranksOnNode: ranks), needed > available else { return }
            throw JobError(.usage, "this model needs about \(MemoryBudget.format(needed)) per rank (\(parameters) parameters × \(3 + 2 * job.optimization.stateCopies) copies, "
                           + "and the passes of \(localRows) rows through layers \(widths.map(String.init).joined(separator: "→"))), but each of the \(ranks) "
                           + "rank\(ranks == 1 ? "" : "s") on this node has about \(MemoryBudget.format(Swift.max(0, available))): make the model or the batch smaller, "
                           + "or run fewer ranks per node")
        }
    }

    /// `NAME.config.toml` beside `--output NAME.safetensors`: the effective configuration, when the
    /// executable gave one (`outputs.configurationRecord`).
    var configurationRecordPath: String? {
        guard configuration.outputs.configurationRecord != nil, let output = configuration.outputs.output else { return nil }
        return (output as NSString).deletingPathExtension + ".config.toml"
    }

    /// `NAME.best.safetensors` beside `--output NAME.safetensors`, with `--early-stopping`: named after the
    /// output, so two runs writing into one directory keep their own best models.
    var bestPath: String? {
        guard configuration.optimization.earlyStopping != nil, let output = configuration.outputs.output else { return nil }
        return (output as NSString).deletingPathExtension + ".best.safetensors"
    }

    /// The model file of `parameters` after `step`, with what prediction needs from the data.
    private func modelFile(model: Model, parameters: [Float], step: Int, loaded: LoadedData, checksum: UInt64?, columns: Bool) -> ModelFile {
        let job = configuration
        // --reproducible: the file does not depend on the number of ranks, so it does not record it (np 1 and np 8 write the same bytes).
        var provenance = ["step": String(step), "seed": String(job.optimization.seed),
                          "ranks": job.reduction.reproducible ? "any (--reproducible)" : String(comm.size),
                          "partition": job.data.partition.rawValue, "data": loaded.description, "data_rows": String(loaded.train.globalRows)]
        if let checksum { provenance["data_checksum"] = Checksum.hex(checksum) }
        if let i = job.optimization.initFrom { provenance["init"] = i }
        var file = ModelFile(model: model, parameters: parameters, hidden: job.model.hidden, activation: job.model.activation,
                             labels: loaded.labels, standardization: loaded.standardization,
                             featureNames: rank0 ? (loaded.featureNames ?? job.data.featureNames) : nil, provenance: provenance)
        file.featureHash = job.data.readOptions.hash
        file.missing = loaded.missing == .error ? nil : loaded.missing
        file.missingFill = loaded.missingFill
        if !loaded.dropColumns.isEmpty { file.dropColumns = loaded.dropColumns.map(\.argument) }
        if let c = loaded.categorical { (file.categorical, file.categories) = (c.columns, c.categories) }
        file.categoricalEncoding = job.data.categoricalEncoding
        file.inputColumns = loaded.inputColumns
        return file
    }

    /// A warm start's model must be the model these flags describe and fit the data: one message naming both
    /// sides otherwise (64).
    private func checkWarmStart(_ initial: ModelFile, model: Model, labels: LabelMapping?) throws {
        let job = configuration, flag = "--init \(job.optimization.initFrom!)"
        guard initial.kind.rawValue == model.kind else {
            throw TrainingFailure("\(flag) is a \(initial.kind.rawValue) model; this run trains --model \(model.kind)", kind: .usage)
        }
        if initial.kind == .mlp && (initial.hidden != job.model.hidden || initial.activation != job.model.activation) {
            throw TrainingFailure("\(flag) has hidden layers \(initial.hidden.map(String.init).joined(separator: ",")) with \(initial.activation.rawValue); "
                           + "this run has --hidden \(job.model.hidden.map(String.init).joined(separator: ",")) --activation \(job.model.activation.rawValue)", kind: .usage)
        }
        guard initial.featureHash == job.data.readOptions.hash else {
            throw TrainingFailure("\(flag) was trained with feature hashing \(initial.featureHash?.description ?? "off"); this run has "
                                  + (job.data.readOptions.hash.map { "--hash-bits \($0.bits)" } ?? "no --hash-bits"), kind: .usage)
        }
        guard initial.features == model.inputs else {
            throw TrainingFailure("\(flag) takes \(initial.features) features; the training data has \(model.inputs)", kind: .usage)
        }
        guard initial.outputs == model.outputs else {
            throw TrainingFailure("\(flag) has \(initial.classes) classes; the training data has \(model.isClassifier ? Swift.max(2, model.outputs) : 0)", kind: .usage)
        }
        if let a = initial.labels, let b = labels?.names, a != b {
            throw TrainingFailure("\(flag) has the classes \(a.joined(separator: ", ")); the training data has \(b.joined(separator: ", "))", kind: .usage)
        }
    }

    /// Rank 0 checks, before anything is read, that no output is an input or another output, and that the
    /// outputs can be written. Collective.
    private func checkFiles() throws {
        let job = configuration
        try comm.agreeing {
            guard rank0 else { return }
            let inputs = [("--data", job.data.path), ("--labels", job.data.labels), ("--test-data", job.data.testPath),
                          ("--test-labels", job.data.testLabels)].compactMap { f, p in p.map { (flag: f, path: $0) } }
            let outputs = [("--output", job.outputs.output), ("--early-stopping's best model", bestPath),
                           ("the effective configuration beside --output", configurationRecordPath),
                           ("--metrics", job.outputs.metrics), ("--timeline", job.outputs.timeline),
                           ("--tune-cache", job.reduction.autotune ? job.reduction.tuneCache : nil)].compactMap { f, p in p.map { (flag: f, path: $0) } }
            try OutputPaths.checkDistinct(inputs: inputs, outputs: outputs)
            try OutputPaths.checkOutside(job.outputs.checkpointDir, flag: "--checkpoint-dir", owned: CheckpointStore.owns, outputs: outputs)
            try OutputPaths.checkOutside(job.data.cacheDir, flag: "--cache-dir", owned: ShardCache.owns, outputs: outputs)
            for path in [job.outputs.output, job.outputs.timeline].compactMap({ $0 }) { try AtomicFile.checkWritable(path) }
        }
    }

    private func header(model: Model, description: String, batch: Int?, steps: Int, schedule: LearningRateSchedule, columns features: Int) -> String {
        let job = configuration, p = comm.size
        var layout = "\(p) rank\(p == 1 ? "" : "s")"
        let t = KernelThreads.count
        let threads = ", \(t) kernel thread\(t == 1 ? "" : "s") per rank" + (job.threads == nil ? " (rank 0's cores)" : "")
        if job.data.partition == .features {
            layout += " partitioned by features (\(features % p == 0 ? "\(features / p)" : "\(features / p)–\(features / p + 1)") columns each)"
        }
        let lr = job.optimization.lrSearch == nil ? schedule.description : "search"
        var wire = job.reduction.compress.map { ", gradients \($0.rawValue)\(job.reduction.errorFeedback ? " with error feedback" : "")" } ?? ""
        let sharded = job.reduction.shardUpdate ? ", sharded update (optimizer state of 1/\(p) of the parameters per rank)" : ""
        wire += sharded
        if let settings = job.optimization.fullBatchSettings {
            return "\(output.program): \(model.kind) on \(description), \(layout), full batch, at most \(steps) iterations, "
                + "\(settings.description) to --tol \(settings.tolerance), weight decay \(job.optimization.weightDecay), allreduce \(job.reduction.allreduce.rawValue)" + threads
        }
        return "\(output.program): \(model.kind) on \(description), \(layout), global batch \(batch.map(String.init) ?? "full")\(batch != nil && job.optimization.shuffle == .off ? " in file order (--shuffle off)" : ""), \(steps) steps, "
            + "\(job.optimization.optimizerConfig.description), lr \(lr), "
            + (job.reduction.reproducible ? "reproducible (blocks of \(ReproducibleReducer.blockRows) rows, exact sums)\(sharded)" : "allreduce \(job.reduction.allreduce.rawValue)\(wire)") + threads
    }

    /// Rank 0's last line: steps, time, and the evaluations (accuracy for classifiers, MSE for regression).
    private func done(steps: Int, result: SessionResult) -> String {
        func describe(_ e: Evaluation) -> String {
            e.accuracy.map { String(format: "loss %.4f accuracy %.2f%%", e.loss, 100 * $0) } ?? String(format: "MSE %.4f", e.loss)
        }
        var these = result.resumedFrom.map { " (\(steps - $0.step) in this run, resumed at step \($0.step))" } ?? ""
        if result.stoppedEarly != nil { these += " (stopped early)" }
        var line = "done: \(steps) steps\(these) in " + String(format: "%.2f s; train ", result.seconds) + describe(result.train)
        if let v = result.validation { line += "; validation " + describe(v) }
        if let t = result.test { line += "; test " + describe(t) }
        return line
    }

    /// `--output`: rank 0 writes the model file (`ModelFile`: named tensors and everything prediction needs),
    /// atomically, then the effective configuration beside it. Collective (a failed write is an error on all).
    private func writeOutput(_ file: ModelFile) throws {
        guard let path = configuration.outputs.output else { return }
        // The others wait while rank 0 writes: the deadline allows for the write at 50 MB/s.
        try comm.watched("writing \(path)", seconds: timeout + Double(4 * file.parameters.count) / 50e6) {
            try comm.agreeing {
                guard rank0 else { return }
                try file.write(to: path)
                if let record = configuration.outputs.configurationRecord, let recordPath = configurationRecordPath {
                    do {
                        try AtomicFile.write(Array(record.utf8), to: recordPath)
                    } catch let e as AtomicFile.WriteError {
                        throw AtomicFile.WriteError(path: e.path, reason: e.reason + " (the model \(path) was written; its configuration record was not)", kind: e.failureKind)
                    }
                }
            }
        }
    }

    /// The identity key recording `--lr-search`'s choice.
    static let searchedRateKey = "derived.lr_search_choice"

    /// `--lr-search`: trains every candidate, prints a table of validation scores (rank 0) and returns the
    /// best rate. Collective. Fails, on every rank alike, when every candidate diverged.

    private func searchLearningRate(_ candidates: [Float], validation: Dataset?, makeStrategy: (Float) throws -> TrainingStrategy) throws -> Float {
        guard let validation else { throw TrainingFailure("--lr-search needs a validation split (--validation-fraction)", kind: .usage) }
        say("learning-rate search: \(candidates.count) candidates, scored on \(validation.globalRows) validation rows")
        say("  lr          validation loss  accuracy   time")
        let outcomes = try LearningRateSearch(candidates: candidates).run(validation: validation, makeTrainer: makeStrategy) { o in
            let lr = String(describing: o.learningRate).padding(toLength: 10, withPad: " ", startingAt: 0)
            if let v = o.validation {
                let accuracy = v.accuracy.map { String(format: "%7.2f%%", 100 * $0) } ?? "       -"
                say("  \(lr)  " + String(format: "%15.6f", v.loss) + "  " + accuracy + String(format: "  %6.2f s", o.seconds))
            } else {
                // The guard's message names the step; its advice is for a single run, not for a search.
                let reason = (o.failure ?? "non-finite").split(separator: ":").first.map(String.init) ?? ""
                say("  \(lr)  diverged (\(reason))")
            }
        }
        guard let best = LearningRateSearch.best(of: outcomes) else {
            throw TrainingFailure("--lr-search: every candidate diverged (\(candidates.map { String(describing: $0) }.joined(separator: ", "))); try smaller rates")
        }
        say("best lr \(best.learningRate) (validation loss \(String(format: "%.6f", best.validation!.loss)))")
        return best.learningRate
    }
}
