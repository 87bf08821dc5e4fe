import XCTest
@testable import DMLComm
import DMLTestSupport

/// The ring's two halves apart (`RingReduceScatter`, the sharded update's collectives), in process, p = 1…16.
final class RingReduceScatterTests: XCTestCase {
    /// Inexact inputs (random Floats): the sums' bits depend on the order of additions, so equality with the
    /// ring allreduce shows the same per-element order.
    func inexact(rank: Int, count: Int, seed: UInt64) -> [Float] {
        var rng = TestRandom(seed: seed &* 1000 &+ UInt64(rank))
        return (0..<count).map { _ in Float.random(in: -1...1, using: &rng) * 1e3 }
    }

    func testTheOwnedChunksTileTheBuffer() {
        for p in 1...16 {
            for n in [0, 1, p - 1, p, p + 1, 37, 1000] {
                let chunks = (0..<p).map { RingReduceScatter.ownedChunk(count: n, rank: $0, parts: p) }.sorted { $0.lowerBound < $1.lowerBound }
                var next = 0
                for c in chunks {
                    XCTAssertEqual(c.lowerBound, next, "p=\(p) n=\(n)")
                    next = c.upperBound
                }
                XCTAssertEqual(next, n, "p=\(p) n=\(n)")
            }
        }
    }

    /// The owned chunk after the reduce-scatter holds the ring allreduce's bits; the allgather after it gives
    /// every rank the ring allreduce's whole buffer; and what a rank changes in its owned chunk between the two
    /// (an update) is what every rank gets.
    func testReduceScatterThenAllgatherIsTheRingAllreduceBitForBit() throws {
        for p in 1...16 {
            for (n, segment) in [(0, 1 << 18), (1, 1 << 18), (p + 1, 1 << 18), (1000, 1 << 18), (1000, 12), (4097, 64)] {
                let seed = UInt64(p * 100_000 + n)
                let inputs = (0..<p).map { inexact(rank: $0, count: n, seed: seed) }
                let results = try LocalCommunicator.run(size: p, timeout: 30) { comm -> (ring: [Float], owned: [Float], gathered: [Float], updated: [Float]) in
                    var ring = inputs[comm.rank]
                    try ring.withUnsafeMutableBufferPointer { try RingAllreduce(comm: comm, segmentBytes: segment, window: 2).run($0, op: .sum) }
                    let halves = RingReduceScatter(comm: comm, segmentBytes: segment, window: 2)
                    let mine = RingReduceScatter.ownedChunk(count: n, rank: comm.rank, parts: comm.size)
                    var buffer = inputs[comm.rank]
                    try buffer.withUnsafeMutableBufferPointer { try halves.reduceScatter($0) }
                    let owned = Array(buffer[mine])
                    try buffer.withUnsafeMutableBufferPointer { try halves.allgather($0) }
                    let gathered = buffer
                    // An "update" of the owned chunk only: x → 2x + rank, then the allgather again.
                    for i in mine { buffer[i] = 2 * buffer[i] + Float(comm.rank) }
                    try buffer.withUnsafeMutableBufferPointer { try halves.allgather($0) }
                    return (ring, owned, gathered, buffer)
                }
                for r in 0..<p {
                    let mine = RingReduceScatter.ownedChunk(count: n, rank: r, parts: p)
                    XCTAssertEqual(results[r].owned.map(\.bitPattern), Array(results[0].ring[mine]).map(\.bitPattern), "p=\(p) n=\(n) rank \(r): owned chunk ≠ ring")
                    XCTAssertEqual(results[r].gathered.map(\.bitPattern), results[0].ring.map(\.bitPattern), "p=\(p) n=\(n) rank \(r): gathered ≠ ring")
                    var expected = results[0].ring
                    for q in 0..<p { for i in RingReduceScatter.ownedChunk(count: n, rank: q, parts: p) { expected[i] = 2 * expected[i] + Float(q) } }
                    XCTAssertEqual(results[r].updated.map(\.bitPattern), expected.map(\.bitPattern), "p=\(p) n=\(n) rank \(r): updates not gathered")
                }
            }
        }
    }

    /// On the 16-bit wire (`--compress`): the owned chunk holds the compressed ring allreduce's bits (the decoded
    /// 16-bit sum every rank gets), for fp16 and bf16.
    func testThe16BitReduceScatterIsTheCompressedRingsFirstHalf() throws {
        for p in 1...16 {
            for format in [WireFormat.fp16, .bf16] {
                for (n, segment) in [(1, 1 << 18), (p + 1, 1 << 18), (777, 1 << 18), (777, 10)] {
                    let inputs = (0..<p).map { inexact(rank: $0, count: n, seed: UInt64(p * 1000 + n)).map { $0 / 1e3 } }
                    let results = try LocalCommunicator.run(size: p, timeout: 30) { comm -> (ring: [Float], owned: [Float]) in
                        var ring = inputs[comm.rank]
                        try ring.withUnsafeMutableBufferPointer {
                            try CompressedRingAllreduce(comm: comm, format: format, segmentBytes: segment, window: 2).run($0, op: .sum)
                        }
                        var buffer = inputs[comm.rank]
                        try buffer.withUnsafeMutableBufferPointer {
                            try RingReduceScatter(comm: comm, segmentBytes: segment, window: 2).reduceScatter($0, format: format)
                        }
                        return (ring, Array(buffer[RingReduceScatter.ownedChunk(count: n, rank: comm.rank, parts: comm.size)]))
                    }
                    for r in 0..<p {
                        let mine = RingReduceScatter.ownedChunk(count: n, rank: r, parts: p)
                        XCTAssertEqual(results[r].owned.map(\.bitPattern), Array(results[0].ring[mine]).map(\.bitPattern),
                                       "\(format) p=\(p) n=\(n) rank \(r): owned chunk ≠ the compressed ring's")
                    }
                }
            }
        }
    }
}
