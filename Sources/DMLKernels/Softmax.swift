import Foundation

/// Numerically stable softmax and log-sum-exp over one row.
public enum Softmax {
    /// `log Σ exp(x[i])`, computed as `m + log Σ exp(x[i] − m)` with `m = max x` so that no term overflows.
    @inlinable
    public static func logSumExp(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        let m = Vector.max(x, n)
        if !m.isFinite { return m }
        var s: Float = 0
        for i in 0..<n { s += Foundation.exp(x[i] - m) }
        return m + Foundation.log(s)
    }

    /// Replaces `x[0..<n]` by `softmax(x)` and returns `log Σ exp(x)` of the original values (the
    /// cross-entropy of class c is then `lse − x[c]`).
    @inlinable @discardableResult
    public static func inPlace(_ x: UnsafeMutablePointer<Float>, _ n: Int) -> Float {
        let m = Vector.max(x, n)
        var s: Float = 0
        for i in 0..<n {
            let e = Foundation.exp(x[i] - m)
            x[i] = e
            s += e
        }
        Vector.scale(1 / s, x, n)
        return m + Foundation.log(s)
    }
}
