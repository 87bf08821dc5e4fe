import XCTest
import DMLTestSupport

/// DML under a real Slurm: `scripts/slurm-local` starts munged, slurmctld and two slurmd (Slurm nodes dmls1 and
/// dmls2) on this machine with a private configuration, and each test submits through it. Skipped, saying why,
/// unless DML_TEST_SLURM=1 (`scripts/test --cluster`: the three take about 150 s on this shared 2-core machine,
/// too long for every run) and we are root with slurm-wlm and munge installed (`scripts/setup --slurm`); each
/// test takes its own cluster down, also when it fails. `benchmarks/slurm/preempt_requeue.sh` runs the same scenarios and more
/// (the time limit's B:USR1) with a log.
final class SlurmIntegrationTests: XCTestCase {
    /// What `sh` returns: the exit status, and stdout and stderr together.
    struct Shell {
        let status: Int32
        let stdout: String
        var stderr: String { "" }
    }

    /// The repository root (this file is Tests/IntegrationTests/SlurmIntegrationTests.swift).
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    /// ~1200 steps: long enough to be signalled after step 200, a few seconds under srun.
    let flags = "--synthetic-rows 8192 --synthetic-features 128 --steps 1200 --log-every 200"
    var dir = ""
    var clusterDir = ""

    override func setUpWithError() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed (scripts/setup installs it)")
        try XCTSkipUnless(ProcessInfo.processInfo.environment["DML_TEST_SLURM"] == "1",
                          "the Slurm tests run only with DML_TEST_SLURM=1 (scripts/test --cluster sets it): about 2.5 minutes; skipped")
        try XCTSkipUnless(getuid() == 0, "the Slurm tests need root (slurmd runs the jobs); skipped")
        let path: [String] = ProcessInfo.processInfo.environment["PATH", default: ""].split(separator: ":").map(String.init) + ["/usr/sbin"]
        for tool in ["slurmctld", "slurmd", "munged", "sbatch", "srun", "scancel"] {
            try XCTSkipUnless(path.contains { FileManager.default.isExecutableFile(atPath: "\($0)/\(tool)") },
                              "\(tool) is not installed: the Slurm tests are skipped (scripts/setup --slurm installs slurm-wlm and munge)")
        }
        dir = MPIRunner.temporaryDirectory()
        // A cluster of its own (directory and ports), so that one started by hand keeps running.
        clusterDir = "/tmp/dml-slurm-xctest-\(getpid())"
        let up = try sh("scripts/slurm-local up --nodes 2", timeout: 60)
        XCTAssertEqual(up.status, 0, up.stdout + up.stderr)
        if up.status != 0 { throw XCTSkip("scripts/slurm-local up failed: \(up.stderr)") }
    }

    override func tearDownWithError() throws {
        guard !clusterDir.isEmpty else { return }
        let down = try sh("scripts/slurm-local down", timeout: 60)
        XCTAssertEqual(down.status, 0, down.stdout + down.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: clusterDir), "slurm-local down leaves nothing behind")
    }

    /// Runs a bash command in the repository root with this test's cluster and binaries in the environment;
    /// its output (stdout and stderr together) lands in a file, read back at the end. Spawned and reaped with
    /// posix_spawn/waitpid rather than Foundation's Process: after `slurm-local up` has started its daemons,
    /// Process.waitUntilExit was seen to wait forever for a bash that had already exited (a zombie it never reaped).
    func sh(_ command: String, timeout: TimeInterval = 120) throws -> Shell {
        let log = "\(dir)/sh-\(UUID().uuidString).out"
        let environment = MPIRunner.environment(["DML_SLURM_DIR": clusterDir, "DML_SLURM_PORT": "6947",
                                                 "SLURM_CONF": "\(clusterDir)/slurm.conf", "DML_BIN": MPIRunner.productsDirectory.path,
                                                 "W": dir, "FLAGS": flags]).map { "\($0.key)=\($0.value)" }
        let argv = ["/bin/bash", "-c", "cd '\(root)' && { \(command)\n} </dev/null >'\(log)' 2>&1"]
        var cArgv = argv.map { strdup($0) } + [nil]
        var cEnv = environment.map { strdup($0) } + [nil]
        defer { (cArgv + cEnv).forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, "/bin/bash", nil, nil, &cArgv, &cEnv)
        guard rc == 0 else { throw NSError(domain: "posix_spawn", code: Int(rc)) }
        let deadline = Date().addingTimeInterval(timeout)
        var raw: Int32 = 0
        while waitpid(pid, &raw, WNOHANG) == 0 {
            if Date() > deadline { kill(pid, SIGKILL); waitpid(pid, &raw, 0); break }
            usleep(50_000)
        }
        let status = raw & 0x7f == 0 ? (raw >> 8) & 0xff : 128 + (raw & 0x7f)
        let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        return Shell(status: status, stdout: output)
    }

    /// The uninterrupted model from mpirun on one node, the reference every Slurm run must equal bit for bit.
    func reference() throws -> [UInt8] {
        let r = try MPIRunner.run(ranks: 4, "dml-train", flags.split(separator: " ").map(String.init) + ["--output", "\(dir)/ref.safetensors"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return bytes("\(dir)/ref.safetensors")
    }

    /// sbatch → dml-train.sbatch → srun --mpi=pmix across the two Slurm nodes: MPI sees two nodes (the node
    /// grouping of hier and auto), and the model has the same bytes as mpirun's.
    func testSbatchWithSrunSeesTwoNodesAndWritesTheSameModelAsMpirun() throws {
        let bench = try sh("srun --mpi=pmix -N 2 -n 4 \"$DML_BIN/dml-bench\" allreduce --sizes 4K --algorithms hier --check", timeout: 120)
        XCTAssertEqual(bench.status, 0, bench.stdout + bench.stderr)
        XCTAssertTrue(bench.stdout.contains("4 ranks on 2 nodes"), bench.stdout)
        XCTAssertTrue(bench.stdout.contains("every result exact (0 wrong) and bit-identical on every rank"), bench.stdout)

        let ref = try reference()
        let r = try sh("""
            j=$(LAUNCHER=srun sbatch --parsable --wait --chdir="$W" --output="$W/job.out" benchmarks/slurm/dml-train.sbatch $FLAGS --output "$W/slurm.safetensors")
            status=$?; cat "$W/job.out"; exit $status
            """, timeout: 180)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("4 ranks on 2 nodes (dmls[1-2]), launcher srun, run 1"), r.stdout)
        XCTAssertTrue(r.stdout.contains("done: 1200 steps"), r.stdout)
        XCTAssertEqual(bytes("\(dir)/slurm.safetensors"), ref, "srun across two Slurm nodes gives mpirun's bits")
    }

    /// `scancel --signal=USR1 JOB` reaches the ranks: checkpoint, exit 75; the sbatch script requeues the job,
    /// the requeued run resumes, and the final model has the bits of an uninterrupted run.
    func testScancelUSR1PreemptsRequeuesAndResumesToTheSameBits() throws {
        let ref = try reference()
        let r = try sh("""
            j=$(LAUNCHER=srun sbatch --parsable --chdir="$W" --output="$W/job.out" benchmarks/slurm/dml-train.sbatch $FLAGS \
                --checkpoint-dir "$W/ckpt" --checkpoint-every 500 --resume --output "$W/slurm.safetensors")
            for i in $(seq 240); do grep -q "step  200/" "$W/job.out" 2>/dev/null && break; sleep 0.5; done
            scancel --signal=USR1 "$j"
            for i in $(seq 240); do squeue -h -j "$j" 2>/dev/null | grep -q . || break; sleep 0.5; done
            cat "$W/job.out"; scontrol show job "$j" | grep -o "JobState=[A-Z]*\\|Restarts=[0-9]*"
            """, timeout: 240)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        for expected in ["run 1", "stopped by SIGUSR1 after step", "exit status 75", "requeueing it to resume", "run 2",
                         "resuming from \(dir)/ckpt/ckpt-", "done: 1200 steps", "JobState=COMPLETED", "Restarts=1"] {
            XCTAssertTrue(r.stdout.contains(expected), "no '\(expected)' in:\n\(r.stdout)")
        }
        XCTAssertEqual(bytes("\(dir)/slurm.safetensors"), ref, "preempted, requeued and resumed: the bits of the uninterrupted run")
    }

    /// srun and SIGTERM: `scancel JOB` has slurmstepd send the ranks SIGTERM (checkpoint, 75: srun exits 75, and
    /// --resume finishes with the same bits), while a SIGTERM to srun itself is not passed on: srun ends the
    /// step with SIGKILL ("forcing job termination": status 137; 143 when srun itself ends by it), and no checkpoint is written at the stop. (mpirun's
    /// reaction: FailureIntegrationTests.)
    func testScancelGivesTheRanksSIGTERMButSrunDoesNotForwardIt() throws {
        let ref = try reference()
        let run = """
            srun --job-name=dmls-$1 --mpi=pmix -N 2 -n 4 "$DML_BIN/dml-train" $FLAGS --checkpoint-dir "$W/$1" --checkpoint-every 500 --resume --output "$W/$1.safetensors"
            """
        let r = try sh("""
            run() { \(run); }
            run scancel >"$W/scancel.out" 2>&1 & pid=$!
            for i in $(seq 240); do grep -q "step  200/" "$W/scancel.out" 2>/dev/null && break; sleep 0.5; done
            scancel "$(squeue -h -n dmls-scancel -o %i)"
            wait $pid; echo "scancel: srun status $?"; cat "$W/scancel.out"
            run scancel >"$W/resume.out" 2>&1; echo "resume: srun status $?"; cat "$W/resume.out"
            run term >"$W/term.out" 2>&1 & pid=$!
            for i in $(seq 240); do grep -q "step  200/" "$W/term.out" 2>/dev/null && break; sleep 0.5; done
            kill -TERM $pid; wait $pid; echo "term: srun status $?"; cat "$W/term.out"
            """, timeout: 240)
        XCTAssertTrue(r.stdout.contains("scancel: srun status 75"), r.stdout)
        XCTAssertTrue(r.stdout.contains("dml-train: stopped by SIGTERM after step"), r.stdout)
        XCTAssertTrue(r.stdout.contains("resume: srun status 0"), r.stdout)
        XCTAssertEqual(bytes("\(dir)/scancel.safetensors"), ref, "stopped by scancel, resumed: the bits of the uninterrupted run")
        let term = r.stdout.components(separatedBy: "term: srun status ").last?.prefix(3) ?? ""
        XCTAssertTrue(term.hasPrefix("137") || term.hasPrefix("143"), "SIGTERM to srun: killed (137) or srun ended by it (143):\n\(r.stdout)")
        XCTAssertEqual(r.stdout.components(separatedBy: "stopped by SIGTERM").count, 2, "only the scancel'd run saw SIGTERM:\n\(r.stdout)")
    }
}
