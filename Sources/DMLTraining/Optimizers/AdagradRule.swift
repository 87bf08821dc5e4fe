/// AdaGrad (Duchi, Hazan & Singer 2011), per-coordinate adaptive steps:
/// `G ← G + g²`, `w ← w − lr·g/(√G + ε)`, with `g` the mean gradient of the global batch (plus `λ·w` where
/// weight decay applies). State: G, the running sum of squared gradients (1 copy).
///
/// Each coordinate's step shrinks like 1/√(updates it has had), so rare features — most hashed features of a
/// click log — keep large steps while frequent ones settle: what Vowpal Wabbit's default `--adaptive` update
/// does per example. The step is invariant to the gradient's scale (while √G ≫ ε), so the mean over a batch of
/// 256 rows needs no rescaling of the rate.
///
/// A +0 gradient leaves w and G as they are (`G + 0·0 = G`; `lr·0/(√G + ε) = +0`, as ε > 0 even where G = 0),
/// so an update over only the touched coordinates of a sparse step is exact (`leavesZeroGradientsAlone`).
/// Cost: one square root and one division per updated coordinate.
public struct AdagradRule: CoordinateRule {
    public static let name = "adagrad"
    public static let stateCopies = 1
    public static let defaultEpsilon: Float = 1e-10
    /// ε in the denominator, > 0 (`--adagrad-eps`; a value ≤ 0 is refused before training).
    public let epsilon: Float

    public init(_ config: OptimizerConfig) { epsilon = config.adagradEpsilon }

    public var description: String { "\(Self.name)(eps=\(epsilon))" }
    public var leavesZeroGradientsAlone: Bool { true }

    @inline(__always) public func apply(_ i: Int, _ b: UpdateBuffers, lambda wd: Float, learningRate lr: Float) {
        let w = b.parameters, g = b.gradient, s = b.state(0)
        let gi = wd == 0 ? g[i] : g[i] + wd * w[i]
        s[i] += gi * gi
        w[i] -= lr * gi / (s[i].squareRoot() + epsilon)
    }
}

extension OptimizerKind {
    /// `--optimizer adagrad` (`AdagradRule`).
    public static let adagrad = OptimizerKind(registered: AdagradRule.self)
}
