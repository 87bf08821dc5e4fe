import Foundation
import DMLComm
import DMLData
import DMLKernels
import DMLModels
import DMLStatus

/// What a training run does, as plain values (the command line fills it in).
public struct TrainingConfig: Sendable {
    /// Global steps to run.
    public var steps: Int
    /// Rows per global batch (over all ranks); nil means every training row each step.
    public var batchSize: Int?
    /// The base learning rate (the schedule's, when one is given).
    public var learningRate: Float
    public var seed: UInt64
    /// Rank 0 reports progress every `logEvery` steps (and at the last step).
    public var logEvery: Int
    public var optimizer: OptimizerConfig
    /// The rate of every step; nil is a constant `learningRate`.
    public var schedule: LearningRateSchedule
    /// Seconds the ranks wait for each other at the start of a step and inside its allreduce before the
    /// job is ended (`--collective-timeout`); 0 waits forever.
    public var collectiveTimeout: Double = 60
    /// For a model whose gradient is finished in stages (the MLP, layer by layer): reduce each bucket while
    /// the backward pass computes the next (`--overlap`, opt-in: it needs a spare core for the communication
    /// thread to pay). The buckets are the same either way, so the result has the same bits with and without.
    public var overlap = false
    /// A staged model's stages are merged, top layer first, into buckets of at least this many bytes.
    public var bucketBytes = 1 << 20
    /// Straggler balancing (`--balance`): rows in fixed blocks moved towards the faster ranks at epoch
    /// boundaries, gradients summed in block order (see `BlockPlan`), so the bits do not depend on who
    /// holds which block.
    public var balance = false

    public init(steps: Int, batchSize: Int?, learningRate: Float, seed: UInt64, logEvery: Int,
                optimizer: OptimizerConfig = OptimizerConfig(), schedule: LearningRateSchedule? = nil) {
        self.steps = steps
        self.batchSize = batchSize
        self.learningRate = learningRate
        self.seed = seed
        self.logEvery = logEvery
        self.optimizer = optimizer
        self.schedule = schedule ?? LearningRateSchedule(base: Double(learningRate), total: steps)
    }
}

/// One progress report, identical on every rank.
public struct StepReport: Sendable {
    public let step: Int
    public let totalSteps: Int
    public let epoch: Int
    /// Mean loss over the global batch of this step.
    public let loss: Double
    /// Global rows per second since the previous report.
    public let samplesPerSecond: Double
    public let learningRate: Float
}

/// Loss (and accuracy, for classifiers) of a model over a whole data set, all shards together.
public struct Evaluation: Sendable {
    public let rows: Int
    public let loss: Double
    /// nil for regression.
    public let accuracy: Double?
}

/// The data-parallel training loop. Per step, on every rank:
/// ```
/// sampler → this rank's rows of the global batch → model: Σ gradient, Σ loss
///   → one flat buffer [gradient | loss sum | row count] → allreduce(sum)
///   → divide by the global row count → divergence guard → optimizer update (the same on every rank)
/// ```
public final class Trainer {
    public let comm: Communicator
    public let model: Model
    /// This rank's training rows (they change at epoch boundaries under `--balance`).
    public internal(set) var train: Dataset
    public let config: TrainingConfig
    public let allreduce: AllreduceAlgorithm
    public let optimizer: Optimizer
    public let sampler: BatchSampler
    /// Deliberate faults (tests of the safety nets); empty in normal runs.
    public let faults: FaultPlan
    /// Records where each step's time goes (`--timeline`); nil records nothing.
    public var timeline: Timeline?
    /// Where rank 0 reports what balancing did (stdout by default).
    public var note: (String) -> Void = { print($0) }

    /// A failure this rank found outside any collective (rank 0's metrics write on a full disk): the next
    /// step's gate agrees on it, and every rank throws it (`AgreedFailure`) before that step's update.
    public var failureToAgree: Error?

    /// The parameters, one flat buffer laid out by `model.layout`.
    public private(set) var parameters: [Float]
    /// Steps completed so far.
    public private(set) var step = 0
    /// The mean loss of the last step's global batch (nil before the first step).
    public private(set) var lastLoss: Double?

