import CKernelHints
/// Level-1 kernels over raw Float buffers.
///
/// Reductions (dot, sum) use several explicit SIMD accumulators: the compiler never reorders float
/// additions on its own, so a plain loop would run one scalar add per cycle. Element-wise loops (axpy,
/// scale) are written with SIMD too, so that they do not depend on the auto-vectoriser.
/// All functions take counts explicitly and allocate nothing.
public enum Vector {
    public typealias V = SIMD8<Float>

    @inlinable @inline(__always)
    public static func load(_ p: UnsafePointer<Float>) -> V {
        UnsafeRawPointer(p).loadUnaligned(as: V.self)
    }

    @inlinable @inline(__always)
    public static func store(_ v: V, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self)
    }

    /// `Σ x[i]·y[i]` for `i < n`. 2n flops.
    @inlinable @inline(__always)
    public static func dot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ n: Int) -> Float {
        var a0 = V(), a1 = V(), a2 = V(), a3 = V()
        var i = 0
        while i + 32 <= n {
            a0.addProduct(load(x + i), load(y + i))
            a1.addProduct(load(x + i + 8), load(y + i + 8))
            a2.addProduct(load(x + i + 16), load(y + i + 16))
            a3.addProduct(load(x + i + 24), load(y + i + 24))
            i += 32
        }
        while i + 8 <= n {
            a0.addProduct(load(x + i), load(y + i))
            i += 8
        }
        var s = ((a0 + a1) + (a2 + a3)).sum()
        while i < n {
            s = s.addingProduct(x[i], y[i])
            i += 1
        }
        return s
    }

    /// `y[i] += a·x[i]` for `i < n`. 2n flops.
    @inlinable @inline(__always)
    public static func axpy(_ a: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        let av = V(repeating: a)
        var i = 0
        while i + 16 <= n {
            var y0 = load(y + i), y1 = load(y + i + 8)
            y0.addProduct(av, load(x + i))
            y1.addProduct(av, load(x + i + 8))
            store(y0, y + i)
            store(y1, y + i + 8)
            i += 16
        }
        while i + 8 <= n {
            var y0 = load(y + i)
            y0.addProduct(av, load(x + i))
            store(y0, y + i)
            i += 8
        }
        while i < n {
            y[i] = y[i].addingProduct(a, x[i])
            i += 1
        }
    }

    /// `x[i] *= a` for `i < n`.
    @inlinable @inline(__always)
    public static func scale(_ a: Float, _ x: UnsafeMutablePointer<Float>, _ n: Int) {
        let av = V(repeating: a)
        var i = 0
        while i + 8 <= n {
            store(load(x + i) * av, x + i)
            i += 8
        }
        while i < n {
            x[i] *= a
            i += 1
        }
    }

    /// `Σ x[i]` for `i < n`: blocks of `sumBlock` elements (four SIMD8 accumulators, 128 terms per lane),
    /// whose sums are combined pairwise (a binary counter of partial sums, as `PairwiseSums`), so the
    /// rounding error grows like log₂(n) rather than n (it is e.g. a bias gradient: a sum over a batch's
    /// rows). The order depends only on n: deterministic. n flops; no allocation (64 floats of stack).
    public static func sum(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        if n <= sumBlock { return blockSum(x, n) }
        return withUnsafeTemporaryAllocation(of: Float.self, capacity: Int.bitWidth) { slots in
            var count = 0, i = 0
            while i < n {
                var s = blockSum(x + i, Swift.min(sumBlock, n - i))
                var level = 0
                while (count >> level) & 1 == 1 {
                    s += slots[level]
                    level += 1
                }
                slots[level] = s
                count += 1
                i += sumBlock
            }
            var bits = count
            var total = slots[bits.trailingZeroBitCount]
            bits &= bits - 1
            while bits != 0 {
                total += slots[bits.trailingZeroBitCount]
                bits &= bits - 1
            }
            return total
        }
    }

    /// Elements per block of `sum`.
    public static let sumBlock = 4096

    /// `Σ x[i]` for `i < n` with four SIMD8 accumulators (each lane a naive sum of n/32 terms).
    @inline(__always)
    static func blockSum(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        var a0 = V(), a1 = V(), a2 = V(), a3 = V()
        var i = 0
        while i + 32 <= n {
            a0 += load(x + i)
            a1 += load(x + i + 8)
            a2 += load(x + i + 16)
            a3 += load(x + i + 24)
            i += 32
        }
        while i + 8 <= n {
            a0 += load(x + i)
            i += 8
        }
        var s = ((a0 + a1) + (a2 + a3)).sum()
        while i < n {
            s += x[i]
            i += 1
        }
        return s
    }

    /// The largest element of `x[0..<n]` (`-infinity` for n = 0).
    @inlinable
    public static func max(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        var m = -Float.infinity
        for i in 0..<n where x[i] > m { m = x[i] }
        return m
    }
}

extension Vector {
    /// Copies row `rows[i] − firstRow` of `source` (rows of `width` floats) to row i of `destination`:
    /// `rows` holds global row numbers, `source` starts at global row `firstRow`.
    /// Rows scattered through a large array cost a memory latency each where they start; prefetching the
    /// rows `lookahead` ahead keeps several of those misses in flight.
    public static func gatherRows(_ source: UnsafePointer<Float>, width: Int, rows: UnsafeBufferPointer<Int>,
                                  firstRow: Int = 0, into destination: UnsafeMutablePointer<Float>) {
        let lookahead = 4, floatsPerLine = 16
        @inline(__always) func row(_ i: Int) -> UnsafePointer<Float> { source + (rows[i] - firstRow) * width }
        for i in 0..<min(lookahead, rows.count) { prefetchRow(row(i), width, floatsPerLine) }
        for i in 0..<rows.count {
            if i + lookahead < rows.count { prefetchRow(row(i + lookahead), width, floatsPerLine) }
            (destination + i * width).update(from: row(i), count: width)
        }
    }

    @inline(__always)
    static func prefetchRow(_ row: UnsafePointer<Float>, _ width: Int, _ step: Int) {
        var o = 0
        while o < width {
            dml_prefetch_read(row + o)
            o += step
        }
    }
}
