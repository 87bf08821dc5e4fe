/// The rows of a data set that one rank holds (its shard), row-major, with the facts about the whole
/// data set that all ranks agree on.
public struct Dataset {
    /// Features per row.
    public let features: Int
    /// Number of classes for a classification set (labels are 0 ..< classes); 0 for regression.
    public let classes: Int
    /// Rows in the whole data set, over all ranks.
    public let globalRows: Int
    /// The global index of this shard's first row.
    public let firstRow: Int
    /// `rows × features` values.
    public var x: [Float]
    /// One label (class index as Float) or target per row.
    public var y: [Float]

    public var rows: Int { y.count }
    /// The global rows this shard holds.
    public var globalRange: Range<Int> { firstRow ..< firstRow + rows }

    public init(features: Int, classes: Int, globalRows: Int, firstRow: Int, x: [Float], y: [Float]) {
        precondition(x.count == y.count * features, "x must hold rows × features values")
        self.features = features
        self.classes = classes
        self.globalRows = globalRows
        self.firstRow = firstRow
        self.x = x
        self.y = y
    }
}
