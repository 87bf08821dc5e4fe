/// AdamW (Loshchilov & Hutter): Adam with decoupled weight decay, `w ← w − lr·λ·w` before the Adam step on the
/// decayed ranges (`AdamRule` with `decoupled`; the same costs and state, 2 copies).
public struct AdamWRule: UpdateRule {
    public static let name = "adamw"
    public static let stateCopies = AdamRule.stateCopies
    private let adam: AdamRule

    public init(_ config: OptimizerConfig) { adam = AdamRule(config, decoupled: true) }

    public var description: String { adam.description }
    public var leavesZeroGradientsAlone: Bool { adam.leavesZeroGradientsAlone }

    public func update(_ b: UpdateBuffers, count: Int, lambda: Float, step: UpdateStep) {
        adam.update(b, count: count, lambda: lambda, step: step)
    }

    public func update(_ b: UpdateBuffers, at coordinates: UnsafeBufferPointer<Int32>, step: UpdateStep) {
        adam.update(b, at: coordinates, step: step)
    }
}
