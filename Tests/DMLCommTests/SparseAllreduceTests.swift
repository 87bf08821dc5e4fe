import XCTest
@testable import DMLComm
import DMLTestSupport

/// `SparseAllreduce` on the in-process communicator: the union and the sums for every kind of overlap between
/// the ranks' positions, bits equal to the documented order (recursive doubling, absent = +0) and to `rd` on
/// the dense vectors, the same bits on every rank. (A stalled peer: `DeadlineTests` runs `sparse` with the others.)
final class SparseAllreduceTests: XCTestCase {
    /// A rank's sparse input: sorted unique positions and their values.
    struct Input {
        var indices: [Int32]
        var values: [Float]
        func dense(_ n: Int) -> [Float] {
            var d = [Float](repeating: 0, count: n)
            for (i, v) in zip(indices, values) { d[Int(i)] = v }
            return d
        }
    }

    /// The patterns of the brief: some ranks empty, all identical, disjoint, full density, random (with
    /// duplicates across ranks), and −0 values that must meet the others' +0 as in a dense sum.
    static func inputs(pattern: String, p: Int, n: Int, seed: UInt64) -> [Input] {
        var rng = TestRandom(seed: seed)
        func values(_ k: Int) -> [Float] { rng.floats(k, in: -1e3...1e3) }
        switch pattern {
        case "empty on even ranks":
            return (0..<p).map { r in
                if r % 2 == 0 { return Input(indices: [], values: []) }
                let idx = (0..<n).filter { _ in Bool.random(using: &rng) }.map(Int32.init)
                return Input(indices: idx, values: values(idx.count))
            }
        case "all empty":
            return (0..<p).map { _ in Input(indices: [], values: []) }
        case "identical":
            let idx = (0..<n).filter { $0 % 3 == 1 }.map(Int32.init)
            return (0..<p).map { _ in Input(indices: idx, values: values(idx.count)) }
        case "disjoint":
            return (0..<p).map { r in
                let idx = (0..<n).filter { $0 % p == r }.map(Int32.init)
                return Input(indices: idx, values: values(idx.count))
            }
        case "full":
            return (0..<p).map { _ in Input(indices: (0..<n).map(Int32.init), values: values(n)) }
        case "signed zeros":
            return (0..<p).map { r in
                let idx = (0..<n).filter { ($0 + r) % 2 == 0 }.map(Int32.init)
                return Input(indices: idx, values: idx.map { i in i % 4 == 0 ? -0.0 : (i % 4 == 2 ? Float(r) - 1 : -Float(i)) })
            }
        default:  // random
            return (0..<p).map { _ in
                let density = Double.random(in: 0...0.5, using: &rng)
                let idx = (0..<n).filter { _ in Double.random(in: 0..<1, using: &rng) < density }.map(Int32.init)
                return Input(indices: idx, values: values(idx.count))
            }
        }
    }

    static let patterns = ["empty on even ranks", "all empty", "identical", "disjoint", "full", "signed zeros", "random"]

    /// The documented order written out: recursive doubling over the dense vectors (absent = +0), the lower
    /// group's value on the left; ranks that sit out get a copy.
    static func reference(_ dense: [[Float]]) -> [Float] {
        let p = dense.count
        var pof2 = 1
        while pof2 * 2 <= p { pof2 *= 2 }
        let rem = p - pof2
        // value[newRank] after the fold
        var groups: [[Float]] = (0..<pof2).map { nr in
            if nr < rem { return zip(dense[2 * nr], dense[2 * nr + 1]).map { $0 + $1 } }
            return dense[nr + rem]
        }
        var mask = 1
        while mask < pof2 {
            groups = (0..<pof2).map { nr in
                let peer = nr ^ mask
                let (lo, hi) = peer < nr ? (groups[peer], groups[nr]) : (groups[nr], groups[peer])
                return zip(lo, hi).map { $0 + $1 }
            }
            mask <<= 1
        }
        return groups[0]
    }

    func run(_ inputs: [Input], n: Int) throws -> [(indices: [Int32], values: [Float])] {
        try LocalCommunicator.run(size: inputs.count, timeout: 30) { comm in
            let sparse = SparseAllreduce(comm: comm)
            let mine = inputs[comm.rank]
            return try mine.indices.withUnsafeBufferPointer { i in
                try mine.values.withUnsafeBufferPointer { v in
                    let out = try sparse.run(SparseEntries(indices: i, values: v), dimension: n, op: .sum)
                    return (Array(out.indices), Array(out.values))
                }
            }
        }
    }

