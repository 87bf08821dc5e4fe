import XCTest
import DMLTraining
import DMLTestSupport

/// `dml-train --model linear|logistic|softmax|mlp` under mpirun: each trains, reports the right metric,
/// and writes its named tensors; a model that does not fit the data is one clear message.
final class ModelsIntegrationTests: XCTestCase {
    let small = ["--synthetic-rows", "512", "--synthetic-features", "16", "--synthetic-test-rows", "128",
                 "--epochs", "4", "--batch-size", "64"]

    override func setUpWithError() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed (scripts/setup installs it)")
    }

    /// The figure after `key ` in the first line containing `done:`.
    func figure(_ key: String, _ output: String) -> Double? {
        guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix("done:") }),
              let r = line.range(of: key + " ") else { return nil }
        return Double(line[r.upperBound...].prefix { $0 != " " && $0 != "%" && $0 != ";" })
    }

    func testEveryModelTrainsFromTheCommandLine() throws {
        let dir = MPIRunner.temporaryDirectory()
        let cases: [(String, [String], String, (Double) -> Bool, [String: [Int]])] = [
            ("linear", ["--task", "regression", "--lr", "0.05"], "MSE", { $0 < 0.2 }, ["layers.0.weight": [1, 16], "layers.0.bias": [1]]),
            ("logistic", ["--synthetic-classes", "2", "--weight-decay", "0.001"], "accuracy", { $0 > 85 }, ["layers.0.weight": [1, 16], "layers.0.bias": [1]]),
            ("softmax", ["--synthetic-classes", "4"], "accuracy", { $0 > 70 }, ["layers.0.weight": [4, 16], "layers.0.bias": [4]]),
            ("mlp", ["--synthetic-classes", "4", "--hidden", "32,16", "--activation", "tanh", "--lr", "0.1"], "accuracy", { $0 > 60 },
             ["layers.0.weight": [32, 16], "layers.1.weight": [16, 32], "layers.2.weight": [4, 16], "layers.2.bias": [4]]),
        ]
        for (model, flags, metric, good, shapes) in cases {
            let path = "\(dir)/\(model).safetensors"
            let r = try MPIRunner.run(ranks: 2, "dml-train", small + ["--model", model, "--output", path] + flags)
            XCTAssertEqual(r.status, 0, "\(model): \(r.stderr)")
            let value = figure(metric, r.stdout)
            XCTAssertNotNil(value, "\(model) reports \(metric): \(r.stdout)")
            XCTAssertTrue(value.map(good) ?? false, "\(model) \(metric) \(value ?? .nan)")
            let file = try Safetensors.read(path: path)
            XCTAssertEqual(file.metadata["model"], model)
            for (name, shape) in shapes { XCTAssertEqual(file.entries[name]?.shape, shape, "\(model) \(name)") }
            // The file describes itself: what prediction needs is in it, and it reads back as that model.
            let described = try ModelFile.read(path: path)
            XCTAssertEqual(described.kind.rawValue, model)
            XCTAssertEqual(file.metadata["classes"], model == "linear" ? "0" : model == "logistic" ? "2" : "4")
            XCTAssertEqual(file.metadata["task"], model == "linear" ? "regression" : "classification")
            XCTAssertNotNil(file.metadata["data_checksum"])
            if model == "mlp" {
                XCTAssertEqual(file.metadata["activation"], "tanh")
                XCTAssertEqual(file.metadata["hidden"], "[32,16]")
            }
        }
    }

    func testAModelThatDoesNotFitTheDataIsOneMessage() throws {
        let r = try MPIRunner.run(ranks: 2, "dml-train", small + ["--model", "logistic"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertEqual(r.stderr.components(separatedBy: "--model logistic needs 2 classes").count - 1, 1, r.stderr)
        // A bad --hidden is a parse-time error; run on one rank, because with several ranks the parse-error
        // path races mpirun's teardown (rank 0 may be killed before it prints; see DMLTrain.main).
        let bad = try MPIRunner.run(ranks: 1, "dml-train", ["--hidden", "64,,8"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertEqual(bad.stderr.components(separatedBy: "--hidden must be").count - 1, 1, bad.stderr)
    }
}

/// `--lr-search` under mpirun: a table of the candidates, the best chosen by validation loss, the final model
/// trained with it and scored on the validation split; a bad list is one message.
final class LearningRateSearchIntegrationTests: XCTestCase {
    func testTheSearchTrainsTheFinalModelWithTheBestRate() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed")
        let r = try MPIRunner.run(ranks: 2, "dml-train", ["--synthetic-rows", "600", "--synthetic-features", "16", "--synthetic-classes", "3",
                                                         "--epochs", "3", "--batch-size", "50", "--lr-search", "0.001,0.3,3e38"])
        XCTAssertEqual(r.status, 0, r.stderr)
        // The default --validation-fraction 0.2 holds out about 120 of the 600 rows (chosen by row hash).
        let held = r.stdout.components(separatedBy: "scored on ").dropFirst().first.flatMap { Int($0.prefix { $0.isNumber }) }
        XCTAssertTrue((90...150).contains(held ?? 0), r.stdout)
        XCTAssertTrue(r.stdout.contains("3e+38       diverged (training diverged at step"), r.stdout)
        XCTAssertTrue(r.stdout.contains("best lr 0.3 "), r.stdout)
        XCTAssertTrue(r.stdout.contains("training the final model with lr constant(lr=0.3"), r.stdout)
        XCTAssertTrue(r.stdout.contains("; validation loss "), r.stdout)

        let bad = try MPIRunner.run(ranks: 1, "dml-train", ["--lr-search", "0.1,abc"])
        XCTAssertEqual(bad.status, 64)
        XCTAssertTrue(bad.stderr.contains("--lr-search must be distinct positive rates"), bad.stderr)
    }

    /// A resume takes the rate the search chose in the run it continues, without searching again, even with a
    /// longer --steps (a search over that horizon could choose another rate); the bytes are the uninterrupted run's.
    func testAResumeKeepsTheSearchedRate() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed")
        let dir = MPIRunner.temporaryDirectory()
        let args = ["--synthetic-rows", "600", "--synthetic-features", "16", "--synthetic-classes", "3", "--batch-size", "50",
                    "--lr-search", "0.001,0.3", "--checkpoint-dir", dir + "/ck", "--checkpoint-every", "4"]
        let first = try MPIRunner.run(ranks: 2, "dml-train", args + ["--steps", "8"])
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertTrue(first.stdout.contains("best lr 0.3 "), first.stdout)
        let resumed = try MPIRunner.run(ranks: 2, "dml-train", args + ["--steps", "16", "--resume", "--output", dir + "/resumed.safetensors"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("--lr-search: resuming with lr 0.3, the rate the search chose"), resumed.stdout)
        XCTAssertFalse(resumed.stdout.contains("learning-rate search:"), "not searched again:\n\(resumed.stdout)")
        let straight = try MPIRunner.run(ranks: 2, "dml-train", ["--synthetic-rows", "600", "--synthetic-features", "16", "--synthetic-classes", "3",
                                                                "--batch-size", "50", "--lr", "0.3", "--validation-fraction", "0.2", "--steps", "16",
                                                                "--output", dir + "/straight.safetensors"])
        XCTAssertEqual(straight.status, 0, straight.stderr)
        let a = try ModelFile.read(path: dir + "/resumed.safetensors"), b = try ModelFile.read(path: dir + "/straight.safetensors")
        XCTAssertEqual(a.parameters, b.parameters, "the resumed run trains with the searched rate as a run given it would")
    }
}

/// `--overlap` under mpirun: the MLP's layer buckets reduced during the backward pass give the very same
/// output file as reduced after it.
final class OverlapIntegrationTests: XCTestCase {
    func testOverlapWritesTheSameBits() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed")
        let dir = MPIRunner.temporaryDirectory()
        var outputs: [[UInt8]] = []
        for flag in ["--overlap", "--no-overlap"] {
            let path = "\(dir)/\(flag).safetensors"
            let r = try MPIRunner.run(ranks: 3, "dml-train", ["--model", "mlp", "--hidden", "32,16", "--synthetic-rows", "600",
                                                             "--synthetic-features", "24", "--epochs", "2", "--batch-size", "60",
                                                             "--lr", "0.05", flag, "--output", path])
            XCTAssertEqual(r.status, 0, r.stderr)
            outputs.append(Array(try Data(contentsOf: URL(fileURLWithPath: path))))
        }
        XCTAssertEqual(outputs[0], outputs[1])
    }
}
