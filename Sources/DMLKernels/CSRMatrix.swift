internal import CDMLKernels

/// Rows stored sparsely (compressed sparse row): for row r, the non-zeros are
/// `indices[rowStarts[r] ..< rowStarts[r + 1]]` (0-based column indices, strictly increasing within a row) with
/// `values` at the same positions. What LIBSVM input stays as on each rank (`--sparse`).
///
/// Invariants: `rowStarts.count == rows + 1`, `rowStarts[0] == 0`, non-decreasing, `rowStarts[rows] ==
/// indices.count == values.count`; every index in `0 ..< columns`; indices strictly increasing within a row
/// (the LIBSVM reader refuses anything else, and feature hashing merges the values of one bucket).
/// Memory: `8·(rows + 1) + 8·nonZeros` bytes (`bytes`).
public struct CSRMatrix: Sendable, Equatable {
    /// Columns (features) of every row.
    public var columns: Int
    /// `rows + 1` offsets into `indices` and `values`.
    public var rowStarts: [Int]
    /// Column of each non-zero, 0-based.
    public var indices: [Int32]
    public var values: [Float]

    public init(columns: Int, rowStarts: [Int], indices: [Int32], values: [Float]) {
        precondition(rowStarts.first == 0 && rowStarts.last == indices.count && indices.count == values.count,
                     "CSR row starts must run from 0 to the number of non-zeros")
        self.columns = columns
        self.rowStarts = rowStarts
        self.indices = indices
        self.values = values
    }

    /// No rows, `columns` wide.
    public init(columns: Int) { self.init(columns: columns, rowStarts: [0], indices: [], values: []) }

    /// The non-zeros of dense row-major `rows × columns` values (exact zeros left out). Cost one pass.
    public init(dense x: [Float], rows: Int, columns: Int) {
        precondition(x.count == rows * columns)
        var starts = [0], indices: [Int32] = [], values: [Float] = []
        starts.reserveCapacity(rows + 1)
        for r in 0..<rows {
            for j in 0..<columns where x[r * columns + j] != 0 {
                indices.append(Int32(j))
                values.append(x[r * columns + j])
            }
            starts.append(indices.count)
        }
        self.init(columns: columns, rowStarts: starts, indices: indices, values: values)
    }

    public var rows: Int { rowStarts.count - 1 }
    public var nonZeros: Int { indices.count }
    /// Bytes the three arrays hold (their used part).
    public var bytes: Int { 8 * rowStarts.count + 4 * indices.count + 4 * values.count }

    /// The dense row-major `rows × columns` values. Cost `rows·columns` floats.
    public func dense() -> [Float] {
        var x = [Float](repeating: 0, count: rows * columns)
        for r in 0..<rows {
            for k in rowStarts[r]..<rowStarts[r + 1] { x[r * columns + Int(indices[k])] = values[k] }
        }
        return x
    }

    /// Appends row `r` of `other` (same width).
    public mutating func append(row r: Int, of other: CSRMatrix) {
        let lo = other.rowStarts[r], hi = other.rowStarts[r + 1]
        indices.append(contentsOf: other.indices[lo..<hi])
        values.append(contentsOf: other.values[lo..<hi])
        rowStarts.append(indices.count)
    }

    /// Keeps the rows for which `keep(r)` is true, in order, compacting the arrays in place (no second copy of
    /// the matrix: what a validation split needs at rcv1 size). Cost one pass over the non-zeros.
    public mutating func retainRows(where keep: (Int) -> Bool) {
        var write = 0, row = 0
        let n = rows
        for r in 0..<n {
            let lo = rowStarts[r], hi = rowStarts[r + 1]
            guard keep(r) else { continue }
            if write != lo {
                for k in lo..<hi { indices[write + k - lo] = indices[k]; values[write + k - lo] = values[k] }
            }
            write += hi - lo
            row += 1
            rowStarts[row] = write
        }
        rowStarts.removeLast(n - row)
        indices.removeLast(indices.count - write)
        values.removeLast(values.count - write)
    }

