import DMLStatus
import Foundation

/// Which algorithm `auto` uses for a message: a list of `algorithm<=size` rules tried in order, and a last
/// algorithm for everything larger. Written as text, e.g. `rd<=16K,ring`.
///
/// The defaults come from `dml-bench allreduce` on a 2-core x86-64 VM with OpenMPI 4.1.4 (benchmarks/RESULTS.md,
/// "Allreduce"), and depend on where the ranks are:
/// - all ranks on one node: `shm` at every size. One pass over memory beat `MPI_Allreduce`, the ring and
///   recursive doubling from 4 KiB to 256 MiB at np=2 (no crossover: the window costs two barriers per
///   block, cheaper than any message exchange). But whole processes sometimes ran `shm` 4× slower at 64–256
///   MiB, at or below `MPI_Allreduce` (benchmarks/RESULTS.md, "Slow streaks"), so unless a policy is given,
///   `auto` times both once at set-up (`AutoAllreduce.probe`) and keeps `shm` for large messages only where
///   it won: else `shm<=1M,mpi` (`oneNodeSlowWindow`; up to 1 MiB one block stays in cache and `shm` won
///   in every run, loaded or not).
/// - ranks on several nodes: `rd<=16K,hier`: recursive doubling while latency dominates, then `hier` (shared
///   memory inside each node, one ring per rail across the nodes; with one rank per node it is the ring).
///   Chosen from 4 network-namespace nodes at 1 Gbit/s per node, 1 and 2 ranks per node (benchmarks/RESULTS.md,
///   "Multi-node"): rd's log2(p) exchanges of the whole buffer win up to 16 KiB, `hier` from 32 KiB (quiet, at
///   2 ranks per node, 64 KiB: 0.76 ms against rd's 2.14 ms); above that `hier` is as fast as the flat ring or
///   faster (its network carries 2(N−1)/N·n per node against the ring's 2(p−1)/p·n, in 2(N−1) steps against
///   2(p−1)). Its rails once sent 64–128 KiB rendezvous messages at 512 KiB–1 MiB and ran at half the link's
///   rate there (the ring 1.5× faster, quiet); with 32 KiB rail segments (`HierarchicalAllreduce.railSegmentBytes`)
///   `hier` measured 2.4× / 2.2× faster than the ring at 512 KiB / 1 MiB (loaded machine, 3 rounds).
/// Override with the environment variable `DML_ALLREDUCE_AUTO` (every rank must see the same value;
/// `mpirun -x DML_ALLREDUCE_AUTO=rd<=64K,shm` passes it on), or `dml-bench allreduce --auto`.
public struct AutoAllreducePolicy: Equatable, CustomStringConvertible, Sendable {
    public var rules: [Rule]
    public var otherwise: AllreduceKind
    /// The ring's segment size when `auto` picks the ring (nil: `RingAllreduce`'s default); set by tuning.
    public var ringSegmentBytes: Int?

    public struct Rule: Equatable, Sendable {
        public var kind: AllreduceKind
        public var maxBytes: Int
    }

    /// The default when every rank shares one node.
    public static let oneNode = AutoAllreducePolicy(rules: [], otherwise: .shm)
    /// The default on one node when the set-up probe found `shm` slower than `MPI_Allreduce` on a large message.
    public static let oneNodeSlowWindow = AutoAllreducePolicy(rules: [Rule(kind: .shm, maxBytes: 1 << 20)], otherwise: .mpi)
    /// The default when the ranks span nodes.
    public static let acrossNodes = AutoAllreducePolicy(rules: [Rule(kind: .rd, maxBytes: 16 << 10)], otherwise: .hier)

    public init(rules: [Rule], otherwise: AllreduceKind) {
        self.rules = rules
        self.otherwise = otherwise
    }

