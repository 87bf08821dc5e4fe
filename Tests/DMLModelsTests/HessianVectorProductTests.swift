import XCTest
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
        var g = [Float](repeating: 0, count: theta.count)
        let loss = x.withUnsafeBufferPointer { xp in
            y.withUnsafeBufferPointer { yp in
                model.dataLossAndGradient(parameters: theta, batch: Batch(x: xp.baseAddress!, y: yp.baseAddress!, rows: rows, features: features),
                                          into: &g, workspace: workspace)
            }
        }
        var out = g.map { Double($0) / Double(rows) }
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
            var hv = [Float](repeating: 0, count: theta.count)
            x.withUnsafeBufferPointer { xp in
                y.withUnsafeBufferPointer { yp in
                    model.dataHessianVector(v, batch: Batch(x: xp.baseAddress!, y: yp.baseAddress!, rows: rows, features: features),
                                            workspace: workspace, into: &hv)
                }
            }
            var exact = hv.map { Double($0) / Double(rows) }
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
            let withoutL2 = hv.map { Double($0) / Double(rows) }
            XCTAssertGreaterThan(zip(withoutL2, differences).map { abs($0 - $1) }.max()! / scale, 1e-2, kind)
        }
    }
}
