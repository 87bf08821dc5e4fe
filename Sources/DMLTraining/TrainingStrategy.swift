import Foundation
import DMLComm
import DMLData

/// A way of training one model on many ranks, one global step at a time: what the session loop
/// (`TrainingSession`, `run`) drives, whatever the step does inside. Three exist: `Trainer` (each rank a
/// share of the rows; the gradient reduced by a `GradientReducer`), `FeaturePartitionedTrainer` (each rank
/// every row and a share of the columns; partial scores reduced) and `SecondOrderTrainer` (full-batch L-BFGS
/// or trust-region Newton; one step is one iteration). Checkpoints, replica checks, evaluation,
/// metrics, the timeline, faults and the gate apply to both through this protocol and `StepHooks`.
public protocol TrainingStrategy: AnyObject {
    var comm: Communicator { get }
    var config: TrainingConfig { get }
    var sampler: BatchSampler { get }
    /// Faults, timeline and gate: called at the named phases of every step.
    var hooks: StepHooks { get }
    /// Steps completed so far.
    var step: Int { get }
    /// The mean loss of the last step's global batch (nil before the first step).
    var lastLoss: Double? { get }
    /// This rank's training rows (what `data_checksum` digests).
    var train: Dataset { get }
    /// The identity fields only the built strategy knows: the model's shape, the schedule, the rows.
    var derivedIdentity: [String: String] { get }
    /// A checksum of the whole training set that does not depend on the number of ranks (`data_checksum`).
    /// Collective.
    func dataChecksum() throws -> UInt64

    /// The body of step `number` (1-based), between the hooks' `begin` and `end` (see `trainStep`): it must
    /// call `hooks.computed` after its local computation and `hooks.gate` once, then apply the update and
    /// count the step. Returns the global batch's mean loss and rows. Throws `TrainingFailure` (every rank
    /// alike) when the loss or gradient is not finite, before the parameters are touched.
    func stepBody(number: Int) throws -> (loss: Double, rows: Int)
    /// The parameters every rank holds identically (all of them, or a feature partition's bias): what the
    /// replica check compares and the `perturb` fault shifts.
    func withReplicatedParameters(_ body: (UnsafeMutableBufferPointer<Float>) -> Void)
    /// An epoch boundary after `step`. Collective.
    func epochEnded() throws
    /// A checksum of what every rank must hold with the same bits (the replica check compares it), and
    /// what that is, in words ("parameters", "bias").
    var replicaChecksum: (checksum: UInt64, what: String) { get }
    /// Mean loss (and accuracy) over `data`, all ranks' shards together. Collective.
    func evaluate(_ data: Dataset) throws -> Evaluation
    /// Throws `TrainingFailure` (every rank alike) when the parameters are no longer finite.
    func checkParametersFinite() throws
    /// A snapshot of the whole model's training state (collective; rank 0's is complete).
    func checkpoint(identity: [String: String]) throws -> Checkpoint
    /// Continues from `checkpoint` (checked against the run's identity by the caller).
    func restore(_ checkpoint: Checkpoint) throws
    /// Starts from `parameters` (the whole model, row-partitioned layout: a warm start, `--init`) instead of
    /// the seeded initialisation, with fresh optimizer state.
    func start(from parameters: [Float]) throws
    /// The whole model's parameters in the row-partitioned layout (`model.layout`). Collective.
    func outputParameters() throws -> [Float]
    /// Figures of the last step besides its loss, by name (a full-batch method's objective and gradient
    /// norm): the metrics lines and the progress lines show them. Empty by default.
    var stepFigures: [(name: String, value: Double)] { get }
    /// Whether its steps follow `config.schedule` (the metrics carry `lr` then); true by default, false for a
    /// method that chooses its own steps.
    var usesLearningRate: Bool { get }
    /// Why the strategy has stopped before `config.steps` (a tolerance reached), identical on every rank;
    /// nil while it goes on (the default). The loop runs no further step once it is set.
    var finished: String? { get }
    /// A checkpoint in parts, for a strategy whose optimizer state is sharded (`--shard-update`): the snapshot
    /// without the state (rank 0 writes it as the manifest) and this rank's part; nil (the default): `checkpoint`
    /// holds everything and rank 0 writes it alone.
    func checkpointParts(identity: [String: String]) throws -> ShardedSnapshot?
}

/// A sharded update's checkpoint as the ranks write it (`ShardedCheckpoint.swift`).
public struct ShardedSnapshot {
    /// Parameters, identity, step; no optimizer state.
    public var snapshot: Checkpoint
    /// This rank's part of the optimizer state.
    public var part: CheckpointPart
    /// How the state is cut among the ranks, and the state copies per coordinate.
    public var shards: UpdateShards
    public var copies: Int
}

