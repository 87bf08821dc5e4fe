import Foundation
import DMLComm
import DMLData
import DMLKernels
import DMLModels

/// What a training run does, as plain values (the command line fills it in).
public struct TrainingConfig: Sendable {
    /// Global steps to run.
    public var steps: Int
    /// Rows per global batch (over all ranks); nil means every training row each step.
    public var batchSize: Int?
    public var learningRate: Float
    public var seed: UInt64
    /// Rank 0 reports progress every `logEvery` steps (and at the last step).
    public var logEvery: Int

    public init(steps: Int, batchSize: Int?, learningRate: Float, seed: UInt64, logEvery: Int) {
        self.steps = steps
        self.batchSize = batchSize
        self.learningRate = learningRate
        self.seed = seed
        self.logEvery = logEvery
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
///   → divide by the global row count → optimizer update (the same on every rank)
/// ```
public final class Trainer {
    public let comm: Communicator
    public let model: Model
    public let train: Dataset
    public let config: TrainingConfig
    public let allreduce: AllreduceAlgorithm
    public let optimizer: Optimizer
    public let sampler: BatchSampler

    /// The parameters, one flat buffer laid out by `model.layout`.
    public private(set) var parameters: [Float]
    /// Steps completed so far.
    public private(set) var step = 0

    /// `[gradient | loss sum | row count]`, the one buffer that is allreduced each step.
    private var reduceBuffer: [Float]
    private var batchX: [Float] = []
    private var batchY: [Float] = []

    public init(comm: Communicator, model: Model, train: Dataset, config: TrainingConfig,
                allreduce: AllreduceAlgorithm, optimizer: Optimizer = SGD()) {
        self.comm = comm
        self.model = model
        self.train = train
        self.config = config
        self.allreduce = allreduce
        self.optimizer = optimizer
        let full = config.batchSize == nil
        sampler = BatchSampler(rows: train.globalRows, batchSize: config.batchSize ?? train.globalRows,
                               seed: config.seed, shuffle: !full)
        parameters = [Float](repeating: 0, count: model.layout.count)
        reduceBuffer = [Float](repeating: 0, count: model.layout.count + 2)
        parameters.withUnsafeMutableBufferPointer { model.initialize($0, seed: config.seed) }
    }

    /// Runs the remaining steps; `report` is called on every rank at each log interval.
    public func run(report: (StepReport) -> Void) throws {
        var lastTime = Date()
        var samplesSinceReport = 0
        while step < config.steps {
            let (loss, rows) = try trainStep()
            samplesSinceReport += rows
            if step % config.logEvery == 0 || step == config.steps {
                let now = Date()
                let elapsed = now.timeIntervalSince(lastTime)
                report(StepReport(step: step, totalSteps: config.steps, epoch: sampler.epoch(ofStep: step - 1),
                                  loss: loss, samplesPerSecond: elapsed > 0 ? Double(samplesSinceReport) / elapsed : 0,
                                  learningRate: config.learningRate))
                lastTime = now
                samplesSinceReport = 0
            }
        }
    }

    /// Collective: checks that every rank holds bit-identical parameters (invariant 1) and throws an
    /// `AgreedFailure` naming the ranks that do not. One hash pass over the parameters and one allgather.
    public func checkReplicasIdentical() throws {
        try parameters.withUnsafeBytes { try comm.checkIdentical($0, what: "parameters after step \(step)") }
    }

    /// One global step. Returns the global batch's mean loss and its number of rows.
    @discardableResult
    public func trainStep() throws -> (loss: Double, rows: Int) {
        let p = model.layout.count
        let rows = sampler.localRows(ofStep: step, in: train.globalRange)
        reduceBuffer.withUnsafeMutableBufferPointer { buf in
            buf.initialize(repeating: 0)
            let loss = withBatch(rows) { batch in
                parameters.withUnsafeBufferPointer { w in
                    model.accumulateGradient(parameters: w.baseAddress!, batch: batch, into: buf.baseAddress!)
                }
            }
            buf[p] = Float(loss)
            buf[p + 1] = Float(rows.count)
        }
        try reduceBuffer.withUnsafeMutableBufferPointer { try allreduce.run($0, op: .sum) }
        let globalRows = Int(reduceBuffer[p + 1])
        precondition(globalRows == sampler.globalBatchRows(ofStep: step), "ranks disagree on the batch")
        let meanLoss = Double(reduceBuffer[p]) / Double(globalRows)
        reduceBuffer.withUnsafeMutableBufferPointer { g in
            Vector.scale(1 / Float(globalRows), g.baseAddress!, p)
            parameters.withUnsafeMutableBufferPointer { w in
                optimizer.step(parameters: w.baseAddress!, gradient: g.baseAddress!, count: p, learningRate: config.learningRate)
            }
        }
        step += 1
        return (meanLoss, globalRows)
    }

    /// Calls `body` with this rank's rows of the batch as one contiguous block. Unshuffled batches are
    /// runs of consecutive rows and are passed in place; shuffled rows are gathered into a reused buffer.
    private func withBatch<R>(_ rows: [Int], _ body: (Batch) -> R) -> R {
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
                for (i, r) in rows.enumerated() {
                    (bx.baseAddress! + i * d).update(from: x.baseAddress! + (r - first) * d, count: d)
                    batchY[i] = train.y[r - first]
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
    /// shards together. Collective.
    public func evaluate(_ data: Dataset) throws -> Evaluation {
        let sums = parameters.withUnsafeBufferPointer { w in
            data.x.withUnsafeBufferPointer { x in
                data.y.withUnsafeBufferPointer { y in
                    model.evaluate(parameters: w.baseAddress!, batch: Batch(x: x.baseAddress!, y: y.baseAddress!, rows: data.rows, features: data.features))
                }
            }
        }
        let totals = try comm.allreduced([sums.loss, sums.correct, Double(data.rows)], op: .sum)
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
