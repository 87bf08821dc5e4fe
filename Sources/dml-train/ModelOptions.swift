import ArgumentParser
import DMLModels
import DMLTraining
import DMLStatus

/// What to train: `--model` and its shape.
struct ModelOptions: ParsableArguments {
    @Option(help: "Model to train: linear (least squares; needs a regression target), logistic (2 classes), softmax, mlp.")
    var model: ModelKind = .softmax

    @Option(help: "MLP hidden layer widths, comma-separated (e.g. 256,128).")
    var hidden: String = "256"

    @Option(help: "MLP activation between layers: relu or tanh.")
    var activation: MLP.ActivationKind = .relu

    var hiddenWidths: [Int]? { MLP.hiddenWidths(parsing: hidden) }

    func validate() throws {
        guard hiddenWidths != nil else {
            throw ValidationError("--hidden must be positive layer widths separated by commas, e.g. 256,128 (got '\(hidden)')")
        }
    }

    /// Builds the model for data with `features` inputs and `classes` classes (0: a regression target);
    /// `weightDecay` is the L2 term the model adds to its loss (weights only, never biases).
    func make(features: Int, classes: Int, weightDecay: Float) throws -> Model {
        switch model {
        case .linear:
            guard classes == 0 else {
                throw JobError(.usage, "--model linear needs a regression target, but the data has \(classes) classes (use --task regression)")
            }
            return LinearRegression(features: features, weightDecay: weightDecay)
        case .logistic:
            guard classes == 2 else {
                throw JobError(.usage, "--model logistic needs 2 classes (labels 0/1), but the data has \(classes == 0 ? "a regression target" : "\(classes) classes") (use --synthetic-classes 2)")
            }
            return LogisticRegression(features: features, weightDecay: weightDecay)
        case .softmax, .mlp:
            guard classes >= 2 else {
                throw JobError(.usage, "--model \(model.rawValue) needs class labels, but the data has a regression target (--task classification)")
            }
            if model == .softmax { return SoftmaxRegression(features: features, classes: classes, weightDecay: weightDecay) }
            return MLP(features: features, hidden: hiddenWidths!, classes: classes, activation: activation, weightDecay: weightDecay)
        }
    }
}

extension MLP.ActivationKind: ExpressibleByArgument {}
extension ModelKind: ExpressibleByArgument {}
