import ArgumentParser
import DMLComm
import DMLCommandLine
import DMLData
import DMLKernels
import DMLModels
import DMLStatus
import DMLTraining
import DMLCommandLine
import Foundation

/// `dml-train`: data-parallel training under `mpirun`. Every rank runs this same program.
///
/// Only flags and printing: the flags are grouped by concern (`ModelOptions`, `DataOptions`, …, one file
/// each) and turned into a `JobConfiguration`; the library's `TrainingJob` does the work.
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
            """,
        version: DMLVersion.string)

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

    @Option(help: "Write the final model to this safetensors file (rank 0 writes it, atomically), and the run's effective configuration beside it as NAME.config.toml (repeat the run with --config NAME.config.toml).")
    var output: String?

    @Option(help: "Read settings from this TOML or JSON file; its keys are the long flag names (lr = 0.05, hidden = [256, 128], standardize = true, header = false). The command line wins over the file.")
    var config: String?

    @Option(help: "Write metrics as JSON lines to this file (rank 0): one line per progress report, per evaluation, and a final line. A fresh run starts the file anew; a resumed run keeps the lines up to its checkpoint.")
    var metrics: String?

    @Option(help: "Write a Chrome trace of every rank's steps (data, compute, wait, allreduce, update, evaluate, checkpoint) to this file (rank 0; open in Perfetto or chrome://tracing), and print which rank is slowest.")
    var timeline: String?

    @Option(name: .customLong("eval-every"), help: "Evaluate on the test set every N epochs (and at the end); 0: only at the end.")
    var evalEvery: Int = 1

    @Option(name: .customLong("log-every"), help: "Print progress every N steps (default: about 10 lines per run).")
    var logEvery: Int?

    @Option(name: .customLong("collective-timeout"),
            help: ArgumentHelp("Seconds any collective of the job may wait without progress; on expiry the ranks hold a roll call and the job ends with a message naming the phase and the ranks that did not answer. 0 waits forever.",
                               discussion: "The start-up (data loading) gets five times this; a checkpoint or output write gets this plus the time to write it at 50 MB/s; an evaluation this plus twice the rank's own evaluation time."))
    var collectiveTimeout: Double = 60

    @Option(help: ArgumentHelp("Kernel threads per rank (1-\(KernelThreads.maximum)): the dense gemms of each step are split among them, with the same bits for every count.",
                               discussion: "Default: the cores the launcher gave the rank (its affinity mask; mpirun binds a rank to one core at np <= 2: give it more with --bind-to none or --map-by slot:PE=N), at most its share of the node's CPUs."))
    var threads: Int?

    func validate() throws {
        if let l = logEvery, l <= 0 { throw ValidationError("--log-every must be at least 1 (got \(l))") }
        if let o = output, o.isEmpty { throw ValidationError("--output must name a file") }
        if let m = metrics, m.isEmpty { throw ValidationError("--metrics must name a file") }
        if let t = timeline, t.isEmpty { throw ValidationError("--timeline must name a file") }
        if let c = tuneCache, c.isEmpty { throw ValidationError("--tune-cache must name a file") }
        guard collectiveTimeout >= 0 && collectiveTimeout.isFinite else {
            throw ValidationError("--collective-timeout must be a non-negative number of seconds (got \(collectiveTimeout))")
        }
        guard evalEvery >= 0 else { throw ValidationError("--eval-every must not be negative (got \(evalEvery))") }
        // Combinations of options: the library's rules, so every combination is honoured or refused here.
        if let conflict = configuration.conflict() { throw ValidationError(conflict) }
    }

    static func main() {
        let (command, arguments) = parsedOnEveryRankWithArguments()
        var job = command.configuration
        // The flags written on the command line: one set to its default still means nothing to some optimizers. (A
        // --config file's settings count by their values: an effective configuration lists every setting.)
        job.givenFlags = CommandSettings(of: DMLTrain.self)
            .given(in: CommandLineValues.joiningNegativeNumbers(Array(CommandLine.arguments.dropFirst()))).keys.sorted()
        if job.outputs.output != nil {
            let ranks = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] ?? ProcessInfo.processInfo.environment["SLURM_NTASKS"]
            job.outputs.configurationRecord = ConfigFile.effective(arguments: arguments, settings: CommandSettings(of: DMLTrain.self), header: [
                "dml-train \(DMLVersion.string): the effective configuration of the run that wrote \(job.outputs.output!)"
                    + (ranks.map { " on \($0) ranks" } ?? ""),
                "Repeat it with: mpirun -np N dml-train --config THIS-FILE (flags given after --config override it).",
            ])
        }
        Foundation.exit(command.train(job))
    }

    /// Runs the job on this rank; returns the process exit status. The stop signals are recorded from before
    /// `MPI_Init` (dml-train's handlers are in place before main, too), so a signal during start-up is kept for
    /// the first step's agreement (exit 75), not taken by the default action.
    func train(_ configuration: JobConfiguration) -> Int32 {
        RankProcess.run(program: "dml-train", collectiveTimeout: collectiveTimeout, stopSignals: true) { comm in
            let faults = try comm.agreeing { try FaultPlan.fromEnvironment() }
            _ = try TrainingJob(configuration: configuration, comm: comm, faults: faults).run()
        }
    }
}

extension AllreduceKind: ExpressibleByArgument {}

/// `--compress`: the gradient's wire format.
enum Compression: String, CaseIterable, ExpressibleByArgument {
    case none, fp16, bf16
    var format: WireFormat? { self == .none ? nil : WireFormat(rawValue: rawValue) }
}

extension FileHandle {
    func write(_ string: String) { write(string.data(using: .utf8)!) }
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
        c.data.h5Features = data.hdf5.features
        c.data.h5Labels = data.hdf5.labels
        c.data.h5TestFeatures = data.h5TestFeatures
        c.data.h5TestLabels = data.h5TestLabels
        c.data.format = data.format
        c.data.task = data.task
        c.data.labelColumn = data.labelColumn
        c.data.header = data.csv.header
        c.data.delimiter = data.csv.delimiter
        c.data.features = data.features
        c.data.standardize = data.standardize
        c.data.sparse = data.sparse
        c.data.hashBits = data.hashBits
        c.data.missing = data.missing
        c.data.dropColumns = data.droppedColumns
        c.data.categorical = data.categoricalColumns
        c.data.categoricalEncoding = data.categoricalEncoding
        c.data.cacheDir = data.cacheDir
        c.data.maxMemory = data.maxMemory.flatMap { ByteCount.parse($0) }
        c.data.validationFraction = data.validationFraction
        c.data.partition = data.partition
        c.data.syntheticRows = data.syntheticRows
        c.data.syntheticTestRows = data.syntheticTestRows
        c.data.syntheticFeatures = data.syntheticFeatures
        c.data.syntheticClasses = data.syntheticClasses
        c.optimization.epochs = training.epochs
        c.optimization.steps = training.steps
        if case let .rows(n) = training.batchSize { c.optimization.batchSize = n } else { c.optimization.batchSize = nil }
        c.optimization.shuffle = training.shuffle
        c.optimization.lr = training.lr
        c.optimization.lrSearch = training.lrCandidates
        c.optimization.seed = training.seed
        c.optimization.optimizer = training.optimizer
        c.optimization.momentum = training.momentum
        c.optimization.nesterov = training.nesterov
        c.optimization.beta1 = training.beta1
        c.optimization.beta2 = training.beta2
        c.optimization.adamEpsilon = training.adamEpsilon
        c.optimization.adagradEpsilon = training.adagradEpsilon
        c.optimization.weightDecay = training.weightDecay
        c.optimization.schedule = training.lrSchedule
        c.optimization.lrStepEvery = training.lrStepEvery
        c.optimization.lrGamma = training.lrGamma
        c.optimization.lrMin = training.lrMin
        c.optimization.warmup = training.warmup
        c.optimization.initFrom = training.initFrom
        c.optimization.earlyStopping = training.earlyStopping
        c.optimization.lbfgsMemory = training.lbfgsMemory
        c.optimization.tol = training.tol
        c.reduction.allreduce = allreduce
        c.reduction.autotune = autotune
        c.reduction.tuneCache = tuneCache
        c.reduction.compress = compress.format
        c.reduction.errorFeedback = errorFeedback
        c.reduction.overlap = training.overlap
        c.reduction.balance = training.balance
        c.reduction.shardUpdate = training.shardUpdate
        c.reduction.reproducible = training.reproducible
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
        c.threads = threads
        return c
    }
}

