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
    /// ... and at least every this many seconds, whatever `logEvery` is.
    public var reportInterval = StepReport.maximumInterval
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
    /// `--shard-update`: each rank updates and keeps optimizer state for its 1/p of the coordinates
    /// (`ShardedReducer`), with the bits of the unsharded ring.
    public var shardUpdate = false
    /// A staged model's stages are merged, top layer first, into buckets of at least this many bytes.
    public var bucketBytes = 1 << 20
    /// Mini-batches visit each epoch's rows in a seeded permutation (`--shuffle on`); false: in their global
    /// order (`--shuffle off`), so each rank's part of a batch is a run of consecutive rows used in place.
    /// Full batches (`batchSize` nil) are never shuffled (the order of a whole-set sum is fixed either way).
    public var shuffle = true
    /// Straggler balancing (`--balance`): rows in fixed blocks moved towards the faster ranks at epoch
    /// boundaries, gradients summed in block order (see `BlockPlan`), so the bits do not depend on who
    /// holds which block.
    public var balance = false
    /// `--reproducible`: the rows in blocks of this many (`ReproducibleReducer.blockRows`), batches of whole
    /// blocks, the gradient summed exactly, so the bits do not depend on the number of ranks; nil: off.
    public var reproducibleBlockRows: Int?

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

/// One progress report (at the log interval: identical on every rank).
public struct StepReport: Sendable {
    /// A long run reports at least this often, whatever its log interval (`--steps 1e14` must not be silent).
    public static let maximumInterval = 10.0

    public let step: Int
    public let totalSteps: Int
    public let epoch: Int
    /// Mean loss over the global batch of this step.
    public let loss: Double
    /// Global rows per second since the previous report.
    public let samplesPerSecond: Double
    public let learningRate: Float
    /// The strategy's other figures of this step (`TrainingStrategy.stepFigures`), by name.
    public var figures: [(name: String, value: Double)] = []

    public init(step: Int, totalSteps: Int, epoch: Int, loss: Double, samplesPerSecond: Double, learningRate: Float,
                figures: [(name: String, value: Double)] = []) {
        self.step = step
        self.totalSteps = totalSteps
        self.epoch = epoch
        self.loss = loss
        self.samplesPerSecond = samplesPerSecond
        self.learningRate = learningRate
        self.figures = figures
    }
}

/// Loss (and accuracy, for classifiers) of a model over a whole data set, all shards together.
public struct Evaluation: Sendable {
    public let rows: Int
    public let loss: Double
    /// nil for regression.
    public let accuracy: Double?
}

/// Data-parallel training with the rows partitioned: each rank holds a share of the training rows and all
/// the parameters. Per step, on every rank (`stepBody`, one straight path whatever the variation):
/// ```
/// hooks.begin → reducer.begin: this rank's rows of the global batch (one group, or one per block)
///   → data → compute: Σ gradient, Σ loss per group (stage callbacks → reducer.stageReady)
///   → hooks.computed → reducer.finish (runs hooks.gate) → mean gradient, global loss and rows
///   → divergence guard → optimizer update (the same on every rank) → hooks.end
/// ```
/// The variations of the step are parts: the `GradientReducer` (flat, bucketed with overlap, block chain,
/// sparse; `ReducerKind`), its `ReductionHook` (Float32 or a 16-bit wire), and `StepHooks` (faults, timeline, gate).
public final class Trainer: TrainingStrategy {
    public let comm: Communicator
    public let model: Model
    /// This rank's training rows (they change at epoch boundaries under `--balance`).
    public internal(set) var train: Dataset
    public let config: TrainingConfig
    public let optimizer: Optimizer
    public let sampler: BatchSampler
    public let reducer: GradientReducer
    /// The coordinates each rank updates (all of them, or a sharded update's slices).
    public let shards: UpdateShards
    public let hooks: StepHooks
    /// Deliberate faults (tests of the safety nets); empty in normal runs.
    public var faults: FaultPlan { hooks.faults }
    /// Records where each step's time goes (`--timeline`); nil records nothing.
    public var timeline: Timeline? {
        get { hooks.timeline }
        set { hooks.timeline = newValue }
    }

