import DMLKernels
import Foundation

/// What `LinearRegression` and `LogisticRegression` share: one output `z = w·x + b` over `inputs` features,
/// layout `weight` [1 × features] and `bias` [1], an optional L2 weight decay on `weight`, and the same
/// passes — the margins by one gemv (or CSR product), the gradient by one transposed gemv of the per-row
/// deltas plus their sum for the bias, evaluation block by block. The models differ only in the per-row loss,
/// the deltas they derive from the margins and what counts as correct, which they pass in. Cost of a gradient:
/// 4·rows·features flops (2 for the margins, 2 for the transposed product); X is read twice.
struct OneOutputLinear {
    let inputs: Int
    let layout: ParameterLayout
    let weightDecay: Float
    private let margins = Scratch()
    private let sparse = SparseRows()

    init(features: Int, weightDecay: Float) {
        precondition(features > 0 && weightDecay >= 0)
        inputs = features
        self.weightDecay = weightDecay
        layout = ParameterLayout([("layers.0.weight", [1, features]), ("layers.0.bias", [1])])
    }

    /// `z = X·w + b` for a block of rows (dense: one gemv; CSR: one sparse product), training and evaluation.
    func margins(_ parameters: UnsafePointer<Float>, _ x: RowBlock, _ z: UnsafeMutablePointer<Float>) {
        x.scores(weights: parameters, outputs: 1, into: z)
        let b = parameters[inputs]
        for i in 0..<x.rows { z[i] += b }
    }

    /// Adds the batch's gradient into `gradient` and returns its loss (penalty included): `lossAndDeltas`
    /// gets the margins of the batch's rows and turns them in place into the per-row deltas ∂ℓ/∂z, returning
    /// the rows' loss sum; then `∂w += Xᵀ·δ`, `∂b += Σ δ` and the weight decay.
    func accumulateGradient(parameters: UnsafePointer<Float>, batch: Batch, into gradient: UnsafeMutablePointer<Float>,
                            lossAndDeltas: (UnsafeMutablePointer<Float>, Int) -> Double) -> Double {
        let n = batch.rows
        guard n > 0 else { return 0 }
        let z = margins.get(n)
        margins(parameters, batch.block, z)
        let loss = lossAndDeltas(z, n)
        batch.block.accumulateTransposed(deltas: z, outputs: 1, into: gradient, sparse: sparse)
        gradient[inputs] += Vector.sum(z, n)
        return loss + WeightDecay.apply(weightDecay, views: [layout.views[0]], parameters: parameters,
                                        gradient: gradient, rows: n)
    }

    /// Predictions of a block: dense rows one dot product per row (`rowDots`, so a row's value does not
    /// depend on where it lies in the block), CSR rows one sparse dot per row; then `link` in place.
    func predict(parameters: UnsafePointer<Float>, block: RowBlock, into out: UnsafeMutablePointer<Float>,
                 link: (UnsafeMutablePointer<Float>, Int) -> Void) {
        switch block.storage {
        case let .dense(x): rowDots(parameters, x, rows: block.rows, features: inputs, into: out)
        case .sparse: margins(parameters, block, out)
        }
        link(out, block.rows)
    }

    /// Evaluation sums, block by block: `row(z, y)` gives a row's loss and whether it counts as correct.
    func evaluate(parameters: UnsafePointer<Float>, batch: Batch,
                  row: (Float, Float) -> (loss: Double, correct: Bool)) -> EvaluationSums {
        var sums = EvaluationSums(loss: 0, correct: 0)
        forEachBlock(batch.rows) { first, count in
            let z = margins.get(count)
            margins(parameters, batch.block.rows(first, count), z)
            for i in 0..<count {
                let r = row(z[i], batch.y[first + i])
                sums.loss += r.loss
                if r.correct { sums.correct += 1 }
            }
        }
        return sums
    }
}

/// Least-squares linear regression: `ŷ = w·x + b`, loss `½(ŷ − y)²` per row.
///
/// On a batch (`OneOutputLinear`): `ŷ = X·w + b`, `r = ŷ − y`, `∂w += Xᵀ·r`, `∂b += Σ r`. Cost 4·rows·features
/// flops. `evaluate` returns `Σ (ŷ − y)²` as its loss, so the trainer's mean is the mean squared error (MSE).
/// Initialised to zero (the loss is convex). Optional L2 weight decay on `weight` (see `WeightDecay`).
public final class LinearRegression: Model {
    public let kind = "linear"
    public let isClassifier = false
    public let outputs = 1
    private let core: OneOutputLinear
    public var inputs: Int { core.inputs }
    public var layout: ParameterLayout { core.layout }
    public var weightDecay: Float { core.weightDecay }
    public var acceptsSparseRows: Bool { true }

    public init(features: Int, weightDecay: Float = 0) {
        core = OneOutputLinear(features: features, weightDecay: weightDecay)
    }

    public func initialize(_ parameters: UnsafeMutableBufferPointer<Float>, seed: UInt64) {
        parameters.initialize(repeating: 0)
    }

    public func accumulateGradient(parameters: UnsafePointer<Float>, batch: Batch,
                                   into gradient: UnsafeMutablePointer<Float>) -> Double {
        core.accumulateGradient(parameters: parameters, batch: batch, into: gradient) { r, n in
            var loss = 0.0
            for i in 0..<n {
                r[i] -= batch.y[i]
                loss += 0.5 * Double(r[i]) * Double(r[i])
            }
            return loss
        }
    }

