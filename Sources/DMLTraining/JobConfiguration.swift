import DMLComm
import DMLData
import DMLModels

/// Everything a training job was asked to do, as plain values: what the command line parsed (dml-train
/// fills it in), before any data is read.
///
/// Two things are derived from it by walking its stored fields (`leaves`), so that a field added later is
/// covered without anyone remembering to:
/// - the **identity** a checkpoint records and a resume checks (`identity`): every field that changes the
///   math, that is every field except those listed in `outsideTheMath`, each with its reason;
/// - the **agreement** text all ranks must share before training (`agreementText`): every field.
/// `IdentityTests` walks the fields and fails for one that is neither changed by a mutation it knows nor
/// listed with a reason.
public struct JobConfiguration: Sendable, Equatable {
    public struct Model: Sendable, Equatable {
        public var kind: ModelKind = .softmax
        /// MLP hidden layer widths.
        public var hidden: [Int] = [256]
        public var activation: MLP.ActivationKind = .relu
        public init() {}
    }

    public struct Data: Sendable, Equatable {
        public var path: String?
        public var labels: String?
        public var testPath: String?
        public var testLabels: String?
        /// HDF5: the datasets of `path` (`--h5-features`, `--h5-labels`).
        public var h5Features: String?
        public var h5Labels: String?
        /// HDF5: the datasets of `testPath`; nil: the training data's names (`testSource`).
        public var h5TestFeatures: String?
        public var h5TestLabels: String?
        public var format: DataFormat?
        public var task: LearningTask = .classification
        public var labelColumn: LabelColumn = .index(0)
        public var header: Bool?
        public var delimiter: Delimiter = .auto
        public var features: Int?
        public var standardize = false
        public var validationFraction = 0.0
        public var partition: Partition = .rows
        /// LIBSVM rows as CSR (`--sparse`); `auto` reads them dense with --standardize, --balance or
        /// --partition features, which need dense rows (see `effectiveSparse`).
        public var sparse: SparseMode = .auto
        /// `--hash-bits`: LIBSVM indices hashed into 2^B columns (`FeatureHash`); nil: no hashing.
        public var hashBits: Int?
        /// CSV missing values (`--missing`): refused, 0, or the training rows' column means.
        public var missing: MissingPolicy = .error
        /// CSV columns left out (`--drop-columns`).
        public var dropColumns: [LabelColumn] = []
        /// CSV columns one-hot encoded (`--categorical`).
        public var categorical: [LabelColumn] = []
        /// `--categorical-encoding`: one-hot, or hashed into `--hash-bits` columns.
        public var categoricalEncoding: CategoricalEncoding = .onehot
        /// `--cache-dir`: stream the training rows from a binary shard cache there (`ShardCache`) instead of
        /// holding them in memory; nil: in memory.
        public var cacheDir: String?
        /// `--max-memory`: bytes this rank may use (model, optimizer state, one batch); checked before training.
        /// Needs `cacheDir` (the rows are streamed); nil: the node's available memory.
        public var maxMemory: Int?
        public var syntheticRows = 16384
        public var syntheticTestRows = 4096
        public var syntheticFeatures = 784
        public var syntheticClasses = 10
        public init() {}
    }

    public struct Optimization: Sendable, Equatable {
        public var epochs = 10
        public var steps: Int?
        /// Rows per global batch; nil: every training row each step.
        public var batchSize: Int? = 256
        /// `--shuffle`: `on` visits each epoch's rows in a seeded permutation; `off` cuts batches from the
        /// rows in their global (file) order, as Vowpal Wabbit reads a file. Part of the math.
        public var shuffle: ShuffleMode = .on
        public var lr: Float = 0.2
        public var lrSearch: [Float]?
        public var seed: UInt64 = 1
        public var optimizer: OptimizerKind = .sgd
        public var momentum: Float = 0.9
        public var nesterov = false
        public var beta1: Float = 0.9
        public var beta2: Float = 0.999
        public var adamEpsilon: Float = 1e-8
        /// `--adagrad-eps`: AdaGrad's ε (`--optimizer adagrad` only).
        public var adagradEpsilon: Float = AdagradRule.defaultEpsilon
        public var weightDecay: Float = 0
        public var schedule: ScheduleKind = .constant
        public var lrStepEvery = 100
        public var lrGamma = 0.1
        public var lrMin = 0.0
        public var warmup = 0
        /// `--init`: a model file to start from (a warm start: new optimizer state, possibly new data).
        public var initFrom: String?
        /// `--early-stopping`: stop when the validation loss has not improved for this many evaluations.
        public var earlyStopping: Int?
        /// `--lbfgs-memory`: the correction pairs `--optimizer lbfgs` keeps.
        public var lbfgsMemory = FullBatchMethodKind.defaultMemory
        /// `--tol`: a full-batch method stops when ‖∇F‖ ≤ tol·‖∇F(θ₀)‖ (`FullBatchSettings.tolerance`).
        public var tol = FullBatchSettings.defaultTolerance
        public init() {}
    }

