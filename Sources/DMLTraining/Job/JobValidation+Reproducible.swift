import DMLData
extension JobConfiguration {
    /// `--reproducible` and what it cannot honour yet, each refused with one message: it moves rows held in
    /// memory (dense or CSR) into whole blocks and sums the gradient of whole blocks exactly
    /// (`ReproducibleReducer`, `ReproducibleSparseReducer` for CSR rows, `ExactLeafSums` for `lbfgs`/`newton`),
    /// so every variation that reduces otherwise (`--balance`, `--compress`, `--overlap`, an `--allreduce`
    /// algorithm, `--partition features`, CSR rows with `--shard-update`) or streams rows is refused with it.
    /// `--standardize` and `--missing mean` are honoured (`Standardization.computeExactly`,
    /// `DataLoader.exactColumnMeans`), and so are `--lr-search` and `--early-stopping`, whose validation losses
    /// are `reproducibleEvaluation`'s exact sums.
    func reproducibleConflict() -> String? {
        guard reduction.reproducible else { return nil }
        let r = reduction, d = data, o = optimization, block = ReproducibleReducer.blockRows
        let why = "--reproducible sums every step's gradient exactly in its own way"
        if r.balance { return "\(why): it cannot be combined with --balance (which sums along a chain of ranks)" }
        if r.compress != nil { return "\(why): it cannot be combined with --compress (a 16-bit wire)" }
        if r.overlap { return "\(why) after the backward pass: it cannot be combined with --overlap" }
        if r.allreduce != .ring || givenFlags.contains("allreduce") {
            return "\(why) (an Int64 MPI_Allreduce, exact in any order): --allreduce means nothing with it; leave it out"
        }
        if d.partition == .features { return "--reproducible moves rows between ranks: it needs --partition rows" }
        if d.sparse == .on && r.shardUpdate { return "--reproducible with CSR rows (--sparse on) sums only the touched coordinates: it cannot be combined with --shard-update (give --sparse off)" }
        // `auto` would read such rows as CSR without --shard-update and dense with it: other bits for the same
        // command but one flag. Said, not done silently (review 6, #9).
        if r.shardUpdate && d.sparse == .auto, let path = d.path,
           (d.format ?? DataFormat.infer(fromPath: path)) == .libsvm || (d.categoricalEncoding == .hash && !d.categorical.isEmpty) {
            return "--reproducible --shard-update sums dense rows, but --sparse auto reads \(path)'s rows as CSR without --shard-update "
                + "(other bits): give --sparse off to train them dense, sharded or not, or leave out --shard-update"
        }
        if d.cacheDir != nil || d.maxMemory != nil { return "--reproducible moves rows held in memory: it cannot be combined with streamed rows (--cache-dir, --max-memory) yet" }
        if let b = o.batchSize, b % block != 0 {
            return "--batch-size \(b) is not a multiple of \(block): --reproducible makes batches of whole blocks of \(block) rows (give a multiple of \(block), or full)"
        }
        return nil
    }
}
