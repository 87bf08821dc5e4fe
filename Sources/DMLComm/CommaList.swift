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
