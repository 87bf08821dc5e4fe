/// A model with an L2 penalty charged through its gradient (`WeightDecay`): every weight's gradient gets
/// `rows·λ·w`, so with λ > 0 every weight is touched by every batch.
public protocol L2Penalized: Model {
    /// λ (0: none).
    var weightDecay: Float { get }
}

extension LinearRegression: L2Penalized {}
extension LogisticRegression: L2Penalized {}
extension SoftmaxRegression: L2Penalized {}
extension MLP: L2Penalized {}

extension Model {
    /// The coordinates of the gradient that a batch can make non-zero when every one of its rows is zero
    /// outside `columns` (sorted, unique input columns: a sparse batch's union of columns), sorted and unique;
    /// the gradient at every other coordinate is exactly +0 (what the sparse reducer relies on:
    /// `GradientReducer.touched`).
    ///
    /// Every model here reads its input only through its first tensor `layers.0.weight`, of shape
    /// `[units × inputs]` row-major: input column j reaches the gradient at `offset + k·inputs + j` for every
    /// unit k, and nowhere else of that tensor. Every other tensor (the biases, an MLP's upper layers) is
    /// listed whole. With an L2 penalty (`L2Penalized`, λ > 0) every weight is listed whole.
    ///
    /// Why the rest is exactly +0 and not −0 (the ±0 subtlety: a reducer that skips a −0 would differ from
    /// the dense sum on one rank): the trainer zeroes the buffer to +0 and the kernels *add* their sums of
    /// products `x·δ` into it; with x = ±0 such a sum is ±0 and `+0 + (±0) = +0`. A kernel that stored a first
    /// product instead of adding it could leave −0; `SparseReducerTests` checks the bits of these models.
    /// Cost: `units × columns.count` + the other tensors' sizes.
    public func gradientCoordinates(touchingColumns columns: UnsafeBufferPointer<Int32>) -> [Int32] {
        let decays = ((self as? L2Penalized)?.weightDecay ?? 0) > 0
        var out: [Int32] = []
        for (t, view) in layout.views.enumerated() {
            if t == 0 && !decays && view.name == "layers.0.weight" && view.shape.count == 2 && view.shape[1] == inputs {
                let units = view.shape[0]
                out.reserveCapacity(units * columns.count + layout.count - view.count)
                for k in 0..<units {
                    let row = view.offset + k * inputs
                    for j in columns {
                        precondition(j >= 0 && Int(j) < inputs, "gradientCoordinates: column \(j) outside 0..<\(inputs)")
                        out.append(Int32(row + Int(j)))
                    }
                }
            } else {
                for i in view.range { out.append(Int32(i)) }
            }
        }
        return out
    }
}
