import DMLComm
import DMLData
import DMLKernels
import DMLModels

/// `--reproducible`'s balance of leaves: which rank computes which leaf (one 64-row block) of a step.
///
/// A batch is a set of blocks drawn by a global permutation, and which rank holds a block follows the data
/// layout, so the blocks of one batch fall unevenly on the ranks (at np 2 and 4 blocks, the busier rank holds
/// 2.75 on average instead of 2). Any rank may compute any leaf — a leaf is one model call on the same rows
/// wherever it runs, and the leaves' integer sum is exact in any order — so the step is balanced by moving rows,
/// never by changing what is summed: each rank computes ⌊L/p⌋ or ⌈L/p⌉ of the L leaves (the extra ones go to the
/// ranks holding the most), its own leaves first, and the leaves above a holder's share go, in batch order, to
/// the ranks below theirs in rank order. Rows moved per step: Σ_r max(0, held_r − share_r) leaves, the fewest any
/// balanced assignment can move (at np 2, 4 leaves: 0.75 leaves, 150 KB of 784 features, on average).
enum LeafBalance {
    /// `computers[i]`: the rank that computes leaf i, given `holders[i]`, the rank holding it. Deterministic in
    /// its input, so every rank computes the same assignment. O(L + p log p).
    static func assign(holders: [Int], ranks p: Int) -> [Int] {
        var held = [Int](repeating: 0, count: p)
        for h in holders { held[h] += 1 }
        let (each, extra) = holders.count.quotientAndRemainder(dividingBy: p)
        var share = [Int](repeating: each, count: p)
        for r in (0..<p).sorted(by: { held[$0] != held[$1] ? held[$0] > held[$1] : $0 < $1 }).prefix(extra) { share[r] += 1 }
        var taken = [Int](repeating: 0, count: p)
        var computers = holders.map { h -> Int in
            guard taken[h] < share[h] else { return -1 }
            taken[h] += 1
            return h
        }
        var r = 0
        for i in computers.indices where computers[i] < 0 {
            while taken[r] >= share[r] { r += 1 }
            computers[i] = r
            taken[r] += 1
        }
        return computers
    }
}

/// The rows of a step's leaves that this rank computes, in one batch buffer, the leaves that other ranks hold
/// fetched from them ahead of the step (`ReproducibleReducer`: posted in the previous step's `finish` after its
/// gate, so they travel during its Int64 allreduce, and complete before that `finish` returns: no message is ever
/// in flight between steps). Every rank plans the same assignment (`LeafBalance`) from the sampler's batch and
/// the ranks' row ranges, so no metadata travels: per moved leaf one message of its features and one of its
/// targets, on the reducer's private communicator. Dense rows held in memory.
final class LeafExchange {
    let comm: Communicator
    let train: Dataset
    /// `starts[r] ..< starts[r + 1]`: the global rows rank r holds.
    let starts: [Int]
    /// The 1-based step whose rows `batch` holds (after `gatherOwn`), or nil.
    private(set) var planned: Int?
    /// This rank's leaves of `planned`, in batch order: their global rows and the rank that holds them.
    private(set) var leaves: [(rows: [Int], holder: Int)] = []
    /// Leaves this rank has received from their holders so far.
    private(set) var received = 0
    private var x = Buffer(), y = Buffer(), outgoing = Buffer()
    private var requests: [CommRequest] = []

    init(comm: Communicator, train: Dataset, starts: [Int]) {
        self.comm = comm
        self.train = train
        self.starts = starts
    }

    /// The rank holding global row `row`.
    func holder(of row: Int) -> Int {
        var lo = 0, hi = starts.count - 2
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if starts[mid] <= row { lo = mid } else { hi = mid - 1 }
        }
        return lo
    }

    /// Plans step `number` (`batch`: its leaves in batch order, each a run of one block's rows) and starts the
    /// moves of the leaves that change rank: receives into this rank's batch buffer, sends from a copy of the
    /// rows. Complete them with `complete` before anything else communicates on this rank.
    func post(step number: Int, batch: [[Int]]) throws {
        let me = comm.rank, d = train.features
        let holders = batch.map { holder(of: $0[0]) }
        let computers = LeafBalance.assign(holders: holders, ranks: comm.size)
        leaves = batch.indices.filter { computers[$0] == me }.map { (batch[$0], holders[$0]) }
        let rows = leaves.reduce(0) { $0 + $1.rows.count }
        x.reserve(rows * d)
        y.reserve(rows)
        let sent = batch.indices.filter { holders[$0] == me && computers[$0] != me }
        outgoing.reserve(sent.reduce(0) { $0 + batch[$1].count * (d + 1) })
        planned = number
        var at = 0
        for leaf in leaves {
            let n = leaf.rows.count
            if leaf.holder != me {
                received += 1
                requests.append(try comm.irecv(UnsafeMutableRawBufferPointer(start: x.base + at * d, count: n * d * 4), from: leaf.holder, tag: 1))
                requests.append(try comm.irecv(UnsafeMutableRawBufferPointer(start: y.base + at, count: n * 4), from: leaf.holder, tag: 2))
            }
            at += n
        }
        var out = outgoing.base
        for i in sent {
            let n = batch[i].count
            copy(batch[i], x: out, y: out + n * d)
            requests.append(try comm.isend(UnsafeRawBufferPointer(start: out, count: n * d * 4), to: computers[i], tag: 1))
            requests.append(try comm.isend(UnsafeRawBufferPointer(start: out + n * d, count: n * 4), to: computers[i], tag: 2))
            out += n * (d + 1)
        }
    }

    /// Waits for the moves `post` started.
    func complete() throws { try comm.waitAll(&requests) }

    /// Copies the planned step's leaves that this rank holds into the batch buffer (the moved ones are there
    /// already) and returns the batch: the leaves' rows in batch order. Valid until the next `post`.
    func gatherOwn() -> Batch {
        let d = train.features
        var at = 0
        for leaf in leaves {
            if leaf.holder == comm.rank { copy(leaf.rows, x: x.base + at * d, y: y.base + at) }
            at += leaf.rows.count
        }
        return Batch(x: x.base, y: y.base, rows: at, features: d)
    }

    /// Rows `rows` (held here) into `x` (`rows.count × features`) and `y`.
    private func copy(_ rows: [Int], x: UnsafeMutablePointer<Float>, y: UnsafeMutablePointer<Float>) {
        let first = train.firstRow
        train.x.withUnsafeBufferPointer { source in
            rows.withUnsafeBufferPointer { Vector.gatherRows(source.baseAddress!, width: train.features, rows: $0, firstRow: first, into: x) }
        }
        for (i, r) in rows.enumerated() { y[i] = train.y[r - first] }
    }

    /// A Float buffer that only grows (never while a message uses it: `reserve` runs before `post` starts any).
    private final class Buffer {
        private(set) var base = UnsafeMutablePointer<Float>.allocate(capacity: 1)
        private var capacity = 1
        func reserve(_ count: Int) {
            guard count > capacity else { return }
            base.deallocate()
            base = .allocate(capacity: count)
            capacity = count
        }
        deinit { base.deallocate() }
    }
}
