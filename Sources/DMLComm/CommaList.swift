/// The one parser of the comma-separated lists that command lines and environment variables take
/// (`--hidden 256,128`, `--lr-search 0.01,0.1`, `--sizes 4K,1M`, `--algorithms ring,shm`, `--models`,
/// `DML_ALLREDUCE_AUTO`, `DML_FAULT`): items are trimmed of spaces; an empty list or an empty item is
/// refused (nil), so `256,,128` and a trailing comma are errors rather than silently dropped items.
public enum CommaList {
    /// The items of `text`, or nil when the list or an item is empty.
    public static func items(_ text: String) -> [String]? {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingSpaces() }
        guard !parts.isEmpty, parts.allSatisfy({ !$0.isEmpty }) else { return nil }
        return parts
    }

    /// Every item of `text` converted by `item`, or nil when the list is malformed or any item does not
    /// convert.
    public static func parse<T>(_ text: String, _ item: (String) -> T?) -> [T]? {
        guard let parts = items(text) else { return nil }
        var out: [T] = []
        for p in parts {
            guard let v = item(p) else { return nil }
            out.append(v)
        }
        return out
    }

    /// Positive integers (`--hidden`, `--sizes`).
    public static func positiveIntegers(_ text: String) -> [Int]? {
        parse(text) { Int($0).flatMap { $0 > 0 ? $0 : nil } }
    }
}

extension Substring {
    func trimmingSpaces() -> String { String(self).trimmingSpaces() }
}

/// Command-line arguments as a user means them.
public enum CommandLineValues {
    /// `--lr -1` becomes `--lr=-1`: a parser would otherwise take `-1` for a flag and say the value is
    /// missing, hiding the real reason (`--lr must be positive`). Only an option (`--name`, no `=`) followed by
    /// a negative number is joined; `--` ends the rewriting (what follows belongs to another program).
    public static func joiningNegativeNumbers(_ arguments: [String]) -> [String] {
        var out: [String] = []
        var i = 0
        while i < arguments.count {
            let a = arguments[i]
            if a == "--" { out += arguments[i...]; break }
            if a.hasPrefix("--"), !a.contains("="), i + 1 < arguments.count, isNegativeNumber(arguments[i + 1]) {
                out.append(a + "=" + arguments[i + 1])
                i += 2
                continue
            }
            out.append(a)
            i += 1
        }
        return out
    }

    static func isNegativeNumber(_ s: String) -> Bool {
        guard s.hasPrefix("-"), s.count > 1 else { return false }
        let rest = s.dropFirst()
        return rest.first.map { $0.isNumber || $0 == "." } == true && Double(s) != nil
    }
}
