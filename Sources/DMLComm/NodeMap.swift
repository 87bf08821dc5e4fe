import Foundation

/// Which ranks share a node, seen two ways: by `MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)` (what `hier`, `shm`
/// and `auto` use, through `splitByNode()`) and by each rank's node name (its host name, or Slurm's node name under `srun`: `localNodeName`). On a real cluster, and on
/// `scripts/cluster`'s namespace nodes (each with its own host name), the two must agree; a launcher that
/// put ranks of different hosts in one shared-memory group, or one host's ranks in several, would make `hier`
/// group them wrongly. `DML_FAKE_NODES` plays no part here (it only cuts `nodeGroup()` further).
///
/// Invariant: `nodes` lists each group once, in the order of its lowest rank, ranks ascending; the same on
/// every rank. Cost (collective, once): one `MPI_Comm_split_type`, one small allreduce, one allgather of the
/// host names (≤ 64 bytes each, so `size × 64` bytes per rank).
public struct NodeMap: Equatable, Sendable {
    /// One node per entry: its host name (that of its lowest rank) and its ranks, ascending.
    public struct Node: Equatable, Sendable {
        public let host: String
        public let ranks: [Int]
    }

    /// The groups `MPI_COMM_TYPE_SHARED` forms, in the order of their lowest rank.
    public let nodes: [Node]
    /// Each rank's host name, by rank.
    public let hosts: [String]

    /// True when the shared-memory groups are exactly the groups of ranks with equal host names.
    public var agreesWithHostNames: Bool {
        let byHost = Dictionary(grouping: hosts.indices, by: { hosts[$0] }).values.map { $0.sorted() }
        return Set(byHost) == Set(nodes.map(\.ranks))
    }

    public init(nodes: [Node], hosts: [String]) {
        self.nodes = nodes
        self.hosts = hosts
    }

    /// This process's node name: Slurm's node name of the task (`SLURMD_NODENAME`) under `srun`, else the host
    /// name. The two differ where one host runs several `slurmd` (Slurm's multiple-slurmd layout, as
    /// `scripts/slurm-local` does): there every Slurm node is a node for PMIx and so for
    /// `MPI_COMM_TYPE_SHARED`, while the host name is the same on all of them.
    public static func localNodeName(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let slurm = environment["SLURMD_NODENAME"], !slurm.isEmpty { return slurm }
        return ProcessInfo.processInfo.hostName
    }

    /// Collective over `comm`. `hostName`: this rank's node name (`localNodeName()` by default).
    public init(_ comm: Communicator, hostName: String = NodeMap.localNodeName()) throws {
        let node = try comm.splitByNode()
        let leader = Int(try node.allreduced(Int64(comm.rank), op: .min))
        let leaders = try comm.allgathered(Int64(leader)).map(Int.init)
        let names = try comm.allgathered(Array(hostName.utf8.prefix(64)).map { Int8(bitPattern: $0) })
        let hosts = names.map { String(decoding: $0.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
        self.hosts = hosts
        nodes = Array(Set(leaders)).sorted().map { l in
            Node(host: hosts[l], ranks: leaders.indices.filter { leaders[$0] == l })
        }
    }

    /// `dmlc-n1: 0,1 | dmlc-n2: 2,3`.
    public var description: String {
        nodes.map { "\($0.host): \($0.ranks.map(String.init).joined(separator: ","))" }.joined(separator: " | ")
    }
}
