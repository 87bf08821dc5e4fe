import XCTest
import DMLKernels

final class RadixSortTests: XCTestCase {
    /// Equals Array.sort() on short, long, duplicate-heavy, already sorted, reversed and full-range inputs.
    func testRadixSortEqualsSort() {
        var g = SystemRandomNumberGenerator()
        let cases: [[Int32]] = [
            [], [5], Array((0..<64).reversed()), Array((0..<65).reversed()),
            (0..<10_000).map { _ in Int32.random(in: 0...(1 << 22), using: &g) },
            (0..<5_000).map { _ in Int32.random(in: 0...7, using: &g) },
            (0..<3_000).map { _ in Int32.random(in: 0...Int32.max, using: &g) },
            Array(0..<4_096), [Int32.max, 0, 1 << 11, 1 << 22, 1 << 30, 2047, 2048] + Array(repeating: 3, count: 100),
        ]
        for c in cases {
            var r = c
            RadixSort.sortNonNegative(&r)
            XCTAssertEqual(r, c.sorted(), "n = \(c.count)")
        }
    }
}
