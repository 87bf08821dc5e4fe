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
/// The schedule is `RingSchedule`, shared with `CompressedRingAllreduce`: this type runs it with the
/// `Unencoded` wire encoding (the values travel as they are, Float32 or Float64).
///
/// Cost with n bytes, latency α and inverse bandwidth β: `2(p−1)·α + 2·(p−1)/p · n·β` (+ `(p−1)/p · n·γ`
/// for the additions, hidden behind the transfers by the pipeline): each rank sends and receives
/// `2(p−1)/p · n` bytes, the minimum for any allreduce. Segmenting adds one message latency per segment,
/// negligible at the default 256 KiB. No allocation in steady state: the scratch (`window` segments) and
/// the request arrays are kept between calls. Messages are segments, so counts above `Int32.max` need
/// nothing special.
public final class RingAllreduce: AllreduceAlgorithm {
    public let name = "ring"
    /// This algorithm's own duplicate of the communicator it was built for: the step numbers it uses as
    /// tags cannot meet anyone else's messages.
    let comm: PrivateCommunicator
    let schedule: RingSchedule
    /// Bytes per segment (rounded down to whole elements, at least one). `DML_RING_SEGMENT` overrides the default.
    public var segmentBytes: Int { schedule.segmentBytes }
    /// Receives in flight ahead of the one being added.
    public var window: Int { schedule.window }

    public static let defaultSegmentBytes = 256 << 10

    public init(comm: Communicator, segmentBytes: Int? = nil, window: Int = 4) {
        self.comm = PrivateCommunicator(comm)
        schedule = RingSchedule(segmentBytes: Swift.max(1, segmentBytes ?? RingSchedule.segmentBytesFromEnvironment ?? Self.defaultSegmentBytes),
                                window: window)
    }

    /// Collective, once: the duplicate communicator.
    public func prepare() throws { _ = try comm.get() }

