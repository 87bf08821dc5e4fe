/// What a read learns about a file besides its rows and labels (`LoadedFile`'s other fields), which a shard
/// cache keeps beside the rows, so that a run streaming an existing cache writes the model file (and the log)
/// an in-memory run writes: `input_columns`, the `--missing mean` fill, the `--categorical` categories, the
/// feature names and the start-up notes. The fill values are kept as bit patterns (exact, and NaN-safe).
public struct ShardFacts: Codable, Equatable, Sendable {
    public var missingFill: [UInt32]?
    public var notes: [String]
    public var categories: [[String]]?
    public var featureNames: [String]?
    public var inputColumns: Int?
    /// Text class labels (`LabelMapping.text`), which the header's numeric `labels` cannot hold.
    public var labelText: [String]?

    public init(missingFill: [Float]? = nil, notes: [String] = [], categories: [[String]]? = nil, featureNames: [String]? = nil, inputColumns: Int? = nil) {
        self.missingFill = missingFill?.map(\.bitPattern)
        self.notes = notes
        self.categories = categories
        self.featureNames = featureNames
        self.inputColumns = inputColumns
    }

    public init(_ file: LoadedFile) {
        self.init(missingFill: file.missingFill, notes: file.notes, categories: file.categories, featureNames: file.featureNames,
                  inputColumns: file.inputColumns)
    }

    /// A file of `data` and `labels` with these facts.
    public func file(data: Dataset, labels: LabelMapping?) -> LoadedFile {
        LoadedFile(data: data, labels: labels, missingFill: missingFill?.map(Float.init(bitPattern:)), notes: notes, categories: categories,
                   featureNames: featureNames, inputColumns: inputColumns)
    }
}

/// Where a chunked parse puts its dense rows instead of memory (the job's shard cache writer): rows arrive in
/// file order, a chunk of text at a time; `finish` is called once with the labels, when every rank has
/// parsed without error, and returns the rows as a stream. Errors thrown by either are the rank's read
/// error (agreed across ranks like a parse error).
public protocol DenseRowSink: AnyObject {
    /// Bytes of text parsed at a time (the memory a chunk's values take is about half of it or less).
    var chunkBytes: Int { get }
    /// The next rows, `x.count / features` of them, row-major.
    func append(rows x: [Float], features: Int) throws
    /// Drops every row appended so far (a parse that found a quote starts again, quote-aware).
    func restart() throws
    /// All rows are appended; `y` holds their labels (class indices or targets), `facts` what else the read
    /// learnt (kept with the rows). With `facts.missingFill` (`--missing mean`) the appended rows still hold NaN
    /// for each missing value, which the sink replaces with its column's fill before it returns the stream.
    func finish(y: [Float], features: Int, classes: Int, globalRows: Int, firstRow: Int, labels: LabelMapping?, facts: ShardFacts) throws -> ShardStream
}

