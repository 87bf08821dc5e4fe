import XCTest
@testable import DMLTraining

/// `MemoryBudget.streamingBudget`: what `--max-memory` leaves a streamed shard's rows.
final class StreamingBudgetTests: XCTestCase {
    func testTheBudgetIsTheMeasuredSlackOrHalfTheEstimatedOneWhicheverIsMore() throws {
        let mapped = try XCTUnwrap(MemoryBudget.mappedBytes, "Linux says what is mapped")
        XCTAssertGreaterThan(mapped, 1e6)
        // A second reading, after allocating and touching 64 MB, sees them.
        let block = UnsafeMutableRawPointer.allocate(byteCount: 64 << 20, alignment: 64)
        defer { block.deallocate() }
        block.initializeMemory(as: UInt8.self, repeating: 1, count: 64 << 20)
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(MemoryBudget.mappedBytes), mapped + Double(60 << 20))
        // A limit far above what is mapped: the measured slack, less the future allocations and 1/16 of the limit.
        let limit = 64e9
        let now = try XCTUnwrap(MemoryBudget.mappedBytes)
        let budget = MemoryBudget.streamingBudget(limit: limit, needed: 1e9, future: 1e8)
        XCTAssertEqual(budget, limit - now - 1e8 - limit / 16, accuracy: 1e8)
        XCTAssertGreaterThan(budget, (limit - 1e9) / 2)
        // A limit below what is mapped: half of the estimated slack; never negative.
        XCTAssertEqual(MemoryBudget.streamingBudget(limit: now / 2, needed: now / 4, future: 0), now / 8)
        XCTAssertEqual(MemoryBudget.streamingBudget(limit: 1e6, needed: 2e6, future: 0), 0)
    }
}
