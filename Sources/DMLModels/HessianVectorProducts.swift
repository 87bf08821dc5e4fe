import DMLKernels
import Foundation

/// A convex model whose objective full-batch second-order methods (L-BFGS, trust-region Newton) can minimise:
/// the data loss and its gradient with the curvature each row contributes, Hessian-vector products, and the
/// loss along a segment from the margins two evaluations kept.
///
/// The objective is `F(θ) = (1/n)·Σ_rows loss(row) + (λ/2)·‖W‖²` over the n rows of all ranks together, with
/// `λ = weightDecay` on the weights only (never the biases) — the mean of what `Model.accumulateGradient`
/// returns per row under `WeightDecay`, with the regulariser charged once instead of per row. The data terms
/// are **sums** over a shard's rows (as `Model` gradients are), so the caller adds them up across ranks,
/// divides by n and then adds the regulariser (`addRegularizer`, `addRegularizerCurvature`).
///
/// A pass goes over the shard in consecutive blocks of rows (`ShardBlocks`: in memory, or read from a shard
/// cache a chunk at a time), each block's rows read once for both products: `X·W` for the block's margins,
/// then, while the block is in cache, `Xᵀ·G` added into Double sums (`RowBlock.accumulateTransposed(…intoSums:)`).
/// The sums are Double, in row order, and every per-row value depends on its row alone, so the result depends
/// on where the blocks are cut only for dense rows (a block's Float product added once), and a pass over the
/// same blocks read from memory or from a cache gives the same bits. Kept per row in the workspace: the
/// margins (rows·k floats) and the curvature (rows·k floats). Cost per pass on `rows` rows, nnz non-zeros and
/// k outputs: 4·nnz·k flops (CSR; 4·rows·d·k dense) plus O(rows·k) for the loss.
public protocol TwiceDifferentiable: Model {
    /// λ of the regulariser `(λ/2)·‖W‖²` (weights only).
    var weightDecay: Float { get }

    /// For the block's rows (shard rows `first ..< first + batch.rows`): returns their `Σ loss` (data only),
    /// adds their `Σ ∇loss` into `workspace`'s sums (feature-major: `sums[j·k + c]`, then the k biases), and
    /// keeps their margins and curvature in `workspace` at row `first`.
    func lossAndGradientBlock(parameters: UnsafePointer<Float>, batch: Batch, first: Int, workspace: CurvatureWorkspace) -> Double

    /// Adds `Σ ∇²loss(row)·v` over the block's rows into `workspace`'s sums, from the curvature the last pass
    /// of `lossAndGradientBlock` kept there for these rows. Exact (no finite differences).
    func hessianVectorBlock(_ v: UnsafePointer<Float>, batch: Batch, first: Int, workspace: CurvatureWorkspace)

    /// Adds `Σ diag(∇²loss(row))` over the block's rows into `workspace`'s sums (the Hessian's diagonal, for a
    /// Jacobi preconditioner), from the curvature the last `lossAndGradientBlock` pass kept for these rows.
    func curvatureDiagonalBlock(batch: Batch, first: Int, workspace: CurvatureWorkspace)

    /// Along the segment between two points whose passes kept margins `from` and `to` (rows·k each): the data
    /// loss `Σ loss(z₀ + t·(z₁ − z₀), y)` and its derivative in t, in Double. Margins are linear in the
    /// parameters, so this is the loss at `θ₀ + t·(θ₁ − θ₀)` up to the margins' Float rounding, exactly the
    /// passes' loss at t = 0 and t = 1. Cost O(rows·k), no features read.
    func segmentLoss(from z0: UnsafePointer<Float>, to z1: UnsafePointer<Float>, t: Double, labels: UnsafePointer<Float>,
                     rows: Int) -> (loss: Double, slope: Double)
}

/// A shard's rows in consecutive blocks, for one pass: `forEach` calls `body` with each block and the shard
/// row it starts at, in row order, covering rows `0 ..< rows` once. Throws what reading the rows throws
/// (a shard cache's read error).
public struct ShardBlocks {
    public let rows: Int
    public let forEach: ((Batch, Int) -> Void) throws -> Void

    public init(rows: Int, forEach: @escaping ((Batch, Int) -> Void) throws -> Void) {
        self.rows = rows
        self.forEach = forEach
    }

    /// One block of all of `batch`'s rows.
    public init(_ batch: Batch) {
        rows = batch.rows
        forEach = { body in body(batch, 0) }
    }
}

