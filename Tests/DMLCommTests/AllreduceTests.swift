import XCTest
@testable import DMLComm
import DMLTestSupport

/// Every allreduce algorithm on the in-process communicator, against a serial sum.
final class AllreduceTests: XCTestCase {
    /// Every algorithm by name, plus variants with tiny segments and blocks so that small test buffers go
    /// through many segments (ring) and many blocks, including a short last one (shm). The fp16 ring is exact
    /// on these tests' data too: integers in −100…100 summed over at most 16 ranks stay below 2048.
    static var variants: [(String, (Communicator) -> AllreduceAlgorithm)] {
        AllreduceKind.allCases.map { kind in (kind.rawValue, { kind.make(for: $0) }) } + [
            ("ring/12-byte segments", { RingAllreduce(comm: $0, segmentBytes: 12, window: 2) }),
            ("ring-fp16/6-byte segments", { CompressedRingAllreduce(comm: $0, format: .fp16, segmentBytes: 6, window: 2) }),
            ("shm/256-byte blocks", { SharedMemoryAllreduce(comm: $0, blockBytes: 256) }),
            ("hier/2 fake nodes", { HierarchicalAllreduce(comm: $0, fakeNodes: 2) }),
            ("hier/3 fake nodes", { HierarchicalAllreduce(comm: $0, fakeNodes: 3) }),
            ("hier/2 fake nodes/256-byte blocks", { HierarchicalAllreduce(comm: $0, fakeNodes: 2, blockBytes: 256) }),
            ("auto/rd<=64,central<=400,shm", { AutoAllreduce(comm: $0, policy: try! AutoAllreducePolicy(parsing: "rd<=64,central<=400,shm")) }),
        ]
    }

    /// Each rank's input: integer-valued, so the exact sum does not depend on the order of additions.
    func input(rank: Int, count: Int, seed: UInt64) -> [Float] {
        var rng = TestRandom(seed: seed &* 1000 &+ UInt64(rank))
        return rng.integerFloats(count)
    }

    func testEveryAlgorithmMatchesTheSerialSumForWorldSizesOneToSixteen() throws {
        var rng = TestRandom(seed: 7)
        for p in 1...16 {
            let counts = [0, 1, Swift.max(0, p - 1), p + 1, 100, 1000, Int.random(in: 2...10_000, using: &rng)]
            let seed = UInt64(p)
            let inputs = (0..<p).map { r in counts.map { input(rank: r, count: $0, seed: seed &+ UInt64($0)) } }
            var expected = counts.map { [Float](repeating: 0, count: $0) }
            for r in 0..<p { for k in counts.indices { for i in 0..<counts[k] { expected[k][i] += inputs[r][k][i] } } }
            for (name, make) in Self.variants {
                // One algorithm object per rank, reused across the counts and both types (scratch and
                // windows are reused, and a Double call after a Float one changes the shm block layout).
                let results = try LocalCommunicator.run(size: p, timeout: 30) { comm -> ([[Float]], [[Double]]) in
                    let algorithm = make(comm)
                    let floats = try counts.indices.map { k in
                        var buffer = inputs[comm.rank][k]
                        try buffer.withUnsafeMutableBufferPointer { try algorithm.run($0, op: .sum) }
                        return buffer
                    }
                    let doubles = try counts.indices.map { k in
                        var buffer = inputs[comm.rank][k].map { Double($0) }
                        try buffer.withUnsafeMutableBufferPointer { try algorithm.run($0, op: .sum) }
                        return buffer
                    }
                    return (floats, doubles)
                }
                for r in 0..<p {
                    for k in counts.indices where results[r].0[k] != expected[k] {
                        XCTFail("\(name) p=\(p) count=\(counts[k]) rank=\(r): wrong Float sum")
                    }
                    for k in counts.indices where results[r].1[k] != expected[k].map({ Double($0) }) {
                        XCTFail("\(name) p=\(p) count=\(counts[k]) rank=\(r): wrong Double sum")
                    }
                }
            }
        }
    }

    func testEveryAlgorithmGivesEveryRankTheSameBitsOnInexactSums() throws {
        for p in [2, 3, 5, 8, 13] {
            for (name, make) in Self.variants {
                let results = try LocalCommunicator.run(size: p) { comm -> [[UInt64]] in
                    var rng = TestRandom(seed: UInt64(comm.rank + 1))
                    var floats = rng.floats(1001, in: -1e3...1e3)
                    var doubles = (0..<777).map { _ in Double.random(in: -1...1, using: &rng) * 1e6 }
                    let algorithm = make(comm)
                    try floats.withUnsafeMutableBufferPointer { try algorithm.run($0, op: .sum) }
                    try doubles.withUnsafeMutableBufferPointer { try algorithm.run($0, op: .sum) }
                    return [floats.map { UInt64($0.bitPattern) }, doubles.map(\.bitPattern)]
                }
                for r in 1..<p { XCTAssertEqual(results[r], results[0], "\(name) p=\(p): rank \(r) differs from rank 0") }
            }
        }
    }

