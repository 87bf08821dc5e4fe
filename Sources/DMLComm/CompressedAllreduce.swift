import Foundation
internal import CDMLKernels

/// A 16-bit wire format for Float32 values.
public enum WireFormat: String, CaseIterable, Sendable {
    /// IEEE half precision (`Float16`): 11 significant bits, range ±65504, subnormals below 6.1e-5.
    case fp16
    /// bfloat16: the upper 16 bits of a Float32, rounded to nearest even: 8 significant bits, Float32's range.
    case bf16

    /// Rounds `count` values to 16 bits (round to nearest, ties to even; NaN stays NaN, overflow gives ±inf).
    /// C (CDMLKernels), dispatched: F16C's conversion where the CPU has it, the same bits everywhere.
    public func encode(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<UInt16>, count: Int) {
        switch self {
        case .fp16: dml_kernels().pointee.fp16_encode(src, dst, count)
        case .bf16: dml_kernels().pointee.bf16_encode(src, dst, count)
        }
    }

    /// The Float32 values of `count` 16-bit values (exact).
    public func decode(_ src: UnsafePointer<UInt16>, into dst: UnsafeMutablePointer<Float>, count: Int) {
        switch self {
        case .fp16: dml_kernels().pointee.fp16_decode(src, dst, count)
        case .bf16: dml_kernels().pointee.bf16_decode(src, dst, count)
        }
    }

    /// `x` rounded to this format and back.
    public func rounded(_ x: Float) -> Float {
        var v = x, h: UInt16 = 0, out: Float = 0
        encode(&v, into: &h, count: 1)
        decode(&h, into: &out, count: 1)
        return out
    }

    /// The largest relative error of one rounding to this format (half an ulp), for normal values.
    public var unitRoundoff: Float { self == .fp16 ? 0x1p-11 : 0x1p-8 }
}

/// Ring allreduce of Float32 buffers whose messages carry 16-bit values (`fp16` or `bf16`): half the bytes
/// of `RingAllreduce` on the wire, with every partial sum formed in Float32.
///
/// The same segmented, pipelined ring as `RingAllreduce` — the one `RingSchedule`, run with the
/// `SixteenBit` wire encoding (the same chunk schedule, the same order of operations) — with one difference:
/// a rank adds the decoded incoming partial sum to its own Float32 values in Float32 and rounds the result to
/// 16 bits only to send it on. The rank that completes a chunk rounds the full sum to 16 bits once; those 16
/// bits travel unchanged around the allgather, and every rank — the owner included — stores their decoded
/// value. So every rank ends with the same bits, and each element is the exact sum up to one 16-bit rounding
/// per ring hop (p − 1 roundings of partial sums, at most `p · u · Σ|x|` with u = `format.unitRoundoff`).
///
/// Values outside the format's range become ±inf (fp16: |x| > 65504), so scale sums before compressing them
/// (the trainer divides the gradient by the global batch size first). On one rank the buffer is just rounded.
///
/// Cost: `2(p−1)·α + (p−1)/p · n·β` (half the ring's bandwidth term) plus an encode and a decode per element
/// per step. Scratch: a 16-bit mirror of the buffer (2n bytes) and `window` receive segments, kept between
/// calls. Double buffers are not compressed: they go round the same schedule unencoded (as `RingAllreduce`).
public final class CompressedRingAllreduce: AllreduceAlgorithm {
    public var name: String { "ring-\(format.rawValue)" }
    public let format: WireFormat
    /// This algorithm's own duplicate of the communicator it was built for.
    let comm: PrivateCommunicator
    let schedule: RingSchedule
    /// Bytes per segment on the wire. `DML_RING_SEGMENT` overrides the default, as for the ring.
    public var segmentBytes: Int { schedule.segmentBytes }
    public var window: Int { schedule.window }
    /// The 16-bit view of the buffer: what is sent, and what the allgather receives.
    private var wire = UnsafeMutableBufferPointer<UInt16>(start: nil, count: 0)

    public init(comm: Communicator, format: WireFormat, segmentBytes: Int? = nil, window: Int = 4) {
        self.comm = PrivateCommunicator(comm)
        self.format = format
        schedule = RingSchedule(segmentBytes: Swift.max(2, segmentBytes ?? RingSchedule.segmentBytesFromEnvironment ?? RingAllreduce.defaultSegmentBytes),
                                window: window)
    }

    deinit { wire.deallocate() }

    /// Collective, once: the duplicate communicator.
    public func prepare() throws { _ = try comm.get() }

    public func run(_ buffer: UnsafeMutableBufferPointer<Double>, op: ReduceOp) throws {
        let comm = try comm.get()
        guard buffer.count > 0, let base = buffer.baseAddress else { return }
        try schedule.run(Unencoded<Double>(), values: base, wire: base, count: buffer.count, op: op, comm: comm)
    }

    public func run(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws {
        let comm = try comm.get()
        guard buffer.count > 0, let base = buffer.baseAddress else { return }
        if wire.count < buffer.count {
            wire.deallocate()
            wire = .allocate(capacity: buffer.count)
        }
        try schedule.run(SixteenBit(format: format), values: base, wire: wire.baseAddress!, count: buffer.count, op: op, comm: comm)
    }
}

/// Float32 values on a 16-bit wire (`CompressedRingAllreduce`): partial sums formed in Float32 from the
/// decoded incoming ones, rounded to 16 bits only to be sent on; the completing rank keeps the decoded value
/// of the 16 bits it sends, which is what every other rank decodes in the allgather.
struct SixteenBit: RingWireEncoding {
    let format: WireFormat