/// What a `TwiceDifferentiable` model keeps between the gradient at θ and the Hessian-vector products at θ:
/// per row the margins and the loss's second derivative (linear, logistic) or the class probabilities
/// (softmax); the Double sums of a pass; and scratch. One per (model, shard); not thread-safe.
/// Memory: 2·rows·k floats + p Doubles + a block's scratch.
public final class CurvatureWorkspace {
    let curvature = Scratch()
    let margins = Scratch()
    let scratch = Scratch()
    /// Dense rows: a block's Float product before it is added to the sums (k·d floats).
    let product = Scratch()
    /// W transposed (d × k), for CSR rows with several outputs.
    let transposed = Scratch()
    private(set) var sums: UnsafeMutablePointer<Double> = .allocate(capacity: 1)
    private var sumCapacity = 1
    /// Rows the last `lossAndGradient` pass kept margins and curvature for.
    public private(set) var rows = 0
    public init() {}
    deinit { sums.deallocate() }

    /// The margins the last pass kept (`rows × k`).
    public var keptMargins: UnsafePointer<Float> { UnsafePointer(margins.pointer) }

    func zeroSums(_ count: Int) {
        if count > sumCapacity {
            sums.deallocate()
            sums = .allocate(capacity: count)
            sumCapacity = count
        }
        sums.update(repeating: 0, count: count)
    }

    func reserve(rows n: Int, outputs k: Int) {
        rows = n
        _ = curvature.get(n * k)
        _ = margins.get(n * k)
    }
}

extension TwiceDifferentiable {
    /// W (`k × d` at `w`) transposed into the workspace, when CSR rows with several outputs will read it.
    func transpose(_ w: UnsafePointer<Float>, _ workspace: CurvatureWorkspace) {
        let k = outputs, d = inputs
        guard k > 1 else { return }
        let t = workspace.transposed.get(d * k)
        for c in 0..<k { for j in 0..<d { t[j * k + c] = w[c * d + j] } }
    }

    /// `gradient` (p Doubles, the layout's order) from the workspace's feature-major sums.
    private func finish(_ workspace: CurvatureWorkspace, into out: UnsafeMutablePointer<Double>) {
        let k = outputs, d = inputs, sums = workspace.sums
        if k == 1 {
            out.update(from: sums, count: d + 1)
            return
        }
        for c in 0..<k {
            for j in 0..<d { out[c * d + j] = sums[j * k + c] }
            out[k * d + c] = sums[d * k + c]
        }
    }

    /// One pass: returns `Σ_rows loss(row)` (data only) and writes `Σ_rows ∇loss(row)` into `gradient`
    /// (p Doubles), keeping each row's margins and curvature in `workspace`. Throws what reading the rows throws.
    public func dataLossAndGradient(parameters: UnsafePointer<Float>, blocks: ShardBlocks, into gradient: UnsafeMutablePointer<Double>,
                                    workspace: CurvatureWorkspace) throws -> Double {
        workspace.zeroSums(layout.count)
        workspace.reserve(rows: blocks.rows, outputs: outputs)
        transpose(parameters, workspace)
        var loss = 0.0
        try blocks.forEach { batch, first in
            loss += lossAndGradientBlock(parameters: parameters, batch: batch, first: first, workspace: workspace)
        }
        finish(workspace, into: gradient)
        return loss
    }

    /// One pass: writes `Σ_rows ∇²loss(row)·v` into `out` (p Doubles), at the parameters of the last
    /// `dataLossAndGradient` pass with this `workspace` over the same blocks.
    public func dataHessianVector(_ v: UnsafePointer<Float>, blocks: ShardBlocks, workspace: CurvatureWorkspace,
                                  into out: UnsafeMutablePointer<Double>) throws {
        precondition(workspace.rows == blocks.rows, "a Hessian-vector product needs the curvature of a pass over the same rows")
        workspace.zeroSums(layout.count)
        transpose(v, workspace)
        try blocks.forEach { batch, first in hessianVectorBlock(v, batch: batch, first: first, workspace: workspace) }
        finish(workspace, into: out)
    }

    /// One pass: writes the diagonal of `Σ_rows ∇²loss(row)` into `out` (p Doubles), at the parameters of the
    /// last `dataLossAndGradient` pass with this `workspace` over the same blocks.
    public func dataCurvatureDiagonal(blocks: ShardBlocks, workspace: CurvatureWorkspace, into out: UnsafeMutablePointer<Double>) throws {
        precondition(workspace.rows == blocks.rows, "the Hessian's diagonal needs the curvature of a pass over the same rows")
        workspace.zeroSums(layout.count)
        try blocks.forEach { batch, first in curvatureDiagonalBlock(batch: batch, first: first, workspace: workspace) }
        finish(workspace, into: out)
    }

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

