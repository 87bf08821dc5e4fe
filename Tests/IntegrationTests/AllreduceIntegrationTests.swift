import XCTest
import DMLTraining
import DMLTestSupport

/// Every allreduce algorithm under a real `mpirun`: exact sums and the same bits on every rank
/// (`dml-bench allreduce --check`), and `dml-train --allreduce` with each of them.
final class AllreduceIntegrationTests: XCTestCase {
    override func setUpWithError() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed (scripts/setup installs it)")
    }

    let quick = ["--warmup", "0", "--iters", "2"]

    func testEveryAlgorithmIsExactAndBitIdenticalOnTwoThreeAndFourRanks() throws {
        // 4 bytes (one element: fewer than p), 4 KiB, 300 KiB (several ring segments), 2 MiB + 12 (several shm
        // blocks and a short last one).
        let sizes = "4,4K,300K,2097164"
        for np in 2...4 {
            let dir = MPIRunner.temporaryDirectory()
            let csv = "\(dir)/allreduce.csv"
            let r = try MPIRunner.run(ranks: np, "dml-bench", ["allreduce", "--sizes", sizes, "--check", "--csv", csv] + quick)
            XCTAssertEqual(r.status, 0, "np=\(np): \(r.stderr)\n\(r.stdout)")
            XCTAssertTrue(r.stdout.contains("# check: every result exact (0 wrong) and bit-identical on every rank"), r.stdout)
            XCTAssertTrue(r.stdout.contains("no algorithm took another concern's messages"), r.stdout)
            XCTAssertTrue(r.stdout.contains("# one-core memcpy"), r.stdout)
            XCTAssertTrue(r.stdout.contains("# shm window: \(np) parts of 1M, each at a page boundary"), r.stdout)
            // auto's set-up probe runs where the node has a CPU per rank, and not where it is oversubscribed.
            let probed = r.stdout.contains("# auto policy: shm, chosen by the set-up probe at 8M: shm ")
                || r.stdout.contains("# auto policy: shm<=1M,mpi, chosen by the set-up probe at 8M: shm ")
            XCTAssertEqual(probed, np <= ProcessInfo.processInfo.activeProcessorCount, r.stdout)
            let lines = try String(contentsOfFile: csv, encoding: .utf8).split(separator: "\n").map(String.init)
            XCTAssertEqual(lines.first, "algorithm,np,bytes,time_us,algbw_GBps,busbw_GBps")
            let rows = lines.dropFirst().map { $0.split(separator: ",").map(String.init) }
            XCTAssertEqual(rows.count, 8 * 4, "every algorithm (mpi included) at every size")
            XCTAssertEqual(Set(rows.map { $0[0] }), ["mpi", "ring", "shm", "rd", "central", "hier", "auto", "sparse"])
            for row in rows {
                XCTAssertEqual(row.count, 6)
                XCTAssertEqual(row[1], String(np))
                let time = Double(row[3]) ?? -1, algbw = Double(row[4]) ?? -1, busbw = Double(row[5]) ?? -1
                XCTAssertGreaterThan(time, 0, "\(row)")
                XCTAssertEqual(busbw, algbw * 2 * Double(np - 1) / Double(np), accuracy: 1e-3 + 1e-3 * busbw, "\(row)")
            }
        }
    }

    /// Two fake nodes on one machine (DML_FAKE_NODES): np=4 as 2+2, np=3 as 2+1 (uneven). Exact, the same
    /// bits everywhere, and dml-train with hier follows the flat ring's path up to float rounding.
    func testHierarchicalOverFakeNodes() throws {
        let dir = MPIRunner.temporaryDirectory()
        for np in [4, 3] {
            let r = try MPIRunner.run(ranks: np, "dml-bench", ["allreduce", "--sizes", "4,4K,2M", "--algorithms", "hier", "--check"] + quick,
                                      environment: ["DML_FAKE_NODES": "2"])
            XCTAssertEqual(r.status, 0, "np=\(np): \(r.stdout) \(r.stderr)")
            XCTAssertTrue(r.stdout.contains("# check: every result exact"), r.stdout)
            var weights: [[Float]] = []
            for algorithm in ["ring", "hier"] {
                let path = "\(dir)/np\(np)-\(algorithm).safetensors"
                let t = try MPIRunner.run(ranks: np, "dml-train", ["--synthetic-rows", "400", "--synthetic-features", "16", "--synthetic-classes", "3",
                                                                  "--steps", "10", "--batch-size", "full", "--verify-every", "1",
                                                                  "--allreduce", algorithm, "--output", path],
                                          environment: ["DML_FAKE_NODES": "2"])
                XCTAssertEqual(t.status, 0, "np=\(np) \(algorithm): \(t.stderr)")
                weights.append(try Safetensors.read(path: path).floats("layers.0.weight"))
            }
            XCTAssertLessThan(zip(weights[0], weights[1]).map { abs($0 - $1) }.max()!, 1e-4, "np=\(np)")
        }
        let bad = try MPIRunner.run(ranks: 2, "dml-bench", ["allreduce", "--sizes", "4K", "--algorithms", "hier"] + quick,
                                    environment: ["DML_FAKE_NODES": "two"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertEqual(bad.stderr.components(separatedBy: "DML_FAKE_NODES must be").count - 1, 1, bad.stderr)
    }

    /// The one ring schedule with each wire encoding (plain, fp16, bf16), Float and Double, under mpirun: exact
    /// on integer data (8 bytes: fewer elements than ranks; 1 MiB: several segments), the same bits on every
    /// rank, and — each algorithm on its own duplicate communicator — none of them takes the messages that
    /// `--check` keeps in flight on the world communicator with the very tags the algorithms use (with the
    /// world communicator handed to them instead, ring, rd and central fail here).
    func testTheRingInEveryEncodingKeepsToItsOwnCommunicator() throws {
        for np in [2, 3] {
            for type in ["float", "double"] {
                let r = try MPIRunner.run(ranks: np, "dml-bench", ["allreduce", "--sizes", "8,4K,300K,1M", "--type", type,
                                                                  "--algorithms", "ring,ring-fp16,ring-bf16,rd,central", "--check"] + quick)
                XCTAssertEqual(r.status, 0, "np=\(np) \(type): \(r.stderr)\n\(r.stdout)")
                XCTAssertTrue(r.stdout.contains("bit-identical on every rank (also on inexact data); no algorithm took another concern's messages"), r.stdout)
            }
        }
    }

    func testDoublesToo() throws {
        let r = try MPIRunner.run(ranks: 3, "dml-bench", ["allreduce", "--type", "double", "--sizes", "8,24K,1M", "--check"] + quick)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("float64"), r.stdout)
        XCTAssertTrue(r.stdout.contains("bit-identical on every rank"), r.stdout)
    }

    func testBadFlagsAreOneMessage() throws {
        for (args, words) in [(["--algorithms", "ring,nccl"], "'nccl' is not one of"),
                              (["--sizes", "4K:1X"], "--sizes '4K:1X'"),
                              (["--type", "double", "--sizes", "12"], "not a whole number of doubles"),
                              (["--csv", "/no/such/dir/out.csv"], "/no/such/dir/out.csv")] {
            let r = try MPIRunner.run(ranks: 2, "dml-bench", ["allreduce"] + args + quick)
            XCTAssertNotEqual(r.status, 0, "\(args)")
            XCTAssertEqual(r.stderr.components(separatedBy: words).count - 1, 1, "\(args): \(r.stderr)")
        }
    }

    /// dml-train checks at the end that every rank holds the same parameter bits, so exit 0 proves it; the
    /// models the algorithms train agree up to float rounding.
    func testDMLTrainWithEveryAllreduceLeavesIdenticalReplicas() throws {
        let dir = MPIRunner.temporaryDirectory()
        let small = ["--synthetic-rows", "300", "--synthetic-features", "12", "--synthetic-classes", "3",
                     "--synthetic-test-rows", "50", "--batch-size", "64", "--steps", "8"]
        var outputs: [String: [Float]] = [:]
        for kind in ["ring", "shm", "rd", "central", "mpi", "auto", "sparse"] {
            for np in [2, 3] {
                let path = "\(dir)/\(kind)-\(np).safetensors"
                let r = try MPIRunner.run(ranks: np, "dml-train", small + ["--allreduce", kind, "--output", path])
                XCTAssertEqual(r.status, 0, "\(kind) np=\(np): \(r.stderr)")
                XCTAssertTrue(r.stdout.contains("allreduce \(kind)"), r.stdout)
                let file = try Safetensors.read(path: path)
                outputs["\(kind)-\(np)"] = try file.floats("layers.0.weight") + file.floats("layers.0.bias")
            }
        }
        let reference = outputs["mpi-2"]!
        for (name, params) in outputs {
            XCTAssertLessThan(maxRelativeDifference(params, reference), 1e-4, name)
        }
    }
}

