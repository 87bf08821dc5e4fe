/// Heavy-ball momentum, `v ← μ·v + (g + λ·w)`, `w ← w − lr·v`, or Nesterov's variant as PyTorch writes it,
/// `w ← w − lr·(g + λ·w + μ·v)` with v updated first. State: the velocity v (1 copy). A +0 gradient still
/// moves w through v, so a sparse step updates every coordinate (`leavesZeroGradientsAlone` false).
public struct MomentumRule: CoordinateRule {
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

    @inline(__always) public func apply(_ i: Int, _ b: UpdateBuffers, lambda wd: Float, learningRate lr: Float) {
        let w = b.parameters, g = b.gradient, v = b.state(0), mu = momentum
        let gi = wd == 0 ? g[i] : g[i] + wd * w[i]
        v[i] = mu * v[i] + gi
        w[i] -= lr * (nesterov ? gi + mu * v[i] : v[i])
    }
}
