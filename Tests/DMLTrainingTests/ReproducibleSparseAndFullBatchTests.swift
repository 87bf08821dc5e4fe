import XCTest
import DMLComm
import DMLData
import DMLKernels
import DMLModels
@testable import DMLTraining

/// `--reproducible` beyond dense mini-batches, in process (`LocalCommunicator`): CSR rows moved into whole
/// blocks keep every row's non-zeros; CSR mini-batch training (`ReproducibleSparseReducer`) and the full-batch
/// methods (`ExactLeafSums`), dense and CSR, give parameters with the same bits for np 1…5.
final class ReproducibleSparseAndFullBatchTests: XCTestCase {
    let task = SyntheticClassification(seed: 6, features: 10, classes: 3)

    /// The synthetic shard with every value below 0.6 in magnitude dropped, as CSR rows (about 35 % non-zeros).
    func csrShard(rows: Int, rank: Int, ranks: Int) -> Dataset {
        let dense = task.trainingShard(rows: rows, rank: rank, ranks: ranks)
        let x = dense.x.map { abs($0) < 0.6 ? 0 : $0 }
        return Dataset(features: dense.features, classes: dense.classes, globalRows: dense.globalRows, firstRow: dense.firstRow,
                       csr: CSRMatrix(dense: x, rows: dense.rows, columns: dense.features), y: dense.y)
    }

    func testCSRRowsMovedIntoWholeBlocksKeepTheirNonZerosAndOrder() throws {
        let rows = 64 * 5 + 9
        let whole = csrShard(rows: rows, rank: 0, ranks: 1)
        for p in 2...5 {
            let moved = try LocalCommunicator.run(size: p) { comm -> Dataset in
                let targets = (0..<p).map { ReproducibleReducer.rowRange(of: $0, ranks: p, rows: rows) }
                return try self.csrShard(rows: rows, rank: comm.rank, ranks: p).movedIntoBlocks(to: targets, comm: comm, via: try comm.duplicate())
            }
            for (r, part) in moved.enumerated() {
                let range = ReproducibleReducer.rowRange(of: r, ranks: p, rows: rows)
                XCTAssertEqual(part.globalRange, range, "np \(p) rank \(r)")
                XCTAssertEqual(part.y, Array(whole.y[range]), "np \(p) rank \(r)")
                XCTAssertEqual(part.csr!.dense(), Array(whole.csr!.dense()[range.lowerBound * 10 ..< range.upperBound * 10]), "np \(p) rank \(r)")
            }
        }
    }

    func testCSRMiniBatchesHaveTheSameBitsForAnyNumberOfRanks() throws {
        let models: [(String, @Sendable () -> Model, OptimizerKind)] = [
            ("logistic-sgd", { LogisticRegression(features: 10) }, .sgd),
            ("softmax-adam", { SoftmaxRegression(features: 10, classes: 3) }, .adam),
        ]
        for (name, model, optimizer) in models {
            func train(_ p: Int) throws -> [[Float]] {
                try LocalCommunicator.run(size: p) { comm -> [Float] in
                    var shard = self.csrShard(rows: 64 * 7 + 23, rank: comm.rank, ranks: p)
                    if name.hasPrefix("logistic") { shard.y = shard.y.map { $0 == 0 ? 0 : 1 } }
                    var config = TrainingConfig(steps: 12, batchSize: 128, learningRate: 0.05, seed: 5, logEvery: 1000,
                                                optimizer: OptimizerConfig(kind: optimizer))
                    config.reproducibleBlockRows = 64
                    let trainer = Trainer(comm: comm, model: model(), train: shard, config: config, allreduce: RingAllreduce(comm: comm))
                    XCTAssertTrue(trainer.reducer is ReproducibleSparseReducer)
                    try trainer.run { _ in }
                    return trainer.parameters
                }
            }
            let reference = try train(1)[0]
            XCTAssertTrue(reference.contains { $0 != 0 }, name)
            for p in 2...5 {
                for (r, replica) in try train(p).enumerated() {
                    XCTAssertEqual(replica.map(\.bitPattern), reference.map(\.bitPattern), "\(name) np \(p) rank \(r)")
                }
            }
        }
    }

    func testFullBatchMethodsHaveTheSameBitsForAnyNumberOfRanks() throws {
        // 2,600 rows: leaves of 1,024, 1,024 and 552 rows.
        for (kind, sparse) in [(FullBatchMethodKind.lbfgs, false), (.newton, true), (.lbfgs, true)] {
            func train(_ p: Int) throws -> [[Float]] {
                try LocalCommunicator.run(size: p) { comm -> [Float] in
                    let shard = sparse ? self.csrShard(rows: 2600, rank: comm.rank, ranks: p) : self.task.trainingShard(rows: 2600, rank: comm.rank, ranks: p)
                    var config = TrainingConfig(steps: 5, batchSize: nil, learningRate: 0, seed: 3, logEvery: 100)
                    config.reproducibleBlockRows = 64
                    let trainer = SecondOrderTrainer(comm: comm, model: SoftmaxRegression(features: 10, classes: 3, weightDecay: 0.01), train: shard,
                                                     config: config, settings: FullBatchSettings(kind: kind, memory: 3, tolerance: 0),
                                                     allreduce: RingAllreduce(comm: comm))
                    try trainer.run { _ in }
                    return trainer.parameters
                }
            }
            let reference = try train(1)[0]
            for p in [2, 3, 5] {
                for (r, replica) in try train(p).enumerated() {
                    XCTAssertEqual(replica.map(\.bitPattern), reference.map(\.bitPattern), "\(kind) sparse \(sparse) np \(p) rank \(r)")
                }
            }
        }
    }
}
