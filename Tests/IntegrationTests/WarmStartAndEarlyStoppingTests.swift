import XCTest
import DMLTraining
import DMLTestSupport

/// `--init` (a warm start from a saved model) and `--early-stopping` (the best model kept), under mpirun.
final class WarmStartAndEarlyStoppingTests: XCTestCase {
    let small = ["--synthetic-rows", "600", "--synthetic-features", "16", "--synthetic-classes", "3", "--synthetic-test-rows", "0",
                 "--batch-size", "50"]

    override func setUpWithError() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed (scripts/setup installs it)")
    }

    func floats(_ path: String) throws -> [Float] {
        let f = try Safetensors.read(path: path)
        return try f.floats("layers.0.weight") + f.floats("layers.0.bias")
    }

    /// A run started from a saved model begins where that model ended (a step with a vanishing rate leaves
    /// it as it was), on another number of ranks too; a model that does not fit is one message naming both.
    func testAWarmStartBeginsFromTheSavedModelAndRefusesOneThatDoesNotFit() throws {
        let dir = MPIRunner.temporaryDirectory()
        let first = try MPIRunner.run(ranks: 2, "dml-train", small + ["--epochs", "3", "--output", dir + "/a.safetensors"])
        XCTAssertEqual(first.status, 0, first.stderr)
        let again = try MPIRunner.run(ranks: 3, "dml-train", small + ["--init", dir + "/a.safetensors", "--steps", "1", "--lr", "1e-30",
                                                                     "--output", dir + "/b.safetensors"])
        XCTAssertEqual(again.status, 0, again.stderr)
        let a = try floats(dir + "/a.safetensors"), b = try floats(dir + "/b.safetensors")
        XCTAssertTrue(a.contains { $0 != 0 })
        XCTAssertEqual(zip(a, b).map { abs($0 - $1) }.max() ?? 1, 0, accuracy: 1e-6, "started from the saved parameters")
        XCTAssertEqual(try Safetensors.read(path: dir + "/b.safetensors").metadata["init"], dir + "/a.safetensors")
        // Fine-tuning goes on lowering the loss from there.
        let tuned = try MPIRunner.run(ranks: 2, "dml-train", small + ["--init", dir + "/a.safetensors", "--epochs", "1", "--log-every", "1"])
        XCTAssertEqual(tuned.status, 0, tuned.stderr)
        let fresh = try MPIRunner.run(ranks: 2, "dml-train", small + ["--epochs", "1", "--log-every", "1"])
        func firstLoss(_ out: String) -> Double? {
            out.split(separator: "\n").first { $0.hasPrefix("step ") }.flatMap { line in
                line.components(separatedBy: "loss ").dropFirst().first.flatMap { Double($0.split(separator: " ")[0]) }
            }
        }
        XCTAssertLessThan(try XCTUnwrap(firstLoss(tuned.stdout)), try XCTUnwrap(firstLoss(fresh.stdout)) * 0.8, "\(tuned.stdout)\n\(fresh.stdout)")

        for (flags, message) in [(["--model", "mlp"], "is a softmax model; this run trains --model mlp"),
                                 (["--synthetic-features", "17"], "takes 16 features; the training data has 17"),
                                 (["--synthetic-classes", "4"], "has 3 classes; the training data has 4")] {
            var args = small
            for (i, f) in flags.enumerated() where i % 2 == 0 { if let k = args.firstIndex(of: f) { args.removeSubrange(k...(k + 1)) } }
            let r = try MPIRunner.run(ranks: 2, "dml-train", args + flags + ["--init", dir + "/a.safetensors", "--steps", "2"])
            XCTAssertEqual(r.status, 64, "\(flags): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(message), "\(flags): \(r.stderr)")
            XCTAssertEqual(r.stderr.components(separatedBy: "dml-train: error").count - 1, 1, r.stderr)
        }
        let missing = try MPIRunner.run(ranks: 2, "dml-train", small + ["--init", dir + "/nope.safetensors", "--steps", "2"])
        XCTAssertEqual(missing.status, 66, missing.stderr)
        var damaged = [UInt8](FileManager.default.contents(atPath: dir + "/a.safetensors")!)
        damaged[damaged.count - 2] ^= 0x10
        try Data(damaged).write(to: URL(fileURLWithPath: dir + "/damaged.safetensors"))
        let bad = try MPIRunner.run(ranks: 2, "dml-train", small + ["--init", dir + "/damaged.safetensors", "--steps", "2"])
        XCTAssertEqual(bad.status, 65, bad.stderr)
        XCTAssertTrue(bad.stderr.contains("checksum mismatch"), bad.stderr)
    }

    /// Early stopping ends the run when the validation loss stops improving and keeps the best model; a run
    /// killed and resumed stops at the same step with the same bits (its state is in the checkpoints).
    func testEarlyStoppingKeepsTheBestModelAndResumesExactly() throws {
        let dir = MPIRunner.temporaryDirectory()
        for sub in ["straight", "resumed"] { try FileManager.default.createDirectory(atPath: dir + "/" + sub, withIntermediateDirectories: true) }
        let args = small + ["--epochs", "40", "--validation-fraction", "0.3", "--early-stopping", "2", "--lr", "2"]
        let straight = try MPIRunner.run(ranks: 2, "dml-train", args + ["--output", dir + "/straight/out.safetensors"])
        XCTAssertEqual(straight.status, 0, straight.stderr)
        XCTAssertTrue(straight.stdout.contains("early stopping after step 99"), straight.stdout)
        XCTAssertTrue(straight.stdout.contains("(stopped early)"), straight.stdout)
        let best = try ModelFile.read(path: dir + "/straight/out.best.safetensors")
        XCTAssertEqual(best.provenance["step"], "81")
        XCTAssertTrue(straight.stdout.contains("best model (validation loss 0.159021 after step 81)"), straight.stdout)

        let run = args + ["--checkpoint-dir", dir + "/ckpt", "--checkpoint-every", "9", "--output", dir + "/resumed/out.safetensors"]
        let killed = try MPIRunner.run(ranks: 2, "dml-train", run, environment: ["DML_FAULT": "crash:rank=1:step=95"])
        XCTAssertNotEqual(killed.status, 0)
        let resumed = try MPIRunner.run(ranks: 2, "dml-train", run + ["--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("early stopping after step 99"), resumed.stdout)
        XCTAssertEqual(FileManager.default.contents(atPath: dir + "/resumed/out.safetensors").map { try? floatsOf($0) },
                       FileManager.default.contents(atPath: dir + "/straight/out.safetensors").map { try? floatsOf($0) })

        let refused = try MPIRunner.run(ranks: 2, "dml-train", small + ["--early-stopping", "2", "--output", dir + "/x.safetensors"])
        XCTAssertEqual(refused.status, 64)
        XCTAssertTrue(refused.stderr.contains("--early-stopping watches the validation loss: give --validation-fraction"), refused.stderr)
    }

    func floatsOf(_ data: Data) throws -> [Float] {
        let f = try Safetensors.decode([UInt8](data))
        return try f.floats("layers.0.weight") + f.floats("layers.0.bias")
    }
}
