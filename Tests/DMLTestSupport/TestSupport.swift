import Foundation

/// Deterministic pseudo-random values for tests (SplitMix64).
public struct TestRandom: RandomNumberGenerator {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// `n` floats uniform in `range`.
    public mutating func floats(_ n: Int, in range: ClosedRange<Float> = -1...1) -> [Float] {
        (0..<n).map { _ in Float.random(in: range, using: &self) }
    }

    /// `n` integer-valued floats in −100…100: sums of a few thousand of them are exact in any order.
    public mutating func integerFloats(_ n: Int) -> [Float] {
        (0..<n).map { _ in Float(Int.random(in: -100...100, using: &self)) }
    }
}

/// The largest `|a − b| / max(1, |b|)` over two equal-length sequences.
public func maxRelativeDifference<S: Sequence, T: Sequence>(_ a: S, _ b: T) -> Double
where S.Element: BinaryFloatingPoint, T.Element: BinaryFloatingPoint {
    var worst = 0.0
    for (x, y) in zip(a, b) {
        let dx = Double(x), dy = Double(y)
        worst = max(worst, abs(dx - dy) / max(1, abs(dy)))
    }
    return worst
}

/// A file's bytes; empty when it does not exist.
public func bytes(_ path: String) -> [UInt8] { [UInt8](FileManager.default.contents(atPath: path) ?? Data()) }
