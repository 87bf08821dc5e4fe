import XCTest
import DMLKernels
import DMLTestSupport

/// `dml-train --threads T`: the kernel threads per rank change who computes each element of a gemm, never how, so
/// the model's bytes are the same for every T, and ranks with different T stay identical replicas. The shapes are
/// big enough (a 200-feature MLP, 128 rows per rank) that every gemm of the step is split among the threads.
final class ThreadsIntegrationTests: XCTestCase {
    let data = ["--synthetic-rows", "768", "--synthetic-features", "200", "--synthetic-classes", "10",
                "--synthetic-test-rows", "128", "--epochs", "2", "--batch-size", "256", "--verify-every", "1"]
    let models: [[String]] = [
        ["--model", "mlp", "--hidden", "96,48", "--lr", "0.05"],
        ["--model", "softmax"],
        ["--model", "linear", "--task", "regression", "--lr", "0.01"],
    ]

    override func setUpWithError() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed (scripts/setup installs it)")
    }

    func testModelBytesDoNotDependOnThreads() throws {
        let dir = MPIRunner.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for model in models {
            var reference: Data?
            for threads in 1...4 {
                let out = "\(dir)/\(model[1])-\(threads).safetensors"
                let r = try MPIRunner.run(ranks: 2, "dml-train", data + model + ["--threads", "\(threads)", "--output", out],
                                          mpirunOptions: ["--bind-to", "none"])
                XCTAssertEqual(r.status, 0, "\(model[1]) T=\(threads): \(r.stdout)\(r.stderr)")
                XCTAssertTrue(r.stdout.contains(", \(threads) kernel thread\(threads == 1 ? "" : "s") per rank\n"), r.stdout)
                let bytes = try Data(contentsOf: URL(fileURLWithPath: out))
                if let reference {
                    XCTAssertEqual(bytes, reference, "\(model[1]): T=\(threads) wrote other bytes than T=1")
                } else {
                    reference = bytes
                }
            }
        }
    }

    /// One rank with 1 thread, the other with 3: the replica check after every step passes and the model is the
    /// one both ranks with 1 thread write.
    func testRanksWithDifferentThreadsStayReplicas() throws {
        let dir = MPIRunner.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let binary = MPIRunner.executable("dml-train")
        let args = data + models[0]
        let reference = "\(dir)/plain.safetensors", mixed = "\(dir)/mixed.safetensors"
        let plain = try MPIRunner.run(ranks: 2, "dml-train", args + ["--threads", "1", "--output", reference])
        XCTAssertEqual(plain.status, 0, plain.stderr)
        let r = try MPIRunner.runProcess("mpirun", ["--oversubscribe", "--bind-to", "none",
                                                    "-np", "1", binary] + args + ["--threads", "1", "--output", mixed]
                                          + [":", "-np", "1", binary] + args + ["--threads", "3", "--output", mixed])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: mixed)), try Data(contentsOf: URL(fileURLWithPath: reference)))
    }

    /// One rank given --threads and the other left to its default: the same job (whether a flag that may differ
    /// was written does not enter the ranks' agreement). A bad --threads on rank 1 only (a multi-program launch):
    /// one message naming rank 1 and the flag, a non-zero exit at once, not rank 0 waiting in the start-up.
    func testThreadsGivenOnOneRankOnlyAndABadCountOnRankOne() throws {
        let dir = MPIRunner.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let binary = MPIRunner.executable("dml-train")
        let args = data + models[1]
        let half = "\(dir)/half.safetensors"
        let r = try MPIRunner.runProcess("mpirun", ["--oversubscribe", "-np", "1", binary] + args + ["--threads", "2", "--output", half]
                                          + [":", "-np", "1", binary] + args + ["--output", half])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        let started = Date()
        let bad = try MPIRunner.runProcess("mpirun", ["--oversubscribe", "-np", "1", binary] + args + ["--threads", "2"]
                                            + [":", "-np", "1", binary] + args + ["--threads", "0"], timeout: 60)
        XCTAssertNotEqual(bad.status, 0, bad.stdout)
        XCTAssertLessThan(Date().timeIntervalSince(started), 30, "no wait for the start-up deadline")
        let lines = bad.stderr.split(separator: "\n").filter { $0.contains("--threads") }
        XCTAssertEqual(lines.count, 1, bad.stderr)
        XCTAssertTrue(lines.first?.contains("dml-train: error on rank 1: ") == true, bad.stderr)
        XCTAssertFalse(bad.stdout.contains("done:"), bad.stdout)
    }

    /// Threads that cannot start on one rank only (its `ulimit -v` leaves no room for 256 thread stacks): one
    /// agreed error naming that rank, every rank stops, nothing written.
    func testThreadsThatCannotStartOnOneRankAreOneAgreedError() throws {
        let dir = MPIRunner.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let binary = MPIRunner.executable("dml-train")
        let args = data + models[1] + ["--threads", "256", "--output", "\(dir)/never.safetensors"]
        let limited = (["ulimit -v 1500000;", "exec", binary] + args).joined(separator: " ")
        let r = try MPIRunner.runProcess("mpirun", ["--oversubscribe", "-np", "1", binary] + args
                                          + [":", "-np", "1", "sh", "-c", limited], timeout: 90)
        XCTAssertNotEqual(r.status, 0, r.stdout)
        let lines = r.stderr.split(separator: "\n").filter { $0.contains("could not start 256 kernel threads") }
        XCTAssertEqual(lines.count, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("rank 1"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(dir)/never.safetensors"))
    }

    func testBadThreadCountsAreRefusedOnce() throws {
        for bad in ["0", "\(KernelThreads.maximum + 1)"] {
            let r = try MPIRunner.run(ranks: 2, "dml-train", data + ["--threads", bad], timeout: 60)
            XCTAssertNotEqual(r.status, 0, r.stdout)
            let lines = (r.stdout + r.stderr).split(separator: "\n").filter { $0.contains("--threads") }
            XCTAssertEqual(lines.count, 1, "--threads \(bad): \(r.stdout)\(r.stderr)")
            XCTAssertTrue(lines.first?.contains("between 1 and \(KernelThreads.maximum)") == true, "\(lines)")
            XCTAssertFalse(r.stdout.contains("done:"), r.stdout)
        }
    }

    /// `dml-bench kernels --threads T`: the header shows the cache blocks chosen for this CPU and, with T > 1, the
    /// measured hand-off of a parallel call; a bad count is one message naming the flag, before any timing.
    func testKernelsBenchmarkShowsBlocksAndHandOff() throws {
        let bench = MPIRunner.executable("dml-bench")
        let args = ["kernels", "--sizes", "64", "--naive-max", "1", "--repeats", "1", "--min-time", "0.001"]
        let r = try MPIRunner.runProcess(bench, args + ["--threads", "2"], timeout: 300)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("dml-bench kernels: 2 kernel threads (--threads)"), r.stdout)
        XCTAssertTrue(r.stdout.contains("gemm blocks: mc \(Gemm.mc) × kc 256 × nc \(Gemm.nc), micro-tile 6 × "), r.stdout)
        XCTAssertTrue(r.stdout.contains(CacheSizes.current.description), r.stdout)
        XCTAssertTrue(r.stdout.contains("hand-off: "), r.stdout)
        let bad = try MPIRunner.runProcess(bench, args + ["--threads", "0"], timeout: 60)
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertEqual((bad.stdout + bad.stderr).split(separator: "\n").filter { $0.contains("--threads must be between") }.count, 1,
                       bad.stdout + bad.stderr)
        XCTAssertFalse(bad.stdout.contains("gemm blocks"), bad.stdout)
    }
}
