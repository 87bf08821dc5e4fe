import DMLComm
import DMLData
import DMLKernels
import DMLModels

/// `--reproducible` for CSR rows (`--sparse on`, LIBSVM read sparse, hashed features) with the mini-batch
/// optimizers: the mean gradient, loss and row count of a step with the same bits for any number of ranks,
/// at the cost of the sparse reduction rather than the whole parameter vector.
///
/// As `ReproducibleReducer` for dense rows: the rows are moved at `attach` so that every rank holds whole
/// blocks of `Reproducible.blockRows` (64) global rows (`Dataset.movedIntoBlocks`: CSR rows travel with their
/// exact non-zeros), the sampler's batches are whole blocks, and a **leaf** is one block of the batch: one
/// model call over its rows in ascending order into its own zeroed buffer, the same bits on whichever rank.
/// What differs is the sum:
/// - **Only the touched coordinates.** A leaf's gradient can be non-zero only at the coordinates its rows'
///   columns touch (`Model.gradientCoordinates(touchingColumns:)`), found here from the leaf's CSR rows. The
///   leaf buffers are kept zero elsewhere (re-zeroed at those coordinates after each step, never whole).
/// - **Exact integers.** The batch's largest |gradient| and |loss| over every leaf comes from an allreduce-max
///   of 2 Doubles; each leaf value is then turned into Int64 fixed point with the scale 2^k of that maximum
///   (`ReproducibleReducer.exponent`: the batch's L leaves sum below 2^62) and added into one Int64 accumulator
///   per rank at its coordinates; the rank's union of coordinates (with the loss and row count as the last two
///   positions) goes through `SparseAllreduce`'s recursive-doubling merge with Int64 values. Integer sums are
///   exact in any order, so the union and its sums do not depend on who held which leaf.
/// - The mean is formed from the integers in Double and rounded once to Float at the union (`reducedSupport`);
///   every other coordinate is +0 on every rank, so plain SGD updates the union only.
///
/// Precision: as `ReproducibleReducer` (each value truncated to a multiple of 2^−k, k from the batch's largest
/// |value| M: an error below 4·M·L·2^−62). A non-finite value anywhere makes the loss NaN on every rank (the
/// divergence guard stops every rank alike).
///
/// Cost per step, u the union of the batch's touched coordinates, t_ℓ a leaf's: the leaves' model calls (the
/// same flops as one call over the rank's rows), an allreduce of 2 Doubles, a pass over each leaf's t_ℓ
/// coordinates (max, quantise, re-zero), a sort of the rank's coordinates, and the sparse allreduce of the
/// rank's union in 16-byte (position, Int64) pairs — twice the bytes of the Float `--allreduce sparse`, nothing
/// of the parameter count n on the wire. Memory: one buffer of n + 2 Floats per leaf a rank holds in a step (the
/// dense reducer's too) and n Int64 of accumulator. (The dense Int64 allreduce would be exact as well, but sends
/// 8n bytes a step: 32 MiB for 2^22 hashed features however few a batch touches.)
final class ReproducibleSparseReducer: GradientReducer {
    let comm: Communicator
    let model: Model
    let count: Int
    let collectiveTimeout: Double
    private let moves: PrivateCommunicator
    private let sparse: SparseAllreduce
    /// The rows after `attach` (whole blocks), to find each leaf's columns.
    private var train: Dataset?
    /// One buffer per leaf slot, n + 2 Floats, +0 everywhere between steps.
    private var buffers: [ReduceBuffer] = []
    private var leaves: [(buffer: UnsafeMutablePointer<Float>, rows: Int, coordinates: [Int32])] = []
    /// Σ of this rank's quantised leaves, n Int64: 0 everywhere between steps.
    private var accumulator: [Int64]
    private var positions: [Int32] = []
    private var sums: [Int64] = []
    /// Finds a leaf's columns (a bitmap of the columns and a radix sort of the touched ones).
    private let columnScratch = SparseRows()
    /// One bit per coordinate, all clear between steps: the rank's union of its leaves' coordinates.
    private var marks: [UInt64]
    private let result: ReduceBuffer
    /// The last result's support, kept at a stable address (`reducedSupport`).
    private var support = UnsafeMutableBufferPointer<Int32>.allocate(capacity: 1)
    private var supportCount = 0

