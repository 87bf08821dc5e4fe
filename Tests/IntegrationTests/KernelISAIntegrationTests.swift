import XCTest
import DMLKernels
import DMLTestSupport

/// Ranks whose CPUs differ (an AVX-512 node and an AVX2-only node in one job) run different kernels, yet the job
/// must compute the same bits as on one kind of CPU: the replicas identical (each rank's own share of the gradient
/// is summed by the allreduce, and what every rank computes redundantly, the update, is the same on every ISA)
/// and the model the same as a run on the default ISA (every kernel gives the same bits on every ISA).
/// Simulated on one machine with `DML_KERNELS_ISA`, rank by rank, through mpirun's multi-program launch
/// (`-np 1 -x DML_KERNELS_ISA=a prog : -np 1 -x DML_KERNELS_ISA=b prog`).
final class KernelISAIntegrationTests: XCTestCase {
    let small = ["--synthetic-rows", "600", "--synthetic-features", "24", "--synthetic-classes", "4",
                 "--synthetic-test-rows", "200", "--epochs", "3", "--batch-size", "64", "--verify-every", "1"]

    override func setUpWithError() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed (scripts/setup installs it)")
        try XCTSkipUnless(KernelDispatch.supported.count > 1, "this CPU supports one ISA only: nothing to mix")
    }

    /// For softmax and a tanh MLP: two ranks on different ISAs (each pair of supported ISAs) pass the replica check
    /// after every step and write the same bytes as two ranks on the default ISA (a kernel whose bits depended on
    /// the ISA, e.g. a lane sum in another order, fails the second check: tried).
    func testRanksOnDifferentISAsKeepIdenticalReplicas() throws {
        let dir = MPIRunner.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let binary = MPIRunner.executable("dml-train")
        let isas = KernelDispatch.supported.map(\.rawValue)
        let pairs = isas.indices.flatMap { i in isas.indices.filter { $0 > i }.map { (isas[i], isas[$0]) } }
        for model in [["--model", "softmax"], ["--model", "mlp", "--hidden", "32,16", "--activation", "tanh", "--lr", "0.1"]] {
            let reference = "\(dir)/\(model[1]).safetensors"
            let plain = try MPIRunner.run(ranks: 2, "dml-train", small + model + ["--output", reference])
            XCTAssertEqual(plain.status, 0, plain.stderr)
            for (a, b) in pairs {
                let out = "\(dir)/\(model[1])-\(a)-\(b).safetensors"
                let args = small + model + ["--output", out]
                let r = try MPIRunner.runProcess("mpirun", ["--oversubscribe", "-np", "1", "-x", "DML_KERNELS_ISA=\(a)", binary] + args
                                                  + [":", "-np", "1", "-x", "DML_KERNELS_ISA=\(b)", binary] + args)
                XCTAssertEqual(r.status, 0, "\(model[1]) on \(a) + \(b): \(r.stdout)\(r.stderr)")
                XCTAssertFalse(r.stderr.contains("dml: DML_KERNELS_ISA"), r.stderr)
                XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out)), try Data(contentsOf: URL(fileURLWithPath: reference)),
                               "\(model[1]) on \(a) + \(b) wrote other bytes than on the default ISA")
            }
        }
    }

    /// `--reproducible`'s exact sums quantise with `FixedPoint` (vcvttpd2qq on AVX-512, an exact split on AVX2 and
    /// generic): an MLP at np 3 with one rank on each supported ISA writes the bytes of np 1 on each ISA alone.
    func testReproducibleSumsAreTheSameOnEveryISA() throws {
        let dir = MPIRunner.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let binary = MPIRunner.executable("dml-train")
        let isas = KernelDispatch.supported.map(\.rawValue)
        let args = small + ["--model", "mlp", "--hidden", "16", "--optimizer", "adam", "--lr", "0.01", "--reproducible"]
        var files: [String] = []
        for isa in isas {
            let out = "\(dir)/np1-\(isa).safetensors"
            let r = try MPIRunner.runProcess("mpirun", ["-np", "1", "-x", "DML_KERNELS_ISA=\(isa)", binary] + args + ["--output", out])
            XCTAssertEqual(r.status, 0, "np 1 on \(isa): \(r.stdout)\(r.stderr)")
            files.append(out)
        }
        let mixed = "\(dir)/mixed.safetensors"
        let launch = isas.flatMap { [":", "-np", "1", "-x", "DML_KERNELS_ISA=\($0)", binary] + args + ["--output", mixed] }.dropFirst()
        let r = try MPIRunner.runProcess("mpirun", ["--oversubscribe"] + Array(launch))
        XCTAssertEqual(r.status, 0, "np \(isas.count) on \(isas): \(r.stdout)\(r.stderr)")
        files.append(mixed)
        let reference = try Data(contentsOf: URL(fileURLWithPath: files[0]))
        for file in files.dropFirst() {
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: file)), reference, "\(file) differs from \(files[0])")
        }
    }
}
