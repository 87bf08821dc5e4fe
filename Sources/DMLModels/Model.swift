import DMLKernels

/// A mini-batch of rows: the features as a `RowBlock` (dense `rows × features` row-major, or CSR); `y` holds
/// one target per row (the class index as a Float for classifiers, the value for regression).
public struct Batch {
    public let block: RowBlock
    public let y: UnsafePointer<Float>
    public var rows: Int { block.rows }
    public var features: Int { block.features }

    /// A dense batch: `x` is `rows × features`, row-major.
    public init(x: UnsafePointer<Float>, y: UnsafePointer<Float>, rows: Int, features: Int) {
        block = RowBlock(dense: x, rows: rows, features: features)
        self.y = y
    }

    public init(block: RowBlock, y: UnsafePointer<Float>) {
        self.block = block
        self.y = y
    }

    /// The dense features. A model that reads them directly must not be given CSR rows: it leaves
    /// `Model.acceptsSparseRows` false, and the trainer refuses `--sparse on` for it.
    public var x: UnsafePointer<Float> {
        guard case let .dense(p) = block.storage else { preconditionFailure("Batch.x of a CSR batch: use batch.block") }
        return p
    }

    /// For a CSR batch, the sorted union of the feature columns its rows touch (the only columns of a first
    /// layer's weight gradient the batch can make non-zero); nil for a dense batch. Cost O(nnz·log nnz), no
    /// scratch of the feature count's size (`SparseRows.touchedColumns` reuses one instead).
    public func touchedColumns() -> [Int32]? {
        guard case let .sparse(v) = block.storage else { return nil }
        return v.touchedColumns()
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

    /// Whether `accumulateGradient`, `evaluate` and `predict(parameters:block:into:)` take CSR rows (the
    /// built-in models do, through `RowBlock`). Default false: `--sparse on` is refused for such a model.
    var acceptsSparseRows: Bool { get }

    /// `predict` on a `RowBlock`, with the same row-independence invariant. The default densifies CSR rows in
    /// blocks and calls the dense `predict`.
    func predict(parameters: UnsafePointer<Float>, block: RowBlock, into predictions: UnsafeMutablePointer<Float>)
}

extension Model {
    public var acceptsSparseRows: Bool { false }

    public func predict(parameters: UnsafePointer<Float>, block: RowBlock, into predictions: UnsafeMutablePointer<Float>) {
        if case let .dense(x) = block.storage {
            return predict(parameters: parameters, x: x, rows: block.rows, into: predictions)
        }
        let scratch = Scratch()
        forEachBlock(block.rows) { first, count in
            let x = scratch.get(count * block.features)
            block.rows(first, count).densify(into: x)
            predict(parameters: parameters, x: x, rows: count, into: predictions + first * outputs)
        }
    }
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