    /// Calls `body` with a view of rows `range` (no copy: the view's row starts point into this matrix's).
    public func withView<R>(rows range: Range<Int>, _ body: (CSRView) -> R) -> R {
        rowStarts.withUnsafeBufferPointer { s in
            indices.withUnsafeBufferPointer { i in
                values.withUnsafeBufferPointer { v in
                    body(CSRView(rowStarts: s.baseAddress! + range.lowerBound, indices: i.baseAddress ?? UnsafePointer(bitPattern: 8)!,
                                 values: v.baseAddress ?? UnsafePointer(bitPattern: 8)!, rows: range.count, columns: columns))
                }
            }
        }
    }

    /// Replaces this matrix's rows with `source`'s rows `rows` (global indices less `firstRow`), in that order:
    /// a shuffled mini-batch gathered into reused arrays. Cost: the batch's non-zeros copied once.
    public mutating func gather(_ source: CSRMatrix, rows: UnsafeBufferPointer<Int>, firstRow: Int) {
        columns = source.columns
        rowStarts.removeAll(keepingCapacity: true)
        indices.removeAll(keepingCapacity: true)
        values.removeAll(keepingCapacity: true)
        rowStarts.append(0)
        for g in rows { append(row: g - firstRow, of: source) }
    }
}

/// A block of CSR rows seen through pointers (a batch, or an evaluation block): row r's non-zeros are at
/// positions `rowStarts[r] ..< rowStarts[r + 1]` of `indices` and `values` (absolute positions, so a view of
/// rows in the middle of a matrix shares its arrays).
public struct CSRView {
    public let rowStarts: UnsafePointer<Int>
    public let indices: UnsafePointer<Int32>
    public let values: UnsafePointer<Float>
    public let rows: Int
    public let columns: Int
    /// The sorted union of the columns these rows touch, when whoever built the view has found it already
    /// (the trainer, which hands the same list to the sparse reducer): `SparseRows.accumulateTransposed` then
    /// takes its slots from it instead of finding the columns again. nil: not known. It must be exactly the
    /// union (`touchedColumns()`); a sub-view (`rows(_:_:)`) does not inherit it.
    public var touched: UnsafeBufferPointer<Int32>?

    public init(rowStarts: UnsafePointer<Int>, indices: UnsafePointer<Int32>, values: UnsafePointer<Float>, rows: Int, columns: Int) {
        (self.rowStarts, self.indices, self.values, self.rows, self.columns) = (rowStarts, indices, values, rows, columns)
    }

    /// This view with its touched columns given (`touched`; sorted, unique, exactly the union of its rows').
    public func withTouched(_ columns: UnsafeBufferPointer<Int32>) -> CSRView {
        var v = self
        v.touched = columns
        return v
    }

    /// Rows `first ..< first + count` of this view (no copy).
    public func rows(_ first: Int, _ count: Int) -> CSRView {
        precondition(first >= 0 && count >= 0 && first + count <= rows)
        return CSRView(rowStarts: rowStarts + first, indices: indices, values: values, rows: count, columns: columns)
    }

    public var nonZeros: Int { rowStarts[rows] - rowStarts[0] }

    /// The sorted union of the columns the rows touch (no duplicates), without scratch: the indices copied,
    /// sorted (`RadixSort`) and made unique. Cost O(nnz) time, 8·nnz bytes.
    public func touchedColumns() -> [Int32] {
        var all = Array(UnsafeBufferPointer(start: indices + rowStarts[0], count: nonZeros))
        RadixSort.sortNonNegative(&all)
        var n = 0
        for v in all where n == 0 || all[n - 1] != v { all[n] = v; n += 1 }
        all.removeLast(all.count - n)
        return all
    }
}

