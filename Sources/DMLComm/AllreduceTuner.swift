import Foundation

/// `--allreduce auto --tune`: measures, on the machine and rank layout where the job runs, which algorithm is
/// fastest at each message size up to the job's own gradient size, and the ring's best segment size, and
/// turns that into an `AutoAllreducePolicy`.
///
/// Method: for each size (×4 steps from 4 KiB to `maxBytes`, and `maxBytes` itself) and each candidate, a
/// warm-up call and then `iterations` timed calls; a call's time is the slowest rank's (one max-allreduce of
/// the per-rank times), the candidate's time the median. Every rank takes the same decisions from the same
/// reduced numbers. Cost: about `sizes × candidates × (iterations + 1)` allreduces (a second or two for a
/// few-MB gradient on shared memory).
public struct AllreduceTuner {
    public struct Measurement: Sendable, Equatable {
        public let algorithm: String
        public let bytes: Int
        public let seconds: Double

        public init(algorithm: String, bytes: Int, seconds: Double) {
            self.algorithm = algorithm
            self.bytes = bytes
            self.seconds = seconds
        }
    }

    public let candidates: [AllreduceKind]
    public let segmentCandidates: [Int]
    public let iterations: Int

    public init(candidates: [AllreduceKind] = [.ring, .shm, .rd, .mpi],
                segmentCandidates: [Int] = [64 << 10, 256 << 10, 1 << 20], iterations: Int = 5) {
        self.candidates = candidates
        self.segmentCandidates = segmentCandidates
        self.iterations = Swift.max(1, iterations)
    }

    /// The sizes measured: 4 KiB, 16 KiB, … below `maxBytes`, then `maxBytes`.
    public static func sizes(upTo maxBytes: Int) -> [Int] {
        var sizes: [Int] = []
        var s = 4 << 10
        while s < maxBytes { sizes.append(s); s *= 4 }
        sizes.append(Swift.max(maxBytes, 4))
        return sizes
    }

    /// Measures every candidate at every size and the ring's segment sizes at `maxBytes`. Collective.
    public func measure(comm: Communicator, maxBytes: Int) throws -> (measurements: [Measurement], ringSegment: Int) {
        var results: [Measurement] = []
        let sizes = Self.sizes(upTo: maxBytes)
        var buffer = [Float](repeating: 0, count: Swift.max(1, maxBytes / 4))
        func time(_ algorithm: AllreduceAlgorithm, bytes: Int) throws -> Double {
            let count = Swift.max(1, bytes / 4)
            var samples: [Double] = []
            for i in 0...iterations {
                let start = DispatchTime.now().uptimeNanoseconds
                try buffer.withUnsafeMutableBufferPointer {
                    try algorithm.run(UnsafeMutableBufferPointer(rebasing: $0[0..<count]), op: .sum)
                }
                let mine = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                let slowest = try comm.allreduced(mine, op: .max)
                if i > 0 { samples.append(slowest) }  // the first call is the warm-up
                // Keep the values small and finite whatever the sums did.
                buffer.withUnsafeMutableBufferPointer { $0.initialize(repeating: 0) }
            }
            samples.sort()
            return samples[samples.count / 2]
        }
        var segment = RingAllreduce.defaultSegmentBytes
        var bestSegmentTime = Double.infinity
        for s in segmentCandidates {
            let t = try time(RingAllreduce(comm: comm, segmentBytes: s), bytes: maxBytes)
            results.append(Measurement(algorithm: "ring/segment=\(ByteCount.format(s))", bytes: maxBytes, seconds: t))
            if t < bestSegmentTime { bestSegmentTime = t; segment = s }
        }
        // Algorithms are built once (a shared window is set up collectively) and released in this order.
        let algorithms = candidates.map { kind -> (AllreduceKind, AllreduceAlgorithm) in
            (kind, kind == .ring ? RingAllreduce(comm: comm, segmentBytes: segment) : kind.make(for: comm))
        }
        for bytes in sizes {
            for (kind, algorithm) in algorithms {
                results.append(Measurement(algorithm: kind.rawValue, bytes: bytes, seconds: try time(algorithm, bytes: bytes)))
            }
        }
        return (results, segment)
    }

