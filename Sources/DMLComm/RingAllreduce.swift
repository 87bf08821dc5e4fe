import Foundation

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
///
/// segmented:  each chunk travels as segments of `segmentBytes`.  What rank r receives in one step is
///             what it sends in the next, so each segment is forwarded (isend) as soon as it has been
///             added; up to `window` receives are posted ahead into reused scratch.
///
///      step t   ─ seg0: recv │ add │ isend(t+1) ─┐
///                   seg1:       recv │ add │ isend(t+1) ─┐      the add of one segment overlaps the
///                   seg2:             recv │ add │ …      │      transfer of the next, and step t+1's
///      step t+1 ─────────────────── seg0 arrives at r+1 ◀┘      sends overlap step t's receives.
/// ```
/// Chunk c is reduced along the ring c, c+1, …, c−1 and then copied, so every rank ends with the same
/// bits, and the order of additions depends only on p, never on timing or on the segment size.
///
/// Cost with n bytes, latency α and inverse bandwidth β: `2(p−1)·α + 2·(p−1)/p · n·β` (+ `(p−1)/p · n·γ`
/// for the additions, hidden behind the transfers by the pipeline): each rank sends and receives
/// `2(p−1)/p · n` bytes, the minimum for any allreduce. Segmenting adds one message latency per segment,
/// negligible at the default 256 KiB. No allocation in steady state: the scratch (`window` segments) and
/// the request arrays are kept between calls. Messages are segments, so counts above `Int32.max` need
/// nothing special.
public final class RingAllreduce: AllreduceAlgorithm {
    public let name = "ring"
    let comm: Communicator
    /// Bytes per segment (rounded down to whole elements, at least one). `DML_RING_SEGMENT` overrides the default.
    public let segmentBytes: Int
    /// Receives in flight ahead of the one being added.
    public let window: Int
    /// Receive buffers for `window` segments, kept between calls (first touch of fresh memory is slow).
    private var scratch = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    private var receives: [CommRequest] = []
    private var sendsThisStep: [CommRequest] = []
    private var sendsNextStep: [CommRequest] = []

    public static let defaultSegmentBytes = 256 << 10

    public init(comm: Communicator, segmentBytes: Int? = nil, window: Int = 4) {
        self.comm = comm
        let fromEnv = ProcessInfo.processInfo.environment["DML_RING_SEGMENT"].flatMap { ByteCount.parse($0) }
        self.segmentBytes = Swift.max(1, segmentBytes ?? fromEnv ?? Self.defaultSegmentBytes)
        self.window = Swift.max(1, window)
    }

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
        let stride = MemoryLayout<T>.stride
        let segment = Swift.max(1, segmentBytes / stride)
        let slots = window
        ensureScratch(bytes: slots * Swift.min(segment, n / p + 1) * stride)
        let slotElements = scratch.count / stride / slots
        let incoming = scratch.baseAddress!.assumingMemoryBound(to: T.self)
        if receives.count < slots { receives = Array(repeating: .completed, count: slots) }
        sendsThisStep.removeAll(keepingCapacity: true)  // (left over only by a call that threw)
        sendsNextStep.removeAll(keepingCapacity: true)
        let steps = 2 * (p - 1)
        // Step t receives chunk `received(t)` and, from step 1 on, sends what it received in step t − 1.
        func received(_ t: Int) -> Range<Int> {
            let c = t < p - 1 ? r - t - 1 : r - (t - (p - 1))
            return Self.chunk((c % p + p) % p, count: n, parts: p)
        }
        func bytes(_ range: Range<Int>) -> UnsafeRawBufferPointer {
            UnsafeRawBufferPointer(start: base + range.lowerBound, count: range.count * stride)
        }

        // Step 0 sends this rank's own chunk r, cut into the same segments its right neighbour expects.
        let own = Self.chunk(r, count: n, parts: p)
        for lower in Swift.stride(from: own.lowerBound, to: own.upperBound, by: segment) {
            sendsThisStep.append(try comm.isend(bytes(lower ..< Swift.min(lower + segment, own.upperBound)), to: right, tag: 0))
        }
        for t in 0..<steps {
            let chunk = received(t)
            let reduce = t < p - 1, forward = t + 1 < steps
            let segments = (chunk.count + segment - 1) / segment
            func range(_ j: Int) -> Range<Int> {
                let lower = chunk.lowerBound + j * segment
                return lower ..< Swift.min(lower + segment, chunk.upperBound)
            }
            func post(_ j: Int) throws {
                let seg = range(j)
                let into = reduce ? incoming + (j % slots) * slotElements : base + seg.lowerBound
                receives[j % slots] = try comm.irecv(UnsafeMutableRawBufferPointer(start: into, count: seg.count * stride),
                                                     from: left, tag: t)
            }
            for j in 0..<Swift.min(slots, segments) { try post(j) }
            for j in 0..<segments {
                try comm.wait(&receives[j % slots])
                let seg = range(j)
                if reduce { op.combine(into: base + seg.lowerBound, from: incoming + (j % slots) * slotElements, count: seg.count) }
                if forward { sendsNextStep.append(try comm.isend(bytes(seg), to: right, tag: t + 1)) }
                if j + slots < segments { try post(j + slots) }
            }
            // This step's sends read a chunk that a later step overwrites: finish them before going on.
            try comm.waitAll(&sendsThisStep)
            swap(&sendsThisStep, &sendsNextStep)
        }
        try comm.waitAll(&sendsThisStep)
    }
}
