import DMLKernels
import Foundation

/// Least-squares linear regression: `ŷ = w·x + b`, loss `½(ŷ − y)²` per row.
///
/// Layout: `weight` [1 × features], `bias` [1]. On a batch: `ŷ = X·w + b` (gemv), `r = ŷ − y`,
/// `∂w += Xᵀ·r` (transposed gemv), `∂b += Σ r`. Cost 4·rows·features flops. `evaluate` returns
/// `Σ (ŷ − y)²` as its loss, so the trainer's mean is the mean squared error (MSE). Initialised to zero
/// (the loss is convex). Optional L2 weight decay on `weight` (see `WeightDecay`).
public final class LinearRegression: Model {
    public let kind = "linear"
    public let isClassifier = false
    public let inputs: Int
    public let outputs = 1
    public let layout: ParameterLayout
    public let weightDecay: Float
    private let residuals = Scratch()
    private let sparse = SparseRows()
    public var acceptsSparseRows: Bool { true }

    public init(features: Int, weightDecay: Float = 0) {
        precondition(features > 0 && weightDecay >= 0)
        inputs = features
        self.weightDecay = weightDecay
        layout = ParameterLayout([("layers.0.weight", [1, features]), ("layers.0.bias", [1])])
    }

    public func initialize(_ parameters: UnsafeMutableBufferPointer<Float>, seed: UInt64) {
        parameters.initialize(repeating: 0)
    }

    public func accumulateGradient(parameters: UnsafePointer<Float>, batch: Batch,
                                   into gradient: UnsafeMutablePointer<Float>) -> Double {
        let d = inputs, n = batch.rows
        guard n > 0 else { return 0 }
        let r = residuals.get(n)
        values(parameters, batch.block, r)
        var loss = 0.0
        for i in 0..<n {
            r[i] -= batch.y[i]
            loss += 0.5 * Double(r[i]) * Double(r[i])
        }
        batch.block.accumulateTransposed(deltas: r, outputs: 1, into: gradient, sparse: sparse)
        gradient[d] += Vector.sum(r, n)
        return loss + WeightDecay.apply(weightDecay, views: [layout.views[0]], parameters: parameters,
                                        gradient: gradient, rows: n)
    }

    /// `ŷ = X·w + b` for a block of rows (dense: one gemv, training and evaluation).
    private func values(_ parameters: UnsafePointer<Float>, _ x: RowBlock, _ out: UnsafeMutablePointer<Float>) {
        x.scores(weights: parameters, outputs: 1, into: out)
        let b = parameters[inputs]
        for i in 0..<x.rows { out[i] += b }
    }

    /// Writes `ŷ` (one value per row): one dot product per row (`rowDots`), so a row's value does not depend
    /// on where it lies in the block.
    public func predict(parameters: UnsafePointer<Float>, x: UnsafePointer<Float>, rows: Int,
                        into predictions: UnsafeMutablePointer<Float>) {
        rowDots(parameters, x, rows: rows, features: inputs, into: predictions)
    }

    /// Dense rows as `predict`; CSR rows one sparse dot per row (`SparseRows.forward`), also row-independent.
    public func predict(parameters: UnsafePointer<Float>, block: RowBlock, into predictions: UnsafeMutablePointer<Float>) {
        switch block.storage {
        case let .dense(x): predict(parameters: parameters, x: x, rows: block.rows, into: predictions)
        case .sparse: values(parameters, block, predictions)
        }
    }

    /// Loss: `Σ (ŷ − y)²` (the trainer divides by the row count: MSE); `correct` is 0.
    public func evaluate(parameters: UnsafePointer<Float>, batch: Batch) -> EvaluationSums {
        var sums = EvaluationSums(loss: 0, correct: 0)
        forEachBlock(batch.rows) { first, count in
            let p = residuals.get(count)
            values(parameters, batch.block.rows(first, count), p)
            for i in 0..<count {
                let e = Double(p[i]) - Double(batch.y[first + i])
                sums.loss += e * e
            }
        }
        return sums
    }
}