    init(comm: Communicator, model: Model, collectiveTimeout: Double) {
        precondition(model.layout.count + 2 <= Int(Int32.max), "ReproducibleSparseReducer: \(model.layout.count) parameters do not fit Int32 positions")
        self.comm = comm
        self.model = model
        count = model.layout.count
        self.collectiveTimeout = collectiveTimeout
        moves = PrivateCommunicator(comm)
        sparse = SparseAllreduce(comm: comm)
        accumulator = [Int64](repeating: 0, count: count)
        marks = [UInt64](repeating: 0, count: (count + 63) / 64)
        result = ReduceBuffer(count: count + 2)
    }

    deinit { support.deallocate() }

    var reducedSupport: UnsafeBufferPointer<Int32>? { UnsafeBufferPointer(start: support.baseAddress, count: supportCount) }

    func attach(_ train: Dataset) throws -> Dataset {
        precondition(train.csr != nil, "ReproducibleSparseReducer takes CSR rows held in memory (ReducerKind.select)")
        try sparse.prepare()
        let targets = (0..<comm.size).map { ReproducibleReducer.rowRange(of: $0, ranks: comm.size, rows: train.globalRows) }
        let moved = try train.movedIntoBlocks(to: targets, comm: comm, via: try moves.get())
        self.train = moved
        return moved
    }

    /// One leaf per block of the batch that this rank holds, each with the gradient coordinates its rows touch.
    func begin(step number: Int, holding: Range<Int>, rows: (Range<Int>) -> [Int]) -> [Contribution] {
        // The last result's support back to +0.
        for k in 0..<supportCount { result.base[Int(support[k])] = 0 }
        supportCount = 0
        let mine = rows(holding), block = Reproducible.blockRows
        var runs: [ArraySlice<Int>] = []
        var start = mine.startIndex
        while start < mine.endIndex {
            var end = start + 1
            while end < mine.endIndex && mine[end] / block == mine[start] / block { end += 1 }
            runs.append(mine[start..<end])
            start = end
        }
        while buffers.count < runs.count { buffers.append(ReduceBuffer(count: count + 2)) }
        let csr = train!.csr!, first = train!.firstRow
        leaves = runs.enumerated().map { i, run in
            // A leaf is a whole block's rows, ascending: consecutive shard rows (else gathered).
            let lo = run.first! - first
            let columns = run.last! - run.first! + 1 == run.count
                ? csr.withView(rows: lo ..< lo + run.count) { columnScratch.touchedColumns($0) }
                : Self.sortedUnique(run.flatMap { r in csr.indices[csr.rowStarts[r - first] ..< csr.rowStarts[r - first + 1]] })
            let coordinates = columns.withUnsafeBufferPointer { model.gradientCoordinates(touchingColumns: $0) }
            return (buffers[i].base, run.count, coordinates)
        }
        return zip(runs, leaves).map { Contribution(rows: Array($0), buffer: $1.buffer) }
    }

