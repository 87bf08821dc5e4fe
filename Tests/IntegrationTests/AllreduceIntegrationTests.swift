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
            XCTAssertTrue(r.stdout.contains("# one-core memcpy"), r.stdout)
            let lines = try String(contentsOfFile: csv, encoding: .utf8).split(separator: "\n").map(String.init)
            XCTAssertEqual(lines.first, "algorithm,np,bytes,time_us,algbw_GBps,busbw_GBps")
            let rows = lines.dropFirst().map { $0.split(separator: ",").map(String.init) }
            XCTAssertEqual(rows.count, 6 * 4, "every algorithm (mpi included) at every size")
            XCTAssertEqual(Set(rows.map { $0[0] }), ["mpi", "ring", "shm", "rd", "central", "auto"])
            for row in rows {
                XCTAssertEqual(row.count, 6)
                XCTAssertEqual(row[1], String(np))
                let time = Double(row[3]) ?? -1, algbw = Double(row[4]) ?? -1, busbw = Double(row[5]) ?? -1
                XCTAssertGreaterThan(time, 0, "\(row)")
                XCTAssertEqual(busbw, algbw * 2 * Double(np - 1) / Double(np), accuracy: 1e-3 + 1e-3 * busbw, "\(row)")
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
        for kind in ["ring", "shm", "rd", "central", "mpi", "auto"] {
            for np in [2, 3] {
                let path = "\(dir)/\(kind)-\(np).safetensors"
                let r = try MPIRunner.run(ranks: np, "dml-train", small + ["--allreduce", kind, "--output", path])
                XCTAssertEqual(r.status, 0, "\(kind) np=\(np): \(r.stderr)")
                XCTAssertTrue(r.stdout.contains("allreduce \(kind)"), r.stdout)
                let file = try Safetensors.read(path: path)
                outputs["\(kind)-\(np)"] = try file.floats("weight") + file.floats("bias")
            }
        }
        let reference = outputs["mpi-2"]!
        for (name, params) in outputs {
            XCTAssertLessThan(maxRelativeDifference(params, reference), 1e-4, name)
        }
    }
}
