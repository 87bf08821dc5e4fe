/// The point-to-point and collective calls that the rest of DML needs from a group of ranks.
///
/// Two implementations exist: `MPICommunicator` (OpenMPI, one process per rank, what `mpirun` launches)
/// and `LocalCommunicator` (one thread per rank inside one process, for unit tests). Algorithms such as the
/// ring allreduce are written once against this protocol, so the unit tests exercise the same code that runs
/// under `mpirun`.
///
/// Buffers are raw bytes; the typed conveniences live in `Communicator+Typed.swift`. Every call may throw a
/// `CommError`; none of them returns partially done work silently.
public protocol Communicator: AnyObject {
    /// This rank's index, `0 ..< size`.
    var rank: Int { get }
    /// The number of ranks in the group.
    var size: Int { get }
    /// True when calls may come from a thread other than the one that created the communicator, one call
    /// at a time (MPI's `MPI_THREAD_SERIALIZED`): what overlapping communication with computation needs.
    var allowsSerializedThreads: Bool { get }

    /// Sends `bytes` to `dest` (blocking until the buffer may be reused).
    func send(_ bytes: UnsafeRawBufferPointer, to dest: Int, tag: Int) throws
    /// Receives exactly `bytes.count` bytes from `source` into `bytes`.
    func recv(_ bytes: UnsafeMutableRawBufferPointer, from source: Int, tag: Int) throws
    /// Sends to `dest` and receives from `source` at once: the exchange a ring step needs, free of the
    /// deadlock that a send-then-receive on every rank could cause.
    func sendrecv(sending: UnsafeRawBufferPointer, to dest: Int,
                  receiving: UnsafeMutableRawBufferPointer, from source: Int, tag: Int) throws
    /// Starts sending `bytes` to `dest` and returns at once. The bytes must stay valid and unchanged until
    /// the request has been waited for.
    func isend(_ bytes: UnsafeRawBufferPointer, to dest: Int, tag: Int) throws -> CommRequest
    /// Starts receiving exactly `bytes.count` bytes from `source` into `bytes` and returns at once. The
    /// bytes hold the message only after the request has been waited for. Messages between one pair of
    /// ranks with one tag arrive in the order they were sent (MPI's non-overtaking rule).
    func irecv(_ bytes: UnsafeMutableRawBufferPointer, from source: Int, tag: Int) throws -> CommRequest
    /// Blocks until `request` is complete; it is then `.completed`. Waiting for a completed request returns.
    func wait(_ request: inout CommRequest) throws
    /// Blocks until every request is complete, then empties the array (keeping its capacity).
    func waitAll(_ requests: inout [CommRequest]) throws
    /// Ranks of this group that share one node's memory, with a window of `bytesPerRank` bytes per rank that
    /// every rank of the node can read and write directly; `nil` when the ranks do not all share one node
    /// (or the implementation has no shared memory). Collective: every rank calls it with the same size.
    func sharedMemoryWindow(bytesPerRank: Int) throws -> SharedMemoryWindow?
    /// A new communicator over the ranks that pass the same `color`, ranked by `key` (ties: by this
    /// communicator's rank), as `MPI_Comm_split`. Collective.
    func split(color: Int, key: Int) throws -> Communicator
    /// A new communicator over the ranks of this one that share this rank's node (`MPI_Comm_split_type` with
    /// `MPI_COMM_TYPE_SHARED`), ranked as here. Collective. (`nodeGroup()` adds the fake nodes for tests.)
    func splitByNode() throws -> Communicator
    /// A new communicator over the same ranks, ranked as here, whose messages and collectives can only ever
    /// match its own: never this one's, nor another duplicate's, whatever their tags (`MPI_Comm_dup`). One per
    /// concern — each allreduce algorithm (`PrivateCommunicator`), the timeline gather, a data redistribution —
    /// so that two of them, or two threads, can never take each other's messages.
    ///
    /// It shares this communicator's deadlines and roll call (`watched` on either bounds both). Collective:
    /// every rank calls it, in the same order relative to this communicator's other collectives, one thread
    /// at a time. Under a deadline the wait is polled like every other (`MPI_Comm_idup`). Cost: one small
    /// collective (MPI agrees on a context id); the handle is freed when the duplicate goes away.
    func duplicate() throws -> Communicator
    /// Copies `root`'s bytes into every other rank's `bytes` (all ranks pass buffers of one size).
    func broadcast(_ bytes: UnsafeMutableRawBufferPointer, root: Int) throws
    /// Returns once every rank has entered the barrier.
    func barrier() throws
    /// The implementation's own allreduce (for MPI: `MPI_Allreduce`), in place. The benchmark baseline, and
    /// the tool for small agreement vectors.
    func nativeAllreduce<T: ReducibleScalar>(_ buffer: UnsafeMutableBufferPointer<T>, op: ReduceOp) throws
    /// Ends every rank of the job at once with `code`. For failures that cannot be agreed on collectively.
    func abort(code: Int32) -> Never
    /// The deadline every blocking call polls against (`Communicator.watched` sets it), shared with the
    /// communicators split from this one. See `CollectiveDeadline`.
    var deadlines: DeadlineState { get }
    /// On a rank that caught a `CollectiveStall` it does not report: go on answering the reporter's roll
    /// call for up to `seconds`, so that this rank is not named as missing while the reporter listens.
    func keepAnswering(for seconds: Double)
}

