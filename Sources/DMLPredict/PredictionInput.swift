import DMLData
import DMLStatus
import DMLTraining

/// How to read a prediction input for a given model: whether it has labels, where they are, and how they are
/// read (classes of the model for an evaluated classifier, plain numbers otherwise). Every rank works it out
/// for itself from the file's first line (CSV) or header (`.npy`) and the model, so all decide alike.
struct PredictionInput {
    let source: DataSource
    let options: ReadOptions
    /// The class labels of the model, class i first, when a classifier is evaluated: the reader maps the
    /// data's labels onto them and refuses a label the training data did not have.
    let known: LabelMapping?
    /// Where the labels are, for the log: "labels in column 0 (y)", "no labels", ….
    let labelsDescription: String

    /// Refuses (`DataError`, `.dataFormat`) a file whose columns fit neither the model's features alone nor the
    /// features and one label column, and `evaluate` (`JobError`, `.usage`) on a file without labels.
    init(_ job: PredictionConfiguration, model: ModelFile, evaluate: Bool) throws {
        source = job.source
        var read = ReadOptions()
        read.header = job.header
        read.delimiter = job.delimiter
        let format = source.format ?? DataFormat.infer(fromPath: source.path)
        // LIBSVM indices are bounded by the model's features; a hashed model hashes any index into its 2^B columns.
        read.features = format == .libsvm && model.featureHash == nil ? model.features : nil
        read.hash = model.featureHash
        read.sparse = job.sparse == .auto && model.standardization != nil ? .off : job.sparse
        if format == .csv {
            // The training run's CSV treatment: its missing-value policy and fill values, its dropped columns.
            read.missing = model.missing ?? .error
            read.missingFill = model.missingFill
            read.dropColumns = (model.dropColumns ?? []).compactMap { LabelColumn(argument: $0) }
            read.categorical = (model.categorical ?? []).compactMap { LabelColumn(argument: $0) }
            read.categories = model.categories
            read.unseenCategoryIsError = job.unseenCategory == .error
            read.categoricalEncoding = model.categorical != nil ? model.categoricalEncoding : .onehot
        }
        // The input's feature columns: as recorded, or a one-hot column is one input column for its block.
        let features = model.inputColumns
            ?? model.features - (model.categories ?? []).reduce(0) { $0 + $1.count } + (model.categories?.count ?? 0)
        func mismatch(_ columns: Int) -> DataError {
            DataError(file: job.data, "\(columns) column\(columns == 1 ? "" : "s"), but the model (\(job.model)) takes \(features) feature\(features == 1 ? "" : "s"): "
                      + "give its \(features) feature columns, with or without one label column (--label-column)")
        }
        if format == .libsvm {
            labelsDescription = "labels from each line"
        } else if let labelsFile = source.labelsPath ?? source.hdf5?.labels {
            let x = try DataLoader.columns(source, options: read)
            guard let x, x.count == features else { throw mismatch(x?.count ?? 1) }
            labelsDescription = "labels from \(labelsFile)"
        } else {
            guard let columns = try DataLoader.columns(source, options: read) else {
                throw DataError(file: source.path, "a 1-D array: give the features as a 2-D array (rows × features)")
            }
            switch job.labelColumn {
            case .none:
                guard columns.count == features else { throw mismatch(columns.count) }
                read.labeled = false
            case let .column(c):
                guard columns.count == features + 1 else { throw mismatch(columns.count) }
                read.labelColumn = c
            case .detect:
                guard columns.count == features || columns.count == features + 1 else { throw mismatch(columns.count) }
                read.labeled = columns.count == features + 1
                // A header and the model's feature names: the label is the one column that is not a feature.
                if let names = columns.names, let known = model.featureNames.map({ $0 + (model.categorical ?? []) }) {
                    let others = names.filter { !known.contains($0) }
                    if others.count == 1 { read.labelColumn = .name(others[0]) }
                }
            }
            if !read.labeled {
                labelsDescription = "no labels"
            } else {
                switch read.labelColumn {
                case let .index(i): labelsDescription = "labels in column \(i)" + (columns.names.flatMap { i < $0.count ? " (\($0[i]))" : nil } ?? "")
                case .last: labelsDescription = "labels in the last column"
                case let .name(n): labelsDescription = "labels in column '\(n)'"
                }
            }
        }
        if evaluate && !read.labeled {
            throw JobError(.usage, "--evaluate and --report score predictions against labels, but \(source.path) has none "
                           + "(\(features) columns: the model's features)")
        }
        // Labels are checked against the model's classes only when they are scored; otherwise they are
        // just numbers, read and ignored.
        if evaluate && model.task == .classification {
            read.task = .classification
            let names = model.labels ?? (0..<model.classes).map(String.init)
            guard names.count == model.classes else {
                throw DataError(file: job.model, "its labels \(names) are not \(model.classes) classes")
            }
            let values = names.map { Double($0) }
            // Numeric labels match by value (`1.0` is class `1`); text labels by their text.
            known = values.allSatisfy({ $0 != nil }) && Set(values).count == names.count
                ? LabelMapping(values: values.map { $0! }) : LabelMapping(text: names)
        } else {
            read.task = .regression
            known = nil
        }
        self.options = read
    }
}