    func testDoublesAreSummedToo() throws {
        for (name, make) in Self.variants {
            let results = try LocalCommunicator.run(size: 4) { comm -> [[Double]] in
                let algorithm = make(comm)
                return try [10, 1000, 3, 1000].map { n -> [Double] in
                    var buffer = (0..<n).map { Double($0 * (comm.rank + 1)) }
                    try buffer.withUnsafeMutableBufferPointer { try algorithm.run($0, op: .sum) }
                    return buffer
                }
            }
            for r in 0..<4 {
                for (k, n) in [10, 1000, 3, 1000].enumerated() {
                    XCTAssertEqual(results[r][k], (0..<n).map { Double($0 * 10) }, "\(name) rank \(r)")
                }
            }
        }
    }

    func testMaxAndMin() throws {
        for (name, make) in Self.variants {
            let results = try LocalCommunicator.run(size: 5) { comm -> ([Float], [Float]) in
                var a = (0..<7).map { Float(($0 + comm.rank) % 5) }
                var b = a
                let algorithm = make(comm)
                try a.withUnsafeMutableBufferPointer { try algorithm.run($0, op: .max) }
                try b.withUnsafeMutableBufferPointer { try algorithm.run($0, op: .min) }
                return (a, b)
            }
            for (mx, mn) in results {
                XCTAssertEqual(mx, [Float](repeating: 4, count: 7), name)
                XCTAssertEqual(mn, [Float](repeating: 0, count: 7), name)
            }
        }
    }

    func testTheReplicaCheckFindsTheRankThatDiffers() throws {
        let outcomes = try LocalCommunicator.run(size: 4) { comm -> [String] in
            let same: [Float] = [1, 2, 3, 0.1]
            try same.withUnsafeBytes { try comm.checkIdentical($0, what: "parameters") }
            var one = same
            if comm.rank == 2 { one[3] = one[3].nextUp }  // one bit in one element of one rank
            var messages: [String] = []
            do { try one.withUnsafeBytes { try comm.checkIdentical($0, what: "parameters") } } catch let f as AgreedFailure {
                messages.append(f.message)
            }
            return messages
        }
        for messages in outcomes {
            XCTAssertEqual(messages, ["parameters differ between ranks: rank 2 holds other bits than rank 0"])
        }
    }

    func testKindsAreNamedAsTheFlagNamesThem() throws {
        _ = try LocalCommunicator.run(size: 2) { comm in
            for kind in AllreduceKind.allCases { XCTAssertEqual(kind.make(for: comm).name, kind.rawValue) }
        }
    }

    func testSharedMemoryRunsOverThreadsInProcess() throws {
        let used = try LocalCommunicator.run(size: 3) { comm -> Bool in
            let shm = SharedMemoryAllreduce(comm: comm)
            var x: [Float] = [1, 2, 3, 4]
            try x.withUnsafeMutableBufferPointer { try shm.run($0, op: .sum) }
            XCTAssertEqual(x, [3, 6, 9, 12])
            return shm.usesSharedMemory
        }
        XCTAssertEqual(used, [true, true, true])
    }

    func testAutoPolicyParsesChoosesAndRejectsNonsense() throws {
        let policy = try AutoAllreducePolicy(parsing: "rd<=16K, mpi<=1M ,shm")
        XCTAssertEqual(policy.choice(bytes: 4096), .rd)
        XCTAssertEqual(policy.choice(bytes: 16 << 10), .rd)
        XCTAssertEqual(policy.choice(bytes: (16 << 10) + 4), .mpi)
        XCTAssertEqual(policy.choice(bytes: 64 << 20), .shm)
        XCTAssertEqual(policy.description, "rd<=16K,mpi<=1M,shm")
        XCTAssertEqual(try AutoAllreducePolicy(parsing: "ring").choice(bytes: 1), .ring)
        for bad in ["", "rd<=16K", "rd<16K,shm", "nccl", "rd<=lots,shm", "auto"] {
            XCTAssertThrowsError(try AutoAllreducePolicy(parsing: bad), bad)
        }
    }

    /// Nodes of equal size use the rails (one ring per node rank across the nodes); unequal ones the leaders.
    func testHierUsesRailsExactlyWhenTheNodesAreOfEqualSize() throws {
        for (p, nodes, rails) in [(4, 2, true), (6, 3, true), (3, 2, false), (5, 2, false), (4, 4, true), (4, 1, true)] {
            let used = try LocalCommunicator.run(size: p) { comm -> Bool in
                let h = HierarchicalAllreduce(comm: comm, fakeNodes: nodes)
                try h.prepare()
                return h.usesRails
            }
            XCTAssertEqual(used, [Bool](repeating: rails, count: p), "p=\(p) over \(nodes) nodes")
        }
    }

