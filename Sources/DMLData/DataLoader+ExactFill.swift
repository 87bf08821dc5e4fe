import DMLComm

extension DataLoader {
    /// `--missing mean` under `--reproducible`: each column's mean over every rank's non-missing values with the
    /// same bits for any number of ranks — the sums exact Int64 fixed point (`exactColumnSums`, one scale per
    /// column from an allreduce-max, a missing value counting 0), the counts integers — so the fill values, and
    /// with them every filled row, do not depend on how the rows are split. A column with no value at all gets
    /// 0 (as `fillMissing`'s default path). Collective: an allreduce-max and two Int64 allreduces of `features`
    /// values. Cost: two passes over the shard's values (the default path's one and one for the maxima).
    static func exactColumnMeans(_ raw: RawShard, globalRows: Int, comm: Communicator) throws -> [Float] {
        let d = raw.features
        return try raw.x.withUnsafeBufferPointer { x in
            var present = [Int64](repeating: 0, count: d)
            for r in 0..<raw.rows { for j in 0..<d where !x[r * d + j].isNaN { present[j] += 1 } }
            let counts = try comm.allreduced(present, op: .sum)
            let sums = try exactColumnSums(rows: raw.rows, columns: d, terms: globalRows, comm: comm) { r, j in
                let v = x[r * d + j]
                return v.isNaN ? 0 : Double(v)
            }
            return (0..<d).map { counts[$0] > 0 ? Float(sums[$0] / Double(counts[$0])) : 0 }
        }
    }
}
