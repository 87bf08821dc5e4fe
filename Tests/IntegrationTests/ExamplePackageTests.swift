import XCTest
import DMLTestSupport

/// DML as a library: `Examples/CustomModel`, a package of its own that depends on DML by version, defines a model
/// DML does not ship and trains it with DML's trainer, built against a clone of this repository and run under
/// mpirun.
///
/// SwiftPM refuses a dependency resolved by version whose targets carry unsafe flags ("contains unsafe build
/// flags"), which is why the manifest has none: against a commit whose manifest had them (set
/// `DML_EXAMPLE_COMMIT` to one, e.g. b4b2398) this test fails at the build, with that message in the failure.
final class ExamplePackageTests: XCTestCase {
    /// The repository root (this file is Tests/IntegrationTests/ExamplePackageTests.swift).
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    override func setUpWithError() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed (scripts/setup installs it)")
    }

    /// Clones the committed HEAD (or `DML_EXAMPLE_COMMIT`) into a temporary folder named `dml` (the package
    /// identity the example names), tags it 99.0.0, points a copy of the example at it with
    /// `.package(url: "file://…/dml", from: "99.0.0")`, builds it (debug: DML's libraries and the example took
    /// 14–20 s here, against 37 s in release), and runs it under `mpirun -np 2`: the mean squared
    /// error must fall by two orders of magnitude, the logged loss must fall, and both ranks must report the same
    /// parameter checksum (the program's own `verifyReplicas` call also throws otherwise).
    func testExampleDependsOnDMLByVersionAndTrainsUnderMPI() throws {
        let work = MPIRunner.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: work) }
        let clone = work + "/dml", example = work + "/CustomModel"
        let commit = ProcessInfo.processInfo.environment["DML_EXAMPLE_COMMIT"] ?? "HEAD"
        let sha = try git(["-C", root, "rev-parse", "--verify", commit + "^{commit}"]).trimmingCharacters(in: .whitespacesAndNewlines)
        _ = try git(["clone", "--quiet", "--no-checkout", root, clone])
        _ = try git(["-C", clone, "checkout", "--quiet", sha])
        _ = try git(["-C", clone, "tag", "99.0.0"])

        // A copy of the example (its sources and manifest, not a build folder), depending on the clone by version.
        try FileManager.default.createDirectory(atPath: example, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: root + "/Examples/CustomModel/Sources", toPath: example + "/Sources")
        let manifest = try String(contentsOfFile: root + "/Examples/CustomModel/Package.swift", encoding: .utf8)
        let dependency = #/\.package\(url: "[^"]*", from: "[^"]*"\)/#
        XCTAssertEqual(manifest.matches(of: dependency).count, 1, "the example names DML by URL and version, once")
        let rewritten = manifest.replacing(dependency, with: ".package(url: \"file://\(clone)\", from: \"99.0.0\")")
        try rewritten.write(toFile: example + "/Package.swift", atomically: true, encoding: .utf8)

        let started = Date()
        let build = try MPIRunner.runProcess("swift", ["build", "--package-path", example], timeout: 900)
        let seconds = Date().timeIntervalSince(started)
        print("example package: resolved and built in \(String(format: "%.1f", seconds)) s")
        guard build.status == 0 else {
            let unsafe = (build.stdout + build.stderr).contains("unsafe build flags")
            return XCTFail("the example did not build against \(commit) (\(sha))\(unsafe ? ": SwiftPM refuses DML's unsafe build flags" : ""):\n"
                           + build.stdout.suffix(3000) + build.stderr.suffix(3000))
        }

        let binary = example + "/.build/debug/CustomModel"
        let run = try MPIRunner.runProcess("mpirun", ["--oversubscribe", "-np", "2", binary], timeout: 120)
        XCTAssertEqual(run.status, 0, run.stdout + run.stderr)
        let lines = run.stdout.split(separator: "\n").map(String.init)
        func value(after prefix: String) -> Double? {
            lines.first { $0.hasPrefix(prefix) }.flatMap { Double($0.dropFirst(prefix.count)) }
        }
        let initial = try XCTUnwrap(value(after: "initial mse "), run.stdout)
        let final = try XCTUnwrap(value(after: "final mse "), run.stdout)
        XCTAssertLessThan(final, initial / 100, "the mean squared error falls: \(initial) → \(final)")
        let losses = lines.filter { $0.hasPrefix("step ") }.compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }
        XCTAssertEqual(losses.count, 6, run.stdout)
        XCTAssertLessThan(losses.last ?? .infinity, losses.first ?? 0, "the logged loss falls: \(losses)")
        let checksums = lines.filter { $0.contains("parameters checksum") }.map { $0.split(separator: " ").last.map(String.init) ?? "" }
        XCTAssertEqual(checksums.count, 2, run.stdout)
        XCTAssertEqual(Set(checksums).count, 1, "both ranks hold the same parameters: \(checksums)")
    }

    private func git(_ arguments: [String]) throws -> String {
        let r = try MPIRunner.runProcess("git", arguments, timeout: 120)
        guard r.status == 0 else {
            XCTFail("git \(arguments.joined(separator: " ")): \(r.stderr)")
            throw CocoaError(.fileReadUnknown)
        }
        return r.stdout
    }
}
