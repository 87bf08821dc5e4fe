import XCTest
import DMLTraining
import DMLTestSupport

/// `dml-train --partition features` under mpirun: the model it writes equals the row-partitioned one up to
/// float rounding, for a rank count that does not divide the features, on the synthetic task and on a CSV
/// file with standardisation and a validation split; checkpoints, resume (on any np), metrics, timeline,
/// replica checks and preemption work as for rows; unsupported combinations are one message.
final class FeaturePartitionIntegrationTests: XCTestCase {
    override func setUpWithError() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed (scripts/setup installs it)")
    }

    func outputs(_ args: [String], rowsNp: Int = 2, featuresNp: Int = 3) throws -> (rows: Safetensors.File, features: Safetensors.File, stdout: String) {
        let dir = MPIRunner.temporaryDirectory()
        let r = try MPIRunner.run(ranks: rowsNp, "dml-train", args + ["--output", dir + "/rows.safetensors"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let f = try MPIRunner.run(ranks: featuresNp, "dml-train", args + ["--partition", "features", "--output", dir + "/features.safetensors"])
        XCTAssertEqual(f.status, 0, f.stderr)
        return (try Safetensors.read(path: dir + "/rows.safetensors"), try Safetensors.read(path: dir + "/features.safetensors"), f.stdout)
    }

    func assertClose(_ a: Safetensors.File, _ b: Safetensors.File, _ what: String) throws {
        XCTAssertEqual(Set(a.entries.keys), Set(b.entries.keys), what)
        for (name, entry) in a.entries {
            XCTAssertEqual(entry.shape, b.entries[name]?.shape, what)
            let x = try a.floats(name), y = try b.floats(name)
            XCTAssertTrue(x.contains { $0 != 0 }, "trained: \(what) \(name)")
            XCTAssertEqual(x.count, y.count, what)
            let worst = zip(x, y).map { abs(Double($0) - Double($1)) }.max() ?? 0
            XCTAssertLessThan(worst, 1e-5, "\(what) \(name)")
        }
    }

    func testSyntheticSoftmaxAndLinearEqualRowPartitioned() throws {
        let base = ["--synthetic-rows", "700", "--synthetic-features", "23", "--synthetic-test-rows", "100", "--epochs", "2",
                    "--batch-size", "64", "--weight-decay", "0.001"]
        let softmax = try outputs(base + ["--synthetic-classes", "4", "--optimizer", "momentum"])
        try assertClose(softmax.rows, softmax.features, "softmax")
        XCTAssertTrue(softmax.stdout.contains("3 ranks partitioned by features (7–8 columns each)"), softmax.stdout)
        XCTAssertEqual(softmax.features.metadata["partition"], "features")
        let linear = try outputs(base + ["--model", "linear", "--task", "regression", "--lr", "0.05"], featuresNp: 2)
        try assertClose(linear.rows, linear.features, "linear")
    }

    func testCSVWithStandardisationAndValidationEqualsRowPartitioned() throws {
        let dir = MPIRunner.temporaryDirectory()
        var csv = "label,a,b,c,d,e\n"
        for i in 0..<300 {
            let v = (0..<5).map { j in Double((i * 7 + j * 13) % 17) - 8 + Double(j) }
            csv += "\((v[0] + v[2] - v[4]) > 0 ? 1 : 0)," + v.map { String($0) }.joined(separator: ",") + "\n"
        }
        try csv.write(toFile: dir + "/d.csv", atomically: true, encoding: .utf8)
        let r = try outputs(["--data", dir + "/d.csv", "--model", "logistic", "--standardize", "--validation-fraction", "0.2",
                             "--epochs", "3", "--batch-size", "32", "--lr", "0.5"])
        try assertClose(r.rows, r.features, "logistic csv")
        XCTAssertNotNil(r.features.metadata["standardize_mean"])
        XCTAssertTrue(r.stdout.contains("; validation loss"), r.stdout)
    }

    func testUnsupportedCombinationsAreOneMessage() throws {
        let mlp = try MPIRunner.run(ranks: 1, "dml-train", ["--partition", "features", "--model", "mlp"])
        XCTAssertEqual(mlp.status, 64)
        XCTAssertTrue(mlp.stderr.contains("--partition features trains linear, logistic and softmax models"), mlp.stderr)
        let wide = try MPIRunner.run(ranks: 3, "dml-train", ["--partition", "features", "--synthetic-features", "2", "--steps", "1"])
        XCTAssertNotEqual(wide.status, 0)
        XCTAssertEqual(wide.stderr.components(separatedBy: "3 ranks but only 2 features").count - 1, 1, wide.stderr)
    }

    /// The session loop drives the feature partition too: a killed run resumes from its checkpoint with the
    /// same bits (same np), a checkpoint resumes on another np (its slices re-cut), and --metrics,
    /// --timeline, the replica check and a preemption (75) all work.
    func testCheckpointsResumeMetricsTimelineAndPreemptionWork() throws {
        let dir = MPIRunner.temporaryDirectory()
        let base = ["--partition", "features", "--synthetic-rows", "600", "--synthetic-features", "17", "--synthetic-classes", "3",
                    "--synthetic-test-rows", "100", "--steps", "40", "--batch-size", "50", "--optimizer", "adam", "--lr", "0.05",
                    "--verify-every", "5"]
        let reference = try MPIRunner.run(ranks: 3, "dml-train", base + ["--output", dir + "/ref.safetensors"])
        XCTAssertEqual(reference.status, 0, reference.stderr)
        let run = base + ["--checkpoint-dir", dir + "/ckpt", "--checkpoint-every", "10", "--output", dir + "/out.safetensors",
                          "--metrics", dir + "/m.jsonl", "--timeline", dir + "/trace.json"]
        let killed = try MPIRunner.run(ranks: 3, "dml-train", run, environment: ["DML_FAULT": "crash:rank=1:step=25"])
        XCTAssertNotEqual(killed.status, 0)
        let resumed = try MPIRunner.run(ranks: 3, "dml-train", run + ["--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("resuming from \(dir)/ckpt/ckpt-00000020.safetensors (step 20)"), resumed.stdout)
        XCTAssertEqual(FileManager.default.contents(atPath: dir + "/out.safetensors"), FileManager.default.contents(atPath: dir + "/ref.safetensors"),
                       "the same bits as the uninterrupted run")
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/trace.json"))
        let metrics = try String(contentsOfFile: dir + "/m.jsonl", encoding: .utf8)
        XCTAssertTrue(metrics.contains("\"event\": \"final\""), metrics)
        // The same checkpoint continued on 2 ranks: the slices are cut again; equal up to float rounding.
        let other = dir + "/other"
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: dir + "/ckpt/ckpt-00000030.safetensors", toPath: other + "/ckpt-00000030.safetensors")
        let moved = try MPIRunner.run(ranks: 2, "dml-train", base + ["--checkpoint-dir", other, "--resume", "--output", dir + "/two.safetensors"])
        XCTAssertEqual(moved.status, 0, moved.stderr)
        try assertClose(try Safetensors.read(path: dir + "/ref.safetensors"), try Safetensors.read(path: dir + "/two.safetensors"), "np 3 → 2")
        // Preemption: the gate agrees on the stop, a checkpoint is written, exit 75.
        let stopped = try MPIRunner.run(ranks: 2, "dml-train", base + ["--checkpoint-dir", dir + "/stop"],
                                        environment: ["DML_FAULT": "preempt:rank=1:step=7"])
        XCTAssertEqual(stopped.status, 75, stopped.stderr)
        XCTAssertTrue(stopped.stderr.contains("stopped by SIGTERM after step 6; checkpoint"), stopped.stderr)
        // A perturbed bias is caught by the replica check.
        let perturbed = try MPIRunner.run(ranks: 2, "dml-train", base, environment: ["DML_FAULT": "perturb:rank=1:step=3"])
        XCTAssertEqual(perturbed.status, 70, perturbed.stderr)
        XCTAssertTrue(perturbed.stderr.contains("replica check failed after step 5: rank 1 holds different bias"), perturbed.stderr)
    }
}