/// `dml-train --allreduce auto --autotune` under mpirun: measures, caches, and a later job reuses the choice.
final class AutotuneIntegrationTests: XCTestCase {
    func testAutotuneCachesThePolicyForTheNextJob() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed")
        let cache = MPIRunner.temporaryDirectory() + "/tune.json"
        let small = ["--synthetic-rows", "400", "--synthetic-features", "16", "--steps", "4", "--allreduce", "auto", "--tune-cache", cache]
        let tuned = try MPIRunner.run(ranks: 2, "dml-train", small + ["--autotune"])
        XCTAssertEqual(tuned.status, 0, tuned.stderr)
        XCTAssertTrue(tuned.stdout.contains("allreduce auto: tuned in"), tuned.stdout)
        XCTAssertTrue(tuned.stdout.contains("cached in \(cache)"), tuned.stdout)
        let reused = try MPIRunner.run(ranks: 2, "dml-train", small)
        XCTAssertEqual(reused.status, 0, reused.stderr)
        XCTAssertTrue(reused.stdout.contains("from \(cache))"), reused.stdout)
        let bad = try MPIRunner.run(ranks: 1, "dml-train", ["--autotune"])
        XCTAssertEqual(bad.status, 64)
        XCTAssertTrue(bad.stderr.contains("--autotune needs --allreduce auto"), bad.stderr)
    }
}
