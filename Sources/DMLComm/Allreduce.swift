/// An allreduce algorithm: after `run`, every rank's buffer holds the element-wise reduction of all ranks'
/// buffers, with the same bits on every rank.
///
/// One type per algorithm (as in Gloo): whatever can be prepared once (neighbours, scratch buffers, shared
/// windows) is prepared in the initialiser or on first use and reused, so `run` only communicates and
/// reduces. All ranks must call `run` with buffers of the same length and the same `op`.
///
/// Each algorithm talks on its own duplicate of the communicator it was built for (`PrivateCommunicator`),
/// so its messages can only ever match its own: two algorithms — on two threads (under MPI still one thread in
/// MPI at a time, `MPI_THREAD_SERIALIZED`), or one inside another — and the training layer's own messages on
/// the parent never take each other's, whatever their tags.
/// Set-up is collective (the duplicate, and windows or splits where the algorithm has them): it happens in
/// `prepare()` or else in the first `run`, so every rank must prepare or first run its algorithms in the same
/// order (relative to each other and to the parent's other collectives), from one thread at a time — as
/// ranks already create them in one order. After set-up an algorithm's only communicator is its own; an
/// algorithm object is used by one thread at a time.
public protocol AllreduceAlgorithm: AnyObject {
    /// The name the `--allreduce` flag uses.
    var name: String { get }
    func run(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws
    func run(_ buffer: UnsafeMutableBufferPointer<Double>, op: ReduceOp) throws
    /// The set-up that the first `run` would do (collective; once; later calls return at once). Call it to
    /// choose where the set-up happens: before handing the algorithm to another thread, or inside a phase
    /// that has a deadline.
    func prepare() throws
}

extension AllreduceAlgorithm {
    /// Nothing to set up (a wrapper whose inner algorithm sets itself up on first use).
    public func prepare() throws {}
}

/// The communicator one concern talks on: a duplicate (`Communicator.duplicate`) of the one it was built for,
/// made by the first `get()` and kept — for an algorithm, its `prepare()` or first `run`. Making it is the
/// concern's only collective on the parent, so every rank must make its first `get()` calls in the same order
/// (relative to each other and to the parent's other collectives); `rank` and `size` are the parent's (a
/// duplicate has the same). For an owner whose initialiser cannot throw or communicate (the training layer's
/// timeline gather, row redistribution, balance chain): hold one per concern, call `get()` where it talks.
/// Not thread-safe: one thread at a time, as its owner.
public final class PrivateCommunicator {
    public let parent: Communicator
    private var own: Communicator?

    public init(_ parent: Communicator) { self.parent = parent }

    public var rank: Int { parent.rank }
    public var size: Int { parent.size }

    /// The duplicate (collective on the first call).
    public func get() throws -> Communicator {
        if let own { return own }
        let made = try parent.duplicate()
        own = made
        return made
    }
}

/// The allreduce algorithms that can be chosen by name.
public enum AllreduceKind: String, CaseIterable, Sendable {
    /// Segmented, pipelined ring: reduce-scatter then allgather. Bandwidth-optimal over a network.
    case ring
    /// MPI-3 shared-memory window: one pass over memory when all ranks share a node; else the ring.
    case shm
    /// Recursive doubling: fewest message latencies, for small messages.
    case rd
    /// Gather to rank 0, reduce, broadcast: the parameter-server baseline.
    case central
    /// The library's own `MPI_Allreduce`: the baseline.
    case mpi
    /// Shared memory inside each node, a ring across one leader per node (`HierarchicalAllreduce`).
    case hier
    /// Chooses one of the above by message size (`AutoAllreduce`).
    case auto
    /// Only the entries that are not +0, by a recursive-doubling merge of sorted (position, value) lists
    /// (`SparseAllreduce`): the same bits as `rd`; for gradients that touch few coordinates.
    case sparse

    /// Builds the algorithm for `comm`.
    public func make(for comm: Communicator) -> AllreduceAlgorithm {
        switch self {
        case .ring: return RingAllreduce(comm: comm)
        case .shm: return SharedMemoryAllreduce(comm: comm)
        case .rd: return RecursiveDoublingAllreduce(comm: comm)
        case .central: return CentralAllreduce(comm: comm)
        case .mpi: return NativeAllreduce(comm: comm)
        case .hier: return HierarchicalAllreduce(comm: comm)
        case .auto: return AutoAllreduce(comm: comm)
        case .sparse: return SparseAllreduce(comm: comm)
        }
    }
}

/// The communicator's own allreduce (`MPI_Allreduce` under MPI), behind the common interface, on the
/// algorithm's own duplicate.
public final class NativeAllreduce: AllreduceAlgorithm {
    public let name = "mpi"
    let comm: PrivateCommunicator

    public init(comm: Communicator) { self.comm = PrivateCommunicator(comm) }

    public func prepare() throws { _ = try comm.get() }

    public func run(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws {
        try comm.get().nativeAllreduce(buffer, op: op)
    }

    public func run(_ buffer: UnsafeMutableBufferPointer<Double>, op: ReduceOp) throws {
        try comm.get().nativeAllreduce(buffer, op: op)
    }
}