/// The two products every convex model (and an MLP's first layer) needs, on CSR rows, with the gradient
/// accumulated in Double over the touched coordinates only. Not for two threads at once (its scratch).
///
/// Numerics: each product of a Float value and a Float weight is exact in Double (24 + 24 bits), so the sums
/// below are Double sums of exact terms, rounded once to Float at the end: more careful than the dense path
/// (Float32 FMA chains, rows combined pairwise beyond `Gemm.rowBlock`), and independent of how many rows a
/// block has. Deterministic: the order of additions depends only on the rows (row order, then index order).
/// A row's forward scores depend on that row and the weights alone (the prediction invariant).
public final class SparseRows {
    /// Per column: its slot in the Double accumulator (or -1), `columns` Int32: reset after each accumulation.
    private var slot: UnsafeMutablePointer<Int32>
    private var slotCapacity = 0
    private var sumBuffer: UnsafeMutablePointer<Double>
    private var sumCapacity = 1
    /// The touched columns in the order first met, a slot each.
    private var touchedBuffer: UnsafeMutablePointer<Int32>
    private var touchedCapacity = 1
    /// One bit per column (`touchedColumns`), all clear between calls.
    private var bits: UnsafeMutablePointer<UInt64>
    private var bitCapacity = 0

    public init() {
        slot = .allocate(capacity: 1)
        bits = .allocate(capacity: 1)
        sumBuffer = .allocate(capacity: 1)
        touchedBuffer = .allocate(capacity: 1)
    }

    deinit {
        slot.deallocate()
        bits.deallocate()
        sumBuffer.deallocate()
        touchedBuffer.deallocate()
    }

    private func ensure(columns: Int) {
        if columns > slotCapacity {
            slot.deallocate()
            slot = .allocate(capacity: columns)
            slot.initialize(repeating: -1, count: columns)
            slotCapacity = columns
        }
    }

    /// `out[r·ldo + c] = Σ_k X[r, k]·W[c·ldw + k]` for each row r and output c < `outputs`: `X·Wᵀ` with W
    /// `outputs × columns` (row stride `ldw`). Each value is two Double sums of exact products over the row's
    /// non-zeros (those at even and at odd positions of the row, each in index order) added and rounded once:
    /// the same order, so the same bits, whichever way it is computed. With several outputs and at least as
    /// many non-zeros as columns, W is first transposed (`columns × outputs` scratch) so that each non-zero
    /// reads one contiguous row of it, as scipy's `X @ W` does; otherwise each output gathers from its row of
    /// W. A row's values depend on that row and W alone. Cost 2·nnz·outputs flops (+ columns·outputs copies).
    public static func forward(_ x: CSRView, weights w: UnsafePointer<Float>, ldw: Int, outputs: Int,
                               into out: UnsafeMutablePointer<Float>, ldo: Int) {
        if outputs > 1 && x.columns <= x.nonZeros {
            return withUnsafeTemporaryAllocation(of: Float.self, capacity: x.columns * outputs) { wt in
                for c in 0..<outputs { for j in 0..<x.columns { wt[j * outputs + c] = w[c * ldw + j] } }
                withUnsafeTemporaryAllocation(of: Double.self, capacity: 2 * outputs) { scratch in
                    // C, dispatched: the same order as the loop below, so the same bits.
                    dml_kernels().pointee.csr_forward_t(x.rows, x.rowStarts, x.indices, x.values, wt.baseAddress!, outputs,
                                                       out, ldo, scratch.baseAddress!)
                }
            }
        }
        for r in 0..<x.rows {
            let lo = x.rowStarts[r], hi = x.rowStarts[r + 1]
            for c in 0..<outputs {
                let wc = w + c * ldw
                var s0 = 0.0, s1 = 0.0
                var k = lo
                while k + 1 < hi {
                    s0 += Double(x.values[k]) * Double(wc[Int(x.indices[k])])
                    s1 += Double(x.values[k + 1]) * Double(wc[Int(x.indices[k + 1])])
                    k += 2
                }
                if k < hi { s0 += Double(x.values[k]) * Double(wc[Int(x.indices[k])]) }
                out[r * ldo + c] = Float(s0 + s1)
            }
        }
    }

