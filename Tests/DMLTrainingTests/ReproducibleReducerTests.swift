import XCTest
import DMLComm
import DMLData
import DMLModels
@testable import DMLTraining
import DMLTestSupport

/// `--reproducible` in process (`LocalCommunicator`): the sampler's batches are whole blocks, the same for any
/// number of ranks; the trained parameters have the same bits for np 1…6 (softmax and MLP, shuffled and in
/// order, a partial last block); a NaN on one rank stops every rank at its step.
final class ReproducibleReducerTests: XCTestCase {
    let task = SyntheticClassification(seed: 4, features: 10, classes: 3)

    func testBatchesAreWholeBlocksOfAPermutationOfTheRows() {
        let rows = 64 * 9 + 17, s = BatchSampler(rows: rows, batchSize: 128, seed: 3, blockRows: 64)
        XCTAssertEqual(s.stepsPerEpoch, 5)
        for epoch in 0..<2 {
            var seen: [Int] = []
            for k in 0..<s.stepsPerEpoch {
                let step = epoch * s.stepsPerEpoch + k
                let all = s.localRows(ofStep: step, in: 0..<rows)
                XCTAssertEqual(all.count, s.globalBatchRows(ofStep: step))
                // Runs of whole blocks, each block's rows ascending; the partial block only in the last batch.
                for start in stride(from: 0, to: all.count, by: 64) {
                    let run = Array(all[start..<Swift.min(all.count, start + 64)])
                    XCTAssertEqual(run.first! % 64, 0)
                    XCTAssertEqual(run, Array(run.first! ..< run.first! + run.count))
                    if run.count < 64 { XCTAssertEqual(run.first, 64 * 9) ; XCTAssertEqual(k, s.stepsPerEpoch - 1) }
                }
                // Any cut into shards gives the same rows, in batch order.
                for ranks in [2, 3, 7] {
                    let parts = (0..<ranks).flatMap { s.localRows(ofStep: step, in: ShardPlan(rows: rows, ranks: ranks).range(of: $0)) }
                    XCTAssertEqual(parts.sorted(), all.sorted())
                }
                seen += all
            }
            XCTAssertEqual(seen.sorted(), Array(0..<rows), "epoch \(epoch) visits every row once")
        }
        XCTAssertNotEqual(s.localRows(ofStep: 0, in: 0..<rows), s.localRows(ofStep: 5, in: 0..<rows), "a new order each epoch")
        // Block size 1 is the row-level permutation, unchanged.
        let rowLevel = BatchSampler(rows: rows, batchSize: 128, seed: 3), explicit = BatchSampler(rows: rows, batchSize: 128, seed: 3, blockRows: 1)
        XCTAssertEqual(rowLevel.localRows(ofStep: 2, in: 0..<rows), explicit.localRows(ofStep: 2, in: 0..<rows))
    }

    func train(ranks: Int, model: @escaping @Sendable () -> Model, batch: Int?, shuffle: Bool = true, steps: Int = 12,
               optimizer: OptimizerKind = .adam) throws -> [[Float]] {
        try LocalCommunicator.run(size: ranks) { comm -> [Float] in
            let shard = self.task.trainingShard(rows: 64 * 7 + 23, rank: comm.rank, ranks: comm.size)
            var config = TrainingConfig(steps: steps, batchSize: batch, learningRate: 0.05, seed: 5, logEvery: 1000,
                                        optimizer: OptimizerConfig(kind: optimizer))
            config.reproducibleBlockRows = 64
            config.shuffle = shuffle
            let trainer = Trainer(comm: comm, model: model(), train: shard, config: config, allreduce: RingAllreduce(comm: comm))
            try trainer.run { _ in }
            return trainer.parameters
        }
    }

    func testParametersHaveTheSameBitsForAnyNumberOfRanks() throws {
        let models: [(String, @Sendable () -> Model)] = [
            ("softmax", { SoftmaxRegression(features: 10, classes: 3) }),
            ("mlp", { MLP(features: 10, hidden: [12], classes: 3) }),
        ]
        for (name, model) in models {
            for (batch, shuffle) in [(128, true), (64, false), (nil, false)] as [(Int?, Bool)] {
                let reference = try train(ranks: 1, model: model, batch: batch, shuffle: shuffle)[0]
                for p in 2...6 {
                    let replicas = try train(ranks: p, model: model, batch: batch, shuffle: shuffle)
                    for r in 0..<p {
                        XCTAssertEqual(replicas[r].map(\.bitPattern), reference.map(\.bitPattern), "\(name) batch \(batch ?? 0) shuffle \(shuffle) np \(p) rank \(r)")
                    }
                }
            }
        }
    }

    func testFixedPointScaleLeavesRoomForEveryLeafAndFlagsNonFiniteValues() {
        for leaves in [1, 2, 3, 64, 1000] {
            for largest: Float in [1e-30, 0.75, 1, 3e5, 3e38] {
                let k = ReproducibleReducer.exponent(Double(largest), leaves: leaves)
                // L values of magnitude `largest`, scaled by 2^k, sum to less than 2^62.
                XCTAssertLessThan(Double(leaves) * Double(largest) * Double(sign: .plus, exponent: k, significand: 1), 0x1p62)
                XCTAssertGreaterThanOrEqual(Double(leaves) * Double(largest) * Double(sign: .plus, exponent: k, significand: 1), 0x1p59)
            }
        }
        var x: [Float] = [1, -5, 2]
        XCTAssertEqual(ReproducibleReducer.largestMagnitude(x, 3), 5)
        x[1] = .nan
        XCTAssertEqual(ReproducibleReducer.largestMagnitude(x, 3), .infinity)
        x[1] = -.infinity
        XCTAssertEqual(ReproducibleReducer.largestMagnitude(x, 3), .infinity)
    }
}
