import XCTest
import DMLData
import DMLPredict

/// Every combination of `dml-predict` flags that cannot be honoured is refused before anything is read, with
/// a message naming the flags; the combinations that can are accepted.
final class PredictionConfigurationTests: XCTestCase {
    func testEveryCombinationIsHonouredOrRefused() {
        let base = PredictionConfiguration(model: "m.safetensors", data: "d.csv", output: "p.csv")
        XCTAssertNil(base.conflict())
        func with(_ change: (inout PredictionConfiguration) -> Void) -> PredictionConfiguration { var c = base; change(&c); return c }
        let accepted = [
            with { $0.output = nil; $0.evaluate = true },
            with { $0.output = nil; $0.report = "r.json" },
            with { $0.output = "p.npy"; $0.probabilities = true },
            with { $0.labelColumn = .none },
            with { $0.labelColumn = .column(.last); $0.evaluate = true },
            with { $0.data = "x.npy"; $0.labels = "y.npy" },
            with { $0.header = false; $0.delimiter = .whitespace },
        ]
        for c in accepted { XCTAssertNil(c.conflict(), "\(c)") }
        let refused: [(PredictionConfiguration, String)] = [
            (with { $0.model = "" }, "--model"),
            (with { $0.data = "" }, "--data"),
            (with { $0.output = nil }, "nothing to do"),
            (with { $0.output = "p.json" }, "name the predictions file .csv or .npy"),
            (with { $0.output = nil; $0.evaluate = true; $0.probabilities = true }, "--proba says what --output holds"),
            (with { $0.labelColumn = .none; $0.evaluate = true }, "--label-column none says the data has none"),
            (with { $0.labelColumn = .none; $0.report = "r.json" }, "--report scores"),
            (with { $0.labels = "y.npy" }, "--labels is a .npy file of labels for .npy features"),
            (with { $0.data = "x.npy"; $0.labels = "y.npy"; $0.labelColumn = .column(.index(0)) }, "with --labels the labels are a file"),
            (with { $0.data = "x.svm"; $0.labelColumn = .column(.index(0)) }, "does not apply to LIBSVM"),
            (with { $0.data = "x.npy"; $0.header = true }, "--header applies to CSV files only"),
            (with { $0.data = "x.svm"; $0.delimiter = .comma }, "--delimiter applies to CSV files only"),
            (with { $0.collectiveTimeout = -1 }, "--collective-timeout"),
        ]
        for (c, message) in refused {
            XCTAssertTrue(c.conflict()?.contains(message) == true, "\(c): \(c.conflict() ?? "accepted")")
        }
        XCTAssertEqual(LabelChoice(argument: "none"), LabelChoice.none)
        XCTAssertEqual(LabelChoice(argument: "last"), .column(.last))
        XCTAssertEqual(LabelChoice(argument: "3"), .column(.index(3)))
        XCTAssertEqual(LabelChoice(argument: "y"), .column(.name("y")))
        XCTAssertNil(LabelChoice(argument: "-1"))
    }
}
