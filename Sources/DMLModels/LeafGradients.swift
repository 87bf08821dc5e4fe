import DMLKernels

/// One leaf of a batch: a run of consecutive rows of it (`rows`, indices into the batch) whose gradient sum
/// goes into its own buffer (`gradient`, `layout.count` values). `--reproducible` sums a batch as leaves of one
/// 64-row block each, so that a leaf's bits do not depend on which other rows share a call.
public struct GradientLeaf {
    public let rows: Range<Int>
    public let gradient: UnsafeMutablePointer<Float>

    public init(rows: Range<Int>, gradient: UnsafeMutablePointer<Float>) {
        self.rows = rows
        self.gradient = gradient
    }
}

/// A model that computes several leaves' gradients in **one** forward and backward pass over all their rows:
/// only what sums over rows — a layer's `∂W = Dᵀ·A` and `∂b = Σ D`, the loss — is done per leaf, each a call
/// over the leaf's rows alone.
///
/// Invariant: leaf i's gradient and loss have the bits of `accumulateGradient` on the leaf's rows alone into a
/// zeroed buffer (up to the sign of a zero), because everything else the pass computes is row by row: a row's
/// activations and deltas depend on that row and the parameters only (the gemms' and softmax's per-row bits, as
/// `Model.predict`'s row-independence). Tested: `LeafGradientTests`. Cost: the forward and the per-row backward
/// as one call of all the rows (fewer, larger gemms: one packing of each weight matrix instead of one per leaf),
/// the per-leaf sums as before; each leaf's buffer is written, not read, so the caller need not zero it.
public protocol LeafGradientModel: Model {
    /// Writes each leaf's `Σ_rows ∇loss(row)` over all of `layout.count` values of its buffer (the previous
    /// contents are never read) and returns each leaf's `Σ_rows loss(row)`, in the order of `leaves`. The leaves
    /// are disjoint runs of `batch`'s rows in ascending order.
    func writeLeafGradients(parameters: UnsafePointer<Float>, batch: Batch, leaves: [GradientLeaf]) -> [Double]
}

extension Model {
    /// Each leaf's gradient sum written into its buffer, and its loss sum: one pass over the whole batch for a
    /// `LeafGradientModel`, else one `accumulateGradient` per leaf into its buffer, zeroed first. The same bits
    /// either way, up to the sign of a zero.
    public func leafGradients(parameters: UnsafePointer<Float>, batch: Batch, leaves: [GradientLeaf]) -> [Double] {
        if let fused = self as? LeafGradientModel { return fused.writeLeafGradients(parameters: parameters, batch: batch, leaves: leaves) }
        return leaves.map { leaf in
            leaf.gradient.update(repeating: 0, count: layout.count)
            return accumulateGradient(parameters: parameters, batch: batch.rows(leaf.rows), into: leaf.gradient)
        }
    }
}

extension Batch {
    /// Rows `range` of this batch (no copy).
    public func rows(_ range: Range<Int>) -> Batch {
        Batch(block: block.rows(range.lowerBound, range.count), y: y + range.lowerBound)
    }
}