    /// The parameters, one flat buffer laid out by `model.layout`.
    public private(set) var parameters: [Float]
    /// Steps completed so far.
    public private(set) var step = 0
    /// The mean loss of the last step's global batch (nil before the first step).
    public private(set) var lastLoss: Double?

    private var attached = false
    /// Whether the streamed shard has been told the sampler's steps (`ShardStream.plan`).
    private var streamPlanned = false
    private var batchX: [Float] = []
    private var batchY: [Float] = []
    /// A shuffled batch's CSR rows, gathered (CSR training data).
    private var batchCSR = CSRMatrix(columns: 0)
    /// Scratch (marks, `columns` bytes) for finding a CSR batch's touched columns once per step.
    private let touchedScratch = SparseRows()

    /// A trainer with the reducer the configuration selects (`ReducerKind.select`) over `hook` (default: a
    /// plain Float32 wire over `allreduce`). `note` prints what the reducer reports (balancing; rank 0).
    /// A model that does not take CSR rows (`Model.acceptsSparseRows`) needs dense `train` rows.
    public init(comm: Communicator, model: Model, train: Dataset, config: TrainingConfig, allreduce: AllreduceAlgorithm,
                hook: ReductionHook? = nil, faults: FaultPlan = FaultPlan(), note: @escaping (String) -> Void = { print($0) }) {
        precondition(!train.isSparse || model.acceptsSparseRows, "\(model.kind) does not take CSR rows: give it dense data")
        self.comm = comm
        self.model = model
        self.train = train
        self.config = config
        let hook = hook ?? .plain(allreduce)
        reducer = ReducerKind.select(config, model: model, hook: hook, sparseRows: train.csr != nil)
            .make(comm: comm, model: model, hook: hook, collectiveTimeout: config.collectiveTimeout, note: note)
        hooks = StepHooks(comm: comm, faults: faults, collectiveTimeout: config.collectiveTimeout)
        shards = reducer.updateShards ?? .replicated(count: model.layout.count)
        optimizer = Optimizer(config.optimizer, layout: model.layout, owned: shards.owned(rank: comm.rank))
        sampler = BatchSampler(rows: train.globalRows, batchSize: config.batchSize ?? train.globalRows,
                               seed: config.seed, shuffle: config.batchSize != nil && config.shuffle,
                               blockRows: config.reproducibleBlockRows ?? 1)
        parameters = [Float](repeating: 0, count: model.layout.count)
        parameters.withUnsafeMutableBufferPointer { model.initialize($0, seed: config.seed) }
        reducer.plan(sampler)
    }

