import DMLKernels

/// A growable Float buffer a model keeps between steps: it is reallocated only when a larger batch than
/// ever before arrives, so steady-state training allocates nothing.
final class Scratch {
    private(set) var pointer: UnsafeMutablePointer<Float>
    private(set) var capacity: Int

    init(_ capacity: Int = 0) {
        self.capacity = Swift.max(capacity, 1)
        pointer = .allocate(capacity: self.capacity)
    }

    deinit { pointer.deallocate() }

    /// A buffer of at least `count` floats (contents unspecified).
    func get(_ count: Int) -> UnsafeMutablePointer<Float> {
        if count > capacity {
            pointer.deallocate()
            capacity = count
            pointer = .allocate(capacity: count)
        }
        return pointer
    }
}

/// L2 weight decay under the sum-over-rows contract.
///
/// The penalty is charged per row: each row's loss gets `(λ/2)·‖W‖²` (weights only, never biases), so a
/// batch of `rows` rows adds `rows·(λ/2)·‖W‖²` to the loss sum and `rows·λ·W` to the gradient sum. After the
/// trainer divides by the global row count, the mean objective is `mean loss + (λ/2)·‖W‖²` whatever the number
/// of ranks or the shard sizes. Evaluation (`Model.evaluate`) reports the data loss alone.
enum WeightDecay {
    static func apply(_ lambda: Float, views: [TensorView], parameters: UnsafePointer<Float>,
                      gradient: UnsafeMutablePointer<Float>, rows: Int) -> Double {
        guard lambda > 0, rows > 0 else { return 0 }
        var squares = 0.0
        for v in views {
            let w = parameters + v.offset
            squares += Double(Vector.dot(w, w, v.count))
            Vector.axpy(lambda * Float(rows), w, gradient + v.offset, v.count)
        }
        return Double(rows) * 0.5 * Double(lambda) * squares
    }
}

/// Rows per block when a model evaluates or predicts a large data set, so its scratch stays small.
let evaluationBlockRows = 1024

/// Calls `body(first, count)` over `rows` in blocks of `evaluationBlockRows`.
@inline(__always)
func forEachBlock(_ rows: Int, _ body: (Int, Int) -> Void) {
    var first = 0
    while first < rows {
        let count = Swift.min(evaluationBlockRows, rows - first)
        body(first, count)
        first += count
    }
}

/// Adds `bias[j]` to every row of an `rows × cols` matrix (row stride `cols`).
@inline(__always)
func addBias(_ z: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>, rows: Int, cols: Int) {
    for r in 0..<rows { Vector.axpy(1, bias, z + r * cols, cols) }
}

/// `out[j] += Σ_r m[r·cols + j]`: the bias gradient from a matrix of row deltas (`Gemm.columnSums`); `beta` 0
/// writes the sums instead (`out` not read).
@inline(__always)
func addColumnSums(_ m: UnsafePointer<Float>, rows: Int, cols: Int, into out: UnsafeMutablePointer<Float>, beta: Float = 1) {
    Gemm.columnSums(m: rows, n: cols, a: m, lda: cols, beta: beta, y: out)
}

/// Softmax cross-entropy over a block of logits (rows × classes), in place: returns `Σ −log p[label]`,
/// leaves the probabilities in `z`, and counts rows whose argmax is the label into `correct`.
func softmaxCrossEntropy(_ z: UnsafeMutablePointer<Float>, labels: UnsafePointer<Float>, rows: Int, classes k: Int,
                         correct: inout Double) -> Double {
    var loss = 0.0
    for r in 0..<rows {
        let row = z + r * k
        let label = Int(labels[r])
        var best = 0
        for c in 1..<k where row[c] > row[best] { best = c }
        if best == label { correct += 1 }
        let target = row[label]
        let lse = Softmax.inPlace(row, k)
        loss += Double(lse - target)
    }
    return loss
}
