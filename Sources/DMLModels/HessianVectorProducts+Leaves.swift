import DMLKernels

/// Which pass `TwiceDifferentiable.leafPass` runs: the three passes over the rows of the full-batch methods.
public enum LeafPass {
    /// `dataLossAndGradient` at the parameters (keeping margins and curvature in the workspace).
    case lossAndGradient(parameters: UnsafePointer<Float>)
    /// `dataHessianVector` of v at the last `lossAndGradient` pass's parameters.
    case hessianVector(UnsafePointer<Float>)
    /// `dataCurvatureDiagonal` at the last `lossAndGradient` pass's parameters.
    case curvatureDiagonal
}

/// One block's own sums in a leaf pass: `sums` (p Doubles in the workspace's **feature-major** order:
/// `[j·k + c]`, then the k biases; `featureMajorIndex` maps a layout coordinate there), non-zero only at
/// `positions` (sorted; nil: any of the p), and the block's data loss (0 outside `lossAndGradient`).
public struct LeafSums {
    public let positions: UnsafeBufferPointer<Int32>?
    public let sums: UnsafePointer<Double>
    public let loss: Double
}

extension TwiceDifferentiable {
    /// A pass as `dataLossAndGradient` / `dataHessianVector` / `dataCurvatureDiagonal`, but with each block of
    /// `blocks` summed **alone** from zero and handed to `leaf` before the next (`--reproducible`: the caller
    /// sums the blocks exactly, so that the result does not depend on which rank held which block). The
    /// per-block values are those the plain pass adds up, and the workspace keeps the margins and curvature
    /// as after the plain pass. CSR blocks: only the touched columns' positions (and the biases) are handed
    /// over and zeroed again, so a block costs its non-zeros, not p. `positions` caches each CSR block's
    /// positions by its first shard row (the caller's, valid while the rows are the same). Throws what reading
    /// the rows throws.
    public func leafPass(_ pass: LeafPass, blocks: ShardBlocks, workspace: CurvatureWorkspace, positions cache: inout [Int: [Int32]],
                         leaf: (LeafSums) -> Void) throws {
        let p = layout.count, k = outputs, d = inputs
        workspace.zeroSums(p)
        switch pass {
        case let .lossAndGradient(w):
            workspace.reserve(rows: blocks.rows, outputs: k)
            transpose(w, workspace)
        case let .hessianVector(v):
            precondition(workspace.rows == blocks.rows, "a Hessian-vector product needs the curvature of a pass over the same rows")
            transpose(v, workspace)
        case .curvatureDiagonal:
            precondition(workspace.rows == blocks.rows, "the Hessian's diagonal needs the curvature of a pass over the same rows")
        }
        try blocks.forEach { batch, first in
            var loss = 0.0
            switch pass {
            case let .lossAndGradient(w): loss = lossAndGradientBlock(parameters: w, batch: batch, first: first, workspace: workspace)
            case let .hessianVector(v): hessianVectorBlock(v, batch: batch, first: first, workspace: workspace)
            case .curvatureDiagonal: curvatureDiagonalBlock(batch: batch, first: first, workspace: workspace)
            }
            let sums = workspace.sums
            guard case let .sparse(view) = batch.block.storage else {
                leaf(LeafSums(positions: nil, sums: sums, loss: loss))
                sums.update(repeating: 0, count: p)
                return
            }
            let positions = cache[first] ?? {
                var positions: [Int32] = []
                let columns = view.touchedColumns()
                positions.reserveCapacity((columns.count + 1) * k)
                for j in columns { for c in 0..<k { positions.append(Int32(Int(j) * k + c)) } }
                for c in 0..<k { positions.append(Int32(d * k + c)) }
                return positions
            }()
            cache[first] = positions
            positions.withUnsafeBufferPointer { leaf(LeafSums(positions: $0, sums: sums, loss: loss)) }
            for i in positions { sums[Int(i)] = 0 }
        }
    }

    /// Where layout coordinate `i` (`c·d + j` for a weight, `k·d + c` for a bias) lies in the feature-major
    /// sums of a pass (`j·k + c`, then the biases at `d·k + c`).
    public func featureMajorIndex(_ i: Int) -> Int {
        let k = outputs, d = inputs
        if k == 1 { return i }
        return i < k * d ? (i % d) * k + i / d : i
    }
}
