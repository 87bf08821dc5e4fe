import Foundation
import ArgumentParser

/// The settings an executable accepts, read from its own argument declarations (ArgumentParser's tool-info
/// dump), so that a config file and the effective configuration know every flag without a list kept by hand:
/// a flag added to the command is a setting at once.
public struct CommandSettings: Sendable {
    public struct Setting: Sendable, Equatable {
        /// The long name, without `--` (`batch-size`).
        public let name: String
        /// An option takes a value; a flag does not.
        public let takesValue: Bool
        /// For a flag with an inversion (`--header` / `--no-header`): the other name.
        public let inverse: String?
        /// The command's default, as it prints it; nil when the default is computed (or there is none).
        public let defaultValue: String?
        public let help: String
        public let section: String
    }

    public let program: String
    /// In the order of `--help`; an inverted pair appears once, under its positive name.
    public let settings: [Setting]
    /// Whether the command declares `--config` (settings from a file).
    public let acceptsConfigFile: Bool

    /// Names that are never settings of a file: what only a command line can ask for.
    public static let commandLineOnly: Set<String> = ["help", "h", "version", "config", "experimental-dump-help"]

    public init(program: String, settings: [Setting], acceptsConfigFile: Bool = true) {
        self.program = program
        self.settings = settings
        self.acceptsConfigFile = acceptsConfigFile
    }

    /// The settings of `command`, read from its declarations.
    public init<C: ParsableCommand>(of command: C.Type) {
        var dump = ""
        do { _ = try C.parseAsRoot(["--experimental-dump-help"]) } catch { dump = C.fullMessage(for: error) }
        self.init(program: C.configuration.commandName ?? String(describing: C.self), dumpJSON: Data(dump.utf8))
    }

    init(program: String, dumpJSON: Data) {
        struct Dump: Decodable {
            struct Command: Decodable { let arguments: [Argument]? }
            struct Argument: Decodable {
                struct Name: Decodable { let kind: String; let name: String }
                let kind: String
                let names: [Name]?
                let defaultValue: String?
                let abstract: String?
                let sectionTitle: String?
            }
            let command: Command
        }
        let arguments = (try? JSONDecoder().decode(Dump.self, from: dumpJSON))?.command.arguments ?? []
        let longNames = Set(arguments.flatMap { $0.names ?? [] }.filter { $0.kind == "long" }.map(\.name))
        var settings: [Setting] = []
        for a in arguments where a.kind == "option" || a.kind == "flag" {
            guard let name = a.names?.first(where: { $0.kind == "long" })?.name, !Self.commandLineOnly.contains(name) else { continue }
            // `--no-x` is the inversion of `--x` when both exist: one setting, x = true/false.
            if name.hasPrefix("no-"), longNames.contains(String(name.dropFirst(3))) { continue }
            let inverse = a.kind == "flag" && longNames.contains("no-" + name) ? "no-" + name : nil
            var defaultValue = a.defaultValue
            if a.kind == "flag" { defaultValue = inverse.map { defaultValue == "--" + $0 ? "false" : defaultValue == "--" + name ? "true" : nil } ?? "false" }
            settings.append(Setting(name: name, takesValue: a.kind == "option", inverse: inverse, defaultValue: defaultValue,
                                    help: a.abstract ?? "", section: a.sectionTitle ?? ""))
        }
        self.init(program: program, settings: settings, acceptsConfigFile: longNames.contains("config"))
    }

    public func setting(named name: String) -> Setting? {
        settings.first { $0.name == name || $0.inverse == name }
    }

    /// The value each setting ends up with on `arguments` (later occurrences win, as the parser reads
    /// them): "true"/"false" for flags. Arguments that are not settings are skipped.
    public func given(in arguments: [String]) -> [String: String] {
        var values: [String: String] = [:]
        var i = 0
        while i < arguments.count {
            defer { i += 1 }
            let a = arguments[i]
            if a == "--" { break }
            guard a.hasPrefix("--") else { continue }
            let body = a.dropFirst(2)
            let name = String(body.prefix { $0 != "=" })
            guard let s = setting(named: name) else { continue }
            if s.takesValue {
                if let eq = body.firstIndex(of: "=") {
                    values[s.name] = String(body[body.index(after: eq)...])
                } else if i + 1 < arguments.count {
                    i += 1
                    values[s.name] = arguments[i]
                }
            } else {
                values[s.name] = name == s.inverse ? "false" : "true"
            }
        }
        return values
    }

    /// The nearest setting name to a misspelt one, if it is close (at most two edits).
    func suggestion(for name: String) -> String? {
        let best = settings.map { ($0.name, Self.editDistance(name, $0.name)) }.min { $0.1 < $1.1 }
        return best.flatMap { $0.1 <= 2 ? $0.0 : nil }
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        var row = Array(0...b.count)
        for i in 1...Swift.max(1, a.count) where !a.isEmpty {
            var previous = row[0]
            row[0] = i
            for j in stride(from: 1, through: b.count, by: 1) {
                let current = row[j]
                row[j] = Swift.min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
                previous = current
            }
        }
        return a.isEmpty ? b.count : row[b.count]
    }
}
