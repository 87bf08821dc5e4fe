import Foundation
import DMLComm
import DMLData
import DMLKernels

/// Straggler balancing (`--balance`): the training rows in fixed blocks (`BlockPlan`), each block's gradient
/// computed into its own buffer, and the step's gradient summed in **global block order** along a chain of
/// ranks — rank 0 sums its blocks and passes the partial sum on, each rank adds its own blocks in order, the
/// last broadcasts the total — so moving a block to another rank changes who computes it, never what is
/// added in which order. At epoch boundaries the ranks share their compute time per row and blocks move
/// towards the faster ranks when that cuts the slowest rank's compute by more than 10 %.
///
/// Cost per step: the chain's p − 1 sends of the gradient plus a broadcast (≈ (p + 1)·n bytes on the
/// critical path, against the ring's 2n), and one buffer per held block.
final class BlockChainReducer: GradientReducer {
    let comm: Communicator
    let count: Int
    let collectiveTimeout: Double
    let note: (String) -> Void
    /// Which blocks each rank holds.
    private(set) var plan: BlockPlan?
    private var scratch = ReduceBuffer(count: 0)
    private let sum: ReduceBuffer
    private var filled: [Int] = []
    private var computeStarted: UInt64 = 0
    private var rowsThisStep = 0
    /// This rank's compute time and rows since the last rebalancing.
    private var seconds = 0.0
    private var rows = 0
    /// The chain's and the row moves' own communicators (made in `attach`, on every rank alike), so their
    /// messages can meet no other concern's.
    private let chain: PrivateCommunicator
    private let moves: PrivateCommunicator

    init(comm: Communicator, count: Int, collectiveTimeout: Double, note: @escaping (String) -> Void) {
        self.comm = comm
        self.count = count
        self.collectiveTimeout = collectiveTimeout
        self.note = note
        sum = ReduceBuffer(count: count + 2)
        chain = PrivateCommunicator(comm)
        moves = PrivateCommunicator(comm)
    }

    /// Moves this rank's rows into the even block plan. Collective.
    func attach(_ train: Dataset) throws -> Dataset {
        precondition(!train.isSparse, "--balance moves dense rows (TrainingJob reads them dense with it)")
        _ = try chain.get()
        _ = try moves.get()
        return try move(train, to: BlockPlan(rows: train.globalRows, ranks: comm.size))
    }

    /// Every rank's current rows, then each fetches the rows `plan` gives it. Collective.
    private func move(_ train: Dataset, to plan: BlockPlan) throws -> Dataset {
        self.plan = plan
        return try train.moved(to: (0..<comm.size).map { plan.rowRange(of: $0) }, comm: comm, via: try moves.get())
    }

    func begin(step number: Int, holding: Range<Int>, rows: (Range<Int>) -> [Int]) -> [Contribution] {
        let plan = self.plan!
        let n = count + 2
        let mine = plan.blocks(of: comm.rank)
        if scratch.count < mine.count * n { scratch = ReduceBuffer(count: mine.count * n) }
        computeStarted = DispatchTime.now().uptimeNanoseconds
        filled = []
        rowsThisStep = 0
        var groups: [Contribution] = []
        for (i, b) in mine.enumerated() {
            let r = rows(plan.rows(ofBlock: b))
            guard !r.isEmpty else { continue }
            let g = scratch.base + i * n
            g.initialize(repeating: 0, count: n)
            groups.append(Contribution(rows: r, buffer: g))
            filled.append(i)
            rowsThisStep += r.count
        }
        return groups
    }

    func finish(step number: Int, globalRows: Int, gate: () throws -> Void) throws -> UnsafeMutableBufferPointer<Float> {
        seconds += Double(DispatchTime.now().uptimeNanoseconds - computeStarted) / 1e9
        rows += rowsThisStep
        try gate()
        let n = count + 2, whole = sum.buffer
        let chain = try self.chain.get()
        try comm.watched("the gradient chain of step \(number)", seconds: collectiveTimeout) {
            if chain.rank == 0 {
                whole.initialize(repeating: 0)
            } else {
                try chain.recv(UnsafeMutableRawBufferPointer(whole), from: chain.rank - 1, tag: 0)
            }
            for i in filled { Vector.axpy(1, scratch.base + i * n, whole.baseAddress!, n) }
            if chain.rank < chain.size - 1 {
                try chain.send(UnsafeRawBufferPointer(whole), to: chain.rank + 1, tag: 0)
            }
            try chain.broadcast(UnsafeMutableRawBufferPointer(whole), root: chain.size - 1)
        }
        Vector.scale(1 / whole[count + 1], whole.baseAddress!, count)
        return whole
    }

    /// At an epoch boundary: if moving blocks towards the faster ranks would shorten the slowest rank's
    /// compute by more than 10 %, they move. Collective.
    func epochEnded(_ train: Dataset, completed: Int) throws -> Dataset {
        guard let plan else { return train }
        let mine = rows > 0 ? seconds / Double(rows) : 0
        let perRow = try comm.allgathered(Int64(mine * 1e12)).map { Double($0) / 1e12 }  // picoseconds, exact to share
        seconds = 0
        rows = 0
        guard perRow.allSatisfy({ $0 > 0 }) else { return train }
        let next = plan.rebalanced(secondsPerRow: perRow)
        func slowest(_ q: BlockPlan) -> Double { (0..<comm.size).map { Double(q.rowRange(of: $0).count) * perRow[$0] }.max()! }
        guard next.bounds != plan.bounds, slowest(next) < 0.9 * slowest(plan) else { return train }
        let moved = try move(train, to: next)
        if comm.rank == 0 {
            let rows = (0..<comm.size).map { String(next.rowRange(of: $0).count) }.joined(separator: ", ")
            let ms = perRow.map { String(format: "%.1f", $0 * 1e6) }.joined(separator: ", ")
            note("balance: after step \(completed), rows per rank \(rows) (compute µs per row: \(ms)); "
                 + String(format: "predicted slowest-rank compute %.0f%% of before", 100 * slowest(next) / slowest(plan)))
        }
        return moved
    }
}
