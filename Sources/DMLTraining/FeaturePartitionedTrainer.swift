import Foundation
import DMLComm
import DMLData
import DMLKernels
import DMLModels

/// Training with the *features* partitioned (`--partition features`), for linear, logistic and softmax
/// models: every rank holds every row but only a slice of the columns (`FeatureSlice.columns`) and the
/// matching slice of the weights. Per step, on every rank (`stepBody`):
/// ```
/// hooks.begin → the global batch's rows (all of them) → partial scores Z_r = X_r·W_rᵀ → hooks.computed
///   → hooks.gate → allreduce [Z | this slice's weight-decay loss] (batch·k + 1 floats)
///   → loss and ∂loss/∂Z from the summed scores (the same bits on every rank)
///   → ∂W_r = Dᵀ·X_r / n, ∂b = Σ D / n → divergence guard → optimizer update of this rank's slice → hooks.end
/// ```
/// The message size is `batch × classes`, independent of the number of features, so this is how data wider
/// than a rank can hold (or whose weights dominate the traffic) is trained. The batches are the sampler's,
/// as in `Trainer`, so the path equals row-partitioned training up to float rounding. The bias is replicated:
/// every rank computes the same bias update from the same `D`.
///
/// It is a `TrainingStrategy` like `Trainer`, so the session gives it everything around the steps:
/// checkpoints (the slices gathered into the row-partitioned layout, which any number of ranks can resume),
/// replica checks (of the replicated bias and its optimizer state), evaluation, metrics, the timeline,
/// faults and the gate (stop signals, checkpoint, exit 75).
public final class FeaturePartitionedTrainer: TrainingStrategy {
    public let comm: Communicator
    public let slice: FeatureSlice
    /// Every row, this rank's columns.
    public let train: Dataset
    public let config: TrainingConfig
    public let allreduce: AllreduceAlgorithm
    public let optimizer: Optimizer
    public let sampler: BatchSampler
    public let hooks: StepHooks

    /// This rank's parameters: the weight slice, then the (replicated) bias.
    public private(set) var parameters: [Float]
    public private(set) var step = 0
    public private(set) var lastLoss: Double?

    private var scores: [Float] = []
    private var gradient: [Float]
    private var batchX: [Float] = []
    private var batchY: [Float] = []

    public init(comm: Communicator, slice: FeatureSlice, train: Dataset, config: TrainingConfig, allreduce: AllreduceAlgorithm,
                faults: FaultPlan = FaultPlan()) {
        precondition(train.features == slice.columns.count, "the data must hold exactly this rank's columns")
        self.comm = comm
        self.slice = slice
        self.train = train
        self.config = config
        self.allreduce = allreduce
        hooks = StepHooks(comm: comm, faults: faults, collectiveTimeout: config.collectiveTimeout)
        optimizer = Optimizer(config.optimizer, layout: slice.layout)
        sampler = BatchSampler(rows: train.globalRows, batchSize: config.batchSize ?? train.globalRows,
                               seed: config.seed, shuffle: config.batchSize != nil && config.shuffle)
        // Zero, like the row-partitioned linear models (their losses are convex).
        parameters = [Float](repeating: 0, count: slice.localCount)
        gradient = [Float](repeating: 0, count: slice.localCount)
    }

    public var derivedIdentity: [String: String] {
        let k = slice.outputs
        return ["derived.model_shape": "weight[\(k), \(slice.features)],bias[\(k)]",
                "derived.lr_schedule": config.schedule.description,
                "derived.data_rows": String(train.globalRows)]
    }

