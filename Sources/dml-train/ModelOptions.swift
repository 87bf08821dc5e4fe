import ArgumentParser
import DMLComm
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

    var hiddenWidths: [Int]? { CommaList.positiveIntegers(hidden) }

    func validate() throws {
        guard hiddenWidths != nil else {
            throw ValidationError("--hidden must be positive layer widths separated by commas, e.g. 256,128 (got '\(hidden)')")
        }
    }
}

extension MLP.ActivationKind: ExpressibleByArgument {}
extension ModelKind: ExpressibleByArgument {}
