import Foundation
import XCTest
@testable import DMLComm
import DMLTestSupport

/// One communicator per concern: `Communicator.duplicate`, on the in-process communicator.
final class DuplicateTests: XCTestCase {
    /// The same tag, the same peers, receives posted in another order than the sends: each message still
    /// reaches the receive of its own communicator.
    func testMessagesOnADuplicateMatchOnlyItsOwnReceives() throws {
        let got = try LocalCommunicator.run(size: 2) { comm -> [Int64] in
            let a = try comm.duplicate(), b = try comm.duplicate()
            XCTAssertEqual([a.rank, a.size, b.rank, b.size], [comm.rank, 2, comm.rank, 2])
            if comm.rank == 0 {
                for (c, value) in [(comm, Int64(1)), (a, 2), (b, 3)] {
                    var v = value
                    try withUnsafeBytes(of: &v) { try c.send($0, to: 1, tag: 5) }
                }
                return []
            }
            var values: [Int64] = []
            for c in [b, comm, a] {
                var v: Int64 = 0
                try withUnsafeMutableBytes(of: &v) { try c.recv($0, from: 0, tag: 5) }
                values.append(v)
            }
            return values
        }
        XCTAssertEqual(got[1], [3, 1, 2], "duplicate b, the parent, duplicate a")
    }

    /// A duplicate obeys the parent's deadline (one `DeadlineState`), and its waits take part in the roll
    /// call: a rank stalled outside any wait is named when a wait on the duplicate expires.
    func testADuplicateSharesTheDeadlineAndTheRollCall() throws {
        let outcomes = DeadlineTests.Outcomes(count: 3)
        do {
            _ = try LocalCommunicator.run(size: 3, timeout: 30) { comm in
                let dup = try comm.duplicate()
                XCTAssertTrue(dup.deadlines === comm.deadlines)
                if comm.rank == 2 { Thread.sleep(forTimeInterval: 0.3 * 2 + CollectiveStall.window(deadline: 0.3) + 1) }
                do {
                    try comm.watched("the chain", seconds: 0.3) {
                        XCTAssertEqual(dup.deadlines.current?.phase, "the chain")
                        _ = try dup.allreduced(1.0, op: .sum)
                    }
                } catch let stall as CollectiveStall {
                    stall.settle(on: dup, margin: 0.3)
                    outcomes.set(comm.rank, stall)
                    throw stall
                }
            }
        } catch is CollectiveStall {
        } catch let error as CommError {
            guard case .peerFailed = error else { throw error }
        }
        let reporters = outcomes.all.compactMap { $0 }.filter(\.reporter)
        XCTAssertEqual(reporters.map(\.missing), [[2]], "\(outcomes.all)")
    }
}
