import DMLKernels

/// Chooses which global rows form each global batch, the same way on every rank and for any number of
/// ranks: epoch e visits the rows in the order of a seeded permutation of `0 ..< rows`, cut into batches
/// of `batchSize` (the last one shorter). Each rank then takes the rows of the batch that its shard holds.
///
/// The permutation is a keyed Feistel network with cycle-walking: any position maps to its row in O(1)
/// time and memory, so no rank ever materialises the permutation of the whole data set.
///
/// With `blockRows` R > 1 (`--reproducible`) the permutation moves whole blocks of R consecutive rows: block
/// b is rows b·R ..< (b+1)·R, epoch e visits the full blocks in a seeded permutation (each block's rows in
/// ascending order) and the partial block of the last `rows % R` rows, if any, last; a batch is `batchSize / R`
/// consecutive blocks of that order (`batchSize` a multiple of R, or every row). Every batch is then a set of
/// whole blocks that does not depend on the number of ranks (see `ReproducibleReducer`).
public struct BatchSampler: Sendable {
    public let rows: Int
    public let batchSize: Int
    public let seed: UInt64
    /// False keeps rows in their natural order (full-batch training, where order is irrelevant).
    public let shuffle: Bool
    /// Rows per permuted block: 1 permutes single rows (the default), R > 1 whole blocks of R rows.
    public let blockRows: Int

    public init(rows: Int, batchSize: Int, seed: UInt64, shuffle: Bool = true, blockRows: Int = 1) {
        precondition(rows > 0 && batchSize > 0 && blockRows > 0)
        self.rows = rows
        self.batchSize = Swift.min(batchSize, rows)
        self.seed = seed
        self.shuffle = shuffle
        self.blockRows = blockRows
        precondition(self.batchSize % blockRows == 0 || self.batchSize == rows, "a batch must be whole blocks of \(blockRows) rows")
        var bits = 2
        while (1 << bits) < Swift.max(rows / blockRows, 1) { bits += 1 }
        halfBits = (bits + 1) / 2
    }

    private let halfBits: Int
    /// The blocks the permutation moves (all of them when `blockRows` is 1; the full ones otherwise).
    private var permutedBlocks: Int { rows / blockRows }

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
        let block = position / blockRows
        guard block < permutedBlocks else { return position }  // the partial last block stays last
        let key = CounterRandom.hash(seed, 0x5A3B_1E5, UInt64(epoch))
        var v = UInt64(block)
        repeat { v = feistel(v, key: key) } while v >= UInt64(permutedBlocks)
        return Int(v) * blockRows + position % blockRows
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
        if blockRows > 1 {
            // A block at a time: its rows are consecutive, in ascending order (positions start at a block).
            for p in stride(from: positions.lowerBound, to: positions.upperBound, by: blockRows) {
                let first = row(at: p, epoch: e), n = Swift.min(blockRows, positions.upperBound - p)
                out.append(contentsOf: (first ..< first + n).clamped(to: shard))
            }
            return out
        }
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
