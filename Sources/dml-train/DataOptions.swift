import ArgumentParser
import DMLComm
import DMLData
import DMLStatus
import DMLTraining

/// Where the training and test rows come from: `--data` files (CSV, LIBSVM, NPY), or without `--data` the
/// built-in synthetic task. Each rank reads only its share of a file.
struct DataOptions: ParsableArguments {
    @Option(help: "Training data: a CSV, LIBSVM/SVMlight or NumPy .npy file (default: the synthetic task).")
    var data: String?

    @Option(help: "Labels for .npy features, as a 1-D .npy file (otherwise a column of --data holds them).")
    var labels: String?

    @Option(name: .customLong("test-data"), help: "Test data, in the format of --data.")
    var testData: String?

    @Option(name: .customLong("test-labels"), help: "Labels for .npy test features.")
    var testLabels: String?

    @Option(help: "File format: \(DataFormat.allCases.map(\.rawValue).joined(separator: ", ")) (default: from the file extension).")
    var format: DataFormat?

    @Option(help: "classification (integer labels become classes 0…k−1) or regression (labels are real targets; without --data, the synthetic task's noisy linear target, for the linear model).")
    var task: LearningTask = .classification

    @Option(name: .customLong("label-column"),
            help: "Column holding the label (CSV or 2-D .npy): a 0-based index, 'last', or a header name.")
    var labelColumn: LabelColumn = .index(0)

    @Flag(inversion: .prefixedNo, help: "Whether line 1 of a CSV file is a header (default: detected — a header when none of its fields is a number).")
    var header: Bool?

    @Option(help: "CSV field separator: auto, comma or whitespace.")
    var delimiter: Delimiter = .auto

    @Option(help: "LIBSVM: number of features (default: the largest index in the file).")
    var features: Int?

    @Flag(help: "Standardise features to mean 0, std 1 with the training rows' global statistics (saved in --output).")
    var standardize = false

    @Option(name: .customLong("validation-fraction"),
            help: "Hold out this fraction of the training rows (chosen by row index and seed, the same for any rank count).")
    var validationFraction: Double = 0

    @Option(help: "How the data is split across ranks: rows (each rank a share of the rows, all features) or features (each rank every row and a share of the feature columns, with the matching weights; linear, logistic and softmax only).")
    var partition: Partition = .rows

    @Option(name: .customLong("synthetic-rows"), help: "Training rows of the synthetic task.")
    var syntheticRows: Int = 16384

    @Option(name: .customLong("synthetic-test-rows"), help: "Test rows of the synthetic task (0: no test set).")
    var syntheticTestRows: Int = 4096

    @Option(name: .customLong("synthetic-features"), help: "Features per row of the synthetic task.")
    var syntheticFeatures: Int = 784

    @Option(name: .customLong("synthetic-classes"), help: "Classes of the synthetic task.")
    var syntheticClasses: Int = 10

    func validate() throws {
        guard syntheticRows > 0 else { throw ValidationError("--synthetic-rows must be at least 1 (got \(syntheticRows))") }
        guard syntheticTestRows >= 0 else { throw ValidationError("--synthetic-test-rows must not be negative") }
        guard syntheticFeatures > 0 else { throw ValidationError("--synthetic-features must be at least 1") }
        guard syntheticClasses >= 2 else { throw ValidationError("--synthetic-classes must be at least 2") }
        guard validationFraction >= 0 && validationFraction < 1 else {
            throw ValidationError("--validation-fraction must be in [0, 1) (got \(validationFraction))")
        }
        if let f = features, f < 1 { throw ValidationError("--features must be at least 1 (got \(f))") }
        if data == nil {
            for (flag, given) in [("--labels", labels != nil), ("--test-data", testData != nil), ("--test-labels", testLabels != nil),
                                  ("--format", format != nil)] where given {
                throw ValidationError("\(flag) needs --data (without it the synthetic task is used)")
            }
        }
        if testLabels != nil && testData == nil { throw ValidationError("--test-labels needs --test-data") }
        if testData != nil && (labels == nil) != (testLabels == nil) {
            throw ValidationError("give --labels and --test-labels together (or neither)")
        }
    }

    /// This rank's shards of the training, validation and test sets, with what the output must record.
    /// Collective: every rank must call it; a problem on any rank is thrown on all (`AgreedFailure`).
    func load(comm: Communicator, seed: UInt64) throws -> LoadedData {
        var loaded = try data == nil ? synthetic(comm: comm, seed: seed) : files(comm: comm)
        try loaded.prepare(validationFraction: validationFraction, standardize: standardize, seed: seed, comm: comm)
        return loaded
    }

