/// The parameter-server baseline: every rank sends its buffer to rank 0, rank 0 adds them in rank order,
/// and broadcasts the result.
///
/// Cost: rank 0 receives `(p−1)·n` bytes through one link and does all `(p−1)·n` reductions, so the time
/// grows linearly with p while the ring's stays flat: `(p−1)·(α + n·β + n·γ)` + a broadcast. Kept to show
/// why the ring wins. Every rank gets rank 0's bits. Rank 0's scratch (n elements) is kept between calls.
public final class CentralAllreduce: AllreduceAlgorithm {
    public let name = "central"
    /// This algorithm's own duplicate: its tag 0 and its broadcast meet nobody else's messages.
    let comm: PrivateCommunicator
    private var scratch = UnsafeMutableRawBufferPointer(start: nil, count: 0)

    public init(comm: Communicator) { self.comm = PrivateCommunicator(comm) }
    deinit { scratch.deallocate() }

    /// Collective, once: the duplicate communicator.
    public func prepare() throws { _ = try comm.get() }

    public func run(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws { try central(buffer, op: op) }
    public func run(_ buffer: UnsafeMutableBufferPointer<Double>, op: ReduceOp) throws { try central(buffer, op: op) }

    func central<T: ReducibleScalar>(_ buffer: UnsafeMutableBufferPointer<T>, op: ReduceOp) throws {
        let comm = try comm.get()
        let p = comm.size, n = buffer.count
        guard p > 1, n > 0, let base = buffer.baseAddress else { return }
        let whole = UnsafeMutableRawBufferPointer(buffer)
        if comm.rank == 0 {
            if scratch.count < whole.count {
                scratch.deallocate()
                scratch = .allocate(byteCount: whole.count, alignment: 64)
            }
            let incoming = scratch.baseAddress!.assumingMemoryBound(to: T.self)
            for q in 1..<p {
                try comm.recv(UnsafeMutableRawBufferPointer(start: scratch.baseAddress, count: whole.count), from: q, tag: 0)
                op.combine(into: base, from: incoming, count: n)
            }
        } else {
            try comm.send(UnsafeRawBufferPointer(whole), to: 0, tag: 0)
        }
        try comm.broadcast(whole, root: 0)
    }
}