    public func stepBody(number: Int) throws -> (loss: Double, rows: Int) {
        let p = model.layout.count
        if !attached { train = try reducer.attach(train); attached = true }
        if train.isStreamed { planStream() }
        // A streamed shard's step window already holds the step's rows as the sampler gives them (its read error,
        // if any, comes again from the gather and is agreed there).
        let planned: [Int]? = train.isStreamed ? (try? train.stream?.plannedRows(step: step)) ?? nil : nil
        let (first, whole) = (train.firstRow, train.globalRange)
        let groups = reducer.begin(step: number, holding: whole) { range in
            if range == whole, let planned { return planned.map { $0 + first } }
            return sampler.localRows(ofStep: step, in: range)
        }
        for group in groups {
            if let leaves = group.leaves {
                // Leaves (`--reproducible`): one pass over the group's rows, a sum per leaf.
                let losses = try group.batch.map { computeLeaves($0, leaves, step: number) }
                    ?? withBatch(group.rows) { computeLeaves($0, leaves, step: number) }
                for (leaf, loss) in zip(leaves, losses) {
                    leaf.gradient[p] = Float(loss)
                    leaf.gradient[p + 1] = Float(leaf.rows.count)
                }
                continue
            }
            let loss = try withBatch(group.rows) { batch in
                hooks.span("data", step: number)
                // A sparse reducer reduces only what a CSR batch can have touched (with several groups it finds
                // the coordinates itself). The batch's columns are found once, here, and handed both to the
                // reducer (mapped to gradient coordinates) and to the model's gradient kernel (`CSRView.touched`),
                // which would otherwise find them again: the same bits either way.
                if groups.count == 1, reducer.wantsTouchedCoordinates, case let .sparse(view) = batch.block.storage {
                    let columns = touchedScratch.touchedColumns(view)
                    reducer.touched(columns.withUnsafeBufferPointer { model.gradientCoordinates(touchingColumns: $0) })
                    return columns.withUnsafeBufferPointer {
                        compute(Batch(block: RowBlock(view.withTouched($0)), y: batch.y), into: group.buffer)
                    }
                }
                return compute(batch, into: group.buffer)
            }
            group.buffer[p] = Float(loss)
            group.buffer[p + 1] = Float(group.rows.count)
        }
        hooks.computed(step: number, loss: groups.first.map { $0.buffer + p }, rows: groups.reduce(0) { $0 + $1.rows.count })
        let reduced = try reducer.finish(step: number, globalRows: sampler.globalBatchRows(ofStep: step)) {
            try hooks.gate(step: number, completed: step)
        }
        hooks.span("allreduce", step: number)
        let globalRows = Int(reduced[p + 1])
        precondition(globalRows == sampler.globalBatchRows(ofStep: step), "ranks disagree on the batch")
        let meanLoss = Double(reduced[p]) / Double(globalRows)
        // Divergence guard. Every rank holds the same reduced bits (or, sharded, the same agreed count), so every
        // rank decides alike.
        let support = reducer.reducedSupport
        guard meanLoss.isFinite, !reducer.gradientIsNonFinite(reduced) else { throw diverged(number, lossFinite: meanLoss.isFinite) }
        let lr = config.schedule.lr(at: step)
        parameters.withUnsafeMutableBufferPointer { w in
            // Over the support only where that is the dense update's bits (plain SGD); else every coordinate.
            if let support, optimizer.updatesOnlyNonZeroGradients {
                optimizer.step(parameters: w.baseAddress!, gradient: reduced.baseAddress!, at: support, t: number, learningRate: lr)
            } else {
                optimizer.step(parameters: w.baseAddress!, gradient: reduced.baseAddress!, t: number, learningRate: lr)
            }
        }
        try parameters.withUnsafeMutableBufferPointer { try reducer.gather(parameters: $0, step: number) }
        step += 1
        lastLoss = meanLoss
        return (meanLoss, globalRows)
    }

    /// The model's Σ gradient and Σ loss of `batch` into `gradient`, reporting stages when the reducer wants them.
    private func compute(_ batch: Batch, into gradient: UnsafeMutablePointer<Float>) -> Double {
        parameters.withUnsafeBufferPointer { w in
            if reducer.wantsStages, let staged = model as? StagedGradientModel {
                return staged.accumulateGradient(parameters: w.baseAddress!, batch: batch, into: gradient) { reducer.stageReady($0) }
            }
            return model.accumulateGradient(parameters: w.baseAddress!, batch: batch, into: gradient)
        }
    }

    /// Each leaf's Σ gradient and Σ loss of `batch` into its buffer (`Model.leafGradients`).
    private func computeLeaves(_ batch: Batch, _ leaves: [GradientLeaf], step number: Int) -> [Double] {
        hooks.span("data", step: number)
        return parameters.withUnsafeBufferPointer { model.leafGradients(parameters: $0.baseAddress!, batch: batch, leaves: leaves) }
    }

    public func withReplicatedParameters(_ body: (UnsafeMutableBufferPointer<Float>) -> Void) {
        parameters.withUnsafeMutableBufferPointer { body($0) }
    }

    public func epochEnded() throws {
        train = try reducer.epochEnded(train, completed: step)
    }

