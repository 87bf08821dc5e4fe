import ArgumentParser
import DMLStatus
import DMLLaunch
import Foundation

/// `dml-launch`: a restart supervisor for long jobs. It parses its flags and prints; `DMLLaunch.Launcher`
/// runs the attempts, `RestartPolicy` decides which failures are restarted.
@main
struct LaunchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dml-launch",
        abstract: "Run a training job, restarting it with --resume after a failure that a restart can fix.",
        discussion: """
            Either give the whole command after --:
              dml-launch --max-restarts 3 -- mpirun -np 8 dml-train --checkpoint-dir ckpt
            or let dml-launch call mpirun itself:
              dml-launch --max-restarts 3 -np 8 -- dml-train --checkpoint-dir ckpt
            The job should write checkpoints (dml-train --checkpoint-dir), or a restart starts from scratch.

            Root: when dml-launch runs as root and the job is started by OpenMPI's launcher (the --mpirun \
            program with -np, else the command's first word, named mpirun, mpiexec or orterun), the job's \
            environment gets OMPI_ALLOW_RUN_AS_ROOT=1 and OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 (unless already \
            set), which OpenMPI requires to run as root. More ranks than cores also needs \
            --mpirun "mpirun --oversubscribe".

            Restarted (after the back-off, with --resume, at most --max-restarts times): status 69 (a rank \
            stopped answering, or MPI failed); 75 (the job was preempted and checkpointed) when dml-launch \
            itself was not signalled; 128+N, a process killed by signal N, unless N is a crash the program \
            raises itself (SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGSEGV, SIGSYS: mpirun also reports \
            132/134 when it cannot start the executable). Not restarted: everything else, e.g. 64 usage, \
            65 bad data, 66 missing input, 70 divergence or failed check, 73 cannot create an output, 74 \
            I/O error, 78 configuration conflict (dml-train's exit statuses), 126/127 command not \
            executable/not found, 1 (mpirun's own errors).

            Signals: SIGTERM and SIGINT are passed on to a running job (to mpirun as SIGUSR1, the signal \
            it forwards to the ranks), so dml-train checkpoints at the next step and exits with 75; \
            dml-launch then exits with the job's status and starts no other attempt. During a back-off \
            wait they end dml-launch at once with status 75, without a restart (logged in --log).

            Exit status: 0 when an attempt succeeds; the attempt's status when it is not restarted or \
            restarts run out; 75 when stopped during a back-off; 64 for dml-launch's own usage errors.
            """,
        version: DMLVersion.string)

    @Option(name: .customLong("max-restarts"), help: "Restarts after the first attempt before giving up.")
    var maxRestarts: Int = 3

    @Option(help: "Seconds to wait before the first restart; doubles after each failure (at most 5 minutes).")
    var backoff: Double = 2

    @Option(name: [.customLong("np"), .customLong("np", withSingleDash: true)], help: "Run the command under `mpirun -np N` (see --mpirun).")
    var np: Int?

    @Option(help: "The launcher used with -np, with its own flags separated by spaces (e.g. \"mpirun --hostfile hosts\").")
    var mpirun: String = "mpirun"

    @Option(help: "Append one line per attempt (time, attempt, status, seconds, command), and one for a stop during a back-off, to this file.")
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
        guard !mpirun.split(separator: " ").isEmpty else { throw ValidationError("--mpirun must name a program") }
    }

    func run() throws {
        var options = LaunchOptions(command: command)
        options.np = np
        options.mpirun = mpirun.split(separator: " ").map(String.init)
        options.maxRestarts = maxRestarts
        options.backoff = backoff
        options.logPath = log
        options.noResume = noResume
        let launcher = Launcher(options: options) { FileHandle.standardError.write(Data("dml-launch: \($0)\n".utf8)) }
        let status: Int32
        do { status = try launcher.run() } catch {
            FileHandle.standardError.write(Data("dml-launch: error: \(error)\n".utf8))
            throw ExitCode.failure
        }
        if status != 0 { throw ExitCode(status) }
    }
}
