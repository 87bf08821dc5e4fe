/// The two gemm shapes of a classifier's output layer, where one side is only a few classes wide:
///
/// - forward `Z = X·Wᵀ` (NT) with `n` = classes ≤ `skinnyLimit`;
/// - backward `∂W += Dᵀ·X` (TN) with `m` = classes ≤ `skinnyLimit`.
///
/// The packed kernel pads such a side to its 16-wide (or 6-high) tile and copies all of X into its packing
/// buffers first; these kernels read X where it lies, once per group of five classes, with the five
/// classes' accumulators in registers. `Gemm.gemm` routes these shapes here. Same flops (2·m·n·k), no
/// packing; the summation order is fixed by the shapes, so results are deterministic. The backward kernel
/// sums over the batch's rows, so it sums blocks of `rowBlock` rows and combines them pairwise (its error
/// then does not grow with the rows per rank); its scratch comes from the `GemmWorkspace`.
extension Gemm {
    /// Widest skinny side routed to these kernels (above it the packed kernel's tile is well used).
    public static let skinnyLimit = 16

    /// Classes per register group: 2 rows × 5 classes (forward) or 5 classes × 16 columns (backward) make
    /// ten SIMD8 accumulators, leaving registers for the loads.
    static let skinnyGroup = 5

    /// `C = alpha·A·Bᵀ + beta·C`: `A` is `m × k` (row stride `lda`), `B` is `n × k` (row stride `ldb`),
    /// `C` is `m × n`, `n ≤ skinnyLimit`. Two rows of A at a time against five rows of B: per 8 columns of
    /// k, seven loads and ten FMAs.
    static func skinnyNT(m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
                         b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        let k8 = k & ~7
        var i = 0
        while i < m {
            let a0 = a + i * lda
            let a1 = i + 1 < m ? a0 + lda : a0  // odd last row: computed twice, written once
            var g = 0
            while g < n {
                // A group past the last class repeats the last row of B; its results are not written.
                let cls = min(skinnyGroup, n - g)
                let b0 = b + g * ldb
                let b1 = b + min(g + 1, n - 1) * ldb, b2 = b + min(g + 2, n - 1) * ldb
                let b3 = b + min(g + 3, n - 1) * ldb, b4 = b + min(g + 4, n - 1) * ldb
                var s00 = V(), s01 = V(), s02 = V(), s03 = V(), s04 = V()
                var s10 = V(), s11 = V(), s12 = V(), s13 = V(), s14 = V()
                var p = 0
                while p < k8 {
                    let x0 = load(a0 + p), x1 = load(a1 + p)
                    var w = load(b0 + p)
                    s00.addProduct(x0, w); s10.addProduct(x1, w)
                    w = load(b1 + p)
                    s01.addProduct(x0, w); s11.addProduct(x1, w)
                    w = load(b2 + p)
                    s02.addProduct(x0, w); s12.addProduct(x1, w)
                    w = load(b3 + p)
                    s03.addProduct(x0, w); s13.addProduct(x1, w)
                    w = load(b4 + p)
                    s04.addProduct(x0, w); s14.addProduct(x1, w)
                    p += 8
                }
                var r0: (Float, Float, Float, Float, Float) = (s00.sum(), s01.sum(), s02.sum(), s03.sum(), s04.sum())
                var r1: (Float, Float, Float, Float, Float) = (s10.sum(), s11.sum(), s12.sum(), s13.sum(), s14.sum())
                while p < k {
                    let x0 = a0[p], x1 = a1[p]
                    r0.0 += x0 * b0[p]; r1.0 += x1 * b0[p]
                    r0.1 += x0 * b1[p]; r1.1 += x1 * b1[p]
                    r0.2 += x0 * b2[p]; r1.2 += x1 * b2[p]
                    r0.3 += x0 * b3[p]; r1.3 += x1 * b3[p]
                    r0.4 += x0 * b4[p]; r1.4 += x1 * b4[p]
                    p += 1
                }
                writeSkinny(c + i * ldc + g, cls, r0, alpha, beta)
                if i + 1 < m { writeSkinny(c + (i + 1) * ldc + g, cls, r1, alpha, beta) }
                g += skinnyGroup
            }
            i += 2
        }
    }

    /// Writes the first `count` of five results: `c[j] = alpha·r[j] + beta·c[j]` (`beta == 0` never reads c).
    @inline(__always)
    static func writeSkinny(_ c: UnsafeMutablePointer<Float>, _ count: Int, _ r: (Float, Float, Float, Float, Float),
                            _ alpha: Float, _ beta: Float) {
        @inline(__always) func put(_ j: Int, _ v: Float) { c[j] = beta == 0 ? alpha * v : alpha * v + beta * c[j] }
        put(0, r.0)
        if count > 1 { put(1, r.1) }
        if count > 2 { put(2, r.2) }
        if count > 3 { put(3, r.3) }
        if count > 4 { put(4, r.4) }
    }

