import XCTest
import ArgumentParser
import DMLStatus
@testable import DMLCommandLine

/// A command with each kind of setting: options with and without defaults, a plain flag, an inverted flag.
struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sample")
    struct Group: ParsableArguments {
        @Option(help: "Base learning rate.") var lr: Double = 0.2
        @Option(name: .customLong("batch-size"), help: "Rows per batch.") var batchSize: Int = 256
        @Option(help: "Widths.") var hidden = "256"
    }
    @OptionGroup(title: "Training") var group: Group
    @Option(help: "Data file.") var data: String?
    @Flag(help: "Standardise.") var standardize = false
    @Flag(inversion: .prefixedNo, help: "Header line.") var header: Bool?
    @Option(help: "A config file.") var config: String?
}

final class ConfigFileTests: XCTestCase {
    let settings = CommandSettings(of: Sample.self)

    func write(_ text: String, _ name: String) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("dml-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let path = dir.appendingPathComponent(name).path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func failure(_ body: () throws -> Any) -> ConfigFile.Failure? {
        do { _ = try body(); return nil } catch let f as ConfigFile.Failure { return f } catch { return nil }
    }

    func testTheSettingsAreReadOffTheCommandsDeclarations() {
        XCTAssertEqual(settings.program, "sample")
        XCTAssertEqual(settings.settings.map(\.name), ["lr", "batch-size", "hidden", "data", "standardize", "header"])
        XCTAssertEqual(settings.setting(named: "lr")?.defaultValue, "0.2")
        XCTAssertEqual(settings.setting(named: "lr")?.section, "Training")
        XCTAssertEqual(settings.setting(named: "data")?.defaultValue, nil)
        XCTAssertEqual(settings.setting(named: "standardize")?.defaultValue, "false")
        XCTAssertEqual(settings.setting(named: "no-header")?.name, "header", "the inversion is the same setting")
        XCTAssertNil(settings.setting(named: "config"), "--config is never a setting of a file")
    }

