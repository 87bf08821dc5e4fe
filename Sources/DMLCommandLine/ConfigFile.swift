import Foundation
import DMLStatus
internal import TOMLKit

/// `--config FILE`: settings read from a TOML or JSON file whose keys are the long flag names, without
/// `--` (`lr = 0.05`, `hidden = [256, 128]`, `standardize = true`, `header = false` for `--no-header`).
/// The file's settings come first and the command line after them, so the command line wins (the parser
/// keeps an option's last value). The effective configuration of a run (`effective`) is such a file, so a
/// run is repeated with `--config` and nothing else.
///
/// A file that cannot be read is `.noInput` (66); a file that is not valid TOML/JSON, a key that is not a
/// setting, or a value of the wrong kind is `.configuration` (78), naming the file, the line and the key.
public enum ConfigFile {
    public struct Failure: Error, CustomStringConvertible {
        public let kind: FailureKind
        public let message: String
        public var description: String { message }
    }

    /// A value of the file.
    enum Value {
        case text(String), integer(Int), real(Double), boolean(Bool), list([Value]), table
    }

    /// `commandLine` with the settings of its `--config` file (the last `--config`, if several) put in front.
    /// Without `--config`, `commandLine` as it is.
    public static func merging(_ commandLine: [String], settings: CommandSettings) throws -> [String] {
        guard let path = configPath(in: commandLine) else { return commandLine }
        return try arguments(fromFile: path, settings: settings) + commandLine
    }

    /// The `--config` path given on `arguments`, if any.
    public static func configPath(in arguments: [String]) -> String? {
        var path: String?
        var i = 0
        while i < arguments.count, arguments[i] != "--" {
            if arguments[i] == "--config", i + 1 < arguments.count { path = arguments[i + 1]; i += 1 }
            else if arguments[i].hasPrefix("--config=") { path = String(arguments[i].dropFirst("--config=".count)) }
            i += 1
        }
        return path
    }

    /// The file's settings as arguments (`--name=value`, `--flag`, `--no-flag`), in the file's order.
    public static func arguments(fromFile path: String, settings: CommandSettings) throws -> [String] {
        let text = try read(path)
        let entries = try parse(text, path: path)
        var out: [String] = []
        for (key, value) in entries {
            func fail(_ why: String) -> Failure {
                Failure(kind: .configuration, message: "--config \(path)\(line(of: key, in: text).map { ", line \($0)" } ?? ""): \(why)")
            }
            if case .table = value {
                throw fail("'\(key)' is a table; settings are top-level keys named as the flags (lr = 0.05, not [\(key)] sections)")
            }
            if key == "config" { throw fail("a config file cannot name another (--config)") }
            guard let setting = settings.setting(named: key) else {
                let hint = settings.suggestion(for: key).map { "; did you mean '\($0)'?" } ?? " (the keys are \(settings.program)'s long flag names, as in --help)"
                throw fail("'\(key)' is not a setting of \(settings.program)\(hint)")
            }
            if setting.takesValue {
                guard let text = scalarText(value) else {
                    throw fail("'\(key)' takes a number, a text or a list of them")
                }
                out.append("--\(key)=\(text)")
            } else {
                guard case .boolean(let on) = value else { throw fail("'\(key)' is a flag: write \(key) = true or \(key) = false") }
                let inverted = key == setting.inverse
                switch (on != inverted, setting.inverse) {
                case (true, _): out.append("--" + setting.name)
                case (false, let inverse?): out.append("--" + inverse)
                case (false, nil): break  // a flag that is off is the default
                }
            }
        }
        return out
    }

