import XCTest
@testable import DMLComm
import DMLTestSupport

/// `shm`'s one-sync path for small messages: alternating halves of each rank's part, mixed with the blocked
/// path, broadcasts and reductions to a root on one window, with ranks arriving at different times.
final class SharedMemorySmallMessageTests: XCTestCase {
    /// Small calls back to back (which reuse a half every second call), then blocked ones, a broadcast and a
    /// reduce, in a pattern that switches between them; ranks sleep at random before calls so that a rank
    /// that ran ahead would overwrite a half its peer is still reading. Every sum is exact (integers).
    func testSmallCallsInterleavedWithBlockedOnesBroadcastsAndReducesStayExact() throws {
        // 4 KiB parts: small up to 2 KiB at p = 2, 512 bytes at p = 8.
        for p in [2, 3, 8] {
            let counts = [1, 7, 300, 5, 2000, 16, 16, 16, 9000, 3, 128, 128, 600, 1]
            let inputs = (0..<p).map { r -> [[Float]] in
                var rng = TestRandom(seed: UInt64(r * 97 + p))
                return counts.map { rng.integerFloats($0) }
            }
            let expected = counts.indices.map { k in (0..<counts[k]).map { i in (0..<p).reduce(Float(0)) { $0 + inputs[$1][k][i] } } }
            let results = try LocalCommunicator.run(size: p, timeout: 60) { comm -> [[Float]] in
                let shm = SharedMemoryAllreduce(comm: comm, blockBytes: 4096)
                var rng = TestRandom(seed: UInt64(1000 + comm.rank))
                var out: [[Float]] = []
                for k in counts.indices {
                    if Int.random(in: 0..<3, using: &rng) == 0 { usleep(UInt32.random(in: 0..<300, using: &rng)) }
                    var buffer = inputs[comm.rank][k]
                    try buffer.withUnsafeMutableBufferPointer { try shm.run($0, op: .sum) }
                    out.append(buffer)
                    if k == 6 {  // a broadcast and a reduce between small calls
                        var b = [Float](repeating: Float(comm.rank), count: 50)
                        try b.withUnsafeMutableBufferPointer { try shm.broadcast($0, root: p - 1) }
                        XCTAssertEqual(b, [Float](repeating: Float(p - 1), count: 50))
                        var s = [Float](repeating: 1, count: 40)
                        try s.withUnsafeMutableBufferPointer { try shm.reduce($0, op: .sum, root: 0) }
                        if comm.rank == 0 { XCTAssertEqual(s, [Float](repeating: Float(p), count: 40)) }
                    }
                }
                XCTAssertTrue(shm.usesSharedMemory)
                XCTAssertEqual(shm.smallBytes, 4096 / Swift.max(2, p) & ~63)
                return out
            }
            for r in 0..<p {
                for k in counts.indices where results[r][k] != expected[k] {
                    XCTFail("p=\(p) rank \(r) call \(k) (\(counts[k]) floats): wrong sum")
                }
            }
        }
    }

    /// The one-sync path adds in the blocked path's order: the same bits on inexact data, Float and Double.
    func testTheSmallPathGivesTheBlockedPathsBits() throws {
        for p in [2, 5, 16] {
            let results = try LocalCommunicator.run(size: p) { comm -> [[UInt64]] in
                var rng = TestRandom(seed: UInt64(comm.rank + 11))
                let floats = rng.floats(123, in: -1e3...1e3)
                let doubles = (0..<55).map { _ in Double.random(in: -1...1, using: &rng) * 1e6 }
                // Whole-message parts (small path) against 64-byte parts (every call blocked).
                let small = SharedMemoryAllreduce(comm: comm, blockBytes: 1 << 20)
                let blocked = SharedMemoryAllreduce(comm: comm, blockBytes: 64)
                var out: [[UInt64]] = []
                for shm in [small, blocked] {
                    var f = floats, d = doubles
                    try f.withUnsafeMutableBufferPointer { try shm.run($0, op: .sum) }
                    try d.withUnsafeMutableBufferPointer { try shm.run($0, op: .sum) }
                    out.append(f.map { UInt64($0.bitPattern) } + d.map(\.bitPattern))
                }
                XCTAssertGreaterThanOrEqual(small.smallBytes, 123 * 4)
                XCTAssertEqual(blocked.smallBytes, 0)
                return out
            }
            for r in 0..<p {
                XCTAssertEqual(results[r][0], results[r][1], "p=\(p) rank \(r): the small path's bits differ from the blocked path's")
                XCTAssertEqual(results[r][0], results[0][0], "p=\(p): rank \(r) differs from rank 0")
            }
        }
    }
}