extension DataLoader {
    /// A CSV byte range parsed `sink.chunkBytes` of text at a time, each chunk's rows handed to `sink` and
    /// dropped: the result holds the labels (text labels too), line counts, first-seen lines and the pandas-index
    /// verdict (`indexLike`) as the one-piece parse would, with an empty `x`, and `columnSums` (`--missing mean`:
    /// each feature's sum and count of non-missing values, accumulated row by row in file order: the one-piece
    /// `fillMissing`'s Doubles, bit for bit) and `missingValues`. A chunk owns the lines that start in it
    /// (`LineRange`), so the chunks together own exactly the lines of the whole range, and line indices are
    /// shifted to count from the range's start. With quote-aware records (`lines.quoteParity` set, `parser.quoted`)
    /// each chunk's parity is the range's, flipped by the quotes of the chunks before it (`LineRange.quoteCount`,
    /// one more scan of each chunk's text), exactly as a rank's parity follows from the ranks before it, so a
    /// chunk may start inside a quoted line break.
    /// Memory: one chunk's values and the labels (8 bytes a row).
    static func parseCSVInChunks(_ lines: LineRange, parser: CSVParser, estimatedRows: Int, sink: DenseRowSink) throws -> RawShard {
        // The feature columns (neither the label nor --drop-columns; --categorical is read whole, not in chunks).
        let features = parser.layout.featureColumns.count
        var total = RawShard(features: features, x: [], labels: [])
        var rows = 0
        total.labels.reserveCapacity(estimatedRows)
        var sums = parser.missing == .mean ? [Double](repeating: 0, count: 2 * features) : []
        var lo = lines.range.lowerBound
        var parity = lines.quoteParity
        let step = Swift.max(1, sink.chunkBytes)
        repeat {
            let hi = Swift.min(lines.range.upperBound, lo + step)
            var part: RawShard
            do {
                part = try parser.parse(LineRange(file: lines.file, range: lo..<hi, quoteParity: parity), estimatedRows: 0)
            } catch let e as LocalLineError {
                throw LocalLineError(localLine: total.lines + e.localLine, column: e.column, message: e.message)
            }
            if let p = parity { parity = p != (try LineRange.quoteCount(lines.file, lo..<hi) & 1 == 1) }
            if !sums.isEmpty {
                part.x.withUnsafeBufferPointer { x in
                    for r in 0..<part.rows {
                        for j in 0..<features {
                            let v = x[r * features + j]
                            if v.isNaN { total.missingValues += 1 } else { sums[j] += Double(v); sums[features + j] += 1 }
                        }
                    }
                }
            }
            try sink.append(rows: part.x, features: features)
            for (label, line) in part.labelFirstSeen where total.labelFirstSeen[label] == nil {
                total.labelFirstSeen[label] = total.lines + line
            }
            // Text labels: this chunk's names joined to the range's (first-seen order), each row's index remapped.
            if !part.textLabelOfRow.isEmpty {
                if total.textLabelOfRow.isEmpty { total.textLabelOfRow = [Int32](repeating: -1, count: total.labels.count) }
                var ids: [Int32] = []
                for (name, line) in zip(part.labelTexts, part.labelTextFirstSeen) {
                    if let id = total.labelTextIndex[name] { ids.append(id); continue }
                    let id = Int32(total.labelTexts.count)
                    total.labelTextIndex[name] = id
                    total.labelTexts.append(name)
                    total.labelTextFirstSeen.append(total.lines + line)
                    ids.append(id)
                }
                total.textLabelOfRow += part.textLabelOfRow.map { $0 < 0 ? -1 : ids[Int($0)] }
            } else if !total.textLabelOfRow.isEmpty {
                total.textLabelOfRow += [Int32](repeating: -1, count: part.rows)
            }
            // Column 0 a pandas index over the whole range: every chunk's rows continue the count.
            if part.rows > 0 {
                if rows == 0 { total.indexStart = part.indexStart }
                total.indexLike = total.indexLike && part.indexLike && part.indexStart == total.indexStart + Double(rows)
                rows += part.rows
            }
            total.labels += part.labels
            total.lines += part.lines
            lo = hi
        } while lo < lines.range.upperBound
        if !sums.isEmpty { total.columnSums = sums }
        return total
    }
}

extension DataLoader {
    /// Bytes the dense Float32 rows of rank `rank`'s share of a CSV or `.npy` file would take in memory,
    /// estimated before reading it (CSV: the lines in its byte range from a 256 KiB sample, 10 % to spare,
    /// times the first line's fields; `.npy`: its rows times its columns). nil for LIBSVM (sparse: its size
    /// depends on the density), HDF5 (its datasets are opened by the reader) or a file that cannot be examined (the reader reports it). Not collective.
    public static func estimatedShardBytes(_ source: DataSource, options: ReadOptions, rank: Int, ranks: Int) -> Double? {
        switch source.format ?? DataFormat.infer(fromPath: source.path) {
        case .csv:
            guard let input = try? InputFile(source.path), input.size > 0,
                  let (_, fields, _, _, _) = try? firstRecordFields(input, options: options),
                  let lines = try? estimatedLines(input, range: LineRange.byteRange(size: input.size, rank: rank, ranks: ranks)) else { return nil }
            return Double(lines) * Double(fields.count) * 4
        case .npy:
            guard let file = try? NPYFile(source.path) else { return nil }
            return Double(ShardPlan(rows: file.rows, ranks: ranks).range(of: rank).count) * Double(file.columns) * 4
        case .libsvm:
            // Dense rows of a width known before reading (`--sparse off` with `--hash-bits` or `--features`): one
            // row a line, each that wide (review 6, #4: 2^22 columns were a 25 GB allocation failure per rank).
            guard options.sparse == .off, let width = options.hash?.buckets ?? options.features,
                  let input = try? InputFile(source.path), input.size > 0,
                  let lines = try? estimatedLines(input, range: LineRange.byteRange(size: input.size, rank: rank, ranks: ranks)) else { return nil }
            return Double(lines) * Double(width) * 4
        case .hdf5, nil:
            return nil
        }
    }
}