/// Binary logistic regression: `p = σ(w·x + b)` = P(label 1), loss the binary cross-entropy
/// `−y·log p − (1 − y)·log(1 − p)`, computed from the logit z as `max(z, 0) − y·z + log(1 + e^{−|z|})` so it
/// never overflows. Labels must be 0 or 1.
///
/// Layout: `weight` [1 × features], `bias` [1]. Gradient per row: `(p − y)·x`; on a batch one gemv for the
/// logits and one transposed gemv for `∂w`. Cost 4·rows·features flops. Initialised to zero. Optional L2
/// weight decay on `weight` (see `WeightDecay`). A row counts as correct when `(p ≥ ½) == (y == 1)`.
public final class LogisticRegression: Model {
    public let kind = "logistic"
    public let isClassifier = true
    public let inputs: Int
    /// One output: the probability of class 1.
    public let outputs = 1
    public let layout: ParameterLayout
    public let weightDecay: Float
    private let logits = Scratch()
    private let sparse = SparseRows()
    public var acceptsSparseRows: Bool { true }

    public init(features: Int, weightDecay: Float = 0) {
        precondition(features > 0 && weightDecay >= 0)
        inputs = features
        self.weightDecay = weightDecay
        layout = ParameterLayout([("layers.0.weight", [1, features]), ("layers.0.bias", [1])])
    }

    public func initialize(_ parameters: UnsafeMutableBufferPointer<Float>, seed: UInt64) {
        parameters.initialize(repeating: 0)
    }

    private func computeLogits(_ parameters: UnsafePointer<Float>, _ x: RowBlock, _ z: UnsafeMutablePointer<Float>) {
        x.scores(weights: parameters, outputs: 1, into: z)
        let b = parameters[inputs]
        for i in 0..<x.rows { z[i] += b }
    }

    /// Binary cross-entropy of logit z against label y, in Double.
    @inline(__always)
    static func crossEntropy(_ z: Float, _ y: Float) -> Double {
        let zd = Double(z)
        return Swift.max(zd, 0) - Double(y) * zd + Foundation.log1p(Foundation.exp(-abs(zd)))
    }

    public func accumulateGradient(parameters: UnsafePointer<Float>, batch: Batch,
                                   into gradient: UnsafeMutablePointer<Float>) -> Double {
        let d = inputs, n = batch.rows
        guard n > 0 else { return 0 }
        let z = logits.get(n)
        computeLogits(parameters, batch.block, z)
        var loss = 0.0
        for i in 0..<n { loss += Self.crossEntropy(z[i], batch.y[i]) }
        Activation.sigmoid(z, n)
        for i in 0..<n { z[i] -= batch.y[i] }
        batch.block.accumulateTransposed(deltas: z, outputs: 1, into: gradient, sparse: sparse)
        gradient[d] += Vector.sum(z, n)
        return loss + WeightDecay.apply(weightDecay, views: [layout.views[0]], parameters: parameters,
                                        gradient: gradient, rows: n)
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
        switch block.storage {
        case let .dense(x): predict(parameters: parameters, x: x, rows: block.rows, into: predictions)
        case .sparse:
            computeLogits(parameters, block, predictions)
            Activation.sigmoid(predictions, block.rows)
        }
    }

    public func evaluate(parameters: UnsafePointer<Float>, batch: Batch) -> EvaluationSums {
        var sums = EvaluationSums(loss: 0, correct: 0)
        forEachBlock(batch.rows) { first, count in
            let z = logits.get(count)
            computeLogits(parameters, batch.block.rows(first, count), z)
            for i in 0..<count {
                let y = batch.y[first + i]
                sums.loss += Self.crossEntropy(z[i], y)
                if (z[i] >= 0) == (y == 1) { sums.correct += 1 }
            }
        }
        return sums
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
