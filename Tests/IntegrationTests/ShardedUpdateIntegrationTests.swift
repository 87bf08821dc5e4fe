import XCTest
import Foundation
import DMLTestSupport

/// `--shard-update` under a real `mpirun`: the model file has the bytes of the unsharded run over the ring
/// (`cmp`) for every element-wise optimizer at np 2, 3 and 4 (softmax: one piece; the MLP: its buckets, also
/// reduce-scattered as the backward pass completes them under `--overlap`), a
/// checkpoint written sharded resumes unsharded and on another np, and what it cannot honour is refused with
/// one message from one rank.
final class ShardedUpdateIntegrationTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed (scripts/setup installs it)")
        dir = MPIRunner.temporaryDirectory()
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    let small = ["--synthetic-rows", "600", "--synthetic-test-rows", "100", "--synthetic-features", "30", "--synthetic-classes", "4",
                 "--batch-size", "64", "--steps", "12", "--lr", "0.05", "--verify-every", "4"]

    func output(_ ranks: Int, _ name: String, _ args: [String]) throws -> Data? {
        let path = "\(dir)/\(name).safetensors"
        let r = try MPIRunner.run(ranks: ranks, "dml-train", small + args + ["--output", path])
        XCTAssertEqual(r.status, 0, "\(name): \(r.stderr)")
        return FileManager.default.contents(atPath: path)
    }

    func testEveryOptimizerHasTheUnshardedRingsBytesAtNpTwoThreeAndFour() throws {
        for np in [2, 3, 4] {
            for optimizer in ["sgd", "momentum", "adam", "adamw", "adagrad"] {
                var args = ["--optimizer", optimizer]
                if optimizer == "adamw" { args += ["--weight-decay", "0.01"] }
                let plain = try output(np, "plain-\(np)-\(optimizer)", args + ["--allreduce", "ring"])
                let sharded = try output(np, "sharded-\(np)-\(optimizer)", args + ["--shard-update"])
                XCTAssertNotNil(plain)
                XCTAssertEqual(plain, sharded, "np \(np) \(optimizer): --shard-update ≠ --allreduce ring")
            }
        }
        // A 16-bit wire: the gradient reduce-scattered in fp16/bf16 (with error feedback), as the compressed ring does.
        for (np, flags) in [(2, ["--compress", "fp16"]), (3, ["--compress", "bf16", "--error-feedback"])] {
            let args = ["--optimizer", "adam"] + flags
            XCTAssertEqual(try output(np, "compressed-plain-\(np)", args), try output(np, "compressed-sharded-\(np)", args + ["--shard-update"]),
                           "np \(np) \(flags): --shard-update ≠ the compressed ring")
        }
        // The MLP's layer buckets (small ones: several pieces per step).
        for np in [2, 3] {
            let args = ["--model", "mlp", "--hidden", "16,8", "--optimizer", "adam", "--lr", "0.01"]
            let plain = try output(np, "mlp-plain-\(np)", args)
            let sharded = try output(np, "mlp-sharded-\(np)", args + ["--shard-update"])
            XCTAssertEqual(plain, sharded, "np \(np) mlp: --shard-update ≠ the bucketed ring")
            // Wide enough for two 1 MiB buckets and the tail: reduce-scattered as the backward pass completes them.
            let wide = ["--model", "mlp", "--hidden", "1024,512", "--optimizer", "adam", "--lr", "0.01", "--steps", "4"]
            let overlapped = try output(np, "mlp-sharded-overlap-\(np)", wide + ["--shard-update", "--overlap"])
            XCTAssertEqual(try output(np, "mlp-wide-\(np)", wide), overlapped, "np \(np) mlp: --shard-update --overlap ≠ the bucketed ring")
        }
    }

    func testAShardedCheckpointResumesUnshardedAndOnAnotherRankCount() throws {
        let args = ["--optimizer", "adam", "--checkpoint-every", "6"]
        let reference = try output(2, "reference", ["--optimizer", "adam"])
        let ckpt = "\(dir)/ckpt"
        let first = try MPIRunner.run(ranks: 2, "dml-train", small + args + ["--shard-update", "--checkpoint-dir", ckpt, "--steps", "6"])
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertTrue(first.stdout.contains("allreduce ring, sharded update (optimizer state of 1/2 of the parameters per rank)"), first.stdout)
        func resume(_ ranks: Int, _ name: String, _ flags: [String]) throws -> Data? {
            let copy = "\(dir)/ckpt-\(name)"
            try FileManager.default.copyItem(atPath: ckpt, toPath: copy)
            let out = "\(dir)/resumed-\(name).safetensors"
            let r = try MPIRunner.run(ranks: ranks, "dml-train", small + args + flags + ["--checkpoint-dir", copy, "--resume", "--output", out])
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertTrue(r.stdout.contains("(step 6)"), r.stdout)
            return FileManager.default.contents(atPath: out)
        }
        // Written sharded at np 2, resumed at np 2 sharded or not: the uninterrupted unsharded run's bytes.
        XCTAssertEqual(try resume(2, "np2-unsharded", []), reference)
        XCTAssertEqual(try resume(2, "np2-sharded", ["--shard-update"]), reference)
        // At np 3 the sums round as np 3's do: sharded and unsharded resumptions agree with each other.
        let three = try resume(3, "np3-unsharded", [])
        XCTAssertNotNil(three)
        XCTAssertEqual(try resume(3, "np3-sharded", ["--shard-update"]), three)
    }

    /// Each rank writes its part, rank 0 the manifest: a part whose write fails half-way (rank 1, as on a full
    /// disk) stops every rank with one message and leaves the previous complete set alone (no manifest, no part,
    /// no temporary of step 10); the resume continues from it — at np 2 to the uninterrupted run's bytes, at np 3
    /// with the state re-cut.
    func testAFailedPartLeavesThePreviousCompleteSetAndResumesOnAnyNp() throws {
        let args = small + ["--optimizer", "adam", "--steps", "20", "--checkpoint-every", "5", "--shard-update"]
        let reference = try output(2, "uninterrupted", ["--optimizer", "adam", "--steps", "20"])
        let ckpt = "\(dir)/ckpt"
        let r = try MPIRunner.run(ranks: 2, "dml-train", args + ["--checkpoint-dir", ckpt, "--output", "\(dir)/never.safetensors"],
                                  environment: ["DML_FAULT": "writefail:rank=1:step=10"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertEqual(r.stderr.components(separatedBy: "dml-train: error").count - 1, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("ckpt-00000010.part-1-of-2.safetensors"), r.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: ckpt).filter { $0 != ".dml-lock" }.sorted(),
                       ["ckpt-00000005.part-0-of-2.safetensors", "ckpt-00000005.part-1-of-2.safetensors", "ckpt-00000005.safetensors"])
        for (np, name) in [(2, "np2"), (3, "np3")] {
            let copy = "\(dir)/ckpt-\(name)"
            try FileManager.default.copyItem(atPath: ckpt, toPath: copy)
            let out = "\(dir)/resumed-\(name).safetensors"
            let resumed = try MPIRunner.run(ranks: np, "dml-train", args + ["--checkpoint-dir", copy, "--resume", "--output", out])
            XCTAssertEqual(resumed.status, 0, resumed.stderr)
            XCTAssertTrue(resumed.stdout.contains("resuming from \(copy)/ckpt-00000005.safetensors (step 5)"), resumed.stdout)
            if np == 2 { XCTAssertEqual(FileManager.default.contents(atPath: out), reference, "resumed at np 2: the uninterrupted bytes") }
            // The resumed run writes its own sets, np parts each.
            XCTAssertTrue(FileManager.default.fileExists(atPath: "\(copy)/ckpt-00000020.part-\(np - 1)-of-\(np).safetensors"))
        }
    }

    /// A rank stopped half-way through writing its part (`hang` at the checkpoint: rank 1 stalls with its
    /// temporary file half-written, as a killed writer leaves it): the job ends at the collective timeout naming
    /// it, no manifest of that step exists, and the resume removes the temporary and continues from the previous
    /// complete set to the uninterrupted run's bytes.
    func testARankStoppedWhileWritingItsPartLeavesNoCheckpoint() throws {
        let args = small + ["--optimizer", "momentum", "--steps", "20", "--checkpoint-every", "5", "--shard-update"]
        let reference = try output(2, "uninterrupted", ["--optimizer", "momentum", "--steps", "20"])
        let ckpt = "\(dir)/ckpt", out = "\(dir)/resumed.safetensors"
        let stalled = try MPIRunner.run(ranks: 2, "dml-train", args + ["--checkpoint-dir", ckpt, "--collective-timeout", "1", "--output", out],
                                        environment: ["DML_FAULT": "hang:rank=1:step=10:at=checkpoint"], timeout: 60)
        XCTAssertEqual(stalled.status, 69, stalled.stderr)
        XCTAssertTrue(stalled.stderr.contains("rank 1"), stalled.stderr)
        let names = try FileManager.default.contentsOfDirectory(atPath: ckpt)
        XCTAssertTrue(names.contains { $0.hasPrefix(".ckpt-00000010.part-1-of-2.safetensors.tmp-") }, "\(names)")
        XCTAssertFalse(names.contains("ckpt-00000010.safetensors"), "no manifest: \(names)")
        let resumed = try MPIRunner.run(ranks: 2, "dml-train", args + ["--checkpoint-dir", ckpt, "--resume", "--output", out])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("removed 1 temporary file of an interrupted checkpoint write"), resumed.stdout)
        XCTAssertTrue(resumed.stdout.contains("resuming from \(ckpt)/ckpt-00000005.safetensors (step 5)"), resumed.stdout)
        XCTAssertEqual(FileManager.default.contents(atPath: out), reference)
    }

    func testWhatItCannotHonourIsRefusedWithOneMessage() throws {
        let cases: [([String], String)] = [
            (["--optimizer", "lbfgs", "--batch-size", "full"], "--shard-update shards the per-step update"),
            (["--partition", "features"], "--shard-update shards a replicated model's update"),
            (["--balance"], "--shard-update reduce-scatters with the ring; --balance"),
            (["--allreduce", "mpi"], "it cannot use --allreduce mpi"),
            (["--allreduce", "sparse"], "it cannot use --allreduce sparse"),
        ]
        let base = ["--synthetic-rows", "200", "--synthetic-features", "8", "--synthetic-classes", "3", "--steps", "3", "--shard-update"]
        for (flags, message) in cases {
            let r = try MPIRunner.run(ranks: 2, "dml-train", base + flags)
            XCTAssertEqual(r.status, 64, "\(flags): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(message), "\(flags): \(r.stderr)")
            XCTAssertEqual(r.stderr.components(separatedBy: message).count - 1, 1, "one message from one rank: \(r.stderr)")
        }
    }
}