    public func run(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws { try ring(buffer, op: op) }
    public func run(_ buffer: UnsafeMutableBufferPointer<Double>, op: ReduceOp) throws { try ring(buffer, op: op) }

    /// The bounds of chunk `c` of `count` elements cut into `p` chunks.
    @inline(__always)
    static func chunk(_ c: Int, count: Int, parts p: Int) -> Range<Int> {
        let base = count / p, extra = count % p
        let lower = c * base + Swift.min(c, extra)
        return lower ..< lower + base + (c < extra ? 1 : 0)
    }

    /// The ring on any reducible element type (`SharedMemoryAllreduce` and `HierarchicalAllreduce` call it
    /// for their element type).
    func ring<T: ReducibleScalar>(_ buffer: UnsafeMutableBufferPointer<T>, op: ReduceOp) throws {
        let comm = try comm.get()
        guard buffer.count > 0, let base = buffer.baseAddress else { return }
        try schedule.run(Unencoded<T>(), values: base, wire: base, count: buffer.count, op: op, comm: comm)
    }
}

/// How a ring carries a buffer of `Value`s: the element type on the wire, how a received segment is combined
/// into this rank's values, what is sent on, and what the owner of a completed chunk keeps. `RingSchedule`
/// is written once against it, as Gloo templates its algorithms on the element type and the reduction.
///
/// The schedule keeps two views of the buffer's elements, index for index: `values` (what the caller sees)
/// and `wire` (what travels: sent from, and in the allgather received into). An encoding whose wire is the
/// values themselves (`Unencoded`) is given the same memory for both.
///
/// Invariants every encoding keeps, so that every rank ends with the same bits: the received partial result
/// is the right operand of `op` (`ReduceOp.combine(into:from:)`: the local value on the left), and after the
/// completing step the owner's `values` are exactly what every other rank stores from the same `wire`
/// elements in the allgather.
protocol RingWireEncoding {
    associatedtype Value: ReducibleScalar
    associatedtype Wire
    /// On one rank (no ring): what the ring would leave in `values` (the values, or their one rounding).
    func alone(_ values: UnsafeMutablePointer<Value>, wire: UnsafeMutablePointer<Wire>, count: Int)
    /// Before step 0: the wire form of this rank's own chunk, which step 0 sends.
    func encode(_ values: UnsafeMutablePointer<Value>, into wire: UnsafeMutablePointer<Wire>, count: Int)
    /// A reduce-scatter step's segment: `values[i] = values[i] ⊕ incoming[i]`, then in `wire` what is sent on.
    /// `completes`: this rank completes these elements, so `values` must end as what the other ranks will
    /// store from `wire` (`gathered`).
    func reduce(_ incoming: UnsafePointer<Wire>, into values: UnsafeMutablePointer<Value>, wire: UnsafeMutablePointer<Wire>,
                count: Int, op: ReduceOp, completes: Bool)
    /// An allgather step's segment arrived in `wire` (and is sent on from there as it is): store it in `values`.
    func gathered(_ wire: UnsafePointer<Wire>, into values: UnsafeMutablePointer<Value>, count: Int)
}

/// The values travel as they are: `wire` is the buffer itself, a received segment is combined straight into
/// it, and the allgather receives into the buffer. (`RingAllreduce`: Float32, Float64; `SharedMemoryAllreduce`
/// and `HierarchicalAllreduce` on any reducible type.)
struct Unencoded<T: ReducibleScalar>: RingWireEncoding {
    @inline(__always) func alone(_ values: UnsafeMutablePointer<T>, wire: UnsafeMutablePointer<T>, count: Int) {}
    @inline(__always) func encode(_ values: UnsafeMutablePointer<T>, into wire: UnsafeMutablePointer<T>, count: Int) {}
    @inline(__always)
    func reduce(_ incoming: UnsafePointer<T>, into values: UnsafeMutablePointer<T>, wire: UnsafeMutablePointer<T>,
                count: Int, op: ReduceOp, completes: Bool) {
        op.combine(into: values, from: incoming, count: count)
    }
    @inline(__always) func gathered(_ wire: UnsafePointer<T>, into values: UnsafeMutablePointer<T>, count: Int) {}
}

/// Which half of the ring `RingSchedule.run` runs: both (an allreduce), or one (a sharded update's
/// reduce-scatter, then its allgather of the updated parameters).
enum RingPhase { case both, reduceScatter, allgather }

/// The segmented, pipelined ring schedule (reduce-scatter, then allgather; see `RingAllreduce`), once, for
/// every wire encoding. Owns what is kept between calls: the receive scratch (`window` segments of wire
/// elements) and the request arrays. One call at a time (an algorithm object is used by one thread at a time).
final class RingSchedule {
    /// Bytes per segment on the wire (rounded down to whole wire elements, at least one).
    let segmentBytes: Int
    /// Receives in flight ahead of the one being combined.
    let window: Int
    private var scratch = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    private var receives: [CommRequest] = []
    private var sendsThisStep: [CommRequest] = []
    private var sendsNextStep: [CommRequest] = []

    /// `DML_RING_SEGMENT`, when set to a size: the segment size of every ring built without one.
    static var segmentBytesFromEnvironment: Int? {
        ProcessInfo.processInfo.environment["DML_RING_SEGMENT"].flatMap { ByteCount.parse($0) }
    }

    init(segmentBytes: Int, window: Int) {
        self.segmentBytes = segmentBytes
        self.window = Swift.max(1, window)
    }

    deinit { scratch.deallocate() }

    private func ensureScratch(bytes: Int) {
        if scratch.count >= bytes { return }
        scratch.deallocate()
        scratch = .allocate(byteCount: bytes, alignment: 64)
    }

