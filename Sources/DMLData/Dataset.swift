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

    public var rows: Int { y.count }
    /// The global rows this shard holds.
    public var globalRange: Range<Int> { firstRow ..< firstRow + rows }
    /// Whether the rows are CSR.
    public var isSparse: Bool { csr != nil }
    /// Bytes of the features as stored (dense values, or the CSR arrays).
    public var featureBytes: Int { csr?.bytes ?? 4 * x.count }

    public init(features: Int, classes: Int, globalRows: Int, firstRow: Int, x: [Float], y: [Float]) {
        precondition(x.count == y.count * features, "x must hold rows × features values")
        self.features = features
        self.classes = classes
        self.globalRows = globalRows
        self.firstRow = firstRow
        self.x = x
        self.y = y
    }

    /// CSR rows (`csr.rows == y.count`, `csr.columns == features`).
    public init(features: Int, classes: Int, globalRows: Int, firstRow: Int, csr: CSRMatrix, y: [Float]) {
        precondition(csr.rows == y.count && csr.columns == features, "csr must hold one row per label, features wide")
        self.features = features
        self.classes = classes
        self.globalRows = globalRows
        self.firstRow = firstRow
        self.x = []
        self.csr = csr
        self.y = y
    }

    /// Calls `body` with this shard's rows `range` (local indices) as a `RowBlock`, dense or CSR (no copy).
    public func withRows<R>(_ range: Range<Int>, _ body: (RowBlock) -> R) -> R {
        if let csr { return csr.withView(rows: range) { body(RowBlock($0)) } }
        return x.withUnsafeBufferPointer { x in
            body(RowBlock(dense: (x.baseAddress ?? UnsafePointer(bitPattern: 8)!) + range.lowerBound * features,
                          rows: range.count, features: features))
        }
    }
}
