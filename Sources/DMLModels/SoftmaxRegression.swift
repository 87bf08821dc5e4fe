import DMLKernels
import Foundation

/// Multinomial logistic (softmax) regression: `p = softmax(W·x + b)`, loss `−log p[y]`.
///
/// Layout: `weight` [classes × features], `bias` [classes]. On a batch X (rows × features):
/// `Z = X·Wᵀ + b` (one gemm), `D = softmax(Z) − onehot(y)`, `∂W += Dᵀ·X` (one gemm), `∂b += Σ_rows D`.
/// Cost: 4·rows·classes·features flops. Optional L2 weight decay on `weight` (see `WeightDecay`).
public final class SoftmaxRegression: Model {
    public let kind = "softmax"
    public let isClassifier = true
    public let inputs: Int
    public let outputs: Int
    public let layout: ParameterLayout
    public let weightDecay: Float
    private let logits = Scratch()

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
    private func forward(_ parameters: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ rows: Int,
                         _ z: UnsafeMutablePointer<Float>) {
        let d = inputs, k = outputs
        Gemm.gemm(transA: false, transB: true, m: rows, n: k, k: d, alpha: 1, a: x, lda: d, b: parameters, ldb: d,
                  beta: 0, c: z, ldc: k)
        addBias(z, parameters + k * d, rows: rows, cols: k)
    }

    public func accumulateGradient(parameters: UnsafePointer<Float>, batch: Batch,
                                   into gradient: UnsafeMutablePointer<Float>) -> Double {
        let d = inputs, k = outputs, n = batch.rows
        guard n > 0 else { return 0 }
        let z = logits.get(n * k)
        forward(parameters, batch.x, n, z)
        var correct = 0.0
        let loss = softmaxCrossEntropy(z, labels: batch.y, rows: n, classes: k, correct: &correct)
        for r in 0..<n { z[r * k + Int(batch.y[r])] -= 1 }
        Gemm.gemm(transA: true, transB: false, m: k, n: d, k: n, alpha: 1, a: z, lda: k, b: batch.x, ldb: d,
                  beta: 1, c: gradient, ldc: d)
        addColumnSums(z, rows: n, cols: k, into: gradient + k * d)
        return loss + WeightDecay.apply(weightDecay, views: [layout.views[0]], parameters: parameters,
                                        gradient: gradient, rows: n)
    }

    public func predict(parameters: UnsafePointer<Float>, x: UnsafePointer<Float>, rows: Int,
                        into predictions: UnsafeMutablePointer<Float>) {
        forEachBlock(rows) { first, count in
            let out = predictions + first * outputs
            forward(parameters, x + first * inputs, count, out)
            Softmax.rows(out, rows: count, cols: outputs, ld: outputs)
        }
    }

    public func evaluate(parameters: UnsafePointer<Float>, batch: Batch) -> EvaluationSums {
        var sums = EvaluationSums(loss: 0, correct: 0)
        forEachBlock(batch.rows) { first, count in
            let z = logits.get(count * outputs)
            forward(parameters, batch.x + first * inputs, count, z)
            sums.loss += softmaxCrossEntropy(z, labels: batch.y + first, rows: count, classes: outputs, correct: &sums.correct)
        }
        return sums
    }
}
