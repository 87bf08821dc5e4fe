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
            ("linear", ["--synthetic-target", "regression", "--lr", "0.05"], "MSE", { $0 < 0.2 }, ["weight": [1, 16], "bias": [1]]),
            ("logistic", ["--synthetic-classes", "2", "--weight-decay", "0.001"], "accuracy", { $0 > 85 }, ["weight": [1, 16], "bias": [1]]),
            ("softmax", ["--synthetic-classes", "4"], "accuracy", { $0 > 70 }, ["weight": [4, 16], "bias": [4]]),
            ("mlp", ["--synthetic-classes", "4", "--hidden", "32,16", "--activation", "tanh", "--lr", "0.1"], "accuracy", { $0 > 60 },
             ["fc1.weight": [32, 16], "fc2.weight": [16, 32], "fc3.weight": [4, 16], "fc3.bias": [4]]),
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
