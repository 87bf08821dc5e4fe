internal import CMPI
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The roll call of `CollectiveStall`, over MPI: one per process, on its own duplicate of `MPI_COMM_WORLD`
/// (so its messages never meet a collective's), shared by every communicator split from the world.
///
/// Messages (one Int64 each):
/// - *call* (rank 0 or 1 → every other rank, payload: the call's number): "answer if you are alive";
/// - *answer* (→ the caller, tag `answerTag + number`, payload: the answering rank);
/// - *notice* (any rank → ranks 0 and 1, payload: the sender): "my wait expired, hold a roll call".
/// Every rank keeps a receive posted for a call from rank 0 and from rank 1, and ranks 0 and 1 one for a
/// notice from anyone; `service()` (called by every polling wait about once a millisecond) answers calls and
/// notes notices, then posts the receive again. Cost when nothing is wrong: two or three `MPI_Test` per
/// millisecond of waiting.
final class MPIRollCall {
    let control: MPI_Comm
    let rank: Int
    let size: Int
    static let callTag: Int32 = 1, noticeTag: Int32 = 2, answerTag: Int32 = 100

    /// Receive slots: [call from 0, call from 1, notice], and their requests.
    private let slots = UnsafeMutablePointer<Int64>.allocate(capacity: 3)
    private var requests: [MPI_Request?] = [nil, nil, nil]
    /// Sends in flight (answers, calls, notices) and their one-value buffers.
    private var sends: [(MPI_Request?, UnsafeMutablePointer<Int64>)] = []
    private var calls: Int64 = 0
    /// Set when a notice arrived (ranks 0 and 1): the next polling wait holds a roll call.
    private(set) var noticed = false

    init(world: MPI_Comm) throws {
        var dup: MPI_Comm? = nil
        try MPICommunicator.check(MPI_Comm_dup(world, &dup), "MPI_Comm_dup")
        control = dup!
        MPI_Comm_set_errhandler(control, cmpi_errors_return())
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(control, &r)
        MPI_Comm_size(control, &s)
        rank = Int(r)
        size = Int(s)
        slots.initialize(repeating: 0, count: 3)
        for caller in 0..<2 where caller < size && caller != rank { try post(caller) }
        if rank < 2 && size > 1 { try post(2) }
    }

    /// Posts receive `i`: 0 and 1 a call from that rank, 2 a notice from anyone.
    private func post(_ i: Int) throws {
        let source = i == 2 ? cmpi_any_source() : Int32(i)
        try MPICommunicator.check(MPI_Irecv(slots + i, 1, cmpi_int64(), source, i == 2 ? Self.noticeTag : Self.callTag,
                                            control, &requests[i]), "MPI_Irecv (roll call)")
    }

    private func send(_ value: Int64, to dest: Int, tag: Int32) throws {
        let buffer = UnsafeMutablePointer<Int64>.allocate(capacity: 1)
        buffer.pointee = value
        var request: MPI_Request? = nil
        try MPICommunicator.check(MPI_Isend(buffer, 1, cmpi_int64(), Int32(dest), tag, control, &request), "MPI_Isend (roll call)")
        sends.append((request, buffer))
    }

    /// Answers the calls that have arrived, notes notices, and frees completed sends.
    func service() throws {
        for i in 0..<3 where requests[i] != nil {
            var done: Int32 = 0
            try MPICommunicator.check(MPI_Test(&requests[i], &done, cmpi_status_ignore()), "MPI_Test (roll call)")
            guard done != 0 else { continue }
            if i == 2 { noticed = true } else { try send(Int64(rank), to: i, tag: Self.answerTag + Int32(truncatingIfNeeded: slots[i] % 1000)) }
            try post(i)
        }
        var kept: [(MPI_Request?, UnsafeMutablePointer<Int64>)] = []
        for (var request, buffer) in sends {
            var done: Int32 = 0
            MPI_Test(&request, &done, cmpi_status_ignore())
            if done != 0 { buffer.deallocate() } else { kept.append((request, buffer)) }
        }
        sends = kept
    }

    /// Tells ranks 0 and 1 that this rank's wait expired.
    func notify() throws {
        for dest in 0..<Swift.min(2, size) where dest != rank { try send(Int64(rank), to: dest, tag: Self.noticeTag) }
    }

    /// Asks every other rank to answer and listens for `window` seconds (answering the other caller's call
    /// meanwhile). Returns the ranks that answered.
    func call(window: Double) throws -> Set<Int> {
        calls += 1
        let number = calls
        let tag = Self.answerTag + Int32(truncatingIfNeeded: number % 1000)
        let others = (0..<size).filter { $0 != rank }
        let answers = UnsafeMutablePointer<Int64>.allocate(capacity: Swift.max(1, others.count))
        var pending: [MPI_Request?] = Array(repeating: nil, count: others.count)
        for (i, q) in others.enumerated() {
            try MPICommunicator.check(MPI_Irecv(answers + i, 1, cmpi_int64(), Int32(q), tag, control, &pending[i]), "MPI_Irecv (roll call)")
        }
        for q in others { try send(number, to: q, tag: Self.callTag) }
        var answered = Set<Int>()
        let start = DispatchTime.now().uptimeNanoseconds
        while answered.count < others.count && Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 < window {
            for (i, q) in others.enumerated() where !answered.contains(q) {
                var done: Int32 = 0
                try MPICommunicator.check(MPI_Test(&pending[i], &done, cmpi_status_ignore()), "MPI_Test (roll call)")
                if done != 0 { answered.insert(q) }
            }
            try service()
            usleep(200)
        }
        // Receives nobody answered stay posted (with their buffer) until the job ends: cancelling a receive
        // whose message may be arriving is not worth the risk here.
        if answered.count == others.count { answers.deallocate() }
        return answered
    }

    /// Answers calls for `seconds` (a rank waiting for the reporter to end the job).
    func keepAnswering(for seconds: Double) {
        let start = DispatchTime.now().uptimeNanoseconds
        while Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 < seconds {
            try? service()
            usleep(1000)
        }
    }

    /// The roll call after this rank's wait in `phase` expired (`interrupted`: a stop signal cut it short).
    func stall(phase: String, seconds: Double, interrupted: Bool) throws -> CollectiveStall {
        let window = interrupted ? CollectiveStall.interruptedWindow : CollectiveStall.window(deadline: seconds)
        noticed = false
        guard size > 1 else {
            return CollectiveStall(phase: phase, seconds: seconds, missing: [], reporter: true, rank: rank, interrupted: interrupted)
        }
        guard rank < 2 else {
            // Ranks 0 and 1 got the stop signal too and hold their own quick roll call; a notice would only
            // make theirs wait the full window.
            if !interrupted { try notify() }
            return CollectiveStall(phase: phase, seconds: seconds, missing: [], reporter: false, rank: rank, interrupted: interrupted)
        }
        let answered = try call(window: window)
        let missing = (0..<size).filter { $0 != rank && !answered.contains($0) }
        return CollectiveStall(phase: phase, seconds: seconds, missing: missing, reporter: rank == 0 || missing.contains(0),
                               rank: rank, interrupted: interrupted)
    }

    /// Cancels the posted receives (before `MPI_Finalize`).
    func close() {
        for i in 0..<3 where requests[i] != nil {
            MPI_Cancel(&requests[i])
            MPI_Wait(&requests[i], cmpi_status_ignore())
        }
        for (var request, _) in sends { MPI_Wait(&request, cmpi_status_ignore()) }
        sends.removeAll()
    }
}
