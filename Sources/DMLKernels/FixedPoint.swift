internal import CDMLKernels

/// Exact fixed-point sums of Floats (`--reproducible`'s reduction): values scaled by a shared power of two,
/// truncated to Int64 and added as integers, so any order and any grouping give the same integers.
///
/// Invariant: the same integers on every ISA (AVX-512DQ converts with vcvttpd2qq; AVX2 and generic with an exact
/// two-part split, `CDMLKernels` `fixed_add`) and for any thread count: the work is cut into fixed runs of
/// `unit` elements, each element is computed by exactly one thread with the same operations, and integer maxima
/// and sums do not depend on who computes what (`FixedPointTests`).
///
/// Cost: one pass over the input per call (`largestMagnitude`: n Floats read; `add`: n Floats read, n Int64 read
/// and written), over the kernel threads when n spans more than one unit.
public enum FixedPoint {
    /// Elements per unit of a threaded call (64 KiB of Floats): large enough that a unit outweighs a claim.
    public static let unit = 16384

    /// Runs `kernel(lo, count)` over `0..<n` — whole when n ≤ `unit`, else in fixed runs of `unit` values over the
    /// kernel threads — and returns the largest bit pattern the runs return (a max: the same for any split).
    private static func largestBits(_ n: Int, _ kernel: (Int, Int) -> UInt32) -> UInt32 {
        if n <= unit { return kernel(0, n) }
        let units = (n + unit - 1) / unit
        return withUnsafeTemporaryAllocation(of: UInt32.self, capacity: units) { tops in
            KernelThreads.parallel(units: units) { begin, end in
                for u in begin..<end { tops[u] = kernel(u * unit, Swift.min(unit, n - u * unit)) }
            }
            return tops.max() ?? 0
        }
    }

    /// max |x[i]| for i < n as a Double (0 for n = 0), or +infinity when any x[i] is not finite. Exact.
    public static func largestMagnitude(_ x: UnsafePointer<Float>, _ n: Int) -> Double {
        let kernel = dml_kernels().pointee.max_abs_bits
        return magnitude(bits: largestBits(n) { lo, count in kernel(x + lo, count) })
    }

    /// q[i] += trunc(x[i] · 2^k) for i < n, and returns `largestMagnitude(x, n)`, found in the same pass. Exact
    /// when the returned value times 2^k is below 2^62 and every q[i] stays below 2^63 in magnitude (the caller's
    /// choice of k); otherwise q holds defined but meaningless integers, for the caller to discard. x[i] · 2^k is
    /// exact in Double.
    @discardableResult
    public static func add(_ x: UnsafePointer<Float>, _ n: Int, exponent k: Int, into q: UnsafeMutablePointer<Int64>) -> Double {
        let kernel = dml_kernels().pointee.fixed_add
        let scale = Double(sign: .plus, exponent: k, significand: 1)
        let top = largestBits(n) { lo, count in kernel(x + lo, count, scale, q + lo) }
        return magnitude(bits: top)
    }

    /// q[i] = Σ_b trunc(xs[b][i] · 2^k) for i < n (q's previous contents never read), and the largest |xs[b][i]|:
    /// the integers of `add` of every buffer into a zeroed q, but q is written once instead of zeroed and then read
    /// and written per buffer — each run of `span` values of q is zeroed and summed over the buffers while it is
    /// in L1. The same units over the kernel threads as `add`. Cost: the buffers read once, q written once.
    @discardableResult
    public static func sum(_ xs: [UnsafePointer<Float>], _ n: Int, exponent k: Int, into q: UnsafeMutablePointer<Int64>) -> Double {
        let kernel = dml_kernels().pointee.fixed_add
        let scale = Double(sign: .plus, exponent: k, significand: 1)
        let top = largestBits(n) { lo, count in
            var top: UInt32 = 0
            for start in stride(from: lo, to: lo + count, by: span) {
                let m = Swift.min(span, lo + count - start)
                (q + start).update(repeating: 0, count: m)
                for x in xs { top = Swift.max(top, kernel(x + start, m, scale, q + start)) }
            }
            return top
        }
        return magnitude(bits: top)
    }

    /// Values of q per run of `sum` (16 KiB of Int64: q's run and one buffer's stay in L1).
    public static let span = 2048

    /// The Double of a max of |x|'s bit patterns: +infinity for ±∞ and NaN.
    static func magnitude(bits top: UInt32) -> Double { top >= 0x7F80_0000 ? .infinity : Double(Float(bitPattern: top)) }
}
