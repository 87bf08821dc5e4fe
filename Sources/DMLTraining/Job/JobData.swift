import DMLComm
import DMLKernels
import DMLData
import DMLStatus

extension JobConfiguration.Data {
    /// This rank's shards of the training, validation and test sets, with what the output must record.
    /// Collective: every rank must call it; a problem on any rank is thrown on all (`AgreedFailure`).
    /// `standardization`: statistics to apply instead of computing them (a warm start's model's).
    /// `warn`: where a stale or damaged shard cache is reported (rank 0, once).
    /// `exactStatistics`: `--reproducible`'s standardisation and `--missing mean` fill, the same bits for any number of ranks.
    public func load(comm: Communicator, seed: UInt64, validationFraction: Double? = nil,
                     standardization: Standardization? = nil, exactStatistics: Bool = false, warn: (String) -> Void = { _ in }) throws -> LoadedData {
        var loaded = try path == nil ? synthetic(comm: comm, seed: seed) : files(comm: comm, warn: warn, exactSums: exactStatistics)
        try loaded.prepare(validationFraction: validationFraction ?? self.validationFraction, standardize: standardize, seed: seed, comm: comm,
                           given: standardization, exactStatistics: exactStatistics)
        return loaded
    }

    /// Feature partitioning: every row of every split, this rank's share of the feature columns (a
    /// `ShardPlan` of the columns). The synthetic classification task generates only those columns; other
    /// data is read as usual, each rank its own rows (prepared: validation split, standardisation), then
    /// turned from rows into columns (`Dataset.transposedToColumns`), so no rank ever parses the whole file.
    /// Collective.
    public func loadColumns(comm: Communicator, seed: UInt64, validationFraction: Double? = nil,
                            standardization: Standardization? = nil) throws -> (data: LoadedData, columns: Range<Int>) {
        let fraction = validationFraction ?? self.validationFraction
        if path == nil {
            try comm.agree(comm.size > syntheticFeatures ? "\(comm.size) ranks but only \(syntheticFeatures) features (--synthetic-features): with --partition features every rank needs at least one column" : nil,
                           kind: .usage)
        }
        if path == nil && task == .classification && fraction == 0 && !standardize && standardization == nil {
            let columns = ShardPlan(rows: syntheticFeatures, ranks: comm.size).range(of: comm.rank)
            let generator = SyntheticClassification(seed: seed, features: syntheticFeatures, classes: syntheticClasses)
            let train = generator.columnSlice(rows: syntheticRows, columns: columns, testSplit: false)
            let test = syntheticTestRows > 0 ? generator.columnSlice(rows: syntheticTestRows, columns: columns, testSplit: true) : nil
            return (LoadedData(train: train, test: test,
                               description: "the synthetic task (\(syntheticRows) rows × \(syntheticFeatures) features, \(syntheticClasses) classes)"),
                    columns)
        }
        var rows = try load(comm: comm, seed: seed, validationFraction: fraction, standardization: standardization)
        let d = rows.train.features
        try comm.agree(comm.size > d ? "\(comm.size) ranks but only \(d) features in \(path ?? "the data"): with --partition features every rank needs at least one column" : nil,
                       kind: path == nil ? .usage : .dataFormat)
        let plan = ShardPlan(rows: d, ranks: comm.size)
        // The transposition's own communicator: its messages can meet no other concern's.
        let own = try comm.duplicate()
        func columns(_ set: Dataset) throws -> Dataset { try set.transposedToColumns({ plan.range(of: $0) }, comm: own, tag: 0) }
        rows.train = try columns(rows.train)
        rows.validation = try rows.validation.map(columns)
        rows.test = try rows.test.map(columns)
        return (rows, plan.range(of: comm.rank))
    }

    /// The read options these flags give.
    public var readOptions: ReadOptions {
        var options = ReadOptions()
        options.task = task
        options.header = header
        options.delimiter = delimiter
        options.labelColumn = labelColumn
        options.features = features
        options.sparse = effectiveSparse
        options.hash = hashBits.flatMap { FeatureHash(bits: $0) }
        options.missing = missing
        options.dropColumns = dropColumns
        options.categorical = categorical
        options.categoricalEncoding = categoricalEncoding
        return options
    }

    /// `sparse` as the reader applies it: `auto` becomes `off` when a flag needs dense rows (--standardize
    /// centres every feature; --partition features cuts columns); `conflict()` refuses `on` with them.
    public var effectiveSparse: SparseMode {
        sparse == .auto && (standardize || partition == .features) ? .off : sparse
    }

    /// The training file's feature names (a CSV header), for the model file; nil without one.
    public var featureNames: [String]? {
        trainingSource.flatMap { DataLoader.featureNames($0, options: readOptions) }
    }

