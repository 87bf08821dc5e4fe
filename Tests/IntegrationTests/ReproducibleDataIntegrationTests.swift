import XCTest
import Foundation
import DMLTraining
import DMLTestSupport

/// `--reproducible` beyond dense in-memory mini-batches, under a real `mpirun`: `--missing mean`'s fill values,
/// CSR rows with the mini-batch optimizers, and the full-batch methods (`lbfgs`, `newton`, dense and CSR) write
/// the same model bytes for any number of ranks, and a run killed at np 4 and resumed at np 3 ends with the
/// bytes of np 1. The fixtures are written by the test, small, and shared between the cases.
final class ReproducibleDataIntegrationTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed (scripts/setup installs it)")
        dir = MPIRunner.temporaryDirectory()
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// Trains `args` at every np of `ranks` (two runs at a time: each is mostly mpirun's start-up) and asserts
    /// the model files have the bytes of the first.
    func assertSameBytes(_ name: String, _ args: [String], ranks: [Int], file: StaticString = #filePath, line: UInt = #line) throws {
        let dir = self.dir
        let runs = MPIRunner.twoAtATime(ranks.count) { j -> String? in
            let out = "\(dir)/\(name)-np\(ranks[j]).safetensors"
            guard let r = try? MPIRunner.run(ranks: ranks[j], "dml-train", args + ["--reproducible", "--output", out]) else { return "did not start" }
            return r.status == 0 ? nil : "exit \(r.status): \(r.stderr)"
        }
        let reference = bytes("\(dir)/\(name)-np\(ranks[0]).safetensors")
        XCTAssertFalse(reference.isEmpty, "\(name) np \(ranks[0])", file: file, line: line)
        for (j, np) in ranks.enumerated() {
            XCTAssertNil(runs[j], "\(name) np \(np)", file: file, line: line)
            XCTAssertTrue(bytes("\(dir)/\(name)-np\(np).safetensors") == reference, "\(name): np \(np) wrote other bytes than np \(ranks[0])",
                          file: file, line: line)
        }
    }

    /// A CSV file of 700 rows with missing values in every column; column `a` mixes ±10^17 with small values,
    /// so a Double sum of it depends on the order (10^17 + 1 loses the 1): the default path's fill value
    /// differs between np 1 and np 2, the exact one does not.
    func missingValuesCSV() -> String {
        var text = "y,a,b,c\n"
        var random = TestRandom(seed: 21)
        for i in 0..<700 {
            let a = i == 3 ? "1e17" : i == 650 ? "-1e17" : i % 7 == 0 ? "" : String(Float(Int.random(in: 1...8, using: &random)) / 4)
            let b = i % 5 == 1 ? "" : String(Float.random(in: -2...2, using: &random))
            let c = i % 11 == 2 ? "NA" : String(Float.random(in: 0...3, using: &random))
            let y = (Double(b) ?? 0) + (Double(c) ?? 0) > 1.5 ? 1 : 0
            text += "\(y),\(a),\(b),\(c)\n"
        }
        let path = "\(dir)/missing.csv"
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        return path
    }

    func testMissingMeanFillsTheSameValuesForAnyNumberOfRanks() throws {
        let csv = missingValuesCSV()
        let args = ["--data", csv, "--missing", "mean", "--standardize", "--model", "logistic", "--batch-size", "128", "--steps", "12", "--lr", "0.1"]
        try assertSameBytes("missing-mean", args, ranks: [1, 2, 3, 5])
    }

    /// 3,000 LIBSVM rows of 10 non-zeros among 200 columns (labels ±1): 47 blocks of 64 rows for the mini-batch
    /// cases, 3 leaves of 1,024 rows for the full-batch ones.
    func libsvm() -> String { writeTeacherLIBSVM("\(dir)/rows.libsvm", rows: 3000, nonZeros: 10, columns: 200, seed: 21) }

    /// CSR rows with the mini-batch optimizers: only the touched coordinates are summed (exact Int64 through the
    /// sparse allreduce), the rows moved into whole blocks with their exact non-zeros; hashed columns too.
    func testSparseRowsGiveTheSameBytesForAnyNumberOfRanks() throws {
        let data = ["--data", libsvm(), "--sparse", "on", "--batch-size", "128", "--steps", "12"]
        let cases: [(String, [String])] = [
            ("logistic-sgd", ["--model", "logistic", "--optimizer", "sgd", "--lr", "0.5"]),
            ("softmax-adam-hashed", ["--model", "softmax", "--optimizer", "adam", "--lr", "0.05", "--hash-bits", "7"]),
            ("linear-momentum", ["--task", "regression", "--model", "linear", "--optimizer", "momentum", "--lr", "0.05"]),
        ]
        // Every np for the first two; np 1, 3, 8 for the third (the test's time: CI's budget).
        for (i, (name, args)) in cases.enumerated() { try assertSameBytes(name, data + args, ranks: i < 2 ? [1, 2, 3, 4, 5, 8] : [1, 3, 8]) }
    }

    /// L-BFGS and trust-region Newton: every sum over the rows (objective, gradient, Hessian-vector products,
    /// the line search's segment) exact over leaves of 1,024 rows, dense and CSR.
    func testFullBatchMethodsGiveTheSameBytesForAnyNumberOfRanks() throws {
        let dense = ["--synthetic-rows", "3000", "--synthetic-test-rows", "200", "--synthetic-features", "12", "--synthetic-classes", "3",
                     "--model", "softmax", "--steps", "5"]
        let sparse = ["--data", libsvm(), "--sparse", "on", "--model", "logistic", "--weight-decay", "0.001", "--steps", "5"]
        // Every np for L-BFGS dense and Newton CSR; np 1, 3, 8 for the other two (the test's time: CI's budget).
        for (name, args, all) in [("lbfgs-dense", dense + ["--optimizer", "lbfgs"], true), ("newton-csr", sparse + ["--optimizer", "newton"], true),
                                  ("newton-dense", dense + ["--optimizer", "newton"], false), ("lbfgs-csr", sparse + ["--optimizer", "lbfgs"], false)] {
            try assertSameBytes(name, args, ranks: all ? [1, 2, 3, 4, 5, 8] : [1, 3, 8])
        }
    }

    /// Killed at np 4, resumed at np 3 from the last checkpoint: the bytes of an uninterrupted np 1 run, for CSR
    /// rows with momentum and for L-BFGS (its history pairs in the checkpoint).
    func testRunsKilledAtFourRanksAndResumedAtThreeEndWithTheBytesOfOneRank() throws {
        let cases: [(String, [String], Int, Int)] = [
            ("csr-momentum", ["--data", libsvm(), "--sparse", "on", "--model", "logistic", "--optimizer", "momentum", "--lr", "0.2",
                              "--batch-size", "128", "--steps", "14"], 4, 10),
            ("lbfgs", ["--synthetic-rows", "3000", "--synthetic-features", "12", "--synthetic-classes", "3", "--model", "softmax",
                       "--optimizer", "lbfgs", "--steps", "6"], 2, 5),
        ]
        for (name, args, every, crash) in cases {
            let reference = "\(dir)/\(name)-np1.safetensors", out = "\(dir)/\(name)-resumed.safetensors", ckpt = "\(dir)/\(name)-ckpt"
            let one = try MPIRunner.run(ranks: 1, "dml-train", args + ["--reproducible", "--output", reference])
            XCTAssertEqual(one.status, 0, "\(name): \(one.stderr)")
            let run = args + ["--reproducible", "--checkpoint-dir", ckpt, "--checkpoint-every", String(every), "--output", out]
            let killed = try MPIRunner.run(ranks: 4, "dml-train", run, environment: ["DML_FAULT": "crash:rank=1:step=\(crash)"])
            XCTAssertNotEqual(killed.status, 0, name)
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), name)
            let resumed = try MPIRunner.run(ranks: 3, "dml-train", run + ["--resume"])
            XCTAssertEqual(resumed.status, 0, "\(name): \(resumed.stderr)")
            XCTAssertTrue(resumed.stdout.contains("resuming from"), "\(name): \(resumed.stdout)")
            XCTAssertFalse(bytes(reference).isEmpty, name)
            XCTAssertTrue(bytes(out) == bytes(reference), "\(name): np 4 → np 3 resumed wrote other bytes than np 1")
        }
    }

    /// CSR rows with `--shard-update` are refused with `--reproducible`, one message, nothing written.
    func testCSRRowsWithTheShardedUpdateAreRefused() throws {
        let out = "\(dir)/refused.safetensors"
        let r = try MPIRunner.run(ranks: 2, "dml-train", ["--data", libsvm(), "--sparse", "on", "--model", "logistic", "--batch-size", "128",
                                                         "--reproducible", "--shard-update", "--output", out])
        XCTAssertEqual(r.status, 64, r.stderr)
        XCTAssertEqual(r.stderr.components(separatedBy: "it cannot be combined with --shard-update").count - 1, 1, r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        // --sparse auto would read them CSR without --shard-update and dense with it: refused, saying so.
        let auto = try MPIRunner.run(ranks: 2, "dml-train", ["--data", libsvm(), "--model", "logistic", "--batch-size", "128",
                                                            "--reproducible", "--shard-update", "--output", out])
        XCTAssertEqual(auto.status, 64, auto.stderr)
        XCTAssertEqual(auto.stderr.components(separatedBy: "--sparse auto reads").count - 1, 1, auto.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }
}
