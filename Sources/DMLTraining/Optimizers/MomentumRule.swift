/// Heavy-ball momentum, `v ← μ·v + (g + λ·w)`, `w ← w − lr·v`, or Nesterov's variant as PyTorch writes it,
/// `w ← w − lr·(g + λ·w + μ·v)` with v updated first. State: the velocity v (1 copy). A +0 gradient still
/// moves w through v, so a sparse step updates every coordinate (`leavesZeroGradientsAlone` false).
public struct MomentumRule: UpdateRule {
    public static let name = "momentum"
    public static let stateCopies = 1
    public let momentum: Float
    public let nesterov: Bool

    public init(_ config: OptimizerConfig) {
        momentum = config.momentum
        nesterov = config.nesterov
    }

    public var description: String { "\(Self.name)(momentum=\(momentum)\(nesterov ? ",nesterov" : ""))" }
    public var leavesZeroGradientsAlone: Bool { false }

    @inline(__always) private func apply(_ i: Int, _ w: UnsafeMutablePointer<Float>, _ g: UnsafePointer<Float>, _ v: UnsafeMutablePointer<Float>,
                                         lambda wd: Float, lr: Float) {
        let mu = momentum
        let gi = wd == 0 ? g[i] : g[i] + wd * w[i]
        v[i] = mu * v[i] + gi
        w[i] -= lr * (nesterov ? gi + mu * v[i] : v[i])
    }

    public func update(_ b: UpdateBuffers, count: Int, lambda: Float, step: UpdateStep) {
        let v = b.state(0)
        for i in 0..<count { apply(i, b.parameters, b.gradient, v, lambda: lambda, lr: step.learningRate) }
    }

    public func update(_ b: UpdateBuffers, at coordinates: UnsafeBufferPointer<Int32>, step: UpdateStep) {
        let v = b.state(0)
        for c in coordinates { apply(Int(c), b.parameters, b.gradient, v, lambda: 0, lr: step.learningRate) }
    }
}
