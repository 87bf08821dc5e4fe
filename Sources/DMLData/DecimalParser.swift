#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Parses decimal numbers straight from bytes, with no `String` per token.
///
/// Grammar: `[+-]? (digits [. digits?] | . digits) ([eE] [+-]? digits)?` — what CSV writers emit. Hex
/// floats, `nan` and `inf` are not numbers here (a data file holding them is an error, reported as such).
///
/// The result is the correctly rounded `Double` (the value `strtod` gives): up to 19 significant digits with
/// a mantissa ≤ 2^53 and a decimal exponent within ±22 take Clinger's exact fast path (one multiply or
/// divide by an exact power of ten); anything else (long mantissas, large exponents) falls back to `strtod`
/// on a NUL-terminated copy of the token. Cost: one pass over the token's bytes.
public enum DecimalParser {
    /// Exact powers of ten representable in a Double.
    @usableFromInline static let powers: [Double] = (0...22).map { e in
        var v = 1.0
        for _ in 0..<e { v *= 10 }
        return v
    }

    /// Parses the longest number at the start of `[p, end)`. Returns the value and the first byte after it,
    /// or nil when no number starts there. The caller checks what follows (a delimiter, or the line's end).
    @inlinable
    public static func parse(_ start: UnsafePointer<UInt8>, _ end: UnsafePointer<UInt8>) -> (value: Double, end: UnsafePointer<UInt8>)? {
        var p = start
        var negative = false
        if p < end && (p.pointee == UInt8(ascii: "-") || p.pointee == UInt8(ascii: "+")) {
            negative = p.pointee == UInt8(ascii: "-")
            p += 1
        }
        var mantissa: UInt64 = 0
        var significant = 0       // digits taken into `mantissa`, leading zeros excluded
        var exponent = 0          // decimal exponent of `mantissa`
        var truncated = false     // more than 19 significant digits: needs strtod
        var digits = 0
        while p < end {
            let d = p.pointee &- 48
            if d >= 10 { break }
            if significant < 19 {
                mantissa = mantissa &* 10 &+ UInt64(d)
                if mantissa != 0 { significant += 1 }
            } else {
                exponent += 1
                if d != 0 { truncated = true }
            }
            digits += 1
            p += 1
        }
        if p < end && p.pointee == UInt8(ascii: ".") {
            p += 1
            while p < end {
                let d = p.pointee &- 48
                if d >= 10 { break }
                if significant < 19 {
                    mantissa = mantissa &* 10 &+ UInt64(d)
                    if mantissa != 0 { significant += 1 }
                    exponent -= 1
                } else if d != 0 {
                    truncated = true
                }
                digits += 1
                p += 1
            }
        }
        if digits == 0 { return nil }
        if p < end && (p.pointee | 0x20) == UInt8(ascii: "e") {
            // An `e` without digits after it is not part of the number ("1e" stops before the e).
            var q = p + 1
            var expNegative = false
            if q < end && (q.pointee == UInt8(ascii: "-") || q.pointee == UInt8(ascii: "+")) {
                expNegative = q.pointee == UInt8(ascii: "-")
                q += 1
            }
            var e = 0
            var expDigits = 0
            while q < end {
                let d = q.pointee &- 48
                if d >= 10 { break }
                if e < 100_000 { e = e * 10 + Int(d) }
                expDigits += 1
                q += 1
            }
            if expDigits > 0 {
                exponent += expNegative ? -e : e
                p = q
            }
        }
        if !truncated && mantissa <= (1 << 53) {
            var v = Double(mantissa)
            if mantissa == 0 || exponent == 0 {
                return (negative ? -v : v, p)
            }
            if exponent > 0 && exponent <= 22 {
                v *= powers[exponent]
                return (negative ? -v : v, p)
            }
            if exponent < 0 && exponent >= -22 {
                v /= powers[-exponent]
                return (negative ? -v : v, p)
            }
        }
        return (slowParse(start, p), p)
    }

    /// `strtod` on a NUL-terminated copy of `[start, end)`, which the grammar above has already checked.
    @usableFromInline
    static func slowParse(_ start: UnsafePointer<UInt8>, _ end: UnsafePointer<UInt8>) -> Double {
        let n = end - start
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: n + 1) { buf in
            let base = buf.baseAddress!
            UnsafeMutableRawPointer(base).copyMemory(from: start, byteCount: n)
            base[n] = 0
            return strtod(base, nil)
        }
    }

    /// Parses a whole token (no surrounding bytes); nil when it is not exactly one number.
    public static func parse<S: StringProtocol>(_ token: S) -> Double? {
        var bytes = Array(token.utf8)
        if bytes.isEmpty { return nil }
        return bytes.withUnsafeMutableBufferPointer { b -> Double? in
            let s = UnsafePointer(b.baseAddress!)
            guard let (v, e) = parse(s, s + b.count), e == s + b.count else { return nil }
            return v
        }
    }
}
