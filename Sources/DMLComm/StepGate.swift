import CMPI
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What a step gate learned when its deadline passed: the ranks that had not arrived, as far as this rank
/// can tell (rank 0 hears from every rank; rank 1 hears from rank 0; other ranks know nothing).
public struct GateTimeout: Error, CustomStringConvertible {
    public let step: Int
    public let seconds: Double
    /// Ranks that did not reach the gate in time; empty when this rank cannot tell.
    public let missing: [Int]
    /// True on the rank that should report (rank 0, or rank 1 when rank 0 is the one missing).
    public let reporter: Bool
    public var description: String {
        "no answer within \(seconds) s at the start of step \(step)"
    }
}

/// A barrier with a deadline that also agrees on one flag, run by every rank at the start of each training
/// step: it completes when every rank has arrived (and returns the maximum of their flags), or, when
/// `timeout` seconds pass first, throws `GateTimeout` naming the ranks that never arrived.
///
/// `onWait` is called about every 100 ms while the gate waits (seconds waited so far, the ranks not yet
/// arrived as far as this rank knows), so a caller can react to a signal.
public protocol StepGate {
    func gate(flag: Int64, step: Int, timeout: Double, onWait: (Double, [Int]) -> Void) throws -> Int64
}

extension MPICommunicator: StepGate {
    /// A tag no other DML message uses (the ring uses small tags, the typed helpers 0).
    static let gateTag: Int32 = 0x6A7E

    /// Cost: one `MPI_Iallreduce` of one Int64, and one 8-byte message from every rank to rank 0 (and from
    /// rank 0 to rank 1), polled with `MPI_Test`: a few microseconds per step on shared memory.
    /// `timeout` 0 waits forever.
    public func gate(flag: Int64, step: Int, timeout: Double, onWait: (Double, [Int]) -> Void) throws -> Int64 {
        let tag = Self.gateTag
        // Buffers must live until the requests complete: one allocation for all of them.
        let slots = UnsafeMutablePointer<Int64>.allocate(capacity: size + 3)
        var release = true
        defer { if release { slots.deallocate() } }
        slots.initialize(repeating: 0, count: size + 3)
        slots[size] = Int64(step)       // what this rank sends
        slots[size + 1] = flag           // Iallreduce input
        var arrivals: [MPI_Request?] = []   // receives on rank 0 (from 1…p−1) or rank 1 (from 0)
        var arrivalFrom: [Int] = []
        var sends: [MPI_Request?] = []
        func irecv(_ r: Int) throws {
            var req: MPI_Request? = nil
            try Self.check(MPI_Irecv(slots + r, 1, cmpi_int64(), Int32(r), tag, handle, &req), "MPI_Irecv from rank \(r)")
            arrivals.append(req)
            arrivalFrom.append(r)
        }
        func isend(_ r: Int) throws {
            var req: MPI_Request? = nil
            try Self.check(MPI_Isend(slots + size, 1, cmpi_int64(), Int32(r), tag, handle, &req), "MPI_Isend to rank \(r)")
            sends.append(req)
        }
        if size > 1 {
            if rank == 0 {
                for r in 1..<size { try irecv(r) }
                try isend(1)
            } else {
                try isend(0)
                if rank == 1 { try irecv(0) }
            }
        }
        var all: MPI_Request? = nil
        try Self.check(MPI_Iallreduce(slots + size + 1, slots + size + 2, 1, cmpi_int64(), cmpi_op_max(), handle, &all),
                       "MPI_Iallreduce")
        let start = DispatchTime.now().uptimeNanoseconds
        var nextCallback = 0.1
        var polls = 0
        while true {
            var done: Int32 = 0
            try Self.check(MPI_Test(&all, &done, cmpi_status_ignore()), "MPI_Test")
            if done != 0 { break }
            polls += 1
            // Spin briefly (ranks are usually close), then yield the core between polls.
            if polls > 2000 { usleep(50) }
            let waited = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            if waited >= nextCallback || (timeout > 0 && waited >= timeout) {
                nextCallback = waited + 0.1
                var missing: [Int] = []
                for i in arrivals.indices {
                    var got: Int32 = 0
                    try Self.check(MPI_Test(&arrivals[i], &got, cmpi_status_ignore()), "MPI_Test")
                    // A completed request becomes MPI_REQUEST_NULL and tests as complete from then on.
                    if got == 0 { missing.append(arrivalFrom[i]) }
                }
                if timeout > 0 && waited >= timeout {
                    let reporter = rank == 0 || (rank == 1 && missing == [0])
                    // Requests are left pending (and their buffers alive): the caller ends the job.
                    release = false
                    throw GateTimeout(step: step, seconds: timeout, missing: rank == 0 || rank == 1 ? missing : [], reporter: reporter)
                }
                onWait(waited, missing)
            }
        }
        // Everyone arrived, so every arrival message was sent: these complete at once.
        if !arrivals.isEmpty { try Self.check(MPI_Waitall(Int32(arrivals.count), &arrivals, cmpi_statuses_ignore()), "MPI_Waitall") }
        if !sends.isEmpty { try Self.check(MPI_Waitall(Int32(sends.count), &sends, cmpi_statuses_ignore()), "MPI_Waitall") }
        return slots[size + 2]
    }
}
