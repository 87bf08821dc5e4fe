import XCTest
@testable import DMLComm
import DMLTestSupport

/// The ring's bits, pinned: for fixed seeded inputs, a digest of every rank's result of `RingAllreduce`
/// (Float and Double) and of `CompressedRingAllreduce` (fp16, bf16; its Double path too), for sum, max and
/// min, p = 1 … 8, counts below p and above, tiny segments (many per chunk, a short last one) and the
/// default segment size (several 256 KiB segments per chunk at the largest count).
///
/// The constants in `RingDigestsRecorded.swift` are recorded outputs, not values derived by hand: they were
/// produced by `scripts/record-ring-digests` (which runs `testRecordDigests` below with
/// `DML_RECORD_RING_DIGESTS` set) on the code before the two ring schedules were merged into one
/// (`RingAllreduce.swift` and `CompressedAllreduce.swift` at b4b2398). The test checks that today's code
/// reproduces them to the bit; a change to the order of operations, to what a rank keeps or to the rounding
/// makes it fail, naming the cases that differ. Segment size and window do not change the bits (the order of
/// additions depends only on p), which the digests also pin: both segment sizes feed the same digest.
final class RingDigestTests: XCTestCase {
    enum Algorithm: String, CaseIterable {
        case ring, fp16 = "ring-fp16", bf16 = "ring-bf16"

        func make(_ comm: Communicator, segmentBytes: Int?, window: Int) -> AllreduceAlgorithm {
            switch self {
            case .ring: return RingAllreduce(comm: comm, segmentBytes: segmentBytes, window: window)
            case .fp16: return CompressedRingAllreduce(comm: comm, format: .fp16, segmentBytes: segmentBytes, window: window)
            case .bf16: return CompressedRingAllreduce(comm: comm, format: .bf16, segmentBytes: segmentBytes, window: window)
            }
        }
    }

    /// (segment bytes, window, counts): tiny segments on small counts, the default on counts large enough for
    /// several segments per chunk. Counts 1, 2, 5 and 7 are below p for the larger worlds.
    static let configurations: [(segmentBytes: Int?, window: Int, counts: [Int])] = [
        (6, 2, [1, 2, 5, 7, 64, 1001]),
        (12, 3, [5, 1001]),
        (nil, 4, [1001, 300_007]),
    ]

    /// Rank `rank`'s input of `count` values of a p-rank world: values of every magnitude from 2^-8 to 2^8
    /// (so sums round, and the order of additions shows), built from the raw generator bits so that they do
    /// not depend on the standard library's `random(in:)`.
    static func input(p: Int, rank: Int, count: Int) -> [Double] {
        var rng = TestRandom(seed: UInt64(p) << 40 | UInt64(rank) << 32 | UInt64(count))
        return (0..<count).map { _ in
            let bits = rng.next()
            let unit = Double(bits >> 11) * 0x1p-53 * 2 - 1
            let scale = Double(sign: .plus, exponent: Int(bits & 15) - 8, significand: 1)
            return unit * scale
        }
    }

    /// The digest of one case: every configuration's every count's every rank's result bytes, chained.
    static func digests(_ algorithm: Algorithm, p: Int) throws -> [String: UInt64] {
        let perRank = try LocalCommunicator.run(size: p, timeout: 120) { comm -> [String: [UInt64]] in
            var out: [String: [UInt64]] = [:]
            for (segmentBytes, window, counts) in configurations {
                let reduce = algorithm.make(comm, segmentBytes: segmentBytes, window: window)
                for op in ReduceOp.allCases {
                    for count in counts {
                        let values = input(p: p, rank: comm.rank, count: count)
                        var floats = values.map { Float($0) }
                        try floats.withUnsafeMutableBufferPointer { try reduce.run($0, op: op) }
                        out["Float \(op)", default: []].append(floats.withUnsafeBytes { Checksum.hash($0) })
                        var doubles = values
                        try doubles.withUnsafeMutableBufferPointer { try reduce.run($0, op: op) }
                        out["Double \(op)", default: []].append(doubles.withUnsafeBytes { Checksum.hash($0) })
                    }
                }
            }
            return out
        }
        var result: [String: UInt64] = [:]
        for key in perRank[0].keys {
            var h: UInt64 = 0
            for r in 0..<p { for x in perRank[r][key]! { h = withUnsafeBytes(of: x) { Checksum.hash($0, seed: h) } } }
            result["\(algorithm.rawValue) \(key) p=\(p)"] = h
        }
        return result
    }

    static func allDigests() throws -> [String: UInt64] {
        var all: [String: UInt64] = [:]
        for algorithm in Algorithm.allCases {
            for p in 1...8 { all.merge(try digests(algorithm, p: p)) { a, _ in a } }
        }
        return all
    }

    func testTheRingReproducesTheRecordedBits() throws {
        let recorded = RingDigestsRecorded.digests
        XCTAssertEqual(recorded.count, 3 * 2 * 3 * 8, "one digest per algorithm, type, op and p")
        let now = try Self.allDigests()
        XCTAssertEqual(Set(now.keys), Set(recorded.keys))
        for key in recorded.keys.sorted() where now[key] != recorded[key] {
            XCTFail("\(key): digest \(Checksum.hex(now[key] ?? 0)), recorded \(Checksum.hex(recorded[key]!))")
        }
    }

    /// Not a test: writes `RingDigestsRecorded.swift` from the code as it is (see the type's documentation).
    /// Skipped unless `DML_RECORD_RING_DIGESTS` names the file to write.
    func testRecordDigests() throws {
        guard let path = ProcessInfo.processInfo.environment["DML_RECORD_RING_DIGESTS"] else {
            throw XCTSkip("records the digests only when DML_RECORD_RING_DIGESTS names the output file")
        }
        let commit = ProcessInfo.processInfo.environment["DML_RECORD_RING_COMMIT"] ?? "unknown"
        let all = try Self.allDigests()
        var text = """
            // Generated by scripts/record-ring-digests from the code at \(commit); do not edit.
            // Recorded outputs of the ring allreduce before its two schedules were merged: see RingDigestTests.

            enum RingDigestsRecorded {
                static let digests: [String: UInt64] = [

            """
        for key in all.keys.sorted() { text += "        \"\(key)\": 0x\(Checksum.hex(all[key]!)),\n" }
        text += "    ]\n}\n"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }
}
