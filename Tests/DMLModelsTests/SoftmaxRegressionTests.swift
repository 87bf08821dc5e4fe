import XCTest
import DMLModels
import DMLTestSupport

final class SoftmaxRegressionTests: XCTestCase {
    /// The loss summed over rows, computed independently of the model, in Double.
    func referenceLoss(_ w: [Double], x: [Float], y: [Float], features d: Int, classes k: Int) -> Double {
        var total = 0.0
        for i in 0..<y.count {
            var z = [Double](repeating: 0, count: k)
            for c in 0..<k {
                z[c] = w[k * d + c]
                for j in 0..<d { z[c] += w[c * d + j] * Double(x[i * d + j]) }
            }
            let m = z.max()!
            let lse = m + log(z.reduce(0) { $0 + exp($1 - m) })
            total += lse - z[Int(y[i])]
        }
        return total
    }

    func testGradientMatchesCentralFiniteDifferences() {
        let d = 13, k = 4, rows = 9
        var rng = TestRandom(seed: 5)
        let x = rng.floats(rows * d)
        let y = (0..<rows).map { Float($0 % k) }
        let model = SoftmaxRegression(features: d, classes: k)
        let params = rng.floats(model.layout.count, in: -0.5...0.5)
        var grad = [Float](repeating: 0, count: model.layout.count)
        let loss = x.withUnsafeBufferPointer { xs in
            y.withUnsafeBufferPointer { ys in
                model.accumulateGradient(parameters: params, batch: Batch(x: xs.baseAddress!, y: ys.baseAddress!, rows: rows, features: d),
                                         into: &grad)
            }
        }
        var w = params.map(Double.init)
        XCTAssertEqual(loss, referenceLoss(w, x: x, y: y, features: d, classes: k), accuracy: 1e-4)
        let h = 1e-5
        var worst = 0.0
        for i in 0..<w.count {
            let saved = w[i]
            w[i] = saved + h
            let up = referenceLoss(w, x: x, y: y, features: d, classes: k)
            w[i] = saved - h
            let down = referenceLoss(w, x: x, y: y, features: d, classes: k)
            w[i] = saved
            let numeric = (up - down) / (2 * h)
            worst = max(worst, abs(numeric - Double(grad[i])) / max(1e-3, abs(numeric)))
        }
        XCTAssertLessThan(worst, 1e-3, "largest relative gradient error")
    }

    func testLayoutAndPredictions() {
        let model = SoftmaxRegression(features: 3, classes: 2)
        XCTAssertEqual(model.layout.views.map(\.name), ["layers.0.weight", "layers.0.bias"])
        XCTAssertEqual(model.layout.view(named: "layers.0.bias")?.offset, 6)
        XCTAssertEqual(model.layout.count, 8)
        let params: [Float] = [1, 0, 0, 0, 1, 0, 0, 0]
        var out = [Float](repeating: 0, count: 2)
        model.predict(parameters: params, x: [2, 0, 5], rows: 1, into: &out)
        XCTAssertEqual(Double(out[0]), 1 / (1 + exp(-2.0)), accuracy: 1e-6)
        XCTAssertEqual(Double(out[0] + out[1]), 1, accuracy: 1e-6)
    }
}
