import Foundation
import DMLComm
import DMLData
import DMLKernels

/// Which coordinates of the parameters each rank updates and keeps optimizer state for. `replicated`: every
/// rank all of them (every reducer but the sharded one). A sharded update (`ShardedReducer`) cuts the reduce
/// buffer `[gradient | loss sum | row count]` into `pieces` (one, or the MLP's layer buckets and the tail),
/// each reduced by its own ring, and rank r owns the ring's chunk r+1 of every piece (`RingReduceScatter`),
/// clipped to the gradient: a pure function of (pieces, count, rank, p), so any rank can compute any other's.
public struct UpdateShards: Sendable, Equatable {
    /// The number of parameters.
    public let count: Int
    /// Ranges of `0..<count+2` reduced apart, in order, tiling it; empty for `replicated`.
    public let pieces: [Range<Int>]
    public let parts: Int

    /// Every rank updates every coordinate.
    public static func replicated(count: Int) -> UpdateShards { UpdateShards(count: count, pieces: [], parts: 1) }

    public init(count: Int, pieces: [Range<Int>], parts: Int) {
        self.count = count
        self.pieces = pieces
        self.parts = parts
    }

    /// True when every rank owns everything.
    public var isReplicated: Bool { pieces.isEmpty }

    /// The gradient coordinates rank `rank` owns: sorted (pieces may run top layer first), disjoint; over all
    /// ranks they tile `0..<count`.
    public func owned(rank: Int) -> [Range<Int>] {
        if isReplicated { return [0..<count] }
        return pieces.compactMap { piece in
            let c = RingReduceScatter.ownedChunk(count: piece.count, rank: rank, parts: parts)
            let lo = piece.lowerBound + c.lowerBound, hi = Swift.min(piece.lowerBound + c.upperBound, count)
            return lo < hi ? lo ..< hi : nil
        }.sorted { $0.lowerBound < $1.lowerBound }
    }

    /// The optimizer state in the whole layout (`copies × count`, as a replicated optimizer holds it and a
    /// checkpoint stores it) from this rank's compact `state`. Collective for a sharded update (one allgather
    /// of every rank's state: the whole state on every rank, transiently); for `replicated` the state itself.
    public func wholeState(_ state: [Float], copies: Int, comm: Communicator) throws -> [Float] {
        if isReplicated || copies == 0 { return state }
        let all = try comm.allgathered(state)
        var whole = [Float](repeating: 0, count: copies * count)
        for (rank, theirs) in all.enumerated() {
            precondition(theirs.count == copies * ownedCount(rank: rank), "rank \(rank)'s optimizer state holds \(theirs.count) values")
            place(theirs, rank: rank, copies: copies, into: &whole)
        }
        return whole
    }

    /// The number of coordinates rank `rank` owns.
    public func ownedCount(rank: Int) -> Int { owned(rank: rank).reduce(0) { $0 + $1.count } }

    /// Writes rank `rank`'s compact state (`copies × ownedCount(rank:)` values) at its coordinates of `whole`
    /// (`copies × count`).
    public func place(_ compact: [Float], rank: Int, copies: Int, into whole: inout [Float]) {
        var at = 0
        for c in 0..<copies {
            for r in owned(rank: rank) {
                whole[(c * count + r.lowerBound) ..< (c * count + r.upperBound)] = compact[at ..< at + r.count]
                at += r.count
            }
        }
    }

    /// Rank `rank`'s compact state cut from the whole layout's `copies × count` values (a checkpoint's, written
    /// by any number of ranks, sharded or not). Cost: O(copies × owned).
    public func ownedState(_ whole: [Float], copies: Int, rank: Int) -> [Float] {
        if isReplicated { return whole }
        var out: [Float] = []
        for c in 0..<copies { for r in owned(rank: rank) { out += whole[(c * count + r.lowerBound) ..< (c * count + r.upperBound)] } }
        return out
    }
}

