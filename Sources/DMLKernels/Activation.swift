internal import CDMLKernels

/// Element-wise activations and their derivatives over raw buffers, in place, no allocation.
///
/// Backward functions take the upstream gradient `dy` and the activation's *output* `y` (what the forward
/// pass keeps) and replace `dy` by `dy · f'(·)`. Every function is C (CDMLKernels), dispatched for the CPU:
/// Swift SIMD compiled for the baseline ISA ran these loops at 0.3–0.8× their AVX2 speed (relu 0.34×, tanh
/// 0.46×; benchmarks/RESULTS.md). Each element's result is the same on every ISA.
public enum Activation {
    /// `x[i] = exp(x[i])` in place: Cody–Waite range reduction `x = n·ln2 + r`, |r| ≤ ln2/2, a degree-6
    /// polynomial for `e^r` (Cephes' expf coefficients) and `2^n` built in the exponent bits, with unfused
    /// multiplies and adds. Relative error ≲ 2e-7; `x < −87.3` gives 0, `x > 88.7` gives +∞ (inputs there
    /// overflow Float anyway), NaN stays NaN.
    public static func exp(_ x: UnsafeMutablePointer<Float>, _ n: Int) {
        dml_kernels().pointee.exp(x, n)
    }

    /// `x = max(x, 0)` in place (NaN and −0 stay as they are).
    public static func relu(_ x: UnsafeMutablePointer<Float>, _ n: Int) {
        dml_kernels().pointee.relu(x, n)
    }

    /// `dy *= (y > 0)` (ReLU's derivative, taken as 0 at 0).
    public static func reluBackward(_ dy: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>, _ n: Int) {
        dml_kernels().pointee.relu_backward(dy, y, n)
    }

    /// `x = tanh(x)` in place, as `sign(x)·(1 − 2/(e^{2|x|} + 1))` (no overflow; absolute error ≲ 3e-7).
    /// For |x| < 0.0625 it uses the odd series `x − x³/3 + 2x⁵/15`, where the formula above cancels.
    public static func tanh(_ x: UnsafeMutablePointer<Float>, _ n: Int) {
        dml_kernels().pointee.tanh(x, n)
    }

    /// `dy *= 1 − y²` where `y = tanh(x)`.
    public static func tanhBackward(_ dy: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>, _ n: Int) {
        dml_kernels().pointee.tanh_backward(dy, y, n)
    }

    /// `x = 1/(1 + e^{−x})` in place, evaluated as `e^{x}/(1 + e^{x})` for x < 0 so nothing overflows.
    public static func sigmoid(_ x: UnsafeMutablePointer<Float>, _ n: Int) {
        dml_kernels().pointee.sigmoid(x, n)
    }

    /// `dy *= y·(1 − y)` where `y = sigmoid(x)` (as `(dy·y)·(1 − y)`).
    public static func sigmoidBackward(_ dy: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>, _ n: Int) {
        dml_kernels().pointee.sigmoid_backward(dy, y, n)
    }
}
