import XCTest
import DMLTestSupport

/// `dml-launch` supervising a stand-in job: a shell script that fails a given number of times, recording
/// the arguments of every attempt.
final class DMLLaunchTests: XCTestCase {
    func job(failures: Int, status: Int = 3) throws -> (script: String, calls: String) {
        let dir = MPIRunner.temporaryDirectory()
        let script = dir + "/job.sh", calls = dir + "/calls", counter = dir + "/count"
        try """
        #!/bin/sh
        echo "$@" >> \(calls)
        n=$(cat \(counter) 2>/dev/null || echo 0); n=$((n + 1)); echo $n > \(counter)
        if [ $n -le \(failures) ]; then echo "rank 1: simulated failure $n" >&2; exit \(status); fi
        echo "trained"
        """.write(toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o755)
        return (script, calls)
    }

    func lines(_ path: String) -> [String] {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    func testRestartsWithResumeUntilTheJobSucceeds() throws {
        let (script, calls) = try job(failures: 2)
        let log = MPIRunner.temporaryDirectory() + "/launch.log"
        let r = try MPIRunner.runProcess(MPIRunner.executable("dml-launch"),
                                         ["--max-restarts", "3", "--backoff", "0", "--log", log, "--", script, "--steps", "5"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(lines(calls), ["--steps 5", "--steps 5 --resume", "--steps 5 --resume"])
        XCTAssertEqual(lines(log).count, 3)
        XCTAssertTrue(lines(log)[0].contains("status=3"))
        XCTAssertTrue(lines(log)[2].contains("status=0"))
        XCTAssertTrue(r.stdout.contains("trained"))
        XCTAssertTrue(r.stderr.contains("attempt 1 failed with status 3"), r.stderr)
    }

    func testGivesUpAfterMaxRestartsWithTheLastError() throws {
        let (script, calls) = try job(failures: 100, status: 5)
        let r = try MPIRunner.runProcess(MPIRunner.executable("dml-launch"), ["--max-restarts", "2", "--backoff", "0", "--", script, "--steps", "9"])
        XCTAssertEqual(r.status, 5)
        XCTAssertEqual(lines(calls).count, 3)
        XCTAssertTrue(r.stderr.contains("giving up after 3 attempts; last status 5"), r.stderr)
        XCTAssertTrue(r.stderr.contains("  rank 1: simulated failure 3"), "the last error is repeated: \(r.stderr)")
    }

    func testAUsageErrorIsNotRestarted() throws {
        let (script, calls) = try job(failures: 100, status: 64)
        let r = try MPIRunner.runProcess(MPIRunner.executable("dml-launch"), ["--backoff", "0", "--", script, "--steps", "9"])
        XCTAssertEqual(r.status, 64)
        XCTAssertEqual(lines(calls).count, 1)
    }

    func testAPreemptedJobIsNotRestarted() throws {
        let (script, calls) = try job(failures: 100, status: 75)
        let r = try MPIRunner.runProcess(MPIRunner.executable("dml-launch"), ["--backoff", "0", "--", script, "--steps", "9"])
        XCTAssertEqual(r.status, 75)
        XCTAssertEqual(lines(calls).count, 1)
        XCTAssertTrue(r.stderr.contains("the job was preempted and checkpointed (status 75); not restarting"), r.stderr)
    }

    func testNpRunsTheCommandUnderTheLauncher() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed")
        let r = try MPIRunner.runProcess(MPIRunner.executable("dml-launch"),
                                         ["-np", "2", "--mpirun", "mpirun --oversubscribe", "--", "echo", "hello"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout.components(separatedBy: "hello").count - 1, 2, "one line per rank")
    }

    func testMissingCommandIsAUsageError() throws {
        let r = try MPIRunner.runProcess(MPIRunner.executable("dml-launch"), ["--max-restarts", "1"])
        XCTAssertEqual(r.status, 64)
        XCTAssertTrue(r.stderr.contains("give the job's command after --"), r.stderr)
    }
}