    /// The ring over `count` elements: `values` and their `wire` view (the same memory for `Unencoded`).
    /// Messages carry the step number as their tag, on `comm` (the algorithm's own communicator).
    /// `phase` runs half of it: `.reduceScatter` (steps 0 … p−2: rank r ends holding chunk r+1 reduced, the
    /// other chunks partial) or `.allgather` (steps p−1 … 2p−3, from each rank's completed chunk r+1); the two
    /// halves called one after the other are the whole ring, message for message.
    func run<E: RingWireEncoding>(_ encoding: E, values: UnsafeMutablePointer<E.Value>, wire: UnsafeMutablePointer<E.Wire>,
                                  count n: Int, op: ReduceOp, comm: Communicator, phase: RingPhase = .both) throws {
        let p = comm.size, r = comm.rank
        guard n > 0 else { return }
        guard p > 1 else { return phase == .allgather ? () : encoding.alone(values, wire: wire, count: n) }
        let right = comm.rightNeighbour, left = comm.leftNeighbour
        let stride = MemoryLayout<E.Wire>.stride
        let segment = Swift.max(1, segmentBytes / stride)
        let slots = window
        ensureScratch(bytes: slots * Swift.min(segment, n / p + 1) * stride)
        let slotElements = scratch.count / stride / slots
        let incoming = scratch.baseAddress!.assumingMemoryBound(to: E.Wire.self)
        if receives.count < slots { receives = Array(repeating: .completed, count: slots) }
        sendsThisStep.removeAll(keepingCapacity: true)  // (left over only by a call that threw)
        sendsNextStep.removeAll(keepingCapacity: true)
        let first = phase == .allgather ? p - 1 : 0, steps = phase == .reduceScatter ? p - 1 : 2 * (p - 1)
        // Step t receives chunk `received(t)` and, from step 1 on, sends what it received in step t − 1.
        func received(_ t: Int) -> Range<Int> {
            let c = t < p - 1 ? r - t - 1 : r - (t - (p - 1))
            return RingAllreduce.chunk((c % p + p) % p, count: n, parts: p)
        }
        func bytes(_ range: Range<Int>) -> UnsafeRawBufferPointer {
            UnsafeRawBufferPointer(start: wire + range.lowerBound, count: range.count * stride)
        }

        // Step 0 sends this rank's own chunk r (an allgather alone: its completed chunk r+1, what step p−2 would
        // have forwarded), cut into the same segments its right neighbour expects.
        let own = first == 0 ? RingAllreduce.chunk(r, count: n, parts: p) : received(first - 1)
        if first == 0 { encoding.encode(values + own.lowerBound, into: wire + own.lowerBound, count: own.count) }
        for lower in Swift.stride(from: own.lowerBound, to: own.upperBound, by: segment) {
            sendsThisStep.append(try comm.isend(bytes(lower ..< Swift.min(lower + segment, own.upperBound)), to: right, tag: first))
        }
        for t in first..<steps {
            let chunk = received(t)
            let reduce = t < p - 1, forward = t + 1 < steps, completes = t == p - 2
            let segments = (chunk.count + segment - 1) / segment
            func range(_ j: Int) -> Range<Int> {
                let lower = chunk.lowerBound + j * segment
                return lower ..< Swift.min(lower + segment, chunk.upperBound)
            }
            func post(_ j: Int) throws {
                let seg = range(j)
                let into = reduce ? incoming + (j % slots) * slotElements : wire + seg.lowerBound
                receives[j % slots] = try comm.irecv(UnsafeMutableRawBufferPointer(start: into, count: seg.count * stride),
                                                     from: left, tag: t)
            }
            for j in 0..<Swift.min(slots, segments) { try post(j) }
            for j in 0..<segments {
                try comm.wait(&receives[j % slots])
                let seg = range(j)
                if reduce {
                    encoding.reduce(incoming + (j % slots) * slotElements, into: values + seg.lowerBound, wire: wire + seg.lowerBound,
                                    count: seg.count, op: op, completes: completes)
                } else {
                    encoding.gathered(wire + seg.lowerBound, into: values + seg.lowerBound, count: seg.count)
                }
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
