import XCTest
import Foundation
import DMLStatus
import DMLTestSupport

/// A rank with a spare core parses its LIBSVM text with its kernel threads (`--threads`): under a real
/// `mpirun` the same model bits and the same single error message as the one-thread parse.
final class ThreadedParseIntegrationTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed (scripts/setup installs it)")
        try XCTSkipUnless(ProcessInfo.processInfo.activeProcessorCount >= 2, "one core: no rank has a core to spare")
        dir = MPIRunner.temporaryDirectory()
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// More than two of the threaded parse's 8 MiB chunks: 170,000 rows of 12 non-zeros (about 20 MB).
    func data() -> String { writeTeacherLIBSVM("\(dir)/train.svm", rows: 170_000, nonZeros: 12, columns: 3000, seed: 21) }

    func testTwoThreadsTrainTheOneThreadModelAndReportTheSameError() throws {
        let train = data()
        let size = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: train)[.size] as? Int)
        XCTAssertGreaterThan(size, 16 << 20)
        let common = ["--data", train, "--model", "logistic", "--sparse", "on", "--hash-bits", "12", "--epochs", "1",
                      "--batch-size", "2000", "--optimizer", "adagrad", "--shuffle", "off"]
        // Unbound at np 1: the rank has every core, so 2 threads or more; bound to one core: 1 thread.
        let free = try MPIRunner.run(ranks: 1, "dml-train", common + ["--output", "\(dir)/free.safetensors"], mpirunOptions: ["--bind-to", "none"])
        XCTAssertEqual(free.status, 0, free.stderr)
        XCTAssertFalse(free.stdout.contains("parsed its text with 1 thread"), free.stdout)
        XCTAssertTrue(free.stdout.contains("parsed its text with "), free.stdout)
        let bound = try MPIRunner.run(ranks: 1, "dml-train", common + ["--output", "\(dir)/bound.safetensors"],
                                      mpirunOptions: ["--bind-to", "core"])
        XCTAssertEqual(bound.status, 0, bound.stderr)
        XCTAssertTrue(bound.stdout.contains("rank 0 parsed its text with 1 thread"), bound.stdout)
        XCTAssertEqual(FileManager.default.contents(atPath: "\(dir)/free.safetensors"), FileManager.default.contents(atPath: "\(dir)/bound.safetensors"),
                       "the same model file, byte for byte")

        // A bad line far into the file (a helper thread's chunk): one message naming file, line and column.
        var text = try String(contentsOfFile: train, encoding: .utf8)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let bad = 150_000                                   // 0-based: file line 150,001
        text = lines.enumerated().map { $0.offset == bad ? "+1 7:1 5:1" : String($0.element) }.joined(separator: "\n")
        let broken = "\(dir)/broken.svm"
        _ = FileManager.default.createFile(atPath: broken, contents: Data(text.utf8))
        var messages: [String] = []
        for binding in ["none", "core"] {
            let out = "\(dir)/never-\(binding).safetensors"
            let r = try MPIRunner.run(ranks: 1, "dml-train", ["--data", broken, "--model", "logistic", "--sparse", "on", "--output", out],
                                      mpirunOptions: ["--bind-to", binding])
            XCTAssertEqual(r.status, FailureKind.dataFormat.exitStatus, r.stderr)
            XCTAssertTrue(r.stderr.contains("broken.svm, line 150001, column 3: feature index 5 is not above the previous one (7)"), r.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), "nothing written")
            messages.append(r.stderr.split(separator: "\n").filter { $0.contains("broken.svm") }.joined(separator: "\n"))
        }
        XCTAssertEqual(messages[0], messages[1])
        XCTAssertEqual(messages[0].components(separatedBy: "line 150001").count - 1, 1, "one message: \(messages[0])")
    }
}
