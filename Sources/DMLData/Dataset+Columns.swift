/// Feature (column) partitioning: a rank holds every row but only some of the columns (`--partition features`).
extension Dataset {
    /// The columns `columns` of every row this set holds (labels unchanged). Cost: one copy of those columns.
    public func columns(_ columns: Range<Int>) -> Dataset {
        precondition(columns.lowerBound >= 0 && columns.upperBound <= features)
        let w = columns.count
        var out = [Float](repeating: 0, count: rows * w)
        x.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for r in 0..<rows {
                    (dst.baseAddress! + r * w).update(from: src.baseAddress! + r * features + columns.lowerBound, count: w)
                }
            }
        }
        return Dataset(features: w, classes: classes, globalRows: globalRows, firstRow: firstRow, x: out, y: y)
    }
}

extension SyntheticClassification {
    /// Every row of a split (`rows` rows; the test split when `testSplit`), keeping only the feature columns
    /// `columns`: one full row is generated at a time (the label needs all of it), so a rank's memory is
    /// `rows × columns.count`, never the whole table.
    public func columnSlice(rows: Int, columns: Range<Int>, testSplit: Bool) -> Dataset {
        precondition(columns.lowerBound >= 0 && columns.upperBound <= features)
        let w = columns.count
        let first = testSplit ? Self.testRowOffset : 0
        var row = [Float](repeating: 0, count: features)
        var x = [Float](repeating: 0, count: rows * w)
        var y = [Float](repeating: 0, count: rows)
        row.withUnsafeMutableBufferPointer { full in
            x.withUnsafeMutableBufferPointer { xs in
                for r in 0..<rows {
                    y[r] = Float(generate(row: first + r, into: full.baseAddress!))
                    (xs.baseAddress! + r * w).update(from: full.baseAddress! + columns.lowerBound, count: w)
                }
            }
        }
        return Dataset(features: w, classes: classes, globalRows: rows, firstRow: 0, x: x, y: y)
    }
}