/// `--shard-update` (ZeRO stages 1–2, as PyTorch's `ZeroRedundancyOptimizer`): the ring allreduce cut in its
/// two halves with the update between them. Per step:
/// ```
/// reduce-scatter each piece (ring order; on the 16-bit wire under --compress; under --overlap the MLP's buckets on the communication thread as the
///   backward pass completes them, the tail after the gate) ─▶ rank r holds its owned chunks of Σ gradient reduced
///   ─▶ one allreduce of 3 Doubles: [loss sum, row count, non-finite owned values]  (the global pieces)
///   ─▶ scale the owned chunks by 1/rows ─▶ the trainer's guard and update (owned coordinates only,
///      optimizer state for those only: `UpdateShards`) ─▶ allgather the updated parameters (`gather`)
/// ```
/// Invariants: every owned coordinate is reduced in the ring's order over the same pieces the unsharded
/// reducer would use (one buffer, or the MLP's buckets then the tail, `BucketedReducer.buckets`), scaled by the
/// same Float, and updated by the same rule with the same λ, so the parameters have the bits of the unsharded
/// run over `--allreduce ring` at the same np, on every rank. The loss, rows and non-finite flag are exact
/// (each comes from its one owner, the others add +0).
///
/// Cost per step: the bytes of one ring allreduce of the buffer (the reduce-scatter and the allgather are its
/// two halves: `2(p−1)/p · n` bytes sent per rank), plus one 24-byte allreduce; the update runs over n/p
/// coordinates per rank, and the optimizer state is `copies × n/p` floats per rank instead of `copies × n`.
final class ShardedReducer: GradientReducer {
    let comm: Communicator
    let count: Int
    let collectiveTimeout: Double
    let shards: UpdateShards
    private let ring: RingReduceScatter
    private let sums: ReduceBuffer
    private let mine: [Range<Int>]
    private var nonFinite = false
    /// `--overlap`: the piece (bucket) that stage i of the backward pass completes, if any; nil: no overlap.
    private let closedByStage: [Int?]?
    private let overlapped: OverlappedBuckets
    private var stepNumber = 0
    private let compressed: CompressedAllreduce?

    /// `pieces`: the ranges of `0..<count+2` reduced apart (nil: one piece, the whole buffer), the tail last.
    /// `closedByStage` (the MLP's buckets under `--overlap`): each piece but the tail is reduce-scattered on the
    /// communication thread as soon as the backward pass has completed it, in the same order as without.
    /// `compressed` (`--compress`, the hook's algorithm): the gradient, divided by the batch's rows first, is
    /// reduce-scattered on its 16-bit wire (with its error feedback), and the loss and rows by the exact ring, as
    /// `CompressedAllreduce` over `--allreduce ring` does.
    init(comm: Communicator, count: Int, pieces: [Range<Int>]?, closedByStage: [Int?]? = nil, compressed: CompressedAllreduce? = nil,
         collectiveTimeout: Double) {
        self.comm = comm
        self.count = count
        self.collectiveTimeout = collectiveTimeout
        self.compressed = compressed
        shards = UpdateShards(count: count, pieces: compressed != nil ? [0 ..< count, count ..< count + 2] : pieces ?? [0 ..< count + 2],
                              parts: comm.size)
        mine = shards.owned(rank: comm.rank)
        ring = RingReduceScatter(comm: comm)
        sums = ReduceBuffer(count: count + 2)
        self.closedByStage = closedByStage
        overlapped = OverlappedBuckets(comm: comm, collectiveTimeout: collectiveTimeout)
    }

    var updateShards: UpdateShards? { shards }
    var wantsStages: Bool { closedByStage != nil }
    private var phase: String { "the gradient reduce-scatter of step \(stepNumber)" }

    private func reduceScatter(_ piece: Range<Int>) throws {
        try ring.reduceScatter(UnsafeMutableBufferPointer(rebasing: sums.buffer[piece]))
    }

    func stageReady(_ stage: Int) {
        guard let b = closedByStage?[stage] else { return }
        let piece = shards.pieces[b]
        overlapped.start { [unowned self] in try reduceScatter(piece) }
    }

    func attach(_ train: Dataset) throws -> Dataset {
        try ring.prepare()
        return train
    }

    func begin(step number: Int, holding: Range<Int>, rows: (Range<Int>) -> [Int]) -> [Contribution] {
        stepNumber = number
        sums.buffer.initialize(repeating: 0)
        if closedByStage != nil { overlapped.begin(phase: phase) }
        return [Contribution(rows: rows(holding), buffer: sums.base)]
    }

    /// The owner of tail element `i` (`count` or `count + 1`) contributes it; every other rank +0.
    private func owns(_ i: Int) -> Bool {
        shards.pieces.contains { piece in
            piece.contains(i) && RingReduceScatter.ownedChunk(count: piece.count, rank: comm.rank, parts: comm.size)
                .contains(i - piece.lowerBound)
        }
    }

