import XCTest
import Foundation
import DMLTraining
import DMLTestSupport

/// `dml-train --sparse` and `--hash-bits`, and `dml-predict` with a hashed model, under a real `mpirun`.
final class SparseIntegrationTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed (scripts/setup installs it)")
        dir = MPIRunner.temporaryDirectory()
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// 400 binary rows, 5 non-zeros each among 2000 columns (0.25 %), labels from a linear teacher.
    func data() -> String { writeTeacherLIBSVM("\(dir)/train.svm", rows: 400, nonZeros: 5, columns: 2000, seed: 3) }

    func parameters(_ path: String) throws -> [Float] {
        let file = try Safetensors.read(path: path)
        return try file.floats("layers.0.weight") + file.floats("layers.0.bias")
    }

    func testSparseOnAndOffTrainTheSameModelAndHashedModelsPredict() throws {
        let train = data()
        let common = ["--data", train, "--model", "logistic", "--features", "2000", "--epochs", "3", "--batch-size", "50", "--lr", "0.5"]
        for np in [1, 3] {
            var models: [String: [Float]] = [:]
            for mode in ["on", "off", "auto"] {
                let out = "\(dir)/\(mode)-\(np).safetensors"
                let r = try MPIRunner.run(ranks: np, "dml-train", common + ["--sparse", mode, "--output", out])
                XCTAssertEqual(r.status, 0, "np=\(np) --sparse \(mode): \(r.stderr)")
                if mode != "off" { XCTAssertTrue(r.stdout.contains("CSR"), "the log says the rows are CSR: \(r.stdout)") }
                models[mode] = try parameters(out)
            }
            let (on, off) = (models["on"]!, models["off"]!)
            let num = zip(on, off).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }
            let den = off.reduce(0.0) { $0 + Double($1) * Double($1) }
            XCTAssertGreaterThan(den, 0)
            XCTAssertLessThan((num / den).squareRoot(), 1e-6, "np=\(np)")
            XCTAssertEqual(models["auto"], on, "auto chose CSR at 0.25 % density: the same bits as on")
        }

        // Hashed: the model file carries the map; dml-predict scores the training file as training evaluated it.
        let hashed = "\(dir)/hashed.safetensors"
        let t = try MPIRunner.run(ranks: 2, "dml-train", ["--data", train, "--test-data", train, "--model", "logistic", "--hash-bits", "8",
                                                         "--epochs", "3", "--batch-size", "50", "--output", hashed])
        XCTAssertEqual(t.status, 0, t.stderr)
        XCTAssertEqual(try Safetensors.read(path: hashed).metadata["feature_hash"], "xxh3-64 seed=0x444d4c5f48415348 bits=8")
        XCTAssertEqual(try Safetensors.read(path: hashed).entries["layers.0.weight"]?.shape, [1, 256])
        guard let range = t.stdout.range(of: "; test loss ") else { return XCTFail(t.stdout) }
        let trainedLoss = Double(t.stdout[range.upperBound...].prefix { $0 != " " })!
        let p = try MPIRunner.run(ranks: 3, "dml-predict", ["--model", hashed, "--data", train, "--evaluate"])
        XCTAssertEqual(p.status, 0, p.stderr)
        guard let l = p.stdout.range(of: "log-loss ") ?? p.stdout.range(of: "log loss ") else { return XCTFail(p.stdout) }
        let predictedLoss = Double(p.stdout[l.upperBound...].prefix { !$0.isWhitespace && $0 != ";" && $0 != "," })!
        XCTAssertEqual(predictedLoss, trainedLoss, accuracy: 1e-4, "dml-predict's log-loss is the training run's test loss (printed to 4 places)")

        // Bad values: one message, exit 64, before anything is read.
        for bits in ["0", "32"] {
            let r = try MPIRunner.run(ranks: 2, "dml-train", ["--data", train, "--hash-bits", bits])
            XCTAssertEqual(r.status, 64, r.stderr)
            XCTAssertEqual(r.stderr.components(separatedBy: "--hash-bits must be in 1…31 (got \(bits))").count - 1, 1, r.stderr)
        }
        let csv = try MPIRunner.run(ranks: 2, "dml-train", ["--sparse", "on"])
        XCTAssertEqual(csv.status, 64, csv.stderr)
        XCTAssertTrue(csv.stderr.contains("--sparse on keeps LIBSVM rows as CSR; the synthetic task is dense"), csv.stderr)
    }
}
