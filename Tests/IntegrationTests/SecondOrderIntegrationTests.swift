import XCTest
import Foundation
import DMLTraining
import DMLTestSupport

/// `--optimizer lbfgs|newton` under a real `mpirun`: the objective per iteration in the metrics and the
/// progress lines, `--tol`, a killed run resumed with the same bits, and the refusals.
final class SecondOrderIntegrationTests: XCTestCase {
    let small = ["--synthetic-rows", "600", "--synthetic-features", "24", "--synthetic-classes", "4", "--synthetic-test-rows", "200",
                 "--weight-decay", "0.01"]

    override func setUpWithError() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed (scripts/setup installs it)")
    }

    func metricsLines(_ path: String) -> [[String: Any]] {
        String(decoding: bytes(path), as: UTF8.self).split(separator: "\n")
            .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    func testTheMetricsShowTheObjectivePerIterationAndTheToleranceStopsEarly() throws {
        let dir = MPIRunner.temporaryDirectory()
        for optimizer in ["lbfgs", "newton"] {
            let metrics = "\(dir)/\(optimizer).jsonl"
            let r = try MPIRunner.run(ranks: 2, "dml-train", small + ["--optimizer", optimizer, "--steps", "200", "--tol", "1e-4",
                                                                     "--log-every", "1", "--metrics", metrics])
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertTrue(r.stdout.contains("converged after iteration"), r.stdout)
            let steps = metricsLines(metrics).filter { $0["event"] == nil }
            XCTAssertGreaterThan(steps.count, 2, optimizer)
            XCTAssertLessThan(steps.count, 200, "\(optimizer): --tol stopped it")
            XCTAssertEqual(steps.compactMap { $0["step"] as? Int }, Array(1...steps.count), "\(optimizer): one line per iteration")
            let objectives = steps.compactMap { $0["objective"] as? Double }
            XCTAssertEqual(objectives.count, steps.count, "\(optimizer): every line has the objective")
            XCTAssertEqual(steps.compactMap { $0["grad_norm"] as? Double }.count, steps.count)
            XCTAssertTrue(metricsLines(metrics).allSatisfy { $0["lr"] == nil }, "\(optimizer): no learning rate on any line")
            for (a, b) in zip(objectives, objectives.dropFirst()) { XCTAssertLessThanOrEqual(b, a, "\(optimizer): F never rises") }
            let norms = steps.compactMap { $0["grad_norm"] as? Double }
            XCTAssertLessThan(norms.last!, 1e-3 * norms.first!, optimizer)
            let progress = r.stdout.split(separator: "\n").filter { $0.hasPrefix("step ") }
            XCTAssertTrue(progress.allSatisfy { $0.contains("objective ") && $0.contains("grad norm ") }, r.stdout)
        }
    }

    /// np 1, 2 and 3 under mpirun reach the same objective (within 1e-6 relative: the sums' order depends on np).
    func testAnyNumberOfRanksReachesTheSameObjective() throws {
        let dir = MPIRunner.temporaryDirectory()
        for optimizer in ["lbfgs", "newton"] {
            var finals: [Double] = []
            for np in [1, 2, 3] {
                let metrics = "\(dir)/\(optimizer)-\(np).jsonl"
                let r = try MPIRunner.run(ranks: np, "dml-train", small + ["--optimizer", optimizer, "--steps", "100", "--tol", "1e-6",
                                                                          "--log-every", "1", "--metrics", metrics])
                XCTAssertEqual(r.status, 0, r.stderr)
                finals.append(try XCTUnwrap(metricsLines(metrics).last { $0["objective"] != nil }?["objective"] as? Double))
            }
            for f in finals.dropFirst() { XCTAssertEqual(f, finals[0], accuracy: 1e-6 * finals[0], "\(optimizer): \(finals)") }
        }
    }

    /// Killed as iteration k begins and resumed from the last checkpoint: the same final bytes as a run that
    /// was never stopped (the L-BFGS pairs and the trust radius are in the checkpoint).
    func testAKilledRunResumedEndsWithTheSameBits() throws {
        let dir = MPIRunner.temporaryDirectory()
        for (optimizer, stop) in [("lbfgs", 9), ("newton", 5)] {
            let args = small + ["--optimizer", optimizer, "--steps", "40", "--tol", "1e-5"]
            let reference = "\(dir)/\(optimizer)-reference.safetensors"
            let r = try MPIRunner.run(ranks: 2, "dml-train", args + ["--output", reference])
            XCTAssertEqual(r.status, 0, r.stderr)
            let out = "\(dir)/\(optimizer)-resumed.safetensors"
            let run = args + ["--checkpoint-dir", "\(dir)/\(optimizer)-ckpt", "--checkpoint-every", "3", "--output", out]
            let killed = try MPIRunner.run(ranks: 2, "dml-train", run, environment: ["DML_FAULT": "crash:rank=0:step=\(stop)"])
            XCTAssertNotEqual(killed.status, 0, optimizer)
            let resumed = try MPIRunner.run(ranks: 2, "dml-train", run + ["--resume"])
            XCTAssertEqual(resumed.status, 0, resumed.stderr)
            XCTAssertTrue(resumed.stdout.contains("(step \((stop - 1) / 3 * 3))"), resumed.stdout)
            XCTAssertFalse(bytes(out).isEmpty)
            XCTAssertTrue(bytes(out) == bytes(reference), "\(optimizer): stopped at iteration \(stop) and resumed: the same bits")
        }
    }

    func testFlagsThatMeanNothingAreRefusedWithOneMessage() throws {
        let cases: [([String], String)] = [
            (["--optimizer", "lbfgs", "--batch-size", "256"], "--optimizer lbfgs is a full-batch method: every iteration uses every training row, so --batch-size means nothing"),
            (["--optimizer", "newton", "--lr", "0.2"], "--lr means nothing to --optimizer newton"),
            (["--optimizer", "newton", "--momentum", "0.5"], "--momentum means nothing to --optimizer newton"),
            (["--optimizer", "lbfgs", "--model", "mlp"], "the MLP's loss is not convex"),
            (["--optimizer", "lbfgs", "--partition", "features"], "--optimizer lbfgs needs --partition rows"),
            (["--optimizer", "sgd", "--tol", "1e-4"], "--tol is the stopping tolerance of --optimizer lbfgs or newton"),
            (["--optimizer", "newton", "--lbfgs-memory", "5"], "--lbfgs-memory needs --optimizer lbfgs"),
            (["--optimizer", "lbfgs", "--lbfgs-memory", "0"], "--lbfgs-memory must be at least 1"),
        ]
        for (flags, message) in cases {
            let r = try MPIRunner.run(ranks: 2, "dml-train", small + flags + ["--steps", "3"])
            XCTAssertEqual(r.status, 64, "\(flags): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(message), "\(flags): \(r.stderr)")
            XCTAssertEqual(r.stderr.components(separatedBy: message).count - 1, 1, "\(flags): one message: \(r.stderr)")
        }
        let dir = MPIRunner.temporaryDirectory()
        let full = try MPIRunner.run(ranks: 2, "dml-train", small + ["--optimizer", "lbfgs", "--batch-size", "full", "--steps", "3",
                                                                  "--output", "\(dir)/a.safetensors"])
        XCTAssertEqual(full.status, 0, full.stderr)
        // Its effective configuration lists every setting at its value (--lr 0.2, --batch-size full, …) and repeats the run.
        let again = try MPIRunner.run(ranks: 2, "dml-train", ["--config", "\(dir)/a.config.toml", "--output", "\(dir)/b.safetensors"])
        XCTAssertEqual(again.status, 0, again.stderr)
        let a = try Safetensors.read(path: "\(dir)/a.safetensors"), b = try Safetensors.read(path: "\(dir)/b.safetensors")
        XCTAssertEqual(try a.floats("layers.0.weight"), try b.floats("layers.0.weight"))
    }

    /// `--cache-dir` (rows streamed from a shard cache): the passes read the cache a chunk at a time and give the
    /// in-memory run's bits, for CSR (LIBSVM, --sparse on) and dense (CSV) rows, at np 1 and 2.
    func testStreamedRowsGiveTheInMemoryBits() throws {
        let dir = MPIRunner.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var random = TestRandom(seed: 9)
        var svm = "", csv = "label,a,b,c,d,e\n"
        for _ in 0..<900 {
            var columns = Set<Int>()
            while columns.count < 5 { columns.insert(Int.random(in: 1...200, using: &random)) }
            svm += (Bool.random(using: &random) ? "+1" : "-1") + columns.sorted().map { " \($0):\(Int.random(in: 1...9, using: &random))" }.joined() + "\n"
            let x = (0..<5).map { _ in Float.random(in: -2...2, using: &random) }
            csv += "\(x[0] + x[1] > 0 ? 1 : 0)," + x.map { String(format: "%.4f", $0) }.joined(separator: ",") + "\n"
        }
        _ = FileManager.default.createFile(atPath: "\(dir)/train.svm", contents: Data(svm.utf8))
        _ = FileManager.default.createFile(atPath: "\(dir)/train.csv", contents: Data(csv.utf8))
        for (data, extra) in [("train.svm", ["--sparse", "on"]), ("train.csv", [])] {
            for optimizer in ["lbfgs", "newton"] {
                for np in [1, 2] {
                    let args = ["--data", "\(dir)/\(data)", "--model", "logistic", "--optimizer", optimizer, "--weight-decay", "1e-3",
                                "--steps", "30", "--tol", "1e-7"] + extra
                    let name = "\(data)-\(optimizer)-\(np)"
                    let memory = try MPIRunner.run(ranks: np, "dml-train", args + ["--output", "\(dir)/\(name)-memory.safetensors"])
                    XCTAssertEqual(memory.status, 0, memory.stderr)
                    let cache = "\(dir)/cache-\(name)"
                    try FileManager.default.createDirectory(atPath: cache, withIntermediateDirectories: true)
                    let streamed = try MPIRunner.run(ranks: np, "dml-train", args + ["--cache-dir", cache, "--max-memory", "512M",
                                                                                   "--output", "\(dir)/\(name)-streamed.safetensors"])
                    XCTAssertEqual(streamed.status, 0, streamed.stderr)
                    XCTAssertTrue(streamed.stdout.contains("streamed from shard caches"), streamed.stdout)
                    let a = try Safetensors.read(path: "\(dir)/\(name)-memory.safetensors")
                    let b = try Safetensors.read(path: "\(dir)/\(name)-streamed.safetensors")
                    for tensor in ["layers.0.weight", "layers.0.bias"] {
                        XCTAssertEqual(try a.floats(tensor).map(\.bitPattern), try b.floats(tensor).map(\.bitPattern), "\(name) \(tensor)")
                    }
                }
            }
        }
    }
}
