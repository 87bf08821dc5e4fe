/// Collectives over arrays whose lengths differ from rank to rank: an allgather (every rank gets every rank's
/// array) and a personalised all-to-all (rank r sends its q-th array to rank q), for plain values
/// (`BitwiseCopyable`: their bytes travel as they lie in memory, so both ends must be one machine type).
extension Communicator {
    /// Every rank's `values`, indexed by rank (the lengths may differ; a rank may pass none). Collective.
    ///
    /// Cost: one allreduce of `size` Int64 (the lengths), then one of `size × longest` 64-bit slots in which
    /// each rank fills only its own (a sum with one non-zero term per slot is exact for any bit pattern). For
    /// small arrays (samples, splitters): every rank receives `size × longest` slots.
    public func allgathered<T: BitwiseCopyable>(_ values: [T]) throws -> [[T]] {
        precondition(MemoryLayout<T>.size <= 8, "allgathered: one value must fit in a 64-bit slot")
        let counts = try allgathered(Int64(values.count)).map(Int.init)
        let width = counts.max() ?? 0
        guard width > 0 else { return Array(repeating: [], count: size) }
        var slots = [Int64](repeating: 0, count: width * size)
        for (i, v) in values.enumerated() {
            var bits: Int64 = 0
            withUnsafeMutableBytes(of: &bits) { $0.storeBytes(of: v, as: T.self) }
            slots[rank * width + i] = bits
        }
        let all = try allreduced(slots, op: .sum)
        return (0..<size).map { r in
            (0..<counts[r]).map { i in withUnsafeBytes(of: all[r * width + i]) { $0.load(as: T.self) } }
        }
    }

    /// Personalised all-to-all: sends `outgoing[q]` to rank q (`outgoing.count == size`; this rank's own part
    /// is kept without a message) and returns what every rank sent to this one, indexed by sender. Collective.
    ///
    /// Messages carry `tag`, so call it on a communicator of its own (`duplicate()`) when other messages with
    /// that tag may be in flight. Cost: one allreduce of `size²` Int64 (every rank learns what it will
    /// receive), then at most one message per ordered pair of ranks that have something to send, all in
    /// flight at once; memory: what this rank sends and receives.
    public func exchanged<T: BitwiseCopyable>(_ outgoing: [[T]], tag: Int = 0) throws -> [[T]] {
        precondition(outgoing.count == size, "exchanged: one array per rank")
        var matrix = [Int64](repeating: 0, count: size * size)
        for q in 0..<size { matrix[rank * size + q] = Int64(outgoing[q].count) }
        matrix = try allreduced(matrix, op: .sum)
        var incoming = [[T]](repeating: [], count: size)
        incoming[rank] = outgoing[rank]
        // Receive buffers are allocated first and filled in place: a message lands where it stays.
        var buffers: [UnsafeMutableBufferPointer<T>] = []
        defer { buffers.forEach { $0.deallocate() } }
        var requests: [CommRequest] = []
        for q in 0..<size where q != rank && matrix[q * size + rank] > 0 {
            let buffer = UnsafeMutableBufferPointer<T>.allocate(capacity: Int(matrix[q * size + rank]))
            buffers.append(buffer)
            requests.append(try irecv(UnsafeMutableRawBufferPointer(buffer), from: q, tag: tag))
        }
        // Send buffers must stay put until every request is complete: Swift arrays are pinned only inside
        // their closures, so each part is sent from a copy that lives until the end.
        var sending: [UnsafeMutableBufferPointer<T>] = []
        defer { sending.forEach { $0.deallocate() } }
        for q in 0..<size where q != rank && !outgoing[q].isEmpty {
            let copy = UnsafeMutableBufferPointer<T>.allocate(capacity: outgoing[q].count)
            _ = copy.initialize(from: outgoing[q])
            sending.append(copy)
            requests.append(try isend(UnsafeRawBufferPointer(copy), to: q, tag: tag))
        }
        try waitAll(&requests)
        var next = 0
        for q in 0..<size where q != rank && matrix[q * size + rank] > 0 {
            incoming[q] = Array(buffers[next])
            next += 1
        }
        return incoming
    }
}
