import Foundation
internal import CDMLKernels

/// Level-2 and level-3 kernels over row-major Float matrices, with leading dimensions (strided views).
///
/// `gemm` follows the GotoBLAS/BLIS structure: the k dimension is cut into panels of `kc`, B's panel is
/// packed into column slivers of `nr` (kept in L3/L2), A's block of `mc` rows into row slivers of `mr` (kept
/// in L2), and a register-tiled micro-kernel computes an `mr × nr` tile of C from one sliver of each. The
/// micro-kernel is C (CDMLKernels), chosen at run time for the CPU (`KernelDispatch.isa`): 6 × 16 in 12 AVX2
/// registers, or 6 × 32 in 12 AVX-512 registers; packing and blocking stay here, packing B for the chosen
/// tile's width. Packing zero-pads edge slivers, so the tile's loop never branches on size; the tile writes only
/// the rows and columns that exist. Each element of C is one fused multiply-add chain over a panel of k
/// whatever the tile's shape, so every ISA gives the same bits.
public enum Gemm {
    public typealias V = SIMD8<Float>
    /// Micro-tile rows (the same for every ISA).
    public static let mr = 6
    /// Micro-tile columns of the active ISA's kernel (16 for AVX2 and generic, 32 for AVX-512).
    public static var nr: Int { dml_kernels().pointee.gemm_nr }
    /// Depth of a k panel. Fixed on every machine: the packed kernel sums each element over one panel in
    /// registers and adds the panels into C, so `kc` is part of the bits (a B sliver `kc × nr` is 16 or 32 KiB: L1).
    public static let kc = 256
    /// Rows of an A block `mc × kc`, kept in L2: a quarter of this CPU's L2 (`CacheSizes.current`), a multiple of
    /// `mr`, 48 … 1020 (1 MiB L2: 252 rows, 252 KiB). Tiles only M, so it changes no bit.
    public static let mc = blocks(CacheSizes.current).mc
    /// Columns of a B panel `kc × nc`, kept in L3: half of this core's share of the L3, a multiple of 64,
    /// 512 … 4096 (4 MiB of L3 per core: 2048). Tiles only N, so it changes no bit.
    public static let nc = blocks(CacheSizes.current).nc

    /// `mc` and `nc` for `caches` (see them).
    public static func blocks(_ caches: CacheSizes) -> (mc: Int, nc: Int) {
        let mc = Swift.min(1020, Swift.max(48, caches.l2 / 4 / (kc * 4) / mr * mr))
        let nc = Swift.min(4096, Swift.max(512, caches.l3PerCore / 2 / (kc * 4) / 64 * 64))
        return (mc, nc)
    }
    /// Rows summed in registers (or a small buffer) before a sum over rows hands its block partial to
    /// `PairwiseSums` (the few-class TN kernel, `gemvT`, `columnSums`). Small enough that a block's own
    /// rounding stays near Float32's precision; large enough that a mini-batch of 256 rows per rank is one
    /// block (no partials at all) and that storing and merging partials costs a few per cent at most.
    public static let rowBlock = 256
    /// Columns per pass of `gemvT` and `columnSums` (a 16 KiB partial, in L1): bounds their pairwise scratch
    /// (`slots · sumPanel` floats) whatever the number of features.
    static let sumPanel = 4096
    /// Columns per panel of the few-class TN kernel: a block of `rowBlock` rows of B (1 MiB) stays in L2
    /// while each group of five classes passes over it; bounds its scratch to `slots · m · skinnyPanel`.
    static let skinnyPanel = 1024

    @usableFromInline @inline(__always)
    static func load(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }

