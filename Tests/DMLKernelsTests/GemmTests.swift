import XCTest
import DMLKernels
import DMLTestSupport

/// Every kernel against a naive Double reference, on odd sizes and on strided views (leading dimension
/// larger than the row, with sentinel values in the gaps that must neither be read into results nor
/// overwritten).
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

    /// The few-class shapes routed to the skinny kernels (Gemm+Skinny.swift): every width up to the limit
    /// (partial groups of five), odd row counts, k and n with tails past a multiple of 8 and 16, and the
    /// first width above the limit (the packed kernel again).
    func testSkinnyClassifierShapes() {
        var rng = TestRandom(seed: 13)
        for classes in Array(1...Gemm.skinnyLimit) + [Gemm.skinnyLimit + 1] {
            check(transA: false, transB: true, m: 37, n: classes, k: 101, alpha: 1, beta: 0, pad: 2, rng: &rng)
            check(transA: true, transB: false, m: classes, n: 53, k: 29, alpha: 0.5, beta: 1, pad: 1, rng: &rng)
        }
        check(transA: false, transB: true, m: 256, n: 10, k: 784, alpha: 1, beta: 0, pad: 0, rng: &rng)
        check(transA: true, transB: false, m: 10, n: 784, k: 256, alpha: 1, beta: 1, pad: 0, rng: &rng)
        check(transA: true, transB: false, m: 10, n: 784, k: 256, alpha: -1.5, beta: 0.25, pad: 3, rng: &rng)
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
        var rng = TestRandom(seed: 12)
        check(transA: false, transB: false, m: 197, n: 35, k: 530, alpha: 1, beta: 0, pad: 2, rng: &rng)
        check(transA: true, transB: true, m: 101, n: 19, k: 300, alpha: 1, beta: 1, pad: 0, rng: &rng)
    }

    func testGemvPlainAndTransposed() {
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

    func testExpAndActivationsMatchDouble() {
        var rng = TestRandom(seed: 14)
        for n in [1, 7, 8, 17, 63, 129] {
            let x = rng.floats(n, in: -20...20) + [0, -1e-3, 5e-2, -90, 100].prefix(min(n, 5))
            let count = x.count
            func absErr(_ got: [Float], _ want: (Double) -> Double) -> Double {
                zip(got, x).map { abs(Double($0) - want(Double($1))) }.max() ?? 0
            }
            var e = x
            e.withUnsafeMutableBufferPointer { p in
                var i = 0
                while i < count {
                    var v = SIMD8<Float>()
                    for l in 0..<min(8, count - i) { v[l] = p[i + l] }
                    let r = Activation.exp(v)
                    for l in 0..<min(8, count - i) { p[i + l] = r[l] }
                    i += 8
                }
            }
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

    func testSoftmaxRowsMatchDoubleAndAreStable() {
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
