internal import CDMLKernels
/// Level-1 kernels over raw Float buffers.
///
/// Reductions (dot, sum) use several explicit SIMD accumulators: the compiler never reorders float
/// additions on its own, so a plain loop would run one scalar add per cycle. The loops are C (CDMLKernels),
/// dispatched for the CPU: compiled for the baseline ISA, Swift SIMD ran them at 0.05× (dot, axpy: without an
/// FMA instruction `addProduct` is a call to `fmaf` per lane) to 0.8× (sum) of their AVX2 speed
/// (benchmarks/RESULTS.md). Each gives the same bits on every ISA.
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

    /// `Σ x[i]·y[i]` for `i < n`: four eight-lane accumulators over blocks of 32, summed in a fixed tree, then
    /// the tail; the same bits on every ISA. 2n flops.
    public static func dot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ n: Int) -> Float {
        dml_dot(x, y, n)
    }

    /// `y[i] = fma(a, x[i], y[i])` for `i < n`. 2n flops; over the kernel threads from `parallelMinimum` on.
    public static func axpy(_ a: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        split(n) { lo, count in dml_axpy(a, x + lo, y + lo, count) }
    }

    /// `x[i] *= a` for `i < n`; over the kernel threads from `parallelMinimum` on.
    public static func scale(_ a: Float, _ x: UnsafeMutablePointer<Float>, _ n: Int) {
        let kernel = dml_kernels().pointee.scale
        split(n) { lo, count in kernel(a, x + lo, count) }
    }

    /// `x[i] = 0` for `i < n` (a gradient buffer before a step); over the kernel threads from `parallelMinimum` on.
    public static func zero(_ x: UnsafeMutablePointer<Float>, _ n: Int) {
        split(n) { lo, count in (x + lo).update(repeating: 0, count: count) }
    }

    /// Element-wise passes over at least this many floats (256 KiB: a model's gradient and parameters, an
    /// optimizer's update) are cut into fixed runs of `parallelRun` and shared by `KernelThreads`; each element is
    /// computed by one thread with the same operations, so the bits do not depend on T. Shorter passes (a few
    /// microseconds) stay on the calling thread.
    public static let parallelMinimum = 1 << 16, parallelRun = 1 << 14

    /// Runs `body(lo, count)` over `0..<n`: whole on the caller when n < `parallelMinimum` or with one thread,
    /// else in runs of `parallelRun` over the kernel threads. For element-wise passes (any split, the same bits).
    @inline(__always)
    public static func split(_ n: Int, _ body: (Int, Int) -> Void) {
        if n < parallelMinimum || KernelThreads.count == 1 { return body(0, n) }
        KernelThreads.parallel(units: (n + parallelRun - 1) / parallelRun) { begin, end in
            body(begin * parallelRun, Swift.min(n, end * parallelRun) - begin * parallelRun)
        }
    }

    /// `Σ x[i]` for `i < n`: blocks of `sumBlock` elements (four eight-lane accumulators, 128 terms per lane),
    /// whose sums are combined pairwise (a binary counter of partial sums, as `PairwiseSums`), so the
    /// rounding error grows like log₂(n) rather than n (it is e.g. a bias gradient: a sum over a batch's
    /// rows). The order depends only on n: deterministic. n flops; no allocation (64 floats of stack).
    public static func sum(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        let blockSum = dml_kernels().pointee.sum
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
        // A large batch is copied by the kernel threads, each a fixed run of rows (a copy: the same bytes).
        let perRun = Swift.max(1, parallelRun / Swift.max(1, width))
        if rows.count * width >= parallelMinimum && KernelThreads.count > 1 && rows.count > perRun {
            return KernelThreads.parallel(units: (rows.count + perRun - 1) / perRun) { begin, end in
                let lo = begin * perRun, hi = Swift.min(rows.count, end * perRun)
                gatherRows(source, width: width, rows: UnsafeBufferPointer(rebasing: rows[lo..<hi]), firstRow: firstRow,
                           into: destination + lo * width)
            }
        }
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
