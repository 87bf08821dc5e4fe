/// Element-wise activations and their derivatives, SIMD over raw buffers, in place, no allocation.
///
/// Backward functions take the upstream gradient `dy` and the activation's *output* `y` (what the forward
/// pass keeps) and replace `dy` by `dy · f'(·)`.
public enum Activation {
    public typealias V = SIMD8<Float>

    /// `exp(x)` lane-wise: Cody–Waite range reduction `x = n·ln2 + r`, |r| ≤ ln2/2, a degree-6 polynomial
    /// for `e^r` (Cephes' expf coefficients) and `2^n` built in the exponent bits. Relative error ≲ 2e-7;
    /// `x < −87.3` gives 0, `x > 88.7` gives +∞ (inputs there overflow Float anyway), NaN stays NaN.
    @inlinable @inline(__always)
    public static func exp(_ x0: V) -> V {
        let hi = V(repeating: 88.72283), lo = V(repeating: -87.33654)
        var x = x0.replacing(with: hi, where: x0 .> hi)
        x.replace(with: lo, where: x .< lo)
        // round(x·log2 e) with the 1.5·2^23 trick: the integer lands in the low mantissa bits.
        let magic = V(repeating: 12_582_912)
        let t = x * V(repeating: 1.442_695_04) + magic
        let n = t - magic
        var r = x - n * V(repeating: 0.693_359_375)
        r = r - n * V(repeating: -2.121_944_4e-4)
        var p = V(repeating: 1.987_569_15e-4)
        p = p * r + V(repeating: 1.398_199_95e-3)
        p = p * r + V(repeating: 8.333_451_9e-3)
        p = p * r + V(repeating: 4.166_579_59e-2)
        p = p * r + V(repeating: 1.666_666_55e-1)
        p = p * r + V(repeating: 5.000_000_1e-1)
        let e = p * (r * r) + r + V(repeating: 1)
        let bits = (unsafeBitCast(t, to: SIMD8<Int32>.self) &- unsafeBitCast(magic, to: SIMD8<Int32>.self)
            &+ SIMD8<Int32>(repeating: 127)) &<< SIMD8<Int32>(repeating: 23)
        var result = e * unsafeBitCast(bits, to: V.self)
        result.replace(with: V(), where: x0 .< lo)
        result.replace(with: V(repeating: .infinity), where: x0 .> hi)
        result.replace(with: x0, where: x0 .!= x0)
        return result
    }

    // The element-wise loops below are written out per function rather than through a shared helper taking a
    // closure: the optimiser merges such look-alike functions and then calls the closure through a pointer
    // for every vector. Tails go through a padded vector, so every element sees the same arithmetic.

    /// The `n − i < 8` trailing elements of `x` from `i`, as a vector padded with `pad`.
    @inlinable @inline(__always)
    static func tail(_ x: UnsafePointer<Float>, _ i: Int, _ n: Int, pad: Float = 0) -> V {
        var t = V(repeating: pad)
        for l in 0..<(n - i) { t[l] = x[i + l] }
        return t
    }

    @inlinable @inline(__always)
    static func storeTail(_ v: V, _ x: UnsafeMutablePointer<Float>, _ i: Int, _ n: Int) {
        for l in 0..<(n - i) { x[i + l] = v[l] }
    }

    /// `x = max(x, 0)` in place.
    public static func relu(_ x: UnsafeMutablePointer<Float>, _ n: Int) {
        var i = 0
        while i + 8 <= n {
            let v = Vector.load(x + i)
            Vector.store(v.replacing(with: V(), where: v .< V()), x + i)
            i += 8
        }
        if i < n {
            let v = tail(x, i, n)
            storeTail(v.replacing(with: V(), where: v .< V()), x, i, n)
        }
    }

    /// `dy *= (y > 0)` (ReLU's derivative, taken as 0 at 0).
    public static func reluBackward(_ dy: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>, _ n: Int) {
        var i = 0
        while i + 8 <= n {
            Vector.store(Vector.load(dy + i).replacing(with: V(), where: Vector.load(y + i) .<= V()), dy + i)
            i += 8
        }
        if i < n { storeTail(tail(dy, i, n).replacing(with: V(), where: tail(y, i, n) .<= V()), dy, i, n) }
    }

    /// `x = tanh(x)` in place, as `sign(x)·(1 − 2/(e^{2|x|} + 1))` (no overflow; absolute error ≲ 3e-7).
    /// For |x| < 0.0625 it uses the odd series `x − x³/3 + 2x⁵/15`, where the formula above cancels.
    public static func tanh(_ x: UnsafeMutablePointer<Float>, _ n: Int) {
        var i = 0
        while i + 8 <= n {
            Vector.store(tanh(Vector.load(x + i)), x + i)
            i += 8
        }
        if i < n { storeTail(tanh(tail(x, i, n)), x, i, n) }
    }

    @inlinable @inline(__always)
    public static func tanh(_ v: V) -> V {
        let a = v.replacing(with: -v, where: v .< V())
        let e = exp(a + a)
        var t = V(repeating: 1) - V(repeating: 2) / (e + V(repeating: 1))
        let a2 = a * a
        let series = a * (V(repeating: 1) + a2 * (V(repeating: -1.0 / 3) + a2 * V(repeating: 2.0 / 15)))
        t.replace(with: series, where: a .< V(repeating: 0.0625))
        return t.replacing(with: -t, where: v .< V())
    }

    /// `dy *= 1 − y²` where `y = tanh(x)`.
    public static func tanhBackward(_ dy: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>, _ n: Int) {
        let one = V(repeating: 1)
        var i = 0
        while i + 8 <= n {
            let t = Vector.load(y + i)
            Vector.store(Vector.load(dy + i) * (one - t * t), dy + i)
            i += 8
        }
        if i < n {
            let t = tail(y, i, n)
            storeTail(tail(dy, i, n) * (one - t * t), dy, i, n)
        }
    }

    /// `x = 1/(1 + e^{−x})` in place, evaluated as `e^{x}/(1 + e^{x})` for x < 0 so nothing overflows.
    public static func sigmoid(_ x: UnsafeMutablePointer<Float>, _ n: Int) {
        var i = 0
        while i + 8 <= n {
            Vector.store(sigmoid(Vector.load(x + i)), x + i)
            i += 8
        }
        if i < n { storeTail(sigmoid(tail(x, i, n)), x, i, n) }
    }

    @inlinable @inline(__always)
    public static func sigmoid(_ v: V) -> V {
        let neg = v .< V()
        let e = exp(v.replacing(with: -v, where: .!neg))  // e^{−|v|} ∈ (0, 1]
        let one = V(repeating: 1)
        let pos = one / (one + e)
        return pos.replacing(with: e / (one + e), where: neg)
    }

    /// `dy *= y·(1 − y)` where `y = sigmoid(x)`.
    public static func sigmoidBackward(_ dy: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>, _ n: Int) {
        let one = V(repeating: 1)
        var i = 0
        while i + 8 <= n {
            let t = Vector.load(y + i)
            Vector.store(Vector.load(dy + i) * t * (one - t), dy + i)
            i += 8
        }
        if i < n {
            let t = tail(y, i, n)
            storeTail(tail(dy, i, n) * t * (one - t), dy, i, n)
        }
    }
}