    /// The rings across the nodes send 32 KiB segments (eager over OpenMPI's TCP), not the flat ring's 256 KiB
    /// (the ring's bits do not depend on the segment: RingDigestTests).
    func testHierRailsSendSegmentsBelowTheTCPEagerLimit() throws {
        try XCTSkipIf(ProcessInfo.processInfo.environment["DML_RING_SEGMENT"] != nil, "DML_RING_SEGMENT is set")
        let segments = try LocalCommunicator.run(size: 4) { comm -> Int in
            let h = HierarchicalAllreduce(comm: comm, fakeNodes: 2)
            try h.prepare()
            return h.acrossSegmentBytes
        }
        XCTAssertEqual(segments, [Int](repeating: 32 << 10, count: 4))
        XCTAssertLessThan(HierarchicalAllreduce.railSegmentBytes, RingAllreduce.defaultSegmentBytes)
        XCTAssertLessThanOrEqual(HierarchicalAllreduce.railSegmentBytes + 64, 65536, "below btl_tcp_eager_limit with a header")
    }

    func testAutoDefaultsToSharedMemoryWhenTheRanksShareANode() throws {
        try XCTSkipIf(ProcessInfo.processInfo.environment["DML_ALLREDUCE_AUTO"] != nil, "DML_ALLREDUCE_AUTO is set")
        let policies = try LocalCommunicator.run(size: 3) { comm in try AutoAllreduce(comm: comm, probes: false).resolvedPolicy() }
        XCTAssertEqual(policies, [AutoAllreducePolicy.oneNode, .oneNode, .oneNode])
        XCTAssertEqual(AutoAllreducePolicy.acrossNodes.description, "rd<=16K,hier")
        XCTAssertEqual([16 << 10, 32 << 10, 512 << 10, 1 << 20, 2 << 20].map { AutoAllreducePolicy.acrossNodes.choice(bytes: $0) },
                       [.rd, .hier, .hier, .hier, .hier])
        let given = try LocalCommunicator.run(size: 2) { comm in
            try AutoAllreduce(comm: comm, policy: AutoAllreducePolicy(parsing: "rd<=1K,ring")).resolvedPolicy()
        }
        XCTAssertEqual(given.map(\.description), ["rd<=1K,ring", "rd<=1K,ring"])
    }

    func testByteCounts() {
        XCTAssertEqual(ByteCount.parse("4K"), 4096)
        XCTAssertEqual(ByteCount.parse("256M"), 256 << 20)
        XCTAssertEqual(ByteCount.parse("1GiB"), 1 << 30)
        XCTAssertEqual(ByteCount.parse("100"), 100)
        XCTAssertEqual(ByteCount.parse("8MB"), 8 << 20)
        XCTAssertEqual(ByteCount.parse("512m"), 512 << 20)
        XCTAssertEqual(ByteCount.parse("2gb"), 2 << 30)
        XCTAssertEqual(ByteCount.parse("64kib"), 64 << 10)
        XCTAssertEqual(ByteCount.parse("64Mi"), 64 << 20)
        XCTAssertEqual(ByteCount.parse("100B"), 100)
        XCTAssertNil(ByteCount.parse("12x"))
        XCTAssertNil(ByteCount.parse("mb"))
        XCTAssertNil(ByteCount.parse("4X"))
        XCTAssertNil(ByteCount.parse("-4K"))
        XCTAssertEqual(ByteCount.format(4096), "4K")
        XCTAssertEqual(ByteCount.format(256 << 20), "256M")
        XCTAssertEqual(ByteCount.format(1000), "1000")
    }

    func testChunksCoverTheBufferAndDifferByAtMostOne() {
        for p in 1...9 {
            for n in [0, 1, 5, 17, 100] {
                let chunks = (0..<p).map { RingAllreduce.chunk($0, count: n, parts: p) }
                XCTAssertEqual(chunks.first?.lowerBound, 0)
                XCTAssertEqual(chunks.last?.upperBound, n)
                for c in 1..<p { XCTAssertEqual(chunks[c - 1].upperBound, chunks[c].lowerBound) }
                let sizes = chunks.map(\.count)
                XCTAssertLessThanOrEqual(sizes.max()! - sizes.min()!, 1)
            }
        }
    }

    func testNonBlockingSendsAndReceivesMatchInOrder() throws {
        let results = try LocalCommunicator.run(size: 2) { comm -> [Float] in
            var got = [Float](repeating: 0, count: 6)
            let mine: [Float] = (0..<6).map { Float($0 + 10 * comm.rank) }
            let peer = 1 - comm.rank
            try got.withUnsafeMutableBytes { g in
                try mine.withUnsafeBytes { m in
                    var requests: [CommRequest] = []
                    for k in 0..<3 { requests.append(try comm.irecv(UnsafeMutableRawBufferPointer(rebasing: g[(8 * k)..<(8 * k + 8)]), from: peer, tag: 5)) }
                    for k in 0..<3 { requests.append(try comm.isend(UnsafeRawBufferPointer(rebasing: m[(8 * k)..<(8 * k + 8)]), to: peer, tag: 5)) }
                    try comm.waitAll(&requests)
                    XCTAssertTrue(requests.isEmpty)
                }
            }
            return got
        }
        XCTAssertEqual(results[0], (0..<6).map { Float($0 + 10) })
        XCTAssertEqual(results[1], (0..<6).map { Float($0) })
    }
}
