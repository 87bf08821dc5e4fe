import DMLComm
import DMLKernels

/// How `--allreduce auto` chooses between the sparse reducer and one dense allreduce of the whole buffer:
/// once, on the first step, from the touched coordinates of every rank (agreed by one allreduce of their
/// counts, so every rank takes the same decision), by a modelled cost with a measured constant.
///
/// Model: the recursive-doubling merge sends each rank about 8 bytes per entry of its group's union per
/// exchange, `exchanges(p) = ⌊log2 p⌋ + 2·[p not a power of 2]` exchanges, the union estimated from above by
/// `min(n, Σ_ranks touched)`; the dense path sends `2(p−1)/p · 4n` bytes and then zeroes, scales, checks and
/// updates all n coordinates. Sparse is taken when `min(1, Σ touched / n) · exchanges(p) ≤ maxDensity`.
/// Constant: `dml-bench allreduce --sparse` at np 2 on the 2-core Zen 5 VM (benchmarks/RESULTS.md, "Sparse
/// allreduce") put the allreduce-only crossover with the ring at Σ touched / n between 4% and 20% across runs
/// (the machine was loaded); 10% lies inside that band, and the whole step (zeroing, update) favours sparse
/// further. A resumed run decides again on its first step.
public struct SparseSelection: Sendable, Equatable {
    /// The largest `touched fraction × exchanges` that takes the sparse path.
    public var maxDensity: Double

    /// The default crossover, measured at np = 2 on the 2-core Zen 5 VM (benchmarks/RESULTS.md).
    public static let measuredMaxDensity = 0.10

    public init(maxDensity: Double = SparseSelection.measuredMaxDensity) { self.maxDensity = maxDensity }

    /// Exchanges of the recursive-doubling merge on `p` ranks.
    public static func exchanges(ranks p: Int) -> Int {
        guard p > 1 else { return 1 }
        var pof2 = 1, log = 0
        while pof2 * 2 <= p { pof2 *= 2; log += 1 }
        return log + (pof2 == p ? 0 : 2)
    }

    /// True when `touched` coordinates over all ranks (a sum: an upper bound of the union) out of `dimension`
    /// are sparse enough.
    public func prefersSparse(touched: Int, dimension: Int, ranks: Int) -> Bool {
        let fraction = Swift.min(1, Double(touched) / Double(Swift.max(1, dimension)))
        return fraction * Double(Self.exchanges(ranks: ranks)) <= maxDensity
    }
}

/// Reduces only the **touched coordinates** of `[gradient | loss sum | row count]` with a `SparseAllreduce`
/// (`--allreduce sparse`; or under `--allreduce auto` when the first step is sparse enough, see
/// `SparseSelection`): the coordinates the trainer declares (`touched`: the batch's columns mapped through
/// `Model.gradientCoordinates`), or else the buffer's entries whose bits are not +0 (a −0 counts: the dense
/// sum would meet it), plus the loss sum and the row count.
///
/// Result: the same buffer as `FlatReducer` over `rd` would give, bit for bit (`SparseAllreduce` keeps rd's
/// order; untouched coordinates are +0 on every rank and stay +0), with the union of every rank's touched
/// coordinates as `reducedSupport`, so the trainer's divergence check and, where that gives the same bits,
/// the optimizer update run over the union only. The next step's buffer is re-zeroed only at the union (and
/// the tail); after a dense step, whole.
///
/// Cost per step: the sparse allreduce of `u` entries (see `SparseAllreduce`), a pass over the union to
/// scale, and, without declared coordinates, one pass over the whole buffer to find the entries. Under
/// `auto` once: one allreduce of a count. When `auto` decides dense, every step is `FlatReducer`'s.
final class SparseReducer: GradientReducer {
    let comm: Communicator
    let count: Int
    /// The dense algorithm `auto` may fall back to (nil: always sparse).
    let dense: AllreduceAlgorithm?
    let selection: SparseSelection?
    let collectiveTimeout: Double
    let note: (String) -> Void
    /// The sparse allreduce: `--allreduce sparse`'s algorithm itself (so a wrapper around it sees the calls),
    /// or one of its own under `auto`.
    let sparse: SparseAllreduceAlgorithm
    private let sums: ReduceBuffer
    /// Decided by the first step under `auto`; always true without.
    private var usesSparse: Bool?
    /// What the buffer may hold off +0 before the next `begin`: everything, or the support and the tail.
    private var wholeBufferDirty = false
    private var declared: [Int32]?
    private var indices: [Int32] = []
    private var values: [Float] = []
    /// The last result's support (coordinates below `count`), kept at a stable address.
    private var support = UnsafeMutableBufferPointer<Int32>.allocate(capacity: 1)
    private var supportCount = 0

