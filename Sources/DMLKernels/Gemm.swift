import Foundation

/// Level-2 and level-3 kernels over row-major Float matrices, with leading dimensions (strided views).
///
/// `gemm` follows the GotoBLAS/BLIS structure: the k dimension is cut into panels of `kc`, B's panel is
/// packed into column slivers of `nr` (kept in L3/L2), A's block of `mc` rows into row slivers of `mr` (kept
/// in L2), and a register-tiled micro-kernel computes an `mr × nr` = 6 × 16 tile of C from one sliver of
/// each, holding the tile in 12 SIMD8 accumulators (15 of the 16 AVX2 registers). Packing zero-pads edge
/// slivers, so the micro-kernel never branches on size; edge tiles go through a small buffer.
public enum Gemm {
    public typealias V = SIMD8<Float>
    /// Micro-tile rows and columns.
    public static let mr = 6, nr = 16
    /// Cache blocks: A block `mc × kc` (96 KiB: L2), B panel `kc × nc` (2 MiB: L3), B sliver `kc × nr`
    /// (16 KiB: L1).
    public static let mc = 96, kc = 256, nc = 2048
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
    /// - Cost: 2·m·n·k flops. Allocates nothing once warm: the packing buffers (and the few-class TN
    ///   kernel's pairwise scratch) come from `workspace`, by default the calling thread's own (created on
    ///   the thread's first call, then reused; the scratch grows to the largest k seen).
    /// - Sums over k: the packed kernel sums k in panels of `kc` in registers and adds the panels into C;
    ///   the few-class TN kernel (k = rows of a batch) sums blocks of `rowBlock` and combines the blocks
    ///   pairwise (`PairwiseSums`). Deterministic: the order depends only on the shapes.
    public static func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                            a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                            beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
                            workspace: GemmWorkspace? = nil) {
        precondition(m >= 0 && n >= 0 && k >= 0)
        precondition(lda >= (transA ? m : k) && ldb >= (transB ? k : n) && ldc >= n,
                     "gemm: leading dimension smaller than the row")
        if m == 0 || n == 0 { return }
        if k == 0 || alpha == 0 {
            for i in 0..<m { scaleRow(c + i * ldc, n, beta) }
            return
        }
        // A classifier's few-class side: no packing, no padding (Gemm+Skinny.swift).
        if !transA && transB && n <= skinnyLimit {
            return skinnyNT(m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
        }
        let ws = workspace ?? GemmWorkspace.current
        if transA && !transB && m <= skinnyLimit {
            return skinnyTN(m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc,
                            workspace: ws)
        }
        let packA = ws.packA, packB = ws.packB, tile = ws.tile
        var jc = 0
        while jc < n {
            let ncb = min(nc, n - jc)
            var pc = 0
            while pc < k {
                let kcb = min(kc, k - pc)
                packPanelB(transB, b, ldb, pc, jc, kcb, ncb, packB)
                let betaHere: Float = pc == 0 ? beta : 1
                var ic = 0
                while ic < m {
                    let mcb = min(mc, m - ic)
                    packBlockA(transA, a, lda, ic, pc, mcb, kcb, packA)
                    var jr = 0
                    while jr < ncb {
                        let cols = min(nr, ncb - jr)
                        let pb = packB + jr * kcb
                        var ir = 0
                        while ir < mcb {
                            let rows = min(mr, mcb - ir)
                            let pa = packA + ir * kcb
                            let cp = c + (ic + ir) * ldc + jc + jr
                            if rows == mr && cols == nr {
                                microKernel(kcb, pa, pb, cp, ldc, alpha, betaHere)
                            } else {
                                microKernel(kcb, pa, pb, tile, nr, alpha, 0)
                                for r in 0..<rows {
                                    let dst = cp + r * ldc, src = tile + r * nr
                                    if betaHere == 0 {
                                        for j in 0..<cols { dst[j] = src[j] }
                                    } else {
                                        for j in 0..<cols { dst[j] = betaHere * dst[j] + src[j] }
                                    }
                                }
                            }
                            ir += mr
                        }
                        jr += nr
                    }
                    ic += mc
                }
                pc += kc
            }
            jc += nc
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

    /// Packs rows `ic ..< ic+mcb`, columns `pc ..< pc+kcb` of op(A) into slivers of `mr` rows: sliver s holds
    /// `dst[s·mr·kcb + p·mr + r] = op(A)[ic + s·mr + r, pc + p]`, zero past the last row.
    @inline(__always)
    static func packBlockA(_ trans: Bool, _ a: UnsafePointer<Float>, _ lda: Int, _ ic: Int, _ pc: Int,
                           _ mcb: Int, _ kcb: Int, _ dst: UnsafeMutablePointer<Float>) {
        var s = 0
        while s < mcb {
            let rows = min(mr, mcb - s)
            let d = dst + s * kcb
            if !trans {
                if rows == mr {
                    let r0 = a + (ic + s) * lda + pc
                    let r1 = r0 + lda, r2 = r1 + lda, r3 = r2 + lda, r4 = r3 + lda, r5 = r4 + lda
                    for p in 0..<kcb {
                        let o = d + p * mr
                        o[0] = r0[p]; o[1] = r1[p]; o[2] = r2[p]; o[3] = r3[p]; o[4] = r4[p]; o[5] = r5[p]
                    }
                } else {
                    for r in 0..<mr {
                        if r < rows {
                            let src = a + (ic + s + r) * lda + pc
                            for p in 0..<kcb { d[p * mr + r] = src[p] }
                        } else {
                            for p in 0..<kcb { d[p * mr + r] = 0 }
                        }
                    }
                }
            } else {
                for p in 0..<kcb {
                    let src = a + (pc + p) * lda + ic + s
                    let o = d + p * mr
                    for r in 0..<rows { o[r] = src[r] }
                    for r in rows..<mr { o[r] = 0 }
                }
            }
            s += mr
        }
    }

    /// Packs rows `pc ..< pc+kcb`, columns `jc ..< jc+ncb` of op(B) into slivers of `nr` columns: sliver t
    /// holds `dst[t·nr·kcb + p·nr + j] = op(B)[pc + p, jc + t·nr + j]`, zero past the last column.
    @inline(__always)
    static func packPanelB(_ trans: Bool, _ b: UnsafePointer<Float>, _ ldb: Int, _ pc: Int, _ jc: Int,
                           _ kcb: Int, _ ncb: Int, _ dst: UnsafeMutablePointer<Float>) {
        var t = 0
        while t < ncb {
            let cols = min(nr, ncb - t)
            let d = dst + t * kcb
            if !trans {
                for p in 0..<kcb {
                    let src = b + (pc + p) * ldb + jc + t
                    let o = d + p * nr
                    if cols == nr {
                        store(load(src), o)
                        store(load(src + 8), o + 8)
                    } else {
                        for j in 0..<cols { o[j] = src[j] }
                        for j in cols..<nr { o[j] = 0 }
                    }
                }
            } else {
                for j in 0..<nr {
                    if j < cols {
                        let src = b + (jc + t + j) * ldb + pc
                        for p in 0..<kcb { d[p * nr + j] = src[p] }
                    } else {
                        for p in 0..<kcb { d[p * nr + j] = 0 }
                    }
                }
            }
            t += nr
        }
    }

    /// The 6 × 16 register tile: `C[0..<6, 0..<16] = alpha·Σ_p a[p·6 + r]·b[p·16 + j] + beta·C`.
    /// Per p: two loads of B, six broadcasts of A, twelve FMAs.
    @inline(__always)
    static func microKernel(_ kcb: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                            _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ alpha: Float, _ beta: Float) {
        var c00 = V(), c01 = V(), c10 = V(), c11 = V(), c20 = V(), c21 = V()
        var c30 = V(), c31 = V(), c40 = V(), c41 = V(), c50 = V(), c51 = V()
        var pa = a, pb = b
        for _ in 0..<kcb {
            let b0 = load(pb), b1 = load(pb + 8)
            var av = V(repeating: pa[0])
            c00.addProduct(av, b0); c01.addProduct(av, b1)
            av = V(repeating: pa[1])
            c10.addProduct(av, b0); c11.addProduct(av, b1)
            av = V(repeating: pa[2])
            c20.addProduct(av, b0); c21.addProduct(av, b1)
            av = V(repeating: pa[3])
            c30.addProduct(av, b0); c31.addProduct(av, b1)
            av = V(repeating: pa[4])
            c40.addProduct(av, b0); c41.addProduct(av, b1)
            av = V(repeating: pa[5])
            c50.addProduct(av, b0); c51.addProduct(av, b1)
            pa += mr
            pb += nr
        }
        writeRow(c, c00, c01, alpha, beta)
        writeRow(c + ldc, c10, c11, alpha, beta)
        writeRow(c + 2 * ldc, c20, c21, alpha, beta)
        writeRow(c + 3 * ldc, c30, c31, alpha, beta)
        writeRow(c + 4 * ldc, c40, c41, alpha, beta)
        writeRow(c + 5 * ldc, c50, c51, alpha, beta)
    }

    @inline(__always)
    static func writeRow(_ c: UnsafeMutablePointer<Float>, _ v0: V, _ v1: V, _ alpha: Float, _ beta: Float) {
        let al = V(repeating: alpha)
        if beta == 0 {
            store(v0 * al, c)
            store(v1 * al, c + 8)
        } else if beta == 1 {
            var o0 = load(c), o1 = load(c + 8)
            o0.addProduct(v0, al); o1.addProduct(v1, al)
            store(o0, c)
            store(o1, c + 8)
        } else {
            let be = V(repeating: beta)
            var o0 = load(c) * be, o1 = load(c + 8) * be
            o0.addProduct(v0, al); o1.addProduct(v1, al)
            store(o0, c)
            store(o1, c + 8)
        }
    }

    // MARK: - gemv

    /// `y = alpha·A·x + beta·y` with `A` `m × n` row-major (row stride `lda`), `x` of n, `y` of m.
    /// Four rows at a time share each load of x. 2·m·n flops; `beta == 0` never reads y.
    public static func gemv(m: Int, n: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
                            x: UnsafePointer<Float>, beta: Float, y: UnsafeMutablePointer<Float>) {
        precondition(m >= 0 && n >= 0 && lda >= n)
        var i = 0
        while i + 4 <= m {
            let r0 = a + i * lda, r1 = r0 + lda, r2 = r1 + lda, r3 = r2 + lda
            var s0 = V(), s1 = V(), s2 = V(), s3 = V()
            var j = 0
            while j + 8 <= n {
                let xv = load(x + j)
                s0.addProduct(load(r0 + j), xv)
                s1.addProduct(load(r1 + j), xv)
                s2.addProduct(load(r2 + j), xv)
                s3.addProduct(load(r3 + j), xv)
                j += 8
            }
            var t0 = s0.sum(), t1 = s1.sum(), t2 = s2.sum(), t3 = s3.sum()
            while j < n {
                t0 = t0.addingProduct(r0[j], x[j]); t1 = t1.addingProduct(r1[j], x[j])
                t2 = t2.addingProduct(r2[j], x[j]); t3 = t3.addingProduct(r3[j], x[j])
                j += 1
            }
            if beta == 0 {
                y[i] = alpha * t0; y[i + 1] = alpha * t1; y[i + 2] = alpha * t2; y[i + 3] = alpha * t3
            } else {
                y[i] = alpha * t0 + beta * y[i]; y[i + 1] = alpha * t1 + beta * y[i + 1]
                y[i + 2] = alpha * t2 + beta * y[i + 2]; y[i + 3] = alpha * t3 + beta * y[i + 3]
            }
            i += 4
        }
        while i < m {
            let t = Vector.dot(a + i * lda, x, n)
            y[i] = beta == 0 ? alpha * t : alpha * t + beta * y[i]
            i += 1
        }
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
        if m <= rowBlock && alpha == 1 {  // one block (a mini-batch): straight into y
            scaleRow(y, n, beta)
            return addRows(m, n, a, lda, x, y)
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
                addRows(min(rowBlock, m - r0), cols, a + r0 * lda + j0, lda, x.map { $0 + r0 }, partial)
                sums.commit()
                r0 += rowBlock
            }
            let total = sums.total(), out = y + j0
            let al = V(repeating: alpha), be = V(repeating: beta)
            var j = 0
            while j + 8 <= cols {
                let v = load(total + j) * al
                store(beta == 0 ? v : v + load(out + j) * be, out + j)
                j += 8
            }
            while j < cols {
                out[j] = beta == 0 ? alpha * total[j] : alpha * total[j] + beta * out[j]
                j += 1
            }
            j0 += cols
        }
    }

    /// `t[0..<n] += Σ_{r < rows} x[r]·A[r, 0..<n]` (`x == nil`: weight 1). Weighted (`gemvT`): four rows
    /// added into each loaded block of t; unweighted (`columnSums`): one row per pass over t. Each is the
    /// loop its kernel had before the pairwise sums, kept because it measured at least as fast on the
    /// shapes of `dml-bench kernels` (four rows win when A is in cache, one row on tall A of few columns).
    @inline(__always)
    static func addRows(_ rows: Int, _ n: Int, _ a: UnsafePointer<Float>, _ lda: Int, _ x: UnsafePointer<Float>?,
                        _ t: UnsafeMutablePointer<Float>) {
        guard let x else {
            for i in 0..<rows { Vector.axpy(1, a + i * lda, t, n) }
            return
        }
        var i = 0
        while i + 4 <= rows {
            let r0 = a + i * lda, r1 = r0 + lda, r2 = r1 + lda, r3 = r2 + lda
            let x0 = x[i], x1 = x[i + 1], x2 = x[i + 2], x3 = x[i + 3]
            let v0 = V(repeating: x0), v1 = V(repeating: x1), v2 = V(repeating: x2), v3 = V(repeating: x3)
            var j = 0
            while j + 8 <= n {
                var tv = load(t + j)
                tv.addProduct(v0, load(r0 + j))
                tv.addProduct(v1, load(r1 + j))
                tv.addProduct(v2, load(r2 + j))
                tv.addProduct(v3, load(r3 + j))
                store(tv, t + j)
                j += 8
            }
            while j < n {
                t[j] = t[j].addingProduct(x0, r0[j]).addingProduct(x1, r1[j]).addingProduct(x2, r2[j])
                    .addingProduct(x3, r3[j])
                j += 1
            }
            i += 4
        }
        while i < rows {
            Vector.axpy(x[i], a + i * lda, t, n)
            i += 1
        }
    }
}

/// Packing buffers for `Gemm.gemm`, allocated once (about 2.2 MiB, 64-byte aligned), and the scratch of the
/// sums over rows (`PairwiseSums`), grown on demand. A workspace must not be used by two threads at once;
/// `current` gives each thread its own.
public final class GemmWorkspace {
    let packA: UnsafeMutablePointer<Float>
    let packB: UnsafeMutablePointer<Float>
    let tile: UnsafeMutablePointer<Float>
    private let raw: UnsafeMutableRawPointer

    /// Scratch of the sums over rows (`PairwiseSums` slots): grown when a call needs more, then kept.
    private var sumsScratch: UnsafeMutableRawPointer?
    private var sumsCapacity = 0

    public init() {
        let a = Gemm.mc * Gemm.kc, b = Gemm.kc * Gemm.nc, t = Gemm.mr * Gemm.nr
        raw = UnsafeMutableRawPointer.allocate(byteCount: (a + b + t) * 4, alignment: 64)
        let base = raw.bindMemory(to: Float.self, capacity: a + b + t)
        packB = base
        packA = base + b
        tile = base + b + a
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
