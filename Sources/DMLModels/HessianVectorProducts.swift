import DMLKernels
import Foundation

/// A convex model whose objective full-batch second-order methods (L-BFGS, trust-region Newton) can minimise:
/// the data loss and its gradient with the curvature each row contributes, and Hessian-vector products.
///
/// The objective is `F(θ) = (1/n)·Σ_rows loss(row) + (λ/2)·‖W‖²` over the n rows of all ranks together, with
/// `λ = weightDecay` on the weights only (never the biases) — the mean of what `Model.accumulateGradient`
/// returns per row under `WeightDecay`, with the regulariser charged once instead of per row. The data terms
/// are **sums** over a shard's rows (as `Model` gradients are), so the caller adds them up across ranks,
/// divides by n and then adds the regulariser (`addRegularizer`, `addRegularizerCurvature`).
///
/// Every computation goes through the two products of a block of rows, `X·W` and `Xᵀ·G`
/// (`RowBlockProducts.times` / `.transposedTimes`), so another storage of the rows needs only those two.
/// Cost per call on `rows` rows of `d` features and k outputs: `dataLossAndGradient` 4·rows·d·k flops,
/// `dataHessianVector` 4·rows·d·k flops; the curvature kept between them is rows·k floats (`CurvatureWorkspace`).
public protocol TwiceDifferentiable: Model {
    /// λ of the regulariser `(λ/2)·‖W‖²` (weights only).
    var weightDecay: Float { get }

    /// Returns `Σ_rows loss(row)` (data only), adds `Σ_rows ∇loss(row)` into `gradient` (which the caller zeroes),
    /// and records in `workspace` what `dataHessianVector` needs at these parameters (the curvature per row).
    func dataLossAndGradient(parameters: UnsafePointer<Float>, batch: Batch, into gradient: UnsafeMutablePointer<Float>,
                             workspace: CurvatureWorkspace) -> Double

    /// Adds `Σ_rows ∇²loss(row)·v` into `out` (which the caller zeroes), at the parameters of the last
    /// `dataLossAndGradient` call with this `workspace` and `batch`. Exact (no finite differences).
    func dataHessianVector(_ v: UnsafePointer<Float>, batch: Batch, workspace: CurvatureWorkspace,
                           into out: UnsafeMutablePointer<Float>)
}

/// What a `TwiceDifferentiable` model keeps between the gradient at θ and the Hessian-vector products at θ:
/// per row the loss's second derivative (linear, logistic) or the class probabilities (softmax), and scratch.
/// One per (model, shard); not thread-safe.
public final class CurvatureWorkspace {
    let curvature = Scratch()
    let scratch = Scratch()
    /// The CSR products' scratch (`RowBlockProducts.transposedTimes`), kept from one product to the next.
    let sparse = SparseRows()
    public init() {}
}

extension TwiceDifferentiable {
    /// The regulariser at the mean scale: returns `(λ/2)·‖W‖²` (in Double) and adds `λ·W` into `gradient`
    /// (weights only). Cost: 3 flops per weight.
    public func addRegularizer(parameters: UnsafePointer<Float>, gradient: UnsafeMutablePointer<Double>) -> Double {
        guard weightDecay > 0 else { return 0 }
        let lambda = Double(weightDecay)
        var squares = 0.0
        for range in layout.weightRanges {
            for i in range {
                let w = Double(parameters[i])
                squares += w * w
                gradient[i] += lambda * w
            }
        }
        return 0.5 * lambda * squares
    }

    /// The regulariser's curvature: adds `λ·v` into `out` on the weights. Cost: 2 flops per weight.
    public func addRegularizerCurvature(_ v: UnsafePointer<Double>, into out: UnsafeMutablePointer<Double>) {
        guard weightDecay > 0 else { return }
        let lambda = Double(weightDecay)
        for range in layout.weightRanges { for i in range { out[i] += lambda * v[i] } }
    }
}

/// The two products of a block of rows X (`rows × features`) that the second-order computations are written in.
/// Dense rows today (`Gemm`); a sparse row block needs only these two functions.
enum RowBlockProducts {
    /// `out = X·Wᵀ` (`rows × k`), W `k × features` row-major (`RowBlock.scores`: gemv/gemm dense, the CSR
    /// product on CSR rows).
    static func times(_ batch: Batch, _ w: UnsafePointer<Float>, outputs k: Int, into out: UnsafeMutablePointer<Float>) {
        batch.block.scores(weights: w, outputs: k, into: out)
    }

    /// `out += Gᵀ·X` (`k × features`), G `rows × k` (`RowBlock.accumulateTransposed`: CSR rows write only the
    /// touched columns, with `workspace`'s scratch).
    static func transposedTimes(_ batch: Batch, _ g: UnsafePointer<Float>, outputs k: Int, into out: UnsafeMutablePointer<Float>,
                                workspace: CurvatureWorkspace) {
        batch.block.accumulateTransposed(deltas: g, outputs: k, into: out, sparse: workspace.sparse)
    }
}

