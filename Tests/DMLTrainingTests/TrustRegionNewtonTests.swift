import XCTest
import DMLTraining

/// TRON's diagonal (Jacobi) preconditioner on a badly scaled quadratic: the same minimiser in far fewer
/// Hessian-vector products than plain CG (`weightDecay` 0 leaves M = 1).
final class TrustRegionNewtonTests: XCTestCase {
    /// F(θ) = ½·Σ a_i·θ_i² − Σ b_i·θ_i + (λ/2)·‖θ‖², its Hessian diagonal a + λ.
    final class Quadratic: FullBatchObjective {
        let a: [Double], b: [Double], lambda: Double
        var lastEvaluated: [Float] = []
        init(a: [Double], b: [Double], lambda: Double) { (self.a, self.b, self.lambda) = (a, b, lambda) }

        func evaluate(_ parameters: [Float]) throws -> FullBatchPoint {
            lastEvaluated = parameters
            var f = 0.0, g = [Double](repeating: 0, count: a.count)
            for i in a.indices {
                let t = Double(parameters[i])
                f += 0.5 * (a[i] + lambda) * t * t - b[i] * t
                g[i] = (a[i] + lambda) * t - b[i]
            }
            return FullBatchPoint(parameters: parameters, objective: f, loss: f, gradient: g)
        }
        func accept() {}
        func segment(_ t: Double) throws -> (objective: Double, slope: Double) { fatalError("not used by Newton") }
        func hessianVector(_ v: [Double]) throws -> [Double] { v.indices.map { (a[$0] + lambda) * v[$0] } }
        func hessianDiagonal() throws -> [Double] { a.map { $0 + lambda } }
    }

    func solve(preconditioned: Bool) throws -> (parameters: [Float], products: Int) {
        let n = 40, lambda = 1e-2
        let a: [Double] = (0..<n).map { Foundation.pow(10, Double($0 % 8) - 2) }   // curvatures 1e-2 … 1e5
        let b: [Double] = (0..<n).map { Double($0 % 5) - 2 }
        let objective = Quadratic(a: a, b: b, lambda: lambda)
        let newton = TrustRegionNewton(settings: FullBatchSettings(kind: .newton, tolerance: 0), count: n,
                                       weightDecay: preconditioned ? lambda : 0)
        var point = try objective.evaluate([Float](repeating: 0, count: n))
        var products = 0
        for _ in 0..<200 {
            guard point.gradientNorm > 1e-6 else { break }
            switch try newton.iterate(from: point, objective: objective) {
            case let .moved(next, _, p): point = next; products += p
            case let .stalled(_, _, p): products += p; return (point.parameters, products)
            }
        }
        return (point.parameters, products)
    }

    func testTheJacobiPreconditionerReachesTheMinimiserInFewerProducts() throws {
        let plain = try solve(preconditioned: false), jacobi = try solve(preconditioned: true)
        let exact: [Float] = (0..<40).map { i in
            let b = Double(i % 5) - 2, a = Foundation.pow(10, Double(i % 8) - 2) + 1e-2
            return Float(b / a)
        }
        for (got, want) in zip(jacobi.parameters, exact) { XCTAssertEqual(got, want, accuracy: 1e-4 * Swift.max(1, abs(want))) }
        for (got, want) in zip(plain.parameters, exact) { XCTAssertEqual(got, want, accuracy: 1e-4 * Swift.max(1, abs(want))) }
        XCTAssertLessThan(jacobi.products, plain.products, "Jacobi \(jacobi.products) products, plain CG \(plain.products)")
    }
}
