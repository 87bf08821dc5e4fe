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

/// Hierarchical allreduce: a reduce-scatter in shared memory inside each node, one ring across the nodes per
/// slice ("rails": rank i of every node), an allgather in shared memory back out.
///
/// ```
///  node A: a0 a1        node B: b0 b1        per block of the buffer (`blockBytes`, 4 MiB):
///   block [ s0 | s1 ]    block [ s0 | s1 ]   1. shm reduce-scatter: rank i of a node reduces slice i of the
///          │    │               │    │          node's block, in node rank order, into its window part
///          a0 ◀── ring on s0 ──▶ b0          2. rank i of every node: the ring allreduce of slice i across
///          a1 ◀── ring on s1 ──▶ b1             the nodes (the rails run at the same time)
///          ▼    ▼               ▼    ▼       3. shm allgather: every rank copies every slice out
/// ```
/// Nodes come from `nodeGroup()` (`MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)`, the host's ranks; or
/// `DML_FAKE_NODES` blocks for tests on one machine). Every element is reduced in node rank order and then
/// along its rail's ring, a fixed order, and the rest are copies: every rank ends with the same bits (the
/// order of additions differs from the flat ring's; it depends on p and the node sizes).
///
/// Cost with N nodes of q ranks, n bytes: each node's link carries `2(N−1)/N · n` bytes (the q rails' shares
/// together) against the flat ring's `2(Nq−1)/(Nq) · n` through the link of a block of ranks, and a block's
/// latency is `2(N−1)` messages against `2(Nq−1)`; all q ranks of a node drive the network and do the
/// additions. Inside a node, about three passes over memory. It beats the flat ring when messages between
/// nodes cost far more than memory inside one (benchmarks/RESULTS.md, "Multi-node").
/// When the nodes hold different numbers of ranks the rails do not line up: then the node's ranks reduce to
/// its first rank through the window, the first ranks run the ring, and each broadcasts to its node (the
/// network carries the same bytes, one rank per node drives it).
/// Set-up (`prepare` or the first `run`, collective): the algorithm's own duplicate communicator, two splits
/// of it, and the node's shared window (the in-node and across-node algorithms each duplicate their part again).
public final class HierarchicalAllreduce: AllreduceAlgorithm {
    public let name = "hier"
    /// This algorithm's own duplicate: the node and rail (or leader) communicators are split from it.
    let comm: PrivateCommunicator
    private var prepared = false
    private var node: Communicator!
    private var inNode: SharedMemoryAllreduce!
    private var across: RingAllreduce!
    /// True when every node holds the same number of ranks (the rails line up); else the leaders' scheme.
    private var rails = false

    let fakeNodes: Int?

    /// The in-node window's block (per rank): larger than `shm`'s 1 MiB, because each block costs the rails'
    /// rings `2(N−1)` message latencies across the network (4 namespace nodes at 1 Gbit/s: 1 MiB blocks made
    /// `hier` 1.6× slower than the ring at 16 MiB, 4 MiB blocks as fast; benchmarks/RESULTS.md, "Multi-node").
    /// `DML_SHM_BLOCK` overrides it as it does `shm`'s.
    public static let blockBytes = 4 << 20

    /// The segment of the rails' rings across the nodes: 32 KiB, below OpenMPI's TCP eager limit (64 KiB with the
    /// header), so every message between nodes goes out at once instead of as a rendezvous (a request, the
    /// receiver's answer, then the data) that waits behind the other rails' data on the node's shared link. At
    /// 512 KiB–1 MiB with 2 ranks per node the flat ring's 256 KiB segments left each rail one 64–128 KiB
    /// rendezvous per step; 4 namespace nodes at 1 Gbit/s, 8 rounds: 32 KiB segments 1.3–1.7× faster there
    /// (medians; benchmarks/RESULTS.md, "Multi-node"). The bits do not depend on the segment. `DML_RING_SEGMENT`
    /// overrides it as it does every ring's.
    public static let railSegmentBytes = 32 << 10

    /// The in-node block in bytes per rank (nil: `DML_SHM_BLOCK`, else `blockBytes`).
    let block: Int?

    /// `fakeNodes`: as `DML_FAKE_NODES` (which it overrides), for in-process tests; `blockBytes`: the in-node
    /// block, instead of `DML_SHM_BLOCK` or the 4 MiB default (tests: many blocks on small buffers).
    public init(comm: Communicator, fakeNodes: Int? = nil, blockBytes: Int? = nil) {
        self.comm = PrivateCommunicator(comm)
        self.fakeNodes = fakeNodes
        self.block = blockBytes
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
        let sizes = try comm.allreduced([Int64(node.size), -Int64(node.size)], op: .max)
        rails = sizes[0] == -sizes[1]
        // Rails: rank i of every node; leaders: the first rank of every node (the others' group is unused).
        let group = try comm.split(color: rails || node.rank == 0 ? node.rank : 1, key: comm.rank)
        inNode = SharedMemoryAllreduce(comm: node, blockBytes: block ?? (ProcessInfo.processInfo.environment["DML_SHM_BLOCK"] == nil ? Self.blockBytes : nil))
        try inNode.prepare()
        across = RingAllreduce(comm: group, segmentBytes: RingSchedule.segmentBytesFromEnvironment ?? Self.railSegmentBytes)
        prepared = true
    }

    /// True when the rails are in use (every node holds the same number of ranks), after `prepare`.
    public var usesRails: Bool { rails }

    /// The segment of the ring across the nodes (`railSegmentBytes` unless `DML_RING_SEGMENT`), after `prepare`.
    public var acrossSegmentBytes: Int { across?.segmentBytes ?? 0 }

    public func run(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws { try hier(buffer, op: op) }
    public func run(_ buffer: UnsafeMutableBufferPointer<Double>, op: ReduceOp) throws { try hier(buffer, op: op) }

    func hier<T: ReducibleScalar>(_ buffer: UnsafeMutableBufferPointer<T>, op: ReduceOp) throws {
        try prepare()
        if node.size == 1 { return try across.ring(buffer, op: op) }  // one rank per node: the ring
        if rails { return try inNode.allreduce(buffer, op: op) { slice in try across.ring(slice, op: op) } }
        try inNode.reduce(buffer, op: op, root: 0)
        if node.rank == 0 { try across.ring(buffer, op: op) }
        try inNode.broadcast(buffer, root: 0)
    }
}
