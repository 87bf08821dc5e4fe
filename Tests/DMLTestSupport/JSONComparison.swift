import Foundation

/// Compares a JSON value (as `JSONSerialization` parses it) with an expected one: every key and element of
/// `expected` must be in `got` at the same place, strings equal, numbers within `tolerance` (relative above 1).
/// Keys of `got` that `expected` lacks are not compared.
public enum JSONComparison {
    /// One line per difference (`path: got … expected …`); empty when they match.
    public static func mismatches(_ got: Any?, _ expected: Any, tolerance: Double = 1e-6, path: String = "") -> [String] {
        switch expected {
        case let e as [String: Any]:
            guard let g = got as? [String: Any] else { return ["\(path): \(String(describing: got)) is not an object"] }
            return e.keys.sorted().flatMap { mismatches(g[$0], e[$0]!, tolerance: tolerance, path: path + "." + $0) }
        case let e as [Any]:
            guard let g = got as? [Any], g.count == e.count else { return ["\(path): \(String(describing: got)) vs \(e)"] }
            return e.indices.flatMap { mismatches(g[$0], e[$0], tolerance: tolerance, path: "\(path)[\($0)]") }
        case let e as String:
            return got as? String == e ? [] : ["\(path): \(String(describing: got)), expected \(e)"]
        case let e as NSNumber:
            guard let g = (got as? NSNumber)?.doubleValue else { return ["\(path): \(String(describing: got)) is not a number (expected \(e))"] }
            return abs(g - e.doubleValue) <= tolerance * max(1, abs(e.doubleValue)) ? [] : ["\(path): \(g), expected \(e.doubleValue)"]
        default:
            return ["\(path): cannot compare \(expected)"]
        }
    }
}
