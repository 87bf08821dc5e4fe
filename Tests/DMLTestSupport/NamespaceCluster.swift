import Foundation

/// A `scripts/cluster` of namespace nodes for the multi-node integration tests: `up` with a name unique to
/// this test process (`t` + its PID, so two test runs at once cannot collide), `mpirun` through it, `down`.
/// `unavailableReason` says why the machine cannot host one (not root, no `ip netns`, namespaces not
/// allowed), for `XCTSkip`.
public final class NamespaceCluster: @unchecked Sendable {
    public let name: String
    public let nodes: Int
    /// The nodes' host names, `dmlc<name>-n1` …
    public var hosts: [String] { (1...nodes).map { "dmlc\(name)-n\($0)" } }

    /// The repository's `scripts/cluster`.
    public static var script: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scripts/cluster").path
    }

    /// Nil when this machine can create network namespaces, else why not.
    public static var unavailableReason: String? {
        if getuid() != 0 { return "not root (network namespaces need root)" }
        if !FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") && !FileManager.default.isExecutableFile(atPath: "/usr/bin/ip")
            && !FileManager.default.isExecutableFile(atPath: "/sbin/ip") { return "no 'ip' (iproute2) for ip netns" }
        if !MPIRunner.available { return "mpirun is not installed" }
        return nil
    }

    /// Brings up `nodes` nodes. Throws `Unavailable` (skip) when the kernel refuses namespaces or veths here
    /// (a container without CAP_SYS_ADMIN/CAP_NET_ADMIN), any other failure as an error.
    public init(nodes: Int, slots: Int = 2) throws {
        self.name = "t\(getpid() % 100_000)"
        self.nodes = nodes
        let r = try MPIRunner.runProcess(Self.script, ["--name", name, "up", String(nodes), "--slots", String(slots)], timeout: 60)
        guard r.status == 0 else {
            if r.status == 77 || r.stderr.contains("Operation not permitted") || r.stderr.contains("Permission denied") {
                throw Unavailable(reason: "scripts/cluster up: \(r.stderr.trimmingCharacters(in: .whitespacesAndNewlines))")
            }
            throw ClusterError(message: "scripts/cluster up failed (\(r.status)): \(r.stderr)")
        }
    }

    public struct Unavailable: Error { public let reason: String }
    public struct ClusterError: Error, CustomStringConvertible { public let message: String; public var description: String { message } }

    /// `scripts/cluster mpirun -np ranks <executable> arguments…`, killed after `timeout` seconds.
    public func run(ranks: Int, _ executableName: String, _ arguments: [String], mpirunOptions: [String] = [],
                    environment: [String: String] = [:], timeout: TimeInterval = 120) throws -> MPIRunner.Result {
        try MPIRunner.runProcess(Self.script, ["--name", name, "mpirun", "-np", String(ranks)] + mpirunOptions
                                 + [MPIRunner.executable(executableName)] + arguments, environment: environment, timeout: timeout)
    }

    /// PIDs of the processes still running in node `i`'s namespace (1-based).
    public func processes(onNode i: Int) throws -> String {
        try MPIRunner.runProcess("ip", ["netns", "pids", hosts[i - 1]]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Deletes what `up` created; safe to call twice.
    public func down() {
        _ = try? MPIRunner.runProcess(Self.script, ["--name", name, "down"], timeout: 60)
    }
}