    /// Parses `rd<=16K,mpi<=1M,shm`. Throws a message naming the bad part.
    public init(parsing text: String) throws {
        guard let parts = CommaList.items(text), let last = parts.last else { throw CommError.invalidArgument("an auto policy needs at least one algorithm (e.g. 'rd<=16K,shm')") }
        func kind(_ s: String) throws -> AllreduceKind {
            guard let k = AllreduceKind(rawValue: s), k != .auto else {
                throw CommError.invalidArgument("'\(s)' in auto policy '\(text)' is not one of \(AllreduceKind.allCases.filter { $0 != .auto }.map(\.rawValue).joined(separator: ", "))")
            }
            return k
        }
        rules = try parts.dropLast().map { part in
            let pieces = part.components(separatedBy: "<=")
            guard pieces.count == 2, let bytes = ByteCount.parse(pieces[1]) else {
                throw CommError.invalidArgument("'\(part)' in auto policy '\(text)' is not of the form algorithm<=size (e.g. rd<=16K)")
            }
            return Rule(kind: try kind(pieces[0]), maxBytes: bytes)
        }
        otherwise = try kind(last)
    }

    /// `DML_ALLREDUCE_AUTO` when set, else nil (the default for where the ranks are); a bad value is a usage error.
    public static func fromEnvironment() throws -> AutoAllreducePolicy? {
        guard let text = ProcessInfo.processInfo.environment["DML_ALLREDUCE_AUTO"] else { return nil }
        do { return try AutoAllreducePolicy(parsing: text) } catch { throw JobError(.usage, "DML_ALLREDUCE_AUTO: \(error)") }
    }

    /// The algorithm for a message of `bytes` bytes.
    public func choice(bytes: Int) -> AllreduceKind {
        rules.first { bytes <= $0.maxBytes }?.kind ?? otherwise
    }

    public var description: String {
        (rules.map { "\($0.kind.rawValue)<=\(ByteCount.format($0.maxBytes))" } + [otherwise.rawValue]).joined(separator: ",")
    }
}

/// `auto`: per call, the algorithm its policy names for the message size. The size is the same on every
/// rank, so every rank makes the same choice. Each algorithm is built on first use and kept, on this
/// algorithm's own duplicate communicator (which each of them duplicates again for itself): after its first
/// call, nothing `auto` does touches the communicator it was built for.
public final class AutoAllreduce: AllreduceAlgorithm {
    public let name = "auto"
    let comm: PrivateCommunicator
    /// The policy given, or `DML_ALLREDUCE_AUTO` (an error in it is reported by the first `run`); nil: the
    /// default for where the ranks are, chosen by the first `run`.
    private var policy: Result<AutoAllreducePolicy, Error>?
    private var algorithms: [AllreduceKind: AllreduceAlgorithm] = [:]

    /// Whether the default policy on one node is chosen by timing `shm` against `MPI_Allreduce` at set-up
    /// (`probe`): true always, false never (`oneNode`), nil (the default) only when the ranks are processes
    /// under MPI (in-process ranks are threads of one process; their "MPI" is the local world's own sum) and
    /// there are no more of them than the node has CPUs.
    public let probes: Bool?
    /// What the set-up probe measured (nil: no probe ran).
    public private(set) var probeResult: ProbeResult?

    /// The set-up probe's medians (slowest rank per call) and the message size.
    public struct ProbeResult: Sendable, Equatable, CustomStringConvertible {
        public let bytes: Int
        public let shmSeconds: Double
        public let mpiSeconds: Double
        /// `oneNode` when `shm` was at least as fast as `MPI_Allreduce`, else `oneNodeSlowWindow`.
        public var policy: AutoAllreducePolicy { shmSeconds <= mpiSeconds ? .oneNode : .oneNodeSlowWindow }
        public var description: String {
            String(format: "probe at %@: shm %.2f ms, mpi %.2f ms (%.2fx)", ByteCount.format(bytes), shmSeconds * 1e3, mpiSeconds * 1e3,
                   mpiSeconds / Swift.max(shmSeconds, 1e-12))
        }
    }

    /// The probe's message: 8 one-MiB blocks, out of cache, where a slow window shows; 3 alternating rounds.
    public static let probeBytes = 8 << 20
    static let probeRounds = 3

    public init(comm: Communicator, policy: AutoAllreducePolicy? = nil, probes: Bool? = nil) {
        self.comm = PrivateCommunicator(comm)
        self.probes = probes
        if let p = policy { self.policy = .success(p) } else {
            do { self.policy = try AutoAllreducePolicy.fromEnvironment().map { .success($0) } } catch { self.policy = .failure(error) }
        }
    }

