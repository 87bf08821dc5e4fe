import Foundation

/// The learning rate of every step: a base rate, an optional linear warm-up, then a decay rule.
///
/// Step numbers here are 0-based (`lr(at: 0)` is the rate of the first update). Values are computed in
/// Double and rounded once to Float, a pure function of the step: the same bits on every rank and after
/// a resume.
public struct LearningRateSchedule: Sendable, Equatable {
    public enum Decay: Sendable, Equatable {
        /// The base rate throughout.
        case constant
        /// Multiplied by `gamma` every `every` steps (counted from step 0, warm-up included).
        case step(every: Int, gamma: Double)
        /// Half a cosine from the base rate (at the end of warm-up) down to `minimum` at step `total`.
        case cosine(minimum: Double)
    }

    public var base: Double
    public var decay: Decay
    /// Steps of linear warm-up: step s < warmup uses `base · (s + 1) / warmup`.
    public var warmup: Int
    /// Total steps of the run (the cosine's horizon).
    public var total: Int

    public init(base: Double, decay: Decay = .constant, warmup: Int = 0, total: Int) {
        self.base = base
        self.decay = decay
        self.warmup = warmup
        self.total = total
    }

    /// The rate of 0-based step `s`.
    public func lr(at s: Int) -> Float {
        if s < warmup { return Float(base * Double(s + 1) / Double(warmup)) }
        switch decay {
        case .constant:
            return Float(base)
        case let .step(every, gamma):
            return Float(base * Foundation.pow(gamma, Double(s / every)))
        case let .cosine(minimum):
            let span = Swift.max(1, total - warmup)
            let progress = Swift.min(1, Double(s - warmup) / Double(span))
            return Float(minimum + (base - minimum) * (1 + Foundation.cos(Double.pi * progress)) / 2)
        }
    }

    /// A canonical description of everything the rates depend on (checked on resume). The horizon is
    /// part of it only for the cosine, so a constant- or step-rate run may be resumed with more steps.
    public var description: String {
        var s: String
        switch decay {
        case .constant: s = "constant(lr=\(Self.text(base))"
        case let .step(every, gamma): s = "step(lr=\(Self.text(base)),every=\(every),gamma=\(Self.text(gamma))"
        case let .cosine(minimum): s = "cosine(lr=\(Self.text(base)),min=\(Self.text(minimum)),total=\(total)"
        }
        if warmup > 0 { s += ",warmup=\(warmup)" }
        return s + ")"
    }

    /// The shortest text for a rate that came from a Float flag (0.05, not 0.05000000074505806).
    static func text(_ x: Double) -> String {
        if Double(Float(x)) == x { return "\(Float(x))" }
        return "\(x)"
    }
}
