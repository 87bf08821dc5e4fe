/// Ring allreduce: a reduce-scatter followed by an allgather, each `p − 1` exchanges with the two
/// neighbours. No rank is special, and every link carries the same load.
///
/// ```
///      ┌──▶ r0 ──▶ r1 ──▶ r2 ──▶ r3 ──┐      the buffer is cut into p chunks c0 … c(p−1)
///      └──────────────────────────────┘      (sizes differ by at most one element)
///
/// reduce-scatter, step s = 0 … p−2:  rank r sends chunk (r − s) to r+1 and receives chunk (r − s − 1)
///                                    from r−1, which it adds into its own copy.
///                                    After p−1 steps rank r holds the full reduction of chunk (r + 1).
/// allgather,      step s = 0 … p−2:  rank r sends chunk (r + 1 − s) to r+1 and receives chunk (r − s)
///                                    from r−1, overwriting its copy.
/// ```
/// Chunk c is reduced along the ring c, c+1, …, c−1 and then copied, so every rank ends with the same
/// bits, and the order of additions depends only on p, never on timing.
///
/// Cost with n bytes, latency α and inverse bandwidth β: `2(p−1)·α + 2·(p−1)/p · n·β` (+ `(p−1)/p · n·γ`
/// for the additions): each rank sends and receives `2(p−1)/p · n` bytes, the minimum for any allreduce.
public final class RingAllreduce: AllreduceAlgorithm {
    public let name = "ring"
    let comm: Communicator
    /// Receive buffer for one chunk, kept between calls (first touch of fresh memory is slow).
    private var scratch = UnsafeMutableRawBufferPointer(start: nil, count: 0)

    public init(comm: Communicator) { self.comm = comm }

    deinit { scratch.deallocate() }

    public func run(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws { try ring(buffer, op: op) }
    public func run(_ buffer: UnsafeMutableBufferPointer<Double>, op: ReduceOp) throws { try ring(buffer, op: op) }

    /// The bounds of chunk `c` of `count` elements cut into `p` chunks.
    @inline(__always)
    static func chunk(_ c: Int, count: Int, parts p: Int) -> Range<Int> {
        let base = count / p, extra = count % p
        let lower = c * base + Swift.min(c, extra)
        return lower ..< lower + base + (c < extra ? 1 : 0)
    }

    private func ensureScratch(bytes: Int) {
        if scratch.count >= bytes { return }
        scratch.deallocate()
        scratch = .allocate(byteCount: bytes, alignment: 64)
    }

    func ring<T: ReducibleScalar>(_ buffer: UnsafeMutableBufferPointer<T>, op: ReduceOp) throws {
        let p = comm.size, r = comm.rank, n = buffer.count
        guard p > 1, n > 0, let base = buffer.baseAddress else { return }
        let right = comm.rightNeighbour, left = comm.leftNeighbour
        ensureScratch(bytes: (n / p + 1) * MemoryLayout<T>.stride)
        let incoming = scratch.baseAddress!.assumingMemoryBound(to: T.self)
        let stride = MemoryLayout<T>.stride
        func bytes(_ range: Range<Int>) -> UnsafeMutableRawBufferPointer {
            UnsafeMutableRawBufferPointer(start: base + range.lowerBound, count: range.count * stride)
        }

        for s in 0..<(p - 1) {
            let sendChunk = Self.chunk((r - s + 2 * p) % p, count: n, parts: p)
            let recvChunk = Self.chunk((r - s - 1 + 2 * p) % p, count: n, parts: p)
            try comm.sendrecv(sending: UnsafeRawBufferPointer(bytes(sendChunk)), to: right,
                              receiving: UnsafeMutableRawBufferPointer(start: incoming, count: recvChunk.count * stride),
                              from: left, tag: s)
            op.combine(into: base + recvChunk.lowerBound, from: incoming, count: recvChunk.count)
        }
        for s in 0..<(p - 1) {
            let sendChunk = Self.chunk((r + 1 - s + 2 * p) % p, count: n, parts: p)
            let recvChunk = Self.chunk((r - s + 2 * p) % p, count: n, parts: p)
            try comm.sendrecv(sending: UnsafeRawBufferPointer(bytes(sendChunk)), to: right,
                              receiving: bytes(recvChunk), from: left, tag: p + s)
        }
    }
}
