import XCTest
import Foundation
import DMLTraining
import DMLTestSupport

/// `--optimizer adagrad` under a real `mpirun`: on hashed CSR rows with the sparse reducer (the indexed update
/// over the touched coordinates), killed and resumed to the same bits, and its flag's refusals.
final class AdagradIntegrationTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed (scripts/setup installs it)")
        dir = MPIRunner.temporaryDirectory()
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// 300 binary-labelled rows, 6 non-zeros each among 5000 columns, labels from a linear teacher.
    func data() -> String {
        writeTeacherLIBSVM("\(dir)/train.svm", rows: 300, nonZeros: 6, columns: 5000, seed: 17, positive: "1", negative: "0")
    }

    func testAKilledAdagradRunOnHashedRowsResumesToTheSameBits() throws {
        let args = ["--data", data(), "--model", "logistic", "--sparse", "on", "--hash-bits", "12", "--allreduce", "sparse",
                    "--optimizer", "adagrad", "--adagrad-eps", "1e-8", "--lr", "0.3", "--batch-size", "40", "--steps", "20"]
        let reference = "\(dir)/reference.safetensors"
        let r = try MPIRunner.run(ranks: 2, "dml-train", args + ["--output", reference])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("adagrad(eps=1e-08)"), r.stdout)
        let ckpt = "\(dir)/ckpt", out = "\(dir)/resumed.safetensors"
        let run = args + ["--checkpoint-dir", ckpt, "--checkpoint-every", "4", "--output", out]
        let killed = try MPIRunner.run(ranks: 2, "dml-train", run, environment: ["DML_FAULT": "crash:rank=1:step=11"])
        XCTAssertNotEqual(killed.status, 0)
        // The checkpoint holds AdaGrad's sums of squares (one state copy), not zero where rows touched.
        let saved = try Safetensors.read(path: "\(ckpt)/ckpt-00000008.safetensors")
        XCTAssertEqual(saved.metadata["optimizer_copies"], "1")
        let sums = try saved.floats("optimizer.0.layers.0.weight")
        XCTAssertEqual(sums.count, 1 << 12)
        XCTAssertTrue(sums.contains { $0 > 0 } && sums.allSatisfy { $0 >= 0 })
        let resumed = try MPIRunner.run(ranks: 2, "dml-train", run + ["--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("(step 8)"), resumed.stdout)
        XCTAssertEqual(FileManager.default.contents(atPath: out), FileManager.default.contents(atPath: reference), "resumed: the same bits")
        // Another ε is another run: the resume is refused, naming the field.
        let other = try MPIRunner.run(ranks: 2, "dml-train", args.map { $0 == "1e-8" ? "1e-6" : $0 }
                                      + ["--checkpoint-dir", ckpt, "--output", out, "--resume"])
        XCTAssertNotEqual(other.status, 0)
        XCTAssertTrue(other.stderr.contains("optimization.adagradEpsilon"), other.stderr)
    }

    func testAdagradEpsilonIsRefusedWhereItMeansNothingOrIsNotPositive() throws {
        let small = ["--synthetic-rows", "200", "--synthetic-features", "8", "--synthetic-classes", "3", "--steps", "3"]
        let cases: [([String], String)] = [
            (["--optimizer", "sgd", "--adagrad-eps", "1e-6"], "--adagrad-eps needs --optimizer adagrad"),
            (["--adagrad-eps", "1e-6"], "--adagrad-eps needs --optimizer adagrad"),
            (["--optimizer", "adagrad", "--adagrad-eps", "0"], "--adagrad-eps must be a positive number (got 0.0)"),
            (["--optimizer", "adagrad", "--adagrad-eps", "-1"], "--adagrad-eps must be a positive number (got -1.0)"),
            (["--optimizer", "adagrad", "--adagrad-eps", "nan"], "--adagrad-eps must be a positive number (got nan)"),
        ]
        for (flags, message) in cases {
            let r = try MPIRunner.run(ranks: 2, "dml-train", small + flags)
            XCTAssertEqual(r.status, 64, "\(flags): \(r.stderr)")
            XCTAssertEqual(r.stderr.components(separatedBy: message).count - 1, 1, "\(flags): one message: \(r.stderr)")
        }
        let ok = try MPIRunner.run(ranks: 2, "dml-train", small + ["--optimizer", "adagrad", "--lr", "0.1"])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        XCTAssertTrue(ok.stdout.contains("adagrad(eps=1e-10)"), ok.stdout)
    }
}