    public func outputParameters() throws -> [Float] { parameters }

    public func start(from initial: [Float]) throws {
        guard initial.count == parameters.count else {
            throw TrainingFailure("the starting model holds \(initial.count) parameters; this model needs \(parameters.count)", kind: .usage)
        }
        parameters = initial
    }

    public func dataChecksum() throws -> UInt64 { try Checksum.dataset(train, comm: comm) }

    /// Throws `TrainingFailure` (on every rank alike) when an update has left a parameter infinite or NaN:
    /// such parameters are never checkpointed or written out. Cost: one pass over the parameters.
    public func checkParametersFinite() throws {
        guard parameters.contains(where: { !$0.isFinite }) else { return }
        throw nonFiniteParameters()
    }

    /// A checksum of this rank's parameters and optimizer state (bit patterns).
    /// A sharded update's state differs between ranks by design: then the parameters alone.
    public var stateChecksum: UInt64 {
        shards.isReplicated ? Checksum.hash(optimizer.state, seed: Checksum.hash(parameters)) : Checksum.hash(parameters)
    }

    /// The parameters and the optimizer state: every rank holds them with the same bits.
    public var replicaChecksum: (checksum: UInt64, what: String) { (stateChecksum, "parameters") }

    /// A snapshot of the training state for a checkpoint.
    public func checkpoint(identity: [String: String]) throws -> Checkpoint {
        Checkpoint(step: step, epoch: sampler.epoch(ofStep: step), parameters: parameters,
                   optimizerState: try shards.wholeState(optimizer.state, copies: optimizer.config.kind.stateCopies, comm: comm),
                   layout: model.layout.views.map { NamedShape(name: $0.name, shape: $0.shape) }, identity: identity)
    }

    /// Sharded: each rank's own state as its part, the rest as the manifest's snapshot (no gathering).
    public func checkpointParts(identity: [String: String]) throws -> ShardedSnapshot? {
        guard !shards.isReplicated else { return nil }
        let snapshot = Checkpoint(step: step, epoch: sampler.epoch(ofStep: step), parameters: parameters, optimizerState: [],
                                  layout: model.layout.views.map { NamedShape(name: $0.name, shape: $0.shape) }, identity: identity)
        return ShardedSnapshot(snapshot: snapshot, part: CheckpointPart(rank: comm.rank, parts: comm.size, step: step, state: optimizer.state),
                               shards: shards, copies: optimizer.config.kind.stateCopies)
    }