    @inline(__always)
    func alone(_ values: UnsafeMutablePointer<Float>, wire: UnsafeMutablePointer<UInt16>, count: Int) {
        format.encode(values, into: wire, count: count)
        format.decode(wire, into: values, count: count)
    }

    @inline(__always)
    func encode(_ values: UnsafeMutablePointer<Float>, into wire: UnsafeMutablePointer<UInt16>, count: Int) {
        format.encode(values, into: wire, count: count)
    }

    @inline(__always)
    func reduce(_ incoming: UnsafePointer<UInt16>, into values: UnsafeMutablePointer<Float>, wire: UnsafeMutablePointer<UInt16>,
                count: Int, op: ReduceOp, completes: Bool) {
        addDecoded(incoming, into: values, count: count, op: op)
        format.encode(values, into: wire, count: count)
        // The owner keeps what every other rank will decode, not its unrounded sum.
        if completes { format.decode(wire, into: values, count: count) }
    }

    @inline(__always)
    func gathered(_ wire: UnsafePointer<UInt16>, into values: UnsafeMutablePointer<Float>, count: Int) {
        format.decode(wire, into: values, count: count)
    }

    /// `values[i] = values[i] ⊕ decode(coded[i])` in Float32, in blocks (decode into a stack buffer, then
    /// combine: both loops vectorise).
    private func addDecoded(_ coded: UnsafePointer<UInt16>, into values: UnsafeMutablePointer<Float>, count: Int, op: ReduceOp) {
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 1024) { tmp in
            let t = tmp.baseAddress!
            var start = 0
            while start < count {
                let k = Swift.min(1024, count - start)
                format.decode(coded + start, into: t, count: k)
                op.combine(into: values + start, from: t, count: k)
                start += k
            }
        }
    }
}

/// What `dml-train --compress` runs: the leading elements of each buffer (the gradient) through
/// `CompressedRingAllreduce`, the last `exactTail` elements (the loss sum and row count) through `exact`, the
/// uncompressed algorithm chosen with `--allreduce`, so they stay exact. It sends nothing itself: the
/// compressed ring and `exact` each talk on their own duplicate communicator.
///
/// With `errorFeedback`, each rank first rounds its own contribution to 16 bits and keeps what that lost
/// (the residual), which it adds to its next contribution: over steps, nothing a rank contributes is lost
/// to its own rounding. The residual is per rank (each rank's differs), the reduced result is still the
/// same bits on every rank. It is not checkpointed: a resumed run starts with a zero residual.
/// Cost: the compressed ring's, plus one small allreduce of the tail, plus (with error feedback) three
/// passes over the buffer and 4 bytes per element of residual.
public final class CompressedAllreduce: AllreduceAlgorithm {
    public var name: String { compressed.name }
    public let compressed: CompressedRingAllreduce
    public let exact: AllreduceAlgorithm
    public let exactTail: Int
    public let errorFeedback: Bool
    private var residual: [Float] = []
    private var coded: [UInt16] = []

    public init(comm: Communicator, format: WireFormat, exact: AllreduceAlgorithm, exactTail: Int, errorFeedback: Bool) {
        compressed = CompressedRingAllreduce(comm: comm, format: format)
        self.exact = exact
        self.exactTail = Swift.max(0, exactTail)
        self.errorFeedback = errorFeedback
    }

    /// Collective, once: the set-up of the compressed ring, then of `exact`.
    public func prepare() throws {
        try compressed.prepare()
        try exact.prepare()
    }

    public func run(_ buffer: UnsafeMutableBufferPointer<Double>, op: ReduceOp) throws { try exact.run(buffer, op: op) }

    public func run(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws {
        let tail = Swift.min(exactTail, buffer.count), m = buffer.count - tail
        let head = UnsafeMutableBufferPointer(rebasing: buffer[0..<m])
        if errorFeedback { feedBack(head) }
        try compressed.run(head, op: op)
        if tail > 0 { try exact.run(UnsafeMutableBufferPointer(rebasing: buffer[m...]), op: op) }
    }

    /// Error feedback on this rank's contribution `head` (before it is reduced): adds the residual kept from the
    /// previous call, rounds to the wire format and keeps what the rounding lost. (A sharded update's
    /// reduce-scatter calls it as the allreduce does.) Cost: three passes over `head`.
    public func feedBack(_ head: UnsafeMutableBufferPointer<Float>) {
        let m = head.count
        if m > 0 {
            if residual.count != m {
                residual = [Float](repeating: 0, count: m)
                coded = [UInt16](repeating: 0, count: m)
            }
            let x = head.baseAddress!, format = compressed.format
            residual.withUnsafeMutableBufferPointer { e in
                coded.withUnsafeMutableBufferPointer { c in
                    let e = e.baseAddress!, c = c.baseAddress!
                    for i in 0..<m { x[i] += e[i] }
                    format.encode(x, into: c, count: m)
                    // e = x − round(x), then x = round(x): what this rank sends loses nothing more.
                    format.decode(c, into: e, count: m)
                    for i in 0..<m {
                        let q = e[i]
                        e[i] = x[i] - q
                        x[i] = q
                    }
                    // An infinite or NaN contribution must not poison every later step's residual.
                    for i in 0..<m where !e[i].isFinite { e[i] = 0 }
                }
            }
        }
    }
}