    func testTOMLAndJSONGiveTheSameArgumentsAndTheCommandLineWins() throws {
        let toml = try write("""
            # a comment
            lr = 0.05
            batch-size = 64
            hidden = [128, 64]
            standardize = true
            header = false
            data = "train set.csv"
            """, "run.toml")
        let json = try write(#"{"lr": 0.05, "batch-size": 64, "hidden": [128, 64], "standardize": true, "header": false, "data": "train set.csv"}"#, "run.json")
        for path in [toml, json] {
            let args = try ConfigFile.arguments(fromFile: path, settings: settings)
            XCTAssertEqual(Set(args), ["--lr=0.05", "--batch-size=64", "--hidden=128,64", "--standardize", "--no-header", "--data=train set.csv"])
            let merged = try ConfigFile.merging(["--config", path, "--lr", "0.5"], settings: settings)
            let parsed = try Sample.parse(merged)
            XCTAssertEqual(parsed.group.lr, 0.5, "the command line wins")
            XCTAssertEqual(parsed.group.batchSize, 64)
            XCTAssertEqual(parsed.group.hidden, "128,64")
            XCTAssertEqual(parsed.data, "train set.csv")
            XCTAssertTrue(parsed.standardize)
            XCTAssertEqual(parsed.header, false)
            XCTAssertEqual(try Sample.parse(ConfigFile.merging(["--config=\(path)", "--header"], settings: settings)).header, true)
        }
        // 1e3 where an integer is meant; `no-header = true` as the inversion's own name.
        let other = try write("batch-size = 1e3\nno-header = true\nstandardize = false\n", "other.toml")
        XCTAssertEqual(try ConfigFile.arguments(fromFile: other, settings: settings), ["--batch-size=1000", "--no-header"])
        XCTAssertEqual(try ConfigFile.merging(["--lr", "1"], settings: settings), ["--lr", "1"], "no --config: as it is")
    }

    func testABadFileIsOneMessageNamingTheFileTheLineAndTheKey() throws {
        func check(_ text: String, _ name: String, _ kind: FailureKind, _ expected: String, file: StaticString = #filePath, line: UInt = #line) throws {
            let path = try write(text, name)
            let f = failure { try ConfigFile.merging(["--config", path], settings: self.settings) }
            XCTAssertEqual(f?.kind, kind, file: file, line: line)
            XCTAssertEqual(f?.message, "--config \(path)" + expected, file: file, line: line)
        }
        try check("lr = 0.1\nbatch-szie = 3\n", "a.toml", .configuration, ", line 2: 'batch-szie' is not a setting of sample; did you mean 'batch-size'?")
        try check("lr = 0.1\nwibble = 3\n", "b.toml", .configuration, ", line 2: 'wibble' is not a setting of sample (the keys are sample's long flag names, as in --help)")
        try check("lr = \n", "c.toml", .configuration, ", line 1, column 6: not valid TOML: Error while parsing key-value pair: expected value, saw '\\n'")
        try check("standardize = \"yes\"\n", "d.toml", .configuration, ", line 1: 'standardize' is a flag: write standardize = true or standardize = false")
        try check("[training]\nlr = 1\n", "e.toml", .configuration, ", line 1: 'training' is a table; settings are top-level keys named as the flags (lr = 0.05, not [training] sections)")
        try check("config = \"x.toml\"\n", "f.toml", .configuration, ", line 1: a config file cannot name another (--config)")
        try check("{\"lr\": null}", "g.json", .configuration, ", line 1: 'lr' is null; leave the key out to keep the default")
        try check("[1, 2]", "h.json", .configuration, ": the file must hold one JSON object, {\"lr\": 0.05, …}")
        try check("hidden = [[1], [2]]\n", "i.toml", .configuration, ", line 1: 'hidden' takes a number, a text or a list of them")
        let truncated = try write("{\"lr\": 0.1,", "j.json")
        XCTAssertTrue(failure { try ConfigFile.merging(["--config", truncated], settings: self.settings) }?
            .message.contains("not valid JSON") == true)
        let missing = failure { try ConfigFile.merging(["--config", "/no/such/run.toml"], settings: self.settings) }
        XCTAssertEqual(missing?.kind, .noInput)
        XCTAssertEqual(missing?.message, "--config /no/such/run.toml: no such file")
    }

    func testTheEffectiveConfigurationRepeatsTheRun() throws {
        let arguments = ["--lr", "0.05", "--hidden=64,32", "--data", "dir/a \"quoted\"\\path é\u{7F}.csv", "--standardize", "--no-header", "--lr", "0.07"]
        let text = ConfigFile.effective(arguments: arguments, settings: settings, header: ["sample 1.0 on 2 ranks"])
        XCTAssertTrue(text.hasPrefix("# sample 1.0 on 2 ranks\n"), text)
        XCTAssertTrue(text.contains("# Base learning rate.\nlr = 0.07\n"), "the last value, under its help:\n\(text)")
        XCTAssertTrue(text.contains("batch-size = 256\n"), "defaults are written too:\n\(text)")
        XCTAssertTrue(text.contains("# ---- Training\n"), text)
        let path = try write(text, "effective.toml")
        let again = try Sample.parse(ConfigFile.merging(["--config", path], settings: settings))
        let original = try Sample.parse(arguments)
        XCTAssertEqual(again.group.lr, original.group.lr)
        XCTAssertEqual(again.group.batchSize, original.group.batchSize)
        XCTAssertEqual(again.group.hidden, original.group.hidden)
        XCTAssertEqual(again.data, original.data)
        XCTAssertEqual(again.standardize, original.standardize)
        XCTAssertEqual(again.header, original.header)
        // A setting with neither a value nor a default is a comment, so it stays unset.
        let bare = ConfigFile.effective(arguments: [], settings: settings, header: [])
        XCTAssertTrue(bare.contains("# data = (not set)\n"), bare)
        XCTAssertTrue(bare.contains("# header = (not set)\n"), bare)
        XCTAssertTrue(bare.contains("standardize = false\n"), bare)
    }

    func testLiteralsAreValidTOML() {
        XCTAssertEqual(ConfigFile.tomlLiteral("12", flag: false), "12")
        XCTAssertEqual(ConfigFile.tomlLiteral("-0.5e-3", flag: false), "-0.5e-3")
        XCTAssertEqual(ConfigFile.tomlLiteral("007", flag: false), "\"007\"")
        XCTAssertEqual(ConfigFile.tomlLiteral(".5", flag: false), "\".5\"")
        XCTAssertEqual(ConfigFile.tomlLiteral("256,128", flag: false), "\"256,128\"")
        XCTAssertEqual(ConfigFile.tomlLiteral("a\tb\u{1}", flag: false), "\"a\\tb\\u0001\"")
        XCTAssertEqual(ConfigFile.tomlLiteral("runs/a\u{7F}", flag: false), "\"runs/a\\u007F\"")
    }
}
