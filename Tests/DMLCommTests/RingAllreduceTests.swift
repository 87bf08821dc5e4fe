import XCTest
@testable import DMLComm
import DMLTestSupport

final class RingAllreduceTests: XCTestCase {
    /// Each rank's input: integer-valued, so the exact sum does not depend on the order of additions.
    func input(rank: Int, count: Int, seed: UInt64) -> [Float] {
        var rng = TestRandom(seed: seed &* 1000 &+ UInt64(rank))
        return rng.integerFloats(count)
    }

    func testRingMatchesSerialSumForEveryWorldSizeAndCount() throws {
        var rng = TestRandom(seed: 7)
        for p in 1...9 {
            let counts = [0, 1, p - 1, p, p + 1, 100, Int.random(in: 2...10_000, using: &rng)]
            for count in counts {
                let seed = UInt64(p * 100_003 + count)
                var expected = [Float](repeating: 0, count: count)
                for r in 0..<p { for (i, v) in input(rank: r, count: count, seed: seed).enumerated() { expected[i] += v } }
                let results = try LocalCommunicator.run(size: p) { comm -> [Float] in
                    var buffer = self.input(rank: comm.rank, count: count, seed: seed)
                    let ring = RingAllreduce(comm: comm)
                    try buffer.withUnsafeMutableBufferPointer { try ring.run($0, op: .sum) }
                    return buffer
                }
                for r in 0..<p { XCTAssertEqual(results[r], expected, "p=\(p) count=\(count) rank=\(r)") }
            }
        }
    }

    func testRingGivesEveryRankTheSameBitsOnInexactSums() throws {
        for p in [2, 3, 5, 8] {
            let results = try LocalCommunicator.run(size: p) { comm -> [UInt32] in
                var rng = TestRandom(seed: UInt64(comm.rank + 1))
                var buffer = rng.floats(1001, in: -1e3...1e3)
                let ring = RingAllreduce(comm: comm)
                try buffer.withUnsafeMutableBufferPointer { try ring.run($0, op: .sum) }
                return buffer.map(\.bitPattern)
            }
            for r in 1..<p { XCTAssertEqual(results[r], results[0], "p=\(p): rank \(r) differs from rank 0") }
        }
    }

    func testRingReusesItsScratchAcrossCallsAndSizes() throws {
        let p = 4
        let results = try LocalCommunicator.run(size: p) { comm -> [[Double]] in
            let ring = RingAllreduce(comm: comm)
            return try [10, 1000, 3, 1000].map { n -> [Double] in
                var buffer = (0..<n).map { Double($0 * (comm.rank + 1)) }
                try buffer.withUnsafeMutableBufferPointer { try ring.run($0, op: .sum) }
                return buffer
            }
        }
        for r in 0..<p {
            for (k, n) in [10, 1000, 3, 1000].enumerated() {
                XCTAssertEqual(results[r][k], (0..<n).map { Double($0 * 10) })
            }
        }
    }

    func testMaxAndMin() throws {
        let results = try LocalCommunicator.run(size: 5) { comm -> ([Float], [Float]) in
            var a = (0..<7).map { Float(($0 + comm.rank) % 5) }
            var b = a
            let ring = RingAllreduce(comm: comm)
            try a.withUnsafeMutableBufferPointer { try ring.run($0, op: .max) }
            try b.withUnsafeMutableBufferPointer { try ring.run($0, op: .min) }
            return (a, b)
        }
        for (mx, mn) in results {
            XCTAssertEqual(mx, [Float](repeating: 4, count: 7))
            XCTAssertEqual(mn, [Float](repeating: 0, count: 7))
        }
    }

    func testEveryAlgorithmAgreesWithTheNativeOne() throws {
        for kind in AllreduceKind.allCases {
            let results = try LocalCommunicator.run(size: 3) { comm -> [Float] in
                var buffer = self.input(rank: comm.rank, count: 50, seed: 3)
                let algorithm = kind.make(for: comm)
                XCTAssertEqual(algorithm.name, kind.rawValue)
                try buffer.withUnsafeMutableBufferPointer { try algorithm.run($0, op: .sum) }
                return buffer
            }
            var expected = [Float](repeating: 0, count: 50)
            for r in 0..<3 { for (i, v) in input(rank: r, count: 50, seed: 3).enumerated() { expected[i] += v } }
            XCTAssertEqual(results[0], expected, kind.rawValue)
        }
    }

    func testChunksCoverTheBufferAndDifferByAtMostOne() {
        for p in 1...9 {
            for n in [0, 1, 5, 17, 100] {
                let chunks = (0..<p).map { RingAllreduce.chunk($0, count: n, parts: p) }
                XCTAssertEqual(chunks.first?.lowerBound, 0)
                XCTAssertEqual(chunks.last?.upperBound, n)
                for c in 1..<p { XCTAssertEqual(chunks[c - 1].upperBound, chunks[c].lowerBound) }
                let sizes = chunks.map(\.count)
                XCTAssertLessThanOrEqual(sizes.max()! - sizes.min()!, 1)
            }
        }
    }
}
