import XCTest
import DMLComm
import DMLData
import DMLModels
@testable import DMLTraining
import DMLTestSupport

/// `--shard-update` in process (`ShardedReducer`, `UpdateShards`, `Optimizer(owned:)`): the unsharded ring's
/// bits for every element-wise optimizer, the flat and the bucketed (MLP) pieces, optimizer state per rank cut
/// by p, checkpoints in the whole layout that resume sharded or not on another p, and the divergence guard.
final class ShardedUpdateTests: XCTestCase {
    let task = SyntheticClassification(seed: 5, features: 40, classes: 3)
    static let optimizers: [OptimizerConfig] = [
        OptimizerConfig(), OptimizerConfig(kind: .momentum), OptimizerConfig(kind: .momentum, nesterov: true), OptimizerConfig(kind: .adam),
        OptimizerConfig(kind: .adamw, weightDecay: 0.01), OptimizerConfig(kind: .adagrad), OptimizerConfig(kind: .sgd, weightDecay: 0.01),
    ]

    struct Run {
        let parameters: [UInt32]
        let stateCount: Int
        let losses: [UInt64]
        let checkpoint: Checkpoint?
    }

    func trainer(_ comm: Communicator, sharded: Bool, optimizer: OptimizerConfig, model: Model, steps: Int, bucketBytes: Int = 1 << 20,
                 lr: Float = 0.3, overlap: Bool = false) -> Trainer {
        var config = TrainingConfig(steps: steps, batchSize: 24, learningRate: lr, seed: 3, logEvery: 1000, optimizer: optimizer)
        config.shardUpdate = sharded
        config.overlap = overlap
        config.bucketBytes = bucketBytes
        return Trainer(comm: comm, model: model, train: task.trainingShard(rows: 240, rank: comm.rank, ranks: comm.size), config: config,
                       allreduce: RingAllreduce(comm: comm), note: { _ in })
    }

    func train(ranks: Int, sharded: Bool, optimizer: OptimizerConfig, steps: Int = 10, bucketBytes: Int = 1 << 20, checkpointAt: Int? = nil,
               overlap: Bool = false, model: @escaping () -> Model) throws -> [Run] {
        try LocalCommunicator.run(size: ranks, timeout: 60) { comm -> Run in
            let t = self.trainer(comm, sharded: sharded, optimizer: optimizer, model: model(), steps: steps, bucketBytes: bucketBytes, overlap: overlap)
            var losses: [UInt64] = [], saved: Checkpoint?
            for s in 1...steps {
                losses.append(try t.trainStep().loss.bitPattern)
                if s == checkpointAt { saved = try t.checkpoint(identity: [:]) }
            }
            return Run(parameters: t.parameters.map(\.bitPattern), stateCount: t.optimizer.state.count, losses: losses, checkpoint: saved)
        }
    }

    func testEveryOptimizerGivesTheUnshardedRingsBitsAtNpOneToFour() throws {
        for p in 1...4 {
            for optimizer in Self.optimizers {
                let sharded = try train(ranks: p, sharded: true, optimizer: optimizer) { SoftmaxRegression(features: 40, classes: 3) }
                let plain = try train(ranks: p, sharded: false, optimizer: optimizer) { SoftmaxRegression(features: 40, classes: 3) }
                let count = 40 * 3 + 3, copies = optimizer.kind.stateCopies
                for r in 0..<p {
                    XCTAssertEqual(sharded[r].parameters, plain[0].parameters, "p=\(p) \(optimizer.description) rank \(r): sharded ≠ ring")
                    XCTAssertEqual(sharded[r].losses, plain[0].losses, "p=\(p) \(optimizer.description) rank \(r): losses differ")
                    XCTAssertEqual(plain[r].stateCount, copies * count)
                }
                // The state is cut, not copied: the ranks' shards add up to one copy of the whole.
                XCTAssertEqual(sharded.reduce(0) { $0 + $1.stateCount }, copies * count, "p=\(p) \(optimizer.description)")
                XCTAssertLessThanOrEqual(sharded.map(\.stateCount).max()!, copies * ((count + 2) / p + 1))
            }
        }
    }

