/// Limited-memory BFGS (Nocedal & Wright, *Numerical Optimization*, algorithms 7.4 and 7.5) with a line search
/// that satisfies the strong Wolfe conditions (algorithms 3.5 and 3.6: bracketing, then zoom by safeguarded
/// cubic interpolation), c₁ = 1e-4, c₂ = 0.9.
///
/// Direction `d = −H·∇F` by the two-loop recursion over the newest `memory` pairs `s = θ₊ − θ`,
/// `y = ∇F₊ − ∇F`, with `H₀ = (sᵀy / yᵀy)·I` of the newest pair; the first trial step is 1. Before any pair
/// was ever kept (the run's first iteration) it is `1/‖∇F‖`, a step of unit length along `−∇F`, as L-BFGS-B's
/// (scipy's) first iteration (benchmarks/RESULTS.md: fewer iterations on the rcv1-like set than a first trial
/// of `min(1, 1/‖∇F‖)`); after a restart (pairs forgotten, below) it stays `min(1, 1/‖∇F‖)`. A pair enters the
/// memory only when `sᵀy > 0` (the strong Wolfe conditions give it; rounding may not). A direction that is not
/// a descent direction, or a line search that fails with pairs, restarts from steepest descent once; a line
/// search that fails then has nothing left to try at the precision of F (`stalled`).
///
/// The line search reads the rows once or twice per iteration, whatever its number of trials. The first
/// trial θ₁ = θ + a₁·d is evaluated (one pass: F, ∇F and the margins); when it satisfies the strong Wolfe
/// conditions, as it does on most iterations, that is the iteration. Otherwise the search goes on along the
/// segment θ → θ₁ from the margins the two passes kept (`FullBatchObjective.segment`: margins are linear in
/// θ, so a trial costs O(rows) and one allreduce of two Doubles, no pass over the features), and the step it
/// ends at is evaluated (the second pass) and accepted when it decreases F sufficiently (c₁). Every accepted
/// point is a pass's exact evaluation, so the iterates are a function of the parameters and the pairs alone
/// (a resumed run recomputes the same margins). Only when that evaluation fails (rounding) does the search
/// start again with an evaluation per trial.
///
/// State: the pairs as Float32 (`vectors`: s₀…s_{m−1} then y₀…y_{m−1}, a ring whose newest slot and fill
/// are `scalars`), so the checkpointed state is exactly the state iterated with; sᵀy and yᵀy of each pair are
/// derived from them (recomputed after a restore). Everything else is computed in Double. Cost per
/// iteration: 4·memory·p flops for the direction, one or two passes over the rows, O(rows) per segment trial.
public final class LBFGS: FullBatchMethod {
    public let settings: FullBatchSettings
    /// The pairs (see the type's comment); setting them (a restore) drops the derived products.
    public var vectors: [Float] {
        get { storage }
        set { storage = newValue; products = nil }
    }
    private var storage: [Float]
    private let count: Int
    /// Pairs held (≤ memory), and the ring slot of the newest.
    private var pairs = 0
    private var newest = -1
    /// Per ring slot: sᵀy and yᵀy of its pair (derived from `storage`).
    private var products: [(sy: Double, yy: Double)]?

    static let c1 = 1e-4, c2 = 0.9
    /// Function evaluations (or segment trials) one line search may spend.
    static let maximumEvaluations = 25

    public init(settings: FullBatchSettings, count: Int) {
        self.settings = settings
        self.count = count
        storage = [Float](repeating: 0, count: settings.kind.stateCopies(memory: settings.memory) * count)
    }

    public var scalars: [String: String] {
        get { ["lbfgs_pairs": String(pairs), "lbfgs_newest": String(newest)] }
        set {
            pairs = newValue["lbfgs_pairs"].flatMap { Int($0) } ?? 0
            newest = newValue["lbfgs_newest"].flatMap { Int($0) } ?? -1
        }
    }

