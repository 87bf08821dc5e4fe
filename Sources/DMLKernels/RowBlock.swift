/// Rows of features, dense or CSR, with the two products a model's input layer needs, so a model is written
/// once for both: `scores` (`X·Wᵀ`, the forward pass) and `accumulateTransposed` (`∂W += Dᵀ·X`, the
/// gradient). Dense rows use the dense kernels (`Gemm`), bit for bit what the models used before CSR existed;
/// CSR rows use `SparseRows` (Double sums over the non-zeros; the gradient scattered into the touched columns
/// only). The two agree to Float rounding (`SparseDenseAgreementTests`).
public struct RowBlock {
    public enum Storage {
        /// `rows × features` values, row-major.
        case dense(UnsafePointer<Float>)
        case sparse(CSRView)
    }
    public let storage: Storage
    public let rows: Int
    public let features: Int

    public init(dense x: UnsafePointer<Float>, rows: Int, features: Int) {
        storage = .dense(x)
        self.rows = rows
        self.features = features
    }

    public init(_ csr: CSRView) {
        storage = .sparse(csr)
        rows = csr.rows
        features = csr.columns
    }

    public var isSparse: Bool { if case .sparse = storage { return true }; return false }

    /// Rows `first ..< first + count` (no copy).
    public func rows(_ first: Int, _ count: Int) -> RowBlock {
        switch storage {
        case let .dense(p): return RowBlock(dense: p + first * features, rows: count, features: features)
        case let .sparse(v): return RowBlock(v.rows(first, count))
        }
    }

    /// `out[r·outputs + c] = x_r · W[c, ·]` (no bias) with `W` `outputs × features` row-major: `X·Wᵀ`. Dense: one
    /// gemv for one output, one gemm otherwise; CSR: `SparseRows.forward`. Cost 2·rows·features·outputs flops
    /// dense, 2·nnz·outputs CSR.
    public func scores(weights w: UnsafePointer<Float>, outputs: Int, into out: UnsafeMutablePointer<Float>) {
        switch storage {
        case let .dense(x):
            if outputs == 1 {
                Gemm.gemv(m: rows, n: features, alpha: 1, a: x, lda: features, x: w, beta: 0, y: out)
            } else {
                Gemm.gemm(transA: false, transB: true, m: rows, n: outputs, k: features, alpha: 1, a: x, lda: features,
                          b: w, ldb: features, beta: 0, c: out, ldc: outputs)
            }
        case let .sparse(v):
            SparseRows.forward(v, weights: w, ldw: features, outputs: outputs, into: out, ldo: outputs)
        }
    }

    /// `scores`, then `+ bias[c]` on every row and, when `relu`, `max(·, 0)`: a layer's pre-activation and ReLU.
    /// Dense rows with several outputs fuse both into the gemm's final write of each tile (`GemmEpilogue`: no
    /// second pass over `out`); CSR rows and one output run them as passes. The same bits either way, and the
    /// same as `scores` followed by `Vector.axpy(1, bias, row)` per row and `Activation.relu`.
    public func scores(weights w: UnsafePointer<Float>, outputs: Int, into out: UnsafeMutablePointer<Float>,
                       bias: UnsafePointer<Float>, relu: Bool) {
        let epilogue = GemmEpilogue(bias: bias, relu: relu)
        if case let .dense(x) = storage, outputs > 1 {
            Gemm.gemm(transA: false, transB: true, m: rows, n: outputs, k: features, alpha: 1, a: x, lda: features,
                      b: w, ldb: features, beta: 0, c: out, ldc: outputs, epilogue: epilogue)
        } else {
            scores(weights: w, outputs: outputs, into: out)
            epilogue.apply(out, ldc: outputs, m: rows, n: outputs)
        }
    }

    /// `grad[c·features + k] += Σ_r D[r·outputs + c]·X[r, k]`: `∂W += Dᵀ·X` for `W` `outputs × features`. Dense:
    /// one transposed gemv for one output, one gemm otherwise (every entry of `grad` written); CSR: only the
    /// touched columns are read and written (`SparseRows.accumulateTransposed`, with `sparse`'s scratch).
    /// `overwrite`: `grad = Dᵀ·X`, its previous contents never read — dense, the same call with β = 0 (the bits of
    /// adding into zeros, up to the sign of a zero); CSR, `grad` zeroed first (an `outputs × features` pass).
    public func accumulateTransposed(deltas d: UnsafePointer<Float>, outputs: Int, into grad: UnsafeMutablePointer<Float>,
                                     sparse: SparseRows, overwrite: Bool = false) {
        switch storage {
        case let .dense(x): denseTransposed(x, deltas: d, outputs: outputs, into: grad, beta: overwrite ? 0 : 1)
        case let .sparse(v):
            if overwrite { grad.update(repeating: 0, count: outputs * features) }
            sparse.accumulateTransposed(v, deltas: d, ldd: outputs, outputs: outputs, into: grad, ldg: features)
        }
    }

