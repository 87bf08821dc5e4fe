/// Recursive doubling: log2 p exchanges of the whole buffer, for small, latency-bound messages.
///
/// ```
///  p = 6 (p′ = 4, rem = 2):   fold     r0 ──▶ r1      r2 ──▶ r3      r4      r5      (evens of the first
///                                            n0             n1      n2      n3       2·rem ranks sit out)
///                            mask 1:   n0 ⇄ n1,  n2 ⇄ n3
///                            mask 2:   n0 ⇄ n2,  n1 ⇄ n3
///                            unfold    r1 ──▶ r0      r3 ──▶ r2
/// ```
/// In each exchange both partners compute `(lower group's value) ⊕ (higher group's value)` from the same two
/// operands in the same order, so after step k the 2^k ranks of a group hold the same bits; the ranks that
/// sat out get a copy. Non-powers of two cost two extra messages (fold and unfold).
///
/// Cost: `(⌈log2 p⌉ + 2·[p not a power of 2]) · (α + n·β)` plus `log2 p · n·γ` for the reductions: fewest
/// latencies, but each rank moves `log2 p · n` bytes instead of the ring's `2(p−1)/p · n`. Scratch of n
/// elements kept between calls.
public final class RecursiveDoublingAllreduce: AllreduceAlgorithm {
    public let name = "rd"
    /// This algorithm's own duplicate: its tags 0 (fold), 1 (exchanges) and 2 (unfold) meet nobody else's.
    let comm: PrivateCommunicator
    private var scratch = UnsafeMutableRawBufferPointer(start: nil, count: 0)

    public init(comm: Communicator) { self.comm = PrivateCommunicator(comm) }
    deinit { scratch.deallocate() }

    /// Collective, once: the duplicate communicator.
    public func prepare() throws { _ = try comm.get() }

    public func run(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws { try rd(buffer, op: op) }
    public func run(_ buffer: UnsafeMutableBufferPointer<Double>, op: ReduceOp) throws { try rd(buffer, op: op) }

    func rd<T: ReducibleScalar>(_ buffer: UnsafeMutableBufferPointer<T>, op: ReduceOp) throws {
        let comm = try comm.get()
        let p = comm.size, r = comm.rank, n = buffer.count
        guard p > 1, n > 0, let base = buffer.baseAddress else { return }
        let bytes = n * MemoryLayout<T>.stride
        if scratch.count < bytes {
            scratch.deallocate()
            scratch = .allocate(byteCount: bytes, alignment: 64)
        }
        let incoming = scratch.baseAddress!.assumingMemoryBound(to: T.self)
        let whole = UnsafeMutableRawBufferPointer(buffer)
        let into = UnsafeMutableRawBufferPointer(start: scratch.baseAddress, count: bytes)
        let plan = RecursiveDoublingPlan(rank: r, size: p)
        // Fold: in the first 2·rem ranks each even rank hands its buffer to the odd rank above it.
        switch plan.fold {
        case let .send(to): try comm.send(UnsafeRawBufferPointer(whole), to: to, tag: 0)
        case let .receive(from):
            try comm.recv(into, from: from, tag: 0)
            op.combine(into: base, leftOperand: incoming, count: n)
        case .none: break
        }
        for exchange in plan.exchanges {
            try comm.sendrecv(sending: UnsafeRawBufferPointer(whole), to: exchange.peer, receiving: into, from: exchange.peer, tag: 1)
            if exchange.incomingIsLower {
                op.combine(into: base, leftOperand: incoming, count: n)
            } else {
                op.combine(into: base, from: incoming, count: n)
            }
        }
        // Unfold: the odd ranks give the result back to the even ranks that sat out.
        switch plan.unfold {
        case let .send(to): try comm.send(UnsafeRawBufferPointer(whole), to: to, tag: 2)
        case let .receive(from): try comm.recv(whole, from: from, tag: 2)
        case .none: break
        }
    }
}

/// Who talks to whom in recursive doubling, on rank `rank` of `size`: the one schedule of `rd` and of the
/// sparse merge (`SparseAllreduce`), so both reduce every element in the same order.
///
/// With p′ the largest power of two ≤ p and rem = p − p′: in the first 2·rem ranks each even rank folds its
/// data into the odd rank above it and sits out; the p′ remaining ranks (new rank = r/2 for those odd ranks,
/// r − rem for the rest) exchange with the partner whose new rank differs in bit k, k = 0, 1, …; each side
/// combines `(lower group's value) ⊕ (higher group's value)`; the odd ranks then hand the result back.
struct RecursiveDoublingPlan {
    enum Transfer: Equatable { case none, send(to: Int), receive(from: Int) }
    /// Before the exchanges: an even rank of the first 2·rem sends, the odd rank above receives (the incoming
    /// data is the lower rank's: the left operand).
    let fold: Transfer
    /// The exchanges, in order: the partner, and whether its data is the lower group's (the left operand).
    let exchanges: [(peer: Int, incomingIsLower: Bool)]
    /// After the exchanges: the odd rank sends the result back to the even rank that sat out.
    let unfold: Transfer

    init(rank r: Int, size p: Int) {
        var pof2 = 1
        while pof2 * 2 <= p { pof2 *= 2 }
        let rem = p - pof2
        var newRank = r - rem
        if r < 2 * rem {
            newRank = r % 2 == 0 ? -1 : r / 2
            fold = r % 2 == 0 ? .send(to: r + 1) : .receive(from: r - 1)
            unfold = r % 2 == 0 ? .receive(from: r + 1) : .send(to: r - 1)
        } else {
            fold = .none
            unfold = .none
        }
        var exchanges: [(peer: Int, incomingIsLower: Bool)] = []
        if newRank >= 0 {
            var mask = 1
            while mask < pof2 {
                let newPeer = newRank ^ mask
                exchanges.append((newPeer < rem ? newPeer * 2 + 1 : newPeer + rem, newPeer < newRank))
                mask <<= 1
            }
        }
        self.exchanges = exchanges
    }
}
