import DMLKernels
import Foundation

/// Multinomial logistic (softmax) regression: `p = softmax(W·x + b)`, loss `−log p[y]`.
///
/// Layout: `weight` [classes × features], `bias` [classes]. Gradient of one row: `d = p − onehot(y)`,
/// `∂W += d ⊗ x`, `∂b += d`. Cost per row: 4·classes·features flops.
public final class SoftmaxRegression: Model {
    public let kind = "softmax"
    public let isClassifier = true
    public let inputs: Int
    public let outputs: Int
    public let layout: ParameterLayout
    private var scores: [Float]

    public init(features: Int, classes: Int) {
        precondition(features > 0 && classes > 1)
        inputs = features
        outputs = classes
        layout = ParameterLayout([("weight", [classes, features]), ("bias", [classes])])
        scores = [Float](repeating: 0, count: classes)
    }

    /// Zero: the loss is convex, and zero is the usual start (it is what the peers' benchmarks use).
    public func initialize(_ parameters: UnsafeMutableBufferPointer<Float>, seed: UInt64) {
        parameters.initialize(repeating: 0)
    }

    public func accumulateGradient(parameters: UnsafePointer<Float>, batch: Batch,
                                   into gradient: UnsafeMutablePointer<Float>) -> Double {
        let d = inputs, k = outputs
        let w = parameters, b = parameters + k * d
        let gw = gradient, gb = gradient + k * d
        var loss = 0.0
        scores.withUnsafeMutableBufferPointer { s in
            let s = s.baseAddress!
            for i in 0..<batch.rows {
                let x = batch.x + i * d
                for c in 0..<k { s[c] = Vector.dot(w + c * d, x, d) + b[c] }
                let label = Int(batch.y[i])
                let target = s[label]
                let lse = Softmax.inPlace(s, k)
                loss += Double(lse - target)
                s[label] -= 1
                for c in 0..<k {
                    Vector.axpy(s[c], x, gw + c * d, d)
                    gb[c] += s[c]
                }
            }
        }
        return loss
    }

    public func predict(parameters: UnsafePointer<Float>, x: UnsafePointer<Float>, rows: Int,
                        into predictions: UnsafeMutablePointer<Float>) {
        let d = inputs, k = outputs
        for i in 0..<rows {
            let out = predictions + i * k
            for c in 0..<k { out[c] = Vector.dot(parameters + c * d, x + i * d, d) + parameters[k * d + c] }
            Softmax.inPlace(out, k)
        }
    }

    public func evaluate(parameters: UnsafePointer<Float>, batch: Batch) -> EvaluationSums {
        let k = outputs
        var sums = EvaluationSums(loss: 0, correct: 0)
        scores.withUnsafeMutableBufferPointer { s in
            for i in 0..<batch.rows {
                predict(parameters: parameters, x: batch.x + i * inputs, rows: 1, into: s.baseAddress!)
                let label = Int(batch.y[i])
                sums.loss -= Double(Foundation.log(Swift.max(s[label], Float.leastNormalMagnitude)))
                var best = 0
                for c in 1..<k where s[c] > s[best] { best = c }
                if best == label { sums.correct += 1 }
            }
        }
        return sums
    }
}
