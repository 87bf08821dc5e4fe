import CMPI
#if canImport(Glibc)
import Glibc
#endif

/// A `Communicator` over OpenMPI's `MPI_COMM_WORLD` (or a communicator split from it).
///
/// Errors are returned, not fatal: the world communicator gets `MPI_ERRORS_RETURN`, and each call turns a
/// non-success code into `CommError.mpi` naming the call. Messages larger than 1 GiB are sent as several
/// messages, since MPI counts are `Int32`.
public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int
    /// The thread support MPI granted at initialisation (we ask for `MPI_THREAD_SERIALIZED`).
    public private(set) static var threadLevel: Int32 = -1
    public var allowsSerializedThreads: Bool { Self.threadLevel >= Int32(MPI_THREAD_SERIALIZED) }
    /// The MPI handle (an `MPI_Comm`).
    public let handle: MPI_Comm
    /// Reused by `waitAll`, so steady-state waits allocate nothing.
    private var waitScratch: [MPI_Request?] = []

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
            threadLevel = provided
        } else {
            var provided: Int32 = 0
            MPI_Query_thread(&provided)
            threadLevel = provided
        }
        let world = cmpi_comm_world()!
        try check(MPI_Comm_set_errhandler(world, cmpi_errors_return()), "MPI_Comm_set_errhandler")
        return try MPICommunicator(handle: world)
    }

    /// True for communicators this object created (by a split) and frees when it goes away.
    private let owned: Bool

    /// Wraps an existing communicator handle; `owned`: free it (`MPI_Comm_free`) when this object goes away.
    public init(handle: MPI_Comm, owned: Bool = false) throws {
        self.handle = handle
        self.owned = owned
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
        if finalized == 0 { MPI_Finalize() }
    }

    /// The name of the host this rank runs on.
    public static var processorName: String {
        var buf = [CChar](repeating: 0, count: Int(MPI_MAX_PROCESSOR_NAME) + 1)
        var len: Int32 = 0
        MPI_Get_processor_name(&buf, &len)
        return String(cString: buf)
    }

    static func errorString(_ code: Int32) -> String {
        var buf = [CChar](repeating: 0, count: Int(cmpi_max_error_string()) + 1)
        var len: Int32 = 0
        MPI_Error_string(code, &buf, &len)
        return String(cString: buf)
    }

    @inline(__always)
    static func check(_ rc: Int32, _ call: @autoclosure () -> String) throws {
        if rc != MPI_SUCCESS { throw CommError.mpi(call: call(), code: rc, message: errorString(rc)) }
    }

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
        for (offset, length) in Self.pieces(bytes.count) {
            try Self.check(MPI_Send(bytes.baseAddress.map { $0 + offset }, Int32(length), cmpi_byte(),
                                    Int32(dest), Int32(tag), handle), "MPI_Send to rank \(dest)")
        }
    }

    public func recv(_ bytes: UnsafeMutableRawBufferPointer, from source: Int, tag: Int) throws {
        try checkPeer(source, "recv")
        for (offset, length) in Self.pieces(bytes.count) {
            try Self.check(MPI_Recv(bytes.baseAddress.map { $0 + offset }, Int32(length), cmpi_byte(),
                                    Int32(source), Int32(tag), handle, cmpi_status_ignore()),
                           "MPI_Recv from rank \(source)")
        }
    }

    public func sendrecv(sending: UnsafeRawBufferPointer, to dest: Int,
                         receiving: UnsafeMutableRawBufferPointer, from source: Int, tag: Int) throws {
        try checkPeer(dest, "sendrecv")
        try checkPeer(source, "sendrecv")
        let out = Self.pieces(sending.count), inn = Self.pieces(receiving.count)
        guard out.count == 1 && inn.count == 1 else {
            // Above 1 GiB: non-blocking pieces, so neither side waits on the other's first piece.
            var requests: [MPI_Request?] = []
            for (offset, length) in inn {
                var r: MPI_Request? = nil
                try Self.check(MPI_Irecv(receiving.baseAddress! + offset, Int32(length), cmpi_byte(), Int32(source),
                                         Int32(tag), handle, &r), "MPI_Irecv from rank \(source)")
                requests.append(r)
            }
            for (offset, length) in out {
                var r: MPI_Request? = nil
                try Self.check(MPI_Isend(sending.baseAddress! + offset, Int32(length), cmpi_byte(), Int32(dest),
                                         Int32(tag), handle, &r), "MPI_Isend to rank \(dest)")
                requests.append(r)
            }
            try Self.check(MPI_Waitall(Int32(requests.count), &requests, cmpi_statuses_ignore()), "MPI_Waitall")
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
        if requests.count == 1 {
            try Self.check(MPI_Wait(&requests[0], cmpi_status_ignore()), "MPI_Wait")
        } else {
            try Self.check(MPI_Waitall(Int32(requests.count), &requests, cmpi_statuses_ignore()), "MPI_Waitall")
        }
    }

    public func waitAll(_ requests: inout [CommRequest]) throws {
        // One MPI_Waitall over every piece: MPI progresses them all together.
        waitScratch.removeAll(keepingCapacity: true)
        for request in requests { if case let .mpi(rs) = request.state { waitScratch.append(contentsOf: rs) } }
        requests.removeAll(keepingCapacity: true)
        if waitScratch.isEmpty { return }
        try Self.check(MPI_Waitall(Int32(waitScratch.count), &waitScratch, cmpi_statuses_ignore()), "MPI_Waitall")
    }

    deinit {
        var finalized: Int32 = 0
        MPI_Finalized(&finalized)
        if owned && finalized == 0 {
            var c: MPI_Comm? = handle
            MPI_Comm_free(&c)
        }
    }

    public func split(color: Int, key: Int) throws -> Communicator {
        var new: MPI_Comm? = nil
        try Self.check(MPI_Comm_split(handle, Int32(color), Int32(key), &new), "MPI_Comm_split")
        return try MPICommunicator(handle: new!, owned: true)
    }

    public func splitByNode() throws -> Communicator {
        var node: MPI_Comm? = nil
        try Self.check(MPI_Comm_split_type(handle, cmpi_comm_type_shared(), Int32(rank), cmpi_info_null(), &node),
                       "MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)")
        return try MPICommunicator(handle: node!, owned: true)
    }

    /// How many ranks of this communicator share this rank's node, and this rank's index among them.
    /// Collective.
    public func nodeLayout() throws -> (ranksOnNode: Int, nodeRank: Int) {
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
        return try MPISharedWindow(comm: node!, bytesPerRank: bytesPerRank)
    }

    public func broadcast(_ bytes: UnsafeMutableRawBufferPointer, root: Int) throws {
        try checkPeer(root, "broadcast")
        for (offset, length) in Self.pieces(bytes.count) {
            try Self.check(MPI_Bcast(bytes.baseAddress.map { $0 + offset }, Int32(length), cmpi_byte(),
                                     Int32(root), handle), "MPI_Bcast from rank \(root)")
        }
    }

    public func barrier() throws {
        try Self.check(MPI_Barrier(handle), "MPI_Barrier")
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
            try Self.check(MPI_Allreduce(cmpi_in_place(), buffer.baseAddress.map { UnsafeMutableRawPointer($0 + start) },
                                         Int32(n), Self.datatype(T.kind), mpiOp, handle), "MPI_Allreduce")
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
final class MPISharedWindow: SharedMemoryWindow {
    let comm: MPI_Comm
    var window: MPI_Win? = cmpi_win_null()
    let bytesPerRank: Int
    private var bases: [UnsafeMutableRawPointer] = []

    init(comm: MPI_Comm, bytesPerRank: Int) throws {
        self.comm = comm
        // Round up to whole cache lines so that each part starts 64-byte aligned.
        self.bytesPerRank = (Swift.max(bytesPerRank, 64) + 63) & ~63
        var info: MPI_Info? = nil
        MPI_Info_create(&info)
        // Each part may then be placed in its owner's NUMA node rather than one contiguous block.
        MPI_Info_set(info, "alloc_shared_noncontig", "true")
        defer { MPI_Info_free(&info) }
        var mine: UnsafeMutableRawPointer? = nil
        try MPICommunicator.check(MPI_Win_allocate_shared(MPI_Aint(self.bytesPerRank), 1, info, comm, &mine, &window),
                                  "MPI_Win_allocate_shared")
        MPI_Win_set_errhandler(window, cmpi_errors_return())
        var size: Int32 = 0
        MPI_Comm_size(comm, &size)
        for r in 0..<size {
            var bytes: MPI_Aint = 0, unit: Int32 = 0
            var base: UnsafeMutableRawPointer? = nil
            try MPICommunicator.check(MPI_Win_shared_query(window, r, &bytes, &unit, &base), "MPI_Win_shared_query")
            bases.append(base!)
        }
        // One passive epoch for the window's whole life: MPI_Win_sync is then legal at any time.
        try MPICommunicator.check(MPI_Win_lock_all(cmpi_mode_nocheck(), window), "MPI_Win_lock_all")
    }

    deinit {
        var finalized: Int32 = 0
        MPI_Finalized(&finalized)
        guard finalized == 0 else { return }
        MPI_Win_unlock_all(window)
        MPI_Win_free(&window)
        var c: MPI_Comm? = comm
        MPI_Comm_free(&c)
    }

    func base(of rank: Int) -> UnsafeMutableRawPointer { bases[rank] }

    func sync() throws {
        try MPICommunicator.check(MPI_Win_sync(window), "MPI_Win_sync")
        try MPICommunicator.check(MPI_Barrier(comm), "MPI_Barrier (shared-memory node)")
        try MPICommunicator.check(MPI_Win_sync(window), "MPI_Win_sync")
    }
}
