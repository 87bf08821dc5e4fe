import XCTest
import DMLKernels
@testable import DMLModels
import DMLTestSupport

/// `LeafGradientModel`'s invariant: one pass over several leaves gives each leaf the bits of `accumulateGradient`
/// on its rows alone into a zeroed buffer (a zero's sign aside), whatever the buffers held before — dense and CSR
/// rows, ReLU and tanh, weight decay, leaves of 64 rows and a short one anywhere, a hidden layer of width 1
/// (gemv: each leaf its own pass). The models without the fused pass take `Model.leafGradients`' per-leaf calls.
final class LeafGradientTests: XCTestCase {
    func testOnePassGivesEachLeafTheBitsOfItsOwnCall() {
        let features = 37
        let models: [(String, Model)] = [
            ("softmax", SoftmaxRegression(features: features, classes: 10)),
            ("softmax decay", SoftmaxRegression(features: features, classes: 3, weightDecay: 0.01)),
            ("mlp relu", MLP(features: features, hidden: [40, 7], classes: 4, activation: .relu)),
            ("mlp tanh decay", MLP(features: features, hidden: [19], classes: 5, activation: .tanh, weightDecay: 0.01)),
            ("mlp width 1", MLP(features: features, hidden: [1], classes: 3)),
            ("logistic", LogisticRegression(features: features)),
        ]
        var random = TestRandom(seed: 41)
        // Leaf sizes: whole 64-row blocks and a short one first, in the middle and last.
        for sizes in [[64, 64, 64], [23, 64, 64], [64, 23, 64, 64], [64, 64, 5], [64]] {
            let rows = sizes.reduce(0, +)
            var starts = [0]
            for s in sizes { starts.append(starts.last! + s) }
            let cuts = zip(starts, starts.dropFirst()).map { $0 ..< $1 }
            let x = random.floats(rows * features, in: -2...2).map { abs($0) < 1 ? 0 : $0 }  // half zeros: CSR rows of ~18 values
            for (name, model) in models {
                let n = model.layout.count, k = Swift.max(model.outputs, 2)
                let y = (0..<rows).map { Float($0 * 7 % k) }
                let w = random.floats(n, in: -0.3...0.3)
                for sparse in [false, true] {
                    var whole = [Float](repeating: .nan, count: cuts.count * n)
                    var alone = [Float](repeating: 0, count: cuts.count * n)
                    var (fused, separate) = ([Double](), [Double]())
                    x.withUnsafeBufferPointer { xb in
                        y.withUnsafeBufferPointer { yb in
                            withRows(xb.baseAddress!, rows: rows, features: features, sparse: sparse) { block in
                                let batch = Batch(block: block, y: yb.baseAddress!)
                                whole.withUnsafeMutableBufferPointer { g in
                                    fused = model.leafGradients(parameters: w, batch: batch,
                                                                leaves: cuts.enumerated().map { GradientLeaf(rows: $1, gradient: g.baseAddress! + $0 * n) })
                                }
                                alone.withUnsafeMutableBufferPointer { g in
                                    separate = cuts.enumerated().map { i, r in
                                        model.accumulateGradient(parameters: w, batch: batch.rows(r), into: g.baseAddress! + i * n)
                                    }
                                }
                            }
                        }
                    }
                    let what = "\(name) \(sparse ? "CSR" : "dense") leaves \(sizes)"
                    XCTAssertEqual(fused.map(\.bitPattern), separate.map(\.bitPattern), "\(what): losses")
                    // +0 and −0 count as one (the fused pass writes where the other adds into zeros).
                    let differing = whole.indices.filter { whole[$0] != alone[$0] || whole[$0].isNaN != alone[$0].isNaN
                        || (whole[$0] != 0 && whole[$0].bitPattern != alone[$0].bitPattern) }
                    XCTAssertTrue(differing.isEmpty, "\(what): \(differing.count) gradient values differ, first at \(differing.first ?? -1)")
                    XCTAssertTrue(whole.allSatisfy(\.isFinite), what)
                }
            }
        }
    }

    /// Dense rows as they are, or the same rows as CSR.
    private func withRows(_ x: UnsafePointer<Float>, rows: Int, features: Int, sparse: Bool, _ body: (RowBlock) -> Void) {
        guard sparse else { return body(RowBlock(dense: x, rows: rows, features: features)) }
        let csr = CSRMatrix(dense: Array(UnsafeBufferPointer(start: x, count: rows * features)), rows: rows, columns: features)
        csr.withView(rows: 0..<rows) { body(RowBlock($0)) }
    }
}
