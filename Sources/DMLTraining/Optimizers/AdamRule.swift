import Foundation
import DMLKernels

/// Adam (Kingma & Ba): `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`, `w ← w − lr·m̂/(√v̂ + ε)` with the bias
/// corrections `m̂ = m/(1−β1ᵗ)`, `v̂ = v/(1−β2ᵗ)`; weight decay as an L2 term `g + λ·w`, or decoupled
/// (`w ← w − lr·λ·w` first: `AdamWRule`). State: m and v (2 copies). The corrections are computed in Double
/// and rounded once per call: the same bits on every rank, every slice and after a resume. A +0 gradient
/// still moves w through m, so a sparse step updates every coordinate.
public struct AdamRule: UpdateRule {
    public static let name = "adam"
    public static let stateCopies = 2
    public let beta1: Float
    public let beta2: Float
    public let epsilon: Float
    /// AdamW's decoupled weight decay instead of the L2 term.
    public let decoupled: Bool

    public init(_ config: OptimizerConfig) { self.init(config, decoupled: false) }

    public init(_ config: OptimizerConfig, decoupled: Bool) {
        beta1 = config.beta1
        beta2 = config.beta2
        epsilon = config.epsilon
        self.decoupled = decoupled
    }

    public var description: String { "\(decoupled ? AdamWRule.name : Self.name)(beta1=\(beta1),beta2=\(beta2),eps=\(epsilon))" }
    public var leavesZeroGradientsAlone: Bool { false }

    private func corrections(_ t: Int) -> (Float, Float) {
        (Float(1 - Foundation.pow(Double(beta1), Double(t))), Float(1 - Foundation.pow(Double(beta2), Double(t))))
    }

    @inline(__always) private func apply(_ i: Int, _ b: UpdateBuffers, lambda wd: Float, lr: Float, c1: Float, c2: Float) {
        let w = b.parameters, m = b.state(0), v = b.state(1)
        let b1 = beta1, b2 = beta2
        var gi = b.gradient[i]
        if wd != 0 {
            if decoupled { w[i] -= lr * wd * w[i] } else { gi += wd * w[i] }
        }
        m[i] = b1 * m[i] + (1 - b1) * gi
        v[i] = b2 * v[i] + (1 - b2) * gi * gi
        let mHat = m[i] / c1, vHat = v[i] / c2
        w[i] -= lr * mHat / (vHat.squareRoot() + epsilon)
    }

    public func update(_ b: UpdateBuffers, count: Int, lambda: Float, step: UpdateStep) {
        let (c1, c2) = corrections(step.t)
        Vector.split(count) { lo, n in  // over the kernel threads for a large model: per coordinate, the same bits
            for i in lo..<lo + n { apply(i, b, lambda: lambda, lr: step.learningRate, c1: c1, c2: c2) }
        }
    }

    public func update(_ b: UpdateBuffers, at coordinates: UnsafeBufferPointer<Int32>, step: UpdateStep) {
        let (c1, c2) = corrections(step.t)
        for c in coordinates { apply(Int(c), b, lambda: 0, lr: step.learningRate, c1: c1, c2: c2) }
    }
}
