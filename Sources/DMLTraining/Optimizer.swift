import Foundation
import DMLKernels
import DMLModels

/// Which update rule an `Optimizer` applies.
public enum OptimizerKind: String, Sendable, CaseIterable {
    case sgd, momentum, adam, adamw

    /// Copies of the parameter buffer the rule keeps as state: none for SGD, a velocity for momentum,
    /// first and second moments for Adam.
    public var stateCopies: Int {
        switch self {
        case .sgd: return 0
        case .momentum: return 1
        case .adam, .adamw: return 2
        }
    }
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
    /// Weight decay λ on the optimizer's decayed ranges (the weights, never the biases: `Optimizer.decayed`):
    /// an L2 term `λ·θ` added to the gradient for sgd, momentum and adam; decoupled (`θ ← θ − lr·λ·θ`,
    /// applied before the Adam step) for adamw. `dml-train` sets it for adamw only: for the other rules the
    /// model charges the L2 term itself (`WeightDecay` in DMLModels), and this is 0.
    public var weightDecay: Float

    public init(kind: OptimizerKind = .sgd, momentum: Float = 0.9, nesterov: Bool = false, beta1: Float = 0.9,
                beta2: Float = 0.999, epsilon: Float = 1e-8, weightDecay: Float = 0) {
        self.kind = kind
        self.momentum = momentum
        self.nesterov = nesterov
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
    }

    /// A canonical one-line description with every value that changes the update (checked on resume).
    public var description: String {
        var s = kind.rawValue
        switch kind {
        case .sgd: break
        case .momentum: s += "(momentum=\(momentum)\(nesterov ? ",nesterov" : ""))"
        case .adam, .adamw: s += "(beta1=\(beta1),beta2=\(beta2),eps=\(epsilon))"
        }
        if weightDecay != 0 { s += " weight_decay=\(weightDecay)" }
        return s
    }
}

/// Applies one update to the flat parameter buffer from the averaged gradient. Every rank runs the same
/// update on the same bits, so replicas stay identical.
///
/// The state lives in ONE flat buffer `state` of `kind.stateCopies × count` floats laid out like the
/// parameters (copy 0 = velocity or first moment, copy 1 = second moment), so checkpointing, broadcasting
/// and checksumming it are one call each. Weight decay (`config.weightDecay`) touches only `decayed`: the
/// weights, never the biases. Cost per step: a few flops per parameter, no allocation.
public final class Optimizer {
    public let config: OptimizerConfig
    public let count: Int
    /// The parameter ranges weight decay applies to: sorted, disjoint, inside `0..<count`. Built from the
    /// model's layout, every tensor but the biases (`ParameterLayout.weightRanges`).
    public let decayed: [Range<Int>]
    /// The optimizer's state, `config.kind.stateCopies × count` floats.
    public var state: [Float]
    /// `0..<count` cut into consecutive runs, each with the decay λ it gets (0 outside `decayed`, and
    /// everywhere when `config.weightDecay` is 0: then one run).
    private let runs: [(range: Range<Int>, lambda: Float)]

    public var name: String { config.kind.rawValue }