    /// The policy from measurements: the fastest algorithm per size; a run of sizes with the same winner
    /// becomes one rule up to the largest of them, the winner at the largest size covers everything above.
    public static func policy(from measurements: [Measurement], ringSegment: Int?) -> AutoAllreducePolicy {
        let plain = measurements.filter { !$0.algorithm.contains("/") }
        let sizes = Array(Set(plain.map(\.bytes))).sorted()
        let winners: [(bytes: Int, kind: AllreduceKind)] = sizes.compactMap { bytes in
            guard let best = plain.filter({ $0.bytes == bytes }).min(by: { $0.seconds < $1.seconds }),
                  let kind = AllreduceKind(rawValue: best.algorithm) else { return nil }
            return (bytes, kind)
        }
        var rules: [AutoAllreducePolicy.Rule] = []
        for (i, w) in winners.enumerated().dropLast() where winners[i + 1].kind != w.kind {
            rules.append(.init(kind: w.kind, maxBytes: w.bytes))
        }
        var policy = AutoAllreducePolicy(rules: rules, otherwise: winners.last?.kind ?? .ring)
        policy.ringSegmentBytes = ringSegment
        return policy
    }
}

/// The tuned policy kept between jobs: one JSON file, one entry per machine layout (hosts, ranks, gradient
/// size), so a later job with the same layout reuses the choice without measuring again.
public struct AllreduceTuneCache {
    public let path: String

    public init(path: String) { self.path = path }

    /// The default place: `$XDG_CACHE_HOME/dml/allreduce-tune.json`, or `~/.cache/dml/…`.
    public static var defaultPath: String {
        let env = ProcessInfo.processInfo.environment
        let base = env["XDG_CACHE_HOME"] ?? ((env["HOME"] ?? NSTemporaryDirectory()) + "/.cache")
        return base + "/dml/allreduce-tune.json"
    }

    /// The key of a layout: rank 0's host, the ranks per node (nodes told apart by a hash of the host name,
    /// one allgather), and the gradient size. Collective.
    public static func key(comm: Communicator, maxBytes: Int) throws -> String {
        let host = ProcessInfo.processInfo.hostName
        let all = try comm.allgathered(Int64(bitPattern: Checksum.hash(host)))
        let perNode = Dictionary(all.map { ($0, 1) }, uniquingKeysWith: +).values.sorted(by: >)
        return "\(host) nodes=\(perNode.count) ranks=\(perNode.map(String.init).joined(separator: "+")) bytes=\(maxBytes)"
    }

    private func load() -> [String: [String: String]] {
        guard let data = FileManager.default.contents(atPath: path),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: [String: String]] else { return [:] }
        return object
    }

    /// The cached policy for `key`, or nil (no file, no entry, or an entry that no longer parses).
    public func policy(for key: String) -> (policy: AutoAllreducePolicy, measuredAt: String)? {
        guard let entry = load()[key], let text = entry["policy"], var p = try? AutoAllreducePolicy(parsing: text) else { return nil }
        p.ringSegmentBytes = entry["ring_segment"].flatMap { Int($0) }
        return (p, entry["measured_at"] ?? "?")
    }

    /// Stores `policy` for `key` (the file is rewritten whole, atomically by rename).
    public func store(_ policy: AutoAllreducePolicy, for key: String) throws {
        var all = load()
        var entry = ["policy": policy.description, "measured_at": ISO8601DateFormatter().string(from: Date())]
        if let s = policy.ringSegmentBytes { entry["ring_segment"] = String(s) }
        all[key] = entry
        let data = try JSONSerialization.data(withJSONObject: all, options: [.prettyPrinted, .sortedKeys])
        let dir = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let temp = path + ".tmp.\(getpid())"
        try data.write(to: URL(fileURLWithPath: temp))
        guard rename(temp, path) == 0 else {
            unlink(temp)
            throw CommError.invalidArgument("cannot write the tuning cache \(path): \(String(cString: strerror(errno)))")
        }
    }
}
