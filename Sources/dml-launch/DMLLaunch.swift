import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `dml-launch`: a restart supervisor for long jobs. It runs the job (normally `mpirun … dml-train …`); when
/// the job fails it waits (exponential back-off), then runs it again with `--resume` added, so training
/// continues from the newest valid checkpoint. It gives up after `--max-restarts` failures and exits with the
/// job's last status, printing the job's last error lines.
@main
struct DMLLaunch: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dml-launch",
        abstract: "Run a training job, restarting it with --resume after a failure.",
        discussion: """
            Either give the whole command after --:
              dml-launch --max-restarts 3 -- mpirun -np 8 dml-train --checkpoint-dir ckpt
            or let dml-launch call mpirun itself:
              dml-launch --max-restarts 3 -np 8 -- dml-train --checkpoint-dir ckpt
            The job should write checkpoints (dml-train --checkpoint-dir), or a restart starts from scratch.
            Exit status: 0 when an attempt succeeds; the last attempt's status when restarts run out; the \
            job's status at once, without a restart, for a usage error (64) or a preemption (\(preemptedStatus)): \
            a restart cannot fix the first, and the scheduler owns the second.
            SIGTERM and SIGINT are passed on to the job (to mpirun as SIGUSR1, the signal it forwards to \
            the ranks), so dml-train checkpoints at the next step and exits with 75.
            """)

    /// dml-train's exit status after a clean stop on SIGTERM/SIGINT (a checkpoint was written).
    static let preemptedStatus: Int32 = 75

    @Option(name: .customLong("max-restarts"), help: "Restarts after the first attempt before giving up.")
    var maxRestarts: Int = 3

    @Option(help: "Seconds to wait before the first restart; doubles after each failure (at most 5 minutes).")
    var backoff: Double = 2

    @Option(name: [.customLong("np"), .customLong("np", withSingleDash: true)], help: "Run the command under `mpirun -np N` (see --mpirun).")
    var np: Int?

    @Option(help: "The launcher used with -np, with its own flags (e.g. \"mpirun --hostfile hosts\").")
    var mpirun: String = "mpirun"

    @Option(help: "Append one line per attempt (time, command, status, duration) to this file.")
    var log: String?

    @Flag(name: .customLong("no-resume"), help: "Restart with the same arguments, without adding --resume.")
    var noResume = false

    @Argument(parsing: .postTerminator, help: "The job's command.")
    var command: [String] = []

    func validate() throws {
        guard !command.isEmpty else { throw ValidationError("give the job's command after --, e.g. dml-launch -np 4 -- dml-train") }
        guard maxRestarts >= 0 else { throw ValidationError("--max-restarts must not be negative (got \(maxRestarts))") }
        guard backoff >= 0 && backoff.isFinite else { throw ValidationError("--backoff must be a non-negative number of seconds") }
        if let n = np, n < 1 { throw ValidationError("-np must be at least 1 (got \(n))") }
    }

    /// The command of attempt `attempt` (0-based): `--resume` is added from the first restart on.
    func arguments(attempt: Int) -> [String] {
        var job = command
        if attempt > 0 && !noResume && !job.contains("--resume") { job.append("--resume") }
        if let n = np { return mpirun.split(separator: " ").map(String.init) + ["-np", String(n)] + job }
        return job
    }

    func run() throws {
        let supervisor = Supervisor()
        let launcher = np != nil ? mpirun.split(separator: " ").first.map(String.init) ?? "" : command[0]
        if ["mpirun", "mpiexec", "orterun"].contains(URL(fileURLWithPath: launcher).lastPathComponent) {
            supervisor.translate = [SIGTERM: SIGUSR1, SIGINT: SIGUSR1]
        }
        var lastStatus: Int32 = 1
        var lastError: [String] = []
        var delay = backoff
        for attempt in 0...maxRestarts {
            let argv = arguments(attempt: attempt)
            say("attempt \(attempt + 1)/\(maxRestarts + 1): \(argv.joined(separator: " "))")
            let started = Date()
            let (status, tail) = try supervisor.run(argv)
            let seconds = Date().timeIntervalSince(started)
            lastStatus = status
            lastError = tail
            appendLog(attempt: attempt, argv: argv, status: status, seconds: seconds)
            if status == 0 {
                say("attempt \(attempt + 1) succeeded after \(String(format: "%.1f", seconds)) s")
                return
            }
            if supervisor.interrupted {
                say("stopped by a signal; not restarting")
                throw ExitCode(status)
            }
            if status == 64 || status == Self.preemptedStatus {
                say(status == 64 ? "the job rejected its arguments (status 64); a restart cannot fix that"
                                 : "the job was preempted and checkpointed (status \(status)); not restarting")
                throw ExitCode(status)
            }
            if attempt < maxRestarts {
                say("attempt \(attempt + 1) failed with status \(status) after \(String(format: "%.1f", seconds)) s; restarting with --resume in \(String(format: "%.1f", delay)) s")
                Thread.sleep(forTimeInterval: delay)
                delay = Swift.min(delay * 2, 300)
            }
        }
        say("giving up after \(maxRestarts + 1) attempts; last status \(lastStatus)")
        if !lastError.isEmpty {
            say("last error output:")
            for line in lastError { FileHandle.standardError.write(Data(("  " + line + "\n").utf8)) }
        }
        throw ExitCode(lastStatus)
    }

    func say(_ message: String) {
        FileHandle.standardError.write(Data("dml-launch: \(message)\n".utf8))
    }

    func appendLog(attempt: Int, argv: [String], status: Int32, seconds: Double) {
        guard let path = log else { return }
        let line = "\(ISO8601DateFormatter().string(from: Date())) attempt=\(attempt + 1) status=\(status) seconds=\(String(format: "%.2f", seconds)) command=\(argv.joined(separator: " "))\n"
        if let h = FileHandle(forWritingAtPath: path) {
            h.seekToEndOfFile()
            h.write(Data(line.utf8))
            try? h.close()
        } else {
            FileManager.default.createFile(atPath: path, contents: Data(line.utf8))
        }
    }
}
