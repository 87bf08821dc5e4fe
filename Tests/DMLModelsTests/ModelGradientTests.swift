import XCTest
import DMLModels
import DMLTestSupport

/// Every model's gradient against central finite differences of an independent Double implementation of
/// its loss (written here, sharing no code with the model).
///
/// What is compared: the model's Float gradient sum g (from `accumulateGradient`) against
/// n_i = (L(w + h·e_i) − L(w − h·e_i)) / 2h, where L is the reference loss sum in Double (weight decay
/// included) and h = 1e-4 (truncation error O(h²) ≈ 1e-8). The error is
/// max_i |g_i − n_i| / max(|n_i|, 0.01·max_j |n_j|), bounded by 1e-4: relative for every entry of
/// meaningful size, and relative to 1% of the largest entry for entries near zero (where Float rounding
/// of a sum of many terms is the only difference). The loss the model returns is checked against L(w) too.
final class ModelGradientTests: XCTestCase {
    struct Problem {
        let x: [Float]
        let y: [Float]
        let rows: Int
        let features: Int
    }

    func problem(rows: Int, features: Int, labels: (Int) -> Float, seed: UInt64) -> Problem {
        var rng = TestRandom(seed: seed)
        return Problem(x: rng.floats(rows * features), y: (0..<rows).map(labels), rows: rows, features: features)
    }

    func checkGradient(_ model: Model, _ p: Problem, params: [Float], reference: ([Double]) -> Double,
                       file: StaticString = #filePath, line: UInt = #line) {
        var grad = [Float](repeating: 0, count: model.layout.count)
        let loss = p.x.withUnsafeBufferPointer { xs in
            p.y.withUnsafeBufferPointer { ys in
                model.accumulateGradient(parameters: params, batch: Batch(x: xs.baseAddress!, y: ys.baseAddress!, rows: p.rows, features: p.features),
                                         into: &grad)
            }
        }
        var w = params.map(Double.init)
        let refLoss = reference(w)
        XCTAssertEqual(loss, refLoss, accuracy: 1e-5 * max(1, abs(refLoss)), "\(model.kind) loss", file: file, line: line)
        let h = 1e-4
        var numeric = [Double](repeating: 0, count: w.count)
        for i in 0..<w.count {
            let saved = w[i]
            w[i] = saved + h
            let up = reference(w)
            w[i] = saved - h
            let down = reference(w)
            w[i] = saved
            numeric[i] = (up - down) / (2 * h)
        }
        let scale = 0.01 * numeric.map(abs).max()!
        var worst = 0.0
        for i in 0..<w.count { worst = max(worst, abs(Double(grad[i]) - numeric[i]) / max(abs(numeric[i]), scale)) }
        XCTAssertLessThan(worst, 1e-4, "\(model.kind): largest relative gradient error", file: file, line: line)
    }

    /// (λ/2)·‖W‖² per row, over the given parameter ranges.
    func penalty(_ w: [Double], _ ranges: [Range<Int>], lambda: Double, rows: Int) -> Double {
        Double(rows) * 0.5 * lambda * ranges.reduce(0.0) { s, r in s + w[r].reduce(0) { $0 + $1 * $1 } }
    }

    func testLinearRegressionGradient() {
        let d = 11, p = problem(rows: 13, features: d, labels: { Float($0 % 5) - 2 }, seed: 1)
        for lambda in [0.0, 0.3] {
            let model = LinearRegression(features: d, weightDecay: Float(lambda))
            var rng = TestRandom(seed: 2)
            checkGradient(model, p, params: rng.floats(model.layout.count)) { w in
                var total = 0.0
                for i in 0..<p.rows {
                    var z = w[d]
                    for j in 0..<d { z += w[j] * Double(p.x[i * d + j]) }
                    total += 0.5 * (z - Double(p.y[i])) * (z - Double(p.y[i]))
                }
                return total + penalty(w, [0..<d], lambda: lambda, rows: p.rows)
            }
        }
    }

