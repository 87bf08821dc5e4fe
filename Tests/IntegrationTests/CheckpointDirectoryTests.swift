import XCTest
import DMLTraining
import DMLTestSupport

/// A checkpoint directory belongs to one run at a time (`CheckpointStore`): stale, shared and foreign
/// directories, and damaged files, with `dml-train` under a real `mpirun`.
final class CheckpointDirectoryTests: XCTestCase {
    let small = ["--synthetic-rows", "600", "--synthetic-features", "24", "--synthetic-classes", "4", "--synthetic-test-rows", "0",
                 "--batch-size", "60"]

    override func setUpWithError() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed (scripts/setup installs it)")
    }

    func checkpoints(_ dir: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasPrefix("ckpt-") }.sorted()
    }


    /// The reported loss of work: a fresh run in a directory left by a longer run. It is refused (nothing is
    /// pruned); a resume whose --steps end before that run's checkpoint is refused as well; with
    /// --overwrite-checkpoints the old files go and the new run's stay.
    func testAStaleDirectoryIsRefusedNotPrunedOrResumed() throws {
        let dir = MPIRunner.temporaryDirectory() + "/ckpt"
        let old = small + ["--steps", "80", "--checkpoint-dir", dir, "--checkpoint-every", "10"]
        XCTAssertEqual(try MPIRunner.run(ranks: 2, "dml-train", old).status, 0)
        XCTAssertEqual(checkpoints(dir), ["ckpt-00000060.safetensors", "ckpt-00000070.safetensors", "ckpt-00000080.safetensors"])

        let fresh = small + ["--steps", "20", "--checkpoint-dir", dir, "--checkpoint-every", "5"]
        let refused = try MPIRunner.run(ranks: 2, "dml-train", fresh)
        XCTAssertEqual(refused.status, 78, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("already holds 3 checkpoints") && refused.stderr.contains("the newest at step 80"), refused.stderr)
        XCTAssertFalse(refused.stdout.contains("step "), "nothing trained")
        XCTAssertEqual(checkpoints(dir).count, 3, "nothing deleted")

        let past = try MPIRunner.run(ranks: 2, "dml-train", fresh + ["--resume", "--output", dir + "/../never.safetensors"])
        XCTAssertEqual(past.status, 78, past.stderr)
        XCTAssertTrue(past.stderr.contains("it is at step 80, past this run's last step (20)"), past.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/../never.safetensors"), "the old weights are not written out")

        let over = try MPIRunner.run(ranks: 2, "dml-train", fresh + ["--overwrite-checkpoints"])
        XCTAssertEqual(over.status, 0, over.stderr)
        XCTAssertTrue(over.stdout.contains("--overwrite-checkpoints: deleted 3 checkpoints (up to step 80)"), over.stdout)
        XCTAssertEqual(checkpoints(dir), ["ckpt-00000010.safetensors", "ckpt-00000015.safetensors", "ckpt-00000020.safetensors"])
    }

    /// Two jobs on one directory: the second is refused at start-up (exit 78), naming the holder; the first
    /// finishes with all its checkpoints. The lock goes with the process, however it ends.
    func testTwoJobsCannotShareADirectory() throws {
        let dir = MPIRunner.temporaryDirectory() + "/ckpt"
        let long = small + ["--steps", "200000", "--checkpoint-dir", dir, "--checkpoint-every", "1000", "--log-every", "100000"]
        let first = Process()
        first.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        first.arguments = ["mpirun", "--oversubscribe", "-np", "2", MPIRunner.executable("dml-train")] + long
        first.environment = MPIRunner.environment()
        first.standardOutput = FileHandle.nullDevice
        first.standardError = FileHandle.nullDevice
        try first.run()
        defer { if first.isRunning { kill(first.processIdentifier, SIGUSR1); first.waitUntilExit() } }
        let start = Date()
        while checkpoints(dir).isEmpty && Date().timeIntervalSince(start) < 30 { usleep(50_000) }
        let second = try MPIRunner.run(ranks: 2, "dml-train", small + ["--steps", "20", "--checkpoint-dir", dir, "--resume"])
        XCTAssertEqual(second.status, 78, second.stderr)
        XCTAssertTrue(second.stderr.contains("the checkpoint directory \(dir) is in use by another job (process "), second.stderr)
        // The first job is stopped (SIGUSR1 to mpirun: checkpoint, exit 75); its lock is gone with it.
        kill(first.processIdentifier, SIGUSR1)
        first.waitUntilExit()
        XCTAssertEqual(first.terminationStatus, 75)
        let newest = try XCTUnwrap(checkpoints(dir).last.flatMap { Int($0.dropFirst(5).prefix(8)) })
        let after = try MPIRunner.run(ranks: 2, "dml-train", long + ["--resume", "--steps", String(newest + 10)])
        XCTAssertEqual(after.status, 0, after.stderr)
    }

    /// Pruning deletes only this run's files; a killed writer's temporary file is removed at the next start.
    func testPruningKeepsForeignFilesAndStrayTemporariesAreRemoved() throws {
        let root = MPIRunner.temporaryDirectory(), dir = root + "/ckpt"
        let args = small + ["--steps", "20", "--checkpoint-dir", dir, "--checkpoint-every", "5", "--keep-checkpoints", "2"]
        // Another run's checkpoint (same configuration, so it would load) copied in by hand, older than ours.
        XCTAssertEqual(try MPIRunner.run(ranks: 2, "dml-train", small + ["--steps", "3", "--checkpoint-dir", root + "/other"]).status, 0)
        // A killed writer (rank 0 stopped half-way through the file at step 10).
        let stalled = try MPIRunner.run(ranks: 2, "dml-train", args + ["--collective-timeout", "1"],
                                        environment: ["DML_FAULT": "hang:rank=0:step=10:at=checkpoint"], timeout: 30)
        XCTAssertEqual(stalled.status, 69, stalled.stderr)
        let names = try FileManager.default.contentsOfDirectory(atPath: dir)
        XCTAssertTrue(names.contains { $0.hasPrefix(".ckpt-00000010.safetensors.tmp-") }, "\(names)")
        try FileManager.default.copyItem(atPath: root + "/other/ckpt-00000003.safetensors", toPath: dir + "/ckpt-00000003.safetensors")
        let resumed = try MPIRunner.run(ranks: 2, "dml-train", args + ["--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("removed 1 temporary file of an interrupted checkpoint write"), resumed.stdout)
        XCTAssertTrue(resumed.stdout.contains("resuming from \(dir)/ckpt-00000005.safetensors (step 5)"), resumed.stdout)
        XCTAssertEqual(checkpoints(dir), ["ckpt-00000003.safetensors", "ckpt-00000015.safetensors", "ckpt-00000020.safetensors"],
                       "the foreign file stays; this run keeps its newest 2")
        XCTAssertFalse(try FileManager.default.contentsOfDirectory(atPath: dir).contains { $0.contains(".tmp-") })
    }

    /// The reported double-bit damage: byte 7 and byte len−5 of the newest checkpoint's data section XOR
    /// 0x40. The resume refuses that file with a warning and continues from the previous one, and the run
    /// ends with the bits of an uninterrupted run.
    func testDoubleBitDamageFallsBackToThePreviousCheckpoint() throws {
        let root = MPIRunner.temporaryDirectory(), dir = root + "/ckpt"
        let base = small + ["--model", "logistic", "--synthetic-classes", "2", "--steps", "30", "--optimizer", "adam", "--lr", "0.05"]
        XCTAssertEqual(try MPIRunner.run(ranks: 2, "dml-train", base + ["--output", root + "/ref.safetensors"]).status, 0)
        let run = base + ["--checkpoint-dir", dir, "--checkpoint-every", "10", "--output", root + "/out.safetensors"]
        let killed = try MPIRunner.run(ranks: 2, "dml-train", run, environment: ["DML_FAULT": "crash:rank=0:step=25"])
        XCTAssertNotEqual(killed.status, 0)
        let newest = dir + "/ckpt-00000020.safetensors"
        var b = bytes(newest)
        let start = 8 + Int(b[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        b[start + 7] ^= 0x40
        b[b.count - 5] ^= 0x40
        try Data(b).write(to: URL(fileURLWithPath: newest))
        let resumed = try MPIRunner.run(ranks: 2, "dml-train", run + ["--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stderr.contains("warning: checkpoint \(newest) is unusable (checksum mismatch"), resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("resuming from \(dir)/ckpt-00000010.safetensors (step 10)"), resumed.stdout)
        XCTAssertTrue(bytes(root + "/out.safetensors") == bytes(root + "/ref.safetensors"), "the same bits as the uninterrupted run")
    }
}
