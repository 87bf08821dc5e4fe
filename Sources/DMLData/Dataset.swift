import DMLKernels

/// The rows of a data set that one rank holds (its shard), dense row-major or CSR, with the facts about the
/// whole data set that all ranks agree on.
public struct Dataset {
    /// Features per row.
    public let features: Int
    /// Number of classes for a classification set (labels are 0 ..< classes); 0 for regression.
    public let classes: Int
    /// Rows in the whole data set, over all ranks.
    public let globalRows: Int
    /// The global index of this shard's first row.
    public let firstRow: Int
    /// `rows × features` values (dense rows); empty when the rows are CSR (`csr`).
    public var x: [Float]
    /// The rows as CSR (`--sparse`: LIBSVM input kept sparse), `features` wide; nil for dense rows.
    public var csr: CSRMatrix?
    /// One label (class index as Float) or target per row.
    public var y: [Float]
    /// The feature rows streamed from a shard cache file (`--max-memory`, `--cache-dir`): then `x` is empty
    /// and `csr` nil, and only the labels are in memory. nil: the rows are in memory.
    public var stream: ShardStream?

    public var rows: Int { y.count }
    /// The global rows this shard holds.
    public var globalRange: Range<Int> { firstRow ..< firstRow + rows }
    /// Whether the rows are CSR (in memory or streamed).
    public var isSparse: Bool { csr != nil || stream?.isSparse == true }
    /// Whether the feature rows are read from a shard cache file (`stream`) rather than held in memory.
    public var isStreamed: Bool { stream != nil }
    /// Bytes of the features as held in memory (dense values, or the CSR arrays; a stream's row starts).
    public var featureBytes: Int {
        if let stream { if case let .csr(starts, _, _) = stream.layout { return 8 * starts.count }; return 0 }
        return csr?.bytes ?? 4 * x.count
    }

    public init(features: Int, classes: Int, globalRows: Int, firstRow: Int, x: [Float], y: [Float]) {
        precondition(x.count == y.count * features, "x must hold rows × features values")
        self.init(features: features, classes: classes, globalRows: globalRows, firstRow: firstRow, x: x, csr: nil, stream: nil, y: y)
    }

    /// CSR rows (`csr.rows == y.count`, `csr.columns == features`).
    public init(features: Int, classes: Int, globalRows: Int, firstRow: Int, csr: CSRMatrix, y: [Float]) {
        precondition(csr.rows == y.count && csr.columns == features, "csr must hold one row per label, features wide")
        self.init(features: features, classes: classes, globalRows: globalRows, firstRow: firstRow, x: [], csr: csr, stream: nil, y: y)
    }

    /// The rows streamed from `stream` (`stream.rows == y.count`, `stream.features == features`).
    public init(features: Int, classes: Int, globalRows: Int, firstRow: Int, stream: ShardStream, y: [Float]) {
        precondition(stream.rows == y.count && stream.features == features, "the stream must hold one row per label, features wide")
        self.init(features: features, classes: classes, globalRows: globalRows, firstRow: firstRow, x: [], csr: nil, stream: stream, y: y)
    }

    /// The one place the fields are set: exactly one of dense `x`, `csr` and `stream` holds the rows.
    private init(features: Int, classes: Int, globalRows: Int, firstRow: Int, x: [Float], csr: CSRMatrix?, stream: ShardStream?, y: [Float]) {
        self.features = features
        self.classes = classes
        self.globalRows = globalRows
        self.firstRow = firstRow
        self.x = x
        self.csr = csr
        self.stream = stream
        self.y = y
    }

    /// Calls `body` with this shard's rows `range` (local indices) as a `RowBlock`, dense or CSR (no copy
    /// in memory; a streamed shard reads the rows into a temporary buffer first, `range.count` rows at once).
    /// Throws only for streamed rows: the cache's read error (`DataError`, `.ioError`, naming the file), which
    /// the caller must agree across ranks before its next collective (`Communicator.agree(error:)`).
    public func withRows<R>(_ range: Range<Int>, _ body: (RowBlock) -> R) throws -> R {
        if let stream { return Dataset.withBlock(try stream.rows(range), features: features, body) }
        if let csr { return csr.withView(rows: range) { body(RowBlock($0)) } }
        return x.withUnsafeBufferPointer { x in
            body(RowBlock(dense: (x.baseAddress ?? UnsafePointer(bitPattern: 8)!) + range.lowerBound * features,
                          rows: range.count, features: features))
        }
    }

    /// Calls `body` with consecutive pieces of this shard's rows, in order, each at most `rows` rows (the last
    /// shorter), as `(local range, block)`: views of rows in memory, or the pieces read from a streamed shard's
    /// cache (memory: one piece). Throws a streamed shard's read error (see `withRows`) or `body`'s error, and
    /// stops at the first.
    public func forEachChunk(rows chunk: Int = 4096, _ body: (Range<Int>, RowBlock) throws -> Void) throws {
        precondition(chunk > 0)
        var lo = 0
        while lo < rows {
            let range = lo ..< Swift.min(rows, lo + chunk)
            var failure: Error?
            try withRows(range) { block in
                do { try body(range, block) } catch { failure = error }
            }
            if let failure { throw failure }
            lo = range.upperBound
        }
    }

    /// Calls `body` with `rows` (as a stream returns them) as a `RowBlock`.
    public static func withBlock<R>(_ rows: ShardStream.Rows, features: Int, _ body: (RowBlock) -> R) -> R {
        switch rows {
        case let .dense(x):
            return x.withUnsafeBufferPointer { p in
                body(RowBlock(dense: p.baseAddress ?? UnsafePointer(bitPattern: 8)!, rows: x.count / Swift.max(features, 1), features: features))
            }
        case let .csr(m):
            return m.withView(rows: 0..<m.rows) { body(RowBlock($0)) }
        }
    }
}
