internal import CMPI
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A `Communicator` over OpenMPI's `MPI_COMM_WORLD` (or a communicator split from it).
///
/// Errors are returned, not fatal: the world communicator gets `MPI_ERRORS_RETURN`, and each call turns a
/// non-success code into `CommError.mpi` naming the call. Messages larger than 1 GiB are sent as several
/// messages, since MPI counts are `Int32`.
///
/// Deadlines: with no deadline set every call blocks in MPI as usual. Under a deadline (`watched`) every
/// blocking call becomes its non-blocking form (`MPI_Isend`/`Irecv`, `MPI_Ibcast`, `MPI_Ibarrier`,
/// `MPI_Iallreduce`) completed by a polling loop that spins, then yields the core between polls, answers
/// roll calls, and on expiry holds one (`MPIRollCall`) and throws `CollectiveStall`. The calls MPI has no
/// non-blocking form for (`MPI_Comm_split`, `MPI_Comm_split_type`, `MPI_Win_allocate_shared`) are preceded by
/// a polled barrier under the deadline, so a rank that never arrives is found there; `duplicate` polls
/// `MPI_Comm_idup`.
public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int
    /// The thread support MPI granted at initialisation (we ask for `MPI_THREAD_SERIALIZED`).
    /// The thread support MPI granted (`MPI_Query_thread`; -1 before `MPI_Init`).
    public static var threadLevel: Int32 {
        var initialized: Int32 = 0
        MPI_Initialized(&initialized)
        guard initialized != 0 else { return -1 }
        var provided: Int32 = 0
        MPI_Query_thread(&provided)
        return provided
    }
    public var allowsSerializedThreads: Bool { Self.threadLevel >= Int32(MPI_THREAD_SERIALIZED) }
    /// The MPI handle (an `MPI_Comm`).
    let handle: MPI_Comm
    /// Reused by `waitAll`, so steady-state waits allocate nothing.
    private var waitScratch: [MPI_Request?] = []
    public let deadlines: DeadlineState
    /// The world's roll call (shared by every communicator split from it); nil on a wrapped foreign handle.
    let rollCall: MPIRollCall?

    /// Largest single message, in bytes. MPI counts are Int32; 1 GiB keeps well clear of that.
    static let maxMessageBytes = 1 << 30

    /// Initialises MPI (once per process) and returns the world communicator. A program run without
    /// `mpirun` becomes a singleton job of one rank.
    public static func initializeWorld() throws -> MPICommunicator {
        var initialized: Int32 = 0
        MPI_Initialized(&initialized)
        if initialized == 0 {
            var provided: Int32 = 0
            // SERIALIZED: a communication thread may run a bucket's allreduce while the main thread computes
            // (`Trainer`'s overlap); never two threads in MPI at once.
            let rc = MPI_Init_thread(nil, nil, Int32(MPI_THREAD_SERIALIZED), &provided)
            guard rc == MPI_SUCCESS else { throw CommError.mpi(call: "MPI_Init_thread", code: rc, message: errorString(rc)) }
        }
        let world = cmpi_comm_world()!
        try check(MPI_Comm_set_errhandler(world, cmpi_errors_return()), "MPI_Comm_set_errhandler")
        let roll = try MPIRollCall(world: world)
        worldRollCall = roll
        return try MPICommunicator(handle: world, deadlines: DeadlineState(), rollCall: roll)
    }

    /// The world's roll call, closed by `finalize`.
    nonisolated(unsafe) private static var worldRollCall: MPIRollCall?

    /// True for communicators this object created (by a split) and frees when it goes away.
    private let owned: Bool

    /// Wraps an existing communicator handle; `owned`: free it (`MPI_Comm_free`) when this object goes away.
    /// `deadlines` and `rollCall` are shared with the communicator it was split from.
    init(handle: MPI_Comm, owned: Bool = false, deadlines: DeadlineState, rollCall: MPIRollCall?) throws {
        self.handle = handle
        self.owned = owned
        self.deadlines = deadlines
        self.rollCall = rollCall
        var r: Int32 = 0, s: Int32 = 0
        try Self.check(MPI_Comm_rank(handle, &r), "MPI_Comm_rank")
        try Self.check(MPI_Comm_size(handle, &s), "MPI_Comm_size")
        rank = Int(r)
        size = Int(s)
    }

    /// Finalises MPI. Call once, after the last communication, on every rank.
    public static func finalize() {
        var finalized: Int32 = 0
        MPI_Finalized(&finalized)
        guard finalized == 0 else { return }
        worldRollCall?.close()
        worldRollCall = nil
        MPI_Finalize()
    }

    /// The name of the host this rank runs on.
    public static var processorName: String {
        var buf = [CChar](repeating: 0, count: Int(MPI_MAX_PROCESSOR_NAME) + 1)
        var len: Int32 = 0
        MPI_Get_processor_name(&buf, &len)
        return Self.text(buf, length: len)
    }

    static func errorString(_ code: Int32) -> String {
        var buf = [CChar](repeating: 0, count: Int(cmpi_max_error_string()) + 1)
        var len: Int32 = 0
        MPI_Error_string(code, &buf, &len)
        return text(buf, length: len)
    }

    /// The first `length` characters MPI wrote into `buffer`, as UTF-8.
    static func text(_ buffer: [CChar], length: Int32) -> String {
        String(decoding: buffer.prefix(Swift.max(0, Swift.min(Int(length), buffer.count))).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    @inline(__always)
    static func check(_ rc: Int32, _ call: @autoclosure () -> String) throws {
        if rc != MPI_SUCCESS {
            abandoned = true
            throw CommError.mpi(call: call(), code: rc, message: errorString(rc))
        }
    }

    /// Set (once, never cleared) when a wait expired or an MPI call failed: the job is ending, and a rank may be
    /// gone or stalled. The collective frees that objects do when they go away (`MPI_Win_free`, which holds a
    /// barrier, and `MPI_Comm_free`) are then skipped: the error unwinds through those objects, and a barrier
    /// with a stalled rank would hang the rank that must report the stall (review 6, #1). The process ends soon
    /// after, so nothing leaks for long.
    nonisolated(unsafe) static var abandoned = false

    static func datatype(_ kind: ScalarKind) -> MPI_Datatype {
        switch kind {
        case .float32: return cmpi_float()
        case .float64: return cmpi_double()
        case .int64: return cmpi_int64()
        }
    }

    /// Splits a byte count into message-sized pieces: `(offset, length)` pairs. A zero-length buffer is one
    /// empty piece, so both sides of an exchange still match.
    static func pieces(_ count: Int) -> [(Int, Int)] {
        if count <= maxMessageBytes { return [(0, count)] }
        return stride(from: 0, to: count, by: maxMessageBytes).map { ($0, Swift.min(maxMessageBytes, count - $0)) }
    }

    public func send(_ bytes: UnsafeRawBufferPointer, to dest: Int, tag: Int) throws {
        try checkPeer(dest, "send")
        guard polling else {
            for (offset, length) in Self.pieces(bytes.count) {
                try Self.check(MPI_Send(bytes.baseAddress.map { $0 + offset }, Int32(length), cmpi_byte(),
                                        Int32(dest), Int32(tag), handle), "MPI_Send to rank \(dest)")
            }
            return
        }
        var request = try isend(bytes, to: dest, tag: tag)
        try wait(&request)
    }

    public func recv(_ bytes: UnsafeMutableRawBufferPointer, from source: Int, tag: Int) throws {
        try checkPeer(source, "recv")
        guard polling else {
            for (offset, length) in Self.pieces(bytes.count) {
                try Self.check(MPI_Recv(bytes.baseAddress.map { $0 + offset }, Int32(length), cmpi_byte(),
                                        Int32(source), Int32(tag), handle, cmpi_status_ignore()),
                               "MPI_Recv from rank \(source)")
            }
            return
        }
        var request = try irecv(bytes, from: source, tag: tag)
        try wait(&request)
    }

    public func sendrecv(sending: UnsafeRawBufferPointer, to dest: Int,
                         receiving: UnsafeMutableRawBufferPointer, from source: Int, tag: Int) throws {
        try checkPeer(dest, "sendrecv")
        try checkPeer(source, "sendrecv")
        let out = Self.pieces(sending.count), inn = Self.pieces(receiving.count)
        guard out.count == 1 && inn.count == 1 && !polling else {
            // Above 1 GiB, or under a deadline: non-blocking pieces, so neither side waits on the other's
            // first piece, completed together.
            var requests = [try irecv(receiving, from: source, tag: tag), try isend(sending, to: dest, tag: tag)]
            try waitAll(&requests)
            return
        }
        try Self.check(MPI_Sendrecv(sending.baseAddress, Int32(sending.count), cmpi_byte(), Int32(dest), Int32(tag),
                                    receiving.baseAddress, Int32(receiving.count), cmpi_byte(), Int32(source),
                                    Int32(tag), handle, cmpi_status_ignore()),
                       "MPI_Sendrecv with ranks \(dest)/\(source)")
    }

    public func isend(_ bytes: UnsafeRawBufferPointer, to dest: Int, tag: Int) throws -> CommRequest {
        try checkPeer(dest, "isend")
        var requests: [MPI_Request?] = []
        for (offset, length) in Self.pieces(bytes.count) {
            var r: MPI_Request? = nil
            try Self.check(MPI_Isend(bytes.baseAddress.map { $0 + offset }, Int32(length), cmpi_byte(), Int32(dest),
                                     Int32(tag), handle, &r), "MPI_Isend to rank \(dest)")
            requests.append(r)
        }
        return CommRequest(state: .mpi(requests))
    }

    public func irecv(_ bytes: UnsafeMutableRawBufferPointer, from source: Int, tag: Int) throws -> CommRequest {
        try checkPeer(source, "irecv")
        var requests: [MPI_Request?] = []
        for (offset, length) in Self.pieces(bytes.count) {
            var r: MPI_Request? = nil
            try Self.check(MPI_Irecv(bytes.baseAddress.map { $0 + offset }, Int32(length), cmpi_byte(), Int32(source),
                                     Int32(tag), handle, &r), "MPI_Irecv from rank \(source)")
            requests.append(r)
        }
        return CommRequest(state: .mpi(requests))
    }

    public func wait(_ request: inout CommRequest) throws {
        guard case var .mpi(requests) = request.state else { return }
        request = .completed
        try requests.withUnsafeMutableBufferPointer { try complete($0.baseAddress!, $0.count, "MPI_Wait") }
    }

    public func waitAll(_ requests: inout [CommRequest]) throws {
        // One completion over every piece: MPI progresses them all together.
        waitScratch.removeAll(keepingCapacity: true)
        for request in requests { if case let .mpi(rs) = request.state { waitScratch.append(contentsOf: rs) } }
        requests.removeAll(keepingCapacity: true)
        if waitScratch.isEmpty { return }
        try waitScratch.withUnsafeMutableBufferPointer { try complete($0.baseAddress!, $0.count, "MPI_Waitall") }
    }

    /// True when a deadline is in force: blocking calls then poll (see the type's documentation).
    var polling: Bool { (deadlines.current?.seconds ?? 0) > 0 }

    /// Completes `count` requests: `MPI_Waitall` without a deadline; under one, a polling loop that answers
    /// roll calls and throws `CollectiveStall` after the roll call when the deadline passes (or a stop
    /// signal interrupts the wait and a rank is missing). The requests of an expired wait stay pending (their
    /// buffers must stay alive): the job is ended next.
    func complete(_ requests: UnsafeMutablePointer<MPI_Request?>, _ count: Int, _ call: @autoclosure () -> String) throws {
        guard count > 0 else { return }
        guard let deadline = deadlines.current, deadline.seconds > 0 else {
            try Self.check(MPI_Waitall(Int32(count), requests, cmpi_statuses_ignore()), call())
            return
        }
        var done: Int32 = 0
        let start = DispatchTime.now().uptimeNanoseconds
        var nextCheck = start + 1_000_000
        var spins = 0
        var interruptionAnswered = false
        while true {
            try Self.check(MPI_Testall(Int32(count), requests, &done, cmpi_statuses_ignore()), call())
            if done != 0 { return }
            // Poll as MPI's own blocking waits do: spin, yielding the core to any other runnable process (a
            // rank sharing it when oversubscribed) but keeping it when idle; after 100 ms of waiting (a
            // straggler, a stall) sleep between polls so a long wait does not burn a core.
            spins += 1
            let now = DispatchTime.now().uptimeNanoseconds
            if now - start > 100_000_000 { usleep(200) } else if spins > 64 { sched_yield() }
            guard now >= nextCheck else { continue }
            nextCheck = now + 1_000_000
            var waited = Double(now - start) / 1e9
            if let since = deadlines.sinceContinued?(), since >= 0, since < waited { waited = since }
            try rollCall?.service()
            let expired = waited >= deadline.seconds || rollCall?.noticed == true
            let interrupted = !expired && !interruptionAnswered && (deadlines.interruption?(waited) ?? false)
            guard expired || interrupted else { continue }
            guard let roll = rollCall else {
                Self.abandoned = true
                throw CollectiveStall(phase: deadline.phase, seconds: deadline.seconds, missing: [], reporter: true, rank: rank)
            }
            let stall = try roll.stall(phase: deadline.phase, seconds: deadline.seconds, interrupted: interrupted)
            // A stop signal, and every rank answered: nobody died, the wait goes on.
            if interrupted && (stall.missing.isEmpty || !stall.reporter) { interruptionAnswered = true; continue }
            Self.abandoned = true
            throw stall
        }
    }

    public func keepAnswering(for seconds: Double) {
        if let rollCall { rollCall.keepAnswering(for: seconds) } else { usleep(useconds_t(seconds * 1e6)) }
    }

    /// Under a deadline, a polled barrier first: the next call (a collective MPI has no non-blocking form
    /// for) then finds every rank present.
    private func arriveTogether(_ what: String) throws {
        guard polling else { return }
        var request: MPI_Request? = nil
        try Self.check(MPI_Ibarrier(handle, &request), "MPI_Ibarrier before \(what)")
        try complete(&request, 1, "MPI_Ibarrier before \(what)")
    }

    deinit {
        var finalized: Int32 = 0
        MPI_Finalized(&finalized)
        if owned && finalized == 0 && !Self.abandoned {
            var c: MPI_Comm? = handle
            MPI_Comm_free(&c)
        }
    }

    public func split(color: Int, key: Int) throws -> Communicator {
        try arriveTogether("MPI_Comm_split")
        var new: MPI_Comm? = nil
        try Self.check(MPI_Comm_split(handle, Int32(color), Int32(key), &new), "MPI_Comm_split")
        return try MPICommunicator(handle: new!, owned: true, deadlines: deadlines, rollCall: rollCall)
    }

    public func splitByNode() throws -> Communicator {
        try arriveTogether("MPI_Comm_split_type")
        var node: MPI_Comm? = nil
        try Self.check(MPI_Comm_split_type(handle, cmpi_comm_type_shared(), Int32(rank), cmpi_info_null(), &node),
                       "MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)")
        return try MPICommunicator(handle: node!, owned: true, deadlines: deadlines, rollCall: rollCall)
    }

    public func duplicate() throws -> Communicator {
        // The handle is written when the duplication completes; a wait cut short by a stall leaves it pending
        // (the job ends next), so it lives on the heap, not in this frame.
        let slot = UnsafeMutablePointer<MPI_Comm?>.allocate(capacity: 1)
        slot.initialize(to: nil)
        if polling {
            var request: MPI_Request? = nil
            try Self.check(MPI_Comm_idup(handle, slot, &request), "MPI_Comm_idup")
            try complete(&request, 1, "MPI_Comm_idup")
        } else {
            try Self.check(MPI_Comm_dup(handle, slot), "MPI_Comm_dup")
        }
        defer { slot.deallocate() }
        let new = slot.pointee!
        try Self.check(MPI_Comm_set_errhandler(new, cmpi_errors_return()), "MPI_Comm_set_errhandler")
        return try MPICommunicator(handle: new, owned: true, deadlines: deadlines, rollCall: rollCall)
    }

    /// How many ranks of this communicator share this rank's node, and this rank's index among them.
    /// Collective.
    public func nodeLayout() throws -> (ranksOnNode: Int, nodeRank: Int) {
        try arriveTogether("MPI_Comm_split_type")
        var node: MPI_Comm? = nil
        try Self.check(MPI_Comm_split_type(handle, cmpi_comm_type_shared(), Int32(rank), cmpi_info_null(), &node),
                       "MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)")
        defer { MPI_Comm_free(&node) }
        var s: Int32 = 0, r: Int32 = 0
        try Self.check(MPI_Comm_size(node, &s), "MPI_Comm_size")
        try Self.check(MPI_Comm_rank(node, &r), "MPI_Comm_rank")
        return (Int(s), Int(r))
    }

    /// `MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)`; if that gives every rank of this communicator, an MPI-3
    /// shared window (`MPI_Win_allocate_shared`, one part per rank, placed near its owner).
    public func sharedMemoryWindow(bytesPerRank: Int) throws -> SharedMemoryWindow? {
        try arriveTogether("MPI_Comm_split_type")
        var node: MPI_Comm? = nil
        try Self.check(MPI_Comm_split_type(handle, cmpi_comm_type_shared(), Int32(rank), cmpi_info_null(), &node),
                       "MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)")
        var nodeSize: Int32 = 0
        try Self.check(MPI_Comm_size(node, &nodeSize), "MPI_Comm_size")
        // Every rank learns whether all ranks share one node (a rank's node group is all or nothing).
        let everywhere = try allreduced(Int64(nodeSize) == Int64(size) ? 1 : 0, op: .min)
        guard everywhere == 1 else {
            MPI_Comm_free(&node)
            return nil
        }
        let nodeComm = try MPICommunicator(handle: node!, owned: false, deadlines: deadlines, rollCall: rollCall)
        try nodeComm.arriveTogether("MPI_Win_allocate_shared")
        return try MPISharedWindow(comm: nodeComm, bytesPerRank: bytesPerRank)
    }

    public func broadcast(_ bytes: UnsafeMutableRawBufferPointer, root: Int) throws {
        try checkPeer(root, "broadcast")
        for (offset, length) in Self.pieces(bytes.count) {
            let start = bytes.baseAddress.map { $0 + offset }
            if polling {
                var request: MPI_Request? = nil
                try Self.check(MPI_Ibcast(start, Int32(length), cmpi_byte(), Int32(root), handle, &request), "MPI_Ibcast from rank \(root)")
                try complete(&request, 1, "MPI_Ibcast from rank \(root)")
            } else {
                try Self.check(MPI_Bcast(start, Int32(length), cmpi_byte(), Int32(root), handle), "MPI_Bcast from rank \(root)")
            }
        }
    }

    public func barrier() throws {
        guard polling else { return try Self.check(MPI_Barrier(handle), "MPI_Barrier") }
        var request: MPI_Request? = nil
        try Self.check(MPI_Ibarrier(handle, &request), "MPI_Ibarrier")
        try complete(&request, 1, "MPI_Ibarrier")
    }

    public func nativeAllreduce<T: ReducibleScalar>(_ buffer: UnsafeMutableBufferPointer<T>, op: ReduceOp) throws {
        let mpiOp: MPI_Op
        switch op {
        case .sum: mpiOp = cmpi_op_sum()
        case .max: mpiOp = cmpi_op_max()
        case .min: mpiOp = cmpi_op_min()
        }
        let maxElements = Self.maxMessageBytes / MemoryLayout<T>.stride
        var start = 0
        repeat {
            let n = Swift.min(maxElements, buffer.count - start)
            let data = buffer.baseAddress.map { UnsafeMutableRawPointer($0 + start) }
            if polling {
                var request: MPI_Request? = nil
                try Self.check(MPI_Iallreduce(cmpi_in_place(), data, Int32(n), Self.datatype(T.kind), mpiOp, handle, &request), "MPI_Iallreduce")
                try complete(&request, 1, "MPI_Iallreduce")
            } else {
                try Self.check(MPI_Allreduce(cmpi_in_place(), data, Int32(n), Self.datatype(T.kind), mpiOp, handle), "MPI_Allreduce")
            }
            start += n
        } while start < buffer.count
    }

    public func abort(code: Int32) -> Never {
        MPI_Abort(handle, code)
        exit(code)
    }
}

/// An MPI-3 shared-memory window over the ranks of one node. Freed (collectively) when released: every
/// rank must release it at the same point of the program, before `MPI_Finalize`.
///
/// Each part starts on a page boundary. OpenMPI 4.1's `osc/sm` puts its parts 0x108 bytes into a page (8 bytes
/// off a cache line), so every 64-byte vector load and store of the shared-memory allreduce straddled two cache
/// lines and a part's last line was shared with the next rank's first; the window therefore asks for one page
/// more per rank and starts each part at the first page boundary inside it. The segment is mapped page-aligned
/// in every process, so the same rounding finds the same bytes in every rank. Each rank writes its own part
/// once at set-up (first touch on its own node, and no page fault inside the first timed call).
final class MPISharedWindow: SharedMemoryWindow {
    /// The node's ranks (its handle is freed with the window); its barrier follows the job's deadline.
    let node: MPICommunicator
    var window: MPI_Win? = cmpi_win_null()
    let bytesPerRank: Int
    /// Where MPI put this rank's part: its byte offset within a page, before the window rounded it up.
    let mpiPageOffset: Int
    private var bases: [UnsafeMutableRawPointer] = []

    static let page = Swift.max(4096, Int(sysconf(Int32(_SC_PAGESIZE))))

    init(comm node: MPICommunicator, bytesPerRank: Int) throws {
        self.node = node
        // Whole cache lines per part, plus a page of slack to start it on a page boundary.
        self.bytesPerRank = (Swift.max(bytesPerRank, 64) + 63) & ~63
        var info: MPI_Info? = nil
        MPI_Info_create(&info)
        // Each part may then be placed in its owner's NUMA node rather than one contiguous block.
        MPI_Info_set(info, "alloc_shared_noncontig", "true")
        defer { MPI_Info_free(&info) }
        var mine: UnsafeMutableRawPointer? = nil
        try MPICommunicator.check(MPI_Win_allocate_shared(MPI_Aint(self.bytesPerRank + Self.page), 1, info, node.handle, &mine, &window),
                                  "MPI_Win_allocate_shared")
        MPI_Win_set_errhandler(window, cmpi_errors_return())
        mpiPageOffset = Int(bitPattern: mine) % Self.page
        for r in 0..<node.size {
            var bytes: MPI_Aint = 0, unit: Int32 = 0
            var base: UnsafeMutableRawPointer? = nil
            try MPICommunicator.check(MPI_Win_shared_query(window, Int32(r), &bytes, &unit, &base), "MPI_Win_shared_query")
            let address = Int(bitPattern: base)
            bases.append(base! + ((Self.page - address % Self.page) % Self.page))
        }
        memset(bases[node.rank], 0, self.bytesPerRank)
        // One passive epoch for the window's whole life: MPI_Win_sync is then legal at any time.
        try MPICommunicator.check(MPI_Win_lock_all(cmpi_mode_nocheck(), window), "MPI_Win_lock_all")
    }

    var layout: String {
        "\(node.size) parts of \(ByteCount.format(bytesPerRank)), each at a page boundary (MPI gave page offset "
            + String(format: "0x%03x", mpiPageOffset) + "; the window rounds up)"
    }

    deinit {
        var finalized: Int32 = 0
        MPI_Finalized(&finalized)
        guard finalized == 0, !MPICommunicator.abandoned else { return }
        MPI_Win_unlock_all(window)
        MPI_Win_free(&window)
        var c: MPI_Comm? = node.handle
        MPI_Comm_free(&c)
    }

    func base(of rank: Int) -> UnsafeMutableRawPointer { bases[rank] }

    func sync() throws {
        try MPICommunicator.check(MPI_Win_sync(window), "MPI_Win_sync")
        try node.barrier()
        try MPICommunicator.check(MPI_Win_sync(window), "MPI_Win_sync")
    }
}
