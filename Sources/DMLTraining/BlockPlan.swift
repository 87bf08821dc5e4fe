import Foundation
import DMLComm
import DMLData
import DMLKernels

/// The block plan of straggler balancing (`--balance`, `BlockChainReducer`): the training rows are cut into `BlockPlan.blocks` fixed blocks, each
/// rank holds a contiguous run of blocks, and at epoch boundaries the runs are moved so that a slower rank
/// holds fewer rows — while the parameters keep the same bits as if nothing had moved.
///
/// Why the bits cannot change: the gradient of a step is summed in one fixed order, block by block from
/// the first to the last, whatever rank holds which block:
/// ```
/// rank 0: P = 0 + g(b0) + g(b1) + …          ─send P→ rank 1: P += g(b5) + g(b6) …  ─→ … ─→ rank p−1: total
/// rank p−1 broadcasts the total (every rank then holds the same bits)
/// ```
/// Each block's gradient `g(b)` is computed from the same rows in the same order by whichever rank holds it
/// (one model call into a zeroed buffer), so moving a block changes who computes it, not what is computed.
/// The order of additions is the global block order, so the result does not even depend on the number of
/// ranks. Cost per step: a chain of p−1 sends of the gradient plus a broadcast (≈ (p+1)·n bytes on the
/// critical path, against the ring's 2n) — a price worth paying when one rank is much slower than the rest.
public struct BlockPlan: Sendable, Equatable {
    /// Rows of the whole training set.
    public let rows: Int
    /// Fixed blocks of rows (the unit that moves between ranks).
    public let blocks: Int
    /// `owners[r] ..< owners[r + 1]`: the blocks rank r holds.
    public private(set) var bounds: [Int]

    /// The even plan: `blocksPerRank` blocks per rank (fewer when there are fewer rows).
    public init(rows: Int, ranks: Int, blocksPerRank: Int = 8) {
        self.rows = rows
        let count = Swift.max(ranks, Swift.min(rows, ranks * blocksPerRank))
        blocks = count
        let even = ShardPlan(rows: count, ranks: ranks)
        bounds = (0..<ranks).map { even.range(of: $0).lowerBound } + [count]
    }

    public var ranks: Int { bounds.count - 1 }

    /// The global rows of block `b`.
    public func rows(ofBlock b: Int) -> Range<Int> { ShardPlan(rows: rows, ranks: blocks).range(of: b) }

    /// The blocks rank `r` holds.
    public func blocks(of r: Int) -> Range<Int> { bounds[r] ..< bounds[r + 1] }

    /// The global rows rank `r` holds.
    public func rowRange(of r: Int) -> Range<Int> {
        let b = blocks(of: r)
        return rows(ofBlock: b.lowerBound).lowerBound ..< rows(ofBlock: b.upperBound - 1).upperBound
    }

    /// A plan whose shares follow the ranks' speeds (`secondsPerRow[r]`: rank r's measured compute time per
    /// row): rank r gets about `rows · speed_r / Σ speed` rows, at least one block. Deterministic in its input.
    public func rebalanced(secondsPerRow: [Double]) -> BlockPlan {
        precondition(secondsPerRow.count == ranks)
        let speeds = secondsPerRow.map { $0 > 0 ? 1 / $0 : 0 }
        let total = speeds.reduce(0, +)
        guard total > 0 else { return self }
        var next = self
        var cumulative = 0.0
        for r in 1..<ranks {
            cumulative += speeds[r - 1] / total
            let target = Int((cumulative * Double(blocks)).rounded())
            // At least one block each, boundaries in order.
            next.bounds[r] = Swift.min(Swift.max(target, next.bounds[r - 1] + 1), blocks - (ranks - r))
        }
        return next
    }
}

extension Dataset {
    /// This rank's rows changed to `newRange` (global rows), fetched from the ranks that hold them now
    /// (`ranges[q]`: rank q's current global rows; `newRanges[q]`: what rank q will hold). Collective: one
    /// message per pair of ranks whose old and new ranges overlap; rows never pass through a third rank.
    public func redistributed(from ranges: [Range<Int>], to newRanges: [Range<Int>], comm: Communicator, tag: Int = 0) throws -> Dataset {
        let me = comm.rank, d = features
        let target = newRanges[me]
        var x = [Float](repeating: 0, count: target.count * d)
        var y = [Float](repeating: 0, count: target.count)
        // Message buffers live outside Swift arrays: they must stay put until every request is complete.
        var buffers: [UnsafeMutableRawBufferPointer] = []
        defer { buffers.forEach { $0.deallocate() } }
        func buffer(_ bytes: Int) -> UnsafeMutableRawBufferPointer {
            let b = UnsafeMutableRawBufferPointer.allocate(byteCount: Swift.max(bytes, 1), alignment: 16)
            buffers.append(b)
            return b
        }
        var requests: [CommRequest] = []
        // Receive what others hold of the new range; copy what this rank holds already.
        var incoming: [(rows: Range<Int>, x: UnsafeMutableRawBufferPointer, y: UnsafeMutableRawBufferPointer)] = []
        for q in 0..<comm.size {
            let overlap = ranges[q].clamped(to: target)
            guard !overlap.isEmpty else { continue }
            if q == me {
                for row in overlap {
                    let from = row - firstRow, to = row - target.lowerBound
                    for j in 0..<d { x[to * d + j] = self.x[from * d + j] }
                    y[to] = self.y[from]
                }
                continue
            }
            let px = buffer(overlap.count * d * 4), py = buffer(overlap.count * 4)
            requests.append(try comm.irecv(UnsafeMutableRawBufferPointer(rebasing: px[0..<(overlap.count * d * 4)]), from: q, tag: tag))
            requests.append(try comm.irecv(UnsafeMutableRawBufferPointer(rebasing: py[0..<(overlap.count * 4)]), from: q, tag: tag + 1))
            incoming.append((overlap, px, py))
        }
        for q in 0..<comm.size where q != me {
            let overlap = newRanges[q].clamped(to: globalRange)
            guard !overlap.isEmpty else { continue }
            let lo = overlap.lowerBound - firstRow, n = overlap.count
            let px = buffer(n * d * 4), py = buffer(n * 4)
            self.x.withUnsafeBytes { px.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[(lo * d * 4)..<((lo + n) * d * 4)])) }
            self.y.withUnsafeBytes { py.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[(lo * 4)..<((lo + n) * 4)])) }
            requests.append(try comm.isend(UnsafeRawBufferPointer(rebasing: px[0..<(n * d * 4)]), to: q, tag: tag))
            requests.append(try comm.isend(UnsafeRawBufferPointer(rebasing: py[0..<(n * 4)]), to: q, tag: tag + 1))
        }
        try comm.waitAll(&requests)
        for part in incoming {
            let to = part.rows.lowerBound - target.lowerBound, n = part.rows.count
            x.withUnsafeMutableBytes { $0.baseAddress!.advanced(by: to * d * 4).copyMemory(from: part.x.baseAddress!, byteCount: n * d * 4) }
            y.withUnsafeMutableBytes { $0.baseAddress!.advanced(by: to * 4).copyMemory(from: part.y.baseAddress!, byteCount: n * 4) }
        }
        return Dataset(features: d, classes: classes, globalRows: globalRows, firstRow: target.lowerBound, x: x, y: y)
    }
}
