import XCTest
import DMLTraining

/// L-BFGS's first trial step: with no curvature pair yet it is 1/‖∇F‖, a step of unit length along −∇F (as
/// scipy's L-BFGS-B), whatever ‖∇F‖ — not min(1, 1/‖∇F‖), which for ‖∇F‖ < 1 is a step of length ‖∇F‖.
final class LBFGSFirstStepTests: XCTestCase {
    /// F(θ) = ½·Σ a_i·θ_i² − Σ b_i·θ_i, exact along segments; records every evaluated point.
    final class Quadratic: FullBatchObjective {
        let a: [Double], b: [Double]
        private(set) var evaluated: [[Float]] = []
        private var accepted: [Float] = []
        var lastEvaluated: [Float] { evaluated.last ?? [] }
        init(a: [Double], b: [Double]) { (self.a, self.b) = (a, b) }

        func value(_ t: [Double]) -> (f: Double, g: [Double]) {
            var f = 0.0, g = [Double](repeating: 0, count: a.count)
            for i in a.indices {
                f += 0.5 * a[i] * t[i] * t[i] - b[i] * t[i]
                g[i] = a[i] * t[i] - b[i]
            }
            return (f, g)
        }

        func evaluate(_ parameters: [Float]) throws -> FullBatchPoint {
            if evaluated.isEmpty { accepted = parameters }
            evaluated.append(parameters)
            let (f, g) = value(parameters.map(Double.init))
            return FullBatchPoint(parameters: parameters, objective: f, loss: f, gradient: g)
        }
        func accept() { accepted = lastEvaluated }
        func segment(_ t: Double) throws -> (objective: Double, slope: Double) {
            let d = zip(lastEvaluated, accepted).map { Double($0) - Double($1) }
            let (f, g) = value(accepted.indices.map { Double(accepted[$0]) + t * d[$0] })
            return (f, zip(g, d).reduce(0) { $0 + $1.0 * $1.1 })
        }
        func hessianVector(_ v: [Double]) throws -> [Double] { v.indices.map { a[$0] * v[$0] } }
        func hessianDiagonal() throws -> [Double] { a }
    }

    /// b of norm `norm` (‖∇F(0)‖ = ‖b‖), 6 coordinates.
    func vector(norm: Double) -> [Double] {
        let raw: [Double] = [3, -1, 2, 0.5, -2, 1]
        let n = raw.reduce(0) { $0 + $1 * $1 }.squareRoot()
        return raw.map { $0 * norm / n }
    }

    func testTheFirstTrialIsAUnitStepAlongTheNegativeGradient() throws {
        for gradientNorm in [0.05, 1.0, 40.0] {
            let b = vector(norm: gradientNorm)
            let objective = Quadratic(a: [Double](repeating: 1, count: b.count), b: b)
            let method = LBFGS(settings: FullBatchSettings(kind: .lbfgs, memory: 5, tolerance: 0), count: b.count)
            let start = try objective.evaluate([Float](repeating: 0, count: b.count))
            guard case .moved = try method.iterate(from: start, objective: objective) else { return XCTFail("‖∇F‖ \(gradientNorm): stalled") }
            let trial = objective.evaluated[1].map(Double.init)
            let length = trial.reduce(0) { $0 + $1 * $1 }.squareRoot()
            XCTAssertEqual(length, 1, accuracy: 1e-6, "‖∇F‖ \(gradientNorm): the first trial's distance from θ₀")
            for (t, bi) in zip(trial, b) { XCTAssertEqual(t, bi / gradientNorm, accuracy: 1e-6, "‖∇F‖ \(gradientNorm): along −∇F") }
        }
    }

    func testAUnitStepToTheMinimiserIsAcceptedWithOneEvaluation() throws {
        // a = ‖b‖: the minimiser b/a lies at distance 1 along −∇F(0) = b, exactly the first trial.
        let b = vector(norm: 0.05)
        let objective = Quadratic(a: [Double](repeating: 0.05, count: b.count), b: b)
        let method = LBFGS(settings: FullBatchSettings(kind: .lbfgs, memory: 5, tolerance: 0), count: b.count)
        let start = try objective.evaluate([Float](repeating: 0, count: b.count))
        guard case let .moved(next, evaluations, _) = try method.iterate(from: start, objective: objective) else { return XCTFail("stalled") }
        XCTAssertEqual(evaluations, 1)
        for (t, bi) in zip(next.parameters, b) { XCTAssertEqual(Double(t), bi / 0.05, accuracy: 1e-6) }
    }
}
