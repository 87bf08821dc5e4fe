import Foundation

/// The two halves of `RingAllreduce`, callable apart: a **reduce-scatter** after which rank r holds the full
/// reduction of chunk r+1 (mod p) of the buffer (`ownedChunk`), and an **allgather** that copies every
/// rank's chunk r+1 to all ranks. A sharded update (`--shard-update`, ZeRO stages 1–2) runs the optimizer on
/// its owned chunk between them.
///
/// Invariant: the two calls in a row send exactly the messages of one `RingAllreduce.run` (the same
/// `RingSchedule`, the same chunks, segments and tags), so every element is reduced in the ring's order
/// (chunk c along c, c+1, …, c−1): the reduce-scatter's owned chunk holds the bits the ring allreduce would
/// give, and an allgather of unchanged values reproduces the ring allreduce bit for bit.
///
/// Cost with n bytes: each half `(p−1)·α + (p−1)/p · n·β`, so both together are the ring allreduce's
/// `2(p−1)·α + 2(p−1)/p · n·β`: sharding the update costs no extra bytes on the wire.
public final class RingReduceScatter {
    let comm: PrivateCommunicator
    let schedule: RingSchedule
    /// The 16-bit view of a buffer reduce-scattered on a 16-bit wire.
    private var wire = UnsafeMutableBufferPointer<UInt16>(start: nil, count: 0)

    deinit { wire.deallocate() }

    /// `segmentBytes` nil: the ring's default (or `DML_RING_SEGMENT`), so the halves cut segments as the
    /// ring allreduce does.
    public init(comm: Communicator, segmentBytes: Int? = nil, window: Int = 4) {
        self.comm = PrivateCommunicator(comm)
        schedule = RingSchedule(segmentBytes: Swift.max(1, segmentBytes ?? RingSchedule.segmentBytesFromEnvironment ?? RingAllreduce.defaultSegmentBytes),
                                window: window)
    }

    /// Collective, once: the duplicate communicator.
    public func prepare() throws { _ = try comm.get() }

    /// The elements of a buffer of `count` that rank `rank` of `parts` holds reduced after `reduceScatter`:
    /// the ring's chunk `rank + 1` (mod `parts`). The chunks of the ranks tile `0..<count`, sizes differing by
    /// at most one.
    public static func ownedChunk(count: Int, rank: Int, parts: Int) -> Range<Int> {
        RingAllreduce.chunk((rank + 1) % parts, count: count, parts: parts)
    }

    /// Sums `buffer` over the ranks into this rank's `ownedChunk`; the other elements are left holding
    /// partial sums (meaningless). Collective.
    public func reduceScatter(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        try run(buffer, phase: .reduceScatter)
    }

    /// `reduceScatter` of integers (`--reproducible`'s exact fixed-point sums, then converted and allgathered as
    /// Floats): a buffer of the same count is cut into the same chunks whatever its element type.
    public func reduceScatter(_ buffer: UnsafeMutableBufferPointer<Int64>) throws {
        let comm = try comm.get()
        guard buffer.count > 0, let base = buffer.baseAddress else { return }
        try schedule.run(Unencoded<Int64>(), values: base, wire: base, count: buffer.count, op: .sum, comm: comm, phase: .reduceScatter)
    }

    /// The reduce-scatter on a 16-bit wire (`--compress`): the first half of `CompressedRingAllreduce`, message
    /// for message, so the owned chunk holds the bits that allreduce gives it (the decoded 16-bit sum).
    public func reduceScatter(_ buffer: UnsafeMutableBufferPointer<Float>, format: WireFormat) throws {
        let comm = try comm.get()
        guard buffer.count > 0, let base = buffer.baseAddress else { return }
        if wire.count < buffer.count {
            wire.deallocate()
            wire = .allocate(capacity: buffer.count)
        }
        try schedule.run(SixteenBit(format: format), values: base, wire: wire.baseAddress!, count: buffer.count, op: .sum, comm: comm,
                         phase: .reduceScatter)
    }

    /// Copies every rank's `ownedChunk` of `buffer` into all ranks' buffers (this rank's own chunk is sent,
    /// never written). Collective.
    public func allgather(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        try run(buffer, phase: .allgather)
    }

    private func run(_ buffer: UnsafeMutableBufferPointer<Float>, phase: RingPhase) throws {
        let comm = try comm.get()
        guard buffer.count > 0, let base = buffer.baseAddress else { return }
        try schedule.run(Unencoded<Float>(), values: base, wire: base, count: buffer.count, op: .sum, comm: comm, phase: phase)
    }
}
