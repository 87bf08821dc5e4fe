import Foundation
import DMLKernels
import DMLModels

/// What `--optimizer` names: an element-wise update rule of `Optimizer` (`UpdateRules.registered`: sgd,
/// momentum, adam, adamw, adagrad) or, for `lbfgs` and `newton`, the full-batch method a `SecondOrderTrainer`
/// runs instead (`isFullBatch`: no learning rate, no batches; `FullBatchMethodKind`). A name, not a closed
/// enum: a new rule registers itself in `UpdateRules` and declares its `static let` here in its own file.
public struct OptimizerKind: RawRepresentable, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    public let rawValue: String

    /// A registered rule's or full-batch method's name; nil for any other text.
    public init?(rawValue: String) {
        guard UpdateRules.rule(named: rawValue) != nil || FullBatchMethodKind(rawValue: rawValue) != nil else { return nil }
        self.rawValue = rawValue
    }

    init(registered rule: any UpdateRule.Type) { rawValue = rule.name }
    init(_ method: FullBatchMethodKind) { rawValue = method.rawValue }

    public static let sgd = OptimizerKind(registered: SGDRule.self)
    public static let momentum = OptimizerKind(registered: MomentumRule.self)
    public static let adam = OptimizerKind(registered: AdamRule.self)
    public static let adamw = OptimizerKind(registered: AdamWRule.self)
    public static let lbfgs = OptimizerKind(FullBatchMethodKind.lbfgs)
    public static let newton = OptimizerKind(FullBatchMethodKind.newton)

    /// The registered rules, then the full-batch methods.
    public static var allCases: [OptimizerKind] {
        UpdateRules.registered.map { OptimizerKind(registered: $0) } + FullBatchMethodKind.allCases.map { OptimizerKind($0) }
    }

    public var description: String { rawValue }

    /// The element-wise rule this names; nil for a full-batch method.
    public var rule: (any UpdateRule.Type)? { UpdateRules.rule(named: rawValue) }

    /// Copies of the parameter buffer the rule keeps as state (`UpdateRule.stateCopies`: none for SGD, a
    /// velocity for momentum, two moments for Adam); for a full-batch method its vectors
    /// (`FullBatchMethodKind.stateCopies`, which for L-BFGS depends on its memory: this is the default memory's).
    public var stateCopies: Int {
        if let rule { return rule.stateCopies }
        return FullBatchMethodKind(self)!.stateCopies(memory: FullBatchMethodKind.defaultMemory)
    }

    /// A full-batch second-order method (`SecondOrderTrainer`), not a per-step update rule of `Optimizer`.
    public var isFullBatch: Bool { FullBatchMethodKind(self) != nil }
}

/// The optimizer's hyper-parameters, as plain values (the command line fills them in).
public struct OptimizerConfig: Sendable, Equatable {
    public var kind: OptimizerKind
    /// Momentum coefficient μ (`momentum`).
    public var momentum: Float
    /// Nesterov's variant of momentum.
    public var nesterov: Bool
    /// Adam's decay rates and ε.
    public var beta1: Float
    public var beta2: Float
    public var epsilon: Float
    /// AdaGrad's ε (`adagrad`), > 0.
    public var adagradEpsilon: Float
    /// Weight decay λ on the optimizer's decayed ranges (the weights, never the biases: `Optimizer.decayed`):
    /// an L2 term `λ·θ` added to the gradient for sgd, momentum, adam and adagrad; decoupled (`θ ← θ − lr·λ·θ`,
    /// applied before the Adam step) for adamw. `dml-train` sets it for adamw only: for the other rules the
    /// model charges the L2 term itself (`WeightDecay` in DMLModels), and this is 0.
    public var weightDecay: Float

    public init(kind: OptimizerKind = .sgd, momentum: Float = 0.9, nesterov: Bool = false, beta1: Float = 0.9,
                beta2: Float = 0.999, epsilon: Float = 1e-8, weightDecay: Float = 0,
                adagradEpsilon: Float = AdagradRule.defaultEpsilon) {
        self.kind = kind
        self.momentum = momentum
        self.nesterov = nesterov
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.adagradEpsilon = adagradEpsilon
        self.weightDecay = weightDecay
    }

