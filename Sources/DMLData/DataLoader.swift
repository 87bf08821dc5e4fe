import DMLComm
import DMLStatus
import DMLKernels
import Foundation

/// A file format the readers know.
public enum DataFormat: String, Sendable, CaseIterable {
    case csv, libsvm, npy, hdf5

    /// The format a file name implies: `.csv .tsv .txt .dat` → CSV, `.svm .libsvm .svmlight` → LIBSVM,
    /// `.npy` → NumPy, `.h5 .hdf5` → HDF5. Nil for anything else.
    public static func infer(fromPath path: String) -> DataFormat? {
        let ext = path.split(separator: "/").last?.split(separator: ".").dropFirst().last?.lowercased() ?? ""
        switch ext {
        case "csv", "tsv", "txt", "dat": return .csv
        case "svm", "libsvm", "svmlight", "lsvm": return .libsvm
        case "npy": return .npy
        case "h5", "hdf5": return .hdf5
        default: return nil
        }
    }
}

/// Whether labels are classes or real-valued targets.
public enum LearningTask: String, Sendable, CaseIterable {
    /// Labels are integers; the distinct values over all ranks, sorted, become classes 0 ..< k.
    case classification
    /// Labels are kept as values; `Dataset.classes` is 0.
    case regression
}

/// Which column of a CSV file (or of a 2-D `.npy` array) holds the label.
public enum LabelColumn: Equatable, Sendable {
    case index(Int)      // 0-based
    case last
    case name(String)    // a header's column name

    /// The text `init(argument:)` reads back.
    public var argument: String {
        switch self {
        case let .index(i): return String(i)
        case .last: return "last"
        case let .name(n): return n
        }
    }

    public init?(argument: String) {
        if argument == "last" { self = .last }
        else if let i = Int(argument) { guard i >= 0 else { return nil }; self = .index(i) }
        else if !argument.isEmpty { self = .name(argument) }
        else { return nil }
    }
}

/// A data file and, for `.npy` features, an optional second file of labels; for an HDF5 file, its datasets.
public struct DataSource: Sendable {
    public var path: String
    public var labelsPath: String?
    /// Nil: by extension.
    public var format: DataFormat?
    /// HDF5: the features and labels datasets (`partsConflict` says what fits which format).
    public var hdf5: HDF5Datasets?

    public init(path: String, labelsPath: String? = nil, format: DataFormat? = nil, hdf5: HDF5Datasets? = nil) {
        self.path = path
        self.labelsPath = labelsPath
        self.format = format
        self.hdf5 = hdf5
    }
}

/// How to read files (the `--data` flags, as values).
public struct ReadOptions: Sendable {
    public var task: LearningTask = .classification
    /// nil: detect (line 1 is a header when none of its fields is a number).
    public var header: Bool? = nil
    public var delimiter: Delimiter = .auto
    /// The label's column in a CSV file or a 2-D `.npy` array without a labels file.
    public var labelColumn: LabelColumn = .index(0)
    /// LIBSVM: the number of features (indices above it are errors). Nil: the largest index over all ranks.
    public var features: Int? = nil
    /// False: the file has no label column: every column of a CSV file or 2-D `.npy` array is a feature,
    /// `labelColumn` and `task` are ignored, each row's target is 0 and no class mapping is made (the input of
    /// a prediction without evaluation). LIBSVM lines always start with a label, so it must stay true there.
    public var labeled = true
    /// LIBSVM rows as CSR or dense (`SparseMode`); other formats are always dense (`.on` is refused there).
    public var sparse: SparseMode = .off
    /// LIBSVM: feature hashing into 2^bits columns (`--hash-bits`); `features` then bounds the indices as
    /// written, and the rows are 2^bits wide. Refused for other formats.
    public var hash: FeatureHash? = nil
    /// CSV: missing feature values (empty, `NA`, `NaN`, `null`, `?`) are refused, read as 0, or filled with the
    /// column's mean (`--missing`).
    public var missing: MissingPolicy = .error
    /// With `missing == .mean`: the values to fill with, per feature (a test set or a prediction input takes
    /// the training rows' means); nil: computed from this data (training).
    public var missingFill: [Float]? = nil
    /// `--reproducible`: statistics of the rows (`--missing mean`'s column means) with the same bits for any
    /// number of ranks (`DataLoader.exactColumnMeans`).
    public var exactSums = false
    /// CSV: columns left out (`--drop-columns`: 0-based indices, `last`, or header names).
    public var dropColumns: [LabelColumn] = []
    /// CSV: columns one-hot encoded (`--categorical`): each becomes one 0/1 feature per category, in its place.
    public var categorical: [LabelColumn] = []
    /// The categories of each `categorical` column (in file order), given (a test set, a prediction input: the
    /// training categories); nil: the sorted union over all ranks (training).
    public var categories: [[String]]? = nil
    /// With given `categories`, a value the training data did not have: an all-zero block (counted in the log),
    /// or an error naming its line and column (`--categorical-unseen error`).
    public var unseenCategoryIsError = false
    /// How `categorical` columns are encoded; `.hash` needs `hash` (the bits) and makes the rows CSR.
    public var categoricalEncoding: CategoricalEncoding = .onehot
    /// LIBSVM: threads that parse this rank's byte range (`LIBSVMParser.parse(_:threads:)`): the same rows and
    /// errors for any count; the trainer passes its kernel threads (`--threads`).
    public var parseThreads = 1

    public init() {}
}

/// Whether LIBSVM rows stay CSR (`--sparse`).
public enum SparseMode: String, Sendable, CaseIterable {
    /// CSR when the density (non-zeros over rows × features, over all ranks) is below `autoDensity`.
    case auto
    /// Always CSR (LIBSVM only: CSV and `.npy` input is dense and `on` is refused for it).
    case on
    /// Dense rows, `features` wide.
    case off

    /// `auto`'s threshold: CSR below 10 % non-zeros. Below it CSR is smaller (8 bytes a non-zero against 4 a
    /// value) and its gathers do less work than the dense kernels' full rows.
    public static let autoDensity = 0.1
}

