import XCTest
@testable import DMLComm
import DMLKernels
import DMLTestSupport

/// The 16-bit wire formats and the compressed ring, on the in-process communicator.
final class CompressionTests: XCTestCase {
    func testBF16RoundsToNearestEvenAndKeepsSpecialValues() {
        let f = WireFormat.bf16
        XCTAssertEqual(f.rounded(1), 1)
        XCTAssertEqual(f.rounded(1 + 0x1p-8), 1, "a tie goes to the even neighbour (1.0)")
        XCTAssertEqual(f.rounded(1 + 3 * 0x1p-8), 1 + 0x1p-6, "a tie goes to the even neighbour (1 + 2^-6)")
        XCTAssertEqual(f.rounded(1 + 0x1p-8 + 0x1p-20), 1 + 0x1p-7, "above the tie rounds up")
        XCTAssertEqual(f.rounded(-2.5), -2.5)
        XCTAssertEqual(f.rounded(.infinity), .infinity)
        XCTAssertEqual(f.rounded(Float.greatestFiniteMagnitude), .infinity, "rounds up past the largest bf16")
        XCTAssertTrue(f.rounded(.nan).isNaN)
        XCTAssertTrue(f.rounded(Float(bitPattern: 0x7FFF_FFFF)).isNaN, "a NaN whose rounding would carry stays NaN")
    }

    func testFP16RoundsLikeFloat16() {
        var rng = TestRandom(seed: 3)
        for x in rng.floats(1000, in: -70000...70000) + [0, -0, 1e-7, 65504, 65520, .nan] {
            let r = WireFormat.fp16.rounded(x)
            if x.isNaN { XCTAssertTrue(r.isNaN) } else { XCTAssertEqual(r, Float(Float16(x)), "\(x)") }
        }
    }

    /// The conversions are C kernels dispatched per ISA (F16C's instructions with AVX2 and AVX-512, the
    /// compiler's software conversion in the generic kernels): every ISA encodes the same values to the same
    /// bits (random values over both formats' ranges, the half subnormals, ties, overflow, infinities, NaNs with
    /// payloads) and decodes every one of the 65,536 16-bit patterns to the same Float bits, so ranks on
    /// different CPUs still exchange and keep identical values.
    func testWireFormatsGiveTheSameBitsOnEveryISA() {
        var rng = TestRandom(seed: 21)
        var values = rng.floats(4000, in: -70000...70000) + rng.floats(4000, in: -1e-4...1e-4)
        values += rng.floats(2000, in: -1e38...1e38)
        values += [0, -0, 1e-7, 6e-8, 3e-8, 65504, 65519, 65520, -65520, 1 + 0x1p-11, 1 + 3 * 0x1p-11, .infinity,
                   -.infinity, .nan, Float(bitPattern: 0x7FC0_1234), Float(bitPattern: 0xFF80_0001),
                   Float.greatestFiniteMagnitude, .leastNonzeroMagnitude]
        let patterns = (0...UInt16.max).map { $0 }
        func run() -> [[UInt32]] {
            var out: [[UInt32]] = []
            for format in WireFormat.allCases {
                var coded = [UInt16](repeating: 0, count: values.count)
                format.encode(values, into: &coded, count: values.count)
                var decoded = [Float](repeating: 0, count: patterns.count)
                format.decode(patterns, into: &decoded, count: patterns.count)
                out.append(coded.map(UInt32.init))
                out.append(decoded.map(\.bitPattern))
            }
            return out
        }
        let reference = KernelDispatch.with(.generic) { run() }
        for isa in KernelDispatch.supported where isa != .generic {
            let got = KernelDispatch.with(isa) { run() }
            for (i, name) in ["fp16 encode", "fp16 decode", "bf16 encode", "bf16 decode"].enumerated() {
                let differ = zip(got[i], reference[i]).filter { $0 != $1 }.count
                XCTAssertEqual(differ, 0, "\(isa.rawValue): \(name) differs from generic in \(differ) values")
            }
        }
    }

