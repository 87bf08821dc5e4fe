import XCTest
import DMLStatus
import DMLTestSupport

/// `dml-train`'s exit status for each kind of failure (`FailureKind`), under a real mpirun: what the job's
/// status says, whichever rank met the failure and however it reached the others (agreement, identical
/// values, `MPI_Abort`). And `dml-bench`, which ends through the same mapping.
final class ExitStatusTests: XCTestCase {
    let small = ["--synthetic-rows", "600", "--synthetic-features", "24", "--synthetic-classes", "4", "--synthetic-test-rows", "200"]

    override func setUpWithError() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed (scripts/setup installs it)")
    }

    func train(_ arguments: [String], ranks: Int = 2, fault: String? = nil) throws -> MPIRunner.Result {
        try MPIRunner.run(ranks: ranks, "dml-train", arguments, environment: fault.map { ["DML_FAULT": $0] } ?? [:], timeout: 60)
    }

    func assertStatus(_ r: MPIRunner.Result, _ kind: FailureKind, _ message: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, kind.exitStatus, "\(kind): \(r.stderr)", file: file, line: line)
        XCTAssertTrue(r.stderr.contains(message), r.stderr, file: file, line: line)
    }

    func testUsageErrorsAre64() throws {
        assertStatus(try train(small + ["--no-such-flag"]), .usage, "--no-such-flag")
        assertStatus(try train(small + ["--model", "logistic"]), .usage, "--model logistic needs 2 classes")
        assertStatus(try train(small, fault: "bogus"), .usage, "DML_FAULT='bogus'")
        // A negative number after a flag is its value, whichever way it is written.
        for spelling in [["--lr", "-1"], ["--lr=-1"]] {
            assertStatus(try train(small + spelling), .usage, "--lr must be a positive number")
        }
        // A model that cannot fit in memory: one message with the figures, before anything is allocated.
        let huge = try train(small + ["--model", "mlp", "--hidden", "2000000,2000000"])
        assertStatus(huge, .usage, "this model needs about")
        XCTAssertTrue(huge.stderr.contains("parameters") && huge.stderr.contains("rank"), huge.stderr)
        XCTAssertEqual(huge.stderr.components(separatedBy: "dml-train: error").count - 1, 1, huge.stderr)
    }

    func testEveryCommandSaysItsVersion() throws {
        for program in ["dml-train", "dml-predict", "dml-bench"] {
            let r = try MPIRunner.run(ranks: 1, program, ["--version"])
            XCTAssertEqual(r.status, 0, "\(program): \(r.stderr)")
            XCTAssertEqual(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines), DMLVersion.string, program)
        }
        let launch = try MPIRunner.runProcess(MPIRunner.executable("dml-launch"), ["--version"])
        XCTAssertEqual(launch.status, 0, launch.stderr)
        XCTAssertEqual(launch.stdout.trimmingCharacters(in: .whitespacesAndNewlines), DMLVersion.string)
    }

    func testAMalformedDataFileIs65AndAMissingOneIs66() throws {
        let dir = MPIRunner.temporaryDirectory()
        let bad = dir + "/bad.csv"
        // Line 40 is on the second rank's byte range: the kind survives the agreement.
        var lines = ["label,a,b"] + (1...60).map { "\($0 % 2),\($0).5,2" }
        lines[40] = "1,abc,2"
        try lines.joined(separator: "\n").write(toFile: bad, atomically: true, encoding: .utf8)
        let malformed = try train(["--data", bad, "--steps", "5"])
        assertStatus(malformed, .dataFormat, "(reported by rank 1): \(bad), line 41, column 2: \"abc\" is not a number")
        XCTAssertEqual(malformed.stderr.components(separatedBy: "dml-train: error").count - 1, 1, malformed.stderr)
        try "label,a\n1,2\n".write(toFile: dir + "/one.csv", atomically: true, encoding: .utf8)
        assertStatus(try train(["--data", dir + "/one.csv", "--steps", "5"]), .dataFormat, "2 ranks but only 1 training rows")
        assertStatus(try train(["--data", dir + "/missing.csv", "--steps", "5"]), .noInput, "\(dir)/missing.csv: no such file")
        assertStatus(try train(["--data", dir, "--steps", "5"]), .noInput, "\(dir) is a directory, not a data file")
        // A file with 3 classes for --model logistic: the hint is the model that fits, not a synthetic flag.
        let three = try train(["--data", good3(dir), "--model", "logistic", "--steps", "5"])
        assertStatus(three, .usage, "--model logistic needs 2 classes, but the data has 3 classes (use --model softmax)")
        assertStatus(try train(["--data", dir, "--format", "csv", "--steps", "5"]), .noInput, "is a directory")
        let good = dir + "/good.csv"
        try lines.enumerated().map { $0.offset == 40 ? "1,3,2" : $0.element }.joined(separator: "\n")
            .write(toFile: good, atomically: true, encoding: .utf8)
        assertStatus(try train(["--data", good, "--test-data", dir + "/missing-test.csv", "--steps", "5"]), .noInput, "missing-test.csv: no such file")
    }

    private func good3(_ dir: String) throws -> String {
        let path = dir + "/three.csv"
        try (["label,a,b"] + (1...60).map { "\($0 % 3),\($0).5,2" }).joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func testDivergenceIs70() throws {
        let r = try train(small + ["--steps", "10"], fault: "nan:rank=0:step=2")
        assertStatus(r, .software, "training diverged at step 2")
    }

    func testAStalledRankIs69() throws {
        let r = try train(small + ["--steps", "20", "--collective-timeout", "1"], ranks: 3, fault: "hang:rank=2:step=5")
        assertStatus(r, .unavailable, "collective timeout (--collective-timeout): the start of step 5 did not finish within 1 s: rank 2 did not answer")
    }

    func testAnOutputThatCannotBeCreatedIs73AndAFailedWriteIs74() throws {
        let dir = MPIRunner.temporaryDirectory()
        assertStatus(try train(small + ["--steps", "5", "--output", dir + "/no/such/dir/model.safetensors"]), .cannotCreate,
                     "cannot write \(dir)/no/such/dir/model.safetensors: directory \(dir)/no/such/dir does not exist")
        assertStatus(try train(small + ["--steps", "20", "--checkpoint-dir", dir + "/ckpt", "--checkpoint-every", "5"],
                               fault: "writefail:rank=0:step=10"),
                     .ioError, "cannot write \(dir)/ckpt/ckpt-00000010.safetensors: write failed (injected fault)")
    }

    func testPreemptionIs75() throws {
        let r = try train(small + ["--steps", "10"], fault: "preempt:rank=0:step=3")
        assertStatus(r, .preempted, "dml-train: stopped by SIGTERM after step 2")
    }

    func testResumingACheckpointOfAnotherConfigurationIs78() throws {
        let dir = MPIRunner.temporaryDirectory()
        let first = try train(small + ["--steps", "6", "--checkpoint-dir", dir + "/ckpt", "--checkpoint-every", "3"])
        XCTAssertEqual(first.status, 0, first.stderr)
        let other = try train(small + ["--steps", "6", "--model", "mlp", "--checkpoint-dir", dir + "/ckpt", "--resume"])
        assertStatus(other, .configuration, "it was written by a different configuration")
    }

    /// dml-bench ends through the same mapping: an output it cannot create is 73 there too.
    func testDMLBenchUsesTheSameStatuses() throws {
        let dir = MPIRunner.temporaryDirectory()
        let r = try MPIRunner.run(ranks: 2, "dml-bench", ["train", "--steps", "2", "--warmup", "0", "--csv", dir + "/no/such/dir/t.csv"])
        assertStatus(r, .cannotCreate, "dml-bench train: error: cannot write \(dir)/no/such/dir/t.csv")
    }
}
