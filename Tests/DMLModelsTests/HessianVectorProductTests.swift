import XCTest
import Foundation
import DMLModels
import DMLTestSupport

/// `TwiceDifferentiable`: the objective's gradient is the SGD path's mean gradient (the same objective), and
/// the Hessian-vector products equal finite differences of the gradient, for every convex model with L2.
final class HessianVectorProductTests: XCTestCase {
    let rows = 57, features = 9

    /// A model with random data fitting it (targets, or class labels).
    func problem(_ kind: String) -> (model: TwiceDifferentiable, x: [Float], y: [Float]) {
        var random = TestRandom(seed: 11)
        let x = random.floats(rows * features)
        switch kind {
        case "linear":
            return (LinearRegression(features: features, weightDecay: 0.05), x, random.floats(rows, in: -2...2))
        case "logistic":
            return (LogisticRegression(features: features, weightDecay: 0.05), x, (0..<rows).map { _ in Float(Int.random(in: 0...1, using: &random)) })
        default:
            return (SoftmaxRegression(features: features, classes: 4, weightDecay: 0.05), x, (0..<rows).map { _ in Float(Int.random(in: 0...3, using: &random)) })
        }
    }

    /// ∇F at θ in Double: the data sums over the rows divided by n, plus the regulariser.
    func gradient(_ model: TwiceDifferentiable, _ theta: [Float], _ x: [Float], _ y: [Float], workspace: CurvatureWorkspace) -> (Double, [Double]) {
        var out = [Double](repeating: 0, count: theta.count)
        let loss = x.withUnsafeBufferPointer { xp in
            y.withUnsafeBufferPointer { yp in
                try! model.dataLossAndGradient(parameters: theta, blocks: ShardBlocks(Batch(x: xp.baseAddress!, y: yp.baseAddress!, rows: rows, features: features)),
                                               into: &out, workspace: workspace)
            }
        }
        for i in out.indices { out[i] /= Double(rows) }
        let penalty = model.addRegularizer(parameters: theta, gradient: &out)
        return (loss / Double(rows) + penalty, out)
    }

    func testTheObjectiveIsTheMeanOfTheSGDPathsLossAndGradient() {
        for kind in ["linear", "logistic", "softmax"] {
            let (model, x, y) = problem(kind)
            var random = TestRandom(seed: 5)
            let theta = random.floats(model.layout.count, in: -0.5...0.5)
            let (f, g) = gradient(model, theta, x, y, workspace: CurvatureWorkspace())
            var sgd = [Float](repeating: 0, count: theta.count)
            let loss = x.withUnsafeBufferPointer { xp in
                y.withUnsafeBufferPointer { yp in
                    model.accumulateGradient(parameters: theta, batch: Batch(x: xp.baseAddress!, y: yp.baseAddress!, rows: rows, features: features), into: &sgd)
                }
            }
            XCTAssertEqual(f, loss / Double(rows), accuracy: 1e-6 * abs(f), kind)
            XCTAssertLessThan(maxRelativeDifference(g, sgd.map { Double($0) / Double(rows) }), 1e-5, kind)
        }
    }

    func testHessianVectorProductsMatchFiniteDifferencesOfTheGradient() {
        for kind in ["linear", "logistic", "softmax"] {
            let (model, x, y) = problem(kind)
            var random = TestRandom(seed: 7)
            let theta = random.floats(model.layout.count, in: -0.5...0.5)
            let v = random.floats(model.layout.count)
            let workspace = CurvatureWorkspace()
            _ = gradient(model, theta, x, y, workspace: workspace)
            var hv = [Double](repeating: 0, count: theta.count)
            x.withUnsafeBufferPointer { xp in
                y.withUnsafeBufferPointer { yp in
                    try! model.dataHessianVector(v, blocks: ShardBlocks(Batch(x: xp.baseAddress!, y: yp.baseAddress!, rows: rows, features: features)),
                                                 workspace: workspace, into: &hv)
                }
            }
            var exact = hv.map { $0 / Double(rows) }
            model.addRegularizerCurvature(v.map { Double($0) }, into: &exact)
            // Central differences; the Hessian-vector product must not depend on the trial points' evaluations.
            let h: Float = 1e-2
            let plus = gradient(model, zip(theta, v).map { $0 + h * $1 }, x, y, workspace: CurvatureWorkspace()).1
            let minus = gradient(model, zip(theta, v).map { $0 - h * $1 }, x, y, workspace: CurvatureWorkspace()).1
            let differences = zip(plus, minus).map { ($0 - $1) / (2 * Double(h)) }
            let scale = differences.map { abs($0) }.max()!
            XCTAssertGreaterThan(scale, 1e-2, kind)
            let error = zip(exact, differences).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(error / scale, 2e-3, "\(kind): Hv \(exact.prefix(4)) vs differences \(differences.prefix(4))")
            // The regulariser's curvature is part of it: without it the products are off.
            let withoutL2 = hv.map { $0 / Double(rows) }
            XCTAssertGreaterThan(zip(withoutL2, differences).map { abs($0 - $1) }.max()! / scale, 1e-2, kind)
        }
    }

