import Foundation
internal import CDMLKernels

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
    /// cross-entropy of class c is then `lse − x[c]`): `exp(x − max)` as `Activation.exp` (relative error about
    /// 2e-7) summed in eight lanes and a fixed tree, then scaled by 1/sum. C, dispatched; no allocation.
    @discardableResult
    public static func inPlace(_ x: UnsafeMutablePointer<Float>, _ n: Int) -> Float {
        var lse: Float = 0
        dml_kernels().pointee.softmax_rows(x, 1, n, n, &lse)
        return lse
    }

    /// Softmax of each of `rows` rows of `cols` values (row stride `ld`), in place; when `lse` is given, row
    /// r's log-sum-exp (of its original values) is written to `lse[r]`. Each row as `inPlace`.
    public static func rows(_ x: UnsafeMutablePointer<Float>, rows: Int, cols: Int, ld: Int,
                            lse: UnsafeMutablePointer<Float>? = nil) {
        dml_kernels().pointee.softmax_rows(x, rows, cols, ld, lse)
    }
}
