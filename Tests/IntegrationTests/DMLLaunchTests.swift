import XCTest
import DMLStatus
import DMLTestSupport

/// `dml-launch` supervising stand-in jobs (shell scripts that fail a given number of times, recording the
/// arguments of every attempt) and real `dml-train` jobs under a real `mpirun`.
final class DMLLaunchTests: XCTestCase {
    let small = ["--synthetic-rows", "600", "--synthetic-features", "24", "--synthetic-classes", "4", "--synthetic-test-rows", "200"]

    func job(failures: Int, status: Int = Int(FailureKind.unavailable.exitStatus)) throws -> (script: String, calls: String) {
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

    /// The attempts `dml-launch --log` recorded.
    func attempts(_ log: String) -> [String] { lines(log).filter { $0.contains(" attempt=") } }

    func launch(_ arguments: [String], environment: [String: String] = [:], allowRoot: Bool = true,
                timeout: TimeInterval = 120) throws -> MPIRunner.Result {
        try MPIRunner.runProcess(MPIRunner.executable("dml-launch"), arguments, environment: environment,
                                 allowRoot: allowRoot, timeout: timeout)
    }

    func testRestartsWithResumeUntilTheJobSucceeds() throws {
        let (script, calls) = try job(failures: 2)
        let log = MPIRunner.temporaryDirectory() + "/launch.log"
        let r = try launch(["--max-restarts", "3", "--backoff", "0", "--log", log, "--", script, "--steps", "5"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(lines(calls), ["--steps 5", "--steps 5 --resume", "--steps 5 --resume"])
        XCTAssertEqual(attempts(log).count, 3)
        XCTAssertTrue(attempts(log)[0].contains("attempt=1 status=69"), lines(log).joined(separator: "\n"))
        XCTAssertTrue(attempts(log)[2].contains("status=0"))
        XCTAssertTrue(r.stdout.contains("trained"))
        XCTAssertTrue(r.stderr.contains("attempt 1 failed with status 69"), r.stderr)
    }

    func testGivesUpAfterMaxRestartsWithTheLastError() throws {
        let (script, calls) = try job(failures: 100, status: 137)
        let r = try launch(["--max-restarts", "2", "--backoff", "0", "--", script, "--steps", "9"])
        XCTAssertEqual(r.status, 137)
        XCTAssertEqual(lines(calls).count, 3)
        XCTAssertTrue(r.stderr.contains("giving up after 3 attempts; last status 137"), r.stderr)
        XCTAssertTrue(r.stderr.contains("  rank 1: simulated failure 3"), "the last error is repeated: \(r.stderr)")
    }

    /// Every status a restart cannot fix ends dml-launch after one attempt, with that status.
    func testFailuresARestartCannotFixAreNotRestarted() throws {
        for status in [1, 2, 64, 65, 66, 70, 73, 74, 78, 126, 127, 132, 134, 139] {
            let (script, calls) = try job(failures: 100, status: status)
            let r = try launch(["--backoff", "0", "--", script, "--steps", "9"])
            XCTAssertEqual(r.status, Int32(status))
            XCTAssertEqual(lines(calls).count, 1, "status \(status): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("not restarting"), r.stderr)
        }
    }

    /// 75 from a job that dml-launch did not stop (someone signalled the ranks or mpirun directly): the job
    /// checkpointed, so it is resumed.
    func testAJobPreemptedFromOutsideIsResumed() throws {
        let (script, calls) = try job(failures: 1, status: 75)
        let r = try launch(["--backoff", "0", "--", script, "--steps", "9"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(lines(calls), ["--steps 9", "--steps 9 --resume"])
        XCTAssertTrue(r.stderr.contains("the job was stopped from outside dml-launch and checkpointed"), r.stderr)
    }

    /// A SIGTERM to dml-launch while the job runs is passed on; the job's 75 then ends dml-launch.
    func testASIGTERMWhileTheJobRunsIsPassedOnAndNotRestarted() throws {
        let dir = MPIRunner.temporaryDirectory()
        let script = dir + "/job.sh", calls = dir + "/calls", log = dir + "/launch.log"
        try """
        #!/bin/sh
        trap 'echo "job: got SIGTERM" >&2; exit 75' TERM
        echo "attempt $*" >> \(calls)
        while :; do sleep 0.05; done
        """.write(toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o755)
        let running = try Running(["--backoff", "0", "--log", log, "--", script])
        XCTAssertTrue(waitFor(10) { self.lines(calls).count == 1 })
        running.signal(SIGTERM)
        let r = running.wait(timeout: 20)
        XCTAssertEqual(r.status, 75, r.stderr)
        XCTAssertTrue(r.stderr.contains("job: got SIGTERM"), r.stderr)
        XCTAssertTrue(r.stderr.contains("stopped by SIGTERM (passed on to the job)"), r.stderr)
        XCTAssertEqual(lines(calls).count, 1)
        XCTAssertEqual(attempts(log).count, 1)
    }

    func testNpRunsTheCommandUnderTheLauncher() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed")
        let r = try launch(["-np", "2", "--mpirun", "mpirun --oversubscribe", "--", "echo", "hello"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout.components(separatedBy: "hello").count - 1, 2, "one line per rank")
    }

    func testMissingCommandIsAUsageError() throws {
        let r = try launch(["--max-restarts", "1"])
        XCTAssertEqual(r.status, 64)
        XCTAssertTrue(r.stderr.contains("give the job's command after --"), r.stderr)
    }

    // MARK: real dml-train jobs under a real mpirun

    /// The README's setup runs as root, where OpenMPI's mpirun refuses to start unless told otherwise: the
    /// environment here has no OMPI_ALLOW_RUN_AS_ROOT*, as in a plain root shell.
    func testRunsAsRootUnderMpirunAndTrainsToTheEnd() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed")
        try XCTSkipUnless(geteuid() == 0, "not running as root")
        let r = try launch(["--backoff", "0", "-np", "2", "--mpirun", "mpirun --oversubscribe", "--",
                            MPIRunner.executable("dml-train")] + small + ["--steps", "20"], allowRoot: false)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("done: 20 steps"), r.stdout)
        XCTAssertTrue(r.stderr.contains("running as root: OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1"), r.stderr)
    }

    /// A SIGTERM to dml-launch while it waits to restart a killed job ends it within a second, with status
    /// 75, and no further attempt (the back-off here is 60 s).
    func testASIGTERMDuringTheBackOffStopsAtOnceWithoutRestarting() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed")
        let dir = MPIRunner.temporaryDirectory(), log = dir + "/launch.log"
        let running = try Running(["--backoff", "60", "--log", log, "-np", "2", "--mpirun", "mpirun --oversubscribe", "--",
                                   MPIRunner.executable("dml-train")] + small
                                  + ["--steps", "200", "--checkpoint-dir", dir + "/ckpt", "--checkpoint-every", "2"],
                                  environment: ["DML_FAULT": "crash:rank=1:step=5"])
        XCTAssertTrue(waitFor(60) { self.attempts(log).count == 1 }, "the first attempt ends: \(lines(log))")
        usleep(200_000)
        let sent = Date()
        running.signal(SIGTERM)
        let r = running.wait(timeout: 30)
        let seconds = Date().timeIntervalSince(sent)
        XCTAssertLessThan(seconds, 1.5, "ended \(seconds) s after the signal")
        XCTAssertEqual(r.status, FailureKind.preempted.exitStatus, r.stderr)
        XCTAssertTrue(attempts(log)[0].contains("status=137"), lines(log).joined(separator: "\n"))
        XCTAssertEqual(attempts(log).count, 1, "no second attempt: \(lines(log))")
        XCTAssertTrue(lines(log).last?.contains("stopped signal=SIGTERM during=back-off after_attempt=1 status=75") ?? false,
                      lines(log).joined(separator: "\n"))
        XCTAssertTrue(r.stderr.contains("stopped by SIGTERM during the back-off after attempt 1 (status 137); not restarting"), r.stderr)
    }

    /// SIGINT (Ctrl-C) during the back-off stops dml-launch at once too.
    func testASIGINTDuringTheBackOffStopsAtOnceToo() throws {
        let (script, calls) = try job(failures: 100)
        let log = MPIRunner.temporaryDirectory() + "/launch.log"
        let running = try Running(["--backoff", "60", "--log", log, "--", script, "--steps", "3"])
        XCTAssertTrue(waitFor(10) { self.attempts(log).count == 1 })
        usleep(200_000)
        let sent = Date()
        running.signal(SIGINT)
        let r = running.wait(timeout: 30)
        XCTAssertLessThan(Date().timeIntervalSince(sent), 1.5)
        XCTAssertEqual(r.status, FailureKind.preempted.exitStatus, r.stderr)
        XCTAssertEqual(lines(calls).count, 1)
        XCTAssertTrue(lines(log).last?.contains("stopped signal=SIGINT during=back-off after_attempt=1 status=75") ?? false,
                      lines(log).joined(separator: "\n"))
    }

    /// A missing data file (66), a malformed one (65), and a command that does not exist (127 directly,
    /// 134 through mpirun, which cannot start it) fail the same way every time: one attempt.
    func testFailuresThatCannotSucceedAreNotRetried() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed")
        let dir = MPIRunner.temporaryDirectory()
        let malformed = dir + "/bad.csv"
        try "label,a,b\n1,2,3\n0,x,4\n1,2,3\n0,1,1\n".write(toFile: malformed, atomically: true, encoding: .utf8)
        let train = MPIRunner.executable("dml-train")
        let mpi = ["-np", "2", "--mpirun", "mpirun --oversubscribe", "--"]
        for (arguments, status, message) in [
            (mpi + [train, "--data", dir + "/missing.csv"], FailureKind.noInput.exitStatus, "missing.csv: no such file"),
            (mpi + [train, "--data", malformed], FailureKind.dataFormat.exitStatus, "line 3, column 2: \"x\" is not a number"),
            (["--", "dml-no-such-command"], 127, "dml-no-such-command"),
            (mpi + ["dml-no-such-command"], 134, "dml-no-such-command"),
        ] as [([String], Int32, String)] {
            let log = MPIRunner.temporaryDirectory() + "/launch.log"
            let r = try launch(["--backoff", "0", "--log", log] + arguments)
            XCTAssertEqual(r.status, status, r.stderr)
            XCTAssertEqual(attempts(log).count, 1, "\(arguments): \(lines(log))")
            XCTAssertTrue(r.stderr.contains(message), r.stderr)
            XCTAssertTrue(r.stderr.contains("not restarting"), r.stderr)
        }
    }

    /// A rank killed mid-run (SIGKILL, mpirun exits 137) is restarted with --resume, and the job completes
    /// with the bits of an uninterrupted run. The fault must hit the first attempt only (it would fire again
    /// at the same step after the resume), so the job is a script that sets DML_FAULT on its first run.
    func testAKilledRankIsRestartedAndTheJobCompletes() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed")
        let dir = MPIRunner.temporaryDirectory()
        let args = small + ["--steps", "30", "--batch-size", "64", "--optimizer", "adam", "--lr", "0.05"]
        let reference = try MPIRunner.run(ranks: 2, "dml-train", args + ["--output", dir + "/ref.safetensors"])
        XCTAssertEqual(reference.status, 0, reference.stderr)
        let script = dir + "/job.sh", counter = dir + "/count", log = dir + "/launch.log"
        try """
        #!/bin/sh
        n=$(cat \(counter) 2>/dev/null || echo 0); n=$((n + 1)); echo $n > \(counter)
        if [ $n = 1 ]; then export DML_FAULT=crash:rank=1:step=12; fi
        exec mpirun --oversubscribe -np 2 -x DML_FAULT \(MPIRunner.executable("dml-train")) "$@"
        """.write(toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o755)
        let r = try launch(["--backoff", "0", "--log", log, "--", script] + args
                           + ["--checkpoint-dir", dir + "/ckpt", "--checkpoint-every", "5", "--output", dir + "/out.safetensors"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(attempts(log).count, 2, lines(log).joined(separator: "\n"))
        XCTAssertTrue(attempts(log)[0].contains("status=137"), lines(log).joined(separator: "\n"))
        XCTAssertTrue(attempts(log)[1].contains("status=0") && attempts(log)[1].hasSuffix("--resume"), lines(log).joined(separator: "\n"))
        XCTAssertTrue(r.stderr.contains("a process was killed by SIGKILL; restarting with --resume"), r.stderr)
        XCTAssertTrue(r.stdout.contains("resuming from \(dir)/ckpt/ckpt-00000010.safetensors (step 10)"), r.stdout)
        let out = FileManager.default.contents(atPath: dir + "/out.safetensors")
        XCTAssertNotNil(out)
        XCTAssertEqual(out, FileManager.default.contents(atPath: dir + "/ref.safetensors"), "the same bits as the uninterrupted run")
    }

    // MARK: helpers

    /// Polls `condition` every 20 ms for up to `seconds`.
    func waitFor(_ seconds: Double, _ condition: () -> Bool) -> Bool {
        let until = Date(timeIntervalSinceNow: seconds)
        while Date() < until {
            if condition() { return true }
            usleep(20_000)
        }
        return condition()
    }

    /// dml-launch started in the background, so a test can signal it; its output goes to files.
    final class Running {
        let process = Process()
        let stdoutPath: String, stderrPath: String

        init(_ arguments: [String], environment: [String: String] = [:]) throws {
            let dir = MPIRunner.temporaryDirectory()
            stdoutPath = dir + "/stdout"
            stderrPath = dir + "/stderr"
            _ = FileManager.default.createFile(atPath: stdoutPath, contents: nil)
            _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
            process.executableURL = URL(fileURLWithPath: MPIRunner.executable("dml-launch"))
            process.arguments = arguments
            process.environment = MPIRunner.environment(environment)
            process.standardOutput = FileHandle(forWritingAtPath: stdoutPath)
            process.standardError = FileHandle(forWritingAtPath: stderrPath)
            process.standardInput = FileHandle.nullDevice
            try process.run()
        }

        func signal(_ sig: Int32) { kill(process.processIdentifier, sig) }

        /// Waits for the end (SIGKILL after `timeout` seconds: a hang is a failure, never a hung suite);
        /// returns the exit status, standard output and standard error.
        func wait(timeout: TimeInterval) -> (status: Int32, stdout: String, stderr: String) {
            let pid = process.processIdentifier
            let killer = DispatchWorkItem { kill(pid, SIGKILL) }
            DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: killer)
            process.waitUntilExit()
            killer.cancel()
            func text(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }
            return (process.terminationStatus, text(stdoutPath), text(stderrPath))
        }
    }
}
