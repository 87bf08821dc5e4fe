import ArgumentParser
import DMLComm
import DMLData
import DMLModels
import DMLStatus
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
            Errors are printed once, by rank 0, and the job's exit status (sysexits.h) says what failed \
            (dml-launch restarts 69, 75 and 128+N only; see its --help):
            \(FailureKind.exitStatusHelp)
            """)

    @OptionGroup(title: "Model") var modelOptions: ModelOptions
    @OptionGroup(title: "Data") var data: DataOptions
    @OptionGroup(title: "Training") var training: TrainingOptions
    @OptionGroup(title: "Checkpoints and checks") var checkpoints: CheckpointOptions

    @Option(help: "Allreduce algorithm: \(AllreduceKind.allCases.map(\.rawValue).joined(separator: ", ")).")
    var allreduce: AllreduceKind = .ring

    // Not `--tune`: mpirun takes that name for itself (an MCA parameter file) wherever it appears.
    @Flag(help: "With --allreduce auto: measure the algorithms and the ring's segment size on this machine and rank layout before training, and cache the choice (see --tune-cache) for later jobs.")
    var autotune = false

    @Option(name: .customLong("tune-cache"), help: "The tuning cache --autotune writes and --allreduce auto reads (default: ~/.cache/dml/allreduce-tune.json).")
    var tuneCache: String?

    @Option(help: ArgumentHelp("Gradient wire format: none (Float32), fp16 or bf16 (half the bytes; sums still formed in Float32).",
                               discussion: "Compressed gradients travel through a ring whose messages carry 16-bit values, whatever --allreduce says; the loss sum and row count stay exact (reduced with --allreduce)."))
    var compress: Compression = .none

    @Flag(name: .customLong("error-feedback"), help: "With --compress: each rank adds what rounding its last contribution lost to its next one (the residual is not checkpointed).")
    var errorFeedback = false

    @Option(help: "Write the final parameters to this safetensors file (rank 0 writes it, atomically).")
    var output: String?

    @Option(help: "Write metrics as JSON lines to this file (rank 0): one line per progress report, per evaluation, and a final line. A fresh run starts the file anew; a resumed run keeps the lines up to its checkpoint.")
    var metrics: String?

    @Option(help: "Write a Chrome trace of every rank's steps (data, compute, wait, allreduce, update, evaluate, checkpoint) to this file (rank 0; open in Perfetto or chrome://tracing), and print which rank is slowest.")
    var timeline: String?

    @Option(name: .customLong("eval-every"), help: "Evaluate on the test set every N epochs (and at the end); 0: only at the end.")
    var evalEvery: Int = 1

    @Option(name: .customLong("log-every"), help: "Print progress every N steps (default: about 10 lines per run).")
    var logEvery: Int?

    @Option(name: .customLong("collective-timeout"),
            help: ArgumentHelp("Seconds the ranks wait for each other at the start of a step and inside its gradient allreduce; on expiry the job ends with a message naming the step and the ranks that did not answer. 0 waits forever.",
                               discussion: "Only the training steps are watched: start-up, data loading and checkpoint writes are not, so the default can stay short."))
    var collectiveTimeout: Double = 60

    func validate() throws {
        if let l = logEvery, l <= 0 { throw ValidationError("--log-every must be at least 1 (got \(l))") }
        if let o = output, o.isEmpty { throw ValidationError("--output must name a file") }
        if let m = metrics, m.isEmpty { throw ValidationError("--metrics must name a file") }
        if let t = timeline, t.isEmpty { throw ValidationError("--timeline must name a file") }
        if training.balance && compress != .none { throw ValidationError("--balance sums gradients in its own fixed order: it cannot be combined with --compress") }
        if training.balance && data.partition == .features { throw ValidationError("--balance moves rows: it needs --partition rows") }
        if autotune && allreduce != .auto { throw ValidationError("--autotune needs --allreduce auto") }
        if let c = tuneCache, c.isEmpty { throw ValidationError("--tune-cache must name a file") }
        guard collectiveTimeout >= 0 && collectiveTimeout.isFinite else {
            throw ValidationError("--collective-timeout must be a non-negative number of seconds (got \(collectiveTimeout))")
        }
        if errorFeedback && compress == .none { throw ValidationError("--error-feedback needs --compress fp16 or bf16") }
        guard evalEvery >= 0 else { throw ValidationError("--eval-every must not be negative (got \(evalEvery))") }
        if data.partition == .features, let conflict = featurePartitionConflicts() { throw ValidationError(conflict) }
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

    /// Seconds the start-up (MPI_Init, data loading, configuration agreement, resume) may take before a rank
    /// that stopped answering there is presumed: five collective timeouts (0: no limit).
    var startupTimeout: Double { collectiveTimeout * 5 }

    /// Runs the job on this rank; returns the process exit status.
    func train() -> Int32 {
        // Before MPI_Init, so a stop signal during the start-up is kept for the first step's agreement
        // (exit 75), not taken by the default action.
        Preemption.install()
        // MPI_Init waits for every rank and has no form that can be polled: a timer ends this process if it
        // does not return (mpirun then ends the others).
        let initialising = Backstop(seconds: startupTimeout,
                                    message: "dml-train: error: MPI start-up did not finish within \(Int(startupTimeout)) s (5 × --collective-timeout): a rank stopped answering")
        let comm: MPICommunicator
        do { comm = try MPICommunicator.initializeWorld() } catch {
            FileHandle.standardError.write("dml-train: error: cannot start MPI: \(error)\n")
            return FailureKind.unavailable.exitStatus
        }
        initialising.disarm()
        Preemption.install()
        defer {
            // MPI_Finalize cannot be polled either: the ranks have met in a polled barrier just before, and a
            // timer covers the rest.
            let finalizing = Backstop(seconds: collectiveTimeout + 10, message: "dml-train: error: MPI_Finalize did not return within \(Int(collectiveTimeout + 10)) s")
            MPICommunicator.finalize()
            finalizing.disarm()
        }
        do {
            try run(comm)
            return 0
        } catch {
            // The message once, and the error's exit status (or MPI_Abort for what one rank alone saw).
            return JobExit.report(error, comm: comm, program: "dml-train")
        }
    }

    func run(_ comm: MPICommunicator) throws {
        // Every collective of the job runs under a deadline (see CollectiveDeadline): the start-up's is
        // five collective timeouts (it reads the data); phases narrow it as they go.
        comm.deadlines.interruption = Preemption.diedWhileWaiting
        comm.deadlines.current = startupTimeout > 0 ? CollectiveDeadline(seconds: startupTimeout,
            phase: "the start-up (data loading, configuration agreement, checkpoint directory, resume; 5 × --collective-timeout)") : nil
        // Checks that can fail come first, agreed on by all ranks, so nothing is trained in vain.
        let faults = try comm.agreeing { try FaultPlan.fromEnvironment() }
        try comm.agreeing {
            guard comm.rank == 0 else { return }
            let job = configuration
            let inputs = [("--data", job.data.path), ("--labels", job.data.labels), ("--test-data", job.data.testPath),
                          ("--test-labels", job.data.testLabels)].compactMap { f, p in p.map { (flag: f, path: $0) } }
            let outputs = [("--output", job.outputs.output), ("--metrics", job.outputs.metrics), ("--timeline", job.outputs.timeline),
                           ("--tune-cache", job.reduction.autotune ? job.reduction.tuneCache : nil)].compactMap { f, p in p.map { (flag: f, path: $0) } }
            try OutputPaths.checkDistinct(inputs: inputs, outputs: outputs)
            for path in [output, timeline].compactMap({ $0 }) { try AtomicFile.checkWritable(path) }
        }
        faults.hangDuringStartupIfPlanned(rank: comm.rank)
        if data.partition == .features { return try runFeaturePartitioned(comm) }
        let seed = training.seed
        var data = self.data
        if training.lrCandidates != nil && data.validationFraction == 0 {
            data.validationFraction = 0.2  // the search needs held-out rows to score on
        }
        let loaded = try data.load(comm: comm, seed: seed)
        let (train, test, dataDescription) = (loaded.train, loaded.test, loaded.description)
        let model = try comm.agreeing {
            try modelOptions.make(features: train.features, classes: train.classes, weightDecay: training.modelWeightDecay)
        }

        let batch: Int? = { if case let .rows(n) = training.batchSize { return Swift.min(n, train.globalRows) }; return nil }()
        let stepsPerEpoch = batch.map { (train.globalRows + $0 - 1) / $0 } ?? 1
        let totalSteps = training.steps ?? training.epochs * stepsPerEpoch
        if allreduce == .hier { try comm.agreeing { _ = try HierarchicalAllreduce.fakeNodesFromEnvironment() } }
        let exact = try makeAllreduce(comm, gradientBytes: (model.layout.count + 2) * MemoryLayout<Float>.size)
        // One compressor per trainer (a fresh error-feedback residual), all over the one exact algorithm.
        func algorithm() -> AllreduceAlgorithm {
            guard let format = compress.format else { return exact }
            return CompressedAllreduce(comm: comm, format: format, exact: exact, exactTail: 2, errorFeedback: errorFeedback)
        }
        func makeTrainer(lr: Float) -> Trainer {
            let config = TrainingConfig(steps: totalSteps, batchSize: batch, learningRate: lr, seed: seed,
                                        logEvery: logEvery ?? Swift.max(1, totalSteps / 10),
                                        optimizer: training.optimizerConfig, schedule: training.schedule(totalSteps: totalSteps, base: lr))
            var withTimeout = config
            withTimeout.collectiveTimeout = collectiveTimeout
            withTimeout.overlap = training.overlap
            withTimeout.balance = training.balance
            return Trainer(comm: comm, model: model, train: train, config: withTimeout, allreduce: algorithm(), faults: faults)
        }
        func makeSession(_ trainer: Trainer) -> TrainingSession {
            let job = configuration
            var options = SessionOptions(identity: job.identity, configuration: job.agreementText + "\nfaults=\(faults.faults)")
            options.checkpointDirectory = checkpoints.checkpointDir
            // Default: once per epoch; a full-batch epoch is one step, so there about ten per run.
            options.checkpointEvery = checkpoints.checkpointEvery ?? (batch == nil ? Swift.max(1, totalSteps / 10) : stepsPerEpoch)
            options.keepCheckpoints = checkpoints.keepCheckpoints
            options.resume = checkpoints.resume
            options.overwriteCheckpoints = checkpoints.overwriteCheckpoints
            options.verifyEvery = checkpoints.verifyEvery
            options.evalEvery = evalEvery
            options.metricsPath = metrics
            return TrainingSession(trainer: trainer, test: test, validation: loaded.validation, options: options,
                                   log: { print($0) },
                                   warn: { FileHandle.standardError.write("dml-train: warning: \($0)\n") })
        }

        var trainer = makeTrainer(lr: training.lr)
        var session = makeSession(trainer)
        // Before anything is trained: every rank must run the same configuration.
        try session.checkConfigurationAgreement()
        if comm.rank == 0 {
            print("dml-train: \(model.kind) on \(dataDescription), \(comm.size) rank\(comm.size == 1 ? "" : "s"), "
                  + "global batch \(batch.map(String.init) ?? "full"), \(totalSteps) steps, \(training.optimizerConfig.description), "
                  + "lr \(training.lrCandidates == nil ? trainer.config.schedule.description : "search"), allreduce \(allreduce.rawValue)\(compress == .none ? "" : ", gradients \(compress.rawValue)\(errorFeedback ? " with error feedback" : "")")")
        }
        if let candidates = training.lrCandidates {
            let best = try searchLearningRate(candidates, validation: loaded.validation, comm: comm, makeTrainer: makeTrainer)
            trainer = makeTrainer(lr: best)
            session = makeSession(trainer)
            if comm.rank == 0 { print("training the final model with lr \(trainer.config.schedule.description)") }
        }
        let recorder = timeline == nil ? nil : Timeline()
        if let recorder {
            try recorder.synchronize(comm)
            trainer.timeline = recorder
        }
        let result = try session.run(progress: ProgressPrinter())

        if comm.rank == 0 {
            printDone(steps: totalSteps, seconds: result.seconds, train: result.train, validation: result.validation, test: result.test,
                      resumedAt: result.resumedFrom?.step)
        }
        try writeOutput(parameters: trainer.parameters, model: model, step: trainer.step, extra: loaded.metadata, comm: comm)
        if let recorder, let path = timeline {
            let summary = try recorder.balanceSummary(comm: comm, steps: Swift.max(1, trainer.step - (result.resumedFrom?.step ?? 0)))
            try comm.watched("gathering the timeline", seconds: collectiveTimeout + 10) { try recorder.write(to: path, comm: comm) }
            if comm.rank == 0 { print(summary); print("wrote \(path)") }
        }
        try endTogether(comm)
    }

    /// The last collective of a job: a barrier under the deadline, so that MPI_Finalize (which cannot be
    /// polled) starts only when every rank is there.
    func endTogether(_ comm: Communicator) throws {
        try comm.watched("the end of the job", seconds: collectiveTimeout) { try comm.barrier() }
    }
}

extension DMLTrain {
    /// `--lr-search`: trains every candidate, prints a table of validation scores (rank 0) and returns the
    /// best rate. Collective. Fails, on every rank alike, when every candidate diverged.
    func searchLearningRate(_ candidates: [Float], validation: Dataset?, comm: Communicator,
                            makeTrainer: (Float) throws -> Trainer) throws -> Float {
        guard let validation else { throw TrainingFailure("--lr-search needs a validation split (--validation-fraction)", kind: .usage) }
        let rank0 = comm.rank == 0
        if rank0 {
            print("learning-rate search: \(candidates.count) candidates, scored on \(validation.globalRows) validation rows")
            print("  lr          validation loss  accuracy   time")
        }
        let outcomes = try LearningRateSearch(candidates: candidates).run(validation: validation, makeTrainer: makeTrainer) { o in
            guard rank0 else { return }
            let lr = String(describing: o.learningRate).padding(toLength: 10, withPad: " ", startingAt: 0)
            if let v = o.validation {
                let accuracy = v.accuracy.map { String(format: "%7.2f%%", 100 * $0) } ?? "       -"
                print("  \(lr)  " + String(format: "%15.6f", v.loss) + "  " + accuracy + String(format: "  %6.2f s", o.seconds))
            } else {
                // The guard's message names the step; its advice is for a single run, not for a search.
                let reason = (o.failure ?? "non-finite").split(separator: ":").first.map(String.init) ?? ""
                print("  \(lr)  diverged (\(reason))")
            }
        }
        guard let best = LearningRateSearch.best(of: outcomes) else {
            throw TrainingFailure("--lr-search: every candidate diverged (\(candidates.map { String(describing: $0) }.joined(separator: ", "))); try smaller rates")
        }
        if rank0 { print("best lr \(best.learningRate) (validation loss \(String(format: "%.6f", best.validation!.loss)))") }
        return best.learningRate
    }
}

extension DMLTrain {
    /// The gradient allreduce. For `auto`: the policy tuned now (`--autotune`, then cached), or the one cached
    /// for this layout, or the built-in default; rank 0 decides and broadcasts it, so every rank agrees.
    func makeAllreduce(_ comm: Communicator, gradientBytes: Int) throws -> AllreduceAlgorithm {
        guard allreduce == .auto else { return allreduce.make(for: comm) }
        let cache = AllreduceTuneCache(path: tuneCache ?? AllreduceTuneCache.defaultPath)
        let key = try AllreduceTuneCache.key(comm: comm, maxBytes: gradientBytes)
        if autotune {
            let started = Date()
            let (measurements, segment) = try AllreduceTuner().measure(comm: comm, maxBytes: gradientBytes)
            let policy = AllreduceTuner.policy(from: measurements, ringSegment: segment)
            if comm.rank == 0 {
                var stored = "cached in \(cache.path)"
                do { try cache.store(policy, for: key) } catch { stored = "not cached: \(error)" }
                let seconds = String(format: "%.2f", Date().timeIntervalSince(started))
                print("allreduce auto: tuned in \(seconds) s on \(key): \(policy.description) (ring segment \(ByteCount.format(segment))); \(stored)")
                for size in AllreduceTuner.sizes(upTo: gradientBytes) {
                    let row = measurements.filter { $0.bytes == size && !$0.algorithm.contains("/") }
                        .map { "\($0.algorithm) \(String(format: "%.1f", $0.seconds * 1e6)) µs" }.joined(separator: ", ")
                    print("  \(ByteCount.format(size)): \(row)")
                }
            }
            return AutoAllreduce(comm: comm, policy: policy)
        }
        var text = ""
        var note = ""
        if comm.rank == 0, let (policy, when) = cache.policy(for: key) {
            text = policy.description + "|" + (policy.ringSegmentBytes.map(String.init) ?? "")
            note = "tuned \(when), from \(cache.path)"
        }
        try comm.broadcast(&text, root: 0)
        guard !text.isEmpty else { return AllreduceKind.auto.make(for: comm) }
        let parts = text.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
        var policy = try AutoAllreducePolicy(parsing: parts[0])
        policy.ringSegmentBytes = Int(parts[1])
        if comm.rank == 0 { print("allreduce auto: \(policy.description) (\(note))") }
        return AutoAllreduce(comm: comm, policy: policy)
    }
}

extension DMLTrain {
    /// Rank 0's last line: steps, time, and the evaluations (accuracy for classifiers, MSE for regression).
    func printDone(steps: Int, seconds: Double, train: Evaluation, validation: Evaluation?, test: Evaluation?, resumedAt: Int? = nil) {
        func describe(_ e: Evaluation) -> String {
            e.accuracy.map { String(format: "loss %.4f accuracy %.2f%%", e.loss, 100 * $0) } ?? String(format: "MSE %.4f", e.loss)
        }
        let these = resumedAt.map { " (\(steps - $0) in this run, resumed at step \($0))" } ?? ""
        var line = "done: \(steps) steps\(these) in " + String(format: "%.2f s; train ", seconds) + describe(train)
        if let v = validation { line += "; validation " + describe(v) }
        if let t = test { line += "; test " + describe(t) }
        print(line)
    }

    /// `--output`: rank 0 writes the whole model's parameters (laid out by `model.layout`) as safetensors,
    /// atomically, with the metadata that prediction needs. Collective (a failed write is an error on all).
    func writeOutput(parameters: [Float], model: Model, step: Int, extra: [String: String], comm: Communicator) throws {
        guard let path = output else { return }
        // The others wait while rank 0 writes: the deadline allows for the write at 50 MB/s.
        try comm.watched("writing \(path)", seconds: collectiveTimeout + Double(4 * parameters.count) / 50e6) {
        try comm.agreeing {
            guard comm.rank == 0 else { return }
            let metadata = ["format": "dml", "model": model.kind, "features": String(model.inputs),
                            "classes": String(model.outputs), "step": String(step), "seed": String(training.seed),
                            "ranks": String(comm.size)].merging(extra) { mine, _ in mine }
            let tensors = parameters.withUnsafeBufferPointer { w in
                model.layout.views.map { v in
                    Safetensors.Tensor(name: v.name, shape: v.shape, floats: UnsafeBufferPointer(rebasing: w[v.range]))
                }
            }
            try AtomicFile.write(Safetensors.encode(tensors, metadata: metadata), to: path)
        }
        }
        if comm.rank == 0 { print("wrote \(path)") }
    }
}

extension AllreduceKind: ExpressibleByArgument {}


/// `--compress`: the gradient's wire format.
enum Compression: String, CaseIterable, ExpressibleByArgument {
    case none, fp16, bf16
    var format: WireFormat? { self == .none ? nil : WireFormat(rawValue: rawValue) }
}

extension DMLTrain {
    /// What the command line asked for, as the library's plain values.
    var configuration: JobConfiguration {
        var c = JobConfiguration()
        c.model.kind = modelOptions.model
        c.model.hidden = modelOptions.hiddenWidths ?? []
        c.model.activation = modelOptions.activation
        c.data.path = data.data
        c.data.labels = data.labels
        c.data.testPath = data.testData
        c.data.testLabels = data.testLabels
        c.data.format = data.format
        c.data.task = data.task
        c.data.labelColumn = data.labelColumn
        c.data.header = data.header
        c.data.delimiter = data.delimiter
        c.data.features = data.features
        c.data.standardize = data.standardize
        c.data.validationFraction = data.validationFraction
        c.data.partition = data.partition
        c.data.syntheticRows = data.syntheticRows
        c.data.syntheticTestRows = data.syntheticTestRows
        c.data.syntheticFeatures = data.syntheticFeatures
        c.data.syntheticClasses = data.syntheticClasses
        c.optimization.epochs = training.epochs
        c.optimization.steps = training.steps
        if case let .rows(n) = training.batchSize { c.optimization.batchSize = n } else { c.optimization.batchSize = nil }
        c.optimization.lr = training.lr
        c.optimization.lrSearch = training.lrCandidates
        c.optimization.seed = training.seed
        c.optimization.optimizer = training.optimizer
        c.optimization.momentum = training.momentum
        c.optimization.nesterov = training.nesterov
        c.optimization.beta1 = training.beta1
        c.optimization.beta2 = training.beta2
        c.optimization.adamEpsilon = training.adamEpsilon
        c.optimization.weightDecay = training.weightDecay
        c.optimization.schedule = training.lrSchedule
        c.optimization.lrStepEvery = training.lrStepEvery
        c.optimization.lrGamma = training.lrGamma
        c.optimization.lrMin = training.lrMin
        c.optimization.warmup = training.warmup
        c.reduction.allreduce = allreduce
        c.reduction.autotune = autotune
        c.reduction.tuneCache = tuneCache
        c.reduction.compress = compress.format
        c.reduction.errorFeedback = errorFeedback
        c.reduction.overlap = training.overlap
        c.reduction.balance = training.balance
        c.outputs.checkpointDir = checkpoints.checkpointDir
        c.outputs.checkpointEvery = checkpoints.checkpointEvery
        c.outputs.keepCheckpoints = checkpoints.keepCheckpoints
        c.outputs.resume = checkpoints.resume
        c.outputs.overwriteCheckpoints = checkpoints.overwriteCheckpoints
        c.outputs.verifyEvery = checkpoints.verifyEvery
        c.outputs.evalEvery = evalEvery
        c.outputs.metrics = metrics
        c.outputs.output = output
        c.outputs.timeline = timeline
        c.outputs.logEvery = logEvery
        c.outputs.collectiveTimeout = collectiveTimeout
        return c
    }
}

extension FileHandle {
    func write(_ string: String) { write(string.data(using: .utf8)!) }
}
