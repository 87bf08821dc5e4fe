import XCTest
import DMLComm
import DMLData
import DMLModels
@testable import DMLTraining
import DMLTestSupport

/// Straggler balancing: blocks move towards the faster ranks, the rows arrive intact, and the parameters
/// keep the same bits as a run in which nothing moved.
final class BalanceTests: XCTestCase {
    let task = SyntheticClassification(seed: 6, features: 12, classes: 3)

    func testPlansAreContiguousAndFollowSpeed() {
        let even = BlockPlan(rows: 1000, ranks: 3)
        XCTAssertEqual(even.blocks, 24)
        XCTAssertEqual((0..<3).map { even.blocks(of: $0).count }, [8, 8, 8])
        XCTAssertEqual((0..<3).map { even.rowRange(of: $0) }.map(\.count).reduce(0, +), 1000)
        let moved = even.rebalanced(secondsPerRow: [1, 1, 4])
        XCTAssertLessThan(moved.blocks(of: 2).count, 8)
        XCTAssertGreaterThanOrEqual(moved.blocks(of: 2).count, 1)
        XCTAssertEqual(moved.rowRange(of: 0).lowerBound, 0)
        XCTAssertEqual(moved.rowRange(of: 1).lowerBound, moved.rowRange(of: 0).upperBound)
        XCTAssertEqual(moved.rowRange(of: 2).upperBound, 1000)
        XCTAssertEqual(BlockPlan(rows: 2, ranks: 2).blocks, 2)
    }

    func testRedistributionDeliversExactlyTheRequestedRows() throws {
        let all = task.trainingShard(rows: 100, rank: 0, ranks: 1)
        let old = [0..<10, 10..<70, 70..<100], new = [0..<45, 45..<50, 50..<100]
        let shards = try LocalCommunicator.run(size: 3) { comm -> Dataset in
            let mine = self.task.trainingShard(rows: 100, rank: 0, ranks: 1)
            let r = old[comm.rank]
            let start = Dataset(features: 12, classes: 3, globalRows: 100, firstRow: r.lowerBound,
                                x: Array(mine.x[(r.lowerBound * 12)..<(r.upperBound * 12)]), y: Array(mine.y[r]))
            return try start.redistributed(from: old, to: new, comm: comm)
        }
        for (q, s) in shards.enumerated() {
            XCTAssertEqual(s.globalRange, new[q])
            XCTAssertEqual(s.x, Array(all.x[(new[q].lowerBound * 12)..<(new[q].upperBound * 12)]))
            XCTAssertEqual(s.y, Array(all.y[new[q]]))
        }
    }

    func train(faults: String?) throws -> [([Float], BlockPlan)] {
        try LocalCommunicator.run(size: 3) { comm in
            var config = TrainingConfig(steps: 24, batchSize: 40, learningRate: 0.2, seed: 6, logEvery: 100,
                                        optimizer: OptimizerConfig(kind: .momentum))
            config.balance = true
            let trainer = Trainer(comm: comm, model: SoftmaxRegression(features: 12, classes: 3),
                                  train: self.task.trainingShard(rows: 240, rank: comm.rank, ranks: comm.size), config: config,
                                  allreduce: AllreduceKind.ring.make(for: comm), faults: try faults.map { try FaultPlan(parsing: $0) } ?? FaultPlan(),
                                  note: { _ in })
            try trainer.run { _ in }
            return (trainer.parameters, (trainer.reducer as! BlockChainReducer).plan!)
        }
    }

    func testMovingBlocksKeepsTheBits() throws {
        let moved = try train(faults: "slow:rank=2:step=1")
        let still = try train(faults: nil)
        XCTAssertLessThanOrEqual(moved[0].1.blocks(of: 2).count, 4, "the slow rank gave blocks away (it had 8)")
        for r in 0..<3 {
            XCTAssertEqual(moved[r].0.map(\.bitPattern), still[0].0.map(\.bitPattern), "rank \(r)")
        }
    }
}
