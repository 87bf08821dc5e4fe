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
        var pof2 = 1
        while pof2 * 2 <= p { pof2 *= 2 }
        let rem = p - pof2

        // Fold: in the first 2·rem ranks each even rank hands its buffer to the odd rank above it.
        var newRank = r - rem
        if r < 2 * rem {
            if r % 2 == 0 {
                try comm.send(UnsafeRawBufferPointer(whole), to: r + 1, tag: 0)
                newRank = -1
            } else {
                try comm.recv(into, from: r - 1, tag: 0)
                op.combine(into: base, leftOperand: incoming, count: n)
                newRank = r / 2
            }
        }
        if newRank >= 0 {
            var mask = 1
            while mask < pof2 {
                let newPeer = newRank ^ mask
                let peer = newPeer < rem ? newPeer * 2 + 1 : newPeer + rem
                try comm.sendrecv(sending: UnsafeRawBufferPointer(whole), to: peer, receiving: into, from: peer, tag: 1)
                if newPeer < newRank {
                    op.combine(into: base, leftOperand: incoming, count: n)
                } else {
                    op.combine(into: base, from: incoming, count: n)
                }
                mask <<= 1
            }
        }
        // Unfold: the odd ranks give the result back to the even ranks that sat out.
        if r < 2 * rem {
            if r % 2 == 0 { try comm.recv(whole, from: r + 1, tag: 2) } else { try comm.send(UnsafeRawBufferPointer(whole), to: r - 1, tag: 2) }
        }
    }
}