    /// A canonical one-line description with every value that changes the update (checked on resume): the
    /// rule's own (`UpdateRule.description`), then the weight decay.
    public var description: String {
        var s = kind.rule.map { $0.init(self).description } ?? kind.rawValue
        if weightDecay != 0 { s += " weight_decay=\(weightDecay)" }
        return s
    }
}

/// Applies one update to the flat parameter buffer from the averaged gradient, by the registered rule
/// `config.kind` names (`UpdateRule`). Every rank runs the same update on the same bits, so replicas stay
/// identical.
///
/// The state lives in ONE flat buffer `state` of `stateCopies × count` floats laid out like the parameters
/// (copy 0 = velocity, first moment or AdaGrad's sum of squares, copy 1 = second moment), so checkpointing,
/// broadcasting and checksumming it are one call each. Weight decay (`config.weightDecay`) touches only
/// `decayed`: the weights, never the biases. Cost per step: the rule's, a few flops per parameter, no allocation.
public final class Optimizer {
    public let config: OptimizerConfig
    public let count: Int
    /// The parameter ranges weight decay applies to: sorted, disjoint, inside `0..<count`. Built from the
    /// model's layout, every tensor but the biases (`ParameterLayout.weightRanges`).
    public let decayed: [Range<Int>]
    /// The update rule, with its hyper-parameters.
    public let rule: any UpdateRule
    /// The coordinates this optimizer updates and keeps state for, sorted and disjoint: `[0..<count]`, or a
    /// sharded update's slice of them (`UpdateShards.owned`).
    public let owned: [Range<Int>]
    /// The coordinates in `owned`, Σ of their counts: the length of one copy of the state.
    public let ownedCount: Int
    /// The optimizer's state, `config.kind.stateCopies × ownedCount` floats: copy k holds the owned ranges'
    /// values one after the other (the whole layout when `owned` is everything).
    public var state: [Float]
    /// `0..<count` cut into consecutive runs, each with the decay λ it gets (0 outside `decayed`, and
    /// everywhere when `config.weightDecay` is 0: then one run).
    private let runs: [(range: Range<Int>, lambda: Float)]

    public var name: String { config.kind.rawValue }

    /// An optimizer over `count` parameters that decays the ranges `decayed` (sorted, disjoint, in bounds).
    /// `config.kind` must name an element-wise rule, not a full-batch method.
    /// `owned` (nil: every coordinate) restricts it to a sharded update's coordinates, with state for
    /// those only.
    public init(_ config: OptimizerConfig = OptimizerConfig(), count: Int, decayed: [Range<Int>], owned: [Range<Int>]? = nil) {
        precondition(count >= 0)
        let owned = (owned ?? [0..<count]).filter { !$0.isEmpty }
        for (i, r) in owned.enumerated() {
            precondition(r.lowerBound >= 0 && r.upperBound <= count && (i == 0 || owned[i - 1].upperBound <= r.lowerBound),
                         "owned ranges must be sorted, disjoint and inside 0..<\(count)")
        }
        self.owned = owned
        ownedCount = owned.reduce(0) { $0 + $1.count }
        for (i, r) in decayed.enumerated() {
            precondition(r.lowerBound >= 0 && r.upperBound <= count, "decayed range \(r) outside 0..<\(count)")
            precondition(i == 0 || decayed[i - 1].upperBound <= r.lowerBound, "decayed ranges must be sorted and disjoint")
        }
        guard let rule = config.kind.rule else {
            preconditionFailure("--optimizer \(config.kind.rawValue) is a full-batch method: SecondOrderTrainer runs it, not Optimizer")
        }
        self.config = config
        self.count = count
        self.decayed = decayed
        self.rule = rule.init(config)
        state = [Float](repeating: 0, count: rule.stateCopies * ownedCount)
        var runs: [(range: Range<Int>, lambda: Float)] = []
        if config.weightDecay == 0 {
            runs = [(0..<count, 0)]
        } else {
            var next = 0
            for r in decayed where !r.isEmpty {
                if next < r.lowerBound { runs.append((next..<r.lowerBound, 0)) }
                runs.append((r, config.weightDecay))
                next = r.upperBound
            }
            if next < count { runs.append((next..<count, 0)) }
        }
        self.runs = runs
    }

    /// An optimizer over `layout`'s parameters that decays every tensor but the biases.
    public convenience init(_ config: OptimizerConfig = OptimizerConfig(), layout: ParameterLayout, owned: [Range<Int>]? = nil) {
        self.init(config, count: layout.count, decayed: layout.weightRanges, owned: owned)
    }