extension TrainingStrategy {
    public func checkpointParts(identity: [String: String]) throws -> ShardedSnapshot? { nil }
    public var stepFigures: [(name: String, value: Double)] { [] }
    public var finished: String? { nil }
    public var usesLearningRate: Bool { true }

    /// One global step, with the hooks around it: `begin` (faults that fire as a step begins, the timeline; the
    /// `truncate` fault),
    /// the strategy's body, `end` (which checks the body ran the gate; the `perturb` fault; the timeline).
    @discardableResult
    public func trainStep() throws -> (loss: Double, rows: Int) {
        let number = step + 1
        hooks.begin(step: number)
        hooks.faults.truncateCacheIfPlanned(train, rank: hooks.comm.rank, step: number)
        let result = try stepBody(number: number)
        withReplicatedParameters { hooks.end(step: number, parameters: $0) }
        return result
    }

    /// Runs the remaining steps; `report` is called at each log interval and at least every
    /// `config.reportInterval` seconds (rank 0 prints it; it must not communicate, as ranks may see the
    /// clock differently), `afterStep` after every step (checkpoints, replica checks and evaluation hang off
    /// it; it may communicate, as every rank calls it at the same step); at each epoch boundary `epochEnded` runs.
    public func run(report: (StepReport) throws -> Void, afterStep: () throws -> Void = {}) throws {
        var lastTime = Date()
        var samplesSinceReport = 0
        while step < config.steps && finished == nil {
            let lr = config.schedule.lr(at: step)
            let (loss, rows) = try trainStep()
            samplesSinceReport += rows
            let now = Date()
            let elapsed = now.timeIntervalSince(lastTime)
            if step % config.logEvery == 0 || step == config.steps || elapsed >= config.reportInterval || finished != nil {
                try report(StepReport(step: step, totalSteps: config.steps, epoch: sampler.epoch(ofStep: step - 1),
                                      loss: loss, samplesPerSecond: elapsed > 0 ? Double(samplesSinceReport) / elapsed : 0,
                                      learningRate: lr, figures: stepFigures))
                lastTime = now
                samplesSinceReport = 0
            }
            try afterStep()
            if step % sampler.stepsPerEpoch == 0 && step < config.steps { try epochEnded() }
        }
    }

    /// Collective replica check: every rank's `replicaChecksum` must be the same. Throws `TrainingFailure` on
    /// every rank, naming the ranks that differ. Cost: one checksum pass, one allreduce of `size` Int64; none
    /// with one rank, which has no other replica to compare (the checksum would hash the parameters and optimizer
    /// state for nothing: 5 GB in a one-pass run of 2^22 hashed features checked every 50 steps).
    public func verifyReplicas() throws {
        try hooks.outside("verify", step: step) {
            hooks.faults.hangIfPlanned(rank: comm.rank, step: step, at: .verify)
            guard comm.size > 1 else { return }
            let (checksum, what) = replicaChecksum
            let (differing, all) = try comm.watched("the replica check after step \(step)", seconds: config.collectiveTimeout) {
                try comm.ranksDiffering(in: checksum)
            }
            guard !differing.isEmpty else { return }
            let good = all.indices.first { !differing.contains($0) }!
            throw TrainingFailure("replica check failed after step \(step): \(rankList(differing)) hold\(differing.count == 1 ? "s" : "") "
                                  + "different \(what) from rank \(good) (checksum \(Checksum.hex(all[differing[0]])) vs \(Checksum.hex(all[good]))). "
                                  + "Replicas must be bit-identical: suspect faulty memory or hardware on that node, or a nondeterministic kernel")
        }
    }

    /// The divergence guard's message for step `number`.
    func diverged(_ number: Int, lossFinite: Bool) -> TrainingFailure {
        TrainingFailure("training diverged at step \(number): the \(lossFinite ? "gradient" : "loss") is not finite "
                        + "(learning rate \(config.schedule.lr(at: number - 1))). Try a lower learning rate (--lr) or a warm-up (--warmup); "
                        + "the update of this step was not applied and no checkpoint was written from it")
    }

    /// The message when an update has left parameters non-finite.
    func nonFiniteParameters() -> TrainingFailure {
        TrainingFailure("training diverged by step \(step): the parameters are no longer finite "
                        + "(learning rate \(config.schedule.lr(at: Swift.max(0, step - 1)))). Try a lower learning rate (--lr) or a warm-up "
                        + "(--warmup); no checkpoint was written from these parameters")
    }
}