    public func stepBody(number: Int) throws -> (loss: Double, rows: Int) {
        let rows = sampler.localRows(ofStep: step, in: 0..<train.globalRows)
        let n = rows.count, k = slice.outputs
        if scores.count < n * k + 1 { scores = [Float](repeating: 0, count: n * k + 1) }
        gatherBatch(rows)
        hooks.span("data", step: number)
        let decayLoss = parameters.withUnsafeBufferPointer { w in
            batchX.withUnsafeBufferPointer { x in
                scores.withUnsafeMutableBufferPointer { z in
                    slice.partialScores(parameters: w.baseAddress!, x: x.baseAddress!, rows: n, into: z.baseAddress!)
                    // This slice's share of the decay loss rides along with the scores.
                    let count = k * slice.columns.count
                    guard slice.weightDecay > 0, count > 0 else { return 0.0 }
                    return Double(n) * 0.5 * Double(slice.weightDecay) * Double(Vector.dot(w.baseAddress!, w.baseAddress!, count))
                }
            }
        }
        scores[n * k] = Float(decayLoss)
        scores.withUnsafeMutableBufferPointer { hooks.computed(step: number, loss: $0.baseAddress! + n * k, rows: n) }
        try hooks.gate(step: number, completed: step)
        try comm.watched("the score allreduce of step \(number)", seconds: config.collectiveTimeout) {
            try scores.withUnsafeMutableBufferPointer { try allreduce.run(UnsafeMutableBufferPointer(rebasing: $0[0..<(n * k + 1)]), op: .sum) }
        }
        hooks.span("allreduce", step: number)

        var correct = 0.0
        let dataLoss = parameters.withUnsafeBufferPointer { w in
            batchY.withUnsafeBufferPointer { y in
                scores.withUnsafeMutableBufferPointer { z in
                    slice.lossAndDeltas(scores: z.baseAddress!, parameters: w.baseAddress!, labels: y.baseAddress!, rows: n, correct: &correct)
                }
            }
        }
        let meanLoss = (dataLoss + Double(scores[n * k])) / Double(Swift.max(n, 1))
        guard meanLoss.isFinite else { throw diverged(number, lossFinite: false) }
        gradient.withUnsafeMutableBufferPointer { g in
            g.initialize(repeating: 0)
            parameters.withUnsafeBufferPointer { w in
                batchX.withUnsafeBufferPointer { x in
                    scores.withUnsafeBufferPointer { d in
                        _ = slice.accumulateGradient(deltas: d.baseAddress!, x: x.baseAddress!, rows: n,
                                                     parameters: w.baseAddress!, into: g.baseAddress!)
                    }
                }
            }
            Vector.scale(1 / Float(Swift.max(n, 1)), g.baseAddress!, g.count)
        }
        let lr = config.schedule.lr(at: step)
        parameters.withUnsafeMutableBufferPointer { w in
            gradient.withUnsafeBufferPointer { g in
                optimizer.step(parameters: w.baseAddress!, gradient: g.baseAddress!, t: number, learningRate: lr)
            }
        }
        step += 1
        lastLoss = meanLoss
        return (meanLoss, n)
    }

    /// The replicated bias (the weight slices differ between ranks by design).
    public func withReplicatedParameters(_ body: (UnsafeMutableBufferPointer<Float>) -> Void) {
        let bias = slice.localCount - slice.outputs
        parameters.withUnsafeMutableBufferPointer { body(UnsafeMutableBufferPointer(rebasing: $0[bias...])) }
    }

    public func epochEnded() throws {}

    public func dataChecksum() throws -> UInt64 { try Checksum.datasetColumns(train, firstColumn: slice.columns.lowerBound, comm: comm) }

    public func checkParametersFinite() throws {
        guard parameters.contains(where: { !$0.isFinite }) else { return }
        throw nonFiniteParameters()
    }

    /// What a feature partition replicates: the bias and its optimizer state (every rank computes the same
    /// bias update); the weight slices differ by design.
    public var replicaChecksum: (checksum: UInt64, what: String) {
        let w = slice.localCount - slice.outputs
        var replicated = Array(parameters[w...])
        for c in 0..<(optimizer.state.count / Swift.max(1, slice.localCount)) {
            replicated += optimizer.state[(c * slice.localCount + w) ..< ((c + 1) * slice.localCount)]
        }
        return (Checksum.hash(replicated), "bias")
    }

    /// Loss (and accuracy) over a data set holding every row and this rank's columns. Collective: one
    /// allreduce of `rows × k` partial scores per block of 1024 rows.
    public func evaluate(_ data: Dataset) throws -> Evaluation {
        precondition(data.features == slice.columns.count)
        return try hooks.outside("evaluate", step: step) {
            hooks.faults.hangIfPlanned(rank: comm.rank, step: step, at: .eval)
            let k = slice.outputs, block = 1024
            var z = [Float](repeating: 0, count: block * k)
            var loss = 0.0, correct = 0.0
            var first = 0
            while first < data.rows {
                let count = Swift.min(block, data.rows - first)
                parameters.withUnsafeBufferPointer { w in
                    data.x.withUnsafeBufferPointer { x in
                        z.withUnsafeMutableBufferPointer { zs in
                            slice.partialScores(parameters: w.baseAddress!, x: x.baseAddress! + first * data.features, rows: count, into: zs.baseAddress!)
                        }
                    }
                }
                try comm.watched("the evaluation after step \(step)", seconds: config.collectiveTimeout) {
                    try z.withUnsafeMutableBufferPointer { try allreduce.run(UnsafeMutableBufferPointer(rebasing: $0[0..<(count * k)]), op: .sum) }
                }
                loss += parameters.withUnsafeBufferPointer { w in
                    data.y.withUnsafeBufferPointer { y in
                        z.withUnsafeMutableBufferPointer { zs in
                            slice.evaluationLoss(scores: zs.baseAddress!, parameters: w.baseAddress!, labels: y.baseAddress! + first,
                                                 rows: count, correct: &correct)
                        }
                    }
                }
                first += count
            }
            let n = Double(Swift.max(data.rows, 1))
            return Evaluation(rows: data.rows, loss: loss / n, accuracy: slice.isClassifier ? correct / n : nil)
        }
    }