/// A model of one output `z = w·x + b` whose loss is a function of (z, y) alone (a generalised linear model):
/// the gradient is `Xᵀ·ℓ'(z, y)`, the Hessian `X̃ᵀ·diag(ℓ''(z, y))·X̃` with X̃ = [X | 1].
public protocol OneOutputLoss: TwiceDifferentiable {
    /// The loss of score z against target y, with its first and second derivatives in z.
    static func loss(_ z: Float, _ y: Float) -> (value: Double, first: Float, second: Float)
}

extension OneOutputLoss {
    public func dataLossAndGradient(parameters: UnsafePointer<Float>, batch: Batch, into gradient: UnsafeMutablePointer<Float>,
                                    workspace: CurvatureWorkspace) -> Double {
        let n = batch.rows, d = inputs
        guard n > 0 else { return 0 }
        let z = workspace.scratch.get(n), curvature = workspace.curvature.get(n)
        RowBlockProducts.times(batch, parameters, outputs: 1, into: z)
        let b = parameters[d]
        var loss = 0.0
        for i in 0..<n {
            let l = Self.loss(z[i] + b, batch.y[i])
            loss += l.value
            z[i] = l.first
            curvature[i] = l.second
        }
        RowBlockProducts.transposedTimes(batch, z, outputs: 1, into: gradient, workspace: workspace)
        gradient[d] += Vector.sum(z, n)
        return loss
    }

    public func dataHessianVector(_ v: UnsafePointer<Float>, batch: Batch, workspace: CurvatureWorkspace,
                                  into out: UnsafeMutablePointer<Float>) {
        let n = batch.rows, d = inputs
        guard n > 0 else { return }
        let a = workspace.scratch.get(n), curvature = workspace.curvature.get(n)
        RowBlockProducts.times(batch, v, outputs: 1, into: a)
        let vb = v[d]
        for i in 0..<n { a[i] = (a[i] + vb) * curvature[i] }
        RowBlockProducts.transposedTimes(batch, a, outputs: 1, into: out, workspace: workspace)
        out[d] += Vector.sum(a, n)
    }
}

extension LinearRegression: TwiceDifferentiable, OneOutputLoss {
    /// `½(z − y)²`: derivatives `z − y` and 1.
    public static func loss(_ z: Float, _ y: Float) -> (value: Double, first: Float, second: Float) {
        let r = z - y
        return (0.5 * Double(r) * Double(r), r, 1)
    }
}

extension LogisticRegression: TwiceDifferentiable, OneOutputLoss {
    /// Binary cross-entropy of logit z (`crossEntropy`): derivatives `σ(z) − y` and `σ(z)·(1 − σ(z))`.
    public static func loss(_ z: Float, _ y: Float) -> (value: Double, first: Float, second: Float) {
        let p = 1 / (1 + Foundation.exp(-Double(z)))
        return (crossEntropy(z, y), Float(p - Double(y)), Float(p * (1 - p)))
    }
}

extension SoftmaxRegression: TwiceDifferentiable {
    /// `Z = X·Wᵀ + b`, P = softmax(Z) kept as the curvature, gradient `(P − Y)ᵀ·X` and the column sums.
    public func dataLossAndGradient(parameters: UnsafePointer<Float>, batch: Batch, into gradient: UnsafeMutablePointer<Float>,
                                    workspace: CurvatureWorkspace) -> Double {
        let n = batch.rows, d = inputs, k = outputs
        guard n > 0 else { return 0 }
        let z = workspace.scratch.get(n * k), p = workspace.curvature.get(n * k)
        RowBlockProducts.times(batch, parameters, outputs: k, into: z)
        addBias(z, parameters + k * d, rows: n, cols: k)
        var correct = 0.0
        let loss = softmaxCrossEntropy(z, labels: batch.y, rows: n, classes: k, correct: &correct)
        p.update(from: z, count: n * k)
        for r in 0..<n { z[r * k + Int(batch.y[r])] -= 1 }
        RowBlockProducts.transposedTimes(batch, z, outputs: k, into: gradient, workspace: workspace)
        addColumnSums(z, rows: n, cols: k, into: gradient + k * d)
        return loss
    }

    /// Per row, with a = V·x + v_b and p the row's probabilities: `u = p ⊙ (a − pᵀa)`; `Uᵀ·X` and Σ u.
    public func dataHessianVector(_ v: UnsafePointer<Float>, batch: Batch, workspace: CurvatureWorkspace,
                                  into out: UnsafeMutablePointer<Float>) {
        let n = batch.rows, d = inputs, k = outputs
        guard n > 0 else { return }
        let a = workspace.scratch.get(n * k), p = workspace.curvature.get(n * k)
        RowBlockProducts.times(batch, v, outputs: k, into: a)
        addBias(a, v + k * d, rows: n, cols: k)
        for r in 0..<n {
            let ar = a + r * k, pr = p + r * k
            var pa: Float = 0
            for c in 0..<k { pa += pr[c] * ar[c] }
            for c in 0..<k { ar[c] = pr[c] * (ar[c] - pa) }
        }
        RowBlockProducts.transposedTimes(batch, a, outputs: k, into: out, workspace: workspace)
        addColumnSums(a, rows: n, cols: k, into: out + k * d)
    }
}
