import DMLComm
import DMLData
import DMLModels

/// `--reproducible` for the full-batch methods (`--optimizer lbfgs|newton`, `SecondOrderTrainer`): every sum
/// over the rows — F and ∇F, the Hessian-vector products, the Hessian's diagonal, the line search's loss and
/// slope — with the same bits for any number of ranks.
///
/// Which sums depend on np by default: only those over rows. A pass adds each rank's blocks of rows in Double
/// (the block boundaries fall where the rank's shard does), then the ranks' sums are allreduced in an order that
/// depends on p. Everything after — the mean, the regulariser, and every dot product, norm and two-loop
/// recursion of L-BFGS and Newton-CG — is computed on the reduced vectors, which every rank holds alike, in a
/// fixed order: np-independent once the reduced vectors are.
///
/// So: the rows are moved so that every rank holds whole **leaves** of `leafRows` (1,024 = the pass's own
/// blocks, `SecondOrderTrainer.blockRows`) global rows (`Dataset.movedIntoBlocks`, dense or CSR); a pass sums
/// each leaf alone from zero (`TwiceDifferentiable.leafPass`: the same bits on whichever rank), the leaf values
/// are kept (CSR: only the touched columns' positions), and then:
/// - one allreduce-max of 2 Doubles gives the largest |value| and |loss| over every leaf of every rank;
/// - each value is truncated to Int64 fixed point with the scale 2^k of that maximum (`exactSumExponent`: the
///   L leaves sum below 2^62), added into one Int64 accumulator per rank, and one Int64 allreduce of p + 1
///   values sums them — exact, in any order;
/// - the integers times 2^−k are the sums, in Double, in the layout's order.
/// A non-finite value anywhere makes every sum NaN on every rank (the trainer's divergence check throws).
///
/// Precision: a leaf value is held to 2^−k, an absolute error below M·L·2^−61 for the largest |value| M and L
/// leaves (a coordinate 2^30 times smaller than M still keeps 24 bits). Cost per pass over p parameters: the
/// same model work; a pass over the kept values (dense: p a leaf; CSR: its touched positions) and over p
/// Int64; one 16-byte allreduce-max more, and the allreduce carries Int64 where the default carries Double (the
/// same bytes). Memory: the kept leaf values (dense: L/p·p Doubles a rank; CSR: 12 bytes a touched position) and
/// p + 1 Int64. The line search's segment sums (2 scalars a leaf) are exact the same way.
final class ExactLeafSums {
    /// Rows per leaf: the pass's blocks, so a leaf is one block of `SecondOrderTrainer.blocks`.
    static let leafRows = SecondOrderTrainer.blockRows

    let comm: Communicator
    let model: TwiceDifferentiable
    /// Leaves of the whole training set (over all ranks): the number of terms each sum may have.
    let totalLeaves: Int
    private var positions: [Int32] = []
    private var values: [Double] = []
    /// Per leaf: its loss (a vector pass) or its scalars (a segment).
    private var scalars: [Double] = []
    private var scalarsPerLeaf = 1
    private var integers: [Int64] = []
    /// Each CSR leaf's positions, by its first shard row (the rows never change after the move).
    private var leafPositions: [Int: [Int32]] = [:]

    init(comm: Communicator, model: TwiceDifferentiable, globalRows: Int) {
        self.comm = comm
        self.model = model
        totalLeaves = (globalRows + Self.leafRows - 1) / Self.leafRows
    }

    /// The global rows of rank `r` of `ranks`: whole leaves.
    static func rows(of r: Int, ranks: Int, rows: Int) -> Range<Int> {
        Dataset.wholeBlockRange(of: r, ranks: ranks, rows: rows, blockRows: leafRows)
    }