    /// An optimizer over `count` parameters that decays the ranges `decayed` (sorted, disjoint, in bounds).
    public init(_ config: OptimizerConfig = OptimizerConfig(), count: Int, decayed: [Range<Int>]) {
        precondition(count >= 0)
        for (i, r) in decayed.enumerated() {
            precondition(r.lowerBound >= 0 && r.upperBound <= count, "decayed range \(r) outside 0..<\(count)")
            precondition(i == 0 || decayed[i - 1].upperBound <= r.lowerBound, "decayed ranges must be sorted and disjoint")
        }
        self.config = config
        self.count = count
        self.decayed = decayed
        state = [Float](repeating: 0, count: config.kind.stateCopies * count)
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
    public convenience init(_ config: OptimizerConfig = OptimizerConfig(), layout: ParameterLayout) {
        self.init(config, count: layout.count, decayed: layout.weightRanges)
    }

    /// True when an update over only the coordinates where the gradient is not +0 (`step(…at:…)`) gives
    /// the same bits as the dense update: plain SGD without weight decay, where `w + (−lr)·(+0) = w` for
    /// every w (−0 and NaN included). Every other rule moves coordinates whose gradient is 0 — momentum and
    /// Adam through their state (`v = μv`, `m = β1·m`, `w −= lr·v`), weight decay through `λ·w` — so for them
    /// the trainer runs the dense update, which is still exactly right on a sparse gradient: its untouched
    /// entries are +0, as the dense reducers' would be, and the dense rule treats them as it always does.
    public var updatesOnlyNonZeroGradients: Bool { config.kind == .sgd && config.weightDecay == 0 }

    /// The SGD update at `coordinates` only (sorted or not, each once): `w[i] += (−lr)·g[i]` as one fused
    /// multiply-add, the operation `Vector.axpy` does per element, so it gives the bits of the dense update
    /// when the gradient is +0 everywhere else. Only where `updatesOnlyNonZeroGradients`. Cost: one random
    /// access per coordinate.
    public func step(parameters w: UnsafeMutablePointer<Float>, gradient g: UnsafePointer<Float>, at coordinates: UnsafeBufferPointer<Int32>,
                     t: Int, learningRate lr: Float) {
        precondition(updatesOnlyNonZeroGradients, "the indexed update is plain SGD's; \(config.description) updates every coordinate")
        let a = -lr
        for c in coordinates {
            let i = Int(c)
            w[i] = w[i].addingProduct(a, g[i])
        }
    }

    /// Applies update number `t` (1-based: Adam's bias correction uses it) with learning rate `lr`.
    /// `gradient` is left unchanged.
    public func step(parameters w: UnsafeMutablePointer<Float>, gradient g: UnsafePointer<Float>, t: Int, learningRate lr: Float) {
        let n = count
        let c = config
        switch c.kind {
        case .sgd:
            for (range, wd) in runs {
                if wd == 0 {
                    Vector.axpy(-lr, g + range.lowerBound, w + range.lowerBound, range.count)
                } else {
                    for i in range { w[i] -= lr * (g[i] + wd * w[i]) }
                }
            }
        case .momentum:
            let mu = c.momentum
            state.withUnsafeMutableBufferPointer { s in
                let v = s.baseAddress!
                for (range, wd) in runs {
                    for i in range {
                        let gi = wd == 0 ? g[i] : g[i] + wd * w[i]
                        v[i] = mu * v[i] + gi
                        // Nesterov (as PyTorch writes it): step along g + μ·v instead of v.
                        w[i] -= lr * (c.nesterov ? gi + mu * v[i] : v[i])
                    }
                }
            }
        case .adam, .adamw:
            let b1 = c.beta1, b2 = c.beta2, eps = c.epsilon
            // Bias corrections in Double, rounded once: the same bits on every rank and after a resume.
            let c1 = Float(1 - Foundation.pow(Double(b1), Double(t)))
            let c2 = Float(1 - Foundation.pow(Double(b2), Double(t)))
            let decoupled = c.kind == .adamw
            state.withUnsafeMutableBufferPointer { s in
                let m = s.baseAddress!, v = s.baseAddress! + n
                for (range, wd) in runs {
                    for i in range {
                        var gi = g[i]
                        if wd != 0 {
                            if decoupled { w[i] -= lr * wd * w[i] } else { gi += wd * w[i] }
                        }
                        m[i] = b1 * m[i] + (1 - b1) * gi
                        v[i] = b2 * v[i] + (1 - b2) * gi * gi
                        let mHat = m[i] / c1, vHat = v[i] / c2
                        w[i] -= lr * mHat / (vHat.squareRoot() + eps)
                    }
                }
            }
        }
    }
}
