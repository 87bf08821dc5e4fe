import ArgumentParser
import DMLComm
import Foundation

extension ParsableCommand {
    /// This process's command line, parsed on every rank of a job; rank 0 prints help or a parse error (and
    /// exits with its status). Another rank that fails (`otherRankFailed`) prints its own message only where rank 0
    /// cannot have failed alike, and always exits non-zero, so the launcher ends the job instead of rank 0 waiting
    /// for it in the MPI start-up. So a job prints one message.
    public static func parsedOnEveryRank() -> Self { parsedOnEveryRankWithArguments().command }

    /// The same, with the arguments as parsed: a negative number after an option joined to it (`--lr -1` is
    /// `--lr=-1`, so the message is the real reason), and, for a command that declares `--config`, the config
    /// file's settings in front of the command line (`ConfigFile`; its failures are one message from rank 0
    /// with their own status).
    public static func parsedOnEveryRankWithArguments() -> (command: Self, arguments: [String]) {
        var arguments = CommandLineValues.joiningNegativeNumbers(Array(CommandLine.arguments.dropFirst()))
        do {
            let settings = CommandSettings(of: Self.self)
            if settings.acceptsConfigFile { arguments = try ConfigFile.merging(arguments, settings: settings) }
            return (try parse(arguments), arguments)
        } catch let failure as ConfigFile.Failure {
            guard LauncherEnvironment.rank == 0 else { otherRankFailed(failure.message, status: failure.kind.exitStatus) }
            FileHandle.standardError.write(Data("\(programName): error: \(failure.message)\n".utf8))
            Foundation.exit(failure.kind.exitStatus)
        } catch {
            if LauncherEnvironment.rank == 0 { exit(withError: error) }
            let code = exitCode(for: error)
            if code == .success { Foundation.exit(0) }  // --help and the like: rank 0 prints it
            otherRankFailed(message(for: error), status: code.rawValue)
        }
    }

    /// A rank other than 0 whose command line or config file failed. Started with rank 0's arguments, it waits:
    /// where rank 0 failed alike (the usual case), rank 0 prints the one message and exits, and the launcher ends
    /// this process within the wait; only a failure of this rank's own (a config file missing on its node) is
    /// still here after it, and is printed naming the rank. A rank of another MPMD app context (`mpirun … : …`)
    /// has arguments of its own and prints at once. Either way the exit is non-zero: an exit 0 left rank 0
    /// waiting for it in the MPI start-up until the start-up deadline (5 × --collective-timeout), then naming no
    /// cause.
    private static func otherRankFailed(_ message: String, status: Int32) -> Never {
        // Woken early: the launcher's SIGTERM (caught by the stop-signal handlers), rank 0 having failed alike.
        if LauncherEnvironment.sharesRankZerosArguments, sleep(3) > 0 { Foundation.exit(status == 0 ? 64 : status) }
        FileHandle.standardError.write(Data("\(programName): error on rank \(LauncherEnvironment.rank): \(message)\n".utf8))
        Foundation.exit(status == 0 ? 64 : status)
    }

    private static var programName: String { configuration.commandName ?? String(describing: Self.self) }
}