    /// The training file with its labels file or HDF5 datasets; nil for the synthetic task.
    public var trainingSource: DataSource? {
        path.map { DataSource(path: $0, labelsPath: labels, format: format, hdf5: h5Features.map { HDF5Datasets(features: $0, labels: h5Labels) }) }
    }

    /// The test file with its labels file or HDF5 datasets. An HDF5 test file's datasets are
    /// `--h5-test-features`/`--h5-test-labels` when the first is given, else the training data's names (a test
    /// file laid out as the training file).
    public var testSource: DataSource? {
        testPath.map { test in
            let hdf5 = (format ?? DataFormat.infer(fromPath: test)) == .hdf5
            let sets = h5TestFeatures.map { HDF5Datasets(features: $0, labels: h5TestLabels) }
                ?? (hdf5 ? h5Features.map { HDF5Datasets(features: $0, labels: h5Labels) } : nil)
            return DataSource(path: test, labelsPath: testLabels, format: format, hdf5: sets)
        }
    }

    /// The first way the data files' flags do not fit their formats (`DataSource.partsConflict`), as one
    /// message; nil when they fit. Checked before anything is read.
    public var filesConflict: String? {
        if path == nil, let flag = [("--h5-features", h5Features), ("--h5-labels", h5Labels)].first(where: { $0.1 != nil })?.0 {
            return "\(flag) needs --data (without it the synthetic task is used)"
        }
        if testPath == nil, let flag = [("--h5-test-features", h5TestFeatures), ("--h5-test-labels", h5TestLabels)].first(where: { $0.1 != nil })?.0 {
            return "\(flag) needs --test-data"
        }
        if h5TestLabels != nil && h5TestFeatures == nil { return "--h5-test-labels needs --h5-test-features (the test file's datasets are named together)" }
        if h5Labels != nil && h5Features == nil { return "--h5-labels needs --h5-features" }
        return trainingSource?.partsConflict(.training) ?? testSource?.partsConflict(.test)
    }

    private func files(comm: Communicator, warn: (String) -> Void, exactSums: Bool) throws -> LoadedData {
        var options = readOptions
        options.exactSums = exactSums
        let source = trainingSource!
        // LIBSVM text: parsed by the rank's kernel threads (`--threads`, by default the cores the rank was
        // given: none to spare at np 2 on 2 cores).
        let libsvm = (source.format ?? DataFormat.infer(fromPath: source.path)) == .libsvm
        if libsvm { options.parseThreads = KernelThreads.count }
        try checkShardFits(source, options: options, comm: comm)
        let trainFile: LoadedFile
        if streamsFromCache {
            trainFile = try cachedShard(source, options: options, comm: comm, warn: warn)
        } else {
            trainFile = try DataLoader.load(source, options: options, comm: comm)
        }
        let (train, mapping) = (trainFile.data, trainFile.labels)
        // The test rows are stored as the training rows are (the same density rule could decide otherwise),
        // and their missing values filled with the training means.
        var testOptions = options
        if testOptions.sparse == .auto { testOptions.sparse = train.isSparse ? .on : .off }
        testOptions.missingFill = trainFile.missingFill
        testOptions.categories = trainFile.categories
        let test = try testSource.map {
            try DataLoader.read($0, options: testOptions, comm: comm, features: train.features, labels: mapping).0
        }
        let what = task == .classification ? "\(train.classes) classes" : "regression"
        // Streamed or not: the same model file. --reproducible: the model file records this line, so it names no
        // figure that depends on the number of ranks.
        let localNonZeros = train.csr?.nonZeros ?? train.stream.flatMap { $0.isSparse ? $0.nonZeros : nil }
        let nonZeros = try localNonZeros.map { exactSums ? "\(try comm.allreduced(Int64($0), op: .sum)) non-zeros" : "\($0) non-zeros on rank \(comm.rank)" }
        let storage = nonZeros.map { " CSR, " + $0 } ?? ""
        let hashed = options.hash.map { ", indices hashed into 2^\($0.bits)" } ?? ""
        var loaded = LoadedData(train: train, test: test, labels: mapping,
                                description: "\(source.path) (\(train.globalRows) rows × \(train.features) features\(hashed)\(storage), \(what)"
                                    + trainFile.notes.map { "; " + $0 }.joined() + ")")
        if libsvm && !streamsFromCache { loaded.parseThreads = options.parseThreads }
        loaded.missing = missing
        loaded.missingFill = trainFile.missingFill
        loaded.dropColumns = dropColumns
        if !categorical.isEmpty { loaded.categorical = (categorical.map(\.argument), trainFile.categories) }
        loaded.inputColumns = trainFile.inputColumns
        loaded.featureNames = trainFile.featureNames
        return loaded
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
