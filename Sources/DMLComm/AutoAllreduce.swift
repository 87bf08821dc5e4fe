import Foundation

/// Which algorithm `auto` uses for a message: a list of `algorithm<=size` rules tried in order, and a last
/// algorithm for everything larger. Written as text, e.g. `rd<=16K,shm` (the default).
///
/// The default comes from `dml-bench allreduce` on 2-core x86-64 machines with OpenMPI 4.1.4 (see
/// benchmarks/RESULTS.md): recursive doubling below the crossover, the shared-memory window above it (which
/// itself falls back to the ring when the ranks span nodes). Override with the environment variable
/// `DML_ALLREDUCE_AUTO` (every rank must see the same value; `mpirun -x DML_ALLREDUCE_AUTO` passes it on),
/// or `dml-bench allreduce --auto`.
public struct AutoAllreducePolicy: Equatable, CustomStringConvertible, Sendable {
    public var rules: [Rule]
    public var otherwise: AllreduceKind

    public struct Rule: Equatable, Sendable {
        public var kind: AllreduceKind
        public var maxBytes: Int
    }

    public static let defaultPolicy = AutoAllreducePolicy(rules: [Rule(kind: .rd, maxBytes: 16 << 10)], otherwise: .shm)

    public init(rules: [Rule], otherwise: AllreduceKind) {
        self.rules = rules
        self.otherwise = otherwise
    }

    /// Parses `rd<=16K,mpi<=1M,shm`. Throws a message naming the bad part.
    public init(parsing text: String) throws {
        let parts = text.split(separator: ",").map { String($0).trimmingSpaces() }
        guard let last = parts.last, !last.isEmpty else { throw CommError.invalidArgument("an auto policy needs at least one algorithm (e.g. 'rd<=16K,shm')") }
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

    /// `DML_ALLREDUCE_AUTO` when set, else the default.
    public static func fromEnvironment() throws -> AutoAllreducePolicy {
        guard let text = ProcessInfo.processInfo.environment["DML_ALLREDUCE_AUTO"] else { return defaultPolicy }
        do { return try AutoAllreducePolicy(parsing: text) } catch { throw CommError.invalidArgument("DML_ALLREDUCE_AUTO: \(error)") }
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
/// rank, so every rank makes the same choice. Each algorithm is built on first use and kept.
public final class AutoAllreduce: AllreduceAlgorithm {
    public let name = "auto"
    let comm: Communicator
    /// The policy; a bad `DML_ALLREDUCE_AUTO` is reported by the first `run`.
    public let policy: Result<AutoAllreducePolicy, Error>
    private var algorithms: [AllreduceKind: AllreduceAlgorithm] = [:]

    public init(comm: Communicator, policy: AutoAllreducePolicy? = nil) {
        self.comm = comm
        self.policy = policy.map { .success($0) } ?? Result { try AutoAllreducePolicy.fromEnvironment() }
    }

    /// The algorithm used for `bytes`-byte messages.
    public func algorithm(bytes: Int) throws -> AllreduceAlgorithm {
        let kind = try policy.get().choice(bytes: bytes)
        if let a = algorithms[kind] { return a }
        let a = kind.make(for: comm)
        algorithms[kind] = a
        return a
    }

    public func run(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws {
        try algorithm(bytes: buffer.count * MemoryLayout<Float>.stride).run(buffer, op: op)
    }

    public func run(_ buffer: UnsafeMutableBufferPointer<Double>, op: ReduceOp) throws {
        try algorithm(bytes: buffer.count * MemoryLayout<Double>.stride).run(buffer, op: op)
    }
}