    func finish(step number: Int, globalRows: Int, gate: () throws -> Void) throws -> UnsafeMutableBufferPointer<Float> {
        try gate()
        let n = count, whole = result.buffer
        // The batch's largest |gradient| and |loss| over every leaf (+infinity for a non-finite value): a max, exact in any order.
        var local = [0.0, 0.0]
        for leaf in leaves {
            for c in leaf.coordinates {
                let v = leaf.buffer[Int(c)]
                local[0] = Swift.max(local[0], v.isFinite ? Double(v.magnitude) : .infinity)
            }
            let loss = leaf.buffer[n]
            local[1] = Swift.max(local[1], loss.isFinite ? Double(loss.magnitude) : .infinity)
        }
        let largest = try comm.watched("the gradient scale of step \(number)", seconds: collectiveTimeout) {
            try comm.allreduced(local, op: .max)
        }
        let leafCount = (globalRows + Reproducible.blockRows - 1) / Reproducible.blockRows
        let kGradient = ReproducibleReducer.exponent(largest[0], leaves: leafCount)
        let kLoss = ReproducibleReducer.exponent(largest[1], leaves: leafCount)
        let (scaleGradient, scaleLoss) = (Double(sign: .plus, exponent: kGradient, significand: 1), Double(sign: .plus, exponent: kLoss, significand: 1))
        let finite = largest.allSatisfy { $0.isFinite }
        // Quantise each leaf into the accumulator at its coordinates (nothing when not finite: every rank sends zeros
        // and reports NaN), and put the leaf buffer back to +0 there.
        var loss: Int64 = 0, rowCount: Int64 = 0
        var union: [Int32] = []
        var values: [Int64] = []
        accumulator.withUnsafeMutableBufferPointer { q in
            marks.withUnsafeMutableBufferPointer { marks in
                for leaf in leaves {
                    let g = leaf.buffer
                    for c in leaf.coordinates {
                        let i = Int(c), bit: UInt64 = 1 << UInt64(i & 63)
                        if finite { q[i] += Int64(Double(g[i]) * scaleGradient) }
                        g[i] = 0
                        if marks[i >> 6] & bit == 0 { marks[i >> 6] |= bit; union.append(c) }
                    }
                    if finite { loss += Int64(Double(g[n]) * scaleLoss) }
                    rowCount += Int64(leaf.rows)
                    g[n] = 0
                    g[n + 1] = 0
                }
                // One leaf's coordinates are sorted already; several leaves' union is sorted here.
                if leaves.count > 1 { RadixSort.sortNonNegative(&union) }
                values.reserveCapacity(union.count + 2)
                for c in union {
                    let i = Int(c)
                    values.append(q[i])
                    q[i] = 0
                    marks[i >> 6] = 0
                }
            }
        }
        positions = union
        sums = values
        positions.append(Int32(n))
        positions.append(Int32(n + 1))
        sums.append(loss)
        sums.append(rowCount)
        try comm.watched("the gradient allreduce of step \(number)", seconds: collectiveTimeout) {
            try positions.withUnsafeBufferPointer { i in
                try sums.withUnsafeBufferPointer { v in
                    let union = try sparse.run(SparseEntries(indices: i, values: v), dimension: n + 2, op: .sum)
                    // The union ends with the tail (n, n + 1): every rank lists both.
                    let m = union.count - 2, rows = union.values[m + 1]
                    if support.count < m {
                        support.deallocate()
                        support = .allocate(capacity: Swift.max(m, support.count * 3 / 2))
                    }
                    let factor = Double(sign: .plus, exponent: -kGradient, significand: 1) / Double(rows)
                    for j in 0..<m { whole[Int(union.indices[j])] = Float(Double(union.values[j]) * factor) }
                    _ = support.initialize(from: union.indices[0..<m])
                    supportCount = m
                    whole[n] = finite ? Float(Double(union.values[m]) * Double(sign: .plus, exponent: -kLoss, significand: 1)) : .nan
                    whole[n + 1] = Float(rows)
                }
            }
        }
        return whole
    }

    /// `values` sorted ascending without repeats (`RadixSort`: O(count)).
    static func sortedUnique(_ values: [Int32]) -> [Int32] {
        var all = values
        RadixSort.sortNonNegative(&all)
        var n = 0
        for v in all where n == 0 || all[n - 1] != v { all[n] = v; n += 1 }
        all.removeLast(all.count - n)
        return all
    }
}