/// A non-blocking send or receive in flight, completed by `Communicator.wait`/`waitAll`. A value type: the
/// in-flight state (an `MPI_Request`, or the in-process receive to do) is moved out when waited for.
public struct CommRequest {
    enum State {
        case completed
        /// One `MPI_Request` per message piece (one unless the message is above 1 GiB).
        case mpi([OpaquePointer?])
        /// An in-process receive, done when waited for (sends are buffered there, so this cannot deadlock).
        case localReceive(UnsafeMutableRawBufferPointer, source: Int, tag: Int)
    }
    var state: State
    /// A request with nothing left to wait for.
    public static var completed: CommRequest { CommRequest(state: .completed) }
    public var isCompleted: Bool { if case .completed = state { return true }; return false }
}

/// Memory shared by the ranks of one node: `bytesPerRank` bytes per rank, every rank's part readable and
/// writable by every rank through plain loads and stores. Ordering between ranks comes only from `sync`.
public protocol SharedMemoryWindow: AnyObject {
    /// Bytes in each rank's part.
    var bytesPerRank: Int { get }
    /// The start of rank `rank`'s part (at least 64-byte aligned; page-aligned under MPI), valid for this
    /// window's lifetime.
    func base(of rank: Int) -> UnsafeMutableRawPointer
    /// Where the parts lie, for a benchmark's header (e.g. "2 parts of 1M, each at a page boundary …").
    var layout: String { get }
    /// A barrier that also orders memory: every store any rank made before `sync` is visible to every
    /// rank after it (`MPI_Win_sync` + `MPI_Barrier` + `MPI_Win_sync` under MPI).
    func sync() throws
}

/// The reductions DML uses. Each is commutative and associative on exact values; on floats, the algorithms
/// fix the order so that every rank still ends with the same bits.
public enum ReduceOp: String, Sendable, CaseIterable {
    case sum, max, min
}

/// A failure in the communication layer. Its description is meant for a user's terminal.
public enum CommError: Error, CustomStringConvertible, Equatable {
    /// An MPI call returned an error code.
    case mpi(call: String, code: Int32, message: String)
    /// Arguments that cannot work (a peer out of range, buffers of different lengths).
    case invalidArgument(String)
    /// A peer did not answer in time.
    case timeout(String)
    /// Another rank failed, so this one gives up too.
    case peerFailed(String)

    public var description: String {
        switch self {
        case let .mpi(call, code, message): return "\(call) failed (MPI error \(code)): \(message)"
        case let .invalidArgument(m): return "invalid argument: \(m)"
        case let .timeout(m): return "timed out: \(m)"
        case let .peerFailed(m): return "peer failed: \(m)"
        }
    }
}

extension Communicator {
    public func waitAll(_ requests: inout [CommRequest]) throws {
        for i in requests.indices { try wait(&requests[i]) }
        requests.removeAll(keepingCapacity: true)
    }

    /// The rank to the right in the ring (`rank + 1` modulo `size`).
    public var rightNeighbour: Int { (rank + 1) % size }
    /// The rank to the left in the ring (`rank - 1` modulo `size`).
    public var leftNeighbour: Int { (rank + size - 1) % size }

    @inline(__always)
    func checkPeer(_ peer: Int, _ call: String) throws {
        guard peer >= 0 && peer < size else {
            throw CommError.invalidArgument("\(call): peer \(peer) is outside 0..<\(size)")
        }
    }
}
