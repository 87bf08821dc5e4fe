/// Where a chunked parse puts its dense rows instead of memory (the job's shard cache writer): rows arrive in
/// file order, a chunk of text at a time; `finish` is called once with the labels, when every rank has
/// parsed without error, and returns the rows as a stream. Errors thrown by either are the rank's read
/// error (agreed across ranks like a parse error).
public protocol DenseRowSink: AnyObject {
    /// Bytes of text parsed at a time (the memory a chunk's values take is about half of it or less).
    var chunkBytes: Int { get }
    /// The next rows, `x.count / features` of them, row-major.
    func append(rows x: [Float], features: Int) throws
    /// All rows are appended; `y` holds their labels (class indices or targets).
    func finish(y: [Float], features: Int, classes: Int, globalRows: Int, firstRow: Int, labels: LabelMapping?) throws -> ShardStream
}

extension DataLoader {
    /// A CSV byte range parsed `sink.chunkBytes` of text at a time, each chunk's rows handed to `sink` and
    /// dropped: the result holds the labels, line counts, first-seen lines and the pandas-index verdict
    /// (`indexLike`) as the one-piece parse would,
    /// with an empty `x`. A chunk owns the lines that start in it (`LineRange`), so the chunks together own
    /// exactly the lines of the whole range, and line indices are shifted to count from the range's start.
    /// Memory: one chunk's values and the labels (8 bytes a row).
    static func parseCSVInChunks(_ lines: LineRange, parser: CSVParser, estimatedRows: Int, sink: DenseRowSink) throws -> RawShard {
        // The feature columns (neither the label nor --drop-columns; --categorical is refused with a sink).
        let features = parser.layout.featureColumns.count
        var total = RawShard(features: features, x: [], labels: [])
        var rows = 0
        total.labels.reserveCapacity(estimatedRows)
        var lo = lines.range.lowerBound
        let step = Swift.max(1, sink.chunkBytes)
        repeat {
            let hi = Swift.min(lines.range.upperBound, lo + step)
            let part: RawShard
            do {
                part = try parser.parse(LineRange(file: lines.file, range: lo..<hi), estimatedRows: 0)
            } catch let e as LocalLineError {
                throw LocalLineError(localLine: total.lines + e.localLine, column: e.column, message: e.message)
            }
            try sink.append(rows: part.x, features: features)
            for (label, line) in part.labelFirstSeen where total.labelFirstSeen[label] == nil {
                total.labelFirstSeen[label] = total.lines + line
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
        case .libsvm, .hdf5, nil:
            return nil
        }
    }
}