    func testUnionAndSumsEqualTheDocumentedOrderForOneToSixteenRanks() throws {
        for p in 1...16 {
            for (k, pattern) in Self.patterns.enumerated() {
                let n = 37 + p
                let inputs = Self.inputs(pattern: pattern, p: p, n: n, seed: UInt64(p * 100 + k))
                let union = Set(inputs.flatMap(\.indices)).sorted()
                let expected = Self.reference(inputs.map { $0.dense(n) })
                let results = try run(inputs, n: n)
                for r in 0..<p {
                    XCTAssertEqual(results[r].indices, union, "p=\(p) \(pattern) rank \(r): union")
                    XCTAssertEqual(results[r].values.map(\.bitPattern), union.map { expected[Int($0)].bitPattern },
                                   "p=\(p) \(pattern) rank \(r): values differ from the reference order")
                    XCTAssertEqual(results[r].values.map(\.bitPattern), results[0].values.map(\.bitPattern), "p=\(p) \(pattern): rank \(r) differs from rank 0")
                }
                // Everything off the union is +0 in the reference too.
                for i in 0..<n where !union.contains(Int32(i)) {
                    XCTAssertEqual(expected[i].bitPattern, Float(0).bitPattern, "p=\(p) \(pattern) position \(i)")
                }
            }
        }
    }

    /// Scattered into a +0 vector, the sparse result has the bits of `rd` on the dense vectors; the dense
    /// interface (entries: every element that is not +0) gives them too.
    func testSameBitsAsRecursiveDoublingOnTheDenseVectors() throws {
        for p in [1, 2, 3, 5, 6, 7, 8, 12, 16] {
            for (k, pattern) in Self.patterns.enumerated() {
                let n = 301
                let inputs = Self.inputs(pattern: pattern, p: p, n: n, seed: UInt64(7 + p * 10 + k))
                let both = try LocalCommunicator.run(size: p, timeout: 30) { comm -> ([UInt32], [UInt32], [UInt32]) in
                    var rd = inputs[comm.rank].dense(n), viaDense = rd
                    try rd.withUnsafeMutableBufferPointer { try RecursiveDoublingAllreduce(comm: comm).run($0, op: .sum) }
                    try viaDense.withUnsafeMutableBufferPointer { try SparseAllreduce(comm: comm).run($0, op: .sum) }
                    let sparse = SparseAllreduce(comm: comm), mine = inputs[comm.rank]
                    var scattered = [Float](repeating: 0, count: n)
                    try mine.indices.withUnsafeBufferPointer { i in
                        try mine.values.withUnsafeBufferPointer { v in
                            let out = try sparse.run(SparseEntries(indices: i, values: v), dimension: n, op: .sum)
                            for j in 0..<out.count { scattered[Int(out.indices[j])] = out.values[j] }
                        }
                    }
                    return (rd.map(\.bitPattern), scattered.map(\.bitPattern), viaDense.map(\.bitPattern))
                }
                for r in 0..<p {
                    XCTAssertEqual(both[r].1, both[r].0, "p=\(p) \(pattern) rank \(r): sparse ≠ rd")
                    XCTAssertEqual(both[r].2, both[r].0, "p=\(p) \(pattern) rank \(r): sparse (dense interface) ≠ rd")
                }
            }
        }
    }

    func testMaxMinDoublesAndReuseAcrossCalls() throws {
        let results = try LocalCommunicator.run(size: 5) { comm -> [[Double]] in
            let sparse = SparseAllreduce(comm: comm)
            var out: [[Double]] = []
            for (size, op) in [(10, ReduceOp.max), (1000, .min), (3, .sum), (1000, .sum)] {
                // rank r holds positions r, r+5, …: each position is held by exactly one rank
                let idx = (0..<size).filter { $0 % 5 == comm.rank }.map(Int32.init)
                let vals = idx.map { Double($0) - 4 }
                try idx.withUnsafeBufferPointer { i in
                    try vals.withUnsafeBufferPointer { v in
                        let r = try sparse.run(SparseEntries(indices: i, values: v), dimension: size, op: op)
                        XCTAssertEqual(Array(r.indices), (0..<size).map(Int32.init))
                        out.append(Array(r.values))
                    }
                }
            }
            return out
        }
        for r in results {
            XCTAssertEqual(r[0], (0..<10).map { Swift.max(Double($0) - 4, 0) })  // absent = +0 meets the max
            XCTAssertEqual(r[1], (0..<1000).map { Swift.min(Double($0) - 4, 0) })
            XCTAssertEqual(r[2], (0..<3).map { Double($0) - 4 })
            XCTAssertEqual(r[3], (0..<1000).map { Double($0) - 4 })
        }
    }
}