    func testLogisticRegressionGradient() {
        let d = 9, p = problem(rows: 17, features: d, labels: { Float($0 % 3 == 0 ? 1 : 0) }, seed: 3)
        for lambda in [0.0, 0.2] {
            let model = LogisticRegression(features: d, weightDecay: Float(lambda))
            var rng = TestRandom(seed: 4)
            checkGradient(model, p, params: rng.floats(model.layout.count, in: -2...2)) { w in
                var total = 0.0
                for i in 0..<p.rows {
                    var z = w[d]
                    for j in 0..<d { z += w[j] * Double(p.x[i * d + j]) }
                    let prob = 1 / (1 + exp(-z))
                    total -= p.y[i] == 1 ? log(prob) : log(1 - prob)
                }
                return total + penalty(w, [0..<d], lambda: lambda, rows: p.rows)
            }
        }
    }

    func softmaxCrossEntropy(_ z: [Double], _ label: Int) -> Double {
        let m = z.max()!
        return m + log(z.reduce(0) { $0 + exp($1 - m) }) - z[label]
    }

    func testSoftmaxRegressionGradient() {
        let d = 13, k = 4, p = problem(rows: 19, features: d, labels: { Float($0 % 4) }, seed: 5)
        for lambda in [0.0, 0.1] {
            let model = SoftmaxRegression(features: d, classes: k, weightDecay: Float(lambda))
            var rng = TestRandom(seed: 6)
            checkGradient(model, p, params: rng.floats(model.layout.count, in: -0.5...0.5)) { w in
                var total = 0.0
                for i in 0..<p.rows {
                    let z = (0..<k).map { c in (0..<d).reduce(w[k * d + c]) { $0 + w[c * d + $1] * Double(p.x[i * d + $1]) } }
                    total += softmaxCrossEntropy(z, Int(p.y[i]))
                }
                return total + penalty(w, [0..<(k * d)], lambda: lambda, rows: p.rows)
            }
        }
    }

    /// The MLP's loss in Double, reading the layout's named views.
    func mlpReference(_ model: MLP, _ p: Problem, lambda: Double) -> ([Double]) -> Double {
        let widths = [p.features] + model.hidden + [model.outputs]
        return { w in
            var total = 0.0
            for i in 0..<p.rows {
                var a = (0..<p.features).map { Double(p.x[i * p.features + $0]) }
                for l in 1..<widths.count {
                    let W = model.layout.view(named: "layers.\(l - 1).weight")!, b = model.layout.view(named: "layers.\(l - 1).bias")!
                    var z = [Double](repeating: 0, count: widths[l])
                    for o in 0..<widths[l] {
                        z[o] = w[b.offset + o]
                        for j in 0..<widths[l - 1] { z[o] += w[W.offset + o * widths[l - 1] + j] * a[j] }
                    }
                    a = l == widths.count - 1 ? z : z.map { model.activation == .relu ? max($0, 0) : tanh($0) }
                }
                total += self.softmaxCrossEntropy(a, Int(p.y[i]))
            }
            let weights = (1..<widths.count).map { model.layout.view(named: "layers.\($0 - 1).weight")!.range }
            return total + self.penalty(w, weights, lambda: lambda, rows: p.rows)
        }
    }

    func testMLPGradientReluAndTanh() {
        let d = 6, k = 3, p = problem(rows: 11, features: d, labels: { Float($0 % 3) }, seed: 7)
        for (activation, hidden, lambda) in [(MLP.ActivationKind.relu, [7, 5], 0.0), (.tanh, [9], 0.05), (.relu, [17], 0.1)] {
            let model = MLP(features: d, hidden: hidden, classes: k, activation: activation, weightDecay: Float(lambda))
            var params = [Float](repeating: 0, count: model.layout.count)
            params.withUnsafeMutableBufferPointer { model.initialize($0, seed: 3) }
            var rng = TestRandom(seed: 8)  // non-zero biases too, so every path is exercised
            for v in model.layout.views where v.name.hasSuffix("bias") {
                for i in v.range { params[i] = Float.random(in: -0.3...0.3, using: &rng) }
            }
            checkGradient(model, p, params: params, reference: mlpReference(model, p, lambda: lambda))
        }
    }

