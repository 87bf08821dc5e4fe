import DMLComm
import DMLData
import DMLKernels

extension Dataset {
    /// This rank's rows changed to `targets[rank]` (global rows; `targets[q]`: what rank q will hold), dense or
    /// CSR: `moved` for dense rows; CSR rows travel as one personalised all-to-all (`Communicator.exchanged`
    /// over `moves`) of packed words per row — its non-zero count, its column indices, its values' bits, its
    /// label's bits — so each row keeps its exact non-zeros and the global row order is kept. Collective: an
    /// allgather of every rank's current range (none more when nothing moves), then the exchange. Memory: the
    /// rows this rank sends and receives, 8 bytes a non-zero plus 8 a row.
    func movedIntoBlocks(to targets: [Range<Int>], comm: Communicator, via moves: Communicator) throws -> Dataset {
        guard let csr else { return try moved(to: targets, comm: comm, via: moves) }
        precondition(stream == nil, "rows moved into whole blocks are held in memory")
        let lows = try comm.allgathered(Int64(globalRange.lowerBound))
        let highs = try comm.allgathered(Int64(globalRange.upperBound))
        let ranges = zip(lows, highs).map { Int($0) ..< Int($1) }
        if ranges == targets { return self }
        var outgoing = [[UInt32]](repeating: [], count: comm.size)
        for q in 0..<comm.size {
            for row in targets[q].clamped(to: globalRange) {
                let local = row - firstRow, lo = csr.rowStarts[local], hi = csr.rowStarts[local + 1]
                outgoing[q].append(UInt32(hi - lo))
                for k in lo..<hi { outgoing[q].append(UInt32(bitPattern: csr.indices[k])) }
                for k in lo..<hi { outgoing[q].append(csr.values[k].bitPattern) }
                outgoing[q].append(y[local].bitPattern)
            }
        }
        let incoming = try moves.exchanged(outgoing)
        var starts = [0], indices: [Int32] = [], values: [Float] = [], labels: [Float] = []
        // The senders' parts of the new range are disjoint runs of it: in the order of their current rows.
        for q in (0..<comm.size).sorted(by: { ranges[$0].lowerBound < ranges[$1].lowerBound }) {
            let words = incoming[q]
            var at = 0
            while at < words.count {
                let n = Int(words[at])
                indices.append(contentsOf: words[(at + 1)..<(at + 1 + n)].map { Int32(bitPattern: $0) })
                values.append(contentsOf: words[(at + 1 + n)..<(at + 1 + 2 * n)].map { Float(bitPattern: $0) })
                labels.append(Float(bitPattern: words[at + 1 + 2 * n]))
                starts.append(indices.count)
                at += 2 + 2 * n
            }
        }
        let me = targets[comm.rank]
        precondition(labels.count == me.count, "the moved rows cover this rank's new range")
        return Dataset(features: features, classes: classes, globalRows: globalRows, firstRow: me.lowerBound,
                       csr: CSRMatrix(columns: features, rowStarts: starts, indices: indices, values: values), y: labels)
    }

    /// The global rows rank `r` of `ranks` holds when every rank holds whole blocks of `blockRows` global rows
    /// (`ShardPlan` over the blocks; the last block may be partial).
    static func wholeBlockRange(of r: Int, ranks: Int, rows: Int, blockRows: Int) -> Range<Int> {
        let blocks = ShardPlan(rows: (rows + blockRows - 1) / blockRows, ranks: ranks).range(of: r)
        return Swift.min(rows, blocks.lowerBound * blockRows) ..< Swift.min(rows, blocks.upperBound * blockRows)
    }
}
