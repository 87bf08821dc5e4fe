/// Trust-region Newton-CG as LIBLINEAR's TRON (`tron.cpp`; Lin, Weng & Keerthi, JMLR 2008) with its diagonal
/// preconditioner (Hsia, Chiang & Lin, ACML 2018; LIBLINEAR ≥ 2.20): each iteration solves the Newton system
/// `∇²F·s = −∇F` by preconditioned conjugate gradients inside the radius Δ, measured in the preconditioner's
/// norm (`‖s‖_M ≤ Δ`, stopping at relative residual 0.1 in the M⁻¹ norm or on the boundary), then compares the
/// actual reduction of F at θ + s with the quadratic model's prediction and updates Δ by TRON's rules
/// (η₀ = 1e-4, η₁ = 0.25, η₂ = 0.75; σ₁ = 0.25, σ₂ = 0.5, σ₃ = 4). Δ starts at ‖∇F(θ₀)‖_M and is cut to
/// ‖s‖_M after the first trial. A rejected trial (actual < η₀ · predicted) shrinks Δ and tries again within the
/// same iteration; one iteration is one accepted step, as LIBLINEAR counts them.
///
/// The preconditioner, recomputed at every iteration's point: `M = (1 − α) + α·diag(∇²F)/λ` with α = 0.01 —
/// LIBLINEAR's `(1 − α) + α·diag(∇²f)` for its f = F/λ (C = 1/(n·λ)), so the same M and the same radii. Without
/// weight decay (λ = 0) M = 1: plain CG, as before. Cost: one pass and one allreduce per iteration for the diagonal.
///
/// Stalls (the parameters unchanged) when the predicted reduction falls below 1e-12·|F| — below F's
/// precision — or is not positive, or after 30 rejected trials in a row.
///
/// Every Hessian-vector product is the objective's (`FullBatchObjective.hessianVector`: each rank's rows,
/// one allreduce). State: Δ (a scalar, checkpointed as its bit pattern); M is a function of the point.
/// Cost per iteration: one evaluation (1 pass over the rows) per trial, one pass for M, one product (1 pass)
/// per CG step.
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
    /// The preconditioner's mix of the identity and the scaled diagonal (LIBLINEAR's alpha_pcg).
    static let preconditionerMix = 0.01
    /// λ of the objective's regulariser (the preconditioner's scale); 0: no preconditioner.
    let weightDecay: Double

    public init(settings: FullBatchSettings, count: Int, weightDecay: Double) {
        self.settings = settings
        self.count = count
        self.weightDecay = weightDecay
    }

    /// `uᵀ·diag(m)·v`.
    static func dot(_ u: [Double], _ m: [Double], _ v: [Double]) -> Double {
        var sum = 0.0
        for i in u.indices { sum += u[i] * m[i] * v[i] }
        return sum
    }

    public var scalars: [String: String] {
        get { radius.map { ["trust_radius": String($0.bitPattern, radix: 16)] } ?? [:] }
        set { radius = newValue["trust_radius"].flatMap { UInt64($0, radix: 16) }.map { Double(bitPattern: $0) } }
    }

    public func iterate(from point: FullBatchPoint, objective: FullBatchObjective) throws -> FullBatchOutcome {
        let g = point.gradient, f = point.objective
        var evaluations = 0, products = 0
        var m = [Double](repeating: 1, count: g.count)
        if weightDecay > 0 {
            let diagonal = try objective.hessianDiagonal()
            for i in m.indices { m[i] = (1 - Self.preconditionerMix) + Self.preconditionerMix * diagonal[i] / weightDecay }
        }
        var delta = radius ?? Self.dot(g, m, g).squareRoot()
        var first = radius == nil
        for _ in 0..<Self.maximumRejections {
            let (s, r, boundary, steps) = try conjugateGradient(radius: delta, gradient: g, preconditioner: m, objective: objective)
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
            let snorm = Self.dot(s, m, s).squareRoot()
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

    /// Preconditioned CG on `∇²F·s = −g` from s = 0 inside `‖s‖_M ≤ radius` (`trpcg`, M = diag(`m`)): the step
    /// s, the residual r = −g − ∇²F·s, whether it stopped on the boundary, and the products spent.
    func conjugateGradient(radius delta: Double, gradient g: [Double], preconditioner m: [Double],
                           objective: FullBatchObjective) throws -> (s: [Double], r: [Double], boundary: Bool, products: Int) {
        var s = [Double](repeating: 0, count: g.count)
        var r = g.map { -$0 }
        var z = zip(r, m).map { $0 / $1 }
        var d = z
        var zr = Vector64.dot(z, r)
        let tolerance = Self.cgTolerance * zr.squareRoot()
        var products = 0
        while zr.squareRoot() > tolerance && products < Swift.max(count, 5) {
            let hd = try objective.hessianVector(d)
            products += 1
            let dhd = Vector64.dot(d, hd)
            var alpha = dhd > 0 ? zr / dhd : .infinity
            var next = s
            if alpha.isFinite { Vector64.axpy(alpha, d, &next) }
            if !alpha.isFinite || Self.dot(next, m, next).squareRoot() > delta {
                // To the boundary along d: the positive root of ‖s + α·d‖_M = Δ.
                let sd = Self.dot(s, m, d), ss = Self.dot(s, m, s), dd = Self.dot(d, m, d), dsq = delta * delta
                let rad = (sd * sd + dd * (dsq - ss)).squareRoot()
                alpha = sd >= 0 ? (dsq - ss) / (sd + rad) : (rad - sd) / dd
                Vector64.axpy(alpha, d, &s)
                Vector64.axpy(-alpha, hd, &r)
                return (s, r, true, products)
            }
            s = next
            Vector64.axpy(-alpha, hd, &r)
            for i in z.indices { z[i] = r[i] / m[i] }
            let zrNew = Vector64.dot(z, r)
            let beta = zrNew / zr
            for i in d.indices { d[i] = beta * d[i] + z[i] }
            zr = zrNew
        }
        return (s, r, false, products)
    }
}