    /// Writes `ŷ` (one value per row), each row's value a function of that row alone.
    public func predict(parameters: UnsafePointer<Float>, x: UnsafePointer<Float>, rows: Int,
                        into predictions: UnsafeMutablePointer<Float>) {
        rowDots(parameters, x, rows: rows, features: inputs, into: predictions)
    }

    /// Dense rows as `predict`; CSR rows one sparse dot per row (`SparseRows.forward`), also row-independent.
    public func predict(parameters: UnsafePointer<Float>, block: RowBlock, into predictions: UnsafeMutablePointer<Float>) {
        core.predict(parameters: parameters, block: block, into: predictions) { _, _ in }
    }

    /// Loss: `Σ (ŷ − y)²` (the trainer divides by the row count: MSE); `correct` is 0.
    public func evaluate(parameters: UnsafePointer<Float>, batch: Batch) -> EvaluationSums {
        core.evaluate(parameters: parameters, batch: batch) { z, y in
            let e = Double(z) - Double(y)
            return (e * e, false)
        }
    }
}

/// Binary logistic regression: `p = σ(w·x + b)` = P(label 1), loss the binary cross-entropy
/// `−y·log p − (1 − y)·log(1 − p)`, computed from the logit z as `max(z, 0) − y·z + log(1 + e^{−|z|})` so it
/// never overflows. Labels must be 0 or 1.
///
/// Gradient per row (`OneOutputLinear`): `(p − y)·x`; on a batch one gemv for the logits and one transposed
/// gemv for `∂w`. Cost 4·rows·features flops. Initialised to zero. Optional L2 weight decay on `weight` (see
/// `WeightDecay`). A row counts as correct when `(p ≥ ½) == (y == 1)`.
public final class LogisticRegression: Model {
    public let kind = "logistic"
    public let isClassifier = true
    /// One output: the probability of class 1.
    public let outputs = 1
    private let core: OneOutputLinear
    public var inputs: Int { core.inputs }
    public var layout: ParameterLayout { core.layout }
    public var weightDecay: Float { core.weightDecay }
    public var acceptsSparseRows: Bool { true }

    public init(features: Int, weightDecay: Float = 0) {
        core = OneOutputLinear(features: features, weightDecay: weightDecay)
    }

    public func initialize(_ parameters: UnsafeMutableBufferPointer<Float>, seed: UInt64) {
        parameters.initialize(repeating: 0)
    }

    /// Binary cross-entropy of logit z against label y, in Double.
    @inline(__always)
    static func crossEntropy(_ z: Float, _ y: Float) -> Double {
        let zd = Double(z)
        return Swift.max(zd, 0) - Double(y) * zd + Foundation.log1p(Foundation.exp(-abs(zd)))
    }

    public func accumulateGradient(parameters: UnsafePointer<Float>, batch: Batch,
                                   into gradient: UnsafeMutablePointer<Float>) -> Double {
        core.accumulateGradient(parameters: parameters, batch: batch, into: gradient) { z, n in
            var loss = 0.0
            for i in 0..<n { loss += Self.crossEntropy(z[i], batch.y[i]) }
            Activation.sigmoid(z, n)
            for i in 0..<n { z[i] -= batch.y[i] }
            return loss
        }
    }

    /// Writes P(label 1) per row: the logits one dot product per row (`rowDots`), then the element-wise
    /// sigmoid, so a row's probability does not depend on where it lies in the block.
    public func predict(parameters: UnsafePointer<Float>, x: UnsafePointer<Float>, rows: Int,
                        into predictions: UnsafeMutablePointer<Float>) {
        rowDots(parameters, x, rows: rows, features: inputs, into: predictions)
        Activation.sigmoid(predictions, rows)
    }

    /// Dense rows as `predict`; CSR rows one sparse dot per row, then the sigmoid (row-independent).
    public func predict(parameters: UnsafePointer<Float>, block: RowBlock, into predictions: UnsafeMutablePointer<Float>) {
        core.predict(parameters: parameters, block: block, into: predictions) { p, n in Activation.sigmoid(p, n) }
    }

    public func evaluate(parameters: UnsafePointer<Float>, batch: Batch) -> EvaluationSums {
        core.evaluate(parameters: parameters, batch: batch) { z, y in
            (Self.crossEntropy(z, y), (z >= 0) == (y == 1))
        }
    }
}

/// `out[r] = x_r·w + b` for each row r of `x` (`rows × features`), with `w = parameters[0..<features]` and `b` the
/// next value: one `Vector.dot` per row, so each row's value is a function of that row alone. `Gemm.gemv`, which
/// training uses, computes rows in groups of four with one summation order and the rows left over with
/// another, so there a row's bits depend on its position in the batch. Cost 2·rows·features flops, X read once.
func rowDots(_ parameters: UnsafePointer<Float>, _ x: UnsafePointer<Float>, rows: Int, features: Int,
             into out: UnsafeMutablePointer<Float>) {
    let b = parameters[features]
    for r in 0..<rows { out[r] = Vector.dot(x + r * features, parameters, features) + b }
}
