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
/// The result is the correctly rounded `Double` (the value `strtod` gives): up to 19 digits with
/// a mantissa ≤ 2^53 and a decimal exponent within ±22 take Clinger's exact fast path (one multiply or
/// divide by an exact power of ten); anything else (long mantissas, large exponents) falls back to `strtod`
/// on a NUL-terminated copy of the token. Cost: one pass over the token's bytes.
public enum DecimalParser {
    /// 10^e for 0 ≤ e ≤ 22: the powers of ten a Double holds exactly. A switch of literals (a jump table),
    /// not a global array, so the hot path has no lazy-initialisation check.
    @inlinable @inline(__always)
    static func power(_ e: Int) -> Double {
        switch e {
        case 0: return 1e0
        case 1: return 1e1
        case 2: return 1e2
        case 3: return 1e3
        case 4: return 1e4
        case 5: return 1e5
        case 6: return 1e6
        case 7: return 1e7
        case 8: return 1e8
        case 9: return 1e9
        case 10: return 1e10
        case 11: return 1e11
        case 12: return 1e12
        case 13: return 1e13
        case 14: return 1e14
        case 15: return 1e15
        case 16: return 1e16
        case 17: return 1e17
        case 18: return 1e18
        case 19: return 1e19
        case 20: return 1e20
        case 21: return 1e21
        default: return 1e22
        }
    }

    /// Parses the longest number at the start of `[p, end)`. Returns the value and the first byte after it,
    /// or nil when no number starts there. The caller checks what follows (a delimiter, or the line's end).
    @inlinable @inline(__always)
    public static func parse(_ start: UnsafePointer<UInt8>, _ end: UnsafePointer<UInt8>) -> (value: Double, end: UnsafePointer<UInt8>)? {
        var p = start
        var negative = false
        if p < end && (p.pointee == UInt8(ascii: "-") || p.pointee == UInt8(ascii: "+")) {
            negative = p.pointee == UInt8(ascii: "-")
            p += 1
        }
        // Every digit goes into the mantissa; more than 19 digits (which may overflow it, or need more
        // precision than it holds) take the strtod path below.
        var mantissa: UInt64 = 0
        let integerStart = p
        while p < end {
            let d = p.pointee &- 48
            if d >= 10 { break }
            mantissa = mantissa &* 10 &+ UInt64(d)
            p += 1
        }
        var digits = p - integerStart
        var exponent = 0
        if p < end && p.pointee == UInt8(ascii: ".") {
            p += 1
            let fractionStart = p
            while p < end {
                let d = p.pointee &- 48
                if d >= 10 { break }
                mantissa = mantissa &* 10 &+ UInt64(d)
                p += 1
            }
            digits += p - fractionStart
            exponent = fractionStart - p
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
        if digits <= 19 && mantissa <= (1 << 53) {
            var v = Double(mantissa)
            if mantissa == 0 || exponent == 0 {
                return (negative ? -v : v, p)
            }
            if exponent > 0 && exponent <= 22 {
                v *= power(exponent)
                return (negative ? -v : v, p)
            }
            if exponent < 0 && exponent >= -22 {
                v /= power(-exponent)
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
