import DMLKernels

/// Applies one update to the flat parameter buffer from the averaged gradient. Every rank runs the same
/// update on the same bits, so replicas stay identical.
public protocol Optimizer: AnyObject {
    var name: String { get }
    func step(parameters: UnsafeMutablePointer<Float>, gradient: UnsafePointer<Float>, count: Int, learningRate: Float)
}

/// Plain stochastic gradient descent: `θ ← θ − lr·g`.
public final class SGD: Optimizer {
    public let name = "sgd"
    public init() {}

    public func step(parameters: UnsafeMutablePointer<Float>, gradient: UnsafePointer<Float>, count: Int, learningRate: Float) {
        Vector.axpy(-learningRate, gradient, parameters, count)
    }
}
