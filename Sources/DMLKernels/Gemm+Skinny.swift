/// The two gemm shapes of a classifier's output layer, where one side is only a few classes wide:
///
/// - forward `Z = X·Wᵀ` (NT) with `n` = classes ≤ `skinnyLimit`;
/// - backward `∂W += Dᵀ·X` (TN) with `m` = classes ≤ `skinnyLimit`.
///
/// The packed kernel pads such a side to its 16-wide (or 6-high) tile and copies all of X into its packing
/// buffers first; these kernels read X where it lies, once per group of five classes, with the five
/// classes' accumulators in registers. `Gemm.gemm` routes these shapes here. Same flops (2·m·n·k), no
/// packing, no allocation; the summation order is fixed, so results are deterministic.
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
    /// `C` is `m × n`, `m ≤ skinnyLimit`. Five rows of C × 16 columns in registers while the k rows of B stream
    /// past: per row of B, two loads, five broadcasts and ten FMAs.
    static func skinnyTN(m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
                         b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        let n16 = n & ~15
        var g = 0
        while g < m {
            let rows = min(skinnyGroup, m - g)
            // Columns of A past the last class repeat the last one; their results are not written.
            let a0 = g, a1 = min(g + 1, m - 1), a2 = min(g + 2, m - 1), a3 = min(g + 3, m - 1), a4 = min(g + 4, m - 1)
            var j = 0
            while j < n16 {
                var s00 = V(), s01 = V(), s10 = V(), s11 = V(), s20 = V(), s21 = V()
                var s30 = V(), s31 = V(), s40 = V(), s41 = V()
                var pa = a, pb = b + j
                for _ in 0..<k {
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
                let out = c + g * ldc + j
                writeRow(out, s00, s01, alpha, beta)
                if rows > 1 { writeRow(out + ldc, s10, s11, alpha, beta) }
                if rows > 2 { writeRow(out + 2 * ldc, s20, s21, alpha, beta) }
                if rows > 3 { writeRow(out + 3 * ldc, s30, s31, alpha, beta) }
                if rows > 4 { writeRow(out + 4 * ldc, s40, s41, alpha, beta) }
                j += 16
            }
            // The last n mod 16 columns, one at a time.
            while j < n {
                for r in 0..<rows {
                    var s: Float = 0
                    var pa = a + g + r, pb = b + j
                    for _ in 0..<k {
                        s += pa[0] * pb[0]
                        pa += lda
                        pb += ldb
                    }
                    let o = c + (g + r) * ldc + j
                    o[0] = beta == 0 ? alpha * s : alpha * s + beta * o[0]
                }
                j += 1
            }
            g += skinnyGroup
        }
    }
}
