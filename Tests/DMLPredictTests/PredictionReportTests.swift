import XCTest
import Foundation
import DMLComm
import DMLPredict
import DMLTestSupport

/// The scores of `ClassificationReport` and `RegressionReport` against scikit-learn's on the same predictions
/// (the committed fixtures of `Tests/Fixtures/predict/`, written once by its `generate.py`: nothing here is
/// computed by Python), with the rows split over 1…5 ranks in process. `PredictTests` checks the same
/// numbers through `dml-predict` under mpirun.
final class PredictionReportTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/predict")

    /// The rows of a CSV fixture after its header, as numbers.
    static func table(_ name: String) throws -> (header: [String], rows: [[Double]]) {
        let text = try String(contentsOf: fixtures.appendingPathComponent(name), encoding: .utf8)
        let lines = text.split(separator: "\n").map { $0.split(separator: ",").map(String.init) }
        return (lines[0], lines.dropFirst().map { $0.map { Double($0)! } })
    }

    /// `expected_<case>.json`.
    static func expected(_ name: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: fixtures.appendingPathComponent("expected_\(name).json"))) as! [String: Any]
    }

    func testClassificationAndRegressionScoresMatchScikitLearnOnAnyNumberOfRanks() throws {
        for name in ["binary", "multiclass", "regression"] {
            let truth = try Self.table("eval_\(name).csv").rows.map { $0[0] }
            let (header, outputs) = try Self.table("predictions_\(name).csv")
            let regression = name == "regression"
            // The class of each row, by the header's labels; a one-output model's file holds 1 − p and p.
            let classes = header.map { Double($0) }
            let width = name == "binary" ? 1 : header.count
            let flat: [Float] = outputs.flatMap { row in name == "binary" ? [Float(row[1])] : row.map { Float($0) } }
            for p in 1...5 {
                let reports = try LocalCommunicator.run(size: p) { comm -> EvaluationReport in
                    let range = (comm.rank * truth.count / p) ..< ((comm.rank + 1) * truth.count / p)
                    let mine = Array(flat[(range.lowerBound * width) ..< (range.upperBound * width)])
                    if regression {
                        return .regression(try RegressionReport.compute(truth: range.map { Float(truth[$0]) }, values: mine, comm: comm))
                    }
                    let predictions = Predictions(outputs: mine, rows: range.count, width: width, classes: header.count)
                    let y = range.map { Float(classes.firstIndex(of: truth[$0])!) }
                    return .classification(try ClassificationReport.compute(truth: y, predictions: predictions, labels: header, comm: comm))
                }
                for report in reports {
                    let json = try JSONSerialization.jsonObject(with: Data(report.jsonBytes()))
                    XCTAssertEqual(JSONComparison.mismatches(json, try Self.expected(name)), [], "\(name) np=\(p)")
                }
            }
        }
    }
}