    /// Continues from `checkpoint` (which the caller has checked against this run's identity).
    public func restore(_ checkpoint: Checkpoint) throws {
        let mine = model.layout.views.map { NamedShape(name: $0.name, shape: $0.shape) }
        guard checkpoint.layout == mine else {
            throw TrainingFailure("checkpoint holds tensors \(checkpoint.layout.map { "\($0.name)\($0.shape)" }.joined(separator: ", ")); "
                                  + "this model has \(mine.map { "\($0.name)\($0.shape)" }.joined(separator: ", "))", kind: .configuration)
        }
        let copies = optimizer.config.kind.stateCopies
        guard checkpoint.parameters.count == parameters.count, checkpoint.optimizerState.count == copies * parameters.count else {
            throw TrainingFailure("checkpoint holds \(checkpoint.parameters.count) parameters and \(checkpoint.optimizerState.count) "
                                  + "optimizer values; this model needs \(parameters.count) and \(copies * parameters.count)", kind: .configuration)
        }
        parameters = checkpoint.parameters
        // A checkpoint holds the whole state whoever wrote it: this rank keeps its shard of it.
        optimizer.state = shards.ownedState(checkpoint.optimizerState, copies: copies, rank: comm.rank)
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

    /// Tells a streamed shard the sampler's rows of every step, once (`ShardStream.plan`).
    private func planStream() {
        guard !streamPlanned, let stream = train.stream else { return }
        let (sampler, range, first) = (sampler, train.globalRange, train.firstRow)
        stream.plan(endStep: config.steps) { sampler.localRows(ofStep: $0, in: range).map { $0 - first } }
        streamPlanned = true
    }

    /// Calls `body` with this rank's rows of the batch as one contiguous block (dense or CSR, as the data is).
    /// Unshuffled batches are runs of consecutive rows and are passed in place; shuffled rows are gathered into
    /// a reused buffer (CSR: the batch's non-zeros copied once). Streamed rows (`Dataset.stream`) are read from
    /// the shard cache in the batch's order — the same values as the in-memory gather — with read-ahead
    /// (`ShardStream.plan`: windows of steps in one sequential pass, or the next step's rows in the
    /// background).
    ///
    /// A read error of the cache (the file cut short, replaced or unreadable mid-run) does not leave this rank
    /// alone: it becomes `hooks.failureToAgree` and `body` gets the batch's rows as zeros, so this rank runs the
    /// step's collectives as every rank does; the step's gate then agrees on it and every rank throws the one
    /// message (exit 74) before the update.
    func withBatch<R>(_ rows: [Int], _ body: (Batch) -> R) throws -> R {
        let d = train.features
        let first = train.firstRow
        if let stream = train.stream {
            planStream()
            if batchY.count < Swift.max(rows.count, 1) { batchY = [Float](repeating: 0, count: Swift.max(rows.count, 1)) }
            for (i, r) in rows.enumerated() { batchY[i] = train.y[r - first] }
            let local = rows.map { $0 - first }
            let got: ShardStream.Rows
            do {
                // The step window's rows in place when it holds this batch; else read (copied).
                let inPlace = try stream.withWindowRows(local, step: step) { block in
                    batchY.withUnsafeBufferPointer { y in body(Batch(block: block, y: y.baseAddress!)) }
                }
                if let inPlace { return inPlace }
                got = try stream.gather(local, step: step)
            } catch {
                if hooks.failureToAgree == nil { hooks.failureToAgree = error }
                got = stream.isSparse ? .csr(CSRMatrix(columns: d, rowStarts: [Int](repeating: 0, count: rows.count + 1), indices: [], values: []))
                                      : .dense([Float](repeating: 0, count: rows.count * d))
            }
            return Dataset.withBlock(got, features: d) { block in
                batchY.withUnsafeBufferPointer { y in body(Batch(block: block, y: y.baseAddress!)) }
            }
        }
        if !sampler.shuffle, let lo = rows.first {
            return try train.withRows((lo - first) ..< (lo - first + rows.count)) { block in
                train.y.withUnsafeBufferPointer { y in body(Batch(block: block, y: y.baseAddress! + (lo - first))) }
            }
        }
        if batchY.count < rows.count { batchY = [Float](repeating: 0, count: rows.count) }
        for (i, r) in rows.enumerated() { batchY[i] = train.y[r - first] }
        if let csr = train.csr {
            rows.withUnsafeBufferPointer { batchCSR.gather(csr, rows: $0, firstRow: first) }
            return batchCSR.withView(rows: 0..<rows.count) { view in
                batchY.withUnsafeBufferPointer { y in body(Batch(block: RowBlock(view), y: y.baseAddress!)) }
            }
        }
        if batchX.count < rows.count * d { batchX = [Float](repeating: 0, count: rows.count * d) }
        train.x.withUnsafeBufferPointer { x in
            batchX.withUnsafeMutableBufferPointer { bx in
                rows.withUnsafeBufferPointer {
                    Vector.gatherRows(x.baseAddress!, width: d, rows: $0, firstRow: first, into: bx.baseAddress!)
                }
            }
        }
        return batchX.withUnsafeBufferPointer { x in
            batchY.withUnsafeBufferPointer { y in
                body(Batch(x: x.baseAddress!, y: y.baseAddress!, rows: rows.count, features: d))
            }
        }
    }

    /// Mean loss (and accuracy, for a classifier) of the current parameters over `data`, all ranks'
    /// shards together (under `--reproducible`: `reproducibleEvaluation`, the same bits for any np). Collective: one allreduce of 3 Doubles, under the collective timeout plus twice this
    /// rank's own evaluation time (shards differ in size, so the others may need longer).
    public func evaluate(_ data: Dataset) throws -> Evaluation {
        try hooks.outside("evaluate", step: step) {
            // --reproducible: sums with the same bits for any np (one row at a time, exact fixed point).
            if config.reproducibleBlockRows != nil {
                hooks.faults.hangIfPlanned(rank: comm.rank, step: step, at: .eval)
                return try reproducibleEvaluation(model: model, parameters: parameters, data: data, comm: comm, step: step,
                                                  timeout: config.collectiveTimeout)
            }
            return try evaluateCollectively(model: model, parameters: parameters, data: data, comm: comm, hooks: hooks, step: step,
                                            timeout: config.collectiveTimeout)
        }
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

/// Mean loss (and accuracy, for a classifier) of `model` at `parameters` over `data`, all ranks' shards
/// together (`TrainingStrategy.evaluate` of the row-partitioned strategies). Collective: one allreduce of 4
/// Doubles (the fourth counts the ranks whose streamed rows could not be read: then every rank throws that
/// read error, agreed), under `timeout` plus twice this rank's own evaluation time (shards differ in size, so
/// the others may need longer). The `hang` fault at `eval` fires first.
func evaluateCollectively(model: Model, parameters: [Float], data: Dataset, comm: Communicator, hooks: StepHooks, step: Int,
                          timeout: Double) throws -> Evaluation {
    hooks.faults.hangIfPlanned(rank: comm.rank, step: step, at: .eval)
    let clock = DispatchTime.now().uptimeNanoseconds
    // A streamed shard's read error is agreed in the same allreduce (a fourth value: the ranks that failed), so
    // no rank waits in it for one that has stopped, and none pays another collective when all is well.
    var failure: Error?
    var sums = EvaluationSums(loss: 0, correct: 0)
    do {
        sums = try data.isStreamed ? streamedEvaluationSums(model: model, parameters: parameters, data)
            : parameters.withUnsafeBufferPointer { w in
                try data.withRows(0..<data.rows) { block in
                    data.y.withUnsafeBufferPointer { y in
                        model.evaluate(parameters: w.baseAddress!, batch: Batch(block: block, y: y.baseAddress ?? UnsafePointer(bitPattern: 8)!))
                    }
                }
            }
    } catch { failure = error }
    let own = Double(DispatchTime.now().uptimeNanoseconds - clock) / 1e9
    let totals = try comm.watched("the evaluation after step \(step)", seconds: timeout + 2 * own) {
        let totals = try comm.allreduced([sums.loss, sums.correct, Double(data.rows), failure == nil ? 0 : 1], op: .sum)
        if totals[3] > 0 { try comm.agree(error: failure) }
        return totals
    }
    let n = Swift.max(totals[2], 1)
    return Evaluation(rows: Int(totals[2]), loss: totals[0] / n, accuracy: model.isClassifier ? totals[1] / n : nil)
}

/// Rows a streamed evaluation reads at a time.
let streamedEvaluationChunk = 4096

/// `evaluateCollectively`'s sums over streamed rows, read `streamedEvaluationChunk` rows at a time (the chunks'
/// sums added in order, so the last bits of the reported loss may differ from an in-memory evaluation's).
func streamedEvaluationSums(model: Model, parameters: [Float], _ data: Dataset) throws -> EvaluationSums {
    var total = EvaluationSums(loss: 0, correct: 0)
    try parameters.withUnsafeBufferPointer { w in
        try data.y.withUnsafeBufferPointer { y in
            try data.forEachChunk(rows: streamedEvaluationChunk) { range, block in
                let part = model.evaluate(parameters: w.baseAddress!, batch: Batch(block: block, y: y.baseAddress! + range.lowerBound))
                total.loss += part.loss
                total.correct += part.correct
            }
        }
    }
    return total
}