    @usableFromInline @inline(__always)
    static func store(_ v: V, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self) }

    /// `C = alpha·op(A)·op(B) + beta·C`, where `op(A)` is `m × k` and `op(B)` is `k × n`, all row-major.
    ///
    /// - `transA == false`: `A` is `m × k`, element (i, p) at `a[i·lda + p]`; `true`: `A` is stored `k × m`,
    ///   (i, p) at `a[p·lda + i]`. Likewise `B`: `k × n` at `b[p·ldb + j]`, or stored `n × k` at `b[j·ldb + p]`.
    /// - `beta == 0` never reads C (it may hold garbage); `beta == 1` accumulates.
    /// - Threads: with `KernelThreads.count` > 1, a call of at least `parallelMinimumFlops` is shared by the
    ///   threads: the packed route packs B once for all of them and cuts C into blocks (`parallelPacked`); the
    ///   few-class routes cut C into strips (`columnUnit`, `rowUnit`). The bits are those of one thread.
    /// - Cost: 2·m·n·k flops. Allocates nothing once warm: the packing buffers (and the few-class TN
    ///   kernel's pairwise scratch) come from `workspace`, by default the calling thread's own (created on
    ///   the thread's first call, then reused; the scratch grows to the largest k seen).
    /// - Sums over k: the packed kernel sums k in panels of `kc` in registers and adds the panels into C;
    ///   the few-class TN kernel (k = rows of a batch) sums blocks of `rowBlock` and combines the blocks
    ///   pairwise (`PairwiseSums`). Deterministic: the order depends only on the shapes.
    public static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                            a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                            beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
                            workspace: GemmWorkspace? = nil, epilogue: GemmEpilogue? = nil) {
        precondition(m >= 0 && n >= 0 && k >= 0)
        precondition(lda >= (transA ? m : k) && ldb >= (transB ? k : n) && ldc >= n,
                     "gemm: leading dimension smaller than the row")
        if m == 0 || n == 0 { return }
        if k == 0 || alpha == 0 {
            for i in 0..<m { scaleRow(c + i * ldc, n, beta) }
            epilogue?.apply(c, ldc: ldc, m: m, n: n)
            return
        }
        // A classifier's few-class side: no packing, no padding (Gemm+Skinny.swift). The route is chosen from
        // the whole shape, so a thread's strip of C is computed exactly as the single-threaded call would.
        let route: Route = !transA && transB && n <= skinnyLimit ? .skinnyNT
            : transA && !transB && m <= skinnyLimit ? .skinnyTN : .packed
        if KernelThreads.count > 1 && 2 * m * n * k >= parallelMinimumFlops {
            if route == .packed {  // B packed once for all threads, C in blocks (Gemm+Parallel.swift)
                return parallelPacked(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                                      b: b, ldb: ldb, beta: beta, c: c, ldc: ldc, epilogue: epilogue)
            }
            if n >= 2 * columnUnit {  // strips of columns: each thread packs A and its own columns of B
                return KernelThreads.parallel(units: (n + columnUnit - 1) / columnUnit) { begin, end in
                    let j0 = begin * columnUnit, j1 = Swift.min(n, end * columnUnit)
                    serial(route, transA: transA, transB: transB, m: m, n: j1 - j0, k: k, alpha: alpha, a: a, lda: lda,
                           b: transB ? b + j0 * ldb : b + j0, ldb: ldb, beta: beta, c: c + j0, ldc: ldc, workspace: nil,
                           epilogue: epilogue?.offset(row: 0, column: j0))
                }
            }
            if m >= 2 * rowUnit {  // strips of rows: each thread packs B and its own rows of A
                return KernelThreads.parallel(units: (m + rowUnit - 1) / rowUnit) { begin, end in
                    let i0 = begin * rowUnit, i1 = Swift.min(m, end * rowUnit)
                    serial(route, transA: transA, transB: transB, m: i1 - i0, n: n, k: k, alpha: alpha,
                           a: transA ? a + i0 : a + i0 * lda, lda: lda, b: b, ldb: ldb, beta: beta, c: c + i0 * ldc,
                           ldc: ldc, workspace: nil, epilogue: epilogue?.offset(row: i0, column: 0))
                }
            }
        }
        serial(route, transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
               beta: beta, c: c, ldc: ldc, workspace: workspace, epilogue: epilogue)
    }

    /// Which kernel computes a gemm, chosen from the whole call's shape.
    enum Route { case skinnyNT, skinnyTN, packed }

    /// Gemms of at least this many flops are split over `KernelThreads` (when it has more than one thread);
    /// smaller ones (about 10 µs on one core) stay on the calling thread, where the hand-off would not pay.
    public static let parallelMinimumFlops = 1 << 20
    /// The few-class routes' threaded split, fixed by the shape alone: strips of 32 columns of C (a multiple of
    /// every ISA's `nr`) when C has at least 64 columns, else strips of 24 rows (a multiple of `mr` and of the
    /// few-class NT kernel's row groups). Each element of C is computed by one thread exactly as by `serial`
    /// on the whole C, so the bits do not depend on the thread count.
    static let columnUnit = 32, rowUnit = 24

    /// The single-threaded gemm over (a strip of) C by `route`'s kernel.
    static func serial(_ route: Route, transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                       a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                       beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, workspace: GemmWorkspace?,
                       epilogue: GemmEpilogue?) {
        if route == .skinnyNT {
            skinnyNT(m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
            epilogue?.apply(c, ldc: ldc, m: m, n: n)
            return
        }
        let ws = workspace ?? GemmWorkspace.current
        if route == .skinnyTN {
            skinnyTN(m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc,
                     workspace: ws)
            epilogue?.apply(c, ldc: ldc, m: m, n: n)
            return
        }
        let packA = ws.packA, packB = ws.packB
        let kernels = dml_kernels().pointee  // one ISA for the whole call: packing and tiles agree on nr
        let nr = kernels.gemm_nr, tile = kernels.gemm_tile
        precondition(kernels.gemm_mr == mr && nc % nr == 0)
        var jc = 0
        while jc < n {
            let ncb = min(nc, n - jc)
            var pc = 0
            while pc < k {
                let kcb = min(kc, k - pc)
                packPanelB(transB, b, ldb, pc, jc, kcb, ncb, nr, packB)
                let betaHere: Float = pc == 0 ? beta : 1
                let lastPanel = pc + kcb == k  // the epilogue goes with the final write of each element
                var ic = 0
                while ic < m {
                    let mcb = min(mc, m - ic)
                    packBlockA(transA, a, lda, ic, pc, mcb, kcb, packA)
                    tiles(tile, nr: nr, kcb: kcb, packA: packA, rows: mcb, packB: packB, columns: 0..<ncb,
                          c: c + ic * ldc + jc, ldc: ldc, alpha: alpha, beta: betaHere,
                          epilogue: lastPanel ? epilogue?.offset(row: ic, column: jc) : nil)
                    ic += mc
                }
                pc += kc
            }
            jc += nc
        }
    }

    /// The micro-tiles of one packed block: `C[0..<rows, columns]` (c at the block's first row and the packed
    /// panel's first column) from an A block packed in slivers of `mr` (`rows × kcb`) and a B panel packed in
    /// slivers of `nr` (sliver t at `packB + t·nr·kcb`); `columns` starts at a multiple of `nr`. B's slivers outside,
    /// A's inside: a B sliver stays in L1 while the A block streams from L2. The epilogue (at the block's (0, 0))
    /// goes with the final panel's write only.
    @inline(__always)
    static func tiles(_ tile: @convention(c) (Int, UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>,
                                              Int, Int, Int, Float, Float, UnsafePointer<dml_epilogue>?) -> Void,
                      nr: Int, kcb: Int, packA: UnsafePointer<Float>, rows: Int, packB: UnsafePointer<Float>,
                      columns: Range<Int>, c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float,
                      epilogue: GemmEpilogue?) {
        var jr = columns.lowerBound
        while jr < columns.upperBound {
            let cols = min(nr, columns.upperBound - jr)
            let pb = packB + jr * kcb
            var ir = 0
            while ir < rows {
                let n = min(mr, rows - ir)
                let pa = packA + ir * kcb
                if let e = epilogue {
                    var ep = e.offset(row: ir, column: jr).c
                    tile(kcb, pa, pb, c + ir * ldc + jr, ldc, n, cols, alpha, beta, &ep)
                } else {
                    tile(kcb, pa, pb, c + ir * ldc + jr, ldc, n, cols, alpha, beta, nil)
                }
                ir += mr
            }
            jr += nr
        }
    }

    /// `c[0..<n] *= beta`, writing zeros (not reading) when beta is 0.
    @inline(__always)
    static func scaleRow(_ c: UnsafeMutablePointer<Float>, _ n: Int, _ beta: Float) {
        if beta == 0 {
            c.update(repeating: 0, count: n)
        } else if beta != 1 {
            Vector.scale(beta, c, n)
        }
    }

    // Packing is the only loop of gemm that stays in Swift. Its index arithmetic is wrapping (`&+`, `&*`): the
    // indices are bounded by the panel sizes checked above (kc·nc, mc·kc floats), and the overflow checks of `+`
    // and `*` cost the MLP step's gemms 8% (measured: the whole package built with -Ounchecked, which removes
    // exactly these checks, against the default -O; benchmarks/RESULTS.md). This is the measured spot where
    // unchecked arithmetic matters, so it is unchecked here and nowhere else.

    /// Packs rows `ic ..< ic+mcb`, columns `pc ..< pc+kcb` of op(A) into slivers of `mr` rows: sliver s holds
    /// `dst[s·mr·kcb + p·mr + r] = op(A)[ic + s·mr + r, pc + p]`, zero past the last row.
    @inline(__always)
    static func packBlockA(_ trans: Bool, _ a: UnsafePointer<Float>, _ lda: Int, _ ic: Int, _ pc: Int,
                           _ mcb: Int, _ kcb: Int, _ dst: UnsafeMutablePointer<Float>) {
        var s = 0
        while s < mcb {
            let rows = min(mr, mcb &- s)
            var o = dst + (s &* kcb)
            if !trans {
                let r0 = a + ((ic &+ s) &* lda &+ pc)
                if rows == mr {
                    let r1 = r0 + lda, r2 = r1 + lda, r3 = r2 + lda, r4 = r3 + lda, r5 = r4 + lda
                    var p = 0
                    while p < kcb {
                        o[0] = r0[p]; o[1] = r1[p]; o[2] = r2[p]; o[3] = r3[p]; o[4] = r4[p]; o[5] = r5[p]
                        o += mr
                        p &+= 1
                    }
                } else {
                    var p = 0
                    while p < kcb {
                        var r = 0
                        while r < rows { o[r] = r0[r &* lda &+ p]; r &+= 1 }
                        while r < mr { o[r] = 0; r &+= 1 }
                        o += mr
                        p &+= 1
                    }
                }
            } else {
                var src = a + (pc &* lda &+ ic &+ s)
                var p = 0
                while p < kcb {
                    var r = 0
                    while r < rows { o[r] = src[r]; r &+= 1 }
                    while r < mr { o[r] = 0; r &+= 1 }
                    o += mr
                    src += lda
                    p &+= 1
                }
            }
            s &+= mr
        }
    }

    /// Packs rows `pc ..< pc+kcb`, columns `jc ..< jc+ncb` of op(B) into slivers of `nr` (a multiple of 8)
    /// columns: sliver t holds `dst[t·nr·kcb + p·nr + j] = op(B)[pc + p, jc + t·nr + j]`, zero past the last
    /// column.
    @inline(__always)
    static func packPanelB(_ trans: Bool, _ b: UnsafePointer<Float>, _ ldb: Int, _ pc: Int, _ jc: Int,
                           _ kcb: Int, _ ncb: Int, _ nr: Int, _ dst: UnsafeMutablePointer<Float>) {
        var t = 0
        while t < ncb {
            let cols = min(nr, ncb &- t)
            let d = dst + (t &* kcb)
            if !trans {
                var src = b + (pc &* ldb &+ jc &+ t), o = d
                var p = 0
                while p < kcb {
                    if cols == nr {
                        var j = 0
                        while j < nr {
                            store(load(src + j), o + j)
                            j &+= 8
                        }
                    } else {
                        var j = 0
                        while j < cols { o[j] = src[j]; j &+= 1 }
                        while j < nr { o[j] = 0; j &+= 1 }
                    }
                    src += ldb
                    o += nr
                    p &+= 1
                }
            } else {
                var j = 0
                while j < nr {
                    var o = d + j
                    if j < cols {
                        let src = b + ((jc &+ t &+ j) &* ldb &+ pc)
                        var p = 0
                        while p < kcb { o.pointee = src[p]; o += nr; p &+= 1 }
                    } else {
                        var p = 0
                        while p < kcb { o.pointee = 0; o += nr; p &+= 1 }
                    }
                    j &+= 1
                }
            }
            t &+= nr
        }
    }

    // MARK: - gemv

    /// `y = alpha·A·x + beta·y` with `A` `m × n` row-major (row stride `lda`), `x` of n, `y` of m.
    /// Four rows at a time share each load of x (C, dispatched). 2·m·n flops; `beta == 0` never reads y.
    public static func gemv(m: Int, n: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
                            x: UnsafePointer<Float>, beta: Float, y: UnsafeMutablePointer<Float>) {
        precondition(m >= 0 && n >= 0 && lda >= n)
        dml_kernels().pointee.gemv(m, n, alpha, a, lda, x, beta, y)
    }

    /// `y = alpha·Aᵀ·x + beta·y` with `A` `m × n` row-major (row stride `lda`), `x` of m, `y` of n: a sum over
    /// the m rows (linear and logistic regression's `∂w = Xᵀ·d`).
    ///
    /// The rows are summed in blocks of `rowBlock` into a partial of the columns, and the blocks' partials
    /// combined pairwise (`PairwiseSums`), so the rounding error grows like `rowBlock + log₂(m / rowBlock)`
    /// additions rather than m; alpha scales the total. Columns go in passes of `sumPanel`. 2·m·n flops;
    /// `beta == 0` never reads y; deterministic. Scratch from `workspace` (default: the thread's own).
    public static func gemvT(m: Int, n: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
                             x: UnsafePointer<Float>, beta: Float, y: UnsafeMutablePointer<Float>,
                             workspace: GemmWorkspace? = nil) {
        precondition(m >= 0 && n >= 0 && lda >= n)
        sumRows(m: m, n: n, alpha: alpha, a: a, lda: lda, x: x, beta: beta, y: y, workspace: workspace)
    }

    /// `y = Σ_r A[r, ·] + beta·y`: the column sums of `A` (`m × n`, row stride `lda`), e.g. a layer's bias
    /// gradient from its row deltas. Blocks of `rowBlock` rows combined pairwise, as `gemvT`. m·n flops;
    /// `beta == 0` never reads y; deterministic. Scratch from `workspace` (default: the thread's own).
    public static func columnSums(m: Int, n: Int, a: UnsafePointer<Float>, lda: Int, beta: Float,
                                  y: UnsafeMutablePointer<Float>, workspace: GemmWorkspace? = nil) {
        precondition(m >= 0 && n >= 0 && lda >= n)
        sumRows(m: m, n: n, alpha: 1, a: a, lda: lda, x: nil, beta: beta, y: y, workspace: workspace)
    }

    /// `y = alpha·Σ_r x[r]·A[r, ·] + beta·y` (`x == nil`: every weight 1), in column panels of `sumPanel`,
    /// each a pairwise sum of blocks of `rowBlock` rows; a single block with alpha 1 goes straight into y.
    static func sumRows(m: Int, n: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int, x: UnsafePointer<Float>?,
                        beta: Float, y: UnsafeMutablePointer<Float>, workspace: GemmWorkspace?) {
        if n == 0 { return }
        if m == 0 || alpha == 0 { return scaleRow(y, n, beta) }
        let kernels = dml_kernels().pointee
        if m <= rowBlock && alpha == 1 {  // one block (a mini-batch): straight into y
            // Each column's sum is its own chain over the rows (the same operations wherever the column lies in a
            // run), so a large block's columns go to the kernel threads in runs of 64.
            let run = { (j0: Int, cols: Int) in
                scaleRow(y + j0, cols, beta)
                kernels.add_rows(m, cols, a + j0, lda, x, y + j0)
            }
            if m * n < Vector.parallelMinimum || n < 128 || KernelThreads.count == 1 { return run(0, n) }
            return KernelThreads.parallel(units: (n + 63) / 64) { begin, end in run(begin * 64, Swift.min(n, end * 64) - begin * 64) }
        }
        let blocks = (m + rowBlock - 1) / rowBlock
        let ws = workspace ?? GemmWorkspace.current
        let slots = ws.sums(PairwiseSums.slots(forPartials: blocks) * min(n, sumPanel))
        var j0 = 0
        while j0 < n {
            let cols = min(sumPanel, n - j0)
            var sums = PairwiseSums(slots, width: cols)
            var r0 = 0
            while r0 < m {
                let partial = sums.next()
                partial.update(repeating: 0, count: cols)
                kernels.add_rows(min(rowBlock, m - r0), cols, a + r0 * lda + j0, lda, x.map { $0 + r0 }, partial)
                sums.commit()
                r0 += rowBlock
            }
            kernels.write_back(cols, sums.total(), alpha, beta, y + j0)
            j0 += cols
        }
    }
}

