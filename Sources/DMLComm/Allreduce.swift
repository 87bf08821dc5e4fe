/// An allreduce algorithm: after `run`, every rank's buffer holds the element-wise reduction of all ranks'
/// buffers, with the same bits on every rank.
///
/// One type per algorithm (as in Gloo): whatever can be prepared once (neighbours, scratch buffers, shared
/// windows) is prepared in the initialiser or on first use and reused, so `run` only communicates and
/// reduces. All ranks must call `run` with buffers of the same length and the same `op`.
public protocol AllreduceAlgorithm: AnyObject {
    /// The name the `--allreduce` flag uses.
    var name: String { get }
    func run(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws
    func run(_ buffer: UnsafeMutableBufferPointer<Double>, op: ReduceOp) throws
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
        }
    }
}

/// The communicator's own allreduce (`MPI_Allreduce` under MPI), behind the common interface.
public final class NativeAllreduce: AllreduceAlgorithm {
    public let name = "mpi"
    let comm: Communicator

    public init(comm: Communicator) { self.comm = comm }

    public func run(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws {
        try comm.nativeAllreduce(buffer, op: op)
    }

    public func run(_ buffer: UnsafeMutableBufferPointer<Double>, op: ReduceOp) throws {
        try comm.nativeAllreduce(buffer, op: op)
    }
}
