import XCTest
import DMLKernels
import DMLTestSupport

/// `SparseRows.margins` (the full-batch passes' X·w in eight chains): the documented order of additions, bit for
/// bit, on every ISA this CPU runs, for rows of 0 to 40 non-zeros; within rounding of `forward`'s two chains.
final class SparseMarginsTests: XCTestCase {
    func testEightChainsInTheDocumentedOrderOnEveryISA() {
        var random = TestRandom(seed: 5)
        let columns = 300
        var starts = [0], indices: [Int32] = [], values: [Float] = []
        for r in 0..<120 {
            let count = r % 41
            let chosen = Set((0..<count).map { _ in Int32.random(in: 0..<Int32(columns), using: &random) }).sorted()
            for j in chosen { indices.append(j); values.append(Float.random(in: -3...3, using: &random)) }
            starts.append(indices.count)
        }
        let csr = CSRMatrix(columns: columns, rowStarts: starts, indices: indices, values: values)
        let w = random.floats(columns, in: -2...2)
        var reference = [Float](repeating: 0, count: csr.rows)
        for r in 0..<csr.rows {
            var s = [Double](repeating: 0, count: 8)
            for k in starts[r]..<starts[r + 1] { s[(k - starts[r]) % 8] += Double(values[k]) * Double(w[Int(indices[k])]) }
            reference[r] = Float(((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7])))
        }
        var twoChains = [Float](repeating: 0, count: csr.rows)
        csr.withView(rows: 0..<csr.rows) { SparseRows.forward($0, weights: w, ldw: columns, outputs: 1, into: &twoChains, ldo: 1) }
        for isa in KernelDispatch.supported {
            var out = [Float](repeating: .nan, count: csr.rows)
            KernelDispatch.with(isa) { csr.withView(rows: 0..<csr.rows) { SparseRows.margins($0, weights: w, into: &out) } }
            XCTAssertEqual(out.map(\.bitPattern), reference.map(\.bitPattern), "\(isa)")
            for (a, b) in zip(out, twoChains) { XCTAssertEqual(a, b, accuracy: 1e-5 * Swift.max(1, abs(b)), "\(isa)") }
        }
    }
}
