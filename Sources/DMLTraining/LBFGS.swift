/// Limited-memory BFGS (Nocedal & Wright, *Numerical Optimization*, algorithms 7.4 and 7.5) with a line search
/// that satisfies the strong Wolfe conditions (algorithms 3.5 and 3.6: bracketing, then zoom by safeguarded
/// cubic interpolation), c₁ = 1e-4, c₂ = 0.9.
///
/// Direction `d = −H·∇F` by the two-loop recursion over the newest `memory` pairs `s = θ₊ − θ`,
/// `y = ∇F₊ − ∇F`, with `H₀ = (sᵀy / yᵀy)·I` of the newest pair; the first trial step is 1, or
/// `min(1, 1/‖∇F‖)` without pairs. A pair enters the memory only when `sᵀy > 0` (the strong Wolfe conditions
/// give it; rounding may not). A direction that is not a descent direction, or a line search that fails with
/// pairs, restarts from steepest descent once; a line search that fails then has nothing left to try at the
/// precision of F (`stalled`).
///
/// State: the pairs as Float32 (`vectors`: s₀…s_{m−1} then y₀…y_{m−1}, a ring whose newest slot and fill
/// are `scalars`), so the checkpointed state is exactly the state iterated with. Everything else is computed
/// in Double. Cost per iteration: 4·memory·p flops for the direction, and the line search's evaluations
/// (usually one).
public final class LBFGS: FullBatchMethod {
    public let settings: FullBatchSettings
    public var vectors: [Float]
    private let count: Int
    /// Pairs held (≤ memory), and the ring slot of the newest.
    private var pairs = 0
    private var newest = -1

    static let c1 = 1e-4, c2 = 0.9
    /// Function evaluations one line search may spend.
    static let maximumEvaluations = 25

    public init(settings: FullBatchSettings, count: Int) {
        self.settings = settings
        self.count = count
        vectors = [Float](repeating: 0, count: settings.kind.stateCopies(memory: settings.memory) * count)
    }

    public var scalars: [String: String] {
        get { ["lbfgs_pairs": String(pairs), "lbfgs_newest": String(newest)] }
        set {
            pairs = newValue["lbfgs_pairs"].flatMap { Int($0) } ?? 0
            newest = newValue["lbfgs_newest"].flatMap { Int($0) } ?? -1
        }
    }

    private func s(_ slot: Int) -> Range<Int> { slot * count ..< (slot + 1) * count }
    private func y(_ slot: Int) -> Range<Int> { (settings.memory + slot) * count ..< (settings.memory + slot + 1) * count }

    private func dot(_ range: Range<Int>, _ v: [Double]) -> Double {
        var sum = 0.0
        var j = 0
        for i in range { sum += Double(vectors[i]) * v[j]; j += 1 }
        return sum
    }

    private func dot(_ a: Range<Int>, _ b: Range<Int>) -> Double {
        var sum = 0.0
        for (i, j) in zip(a, b) { sum += Double(vectors[i]) * Double(vectors[j]) }
        return sum
    }

    private func axpy(_ alpha: Double, _ range: Range<Int>, _ v: inout [Double]) {
        var j = 0
        for i in range { v[j] += alpha * Double(vectors[i]); j += 1 }
    }

    /// `−H·g` by the two-loop recursion (plain `−g` without pairs).
    func direction(_ g: [Double]) -> [Double] {
        var q = g
        guard pairs > 0 else { return q.map { -$0 } }
        let m = settings.memory
        var alphas = [Double](repeating: 0, count: pairs)
        var rhos = [Double](repeating: 0, count: pairs)
        for k in 0..<pairs {  // newest first
            let slot = (newest - k + m) % m
            rhos[k] = 1 / dot(y(slot), s(slot))
            alphas[k] = rhos[k] * dot(s(slot), q)
            axpy(-alphas[k], y(slot), &q)
        }
        let gamma = dot(s(newest), y(newest)) / dot(y(newest), y(newest))
        for i in q.indices { q[i] *= gamma }
        for k in stride(from: pairs - 1, through: 0, by: -1) {  // oldest first
            let slot = (newest - k + m) % m
            let beta = rhos[k] * dot(y(slot), q)
            axpy(alphas[k] - beta, s(slot), &q)
        }
        return q.map { -$0 }
    }

    public func iterate(from point: FullBatchPoint, objective: FullBatchObjective) throws -> FullBatchOutcome {
        var evaluations = 0
        for attempt in 0..<2 {
            var d = direction(point.gradient)
            var slope = Vector64.dot(point.gradient, d)
            if !(slope < 0) || !slope.isFinite {
                pairs = 0
                d = point.gradient.map { -$0 }
                slope = -Vector64.dot(point.gradient, point.gradient)
            }
            let first = pairs == 0 ? Swift.min(1, 1 / point.gradientNorm) : 1
            let (found, spent) = try lineSearch(from: point, direction: d, slope: slope, first: first, objective: objective)
            evaluations += spent
            if let next = found {
                remember(from: point, to: next)
                return .moved(next, evaluations: evaluations, products: 0)
            }
            // Failed with curvature pairs: forget them and try steepest descent once.
            if pairs == 0 || attempt == 1 { break }
            pairs = 0
        }
        return .stalled("the line search found no decrease of F at its precision (Float32 parameters, sums of Float32 products)",
                        evaluations: evaluations, products: 0)
    }