    /// `[gradient | loss sum | row count]`, the one buffer that is allreduced each step.
    var reduceBuffer: [Float]
    /// Under `--balance`: which blocks each rank holds, and this rank's compute time and rows since the
    /// last rebalancing.
    public internal(set) var blockPlan: BlockPlan?
    var balanceSeconds = 0.0
    var balanceRows = 0
    var blockScratch: [Float] = []
    /// The model, when it finishes its gradient in stages.
    private let stagedModel: StagedGradientModel?
    /// Ranges of `reduceBuffer` reduced by one allreduce each, in this order: the whole buffer for most
    /// models; for a staged model the merged stages (in the order backward completes them), then the
    /// loss-sum and row-count tail.
    public let buckets: [Range<Int>]
    /// For a staged model: the bucket that stage i completes, if any.
    private let bucketClosedByStage: [Int?]
    /// Runs the bucket allreduces that overlap the backward pass, one at a time.
    private let communication = DispatchQueue(label: "dml-communication")
    /// True when this trainer overlaps: a staged model, `config.overlap`, and a communicator that allows it.
    public var overlaps: Bool { stagedModel != nil && config.overlap && comm.allowsSerializedThreads }
    private var batchX: [Float] = []
    private var batchY: [Float] = []

    public init(comm: Communicator, model: Model, train: Dataset, config: TrainingConfig,
                allreduce: AllreduceAlgorithm, faults: FaultPlan = FaultPlan()) {
        self.comm = comm
        self.model = model
        self.train = train
        self.config = config
        self.allreduce = allreduce
        self.faults = faults
        optimizer = Optimizer(config.optimizer, layout: model.layout)
        let full = config.batchSize == nil
        sampler = BatchSampler(rows: train.globalRows, batchSize: config.batchSize ?? train.globalRows,
                               seed: config.seed, shuffle: !full)
        parameters = [Float](repeating: 0, count: model.layout.count)
        reduceBuffer = [Float](repeating: 0, count: model.layout.count + 2)
        parameters.withUnsafeMutableBufferPointer { model.initialize($0, seed: config.seed) }
        // A compressed allreduce takes the whole buffer (its exact tail and error feedback are positional).
        stagedModel = allreduce is CompressedAllreduce ? nil : model as? StagedGradientModel
        if let staged = stagedModel, staged.gradientStages.count > 1 {
            var buckets: [Range<Int>] = [], closes: [Int?] = []
            var open: Range<Int>?
            for stage in staged.gradientStages {
                // Stages arrive top layer first, i.e. from the end of the buffer towards its start.
                open = open.map { stage.lowerBound ..< $0.upperBound } ?? stage
                if open!.count * MemoryLayout<Float>.size >= config.bucketBytes {
                    buckets.append(open!)
                    closes.append(buckets.count - 1)
                    open = nil
                } else {
                    closes.append(nil)
                }
            }
            if let last = open {
                buckets.append(last)
                closes[closes.count - 1] = buckets.count - 1
            }
            let p = model.layout.count
            self.buckets = buckets + [p ..< p + 2]
            bucketClosedByStage = closes
        } else {
            buckets = [0 ..< model.layout.count + 2]
            bucketClosedByStage = []
        }
    }

    /// Runs the remaining steps; `report` is called on every rank at each log interval, `afterStep`
    /// after every step (checkpoints, replica checks and evaluation hang off it; it may communicate, as
    /// every rank calls it at the same step).
    public func run(report: (StepReport) throws -> Void, afterStep: () throws -> Void = {}) throws {
        var lastTime = Date()
        var samplesSinceReport = 0
        while step < config.steps {
            let lr = config.schedule.lr(at: step)
            let (loss, rows) = try trainStep()
            samplesSinceReport += rows
            if step % config.logEvery == 0 || step == config.steps {
                let now = Date()
                let elapsed = now.timeIntervalSince(lastTime)
                try report(StepReport(step: step, totalSteps: config.steps, epoch: sampler.epoch(ofStep: step - 1),
                                      loss: loss, samplesPerSecond: elapsed > 0 ? Double(samplesSinceReport) / elapsed : 0,
                                      learningRate: lr))
                lastTime = now
                samplesSinceReport = 0
            }
            try afterStep()
            if config.balance && step % sampler.stepsPerEpoch == 0 && step < config.steps { try rebalanceIfNeeded() }
        }
    }

