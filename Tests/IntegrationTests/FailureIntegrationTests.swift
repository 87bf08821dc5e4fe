import XCTest
import DMLTraining
import DMLTestSupport

/// Dead and stalled ranks, preemption and failed checkpoint writes, with `dml-train` under a real `mpirun`.
final class FailureIntegrationTests: XCTestCase {
    let small = ["--synthetic-rows", "600", "--synthetic-features", "24", "--synthetic-classes", "4", "--synthetic-test-rows", "200"]

    override func setUpWithError() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed (scripts/setup installs it)")
    }


    /// This test's dml-train processes still alive (none may outlive a job); `marker` is an argument only
    /// this test's job has (other jobs may run the same binary meanwhile).
    func leftovers(_ marker: String) throws -> String {
        let r = try MPIRunner.runProcess("pgrep", ["-f", MPIRunner.executable("dml-train") + " .*" + marker])
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func timed(_ body: () throws -> MPIRunner.Result) rethrows -> (MPIRunner.Result, Double) {
        let start = Date()
        let r = try body()
        return (r, Date().timeIntervalSince(start))
    }

    /// One deadline mechanism for every collective of the job: a rank that stops in any phase (the start of a
    /// step, inside the gradient allreduce, half-way through rank 0's checkpoint write, the replica check, the
    /// evaluation, the start-up, the end) ends the job within the deadline plus the roll call, with one
    /// message naming that rank — rank 0 included (rank 1 then reports).
    func testAStallInEveryPhaseEndsTheJobNamingTheRank() throws {
        let marker = MPIRunner.temporaryDirectory()
        let phases: [(fault: String, phase: String)] = [
            ("step=5", "the start of step 5"),
            ("step=5:at=allreduce", "the gradient allreduce of step 5"),
            ("step=8:at=checkpoint", "the checkpoint after step 8"),
            ("step=10:at=verify", "the replica check after step 10"),
            ("step=10:at=eval", "the evaluation after step 10"),
            ("step=21", "the replica check after step 20"),
        ]
        for (fault, phase) in phases {
            for (np, rank) in [(3, 2), (3, 0)] {
                let dir = MPIRunner.temporaryDirectory()
                let (r, seconds) = try timed {
                    try MPIRunner.run(ranks: np, "dml-train", small + ["--steps", "20", "--batch-size", "60", "--collective-timeout", "1",
                                                                      "--checkpoint-dir", "\(dir)/ckpt", "--checkpoint-every", "4",
                                                                      "--verify-every", "5", "--metrics", "\(marker)/m.jsonl"],
                                      environment: ["DML_FAULT": "hang:rank=\(rank):\(fault)"], timeout: 30)
                }
                let expected = "dml-train: error: collective timeout (--collective-timeout): \(phase) did not finish within 1"
                XCTAssertNotEqual(r.status, 0, fault)
                XCTAssertLessThan(seconds, 1 + 5 + 2, "\(fault) rank \(rank): ended in \(seconds) s (deadline + 5 s, + 2 s for mpirun)")
                XCTAssertTrue(r.stderr.contains(expected), "\(fault) rank \(rank): \(r.stderr)")
                XCTAssertTrue(r.stderr.contains(": rank \(rank) did not answer"), "\(fault) rank \(rank): \(r.stderr)")
                XCTAssertEqual(r.stderr.components(separatedBy: "dml-train: error").count - 1, 1, "one message: \(r.stderr)")
                XCTAssertEqual(try leftovers(marker), "", "no process left behind")
                print("stall \(fault) on rank \(rank) of \(np): job over in \(String(format: "%.1f", seconds)) s")
            }
        }
    }

    func testARankStalledDuringStartUpEndsTheJob() throws {
        let marker = MPIRunner.temporaryDirectory() + "/m.jsonl"
        let (r, seconds) = try timed {
            try MPIRunner.run(ranks: 3, "dml-train", small + ["--steps", "20", "--collective-timeout", "1", "--metrics", marker],
                              environment: ["DML_FAULT": "hang:rank=2:step=0"], timeout: 30)
        }
        XCTAssertNotEqual(r.status, 0)
        XCTAssertLessThan(seconds, 15, "ended in \(seconds) s")
        XCTAssertTrue(r.stderr.contains("the start-up (data loading, configuration agreement, checkpoint directory, resume; 5 × --collective-timeout) did not finish within 5 s: rank 2 did not answer"), r.stderr)
        XCTAssertEqual(try leftovers(marker), "", "no process left behind")
    }

    /// With the shared-memory allreduce too (and `hier`, which runs it inside a node): the stall is reported and
    /// the job ends, although the window's collective free cannot complete without the stalled rank (the
    /// failing rank skips it).
    func testAStallUnderTheSharedMemoryAllreduceEndsTheJob() throws {
        for algorithm in ["shm", "hier"] {
            let (r, seconds) = try timed {
                try MPIRunner.run(ranks: 2, "dml-train", small + ["--steps", "20", "--allreduce", algorithm, "--collective-timeout", "2"],
                                  environment: ["DML_FAULT": "hang:rank=1:step=5"], timeout: 60)
            }
            XCTAssertEqual(r.status, 69, "\(algorithm): \(r.stderr)")
            XCTAssertLessThan(seconds, 30, algorithm)
            XCTAssertTrue(r.stderr.contains("the start of step 5 did not finish within 2 s: rank 1 did not answer"), "\(algorithm): \(r.stderr)")
        }
    }

    func testADeadRankEndsTheJobWithinSecondsNamingTheRankAndTheStep() throws {
        let marker = MPIRunner.temporaryDirectory() + "/m.jsonl"
        let (r, seconds) = try timed {
            try MPIRunner.run(ranks: 3, "dml-train", small + ["--steps", "20", "--metrics", marker], environment: ["DML_FAULT": "crash:rank=1:step=5"], timeout: 30)
        }
        XCTAssertNotEqual(r.status, 0)
        XCTAssertLessThan(seconds, 10)
        XCTAssertTrue(r.stderr.contains("dml-train: error: SIGTERM received: a stop signal arrived while waiting in the start of step 5 for rank 1: that rank has probably died"), r.stderr)
        XCTAssertTrue(r.stderr.contains("process rank 1 with PID"), "mpirun names it too: \(r.stderr)")
        XCTAssertEqual(try leftovers(marker), "")
    }

    func testAPreemptedRunCheckpointsExitsWith75AndResumesExactly() throws {
        let dir = MPIRunner.temporaryDirectory()
        let args = small + ["--steps", "30", "--batch-size", "64", "--optimizer", "adam", "--lr", "0.05"]
        let reference = try MPIRunner.run(ranks: 2, "dml-train", args + ["--output", "\(dir)/ref.safetensors"])
        XCTAssertEqual(reference.status, 0, reference.stderr)
        let run = args + ["--checkpoint-dir", "\(dir)/ckpt", "--checkpoint-every", "4", "--output", "\(dir)/out.safetensors"]
        let stopped = try MPIRunner.run(ranks: 2, "dml-train", run, environment: ["DML_FAULT": "preempt:rank=1:step=7"])
        XCTAssertEqual(stopped.status, Preempted.exitStatus, stopped.stderr)
        XCTAssertTrue(stopped.stderr.contains("dml-train: stopped by SIGTERM after step 6; checkpoint \(dir)/ckpt/ckpt-00000006.safetensors written"),
                      stopped.stderr)
        XCTAssertEqual(try Checkpoint.decode(bytes("\(dir)/ckpt/ckpt-00000006.safetensors")).step, 6)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(dir)/out.safetensors"))
        let resumed = try MPIRunner.run(ranks: 2, "dml-train", run + ["--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(bytes("\(dir)/out.safetensors") == bytes("\(dir)/ref.safetensors"), "the same bits as the uninterrupted run")
    }

    /// A real signal to mpirun in the middle of a long run: SIGUSR1 is forwarded to the ranks (mpirun then
    /// exits 75); SIGTERM makes mpirun signal the ranks itself a second later (it exits 1, the ranks 75).
    func testSignalsToMpirunCheckpointAndStop() throws {
        for (sig, status) in [(SIGUSR1, Preempted.exitStatus), (SIGTERM, 1)] {
            let dir = MPIRunner.temporaryDirectory()
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["mpirun", "--oversubscribe", "-np", "2", MPIRunner.executable("dml-train")] + small
                + ["--steps", "10000000", "--batch-size", "64", "--checkpoint-dir", "\(dir)/ckpt", "--checkpoint-every", "200"]
            process.environment = MPIRunner.environment()
            let err = Pipe()
            process.standardError = err
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            let start = Date()
            while (try? FileManager.default.contentsOfDirectory(atPath: "\(dir)/ckpt"))?.isEmpty ?? true, Date().timeIntervalSince(start) < 30 {
                usleep(50_000)
            }
            kill(process.processIdentifier, sig)
            let killer = DispatchWorkItem { if process.isRunning { process.interrupt(); kill(process.processIdentifier, SIGKILL) } }
            DispatchQueue.global().asyncAfter(deadline: .now() + 20, execute: killer)
            let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            killer.cancel()
            XCTAssertEqual(process.terminationStatus, status, "signal \(sig): \(stderr)")
            XCTAssertTrue(stderr.contains("dml-train: stopped by \(Preemption.name(sig)) after step"), stderr)
            let files = try FileManager.default.contentsOfDirectory(atPath: "\(dir)/ckpt").sorted()
            let last = try Checkpoint.decode(bytes("\(dir)/ckpt/\(files.last!)"))
            XCTAssertTrue(stderr.contains("after step \(last.step); checkpoint"), "the newest checkpoint is the stop step: \(files) \(stderr)")
            XCTAssertEqual(try leftovers(dir), "")
        }
    }

    func testAFailedCheckpointWriteKeepsThePreviousOneIntact() throws {
        let dir = MPIRunner.temporaryDirectory()
        let args = small + ["--steps", "20", "--batch-size", "64", "--checkpoint-dir", "\(dir)/ckpt", "--checkpoint-every", "5",
                            "--output", "\(dir)/never.safetensors"]
        let r = try MPIRunner.run(ranks: 2, "dml-train", args, environment: ["DML_FAULT": "writefail:rank=0:step=10"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertEqual(r.stderr.components(separatedBy: "dml-train: error").count - 1, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("cannot write \(dir)/ckpt/ckpt-00000010.safetensors: write failed (injected fault)"), r.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: "\(dir)/ckpt").filter { $0 != ".dml-lock" }, ["ckpt-00000005.safetensors"],
                       "no temporary left")
        XCTAssertEqual(try Checkpoint.decode(bytes("\(dir)/ckpt/ckpt-00000005.safetensors")).step, 5)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(dir)/never.safetensors"))
        // The resume continues from the intact one.
        let resumed = try MPIRunner.run(ranks: 2, "dml-train", args + ["--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("resuming from \(dir)/ckpt/ckpt-00000005.safetensors (step 5)"), resumed.stdout)
    }

    func testAnUnusableCheckpointDirectoryIsReportedBeforeTheFirstStep() throws {
        let dir = MPIRunner.temporaryDirectory()
        _ = FileManager.default.createFile(atPath: "\(dir)/file", contents: Data("x".utf8))
        for (path, expected) in [("\(dir)/file", "cannot create the checkpoint directory"),
                                 ("\(dir)/file/sub", "cannot create the checkpoint directory")] {
            let r = try MPIRunner.run(ranks: 2, "dml-train", small + ["--steps", "5", "--checkpoint-dir", path])
            XCTAssertNotEqual(r.status, 0)
            XCTAssertTrue(r.stderr.contains(expected) && r.stderr.contains(path), r.stderr)
            XCTAssertEqual(r.stderr.components(separatedBy: "dml-train: error").count - 1, 1, r.stderr)
            XCTAssertFalse(r.stdout.contains("step "), "nothing trained: \(r.stdout)")
        }
    }
}

/// `--timeline` under mpirun finds a straggler: rank 2 made 200 µs slower per row (`DML_FAULT=slow`) is named
/// as the slowest rank, and in the trace the other ranks wait for it.
final class TimelineIntegrationTests: XCTestCase {
    func testTheTimelineNamesTheSlowRank() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed")
        let path = MPIRunner.temporaryDirectory() + "/trace.json"
        let r = try MPIRunner.run(ranks: 3, "dml-train", ["--synthetic-rows", "600", "--synthetic-features", "16", "--steps", "12",
                                                         "--batch-size", "60", "--timeline", path],
                                  environment: ["DML_FAULT": "slow:rank=2:step=1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("slowest rank 2 at"), r.stdout)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
        let spans = (json["traceEvents"] as! [[String: Any]]).filter { $0["ph"] as? String == "X" }
        func total(_ name: String, _ rank: Int) -> Double {
            spans.filter { $0["name"] as? String == name && $0["pid"] as? Int == rank }.map { $0["dur"] as! Double }.reduce(0, +)
        }
        XCTAssertGreaterThan(total("compute", 2), 12 * 20 * 200, "rank 2 computes 200 µs more per row, 20 rows a step (µs)")
        XCTAssertGreaterThan(total("wait", 0), total("wait", 2) + 12 * 2_000, "rank 0 waits for rank 2")
    }
}

/// `--balance` under mpirun: a rank made slow per row gives rows away at the first epoch boundary, the
/// slowest rank's predicted compute falls, and the model written has the same bytes as a run where
/// nothing moved.
final class BalanceIntegrationTests: XCTestCase {
    func testASlowRankGivesRowsAwayAndTheBitsStay() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed")
        let dir = MPIRunner.temporaryDirectory()
        let args = ["--synthetic-rows", "1500", "--synthetic-features", "32", "--epochs", "3", "--batch-size", "150", "--balance"]
        let slow = try MPIRunner.run(ranks: 3, "dml-train", args + ["--output", dir + "/slow.safetensors"],
                                     environment: ["DML_FAULT": "slow:rank=2:step=1"])
        XCTAssertEqual(slow.status, 0, slow.stderr)
        let line = slow.stdout.split(separator: "\n").first { $0.hasPrefix("balance: after step 10, rows per rank") }
        XCTAssertNotNil(line, slow.stdout)
        let rows = line.map { String($0).components(separatedBy: "rows per rank ")[1].components(separatedBy: " (")[0]
            .components(separatedBy: ", ").compactMap { Int($0) } } ?? []
        XCTAssertEqual(rows.count, 3)
        XCTAssertLessThan(rows.last ?? 500, 400, "the slow rank holds fewer than its 500 rows")
        let still = try MPIRunner.run(ranks: 3, "dml-train", args + ["--output", dir + "/still.safetensors"])
        XCTAssertEqual(still.status, 0, still.stderr)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/slow.safetensors")),
                       try Data(contentsOf: URL(fileURLWithPath: dir + "/still.safetensors")))
        let bad = try MPIRunner.run(ranks: 1, "dml-train", ["--balance", "--compress", "fp16"])
        XCTAssertEqual(bad.status, 64)
        XCTAssertTrue(bad.stderr.contains("--balance sums gradients in its own fixed order"), bad.stderr)
    }
}