    /// The MLP's unsharded run over the ring reduces layer buckets; the sharded one reduce-scatters the same
    /// buckets, so small buckets (several pieces, one of them the tail alone) give the same bits too — and with
    /// `--overlap` (each bucket reduce-scattered on the communication thread as the backward pass completes it).
    func testTheMLPsBucketsAreShardedWithTheBucketedReducersBitsWithAndWithoutOverlap() throws {
        let staged = try LocalCommunicator.run(size: 2) { comm in
            [false, true].map { self.trainer(comm, sharded: true, optimizer: OptimizerConfig(), model: MLP(features: 40, hidden: [7, 5], classes: 3),
                                             steps: 1, bucketBytes: 64, overlap: $0).reducer.wantsStages }
        }
        XCTAssertEqual(staged[0], [false, true], "only --overlap hands the stages to the reducer")
        for p in [2, 3, 5] {
            for bucketBytes in [64, 1 << 20] {
                for optimizer in [OptimizerConfig(kind: .adam), OptimizerConfig(kind: .momentum)] {
                    let model = { MLP(features: 40, hidden: [7, 5], classes: 3) as Model }
                    let plain = try train(ranks: p, sharded: false, optimizer: optimizer, steps: 6, bucketBytes: bucketBytes, model: model)
                    for overlap in [false, true] {
                        let sharded = try train(ranks: p, sharded: true, optimizer: optimizer, steps: 6, bucketBytes: bucketBytes, overlap: overlap, model: model)
                        for r in 0..<p {
                            XCTAssertEqual(sharded[r].parameters, plain[0].parameters, "p=\(p) buckets \(bucketBytes) overlap \(overlap) \(optimizer.description) rank \(r)")
                        }
                    }
                }
            }
        }
    }

    /// `--compress`: the gradient reduce-scattered on the 16-bit wire (divided by the rows first, with error
    /// feedback or not), the loss and rows by the exact ring: the bits of the unsharded 16-bit ring allreduce.
    func testA16BitWireGivesTheUnshardedCompressedRingsBits() throws {
        for p in 1...4 {
            for format in [WireFormat.fp16, .bf16] {
                for feedback in [false, true] {
                    for optimizer in [OptimizerConfig(kind: .adam), OptimizerConfig(kind: .momentum)] {
                        let runs = try [false, true].map { sharded in
                            try LocalCommunicator.run(size: p, timeout: 60) { comm -> [UInt32] in
                                var config = TrainingConfig(steps: 8, batchSize: 24, learningRate: 0.1, seed: 3, logEvery: 1000, optimizer: optimizer)
                                config.shardUpdate = sharded
                                let ring = RingAllreduce(comm: comm)
                                let t = Trainer(comm: comm, model: SoftmaxRegression(features: 40, classes: 3),
                                                train: self.task.trainingShard(rows: 240, rank: comm.rank, ranks: comm.size), config: config, allreduce: ring,
                                                hook: .compressed(format, exact: ring, errorFeedback: feedback, comm: comm), note: { _ in })
                                for _ in 0..<8 { _ = try t.trainStep() }
                                XCTAssertEqual(t.reducer.updateShards != nil, sharded)
                                return t.parameters.map(\.bitPattern)
                            }
                        }
                        for r in 0..<p {
                            XCTAssertEqual(runs[1][r], runs[0][0], "p=\(p) \(format) feedback \(feedback) \(optimizer.description) rank \(r)")
                        }
                    }
                }
            }
        }
    }

