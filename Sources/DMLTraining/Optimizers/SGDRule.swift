import DMLKernels

/// Plain SGD, `w ← w − lr·(g + λ·w)`. No state. Without weight decay the contiguous form is `Vector.axpy`
/// (SIMD; one fused multiply-add per coordinate) and the indexed form does the same fused multiply-add per
/// touched coordinate, so both give the same bits; a +0 gradient leaves w as it is (−0 and NaN included).
public struct SGDRule: UpdateRule {
    public static let name = "sgd"
    public static let stateCopies = 0
    public init(_ config: OptimizerConfig) {}
    public var description: String { Self.name }
    public var leavesZeroGradientsAlone: Bool { true }

    public func update(_ b: UpdateBuffers, count: Int, lambda: Float, step: UpdateStep) {
        let w = b.parameters, g = b.gradient, lr = step.learningRate
        if lambda == 0 {
            Vector.axpy(-lr, g, w, count)
        } else {
            Vector.split(count) { lo, n in for i in lo..<lo + n { w[i] -= lr * (g[i] + lambda * w[i]) } }
        }
    }

    public func update(_ b: UpdateBuffers, at coordinates: UnsafeBufferPointer<Int32>, step: UpdateStep) {
        let w = b.parameters, g = b.gradient, a = -step.learningRate
        for c in coordinates {
            let i = Int(c)
            w[i] = w[i].addingProduct(a, g[i])
        }
    }
}