    /// Runs `pass` over `blocks` (whose blocks are this rank's leaves), keeping every leaf's values for `reduce`.
    /// Returns this rank's loss (a Double sum of its leaves' losses: only for the hooks, never reduced).
    func run(_ pass: LeafPass, blocks: ShardBlocks, workspace: CurvatureWorkspace) throws -> Double {
        clear(scalarsPerLeaf: 1)
        let p = model.layout.count
        // Local arrays while the pass runs (appends to the object's own would pay an exclusivity check each).
        var (kept, keptValues, losses, cache) = (positions, values, scalars, leafPositions)
        defer { (positions, values, scalars, leafPositions) = (kept, keptValues, losses, cache) }
        try model.leafPass(pass, blocks: blocks, workspace: workspace, positions: &cache) { leaf in
            if let at = leaf.positions {
                for i in at { kept.append(i); keptValues.append(leaf.sums[Int(i)]) }
            } else {
                for i in 0..<p where leaf.sums[i] != 0 { kept.append(Int32(i)); keptValues.append(leaf.sums[i]) }
            }
            losses.append(leaf.loss)
        }
        return losses.reduce(0, +)
    }

    /// Keeps `perLeaf(first, rows)` for each of this rank's leaves (`rows` shard rows from `first`): the
    /// scalars to `reduce` (the line search's loss and slope along a segment).
    func run(rows: Int, scalars count: Int, _ perLeaf: (Int, Int) -> [Double]) {
        clear(scalarsPerLeaf: count)
        for first in stride(from: 0, to: rows, by: Self.leafRows) {
            let got = perLeaf(first, Swift.min(Self.leafRows, rows - first))
            precondition(got.count == count)
            scalars.append(contentsOf: got)
        }
    }

    private func clear(scalarsPerLeaf count: Int) {
        positions.removeAll(keepingCapacity: true)
        values.removeAll(keepingCapacity: true)
        scalars.removeAll(keepingCapacity: true)
        scalarsPerLeaf = count
    }

    /// The exact sums over every rank's kept leaves: after a vector pass, p values in the layout's order then
    /// the loss sum; after a segment, the scalars' sums. `poisoned`: this rank's loss is NaN (the `nan` fault).
    /// Collective: an allreduce-max of 1 + scalars Doubles and an Int64 allreduce of the result's length.
    func reduce(vector: Bool, poisoned: Bool) throws -> [Double] {
        let p = vector ? model.layout.count : 0, m = scalarsPerLeaf
        var local = [Double](repeating: 0, count: 1 + m)
        for v in values { local[0] = Swift.max(local[0], v.isFinite ? v.magnitude : .infinity) }
        for (i, v) in scalars.enumerated() { local[1 + i % m] = Swift.max(local[1 + i % m], v.isFinite ? v.magnitude : .infinity) }
        if poisoned { local[m] = .infinity }
        let largest = try comm.allreduced(local, op: .max)
        guard largest.allSatisfy({ $0.isFinite }) else { return [Double](repeating: .nan, count: p + m) }
        let k = largest.map { exactSumExponent($0, terms: totalLeaves) }
        let scales = k.map { Double(sign: .plus, exponent: $0, significand: 1) }
        if integers.count != p + m { integers = [Int64](repeating: 0, count: p + m) } else { integers.withUnsafeMutableBufferPointer { $0.update(repeating: 0) } }
        integers.withUnsafeMutableBufferPointer { q in
            for (i, v) in zip(positions, values) { q[Int(i)] += Int64(v * scales[0]) }
            for (i, v) in scalars.enumerated() { q[p + i % m] += Int64(v * scales[1 + i % m]) }
        }
        try integers.withUnsafeMutableBufferPointer { try comm.nativeAllreduce($0, op: .sum) }
        let unit = k.map { Double(sign: .plus, exponent: -$0, significand: 1) }
        var out = [Double](repeating: 0, count: p + m)
        for i in 0..<p { out[i] = Double(integers[model.featureMajorIndex(i)]) * unit[0] }
        for j in 0..<m { out[p + j] = Double(integers[p + j]) * unit[1 + j] }
        return out
    }
}