    /// Random counts on p = 1 … 8 ranks: within the bound of p roundings of partial sums of the exact sum,
    /// and the same bits on every rank.
    func testCompressedRingIsWithinRoundingOfTheSumAndIdenticalOnEveryRank() throws {
        var rng = TestRandom(seed: 11)
        for format in WireFormat.allCases {
            for p in 1...8 {
                let counts = [1, p + 1, 333, Int.random(in: 2...5000, using: &rng)]
                for count in counts {
                    let inputs = (0..<p).map { r -> [Float] in
                        var g = TestRandom(seed: UInt64(p * 100_000 + r * 10_000 + count))
                        return g.floats(count, in: -1...1)
                    }
                    for segmentBytes in [6, 1 << 18] {
                        let results = try LocalCommunicator.run(size: p, timeout: 30) { comm -> [Float] in
                            let ring = CompressedRingAllreduce(comm: comm, format: format, segmentBytes: segmentBytes, window: 2)
                            var x = inputs[comm.rank]
                            try x.withUnsafeMutableBufferPointer { try ring.run($0, op: .sum) }
                            return x
                        }
                        for i in 0..<count {
                            let exact = (0..<p).reduce(0.0) { $0 + Double(inputs[$1][i]) }
                            let magnitude = (0..<p).reduce(0.0) { $0 + Double(abs(inputs[$1][i])) }
                            let bound = Double(p) * Double(format.unitRoundoff) * magnitude + Double(p) * 0x1p-24
                            if abs(Double(results[0][i]) - exact) > bound {
                                XCTFail("\(format) p=\(p) count=\(count) [\(i)]: \(results[0][i]) vs exact \(exact), bound \(bound)")
                                break
                            }
                            XCTAssertEqual(format.rounded(results[0][i]), results[0][i], "the result is a 16-bit value")
                        }
                        for r in 1..<p where results[r].map(\.bitPattern) != results[0].map(\.bitPattern) {
                            XCTFail("\(format) p=\(p) count=\(count) segment \(segmentBytes): rank \(r) holds other bits than rank 0")
                        }
                    }
                }
            }
        }
    }

    /// The exact tail (loss sum, row count) is reduced without rounding; doubles are not compressed.
    func testTheTailAndDoublesStayExact() throws {
        let results = try LocalCommunicator.run(size: 3) { comm -> ([Float], [Double]) in
            let a = CompressedAllreduce(comm: comm, format: .bf16, exact: RingAllreduce(comm: comm), exactTail: 2, errorFeedback: false)
            var x: [Float] = [1 + 0x1p-10, 2, 1_000_001, Float(comm.rank + 1)]
            try x.withUnsafeMutableBufferPointer { try a.run($0, op: .sum) }
            var d: [Double] = [1 + 0x1p-40]
            try d.withUnsafeMutableBufferPointer { try a.run($0, op: .sum) }
            return (x, d)
        }
        for (x, d) in results {
            XCTAssertEqual(x[0], 3, "bf16 rounds 3·(1 + 2^-10)")
            XCTAssertEqual(x[1], 6)
            XCTAssertEqual(x[2], 3_000_003, "tail: exact")
            XCTAssertEqual(x[3], 6, "tail: exact")
            XCTAssertEqual(d[0], 3 * (1 + 0x1p-40))
        }
    }

    /// A contribution that rounding always loses: without error feedback the loss adds up step after step;
    /// with it, the running total stays within one rounding of the exact one.
    func testErrorFeedbackKeepsWhatRoundingLost() throws {
        let steps = 200
        for feedback in [false, true] {
            let totals = try LocalCommunicator.run(size: 2) { comm -> Double in
                let a = CompressedAllreduce(comm: comm, format: .bf16, exact: RingAllreduce(comm: comm), exactTail: 0, errorFeedback: feedback)
                var total = 0.0
                for _ in 0..<steps {
                    var x: [Float] = [1 + 0x1p-10]
                    try x.withUnsafeMutableBufferPointer { try a.run($0, op: .sum) }
                    total += Double(x[0])
                }
                return total
            }
            let exact = Double(steps) * 2 * (1 + 0x1p-10)
            XCTAssertEqual(totals[0], totals[1])
            if feedback {
                XCTAssertLessThanOrEqual(abs(totals[0] - exact), 2 * 0x1p-7, "with error feedback")
            } else {
                XCTAssertEqual(totals[0], Double(steps) * 2, "without error feedback every step loses 2^-10 per rank")
            }
        }
    }
}