    public struct Reduction: Sendable, Equatable {
        public var allreduce: AllreduceKind = .ring
        public var autotune = false
        public var tuneCache: String?
        /// The gradient's wire format; nil: Float32.
        public var compress: WireFormat?
        public var errorFeedback = false
        public var overlap = false
        public var bucketBytes = 1 << 20
        public var balance = false
        /// `--shard-update`: each rank updates, and keeps optimizer state for, its 1/p of the parameters.
        public var shardUpdate = false
        /// `--reproducible`: the same bits for any number of ranks (`ReproducibleReducer`); part of the math.
        public var reproducible = false
        public init() {}
    }

    public struct Outputs: Sendable, Equatable {
        public var checkpointDir: String?
        public var checkpointEvery: Int?
        public var keepCheckpoints = 3
        public var resume = false
        public var overwriteCheckpoints = false
        public var verifyEvery = 50
        public var evalEvery = 1
        public var metrics: String?
        public var output: String?
        public var timeline: String?
        public var logEvery: Int?
        public var collectiveTimeout = 60.0
        /// The run's effective settings as a config file (the executable renders it from its flags), written
        /// beside `--output` as `NAME.config.toml` with the model, so the run can be repeated from it.
        public var configurationRecord: String?
        public init() {}
    }

    public var model = Model()
    public var data = Data()
    public var optimization = Optimization()
    public var reduction = Reduction()
    public var outputs = Outputs()
    /// `--threads`: kernel threads per rank (`KernelThreads`); nil: `KernelThreads.defaultCount`, the cores the
    /// launcher gave the rank.
    public var threads: Int?
    /// The long names of the flags written on the command line, sorted: a flag set to its default value there is
    /// still refused where it means nothing (`conflict`); a `--config` file's settings count by their values (an
    /// effective configuration lists every setting). Empty for a configuration built in code.
    public var givenFlags: [String] = []

    public init() {}

    /// The fields that do not change the parameters a run computes, each with the reason. A resume may change
    /// them freely. Every other field is part of the identity.
    public static let outsideTheMath: [String: String] = [
        "data.path": "the training data is identified by its content (data_checksum and data_rows), not by where it lies",
        "data.labels": "the labels are part of data_checksum",
        "data.testPath": "test data is only evaluated, never trained on",
        "data.testLabels": "test data is only evaluated, never trained on",
        "data.h5Features": "the rows read are identified by data_checksum",
        "data.h5Labels": "the labels are part of data_checksum",
        "data.h5TestFeatures": "test data is only evaluated, never trained on",
        "data.h5TestLabels": "test data is only evaluated, never trained on",
        "data.format": "the rows read are identified by data_checksum",
        "data.header": "the rows read are identified by data_checksum",
        "data.delimiter": "the rows read are identified by data_checksum",
        "data.features": "the feature count is part of the model's shape (model_shape)",
        "data.cacheDir": "streamed rows are the same bits as rows in memory (OutOfCoreIntegrationTests)",
        "data.maxMemory": "a memory bound changes where the rows are held, not their bits",
        "optimization.epochs": "the run's length: a run may be extended; a schedule that depends on it records its horizon in lr_schedule",
        "optimization.steps": "the run's length: a run may be extended; a schedule that depends on it records its horizon in lr_schedule",
        "optimization.initFrom": "the starting model is identified by its content (derived.init, its checksum), not by where it lies",
        "reduction.allreduce": "the algorithm changes only the rounding of the sums, as the number of ranks does (a resume may change both)",
        "reduction.autotune": "chooses among allreduce algorithms, which change only the rounding",
        "reduction.tuneCache": "where the tuning is cached",
        "reduction.overlap": "the same buckets with and without overlap: the same bits (OverlapTests)",
        "reduction.shardUpdate": "the same reduction order and update arithmetic per coordinate as the unsharded ring: the same bits (ShardedUpdateIntegrationTests)",
        "reduction.bucketBytes": "bucket sizes change only the rounding of the sums",
        "outputs.checkpointDir": "where checkpoints are written",
        "outputs.checkpointEvery": "when checkpoints are written",
        "outputs.keepCheckpoints": "how many checkpoints are kept",
        "outputs.resume": "whether to continue",
        "outputs.overwriteCheckpoints": "whether an existing checkpoint directory may be replaced",
        "outputs.verifyEvery": "when replicas are compared",
        "outputs.evalEvery": "when the test set is evaluated",
        "outputs.metrics": "where metrics are written",
        "outputs.output": "where the final model is written",
        "outputs.timeline": "where the trace is written",
        "outputs.logEvery": "when progress is printed",
        "outputs.collectiveTimeout": "how long ranks wait for each other",
        "outputs.configurationRecord": "a record of the settings, which the other fields hold",
        "threads": "every thread count computes the same bits (KernelThreadsTests, ThreadsIntegrationTests)",
        "givenFlags": "which flags were written, not their values (the other fields hold those)",
    ]

