import XCTest
import DMLComm
import DMLStatus
import DMLTestSupport

final class AgreementTests: XCTestCase {
    func testNoFailureMeansNoThrow() throws {
        _ = try LocalCommunicator.run(size: 4) { comm in try comm.agree(nil, kind: .usage) }
    }

    func testEveryRankLearnsTheLowestFailingRanksMessage() throws {
        let outcomes = try LocalCommunicator.run(size: 5) { comm -> AgreedFailure? in
            do {
                try comm.agree(comm.rank == 2 || comm.rank == 4 ? "broken on rank \(comm.rank)" : nil,
                               kind: comm.rank == 2 ? .noInput : .usage)
                return nil
            } catch let f as AgreedFailure { return f }
        }
        for f in outcomes {
            XCTAssertEqual(f?.rank, 2)
            XCTAssertEqual(f?.failedRanks, [2, 4])
            XCTAssertEqual(f?.message, "broken on rank 2")
            XCTAssertEqual(f?.failureKind, .noInput, "the lowest failing rank's kind, on every rank")
        }
    }

    /// `agreeing` takes the kind from the error thrown: its own for a `ClassifiedError`, `.software` for any
    /// other, so the job's exit status says what failed on the rank that failed.
    func testAgreeingCarriesTheThrownErrorsKindToEveryRank() throws {
        struct Unclassified: Error {}
        for (thrown, kind) in [(JobError(.dataFormat, "bad") as Error, FailureKind.dataFormat),
                               (CommError.timeout("late"), .unavailable), (Unclassified(), .software)] {
            let outcomes = try LocalCommunicator.run(size: 3) { comm -> FailureKind? in
                do {
                    try comm.agreeing { if comm.rank == 1 { throw thrown } }
                    return nil
                } catch let f as AgreedFailure { return f.failureKind }
            }
            XCTAssertEqual(outcomes, [kind, kind, kind], "\(thrown)")
        }
    }

    func testBroadcastOfArraysAndStrings() throws {
        let results = try LocalCommunicator.run(size: 3) { comm -> ([Double], String) in
            var values: [Double] = comm.rank == 1 ? [1.5, 2.5, 3.5] : []
            var text = comm.rank == 1 ? "héllo from one" : "x"
            try comm.broadcast(&values, root: 1)
            try comm.broadcast(&text, root: 1)
            return (values, text)
        }
        for (v, t) in results {
            XCTAssertEqual(v, [1.5, 2.5, 3.5])
            XCTAssertEqual(t, "héllo from one")
        }
    }

    func testAReceiveFromAFailedPeerThrowsInsteadOfHanging() {
        XCTAssertThrowsError(try LocalCommunicator.run(size: 2, timeout: 10) { comm -> Void in
            if comm.rank == 0 { throw CommError.invalidArgument("rank 0 gives up") }
            var x = [Float](repeating: 0, count: 1)
            try x.withUnsafeMutableBufferPointer { try comm.recv($0, from: 0) }
        })
    }
}
