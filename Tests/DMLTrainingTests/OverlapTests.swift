import XCTest
import DMLComm
import DMLData
import DMLModels
@testable import DMLTraining
import DMLTestSupport

/// The MLP's bucketed allreduce overlapping the backward pass gives the same bits as the same buckets
/// reduced after it, on every rank, for every algorithm; a trainer with a timeline shows the buckets.
final class OverlapTests: XCTestCase {
    let task = SyntheticClassification(seed: 4, features: 40, classes: 5)

    func train(ranks: Int, overlap: Bool, algorithm: AllreduceKind, bucketBytes: Int) throws -> [[Float]] {
        try LocalCommunicator.run(size: ranks) { comm -> [Float] in
            var config = TrainingConfig(steps: 12, batchSize: 48, learningRate: 0.05, seed: 4, logEvery: 100,
                                        optimizer: OptimizerConfig(kind: .momentum))
            config.overlap = overlap
            config.bucketBytes = bucketBytes
            let mlp = MLP(features: 40, hidden: [64, 32, 16], classes: 5, weightDecay: 0.001)
            let trainer = Trainer(comm: comm, model: mlp, train: self.task.trainingShard(rows: 500, rank: comm.rank, ranks: comm.size),
                                  config: config, allreduce: algorithm.make(for: comm))
            XCTAssertEqual((trainer.reducer as! BucketedReducer).overlap, overlap)
            try trainer.run { _ in }
            return trainer.parameters
        }
    }

    func testOverlapGivesTheSameBitsAsReducingAfterTheBackwardPass() throws {
        for algorithm in [AllreduceKind.ring, .rd, .central] {
            for bucketBytes in [1, 4096, 1 << 20] {
                let with = try train(ranks: 3, overlap: true, algorithm: algorithm, bucketBytes: bucketBytes)
                let without = try train(ranks: 3, overlap: false, algorithm: algorithm, bucketBytes: bucketBytes)
                for r in 0..<3 {
                    XCTAssertEqual(with[r].map(\.bitPattern), without[0].map(\.bitPattern), "\(algorithm) \(bucketBytes) rank \(r)")
                }
                XCTAssertNotEqual(with[0], MLPTestSupport.initial, "trained")
            }
        }
    }

    func testBucketsCoverTheBufferInBackwardOrder() throws {
        let buckets = try LocalCommunicator.run(size: 1) { comm -> [Range<Int>] in
            var config = TrainingConfig(steps: 1, batchSize: 8, learningRate: 0.1, seed: 1, logEvery: 1)
            config.bucketBytes = 1
            let mlp = MLP(features: 10, hidden: [6, 4], classes: 3)
            let t = Trainer(comm: comm, model: mlp, train: self.task.trainingShard(rows: 8, rank: 0, ranks: 1).columns(0..<10),
                            config: config, allreduce: AllreduceKind.ring.make(for: comm))
            return (t.reducer as! BucketedReducer).buckets
        }[0]
        // fc3 (3×4+3), fc2 (4×6+4), fc1 (6×10+6), then the loss/count tail.
        XCTAssertEqual(buckets, [94 ..< 109, 66 ..< 94, 0 ..< 66, 109 ..< 111])
    }
}

enum MLPTestSupport {
    static let initial: [Float] = {
        let mlp = MLP(features: 40, hidden: [64, 32, 16], classes: 5, weightDecay: 0.001)
        var p = [Float](repeating: 0, count: mlp.layout.count)
        p.withUnsafeMutableBufferPointer { mlp.initialize($0, seed: 4) }
        return p
    }()
}
