import DMLKernels

/// Chooses which global rows form each global batch, the same way on every rank and for any number of
/// ranks: epoch e visits the rows in the order of a seeded permutation of `0 ..< rows`, cut into batches
/// of `batchSize` (the last one shorter). Each rank then takes the rows of the batch that its shard holds.
///
/// The permutation is a keyed Feistel network with cycle-walking: any position maps to its row in O(1)
/// time and memory, so no rank ever materialises the permutation of the whole data set.
public struct BatchSampler: Sendable {
    public let rows: Int
    public let batchSize: Int
    public let seed: UInt64
    /// False keeps rows in their natural order (full-batch training, where order is irrelevant).
    public let shuffle: Bool

    public init(rows: Int, batchSize: Int, seed: UInt64, shuffle: Bool = true) {
        precondition(rows > 0 && batchSize > 0)
        self.rows = rows
        self.batchSize = Swift.min(batchSize, rows)
        self.seed = seed
        self.shuffle = shuffle
        var bits = 2
        while (1 << bits) < rows { bits += 1 }
        halfBits = (bits + 1) / 2
    }

    private let halfBits: Int

    public var stepsPerEpoch: Int { (rows + batchSize - 1) / batchSize }

    /// The epoch (0-based) that global step `step` falls in.
    public func epoch(ofStep step: Int) -> Int { step / stepsPerEpoch }

    /// The positions (in the epoch's order) that global step `step`'s batch covers.
    public func positions(ofStep step: Int) -> Range<Int> {
        let k = step % stepsPerEpoch
        return (k * batchSize) ..< Swift.min(rows, (k + 1) * batchSize)
    }

    /// The number of rows in global step `step`'s batch, over all ranks.
    public func globalBatchRows(ofStep step: Int) -> Int { positions(ofStep: step).count }

    /// The global row at `position` of epoch `epoch`'s order.
    public func row(at position: Int, epoch: Int) -> Int {
        guard shuffle else { return position }
        let key = CounterRandom.hash(seed, 0x5A3B_1E5, UInt64(epoch))
        var v = UInt64(position)
        repeat { v = feistel(v, key: key) } while v >= UInt64(rows)
        return Int(v)
    }

    /// The global rows of step `step`'s batch that lie in `shard`, in batch order.
    public func localRows(ofStep step: Int, in shard: Range<Int>) -> [Int] {
        let e = epoch(ofStep: step)
        let positions = positions(ofStep: step)
        if !shuffle {
            let r = positions.clamped(to: shard)
            return Array(r)
        }
        var out: [Int] = []
        out.reserveCapacity(positions.count * shard.count / Swift.max(rows, 1) + 8)
        for p in positions {
            let r = row(at: p, epoch: e)
            if shard.contains(r) { out.append(r) }
        }
        return out
    }

    /// A 4-round balanced Feistel permutation of `[0, 4^halfBits)`.
    private func feistel(_ v: UInt64, key: UInt64) -> UInt64 {
        let mask: UInt64 = (1 << UInt64(halfBits)) - 1
        var left = v >> UInt64(halfBits), right = v & mask
        for round in 0..<4 {
            let f = CounterRandom.hash(key, UInt64(round), right) & mask
            (left, right) = (right, left ^ f)
        }
        return (left << UInt64(halfBits)) | right
    }
}
