import ArgumentParser
import DMLTraining

/// How the parameters are updated: length of the run, batch, optimizer, learning-rate schedule.
struct TrainingOptions: ParsableArguments {
    @Option(help: "Passes over the training set (ignored when --steps is given).")
    var epochs: Int = 10

    @Option(help: "Global steps to run, instead of --epochs.")
    var steps: Int?

    @Option(name: .customLong("batch-size"),
            help: "Rows per global batch, over all ranks together, or 'full' for every training row each step.")
    var batchSize: BatchSize = .rows(256)

    @Option(help: ArgumentHelp("Mini-batch row order: on visits each epoch's rows in a seeded permutation; off cuts the batches from the rows in file order (as Vowpal Wabbit reads a file), each rank's part used in place.",
                               discussion: "Part of the run's identity: a resume with the other value is refused."))
    var shuffle: ShuffleMode = .on

    @Option(help: "Base learning rate.")
    var lr: Float = 0.2

    @Option(name: .customLong("lr-search"),
            help: ArgumentHelp("Learning-rate grid search: train each rate (e.g. 0.01,0.03,0.1,0.3,1) on the training split, score it on the validation split, then train the final model with the best.",
                               discussion: "Uses --validation-fraction (0.2 when not given)."))
    var lrSearch: String?

    /// The rates of `--lr-search`, parsed (validate() has checked them).
    var lrCandidates: [Float]? { lrSearch.flatMap { LearningRateSearch.parse($0) } }

    @Flag(inversion: .prefixedNo,
          help: "MLP: allreduce each layer's gradient bucket while the backward pass computes the layers below (the same bits either way; pays when each rank has a spare core for the communication thread).")
    var overlap = false

    @Flag(help: "Straggler balancing: at epoch boundaries move blocks of rows from slower ranks to faster ones; gradients are summed in block order, so the parameters have the same bits as without moving (see README).")
    var balance = false

    @Flag(name: .customLong("shard-update"),
          help: "ZeRO-style sharded update: reduce-scatter the gradient with the ring, each rank updates and keeps optimizer state for its 1/p of the parameters, then allgather them (the bits of --allreduce ring; optimizer state per rank divided by the number of ranks).")
    var shardUpdate = false

    @Flag(help: "The same bits for any number of ranks: batches of whole blocks of 64 rows, gradients summed exactly (fixed point), so np 1, 8 and a run resumed on another np end byte-identical (see README).")
    var reproducible = false

    @Option(help: "Seed for the data set, the batch order and the initial parameters.")
    var seed: UInt64 = 1

    @Option(help: ArgumentHelp("Optimizer: \(OptimizerKind.allCases.map(\.rawValue).joined(separator: ", ")).",
                               discussion: "lbfgs and newton are full-batch methods for linear, logistic and softmax (see --tol): one iteration per epoch, no learning rate."))
    var optimizer: OptimizerKind = .sgd

    @Option(name: .customLong("lbfgs-memory"), help: "L-BFGS (optimizer lbfgs): the correction pairs kept.")
    var lbfgsMemory: Int = FullBatchMethodKind.defaultMemory

    @Option(help: "Optimizers lbfgs and newton: stop when the gradient norm of the objective is at most this times its norm at the starting parameters (or at --epochs/--steps iterations).")
    var tol: Double = FullBatchSettings.defaultTolerance

    @Option(help: "Momentum coefficient (--optimizer momentum).")
    var momentum: Float = 0.9

    @Flag(help: "Nesterov momentum (--optimizer momentum).")
    var nesterov = false

    @Option(help: "Adam's first-moment decay (--optimizer adam/adamw).")
    var beta1: Float = 0.9

    @Option(help: "Adam's second-moment decay (--optimizer adam/adamw).")
    var beta2: Float = 0.999

    @Option(name: .customLong("adam-eps"), help: "Adam's epsilon (--optimizer adam/adamw).")
    var adamEpsilon: Float = 1e-8

    @Option(name: .customLong("adagrad-eps"), help: "AdaGrad's epsilon in lr·g/(sqrt(G) + eps) (--optimizer adagrad).")
    var adagradEpsilon: Float = AdagradRule.defaultEpsilon

