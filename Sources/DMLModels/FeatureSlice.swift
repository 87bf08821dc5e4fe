import DMLKernels
import Foundation

/// One rank's part of a linear, logistic or softmax model when the *features* are partitioned
/// (`--partition features`): the rank holds the columns `columns` of every row and the matching columns of
/// the weight matrix; the bias is replicated.
///
/// The scores of a row are a sum over feature slices, `z = Σ_r W_r·x_r + b`, so a step is:
/// ```
/// each rank:   Z_r = X_r·W_rᵀ                 (rows × k partial scores, one gemm)
/// allreduce:   Z = Σ_r Z_r                     (rows·k floats: independent of the number of features)
/// every rank:  Z += b; loss(Z, y); D = ∂loss/∂Z (identical on every rank: same Z, same y)
/// each rank:   ∂W_r = Dᵀ·X_r, ∂b = Σ_rows D    (one gemm; no gradient is exchanged)
/// ```
/// The losses and their derivatives are those of `LinearRegression` (½(z − y)², evaluation reports the
/// squared error), `LogisticRegression` (binary cross-entropy from the logit) and `SoftmaxRegression`, so
/// the result equals row-partitioned training up to float rounding (sums are taken in another order).
///
/// Local parameter layout: the weight slice `[k × columns.count]`, row-major, then the bias `[k]`.
public final class FeatureSlice {
    public enum Kind: String, Sendable, CaseIterable {
        case linear, logistic, softmax
    }

    public let kind: Kind
    /// Features of the whole model.
    public let features: Int
    /// The columns this rank holds.
    public let columns: Range<Int>
    /// Scores per row: 1 for linear and logistic, the number of classes for softmax.
    public let outputs: Int
    public let weightDecay: Float
    public var isClassifier: Bool { kind != .linear }
    /// Local parameters: weight slice then bias.
    public var localCount: Int { outputs * columns.count + outputs }
    /// The local parameters as named tensors: `weight` [outputs × columns.count], then `bias` [outputs].
    public var layout: ParameterLayout { ParameterLayout([("layers.0.weight", [outputs, columns.count]), ("layers.0.bias", [outputs])]) }
    private var width: Int { columns.count }

    public init(kind: Kind, features: Int, columns: Range<Int>, classes: Int, weightDecay: Float = 0) {
        precondition(columns.lowerBound >= 0 && columns.upperBound <= features && weightDecay >= 0)
        precondition(kind == .softmax ? classes > 1 : true)
        self.kind = kind
        self.features = features
        self.columns = columns
        outputs = kind == .softmax ? classes : 1
        self.weightDecay = weightDecay
    }

    /// `z[rows × outputs] = X_r·W_rᵀ` for `rows` rows of this rank's columns (`x` is rows × columns.count).
    public func partialScores(parameters: UnsafePointer<Float>, x: UnsafePointer<Float>, rows: Int,
                              into z: UnsafeMutablePointer<Float>) {
        let k = outputs
        guard width > 0 else { z.initialize(repeating: 0, count: rows * k); return }
        Gemm.gemm(transA: false, transB: true, m: rows, n: k, k: width, alpha: 1, a: x, lda: width,
                  b: parameters, ldb: width, beta: 0, c: z, ldc: k)
    }

    /// Adds the bias to the summed scores, returns the loss summed over the rows (the training loss:
    /// ½(z − y)² for linear), counts correct predictions, and replaces `z` by `∂loss/∂z` per row.
    public func lossAndDeltas(scores z: UnsafeMutablePointer<Float>, parameters: UnsafePointer<Float>,
                              labels y: UnsafePointer<Float>, rows: Int, correct: inout Double) -> Double {
        let k = outputs
        addBias(z, parameters + k * width, rows: rows, cols: k)
        var loss = 0.0
        switch kind {
        case .linear:
            for i in 0..<rows {
                z[i] -= y[i]
                loss += 0.5 * Double(z[i]) * Double(z[i])
            }
        case .logistic:
            for i in 0..<rows {
                loss += LogisticRegression.crossEntropy(z[i], y[i])
                if (z[i] >= 0) == (y[i] == 1) { correct += 1 }
            }
            Activation.sigmoid(z, rows)
            for i in 0..<rows { z[i] -= y[i] }
        case .softmax:
            loss = softmaxCrossEntropy(z, labels: y, rows: rows, classes: k, correct: &correct)
            for r in 0..<rows { z[r * k + Int(y[r])] -= 1 }
        }
        return loss
    }

    /// Evaluation: adds the bias to the summed scores and returns the loss summed over the rows as the
    /// full models' `evaluate` reports it (squared error for linear), counting correct predictions.
    public func evaluationLoss(scores z: UnsafeMutablePointer<Float>, parameters: UnsafePointer<Float>,
                               labels y: UnsafePointer<Float>, rows: Int, correct: inout Double) -> Double {
        if kind == .linear {
            addBias(z, parameters + width, rows: rows, cols: 1)
            var loss = 0.0
            for i in 0..<rows { let e = Double(z[i]) - Double(y[i]); loss += e * e }
            return loss
        }
        return lossAndDeltas(scores: z, parameters: parameters, labels: y, rows: rows, correct: &correct)
    }

    /// `∂W_r += Dᵀ·X_r`, `∂b += Σ_rows D`, and the weight decay of this rank's slice (charged per row, as
    /// the full models do). Returns this slice's share of the decay loss, `rows·(λ/2)·‖W_r‖²`.
    public func accumulateGradient(deltas d: UnsafePointer<Float>, x: UnsafePointer<Float>, rows: Int,
                                   parameters: UnsafePointer<Float>, into gradient: UnsafeMutablePointer<Float>) -> Double {
        let k = outputs
        if width > 0 && rows > 0 {
            Gemm.gemm(transA: true, transB: false, m: k, n: width, k: rows, alpha: 1, a: d, lda: k, b: x, ldb: width,
                      beta: 1, c: gradient, ldc: width)
        }
        addColumnSums(d, rows: rows, cols: k, into: gradient + k * width)
        let weights = TensorView(name: "weight", shape: [k, width], offset: 0)
        return WeightDecay.apply(weightDecay, views: [weights], parameters: parameters, gradient: gradient, rows: rows)
    }
}
