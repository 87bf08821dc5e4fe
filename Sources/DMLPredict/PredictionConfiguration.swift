import DMLData
import DMLTraining

/// Where the labels of a prediction input are, if anywhere (`dml-predict --label-column`).
public enum LabelChoice: Equatable, Sendable {
    /// Decided by the input's columns against the model's feature count: as many columns as the model has
    /// features, no labels; one more, a label column (the column whose header name is not one of the model's
    /// `feature_names`, when both are known; else column 0, dml-train's default). Any other count is refused.
    case detect
    /// Every column is a feature (`--label-column none`).
    case none
    /// The label is in this column; the others are the features.
    case column(LabelColumn)

    /// `none`, or what `LabelColumn(argument:)` takes (an index, `last`, a header name).
    public init?(argument: String) {
        if argument == "none" { self = .none } else if let c = LabelColumn(argument: argument) { self = .column(c) } else { return nil }
    }
}

/// What the predictions file holds.
public enum PredictionContent: String, Sendable {
    /// A classifier's most probable class, as the training file wrote its label.
    case labels
    /// One probability per class, in class order (`--proba`).
    case probabilities
    /// A regression model's predicted values.
    case values
}

/// The file formats of `--output`, from its name.
public enum PredictionFileFormat: String, Sendable, CaseIterable {
    /// Comma-separated text with a header line: `prediction`, or with `--proba` the class labels.
    case csv
    /// NumPy: int64 labels (float64 when a label is not an integer), float32 probabilities (rows × classes) or
    /// values (rows).
    case npy

    /// `.csv`/`.txt` → CSV, `.npy` → NumPy; nil for anything else.
    public init?(path: String) {
        switch path.split(separator: "/").last?.split(separator: ".").dropFirst().last?.lowercased() {
        case "csv", "txt": self = .csv
        case "npy": self = .npy
        default: return nil
        }
    }
}

/// Everything `dml-predict` was asked to do, as plain values (the command line parses into this; the library's
/// `PredictionJob` does the work).
public struct PredictionConfiguration: Sendable, Equatable {
    /// A model file written by `dml-train --output` (`ModelFile`).
    public var model = ""
    /// The rows to predict: a CSV, LIBSVM or `.npy` file, read as `dml-train --data` reads it.
    public var data = ""
    /// Labels for `.npy` features (1-D `.npy`).
    public var labels: String?
    /// HDF5 `data`: the features dataset and the labels dataset (`--h5-features`, `--h5-labels`).
    public var h5Features: String?
    public var h5Labels: String?
    public var format: DataFormat?
    public var header: Bool?
    public var delimiter: Delimiter = .auto
    public var labelColumn: LabelChoice = .detect
    /// The predictions file (`.csv` or `.npy`), written by all ranks at once.
    public var output: String?
    /// Write class probabilities instead of labels.
    public var probabilities = false
    /// Compute and print the scores against the data's labels.
    public var evaluate = false
    /// Write the scores as JSON here (computes them, as `evaluate` does).
    public var report: String?
    /// Seconds any collective may wait without progress (0: forever), as `dml-train --collective-timeout`.
    public var collectiveTimeout = 60.0
    /// LIBSVM rows as CSR or dense, by the same rule as `dml-train --sparse` (so the same file is stored, and
    /// scored, as in training); `auto` reads dense rows for a model with standardisation.
    public var sparse: SparseMode = .auto
    /// `--categorical-unseen`: what a category the model's training data lacked becomes.
    public var unseenCategory: UnseenCategory = .zero

    public init(model: String = "", data: String = "", labels: String? = nil, format: DataFormat? = nil, header: Bool? = nil,
                delimiter: Delimiter = .auto, labelColumn: LabelChoice = .detect, output: String? = nil, probabilities: Bool = false,
                evaluate: Bool = false, report: String? = nil, collectiveTimeout: Double = 60, h5Features: String? = nil, h5Labels: String? = nil) {
        (self.model, self.data, self.labels, self.format, self.header, self.delimiter) = (model, data, labels, format, header, delimiter)
        (self.labelColumn, self.output, self.probabilities, self.evaluate) = (labelColumn, output, probabilities, evaluate)
        (self.report, self.collectiveTimeout) = (report, collectiveTimeout)
        (self.h5Features, self.h5Labels) = (h5Features, h5Labels)
    }