    @Option(name: .customLong("weight-decay"),
            help: "Weight decay λ on the weights, never the biases: (λ/2)·‖W‖² added to the mean loss for sgd, momentum, adam and adagrad; decoupled (w -= lr·λ·w, weights only) for adamw.")
    var weightDecay: Float = 0

    @Option(name: .customLong("lr-schedule"), help: "Learning-rate schedule after the warm-up: constant, step, cosine.")
    var lrSchedule: ScheduleKind = .constant

    @Option(name: .customLong("lr-step-every"), help: "Step schedule: multiply the rate by the gamma every N steps.")
    var lrStepEvery: Int = 100

    @Option(name: .customLong("lr-gamma"), help: "Step schedule: the factor (gamma).")
    var lrGamma: Double = 0.1

    @Option(name: .customLong("lr-min"), help: "Cosine schedule: the rate at the last step.")
    var lrMin: Double = 0

    @Option(help: "Steps of linear learning-rate warm-up (from lr/N up to lr).")
    var warmup: Int = 0

    @Option(name: .customLong("init"),
            help: ArgumentHelp("Start from this saved model (a dml-train --output file) instead of a fresh initialisation: a warm start or fine-tuning, with new optimizer state, on these flags' data.",
                               discussion: "The model must be the one --model/--hidden/--activation describe and fit the data (features, classes); its standardisation is applied to the data. Not --resume, which continues a run from its checkpoint."))
    var initFrom: String?

    @Option(name: .customLong("early-stopping"),
            help: "Stop when the validation loss (--validation-fraction) has not improved for this many evaluations (--eval-every); the best model is kept as NAME.best.safetensors beside --output NAME.safetensors.")
    var earlyStopping: Int?


    func validate() throws {
        guard epochs > 0 else { throw ValidationError("--epochs must be at least 1 (got \(epochs))") }
        if let s = steps, s <= 0 { throw ValidationError("--steps must be at least 1 (got \(s))") }
        if let text = lrSearch, LearningRateSearch.parse(text) == nil {
            throw ValidationError("--lr-search must be distinct positive rates separated by commas, e.g. 0.01,0.1,1 (got '\(text)')")
        }
        guard lr.isFinite && lr > 0 else { throw ValidationError("--lr must be a positive number (got \(lr))") }
        guard momentum >= 0 && momentum < 1 else { throw ValidationError("--momentum must be in [0, 1) (got \(momentum))") }
        guard beta1 >= 0 && beta1 < 1 else { throw ValidationError("--beta1 must be in [0, 1) (got \(beta1))") }
        guard beta2 >= 0 && beta2 < 1 else { throw ValidationError("--beta2 must be in [0, 1) (got \(beta2))") }
        guard adamEpsilon > 0 else { throw ValidationError("--adam-eps must be positive (got \(adamEpsilon))") }
        guard weightDecay >= 0 && weightDecay.isFinite else { throw ValidationError("--weight-decay must be ≥ 0 (got \(weightDecay))") }
        guard lrStepEvery > 0 else { throw ValidationError("--lr-step-every must be at least 1 (got \(lrStepEvery))") }
        guard lrGamma > 0 && lrGamma.isFinite else { throw ValidationError("--lr-gamma must be positive (got \(lrGamma))") }
        guard lrMin >= 0 && lrMin <= Double(lr) else { throw ValidationError("--lr-min must be in [0, --lr] (got \(lrMin))") }
        guard warmup >= 0 else { throw ValidationError("--warmup must not be negative (got \(warmup))") }
        if let i = initFrom, i.isEmpty { throw ValidationError("--init must name a model file") }
        guard lbfgsMemory >= 1 else { throw ValidationError("--lbfgs-memory must be at least 1 (got \(lbfgsMemory))") }
        guard tol >= 0 && tol.isFinite else { throw ValidationError("--tol must be a non-negative number (got \(tol))") }
        if nesterov && optimizer != .momentum { throw ValidationError("--nesterov needs --optimizer momentum") }
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

extension OptimizerKind: ExpressibleByArgument {}
extension ScheduleKind: ExpressibleByArgument {}
extension ShuffleMode: ExpressibleByArgument {}