    /// One global step. Returns the global batch's mean loss and its number of rows. Throws
    /// `TrainingFailure` (on every rank alike) when the loss or the gradient is not finite, before the
    /// parameters are touched.
    @discardableResult
    public func trainStep() throws -> (loss: Double, rows: Int) {
        let p = model.layout.count
        let number = step + 1  // 1-based, as reported
        if faults.fires(.crash, rank: comm.rank, step: number) { faults.crash() }
        if faults.fires(.hang, rank: comm.rank, step: number) { faults.hang() }
        if faults.fires(.preempt, rank: comm.rank, step: number) { Preemption.request(SIGTERM) }
        var mark = timeline?.now() ?? 0
        if config.balance {
            mark = try balancedStep(number: number)
        } else {
            let overlapping = overlaps
            if overlapping {
                // The buckets start during the backward pass, so the ranks meet before it.
                try gate(step: number)
                if let t = timeline { mark = t.record("wait", step: number, since: mark) }
                comm.deadlines.current = CollectiveDeadline(seconds: config.collectiveTimeout, phase: "the gradient allreduce of step \(number)")
            }
            let rows = sampler.localRows(ofStep: step, in: train.globalRange)
            let failure = LockedError()
            try reduceBuffer.withUnsafeMutableBufferPointer { buf in
                buf.initialize(repeating: 0)
                let base = buf.baseAddress!
                let started = DispatchGroup()
                func reduce(_ bucket: Range<Int>) throws {
                    try allreduce.run(UnsafeMutableBufferPointer(start: base + bucket.lowerBound, count: bucket.count), op: .sum)
                }
                let loss = withBatch(rows) { batch in
                    if let t = timeline { mark = t.record("data", step: number, since: mark) }
                    return parameters.withUnsafeBufferPointer { w in
                        guard let staged = stagedModel, buckets.count > 1 else {
                            return model.accumulateGradient(parameters: w.baseAddress!, batch: batch, into: base)
                        }
                        return staged.accumulateGradient(parameters: w.baseAddress!, batch: batch, into: base) { stage in
                            guard overlapping, let b = bucketClosedByStage[stage] else { return }
                            let bucket = buckets[b]
                            started.enter()
                            communication.async {
                                defer { started.leave() }
                                do { try reduce(bucket) } catch { failure.record(error) }
                            }
                        }
                    }
                }
                buf[p] = Float(loss)
                buf[p + 1] = Float(rows.count)
                if faults.fires(.nan, rank: comm.rank, step: number) {
                    if !overlapping { buf[0] = .nan }  // (overlapping, the gradient may already be on the wire)
                    buf[p] = .nan
                }
                if faults.slows(rank: comm.rank, step: number) { usleep(FaultPlan.stragglingPerRow * useconds_t(rows.count)) }
                if let t = timeline { mark = t.record("compute", step: number, since: mark) }
                if overlapping {
                    started.wait()
                    defer { comm.deadlines.current = nil }
                    if let error = failure.error { throw error }
                    try reduce(buckets[buckets.count - 1])  // the loss and row count
                } else {
                    try gate(step: number)
                    if let t = timeline { mark = t.record("wait", step: number, since: mark) }
                    // A 16-bit wire cannot hold a sum over a large batch (fp16 ends at 65504): compressed gradients
                    // are divided by the global row count before the allreduce rather than after.
                    if allreduce is CompressedAllreduce {
                        Vector.scale(1 / Float(sampler.globalBatchRows(ofStep: step)), base, p)
                    }
                    faults.hangIfPlanned(rank: comm.rank, step: number, at: .allreduce)
                    try comm.watched("the gradient allreduce of step \(number)", seconds: config.collectiveTimeout) {
                        for bucket in buckets { try reduce(bucket) }
                    }
                }
                if let t = timeline { mark = t.record("allreduce", step: number, since: mark) }
            }
        }
        let globalRows = Int(reduceBuffer[p + 1])
        precondition(globalRows == sampler.globalBatchRows(ofStep: step), "ranks disagree on the batch")
        let meanLoss = Double(reduceBuffer[p]) / Double(globalRows)
        // Divergence guard. Every rank holds the same reduced bits, so every rank decides alike.
        let finiteGradient = reduceBuffer.withUnsafeBufferPointer { g in !g[0..<p].contains { !$0.isFinite } }
        guard meanLoss.isFinite && finiteGradient else {
            throw TrainingFailure("training diverged at step \(number): the \(meanLoss.isFinite ? "gradient" : "loss") is not finite "
                                  + "(learning rate \(config.schedule.lr(at: step))). Try a lower learning rate (--lr) or a warm-up (--warmup); "
                                  + "the update of this step was not applied and no checkpoint was written from it")
        }
        let lr = config.schedule.lr(at: step)
        reduceBuffer.withUnsafeMutableBufferPointer { g in
            if !(allreduce is CompressedAllreduce) { Vector.scale(1 / Float(globalRows), g.baseAddress!, p) }  // (compressed: divided before)
            parameters.withUnsafeMutableBufferPointer { w in
                optimizer.step(parameters: w.baseAddress!, gradient: g.baseAddress!, t: number, learningRate: lr)
            }
        }
        timeline?.record("update", step: number, since: mark)
        step += 1
        lastLoss = meanLoss
        if faults.fires(.perturb, rank: comm.rank, step: number) {
            // Large enough that rounding in later updates cannot wash it out.
            parameters[0] += 1e-3
        }
        return (meanLoss, globalRows)
    }

