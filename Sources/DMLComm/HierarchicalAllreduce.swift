import DMLStatus
import Foundation

extension Communicator {
    /// The ranks of this communicator that share this rank's node: `splitByNode()`, then, when the environment
    /// variable `DML_FAKE_NODES=k` is set, cut further into k "nodes" by blocks of ranks (rank r is on fake
    /// node ⌊r·k/p⌋; np=3, k=2 gives {0, 1} and {2}). The fake nodes let one machine test what several nodes
    /// do; every rank must see the same value. Collective.
    /// `fakeNodes` overrides the environment (in-process tests).
    public func nodeGroup(fakeNodes: Int? = nil) throws -> Communicator {
        let k = try fakeNodes ?? HierarchicalAllreduce.fakeNodesFromEnvironment()
        let node = try splitByNode()
        guard let k else { return node }
        return try node.split(color: rank * Swift.min(Swift.max(k, 1), size) / size, key: rank)
    }
}

/// Hierarchical allreduce: shared memory inside each node, a ring across one leader per node, shared
/// memory back out.
///
/// ```
///  node A: r0 r1 r2        node B: r3 r4          1. shm reduce to each node's leader (r0, r3)
///          │  │  │                 │  │             (SharedMemoryAllreduce without the copy-out)
///          ▼  ▼  ▼                 ▼  ▼
///          r0 ◀──── ring ────▶ r3                 2. ring allreduce across the leaders
///          │                       │
///          ▼  shm broadcast        ▼              3. shm broadcast from each leader to its node
///       r0 r1 r2                r3 r4
/// ```
/// Nodes come from `nodeGroup()` (`MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)`, or `DML_FAKE_NODES` blocks for
/// tests on one machine). Each node reduces in its rank order, the leaders' ring has its fixed order, and the
/// rest are copies: every rank ends with the same bits (the order of additions differs from the flat ring's).
///
/// Cost with N nodes of q ranks: the network carries only the leaders' ring, `2(N−1)·α + 2(N−1)/N · n·β`,
/// instead of the flat ring's `2(Nq−1)` latencies; inside a node about three passes over memory (reduce,
/// broadcast). Worth it when messages between nodes cost far more than memory inside one.
/// Set-up (`prepare` or the first `run`, collective): the algorithm's own duplicate communicator, two splits
/// of it, and the node's shared window (the in-node and leader algorithms each duplicate their part again).
public final class HierarchicalAllreduce: AllreduceAlgorithm {
    public let name = "hier"
    /// This algorithm's own duplicate: the node and leader communicators are split from it.
    let comm: PrivateCommunicator
    private var prepared = false
    private var node: Communicator!
    private var leaders: Communicator!
    private var inNode: SharedMemoryAllreduce!
    private var across: RingAllreduce!

    let fakeNodes: Int?

    /// `fakeNodes`: as `DML_FAKE_NODES` (which it overrides), for in-process tests.
    public init(comm: Communicator, fakeNodes: Int? = nil) {
        self.comm = PrivateCommunicator(comm)
        self.fakeNodes = fakeNodes
    }

    /// `DML_FAKE_NODES` when set; throws (without communicating, alike on every rank) when it is not a
    /// whole number ≥ 1 (a usage error). Commands check it up front with `Communicator.agreeing`.
    public static func fakeNodesFromEnvironment() throws -> Int? {
        guard let text = ProcessInfo.processInfo.environment["DML_FAKE_NODES"] else { return nil }
        guard let n = Int(text), n >= 1 else {
            throw JobError(.usage, "DML_FAKE_NODES must be a whole number of nodes, at least 1 (got '\(text)')")
        }
        return n
    }

    /// Ranks on this rank's node (after `prepare` or the first `run`).
    public var ranksOnNode: Int { node?.size ?? 0 }

    /// Collective, once: the duplicate, the node and leader communicators, and the node's shared window.
    public func prepare() throws {
        if prepared { return }
        let comm = try comm.get()
        node = try comm.nodeGroup(fakeNodes: fakeNodes)
        leaders = try comm.split(color: node.rank == 0 ? 0 : 1, key: comm.rank)
        inNode = SharedMemoryAllreduce(comm: node)
        try inNode.prepare()
        across = RingAllreduce(comm: leaders)
        prepared = true
    }

    public func run(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws { try hier(buffer, op: op) }
    public func run(_ buffer: UnsafeMutableBufferPointer<Double>, op: ReduceOp) throws { try hier(buffer, op: op) }

    func hier<T: ReducibleScalar>(_ buffer: UnsafeMutableBufferPointer<T>, op: ReduceOp) throws {
        try prepare()
        if node.size > 1 { try inNode.reduce(buffer, op: op, root: 0) }
        if node.rank == 0 { try across.ring(buffer, op: op) }
        if node.size > 1 { try inNode.broadcast(buffer, root: 0) }
    }
}