    /// The regulariser along the segment `W₀ + t·(W₁ − W₀)`: `(λ/2)·(a + 2·t·b + t²·c)` with a = ‖W₀‖²,
    /// b = W₀·(W₁ − W₀), c = ‖W₁ − W₀‖², returned as (a, b, c) scaled by λ (one pass over the weights).
    public func regularizerAlongSegment(from w0: UnsafePointer<Float>, to w1: UnsafePointer<Float>) -> (a: Double, b: Double, c: Double) {
        guard weightDecay > 0 else { return (0, 0, 0) }
        var a = 0.0, b = 0.0, c = 0.0
        for range in layout.weightRanges {
            for i in range {
                let x = Double(w0[i]), dx = Double(w1[i]) - x
                a += x * x
                b += x * dx
                c += dx * dx
            }
        }
        let lambda = Double(weightDecay)
        return (lambda * a, lambda * b, lambda * c)
    }
}

/// A model of one output `z = w·x + b` whose loss is a function of (z, y) alone (a generalised linear model):
/// the gradient is `Xᵀ·ℓ'(z, y)`, the Hessian `X̃ᵀ·diag(ℓ''(z, y))·X̃` with X̃ = [X | 1].
public protocol OneOutputLoss: TwiceDifferentiable {
    /// The loss of score z against target y, with its first and second derivatives in z.
    static func loss(_ z: Float, _ y: Float) -> (value: Double, first: Float, second: Float)
}

extension OneOutputLoss {
    public func lossAndGradientBlock(parameters: UnsafePointer<Float>, batch: Batch, first: Int, workspace: CurvatureWorkspace) -> Double {
        let n = batch.rows, d = inputs
        guard n > 0 else { return 0 }
        let z = workspace.margins.pointer + first, curvature = workspace.curvature.pointer + first
        let delta = workspace.scratch.get(n), sums = workspace.sums
        batch.block.margins(weights: parameters, into: z)
        let b = parameters[d]
        var loss = 0.0, bias = 0.0
        for i in 0..<n {
            z[i] += b
            let l = Self.loss(z[i], batch.y[i])
            loss += l.value
            delta[i] = l.first
            bias += Double(l.first)
            curvature[i] = l.second
        }
        batch.block.accumulateTransposed(deltas: delta, outputs: 1, intoSums: sums, scratch: workspace.product.get(d))
        sums[d] += bias
        return loss
    }

    public func hessianVectorBlock(_ v: UnsafePointer<Float>, batch: Batch, first: Int, workspace: CurvatureWorkspace) {
        let n = batch.rows, d = inputs
        guard n > 0 else { return }
        let a = workspace.scratch.get(n), curvature = workspace.curvature.pointer + first, sums = workspace.sums
        batch.block.margins(weights: v, into: a)
        let vb = v[d]
        var bias = 0.0
        for i in 0..<n {
            a[i] = (a[i] + vb) * curvature[i]
            bias += Double(a[i])
        }
        batch.block.accumulateTransposed(deltas: a, outputs: 1, intoSums: sums, scratch: workspace.product.get(d))
        sums[d] += bias
    }

    /// `Σ ℓ''·x_j²` per feature, and `Σ ℓ''` for the bias.
    public func curvatureDiagonalBlock(batch: Batch, first: Int, workspace: CurvatureWorkspace) {
        let n = batch.rows, d = inputs
        guard n > 0 else { return }
        let curvature = workspace.curvature.pointer + first, sums = workspace.sums
        batch.block.accumulateSquaresTransposed(weights: curvature, outputs: 1, intoSums: sums)
        var bias = 0.0
        for i in 0..<n { bias += Double(curvature[i]) }
        sums[d] += bias
    }