    /// Feature partitioning: every row of every split, this rank's share of the feature columns (a
    /// `ShardPlan` of the columns). The synthetic classification task generates only those columns; other
    /// data is loaded whole on each rank (a one-rank communicator, so parsing is not shared) and cut down
    /// to the columns, so after loading a rank holds `rows × features / p` values. Collective.
    func loadColumns(comm: Communicator, seed: UInt64) throws -> (data: LoadedData, columns: Range<Int>) {
        let features = data == nil ? syntheticFeatures : nil
        if let d = features {
            try comm.agree(comm.size > d ? "\(comm.size) ranks but only \(d) features (--synthetic-features): with --partition features every rank needs at least one column" : nil,
                           kind: .usage)
        }
        if data == nil && task == .classification && validationFraction == 0 && !standardize {
            let columns = ShardPlan(rows: syntheticFeatures, ranks: comm.size).range(of: comm.rank)
            let generator = SyntheticClassification(seed: seed, features: syntheticFeatures, classes: syntheticClasses)
            let train = generator.columnSlice(rows: syntheticRows, columns: columns, testSplit: false)
            let test = syntheticTestRows > 0 ? generator.columnSlice(rows: syntheticTestRows, columns: columns, testSplit: true) : nil
            return (LoadedData(train: train, test: test,
                               description: "the synthetic task (\(syntheticRows) rows × \(syntheticFeatures) features, \(syntheticClasses) classes)"),
                    columns)
        }
        var whole = try comm.agreeing {
            try LocalCommunicator.run(size: 1) { local in try self.load(comm: local, seed: seed) }[0]
        }
        let d = whole.train.features
        try comm.agree(comm.size > d ? "\(comm.size) ranks but only \(d) features in \(data ?? "the data"): with --partition features every rank needs at least one column" : nil,
                       kind: data == nil ? .usage : .dataFormat)
        let columns = ShardPlan(rows: d, ranks: comm.size).range(of: comm.rank)
        whole.train = whole.train.columns(columns)
        whole.validation = whole.validation.map { $0.columns(columns) }
        whole.test = whole.test.map { $0.columns(columns) }
        return (whole, columns)
    }

    private func files(comm: Communicator) throws -> LoadedData {
        var options = ReadOptions()
        options.task = task
        options.header = header
        options.delimiter = delimiter
        options.labelColumn = labelColumn
        options.features = features
        let source = DataSource(path: data!, labelsPath: labels, format: format)
        let (train, mapping) = try DataLoader.read(source, options: options, comm: comm)
        let test = try testData.map {
            try DataLoader.read(DataSource(path: $0, labelsPath: testLabels, format: format), options: options, comm: comm,
                                features: train.features, labels: mapping).0
        }
        let what = task == .classification ? "\(train.classes) classes" : "regression"
        return LoadedData(train: train, test: test, labels: mapping,
                          description: "\(source.path) (\(train.globalRows) rows × \(train.features) features, \(what))")
    }

    private func synthetic(comm: Communicator, seed: UInt64) throws -> LoadedData {
        try comm.agree(comm.size > syntheticRows
            ? "\(comm.size) ranks but only \(syntheticRows) training rows (--synthetic-rows): every rank needs at least one row"
            : nil, kind: .usage)
        let task = SyntheticClassification(seed: seed, features: syntheticFeatures, classes: syntheticClasses)
        var train = task.trainingShard(rows: syntheticRows, rank: comm.rank, ranks: comm.size)
        var test = syntheticTestRows > 0 ? task.testShard(rows: syntheticTestRows, rank: comm.rank, ranks: comm.size) : nil
        if self.task == .regression {
            train = task.regressionShard(train, testSplit: false)
            test = test.map { task.regressionShard($0, testSplit: true) }
            return LoadedData(train: train, test: test,
                              description: "the synthetic regression task (\(syntheticRows) rows × \(syntheticFeatures) features)")
        }
        return LoadedData(train: train, test: test,
                          description: "the synthetic task (\(syntheticRows) rows × \(syntheticFeatures) features, \(syntheticClasses) classes)")
    }
}

extension DataFormat: ExpressibleByArgument {}
extension Partition: ExpressibleByArgument {}
extension LearningTask: ExpressibleByArgument {}
extension Delimiter: ExpressibleByArgument {}
extension LabelColumn: ExpressibleByArgument {
    public var defaultValueDescription: String {
        switch self {
        case let .index(i): return String(i)
        case .last: return "last"
        case let .name(n): return n
        }
    }
}