/// What `Gemm.gemm` applies to each element of C after its sum, in this order: `+ bias[j]` (a layer's bias, per
/// column), ReLU (`max(·, 0)`), and zero where `mask[i·ldm + j] ≤ 0` (ReLU's derivative, from the activations).
/// Bit for bit the separate passes (`Vector.axpy(1, bias, row)`, `Activation.relu`, `Activation.reluBackward`),
/// but fused into the packed kernel's final write of each tile, so C is not read and written again; the few-class
/// routes run the separate passes on their output. Pointers must cover C's rows and columns.
public struct GemmEpilogue {
    public var bias: UnsafePointer<Float>?
    public var relu: Bool
    public var mask: UnsafePointer<Float>?
    public var ldm: Int

    public init(bias: UnsafePointer<Float>? = nil, relu: Bool = false, mask: UnsafePointer<Float>? = nil, ldm: Int = 0) {
        self.bias = bias
        self.relu = relu
        self.mask = mask
        self.ldm = ldm
    }

    /// The same epilogue for the block of C starting at (row, column).
    func offset(row: Int, column: Int) -> GemmEpilogue {
        GemmEpilogue(bias: bias.map { $0 + column }, relu: relu, mask: mask.map { $0 + row * ldm + column }, ldm: ldm)
    }