    private func s(_ slot: Int) -> Int { slot * count }
    private func y(_ slot: Int) -> Int { (settings.memory + slot) * count }

    /// `Σ storage[a + i]·storage[b + i]` in Double.
    private func dot(_ a: Int, _ b: Int) -> Double {
        storage.withUnsafeBufferPointer { v in
            var sum = 0.0
            for i in 0..<count { sum += Double(v[a + i]) * Double(v[b + i]) }
            return sum
        }
    }

    /// sᵀy and yᵀy of every slot, computed once from the pairs.
    private func pairProducts() -> [(sy: Double, yy: Double)] {
        if let products { return products }
        let m = settings.memory
        let computed = (0..<m).map { slot in (sy: dot(s(slot), y(slot)), yy: dot(y(slot), y(slot))) }
        products = computed
        return computed
    }

    /// `−H·g` by the two-loop recursion (plain `−g` without pairs).
    func direction(_ g: [Double]) -> [Double] {
        guard pairs > 0 else { return g.map { -$0 } }
        var q = g
        let m = settings.memory, n = count
        let known = pairProducts()
        var alphas = [Double](repeating: 0, count: pairs)
        storage.withUnsafeBufferPointer { v in
            q.withUnsafeMutableBufferPointer { q in
                for k in 0..<pairs {  // newest first
                    let slot = (newest - k + m) % m
                    let sv = v.baseAddress! + s(slot), yv = v.baseAddress! + y(slot)
                    var sq = 0.0
                    for i in 0..<n { sq += Double(sv[i]) * q[i] }
                    alphas[k] = sq / known[slot].sy
                    for i in 0..<n { q[i] -= alphas[k] * Double(yv[i]) }
                }
                let gamma = known[newest].sy / known[newest].yy
                for i in 0..<n { q[i] *= gamma }
                for k in stride(from: pairs - 1, through: 0, by: -1) {  // oldest first
                    let slot = (newest - k + m) % m
                    let sv = v.baseAddress! + s(slot), yv = v.baseAddress! + y(slot)
                    var yq = 0.0
                    for i in 0..<n { yq += Double(yv[i]) * q[i] }
                    let beta = yq / known[slot].sy
                    for i in 0..<n { q[i] += (alphas[k] - beta) * Double(sv[i]) }
                }
                for i in 0..<n { q[i] = -q[i] }
            }
        }
        return q
    }

