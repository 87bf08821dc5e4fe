import XCTest
import Foundation
import DMLTraining
import DMLTestSupport

/// `--data file.h5` under a real mpirun: the same rows as the same array in `.npy` files train the same
/// parameters, predict the same file, and bad HDF5 input is one message naming the file and dataset.
final class HDF5IntegrationTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed (scripts/setup installs it)")
        dir = MPIRunner.temporaryDirectory()
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// 90 training rows and 30 test rows, 5 float32 features, 3 classes: as one HDF5 file (the training set
    /// chunked and gzip-compressed, the test set contiguous, under their own names) and as four .npy files.
    func writeData() -> (h5: String, x: String, y: String, testX: String, testY: String) {
        var random = TestRandom(seed: 21)
        let rows = 120, d = 5
        let x = random.floats(rows * d, in: -2...2)
        let y = (0..<rows).map { r in Int64((x[r * d] + x[r * d + 1] > 0 ? 1 : 0) + (x[r * d + 2] > 1 ? 1 : 0)) }
        let h5 = "\(dir)/data.h5"
        let file = HDF5TestFile(h5)
        file.write("/train/X", Array(x[0..<90 * d]), shape: [90, d], chunk: [16, d], gzip: 4)
        file.write("/train/y", Array(y[0..<90]), shape: [90], chunk: [16], gzip: 4)
        file.write("/test/X", Array(x[90 * d..<rows * d]), shape: [30, d])
        file.write("/test/y", Array(y[90..<rows]), shape: [30])
        file.close()
        func npy(_ name: String, _ descr: String, _ shape: [Int], _ bytes: [UInt8]) -> String {
            let path = "\(dir)/\(name)"
            writeNPYFile(path, descr: descr, shape: shape, bytes: bytes)
            return path
        }
        return (h5,
                npy("X.npy", "<f4", [90, d], Array(x[0..<90 * d]).withUnsafeBytes { Array($0) }),
                npy("y.npy", "<i8", [90], Array(y[0..<90]).withUnsafeBytes { Array($0) }),
                npy("tX.npy", "<f4", [30, d], Array(x[90 * d..<rows * d]).withUnsafeBytes { Array($0) }),
                npy("ty.npy", "<i8", [30], Array(y[90..<rows]).withUnsafeBytes { Array($0) }))
    }

    func testTrainingAndPredictingFromHDF5EqualsTheSameDataAsNPY() throws {
        let data = writeData()
        let common = ["--model", "mlp", "--hidden", "8", "--standardize", "--batch-size", "16", "--epochs", "3", "--lr", "0.1"]
        for np in [2, 3] {
            let fromH5 = "\(dir)/h5-\(np).safetensors", fromNPY = "\(dir)/npy-\(np).safetensors"
            let a = try MPIRunner.run(ranks: np, "dml-train", common + [
                "--data", data.h5, "--h5-features", "/train/X", "--h5-labels", "/train/y",
                "--test-data", data.h5, "--h5-test-features", "/test/X", "--h5-test-labels", "/test/y", "--output", fromH5])
            XCTAssertEqual(a.status, 0, a.stderr)
            XCTAssertTrue(a.stdout.contains("data.h5 (90 rows × 5 features, 3 classes)"), a.stdout)
            let b = try MPIRunner.run(ranks: np, "dml-train", common + [
                "--data", data.x, "--labels", data.y, "--test-data", data.testX, "--test-labels", data.testY, "--output", fromNPY])
            XCTAssertEqual(b.status, 0, b.stderr)
            let h5Model = try Safetensors.read(path: fromH5), npyModel = try Safetensors.read(path: fromNPY)
            for name in ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"] {
                XCTAssertEqual(try h5Model.floats(name), try npyModel.floats(name), "np=\(np) \(name): the same bits")
            }
            XCTAssertEqual(h5Model.metadata["data_checksum"], npyModel.metadata["data_checksum"], "the same rows")
            // The same test figures: the last line of each run.
            XCTAssertEqual(a.stdout.split(separator: "\n").first { $0.hasPrefix("done:") }?.split(separator: ";").dropFirst(),
                           b.stdout.split(separator: "\n").first { $0.hasPrefix("done:") }?.split(separator: ";").dropFirst())

            // dml-predict on the HDF5 test set writes what it writes for the .npy one.
            let p1 = "\(dir)/p-h5-\(np).npy", p2 = "\(dir)/p-npy-\(np).npy"
            let c = try MPIRunner.run(ranks: np, "dml-predict", ["--model", fromH5, "--data", data.h5, "--h5-features", "/test/X",
                                                                 "--h5-labels", "/test/y", "--proba", "--output", p1, "--evaluate"])
            XCTAssertEqual(c.status, 0, c.stderr)
            XCTAssertTrue(c.stdout.contains("labels from /test/y"), c.stdout)
            let d = try MPIRunner.run(ranks: np, "dml-predict", ["--model", fromH5, "--data", data.testX, "--labels", data.testY,
                                                                 "--proba", "--output", p2, "--evaluate"])
            XCTAssertEqual(d.status, 0, d.stderr)
            XCTAssertEqual(bytes(p1), bytes(p2), "np=\(np): the same predictions")
            XCTAssertFalse(bytes(p1).isEmpty)
            XCTAssertEqual(c.stdout.split(separator: "\n").dropFirst(2), d.stdout.split(separator: "\n").dropFirst(2), "the same scores")
        }
    }

    /// A test file laid out as the training file needs no dataset flags of its own.
    func testATestFileTakesTheTrainingDatasetNames() throws {
        let data = writeData()
        let test = "\(dir)/test.h5"
        try FileManager.default.copyItem(atPath: data.h5, toPath: test)
        let r = try MPIRunner.run(ranks: 2, "dml-train", ["--data", data.h5, "--h5-features", "/train/X", "--h5-labels", "/train/y",
                                                          "--test-data", test, "--epochs", "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("test loss"), r.stdout)
    }

    /// One message from one rank, non-zero exit, nothing written, for np 2 and 3.
    func testBadHDF5InputIsOneMessageNamingTheFileAndDataset() throws {
        let data = writeData()
        let bad = "\(dir)/bad.h5"
        let file = HDF5TestFile(bad)
        file.write("/X", (0..<40).map { $0 == 33 ? Float.infinity : Float($0) }, shape: [10, 4])
        file.write("/cube", (0..<40).map { Float($0) }, shape: [2, 5, 4])
        file.writeStrings("/names", (0..<10).map { "r\($0)" })
        file.write("/y", (0..<10).map { Int64($0 % 2) }, shape: [10])
        file.close()
        let cases: [(args: [String], expected: String, status: Int32)] = [
            (["--data", data.h5, "--h5-features", "/train/Q", "--h5-labels", "/train/y"],
             "data.h5, /train/Q: no such dataset in the file (its datasets: /test/X, /test/y, /train/X, /train/y)", 65),
            (["--data", bad, "--h5-features", "/cube"], "bad.h5, /cube: shape (2, 5, 4) is not supported: the dataset must be 1-D or 2-D", 65),
            (["--data", bad, "--h5-features", "/X", "--h5-labels", "/names"], "bad.h5, /names: string values are not supported", 65),
            (["--data", data.h5, "--h5-features", "/train/X", "--h5-labels", "/test/y"], "data.h5, /test/y: 30 labels but /train/X has 90 rows", 65),
            (["--data", bad, "--h5-features", "/X", "--h5-labels", "/y"], "bad.h5, /X[8, 1]: inf is not a finite number", 65),
            (["--data", data.x, "--labels", data.y, "--h5-features", "/train/X"], "--h5-features applies to HDF5 data", 64),
            (["--data", data.h5, "--h5-features", "/train/X", "--labels", data.y], "--labels is a .npy file of labels for .npy features", 64),
            (["--data", data.h5], "is HDF5: name its features dataset with --h5-features", 64),
        ]
        let jobs = [2, 3].flatMap { np in cases.enumerated().map { (np, $0.offset, $0.element) } }
        let arguments = jobs.map { ($0.0, $0.1, $0.2.args) }, dir = self.dir
        let results = MPIRunner.twoAtATime(jobs.count) { j -> MPIRunner.Result? in
            let (np, i, args) = arguments[j]
            return try? MPIRunner.run(ranks: np, "dml-train", args + ["--output", "\(dir)/never\(np)-\(i).safetensors", "--epochs", "1"], timeout: 60)
        }
        for (j, (np, i, c)) in jobs.enumerated() {
            guard let r = results[j] else { XCTFail("np=\(np) \(c.args): could not run"); continue }
            XCTAssertEqual(r.status, c.status, "np=\(np) \(c.args): \(r.stderr)")
            let messages = r.stderr.split(separator: "\n").filter { $0.hasPrefix("dml-train: error") || $0.hasPrefix("Error:") }
            XCTAssertEqual(messages.count, 1, "np=\(np) \(c.args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(c.expected), "np=\(np) \(c.args): expected \(c.expected) in \(r.stderr)")
            XCTAssertFalse(r.stderr.contains("HDF5-DIAG"), "the library's own error stack is silenced: \(r.stderr)")
            XCTAssertFalse(r.stdout.contains("step"), "no training")
            XCTAssertFalse(FileManager.default.fileExists(atPath: "\(dir)/never\(np)-\(i).safetensors"), "nothing written")
        }
    }
}
