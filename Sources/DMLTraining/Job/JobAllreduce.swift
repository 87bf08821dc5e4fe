import Foundation
import DMLComm

extension JobConfiguration.Reduction {
    /// The gradient allreduce for a gradient of `gradientBytes`. For `auto`: the policy tuned now
    /// (`autotune`, then cached), or the one cached for this layout, or the built-in default; rank 0 decides
    /// and broadcasts it, so every rank agrees. `say` prints on rank 0. Collective.
    public func algorithm(comm: Communicator, gradientBytes: Int, say: (String) -> Void) throws -> AllreduceAlgorithm {
        if allreduce == .hier { try comm.agreeing { _ = try HierarchicalAllreduce.fakeNodesFromEnvironment() } }
        guard allreduce == .auto else { return allreduce.make(for: comm) }
        let cache = AllreduceTuneCache(path: tuneCache ?? AllreduceTuneCache.defaultPath)
        let key = try AllreduceTuneCache.key(comm: comm, maxBytes: gradientBytes)
        if autotune {
            let started = Date()
            let (measurements, segment) = try AllreduceTuner().measure(comm: comm, maxBytes: gradientBytes)
            let policy = AllreduceTuner.policy(from: measurements, ringSegment: segment)
            if comm.rank == 0 {
                var stored = "cached in \(cache.path)"
                do { try cache.store(policy, for: key) } catch { stored = "not cached: \(error)" }
                let seconds = String(format: "%.2f", Date().timeIntervalSince(started))
                say("allreduce auto: tuned in \(seconds) s on \(key): \(policy.description) (ring segment \(ByteCount.format(segment))); \(stored)")
                for size in AllreduceTuner.sizes(upTo: gradientBytes) {
                    let row = measurements.filter { $0.bytes == size && !$0.algorithm.contains("/") }
                        .map { "\($0.algorithm) \(String(format: "%.1f", $0.seconds * 1e6)) µs" }.joined(separator: ", ")
                    say("  \(ByteCount.format(size)): \(row)")
                }
            }
            return AutoAllreduce(comm: comm, policy: policy)
        }
        var text = ""
        var note = ""
        if comm.rank == 0, let (policy, when) = cache.policy(for: key) {
            text = policy.description + "|" + (policy.ringSegmentBytes.map(String.init) ?? "")
            note = "tuned \(when), from \(cache.path)"
        }
        try comm.broadcast(&text, root: 0)
        guard !text.isEmpty else { return AllreduceKind.auto.make(for: comm) }
        let parts = text.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
        var policy = try AutoAllreducePolicy(parsing: parts[0])
        policy.ringSegmentBytes = Int(parts[1])
        if comm.rank == 0 { say("allreduce auto: \(policy.description) (\(note))") }
        return AutoAllreduce(comm: comm, policy: policy)
    }

    /// How gradient sums cross the wire: Float32 through `exact`, or a 16-bit wire (a fresh error-feedback
    /// residual per call: one per trainer).
    public func hook(exact: AllreduceAlgorithm, comm: Communicator) -> ReductionHook {
        guard let format = compress else { return .plain(exact) }
        return .compressed(format, exact: exact, errorFeedback: errorFeedback, comm: comm)
    }
}
