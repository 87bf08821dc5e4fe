import XCTest
import DMLModels
import DMLTestSupport

/// Logistic regression on a small real data set reaches scikit-learn's accuracy on the same split.
///
/// Fixture: Tests/Fixtures/breast_cancer.csv (provenance and licence in Tests/Fixtures/README.md), written by
/// benchmarks/breast_cancer_reference.py, which also computed the reference: scikit-learn 1.9.1,
/// `LogisticRegression(C=1.0, max_iter=10000)` (L2, lbfgs) on the features standardised with the training
/// rows' mean and population standard deviation (`StandardScaler`), 426 training / 143 test rows
/// (`train_test_split(test_size=0.25, random_state=0, stratify=y)`): test accuracy 137/143 = 95.80%.
final class BreastCancerTests: XCTestCase {
    static let sklearnTestAccuracy = 137.0 / 143.0

    struct Split {
        var x: [Float] = []
        var y: [Float] = []
        var rows: Int { y.count }
    }

    func load() throws -> (train: Split, test: Split, features: Int) {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/breast_cancer.csv")
        let lines = try String(contentsOf: url, encoding: .utf8).split(separator: "\n")
        let features = lines[0].split(separator: ",").count - 2
        var raw: [String: ([[Double]], [Float])] = ["train": ([], []), "test": ([], [])]
        for line in lines.dropFirst() {
            let f = line.split(separator: ",")
            XCTAssertEqual(f.count, features + 2)
            raw[String(f[0])]!.0.append(f[2...].map { Double($0)! })
            raw[String(f[0])]!.1.append(Float(f[1])!)
        }
        // StandardScaler: training mean and population standard deviation, applied to both splits.
        let train = raw["train"]!.0
        var mean = [Double](repeating: 0, count: features), std = mean
        for row in train { for j in 0..<features { mean[j] += row[j] / Double(train.count) } }
        for row in train { for j in 0..<features { std[j] += (row[j] - mean[j]) * (row[j] - mean[j]) / Double(train.count) } }
        std = std.map { $0.squareRoot() }
        func split(_ name: String) -> Split {
            let (rows, labels) = raw[name]!
            return Split(x: rows.flatMap { row in (0..<features).map { Float((row[$0] - mean[$0]) / std[$0]) } }, y: labels)
        }
        return (split("train"), split("test"), features)
    }

    func testLogisticRegressionMatchesScikitLearnWithinTwoPoints() throws {
        let (train, test, d) = try load()
        XCTAssertEqual(train.rows, 426)
        XCTAssertEqual(test.rows, 143)
        // sklearn minimises C·Σ loss + ½‖w‖²; in mean form that is mean loss + ‖w‖²/(2·C·n): λ = 1/(C·n).
        let model = LogisticRegression(features: d, weightDecay: 1 / Float(train.rows))
        var w = [Float](repeating: 0, count: model.layout.count)
        w.withUnsafeMutableBufferPointer { model.initialize($0, seed: 1) }
        var g = w
        // Full-batch gradient descent on the mean objective.
        for _ in 0..<300 {
            for i in g.indices { g[i] = 0 }
            _ = train.x.withUnsafeBufferPointer { x in
                train.y.withUnsafeBufferPointer { y in
                    model.accumulateGradient(parameters: w, batch: Batch(x: x.baseAddress!, y: y.baseAddress!, rows: train.rows, features: d), into: &g)
                }
            }
            for i in w.indices { w[i] -= 0.5 * g[i] / Float(train.rows) }
        }
        let sums = test.x.withUnsafeBufferPointer { x in
            test.y.withUnsafeBufferPointer { y in
                model.evaluate(parameters: w, batch: Batch(x: x.baseAddress!, y: y.baseAddress!, rows: test.rows, features: d))
            }
        }
        let accuracy = sums.correct / Double(test.rows)
        print("breast cancer: DML logistic test accuracy \(Int(sums.correct))/\(test.rows), scikit-learn 137/143")
        XCTAssertGreaterThanOrEqual(accuracy, Self.sklearnTestAccuracy - 0.02,
                                    "DML \(accuracy) vs scikit-learn \(Self.sklearnTestAccuracy)")
        XCTAssertLessThan(sums.loss / Double(test.rows), 0.2, "test cross-entropy")
    }
}