/// The class labels as they were written in the training data: class i is `values[i]`.
///
/// Numeric labels (`values`, sorted numerically) or, when any label of the file is not a number, text labels
/// (`text`, every label as text, sorted by `String`'s order; `values` is then 0 ..< k).
public struct LabelMapping: Sendable, Equatable {
    public let values: [Double]
    /// The class names when they are text (`cat`, `dog`); nil for numeric labels.
    public let text: [String]?
    public init(values: [Double]) { self.values = values; text = nil }
    public init(text: [String]) { self.text = text; values = text.indices.map(Double.init) }
    /// The labels as text, e.g. `["-1", "1"]`, `["0", "1", …, "9"]` or `["cat", "dog"]`.
    public var names: [String] { text ?? values.map(Self.name) }
    /// How a numeric label is written: an integer without a fraction, anything else as Swift prints it.
    static func name(_ v: Double) -> String { v == v.rounded() && abs(v) < 1e15 ? String(Int64(v)) : String(v) }
}

/// What a file gives besides its rows (`DataLoader.load`).
public struct LoadedFile {
    public var data: Dataset
    public var labels: LabelMapping?
    /// `--missing mean`: the fill value of each feature (given, or the training rows' means).
    public var missingFill: [Float]?
    /// Lines for the start-up log (e.g. how many missing values were filled).
    public var notes: [String] = []
    /// `--categorical`: the categories of each such column, in file order (class i of a block is `[i]`).
    public var categories: [[String]]?
    /// CSV with a header: the features' names in order (`name=value` for one-hot features).
    public var featureNames: [String]?
    /// CSV: the file's feature columns (label and dropped columns left out), before any encoding.
    public var inputColumns: Int?

    public init(data: Dataset, labels: LabelMapping?, missingFill: [Float]? = nil, notes: [String] = [], categories: [[String]]? = nil,
                featureNames: [String]? = nil, inputColumns: Int? = nil) {
        self.data = data
        self.labels = labels
        self.missingFill = missingFill
        self.notes = notes
        self.categories = categories
        self.featureNames = featureNames
        self.inputColumns = inputColumns
    }
}

/// Reading data files, collectively: every rank calls the same functions with the same arguments; each
/// reads only its part, and problems found on any rank are thrown on all ranks as one `AgreedFailure`
/// whose message names the file, line and column.
public enum DataLoader {
    /// Reads this rank's shard of `source`. A training set (no `features` given) must have at least one
    /// row per rank. For a test set pass the training set's `features` and
    /// `labels` (a test label that the training set lacks is an error). Collective.
    ///
    /// Cost: this rank's byte range (text) or rows (`.npy`) read once; a few small allreduces.
    /// `rowSink`: a CSV, `.npy` or HDF5 file's rows go there a chunk at a time (`parseCSVInChunks`,
    /// `readArrays`) and the shard returned streams them (`Dataset.stream`); ignored for LIBSVM (the caller
    /// passes none).
    public static func read(_ source: DataSource, options: ReadOptions, comm: Communicator,
                            features expected: Int? = nil, labels known: LabelMapping? = nil,
                            rowSink: DenseRowSink? = nil) throws -> (Dataset, LabelMapping?) {
        let f = try load(source, options: options, comm: comm, features: expected, labels: known, rowSink: rowSink)
        return (f.data, f.labels)
    }

    /// The training rows from which a pandas index column (0, 1, 2, … in column 0) and a label column with more
    /// than half as many classes as rows are refused: below it, a small hand-written file's labels 0, 1, 2 are
    /// no evidence of either.
    public static let minimumRowsForChecks = 10

    /// `read`, with the missing-value fill and notes for the log. Collective.
    public static func load(_ source: DataSource, options: ReadOptions, comm: Communicator,
                            features expected: Int? = nil, labels known: LabelMapping? = nil,
                            rowSink: DenseRowSink? = nil) throws -> LoadedFile {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: source.path, isDirectory: &isDirectory), isDirectory.boolValue {
            try comm.agree("\(source.path) is a directory, not a data file", kind: .noInput)
        }
        let format = source.format ?? DataFormat.infer(fromPath: source.path)
        try comm.agree(format == nil
            ? "\(source.path): cannot tell the format from the file name; name it with --format (\(DataFormat.allCases.map(\.rawValue).joined(separator: ", ")))"
            : nil, kind: .usage)
        try comm.agree(format == nil ? nil : source.partsConflict(), kind: .usage)
        try comm.agree(!options.labeled && (format == .libsvm || source.hasSeparateLabels)
            ? "\(source.path): \(format == .libsvm ? "LIBSVM lines always start with a label" : "a labels file was given"), so the input cannot be read without labels"
            : nil, kind: .usage)
        try comm.agree(options.sparse == .on && format != .libsvm && !(format == .csv && options.categoricalEncoding == .hash)
            ? "--sparse on keeps LIBSVM rows as CSR, but \(source.path) is \(format!.rawValue) input, which stays dense: use --sparse auto or off" : nil,
                       kind: .usage)
        try comm.agree(source.labelsPath != nil && format != .npy
            ? "\(source.path): --labels is a .npy file of labels for .npy features; a \(format!.rawValue) file holds its labels itself (choose the column with --label-column)" : nil,
                       kind: .usage)
        try comm.agree(options.features != nil && format != .libsvm
            ? "\(source.path): --features sets the feature count of LIBSVM files; a \(format!.rawValue) file's columns give it (leave --features out)" : nil,
                       kind: .usage)
        try comm.agree(format != .csv && (options.header != nil || options.delimiter != .auto)
            ? "\(source.path): \(options.header.map { $0 ? "--header" : "--no-header" } ?? "--delimiter") applies to CSV files; this is \(format!.rawValue) input" : nil,
                       kind: .usage)
        try comm.agree(format != .csv && (options.missing != .error || !options.dropColumns.isEmpty || !options.categorical.isEmpty)
            ? "\(source.path): \(options.missing != .error ? "--missing" : options.dropColumns.isEmpty ? "--categorical" : "--drop-columns") applies to CSV files; this is \(format!.rawValue) input" : nil,
                       kind: .usage)
        try comm.agree(format == .csv && (options.hash != nil) != (options.categoricalEncoding == .hash)
            ? (options.hash == nil ? "\(source.path): --categorical-encoding hash hashes into the columns of --hash-bits: give --hash-bits B"
               : options.categorical.isEmpty ? "feature hashing (--hash-bits) maps LIBSVM feature indices, but \(source.path) is csv input"
               : "\(source.path): --hash-bits with a CSV file hashes its --categorical columns: give --categorical-encoding hash") : nil,
                       kind: .usage)
        try comm.agree(options.hash != nil && format != .libsvm && format != .csv
            ? "feature hashing (--hash-bits) maps LIBSVM feature indices, but \(source.path) is \(format!.rawValue) input" : nil, kind: .usage)
        let classification = options.labeled && options.task == .classification
        var raw: RawShard
        var firstRow = 0, globalRows = 0
        var categories: [[String]]?
        var featureNames: [String]?
        var inputColumns: Int?
        var notes: [String] = []
        /// Turns a rank-local row or line index into where the user looks: set once ranks know their offsets.
        var locate: (Int) -> (line: Int?, location: String?) = { _ in (nil, nil) }
        let file = source.path

