import DMLKernels
import XCTest

/// `GemmEpilogue`: the bias, ReLU and ReLU-derivative mask fused into gemm's final write give bit for bit the
/// separate passes (`Vector.axpy(1, bias, row)`, `Activation.relu`, `Activation.reluBackward`), on the packed
/// kernel (k across several panels, edge tiles), the few-class routes, and with threads.
final class GemmEpilogueTests: ThreadedKernelTestCase {
    func testFusedEpilogueEqualsSeparatePasses() throws {
        let shapes: [(Bool, Bool, Int, Int, Int)] = [
            (false, true, 37, 70, 600), (false, false, 256, 256, 10), (false, true, 101, 13, 90),
            (true, false, 12, 99, 300), (true, true, 7, 33, 5), (false, true, 256, 256, 784),
        ]
        for threads in [1, 3] {
            try KernelThreads.use(threads)
            for (transA, transB, m, n, k) in shapes {
                let lda = transA ? m : k, ldb = transB ? k : n, ldc = n + 3, ldm = n + 1
                let a = operandValues((transA ? k : m) * lda, seed: 5), b = operandValues((transB ? n : k) * ldb, seed: 6)
                let bias = operandValues(n, seed: 7), mask = operandValues(m * ldm, seed: 8)
                for (useBias, relu, useMask) in [(true, true, false), (true, false, false), (false, false, true), (true, true, true)] {
                    var separate = [Float](repeating: 9, count: m * ldc), fused = separate
                    separate.withUnsafeMutableBufferPointer { c in
                        Gemm.gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 1, a: a, lda: lda, b: b, ldb: ldb,
                                  beta: 0, c: c.baseAddress!, ldc: ldc)
                        for i in 0..<m {
                            let row = c.baseAddress! + i * ldc
                            if useBias { Vector.axpy(1, bias, row, n) }
                            if relu { Activation.relu(row, n) }
                            if useMask { mask.withUnsafeBufferPointer { Activation.reluBackward(row, $0.baseAddress! + i * ldm, n) } }
                        }
                    }
                    bias.withUnsafeBufferPointer { bp in
                        mask.withUnsafeBufferPointer { mp in
                            fused.withUnsafeMutableBufferPointer { c in
                                Gemm.gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 1, a: a, lda: lda, b: b,
                                          ldb: ldb, beta: 0, c: c.baseAddress!, ldc: ldc,
                                          epilogue: GemmEpilogue(bias: useBias ? bp.baseAddress! : nil, relu: relu,
                                                                 mask: useMask ? mp.baseAddress! : nil, ldm: ldm))
                            }
                        }
                    }
                    XCTAssertEqual(fused.map(\.bitPattern), separate.map(\.bitPattern),
                                   "T=\(threads) \(transA ? "T" : "N")\(transB ? "T" : "N") \(m)×\(n)×\(k) bias \(useBias) relu \(relu) mask \(useMask)")
                    XCTAssertTrue(fused.contains(0) || !(relu || useMask))  // the epilogue did something
                }
            }
        }
    }
}
