import XCTest
import DMLKernels
import DMLTestSupport

/// Every kernel against a naive Double reference, on odd sizes and on strided views (leading dimension
/// larger than the row, with sentinel values in the gaps that must neither be read into results nor
/// overwritten), with each ISA's kernels this CPU supports (`forEachISA`).
final class GemmTests: XCTestCase {
    /// op(A)·op(B) in Double, reading the same strided storage as the kernel.
    func reference(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Double, a: [Float], lda: Int,
                   b: [Float], ldb: Int, beta: Double, c: [Float], ldc: Int) -> [Double] {
        var out = c.map(Double.init)
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0
                for p in 0..<k {
                    let av = Double(transA ? a[p * lda + i] : a[i * lda + p])
                    let bv = Double(transB ? b[j * ldb + p] : b[p * ldb + j])
                    s += av * bv
                }
                out[i * ldc + j] = alpha * s + (beta == 0 ? 0 : beta * Double(c[i * ldc + j]))
            }
        }
        return out
    }

    func check(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float, beta: Float, pad: Int,
               rng: inout TestRandom, file: StaticString = #filePath, line: UInt = #line) {
        let lda = (transA ? m : k) + pad, ldb = (transB ? k : n) + pad, ldc = n + pad
        let a = rng.floats((transA ? k : m) * lda), b = rng.floats((transB ? n : k) * ldb)
        var c = rng.floats(m * ldc)
        if beta == 0 { for i in c.indices { c[i] = .nan } }  // beta = 0 must not read C
        let sentinel: Float = 12345
        for i in 0..<m { for j in n..<ldc { c[i * ldc + j] = sentinel } }
        let ref = reference(transA: transA, transB: transB, m: m, n: n, k: k, alpha: Double(alpha), a: a, lda: lda,
                            b: b, ldb: ldb, beta: Double(beta), c: c, ldc: ldc)
        Gemm.gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                  beta: beta, c: &c, ldc: ldc)
        var worst = 0.0
        for i in 0..<m {
            for j in 0..<n { worst = max(worst, abs(Double(c[i * ldc + j]) - ref[i * ldc + j]) / Double(max(k, 1))) }
            for j in n..<ldc { XCTAssertEqual(c[i * ldc + j], sentinel, "gap overwritten", file: file, line: line) }
        }
        XCTAssertLessThan(worst, 1e-6, "gemm \(transA ? "T" : "N")\(transB ? "T" : "N") m=\(m) n=\(n) k=\(k) pad=\(pad)",
                          file: file, line: line)
    }

    func testGemmAllFormsOddSizesAndStrides() {
        forEachISA(self) { _ in
            var rng = TestRandom(seed: 11)
            let shapes = [(1, 1, 1), (7, 17, 5), (6, 16, 8), (17, 7, 63), (63, 33, 17), (13, 129, 9), (97, 18, 257), (2, 3, 0)]
            for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                for (m, n, k) in shapes {
                    for (alpha, beta, pad) in [(Float(1), Float(0), 0), (0.5, 1, 3), (-1.5, 0.25, 1)] {
                        check(transA: ta, transB: tb, m: m, n: n, k: k, alpha: alpha, beta: beta, pad: pad, rng: &rng)
                    }
                }
            }
        }
    }

    /// The few-class shapes routed to the skinny kernels (Gemm+Skinny.swift): every width up to the limit
    /// (partial groups of five), odd row counts, k and n with tails past a multiple of 8 and 16, and the
    /// first width above the limit (the packed kernel again).
    func testSkinnyClassifierShapes() {
        forEachISA(self) { _ in
            var rng = TestRandom(seed: 13)
            for classes in Array(1...Gemm.skinnyLimit) + [Gemm.skinnyLimit + 1] {
                check(transA: false, transB: true, m: 37, n: classes, k: 101, alpha: 1, beta: 0, pad: 2, rng: &rng)
                check(transA: true, transB: false, m: classes, n: 53, k: 29, alpha: 0.5, beta: 1, pad: 1, rng: &rng)
            }
            check(transA: false, transB: true, m: 256, n: 10, k: 784, alpha: 1, beta: 0, pad: 0, rng: &rng)
            check(transA: true, transB: false, m: 10, n: 784, k: 256, alpha: 1, beta: 1, pad: 0, rng: &rng)
            check(transA: true, transB: false, m: 10, n: 784, k: 256, alpha: -1.5, beta: 0.25, pad: 3, rng: &rng)
        }
    }

    /// The sums over rows in blocks of `Gemm.rowBlock` combined pairwise: one block (straight into C or y),
    /// block counts that are not powers of two (the binary counter's carries), a last short block, alpha
    /// other than 1, and more columns than one panel (1024 for the few-class TN kernel, 4096 for `gemvT` and
    /// `columnSums`) with a tail past a multiple of 16. The error is measured per term of the sum, as in
    /// `check`: an indexing mistake shows as an error of order 1.
    func testSumsOverRowsAcrossBlocksAndPanels() {
        forEachISA(self) { _ in
            var rng = TestRandom(seed: 16)
            let b = Gemm.rowBlock
            for k in [b - 1, b, b + 1, 3 * b, 5 * b + 37, 8 * b] {
                check(transA: true, transB: false, m: 10, n: 37, k: k, alpha: 1, beta: 0, pad: 1, rng: &rng)
                check(transA: true, transB: false, m: 3, n: 16, k: k, alpha: -0.5, beta: 1, pad: 0, rng: &rng)
            }
            check(transA: true, transB: false, m: 7, n: 1024 + 16 * 3 + 5, k: 2 * b + 3, alpha: 1.5, beta: 0.25, pad: 2, rng: &rng)
            for (m, n) in [(b, 19), (5 * b + 37, 19), (2 * b + 3, 4096 + 40), (b + 1, 8)] {
                for (alpha, beta, pad) in [(Float(1), Float(0), 0), (-2, 0.5, 3)] {
                    let lda = n + pad
                    let a = rng.floats(m * lda), x = rng.floats(m)
                    var yt = rng.floats(n), ys = rng.floats(n)
                    var reft = [Double](repeating: 0, count: n), refs = [Double](repeating: 0, count: n)
                    for i in 0..<m {
                        for j in 0..<n {
                            reft[j] += Double(a[i * lda + j]) * Double(x[i])
                            refs[j] += Double(a[i * lda + j])
                        }
                    }
                    for j in 0..<n {
                        reft[j] = Double(alpha) * reft[j] + Double(beta) * Double(yt[j])
                        refs[j] += Double(beta) * Double(ys[j])
                    }
                    Gemm.gemvT(m: m, n: n, alpha: alpha, a: a, lda: lda, x: x, beta: beta, y: &yt)
                    Gemm.columnSums(m: m, n: n, a: a, lda: lda, beta: beta, y: &ys)
                    let perTermT = zip(yt, reft).map { abs(Double($0) - $1) }.max()! / Double(m)
                    let perTermS = zip(ys, refs).map { abs(Double($0) - $1) }.max()! / Double(m)
                    XCTAssertLessThan(perTermT, 1e-6, "gemvT m=\(m) n=\(n) alpha=\(alpha)")
                    XCTAssertLessThan(perTermS, 1e-6, "columnSums m=\(m) n=\(n)")
                }
            }
        }
    }

    /// Sums of 30,000 rows of positive values (no cancellation): the naive Float32 running sum's error grows
    /// with the rows (each addition rounds a partial sum up to 15,000), a pairwise sum's stays near ε.
    /// Every kernel that sums a gradient over rows: the few-class TN gemm, `gemvT`, `columnSums`,
    /// `Vector.sum`, and the packed gemm (TN with 32 rows: an MLP hidden layer's `∂W`), which sums k in
    /// panels of `kc` in registers and adds the panels into C.
    func testSumsOverManyRowsStayNearFloatPrecision() {
        forEachISA(self) { _ in
            let k = 30_000, m = 32, n = 37
            var rng = TestRandom(seed: 17)
            let a = rng.floats(k * m, in: 0...1), b = rng.floats(k * n, in: 0...1)
            func worst(_ got: [Float], _ want: [Double]) -> Double {
                zip(got, want).map { abs(Double($0) - $1) / abs($1) }.max()!
            }
            func report(_ name: String, _ e: Double, bound: Double) {
                print("\(name): largest relative error of a \(k)-row sum \(String(format: "%.3g", e))")
                XCTAssertLessThan(e, bound, name)
            }
            // C = Aᵀ·B (A: k × m, B: k × n); the few-class kernel for the first 10 columns of A, packed for all 32.
            var ab = [Double](repeating: 0, count: m * n)
            for p in 0..<k {
                for i in 0..<m { for j in 0..<n { ab[i * n + j] += Double(a[p * m + i]) * Double(b[p * n + j]) } }
            }
            var c = [Float](repeating: 0, count: m * n)
            Gemm.gemm(transA: true, transB: false, m: 10, n: n, k: k, alpha: 1, a: a, lda: m, b: b, ldb: n, beta: 0, c: &c, ldc: n)
            report("few-class TN gemm", worst(Array(c[0..<(10 * n)]), Array(ab[0..<(10 * n)])), bound: 1e-6)
            Gemm.gemm(transA: true, transB: false, m: m, n: n, k: k, alpha: 1, a: a, lda: m, b: b, ldb: n, beta: 0, c: &c, ldc: n)
            report("packed TN gemm", worst(c, ab), bound: 1e-6)
            // gemvT and columnSums over B's rows, weights the first column of A; Vector.sum of that column.
            let x = (0..<k).map { a[$0 * m] }
            var xb = [Double](repeating: 0, count: n), cs = [Double](repeating: 0, count: n)
            for p in 0..<k {
                for j in 0..<n {
                    xb[j] += Double(x[p]) * Double(b[p * n + j])
                    cs[j] += Double(b[p * n + j])
                }
            }
            var y = [Float](repeating: 0, count: n)
            Gemm.gemvT(m: k, n: n, alpha: 1, a: b, lda: n, x: x, beta: 0, y: &y)
            report("gemvT", worst(y, xb), bound: 1e-6)
            Gemm.columnSums(m: k, n: n, a: b, lda: n, beta: 0, y: &y)
            report("columnSums", worst(y, cs), bound: 1e-6)
            report("Vector.sum", worst([Vector.sum(x, k)], [x.reduce(0.0) { $0 + Double($1) }]), bound: 1e-6)
        }
    }

    func testGatherRowsCopiesTheNamedRows() {
        var rng = TestRandom(seed: 14)
        let width = 37, rows = 50
        let source = rng.floats(rows * width)
        let picked = (0..<40).map { ($0 * 17 + 3) % rows }
        var out = [Float](repeating: .nan, count: picked.count * width)
        source.withUnsafeBufferPointer { s in
            picked.withUnsafeBufferPointer { Vector.gatherRows(s.baseAddress!, width: width, rows: $0, into: &out) }
        }
        for (i, r) in picked.enumerated() {
            XCTAssertEqual(Array(out[(i * width)..<((i + 1) * width)]), Array(source[(r * width)..<((r + 1) * width)]))
        }
    }

    /// Crosses every cache block boundary (mc = 96, kc = 256) with edge tiles on both sides.
    func testGemmAcrossCacheBlocks() {
        forEachISA(self) { _ in
            var rng = TestRandom(seed: 12)
            check(transA: false, transB: false, m: 197, n: 35, k: 530, alpha: 1, beta: 0, pad: 2, rng: &rng)
            check(transA: true, transB: true, m: 101, n: 19, k: 300, alpha: 1, beta: 1, pad: 0, rng: &rng)
        }
    }

    func testGemvPlainAndTransposed() {
        forEachISA(self) { _ in
            var rng = TestRandom(seed: 13)
            for (m, n) in [(1, 1), (7, 17), (4, 8), (63, 129), (129, 63), (5, 0), (0, 5)] {
                for (alpha, beta, pad) in [(Float(1), Float(0), 0), (2, 0.5, 3)] {
                    let lda = n + pad
                    let a = rng.floats(max(m * lda, 1))
                    let x = rng.floats(n), xt = rng.floats(m)
                    var y = rng.floats(m), yt = rng.floats(n)
                    var ref = [Double](repeating: 0, count: m), reft = [Double](repeating: 0, count: n)
                    for i in 0..<m {
                        var s = 0.0
                        for j in 0..<n { s += Double(a[i * lda + j]) * Double(x[j]) }
                        ref[i] = Double(alpha) * s + Double(beta) * Double(y[i])
                    }
                    for j in 0..<n {
                        var s = 0.0
                        for i in 0..<m { s += Double(a[i * lda + j]) * Double(xt[i]) }
                        reft[j] = Double(alpha) * s + Double(beta) * Double(yt[j])
                    }
                    Gemm.gemv(m: m, n: n, alpha: alpha, a: a, lda: lda, x: x, beta: beta, y: &y)
                    Gemm.gemvT(m: m, n: n, alpha: alpha, a: a, lda: lda, x: xt, beta: beta, y: &yt)
                    XCTAssertLessThan(maxRelativeDifference(y, ref), 1e-5, "gemv m=\(m) n=\(n)")
                    XCTAssertLessThan(maxRelativeDifference(yt, reft), 1e-5, "gemvT m=\(m) n=\(n)")
                }
            }
        }
    }

    func testExpAndActivationsMatchDouble() {
        forEachISA(self) { _ in
            var rng = TestRandom(seed: 14)
            for n in [1, 7, 8, 17, 63, 129] {
                let x = rng.floats(n, in: -20...20) + [0, -1e-3, 5e-2, -90, 100].prefix(min(n, 5))
                let count = x.count
                func absErr(_ got: [Float], _ want: (Double) -> Double) -> Double {
                    zip(got, x).map { abs(Double($0) - want(Double($1))) }.max() ?? 0
                }
                var e = x; Activation.exp(&e, count)
                let expErr = zip(e, x).map { (got, xv) -> Double in
                    let want = Foundation.exp(Double(xv))
                    return want > Double(Float.greatestFiniteMagnitude) ? (got == .infinity ? 0 : 1)
                        : want < 1e-38 ? Double(got) : abs(Double(got) - want) / want
                }.max()!
                XCTAssertLessThan(expErr, 5e-7, "exp n=\(n)")
                var t = x; Activation.tanh(&t, count)
                XCTAssertLessThan(absErr(t, Foundation.tanh), 5e-7, "tanh n=\(n)")
                var s = x; Activation.sigmoid(&s, count)
                XCTAssertLessThan(absErr(s, { 1 / (1 + Foundation.exp(-$0)) }), 5e-7, "sigmoid n=\(n)")
                var r = x; Activation.relu(&r, count)
                XCTAssertEqual(r, x.map { max($0, 0) })

                let dy = rng.floats(count)
                var g = dy; Activation.reluBackward(&g, r, count)
                XCTAssertEqual(g, zip(dy, x).map { $1 > 0 ? $0 : 0 })
                g = dy; Activation.tanhBackward(&g, t, count)
                XCTAssertLessThan(maxRelativeDifference(g, zip(dy, t).map { Double($0) * (1 - Double($1) * Double($1)) }), 1e-6)
                g = dy; Activation.sigmoidBackward(&g, s, count)
                XCTAssertLessThan(maxRelativeDifference(g, zip(dy, s).map { Double($0) * Double($1) * (1 - Double($1)) }), 1e-6)
            }
        }
    }

    func testSoftmaxRowsMatchDoubleAndAreStable() {
        forEachISA(self) { _ in
            var rng = TestRandom(seed: 15)
            for cols in [1, 2, 7, 10, 17, 33] {
                let rows = 5, ld = cols + 3
                var x = rng.floats(rows * ld, in: -30...30)
                x[0] = 1e4  // a huge logit must not overflow
                let orig = x
                var lse = [Float](repeating: 0, count: rows)
                Softmax.rows(&x, rows: rows, cols: cols, ld: ld, lse: &lse)
                for r in 0..<rows {
                    let z = (0..<cols).map { Double(orig[r * ld + $0]) }
                    let m = z.max()!
                    let s = z.reduce(0) { $0 + Foundation.exp($1 - m) }
                    XCTAssertEqual(Double(lse[r]), m + Foundation.log(s), accuracy: 1e-5 * max(1, abs(m)))
                    for c in 0..<cols {
                        XCTAssertEqual(Double(x[r * ld + c]), Foundation.exp(z[c] - m) / s, accuracy: 1e-6)
                    }
                    for c in cols..<ld { XCTAssertEqual(x[r * ld + c], orig[r * ld + c]) }
                }
            }
        }
    }
}