/// `auto`'s set-up probe on one node: `shm` against `MPI_Allreduce` once, one policy on every rank.
final class AutoAllreduceProbeTests: XCTestCase {
    func testTheProbeKeepsSharedMemoryOnlyWhereItWon() {
        let fast = AutoAllreduce.ProbeResult(bytes: 8 << 20, shmSeconds: 0.002, mpiSeconds: 0.008)
        let slow = AutoAllreduce.ProbeResult(bytes: 8 << 20, shmSeconds: 0.009, mpiSeconds: 0.008)
        XCTAssertEqual(fast.policy, .oneNode)
        XCTAssertEqual(slow.policy, .oneNodeSlowWindow)
        XCTAssertEqual(AutoAllreducePolicy.oneNodeSlowWindow.description, "shm<=1M,mpi")
        XCTAssertEqual([4 << 10, 1 << 20, (1 << 20) + 4, 64 << 20].map { AutoAllreducePolicy.oneNodeSlowWindow.choice(bytes: $0) },
                       [.shm, .shm, .mpi, .mpi])
        XCTAssertTrue(fast.description.hasPrefix("probe at 8M: shm 2.00 ms, mpi 8.00 ms (4.00x)"), fast.description)
    }

    /// Every rank ends with the same policy and the same measured numbers (the slowest rank's), the policy
    /// is the one the numbers call for, and the sums that follow are exact whichever was chosen.
    func testEveryRankGetsTheSameProbeAndPolicyAndExactSums() throws {
        let results = try LocalCommunicator.run(size: 3, timeout: 120) { comm -> (AutoAllreduce.ProbeResult?, AutoAllreducePolicy, [Float]) in
            let auto = AutoAllreduce(comm: comm, probes: true)
            let policy = try auto.resolvedPolicy()
            var x = (0..<((2 << 20) / 4)).map { Float(($0 % 7) * (comm.rank + 1)) }
            try x.withUnsafeMutableBufferPointer { try auto.run($0, op: .sum) }
            return (auto.probeResult, policy, Array(x[0..<1000]))
        }
        let probe = try XCTUnwrap(results[0].0)
        XCTAssertEqual(probe.bytes, AutoAllreduce.probeBytes)
        XCTAssertGreaterThan(probe.shmSeconds, 0)
        XCTAssertGreaterThan(probe.mpiSeconds, 0)
        XCTAssertEqual(results[0].1, probe.policy)
        for r in 0..<3 {
            XCTAssertEqual(results[r].0, probe, "rank \(r)")
            XCTAssertEqual(results[r].1, probe.policy, "rank \(r)")
            XCTAssertEqual(results[r].2, (0..<1000).map { Float(($0 % 7) * 6) }, "rank \(r)")
        }
        // A given policy is used as given, and in-process ranks are not probed unless asked.
        let given = try LocalCommunicator.run(size: 2) { comm -> Bool in
            let given = AutoAllreduce(comm: comm, policy: .oneNode, probes: true)
            _ = try given.resolvedPolicy()
            let unasked = AutoAllreduce(comm: comm)  // threads: no probe unless asked
            _ = try unasked.resolvedPolicy()
            return given.probeResult == nil && unasked.probeResult == nil
        }
        XCTAssertEqual(given, [true, true])
    }
}
