import XCTest
import DMLData

final class SyntheticAndSamplerTests: XCTestCase {
    func testShardsPartitionTheRows() {
        for rows in [1, 2, 7, 100, 1001] {
            for p in 1...9 where p <= rows {
                let plan = ShardPlan(rows: rows, ranks: p)
                var next = 0
                for r in 0..<p {
                    let range = plan.range(of: r)
                    XCTAssertEqual(range.lowerBound, next)
                    XCTAssertGreaterThanOrEqual(range.count, rows / p)
                    XCTAssertLessThanOrEqual(range.count, rows / p + 1)
                    for row in range { XCTAssertEqual(plan.owner(of: row), r) }
                    next = range.upperBound
                }
                XCTAssertEqual(next, rows)
            }
        }
    }

    func testSyntheticRowsDoNotDependOnHowTheSetIsSplit() {
        let task = SyntheticClassification(seed: 3, features: 11, classes: 4)
        let whole = task.trainingShard(rows: 101, rank: 0, ranks: 1)
        for p in [2, 3, 7] {
            var x: [Float] = [], y: [Float] = []
            for r in 0..<p {
                let shard = task.trainingShard(rows: 101, rank: r, ranks: p)
                XCTAssertEqual(shard.firstRow, ShardPlan(rows: 101, ranks: p).range(of: r).lowerBound)
                x += shard.x
                y += shard.y
            }
            XCTAssertEqual(x, whole.x, "p=\(p)")
            XCTAssertEqual(y, whole.y, "p=\(p)")
        }
        XCTAssertEqual(Set(whole.y).count, 4, "every class occurs")
        XCTAssertNotEqual(task.testShard(rows: 10, rank: 0, ranks: 1).x, Array(whole.x.prefix(110)))
        XCTAssertNotEqual(SyntheticClassification(seed: 4, features: 11, classes: 4).trainingShard(rows: 5, rank: 0, ranks: 1).x,
                          Array(whole.x.prefix(55)))
    }

    func testEpochOrderIsAPermutation() {
        for rows in [1, 2, 3, 10, 1000, 1025] {
            let sampler = BatchSampler(rows: rows, batchSize: 7, seed: 9)
            for epoch in 0..<2 {
                let order = (0..<rows).map { sampler.row(at: $0, epoch: epoch) }
                XCTAssertEqual(Set(order).count, rows)
                XCTAssertTrue(order.allSatisfy { $0 >= 0 && $0 < rows })
            }
        }
        let s = BatchSampler(rows: 1000, batchSize: 7, seed: 9)
        XCTAssertNotEqual((0..<20).map { s.row(at: $0, epoch: 0) }, (0..<20).map { s.row(at: $0, epoch: 1) })
        XCTAssertNotEqual((0..<20).map { s.row(at: $0, epoch: 0) }, Array(0..<20), "the order is shuffled")
    }

    func testGlobalBatchesAreTheSameForAnyNumberOfRanks() {
        let rows = 103, batch = 10
        let sampler = BatchSampler(rows: rows, batchSize: batch, seed: 4)
        XCTAssertEqual(sampler.stepsPerEpoch, 11)
        XCTAssertEqual(sampler.globalBatchRows(ofStep: 10), 3, "the last batch is short")
        for step in [0, 5, 10, 11, 25] {
            let reference = Set(sampler.localRows(ofStep: step, in: 0..<rows))
            XCTAssertEqual(reference.count, sampler.globalBatchRows(ofStep: step))
            for p in [2, 3, 8] {
                let plan = ShardPlan(rows: rows, ranks: p)
                var union: [Int] = []
                for r in 0..<p {
                    let local = sampler.localRows(ofStep: step, in: plan.range(of: r))
                    XCTAssertTrue(local.allSatisfy { plan.range(of: r).contains($0) })
                    union += local
                }
                XCTAssertEqual(union.count, reference.count, "no row twice, none lost")
                XCTAssertEqual(Set(union), reference, "step \(step), p=\(p)")
            }
        }
    }
}