    var c: dml_epilogue { dml_epilogue(bias: bias, mask: mask, ldm: ldm, relu: relu ? 1 : 0) }

    /// The epilogue as separate passes over the rows of an m × n C.
    func apply(_ c: UnsafeMutablePointer<Float>, ldc: Int, m: Int, n: Int) {
        for i in 0..<m {
            let row = c + i * ldc
            if let bias { Vector.axpy(1, bias, row, n) }
            if relu { Activation.relu(row, n) }
            if let mask { Activation.reluBackward(row, mask + i * ldm, n) }
        }
    }
}

/// Packing buffers for `Gemm.gemm`, allocated once (about 2.2 MiB, 64-byte aligned), and the scratch of the
/// sums over rows (`PairwiseSums`), grown on demand. A workspace must not be used by two threads at once;
/// `current` gives each thread its own.
public final class GemmWorkspace {
    let packA: UnsafeMutablePointer<Float>
    let packB: UnsafeMutablePointer<Float>
    private let raw: UnsafeMutableRawPointer

    /// Scratch of the sums over rows (`PairwiseSums` slots): grown when a call needs more, then kept.
    private var sumsScratch: UnsafeMutableRawPointer?
    private var sumsCapacity = 0

    public init() {
        let a = Gemm.mc * Gemm.kc, b = Gemm.kc * Gemm.nc
        raw = UnsafeMutableRawPointer.allocate(byteCount: (a + b) * 4, alignment: 64)
        let base = raw.bindMemory(to: Float.self, capacity: a + b)
        packB = base
        packA = base + b
    }

