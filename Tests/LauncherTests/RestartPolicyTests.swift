import XCTest
import Foundation
import DMLLaunch
import DMLStatus

/// What dml-launch restarts, how it builds each attempt, and how its stop requests reach a wait.
final class RestartPolicyTests: XCTestCase {
    let policy = RestartPolicy()

    func isRestart(_ d: RestartPolicy.Decision) -> Bool { if case .restart = d { return true }; return false }
    func isStop(_ d: RestartPolicy.Decision) -> Bool { if case .stop = d { return true }; return false }

    func testOnlyFailuresARestartCanFixAreRestarted() {
        XCTAssertEqual(policy.decide(status: 0, stopRequested: false), .done)
        XCTAssertEqual(policy.decide(status: 0, stopRequested: true), .done)
        let restarted: [Int32] = [69, 75, 128 + SIGKILL, 128 + SIGTERM, 128 + SIGHUP, 128 + SIGINT, 128 + SIGPIPE, 128 + SIGUSR1, 128 + SIGXCPU]
        for status in restarted {
            XCTAssertTrue(isRestart(policy.decide(status: status, stopRequested: false)), "\(status)")
            XCTAssertTrue(isStop(policy.decide(status: status, stopRequested: true)), "\(status) after dml-launch was told to stop")
        }
        let crashes = [SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGSEGV, SIGSYS].map { 128 + $0 }
        for status in [1, 2, 3, 64, 65, 66, 70, 73, 74, 78, 126, 127, 128, 193, 255] + crashes {
            XCTAssertTrue(isStop(policy.decide(status: status, stopRequested: false)), "\(status)")
        }
        // Every FailureKind is decided: only a stall and a preemption are worth another attempt.
        for kind in FailureKind.allCases {
            XCTAssertEqual(isRestart(policy.decide(status: kind.exitStatus, stopRequested: false)),
                           kind == .unavailable || kind == .preempted, "\(kind)")
        }
    }

    func testAttemptsAfterTheFirstResume() {
        var options = LaunchOptions(command: ["dml-train", "--steps", "5"])
        XCTAssertEqual(options.arguments(attempt: 0), ["dml-train", "--steps", "5"])
        XCTAssertEqual(options.arguments(attempt: 1), ["dml-train", "--steps", "5", "--resume"])
        options.np = 4
        options.mpirun = ["mpirun", "--hostfile", "hosts"]
        XCTAssertEqual(options.arguments(attempt: 2), ["mpirun", "--hostfile", "hosts", "-np", "4", "dml-train", "--steps", "5", "--resume"])
        options.noResume = true
        XCTAssertEqual(options.arguments(attempt: 2), ["mpirun", "--hostfile", "hosts", "-np", "4", "dml-train", "--steps", "5"])
    }

    /// As root under OpenMPI's launcher (by -np or as the command's first word, wherever it lives), the job
    /// gets the two variables OpenMPI needs to run as root; not otherwise, and never over the user's own.
    func testRootGetsOpenMPIsPermissionOnlyUnderOpenMPIsLauncher() {
        let allow = ["OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"]
        var withNp = LaunchOptions(command: ["dml-train"])
        withNp.np = 2
        XCTAssertEqual(withNp.environment(isRoot: true, current: [:]), allow)
        XCTAssertEqual(withNp.environment(isRoot: false, current: [:]), [:])
        XCTAssertEqual(withNp.environment(isRoot: true, current: ["OMPI_ALLOW_RUN_AS_ROOT": "1"]), ["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"])
        for launcher in ["mpirun", "/usr/bin/mpiexec", "scripts/mpirun", "orterun"] {
            XCTAssertEqual(LaunchOptions(command: [launcher, "-np", "2", "dml-train"]).environment(isRoot: true, current: [:]), allow, launcher)
        }
        for command in [["dml-train"], ["srun", "dml-train"], ["./job.sh"]] {
            XCTAssertEqual(LaunchOptions(command: command).environment(isRoot: true, current: [:]), [:], "\(command)")
        }
        var mpich = LaunchOptions(command: ["dml-train"])
        mpich.np = 2
        mpich.mpirun = ["srun"]
        XCTAssertEqual(mpich.environment(isRoot: true, current: [:]), [:])
    }

    /// A stop request ends a back-off wait at once, from another thread, and keeps the next attempt from
    /// starting.
    func testAStopEndsTheWaitAtOnceAndNoAttemptStartsAfterIt() throws {
        let supervisor = Supervisor(signals: [])
        XCTAssertNil(supervisor.wait(seconds: 0.05), "no stop: the time runs out")
        let started = Date()
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.2) { supervisor.stop(by: SIGTERM) }
        XCTAssertEqual(supervisor.wait(seconds: 30), SIGTERM)
        XCTAssertLessThan(Date().timeIntervalSince(started), 5)
        XCTAssertEqual(supervisor.wait(seconds: 30), SIGTERM, "a stop stays requested")
        XCTAssertNil(try supervisor.run(["true"]), "no attempt after a stop")
    }

    func testAnAttemptReportsItsStatusAndErrorTail() throws {
        let supervisor = Supervisor(signals: [])
        let attempt = try XCTUnwrap(try supervisor.run(["sh", "-c", "echo one >&2; echo; echo two >&2; exit 69"]))
        XCTAssertEqual(attempt.status, 69)
        XCTAssertEqual(attempt.errorTail, ["one", "two"])
        let killed = try XCTUnwrap(try supervisor.run(["sh", "-c", "kill -9 $$"]))
        XCTAssertEqual(killed.status, 128 + SIGKILL)
        let withEnvironment = try XCTUnwrap(try supervisor.run(["sh", "-c", "exit $DML_TEST_STATUS"], environment: ["DML_TEST_STATUS": "7"]))
        XCTAssertEqual(withEnvironment.status, 7)
    }
}