    /// True when this optimizer updates every coordinate (not a shard of them).
    public var ownsEverything: Bool { ownedCount == count }

    /// True when an update over only the coordinates where the gradient is not +0 (`step(…at:…)`) gives
    /// the same bits as the dense update: a rule that leaves +0-gradient coordinates alone
    /// (`UpdateRule.leavesZeroGradientsAlone`: sgd, adagrad) without weight decay. Every other rule moves
    /// coordinates whose gradient is 0 — momentum and Adam through their state (`v = μv`, `m = β1·m`,
    /// `w −= lr·v`), weight decay through `λ·w` — so for them the trainer runs the dense update, which is still
    /// exactly right on a sparse gradient: its untouched entries are +0, as the dense reducers' would be, and
    /// the dense rule treats them as it always does.
    public var updatesOnlyNonZeroGradients: Bool { rule.leavesZeroGradientsAlone && config.weightDecay == 0 }

    /// The update at `coordinates` only (sorted or not, each once): each gets the bits the dense update gives
    /// it, and the others are untouched — the dense update's bits everywhere when the gradient is +0 elsewhere.
    /// Only where `updatesOnlyNonZeroGradients`. Cost: one random access per coordinate and state copy.
    public func step(parameters w: UnsafeMutablePointer<Float>, gradient g: UnsafePointer<Float>, at coordinates: UnsafeBufferPointer<Int32>,
                     t: Int, learningRate lr: Float) {
        precondition(updatesOnlyNonZeroGradients, "the indexed update needs a rule that leaves +0 gradients alone and no weight decay; \(config.description) updates every coordinate")
        precondition(ownsEverything, "the indexed update needs the whole state, not a shard")
        withBuffers(w, g, owned: 0) { rule.update($0, at: coordinates, step: UpdateStep(t: t, learningRate: lr)) }
    }

    /// Applies update number `t` (1-based: Adam's bias correction uses it) with learning rate `lr` to every
    /// coordinate. `gradient` is left unchanged.
    /// A sharded optimizer updates its owned coordinates only.
    public func step(parameters w: UnsafeMutablePointer<Float>, gradient g: UnsafePointer<Float>, t: Int, learningRate lr: Float) {
        for r in owned { step(parameters: w, gradient: g, range: r, t: t, learningRate: lr) }
    }

    /// Applies update number `t` to the coordinates `range` only, with the weight decay each gets: the bits
    /// the full update gives them (a sharded update calls it on its 1/p slice). Cost: O(range.count).
    public func step(parameters w: UnsafeMutablePointer<Float>, gradient g: UnsafePointer<Float>, range: Range<Int>, t: Int, learningRate lr: Float) {
        precondition(range.lowerBound >= 0 && range.upperBound <= count, "range \(range) outside 0..<\(count)")
        guard !range.isEmpty else { return }
        guard let k = owned.firstIndex(where: { $0.lowerBound <= range.lowerBound && range.upperBound <= $0.upperBound }) else {
            preconditionFailure("range \(range) is not inside one owned range of \(owned)")
        }
        let step = UpdateStep(t: t, learningRate: lr)
        withBuffers(w, g, owned: k) { b in
            for (run, lambda) in runs {
                let lo = Swift.max(run.lowerBound, range.lowerBound), hi = Swift.min(run.upperBound, range.upperBound)
                if lo < hi { rule.update(b.advanced(by: lo - owned[k].lowerBound), count: hi - lo, lambda: lambda, step: step) }
            }
        }
    }

    /// The buffers at the first coordinate of owned range `k` (its state at its offset in the compact copies).
    private func withBuffers(_ w: UnsafeMutablePointer<Float>, _ g: UnsafePointer<Float>, owned k: Int, _ body: (UpdateBuffers) -> Void) {
        let lower = owned.isEmpty ? 0 : owned[k].lowerBound
        let offset = owned[..<k].reduce(0) { $0 + $1.count }
        state.withUnsafeMutableBufferPointer { s in
            // No state (SGD): any valid pointer; the rule never reads it.
            let base = s.baseAddress.map { $0 + offset } ?? w + lower
            body(UpdateBuffers(parameters: w + lower, gradient: g + lower, state: base, stateStride: ownedCount))
        }
    }
}
