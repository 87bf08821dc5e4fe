import DMLKernels
import XCTest

/// `KernelThreads`: the threaded gemm gives the single thread's bits for every thread count, on odd shapes
/// that cross the strip units, the cache blocks and the few-class routes; bad counts are refused.
/// Deterministic values in [-1, 1) (xorshift32), for the kernel tests' operands.
func operandValues(_ count: Int, seed: UInt32) -> [Float] {
    var state = seed &* 2_654_435_761 | 1
    return (0..<count).map { _ in
        state ^= state << 13; state ^= state >> 17; state ^= state << 5
        return Float(state % 20_000) / 10_000 - 1
    }
}

/// A test case that may change the kernel threads: back to one thread after each test.
class ThreadedKernelTestCase: XCTestCase {
    override func tearDown() {
        try? KernelThreads.use(1)
        super.tearDown()
    }
}

final class KernelThreadsTests: ThreadedKernelTestCase {

    private func run(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, beta: Float) -> [UInt32] {
        let lda = (transA ? m : k) + 3, ldb = (transB ? k : n) + 1, ldc = n + 2
        let a = operandValues((transA ? k : m) * lda, seed: 1), b = operandValues((transB ? n : k) * ldb, seed: 2)
        var c = operandValues(m * ldc, seed: 3)
        c.withUnsafeMutableBufferPointer { cp in
            Gemm.gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 0.75, a: a, lda: lda, b: b, ldb: ldb,
                      beta: beta, c: cp.baseAddress!, ldc: ldc)
        }
        return c.map(\.bitPattern)
    }

    func testGemmBitsDoNotDependOnThreads() throws {
        // (transA, transB, m, n, k): packed NN/NT/TN/TT with odd edges, column strips (n ≥ 64) and row strips
        // (n < 64), k across a kc panel, the MLP's shapes, and both few-class routes (n or m ≤ 16).
        let shapes: [(Bool, Bool, Int, Int, Int)] = [
            (false, false, 257, 131, 77), (false, true, 101, 333, 300), (true, false, 61, 195, 517),
            (true, true, 149, 70, 90), (false, false, 500, 40, 123), (false, true, 256, 256, 784),
            (true, false, 256, 784, 256), (false, true, 389, 10, 256), (true, false, 10, 785, 600),
            (false, false, 256, 256, 10),
        ]
        for (transA, transB, m, n, k) in shapes {
            for beta: Float in [0, 1] {
                try KernelThreads.use(1)
                let reference = run(transA: transA, transB: transB, m: m, n: n, k: k, beta: beta)
                for threads in 2...8 {
                    try KernelThreads.use(threads)
                    XCTAssertEqual(KernelThreads.count, threads)
                    let got = run(transA: transA, transB: transB, m: m, n: n, k: k, beta: beta)
                    XCTAssertEqual(got, reference, "T=\(threads) \(transA ? "T" : "N")\(transB ? "T" : "N") \(m)×\(n)×\(k) beta \(beta)")
                }
            }
        }
    }

    func testSharedPackingAcrossColumnBlocksAndPanelGroupsKeepsTheBits() throws {
        // n past `Gemm.nc` (two column blocks), k over several kc panels, so the shared B buffer holds one panel
        // group at a time; m = 13 (fewer row slivers than 4·T: C is cut by columns too) and m = 200 (by rows).
        for (m, n, k) in [(13, Gemm.nc + 45, 530), (200, 301, 1100)] {
            for beta: Float in [0, 1] {
                try KernelThreads.use(1)
                let reference = run(transA: false, transB: true, m: m, n: n, k: k, beta: beta)
                for threads in [2, 3, 8] {
                    try KernelThreads.use(threads)
                    XCTAssertEqual(run(transA: false, transB: true, m: m, n: n, k: k, beta: beta), reference,
                                   "T=\(threads) NT \(m)×\(n)×\(k) beta \(beta)")
                }
            }
        }
    }

    func testFusedEpilogueBitsDoNotDependOnThreads() throws {
        // Bias + ReLU (a forward layer) and the ReLU mask (a backward delta) in the threaded packed gemm's tiles.
        let m = 256, n = 200, k = 300
        let a = operandValues(m * k, seed: 5), b = operandValues(n * k, seed: 6), bias = operandValues(n, seed: 7)
        let mask = operandValues(m * n, seed: 8)
        func run(_ epilogue: GemmEpilogue) -> [UInt32] {
            var c = [Float](repeating: 0, count: m * n)
            c.withUnsafeMutableBufferPointer { cp in
                Gemm.gemm(transA: false, transB: true, m: m, n: n, k: k, alpha: 1, a: a, lda: k, b: b, ldb: k, beta: 0,
                          c: cp.baseAddress!, ldc: n, epilogue: epilogue)
            }
            return c.map(\.bitPattern)
        }
        bias.withUnsafeBufferPointer { bp in
            mask.withUnsafeBufferPointer { mp in
                for epilogue in [GemmEpilogue(bias: bp.baseAddress!, relu: true), GemmEpilogue(mask: mp.baseAddress!, ldm: n)] {
                    try? KernelThreads.use(1)
                    let reference = run(epilogue)
                    XCTAssertTrue(reference.contains(0) && reference.contains { $0 != 0 })
                    for threads in 2...8 {
                        try? KernelThreads.use(threads)
                        XCTAssertEqual(KernelThreads.count, threads)
                        XCTAssertEqual(run(epilogue), reference, "T=\(threads) relu \(epilogue.relu)")
                    }
                }
            }
        }
    }

    func testElementWisePassesAreSharedExactly() throws {
        // axpy, scale and the row gather over the threads: every element written once, with the one-thread bits.
        let n = 3 * Vector.parallelMinimum + 777
        let x = operandValues(n, seed: 9), y0 = operandValues(n, seed: 10)
        func passes() -> [UInt32] {
            var y = y0
            y.withUnsafeMutableBufferPointer { yp in
                Vector.axpy(0.37, x, yp.baseAddress!, n)
                Vector.scale(1.0 / 3, yp.baseAddress!, n)
                // A bias gradient: the column sums of 256 rows × 301 columns (runs of 64 columns), added to y.
                Gemm.columnSums(m: 256, n: 301, a: x, lda: 301, beta: 1, y: yp.baseAddress!)
                Vector.zero(yp.baseAddress! + 1000, Vector.parallelMinimum + 5)
            }
            XCTAssertEqual(Set(y[1000 ..< 1005 + Vector.parallelMinimum]), [0])
            XCTAssertNotEqual(y[999], 0)
            XCTAssertNotEqual(y[1005 + Vector.parallelMinimum], 0)
            return y.map(\.bitPattern)
        }
        let width = 101, rows = (0..<2000).map { ($0 * 7919) % 2000 }
        let source = operandValues(2000 * width, seed: 11)
        func gather() -> [Float] {
            var out = [Float](repeating: .nan, count: rows.count * width)
            rows.withUnsafeBufferPointer { r in
                out.withUnsafeMutableBufferPointer { Vector.gatherRows(source, width: width, rows: r, into: $0.baseAddress!) }
            }
            return out
        }
        let expected = rows.flatMap { source[$0 * width ..< ($0 + 1) * width] }
        try KernelThreads.use(1)
        let reference = passes()
        XCTAssertEqual(gather(), expected)
        for threads in 2...8 {
            try KernelThreads.use(threads)
            XCTAssertEqual(passes(), reference, "T=\(threads)")
            XCTAssertEqual(gather(), expected, "T=\(threads)")
        }
    }

    func testWorkIsSharedAmongThreads() throws {
        // A split covers C exactly once: with beta 1 on zeros, an element written by two strips would hold 2k,
        // one left out 0 (uneven shares: 16 column strips over 3 threads).
        try KernelThreads.use(3)
        let m = 300, n = 500, k = 64
        let a = [Float](repeating: 1, count: m * k), b = [Float](repeating: 1, count: k * n)
        var c = [Float](repeating: 0, count: m * n)
        c.withUnsafeMutableBufferPointer { cp in
            Gemm.gemm(transA: false, transB: false, m: m, n: n, k: k, alpha: 1, a: a, lda: k, b: b, ldb: n, beta: 1,
                      c: cp.baseAddress!, ldc: n)
        }
        XCTAssertEqual(Set(c), [Float(k)])
    }

    func testBadThreadCountsAreRefused() throws {
        try KernelThreads.use(1)   // (an in-process training test before this one may have left the default count)
        for bad in [0, -1, KernelThreads.maximum + 1] {
            XCTAssertThrowsError(try KernelThreads.use(bad)) { error in
                XCTAssertTrue("\(error)".contains("between 1 and \(KernelThreads.maximum)"), "\(error)")
            }
        }
        XCTAssertEqual(KernelThreads.count, 1)
        XCTAssertGreaterThanOrEqual(KernelThreads.affinityCPUs, 1)
        XCTAssertEqual(KernelThreads.defaultCount(ranksOnNode: 1_000_000), 1)
    }
}
