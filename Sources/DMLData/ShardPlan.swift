/// How `rows` global rows are split into contiguous shards over `ranks` ranks: rank r holds
/// `[r·rows/p, (r+1)·rows/p)`, so shard sizes differ by at most one row.
public struct ShardPlan: Equatable, Sendable {
    public let rows: Int
    public let ranks: Int

    public init(rows: Int, ranks: Int) {
        precondition(rows >= 0 && ranks >= 1)
        self.rows = rows
        self.ranks = ranks
    }

    /// The global rows rank `r` holds.
    public func range(of r: Int) -> Range<Int> {
        (r * rows / ranks) ..< ((r + 1) * rows / ranks)
    }

    /// The rank that holds global row `row`.
    public func owner(of row: Int) -> Int {
        // The shard boundaries are floor(r·rows/p); start from the proportional guess and correct it.
        var r = Swift.min(ranks - 1, row * ranks / Swift.max(rows, 1))
        while row < range(of: r).lowerBound { r -= 1 }
        while row >= range(of: r).upperBound { r += 1 }
        return r
    }
}
