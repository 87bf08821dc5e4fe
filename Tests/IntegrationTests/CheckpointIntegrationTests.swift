import XCTest
#if canImport(FoundationXML)
import FoundationXML
#endif
import DMLTraining
import DMLTestSupport

/// Checkpoints, resume and the safety nets, with `dml-train` under a real `mpirun`.
final class CheckpointIntegrationTests: XCTestCase {
    let small = ["--synthetic-rows", "600", "--synthetic-features", "24", "--synthetic-classes", "4", "--synthetic-test-rows", "200"]

    override func setUpWithError() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed (scripts/setup installs it)")
    }


    func parameters(_ path: String) throws -> [Float] {
        let f = try Safetensors.read(path: path)
        return try f.floats("layers.0.weight") + f.floats("layers.0.bias")
    }

    func count(_ needle: String, in haystack: String) -> Int { haystack.components(separatedBy: needle).count - 1 }

    /// Runs `args` straight to the end, then for each stop step k: the same run killed (SIGKILL) as step
    /// k begins, resumed with `--resume`; the final output must have the same bytes.
    func checkExactResume(_ args: [String], checkpointing: [String], stops: [Int], np: Int = 2,
                          file: StaticString = #filePath, line: UInt = #line) throws {
        let dir = MPIRunner.temporaryDirectory()
        let reference = "\(dir)/reference.safetensors"
        let r = try MPIRunner.run(ranks: np, "dml-train", small + args + ["--output", reference])
        XCTAssertEqual(r.status, 0, r.stderr, file: file, line: line)
        for k in stops {
            let ckpt = "\(dir)/ckpt-\(k)", out = "\(dir)/resumed-\(k).safetensors", metrics = "\(dir)/m-\(k).jsonl"
            let run = small + args + checkpointing + ["--checkpoint-dir", ckpt, "--output", out, "--metrics", metrics]
            let killed = try MPIRunner.run(ranks: np, "dml-train", run, environment: ["DML_FAULT": "crash:rank=0:step=\(k)"])
            XCTAssertNotEqual(killed.status, 0, "the run was killed at step \(k)", file: file, line: line)
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), file: file, line: line)
            let resumed = try MPIRunner.run(ranks: np, "dml-train", run + ["--resume"])
            XCTAssertEqual(resumed.status, 0, resumed.stderr, file: file, line: line)
            XCTAssertTrue(bytes(out) == bytes(reference), "stopped at step \(k) and resumed: the same bits", file: file, line: line)
            // The metrics file reads as one run: steps strictly increasing, one final line, last.
            let lines = String(decoding: bytes(metrics), as: UTF8.self).split(separator: "\n")
            let objects = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            XCTAssertEqual(objects.count, lines.count, file: file, line: line)
            let steps = objects.filter { $0["event"] == nil }.compactMap { $0["step"] as? Int }
            XCTAssertEqual(steps, steps.sorted(), "k=\(k)", file: file, line: line)
            XCTAssertEqual(Set(steps).count, steps.count, "k=\(k): no step logged twice", file: file, line: line)
            XCTAssertEqual(objects.last?["event"] as? String, "final", file: file, line: line)
            XCTAssertEqual(objects.filter { $0["event"] as? String == "final" }.count, 1, file: file, line: line)
        }
    }

    func testAKilledRunResumedEndsWithTheSameBits() throws {
        // Adam + cosine + warm-up: the optimizer state and the step both matter. Stop before the first
        // checkpoint (resume starts afresh), right after one, between two, and one step before the end.
        try checkExactResume(["--steps", "30", "--batch-size", "64", "--optimizer", "adam", "--lr", "0.05",
                              "--lr-schedule", "cosine", "--warmup", "5"],
                             checkpointing: ["--checkpoint-every", "4", "--keep-checkpoints", "2"], stops: [3, 9, 18, 30])
        try checkExactResume(["--steps", "25", "--batch-size", "50", "--optimizer", "momentum", "--nesterov", "--lr", "0.1",
                              "--weight-decay", "0.01", "--lr-schedule", "step", "--lr-step-every", "10", "--lr-gamma", "0.5",
                             ], checkpointing: ["--checkpoint-every", "6"], stops: [14], np: 3)
    }

    func testResumingOnAnotherRankCountFollowsTheSameBatches() throws {
        let dir = MPIRunner.temporaryDirectory()
        let args = small + ["--steps", "24", "--batch-size", "64", "--optimizer", "adamw", "--weight-decay", "0.01", "--lr", "0.05"]
        XCTAssertEqual(try MPIRunner.run(ranks: 2, "dml-train", args + ["--output", "\(dir)/ref.safetensors"]).status, 0)
        let run = args + ["--checkpoint-every", "5", "--checkpoint-dir", "\(dir)/ckpt", "--output", "\(dir)/out.safetensors"]
        XCTAssertNotEqual(try MPIRunner.run(ranks: 2, "dml-train", run, environment: ["DML_FAULT": "crash:rank=1:step=13"]).status, 0)
        let resumed = try MPIRunner.run(ranks: 3, "dml-train", run + ["--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("resuming from \(dir)/ckpt/ckpt-00000010.safetensors (step 10)"), resumed.stdout)
        let a = try parameters("\(dir)/out.safetensors"), b = try parameters("\(dir)/ref.safetensors")
        XCTAssertLessThan(maxRelativeDifference(a, b), 1e-5)
    }

    func testACorruptNewestCheckpointFallsBackToThePreviousOne() throws {
        let dir = MPIRunner.temporaryDirectory()
        let args = small + ["--steps", "20", "--batch-size", "64", "--optimizer", "momentum", "--checkpoint-dir", "\(dir)/ckpt",
                            "--checkpoint-every", "5", "--keep-checkpoints", "0"]
        let first = try MPIRunner.run(ranks: 2, "dml-train", args + ["--output", "\(dir)/ref.safetensors"])
        XCTAssertEqual(first.status, 0, first.stderr)
        // Newest: one flipped bit in the data; the one before: truncated (a torn copy).
        let p20 = "\(dir)/ckpt/ckpt-00000020.safetensors", p15 = "\(dir)/ckpt/ckpt-00000015.safetensors"
        var b = bytes(p20)
        b[b.count - 10] ^= 0x01
        try Data(b).write(to: URL(fileURLWithPath: p20))
        truncate(p15, bytes(p15).count / 2)
        let r = try MPIRunner.run(ranks: 2, "dml-train", args + ["--resume", "--output", "\(dir)/out.safetensors"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("warning: checkpoint \(p20) is unusable (checksum mismatch"), r.stderr)
        XCTAssertTrue(r.stderr.contains("warning: checkpoint \(p15) is unusable"), r.stderr)
        XCTAssertEqual(count("warning:", in: r.stderr), 2, "rank 0 alone reports: \(r.stderr)")
        XCTAssertTrue(r.stdout.contains("resuming from \(dir)/ckpt/ckpt-00000010.safetensors (step 10)"), r.stdout)
        XCTAssertTrue(bytes("\(dir)/out.safetensors") == bytes("\(dir)/ref.safetensors"), "the same bits as the uninterrupted run")
    }

    func testAResumeWithAnotherConfigurationIsRefusedNamingTheField() throws {
        let dir = MPIRunner.temporaryDirectory()
        let args = small + ["--steps", "6", "--batch-size", "64", "--checkpoint-dir", "\(dir)/ckpt"]
        XCTAssertEqual(try MPIRunner.run(ranks: 2, "dml-train", args).status, 0)
        // The two reported cases (a model option, an optimizer hyperparameter), then one of each kind.
        for (flags, field) in [(["--weight-decay", "0.01"], "optimization.weightDecay"),
                               (["--seed", "2"], "optimization.seed"), (["--optimizer", "adam"], "optimization.optimizer"),
                               (["--compress", "bf16"], "reduction.compress"), (["--standardize"], "data.standardize"),
                               (["--lr-schedule", "cosine"], "optimization.schedule"), (["--synthetic-classes", "3"], "model_shape")] {
            let r = try MPIRunner.run(ranks: 2, "dml-train", args + flags + ["--resume", "--output", "\(dir)/never.safetensors"])
            XCTAssertEqual(r.status, 78, "\(flags)")
            XCTAssertEqual(count("dml-train: error", in: r.stderr), 1, r.stderr)
            XCTAssertTrue(r.stderr.contains("'\(field)' differs"), "\(flags): \(r.stderr)")
            XCTAssertFalse(r.stdout.contains("step "), "nothing trained")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(dir)/never.safetensors"))
        // The other reported case: an MLP checkpoint written with tanh does not resume a relu run.
        let mlp = ["--model", "mlp", "--hidden", "8"] + small + ["--steps", "6", "--batch-size", "64", "--checkpoint-dir", "\(dir)/mlp"]
        XCTAssertEqual(try MPIRunner.run(ranks: 2, "dml-train", mlp + ["--activation", "tanh"]).status, 0)
        let relu = try MPIRunner.run(ranks: 2, "dml-train", mlp + ["--resume"])
        XCTAssertEqual(relu.status, 78, relu.stderr)
        XCTAssertTrue(relu.stderr.contains("'model.activation' differs (the checkpoint has 'tanh', this run has 'relu')"), relu.stderr)
    }

    func testTheReplicaCheckCatchesAPerturbedRank() throws {
        let r = try MPIRunner.run(ranks: 3, "dml-train", small + ["--steps", "20", "--verify-every", "1"],
                                  environment: ["DML_FAULT": "perturb:rank=2:step=5"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertEqual(count("dml-train: error", in: r.stderr), 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("replica check failed after step 5: rank 2 holds different parameters from rank 0"), r.stderr)
        // At the default interval it is caught at the next check (step 50), before the output is written.
        let d = try MPIRunner.run(ranks: 2, "dml-train", small + ["--steps", "60"], environment: ["DML_FAULT": "perturb:rank=1:step=5"])
        XCTAssertNotEqual(d.status, 0)
        XCTAssertTrue(d.stderr.contains("replica check failed after step 50: rank 1"), d.stderr)
    }

    func testANonFiniteGradientStopsTheJobAndKeepsTheLastGoodCheckpoint() throws {
        let dir = MPIRunner.temporaryDirectory()
        let r = try MPIRunner.run(ranks: 2, "dml-train", small + ["--steps", "20", "--checkpoint-dir", "\(dir)/ckpt", "--checkpoint-every", "5",
                                                              "--output", "\(dir)/never.safetensors"],
                                  environment: ["DML_FAULT": "nan:rank=1:step=7"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertEqual(count("dml-train: error", in: r.stderr), 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("training diverged at step 7") && r.stderr.contains("lower learning rate"), r.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: "\(dir)/ckpt").filter { $0 != ".dml-lock" }, ["ckpt-00000005.safetensors"])
        let good = try Checkpoint.decode(bytes("\(dir)/ckpt/ckpt-00000005.safetensors"))
        XCTAssertEqual(good.step, 5)
        XCTAssertTrue(good.parameters.allSatisfy(\.isFinite))
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(dir)/never.safetensors"))
        // A learning rate far too large diverges on its own; no checkpoint holds non-finite values.
        let big = try MPIRunner.run(ranks: 2, "dml-train", small + ["--steps", "20", "--lr", "1e38", "--checkpoint-dir", "\(dir)/big",
                                                                "--checkpoint-every", "1"])
        XCTAssertNotEqual(big.status, 0)
        XCTAssertEqual(count("dml-train: error", in: big.stderr), 1, big.stderr)
        XCTAssertTrue(big.stderr.contains("training diverged") && big.stderr.contains("lower learning rate"), big.stderr)
        for f in try FileManager.default.contentsOfDirectory(atPath: "\(dir)/big") where f != ".dml-lock" {
            XCTAssertTrue(try Checkpoint.decode(bytes("\(dir)/big/\(f)")).parameters.allSatisfy(\.isFinite), f)
        }
    }

    func testRanksWithDifferentConfigurationsAreRefusedBeforeTheFirstStep() throws {
        // MPMD launch: rank 0 gets --lr 0.1, ranks 1 and 2 get --lr 0.2.
        let exe = MPIRunner.executable("dml-train")
        let r = try MPIRunner.runProcess("mpirun", ["--oversubscribe", "-np", "1", exe] + small + ["--lr", "0.1", ":",
                                                    "-np", "2", exe] + small + ["--lr", "0.2"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertEqual(count("dml-train: error", in: r.stderr), 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("the ranks do not run the same configuration: rank 0"), r.stderr)
        XCTAssertFalse(r.stdout.contains("step "), "nothing trained: \(r.stdout)")
    }

    func testMetricsFileAndPlot() throws {
        let dir = MPIRunner.temporaryDirectory()
        let r = try MPIRunner.run(ranks: 2, "dml-train", small + ["--epochs", "3", "--batch-size", "100", "--log-every", "2",
                                                              "--metrics", "\(dir)/m.jsonl"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let objects = String(decoding: bytes("\(dir)/m.jsonl"), as: UTF8.self).split(separator: "\n")
            .map { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        XCTAssertEqual(objects.count, 9 + 2 + 1, "9 progress lines (18 steps, every 2), 2 evaluations (epochs 1, 2), final")
        for o in objects {
            for key in ["step", "epoch", "loss", "lr", "samples_per_s"] { XCTAssertNotNil(o?[key], "\(key) in \(String(describing: o))") }
        }
        // Every line carries its wall-clock time (ISO 8601, UTC), in order.
        let parser = ISO8601DateFormatter()
        parser.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let times = objects.compactMap { ($0?["time"] as? String).flatMap(parser.date(from:)) }
        XCTAssertEqual(times.count, objects.count, "a parseable time on every line")
        XCTAssertEqual(times, times.sorted())
        XCTAssertLessThan(abs(times.last!.timeIntervalSinceNow), 600)
        // Progress lines carry the elapsed time.
        XCTAssertTrue(r.stdout.split(separator: "\n").filter { $0.hasPrefix("step ") }.allSatisfy { $0.contains(" elapsed ") }, r.stdout)
        let evals = objects.filter { $0?["event"] as? String == "eval" }
        XCTAssertEqual(evals.map { $0?["step"] as? Int }, [6, 12])
        XCTAssertTrue(evals.allSatisfy { ($0?["test_accuracy"] as? Double ?? -1) >= 0 && $0?["test_loss"] != nil })
        let last = objects.last!!
        XCTAssertEqual(last["event"] as? String, "final")
        XCTAssertEqual(last["step"] as? Int, 18)
        XCTAssertNotNil(last["test_accuracy"])

        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/plot-metrics").path
        let plot = try MPIRunner.runProcess("python3", [script, "\(dir)/m.jsonl", "\(dir)/m.svg"])
        XCTAssertEqual(plot.status, 0, plot.stderr)
        let svg = String(decoding: bytes("\(dir)/m.svg"), as: UTF8.self)
        XCTAssertTrue(svg.hasPrefix("<svg") || svg.hasPrefix("<?xml"), String(svg.prefix(100)))
        XCTAssertTrue(XMLParser(data: Data(svg.utf8)).parse(), "well-formed XML")
        XCTAssertEqual(count("<polyline", in: svg), 3, "train loss, test loss and test accuracy curves")
        XCTAssertTrue(svg.contains(">cross-entropy<"), "a classifier's loss axis")
    }

    func testPlotsOfARegressionWithAValidationSplitAndTheirBadInput() throws {
        let dir = MPIRunner.temporaryDirectory()
        let r = try MPIRunner.run(ranks: 2, "dml-train", ["--model", "linear", "--task", "regression", "--synthetic-rows", "600",
                                                          "--synthetic-features", "8", "--synthetic-test-rows", "100", "--epochs", "3",
                                                          "--batch-size", "100", "--lr", "0.05", "--validation-fraction", "0.2",
                                                          "--metrics", "\(dir)/m.jsonl"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let final = String(decoding: bytes("\(dir)/m.jsonl"), as: UTF8.self).split(separator: "\n").last.map(String.init) ?? ""
        XCTAssertTrue(final.contains("\"task\": \"regression\""), final)
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/plot-metrics").path
        let plot = try MPIRunner.runProcess("python3", [script, "\(dir)/m.jsonl", "\(dir)/m.svg"])
        XCTAssertEqual(plot.status, 0, plot.stderr)
        let svg = String(decoding: bytes("\(dir)/m.svg"), as: UTF8.self)
        XCTAssertTrue(XMLParser(data: Data(svg.utf8)).parse(), "well-formed XML")
        XCTAssertEqual(count("<polyline", in: svg), 3, "train, validation and test loss; no accuracy for a regression")
        XCTAssertTrue(svg.contains(">mean squared error<") && svg.contains(">validation loss<"), svg)
        // With matplotlib, a PNG beside the SVG; without it, the SVG alone and the reason for a .png.
        let matplotlib = try MPIRunner.runProcess("python3", ["-c", "import matplotlib"]).status == 0
        let png = try MPIRunner.runProcess("python3", [script, "\(dir)/m.jsonl", "\(dir)/only.png"])
        if matplotlib {
            XCTAssertEqual(png.status, 0, png.stderr)
            XCTAssertEqual(Array(bytes("\(dir)/m.png").prefix(4)), [0x89, 0x50, 0x4E, 0x47], "a PNG beside the SVG")
            XCTAssertEqual(Array(bytes("\(dir)/only.png").prefix(4)), [0x89, 0x50, 0x4E, 0x47])
        } else {
            print("matplotlib is not installed: the PNG output is checked only for its message")
            XCTAssertEqual(png.status, 1)
            XCTAssertTrue(png.stderr.contains("PNG needs matplotlib"), png.stderr)
        }
        // A missing file, a file that is not metrics, an output directory that does not exist: one line each.
        for (arguments, message) in [(["\(dir)/none.jsonl", "\(dir)/x.svg"], "cannot read \(dir)/none.jsonl: No such file or directory"),
                                     ([script, "\(dir)/x.svg"], "\(script), line 1: not JSON"),
                                     (["\(dir)/m.jsonl", "\(dir)/no/x.svg"], "cannot write \(dir)/no/x.svg: directory \(dir)/no does not exist")] {
            let bad = try MPIRunner.runProcess("python3", [script] + arguments)
            XCTAssertEqual(bad.status, 1, bad.stderr)
            XCTAssertTrue(bad.stderr.hasPrefix("plot-metrics: ") && bad.stderr.contains(message), bad.stderr)
            XCTAssertFalse(bad.stderr.contains("Traceback"), bad.stderr)
            XCTAssertEqual(bad.stderr.split(separator: "\n").count, 1, bad.stderr)
        }
    }
}
