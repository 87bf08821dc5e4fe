/// A mini-batch of rows: `x` is `rows × features`, row-major; `y` holds one target per row (the class index
/// as a Float for classifiers, the value for regression).
public struct Batch {
    public let x: UnsafePointer<Float>
    public let y: UnsafePointer<Float>
    public let rows: Int
    public let features: Int

    public init(x: UnsafePointer<Float>, y: UnsafePointer<Float>, rows: Int, features: Int) {
        self.x = x
        self.y = y
        self.rows = rows
        self.features = features
    }
}

/// A trainable model: a parameter layout, its initialisation, and loss + gradient over a batch.
///
/// Gradients and losses are **sums** over the batch's rows, not means: the trainer adds them up across
/// ranks and divides by the global number of rows, which keeps uneven shards and short batches exact.
/// Models are classes because they own scratch space that is reused from step to step.
public protocol Model: AnyObject {
    /// The name the `--model` flag uses (also stored in checkpoints and outputs).
    var kind: String { get }
    var layout: ParameterLayout { get }
    /// Number of features an input row has.
    var inputs: Int { get }
    /// Number of outputs (classes for a classifier).
    var outputs: Int { get }

    /// Deterministic initial parameters from `seed`.
    func initialize(_ parameters: UnsafeMutableBufferPointer<Float>, seed: UInt64)

    /// Adds `Σ_rows ∇loss(row)` into `gradient` (which the caller zeroes) and returns `Σ_rows loss(row)`.
    func accumulateGradient(parameters: UnsafePointer<Float>, batch: Batch,
                            into gradient: UnsafeMutablePointer<Float>) -> Double

    /// True for classifiers (accuracy is reported), false for regression.
    var isClassifier: Bool { get }

    /// Loss summed over the batch's rows, and for a classifier the number of rows predicted correctly.
    /// Used for evaluation; the caller adds the sums up across ranks.
    func evaluate(parameters: UnsafePointer<Float>, batch: Batch) -> EvaluationSums

    /// Writes `outputs` values per row (class probabilities for a classifier) into `predictions`.
    ///
    /// Invariant: a row's outputs are a function of that row and the parameters alone — the same bits
    /// whatever rows come before or after it in `x` and whatever `rows` is — so predictions do not depend on
    /// how the rows are cut into blocks or shared out over ranks (`dml-predict` on any np writes the same
    /// bytes; `RowIndependentPredictionTests`). Cost: one forward pass (the model's flops per row).
    func predict(parameters: UnsafePointer<Float>, x: UnsafePointer<Float>, rows: Int,
                 into predictions: UnsafeMutablePointer<Float>)
}

/// Per-batch evaluation sums (see `Model.evaluate`).
public struct EvaluationSums: Sendable {
    public var loss: Double
    public var correct: Double
    public init(loss: Double, correct: Double) {
        self.loss = loss
        self.correct = correct
    }
}

/// A model whose backward pass finishes the gradient in stages (an MLP: one layer at a time, the top layer
/// first), so the trainer can start reducing a stage's gradient while the next is still being computed.
public protocol StagedGradientModel: Model {
    /// Parameter ranges in the order the backward pass completes them: contiguous, disjoint, and together
    /// the whole layout.
    var gradientStages: [Range<Int>] { get }

    /// `accumulateGradient`, calling `stageDone(i)` as soon as `gradientStages[i]` of `gradient` holds its
    /// final value (weight decay included); the model does not touch that range afterwards.
    func accumulateGradient(parameters: UnsafePointer<Float>, batch: Batch, into gradient: UnsafeMutablePointer<Float>,
                            stageDone: (Int) -> Void) -> Double
}
