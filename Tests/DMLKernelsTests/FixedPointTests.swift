import XCTest
import DMLKernels

/// `FixedPoint`: the exact fixed-point accumulation and the largest magnitude give the integers of the plain
/// definitions (Swift's truncating `Int64(_:)`, an integer max of |x|'s bits) under every ISA and thread count.
final class FixedPointTests: XCTestCase {
    /// Hard values: near ±2^62 after scaling, halves and just-below-integers (truncation towards zero), ±0,
    /// Float subnormals, values whose low part is exactly 0 or 2^32 − 1; odd lengths so that tails run.
    func testAddGivesTheTruncatedIntegersOnEveryISA() {
        var values: [Float] = [0, -0.0, 0.5, -0.5, 1.5, -1.5, 0.99999994, -0.99999994, 1, -1, 2, -2,
                               Float(bitPattern: 1), -Float(bitPattern: 1), Float.leastNormalMagnitude,
                               -Float.leastNormalMagnitude, 0x1p32, -0x1p32, 0x1p32 - 256, -(0x1p32 - 256),
                               0x1p31 + 0.5, -(0x1p31 + 0.5), 3.75e9, -3.75e9, 123456.78, -123456.78,
                               Float(0x1p62).nextDown, -Float(0x1p62).nextDown, 0x1p61, -0x1p61, 0x1.fffffep60]
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        for _ in 0..<1000 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let magnitude = Float(bitPattern: UInt32(truncatingIfNeeded: state >> 33) & 0x5EFF_FFFF)  // |x| < 2^62
            values.append(state & 1 == 0 ? magnitude : -magnitude)
        }
        for k in [0, -3, 20, 149] {
            let scale = Double(sign: .plus, exponent: k, significand: 1)
            // Only values that the contract allows at this k: |x| · 2^k < 2^62.
            let x = values.filter { Double($0.magnitude) * scale < 0x1p62 }
            for n in [x.count, x.count - 1, 7, 3] {
                let start: [Int64] = (0..<n).map { Int64($0) * 1_000_003 - 5_000_000 }
                let expected = (0..<n).map { start[$0] + Int64(Double(x[$0]) * scale) }
                forEachISA(self) { isa in
                    var q = start
                    let top = x.withUnsafeBufferPointer { xs in
                        q.withUnsafeMutableBufferPointer { FixedPoint.add(xs.baseAddress!, n, exponent: k, into: $0.baseAddress!) }
                    }
                    XCTAssertEqual(q, expected, "\(isa.rawValue) k \(k) n \(n)")
                    XCTAssertEqual(top, Double(x[..<n].map(\.magnitude).max() ?? 0), "\(isa.rawValue) k \(k) n \(n): the max of the same pass")
                }
            }
        }
    }

    func testLargestMagnitudeIsExactAndFlagsNonFiniteValuesOnEveryISA() {
        forEachISA(self) { isa in
            var x: [Float] = [1, -5, 2, -0.0, Float(bitPattern: 1), 4.9999995, 3]
            XCTAssertEqual(FixedPoint.largestMagnitude(x, x.count), 5, isa.rawValue)
            XCTAssertEqual(FixedPoint.largestMagnitude(x, 0), 0, isa.rawValue)
            XCTAssertEqual(FixedPoint.largestMagnitude([-0.0, Float(bitPattern: 1)], 2), Double(Float(bitPattern: 1)), isa.rawValue)
            for bad: Float in [.nan, -.nan, .infinity, -.infinity] {
                x[5] = bad
                XCTAssertEqual(FixedPoint.largestMagnitude(x, x.count), .infinity, "\(isa.rawValue) \(bad)")
            }
        }
    }

    /// Long inputs are cut into `FixedPoint.unit` runs over the kernel threads: the same integers with 1 and 3
    /// threads, and the max wherever it lies (here in the last, partial unit).
    func testThreadsDoNotChangeTheIntegers() throws {
        let n = 3 * FixedPoint.unit + 123
        let x = (0..<n).map { Float(($0 * 7919) % 10007) / 37 - 130 }
        var y = x
        y[n - 5] = 1e6
        let largest: Float = 1e6
        defer { try? KernelThreads.use(1) }
        var results: [[Int64]] = []
        for threads in [1, 3] {
            try KernelThreads.use(threads)
            XCTAssertEqual(FixedPoint.largestMagnitude(y, n), Double(largest), "threads \(threads)")
            var q = [Int64](repeating: 7, count: n)
            let top = y.withUnsafeBufferPointer { ys in
                q.withUnsafeMutableBufferPointer { FixedPoint.add(ys.baseAddress!, n, exponent: 30, into: $0.baseAddress!) }
            }
            XCTAssertEqual(top, Double(largest), "threads \(threads): the max of the same pass")
            results.append(q)
        }
        XCTAssertEqual(results[0], results[1])
        XCTAssertEqual(results[0], y.map { 7 + Int64(Double($0) * 0x1p30) })
    }

    /// `sum` over several buffers gives the integers and the max of `add` of each into zeros, whatever q held,
    /// with 1 and 3 threads, for lengths inside one run, across runs and across units; none: zeros.
    func testSumOfBuffersIsAddOfEachIntoZeros() throws {
        defer { try? KernelThreads.use(1) }
        for threads in [1, 3] {
            try KernelThreads.use(threads)
            for n in [0, 5, FixedPoint.span + 3, 2 * FixedPoint.unit + 4097] {
                let buffers = (0..<3).map { b in
                    let x = UnsafeMutablePointer<Float>.allocate(capacity: Swift.max(n, 1))
                    for i in 0..<n { x[i] = Float(((i + 31 * b) * 7919) % 10007) / 37 - 130 }
                    return UnsafePointer(x)
                }
                defer { buffers.forEach { $0.deallocate() } }
                var expected = [Int64](repeating: 0, count: n), top = 0.0
                for x in buffers {
                    top = Swift.max(top, expected.withUnsafeMutableBufferPointer { FixedPoint.add(x, n, exponent: 40, into: $0.baseAddress!) })
                }
                for count in [3, 1, 0] {
                    var q = [Int64](repeating: -9, count: Swift.max(n, 1))
                    let got = q.withUnsafeMutableBufferPointer { FixedPoint.sum(Array(buffers.prefix(count)), n, exponent: 40, into: $0.baseAddress!) }
                    if count == 3 {
                        XCTAssertEqual(Array(q.prefix(n)), expected, "threads \(threads) n \(n)")
                        XCTAssertEqual(got, top, "threads \(threads) n \(n)")
                    }
                    if count == 0 { XCTAssertEqual(Array(q.prefix(n)), [Int64](repeating: 0, count: n), "threads \(threads) n \(n): no buffers") }
                }
            }
        }
    }
}