    func testEvaluateAndPredictAgreeWithTheTrainingLoss() {
        let d = 8, k = 5, rows = 40
        let p = problem(rows: rows, features: d, labels: { Float($0 % k) }, seed: 9)
        let model = MLP(features: d, hidden: [12], classes: k, activation: .tanh)
        var params = [Float](repeating: 0, count: model.layout.count)
        params.withUnsafeMutableBufferPointer { model.initialize($0, seed: 1) }
        var grad = [Float](repeating: 0, count: model.layout.count)
        var probs = [Float](repeating: 0, count: rows * k)
        let (loss, sums) = p.x.withUnsafeBufferPointer { xs in
            p.y.withUnsafeBufferPointer { ys in
                let batch = Batch(x: xs.baseAddress!, y: ys.baseAddress!, rows: rows, features: d)
                model.predict(parameters: params, x: xs.baseAddress!, rows: rows, into: &probs)
                return (model.accumulateGradient(parameters: params, batch: batch, into: &grad),
                        model.evaluate(parameters: params, batch: batch))
            }
        }
        XCTAssertEqual(sums.loss, loss, accuracy: 1e-4)
        var nll = 0.0, correct = 0.0
        for i in 0..<rows {
            let row = probs[(i * k)..<((i + 1) * k)]
            XCTAssertEqual(Double(row.reduce(0, +)), 1, accuracy: 1e-5)
            nll -= log(Double(row[i * k + Int(p.y[i])]))
            if row.indices.max(by: { row[$0] < row[$1] })! - i * k == Int(p.y[i]) { correct += 1 }
        }
        XCTAssertEqual(nll, loss, accuracy: 1e-3)
        XCTAssertEqual(sums.correct, correct)
    }

    func testMLPInitialisationIsDeterministicAndScaled() {
        let model = MLP(features: 784, hidden: [256], classes: 10, activation: .relu)
        var a = [Float](repeating: 1, count: model.layout.count), b = a, c = a
        a.withUnsafeMutableBufferPointer { model.initialize($0, seed: 7) }
        b.withUnsafeMutableBufferPointer { model.initialize($0, seed: 7) }
        c.withUnsafeMutableBufferPointer { model.initialize($0, seed: 8) }
        XCTAssertEqual(a, b)
        XCTAssertNotEqual(a, c)
        XCTAssertEqual(model.layout.views.map(\.name), ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"])
        XCTAssertEqual(model.layout.view(named: "layers.0.weight")?.shape, [256, 784])
        func variance(_ name: String) -> Double {
            let v = a[model.layout.view(named: name)!.range].map(Double.init)
            let mean = v.reduce(0, +) / Double(v.count)
            return v.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(v.count)
        }
        XCTAssertEqual(variance("layers.0.weight"), 2.0 / 784, accuracy: 0.03 * 2.0 / 784, "He")
        XCTAssertEqual(variance("layers.1.weight"), 2.0 / 266, accuracy: 0.1 * 2.0 / 266, "Xavier (output layer)")
        XCTAssertTrue(a[model.layout.view(named: "layers.0.bias")!.range].allSatisfy { $0 == 0 })
        let tanhModel = MLP(features: 784, hidden: [256], classes: 10, activation: .tanh)
        a.withUnsafeMutableBufferPointer { tanhModel.initialize($0, seed: 7) }
        XCTAssertEqual(variance("layers.0.weight"), 2.0 / (784 + 256), accuracy: 0.03 * 2.0 / 1040, "Xavier")
    }
}
