import Foundation

/// Numerically stable softmax and log-sum-exp, over one row or over the rows of a matrix.
public enum Softmax {
    public typealias V = SIMD8<Float>

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
    /// cross-entropy of class c is then `lse − x[c]`). Uses the SIMD `Activation.exp` (relative error
    /// about 2e-7); no allocation.
    @inlinable @discardableResult
    public static func inPlace(_ x: UnsafeMutablePointer<Float>, _ n: Int) -> Float {
        let m = Vector.max(x, n)
        let mv = V(repeating: m)
        var acc = V()
        var i = 0
        while i + 8 <= n {
            let e = Activation.exp(Vector.load(x + i) - mv)
            Vector.store(e, x + i)
            acc += e
            i += 8
        }
        if i < n {
            var t = V(repeating: -Float.infinity)
            for l in 0..<(n - i) { t[l] = x[i + l] - m }
            let e = Activation.exp(t)
            for l in 0..<(n - i) { x[i + l] = e[l] }
            acc += e
        }
        let s = acc.sum()
        Vector.scale(1 / s, x, n)
        return m + Foundation.log(s)
    }

    /// Softmax of each of `rows` rows of `cols` values (row stride `ld`), in place; when `lse` is given, row
    /// r's log-sum-exp (of its original values) is written to `lse[r]`.
    @inlinable
    public static func rows(_ x: UnsafeMutablePointer<Float>, rows: Int, cols: Int, ld: Int,
                            lse: UnsafeMutablePointer<Float>? = nil) {
        for r in 0..<rows {
            let l = inPlace(x + r * ld, cols)
            lse?[r] = l
        }
    }
}
