import XCTest
@testable import DMLComm
import DMLTestSupport

/// The one deadline mechanism (`CollectiveDeadline`, `CollectiveStall`) on the in-process communicator: the
/// same decisions as under mpirun (`FailureIntegrationTests` runs the MPI side).
final class DeadlineTests: XCTestCase {
    /// What each rank ended with: the stall it caught (after settling), or nil when its call completed. A rank
    /// that caught a stall then fails the world, as `MPI_Abort` would end the job, so the stalled rank finds
    /// the others gone when it wakes up.
    func run(size p: Int, deadline: Double, stalled: Int, algorithm: @escaping (Communicator) -> AllreduceAlgorithm) throws -> [CollectiveStall?] {
        let outcomes = Outcomes(count: p)
        do {
            _ = try LocalCommunicator.run(size: p, timeout: 30) { comm in
                let reduce = algorithm(comm)
                var buffer = [Float](repeating: Float(comm.rank), count: 1000)
                // Set-up (windows, splits) first, so the stall is inside the timed phase, not in set-up.
                try buffer.withUnsafeMutableBufferPointer { try reduce.run($0, op: .sum) }
                if comm.rank == stalled { Thread.sleep(forTimeInterval: deadline * 2 + CollectiveStall.window(deadline: deadline) + 1) }
                do {
                    try comm.watched("the gradient allreduce of step 7", seconds: deadline) {
                        try buffer.withUnsafeMutableBufferPointer { try reduce.run($0, op: .sum) }
                    }
                } catch let stall as CollectiveStall {
                    stall.settle(on: comm, margin: 0.3)
                    outcomes.set(comm.rank, stall)
                    throw stall
                }
            }
        } catch is CollectiveStall {
        } catch let error as CommError {
            guard case .peerFailed = error else { throw error }
        }
        return outcomes.all
    }

    func testAStalledRankIsNamedByExactlyOneReporterForEveryAlgorithmAndRank() throws {
        let algorithms: [(String, (Communicator) -> AllreduceAlgorithm)] = [
            ("ring", { RingAllreduce(comm: $0, segmentBytes: 256) }), ("shm", { SharedMemoryAllreduce(comm: $0) }),
            ("rd", { RecursiveDoublingAllreduce(comm: $0) }), ("central", { CentralAllreduce(comm: $0) }),
            ("native", { NativeAllreduce(comm: $0) }), ("hier/2 nodes", { HierarchicalAllreduce(comm: $0, fakeNodes: 2) }),
            ("sparse", { SparseAllreduce(comm: $0) }),
        ]
        for (name, make) in algorithms {
            for (p, stalled) in [(2, 1), (3, 0), (5, 4)] {   // rank 0 stalled (rank 1 reports), another rank, a larger world
                let started = Date()
                let outcomes = try run(size: p, deadline: 0.3, stalled: stalled, algorithm: make)
                let seconds = Date().timeIntervalSince(started)
                let reporters = outcomes.compactMap { $0 }.filter(\.reporter)
                XCTAssertEqual(reporters.count, 1, "\(name) p=\(p) stalled \(stalled): \(outcomes)")
                guard let report = reporters.first else { continue }
                XCTAssertEqual(report.missing, [stalled], "\(name) p=\(p)")
                XCTAssertEqual(report.rank, stalled == 0 ? 1 : 0, "rank 0 reports, rank 1 when rank 0 is the one missing")
                XCTAssertEqual(report.description, "the gradient allreduce of step 7 did not finish within 0.3 s: rank \(stalled) did not answer "
                               + "(stopped, dead, or stuck outside MPI)")
                XCTAssertNil(outcomes[stalled], "the stalled rank itself reports nothing")
                XCTAssertLessThan(seconds, 30, "\(name) p=\(p)")
            }
        }
    }

    /// The deadline bounds each wait, not the phase: a phase of many waits, each done in time, is never cut
    /// short however long it lasts.
    func testALongPhaseOfTimelyWaitsIsNotCutShort() throws {
        let outcomes = try LocalCommunicator.run(size: 3) { comm -> Int in
            try comm.watched("a long phase", seconds: 0.2) {
                for _ in 0..<6 {
                    if comm.rank == 1 { Thread.sleep(forTimeInterval: 0.1) }
                    _ = try comm.allreduced(1.0, op: .sum)
                }
            }
            return comm.rank
        }
        XCTAssertEqual(outcomes, [0, 1, 2])
    }

    /// Every rank alive but waiting in different collectives (a bug, or a deadline shorter than the network
    /// needs): the roll call finds nobody missing, and says so.
    func testRanksInDifferentCollectivesAreToldApartFromAMissingRank() throws {
        let outcomes = try LocalCommunicator.run(size: 3) { comm -> CollectiveStall? in
            do {
                try comm.watched("the mismatched phase", seconds: 0.2) {
                    if comm.rank == 2 { try comm.barrier() } else { _ = try comm.allreduced(1.0, op: .sum) }
                }
                return nil
            } catch let stall as CollectiveStall {
                stall.settle(on: comm, margin: 0.3)
                return stall
            }
        }
        let report = try XCTUnwrap(outcomes.compactMap { $0 }.first(where: \.reporter))
        XCTAssertEqual(report.missing, [])
        XCTAssertTrue(report.description.contains("although every rank answered a roll call"), report.description)
    }

    final class Outcomes: @unchecked Sendable {
        private let lock = NSLock()
        private var slots: [CollectiveStall?]
        init(count: Int) { slots = Array(repeating: nil, count: count) }
        func set(_ i: Int, _ s: CollectiveStall) { lock.lock(); slots[i] = s; lock.unlock() }
        var all: [CollectiveStall?] { lock.lock(); defer { lock.unlock() }; return slots }
    }

    /// No deadline: waits block as before (here until the world's own test timeout).
    func testWithoutADeadlineAWaitIsNotCut() throws {
        XCTAssertThrowsError(try LocalCommunicator.run(size: 2, timeout: 0.5) { comm -> Void in
            if comm.rank == 1 { _ = try comm.allreduced(1.0, op: .sum) }
        }) { error in
            XCTAssertTrue("\(error)".contains("waited 0.5 s"), "\(error)")
        }
    }
}