    /// The data file with its labels file and format.
    public var source: DataSource {
        DataSource(path: data, labelsPath: labels, format: format, hdf5: h5Features.map { HDF5Datasets(features: $0, labels: h5Labels) })
    }

    /// What the output holds, once the model is known.
    public func content(classifier: Bool) -> PredictionContent { !classifier ? .values : probabilities ? .probabilities : .labels }

    /// The first combination of values that cannot be honoured, as one message; nil when all can. Checked
    /// before anything is read (`conflict(with:)` adds what needs the model).
    public func conflict() -> String? {
        let format = self.format ?? DataFormat.infer(fromPath: data)
        if model.isEmpty { return "--model must name a model file" }
        if data.isEmpty { return "--data must name the file to predict" }
        if output == nil && !evaluate && report == nil {
            return "nothing to do: give --output FILE for the predictions, and/or --evaluate or --report FILE for the scores"
        }
        if let o = output, PredictionFileFormat(path: o) == nil {
            return "--output \(o): name the predictions file .csv or .npy (the name sets its format)"
        }
        if probabilities && output == nil { return "--proba says what --output holds: give --output FILE" }
        if labelColumn == .none && (evaluate || report != nil) {
            return "\(evaluate ? "--evaluate" : "--report") scores predictions against the data's labels, but --label-column none says the data has none"
        }
        if h5Labels != nil && h5Features == nil { return "--h5-labels needs --h5-features" }
        if let parts = source.partsConflict() { return parts }
        if h5Labels != nil && labelColumn != .detect {
            return "--label-column names a column of the features; with --h5-labels the labels are a dataset of their own"
        }
        if labels != nil {
            if format != .npy { return "--labels is a .npy file of labels for .npy features (--data \(data) is not .npy)" }
            if labelColumn != .detect { return "--label-column names a column of --data; with --labels the labels are a file of their own" }
        }
        if format == .libsvm && labelColumn != .detect {
            return "--label-column does not apply to LIBSVM: its lines always start with their label"
        }
        if let f = format, f != .csv {
            if header != nil { return "--\(header! ? "" : "no-")header applies to CSV files only (--data is \(f.rawValue))" }
            if delimiter != .auto { return "--delimiter applies to CSV files only (--data is \(f.rawValue))" }
        }
        if sparse == .on && format != .libsvm {
            return "--sparse on keeps LIBSVM rows as CSR; --data \(data) is \((format ?? .csv).rawValue) input, which stays dense"
        }
        if !(collectiveTimeout >= 0 && collectiveTimeout.isFinite) {
            return "--collective-timeout must be a non-negative number of seconds (got \(collectiveTimeout))"
        }
        return nil
    }

    /// What the model makes impossible (`--proba` for a regression model), as one message; nil when nothing.
    public func conflict(with file: ModelFile) -> String? {
        if probabilities && file.task == .regression {
            return "--proba: \(model) is a regression model (\(file.kind.rawValue)): it predicts values, not class probabilities"
        }
        if !probabilities, let o = output, PredictionFileFormat(path: o) == .npy, file.task == .classification,
           let labels = file.labels, !labels.allSatisfy({ Double($0) != nil }) {
            return "--output \(o): \(model)'s class labels are text (\(labels.prefix(3).joined(separator: ", "))\(labels.count > 3 ? ", …" : "")), which .npy cannot hold: name the output .csv, or give --proba"
        }
        if unseenCategory == .error && (file.categorical == nil || file.categoricalEncoding == .hash) {
            return "--categorical-unseen error: \(model) " + (file.categorical == nil ? "has no --categorical columns" : "hashes its categorical columns, so no value is unseen")
        }
        if sparse == .on && file.standardization != nil {
            return "--sparse on: \(model) standardises its features, which would make CSR rows dense: give --sparse auto or off"
        }
        return nil
    }
}
