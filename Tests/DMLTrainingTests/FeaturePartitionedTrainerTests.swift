import XCTest
import DMLComm
import DMLData
import DMLModels
import DMLTraining
import DMLTestSupport

/// `--partition features` against row-partitioned training on the same batches: equal up to float rounding,
/// for every model it supports, with and without weight decay, on 1…4 ranks (including a rank count that
/// does not divide the features).
final class FeaturePartitionedTrainerTests: XCTestCase {
    let task = SyntheticClassification(seed: 3, features: 13, classes: 3)
    let rows = 150, steps = 25

    func data(_ kind: FeatureSlice.Kind) -> Dataset {
        var d = SyntheticClassification(seed: 3, features: 13, classes: kind == .logistic ? 2 : 3).trainingShard(rows: rows, rank: 0, ranks: 1)
        if kind == .linear { d = task.regressionShard(d, testSplit: false) }
        return d
    }

    func model(_ kind: FeatureSlice.Kind, decay: Float) -> Model {
        switch kind {
        case .linear: return LinearRegression(features: 13, weightDecay: decay)
        case .logistic: return LogisticRegression(features: 13, weightDecay: decay)
        case .softmax: return SoftmaxRegression(features: 13, classes: 3, weightDecay: decay)
        }
    }

    func config(_ optimizer: OptimizerKind) -> TrainingConfig {
        TrainingConfig(steps: steps, batchSize: 32, learningRate: 0.1, seed: 3, logEvery: 1000, optimizer: OptimizerConfig(kind: optimizer))
    }

    func testFeaturePartitionedEqualsRowPartitioned() throws {
        for kind in FeatureSlice.Kind.allCases {
            for decay: Float in [0, 0.01] {
                let all = data(kind)
                let reference = try LocalCommunicator.run(size: 2) { comm -> ([Float], Evaluation) in
                    let shard = Dataset(features: all.features, classes: all.classes, globalRows: all.globalRows,
                                        firstRow: comm.rank == 0 ? 0 : 70,
                                        x: Array(all.x[(comm.rank == 0 ? 0 : 70 * 13)..<(comm.rank == 0 ? 70 * 13 : all.x.count)]),
                                        y: Array(all.y[(comm.rank == 0 ? 0 : 70)..<(comm.rank == 0 ? 70 : all.rows)]))
                    let t = Trainer(comm: comm, model: self.model(kind, decay: decay), train: shard, config: self.config(.momentum),
                                    allreduce: AllreduceKind.ring.make(for: comm))
                    try t.run { _ in }
                    return (t.parameters, try t.evaluate(shard))
                }[0]
                for ranks in 1...4 {
                    let results = try LocalCommunicator.run(size: ranks) { comm -> ([Float], Evaluation, Double) in
                        let columns = ShardPlan(rows: 13, ranks: comm.size).range(of: comm.rank)
                        let slice = FeatureSlice(kind: kind, features: 13, columns: columns, classes: all.classes, weightDecay: decay)
                        let t = FeaturePartitionedTrainer(comm: comm, slice: slice, train: all.columns(columns), config: self.config(.momentum),
                                                          allreduce: AllreduceKind.ring.make(for: comm))
                        try t.run { _ in }
                        return (try t.outputParameters(), try t.evaluate(all.columns(columns)), t.lastLoss!)
                    }
                    for (rank, r) in results.enumerated() {
                        let what = "\(kind) decay \(decay) np \(ranks) rank \(rank)"
                        XCTAssertEqual(r.0.count, reference.0.count, what)
                        XCTAssertLessThan(maxRelativeDifference(r.0, reference.0), 1e-4, what)
                        XCTAssertEqual(r.1.loss, reference.1.loss, accuracy: 1e-4 * max(1, reference.1.loss), what)
                        XCTAssertEqual(r.1.accuracy ?? -1, reference.1.accuracy ?? -1, accuracy: 1.0 / 150 + 1e-9, what)
                        XCTAssertEqual(r.0.map(\.bitPattern), results[0].0.map(\.bitPattern), "every rank assembles the same model: \(what)")
                    }
                }
            }
        }
    }

    func testTheSyntheticColumnSliceIsTheSameAsSlicingFullRows() {
        let full = task.trainingShard(rows: 40, rank: 0, ranks: 1)
        let slice = task.columnSlice(rows: 40, columns: 4..<9, testSplit: false)
        XCTAssertEqual(slice.x, full.columns(4..<9).x)
        XCTAssertEqual(slice.y, full.y)
        XCTAssertEqual(task.columnSlice(rows: 10, columns: 0..<13, testSplit: true).x, task.testShard(rows: 10, rank: 0, ranks: 1).x)
    }
}
