import XCTest
import DMLComm
import DMLTestSupport

final class AllreduceTunerTests: XCTestCase {
    typealias M = AllreduceTuner.Measurement

    func testThePolicyFollowsTheFastestAlgorithmPerSize() {
        let ms = [M(algorithm: "rd", bytes: 4096, seconds: 1), M(algorithm: "ring", bytes: 4096, seconds: 2),
                  M(algorithm: "rd", bytes: 16384, seconds: 3), M(algorithm: "ring", bytes: 16384, seconds: 2),
                  M(algorithm: "rd", bytes: 65536, seconds: 9), M(algorithm: "ring", bytes: 65536, seconds: 5),
                  M(algorithm: "ring/segment=64K", bytes: 65536, seconds: 0.1)]
        let p = AllreduceTuner.policy(from: ms, ringSegment: 65536)
        XCTAssertEqual(p.description, "rd<=4K,ring")
        XCTAssertEqual(p.ringSegmentBytes, 65536)
        XCTAssertEqual(p.choice(bytes: 4096), .rd)
        XCTAssertEqual(p.choice(bytes: 4097), .ring)
        let one = AllreduceTuner.policy(from: [M(algorithm: "shm", bytes: 4096, seconds: 1), M(algorithm: "mpi", bytes: 4096, seconds: 2)], ringSegment: nil)
        XCTAssertEqual(one.description, "shm")
        XCTAssertEqual(AllreduceTuner.sizes(upTo: 100_000), [4096, 16384, 65536, 100_000])
        XCTAssertEqual(AllreduceTuner.sizes(upTo: 100), [100])
    }

    /// Measured in-process on 3 ranks: every rank derives the same policy, and the cache gives it back.
    func testTuningIsCollectiveAndTheCacheRoundTrips() throws {
        let path = MPIRunner.temporaryDirectory() + "/cache/tune.json"
        let policies = try LocalCommunicator.run(size: 3) { comm -> String in
            let tuner = AllreduceTuner(candidates: [.ring, .rd, .central], segmentCandidates: [1024, 8192], iterations: 2)
            let (ms, segment) = try tuner.measure(comm: comm, maxBytes: 40_000)
            XCTAssertEqual(Set(ms.filter { !$0.algorithm.contains("/") }.map(\.bytes)), [4096, 16384, 40_000])
            let policy = AllreduceTuner.policy(from: ms, ringSegment: segment)
            let key = try AllreduceTuneCache.key(comm: comm, maxBytes: 40_000)
            XCTAssertTrue(key.contains("nodes=1 ranks=3 bytes=40000"), key)
            if comm.rank == 0 { try AllreduceTuneCache(path: path).store(policy, for: key) }
            return policy.description + " \(policy.ringSegmentBytes ?? 0) " + key
        }
        XCTAssertEqual(Set(policies).count, 1, "the same on every rank: \(policies)")
        let key = String(policies[0].split(separator: " ", maxSplits: 2)[2])
        let cached = AllreduceTuneCache(path: path).policy(for: key)
        XCTAssertEqual(cached.map { "\($0.policy.description) \($0.policy.ringSegmentBytes ?? 0) " + key }, policies[0])
        XCTAssertNil(AllreduceTuneCache(path: path).policy(for: "another layout"))
    }
}
