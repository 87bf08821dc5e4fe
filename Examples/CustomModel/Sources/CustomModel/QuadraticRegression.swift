import DMLKernels
import DMLModels

/// A model DML does not ship, written against DML's public API: least squares with a quadratic in each feature,
/// `ŷ = Σ_j (a_j·x_j² + b_j·x_j) + c`, loss `½(ŷ − y)²` per row.
///
/// Layout: `square` [1 × d] (the a_j), `linear` [1 × d] (the b_j), `bias` [1]: one flat buffer, as every DML
/// model. On a batch of n rows it builds `Q = [x² | x]` (n × 2d) in its scratch, then `ŷ = Q·[a | b] + c` (one
/// gemv), `r = ŷ − y`, `∂[a | b] += Qᵀ·r` (one transposed gemv: a sum over rows in pairwise-combined blocks) and
/// `∂c += Σ r`. Cost 8·n·d flops; the scratch grows to the largest batch, then is reused.
final class QuadraticRegression: Model {
    let kind = "quadratic"
    let isClassifier = false
    let inputs: Int
    let outputs = 1
    let layout: ParameterLayout
    private var features: UnsafeMutablePointer<Float>
    private var residuals: UnsafeMutablePointer<Float>
    private var capacity = 0

    init(features d: Int) {
        precondition(d > 0)
        inputs = d
        layout = ParameterLayout([("square", [1, d]), ("linear", [1, d]), ("bias", [1])])
        features = .allocate(capacity: 1)
        residuals = .allocate(capacity: 1)
    }

    deinit {
        features.deallocate()
        residuals.deallocate()
    }

    /// The loss is convex: start from zero.
    func initialize(_ parameters: UnsafeMutableBufferPointer<Float>, seed: UInt64) {
        parameters.initialize(repeating: 0)
    }

    /// `[x² | x]` of `rows` rows into the scratch (grown if needed).
    private func expand(_ x: UnsafePointer<Float>, rows: Int) -> UnsafeMutablePointer<Float> {
        if rows > capacity {
            features.deallocate()
            residuals.deallocate()
            capacity = rows
            features = .allocate(capacity: rows * 2 * inputs)
            residuals = .allocate(capacity: rows)
        }
        let d = inputs
        for i in 0..<rows {
            let row = x + i * d, q = features + i * 2 * d
            for j in 0..<d {
                q[j] = row[j] * row[j]
                q[d + j] = row[j]
            }
        }
        return features
    }

    func predict(parameters: UnsafePointer<Float>, x: UnsafePointer<Float>, rows: Int,
                 into predictions: UnsafeMutablePointer<Float>) {
        let q = expand(x, rows: rows)
        Gemm.gemv(m: rows, n: 2 * inputs, alpha: 1, a: q, lda: 2 * inputs, x: parameters, beta: 0, y: predictions)
        let c = parameters[2 * inputs]
        for i in 0..<rows { predictions[i] += c }
    }

    func accumulateGradient(parameters: UnsafePointer<Float>, batch: Batch,
                            into gradient: UnsafeMutablePointer<Float>) -> Double {
        let n = batch.rows
        guard n > 0 else { return 0 }
        _ = expand(batch.x, rows: n)
        let r = residuals
        Gemm.gemv(m: n, n: 2 * inputs, alpha: 1, a: features, lda: 2 * inputs, x: parameters, beta: 0, y: r)
        var loss = 0.0
        let c = parameters[2 * inputs]
        for i in 0..<n {
            r[i] += c - batch.y[i]
            loss += 0.5 * Double(r[i]) * Double(r[i])
        }
        Gemm.gemvT(m: n, n: 2 * inputs, alpha: 1, a: features, lda: 2 * inputs, x: r, beta: 1, y: gradient)
        gradient[2 * inputs] += Vector.sum(r, n)
        return loss
    }

    /// Loss: `Σ (ŷ − y)²`, so the trainer's mean is the mean squared error.
    func evaluate(parameters: UnsafePointer<Float>, batch: Batch) -> EvaluationSums {
        let p = UnsafeMutablePointer<Float>.allocate(capacity: Swift.max(batch.rows, 1))
        defer { p.deallocate() }
        predict(parameters: parameters, x: batch.x, rows: batch.rows, into: p)
        var sums = EvaluationSums(loss: 0, correct: 0)
        for i in 0..<batch.rows {
            let e = Double(p[i]) - Double(batch.y[i])
            sums.loss += e * e
        }
        return sums
    }
}