    /// A checkpoint holds the whole state whoever wrote it (sharded at p = 3, or unsharded at p = 2: the same
    /// state as the unsharded run's at that p), and resumes sharded or not on any p; at the writer's p = 2 with
    /// the bits of the run that never stopped.
    func testCheckpointsResumeShardedOrNotOnAnotherRankCount() throws {
        let optimizer = OptimizerConfig(kind: .adam)
        let model = { SoftmaxRegression(features: 40, classes: 3) as Model }
        let through = try train(ranks: 2, sharded: false, optimizer: optimizer, steps: 10, model: model)
        for (writer, writerSharded) in [(3, true), (2, false)] {
            let first = try train(ranks: writer, sharded: writerSharded, optimizer: optimizer, steps: 5, checkpointAt: 5, model: model)
            let saved = first[0].checkpoint!
            let unsharded = try train(ranks: writer, sharded: false, optimizer: optimizer, steps: 5, checkpointAt: 5, model: model)[0].checkpoint!
            XCTAssertEqual(saved.optimizerState.map(\.bitPattern), unsharded.optimizerState.map(\.bitPattern), "the whole state, as unsharded")
            for (ranks, sharded) in [(2, true), (4, true), (2, false)] {
                let resumed = try LocalCommunicator.run(size: ranks, timeout: 60) { comm -> [UInt32] in
                    let t = self.trainer(comm, sharded: sharded, optimizer: optimizer, model: model(), steps: 10)
                    try t.restore(saved)
                    for _ in 6...10 { _ = try t.trainStep() }
                    return t.parameters.map(\.bitPattern)
                }
                // The batches are the same on any p; the sums' rounding is p's, so compare with p = 2's run.
                if ranks == 2 && writer == 2 { for r in 0..<ranks { XCTAssertEqual(resumed[r], through[0].parameters, "written p=\(writer) sharded \(writerSharded), resumed p=\(ranks) sharded \(sharded)") } }
                for r in 0..<ranks { XCTAssertEqual(resumed[r], resumed[0], "replicas differ after resuming on p=\(ranks)") }
            }
        }
    }

    /// A non-finite gradient value at any coordinate — in one rank's shard only — is seen by every rank, and
    /// the loss and rows are the global ones on every rank (the one small allreduce).
    func testTheGlobalPiecesReachEveryRank() throws {
        let count = 50
        for p in 1...5 {
            for bad in [nil, 0, 17, count - 1] {
                let seen = try LocalCommunicator.run(size: p, timeout: 30) { comm -> (Bool, Float, Float) in
                    let reducer = ShardedReducer(comm: comm, count: count, pieces: nil, collectiveTimeout: 0)
                    let group = reducer.begin(step: 1, holding: 0..<1) { _ in [0] }[0]
                    for i in 0..<count { group.buffer[i] = Float(i + comm.rank) }
                    if let bad, comm.rank == p - 1 { group.buffer[bad] = .infinity }
                    group.buffer[count] = 1.5
                    group.buffer[count + 1] = 2
                    let reduced = try reducer.finish(step: 1, globalRows: 2 * p) {}
                    return (reducer.gradientIsNonFinite(reduced), reduced[count], reduced[count + 1])
                }
                for r in 0..<p {
                    XCTAssertEqual(seen[r].0, bad != nil, "p=\(p) bad \(String(describing: bad)) rank \(r)")
                    XCTAssertEqual(seen[r].1, 1.5 * Float(p))
                    XCTAssertEqual(seen[r].2, 2 * Float(p))
                }
            }
        }
    }

    /// The `nan` fault (one rank's loss) stops every rank with the divergence message before the update.
    func testTheDivergenceGuardStopsEveryRankAlike() throws {
        let outcomes = try LocalCommunicator.run(size: 3, timeout: 60) { comm -> String in
            var config = TrainingConfig(steps: 4, batchSize: 24, learningRate: 0.1, seed: 3, logEvery: 1000, optimizer: OptimizerConfig(kind: .adam))
            config.shardUpdate = true
            let t = Trainer(comm: comm, model: SoftmaxRegression(features: 40, classes: 3),
                            train: self.task.trainingShard(rows: 240, rank: comm.rank, ranks: comm.size), config: config,
                            allreduce: RingAllreduce(comm: comm), faults: try FaultPlan(parsing: "nan:rank=2:step=3"), note: { _ in })
            do {
                for _ in 0..<4 { _ = try t.trainStep() }
                return "finished"
            } catch { return "\(error) after \(t.step)" }
        }
        XCTAssertTrue(outcomes[0].contains("diverged at step 3"), outcomes[0])
        XCTAssertTrue(outcomes[0].hasSuffix("after 2"), outcomes[0])
        XCTAssertEqual(Set(outcomes).count, 1, "every rank the same failure: \(outcomes)")
    }
}