    func finish(step number: Int, globalRows: Int, gate: () throws -> Void) throws -> UnsafeMutableBufferPointer<Float> {
        // Overlapped: every piece but the tail is already on its way (in the same order as without overlap).
        let overlapping = closedByStage != nil
        if overlapping { try overlapped.wait() }
        try gate()
        let whole = sums.buffer
        if let compressed { return try finishCompressed(compressed, globalRows: globalRows) }
        let globals: [Double] = try comm.watched(phase, seconds: collectiveTimeout) {
            for piece in overlapping ? shards.pieces.suffix(1) : shards.pieces[...] { try reduceScatter(piece) }
            let bad = mine.reduce(0) { n, r in n + whole[r].reduce(0) { $0 + ($1.isFinite ? 0 : 1) } }
            return try comm.allreduced([owns(count) ? Double(whole[count]) : 0, owns(count + 1) ? Double(whole[count + 1]) : 0,
                                        Double(bad)], op: .sum)
        }
        whole[count] = Float(globals[0])
        whole[count + 1] = Float(globals[1])
        nonFinite = globals[2] > 0
        let scale = 1 / whole[count + 1]
        for r in mine { Vector.scale(scale, whole.baseAddress! + r.lowerBound, r.count) }
        return whole
    }

    /// `--compress`: divide by the rows, error feedback, the 16-bit reduce-scatter of the gradient, the exact ring
    /// allreduce of the loss and rows (its two halves), and the count of non-finite owned values.
    private func finishCompressed(_ compressed: CompressedAllreduce, globalRows: Int) throws -> UnsafeMutableBufferPointer<Float> {
        let whole = sums.buffer
        let head = UnsafeMutableBufferPointer(rebasing: whole[0..<count]), tail = UnsafeMutableBufferPointer(rebasing: whole[count...])
        Vector.scale(1 / Float(globalRows), whole.baseAddress!, count)
        if compressed.errorFeedback { compressed.feedBack(head) }
        let bad: Double = try comm.watched(phase, seconds: collectiveTimeout) {
            try ring.reduceScatter(head, format: compressed.compressed.format)
            try ring.reduceScatter(tail)
            try ring.allgather(tail)
            let bad = mine.reduce(0) { n, r in n + whole[r].reduce(0) { $0 + ($1.isFinite ? 0 : 1) } }
            return try comm.allreduced(Double(bad), op: .sum)
        }
        nonFinite = bad > 0
        return whole
    }

    /// No rank holds the whole gradient: `finish` counted every rank's non-finite owned values.
    func gradientIsNonFinite(_ reduced: UnsafeMutableBufferPointer<Float>) -> Bool { nonFinite }

    /// Copies each rank's updated owned parameters to every rank: per piece, an allgather of the ring's chunks
    /// (the piece holding the tail goes through the reduce buffer, whose length the chunks are cut from).
    func gather(parameters: UnsafeMutableBufferPointer<Float>, step number: Int) throws {
        try comm.watched("the parameter allgather of step \(number)", seconds: collectiveTimeout) {
            try shards.allgather(parameters: parameters, through: sums.buffer, ring: ring, mine: mine)
        }
    }
}

extension UpdateShards {
    /// Copies each rank's owned coordinates of `parameters` to every rank: per piece, an allgather of the ring's
    /// chunks; the piece holding the tail goes through `whole` (a buffer of `count + 2`, whose length that
    /// piece's chunks are cut from; its contents are overwritten). `mine`: `owned(rank:)` of this rank.
    /// Collective. Cost: the second half of a ring allreduce of the parameters, `(p−1)/p · n` values per rank.
    func allgather(parameters: UnsafeMutableBufferPointer<Float>, through whole: UnsafeMutableBufferPointer<Float>,
                   ring: RingReduceScatter, mine: [Range<Int>]) throws {
        for piece in pieces where piece.lowerBound < count {
            if piece.upperBound <= count {
                try ring.allgather(UnsafeMutableBufferPointer(rebasing: parameters[piece]))
            } else {
                let inner = piece.lowerBound ..< count
                for r in mine where r.overlaps(inner) { whole[r] = parameters[r] }
                try ring.allgather(UnsafeMutableBufferPointer(rebasing: whole[piece]))
                parameters[inner] = whole[inner]
            }
        }
    }
}
