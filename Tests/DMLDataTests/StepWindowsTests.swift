import XCTest
import Foundation
import DMLTestSupport
@testable import DMLData

/// `StepWindows` (through `ShardStream.plan`): the sliding scan gives every step the sampler's rows in batch
/// order with the bytes of a direct read, over many epochs and passes, from any first step, with slots to spare
/// or too few (rows read on their own), and it reads each block about once a period.
final class StepWindowsTests: XCTestCase {
    var path = ""
    override func setUp() { continueAfterFailure = false }
    override func tearDown() { try? FileManager.default.removeItem(atPath: path) }

    /// A raw shard of `rows × features` Float32 values after a 12-byte header; the values.
    func shard(rows: Int, features: Int) -> [Float] {
        var random = TestRandom(seed: 7)
        let x = (0..<rows * features).map { _ in Float.random(in: -3...3, using: &random) }
        path = NSTemporaryDirectory() + "step-windows-\(UUID().uuidString)"
        _ = FileManager.default.createFile(atPath: path, contents: Data(repeating: 0xEE, count: 12) + x.withUnsafeBytes { Data($0) })
        return x
    }

    func testEveryStepGetsTheSamplersRowsWithTheBitsOfADirectRead() throws {
        let (rows, features, first) = (370, 5, 40)
        let x = shard(rows: rows, features: features)
        let rowBytes = 4 * features
        // 1000 global rows, batches of 160: 7 steps an epoch, about 59 of this shard's rows a step; blocks of 16 rows.
        let sampler = BatchSampler(rows: 1000, batchSize: 160, seed: 3)
        let range = first ..< first + rows
        let endStep = 40
        for (slots, start) in [(130, 0), (160, 5), (200, 13), (400, 0), (370, 7), (150, 39)] {
            let stream = try ShardStream(path: path, rows: rows, features: features, layout: .dense(offset: 12))
            stream.windowBlockBytes = 16 * rowBytes
            stream.windowBytes = Int((Double(slots) * StepWindows.slotBytes(features: features, rows: rows, sampler: sampler)).rounded(.up))
                + 4 * rows + stream.windowBlockBytes
            stream.plan(endStep: endStep, sampler: sampler, firstRow: first)
            XCTAssertTrue(stream.readsWindows, "\(slots) slots")
            let (capacity, period) = stream.windowShape
            XCTAssertEqual(capacity, Swift.min(slots, rows), "the slots that windowBytes holds")
            XCTAssertTrue((1...7).contains(period), "\(slots) slots: period \(period)")
            for step in start ..< endStep {
                let local = sampler.localRows(ofStep: step, in: range).map { $0 - first }
                XCTAssertEqual(try stream.plannedRows(step: step), local, "\(slots) slots, step \(step)")
                guard case let .dense(got) = try stream.gather(local, step: step) else { return XCTFail("dense rows") }
                XCTAssertEqual(got, local.flatMap { r in x[(r * features)..<((r + 1) * features)] }, "\(slots) slots, step \(step)")
            }
            let reads = stream.windowReads
            XCTAssertEqual(reads.restarts, 1)
            XCTAssertEqual(reads.misses, 0, "\(slots) slots, period \(period)")
            // At most one read of each of the 24 blocks a period, and one more for the steps before each block's
            // first (a block none of whose rows is wanted is not read: with a period of 1 step, 1 in 12 here).
            let passes = Double(endStep - start) / Double(period)
            XCTAssertLessThanOrEqual(Double(reads.blocks), (passes + 2) * 24, "\(slots) slots")
            XCTAssertGreaterThanOrEqual(Double(reads.blocks), (passes - 1) * 24 * 0.7, "\(slots) slots")
            // Past the planned steps, other rows than planned, and a step out of sequence (a resume): the same bits.
            XCTAssertNil(try stream.plannedRows(step: endStep))
            guard case let .dense(two) = try stream.gather([3, 1], step: endStep - 1) else { return XCTFail("dense rows") }
            XCTAssertEqual(two, Array(x[15..<20] + x[5..<10]))
            let back = sampler.localRows(ofStep: 2, in: range).map { $0 - first }
            XCTAssertEqual(try stream.plannedRows(step: 2), back)
            XCTAssertEqual(stream.windowReads.restarts, 2)
        }
    }

    /// A window built with fewer slots than its period needs: the rows that find none are read at their step.
    func testRowsWithoutASlotAreReadOnTheirOwn() throws {
        let (rows, features) = (500, 3)
        let x = shard(rows: rows, features: features)
        let sampler = BatchSampler(rows: rows, batchSize: 50, seed: 11)
        let stream = try ShardStream(path: path, rows: rows, features: features, layout: .dense(offset: 12))
        let windows = StepWindows(stream: stream, offset: 12, sampler: sampler, firstRow: 0, capacity: 70, period: 10, endStep: 35, blockBytes: 64 * 12)
        for step in 0..<35 {
            let local = sampler.localRows(ofStep: step, in: 0..<rows)
            XCTAssertEqual(try windows.plannedRows(step: step), local, "step \(step)")
            XCTAssertEqual(try windows.rows(step: step, local: local), local.flatMap { r in x[(r * features)..<((r + 1) * features)] }, "step \(step)")
        }
        XCTAssertGreaterThan(windows.misses, 0, "a period of 10 steps needs about 250 slots")
        XCTAssertNil(try windows.rows(step: 34, local: [1, 2]), "other rows than planned: the caller reads them")
    }

    /// Unshuffled batches (one run of rows a step), or a window that cannot hold 64 rows: no window.
    func testNoWindowWhereItDoesNotPay() throws {
        _ = shard(rows: 370, features: 5)
        for (shuffle, slots) in [(false, 400), (true, 63)] {
            let stream = try ShardStream(path: path, rows: 370, features: 5, layout: .dense(offset: 12))
            stream.windowBytes = slots * 46 + 4 * 370 + stream.windowBlockBytes
            stream.plan(endStep: 10, sampler: BatchSampler(rows: 1000, batchSize: 160, seed: 3, shuffle: shuffle), firstRow: 40)
            XCTAssertFalse(stream.readsWindows, "shuffle \(shuffle), \(slots) slots")
        }
    }
}
