import XCTest
import DMLTestSupport
#if canImport(FoundationXML)
import FoundationXML
#endif

/// The benchmark suite (`benchmarks/run --quick`), `dml-bench train`, and the scale-out paths: TCP instead
/// of shared memory, and the Slurm script's body with a hostfile.
final class BenchmarkSuiteTests: XCTestCase {
    /// The repository root (this file is Tests/IntegrationTests/BenchmarkSuiteTests.swift).
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    let small = ["--synthetic-rows", "600", "--synthetic-features", "24", "--synthetic-classes", "4", "--synthetic-test-rows", "200"]

    override func setUpWithError() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed (scripts/setup installs it)")
    }

    /// The CSV's rows as dictionaries; fails the test unless every line has the header's number of fields.
    func readCSV(_ path: String, header prefix: String, file: StaticString = #filePath, line: UInt = #line) throws -> [[String: String]] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let lines = text.split(separator: "\n").map(String.init)
        XCTAssertTrue(lines.first?.hasPrefix(prefix) == true, "\(path) header: \(lines.first ?? "")", file: file, line: line)
        let keys = lines[0].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        XCTAssertGreaterThan(lines.count, 1, "\(path) has rows", file: file, line: line)
        return lines.dropFirst().map { l in
            let fields = l.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            XCTAssertEqual(fields.count, keys.count, "\(path): \(l)", file: file, line: line)
            return Dictionary(uniqueKeysWithValues: zip(keys, fields))
        }
    }

    func testQuickSuiteWritesCSVMarkdownAndSVG() throws {
        let out = MPIRunner.temporaryDirectory()
        let r = try MPIRunner.runProcess("python3", ["\(root)/benchmarks/run", "--quick", "--out", out,
                                                     "--bin", MPIRunner.productsDirectory.path], timeout: 180)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)

        let allreduce = try readCSV("\(out)/allreduce.csv", header: "algorithm,np,bytes,time_us,algbw_GBps,busbw_GBps")
        XCTAssertEqual(Set(allreduce.map { $0["algorithm"]! }), ["mpi", "ring", "shm", "rd", "central", "auto"])
        XCTAssertTrue(allreduce.allSatisfy { Double($0["time_us"]!)! > 0 && Double($0["busbw_GBps"]!)! > 0 })
        let train = try readCSV("\(out)/train.csv", header: "model,np,batch,samples_per_s")
        XCTAssertEqual(Set(train.map { "\($0["model"]!)@\($0["np"]!)" }), ["softmax@1", "mlp@1", "softmax@2", "mlp@2", "softmax@4", "mlp@4"])
        XCTAssertTrue(train.allSatisfy { Double($0["samples_per_s"]!)! > 0 })
        // np=4 on this machine's cores is oversubscribed exactly when the machine has fewer than 4.
        let cores = ProcessInfo.processInfo.activeProcessorCount
        for row in train {
            XCTAssertEqual(row["oversubscribed"], Int(row["np"]!)! > cores ? "yes" : "no", "\(row)")
        }
        // The same global batches on any np: the final loss does not depend on it (up to float rounding).
        for model in ["softmax", "mlp"] {
            let losses = train.filter { $0["model"] == model }.map { Double($0["final_loss"]!)! }
            XCTAssertLessThan(losses.max()! - losses.min()!, 1e-3, "\(model) final losses \(losses)")
        }
        _ = try readCSV("\(out)/kernels.csv", header: "kernel,n,gflops,GBps")
        _ = try readCSV("\(out)/first_step.csv", header: "np,oversubscribed,job_wall_s_median")
        let model = try readCSV("\(out)/costmodel.csv", header: "algorithm,transport,np,bytes,measured_us,predicted_us,error_pct")
        XCTAssertTrue(model.allSatisfy { Double($0["predicted_us"]!)!.isFinite })

        let report = try String(contentsOfFile: "\(out)/report.md", encoding: .utf8)
        for section in ["## Allreduce", "## Kernels", "## Training throughput", "## Time to first step", "## Cost model", "## Commands"] {
            XCTAssertTrue(report.contains(section), "report.md lacks \(section)")
        }
        XCTAssertTrue(report.contains("4 (oversubscribed)") == (cores < 4), "oversubscribed runs are flagged")

        for svg in ["allreduce-busbw.svg", "train-scaling.svg"] {
            let data = try Data(contentsOf: URL(fileURLWithPath: "\(out)/\(svg)"))
            let parser = XMLParser(data: data)
            XCTAssertTrue(parser.parse(), "\(svg) is well-formed XML: \(String(describing: parser.parserError))")
            let text = String(decoding: data, as: UTF8.self)
            XCTAssertTrue(text.hasPrefix("<svg xmlns=\"http://www.w3.org/2000/svg\""), svg)
            XCTAssertTrue(text.contains("<polyline"), "\(svg) draws lines")
        }
    }

    func testDMLTrainRunsOverTCP() throws {
        let r = try MPIRunner.run(ranks: 2, "dml-train", small + ["--steps", "20", "--log-every", "10"],
                                  mpirunOptions: ["--mca", "btl", "self,tcp"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("2 ranks"), r.stdout)
        XCTAssertTrue(r.stdout.contains("done: 20 steps"), r.stdout)
    }

    func testSlurmScriptBodyRunsWithALocalhostHostfile() throws {
        let dir = MPIRunner.temporaryDirectory()
        try "localhost slots=2\n".write(toFile: "\(dir)/hosts", atomically: true, encoding: .utf8)
        let r = try MPIRunner.runProcess("bash", ["\(root)/benchmarks/slurm/dml-train.sbatch"] + small + ["--steps", "10", "--output", "\(dir)/m.safetensors"],
                                         environment: ["HOSTFILE": "\(dir)/hosts", "DML_BIN": MPIRunner.productsDirectory.path, "BTL": "self,tcp"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("2 ranks from hostfile"), r.stdout)
        XCTAssertTrue(r.stdout.contains("done: 10 steps"), r.stdout)
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(dir)/m.safetensors"))
    }

    /// The sbatch branch: inside an allocation mpirun takes the nodes from Slurm's variables (here a one-node
    /// allocation of localhost, set by hand as sbatch would).
    func testSlurmScriptUnderASimulatedAllocation() throws {
        let slurm = ["SLURM_JOB_ID": "7", "SLURM_JOBID": "7", "SLURM_NTASKS": "2", "SLURM_JOB_NUM_NODES": "1",
                     "SLURM_JOB_NODELIST": "localhost", "SLURM_NODELIST": "localhost", "SLURM_TASKS_PER_NODE": "2",
                     "DML_BIN": MPIRunner.productsDirectory.path]
        let r = try MPIRunner.runProcess("bash", ["\(root)/benchmarks/slurm/dml-train.sbatch"] + small + ["--steps", "10"], environment: slurm)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("dml-train job 7: 2 ranks on 1 nodes"), r.stdout)
        XCTAssertTrue(r.stdout.contains("2 ranks, global batch"), r.stdout)
        XCTAssertTrue(r.stdout.contains("done: 10 steps"), r.stdout)
    }

    /// The script's own settings are refused when misspelt, before anything is launched (exit 64, one line).
    func testSlurmScriptRefusesAnUnknownLauncherOrRequeueSetting() throws {
        for (key, value) in [("LAUNCHER", "srunn"), ("REQUEUE", "yes")] {
            let r = try MPIRunner.runProcess("bash", ["\(root)/benchmarks/slurm/dml-train.sbatch", "--steps", "1"],
                                             environment: [key: value, "SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"])
            XCTAssertEqual(r.status, 64, r.stdout + r.stderr)
            XCTAssertTrue(r.stderr.hasPrefix("dml-train.sbatch: \(key) must be ") && r.stderr.contains("(got '\(value)')"), r.stderr)
            XCTAssertEqual(r.stdout, "", "nothing launched")
        }
    }

    /// `--overlap` times the MLP without and with overlapping bucket allreduces in one run; the benchmark
    /// itself fails unless both end with the same loss bits.
    func testDMLBenchTrainTimesTheMLPWithAndWithoutOverlap() throws {
        let csv = MPIRunner.temporaryDirectory() + "/train.csv"
        let r = try MPIRunner.run(ranks: 2, "dml-bench", ["train", "--models", "mlp", "--hidden", "48,32", "--bucket-kb", "2",
                                                          "--overlap", "--rows", "512", "--features", "24", "--batch", "64",
                                                          "--steps", "20", "--warmup", "2", "--csv", csv])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("overlap: MLP step"), r.stdout)
        XCTAssertTrue(r.stdout.contains("final loss the same bits"), r.stdout)
        let rows = try readCSV(csv, header: "model,np,batch,samples_per_s")
        XCTAssertEqual(rows.map { $0["model"]! }, ["mlp", "mlp+overlap"])
        XCTAssertEqual(rows[0]["final_loss"], rows[1]["final_loss"])
    }

    /// `--reproducible` times each model's default and reproducible rows together, one step of each in turn, and
    /// prints their ratio; with `--overlap` the MLP's overlap row still follows.
    func testDMLBenchTrainTimesTheReproducibleRowsWithTheirDefaults() throws {
        let csv = MPIRunner.temporaryDirectory() + "/repro.csv"
        let r = try MPIRunner.run(ranks: 2, "dml-bench", ["train", "--models", "softmax,mlp", "--hidden", "48", "--reproducible", "--overlap",
                                                          "--rows", "1024", "--features", "24", "--batch", "128", "--steps", "20",
                                                          "--warmup", "2", "--csv", csv])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        for model in ["softmax", "mlp"] { XCTAssertTrue(r.stdout.contains("reproducible: \(model) step"), r.stdout) }
        let rows = try readCSV(csv, header: "model,np,batch,samples_per_s")
        XCTAssertEqual(rows.map { $0["model"]! }, ["softmax", "softmax+repro", "mlp", "mlp+repro", "mlp+overlap"])
        XCTAssertEqual(rows[2]["final_loss"], rows[4]["final_loss"])
    }

    func testDMLBenchTrainRejectsABadModelOnce() throws {
        let r = try MPIRunner.run(ranks: 2, "dml-bench", ["train", "--models", "softmax,resnet"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertEqual(r.stderr.components(separatedBy: "--models must be softmax, mlp or (with --data) logistic").count - 1, 1, r.stderr)
        let o = try MPIRunner.run(ranks: 2, "dml-bench", ["train", "--models", "softmax", "--overlap"])
        XCTAssertNotEqual(o.status, 0)
        XCTAssertEqual(o.stderr.components(separatedBy: "--overlap times the MLP").count - 1, 1, o.stderr)
    }
}