    public func segmentLoss(from z0: UnsafePointer<Float>, to z1: UnsafePointer<Float>, t: Double, labels: UnsafePointer<Float>,
                            rows: Int) -> (loss: Double, slope: Double) {
        var loss = 0.0, slope = 0.0
        for i in 0..<rows {
            let a = Double(z0[i]), q = Double(z1[i]) - a
            let l = Self.loss(Float(a + t * q), labels[i])
            loss += l.value
            slope += Double(l.first) * q
        }
        return (loss, slope)
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
    /// Binary cross-entropy of logit z (`crossEntropy`, the same bits): derivatives `σ(z) − y` and
    /// `σ(z)·(1 − σ(z))`. One exp a row: e = exp(−|z|) ∈ (0, 1] gives the loss's log1p(e) and σ(z) = 1/(1 + e)
    /// for z ≥ 0, e/(1 + e) below (no overflow either way).
    public static func loss(_ z: Float, _ y: Float) -> (value: Double, first: Float, second: Float) {
        let zd = Double(z), e = Foundation.exp(-abs(zd))
        let p = zd >= 0 ? 1 / (1 + e) : e / (1 + e)
        return (Swift.max(zd, 0) - Double(y) * zd + Foundation.log1p(e), Float(p - Double(y)), Float(p * (1 - p)))
    }
}

extension SoftmaxRegression: TwiceDifferentiable {
    /// `Z = X·Wᵀ + b` kept as the margins, P = softmax(Z) as the curvature, gradient `(P − Y)ᵀ·X` and the
    /// column sums.
    public func lossAndGradientBlock(parameters: UnsafePointer<Float>, batch: Batch, first: Int, workspace: CurvatureWorkspace) -> Double {
        let n = batch.rows, d = inputs, k = outputs
        guard n > 0 else { return 0 }
        let z = workspace.margins.pointer + first * k, p = workspace.curvature.pointer + first * k
        let delta = workspace.scratch.get(n * k), sums = workspace.sums
        batch.block.scores(weights: parameters, transposed: workspace.transposed.pointer, outputs: k, into: z)
        addBias(z, parameters + k * d, rows: n, cols: k)
        p.update(from: z, count: n * k)
        var correct = 0.0
        let loss = softmaxCrossEntropy(p, labels: batch.y, rows: n, classes: k, correct: &correct)
        delta.update(from: p, count: n * k)
        for r in 0..<n { delta[r * k + Int(batch.y[r])] -= 1 }
        for r in 0..<n { for c in 0..<k { sums[d * k + c] += Double(delta[r * k + c]) } }
        batch.block.accumulateTransposed(deltas: delta, outputs: k, intoSums: sums, scratch: workspace.product.get(k * d))
        return loss
    }

    /// Per row, with a = V·x + v_b and p the row's probabilities: `u = p ⊙ (a − pᵀa)`; `Uᵀ·X` and Σ u.
    public func hessianVectorBlock(_ v: UnsafePointer<Float>, batch: Batch, first: Int, workspace: CurvatureWorkspace) {
        let n = batch.rows, d = inputs, k = outputs
        guard n > 0 else { return }
        let a = workspace.scratch.get(n * k), p = workspace.curvature.pointer + first * k, sums = workspace.sums
        batch.block.scores(weights: v, transposed: workspace.transposed.pointer, outputs: k, into: a)
        addBias(a, v + k * d, rows: n, cols: k)
        for r in 0..<n {
            let ar = a + r * k, pr = p + r * k
            var pa: Float = 0
            for c in 0..<k { pa += pr[c] * ar[c] }
            for c in 0..<k {
                ar[c] = pr[c] * (ar[c] - pa)
                sums[d * k + c] += Double(ar[c])
            }
        }
        batch.block.accumulateTransposed(deltas: a, outputs: k, intoSums: sums, scratch: workspace.product.get(k * d))
    }

    /// `Σ p_c·(1 − p_c)·x_j²` per class and feature (the diagonal of each class's block), `Σ p_c·(1 − p_c)` for the biases.
    public func curvatureDiagonalBlock(batch: Batch, first: Int, workspace: CurvatureWorkspace) {
        let n = batch.rows, d = inputs, k = outputs
        guard n > 0 else { return }
        let p = workspace.curvature.pointer + first * k, w = workspace.scratch.get(n * k), sums = workspace.sums
        for i in 0..<(n * k) {
            w[i] = p[i] * (1 - p[i])
            sums[d * k + i % k] += Double(w[i])
        }
        batch.block.accumulateSquaresTransposed(weights: w, outputs: k, intoSums: sums)
    }

    /// Per row, in Double: `logsumexp(z_t) − z_t[y]` and its derivative `Σ_c (softmax(z_t)_c − [c = y])·(z₁ − z₀)_c`.
    public func segmentLoss(from z0: UnsafePointer<Float>, to z1: UnsafePointer<Float>, t: Double, labels: UnsafePointer<Float>,
                            rows: Int) -> (loss: Double, slope: Double) {
        let k = outputs
        var loss = 0.0, slope = 0.0
        withUnsafeTemporaryAllocation(of: Double.self, capacity: k) { zt in
            for r in 0..<rows {
                let a = z0 + r * k, b = z1 + r * k, y = Int(labels[r])
                var top = -Double.infinity
                for c in 0..<k {
                    zt[c] = Double(a[c]) + t * (Double(b[c]) - Double(a[c]))
                    top = Swift.max(top, zt[c])
                }
                var total = 0.0
                for c in 0..<k { total += Foundation.exp(zt[c] - top) }
                loss += top + Foundation.log(total) - zt[y]
                for c in 0..<k {
                    let q = Double(b[c]) - Double(a[c])
                    slope += (Foundation.exp(zt[c] - top) / total - (c == y ? 1 : 0)) * q
                }
            }
        }
        return (loss, slope)
    }
}