    /// The whole model's parameters in the row-partitioned layout (`weight` [k × features], then `bias`
    /// [k]), on every rank. Collective.
    public func outputParameters() throws -> [Float] { try gathered(parameters) }

    /// A slice-laid-out buffer (weight slice, then bias), gathered into the row-partitioned layout on every
    /// rank: each rank places its columns into a zero buffer and an allreduce sums them (exact: every
    /// element has exactly one non-zero contribution; the replicated bias is rank 0's). Cost: k·features floats.
    private func gathered(_ local: ArraySlice<Float>) throws -> [Float] {
        let k = slice.outputs, d = slice.features, w = slice.columns.count, base = local.startIndex
        var full = [Float](repeating: 0, count: k * d + k)
        for c in 0..<k {
            for j in 0..<w { full[c * d + slice.columns.lowerBound + j] = local[base + c * w + j] }
        }
        if comm.rank == 0 { for c in 0..<k { full[k * d + c] = local[base + k * w + c] } }
        try full.withUnsafeMutableBufferPointer { try allreduce.run($0, op: .sum) }
        return full
    }

    private func gathered(_ local: [Float]) throws -> [Float] { try gathered(local[...]) }

    /// The whole model's state, gathered into the row-partitioned layout (parameters and each copy of the
    /// optimizer state), so the checkpoint resumes on any number of ranks. Collective.
    public func checkpoint(identity: [String: String]) throws -> Checkpoint {
        let local = slice.localCount, copies = optimizer.state.count / Swift.max(1, local)
        var state: [Float] = []
        for c in 0..<copies { state += try gathered(optimizer.state[(c * local) ..< ((c + 1) * local)]) }
        return Checkpoint(step: step, epoch: sampler.epoch(ofStep: step), parameters: try gathered(parameters),
                          optimizerState: state, layout: fullLayout, identity: identity)
    }

    /// The whole model's tensors, as the row-partitioned model names them.
    var fullLayout: [NamedShape] {
        [NamedShape(name: "layers.0.weight", shape: [slice.outputs, slice.features]), NamedShape(name: "layers.0.bias", shape: [slice.outputs])]
    }

    public func start(from initial: [Float]) throws {
        let full = slice.outputs * slice.features + slice.outputs
        guard initial.count == full else {
            throw TrainingFailure("the starting model holds \(initial.count) parameters; this model needs \(full)", kind: .usage)
        }
        parameters = cut(initial[...])
    }

    /// This rank's columns (and the bias) of a buffer in the row-partitioned layout.
    private func cut(_ all: ArraySlice<Float>) -> [Float] {
        let k = slice.outputs, d = slice.features, w = slice.columns.count, base = all.startIndex
        var mine = [Float](repeating: 0, count: slice.localCount)
        for c in 0..<k {
            for j in 0..<w { mine[c * w + j] = all[base + c * d + slice.columns.lowerBound + j] }
            mine[k * w + c] = all[base + k * d + c]
        }
        return mine
    }

    /// Takes this rank's columns (and the bias) out of a checkpoint in the row-partitioned layout.
    public func restore(_ checkpoint: Checkpoint) throws {
        let k = slice.outputs, d = slice.features, full = k * d + k, local = slice.localCount
        let copies = optimizer.state.count / Swift.max(1, local)
        guard checkpoint.layout == fullLayout, checkpoint.parameters.count == full, checkpoint.optimizerState.count == copies * full else {
            throw TrainingFailure("checkpoint holds \(checkpoint.parameters.count) parameters and \(checkpoint.optimizerState.count) "
                                  + "optimizer values; this model needs \(full) and \(copies * full)")
        }
        parameters = cut(checkpoint.parameters[...])
        optimizer.state = (0..<copies).flatMap { cut(checkpoint.optimizerState[($0 * full) ..< (($0 + 1) * full)]) }
        step = checkpoint.step
    }

    private func gatherBatch(_ rows: [Int]) {
        let w = train.features
        if batchX.count < Swift.max(rows.count * w, 1) { batchX = [Float](repeating: 0, count: Swift.max(rows.count * w, 1)) }
        if batchY.count < Swift.max(rows.count, 1) { batchY = [Float](repeating: 0, count: Swift.max(rows.count, 1)) }
        train.x.withUnsafeBufferPointer { x in
            batchX.withUnsafeMutableBufferPointer { bx in
                for (i, r) in rows.enumerated() {
                    (bx.baseAddress! + i * w).update(from: x.baseAddress! + r * w, count: w)
                }
            }
        }
        for (i, r) in rows.enumerated() { batchY[i] = train.y[r] }
    }
}
