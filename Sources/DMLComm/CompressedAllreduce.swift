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
/// The same segmented, pipelined ring as `RingAllreduce` (reduce-scatter, then allgather, the same chunk
/// schedule, the same order of operations), with one difference: a rank adds the decoded incoming partial
/// sum to its own Float32 values in Float32 and rounds the result to 16 bits only to send it on. The rank
/// that completes a chunk rounds the full sum to 16 bits once; those 16 bits travel unchanged around the
/// allgather, and every rank — the owner included — stores their decoded value. So every rank ends with the
/// same bits, and each element is the exact sum up to one 16-bit rounding per ring hop (p − 1 roundings of
/// partial sums, at most `p · u · Σ|x|` with u = `format.unitRoundoff`).
///
/// Values outside the format's range become ±inf (fp16: |x| > 65504), so scale sums before compressing them
/// (the trainer divides the gradient by the global batch size first). On one rank the buffer is just rounded.
///
/// Cost: `2(p−1)·α + (p−1)/p · n·β` (half the ring's bandwidth term) plus an encode and a decode per element
/// per step. Scratch: a 16-bit mirror of the buffer (2n bytes) and `window` receive segments, kept between
/// calls. Double buffers are not compressed: they go to `RingAllreduce`.
public final class CompressedRingAllreduce: AllreduceAlgorithm {
    public var name: String { "ring-\(format.rawValue)" }
    public let format: WireFormat
    let comm: Communicator
    /// Bytes per segment on the wire. `DML_RING_SEGMENT` overrides the default, as for the ring.
    public let segmentBytes: Int
    public let window: Int
    private var wire = UnsafeMutableBufferPointer<UInt16>(start: nil, count: 0)
    private var scratch = UnsafeMutableBufferPointer<UInt16>(start: nil, count: 0)
    private var receives: [CommRequest] = []
    private var sendsThisStep: [CommRequest] = []
    private var sendsNextStep: [CommRequest] = []
    private lazy var uncompressed = RingAllreduce(comm: comm)

    public init(comm: Communicator, format: WireFormat, segmentBytes: Int? = nil, window: Int = 4) {
        self.comm = comm
        self.format = format
        let fromEnv = ProcessInfo.processInfo.environment["DML_RING_SEGMENT"].flatMap { ByteCount.parse($0) }
        self.segmentBytes = Swift.max(2, segmentBytes ?? fromEnv ?? RingAllreduce.defaultSegmentBytes)
        self.window = Swift.max(1, window)
    }

    deinit {
        wire.deallocate()
        scratch.deallocate()
    }

    public func run(_ buffer: UnsafeMutableBufferPointer<Double>, op: ReduceOp) throws { try uncompressed.run(buffer, op: op) }

    public func run(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws {
        let p = comm.size, r = comm.rank, n = buffer.count
        guard n > 0, let base = buffer.baseAddress else { return }
        if wire.count < n {
            wire.deallocate()
            wire = .allocate(capacity: n)
        }
        let w = wire.baseAddress!
        guard p > 1 else {
            format.encode(base, into: w, count: n)
            format.decode(w, into: base, count: n)
            return
        }
        let right = comm.rightNeighbour, left = comm.leftNeighbour
        let segment = Swift.max(1, segmentBytes / 2)
        let slots = window
        let slotElements = Swift.min(segment, n / p + 1)
        if scratch.count < slots * slotElements {
            scratch.deallocate()
            scratch = .allocate(capacity: slots * slotElements)
        }
        let incoming = scratch.baseAddress!
        if receives.count < slots { receives = Array(repeating: .completed, count: slots) }
        sendsThisStep.removeAll(keepingCapacity: true)
        sendsNextStep.removeAll(keepingCapacity: true)
        let steps = 2 * (p - 1)
        func received(_ t: Int) -> Range<Int> {
            let c = t < p - 1 ? r - t - 1 : r - (t - (p - 1))
            return RingAllreduce.chunk((c % p + p) % p, count: n, parts: p)
        }
        func bytes(_ range: Range<Int>) -> UnsafeRawBufferPointer {
            UnsafeRawBufferPointer(start: w + range.lowerBound, count: range.count * 2)
        }
        let own = RingAllreduce.chunk(r, count: n, parts: p)
        format.encode(base + own.lowerBound, into: w + own.lowerBound, count: own.count)
        for lower in Swift.stride(from: own.lowerBound, to: own.upperBound, by: segment) {
            sendsThisStep.append(try comm.isend(bytes(lower ..< Swift.min(lower + segment, own.upperBound)), to: right, tag: 0))
        }
        for t in 0..<steps {
            let chunk = received(t)
            let reduce = t < p - 1, forward = t + 1 < steps, completes = t == p - 2
            let segments = (chunk.count + segment - 1) / segment
            func range(_ j: Int) -> Range<Int> {
                let lower = chunk.lowerBound + j * segment
                return lower ..< Swift.min(lower + segment, chunk.upperBound)
            }
            func post(_ j: Int) throws {
                let seg = range(j)
                let into = reduce ? incoming + (j % slots) * slotElements : w + seg.lowerBound
                receives[j % slots] = try comm.irecv(UnsafeMutableRawBufferPointer(start: into, count: seg.count * 2),
                                                     from: left, tag: t)
            }
            for j in 0..<Swift.min(slots, segments) { try post(j) }
            for j in 0..<segments {
                try comm.wait(&receives[j % slots])
                let seg = range(j)
                let values = base + seg.lowerBound, coded = w + seg.lowerBound
                if reduce {
                    addDecoded(incoming + (j % slots) * slotElements, into: values, count: seg.count, op: op)
                    format.encode(values, into: coded, count: seg.count)
                    // The owner keeps what every other rank will decode, not its unrounded sum.
                    if completes { format.decode(coded, into: values, count: seg.count) }
                } else {
                    format.decode(coded, into: values, count: seg.count)
                }
                if forward { sendsNextStep.append(try comm.isend(bytes(seg), to: right, tag: t + 1)) }
                if j + slots < segments { try post(j + slots) }
            }
            try comm.waitAll(&sendsThisStep)
            swap(&sendsThisStep, &sendsNextStep)
        }
        try comm.waitAll(&sendsThisStep)
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
/// uncompressed algorithm chosen with `--allreduce`, so they stay exact.
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

    public func run(_ buffer: UnsafeMutableBufferPointer<Double>, op: ReduceOp) throws { try exact.run(buffer, op: op) }

    public func run(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws {
        let tail = Swift.min(exactTail, buffer.count), m = buffer.count - tail
        let head = UnsafeMutableBufferPointer(rebasing: buffer[0..<m])
        if errorFeedback && m > 0 {
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
        try compressed.run(head, op: op)
        if tail > 0 { try exact.run(UnsafeMutableBufferPointer(rebasing: buffer[m...]), op: op) }
    }
}
