import XCTest
import Foundation
import DMLKernels
import DMLTestSupport

/// Runs `body` once with each ISA's kernels that this CPU supports (the choice is restored afterwards); a failure
/// inside is followed by one naming the ISA, so the report says which path broke.
func forEachISA(file: StaticString = #filePath, line: UInt = #line, _ test: XCTestCase, _ body: (KernelISA) -> Void) {
    for isa in KernelDispatch.supported {
        let before = test.testRun?.failureCount ?? 0
        KernelDispatch.with(isa) { body(isa) }
        let after = test.testRun?.failureCount ?? 0
        if after > before { XCTFail("the failures above are with the \(isa.rawValue) kernels", file: file, line: line) }
    }
}

/// The run-time choice of kernels (CDMLKernels): which ISA runs, and that every ISA gives the same bits.
final class KernelDispatchTests: XCTestCase {
    /// The ISA that runs is the one DML_KERNELS_ISA names (how scripts run the suite once per ISA), or else the
    /// best this CPU supports; on x86-64 every CPU DML targets has at least AVX2 (a CPU without it would list
    /// generic alone, which this test then reports).
    func testTheChosenISA() {
        let supported = KernelDispatch.supported
        XCTAssertEqual(supported.first, .generic)
        if let wanted = ProcessInfo.processInfo.environment["DML_KERNELS_ISA"], !wanted.isEmpty {
            XCTAssertNil(KernelDispatch.overrideNote, "DML_KERNELS_ISA=\(wanted) was not followed")
            XCTAssertEqual(KernelDispatch.isa.rawValue, wanted)
        } else {
            XCTAssertEqual(KernelDispatch.isa, supported.max())
        }
        #if arch(x86_64)
        XCTAssertTrue(supported.contains(.avx2), "this x86-64 CPU lacks AVX2+FMA: only the slow generic kernels run")
        #endif
        print("kernels: \(KernelDispatch.isa.rawValue); supported: \(supported.map(\.rawValue))")
    }

