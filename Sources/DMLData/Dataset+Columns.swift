import DMLComm

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

extension Dataset {
    /// Rows to columns: this rank's rows with every feature become every row with the columns `columns(q)`
    /// of rank q — each rank sends every rank q the columns q holds of its own rows and receives its own
    /// columns of every rank's rows; the labels are gathered whole. Rows keep their global order, so the
    /// result does not depend on how the rows were sharded. Collective: one message per pair of ranks on
    /// `tag` (a rank sends rows × features floats in all and receives globalRows × columns floats) and one
    /// allreduce of globalRows labels.
    public func transposedToColumns(_ columns: (Int) -> Range<Int>, comm: Communicator, tag: Int) throws -> Dataset {
        let p = comm.size, mine = columns(comm.rank)
        let firsts = try comm.allgathered(Int64(firstRow)).map(Int.init)
        let counts = try comm.allgathered(Int64(rows)).map(Int.init)
        // Labels: every rank's in its rows' places (one non-zero contribution per element, so the sum is exact).
        var labels = [Float](repeating: 0, count: globalRows)
        for i in 0..<rows { labels[firstRow + i] = y[i] }
        try labels.withUnsafeMutableBufferPointer { try comm.nativeAllreduce($0, op: .sum) }
        let w = mine.count
        var out = [Float](repeating: 0, count: globalRows * w)
        // Send buffers live outside Swift arrays: they must stay put until every request is complete.
        var outgoing: [UnsafeMutableRawBufferPointer] = []
        defer { outgoing.forEach { $0.deallocate() } }
        var requests: [CommRequest] = []
        try out.withUnsafeMutableBufferPointer { dst in
            for q in 0..<p where q != comm.rank && counts[q] > 0 && w > 0 {
                let start = dst.baseAddress! + firsts[q] * w
                requests.append(try comm.irecv(UnsafeMutableRawBufferPointer(start: start, count: counts[q] * w * 4), from: q, tag: tag))
            }
            for q in 0..<p where q != comm.rank && rows > 0 && !columns(q).isEmpty {
                let part = self.columns(columns(q)).x
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: part.count * 4, alignment: 16)
                part.withUnsafeBytes { buffer.copyMemory(from: $0) }
                outgoing.append(buffer)
                requests.append(try comm.isend(UnsafeRawBufferPointer(buffer), to: q, tag: tag))
            }
            let own = self.columns(mine).x
            own.withUnsafeBufferPointer { src in
                if !src.isEmpty { (dst.baseAddress! + firstRow * w).update(from: src.baseAddress!, count: src.count) }
            }
            try comm.waitAll(&requests)
        }
        return Dataset(features: w, classes: classes, globalRows: globalRows, firstRow: 0, x: out, y: labels)
    }
}
