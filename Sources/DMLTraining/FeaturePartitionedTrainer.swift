import Foundation
import DMLComm
import DMLData
import DMLKernels
import DMLModels

/// Training with the *features* partitioned (`--partition features`), for linear, logistic and softmax
/// models: every rank holds every row but only a slice of the columns (`FeatureSlice.columns`) and the
/// matching slice of the weights. Per step, on every rank:
/// ```
/// sampler → the global batch's rows (all of them) → partial scores Z_r = X_r·W_rᵀ
///   → allreduce [Z | this slice's weight-decay loss] (batch·k + 1 floats)
///   → loss and ∂loss/∂Z from the summed scores (the same bits on every rank)
///   → ∂W_r = Dᵀ·X_r / n, ∂b = Σ D / n → divergence guard → optimizer update of this rank's slice only
/// ```
/// The message size is `batch × classes`, independent of the number of features, so this is how data wider
/// than a rank can hold (or whose weights dominate the traffic) is trained. The batches are the sampler's,
/// as in `Trainer`, so the path equals row-partitioned training up to float rounding. The bias is replicated:
/// every rank computes the same bias update from the same `D`.
public final class FeaturePartitionedTrainer {
    public let comm: Communicator
    public let slice: FeatureSlice
    /// Every row, this rank's columns.
    public let train: Dataset
    public let config: TrainingConfig
    public let allreduce: AllreduceAlgorithm
    public let optimizer: Optimizer
    public let sampler: BatchSampler

    /// This rank's parameters: the weight slice, then the (replicated) bias.
    public private(set) var parameters: [Float]
    public private(set) var step = 0
    public private(set) var lastLoss: Double?

    private var scores: [Float] = []
    private var gradient: [Float]
    private var batchX: [Float] = []
    private var batchY: [Float] = []

    public init(comm: Communicator, slice: FeatureSlice, train: Dataset, config: TrainingConfig, allreduce: AllreduceAlgorithm) {
        precondition(train.features == slice.columns.count, "the data must hold exactly this rank's columns")
        self.comm = comm
        self.slice = slice
        self.train = train
        self.config = config
        self.allreduce = allreduce
        optimizer = Optimizer(config.optimizer, layout: slice.layout)
        sampler = BatchSampler(rows: train.globalRows, batchSize: config.batchSize ?? train.globalRows,
                               seed: config.seed, shuffle: config.batchSize != nil)
        // Zero, like the row-partitioned linear models (their losses are convex).
        parameters = [Float](repeating: 0, count: slice.localCount)
        gradient = [Float](repeating: 0, count: slice.localCount)
    }

    /// Runs the remaining steps; `report` is called on every rank at each log interval.
    public func run(report: (StepReport) throws -> Void) throws {
        var lastTime = Date()
        var samplesSinceReport = 0
        while step < config.steps {
            let lr = config.schedule.lr(at: step)
            let (loss, rows) = try trainStep()
            samplesSinceReport += rows
            if step % config.logEvery == 0 || step == config.steps {
                let now = Date()
                let elapsed = now.timeIntervalSince(lastTime)
                try report(StepReport(step: step, totalSteps: config.steps, epoch: sampler.epoch(ofStep: step - 1), loss: loss,
                                      samplesPerSecond: elapsed > 0 ? Double(samplesSinceReport) / elapsed : 0, learningRate: lr))
                lastTime = now
                samplesSinceReport = 0
            }
        }
    }

    /// One global step; returns the batch's mean loss and its number of rows.
    @discardableResult
    public func trainStep() throws -> (loss: Double, rows: Int) {
        let number = step + 1
        let rows = sampler.localRows(ofStep: step, in: 0..<train.globalRows)
        let n = rows.count, k = slice.outputs
        if scores.count < n * k + 1 { scores = [Float](repeating: 0, count: n * k + 1) }
        gatherBatch(rows)
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
        try comm.watched("the score allreduce of step \(number)", seconds: config.collectiveTimeout) {
            try scores.withUnsafeMutableBufferPointer { try allreduce.run(UnsafeMutableBufferPointer(rebasing: $0[0..<(n * k + 1)]), op: .sum) }
        }

        var correct = 0.0
        let dataLoss = parameters.withUnsafeBufferPointer { w in
            batchY.withUnsafeBufferPointer { y in
                scores.withUnsafeMutableBufferPointer { z in
                    slice.lossAndDeltas(scores: z.baseAddress!, parameters: w.baseAddress!, labels: y.baseAddress!, rows: n, correct: &correct)
                }
            }
        }
        let meanLoss = (dataLoss + Double(scores[n * k])) / Double(Swift.max(n, 1))
        guard meanLoss.isFinite else {
            throw TrainingFailure("training diverged at step \(number): the loss is not finite (learning rate \(config.schedule.lr(at: step))). "
                                  + "Try a lower learning rate (--lr) or a warm-up (--warmup)")
        }
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

    /// Loss (and accuracy) over a data set holding every row and this rank's columns. Collective: one
    /// allreduce of `rows × k` partial scores per block of 1024 rows.
    public func evaluate(_ data: Dataset) throws -> Evaluation {
        precondition(data.features == slice.columns.count)
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
            try z.withUnsafeMutableBufferPointer { try allreduce.run(UnsafeMutableBufferPointer(rebasing: $0[0..<(count * k)]), op: .sum) }
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

    /// The whole model's parameters in the row-partitioned layout (`weight` [k × features], then `bias`
    /// [k]), on every rank. Collective: each rank places its columns into a zero buffer and an allreduce
    /// sums them (exact: every element has exactly one non-zero contribution). Cost: k·features floats.
    public func fullParameters() throws -> [Float] {
        let k = slice.outputs, d = slice.features, w = slice.columns.count
        var full = [Float](repeating: 0, count: k * d + k)
        for c in 0..<k {
            for j in 0..<w { full[c * d + slice.columns.lowerBound + j] = parameters[c * w + j] }
        }
        // The bias is replicated: rank 0's copy goes in.
        if comm.rank == 0 { for c in 0..<k { full[k * d + c] = parameters[k * w + c] } }
        try full.withUnsafeMutableBufferPointer { try allreduce.run($0, op: .sum) }
        return full
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
