import XCTest
import DMLTraining
import DMLTestSupport

/// Files a job reads and writes: full disks, outputs that would overwrite inputs, writers killed mid-write,
/// and stop signals during start-up, with `dml-train` under a real `mpirun`.
final class FileSafetyTests: XCTestCase {
    let small = ["--synthetic-rows", "600", "--synthetic-features", "24", "--synthetic-classes", "4", "--synthetic-test-rows", "0",
                 "--batch-size", "60"]

    override func setUpWithError() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed (scripts/setup installs it)")
    }

    /// A tmpfs of `kilobytes` mounted at a new directory (root only), unmounted by the returned closure.
    func tinyDisk(kilobytes: Int) throws -> (path: String, unmount: () -> Void) {
        let dir = MPIRunner.temporaryDirectory() + "/disk"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let r = try MPIRunner.runProcess("mount", ["-t", "tmpfs", "-o", "size=\(kilobytes)k", "tmpfs", dir])
        try XCTSkipUnless(r.status == 0, "cannot mount a tmpfs here (needs root): \(r.stderr)")
        return (dir, { _ = try? MPIRunner.runProcess("umount", ["-l", dir]) })
    }

    func count(_ needle: String, in haystack: String) -> Int { haystack.components(separatedBy: needle).count - 1 }

    /// `--metrics` on a full disk: one clear error from rank 0 with exit 74 (a crash before), every rank
    /// stopping at the next step, and the last checkpoint intact and resumable.
    func testMetricsOnAFullDiskIsOneErrorAndTheCheckpointIsIntact() throws {
        let disk = try tinyDisk(kilobytes: 16)
        defer { disk.unmount() }
        let root = MPIRunner.temporaryDirectory()
        let args = small + ["--steps", "400", "--log-every", "1", "--checkpoint-dir", root + "/ckpt", "--checkpoint-every", "10"]
        let r = try MPIRunner.run(ranks: 2, "dml-train", args + ["--metrics", disk.path + "/m.jsonl", "--output", root + "/never.safetensors"])
        XCTAssertEqual(r.status, 74, r.stderr)
        XCTAssertEqual(count("dml-train: error", in: r.stderr), 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("cannot write \(disk.path)/m.jsonl: write failed"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/never.safetensors"))
        let resumed = try MPIRunner.run(ranks: 2, "dml-train", args + ["--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("resuming from \(root)/ckpt/ckpt-"), resumed.stdout)
    }

    /// The model on a full disk: one error (74), no model, and the metrics have no `final` line (a `final` line
    /// says the outputs exist). Room for the model but not its configuration record: the error says the model
    /// was written.
    func testAFailedModelWriteLeavesNoFinalMetricsLine() throws {
        let disk = try tinyDisk(kilobytes: 16)
        defer { disk.unmount() }
        let root = MPIRunner.temporaryDirectory()
        // An MLP of 24·400 + 400·4 ≈ 11 k parameters: 45 KB, more than the disk.
        let r = try MPIRunner.run(ranks: 2, "dml-train", small + ["--steps", "3", "--model", "mlp", "--hidden", "400", "--metrics", root + "/m.jsonl",
                                                               "--output", disk.path + "/m.safetensors"])
        XCTAssertEqual(r.status, 74, r.stderr)
        XCTAssertEqual(count("dml-train: error", in: r.stderr), 1, r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: disk.path + "/m.safetensors"))
        let metrics = try String(contentsOfFile: root + "/m.jsonl", encoding: .utf8)
        XCTAssertFalse(metrics.contains("\"final\""), metrics)
        // A model that fits (about 4 KB) beside 11 KB of filler, and a configuration record that does not.
        _ = FileManager.default.createFile(atPath: disk.path + "/filler", contents: Data(count: 11 * 1024))
        let record = try MPIRunner.run(ranks: 2, "dml-train", small + ["--steps", "3", "--output", disk.path + "/s.safetensors"])
        // (tmpfs counts 4 KiB pages: 3 of the 4 are the filler's; the model takes the last, the 10 KB record needs 3.)
        XCTAssertEqual(record.status, 74, record.stderr)
        XCTAssertTrue(record.stderr.contains("cannot write \(disk.path)/s.config.toml"), record.stderr)
        XCTAssertTrue(record.stderr.contains("(the model \(disk.path)/s.safetensors was written; its configuration record was not)"), record.stderr)
    }

    /// Checkpoints on a full disk: the write fails with one error (74), its temporary file is gone, and the
    /// previous checkpoint is intact.
    func testCheckpointsOnAFullDiskKeepThePreviousOne() throws {
        let disk = try tinyDisk(kilobytes: 24)
        defer { disk.unmount() }
        // 24 KiB: two checkpoints of this model (~10 KiB each with Adam's moments) fit, a third does not.
        let args = small + ["--steps", "100", "--optimizer", "adam", "--checkpoint-dir", disk.path + "/ckpt", "--checkpoint-every", "10",
                            "--keep-checkpoints", "0"]
        let r = try MPIRunner.run(ranks: 2, "dml-train", args)
        XCTAssertEqual(r.status, 74, r.stderr)
        XCTAssertEqual(count("dml-train: error", in: r.stderr), 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("No space left on device"), r.stderr)
        let names = try FileManager.default.contentsOfDirectory(atPath: disk.path + "/ckpt")
        XCTAssertFalse(names.contains { $0.contains(".tmp-") }, "\(names)")
        let kept = names.filter { $0.hasPrefix("ckpt-") }.sorted()
        XCTAssertFalse(kept.isEmpty)
        XCTAssertNoThrow(try Checkpoint.decode([UInt8](FileManager.default.contents(atPath: disk.path + "/ckpt/" + kept.last!)!)))
    }

    /// An output that is an input is refused before training (64), and the input is untouched; two outputs
    /// on one file likewise.
    func testAnOutputThatIsAnInputIsRefused() throws {
        let dir = MPIRunner.temporaryDirectory()
        let csv = dir + "/train.csv"
        var text = "label,a,b\n"
        for i in 0..<40 { text += "\(i % 2),\(Double(i) * 0.1),\(Double(40 - i) * 0.2)\n" }
        try text.write(toFile: csv, atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: dir + "/link.csv", withDestinationPath: csv)
        for (flag, path) in [("--output", csv), ("--metrics", dir + "/link.csv"), ("--timeline", dir + "/./train.csv")] {
            let r = try MPIRunner.run(ranks: 2, "dml-train", ["--data", csv, "--steps", "5", flag, path])
            XCTAssertEqual(r.status, 64, "\(flag): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("\(flag) \(path) is the same file as --data \(csv)"), r.stderr)
            XCTAssertEqual(try String(contentsOfFile: csv, encoding: .utf8), text, "the data is untouched")
        }
        let both = try MPIRunner.run(ranks: 2, "dml-train", small + ["--steps", "5", "--output", dir + "/x", "--metrics", dir + "/x"])
        XCTAssertEqual(both.status, 64, both.stderr)
        XCTAssertTrue(both.stderr.contains("--output and --metrics name the same file"), both.stderr)
        // An output on a name the checkpoint or cache directory's files take (another spelling of the directory
        // too) would replace a checkpoint or a cache, or be replaced by one.
        for (flag, path, extra) in [("--output", dir + "/ck/ckpt-00000005.safetensors", ["--checkpoint-dir", dir + "/ck"]),
                                    ("--metrics", dir + "/ck/../ck/ckpt-00000005.part-0-of-2.safetensors", ["--checkpoint-dir", dir + "/ck"]),
                                    ("--timeline", dir + "/cache/train.csv.0.rank0of2.dmlshard", ["--cache-dir", dir + "/cache"])] {
            try FileManager.default.createDirectory(atPath: dir + "/ck", withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: dir + "/cache", withIntermediateDirectories: true)
            let r = try MPIRunner.run(ranks: 2, "dml-train", ["--data", csv, "--steps", "5", flag, path] + extra)
            XCTAssertEqual(r.status, 64, "\(flag): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("\(flag) \(path) is a name of the files \(extra[0]) \(extra[1]) holds"), r.stderr)
            XCTAssertEqual(r.stderr.components(separatedBy: "error:").count, 2, "one message: \(r.stderr)")
        }
    }

    /// Dense LIBSVM rows of a width known before reading (`--sparse off` with `--hash-bits`) that would not fit are
    /// refused before the parse with the memory message, not a failed 25 GB allocation on every rank.
    func testDenseRowsOfAKnownWidthThatDoNotFitAreRefusedBeforeReading() throws {
        let dir = MPIRunner.temporaryDirectory(), svm = dir + "/h.svm"
        let text = (0..<3000).map { i in "\(i % 2) \(i % 97 + 1):0.5 \(i % 89 + 200):1.5" }.joined(separator: "\n") + "\n"
        try text.write(toFile: svm, atomically: true, encoding: .utf8)
        let r = try MPIRunner.run(ranks: 2, "dml-train", ["--data", svm, "--sparse", "off", "--hash-bits", "28", "--model", "logistic", "--epochs", "1"])
        XCTAssertEqual(r.status, 64, r.stderr)
        XCTAssertEqual(count("dml-train: error", in: r.stderr), 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("the training rows of \(svm) would take about"), r.stderr)
    }

    /// A temporary file left by a writer that was killed (its process is gone) is removed by the next write
    /// of that file; a live writer's is not touched.
    func testAKilledWritersTemporaryFileIsRemoved() throws {
        let dir = MPIRunner.temporaryDirectory()
        let host = ProcessInfo.processInfo.hostName
        let dead = dir + "/.out.safetensors.tmp-\(host)-\(Int32.max)"
        let live = dir + "/.out.safetensors.tmp-\(host)-\(getpid())"
        for p in [dead, live] { _ = FileManager.default.createFile(atPath: p, contents: Data([1, 2, 3])) }
        let r = try MPIRunner.run(ranks: 2, "dml-train", small + ["--steps", "5", "--output", dir + "/out.safetensors"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dead), "the dead writer's temporary file is gone")
        XCTAssertTrue(FileManager.default.fileExists(atPath: live), "a live writer's is kept")
    }

    /// A stop signal while the ranks start up (in MPI_Init or loading) is kept for the first step's agreement:
    /// exit 75, not death by the signal (138). The signal is sent once the rank's handler is in place
    /// (/proc shows it caught), which dml-train does before main.
    func testAStopSignalDuringStartUpIs75() throws {
        for _ in 0..<3 {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            let binary = MPIRunner.executable("dml-train")
            process.arguments = ["mpirun", "--oversubscribe", "-np", "2", binary] + small + ["--steps", "50"]
            process.environment = MPIRunner.environment()
            let err = Pipe()
            process.standardError = err
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            let start = Date()
            var signalled = Set<Int32>()
            while signalled.count < 2 && Date().timeIntervalSince(start) < 20 {
                let ranks = try MPIRunner.runProcess("pgrep", ["-f", "^" + binary]).stdout.split(separator: "\n").compactMap { Int32($0) }
                for pid in ranks where !signalled.contains(pid) {
                    // SigCgt is a hex mask of caught signals: SIGUSR1 (10) is bit 9.
                    let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
                    guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("SigCgt:") }),
                          let mask = UInt64(line.dropFirst(7).trimmingCharacters(in: .whitespaces), radix: 16), mask & (1 << 9) != 0 else { continue }
                    kill(pid, SIGUSR1)
                    signalled.insert(pid)
                }
            }
            process.waitUntilExit()
            let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            XCTAssertEqual(process.terminationStatus, 75, stderr)
            XCTAssertTrue(stderr.contains("dml-train: stopped by SIGUSR1 after step 0"), stderr)
        }
    }
}
