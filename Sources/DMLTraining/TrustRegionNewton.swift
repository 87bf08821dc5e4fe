/// Trust-region Newton-CG as LIBLINEAR's TRON (`tron.cpp`; Lin, Weng & Keerthi, JMLR 2008), without its
/// diagonal preconditioner: each iteration solves the Newton system `∇²F·s = −∇F` by conjugate gradients
/// inside the radius Δ (`‖s‖ ≤ Δ`, stopping at relative residual 0.1 or on the boundary), then compares the
/// actual reduction of F at θ + s with the quadratic model's prediction and updates Δ by TRON's rules
/// (η₀ = 1e-4, η₁ = 0.25, η₂ = 0.75; σ₁ = 0.25, σ₂ = 0.5, σ₃ = 4). Δ starts at ‖∇F(θ₀)‖ and is cut to
/// ‖s‖ after the first trial. A rejected trial (actual < η₀ · predicted) shrinks Δ and tries again within the
/// same iteration; one iteration is one accepted step, as LIBLINEAR counts them.
///
/// Stalls (the parameters unchanged) when the predicted reduction falls below 1e-12·|F| — below F's
/// precision — or is not positive, or after 30 rejected trials in a row.
///
/// Every Hessian-vector product is the objective's (`FullBatchObjective.hessianVector`: each rank's rows,
/// one allreduce). State: Δ (a scalar, checkpointed as its bit pattern). Cost per iteration: one evaluation
/// (2 passes over the rows) per trial and one product (2 passes) per CG step.
public final class TrustRegionNewton: FullBatchMethod {
    public let settings: FullBatchSettings
    public var vectors: [Float] = []
    private let count: Int
    /// Δ; nil before the first trial.
    private var radius: Double?

    static let eta0 = 1e-4, eta1 = 0.25, eta2 = 0.75
    static let sigma1 = 0.25, sigma2 = 0.5, sigma3 = 4.0
    /// CG stops when ‖r‖ ≤ this × ‖∇F‖ (LIBLINEAR's eps_cg).
    static let cgTolerance = 0.1
    static let maximumRejections = 30

    public init(settings: FullBatchSettings, count: Int) {
        self.settings = settings
        self.count = count
    }

    public var scalars: [String: String] {
        get { radius.map { ["trust_radius": String($0.bitPattern, radix: 16)] } ?? [:] }
        set { radius = newValue["trust_radius"].flatMap { UInt64($0, radix: 16) }.map { Double(bitPattern: $0) } }
    }

    public func iterate(from point: FullBatchPoint, objective: FullBatchObjective) throws -> FullBatchOutcome {
        let g = point.gradient, f = point.objective
        var evaluations = 0, products = 0
        var delta = radius ?? point.gradientNorm
        var first = radius == nil
        for _ in 0..<Self.maximumRejections {
            let (s, r, boundary, steps) = try conjugateGradient(radius: delta, gradient: g, objective: objective)
            products += steps
            let theta = Vector64.step(point.parameters, 1, s)
            let gs = Vector64.dot(g, s)
            let predicted = -0.5 * (gs - Vector64.dot(s, r))
            guard predicted > 1e-12 * abs(f), theta != point.parameters else {
                radius = delta
                return .stalled("the predicted reduction of F (\(predicted)) is below its precision", evaluations: evaluations, products: products)
            }
            let trial = try objective.evaluate(theta)
            evaluations += 1
            let fNew = trial.objective.isFinite ? trial.objective : .infinity
            let actual = f - fNew
            let snorm = Vector64.norm(s)
            if first {
                delta = Swift.min(delta, snorm)
                first = false
            }
            let alpha = fNew - f - gs <= 0 ? Self.sigma3 : Swift.max(Self.sigma1, -0.5 * (gs / (fNew - f - gs)))
            if actual < Self.eta0 * predicted {
                delta = Swift.min(alpha * snorm, Self.sigma2 * delta)
            } else if actual < Self.eta1 * predicted {
                delta = Swift.max(Self.sigma1 * delta, Swift.min(alpha * snorm, Self.sigma2 * delta))
            } else if actual < Self.eta2 * predicted {
                delta = Swift.max(Self.sigma1 * delta, Swift.min(alpha * snorm, Self.sigma3 * delta))
            } else {
                delta = boundary ? Self.sigma3 * delta : Swift.max(delta, Swift.min(alpha * snorm, Self.sigma3 * delta))
            }
            if actual > Self.eta0 * predicted {
                objective.accept()
                radius = delta
                return .moved(trial, evaluations: evaluations, products: products)
            }
        }
        radius = delta
        return .stalled("\(Self.maximumRejections) trial steps in a row were rejected", evaluations: evaluations, products: products)
    }

    /// CG on `∇²F·s = −g` from s = 0 inside `‖s‖ ≤ radius` (`trcg`): the step s, the residual r = −g − ∇²F·s,
    /// whether it stopped on the boundary, and the products spent.
    func conjugateGradient(radius delta: Double, gradient g: [Double],
                           objective: FullBatchObjective) throws -> (s: [Double], r: [Double], boundary: Bool, products: Int) {
        var s = [Double](repeating: 0, count: g.count)
        var r = g.map { -$0 }
        var d = r
        var rr = Vector64.dot(r, r)
        let tolerance = Self.cgTolerance * rr.squareRoot()
        var products = 0
        while rr.squareRoot() > tolerance && products < Swift.max(count, 5) {
            let hd = try objective.hessianVector(d)
            products += 1
            let dhd = Vector64.dot(d, hd)
            var alpha = dhd > 0 ? rr / dhd : .infinity
            var next = s
            if alpha.isFinite { Vector64.axpy(alpha, d, &next) }
            if !alpha.isFinite || Vector64.norm(next) > delta {
                // To the boundary along d: the positive root of ‖s + α·d‖ = Δ.
                let sd = Vector64.dot(s, d), ss = Vector64.dot(s, s), dd = Vector64.dot(d, d), dsq = delta * delta
                let rad = (sd * sd + dd * (dsq - ss)).squareRoot()
                alpha = sd >= 0 ? (dsq - ss) / (sd + rad) : (rad - sd) / dd
                Vector64.axpy(alpha, d, &s)
                Vector64.axpy(-alpha, hd, &r)
                return (s, r, true, products)
            }
            s = next
            Vector64.axpy(-alpha, hd, &r)
            let rrNew = Vector64.dot(r, r)
            let beta = rrNew / rr
            for i in d.indices { d[i] = beta * d[i] + r[i] }
            rr = rrNew
        }
        return (s, r, false, products)
    }
}
