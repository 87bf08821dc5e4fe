import Foundation
import XCTest
@testable import DMLComm
import DMLTestSupport

/// One communicator per concern: `Communicator.duplicate`, and every allreduce algorithm on its own
/// duplicate, on the in-process communicator (`AllreduceIntegrationTests` runs the MPI side).
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

    /// `PrivateCommunicator` (one per concern, made on first use): one duplicate, kept, apart from the parent.
    func testAPrivateCommunicatorIsOneDuplicateMadeOnFirstUse() throws {
        let got = try LocalCommunicator.run(size: 2) { comm -> Int64 in
            let timeline = PrivateCommunicator(comm)
            XCTAssertEqual([timeline.rank, timeline.size], [comm.rank, 2])
            let own = try timeline.get()
            XCTAssertTrue(own === (try timeline.get()), "made once, then kept")
            XCTAssertFalse(own === comm)
            var v: Int64 = comm.rank == 0 ? 7 : 0
            if comm.rank == 0 {
                try withUnsafeBytes(of: &v) { try own.send($0, to: 1, tag: 0) }
                v = 8
                try withUnsafeBytes(of: &v) { try comm.send($0, to: 1, tag: 0) }
                return 0
            }
            var fromParent: Int64 = 0
            try withUnsafeMutableBytes(of: &fromParent) { try comm.recv($0, from: 0, tag: 0) }
            try withUnsafeMutableBytes(of: &v) { try own.recv($0, from: 0, tag: 0) }
            return fromParent * 10 + v
        }
        XCTAssertEqual(got[1], 87, "the parent's message (8) reaches the parent's receive, the duplicate's (7) its own")
    }

    /// A duplicate obeys the parent's deadline: one `DeadlineState`, so `watched` on the parent bounds the
    /// duplicate's waits (and a duplicate of a duplicate's). What happens when such a wait expires — the roll
    /// call names the stalled rank — is `DeadlineTests`' stall test: every algorithm there waits on its own
    /// duplicate.
    func testADuplicateSharesTheParentsDeadline() throws {
        _ = try LocalCommunicator.run(size: 2) { comm in
            let dup = try comm.duplicate(), dupOfDup = try dup.duplicate()
            XCTAssertTrue(dup.deadlines === comm.deadlines)
            XCTAssertTrue(dupOfDup.deadlines === comm.deadlines)
            try comm.watched("the chain", seconds: 5) {
                XCTAssertEqual(dupOfDup.deadlines.current, CollectiveDeadline(seconds: 5, phase: "the chain"))
                XCTAssertEqual(try dupOfDup.allreduced(Int64(comm.rank + 1), op: .sum), 3)
            }
            XCTAssertNil(dup.deadlines.current)
        }
    }

    /// Pairs of algorithms that take each other's messages when they share one communicator (each pair fails
    /// this test when `PrivateCommunicator` hands out the parent instead of a duplicate): the same tags between
    /// the same ranks (ring and ring, ring and its 16-bit form, rd's 1, central's 0, auto's ring and a ring),
    /// the in-process world's reserved tags (native) and its barrier (shm's syncs).
    static var pairs: [(String, (Communicator) -> AllreduceAlgorithm, (Communicator) -> AllreduceAlgorithm)] { [
        ("ring + ring", { RingAllreduce(comm: $0, segmentBytes: 64, window: 2) }, { RingAllreduce(comm: $0) }),
        ("ring + ring-bf16", { RingAllreduce(comm: $0, segmentBytes: 64) }, { CompressedRingAllreduce(comm: $0, format: .bf16, segmentBytes: 32) }),
        ("rd + rd", { RecursiveDoublingAllreduce(comm: $0) }, { RecursiveDoublingAllreduce(comm: $0) }),
        ("central + central", { CentralAllreduce(comm: $0) }, { CentralAllreduce(comm: $0) }),
        ("mpi + mpi", { NativeAllreduce(comm: $0) }, { NativeAllreduce(comm: $0) }),
        ("shm + shm", { SharedMemoryAllreduce(comm: $0, blockBytes: 256) }, { SharedMemoryAllreduce(comm: $0, blockBytes: 512) }),
        ("auto + ring", { AutoAllreduce(comm: $0, policy: try! AutoAllreducePolicy(parsing: "rd<=64,central<=400,ring")) },
         { RingAllreduce(comm: $0, segmentBytes: 128) }),
    ] }

    /// Two algorithms built on one communicator, each driven by its own thread on every rank, their calls
    /// interleaving freely: every call of each gives the exact sum (integer-valued data, so exact in any
    /// order). Without a communicator per algorithm their messages meet and the sums come out wrong, a
    /// receive gets a message of the wrong size, or a barrier is passed by the wrong thread.
    func testTwoAlgorithmsOnTwoThreadsOfOneWorldEachGetTheirOwnResults() throws {
        let counts = [1, 7, 100, 1000, 2501]
        for (name, makeA, makeB) in Self.pairs {
            for p in [2, 3, 5] {
                let inputs = (0..<p).map { r in counts.map { n -> [Float] in
                    var rng = TestRandom(seed: UInt64(p * 1000 + r * 100 + n))
                    return rng.integerFloats(n)
                } }
                let outcome = Result { try LocalCommunicator.run(size: p, timeout: 20) { comm -> [String] in
                    // Set-up is collective: both algorithms, in one order, from this rank's thread.
                    let jobs = [Job(makeA(comm), small: false), Job(makeB(comm), small: true)]
                    for job in jobs { try job.algorithm.prepare() }
                    let group = DispatchGroup(), rank = comm.rank
                    for job in jobs {
                        group.enter()
                        let thread = Thread {
                            defer { group.leave() }
                            job.run(rounds: 6, rank: rank, inputs: inputs)
                        }
                        thread.stackSize = 8 << 20
                        thread.start()
                    }
                    group.wait()
                    for job in jobs { if let error = job.error { throw error } }
                    return jobs.flatMap(\.wrong)
                } }
                guard case let .success(wrong) = outcome else {
                    XCTFail("\(name) p=\(p): \(outcome)")
                    continue
                }
                for r in 0..<p where !wrong[r].isEmpty {
                    XCTFail("\(name) p=\(p) rank \(r): \(wrong[r].prefix(4).joined(separator: "; "))")
                }
            }
        }
    }

    /// One thread's algorithm and what it found. Each is used by one thread at a time: the rank's thread
    /// builds it, its own thread runs it, and the rank's thread reads it after `DispatchGroup.wait`, which
    /// orders those accesses.
    final class Job: @unchecked Sendable {
        let algorithm: AllreduceAlgorithm
        /// The second algorithm reduces the data divided by 25 and rounded, −4 … 4: other values on the wire
        /// than the first's, and sums that 16-bit formats hold exactly (for the compressed ring).
        let small: Bool
        var wrong: [String] = []
        var error: Error?

        init(_ algorithm: AllreduceAlgorithm, small: Bool) {
            self.algorithm = algorithm
            self.small = small
        }

        func data(_ x: Float) -> Float { small ? (x / 25).rounded() : x }

        /// `rounds` passes over every count, a Float and a Double call each; `inputs[r][k]`: rank r's data for
        /// count k.
        func run(rounds: Int, rank: Int, inputs: [[[Float]]]) {
            let p = inputs.count
            let expected = inputs[0].indices.map { k in (0..<inputs[0][k].count).map { i in (0..<p).reduce(Float(0)) { $0 + data(inputs[$1][k][i]) } } }
            do {
                for round in 0..<rounds {
                    for k in expected.indices {
                        var x = inputs[rank][k].map(data)
                        try x.withUnsafeMutableBufferPointer { try algorithm.run($0, op: .sum) }
                        if x != expected[k] { wrong.append("\(algorithm.name) round \(round) count \(x.count): wrong sum") }
                        var d = inputs[rank][k].map { Double(data($0)) }
                        try d.withUnsafeMutableBufferPointer { try algorithm.run($0, op: .sum) }
                        if d != expected[k].map(Double.init) { wrong.append("\(algorithm.name) round \(round) count \(d.count): wrong Double sum") }
                    }
                }
            } catch {
                self.error = error
            }
        }
    }
}