    /// `grad[c·ldg + k] += Σ_r G[r·ldd + c]·X[r, k]` for every touched column k and output c < `outputs`:
    /// `Gᵀ·X` scattered into the touched coordinates only (every other entry of `grad` is left as it was). Each
    /// sum is a Double sum of exact products in row order (then index order), added into `grad` once, and
    /// only when it is not zero. With at least as many non-zeros as columns (a large batch) the sums live in a
    /// `columns × outputs` Double array indexed by column, as scipy's `X.T @ G` scatters; otherwise a column
    /// met for the first time gets the next slot of a compact accumulator (`slot`, reset afterwards). The
    /// same order either way, so the same bits. Cost 2·nnz·outputs flops plus O(min(nnz, columns)·outputs);
    /// scratch `columns` Int32 and `min(nnz, columns)·outputs` Doubles (kept, grown on demand).
    public func accumulateTransposed(_ x: CSRView, deltas g: UnsafePointer<Float>, ldd: Int, outputs: Int,
                                     into grad: UnsafeMutablePointer<Float>, ldg: Int) {
        let byColumn = x.columns <= x.nonZeros
        if !byColumn { ensure(columns: x.columns) }
        let most = Swift.min(x.nonZeros, x.columns)
        if sumCapacity < most * outputs || touchedCapacity < most {
            sumBuffer.deallocate()
            touchedBuffer.deallocate()
            sumCapacity = Swift.max(most * outputs, 1)
            touchedCapacity = Swift.max(most, 1)
            sumBuffer = .allocate(capacity: sumCapacity)
            touchedBuffer = .allocate(capacity: touchedCapacity)
        }
        let acc = sumBuffer, order = touchedBuffer, slot = self.slot
        if !byColumn, let known = x.touched {
            // The columns are known (sorted): slot s is the s-th touched column, so no first-met test per
            // non-zero. Each column's sum is added in the same order as below: the same bits.
            for (s, j) in known.enumerated() { slot[Int(j)] = Int32(s) }
            acc.update(repeating: 0, count: known.count * outputs)
            for r in 0..<x.rows {
                let gr = g + r * ldd
                for k in x.rowStarts[r]..<x.rowStarts[r + 1] {
                    let a = acc + Int(slot[Int(x.indices[k])]) * outputs
                    let v = Double(x.values[k])
                    if outputs == 1 { a[0] += Double(gr[0]) * v } else { for c in 0..<outputs { a[c] += Double(gr[c]) * v } }
                }
            }
            for (s, j32) in known.enumerated() {
                let j = Int(j32)
                for c in 0..<outputs where acc[s * outputs + c] != 0 { grad[c * ldg + j] += Float(acc[s * outputs + c]) }
                slot[j] = -1
            }
            return
        }
        if byColumn {
            acc.update(repeating: 0, count: x.columns * outputs)
            // C, dispatched: rows in order, each non-zero's products added in order (the slotted loop's order).
            dml_kernels().pointee.csr_scatter(x.rows, x.rowStarts, x.indices, x.values, g, ldd, outputs, acc)
            for j in 0..<x.columns {
                for c in 0..<outputs where acc[j * outputs + c] != 0 { grad[c * ldg + j] += Float(acc[j * outputs + c]) }
            }
            return
        }
        var t = 0
        for r in 0..<x.rows {
            let gr = g + r * ldd
            for k in x.rowStarts[r]..<x.rowStarts[r + 1] {
                let j = Int(x.indices[k])
                var s = Int(slot[j])
                if s < 0 {
                    s = t
                    slot[j] = Int32(t)
                    order[t] = Int32(j)
                    t += 1
                    (acc + s * outputs).update(repeating: 0, count: outputs)
                }
                let v = Double(x.values[k])
                let a = acc + s * outputs
                if outputs == 1 { a[0] += Double(gr[0]) * v } else { for c in 0..<outputs { a[c] += Double(gr[c]) * v } }
            }
        }
        for s in 0..<t {
            let j = Int(order[s])
            for c in 0..<outputs where acc[s * outputs + c] != 0 { grad[c * ldg + j] += Float(acc[s * outputs + c]) }
            slot[j] = -1
        }
    }