    /// Dense rows: `out = Dᵀ·X + beta·out` (`outputs × features`), one gemv for one output, one gemm otherwise.
    private func denseTransposed(_ x: UnsafePointer<Float>, deltas d: UnsafePointer<Float>, outputs: Int,
                                 into out: UnsafeMutablePointer<Float>, beta: Float) {
        if outputs == 1 {
            Gemm.gemvT(m: rows, n: features, alpha: 1, a: x, lda: features, x: d, beta: beta, y: out)
        } else {
            Gemm.gemm(transA: true, transB: false, m: outputs, n: features, k: rows, alpha: 1, a: d, lda: outputs,
                      b: x, ldb: features, beta: beta, c: out, ldc: features)
        }
    }

    /// `out[r] = x_r · w` for one output (no bias): dense rows as `scores` (gemv); CSR rows in eight chains
    /// (`SparseRows.margins`: not `scores`' bits, faster on long rows). Row r's value depends on that row and w
    /// alone. Cost 2·nnz flops (2·rows·features dense).
    public func margins(weights w: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>) {
        if case let .sparse(v) = storage {
            SparseRows.margins(v, weights: w, into: out)
        } else {
            scores(weights: w, outputs: 1, into: out)
        }
    }

    /// `scores(weights:outputs:into:)` with W also given transposed (`wt`, `features × outputs`), which CSR rows
    /// with several outputs read instead of transposing W on every call (`SparseRows.forward(_:transposedWeights:…)`,
    /// the same bits); dense rows and one output read `w`. For a caller running many blocks against one W.
    public func scores(weights w: UnsafePointer<Float>, transposed wt: UnsafePointer<Float>, outputs: Int,
                       into out: UnsafeMutablePointer<Float>) {
        if case let .sparse(v) = storage, outputs > 1 {
            SparseRows.forward(v, transposedWeights: wt, outputs: outputs, into: out, ldo: outputs)
        } else {
            scores(weights: w, outputs: outputs, into: out)
        }
    }

    /// `sums[k·outputs + c] += Σ_r D[r·outputs + c]·X[r, k]` in Double (`Dᵀ·X` laid out feature-major). CSR: the
    /// Double sum of exact products over the non-zeros, rows in order (`SparseRows.accumulateTransposed(…intoSums:)`),
    /// so consecutive blocks add up to one block of all their rows, bit for bit. Dense: the block's product in
    /// Float (one gemv/gemm into `scratch`, `outputs × features` floats) added to `sums` once per block, so the
    /// bits depend on where the blocks are cut. Cost 2·nnz·outputs flops (CSR), 2·rows·features·outputs + 2·features·outputs (dense).
    public func accumulateTransposed(deltas d: UnsafePointer<Float>, outputs: Int, intoSums sums: UnsafeMutablePointer<Double>,
                                     scratch: UnsafeMutablePointer<Float>) {
        switch storage {
        case let .sparse(v):
            SparseRows.accumulateTransposed(v, deltas: d, ldd: outputs, outputs: outputs, intoSums: sums)
        case let .dense(x):
            denseTransposed(x, deltas: d, outputs: outputs, into: scratch, beta: 0)
            for c in 0..<outputs {
                for k in 0..<features { sums[k * outputs + c] += Double(scratch[c * features + k]) }
            }
        }
    }

    /// `sums[k·outputs + c] += Σ_r D[r·outputs + c]·X[r, k]²` in Double, rows in order (CSR: the non-zeros only):
    /// the diagonal of `Xᵀ·diag(D)·X` per output, what a Jacobi preconditioner needs. Calls on consecutive blocks
    /// add up to one call on all their rows, bit for bit. Cost 3·nnz·outputs flops (3·rows·features·outputs dense).
    public func accumulateSquaresTransposed(weights d: UnsafePointer<Float>, outputs: Int, intoSums sums: UnsafeMutablePointer<Double>) {
        switch storage {
        case let .sparse(v):
            for r in 0..<rows {
                for i in v.rowStarts[r]..<v.rowStarts[r + 1] {
                    let x = Double(v.values[i]), x2 = x * x, at = sums + Int(v.indices[i]) * outputs
                    for c in 0..<outputs { at[c] += Double(d[r * outputs + c]) * x2 }
                }
            }
        case let .dense(x):
            for r in 0..<rows {
                for k in 0..<features {
                    let value = Double(x[r * features + k]), x2 = value * value, at = sums + k * outputs
                    for c in 0..<outputs { at[c] += Double(d[r * outputs + c]) * x2 }
                }
            }
        }
    }

    /// The rows as dense values (`rows × features`) into `out`: for a model that does not take CSR rows.
    public func densify(into out: UnsafeMutablePointer<Float>) {
        switch storage {
        case let .dense(x): out.update(from: x, count: rows * features)
        case let .sparse(v):
            out.update(repeating: 0, count: rows * features)
            for r in 0..<rows {
                for k in v.rowStarts[r]..<v.rowStarts[r + 1] { out[r * features + Int(v.indices[k])] = v.values[k] }
            }
        }
    }
}
