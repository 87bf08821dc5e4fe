import DMLStatus

extension Communicator {
    /// Collective: checks that every rank holds the same bytes in `buffer` (a replica check, e.g. of the
    /// parameters after training or of an allreduce's result). Throws `AgreedFailure` on every rank,
    /// naming the ranks whose bytes differ from rank 0's and `what`, when they do not.
    ///
    /// Cost: one pass over the buffer (`Checksum.hash`) and one allgather of one
    /// Int64. A hash, not a comparison: equal hashes of different bytes are possible, but the chance is
    /// 2^−64 per pair.
    public func checkIdentical(_ buffer: UnsafeRawBufferPointer, what: String) throws {
        let hashes = try allgathered(Int64(bitPattern: Checksum.hash(buffer)))
        let differ = hashes.indices.filter { hashes[$0] != hashes[0] }
        guard !differ.isEmpty else { return }
        // Every rank knows the outcome; rank 0 (whose bytes are the reference) reports it.
        let who = differ.count == 1 ? "rank \(differ[0]) holds" : "ranks \(differ.map(String.init).joined(separator: ", ")) hold"
        try agree(rank == 0 ? "\(what) differ between ranks: \(who) other bits than rank 0" : nil, kind: .software)
    }
}
