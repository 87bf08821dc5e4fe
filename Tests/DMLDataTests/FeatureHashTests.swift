import XCTest
import DMLComm
@testable import DMLData
import DMLTestSupport

/// `FeatureHash`'s inline XXH3 and its row sort against the library and a plain stable sort.
final class FeatureHashTests: XCTestCase {
    /// The inline short-input XXH3 is the library's value (`Checksum.hash` of the 8 little-endian bytes) for
    /// every index tried, under the default seed and others, at every width.
    func testTheInlineXXH3IsTheLibrarysHash() {
        var random = TestRandom(seed: 5)
        let indices = Array(1...20_000) + (0..<20_000).map { _ in Int.random(in: 1...Int(Int32.max), using: &random) }
            + [Int(Int32.max) - 1, 1 << 31, Int(UInt32.max)]
        for seed in [FeatureHash.defaultSeed, 0, 1, 0xFFFF_FFFF_FFFF_FFFF, 0x0123_4567_89AB_CDEF] {
            for bits in [1, 6, 7, 22, 31] {
                let map = FeatureHash(bits: bits, seed: seed)!
                for i in indices {
                    var le = UInt64(i).littleEndian
                    let h = withUnsafeBytes(of: &le) { Checksum.hash($0, seed: seed) }
                    let expected = Int32(truncatingIfNeeded: h & UInt64((1 << bits) - 1))
                    if map.bucket(i) != expected { return XCTFail("seed \(seed) bits \(bits) index \(i): \(map.bucket(i)) ≠ \(expected)") }
                }
            }
        }
    }

    /// A hashed row is sorted by bucket, values of one bucket added in index order — what a plain stable sort
    /// of (bucket, position) gives — for short and long rows, narrow and wide maps, rows after other rows.
    func testHashRowIsAStableSortByBucketWithTheBucketsValuesAdded() {
        var random = TestRandom(seed: 9)
        for bits in [2, 5, 6, 12, 22, 31] {
            let map = FeatureHash(bits: bits)!
            var scratch: [(Int32, Float)] = []
            var indices: [Int32] = [7, 8], values: [Float] = [1, 2]  // an earlier row, left alone
            for length in [1, 2, 3, 36, 64, 65, 200] {
                let start = indices.count
                var row = Set<Int32>()
                while row.count < length { row.insert(Int32.random(in: 0..<5_000_000, using: &random)) }
                let sortedRow = row.sorted()
                let rowValues = sortedRow.map { _ in Float(Int.random(in: 1...1000, using: &random)) / 7 }
                indices += sortedRow
                values += rowValues
                // Reference: stable sort by bucket, then add equal buckets in order.
                let pairs = zip(sortedRow, rowValues).enumerated().map { (map.bucket(Int($0.element.0) + 1), $0.offset, $0.element.1) }
                    .sorted { ($0.0, $0.1) < ($1.0, $1.1) }
                var expectedIndices: [Int32] = [], expectedValues: [Float] = []
                for (b, _, v) in pairs {
                    if expectedIndices.last == b { expectedValues[expectedValues.count - 1] += v } else { expectedIndices.append(b); expectedValues.append(v) }
                }
                map.hashRow(indices: &indices, values: &values, from: start, scratch: &scratch)
                XCTAssertEqual(Array(indices[start...]), expectedIndices, "bits \(bits) length \(length)")
                XCTAssertEqual(Array(values[start...]).map(\.bitPattern), expectedValues.map(\.bitPattern), "bits \(bits) length \(length)")
                XCTAssertEqual(Array(indices[0..<2]), [7, 8])
            }
        }
    }
}
