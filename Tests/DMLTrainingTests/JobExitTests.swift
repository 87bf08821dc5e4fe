import XCTest
@testable import DMLComm
import DMLData
import DMLStatus
@testable import DMLTraining
import DMLTestSupport

/// The one mapping from errors to exit statuses (`JobExit`, `FailureKind`) that dml-train and dml-bench use.
final class JobExitTests: XCTestCase {
    func testEachErrorTypeHasItsStatus() {
        struct Unclassified: Error {}
        let cases: [(Error, Int32)] = [
            (JobError(.usage, "--model logistic needs 2 classes"), 64),
            (TrainingFailure("DML_FAULT='x': …", kind: .usage), 64),
            (DataError(file: "a.csv", line: 3, "\"x\" is not a number"), 65),
            (Safetensors.FormatError(reason: "not a DML checkpoint"), 65),
            (TrainingFailure("no valid checkpoint in ckpt: …", kind: .dataFormat), 65),
            (DataError(file: "a.csv", "no such file", kind: .noInput), 66),
            (CollectiveStall(phase: "the start of step 5", seconds: 2, missing: [2], reporter: true, rank: 0), 69),
            (CommError.mpi(call: "MPI_Allreduce", code: 15, message: "peer gone"), 69),
            (CommError.peerFailed("rank 2"), 69),
            (TrainingFailure("training diverged at step 2"), 70),
            (TrainingFailure("replica check failed after step 50"), 70),
            (CommError.invalidArgument("peer 9"), 70),
            (Unclassified(), 70),
            (AtomicFile.WriteError(path: "out", reason: "directory does not exist", kind: .cannotCreate), 73),
            (AtomicFile.WriteError(path: "out", reason: "write failed", kind: .ioError), 74),
            (Preempted(signal: SIGTERM, step: 8), 75),
            (TrainingFailure("cannot resume from ckpt: another configuration", kind: .configuration), 78),
            (AgreedFailure(rank: 1, failedRanks: [1], message: "m", failureKind: .noInput), 66),
        ]
        for (error, status) in cases {
            XCTAssertEqual(JobExit.status(of: error), status, "\(error)")
        }
    }

    func testFilesThatCannotBeWrittenAreClassified() throws {
        let dir = MPIRunner.temporaryDirectory()
        XCTAssertThrowsError(try AtomicFile.checkWritable(dir + "/no/such/file")) { XCTAssertEqual(JobExit.status(of: $0), 73) }
        XCTAssertThrowsError(try AtomicFile.write([1, 2, 3], to: dir + "/f", fault: .fail(afterBytes: 1))) { XCTAssertEqual(JobExit.status(of: $0), 74) }
        XCTAssertThrowsError(try AtomicFile.write([1], to: dir + "/no/such/f")) { XCTAssertEqual(JobExit.status(of: $0), 73) }
        XCTAssertThrowsError(try FaultPlan(parsing: "bogus")) { XCTAssertEqual(JobExit.status(of: $0), 64) }
    }

    /// A failure every rank knows is printed once, by rank 0, and every rank returns its status.
    func testAFailureEveryRankKnowsIsPrintedOnceAndReturnsItsStatus() throws {
        let lines = LinesCollector()
        let statuses = try LocalCommunicator.run(size: 3) { comm -> [Int32] in
            var out: [Int32] = []
            do { try comm.agree(comm.rank == 2 ? "data.csv: no such file" : nil, kind: .noInput) } catch {
                out.append(JobExit.report(error, comm: comm, program: "dml-train", write: lines.append))
            }
            out.append(JobExit.report(TrainingFailure("training diverged"), comm: comm, program: "dml-train", write: lines.append))
            out.append(JobExit.report(Preempted(signal: SIGUSR1, step: 4), comm: comm, program: "dml-train", write: lines.append))
            return out
        }
        XCTAssertEqual(statuses, Array(repeating: [66, 70, 75], count: 3))
        // A stop before the first step has nothing to save, checkpoint directory or not (it said "no --checkpoint-dir").
        XCTAssertEqual(Preempted(signal: SIGUSR1, step: 0).description, "stopped by SIGUSR1 after step 0; nothing to save before the first step")
        XCTAssertEqual(lines.all.sorted(), ["dml-train: error (reported by rank 2): data.csv: no such file",
                                            "dml-train: error: training diverged",
                                            "dml-train: stopped by SIGUSR1 after step 4; no --checkpoint-dir, so nothing was saved (exit status 75)"])
    }
}

/// Lines written from several threads (the ranks of a `LocalCommunicator`).
final class LinesCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    func append(_ line: String) { lock.lock(); lines.append(line); lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return lines }
}
