import Foundation

/// Random numbers that are a pure function of a key (seed, index, …) rather than of a generator's
/// history. Any rank can produce row 1 000 000's values without producing the rows before it, which is
/// what lets each rank generate only its own shard while the data set stays the same for any rank count.
public enum CounterRandom {
    /// SplitMix64's finaliser: a bijection on UInt64 with good avalanche.
    @inlinable @inline(__always)
    public static func mix(_ z0: UInt64) -> UInt64 {
        var z = z0 &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A 64-bit hash of up to three words.
    @inlinable @inline(__always)
    public static func hash(_ a: UInt64, _ b: UInt64, _ c: UInt64 = 0) -> UInt64 {
        mix(mix(mix(a) ^ b) ^ c)
    }

    /// Uniform in [0, 1), 24 random bits (every value exactly representable as Float).
    @inlinable @inline(__always)
    public static func uniform(_ a: UInt64, _ b: UInt64, _ c: UInt64 = 0) -> Float {
        Float(hash(a, b, c) >> 40) * (1.0 / 16_777_216.0)
    }

    /// Standard normal (Box–Muller over two independent uniforms of the same key).
    @inlinable
    public static func normal(_ a: UInt64, _ b: UInt64, _ c: UInt64 = 0) -> Float {
        let h = hash(a, b, c)
        let u1 = (Double(h >> 40) + 1) / 16_777_217.0          // (0, 1]
        let u2 = Double((h >> 16) & 0xFF_FFFF) / 16_777_216.0  // [0, 1)
        return Float((-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2))
    }
}
