/// The element types the collectives reduce: the three the training runtime needs (Float gradients,
/// Double statistics, Int64 counts and flags).
public enum ScalarKind: Sendable {
    case float32, float64, int64
}

public protocol ReducibleScalar: Numeric, Comparable, Sendable {
    static var kind: ScalarKind { get }
}

extension Float: ReducibleScalar { public static var kind: ScalarKind { .float32 } }
extension Double: ReducibleScalar { public static var kind: ScalarKind { .float64 } }
extension Int64: ReducibleScalar { public static var kind: ScalarKind { .int64 } }

extension ReduceOp {
    /// `dst[i] = dst[i] ⊕ src[i]` for `i < count`. The left operand is always the local value, so an
    /// algorithm that walks a fixed order of ranks gets a fixed order of operations. Vectorises for Float.
    @inlinable
    public func combine<T: ReducibleScalar>(into dst: UnsafeMutablePointer<T>, from src: UnsafePointer<T>, count: Int) {
        switch self {
        case .sum: for i in 0..<count { dst[i] = dst[i] + src[i] }
        case .max: for i in 0..<count { dst[i] = Swift.max(dst[i], src[i]) }
        case .min: for i in 0..<count { dst[i] = Swift.min(dst[i], src[i]) }
        }
    }

    /// `dst[i] = src[i] ⊕ dst[i]`: as `combine(into:from:count:)` with the operands swapped, for algorithms
    /// whose fixed order puts the incoming value on the left.
    @inlinable
    public func combine<T: ReducibleScalar>(into dst: UnsafeMutablePointer<T>, leftOperand src: UnsafePointer<T>, count: Int) {
        switch self {
        case .sum: for i in 0..<count { dst[i] = src[i] + dst[i] }
        case .max: for i in 0..<count { dst[i] = Swift.max(src[i], dst[i]) }
        case .min: for i in 0..<count { dst[i] = Swift.min(src[i], dst[i]) }
        }
    }

    /// `dst[i] = a[i] ⊕ b[i]`: one pass instead of a copy and a combine.
    @inlinable
    public func combine<T: ReducibleScalar>(into dst: UnsafeMutablePointer<T>, _ a: UnsafePointer<T>, _ b: UnsafePointer<T>, count: Int) {
        switch self {
        case .sum: for i in 0..<count { dst[i] = a[i] + b[i] }
        case .max: for i in 0..<count { dst[i] = Swift.max(a[i], b[i]) }
        case .min: for i in 0..<count { dst[i] = Swift.min(a[i], b[i]) }
        }
    }
}