    deinit {
        raw.deallocate()
        sumsScratch?.deallocate()
    }

    /// At least `count` floats of scratch for `PairwiseSums` (contents unspecified), 64-byte aligned.
    /// Reallocated only when a call needs more than any before on this workspace.
    func sums(_ count: Int) -> UnsafeMutablePointer<Float> {
        if count > sumsCapacity || sumsScratch == nil {
            sumsScratch?.deallocate()
            sumsCapacity = Swift.max(count, 1024)
            sumsScratch = UnsafeMutableRawPointer.allocate(byteCount: sumsCapacity * 4, alignment: 64)
        }
        return sumsScratch!.bindMemory(to: Float.self, capacity: sumsCapacity)
    }

    /// The thread-specific slot holding each thread's workspace (retained; released when the thread ends).
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        #if os(Linux)
        let created = pthread_key_create(&key) { if let p = $0 { Unmanaged<GemmWorkspace>.fromOpaque(p).release() } }
        #else
        let created = pthread_key_create(&key) { Unmanaged<GemmWorkspace>.fromOpaque($0).release() }
        #endif
        precondition(created == 0, "pthread_key_create failed")
        return key
    }()

    /// The calling thread's workspace (created on first use, freed with the thread). A thread-specific
    /// pointer (`pthread_getspecific`, a few ns) rather than `Thread.threadDictionary` (about 0.3 µs, which
    /// was a few per cent of a batch-256 few-class gemm).
    public static var current: GemmWorkspace {
        if let p = pthread_getspecific(key) { return Unmanaged<GemmWorkspace>.fromOpaque(p).takeUnretainedValue() }
        let ws = GemmWorkspace()
        let stored = pthread_setspecific(key, Unmanaged.passRetained(ws).toOpaque())
        precondition(stored == 0, "pthread_setspecific failed")
        return ws
    }
}
