/// Byte counts as people write them: `4096`, `4K`, `256M`, `1G`, `2T` (binary units: K = 1024), `64KiB`, `8MB`,
/// `512m`, `100B`; the unit's case does not matter.
public enum ByteCount {
    /// The number of bytes `text` names, or nil if it is not a count.
    public static func parse(_ text: String) -> Int? {
        // Units are case-insensitive (`512m`, `512MB`, `512MiB` are the same): nobody means millibytes.
        var digits = Substring(text.trimmingSpaces().lowercased())
        var unit = 1
        for (suffixes, scale) in [(["kib", "ki", "kb", "k"], 1 << 10), (["mib", "mi", "mb", "m"], 1 << 20), (["gib", "gi", "gb", "g"], 1 << 30), (["tib", "ti", "tb", "t"], 1 << 40)] {
            if let s = suffixes.first(where: { digits.hasSuffix($0) }) {
                digits = digits.dropLast(s.count)
                unit = scale
                break
            }
        }
        if unit == 1, digits.hasSuffix("b") { digits = digits.dropLast() }
        guard let n = Int(digits), n >= 0 else { return nil }
        let (bytes, overflow) = n.multipliedReportingOverflow(by: unit)
        return overflow ? nil : bytes
    }

    /// `bytes` in the largest binary unit that divides it: `4K`, `256M`, `1000`.
    public static func format(_ bytes: Int) -> String {
        for (suffix, scale) in [("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)] where bytes >= scale && bytes % scale == 0 {
            return "\(bytes / scale)\(suffix)"
        }
        return String(bytes)
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return String(s)
    }
}
