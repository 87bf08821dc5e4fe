import XCTest
import DMLTestSupport
@testable import DMLTraining

/// `--allreduce sparse` and `auto`'s density choice under a real mpirun: the same model file bits as
/// `--allreduce rd` on sparse rows, the choice printed once, the refusals, and `dml-bench allreduce --sparse`.
final class SparseAllreduceIntegrationTests: XCTestCase {
    override func setUpWithError() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed (scripts/setup installs it)")
    }

    /// A LIBSVM file of 400 rows over 3000 features, 4 non-zeros per row (the hot columns more often).
    func sparseFile(_ dir: String) throws -> String {
        var rng = TestRandom(seed: 11)
        var lines: [String] = []
        for r in 0..<400 {
            var columns = Set<Int>()
            while columns.count < 4 { columns.insert(1 + Int(pow(Double.random(in: 0..<1, using: &rng), 2) * 3000) % 3000) }
            let features = columns.sorted().map { "\($0):\(String(format: "%.3f", Double.random(in: -2...2, using: &rng)))" }
            lines.append("\(r % 2) " + features.joined(separator: " "))
        }
        let path = dir + "/sparse.svm"
        try lines.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func testSparseGivesRdsBitsAndAutoChoosesItForSparseRows() throws {
        let dir = MPIRunner.temporaryDirectory()
        let data = try sparseFile(dir)
        let common = ["--data", data, "--model", "logistic", "--features", "3000", "--batch-size", "16", "--steps", "30", "--lr", "0.5",
                      "--eval-every", "0"]
        for np in [2, 3] {
            var weights: [String: [UInt32]] = [:]
            for algorithm in ["rd", "sparse", "auto"] {
                let path = "\(dir)/np\(np)-\(algorithm).safetensors"
                let r = try MPIRunner.run(ranks: np, "dml-train", common + ["--allreduce", algorithm, "--output", path], timeout: 120)
                XCTAssertEqual(r.status, 0, "np=\(np) \(algorithm): \(r.stderr)")
                let file = try Safetensors.read(path: path)
                weights[algorithm] = try (file.floats("layers.0.weight") + file.floats("layers.0.bias")).map(\.bitPattern)
                if algorithm == "auto" {
                    XCTAssertEqual(r.stdout.components(separatedBy: "allreduce auto: step 1: each rank touched on average").count - 1, 1, r.stdout)
                    XCTAssertTrue(r.stdout.contains("sparse (only the touched coordinates)"), r.stdout)
                }
            }
            XCTAssertEqual(weights["sparse"], weights["rd"], "np=\(np): --allreduce sparse must give rd's bits")
            XCTAssertEqual(weights["auto"], weights["rd"], "np=\(np): auto chose sparse: rd's bits")
            XCTAssertTrue(weights["rd"]!.contains { $0 != 0 })
        }
    }

    func testFlagsThatCannotCombineAreRefusedWithOneMessage() throws {
        let small = ["--synthetic-rows", "200", "--synthetic-features", "8", "--synthetic-classes", "3", "--allreduce", "sparse"]
        for (extra, message) in [(["--compress", "fp16"], "it cannot be combined with --compress"),
                                 (["--balance"], "--allreduce sparse cannot be combined with --balance"),
                                 (["--partition", "features"], "--partition features exchanges scores, not gradients")] {
            let r = try MPIRunner.run(ranks: 2, "dml-train", small + extra, timeout: 60)
            XCTAssertEqual(r.status, 64, "\(extra): \(r.stderr)")
            XCTAssertEqual(r.stderr.components(separatedBy: message).count - 1, 1, "one message from one rank: \(r.stderr)")
        }
        let bench = try MPIRunner.run(ranks: 2, "dml-bench", ["allreduce", "--sparse", "--sizes", "4K"], timeout: 60)
        XCTAssertNotEqual(bench.status, 0)
        XCTAssertTrue(bench.stderr.contains("--sizes does not apply"), bench.stderr)
        let dense = try MPIRunner.run(ranks: 2, "dml-bench", ["allreduce", "--densities", "1"], timeout: 60)
        XCTAssertNotEqual(dense.status, 0)
        XCTAssertTrue(dense.stderr.contains("--densities belongs to the sparse mode"), dense.stderr)
    }

    /// `dml-bench train --allreduce sparse` trains through the sparse reducer with its allreduce timed (the
    /// communication share), to rd's final loss.
    func testTrainBenchmarkTimesTheSparseReducer() throws {
        var losses: [String: String] = [:]
        for algorithm in ["rd", "sparse"] {
            let csv = MPIRunner.temporaryDirectory() + "/train.csv"
            let r = try MPIRunner.run(ranks: 2, "dml-bench", ["train", "--models", "softmax", "--steps", "20", "--warmup", "2", "--rows", "2048",
                                                              "--allreduce", algorithm, "--csv", csv], timeout: 120)
            XCTAssertEqual(r.status, 0, r.stderr)
            let lines = try String(contentsOfFile: csv, encoding: .utf8).split(separator: "\n").map { $0.split(separator: ",").map(String.init) }
            let header = lines[0], row = lines[1]
            let field = { (name: String) in row[header.firstIndex(of: name)!] }
            XCTAssertEqual(field("allreduce"), algorithm)
            XCTAssertGreaterThan(Double(field("comm_share"))!, 0, "the allreduce was timed")
            losses[algorithm] = field("final_loss")
        }
        XCTAssertEqual(losses["sparse"], losses["rd"])
    }

    /// `dml-bench train --data FILE.svm --hash-bits B --models logistic`: a sparse step on CSR rows, with the
    /// sparse reducer's communication share, to the ring's final loss; --hash-bits without --data refused.
    func testTrainBenchmarkOnSparseRowsOfAFile() throws {
        let dir = MPIRunner.temporaryDirectory()
        let data = try sparseFile(dir)
        var losses: [String: String] = [:]
        for algorithm in ["rd", "sparse"] {
            let csv = dir + "/train-\(algorithm).csv"
            let r = try MPIRunner.run(ranks: 2, "dml-bench", ["train", "--data", data, "--hash-bits", "12", "--models", "logistic", "--batch", "32",
                                                              "--steps", "20", "--warmup", "2", "--allreduce", algorithm, "--csv", csv], timeout: 120)
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertTrue(r.stdout.contains("hashed into 2^12"), r.stdout)
            let lines = try String(contentsOfFile: csv, encoding: .utf8).split(separator: "\n").map { $0.split(separator: ",").map(String.init) }
            let header = lines[0], row = lines[1]
            let field = { (name: String) in row[header.firstIndex(of: name)!] }
            XCTAssertEqual(field("model"), "logistic")
            XCTAssertGreaterThan(Double(field("comm_share"))!, 0, "the allreduce was timed")
            losses[algorithm] = field("final_loss")
        }
        XCTAssertEqual(losses["sparse"], losses["rd"])
        let refused = try MPIRunner.run(ranks: 2, "dml-bench", ["train", "--hash-bits", "12"], timeout: 60)
        XCTAssertEqual(refused.status, 64, refused.stderr)
        XCTAssertEqual(refused.stderr.components(separatedBy: "--hash-bits hashes the indices of a --data file").count - 1, 1, refused.stderr)
    }

    func testTheSparseBenchmarkChecksItsResults() throws {
        let r = try MPIRunner.run(ranks: 3, "dml-bench", ["allreduce", "--sparse", "--dimension", "32K", "--densities", "0.5,10,60", "--check",
                                                          "--step-rows", "16", "--nnz-per-row", "8", "--iters", "3"], timeout: 120)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("# check: every sparse result equals MPI_Allreduce's dense sum"), r.stdout)
        XCTAssertTrue(r.stdout.contains("sparse reducer + indexed update"), r.stdout)
    }
}
