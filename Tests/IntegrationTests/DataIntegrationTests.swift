import XCTest
import Foundation
import DMLTraining
import DMLTestSupport

/// `dml-train --data …` under a real mpirun: files read by byte range, one error message per bad input.
final class DataIntegrationTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed (scripts/setup installs it)")
        dir = MPIRunner.temporaryDirectory()
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func write(_ name: String, _ text: String) -> String {
        let path = "\(dir)/\(name)"
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        return path
    }

    /// 40 rows, label first, two features; `bad` replaces some (1-based) lines.
    func csv(_ name: String, header: Bool = true, replacing bad: [Int: String] = [:]) -> String {
        var lines = (0..<40).map { i in "\(i % 2),\(Double(i) / 8),\(i % 2 == 0 ? -1.5 : 2.25)" }
        if header { lines.insert("label,a,b", at: 0) }
        for (line, text) in bad { lines[line - 1] = text }
        return write(name, lines.joined(separator: "\n") + "\n")
    }

    func testTrainingOnACSVFileIsTheSameOnAnyNumberOfRanksAndRecordsLabelsAndStandardisation() throws {
        let train = csv("train.csv")
        let test = csv("test.csv", header: false)
        var outputs: [[Float]] = []
        for np in [1, 3] {
            let out = "\(dir)/np\(np).safetensors"
            let r = try MPIRunner.run(ranks: np, "dml-train", ["--data", train, "--test-data", test, "--standardize",
                                                              "--validation-fraction", "0.25", "--batch-size", "8", "--epochs", "3",
                                                              "--output", out])
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertTrue(r.stdout.contains("train.csv (30 rows × 2 features, 2 classes)") || r.stdout.contains("rows × 2 features, 2 classes"), r.stdout)
            XCTAssertTrue(r.stdout.contains("validation loss"), r.stdout)
            let file = try Safetensors.read(path: out)
            XCTAssertEqual(file.metadata["labels"], "[\"0\",\"1\"]")
            XCTAssertNotNil(file.metadata["standardize_mean"])
            XCTAssertNotNil(file.metadata["standardize_std"])
            outputs.append(try file.floats("layers.0.weight") + file.floats("layers.0.bias"))
        }
        XCTAssertLessThan(maxRelativeDifference(outputs[1], outputs[0]), 1e-5, "the same batches on 1 and 3 ranks")
    }

    /// A line longer than a rank's byte range leaves that rank with no rows: training still works.
    func testARankWithAnEmptyShardStillTrains() throws {
        let lines = (0..<12).map { i in "\(i % 2),\(i == 1 ? String(repeating: "0", count: 1000) : "")1,\(i)" }
        let path = write("long.csv", lines.joined(separator: "\n") + "\n")
        let r = try MPIRunner.run(ranks: 3, "dml-train", ["--data", path, "--epochs", "2", "--batch-size", "4"],
                                  environment: ["DML_DATA_STATS": "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("rank 1 parsed 358 bytes of \(path), 0 rows"), r.stderr)
        XCTAssertTrue(r.stdout.contains("12 rows × 2 features, 2 classes"), r.stdout)
    }

    /// Each bad input: exactly one message, from rank 0, naming the file (and line and column where there
    /// is one), a non-zero exit, nothing written.
    func testEachBadInputIsOneMessageNamingFileAndLine() throws {
        let good = csv("good.csv")
        let cases: [(args: [String], expected: String)] = [
            (["--data", "\(dir)/missing.csv"], "missing.csv: no such file"),
            (["--data", write("empty.csv", "")], "empty.csv: the file is empty"),
            (["--data", dir, "--format", "csv"], "is a directory"),
            (["--data", csv("ragged.csv", replacing: [37: "1,2"])], "ragged.csv, line 37: 2 fields, but the file has 3"),
            (["--data", csv("word.csv", replacing: [30: "1,2,seven"])], "word.csv, line 30, column 3: \"seven\" is not a number"),
            (["--data", csv("nan.csv", replacing: [25: "1,nan,2"])], "nan.csv, line 25, column 2: missing value (\"nan\"): fill missing values with --missing zero or --missing mean"),
            (["--data", csv("label.csv", replacing: [41: "1.5,1,2"])], "label.csv, line 41, column 1: class label 1.5 is not an integer"),
            (["--data", good, "--test-data", write("narrow.csv", "0,1\n1,2\n")], "narrow.csv: 1 features per row, but the training data has 2"),
            (["--data", write("tiny.csv", "0,1\n")], "ranks but only 1 training rows in"),
        ]
        // Runs two jobs at a time: each is mostly mpirun's start-up.
        let jobs = [2, 3].flatMap { np in cases.enumerated().map { (np, $0.offset, $0.element) } }
        let arguments = jobs.map { ($0.0, $0.1, $0.2.args) }, dir = self.dir
        let results = MPIRunner.twoAtATime(jobs.count) { j -> MPIRunner.Result? in
            let (np, i, args) = arguments[j]
            return try? MPIRunner.run(ranks: np, "dml-train", args + ["--output", "\(dir)/never\(np)-\(i).safetensors", "--epochs", "1"],
                                      timeout: 60)
        }
        for (j, (np, i, c)) in jobs.enumerated() {
            guard let r = results[j] else { XCTFail("np=\(np) \(c.args): could not run"); continue }
            XCTAssertNotEqual(r.status, 0, "np=\(np) \(c.args)")
            XCTAssertEqual(r.stderr.components(separatedBy: "dml-train: error").count - 1, 1, "np=\(np) \(c.args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(c.expected), "np=\(np) \(c.args): expected \(c.expected) in \(r.stderr)")
            XCTAssertFalse(r.stdout.contains("step"), "no training")
            XCTAssertFalse(FileManager.default.fileExists(atPath: "\(dir)/never\(np)-\(i).safetensors"), "nothing written")
        }
    }
}
