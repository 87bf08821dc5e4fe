import Foundation
import DMLComm

/// Per-rank spans of what a step spends its time on (`--timeline trace.json`), written by rank 0 as one
/// Chrome trace (opens in Perfetto or chrome://tracing): one process per rank, one complete event ("X") per
/// span, timestamps in microseconds from a common origin taken right after a barrier.
///
/// Span names: `data` (gathering the batch's rows), `compute` (forward and backward), `wait` (the step gate:
/// waiting for the slowest rank — a straggler shows here on the *other* ranks), `allreduce`, `update`
/// (optimizer), and outside the steps `evaluate`, `verify`, `checkpoint`. Recording is two clock reads and an
/// append into a reserved array; nothing is communicated until `write`.
public final class Timeline {
    public struct Span: Sendable {
        public let name: String
        public let step: Int
        /// Nanoseconds from the origin.
        public let start: UInt64
        public let duration: UInt64
    }

    /// At most this many spans are kept per rank (the first ones); later spans are counted, not stored.
    public static let capacity = 500_000

    public private(set) var spans: [Span] = []
    public private(set) var dropped = 0
    private var origin: UInt64

    public init() {
        origin = DispatchTime.now().uptimeNanoseconds
        spans.reserveCapacity(4096)
    }

    /// Sets the common origin: a barrier, then every rank reads its clock (ranks on one node share the
    /// clock; across nodes the barrier's exit skew, microseconds, is the alignment error). Collective.
    public func synchronize(_ comm: Communicator) throws {
        try comm.barrier()
        origin = DispatchTime.now().uptimeNanoseconds
    }

    @inline(__always)
    public func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    /// Records the span `name` of `step` from `start` (a value of `now()`) until now; returns now, so
    /// consecutive spans chain without another clock read.
    @discardableResult
    public func record(_ name: String, step: Int, since start: UInt64) -> UInt64 {
        let end = now()
        guard spans.count < Self.capacity else { dropped += 1; return end }
        let from = start > origin ? start - origin : 0
        spans.append(Span(name: name, step: step, start: from, duration: end > start ? end - start : 0))
        return end
    }

    /// Total nanoseconds per span name.
    public func totals() -> [String: UInt64] {
        spans.reduce(into: [:]) { $0[$1.name, default: 0] += $1.duration }
    }

    /// This rank's spans as Chrome trace events (comma-separated JSON objects, no brackets).
    public func chromeEvents(rank: Int) -> String {
        var out = "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":\(rank),\"tid\":0,\"args\":{\"name\":\"rank \(rank)\"}}"
        out.reserveCapacity(spans.count * 96)
        for s in spans {
            out += ",{\"name\":\"\(s.name)\",\"cat\":\"\(Self.category(s.name))\",\"ph\":\"X\",\"pid\":\(rank),\"tid\":0"
            out += ",\"ts\":\(Self.microseconds(s.start)),\"dur\":\(Self.microseconds(s.duration)),\"args\":{\"step\":\(s.step)}}"
        }
        return out
    }

    static func category(_ name: String) -> String {
        switch name {
        case "wait", "allreduce": return "communication"
        case "evaluate", "verify", "checkpoint": return "session"
        default: return "compute"
        }
    }

    static func microseconds(_ ns: UInt64) -> String { String(format: "%.3f", Double(ns) / 1000) }

    /// Gathers every rank's events to rank 0, which writes the trace to `path` atomically. Collective:
    /// every rank sends its events (an 8-byte length, then the bytes) to rank 0.
    public func write(to path: String, comm world: Communicator) throws {
        // Its own communicator (collective): the gathering's messages can meet no other concern's.
        let comm = try world.duplicate()
        let mine = Array(chromeEvents(rank: comm.rank).utf8)
        let tag = 0
        guard comm.rank == 0 else {
            var n = Int64(mine.count)
            try withUnsafeBytes(of: &n) { try comm.send($0, to: 0, tag: tag) }
            try mine.withUnsafeBytes { try comm.send($0, to: 0, tag: tag + 1) }
            return
        }
        var file = Array("{\"displayTimeUnit\":\"ms\",\"traceEvents\":[".utf8)
        file += mine
        for r in 1..<comm.size {
            var n: Int64 = 0
            try withUnsafeMutableBytes(of: &n) { try comm.recv($0, from: r, tag: tag) }
            var bytes = [UInt8](repeating: 0, count: Int(n))
            try bytes.withUnsafeMutableBytes { try comm.recv($0, from: r, tag: tag + 1) }
            file += Array(",".utf8) + bytes
        }
        file += Array("]}\n".utf8)
        try AtomicFile.write(file, to: path)
    }

    /// One line for rank 0's log that finds the slow rank: each rank's mean compute time per step
    /// (`data` + `compute` + `update`), the slowest against the median, and the share of a step spent in
    /// communication (`wait` + `allreduce`) averaged over ranks. Collective: two allgathers of `size` values.
    public func balanceSummary(comm: Communicator, steps: Int) throws -> String {
        let t = totals()
        let compute = Double((t["data"] ?? 0) + (t["compute"] ?? 0) + (t["update"] ?? 0))
        let communication = Double((t["wait"] ?? 0) + (t["allreduce"] ?? 0))
        let computes = try comm.allgathered(Int64(compute)).map(Double.init)
        let comms = try comm.allgathered(Int64(communication)).map(Double.init)
        let perStep = computes.map { $0 / Double(max(1, steps)) / 1e6 }  // ms
        let sorted = perStep.sorted()
        let median = sorted[sorted.count / 2]
        let slowest = perStep.indices.max { perStep[$0] < perStep[$1] }!
        let share = zip(computes, comms).map { c, w in c + w > 0 ? w / (c + w) : 0 }.reduce(0, +) / Double(comm.size)
        let behind = median > 0 ? (perStep[slowest] / median - 1) * 100 : 0
        return String(format: "timeline: compute per step %.2f ms (median over ranks); slowest rank %d at %.2f ms (%+.0f%%); "
                      + "communication %.0f%% of a step", median, slowest, perStep[slowest], behind, share * 100)
    }
}
