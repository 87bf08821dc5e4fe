import DMLComm

extension Standardization {
    /// `compute`'s statistics with the same bits for any number of ranks (`--reproducible`): the column sums
    /// and the sums of squared deviations are taken as Int64 fixed point, exact in any order. Per column, a
    /// scale 2^k from the largest |value| over all ranks (an allreduce-max) lets every row's value be truncated
    /// to a multiple of 2^−k with the whole column's sum below 2^62 (an error below 4·M·N·2^−62 for the largest
    /// value M over N rows, far below Float32's rounding of the result). Collective: four allreduces of
    /// `features` values (max, Int64 sum; then for the deviations again). Dense rows only. Cost: two passes
    /// over the rows more than `compute` (the maxima).
    public static func computeExactly(_ data: Dataset, comm: Communicator) throws -> Standardization {
        let d = data.features, rows = data.rows
        let n = Double(data.globalRows)
        func exactSums(_ value: (Int, Int) -> Double) throws -> [Double] {
            try exactColumnSums(rows: rows, columns: d, terms: data.globalRows, comm: comm, value)
        }
        let mean = try data.x.withUnsafeBufferPointer { x in try exactSums { r, j in Double(x[r * d + j]) }.map { $0 / n } }
        let variance = try data.x.withUnsafeBufferPointer { x in
            try exactSums { r, j in let t = Double(x[r * d + j]) - mean[j]; return t * t }.map { $0 / n }
        }
        let std = variance.map { v -> Float in
            let s = Float(v.squareRoot())
            return s > 0 && s.isFinite ? s : 1
        }
        return Standardization(mean: mean.map { Float($0) }, std: std)
    }
}

/// Σ over every rank's `rows` of `value(row, column)`, per column, with the same bits for any number of ranks
/// and any split of the rows: per column a scale 2^k from the largest |value| over all ranks (an
/// allreduce-max), each value truncated to a multiple of 2^−k and summed as Int64 (`terms`: the rows of all
/// ranks, which bounds the sum below 2^62), the integers allreduced and turned back into Doubles. Collective:
/// an allreduce-max of `columns` Doubles and an allreduce of `columns` Int64. Cost: two passes over the rows.
/// A non-finite value makes its column's sum 0 (callers pass finite values).
func exactColumnSums(rows: Int, columns d: Int, terms: Int, comm: Communicator, _ value: (Int, Int) -> Double) throws -> [Double] {
    var largest = [Double](repeating: 0, count: d)
    for r in 0..<rows { for j in 0..<d { largest[j] = Swift.max(largest[j], value(r, j).magnitude) } }
    largest = try comm.allreduced(largest, op: .max)
    let exponents = largest.map { exactSumExponent($0, terms: terms) }
    let scales = exponents.map { Double(sign: .plus, exponent: $0, significand: 1) }
    var sums = [Int64](repeating: 0, count: d)
    for r in 0..<rows { for j in 0..<d { sums[j] += Int64(value(r, j) * scales[j]) } }
    sums = try comm.allreduced(sums, op: .sum)
    return (0..<d).map { Double(sums[$0]) * Double(sign: .plus, exponent: -exponents[$0], significand: 1) }
}

/// The exponent k for an exact Int64 sum of `terms` values of magnitude at most `largest`, each scaled by 2^k
/// and truncated: `terms · largest · 2^k < 2^62` (0 for no value or a non-finite one).
public func exactSumExponent(_ largest: Double, terms: Int) -> Int {
    guard largest > 0, largest.isFinite else { return 0 }
    let headroom = Int.bitWidth - Swift.max(terms, 1).leadingZeroBitCount  // 2^headroom > terms
    return 62 - headroom - (Int(largest.exponent) + 1)                     // largest < 2^(exponent + 1)
}
