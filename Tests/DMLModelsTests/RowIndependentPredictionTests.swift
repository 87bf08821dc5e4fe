import XCTest
@testable import DMLModels
import DMLTestSupport

/// `Model.predict`'s invariant: a row's outputs are a function of that row and the parameters alone, so any
/// cut of the rows into blocks (as ranks and their shards cut them) gives the same bits. Every model kind,
/// odd feature counts (SIMD tails), more rows than one evaluation block (1024), cuts at every residue of the
/// kernels' row groups (gemv's 4, the few-class gemm's 2, the packed gemm's 6).
final class RowIndependentPredictionTests: XCTestCase {
    func testEveryModelPredictsEachRowTheSameWhereverItLies() {
        var random = TestRandom(seed: 23)
        let models: [(String, Model)] = [
            ("linear", LinearRegression(features: 37)),
            ("logistic", LogisticRegression(features: 37)),
            ("softmax 3", SoftmaxRegression(features: 37, classes: 3)),
            ("softmax 10 × 784", SoftmaxRegression(features: 784, classes: 10)),
            ("mlp relu", MLP(features: 37, hidden: [13, 7], classes: 4, activation: .relu)),
            ("mlp tanh 20 classes", MLP(features: 37, hidden: [19], classes: 20, activation: .tanh)),
        ]
        for (name, model) in models {
            let d = model.inputs, k = model.outputs
            let rows = d > 100 ? 1100 : 2100
            let parameters = random.floats(model.layout.count, in: -0.5...0.5)
            let x = random.floats(rows * d, in: -2...2)
            var whole = [Float](repeating: .nan, count: rows * k)
            x.withUnsafeBufferPointer { xs in
                parameters.withUnsafeBufferPointer { p in
                    model.predict(parameters: p.baseAddress!, x: xs.baseAddress!, rows: rows, into: &whole)
                }
            }
            XCTAssertTrue(whole.allSatisfy(\.isFinite), name)
            let cuts: [[Int]] = [[1], [2], [3], [5], [7, 1030], [1023, 1024, 1025], Array(stride(from: 11, to: rows, by: 97))]
            for cut in cuts {
                var pieces = [Float](repeating: .nan, count: rows * k)
                let bounds = [0] + cut + [rows]
                x.withUnsafeBufferPointer { xs in
                    parameters.withUnsafeBufferPointer { p in
                        pieces.withUnsafeMutableBufferPointer { out in
                            for (start, end) in zip(bounds, bounds.dropFirst()) where end > start {
                                model.predict(parameters: p.baseAddress!, x: xs.baseAddress! + start * d, rows: end - start,
                                              into: out.baseAddress! + start * k)
                            }
                        }
                    }
                }
                let differing = (0..<rows * k).filter { whole[$0].bitPattern != pieces[$0].bitPattern }
                XCTAssertTrue(differing.isEmpty, "\(name), cut at \(cut.prefix(4)): \(differing.count) outputs differ, first at row \(differing.first.map { $0 / k } ?? -1)")
            }
        }
    }
}