    public func iterate(from point: FullBatchPoint, objective: FullBatchObjective) throws -> FullBatchOutcome {
        var evaluations = 0
        let f0 = point.objective
        for attempt in 0..<2 {
            var d = direction(point.gradient)
            var slope = Vector64.dot(point.gradient, d)
            if !(slope < 0) || !slope.isFinite {
                pairs = 0
                d = point.gradient.map { -$0 }
                slope = -Vector64.dot(point.gradient, point.gradient)
            }
            // `newest` < 0: no pair was ever kept (checkpointed, so a resumed run takes the same branch).
            let first = pairs > 0 ? 1 : newest < 0 ? 1 / point.gradientNorm : Swift.min(1, 1 / point.gradientNorm)
            func evaluated(_ step: Double) throws -> Trial? {
                let theta = Vector64.step(point.parameters, step, d)
                if theta == point.parameters { return nil }  // below the parameters' resolution
                evaluations += 1
                let q = try objective.evaluate(theta)
                return Trial(step: step, value: q.objective, slope: Vector64.dot(q.gradient, d), point: q)
            }
            func accept(_ next: FullBatchPoint) -> FullBatchOutcome {
                objective.accept()
                remember(from: point, to: next)
                return .moved(next, evaluations: evaluations, products: 0)
            }
            // The first trial, evaluated: most iterations end here.
            if let t = try evaluated(first), let next = t.point {
                if Self.decreases(t, f0, slope) && Self.curvatureHolds(t, slope) { return accept(next) }
                // The rest of the search along the segment θ → θ₁ (t = step / first), then one evaluation.
                let reference = try objective.segment(0)
                let found = !(reference.slope < 0) ? nil : try Self.lineSearch(value: reference.objective, slope: reference.slope / first, first: first) { step in
                    let v = try objective.segment(step / first)
                    return Trial(step: step, value: v.objective, slope: v.slope / first, point: nil)
                }
                if let step = found?.step, let t = try evaluated(step), let next = t.point, Self.decreases(t, f0, slope) {
                    return accept(next)
                }
            }
            // Rounding defeated the segment: a search with an evaluation per trial.
            if let next = try Self.lineSearch(value: f0, slope: slope, first: first, trial: evaluated)?.point {
                if next.parameters != objective.lastEvaluated {
                    evaluations += 1
                    _ = try objective.evaluate(next.parameters)  // the same bits: make its margins the kept ones
                }
                return accept(next)
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
        let known = pairProducts()
        let saved = (storage[s(slot) ..< s(slot) + count], storage[y(slot) ..< y(slot) + count])
        storage.withUnsafeMutableBufferPointer { v in
            for j in 0..<count {
                v[s(slot) + j] = Float(Double(next.parameters[j]) - Double(point.parameters[j]))
                v[y(slot) + j] = Float(next.gradient[j] - point.gradient[j])
            }
        }
        let sy = dot(s(slot), y(slot)), yy = dot(y(slot), y(slot))
        guard sy > 0, yy > 0, sy.isFinite, yy.isFinite else {
            storage.replaceSubrange(s(slot) ..< s(slot) + count, with: saved.0)
            storage.replaceSubrange(y(slot) ..< y(slot) + count, with: saved.1)
            return
        }
        var updated = known
        updated[slot] = (sy, yy)
        products = updated
        newest = slot
        pairs = Swift.min(pairs + 1, m)
    }

    /// A trial of the line search: step length, F, and the slope ∇F·d there (with the evaluated point, when
    /// it was evaluated).
    struct Trial {
        var step: Double
        var value: Double
        var slope: Double
        var point: FullBatchPoint?
    }

    static func decreases(_ t: Trial, _ f0: Double, _ slope: Double) -> Bool { t.value.isFinite && t.value <= f0 + c1 * t.step * slope }
    static func curvatureHolds(_ t: Trial, _ slope: Double) -> Bool { abs(t.slope) <= -c2 * slope }

    /// A trial along the line satisfying the strong Wolfe conditions from `value` and `slope` at step 0 (or,
    /// when the trials run out, the best one found that satisfies sufficient decrease); nil when none was
    /// found, or when `trial` returns nil (the step is below the parameters' resolution).
    static func lineSearch(value f0: Double, slope: Double, first: Double, trial: (Double) throws -> Trial?) throws -> Trial? {
        var spent = 0
        func attempt(_ step: Double) throws -> Trial? {
            spent += 1
            return try trial(step)
        }
        func zoom(_ lo: Trial, _ hi: Trial) throws -> Trial? {
            var lo = lo, hi = hi
            while spent < maximumEvaluations {
                guard let t = try attempt(interpolate(lo, hi)) else { break }
                if !decreases(t, f0, slope) || t.value >= lo.value {
                    hi = t
                } else {
                    if curvatureHolds(t, slope) { return t }
                    if t.slope * (hi.step - lo.step) >= 0 { hi = lo }
                    lo = t
                }
            }
            return lo.step > 0 ? lo : nil
        }

        var previous = Trial(step: 0, value: f0, slope: slope, point: nil)
        var step = first
        while spent < maximumEvaluations {
            guard let t = try attempt(step) else { return nil }
            if !decreases(t, f0, slope) || (previous.step > 0 && t.value >= previous.value) {
                return try zoom(previous, t)
            }
            if curvatureHolds(t, slope) { return t }
            if t.slope >= 0 { return try zoom(t, previous) }
            previous = t
            step *= 2
        }
        return previous.step > 0 ? previous : nil
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
