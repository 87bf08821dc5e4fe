import ArgumentParser
import DMLModels

/// What to train: `--model` and its shape.
struct ModelOptions: ParsableArguments {
    enum Kind: String, ExpressibleByArgument, CaseIterable {
        case softmax
    }

    @Option(help: "Model to train.")
    var model: Kind = .softmax

    /// Builds the model for data with `features` inputs and `classes` classes.
    func make(features: Int, classes: Int) throws -> Model {
        switch model {
        case .softmax:
            guard classes >= 2 else { throw ValidationError("--model softmax needs class labels (--task classification)") }
            return SoftmaxRegression(features: features, classes: classes)
        }
    }
}