    /// `out[r·ldo + c] = x_r · W[c, ·]` from W already transposed (`wt`: `columns × outputs`, row-major), for a
    /// caller that runs many blocks against the same weights and transposes them once: the same kernel, so the
    /// same bits, as `forward`'s transposed path (and as its gathering path: the same order of additions).
    /// Cost 2·nnz·outputs flops, no copy of W.
    public static func forward(_ x: CSRView, transposedWeights wt: UnsafePointer<Float>, outputs: Int,
                               into out: UnsafeMutablePointer<Float>, ldo: Int) {
        withUnsafeTemporaryAllocation(of: Double.self, capacity: 2 * outputs) { scratch in
            dml_kernels().pointee.csr_forward_t(x.rows, x.rowStarts, x.indices, x.values, wt, outputs, out, ldo, scratch.baseAddress!)
        }
    }

    /// `out[r] = x_r · w` for one output, each a Double sum of exact products in eight chains (positions mod 8
    /// within the row) combined in a fixed tree, rounded once: the same bits on every ISA, not `forward`'s
    /// (two chains); for the full-batch passes, whose long rows one chain's latency would hold up. Cost 2·nnz flops.
    public static func margins(_ x: CSRView, weights w: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>) {
        dml_kernels().pointee.csr_margins(x.rows, x.rowStarts, x.indices, x.values, w, out)
    }

    /// `sums[j·outputs + c] += Σ_r G[r·ldd + c]·X[r, j]` in Double, for every non-zero of `x`: rows in order, each
    /// row's non-zeros in index order (the order `accumulateTransposed` sums in), with no rounding to Float. Calls
    /// on consecutive blocks of rows add up to one call on all of them, bit for bit. Cost 2·nnz·outputs flops.
    public static func accumulateTransposed(_ x: CSRView, deltas g: UnsafePointer<Float>, ldd: Int, outputs: Int,
                                            intoSums sums: UnsafeMutablePointer<Double>) {
        dml_kernels().pointee.csr_scatter(x.rows, x.rowStarts, x.indices, x.values, g, ldd, outputs, sums)
    }

    /// The sorted union of the columns `x` touches (see `CSRView.touchedColumns`), marked in this object's
    /// bitmap (`columns` bits: 512 KiB for 2^22 columns, which stays in a core's L2 where a byte per column
    /// would not), then a radix sort of the unique columns only. Cost O(nnz + t) for t touched columns.
    public func touchedColumns(_ x: CSRView) -> [Int32] {
        let words = (x.columns + 63) / 64
        if words > bitCapacity {
            bits.deallocate()
            bits = .allocate(capacity: words)
            bits.initialize(repeating: 0, count: words)
            bitCapacity = words
        }
        var out: [Int32] = []
        out.reserveCapacity(Swift.min(x.nonZeros, x.columns))
        let bits = self.bits
        for k in x.rowStarts[0]..<x.rowStarts[x.rows] {
            let j = Int(x.indices[k])
            let bit: UInt64 = 1 << UInt64(j & 63)
            if bits[j >> 6] & bit == 0 { bits[j >> 6] |= bit; out.append(x.indices[k]) }
        }
        for j in out { bits[Int(j) >> 6] = 0 }
        RadixSort.sortNonNegative(&out)
        return out
    }
}
