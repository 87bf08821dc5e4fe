import DMLComm
import DMLStatus
import DMLKernels
import Foundation

/// A file format the readers know.
public enum DataFormat: String, Sendable, CaseIterable {
    case csv, libsvm, npy

    /// The format a file name implies: `.csv .tsv .txt .dat` → CSV, `.svm .libsvm .svmlight` → LIBSVM,
    /// `.npy` → NumPy. Nil for anything else.
    public static func infer(fromPath path: String) -> DataFormat? {
        let ext = path.split(separator: "/").last?.split(separator: ".").dropFirst().last?.lowercased() ?? ""
        switch ext {
        case "csv", "tsv", "txt", "dat": return .csv
        case "svm", "libsvm", "svmlight", "lsvm": return .libsvm
        case "npy": return .npy
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

    public init?(argument: String) {
        if argument == "last" { self = .last }
        else if let i = Int(argument) { guard i >= 0 else { return nil }; self = .index(i) }
        else if !argument.isEmpty { self = .name(argument) }
        else { return nil }
    }
}

/// A data file and, for `.npy` features, an optional second file of labels.
public struct DataSource: Sendable {
    public var path: String
    public var labelsPath: String?
    /// Nil: by extension.
    public var format: DataFormat?

    public init(path: String, labelsPath: String? = nil, format: DataFormat? = nil) {
        self.path = path
        self.labelsPath = labelsPath
        self.format = format
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
public struct LabelMapping: Sendable, Equatable {
    public let values: [Double]
    public init(values: [Double]) { self.values = values }
    /// The labels as text, e.g. `["-1", "1"]` or `["0", "1", …, "9"]`.
    public var names: [String] { values.map { $0 == $0.rounded() && abs($0) < 1e15 ? String(Int64($0)) : String($0) } }
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
    /// `rowSink`: a CSV file's rows go there a chunk at a time (`parseCSVInChunks`) and the shard returned
    /// streams them (`Dataset.stream`); ignored for other formats (the caller checks `acceptsRowSink`).
    public static func read(_ source: DataSource, options: ReadOptions, comm: Communicator,
                            features expected: Int? = nil, labels known: LabelMapping? = nil,
                            rowSink: DenseRowSink? = nil) throws -> (Dataset, LabelMapping?) {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: source.path, isDirectory: &isDirectory), isDirectory.boolValue {
            try comm.agree("\(source.path) is a directory, not a data file", kind: .noInput)
        }
        let format = source.format ?? DataFormat.infer(fromPath: source.path)
        try comm.agree(format == nil
            ? "\(source.path): cannot tell the format from the file name; name it with --format (\(DataFormat.allCases.map(\.rawValue).joined(separator: ", ")))"
            : nil, kind: .usage)
        try comm.agree(!options.labeled && (format == .libsvm || source.labelsPath != nil)
            ? "\(source.path): \(format == .libsvm ? "LIBSVM lines always start with a label" : "a labels file was given"), so the input cannot be read without labels"
            : nil, kind: .usage)
        try comm.agree(options.sparse == .on && format != .libsvm
            ? "--sparse on keeps LIBSVM rows as CSR, but \(source.path) is \(format!.rawValue) input, which stays dense: use --sparse auto or off" : nil,
                       kind: .usage)
        try comm.agree(options.hash != nil && format != .libsvm
            ? "feature hashing (--hash-bits) maps LIBSVM feature indices, but \(source.path) is \(format!.rawValue) input" : nil, kind: .usage)
        let classification = options.labeled && options.task == .classification
        var raw: RawShard
        var firstRow = 0, globalRows = 0
        /// Turns a rank-local row or line index into where the user looks: set once ranks know their offsets.
        var locate: (Int) -> (line: Int?, location: String?) = { _ in (nil, nil) }
        let file = source.path

        switch format! {
        case .csv, .libsvm:
            var local: Result<RawShard, Error>
            var sparse: LIBSVMParser.Sparse?
            let started = ReadStatistics.now()
            var rangeBytes = 0
            do {
                let input = try InputFile(source.path)
                if input.size == 0 { throw DataError(file: file, "the file is empty") }
                let lines = LineRange(file: input, range: LineRange.byteRange(size: input.size, rank: comm.rank, ranks: comm.size))
                rangeBytes = lines.range.count
                if format == .csv {
                    let layout = try csvLayout(input, options: options)
                    let estimate = try estimatedLines(input, range: lines.range)
                    let parser = CSVParser(layout: layout, classification: classification)
                    local = .success(try rowSink.map { try parseCSVInChunks(lines, parser: parser, estimatedRows: estimate, sink: $0) }
                                     ?? parser.parse(lines, estimatedRows: estimate))
                } else {
                    let (rowsEstimate, nonZeros) = try estimatedLinesAndPairs(input, range: lines.range)
                    let bound = options.hash != nil ? options.features : (options.features ?? expected)
                    let s = try LIBSVMParser(file: file, classification: classification, maxFeatures: bound, hash: options.hash)
                        .parse(lines, estimatedRows: rowsEstimate, estimatedNonZeros: nonZeros)
                    sparse = s
                    local = .success(s.shard)
                }
            } catch let e as LocalLineError {
                local = .failure(e)
            } catch {
                local = .failure(error)
            }
            ReadStatistics.report(file: file, rank: comm.rank, bytes: rangeBytes, rows: (try? local.get().rows) ?? 0, since: started)
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
        case .npy:
            var local: Result<RawShard, Error>
            var rowsInFile = 0
            do {
                let (shard, rows, first) = try readNPY(source, options: options, classification: classification, comm: comm)
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
            let labelFile = source.labelsPath ?? source.path
            locate = { (nil, source.labelsPath == nil ? "label of row \(base + $0)" : "\(labelFile)[\(base + $0)]") }
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

        // Labels: the union of every rank's distinct labels, sorted, numbered 0 ..< k.
        var mapping: LabelMapping?
        var y = [Float](repeating: 0, count: raw.rows)
        if !options.labeled {
            // No labels in the file: the targets stay 0 and there are no classes.
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
        if let rowSink, format == .csv {
            let finished = Result { try rowSink.finish(y: y, features: raw.features, classes: mapping?.values.count ?? 0, globalRows: globalRows,
                                                        firstRow: firstRow, labels: mapping) }
            try comm.agree(error: { if case let .failure(e) = finished { return e }; return nil }())
            return (Dataset(features: raw.features, classes: mapping?.values.count ?? 0, globalRows: globalRows, firstRow: firstRow,
                            stream: try finished.get(), y: y), mapping)
        }
        let data = raw.csr.map {
            Dataset(features: raw.features, classes: mapping?.values.count ?? 0, globalRows: globalRows, firstRow: firstRow, csr: $0, y: y)
        } ?? Dataset(features: raw.features, classes: mapping?.values.count ?? 0, globalRows: globalRows, firstRow: firstRow, x: raw.x, y: y)
        return (data, mapping)
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

    /// The feature columns' names of a CSV file with a header line (the label column left out), in order;
    /// nil for other formats or a file without a header. Reads the first line only.
    public static func featureNames(_ source: DataSource, options: ReadOptions) -> [String]? {
        guard (source.format ?? DataFormat.infer(fromPath: source.path)) == .csv, let input = try? InputFile(source.path),
              let layout = try? csvLayout(input, options: options), layout.hasHeader else { return nil }
        return layout.names.enumerated().filter { $0.offset != layout.labelColumn }.map(\.element)
    }

    /// The columns of a CSV file or 2-D `.npy` array (`names`: a CSV header's fields, nil without one), as
    /// every rank sees them from the first line or the array's header alone: what a caller needs to tell
    /// whether a file holds a label column before reading it. Nil for LIBSVM (its rows are sparse) and for a
    /// 1-D `.npy` array. Not collective; reads the first line (CSV) or the header (`.npy`).
    public static func columns(_ source: DataSource, options: ReadOptions) throws -> (count: Int, names: [String]?)? {
        switch source.format ?? DataFormat.infer(fromPath: source.path) {
        case .csv:
            let input = try InputFile(source.path)
            if input.size == 0 { throw DataError(file: source.path, "the file is empty") }
            let (_, fields, header) = try firstLineFields(input, options: options)
            return (fields.count, header ? fields : nil)
        case .npy:
            let file = try NPYFile(source.path)
            return file.twoDimensional ? (file.columns, nil) : nil
        case .libsvm, nil:
            return nil
        }
    }

    /// The first line's fields, whether it separates them with commas, and whether it is a header.
    static func firstLineFields(_ input: InputFile, options: ReadOptions) throws -> (comma: Bool, fields: [String], header: Bool) {
        let first = try input.firstLine()
        let comma: Bool
        switch options.delimiter {
        case .comma: comma = true
        case .whitespace: comma = false
        case .auto: comma = first.contains(UInt8(ascii: ","))
        }
        let fields = splitFields(first, comma: comma)
        guard !fields.isEmpty && !(fields.count == 1 && fields[0].isEmpty) else {
            throw DataError(file: input.path, line: 1, "the first line is blank (it sets the number of columns)")
        }
        return (comma, fields, options.header ?? fields.allSatisfy { DecimalParser.parse($0) == nil })
    }

    /// The CSV layout from the file's first line, which every rank reads for itself.
    static func csvLayout(_ input: InputFile, options: ReadOptions) throws -> CSVLayout {
        let (comma, fields, header) = try firstLineFields(input, options: options)
        guard options.labeled else {
            return CSVLayout(comma: comma, hasHeader: header, columns: fields.count, labelColumn: nil, names: header ? fields : [])
        }
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
        guard fields.count >= 2 else {
            throw DataError(file: input.path, line: 1, "one column only: a row needs a label and at least one feature")
        }
        return CSVLayout(comma: comma, hasHeader: header, columns: fields.count, labelColumn: label, names: header ? fields : [])
    }

    /// This rank's rows of a `.npy` source: rows `ShardPlan(rows, ranks).range(of: rank)`, read by offset.
    static func readNPY(_ source: DataSource, options: ReadOptions, classification: Bool,
                        comm: Communicator) throws -> (RawShard, rows: Int, firstRow: Int) {
        let xFile = try NPYFile(source.path)
        let labels = try source.labelsPath.map { try NPYFile($0) }
        var labelColumn: Int? = nil
        if let l = labels {
            guard l.rows == xFile.rows else {
                throw DataError(file: l.path, "\(l.rows) labels but \(xFile.path) has \(xFile.rows) rows")
            }
            guard l.columns == 1 else { throw DataError(file: l.path, "labels must be 1-D (shape (\(xFile.rows),)), not \(l.columns) columns") }
        } else if !options.labeled {
            guard xFile.twoDimensional else {
                throw DataError(file: xFile.path, "a 1-D array: give the features as a 2-D array (rows × features)")
            }
        } else {
            guard xFile.twoDimensional, xFile.columns >= 2 else {
                throw DataError(file: xFile.path, "a 1-D array holds no features: give a 2-D array with a label column, or features and --labels y.npy")
            }
            switch options.labelColumn {
            case let .index(i): labelColumn = i
            case .last: labelColumn = xFile.columns - 1
            case .name: throw DataError(file: xFile.path, "--label-column must be a number or 'last' for .npy files")
            }
            guard labelColumn! < xFile.columns else {
                throw DataError(file: xFile.path, "--label-column \(labelColumn!) but the array has \(xFile.columns) columns")
            }
        }
        guard xFile.rows > 0 else { throw DataError(file: xFile.path, "no data rows (shape has 0 rows)") }
        let range = ShardPlan(rows: xFile.rows, ranks: comm.size).range(of: comm.rank)
        let features = xFile.columns - (labelColumn == nil ? 0 : 1)
        var shard = RawShard(features: features, x: [], labels: [])
        shard.x.reserveCapacity(range.count * features)
        shard.labels.reserveCapacity(range.count)
        let name = labels == nil ? "the array" : "X"
        try xFile.forEachRow(range) { i, row in
            for c in 0..<xFile.columns {
                let v = row[c]
                let global = range.lowerBound + i
                if !v.isFinite || abs(v) > Double(Float.greatestFiniteMagnitude) {
                    throw DataError(file: xFile.path, location: "\(name)[\(global), \(c)]",
                                    "\(v) is not a finite number\(v.isFinite ? " in 32-bit float range" : "")")
                }
                if c == labelColumn {
                    do { try shard.addLabel(v, line: i, column: nil, classification: classification) }
                    catch let e as LocalLineError { throw DataError(file: xFile.path, location: "\(name)[\(global), \(c)]", e.message) }
                } else {
                    shard.x.append(Float(v))
                }
            }
            if labelColumn == nil && labels == nil { shard.labels.append(0) }   // no labels: a target of 0 per row
        }
        if let l = labels {
            try l.forEachRow(range) { i, row in
                let v = row[0]
                let global = range.lowerBound + i
                guard v.isFinite else { throw DataError(file: l.path, location: "y[\(global)]", "\(v) is not a finite number") }
                do { try shard.addLabel(v, line: i, column: nil, classification: classification) }
                catch let e as LocalLineError { throw DataError(file: l.path, location: "y[\(global)]", e.message) }
            }
        }
        return (shard, xFile.rows, range.lowerBound)
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

    static func report(file: String, rank: Int, bytes: Int, rows: Int, since start: (wall: Double, cpu: Double)) {
        guard enabled else { return }
        let end = now()
        let seconds = end.wall - start.wall
        let cpu = end.cpu - start.cpu
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
