import XCTest
import Foundation
import DMLTraining
import DMLTestSupport

/// `--reproducible` under a real `mpirun`: the model file has the same bytes for np 1, 2, 3, 4, 5 and 8 (every
/// model, every mini-batch optimizer), a run checkpointed at np 4 and resumed at np 3 ends with the bytes of an
/// uninterrupted np 1 run, a resume that changes `--reproducible` is refused, and what it cannot honour is
/// refused with one message.
final class ReproducibleIntegrationTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed (scripts/setup installs it)")
        dir = MPIRunner.temporaryDirectory()
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// 1000 rows: 15 whole blocks of 64 and one of 40; batches of 128 rows (2 blocks), 8 steps an epoch, the
    /// last batch 1 whole block and the partial one; 20 steps cross two epoch boundaries.
    let common = ["--synthetic-rows", "1000", "--synthetic-test-rows", "100", "--synthetic-features", "12",
                  "--batch-size", "128", "--steps", "20", "--reproducible"]

    func train(ranks: Int, _ args: [String], output: String, environment: [String: String] = [:]) throws -> MPIRunner.Result {
        try MPIRunner.run(ranks: ranks, "dml-train", common + args + ["--output", output], environment: environment)
    }

    func testTheModelIsTheSameBytesForAnyNumberOfRanks() throws {
        let cases: [(String, [String])] = [
            ("linear-sgd", ["--task", "regression", "--model", "linear", "--optimizer", "sgd", "--lr", "0.05"]),
            ("logistic-momentum", ["--synthetic-classes", "2", "--model", "logistic", "--optimizer", "momentum", "--lr", "0.1", "--weight-decay", "0.001"]),
            ("softmax-adam", ["--synthetic-classes", "3", "--model", "softmax", "--optimizer", "adam", "--lr", "0.01"]),
            // 1,043 parameters ≥ 32 × 13: its leaves are balanced over the ranks (rows moved between them each step).
            ("mlp-adamw", ["--synthetic-classes", "3", "--model", "mlp", "--hidden", "48,8", "--optimizer", "adamw", "--lr", "0.01", "--weight-decay", "0.01"]),
            ("softmax-adagrad", ["--synthetic-classes", "3", "--model", "softmax", "--optimizer", "adagrad", "--lr", "0.1"]),
            // The standardisation statistics and the validation losses that choose the rate and the best model: exact too.
            ("softmax-standardize-lr-search", ["--synthetic-classes", "3", "--standardize", "--validation-fraction", "0.25", "--lr-search", "0.01,0.3"]),
            ("mlp-early-stopping", ["--synthetic-classes", "3", "--model", "mlp", "--hidden", "8", "--optimizer", "momentum", "--lr", "0.5",
                                    "--validation-fraction", "0.2", "--early-stopping", "1", "--eval-every", "1"]),
        ]
        for (name, args) in cases {
            var outputs: [Int: [UInt8]] = [:], finals: [Int: [String: String]] = [:]
            for np in [1, 2, 3, 4, 5, 8] {
                let out = "\(dir)/\(name)-np\(np).safetensors", metrics = "\(dir)/\(name)-np\(np).jsonl"
                let r = try train(ranks: np, args + ["--metrics", metrics], output: out)
                XCTAssertEqual(r.status, 0, "\(name) np \(np): \(r.stderr)")
                if np == 1 { XCTAssertTrue(r.stdout.contains("reproducible (blocks of 64 rows, exact sums)"), r.stdout) }
                outputs[np] = bytes(out)
                finals[np] = try finalFigures(metrics)
            }
            XCTAssertFalse(outputs[1]!.isEmpty, name)
            XCTAssertNotNil(finals[1]?["test_loss"], name)
            for np in [2, 3, 4, 5, 8] {
                XCTAssertEqual(outputs[np], outputs[1], "\(name): np \(np) wrote other bytes than np 1")
                // The last step's loss and the evaluations (train and test sets) are np-independent too.
                XCTAssertEqual(finals[np], finals[1], "\(name): np \(np) reported other figures than np 1")
            }
        }
    }

    /// `--shard-update` with `--reproducible`: each rank updates only its slice of the exact mean gradient and
    /// the parameters are allgathered, so the slices (np 2, 3, 4) change nothing: the bytes of np 1 unsharded,
    /// for a stateful optimizer (Adam, state per slice) on the MLP.
    func testTheShardedUpdateKeepsTheBytesOfOneRank() throws {
        let args = ["--synthetic-classes", "3", "--model", "mlp", "--hidden", "16,8", "--optimizer", "adam", "--lr", "0.01"]
        let reference = "\(dir)/np1.safetensors"
        let one = try train(ranks: 1, args, output: reference)
        XCTAssertEqual(one.status, 0, one.stderr)
        for np in [2, 3, 4] {
            let out = "\(dir)/sharded-np\(np).safetensors"
            let r = try train(ranks: np, args + ["--shard-update"], output: out)
            XCTAssertEqual(r.status, 0, "np \(np): \(r.stderr)")
            XCTAssertTrue(r.stdout.contains("exact sums), sharded update (optimizer state of 1/\(np) of the parameters per rank)"), r.stdout)
            XCTAssertEqual(bytes(out), bytes(reference), "np \(np) sharded wrote other bytes than np 1")
        }
    }

    /// The final metrics line's loss and evaluation figures, as written (full precision).
    func finalFigures(_ path: String) throws -> [String: String] {
        let last = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").last { $0.contains("\"final\"") }
        let object = try JSONSerialization.jsonObject(with: Data((last ?? "{}").utf8)) as? [String: Any] ?? [:]
        var out: [String: String] = [:]
        for key in ["loss", "train_loss", "train_accuracy", "test_loss", "test_accuracy"] { out[key] = object[key].map { "\($0)" } }
        return out
    }

    func testARunCheckpointedAtFourRanksAndResumedAtThreeEndsWithTheBytesOfOneRank() throws {
        let args = ["--synthetic-classes", "3", "--model", "mlp", "--hidden", "16", "--optimizer", "adam", "--lr", "0.01"]
        let reference = "\(dir)/np1.safetensors", out = "\(dir)/resumed.safetensors", ckpt = "\(dir)/ckpt"
        XCTAssertEqual(try train(ranks: 1, args, output: reference).status, 0)
        let run = args + ["--checkpoint-dir", ckpt, "--checkpoint-every", "5"]
        let killed = try train(ranks: 4, run, output: out, environment: ["DML_FAULT": "crash:rank=1:step=13"])
        XCTAssertNotEqual(killed.status, 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        let resumed = try train(ranks: 3, run + ["--resume"], output: out)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("(step 10)"), resumed.stdout)
        XCTAssertEqual(bytes(out), bytes(reference), "np 4 → np 3 resumed: the bytes of np 1")
        // Without --reproducible it is another run: the resume is refused, naming the field, nothing written.
        try FileManager.default.removeItem(atPath: out)
        let other = try MPIRunner.run(ranks: 3, "dml-train", common.dropLast() + run + ["--resume", "--output", out])
        XCTAssertNotEqual(other.status, 0)
        XCTAssertTrue(other.stderr.contains("reduction.reproducible"), other.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }

    func testWhatItCannotHonourIsRefusedWithOneMessage() throws {
        let refusals: [([String], String)] = [
            (common + ["--batch-size", "100"], "--batch-size 100 is not a multiple of 64"),
            (common + ["--balance"], "it cannot be combined with --balance"),
            (common + ["--compress", "bf16"], "it cannot be combined with --compress"),
            (common + ["--model", "mlp", "--overlap"], "it cannot be combined with --overlap"),
            (common + ["--allreduce", "ring"], "--allreduce means nothing with it"),
            (common + ["--partition", "features"], "it needs --partition rows"),
        ]
        for (args, message) in refusals {
            let extra = args
            let out = "\(dir)/refused.safetensors"
            let r = try MPIRunner.run(ranks: 2, "dml-train", args + ["--output", out])
            XCTAssertEqual(r.status, 64, "\(extra): \(r.stderr)")
            XCTAssertEqual(r.stderr.components(separatedBy: message).count - 1, 1, "\(extra): one message: \(r.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), "\(extra)")
        }
    }
}