        switch format! {
        case .csv, .libsvm:
            var local: Result<RawShard, Error>
            var sparse: LIBSVMParser.Sparse?
            var csv: (InputFile, CSVLayout, LineRange)?
            var needQuotes = false
            let started = ReadStatistics.now()
            var rangeBytes = 0
            do {
                let input = try InputFile(source.path)
                if input.size == 0 { throw DataError(file: file, "the file is empty") }
                let lines = LineRange(file: input, range: LineRange.byteRange(size: input.size, rank: comm.rank, ranks: comm.size))
                rangeBytes = lines.range.count
                if format == .csv {
                    let layout = try csvLayout(input, options: options)
                    csv = (input, layout, lines)
                    if layout.quotedHead {
                        needQuotes = true
                        local = .success(RawShard(features: 0, x: [], labels: []))
                    } else {
                        let estimate = try estimatedLines(input, range: lines.range)
                        let parser = CSVParser(layout: layout, classification: classification, missing: options.missing)
                        local = .success(try rowSink.map { try parseCSVInChunks(lines, parser: parser, estimatedRows: estimate, sink: $0) }
                                         ?? parser.parse(lines, estimatedRows: estimate))
                    }
                } else {
                    let (rowsEstimate, nonZeros) = try estimatedLinesAndPairs(input, range: lines.range)
                    let bound = options.hash != nil ? options.features : (options.features ?? expected)
                    let s = try LIBSVMParser(file: file, classification: classification, maxFeatures: bound, hash: options.hash)
                        .parse(lines, threads: options.parseThreads, estimatedRows: rowsEstimate, estimatedNonZeros: nonZeros)
                    sparse = s
                    local = .success(s.shard)
                }
            } catch is QuoteSeen {
                needQuotes = true
                local = .success(RawShard(features: 0, x: [], labels: []))
            } catch let e as LocalLineError {
                local = .failure(e)
            } catch {
                local = .failure(error)
            }
            // Quotes: the fast pass met a `"` somewhere (or the first record has one), so every rank reads its
            // range again with quote-aware records (see LineRange): each rank counts the quotes of its range, and
            // the counts of the ranks before it give the quote parity where its range starts.
            // This rank's own work, without the wait for the others in the collectives below (the statistics'
            // figures are per rank).
            var spent = ReadStatistics.since(started)
            // The first pass's results are discarded: a line error may come from a range that started inside a
            // quoted field. A rank whose file or layout failed (`csv` nil) keeps that failure.
            if format == .csv, try comm.allreduced(Int64(needQuotes ? 1 : 0), op: .max) == 1 {
                // A shard cache being written drops the fast pass's rows; the quote-aware chunks follow the parity
                // from chunk to chunk (`parseCSVInChunks`).
                var count = 0
                var restartFailure: Error?
                do { try rowSink?.restart() } catch { restartFailure = error }
                var start = ReadStatistics.now()
                if let (input, _, lines) = csv {
                    do { count = try LineRange.quoteCount(input, lines.range) } catch { local = .failure(error) }
                }
                spent = ReadStatistics.adding(spent, since: start)
                let counts = try comm.allgathered(Int64(count))
                start = ReadStatistics.now()
                if let (input, layout, lines) = csv {
                    do {
                        if let restartFailure { throw restartFailure }
                        var quotedLines = lines
                        quotedLines.quoteParity = counts[0..<comm.rank].reduce(0, +) & 1 == 1
                        var parser = CSVParser(layout: layout, classification: classification, missing: options.missing)
                        parser.quoted = true
                        let estimate = try estimatedLines(input, range: lines.range)
                        local = .success(try rowSink.map { try parseCSVInChunks(quotedLines, parser: parser, estimatedRows: estimate, sink: $0) }
                                         ?? parser.parse(quotedLines, estimatedRows: estimate))
                    } catch {
                        local = .failure(error)
                    }
                }
                spent = ReadStatistics.adding(spent, since: start)
            }
            ReadStatistics.report(file: file, rank: comm.rank, bytes: rangeBytes, rows: (try? local.get().rows) ?? 0, spent: spent)
            // Line numbers are global: rank r's first line is 1 + the lines of ranks before it. A failing
            // rank stopped early, but only the lowest failing rank's message is shown, and every rank
            // before it read all its lines.
            let localLines = (try? local.get().lines) ?? lineCountBeforeFailure(local)
            let localRows = (try? local.get().rows) ?? 0
            let counts = try allgather([Int64(localLines), Int64(localRows)], comm: comm)
            let lineBase = (0..<comm.rank).reduce(0) { $0 + Int(counts[2 * $1]) }
            firstRow = (0..<comm.rank).reduce(0) { $0 + Int(counts[2 * $1 + 1]) }
            globalRows = (0..<comm.size).reduce(0) { $0 + Int(counts[2 * $1 + 1]) }
            var failure: Error?
            if case let .failure(e) = local {
                if let l = e as? LocalLineError {
                    failure = DataError(file: file, line: lineBase + l.localLine + 1, column: l.column, l.message)
                } else {
                    failure = e
                }
            }
            try comm.agree(error: failure)
            raw = try local.get()
            locate = { (lineBase + $0 + 1, nil) }
            if let (_, layout, _) = csv { inputColumns = layout.featureColumns.count }
            if let hash = options.hash, let (_, layout, _) = csv {
                sparse = hashedCSV(&raw, layout: layout, hash: hash, columns: options.categorical.map(\.argument))
            } else if let (_, layout, _) = csv, layout.categoricalCount > 0 {
                let given = options.categories
                var cats: [[String]] = []
                for slot in 0..<layout.categoricalCount {
                    cats.append(try given.map { $0[slot] } ?? unionOfTexts(raw.categoryTexts[slot], comm: comm, file: file, what: "categories in a --categorical column"))
                }
                let lineOf = locate
                notes += try oneHot(&raw, layout: layout, categories: cats, unseenIsError: given != nil && options.unseenCategoryIsError,
                                    comm: comm, message: { line, column, text in
                                        DataError(file: file, line: lineOf(line).line, column: column, text).description })
                categories = cats
            }
            if let (_, layout, _) = csv, layout.hasHeader, options.hash == nil {
                var names: [String] = []
                for c in layout.featureColumns {
                    let slot = layout.categorySlot[c]
                    if slot >= 0, let cats = categories { names += cats[slot].map { "\(layout.names[c])=\($0)" } } else { names.append(layout.names[c]) }
                }
                featureNames = names
            }
            if var s = sparse {
                let maxIndex = Int(try comm.allreduced(Int64(s.maxIndex), op: .max))
                let features = expected ?? options.hash?.buckets ?? options.features ?? maxIndex
                try comm.agree(features < 1 ? "\(file): no feature values in any row" : nil, kind: .dataFormat)
                let nonZeros = Double(try comm.allreduced(Int64(s.indices.count), op: .sum))
                let density = nonZeros / Swift.max(1, Double(globalRows) * Double(features))
                if options.sparse == .on || (options.sparse == .auto && density < SparseMode.autoDensity) {
                    raw.csr = s.csr(features: features)
                    raw.features = features
                } else {
                    raw = s.densify(features: features)
                }
            }
        case .npy, .hdf5:
            var local: Result<RawShard, Error>
            var rowsInFile = 0
            do {
                let (shard, rows, first) = try format == .hdf5 ? readHDF5(source, options: options, classification: classification, comm: comm, sink: rowSink)
                    : readNPY(source, options: options, classification: classification, comm: comm, sink: rowSink)
                local = .success(shard)
                rowsInFile = rows
                firstRow = first
            } catch {
                local = .failure(error)
            }
            try comm.agree(error: { if case let .failure(e) = local { return e }; return nil }())
            raw = try local.get()
            globalRows = rowsInFile
            let base = firstRow
            locate = { (nil, source.labelLocation(row: base + $0)) }
        }

