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

    /// Sends `bytes` to `dest` (blocking until the buffer may be reused).
    func send(_ bytes: UnsafeRawBufferPointer, to dest: Int, tag: Int) throws
    /// Receives exactly `bytes.count` bytes from `source` into `bytes`.
    func recv(_ bytes: UnsafeMutableRawBufferPointer, from source: Int, tag: Int) throws
    /// Sends to `dest` and receives from `source` at once: the exchange a ring step needs, free of the
    /// deadlock that a send-then-receive on every rank could cause.
    func sendrecv(sending: UnsafeRawBufferPointer, to dest: Int,
                  receiving: UnsafeMutableRawBufferPointer, from source: Int, tag: Int) throws
    /// Copies `root`'s bytes into every other rank's `bytes` (all ranks pass buffers of one size).
    func broadcast(_ bytes: UnsafeMutableRawBufferPointer, root: Int) throws
    /// Returns once every rank has entered the barrier.
    func barrier() throws
    /// The implementation's own allreduce (for MPI: `MPI_Allreduce`), in place. The benchmark baseline, and
    /// the tool for small agreement vectors.
    func nativeAllreduce<T: ReducibleScalar>(_ buffer: UnsafeMutableBufferPointer<T>, op: ReduceOp) throws
    /// Ends every rank of the job at once with `code`. For failures that cannot be agreed on collectively.
    func abort(code: Int32) -> Never
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
