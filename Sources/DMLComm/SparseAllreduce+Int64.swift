extension SparseAllreduce {
    /// `run` for Int64 values (`--reproducible`'s fixed-point sums of CSR gradients): the same merge and
    /// schedule; integer sums are exact, so the result does not depend on the schedule at all. 16 bytes per
    /// (Int32 position, Int64 value) pair on the wire, as for Double. Collective.
    public func run(_ entries: SparseEntries<Int64>, dimension: Int, op: ReduceOp) throws -> SparseEntries<Int64> {
        try reduce(entries, dimension: dimension, op: op)
    }
}