    /// The policy in use. Collective on the first call when no policy was given: whether the ranks share a
    /// node is found by setting up the shared-memory window (kept for `shm`); on one node, `probe` then picks
    /// between `oneNode` and `oneNodeSlowWindow` (unless `probes` is false).
    public func resolvedPolicy() throws -> AutoAllreducePolicy {
        if let p = policy { return try p.get() }
        let own = try comm.get()
        let shm = SharedMemoryAllreduce(comm: own)
        try shm.prepare()
        algorithms[.shm] = shm
        var p = shm.usesSharedMemory ? AutoAllreducePolicy.oneNode : AutoAllreducePolicy.acrossNodes
        // Not when the node is oversubscribed (more ranks than CPUs): the timings would measure the scheduler,
        // and at np 8 on 2 cores the probe cost 1.4–1.7 s of the first step; shm won there (RESULTS.md, np=4).
        let oversubscribed = own.size > ProcessInfo.processInfo.activeProcessorCount
        if shm.usesSharedMemory && (probes ?? (own is MPICommunicator && !oversubscribed)) && own.size > 1 {
            let mpi = AllreduceKind.mpi.make(for: own)
            algorithms[.mpi] = mpi
            let result = try Self.probe(shm: shm, mpi: mpi, comm: own)
            probeResult = result
            p = result.policy
        }
        policy = .success(p)
        return p
    }

    /// Times `shm` and `mpi` on one `probeBytes` message, alternating, `probeRounds` rounds after one untimed
    /// call each; a call's time is the slowest rank's (one max-allreduce of two numbers per round), each
    /// algorithm's time the median. Every rank gets the same numbers, so the same policy. Collective.
    /// Cost: an 8 MiB buffer and 2·(rounds + 1) allreduces of it (about 10 ms at np 2 on an idle node,
    /// 30–60 ms when `shm` is slow), once, when `auto` is first used.
    public static func probe(shm: AllreduceAlgorithm, mpi: AllreduceAlgorithm, comm: Communicator) throws -> ProbeResult {
        let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: probeBytes / MemoryLayout<Float>.stride)
        defer { buffer.deallocate() }
        buffer.initialize(repeating: 0)  // zeros stay zeros: no overflow, whatever the sums
        var times: [[Double]] = [[], []]
        for round in 0...probeRounds {
            var mine = [0.0, 0.0]
            for (i, algorithm) in [shm, mpi].enumerated() {
                try comm.barrier()
                let t0 = DispatchTime.now().uptimeNanoseconds
                try algorithm.run(buffer, op: .sum)
                mine[i] = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            }
            let slowest = try comm.allreduced(mine, op: .max)
            if round > 0 { times[0].append(slowest[0]); times[1].append(slowest[1]) }
        }
        func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }
        return ProbeResult(bytes: probeBytes, shmSeconds: median(times[0]), mpiSeconds: median(times[1]))
    }

    /// The algorithm used for `bytes`-byte messages.
    public func algorithm(bytes: Int) throws -> AllreduceAlgorithm {
        let kind = try resolvedPolicy().choice(bytes: bytes)
        if let a = algorithms[kind] { return a }
        let policy = try resolvedPolicy(), own = try comm.get()
        let a = kind == .ring && policy.ringSegmentBytes != nil
            ? RingAllreduce(comm: own, segmentBytes: policy.ringSegmentBytes) : kind.make(for: own)
        algorithms[kind] = a
        return a
    }

    /// Collective, once: the duplicate communicator and the policy (which sets up `shm` when it is the
    /// default for where the ranks are). The algorithms the policy names are set up on their first call.
    public func prepare() throws {
        _ = try comm.get()
        _ = try resolvedPolicy()
    }

    public func run(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws {
        try algorithm(bytes: buffer.count * MemoryLayout<Float>.stride).run(buffer, op: op)
    }

    public func run(_ buffer: UnsafeMutableBufferPointer<Double>, op: ReduceOp) throws {
        try algorithm(bytes: buffer.count * MemoryLayout<Double>.stride).run(buffer, op: op)
    }
}
