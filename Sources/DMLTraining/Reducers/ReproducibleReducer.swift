import Foundation
import DMLComm
import DMLData
import DMLKernels
import DMLModels

/// `--reproducible`: the mean gradient, loss and row count of a step have the same bits for any number of
/// ranks, and whichever rank holds which rows.
///
/// Why the default path cannot: a rank computes the gradient of its rows of the batch in one model call
/// (gemm), whose rounding depends on exactly which rows are in the call, and the ranks' sums are then added
/// in an order that depends on np. Two things fix it:
/// - **Leaves that do not depend on np.** The rows are cut into fixed blocks of `blockRows` (64) global rows;
///   the sampler permutes whole blocks (`BatchSampler(blockRows:)`), so a batch is a set of whole blocks, and
///   at `attach` the rows move so that every rank holds whole blocks (`ShardPlan` over blocks, rows moved as
///   `--balance` moves them). A leaf is one block of the batch: one model call over its rows in ascending
///   order (or its rows' part of one pass, `LeafGradientModel`: the same bits) — on whichever rank computes it.
/// - **A sum that does not depend on the order.** Each leaf's gradient (and its loss) is turned into
///   fixed-point integers with one scale shared by the whole batch, 2^k with k fixed by the *bucket* of the
///   batch's largest |value| M (the least multiple b of 4 with M < 2^b, `bucket`), so that the sum of all the
///   batch's leaves fits in an Int64; the integers are summed exactly — locally, then across the ranks (`sum`) — so
///   any order and any grouping give the same integers, and the mean is formed from them in Double and rounded
///   once to Float.
/// - **One sum per step, almost always.** The scale needs the global M's bucket, which a rank learns
///   only from the others. The reducer guesses it: last step's buckets (the same on every rank, as they came
///   from collectives). It quantises with the guess while finding its own maxima (one pass, `FixedPoint.add`),
///   and the Int64 sum carries four more integers: how many ranks' maxima lie above the guessed
///   buckets, and how many in them. None above and one in: the batch's buckets are the guessed ones, and the
///   result is what the exact path would give. Otherwise (the first step after attach or a resume, a bucket
///   change, a non-finite value) the exact path runs: an allreduce-max of 2 Doubles, quantise, the Int64
///   sum again. The guess changes the time, never the bits.
/// - **Balanced leaves, one pass.** Any rank may compute any leaf (its bits and the exact sum do not care), so
///   each step every rank computes an even share of the batch's leaves (`LeafBalance`), the rows of those it does
///   not hold fetched during the previous step's collectives (`LeafExchange`; from the second step after attach,
///   and only for a model whose gradient is heavy next to its rows, `balances`); and it computes its leaves in one
///   forward and backward pass (`LeafGradientModel`: per leaf only ∂W, ∂b and the loss, the same bits).
///
/// Precision: a leaf value is truncated to a multiple of 2^−k, an absolute error below 4·M·L·2^−62·2^3 for the
/// batch's largest |value| M and L leaves (the bucket costs up to 3 of the binade's bits); only a coordinate
/// more than about 2^33/L times smaller than M is held with fewer than Float32's 24 bits. A non-finite value
/// anywhere makes the whole result NaN on every rank (the divergence guard stops).
///
/// Cost per step, n gradient values, B rows, L = B/64 leaves, p ranks: ⌈L/p⌉ leaves on the busiest rank (without
/// the balance, the most a rank holds: 2.75 instead of 2 at np 2, L = 4) in one model pass whose row-summing
/// gemms are per leaf; one pass over each leaf buffer (quantise and max together; the kernel threads split it in
/// fixed runs), no zeroing (the leaves are written); the rows of the leaves moved (Σ max(0, held − share) leaves
/// of 64·(features + 1) Floats, overlapped with the collectives); then a ring reduce-scatter of n + 6 Int64, a
/// conversion of this rank's n/p, and a ring allgather of n + 6 Floats: 12·n·(p−1)/p bytes sent per rank, 1.5×
/// the default Float32 ring's 8·n·(p−1)/p (flat in p), in the ring's 2(p−1) messages. A step whose bucket
/// changed pays a max pass, an allreduce of 2 Doubles and the sum again. With `--shard-update` (or one rank) the
/// sum is one Int64 allreduce of n + 6 values.
final class ReproducibleReducer: GradientReducer {
    static let blockRows = Reproducible.blockRows