    /// Every kernel under every supported ISA gives the bits of the generic kernels, on odd sizes, strided views,
    /// every gemm form (tile edges of the 16- and 32-wide tiles, several k panels), the few-class kernels with
    /// one and several row blocks, and special values in the element-wise kernels. This is what lets ranks on
    /// AVX-512 and AVX2-only nodes keep bit-identical replicas; a kernel whose summation order followed the
    /// vector width would fail here.
    func testEveryISAGivesTheSameBits() {
        XCTAssertGreaterThan(KernelDispatch.supported.count, 1, "only one ISA here: nothing to compare")
        var rng = TestRandom(seed: 77)
        var cases: [(String, () -> [Float])] = []

        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            for (m, n, k) in [(7, 33, 300), (13, 47, 5), (6, 32, 257), (1, 16, 1), (25, 31, 600)] {
                for (alpha, beta) in [(Float(1), Float(0)), (-1.5, 0.25), (0.5, 1)] {
                    let pad = 3
                    let lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad
                    let a = rng.floats((ta ? k : m) * lda), b = rng.floats((tb ? n : k) * ldb), c0 = rng.floats(m * ldc)
                    cases.append(("gemm \(ta)\(tb) \(m)×\(n)×\(k) α\(alpha) β\(beta)", {
                        var c = c0
                        Gemm.gemm(transA: ta, transB: tb, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                                  beta: beta, c: &c, ldc: ldc)
                        return c
                    }))
                }
            }
        }
        // The few-class kernels: NT with n ≤ 16 (k with a tail past 8), TN with m ≤ 16 over one block, several
        // blocks (pairwise partials) and more columns than one panel.
        for (m, n, k) in [(37, 10, 101), (256, 16, 784), (5, 3, 7)] {
            let a = rng.floats(m * k), b = rng.floats(n * k), c0 = rng.floats(m * n)
            cases.append(("skinny NT \(m)×\(n)×\(k)", {
                var c = c0
                Gemm.gemm(transA: false, transB: true, m: m, n: n, k: k, alpha: 0.75, a: a, lda: k, b: b, ldb: k,
                          beta: 0.5, c: &c, ldc: n)
                return c
            }))
        }
        for (m, n, k) in [(10, 53, 29), (7, 1024 + 37, 3 * 256 + 5), (16, 784, 256), (3, 16, 1000)] {
            let a = rng.floats(k * m), b = rng.floats(k * n), c0 = rng.floats(m * n)
            cases.append(("skinny TN \(m)×\(n)×\(k)", {
                var c = c0
                Gemm.gemm(transA: true, transB: false, m: m, n: n, k: k, alpha: -2, a: a, lda: m, b: b, ldb: n,
                          beta: 0.25, c: &c, ldc: n)
                return c
            }))
        }
        for (m, n) in [(7, 19), (5 * 256 + 37, 23), (300, 4096 + 40)] {
            let lda = n + 2
            let a = rng.floats(m * lda), x = rng.floats(m), xn = rng.floats(n), y0 = rng.floats(max(m, n))
            cases.append(("gemv \(m)×\(n)", {
                var y = y0
                Gemm.gemv(m: m, n: n, alpha: 1.5, a: a, lda: lda, x: xn, beta: 0.5, y: &y)
                return y
            }))
            cases.append(("gemvT \(m)×\(n)", {
                var y = y0
                Gemm.gemvT(m: m, n: n, alpha: -1, a: a, lda: lda, x: x, beta: 2, y: &y)
                return y
            }))
            cases.append(("columnSums \(m)×\(n)", {
                var y = y0
                Gemm.columnSums(m: m, n: n, a: a, lda: lda, beta: 1, y: &y)
                return y
            }))
        }
        for n in [1, 7, 31, 33, 100, 3 * Vector.sumBlock + 5] {
            let x = rng.floats(n), y0 = rng.floats(n)
            cases.append(("dot, sum \(n)", { [Vector.dot(x, y0, n), Vector.sum(x, n)] }))
            cases.append(("axpy \(n)", {
                var y = y0
                Vector.axpy(-0.3, x, &y, n)
                return y
            }))
            cases.append(("scale \(n)", {
                var y = y0
                Vector.scale(1.7, &y, n)
                return y
            }))
        }
        for n in [1, 9, 17, 45, 1000] {
            let x = rng.floats(n, in: -40...40) + [0, -0.0, .nan, .infinity, -.infinity, 1e-3, -95, 95]
            let dy = rng.floats(x.count)
            let count = x.count
            cases.append(("element-wise \(count)", {
                var e = x, t = x, s = x, r = x, gr = dy, gt = dy, gs = dy
                Activation.exp(&e, count)
                Activation.tanh(&t, count)
                Activation.sigmoid(&s, count)
                Activation.relu(&r, count)
                Activation.reluBackward(&gr, x, count)
                Activation.tanhBackward(&gt, t, count)
                Activation.sigmoidBackward(&gs, s, count)
                return e + t + s + r + gr + gt + gs
            }))
        }
        for cols in [1, 8, 10, 17, 40] {
            let rows = 9, ld = cols + 1
            let x0 = rng.floats(rows * ld, in: -30...30)
            cases.append(("softmax \(rows)×\(cols)", {
                var x = x0
                var lse = [Float](repeating: 0, count: rows)
                Softmax.rows(&x, rows: rows, cols: cols, ld: ld, lse: &lse)
                return x + lse
            }))
        }

        let reference = KernelDispatch.with(.generic) { cases.map { $0.1() } }
        for isa in KernelDispatch.supported where isa != .generic {
            KernelDispatch.with(isa) {
                for (i, (name, run)) in cases.enumerated() {
                    let got = run()
                    let same = got.count == reference[i].count
                        && zip(got, reference[i]).allSatisfy { $0.bitPattern == $1.bitPattern }
                    XCTAssertTrue(same, "\(isa.rawValue) differs from generic: \(name)")
                }
            }
        }
    }

    /// `with` switches the kernels and restores the previous choice, and the packed gemm packs B for the tile
    /// width of the ISA that runs (16 columns with AVX2, 32 with AVX-512).
    func testSwitchingAndTileWidth() {
        let start = KernelDispatch.isa
        for isa in KernelDispatch.supported {
            KernelDispatch.with(isa) {
                XCTAssertEqual(KernelDispatch.isa, isa)
                XCTAssertEqual(Gemm.nr, isa == .avx512 ? 32 : 16)
            }
            XCTAssertEqual(KernelDispatch.isa, start)
        }
    }
}