    init(comm: Communicator, count: Int, sparse: SparseAllreduceAlgorithm, dense: AllreduceAlgorithm?, selection: SparseSelection?,
         collectiveTimeout: Double, note: @escaping (String) -> Void) {
        precondition(count + 2 <= Int(Int32.max), "SparseReducer: \(count) parameters do not fit Int32 positions")
        self.comm = comm
        self.count = count
        self.dense = dense
        self.selection = selection
        self.collectiveTimeout = collectiveTimeout
        self.note = note
        self.sparse = sparse
        sums = ReduceBuffer(count: count + 2)
        usesSparse = selection == nil ? true : nil
    }

    deinit { support.deallocate() }

    var reducedSupport: UnsafeBufferPointer<Int32>? {
        usesSparse == true ? UnsafeBufferPointer(start: support.baseAddress, count: supportCount) : nil
    }

    func begin(step number: Int, holding: Range<Int>, rows: (Range<Int>) -> [Int]) -> [Contribution] {
        if wholeBufferDirty {
            sums.buffer.initialize(repeating: 0)
            wholeBufferDirty = false
        } else {
            for k in 0..<supportCount { sums.base[Int(support[k])] = 0 }
            sums.base[count] = 0
            sums.base[count + 1] = 0
        }
        supportCount = 0
        declared = nil
        return [Contribution(rows: rows(holding), buffer: sums.base)]
    }

    func touched(_ coordinates: [Int32]) { declared = coordinates }

    /// Until `auto` has chosen dense: the coordinates are what the sparse path (and the choice) reads.
    var wantsTouchedCoordinates: Bool { usesSparse != false }

    func finish(step number: Int, globalRows: Int, gate: () throws -> Void) throws -> UnsafeMutableBufferPointer<Float> {
        try gate()
        let n = count, base = sums.base
        // The entries: declared, or found (bits not +0).
        indices.removeAll(keepingCapacity: true)
        if let declared { indices.append(contentsOf: declared) } else {
            for i in 0..<n where base[i].bitPattern != 0 { indices.append(Int32(i)) }
        }
        let phase = "the gradient allreduce of step \(number)"
        if usesSparse == nil, let selection {
            let touched = try comm.watched(phase, seconds: collectiveTimeout) { try comm.allreduced(Int64(indices.count), op: .sum) }
            let choice = selection.prefersSparse(touched: Int(touched), dimension: n, ranks: comm.size)
            usesSparse = choice
            if comm.rank == 0 {
                note(String(format: "allreduce auto: step %d: each rank touched on average %.3g%% of the %d gradient coordinates: %@", number,
                            100 * Double(touched) / Double(Swift.max(1, n) * comm.size), n, choice ? "sparse (only the touched coordinates)" : "dense"))
            }
        }
        guard usesSparse == true else {
            wholeBufferDirty = true
            let whole = sums.buffer
            try comm.watched(phase, seconds: collectiveTimeout) { try dense!.run(whole, op: .sum) }
            Vector.scale(1 / whole[n + 1], whole.baseAddress!, n)
            return whole
        }
        indices.append(Int32(n))
        indices.append(Int32(n + 1))
        values.removeAll(keepingCapacity: true)
        for i in indices { values.append(base[Int(i)]) }
        try comm.watched(phase, seconds: collectiveTimeout) {
            try indices.withUnsafeBufferPointer { i in
                try values.withUnsafeBufferPointer { v in
                    let union = try sparse.run(SparseEntries(indices: i, values: v), dimension: n + 2, op: .sum)
                    // The union ends with the tail (n, n + 1): every rank lists both.
                    let m = union.count - 2
                    if support.count < m {
                        support.deallocate()
                        support = .allocate(capacity: Swift.max(m, support.count * 3 / 2))
                    }
                    // Written back as the mean: the multiplication `Vector.scale` does, at the union only (+0 elsewhere
                    // stays +0, as the dense scale leaves it).
                    base[n] = union.values[m]
                    base[n + 1] = union.values[m + 1]
                    let scale = 1 / base[n + 1]
                    for j in 0..<m { base[Int(union.indices[j])] = union.values[j] * scale }
                    _ = support.initialize(from: union.indices[0..<m])
                    supportCount = m
                }
            }
        }
        return sums.buffer
    }
}