    /// The effective configuration of a run as a TOML file: every setting with the value `arguments` gives
    /// it (later occurrences winning) or the command's default, each under its help text; settings with
    /// neither are written as comments. `header` lines become comments at the top.
    public static func effective(arguments: [String], settings: CommandSettings, header: [String]) -> String {
        let given = settings.given(in: arguments)
        var lines = header.map { "# " + $0 }
        var section: String?
        for s in settings.settings {
            if s.section != section {
                section = s.section
                lines += ["", "# " + String(repeating: "-", count: 4) + " \(s.section.isEmpty ? "Options" : s.section)"]
            }
            lines.append("# " + s.help.replacingOccurrences(of: "\n", with: " "))
            if let value = given[s.name] ?? s.defaultValue {
                lines.append("\(s.name) = \(tomlLiteral(value, flag: !s.takesValue))")
            } else {
                lines.append("# \(s.name) = (not set)")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    // MARK: - Reading

    static func read(_ path: String) throws -> String {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw Failure(kind: .noInput, message: "--config \(path): no such file")
        }
        guard !isDirectory.boolValue else { throw Failure(kind: .noInput, message: "--config \(path) is a directory, not a config file") }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw Failure(kind: .noInput, message: "--config \(path): cannot read it (permissions?)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw Failure(kind: .configuration, message: "--config \(path): not UTF-8 text")
        }
        return text
    }

    /// The top-level entries of a TOML (`.toml`) or JSON (`.json`) file; another extension is read as JSON
    /// when its first character is `{`, as TOML otherwise.
    static func parse(_ text: String, path: String) throws -> [(String, Value)] {
        let ext = URL(fileURLWithPath: path).pathExtension.lowercased()
        let json = ext == "json" || (ext != "toml" && text.drop { $0.isWhitespace }.first == "{")
        return json ? try parseJSON(text, path: path) : try parseTOML(text, path: path)
    }

    static func parseTOML(_ text: String, path: String) throws -> [(String, Value)] {
        let table: TOMLTable
        do { table = try TOMLTable(string: text) } catch let e as TOMLParseError {
            throw Failure(kind: .configuration, message: "--config \(path), line \(e.source.begin.line), column \(e.source.begin.column): not valid TOML: \(e.description)")
        }
        func value(_ v: TOMLValueConvertible) -> Value {
            if let b = v.bool { return .boolean(b) }
            if let i = v.int { return .integer(i) }
            if let d = v.double { return .real(d) }
            if let s = v.string { return .text(s) }
            if let a = v.array { return .list(a.map(value)) }
            if v.table != nil { return .table }
            return .text(v.debugDescription)  // dates and times: as written
        }
        return table.map { ($0.0, value($0.1)) }.sorted { (line(of: $0.0, in: text) ?? 0) < (line(of: $1.0, in: text) ?? 0) }
    }

    static func parseJSON(_ text: String, path: String) throws -> [(String, Value)] {
        let object: [String: JSONValue]
        do { object = try JSONDecoder().decode([String: JSONValue].self, from: Data(text.utf8)) } catch DecodingError.typeMismatch {
            throw Failure(kind: .configuration, message: "--config \(path): the file must hold one JSON object, {\"lr\": 0.05, …}")
        } catch DecodingError.valueNotFound(_, let context) {
            let key = context.codingPath.first?.stringValue ?? "?"
            throw Failure(kind: .configuration, message: "--config \(path)\(line(of: key, in: text).map { ", line \($0)" } ?? ""): '\(key)' is null; leave the key out to keep the default")
        } catch {
            let detail = (error as? DecodingError).flatMap { e -> String? in
                if case .dataCorrupted(let c) = e { return c.underlyingError.map { "\($0)" } ?? c.debugDescription }
                return nil
            } ?? "\(error)"
            throw Failure(kind: .configuration, message: "--config \(path): not valid JSON: \(detail)")
        }
        return object.map { ($0.key, $0.value.value) }
            .sorted { (line(of: $0.0, in: text) ?? 0, $0.0) < (line(of: $1.0, in: text) ?? 0, $1.0) }
    }

    /// A JSON value, read strictly: true/false only as booleans, whole numbers as integers.
    struct JSONValue: Decodable {
        let value: Value
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let b = try? c.decode(Bool.self) { value = .boolean(b) }
            else if let i = try? c.decode(Int.self) { value = .integer(i) }
            else if let d = try? c.decode(Double.self) { value = .real(d) }
            else if let s = try? c.decode(String.self) { value = .text(s) }
            else if let a = try? c.decode([JSONValue].self) { value = .list(a.map(\.value)) }
            else if (try? c.decode([String: JSONValue].self)) != nil { value = .table }
            else {
                // null (or what JSON does not have): the decoder names the key.
                _ = try c.decode(String.self)
                value = .table
            }
        }
    }

    /// The text a value stands for on the command line; lists are comma-joined. nil for a table or a flag's
    /// boolean in a list.
    static func scalarText(_ v: Value) -> String? {
        switch v {
        case .text(let s): return s
        case .integer(let i): return String(i)
        case .real(let d):
            // 1e6 or 3.0 where an integer is meant: written as an integer.
            if d.rounded() == d, abs(d) < 9.0e15 { return String(Int(d)) }
            return String(d)
        case .boolean(let b): return String(b)
        case .list(let items):
            let parts = items.compactMap { item -> String? in
                if case .list = item { return nil }
                return scalarText(item)
            }
            return parts.count == items.count ? parts.joined(separator: ",") : nil
        case .table: return nil
        }
    }

    /// The 1-based line where `key` is set in a TOML or JSON text, if it can be found.
    static func line(of key: String, in text: String) -> Int? {
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let l = raw.drop { $0 == " " || $0 == "\t" }
            for form in [key, "'\(key)'", "[\(key)]"] where l.hasPrefix(form) {
                let rest = l.dropFirst(form.count).drop { $0 == " " || $0 == "\t" }
                if form.hasPrefix("[") || rest.first == "=" { return n + 1 }
            }
            // "key" = (TOML) or "key": (JSON), anywhere on the line.
            var search = raw[...]
            while let r = search.range(of: "\"\(key)\"") {
                let rest = search[r.upperBound...].drop { $0 == " " || $0 == "\t" }
                if rest.first == "=" || rest.first == ":" { return n + 1 }
                search = search[r.upperBound...]
            }
        }
        return nil
    }

    // MARK: - Writing

    /// `value` as a TOML literal: numbers and booleans bare, other text as a basic string.
    static func tomlLiteral(_ value: String, flag: Bool) -> String {
        if flag || value == "true" || value == "false" { return value }
        // TOML's integers and floats (no leading zeros, digits on both sides of a point).
        if value.wholeMatch(of: /-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?/) != nil { return value }
        // A JSON string is a TOML basic string, once "/" is left alone and DEL escaped (TOML forbids it raw).
        let encoder = JSONEncoder()
        encoder.outputFormatting = .withoutEscapingSlashes
        let json = (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "\"\""
        return json.replacingOccurrences(of: "\u{7F}", with: "\\u007F")
    }
}
