import XCTest
import Foundation
import DMLTraining
import DMLTestSupport

/// `--shuffle off` under a real `mpirun`: shown in the start-up line, killed and resumed to the same bits, a
/// resume with the other value refused, streamed rows (`--cache-dir`) the same bits, (the order is part of the run's identity), and its refusals.
final class ShuffleIntegrationTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed (scripts/setup installs it)")
        dir = MPIRunner.temporaryDirectory()
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func testAnUnshuffledRunResumesToTheSameBitsAndRefusesTheOtherOrder() throws {
        let data = writeTeacherLIBSVM("\(dir)/train.svm", rows: 300, nonZeros: 6, columns: 5000, seed: 23, positive: "1", negative: "0")
        let args = ["--data", data, "--model", "logistic", "--sparse", "on", "--hash-bits", "12", "--optimizer", "adagrad",
                    "--lr", "0.3", "--batch-size", "40", "--steps", "20", "--shuffle", "off"]
        let reference = "\(dir)/reference.safetensors", shuffled = "\(dir)/shuffled.safetensors"
        let r = try MPIRunner.run(ranks: 2, "dml-train", args + ["--output", reference])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("global batch 40 in file order (--shuffle off)"), r.stdout)
        let on = try MPIRunner.run(ranks: 2, "dml-train", args.dropLast(2) + ["--output", shuffled])
        XCTAssertEqual(on.status, 0, on.stderr)
        XCTAssertFalse(on.stdout.contains("file order"), on.stdout)
        XCTAssertNotEqual(FileManager.default.contents(atPath: shuffled), FileManager.default.contents(atPath: reference))
        // Rows streamed from a shard cache, read in file order: the parameters of the in-memory run, bit for bit.
        let cache = "\(dir)/cache", streamed = "\(dir)/streamed.safetensors"
        try FileManager.default.createDirectory(atPath: cache, withIntermediateDirectories: true)
        let s = try MPIRunner.run(ranks: 2, "dml-train", args + ["--cache-dir", cache, "--output", streamed])
        XCTAssertEqual(s.status, 0, s.stderr)
        let (a, b) = (try Safetensors.read(path: reference), try Safetensors.read(path: streamed))
        XCTAssertEqual(Set(a.entries.keys), Set(b.entries.keys))
        for name in a.entries.keys {
            XCTAssertEqual(try a.floats(name).map(\.bitPattern), try b.floats(name).map(\.bitPattern), "streamed \(name)")
        }
        let ckpt = "\(dir)/ckpt", out = "\(dir)/resumed.safetensors"
        let run = args + ["--checkpoint-dir", ckpt, "--checkpoint-every", "4", "--output", out]
        let killed = try MPIRunner.run(ranks: 2, "dml-train", run, environment: ["DML_FAULT": "crash:rank=1:step=11"])
        XCTAssertNotEqual(killed.status, 0)
        let resumed = try MPIRunner.run(ranks: 2, "dml-train", run + ["--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("(step 8)"), resumed.stdout)
        XCTAssertEqual(FileManager.default.contents(atPath: out), FileManager.default.contents(atPath: reference), "resumed: the same bits")
        // The other order is another run: the resume is refused, naming the field, and nothing is written.
        try FileManager.default.removeItem(atPath: out)
        let other = try MPIRunner.run(ranks: 2, "dml-train", args.dropLast(2) + ["--shuffle", "on", "--checkpoint-dir", ckpt, "--output", out, "--resume"])
        XCTAssertNotEqual(other.status, 0)
        XCTAssertTrue(other.stderr.contains("optimization.shuffle"), other.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }

    func testShuffleIsRefusedWhereItMeansNothingOrIsNotOnOrOff() throws {
        let small = ["--synthetic-rows", "200", "--synthetic-features", "8", "--synthetic-classes", "3", "--steps", "3"]
        let full = try MPIRunner.run(ranks: 2, "dml-train", small + ["--model", "softmax", "--optimizer", "lbfgs", "--shuffle", "off"])
        XCTAssertEqual(full.status, 64, full.stderr)
        XCTAssertEqual(full.stderr.components(separatedBy: "--shuffle means nothing to --optimizer lbfgs").count - 1, 1, full.stderr)
        let bad = try MPIRunner.run(ranks: 2, "dml-train", small + ["--shuffle", "sometimes"])
        XCTAssertEqual(bad.status, 64, bad.stderr)
        XCTAssertTrue(bad.stderr.contains("--shuffle"), bad.stderr)
    }
}
