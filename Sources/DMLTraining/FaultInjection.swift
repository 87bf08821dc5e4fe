#if canImport(Glibc)
import Glibc
#endif
import Foundation
import DMLStatus
import DMLData

/// Deliberate faults at a chosen rank and step, for testing the runtime's own safety nets. Read from the
/// environment variable `DML_FAULT`, a comma-separated list of `KIND:rank=R:step=S`:
///
/// - `perturb`: after step S's update, rank R flips the lowest bit of its first parameter (the replica
///   check must catch it);
/// - `nan`: rank R's share of step S's gradient and loss become NaN (the divergence guard must stop);
/// - `crash`: rank R dies by SIGKILL as step S begins, as a killed job would (resume must recover);
/// - `hang`: rank R stops answering as step S begins (S = 0: during start-up, before the data is loaded;
///   S = the last step + 1: in the final evaluation and output) (sleeps forever, deaf to stop signals), as a stalled
///   node would (`--collective-timeout` must end the job, naming rank R). With `:at=PHASE` it stalls in
///   that phase after step S instead: `checkpoint` (rank 0 half-way through writing the file, other ranks
///   as they enter the checkpoint), `verify` (the replica check), `eval` (the evaluation), `allreduce`
///   (inside the gradient allreduce of step S, between two of its messages);
/// - `preempt`: rank R behaves as if it received SIGTERM as step S begins (the ranks must agree, write a
///   checkpoint and exit with status 75);
/// - `writefail`: rank R's checkpoint write after step S fails half-way, as on a full disk (the previous
///   checkpoint must stay intact and no temporary file remain);
/// - `slow`: rank R spends 200 µs more per row of its gradient at every step from S on, as a rank on a slower
///   core would (the timeline must name it);
/// - `truncate`: rank R cuts the shard cache its training rows stream from (`--cache-dir`) to 0 bytes as step S
///   begins, as a file cut short or damaged while in use would be (the next read of a row not held in memory
///   fails: every rank must stop with its one message, exit 74). Nothing with rows in memory.
///
/// Steps are 1-based, as in the progress lines and the metrics. Unset, it costs one comparison per step.
public struct FaultPlan: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable {
        case perturb, nan, crash, hang, preempt, writefail, slow, truncate
    }

    /// Where in step S (or after it) a fault fires; only `hang` takes another phase than `step`.
    public enum Phase: String, Sendable, CaseIterable {
        case step, allreduce, checkpoint, verify, eval
    }

    public struct Fault: Sendable, Equatable {
        public let kind: Kind
        public let rank: Int
        public let step: Int
        public var phase: Phase = .step
    }

    public let faults: [Fault]

    public init(_ faults: [Fault] = []) { self.faults = faults }

    public static let variable = "DML_FAULT"

    /// Parses a `DML_FAULT` value; the error names the bad part.
    public init(parsing spec: String) throws {
        var faults: [Fault] = []
        for item in spec.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !item.isEmpty {
            let parts = item.split(separator: ":").map(String.init)
            func bad(_ why: String) -> TrainingFailure {
                TrainingFailure("\(Self.variable)='\(spec)': '\(item)' \(why); expected KIND:rank=R:step=S with KIND one of "
                                + Kind.allCases.map(\.rawValue).joined(separator: ", "), kind: .usage)
            }
            guard let kind = Kind(rawValue: parts[0]) else { throw bad("has an unknown kind '\(parts[0])'") }
            var rank: Int?, step: Int?, phase = Phase.step
            for p in parts.dropFirst() {
                let kv = p.split(separator: "=", maxSplits: 1).map(String.init)
                if kv.count == 2, kv[0] == "at" {
                    guard let ph = Phase(rawValue: kv[1]), ph == .step || kind == .hang else {
                        throw bad("has a bad phase '\(kv[1])' (hang takes at=\(Phase.allCases.map(\.rawValue).joined(separator: "|")))")
                    }
                    phase = ph
                    continue
                }
                guard kv.count == 2, let v = Int(kv[1]), v >= 0 else { throw bad("has a bad field '\(p)'") }
                switch kv[0] {
                case "rank": rank = v
                case "step": step = v
                default: throw bad("has an unknown field '\(kv[0])'")
                }
            }
            guard let r = rank, let s = step, s >= 1 || (s == 0 && kind == .hang && phase == .step) else {
                throw bad("needs rank=R and step=S (S ≥ 1; hang also takes S = 0: during start-up)")
            }
            faults.append(Fault(kind: kind, rank: r, step: s, phase: phase))
        }
        self.faults = faults
    }

    /// The plan from `DML_FAULT` (empty when unset).
    public static func fromEnvironment() throws -> FaultPlan {
        guard let spec = ProcessInfo.processInfo.environment[variable] else { return FaultPlan() }
        return try FaultPlan(parsing: spec)
    }

    /// True when a fault of `kind` is planned for `rank` at 1-based step `step`, in `phase`.
    @inline(__always)
    public func fires(_ kind: Kind, rank: Int, step: Int, at phase: Phase = .step) -> Bool {
        !faults.isEmpty && faults.contains { $0.kind == kind && $0.rank == rank && $0.step == step && $0.phase == phase }
    }

    /// Hangs this rank if a `hang` is planned for it at `step` in `phase`.
    public func hangIfPlanned(rank: Int, step: Int, at phase: Phase) {
        if fires(.hang, rank: rank, step: step, at: phase) { hang() }
    }

    /// True when `rank` is a planned straggler at step `step` (a `slow` fault at this or an earlier step).
    @inline(__always)
    public func slows(rank: Int, step: Int) -> Bool {
        !faults.isEmpty && faults.contains { $0.kind == .slow && $0.rank == rank && $0.step <= step }
    }

    /// The extra time a straggler spends per step.
    static let stragglingPerRow: useconds_t = 200

    /// Cuts `data`'s shard cache file to 0 bytes (`truncate(2)` on its path, as another process would) when a
    /// `truncate` fault is planned for `rank` at `step` and the rows are streamed.
    public func truncateCacheIfPlanned(_ data: Dataset, rank: Int, step: Int) {
        guard fires(.truncate, rank: rank, step: step), let stream = data.stream else { return }
        _ = Glibc.truncate(stream.path, 0)
    }

    /// Hangs this rank now if a `hang` at step 0 is planned for it (a rank stalled during start-up).
    public func hangDuringStartupIfPlanned(rank: Int) {
        if fires(.hang, rank: rank, step: 0) { hang() }
    }

    /// Kills this process as `kill -9` would: no cleanup, no MPI_Finalize.
    func crash() -> Never {
        fflush(nil)
        kill(getpid(), SIGKILL)
        while true { pause() }
    }

    /// Stops answering for good: sleeps forever with the stop signals blocked, as a stalled node would.
    public func hang() -> Never {
        fflush(nil)
        var set = sigset_t()
        sigemptyset(&set)
        for s in Preemption.signals { sigaddset(&set, s) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
        while true { sleep(3600) }
    }
}
