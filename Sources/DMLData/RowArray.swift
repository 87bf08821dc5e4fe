import DMLComm

/// A 1-D or 2-D array of numbers in a file, read by rows: what a `.npy` file and an HDF5 dataset have in
/// common, so that both are sharded, checked and turned into a shard by the same code
/// (`DataLoader.readArrays`).
protocol RowArray {
    /// The file that holds the array.
    var path: String { get }
    /// The array's name inside the file (an HDF5 dataset's path); nil when the file is the array (`.npy`).
    var dataset: String? { get }
    var rows: Int { get }
    /// Columns per row (1 for a 1-D array).
    var columns: Int { get }
    var twoDimensional: Bool { get }
    /// How a user names a separate labels array for this format, for messages: `--labels y.npy`.
    var labelsHint: String { get }
    /// The format's name in messages: `.npy files`.
    var formatName: String { get }
    /// Reads rows `range` (global rows of the array) and calls `body(localRow, values)` per row, the values
    /// converted to Double. Reads only those rows.
    func forEachRow(_ range: Range<Int>, _ body: (Int, UnsafeBufferPointer<Double>) throws -> Void) throws
}

extension RowArray {
    /// An error about the whole array: `file: message`, or `file, dataset: message`.
    func failure(_ message: String) -> DataError { DataError(file: path, location: dataset, message) }
}

extension DataLoader {
    /// This rank's rows of an array of features `x` with, optionally, an array of labels of the same row count;
    /// without one, the label is a column of `x` (`options.labelColumn`), or there is none (`options.labeled`
    /// false). Rows `ShardPlan(rows, ranks).range(of: rank)`, the same split for every format read by row, read
    /// by offset: no rank reads another's rows. Every value must be finite and in Float range.
    ///
    /// Cost: this rank's rows read once (a piece at a time) and converted; the shard's arrays reserved once.
    /// `sink`: the rows go there `sink.chunkBytes` of values at a time and the shard returned has an empty `x`
    /// (the job's shard cache: memory is one piece of rows and the labels).
    static func readArrays(x xFile: any RowArray, labels: (any RowArray)?, options: ReadOptions, classification: Bool,
                           comm: Communicator, sink: DenseRowSink? = nil) throws -> (RawShard, rows: Int, firstRow: Int) {
        var labelColumn: Int? = nil
        if let l = labels {
            guard l.rows == xFile.rows else {
                throw l.failure("\(l.rows) labels but \(xFile.dataset ?? xFile.path) has \(xFile.rows) rows")
            }
            guard l.columns == 1 else { throw l.failure("labels must be 1-D (shape (\(xFile.rows),)), not \(l.columns) columns") }
        } else if !options.labeled {
            guard xFile.twoDimensional else {
                throw xFile.failure("a 1-D array: give the features as a 2-D array (rows × features)")
            }
        } else {
            guard xFile.twoDimensional, xFile.columns >= 2 else {
                throw xFile.failure("a 1-D array holds no features: give a 2-D array with a label column, or features and \(xFile.labelsHint)")
            }
            switch options.labelColumn {
            case let .index(i): labelColumn = i
            case .last: labelColumn = xFile.columns - 1
            case .name: throw xFile.failure("--label-column must be a number or 'last' for \(xFile.formatName)")
            }
            guard labelColumn! < xFile.columns else {
                throw xFile.failure("--label-column \(labelColumn!) but the array has \(xFile.columns) columns")
            }
        }
        guard xFile.rows > 0 else { throw xFile.failure("no data rows (shape has 0 rows)") }
        let range = ShardPlan(rows: xFile.rows, ranks: comm.size).range(of: comm.rank)
        let features = xFile.columns - (labelColumn == nil ? 0 : 1)
        var shard = RawShard(features: features, x: [], labels: [])
        shard.labels.reserveCapacity(range.count)
        let name = xFile.dataset ?? (labels == nil ? "the array" : "X")
        let largest = Double(Float.greatestFiniteMagnitude)
        /// The first value of `row` that is not finite or not in Float range, as the error naming it.
        func badValue(_ row: UnsafeBufferPointer<Double>, global: Int) -> DataError {
            let c = row.firstIndex { !(abs($0) <= largest) }!
            return DataError(file: xFile.path, location: "\(name)[\(global), \(c)]",
                             "\(row[c]) is not a finite number\(row[c].isFinite ? " in 32-bit float range" : "")")
        }
        // The shard's values are written in place, a row at a time: one check and one conversion loop over the
        // row's columns, without a branch per value (the error is located only when the row has one).
        // With a sink, the rows are converted a piece at a time into one reused buffer and handed on.
        let pieceRows = sink.map { Swift.max(1, $0.chunkBytes / Swift.max(1, 4 * features)) } ?? range.count
        var x = [Float](repeating: 0, count: Swift.min(pieceRows, range.count) * features)
        var start = range.lowerBound
        repeat {
            let piece = start ..< Swift.min(range.upperBound, start + pieceRows)
            let shift = piece.lowerBound - range.lowerBound
            try x.withUnsafeMutableBufferPointer { out in
                try xFile.forEachRow(piece) { j, row in
                    let i = shift + j
                    var bad: UInt8 = 0
                    for v in row { bad |= abs(v) <= largest ? 0 : 1 }   // NaN compares false: bad
                    guard bad == 0 else { throw badValue(row, global: range.lowerBound + i) }
                    let target = out.baseAddress! + j * features
                    if let l = labelColumn {
                        for c in 0..<l { target[c] = Float(row[c]) }
                        for c in (l + 1)..<xFile.columns { target[c - 1] = Float(row[c]) }
                        do { try shard.addLabel(row[l], line: i, column: nil, classification: classification) }
                        catch let e as LocalLineError {
                            throw DataError(file: xFile.path, location: "\(name)[\(range.lowerBound + i), \(l)]", e.message)
                        }
                    } else {
                        for c in 0..<features { target[c] = Float(row[c]) }
                        if labels == nil { shard.labels.append(0) }   // no labels: a target of 0 per row
                    }
                }
            }
            if let sink { try sink.append(rows: piece.count == pieceRows ? x : Array(x[0..<(piece.count * features)]), features: features) }
            start = piece.upperBound
        } while start < range.upperBound
        shard.x = sink == nil ? x : []
        if let l = labels {
            let name = l.dataset ?? "y"
            try l.forEachRow(range) { i, row in
                let v = row[0]
                let global = range.lowerBound + i
                guard v.isFinite else { throw DataError(file: l.path, location: "\(name)[\(global)]", "\(v) is not a finite number") }
                do { try shard.addLabel(v, line: i, column: nil, classification: classification) }
                catch let e as LocalLineError { throw DataError(file: l.path, location: "\(name)[\(global)]", e.message) }
            }
        }
        return (shard, xFile.rows, range.lowerBound)
    }
}

extension NPYFile: RowArray {
    var dataset: String? { nil }
    var labelsHint: String { "--labels y.npy" }
    var formatName: String { ".npy files" }
}
