#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import DMLStatus
import Foundation

/// What `dml-launch` was asked to run, and how (its flags, parsed).
public struct LaunchOptions: Sendable {
    /// The job's command (after `--`).
    public var command: [String]
    /// Run the command under `mpirun … -np N` (`mpirun` below).
    public var np: Int?
    /// The launcher used with `np`, with its own flags (e.g. `["mpirun", "--hostfile", "hosts"]`).
    public var mpirun: [String] = ["mpirun"]
    /// Restarts after the first attempt before giving up.
    public var maxRestarts = 3
    /// Seconds before the first restart; doubles after each (at most `maxBackoff`).
    public var backoff = 2.0
    public var maxBackoff = 300.0
    /// Append one line per attempt (and one for a stop during a back-off) to this file.
    public var logPath: String?
    /// Restart with the same arguments, without adding `--resume`.
    public var noResume = false

    public init(command: [String]) { self.command = command }

    /// The command of attempt `attempt` (0-based): `--resume` is added from the first restart on.
    public func arguments(attempt: Int) -> [String] {
        var job = command
        if attempt > 0 && !noResume && !job.contains("--resume") { job.append("--resume") }
        if let n = np { return mpirun + ["-np", String(n)] + job }
        return job
    }

    /// The program that starts the job: the `--mpirun` launcher with `-np`, else the command's first word.
    public var launcherProgram: String { np != nil ? mpirun.first ?? "" : command.first ?? "" }

    /// Names of OpenMPI's launchers (matched on the last path component, so `scripts/mpirun` counts).
    public static let openMPILaunchers: Set<String> = ["mpirun", "mpiexec", "orterun"]

    /// True when the job is started by OpenMPI's launcher.
    public var launchesWithMPI: Bool {
        Self.openMPILaunchers.contains(URL(fileURLWithPath: launcherProgram).lastPathComponent)
    }

    /// What the job's environment needs beyond ours. As root (`isRoot`) under OpenMPI's launcher: OpenMPI
    /// refuses to run as root unless both `OMPI_ALLOW_RUN_AS_ROOT=1` and `OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1`
    /// are set (the environment form of `--allow-run-as-root`, which other MPIs' launchers would reject as
    /// a flag but ignore as variables). Values already in `current` are kept.
    public func environment(isRoot: Bool, current: [String: String]) -> [String: String] {
        guard isRoot && launchesWithMPI else { return [:] }
        var added: [String: String] = [:]
        for key in ["OMPI_ALLOW_RUN_AS_ROOT", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] where current[key] == nil { added[key] = "1" }
        return added
    }
}

/// Runs a job, restarting it with `--resume` after the failures a restart can fix (`RestartPolicy`), with
/// exponential back-off, until it succeeds, is stopped, fails in a way no restart fixes, or has used
/// `--max-restarts`. Prints through `say` (one line each, without the `dml-launch: ` prefix).
///
/// Exit status (`run()`'s result): 0 when an attempt succeeds; the attempt's status when the policy stops
/// (including after a stop signal that reached the job: normally 75, dml-train's checkpointed stop);
/// `FailureKind.preempted` (75) when a stop signal arrives during a back-off wait (no attempt is running;
/// the newest checkpoint is the last attempt's); the last attempt's status when the restarts run out.
public final class Launcher {
    public let options: LaunchOptions
    public let policy = RestartPolicy()
    private let supervisor: Supervisor
    private let say: (String) -> Void

    /// Takes over SIGTERM and SIGINT for this process (see `Supervisor`): create one per process.
    public init(options: LaunchOptions, say: @escaping (String) -> Void) {
        self.options = options
        self.say = say
        // mpirun ends the job a second after SIGTERM/SIGINT without passing them on, but forwards SIGUSR1.
        supervisor = Supervisor(translate: options.launchesWithMPI ? [SIGTERM: SIGUSR1, SIGINT: SIGUSR1] : [:])
    }

    public func run() throws -> Int32 {
        let environment = options.environment(isRoot: geteuid() == 0, current: ProcessInfo.processInfo.environment)
        if !environment.isEmpty {
            say("running as root: \(environment.keys.sorted().map { "\($0)=1" }.joined(separator: " ")) lets OpenMPI's "
                + "\(URL(fileURLWithPath: options.launcherProgram).lastPathComponent) run the job")
        }
        var last: Supervisor.Attempt?
        var delay = options.backoff
        let attempts = options.maxRestarts + 1
        for attempt in 0..<attempts {
            let argv = options.arguments(attempt: attempt)
            say("attempt \(attempt + 1)/\(attempts): \(argv.joined(separator: " "))")
            guard let result = try supervisor.run(argv, environment: environment) else {
                // The stop came after the back-off had ended, before this attempt began.
                return stopped(afterAttempt: attempt, last: last)
            }
            last = result
            appendLog("attempt=\(attempt + 1) status=\(result.status) seconds=\(String(format: "%.2f", result.seconds)) "
                      + "command=\(argv.joined(separator: " "))")
            let seconds = String(format: "%.1f", result.seconds)
            switch policy.decide(status: result.status, stopRequested: supervisor.stopSignal != nil) {
            case .done:
                say("attempt \(attempt + 1) succeeded after \(seconds) s")
                return 0
            case .stop(let reason):
                if let sig = supervisor.stopSignal {
                    say("stopped by \(RestartPolicy.signalName(sig)) (passed on to the job); attempt \(attempt + 1) ended with "
                        + "status \(result.status); not restarting")
                } else {
                    say("attempt \(attempt + 1) failed with status \(result.status) after \(seconds) s: \(reason); not restarting")
                }
                return result.status
            case .restart(let reason):
                guard attempt + 1 < attempts else {
                    say("attempt \(attempt + 1) failed with status \(result.status) after \(seconds) s: \(reason)")
                    break
                }
                say("attempt \(attempt + 1) failed with status \(result.status) after \(seconds) s: \(reason); "
                    + "restarting with --resume in \(String(format: "%.1f", delay)) s")
                if supervisor.wait(seconds: delay) != nil { return stopped(afterAttempt: attempt + 1, last: result) }
                delay = Swift.min(delay * 2, options.maxBackoff)
            }
        }
        let status = last?.status ?? 1
        say("giving up after \(attempts) attempt\(attempts == 1 ? "" : "s"); last status \(status)")
        if let tail = last?.errorTail, !tail.isEmpty {
            say("last error output:")
            for line in tail { say("  " + line) }
        }
        return status
    }

    /// A stop signal with no attempt running: log it, start nothing more, return 75.
    private func stopped(afterAttempt attempts: Int, last: Supervisor.Attempt?) -> Int32 {
        let status = FailureKind.preempted.exitStatus
        let name = RestartPolicy.signalName(supervisor.stopSignal ?? SIGTERM)
        say("stopped by \(name) during the back-off after attempt \(attempts)"
            + (last.map { " (status \($0.status))" } ?? "") + "; not restarting (exit status \(status))")
        appendLog("stopped signal=\(name) during=back-off after_attempt=\(attempts) status=\(status)")
        return status
    }

    /// Appends `fields` with a timestamp to `--log`, if given. A log that cannot be written is reported
    /// once per line and does not stop the job.
    private func appendLog(_ fields: String) {
        guard let path = options.logPath else { return }
        let line = Data("\(ISO8601DateFormatter().string(from: Date())) \(fields)\n".utf8)
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { say("cannot write --log \(path): \(String(cString: strerror(errno)))"); return }
        defer { close(fd) }
        let ok = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) == $0.count }
        if !ok { say("cannot write --log \(path): \(String(cString: strerror(errno)))") }
    }
}