    let comm: Communicator
    let count: Int
    let collectiveTimeout: Double
    private var scratch = ReduceBuffer(count: 0)
    private var leaves: [(buffer: UnsafeMutablePointer<Float>, rows: Int)] = []
    private var integers: [Int64]
    /// The scale buckets of the last step that had finite maxima (nil before the first and after a non-finite
    /// one): `finish`'s guess. It decides only whether a step needs the second collective, never the bits.
    private(set) var guess: (gradient: Int, loss: Int)?
    /// Whether the last `finish` found a value that is not finite (its result is then NaN on every rank).
    private var nonFinite = false
    /// Steps that took the exact path (no guess, or a wrong one): two more collectives each.
    private(set) var rescaledSteps = 0
    private let result: ReduceBuffer
    /// `finish`'s result: the first `count + 2` values of `result`.
    private var reduced: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: result.base, count: count + 2) }
    private let moves: PrivateCommunicator
    /// The leaf balance's row moves (`attach`: more than one rank and `balances`); nil: each rank computes the
    /// leaves it holds.
    private var exchange: LeafExchange?
    private var sampler: BatchSampler?
    /// Leaves this rank computed for their holders (`LeafExchange.received`); 0 when unbalanced.
    var receivedLeaves: Int { exchange?.received ?? 0 }

    /// `--shard-update`: rank r updates only its `UpdateShards` slice (optimizer state for it alone) and the
    /// parameters are then allgathered. Every rank holds the same exact mean gradient, and the update is
    /// element-wise, so the bits are those of the unsharded reproducible run whatever the slices are. Cost: the
    /// Int64 allreduce as unsharded, plus the allgather of the parameters; optimizer state 1/p per rank.
    let shards: UpdateShards?
    private let ring: RingReduceScatter
    private let mine: [Range<Int>]

    init(comm: Communicator, count: Int, collectiveTimeout: Double, sharded: Bool = false) {
        self.comm = comm
        self.count = count
        self.collectiveTimeout = collectiveTimeout
        shards = sharded ? UpdateShards(count: count, pieces: [0 ..< count + 2], parts: comm.size) : nil
        mine = shards?.owned(rank: comm.rank) ?? []
        ring = RingReduceScatter(comm: comm)
        integers = [Int64](repeating: 0, count: count + 6)
        // The mean, and the 4 guess counters after it (the ring's Float allgather carries them).
        result = ReduceBuffer(count: count + 6)
        moves = PrivateCommunicator(comm)
    }

    /// The global rows rank `r` of `ranks` holds: whole blocks, `ShardPlan` over the blocks.
    static func rowRange(of r: Int, ranks: Int, rows: Int) -> Range<Int> {
        let blocks = ShardPlan(rows: (rows + blockRows - 1) / blockRows, ranks: ranks).range(of: r)
        return Swift.min(rows, blocks.lowerBound * blockRows) ..< Swift.min(rows, blocks.upperBound * blockRows)
    }

    /// Moves this rank's rows so that every rank holds whole blocks. Collective.
    var updateShards: UpdateShards? { shards }

    /// Sharded: each rank's updated slice to every rank (`UpdateShards.allgather`). Collective.
    func gather(parameters: UnsafeMutableBufferPointer<Float>, step number: Int) throws {
        guard let shards else { return }
        try comm.watched("the parameter allgather of step \(number)", seconds: collectiveTimeout) {
            try shards.allgather(parameters: parameters, through: reduced, ring: ring, mine: mine)
        }
    }

    func attach(_ train: Dataset) throws -> Dataset {
        if shards != nil { try ring.prepare() }
        precondition(!train.isSparse && !train.isStreamed, "--reproducible moves dense rows held in memory (JobConfiguration.conflict)")
        let targets = (0..<comm.size).map { Self.rowRange(of: $0, ranks: comm.size, rows: train.globalRows) }
        let moved = try train.moved(to: targets, comm: comm, via: try moves.get())
        if comm.size > 1, !moved.isSparse, !moved.isStreamed, Self.balances(count: count, features: moved.features) {
            exchange = LeafExchange(comm: try moves.get(), train: moved, starts: targets.map(\.lowerBound) + [moved.globalRows])
        }
        return moved
    }

    func plan(_ sampler: BatchSampler) { self.sampler = sampler }

    /// Whether the leaves are balanced over the ranks (`LeafBalance`): when a leaf's model call costs more than
    /// moving its rows — a gradient of at least `balanceRatio` values per value of a row, so at least that many
    /// flops per byte moved. The MLP 784→256→10 has 260 (balanced), softmax 784→10 has 10 and logistic
    /// regression 1 (computed where held: moving 64 rows would cost about what computing them does).
    static func balances(count: Int, features: Int) -> Bool { count >= balanceRatio * (features + 1) }
    static let balanceRatio = 32

    /// The leaves of a batch (its rows in batch order): runs of one block each.
    static func leaves(_ rows: [Int]) -> [[Int]] {
        var groups: [[Int]] = []
        var start = 0
        for i in rows.indices.dropFirst() where rows[i] / blockRows != rows[start] / blockRows {
            groups.append(Array(rows[start..<i]))
            start = i
        }
        if !rows.isEmpty { groups.append(Array(rows[start...])) }
        return groups
    }

    /// This rank's leaves of the step, as one group: its share of the batch's leaves with their rows gathered
    /// (`LeafExchange`, planned in the previous step's `finish`), or — at the first step, or unbalanced — one
    /// leaf per block of the batch that it holds (the batch's rows in `holding`, in batch order).
    func begin(step number: Int, holding: Range<Int>, rows: (Range<Int>) -> [Int]) -> [Contribution] {
        let n = count + 2
        let groups: [[Int]], batch: Batch?
        if let exchange, exchange.planned == number {
            (groups, batch) = (exchange.leaves.map(\.rows), exchange.gatherOwn())
        } else {
            (groups, batch) = (Self.leaves(rows(holding)), nil)
        }
        if scratch.count < groups.count * n { scratch = ReduceBuffer(count: groups.count * n) }
        leaves = []
        var at = 0
        let cut = groups.enumerated().map { i, rows in
            let g = scratch.base + i * n
            leaves.append((g, rows.count))
            defer { at += rows.count }
            return GradientLeaf(rows: at ..< at + rows.count, gradient: g)
        }
        guard let first = cut.first else { return [] }
        return [Contribution(rows: groups.flatMap { $0 }, buffer: first.gradient, leaves: cut, batch: batch)]
    }

    func finish(step number: Int, globalRows: Int, gate: () throws -> Void) throws -> UnsafeMutableBufferPointer<Float> {
        try gate()
        // The next step's leaf moves travel during this step's collectives, and are complete when it returns.
        if let exchange, let sampler {
            try exchange.post(step: number + 1, batch: Self.leaves(sampler.localRows(ofStep: number, in: 0..<exchange.train.globalRows)))
        }
        let mean = try reduce(step: number, globalRows: globalRows)
        if let exchange {
            try comm.watched("the row moves for step \(number + 1)", seconds: collectiveTimeout) { try exchange.complete() }
        }
        return mean
    }

    /// `finish` after the gate: the exact sum of the leaves, on every rank.
    private func reduce(step number: Int, globalRows: Int) throws -> UnsafeMutableBufferPointer<Float> {
        let p = count, n = count + 2
        nonFinite = false
        let leafCount = (globalRows + Self.blockRows - 1) / Self.blockRows
        // The guess: the last step's scale buckets. Quantise with them while finding the maxima (one pass), and let
        // the Int64 sum also count the ranks whose maxima lie above and in the guessed buckets.
        if let guess {
            let (kGradient, kLoss) = (Self.exponent(bucket: guess.gradient, leaves: leafCount), Self.exponent(bucket: guess.loss, leaves: leafCount))
            var largest = (0.0, 0.0)
            integers.withUnsafeMutableBufferPointer { q in
                largest = quantise(into: q, kGradient, kLoss)
                let (bGradient, bLoss) = (Self.bucket(largest.0), Self.bucket(largest.1))
                // Above the guess, this rank's integers are meaningless (clamped, wrapped): send zeros, so that
                // no sum overflows; the step is redone anyway.
                if bGradient > guess.gradient { q.baseAddress!.update(repeating: 0, count: p) }
                if bLoss > guess.loss { q[p] = 0 }
                q[n] = bGradient > guess.gradient ? 1 : 0
                q[n + 1] = bGradient == guess.gradient ? 1 : 0
                q[n + 2] = bLoss > guess.loss ? 1 : 0
                q[n + 3] = bLoss == guess.loss ? 1 : 0
            }
            let (whole, counts) = try sum(step: number, kGradient, kLoss, globalRows: globalRows)
            // No rank above and one in the bucket: the batch's buckets are the guessed ones, so are its scales.
            if counts[0] == 0, counts[1] > 0, counts[2] == 0, counts[3] > 0 { return whole }
        }
        // No guess, or a wrong one: the batch's largest |gradient| and |loss| over every leaf (a max is exact in
        // any order; +infinity when any value is not finite) from an allreduce-max, then quantise and sum.
        rescaledSteps += 1
        var local = [0.0, 0.0]
        for leaf in leaves {
            local[0] = Swift.max(local[0], Self.largestMagnitude(leaf.buffer, p))
            local[1] = Swift.max(local[1], Self.largestMagnitude(leaf.buffer + p, 1))
        }
        let largest = try comm.watched("the gradient scale of step \(number)", seconds: collectiveTimeout) {
            try comm.allreduced(local, op: .max)
        }
        guard largest.allSatisfy({ $0.isFinite }) else {
            guess = nil
            nonFinite = true
            let whole = reduced
            whole.initialize(repeating: .nan)
            whole[p + 1] = Float(globalRows)
            return whole
        }
        let buckets = (gradient: Self.bucket(largest[0]), loss: Self.bucket(largest[1]))
        guess = buckets
        let (kGradient, kLoss) = (Self.exponent(bucket: buckets.gradient, leaves: leafCount), Self.exponent(bucket: buckets.loss, leaves: leafCount))
        integers.withUnsafeMutableBufferPointer { q in _ = quantise(into: q, kGradient, kLoss) }
        return try sum(step: number, kGradient, kLoss, globalRows: globalRows).mean
    }

    /// The divergence guard's question, answered without a scan: the mean is NaN exactly when some leaf held a
    /// value that is not finite (the exact path's maxima, the same on every rank); otherwise every |mean| is at
    /// most the largest |leaf value| (a sum of L truncated values over at least L rows), a finite Float.
    func gradientIsNonFinite(_ reduced: UnsafeMutableBufferPointer<Float>) -> Bool { nonFinite }

    /// `q` = [Σ leaves' gradient · 2^kGradient | Σ losses · 2^kLoss | Σ rows | 0, 0, 0, 0], each value truncated
    /// to an integer (`FixedPoint.sum`: q written once, the leaves read once), and the largest |gradient| and
    /// |loss| of the leaves, found in the same passes.
    private func quantise(into q: UnsafeMutableBufferPointer<Int64>, _ kGradient: Int, _ kLoss: Int) -> (Double, Double) {
        let p = count
        let gradient = FixedPoint.sum(leaves.map { UnsafePointer($0.buffer) }, p, exponent: kGradient, into: q.baseAddress!)
        var loss = 0.0
        q.baseAddress!.advanced(by: p).update(repeating: 0, count: q.count - p)
        for leaf in leaves {
            loss = Swift.max(loss, FixedPoint.add(leaf.buffer + p, 1, exponent: kLoss, into: q.baseAddress! + p))
            q[p + 1] += Int64(leaf.rows)
        }
        return (gradient, loss)
    }

    /// The integers summed over the ranks, as `[mean gradient | loss sum | row count]` on every rank, and the 4
    /// guess counters summed. One rank, or a sharded update: one Int64 allreduce, then `convert` of every value.
    /// Otherwise the ring's two halves with a conversion between them: a reduce-scatter of the Int64s, each rank
    /// turning the chunk it owns into Floats (`convert`: the same arithmetic whoever does it, so the same bits),
    /// then an allgather of the Floats — 12·n·(p−1)/p bytes sent per rank instead of the Int64 allreduce's
    /// 16·n·(p−1)/p (the default Float32 ring: 8·n·(p−1)/p), and n/p conversions per rank instead of n.
    private func sum(step number: Int, _ kGradient: Int, _ kLoss: Int, globalRows: Int) throws
        -> (mean: UnsafeMutableBufferPointer<Float>, counts: [Int64]) {
        let n = count + 2, whole = reduced
        guard comm.size > 1, shards == nil else {
            try comm.watched("the gradient allreduce of step \(number)", seconds: collectiveTimeout) {
                try integers.withUnsafeMutableBufferPointer { try comm.nativeAllreduce($0, op: .sum) }
            }
            convert(0 ..< n, into: whole.baseAddress!, kGradient, kLoss, globalRows: globalRows)
            return (whole, Array(integers[n...]))
        }
        try comm.watched("the gradient allreduce of step \(number)", seconds: collectiveTimeout) {
            try integers.withUnsafeMutableBufferPointer { try ring.reduceScatter($0) }
            convert(RingReduceScatter.ownedChunk(count: n + 4, rank: comm.rank, parts: comm.size), into: result.base, kGradient, kLoss,
                    globalRows: globalRows)
            try ring.allgather(result.buffer)
        }
        return (whole, (n ..< n + 4).map { Int64(result.base[$0]) })
    }

    /// `out[i]` for i in `range` from the summed integers: gradient sums times 2^−k / rows in Double, rounded once
    /// to Float (the mean); the loss sum times 2^−k; the row count and the guess counters as they are (exact).
    private func convert(_ range: Range<Int>, into out: UnsafeMutablePointer<Float>, _ kGradient: Int, _ kLoss: Int, globalRows: Int) {
        let p = count
        integers.withUnsafeBufferPointer { q in
            let factor = Double(sign: .plus, exponent: -kGradient, significand: 1) / Double(globalRows)
            for i in range.clamped(to: 0 ..< p) { out[i] = Float(Double(q[i]) * factor) }
            if range.contains(p) { out[p] = Float(Double(q[p]) * Double(sign: .plus, exponent: -kLoss, significand: 1)) }
            for i in range.clamped(to: p + 1 ..< q.count) { out[i] = Float(q[i]) }
        }
    }

    /// Binades per scale bucket: the scale is fixed by the bucket of the batch's largest |value|, not its binade,
    /// so that it changes rarely from step to step and the last step's bucket is almost always right.
    static let bucketBinades = 4

    /// The bucket of a largest |value| M: the least multiple b of `bucketBinades` with M < 2^b; `Int.min` for
    /// M = 0, `Int.max` when M is not finite.
    static func bucket(_ largest: Double) -> Int {
        guard largest.isFinite else { return .max }
        guard largest > 0 else { return .min }
        let e = Int(largest.exponent) + 1, w = bucketBinades  // largest < 2^e
        return (e >= 0 ? (e + w - 1) / w : -(-e / w)) * w
    }

    /// The scale exponent k of bucket b: L values below 2^b, times 2^k, sum to less than 2^62 (and, for the
    /// largest, to at least 2^(59 − bucketBinades + 1) with L leaves: up to 3 bits less than the binade's own
    /// scale, `exponent(_:leaves:)`). 0 for the zero bucket.
    static func exponent(bucket b: Int, leaves: Int) -> Int {
        guard b != .min else { return 0 }
        let headroom = Int.bitWidth - Swift.max(leaves, 1).leadingZeroBitCount  // 2^headroom > leaves
        return 62 - headroom - b
    }

    /// max |x[i]| as a Double; +infinity when any x[i] is not finite (`FixedPoint.largestMagnitude`: one vectorised
    /// pass, over the kernel threads when n is large).
    static func largestMagnitude(_ x: UnsafePointer<Float>, _ n: Int) -> Double { FixedPoint.largestMagnitude(x, n) }

    /// The scale exponent k: L values of magnitude at most `largest`, times 2^k, sum to less than 2^62
    /// (`exactSumExponent`, shared with the exact standardisation statistics).
    static func exponent(_ largest: Double, leaves: Int) -> Int { exactSumExponent(largest, terms: leaves) }

    /// q[i] += trunc(x[i] · 2^k), exactly (|x[i]| · 2^k < 2^62 by the choice of k; the product is exact in Double):
    /// `FixedPoint.add`, the same integers on every ISA and thread count.
    static func addFixedPoint(_ x: UnsafePointer<Float>, _ n: Int, exponent k: Int, into q: UnsafeMutablePointer<Int64>) {
        FixedPoint.add(x, n, exponent: k, into: q)
    }
}

