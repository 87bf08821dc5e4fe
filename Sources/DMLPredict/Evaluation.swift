import Foundation
import DMLComm

/// Precision, recall and F1 of one class (or an average of them), and how many rows truly are of it.
public struct ClassScores: Equatable, Sendable {
    public var precision: Double
    public var recall: Double
    public var f1: Double
    public var support: Int
}

/// The scores of a classifier's predictions, as scikit-learn's `metrics` give them on the same predictions
/// (over the model's classes, as with `labels=` the model's classes; a 0/0 counts 0, as `zero_division=0`):
///
/// - `accuracy`: rows whose predicted class (`Predictions.predictedClass`) is the true one, over all rows;
/// - `logLoss`: mean of −ln p(true class), p clipped to [ε, 1 − ε], ε = 2⁻⁵² (`log_loss` on float64 input);
/// - per class: precision tp/(tp + fp), recall tp/support, F1 2·tp/(support + predicted); `macro` their
///   mean over the classes, `weighted` their mean weighted by support;
/// - `confusion[t][p]`: rows of true class t predicted as p;
/// - `rocAUC` (two classes only): `ExactAUC` of P(class 1); nil when the data holds only one class.
public struct ClassificationReport: Equatable, Sendable {
    public var labels: [String]
    public var rows: Int
    public var accuracy: Double
    public var logLoss: Double
    public var perClass: [ClassScores]
    public var macro: ClassScores
    public var weighted: ClassScores
    public var confusion: [[Int]]
    public var rocAUC: Double?

    /// Scores the predictions of every rank's rows against `truth` (class indices). Collective.
    ///
    /// Cost: one pass over this rank's rows; one allreduce of k² + 1 values; for two classes the AUC's sort and
    /// exchange (on a duplicate of `comm`, made here).
    public static func compute(truth: [Float], predictions: Predictions, labels: [String], comm: Communicator) throws -> ClassificationReport {
        let k = labels.count, n = predictions.rows
        precondition(truth.count == n && k == predictions.classes)
        let eps = Double.ulpOfOne
        var counts = [Double](repeating: 0, count: k * k + 1)   // confusion (exact below 2⁵³ rows), then Σ −ln p
        for r in 0..<n {
            let t = Int(truth[r])
            counts[t * k + predictions.predictedClass(r)] += 1
            counts[k * k] -= Foundation.log(Swift.min(Swift.max(predictions.probability(r, t), eps), 1 - eps))
        }
        counts = try comm.allreduced(counts, op: .sum)
        let confusion = (0..<k).map { t in (0..<k).map { Int(counts[t * k + $0]) } }
        let rows = confusion.joined().reduce(0, +)
        func ratio(_ a: Double, _ b: Double) -> Double { b > 0 ? a / b : 0 }
        var perClass: [ClassScores] = []
        for c in 0..<k {
            let tp = Double(confusion[c][c])
            let support = confusion[c].reduce(0, +)
            let predicted = (0..<k).reduce(0) { $0 + confusion[$1][c] }
            perClass.append(ClassScores(precision: ratio(tp, Double(predicted)), recall: ratio(tp, Double(support)),
                                        f1: ratio(2 * tp, Double(support + predicted)), support: support))
        }
        func average(_ weight: (ClassScores) -> Double) -> ClassScores {
            let total = perClass.reduce(0) { $0 + weight($1) }
            func mean(_ f: (ClassScores) -> Double) -> Double { ratio(perClass.reduce(0) { $0 + weight($1) * f($1) }, total) }
            return ClassScores(precision: mean(\.precision), recall: mean(\.recall), f1: mean(\.f1), support: rows)
        }
        var auc: Double?
        if k == 2 {
            let own = try comm.duplicate()
            auc = try ExactAUC.compute(scores: (0..<n).map(predictions.positiveScore), positive: truth.map { $0 == 1 },
                                       comm: comm, exchange: own)
        }
        return ClassificationReport(labels: labels, rows: rows, accuracy: ratio((0..<k).reduce(0) { $0 + Double(confusion[$1][$1]) }, Double(rows)),
                                    logLoss: ratio(counts[k * k], Double(rows)), perClass: perClass,
                                    macro: average { _ in 1 }, weighted: average { Double($0.support) },
                                    confusion: confusion, rocAUC: auc)
    }
}

/// The scores of a regression model's predictions, as scikit-learn's `mean_squared_error`,
/// `mean_absolute_error` and `r2_score` give them: R² = 1 − Σ(y − ŷ)²/Σ(y − ȳ)², and for targets that are all
/// equal 1 when the predictions are exact, else 0 (`force_finite`). Targets are the Float32 values the
/// reader holds.
public struct RegressionReport: Equatable, Sendable {
    public var rows: Int
    public var mse: Double
    public var mae: Double
    public var r2: Double