    /// The loss along a segment from two passes' margins (what L-BFGS's line search evaluates between passes)
    /// is the pass's loss at the point on the segment, its slope the derivative, and at the ends exactly the
    /// passes' losses for the one-output models.
    func testTheSegmentLossIsThePassesLossAlongTheLine() {
        for kind in ["linear", "logistic", "softmax"] {
            let (model, x, y) = problem(kind)
            var random = TestRandom(seed: 9)
            let theta0 = random.floats(model.layout.count, in: -0.5...0.5), theta1 = random.floats(model.layout.count, in: -0.5...0.5)
            let w0 = CurvatureWorkspace(), w1 = CurvatureWorkspace()
            func dataLoss(_ theta: [Float], _ workspace: CurvatureWorkspace) -> Double {
                var g = [Double](repeating: 0, count: theta.count)
                return x.withUnsafeBufferPointer { xp in
                    y.withUnsafeBufferPointer { yp in
                        try! model.dataLossAndGradient(parameters: theta, blocks: ShardBlocks(Batch(x: xp.baseAddress!, y: yp.baseAddress!, rows: rows, features: features)),
                                                       into: &g, workspace: workspace)
                    }
                }
            }
            let l0 = dataLoss(theta0, w0), l1 = dataLoss(theta1, w1)
            func segment(_ t: Double) -> (loss: Double, slope: Double) {
                y.withUnsafeBufferPointer { model.segmentLoss(from: w0.keptMargins, to: w1.keptMargins, t: t, labels: $0.baseAddress!, rows: rows) }
            }
            if kind != "softmax" {
                XCTAssertEqual(segment(0).loss, l0, kind)
                XCTAssertEqual(segment(1).loss, l1, kind)
            }
            for t in [0.0, 0.3, 1.0, 2.5] {
                let point = zip(theta0, theta1).map { Float(Double($0) + t * (Double($1) - Double($0))) }
                let exact = dataLoss(point, CurvatureWorkspace())
                XCTAssertEqual(segment(t).loss, exact, accuracy: 1e-5 * abs(exact), "\(kind) t \(t)")
                // Central differences (margins rounded to Float along the way: h not too small).
                let h = 1e-2
                let difference = (segment(t + h).loss - segment(t - h).loss) / (2 * h)
                XCTAssertEqual(segment(t).slope, difference, accuracy: 2e-3 * Swift.max(1, abs(difference)), "\(kind) t \(t)")
            }
        }
    }

    /// The Hessian's diagonal (Newton's Jacobi preconditioner) is `e_iᵀ·H·e_i` of the Hessian-vector products.
    func testTheCurvatureDiagonalIsTheProductsDiagonal() throws {
        for kind in ["linear", "logistic", "softmax"] {
            let (model, x, y) = problem(kind)
            var random = TestRandom(seed: 3)
            let theta = random.floats(model.layout.count, in: -0.5...0.5)
            let workspace = CurvatureWorkspace()
            _ = gradient(model, theta, x, y, workspace: workspace)
            try x.withUnsafeBufferPointer { xp in
                try y.withUnsafeBufferPointer { yp in
                    let blocks = ShardBlocks(Batch(x: xp.baseAddress!, y: yp.baseAddress!, rows: rows, features: features))
                    var diagonal = [Double](repeating: 0, count: theta.count)
                    try model.dataCurvatureDiagonal(blocks: blocks, workspace: workspace, into: &diagonal)
                    for i in stride(from: 0, to: theta.count, by: 3) {
                        var e = [Float](repeating: 0, count: theta.count)
                        e[i] = 1
                        var hv = [Double](repeating: 0, count: theta.count)
                        try model.dataHessianVector(e, blocks: blocks, workspace: workspace, into: &hv)
                        XCTAssertEqual(diagonal[i], hv[i], accuracy: 1e-5 * Swift.max(1, abs(hv[i])), "\(kind) \(i)")
                    }
                    XCTAssertTrue(diagonal.allSatisfy { $0 >= 0 } && diagonal.contains { $0 > 0 }, kind)
                }
            }
        }
    }
    /// The logistic loss's one-exp form: the value is the cross-entropy's bits, and σ(z) − y and σ(z)(1 − σ(z))
    /// are the two-exp form's within a Float rounding, over the whole range of margins (no overflow at ±100).
    func testTheLogisticLossTakesOneExpAndKeepsTheCrossEntropysBits() {
        var random = TestRandom(seed: 4)
        let margins: [Float] = [0, -0.0, 1e-30, -1e-30, 100, -100, 88, -88, 20, -20] + random.floats(500, in: -30...30)
        for z in margins {
            for y: Float in [0, 1] {
                let l = LogisticRegression.loss(z, y)
                let zd = Double(z)
                let value = Swift.max(zd, 0) - Double(y) * zd + log1p(exp(-abs(zd)))
                XCTAssertEqual(l.value.bitPattern, value.bitPattern, "z \(z) y \(y)")
                let p = 1 / (1 + exp(-zd))
                XCTAssertEqual(Double(l.first), p - Double(y), accuracy: Swift.max(Double(Float.leastNonzeroMagnitude), abs(p - Double(y)) * 2e-7), "z \(z) y \(y)")
                XCTAssertEqual(Double(l.second), p * (1 - p), accuracy: Swift.max(Double(Float.leastNonzeroMagnitude), p * (1 - p) * 2e-7), "z \(z) y \(y)")
                XCTAssertTrue(l.first.isFinite && l.second.isFinite && l.second >= 0)
            }
        }
    }
}