    /// The start of step `number` (1-based): the ranks agree on whether any received a stop signal (then
    /// every rank throws `Preempted`, before the step's update, so the state is that of the last completed
    /// step). Under the step's deadline, so a rank that never arrives is named by the roll call
    /// (`CollectiveStall`). Cost: one allreduce of one Int64.
    func gate(step number: Int) throws {
        let local = failureToAgree != nil ? Self.failureFlag : Int64(Preemption.signal)
        try comm.watched("the start of step \(number)", seconds: config.collectiveTimeout) {
            let agreed = try comm.allreduced(local, op: .max)
            if agreed >= Self.failureFlag { try comm.agree(error: failureToAgree) }
            if agreed != 0 { throw Preempted(signal: Int32(agreed), step: step) }
        }
    }

    /// The gate's flag for "a rank has a failure to agree on": above every signal number.
    static let failureFlag: Int64 = 1 << 16

    /// Throws `TrainingFailure` (on every rank alike) when an update has left a parameter infinite or NaN:
    /// such parameters are never checkpointed or written out. Cost: one pass over the parameters.
    public func checkParametersFinite() throws {
        guard parameters.contains(where: { !$0.isFinite }) else { return }
        throw TrainingFailure("training diverged by step \(step): the parameters are no longer finite "
                              + "(learning rate \(config.schedule.lr(at: Swift.max(0, step - 1)))). Try a lower learning rate (--lr) or a warm-up "
                              + "(--warmup); no checkpoint was written from these parameters")
    }

    /// A checksum of this rank's parameters and optimizer state (bit patterns).
    public var stateChecksum: UInt64 {
        Checksum.hash(optimizer.state, seed: Checksum.hash(parameters))
    }

    /// Collective replica check: every rank's parameters and optimizer state must have the same bits.
    /// Throws `TrainingFailure` on every rank, naming the ranks that differ. Cost: one checksum pass over
    /// the parameters and state, one allreduce of `size` Int64.
    public func verifyReplicas() throws {
        let started = timeline?.now()
        defer { if let t = timeline, let started { t.record("verify", step: step, since: started) } }
        faults.hangIfPlanned(rank: comm.rank, step: step, at: .verify)
        let checksum = stateChecksum
        let (differing, all) = try comm.watched("the replica check after step \(step)", seconds: config.collectiveTimeout) {
            try comm.ranksDiffering(in: checksum)
        }
        guard !differing.isEmpty else { return }
        let good = all.indices.first { !differing.contains($0) }!
        throw TrainingFailure("replica check failed after step \(step): \(rankList(differing)) hold\(differing.count == 1 ? "s" : "") "
                              + "different parameters from rank \(good) (checksum \(Checksum.hex(all[differing[0]])) vs \(Checksum.hex(all[good]))). "
                              + "Replicas must be bit-identical: suspect faulty memory or hardware on that node, or a nondeterministic kernel")
    }

    /// A snapshot of the training state for a checkpoint.
    public func checkpoint(identity: [String: String]) -> Checkpoint {
        Checkpoint(step: step, epoch: sampler.epoch(ofStep: step), parameters: parameters,
                   optimizerState: optimizer.state, identity: identity)
    }

    /// Continues from `checkpoint` (which the caller has checked against this run's identity).
    public func restore(_ checkpoint: Checkpoint) throws {
        guard checkpoint.parameters.count == parameters.count, checkpoint.optimizerState.count == optimizer.state.count else {
            throw TrainingFailure("checkpoint holds \(checkpoint.parameters.count) parameters and \(checkpoint.optimizerState.count) "
                                  + "optimizer values; this model needs \(parameters.count) and \(optimizer.state.count)", kind: .configuration)
        }
        parameters = checkpoint.parameters
        optimizer.state = checkpoint.optimizerState
        step = checkpoint.step
    }