        try comm.agree(globalRows == 0 ? "\(file): no data rows" : nil, kind: .dataFormat)
        if expected == nil {
            try comm.agree(globalRows < comm.size
                ? "\(comm.size) ranks but only \(globalRows) training rows in \(file): every rank needs at least one row" : nil,
                           kind: .dataFormat)
        }
        if let e = expected, raw.features != e {
            try comm.agree("\(file): \(raw.features) features per row, but the training data has \(e)", kind: .dataFormat)
        }

        var missingFill: [Float]?
        if format == .csv {
            // A pandas index: column 0 holds 0, 1, 2, … on every row (each rank checks its rows against its first
            // global row; an allreduce gathers the verdicts), from `minimumRowsForChecks` rows.
            if expected == nil && options.labeled && globalRows >= minimumRowsForChecks {
                let mine = raw.rows == 0 || (raw.indexLike && raw.indexStart == Double(firstRow))
                if try comm.allreduced(Int64(mine ? 0 : 1), op: .max) == 0 {
                    try comm.agree("\(file): column 0 holds 0, 1, 2, … \(globalRows - 1), a row index (pandas to_csv writes one unless index=False), not data: "
                                   + "leave it out with --drop-columns 0, or name the label column with --label-column", kind: .dataFormat)
                }
            }
            if options.missing == .mean {
                missingFill = try fillMissing(&raw, given: options.missingFill, exactRows: options.exactSums ? globalRows : nil, comm: comm, notes: &notes)
            }
        }

