import ArgumentParser
import DMLComm
import Foundation

extension ParsableCommand {
    /// This process's command line, parsed on every rank of a job; only rank 0 prints help or a parse error (and
    /// exits with its status), the others exit 0 quietly — a non-zero exit would make mpirun end the job at once,
    /// perhaps before rank 0 has printed, and rank 0's status is the job's. So a job prints one message.
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
            guard LauncherEnvironment.rank == 0 else { Foundation.exit(0) }
            FileHandle.standardError.write(Data("\(programName): error: \(failure.message)\n".utf8))
            Foundation.exit(failure.kind.exitStatus)
        } catch {
            if LauncherEnvironment.rank == 0 { exit(withError: error) }
            Foundation.exit(0)
        }
    }

    private static var programName: String { configuration.commandName ?? String(describing: Self.self) }
}
