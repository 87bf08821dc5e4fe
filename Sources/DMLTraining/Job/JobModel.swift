import DMLModels
import DMLStatus

extension JobConfiguration.Model {
    /// Builds the model for data with `features` inputs and `classes` classes (0: a regression target);
    /// `weightDecay` is the L2 term the model adds to its loss (weights only, never biases). A model that
    /// does not fit the data is a usage error (64) naming the flag to change.
    /// `synthetic`: the data is the built-in task (the hints then name its flags).
    public func make(features: Int, classes: Int, weightDecay: Float, synthetic: Bool = true) throws -> Model {
        switch kind {
        case .linear:
            guard classes == 0 else {
                throw JobError(.usage, "--model linear needs a regression target, but the data has \(classes) classes (use --task regression"
                               + (synthetic ? ")" : " if the labels are values, or --model softmax)"))
            }
            return LinearRegression(features: features, weightDecay: weightDecay)
        case .logistic:
            guard classes == 2 else {
                let hint = classes == 0 ? "--task classification" : synthetic ? "--synthetic-classes 2, or --model softmax" : "--model softmax"
                throw JobError(.usage, "--model logistic needs 2 classes, but the data has \(classes == 0 ? "a regression target" : "\(classes) classes") (use \(hint))")
            }
            return LogisticRegression(features: features, weightDecay: weightDecay)
        case .softmax, .mlp:
            guard classes >= 2 else {
                throw JobError(.usage, "--model \(kind.rawValue) needs class labels, but the data has a regression target (--task classification)")
            }
            if kind == .softmax { return SoftmaxRegression(features: features, classes: classes, weightDecay: weightDecay) }
            return MLP(features: features, hidden: hidden, classes: classes, activation: activation, weightDecay: weightDecay)
        }
    }
}

extension JobConfiguration.Optimization {
    /// The optimizer's hyperparameters (`adamw`'s decay is decoupled: the optimizer applies it).
    public var optimizerConfig: OptimizerConfig {
        OptimizerConfig(kind: optimizer, momentum: momentum, nesterov: nesterov, beta1: beta1, beta2: beta2,
                        epsilon: adamEpsilon, weightDecay: optimizer == .adamw ? weightDecay : 0, adagradEpsilon: adagradEpsilon)
    }

    /// A full-batch method's settings (`--optimizer lbfgs|newton`, `--lbfgs-memory`, `--tol`); nil for the
    /// per-step optimizers.
    public var fullBatchSettings: FullBatchSettings? {
        FullBatchMethodKind(optimizer).map { FullBatchSettings(kind: $0, memory: lbfgsMemory, tolerance: tol) }
    }

    /// Parameter-sized copies the optimizer keeps (a full-batch method's with its memory).
    public var stateCopies: Int { FullBatchMethodKind(optimizer).map { $0.stateCopies(memory: lbfgsMemory) } ?? optimizer.stateCopies }

    /// The L2 term the model charges in its loss: every optimizer but adamw, whose decay is decoupled.
    public var modelWeightDecay: Float { optimizer == .adamw ? 0 : weightDecay }

    /// The schedule of a run of `totalSteps` steps, with base rate `base` (default: `lr`).
    public func schedule(totalSteps: Int, base: Float? = nil) -> LearningRateSchedule {
        let decay: LearningRateSchedule.Decay
        switch self.schedule {
        case .constant: decay = .constant
        case .step: decay = .step(every: lrStepEvery, gamma: lrGamma)
        case .cosine: decay = .cosine(minimum: lrMin)
        }
        return LearningRateSchedule(base: Double(base ?? lr), decay: decay, warmup: warmup, total: totalSteps)
    }
}