    /// The identity fields that only the built trainer knows (what the configuration implies once the data
    /// is read): the model's shape, the schedule with its horizon, the training rows. The session adds them
    /// to `JobConfiguration.identity`, and `derived.data_checksum` (collective).
    public var derivedIdentity: [String: String] {
        ["derived.model_shape": model.layout.views.map { "\($0.name)\($0.shape)" }.joined(separator: ","),
         "derived.lr_schedule": config.schedule.description,
         "derived.data_rows": String(train.globalRows)]
    }

    /// Calls `body` with this rank's rows of the batch as one contiguous block. Unshuffled batches are
    /// runs of consecutive rows and are passed in place; shuffled rows are gathered into a reused buffer.
    func withBatch<R>(_ rows: [Int], _ body: (Batch) -> R) -> R {
        let d = train.features
        let first = train.firstRow
        if !sampler.shuffle, let lo = rows.first {
            return train.x.withUnsafeBufferPointer { x in
                train.y.withUnsafeBufferPointer { y in
                    body(Batch(x: x.baseAddress! + (lo - first) * d, y: y.baseAddress! + (lo - first), rows: rows.count, features: d))
                }
            }
        }
        if batchX.count < rows.count * d { batchX = [Float](repeating: 0, count: rows.count * d) }
        if batchY.count < rows.count { batchY = [Float](repeating: 0, count: rows.count) }
        train.x.withUnsafeBufferPointer { x in
            batchX.withUnsafeMutableBufferPointer { bx in
                rows.withUnsafeBufferPointer {
                    Vector.gatherRows(x.baseAddress!, width: d, rows: $0, firstRow: first, into: bx.baseAddress!)
                }
            }
        }
        for (i, r) in rows.enumerated() { batchY[i] = train.y[r - first] }
        return batchX.withUnsafeBufferPointer { x in
            batchY.withUnsafeBufferPointer { y in
                body(Batch(x: x.baseAddress!, y: y.baseAddress!, rows: rows.count, features: d))
            }
        }
    }

    /// Mean loss (and accuracy, for a classifier) of the current parameters over `data`, all ranks'
    /// shards together. Collective: one allreduce of 3 Doubles, under the collective timeout plus twice this
    /// rank's own evaluation time (shards differ in size, so the others may need longer).
    public func evaluate(_ data: Dataset) throws -> Evaluation {
        let started = timeline?.now()
        defer { if let t = timeline, let started { t.record("evaluate", step: step, since: started) } }
        faults.hangIfPlanned(rank: comm.rank, step: step, at: .eval)
        let clock = DispatchTime.now().uptimeNanoseconds
        let sums = parameters.withUnsafeBufferPointer { w in
            data.x.withUnsafeBufferPointer { x in
                data.y.withUnsafeBufferPointer { y in
                    model.evaluate(parameters: w.baseAddress!, batch: Batch(x: x.baseAddress!, y: y.baseAddress!, rows: data.rows, features: data.features))
                }
            }
        }
        let own = Double(DispatchTime.now().uptimeNanoseconds - clock) / 1e9
        let totals = try comm.watched("the evaluation after step \(step)", seconds: config.collectiveTimeout + 2 * own) {
            try comm.allreduced([sums.loss, sums.correct, Double(data.rows)], op: .sum)
        }
        let n = Swift.max(totals[2], 1)
        return Evaluation(rows: Int(totals[2]), loss: totals[0] / n, accuracy: model.isClassifier ? totals[1] / n : nil)
    }

    /// The parameters as safetensors tensors, one per named view of the layout.
    public func parameterTensors() -> [Safetensors.Tensor] {
        parameters.withUnsafeBufferPointer { w in
            model.layout.views.map { v in
                Safetensors.Tensor(name: v.name, shape: v.shape, floats: UnsafeBufferPointer(rebasing: w[v.range]))
            }
        }
    }
}

/// The first error a communication thread hit, for the main thread to rethrow.
final class LockedError: @unchecked Sendable {
    private let lock = NSLock()
    private var first: Error?
    func record(_ e: Error) { lock.lock(); if first == nil { first = e }; lock.unlock() }
    var error: Error? { lock.lock(); defer { lock.unlock() }; return first }
}
