import XCTest
import DMLTraining
import DMLTestSupport

/// `dml-train` launched under a real `mpirun`, as a user runs it.
final class DMLTrainIntegrationTests: XCTestCase {
    let small = ["--synthetic-rows", "600", "--synthetic-features", "24", "--synthetic-classes", "4", "--synthetic-test-rows", "200"]

    override func setUpWithError() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed (scripts/setup installs it)")
    }

    /// The `loss` figures of rank 0's progress lines.
    func losses(_ output: String) -> [Double] {
        output.split(separator: "\n").compactMap { line -> Double? in
            guard line.hasPrefix("step"), let r = line.range(of: "loss ") else { return nil }
            return Double(line[r.upperBound...].prefix { $0 != " " })
        }
    }

    func testLossFallsOnEveryRankCount() throws {
        for np in 1...4 {
            let r = try MPIRunner.run(ranks: np, "dml-train", small + ["--epochs", "4", "--batch-size", "64", "--log-every", "5"])
            XCTAssertEqual(r.status, 0, "np=\(np): \(r.stderr)")
            let l = losses(r.stdout)
            XCTAssertGreaterThanOrEqual(l.count, 3, "np=\(np) progress lines: \(r.stdout)")
            XCTAssertLessThan(l.last!, 0.8 * l.first!, "np=\(np) loss curve \(l)")
            XCTAssertEqual(r.stdout.components(separatedBy: "done:").count - 1, 1, "only rank 0 reports")
        }
    }

    func testFullBatchOutputsAgreeAcrossRankCountsAndAlgorithms() throws {
        let dir = MPIRunner.temporaryDirectory()
        var outputs: [String: [Float]] = [:]
        for (np, algorithm) in [(1, "ring"), (2, "ring"), (3, "ring"), (4, "ring"), (8, "ring"), (3, "mpi")] {
            let path = "\(dir)/np\(np)-\(algorithm).safetensors"
            let r = try MPIRunner.run(ranks: np, "dml-train", small + ["--batch-size", "full", "--steps", "15", "--allreduce", algorithm, "--output", path])
            XCTAssertEqual(r.status, 0, "np=\(np) \(algorithm): \(r.stderr)")
            let file = try Safetensors.read(path: path)
            XCTAssertEqual(file.metadata["model"], "softmax")
            XCTAssertEqual(file.metadata["step"], "15")
            XCTAssertEqual(file.entries["layers.0.weight"]?.shape, [4, 24])
            outputs["\(np)-\(algorithm)"] = try file.floats("layers.0.weight") + file.floats("layers.0.bias")
        }
        let reference = outputs["1-ring"]!
        XCTAssertTrue(reference.contains { $0 != 0 }, "training moved the parameters")
        for (name, params) in outputs {
            XCTAssertLessThan(maxRelativeDifference(params, reference), 1e-5, name)
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix(".") }, [],
                       "no temporary files are left behind")
    }

    /// Half-width gradients: the loss falls, the replica check (every step) passes on np = 2 and 3, the
    /// result is close to the Float32 run but not the same bits, and a diverging rank is still caught.
    func testCompressedGradientsTrainAndKeepReplicasIdentical() throws {
        let dir = MPIRunner.temporaryDirectory()
        let args = small + ["--steps", "30", "--batch-size", "64", "--verify-every", "1", "--log-every", "5"]
        for np in [2, 3] {
            let plain = "\(dir)/np\(np)-none.safetensors"
            XCTAssertEqual(try MPIRunner.run(ranks: np, "dml-train", args + ["--output", plain]).status, 0)
            let reference = try Safetensors.read(path: plain).floats("layers.0.weight")
            for flags in [["--compress", "fp16"], ["--compress", "bf16", "--error-feedback"]] {
                let path = "\(dir)/np\(np)-\(flags[1]).safetensors"
                let r = try MPIRunner.run(ranks: np, "dml-train", args + flags + ["--output", path])
                XCTAssertEqual(r.status, 0, "np=\(np) \(flags): \(r.stderr)")
                let l = losses(r.stdout)
                XCTAssertLessThan(l.last!, 0.8 * l.first!, "np=\(np) \(flags) loss curve \(l)")
                let w = try Safetensors.read(path: path).floats("layers.0.weight")
                XCTAssertEqual(w.count, reference.count)
                let distance = zip(w, reference).map { abs($0 - $1) }.max()!
                XCTAssertGreaterThan(distance, 0, "np=\(np) \(flags): compression changed nothing")
                XCTAssertLessThan(distance, 0.05, "np=\(np) \(flags): far from the Float32 run")
            }
        }
        let perturbed = try MPIRunner.run(ranks: 2, "dml-train", args + ["--compress", "bf16"], environment: ["DML_FAULT": "perturb:rank=1:step=5"])
        XCTAssertTrue(perturbed.stderr.contains("replica check failed after step 5: rank 1"), perturbed.stderr)
        let bad = try MPIRunner.run(ranks: 2, "dml-train", small + ["--error-feedback"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--error-feedback needs --compress"), bad.stderr)
    }

    func testAnUnknownFlagIsOneMessageAndAUsageExit() throws {
        let r = try MPIRunner.run(ranks: 3, "dml-train", ["--no-such-flag"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertEqual(r.stderr.components(separatedBy: "Unknown option '--no-such-flag'").count - 1, 1, r.stderr)
    }

    func testABadValueNamesTheFlag() throws {
        let r = try MPIRunner.run(ranks: 2, "dml-train", ["--batch-size", "zero"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("--batch-size"), r.stderr)
    }

    func testAnUnwritableOutputFailsBeforeTraining() throws {
        let r = try MPIRunner.run(ranks: 3, "dml-train", small + ["--output", "/nonexistent-dir/model.safetensors"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertEqual(r.stderr.components(separatedBy: "dml-train: error").count - 1, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("/nonexistent-dir"), r.stderr)
        XCTAssertFalse(r.stdout.contains("step"), "no training happened")
    }

    func testMoreRanksThanRowsIsAClearError() throws {
        let r = try MPIRunner.run(ranks: 4, "dml-train", ["--synthetic-rows", "3", "--synthetic-features", "4"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertEqual(r.stderr.components(separatedBy: "dml-train: error").count - 1, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("4 ranks but only 3 training rows"), r.stderr)
    }

    func testHelpDocumentsEveryFlag() throws {
        let r = try MPIRunner.run(ranks: 2, "dml-train", ["--help"])
        XCTAssertEqual(r.status, 0)
        for flag in ["--model", "--epochs", "--steps", "--batch-size", "--lr", "--seed", "--allreduce", "--output", "--log-every",
                     "--optimizer", "--nesterov", "--weight-decay", "--lr-schedule", "--warmup", "--checkpoint-dir", "--checkpoint-every",
                     "--keep-checkpoints", "--resume", "--verify-every", "--metrics", "--eval-every"] {
            XCTAssertEqual(r.stdout.components(separatedBy: "  \(flag) ").count - 1, 1, "\(flag) appears once in:\n\(r.stdout)")
        }
    }

    func testAConfigFileTheCommandLineOverridesAndTheEffectiveConfigurationThatRepeatsTheRun() throws {
        let dir = MPIRunner.temporaryDirectory()
        try """
            model = "mlp"
            hidden = [16, 8]
            synthetic-rows = 600
            synthetic-features = 24
            synthetic-classes = 4
            synthetic-test-rows = 0
            steps = 12
            batch-size = 64
            optimizer = "adam"
            lr = 0.5
            """.write(toFile: "\(dir)/run.toml", atomically: true, encoding: .utf8)
        let first = try MPIRunner.run(ranks: 2, "dml-train", ["--config", "\(dir)/run.toml", "--lr", "0.01", "--output", "\(dir)/a.safetensors"])
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertTrue(first.stdout.contains("adam") && first.stdout.contains("lr=0.01") && first.stdout.contains("12 steps"), "the file's settings and the command line's lr:\n\(first.stdout)")
        let record = String(decoding: bytes("\(dir)/a.config.toml"), as: UTF8.self)
        XCTAssertTrue(record.contains("\nlr = 0.01\n") && record.contains("\noptimizer = \"adam\"\n") && record.contains("\nbatch-size = 64\n"), record)
        XCTAssertTrue(record.contains("\nseed = 1\n"), "defaults too:\n\(record)")
        // The same settings from a JSON file, and from the record: the same bits.
        try #"{"model": "mlp", "hidden": "16,8", "synthetic-rows": 600, "synthetic-features": 24, "synthetic-classes": 4, "synthetic-test-rows": 0, "steps": 12, "batch-size": 64, "optimizer": "adam", "lr": 0.01}"#
            .write(toFile: "\(dir)/run.json", atomically: true, encoding: .utf8)
        let json = try MPIRunner.run(ranks: 2, "dml-train", ["--config", "\(dir)/run.json", "--output", "\(dir)/b.safetensors"])
        XCTAssertEqual(json.status, 0, json.stderr)
        let repeated = try MPIRunner.run(ranks: 2, "dml-train", ["--config", "\(dir)/a.config.toml", "--output", "\(dir)/c.safetensors"])
        XCTAssertEqual(repeated.status, 0, repeated.stderr)
        XCTAssertEqual(bytes("\(dir)/b.safetensors"), bytes("\(dir)/a.safetensors"))
        XCTAssertEqual(bytes("\(dir)/c.safetensors"), bytes("\(dir)/a.safetensors"))

        // A misspelt key: one message naming the file, the line and the nearest setting, exit 78, nothing run.
        try "lr = 0.1\nbatch-szie = 64\n".write(toFile: "\(dir)/bad.toml", atomically: true, encoding: .utf8)
        let bad = try MPIRunner.run(ranks: 2, "dml-train", small + ["--config", "\(dir)/bad.toml", "--output", "\(dir)/d.safetensors"])
        XCTAssertEqual(bad.status, 78, bad.stderr)
        XCTAssertEqual(bad.stderr.components(separatedBy: "dml-train: error").count - 1, 1, bad.stderr)
        XCTAssertTrue(bad.stderr.contains("--config \(dir)/bad.toml, line 2: 'batch-szie' is not a setting of dml-train; did you mean 'batch-size'?"), bad.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(dir)/d.safetensors"))
        let missing = try MPIRunner.run(ranks: 2, "dml-train", small + ["--config", "\(dir)/none.toml"])
        XCTAssertEqual(missing.status, 66, missing.stderr)
        XCTAssertTrue(missing.stderr.contains("--config \(dir)/none.toml: no such file"), missing.stderr)
    }
}