/// `--reproducible`'s constants, for the executables.
public enum Reproducible {
    /// Rows per block (a leaf of `ReproducibleReducer`): fixed, so part of the run's identity through
    /// `--reproducible`; batch sizes must be a multiple of it (or every row).
    public static let blockRows = 64
}

extension Dataset {
    /// This rank's rows changed to `targets[rank]` (global rows; `targets[q]`: what rank q will hold), fetched
    /// from the ranks that hold them now (`redistributed`, over `moves`). Collective: an allgather of every
    /// rank's current range, then one message per pair of ranks whose old and new ranges overlap.
    func moved(to targets: [Range<Int>], comm: Communicator, via moves: Communicator) throws -> Dataset {
        let lows = try comm.allgathered(Int64(globalRange.lowerBound))
        let highs = try comm.allgathered(Int64(globalRange.upperBound))
        let ranges = zip(lows, highs).map { Int($0) ..< Int($1) }
        return ranges == targets ? self : try redistributed(from: ranges, to: targets, comm: moves)
    }
}

/// `--reproducible`'s evaluation (`Trainer.evaluate`): mean loss and accuracy of `model` over `data`, all ranks'
/// shards together, with the same bits for any number of ranks. The evaluated shards are not cut at blocks, so
/// the leaves are single rows: each row is evaluated alone (its loss depends on that row only), the losses are
/// summed as Int64 fixed point with one scale for the whole set (from an allreduce-max), and the loss sum,
/// correct count and row count are one Int64 allreduce — exact in any order. Cost: one model call per row
/// (slower than the batched default: the evaluation, not the training, pays it) and two small collectives,
/// under `timeout` plus twice this rank's own evaluation time. Dense rows held in memory.
func reproducibleEvaluation(model: Model, parameters: [Float], data: Dataset, comm: Communicator, step: Int,
                            timeout: Double) throws -> Evaluation {
    let clock = DispatchTime.now().uptimeNanoseconds
    var losses = [Double](repeating: 0, count: data.rows)
    var correct: Int64 = 0
    try parameters.withUnsafeBufferPointer { w in
        try data.y.withUnsafeBufferPointer { y in
            for r in 0..<data.rows {
                let sums = try data.withRows(r ..< r + 1) { block in model.evaluate(parameters: w.baseAddress!, batch: Batch(block: block, y: y.baseAddress! + r)) }
                losses[r] = sums.loss
                correct += Int64(sums.correct)
            }
        }
    }
    let own = Double(DispatchTime.now().uptimeNanoseconds - clock) / 1e9
    return try comm.watched("the evaluation after step \(step)", seconds: timeout + 2 * own) {
        let largest = try comm.allreduced(losses.reduce(0.0) { Swift.max($0, $1.isFinite ? $1.magnitude : .infinity) }, op: .max)
        let k = ReproducibleReducer.exponent(largest.isFinite ? largest : 1, leaves: Swift.max(data.globalRows, 1))
        let scale = Double(sign: .plus, exponent: k, significand: 1)
        let sum = largest.isFinite ? losses.reduce(Int64(0)) { $0 + Int64($1 * scale) } : 0
        let totals = try comm.allreduced([sum, correct, Int64(data.rows)], op: .sum)
        let n = Double(Swift.max(totals[2], 1))
        let loss = largest.isFinite ? Double(totals[0]) * Double(sign: .plus, exponent: -k, significand: 1) / n : .nan
        return Evaluation(rows: Int(totals[2]), loss: loss, accuracy: model.isClassifier ? Double(totals[1]) / n : nil)
    }
}
