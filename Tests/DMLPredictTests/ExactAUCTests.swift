import XCTest
import DMLComm
@testable import DMLPredict
import DMLTestSupport

/// `ExactAUC` against the O(P·N) count of pairs (ties ½) on the same rows, for 1…6 ranks, rows spread
/// unevenly (some ranks none), scores with many ties (a few distinct values), all scores equal (every row on
/// one rank after the sort), ±0, and one class only (undefined: nil).
final class ExactAUCTests: XCTestCase {
    func reference(_ scores: [Float], _ positive: [Bool]) -> Double? {
        var twice = 0, p = 0, n = 0
        for i in scores.indices where positive[i] {
            p += 1
            for j in scores.indices where !positive[j] { twice += scores[i] > scores[j] ? 2 : scores[i] == scores[j] ? 1 : 0 }
        }
        n = scores.count - p
        return p > 0 && n > 0 ? Double(twice) / Double(2 * p * n) : nil
    }

    func distributed(_ scores: [Float], _ positive: [Bool], ranks: Int, samples: Int = 64) throws -> [Double?] {
        try LocalCommunicator.run(size: ranks) { comm in
            // Uneven shards: rank r holds a share growing with r (rank 0 none when there are few rows).
            let weights = (0..<ranks).map { $0 * $0 + ($0 == 0 && ranks > 1 ? 0 : 1) }
            let total = weights.reduce(0, +)
            let start = weights[..<comm.rank].reduce(0, +) * scores.count / total
            let end = weights[...comm.rank].reduce(0, +) * scores.count / total
            let own = try comm.duplicate()
            return try ExactAUC.compute(scores: Array(scores[start..<end]), positive: Array(positive[start..<end]), comm: comm,
                                        exchange: own, samplesPerRank: samples)
        }
    }

    func testTheDistributedSortGivesThePairCountOnAnyNumberOfRanks() throws {
        var random = TestRandom(seed: 41)
        let n = 700
        let cases: [(String, [Float], [Bool])] = [
            ("continuous", random.floats(n, in: 0...1), (0..<n).map { _ in Bool.random(using: &random) }),
            ("five values", (0..<n).map { _ in Float(Int.random(in: 0..<5, using: &random)) / 4 }, (0..<n).map { _ in Bool.random(using: &random) }),
            ("all equal", Array(repeating: 0.5, count: n), (0..<n).map { $0 % 3 == 0 }),
            ("signed zeros", (0..<n).map { $0 % 2 == 0 ? Float(0) : -Float(0) }, (0..<n).map { $0 % 5 == 0 }),
            ("separable", (0..<n).map { Float($0) / Float(n) }, (0..<n).map { $0 > n / 3 }),
            ("one class", random.floats(n, in: 0...1), Array(repeating: true, count: n)),
        ]
        for (name, scores, positive) in cases {
            let expected = reference(scores, positive)
            for p in 1...6 {
                for samples in [1, 64] {
                    let got = try distributed(scores, positive, ranks: p, samples: samples)
                    for g in got { XCTAssertEqual(g, expected, "\(name), np=\(p), \(samples) samples per rank") }
                }
            }
        }
        XCTAssertEqual(reference([0.5, 0.5], [true, false]), 0.5)
        XCTAssertEqual(reference((0..<n).map { Float($0) }, (0..<n).map { $0 > n / 3 }), 1)
    }
}