    /// Every stored field as (dotted path, canonical text), in declaration order: nested configuration
    /// structs are walked, optionals print their value or `none`, arrays their elements joined by commas.
    public var leaves: [(path: String, value: String)] {
        var out: [(String, String)] = []
        func walk(_ value: Any, _ prefix: String) {
            for child in Mirror(reflecting: value).children {
                guard let label = child.label else { continue }
                let path = prefix.isEmpty ? label : prefix + "." + label
                if Self.isSection(child.value) { walk(child.value, path) } else { out.append((path, Self.text(child.value))) }
            }
        }
        walk(self, "")
        return out
    }

    static func isSection(_ value: Any) -> Bool {
        value is Model || value is Data || value is Optimization || value is Reduction || value is Outputs
    }

    static func text(_ value: Any) -> String {
        let mirror = Mirror(reflecting: value)
        if mirror.displayStyle == .optional {
            guard let wrapped = mirror.children.first?.value else { return "none" }
            return text(wrapped)
        }
        if mirror.displayStyle == .collection { return mirror.children.map { text($0.value) }.joined(separator: ",") }
        if let kind = value as? LabelColumn {
            switch kind {
            case let .index(i): return String(i)
            case .last: return "last"
            case let .name(n): return "name:" + n
            }
        }
        return String(describing: value)
    }

    /// The fields that change the math, as `config.<path>` → value: what a checkpoint records and a resume
    /// compares (with the derived values the session adds: model shape, schedule, data rows and checksum).
    public var identity: [String: String] {
        var out: [String: String] = [:]
        for leaf in leaves where Self.outsideTheMath[leaf.path] == nil { out["config." + leaf.path] = leaf.value }
        return out
    }

    /// Fields the ranks of one job may set differently.
    static let mayDifferBetweenRanks: Set<String> = ["threads", "outputs.configurationRecord"]

    /// Every field but `threads` and the configuration record, one `path=value` line each: all ranks must have
    /// the same text. The kernel threads may differ between ranks (a multi-program launch over nodes of different
    /// sizes): every count gives the same bits; the record only repeats the other fields (and `--threads`).
    /// Whether `--threads` was written may differ too (one rank given T, another left to its cores' default), so
    /// `givenFlags` enters the text without it.
    public var agreementText: String {
        var agreed = self
        agreed.givenFlags.removeAll { $0 == "threads" }
        return agreed.leaves.filter { !Self.mayDifferBetweenRanks.contains($0.path) }.map { "\($0.path)=\($0.value)" }.joined(separator: "\n")
    }
}

/// The models `--model` names.
public enum ModelKind: String, Sendable, CaseIterable {
    case linear, logistic, softmax, mlp
}

/// How the data is split across ranks (`--partition`).
public enum Partition: String, Sendable, CaseIterable {
    /// Each rank a share of the rows, every feature.
    case rows
    /// Each rank every row and a share of the feature columns (linear, logistic, softmax).
    case features
}

/// The order of the rows within an epoch (`--shuffle`).
public enum ShuffleMode: String, Sendable, CaseIterable {
    /// A seeded permutation per epoch (`BatchSampler.row(at:epoch:)`).
    case on
    /// The global row order: batch k is rows k·B ..< (k+1)·B, each rank's part a run of consecutive rows.
    case off
}

/// The learning-rate decay after the warm-up (`--lr-schedule`).
public enum ScheduleKind: String, Sendable, CaseIterable {
    case constant, step, cosine
}
