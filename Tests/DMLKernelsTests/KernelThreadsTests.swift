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

    func testBadThreadCountsAreRefused() {
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