    /// Collective: two allreduces (sums, then the squared deviations from the global mean, which keeps R²
    /// free of the cancellation of Σy² − n·ȳ²). Cost: two passes over this rank's rows.
    public static func compute(truth: [Float], values: [Float], comm: Communicator) throws -> RegressionReport {
        precondition(truth.count == values.count)
        var sums = [Double](repeating: 0, count: 4)   // rows, Σy, Σ(y − ŷ)², Σ|y − ŷ|
        for (y, v) in zip(truth, values) {
            let e = Double(y) - Double(v)
            sums[0] += 1; sums[1] += Double(y); sums[2] += e * e; sums[3] += abs(e)
        }
        sums = try comm.allreduced(sums, op: .sum)
        let n = sums[0], mean = sums[1] / Swift.max(n, 1)
        let deviations = try comm.allreduced(truth.reduce(0) { $0 + (Double($1) - mean) * (Double($1) - mean) }, op: .sum)
        let r2 = deviations > 0 ? 1 - sums[2] / deviations : (sums[2] == 0 ? 1 : 0)
        return RegressionReport(rows: Int(n), mse: sums[2] / Swift.max(n, 1), mae: sums[3] / Swift.max(n, 1), r2: r2)
    }
}

/// A report of either kind, as `--evaluate` prints it and `--report` writes it.
public enum EvaluationReport: Equatable, Sendable {
    case classification(ClassificationReport)
    case regression(RegressionReport)

    /// The JSON object of `--report` (keys sorted when serialised): `task`, `rows`, and for a classifier
    /// `accuracy`, `log_loss`, `roc_auc` (two classes; null when the data holds one class), `classes` (one
    /// object per class: `label`, `precision`, `recall`, `f1`, `support`), `macro_avg`, `weighted_avg`,
    /// `confusion_matrix` (rows: true class, columns: predicted, in class order); for regression `mse`,
    /// `mae`, `r2`.
    public var json: [String: Any] {
        switch self {
        case let .classification(c):
            func scores(_ s: ClassScores) -> [String: Any] { ["precision": s.precision, "recall": s.recall, "f1": s.f1, "support": s.support] }
            var j: [String: Any] = ["task": "classification", "rows": c.rows, "accuracy": c.accuracy, "log_loss": c.logLoss,
                                    "classes": zip(c.labels, c.perClass).map { l, s in scores(s).merging(["label": l]) { a, _ in a } },
                                    "macro_avg": scores(c.macro), "weighted_avg": scores(c.weighted), "confusion_matrix": c.confusion]
            if c.labels.count == 2 { j["roc_auc"] = c.rocAUC.map { $0 as Any } ?? NSNull() }
            return j
        case let .regression(r):
            return ["task": "regression", "rows": r.rows, "mse": r.mse, "mae": r.mae, "r2": r.r2]
        }
    }

    /// `json` as bytes (sorted keys, a final newline).
    public func jsonBytes() throws -> [UInt8] {
        try Array(JSONSerialization.data(withJSONObject: json, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])) + [10]
    }

    /// The lines `--evaluate` prints: for a classifier a table like scikit-learn's `classification_report`,
    /// then log-loss, ROC AUC and the confusion matrix; for regression one line.
    public var lines: [String] {
        switch self {
        case let .regression(r):
            return [String(format: "regression, %d rows: MSE %.6g  MAE %.6g  R² %.6f", r.rows, r.mse, r.mae, r.r2)]
        case let .classification(c):
            let width = Swift.max(12, (c.labels.map(\.count).max() ?? 0) + 2)
            func row(_ name: String, _ s: ClassScores) -> String {
                TextColumns.pad(name, width) + String(format: " %9.4f %9.4f %9.4f %9d", s.precision, s.recall, s.f1, s.support)
            }
            var out = [TextColumns.pad("", width) + "  precision    recall  f1-score   support"]
            out += zip(c.labels, c.perClass).map { row($0, $1) }
            out.append(TextColumns.pad("accuracy", width) + String(repeating: " ", count: 20) + String(format: " %9.4f %9d", c.accuracy, c.rows))
            out.append(row("macro avg", c.macro))
            out.append(row("weighted avg", c.weighted))
            var tail = String(format: "log-loss %.6f", c.logLoss)
            if c.labels.count == 2 { tail += c.rocAUC.map { String(format: "   ROC AUC %.6f", $0) } ?? "   ROC AUC undefined (the data holds one class)" }
            out.append(tail)
            out.append("confusion matrix (rows: true class, columns: predicted class):")
            let cell = Swift.max(width - 4, (c.confusion.joined().map { String($0).count }.max() ?? 1) + 1)
            out.append(TextColumns.pad("", width) + c.labels.map { TextColumns.pad($0, cell) }.joined())
            out += zip(c.labels, c.confusion).map { l, row in TextColumns.pad(l, width) + row.map { TextColumns.pad(String($0), cell) }.joined() }
            return out
        }
    }
}

/// Right-aligned text columns.
enum TextColumns {
    static func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s : String(repeating: " ", count: width - s.count) + s
    }
}