        // Labels: the union of every rank's distinct labels, sorted, numbered 0 ..< k.
        var mapping: LabelMapping?
        var y = [Float](repeating: 0, count: raw.rows)
        let anyText = classification && format == .csv
            ? try comm.allreduced(Int64(raw.textLabelOfRow.isEmpty ? 0 : 1), op: .max) == 1 : false
        if !options.labeled {
            // No labels in the file: the targets stay 0 and there are no classes.
        } else if classification && (anyText || known?.text != nil) {
            // Text labels: every label as text (numeric ones as `LabelMapping.name` writes them).
            func rowName(_ i: Int) -> String {
                raw.textLabelOfRow.isEmpty || raw.textLabelOfRow[i] < 0 ? LabelMapping.name(raw.labels[i]) : raw.labelTexts[Int(raw.textLabelOfRow[i])]
            }
            var firstSeen: [(String, Int)] = zip(raw.labelTexts, raw.labelTextFirstSeen).map { ($0, $1) }
            firstSeen += raw.labelFirstSeen.map { (LabelMapping.name($0.key), $0.value) }
            let names: [String]
            if let known {
                names = known.names
                let index = Set(names)
                let unknown = firstSeen.sorted { $0.1 < $1.1 }.first { !index.contains($0.0) }.map {
                    DataError(file: file, line: locate($0.1).line, "class label \"\($0.0)\" does not occur in the training data").description
                }
                try comm.agree(unknown, kind: .dataFormat)
                mapping = known
            } else {
                names = try unionOfTexts(firstSeen.map(\.0), comm: comm, file: file)
                try comm.agree(names.count < 2
                    ? "\(file): every row has the same class label (\(names.first ?? "")): classification needs at least two classes" : nil, kind: .dataFormat)
                mapping = LabelMapping(text: names)
            }
            let index = Dictionary(uniqueKeysWithValues: names.enumerated().map { ($1, $0) })
            for i in 0..<raw.rows { y[i] = Float(index[rowName(i)]!) }
        } else if classification {
            if let known {
                var unknown: String?
                let index = Dictionary(uniqueKeysWithValues: known.values.enumerated().map { ($1, $0) })
                for (v, at) in raw.labelFirstSeen.sorted(by: { $0.value < $1.value }) where index[v] == nil {
                    let (line, location) = locate(at)
                    unknown = DataError(file: source.labelsPath ?? file, line: line, location: location,
                                        "class label \(LabelMapping(values: [v]).names[0]) does not occur in the training data").description
                    break
                }
                try comm.agree(unknown, kind: .dataFormat)
                for i in 0..<raw.rows { y[i] = Float(index[raw.labels[i]]!) }
                mapping = known
            } else {
                let values = try unionOfLabels(Array(raw.labelFirstSeen.keys), comm: comm, file: source.labelsPath ?? file)
                try comm.agree(values.count < 2
                    ? "\(source.labelsPath ?? file): every row has the same class label (\(LabelMapping(values: values).names.first ?? "")): classification needs at least two classes"
                    : nil, kind: .dataFormat)
                let index = Dictionary(uniqueKeysWithValues: values.enumerated().map { ($1, $0) })
                for i in 0..<raw.rows { y[i] = Float(index[raw.labels[i]]!) }
                mapping = LabelMapping(values: values)
            }
        } else {
            for i in 0..<raw.rows { y[i] = Float(raw.labels[i]) }
        }
        raw.labels = []
        if let k = mapping?.values.count, known == nil, globalRows >= minimumRowsForChecks, 2 * k > globalRows {
            try comm.agree("\(source.labelsPath ?? file): \(k) classes in \(globalRows) rows: more than half as many classes as rows, so the label column "
                           + "is likely not a label (a row index or an ID?): name the label with --label-column, leave columns out with --drop-columns, "
                           + "or use --task regression for a real-valued target", kind: .dataFormat)
        }
        if let rowSink, format != .libsvm {
            let facts = ShardFacts(missingFill: missingFill, notes: notes, categories: categories, featureNames: featureNames, inputColumns: inputColumns)
            let finished = Result { try rowSink.finish(y: y, features: raw.features, classes: mapping?.values.count ?? 0, globalRows: globalRows,
                                                        firstRow: firstRow, labels: mapping, facts: facts) }
            try comm.agree(error: { if case let .failure(e) = finished { return e }; return nil }())
            return LoadedFile(data: Dataset(features: raw.features, classes: mapping?.values.count ?? 0, globalRows: globalRows, firstRow: firstRow,
                                            stream: try finished.get(), y: y),
                              labels: mapping, missingFill: missingFill, notes: notes, categories: categories, featureNames: featureNames,
                              inputColumns: inputColumns)
        }
        let data = raw.csr.map {
            Dataset(features: raw.features, classes: mapping?.values.count ?? 0, globalRows: globalRows, firstRow: firstRow, csr: $0, y: y)
        } ?? Dataset(features: raw.features, classes: mapping?.values.count ?? 0, globalRows: globalRows, firstRow: firstRow, x: raw.x, y: y)
        return LoadedFile(data: data, labels: mapping, missingFill: missingFill, notes: notes, categories: categories, featureNames: featureNames,
                          inputColumns: inputColumns)
    }

    /// `--missing mean`: replaces the NaN the CSV parser left for missing values with `given` (a test set or a
    /// prediction input: the training means) or with the columns' means over every rank's non-missing values
    /// (one allreduce of `2 × features` Doubles: sums and counts; a column with no value at all gets 0).
    /// Returns the fill values. `exactRows` (`--reproducible`: the rows of all ranks): the means with the same
    /// bits for any number of ranks instead (`exactColumnMeans`). Collective.
    static func fillMissing(_ raw: inout RawShard, given: [Float]?, exactRows: Int? = nil, comm: Communicator, notes: inout [String]) throws -> [Float] {
        let d = raw.features, rows = raw.rows
        // CSR rows (hashed --categorical columns) keep their missing values as NaN entries, which neither the
        // means (they read dense rows) nor the fill below reach: refused, on every rank alike, rather than trained
        // on or read out of bounds (review 6, #2, #6).
        try comm.agree(raw.csr != nil ? "--missing mean fills dense rows, but these rows are kept as CSR (the hashed --categorical columns make "
                       + "them sparse): give --missing zero, or --categorical-encoding onehot" : nil, kind: .usage)
        var fill: [Float]
        var missing = 0
        if let given {
            precondition(given.count == d, "one fill value per feature")
            fill = given
        } else if let exactRows {
            fill = try exactColumnMeans(raw, globalRows: exactRows, comm: comm)
        } else {
            // A chunked parse summed its rows as they went by (`columnSums`, the same order, the same Doubles).
            var sums = raw.columnSums ?? [Double](repeating: 0, count: 2 * d)
            if raw.columnSums == nil {
                raw.x.withUnsafeBufferPointer { x in
                    for r in 0..<rows {
                        for j in 0..<d where !x[r * d + j].isNaN { sums[j] += Double(x[r * d + j]); sums[d + j] += 1 }
                    }
                }
            }
            let total = try comm.allreduced(sums, op: .sum)
            fill = (0..<d).map { total[d + $0] > 0 ? Float(total[$0] / total[d + $0]) : 0 }
        }
        // Rows in a row sink (x empty) are filled there (`DenseRowSink.finish`); their missing values were counted.
        missing = raw.missingValues
        raw.x.withUnsafeMutableBufferPointer { x in
            for r in 0..<(x.isEmpty ? 0 : rows) { for j in 0..<d where x[r * d + j].isNaN { x[r * d + j] = fill[j]; missing += 1 } }
        }
        let filled = try comm.allreduced(Int64(missing), op: .sum)
        if filled > 0 { notes.append("\(filled) missing values filled with \(given == nil ? "the column means" : "the training means")") }
        return fill
    }

    /// The sorted union of every rank's text labels (each rank's names as UTF-8, NUL-separated, allgathered). Collective.
    static func unionOfTexts(_ local: [String], comm: Communicator, file: String, what: String = "class labels") throws -> [String] {
        var bytes: [UInt8] = []
        for n in local { bytes += Array(n.utf8); bytes.append(0) }
        let all = try comm.allgathered(bytes)
        var union = Set<String>()
        for part in all { for n in part.split(separator: 0, omittingEmptySubsequences: false).dropLast() { union.insert(String(decoding: n, as: UTF8.self)) } }
        try comm.agree(union.count > 1 << 16
            ? "\(file): more than 65536 distinct \(what)\(what == "class labels" ? "; for real-valued targets use --task regression" : "")" : nil, kind: .dataFormat)
        return union.sorted()
    }

    /// `--categorical-encoding hash`: the parser's rows as hashed sparse rows, `hash.buckets` wide (see
    /// `CategoricalEncoding.hash`); `columns`: the `--categorical` references as given, in file order. Frees
    /// the dense values. Local.
    static func hashedCSV(_ raw: inout RawShard, layout: CSVLayout, hash: FeatureHash, columns: [String]) -> LIBSVMParser.Sparse {
        var s = LIBSVMParser.Sparse()
        let numeric = raw.features, slots = layout.categoricalCount, rows = raw.rows
        // The references in slot order (the slots follow the file's column order).
        func names(_ ref: String, _ c: Int) -> Bool {
            switch LabelColumn(argument: ref) {
            case let .index(i)?: return i == c
            case .last?: return c == layout.columns - 1
            case let .name(n)?: return layout.names.indices.contains(c) && layout.names[c] == n
            case nil: return false
            }
        }
        let slotColumns = (0..<slots).map { slot -> String in
            let c = layout.categorySlot.firstIndex(of: slot)!
            return columns.first { names($0, c) } ?? String(c)
        }
        let numericBuckets = (0..<numeric).map { hash.bucket($0 + 1) }
        let categoryBuckets = (0..<slots).map { slot in raw.categoryTexts[slot].map { hash.bucket(category: $0, column: slotColumns[slot]) } }
        var pairs: [(Int32, Float)] = []
        s.rowEnds.reserveCapacity(rows)
        for r in 0..<rows {
            pairs.removeAll(keepingCapacity: true)
            for j in 0..<numeric where raw.x[r * numeric + j] != 0 { pairs.append((numericBuckets[j], raw.x[r * numeric + j])) }
            for slot in 0..<slots { pairs.append((categoryBuckets[slot][Int(raw.categoryIds[r * slots + slot])], 1)) }
            let sorted = pairs.enumerated().sorted { ($0.element.0, $0.offset) < ($1.element.0, $1.offset) }.map(\.element)
            FeatureHash.appendMerged(sorted, indices: &s.indices, values: &s.values, from: s.indices.count)
            s.rowEnds.append(s.indices.count)
        }
        raw.x = []
        raw.categoryIds = []
        raw.features = hash.buckets
        s.shard = raw
        return s
    }

    /// Replaces the parser's numeric features and category indices with the final rows: the feature columns in
    /// file order, each `--categorical` column as one 0/1 value per category of `categories[slot]` (a value not
    /// among them: all zero, or with `unseenIsError` an error from `message(localLine, column, text)`). Returns
    /// the log notes. Collective: one allreduce (unseen count), one agreement.
    static func oneHot(_ raw: inout RawShard, layout: CSVLayout, categories: [[String]], unseenIsError: Bool, comm: Communicator,
                       message: (Int, Int, String) -> String) throws -> [String] {
        let slots = categories.count, rows = raw.rows
        let maps: [[Int32]] = (0..<slots).map { s in
            let index = Dictionary(uniqueKeysWithValues: categories[s].enumerated().map { ($1, Int32($0)) })
            return raw.categoryTexts[s].map { index[$0] ?? -1 }
        }
        var failure: String?
        if unseenIsError {
            var first: (line: Int, column: Int, text: String)?
            for s in 0..<slots {
                let column = layout.categorySlot.firstIndex(of: s)!
                for (i, g) in maps[s].enumerated() where g < 0 && (first == nil || raw.categoryFirstSeen[s][i] < first!.line) {
                    first = (raw.categoryFirstSeen[s][i], column + 1, raw.categoryTexts[s][i])
                }
            }
            failure = first.map { message($0.line, $0.column, "category \"\($0.text)\" of a --categorical column does not occur in the training data") }
        }
        try comm.agree(failure, kind: .dataFormat)
        let numeric = raw.features
        let width = layout.featureColumns.reduce(0) { $0 + (layout.categorySlot[$1] >= 0 ? categories[layout.categorySlot[$1]].count : 1) }
        var out = [Float](repeating: 0, count: rows * width)
        var unseen = 0
        raw.x.withUnsafeBufferPointer { x in
            for r in 0..<rows {
                var o = r * width, n = r * numeric
                for c in layout.featureColumns {
                    let s = layout.categorySlot[c]
                    if s < 0 { out[o] = x[n]; n += 1; o += 1; continue }
                    let g = maps[s][Int(raw.categoryIds[r * slots + s])]
                    if g >= 0 { out[o + Int(g)] = 1 } else { unseen += 1 }
                    o += categories[s].count
                }
            }
        }
        raw.x = out
        raw.features = width
        raw.categoryIds = []
        let total = try comm.allreduced(Int64(unseen), op: .sum)
        var notes = ["--categorical: " + (0..<slots).map { s in "\(layout.names.isEmpty ? "column \(layout.categorySlot.firstIndex(of: s)!)" : layout.names[layout.categorySlot.firstIndex(of: s)!]) \(categories[s].count) categories" }.joined(separator: ", ")]
        if total > 0 { notes.append("\(total) values of --categorical columns not seen in training, encoded as all-zero") }
        return notes
    }

    /// Lines in `range`, estimated from its first 256 KiB, with 10 % to spare: the shard's arrays are reserved
    /// once at about their final size instead of growing by copies (which would double the peak memory).
    static func estimatedLines(_ input: InputFile, range: Range<Int>) throws -> Int {
        let sample = Swift.min(range.count, 256 << 10)
        guard sample > 0 else { return 0 }
        var bytes = [UInt8](repeating: 0, count: sample)
        let n = try bytes.withUnsafeMutableBytes { try input.read(into: $0.baseAddress!, count: sample, at: range.lowerBound) }
        let newlines = bytes[0..<n].reduce(0) { $0 + ($1 == UInt8(ascii: "\n") ? 1 : 0) }
        return Int(Double(range.count) * Double(newlines + 1) / Double(Swift.max(n, 1)) * 1.1) + 16
    }

    /// Lines and `index:value` pairs (colons) in `range`, estimated from its first 256 KiB with 10 % to spare:
    /// a LIBSVM shard's CSR arrays are reserved once (see `estimatedLines`).
    static func estimatedLinesAndPairs(_ input: InputFile, range: Range<Int>) throws -> (lines: Int, pairs: Int) {
        let sample = Swift.min(range.count, 256 << 10)
        guard sample > 0 else { return (0, 0) }
        var bytes = [UInt8](repeating: 0, count: sample)
        let n = try bytes.withUnsafeMutableBytes { try input.read(into: $0.baseAddress!, count: sample, at: range.lowerBound) }
        var newlines = 0, colons = 0
        for b in bytes[0..<n] {
            if b == UInt8(ascii: "\n") { newlines += 1 } else if b == UInt8(ascii: ":") { colons += 1 }
        }
        let scale = Double(range.count) / Double(Swift.max(n, 1)) * 1.1
        return (Int(Double(newlines + 1) * scale) + 16, Int(Double(colons) * scale) + 64)
    }

    static func lineCountBeforeFailure(_ r: Result<RawShard, Error>) -> Int {
        if case let .failure(e) = r, let l = e as? LocalLineError { return l.localLine }
        return 0
    }

    /// Every rank contributes `values.count` Int64 (the same count on all ranks); returns them all, rank-major.
    static func allgather(_ values: [Int64], comm: Communicator) throws -> [Int64] {
        var slots = [Int64](repeating: 0, count: values.count * comm.size)
        for (i, v) in values.enumerated() { slots[comm.rank * values.count + i] = v }
        return try comm.allreduced(slots, op: .sum)
    }

    /// The sorted union of every rank's label values. Collective.
    static func unionOfLabels(_ local: [Double], comm: Communicator, file: String) throws -> [Double] {
        let counts = try allgather([Int64(local.count)], comm: comm)
        let total = counts.reduce(0, +)
        try comm.agree(total > 1 << 16
            ? "\(file): more than 65536 distinct class labels; for real-valued targets use --task regression" : nil, kind: .dataFormat)
        let width = Int(counts.max() ?? 0)
        var slots = [Double](repeating: 0, count: width * comm.size)
        for (i, v) in local.enumerated() { slots[comm.rank * width + i] = v }
        let all = try comm.allreduced(slots, op: .sum)
        var union = Set<Double>()
        for r in 0..<comm.size { for i in 0..<Int(counts[r]) { union.insert(all[r * width + i]) } }
        return union.sorted()
    }

    /// The feature columns' names of a CSV file with a header line (the label and dropped columns left out), in
    /// order; nil for other formats or a file without a header. Reads the first record only.
    public static func featureNames(_ source: DataSource, options: ReadOptions) -> [String]? {
        guard (source.format ?? DataFormat.infer(fromPath: source.path)) == .csv, let input = try? InputFile(source.path),
              let layout = try? csvLayout(input, options: options), layout.hasHeader else { return nil }
        return layout.featureColumns.map { layout.names[$0] }
    }

    /// The columns of a CSV file or 2-D `.npy` array (`names`: a CSV header's fields, nil without one), as
    /// every rank sees them from the first record or the array's header alone, `--drop-columns` left out: what
    /// a caller needs to tell whether a file holds a label column before reading it. Nil for LIBSVM (its rows
    /// are sparse) and for a 1-D `.npy` array. Not collective; reads the first record (CSV) or the header (`.npy`).
    public static func columns(_ source: DataSource, options: ReadOptions) throws -> (count: Int, names: [String]?)? {
        switch source.format ?? DataFormat.infer(fromPath: source.path) {
        case .csv:
            let input = try InputFile(source.path)
            if input.size == 0 { throw DataError(file: source.path, "the file is empty") }
            let (_, fields, header, _, _) = try firstRecordFields(input, options: options)
            let dropped = try droppedColumns(options.dropColumns, fields: fields, header: header, file: source.path)
            let kept = fields.indices.filter { !dropped[$0] }
            return (kept.count, header ? kept.map { fields[$0] } : nil)
        case .npy:
            let file = try NPYFile(source.path)
            return file.twoDimensional ? (file.columns, nil) : nil
        case .hdf5:
            return try hdf5Columns(source).map { ($0, nil) }
        case .libsvm, nil:
            return nil
        }
    }

    /// The first record's fields (unquoted), its delimiter, whether it is a header, the byte-order mark's
    /// length and whether it holds a quote.
    static func firstRecordFields(_ input: InputFile, options: ReadOptions) throws
        -> (delimiter: Delimiter, fields: [String], header: Bool, bom: Int, quoted: Bool) {
        let (first, bom) = try input.firstRecord()
        let delimiter = options.delimiter.resolved(firstRecord: first)
        let fields = splitFields(first, separator: delimiter.byte)
        guard !fields.isEmpty && !(fields.count == 1 && fields[0].isEmpty) else {
            throw DataError(file: input.path, line: 1, "the first line is blank (it sets the number of columns)")
        }
        return (delimiter, fields, options.header ?? fields.allSatisfy { DecimalParser.parse($0) == nil },
                bom, first.contains(UInt8(ascii: "\"")))
    }

    /// Which columns `--drop-columns` removes, per column; an index past the last column or a name the header
    /// lacks is an error naming the file.
    static func droppedColumns(_ refs: [LabelColumn], fields: [String], header: Bool, file: String, flag: String = "--drop-columns") throws -> [Bool] {
        var dropped = [Bool](repeating: false, count: fields.count)
        for ref in refs {
            switch ref {
            case let .index(i):
                guard i < fields.count else {
                    throw DataError(file: file, "\(flag) \(i) but the file has \(fields.count) columns (0 ..< \(fields.count))", kind: .usage)
                }
                dropped[i] = true
            case .last: dropped[fields.count - 1] = true
            case let .name(n):
                guard header, let i = fields.firstIndex(of: n) else {
                    throw DataError(file: file, line: 1, header
                        ? "\(flag) \(n): no such column in the header (\(fields.prefix(8).joined(separator: ", "))\(fields.count > 8 ? ", …" : ""))"
                        : "\(flag) \(n) names a column, but the file has no header line", kind: .usage)
                }
                dropped[i] = true
            }
        }
        return dropped
    }

    /// The CSV layout from the file's first record, which every rank reads for itself.
    static func csvLayout(_ input: InputFile, options: ReadOptions) throws -> CSVLayout {
        let (delimiter, fields, header, bom, quoted) = try firstRecordFields(input, options: options)
        let dropped = try droppedColumns(options.dropColumns, fields: fields, header: header, file: input.path)
        let categorical = try droppedColumns(options.categorical, fields: fields, header: header, file: input.path, flag: "--categorical")
        var slots = [Int](repeating: -1, count: fields.count), next = 0
        for c in fields.indices where categorical[c] {
            guard !dropped[c] else { throw DataError(file: input.path, "column \(c) is both in --drop-columns and in --categorical", kind: .usage) }
            slots[c] = next
            next += 1
        }
        if let given = options.categories, given.count != next {
            throw DataError(file: input.path, "\(next) --categorical columns, but the model has categories for \(given.count)")
        }
        var layout = CSVLayout(separator: delimiter.byte, delimiter: delimiter, hasHeader: header, columns: fields.count, labelColumn: nil,
                               names: header ? fields : [], dropped: dropped, bom: bom, quotedHead: quoted, categorySlot: slots)
        guard options.labeled else { return layout }
        var label: Int
        switch options.labelColumn {
        case let .index(i): label = i
        case .last: label = fields.count - 1
        case let .name(n):
            guard header, let i = fields.firstIndex(of: n) else {
                throw DataError(file: input.path, line: 1, header
                    ? "--label-column \(n): no such column in the header (\(fields.prefix(8).joined(separator: ", "))\(fields.count > 8 ? ", …" : ""))"
                    : "--label-column \(n) names a column, but the file has no header line")
            }
            label = i
        }
        guard label < fields.count else {
            throw DataError(file: input.path, "--label-column \(label) but the file has \(fields.count) columns (0 ..< \(fields.count))")
        }
        guard slots[label] < 0 else {
            throw DataError(file: input.path, "--categorical names column \(label), which --label-column names as the label (a text label needs no flag)", kind: .usage)
        }
        guard !dropped[label] else {
            throw DataError(file: input.path, "--drop-columns removes column \(label), which --label-column names as the label", kind: .usage)
        }
        guard fields.count >= 2, dropped.filter({ !$0 }).count >= 2 else {
            throw DataError(file: input.path, line: 1, "one column only: a row needs a label and at least one feature")
        }
        layout.labelColumn = label
        try refuseTextColumns(input, layout: layout)
        return layout
    }

    /// Text feature columns, found from the first data record before any rank parses: one message naming them
    /// all with the `--categorical` and `--drop-columns` that fix them (a column numeric there but text further
    /// down is still caught by the parser, at its line).
    static func refuseTextColumns(_ input: InputFile, layout: CSVLayout) throws {
        let (records, _) = try input.leadingRecords(layout.hasHeader ? 2 : 1)
        guard let record = records.dropFirst(layout.hasHeader ? 1 : 0).first else { return }
        let fields = splitFields(record, separator: layout.separator)
        guard fields.count == layout.columns else { return }       // the parser names the field-count error
        let text = layout.featureColumns.filter { c in
            guard layout.categorySlot[c] < 0 else { return false }
            let f = fields[c]
            let bytes = Array(f.utf8)
            let missing = bytes.withUnsafeBufferPointer { CSVParser.isMissing($0) }
            let number = DecimalParser.parse(f) != nil || (layout.separator == UInt8(ascii: ";") && DecimalParser.parse(f.replacingOccurrences(of: ",", with: ".")) != nil)
            return !missing && !number && !["nan", "inf", "-inf", "+inf", "infinity"].contains(f.lowercased())
        }
        guard !text.isEmpty else { return }
        let names = text.map { layout.names.indices.contains($0) && !layout.names[$0].isEmpty ? layout.names[$0] : String($0) }
        let list = names.joined(separator: ",")
        throw DataError(file: input.path, line: layout.hasHeader ? 2 : 1,
                        "column\(names.count == 1 ? "" : "s") \(names.joined(separator: ", ")) hold\(names.count == 1 ? "s" : "") text (\"\(fields[text[0]].prefix(40))\"): "
                        + "encode \(names.count == 1 ? "it" : "them") with --categorical \(list) or leave \(names.count == 1 ? "it" : "them") out with --drop-columns \(list)")
    }

    /// This rank's rows of a `.npy` source (`readArrays`).
    static func readNPY(_ source: DataSource, options: ReadOptions, classification: Bool,
                        comm: Communicator, sink: DenseRowSink? = nil) throws -> (RawShard, rows: Int, firstRow: Int) {
        try readArrays(x: try NPYFile(source.path), labels: try source.labelsPath.map { try NPYFile($0) }, options: options,
                       classification: classification, comm: comm, sink: sink)
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// With `DML_DATA_STATS=1` in the environment, each rank prints to stderr how fast it parsed its part and
/// its peak resident memory so far (`VmHWM`): the figures the data-loading benchmark reports.
enum ReadStatistics {
    static let enabled = getenv("DML_DATA_STATS").map { String(cString: $0) == "1" } ?? false

    /// Wall-clock and this thread's CPU seconds.
    static func now() -> (wall: Double, cpu: Double) {
        var t = timespec(), c = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c)
        return (Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9, Double(c.tv_sec) + Double(c.tv_nsec) * 1e-9)
    }

    /// Wall and CPU seconds since `start`.
    static func since(_ start: (wall: Double, cpu: Double)) -> (wall: Double, cpu: Double) {
        let end = now()
        return (end.wall - start.wall, end.cpu - start.cpu)
    }

    /// `spent` plus the time since `start`.
    static func adding(_ spent: (wall: Double, cpu: Double), since start: (wall: Double, cpu: Double)) -> (wall: Double, cpu: Double) {
        let more = since(start)
        return (spent.wall + more.wall, spent.cpu + more.cpu)
    }

    /// Prints the figures of `spent`: this rank's own reading and parsing, without waits in collectives.
    static func report(file: String, rank: Int, bytes: Int, rows: Int, spent: (wall: Double, cpu: Double)) {
        guard enabled else { return }
        let (seconds, cpu) = spent
        var peak = "?"
        if let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
           let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) {
            peak = line.dropFirst(6).trimmingCharacters(in: .whitespaces)
        }
        let rate = Double(bytes) / 1e6 / max(seconds, 1e-9)
        FileHandle.standardError.write(Data(("dml-data: rank \(rank) parsed \(bytes) bytes of \(file), \(rows) rows, in \(String(format: "%.3f", seconds)) s "
              + "(\(String(format: "%.1f", rate)) MB/s; CPU \(String(format: "%.3f", cpu)) s, \(String(format: "%.1f", Double(bytes) / 1e6 / max(cpu, 1e-9))) MB/s per CPU second); "
              + "peak RSS so far \(peak)\n").utf8))
    }
}