    /// Adds the pair of the step `point → next` when `sᵀy > 0` (after rounding to the Float32 it is kept in).
    private func remember(from point: FullBatchPoint, to next: FullBatchPoint) {
        let m = settings.memory
        let slot = (newest + 1) % m
        let saved = (vectors[s(slot)], vectors[y(slot)])
        var j = 0
        for i in s(slot) { vectors[i] = Float(Double(next.parameters[j]) - Double(point.parameters[j])); j += 1 }
        j = 0
        for i in y(slot) { vectors[i] = Float(next.gradient[j] - point.gradient[j]); j += 1 }
        let sy = dot(s(slot), y(slot)), yy = dot(y(slot), y(slot))
        guard sy > 0, yy > 0, sy.isFinite, yy.isFinite else {
            vectors.replaceSubrange(s(slot), with: saved.0)
            vectors.replaceSubrange(y(slot), with: saved.1)
            return
        }
        newest = slot
        pairs = Swift.min(pairs + 1, m)
    }

    /// A trial of the line search: step length, F, and the slope ∇F·d there.
    struct Trial {
        var step: Double
        var value: Double
        var slope: Double
        var point: FullBatchPoint?
    }

    /// A point along `d` satisfying the strong Wolfe conditions (or, when the evaluations run out, the best
    /// point found that satisfies sufficient decrease); nil when none was found. Returns the evaluations spent.
    func lineSearch(from point: FullBatchPoint, direction d: [Double], slope: Double, first: Double,
                    objective: FullBatchObjective) throws -> (FullBatchPoint?, Int) {
        let f0 = point.objective
        var evaluations = 0
        func trial(_ step: Double) throws -> Trial? {
            let theta = Vector64.step(point.parameters, step, d)
            if theta == point.parameters { return nil }  // below the parameters' resolution
            evaluations += 1
            let q = try objective.evaluate(theta)
            return Trial(step: step, value: q.objective, slope: Vector64.dot(q.gradient, d), point: q)
        }
        func decreases(_ t: Trial) -> Bool { t.value.isFinite && t.value <= f0 + Self.c1 * t.step * slope }
        func curvatureHolds(_ t: Trial) -> Bool { abs(t.slope) <= -Self.c2 * slope }

        func zoom(_ lo: Trial, _ hi: Trial) throws -> FullBatchPoint? {
            var lo = lo, hi = hi
            while evaluations < Self.maximumEvaluations {
                guard let t = try trial(Self.interpolate(lo, hi)) else { break }
                if !decreases(t) || t.value >= lo.value {
                    hi = t
                } else {
                    if curvatureHolds(t) { return t.point }
                    if t.slope * (hi.step - lo.step) >= 0 { hi = lo }
                    lo = t
                }
            }
            return lo.point
        }

        var previous = Trial(step: 0, value: f0, slope: slope, point: nil)
        var step = first
        while evaluations < Self.maximumEvaluations {
            guard let t = try trial(step) else { return (nil, evaluations) }
            if !decreases(t) || (previous.point != nil && t.value >= previous.value) {
                return (try zoom(previous, t), evaluations)
            }
            if curvatureHolds(t) { return (t.point, evaluations) }
            if t.slope >= 0 { return (try zoom(t, previous), evaluations) }
            previous = t
            step *= 2
        }
        return (previous.point, evaluations)
    }

    /// The minimiser of the cubic through two trials (values and slopes), kept at least a tenth of the interval
    /// from either end; the midpoint when the cubic has none or a trial is not finite.
    static func interpolate(_ a: Trial, _ b: Trial) -> Double {
        let lo = Swift.min(a.step, b.step), hi = Swift.max(a.step, b.step), width = hi - lo
        let mid = lo + width / 2
        guard a.value.isFinite, b.value.isFinite, a.slope.isFinite, b.slope.isFinite else { return mid }
        let d1 = a.slope + b.slope - 3 * (a.value - b.value) / (a.step - b.step)
        let disc = d1 * d1 - a.slope * b.slope
        guard disc >= 0 else { return mid }
        let d2 = (b.step > a.step ? 1.0 : -1.0) * disc.squareRoot()
        let x = b.step - (b.step - a.step) * (b.slope + d2 - d1) / (b.slope - a.slope + 2 * d2)
        guard x.isFinite else { return mid }
        return Swift.min(Swift.max(x, lo + 0.1 * width), hi - 0.1 * width)
    }
}