    /// `C = alpha·Aᵀ·B + beta·C`: `A` is stored `k × m` (row stride `lda`), `B` is `k × n` (row stride `ldb`),
    /// `C` is `m × n`, `m ≤ skinnyLimit`: a classifier's `∂W = Dᵀ·X`, a sum over the k rows of a batch.
    ///
    /// Columns go in panels of `skinnyPanel`; in a panel the rows go in blocks of `rowBlock`, each block summed
    /// in registers (`skinnyTNBlock`) into an `m × cols` partial, and the partials are combined pairwise
    /// (`PairwiseSums`), so the rounding error grows like `rowBlock + log₂(k / rowBlock)` additions rather
    /// than k. A block's rows (`rowBlock × skinnyPanel` floats of B, 1 MiB at most) are read from memory once
    /// and from cache by the other groups of five classes. Scratch: `(⌊log₂ blocks⌋ + 1)·m·cols` floats from
    /// `workspace`; storing and merging the partials costs about 3·m·cols memory operations per block
    /// (a few per cent of the block's FMAs). With a single block (k ≤ `rowBlock`: a mini-batch) the sums go
    /// straight from registers to C.
    static func skinnyTN(m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
                         b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
                         workspace: GemmWorkspace) {
        if k <= rowBlock {
            return skinnyTNBlock(m: m, cols: n, rows: k, a: a, lda: lda, b: b, ldb: ldb, alpha: alpha, beta: beta,
                                 into: c, ldo: ldc)
        }
        let blocks = (k + rowBlock - 1) / rowBlock
        let slots = workspace.sums(PairwiseSums.slots(forPartials: blocks) * m * min(n, skinnyPanel))
        var j0 = 0
        while j0 < n {
            let cols = min(skinnyPanel, n - j0)
            var sums = PairwiseSums(slots, width: m * cols)
            var p0 = 0
            while p0 < k {
                skinnyTNBlock(m: m, cols: cols, rows: min(rowBlock, k - p0), a: a + p0 * lda, lda: lda,
                              b: b + p0 * ldb + j0, ldb: ldb, alpha: 1, beta: 0, into: sums.next(), ldo: cols)
                sums.commit()
                p0 += rowBlock
            }
            let total = sums.total()
            for i in 0..<m {
                let out = c + i * ldc + j0, t = total + i * cols
                var j = 0
                while j + 16 <= cols {
                    writeRow(out + j, load(t + j), load(t + j + 8), alpha, beta)
                    j += 16
                }
                while j < cols {
                    out[j] = beta == 0 ? alpha * t[j] : alpha * t[j] + beta * out[j]
                    j += 1
                }
            }
            j0 += cols
        }
    }

    /// `out[i·ldo + j] = alpha·Σ_{p < rows} A[p, i]·B[p, j] + beta·out[i·ldo + j]` for i < m, j < cols (A stored
    /// `rows × m`, B `rows × cols`; `beta == 0` never reads out). Five rows of the result × 16 columns in
    /// registers while the rows of B stream past: per row of B, two loads, five broadcasts and ten FMAs.
    /// The last `cols mod 16` columns go one at a time.
    @inline(__always)
    static func skinnyTNBlock(m: Int, cols: Int, rows: Int, a: UnsafePointer<Float>, lda: Int,
                              b: UnsafePointer<Float>, ldb: Int, alpha: Float, beta: Float,
                              into out: UnsafeMutablePointer<Float>, ldo: Int) {
        let cols16 = cols & ~15
        var g = 0
        while g < m {
            let count = min(skinnyGroup, m - g)
            // Columns of A past the last class repeat the last one; their results are not written.
            let a0 = g, a1 = min(g + 1, m - 1), a2 = min(g + 2, m - 1), a3 = min(g + 3, m - 1), a4 = min(g + 4, m - 1)
            var j = 0
            while j < cols16 {
                var s00 = V(), s01 = V(), s10 = V(), s11 = V(), s20 = V(), s21 = V()
                var s30 = V(), s31 = V(), s40 = V(), s41 = V()
                var pa = a, pb = b + j
                for _ in 0..<rows {
                    let x0 = load(pb), x1 = load(pb + 8)
                    var d = V(repeating: pa[a0])
                    s00.addProduct(d, x0); s01.addProduct(d, x1)
                    d = V(repeating: pa[a1])
                    s10.addProduct(d, x0); s11.addProduct(d, x1)
                    d = V(repeating: pa[a2])
                    s20.addProduct(d, x0); s21.addProduct(d, x1)
                    d = V(repeating: pa[a3])
                    s30.addProduct(d, x0); s31.addProduct(d, x1)
                    d = V(repeating: pa[a4])
                    s40.addProduct(d, x0); s41.addProduct(d, x1)
                    pa += lda
                    pb += ldb
                }
                let o = out + g * ldo + j
                writeRow(o, s00, s01, alpha, beta)
                if count > 1 { writeRow(o + ldo, s10, s11, alpha, beta) }
                if count > 2 { writeRow(o + 2 * ldo, s20, s21, alpha, beta) }
                if count > 3 { writeRow(o + 3 * ldo, s30, s31, alpha, beta) }
                if count > 4 { writeRow(o + 4 * ldo, s40, s41, alpha, beta) }
                j += 16
            }
            while j < cols {
                for r in 0..<count {
                    var s: Float = 0
                    var pa = a + g + r, pb = b + j
                    for _ in 0..<rows {
                        s = s.addingProduct(pa[0], pb[0])
                        pa += lda
                        pb += ldb
                    }
                    let o = out + (g + r) * ldo + j
                    o[0] = beta == 0 ? alpha * s : alpha * s + beta * o[0]
                }
                j += 1
            }
            g += skinnyGroup
        }
    }
}
