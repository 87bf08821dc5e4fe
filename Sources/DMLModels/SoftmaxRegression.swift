import DMLKernels
import Foundation

/// Multinomial logistic (softmax) regression: `p = softmax(W·x + b)`, loss `−log p[y]`.
///
/// Layout: `weight` [classes × features], `bias` [classes]. On a batch X (rows × features):
/// `Z = X·Wᵀ + b` (one gemm), `D = softmax(Z) − onehot(y)`, `∂W += Dᵀ·X` (one gemm), `∂b += Σ_rows D`.
/// Cost: 4·rows·classes·features flops. Optional L2 weight decay on `weight` (see `WeightDecay`).
public final class SoftmaxRegression: LeafGradientModel {
    public let kind = "softmax"
    public let isClassifier = true
    public let inputs: Int
    public let outputs: Int
    public let layout: ParameterLayout
    public let weightDecay: Float
    private let logits = Scratch()
    private let sparse = SparseRows()
    public var acceptsSparseRows: Bool { true }

    public init(features: Int, classes: Int, weightDecay: Float = 0) {
        precondition(features > 0 && classes > 1 && weightDecay >= 0)
        inputs = features
        outputs = classes
        self.weightDecay = weightDecay
        layout = ParameterLayout([("layers.0.weight", [classes, features]), ("layers.0.bias", [classes])])
    }

    /// Zero: the loss is convex, and zero is the usual start (it is what the peers' benchmarks use).
    public func initialize(_ parameters: UnsafeMutableBufferPointer<Float>, seed: UInt64) {
        parameters.initialize(repeating: 0)
    }

    /// `Z = X·Wᵀ + b` for `rows` rows into `z` (rows × classes).
    private func forward(_ parameters: UnsafePointer<Float>, _ x: RowBlock, _ z: UnsafeMutablePointer<Float>) {
        let d = inputs, k = outputs
        x.scores(weights: parameters, outputs: k, into: z)
        addBias(z, parameters + k * d, rows: x.rows, cols: k)
    }

    public func accumulateGradient(parameters: UnsafePointer<Float>, batch: Batch,
                                   into gradient: UnsafeMutablePointer<Float>) -> Double {
        gradients(parameters, batch, leaves: [GradientLeaf(rows: 0..<batch.rows, gradient: gradient)], write: false)[0]
    }

    /// `LeafGradientModel`: the logits and deltas of all the leaves' rows in one pass, `∂W`, `∂b` and the loss per leaf.
    public func writeLeafGradients(parameters: UnsafePointer<Float>, batch: Batch, leaves: [GradientLeaf]) -> [Double] {
        gradients(parameters, batch, leaves: leaves, write: true)
    }

    /// `Z`, the loss and `D` over the batch; each leaf's `∂W`, `∂b`, weight decay and loss over its rows alone,
    /// added into its buffer (`write`: written, the buffer never read).
    private func gradients(_ parameters: UnsafePointer<Float>, _ batch: Batch, leaves: [GradientLeaf], write: Bool) -> [Double] {
        let d = inputs, k = outputs, n = batch.rows
        guard n > 0 else {
            if write { for leaf in leaves { leaf.gradient.update(repeating: 0, count: layout.count) } }
            return leaves.map { _ in 0 }
        }
        let z = logits.get(n * k)
        forward(parameters, batch.block, z)
        var correct = 0.0
        let losses = leaves.map { leaf in
            softmaxCrossEntropy(z + leaf.rows.lowerBound * k, labels: batch.y + leaf.rows.lowerBound, rows: leaf.rows.count,
                                classes: k, correct: &correct)
        }
        for r in 0..<n { z[r * k + Int(batch.y[r])] -= 1 }
        return zip(leaves, losses).map { leaf, loss in
            let r = leaf.rows, part = r == 0..<n ? batch.block : batch.block.rows(r.lowerBound, r.count), dr = z + r.lowerBound * k
            part.accumulateTransposed(deltas: dr, outputs: k, into: leaf.gradient, sparse: sparse, overwrite: write)
            addColumnSums(dr, rows: r.count, cols: k, into: leaf.gradient + k * d, beta: write ? 0 : 1)
            return loss + WeightDecay.apply(weightDecay, views: [layout.views[0]], parameters: parameters,
                                            gradient: leaf.gradient, rows: r.count)
        }
    }

    public func predict(parameters: UnsafePointer<Float>, x: UnsafePointer<Float>, rows: Int,
                        into predictions: UnsafeMutablePointer<Float>) {
        predict(parameters: parameters, block: RowBlock(dense: x, rows: rows, features: inputs), into: predictions)
    }

    public func predict(parameters: UnsafePointer<Float>, block: RowBlock, into predictions: UnsafeMutablePointer<Float>) {
        forEachBlock(block.rows) { first, count in
            let out = predictions + first * outputs
            forward(parameters, block.rows(first, count), out)
            Softmax.rows(out, rows: count, cols: outputs, ld: outputs)
        }
    }

    public func evaluate(parameters: UnsafePointer<Float>, batch: Batch) -> EvaluationSums {
        var sums = EvaluationSums(loss: 0, correct: 0)
        forEachBlock(batch.rows) { first, count in
            let z = logits.get(count * outputs)
            forward(parameters, batch.block.rows(first, count), z)
            sums.loss += softmaxCrossEntropy(z, labels: batch.y + first, rows: count, classes: outputs, correct: &sums.correct)
        }
        return sums
    }
}
